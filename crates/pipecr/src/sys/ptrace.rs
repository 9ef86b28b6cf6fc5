//! The ptrace requests nix lacks (or offers only untyped): the XSAVE area, signal masks,
//! queued signals, rseq registration.
//!
//! This module owns the raw `ptrace(2)` calls and their argument structures, nothing else.
//! Requests nix already wraps safely are used from nix directly and not repeated here:
//! `PTRACE_GETREGSET`/`PTRACE_SETREGSET` with `NT_PRSTATUS`
//! (`nix::sys::ptrace::{getregset, setregset}::<regset::NT_PRSTATUS>`), `PTRACE_GETSIGINFO`
//! and `PTRACE_SETSIGINFO`, `PTRACE_SINGLESTEP`, `PTRACE_CONT`, `PTRACE_GET_SYSCALL_INFO`
//! (`nix::sys::ptrace::syscall_info`).
//!
//! Every request here needs the target thread to be in a ptrace-stop of a tracer that is
//! the *calling thread*: ptrace belongs to the thread that attached, not to the process.
//! Otherwise the kernel answers `ESRCH`.

use std::io;

use nix::unistd::Pid;

/// `NT_X86_XSTATE` from `<linux/elf.h>`: the XSAVE area as a register set.
const NT_X86_XSTATE: libc::c_int = 0x202;

/// Upper bound for the XSAVE area we accept from the kernel (AMX tile data makes today's
/// largest about 11 KiB; this leaves room and still refuses nonsense).
const XSTATE_MAX: usize = 1 << 20;

/// A kernel signal set (`sigset_t` as the kernel sees it: 64 bits on x86_64). Bit `n - 1`
/// stands for signal `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SigMask(pub u64);

impl SigMask {
    /// The empty set.
    pub const EMPTY: SigMask = SigMask(0);

    /// True when signal `signo` (1..=64) is in the set.
    pub fn contains(self, signo: i32) -> bool {
        (1..=64).contains(&signo) && self.0 & (1u64 << (signo - 1)) != 0
    }

    /// The set with `signo` (1..=64) added; other numbers leave it unchanged.
    #[must_use]
    pub fn with(self, signo: i32) -> SigMask {
        if (1..=64).contains(&signo) {
            SigMask(self.0 | (1u64 << (signo - 1)))
        } else {
            self
        }
    }

    /// The set with `signo` (1..=64) removed; other numbers leave it unchanged.
    #[must_use]
    pub fn without(self, signo: i32) -> SigMask {
        if (1..=64).contains(&signo) {
            SigMask(self.0 & !(1u64 << (signo - 1)))
        } else {
            self
        }
    }
}

/// Which queue of pending signals to read with [`peek_siginfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigQueue {
    /// Signals sent to this one thread (`tgkill`, faults, timers aimed at a thread).
    Thread,
    /// Signals sent to the whole process (`kill`), shared by all its threads
    /// (`PTRACE_PEEKSIGINFO_SHARED`).
    Shared,
}

/// The rseq area a thread registered, as `PTRACE_GET_RSEQ_CONFIGURATION` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RseqConfiguration {
    /// Address of the `struct rseq` in the thread's address space (0: none registered).
    pub abi_pointer: u64,
    /// Size registered for it (32 for the original ABI, more on newer glibc).
    pub abi_size: u32,
    /// The signature that must precede every abort handler.
    pub signature: u32,
    /// Registration flags (0 today).
    pub flags: u32,
}

/// Turns the `-1`-on-error convention of `ptrace(2)` into an `io::Result`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov)`—Reads the thread's whole XSAVE area
/// (x87, SSE, AVX, AVX-512, ... as the CPU and kernel enable them).
///
/// The bytes are the kernel's user ABI layout (`struct xregs_state`, standard format): the
/// legacy 512-byte FXSAVE region, the XSAVE header at offset 512 (`xfeatures` tells which
/// components are present) and the components. Bytes 464..472 (in the FXSAVE area's
/// software-reserved part) hold the XCR0 the kernel uses, as gdb reads it. The size is asked of the kernel: it copies at most its own size and shrinks
/// `iov_len` to what it wrote.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_GETREGSET")]
#[doc(alias = "NT_X86_XSTATE")]
pub fn get_xstate(tid: Pid) -> io::Result<Vec<u8>> {
    let mut len = 4096;
    loop {
        let mut buf = vec![0u8; len];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, which is valid for writes of `iov_len` bytes and
        // outlives the call; the kernel writes at most that many bytes and updates iov_len.
        check(unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGSET,
                tid.as_raw(),
                NT_X86_XSTATE as libc::c_long,
                &raw mut iov,
            )
        })?;
        // A full buffer may mean the area is larger than what we offered: ask again.
        if iov.iov_len < len {
            buf.truncate(iov.iov_len);
            return Ok(buf);
        }
        if len >= XSTATE_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "PTRACE_GETREGSET NT_X86_XSTATE: XSAVE area larger than 1 MiB",
            ));
        }
        len *= 2;
    }
}

