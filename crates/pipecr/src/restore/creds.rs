//! The credentials of a restored process: user and group ids, supplementary groups and
//! capability sets, set by injected calls into every thread (credentials belong to each
//! thread; the raw syscalls change the calling one only), as the last steps before the
//! registers: everything before them (`PR_SET_MM_MAP`, `clone3` with `set_tid`) needs the
//! privileges the restorer handed down.
//!
//! The rule: restore never creates a process with credentials its caller could not give
//! it. [`check`] compares the saved credentials with the restorer's before anything is
//! created (other ids need `CAP_SETUID`/`CAP_SETGID`, other groups `CAP_SETGID`, a
//! permitted or bounding set is never widened); the kernel checks each call again.
//!
//! Order in each thread ([`restore`]): `setgroups`; the bounding set (`PR_CAPBSET_DROP`,
//! needs `CAP_SETPCAP`); `setresgid`, `setfsgid`; with `PR_SET_KEEPCAPS` (so that the
//! permitted set survives leaving uid 0) `setresuid`, `setfsuid`; `capset`; the ambient
//! set. In the main thread, last, `PR_SET_DUMPABLE`: changing the effective uid made the
//! process non-dumpable; it becomes dumpable again unless it was not (`not_dumpable`).
//! The restorer stays attached throughout, so the process remains under its control
//! until it is detached.
//!
//! Known gaps: the securebits (`PR_SET_SECUREBITS`, `keep_caps` among them) are not
//! saved; the credentials of the main thread are given to every thread.

use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};
use super::trampoline::{self, SCRATCH_AT};
use crate::inject::Injector;

/// Most supplementary groups that fit the trampoline page after [`SCRATCH_AT`], where the
/// group list is written.
const MAX_GROUPS: usize = ((trampoline::SIZE - SCRATCH_AT) / 4) as usize;

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `prctl` options from `<linux/prctl.h>`.
const PR_SET_DUMPABLE: u64 = 4;
const PR_SET_KEEPCAPS: u64 = 8;
const PR_CAPBSET_DROP: u64 = 24;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;

/// The restorer's own credentials (those every restored process starts with).
fn own() -> Result<proto::Creds> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::task::creds_from_status(&s))
        .ok_or_else(|| ProcessRestoreError::Os {
            pid: 0,
            op: "read /proc/self/status",
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })
}

fn has(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

/// Checks, before anything is created, that the restorer can give process `pid` its saved
/// credentials `saved` (absent in older images: nothing to give).
pub(super) fn check(pid: i32, saved: Option<&proto::Creds>) -> Result<()> {
    let Some(c) = saved else { return Ok(()) };
    let me = own()?;
    let refuse = |what: String| {
        Err(ProcessRestoreError::Credentials {
            pid,
            what,
            me: format!(
                "uid {}/{}/{}, gid {}/{}/{}, capabilities {:#x}",
                me.ruid, me.euid, me.suid, me.rgid, me.egid, me.sgid, me.cap_effective
            ),
        })
    };
    if c.groups.len() > MAX_GROUPS {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: format!(
                "{} supplementary groups (at most {MAX_GROUPS})",
                c.groups.len()
            ),
        });
    }
    let my_uids = [me.ruid, me.euid, me.suid];
    let uids = [c.ruid, c.euid, c.suid, c.fsuid];
    if !has(me.cap_effective, CAP_SETUID) && uids.iter().any(|u| !my_uids.contains(u)) {
        return refuse(format!(
            "user ids {}/{}/{} (fs {}): needs CAP_SETUID",
            c.ruid, c.euid, c.suid, c.fsuid
        ));
    }
    let my_gids = [me.rgid, me.egid, me.sgid];
    let gids = [c.rgid, c.egid, c.sgid, c.fsgid];
    if !has(me.cap_effective, CAP_SETGID) && gids.iter().any(|g| !my_gids.contains(g)) {
        return refuse(format!(
            "group ids {}/{}/{} (fs {}): needs CAP_SETGID",
            c.rgid, c.egid, c.sgid, c.fsgid
        ));
    }
    if c.groups != me.groups && !has(me.cap_effective, CAP_SETGID) {
        return refuse(format!(
            "supplementary groups {:?}: needs CAP_SETGID",
            c.groups
        ));
    }
    if c.cap_permitted & !me.cap_permitted != 0 {
        return refuse(format!(
            "permitted capabilities {:#x}: more than the restorer's {:#x}",
            c.cap_permitted, me.cap_permitted
        ));
    }
    if c.cap_bounding & !me.cap_bounding != 0 {
        return refuse(format!(
            "capability bounding set {:#x}: more than the restorer's {:#x}",
            c.cap_bounding, me.cap_bounding
        ));
    }
    if c.cap_bounding != me.cap_bounding && !has(me.cap_effective, CAP_SETPCAP) {
        return refuse(format!(
            "capability bounding set {:#x}: dropping needs CAP_SETPCAP",
            c.cap_bounding
        ));
    }
    Ok(())
}

