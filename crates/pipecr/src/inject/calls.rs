//! One function per system call run inside a stopped thread, with typed arguments (as
//! rustix types its own): `mmap(inj, addr, len, ProtFlags, MapFlags, fd, off)`,
//! `rt_sigaction`, `sigaltstack`, `getitimer`, `prctl(PR_SET_MM_MAP)`, `clone3`, ... and
//! the readers dump uses.
//!
//! # Readers: batched
//!
//! Each read-only call is defined once, as a `read_*` function that adds it to a
//! [`ReadBatch`] and returns a [`Pending`] value ([`read_tid_address`],
//! [`read_sigaltstack`], [`read_sigactions`], [`read_itimers`], [`read_timer_gettime`],
//! [`read_timer_getoverrun`]). A dump session adds every read it needs to one batch and
//! runs it with [`Injector::run_reads`]: all of them in one ptrace stop where the batch
//! code can run, one at a time where it cannot; then each `Pending` decodes its value. A
//! new read-only call is one more `read_*` function here (its number, its arguments with
//! [`Arg::Out`] for the buffer it fills, and a decoder that checks its result), added to
//! the session's batch in [`crate::task`]: it is batched with the others. The plain forms
//! ([`tid_address`], [`sigaltstack`], [`sigactions_of`], [`itimers`], ...) run one such
//! read at once, one call at a time.
//!
//! A call that passes a struct writes it (encoded by [`super::kstruct`]) into the tracee
//! first: at an address the caller names (`at`: restore's trampoline page, where no stack
//! may be left), or, for the readers, in scratch memory the injector finds. Running the
//! call belongs to [`super::Injector`]; which calls to make, in which order, to dump and
//! restore.

use nix::fcntl::OFlag;
use nix::sys::mman::{MRemapFlags, MapFlags, MmapAdvise, ProtFlags};

use super::batch::{Arg, Pending, ReadBatch};
use super::error::InjectError;
use super::injector::Injector;
use super::kstruct::{
    AltStack, CLONE_ARGS_SIZE, CapSets, CloneArgs, FLOCK_SIZE, Flock, ITIMERSPEC_SIZE,
    ITIMERVAL_SIZE, ITimer, ITimerSpec, KSIGACTION_SIZE, PrctlMmMap, SIGEVENT_SIZE, STACK_T_SIZE,
    SigAction, SigEvent,
};
use crate::sys::kcmp::TargetFd;

type Result<T> = std::result::Result<T, InjectError>;

/// Size of the kernel's signal set (`sigsetsize` of the `rt_sig*` calls).
const SIGSET_SIZE: u64 = 8;

/// `prctl` options from `<linux/prctl.h>`.
const PR_SET_PDEATHSIG: u64 = 1;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_SET_KEEPCAPS: u64 = 8;
const PR_SET_NAME: u64 = 15;
const PR_SET_SECCOMP: u64 = 22;
const PR_CAPBSET_DROP: u64 = 24;
const PR_GET_SECUREBITS: u64 = 27;
const PR_SET_SECUREBITS: u64 = 28;
const PR_SET_TIMERSLACK: u64 = 29;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_SET_THP_DISABLE: u64 = 41;
const PR_GET_THP_DISABLE: u64 = 42;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const PR_TIMER_CREATE_RESTORE_IDS_OFF: u64 = 0;
const PR_TIMER_CREATE_RESTORE_IDS_ON: u64 = 1;

/// `SECCOMP_SET_MODE_STRICT`, `SECCOMP_SET_MODE_FILTER` (operations of seccomp(2)) and
/// `SECCOMP_MODE_STRICT` (of `PR_SET_SECCOMP`).
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_MODE_STRICT: u64 = 1;

/// `struct sock_fprog` on x86_64: `unsigned short len`, padding, a pointer.
pub const SOCK_FPROG_SIZE: usize = 16;

/// `P_PID`, `WNOHANG`, `WSTOPPED`, `WCONTINUED`, `WNOWAIT` for waitid(2).
const P_PID: u64 = 1;
/// waitid's `siginfo_t` (128 bytes).
const SIGINFO_SIZE: usize = 128;

/// `RSEQ_FLAG_UNREGISTER`.
const RSEQ_FLAG_UNREGISTER: u64 = 1;

// ---- memory ----

/// `mmap(addr, len, prot, flags, fd, off)` in the tracee—Maps memory in its address space
/// and returns the address. `fd` is a descriptor in the *tracee's* table (or `None` for
/// anonymous memory).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
#[doc(alias = "remote_mmap")]
pub fn mmap(
    inj: &mut Injector,
    addr: u64,
    len: u64,
    prot: ProtFlags,
    flags: MapFlags,
    fd: Option<TargetFd>,
    off: u64,
) -> Result<u64> {
    inj.remote_mmap(addr, len, prot, flags, fd, off)
}

/// `munmap(addr, len)` in the tracee—Unmaps a range of its address space.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/munmap.2.html)
#[doc(alias = "remote_munmap")]
pub fn munmap(inj: &mut Injector, addr: u64, len: u64) -> Result<()> {
    inj.remote_munmap(addr, len)
}

/// `mprotect(addr, len, prot)` in the tracee—Sets the protection of a range.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/mprotect.2.html)
#[doc(alias = "remote_mprotect")]
pub fn mprotect(inj: &mut Injector, addr: u64, len: u64, prot: ProtFlags) -> Result<()> {
    inj.remote_mprotect(addr, len, prot)
}

