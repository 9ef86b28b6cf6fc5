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
use crate::inject::Injector;

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