/// `ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov)`—Replaces the thread's XSAVE area
/// with bytes as [`get_xstate`] returned them.
///
/// The kernel validates the header (`EINVAL` for features it does not support, reserved
/// bits, a bad `xcomp_bv`) and the MXCSR mask.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_SETREGSET")]
pub fn set_xstate(tid: Pid, xstate: &[u8]) -> io::Result<()> {
    let mut iov = libc::iovec {
        // The kernel only reads through this pointer for SETREGSET.
        iov_base: xstate.as_ptr().cast_mut().cast(),
        iov_len: xstate.len(),
    };
    // SAFETY: `iov` describes `xstate`, valid for reads of `iov_len` bytes for the whole
    // call; PTRACE_SETREGSET only reads it.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid.as_raw(),
            NT_X86_XSTATE as libc::c_long,
            &raw mut iov,
        )
    })?;
    Ok(())
}

/// `ptrace(PTRACE_GETSIGMASK, tid, 8, &mask)`—Reads the thread's blocked-signal mask.
///
/// When the thread is inside a call that swaps the mask temporarily (`sigsuspend`,
/// `ppoll`, `pselect`, `epoll_pwait`) the kernel reports the mask it will restore after
/// the call (`saved_sigmask`), which is the one to save.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_GETSIGMASK")]
pub fn get_sigmask(tid: Pid) -> io::Result<SigMask> {
    let mut mask = 0u64;
    // SAFETY: `mask` is 8 writable bytes, the size passed as `addr`.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            tid.as_raw(),
            std::mem::size_of::<u64>(),
            &raw mut mask,
        )
    })?;
    Ok(SigMask(mask))
}

/// `ptrace(PTRACE_SETSIGMASK, tid, 8, &mask)`—Replaces the thread's blocked-signal mask.
///
/// `SIGKILL` and `SIGSTOP` are silently dropped from the set. A pending temporary mask
/// (see [`get_sigmask`]) is forgotten: the thread resumes with exactly `mask`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_SETSIGMASK")]
pub fn set_sigmask(tid: Pid, mask: SigMask) -> io::Result<()> {
    let mask = mask.0;
    // SAFETY: `mask` is 8 readable bytes, the size passed as `addr`; the kernel only reads.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid.as_raw(),
            std::mem::size_of::<u64>(),
            &raw const mask,
        )
    })?;
    Ok(())
}

