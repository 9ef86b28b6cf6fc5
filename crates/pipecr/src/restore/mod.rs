//! Restore orchestration: image -> processes. The descriptor table of one saved process
//! rebuilt inside the calling process ([`fdtable`]), and one whole
//! process brought back with its PID ([`process`]); whole trees build on them.

pub mod fdtable;
pub mod process;
mod threads;
