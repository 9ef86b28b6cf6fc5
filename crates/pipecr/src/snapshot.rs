//! Copy-on-write snapshots of stopped processes, so that a dump that lets the tree run on
//! can read its memory after resuming it instead of while it waits.
//!
//! A snapshot is a fork of the process made from inside it: the kernel copies the page
//! tables (milliseconds for hundreds of MiB) and shares every private page copy-on-write,
//! so the copy keeps the memory exactly as it was when the tree was stopped, whatever the
//! process writes afterwards. The copy never runs a single instruction of its own: it is
//! created under ptrace (`PTRACE_O_TRACECLONE`), held in its first stop, read through
//! `/proc`, and killed.
//!
//! The fork must not leave a child behind in the dumped process, which could see it
//! (a `wait` with `__WALL`, a `SIGCHLD`). So the process forks `S` without exit signal,
//! `S` clones the snapshot `G` *sharing its address space* (`CLONE_VM`: no second copy of
//! the page tables), and `S` is killed and reaped (by an injected `wait4` in the process)
//! while the tree is still stopped: the process ends up with the children it had, and the
//! copied address space lives on in `G` alone. `G` is an orphan, adopted by the nearest
//! subreaper or the namespace's init, which reaps it after the dump kills it (or pipecr
//! itself does, when it is that subreaper). Both are traced with `PTRACE_O_EXITKILL`: if
//! pipecr dies, they die, and never run.
//!
//! What a fork does not copy exactly is refused ([`eligible`]): areas marked
//! `MADV_DONTFORK` or `MADV_WIPEONFORK`, and memory shared with others (shared mappings,
//! memory objects), which the running process could change before it is read. A process
//! under seccomp is not forked either: a filter may kill it for calling `clone`. The dump
//! reads those processes while the tree is stopped, as before.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::freeze::FrozenProcess;
use crate::inject::{InjectError, Injector, calls};

/// Why a snapshot could not be taken. The process is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Injecting the fork failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// A ptrace or wait call failed.
    #[error("pid {pid}: {op}: {source}")]
    Os {
        /// The process (or its copy).
        pid: i32,
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The intermediate copy could not be reaped (the process would keep it as a zombie).
    #[error("pid {pid}: its copy {copy} could not be reaped (wait4 returned {ret})")]
    NotReaped {
        /// The process.
        pid: i32,
        /// The intermediate copy.
        copy: i32,
        /// What the injected `wait4` returned.
        ret: i64,
    },
}

/// A stopped copy of a process's address space, as it was when taken. Dropping it kills
/// and reaps the copy.
#[derive(Debug)]
pub struct Snapshot {
    pid: i32,
}

/// `clone` flags of the injected fork: a plain fork with no exit signal, so that the
/// parent is not signalled and a plain `wait` does not see the child.
const FORK_NO_SIGNAL: u64 = 0;

/// `clone` flags of the second, from the fork: a process sharing its address space.
const SHARE_VM_NO_SIGNAL: u64 = libc::CLONE_VM as u64;

impl Snapshot {
    /// The PID of the copy: read its memory through `/proc/PID/{maps,pagemap,mem}`.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Forks a copy of `process`, whose threads the calling thread holds stopped (see
    /// [`crate::freeze`]). On error the process is left as it was, without a new child;
    /// but for [`SnapshotError::NotReaped`], where it keeps a zombie child it does not
    /// see with a plain `wait`.
    pub fn take(process: &FrozenProcess) -> Result<Snapshot, SnapshotError> {
        let pid = process.pid;
        let tid = process.threads.first().copied().unwrap_or(pid);
        let main = Pid::from_raw(tid);
        // The copy must stop before it runs: auto-attach it. And it must never run:
        // EXITKILL, inherited by both forks, kills them if pipecr dies (the process
        // itself only while the fork is injected, when pipecr's death would leave it
        // running our registers anyway). Options belong to us (the freeze seized with
        // none); they are cleared again below.
        let options = ptrace::Options::PTRACE_O_TRACECLONE | ptrace::Options::PTRACE_O_EXITKILL;
        ptrace::setoptions(main, options).map_err(|source| SnapshotError::Os {
            pid,
            op: "PTRACE_SETOPTIONS",
            source,
        })?;
        let taken = Injector::new(pid, tid)
            .map_err(SnapshotError::from)
            .and_then(|mut inj| {
                let taken = fork_twice(&mut inj, pid);
                let finished = inj.finish();
                let snapshot = taken?;
                finished?;
                Ok(snapshot)
            });
        let cleared = ptrace::setoptions(main, ptrace::Options::empty());
        let snapshot = taken?;
        cleared.map_err(|source| SnapshotError::Os {
            pid,
            op: "PTRACE_SETOPTIONS",
            source,
        })?;
        Ok(snapshot)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let copy = Pid::from_raw(self.pid);
        let _ = kill(copy, Signal::SIGKILL);
        reap_traced(copy);
    }
}

/// Whether a fork of `pid` is an exact, private copy of what the dump reads: no area
/// the fork leaves out or wipes, no shared memory the process could change after the
/// tree resumes, no seccomp filter that could object to the fork.
pub fn eligible(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let seccomp = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    if seccomp != Some("0") {
        return false;
    }
    crate::mem::only_private(pid).unwrap_or(false)
}

/// The process (held by `inj`) forks `S`, `S` clones the snapshot sharing its address
/// space, `S` is killed and reaped by the process. Returns the snapshot, stopped.
fn fork_twice(inj: &mut Injector, pid: i32) -> Result<Snapshot, SnapshotError> {
    let first = fork_in(inj, pid, FORK_NO_SIGNAL)?;
    let second = Injector::new(first.as_raw(), first.as_raw())
        .map_err(SnapshotError::from)
        .and_then(|mut inner| {
            let second = fork_in(&mut inner, first.as_raw(), SHARE_VM_NO_SIGNAL);
            // `S` dies next: nothing of it needs putting back.
            let _ = inner.release();
            second
        });
    // Kill `S` and reap it as its tracer, then as its parent: the process must not keep
    // a child it never made, even a zombie.
    let _ = kill(first, Signal::SIGKILL);
    reap_traced(first);
    let ret = calls::wait4(inj, first.as_raw(), libc::__WALL | libc::WNOHANG);
    let snapshot = second.map(|pid| Snapshot { pid: pid.as_raw() });
    match ret {
        Ok(r) if r == i64::from(first.as_raw()) => snapshot,
        Ok(ret) => Err(SnapshotError::NotReaped {
            pid,
            copy: first.as_raw(),
            ret,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Injects `clone(flags)` (no new stack: the child never runs) into the thread held by
/// `inj` (which must have `PTRACE_O_TRACECLONE`) and waits for the child's first stop.
fn fork_in(inj: &mut Injector, pid: i32, flags: u64) -> Result<Pid, SnapshotError> {
    let child = calls::clone(inj, flags)?;
    let child = Pid::from_raw(child);
    loop {
        match waitpid(child, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) => return Ok(child),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                return Err(SnapshotError::Os {
                    pid,
                    op: "fork (the copy died at once)",
                    source: Errno::ESRCH,
                });
            }
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(source) => {
                let _ = kill(child, Signal::SIGKILL);
                reap_traced(child);
                return Err(SnapshotError::Os {
                    pid,
                    op: "waitpid (new copy)",
                    source,
                });
            }
        }
    }
}

/// Waits for the killed, traced `child` to be gone from our side.
fn reap_traced(child: Pid) {
    loop {
        match waitpid(child, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return,
        }
    }
}
