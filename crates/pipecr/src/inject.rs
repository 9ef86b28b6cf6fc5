//! Running system calls inside a stopped thread (x86_64): the tool both dump and restore
//! use to do what only the process itself can, such as reading its signal handlers or
//! replacing its address space.
//!
//! An [`Injector`] drives one thread that the *calling thread* holds in a ptrace-stop
//! (seized by [`crate::freeze`] on this thread, or by restore). It saves the registers on
//! creation, points the thread at a `syscall` instruction with the number and arguments
//! in its registers, lets it run exactly that instruction, reads the result, and on
//! [`Injector::finish`] (or drop) puts everything back so that on detach the thread
//! continues as if nothing happened; in particular a thread stopped inside a blocking call
//! (`read` on an empty pipe, `nanosleep`) restarts it without seeing `EINTR`.
//!
//! This module owns the injection mechanics, remote memory access, and the few helpers
//! built on them (`mmap`, `munmap`, `mprotect`, signal handlers). What to inject and in
//! which order belongs to dump and restore; raw ptrace requests live in
//! [`crate::sys::ptrace`].
//!
//! # How a syscall is run
//!
//! 1. The `syscall` instruction (`0f 05`) comes from, in this order: the caller
//!    ([`Injector::set_syscall_address`], [`Injector::map_trampoline`]); the two bytes
//!    before the instruction pointer when the thread was stopped in a system call; the
//!    `[vdso]` (its fallback paths contain `syscall`); any other executable mapping. The
//!    bytes `0f 05` decode as `syscall` wherever they sit, even inside another instruction.
//! 2. `rax = nr`, `rdi, rsi, rdx, r10, r8, r9 = args`, `rip` = that address, and
//!    `orig_rax = -1` so that the kernel's syscall-restart logic ignores our registers.
//! 3. `PTRACE_SYSCALL` to the syscall-entry stop, `PTRACE_SYSCALL` to the exit stop; the
//!    result is `rax`. A syscall stop is told from a signal by its siginfo, entry from
//!    exit by `PTRACE_GETEVENTMSG` (`PTRACE_GET_SYSCALL_INFO` would need
//!    `PTRACE_O_TRACESYSGOOD`, and the ptrace options belong to the caller).
//!
//! Why `PTRACE_SYSCALL` and not `PTRACE_SINGLESTEP`: a single-step trap is a *forced*
//! `SIGTRAP`, and the kernel resets the tracee's `SIGTRAP` handler to `SIG_DFL` when it
//! forces one that the tracee ignores or blocks. Syscall stops send no signal at all, and
//! they also stop *before* the thread returns to user space, so the page holding the
//! instruction may be unmapped by the very syscall it executes.
//!
//! # Putting the thread back
//!
//! The kernel restarts an interrupted syscall (`-ERESTARTSYS` and siblings in `rax`) on
//! the way out of signal handling, after the tracer lets the thread go from a stop that
//! happened *inside* signal handling (a signal-delivery-stop or `PTRACE_EVENT_STOP`), but
//! not after a syscall-exit stop. So [`Injector::finish`] restores the registers, blocks
//! every signal but one marker, queues that marker to the thread with `tgkill` and lets it
//! run into the marker's signal-delivery-stop, where the original signal mask and siginfo
//! are put back. The caller then resumes or detaches with the signal it meant to hand
//! back (if the thread was first seen in a signal-delivery-stop) or none.
//!
//! Signals that arrive while we inject stop the thread in a signal-delivery-stop instead
//! of our syscall stop; they are recorded, suppressed, and queued again (with their
//! siginfo, by an injected `rt_tgsigqueueinfo`) before the thread is put back, so none is
//! lost.
//!
//! # Known gaps
//!
//! - A thread stopped inside an rseq critical section: the kernel clears the thread's
//!   `rseq_cs` pointer when it returns to user space at our address, so that section will
//!   not be aborted if it is preempted after resume.
//! - 64-bit tracees only (`cs == 0x33`); 32-bit and x32 processes are refused.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::ptrace;
use nix::sys::ptrace::regset::NT_PRSTATUS;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::arch::x86_64::is_restart_code;
use crate::sys::kcmp::TargetFd;
use crate::sys::mem::{RemoteMem, RemoteMemError};
use crate::sys::ptrace::{self as sysptrace, SigMask};

/// The `syscall` instruction.
const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// User code segment of a 64-bit process on x86_64 (`__USER_CS`).
const USER64_CS: u64 = 0x33;

/// `PTRACE_EVENTMSG_SYSCALL_*` from `<linux/ptrace.h>`: the event message of a syscall
/// stop says which one it is (Linux 5.3+).
const EVENTMSG_SYSCALL_ENTRY: libc::c_long = 1;
const EVENTMSG_SYSCALL_EXIT: libc::c_long = 2;

/// Bytes below the stack pointer that the x86_64 ABI lets a function use without moving
/// `rsp`: scratch memory goes below them.
const RED_ZONE: u64 = 128;

const PAGE: u64 = 4096;

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
fn syscall_name(nr: i64) -> &'static str {
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

