//! The terminal ioctls rustix lacks: the whole `termios2` (every flag and speed as raw
//! numbers, to save and set back unchanged), the pseudo-terminal modes (packet, lock,
//! exclusive) and the device a `/dev/tty` descriptor stands for.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `ioctl(fd, TCGETS2, &t)`—Reads a terminal's settings, with its input and output
/// speeds as numbers (any baud rate, not only the `Bnnn` ones).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/TCGETS.2const.html)
#[doc(alias = "TCGETS2")]
pub fn get_termios2(fd: BorrowedFd<'_>) -> io::Result<libc::termios2> {
    // SAFETY: termios2 is plain integers and bytes: all zeroes is a valid value.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one struct termios2 through the pointer, which points at
    // `t`, alive and writable for the call; `fd` is a descriptor we borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS2, &mut t as *mut libc::termios2) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

/// `ioctl(fd, TCSETS2, &t)`—Sets a terminal's settings at once (on a pseudo-terminal
/// master, the slave's).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/TCSETS.2const.html)
#[doc(alias = "TCSETS2")]
pub fn set_termios2(fd: BorrowedFd<'_>, t: &libc::termios2) -> io::Result<()> {
    // SAFETY: the ioctl reads one struct termios2 from the pointer, which points at `t`,
    // alive for the call; `fd` is a descriptor we borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCSETS2, t as *const libc::termios2) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `TIOCGPKT`: whether packet mode is on (a pseudo-terminal master).
pub const TIOCGPKT: libc::c_ulong = libc::TIOCGPKT as libc::c_ulong;
/// `TIOCPKT`: turns packet mode on or off (a pseudo-terminal master).
pub const TIOCPKT: libc::c_ulong = libc::TIOCPKT as libc::c_ulong;
/// `TIOCGPTLCK`: whether the slave is locked (a pseudo-terminal master).
pub const TIOCGPTLCK: libc::c_ulong = libc::TIOCGPTLCK as libc::c_ulong;
/// `TIOCSPTLCK`: locks or unlocks the slave (a pseudo-terminal master).
pub const TIOCSPTLCK: libc::c_ulong = libc::TIOCSPTLCK as libc::c_ulong;
/// `TIOCGEXCL`: whether exclusive mode is on (the terminal the descriptor opens).
pub const TIOCGEXCL: libc::c_ulong = libc::TIOCGEXCL as libc::c_ulong;
/// `TIOCGPTN`: the devpts index of a master's slave.
pub const TIOCGPTN: libc::c_ulong = libc::TIOCGPTN as libc::c_ulong;
/// `TIOCGDEV`: the device number of the terminal behind a descriptor (the real one
/// behind `/dev/tty`), in the kernel's `new_encode_dev` form.
pub const TIOCGDEV: libc::c_ulong = libc::TIOCGDEV as libc::c_ulong;

/// `ioctl(fd, request, &value)` for the terminal requests that read one `int`
/// ([`TIOCGPKT`], [`TIOCGPTLCK`], [`TIOCGEXCL`], [`TIOCGPTN`], [`TIOCGDEV`]).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ioctl_tty.2.html)
pub fn get_int(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<u32> {
    let mut value: libc::c_uint = 0;
    // SAFETY: each request listed writes one int through the pointer, which points at
    // `value`, alive and writable for the call; `fd` is a descriptor we borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut value as *mut libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `ioctl(fd, request, &value)` for the terminal requests that take one `int`
/// ([`TIOCPKT`], [`TIOCSPTLCK`]).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ioctl_tty.2.html)
pub fn set_int(fd: BorrowedFd<'_>, request: libc::c_ulong, value: u32) -> io::Result<()> {
    let value = value as libc::c_int;
    // SAFETY: each request listed reads one int from the pointer, which points at
    // `value`, alive for the call; `fd` is a descriptor we borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, &value as *const libc::c_int) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(fd, TIOCEXCL)` or `ioctl(fd, TIOCNXCL)`—Turns exclusive mode on or off (no
/// further open of the terminal but by a privileged process).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/TIOCEXCL.2const.html)
#[doc(alias = "TIOCEXCL")]
#[doc(alias = "TIOCNXCL")]
pub fn set_exclusive(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let request = if on { libc::TIOCEXCL } else { libc::TIOCNXCL };
    // SAFETY: the request takes no argument; `fd` is a descriptor we borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::c_ulong) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
