//! The signal state of a restored process: handlers, interval timers and pending
//! signals are put back from inside the process ([`restore_signals`], injected: any
//! `si_code` is allowed to oneself), and each thread's alternate signal stack
//! ([`restore_altstack`]). Apart from the address space steps ([`super::mm`]) because it
//! concerns signals, not memory; the registers a thread resumes with, re-armed when it
//! was stopped in a syscall, are [`super::regs`]'s.

use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};
use super::saved::main_thread;
use super::trampoline::SCRATCH_AT;
use crate::inject::kstruct::{AltStack, ITimer, SaFlags, SigAction, SigHandler};
use crate::inject::{Injector, calls};
use crate::sys::ptrace::SigMask;

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
    if let Some(thread) = main_thread(pid, core) {
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
