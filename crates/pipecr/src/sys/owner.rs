//! The owner of an open file's I/O signals (`F_GETOWN_EX`/`F_SETOWN_EX`) and the signal
//! it is sent (`F_GETSIG`/`F_SETSIG`): what `O_ASYNC` delivers `SIGIO` to. Both belong to
//! the open file (`struct file`), not to the descriptor, so a copy fetched with
//! `pidfd_getfd` reads them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

// The fcntl commands (include/uapi/asm-generic/fcntl.h; libc exports them only for
// some targets).
const F_SETSIG: libc::c_int = 10;
const F_GETSIG: libc::c_int = 11;
const F_SETOWN_EX: libc::c_int = 15;
const F_GETOWN_EX: libc::c_int = 16;

/// `F_OWNER_TID`, `F_OWNER_PID`, `F_OWNER_PGRP`: what an owner id names.
pub const OWNER_TID: i32 = 0;
/// See [`OWNER_TID`].
pub const OWNER_PID: i32 = 1;
/// See [`OWNER_TID`].
pub const OWNER_PGRP: i32 = 2;

/// `struct f_owner_ex`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct OwnerEx {
    type_: libc::c_int,
    pid: libc::pid_t,
}

/// `fcntl(fd, F_GETOWN_EX)`—The owner of `fd`'s I/O signals: `(type, id)`, id 0 when
/// nobody owns them.
///
/// # References
///  - [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_GETOWN_EX")]
pub fn file_owner(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    let mut owner = OwnerEx::default();
    // SAFETY: F_GETOWN_EX writes one `struct f_owner_ex`, which `owner` is, valid for
    // writes for the duration of the call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &raw mut owner) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((owner.type_, owner.pid))
}

/// `fcntl(fd, F_SETOWN_EX, {type, id})`—Sends `fd`'s I/O signals to thread, process or
/// process group `id`. Fails with `ESRCH` when no such one exists.
///
/// # References
///  - [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_SETOWN_EX")]
pub fn set_file_owner(fd: BorrowedFd<'_>, type_: i32, id: i32) -> io::Result<()> {
    let owner = OwnerEx { type_, pid: id };
    // SAFETY: F_SETOWN_EX reads one `struct f_owner_ex`, which `owner` is, valid for
    // reads for the duration of the call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &raw const owner) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_GETSIG)`—The signal sent for `fd`'s I/O events; 0 means `SIGIO`.
///
/// # References
///  - [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_GETSIG")]
pub fn file_signal(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETSIG takes no argument and touches no memory of ours.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// `fcntl(fd, F_SETSIG, signal)`—Sets the signal sent for `fd`'s I/O events.
///
/// # References
///  - [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_SETSIG")]
pub fn set_file_signal(fd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: F_SETSIG takes an integer and touches no memory of ours.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, signal) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_GETLEASE)`—The lease the open file of `fd` holds: `F_RDLCK`, `F_WRLCK`,
/// or `F_UNLCK` for none (while a lease is being broken, the type it is broken to).
///
/// # References
///  - [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_GETLEASE")]
pub fn file_lease(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETLEASE takes no argument and touches no memory of ours.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// `fcntl(fd, F_SETLEASE, lease)`—Takes (or changes, or with `F_UNLCK` drops) a lease on
/// the open file of `fd`. The kernel then makes the calling process the owner of the
/// file's signals (`F_SETOWN`) and sends lease breaks with `fd` as their `si_fd`.
///
/// # References
///  - [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_SETLEASE")]
pub fn set_file_lease(fd: BorrowedFd<'_>, lease: i32) -> io::Result<()> {
    // SAFETY: F_SETLEASE takes an integer and touches no memory of ours.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, lease) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
