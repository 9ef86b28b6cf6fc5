//! Restore a tree of saved processes, with their PIDs and TIDs, the root a new
//! child of the caller and every other process a child of its restored parent.
//!
//! This module owns the order of operations; the descriptor table comes from
//! [`super::fdtable`], the injection mechanics from [`crate::inject`], the raw calls from
//! [`crate::sys`].
//!
//! 1. [`spawn_tree_stopped`]: `clone3` with `set_tid` = the saved PID of the root. Each new
//!    process sets its name and session/group, creates its own saved children the same way
//!    (they inherit session and group) and waits until each has stopped, then installs its
//!    descriptor table, closes everything else, sets cwd, umask and rlimits, and stops
//!    itself with `SIGSTOP` (errors go back through a close-on-exec pipe shared by all, as
//!    text, one line per process). The root first creates every open file of the tree
//!    once ([`super::fdtable::create_all`]), parked above every saved number; the children
//!    inherit the parked set and each installs its table from it
//!    ([`super::fdtable::install`]), so what processes shared is shared again.
//!    Only a single-threaded caller may do this: the children
//!    allocate (see [`crate::sys::clone3::clone3_with_tid`]).
//! 2. [`restore_tree`] continues them all, then for each (`load_image`), parents first:
//!    seizes and interrupts it, and through an [`Injector`]: maps a trampoline page at an
//!    address free in both layouts; unregisters the inherited rseq area (before its memory
//!    goes); unmaps every other area but `[vdso]`/`[vvar]`/`[vvar_vclock]`; moves those to
//!    their saved addresses (`mremap`, through a parking place so that they never land on
//!    each other); maps every saved area (`MAP_FIXED`; files by path, opened in the child),
//!    writable while its pages are written; sets the saved protections; sets the mm
//!    fields and the exe link with `PR_SET_MM_MAP`; registers the saved rseq area again;
//!    with every signal blocked, installs the saved handlers (`rt_sigaction`) and interval
//!    timers (`setitimer`) and queues the saved pending signals from inside the process
//!    (`rt_tgsigqueueinfo` per thread, `rt_sigqueueinfo` process-wide: any `si_code` is
//!    allowed to oneself); creates the other threads with their TIDs and state
//!    (`restore/threads.rs`); unmaps the trampoline from inside its own `munmap` (the
//!    syscall-exit stop comes first); then sets the saved registers, XSAVE area and
//!    blocked mask. Once every process is ready, all are detached, children first; the
//!    pending signals the saved mask lets through are delivered then, to the saved
//!    handlers.
//!
//! A thread saved inside a syscall the kernel would restart (`rax` = `-ERESTART*`) is set
//! back onto its `syscall` instruction (`rip -= 2`, `rax = orig_rax`), so it enters the
//! call again; `-ERESTART_RESTARTBLOCK` becomes `restart_syscall`, whose saved state
//! (the restart block) lives in the kernel and does not come back: in a new process it
//! returns `EINTR` (a `nanosleep` sees an interruption; see the module's known gaps).
//!
//! Known gaps (each refused with [`ProcessRestoreError::Unsupported`] unless said):
//! shared anonymous memory, memfds, SysV shm and deleted files
//! mapped (memory objects); other kernel special areas; a root other than `/`; a
//! session or process group other than its parent's (the caller's, for the root) unless the
//! process leads it. Not refused: an open file that processes of the tree share comes back
//! as one open file per process (offsets no longer shared); an exit signal other than
//! `SIGCHLD` becomes `SIGCHLD`. An image dumped without the handlers (`handlers_read` false) comes back with default
//! dispositions and no interval timer (not refused: the caller warns). A signal handler
//! that interrupts a restarted syscall sees it restarted even without `SA_RESTART`.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::ptrace;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid as NixPid;
use pipecr_image::proto::{self, VmaFlag, VmaKind};
use pipecr_image::{Image, ImageError, PAGE_SIZE};

use crate::inject::{InjectError, Injector};
use crate::mem::maps::{MapEntry, parse_maps};
use crate::sys::ptrace::{self as sys_ptrace, SigMask};

const PAGE: u64 = PAGE_SIZE;
/// Where, in the trampoline page, the path of a file to open is written.
const PATH_AT: u64 = 64;
/// Longest path we open through the trampoline (the rest of the page holds other data).
const PATH_MAX_IN_PAGE: usize = 1024 - 64 - 1;
/// Where the `struct prctl_mm_map` is written.
const MM_MAP_AT: u64 = 1024;
/// Where the auxiliary vector is written.
const AUXV_AT: u64 = 2048;
/// Lowest address we place a trampoline or a parking area at (above `mmap_min_addr`).
const LOW: u64 = 0x10_0000;
/// `PR_SET_MM` and `PR_SET_MM_MAP` from `<linux/prctl.h>`.
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
/// `RSEQ_FLAG_UNREGISTER`.
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// The kernel's "restart me" codes (`include/linux/errno.h`).
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
/// Bytes copied into the child per write.
const CHUNK: u64 = 1 << 20;

