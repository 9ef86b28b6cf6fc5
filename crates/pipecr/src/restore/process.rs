//! Restore a tree of saved processes, with their PIDs and TIDs, the root a new
//! child of the caller and every other process a child of its restored parent.
//!
//! This module owns the order of operations and sits on top of `restore/`: no step
//! imports it. The checks run before anything is created are `restore::preflight`'s
//! ([`check_tree`], [`check_supported`]), the error and the saved process are
//! `restore::error`'s and `restore::saved`'s ([`ProcessRestoreError`], [`SavedProcess`]:
//! all re-exported here); the descriptor table comes from [`super::fdtable`], the injection
//! mechanics from [`crate::inject`], the raw calls from [`crate::sys`].
//!
//! Before any process, [`restore_tree`] creates the System V IPC objects of the image with
//! their ids ([`crate::ipc`]; refused before anything is created when one is taken,
//! removed again when the restore fails); the processes attach their segments as their
//! images are replaced (step 2), and segments saved as removed are removed again once all
//! have.
//!
//! 1. [`spawn_tree_stopped`]: `clone3` with `set_tid` = the saved PID of the root. Each new
//!    process sets its name and session/group, creates its own saved children the same way
//!    (they inherit session and group; first, it maps and fills with its saved pages each
//!    private area it shares pages in with one of them, for them to inherit copy-on-write:
//!    `restore::cow`) and waits until each has stopped, then installs its
//!    descriptor table, closes everything else, sets cwd, umask and rlimits, and stops
//!    itself with `SIGSTOP` (errors go back through a close-on-exec pipe shared by all, as
//!    text, one line per process). The root first creates every open file of the tree
//!    once ([`super::fdtable::create_all`]), parked above every saved number; the children
//!    inherit the parked set and each installs its table from it
//!    ([`super::fdtable::install`]), so what processes shared is shared again. When a
//!    kind restores open files once every table of the tree is installed
//!    ([`crate::files::Stage::AfterTree`]), each process creates its own after that,
//!    before its cwd and limits: the root once its table is installed (its descendants
//!    installed theirs before they stopped), every other process when its parent
//!    continues it from a first stop, then stopping again
//!    ([`super::fdtable::LateFiles`]).
//!    A process's saved zombie children ([`proto::Zombie`]) are created after its live
//!    ones, with their PIDs, and exit at once with their saved status (`_exit`, or the
//!    saved signal at its default action with no core written, `RLIMIT_CORE` 0 and not
//!    dumpable, so a core dump's 0x80 bit does not come back); the parent waits for
//!    each with `waitid(WEXITED | WNOWAIT)`, which leaves it a zombie for the restored
//!    program's own `wait`, and checks its status, group and session. Nothing else touches them: they are not seized,
//!    replaced nor released; a failed restore reaps them with the rest ([`tree_pids`]).
//!    Only a single-threaded caller may do this: the children
//!    allocate (see [`crate::sys::clone3::clone3_with_tid`]).
//! 2. [`restore_tree`] continues them all and seizes them, children first (the news of
//!    each continue reaches its parent before the parent is restored, and is discarded
//!    there), then replaces each one's address space,
//!    signal state, threads and registers, parents first (`restore::image`, with
//!    `restore::mm`, `restore::signals` and `restore::threads`), leaving each in a
//!    ptrace-stop. Once every process is ready, all are detached, children first; the
//!    pending signals the saved mask lets through are delivered then, to the saved
//!    handlers.
//!
//! Known gaps (each refused with [`ProcessRestoreError::Unsupported`] unless said):
//! shared anonymous memory, memfds and deleted files mapped (memory objects); other kernel special areas; a root other than `/`; a
//! session or process group other than its parent's (the caller's, for the root) unless the
//! process leads it (unless the caller restores a shell job); a descriptor table,
//! filesystem context, address space or signal-handler table shared with a process other
//! than the parent (one shared with the parent is given back: the child is created with
//! `CLONE_FILES` / `CLONE_FS` / `CLONE_VM` / `CLONE_SIGHAND`, the parent installs the
//! shared table for both, and a child sharing the address space runs its set-up on a
//! stack of its own while its parent waits for it to stop,
//! [`crate::sys::clone3::clone3_vm_with_tid`], and is loaded with the first process of
//! that address space). Not refused: an exit signal other than
//! `SIGCHLD` becomes `SIGCHLD`; a pdeathsig fires when the restored parent's main
//! thread exits (the saved process may have been created by another of its threads); a
//! process restored stopped may find a `SIGCHLD` its parent had already taken queued to
//! that parent again (its stop is made again while the parent is held; pending, that
//! standard signal absorbs the parent's next `SIGCHLD`, so a parent that reads only
//! exits, like util-linux `script`, can miss one). A dump saves signal handlers by default; only one asked
//! not to inject (`--no-inject`, `handlers_read` false) leaves them out, and its
//! processes come back with default dispositions, no interval timer, no alternate signal
//! stack and no `clear_child_tid`, as that dump chose (the CLI says so in one line). A
//! thread saved inside a
//! restartable syscall enters it again before it is released; only a signal restored as
//! pending, delivered first, sees the call restarted after its handler even without
//! `SA_RESTART`.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid as NixPid;
use pipecr_image::Image;
use pipecr_image::proto;