/// `mremap(old, old_len, new_len, flags, new)` in the tracee—Moves or resizes a mapping;
/// returns its new address.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/mremap.2.html)
pub fn mremap(
    inj: &mut Injector,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: MRemapFlags,
    new: u64,
) -> Result<u64> {
    let flags = flags.bits() as u64;
    inj.syscall_checked(libc::SYS_mremap, [old, old_len, new_len, flags, new, 0])
}

/// `madvise(addr, len, advice)` in the tracee—Advises the kernel about a range
/// (`MADV_DONTNEED` drops its pages).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/madvise.2.html)
pub fn madvise(inj: &mut Injector, addr: u64, len: u64, advice: MmapAdvise) -> Result<()> {
    let advice = advice as i32 as u64;
    inj.syscall_checked(libc::SYS_madvise, [addr, len, advice, 0, 0, 0])
        .map(drop)
}

// ---- asynchronous I/O ----

/// `io_setup(nr_events, ctx)` in the tracee—Creates an AIO context able to hold
/// `nr_events` requests; the kernel writes its id (the address of its ring) at `at`,
/// which is read back and returned.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/io_setup.2.html)
pub fn io_setup(inj: &mut Injector, nr_events: u32, at: u64) -> Result<u64> {
    inj.write_memory(at, &0u64.to_ne_bytes())?;
    inj.syscall_checked(libc::SYS_io_setup, [u64::from(nr_events), at, 0, 0, 0, 0])?;
    let mut ctx = [0u8; 8];
    inj.read_memory(at, &mut ctx)?;
    Ok(u64::from_ne_bytes(ctx))
}

/// `io_submit(ctx, nr, iocbpp)` in the tracee—Submits the `nr` requests whose `struct
/// iocb` pointers the caller wrote at `iocbpp`; returns how many were taken.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/io_submit.2.html)
pub fn io_submit(inj: &mut Injector, ctx: u64, nr: u64, iocbpp: u64) -> Result<u64> {
    inj.syscall_checked(libc::SYS_io_submit, [ctx, nr, iocbpp, 0, 0, 0])
}

/// `IORING_ENTER_REGISTERED_RING` (`<linux/io_uring.h>`): the descriptor passed to
/// `io_uring_enter` is an index into the thread's table of registered rings.
pub const IORING_ENTER_REGISTERED_RING: u64 = 1 << 4;

/// `IO_RINGFD_REG_MAX`: the size of a thread's table of registered rings.
pub const IO_RINGFD_REG_MAX: u32 = 16;

/// `io_uring_enter(i, 0, 0, IORING_ENTER_REGISTERED_RING, NULL, 0)` for every index `i`
/// of the thread's table of registered rings (`IORING_REGISTER_RING_FDS`), added to a
/// batch—Which indices hold an io_uring instance: the only trace of one whose descriptor
/// was closed and whose rings were unmapped. Nothing is submitted nor waited for;
/// `EINVAL` (the thread never used io_uring, or no io_uring here: `ENOSYS`) and `EBADF`
/// (an empty slot) mean none.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/io_uring_enter.2.html)
#[doc(alias = "io_uring_enter")]
pub fn read_registered_rings(reads: &mut ReadBatch) -> Pending<Vec<u32>> {
    let v = Arg::Value;
    let probes: Vec<usize> = (0..IO_RINGFD_REG_MAX)
        .map(|i| {
            reads.push(
                libc::SYS_io_uring_enter,
                [
                    v(u64::from(i)),
                    v(0),
                    v(0),
                    v(IORING_ENTER_REGISTERED_RING),
                    v(0),
                    v(0),
                ],
                0,
            )
        })
        .collect();
    Pending::new(move |r| {
        let none = [libc::EINVAL, libc::EBADF, libc::ENOSYS].map(|e| -i64::from(e));
        Ok((0..IO_RINGFD_REG_MAX)
            .zip(&probes)
            .filter(|&(_, &p)| !none.contains(&r.raw(p)))
            .map(|(i, _)| i)
            .collect())
    })
}

// ---- files ----

/// `openat(AT_FDCWD, path, flags, 0)` in the tracee—Opens the NUL-terminated path the
/// caller wrote at `path` in the tracee; returns the tracee's new descriptor.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/openat.2.html)
pub fn openat(inj: &mut Injector, path: u64, flags: OFlag) -> Result<TargetFd> {
    let dirfd = libc::AT_FDCWD as i64 as u64;
    let fd = inj.syscall_checked(
        libc::SYS_openat,
        [dirfd, path, flags.bits() as u64, 0, 0, 0],
    )?;
    Ok(TargetFd(fd as i32))
}

/// `close(fd)` in the tracee—Closes one of its descriptors.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/close.2.html)
pub fn close(inj: &mut Injector, fd: TargetFd) -> Result<()> {
    inj.syscall_checked(libc::SYS_close, [fd.0 as u64, 0, 0, 0, 0, 0])
        .map(drop)
}

// ---- processes and threads ----

/// `getpid()` in the tracee—Its process id as its own PID namespace sees it.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/getpid.2.html)
pub fn getpid(inj: &mut Injector) -> Result<u64> {
    inj.syscall_checked(libc::SYS_getpid, [0; 6])
}

/// `gettid()` in the tracee—The thread's id as its own PID namespace sees it.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/gettid.2.html)
pub fn gettid(inj: &mut Injector) -> Result<u64> {
    inj.syscall_checked(libc::SYS_gettid, [0; 6])
}

/// `personality(persona)` in the tracee—Sets its execution domain.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/personality.2.html)
pub fn personality(inj: &mut Injector, persona: u32) -> Result<()> {
    inj.syscall_checked(libc::SYS_personality, [u64::from(persona), 0, 0, 0, 0, 0])
        .map(drop)
}