/// Why a process could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum ProcessRestoreError {
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The image does not hold what this process needs.
    #[error("pid {pid}: image: {what}")]
    Invalid {
        /// The saved process.
        pid: i32,
        /// What is missing or inconsistent.
        what: String,
    },
    /// Something in the image that this restore cannot bring back yet.
    #[error("pid {pid}: cannot restore {what} yet")]
    Unsupported {
        /// The saved process.
        pid: i32,
        /// What.
        what: String,
    },
    /// The saved PID belongs to a live process.
    #[error("pid {pid} is in use by another process; nothing was restored")]
    PidInUse {
        /// The PID.
        pid: i32,
    },
    /// The caller has more than one thread, so its child could not safely set itself up.
    #[error("restore must run in a single-threaded process (this one has {threads})")]
    MultiThreadedCaller {
        /// How many threads the caller has.
        threads: usize,
    },
    /// A system call or ptrace request of the restorer failed.
    #[error("pid {pid}: {op} failed")]
    Os {
        /// The process being restored.
        pid: i32,
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The new process failed to set itself up before its memory was replaced.
    #[error("pid {pid}: the new process failed to set up: {message}")]
    Child {
        /// The process.
        pid: i32,
        /// What it reported.
        message: String,
    },
    /// An area could not be recreated.
    #[error("pid {pid}: area {start:#x}-{end:#x} ({what}) could not be restored")]
    Area {
        /// The process.
        pid: i32,
        /// Start of the area.
        start: u64,
        /// End of the area.
        end: u64,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<ProcessRestoreError>,
    },
    /// An injected call or remote memory access failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
}

type Result<T> = std::result::Result<T, ProcessRestoreError>;

/// Everything the image says about one process.
#[derive(Debug, Clone)]
pub struct SavedProcess {
    /// Its place in the tree (pid, pgid, sid, threads, descriptor table).
    pub process: proto::Process,
    /// Registers, signals, limits, cwd.
    pub core: proto::Core,
    /// Its address space.
    pub mm: proto::Mm,
}

impl SavedProcess {
    /// The saved PID.
    pub fn pid(&self) -> i32 {
        self.process.pid
    }
}

/// Reads the saved process `pid` from `image`.
pub fn load(image: &Image, pid: i32) -> Result<SavedProcess> {
    let invalid = |what: &str| ProcessRestoreError::Invalid {
        pid,
        what: what.to_owned(),
    };
    let process = image
        .read_records::<proto::Process>(pipecr_image::TREE)?
        .into_iter()
        .find(|p| p.pid == pid)
        .ok_or_else(|| invalid("not in tree.img"))?;
    let core = image
        .read_records::<proto::Core>(pipecr_image::CORE)?
        .into_iter()
        .find(|c| c.pid == pid)
        .ok_or_else(|| invalid("no record in core.img"))?;
    let mm = image
        .read_records::<proto::Mm>(pipecr_image::MM)?
        .into_iter()
        .find(|m| m.pid == pid)
        .ok_or_else(|| invalid("no record in mm.img"))?;
    Ok(SavedProcess { process, core, mm })
}

/// Checks, before anything is created, that this module can restore `saved` from a
/// process whose session and process group are `(sid, pgid)` (the restorer's).
pub fn check_supported(saved: &SavedProcess, sid: i32, pgid: i32) -> Result<()> {
    let pid = saved.pid();
    let unsupported = |what: String| Err(ProcessRestoreError::Unsupported { pid, what });
    super::threads::check(saved)?;
    let personality = std::fs::read_to_string("/proc/self/personality")
        .ok()
        .and_then(|p| u32::from_str_radix(p.trim(), 16).ok());
    if personality != Some(saved.core.personality) {
        return unsupported(format!(
            "personality {:#x} (the restorer's is {personality:x?}; it is inherited, not set)",
            saved.core.personality
        ));
    }
    if saved.core.root != "/" {
        return unsupported(format!(
            "a root directory other than / ({})",
            saved.core.root
        ));
    }
    if saved.process.sid != pid && saved.process.sid != sid {
        return unsupported(format!(
            "session {} (the restorer is in session {sid}; only the restorer's session or a \
             new one led by the process)",
            saved.process.sid
        ));
    }
    if saved.process.pgid != pid && saved.process.pgid != pgid && saved.process.sid != pid {
        return unsupported(format!(
            "process group {} (the restorer is in group {pgid})",
            saved.process.pgid
        ));
    }
    for vma in &saved.mm.vmas {
        let kind = VmaKind::try_from(vma.kind).unwrap_or(VmaKind::Unspecified);
        let what = match kind {
            VmaKind::Object => Some("shared memory (a memory object)"),
            VmaKind::OtherSpecial => Some("a kernel special area"),
            VmaKind::Unspecified => Some("an area of unknown kind"),
            _ if vma.object_id != 0 || vma.flags & VmaFlag::Deleted as u32 != 0 => {
                Some("a mapping of a deleted file or memfd")
            }
            _ => None,
        };
        if let Some(what) = what {
            return unsupported(format!(
                "area {:#x}-{:#x} {}: {what}",
                vma.start, vma.end, vma.path
            ));
        }
    }
    Ok(())
}