use super::error::{Result, errno, os};
use super::external::Inherited;
use super::image::{hold, load_image};
use super::options::RestoreOptions;
// What callers of the orchestrator name through it: the error, the saved process and
// the checks live below it, in modules it uses.
pub use super::error::ProcessRestoreError;
pub use super::preflight::{check_supported, check_tree};
pub use super::saved::{SavedProcess, load};

/// Every PID a restore of `tree` creates: its processes' (tree order), then their saved
/// zombie children's ([`proto::Zombie`]).
pub fn tree_pids(tree: &[SavedProcess]) -> Vec<i32> {
    tree.iter()
        .map(SavedProcess::pid)
        .chain(
            tree.iter()
                .flat_map(|p| p.process.zombies.iter().map(|z| z.pid)),
        )
        .collect()
}

/// Every ID the restore of `tree` takes: [`tree_pids`], then the IDs of the threads
/// other than main ones. A thread ID taken by another process would make the restore
/// fail half-way (its `clone3` with `set_tid` refused), so the checks look at these.
pub fn tree_ids(tree: &[SavedProcess]) -> Vec<i32> {
    let mut ids = tree_pids(tree);
    for p in tree {
        let pid = p.pid();
        ids.extend(p.core.threads.iter().map(|t| t.tid).filter(|&t| t != pid));
    }
    ids
}

