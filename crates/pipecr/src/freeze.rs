//! Stop and resume a process tree: every thread of every process under a root is seized
//! with `PTRACE_SEIZE` and stopped with `PTRACE_INTERRUPT`, rescanning until no new thread
//! or child appears.
//!
//! Why ptrace and not SIGSTOP or the freezer cgroup:
//! 1. A seized thread stopped by `PTRACE_INTERRUPT` is invisible to the tree: no SIGCHLD
//!    to its parent, no job-control state change, no signal to eat or forge.
//! 2. A thread blocked in `read(2)`/`write(2)` on a pipe is taken out of the syscall with a
//!    restart code and put back into it on detach: the program sees no `EINTR`.
//! 3. If pipecr dies at any moment, even by SIGKILL, the kernel detaches its tracees and
//!    they run on: the tree can never be left stopped by a crashed dump.
//!
//! ptrace belongs to the *thread* that attached: the [`FrozenTree`] must be used and
//! dropped on the thread that froze it. Waits name specific thread ids (`__WALL`), never
//! `-1`, so that other threads of the caller keep their own children.

use std::collections::BTreeMap;

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::proc::{self, ProcError};

/// Why a tree could not be frozen. The tree is resumed untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// The root pid does not exist.
    #[error("no process with pid {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// The pid is a kernel thread, which has no user space to save.
    #[error("pid {pid} ({comm}) is a kernel thread; there is nothing to checkpoint")]
    KernelThread {
        /// The pid asked for.
        pid: i32,
        /// Its name.
        comm: String,
    },
    /// A process of the tree is already traced (by a debugger, strace, another dump):
    /// a restore could not give the tracer its tracee back.
    #[error(
        "pid {pid} ({comm}) is traced by pid {tracer} ({tracer_comm}, {where_}); a restore \
         cannot give a tracer its tracee back: detach the tracer first"
    )]
    AlreadyTraced {
        /// The traced process.
        pid: i32,
        /// Its name.
        comm: String,
        /// Its tracer.
        tracer: i32,
        /// The tracer's name.
        tracer_comm: String,
        /// "a process of the tree" or "outside the tree".
        where_: &'static str,
    },
    /// A process of the tree traces a process outside it: a restore could not give it
    /// its tracee back.
    #[error(
        "pid {tracer} ({tracer_comm}) of the tree traces pid {pid} ({comm}), outside the \
         tree; a restore cannot give a tracer its tracee back: detach it first"
    )]
    TracesOutside {
        /// The tracer, in the tree.
        tracer: i32,
        /// Its name.
        tracer_comm: String,
        /// The traced process, outside the tree.
        pid: i32,
        /// Its name.
        comm: String,
    },
    /// The tree contains pipecr itself (or one of its ancestors is the root).
    #[error(
        "the tree of pid {root} contains this pipecr process (pid {me}); run pipecr from outside the tree"
    )]
    ContainsSelf {
        /// The root asked for.
        root: i32,
        /// pipecr's own pid.
        me: i32,
    },
    /// The root is a zombie: it has exited and its parent (outside the tree) has not
    /// reaped it. A zombie below the root is saved ([`FrozenTree::zombies`]).
    #[error(
        "pid {pid} is a zombie (exited, not yet reaped by its parent): there is nothing left to checkpoint"
    )]
    Zombie {
        /// The zombie.
        pid: i32,
    },
    /// The main thread of a process has exited while other threads of it run on: its
    /// leader is a zombie of a live process, which cannot be saved yet.
    #[error(
        "pid {pid}: its main thread has exited while {threads} other thread(s) run on (a zombie leader); pipecr cannot save that yet"
    )]
    ZombieLeader {
        /// The process.
        pid: i32,
        /// Its threads still alive.
        threads: usize,
    },
    /// A thread waits in `vfork` until its child execs or exits: the kernel lets no
    /// tracer stop it there, and the child runs in its memory.
    #[error(
        "thread {tid} of pid {pid} waits in vfork until its child execs or exits; a vfork \
         parent cannot be stopped: dump again once the child has exec'd or exited"
    )]
    InVfork {
        /// The process.
        pid: i32,
        /// The thread blocked in vfork.
        tid: i32,
    },
    /// A thread is an io_uring worker (`iou-sqp-PID`, `iou-wrk-PID`): it never stops
    /// under ptrace, and the io_uring instance it serves cannot be saved.
    #[error(
        "thread {tid} ({comm}) of pid {pid} is an io_uring worker: the process uses io_uring, \
         whose queues and requests in flight live in the kernel, which gives user space no way \
         to read them out or rebuild them; pipecr (like CRIU) cannot save it"
    )]
    IoUringWorker {
        /// The process.
        pid: i32,
        /// The worker thread.
        tid: i32,
        /// Its name.
        comm: String,
    },
    /// A ptrace request failed.
    #[error("thread {tid} of pid {pid}: {op} failed")]
    Ptrace {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The request.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `/proc` could not be read.
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// One process of a frozen tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenProcess {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid (the root's parent is outside the tree).
    pub ppid: i32,
    /// Process group and session.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Command name.
    pub comm: String,
    /// Thread ids, sorted; the first equals `pid`.
    pub threads: Vec<i32>,
    /// The signal of the group stop it was in (`SIGSTOP`, `SIGTSTP`, `SIGTTIN`,
    /// `SIGTTOU`), 0 when it was running: the freeze sees it as the signal of the
    /// `PTRACE_EVENT_STOP` each seized thread reports (`SIGTRAP` for a running one). The
    /// tree's detach puts it back into that stop (the kernel does: `__ptrace_unlink`).
    pub stop_signal: i32,
}