/// Whether a process with this PID exists now.
pub fn pid_in_use(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Restores `saved` from the image in `dir` into a new child of the caller with the saved
/// PID, and lets it run. Returns its PID; the caller reaps it.
///
/// On any error every process created is killed and reaped. The caller must be
/// single-threaded ([`ProcessRestoreError::MultiThreadedCaller`] otherwise).
pub fn restore(dir: &Path, image: &Image, saved: &SavedProcess) -> Result<NixPid> {
    restore_tree(dir, image, std::slice::from_ref(saved))
}

/// Checks, before anything is created, that `tree` (tree.img order: the root first, every
/// parent before its children) can be restored by [`restore_tree`] from a process in
/// session `sid` and process group `pgid` (the restorer's).
///
/// Each process must be the root or a child of an earlier one (the dump refuses zombies,
/// so a parent missing from the image is an error), and each must pass
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
    Ok(())
}

/// Restores the processes of `tree` (as [`check_tree`] accepts it) with their PIDs, each
/// a child of its restored parent, the root a child of the caller, and lets them run.
/// Returns the root's PID; the caller reaps it.
///
/// 1. The root is created ([`spawn_tree_stopped`]); every process creates its own
///    children before it sets up its descriptors, waits until each has stopped itself,
///    then stops itself: once the root has stopped, all have.
/// 2. All are continued (into `pause()`) before any is seized: the `SIGCHLD` each
///    continue sends to a parent is then discarded (default disposition, not traced)
///    rather than queued to a process being restored.
/// 3. Each image is replaced, parents first, and left in a ptrace-stop; only when all are
///    ready are they detached, so no restored process runs while another is half done
///    (a child that exits at once has its parent's handlers to signal).
///
/// On any error every process created is killed and reaped: the caller is made a child
/// subreaper while restoring so orphans come back to it. The caller must be
/// single-threaded ([`ProcessRestoreError::MultiThreadedCaller`] otherwise).
pub fn restore_tree(dir: &Path, image: &Image, tree: &[SavedProcess]) -> Result<NixPid> {
    let pids: Vec<i32> = tree.iter().map(SavedProcess::pid).collect();
    let root_pid = *pids.first().ok_or_else(|| ProcessRestoreError::Invalid {
        pid: 0,
        what: "tree.img holds no process".to_owned(),
    })?;
    rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(std::process::id() as i32))
        .map_err(|e| os(root_pid, "prctl(PR_SET_CHILD_SUBREAPER)")(e.into()))?;
    let result = restore_tree_inner(dir, image, tree, &pids);
    let _ = rustix::process::set_child_subreaper(None);
    result
}

