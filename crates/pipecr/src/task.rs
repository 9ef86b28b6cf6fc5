//! The state of a stopped process other than its memory and descriptors, turned into a
//! [`proto::Core`]: per thread the registers (general and XSAVE), the blocked mask, the
//! pending signals and the rseq registration, its name, its credentials where they
//! differ from the process's, no_new_privs, seccomp mode and filters
//! (`PTRACE_SECCOMP_GET_FILTER`) and timer slack; per process cwd, root, umask, resource
//! limits, personality, credentials (ids, groups, capabilities: all from
//! `/proc/PID/status`), the process-wide pending signals and the group stop it was in
//! (seen by the freeze).
//!
//! Signal handlers and interval timers have no `/proc` interface: when asked, they are
//! read by injecting `getitimer` into every process, and `rt_sigaction` into those whose
//! `/proc/PID/status` says they catch a signal (`SigCgt`); ignored signals come from
//! `SigIgn` without injection ([`crate::inject`]). Likewise, per thread, the
//! `clear_child_tid` address, the alternate signal stack, the securebits and the
//! parent-death signal; per process the dumpable flag, the child-subreaper bit, the THP
//! setting and the stops and continues of its children its `waitpid` has yet to collect
//! (`waitid(WNOWAIT)`, which collects nothing). POSIX timers are listed by
//! `/proc/PID/timers` (ID, signal, value, target, clock); their setting and overrun are
//! read by the same injection (`timer_gettime`, `timer_getoverrun`). Each thread is taken
//! over once, for all of its reads (docs/INJECTION.md: the shorter, the safer).
//!
//! Also what cannot be saved is refused here, naming the process: a POSIX timer no
//! restore could create again ([`TaskError::UnrestorableTimer`], the rule of
//! [`crate::posix_timers`] the restore preflight applies too), and POSIX timers when the
//! dump may not inject ([`TaskError::PosixTimers`]), and a thread in strict seccomp
//! mode when it may ([`TaskError::StrictSeccomp`]: any injected call would kill it).
//!
//! The ptrace requests must come from the thread that froze the tree (ptrace belongs to
//! the attaching *thread*, see [`crate::freeze`]): call [`dump_core`] on that thread,
//! while the [`crate::freeze::FrozenTree`] is alive.

use std::io;

use pipecr_image::proto;
use rustix::process::Pid;

use crate::freeze::FrozenProcess;
use crate::inject::{CodePage, InjectError, Injector, Pending, ReadBatch, SigHandler, calls};
use crate::sys::names::RLIMIT_NLIMITS;
use crate::sys::ptrace::{self as sys_ptrace, SigMask, SigQueue};
use crate::sys::rlimit;

/// Why the state of a process could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A ptrace request on a thread failed.
    #[error("thread {tid} of pid {pid}: {op} failed")]
    Ptrace {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The request.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file of `/proc` about the process could not be read or understood.
    #[error("pid {pid}: cannot read {what}")]
    Read {
        /// The process.
        pid: i32,
        /// The file.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The process has POSIX timers (timer_create) and the dump may not inject the
    /// syscalls that read their settings.
    #[error(
        "pid {pid} has {count} POSIX timer(s) (/proc/{pid}/timers): their settings can only be \
         read by injecting timer_gettime into the process, which this dump was asked not to \
         do (--no-inject)"
    )]
    PosixTimers {
        /// The process.
        pid: i32,
        /// How many.
        count: usize,
    },
    /// The process has a POSIX timer no restore could create again: dumping it (and, by
    /// default, killing the tree) would lose the program.
    #[error(transparent)]
    UnrestorableTimer(#[from] crate::posix_timers::Unrestorable),
    /// A thread is in strict seccomp mode, where any injected call but `read`, `write`,
    /// `_exit` and `sigreturn` kills it: its handlers and the rest cannot be read.
    #[error(
        "thread {tid} of pid {pid} is in strict seccomp mode: the calls a dump injects to \
         read its signal handlers, timers and prctl settings would kill it; dump with \
         --no-inject (the restore then gives it default handlers and no timers)"
    )]
    StrictSeccomp {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
    },
    /// A thread's seccomp filters would not let a call the dump injects run (they
    /// would kill it, trap, or fail the call).
    #[error(
        "thread {tid} of pid {pid}: its seccomp filters answer {call}, which the dump \
         injects to read its state, with {action}; dump with --no-inject (the restore \
         then gives it default handlers and no timers)"
    )]
    SeccompDenies {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The call, with its first argument.
        call: String,
        /// What the filters answer.
        action: String,
    },
    /// A thread holds an io_uring instance through its table of registered rings
    /// (`IORING_REGISTER_RING_FDS`), which no descriptor or mapping shows.
    #[error(
        "thread {tid} of pid {pid} holds an io_uring instance as registered ring {index} \
         (IORING_REGISTER_RING_FDS): io_uring's queues and requests in flight live in the \
         kernel, which gives user space no way to read them out or rebuild them; pipecr \
         (like CRIU) cannot save it"
    )]
    IoUringRegistered {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The index in its table of registered rings.
        index: u32,
    },
    /// A syscall injected to read signal handlers or interval timers failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// A `/proc` file could not be read or understood.
    #[error(transparent)]
    Proc(#[from] crate::proc::ProcError),
}

