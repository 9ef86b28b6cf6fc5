//! Socket options rustix does not wrap: the peek offset (`SO_PEEK_OFF`), which lets a
//! dump read a socket's queue with `MSG_PEEK` one message after another without
//! consuming anything.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF)`—Returns the socket's peek offset; `-1` (the
/// default) means `MSG_PEEK` always reads from the head of the queue.
///
/// # References
///  - [socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html)
#[doc(alias = "SO_PEEK_OFF")]
pub fn peek_offset(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call and
    // `len` holds the size of `value`; the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, offset)`—Sets the socket's peek offset: with
/// `offset >= 0`, each `MSG_PEEK` reads from that offset in the queue and moves it past
/// what it returned; `-1` turns this off.
///
/// Fails with `EOPNOTSUPP` for sockets whose protocol has no peek offset.
///
/// # References
///  - [socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html)
#[doc(alias = "SO_PEEK_OFF")]
pub fn set_peek_offset(fd: BorrowedFd<'_>, offset: i32) -> io::Result<()> {
    let value: libc::c_int = offset;
    // SAFETY: `value` is valid for reads of `size_of::<c_int>()` bytes for the duration
    // of the call; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
