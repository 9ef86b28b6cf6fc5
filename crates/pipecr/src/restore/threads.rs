//! Bring back the threads of a multi-threaded process, with their TIDs, once its address
//! space, handlers and main thread's signals are in place (called by
//! [`super::image`] while the trampoline page still exists), and release the restored
//! tree ([`release_tree`], called by the orchestrator once every process is ready).
//!
//! For each saved thread but the main one (`tid == pid`):
//! 1. The main thread, held in a ptrace-stop under `PTRACE_O_TRACECLONE`, runs an injected
//!    `clone3` (`CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
//!    CLONE_SYSVSEM`, `set_tid` = the saved TID, no stack of its own: the new thread never
//!    runs our code). The `struct clone_args` and the `set_tid` array are written into
//!    the trampoline page. The new thread inherits the main thread's mask at that moment
//!    (every signal blocked) and is auto-attached: it starts in a `PTRACE_EVENT_STOP`,
//!    which we wait for.
//! 2. Through an [`Injector`] on the new thread (injecting through the trampoline): its
//!    rseq area is registered (rseq is per thread and not inherited by a `CLONE_VM` child)
//!    and its own pending signals are queued from inside it (`rt_tgsigqueueinfo` to
//!    itself: any `si_code` is allowed to oneself).
//! 3. Its saved registers (with `fs_base`/`gs_base`, the TLS), XSAVE area and blocked
//!    mask are set; a thread saved inside a syscall the kernel would restart is put back
//!    onto its `syscall` instruction exactly as the main thread is
//!    ([`super::regs::set_final`]).
//!
//! The threads stay in their ptrace-stops until [`detach`] lets the whole process go.
//!
//! Every thread, the main one included, also gets its robust futex list back
//! (`set_robust_list`) and its `clear_child_tid` address (`set_tid_address`: what
//! `pthread_join` waits on) when the dump read it (`Core.handlers_read`, as it needs an
//! injection).
//!
//! Each new thread also gets its alternate signal stack (when the dump read it) and, last,
//! the process's credentials ([`super::creds`]: they are per thread in the kernel).
//!
//! Known gaps: without `handlers_read` the threads have no `clear_child_tid`, so a
//! `pthread_join` on a restored thread that exits never returns, and no alternate
//! signal stack.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid as NixPid;
use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result, errno};
use super::saved::{SavedProcess, main_thread};
use super::trampoline::{CLONE_ARGS_AT, SCRATCH_AT, SET_TID_AT};
use crate::inject::kstruct::CloneArgs;
use crate::inject::{Injector, calls};
use crate::sys::ptrace::{self as sys_ptrace, Resume, ThreadWait};

/// The flags of a thread `clone3`, as glibc's `pthread_create` uses them (minus the TLS,
/// tid and futex bits: registers are set afterwards).
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Creates every saved thread of `saved` but the main one (see the module documentation)
/// through `inj`, the main thread's injector, whose `syscall` instruction is the
/// trampoline page at `tramp`. The main thread must have every signal blocked. Leaves
/// each new thread in a ptrace-stop with its saved state.
pub(super) fn create(inj: &mut Injector, saved: &SavedProcess, tramp: u64) -> Result<()> {
    let pid = saved.pid();
    if let Some(main) = main_thread(pid, &saved.core) {
        futex_links(inj, main)?;
    }
    let others: Vec<&proto::Thread> = saved.core.threads.iter().filter(|t| t.tid != pid).collect();
    if others.is_empty() {
        return Ok(());
    }
    let main = NixPid::from_raw(pid);
    // EXITKILL stays on (see `load_image`); new threads inherit the options.
    ptrace::setoptions(
        main,
        ptrace::Options::PTRACE_O_TRACECLONE | ptrace::Options::PTRACE_O_EXITKILL,
    )
    .map_err(errno(pid, "PTRACE_SETOPTIONS PTRACE_O_TRACECLONE"))?;
    for thread in others {
        let tid = clone_thread(inj, pid, tramp, thread.tid)?;
        set_up(pid, tid, tramp, thread, saved)?;
    }
    ptrace::setoptions(main, ptrace::Options::PTRACE_O_EXITKILL)
        .map_err(errno(pid, "PTRACE_SETOPTIONS"))?;
    Ok(())
}

