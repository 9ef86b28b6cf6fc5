//! Process and thread state a program sets for itself and relies on, apart from
//! credentials ([`super::creds`]): each thread's name and timer slack ([`thread_attrs`]),
//! the process's transparent-huge-page setting ([`thp`], before any area is mapped), its
//! seccomp filters ([`seccomp`], the last injected step of all), the reports of its
//! children's stops and continues its `waitpid` has yet to collect ([`child_reports`]),
//! and the group stop it was in ([`stop`], at release). [`check`] refuses, before
//! anything is created, what of it cannot be given back.
//!
//! Seccomp, in the order CRIU's restorer also keeps (filters last, once nothing else
//! needs a syscall they might deny; no_new_privs before them): the filters are installed
//! from inside each thread, oldest first, with `seccomp(SECCOMP_SET_MODE_FILTER)`. The
//! prefix every thread shares (a filter installed before the threads were created, or
//! with `SECCOMP_FILTER_FLAG_TSYNC`) is installed once by the main thread with `TSYNC`,
//! so the threads share it again (a later `TSYNC` of the program's own then succeeds);
//! each thread then adds its own. Programs are written into an anonymous scratch
//! mapping, unmapped afterwards with the trampoline page: those two `munmap` calls are
//! the only syscalls the restored filters must allow. Strict mode is set last, in the
//! main thread once the trampoline is gone (through the `syscall` instruction of the
//! vDSO).
//!
//! Known gaps: the kernel keeps no trace of `SECCOMP_FILTER_FLAG_NEW_LISTENER` (a user
//! notification listener is not recreated: its filters answer `ENOSYS`) nor of
//! `SECCOMP_FILTER_FLAG_SPEC_ALLOW` (every restored filter force-disables speculative
//! store bypass).

use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::Signal;
use nix::unistd::Pid as NixPid;
use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result, os};
use super::saved::{SavedProcess, main_thread};
use super::trampoline::SCRATCH_AT;
use crate::inject::{Injector, calls};
use crate::sys::ptrace::{self as sys_ptrace, Resume, SOCK_FILTER_SIZE, ThreadWait};

/// `SECCOMP_FILTER_FLAG_TSYNC`.
const TSYNC: u64 = 1;
/// `SECCOMP_MODE_STRICT`, `SECCOMP_MODE_FILTER` (`Seccomp:` of `/proc/PID/status`).
const MODE_STRICT: u32 = 1;
const MODE_FILTER: u32 = 2;
/// `CAP_SYS_ADMIN`.
const CAP_SYS_ADMIN: u32 = 21;
/// `CLD_CONTINUED` (waitid's `si_code`).
const CLD_CONTINUED: i32 = 6;

/// Checks, before anything is created, that what this module restores can be given back
/// to `saved`: seccomp filters each of which the kernel will take (no_new_privs, or
/// `CAP_SYS_ADMIN` in the thread's restored effective set; at most `BPF_MAXINSNS`
/// instructions, whole ones), securebits the restorer may set, and a stop signal the
/// process can be stopped by again.
pub(super) fn check(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let unsupported = |what: String| Err(ProcessRestoreError::Unsupported { pid, what });
    for t in &saved.core.threads {
        if let Some(creds) = &t.creds {
            super::creds::check(pid, Some(creds))?;
        }
        if let Some(p) = &t.prctl {
            super::creds::check_securebits(pid, t.tid, p.securebits)?;
        }
        let Some(sc) = &t.seccomp else { continue };
        let creds = t.creds.as_ref().or(saved.core.creds.as_ref());
        let admin = creds.is_some_and(|c| c.cap_effective & (1 << CAP_SYS_ADMIN) != 0);
        match sc.mode {
            MODE_STRICT if sc.filters.is_empty() => {}
            MODE_FILTER if !t.no_new_privs && !admin => {
                return unsupported(format!(
                    "thread {}: seccomp filters without no_new_privs nor CAP_SYS_ADMIN \
                     (dropped after they were installed): the kernel would refuse them",
                    t.tid
                ));
            }
            MODE_FILTER => {}
            mode => {
                return unsupported(format!("thread {}: seccomp mode {mode}", t.tid));
            }
        }
        for f in &sc.filters {
            let n = f.program.len() / SOCK_FILTER_SIZE;
            if f.program.len() % SOCK_FILTER_SIZE != 0 || n == 0 || n > 4096 {
                return unsupported(format!(
                    "thread {}: a seccomp filter of {} bytes",
                    t.tid,
                    f.program.len()
                ));
            }
        }
    }
    let sig = saved.core.stop_signal;
    if sig != 0 {
        let job_control = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
        if sig != libc::SIGSTOP && !job_control.contains(&sig) {
            return unsupported(format!("a group stop by signal {sig}"));
        }
        if sig != libc::SIGSTOP {
            let handled = saved
                .core
                .sigactions
                .iter()
                .any(|a| a.signo == sig && a.handler != 0);
            let blocked =
                main_thread(pid, &saved.core).is_some_and(|t| t.blocked & (1 << (sig - 1)) != 0);
            if handled || blocked {
                return unsupported(format!(
                    "a stop by signal {sig} that it now handles or blocks"
                ));
            }
        }
    }
    Ok(())
}