fn restore_tree_inner(
    dir: &Path,
    image: &Image,
    tree: &[SavedProcess],
    pids: &[i32],
) -> Result<NixPid> {
    let root = spawn_tree_stopped(dir, tree)?;
    let steps = || -> Result<()> {
        for &pid in pids {
            kill(NixPid::from_raw(pid), Signal::SIGCONT).map_err(errno(pid, "kill SIGCONT"))?;
        }
        for saved in tree {
            load_image(image, saved)?;
        }
        // Children first: a parent then runs with every child already restored.
        for saved in tree.iter().rev() {
            super::threads::detach(saved)?;
        }
        Ok(())
    };
    match steps() {
        Ok(()) => Ok(root),
        Err(e) => {
            kill_tree(pids);
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
/// The PIDs were free when the restore began, and ours since.
fn kill_tree(pids: &[i32]) {
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

fn os(pid: i32, op: &'static str) -> impl Fn(io::Error) -> ProcessRestoreError {
    move |source| ProcessRestoreError::Os { pid, op, source }
}

fn errno(pid: i32, op: &'static str) -> impl Fn(Errno) -> ProcessRestoreError {
    move |e| ProcessRestoreError::Os {
        pid,
        op,
        source: io::Error::from_raw_os_error(e as i32),
    }
}

/// Creates the root of `tree` with its saved PID; it and every process below it create
/// their children, set up descriptors, cwd, umask, rlimits, session and group, and stop
/// themselves (`SIGSTOP`). Returns once the root, and so every process, has stopped.
///
/// Refuses to run in a multi-threaded process. On error, every process created is killed
/// and reaped.
pub fn spawn_tree_stopped(dir: &Path, tree: &[SavedProcess]) -> Result<NixPid> {
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
    if let Some(&p) = tree
        .iter()
        .map(|p| &p.process.pid)
        .find(|&&p| pid_in_use(p))
    {
        return Err(ProcessRestoreError::PidInUse { pid: p });
    }
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| os(pid, "pipe2")(e.into()))?;
    let child = match crate::sys::clone3::clone3_with_tid(0, libc::SIGCHLD, &[pid]) {
        Ok(Some(child)) => child,
        Ok(None) => {
            drop(err_r);
            child_setup(dir, tree, 0, err_w, None)
        }
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            return Err(ProcessRestoreError::PidInUse { pid });
        }
        Err(e) => return Err(os(pid, "clone3 with set_tid")(e)),
    };
    drop(err_w);
    let child = NixPid::from_raw(child.as_raw_nonzero().get());
    let pids: Vec<i32> = tree.iter().map(SavedProcess::pid).collect();
    loop {
        match waitpid(child, Some(WaitPidFlag::WUNTRACED)) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => return Ok(child),
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

/// The child side of [`spawn_tree_stopped`] for `tree[idx]`: never returns. `parked`:
/// the tree's open files, inherited from the parent (`None` for the root, which creates
/// them).
fn child_setup(
    dir: &Path,
    tree: &[SavedProcess],
    idx: usize,
    err_w: OwnedFd,
    parked: Option<&super::fdtable::ParkedFiles>,
) -> ! {
    let saved = &tree[idx];
    // Keep the error pipe above every descriptor the table will use.
    let top = Image::open(dir)
        .ok()
        .and_then(|image| super::fdtable::saved_table(&image, saved.pid()).ok())
        .and_then(|table| table.descriptors.iter().map(|d| d.fd).max())
        .unwrap_or(0);
    let err_w = rustix::io::fcntl_dupfd_cloexec(&err_w, top + 1).unwrap_or(err_w);
    let result = child_setup_inner(dir, tree, idx, &err_w, parked);
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
            std::process::exit(1)
        }
    }
}

/// Creates the saved children of `tree[idx]` (we are that process), each with its PID,
/// and waits until each has stopped itself. Each inherits `parked`.
fn spawn_children(
    dir: &Path,
    tree: &[SavedProcess],
    idx: usize,
    err_w: &OwnedFd,
    parked: &super::fdtable::ParkedFiles,
) -> std::result::Result<(), String> {
    let pid = tree[idx].pid();
    for (c, child) in tree.iter().enumerate().skip(idx + 1) {
        if child.process.ppid != pid {
            continue;
        }
        let cpid = child.pid();
        let err = err_w.try_clone().map_err(|e| format!("dup: {e}"))?;
        let created = match crate::sys::clone3::clone3_with_tid(0, libc::SIGCHLD, &[cpid]) {
            Ok(Some(created)) => created,
            Ok(None) => child_setup(dir, tree, c, err, Some(parked)),
            Err(e) => return Err(format!("clone3 with set_tid {cpid}: {e}")),
        };
        drop(err);
        let created = NixPid::from_raw(created.as_raw_nonzero().get());
        loop {
            match waitpid(created, Some(WaitPidFlag::WUNTRACED)) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => break,
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    return Err(format!("child {cpid} failed to set up"));
                }
                Ok(_) => continue,
                Err(e) => return Err(format!("waitpid {cpid}: {e}")),
            }
        }
    }
    Ok(())
}

fn child_setup_inner(
    dir: &Path,
    tree: &[SavedProcess],
    idx: usize,
    err_w: &OwnedFd,
    inherited: Option<&super::fdtable::ParkedFiles>,
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
    let image = Image::open(dir).map_err(|e| format!("{e}"))?;
    let owned = match inherited {
        Some(_) => None,
        None => Some(super::fdtable::create_all(&image).map_err(|e| format!("{e}"))?),
    };
    let Some(parked) = inherited.or(owned.as_ref()) else {
        return Err("no open files to install".to_owned());
    };
    // Children after our session and group (they inherit them), before our descriptors
    // (they install their own from the parked set).
    spawn_children(dir, tree, idx, err_w, parked)?;
    let table = super::fdtable::saved_table(&image, pid).map_err(|e| format!("{e}"))?;
    let rebuilt = super::fdtable::install(&table, parked).map_err(|e| format!("{e}"))?;
    // The parked set and everything else (the restorer's descriptors, the image's) go.
    drop(owned);
    drop(image);
    let mut keep = rebuilt.fds.clone();
    keep.push(err_w.as_raw_fd());
    crate::sys::fd::close_all_except(&keep).map_err(|e| format!("close_range: {e}"))?;
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
    Ok(())
}

/// Replaces the address space and registers of our stopped child `saved.pid()` (stopped
/// by [`spawn_tree_stopped`]) with the saved ones and lets it run (see the module
/// documentation for the order and why).
pub fn replace_image(image: &Image, saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let t = NixPid::from_raw(pid);
    // Let it run on from its self-stop (into pause()), then take it under ptrace.
    kill(t, Signal::SIGCONT).map_err(errno(pid, "kill SIGCONT"))?;
    load_image(image, saved)?;
    super::threads::detach(saved)?;
    Ok(())
}

