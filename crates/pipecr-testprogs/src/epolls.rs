//! epoll scenario: instances with every kind of registration pipecr saves, checked from
//! inside through `epoll_wait`, `epoll_ctl` and `/proc/self/fdinfo`.

use std::collections::BTreeSet;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use anyhow::{Context as _, bail};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;

use crate::common::{Checker, Env, Scenario, at, dup_to, pattern, place, write_all};

const IN: u32 = libc_bits::IN;
const OUT: u32 = libc_bits::OUT;
const ERR_HUP: u32 = libc_bits::ERR | libc_bits::HUP;
const ET: u32 = 1 << 31;
const ONESHOT: u32 = 1 << 30;
const WAKEUP: u32 = 1 << 29;
const EXCLUSIVE: u32 = 1 << 28;

/// The poll bits, as `<sys/epoll.h>` numbers them.
mod libc_bits {
    pub const IN: u32 = 0x001;
    pub const OUT: u32 = 0x004;
    pub const ERR: u32 = 0x008;
    pub const HUP: u32 = 0x010;
}

/// The data of each registration of the root's epoll at fd 10.
const PIPE_LT: u64 = 0x1111;
const EVENTFD_ET: u64 = 0x2222_0000_0000_0013;
const MOVED: u64 = 0x3333;
const REUSED: u64 = 0x4444;
const REUSER: u64 = 0x4445;
const ARMED_ONESHOT: u64 = 0x5555;
const FIRED_ONESHOT: u64 = 0x6666;
const EXCLUSIVE_OUT: u64 = 0x7777;
const NESTED_TARGET: u64 = 0x8888;
const NESTED: u64 = 0x9999;
const SHARED_PIPE: u64 = 0xAAAA;
const SHARED_EVENTFD: u64 = 0xBBBB;

/// (e) epoll instances. The root's epoll at fd 10 holds:
/// - fd 11, read end of a pipe with 100 bytes (write end 12): `EPOLLIN`, level-triggered;
/// - fd 12: `EPOLLOUT | EPOLLEXCLUSIVE`;
/// - fd 13, an eventfd with count 5: `EPOLLIN | EPOLLET | EPOLLWAKEUP`, 64-bit data, its
///   edge not yet reported;
/// - tfd 30, the read end of an empty pipe (write end 15), since moved to 14 (dup, then
///   30 closed);
/// - tfd 31, the read end of a pipe with 7 bytes (write end 17), since dup'ed to 16 while
///   31 was reused for an eventfd (count 0), itself registered under 31 too;
/// - fd 18, an eventfd at 0: `EPOLLIN | EPOLLONESHOT`, armed;
/// - fd 19, read end of a pipe with 10 bytes (write end 20): `EPOLLIN | EPOLLONESHOT`,
///   already reported (disarmed);
/// - fd 22, another epoll instance watching the read end 23 of a pipe with 3 bytes (write
///   end 24).
///
/// An epoll at 25, shared by the root and its child, watches the read end 26 of a pipe
/// with 50 bytes (write end 27) and an eventfd at 28 (count 0); the child checks it.
pub struct Epolls;

fn add(ep: RawFd, fd: RawFd, events: u32, data: u64) -> anyhow::Result<()> {
    epoll::add(
        at(ep),
        at(fd),
        EventData::new_u64(data),
        EventFlags::from_bits_retain(events),
    )
    .with_context(|| format!("epoll_ctl(ADD {fd} to {ep})"))
}

fn new_eventfd(count: u32) -> anyhow::Result<OwnedFd> {
    eventfd(count, EventfdFlags::CLOEXEC).context("eventfd")
}

fn close(fd: RawFd) {
    // SAFETY: `fd` is a scenario number this program placed itself and no longer uses.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// What `epoll_wait` reports now on `ep` without waiting, as a sorted set.
fn ready(ep: RawFd) -> Result<BTreeSet<(u32, u64)>, Errno> {
    let mut events = Vec::with_capacity(32);
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    epoll::wait(
        at(ep),
        rustix::buffer::spare_capacity(&mut events),
        Some(&zero),
    )?;
    Ok(events
        .iter()
        .map(|e| {
            let (flags, data) = (e.flags, e.data);
            (flags.bits(), data.u64())
        })
        .collect())
}

/// The registrations `/proc/self/fdinfo/EP` lists: (tfd, events, data), sorted.
fn registrations(ep: RawFd) -> std::io::Result<BTreeSet<(i32, u32, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{ep}"))?;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("tfd:") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        let bad = || std::io::Error::other(format!("bad line {line:?}"));
        if w.len() < 5 || w[1] != "events:" || w[3] != "data:" {
            return Err(bad());
        }
        out.insert((
            w[0].parse().map_err(|_| bad())?,
            u32::from_str_radix(w[2], 16).map_err(|_| bad())?,
            u64::from_str_radix(w[4], 16).map_err(|_| bad())?,
        ));
    }
    Ok(out)
}

