//! `clone3(2)`: creating processes with chosen PIDs, plus what `pipecr check` needs.
//!
//! - [`clone3_with_tid`] creates a child (fork-like, no `CLONE_VM`) with the PID restore
//!   chooses for it.
//! - [`probe_set_tid`] asks the kernel whether `clone3` accepts `set_tid` from this
//!   process (the call restore will use to give processes back their PIDs) without
//!   creating a process.
//! - [`fork_parked`] creates a throw-away child that waits, blocked in `read(2)`, until it
//!   is dropped: a harmless target for probing ptrace.
//! - [`clone3_vm_with_tid`] creates a child sharing the caller's address space (and
//!   signal handlers), with its chosen PID, running a given function on its own stack.
//! - [`clone3_into_namespaces`] creates a child (fork-like) in new namespaces: the init
//!   of `pipecr restore --pidns`.
//!
//! Still to come here: `CLONE_THREAD` (threads are created by injecting `clone3` into the
//! restored process instead), a set_tid per PID-namespace level.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::Pid;

/// `struct clone_args` from `<linux/sched.h>`, `CLONE_ARGS_SIZE_VER2` (88 bytes, Linux
/// 5.7+). Older kernels accept it too as long as the fields they do not know are zero.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What one raw `clone3` call returned in this process.
enum Cloned {
    /// We are the parent; the child has this PID.
    Parent(libc::pid_t),
    /// We are the new child: a copy of the calling thread only.
    Child,
}

/// `clone3(args, sizeof(*args))` with no `CLONE_VM`, so the child gets a copy of the
/// address space and continues from the same point, like `fork()`.
fn raw_clone3(args: &CloneArgs) -> io::Result<Cloned> {
    // SAFETY: `args` is a valid, fully initialised `struct clone_args` that outlives the
    // call, and its size is passed along. Without CLONE_VM (every caller refuses it) the
    // child runs on its own copy of our stack and memory, so returning in it is sound. A
    // child of a multi-threaded caller may find locks held by threads it does not have:
    // the internal callers make it call only raw async-signal-safe system calls and
    // `_exit`; `clone3_with_tid` passes that duty on to its caller (see its docs).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Cloned::Child),
        pid => libc::pid_t::try_from(pid)
            .map(Cloned::Parent)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "clone3: pid out of range")),
    }
}

/// `_exit(code)`—Ends the calling (child) process at once, running no destructors or
/// atexit handlers: how a child created by this module's calls ends, so that nothing of
/// the caller it is a copy of (buffers, temporary files) is flushed or removed twice.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/_exit.2.html)
pub fn child_exit(code: libc::c_int) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Reaps our own child `pid`, waiting for exactly that PID (never `-1`: other threads of
/// this process may have children of their own).
fn reap(pid: libc::pid_t) {
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            // Reaped, or already gone: either way nothing is left behind.
            Ok(
                nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
            )
            | Err(_) => return,
            // A stop or continue report: the child is still there.
            Ok(_) => continue,
        }
    }
}

/// `clone3({.set_tid = {getpid()}, .set_tid_size = 1})`—Probes whether this process may
/// choose the PID of a new child, without creating one.
///
/// The call asks for our own PID, which is taken as long as we live, so a kernel that
/// supports `set_tid` and finds the caller holding `CAP_CHECKPOINT_RESTORE` (or
/// `CAP_SYS_ADMIN`) in the PID namespace's user namespace gets as far as allocating the
/// PID and refuses with `EEXIST`. That answer is reported as `Ok(())`.
///
/// Errors:
///  - `EPERM`: `set_tid` is supported but the capability is missing;
///  - `ENOSYS`: no `clone3` (Linux < 5.3);
///  - `E2BIG` or `EINVAL`: `clone3` without `set_tid` (Linux < 5.5);
///  - anything else the kernel returned.
///
/// Should the kernel ever create the child anyway, it exits at once and is reaped before
/// this returns.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
#[doc(alias = "clone3")]
#[doc(alias = "set_tid")]
pub fn probe_set_tid() -> io::Result<()> {
    let set_tid: [libc::pid_t; 1] = [rustix::process::getpid().as_raw_nonzero().get()];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: set_tid.len() as u64,
        ..CloneArgs::default()
    };
    match raw_clone3(&args) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
        Ok(Cloned::Child) => child_exit(0),
        Ok(Cloned::Parent(pid)) => {
            reap(pid);
            Ok(())
        }
    }
}

