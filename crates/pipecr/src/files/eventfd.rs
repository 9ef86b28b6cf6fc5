//! eventfd counters (`eventfd(2)`): the count and whether reads take one at a time
//! (`EFD_SEMAPHORE`), both read from `/proc/PID/fdinfo/N` without touching the counter.
//!
//! The kernel prints `eventfd-count` in hexadecimal (`%16llx`, padded with spaces) and
//! `eventfd-semaphore` (0 or 1) since Linux 6.6. On an older kernel the semaphore mode
//! cannot be known without reading the counter, which would change it: such an eventfd is
//! refused rather than guessed.
//!
//! Restore creates a new counter at zero and adds the count with one `write`, because
//! `eventfd`'s initial value is only 32 bits wide and a count is 64.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::event::EventfdFlags;
use rustix::fs::OFlags;

use super::common::set_position_and_flags;
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// eventfd counters.
pub struct EventFdKind;

/// The `/proc/PID/fd/N` link of an eventfd.
const LINK: &str = "anon_inode:[eventfd]";

impl FileKind for EventFdKind {
    fn name(&self) -> &'static str {
        "eventfd"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let bad = |what: &str| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: LINK.into(),
            op: "parse fdinfo",
            source: io::Error::new(io::ErrorKind::InvalidData, what.to_owned()),
        };
        let count = file
            .info
            .get("eventfd-count")
            .ok_or_else(|| bad("no eventfd-count line"))?;
        let count = u64::from_str_radix(count.trim(), 16)
            .map_err(|_| bad(&format!("eventfd-count {count:?} is not hexadecimal")))?;
        let semaphore = match file.info.get("eventfd-semaphore").map(str::trim) {
            Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(bad(&format!(
                    "eventfd-semaphore {other:?} is neither 0 nor 1"
                )));
            }
            None => {
                return Err(FileError::Unsupported {
                    pid: file.pid,
                    fd: file.fd,
                    kind: "eventfd on a kernel that does not report its semaphore mode \
                           (no eventfd-semaphore in fdinfo before Linux 6.6)"
                        .into(),
                });
            }
        };
        Ok(open_file::Kind::Eventfd(proto::EventFd {
            count,
            semaphore,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Eventfd(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Eventfd(ev)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not an eventfd".into(),
            });
        };
        if ev.count == u64::MAX {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "eventfd count 0xffffffffffffffff is more than a counter holds".into(),
            });
        }
        let fail = |op, e: rustix::io::Errno| FileError::Restore {
            id: file.id,
            what: "eventfd".into(),
            op,
            source: e.into(),
        };
        let mut flags = EventfdFlags::CLOEXEC;
        if ev.semaphore {
            flags |= EventfdFlags::SEMAPHORE;
        }
        if OFlags::from_bits_retain(file.flags).contains(OFlags::NONBLOCK) {
            flags |= EventfdFlags::NONBLOCK;
        }
        let fd = rustix::event::eventfd(0, flags).map_err(|e| fail("eventfd", e))?;
        if ev.count != 0 {
            // Cannot block: the counter is 0 and count is at most u64::MAX - 1.
            let n =
                rustix::io::write(&fd, &ev.count.to_ne_bytes()).map_err(|e| fail("write", e))?;
            if n != 8 {
                return Err(fail("write", rustix::io::Errno::IO));
            }
        }
        set_position_and_flags(fd.as_fd(), file, "eventfd")?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Eventfd(x)) => {
                let sem = if x.semaphore { ", semaphore" } else { "" };
                format!("eventfd, count {}{sem}", x.count)
            }
            _ => "not an eventfd".into(),
        };
        Description { text, pipe: None }
    }
}
