//! Every check run before any process is created (a restore that would fail half-way
//! should fail here, with a message that says why): [`check_tree`] for a whole tree,
//! [`check_supported`] for one process of it.
//!
//! - the tree: a root, every other process the child of an earlier one, a descriptor
//!   table or filesystem context shared only with the parent (`CLONE_FILES`,
//!   `CLONE_FS`: the restore gives the child its parent's as it creates it);
//! - the image itself: consistent threads, a root directory, session and process group
//!   the restore can give, no kind of memory area it cannot bring back yet;
//! - the POSIX timers: ones that can be created again (the rule of
//!   [`crate::posix_timers::check`], which the dump applies too), on a kernel that gives a
//!   timer a chosen ID ([`super::timers::check`], [`super::timers::check_kernel`]);
//! - the credentials: ones the restorer can give ([`super::creds::check`], beside the
//!   code that gives them);
//! - the CPU state in each thread's XSAVE area: every component its header marks as in
//!   use (`XSTATE_BV`) must be one this machine enables (`XCR0`), or the kernel refuses
//!   the area (or the program faults on its first AVX-512 instruction);
//! - the files its address space maps, and its executable: each must exist here.
//!
//! Whether a saved PID is free is checked by the orchestrator (`restore::process`) as
//! it creates the processes: it can change at any time.

use std::collections::BTreeSet;
use std::io;

use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};
use super::saved::SavedProcess;

/// Checks, before anything is created, that the restore can bring back `saved` from a
/// process whose session and process group are `(sid, pgid)` (the restorer's).
pub fn check_supported(saved: &SavedProcess, sid: i32, pgid: i32) -> Result<()> {
    let pid = saved.pid();
    let unsupported = |what: String| Err(ProcessRestoreError::Unsupported { pid, what });
    check_threads(saved)?;
    super::timers::check(saved)?;
    super::creds::check(pid, saved.core.creds.as_ref())?;
    super::procstate::check(saved)?;
    check_xstate(saved, crate::sys::cpu::xcr0())?;
    if saved.core.root != "/" {
        return unsupported(format!(
            "a root directory other than / ({})",
            saved.core.root
        ));
    }
    if saved.process.sid != pid && saved.process.sid != sid {
        return unsupported(format!(
            "session {} (the restorer is in session {sid}; only the restorer's session or a \
             new one led by the process; a job of an interactive shell: --shell-job)",
            saved.process.sid
        ));
    }
    if saved.process.pgid != pid && saved.process.pgid != pgid && saved.process.sid != pid {
        return unsupported(format!(
            "process group {} (the restorer is in group {pgid})",
            saved.process.pgid
        ));
    }
    // Each kind of memory area says which of its areas restore can bring back.
    for vma in &saved.mm.vmas {
        let restorable = match crate::mem::saved_kind(vma.kind) {
            Some((kind, _)) => kind.restorable(vma),
            None => Err("an area of unknown kind"),
        };
        if let Err(what) = restorable {
            return unsupported(format!(
                "area {:#x}-{:#x} {}: {what}",
                vma.start, vma.end, vma.path
            ));
        }
    }
    check_files(saved)?;
    Ok(())
}

