//! Restore orchestration: image -> processes. For now, the descriptor table of one saved
//! process rebuilt inside the calling process ([`fdtable`]); whole trees build on it.

pub mod fdtable;