/// Whether a process or thread with this ID exists now (`/proc/ID` answers for a
/// thread's ID too, though `/proc` does not list it).
pub fn pid_in_use(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Restores `saved` from `image` into a new child of the caller with the saved PID, and
/// lets it run. Returns its PID; the caller reaps it.
///
/// On any error every process created is killed and reaped. The caller must be
/// single-threaded ([`ProcessRestoreError::MultiThreadedCaller`] otherwise).
pub fn restore(image: &Image, saved: &SavedProcess) -> Result<NixPid> {
    restore_tree(
        image,
        std::slice::from_ref(saved),
        &RestoreOptions::default(),
    )
}

/// Restores the processes of `tree` (as [`check_tree`] accepts it) with their PIDs, each
/// a child of its restored parent, the root a child of the caller, and lets them run.
/// Returns the root's PID; the caller reaps it.
///
/// 1. The root is created ([`spawn_tree_stopped`]); every process creates its own
///    children before it sets up its descriptors, waits until each has stopped itself,
///    then stops itself: once the root has stopped, all have.
/// 2. All are continued (into `pause()`), then seized, children before their parents:
///    the `SIGCHLD` each continue sends to a parent (sent when the child next runs,
///    which its seizing waits for) is then discarded (default disposition, not blocked,
///    not traced) rather than queued to a process being restored, where it would stand
///    in for the next `SIGCHLD` the program waits for (`restore::image::hold`).
/// 3. Each image is replaced, parents first, and left in a ptrace-stop; only when all are
///    ready are they detached, so no restored process runs while another is half done
///    (a child that exits at once has its parent's handlers to signal).
///
/// Before anything is created, every descriptor that led outside the tree is given a
/// source from `options` ([`super::external::resolve`]), or the restore is refused.
///
/// On any error every process created is killed and reaped: the caller is made a child
/// subreaper while restoring so orphans come back to it. The caller must be
/// single-threaded ([`ProcessRestoreError::MultiThreadedCaller`] otherwise).
///
/// Everything is read through `image`: its files were checked when it was opened, and
/// record files are checked again as they are read.
///
/// Each step is logged through `tracing` (a `restore` span with the root's PID, a
/// `process` span per process); [`restore_tree_timed`] also says how long each took.
///
/// # Example
///
/// Dump a child with [`crate::dump::dump_tree`], bring it back with its PID, check that
/// it runs, end it. Needs `CAP_SYS_PTRACE` and `CAP_CHECKPOINT_RESTORE` (root).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::process::{Command, Stdio};
/// use pipecr::files::DumpOptions;
/// use pipecr::restore::{RestoreOptions, process};
///
/// // The child holds only /dev/null: nothing leads outside the tree.
/// pipecr::sys::fd::cloexec_from(3)?;
/// let mut child = Command::new("sleep")
///     .arg("100")
///     .stdin(Stdio::null())
///     .stdout(Stdio::null())
///     .stderr(Stdio::null())
///     .spawn()?;
/// let pid = child.id() as i32;
/// // Killed once the image is written (the library's default lets it run on).
/// let kill_after = DumpOptions { leave_running: false, ..DumpOptions::default() };
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// pipecr::dump::dump_tree(pid, &path, &kill_after)?;
/// child.wait()?; // killed by the dump; reaped, so its PID is free
///
/// let image = pipecr_image::Image::open(&path)?;
/// let saved: Vec<pipecr_image::proto::Process> = image.read_records(pipecr_image::TREE)?;
/// let tree = saved
///     .iter()
///     .map(|p| process::load(&image, p.pid))
///     .collect::<Result<Vec<_>, _>>()?;
/// let root = process::restore_tree(&image, &tree, &RestoreOptions::default())?;
/// assert_eq!(root.as_raw(), pid);
/// assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm"))?, "sleep\n");
/// process::kill_and_reap(root);
/// # Ok(())
/// # }
/// ```
pub fn restore_tree(
    image: &Image,
    tree: &[SavedProcess],
    options: &RestoreOptions,
) -> Result<NixPid> {
    restore_tree_timed(image, tree, options).map(|(root, _)| root)
}

/// How long each step of a restore took, in the order they ran: `create` (processes,
/// open files and descriptor tables), `replace` (address spaces, signals, threads,
/// registers), `release` (every process let run).
#[derive(Debug, Clone, Default)]
pub struct RestoreTimings {
    /// The steps and their wall-clock time.
    pub stages: Vec<(&'static str, Duration)>,
}

impl RestoreTimings {
    fn stage(&mut self, name: &'static str, started: Instant) {
        let took = started.elapsed();
        tracing::debug!(
            stage = name,
            ms = took.as_secs_f64() * 1e3,
            "restore step done"
        );
        self.stages.push((name, took));
    }
}

/// [`restore_tree`], returning as well how long each step took.
pub fn restore_tree_timed(
    image: &Image,
    tree: &[SavedProcess],
    options: &RestoreOptions,
) -> Result<(NixPid, RestoreTimings)> {
    let pids: Vec<i32> = tree.iter().map(SavedProcess::pid).collect();
    let root_pid = *pids.first().ok_or_else(|| ProcessRestoreError::Invalid {
        pid: 0,
        what: "tree.img holds no process".to_owned(),
    })?;
    // Each kind checks its records, and what it needs of the restorer to create them
    // (capabilities: CAP_NET_RAW for packet and raw sockets, CAP_SYS_ADMIN for a
    // fanotify group; network interfaces), before anything is created; the root asks
    // again as it creates the open files.
    crate::files::preflight(image)?;
    let mut inherited = super::external::resolve(image, options)?;
    // The memory objects, once each, before any process: held here until the tree is
    // released, handed to the root (which opens descriptors of memfds and deleted files
    // from them) and to each process (which maps them).
    inherited.set_objects(super::objects::create(image)?);
    rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(std::process::id() as i32))
        .map_err(|e| os(root_pid, "prctl(PR_SET_CHILD_SUBREAPER)")(e.into()))?;
    let _span = tracing::info_span!("restore", root = root_pid).entered();
    tracing::info!(root = root_pid, processes = pids.len(), "restore starts");
    let mut timings = RestoreTimings::default();
    let result = restore_tree_inner(image, tree, &pids, &inherited, &mut timings);
    let _ = rustix::process::set_child_subreaper(None);
    match &result {
        Ok(_) => tracing::info!(root = root_pid, "restore done"),
        Err(e) => tracing::debug!(root = root_pid, "restore failed, tree killed: {e}"),
    }
    result.map(|root| (root, timings))
}

fn restore_tree_inner(
    image: &Image,
    tree: &[SavedProcess],
    pids: &[i32],
    inherited: &Inherited,
    timings: &mut RestoreTimings,
) -> Result<NixPid> {
    // System V IPC objects first, with their ids (refused before anything is created
    // when one is taken): the processes attach segments as their images are loaded.
    // Dropping `ipc` before it is finished removes every object it created.
    let objects = crate::ipc::load(image)?;
    crate::ipc::check(&objects)?;
    let ipc = crate::ipc::create(image, &objects)?;
    let started = Instant::now();
    let (root, prefilled) = spawn_tree(image, tree, inherited)?;
    timings.stage("create", started);
    let steps = || -> Result<()> {
        for &pid in pids {
            kill(NixPid::from_raw(pid), Signal::SIGCONT).map_err(errno(pid, "kill SIGCONT"))?;
        }
        // Each under ptrace, children first: the news of each continue reaches its
        // parent while the parent is still ours, and is discarded there.
        hold(tree)?;
        let started = Instant::now();
        // A process sharing an earlier one's address space is loaded with it.
        for saved in tree.iter().filter(|p| p.process.shares_vm_with == 0) {
            let _span = tracing::debug_span!("process", pid = saved.pid()).entered();
            tracing::debug!(pid = saved.pid(), "replacing the image");
            load_image(image, tree, saved, &prefilled, inherited.objects())?;
        }
        ipc.finish()?;
        timings.stage("replace", started);
        // What open files finish once the tree is ready (TCP connections leave repair
        // mode, their network lock goes): nothing can fail after this but the release.
        let files: Vec<pipecr_image::proto::OpenFile> = image.read_records(pipecr_image::FILES)?;
        let tables: Vec<pipecr_image::proto::FdTable> = image.read_records(pipecr_image::FDS)?;
        let processes: Vec<pipecr_image::proto::Process> =
            image.read_records(pipecr_image::TREE)?;
        crate::files::before_release(&crate::files::Saved {
            processes: &processes,
            tables: &tables,
            files: &files,
            pipes: &[],
        })?;
        let started = Instant::now();
        super::threads::release_tree(tree)?;
        timings.stage("release", started);
        Ok(())
    };
    match steps() {
        Ok(()) => Ok(root),
        Err(e) => {
            // The zombies too: their parents' deaths hand them to us, to reap.
            kill_tree(&tree_pids(tree));
            Err(e)
        }
    }
}

/// Kills our child `pid` and reaps it (waiting for that PID only).
pub fn kill_and_reap(pid: NixPid) {
    let _ = kill(pid, Signal::SIGKILL);
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Kills every process of a tree being restored (all of them first, so that the orphans
/// come to us, the subreaper) and reaps those that are ours: the root, and the orphans.
/// A PID held by a process that is not ours (taken after the checks) is left alone.
/// Parents come before their children in `pids` (zombies last, [`tree_pids`]): once a
/// parent is reaped, its children are ours.
pub(super) fn kill_tree(pids: &[i32]) {
    // Only what this restore created: a saved PID may have been taken, after the checks,
    // by a process that is none of ours (that is often why the restore failed). Ours are
    // our children and the children of ours (orphans come to us, the subreaper), and
    // `pids` lists parents first.
    let me = std::process::id() as i32;
    let mut ours: Vec<i32> = Vec::with_capacity(pids.len());
    for &pid in pids {
        if let Ok(stat) = crate::proc::stat(pid)
            && (stat.ppid == me || ours.contains(&stat.ppid))
        {
            ours.push(pid);
        }
    }
    let pids = &ours[..];
    // Threads we created and trace: each is a zombie until we reap it, and its group
    // leader is not reported before that.
    let threads: Vec<i32> = pids
        .iter()
        .flat_map(|&pid| crate::proc::threads(pid).unwrap_or_default())
        .filter(|tid| !pids.contains(tid))
        .collect();
    for &pid in pids {
        let _ = kill(NixPid::from_raw(pid), Signal::SIGKILL);
    }
    for &tid in &threads {
        loop {
            match waitpid(NixPid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
    for &pid in pids {
        loop {
            match waitpid(NixPid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
                Err(Errno::EINTR) => continue,
                // Gone, or not (or no longer) ours to reap.
                Err(_) => break,
                // Reported to us as its tracer: it may still be its parent's zombie, and
                // come to us to reap once that parent is gone.
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) if !pid_in_use(pid) => {
                    break;
                }
                Ok(_) => continue,
            }
        }
    }
}

/// Creates the root of `tree` with its saved PID; it and every process below it create
/// their children, set up descriptors, cwd, umask, rlimits, session and group, and stop
/// themselves (`SIGSTOP`). Returns once the root, and so every process, has stopped.
///
/// The root creates the tree's open files, taking the descriptors in `inherited` (held
/// by the caller, inherited through `clone3`) for the external ones.
///
/// Refuses to run in a multi-threaded process. On error, every process created is killed
/// and reaped.
pub fn spawn_tree_stopped(
    image: &Image,
    tree: &[SavedProcess],
    inherited: &Inherited,
) -> Result<NixPid> {
    // Areas filled ahead that the caller does not know of are unmapped when it loads
    // the images.
    spawn_tree(image, tree, inherited).map(|(root, _)| root)
}

/// [`spawn_tree_stopped`], returning as well the areas the processes filled ahead for
/// their children ([`super::cow`]).
fn spawn_tree(
    image: &Image,
    tree: &[SavedProcess],
    inherited: &Inherited,
) -> Result<(NixPid, Vec<super::cow::Prefilled>)> {
    let Some(root) = tree.first() else {
        return Err(ProcessRestoreError::Invalid {
            pid: 0,
            what: "tree.img holds no process".to_owned(),
        });
    };
    let pid = root.pid();
    let threads = crate::proc::threads(std::process::id() as i32)
        .map(|t| t.len())
        .unwrap_or(0);
    if threads != 1 {
        return Err(ProcessRestoreError::MultiThreadedCaller { threads });
    }
    if let Some(p) = tree_ids(tree).into_iter().find(|&p| pid_in_use(p)) {
        return Err(ProcessRestoreError::PidInUse { pid: p });
    }
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| os(pid, "pipe2")(e.into()))?;
    // Areas filled ahead are reported here (non-blocking: one that does not fit is not
    // kept; all are read once every process has stopped).
    let (rep_r, rep_w) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .map_err(|e| os(pid, "pipe2")(e.into()))?;
    let me = rustix::process::getpid();
    let child = match crate::sys::clone3::clone3_with_tid(0, libc::SIGCHLD, &[pid]) {
        Ok(Some(child)) => child,
        Ok(None) => {
            drop(err_r);
            drop(rep_r);
            child_setup(
                image,
                tree,
                0,
                me,
                err_w,
                &rep_w,
                OpenFiles::Create(inherited),
            )
        }
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            return Err(ProcessRestoreError::PidInUse { pid });
        }
        Err(e) => return Err(os(pid, "clone3 with set_tid")(e)),
    };
    drop(err_w);
    drop(rep_w);
    let child = NixPid::from_raw(child.as_raw_nonzero().get());
    let pids = tree_pids(tree);
    loop {
        match waitpid(child, Some(WaitPidFlag::WUNTRACED)) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {
                return Ok((child, super::cow::read_reports(rep_r)));
            }
            Ok(WaitStatus::Stopped(..)) => continue,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                // Every process that failed said why; the ones below it are stopped.
                kill_tree(&pids);
                let mut message = String::new();
                let _ = File::from(err_r).read_to_string(&mut message);
                let mut message = message.trim().replace('\n', "; ");
                if message.is_empty() {
                    message = "it died without saying why".to_owned();
                }
                if message.contains(CONFLICT) {
                    let message = message.replace(CONFLICT, "");
                    return Err(ProcessRestoreError::ChildConflict { pid, message });
                }
                return Err(ProcessRestoreError::Child { pid, message });
            }
            Ok(_) => continue,
            Err(e) => {
                kill_tree(&pids);
                return Err(errno(pid, "waitpid")(e));
            }
        }
    }
}

/// Where a process being set up gets the tree's open files.
#[derive(Clone, Copy)]
enum OpenFiles<'a> {
    /// The root creates them, with these descriptors for the external ones.
    Create(&'a Inherited),
    /// Its parent created them; they are inherited, parked.
    Parked(&'a super::fdtable::ParkedFiles),
    /// It shares its parent's descriptor table (`CLONE_FILES`), parked set included: the
    /// parent installs the table, for both, once this process has stopped.
    Shared(&'a super::fdtable::ParkedFiles),
}

/// The child side of [`spawn_tree_stopped`] for `tree[idx]`: never returns.
///
/// Until its image is replaced it dies with its parent (`PR_SET_PDEATHSIG`), so a
/// restorer killed part-way leaves no half-made process behind: the root dies with the
/// restorer, every other process with its parent. [`load_image`] clears it.
fn child_setup(
    image: &Image,
    tree: &[SavedProcess],
    idx: usize,
    parent: rustix::process::Pid,
    err_w: OwnedFd,
    report: &OwnedFd,
    files: OpenFiles<'_>,
) -> ! {
    let saved = &tree[idx];
    // Below the root nothing is logged: a process installs its descriptor table (its
    // own fd 2, a log file's number given to one of its files) while the others run.
    if idx != 0 {
        std::mem::forget(tracing::dispatcher::set_default(&tracing::Dispatch::none()));
    }
    // If the parent died before this took effect, it never will: leave at once.
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .is_err()
        || rustix::process::getppid() != Some(parent)
    {
        crate::sys::clone3::child_exit(1);
    }
    // The image was opened and checked by the restorer (this process is its fork):
    // record files are checked again as they are read.
    let table = super::fdtable::saved_table(image, saved.pid());
    // Keep the error pipe above every descriptor the table will use.
    let top = table
        .as_ref()
        .ok()
        .and_then(|table| table.descriptors.iter().map(|d| d.fd).max())
        .unwrap_or(0);
    let err_w = rustix::io::fcntl_dupfd_cloexec(&err_w, top + 1).unwrap_or(err_w);
    let result = table
        .map_err(child_error)
        .and_then(|table| child_setup_inner(image, tree, idx, &err_w, report, files, &table));
    match result {
        Ok(()) => {
            drop(err_w);
            let _ = nix::sys::signal::raise(Signal::SIGSTOP);
            // The restorer takes over from here, wherever it catches us.
            loop {
                nix::unistd::pause();
            }
        }
        Err(message) => {
            let line = format!("pid {}: {message}\n", saved.pid());
            let _ = rustix::io::write(&err_w, line.as_bytes());
            // `_exit`: the restorer's buffers and exit handlers are its own (and, for a
            // process sharing its parent's memory, its parent's), not ours to run.
            crate::sys::clone3::child_exit(1)
        }
    }
}

/// Creates the saved children of `tree[idx]` (we are that process), each with its PID,
/// and waits until each has stopped itself. Each inherits `parked`.
fn spawn_children(
    image: &Image,
    tree: &[SavedProcess],
    idx: usize,
    err_w: &OwnedFd,
    report: &OwnedFd,
    parked: &super::fdtable::ParkedFiles,
) -> std::result::Result<Vec<NixPid>, String> {
    let pid = tree[idx].pid();
    let mut children = Vec::new();
    for (c, child) in tree.iter().enumerate().skip(idx + 1) {
        if child.process.ppid != pid {
            continue;
        }
        let cpid = child.pid();
        let err = err_w.try_clone().map_err(|e| format!("dup: {e}"))?;
        let me = rustix::process::getpid();
        // What it shares with us (preflight allows no other sharing): our descriptor
        // table, our filesystem context, our address space, our signal handlers.
        use super::preflight::{fs_group, sighand_group, vm_group};
        let files = child.process.fd_table == tree[idx].process.fd_table;
        let fs = fs_group(child) == fs_group(&tree[idx]);
        let vm = vm_group(child) == vm_group(&tree[idx]);
        let sighand = sighand_group(child) == sighand_group(&tree[idx]);
        let flags = if files { libc::CLONE_FILES as u64 } else { 0 }
            | if fs { libc::CLONE_FS as u64 } else { 0 }
            | if sighand {
                libc::CLONE_SIGHAND as u64
            } else {
                0
            };
        let open_files = if files {
            OpenFiles::Shared(parked)
        } else {
            OpenFiles::Parked(parked)
        };
        let created = if vm {
            // It runs its set-up in our memory, on a stack of its own, while we wait
            // until it has stopped; its image is loaded with the image of the first
            // process of the address space (`restore::image`).
            let mut work = || match err.try_clone() {
                Ok(err) => child_setup(image, tree, c, me, err, report, open_files),
                Err(_) => crate::sys::clone3::child_exit(1),
            };
            crate::sys::clone3::clone3_vm_with_tid(
                flags | libc::CLONE_VM as u64,
                libc::SIGCHLD,
                &[cpid],
                &mut work,
            )
            .map_err(|e| format!("clone3 CLONE_VM with set_tid {cpid}: {e}"))?
        } else {
            match crate::sys::clone3::clone3_with_tid(flags, libc::SIGCHLD, &[cpid]) {
                Ok(Some(created)) => created,
                Ok(None) => child_setup(image, tree, c, me, err, report, open_files),
                Err(e) => return Err(format!("clone3 with set_tid {cpid}: {e}")),
            }
        };
        if files {
            // The descriptor is in the table the child shares: it is the child's to close
            // (closing it here could close whatever the child put at that number since).
            let _ = std::os::fd::IntoRawFd::into_raw_fd(err);
        } else {
            drop(err);
        }
        let created = NixPid::from_raw(created.as_raw_nonzero().get());
        wait_stopped(created)?;
        children.push(created);
    }
    for zombie in &tree[idx].process.zombies {
        spawn_zombie(zombie)?;
    }
    Ok(children)
}

/// Creates the saved zombie child `zombie` of the calling process with its PID, and waits
/// until it has exited, without reaping it: it stays for the restored program's own
/// `wait`. Checks that it ended as saved (its status, its session and group).
fn spawn_zombie(zombie: &proto::Zombie) -> std::result::Result<(), String> {
    let zpid = zombie.pid;
    let created = match crate::sys::clone3::clone3_with_tid(0, libc::SIGCHLD, &[zpid]) {
        Ok(Some(created)) => created,
        Ok(None) => become_zombie(zombie),
        Err(e) => return Err(format!("clone3 with set_tid {zpid} (zombie): {e}")),
    };
    // WNOWAIT: seen exited, left a zombie.
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::Pid(created),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("waitid {zpid} (zombie): {e}")),
        }
    }
    let stat = crate::proc::stat(zpid).map_err(|e| format!("zombie {zpid}: {e}"))?;
    let status = crate::proc::exit_code(zpid).map_err(|e| format!("zombie {zpid}: {e}"))?;
    // A core dump is not written again (become_zombie): its 0x80 bit cannot come back.
    let core = zombie.exit_status & 0x80;
    if status | core != zombie.exit_status || (stat.pgid, stat.sid) != (zombie.pgid, zombie.sid) {
        return Err(format!(
            "zombie {zpid} ended with wait status {status:#x} in group {} and session {}, \
             not the saved {:#x} in group {} and session {}",
            stat.pgid, stat.sid, zombie.exit_status, zombie.pgid, zombie.sid
        ));
    }
    Ok(())
}

