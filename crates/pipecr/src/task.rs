//! The state of a stopped process other than its memory and descriptors, turned into a
//! [`proto::Core`]: per thread the registers (general and XSAVE), the blocked mask, the
//! pending signals and the rseq registration; per process cwd, root, umask, resource
//! limits, personality and the process-wide pending signals.
//!
//! Signal handlers and interval timers have no `/proc` interface: when asked, they are
//! read by injecting `getitimer` into every process, and `rt_sigaction` into those whose
//! `/proc/PID/status` says they catch a signal (`SigCgt`); ignored signals come from
//! `SigIgn` without injection ([`crate::inject`]).
//!
//! Also what cannot be saved yet is refused here, naming the process:
//! [`TaskError::PosixTimers`].
//!
//! The ptrace requests must come from the thread that froze the tree (ptrace belongs to
//! the attaching *thread*, see [`crate::freeze`]): call [`dump_core`] on that thread,
//! while the [`crate::freeze::FrozenTree`] is alive.

use std::io;

use pipecr_image::proto;
use rustix::process::Pid;

use crate::freeze::FrozenProcess;
use crate::inject::{self, InjectError, Injector, SigHandler};
use crate::sys::ptrace::{self as sys_ptrace, SigQueue};
use crate::sys::rlimit;

/// Number of resource limits (`RLIMIT_NLIMITS`).
const RLIMIT_NLIMITS: u32 = 16;

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
    /// The process has POSIX timers (timer_create), which pipecr cannot save yet.
    #[error(
        "pid {pid} has {count} POSIX timer(s) (/proc/{pid}/timers); saving them is not supported yet"
    )]
    PosixTimers {
        /// The process.
        pid: i32,
        /// How many.
        count: usize,
    },
    /// A syscall injected to read signal handlers or interval timers failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
}

/// Saves the state of the stopped process `process` (see the module documentation).
/// Signal handlers and interval timers only with `read_handlers`, which injects syscalls
/// (see [`crate::files::DumpOptions::read_handlers`] for the risk that carries).
///
/// Refuses with [`TaskError::PosixTimers`] a process that has POSIX timers.
pub fn dump_core(process: &FrozenProcess, read_handlers: bool) -> Result<proto::Core, TaskError> {
    let pid = process.pid;
    let timers = posix_timers(pid)?;
    if timers > 0 {
        return Err(TaskError::PosixTimers { pid, count: timers });
    }
    let status = read(pid, "status")?;
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .ok_or_else(|| parse_error(pid, "status"))?;
    let personality = u32::from_str_radix(read(pid, "personality")?.trim(), 16)
        .map_err(|_| parse_error(pid, "personality"))?;
    let target = to_pid(pid, pid)?;
    let mut rlimits = Vec::with_capacity(RLIMIT_NLIMITS as usize);
    for resource in 0..RLIMIT_NLIMITS {
        let (soft, hard) =
            rlimit::get_rlimit(target, resource).map_err(|source| TaskError::Ptrace {
                pid,
                tid: pid,
                op: "prlimit",
                source,
            })?;
        rlimits.push(proto::Rlimit {
            resource,
            soft,
            hard,
        });
    }
    let mut threads = Vec::with_capacity(process.threads.len());
    for &tid in &process.threads {
        threads.push(dump_thread(pid, tid)?);
    }
    let (sigactions, itimers) = if read_handlers {
        for thread in &mut threads {
            thread.clear_child_tid = clear_child_tid(pid, thread.tid)?;
        }
        handlers_and_timers(process, &status)?
    } else {
        (Vec::new(), Vec::new())
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

/// A signal mask line of `/proc/PID/status` (`SigCgt:`, `SigIgn:`, ...), in hex.
fn status_mask(pid: i32, status: &str, key: &'static str) -> Result<u64, TaskError> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| parse_error(pid, "status"))
}

/// The signal dispositions other than `SIG_DFL`, and the armed interval timers.
///
/// Each injected syscall costs a few ptrace stops, so the 62 `rt_sigaction` calls are made
/// only when the status shows a caught signal: otherwise the ignored signals are all
/// `SigIgn` says. The three interval timers are read in every process: an armed
/// `ITIMER_REAL` matters even to a process that catches nothing (its `SIGALRM` kills it).
fn handlers_and_timers(
    process: &FrozenProcess,
    status: &str,
) -> Result<(Vec<proto::SigAction>, Vec<proto::ITimer>), TaskError> {
    let pid = process.pid;
    let caught = status_mask(pid, status, "SigCgt:")?;
    let ignored = status_mask(pid, status, "SigIgn:")?;
    let tid = process.threads.first().copied().unwrap_or(pid);
    let mut inj = Injector::new(pid, tid)?;
    let read = (|| {
        let actions = if caught != 0 {
            inject::sigactions(&mut inj)?
                .into_iter()
                .filter(|a| a.handler != SigHandler::Default)
                .map(|a| proto::SigAction {
                    signo: a.signo,
                    handler: a.handler.raw(),
                    flags: a.flags.bits(),
                    restorer: a.restorer,
                    mask: a.mask.0,
                })
                .collect()
        } else {
            (1..=64)
                .filter(|&s| ignored & (1u64 << (s - 1)) != 0)
                .map(|signo| proto::SigAction {
                    signo,
                    handler: 1,
                    ..Default::default()
                })
                .collect()
        };
        let timers = inject::itimers(&mut inj)?
            .into_iter()
            .filter(|t| t.value_us != 0)
            .map(|t| proto::ITimer {
                which: t.which,
                interval_us: t.interval_us,
                value_us: t.value_us,
            })
            .collect();
        Ok::<_, InjectError>((actions, timers))
    })();
    let finished = inj.finish();
    let out = read?;
    finished?;
    Ok(out)
}

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
    })
}

/// `prctl(PR_GET_TID_ADDRESS, &addr)` injected into thread `tid` (in a ptrace-stop of
/// the calling thread): its `clear_child_tid` address, which no `/proc` file shows.
fn clear_child_tid(pid: i32, tid: i32) -> Result<u64, TaskError> {
    let mut inj = Injector::new(pid, tid)?;
    let read = inject::tid_address(&mut inj);
    let finished = inj.finish();
    let out = read?;
    finished?;
    Ok(out)
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

/// How many POSIX timers `/proc/PID/timers` lists (one `ID:` line each).
pub fn posix_timers(pid: i32) -> Result<usize, TaskError> {
    match std::fs::read_to_string(format!("/proc/{pid}/timers")) {
        Ok(text) => Ok(text.lines().filter(|l| l.starts_with("ID:")).count()),
        // Without CONFIG_CHECKPOINT_RESTORE the file does not exist: timers cannot be
        // seen, so nothing can be refused.
        Err(e) if e.kind() == io::ErrorKind::NotFound && exists(pid) => Ok(0),
        Err(source) => Err(TaskError::Read {
            pid,
            what: "/proc/PID/timers",
            source,
        }),
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

fn exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
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
