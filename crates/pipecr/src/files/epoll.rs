//! epoll instances (`epoll_create1(2)`) with every registration in them: the descriptor
//! number each target was added with (`tfd`), the open file behind it, its event mask
//! (with `EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE`, `EPOLLWAKEUP`) and its 64-bit data.
//!
//! Dump: `/proc/PID/fdinfo/EPFD` has one `tfd: %8d events: %8x data: %16llx pos:%lli
//! ino:%lx sdev:%x` line per registration (`ep_show_fdinfo` in `fs/eventpoll.c`, in the
//! order of the kernel's tree of items). `tfd` is only the number the target had when it
//! was added: it may be closed or reused since. The open file is found among the tree's
//! descriptors with the same inode by `kcmp(KCMP_EPOLL_TFD)`, which names the open file
//! of the `toff`-th registration under `tfd` (`toff` counts earlier lines with the same
//! `tfd`). A registration whose open file no descriptor of the tree holds is refused:
//! nothing could recreate it. The events shown are the kernel's own: `EPOLLERR |
//! EPOLLHUP` always (`epoll_ctl` adds them), and only the private bits for an
//! `EPOLLONESHOT` registration that already fired (disarmed).
//!
//! Restore: the instance is created with the other open files ([`FileKind::restore`]);
//! its registrations are added once every open file of the tree exists
//! ([`FileKind::complete`]), in the restorer that creates them all, so processes sharing
//! the instance share its registrations. Each target is added under its saved `tfd` (the
//! kernel keys an item by open file and number, so the program's later `EPOLL_CTL_MOD`
//! or `DEL` on that number finds it), placed at that number for the call only
//! ([`crate::sys::epoll::add_as`]). An epoll instance registered in another gets its own
//! registrations first. Readiness follows from the targets' restored state: a
//! level-triggered target that was ready is ready again, and an edge-triggered one that
//! is ready when added is reported once (`ep_insert` queues it), as an event pending at
//! the dump would have been. (The kernel does not show whether an edge was already
//! reported: an edge-triggered target still ready at the dump whose edge the program had
//! taken is reported once more after restore, which a program reading until `EAGAIN`, as
//! edge-triggered use requires, takes as a spurious wake-up.) A disarmed `EPOLLONESHOT` registration is added armed for
//! every event and made to fire once with `epoll_wait` (before any other registration
//! of the instance is added, so the event taken is its own); if its target is ready for
//! nothing at that moment it stays armed for `EPOLLERR | EPOLLHUP` only, which the
//! kernel adds to any mask.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};

use super::common::set_position_and_flags;
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use crate::sys::epoll::{ALL_EVENTS, PRIVATE_BITS};
use crate::sys::kcmp::{self, TargetFd};

/// epoll instances.
pub struct EpollKind;

/// The `/proc/PID/fd/N` link of an epoll instance.
const LINK: &str = "anon_inode:[eventpoll]";

/// One `tfd:` line of an epoll's fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TfdLine {
    tfd: i32,
    events: u32,
    data: u64,
    ino: u64,
}

/// Parses the value of a `tfd:` line (what follows `tfd:`): `%8d events: %8x data:
/// %16llx  pos:%lli ino:%lx sdev:%x`.
fn parse_tfd_line(value: &str) -> Option<TfdLine> {
    let mut words = value.split_whitespace();
    let tfd = words.next()?.parse().ok()?;
    let (mut events, mut data, mut ino) = (None, None, None);
    while let Some(word) = words.next() {
        match word {
            "events:" => events = Some(u32::from_str_radix(words.next()?, 16).ok()?),
            "data:" => data = Some(u64::from_str_radix(words.next()?, 16).ok()?),
            w => {
                if let Some(hex) = w.strip_prefix("ino:") {
                    ino = Some(u64::from_str_radix(hex, 16).ok()?);
                }
            }
        }
    }
    Some(TfdLine {
        tfd,
        events: events?,
        data: data?,
        ino: ino?,
    })
}

/// The epoll instances whose registrations are done, and those being done (a cycle in
/// a damaged image would otherwise recurse forever).
#[derive(Default)]
struct Completed {
    done: BTreeSet<u64>,
    doing: BTreeSet<u64>,
}

