//! The error every step of a restore returns ([`ProcessRestoreError`]) and the helpers
//! that turn an OS error into one ([`os`], [`errno`]). The bottom of `restore/`: it
//! imports no step; which step fails, and why, is theirs to say.

use std::io;

use nix::errno::Errno;
use pipecr_image::ImageError;

use super::external::ExternalError;
use crate::inject::InjectError;

/// Why a process could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum ProcessRestoreError {
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// System V IPC objects could not be created again (nothing of them is left).
    #[error(transparent)]
    Ipc(#[from] crate::ipc::IpcError),
    /// A descriptor that led outside the tree has no usable source.
    #[error(transparent)]
    External(#[from] ExternalError),
    /// An open file could not finish its restore.
    #[error(transparent)]
    OpenFile(#[from] crate::files::FileError),
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
    /// The saved credentials are ones the restorer cannot give (nothing was created).
    #[error("pid {pid}: cannot restore {what} (the restorer has {me})")]
    Credentials {
        /// The saved process.
        pid: i32,
        /// Which credentials, and what giving them needs.
        what: String,
        /// The restorer's own ids and effective capabilities.
        me: String,
    },
    /// A thread's saved CPU state uses XSAVE components this machine does not enable.
    #[error(
        "pid {pid}: thread {tid} uses CPU state this machine does not enable: {missing} \
         (saved XSTATE_BV {saved:#x}, this machine's XCR0 {here:#x})"
    )]
    CpuFeatures {
        /// The saved process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The missing components, by name.
        missing: String,
        /// The saved area's `XSTATE_BV`.
        saved: u64,
        /// This machine's `XCR0`.
        here: u64,
    },
    /// A file the process needs (its executable, a mapped file) is not there.
    #[error("pid {pid}: {what} {path}: {errno}")]
    File {
        /// The saved process.
        pid: i32,
        /// What the file is to the process.
        what: &'static str,
        /// Its path.
        path: String,
        /// The error's symbolic name (`ENOENT`, ...).
        errno: &'static str,
        /// The error.
        #[source]
        source: io::Error,
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
    /// The new process could not open a file again because it is missing or changed on
    /// this machine (a conflict the user can resolve, not a fault of the restore).
    #[error("pid {pid}: {message}")]
    ChildConflict {
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
    /// A saved POSIX timer is one no restore can create again (the rule the dump applies
    /// too: [`crate::posix_timers::check`]); nothing was created.
    #[error(transparent)]
    UnrestorableTimer(#[from] crate::posix_timers::Unrestorable),
    /// A POSIX timer could not be created again or armed.
    #[error("pid {pid}: POSIX timer {id} ({what}) could not be restored")]
    Timer {
        /// The process.
        pid: i32,
        /// The timer's saved ID.
        id: i32,
        /// The timer and the step that failed.
        what: String,
        /// The cause.
        #[source]
        source: InjectError,
    },
    /// An injected call or remote memory access failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
}

/// The result of a restore step.
pub(super) type Result<T> = std::result::Result<T, ProcessRestoreError>;

/// Wraps an OS error of the call `op` made for process `pid`.
pub(super) fn os(pid: i32, op: &'static str) -> impl Fn(io::Error) -> ProcessRestoreError {
    move |source| ProcessRestoreError::Os { pid, op, source }
}

/// [`os`] for a nix [`Errno`].
pub(super) fn errno(pid: i32, op: &'static str) -> impl Fn(Errno) -> ProcessRestoreError {
    move |e| ProcessRestoreError::Os {
        pid,
        op,
        source: io::Error::from_raw_os_error(e as i32),
    }
}

/// An error and its causes, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
