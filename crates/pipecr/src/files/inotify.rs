//! inotify instances (`inotify_init1(2)`): every watch with its watch descriptor, its
//! mask and the file it watches, from the `inotify wd:` lines of `/proc/PID/fdinfo/N`.
//!
//! fdinfo names a watched file only by inode, device and file handle. The dump opens
//! the handle (`open_by_handle_at`, on a mount of that device; needs
//! `CAP_DAC_READ_SEARCH`) and reads the path back from `/proc/self/fd`. It saves the
//! path, the (device, inode) identity and the handle.
//!
//! Restore opens the path and checks the identity; if the path leads elsewhere or
//! nowhere, the handle finds the file; failing that, a path that exists is taken (an
//! image moved to another machine, where inode numbers differ). Watch descriptors are
//! numbers the program keeps, and the kernel hands them out in increasing order
//! (`idr_alloc_cyclic` from 1, never reusing a removed one until it wraps): watches are
//! added in increasing wd order, and a number below the wanted one is added and removed
//! again until the wanted one comes. The `IN_IGNORED` events those removals queue are
//! read out before the descriptor is handed over.
//!
//! Events queued and not yet read cannot be saved: reading them consumes them. A dump of
//! an instance that holds some stops and says how many bytes would be lost, unless
//! [`DumpOptions::drop_inotify_events`](super::kind::DumpOptions::drop_inotify_events)
//! asks to save it without them: the live instance keeps its events (nothing is read),
//! the restored one has none, and the sink records how many bytes the image lacks.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::common::{open_handle, stat_identity as identity};
use super::kind::{
    Description, Dropped, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved,
};
use crate::proc::InotifyWatchInfo;

/// inotify instances.
pub struct InotifyKind;

/// The `/proc/PID/fd/N` link of an inotify instance.
const LINK: &str = "anon_inode:inotify";

/// After this many watches added and removed to reach a wanted wd, the `IN_IGNORED`
/// events they queued are read out, so the queue never overflows.
const DRAIN_EVERY: u32 = 1024;

/// The bits of a watch's mask, named as `<sys/inotify.h>` names them.
const MASK_NAMES: &[(u32, &str)] = &[
    (libc::IN_ACCESS, "IN_ACCESS"),
    (libc::IN_MODIFY, "IN_MODIFY"),
    (libc::IN_ATTRIB, "IN_ATTRIB"),
    (libc::IN_CLOSE_WRITE, "IN_CLOSE_WRITE"),
    (libc::IN_CLOSE_NOWRITE, "IN_CLOSE_NOWRITE"),
    (libc::IN_OPEN, "IN_OPEN"),
    (libc::IN_MOVED_FROM, "IN_MOVED_FROM"),
    (libc::IN_MOVED_TO, "IN_MOVED_TO"),
    (libc::IN_CREATE, "IN_CREATE"),
    (libc::IN_DELETE, "IN_DELETE"),
    (libc::IN_DELETE_SELF, "IN_DELETE_SELF"),
    (libc::IN_MOVE_SELF, "IN_MOVE_SELF"),
    (libc::IN_UNMOUNT, "IN_UNMOUNT"),
    (libc::IN_Q_OVERFLOW, "IN_Q_OVERFLOW"),
    (libc::IN_IGNORED, "IN_IGNORED"),
    (libc::IN_ONLYDIR, "IN_ONLYDIR"),
    (libc::IN_DONT_FOLLOW, "IN_DONT_FOLLOW"),
    (libc::IN_EXCL_UNLINK, "IN_EXCL_UNLINK"),
    (libc::IN_MASK_CREATE, "IN_MASK_CREATE"),
    (libc::IN_MASK_ADD, "IN_MASK_ADD"),
    (libc::IN_ISDIR, "IN_ISDIR"),
    (libc::IN_ONESHOT, "IN_ONESHOT"),
];

