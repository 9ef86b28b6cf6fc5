//! x86_64: the general registers as the kernel's `struct user_regs_struct` (ptrace
//! NT_PRSTATUS) and as the image's [`proto::X86Regs`], field for field in both
//! directions, so dump and restore cannot disagree on the mapping; the kernel's
//! syscall-restart logic as it applies to saved registers ([`rearm_syscall`]); and
//! setting a stopped thread's registers, TLS base and XSAVE area ([`set_regs`]).
//!
//! Which thread gets which registers, and when, is left to `restore`; the raw
//! `NT_X86_XSTATE` request to [`crate::sys::ptrace`].
//!
//! A thread saved inside a syscall the kernel would restart (`rax` = `-ERESTART*`) is set
//! back onto its `syscall` instruction (`rip -= 2`, `rax = orig_rax`), so it enters the
//! call again; `-ERESTART_RESTARTBLOCK` becomes `restart_syscall`, whose saved state
//! (the restart block) lives in the kernel and does not come back: in a new process it
//! returns `EINTR` (a `nanosleep` sees an interruption).

use std::io;

use nix::sys::ptrace;
use nix::unistd::Pid as NixPid;
use pipecr_image::proto;

/// `-ERESTARTSYS` in `rax`: restart the syscall unless a handler without `SA_RESTART`
/// runs (`include/linux/errno.h`).
pub const ERESTARTSYS: i64 = 512;
/// `-ERESTARTNOINTR` in `rax`: always restart the syscall.
pub const ERESTARTNOINTR: i64 = 513;
/// `-ERESTARTNOHAND` in `rax`: restart the syscall unless a handler runs.
pub const ERESTARTNOHAND: i64 = 514;
/// `-ERESTART_RESTARTBLOCK` in `rax`: restart through `restart_syscall`.
pub const ERESTART_RESTARTBLOCK: i64 = 516;

/// The saved form of live registers.
pub fn to_saved(r: &libc::user_regs_struct) -> proto::X86Regs {
    proto::X86Regs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        orig_rax: r.orig_rax,
        rip: r.rip,
        cs: r.cs,
        eflags: r.eflags,
        rsp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
    }
}

/// The live form of saved registers, ready for `PTRACE_SETREGSET`.
pub fn to_live(r: &proto::X86Regs) -> libc::user_regs_struct {
    libc::user_regs_struct {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        orig_rax: r.orig_rax,
        rip: r.rip,
        cs: r.cs,
        eflags: r.eflags,
        rsp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
    }
}

/// Whether `regs` were saved inside a syscall the kernel restarts (`rax` a `-ERESTART*`
/// code): [`rearm_syscall`] sets them back onto the `syscall` instruction.
pub fn in_restartable_syscall(regs: &libc::user_regs_struct) -> bool {
    (regs.orig_rax as i64) >= 0
        && matches!(
            -(regs.rax as i64),
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
        )
}

/// What the kernel's signal code does to a thread leaving a syscall interrupted with a
/// restart code and no handler: we detach from a syscall-exit stop, where it would not.
pub fn rearm_syscall(regs: &mut libc::user_regs_struct) {
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

/// A ptrace request that set a thread's registers failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed")]
pub struct SetRegsError {
    /// The request.
    pub op: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// `PTRACE_SETREGSET`—Sets the general registers of the stopped thread `tid` (with
/// `fs_base`/`gs_base`, the TLS), then its XSAVE area when `xsave` is not empty.
pub fn set_regs(
    tid: NixPid,
    regs: libc::user_regs_struct,
    xsave: &[u8],
) -> Result<(), SetRegsError> {
    ptrace::setregset::<ptrace::regset::NT_PRSTATUS>(tid, regs).map_err(|e| SetRegsError {
        op: "PTRACE_SETREGSET NT_PRSTATUS",
        source: io::Error::from_raw_os_error(e as i32),
    })?;
    if !xsave.is_empty() {
        crate::sys::ptrace::set_xstate(tid, xsave).map_err(|source| SetRegsError {
            op: "PTRACE_SETREGSET NT_X86_XSTATE",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_and_live_round_trip_every_field() {
        // Distinct values, so a field mapped to the wrong one shows.
        let saved = proto::X86Regs {
            r15: 1,
            r14: 2,
            r13: 3,
            r12: 4,
            rbp: 5,
            rbx: 6,
            r11: 7,
            r10: 8,
            r9: 9,
            r8: 10,
            rax: 11,
            rcx: 12,
            rdx: 13,
            rsi: 14,
            rdi: 15,
            orig_rax: 16,
            rip: 17,
            cs: 18,
            eflags: 19,
            rsp: 20,
            ss: 21,
            fs_base: 22,
            gs_base: 23,
            ds: 24,
            es: 25,
            fs: 26,
            gs: 27,
        };
        assert_eq!(to_saved(&to_live(&saved)), saved);
    }

    #[test]
    fn interrupted_syscalls_are_rearmed() {
        let mut r: libc::user_regs_struct = zeroed_regs();
        r.orig_rax = 0;
        r.rax = (-ERESTARTSYS) as u64;
        r.rip = 0x1002;
        rearm_syscall(&mut r);
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1000, u64::MAX));
        r.orig_rax = libc::SYS_nanosleep as u64;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        r.rip = 0x1002;
        rearm_syscall(&mut r);
        assert_eq!(r.rax, libc::SYS_restart_syscall as u64);
        assert_eq!(r.rip, 0x1000);
        // Not in a syscall: untouched.
        r.rax = 5;
        r.rip = 0x1002;
        rearm_syscall(&mut r);
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