/// Sets the saved transparent-huge-page setting through `inj` (before any area is
/// mapped, so that page faults follow it): the exact one when the dump read it by
/// `prctl`, else the one `/proc/PID/status` showed.
pub(super) fn thp(inj: &mut Injector, core: &proto::Core) -> Result<()> {
    let value = match &core.prctl {
        Some(p) => p.thp_disable,
        None => u32::from(core.thp_disabled_status),
    };
    calls::prctl_set_thp_disable(inj, value)?;
    Ok(())
}

/// Gives the thread `inj` drives its saved name (when it differs from `inherited`, the
/// one it has: the process's, set when it was created), personality (when its own) and
/// timer slack.
pub(super) fn thread_attrs(
    inj: &mut Injector,
    tramp: u64,
    thread: &proto::Thread,
    inherited: &str,
) -> Result<()> {
    if !thread.comm.is_empty() && thread.comm != inherited {
        calls::prctl_set_name_at(inj, tramp + SCRATCH_AT, thread.comm.as_bytes())?;
    }
    if let Some(persona) = thread.personality {
        calls::personality(inj, persona)?;
    }
    if thread.timer_slack_ns != 0 {
        calls::prctl_set_timerslack(inj, thread.timer_slack_ns)?;
    }
    Ok(())
}

/// Collects, in the process `inj` drives (`saved`, of `tree`), the continue of each of
/// its live children that the restore's own `SIGCONT` left for its `waitpid`, unless the
/// saved process had one such report waiting (`Core.child_reports`).
pub(super) fn child_reports(
    inj: &mut Injector,
    saved: &SavedProcess,
    tree: &[SavedProcess],
) -> Result<()> {
    let pid = saved.pid();
    for child in tree
        .iter()
        .filter(|c| c.process.ppid == pid && c.pid() != pid)
    {
        let keep = saved
            .core
            .child_reports
            .iter()
            .any(|r| r.pid == child.pid() && r.code == CLD_CONTINUED);
        if !keep {
            calls::collect_child_report(inj, child.pid(), libc::WCONTINUED)?;
        }
    }
    Ok(())
}

/// A thread's saved filters, oldest first (none for a thread without filters).
fn chain(t: &proto::Thread) -> &[proto::SeccompFilter] {
    match &t.seccomp {
        Some(sc) if sc.mode == MODE_FILTER => &sc.filters,
        _ => &[],
    }
}

