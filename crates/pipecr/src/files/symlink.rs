//! Symbolic links held open themselves (`open(path, O_PATH | O_NOFOLLOW)`): the only way
//! a descriptor names a link rather than what it points to, used as a base for `*at`
//! calls with `AT_EMPTY_PATH` (`fchownat`, `readlinkat`, `linkat`).
//!
//! Saved: the path and what the link pointed to. Restore opens the link at that path
//! again the same way and checks that it still is a link with the same target. A link
//! removed while open is created again with its target beside where it was, opened and
//! removed, so the descriptor names a removed link with the same target, as it did.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode, OFlags};

use super::common::{DELETED, check_identity, identity};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// Symbolic links opened with `O_PATH | O_NOFOLLOW`.
pub struct SymlinkKind;

/// What the link `fd` (opened with `O_PATH | O_NOFOLLOW`) points to.
fn target_of(fd: BorrowedFd<'_>) -> rustix::io::Result<String> {
    let target = rustix::fs::readlinkat(fd, "", Vec::new())?;
    Ok(target.to_string_lossy().into_owned())
}

impl FileKind for SymlinkKind {
    fn name(&self) -> &'static str {
        "symbolic link"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::Symlink
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let path = match file.link.strip_suffix(DELETED) {
            Some(path) if file.stat.st_nlink == 0 => path,
            _ => &file.link,
        };
        if !path.starts_with('/') {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("symbolic link {path} outside the process's root"),
            });
        }
        let target = target_of(file.file.as_fd()).map_err(|e| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            op: "readlinkat",
            source: e.into(),
        })?;
        Ok(open_file::Kind::Symlink(proto::Symlink {
            path: path.to_owned(),
            target,
            identity: Some(identity(&file.stat)),
            unlinked: file.stat.st_nlink == 0,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Symlink(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Symlink(link)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a symbolic link".into(),
            });
        };
        let fail = |op, e: rustix::io::Errno| FileError::Restore {
            id: file.id,
            what: link.path.clone(),
            op,
            source: e.into(),
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = if link.unlinked {
            recreate_removed(link, flags).map_err(|(op, e)| fail(op, e))?
        } else {
            rustix::fs::open(&link.path, flags, Mode::empty()).map_err(|e| fail("open", e))?
        };
        check_identity(
            file.id,
            &link.path,
            fd.as_fd(),
            link.identity.as_ref(),
            false,
        )?;
        let now = target_of(fd.as_fd()).map_err(|e| fail("readlinkat", e))?;
        if now != link.target {
            return Err(FileError::Changed {
                id: file.id,
                path: link.path.clone(),
                what: format!("it pointed to {:?}, it points to {now:?}", link.target),
            });
        }
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Symlink(x)) => {
                let gone = if x.unlinked { " (removed)" } else { "" };
                format!("symbolic link {} -> {}{gone}", x.path, x.target)
            }
            _ => "not a symbolic link".into(),
        };
        Description { text, pipe: None }
    }
}

/// Creates the removed `link` again with its target, at its old path when that is free,
/// else under a new name in the same directory, opens it with `flags` and removes it.
fn recreate_removed(
    link: &proto::Symlink,
    flags: OFlags,
) -> Result<OwnedFd, (&'static str, rustix::io::Errno)> {
    let old = Path::new(&link.path);
    let dir = old.parent().unwrap_or(Path::new("/"));
    let candidates = [
        old.to_path_buf(),
        dir.join(format!(".pipecr-removed-link-{}", std::process::id())),
    ];
    let mut last = rustix::io::Errno::EXIST;
    for path in &candidates {
        match rustix::fs::symlink(&link.target, path) {
            Ok(()) => {
                let fd = rustix::fs::open(path, flags, Mode::empty());
                let removed = rustix::fs::unlink(path);
                let fd = fd.map_err(|e| ("open", e))?;
                removed.map_err(|e| ("unlink", e))?;
                return Ok(fd);
            }
            Err(e) => last = e,
        }
    }
    Err(("symlink", last))
}
