//! fanotify groups (`fanotify_init(2)`): the flags the group was made with, the flags of
//! the descriptors its events carry, and every mark (`fanotify_mark(2)`) on an inode, a
//! mount or a whole filesystem, with its mask, ignore mask and mark flags, all read from
//! the group's `/proc/PID/fdinfo/N`.
//!
//! fdinfo names what a mark is on only by numbers. An inode mark: by inode, device and
//! file handle; the dump opens the handle (`open_by_handle_at`, like an inotify watch)
//! and saves the path it reads back, the identity and the handle. A mount mark: by mount
//! id; the dump finds the mount point in the holder's `/proc/PID/mountinfo`. A
//! filesystem mark: by device; the dump saves a mount point of that filesystem.
//! Restore opens each saved path (an inode whose path now leads elsewhere is found by
//! its handle), checks the device (and inode), and marks it again through
//! `/proc/self/fd/N`, first the mask, then the ignore mask with the flags that tell how
//! it was set (`FAN_MARK_IGNORE` or the older `FAN_MARK_IGNORED_MASK`,
//! `FAN_MARK_IGNORED_SURV_MODIFY`); `FAN_MARK_EVICTABLE` is given with the first.
//!
//! What is refused, at dump:
//! - events queued and not read (`FIONREAD` on the group): reading them consumes them,
//!   and the kernel offers no way to queue them again; a permission event would also
//!   leave its process blocked on a group that goes away. The error names the bytes.
//! - marks of a kind this version does not know (mount-namespace marks, `mnt_ns:`).
//! - an inode mark whose file pipecr finds no path to.
//!
//! Permission events already read and not answered cannot be seen from user space: the
//! kernel answers them `FAN_ALLOW` when the dumped group is closed, and the restored
//! program's answer, written later, finds no such event.
//!
//! Creating a group needs `CAP_SYS_ADMIN` (pipecr makes it with the saved flags, which
//! unprivileged groups may not use): a restore without it refuses in
//! [`FileKind::prepare`], before anything is created.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use pipecr_image::proto::{self, FanotifyMarkType, open_file};
use rustix::fs::{Mode, OFlags};

use super::common::{open_handle, stat_identity};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use crate::proc::{FanotifyMarkInfo, FanotifyObject, kernel_dev};

/// fanotify groups.
pub struct FanotifyKind;

/// The `/proc/PID/fd/N` link of a fanotify group.
const LINK: &str = "anon_inode:[fanotify]";

/// `CAP_SYS_ADMIN`.
const CAP_SYS_ADMIN: u32 = 21;

/// Mark flags fdinfo reports in `mflags:`.
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MARK_EVICTABLE: u32 = 0x200;
const FAN_MARK_IGNORE: u32 = 0x400;
/// The older way to set an ignore mask (without `FAN_MARK_IGNORE`'s stricter rules).
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
/// `FAN_MARK_ADD`, `FAN_MARK_MOUNT`, `FAN_MARK_FILESYSTEM`.
const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_FILESYSTEM: u32 = 0x100;

/// The bits of a mark's masks, as `<sys/fanotify.h>` names them.
const MASK_NAMES: &[(u32, &str)] = &[
    (0x1, "FAN_ACCESS"),
    (0x2, "FAN_MODIFY"),
    (0x4, "FAN_ATTRIB"),
    (0x8, "FAN_CLOSE_WRITE"),
    (0x10, "FAN_CLOSE_NOWRITE"),
    (0x20, "FAN_OPEN"),
    (0x40, "FAN_MOVED_FROM"),
    (0x80, "FAN_MOVED_TO"),
    (0x100, "FAN_CREATE"),
    (0x200, "FAN_DELETE"),
    (0x400, "FAN_DELETE_SELF"),
    (0x800, "FAN_MOVE_SELF"),
    (0x1000, "FAN_OPEN_EXEC"),
    (0x4000, "FAN_Q_OVERFLOW"),
    (0x8000, "FAN_FS_ERROR"),
    (0x1_0000, "FAN_OPEN_PERM"),
    (0x2_0000, "FAN_ACCESS_PERM"),
    (0x4_0000, "FAN_OPEN_EXEC_PERM"),
    (0x10_0000, "FAN_PRE_ACCESS"),
    (0x100_0000, "FAN_MNT_ATTACH"),
    (0x200_0000, "FAN_MNT_DETACH"),
    (0x800_0000, "FAN_EVENT_ON_CHILD"),
    (0x1000_0000, "FAN_RENAME"),
    (0x4000_0000, "FAN_ONDIR"),
];

