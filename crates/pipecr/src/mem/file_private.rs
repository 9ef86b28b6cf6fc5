//! Private mappings of files (`MAP_PRIVATE` with a path): code and data of the
//! executable and libraries, private mappings of any file. The pages written since they
//! were mapped are saved (from pagemap, by [`super`]); when the file exists nowhere else
//! (deleted, a memfd, ...) the object behind it is saved too. Restore opens the file in
//! the new process by path (or, for such a file, the object restore created from the
//! saved one, [`MapTarget::object`]), read-only, and maps it `MAP_PRIVATE` at the saved
//! offset; the saved pages are written over it.

use nix::sys::mman::MapFlags;
use pipecr_image::proto::{self, VmaKind};

use super::area::{
    AreaKind, Classified, MapError, MapTarget, ObjectId, Save, deleted_object_kind, map_file, prot,
};
use super::maps::MapEntry;
use super::types::MemError;

/// Private file mappings.
#[derive(Debug)]
pub struct FilePrivateArea;

impl AreaKind for FilePrivateArea {
    fn name(&self) -> &'static str {
        "private file"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        !e.shared
    }

    fn classify(&self, _pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        let save = if e.deleted {
            Save::PrivateAndObject(deleted_object_kind(e))
        } else {
            Save::Private
        };
        Ok(Classified {
            kind: VmaKind::FilePrivate,
            flags: 0,
            save,
        })
    }

    fn object(&self, e: &MapEntry) -> Option<ObjectId> {
        e.deleted.then(|| ObjectId::of(e))
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[(VmaKind::FilePrivate, "file-private")]
    }

    fn mapped_file<'a>(&self, vma: &'a proto::Vma) -> Option<&'a str> {
        // A file that exists nowhere else is mapped from its object, not by path.
        (vma.object_id == 0).then_some(vma.path.as_str())
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        vma.kind == VmaKind::FilePrivate as i32
    }

    fn filled_privately(&self) -> bool {
        true
    }

    fn map(&self, vma: &proto::Vma, written: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        map_file(
            to,
            vma,
            libc::O_RDONLY,
            MapFlags::MAP_PRIVATE,
            prot(vma, written),
        )
    }
}
