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
//! Order in each thread ([`restore`]), each thread its own credentials (`Thread.creds`
//! where they differ from the process's): `setgroups`; the bounding set
//! (`PR_CAPBSET_DROP`, needs `CAP_SETPCAP`); `setresgid`, `setfsgid`; with
//! `PR_SET_KEEPCAPS` (so that the permitted set survives leaving uid 0) `setresuid`,
//! `setfsuid`; a `capset` keeping the restorer's permitted set effective, with the saved
//! inheritable set; the ambient set (before the securebits: `SECBIT_NO_CAP_AMBIENT_RAISE`
//! would forbid it); the securebits (`PR_SET_SECUREBITS` needs `CAP_SETPCAP`, still
//! effective; it also sets or clears keep-caps as saved); the saved `capset`. Then,
//! as a change of effective or filesystem ids clears them, what follows credentials
//! ([`after`]): `PR_SET_NO_NEW_PRIVS`, the parent-death signal, and in the main thread
//! `PR_SET_DUMPABLE` (changing the effective uid made the process non-dumpable, or
//! `fs.suid_dumpable`) and `PR_SET_CHILD_SUBREAPER`. The restorer stays attached
//! throughout, so the process remains under its control until it is detached.
//!
//! Known gap: with an image that did not read the securebits (`--no-inject`, or an older
//! writer), keep-caps is cleared and the rest left as the restorer's.

use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};
use super::trampoline::{self, SCRATCH_AT};
use crate::inject::kstruct::CapSets;
use crate::inject::{Injector, calls};

/// Most supplementary groups that fit the trampoline page after [`SCRATCH_AT`], where the
/// group list is written.
const MAX_GROUPS: usize = ((trampoline::SIZE - SCRATCH_AT) / 4) as usize;

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
/// [`calls::setfsuid`] or [`calls::setfsgid`].
type SetFsId = fn(&mut Injector, u32) -> std::result::Result<u32, crate::inject::InjectError>;

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

/// Checks, before anything is created, that the restorer can give a thread of `pid` the
/// saved `securebits` (any but none needs `CAP_SETPCAP`).
pub(super) fn check_securebits(pid: i32, tid: i32, securebits: u32) -> Result<()> {
    let me = own()?;
    if securebits != 0 && !has(me.cap_effective, CAP_SETPCAP) {
        return Err(ProcessRestoreError::Credentials {
            pid,
            what: format!("securebits {securebits:#x} of thread {tid}: needs CAP_SETPCAP"),
            me: format!("capabilities {:#x}", me.cap_effective),
        });
    }
    Ok(())
}

/// Gives the thread `inj` drives (of process `pid`, injecting through the trampoline
/// page at `tramp`) the saved credentials `c` and, when the dump read them, its
/// `securebits` (see the module documentation).
pub(super) fn restore(
    inj: &mut Injector,
    pid: i32,
    tramp: u64,
    c: &proto::Creds,
    securebits: Option<u32>,
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
        calls::setgroups(inj, at, &c.groups).map_err(fail("setgroups"))?;
    }
    for cap in (0..64).filter(|&b| has(me.cap_bounding, b) && !has(c.cap_bounding, b)) {
        calls::prctl_capbset_drop(inj, cap).map_err(fail("prctl(PR_CAPBSET_DROP)"))?;
    }
    calls::setresgid(inj, c.rgid, c.egid, c.sgid).map_err(fail("setresgid"))?;
    fs_id(inj, pid, calls::setfsgid, c.fsgid, "setfsgid")?;
    let uid_changes = [c.ruid, c.euid, c.suid] != [me.ruid, me.euid, me.suid];
    if uid_changes {
        calls::prctl_set_keepcaps(inj, true).map_err(fail("prctl(PR_SET_KEEPCAPS)"))?;
    }
    calls::setresuid(inj, c.ruid, c.euid, c.suid).map_err(fail("setresuid"))?;
    fs_id(inj, pid, calls::setfsuid, c.fsuid, "setfsuid")?;
    // The restorer's permitted set (kept across the uid change) effective again, for
    // what still needs CAP_SETPCAP; the saved inheritable set, which ambient needs.
    let working = CapSets {
        effective: me.cap_permitted,
        permitted: me.cap_permitted,
        inheritable: c.cap_inheritable,
    };
    calls::capset(inj, at, &working).map_err(fail("capset"))?;
    calls::prctl_cap_ambient_clear_all(inj).map_err(fail("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"))?;
    for cap in (0..64).filter(|&b| has(c.cap_ambient, b)) {
        calls::prctl_cap_ambient_raise(inj, cap).map_err(fail("prctl(PR_CAP_AMBIENT_RAISE)"))?;
    }
    match securebits {
        Some(bits) => {
            let now = calls::prctl_get_securebits(inj).map_err(fail("prctl(PR_GET_SECUREBITS)"))?;
            if now != bits {
                calls::prctl_set_securebits(inj, bits).map_err(fail("prctl(PR_SET_SECUREBITS)"))?;
            }
        }
        None if uid_changes => {
            calls::prctl_set_keepcaps(inj, false).map_err(fail("prctl(PR_SET_KEEPCAPS)"))?;
        }
        None => {}
    }
    let caps = CapSets {
        effective: c.cap_effective,
        permitted: c.cap_permitted,
        inheritable: c.cap_inheritable,
    };
    calls::capset(inj, at, &caps).map_err(fail("capset"))?;
    Ok(())
}