/// Names of the event bits, for `show`.
fn event_names(events: u32) -> String {
    const NAMES: &[(libc::c_int, &str)] = &[
        (libc::EPOLLIN, "IN"),
        (libc::EPOLLPRI, "PRI"),
        (libc::EPOLLOUT, "OUT"),
        (libc::EPOLLERR, "ERR"),
        (libc::EPOLLHUP, "HUP"),
        (libc::EPOLLRDNORM, "RDNORM"),
        (libc::EPOLLRDBAND, "RDBAND"),
        (libc::EPOLLWRNORM, "WRNORM"),
        (libc::EPOLLWRBAND, "WRBAND"),
        (libc::EPOLLMSG, "MSG"),
        (libc::EPOLLRDHUP, "RDHUP"),
        (libc::EPOLLEXCLUSIVE, "EXCLUSIVE"),
        (libc::EPOLLWAKEUP, "WAKEUP"),
        (libc::EPOLLONESHOT, "ONESHOT"),
        (libc::EPOLLET, "ET"),
    ];
    let mut names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| events & (*bit as u32) != 0)
        .map(|(_, n)| *n)
        .collect();
    let known = NAMES.iter().fold(0u32, |a, (b, _)| a | *b as u32);
    let rest = events & !known;
    let rest_text = format!("{rest:#x}");
    if rest != 0 {
        names.push(&rest_text);
    }
    if events & !PRIVATE_BITS == 0 && events & libc::EPOLLONESHOT as u32 != 0 {
        names.push("(disarmed)");
    }
    names.join("|")
}

impl FileKind for EpollKind {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let bad = |line: &str| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: LINK.into(),
            op: "parse fdinfo",
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected epoll registration line {line:?}"),
            ),
        };
        let me = rustix::process::Pid::from_raw(file.pid).ok_or_else(|| bad("(no pid)"))?;
        let mut targets = Vec::new();
        let mut seen: Vec<i32> = Vec::new();
        for (key, value) in &file.info.extra {
            if key != "tfd" {
                continue;
            }
            let line = parse_tfd_line(value).ok_or_else(|| bad(value))?;
            let toff = seen.iter().filter(|&&t| t == line.tfd).count() as u32;
            seen.push(line.tfd);
            // Candidates: the descriptors of the tree on the same inode, the one still
            // at `tfd` in this process first (the usual case).
            let mut candidates = sink.descriptors_of_inode(line.ino).to_vec();
            candidates.sort_by_key(|d| (d.pid != file.pid || d.fd != line.tfd, d.pid, d.fd));
            let mut found = None;
            for c in candidates {
                let Some(pid) = rustix::process::Pid::from_raw(c.pid) else {
                    continue;
                };
                let same = kcmp::kcmp_epoll_target(
                    pid,
                    TargetFd(c.fd),
                    me,
                    TargetFd(file.fd),
                    TargetFd(line.tfd),
                    toff,
                )
                .map_err(|source| FileError::Dump {
                    pid: file.pid,
                    fd: file.fd,
                    what: LINK.into(),
                    op: "kcmp(KCMP_EPOLL_TFD)",
                    source,
                })?;
                if same {
                    found = Some(c.file_id);
                    break;
                }
            }
            let Some(file_id) = found else {
                return Err(FileError::Unreachable {
                    pid: file.pid,
                    fd: file.fd,
                    what: format!(
                        "epoll instance has a target registered as fd {} (inode {:#x}) \
                         whose open file no descriptor of the tree holds; it cannot be \
                         recreated",
                        line.tfd, line.ino
                    ),
                });
            };
            targets.push(proto::EpollTarget {
                tfd: line.tfd,
                file_id,
                events: line.events,
                data: line.data,
            });
        }
        Ok(open_file::Kind::Epoll(proto::Epoll { targets }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Epoll(_))
    }

    /// Checks every epoll record before anything is created: each target is an open file
    /// of the image, and `EPOLLWAKEUP` can be given (without `CAP_BLOCK_SUSPEND` the
    /// kernel would drop it silently).
    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let records = ctx.open_files()?;
        let ids: BTreeSet<u64> = records.iter().map(|f| f.id).collect();
        let mut wakeup = None;
        for file in records {
            let Some(open_file::Kind::Epoll(epoll)) = &file.kind else {
                continue;
            };
            for t in &epoll.targets {
                if !ids.contains(&t.file_id) {
                    return Err(FileError::Invalid {
                        id: file.id,
                        reason: format!(
                            "epoll target fd {} is open file {}, which the image lacks",
                            t.tfd, t.file_id
                        ),
                    });
                }
                if t.events & libc::EPOLLWAKEUP as u32 != 0 {
                    wakeup.get_or_insert((file.id, t.tfd));
                }
            }
        }
        if let Some((id, tfd)) = wakeup {
            let fail = |source: io::Error| FileError::Restore {
                id,
                what: format!("epoll target fd {tfd} with EPOLLWAKEUP"),
                op: "epoll_ctl(EPOLL_CTL_ADD)",
                source,
            };
            let caps = rustix::thread::capabilities(None).map_err(|e| fail(e.into()))?;
            if !caps
                .effective
                .contains(rustix::thread::CapabilitySet::BLOCK_SUSPEND)
            {
                return Err(fail(io::Error::other(
                    "EPOLLWAKEUP needs CAP_BLOCK_SUSPEND, which the restorer lacks",
                )));
            }
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let fd = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).map_err(
            |e| FileError::Restore {
                id: file.id,
                what: "epoll".into(),
                op: "epoll_create1",
                source: e.into(),
            },
        )?;
        set_position_and_flags(fd.as_fd(), file, "epoll")?;
        Ok(fd)
    }

    fn complete(&self, file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        register(file.id, ctx)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Epoll(e)) if e.targets.is_empty() => {
                "epoll, no targets".to_owned()
            }
            Some(open_file::Kind::Epoll(e)) => {
                // In descriptor order, as a person looks them up (the kernel lists them
                // in the order of its tree of registrations).
                let mut sorted: Vec<_> = e.targets.iter().collect();
                sorted.sort_by_key(|t| (t.tfd, t.file_id));
                let targets: Vec<String> = sorted
                    .iter()
                    .map(|t| {
                        format!(
                            "fd {} (open file {}) {} data {:#x}",
                            t.tfd,
                            t.file_id,
                            event_names(t.events),
                            t.data
                        )
                    })
                    .collect();
                format!("epoll, targets: {}", targets.join("; "))
            }
            _ => "not an epoll instance".into(),
        };
        Description { text, pipe: None }
    }
}