/// The child side of [`spawn_zombie`]: leads its session or group if it did, then ends
/// as the saved zombie did, at once. Never returns.
fn become_zombie(zombie: &proto::Zombie) -> ! {
    let zpid = zombie.pid;
    // Errors show in the status, group or session the parent checks.
    if zombie.sid == zpid {
        let _ = nix::unistd::setsid();
    } else if zombie.pgid == zpid {
        let _ = nix::unistd::setpgid(NixPid::from_raw(0), NixPid::from_raw(0));
    }
    match crate::wait_status::decode(zombie.exit_status) {
        Some(ending) => crate::wait_status::end_as(ending),
        // Preflight refuses such a status; the parent sees 127 and says so.
        None => crate::sys::clone3::child_exit(127),
    }
}

/// Marks a line a new process reports as a conflict ([`ProcessRestoreError::ChildConflict`]):
/// the parent reads the reports as text.
const CONFLICT: &str = "[conflict] ";

/// What a new process reports when it could not create or install its open files: the
/// error with its causes (the OS error: the parent gets only this text), marked when it
/// is a file missing or changed on this machine.
fn child_error(e: super::fdtable::RebuildError) -> String {
    let text = super::error::chain(&e);
    if e.is_conflict() {
        format!("{CONFLICT}{text}")
    } else {
        text
    }
}