/// What comes after the credentials in the thread `inj` drives, since a change of
/// effective or filesystem ids resets it: its no_new_privs bit and parent-death signal
/// (`thread`); in the main thread (`process` given) the dumpable flag (the exact one when
/// the dump read it, else `creds.not_dumpable`) and the child-subreaper bit.
pub(super) fn after(
    inj: &mut Injector,
    pid: i32,
    thread: &proto::Thread,
    process: Option<&proto::Core>,
) -> Result<()> {
    let fail = |op: &'static str| {
        move |e: crate::inject::InjectError| ProcessRestoreError::Os {
            pid,
            op,
            source: std::io::Error::other(e),
        }
    };
    if thread.no_new_privs {
        calls::prctl_set_no_new_privs(inj).map_err(fail("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    if let Some(p) = &thread.prctl
        && p.pdeathsig != 0
    {
        calls::prctl_set_pdeathsig(inj, p.pdeathsig).map_err(fail("prctl(PR_SET_PDEATHSIG)"))?;
    }
    let Some(core) = process else { return Ok(()) };
    match (&core.prctl, &core.creds) {
        (Some(p), _) if p.dumpable == 2 => {
            // SUID_DUMP_ROOT: only the kernel sets it (fs.suid_dumpable, when the ids
            // changed); prctl cannot.
            let now = calls::prctl_get_dumpable(inj).map_err(fail("prctl(PR_GET_DUMPABLE)"))?;
            if now != 2 {
                return Err(ProcessRestoreError::Unsupported {
                    pid,
                    what: format!(
                        "dumpable 2 (SUID_DUMP_ROOT), which prctl cannot set (it came back {now}: \
                         fs.suid_dumpable differs here)"
                    ),
                });
            }
        }
        (Some(p), _) => {
            calls::prctl_set_dumpable(inj, p.dumpable != 0)
                .map_err(fail("prctl(PR_SET_DUMPABLE)"))?;
        }
        (None, Some(c)) => {
            calls::prctl_set_dumpable(inj, !c.not_dumpable)
                .map_err(fail("prctl(PR_SET_DUMPABLE)"))?;
        }
        (None, None) => {}
    }
    if let Some(p) = &core.prctl
        && p.child_subreaper
    {
        calls::prctl_set_child_subreaper(inj, true)
            .map_err(fail("prctl(PR_SET_CHILD_SUBREAPER)"))?;
    }
    Ok(())
}

/// `setfsuid`/`setfsgid` (`set`) to `id`, checked: these calls return the previous id, not
/// an error, so the result is read back with an invalid id (-1), which changes nothing.
fn fs_id(inj: &mut Injector, pid: i32, set: SetFsId, id: u32, op: &'static str) -> Result<()> {
    set(inj, id)?;
    let now = set(inj, u32::MAX)?;
    if now != id {
        return Err(ProcessRestoreError::Os {
            pid,
            op,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    Ok(())
}
