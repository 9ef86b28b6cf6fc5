//! x86_64: the general registers as the kernel's `struct user_regs_struct` (ptrace
//! NT_PRSTATUS) and as the image's [`proto::X86Regs`], field for field in both
//! directions, so dump and restore cannot disagree on the mapping; the kernel's syscall
//! restart codes a stopped thread shows in `rax`, and the restart logic as it applies to
//! saved registers ([`rearm_syscall`]); where the XSAVE area (ptrace NT_X86_XSTATE)
//! keeps `XCR0` and `XSTATE_BV`; and setting a stopped thread's registers, TLS base and
//! XSAVE area ([`set_regs`]); the names of the system calls messages and `show` print
//! ([`syscall_name`]).
//!
//! This module owns these numbers and layouts, defined once for the library and the CLI.
//! Which thread gets which registers, and when, is left to `restore`; reading this CPU's
//! own `XCR0` to [`crate::sys::cpu`]; the raw `NT_X86_XSTATE` request to
//! [`crate::sys::ptrace`].
//!
//! A thread saved inside a syscall the kernel would restart (`rax` = `-ERESTART*`) is set
//! back onto its `syscall` instruction (`rip -= 2`, `rax = orig_rax`), so it enters the
//! call again; `-ERESTART_RESTARTBLOCK` becomes `restart_syscall`, whose saved state
//! (the restart block) lives in the kernel and does not come back: in a new process it
//! returns `EINTR` (a `nanosleep` sees an interruption). `poll` is the exception: its
//! arguments are still in the registers, so it is entered again with them, as a
//! `ppoll` or `select` would be restarted: its timeout starts over (a program waits up
//! to one timeout longer) instead of failing with `EINTR`, which some programs treat as
//! fatal (`script` ends its session on it).

use std::io;

use nix::sys::ptrace;
use nix::unistd::Pid as NixPid;
use pipecr_image::proto;

/// `-ERESTARTSYS` in `rax`: the syscall was interrupted and restarts unless a handler
/// without `SA_RESTART` runs (`include/linux/errno.h`).
pub const ERESTARTSYS: i64 = 512;
/// `-ERESTARTNOINTR` in `rax`: the syscall was interrupted and always restarts.
pub const ERESTARTNOINTR: i64 = 513;
/// `-ERESTARTNOHAND` in `rax`: the syscall restarts unless a handler runs.
pub const ERESTARTNOHAND: i64 = 514;
/// `-ERESTART_RESTARTBLOCK` in `rax`: the syscall continues as `restart_syscall`, with
/// its state in the kernel's restart block.
pub const ERESTART_RESTARTBLOCK: i64 = 516;

/// True when `rax` holds one of the kernel's restart codes (`-ERESTARTSYS`,
/// `-ERESTARTNOINTR`, `-ERESTARTNOHAND` or `-ERESTART_RESTARTBLOCK`).
pub fn is_restart_code(rax: i64) -> bool {
    restart_code_name(rax).is_some()
}

/// The name of the restart code in `rax` (`"-ERESTARTSYS"`, ...), or `None` for any
/// other value.
pub fn restart_code_name(rax: i64) -> Option<&'static str> {
    Some(match rax.checked_neg()? {
        ERESTARTSYS => "-ERESTARTSYS",
        ERESTARTNOINTR => "-ERESTARTNOINTR",
        ERESTARTNOHAND => "-ERESTARTNOHAND",
        ERESTART_RESTARTBLOCK => "-ERESTART_RESTARTBLOCK",
        _ => return None,
    })
}

