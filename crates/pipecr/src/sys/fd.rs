//! Descriptor-table operations that rustix leaves to `unsafe` callers: installing an open
//! file at a chosen descriptor number, duplicating a descriptor number the caller does
//! not own, and opening an open file again through `/proc/self/fd`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::fs::{Mode, OFlags};

/// `dup3(fd, target, cloexec ? O_CLOEXEC : 0)`—Moves an open file to descriptor number
/// `target` of the calling process.
///
/// Whatever `target` referred to before is closed by the kernel, atomically; `fd`'s old
/// number is closed afterwards. When `fd` already is `target`, only the close-on-exec bit
/// is set.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/dup3.2.html)
#[doc(alias = "dup3")]
pub fn install_at(fd: OwnedFd, target: RawFd, cloexec: bool) -> io::Result<OwnedFd> {
    if target < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if fd.as_raw_fd() == target {
        let flags = if cloexec {
            rustix::io::FdFlags::CLOEXEC
        } else {
            rustix::io::FdFlags::empty()
        };
        rustix::io::fcntl_setfd(&fd, flags)?;
        return Ok(fd);
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 takes two integers and a flag and touches no memory; `fd` is open for
    // the duration of the call because we own it.
    let ret = unsafe { libc::dup3(fd.as_raw_fd(), target, flags) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup3 succeeded, so `ret == target` is an open descriptor, and the caller
    // gave that number to us: nothing else in this process owns it any more.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`—Marks every descriptor of the calling
/// process numbered `first` or above close-on-exec, so that a program started next
/// inherits only the ones below (its stdio).
///
/// For a process that starts programs to be dumped (a test, the demo): descriptors it
/// inherited without knowing (a build tool's jobserver pipe, say) would otherwise lead
/// out of the dumped tree.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/close_range.2.html)
#[doc(alias = "close_range")]
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    let first =
        libc::c_uint::try_from(first).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC takes integers, touches no memory and
    // closes nothing: it only sets the close-on-exec flag.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)` on a descriptor number of the calling process—A new
/// descriptor (close-on-exec, numbered `min` or above) for the open file at number `fd`,
/// which the caller does not own (one of its stdio descriptors, say, or a number given on
/// the command line). `EBADF` when nothing is open at `fd`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "F_DUPFD_CLOEXEC")]
pub fn dup_own(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers and touches no memory; a number that
    // is not open fails with EBADF, and the original descriptor is left as it was.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so `ret` is a new open descriptor that nothing else in
    // this process knows of.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// `open("/proc/self/fd/N", flags)`—Opens the file behind `fd` again, as a new open file
/// with its own status flags and position.
///
/// For a pipe this yields another end of the same pipe (a read end from a write-only
/// descriptor, say); for a FIFO, another open of the same FIFO.
///
/// `O_NOFOLLOW` is left out: the `/proc` link is a symbolic link to follow (with it the
/// open fails with `ELOOP`), and the flag means nothing once a file is open.
///
/// # References
///  - [proc_pid_fd(5)](https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html)
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::open(
        path,
        (flags - OFlags::NOFOLLOW) | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `close_range(first, last, 0)` over every gap of `keep`—Closes every descriptor of the
/// calling process except those in `keep`.
///
/// For a process about to become someone else (a restored process in its child), where
/// no other code may still use the descriptors closed.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/close_range.2.html)
#[doc(alias = "close_range")]
pub fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<libc::c_uint> = keep
        .iter()
        .filter_map(|&fd| libc::c_uint::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: libc::c_uint = 0;
    for &fd in keep.iter().chain(std::iter::once(&libc::c_uint::MAX)) {
        if fd > first {
            let last = if fd == libc::c_uint::MAX { fd } else { fd - 1 };
            // SAFETY: close_range takes integers only; the caller owns the whole table
            // (see the function docs), so no live OwnedFd is closed under someone's feet.
            let ret =
                unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
            if ret == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// An empty, nameless, read-write file: `O_TMPFILE` in `dir`, else in `/tmp`, else a new
/// file in `/tmp` that is unlinked right away (for file systems without `O_TMPFILE`).
pub fn anonymous_file(dir: &std::path::Path, id: u64) -> io::Result<OwnedFd> {
    let flags =
        rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC;
    let mode = rustix::fs::Mode::from_raw_mode(0o600);
    if let Ok(fd) = rustix::fs::open(dir, flags, mode) {
        return Ok(fd);
    }
    if let Ok(fd) = rustix::fs::open("/tmp", flags, mode) {
        return Ok(fd);
    }
    let path = format!("/tmp/.pipecr-unlinked-{}-{id}", std::process::id());
    let fd = rustix::fs::open(
        &path,
        rustix::fs::OFlags::CREATE
            | rustix::fs::OFlags::EXCL
            | rustix::fs::OFlags::RDWR
            | rustix::fs::OFlags::CLOEXEC,
        mode,
    )?;
    rustix::fs::unlink(&path)?;
    Ok(fd)
}