/// Seizes `saved.pid()` (continued from its self-stop, waiting in `pause()`), replaces
/// its address space, handlers, pending signals, registers and mask with the saved ones,
/// and leaves it in a ptrace-stop of the calling thread, ready to be detached.
fn load_image(image: &Image, saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let t = NixPid::from_raw(pid);
    let thread = super::threads::main_thread(pid, &saved.core).ok_or_else(|| {
        ProcessRestoreError::Invalid {
            pid,
            what: "no thread in core.img".to_owned(),
        }
    })?;
    ptrace::seize(t, ptrace::Options::empty()).map_err(errno(pid, "PTRACE_SEIZE"))?;
    ptrace::interrupt(t).map_err(errno(pid, "PTRACE_INTERRUPT"))?;
    loop {
        match waitpid(t, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) => break,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                return Err(ProcessRestoreError::Child {
                    pid,
                    message: "it died before it could be seized".to_owned(),
                });
            }
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(e) => return Err(errno(pid, "waitpid")(e)),
        }
    }
    let mut inj = Injector::new(pid, pid)?;
    let current = current_maps(pid)?;
    let saved_areas: Vec<(u64, u64)> = saved.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    let cur_areas: Vec<(u64, u64)> = current.iter().map(|m| (m.start, m.end)).collect();
    let mut avoid: Vec<(u64, u64)> = saved_areas.iter().chain(&cur_areas).copied().collect();
    let tramp = find_free(&avoid, PAGE).ok_or_else(|| ProcessRestoreError::Unsupported {
        pid,
        what: "a layout with no free page for the trampoline".to_owned(),
    })?;
    inj.map_trampoline(tramp)?;
    avoid.push((tramp, tramp + PAGE));

    // The inherited rseq area is in memory about to go: unregister it first, or the
    // kernel would write into whatever is mapped there next.
    let rseq =
        sys_ptrace::rseq_configuration(t).map_err(os(pid, "PTRACE_GET_RSEQ_CONFIGURATION"))?;
    if rseq.abi_pointer != 0 {
        inj.syscall_checked(
            libc::SYS_rseq,
            [
                rseq.abi_pointer,
                u64::from(rseq.abi_size),
                RSEQ_FLAG_UNREGISTER,
                u64::from(rseq.signature),
                0,
                0,
            ],
        )?;
    }

    // Everything but the trampoline and the kernel's own areas goes.
    let movable = ["[vdso]", "[vvar]", "[vvar_vclock]"];
    for m in &current {
        if m.start == tramp || movable.contains(&m.path.as_str()) || m.path == "[vsyscall]" {
            continue;
        }
        inj.remote_munmap(m.start, m.len())?;
    }
    move_specials(&mut inj, pid, &current, &saved.mm.vmas, &avoid)?;

    let pages =
        File::open(image.dir().join(pipecr_image::PAGES)).map_err(os(pid, "open pages.img"))?;
    for vma in &saved.mm.vmas {
        map_area(&mut inj, pid, tramp, vma).map_err(|e| area_error(pid, vma, "map", e))?;
    }
    for run in &saved.mm.pages {
        write_run(&mut inj, pid, &pages, run)?;
    }
    for vma in &saved.mm.vmas {
        if is_private_restored(vma) && vma.prot & libc::PROT_WRITE as u32 == 0 {
            let prot = ProtFlags::from_bits_truncate(vma.prot as i32);
            inj.remote_mprotect(vma.start, vma.end - vma.start, prot)
                .map_err(|e| area_error(pid, vma, "mprotect", e.into()))?;
        }
    }
    set_mm(&mut inj, pid, tramp, &saved.mm)?;
    if let Some(r) = &thread.rseq {
        inj.syscall_checked(
            libc::SYS_rseq,
            [
                r.address,
                u64::from(r.length),
                0,
                u64::from(r.signature),
                0,
                0,
            ],
        )?;
    }
    // Handlers and timers first, then the pending signals, all blocked until the saved
    // mask is set at the end: they are delivered after detach, to the saved handlers.
    sys_ptrace::set_sigmask(t, SigMask(!0)).map_err(os(pid, "PTRACE_SETSIGMASK"))?;
    restore_signals(&mut inj, pid, tramp, &saved.core)?;
    // The other threads, created with every signal blocked (the mask just set).
    super::threads::create(&mut inj, saved, tramp)?;
    inj.unmap_trampoline(tramp)?;
    // Signals that arrived meanwhile (the SIGCONT we sent, say) are dropped: they were
    // meant for the process that no longer exists.
    let _ = inj.release();

    let regs = final_regs(pid, thread)?;
    ptrace::setregset::<ptrace::regset::NT_PRSTATUS>(t, regs)
        .map_err(errno(pid, "PTRACE_SETREGSET NT_PRSTATUS"))?;
    if !thread.xsave.is_empty() {
        sys_ptrace::set_xstate(t, &thread.xsave)
            .map_err(os(pid, "PTRACE_SETREGSET NT_X86_XSTATE"))?;
    }
    sys_ptrace::set_sigmask(t, SigMask(thread.blocked)).map_err(os(pid, "PTRACE_SETSIGMASK"))?;
    Ok(())
}

/// Where, in the trampoline page, a `struct sigaction`, `struct itimerval` or siginfo is
/// written (the path area: no file is opened any more at this point).
const SCRATCH_AT: u64 = PATH_AT;