/// Checks, before anything is created, that `tree` (tree.img order: the root first, every
/// parent before its children) can be restored by the orchestrator (`process::restore_tree`)
/// from a process in session `sid` and process group `pgid` (the restorer's).
///
/// Each process must be the root or a child of an earlier one (a zombie is saved inside
/// its parent's record, so a parent missing from the image is an error), and each must pass
/// [`check_supported`] against its parent's saved session and group: a process inherits
/// them from the parent that creates it, or leads its own.
pub fn check_tree(tree: &[SavedProcess], sid: i32, pgid: i32) -> Result<()> {
    let Some(root) = tree.first() else {
        return Err(ProcessRestoreError::Invalid {
            pid: 0,
            what: "tree.img holds no process".to_owned(),
        });
    };
    check_supported(root, sid, pgid)?;
    super::timers::check_kernel(tree)?;
    // A process is given its parent's descriptor table (CLONE_FILES) or filesystem
    // context (CLONE_FS) as it is created: sharing one with any other process cannot be
    // given back.
    for (i, p) in tree.iter().enumerate() {
        let parent = tree[..i].iter().find(|q| q.pid() == p.process.ppid);
        if let Some(q) = tree[..i]
            .iter()
            .find(|q| q.process.fd_table == p.process.fd_table)
            && parent.is_none_or(|parent| parent.process.fd_table != p.process.fd_table)
        {
            return Err(ProcessRestoreError::Unsupported {
                pid: p.pid(),
                what: format!(
                    "a descriptor table shared with pid {} (CLONE_FILES) but not with its \
                     parent {}",
                    q.pid(),
                    p.process.ppid
                ),
            });
        }
        let shared: [(i32, Group, &str); 3] = [
            (
                p.process.shares_fs_with,
                fs_group,
                "a filesystem context shared with pid {} (CLONE_FS)",
            ),
            (
                p.process.shares_vm_with,
                vm_group,
                "an address space shared with pid {} (CLONE_VM)",
            ),
            (
                p.process.shares_sighand_with,
                sighand_group,
                "a signal-handler table shared with pid {} (CLONE_SIGHAND)",
            ),
        ];
        for (with, group, what) in shared {
            if with != 0 && parent.is_none_or(|parent| group(parent) != with) {
                return Err(ProcessRestoreError::Unsupported {
                    pid: p.pid(),
                    what: format!(
                        "{} but not with its parent {}",
                        what.replacen("{}", &with.to_string(), 1),
                        p.process.ppid
                    ),
                });
            }
        }
        // CLONE_SIGHAND needs CLONE_VM, and their leaders are the first in tree order of
        // each: one table of handlers goes with one address space.
        if p.process.shares_sighand_with != 0
            && p.process.shares_sighand_with != p.process.shares_vm_with
        {
            return Err(ProcessRestoreError::Invalid {
                pid: p.pid(),
                what: format!(
                    "signal handlers shared with pid {} but its address space with pid {}",
                    p.process.shares_sighand_with, p.process.shares_vm_with
                ),
            });
        }
    }
    for (i, p) in tree.iter().enumerate().skip(1) {
        let ppid = p.process.ppid;
        let parent = tree[..i].iter().find(|q| q.pid() == ppid).ok_or_else(|| {
            ProcessRestoreError::Invalid {
                pid: p.pid(),
                what: format!(
                    "its parent {ppid} is not an earlier process of tree.img (an exited or \
                     foreign parent cannot be restored)"
                ),
            }
        })?;
        check_supported(p, parent.process.sid, parent.process.pgid)?;
    }
    check_zombies(tree)
}

