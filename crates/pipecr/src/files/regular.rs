//! Regular files: the path an open file was opened by, a check that the file there is
//! still the one that was saved, and for a file whose last name was removed, its bytes.
//!
//! What every path-opened kind shares (open flags, position, identity checks) is in
//! [`super::common`]. Memfds (also regular files) belong to the memfd kind, which is asked
//! first; FIFOs to the FIFO kind.
//!
//! A file that is still linked is opened again by path and compared with its saved
//! [`FileIdentity`](proto::FileIdentity): file type, size and modification time must
//! match. Device and inode are saved but not compared, so that an image can be restored
//! on another machine holding the same files; a file replaced by another with the same
//! size and the same nanosecond mtime is not detected.
//!
//! An unlinked file (`st_nlink == 0`) keeps its bytes as a memory object
//! (`mem-objects.img`, saved once with any mapping of the same file; restore opens the
//! object it created, found by the file's device and inode, so that the descriptor and
//! the mappings are one file), or in `files-data.img` when the dump saves no objects, up to
//! [`DumpOptions::max_inline_file`](super::kind::DumpOptions::max_inline_file) bytes of
//! data. The object is sparse: only the data extents (`SEEK_DATA`/`SEEK_HOLE`) are read
//! and stored, so a 1 GiB file with a few pages written costs those pages, and the limit
//! counts data, not holes. Restore creates
//! an anonymous file (`O_TMPFILE`) in the old directory, or in `/tmp` if that is not
//! possible, fills it, and opens it again through `/proc/self/fd` with the saved flags.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use pipecr_image::proto::{self, MemObjectKind, open_file};
use rustix::fs::{FileType, Mode, OFlags};

use super::common::{
    DELETED, check_data_limit, check_identity, identity, looks_like_memfd, open_flags,
    read_contents, set_position_and_flags,
};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// Regular files opened by path, linked or not (memfds excepted).
pub struct RegularKind;

/// True when `path` names the file `stat` describes (same device and inode).
fn names(path: &str, stat: &rustix::fs::Stat) -> bool {
    rustix::fs::stat(path).is_ok_and(|s| s.st_dev == stat.st_dev && s.st_ino == stat.st_ino)
}

