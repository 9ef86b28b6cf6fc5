//! `kcmp(2)` for open files: tells a shared open file (one `struct file`, reached through
//! several descriptors, in one process or many) from two independent opens of the same
//! object.
//!
//! This module owns the raw call and the mapping of its answer to an [`Ordering`]. Grouping
//! descriptors into open files (bucketing by a cheap key first, then ordering with kcmp
//! inside a bucket) belongs to the callers.

use std::cmp::Ordering;
use std::fmt;
use std::io;
use std::os::fd::RawFd;

use rustix::process::Pid;

/// A slot in *another* process's descriptor table.
///
/// Kept apart from [`RawFd`] so a number that is only meaningful in a target process is
/// never passed where one of our own descriptors is expected (or the other way round).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetFd(pub RawFd);

impl fmt::Display for TargetFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `KCMP_FILE` from `<linux/kcmp.h>`: compare the open files behind two descriptors.
const KCMP_FILE: libc::c_long = 0;

/// `kcmp(pid1, pid2, KCMP_FILE, fd1, fd2)`—Compares the open files behind descriptor
/// `fd1` of process `pid1` and descriptor `fd2` of process `pid2`.
///
/// Returns [`Ordering::Equal`] when both descriptors refer to the same open file (they
/// were `dup`ed, inherited across `fork`, or passed with `SCM_RIGHTS`), and otherwise a
/// stable order between the two open files, which the kernel derives from obfuscated
/// kernel pointers: usable for sorting, meaningless as a value. The order is consistent
/// for the whole boot, so descriptors can be sorted by it.
///
/// The caller needs `PTRACE_MODE_READ` access to both processes (always true for its own
/// process). Errors:
///  - `EBADF`: one of the descriptors is not open in its process;
///  - `ESRCH`: one of the processes does not exist;
///  - `EPERM`: no ptrace access to one of the processes;
///  - `ENOSYS`: the kernel was built without `CONFIG_KCMP`;
///  - [`io::ErrorKind::InvalidData`]: the kernel answered "different, order unavailable"
///    (3) or something undocumented.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/kcmp.2.html)
#[doc(alias = "kcmp")]
#[doc(alias = "KCMP_FILE")]
pub fn kcmp_files(pid1: Pid, fd1: TargetFd, pid2: Pid, fd2: TargetFd) -> io::Result<Ordering> {
    // SAFETY: kcmp with KCMP_FILE takes five integers and dereferences no user memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1.as_raw_nonzero().get()),
            libc::c_long::from(pid2.as_raw_nonzero().get()),
            KCMP_FILE,
            libc::c_long::from(fd1.0),
            libc::c_long::from(fd2.0),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Ordering::Equal),
        1 => Ok(Ordering::Less),
        2 => Ok(Ordering::Greater),
        3 => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "kcmp: the open files differ but the kernel gives no order between them",
        )),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("kcmp: undocumented result {other}"),
        )),
    }
}

/// `kcmp(pid1, pid2, KCMP_FILES, 0, 0)`—Compares the descriptor tables of two processes.
///
/// [`Ordering::Equal`] when they share one table (`clone(CLONE_FILES)`); otherwise a
/// stable order for sorting. Errors as for [`kcmp_files`]. [`kcmp_shared`] with
/// [`Shared::Files`].
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/kcmp.2.html)
#[doc(alias = "KCMP_FILES")]
pub fn kcmp_fd_tables(pid1: Pid, pid2: Pid) -> io::Result<Ordering> {
    kcmp_shared(pid1, pid2, Shared::Files)
}

/// `KCMP_VM` (`include/uapi/linux/kcmp.h`).
const KCMP_VM: libc::c_long = 1;

/// `kcmp(pid1, pid2, KCMP_VM)`—Whether two processes share one address space
/// (`clone(CLONE_VM)` without `CLONE_THREAD`, a `vfork` child before it execs). Errors as
/// for [`kcmp_files`].
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/kcmp.2.html)
#[doc(alias = "KCMP_VM")]
pub fn kcmp_same_vm(pid1: Pid, pid2: Pid) -> io::Result<bool> {
    // SAFETY: kcmp with KCMP_VM takes integers and dereferences no user memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1.as_raw_nonzero().get()),
            libc::c_long::from(pid2.as_raw_nonzero().get()),
            KCMP_VM,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(true),
        _ => Ok(false),
    }
}

/// `KCMP_EPOLL_TFD` (`include/uapi/linux/kcmp.h`).
const KCMP_EPOLL_TFD: libc::c_long = 7;

