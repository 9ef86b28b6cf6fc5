//! userfaultfds (`userfaultfd(2)`): the features enabled by the API handshake
//! (`UFFDIO_API`), read from fdinfo's `API:` line, and the ranges of the holder's memory
//! registered on it with their modes (missing, write-protect, minor), read from the
//! `um`, `uw` and `ui` marks of `/proc/PID/smaps` `VmFlags`. Its status flags
//! (`O_NONBLOCK`) are the open file's, saved by the caller.
//!
//! A userfaultfd belongs to the address space of the process that created it, and
//! registers ranges there whoever asks: the restored process creates it again itself,
//! with an injected `userfaultfd` once its memory and threads are in place
//! ([`Stage::AfterThreads`]); the restorer then makes the handshake and registers the
//! saved ranges through its own copy of the descriptor
//! ([`FileKind::complete_in_process`]).
//!
//! Refused at dump, naming the process and descriptor:
//! - faults waiting for an answer (fdinfo `pending:`/`total:`): the faulting thread
//!   waits in the kernel for a reply the dump cannot carry;
//! - unread events: seen with `poll` on an `O_NONBLOCK` userfaultfd; a blocking one
//!   cannot be polled, so one with event features (fork, remap, remove, unmap) is
//!   refused;
//! - a userfaultfd held by more than one descriptor (each holder would create its own at
//!   restore);
//! - a userfaultfd whose process has no registered range: smaps cannot tell whether it
//!   is that process's (created and not registered yet) or another's (a fork event's, or
//!   one passed over a socket), whose ranges a restore would not give back;
//! - a process with registered ranges and more than one userfaultfd (smaps does not say
//!   which ranges are whose), or none (its ranges are registered on a userfaultfd held
//!   elsewhere);
//! - write-protected pages in a write-protect range (pagemap bit 57): registering again
//!   protects nothing.
//!
//! Not seen, and so not kept: `UFFD_USER_MODE_ONLY` (the kernel shows it nowhere); the
//! restored userfaultfd also handles faults raised by the kernel.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::OFlags;

use super::kind::{
    Description, DumpSink, FileError, FileKind, InProcessOpen, LiveFile, RestoreCtx, Saved, Stage,
};
use crate::mem::maps;
use crate::mem::pagemap::Pagemap;

/// userfaultfds.
pub struct UserfaultfdKind;

/// The `/proc/PID/fd/N` link of a userfaultfd.
const LINK: &str = "anon_inode:[userfaultfd]";

/// The kernel's own feature bit that marks the handshake made (`UFFD_FEATURE_INITIALIZED`).
const INITIALIZED: u64 = 1 << 31;
/// `UFFD_FEATURE_EVENT_FORK | EVENT_REMAP | EVENT_REMOVE | EVENT_UNMAP`.
const EVENTS: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6);

/// `UFFDIO_REGISTER_MODE_*`, with the `VmFlags` mark of each.
const MODES: [(u32, &str, &str); 3] = [(1, "um", "missing"), (2, "uw", "wp"), (4, "ui", "minor")];
/// `UFFDIO_REGISTER_MODE_WP`.
const MODE_WP: u32 = 2;

const PAGE: u64 = 4096;

/// The registered ranges of `pid`'s memory, from smaps.
fn registered_ranges(pid: i32) -> Result<Vec<proto::UserfaultfdRange>, String> {
    let entries = maps::smaps(pid).map_err(|e| e.to_string())?;
    let mut out: Vec<proto::UserfaultfdRange> = Vec::new();
    for e in entries {
        let mode = MODES
            .iter()
            .filter(|(_, flag, _)| e.has_vm_flag(flag))
            .fold(0, |m, (bit, _, _)| m | bit);
        if mode == 0 {
            continue;
        }
        // One registration may show as several adjacent areas (different protections):
        // each is registered again the same.
        out.push(proto::UserfaultfdRange {
            start: e.start,
            end: e.end,
            mode,
        });
    }
    Ok(out)
}

/// The number of distinct userfaultfds among `pid`'s descriptors (several descriptors
/// of one open file told apart with `kcmp`).
fn userfaultfds_of(pid: i32) -> io::Result<usize> {
    use crate::sys::kcmp::{TargetFd, kcmp_files};
    let mut fds: Vec<i32> = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if link.as_os_str() == LINK
            && let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok())
        {
            fds.push(fd);
        }
    }
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let mut distinct: Vec<i32> = Vec::new();
    for fd in fds {
        let mut known = false;
        for &seen in &distinct {
            if kcmp_files(target, TargetFd(fd), target, TargetFd(seen))?
                == std::cmp::Ordering::Equal
            {
                known = true;
                break;
            }
        }
        if !known {
            distinct.push(fd);
        }
    }
    Ok(distinct.len())
}

