//! Integer socket options rustix does not wrap (`SO_RCVLOWAT`, say), read and set as
//! plain `int`s.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `getsockopt(fd, level, name, &int)`—Reads an integer socket option.
///
/// # References
///  - [getsockopt(2)](https://man7.org/linux/man-pages/man2/getsockopt.2.html)
#[doc(alias = "getsockopt")]
pub fn int_option(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call and
    // `len` holds the size of `value`; the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `setsockopt(fd, level, name, &int)`—Sets an integer socket option.
///
/// # References
///  - [setsockopt(2)](https://man7.org/linux/man-pages/man2/setsockopt.2.html)
#[doc(alias = "setsockopt")]
pub fn set_int_option(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    let value: libc::c_int = value;
    // SAFETY: `value` is valid for reads of `size_of::<c_int>()` bytes for the duration
    // of the call; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