/// Installs the saved signal handlers and interval timers and queues the saved pending
/// signals again, from inside the process (so any `si_code` is accepted). Without
/// `handlers_read` the handlers and timers are unknown and stay at their defaults.
fn restore_signals(inj: &mut Injector, pid: i32, tramp: u64, core: &proto::Core) -> Result<()> {
    let at = tramp + SCRATCH_AT;
    if core.handlers_read {
        for a in &core.sigactions {
            if a.signo <= 0 || a.signo > 64 || a.signo == libc::SIGKILL || a.signo == libc::SIGSTOP
            {
                return Err(ProcessRestoreError::Invalid {
                    pid,
                    what: format!("a handler for signal {}", a.signo),
                });
            }
            // The kernel's struct sigaction on x86_64: handler, flags, restorer, mask.
            let mut raw = Vec::with_capacity(32);
            for v in [a.handler, a.flags, a.restorer, a.mask] {
                raw.extend_from_slice(&v.to_ne_bytes());
            }
            inj.write_memory(at, &raw)?;
            inj.syscall_checked(libc::SYS_rt_sigaction, [a.signo as u64, at, 0, 8, 0, 0])?;
        }
        for timer in &core.itimers {
            // struct itimerval: it_interval then it_value, each (tv_sec, tv_usec).
            let mut raw = Vec::with_capacity(32);
            for us in [timer.interval_us, timer.value_us] {
                raw.extend_from_slice(&(us / 1_000_000).to_ne_bytes());
                raw.extend_from_slice(&(us % 1_000_000).to_ne_bytes());
            }
            inj.write_memory(at, &raw)?;
            inj.syscall_checked(libc::SYS_setitimer, [timer.which as u64, at, 0, 0, 0, 0])?;
        }
    }
    // Our ids as the process itself sees them.
    let tgid = inj.syscall_checked(libc::SYS_getpid, [0; 6])?;
    let tid = inj.syscall_checked(libc::SYS_gettid, [0; 6])?;
    let queue = |inj: &mut Injector, info: &proto::Siginfo, nr: i64, args: [u64; 6]| {
        if info.raw.len() != 128 || info.signo <= 0 || info.signo > 64 {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "pending signal {} with a siginfo of {} bytes",
                    info.signo,
                    info.raw.len()
                ),
            });
        }
        inj.write_memory(at, &info.raw)?;
        inj.syscall_checked(nr, args)?;
        Ok(())
    };
    // The other threads queue their own (restore/threads.rs).
    if let Some(thread) = super::threads::main_thread(pid, core) {
        for info in &thread.pending {
            let args = [tgid, tid, info.signo as u64, at, 0, 0];
            queue(inj, info, libc::SYS_rt_tgsigqueueinfo, args)?;
        }
    }
    for info in &core.shared_pending {
        let args = [tgid, info.signo as u64, at, 0, 0, 0];
        queue(inj, info, libc::SYS_rt_sigqueueinfo, args)?;
    }
    Ok(())
}

fn area_error(
    pid: i32,
    vma: &proto::Vma,
    what: &str,
    e: ProcessRestoreError,
) -> ProcessRestoreError {
    ProcessRestoreError::Area {
        pid,
        start: vma.start,
        end: vma.end,
        what: format!(
            "{what} {}",
            if vma.path.is_empty() {
                "[anon]"
            } else {
                &vma.path
            }
        ),
        source: Box::new(e),
    }
}

fn current_maps(pid: i32) -> Result<Vec<MapEntry>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(os(pid, "read /proc/PID/maps"))?;
    parse_maps(&text).ok_or_else(|| ProcessRestoreError::Os {
        pid,
        op: "parse /proc/PID/maps",
        source: io::Error::from(io::ErrorKind::InvalidData),
    })
}

/// The lowest address at or above [`LOW`] where `len` bytes overlap none of `avoid`.
fn find_free(avoid: &[(u64, u64)], len: u64) -> Option<u64> {
    let mut sorted = avoid.to_vec();
    sorted.sort_unstable();
    let mut at = LOW;
    for &(start, end) in &sorted {
        if end <= at {
            continue;
        }
        if start >= at.checked_add(len)? {
            return Some(at);
        }
        at = end;
    }
    // Stay in the lower half of the 47-bit user address space.
    (at.checked_add(len)? <= 1 << 46).then_some(at)
}

