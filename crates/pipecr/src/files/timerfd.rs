//! timerfds (`timerfd_create(2)`): the clock, the settime flags (`TFD_TIMER_ABSTIME`,
//! `TFD_TIMER_CANCEL_ON_SET`), the interval, the next expiry and the expirations counted
//! but not yet read, all read from `/proc/PID/fdinfo/N` without reading the timer.
//!
//! The kernel re-arms an expired periodic timer only when it is next read or queried, so
//! until then fdinfo shows it with no time remaining and one tick for any number of
//! missed periods. The dump first asks `timerfd_gettime` on its own descriptor for the
//! same open file, which brings the timer up to date exactly as the program's next
//! `read` or `timerfd_gettime` would (a change the program cannot observe), then reads
//! fdinfo again.
//!
//! A relative timer is saved with the time that remained and restored to expire that
//! long after the restore. An absolute one (`TFD_TIMER_ABSTIME`) is saved with its
//! expiry on its clock (now + remaining) and restored absolute, so it fires at the same
//! moment (at once, if that moment passed). Unread expirations are set back with
//! `TFD_IOC_SET_TICKS`. Close-on-exec is the descriptor's, handled by the caller.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::OFlags;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use crate::proc::TimerFdInfo;

/// timerfds.
pub struct TimerFdKind;

/// The `/proc/PID/fd/N` link of a timerfd.
const LINK: &str = "anon_inode:[timerfd]";

/// `TFD_TIMER_ABSTIME`.
const ABSTIME: u32 = 1;
/// `TFD_TIMER_CANCEL_ON_SET`.
const CANCEL_ON_SET: u32 = 2;

const NANOS: u64 = 1_000_000_000;

/// The clocks a timerfd can run on, by number, with their names.
const CLOCKS: &[(i32, TimerfdClockId, &str)] = &[
    (0, TimerfdClockId::Realtime, "CLOCK_REALTIME"),
    (1, TimerfdClockId::Monotonic, "CLOCK_MONOTONIC"),
    (7, TimerfdClockId::Boottime, "CLOCK_BOOTTIME"),
    (8, TimerfdClockId::RealtimeAlarm, "CLOCK_REALTIME_ALARM"),
    (9, TimerfdClockId::BoottimeAlarm, "CLOCK_BOOTTIME_ALARM"),
];

/// The clock whose current time an absolute timer on clock `id` is compared with (an
/// alarm clock keeps the time of its base clock).
fn time_base(id: i32) -> Option<ClockId> {
    match id {
        0 | 8 => Some(ClockId::Realtime),
        1 => Some(ClockId::Monotonic),
        7 | 9 => Some(ClockId::Boottime),
        _ => None,
    }
}

fn to_nanos((sec, nsec): (u64, u32)) -> u128 {
    u128::from(sec) * u128::from(NANOS) + u128::from(nsec)
}

fn from_nanos(ns: u128) -> Option<(u64, u32)> {
    let sec = u64::try_from(ns / u128::from(NANOS)).ok()?;
    Some((sec, (ns % u128::from(NANOS)) as u32))
}

/// The one line [`FileKind::describe`] gives `pipecr show` for a saved timerfd, e.g.
/// `timerfd CLOCK_MONOTONIC, every 0.5s, next expiry in 0.2s, 3 expirations unread`.
fn text(k: &proto::TimerFd) -> String {
    let clock = CLOCKS.iter().find(|(n, _, _)| *n == k.clockid).map_or_else(
        || format!("clock {}", k.clockid),
        |(_, _, name)| (*name).to_owned(),
    );
    let secs = |sec: u64, nsec: u32| {
        let text = format!("{sec}.{nsec:09}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}s")
    };
    let mut out = format!("timerfd {clock}");
    if k.interval_sec != 0 || k.interval_nsec != 0 {
        out.push_str(&format!(
            ", every {}",
            secs(k.interval_sec, k.interval_nsec)
        ));
    }
    if k.value_sec == 0 && k.value_nsec == 0 {
        out.push_str(", disarmed");
    } else if k.settime_flags & ABSTIME != 0 {
        out.push_str(&format!(
            ", next expiry at {} on its clock (absolute)",
            secs(k.value_sec, k.value_nsec)
        ));
    } else {
        out.push_str(&format!(
            ", next expiry in {}",
            secs(k.value_sec, k.value_nsec)
        ));
    }
    if k.settime_flags & CANCEL_ON_SET != 0 {
        out.push_str(", cancelled if the clock is set");
    }
    let plural = if k.ticks == 1 { "" } else { "s" };
    out.push_str(&format!(", {} expiration{plural} unread", k.ticks));
    out
}

