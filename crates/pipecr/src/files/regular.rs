//! Regular files: the path an open file was opened by, a check that the file there is
//! still the one that was saved, and for a file whose last name was removed, its bytes.
//!
//! This module also owns the two steps every path-opened kind shares on restore: which
//! saved status flags can be given to `open(2)` ([`open_flags`]) and putting back the
//! position and the flags `open` cannot set ([`set_position_and_flags`]). Memfds (also
//! regular files) belong to [`super::memfd`]; FIFOs to [`super::fifo`].
//!
//! A file that is still linked is opened again by path and compared with its saved
//! [`FileIdentity`](proto::FileIdentity): file type, size and modification time must
//! match. Device and inode are saved but not compared, so that an image can be restored
//! on another machine holding the same files; a file replaced by another with the same
//! size and the same nanosecond mtime is not detected.
//!
//! An unlinked file (`st_nlink == 0`) keeps its bytes in `files-data.img`, up to
//! [`DumpOptions::max_inline_file`](super::DumpOptions::max_inline_file). Restore creates
//! an anonymous file (`O_TMPFILE`) in the old directory, or in `/tmp` if that is not
//! possible, fills it, and opens it again through `/proc/self/fd` with the saved flags.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode, OFlags, SeekFrom};

use super::fifo::{DELETED, identity};
use super::{DumpSink, FileError, FileKind, LiveFile, RestoreCtx};
use crate::pipe::SETTABLE_FLAGS;

/// Regular files opened by path, linked or not (memfds excepted).
pub struct RegularKind;

/// The saved status flags that `open(2)` accepts and keeps (access mode, `O_APPEND`,
/// `O_NONBLOCK`, synchronous I/O, ...), always with `O_CLOEXEC`.
///
/// Flags that only make sense while creating a file (`O_CREAT`, `O_TRUNC`, `O_EXCL`,
/// `O_TMPFILE`, which the kernel leaves in `f_flags`), and `O_DIRECTORY`, which the caller
/// adds when it wants it, are left out.
pub(crate) fn open_flags(saved: u32) -> OFlags {
    let keep = OFlags::RWMODE
        | OFlags::APPEND
        | OFlags::NONBLOCK
        | OFlags::DIRECT
        | OFlags::DSYNC
        | OFlags::SYNC
        | OFlags::NOATIME
        | OFlags::NOFOLLOW
        | OFlags::LARGEFILE
        | OFlags::PATH;
    (OFlags::from_bits_retain(saved) & keep) | OFlags::CLOEXEC
}

/// Seeks a freshly opened `fd` to the saved position and sets the saved status flags
/// that can change after `open` (those of [`SETTABLE_FLAGS`]).
///
/// Nothing is done for an `O_PATH` file, which has neither; the seek is skipped at
/// position 0, where every new open file already is (and where devices that cannot seek
/// stay).
pub(crate) fn set_position_and_flags(
    fd: BorrowedFd<'_>,
    file: &proto::OpenFile,
    what: &str,
) -> Result<(), FileError> {
    let saved = OFlags::from_bits_retain(file.flags);
    if saved.contains(OFlags::PATH) {
        return Ok(());
    }
    let fail = |op, e: rustix::io::Errno| FileError::Restore {
        id: file.id,
        what: what.to_owned(),
        op,
        source: e.into(),
    };
    if file.pos != 0 {
        let at = rustix::fs::seek(fd, SeekFrom::Start(file.pos)).map_err(|e| fail("lseek", e))?;
        if at != file.pos {
            return Err(FileError::Restore {
                id: file.id,
                what: what.to_owned(),
                op: "lseek",
                source: io::Error::other(format!("landed at {at} instead of {}", file.pos)),
            });
        }
    }
    rustix::fs::fcntl_setfl(fd, saved & SETTABLE_FLAGS).map_err(|e| fail("fcntl(F_SETFL)", e))
}

/// Differences between a saved identity and the file now found, in words; empty when
/// they match. Only what survives a copy to another machine is compared: the file type,
/// and with `compare_contents` the size and mtime.
fn differences(
    saved: &proto::FileIdentity,
    now: &rustix::fs::Stat,
    compare_contents: bool,
) -> Vec<String> {
    let now = identity(now);
    let mut out = Vec::new();
    let (was, is) = (
        FileType::from_raw_mode(saved.mode),
        FileType::from_raw_mode(now.mode),
    );
    if was != is {
        out.push(format!(
            "it was a {}, it is now a {}",
            crate::pipe::file_type_name(was),
            crate::pipe::file_type_name(is)
        ));
        return out;
    }
    if !compare_contents {
        return out;
    }
    if saved.size != now.size {
        out.push(format!("size was {} bytes, is {}", saved.size, now.size));
    }
    if saved.mtime_ns != now.mtime_ns {
        out.push(format!(
            "mtime was {} ns, is {} ns",
            saved.mtime_ns, now.mtime_ns
        ));
    }
    out
}

/// Checks that `fd`, opened at `path` for open file `id`, is the file whose identity was
/// saved: same type, and with `compare_contents` same size and mtime.
pub(crate) fn check_identity(
    id: u64,
    path: &str,
    fd: BorrowedFd<'_>,
    saved: Option<&proto::FileIdentity>,
    compare_contents: bool,
) -> Result<(), FileError> {
    let Some(saved) = saved else {
        return Err(FileError::Invalid {
            id,
            reason: format!("{path} was saved without its identity"),
        });
    };
    let now = rustix::fs::fstat(fd).map_err(|e| FileError::Restore {
        id,
        what: path.to_owned(),
        op: "fstat",
        source: e.into(),
    })?;
    let diff = differences(saved, &now, compare_contents);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(FileError::Changed {
            id,
            path: path.to_owned(),
            what: diff.join("; "),
        })
    }
}

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
            && !super::memfd::looks_like_memfd(file)
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
            let bytes = super::read_contents(file, size, sink.options.max_inline_file)?;
            Some(sink.writer.raw(pipecr_image::FILES_DATA)?.append(&bytes)?)
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
        let fd = if regular.unlinked {
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
    let anon = anonymous_file(dir, file.id).map_err(|e| fail("create an anonymous file", e))?;
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

/// An empty, nameless, read-write file: `O_TMPFILE` in `dir`, else in `/tmp`, else a new
/// file in `/tmp` that is unlinked right away (for file systems without `O_TMPFILE`).
fn anonymous_file(dir: &Path, id: u64) -> io::Result<OwnedFd> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o600);
    if let Ok(fd) = rustix::fs::open(dir, flags, mode) {
        return Ok(fd);
    }
    if let Ok(fd) = rustix::fs::open("/tmp", flags, mode) {
        return Ok(fd);
    }
    let path = format!("/tmp/.pipecr-unlinked-{}-{id}", std::process::id());
    let fd = rustix::fs::open(
        &path,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
        mode,
    )?;
    rustix::fs::unlink(&path)?;
    Ok(fd)
}