/// The first write-protected page of the write-protect ranges of `ranges`, if any.
fn protected_page(pid: i32, ranges: &[proto::UserfaultfdRange]) -> io::Result<Option<u64>> {
    let mut pagemap = Pagemap::open(pid)?;
    let mut entries = Vec::new();
    for r in ranges.iter().filter(|r| r.mode & MODE_WP != 0) {
        let mut at = r.start;
        while at < r.end {
            let pages = ((r.end - at) / PAGE).min(4096) as usize;
            pagemap.read(at, &mut entries, pages)?;
            if let Some(i) = entries.iter().position(|e| e.uffd_wp()) {
                return Ok(Some(at + i as u64 * PAGE));
            }
            at += pages as u64 * PAGE;
        }
    }
    Ok(None)
}

/// `start-end (missing, wp)`.
fn range_text(r: &proto::UserfaultfdRange) -> String {
    let modes: Vec<&str> = MODES
        .iter()
        .filter(|(bit, _, _)| r.mode & bit != 0)
        .map(|(_, _, name)| *name)
        .collect();
    format!("{:#x}-{:#x} ({})", r.start, r.end, modes.join(", "))
}

/// The saved record of `file`.
fn record(file: &proto::OpenFile) -> Result<&proto::Userfaultfd, FileError> {
    match &file.kind {
        Some(open_file::Kind::Userfaultfd(u)) => Ok(u),
        _ => Err(FileError::Invalid {
            id: file.id,
            reason: "not a userfaultfd".into(),
        }),
    }
}

