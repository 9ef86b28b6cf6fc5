//! The errors of injection, shared by every part of [`super`]: the injector itself, the
//! typed calls and their callers in dump and restore. Below the other submodules so that
//! none of them imports another just for its error type.
//!
//! What went wrong where is decided by the submodules; this one only names it.

use std::io;

/// Why an injection (or a remote memory access) failed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A ptrace request or wait failed. `ESRCH` usually means the thread is not in a
    /// ptrace-stop of the calling thread.
    #[error("thread {tid} of pid {pid}: {op} failed")]
    Ptrace {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The request.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The injected syscall ran and returned an error.
    #[error("thread {tid} of pid {pid}: injected {name} (syscall {nr}) failed")]
    Syscall {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The syscall number.
        nr: i64,
        /// Its name, when known.
        name: &'static str,
        /// The error it returned.
        #[source]
        source: io::Error,
    },
    /// The thread faulted trying to execute the `syscall` instruction.
    #[error(
        "thread {tid} of pid {pid}: signal {signo} at {addr:#x} while injecting {name} (syscall {nr})"
    )]
    Fault {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The syscall number.
        nr: i64,
        /// Its name, when known.
        name: &'static str,
        /// The signal the fault raised.
        signo: i32,
        /// Where the thread was.
        addr: u64,
    },
    /// The thread exited (or was killed) while we drove it.
    #[error("thread {tid} of pid {pid} exited while injecting {name} (syscall {nr})")]
    Exited {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The syscall number.
        nr: i64,
        /// Its name, when known.
        name: &'static str,
    },
    /// Not a 64-bit x86_64 process.
    #[error("thread {tid} of pid {pid} runs in 32-bit mode (cs {cs:#x}); only x86_64 is supported")]
    NotX86_64 {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// Its code segment selector.
        cs: u64,
    },
    /// No executable `syscall` instruction could be found in the process.
    #[error("pid {pid}: no executable `syscall` instruction found to inject through")]
    NoSyscallInstruction {
        /// The process.
        pid: i32,
    },
    /// The address given as a `syscall` instruction does not hold one.
    #[error("pid {pid}: no `syscall` instruction at {addr:#x}")]
    NotASyscallInstruction {
        /// The process.
        pid: i32,
        /// The address.
        addr: u64,
    },
    /// Reading or writing the tracee's memory failed.
    #[error("pid {pid}: cannot {op} {len} bytes at {addr:#x}")]
    Memory {
        /// The process.
        pid: i32,
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: usize,
        /// "read" or "write".
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file of the tracee could not be read.
    #[error("pid {pid}: cannot read {path}")]
    Proc {
        /// The process.
        pid: i32,
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The name of a syscall we inject, for messages ([`crate::arch::x86_64::syscall_name`]).
pub(crate) fn syscall_name(nr: i64) -> &'static str {
    crate::arch::x86_64::syscall_name(nr).unwrap_or("syscall")
}