/// `clone3({.flags, .exit_signal, .set_tid, .set_tid_size})`—Creates a child process
/// whose PID (one entry per PID-namespace level, innermost first) is chosen by the caller.
///
/// Returns `Ok(Some(pid))` in the parent and `Ok(None)` in the child, which continues from
/// this call on its own copy of the caller's address space, like after `fork()`. `flags`
/// must not contain `CLONE_VM`, `CLONE_THREAD`, `CLONE_VFORK` or `CLONE_SETTLS` (a child
/// sharing our memory or stack needs its own entry point): they are refused with
/// `EINVAL` before any call.
///
/// Needs `CAP_CHECKPOINT_RESTORE` (or `CAP_SYS_ADMIN`) in the user namespace owning each
/// PID namespace named. Errors: `EEXIST` when a PID is taken, `EPERM` without the
/// capability, `EINVAL` for an empty or too long `set_tid`.
///
/// # Safety of the child
///
/// The child is a copy of the *calling thread only*. If the caller is multi-threaded,
/// another thread may have held a lock (the allocator's, stdio's) at the moment of the
/// clone; that lock stays held forever in the child. Until it execs, stops itself for
/// good, or `_exit`s, such a child may only do async-signal-safe work (raw system calls,
/// no allocation, no `println!`). The `pipecr` command line restorer calls this from its
/// only thread, where the child may do anything.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
#[doc(alias = "clone3")]
#[doc(alias = "set_tid")]
pub fn clone3_with_tid(
    flags: u64,
    exit_signal: libc::c_int,
    set_tid: &[libc::pid_t],
) -> io::Result<Option<Pid>> {
    let forbidden =
        (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_VFORK | libc::CLONE_SETTLS) as u64;
    if flags & forbidden != 0 || set_tid.is_empty() || exit_signal < 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: set_tid.len() as u64,
        ..CloneArgs::default()
    };
    match raw_clone3(&args)? {
        Cloned::Child => Ok(None),
        Cloned::Parent(pid) => Pid::from_raw(pid)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "clone3: pid 0")),
    }
}

/// Size of the stack a [`clone3_vm_with_tid`] child runs on: ample for the restore code
/// it runs, and only touched pages cost memory (`MAP_NORESERVE`).
const VM_CHILD_STACK: usize = 8 << 20;

/// What the child of [`clone3_vm_with_tid`] finds at its entry: the work to run.
type VmChildWork<'a> = &'a mut dyn FnMut();