/// `clone(flags, NULL, NULL, NULL, 0)` in the tracee—Forks it without a stack of its own
/// (the child must not run user code); returns the child's pid.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone.2.html)
pub fn clone(inj: &mut Injector, flags: u64) -> Result<i32> {
    Ok(inj.syscall_checked(libc::SYS_clone, [flags, 0, 0, 0, 0, 0])? as i32)
}

/// `clone3(&args, sizeof args)` in the tracee, `args` written at `at`—Creates a process
/// or thread (with `set_tid`, at the TIDs the caller wrote at `args.set_tid`); returns
/// its id.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
pub fn clone3(inj: &mut Injector, at: u64, args: &CloneArgs) -> Result<i32> {
    inj.write_memory(at, &args.to_bytes())?;
    let size = CLONE_ARGS_SIZE as u64;
    Ok(inj.syscall_checked(libc::SYS_clone3, [at, size, 0, 0, 0, 0])? as i32)
}

/// `wait4(pid, NULL, options, NULL)` in the tracee—Reaps its child `pid`; the raw
/// result (the pid, 0, or `-errno`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/wait4.2.html)
pub fn wait4(inj: &mut Injector, pid: i32, options: i32) -> Result<i64> {
    inj.syscall(libc::SYS_wait4, [pid as u64, 0, options as u64, 0, 0, 0])
}

/// `set_robust_list(head, len)` in the tracee—Sets the thread's robust futex list.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/set_robust_list.2.html)
pub fn set_robust_list(inj: &mut Injector, head: u64, len: u64) -> Result<()> {
    inj.syscall_checked(libc::SYS_set_robust_list, [head, len, 0, 0, 0, 0])
        .map(drop)
}

/// `set_tid_address(addr)` in the tracee—Sets the thread's `clear_child_tid`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/set_tid_address.2.html)
pub fn set_tid_address(inj: &mut Injector, addr: u64) -> Result<()> {
    inj.syscall_checked(libc::SYS_set_tid_address, [addr, 0, 0, 0, 0, 0])
        .map(drop)
}

/// `rseq(addr, len, 0, sig)` in the tracee—Registers the thread's rseq area.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rseq.2.html)
#[doc(alias = "rseq")]
pub fn rseq_register(inj: &mut Injector, addr: u64, len: u32, sig: u32) -> Result<()> {
    let args = [addr, u64::from(len), 0, u64::from(sig), 0, 0];
    inj.syscall_checked(libc::SYS_rseq, args).map(drop)
}

/// `rseq(addr, len, RSEQ_FLAG_UNREGISTER, sig)` in the tracee—Unregisters the thread's
/// rseq area.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rseq.2.html)
#[doc(alias = "rseq")]
pub fn rseq_unregister(inj: &mut Injector, addr: u64, len: u32, sig: u32) -> Result<()> {
    let args = [
        addr,
        u64::from(len),
        RSEQ_FLAG_UNREGISTER,
        u64::from(sig),
        0,
        0,
    ];
    inj.syscall_checked(libc::SYS_rseq, args).map(drop)
}

// ---- prctl ----

fn prctl(inj: &mut Injector, option: u64, arg2: u64, arg3: u64, arg4: u64) -> Result<u64> {
    inj.syscall_checked(libc::SYS_prctl, [option, arg2, arg3, arg4, 0, 0])
}

/// `prctl(PR_SET_PDEATHSIG, sig)` in the tracee—Sets (0: clears) its parent-death signal.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html)
#[doc(alias = "PR_SET_PDEATHSIG")]
pub fn prctl_set_pdeathsig(inj: &mut Injector, sig: i32) -> Result<()> {
    prctl(inj, PR_SET_PDEATHSIG, sig as u64, 0, 0).map(drop)
}

/// `prctl(PR_SET_DUMPABLE, dumpable)` in the tracee—Sets its dumpable flag.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_DUMPABLE.2const.html)
#[doc(alias = "PR_SET_DUMPABLE")]
pub fn prctl_set_dumpable(inj: &mut Injector, dumpable: bool) -> Result<()> {
    prctl(inj, PR_SET_DUMPABLE, u64::from(dumpable), 0, 0).map(drop)
}

/// `prctl(PR_SET_KEEPCAPS, keep)` in the tracee—Whether the thread keeps its permitted
/// capabilities when its uids change.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_KEEPCAPS.2const.html)
#[doc(alias = "PR_SET_KEEPCAPS")]
pub fn prctl_set_keepcaps(inj: &mut Injector, keep: bool) -> Result<()> {
    prctl(inj, PR_SET_KEEPCAPS, u64::from(keep), 0, 0).map(drop)
}