/// `ptrace(PTRACE_PEEKSIGINFO, tid, &args, buf)`—Reads every signal queued for the thread
/// (or for its whole process) without dequeuing anything, oldest first.
///
/// Standard signals appear at most once each; real-time signals once per `sigqueue`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_PEEKSIGINFO")]
#[doc(alias = "PTRACE_PEEKSIGINFO_SHARED")]
pub fn peek_siginfo(tid: Pid, queue: SigQueue) -> io::Result<Vec<libc::siginfo_t>> {
    const BATCH: usize = 32;
    let flags = match queue {
        SigQueue::Thread => 0,
        SigQueue::Shared => libc::PTRACE_PEEKSIGINFO_SHARED,
    };
    let mut out: Vec<libc::siginfo_t> = Vec::new();
    loop {
        let args = libc::ptrace_peeksiginfo_args {
            off: out.len() as u64,
            flags,
            nr: BATCH as i32,
        };
        out.reserve(BATCH);
        let spare = out.spare_capacity_mut();
        // SAFETY: `args` is a valid ptrace_peeksiginfo_args; `spare` has room for at least
        // BATCH siginfo_t, and the kernel writes at most `nr` of them, returning how many.
        let n = check(unsafe {
            libc::ptrace(
                libc::PTRACE_PEEKSIGINFO,
                tid.as_raw(),
                &raw const args,
                spare.as_mut_ptr(),
            )
        })?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= BATCH)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "PTRACE_PEEKSIGINFO: bad count")
            })?;
        // SAFETY: the kernel initialised the first `n` spare elements.
        unsafe { out.set_len(out.len() + n) };
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// `ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof, &conf)`—Reads the rseq area the
/// thread registered (Linux 5.13+; `EIO` before).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_GET_RSEQ_CONFIGURATION")]
pub fn rseq_configuration(tid: Pid) -> io::Result<RseqConfiguration> {
    let mut conf = libc::ptrace_rseq_configuration {
        rseq_abi_pointer: 0,
        rseq_abi_size: 0,
        signature: 0,
        flags: 0,
        pad: 0,
    };
    // SAFETY: `conf` is a writable ptrace_rseq_configuration, whose size is passed as
    // `addr`; the kernel writes at most that many bytes.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GET_RSEQ_CONFIGURATION,
            tid.as_raw(),
            std::mem::size_of::<libc::ptrace_rseq_configuration>(),
            &raw mut conf,
        )
    })?;
    Ok(RseqConfiguration {
        abi_pointer: conf.rseq_abi_pointer,
        abi_size: conf.rseq_abi_size,
        signature: conf.signature,
        flags: conf.flags,
    })
}

/// What [`wait_thread`] saw of a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadWait {
    /// It exited or was killed (or is no longer ours to wait for: `ECHILD`).
    Gone,
    /// A signal-delivery-stop or syscall stop, with the stop signal (any signal number,
    /// real-time ones included, which `nix`'s `Signal` cannot name).
    Signal(i32),
    /// Another stop: a `PTRACE_EVENT_*` stop (group-stops of a seized thread included).
    Event,
}

/// `waitpid(tid, &status, __WALL)`—Waits for the next state change of the traced thread
/// `tid`, retrying on `EINTR`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/waitpid.2.html)
pub fn wait_thread(tid: Pid) -> io::Result<ThreadWait> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int, `status`, which we own.
        let ret = unsafe { libc::waitpid(tid.as_raw(), &mut status, libc::__WALL) };
        if ret == -1 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(ThreadWait::Gone),
                _ => return Err(e),
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Ok(ThreadWait::Gone);
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        return Ok(if status >> 16 != 0 {
            ThreadWait::Event
        } else {
            ThreadWait::Signal(libc::WSTOPSIG(status))
        });
    }
}

/// `tgkill(tgid, tid, sig)`—Sends `sig` to one thread, queued on that thread alone.
///
/// Used to put a tracee that pipecr resumed back into a signal-delivery-stop of a signal
/// pipecr chose. The receiver sees `si_code == SI_TKILL` and our pid as the sender.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/tgkill.2.html)
pub fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill takes three integers and dereferences no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::c_long::from(tgid.as_raw()),
            libc::c_long::from(tid.as_raw()),
            libc::c_long::from(sig),
        )
    };
    check(ret).map(drop)
}

/// `get_robust_list(tid, &head, &len)`—The head of a thread's robust futex list and the
/// head's size, `(0, 0)` when it registered none. Needs ptrace read access to the thread.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/get_robust_list.2.html)
#[doc(alias = "get_robust_list")]
pub fn robust_list(tid: Pid) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    // SAFETY: both out pointers are valid, writable and 8 bytes (a pointer and a size_t
    // on x86_64).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            libc::c_long::from(tid.as_raw()),
            &raw mut head,
            &raw mut len,
        )
    };
    check(ret)?;
    Ok((head, len))
}

// The kernel's siginfo is 128 bytes on every Linux architecture; injection relies on it.
const _: () = assert!(std::mem::size_of::<libc::siginfo_t>() == 128);

/// The 128 bytes of a `siginfo_t`, as `rt_tgsigqueueinfo(2)` reads them from memory.
pub fn siginfo_bytes(info: &libc::siginfo_t) -> [u8; std::mem::size_of::<libc::siginfo_t>()] {
    // SAFETY: libc's siginfo_t is 128 bytes of integers (three ints, then an int array)
    // with no padding, so every byte is initialised and reading it as bytes is sound.
    unsafe { std::mem::transmute_copy(info) }
}

