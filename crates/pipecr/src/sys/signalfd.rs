//! Creating a signalfd from a kernel signal mask. nix's wrapper takes a `SigSet` that
//! cannot hold the real-time signals; the raw `signalfd4` takes the 64-bit mask as is.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `signalfd4(-1, &mask, 8, flags)`—Creates a signalfd that accepts the signals of
/// `mask` (bit N-1 for signal N, as `/proc/PID/fdinfo` prints it). `flags` are
/// `SFD_CLOEXEC` and `SFD_NONBLOCK`. The kernel ignores `SIGKILL` and `SIGSTOP`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/signalfd.2.html)
#[doc(alias = "signalfd4")]
pub fn signalfd(mask: u64, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: the kernel reads `sizeof(mask)` = 8 bytes from the pointer, which points at
    // `mask`, alive for the duration of the call; -1 asks for a new descriptor.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            std::mem::size_of::<u64>(),
            flags,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: signalfd4 returned a new descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
