//! The descriptors of event loops: timerfds on every clock (relative and periodic,
//! absolute, disarmed, fired with an unread expiration, cancel-on-set), a signalfd and
//! an inotify instance whose watch descriptors have a gap.
//!
//! Every expectation is certain, not a matter of timing: timers are set hours or years
//! ahead (or at fixed absolute moments no test run reaches), and the one expiration
//! counted is that of a 1-nanosecond one-shot timer the setup waits for.

use std::os::fd::{AsFd, RawFd};

use anyhow::Context as _;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

use crate::common::{Checker, Env, Scenario, at, place, write_all};

/// `event-fds`: see the module doc.
pub struct EventFds;

/// One timerfd of the scenario and what it must show.
struct Timer {
    fd: RawFd,
    clock: TimerfdClockId,
    /// The `clockid:` fdinfo prints.
    clockid: i32,
    nonblock: bool,
    /// `TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`.
    flags: TimerfdTimerFlags,
    /// it_value as given to timerfd_settime (absolute or relative), in seconds.
    value: i64,
    /// it_interval, nanoseconds.
    interval: i64,
}

const SEC: i64 = 1_000_000_000;

/// An absolute CLOCK_REALTIME moment no run reaches (2096).
const REALTIME_AT: i64 = 4_000_000_000;
/// An absolute CLOCK_BOOTTIME moment no machine reaches (31 years of uptime).
const BOOTTIME_AT: i64 = 1_000_000_000;

const TIMERS: [Timer; 5] = [
    Timer {
        fd: 10,
        clock: TimerfdClockId::Monotonic,
        clockid: 1,
        nonblock: true,
        flags: TimerfdTimerFlags::empty(),
        value: 1000,
        interval: SEC / 2,
    },
    Timer {
        fd: 11,
        clock: TimerfdClockId::Realtime,
        clockid: 0,
        nonblock: false,
        flags: TimerfdTimerFlags::ABSTIME.union(TimerfdTimerFlags::CANCEL_ON_SET),
        value: REALTIME_AT,
        interval: 0,
    },
    Timer {
        fd: 12,
        clock: TimerfdClockId::Boottime,
        clockid: 7,
        nonblock: true,
        flags: TimerfdTimerFlags::ABSTIME,
        value: BOOTTIME_AT,
        interval: 7 * SEC,
    },
    Timer {
        fd: 13,
        clock: TimerfdClockId::RealtimeAlarm,
        clockid: 8,
        nonblock: false,
        flags: TimerfdTimerFlags::empty(),
        // Disarmed: never set.
        value: 0,
        interval: 0,
    },
    Timer {
        fd: 14,
        clock: TimerfdClockId::BoottimeAlarm,
        clockid: 9,
        nonblock: true,
        flags: TimerfdTimerFlags::empty(),
        value: 2000,
        interval: 3 * SEC,
    },
];

/// The timerfd that fired once and was not read.
const FIRED: RawFd = 15;
const SIGNALFD: RawFd = 16;
const INOTIFY: RawFd = 17;
/// The watched directory, open, so that the checks reach it wherever it is.
const DIR: RawFd = 18;

/// SIGUSR1 and SIGWINCH, as fdinfo prints a signalfd's mask.
const SIGMASK: &str = "0000000008000200";

/// The watches: (wd, name under the watched directory or "" for itself, mask).
const WATCHES: [(i32, &str, u32); 2] = [
    (1, "", libc_in::CREATE | libc_in::DELETE),
    (4, "watched", libc_in::MODIFY | libc_in::CLOSE_WRITE),
];

/// inotify event bits (`<sys/inotify.h>`).
mod libc_in {
    pub const MODIFY: u32 = 0x2;
    pub const CLOSE_WRITE: u32 = 0x8;
    pub const CREATE: u32 = 0x100;
    pub const DELETE: u32 = 0x200;
}

fn spec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns / SEC,
        tv_nsec: ns % SEC,
    }
}

fn nanos(t: Timespec) -> i64 {
    t.tv_sec * SEC + t.tv_nsec
}