/// The entry point of a [`clone3_vm_with_tid`] child, on its own stack: runs the work
/// `arg` points at, then ends the child if the work returned.
extern "C" fn vm_child_entry(arg: usize) -> ! {
    // SAFETY: `arg` is the address of the `VmChildWork` in the frame of
    // `clone3_vm_with_tid`, in the memory this child shares with its parent, and that
    // frame stays alive, its parent blocked in `waitid`, until this child stops or exits.
    let work = unsafe { &mut *(arg as *mut VmChildWork<'_>) };
    work();
    child_exit(0)
}

/// `clone3({.flags = CLONE_VM | flags, .stack, .set_tid})`—Creates a child *sharing the
/// caller's address space* (and, with `CLONE_SIGHAND`, its signal-handler table), with
/// the PID (one entry per PID-namespace level, innermost first) the caller chooses. The
/// child runs `work` on a stack of its own and ends (`_exit(0)`) if `work` returns.
///
/// Returns the child's PID once the child has *stopped* (`SIGSTOP`, e.g. `raise`) or
/// exited, without consuming that report (`waitid(WNOWAIT)`): until then the caller is
/// blocked, so the two never run the caller's code at once (they share its heap, its
/// thread-local storage and its allocator's state, and glibc thinks the process has a
/// single thread). When the child is continued it must not run anything but raw system
/// calls while the caller runs, or stop again while the caller waits for it.
///
/// `flags` must hold `CLONE_VM` and must not hold `CLONE_THREAD`, `CLONE_VFORK` or
/// `CLONE_SETTLS` (refused with `EINVAL` before any call). The stack is mapped here and
/// never unmapped: it belongs to the address space the child shares, which outlives this
/// call. Needs `CAP_CHECKPOINT_RESTORE` as [`clone3_with_tid`] does; the caller must be
/// single-threaded as there.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
#[doc(alias = "clone3")]
#[doc(alias = "CLONE_VM")]
pub fn clone3_vm_with_tid(
    flags: u64,
    exit_signal: libc::c_int,
    set_tid: &[libc::pid_t],
    work: &mut dyn FnMut(),
) -> io::Result<Pid> {
    let forbidden = (libc::CLONE_THREAD | libc::CLONE_VFORK | libc::CLONE_SETTLS) as u64;
    if flags & libc::CLONE_VM as u64 == 0
        || flags & forbidden != 0
        || set_tid.is_empty()
        || exit_signal < 0
    {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a new anonymous private mapping at an address the kernel chooses: it
    // overlaps nothing of ours.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            VM_CHILD_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        // The stack top is page-aligned, so 16-aligned as the ABI wants before `call`.
        stack: stack as u64,
        stack_size: VM_CHILD_STACK as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: set_tid.len() as u64,
        ..CloneArgs::default()
    };
    let mut work: VmChildWork<'_> = work;
    let arg = std::ptr::from_mut(&mut work) as usize;
    let ret: i64;
    // SAFETY: `args` is a valid `struct clone_args` that outlives the call, its size
    // passed along; `stack` is a fresh mapping of `VM_CHILD_STACK` bytes. In the parent
    // the asm is one `syscall` (rcx and r11 clobbered, memory possibly read). In the
    // child (rax 0), already on its new stack, it clears the frame pointer and calls
    // `vm_child_entry(arg)`, which never returns (`ud2` would trap if it did); `arg`
    // points at `work`, alive in this frame until the wait below sees the child stopped
    // or exited.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(&args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") vm_child_entry as extern "C" fn(usize) -> ! as usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        // SAFETY: the mapping made above, which no child uses (none was created).
        unsafe { libc::munmap(stack, VM_CHILD_STACK) };
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    let pid = libc::pid_t::try_from(ret)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "clone3: pid out of range"))?;
    // Blocked until the child stops or exits; the report stays for the caller.
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::Pid(pid),
            rustix::process::WaitIdOptions::EXITED
                | rustix::process::WaitIdOptions::STOPPED
                | rustix::process::WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => return Ok(pid),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `clone3({.exit_signal = SIGCHLD})`—`fork()`: a child on a copy of the caller's address
/// space, with a PID the kernel chooses.
///
/// Returns `Ok(Some(pid))` in the parent and `Ok(None)` in the child. The child has the
/// duty described under "Safety of the child" in [`clone3_with_tid`] when the caller is
/// multi-threaded.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
pub fn fork() -> io::Result<Option<Pid>> {
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    match raw_clone3(&args)? {
        Cloned::Child => Ok(None),
        Cloned::Parent(pid) => Pid::from_raw(pid)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "clone3: pid 0")),
    }
}

/// The namespace flags [`clone3_into_namespaces`] accepts.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `clone3({.flags, .exit_signal})`—Creates a child process (fork-like) in the new
/// namespaces named by `flags`, e.g. `CLONE_NEWPID | CLONE_NEWNS` for a child that is PID 1
/// of a new PID namespace and has its own copy of the mount table.
///
/// Returns `Ok(Some(pid))` in the parent (`pid` as the parent sees it) and `Ok(None)` in
/// the child, which continues from this call on its own copy of the caller's address
/// space. `flags` may only hold namespace flags (`CLONE_NEWPID`, `CLONE_NEWNS`,
/// `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWNET`, `CLONE_NEWCGROUP`); anything else is
/// refused with `EINVAL` before any call (flags that share memory or write through
/// pointers need arguments this call does not pass).
///
/// Needs `CAP_SYS_ADMIN` (`EPERM` otherwise). The child has the same duty as the one of
/// [`clone3_with_tid`] (see "Safety of the child" there) when the caller is
/// multi-threaded.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
///  - [Linux](https://man7.org/linux/man-pages/man7/pid_namespaces.7.html)
#[doc(alias = "clone3")]
#[doc(alias = "CLONE_NEWPID")]
pub fn clone3_into_namespaces(flags: u64, exit_signal: libc::c_int) -> io::Result<Option<Pid>> {
    if flags & !NAMESPACE_FLAGS != 0 || exit_signal < 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        ..CloneArgs::default()
    };
    match raw_clone3(&args)? {
        Cloned::Child => Ok(None),
        Cloned::Parent(pid) => Pid::from_raw(pid)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "clone3: pid 0")),
    }
}