/// `mask` as `FAN_MODIFY|FAN_CLOSE_WRITE` (unnamed bits in hex).
fn mask_text(mask: u32) -> String {
    let mut names = Vec::new();
    let mut rest = mask;
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

/// The one line `pipecr show` prints for a saved group.
fn text(k: &proto::Fanotify) -> String {
    let class = match k.flags & 0xc {
        0 => "notification",
        4 => "content",
        _ => "pre-content",
    };
    if k.marks.is_empty() {
        return format!("fanotify group ({class} class), no marks");
    }
    let marks: Vec<String> = k
        .marks
        .iter()
        .map(|m| {
            let what = match m.r#type() {
                FanotifyMarkType::Mount => "mount",
                FanotifyMarkType::Filesystem => "filesystem",
                _ => "inode",
            };
            let mut s = format!("{what} {} for {}", m.path, mask_text(m.mask));
            if m.ignored_mask != 0 {
                s.push_str(&format!(" ignoring {}", mask_text(m.ignored_mask)));
            }
            s
        })
        .collect();
    format!(
        "fanotify group ({class} class), marks: {}",
        marks.join("; ")
    )
}

impl FanotifyKind {
    /// Saves one mark, finding the path of what it is on.
    fn dump_mark(file: &LiveFile, m: &FanotifyMarkInfo) -> Result<proto::FanotifyMark, FileError> {
        let unsupported = |kind: String| FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind,
        };
        let mut mark = proto::FanotifyMark {
            mflags: m.mflags,
            mask: m.mask,
            ignored_mask: m.ignored_mask,
            ..Default::default()
        };
        match &m.object {
            FanotifyObject::Inode { ino, sdev, handle } => {
                let dev = kernel_dev(*sdev);
                let found = handle
                    .as_ref()
                    .and_then(|(t, h)| open_handle(dev, *ino, *t, h));
                let Some((_, path)) = found else {
                    return Err(unsupported(format!(
                        "fanotify group with a mark on a file with no path pipecr can find \
                         (inode {ino} of device {}:{})",
                        sdev >> 20,
                        sdev & 0xf_ffff
                    )));
                };
                let (handle_type, handle) = handle.clone().unwrap_or_default();
                mark.set_type(FanotifyMarkType::Inode);
                mark.path = path;
                mark.dev = dev;
                mark.inode = *ino;
                mark.handle = handle;
                mark.handle_type = handle_type;
            }
            FanotifyObject::Mount { mnt_id } => {
                let point = crate::proc::mount_point_by_id(file.pid, *mnt_id)
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        unsupported(format!(
                            "fanotify group with a mark on mount {mnt_id}, which is not in \
                             the mount table of pid {}",
                            file.pid
                        ))
                    })?;
                let stat = rustix::fs::stat(&point).map_err(|e| FileError::Dump {
                    pid: file.pid,
                    fd: file.fd,
                    what: format!("fanotify mark on mount {}", point.display()),
                    op: "stat",
                    source: e.into(),
                })?;
                mark.set_type(FanotifyMarkType::Mount);
                mark.path = point.to_string_lossy().into_owned();
                mark.dev = stat.st_dev;
                mark.mnt_id = *mnt_id;
            }
            FanotifyObject::Filesystem { sdev } => {
                let dev = kernel_dev(*sdev);
                let point = crate::proc::mount_points_of(file.pid, dev)
                    .ok()
                    .and_then(|p| p.into_iter().next())
                    .ok_or_else(|| {
                        unsupported(format!(
                            "fanotify group with a mark on filesystem {}:{}, which pid {} \
                             has no mount of",
                            sdev >> 20,
                            sdev & 0xf_ffff,
                            file.pid
                        ))
                    })?;
                mark.set_type(FanotifyMarkType::Filesystem);
                mark.path = point.to_string_lossy().into_owned();
                mark.dev = dev;
            }
            FanotifyObject::Other(key) => {
                return Err(unsupported(format!(
                    "fanotify group with a mark of a kind pipecr does not know (fdinfo \
                     \"fanotify {key}:\")"
                )));
            }
        }
        Ok(mark)
    }

    /// Opens the object a saved mark is on: by path, checked against the saved identity;
    /// an inode whose path leads elsewhere by its handle.
    fn find(m: &proto::FanotifyMark) -> Result<OwnedFd, String> {
        let by_path = rustix::fs::open(
            m.path.as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let matches = |f: &OwnedFd| match stat_identity(f.as_fd()) {
            Some((dev, ino)) if m.r#type() == FanotifyMarkType::Inode => {
                (dev, ino) == (m.dev, m.inode)
            }
            Some((dev, _)) => dev == m.dev,
            None => false,
        };
        if let Ok(f) = &by_path {
            if matches(f) {
                return by_path.map_err(|e| e.to_string());
            }
        }
        if m.r#type() == FanotifyMarkType::Inode && !m.handle.is_empty() {
            if let Some((f, _)) = open_handle(m.dev, m.inode, m.handle_type, &m.handle) {
                return Ok(f);
            }
        }
        match by_path {
            // An image moved to another machine: the path is there, the numbers differ.
            Ok(f) if m.r#type() == FanotifyMarkType::Inode => Ok(f),
            Ok(_) => Err(format!(
                "{} is on another filesystem than at dump (device {:#x})",
                m.path, m.dev
            )),
            Err(e) => Err(format!("{}: {e}", m.path)),
        }
    }
}

