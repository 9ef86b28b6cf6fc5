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

use super::error::{ProcessRestoreError, Result};
use super::saved::main_thread;
use super::trampoline::SCRATCH_AT;
use crate::inject::Injector;

/// The kernel's "restart me" codes (`include/linux/errno.h`).
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

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
            // The kernel's struct sigaction on x86_64: handler, flags, restorer, mask.
            let mut raw = Vec::with_capacity(32);
            for v in [a.handler, a.flags, a.restorer, a.mask] {
                raw.extend_from_slice(&v.to_ne_bytes());
            }
            inj.write_memory(at, &raw)?;
            inj.syscall_checked(libc::SYS_rt_sigaction, [a.signo as u64, at, 0, 8, 0, 0])?;
        }
        for timer in &core.itimers {
            // struct itimerval: it_interval then it_value, each (tv_sec, tv_usec).
            let mut raw = Vec::with_capacity(32);
            for us in [timer.interval_us, timer.value_us] {
                raw.extend_from_slice(&(us / 1_000_000).to_ne_bytes());
                raw.extend_from_slice(&(us % 1_000_000).to_ne_bytes());
            }
            inj.write_memory(at, &raw)?;
            inj.syscall_checked(libc::SYS_setitimer, [timer.which as u64, at, 0, 0, 0, 0])?;
        }
    }
    // Our ids as the process itself sees them.
    let tgid = inj.syscall_checked(libc::SYS_getpid, [0; 6])?;
    let tid = inj.syscall_checked(libc::SYS_gettid, [0; 6])?;
    let queue = |inj: &mut Injector, info: &proto::Siginfo, nr: i64, args: [u64; 6]| {
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
        inj.write_memory(at, &info.raw)?;
        inj.syscall_checked(nr, args)?;
        Ok(())
    };
    // The other threads queue their own (restore/threads.rs).
    if let Some(thread) = main_thread(pid, core) {
        for info in &thread.pending {
            let args = [tgid, tid, info.signo as u64, at, 0, 0];
            queue(inj, info, libc::SYS_rt_tgsigqueueinfo, args)?;
        }
    }
    for info in &core.shared_pending {
        let args = [tgid, info.signo as u64, at, 0, 0, 0];
        queue(inj, info, libc::SYS_rt_sigqueueinfo, args)?;
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
        crate::inject::AltStack {
            sp: 0,
            flags: libc::SS_DISABLE,
            size: 0,
        }
    } else {
        crate::inject::AltStack {
            sp: alt.sp,
            flags,
            size: alt.size,
        }
    };
    inj.write_memory(tramp + SCRATCH_AT, &stack.to_bytes())?;
    inj.syscall_checked(libc::SYS_sigaltstack, [tramp + SCRATCH_AT, 0, 0, 0, 0, 0])
        .map_err(|e| ProcessRestoreError::Invalid {
            pid,
            what: format!(
                "thread {}: alternate signal stack {:#x} of {} bytes (flags {:#x}): {e}",
                thread.tid, alt.sp, alt.size, alt.flags
            ),
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
    Ok((regs.orig_rax as i64) >= 0
        && matches!(
            -(regs.rax as i64),
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
        ))
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
