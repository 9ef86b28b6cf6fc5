//! userfaultfd ioctls that neither libc nor rustix wrap: the API handshake
//! (`UFFDIO_API`) and the registration of a range (`UFFDIO_REGISTER`).
//!
//! Both act on the userfaultfd's own address space (the one of the process that created
//! it), whoever makes the call: a restore registers the ranges of a restored process
//! through its own copy of the descriptor (`pidfd_getfd`).
//!
//! # References
//!  - [Linux](https://man7.org/linux/man-pages/man2/ioctl_userfaultfd.2.html)

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `UFFD_API`: the API version a handshake asks for.
pub const UFFD_API: u64 = 0xaa;
/// `UFFDIO_API` (`_IOWR(0xAA, 0x3F, struct uffdio_api)`).
const UFFDIO_API: u64 = 0xc018_aa3f;
/// `UFFDIO_REGISTER` (`_IOWR(0xAA, 0x00, struct uffdio_register)`).
const UFFDIO_REGISTER: u64 = 0xc020_aa00;

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

/// `ioctl(fd, UFFDIO_API, {UFFD_API, features})`—Enables the userfaultfd with
/// `features` (`UFFD_FEATURE_*`); returns the features the kernel supports.
#[doc(alias = "UFFDIO_API")]
pub fn api(fd: BorrowedFd<'_>, features: u64) -> io::Result<u64> {
    let mut arg = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: `arg` is a valid `struct uffdio_api` the kernel reads and writes back, and
    // lives across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API as _, &raw mut arg) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(arg.features)
}

/// `ioctl(fd, UFFDIO_REGISTER, {start, len, mode})`—Registers the range in the
/// userfaultfd's address space with `mode` (`UFFDIO_REGISTER_MODE_*`).
#[doc(alias = "UFFDIO_REGISTER")]
pub fn register(fd: BorrowedFd<'_>, start: u64, len: u64, mode: u64) -> io::Result<()> {
    let mut arg = UffdioRegister {
        start,
        len,
        mode,
        ioctls: 0,
    };
    // SAFETY: `arg` is a valid `struct uffdio_register` the kernel reads and writes
    // back, and lives across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER as _, &raw mut arg) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