/// A child created by [`fork_parked`]: it waits, blocked in `read(2)`, and holds no
/// descriptor but the one it waits on.
///
/// Dropping it sends `SIGKILL` and reaps it (waiting for its PID only), so it never
/// outlives its owner, whatever state it was left in (ptrace-stopped included).
#[derive(Debug)]
pub struct ParkedChild {
    pid: Pid,
    /// Write end of the pipe the child reads; kept open so the child stays blocked.
    _release: OwnedFd,
}

impl ParkedChild {
    /// The child's PID.
    pub fn pid(&self) -> Pid {
        self.pid
    }
}

impl Drop for ParkedChild {
    fn drop(&mut self) {
        let raw = self.pid.as_raw_nonzero().get();
        // The child is ours and not yet reaped, so its PID cannot have been reused.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGKILL,
        );
        reap(raw);
    }
}

/// `clone3({.exit_signal = SIGCHLD})`, i.e. `fork()`—Creates a child that closes every
/// descriptor but one, reports that it is ready, and blocks reading a pipe until the
/// returned [`ParkedChild`] is dropped.
///
/// Returns only once the child has written its ready byte and closed every descriptor but
/// the one it reads, so it exists and is blocked (or about to block) in `read(2)`. Because
/// the child closes all inherited descriptors first, it keeps no other thread's pipe ends
/// open.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/clone3.2.html)
#[doc(alias = "fork")]
pub fn fork_parked() -> io::Result<ParkedChild> {
    let (ready_r, ready_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (release_r, release_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let pid = match raw_clone3(&args)? {
        Cloned::Child => park(ready_w.as_raw_fd(), release_r.as_raw_fd()),
        Cloned::Parent(pid) => pid,
    };
    drop(ready_w);
    drop(release_r);
    let Some(pid) = Pid::from_raw(pid) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "clone3: pid 0"));
    };
    // Own the child before anything can fail, so an error below still kills and reaps it.
    let child = ParkedChild {
        pid,
        _release: release_w,
    };
    // The ready byte, then end-of-file once the child has closed its end: from then on it
    // holds only the descriptor it blocks on.
    let mut got = 0;
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(&ready_r, &mut byte) {
            Ok(0) if got == 1 => return Ok(child),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "parked child exited before it was ready",
                ));
            }
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The child side of [`fork_parked`]. Raw system calls only: this is a copy of one thread
/// of a possibly multi-threaded process.
fn park(ready_w: RawFd, release_r: RawFd) -> ! {
    let (lo, hi) = if ready_w < release_r {
        (ready_w, release_r)
    } else {
        (release_r, ready_w)
    };
    // Both are valid descriptors, so 0 <= lo < hi; the ranges are computed as unsigned,
    // the type close_range takes, with `!0` meaning "up to the highest possible".
    let (lo, hi) = (lo as libc::c_uint, hi as libc::c_uint);
    let ranges = [
        (0, lo.checked_sub(1)),
        (lo + 1, hi.checked_sub(1)),
        (hi + 1, Some(!0)),
    ];
    for range in ranges {
        let (first, last) = match range {
            (first, Some(last)) if first <= last => (first, last),
            _ => continue,
        };
        // SAFETY: close_range takes integers only; the descriptors it closes belong to
        // this child's own copy of the table, which nothing else in the child uses.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    }
    // SAFETY: writes one byte from a valid static buffer to a descriptor we hold.
    let wrote = unsafe { libc::write(ready_w, b"r".as_ptr().cast(), 1) };
    if wrote != 1 {
        child_exit(1);
    }
    // SAFETY: closes a descriptor of this child's own table; nothing else uses it.
    unsafe { libc::close(ready_w) };
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a valid local buffer.
        let n = unsafe { libc::read(release_r, std::ptr::from_mut(&mut byte).cast(), 1) };
        // Block until the parent closes its end (EOF) or kills us; retry on EINTR.
        if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            child_exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_cap(bit: u32) -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim();
        u64::from_str_radix(hex, 16).unwrap() & (1 << bit) != 0
    }

    #[test]
    fn set_tid_probe_matches_capability() {
        // CAP_CHECKPOINT_RESTORE = 40, CAP_SYS_ADMIN = 21.
        match probe_set_tid() {
            Ok(()) => assert!(has_cap(40) || has_cap(21)),
            Err(e) => {
                assert!(
                    !has_cap(40) && !has_cap(21),
                    "probe failed with the capability: {e}"
                );
                assert_eq!(e.raw_os_error(), Some(libc::EPERM));
            }
        }
    }

    /// A PID nobody uses right now (pid_max is read; the scan starts high to keep clear
    /// of the PIDs the kernel is handing out).
    fn free_pids() -> impl Iterator<Item = i32> {
        let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let start = max / 2 + (std::process::id() as i32 % (max / 4));
        (start..max).filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    }

    #[test]
    fn clone3_gives_the_chosen_pid() {
        if !(has_cap(40) || has_cap(21)) {
            eprintln!("skipped: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN");
            return;
        }
        for want in free_pids().take(10) {
            match clone3_with_tid(0, libc::SIGCHLD, &[want]) {
                // Child of a multi-threaded test process: only _exit.
                Ok(None) => child_exit(7),
                Ok(Some(pid)) => {
                    assert_eq!(pid.as_raw_nonzero().get(), want);
                    let status =
                        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(want), None).unwrap();
                    assert_eq!(
                        status,
                        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(want), 7)
                    );
                    return;
                }
                // Taken between the scan and the call: try the next one.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => panic!("clone3 with set_tid {want}: {e}"),
            }
        }
        panic!("no free pid found in 10 tries");
    }

    #[test]
    fn a_clone3_vm_child_writes_into_our_memory_with_its_pid() {
        if !(has_cap(40) || has_cap(21)) {
            eprintln!("skipped: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN");
            return;
        }
        use std::sync::atomic::{AtomicI32, Ordering};
        let seen = AtomicI32::new(0);
        for want in free_pids().take(10) {
            // Raw system calls only in the child: this test process has other threads.
            let mut work = || {
                seen.store(
                    rustix::process::getpid().as_raw_nonzero().get(),
                    Ordering::SeqCst,
                );
                child_exit(5)
            };
            match clone3_vm_with_tid(libc::CLONE_VM as u64, libc::SIGCHLD, &[want], &mut work) {
                Ok(pid) => {
                    assert_eq!(pid.as_raw_nonzero().get(), want);
                    let status =
                        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(want), None).unwrap();
                    assert_eq!(
                        status,
                        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(want), 5)
                    );
                    assert_eq!(
                        seen.load(Ordering::SeqCst),
                        want,
                        "the child's write is ours"
                    );
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => panic!("clone3 CLONE_VM with set_tid {want}: {e}"),
            }
        }
        panic!("no free pid found");
    }

    #[test]
    fn clone3_vm_refuses_a_child_without_its_own_process() {
        let mut work = || {};
        for flags in [0, libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND] {
            let e = clone3_vm_with_tid(flags as u64, libc::SIGCHLD, &[1], &mut work).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        }
    }

    #[test]
    fn clone3_refuses_a_pid_in_use() {
        if !(has_cap(40) || has_cap(21)) {
            eprintln!("skipped: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN");
            return;
        }
        let me = std::process::id() as i32;
        match clone3_with_tid(0, libc::SIGCHLD, &[me]) {
            Ok(None) => child_exit(0),
            Ok(Some(pid)) => panic!("got pid {pid:?} although {me} is ours"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EEXIST)),
        }
        let e = clone3_with_tid(libc::CLONE_VM as u64, libc::SIGCHLD, &[me]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn clone3_into_namespaces_refuses_other_flags() {
        let e = clone3_into_namespaces(libc::CLONE_VM as u64, libc::SIGCHLD).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = clone3_into_namespaces(
            (libc::CLONE_NEWPID | libc::CLONE_PIDFD) as u64,
            libc::SIGCHLD,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn clone3_into_a_new_pid_namespace_is_its_pid_1() {
        if !has_cap(21) {
            eprintln!("skipped: needs CAP_SYS_ADMIN");
            return;
        }
        match clone3_into_namespaces(libc::CLONE_NEWPID as u64, libc::SIGCHLD) {
            // Child of a multi-threaded test process: a raw getpid and _exit only.
            Ok(None) => child_exit(i32::from(
                rustix::process::getpid().as_raw_nonzero().get() != 1,
            )),
            Ok(Some(pid)) => {
                let pid = nix::unistd::Pid::from_raw(pid.as_raw_nonzero().get());
                let status = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
            }
            Err(e) => panic!("clone3(CLONE_NEWPID): {e}"),
        }
    }

    #[test]
    fn parked_child_lives_until_dropped() {
        let child = fork_parked().unwrap();
        let pid = child.pid().as_raw_nonzero().get();
        // Holding only the descriptor it blocks on.
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        assert_eq!(fds, 1);
        drop(child);
        // Reaped: waiting for it again finds no such child.
        let r = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        assert_eq!(r, Err(nix::errno::Errno::ECHILD));
    }
}
