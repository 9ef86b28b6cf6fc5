//! Areas that map a memory object living on no disk, saved once per object (dev, inode)
//! whichever areas and processes map it: named shared anonymous memory
//! (`[anon_shmem:NAME]`) and `MAP_SHARED` mappings of a file that exists nowhere else
//! (shared `/dev/zero`, a memfd, a deleted file; System V attachments are
//! [`super::sysvshm`]'s, asked first). Reading the object
//! is left to [`super`]; restore does not map these areas yet (it refuses them before it
//! starts), so no saved area is this kind's to map.

use pipecr_image::proto::{self, MemObjectKind, VmaKind};

use super::area::{AreaKind, Classified, ObjectId, Save, deleted_object_kind, is_named_shmem};
use super::maps::MapEntry;
use super::types::MemError;

/// Shared mappings of memory objects.
#[derive(Debug)]
pub struct MemObjectArea;

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

    fn restorable(&self, _vma: &proto::Vma) -> Result<(), &'static str> {
        Err("shared memory (a memory object)")
    }

    fn restores(&self, _vma: &proto::Vma) -> bool {
        false
    }
}
