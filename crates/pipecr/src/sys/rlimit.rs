//! `prlimit(2)` reading another process's resource limits without changing them (rustix's
//! `prlimit` always sets, nix's `getrlimit` only reads the caller's).
//!
//! This module owns the raw call; which limits to save belongs to [`crate::task`].

use std::io;

use rustix::process::Pid;

/// `prlimit(pid, resource, NULL, &old)`—Reads resource limit `resource` (`RLIMIT_*`) of
/// process `pid` without changing it; returns `(soft, hard)`, `RLIM_INFINITY` as
/// `u64::MAX`.
///
/// Needs the permission of a ptrace attach to `pid` (or CAP_SYS_RESOURCE).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/prlimit.2.html)
#[doc(alias = "prlimit")]
#[doc(alias = "prlimit64")]
pub fn get_rlimit(pid: Pid, resource: u32) -> io::Result<(u64, u64)> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 with a NULL new limit only writes `old`, a struct we own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            libc::c_long::from(pid.as_raw_nonzero().get()),
            libc::c_long::from(resource),
            std::ptr::null::<libc::rlimit64>(),
            std::ptr::from_mut(&mut old),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((old.rlim_cur, old.rlim_max))
}

/// `prlimit(0, resource, &new, NULL)`—Sets resource limit `resource` (`RLIMIT_*`) of the
/// calling process to `(soft, hard)`, `RLIM_INFINITY` as `u64::MAX`.
///
/// Raising a hard limit needs CAP_SYS_RESOURCE.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/prlimit.2.html)
#[doc(alias = "setrlimit")]
#[doc(alias = "prlimit64")]
pub fn set_own_rlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let new = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit64 on ourselves (pid 0) only reads `new`, a struct we own, and
    // writes nothing (NULL old limit).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0 as libc::c_long,
            libc::c_long::from(resource),
            std::ptr::from_ref(&new),
            std::ptr::null_mut::<libc::rlimit64>(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