/// A `key: value` line of `/proc/self/fdinfo/FD`.
fn fdinfo_line(c: &mut Checker, fd: RawFd, key: &str) -> Option<String> {
    let text = c.ok(
        format_args!("fd {fd}: read fdinfo"),
        std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")),
    )?;
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()));
    if found.is_none() {
        c.fail(format!("fd {fd}: no {key} line in fdinfo"));
    }
    found
}

/// Whether `fd` is readable now (a timerfd with expirations counted).
fn readable(fd: RawFd) -> Result<bool, Errno> {
    let fd = at(fd);
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    Ok(rustix::event::poll(&mut pfd, Some(&zero))? == 1)
}

fn read_u64(fd: RawFd) -> Result<u64, Errno> {
    let mut buf = [0u8; 8];
    rustix::io::read(at(fd), &mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

/// Every queued inotify event as (wd, mask, name).
fn inotify_events(c: &mut Checker) -> Vec<(i32, u32, String)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match rustix::io::read(at(INOTIFY), &mut buf) {
            Ok(n) => n,
            Err(Errno::AGAIN) => return out,
            Err(e) => {
                c.fail(format!("fd {INOTIFY}: read: {e}"));
                return out;
            }
        };
        let mut off = 0;
        while off + 16 <= n {
            let word = |i: usize| {
                u32::from_ne_bytes(buf[off + i..off + i + 4].try_into().unwrap_or_default())
            };
            let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
            let name = buf.get(off + 16..off + 16 + len).unwrap_or_default();
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_owned();
            out.push((wd, mask, name));
            off += 16 + len;
        }
    }
}

impl Scenario for EventFds {
    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        for t in &TIMERS {
            let mut flags = TimerfdFlags::CLOEXEC;
            if t.nonblock {
                flags |= TimerfdFlags::NONBLOCK;
            }
            let fd = rustix::time::timerfd_create(t.clock, flags)
                .with_context(|| format!("timerfd_create({:?})", t.clock))?;
            if t.value != 0 {
                let new = Itimerspec {
                    it_value: spec(t.value * SEC),
                    it_interval: spec(t.interval),
                };
                rustix::time::timerfd_settime(&fd, t.flags, &new).context("timerfd_settime")?;
            }
            place(fd, t.fd, false)?;
        }

        // A one-shot timer 1 ns ahead: once readable it has counted exactly one
        // expiration, and a one-shot timer counts no more.
        let fired = rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)?;
        let soon = Itimerspec {
            it_value: spec(1),
            it_interval: spec(0),
        };
        rustix::time::timerfd_settime(&fired, TimerfdTimerFlags::empty(), &soon)?;
        let mut pfd = [rustix::event::PollFd::new(
            &fired,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut pfd, None).context("poll the 1-ns timer")?;
        place(fired, FIRED, false)?;

        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGUSR1);
        mask.add(Signal::SIGWINCH);
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        place(sfd.as_fd().try_clone_to_owned()?, SIGNALFD, false)?;

        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let dir = env.dir.join("events");
        std::fs::create_dir(&dir).context("mkdir events")?;
        std::fs::write(dir.join("watched"), b"").context("create events/watched")?;
        let ino = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let wd = inotify::add_watch(&ino, &dir, WatchFlags::from_bits_retain(WATCHES[0].2))?;
        anyhow::ensure!(wd == WATCHES[0].0, "first watch got wd {wd}");
        // Watch descriptors 2 and 3 are used and given back: a gap the restore must keep.
        for gap in [2, 3] {
            let wd = inotify::add_watch(&ino, &env.dir, WatchFlags::ATTRIB)?;
            anyhow::ensure!(wd == gap, "placeholder watch got wd {wd}, expected {gap}");
            inotify::remove_watch(&ino, wd)?;
        }
        // Their IN_IGNORED events: read, or the dump would (rightly) refuse.
        let mut buf = [0u8; 1024];
        while rustix::io::read(&ino, &mut buf).is_ok() {}
        let wd = inotify::add_watch(
            &ino,
            dir.join(WATCHES[1].1),
            WatchFlags::from_bits_retain(WATCHES[1].2),
        )?;
        anyhow::ensure!(wd == WATCHES[1].0, "second watch got wd {wd}");
        place(ino, INOTIFY, false)?;
        place(
            rustix::fs::open(
                &dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
            DIR,
            false,
        )?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        (10..=18).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for fd in self.fds(0) {
            c.cloexec(fd, false);
        }
        self.check_timers(c);
        self.check_signalfd(c);
        self.check_inotify(c);
    }
}