/// `struct kcmp_epoll_slot` (`include/uapi/linux/kcmp.h`).
#[repr(C)]
struct KcmpEpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// `kcmp(pid1, pid2, KCMP_EPOLL_TFD, fd1, &{efd, tfd, toff})`—Whether descriptor `fd1` of
/// `pid1` is the open file registered in the epoll instance at descriptor `efd` of `pid2`
/// under number `tfd` (the `toff`-th such registration, counting from 0 in the order of
/// `/proc/PID/fdinfo/EFD`, for a number under which several open files were added).
///
/// Errors as for [`kcmp_files`], and `ENOENT` when the epoll holds no such registration,
/// `EINVAL` when `efd` is not an epoll instance.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/kcmp.2.html)
#[doc(alias = "KCMP_EPOLL_TFD")]
pub fn kcmp_epoll_target(
    pid1: Pid,
    fd1: TargetFd,
    pid2: Pid,
    efd: TargetFd,
    tfd: TargetFd,
    toff: u32,
) -> io::Result<bool> {
    let to_u32 =
        |fd: TargetFd| u32::try_from(fd.0).map_err(|_| io::Error::from_raw_os_error(libc::EBADF));
    let slot = KcmpEpollSlot {
        efd: to_u32(efd)?,
        tfd: to_u32(tfd)?,
        toff,
    };
    // SAFETY: kcmp with KCMP_EPOLL_TFD reads one `struct kcmp_epoll_slot` from the last
    // argument, which points at `slot`, alive and of that layout for the whole call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1.as_raw_nonzero().get()),
            libc::c_long::from(pid2.as_raw_nonzero().get()),
            KCMP_EPOLL_TFD,
            libc::c_long::from(fd1.0),
            &slot as *const KcmpEpollSlot,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(true),
        _ => Ok(false),
    }
}

/// A per-process kernel object two processes may share, as `kcmp(2)` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// `KCMP_VM`: the address space (`CLONE_VM`).
    Vm,
    /// `KCMP_FILES`: the descriptor table (`CLONE_FILES`).
    Files,
    /// `KCMP_FS`: the filesystem context, cwd, root and umask (`CLONE_FS`).
    Fs,
    /// `KCMP_SIGHAND`: the signal-handler table (`CLONE_SIGHAND`).
    Sighand,
    /// `KCMP_SYSVSEM`: the System V semaphore undo list (`CLONE_SYSVSEM`); two
    /// processes without one (no `semop` with `SEM_UNDO` yet) compare equal.
    Sysvsem,
}

impl Shared {
    /// What two of them are called, for messages.
    fn plural(self) -> &'static str {
        match self {
            Shared::Vm => "address spaces",
            Shared::Files => "descriptor tables",
            Shared::Fs => "filesystem contexts",
            Shared::Sighand => "signal-handler tables",
            Shared::Sysvsem => "semaphore undo lists",
        }
    }

    /// The `KCMP_*` type (`include/uapi/linux/kcmp.h`).
    fn kcmp_type(self) -> libc::c_long {
        match self {
            Shared::Vm => 1,
            Shared::Files => 2,
            Shared::Fs => 3,
            Shared::Sighand => 4,
            Shared::Sysvsem => 6,
        }
    }
}

/// `kcmp(pid1, pid2, KCMP_VM | KCMP_FILES | KCMP_FS | KCMP_SIGHAND, 0, 0)`—Compares one
/// kind of per-process object of two processes: [`Ordering::Equal`] when they share it,
/// otherwise a stable order for sorting. Errors as for [`kcmp_files`].
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/kcmp.2.html)
#[doc(alias = "KCMP_FS")]
#[doc(alias = "KCMP_SIGHAND")]
pub fn kcmp_shared(pid1: Pid, pid2: Pid, what: Shared) -> io::Result<Ordering> {
    // SAFETY: kcmp with these types takes integers and dereferences no user memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(pid1.as_raw_nonzero().get()),
            libc::c_long::from(pid2.as_raw_nonzero().get()),
            what.kcmp_type(),
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Ordering::Equal),
        1 => Ok(Ordering::Less),
        2 => Ok(Ordering::Greater),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("kcmp: no order between the {} ({other})", what.plural()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    fn me() -> Pid {
        rustix::process::getpid()
    }

    #[test]
    fn dup_compares_equal() {
        let f = File::open("/dev/null").unwrap();
        let d = f.try_clone().unwrap(); // F_DUPFD_CLOEXEC: same open file
        let ord = kcmp_files(me(), TargetFd(f.as_raw_fd()), me(), TargetFd(d.as_raw_fd()));
        assert_eq!(ord.unwrap(), Ordering::Equal);
    }

    #[test]
    fn separate_opens_differ_and_order_is_antisymmetric() {
        let a = File::open("/dev/null").unwrap();
        let b = File::open("/dev/null").unwrap();
        let (fa, fb) = (TargetFd(a.as_raw_fd()), TargetFd(b.as_raw_fd()));
        let ab = kcmp_files(me(), fa, me(), fb).unwrap();
        let ba = kcmp_files(me(), fb, me(), fa).unwrap();
        assert_ne!(ab, Ordering::Equal);
        assert_eq!(ab, ba.reverse());
    }

    #[test]
    fn fd_not_open_is_ebadf() {
        let a = File::open("/dev/null").unwrap();
        let r = kcmp_files(me(), TargetFd(a.as_raw_fd()), me(), TargetFd(-1));
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
