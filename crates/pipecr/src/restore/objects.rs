//! The memory objects of an image (`mem-objects.img`: shared anonymous memory, memfds,
//! deleted files), created once each in the restorer before any process of the tree, by
//! the kind of memory area that creates objects of their kind
//! ([`AreaKind::create_object`](crate::mem::area::AreaKind::create_object)), and filled
//! here with their saved pages.
//!
//! The restorer holds them ([`ObjectFds`]) until the tree is released: the root of the
//! tree, forked from the restorer, opens the memfds and deleted files that descriptors
//! held from them (`crate::files`), and each process being restored opens the objects it
//! maps through `/proc/RESTORER/fd/N` ([`super::mm`]). A failed restore drops them: they
//! live on nowhere.

use std::fs::File;
use std::os::fd::BorrowedFd;

use pipecr_image::proto::{self, MemObjectKind};
use pipecr_image::{Image, PAGE_SIZE};

use super::error::{ProcessRestoreError, Result, os};
use crate::mem::AREA_KINDS;
use crate::mem::area::MapError;
use crate::objects::ObjectFds;
use crate::sys::mem::FileMapping;

/// Creates and fills every memory object of `image`.
pub(super) fn create(image: &Image) -> Result<ObjectFds> {
    let mut fds = ObjectFds::new();
    if !image.dir().join(pipecr_image::MEM_OBJECTS).exists() {
        return Ok(fds);
    }
    let objects: Vec<proto::MemObject> = image.read_records(pipecr_image::MEM_OBJECTS)?;
    if objects.is_empty() {
        return Ok(fds);
    }
    let pages =
        File::open(image.dir().join(pipecr_image::PAGES)).map_err(os(0, "open pages.img"))?;
    let len = pages.metadata().map_err(os(0, "stat pages.img"))?.len();
    let map = if len > 0 {
        Some(FileMapping::map(&pages, len).map_err(os(0, "mmap pages.img"))?)
    } else {
        None
    };
    for object in &objects {
        let invalid = |what: String| ProcessRestoreError::Invalid {
            pid: 0,
            what: format!("memory object {} ({}): {what}", object.id, object.name),
        };
        let mut fill = |fd: BorrowedFd<'_>| fill(object, map.as_ref(), fd);
        let created = AREA_KINDS
            .iter()
            .find_map(|k| k.create_object(object, &mut fill))
            .ok_or_else(|| ProcessRestoreError::Unsupported {
                pid: 0,
                what: format!(
                    "memory object {} ({}, {})",
                    object.id,
                    object.name,
                    MemObjectKind::try_from(object.kind)
                        .map_or("of an unknown kind", |k| k.as_str_name())
                ),
            })?;
        let fd = created.map_err(|e| match e {
            MapError::Inject(e) => ProcessRestoreError::Inject(e),
            MapError::Unsupported { what } => ProcessRestoreError::Unsupported { pid: 0, what },
            MapError::Invalid { what } => invalid(what),
        })?;
        let (dev, ino) = object
            .identity
            .as_ref()
            .map_or((0, 0), |i| (i.dev, i.inode));
        fds.insert(object.id, dev, ino, fd);
    }
    Ok(fds)
}

/// Writes the saved pages of `object` into `fd`, from the mapping of `pages.img`.
fn fill(
    object: &proto::MemObject,
    map: Option<&FileMapping>,
    fd: BorrowedFd<'_>,
) -> std::result::Result<(), MapError> {
    let size = object.identity.as_ref().map_or(0, |i| i.size);
    for run in object.pages.iter().filter(|r| !r.zero) {
        let bad = |what: &str| MapError::Invalid {
            what: format!(
                "memory object {} ({}): page run at offset {:#x} of {} pages: {what}",
                object.id, object.name, run.start, run.nr_pages
            ),
        };
        let len = run
            .nr_pages
            .checked_mul(PAGE_SIZE)
            .ok_or_else(|| bad("too long"))?;
        let end = run.start.checked_add(len).ok_or_else(|| bad("too long"))?;
        if end > size.next_multiple_of(PAGE_SIZE) {
            return Err(bad("past the object's size"));
        }
        // The last page may lie partly past the end: only what is inside is written,
        // so that the object keeps its size.
        let len = len.min(size.saturating_sub(run.start));
        let from = run
            .store_index
            .checked_mul(PAGE_SIZE)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| bad("store index out of range"))?;
        let map = map.ok_or_else(|| bad("pages.img is empty"))?;
        map.write_to_file(from, len as usize, fd, run.start)
            .map_err(|e| bad(&format!("writing its pages failed: {e}")))?;
    }
    Ok(())
}