impl EventFds {
    fn check_timers(&self, c: &mut Checker) {
        for t in &TIMERS {
            let fd = t.fd;
            if let Some(link) = c.link(fd) {
                c.eq(
                    format_args!("fd {fd}: link"),
                    link.as_str(),
                    "anon_inode:[timerfd]",
                );
            }
            let mut flags = OFlags::RDWR;
            if t.nonblock {
                flags |= OFlags::NONBLOCK;
            }
            c.flags(fd, flags);
            if let Some(id) = fdinfo_line(c, fd, "clockid:") {
                c.eq(format_args!("fd {fd}: clockid"), id, t.clockid.to_string());
            }
            if let Some(f) = fdinfo_line(c, fd, "settime flags:") {
                c.eq(
                    format_args!("fd {fd}: settime flags"),
                    f,
                    format!("0{:o}", t.flags.bits()),
                );
            }
            let Some(now) = c.ok(
                format_args!("fd {fd}: timerfd_gettime"),
                rustix::time::timerfd_gettime(at(fd)),
            ) else {
                continue;
            };
            c.eq(
                format_args!("fd {fd}: interval (ns)"),
                nanos(now.it_interval),
                t.interval,
            );
            let remaining = nanos(now.it_value);
            if t.value == 0 {
                c.eq(
                    format_args!("fd {fd}: disarmed, time remaining"),
                    remaining,
                    0,
                );
            } else if t.flags.contains(TimerfdTimerFlags::ABSTIME) {
                // Absolute: it still expires at the moment it was set for.
                let clock = if t.clockid == 0 {
                    ClockId::Realtime
                } else {
                    ClockId::Boottime
                };
                let at_ns = nanos(rustix::time::clock_gettime(clock)) + remaining;
                if (at_ns - t.value * SEC).abs() > 2 * SEC {
                    c.fail(format!(
                        "fd {fd}: expires at {at_ns} ns, expected {} s",
                        t.value
                    ));
                }
            } else if remaining <= 0
                || remaining > t.value * SEC
                || remaining < (t.value - 300) * SEC
            {
                c.fail(format!(
                    "fd {fd}: {remaining} ns remaining, expected a little less than {} s",
                    t.value
                ));
            }
            match readable(fd) {
                Ok(r) => c.eq(format_args!("fd {fd}: has expirations to read"), r, false),
                Err(e) => c.fail(format!("fd {fd}: poll: {e}")),
            }
        }

        // The one expiration counted before the dump is read exactly once.
        c.flags(FIRED, OFlags::RDWR);
        if let Some(id) = fdinfo_line(c, FIRED, "clockid:") {
            c.eq(format_args!("fd {FIRED}: clockid"), id.as_str(), "1");
        }
        match readable(FIRED) {
            Ok(true) => {
                let got = read_u64(FIRED);
                c.eq(format_args!("fd {FIRED}: expirations read"), got, Ok(1));
            }
            Ok(false) => c.fail(format!(
                "fd {FIRED}: the expiration counted before the dump is gone"
            )),
            Err(e) => c.fail(format!("fd {FIRED}: poll: {e}")),
        }
        if let Some(now) = c.ok(
            format_args!("fd {FIRED}: timerfd_gettime"),
            rustix::time::timerfd_gettime(at(FIRED)),
        ) {
            c.eq(
                format_args!("fd {FIRED}: time remaining after firing"),
                nanos(now.it_value),
                0,
            );
        }
    }