/// Drives one thread in a ptrace-stop through injected system calls.
///
/// The thread must be in a ptrace-stop (signal-delivery-stop, `PTRACE_EVENT_STOP`, or a
/// syscall stop) of a tracer that is **the calling thread**: ptrace belongs to the thread
/// that attached, so an `Injector` can be neither sent nor shared across threads (it is
/// `!Send` and `!Sync`).
///
/// Registers, signal mask and siginfo are saved on creation and restored by
/// [`finish`](Self::finish) (or, ignoring errors, on drop). See the [module
/// documentation](self) for what "restored" means for a thread stopped inside a syscall.
pub struct Injector {
    pid: i32,
    tid: i32,
    /// Registers at creation: restored at the end.
    saved: libc::user_regs_struct,
    /// The blocked mask at creation (the one the thread returns to after a temporary
    /// `sigsuspend`-style mask): restored at the end.
    saved_mask: SigMask,
    /// The siginfo of the stop we found the thread in, handed back at the end so a signal
    /// the caller passes on resume keeps its sender and code.
    saved_siginfo: Option<libc::siginfo_t>,
    /// Where the `syscall` instruction is, once known.
    syscall_addr: Option<u64>,
    /// Whether we changed the thread's registers (and so must put it back).
    touched: bool,
    /// Signals that arrived during injection and were suppressed: queued again at the end.
    intercepted: Vec<libc::siginfo_t>,
    /// The thread's memory (`/proc/PID/task/TID/mem` opened on first need).
    mem: RemoteMem,
    finished: bool,
    /// ptrace requests must come from the thread that attached.
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for Injector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injector")
            .field("pid", &self.pid)
            .field("tid", &self.tid)
            .field("rip", &format_args!("{:#x}", self.saved.rip))
            .field("orig_rax", &(self.saved.orig_rax as i64))
            .field("syscall_addr", &self.syscall_addr)
            .field("intercepted", &self.intercepted.len())
            .finish_non_exhaustive()
    }
}

/// A snapshot of the registers and stop the thread was found in (for callers that need to
/// know, e.g. whether it was inside a syscall).
#[derive(Clone, Copy, Debug)]
pub struct StoppedAt {
    /// The registers.
    pub regs: libc::user_regs_struct,
}

impl StoppedAt {
    /// The syscall the thread was in (`orig_rax`), if any.
    pub fn syscall(&self) -> Option<i64> {
        let nr = self.regs.orig_rax as i64;
        (nr >= 0).then_some(nr)
    }

    /// True when the thread was taken out of a syscall that the kernel will restart on
    /// resume (`rax` is `-ERESTARTSYS`, `-ERESTARTNOINTR`, `-ERESTARTNOHAND` or
    /// `-ERESTART_RESTARTBLOCK`).
    pub fn will_restart(&self) -> bool {
        self.syscall().is_some() && is_restart_code(self.regs.rax as i64)
    }
}