impl FileKind for FanotifyKind {
    fn name(&self) -> &'static str {
        "fanotify group"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link == LINK
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
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
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!(
                    "fanotify group holding {queued} bytes of unread events (pipecr cannot \
                     read them without consuming them, nor queue them again)"
                ),
            });
        }
        let group = file.info.fanotify_group().ok_or_else(|| {
            fail(
                "parse fdinfo",
                io::Error::new(io::ErrorKind::InvalidData, "no fanotify flags: line"),
            )
        })?;
        let marks = file.info.fanotify_marks().map_err(|line| {
            fail(
                "parse fdinfo",
                io::Error::new(io::ErrorKind::InvalidData, line),
            )
        })?;
        let marks = marks
            .iter()
            .map(|m| Self::dump_mark(file, m))
            .collect::<Result<_, _>>()?;
        Ok(open_file::Kind::Fanotify(proto::Fanotify {
            flags: group.flags,
            event_flags: group.event_flags,
            marks,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Fanotify(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let files = ctx.open_files()?;
        let Some(first) = files
            .iter()
            .find(|f| matches!(f.kind, Some(open_file::Kind::Fanotify(_))))
        else {
            return Ok(());
        };
        if !crate::proc::has_effective_cap(CAP_SYS_ADMIN) {
            return Err(FileError::Restore {
                id: first.id,
                what: "fanotify group".into(),
                op: "fanotify_init (needs CAP_SYS_ADMIN, which this restore lacks)",
                source: io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Fanotify(saved)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a fanotify group".into(),
            });
        };
        let fail = |what: String, op, e: io::Error| FileError::Restore {
            id: file.id,
            what,
            op,
            source: e,
        };
        let group = Fanotify::init(
            InitFlags::from_bits_retain(saved.flags),
            EventFFlags::from_bits_retain(saved.event_flags),
        )
        .map_err(|e| fail("fanotify group".into(), "fanotify_init", e.into()))?;
        // The group keeps the flags it was made with (fdinfo shows them); the descriptor
        // handed back is close-on-exec all the same, as every kind's is.
        rustix::io::fcntl_setfd(&group, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| fail("fanotify group".into(), "fcntl(F_SETFD)", e.into()))?;
        // The kernel lists a group's marks newest first: adding them oldest first (the
        // saved order reversed) lists them again as they were.
        for m in saved.marks.iter().rev() {
            let what = format!("fanotify mark on {}", m.path);
            let target = Self::find(m).map_err(|e| {
                fail(
                    what.clone(),
                    "open the marked object",
                    io::Error::new(io::ErrorKind::NotFound, e),
                )
            })?;
            let by_fd = format!("/proc/self/fd/{}", target.as_raw_fd());
            let ty = match m.r#type() {
                FanotifyMarkType::Mount => FAN_MARK_MOUNT,
                FanotifyMarkType::Filesystem => FAN_MARK_FILESYSTEM,
                _ => 0,
            };
            let evictable = m.mflags & FAN_MARK_EVICTABLE;
            if m.mask != 0 || m.ignored_mask == 0 {
                mark(&group, FAN_MARK_ADD | ty | evictable, m.mask, &by_fd)
                    .map_err(|e| fail(what.clone(), "fanotify_mark", e))?;
            }
            if m.ignored_mask != 0 {
                let how = if m.mflags & FAN_MARK_IGNORE != 0 {
                    FAN_MARK_IGNORE
                } else {
                    FAN_MARK_IGNORED_MASK
                };
                let flags =
                    FAN_MARK_ADD | ty | evictable | how | (m.mflags & FAN_MARK_IGNORED_SURV_MODIFY);
                mark(&group, flags, m.ignored_mask, &by_fd)
                    .map_err(|e| fail(what.clone(), "fanotify_mark (ignore mask)", e))?;
            }
        }
        let fd = OwnedFd::from(group);
        rustix::fs::fcntl_setfl(
            &fd,
            OFlags::from_bits_retain(file.flags) & (OFlags::NONBLOCK | OFlags::ASYNC),
        )
        .map_err(|e| fail("fanotify group".into(), "fcntl(F_SETFL)", e.into()))?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Fanotify(k)) => text(k),
            _ => "not a fanotify group".into(),
        };
        Description { text, pipe: None }
    }
}

