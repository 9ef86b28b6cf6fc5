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

/// The name of a syscall we inject, for messages.
pub(crate) fn syscall_name(nr: i64) -> &'static str {
    match nr {
        libc::SYS_mmap => "mmap",
        libc::SYS_mprotect => "mprotect",
        libc::SYS_munmap => "munmap",
        libc::SYS_brk => "brk",
        libc::SYS_rt_sigaction => "rt_sigaction",
        libc::SYS_rt_sigprocmask => "rt_sigprocmask",
        libc::SYS_mremap => "mremap",
        libc::SYS_getpid => "getpid",
        libc::SYS_gettid => "gettid",
        libc::SYS_getppid => "getppid",
        libc::SYS_prctl => "prctl",
        libc::SYS_arch_prctl => "arch_prctl",
        libc::SYS_rt_tgsigqueueinfo => "rt_tgsigqueueinfo",
        libc::SYS_rt_sigqueueinfo => "rt_sigqueueinfo",
        libc::SYS_setitimer => "setitimer",
        libc::SYS_getitimer => "getitimer",
        libc::SYS_timer_create => "timer_create",
        libc::SYS_timer_settime => "timer_settime",
        libc::SYS_timer_gettime => "timer_gettime",
        libc::SYS_timer_getoverrun => "timer_getoverrun",
        libc::SYS_openat => "openat",
        libc::SYS_rseq => "rseq",
        libc::SYS_clone3 => "clone3",
        libc::SYS_madvise => "madvise",
        libc::SYS_close => "close",
        libc::SYS_dup2 => "dup2",
        libc::SYS_sigaltstack => "sigaltstack",
        libc::SYS_set_robust_list => "set_robust_list",
        libc::SYS_set_tid_address => "set_tid_address",
        _ => "syscall",
    }
}
