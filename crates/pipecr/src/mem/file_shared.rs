//! Shared mappings of files that still exist (`MAP_SHARED` with a path): their contents
//! are the file's, so nothing of them is saved. Restore opens the file in the new
//! process by path (read-write when the area is writable) and maps it `MAP_SHARED` at
//! the saved offset. Shared mappings of files that exist nowhere else are
//! [`super::memobj`]'s.

use nix::sys::mman::MapFlags;
use pipecr_image::proto::{self, VmaKind};

use super::area::{AreaKind, Classified, MapError, MapTarget, Save, map_file, prot};
use super::maps::MapEntry;
use super::types::MemError;

/// Shared file mappings.
#[derive(Debug)]
pub struct FileSharedArea;

impl AreaKind for FileSharedArea {
    fn name(&self) -> &'static str {
        "shared file"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        e.shared && !e.deleted
    }

    fn classify(&self, _pid: i32, _e: &MapEntry) -> Result<Classified, MemError> {
        Ok(Classified {
            kind: VmaKind::FileShared,
            flags: 0,
            save: Save::Nothing,
        })
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[(VmaKind::FileShared, "file-shared")]
    }

    fn mapped_file<'a>(&self, vma: &'a proto::Vma) -> Option<&'a str> {
        Some(&vma.path)
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        vma.kind == VmaKind::FileShared as i32
    }

    fn map(&self, vma: &proto::Vma, _: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        let open_flags = if vma.prot & libc::PROT_WRITE as u32 != 0 {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        // Never made writable for filling: nothing of it is written.
        map_file(to, vma, open_flags, MapFlags::MAP_SHARED, prot(vma, false))
    }
}