/// `EPOLLWAKEUP` if this kernel keeps it in a registration made here (it drops it without
/// `CONFIG_PM_SLEEP` or `CAP_BLOCK_SUSPEND`), else 0: what the registration of fd 13
/// holds in the original process.
fn wakeup_kept() -> u32 {
    let probe = || -> anyhow::Result<bool> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let e = new_eventfd(0)?;
        epoll::add(
            &ep,
            &e,
            EventData::new_u64(0),
            EventFlags::from_bits_retain(IN | WAKEUP),
        )?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&ep);
        Ok(registrations(fd)?.iter().any(|r| r.1 & WAKEUP != 0))
    };
    if probe().unwrap_or(false) { WAKEUP } else { 0 }
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

impl Scenario for Epolls {
    fn children(&self) -> usize {
        1
    }

    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        // Shared with the child.
        place(
            epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create1")?,
            25,
            false,
        )?;
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(26, 50))?;
        place(r, 26, false)?;
        place(w, 27, false)?;
        place(new_eventfd(0)?, 28, false)?;
        add(25, 26, IN, SHARED_PIPE)?;
        add(25, 28, IN, SHARED_EVENTFD)?;
        Ok(())
    }

    fn build(&self, role: usize, _env: &Env) -> anyhow::Result<()> {
        if role != 0 {
            return Ok(());
        }
        place(
            epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create1")?,
            10,
            false,
        )?;
        // The one-shot that already fired: alone in the instance, so the wait takes
        // only its event.
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(19, 10))?;
        place(r, 19, false)?;
        place(w, 20, false)?;
        add(10, 19, IN | ONESHOT, FIRED_ONESHOT)?;
        let got = ready(10).context("epoll_wait")?;
        if got != set(&[(IN, FIRED_ONESHOT)]) {
            bail!("firing the one-shot registration reported {got:?}");
        }

        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(11, 100))?;
        place(r, 11, false)?;
        place(w, 12, false)?;
        add(10, 11, IN, PIPE_LT)?;
        add(10, 12, OUT | EXCLUSIVE, EXCLUSIVE_OUT)?;

        place(new_eventfd(5)?, 13, false)?;
        add(10, 13, IN | ET | WAKEUP, EVENTFD_ET)?;

        let (r, w) = rustix::pipe::pipe()?;
        place(r, 30, false)?;
        place(w, 15, false)?;
        add(10, 30, IN, MOVED)?;
        dup_to(30, 14, false)?;
        close(30);

        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(16, 7))?;
        place(r, 31, false)?;
        place(w, 17, false)?;
        add(10, 31, IN, REUSED)?;
        dup_to(31, 16, false)?;
        close(31);
        place(new_eventfd(0)?, 31, false)?;
        add(10, 31, IN, REUSER)?;

        place(new_eventfd(0)?, 18, false)?;
        add(10, 18, IN | ONESHOT, ARMED_ONESHOT)?;

        place(
            epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create1")?,
            22,
            false,
        )?;
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(23, 3))?;
        place(r, 23, false)?;
        place(w, 24, false)?;
        add(22, 23, IN, NESTED_TARGET)?;
        add(10, 22, IN, NESTED)?;
        Ok(())
    }

    fn fds(&self, role: usize) -> Vec<RawFd> {
        let shared = [25, 26, 27, 28];
        if role == 0 {
            let mut fds: Vec<RawFd> = (10..=20).chain([22, 23, 24, 31]).collect();
            fds.extend(shared);
            fds.sort_unstable();
            fds
        } else {
            shared.to_vec()
        }
    }

    fn check(&self, role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(role));
        if role == 0 {
            check_root(c);
        } else {
            check_child(c);
        }
    }
}