/// Waits until our child `child` stops itself (`SIGSTOP`); an error if it dies first.
fn wait_stopped(child: NixPid) -> std::result::Result<(), String> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WUNTRACED)) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => return Ok(()),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                return Err(format!("child {child} failed to set up"));
            }
            Ok(_) => continue,
            Err(e) => return Err(format!("waitpid {child}: {e}")),
        }
    }
}

/// The [`Stage::AfterTree`](crate::files::Stage::AfterTree) open files of `table`, in
/// the calling process `tree[idx]` (stopped children `children`), once every process of
/// the tree has installed its table: the root goes first, when its own table is
/// installed (its descendants installed theirs before they stopped); every other
/// process waits, stopped, until its parent continues it, so the step runs parents
/// first. Each then continues its own children, one at a time, and waits until they
/// have stopped again. `install` is false in a process that shares its parent's table.
fn install_late(
    late: &super::fdtable::LateFiles,
    table: &proto::FdTable,
    idx: usize,
    children: &[NixPid],
    install: bool,
) -> std::result::Result<(), String> {
    if idx != 0 {
        nix::sys::signal::raise(Signal::SIGSTOP).map_err(|e| format!("raise(SIGSTOP): {e}"))?;
    }
    if install {
        late.install(table).map_err(child_error)?;
    }
    for &child in children {
        kill(child, Signal::SIGCONT).map_err(|e| format!("kill {child} SIGCONT: {e}"))?;
        wait_stopped(child)?;
    }
    Ok(())
}