    fn check_signalfd(&self, c: &mut Checker) {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask, raise};
        let fd = SIGNALFD;
        if let Some(link) = c.link(fd) {
            c.eq(
                format_args!("fd {fd}: link"),
                link.as_str(),
                "anon_inode:[signalfd]",
            );
        }
        c.flags(fd, OFlags::RDWR | OFlags::NONBLOCK);
        if let Some(mask) = fdinfo_line(c, fd, "sigmask:") {
            c.eq(format_args!("fd {fd}: sigmask"), mask.as_str(), SIGMASK);
        }
        // Nothing pending yet; SIGUSR1 sent now (blocked, so it waits) is read from it.
        let mut info = [0u8; 128];
        c.eq(
            format_args!("fd {fd}: read before any signal"),
            rustix::io::read(at(fd), &mut info),
            Err(Errno::AGAIN),
        );
        let mut usr1 = SigSet::empty();
        usr1.add(Signal::SIGUSR1);
        if c.ok(
            "block SIGUSR1",
            pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr1), None),
        )
        .is_none()
            || c.ok("raise(SIGUSR1)", raise(Signal::SIGUSR1)).is_none()
        {
            return;
        }
        match rustix::io::read(at(fd), &mut info) {
            Ok(128) => {
                let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                c.eq(
                    format_args!("fd {fd}: signal read"),
                    signo,
                    Signal::SIGUSR1 as u32,
                );
            }
            other => c.fail(format!("fd {fd}: read after raise(SIGUSR1): {other:?}")),
        }
    }

    fn check_inotify(&self, c: &mut Checker) {
        let fd = INOTIFY;
        if let Some(link) = c.link(fd) {
            c.eq(
                format_args!("fd {fd}: link"),
                link.as_str(),
                "anon_inode:inotify",
            );
        }
        c.flags(fd, OFlags::RDONLY | OFlags::NONBLOCK);
        c.flags(DIR, OFlags::RDONLY);
        if let Some(text) = c.ok(
            format_args!("fd {fd}: read fdinfo"),
            std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")),
        ) {
            let mut got: Vec<(i32, u32)> = text
                .lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix("inotify wd:")?;
                    let wd = i32::from_str_radix(rest.split(' ').next()?, 16).ok()?;
                    let mask = rest.split(' ').find_map(|f| f.strip_prefix("mask:"))?;
                    Some((wd, u32::from_str_radix(mask, 16).ok()?))
                })
                .collect();
            got.sort_unstable();
            let want: Vec<(i32, u32)> = WATCHES.iter().map(|(wd, _, m)| (*wd, *m)).collect();
            c.eq(format_args!("fd {fd}: watches (wd, mask)"), got, want);
        }
        // A rebuilt instance starts with nothing queued (not the IN_IGNORED of the
        // watches that made the gap); the original has what the rebuilt one's changes
        // to the same files caused, which is not what is checked here.
        let before = inotify_events(c);
        if !c.live() {
            c.eq(
                format_args!("fd {fd}: events queued after the rebuild"),
                before,
                Vec::new(),
            );
        }
        // A change made now is reported with the saved watch descriptors.
        let name = if c.live() { "new-live" } else { "new-rebuilt" };
        let changed = rustix::fs::openat(
            at(DIR),
            "watched",
            OFlags::WRONLY | OFlags::APPEND | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(anyhow::Error::from)
        .and_then(|f| write_all(&f, b"x"));
        let created = rustix::fs::openat(
            at(DIR),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        );
        if c.ok("change events/watched", changed).is_none()
            || c.ok(format_args!("create events/{name}"), created)
                .is_none()
        {
            return;
        }
        let got = inotify_events(c);
        let want = vec![
            (4, libc_in::MODIFY, String::new()),
            (4, libc_in::CLOSE_WRITE, String::new()),
            (1, libc_in::CREATE, name.to_owned()),
        ];
        c.eq(format_args!("fd {fd}: events after a change"), got, want);
    }
}
