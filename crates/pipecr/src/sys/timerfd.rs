//! The one timerfd call rustix lacks: setting the count of expirations not yet read,
//! which only checkpoint/restore needs.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `TFD_IOC_SET_TICKS` (`_IOW('T', 0, __u64)` in `include/uapi/linux/timerfd.h`).
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// `ioctl(fd, TFD_IOC_SET_TICKS, &ticks)`—Sets the number of expirations a timerfd has
/// counted and not yet delivered to `read`; `ticks` must not be 0.
///
/// Needs a kernel built with `CONFIG_CHECKPOINT_RESTORE` (ENOTTY otherwise).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/timerfd_create.2.html)
#[doc(alias = "TFD_IOC_SET_TICKS")]
pub fn set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> io::Result<()> {
    // SAFETY: the ioctl reads one u64 from the pointer, which points at `ticks`, alive
    // for the duration of the call; `fd` is a descriptor we borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
