//! Shared mappings of files that still exist (`MAP_SHARED` with a path): their contents
//! are the file's, so nothing of them is saved. Restore opens the file in the new
//! process by path (read-write when the area is writable) and maps it `MAP_SHARED` at
//! the saved offset. The file must still be there and hold at least what was mapped of
//! it when dumped (checked before anything is created): a file that shrank under a
//! mapping would fault where the program read data before. Shared mappings of files that
//! exist nowhere else are [`super::memobj`]'s.

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

    fn mapped_file_fits(&self, vma: &proto::Vma, now: &std::fs::Metadata) -> Result<(), String> {
        // Its pages are the file's: what lay in the file when dumped must still be there,
        // or the program would fault (SIGBUS) where it read data before.
        let saved = vma.identity.as_ref().map_or(0, |i| i.size);
        let needed = saved.min(vma.pgoff.saturating_add(vma.end - vma.start));
        let have = now.len();
        if !now.is_file() {
            return Err("is no longer a regular file".into());
        }
        if have.next_multiple_of(4096) < needed.next_multiple_of(4096) {
            return Err(format!(
                "is {have} bytes, but {needed} bytes of it were mapped (it was {saved} bytes when dumped)"
            ));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that shrank below what was mapped of it cannot be mapped as it was; one
    /// that grew, or shrank only past the mapped part, can.
    #[test]
    fn a_file_must_still_hold_what_was_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        // Saved: a 4-page file, its pages 1-2 mapped.
        let vma = proto::Vma {
            start: 0x10000,
            end: 0x12000,
            pgoff: 4096,
            kind: VmaKind::FileShared as i32,
            identity: Some(proto::FileIdentity {
                size: 4 * 4096,
                ..Default::default()
            }),
            ..Default::default()
        };
        let fits = |len: u64| {
            file.set_len(len).unwrap();
            FileSharedArea.mapped_file_fits(&vma, &std::fs::metadata(&path).unwrap())
        };
        assert_eq!(fits(4 * 4096), Ok(()));
        assert_eq!(fits(8 * 4096), Ok(()));
        assert_eq!(fits(3 * 4096), Ok(()), "page 3 was not mapped");
        assert_eq!(fits(2 * 4096 + 1), Ok(()), "the last page is partly there");
        let err = fits(2 * 4096).unwrap_err();
        assert!(err.contains("is 8192 bytes, but 12288 bytes"), "{err}");
        assert!(fits(0).is_err());
    }
}
