//! The pidfd calls rustix lacks: opening a pidfd of one thread (`PIDFD_THREAD`) and
//! reading the exit status the kernel keeps for a reaped process (`PIDFD_GET_INFO`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags};

/// `PIDFD_THREAD` (`O_EXCL`, `include/uapi/linux/pidfd.h`, Linux 6.9): the pidfd names one
/// thread, not its thread group.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// `PIDFD_INFO_EXIT` (Linux 6.15): ask for, or be told of, the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `struct pidfd_info` as of `PIDFD_INFO_SIZE_VER0` (64 bytes), which already holds
/// `exit_code`.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

/// `PIDFD_GET_INFO`: `_IOWR(0xFF, 11, struct pidfd_info)` with the 64-byte struct.
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// `pidfd_open(pid, flags)`—A pidfd of process `pid`, or of thread `pid` alone when
/// `thread` (`PIDFD_THREAD`), non-blocking when `nonblock` (`PIDFD_NONBLOCK`);
/// close-on-exec.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
#[doc(alias = "pidfd_open")]
pub fn open(pid: Pid, thread: bool, nonblock: bool) -> io::Result<OwnedFd> {
    let mut flags = PidfdFlags::empty();
    if thread {
        flags |= PidfdFlags::from_bits_retain(PIDFD_THREAD);
    }
    if nonblock {
        flags |= PidfdFlags::NONBLOCK;
    }
    Ok(rustix::process::pidfd_open(pid, flags)?)
}

/// `ioctl(pidfd, PIDFD_GET_INFO, {.mask = PIDFD_INFO_EXIT})`—The wait status the process
/// named by `pidfd` ended with, as `waitpid` reports it, once it has exited and been
/// reaped; `None` while it has not (or on a kernel before 6.15, which does not keep it).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
///  - `include/uapi/linux/pidfd.h`
#[doc(alias = "PIDFD_GET_INFO")]
pub fn exit_status(pidfd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl reads and writes at most 64 bytes (the size encoded in the
    // request) at the pointer, which points at `info`, a 64-byte repr(C) struct alive
    // for the duration of the call; `pidfd` is a descriptor we borrow.
    let ret = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO,
            std::ptr::from_mut(&mut info),
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        // ESRCH: the process is gone and the kernel kept no information about it.
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(e),
        };
    }
    Ok((info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code))
}
