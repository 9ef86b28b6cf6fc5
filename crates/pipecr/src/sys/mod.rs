//! The system-call layer: every raw syscall and every `unsafe` block of pipecr lives here.
//!
//! Wrappers follow rustix's style: typed descriptors in and out, `io::Result`, each one
//! documented with the C call it makes. Where rustix or nix already offer a safe wrapper,
//! callers use them directly and nothing is repeated here.
#![allow(unsafe_code)]

pub mod clone3;
pub mod cpu;
pub mod fd;
pub mod kcmp;
pub mod mem;
pub mod ns;
pub mod pipe;
pub mod ptrace;
pub mod rlimit;
pub mod signal;
pub mod sockdiag;
pub mod socket;
pub mod timer;
