//! memfds (`memfd_create(2)`): anonymous memory files, whose bytes exist nowhere but in
//! the kernel, so they always travel in the image, up to
//! [`DumpOptions::max_inline_file`](super::kind::DumpOptions::max_inline_file) bytes of
//! data (holes, found with `SEEK_DATA`/`SEEK_HOLE`, are neither counted nor stored).
//!
//! A memfd is a regular file on the kernel's internal tmpfs, shown in `/proc/PID/fd` as
//! `/memfd:NAME (deleted)`; this kind must be asked before the regular-file kind, which
//! leaves such files alone ([`looks_like_memfd`]). Saved: the name, size, bytes and seals
//! (`F_GET_SEALS`). A memfd created without `MFD_ALLOW_SEALING` reports just
//! `F_SEAL_SEAL`; restore always creates the memfd with sealing allowed and adds the saved
//! seals last, so `F_SEAL_SEAL` alone reproduces that state. Hugetlbfs memfds (`MFD_HUGETLB`) are not claimed.
//!
//! Where the dump saves memory objects, the bytes and seals are the memfd's memory object
//! (`mem-objects.img`, [`DumpSink::save_object`]), saved once with every mapping of the
//! same memfd, and restore opens the object the restore created for it
//! ([`RestoreCtx::object`]): a write through the descriptor is seen in the mappings.
//! Otherwise (an image of an older version, a sink without objects) the bytes are in
//! `files-data.img` and restore creates the memfd here. What a memfd was mapped as
//! belongs to the memory dump, not here.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, MemObjectKind, open_file};
use rustix::fs::{FileType, MemfdFlags, OFlags, SealFlags};

use super::common::{
    DELETED, MEMFD_PREFIX as PREFIX, check_data_limit, looks_like_memfd, open_flags, read_contents,
    set_position_and_flags,
};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// memfds on tmpfs.
pub struct MemfdKind;

/// `HUGETLBFS_MAGIC`: a memfd made with `MFD_HUGETLB`.
const HUGETLBFS_MAGIC: rustix::fs::FsWord = 0x9584_58f6_u32 as rustix::fs::FsWord;

/// The name given to `memfd_create`, from a `/proc` link.
fn name_of(link: &str) -> &str {
    let name = link.strip_prefix(PREFIX).unwrap_or(link);
    name.strip_suffix(DELETED).unwrap_or(name)
}

impl FileKind for MemfdKind {
    fn name(&self) -> &'static str {
        "memfd"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::RegularFile
            && looks_like_memfd(file)
            // Only shmem and hugetlbfs files have seals.
            && rustix::fs::fcntl_get_seals(&file.file).is_ok()
            && rustix::fs::fstatfs(&file.file).is_ok_and(|fs| fs.f_type != HUGETLBFS_MAGIC)
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let seals = rustix::fs::fcntl_get_seals(&file.file).map_err(|e| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            op: "fcntl(F_GET_SEALS)",
            source: e.into(),
        })?;
        let size = file.stat.st_size as u64;
        // Its bytes are a memory object, saved once with the mappings of the same memfd
        // (sparse: its data extents, page by page), when the dump saves objects.
        let reader = crate::sys::fd::reopen(file.file.as_fd(), OFlags::RDONLY).map_err(|e| {
            FileError::Dump {
                pid: file.pid,
                fd: file.fd,
                what: file.link.clone(),
                op: "open(/proc/self/fd) for reading",
                source: e,
            }
        })?;
        // Within the limit for data kept in the image, holes not counted.
        check_data_limit(file, reader.as_fd(), sink.options.max_inline_file)?;
        let name = file.link.strip_suffix(DELETED).unwrap_or(&file.link);
        let object_id = sink
            .save_object(file.pid, &reader.into(), MemObjectKind::Memfd, name)?
            .unwrap_or(0);
        let contents = if object_id == 0 {
            let bytes = read_contents(file, size, sink.options.max_inline_file)?;
            Some(sink.writer.raw(pipecr_image::FILES_DATA)?.append(&bytes)?)
        } else {
            None
        };
        Ok(open_file::Kind::Memfd(proto::Memfd {
            name: name_of(&file.link).to_owned(),
            contents,
            size,
            seals: seals.bits(),
            object_id,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Memfd(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Memfd(memfd)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a memfd".into(),
            });
        };
        let what = format!("{PREFIX}{}", memfd.name);
        let fail = |op, source: io::Error| FileError::Restore {
            id: file.id,
            what: what.clone(),
            op,
            source,
        };
        if memfd.object_id != 0 {
            // The object the restore created, with its contents and seals, shared with
            // its mappings: a new open file of it.
            let object = ctx
                .object(memfd.object_id)
                .ok_or_else(|| FileError::Invalid {
                    id: file.id,
                    reason: format!(
                        "memfd {} names memory object {}, which the restore did not create",
                        memfd.name, memfd.object_id
                    ),
                })?;
            let fd = crate::sys::fd::reopen(object, open_flags(file.flags))
                .map_err(|e| fail("open(/proc/self/fd)", e))?;
            set_position_and_flags(fd.as_fd(), file, &what)?;
            return Ok(fd);
        }
        let bytes = match &memfd.contents {
            Some(data) => ctx.image.read_data(data)?,
            None => Vec::new(),
        };
        if bytes.len() as u64 > memfd.size {
            return Err(FileError::Invalid {
                id: file.id,
                reason: format!(
                    "memfd {} holds {} bytes but its size is {}",
                    memfd.name,
                    bytes.len(),
                    memfd.size
                ),
            });
        }
        let created =
            rustix::fs::memfd_create(&memfd.name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(|e| fail("memfd_create", e.into()))?;
        let mut off = 0usize;
        while off < bytes.len() {
            let n = rustix::io::pwrite(&created, &bytes[off..], off as u64)
                .map_err(|e| fail("pwrite", e.into()))?;
            off += n;
        }
        rustix::fs::ftruncate(&created, memfd.size).map_err(|e| fail("ftruncate", e.into()))?;
        // Seals after the filling, which F_SEAL_WRITE or F_SEAL_GROW would refuse, and
        // through the read-write descriptor, because F_ADD_SEALS needs one.
        let seals = SealFlags::from_bits_retain(memfd.seals);
        if !seals.is_empty() {
            rustix::fs::fcntl_add_seals(&created, seals)
                .map_err(|e| fail("fcntl(F_ADD_SEALS)", e.into()))?;
        }
        // A kernel with vm.memfd_noexec set may have sealed it further on its own.
        let now = rustix::fs::fcntl_get_seals(&created)
            .map_err(|e| fail("fcntl(F_GET_SEALS)", e.into()))?;
        if now != seals {
            return Err(fail(
                "fcntl(F_GET_SEALS)",
                io::Error::other(format!(
                    "seals are {:#x}, not the saved {:#x}",
                    now.bits(),
                    seals.bits()
                )),
            ));
        }
        // memfd_create opens read-write; any other access mode is a second open of it.
        let saved = OFlags::from_bits_retain(file.flags);
        let fd = if saved & OFlags::RWMODE == OFlags::RDWR && !saved.contains(OFlags::PATH) {
            created
        } else {
            crate::sys::fd::reopen(created.as_fd(), open_flags(file.flags))
                .map_err(|e| fail("open(/proc/self/fd)", e))?
        };
        set_position_and_flags(fd.as_fd(), file, &what)?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Memfd(x)) => {
                format!("memfd:{} ({} B, seals {:#x})", x.name, x.size, x.seals)
            }
            _ => "not a memfd".into(),
        };
        Description { text, pipe: None }
    }
}
