//! The [`Injector`]: drives one thread in a ptrace-stop through injected system calls
//! (see the [module documentation](super) for how). It owns the saved state, finding a
//! `syscall` instruction, running one syscall, scratch memory in the tracee and putting
//! the thread back; the few calls it needs for that itself (`mmap`/`munmap` of its own
//! pages, requeueing signals) it makes directly. Typed calls for everyone else are in
//! [`super::calls`].

use std::fmt;
use std::io;
use std::marker::PhantomData;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::ptrace;
use nix::sys::ptrace::regset::NT_PRSTATUS;
use nix::unistd::Pid;

use super::error::{InjectError, syscall_name};
use crate::arch::x86_64::is_restart_code;
use crate::sys::kcmp::TargetFd;
use crate::sys::mem::{RemoteMem, RemoteMemError};
use crate::sys::ptrace::{self as sysptrace, SigMask, ThreadWait};

/// The `syscall` instruction.
const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// User code segment of a 64-bit process on x86_64 (`__USER_CS`).
const USER64_CS: u64 = 0x33;

/// `PTRACE_EVENTMSG_SYSCALL_*` from `<linux/ptrace.h>`: the event message of a syscall
/// stop says which one it is (Linux 5.3+).
const EVENTMSG_SYSCALL_ENTRY: libc::c_long = 1;
const EVENTMSG_SYSCALL_EXIT: libc::c_long = 2;

/// `si_code`s of a `SIGTRAP` (`<asm-generic/siginfo.h>`): the single-step report at a
/// syscall's exit (`TRAP_BRKPT`), a debug exception's single step (`TRAP_TRACE`).
const TRAP_BRKPT: i32 = 1;
const TRAP_TRACE: i32 = 2;

/// `PTRACE_EVENT_STOP` (`<linux/ptrace.h>`).
const PTRACE_EVENT_STOP: i32 = 128;

/// Bytes below the stack pointer that the x86_64 ABI lets a function use without moving
/// `rsp`: scratch memory goes below them.
const RED_ZONE: u64 = 128;

const PAGE: u64 = 4096;

