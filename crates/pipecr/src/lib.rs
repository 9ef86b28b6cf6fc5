//! pipecr: checkpoint and restore Linux processes and their pipes, from user space.
//!
//! The crate is organised by task:
//!
//! - [`pipe`]: checkpoint one pipe (its pending bytes, capacity, packet boundaries and the
//!   flags of its ends) into a [`pipe::PipeImage`] without consuming anything, and restore
//!   it into a new pipe, optionally at given descriptor numbers. This is the interface of
//!   the 2007 RFC, done with the kernel's existing system calls.
//! - [`freeze`]: stop every thread of a live process tree and resume it untouched.
//! - [`inject`]: run system calls inside a stopped thread (signal handlers, remote mmap).
//! - [`proc`]: readers of `/proc/PID/...`.
//! - [`mem`]: save a stopped process's address space (areas, pages, shared objects).
//! - [`posix_timers`]: which POSIX timers can be created again (dump and restore ask).
//! - [`seccomp`]: what a thread's seccomp filters answer to a call (dump asks before it
//!   injects).
//! - [`task`]: save a stopped process's registers, signals, limits, cwd and root.
//! - [`arch`]: the saved registers and the kernel's register sets, per processor.
//! - [`diagnose`]: every error mapped to a class (the exit code), a stable code and the
//!   PID/fd/kind concerned, for programs.
//! - [`check`]: probe the kernel features and capabilities the rest of pipecr relies on.
//! - [`sys`]: the thin system-call layer; the only place where `unsafe` is allowed.
//!
//! The entry points, each with a runnable example: [`pipe::checkpoint`] and
//! [`pipe::restore`] (one pipe, in process), [`dump::dump_tree`] (a live tree into an
//! image directory), [`restore::process::restore_tree`] (an image back into processes,
//! with their PIDs). The examples that dump and restore need `CAP_SYS_PTRACE` and
//! `CAP_CHECKPOINT_RESTORE` (root).
//!
//! Everything that matters is logged through [`tracing`](https://docs.rs/tracing) (spans
//! `dump` and `restore` with the root's PID, `process` per process, an event per open
//! file with its PID, fd and kind); the library installs no subscriber. Progress events
//! go to the target [`mem::PROGRESS`].
//!
//! The on-disk format lives in the `pipecr-image` crate, which knows nothing of live
//! processes.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod arch;
pub mod check;
pub mod diagnose;
pub mod dump;
pub mod files;
pub mod freeze;
pub mod inject;
pub mod ipc;
pub mod mem;
pub mod objects;
pub mod pipe;
pub mod posix_timers;
pub mod proc;
pub mod restore;
pub mod seccomp;
pub mod snapshot;
pub mod sys;
pub mod task;
pub mod wait_status;