/// Saves the state of the stopped process `process` (see the module documentation).
/// Signal handlers and interval timers only with `read_handlers`, which injects syscalls
/// (see [`crate::files::DumpOptions::read_handlers`] for the risk that carries).
///
/// Refuses with [`TaskError::UnrestorableTimer`] a process that has a POSIX timer no
/// restore could create again, and with [`TaskError::PosixTimers`] one that has POSIX
/// timers when `read_handlers` is false; both before anything is injected.
pub fn dump_core(process: &FrozenProcess, read_handlers: bool) -> Result<proto::Core, TaskError> {
    dump_core_in_tree(process, read_handlers, &[])
}

/// [`dump_core`] for a process whose live children in the tree are `children`: with
/// `read_handlers`, the stops and continues of theirs it has not yet collected with
/// `waitpid` are read too (`Core.child_reports`, by an injected `waitid(WNOWAIT)`).
pub fn dump_core_in_tree(
    process: &FrozenProcess,
    read_handlers: bool,
    children: &[i32],
) -> Result<proto::Core, TaskError> {
    let pid = process.pid;
    let timers = crate::proc::timers(pid)?;
    for t in &timers {
        crate::posix_timers::check(pid, &process.threads, t)?;
    }
    if !timers.is_empty() && !read_handlers {
        return Err(TaskError::PosixTimers {
            pid,
            count: timers.len(),
        });
    }
    let status = read(pid, "status")?;
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .ok_or_else(|| parse_error(pid, "status"))?;
    let personality = u32::from_str_radix(read(pid, "personality")?.trim(), 16)
        .map_err(|_| parse_error(pid, "personality"))?;
    let rlimits = rlimits(pid)?;
    let caught = status_mask(pid, &status, "SigCgt:")?;
    let ignored = status_mask(pid, &status, "SigIgn:")?;
    let mut threads = Vec::with_capacity(process.threads.len());
    for &tid in &process.threads {
        threads.push(dump_thread(pid, tid)?);
    }
    let process_creds = creds(pid, &status)?;
    for thread in &mut threads {
        thread_state(pid, thread, &process_creds, personality)?;
    }
    let thp_disabled_status = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .is_some_and(|v| v.trim() == "0");
    let mut process_prctl = None;
    let mut child_reports = Vec::new();
    if read_handlers
        && let Some(t) = threads
            .iter()
            .find(|t| t.seccomp.as_ref().is_some_and(|s| s.mode == 1))
    {
        return Err(TaskError::StrictSeccomp { pid, tid: t.tid });
    }
    if read_handlers {
        for (i, thread) in threads.iter().enumerate() {
            let process_calls = (i == 0).then_some((caught, children, timers.as_slice()));
            check_filters(pid, thread, process_calls)?;
        }
    }
    let (sigactions, itimers, posix_timers) = if read_handlers {
        // A process under a seccomp filter gets only the reads themselves, one at a time,
        // never the batch code's mmap and munmap: its filter could refuse them by
        // killing it (docs/INJECTION.md).
        let seccomp = status_field(&status, "Seccomp:").is_some_and(|m| m != "0");
        let code = if seccomp {
            CodePage::off(pid)
        } else {
            CodePage::new(pid)
        };
        let leader_blocked = status_mask(pid, &status, "SigBlk:")?;
        let (process_reads, thread_reads) = read_injected(
            process,
            &mut threads,
            code,
            (caught, ignored, leader_blocked),
            &timers,
            children,
        )?;
        for (thread, (securebits, pdeathsig)) in threads.iter_mut().zip(thread_reads) {
            thread.prctl = Some(proto::ThreadPrctl {
                securebits,
                pdeathsig,
            });
        }
        let (handlers, prctls, reports) = process_reads;
        process_prctl = Some(proto::ProcessPrctl {
            dumpable: prctls.dumpable,
            child_subreaper: prctls.child_subreaper,
            thp_disable: prctls.thp_disable,
        });
        child_reports = reports;
        handlers
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    Ok(proto::Core {
        pid,
        cwd: link(pid, "cwd")?,
        root: link(pid, "root")?,
        umask,
        rlimits,
        personality,
        shared_pending: shared_pending(pid)?,
        threads,
        sigactions,
        itimers,
        handlers_read: read_handlers,
        creds: Some(process_creds),
        posix_timers,
        prctl: process_prctl,
        stop_signal: process.stop_signal,
        thp_disabled_status,
        child_reports,
        // Filled by the dump from the descriptors (POSIX locks).
        ..Default::default()
    })
}

/// Whether the thread's seccomp filters let the probe of its registered io_uring rings
/// run ([`calls::read_registered_rings`]): a filter that refuses `io_uring_enter` (as
/// container runtimes' do) also keeps the thread from using such a ring, and the probe
/// is left out rather than the thread refused.
fn may_probe_rings(thread: &proto::Thread) -> bool {
    let Some(sc) = thread.seccomp.as_ref().filter(|s| !s.filters.is_empty()) else {
        return true;
    };
    let ip = match &thread.regs {
        Some(proto::thread::Regs::X8664(r)) => r.rip,
        None => 0,
    };
    (0..calls::IO_RINGFD_REG_MAX).all(|i| {
        let data = crate::seccomp::SeccompData {
            nr: libc::SYS_io_uring_enter as i32,
            arch: crate::seccomp::AUDIT_ARCH_X86_64,
            instruction_pointer: ip,
            args: [
                u64::from(i),
                0,
                0,
                calls::IORING_ENTER_REGISTERED_RING,
                0,
                0,
            ],
        };
        let programs = sc.filters.iter().map(|f| f.program.as_slice());
        matches!(crate::seccomp::allows(programs, &data), Ok(Ok(_)))
    })
}

/// Refuses, before anything is injected, a thread whose seccomp filters would not let
/// one of the calls of its injection session run (see [`crate::seccomp`]): those every
/// thread's session makes, and with `process` (the first thread's: the signals it
/// catches, its children, its POSIX timers) the process's. Pointer arguments are given
/// the thread's stack pointer, and the instruction pointer its own: filters that look
/// at them are rare, and these are the likeliest values.
fn check_filters(
    pid: i32,
    thread: &proto::Thread,
    process: Option<(u64, &[i32], &[crate::proc::ProcTimer])>,
) -> Result<(), TaskError> {
    let Some(sc) = thread.seccomp.as_ref().filter(|s| !s.filters.is_empty()) else {
        return Ok(());
    };
    let (ip, sp) = match &thread.regs {
        Some(proto::thread::Regs::X8664(r)) => (r.rip, r.rsp),
        None => (0, 0),
    };
    let prctl = |option: i32, arg: u64| (libc::SYS_prctl, "prctl", [option as u64, arg, 0, 0]);
    let mut calls = vec![
        prctl(libc::PR_GET_TID_ADDRESS, sp),
        (libc::SYS_sigaltstack, "sigaltstack", [0, sp, 0, 0]),
        prctl(libc::PR_GET_SECUREBITS, 0),
        prctl(libc::PR_GET_PDEATHSIG, sp),
    ];
    if let Some((caught, children, timers)) = process {
        calls.push(prctl(libc::PR_GET_DUMPABLE, 0));
        calls.push(prctl(libc::PR_GET_THP_DISABLE, 0));
        calls.push(prctl(libc::PR_GET_CHILD_SUBREAPER, sp));
        let options = (libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT) as u64;
        for &child in children {
            calls.push((libc::SYS_waitid, "waitid", [1, child as u64, sp, options]));
        }
        let read = caught | 1u64 << (libc::SIGCHLD - 1);
        for signo in (1..=64)
            .filter(|&s| read & (1u64 << (s - 1)) != 0 && s != libc::SIGKILL && s != libc::SIGSTOP)
        {
            calls.push((
                libc::SYS_rt_sigaction,
                "rt_sigaction",
                [signo as u64, 0, sp, 8],
            ));
        }
        for which in 0..3 {
            calls.push((libc::SYS_getitimer, "getitimer", [which, sp, 0, 0]));
        }
        for t in timers {
            let id = t.id as u64;
            calls.push((libc::SYS_timer_gettime, "timer_gettime", [id, sp, 0, 0]));
            calls.push((
                libc::SYS_timer_getoverrun,
                "timer_getoverrun",
                [id, 0, 0, 0],
            ));
        }
    }
    for (nr, name, [a0, a1, a2, a3]) in calls {
        let data = crate::seccomp::SeccompData {
            nr: nr as i32,
            arch: crate::seccomp::AUDIT_ARCH_X86_64,
            instruction_pointer: ip,
            args: [a0, a1, a2, a3, 0, 0],
        };
        let programs = sc.filters.iter().map(|f| f.program.as_slice());
        let verdict = crate::seccomp::allows(programs, &data).map_err(|e| TaskError::Read {
            pid,
            what: "a seccomp filter",
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        if let Err(ret) = verdict {
            return Err(TaskError::SeccompDenies {
                pid,
                tid: thread.tid,
                call: format!("{name}({a0}, ...)"),
                action: crate::seccomp::action_name(ret),
            });
        }
    }
    Ok(())
}

/// What `/proc/PID/task/TID/` shows of one thread that a program sets and relies on:
/// its name, its credentials where they differ from the process's (`process`), its
/// no_new_privs bit, its seccomp mode and filters (`PTRACE_SECCOMP_GET_FILTER`, oldest
/// first), its personality where it differs from the process's (`process_personality`),
/// its timer slack (`/proc/TID/timerslack_ns`).
fn thread_state(
    pid: i32,
    thread: &mut proto::Thread,
    process: &proto::Creds,
    process_personality: u32,
) -> Result<(), TaskError> {
    let tid = thread.tid;
    let task = |name: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{name}")).map_err(|source| {
            TaskError::Read {
                pid,
                what: "/proc/PID/task/TID",
                source,
            }
        })
    };
    let status = task("status")?;
    thread.comm = task("comm")?.trim_end_matches('\n').to_owned();
    let mut creds = creds_from_status(&status).ok_or_else(|| parse_error(pid, "task status"))?;
    creds.not_dumpable = process.not_dumpable;
    if creds != *process {
        thread.creds = Some(creds);
    }
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| parse_error(pid, "task status"))
    };
    thread.no_new_privs = field("NoNewPrivs:")? != 0;
    let persona = u32::from_str_radix(task("personality")?.trim(), 16)
        .map_err(|_| parse_error(pid, "task personality"))?;
    thread.personality = (persona != process_personality).then_some(persona);
    let mode = field("Seccomp:")? as u32;
    if mode != 0 {
        let mut filters = Vec::new();
        if mode == 2 {
            let count = field("Seccomp_filters:")?;
            let t = nix::unistd::Pid::from_raw(tid);
            let fail = |op| {
                move |source| TaskError::Ptrace {
                    pid,
                    tid,
                    op,
                    source,
                }
            };
            // Index 0 is the oldest (`get_nth_filter` in kernel/seccomp.c counts from
            // the first installed, whatever ptrace(2) says).
            for index in 0..count {
                let program = sys_ptrace::seccomp_filter(t, index)
                    .map_err(fail("PTRACE_SECCOMP_GET_FILTER"))?;
                let flags = sys_ptrace::seccomp_filter_flags(t, index)
                    .map_err(fail("PTRACE_SECCOMP_GET_METADATA"))?;
                filters.push(proto::SeccompFilter { program, flags });
            }
        }
        thread.seccomp = Some(proto::Seccomp { mode, filters });
    }
    // Only /proc/TID has it (not /proc/PID/task/TID).
    let slack =
        std::fs::read_to_string(format!("/proc/{tid}/timerslack_ns")).map_err(|source| {
            TaskError::Read {
                pid,
                what: "/proc/TID/timerslack_ns",
                source,
            }
        })?;
    thread.timer_slack_ns = slack
        .trim()
        .parse()
        .map_err(|_| parse_error(pid, "timerslack_ns"))?;
    Ok(())
}