fn child_setup_inner(
    image: &Image,
    tree: &[SavedProcess],
    idx: usize,
    err_w: &OwnedFd,
    report: &OwnedFd,
    files: OpenFiles<'_>,
    table: &proto::FdTable,
) -> std::result::Result<(), String> {
    let saved = &tree[idx];
    let pid = saved.pid();
    if saved.process.sid == pid {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    } else if saved.process.pgid == pid {
        nix::unistd::setpgid(NixPid::from_raw(0), NixPid::from_raw(0))
            .map_err(|e| format!("setpgid: {e}"))?;
    }
    // The name ps shows (comm); a name with a NUL byte cannot come from the kernel.
    if let Ok(name) = std::ffi::CString::new(saved.process.comm.as_str()) {
        rustix::thread::set_name(&name).map_err(|e| format!("prctl(PR_SET_NAME): {e}"))?;
    }
    // Every open file of the tree is created once, by the root (after its session and
    // group: a terminal may become its controlling one), parked above every saved
    // number; the children inherit the set, and each process installs its own table
    // from it and closes the rest.
    let (owned, inherited) = match files {
        OpenFiles::Parked(parked) | OpenFiles::Shared(parked) => (None, Some(parked)),
        OpenFiles::Create(external) => (
            Some(super::fdtable::create_all(image, external).map_err(child_error)?),
            None,
        ),
    };
    let Some(parked) = inherited.or(owned.as_ref()) else {
        return Err("no open files to install".to_owned());
    };
    // A session leader's controlling terminal, before its children (they inherit it).
    super::ctty::take(saved, parked)?;
    // Children after our session and group (they inherit them), before our descriptors
    // (they install their own from the parked set).
    // The areas our children share pages in with us, filled with ours before they are
    // created, so that they inherit them copy-on-write.
    super::cow::prefill(image, tree, idx, report)?;
    let children = spawn_children(image, tree, idx, err_w, report, parked)?;
    // The terminal's foreground group, which may be a child's.
    super::ctty::foreground(saved, parked)?;
    // A table shared with the parent is the parent's to install, once we have stopped.
    let own_table = !matches!(files, OpenFiles::Shared(_));
    // The open files that wait for every table of the tree; none (and no waiting) unless
    // one of its kinds asks for that stage.
    let late = parked.late();
    // From here on the descriptors are the saved process's (fd 2 among them): nothing
    // more may be written to the restorer's stderr or log file.
    std::mem::forget(tracing::dispatcher::set_default(&tracing::Dispatch::none()));
    if own_table {
        let rebuilt = super::fdtable::install(table, parked).map_err(child_error)?;
        // The parked set and everything else (the restorer's descriptors) go.
        drop(owned);
        let mut keep = rebuilt.fds.clone();
        keep.push(err_w.as_raw_fd());
        crate::sys::fd::close_all_except(&keep).map_err(|e| format!("close_range: {e}"))?;
    }
    // Before the saved limits are set: the late files are parked above every saved
    // number, which RLIMIT_NOFILE was raised for. A process sharing its parent's table
    // takes part in the order but installs nothing: the parent did, for both.
    if let Some(late) = &late {
        install_late(late, table, idx, &children, own_table)?;
    }
    nix::unistd::chdir(saved.core.cwd.as_str())
        .map_err(|e| format!("chdir {}: {e}", saved.core.cwd))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        saved.core.umask as libc::mode_t,
    ));
    for r in &saved.core.rlimits {
        let now = crate::sys::rlimit::get_rlimit(rustix::process::getpid(), r.resource)
            .map_err(|e| format!("getrlimit {}: {e}", r.resource))?;
        if now != (r.soft, r.hard) {
            crate::sys::rlimit::set_own_rlimit(r.resource, r.soft, r.hard).map_err(|e| {
                format!(
                    "setrlimit {} to ({}, {}) (raising a hard limit needs CAP_SYS_RESOURCE): {e}",
                    r.resource, r.soft, r.hard
                )
            })?;
        }
    }
    // What the restorer set up for itself (Rust ignores SIGPIPE and catches SIGSEGV) is
    // not the restored program's: its own handlers are installed later, on defaults.
    crate::sys::signal::reset_all_dispositions().map_err(|e| format!("sigaction(SIG_DFL): {e}"))?;
    // And SIGCHLD unblocked (the caller may block it; the program's own mask comes back
    // with its registers): the news of the stops and continues the restore makes its
    // children go through is discarded by the kernel, at its default action, instead of
    // waiting in the queue for the restored program (see `restore::image::hold`).
    let mut chld = nix::sys::signal::SigSet::empty();
    chld.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&chld), None)
        .map_err(|e| format!("sigprocmask(SIG_UNBLOCK, SIGCHLD): {e}"))?;
    Ok(())
}

/// Replaces the address space and registers of our stopped child `saved.pid()` (stopped
/// by [`spawn_tree_stopped`]) with the saved ones and lets it run (see the module
/// documentation for the order and why).
///
/// A process whose memory is another's (`shares_vm_with`) is loaded only with that
/// process, by [`restore_tree`]: refused here.
pub fn replace_image(image: &Image, saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    if saved.process.shares_vm_with != 0 {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: format!(
                "an address space shared with pid {} (CLONE_VM), loaded on its own",
                saved.process.shares_vm_with
            ),
        });
    }
    let t = NixPid::from_raw(pid);
    // Let it run on from its self-stop (into pause()), then take it under ptrace.
    kill(t, Signal::SIGCONT).map_err(errno(pid, "kill SIGCONT"))?;
    let objects = super::objects::create(image)?;
    hold(std::slice::from_ref(saved))?;
    load_image(image, std::slice::from_ref(saved), saved, &[], &objects)?;
    super::threads::release_tree(std::slice::from_ref(saved))
}