/// Names of the x86_64 system calls pipecr runs in a stopped thread or commonly finds one
/// stopped in (`arch/x86/entry/syscalls/syscall_64.tbl`), by number, sorted.
const SYSCALL_NAMES: &[(i64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (3, "close"),
    (7, "poll"),
    (9, "mmap"),
    (10, "mprotect"),
    (11, "munmap"),
    (12, "brk"),
    (13, "rt_sigaction"),
    (14, "rt_sigprocmask"),
    (17, "pread64"),
    (18, "pwrite64"),
    (19, "readv"),
    (20, "writev"),
    (23, "select"),
    (25, "mremap"),
    (28, "madvise"),
    (33, "dup2"),
    (34, "pause"),
    (35, "nanosleep"),
    (36, "getitimer"),
    (38, "setitimer"),
    (39, "getpid"),
    (43, "accept"),
    (44, "sendto"),
    (45, "recvfrom"),
    (46, "sendmsg"),
    (47, "recvmsg"),
    (61, "wait4"),
    (72, "fcntl"),
    (110, "getppid"),
    (128, "rt_sigtimedwait"),
    (129, "rt_sigqueueinfo"),
    (130, "rt_sigsuspend"),
    (131, "sigaltstack"),
    (157, "prctl"),
    (158, "arch_prctl"),
    (186, "gettid"),
    (202, "futex"),
    (218, "set_tid_address"),
    (222, "timer_create"),
    (223, "timer_settime"),
    (224, "timer_gettime"),
    (225, "timer_getoverrun"),
    (230, "clock_nanosleep"),
    (232, "epoll_wait"),
    (247, "waitid"),
    (257, "openat"),
    (270, "pselect6"),
    (271, "ppoll"),
    (273, "set_robust_list"),
    (275, "splice"),
    (276, "tee"),
    (281, "epoll_pwait"),
    (288, "accept4"),
    (297, "rt_tgsigqueueinfo"),
    (334, "rseq"),
    (426, "io_uring_enter"),
    (435, "clone3"),
    (441, "epoll_pwait2"),
];

/// The name of x86_64 system call `nr`, for the calls this module's table knows (those
/// pipecr injects and those a stopped thread is commonly found in); `None` for others.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    SYSCALL_NAMES
        .binary_search_by_key(&nr, |&(n, _)| n)
        .ok()
        .map(|i| SYSCALL_NAMES[i].1)
}

/// Offset of `XCR0` in the XSAVE area the kernel's ptrace regset returns: bytes 464..472,
/// the software-reserved part of the legacy FXSAVE area (`sw_reserved.xstate_fx_sw`'s
/// `xfeatures`, as gdb reads it).
pub const XSAVE_XCR0_AT: usize = 464;

/// Offset of the XSAVE header's `XSTATE_BV` (the components in use) in the
/// standard-format XSAVE area: the header follows the 512-byte legacy area.
pub const XSAVE_XSTATE_BV_AT: usize = 512;

/// A little-endian u64 at `at` in `xsave`, if the area is long enough.
fn xsave_word(xsave: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = xsave.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// `XCR0` (the state components the OS enabled when it was saved) from a raw XSAVE area,
/// or `None` when the area is too short.
pub fn xcr0(xsave: &[u8]) -> Option<u64> {
    xsave_word(xsave, XSAVE_XCR0_AT)
}

/// `XSTATE_BV` (the state components the area holds) from a raw XSAVE area, or `None`
/// when the area is too short to have an XSAVE header.
pub fn xstate_bv(xsave: &[u8]) -> Option<u64> {
    xsave_word(xsave, XSAVE_XSTATE_BV_AT)
}

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
    (regs.orig_rax as i64) >= 0 && is_restart_code(regs.rax as i64)
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
        ERESTART_RESTARTBLOCK if regs.orig_rax == libc::SYS_poll as u64 => {
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
    fn restart_codes() {
        assert!(is_restart_code(-512) && is_restart_code(-516));
        assert!(!is_restart_code(-515) && !is_restart_code(0) && !is_restart_code(-4));
        assert!(!is_restart_code(i64::MIN));
        assert_eq!(restart_code_name(-513), Some("-ERESTARTNOINTR"));
    }

    #[test]
    fn syscall_names() {
        // Sorted and unique, or the binary search misses names.
        assert!(SYSCALL_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_name(libc::SYS_mmap), Some("mmap"));
        assert_eq!(syscall_name(libc::SYS_epoll_pwait2), Some("epoll_pwait2"));
        assert_eq!(syscall_name(libc::SYS_read), Some("read"));
        assert_eq!(syscall_name(libc::SYS_clone3), Some("clone3"));
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(libc::SYS_kexec_load), None);
    }

    #[test]
    fn xsave_words() {
        let mut area = vec![0u8; 576];
        area[464..472].copy_from_slice(&0x2e7u64.to_le_bytes());
        area[512..520].copy_from_slice(&0x7u64.to_le_bytes());
        assert_eq!(xcr0(&area), Some(0x2e7));
        assert_eq!(xstate_bv(&area), Some(0x7));
        assert_eq!(xstate_bv(&area[..519]), None);
        assert_eq!(xcr0(&area[..471]), None);
    }

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
        // poll with a timeout: entered again with its own arguments.
        r.orig_rax = libc::SYS_poll as u64;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        r.rip = 0x1002;
        rearm_syscall(&mut r);
        assert_eq!((r.rax, r.rip), (libc::SYS_poll as u64, 0x1000));
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