/// Registers the saved rseq area of `thread`, if it had one, from inside it (`inj`).
pub(super) fn register_rseq(inj: &mut Injector, thread: &proto::Thread) -> Result<()> {
    if let Some(r) = &thread.rseq {
        calls::rseq_register(inj, r.address, r.length, r.signature)?;
    }
    Ok(())
}

/// Detaches every thread of the restored `tree` (held in ptrace-stops), children first,
/// so that a parent runs with every child already restored.
///
/// First every thread loses `PTRACE_O_EXITKILL`: every process is complete now, and if
/// the restorer dies during the release the kernel detaches the rest, which then run on
/// like the ones already released. With it, a restorer killed half-way through would
/// leave children running whose parent it killed.
pub(super) fn release_tree(tree: &[SavedProcess]) -> Result<()> {
    for saved in tree {
        for t in &saved.core.threads {
            ptrace::setoptions(NixPid::from_raw(t.tid), ptrace::Options::empty())
                .map_err(errno(t.tid, "PTRACE_SETOPTIONS"))?;
        }
    }
    // A process saved in a group stop is stopped again while every thread is still held.
    for saved in tree.iter().filter(|s| s.core.stop_signal != 0) {
        super::procstate::stop(saved)?;
    }
    // Their parents had collected the news of some of those stops already.
    super::procstate::collect_stop_reports(tree)?;
    for saved in tree.iter().rev() {
        detach(saved)?;
    }
    Ok(())
}

/// Detaches every thread of the restored `saved` (held in ptrace-stops), the main thread
/// last.
fn detach(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let (main, others): (Vec<&proto::Thread>, Vec<&proto::Thread>) =
        saved.core.threads.iter().partition(|t| t.tid == pid);
    for t in others.into_iter().chain(main) {
        if saved.core.stop_signal != 0 {
            // In its group stop (super::procstate::stop): detached, it stays there.
            ptrace::detach(NixPid::from_raw(t.tid), None).map_err(errno(t.tid, "PTRACE_DETACH"))?;
        } else {
            release(pid, t)?;
        }
    }
    Ok(())
}

/// Detaches thread `t` of process `pid`. A thread set back onto the `syscall`
/// instruction of a syscall it was stopped in is first let into that syscall under
/// ptrace and released at its entry: released before it, a signal arriving first would
/// run its handler and then enter the call again (a `pause()` would sleep through its
/// own wake-up) instead of interrupting it with EINTR as the kernel does. A signal it
/// must take before that (one restored as pending) is handed back on detach.
fn release(pid: i32, t: &proto::Thread) -> Result<()> {
    let tid = NixPid::from_raw(t.tid);
    let os = |op: &'static str| {
        let tid = t.tid;
        move |source: std::io::Error| ProcessRestoreError::Os {
            pid: tid,
            op,
            source,
        }
    };
    let mut signal = 0;
    if super::regs::in_restarted_syscall(pid, t)? {
        ptrace::setoptions(tid, ptrace::Options::PTRACE_O_TRACESYSGOOD)
            .map_err(errno(t.tid, "PTRACE_SETOPTIONS"))?;
        sys_ptrace::resume(tid, Resume::Syscall, 0).map_err(os("PTRACE_SYSCALL"))?;
        loop {
            // Any signal number: a real-time one (a POSIX timer's) may come first.
            match sys_ptrace::wait_thread(tid).map_err(os("waitpid"))? {
                ThreadWait::Signal(s) if s == libc::SIGTRAP | 0x80 => break,
                ThreadWait::Signal(s) => {
                    signal = s;
                    break;
                }
                ThreadWait::Gone => {
                    return Err(ProcessRestoreError::Child {
                        pid,
                        message: format!("thread {} died as it was released", t.tid),
                    });
                }
                ThreadWait::Event => {
                    sys_ptrace::resume(tid, Resume::Syscall, 0).map_err(os("PTRACE_SYSCALL"))?;
                }
            }
        }
    }
    sys_ptrace::resume(tid, Resume::Detach, signal).map_err(os("PTRACE_DETACH"))
}