/// `prctl(PR_CAPBSET_DROP, cap)` in the tracee—Drops `cap` from its bounding set.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_CAPBSET_DROP.2const.html)
#[doc(alias = "PR_CAPBSET_DROP")]
pub fn prctl_capbset_drop(inj: &mut Injector, cap: u32) -> Result<()> {
    prctl(inj, PR_CAPBSET_DROP, u64::from(cap), 0, 0).map(drop)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)` in the tracee—Empties its ambient set.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_CAP_AMBIENT.2const.html)
#[doc(alias = "PR_CAP_AMBIENT_CLEAR_ALL")]
pub fn prctl_cap_ambient_clear_all(inj: &mut Injector) -> Result<()> {
    prctl(inj, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0).map(drop)
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)` in the tracee—Adds `cap` to its
/// ambient set.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_CAP_AMBIENT.2const.html)
#[doc(alias = "PR_CAP_AMBIENT_RAISE")]
pub fn prctl_cap_ambient_raise(inj: &mut Injector, cap: u32) -> Result<()> {
    prctl(inj, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, u64::from(cap), 0).map(drop)
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map)` in the tracee, `map` written at
/// `at`—Sets its mm fields (code, data, brk, stack, args, env, auxv, exe) at once.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_MM.2const.html)
#[doc(alias = "PR_SET_MM_MAP")]
pub fn prctl_set_mm_map(inj: &mut Injector, at: u64, map: &PrctlMmMap) -> Result<()> {
    let bytes = map.to_bytes();
    inj.write_memory(at, &bytes)?;
    prctl(inj, PR_SET_MM, PR_SET_MM_MAP, at, bytes.len() as u64).map(drop)
}

/// `prctl(PR_GET_TID_ADDRESS, &addr)` in the tracee—Reads the thread's
/// `clear_child_tid` address (`set_tid_address`, `CLONE_CHILD_CLEARTID`), which `/proc`
/// does not show; 0 when it has none.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_GET_TID_ADDRESS.2const.html)
#[doc(alias = "PR_GET_TID_ADDRESS")]
pub fn tid_address(inj: &mut Injector) -> Result<u64> {
    now(inj, read_tid_address)
}

/// [`tid_address`], added to a batch.
#[doc(alias = "PR_GET_TID_ADDRESS")]
pub fn read_tid_address(reads: &mut ReadBatch) -> Pending<u64> {
    let v = Arg::Value;
    let i = reads.push(
        libc::SYS_prctl,
        [v(PR_GET_TID_ADDRESS), Arg::Out, v(0), v(0), v(0), v(0)],
        8,
    );
    Pending::new(move |r| {
        r.checked(i)?;
        Ok(u64::from_ne_bytes(r.out_array(i)))
    })
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ON / OFF)` in the tracee—While on,
/// `timer_create` takes the ID to give the new timer from `*timerid` (Linux 6.15+;
/// `EINVAL` before).
///
/// # References
///  - [Linux](https://github.com/torvalds/linux/blob/master/include/uapi/linux/prctl.h)
#[doc(alias = "PR_TIMER_CREATE_RESTORE_IDS")]
pub fn prctl_timer_create_restore_ids(inj: &mut Injector, on: bool) -> Result<()> {
    let mode = if on {
        PR_TIMER_CREATE_RESTORE_IDS_ON
    } else {
        PR_TIMER_CREATE_RESTORE_IDS_OFF
    };
    prctl(inj, PR_TIMER_CREATE_RESTORE_IDS, mode, 0, 0).map(drop)
}

/// What [`process_prctls`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessPrctls {
    /// `PR_GET_DUMPABLE`: 0, 1, or 2 (`SUID_DUMP_ROOT`).
    pub dumpable: u32,
    /// `PR_GET_CHILD_SUBREAPER`.
    pub child_subreaper: bool,
    /// `PR_GET_THP_DISABLE`: 0, 1, or 1 | `PR_THP_DISABLE_EXCEPT_ADVISED` (2).
    pub thp_disable: u32,
}

/// `prctl(PR_GET_DUMPABLE)`, `prctl(PR_GET_CHILD_SUBREAPER, &int)` and
/// `prctl(PR_GET_THP_DISABLE)` in the tracee—Reads what only prctl shows of the
/// process: its dumpable flag, whether it is a child subreaper, and its THP setting.
/// Only reads.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/prctl.2.html)
#[doc(alias = "PR_GET_DUMPABLE")]
#[doc(alias = "PR_GET_CHILD_SUBREAPER")]
#[doc(alias = "PR_GET_THP_DISABLE")]
pub fn process_prctls(inj: &mut Injector) -> Result<ProcessPrctls> {
    now(inj, read_process_prctls)
}

/// [`process_prctls`], added to a batch.
pub fn read_process_prctls(reads: &mut ReadBatch) -> Pending<ProcessPrctls> {
    let v = Arg::Value;
    let dumpable = reads.push(
        libc::SYS_prctl,
        [v(PR_GET_DUMPABLE), v(0), v(0), v(0), v(0), v(0)],
        0,
    );
    let thp = reads.push(
        libc::SYS_prctl,
        [v(PR_GET_THP_DISABLE), v(0), v(0), v(0), v(0), v(0)],
        0,
    );
    let subreaper = reads.push(
        libc::SYS_prctl,
        [v(PR_GET_CHILD_SUBREAPER), Arg::Out, v(0), v(0), v(0), v(0)],
        4,
    );
    Pending::new(move |r| {
        let dumpable = r.checked(dumpable)? as u32;
        let thp_disable = r.checked(thp)? as u32;
        r.checked(subreaper)?;
        Ok(ProcessPrctls {
            dumpable,
            child_subreaper: i32::from_ne_bytes(r.out_array(subreaper)) != 0,
            thp_disable,
        })
    })
}

/// `prctl(PR_GET_SECUREBITS)` and `prctl(PR_GET_PDEATHSIG, &int)` in the tracee—Reads
/// the thread's securebits and parent-death signal, which `/proc` does not show. Only
/// reads.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/prctl.2.html)
#[doc(alias = "PR_GET_SECUREBITS")]
#[doc(alias = "PR_GET_PDEATHSIG")]
pub fn thread_prctls(inj: &mut Injector) -> Result<(u32, i32)> {
    now(inj, read_thread_prctls)
}