/// A child of a process of the tree that has exited and is not yet reaped: nothing of it
/// is left but what its parent's `wait` returns. It is not seized (a zombie cannot be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenZombie {
    /// Its pid.
    pub pid: i32,
    /// Its parent, a process of the tree.
    pub ppid: i32,
    /// Process group it was in.
    pub pgid: i32,
    /// Session it was in.
    pub sid: i32,
    /// What its parent's `waitpid` returns: exit code << 8, or the terminating signal
    /// (| 0x80 for a core dump).
    pub exit_status: i32,
}

/// A stopped process tree. Dropping it resumes every thread exactly as it was.
#[derive(Debug)]
pub struct FrozenTree {
    root: i32,
    /// Processes by pid; a parent always has a smaller discovery index than its child.
    processes: Vec<FrozenProcess>,
    /// The zombie children of processes of the tree, in discovery order.
    zombies: Vec<FrozenZombie>,
    /// Every seized thread, with a signal to hand back on detach when the stop we saw
    /// was the delivery of that signal.
    seized: BTreeMap<i32, Option<Signal>>,
    /// The threads found in a group stop, with its signal.
    group_stopped: BTreeMap<i32, i32>,
}

impl FrozenTree {
    /// The root pid.
    pub fn root(&self) -> i32 {
        self.root
    }

    /// The processes of the tree, parents before children.
    pub fn processes(&self) -> &[FrozenProcess] {
        &self.processes
    }

    /// The zombie children of the tree's processes (never the root): exited, not yet
    /// reaped, and not stopped (nothing of them runs).
    pub fn zombies(&self) -> &[FrozenZombie] {
        &self.zombies
    }

    /// The number of threads stopped.
    pub fn thread_count(&self) -> usize {
        self.seized.len()
    }

    /// The signal whose delivery thread `tid` was stopped in, if the freeze caught it
    /// there: it is pending for the thread, and is handed back when pipecr detaches the
    /// tree. If pipecr is killed before it detaches, the signal is lost: pipecr has
    /// already waited for that stop, which suppresses it (docs/INJECTION.md).
    pub fn intercepted_signal(&self, tid: i32) -> Option<Signal> {
        self.seized.get(&tid).copied().flatten()
    }

    /// Resumes the tree now (dropping it does the same).
    pub fn resume(mut self) {
        self.detach_all();
    }