/// How [`resume`] lets a stopped thread go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// `PTRACE_CONT`.
    Cont,
    /// `PTRACE_SYSCALL`.
    Syscall,
    /// `PTRACE_DETACH`.
    Detach,
}

/// `ptrace(PTRACE_CONT | PTRACE_SYSCALL | PTRACE_DETACH, tid, 0, sig)`—Lets a stopped
/// thread go, delivering signal `sig` (0: none) when the stop was a signal-delivery-stop.
/// Any signal number, real-time ones included (which `nix`'s `Signal` cannot name).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_CONT")]
#[doc(alias = "PTRACE_DETACH")]
pub fn resume(tid: Pid, how: Resume, sig: i32) -> io::Result<()> {
    let request = match how {
        Resume::Cont => libc::PTRACE_CONT,
        Resume::Syscall => libc::PTRACE_SYSCALL,
        Resume::Detach => libc::PTRACE_DETACH,
    };
    // SAFETY: these requests take the signal number as `data` and dereference no memory.
    check(unsafe {
        libc::ptrace(
            request,
            tid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            sig as libc::c_long,
        )
    })?;
    Ok(())
}

/// `PTRACE_SECCOMP_GET_FILTER` from `<linux/ptrace.h>`.
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
/// `PTRACE_SECCOMP_GET_METADATA` from `<linux/ptrace.h>`.
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// `BPF_MAXINSNS`: the longest classic BPF program the kernel accepts.
const BPF_MAXINSNS: usize = 4096;
/// Size of one `struct sock_filter`.
pub const SOCK_FILTER_SIZE: usize = 8;

/// `ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, buf)`—Reads the classic BPF program of
/// the thread's seccomp filter `index` (0: the first installed, as `get_nth_filter` in
/// kernel/seccomp.c counts; ptrace(2) says the most recent), as raw
/// `struct sock_filter` bytes. `ENOENT` past the oldest filter; needs `CAP_SYS_ADMIN`
/// and a caller not itself under seccomp.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_SECCOMP_GET_FILTER")]
pub fn seccomp_filter(tid: Pid, index: u64) -> io::Result<Vec<u8>> {
    // SAFETY: a NULL buffer makes the kernel only return the instruction count.
    let count = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid.as_raw(),
            index,
            std::ptr::null_mut::<libc::c_void>(),
        )
    })? as usize;
    if count > BPF_MAXINSNS {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    let mut buf = vec![0u8; count * SOCK_FILTER_SIZE];
    // SAFETY: `buf` is writable for `count` sock_filter structs, which is what the filter
    // holds (filters never change once installed).
    let got = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid.as_raw(),
            index,
            buf.as_mut_ptr().cast::<libc::c_void>(),
        )
    })? as usize;
    if got != count {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    Ok(buf)
}

/// `ptrace(PTRACE_SECCOMP_GET_METADATA, tid, sizeof, &meta)`—The flags the kernel kept of
/// the thread's seccomp filter `index` (`SECCOMP_FILTER_FLAG_LOG`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/ptrace.2.html)
#[doc(alias = "PTRACE_SECCOMP_GET_METADATA")]
pub fn seccomp_filter_flags(tid: Pid, index: u64) -> io::Result<u64> {
    // struct seccomp_metadata { __u64 filter_off; __u64 flags; }
    let mut meta: [u64; 2] = [index, 0];
    // SAFETY: `meta` is a readable and writable seccomp_metadata (16 bytes), whose size
    // is passed as `addr`; the kernel reads filter_off and writes flags.
    check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_METADATA,
            tid.as_raw(),
            std::mem::size_of_val(&meta),
            meta.as_mut_ptr().cast::<libc::c_void>(),
        )
    })?;
    Ok(meta[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmask_bits() {
        let m = SigMask::EMPTY.with(libc::SIGUSR1).with(64);
        assert!(m.contains(libc::SIGUSR1));
        assert!(m.contains(64));
        assert!(!m.contains(libc::SIGUSR2));
        assert!(!m.contains(0) && !m.contains(65));
        assert_eq!(m.without(libc::SIGUSR1).without(64), SigMask::EMPTY);
        assert_eq!(m.with(0).with(65), m);
    }
}
