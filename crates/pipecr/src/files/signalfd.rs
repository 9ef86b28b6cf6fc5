//! signalfds (`signalfd(2)`): the set of signals one accepts, read from fdinfo's
//! `sigmask`, and its status flags. Restore makes a new signalfd with that mask.
//!
//! A signalfd holds no signals itself: a read takes them from the signals pending for
//! the reading thread and its process, which the process's own dump saves and restores
//! (`task`), so they stay pending and readable.

use std::io;
use std::os::fd::OwnedFd;

use pipecr_image::proto::{self, open_file};
use rustix::fs::OFlags;

use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// signalfds.
pub struct SignalFdKind;

/// The `/proc/PID/fd/N` link of a signalfd.
const LINK: &str = "anon_inode:[signalfd]";

/// The one line [`FileKind::describe`] gives `pipecr show` for a saved signalfd, e.g.
/// `signalfd SIGINT SIGTERM 34`.
fn text(k: &proto::SignalFd) -> String {
    let mut out = "signalfd".to_owned();
    if k.sigmask == 0 {
        out.push_str(" (no signals)");
    }
    // The standard signals by name, the real-time ones by number.
    for signo in 1..=64i32 {
        if k.sigmask & (1 << (signo - 1)) != 0 {
            out.push(' ');
            match crate::sys::names::signal_name(signo) {
                Some(name) => out.push_str(name),
                None => out.push_str(&signo.to_string()),
            }
        }
    }
    out
}

impl FileKind for SignalFdKind {
    fn name(&self) -> &'static str {
        "signalfd"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let sigmask = file.info.signalfd_mask().ok_or_else(|| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: LINK.into(),
            op: "parse fdinfo",
            source: io::Error::new(io::ErrorKind::InvalidData, "no well-formed sigmask line"),
        })?;
        Ok(open_file::Kind::Signalfd(proto::SignalFd { sigmask }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Signalfd(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Signalfd(s)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a signalfd".into(),
            });
        };
        let fail = |op, source: io::Error| FileError::Restore {
            id: file.id,
            what: "signalfd".into(),
            op,
            source,
        };
        let saved = OFlags::from_bits_retain(file.flags);
        let mut flags = libc::SFD_CLOEXEC;
        if saved.contains(OFlags::NONBLOCK) {
            flags |= libc::SFD_NONBLOCK;
        }
        let fd =
            crate::sys::signalfd::signalfd(s.sigmask, flags).map_err(|e| fail("signalfd", e))?;
        rustix::fs::fcntl_setfl(&fd, saved & (OFlags::NONBLOCK | OFlags::ASYNC))
            .map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Signalfd(k)) => text(k),
            _ => "not a signalfd".into(),
        };
        Description { text, pipe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pipecr show` prints for `k`, asked of the kind as show asks it.
    fn describe(k: &proto::SignalFd) -> String {
        let file = proto::OpenFile {
            kind: Some(open_file::Kind::Signalfd(*k)),
            ..Default::default()
        };
        let saved = Saved {
            processes: &[],
            tables: &[],
            files: &[],
            pipes: &[],
        };
        SignalFdKind.describe(&file, &saved).text
    }

    #[test]
    fn describe_names_standard_signals_and_numbers_real_time_ones() {
        let mask = (1 << (2 - 1)) | (1 << (15 - 1)) | (1 << (34 - 1));
        assert_eq!(
            describe(&proto::SignalFd { sigmask: mask }),
            "signalfd SIGINT SIGTERM 34"
        );
        assert_eq!(
            describe(&proto::SignalFd { sigmask: 0 }),
            "signalfd (no signals)"
        );
    }
}