    /// Kills every process of the tree while it is still stopped, so nothing it does after
    /// the dump (consume a pipe, write output) can be lost or done twice by a restored
    /// copy, and returns once each has exited (a zombie until its parent reaps it: its
    /// PID is free again only then).
    pub fn kill(mut self) {
        // Exit is observed through pidfds, opened before the kill so that a PID cannot
        // be reused by another process in between.
        let pidfds: Vec<_> = self
            .processes
            .iter()
            .filter_map(|p| rustix::process::Pid::from_raw(p.pid))
            .filter_map(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            })
            .collect();
        for p in &self.processes {
            // SIGKILL ends a ptrace-stopped thread group too; one already gone is fine.
            let _ = nix::sys::signal::kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
        // A traced thread that dies stays a zombie until its tracer has waited for it,
        // and its process is not seen to exit before: wait for every thread but the
        // leaders. A leader's zombie is its parent's to reap (waiting here could reap a
        // process the caller means to wait for); the kernel hands it over once this
        // process waits for it or exits.
        let seized = std::mem::take(&mut self.seized);
        let leaders: Vec<i32> = self.processes.iter().map(|p| p.pid).collect();
        for tid in seized.into_keys().filter(|tid| !leaders.contains(tid)) {
            loop {
                match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break,
                    Err(Errno::EINTR) | Ok(_) => continue,
                    // Not ours to wait for any more (already reaped): it is gone.
                    Err(_) => break,
                }
            }
        }
        for pidfd in pidfds {
            // A pidfd polls readable once its process has exited.
            let mut fds = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
        }
    }

    fn detach_all(&mut self) {
        if !self.seized.is_empty() {
            tracing::debug!(
                root = self.root,
                threads = self.seized.len(),
                "detaching the tree"
            );
        }
        for (tid, signal) in std::mem::take(&mut self.seized) {
            // A thread that exited meanwhile answers ESRCH: nothing to resume.
            let _ = ptrace::detach(Pid::from_raw(tid), signal);
        }
    }
}