impl Injector {
    /// Takes over thread `tid` of process `pid`, which the calling thread holds in a
    /// ptrace-stop, and saves its registers, signal mask and siginfo.
    ///
    /// Nothing is changed in the thread until the first injected syscall.
    ///
    /// A thread in a syscall-*entry* stop (the caller used `PTRACE_SYSCALL`) is not
    /// supported: the syscall it was about to make would be skipped.
    pub fn new(pid: i32, tid: i32) -> Result<Injector, InjectError> {
        let t = Pid::from_raw(tid);
        let ptrace_err = |op: &'static str| {
            move |source: io::Error| InjectError::Ptrace {
                pid,
                tid,
                op,
                source,
            }
        };
        let saved = ptrace::getregset::<NT_PRSTATUS>(t)
            .map_err(errno_io)
            .map_err(ptrace_err("PTRACE_GETREGSET NT_PRSTATUS"))?;
        if saved.cs != USER64_CS {
            return Err(InjectError::NotX86_64 {
                pid,
                tid,
                cs: saved.cs,
            });
        }
        let saved_mask = sysptrace::get_sigmask(t).map_err(ptrace_err("PTRACE_GETSIGMASK"))?;
        // EINVAL: a stop without siginfo (none of the stops we are given, but harmless).
        let saved_siginfo = ptrace::getsiginfo(t).ok();
        Ok(Injector {
            pid,
            tid,
            saved,
            saved_mask,
            saved_siginfo,
            syscall_addr: None,
            touched: false,
            intercepted: Vec::new(),
            mem: RemoteMem::of_thread(pid, tid),
            finished: false,
            _not_send: PhantomData,
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The registers the thread was found with (and will be given back).
    pub fn stopped_at(&self) -> StoppedAt {
        StoppedAt { regs: self.saved }
    }

    /// The signal numbers that arrived while injecting and were taken aside so far; they
    /// are queued to the thread again by [`finish`](Self::finish).
    pub fn intercepted_signals(&self) -> Vec<i32> {
        self.intercepted.iter().map(|i| i.si_signo).collect()
    }

    /// The address of the `syscall` instruction injections go through, once chosen.
    pub fn syscall_address(&self) -> Option<u64> {
        self.syscall_addr
    }

    /// Injects through the `syscall` instruction at `addr` from now on (a trampoline page
    /// the caller mapped, say). Checks that the two bytes there are `0f 05`.
    pub fn set_syscall_address(&mut self, addr: u64) -> Result<(), InjectError> {
        let mut insn = [0u8; 2];
        self.read_memory(addr, &mut insn)?;
        if insn != SYSCALL_INSN {
            return Err(InjectError::NotASyscallInstruction {
                pid: self.pid,
                addr,
            });
        }
        self.syscall_addr = Some(addr);
        Ok(())
    }

    /// Maps a one-page trampoline at `addr` (`MAP_FIXED_NOREPLACE`, read + execute),
    /// writes a `syscall` instruction at its start and injects through it from now on.
    /// Returns the page address. Undo with [`unmap_trampoline`](Self::unmap_trampoline).
    ///
    /// Restore uses this with an address free in both the current and the saved layout,
    /// so injection keeps working while everything else is unmapped and replaced.
    pub fn map_trampoline(&mut self, addr: u64) -> Result<u64, InjectError> {
        let page = self.remote_mmap(
            addr,
            PAGE,
            ProtFlags::PROT_READ | ProtFlags::PROT_EXEC,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE,
            None,
            0,
        )?;
        // A read-only page: written through /proc/PID/mem, which a tracer may do.
        self.write_memory(page, &SYSCALL_INSN)?;
        self.set_syscall_address(page)?;
        Ok(page)
    }

    /// Unmaps a trampoline page mapped by [`map_trampoline`](Self::map_trampoline) (the
    /// `munmap` runs from that very page: the syscall-exit stop comes before the thread
    /// would return into it). The next injection looks for a `syscall` instruction again.
    pub fn unmap_trampoline(&mut self, page: u64) -> Result<(), InjectError> {
        self.remote_munmap(page, PAGE)?;
        if self
            .syscall_addr
            .is_some_and(|a| a >= page && a < page + PAGE)
        {
            self.syscall_addr = None;
        }
        Ok(())
    }

    /// `syscall(nr, args...)` in the tracee—Runs one system call in the stopped thread and
    /// returns its raw result: a value, or `-errno` (see [`syscall_checked`]).
    ///
    /// A syscall interrupted by a signal that arrived meanwhile (`-ERESTART*`) is run
    /// again. Signals that arrive are recorded and handed back by [`finish`].
    ///
    /// [`syscall_checked`]: Self::syscall_checked
    /// [`finish`]: Self::finish
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, InjectError> {
        let addr = self.ensure_syscall_addr()?;
        loop {
            let mut regs = self.saved;
            regs.rax = nr as u64;
            regs.rdi = args[0];
            regs.rsi = args[1];
            regs.rdx = args[2];
            regs.r10 = args[3];
            regs.r8 = args[4];
            regs.r9 = args[5];
            regs.rip = addr;
            // No syscall of ours to restart: the kernel's restart logic, which runs when
            // the thread leaves its current stop, must leave these registers alone.
            regs.orig_rax = u64::MAX;
            self.set_regs(regs)?;
            self.touched = true;
            let out = self.run_to_syscall_exit(nr, addr)?;
            let ret = out.rax as i64;
            // A signal interrupted our syscall (it was recorded): run it again.
            if is_restart_code(ret) {
                continue;
            }
            return Ok(ret);
        }
    }

    /// Like [`syscall`](Self::syscall), but a `-errno` result becomes
    /// [`InjectError::Syscall`] and a success is returned as `u64`.
    pub fn syscall_checked(&mut self, nr: i64, args: [u64; 6]) -> Result<u64, InjectError> {
        let ret = self.syscall(nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(InjectError::Syscall {
                pid: self.pid,
                tid: self.tid,
                nr,
                name: syscall_name(nr),
                source: io::Error::from_raw_os_error(-ret as i32),
            });
        }
        Ok(ret as u64)
    }

    /// `mmap(addr, len, prot, flags, fd, off)` in the tracee—Maps memory in its address
    /// space and returns the address. `fd` is a descriptor in the *tracee's* table (or
    /// `None` for anonymous memory).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn remote_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: ProtFlags,
        flags: MapFlags,
        fd: Option<TargetFd>,
        off: u64,
    ) -> Result<u64, InjectError> {
        let fd = fd.map_or(-1i64, |fd| i64::from(fd.0)) as u64;
        self.syscall_checked(
            libc::SYS_mmap,
            [addr, len, prot.bits() as u64, flags.bits() as u64, fd, off],
        )
    }

    /// `munmap(addr, len)` in the tracee.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/munmap.2.html)
    #[doc(alias = "munmap")]
    pub fn remote_munmap(&mut self, addr: u64, len: u64) -> Result<(), InjectError> {
        self.syscall_checked(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])
            .map(drop)
    }

    /// `mprotect(addr, len, prot)` in the tracee.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/mprotect.2.html)
    #[doc(alias = "mprotect")]
    pub fn remote_mprotect(
        &mut self,
        addr: u64,
        len: u64,
        prot: ProtFlags,
    ) -> Result<(), InjectError> {
        self.syscall_checked(libc::SYS_mprotect, [addr, len, prot.bits() as u64, 0, 0, 0])
            .map(drop)
    }

