//! The system-call layer: every raw syscall and every `unsafe` block of pipecr lives here.
//!
//! Wrappers follow rustix's style: typed descriptors in and out, `io::Result`, each one
//! documented with the C call it makes. Where rustix or nix already offer a safe wrapper,
//! callers use them directly and nothing is repeated here. [`names`] holds the kernel's
//! names and fixed values for the numbers it deals in (signals, resource limits).
#![allow(unsafe_code)]

pub mod batch_code;
pub mod clone3;
pub mod cpu;
pub mod epoll;
pub mod fd;
pub mod fhandle;
pub mod inet;
pub mod ipc;
pub mod kcmp;
pub mod mem;
pub mod names;
pub mod ns;
pub mod owner;
pub mod packet;
pub mod pidfd;
pub mod pipe;
pub mod ptrace;
pub mod rlimit;
pub mod signal;
pub mod signalfd;
pub mod sockdiag;
pub mod socket;
pub mod sockopt;
pub mod timer;
pub mod timerfd;
pub mod tty;
pub mod uffd;