/// [`thread_prctls`], added to a batch.
pub fn read_thread_prctls(reads: &mut ReadBatch) -> Pending<(u32, i32)> {
    let v = Arg::Value;
    let securebits = reads.push(
        libc::SYS_prctl,
        [v(PR_GET_SECUREBITS), v(0), v(0), v(0), v(0), v(0)],
        0,
    );
    let pdeathsig = reads.push(
        libc::SYS_prctl,
        [v(PR_GET_PDEATHSIG), Arg::Out, v(0), v(0), v(0), v(0)],
        4,
    );
    Pending::new(move |r| {
        let securebits = r.checked(securebits)? as u32;
        r.checked(pdeathsig)?;
        Ok((securebits, i32::from_ne_bytes(r.out_array(pdeathsig))))
    })
}

/// `prctl(PR_GET_DUMPABLE)` in the tracee—Its dumpable flag (0, 1 or 2).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_GET_DUMPABLE.2const.html)
#[doc(alias = "PR_GET_DUMPABLE")]
pub fn prctl_get_dumpable(inj: &mut Injector) -> Result<u32> {
    Ok(prctl(inj, PR_GET_DUMPABLE, 0, 0, 0)? as u32)
}

/// `prctl(PR_SET_NAME, name)` in the tracee, the name (truncated to 15 bytes, then NUL)
/// written at `at`—Sets the thread's name (its `comm`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_NAME.2const.html)
#[doc(alias = "PR_SET_NAME")]
pub fn prctl_set_name_at(inj: &mut Injector, at: u64, name: &[u8]) -> Result<()> {
    let mut raw = [0u8; 16];
    let len = name.len().min(15);
    raw[..len].copy_from_slice(&name[..len]);
    inj.write_memory(at, &raw)?;
    prctl(inj, PR_SET_NAME, at, 0, 0).map(drop)
}

/// `prctl(PR_SET_CHILD_SUBREAPER, on)` in the tracee—Makes it (or stops it being) a child
/// subreaper.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_CHILD_SUBREAPER.2const.html)
#[doc(alias = "PR_SET_CHILD_SUBREAPER")]
pub fn prctl_set_child_subreaper(inj: &mut Injector, on: bool) -> Result<()> {
    prctl(inj, PR_SET_CHILD_SUBREAPER, u64::from(on), 0, 0).map(drop)
}

/// `prctl(PR_SET_THP_DISABLE, value & 1, value & ~1)` in the tracee—Sets its
/// transparent-huge-page setting to what `PR_GET_THP_DISABLE` returned (`value`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_THP_DISABLE.2const.html)
#[doc(alias = "PR_SET_THP_DISABLE")]
pub fn prctl_set_thp_disable(inj: &mut Injector, value: u32) -> Result<()> {
    let (on, flags) = (u64::from(value & 1), u64::from(value & !1));
    prctl(
        inj,
        PR_SET_THP_DISABLE,
        on,
        if on == 0 { 0 } else { flags },
        0,
    )
    .map(drop)
}

/// `prctl(PR_SET_SECUREBITS, bits)` in the tracee—Sets the thread's securebits (needs
/// `CAP_SETPCAP`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_SECUREBITS.2const.html)
#[doc(alias = "PR_SET_SECUREBITS")]
pub fn prctl_set_securebits(inj: &mut Injector, bits: u32) -> Result<()> {
    prctl(inj, PR_SET_SECUREBITS, u64::from(bits), 0, 0).map(drop)
}

/// `prctl(PR_GET_SECUREBITS)` in the tracee—The thread's securebits.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_GET_SECUREBITS.2const.html)
#[doc(alias = "PR_GET_SECUREBITS")]
pub fn prctl_get_securebits(inj: &mut Injector) -> Result<u32> {
    Ok(prctl(inj, PR_GET_SECUREBITS, 0, 0, 0)? as u32)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)` in the tracee—Sets the thread's no_new_privs bit
/// (which cannot be cleared).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_NO_NEW_PRIVS.2const.html)
#[doc(alias = "PR_SET_NO_NEW_PRIVS")]
pub fn prctl_set_no_new_privs(inj: &mut Injector) -> Result<()> {
    prctl(inj, PR_SET_NO_NEW_PRIVS, 1, 0, 0).map(drop)
}

/// `prctl(PR_SET_TIMERSLACK, ns)` in the tracee—Sets the thread's current timer slack
/// (0 would reset it to its default instead).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_TIMERSLACK.2const.html)
#[doc(alias = "PR_SET_TIMERSLACK")]
pub fn prctl_set_timerslack(inj: &mut Injector, ns: u64) -> Result<()> {
    prctl(inj, PR_SET_TIMERSLACK, ns, 0, 0).map(drop)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)` in the tracee, the `struct
/// sock_fprog` and the instructions written at `at`—Installs one classic BPF seccomp
/// filter on the calling thread (`SECCOMP_FILTER_FLAG_TSYNC` in `flags`: on every
/// thread of the process). Needs no_new_privs or `CAP_SYS_ADMIN`.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/seccomp.2.html)
#[doc(alias = "SECCOMP_SET_MODE_FILTER")]
pub fn seccomp_set_filter_at(
    inj: &mut Injector,
    at: u64,
    program: &[u8],
    flags: u64,
) -> Result<()> {
    let insns = program.len() / crate::sys::ptrace::SOCK_FILTER_SIZE;
    let code = at + SOCK_FPROG_SIZE as u64;
    let mut fprog = [0u8; SOCK_FPROG_SIZE];
    fprog[..2].copy_from_slice(&(insns as u16).to_ne_bytes());
    fprog[8..].copy_from_slice(&code.to_ne_bytes());
    inj.write_memory(at, &fprog)?;
    inj.write_memory(code, program)?;
    inj.syscall_checked(
        libc::SYS_seccomp,
        [SECCOMP_SET_MODE_FILTER, flags, at, 0, 0, 0],
    )
    .map(drop)
}

/// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)` in the tracee—Puts the thread in strict
/// seccomp mode: from then on only `read`, `write`, `_exit` and `sigreturn` are allowed.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/PR_SET_SECCOMP.2const.html)
#[doc(alias = "SECCOMP_MODE_STRICT")]
pub fn seccomp_set_strict(inj: &mut Injector) -> Result<()> {
    prctl(inj, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0).map(drop)
}

/// `waitid(P_PID, pid, &info, WSTOPPED | WCONTINUED | WNOHANG | WNOWAIT)` in the
/// tracee—The stop or continue of its child `pid` its own `waitpid` has yet to collect:
/// `CLD_STOPPED` or `CLD_CONTINUED`, or `None`. Collects nothing (`WNOWAIT`): only reads.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/waitid.2.html)
#[doc(alias = "waitid")]
pub fn child_report(inj: &mut Injector, pid: i32) -> Result<Option<i32>> {
    now(inj, |reads| read_child_report(reads, pid))
}

/// [`child_report`], added to a batch.
pub fn read_child_report(reads: &mut ReadBatch, pid: i32) -> Pending<Option<i32>> {
    let v = Arg::Value;
    let options = (libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT) as u64;
    let i = reads.push(
        libc::SYS_waitid,
        [v(P_PID), v(pid as u64), Arg::Out, v(options), v(0), v(0)],
        SIGINFO_SIZE,
    );
    Pending::new(move |r| {
        r.checked(i)?;
        let raw: [u8; 12] = r.out_array(i);
        let signo = i32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let code = i32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
        Ok((signo != 0).then_some(code))
    })
}

/// `waitid(P_PID, pid, NULL, options | WNOHANG)` in the tracee—Collects one report of
/// its child `pid`, if there is one (`WSTOPPED`, `WCONTINUED`: not its exit unless
/// `WEXITED` is in `options`), without saying which.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/waitid.2.html)
#[doc(alias = "waitid")]
pub fn collect_child_report(inj: &mut Injector, pid: i32, options: i32) -> Result<()> {
    let options = (options | libc::WNOHANG) as u64;
    inj.syscall_checked(libc::SYS_waitid, [P_PID, pid as u64, 0, options, 0, 0])
        .map(drop)
}

// ---- POSIX timers ----

/// `timer_create(clock, &event, &id)` in the tracee, the `struct sigevent` written at `at`
/// and the timer ID right after it, preset to `id`—Creates a POSIX timer; returns the ID
/// the kernel gave (`id` itself under `PR_TIMER_CREATE_RESTORE_IDS`, see
/// [`prctl_timer_create_restore_ids`]).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/timer_create.2.html)
pub fn timer_create_at(
    inj: &mut Injector,
    at: u64,
    clock: i32,
    event: &SigEvent,
    id: i32,
) -> Result<i32> {
    let id_at = at + SIGEVENT_SIZE as u64;
    inj.write_memory(at, &event.to_bytes())?;
    inj.write_memory(id_at, &id.to_ne_bytes())?;
    let clock = clock as i64 as u64;
    inj.syscall_checked(libc::SYS_timer_create, [clock, at, id_at, 0, 0, 0])?;
    let mut raw = [0u8; 4];
    inj.read_memory(id_at, &mut raw)?;
    Ok(i32::from_ne_bytes(raw))
}

/// `timer_settime(id, flags, &spec, NULL)` in the tracee, the `struct itimerspec` written
/// at `at`—Arms (a zero value: disarms) timer `id`; `flags` 0 makes the value relative.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/timer_settime.2.html)
pub fn timer_settime_at(
    inj: &mut Injector,
    at: u64,
    id: i32,
    flags: i32,
    spec: &ITimerSpec,
) -> Result<()> {
    inj.write_memory(at, &spec.to_bytes())?;
    let args = [id as u64, flags as u64, at, 0, 0, 0];
    inj.syscall_checked(libc::SYS_timer_settime, args).map(drop)
}

/// `timer_gettime(id, &spec)` in the tracee—Reads timer `id`'s period and the time left
/// until its next expiry (relative, even for a timer armed with `TIMER_ABSTIME`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/timer_gettime.2.html)
pub fn timer_gettime(inj: &mut Injector, id: i32) -> Result<ITimerSpec> {
    now(inj, |reads| read_timer_gettime(reads, id))
}

/// [`timer_gettime`], added to a batch.
#[doc(alias = "timer_gettime")]
pub fn read_timer_gettime(reads: &mut ReadBatch, id: i32) -> Pending<ITimerSpec> {
    let v = Arg::Value;
    let i = reads.push(
        libc::SYS_timer_gettime,
        [v(id as u64), Arg::Out, v(0), v(0), v(0), v(0)],
        ITIMERSPEC_SIZE,
    );
    Pending::new(move |r| {
        r.checked(i)?;
        Ok(ITimerSpec::from_bytes(&r.out_array(i)))
    })
}

/// `timer_getoverrun(id)` in the tracee—The overrun count of timer `id`'s last delivered
/// signal.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/timer_getoverrun.2.html)
pub fn timer_getoverrun(inj: &mut Injector, id: i32) -> Result<i32> {
    now(inj, |reads| read_timer_getoverrun(reads, id))
}

/// [`timer_getoverrun`], added to a batch.
#[doc(alias = "timer_getoverrun")]
pub fn read_timer_getoverrun(reads: &mut ReadBatch, id: i32) -> Pending<i32> {
    let v = Arg::Value;
    let i = reads.push(
        libc::SYS_timer_getoverrun,
        [v(id as u64), v(0), v(0), v(0), v(0), v(0)],
        0,
    );
    Pending::new(move |r| Ok(r.checked(i)? as i32))
}