impl FileKind for RegularKind {
    fn name(&self) -> &'static str {
        "regular file"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::RegularFile
            && !looks_like_memfd(file)
            // A /proc file names an object of the dumped system (a pid, a descriptor) that
            // a restore does not recreate under the same name.
            && rustix::fs::fstatfs(&file.file).is_ok_and(|fs| fs.f_type != rustix::fs::PROC_SUPER_MAGIC)
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let unlinked = file.stat.st_nlink == 0;
        let path = match file.link.strip_suffix(DELETED) {
            Some(path) if unlinked => path,
            // A name that really ends in " (deleted)".
            Some(_) if names(&file.link, &file.stat) => &file.link,
            // The name this file was opened by is gone but another hard link remains:
            // the bytes are on disk, under a name /proc does not tell.
            Some(path) => {
                return Err(FileError::Unsupported {
                    pid: file.pid,
                    fd: file.fd,
                    kind: format!(
                        "regular file {path} whose name was removed while another hard link to it remains"
                    ),
                });
            }
            None => &file.link,
        };
        if !path.starts_with('/') {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("regular file {path} outside the process's root"),
            });
        }
        let contents = if unlinked {
            let size = file.stat.st_size as u64;
            let reader =
                crate::sys::fd::reopen(file.file.as_fd(), OFlags::RDONLY).map_err(|e| {
                    FileError::Dump {
                        pid: file.pid,
                        fd: file.fd,
                        what: file.link.clone(),
                        op: "open(/proc/self/fd) for reading",
                        source: e,
                    }
                })?;
            // Within the limit for data kept in the image (holes cost nothing: the memory
            // object a mapping of the file may share stores its data extents only, and
            // restore recreates the size with its holes). Inline contents, without
            // objects, are dense: read_contents holds them to the limit by size.
            check_data_limit(file, reader.as_fd(), sink.options.max_inline_file)?;
            match sink.save_object(file.pid, &reader.into(), MemObjectKind::DeletedFile, path)? {
                Some(_) => None,
                None => {
                    let bytes = read_contents(file, size, sink.options.max_inline_file)?;
                    Some(sink.writer.raw(pipecr_image::FILES_DATA)?.append(&bytes)?)
                }
            }
        } else {
            None
        };
        Ok(open_file::Kind::Regular(proto::RegularFile {
            path: path.to_owned(),
            identity: Some(identity(&file.stat)),
            unlinked,
            contents,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Regular(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Regular(regular)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a regular file".into(),
            });
        };
        let object = regular
            .identity
            .as_ref()
            .filter(|_| regular.unlinked && regular.contents.is_none())
            .and_then(|id| ctx.object_by_identity(id.dev, id.inode));
        let fd = if let Some(object) = object {
            // The memory object holding its bytes, which its mappings share: a new open
            // file of it.
            crate::sys::fd::reopen(object, open_flags(file.flags)).map_err(|e| {
                FileError::Restore {
                    id: file.id,
                    what: format!("{}{DELETED}", regular.path),
                    op: "open(/proc/self/fd)",
                    source: e,
                }
            })?
        } else if regular.unlinked {
            recreate(file, regular, ctx)?
        } else {
            // Non-blocking, so that a FIFO put where the file was cannot hang the open;
            // the saved O_NONBLOCK is set (or cleared) afterwards.
            let fd = rustix::fs::open(
                &regular.path,
                open_flags(file.flags) | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .map_err(|e| FileError::Restore {
                id: file.id,
                what: regular.path.clone(),
                op: "open",
                source: e.into(),
            })?;
            check_identity(
                file.id,
                &regular.path,
                fd.as_fd(),
                regular.identity.as_ref(),
                true,
            )?;
            fd
        };
        set_position_and_flags(fd.as_fd(), file, &regular.path)?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Regular(x)) => {
                let gone = if x.unlinked {
                    " (unlinked, contents in image)"
                } else {
                    ""
                };
                format!("file {}{gone}", x.path)
            }
            _ => "not a regular file".into(),
        };
        Description { text, pipe: None }
    }
}

/// Creates an anonymous file with the saved bytes of the unlinked `regular` and opens it
/// with the saved flags.
fn recreate(
    file: &proto::OpenFile,
    regular: &proto::RegularFile,
    ctx: &RestoreCtx<'_>,
) -> Result<OwnedFd, FileError> {
    let fail = |op, source: io::Error| FileError::Restore {
        id: file.id,
        what: format!("{}{DELETED}", regular.path),
        op,
        source,
    };
    let bytes = match &regular.contents {
        Some(data) => ctx.image.read_data(data)?,
        None => Vec::new(),
    };
    let dir = Path::new(&regular.path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/tmp"));
    let anon = crate::sys::fd::anonymous_file(dir, file.id)
        .map_err(|e| fail("create an anonymous file", e))?;
    let mut off = 0usize;
    while off < bytes.len() {
        let n = rustix::io::pwrite(&anon, &bytes[off..], off as u64)
            .map_err(|e| fail("pwrite", e.into()))?;
        off += n;
    }
    let fd = crate::sys::fd::reopen(anon.as_fd(), open_flags(file.flags))
        .map_err(|e| fail("open(/proc/self/fd)", e))?;
    // The mode last, so that a read-only file could still be filled and opened for
    // writing by a restorer without CAP_DAC_OVERRIDE.
    if let Some(saved) = &regular.identity {
        rustix::fs::fchmod(&anon, Mode::from_raw_mode(saved.mode & 0o7777))
            .map_err(|e| fail("fchmod", e.into()))?;
    }
    Ok(fd)
}
