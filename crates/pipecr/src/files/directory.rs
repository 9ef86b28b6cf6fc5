//! Directories opened with `open(2)` (a working directory kept open, a base for `*at`
//! calls, a directory being listed): the path, and the position of a listing in progress.
//!
//! Restore opens the path again and checks only that it still is a directory: a
//! directory's size and mtime change whenever an entry is added or removed, which is no
//! sign that it is another directory. The position is the opaque cookie of `getdents64`,
//! which `lseek` accepts back on the common file systems (ext4, xfs, btrfs, tmpfs); a
//! listing resumed after entries changed may skip or repeat some, as it would have in the
//! original process. A directory removed while open (its descriptor can still be a
//! working directory or an `O_PATH` base, and lists nothing) is created again, empty, at
//! its path if that is free or beside it, opened and removed: the descriptor again names
//! a removed, empty directory.

use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode, OFlags};

use super::common::{DELETED, check_identity, identity, open_flags, set_position_and_flags};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// Directories.
pub struct DirectoryKind;

impl FileKind for DirectoryKind {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::Directory
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        // A removed directory has no links left (not even its own "."): st_nlink 0.
        let unlinked = file.stat.st_nlink == 0;
        let path = match file.link.strip_suffix(DELETED) {
            Some(path) if unlinked => path,
            _ => &file.link,
        };
        if !path.starts_with('/') {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("directory {path} outside the process's root"),
            });
        }
        Ok(open_file::Kind::Directory(proto::Directory {
            path: path.to_owned(),
            identity: Some(identity(&file.stat)),
            unlinked,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Directory(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Directory(dir)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a directory".into(),
            });
        };
        // A directory is only ever open for reading (or as O_PATH); O_DIRECTORY makes a
        // path that is no longer a directory fail here rather than open something else.
        let flags = (open_flags(file.flags) & !OFlags::RWMODE) | OFlags::RDONLY | OFlags::DIRECTORY;
        if dir.unlinked {
            let fd = recreate_removed(dir, flags).map_err(|(op, e)| FileError::Restore {
                id: file.id,
                what: format!("{}{DELETED}", dir.path),
                op,
                source: e.into(),
            })?;
            set_position_and_flags(fd.as_fd(), file, &dir.path)?;
            return Ok(fd);
        }
        let fd = rustix::fs::open(&dir.path, flags, Mode::empty()).map_err(|e| match e {
            rustix::io::Errno::NOTDIR => FileError::Changed {
                id: file.id,
                path: dir.path.clone(),
                what: "it is no longer a directory".into(),
            },
            e => FileError::Restore {
                id: file.id,
                what: dir.path.clone(),
                op: "open",
                source: e.into(),
            },
        })?;
        check_identity(file.id, &dir.path, fd.as_fd(), dir.identity.as_ref(), false)?;
        set_position_and_flags(fd.as_fd(), file, &dir.path)?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Directory(x)) if x.unlinked => {
                format!("directory {} (removed)", x.path)
            }
            Some(open_file::Kind::Directory(x)) => format!("directory {}", x.path),
            _ => "not a directory".into(),
        };
        Description { text, pipe: None }
    }
}

/// Creates the removed directory `dir` again, empty and with its mode, at its old path
/// when that is free, else beside it, opens it with `flags` and removes it.
fn recreate_removed(
    dir: &proto::Directory,
    flags: OFlags,
) -> Result<OwnedFd, (&'static str, rustix::io::Errno)> {
    let old = std::path::Path::new(&dir.path);
    let parent = old.parent().unwrap_or(std::path::Path::new("/"));
    let mode = dir.identity.as_ref().map_or(0o700, |i| i.mode & 0o7777);
    let candidates = [
        old.to_path_buf(),
        parent.join(format!(".pipecr-removed-dir-{}", std::process::id())),
    ];
    let mut last = rustix::io::Errno::EXIST;
    for path in &candidates {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                // The mode exactly, whatever the umask.
                let _ = rustix::fs::chmod(path, Mode::from_raw_mode(mode));
                let fd = rustix::fs::open(path, flags, Mode::empty());
                let removed = rustix::fs::rmdir(path);
                let fd = fd.map_err(|e| ("open", e))?;
                removed.map_err(|e| ("rmdir", e))?;
                return Ok(fd);
            }
            Err(e) => last = e,
        }
    }
    Err(("mkdir", last))
}
