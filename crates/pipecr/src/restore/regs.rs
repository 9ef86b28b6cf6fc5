//! The CPU state a restored thread resumes with, set as the last step for each thread
//! (the main one by [`super::image`], the others by [`super::threads`]): its saved
//! registers, re-armed when it was stopped inside a restartable syscall, its XSAVE area
//! and its blocked mask. The register mapping and the kernel's restart logic are
//! [`crate::arch::x86_64`]'s; this module only ties them to a saved thread and to
//! [`ProcessRestoreError`].

use nix::unistd::Pid as NixPid;
use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};
use crate::arch::x86_64;
use crate::sys::ptrace::{self as sys_ptrace, SigMask};

/// The saved registers of `thread`, as [`x86_64::to_live`] gives them (an error for a
/// thread of process `pid` saved without x86_64 registers).
fn saved_regs(pid: i32, thread: &proto::Thread) -> Result<libc::user_regs_struct> {
    let Some(proto::thread::Regs::X8664(r)) = &thread.regs else {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: "a thread without x86_64 registers".to_owned(),
        });
    };
    Ok(x86_64::to_live(r))
}

/// Whether the saved thread was stopped inside a syscall the kernel restarts (`rax` a
/// `-ERESTART*` code): it is set back onto its `syscall` instruction, and must enter it
/// again before it is released (see `threads::release`).
pub(super) fn in_restarted_syscall(pid: i32, thread: &proto::Thread) -> Result<bool> {
    Ok(x86_64::in_restartable_syscall(&saved_regs(pid, thread)?))
}

/// Gives the stopped thread `tid` of process `pid` its saved registers (put back onto the
/// `syscall` instruction when it was stopped in a call the kernel would have restarted),
/// XSAVE area and blocked mask.
pub(super) fn set_final(pid: i32, tid: i32, thread: &proto::Thread) -> Result<()> {
    let mut regs = saved_regs(pid, thread)?;
    x86_64::rearm_syscall(&mut regs);
    let t = NixPid::from_raw(tid);
    x86_64::set_regs(t, regs, &thread.xsave).map_err(|e| ProcessRestoreError::Os {
        pid: tid,
        op: e.op,
        source: e.source,
    })?;
    sys_ptrace::set_sigmask(t, SigMask(thread.blocked)).map_err(|source| {
        ProcessRestoreError::Os {
            pid: tid,
            op: "PTRACE_SETSIGMASK",
            source,
        }
    })?;
    Ok(())
}