    /// Reads `buf.len()` bytes of the tracee's memory at `addr`.
    ///
    /// Uses `process_vm_readv`; pages it cannot read (`PROT_NONE`, say) are read through
    /// `/proc/PID/mem`, which ignores protections for a tracer (see [`RemoteMem`]).
    pub fn read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), InjectError> {
        let pid = self.pid;
        self.mem
            .read(addr, buf)
            .map_err(|e| memory_error(pid, "read", e))
    }

    /// Writes `bytes` into the tracee's memory at `addr`.
    ///
    /// Uses `process_vm_writev`; pages it cannot write (read-only code, a trampoline) are
    /// written through `/proc/PID/mem`, which a tracer may write regardless of protection
    /// (private file mappings get a private copy of the page, as a debugger's breakpoint).
    pub fn write_memory(&mut self, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
        let pid = self.pid;
        self.mem
            .write(addr, bytes)
            .map_err(|e| memory_error(pid, "write", e))
    }

    /// Puts the thread back as it was found and consumes the injector.
    ///
    /// Afterwards the thread is in a signal-delivery-stop (unless nothing was injected, in
    /// which case it is untouched in its original stop) with its original registers,
    /// signal mask and siginfo; signals that arrived meanwhile are pending again. Resume
    /// or detach it with the signal the original stop was delivering, or none: freeze's
    /// detach does exactly that.
    pub fn finish(mut self) -> Result<(), InjectError> {
        self.finished = true;
        self.put_back()
    }

    /// Consumes the injector *without* putting the thread back: for restore, which gives
    /// the thread new registers rather than the ones it was found with.
    ///
    /// The thread stays in its current stop (the syscall-exit stop of the last injected
    /// call, if any) with the registers that call left; the caller sets the registers,
    /// XSAVE area and signal mask it wants, then detaches. From a syscall-exit stop the
    /// kernel does not restart a syscall: registers for a thread that should be back
    /// inside one must already point at its `syscall` instruction (see
    /// [`crate::restore::process`]). Returns the signals that arrived while injecting and
    /// were suppressed, for the caller to deliver or drop.
    pub fn release(mut self) -> Vec<libc::siginfo_t> {
        self.finished = true;
        self.touched = false;
        std::mem::take(&mut self.intercepted)
    }

    // ---- internals ----

    fn ptrace_err(&self, op: &'static str) -> impl Fn(io::Error) -> InjectError + use<> {
        let (pid, tid) = (self.pid, self.tid);
        move |source| InjectError::Ptrace {
            pid,
            tid,
            op,
            source,
        }
    }

    fn set_regs(&self, regs: libc::user_regs_struct) -> Result<(), InjectError> {
        ptrace::setregset::<NT_PRSTATUS>(Pid::from_raw(self.tid), regs)
            .map_err(errno_io)
            .map_err(self.ptrace_err("PTRACE_SETREGSET NT_PRSTATUS"))
    }

    fn get_regs(&self) -> Result<libc::user_regs_struct, InjectError> {
        ptrace::getregset::<NT_PRSTATUS>(Pid::from_raw(self.tid))
            .map_err(errno_io)
            .map_err(self.ptrace_err("PTRACE_GETREGSET NT_PRSTATUS"))
    }

    /// Lets the thread run (`PTRACE_SYSCALL` or `PTRACE_CONT`, no signal) until its next
    /// stop, and returns that stop. Its death, however it shows (`ESRCH`, `ECHILD`, an
    /// exit status), is [`InjectError::Exited`] for syscall `nr` (`name`).
    fn resume_to_stop(
        &self,
        how: Resume,
        nr: i64,
        name: &'static str,
    ) -> Result<WaitStatus, InjectError> {
        let t = Pid::from_raw(self.tid);
        let exited = || InjectError::Exited {
            pid: self.pid,
            tid: self.tid,
            nr,
            name,
        };
        let (resumed, op) = match how {
            Resume::Syscall => (ptrace::syscall(t, None), "PTRACE_SYSCALL"),
            Resume::Cont => (ptrace::cont(t, None), "PTRACE_CONT"),
        };
        match resumed {
            Ok(()) => {}
            Err(Errno::ESRCH) => return Err(exited()),
            Err(e) => return Err(self.ptrace_err(op)(errno_io(e))),
        }
        loop {
            match waitpid(t, Some(WaitPidFlag::__WALL)) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) | Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    return Err(exited());
                }
                Err(e) => return Err(self.ptrace_err("waitpid")(errno_io(e))),
                Ok(status) => return Ok(status),
            }
        }
    }

    /// Resumes with `PTRACE_SYSCALL` until the exit stop of the syscall at `addr`,
    /// recording (and suppressing) every signal that arrives on the way.
    fn run_to_syscall_exit(
        &mut self,
        nr: i64,
        addr: u64,
    ) -> Result<libc::user_regs_struct, InjectError> {
        let t = Pid::from_raw(self.tid);
        let mut entered = false;
        loop {
            match self.resume_to_stop(Resume::Syscall, nr, syscall_name(nr))? {
                WaitStatus::PtraceSyscall(_) | WaitStatus::Stopped(..) => {
                    let info = ptrace::getsiginfo(t)
                        .map_err(errno_io)
                        .map_err(self.ptrace_err("PTRACE_GETSIGINFO"))?;
                    if !is_syscall_stop(&info) {
                        self.intercept(info, nr, addr)?;
                        continue;
                    }
                    // Which syscall stop: the kernel leaves it in the event message.
                    let msg = ptrace::getevent(t)
                        .map_err(errno_io)
                        .map_err(self.ptrace_err("PTRACE_GETEVENTMSG"))?;
                    match msg {
                        EVENTMSG_SYSCALL_ENTRY => entered = true,
                        EVENTMSG_SYSCALL_EXIT if entered => return self.get_regs(),
                        // The exit stop of a syscall the thread was in when we took it
                        // over is not ours.
                        _ => {}
                    }
                }
                // Group-stop or another event (clone, with options the caller set):
                // nothing to record, go on.
                _ => {}
            }
        }
    }

    /// The thread is in a signal-delivery-stop while we inject: a fault at our
    /// instruction is an error; any other signal is recorded for later and suppressed.
    fn intercept(&mut self, info: libc::siginfo_t, nr: i64, addr: u64) -> Result<(), InjectError> {
        let synchronous = [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ]
        .contains(&info.si_signo);
        // Kernel-generated (si_code > 0) synchronous signal: our instruction faulted.
        if synchronous && info.si_code > 0 {
            let regs = self.get_regs()?;
            if regs.rip == addr || regs.rip == addr + 2 {
                return Err(InjectError::Fault {
                    pid: self.pid,
                    tid: self.tid,
                    nr,
                    name: syscall_name(nr),
                    signo: info.si_signo,
                    addr: regs.rip,
                });
            }
        }
        self.intercepted.push(info);
        Ok(())
    }

    fn ensure_syscall_addr(&mut self) -> Result<u64, InjectError> {
        if let Some(addr) = self.syscall_addr {
            return Ok(addr);
        }
        let addr = self.find_syscall_insn()?;
        self.syscall_addr = Some(addr);
        Ok(addr)
    }

    /// Finds `0f 05` in executable memory: before the stopped `rip` if the thread is in a
    /// syscall, else in the vdso, else in any executable mapping.
    fn find_syscall_insn(&mut self) -> Result<u64, InjectError> {
        if (self.saved.orig_rax as i64) >= 0 && self.saved.rip >= 2 {
            let at = self.saved.rip - 2;
            let mut insn = [0u8; 2];
            if self.read_memory(at, &mut insn).is_ok() && insn == SYSCALL_INSN {
                return Ok(at);
            }
        }
        let path = format!("/proc/{}/maps", self.pid);
        let maps = std::fs::read_to_string(&path).map_err(|source| InjectError::Proc {
            pid: self.pid,
            path: path.clone(),
            source,
        })?;
        let mut areas: Vec<(u64, u64, bool)> = maps.lines().filter_map(parse_exec_area).collect();
        // The vdso first: small, always there, and it holds the syscall fallbacks.
        areas.sort_by_key(|&(_, _, vdso)| !vdso);
        const CHUNK: u64 = 1 << 20;
        for (start, end, _) in areas {
            let mut at = start;
            while at < end {
                // Overlap chunks by one byte so an instruction across a boundary is seen.
                let len = (end - at).min(CHUNK);
                let mut buf = vec![0u8; len as usize];
                if self.read_memory(at, &mut buf).is_err() {
                    break;
                }
                if let Some(i) = buf.windows(2).position(|w| w == SYSCALL_INSN) {
                    return Ok(at + i as u64);
                }
                if at + len >= end {
                    break;
                }
                at += len - 1;
            }
        }
        Err(InjectError::NoSyscallInstruction { pid: self.pid })
    }

    /// Runs `f` with `len` bytes of scratch memory in the tracee: just below the red
    /// zone of the saved stack (their old contents put back afterwards), or a page mapped
    /// for the purpose when the stack cannot be used.
    fn with_scratch<R>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut Self, u64) -> Result<R, InjectError>,
    ) -> Result<R, InjectError> {
        let at = self.saved.rsp.wrapping_sub(RED_ZONE + len as u64) & !15;
        let mut old = vec![0u8; len];
        if self.saved.rsp > RED_ZONE + len as u64 + 16 && self.read_memory(at, &mut old).is_ok() {
            let out = f(self, at);
            let put_back = self.write_memory(at, &old);
            let out = out?;
            put_back?;
            return Ok(out);
        }
        let page = self.remote_mmap(
            0,
            PAGE,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            None,
            0,
        )?;
        let out = f(self, page);
        let unmapped = self.remote_munmap(page, PAGE);
        let out = out?;
        unmapped?;
        Ok(out)
    }

    /// Queues the signals intercepted during injection to the thread again, blocked, with
    /// their siginfo: `rt_tgsigqueueinfo` from inside the thread may send any si_code.
    fn requeue_intercepted(&mut self) -> Result<(), InjectError> {
        let intercepted = std::mem::take(&mut self.intercepted);
        if intercepted.is_empty() {
            return Ok(());
        }
        // Block all (SIGKILL and SIGSTOP cannot be) so none is delivered right away.
        sysptrace::set_sigmask(Pid::from_raw(self.tid), SigMask(!0))
            .map_err(self.ptrace_err("PTRACE_SETSIGMASK"))?;
        // Our pid and tid in the tracee's own PID namespace.
        let tgid = self.syscall_checked(libc::SYS_getpid, [0; 6])?;
        let tid = self.syscall_checked(libc::SYS_gettid, [0; 6])?;
        for info in &intercepted {
            let bytes = sysptrace::siginfo_bytes(info);
            let signo = info.si_signo as u64;
            self.with_scratch(bytes.len(), |inj, at| {
                inj.write_memory(at, &bytes)?;
                inj.syscall_checked(libc::SYS_rt_tgsigqueueinfo, [tgid, tid, signo, at, 0, 0])
            })?;
        }
        Ok(())
    }

    /// See [`finish`](Self::finish).
    fn put_back(&mut self) -> Result<(), InjectError> {
        if !self.touched {
            return Ok(());
        }
        let t = Pid::from_raw(self.tid);
        self.requeue_intercepted()?;
        self.set_regs(self.saved)?;
        // The thread is in a syscall-exit stop, after which the kernel would not restart
        // an interrupted syscall. Bring it into a signal-delivery-stop instead: block
        // everything but a marker signal no other sender has queued for this thread, send
        // it, and let the thread run into its delivery. It stops before any user code and
        // before the restart logic, which then sees the registers we just restored.
        let pending = self.thread_pending()?;
        let marker = [
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGILL,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGSEGV,
        ]
        .into_iter()
        .find(|&s| !pending.contains(s))
        .unwrap_or(libc::SIGTRAP);
        sysptrace::set_sigmask(t, SigMask(!0).without(marker))
            .map_err(self.ptrace_err("PTRACE_SETSIGMASK"))?;
        sysptrace::tgkill(Pid::from_raw(self.pid), t, marker).map_err(self.ptrace_err("tgkill"))?;
        loop {
            match self.resume_to_stop(Resume::Cont, -1, "(none: putting the thread back)")? {
                WaitStatus::Stopped(_, sig) if sig as i32 == marker => {
                    let info = ptrace::getsiginfo(t)
                        .map_err(errno_io)
                        .map_err(self.ptrace_err("PTRACE_GETSIGINFO"))?;
                    if info.si_code == libc::SI_TKILL {
                        break;
                    }
                    // Cannot be anything else: every other sender was blocked.
                }
                // SIGSTOP (unblockable), a group-stop, an event: go on to the marker.
                _ => {}
            }
        }
        sysptrace::set_sigmask(t, self.saved_mask).map_err(self.ptrace_err("PTRACE_SETSIGMASK"))?;
        if let Some(info) = &self.saved_siginfo {
            ptrace::setsiginfo(t, info)
                .map_err(errno_io)
                .map_err(self.ptrace_err("PTRACE_SETSIGINFO"))?;
        }
        self.touched = false;
        Ok(())
    }

    /// The thread's own pending signals (`SigPnd` in its status file).
    fn thread_pending(&self) -> Result<SigMask, InjectError> {
        let path = format!("/proc/{}/task/{}/status", self.pid, self.tid);
        let text = std::fs::read_to_string(&path).map_err(|source| InjectError::Proc {
            pid: self.pid,
            path: path.clone(),
            source,
        })?;
        let mask = text
            .lines()
            .find_map(|l| l.strip_prefix("SigPnd:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        Ok(SigMask(mask))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the thread is put back as well as it can be.
            let _ = self.put_back();
        }
    }
}