fn check_root(c: &mut Checker) {
    for fd in [10, 22, 25] {
        if let Some(link) = c.link(fd) {
            c.eq(
                format!("fd {fd}: link"),
                link.as_str(),
                "anon_inode:[eventpoll]",
            );
        }
    }
    // Every registration as the kernel holds it (EPOLLERR | EPOLLHUP are always added;
    // the fired one-shot keeps only its private bits).
    if let Some(got) = c.ok("fdinfo 10", registrations(10)) {
        let want = set(&[
            (11, IN | ERR_HUP, PIPE_LT),
            (12, OUT | EXCLUSIVE | ERR_HUP, EXCLUSIVE_OUT),
            (13, IN | ET | wakeup_kept() | ERR_HUP, EVENTFD_ET),
            (30, IN | ERR_HUP, MOVED),
            (31, IN | ERR_HUP, REUSED),
            (31, IN | ERR_HUP, REUSER),
            (18, IN | ONESHOT | ERR_HUP, ARMED_ONESHOT),
            (19, ONESHOT, FIRED_ONESHOT),
            (22, IN | ERR_HUP, NESTED),
        ]);
        c.eq("fd 10: registrations", got, want);
    }
    if let Some(got) = c.ok("fdinfo 22", registrations(22)) {
        c.eq(
            "fd 22: registrations",
            got,
            set(&[(23, IN | ERR_HUP, NESTED_TARGET)]),
        );
    }
    // Ready now: the level-triggered pipes, the pending edge of the eventfd, the
    // writable pipe, the nested epoll; not the empty pipe, the armed one-shot at 0 nor
    // the fired one-shot.
    let level = [
        (IN, PIPE_LT),
        (OUT, EXCLUSIVE_OUT),
        (IN, REUSED),
        (IN, NESTED),
    ];
    let mut first = set(&level);
    first.insert((IN, EVENTFD_ET));
    if let Some(got) = c.ok("fd 10: first epoll_wait", ready(10)) {
        c.eq("fd 10: first epoll_wait", got, first);
    }
    // The edge was reported once.
    if let Some(got) = c.ok("fd 10: second epoll_wait", ready(10)) {
        c.eq("fd 10: second epoll_wait", got, set(&level));
    }
    // A write now wakes the target that moved from 30 to 14.
    c.ok("write to fd 15", write_all(at(15), b"x"));
    if let Some(got) = c.ok("fd 10: after writing fd 15", ready(10)) {
        let mut want = set(&level);
        want.insert((IN, MOVED));
        c.eq("fd 10: after writing fd 15", got, want);
    }
    c.pipe_bytes(14, b"x");
    // The armed one-shot fires once.
    c.ok("write to fd 18", write_all(at(18), &1u64.to_ne_bytes()));
    if let Some(got) = c.ok("fd 10: after writing fd 18", ready(10)) {
        let mut want = set(&level);
        want.insert((IN, ARMED_ONESHOT));
        c.eq("fd 10: after writing fd 18", got, want);
    }
    if let Some(got) = c.ok("fd 10: after the one-shot", ready(10)) {
        c.eq("fd 10: after the one-shot", got, set(&level));
    }
    // The fired one-shot is re-armed under its number.
    let rearm = epoll::modify(
        at(10),
        at(19),
        EventData::new_u64(FIRED_ONESHOT),
        EventFlags::from_bits_retain(IN | ONESHOT),
    );
    if c.ok("epoll_ctl(MOD 19)", rearm).is_some()
        && let Some(got) = c.ok("fd 10: after re-arming 19", ready(10))
    {
        let mut want = set(&level);
        want.insert((IN, FIRED_ONESHOT));
        c.eq("fd 10: after re-arming 19", got, want);
    }
    // Two registrations under 31: the kernel finds the one of the file 31 holds now
    // (the eventfd), and the pipe registered before stays as it was.
    let reused = epoll::modify(
        at(10),
        at(31),
        EventData::new_u64(REUSER + 1),
        EventFlags::from_bits_retain(IN),
    );
    c.ok("epoll_ctl(MOD 31)", reused);
    c.ok("write to fd 31", write_all(at(31), &1u64.to_ne_bytes()));
    if let Some(got) = c.ok("fd 10: after writing fd 31", ready(10)) {
        let mut want = set(&level);
        want.insert((IN, REUSER + 1));
        c.eq("fd 10: after writing fd 31", got, want);
    }
    c.ok("epoll_ctl(DEL 31)", epoll::delete(at(10), at(31)));
    let gone = epoll::delete(at(10), at(31));
    c.eq("epoll_ctl(DEL 31) again", gone.err(), Some(Errno::NOENT));
    // The saved numbers work for MOD and DEL.
    let moved = epoll::modify(
        at(10),
        at(11),
        EventData::new_u64(PIPE_LT + 1),
        EventFlags::from_bits_retain(IN),
    );
    c.ok("epoll_ctl(MOD 11)", moved);
    c.ok("epoll_ctl(DEL 13)", epoll::delete(at(10), at(13)));
    c.ok("epoll_ctl(DEL 22)", epoll::delete(at(10), at(22)));
    c.ok("write to fd 13", write_all(at(13), &1u64.to_ne_bytes()));
    if let Some(got) = c.ok("fd 10: after MOD and DEL", ready(10)) {
        let want = set(&[(IN, PIPE_LT + 1), (OUT, EXCLUSIVE_OUT), (IN, REUSED)]);
        c.eq("fd 10: after MOD and DEL", got, want);
    }
    c.pipe_bytes(11, &pattern(11, 100));
    c.pipe_bytes(16, &pattern(16, 7));
    c.pipe_bytes(19, &pattern(19, 10));
    c.pipe_bytes(23, &pattern(23, 3));
}

fn check_child(c: &mut Checker) {
    if let Some(got) = c.ok("fdinfo 25", registrations(25)) {
        c.eq(
            "fd 25: registrations",
            got,
            set(&[
                (26, IN | ERR_HUP, SHARED_PIPE),
                (28, IN | ERR_HUP, SHARED_EVENTFD),
            ]),
        );
    }
    if let Some(got) = c.ok("fd 25: epoll_wait", ready(25)) {
        c.eq("fd 25: epoll_wait", got, set(&[(IN, SHARED_PIPE)]));
    }
    c.ok("write to fd 28", write_all(at(28), &1u64.to_ne_bytes()));
    if let Some(got) = c.ok("fd 25: after writing fd 28", ready(25)) {
        c.eq(
            "fd 25: after writing fd 28",
            got,
            set(&[(IN, SHARED_PIPE), (IN, SHARED_EVENTFD)]),
        );
    }
    c.pipe_bytes(26, &pattern(26, 50));
}