/// `fanotify_mark(group, flags, mask, AT_FDCWD, path)`.
fn mark(group: &Fanotify, flags: u32, mask: u32, path: &str) -> io::Result<()> {
    group
        .mark(
            MarkFlags::from_bits_retain(flags),
            MaskFlags::from_bits_retain(u64::from(mask)),
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_class_marks_and_masks() {
        let mark = |ty, path: &str, mask, ignored| {
            let mut m = proto::FanotifyMark {
                path: path.into(),
                mask,
                ignored_mask: ignored,
                ..Default::default()
            };
            m.set_type(ty);
            m
        };
        let k = proto::Fanotify {
            flags: 4,
            event_flags: 0,
            marks: vec![
                mark(FanotifyMarkType::Inode, "/srv/f", 0xa, 0x20),
                mark(FanotifyMarkType::Mount, "/srv", 0x4000_0020, 0),
                mark(FanotifyMarkType::Filesystem, "/", 0x80_0000, 0),
            ],
        };
        assert_eq!(
            text(&k),
            "fanotify group (content class), marks: inode /srv/f for \
             FAN_MODIFY|FAN_CLOSE_WRITE ignoring FAN_OPEN; mount /srv for FAN_OPEN|FAN_ONDIR; \
             filesystem / for 0x800000"
        );
        assert_eq!(
            text(&proto::Fanotify::default()),
            "fanotify group (notification class), no marks"
        );
    }
}