/// Moves `[vdso]`, `[vvar]` and `[vvar_vclock]` to their saved addresses: each first to a
/// parking place free in both layouts, then to its target, so no move lands on an area
/// still to be moved (`MREMAP_FIXED` would unmap it).
fn move_specials(
    inj: &mut Injector,
    pid: i32,
    current: &[MapEntry],
    saved: &[proto::Vma],
    avoid: &[(u64, u64)],
) -> Result<()> {
    let mut moves = Vec::new();
    for m in current {
        let Some(kind) = special_kind(&m.path) else {
            continue;
        };
        let target = saved.iter().find(|v| v.kind == kind as i32);
        match target {
            Some(v) if v.end - v.start != m.len() => {
                return Err(ProcessRestoreError::Unsupported {
                    pid,
                    what: format!(
                        "{} of {} bytes (this kernel's is {} bytes: another kernel?)",
                        m.path,
                        v.end - v.start,
                        m.len()
                    ),
                });
            }
            Some(v) if v.start != m.start => {
                moves.push((m.path.clone(), m.start, v.start, m.len()))
            }
            Some(_) => {}
            // The saved process had none: drop ours.
            None => inj.remote_munmap(m.start, m.len())?,
        }
    }
    let mut avoid = avoid.to_vec();
    let mut parked = Vec::new();
    for (name, from, to, len) in moves {
        let park = find_free(&avoid, len).ok_or_else(|| ProcessRestoreError::Unsupported {
            pid,
            what: format!("moving {name}: no free parking place"),
        })?;
        avoid.push((park, park + len));
        mremap(inj, pid, &name, from, park, len)?;
        parked.push((name, park, to, len));
    }
    for (name, park, to, len) in parked {
        mremap(inj, pid, &name, park, to, len)?;
    }
    Ok(())
}

fn mremap(inj: &mut Injector, pid: i32, name: &str, from: u64, to: u64, len: u64) -> Result<()> {
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    inj.syscall_checked(libc::SYS_mremap, [from, len, len, flags, to, 0])
        .map_err(|e| ProcessRestoreError::Unsupported {
            pid,
            what: format!("moving {name} from {from:#x} to {to:#x}: the kernel refused ({e})"),
        })?;
    Ok(())
}

fn special_kind(path: &str) -> Option<VmaKind> {
    match path {
        "[vdso]" => Some(VmaKind::Vdso),
        "[vvar]" => Some(VmaKind::Vvar),
        "[vvar_vclock]" => Some(VmaKind::VvarVclock),
        _ => None,
    }
}

/// Private areas we map ourselves (and make writable while filling).
fn is_private_restored(vma: &proto::Vma) -> bool {
    matches!(
        VmaKind::try_from(vma.kind),
        Ok(VmaKind::Anonymous | VmaKind::Heap | VmaKind::Stack | VmaKind::FilePrivate)
    )
}

/// Maps one saved area at its address (see the module documentation).
fn map_area(inj: &mut Injector, pid: i32, tramp: u64, vma: &proto::Vma) -> Result<()> {
    let len = vma.end - vma.start;
    let prot = ProtFlags::from_bits_truncate(vma.prot as i32);
    let kind = VmaKind::try_from(vma.kind).unwrap_or(VmaKind::Unspecified);
    match kind {
        VmaKind::Anonymous | VmaKind::Heap | VmaKind::Stack => {
            let mut flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED;
            if vma.flags & VmaFlag::Growsdown as u32 != 0 {
                flags |= MapFlags::MAP_GROWSDOWN;
            }
            inj.remote_mmap(vma.start, len, prot | ProtFlags::PROT_WRITE, flags, None, 0)?;
        }
        VmaKind::FilePrivate | VmaKind::FileShared => {
            let shared = kind == VmaKind::FileShared;
            let (open_flags, flags, prot) = if shared {
                let rw = if vma.prot & libc::PROT_WRITE as u32 != 0 {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                };
                (rw, MapFlags::MAP_SHARED | MapFlags::MAP_FIXED, prot)
            } else {
                (
                    libc::O_RDONLY,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
                    prot | ProtFlags::PROT_WRITE,
                )
            };
            let fd = open_in(inj, pid, tramp, &vma.path, open_flags)?;
            let mapped = inj.remote_mmap(
                vma.start,
                len,
                prot,
                flags,
                Some(crate::sys::kcmp::TargetFd(fd)),
                vma.pgoff,
            );
            inj.syscall_checked(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
            mapped?;
        }
        // Moved into place already, or never movable (the fixed [vsyscall]).
        VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall => {}
        _ => {
            return Err(ProcessRestoreError::Unsupported {
                pid,
                what: format!("area {:#x}-{:#x} {}", vma.start, vma.end, vma.path),
            });
        }
    }
    Ok(())
}

/// Opens `path` in the child (`openat(AT_FDCWD, path, flags | O_CLOEXEC)`), the path
/// written into the trampoline page; returns the child's descriptor.
fn open_in(inj: &mut Injector, pid: i32, tramp: u64, path: &str, flags: i32) -> Result<i32> {
    if path.len() > PATH_MAX_IN_PAGE || path.as_bytes().contains(&0) {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: format!("opening a path of {} bytes", path.len()),
        });
    }
    let mut bytes = path.as_bytes().to_vec();
    bytes.push(0);
    inj.write_memory(tramp + PATH_AT, &bytes)?;
    let fd = inj
        .syscall_checked(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as i64 as u64,
                tramp + PATH_AT,
                (flags | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )
        .map_err(|e| ProcessRestoreError::Invalid {
            pid,
            what: format!("cannot open {path} in the new process: {e}"),
        })?;
    Ok(fd as i32)
}

