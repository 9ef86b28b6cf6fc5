//! Restore orchestration: image -> processes. The descriptor table of one saved process
//! rebuilt inside the calling process ([`fdtable`]), and one whole
//! process brought back with its PID ([`process`]); whole trees build on them.

// Layers, each importing only those below it (`tools/modcycles.py` checks):
// - on top, the orchestrators: `process` (a tree, in order) and `pidns` (that, run in a
//   new PID namespace); no step imports them;
// - the checks run before anything is made: `preflight`;
// - one process's image replaced: `image`, over its steps `threads`, `signals`,
//   `timers`, `creds`, `regs`, `mm` and `cow`; the descriptor tables: `fdtable`;
// - at the bottom: `error` (over `external`), `saved`, `trampoline`.
// `external` still takes `RestoreOptions` from here, which holds its `Inherit`: the one
// cycle left, until both live in one module.
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
mod timers;
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