/// Drives one thread in a ptrace-stop through injected system calls.
///
/// The thread must be in a ptrace-stop (signal-delivery-stop, `PTRACE_EVENT_STOP`, or a
/// syscall stop) of a tracer that is **the calling thread**: ptrace belongs to the thread
/// that attached, so an `Injector` can be neither sent nor shared across threads (it is
/// `!Send` and `!Sync`).
///
/// Registers, signal mask and siginfo are saved on creation and restored by
/// [`finish`](Self::finish) (or, ignoring errors, on drop). See the [module
/// documentation](super) for what "restored" means for a thread stopped inside a syscall.
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
    /// Whether each syscall runs under `PTRACE_SINGLESTEP` (one stop) rather than
    /// `PTRACE_SYSCALL` (two): see [`use_single_step`](Self::use_single_step).
    step: bool,
    /// Signals that arrived during injection and were suppressed: queued again at the end.
    intercepted: Vec<libc::siginfo_t>,
    /// The thread's memory (`/proc/PID/task/TID/mem` opened on first need).
    mem: RemoteMem,
    /// Bytes of scratch memory kept for the whole session (0: each reader saves and puts
    /// back its own): see [`keep_scratch`](Self::keep_scratch).
    kept_len: usize,
    /// The kept scratch area, once first used.
    kept: Option<KeptScratch>,
    /// Whether a reader is using the kept area (a nested one gets its own).
    kept_busy: bool,
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
        tracing::trace!(pid, tid, "injection session starts");
        Ok(Injector {
            pid,
            tid,
            saved,
            saved_mask,
            saved_siginfo,
            syscall_addr: None,
            touched: false,
            step: false,
            intercepted: Vec::new(),
            mem: RemoteMem::of_thread(pid, tid),
            kept_len: 0,
            kept: None,
            kept_busy: false,
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

    /// Runs every following syscall with one ptrace stop instead of two, when that is
    /// safe for this thread; returns whether it is. For sessions that end with
    /// [`finish`](Self::finish) (dump's readers), not [`release`](Self::release).
    ///
    /// `PTRACE_SINGLESTEP` over the `syscall` instruction stops once, at the syscall's
    /// exit (before the thread returns to user space), where `PTRACE_SYSCALL` stops at
    /// its entry and again at its exit. The stop is the delivery of a *forced* `SIGTRAP`,
    /// and forcing a signal the thread blocks or the process ignores resets its handler to
    /// `SIG_DFL` (and unblocks it): so single-stepping is used only when `SIGTRAP` is
    /// neither blocked in the thread (`SigBlk`: the mask in force, which inside
    /// `sigsuspend` is the temporary one, not what `PTRACE_GETSIGMASK` reports) nor
    /// ignored (`SigIgn`); the tree is stopped, so neither changes meanwhile. Otherwise
    /// the injector keeps to `PTRACE_SYSCALL`. The stop being a signal-delivery-stop,
    /// [`release`](Self::release) would leave the thread where the kernel's restart
    /// logic still runs: hence not for restore.
    pub fn use_single_step(&mut self) -> Result<bool, InjectError> {
        let [ignored, blocked] = self.thread_status_masks(["SigIgn:", "SigBlk:"])?;
        Ok(self.use_single_step_given(ignored, blocked))
    }

    /// [`use_single_step`](Self::use_single_step) with the thread's `SigIgn` and `SigBlk`
    /// given by a caller that read its status file while the tree was already stopped
    /// (they cannot change meanwhile), saving that read.
    pub fn use_single_step_given(&mut self, ignored: SigMask, blocked: SigMask) -> bool {
        self.step = !ignored.contains(libc::SIGTRAP) && !blocked.contains(libc::SIGTRAP);
        self.step
    }

    /// Keeps one scratch area of `len` bytes (at most a page) for the rest of the
    /// session: found and its old bytes saved at its first use, put back once by
    /// [`finish`](Self::finish), instead of once per reader. For sessions of several
    /// readers (dump's); `len` must cover the largest of them (a larger one gets its own
    /// area, as without this call).
    ///
    /// The area lies below the stack's red zone, which the thread does not use while it
    /// is stopped (a signal handler would overwrite it), so keeping it longer changes
    /// nothing the thread could see.
    pub fn keep_scratch(&mut self, len: usize) {
        if self.kept.is_none() {
            self.kept_len = len.min(PAGE as usize);
        }
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
            let out = if self.step {
                self.run_single_step(nr, addr)?
            } else {
                self.run_to_syscall_exit(nr, addr)?
            };
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
    /// Afterwards the thread is in a stop of the kind it was found in (unless nothing was
    /// injected, in which case it is untouched in its original stop): a
    /// `PTRACE_EVENT_STOP` if it was found in one, else a signal-delivery-stop; with its
    /// original registers, signal mask and siginfo; signals that arrived meanwhile are
    /// pending again. Resume or detach it with the signal the original stop was
    /// delivering, or none: freeze's detach does exactly that.
    pub fn finish(mut self) -> Result<(), InjectError> {
        self.finished = true;
        tracing::trace!(
            pid = self.pid,
            tid = self.tid,
            "injection session ends (put back)"
        );
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
        tracing::trace!(
            pid = self.pid,
            tid = self.tid,
            "injection session ends (released)"
        );
        // Stack bytes only (no syscall can run now); restore keeps no scratch anyway.
        if let Some(KeptScratch { at, old: Some(old) }) = self.kept.take() {
            let _ = self.write_memory(at, &old);
        }
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

    /// Lets the thread run (`PTRACE_SYSCALL`, `PTRACE_CONT` or `PTRACE_SINGLESTEP`, no
    /// signal) until its next
    /// stop, and returns that stop. Its death, however it shows (`ESRCH`, `ECHILD`, an
    /// exit status), is [`InjectError::Exited`] for syscall `nr` (`name`). The stop is
    /// read raw: a real-time signal arriving meanwhile (a POSIX timer's) must be seen as
    /// the signal-delivery-stop it is.
    fn resume_to_stop(
        &self,
        how: Resume,
        nr: i64,
        name: &'static str,
    ) -> Result<ThreadWait, InjectError> {
        let t = Pid::from_raw(self.tid);
        let exited = || InjectError::Exited {
            pid: self.pid,
            tid: self.tid,
            nr,
            name,
        };
        let (resumed, op) = match how {
            Resume::Syscall => (ptrace::syscall(t, None), "PTRACE_SYSCALL"),
            Resume::Step => (ptrace::step(t, None), "PTRACE_SINGLESTEP"),
            Resume::Cont => (ptrace::cont(t, None), "PTRACE_CONT"),
        };
        match resumed {
            Ok(()) => {}
            Err(Errno::ESRCH) => return Err(exited()),
            Err(e) => return Err(self.ptrace_err(op)(errno_io(e))),
        }
        match sysptrace::wait_thread(t).map_err(self.ptrace_err("waitpid"))? {
            ThreadWait::Gone => Err(exited()),
            stop => Ok(stop),
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
            let stop = self.resume_to_stop(Resume::Syscall, nr, syscall_name(nr))?;
            // Group-stop or another event (clone, with options the caller set): nothing
            // to record, go on.
            if stop == ThreadWait::Event {
                continue;
            }
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
                // The exit stop of a syscall the thread was in when we took it over is
                // not ours.
                _ => {}
            }
        }
    }

    /// Resumes with `PTRACE_SINGLESTEP` until the single-step trap that follows the
    /// syscall at `addr`, recording (and suppressing) every other signal on the way.
    ///
    /// The trap is reported at the syscall's exit, as a `SIGTRAP` (`TRAP_BRKPT`, or
    /// `TRAP_TRACE` from a debug exception) with `rip` just past the instruction; a
    /// `SIGTRAP` with other codes or elsewhere is not ours and is recorded like any
    /// signal. Resuming from that stop without a signal discards the trap.
    fn run_single_step(
        &mut self,
        nr: i64,
        addr: u64,
    ) -> Result<libc::user_regs_struct, InjectError> {
        let t = Pid::from_raw(self.tid);
        loop {
            // Group-stop or another event: nothing to record, go on.
            if self.resume_to_stop(Resume::Step, nr, syscall_name(nr))? == ThreadWait::Event {
                continue;
            }
            let info = ptrace::getsiginfo(t)
                .map_err(errno_io)
                .map_err(self.ptrace_err("PTRACE_GETSIGINFO"))?;
            if info.si_signo == libc::SIGTRAP
                && (info.si_code == TRAP_BRKPT || info.si_code == TRAP_TRACE)
            {
                let regs = self.get_regs()?;
                if regs.rip == addr + 2 {
                    return Ok(regs);
                }
            }
            self.intercept(info, nr, addr)?;
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
    pub(crate) fn with_scratch<R>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut Self, u64) -> Result<R, InjectError>,
    ) -> Result<R, InjectError> {
        if len <= self.kept_len && !self.kept_busy {
            let at = self.kept_area()?;
            self.kept_busy = true;
            let out = f(self, at);
            self.kept_busy = false;
            return out;
        }
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

    /// The kept scratch area (see [`keep_scratch`](Self::keep_scratch)), found and its
    /// old bytes saved on first use: below the red zone of the saved stack, or a page
    /// mapped for the purpose when the stack cannot be used.
    fn kept_area(&mut self) -> Result<u64, InjectError> {
        if let Some(k) = &self.kept {
            return Ok(k.at);
        }
        let len = self.kept_len;
        let at = self.saved.rsp.wrapping_sub(RED_ZONE + len as u64) & !15;
        let mut old = vec![0u8; len];
        if self.saved.rsp > RED_ZONE + len as u64 + 16 && self.read_memory(at, &mut old).is_ok() {
            self.kept = Some(KeptScratch { at, old: Some(old) });
            return Ok(at);
        }
        let page = self.remote_mmap(
            0,
            PAGE,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            None,
            0,
        )?;
        self.kept = Some(KeptScratch {
            at: page,
            old: None,
        });
        Ok(page)
    }

    /// Puts the kept scratch area back: its old bytes, or unmaps the page mapped for it.
    fn put_back_scratch(&mut self) -> Result<(), InjectError> {
        match self.kept.take() {
            None => Ok(()),
            Some(KeptScratch { at, old: Some(old) }) => self.write_memory(at, &old),
            Some(KeptScratch { at, old: None }) => self.remote_munmap(at, PAGE),
        }
    }

    /// Queues the signals intercepted during injection to the thread again, blocked, with
    /// their siginfo: `rt_tgsigqueueinfo` from inside the thread may send any si_code.
    fn requeue_intercepted(&mut self) -> Result<(), InjectError> {
        let intercepted = std::mem::take(&mut self.intercepted);
        if intercepted.is_empty() {
            return Ok(());
        }
        // Block all (SIGKILL and SIGSTOP cannot be) so none is delivered right away; a
        // single-step trap must then not be forced (it would reset a SIGTRAP handler).
        self.step = false;
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
            // At most stack bytes to put back (a mapped page means a syscall ran).
            return self.put_back_scratch();
        }
        let requeued = !self.intercepted.is_empty();
        let requeue = self.requeue_intercepted();
        // The stack bytes go back even if requeueing failed; and a failure to put them
        // back must not leave the thread with our registers: reported after.
        let scratch = self.put_back_scratch();
        requeue?;
        self.put_back_thread(requeued)?;
        scratch
    }

    /// The rest of [`put_back`](Self::put_back): registers, mask, the stop.
    fn put_back_thread(&mut self, requeued: bool) -> Result<(), InjectError> {
        let t = Pid::from_raw(self.tid);
        self.set_regs(self.saved)?;
        if self.interrupt_stop_found() && self.back_to_event_stop()? {
            if requeued {
                sysptrace::set_sigmask(t, self.saved_mask)
                    .map_err(self.ptrace_err("PTRACE_SETSIGMASK"))?;
            }
            self.touched = false;
            return Ok(());
        }
        // The thread is in a syscall-exit stop, after which the kernel would not restart
        // an interrupted syscall, or a single-step trap's delivery with the trap flag
        // set. Bring it into a signal-delivery-stop (by PTRACE_CONT, which clears the
        // flag) of a signal it can be detached with: block
        // everything but a marker signal no other sender has queued for this thread, send
        // it, and let the thread run into its delivery. It stops before any user code and
        // before the restart logic, which then sees the registers we just restored.
        let [pending] = self.thread_status_masks(["SigPnd:"])?;
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
                ThreadWait::Signal(sig) if sig == marker => {
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

    /// True when the thread was found in the `PTRACE_EVENT_STOP` of a `PTRACE_INTERRUPT`
    /// (how [`crate::freeze`] stops a thread that is not delivering a signal): a stop
    /// that hands no signal back, so one like it is as good as the original.
    fn interrupt_stop_found(&self) -> bool {
        self.saved_siginfo.is_some_and(|i| {
            i.si_signo == libc::SIGTRAP && i.si_code == libc::SIGTRAP | PTRACE_EVENT_STOP << 8
        })
    }

    /// Puts the thread (registers already restored) back into a `PTRACE_EVENT_STOP`:
    /// `PTRACE_INTERRUPT`, then `PTRACE_CONT`. The kernel checks for that trap at the top
    /// of its signal loop, before it dequeues any signal and before the syscall-restart
    /// logic (which then sees the restored registers), so the thread stops before any
    /// user code, whether it was in a syscall-exit stop or a signal-delivery-stop. One
    /// stop, no signal sent and no mask changed, and resuming clears a single-step flag.
    /// Returns false, having changed nothing, when the thread was not seized
    /// (`PTRACE_INTERRUPT` answers `EIO`): the caller then uses a marker signal.
    fn back_to_event_stop(&self) -> Result<bool, InjectError> {
        let t = Pid::from_raw(self.tid);
        match ptrace::interrupt(t) {
            Ok(()) => {}
            Err(Errno::EIO) => return Ok(false),
            Err(Errno::ESRCH) => {
                return Err(InjectError::Exited {
                    pid: self.pid,
                    tid: self.tid,
                    nr: -1,
                    name: "(none: putting the thread back)",
                });
            }
            Err(e) => return Err(self.ptrace_err("PTRACE_INTERRUPT")(errno_io(e))),
        }
        loop {
            match self.resume_to_stop(Resume::Cont, -1, "(none: putting the thread back)")? {
                // The interrupt's trap, or a group-stop (SIGSTOP arrived meanwhile; it
                // is checked first): either is a PTRACE_EVENT_STOP, the only event a
                // thread that runs no instruction before the trap can report.
                ThreadWait::Event => return Ok(true),
                // No signal can be dequeued before the trap (see above).
                ThreadWait::Signal(sig) => {
                    return Err(self.ptrace_err("PTRACE_INTERRUPT")(io::Error::other(
                        format!("stopped delivering signal {sig} before the interrupt's trap"),
                    )));
                }
                _ => {}
            }
        }
    }

    /// Signal mask lines of the thread's status file: `SigPnd:` (its own pending
    /// signals), `SigBlk:` (its blocked mask in force), `SigIgn:` (the process's ignored
    /// ones); a line that is missing reads as the empty set.
    fn thread_status_masks<const N: usize>(
        &self,
        keys: [&str; N],
    ) -> Result<[SigMask; N], InjectError> {
        let path = format!("/proc/{}/task/{}/status", self.pid, self.tid);
        let text = std::fs::read_to_string(&path).map_err(|source| InjectError::Proc {
            pid: self.pid,
            path: path.clone(),
            source,
        })?;
        Ok(keys.map(|key| {
            let mask = text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0);
            SigMask(mask)
        }))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if !self.finished {
            tracing::trace!(
                pid = self.pid,
                tid = self.tid,
                "injection session abandoned"
            );
            // Best effort: the thread is put back as well as it can be.
            let _ = self.put_back();
        }
    }
}

/// The scratch area an [`Injector`] keeps for a whole session.
#[derive(Debug)]
struct KeptScratch {
    /// Its address in the tracee.
    at: u64,
    /// The stack bytes it covers, put back at the end; `None` for a page we mapped.
    old: Option<Vec<u8>>,
}

/// How [`Injector::resume_to_stop`] lets a thread run.
#[derive(Debug, Clone, Copy)]
enum Resume {
    /// `PTRACE_SYSCALL`: up to the next syscall entry or exit stop.
    Syscall,
    /// `PTRACE_CONT`: up to the next signal-delivery-stop or event.
    Cont,
    /// `PTRACE_SINGLESTEP`: one instruction (a `syscall`: to its exit), then a trap.
    Step,
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

#[cfg(test)]
mod tests {
    use super::*;

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