/// Sets the status flags `fcntl(F_SETFL)` can change, as saved.
fn set_status_flags(fd: BorrowedFd<'_>, file: &proto::OpenFile) -> Result<(), FileError> {
    let settable = OFlags::NONBLOCK | OFlags::ASYNC;
    rustix::fs::fcntl_setfl(fd, OFlags::from_bits_retain(file.flags) & settable).map_err(|e| {
        FileError::Restore {
            id: file.id,
            what: "timerfd".into(),
            op: "fcntl(F_SETFL)",
            source: e.into(),
        }
    })
}

impl TimerFdKind {
    /// Reads the timer's fdinfo after bringing an expired periodic timer up to date
    /// (see the module doc).
    fn settled(file: &LiveFile) -> Result<TimerFdInfo, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: LINK.into(),
            op,
            source,
        };
        let mut info = file
            .info
            .timerfd()
            .map_err(|key| fail("parse fdinfo", bad_line(key)))?;
        // A short period may expire again between the two calls; a few tries settle it
        // unless the period is shorter than they take.
        for _ in 0..4 {
            if !(info.ticks > 0 && info.value == (0, 0) && info.interval != (0, 0)) {
                break;
            }
            rustix::time::timerfd_gettime(&file.file)
                .map_err(|e| fail("timerfd_gettime", e.into()))?;
            let text = crate::proc::fdinfo(file.pid, file.fd)
                .map_err(|e| fail("read fdinfo", io::Error::other(e.to_string())))?;
            info = text
                .timerfd()
                .map_err(|key| fail("parse fdinfo", bad_line(key)))?;
        }
        Ok(info)
    }
}

fn bad_line(key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("no well-formed {key:?} line"),
    )
}