impl Drop for FrozenTree {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Stops every thread of every process in the tree rooted at `root`.
///
/// Refuses, leaving everything untouched: a pid that does not exist, a kernel thread, a
/// process already traced, a root that is a zombie, a process whose main thread exited
/// while others run, a tree that contains the caller. A zombie child of a process of the
/// tree is recorded ([`FrozenTree::zombies`]), not seized.
pub fn freeze(root: i32) -> Result<FrozenTree, FreezeError> {
    let (tree, scan) = freeze_with_tracer_scan(root)?;
    scan.check(&tree)?;
    Ok(tree)
}

/// A scan of every process's `TracerPid:` running on its own thread (it only reads
/// `/proc`), started by [`freeze_with_tracer_scan`]: a few milliseconds on a busy
/// machine, which a dump spends beside its own work instead of before it.
#[derive(Debug)]
pub struct TracerScan(std::thread::JoinHandle<Vec<(i32, i32)>>);

impl TracerScan {
    /// Waits for the scan and refuses `tree` when one of its processes traces a process
    /// outside it (a tracee inside the tree was refused when it was seized).
    pub fn check(self, tree: &FrozenTree) -> Result<(), FreezeError> {
        // The scan only reads /proc and does not panic; if it somehow did, refuse rather
        // than skip the check.
        let traced = self.0.join().map_err(|_| {
            FreezeError::Proc(ProcError::Parse {
                path: "/proc/*/status".into(),
                what: "a TracerPid: scan that ended",
            })
        })?;
        refuse_tracing_outside(tree, &traced)
    }
}

/// [`freeze`], with the check of processes the tree traces outside itself left to the
/// caller: the scan it needs runs on another thread ([`TracerScan`]), for the caller to
/// [`check`](TracerScan::check) before it commits to anything.
pub fn freeze_with_tracer_scan(root: i32) -> Result<(FrozenTree, TracerScan), FreezeError> {
    tracing::debug!(root, "freezing the tree");
    let me = std::process::id() as i32;
    let stat = proc::stat(root).map_err(|e| match e {
        ProcError::NoSuchProcess { pid } => FreezeError::NoSuchProcess { pid },
        e => e.into(),
    })?;
    if stat.is_kernel_thread() {
        return Err(FreezeError::KernelThread {
            pid: root,
            comm: stat.comm,
        });
    }
    if is_ancestor_or_self(root, me)? {
        return Err(FreezeError::ContainsSelf { root, me });
    }
    // Who traces whom: a scan of every process of the machine. ptrace requests stay on
    // this thread (the one that seizes); the tree's own threads become traced by us
    // meanwhile, which the scan leaves out.
    let scan = TracerScan(std::thread::spawn(move || traced_processes(me)));
    let tree = freeze_tree(root, me)?;
    Ok((tree, scan))
}

/// Seizes and stops every thread of the tree under `root` (the work of [`freeze`] but
/// the check of tracers outside the tree).
fn freeze_tree(root: i32, me: i32) -> Result<FrozenTree, FreezeError> {
    let mut tree = FrozenTree {
        root,
        processes: Vec::new(),
        zombies: Vec::new(),
        seized: BTreeMap::new(),
        group_stopped: BTreeMap::new(),
    };
    // On any error below, `tree` is dropped and every thread seized so far resumes.
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if pid != root
            && let Some(zombie) = zombie_child(pid)?
        {
            tree.zombies.push(zombie);
            continue;
        }
        let Some(process) = freeze_process(&mut tree, pid, me)
            .inspect_err(|e| tracing::debug!(pid, "cannot freeze: {e}"))?
        else {
            continue;
        };
        tracing::debug!(pid, threads = process.threads.len(), comm = %process.comm, "stopped");
        let mut children = Vec::new();
        for &tid in &process.threads {
            match proc::children(pid, tid) {
                Ok(found) => children.extend(found),
                // The thread exited between the scan and now: it forks nothing more.
                Err(ProcError::NoSuchProcess { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tree.processes.push(process);
        // Depth first, smallest pid first: parents come before their children and each
        // subtree is contiguous, so the list reads as a tree.
        children.sort_unstable();
        queue.extend(children.into_iter().rev());
    }
    Ok(tree)
}

/// The name of `pid` for messages, `?` once it is gone.
fn comm_of(pid: i32) -> String {
    proc::stat(pid).map_or_else(|_| "?".to_owned(), |s| s.comm)
}

/// The refusal of a process `pid` traced by `tracer` (not pipecr), naming both and
/// saying whether the tracer is in the tree (discovered so far, or below `pid`).
fn traced(tree: &FrozenTree, pid: i32, tracer: i32) -> FreezeError {
    let mut in_tree = tree
        .processes
        .iter()
        .any(|p| p.pid == tracer || p.threads.contains(&tracer));
    // A tracer below the root not frozen yet: one of its ancestors is the root.
    let mut cur = tracer;
    while !in_tree && cur > 1 {
        if cur == tree.root {
            in_tree = true;
        }
        cur = proc::stat(cur).map_or(0, |s| s.ppid);
    }
    FreezeError::AlreadyTraced {
        pid,
        comm: comm_of(pid),
        tracer,
        tracer_comm: comm_of(tracer),
        where_: if in_tree {
            "a process of the tree"
        } else {
            "outside the tree"
        },
    }
}

/// Every process traced by another than `me`, with its tracer: `(pid, tracer tid)`, from
/// the `TracerPid:` of each process's main thread (a tracer that traces some threads of a
/// process but not its main one is not seen).
fn traced_processes(me: i32) -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let tracer = proc::tracer(pid).ok()?;
            (tracer != 0 && tracer != me).then_some((pid, tracer))
        })
        .collect()
}

/// Refuses a tree one of whose processes traces a process outside it (a tracee inside
/// the tree was refused when it was seized), among `traced` ([`traced_processes`], read
/// just before the freeze: a tracer that attached in between is not seen).
fn refuse_tracing_outside(tree: &FrozenTree, traced: &[(i32, i32)]) -> Result<(), FreezeError> {
    for &(pid, tracer) in traced {
        if tree.processes.iter().any(|p| p.pid == pid) {
            continue;
        }
        if let Some(p) = tree.processes.iter().find(|p| p.threads.contains(&tracer)) {
            return Err(FreezeError::TracesOutside {
                tracer: p.pid,
                tracer_comm: p.comm.clone(),
                pid,
                comm: comm_of(pid),
            });
        }
    }
    Ok(())
}

/// `pid`, a child of a stopped process of the tree, when it is a zombie: exited, with no
/// thread left but its leader's. `None` for a live process (or one gone meanwhile).
fn zombie_child(pid: i32) -> Result<Option<FrozenZombie>, FreezeError> {
    let stat = match proc::stat(pid) {
        Ok(stat) => stat,
        Err(ProcError::NoSuchProcess { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if stat.state != 'Z' {
        return Ok(None);
    }
    // A leader whose other threads run on is a zombie too: that process is alive, and
    // freeze_process refuses it.
    match proc::threads(pid) {
        Ok(threads) if threads.len() > 1 => return Ok(None),
        Ok(_) => {}
        Err(ProcError::NoSuchProcess { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    // Its parent is stopped: nobody reaps it while we read.
    let exit_status = proc::exit_code(pid)?;
    Ok(Some(FrozenZombie {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        sid: stat.sid,
        exit_status,
    }))
}

/// True when `pid` is `me` or one of `me`'s ancestors.
fn is_ancestor_or_self(pid: i32, me: i32) -> Result<bool, FreezeError> {
    let mut cur = me;
    while cur > 0 {
        if cur == pid {
            return Ok(true);
        }
        cur = proc::stat(cur)?.ppid;
    }
    Ok(false)
}

/// Seizes and stops every thread of `pid` until its thread list is stable. Returns `None`
/// when the process exited before it could be stopped.
fn freeze_process(
    tree: &mut FrozenTree,
    pid: i32,
    me: i32,
) -> Result<Option<FrozenProcess>, FreezeError> {
    if pid == me {
        return Err(FreezeError::ContainsSelf {
            root: tree.root,
            me,
        });
    }
    let stat = match proc::stat(pid) {
        Ok(stat) => stat,
        Err(ProcError::NoSuchProcess { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if stat.state == 'Z' {
        // Its other threads (a zombie leader of a live process), if any. A zombie child
        // that is not the root never comes here (zombie_child).
        let threads = proc::threads(pid).map_or(0, |t| t.len().saturating_sub(1));
        if threads == 0 {
            return Err(FreezeError::Zombie { pid });
        }
        return Err(FreezeError::ZombieLeader { pid, threads });
    }
    let tracer = proc::tracer(pid).unwrap_or(0);
    if tracer != 0 && tracer != me {
        return Err(traced(tree, pid, tracer));
    }
    loop {
        let threads = match proc::threads(pid) {
            Ok(t) => t,
            Err(ProcError::NoSuchProcess { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut new = false;
        for &tid in &threads {
            if tree.seized.contains_key(&tid) {
                continue;
            }
            new = true;
            match seize_thread(pid, tid) {
                Ok(Some(Seized { signal, group_stop })) => {
                    tree.seized.insert(tid, signal);
                    if let Some(sig) = group_stop {
                        tree.group_stopped.insert(tid, sig);
                    }
                }
                Ok(None) => {}
                Err(SeizeError::Traced(tracer)) => return Err(traced(tree, pid, tracer)),
                Err(SeizeError::Freeze(e)) => return Err(e),
            }
        }
        if !new {
            let threads: Vec<i32> = threads
                .into_iter()
                .filter(|t| tree.seized.contains_key(t))
                .collect();
            if threads.is_empty() {
                return Ok(None);
            }
            let stop_signal = threads
                .iter()
                .find_map(|t| tree.group_stopped.get(t).copied())
                .unwrap_or(0);
            return Ok(Some(FrozenProcess {
                pid,
                ppid: stat.ppid,
                pgid: stat.pgid,
                sid: stat.sid,
                comm: stat.comm,
                threads,
                stop_signal,
            }));
        }
    }
}

/// A thread seized and stopped.
struct Seized {
    /// A signal whose delivery we intercepted and must hand back on detach.
    signal: Option<Signal>,
    /// The signal of the group stop it was in, if it was.
    group_stop: Option<i32>,
}

/// Why [`seize_thread`] failed.
enum SeizeError {
    /// Another tracer has it.
    Traced(i32),
    Freeze(FreezeError),
}

impl From<FreezeError> for SeizeError {
    fn from(e: FreezeError) -> Self {
        SeizeError::Freeze(e)
    }
}

/// Seizes one thread and waits until it is stopped. `Ok(None)` when it exited first.
fn seize_thread(pid: i32, tid: i32) -> Result<Option<Seized>, SeizeError> {
    let t = Pid::from_raw(tid);
    let fail = |op: &'static str| {
        move |e: Errno| FreezeError::Ptrace {
            pid,
            tid,
            op,
            source: std::io::Error::from_raw_os_error(e as i32),
        }
    };
    // An io_uring worker would never stop: refused before it is seized.
    if let Ok(stat) = proc::stat(tid)
        && stat.is_io_worker()
    {
        return Err(FreezeError::IoUringWorker {
            pid,
            tid,
            comm: stat.comm,
        }
        .into());
    }
    // A vfork parent would never stop: refused before it is seized.
    if proc::in_vfork_wait(pid, tid).map_err(FreezeError::from)? {
        return Err(FreezeError::InVfork { pid, tid }.into());
    }
    match ptrace::seize(t, ptrace::Options::empty()) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(None),
        Err(Errno::EPERM) => {
            if let Ok(tracer) = proc::tracer(tid)
                && tracer != 0
            {
                return Err(SeizeError::Traced(tracer));
            }
            // The kernel answers EPERM, not ESRCH, for a thread that has begun to exit
            // and is not yet gone: such a thread exited first. A dead leader is a zombie.
            match proc::stat(tid) {
                Err(ProcError::NoSuchProcess { .. }) => return Ok(None),
                Ok(stat) if stat.state == 'X' || (stat.state == 'Z' && tid != pid) => {
                    return Ok(None);
                }
                // A leader that died while we seized its threads.
                Ok(stat) if stat.state == 'Z' => {
                    let threads = proc::threads(pid).map_or(0, |t| t.len().saturating_sub(1));
                    return Err(FreezeError::ZombieLeader { pid, threads }.into());
                }
                _ => {}
            }
            return Err(fail("PTRACE_SEIZE")(Errno::EPERM).into());
        }
        Err(e) => return Err(fail("PTRACE_SEIZE")(e).into()),
    }
    let detach_on_error = |e: FreezeError| {
        let _ = ptrace::detach(t, None);
        e
    };
    match ptrace::interrupt(t) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(None),
        Err(e) => return Err(detach_on_error(fail("PTRACE_INTERRUPT")(e)).into()),
    }
    // Entered vfork between the check and the seize: interrupted from now on, it can
    // enter no other (a clone with a stop pending restarts after the stop), so a second
    // look is final. Not stopped, it cannot be detached: the tracer's exit, or the
    // child's exec, lets it go on untouched.
    if proc::in_vfork_wait(pid, tid).map_err(FreezeError::from)? {
        let _ = ptrace::detach(t, None);
        return Err(FreezeError::InVfork { pid, tid }.into());
    }
    loop {
        match waitpid(t, Some(WaitPidFlag::__WALL)) {
            // The stop PTRACE_INTERRUPT asked for: SIGTRAP, or for a thread in a group
            // stop (or one under way) that stop's signal (`do_jobctl_trap`).
            Ok(WaitStatus::PtraceEvent(_, signal, _)) => {
                return Ok(Some(Seized {
                    signal: None,
                    group_stop: (signal != Signal::SIGTRAP).then_some(signal as i32),
                }));
            }
            // A signal arrived first: the thread is stopped in its delivery. Keep it
            // stopped there and hand the signal back when the tree resumes.
            Ok(WaitStatus::Stopped(_, signal)) => {
                return Ok(Some(Seized {
                    signal: Some(signal),
                    group_stop: None,
                }));
            }
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(None),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(detach_on_error(fail("waitpid")(e)).into()),
        }
    }
}