/// Adds the saved registrations of epoll instance `id` (already created, in `ctx`) to it,
/// those of epoll instances among its targets first. Each instance is done once.
fn register(id: u64, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
    if ctx.state::<Completed>().done.contains(&id) {
        return Ok(());
    }
    let invalid = |reason: String| FileError::Invalid { id, reason };
    if !ctx.state::<Completed>().doing.insert(id) {
        return Err(invalid(
            "epoll instances registered in each other (a cycle)".into(),
        ));
    }
    let records = ctx.open_files()?;
    let Some(open_file::Kind::Epoll(epoll)) = records
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| f.kind.clone())
    else {
        return Err(invalid("not an epoll instance".into()));
    };
    let inner: Vec<u64> = epoll
        .targets
        .iter()
        .filter(|t| {
            records
                .iter()
                .any(|f| f.id == t.file_id && matches!(f.kind, Some(open_file::Kind::Epoll(_))))
        })
        .map(|t| t.file_id)
        .collect();
    for inner in inner {
        register(inner, ctx)?;
    }
    let fail = |op, source: io::Error| FileError::Restore {
        id,
        what: "epoll".into(),
        op,
        source,
    };
    let me = ctx
        .opened(id)
        .ok_or_else(|| invalid("the epoll instance was not created".into()))?
        .try_clone_to_owned()
        .map_err(|e| fail("dup", e))?;
    let disarmed = |t: &proto::EpollTarget| {
        t.events & libc::EPOLLONESHOT as u32 != 0 && t.events & !PRIVATE_BITS == 0
    };
    // Disarmed one-shot registrations first, each alone with nothing else armed in the
    // instance: the event `take_one` takes is then its own.
    let (first, rest): (Vec<&proto::EpollTarget>, Vec<_>) =
        epoll.targets.iter().partition(|t| disarmed(t));
    for t in first.into_iter().chain(rest) {
        let target = ctx.opened(t.file_id).ok_or_else(|| {
            invalid(format!(
                "target fd {} is open file {}, which was not created",
                t.tfd, t.file_id
            ))
        })?;
        if disarmed(t) {
            crate::sys::epoll::add_as(me.as_fd(), target, t.tfd, t.events | ALL_EVENTS, t.data)
                .map_err(|e| fail("epoll_ctl(EPOLL_CTL_ADD)", e))?;
            let fired =
                crate::sys::epoll::take_one(me.as_fd()).map_err(|e| fail("epoll_wait", e))?;
            if fired.is_none() {
                // Ready for nothing: the closest the kernel allows is armed for
                // EPOLLERR | EPOLLHUP only, which it adds to every mask. The number is
                // free again, so it is placed there once more for the call.
                crate::sys::epoll::modify_as(me.as_fd(), target, t.tfd, t.events, t.data)
                    .map_err(|e| fail("epoll_ctl(EPOLL_CTL_MOD)", e))?;
            }
        } else {
            crate::sys::epoll::add_as(me.as_fd(), target, t.tfd, t.events, t.data)
                .map_err(|e| fail("epoll_ctl(EPOLL_CTL_ADD)", e))?;
        }
    }
    let state = ctx.state::<Completed>();
    state.doing.remove(&id);
    state.done.insert(id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_line() {
        let line = "        5 events:       19 data:             1234  pos:0 ino:3f2 sdev:f";
        assert_eq!(
            parse_tfd_line(line),
            Some(TfdLine {
                tfd: 5,
                events: 0x19,
                data: 0x1234,
                ino: 0x3f2
            })
        );
        assert_eq!(parse_tfd_line("5 events: zz data: 1 ino:1"), None);
    }

    #[test]
    fn names_a_disarmed_oneshot() {
        let ev = (libc::EPOLLONESHOT | libc::EPOLLET) as u32;
        assert_eq!(event_names(ev), "ONESHOT|ET|(disarmed)");
        assert_eq!(event_names(0x19), "IN|ERR|HUP");
    }
}
