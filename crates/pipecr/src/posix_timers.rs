//! Which POSIX timers (`timer_create`) pipecr can create again, written once for both
//! sides: the dump refuses a process holding any other ([`crate::task::dump_core`]), so a
//! default dump never kills a program its restore would then refuse; the restore
//! preflight refuses one found in an image (`restore::timers::check`). Also the kernel's
//! encoding of a clock id, which the rule reads.
//!
//! A timer can be created again when the restored process can name its clock and its
//! target itself: a clock by number, the process's own CPU-time clock, or the CPU-time
//! clock of one of its threads that `/proc/PID/timers` identifies; a known notification
//! with a signal; a target thread among the process's threads.

use pipecr_image::proto;

use crate::proc::ProcTimer;

/// The clocks a timer may use by number (`<linux/time.h>`): `CLOCK_REALTIME`,
/// `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME`, `CLOCK_REALTIME_ALARM`, `CLOCK_BOOTTIME_ALARM`,
/// `CLOCK_TAI`.
const TIMER_CLOCKS: [i32; 6] = [0, 1, 7, 8, 9, 11];

/// `CPUCLOCK_PERTHREAD_MASK` and `CLOCKFD` of a CPU-time clock id
/// (`include/linux/posix-timers.h`): the low three bits say per-thread and which clock,
/// the rest is the complement of the pid (0: the caller).
const CPUCLOCK_PERTHREAD: i32 = 4;
const CLOCKFD: i32 = 3;

/// A POSIX timer pipecr cannot create again in a restored process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pid {pid}: POSIX timer {id} cannot be restored: {why}")]
pub struct Unrestorable {
    /// The process that holds it.
    pub pid: i32,
    /// The timer's ID (`timer_t`).
    pub id: i32,
    /// Why it cannot be created again.
    pub why: String,
}

/// What decides whether a timer can be created again: what `/proc/PID/timers` lists and
/// the image saves, without its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerIdentity {
    /// The timer's ID.
    pub id: i32,
    /// The clock id, as the kernel stores it.
    pub clock: i32,
    /// `sigev_notify`, with `SIGEV_THREAD_ID` when aimed at a thread.
    pub notify: i32,
    /// `sigev_signo`.
    pub signo: i32,
    /// The process or thread it notifies.
    pub target: i32,
}

impl From<&ProcTimer> for TimerIdentity {
    fn from(t: &ProcTimer) -> Self {
        TimerIdentity {
            id: t.id,
            clock: t.clock,
            notify: t.notify,
            signo: t.signo,
            target: t.target,
        }
    }
}

impl From<&proto::PosixTimer> for TimerIdentity {
    fn from(t: &proto::PosixTimer) -> Self {
        TimerIdentity {
            id: t.id,
            clock: t.clock,
            notify: t.notify,
            signo: t.signo,
            target: t.target,
        }
    }
}

/// Checks that `timer`, held by process `pid` whose threads are `tids`, can be created
/// again inside the restored process: a known clock (see `clock`), a known notification,
/// a signal, and a target thread among `tids`.
pub fn check(pid: i32, tids: &[i32], timer: impl Into<TimerIdentity>) -> Result<(), Unrestorable> {
    let t = timer.into();
    let refuse = |why: String| Unrestorable { pid, id: t.id, why };
    clock(t.clock, pid, tids).map_err(refuse)?;
    let how = t.notify & !libc::SIGEV_THREAD_ID;
    if ![libc::SIGEV_SIGNAL, libc::SIGEV_NONE, libc::SIGEV_THREAD].contains(&how) {
        return Err(refuse(format!("notification {}", t.notify)));
    }
    if how != libc::SIGEV_NONE && !(1..=64).contains(&t.signo) {
        return Err(refuse(format!("signal {}", t.signo)));
    }
    if t.notify & libc::SIGEV_THREAD_ID != 0 && !tids.contains(&t.target) {
        return Err(refuse(format!(
            "it is aimed at thread {}, which is not one of the process's threads {tids:?}",
            t.target
        )));
    }
    Ok(())
}