/// Installs the saved seccomp filters of every thread of `saved` (see the module
/// documentation), `inj` driving the main thread, whose injections go through the
/// trampoline at `tramp`; the other threads wait in ptrace-stops with their final
/// state, given back to them afterwards. Returns the scratch mapping to unmap (with the
/// trampoline), if one was made.
pub(super) fn seccomp(
    inj: &mut Injector,
    saved: &SavedProcess,
    tramp: u64,
) -> Result<Option<(u64, u64)>> {
    let pid = saved.pid();
    let threads = &saved.core.threads;
    if threads.iter().all(|t| chain(t).is_empty()) {
        return Ok(None);
    }
    let Some(main) = main_thread(pid, &saved.core) else {
        return Ok(None);
    };
    // The prefix all threads share.
    let mut common = chain(main).len();
    for t in threads {
        let c = chain(t);
        common = common.min(
            c.iter()
                .zip(chain(main))
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let largest = threads
        .iter()
        .flat_map(|t| chain(t).iter())
        .map(|f| f.program.len())
        .max()
        .unwrap_or(0);
    let len = (calls::SOCK_FPROG_SIZE + largest).next_multiple_of(4096) as u64;
    let scratch = inj.remote_mmap(
        0,
        len,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
        None,
        0,
    )?;
    let install = |inj: &mut Injector, tid: i32, f: &proto::SeccompFilter, flags: u64| {
        calls::seccomp_set_filter_at(inj, scratch, &f.program, f.flags | flags).map_err(|e| {
            ProcessRestoreError::Os {
                pid,
                op: if tid == pid {
                    "seccomp(SECCOMP_SET_MODE_FILTER) in the main thread"
                } else {
                    "seccomp(SECCOMP_SET_MODE_FILTER) in a thread"
                },
                source: std::io::Error::other(e),
            }
        })
    };
    let tsync = if threads.len() > 1 { TSYNC } else { 0 };
    for f in &chain(main)[..common] {
        install(inj, pid, f, tsync)?;
    }
    for f in &chain(main)[common..] {
        install(inj, pid, f, 0)?;
    }
    for t in threads.iter().filter(|t| t.tid != main.tid) {
        let own = &chain(t)[common.min(chain(t).len())..];
        let strict = t.seccomp.as_ref().is_some_and(|s| s.mode == MODE_STRICT);
        if own.is_empty() && !strict {
            continue;
        }
        let mut tinj = Injector::new(pid, t.tid)?;
        tinj.set_syscall_address(tramp)?;
        for f in own {
            install(&mut tinj, t.tid, f, 0)?;
        }
        if strict {
            calls::seccomp_set_strict(&mut tinj)?;
        }
        let _ = tinj.release();
        super::regs::set_final(pid, t.tid, t)?;
    }
    Ok(Some((scratch, len)))
}

/// Puts the main thread in strict seccomp mode if it was (the very last injected call:
/// nothing but `read`, `write`, `_exit` and `sigreturn` is allowed after it).
pub(super) fn strict_last(inj: &mut Injector, thread: &proto::Thread) -> Result<()> {
    if thread
        .seccomp
        .as_ref()
        .is_some_and(|s| s.mode == MODE_STRICT)
    {
        calls::seccomp_set_strict(inj)?;
    }
    Ok(())
}

/// Stops the restored process `saved`, every thread of which waits in a ptrace-stop
/// with its final state, by its saved group-stop signal, before it is detached: the
/// main thread is sent `SIGSTOP` and let run to its delivery (signals pending before it
/// are delivered on the way, as they would be after a `SIGCONT`), where the saved stop
/// signal takes its place; every thread then traps in the group stop, which completes
/// (the parent is told, as the kernel tells it) before any is detached. Detached, they
/// stay stopped until a `SIGCONT`.
pub(super) fn stop(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let sig = saved.core.stop_signal;
    let Ok(stop_sig) = Signal::try_from(sig) else {
        return Err(ProcessRestoreError::Invalid {
            pid,
            what: format!("stop signal {sig}"),
        });
    };
    let main = NixPid::from_raw(pid);
    if stop_sig != Signal::SIGSTOP && pgrp_orphaned(saved.process.pgid) {
        return Err(ProcessRestoreError::Unsupported {
            pid,
            what: format!(
                "a stop by {stop_sig} in process group {}, orphaned here (the kernel \
                 discards job-control stops there)",
                saved.process.pgid
            ),
        });
    }
    crate::sys::ptrace::tgkill(main, main, libc::SIGSTOP).map_err(os(pid, "tgkill SIGSTOP"))?;
    let mut pass = 0;
    loop {
        sys_ptrace::resume(main, Resume::Cont, pass).map_err(os(pid, "PTRACE_CONT"))?;
        // Any signal number: a real-time one may be delivered first.
        match sys_ptrace::wait_thread(main).map_err(os(pid, "waitpid"))? {
            ThreadWait::Signal(libc::SIGSTOP) => break,
            // Delivered first, as after a SIGCONT it would be.
            ThreadWait::Signal(other) => pass = other,
            ThreadWait::Event => pass = 0,
            ThreadWait::Gone => {
                return Err(ProcessRestoreError::Child {
                    pid,
                    message: "it died as it was stopped".to_owned(),
                });
            }
        }
    }
    sys_ptrace::resume(main, Resume::Cont, sig).map_err(os(pid, "PTRACE_CONT"))?;
    wait_group_stop(pid, pid)?;
    for t in saved.core.threads.iter().filter(|t| t.tid != pid) {
        let tid = NixPid::from_raw(t.tid);
        sys_ptrace::resume(tid, Resume::Cont, 0).map_err(os(t.tid, "PTRACE_CONT"))?;
        wait_group_stop(pid, t.tid)?;
    }
    Ok(())
}

/// Waits until thread `tid` of `pid` traps in a group stop (`PTRACE_EVENT_STOP`),
/// letting through the signals it is delivered on the way.
fn wait_group_stop(pid: i32, tid: i32) -> Result<()> {
    let t = NixPid::from_raw(tid);
    loop {
        match sys_ptrace::wait_thread(t).map_err(os(tid, "waitpid"))? {
            ThreadWait::Event => return Ok(()),
            ThreadWait::Signal(other) => {
                sys_ptrace::resume(t, Resume::Cont, other).map_err(os(tid, "PTRACE_CONT"))?;
            }
            ThreadWait::Gone => {
                return Err(ProcessRestoreError::Child {
                    pid,
                    message: format!("thread {tid} died as it was stopped"),
                });
            }
        }
    }
}

/// Collects, in each process of `tree` (every thread held in a ptrace-stop with its
/// final state), the report of each child [`stop`] stopped again, unless the dump saw
/// that report still waiting for its `waitpid` (`Core.child_reports`; when the dump did
/// not read them, the report stays).
pub(super) fn collect_stop_reports(tree: &[SavedProcess]) -> Result<()> {
    const CLD_STOPPED: i32 = 5;
    for parent in tree.iter().filter(|p| p.core.handlers_read) {
        let pid = parent.pid();
        let collect: Vec<i32> = tree
            .iter()
            .filter(|c| c.process.ppid == pid && c.pid() != pid && c.core.stop_signal != 0)
            .map(SavedProcess::pid)
            .filter(|&c| {
                !parent
                    .core
                    .child_reports
                    .iter()
                    .any(|r| r.pid == c && r.code == CLD_STOPPED)
            })
            .collect();
        if collect.is_empty() {
            continue;
        }
        let Some(main) = main_thread(pid, &parent.core) else {
            continue;
        };
        // Every signal blocked while we inject (the saved mask comes back with the rest
        // of its final state): none is taken out of its queue.
        let t = NixPid::from_raw(main.tid);
        crate::sys::ptrace::set_sigmask(t, crate::sys::ptrace::SigMask(!0)).map_err(|e| {
            ProcessRestoreError::Os {
                pid,
                op: "PTRACE_SETSIGMASK",
                source: e,
            }
        })?;
        let mut inj = Injector::new(pid, main.tid)?;
        for child in collect {
            calls::collect_child_report(&mut inj, child, libc::WSTOPPED)?;
        }
        let _ = inj.release();
        super::regs::set_final(pid, main.tid, main)?;
    }
    Ok(())
}

/// Whether process group `pgid` is orphaned now, by the kernel's rule
/// (`will_become_orphaned_pgrp`): no member has a parent in another group of the same
/// session. The kernel discards a job-control stop signal sent to such a group.
fn pgrp_orphaned(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = crate::proc::stat(pid) else {
            continue;
        };
        if stat.pgid != pgid || stat.state == 'Z' || stat.ppid <= 1 {
            continue;
        }
        if let Ok(parent) = crate::proc::stat(stat.ppid)
            && parent.pgid != pgid
            && parent.sid == stat.sid
        {
            return false;
        }
    }
    true
}