/// All resource limits of `pid`, from prlimit(2); from `/proc/PID/limits` when prlimit is
/// refused (reading another user's limits needs `CAP_SYS_RESOURCE`, the file does not).
fn rlimits(pid: i32) -> Result<Vec<proto::Rlimit>, TaskError> {
    let target = to_pid(pid, pid)?;
    let mut rlimits = Vec::with_capacity(RLIMIT_NLIMITS as usize);
    for resource in 0..RLIMIT_NLIMITS {
        let (soft, hard) = match rlimit::get_rlimit(target, resource) {
            Ok(limit) => limit,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return limits_file(&read(pid, "limits")?)
                    .ok_or_else(|| parse_error(pid, "limits"));
            }
            Err(source) => {
                return Err(TaskError::Ptrace {
                    pid,
                    tid: pid,
                    op: "prlimit",
                    source,
                });
            }
        };
        rlimits.push(proto::Rlimit {
            resource,
            soft,
            hard,
        });
    }
    Ok(rlimits)
}

/// Parses a `/proc/PID/limits` text: a header, then one line per resource in `RLIMIT_*`
/// order, the name in the first 26 columns, then the soft and hard limits (`unlimited`
/// for `RLIM_INFINITY`).
fn limits_file(text: &str) -> Option<Vec<proto::Rlimit>> {
    let value = |v: &str| match v {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    let rlimits: Vec<proto::Rlimit> = text
        .lines()
        .skip(1)
        .zip(0..RLIMIT_NLIMITS)
        .map(|(line, resource)| {
            let mut words = line.get(26..)?.split_whitespace();
            Some(proto::Rlimit {
                resource,
                soft: value(words.next()?)?,
                hard: value(words.next()?)?,
            })
        })
        .collect::<Option<_>>()?;
    (rlimits.len() == RLIMIT_NLIMITS as usize).then_some(rlimits)
}

/// One injection session per thread: the first thread also reads the process's handlers
/// and timers, so no thread is taken over twice. Each session's reads are one batch, run
/// by the batch code in one ptrace stop where it can ([`Injector::run_reads`]); `code`
/// is mapped by the first session that can use it and unmapped by the last. `masks`:
/// the process's `SigCgt` and `SigIgn` and the leader's `SigBlk`.
fn read_injected(
    process: &FrozenProcess,
    threads: &mut [proto::Thread],
    mut code: CodePage,
    masks: (u64, u64, u64),
    timers: &[crate::proc::ProcTimer],
    children: &[i32],
) -> Result<(ProcessReads, Vec<(u32, i32)>), TaskError> {
    let pid = process.pid;
    let (caught, ignored, leader_blocked) = masks;
    let mut out = (
        (Vec::new(), Vec::new(), Vec::new()),
        calls::ProcessPrctls::default(),
        Vec::new(),
    );
    let mut per_thread = Vec::with_capacity(threads.len());
    let count = threads.len();
    let mut sessions = || -> Result<(), TaskError> {
        for (i, thread) in threads.iter_mut().enumerate() {
            let mut inj = Injector::new(pid, thread.tid)?;
            let read = (|| {
                // Only reads: one ptrace stop per call instead of two where that is safe,
                // and the batch code under the same condition.
                if thread.tid == pid {
                    // The leader's status is the process's, read after the freeze.
                    inj.use_single_step_given(SigMask(ignored), SigMask(leader_blocked));
                } else {
                    inj.use_single_step()?;
                }
                let mut reads = ReadBatch::new();
                let links = thread_links(&mut reads);
                let prctls = calls::read_thread_prctls(&mut reads);
                let rings =
                    may_probe_rings(thread).then(|| calls::read_registered_rings(&mut reads));
                let process = (i == 0).then(|| {
                    let handlers = handlers_and_timers(&mut reads, caught, ignored, timers);
                    let prctls = calls::read_process_prctls(&mut reads);
                    let reports: Vec<(i32, Pending<Option<i32>>)> = children
                        .iter()
                        .map(|&c| (c, calls::read_child_report(&mut reads, c)))
                        .collect();
                    (handlers, prctls, reports)
                });
                let done = inj.run_reads(&reads, &mut code, i + 1 == count)?;
                let links = links.get(&done)?;
                let prctls = prctls.get(&done)?;
                let rings = match rings {
                    Some(rings) => rings.get(&done)?,
                    None => Vec::new(),
                };
                let process = match process {
                    Some((handlers, prctls, reports)) => {
                        let mut saved = Vec::new();
                        for (child, report) in reports {
                            if let Some(code) = report.get(&done)? {
                                saved.push(proto::ChildReport { pid: child, code });
                            }
                        }
                        Some((handlers.get(&done)?, prctls.get(&done)?, saved))
                    }
                    None => None,
                };
                Ok::<_, InjectError>((links, prctls, process, rings))
            })();
            let finished = inj.finish();
            let ((clear_child_tid, altstack), prctls, process, rings) = read?;
            finished?;
            if let Some(&index) = rings.first() {
                return Err(TaskError::IoUringRegistered {
                    pid,
                    tid: thread.tid,
                    index,
                });
            }
            thread.clear_child_tid = clear_child_tid;
            thread.altstack = Some(altstack);
            per_thread.push(prctls);
            if let Some(process) = process {
                out = process;
            }
        }
        Ok(())
    };
    let read = sessions();
    if read.is_err() && code.mapped().is_some() {
        // A failed dump leaves the tree as it was: the batch code goes too, from whichever
        // thread can still be driven.
        for &tid in &process.threads {
            let Ok(mut inj) = Injector::new(pid, tid) else {
                continue;
            };
            let unmapped = inj.unmap_code(&mut code);
            if inj.finish().is_ok() && unmapped.is_ok() {
                break;
            }
        }
    }
    read?;
    Ok((out, per_thread))
}

/// What the first thread's session reads of its process: handlers and timers, the prctl
/// settings, and the wait reports its parent has yet to collect.
type ProcessReads = (
    HandlersAndTimers,
    calls::ProcessPrctls,
    Vec<proto::ChildReport>,
);

/// The credentials in `/proc/PID/status`, and whether the process is dumpable (see
/// `Creds.not_dumpable` in core.proto).
fn creds(pid: i32, status: &str) -> Result<proto::Creds, TaskError> {
    let mut creds = creds_from_status(status).ok_or_else(|| parse_error(pid, "status"))?;
    // The kernel gives the files of a process that is not dumpable to root; those of a
    // dumpable one to its effective ids. For euid 0 both are root: taken as dumpable.
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .map_err(|source| TaskError::Read {
            pid,
            what: "/proc/PID/status",
            source,
        })?;
    creds.not_dumpable = creds.euid != 0 && owner == 0;
    Ok(creds)
}

/// Parses the `Uid:`, `Gid:`, `Groups:` and `Cap*:` lines of a `/proc/PID/status` text
/// (`not_dumpable` false); `None` when one is missing or malformed.
pub(crate) fn creds_from_status(status: &str) -> Option<proto::Creds> {
    let line = |key: &str| status.lines().find_map(|l| l.strip_prefix(key));
    let ids = |key: &str| -> Option<[u32; 4]> {
        let v: Vec<u32> = line(key)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        v.try_into().ok()
    };
    let cap = |key: &str| u64::from_str_radix(line(key)?.trim(), 16).ok();
    let [ruid, euid, suid, fsuid] = ids("Uid:")?;
    let [rgid, egid, sgid, fsgid] = ids("Gid:")?;
    let groups = line("Groups:")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(proto::Creds {
        ruid,
        euid,
        suid,
        fsuid,
        rgid,
        egid,
        sgid,
        fsgid,
        groups,
        cap_inheritable: cap("CapInh:")?,
        cap_permitted: cap("CapPrm:")?,
        cap_effective: cap("CapEff:")?,
        cap_bounding: cap("CapBnd:")?,
        // Kernels before 4.3 have no ambient set.
        cap_ambient: cap("CapAmb:").unwrap_or(0),
        not_dumpable: false,
    })
}

/// The siginfo of the signal thread `tid` is stopped delivering (`PTRACE_GETSIGINFO`),
/// as a pending signal to save.
pub fn intercepted_siginfo(
    pid: i32,
    tid: i32,
    signal: nix::sys::signal::Signal,
) -> Result<proto::Siginfo, TaskError> {
    let info = nix::sys::ptrace::getsiginfo(nix::unistd::Pid::from_raw(tid)).map_err(|e| {
        TaskError::Ptrace {
            pid,
            tid,
            op: "PTRACE_GETSIGINFO",
            source: io::Error::from_raw_os_error(e as i32),
        }
    })?;
    let mut saved = siginfo(&info);
    saved.signo = signal as i32;
    Ok(saved)
}

/// The value of a line of `/proc/PID/status` (`Seccomp:`, ...), trimmed.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// A signal mask line of `/proc/PID/status` (`SigCgt:`, `SigIgn:`, ...), in hex.
fn status_mask(pid: i32, status: &str, key: &'static str) -> Result<u64, TaskError> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| parse_error(pid, "status"))
}

/// The process's signal handlers, interval timers and POSIX timers, added to a session's
/// batch: `rt_sigaction` for the caught signals and `SIGCHLD`, the three `getitimer`, and
/// `timer_gettime` and `timer_getoverrun` for each timer `/proc/PID/timers` listed.
fn handlers_and_timers(
    reads: &mut ReadBatch,
    caught: u64,
    ignored: u64,
    listed: &[crate::proc::ProcTimer],
) -> Pending<HandlersAndTimers> {
    // Caught signals need their handler, flags and mask; SIGCHLD also its flags
    // (SA_NOCLDWAIT changes reaping even under SIG_DFL). Every other signal is
    // ignored or default, which SigIgn tells.
    let read = caught | 1u64 << (libc::SIGCHLD - 1);
    let actions = calls::read_sigactions(reads, read);
    let itimers = calls::read_itimers(reads);
    let posix: Vec<_> = listed
        .iter()
        .map(|t| {
            let spec = calls::read_timer_gettime(reads, t.id);
            let overrun = calls::read_timer_getoverrun(reads, t.id);
            (*t, spec, overrun)
        })
        .collect();
    Pending::new(move |done| {
        let mut actions: Vec<proto::SigAction> = actions
            .get(done)?
            .into_iter()
            .filter(|a| a.handler != SigHandler::Default || !a.flags.is_empty())
            .map(|a| proto::SigAction {
                signo: a.signo,
                handler: a.handler.raw(),
                flags: a.flags.bits(),
                restorer: a.restorer,
                mask: a.mask.0,
            })
            .collect();
        actions.extend(
            (1..=64)
                .filter(|&s| ignored & !read & (1u64 << (s - 1)) != 0)
                .map(|signo| proto::SigAction {
                    signo,
                    handler: 1,
                    ..Default::default()
                }),
        );
        actions.sort_by_key(|a| a.signo);
        let timers = itimers
            .get(done)?
            .into_iter()
            .filter(|t| t.value_us != 0)
            .map(|t| proto::ITimer {
                which: t.which,
                interval_us: t.interval_us,
                value_us: t.value_us,
            })
            .collect();
        let mut out = Vec::with_capacity(posix.len());
        for (t, spec, overrun) in posix {
            let spec = spec.get(done)?;
            out.push(proto::PosixTimer {
                id: t.id,
                clock: t.clock,
                notify: t.notify,
                signo: t.signo,
                value: t.value,
                target: t.target,
                interval_ns: spec.interval_ns,
                value_ns: spec.value_ns,
                overrun: overrun.get(done)?,
            });
        }
        Ok((actions, timers, out))
    })
}

/// What [`handlers_and_timers`] reads: handlers, interval timers, POSIX timers.
type HandlersAndTimers = (
    Vec<proto::SigAction>,
    Vec<proto::ITimer>,
    Vec<proto::PosixTimer>,
);

/// Saves one stopped thread: registers, XSAVE area, blocked mask, pending signals, rseq.
pub fn dump_thread(pid: i32, tid: i32) -> Result<proto::Thread, TaskError> {
    let t = nix::unistd::Pid::from_raw(tid);
    let fail = |op| {
        move |source| TaskError::Ptrace {
            pid,
            tid,
            op,
            source,
        }
    };
    let regs = x86_64_regs(t).map_err(fail("PTRACE_GETREGSET NT_PRSTATUS"))?;
    let xsave = sys_ptrace::get_xstate(t).map_err(fail("PTRACE_GETREGSET NT_X86_XSTATE"))?;
    let blocked = sys_ptrace::get_sigmask(t).map_err(fail("PTRACE_GETSIGMASK"))?;
    let pending =
        sys_ptrace::peek_siginfo(t, SigQueue::Thread).map_err(fail("PTRACE_PEEKSIGINFO"))?;
    let rseq = match sys_ptrace::rseq_configuration(t) {
        Ok(c) if c.abi_pointer != 0 => Some(proto::Rseq {
            address: c.abi_pointer,
            length: c.abi_size,
            signature: c.signature,
            flags: c.flags,
        }),
        Ok(_) => None,
        // Kernels before 5.13 do not know the request: no rseq to save there either way.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => None,
        Err(e) => return Err(fail("PTRACE_GET_RSEQ_CONFIGURATION")(e)),
    };
    let (robust_list, robust_list_len) =
        sys_ptrace::robust_list(t).map_err(fail("get_robust_list"))?;
    Ok(proto::Thread {
        tid,
        regs: Some(proto::thread::Regs::X8664(regs)),
        xsave,
        blocked: blocked.0,
        pending: pending.iter().map(siginfo).collect(),
        rseq,
        robust_list,
        robust_list_len,
        clear_child_tid: 0,
        altstack: None,
        ..Default::default()
    })
}

/// `prctl(PR_GET_TID_ADDRESS, &addr)` and `sigaltstack(NULL, &old)`, added to a thread's
/// batch: its `clear_child_tid` address and its alternate signal stack, which no `/proc`
/// file shows.
fn thread_links(reads: &mut ReadBatch) -> Pending<(u64, proto::SigAltStack)> {
    let tid_address = calls::read_tid_address(reads);
    let alt = calls::read_sigaltstack(reads);
    Pending::new(move |done| {
        let alt = alt.get(done)?;
        Ok((
            tid_address.get(done)?,
            proto::SigAltStack {
                sp: alt.sp,
                flags: alt.flags as u32,
                size: alt.size,
            },
        ))
    })
}

/// The general registers (`struct user_regs_struct`, NT_PRSTATUS).
fn x86_64_regs(t: nix::unistd::Pid) -> io::Result<proto::X86Regs> {
    let r = nix::sys::ptrace::getregset::<nix::sys::ptrace::regset::NT_PRSTATUS>(t)?;
    Ok(crate::arch::x86_64::to_saved(&r))
}

fn siginfo(info: &libc::siginfo_t) -> proto::Siginfo {
    proto::Siginfo {
        signo: info.si_signo,
        raw: sys_ptrace::siginfo_bytes(info).to_vec(),
    }
}

/// The signals queued for the whole process, oldest first, without dequeuing them.
fn shared_pending(pid: i32) -> Result<Vec<proto::Siginfo>, TaskError> {
    let queued = sys_ptrace::peek_siginfo(nix::unistd::Pid::from_raw(pid), SigQueue::Shared)
        .map_err(|source| TaskError::Ptrace {
            pid,
            tid: pid,
            op: "PTRACE_PEEKSIGINFO_SHARED",
            source,
        })?;
    Ok(queued.iter().map(siginfo).collect())
}

fn read(pid: i32, name: &'static str) -> Result<String, TaskError> {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).map_err(|source| TaskError::Read {
        pid,
        what: name,
        source,
    })
}