/// How [`Injector::resume_to_stop`] lets a thread run.
#[derive(Debug, Clone, Copy)]
enum Resume {
    /// `PTRACE_SYSCALL`: up to the next syscall entry or exit stop.
    Syscall,
    /// `PTRACE_CONT`: up to the next signal-delivery-stop or event.
    Cont,
}

/// A syscall stop reports `SIGTRAP` with `si_code` `SIGTRAP` (`| 0x80` under
/// `PTRACE_O_TRACESYSGOOD`, which we cannot rely on: options belong to the caller). No
/// signal the kernel delivers on x86_64 has those codes, and other processes can only
/// send negative ones.
fn is_syscall_stop(info: &libc::siginfo_t) -> bool {
    info.si_signo == libc::SIGTRAP
        && (info.si_code == libc::SIGTRAP || info.si_code == (libc::SIGTRAP | 0x80))
}

/// [`InjectError::Memory`] for a failed `op` ("read" or "write") in process `pid`.
fn memory_error(pid: i32, op: &'static str, e: RemoteMemError) -> InjectError {
    InjectError::Memory {
        pid,
        addr: e.addr,
        len: e.len,
        op,
        source: e.source,
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// `start-end perms ...` → `(start, end, is_vdso)` for executable areas.
fn parse_exec_area(line: &str) -> Option<(u64, u64, bool)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let vdso = line.trim_end().ends_with("[vdso]");
    Some((start, end, vdso))
}

// ---- signal handlers ----

bitflags::bitflags! {
    /// `sa_flags` of a signal handler, as the kernel stores them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SaFlags: u64 {
        /// `SA_NOCLDSTOP`: no `SIGCHLD` when a child stops or continues.
        const NOCLDSTOP = libc::SA_NOCLDSTOP as u64;
        /// `SA_NOCLDWAIT`: children do not become zombies.
        const NOCLDWAIT = libc::SA_NOCLDWAIT as u64;
        /// `SA_SIGINFO`: the handler takes three arguments.
        const SIGINFO = libc::SA_SIGINFO as u64;
        /// `SA_RESTORER`: `restorer` is the return trampoline (set by libc).
        const RESTORER = 0x0400_0000;
        /// `SA_ONSTACK`: run on the alternate signal stack.
        const ONSTACK = libc::SA_ONSTACK as u64;
        /// `SA_RESTART`: restart interrupted syscalls.
        const RESTART = libc::SA_RESTART as u64;
        /// `SA_NODEFER`: do not block the signal in its own handler.
        const NODEFER = libc::SA_NODEFER as u64;
        /// `SA_RESETHAND`: reset to the default on entry to the handler.
        const RESETHAND = libc::SA_RESETHAND as u64;
        /// `SA_EXPOSE_TAGBITS`: keep address tag bits in `si_addr`.
        const EXPOSE_TAGBITS = 0x0000_0800;
        /// `SA_UNSUPPORTED`: a probe bit the kernel always clears.
        const UNSUPPORTED = 0x0000_0400;
        // Bits we do not know are kept as they are.
        const _ = !0;
    }
}

