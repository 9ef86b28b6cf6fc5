//! Restore a tree into a new PID namespace, so that a copy can run beside the original
//! it was dumped from: inside the namespace every process has its saved PID again, while
//! outside those PIDs may still belong to the original (`pipecr restore --pidns`).
//!
//! [`restore_tree_in_new_pidns`] creates a child with `clone3(CLONE_NEWPID | CLONE_NEWNS)`
//! ([`crate::sys::clone3::clone3_into_namespaces`]): PID 1 of the new PID namespace, with
//! its own copy of the mount table. That child, the namespace's init:
//!
//! 1. makes its mounts private and mounts a proc filesystem of its own namespace on
//!    `/proc` ([`crate::sys::ns`]), so that every `/proc/PID` path the restore uses names
//!    a process of the new namespace;
//! 2. runs the ordinary [`super::process::restore_tree`]: a one-entry `set_tid` names a
//!    PID of the innermost namespace, the new one, so the saved PIDs come back there;
//! 3. reports `ok` or the error, as one line of text, through a close-on-exec pipe to the
//!    caller, and then closes every descriptor it holds (the restored processes have their
//!    own copies of restore's stdio: a reader of restore's output is not kept waiting by
//!    the init);
//! 4. acts as a minimal init: it reaps every process that ends in the namespace (as its
//!    PID 1, orphans come to it), and when the restored root ends, exits with the root's
//!    status (exit code, or 128 + signal). The kernel then kills whatever is left in the
//!    namespace.
//!
//! The restored root is a child of the init; the init stays in the caller's session and
//! process group, so the root gets them as it would from the caller (a process that led
//! its own session or group leads it again). A failed restore leaves nothing: the
//! restore kills what it created, the init exits, and with it the namespace.
//!
//! Signals: as PID 1 of its namespace, the init ignores every signal it has no handler for
//! (it sets none), except `SIGKILL` from outside the namespace, which ends it and with it
//! the whole copy. Nothing is forwarded: `SIGINT` from a terminal reaches the restored
//! processes that are in the terminal's foreground process group directly.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid as NixPid;
use pipecr_image::Image;

use super::options::RestoreOptions;
use super::saved::SavedProcess;

/// Why a restore into a new PID namespace failed. Whatever it was, nothing is left
/// running: the namespace's init has exited and been reaped.
#[derive(Debug, thiserror::Error)]
pub enum PidNsError {
    /// The tree is empty.
    #[error("tree.img holds no process")]
    EmptyTree,
    /// A saved process had PID 1, which in the new namespace is the init's.
    #[error("pid 1 cannot be restored into a new pid namespace: it is the namespace's init")]
    PidOne,
    /// The caller has more than one thread: the init, a copy of the calling thread only,
    /// could not safely run the restore.
    #[error("restore must run in a single-threaded process (this one has {threads})")]
    MultiThreadedCaller {
        /// How many threads the caller has.
        threads: usize,
    },
    /// A system call of the caller failed (creating the namespace needs `CAP_SYS_ADMIN`).
    #[error("{op} failed")]
    Os {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The init set up the namespace or ran the restore, and reported this error.
    #[error("{message}")]
    Restore {
        /// The init's report: the error and its causes, on one line.
        message: String,
    },
    /// The init ended without reporting.
    #[error("the init of the new pid namespace ended without a report ({status})")]
    InitDied {
        /// How it ended.
        status: String,
    },
}

/// A tree restored into a new PID namespace and running there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidNsTree {
    init: NixPid,
    root: i32,
}

impl PidNsTree {
    /// The namespace's init, as the caller sees it: the caller's child, to wait for. It
    /// exits with the restored root's status (exit code, or 128 + signal); `SIGKILL` to it
    /// ends the whole copy.
    pub fn init(&self) -> NixPid {
        self.init
    }

    /// The restored root's PID inside the namespace (its saved PID).
    pub fn root(&self) -> i32 {
        self.root
    }
}

