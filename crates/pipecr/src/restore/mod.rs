//! Restore orchestration: image -> processes. The descriptor table of one saved process
//! rebuilt inside the calling process ([`fdtable`]), and one whole
//! process brought back with its PID ([`process`]); whole trees build on them.

// Layers, each importing only those below it (`tools/modcycles.py` checks):
// - on top, the orchestrators: `process` (a tree, in order) and `pidns` (that, run in a
//   new PID namespace); no step imports them;
// - the checks run before anything is made: `preflight`;
// - one process's image replaced: `image`, over its steps `threads`, `signals`,
//   `timers`, `creds`, `regs`, `mm` and `cow`; the descriptor tables: `fdtable`; the
//   memory objects both of those open, created once before the tree: `objects`;
// - the external ends (`external`, over `options`) and `error` (over `external`);
// - at the bottom: `options` (the caller's choices: `RestoreOptions`, `Inherit`,
//   `Source`), `saved`, `trampoline`.
// This file only declares the modules and re-exports `RestoreOptions` for
// `pipecr::restore::RestoreOptions`; no module below imports it back.
mod cow;
mod creds;
mod error;
pub mod external;
pub mod fdtable;
mod image;
mod inprocess;
mod locks;
mod mm;
mod objects;
pub mod options;
pub mod pidns;
mod preflight;
pub mod process;
mod procstate;
mod regs;
mod saved;
mod signals;
mod threads;
mod timers;
mod trampoline;

pub use options::RestoreOptions;