/// A signal's disposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigHandler {
    /// `SIG_DFL`.
    Default,
    /// `SIG_IGN`.
    Ignore,
    /// A handler function at this address.
    Function(u64),
}

impl SigHandler {
    /// From the kernel's `sa_handler` value.
    pub fn from_raw(raw: u64) -> SigHandler {
        match raw {
            0 => SigHandler::Default,
            1 => SigHandler::Ignore,
            addr => SigHandler::Function(addr),
        }
    }

    /// The kernel's `sa_handler` value.
    pub fn raw(self) -> u64 {
        match self {
            SigHandler::Default => 0,
            SigHandler::Ignore => 1,
            SigHandler::Function(addr) => addr,
        }
    }
}

/// What `rt_sigaction` reports for one signal (the kernel's `struct sigaction` on x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SigAction {
    /// The signal number (1..=64).
    pub signo: i32,
    /// The disposition.
    pub handler: SigHandler,
    /// `sa_flags`.
    pub flags: SaFlags,
    /// `sa_restorer`: libc's return trampoline.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: SigMask,
}

/// Size of the kernel's `struct sigaction` on x86_64: handler, flags, restorer, mask.
const KSIGACTION_SIZE: usize = 32;

impl SigAction {
    fn to_bytes(self) -> [u8; KSIGACTION_SIZE] {
        let mut out = [0u8; KSIGACTION_SIZE];
        out[0..8].copy_from_slice(&self.handler.raw().to_ne_bytes());
        out[8..16].copy_from_slice(&self.flags.bits().to_ne_bytes());
        out[16..24].copy_from_slice(&self.restorer.to_ne_bytes());
        out[24..32].copy_from_slice(&self.mask.0.to_ne_bytes());
        out
    }