impl FileKind for UserfaultfdKind {
    fn name(&self) -> &'static str {
        "userfaultfd"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let (pid, fd) = (file.pid, file.fd);
        let refuse = |why: String| FileError::Unsupported {
            pid,
            fd,
            kind: format!("userfaultfd {why}"),
        };
        let fail = |op, source: io::Error| FileError::Dump {
            pid,
            fd,
            what: LINK.into(),
            op,
            source,
        };
        let number = |key: &str| {
            file.info
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    fail(
                        "parse fdinfo",
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("no well-formed {key:?} line"),
                        ),
                    )
                })
        };
        let (pending, total) = (number("pending")?, number("total")?);
        // `API: aa:FEATURES:IOCTLS`, in hex.
        let features = file
            .info
            .get("API")
            .and_then(|v| v.trim().split(':').nth(1))
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .ok_or_else(|| {
                fail(
                    "parse fdinfo",
                    io::Error::new(io::ErrorKind::InvalidData, "no well-formed \"API\" line"),
                )
            })?;
        if total > 0 {
            return Err(refuse(format!(
                "with {total} fault(s) waiting for an answer ({pending} not read yet): the \
                 faulting thread waits for a reply the dump cannot carry"
            )));
        }
        let initialized = features & INITIALIZED != 0;
        let features = features & !INITIALIZED;
        let nonblock = OFlags::from_bits_retain(file.info.flags).contains(OFlags::NONBLOCK);
        if initialized && nonblock {
            let mut fds = [rustix::event::PollFd::new(
                &file.file,
                rustix::event::PollFlags::IN,
            )];
            let ready = rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default()))
                .map_err(|e| fail("poll", e.into()))?;
            if ready > 0 && fds[0].revents().contains(rustix::event::PollFlags::IN) {
                return Err(refuse(
                    "with unread events or faults (the dump cannot read them without taking \
                     them from the program)"
                        .into(),
                ));
            }
        } else if initialized && features & EVENTS != 0 {
            return Err(refuse(format!(
                "without O_NONBLOCK and with event features {:#x}: whether events wait unread \
                 cannot be seen (only an O_NONBLOCK userfaultfd can be polled)",
                features & EVENTS
            )));
        }
        let holders = sink.descriptors_of_inode(file.stat.st_ino);
        if holders.len() > 1 {
            let list: Vec<String> = holders
                .iter()
                .map(|d| format!("pid {} fd {}", d.pid, d.fd))
                .collect();
            return Err(refuse(format!(
                "held by several descriptors ({}): each would create its own at restore",
                list.join(", ")
            )));
        }
        let ranges = registered_ranges(pid).map_err(|e| fail("read smaps", io::Error::other(e)))?;
        if ranges.is_empty() {
            return Err(refuse(
                "with no range of its process registered: it may be another process's (a \
                 fork event's, or one passed over a socket), which a dump cannot tell"
                    .into(),
            ));
        }
        let count = userfaultfds_of(pid).map_err(|e| fail("read /proc/PID/fd", e))?;
        if count > 1 {
            return Err(refuse(format!(
                "(one of {count} in a process with registered ranges: smaps does not say \
                 which ranges are whose)"
            )));
        }
        if let Some(page) = protected_page(pid, &ranges).map_err(|e| fail("read pagemap", e))? {
            return Err(refuse(format!(
                "with write-protected pages (the first at {page:#x}): registering again \
                 protects none"
            )));
        }
        Ok(open_file::Kind::Userfaultfd(proto::Userfaultfd {
            initialized,
            features,
            ranges,
        }))
    }

    fn finish(
        &self,
        files: &mut [proto::OpenFile],
        sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        // A process with registered ranges and no userfaultfd of the tree: they are
        // registered on one held elsewhere, which a restore could not give back.
        let uffds: Vec<u64> = files
            .iter()
            .filter(|f| matches!(f.kind, Some(open_file::Kind::Userfaultfd(_))))
            .map(|f| f.id)
            .collect();
        let holding: BTreeMap<i32, bool> = sink
            .descriptors()
            .filter(|d| uffds.contains(&d.file_id))
            .map(|d| (d.pid, true))
            .collect();
        let processes: Vec<i32> = sink.processes().collect();
        for pid in processes {
            if holding.contains_key(&pid) {
                continue;
            }
            let ranges = registered_ranges(pid).map_err(|e| FileError::Dump {
                pid,
                fd: -1,
                what: format!("/proc/{pid}/smaps"),
                op: "read smaps",
                source: io::Error::other(e),
            })?;
            if let Some(r) = ranges.first() {
                return Err(FileError::Unsupported {
                    pid,
                    fd: -1,
                    kind: format!(
                        "memory area {} registered on a userfaultfd that no descriptor of the \
                         process holds (another process's, or one outside the tree)",
                        range_text(r)
                    ),
                });
            }
        }
        Ok(())
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Userfaultfd(_))
    }

    fn stage(&self, _file: &proto::OpenFile) -> Stage {
        Stage::AfterThreads
    }

    fn in_process_open(
        &self,
        file: &proto::OpenFile,
        _pid: i32,
        _threads: &[i32],
    ) -> Result<InProcessOpen, FileError> {
        record(file)?;
        let nonblock = OFlags::from_bits_retain(file.flags) & OFlags::NONBLOCK;
        let flags = OFlags::CLOEXEC | nonblock;
        Ok(InProcessOpen {
            nr: libc::SYS_userfaultfd,
            args: [u64::from(flags.bits()), 0, 0, 0, 0, 0],
        })
    }

    fn complete_in_process(
        &self,
        file: &proto::OpenFile,
        fd: BorrowedFd<'_>,
    ) -> Result<(), FileError> {
        let u = record(file)?;
        let fail = |op, source: io::Error| FileError::Restore {
            id: file.id,
            what: "userfaultfd".into(),
            op,
            source,
        };
        if !u.initialized {
            if u.ranges.is_empty() {
                return Ok(());
            }
            return Err(FileError::Invalid {
                id: file.id,
                reason: "a userfaultfd with registered ranges and no handshake".into(),
            });
        }
        let supported = crate::sys::uffd::api(fd, u.features).map_err(|e| fail("UFFDIO_API", e))?;
        if supported & u.features != u.features {
            return Err(fail(
                "UFFDIO_API",
                io::Error::other(format!(
                    "features {:#x} asked, {supported:#x} supported",
                    u.features
                )),
            ));
        }
        for r in &u.ranges {
            crate::sys::uffd::register(fd, r.start, r.end - r.start, u64::from(r.mode)).map_err(
                |e| FileError::Restore {
                    id: file.id,
                    what: format!("userfaultfd range {}", range_text(r)),
                    op: "UFFDIO_REGISTER",
                    source: e,
                },
            )?;
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        Err(FileError::Invalid {
            id: file.id,
            reason: "a userfaultfd is opened again by the restored process itself".into(),
        })
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match record(file) {
            Ok(u) if !u.initialized => "userfaultfd, no handshake yet".to_owned(),
            Ok(u) => {
                let ranges: Vec<String> = u.ranges.iter().map(range_text).collect();
                format!(
                    "userfaultfd, features {:#x}, registered {}",
                    u.features,
                    if ranges.is_empty() {
                        "nothing".to_owned()
                    } else {
                        ranges.join(", ")
                    }
                )
            }
            Err(_) => "userfaultfd".to_owned(),
        };
        Description { text, pipe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_reads_with_its_modes() {
        let r = proto::UserfaultfdRange {
            start: 0x1000,
            end: 0x3000,
            mode: 3,
        };
        assert_eq!(range_text(&r), "0x1000-0x3000 (missing, wp)");
    }
}