/// Writes one run of saved pages into the child.
fn write_run(inj: &mut Injector, pid: i32, pages: &File, run: &proto::PageRun) -> Result<()> {
    let total = run
        .nr_pages
        .checked_mul(PAGE)
        .ok_or_else(|| ProcessRestoreError::Invalid {
            pid,
            what: format!("page run at {:#x}: {} pages", run.start, run.nr_pages),
        })?;
    let mut done = 0;
    while done < total {
        let len = (total - done).min(CHUNK);
        let mut buf = vec![0u8; len as usize];
        if !run.zero {
            pages
                .read_exact_at(&mut buf, run.store_index * PAGE + done)
                .map_err(os(pid, "read pages.img"))?;
        }
        inj.write_memory(run.start + done, &buf)?;
        done += len;
    }
    Ok(())
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map)` with the saved mm fields, auxv and
/// exe (opened in the child). The struct and the auxv go into the trampoline page.
fn set_mm(inj: &mut Injector, pid: i32, tramp: u64, mm: &proto::Mm) -> Result<()> {
    if mm.auxv.len() > (PAGE - AUXV_AT) as usize || mm.auxv.len() % 8 != 0 {
        return Err(ProcessRestoreError::Invalid {
            pid,
            what: format!("auxv of {} bytes", mm.auxv.len()),
        });
    }
    inj.write_memory(tramp + AUXV_AT, &mm.auxv)?;
    let exe_fd = if mm.exe.is_empty() {
        u32::MAX
    } else {
        open_in(inj, pid, tramp, &mm.exe, libc::O_RDONLY)? as u32
    };
    // struct prctl_mm_map (<linux/prctl.h>): eleven u64, the auxv pointer, its size as
    // u32, the exe descriptor as u32.
    let mut map = Vec::with_capacity(104);
    for v in [
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack,
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        tramp + AUXV_AT,
    ] {
        map.extend_from_slice(&v.to_ne_bytes());
    }
    map.extend_from_slice(&(mm.auxv.len() as u32).to_ne_bytes());
    map.extend_from_slice(&exe_fd.to_ne_bytes());
    inj.write_memory(tramp + MM_MAP_AT, &map)?;
    let result = inj.syscall_checked(
        libc::SYS_prctl,
        [
            PR_SET_MM,
            PR_SET_MM_MAP,
            tramp + MM_MAP_AT,
            map.len() as u64,
            0,
            0,
        ],
    );
    if exe_fd != u32::MAX {
        inj.syscall_checked(libc::SYS_close, [u64::from(exe_fd), 0, 0, 0, 0, 0])?;
    }
    result.map_err(|e| ProcessRestoreError::Os {
        pid,
        op: "prctl(PR_SET_MM, PR_SET_MM_MAP)",
        source: io::Error::other(e),
    })?;
    Ok(())
}

/// The saved registers, put back onto the `syscall` instruction when the thread was
/// stopped in a call the kernel would have restarted.
pub(super) fn final_regs(pid: i32, thread: &proto::Thread) -> Result<libc::user_regs_struct> {
    let Some(proto::thread::Regs::X8664(r)) = &thread.regs else {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: "a thread without x86_64 registers".to_owned(),
        });
    };
    let mut regs = crate::arch::x86_64::to_live(r);
    restart_syscall(&mut regs);
    Ok(regs)
}

/// What the kernel's signal code does to a thread leaving a syscall interrupted with a
/// restart code and no handler: we detach from a syscall-exit stop, where it would not.
fn restart_syscall(regs: &mut libc::user_regs_struct) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match -(regs.rax as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip -= 2;
        }
        ERESTART_RESTARTBLOCK => {
            regs.rax = libc::SYS_restart_syscall as u64;
            regs.rip -= 2;
        }
        _ => {}
    }
    // Nothing left to restart for the kernel.
    regs.orig_rax = u64::MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_found_between_areas() {
        let avoid = [(LOW, LOW + 2 * PAGE), (LOW + 3 * PAGE, LOW + 4 * PAGE)];
        assert_eq!(find_free(&avoid, PAGE), Some(LOW + 2 * PAGE));
        assert_eq!(find_free(&avoid, 2 * PAGE), Some(LOW + 4 * PAGE));
        assert_eq!(find_free(&[], PAGE), Some(LOW));
    }

    #[test]
    fn interrupted_syscalls_are_rearmed() {
        let mut r: libc::user_regs_struct = zeroed_regs();
        r.orig_rax = 0;
        r.rax = (-ERESTARTSYS) as u64;
        r.rip = 0x1002;
        restart_syscall(&mut r);
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1000, u64::MAX));
        r.orig_rax = libc::SYS_nanosleep as u64;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        r.rip = 0x1002;
        restart_syscall(&mut r);
        assert_eq!(r.rax, libc::SYS_restart_syscall as u64);
        assert_eq!(r.rip, 0x1000);
        // Not in a syscall: untouched.
        r.rax = 5;
        r.rip = 0x1002;
        restart_syscall(&mut r);
        assert_eq!((r.rax, r.rip), (5, 0x1002));
    }

    fn zeroed_regs() -> libc::user_regs_struct {
        libc::user_regs_struct {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: u64::MAX,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        }
    }
}