/// `mask` as `IN_CREATE|IN_DELETE` (every event: `IN_ALL_EVENTS`; unnamed bits in hex).
fn mask_text(mask: u32) -> String {
    let mut names = Vec::new();
    let mut rest = mask;
    if mask & libc::IN_ALL_EVENTS == libc::IN_ALL_EVENTS {
        names.push("IN_ALL_EVENTS".to_owned());
        rest &= !libc::IN_ALL_EVENTS;
    }
    for &(bit, name) in MASK_NAMES {
        if rest & bit != 0 {
            names.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 || names.is_empty() {
        names.push(format!("{rest:#x}"));
    }
    names.join("|")
}

/// The one line [`FileKind::describe`] gives `pipecr show` for a saved inotify instance,
/// e.g. `inotify, watches: wd 1 /srv/in for IN_CREATE; wd 3 /etc/app.conf for IN_MODIFY`.
fn text(k: &proto::Inotify) -> String {
    if k.watches.is_empty() {
        return "inotify, no watches".into();
    }
    let watches: Vec<String> = k
        .watches
        .iter()
        .map(|w| format!("wd {} {} for {}", w.wd, w.path, mask_text(w.mask)))
        .collect();
    format!("inotify, watches: {}", watches.join("; "))
}

impl InotifyKind {
    /// Finds the file of one watch at dump time.
    fn dump_watch(file: &LiveFile, w: &InotifyWatchInfo) -> Result<proto::InotifyWatch, FileError> {
        let (handle_type, handle) = w.handle.clone().unwrap_or_default();
        let found = w
            .handle
            .as_ref()
            .and_then(|(t, h)| open_handle(w.dev(), w.ino, *t, h));
        let Some((_, path)) = found else {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!(
                    "inotify instance whose watch {} is on a file with no path pipecr can \
                     find (inode {} of device {}:{})",
                    w.wd,
                    w.ino,
                    w.sdev >> 20,
                    w.sdev & 0xf_ffff
                ),
            });
        };
        Ok(proto::InotifyWatch {
            wd: w.wd,
            mask: w.mask,
            path,
            dev: w.dev(),
            inode: w.ino,
            handle,
            handle_type,
        })
    }

    /// Opens (`O_PATH`) the file a saved watch watches, as the module doc says.
    fn find(w: &proto::InotifyWatch) -> Option<OwnedFd> {
        let by_path = rustix::fs::open(
            w.path.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok();
        if let Some(f) = &by_path {
            if identity(f.as_fd()) == Some((w.dev, w.inode)) {
                return by_path;
            }
        }
        if !w.handle.is_empty() {
            if let Some((f, _)) = open_handle(w.dev, w.inode, w.handle_type, &w.handle) {
                return Some(f);
            }
        }
        by_path
    }
}

/// Reads every queued event of `fd` (non-blocking) and throws it away.
fn drain(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(Errno::AGAIN) => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

impl FileKind for InotifyKind {
    fn name(&self) -> &'static str {
        "inotify instance"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: LINK.into(),
            op,
            source,
        };
        let queued = rustix::io::ioctl_fionread(&file.file)
            .map_err(|e| fail("ioctl(FIONREAD)", e.into()))?;
        if queued > 0 {
            if !sink.options.drop_inotify_events {
                return Err(FileError::Unsupported {
                    pid: file.pid,
                    fd: file.fd,
                    kind: format!(
                        "inotify instance holding {queued} bytes of unread events (pipecr \
                         cannot save them without consuming them; --drop-inotify-events \
                         saves the instance and its watches without them)"
                    ),
                });
            }
            // Nothing is read: the live instance keeps its events for a tree that runs
            // on; only the restored one lacks them.
            sink.drop_state(Dropped {
                pid: file.pid,
                fd: file.fd,
                what: format!("{queued} bytes of queued inotify events"),
            });
        }
        let mut watches = file.info.inotify_watches().map_err(|line| {
            fail(
                "parse fdinfo",
                io::Error::new(io::ErrorKind::InvalidData, line),
            )
        })?;
        watches.sort_by_key(|w| w.wd);
        let watches = watches
            .iter()
            .map(|w| Self::dump_watch(file, w))
            .collect::<Result<_, _>>()?;
        Ok(open_file::Kind::Inotify(proto::Inotify { watches }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Inotify(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Inotify(saved)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not an inotify instance".into(),
            });
        };
        let fail = |what: String, op, e: Errno| FileError::Restore {
            id: file.id,
            what,
            op,
            source: e.into(),
        };
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| fail("inotify".into(), "inotify_init1", e))?;
        let mut watches: Vec<&proto::InotifyWatch> = saved.watches.iter().collect();
        watches.sort_by_key(|w| w.wd);
        let mut made = BTreeSet::new();
        for w in watches {
            let what = format!("inotify watch {} on {}", w.wd, w.path);
            let Some(target) = Self::find(w) else {
                return Err(fail(what, "open the watched file", Errno::NOENT));
            };
            let by_fd = format!("/proc/self/fd/{}", target.as_raw_fd());
            let mut skipped = 0u32;
            loop {
                let got =
                    inotify::add_watch(&fd, by_fd.as_str(), WatchFlags::from_bits_retain(w.mask))
                        .map_err(|e| fail(what.clone(), "inotify_add_watch", e))?;
                if got == w.wd {
                    made.insert(got);
                    break;
                }
                if made.contains(&got) {
                    return Err(FileError::Invalid {
                        id: file.id,
                        reason: format!("{what}: the file is the one watch {got} watches already"),
                    });
                }
                if got > w.wd {
                    return Err(FileError::Invalid {
                        id: file.id,
                        reason: format!(
                            "{what}: watch descriptor {} cannot be made again (the kernel \
                             gave {got}: the saved numbers are not increasing from 1)",
                            w.wd
                        ),
                    });
                }
                inotify::remove_watch(&fd, got)
                    .map_err(|e| fail(what.clone(), "inotify_rm_watch", e))?;
                skipped += 1;
                if skipped % DRAIN_EVERY == 0 {
                    drain(fd.as_fd()).map_err(|e| fail(what.clone(), "read", e))?;
                }
            }
        }
        drain(fd.as_fd()).map_err(|e| fail("inotify".into(), "read", e))?;
        rustix::fs::fcntl_setfl(
            &fd,
            OFlags::from_bits_retain(file.flags) & (OFlags::NONBLOCK | OFlags::ASYNC),
        )
        .map_err(|e| fail("inotify".into(), "fcntl(F_SETFL)", e))?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Inotify(k)) => text(k),
            _ => "not an inotify instance".into(),
        };
        Description { text, pipe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pipecr show` prints for `k`, asked of the kind as show asks it.
    fn describe(k: &proto::Inotify) -> String {
        let file = proto::OpenFile {
            kind: Some(open_file::Kind::Inotify(k.clone())),
            ..Default::default()
        };
        let saved = Saved {
            processes: &[],
            tables: &[],
            files: &[],
            pipes: &[],
        };
        InotifyKind.describe(&file, &saved).text
    }

    #[test]
    fn describe_lists_every_watch() {
        let w = |wd, path: &str, mask| proto::InotifyWatch {
            wd,
            mask,
            path: path.into(),
            ..Default::default()
        };
        let k = proto::Inotify {
            watches: vec![
                w(1, "/srv/in", 0x100),
                w(3, "/etc/app.conf", 0x8000_0002),
                w(4, "/var", 0x0100_0fff),
                w(5, "/odd", 0x0800_0000),
            ],
        };
        assert_eq!(
            describe(&k),
            "inotify, watches: wd 1 /srv/in for IN_CREATE; wd 3 /etc/app.conf for \
             IN_MODIFY|IN_ONESHOT; wd 4 /var for IN_ALL_EVENTS|IN_ONLYDIR; wd 5 /odd for \
             0x8000000"
        );
        assert_eq!(describe(&proto::Inotify::default()), "inotify, no watches");
    }
}