    fn from_bytes(signo: i32, b: &[u8; KSIGACTION_SIZE]) -> SigAction {
        let word = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        SigAction {
            signo,
            handler: SigHandler::from_raw(word(0)),
            flags: SaFlags::from_bits_retain(word(8)),
            restorer: word(16),
            mask: SigMask(word(24)),
        }
    }
}

/// `rt_sigaction(sig, NULL, &old, 8)` in the tracee for every signal but `SIGKILL` and
/// `SIGSTOP`—Reads the process's signal handlers (which `/proc` does not show).
///
/// Returns 62 entries, by signal number.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html)
#[doc(alias = "rt_sigaction")]
pub fn sigactions(inj: &mut Injector) -> Result<Vec<SigAction>, InjectError> {
    sigactions_of(inj, !0)
}

/// Like [`sigactions`], but only for the signals in `set` (bit `n - 1` for signal `n`;
/// `SIGKILL` and `SIGSTOP` are never read): one injected call per signal, so a dump
/// reads only the signals `/proc/PID/status` says are caught.
#[doc(alias = "rt_sigaction")]
pub fn sigactions_of(inj: &mut Injector, set: u64) -> Result<Vec<SigAction>, InjectError> {
    inj.with_scratch(KSIGACTION_SIZE, |inj, at| {
        let mut out = Vec::with_capacity(set.count_ones() as usize);
        let wanted = |s: i32| set & (1u64 << (s - 1)) != 0;
        for signo in (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP && wanted(s)) {
            inj.syscall_checked(libc::SYS_rt_sigaction, [signo as u64, 0, at, 8, 0, 0])?;
            let mut raw = [0u8; KSIGACTION_SIZE];
            inj.read_memory(at, &mut raw)?;
            out.push(SigAction::from_bytes(signo, &raw));
        }
        Ok(out)
    })
}

/// One interval timer as `getitimer(2)` reports it, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ITimer {
    /// `ITIMER_REAL` (0), `ITIMER_VIRTUAL` (1) or `ITIMER_PROF` (2).
    pub which: i32,
    /// `it_interval`: the period after each expiry, 0 for a one-shot timer.
    pub interval_us: u64,
    /// `it_value`: time left until the next expiry, 0 when disarmed.
    pub value_us: u64,
}

/// `getitimer(which, &value)` in the tracee for the three interval timers—Reads them
/// (`/proc` does not show them).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/getitimer.2.html)
#[doc(alias = "getitimer")]
pub fn itimers(inj: &mut Injector) -> Result<[ITimer; 3], InjectError> {
    // struct itimerval: two struct timeval of (tv_sec, tv_usec), 8 bytes each.
    const ITIMERVAL_SIZE: usize = 32;
    inj.with_scratch(ITIMERVAL_SIZE, |inj, at| {
        let mut out = [ITimer {
            which: 0,
            interval_us: 0,
            value_us: 0,
        }; 3];
        for (which, slot) in out.iter_mut().enumerate() {
            inj.syscall_checked(libc::SYS_getitimer, [which as u64, at, 0, 0, 0, 0])?;
            let mut raw = [0u8; ITIMERVAL_SIZE];
            inj.read_memory(at, &mut raw)?;
            let word = |i: usize| u64::from_ne_bytes(raw[i..i + 8].try_into().expect("8 bytes"));
            *slot = ITimer {
                which: which as i32,
                interval_us: word(0) * 1_000_000 + word(8),
                value_us: word(16) * 1_000_000 + word(24),
            };
        }
        Ok(out)
    })
}