/// Restores `tree` (as [`super::process::check_tree`] accepts it, checked against the
/// caller's session and group) into a new PID namespace whose init is a new child of the
/// caller (see the module documentation), and returns once every process runs.
///
/// The saved PIDs need only be free inside the new namespace, where only the init (PID 1)
/// exists at first. Needs `CAP_SYS_ADMIN` (new namespaces, mounting `/proc`) besides what
/// [`super::process::restore_tree`] needs. The caller must be single-threaded
/// ([`PidNsError::MultiThreadedCaller`] otherwise). On error nothing is left: the init
/// has exited and been reaped, and the namespace is gone.
pub fn restore_tree_in_new_pidns(
    image: &Image,
    tree: &[SavedProcess],
    options: &RestoreOptions,
) -> Result<PidNsTree, PidNsError> {
    let root = tree.first().ok_or(PidNsError::EmptyTree)?.pid();
    // A saved zombie with PID 1 would take the init's PID too.
    if super::process::tree_pids(tree).contains(&1) {
        return Err(PidNsError::PidOne);
    }
    let threads = crate::proc::threads(std::process::id() as i32)
        .map(|t| t.len())
        .unwrap_or(0);
    if threads != 1 {
        return Err(PidNsError::MultiThreadedCaller { threads });
    }
    // What the open files need of the restorer (capabilities, interfaces), checked
    // before the namespace exists (the init checks again, as any restore does).
    crate::files::preflight(image).map_err(|e| PidNsError::Restore {
        message: super::error::chain(&e),
    })?;
    let (report_r, report_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| PidNsError::Os {
            op: "pipe2",
            source: e.into(),
        })?;
    let flags = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64;
    let init = match crate::sys::clone3::clone3_into_namespaces(flags, libc::SIGCHLD) {
        Ok(Some(init)) => NixPid::from_raw(init.as_raw_nonzero().get()),
        Ok(None) => {
            drop(report_r);
            init_main(image, tree, options, report_w)
        }
        Err(source) => {
            return Err(PidNsError::Os {
                op: "clone3(CLONE_NEWPID | CLONE_NEWNS) (needs CAP_SYS_ADMIN)",
                source,
            });
        }
    };
    drop(report_w);
    let mut line = String::new();
    let read = BufReader::new(File::from(report_r)).read_line(&mut line);
    match read {
        Ok(_) if line == "ok\n" => Ok(PidNsTree { init, root }),
        // It exits right after its report.
        Ok(_) if line.starts_with("error: ") => {
            reap(init, false);
            Err(PidNsError::Restore {
                message: line["error: ".len()..].trim_end().to_owned(),
            })
        }
        // End of file without a full report: it died (or, should it not have, is killed).
        Ok(_) => Err(PidNsError::InitDied {
            status: reap(init, true),
        }),
        Err(source) => {
            reap(init, true);
            Err(PidNsError::Os {
                op: "read the init's report",
                source,
            })
        }
    }
}

/// Waits for our child `init` (killing it first if `kill_first`), that PID only; returns
/// how it ended, in words.
fn reap(init: NixPid, kill_first: bool) -> String {
    if kill_first {
        let _ = kill(init, Signal::SIGKILL);
    }
    loop {
        match waitpid(init, None) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(_, code)) => return format!("exit status {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => return format!("killed by {sig}"),
            Ok(_) => continue,
            Err(e) => return format!("waitpid: {e}"),
        }
    }
}

/// The init's side: never returns. Exits with the restored root's status, or 1 after
/// reporting an error (127 if the restore panicked: never unwind into the caller's code).
fn init_main(image: &Image, tree: &[SavedProcess], options: &RestoreOptions, report: OwnedFd) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        init_run(image, tree, options, report)
    }))
    .unwrap_or(127);
    // No destructors or atexit handlers: this is a copy of the caller.
    crate::sys::clone3::child_exit(code)
}

fn init_run(
    image: &Image,
    tree: &[SavedProcess],
    options: &RestoreOptions,
    report: OwnedFd,
) -> i32 {
    let root = match init_restore(image, tree, options) {
        Ok(root) => root,
        Err(message) => {
            // One line: the caller reads up to the first newline.
            let line = format!("error: {}\n", message.replace('\n', "; "));
            let _ = write_all(&report, line.as_bytes());
            return 1;
        }
    };
    if write_all(&report, b"ok\n").is_err() {
        // The caller is gone before it learnt of the tree: take the namespace down.
        return 1;
    }
    drop(report);
    // Nothing more to say; keep no one's pipe or terminal open.
    let _ = crate::sys::fd::close_all_except(&[]);
    reap_until(root)
}

/// Sets up the namespace's mounts and restores the tree; returns the root's PID, or the
/// error and its causes as text.
fn init_restore(
    image: &Image,
    tree: &[SavedProcess],
    options: &RestoreOptions,
) -> Result<NixPid, String> {
    let _ = rustix::thread::set_name(c"pipecr-init");
    crate::sys::ns::make_mounts_private()
        .map_err(|e| format!("new pid namespace: make mounts private: {e}"))?;
    crate::sys::ns::mount_proc(Path::new("/proc"))
        .map_err(|e| format!("new pid namespace: mount proc on /proc: {e}"))?;
    super::process::restore_tree(image, tree, options).map_err(|e| super::error::chain(&e))
}

/// Reaps every process that ends in the namespace until `root` does; returns its status
/// as an exit code.
fn reap_until(root: NixPid) -> i32 {
    loop {
        // Any child (-1): as PID 1 of the namespace, every orphan in it is ours, and this
        // process has no other thread whose children it could take.
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == root => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == root => return 128 + sig as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            // No child left (cannot happen while the root lives).
            Err(_) => return 1,
        }
    }
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> rustix::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
