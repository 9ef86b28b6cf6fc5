//! Areas that map a memory object living on no disk, saved once per object (dev, inode)
//! whichever areas and processes map it: shared anonymous memory (`MAP_SHARED |
//! MAP_ANONYMOUS`, a shared mapping of `/dev/zero`: maps shows `/dev/zero (deleted)`;
//! named, `[anon_shmem:NAME]`) and `MAP_SHARED` mappings of a file that exists nowhere
//! else (a memfd, a deleted file). Reading the object is left to [`super`].
//!
//! Restore creates each object once, in the restorer, before the tree
//! ([`AreaKind::create_object`]): shared anonymous memory as the kernel makes it (a shmem
//! object of the saved size, so maps shows `/dev/zero (deleted)` again), a memfd with its
//! name (its seals added once it is filled), a deleted file as a nameless file
//! (`O_TMPFILE`) in its old directory (its mode set once it is filled). Every area that
//! mapped the object maps it again `MAP_SHARED` from that object (through
//! [`MapTarget::object`]), so the processes share it again; a descriptor of the same
//! memfd or deleted file is opened from it too (`crate::files`). The private mappings of
//! such objects are [`super::file_private`]'s. System V shared memory is saved here
//! too, and refused at restore until a kind of its own, listed before this one, takes it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sys::mman::MapFlags;
use pipecr_image::proto::{self, MemObjectKind, VmaKind};
use rustix::fs::{MemfdFlags, Mode, SealFlags};

use super::area::{
    AreaKind, Classified, FillObject, MapError, MapTarget, ObjectId, Save, deleted_object_kind,
    is_named_shmem, map_file, prot,
};
use super::maps::MapEntry;
use super::types::MemError;

/// Shared mappings of memory objects.
#[derive(Debug)]
pub struct MemObjectArea;

/// The prefix of a memfd's name in `/proc`.
const MEMFD_PREFIX: &str = "/memfd:";

impl AreaKind for MemObjectArea {
    fn name(&self) -> &'static str {
        "memory object"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        is_named_shmem(e) || e.shared && e.deleted && e.special().is_none()
    }

    fn classify(&self, _pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        let object = if is_named_shmem(e) {
            MemObjectKind::SharedAnonymous
        } else {
            deleted_object_kind(e)
        };
        Ok(Classified {
            kind: VmaKind::Object,
            flags: 0,
            save: Save::Object(object),
        })
    }

    fn object(&self, e: &MapEntry) -> Option<ObjectId> {
        Some(ObjectId::of(e))
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[(VmaKind::Object, "shared-object")]
    }

    fn restorable(&self, vma: &proto::Vma) -> Result<(), &'static str> {
        if vma.object_id == 0 {
            return Err("shared memory whose object is not in the image");
        }
        if vma.path.starts_with("/SYSV") {
            return Err("System V shared memory");
        }
        if vma.path.starts_with("[anon_shmem:") {
            // PR_SET_VMA_ANON_NAME is refused on a mapping of a shmem file.
            return Err("named shared anonymous memory ([anon_shmem:NAME])");
        }
        Ok(())
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        vma.kind == VmaKind::Object as i32
    }

    fn create_object(
        &self,
        object: &proto::MemObject,
        fill: &mut FillObject<'_>,
    ) -> Option<Result<OwnedFd, MapError>> {
        let kind = MemObjectKind::try_from(object.kind).ok()?;
        if !matches!(
            kind,
            MemObjectKind::SharedAnonymous | MemObjectKind::Memfd | MemObjectKind::DeletedFile
        ) {
            return None;
        }
        Some(create(kind, object, fill))
    }

    fn map(&self, vma: &proto::Vma, _: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        // Read-write whatever the protection: the original object was open read-write
        // (shared anonymous memory always is), so a later mprotect(PROT_WRITE) works.
        // Never made writable for filling: the object holds the contents.
        map_file(
            to,
            vma,
            libc::O_RDWR,
            MapFlags::MAP_SHARED,
            prot(vma, false),
        )
    }
}

/// Creates `object` of `kind` (see the module documentation).
fn create(
    kind: MemObjectKind,
    object: &proto::MemObject,
    fill: &mut FillObject<'_>,
) -> Result<OwnedFd, MapError> {
    let size = object.identity.as_ref().map_or(0, |i| i.size);
    let fail = |op: &str, e: std::io::Error| MapError::Invalid {
        what: format!(
            "memory object {} ({}): {op} failed: {e}",
            object.id, object.name
        ),
    };
    let fd: OwnedFd = match kind {
        MemObjectKind::SharedAnonymous => crate::sys::mem::shared_anonymous(size)
            .map_err(|e| fail("creating shared anonymous memory", e))?,
        MemObjectKind::Memfd => {
            let name = object
                .name
                .strip_prefix(MEMFD_PREFIX)
                .unwrap_or(&object.name);
            let fd =
                rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                    .map_err(|e| fail("memfd_create", e.into()))?;
            rustix::fs::ftruncate(&fd, size).map_err(|e| fail("ftruncate", e.into()))?;
            fd
        }
        _ => {
            let dir = Path::new(&object.name)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("/tmp"));
            let fd = crate::sys::fd::anonymous_file(dir, object.id)
                .map_err(|e| fail("creating an anonymous file", e))?;
            rustix::fs::ftruncate(&fd, size).map_err(|e| fail("ftruncate", e.into()))?;
            fd
        }
    };
    fill(fd.as_fd())?;
    match kind {
        MemObjectKind::Memfd if object.seals != 0 => {
            let seals = SealFlags::from_bits_retain(object.seals);
            rustix::fs::fcntl_add_seals(&fd, seals)
                .map_err(|e| fail("fcntl(F_ADD_SEALS)", e.into()))?;
        }
        MemObjectKind::DeletedFile => {
            if let Some(identity) = &object.identity {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(identity.mode & 0o7777))
                    .map_err(|e| fail("fchmod", e.into()))?;
            }
        }
        _ => {}
    }
    Ok(fd)
}