/// Runs one reader now, its calls injected one at a time.
fn now<T: 'static>(
    inj: &mut Injector,
    read: impl FnOnce(&mut ReadBatch) -> Pending<T>,
) -> Result<T> {
    let mut reads = ReadBatch::new();
    let value = read(&mut reads);
    let done = inj.run_reads_one_by_one(&reads)?;
    value.get(&done)
}

// ---- credentials ----

/// `setgroups(groups.len(), groups)` in the tracee, the list written at `at`—Sets its
/// supplementary groups.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/setgroups.2.html)
pub fn setgroups(inj: &mut Injector, at: u64, groups: &[u32]) -> Result<()> {
    let raw: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
    inj.write_memory(at, &raw)?;
    let n = groups.len() as u64;
    inj.syscall_checked(libc::SYS_setgroups, [n, at, 0, 0, 0, 0])
        .map(drop)
}

/// `setresuid(ruid, euid, suid)` in the tracee.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/setresuid.2.html)
pub fn setresuid(inj: &mut Injector, ruid: u32, euid: u32, suid: u32) -> Result<()> {
    let [r, e, s] = [ruid, euid, suid].map(u64::from);
    inj.syscall_checked(libc::SYS_setresuid, [r, e, s, 0, 0, 0])
        .map(drop)
}

/// `setresgid(rgid, egid, sgid)` in the tracee.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/setresgid.2.html)
pub fn setresgid(inj: &mut Injector, rgid: u32, egid: u32, sgid: u32) -> Result<()> {
    let [r, e, s] = [rgid, egid, sgid].map(u64::from);
    inj.syscall_checked(libc::SYS_setresgid, [r, e, s, 0, 0, 0])
        .map(drop)
}

/// `setfsuid(fsuid)` in the tracee—Returns the previous fsuid (the call reports no
/// error: pass `u32::MAX`, which changes nothing, to read the current one).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/setfsuid.2.html)
pub fn setfsuid(inj: &mut Injector, fsuid: u32) -> Result<u32> {
    Ok(inj.syscall_checked(libc::SYS_setfsuid, [u64::from(fsuid), 0, 0, 0, 0, 0])? as u32)
}

/// `setfsgid(fsgid)` in the tracee—Returns the previous fsgid (see [`setfsuid`]).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/setfsgid.2.html)
pub fn setfsgid(inj: &mut Injector, fsgid: u32) -> Result<u32> {
    Ok(inj.syscall_checked(libc::SYS_setfsgid, [u64::from(fsgid), 0, 0, 0, 0, 0])? as u32)
}

/// `capset(&header, data)` in the tracee, both written at `at`—Sets the thread's
/// effective, permitted and inheritable capabilities.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/capset.2.html)
pub fn capset(inj: &mut Injector, at: u64, caps: &CapSets) -> Result<()> {
    inj.write_memory(at, &caps.to_bytes())?;
    inj.syscall_checked(libc::SYS_capset, [at, at + 8, 0, 0, 0, 0])
        .map(drop)
}

// ---- signals ----

/// `rt_sigaction(action.signo, &action, NULL, 8)` in the tracee, the struct written at
/// `at`—Installs a handler.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html)
#[doc(alias = "rt_sigaction")]
pub fn rt_sigaction_at(inj: &mut Injector, at: u64, action: &SigAction) -> Result<()> {
    inj.write_memory(at, &action.to_bytes())?;
    let signo = action.signo as u64;
    inj.syscall_checked(libc::SYS_rt_sigaction, [signo, at, 0, SIGSET_SIZE, 0, 0])
        .map(drop)
}

/// `rt_sigaction(action.signo, &action, NULL, 8)` in the tracee—Installs a handler as
/// [`sigactions`] reported it (the struct in scratch memory).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html)
#[doc(alias = "rt_sigaction")]
pub fn set_sigaction(inj: &mut Injector, action: &SigAction) -> Result<()> {
    inj.with_scratch(KSIGACTION_SIZE, |inj, at| rt_sigaction_at(inj, at, action))
}

/// `rt_sigaction(sig, NULL, &old, 8)` in the tracee for every signal but `SIGKILL` and
/// `SIGSTOP`—Reads the process's signal handlers (which `/proc` does not show).
///
/// Returns 62 entries, by signal number.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_sigaction.2.html)
#[doc(alias = "rt_sigaction")]
pub fn sigactions(inj: &mut Injector) -> Result<Vec<SigAction>> {
    sigactions_of(inj, !0)
}

/// Like [`sigactions`], but only for the signals in `set` (bit `n - 1` for signal `n`;
/// `SIGKILL` and `SIGSTOP` are never read): one injected call per signal, so a dump
/// reads only the signals `/proc/PID/status` says are caught.
#[doc(alias = "rt_sigaction")]
pub fn sigactions_of(inj: &mut Injector, set: u64) -> Result<Vec<SigAction>> {
    now(inj, |reads| read_sigactions(reads, set))
}

/// [`sigactions_of`], added to a batch: one `rt_sigaction` per signal, each result in
/// its own buffer.
#[doc(alias = "rt_sigaction")]
pub fn read_sigactions(reads: &mut ReadBatch, set: u64) -> Pending<Vec<SigAction>> {
    let v = Arg::Value;
    let calls: Vec<(i32, usize)> = read_signals(set)
        .into_iter()
        .map(|signo| {
            let args = [v(signo as u64), v(0), Arg::Out, v(SIGSET_SIZE), v(0), v(0)];
            (
                signo,
                reads.push(libc::SYS_rt_sigaction, args, KSIGACTION_SIZE),
            )
        })
        .collect();
    Pending::new(move |r| {
        calls
            .into_iter()
            .map(|(signo, i)| {
                r.checked(i)?;
                Ok(SigAction::from_bytes(signo, &r.out_array(i)))
            })
            .collect()
    })
}