fn link(pid: i32, name: &'static str) -> Result<String, TaskError> {
    std::fs::read_link(format!("/proc/{pid}/{name}"))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|source| TaskError::Read {
            pid,
            what: name,
            source,
        })
}

fn parse_error(pid: i32, what: &'static str) -> TaskError {
    TaskError::Read {
        pid,
        what,
        source: io::Error::new(io::ErrorKind::InvalidData, "unexpected format"),
    }
}

fn to_pid(pid: i32, tid: i32) -> Result<Pid, TaskError> {
    Pid::from_raw(tid).ok_or(TaskError::Ptrace {
        pid,
        tid,
        op: "a thread id",
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_file_matches_prlimit() {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let parsed = limits_file(&text).unwrap();
        let me = Pid::from_raw(std::process::id() as i32).unwrap();
        for r in parsed {
            assert_eq!(
                rlimit::get_rlimit(me, r.resource).unwrap(),
                (r.soft, r.hard),
                "resource {}",
                r.resource
            );
        }
    }

    #[test]
    fn creds_are_parsed_from_status() {
        let status = "Name:\tx\nUid:\t1000\t1003\t1004\t1003\nGid:\t1000\t1001\t1002\t1001\n\
                      Groups:\t1001 1002 \nCapInh:\t0000000000000400\n\
                      CapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n\
                      CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let c = creds_from_status(status).unwrap();
        assert_eq!((c.ruid, c.euid, c.suid, c.fsuid), (1000, 1003, 1004, 1003));
        assert_eq!((c.rgid, c.egid, c.sgid, c.fsgid), (1000, 1001, 1002, 1001));
        assert_eq!(c.groups, [1001, 1002]);
        assert_eq!((c.cap_effective, c.cap_bounding), (0x400, 0x1ff_ffff_ffff));
        assert!(creds_from_status("Uid:\t1 2 3\n").is_none());
    }
}