/// `prctl(PR_GET_TID_ADDRESS, &addr)` in the tracee—Reads the thread's
/// `clear_child_tid` address (`set_tid_address`, `CLONE_CHILD_CLEARTID`), which `/proc`
/// does not show; 0 when it has none.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_GET_TID_ADDRESS.2const.html)
#[doc(alias = "PR_GET_TID_ADDRESS")]
pub fn tid_address(inj: &mut Injector) -> Result<u64, InjectError> {
    const PR_GET_TID_ADDRESS: u64 = 40;
    inj.with_scratch(8, |inj, at| {
        inj.syscall_checked(libc::SYS_prctl, [PR_GET_TID_ADDRESS, at, 0, 0, 0, 0])?;
        let mut raw = [0u8; 8];
        inj.read_memory(at, &mut raw)?;
        Ok(u64::from_ne_bytes(raw))
    })
}

/// A thread's alternate signal stack (`stack_t`, see sigaltstack(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AltStack {
    /// `ss_sp`: the lowest address of the stack.
    pub sp: u64,
    /// `ss_flags`: `SS_ONSTACK`, `SS_DISABLE`, `SS_AUTODISARM`.
    pub flags: i32,
    /// `ss_size` in bytes.
    pub size: u64,
}

/// Size of the kernel's `stack_t` on x86_64: pointer, int (padded to 8), size_t.
pub const STACK_T_SIZE: usize = 24;

impl AltStack {
    /// The `stack_t` bytes the kernel reads and writes.
    pub fn to_bytes(self) -> [u8; STACK_T_SIZE] {
        let mut b = [0u8; STACK_T_SIZE];
        b[0..8].copy_from_slice(&self.sp.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[16..24].copy_from_slice(&self.size.to_ne_bytes());
        b
    }

    /// Decodes a `stack_t`.
    pub fn from_bytes(b: &[u8; STACK_T_SIZE]) -> AltStack {
        let word = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        AltStack {
            sp: word(0),
            flags: i32::from_ne_bytes(b[8..12].try_into().expect("4 bytes")),
            size: word(16),
        }
    }
}

/// `sigaltstack(NULL, &old)` in the tracee—Reads the thread's alternate signal stack,
/// which `/proc` does not show.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/sigaltstack.2.html)
pub fn sigaltstack(inj: &mut Injector) -> Result<AltStack, InjectError> {
    inj.with_scratch(STACK_T_SIZE, |inj, at| {
        inj.syscall_checked(libc::SYS_sigaltstack, [0, at, 0, 0, 0, 0])?;
        let mut raw = [0u8; STACK_T_SIZE];
        inj.read_memory(at, &mut raw)?;
        Ok(AltStack::from_bytes(&raw))
    })
}

/// `rt_sigaction(action.signo, &action, NULL, 8)` in the tracee—Installs a handler as
/// [`sigactions`] reported it.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html)
pub fn set_sigaction(inj: &mut Injector, action: &SigAction) -> Result<(), InjectError> {
    let bytes = action.to_bytes();
    inj.with_scratch(KSIGACTION_SIZE, |inj, at| {
        inj.write_memory(at, &bytes)?;
        inj.syscall_checked(
            libc::SYS_rt_sigaction,
            [action.signo as u64, at, 0, 8, 0, 0],
        )
        .map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altstack_bytes_round_trip() {
        let a = AltStack {
            sp: 0x7f00_0000_1000,
            flags: libc::SS_DISABLE,
            size: 65536,
        };
        assert_eq!(AltStack::from_bytes(&a.to_bytes()), a);
        assert_eq!(&a.to_bytes()[16..24], &65536u64.to_ne_bytes());
    }

    #[test]
    fn sigaction_bytes_round_trip() {
        let a = SigAction {
            signo: libc::SIGUSR1,
            handler: SigHandler::Function(0x5555_0000_1234),
            flags: SaFlags::SIGINFO | SaFlags::RESTORER | SaFlags::RESTART,
            restorer: 0x7fff_0000_4321,
            mask: SigMask::EMPTY.with(libc::SIGINT),
        };
        assert_eq!(SigAction::from_bytes(a.signo, &a.to_bytes()), a);
        assert_eq!(SigHandler::from_raw(0), SigHandler::Default);
        assert_eq!(SigHandler::from_raw(1), SigHandler::Ignore);
    }

    #[test]
    fn exec_areas_are_parsed() {
        let vdso =
            "7ffd1e5f0000-7ffd1e5f2000 r-xp 00000000 00:00 0                          [vdso]";
        assert_eq!(
            parse_exec_area(vdso),
            Some((0x7ffd1e5f0000, 0x7ffd1e5f2000, true))
        );
        assert_eq!(
            parse_exec_area("7f00-7f10 rw-p 00000000 00:00 0   [heap]"),
            None
        );
        assert!(
            !parse_exec_area("400000-401000 r-xp 0 08:01 12 /bin/x")
                .unwrap()
                .2
        );
    }
}