/// Checks the saved zombies (each restored as a child of the process that holds it, which
/// exits at once): a PID no other process or zombie of the tree has, a session and group
/// its parent's or its own (it is created in its parent's and may lead new ones, never
/// join another), and a wait status a process can end with.
fn check_zombies(tree: &[SavedProcess]) -> Result<()> {
    let mut pids: Vec<i32> = tree.iter().map(SavedProcess::pid).collect();
    for parent in tree {
        for z in &parent.process.zombies {
            let invalid = |what: String| ProcessRestoreError::Invalid { pid: z.pid, what };
            if z.pid <= 0 || pids.contains(&z.pid) {
                return Err(invalid(format!(
                    "zombie of pid {} with a pid taken twice in tree.img",
                    parent.pid()
                )));
            }
            pids.push(z.pid);
            if crate::wait_status::decode(z.exit_status).is_none() {
                return Err(invalid(format!(
                    "zombie of pid {} with wait status {:#x}, which no process ends with",
                    parent.pid(),
                    z.exit_status
                )));
            }
            for (what, own, parents) in [
                ("session", z.sid, parent.process.sid),
                ("process group", z.pgid, parent.process.pgid),
            ] {
                if own != parents && own != z.pid {
                    return Err(ProcessRestoreError::Unsupported {
                        pid: z.pid,
                        what: format!(
                            "a zombie in {what} {own}, neither its parent {}'s ({parents}) nor \
                             its own",
                            parent.pid()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The pid of the first process that has the filesystem context of `p` (itself when
/// it shares it with no earlier process).
pub(super) fn fs_group(p: &SavedProcess) -> i32 {
    match p.process.shares_fs_with {
        0 => p.pid(),
        with => with,
    }
}

/// Which group of processes sharing one kernel object a process is in: the pid of the
/// first of them ([`fs_group`], [`vm_group`], [`sighand_group`]).
type Group = fn(&SavedProcess) -> i32;

/// The pid of the first process that has the address space of `p` (itself when it
/// shares it with no earlier process): the one whose image load brings back the memory
/// and the processes sharing it.
pub(super) fn vm_group(p: &SavedProcess) -> i32 {
    match p.process.shares_vm_with {
        0 => p.pid(),
        with => with,
    }
}

/// The pid of the first process that has the signal-handler table of `p` (itself when
/// it shares it with no earlier process).
pub(super) fn sighand_group(p: &SavedProcess) -> i32 {
    match p.process.shares_sighand_with {
        0 => p.pid(),
        with => with,
    }
}

/// Checks that the saved threads are consistent: a main thread, distinct TIDs, the same
/// set in tree.img and core.img.
fn check_threads(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let invalid = |what: String| Err(ProcessRestoreError::Invalid { pid, what });
    let mut tids: Vec<i32> = saved.core.threads.iter().map(|t| t.tid).collect();
    tids.sort_unstable();
    if !tids.contains(&pid) {
        return invalid(format!("no main thread (tid {pid}) in core.img"));
    }
    if tids.windows(2).any(|w| w[0] == w[1]) || tids.iter().any(|&t| t <= 0) {
        return invalid(format!("thread ids {tids:?} in core.img"));
    }
    let mut listed = saved.process.threads.clone();
    listed.sort_unstable();
    if !listed.is_empty() && listed != tids {
        return invalid(format!(
            "threads {listed:?} in tree.img but {tids:?} in core.img"
        ));
    }
    Ok(())
}

/// The XSAVE state components, by bit number (Intel SDM Vol. 1 §13.1).
const XFEATURES: [&str; 20] = [
    "x87",
    "SSE",
    "AVX",
    "MPX bound registers",
    "MPX bound config",
    "AVX-512 opmask",
    "AVX-512 ZMM_Hi256",
    "AVX-512 Hi16_ZMM",
    "processor trace",
    "PKRU (protection keys)",
    "PASID",
    "CET user",
    "CET supervisor",
    "HDC",
    "UINTR",
    "LBR",
    "HWP",
    "AMX TILECFG",
    "AMX TILEDATA",
    "APX",
];

/// The names of the XSAVE components in `mask` (`feature bit N` for unnamed ones).
fn xfeature_names(mask: u64) -> String {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| match XFEATURES.get(b) {
            Some(name) => format!("{name} (bit {b})"),
            None => format!("feature bit {b}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that every thread's saved XSAVE area uses only components this machine
/// enables (`xcr0`: its `XCR0`, [`crate::sys::cpu::xcr0`]).
fn check_xstate(saved: &SavedProcess, xcr0: Option<u64>) -> Result<()> {
    let pid = saved.pid();
    for thread in &saved.core.threads {
        if thread.xsave.is_empty() {
            continue;
        }
        let Some(bv) = crate::arch::x86_64::xstate_bv(&thread.xsave) else {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "thread {}: an XSAVE area of {} bytes (no XSAVE header)",
                    thread.tid,
                    thread.xsave.len()
                ),
            });
        };
        // Without XSAVE the kernel takes the legacy area only: x87 and SSE.
        let here = xcr0.unwrap_or(0b11);
        let missing = bv & !here;
        if missing != 0 {
            return Err(ProcessRestoreError::CpuFeatures {
                pid,
                tid: thread.tid,
                missing: xfeature_names(missing),
                saved: bv,
                here,
            });
        }
    }
    Ok(())
}

/// Checks that the executable and every file the saved address space maps exist.
fn check_files(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let mapped: BTreeSet<&str> = saved
        .mm
        .vmas
        .iter()
        .filter_map(|v: &proto::Vma| crate::mem::saved_kind(v.kind)?.0.mapped_file(v))
        .collect();
    let exe = (!saved.mm.exe.is_empty()).then_some(("executable", saved.mm.exe.as_str()));
    for (what, path) in exe
        .into_iter()
        .chain(mapped.into_iter().map(|p| ("mapped file", p)))
    {
        if let Err(source) = std::fs::metadata(path) {
            return Err(ProcessRestoreError::File {
                pid,
                what,
                path: path.to_owned(),
                errno: errno_name(&source),
                source,
            });
        }
    }
    // Each kind says whether the file it maps can still be mapped as it was.
    for vma in &saved.mm.vmas {
        let Some((kind, _)) = crate::mem::saved_kind(vma.kind) else {
            continue;
        };
        let Some(path) = kind.mapped_file(vma) else {
            continue;
        };
        let fits = std::fs::metadata(path)
            .map_err(|e| e.to_string())
            .and_then(|now| kind.mapped_file_fits(vma, &now));
        if let Err(why) = fits {
            return Err(ProcessRestoreError::File {
                pid,
                what: "mapped file",
                path: path.to_owned(),
                errno: "cannot be mapped again as it was",
                source: io::Error::other(format!(
                    "area {:#x}-{:#x}: the file {why}",
                    vma.start, vma.end
                )),
            });
        }
    }
    Ok(())
}

/// The symbolic name of the errors a path lookup gives.
fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::ELOOP) => "ELOOP",
        Some(libc::ENAMETOOLONG) => "ENAMETOOLONG",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_named() {
        assert_eq!(
            xfeature_names(1 << 7 | 1 << 40),
            "AVX-512 Hi16_ZMM (bit 7), feature bit 40"
        );
    }
}