impl FileKind for TimerFdKind {
    fn name(&self) -> &'static str {
        "timerfd"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let info = Self::settled(file)?;
        let Some(base) = time_base(info.clockid) else {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("timerfd on clock {}", info.clockid),
            });
        };
        let mut value = info.value;
        if value == (0, 0) && info.interval != (0, 0) && info.ticks > 0 {
            // Expired and not yet re-armed, though `settled` tried: its next expiry is
            // one period away at most; say one period.
            value = info.interval;
        }
        if value != (0, 0) && info.settime_flags & ABSTIME != 0 {
            // The time remaining again, between two readings of the clock: fdinfo was
            // read a while ago, and the expiry is their middle plus what remains.
            let clock = || {
                let t = rustix::time::clock_gettime(base);
                to_nanos((t.tv_sec as u64, t.tv_nsec as u32))
            };
            let before = clock();
            let now = rustix::time::timerfd_gettime(&file.file).map_err(|e| FileError::Dump {
                pid: file.pid,
                fd: file.fd,
                what: LINK.into(),
                op: "timerfd_gettime",
                source: e.into(),
            })?;
            let after = clock();
            let remaining = (now.it_value.tv_sec as u64, now.it_value.tv_nsec as u32);
            if remaining != (0, 0) {
                value = remaining;
            }
            let now = before + (after - before) / 2;
            value = from_nanos(now + to_nanos(value)).ok_or_else(|| FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: "timerfd whose absolute expiry is out of range".into(),
            })?;
        }
        Ok(open_file::Kind::Timerfd(proto::TimerFd {
            clockid: info.clockid,
            settime_flags: info.settime_flags,
            interval_sec: info.interval.0,
            interval_nsec: info.interval.1,
            value_sec: value.0,
            value_nsec: value.1,
            ticks: info.ticks,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Timerfd(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Timerfd(t)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a timerfd".into(),
            });
        };
        let invalid = |reason: String| FileError::Invalid {
            id: file.id,
            reason,
        };
        let Some(&(_, clock, _)) = CLOCKS.iter().find(|(n, _, _)| *n == t.clockid) else {
            return Err(invalid(format!(
                "timerfd clock {} is not one a timerfd runs on",
                t.clockid
            )));
        };
        if t.settime_flags & !(ABSTIME | CANCEL_ON_SET) != 0 {
            return Err(invalid(format!(
                "timerfd settime flags {:#o}",
                t.settime_flags
            )));
        }
        let spec = |sec: u64, nsec: u32| -> Result<Timespec, FileError> {
            if u64::from(nsec) >= NANOS {
                return Err(invalid(format!(
                    "{nsec} nanoseconds is not less than a second"
                )));
            }
            Ok(Timespec {
                tv_sec: i64::try_from(sec)
                    .map_err(|_| invalid(format!("{sec} seconds is out of range")))?,
                tv_nsec: nsec.into(),
            })
        };
        let fail = |op, e: rustix::io::Errno| FileError::Restore {
            id: file.id,
            what: "timerfd".into(),
            op,
            source: e.into(),
        };
        let fd = rustix::time::timerfd_create(clock, TimerfdFlags::CLOEXEC)
            .map_err(|e| fail("timerfd_create", e))?;
        let new = Itimerspec {
            it_interval: spec(t.interval_sec, t.interval_nsec)?,
            it_value: spec(t.value_sec, t.value_nsec)?,
        };
        rustix::time::timerfd_settime(
            &fd,
            TimerfdTimerFlags::from_bits_retain(t.settime_flags),
            &new,
        )
        .map_err(|e| fail("timerfd_settime", e))?;
        if t.ticks != 0 {
            crate::sys::timerfd::set_ticks(fd.as_fd(), t.ticks).map_err(|source| {
                FileError::Restore {
                    id: file.id,
                    what: "timerfd".into(),
                    op: "ioctl(TFD_IOC_SET_TICKS) (needs CONFIG_CHECKPOINT_RESTORE)",
                    source,
                }
            })?;
        }
        set_status_flags(fd.as_fd(), file)?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Timerfd(k)) => text(k),
            _ => "not a timerfd".into(),
        };
        Description { text, pipe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pipecr show` prints for `k`, asked of the kind as show asks it.
    fn describe(k: &proto::TimerFd) -> String {
        let file = proto::OpenFile {
            kind: Some(open_file::Kind::Timerfd(*k)),
            ..Default::default()
        };
        let saved = Saved {
            processes: &[],
            tables: &[],
            files: &[],
            pipes: &[],
        };
        TimerFdKind.describe(&file, &saved).text
    }

    #[test]
    fn describe_names_clock_period_expiry_and_ticks() {
        let mut t = proto::TimerFd {
            clockid: 1,
            interval_nsec: 500_000_000,
            value_nsec: 200_000_000,
            ticks: 3,
            ..Default::default()
        };
        assert_eq!(
            describe(&t),
            "timerfd CLOCK_MONOTONIC, every 0.5s, next expiry in 0.2s, 3 expirations unread"
        );
        t = proto::TimerFd {
            clockid: 0,
            settime_flags: 3,
            value_sec: 4_000_000_000,
            ..Default::default()
        };
        assert_eq!(
            describe(&t),
            "timerfd CLOCK_REALTIME, next expiry at 4000000000s on its clock (absolute), \
             cancelled if the clock is set, 0 expirations unread"
        );
        t = proto::TimerFd {
            clockid: 8,
            ticks: 1,
            ..Default::default()
        };
        assert_eq!(
            describe(&t),
            "timerfd CLOCK_REALTIME_ALARM, disarmed, 1 expiration unread"
        );
    }
}