/// The injected `clone3` creating thread `tid`; waits for its first stop.
fn clone_thread(inj: &mut Injector, pid: i32, tramp: u64, tid: i32) -> Result<i32> {
    let args = CloneArgs {
        flags: THREAD_FLAGS,
        set_tid: tramp + SET_TID_AT,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    inj.write_memory(tramp + SET_TID_AT, &tid.to_ne_bytes())?;
    let created =
        calls::clone3(inj, tramp + CLONE_ARGS_AT, &args).map_err(|e| ProcessRestoreError::Os {
            pid,
            op: "clone3 of a thread with set_tid",
            source: std::io::Error::other(e),
        })?;
    if created != tid {
        return Err(ProcessRestoreError::Invalid {
            pid,
            what: format!("thread {tid} was created as {created}"),
        });
    }
    let t = NixPid::from_raw(tid);
    loop {
        match waitpid(t, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) => return Ok(tid),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                return Err(ProcessRestoreError::Child {
                    pid,
                    message: format!("thread {tid} died as it was created"),
                });
            }
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(e) => return Err(errno(pid, "waitpid (new thread)")(e)),
        }
    }
}

/// Gives the new thread `tid` (in its first stop) its rseq area, pending signals,
/// alternate signal stack, credentials, registers, XSAVE area and mask.
fn set_up(
    pid: i32,
    tid: i32,
    tramp: u64,
    thread: &proto::Thread,
    saved: &SavedProcess,
) -> Result<()> {
    let mut inj = Injector::new(pid, tid)?;
    inj.set_syscall_address(tramp)?;
    register_rseq(&mut inj, thread)?;
    futex_links(&mut inj, thread)?;
    for info in &thread.pending {
        if info.raw.len() != 128 || info.signo <= 0 || info.signo > 64 {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "pending signal {} of thread {tid} with a siginfo of {} bytes",
                    info.signo,
                    info.raw.len()
                ),
            });
        }
        let (tgid, tid) = (pid as u64, tid as u64);
        calls::rt_tgsigqueueinfo_at(
            &mut inj,
            tramp + SCRATCH_AT,
            tgid,
            tid,
            info.signo,
            &info.raw,
        )?;
    }
    super::signals::restore_altstack(&mut inj, pid, tramp, thread)?;
    // It was created with the main thread's name (the process's).
    super::procstate::thread_attrs(&mut inj, tramp, thread, &saved.process.comm)?;
    // Credentials are per thread: each gets its own (the process's unless saved apart),
    // then what a change of ids resets. Its seccomp filters come once every thread is
    // made (super::procstate::seccomp).
    if let Some(creds) = thread.creds.as_ref().or(saved.core.creds.as_ref()) {
        let securebits = thread.prctl.as_ref().map(|p| p.securebits);
        super::creds::restore(&mut inj, pid, tramp, creds, securebits)?;
    }
    super::creds::after(&mut inj, pid, thread, None)?;
    // Anything that arrived meanwhile was meant for nobody restored.
    let _ = inj.release();
    super::regs::set_final(pid, tid, thread)
}

/// Injects `set_robust_list` (clearing it when the thread had none) and, when the dump read
/// it, `set_tid_address` into the thread `inj` drives.
fn futex_links(inj: &mut Injector, thread: &proto::Thread) -> Result<()> {
    // sizeof(struct robust_list_head) on x86_64: what the kernel accepts.
    const HEAD_LEN: u64 = 24;
    let (head, len) = if thread.robust_list != 0 {
        (thread.robust_list, thread.robust_list_len)
    } else {
        (0, HEAD_LEN)
    };
    calls::set_robust_list(inj, head, len)?;
    if thread.clear_child_tid != 0 {
        calls::set_tid_address(inj, thread.clear_child_tid)?;
    }
    Ok(())
}
