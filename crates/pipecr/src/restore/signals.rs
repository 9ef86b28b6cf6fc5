//! The signal state of a restored process, and the registers its threads resume with:
//! handlers, interval timers and pending signals are put back from inside the process
//! ([`restore_signals`], injected: any `si_code` is allowed to oneself), and
//! [`final_regs`] re-arms a syscall the thread was stopped in. Apart from the address
//! space steps ([`super::mm`]) because it concerns signals, not memory.
//!
//! A thread saved inside a syscall the kernel would restart (`rax` = `-ERESTART*`) is set
//! back onto its `syscall` instruction (`rip -= 2`, `rax = orig_rax`), so it enters the
//! call again; `-ERESTART_RESTARTBLOCK` becomes `restart_syscall`, whose saved state
//! (the restart block) lives in the kernel and does not come back: in a new process it
//! returns `EINTR` (a `nanosleep` sees an interruption).

use pipecr_image::proto;

use super::mm::PATH_AT;
use super::process::ProcessRestoreError;
use crate::arch::x86_64::{
    ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, is_restart_code,
};
use crate::inject::kstruct::{AltStack, ITimer, SaFlags, SigAction, SigHandler};
use crate::inject::{Injector, calls};
use crate::sys::ptrace::SigMask;

type Result<T> = std::result::Result<T, ProcessRestoreError>;

/// Where, in the trampoline page, a `struct sigaction`, `struct itimerval` or siginfo is
/// written (the path area: no file is opened any more at this point).
const SCRATCH_AT: u64 = PATH_AT;

/// Installs the saved signal handlers and interval timers and queues the saved pending
/// signals again, from inside the process (so any `si_code` is accepted). Without
/// `handlers_read` the handlers and timers are unknown and stay at their defaults.
pub(super) fn restore_signals(
    inj: &mut Injector,
    pid: i32,
    tramp: u64,
    core: &proto::Core,
) -> Result<()> {
    let at = tramp + SCRATCH_AT;
    if core.handlers_read {
        for a in &core.sigactions {
            if a.signo <= 0 || a.signo > 64 || a.signo == libc::SIGKILL || a.signo == libc::SIGSTOP
            {
                return Err(ProcessRestoreError::Invalid {
                    pid,
                    what: format!("a handler for signal {}", a.signo),
                });
            }
            let action = SigAction {
                signo: a.signo,
                handler: SigHandler::from_raw(a.handler),
                flags: SaFlags::from_bits_retain(a.flags),
                restorer: a.restorer,
                mask: SigMask(a.mask),
            };
            calls::rt_sigaction_at(inj, at, &action)?;
        }
        for timer in &core.itimers {
            let timer = ITimer {
                which: timer.which,
                interval_us: timer.interval_us,
                value_us: timer.value_us,
            };
            calls::setitimer_at(inj, at, &timer)?;
        }
    }
    // Our ids as the process itself sees them.
    let tgid = calls::getpid(inj)?;
    let tid = calls::gettid(inj)?;
    let check = |info: &proto::Siginfo| {
        if info.raw.len() != 128 || info.signo <= 0 || info.signo > 64 {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "pending signal {} with a siginfo of {} bytes",
                    info.signo,
                    info.raw.len()
                ),
            });
        }
        Ok(())
    };
    // The other threads queue their own (restore/threads.rs).
    if let Some(thread) = super::threads::main_thread(pid, core) {
        for info in &thread.pending {
            check(info)?;
            calls::rt_tgsigqueueinfo_at(inj, at, tgid, tid, info.signo, &info.raw)?;
        }
    }
    for info in &core.shared_pending {
        check(info)?;
        calls::rt_sigqueueinfo_at(inj, at, tgid, info.signo, &info.raw)?;
    }
    Ok(())
}