/// The signals of `set` [`sigactions_of`] reads: every one but `SIGKILL` and `SIGSTOP`.
fn read_signals(set: u64) -> Vec<i32> {
    let wanted = |s: i32| set & (1u64 << (s - 1)) != 0;
    (1..=64)
        .filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP && wanted(s))
        .collect()
}

/// `setitimer(timer.which, &value, NULL)` in the tracee, the `struct itimerval` written at
/// `at`—Arms (or disarms) one interval timer.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/setitimer.2.html)
#[doc(alias = "setitimer")]
pub fn setitimer_at(inj: &mut Injector, at: u64, timer: &ITimer) -> Result<()> {
    inj.write_memory(at, &timer.to_bytes())?;
    let which = timer.which as u64;
    inj.syscall_checked(libc::SYS_setitimer, [which, at, 0, 0, 0, 0])
        .map(drop)
}

/// `getitimer(which, &value)` in the tracee for the three interval timers—Reads them
/// (`/proc` does not show them).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/getitimer.2.html)
#[doc(alias = "getitimer")]
pub fn itimers(inj: &mut Injector) -> Result<[ITimer; 3]> {
    now(inj, read_itimers)
}

/// [`itimers`], added to a batch: `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
#[doc(alias = "getitimer")]
pub fn read_itimers(reads: &mut ReadBatch) -> Pending<[ITimer; 3]> {
    let v = Arg::Value;
    let calls: [usize; 3] = std::array::from_fn(|which| {
        let args = [v(which as u64), Arg::Out, v(0), v(0), v(0), v(0)];
        reads.push(libc::SYS_getitimer, args, ITIMERVAL_SIZE)
    });
    Pending::new(move |r| {
        for &i in &calls {
            r.checked(i)?;
        }
        Ok(std::array::from_fn(|which| {
            ITimer::from_bytes(which as i32, &r.out_array(calls[which]))
        }))
    })
}

/// `sigaltstack(&stack, NULL)` in the tracee, the `stack_t` written at `at`—Sets the
/// thread's alternate signal stack.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/sigaltstack.2.html)
#[doc(alias = "sigaltstack")]
pub fn set_sigaltstack_at(inj: &mut Injector, at: u64, stack: &AltStack) -> Result<()> {
    inj.write_memory(at, &stack.to_bytes())?;
    inj.syscall_checked(libc::SYS_sigaltstack, [at, 0, 0, 0, 0, 0])
        .map(drop)
}

/// `fcntl(fd, F_SETLK, &lock)` in the tracee, the `struct flock` written at `at`—Takes a
/// POSIX record lock for the tracee (its descriptor table owns it), without waiting.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/fcntl.2.html)
pub fn fcntl_setlk_at(inj: &mut Injector, at: u64, fd: TargetFd, lock: &Flock) -> Result<()> {
    let bytes: [u8; FLOCK_SIZE] = lock.to_bytes();
    inj.write_memory(at, &bytes)?;
    inj.syscall_checked(
        libc::SYS_fcntl,
        [fd.0 as u64, libc::F_SETLK as u64, at, 0, 0, 0],
    )
    .map(drop)
}

/// `sigaltstack(NULL, &old)` in the tracee—Reads the thread's alternate signal stack,
/// which `/proc` does not show.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/sigaltstack.2.html)
pub fn sigaltstack(inj: &mut Injector) -> Result<AltStack> {
    now(inj, read_sigaltstack)
}

/// [`sigaltstack`], added to a batch.
#[doc(alias = "sigaltstack")]
pub fn read_sigaltstack(reads: &mut ReadBatch) -> Pending<AltStack> {
    let v = Arg::Value;
    let i = reads.push(
        libc::SYS_sigaltstack,
        [v(0), Arg::Out, v(0), v(0), v(0), v(0)],
        STACK_T_SIZE,
    );
    Pending::new(move |r| {
        r.checked(i)?;
        Ok(AltStack::from_bytes(&r.out_array(i)))
    })
}

/// `rt_tgsigqueueinfo(tgid, tid, info.si_signo, &info)` in the tracee, the siginfo bytes
/// written at `at`—Queues a signal with its siginfo to one thread (from inside the
/// process any `si_code` is allowed).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_tgsigqueueinfo.2.html)
#[doc(alias = "rt_tgsigqueueinfo")]
pub fn rt_tgsigqueueinfo_at(
    inj: &mut Injector,
    at: u64,
    tgid: u64,
    tid: u64,
    signo: i32,
    info: &[u8],
) -> Result<()> {
    inj.write_memory(at, info)?;
    let args = [tgid, tid, signo as u64, at, 0, 0];
    inj.syscall_checked(libc::SYS_rt_tgsigqueueinfo, args)
        .map(drop)
}

/// `rt_sigqueueinfo(tgid, info.si_signo, &info)` in the tracee, the siginfo bytes written
/// at `at`—Queues a signal with its siginfo to the process.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/rt_sigqueueinfo.2.html)
#[doc(alias = "rt_sigqueueinfo")]
pub fn rt_sigqueueinfo_at(
    inj: &mut Injector,
    at: u64,
    tgid: u64,
    signo: i32,
    info: &[u8],
) -> Result<()> {
    inj.write_memory(at, info)?;
    let args = [tgid, signo as u64, at, 0, 0, 0];
    inj.syscall_checked(libc::SYS_rt_sigqueueinfo, args)
        .map(drop)
}