/// Gives the thread `inj` drives (of process `pid`, injecting through the trampoline
/// page at `tramp`) the saved credentials `c` (see the module documentation); `main`:
/// it is the main thread, which also sets the process's dumpable flag.
pub(super) fn restore(
    inj: &mut Injector,
    pid: i32,
    tramp: u64,
    c: &proto::Creds,
    main: bool,
) -> Result<()> {
    let me = own()?;
    let at = tramp + SCRATCH_AT;
    let fail = |op: &'static str| {
        move |e: crate::inject::InjectError| ProcessRestoreError::Os {
            pid,
            op,
            source: std::io::Error::other(e),
        }
    };
    if c.groups != me.groups {
        let raw: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        inj.write_memory(at, &raw)?;
        inj.syscall_checked(libc::SYS_setgroups, [c.groups.len() as u64, at, 0, 0, 0, 0])
            .map_err(fail("setgroups"))?;
    }
    for cap in (0..64).filter(|&b| has(me.cap_bounding, b) && !has(c.cap_bounding, b)) {
        inj.syscall_checked(
            libc::SYS_prctl,
            [PR_CAPBSET_DROP, u64::from(cap), 0, 0, 0, 0],
        )
        .map_err(fail("prctl(PR_CAPBSET_DROP)"))?;
    }
    let gids = [c.rgid, c.egid, c.sgid].map(u64::from);
    inj.syscall_checked(libc::SYS_setresgid, [gids[0], gids[1], gids[2], 0, 0, 0])
        .map_err(fail("setresgid"))?;
    fs_id(inj, pid, libc::SYS_setfsgid, c.fsgid, "setfsgid")?;
    let uid_changes = [c.ruid, c.euid, c.suid] != [me.ruid, me.euid, me.suid];
    if uid_changes {
        inj.syscall_checked(libc::SYS_prctl, [PR_SET_KEEPCAPS, 1, 0, 0, 0, 0])
            .map_err(fail("prctl(PR_SET_KEEPCAPS)"))?;
    }
    let uids = [c.ruid, c.euid, c.suid].map(u64::from);
    inj.syscall_checked(libc::SYS_setresuid, [uids[0], uids[1], uids[2], 0, 0, 0])
        .map_err(fail("setresuid"))?;
    fs_id(inj, pid, libc::SYS_setfsuid, c.fsuid, "setfsuid")?;
    if uid_changes {
        inj.syscall_checked(libc::SYS_prctl, [PR_SET_KEEPCAPS, 0, 0, 0, 0, 0])
            .map_err(fail("prctl(PR_SET_KEEPCAPS)"))?;
    }
    // struct __user_cap_header_struct { u32 version; int pid; } then two
    // struct __user_cap_data_struct { u32 effective, permitted, inheritable; }.
    let mut raw = Vec::with_capacity(32);
    raw.extend_from_slice(&CAPABILITY_VERSION_3.to_ne_bytes());
    raw.extend_from_slice(&0i32.to_ne_bytes());
    for half in [0, 32] {
        for set in [c.cap_effective, c.cap_permitted, c.cap_inheritable] {
            raw.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
        }
    }
    inj.write_memory(at, &raw)?;
    inj.syscall_checked(libc::SYS_capset, [at, at + 8, 0, 0, 0, 0])
        .map_err(fail("capset"))?;
    inj.syscall_checked(
        libc::SYS_prctl,
        [PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0],
    )
    .map_err(fail("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"))?;
    for cap in (0..64).filter(|&b| has(c.cap_ambient, b)) {
        inj.syscall_checked(
            libc::SYS_prctl,
            [
                PR_CAP_AMBIENT,
                PR_CAP_AMBIENT_RAISE,
                u64::from(cap),
                0,
                0,
                0,
            ],
        )
        .map_err(fail("prctl(PR_CAP_AMBIENT_RAISE)"))?;
    }
    if main {
        let dumpable = u64::from(!c.not_dumpable);
        inj.syscall_checked(libc::SYS_prctl, [PR_SET_DUMPABLE, dumpable, 0, 0, 0, 0])
            .map_err(fail("prctl(PR_SET_DUMPABLE)"))?;
    }
    Ok(())
}

/// `setfsuid`/`setfsgid` (`nr`) to `id`, checked: these calls return the previous id, not
/// an error, so the result is read back with an invalid id (-1), which changes nothing.
fn fs_id(inj: &mut Injector, pid: i32, nr: i64, id: u32, op: &'static str) -> Result<()> {
    inj.syscall_checked(nr, [u64::from(id), 0, 0, 0, 0, 0])?;
    let now = inj.syscall_checked(nr, [u64::from(u32::MAX), 0, 0, 0, 0, 0])? as u32;
    if now != id {
        return Err(ProcessRestoreError::Os {
            pid,
            op,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    Ok(())
}
