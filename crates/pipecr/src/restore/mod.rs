//! Restore orchestration: image -> processes. The descriptor table of one saved process
//! rebuilt inside the calling process ([`fdtable`]), and one whole
//! process brought back with its PID ([`process`]); whole trees build on them.

mod cow;
mod creds;
mod error;
pub mod external;
pub mod fdtable;
mod image;
mod mm;
pub mod pidns;
mod preflight;
pub mod process;
mod regs;
mod saved;
mod signals;
mod threads;
mod trampoline;

/// Choices a caller makes for a tree restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Sources for the descriptors that led outside the tree (`--inherit-fd`); those at
    /// fds 0-2 without one get the caller's own ([`external::resolve`]).
    pub inherit: Vec<external::Inherit>,
    /// The tree is a job of an interactive shell (`--shell-job`): it joins the caller's
    /// session (its own was the shell's, which is not restored), keeps its own process
    /// group, and every descriptor of its old terminal gets the caller's terminal.
    pub shell_job: bool,
}