/// Whether a timer on `clock` can be created again inside process `pid` (threads
/// `tids`): the clocks by number, and the CPU-time clocks of the process itself or of one
/// of its threads. `Err` says why not.
fn clock(clock: i32, pid: i32, tids: &[i32]) -> Result<(), String> {
    if clock >= 0 {
        return match TIMER_CLOCKS.contains(&clock) {
            true => Ok(()),
            false => Err(format!("unknown clock {clock}")),
        };
    }
    if clock & CLOCKFD == CLOCKFD {
        return Err(format!(
            "it runs on the clock of a descriptor (clock id {clock})"
        ));
    }
    let owner = !(clock >> 3);
    if clock & CPUCLOCK_PERTHREAD == 0 {
        // The process's own CPU time: by pid 0 (itself) or its own pid.
        return match owner == 0 || owner == pid {
            true => Ok(()),
            false => Err(format!(
                "it runs on the CPU-time clock of another process, {owner} (clock id {clock})"
            )),
        };
    }
    match owner {
        // The CPU time of "the calling thread": the one that created it, which
        // /proc/PID/timers does not name; only a lone thread is unambiguous.
        0 if tids.len() == 1 => Ok(()),
        0 => Err(format!(
            "it runs on the CPU-time clock of the thread that created it (clock id {clock}), \
             and in a process of {} threads /proc/{pid}/timers does not say which thread \
             that is",
            tids.len()
        )),
        t if tids.contains(&t) => Ok(()),
        t => Err(format!(
            "it runs on the CPU-time clock of thread {t} (clock id {clock}), which is not \
             one of the process's threads"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(clock: i32, notify: i32, target: i32) -> TimerIdentity {
        TimerIdentity {
            id: 3,
            clock,
            notify,
            signo: 40,
            target,
        }
    }

    #[test]
    fn a_refusal_names_the_process_the_timer_and_why() {
        let aimed = timer(1, libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID, 101);
        assert_eq!(check(100, &[100, 101], aimed), Ok(()));
        let err = check(100, &[100], aimed).unwrap_err();
        assert_eq!((err.pid, err.id), (100, 3));
        assert_eq!(
            err.to_string(),
            "pid 100: POSIX timer 3 cannot be restored: it is aimed at thread 101, which is \
             not one of the process's threads [100]"
        );
        let thread_cpu = timer(-2, libc::SIGEV_SIGNAL, 100);
        assert_eq!(
            check(100, &[100, 101], thread_cpu).unwrap_err().to_string(),
            "pid 100: POSIX timer 3 cannot be restored: it runs on the CPU-time clock of the \
             thread that created it (clock id -2), and in a process of 2 threads \
             /proc/100/timers does not say which thread that is"
        );
        assert!(
            check(100, &[100], timer(1, 7, 100)).is_err(),
            "notification 7"
        );
        let no_signal = TimerIdentity {
            signo: 0,
            ..timer(1, libc::SIGEV_SIGNAL, 100)
        };
        assert!(check(100, &[100], no_signal).is_err());
        let silent = TimerIdentity {
            signo: 0,
            ..timer(1, libc::SIGEV_NONE, 100)
        };
        assert_eq!(check(100, &[100], silent), Ok(()));
    }

    #[test]
    fn clocks() {
        let pid = 100;
        assert!(clock(1, pid, &[100]).is_ok());
        assert!(clock(5, pid, &[100]).is_err());
        // CLOCK_PROCESS_CPUTIME_ID as the kernel stores it, and the process's own by pid.
        assert!(clock(-6, pid, &[100, 101]).is_ok());
        assert!(clock((!100 << 3) | 2, pid, &[100]).is_ok());
        assert!(clock((!7 << 3) | 2, pid, &[100]).is_err());
        // CLOCK_THREAD_CPUTIME_ID: only in a lone thread; a named thread of its own.
        assert!(clock(-2, pid, &[100]).is_ok());
        assert!(clock(-2, pid, &[100, 101]).is_err());
        assert!(clock((!101 << 3) | 6, pid, &[100, 101]).is_ok());
        assert!(clock((!3 << 3) | 3, pid, &[100]).is_err());
    }
}