/// Sets the saved alternate signal stack of the thread `inj` drives (`sigaltstack`, the
/// `stack_t` written into the trampoline page at `tramp`). When the dump did not read it,
/// the thread gets none: the main thread inherited the restorer's, in memory that is gone.
/// `SS_ONSTACK` is an output only: whether the thread runs on the stack follows from its
/// stack pointer.
pub(super) fn restore_altstack(
    inj: &mut Injector,
    pid: i32,
    tramp: u64,
    thread: &proto::Thread,
) -> Result<()> {
    let none = proto::SigAltStack {
        sp: 0,
        flags: libc::SS_DISABLE as u32,
        size: 0,
    };
    let alt = thread.altstack.as_ref().unwrap_or(&none);
    let flags = alt.flags as i32 & !libc::SS_ONSTACK;
    let stack = if flags & libc::SS_DISABLE != 0 {
        AltStack {
            sp: 0,
            flags: libc::SS_DISABLE,
            size: 0,
        }
    } else {
        AltStack {
            sp: alt.sp,
            flags,
            size: alt.size,
        }
    };
    calls::set_sigaltstack_at(inj, tramp + SCRATCH_AT, &stack).map_err(|e| {
        ProcessRestoreError::Invalid {
            pid,
            what: format!(
                "thread {}: alternate signal stack {:#x} of {} bytes (flags {:#x}): {e}",
                thread.tid, alt.sp, alt.size, alt.flags
            ),
        }
    })?;
    Ok(())
}

/// The saved registers, put back onto the `syscall` instruction when the thread was
/// stopped in a call the kernel would have restarted.
pub(super) fn final_regs(pid: i32, thread: &proto::Thread) -> Result<libc::user_regs_struct> {
    let Some(proto::thread::Regs::X8664(r)) = &thread.regs else {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: "a thread without x86_64 registers".to_owned(),
        });
    };
    let mut regs = crate::arch::x86_64::to_live(r);
    restart_syscall(&mut regs);
    Ok(regs)
}

/// Whether the saved thread was stopped inside a syscall the kernel restarts (`rax` a
/// `-ERESTART*` code): it is set back onto its `syscall` instruction, and must enter it
/// again before it is released (see `threads::detach`).
pub(super) fn in_restarted_syscall(pid: i32, thread: &proto::Thread) -> Result<bool> {
    let Some(proto::thread::Regs::X8664(r)) = &thread.regs else {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: "a thread without x86_64 registers".to_owned(),
        });
    };
    let regs = crate::arch::x86_64::to_live(r);
    Ok((regs.orig_rax as i64) >= 0 && is_restart_code(regs.rax as i64))
}

/// What the kernel's signal code does to a thread leaving a syscall interrupted with a
/// restart code and no handler: we detach from a syscall-exit stop, where it would not.
fn restart_syscall(regs: &mut libc::user_regs_struct) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match -(regs.rax as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip -= 2;
        }
        ERESTART_RESTARTBLOCK => {
            regs.rax = libc::SYS_restart_syscall as u64;
            regs.rip -= 2;
        }
        _ => {}
    }
    // Nothing left to restart for the kernel.
    regs.orig_rax = u64::MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_syscalls_are_rearmed() {
        let mut r: libc::user_regs_struct = zeroed_regs();
        r.orig_rax = 0;
        r.rax = (-ERESTARTSYS) as u64;
        r.rip = 0x1002;
        restart_syscall(&mut r);
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1000, u64::MAX));
        r.orig_rax = libc::SYS_nanosleep as u64;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        r.rip = 0x1002;
        restart_syscall(&mut r);
        assert_eq!(r.rax, libc::SYS_restart_syscall as u64);
        assert_eq!(r.rip, 0x1000);
        // Not in a syscall: untouched.
        r.rax = 5;
        r.rip = 0x1002;
        restart_syscall(&mut r);
        assert_eq!((r.rax, r.rip), (5, 0x1002));
    }

    fn zeroed_regs() -> libc::user_regs_struct {
        libc::user_regs_struct {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: u64::MAX,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        }
    }
}
