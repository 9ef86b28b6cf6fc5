//! Private anonymous memory: areas without a file, `[heap]`, `[stack]` and named
//! anonymous areas (`[anon:NAME]`). Their present pages are saved (from pagemap, by
//! [`super`]); restore maps them `MAP_PRIVATE | MAP_ANONYMOUS` and writes the pages. A
//! shared area without a file is refused (named shared anonymous memory is
//! [`super::memobj`]'s).

use nix::sys::mman::MapFlags;
use pipecr_image::proto::{self, VmaFlag, VmaKind};

use super::area::{AreaKind, Classified, MapError, MapTarget, Save, prot, unsupported};
use super::maps::MapEntry;
use super::types::MemError;

/// Private anonymous areas.
#[derive(Debug)]
pub struct AnonArea;

impl AreaKind for AnonArea {
    fn name(&self) -> &'static str {
        "anonymous"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        match e.special() {
            Some(s) => s == "[heap]" || s == "[stack]" || s.starts_with("[anon:"),
            None => e.inode == 0 && e.path.is_empty(),
        }
    }

    fn classify(&self, pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        let kind = match e.special() {
            Some("[heap]") => VmaKind::Heap,
            Some("[stack]") => VmaKind::Stack,
            Some(_) => VmaKind::Anonymous,
            None if e.shared => {
                return Err(unsupported(pid, e, "a shared mapping without a file"));
            }
            None => VmaKind::Anonymous,
        };
        Ok(Classified {
            kind,
            flags: VmaFlag::Anonymous as u32,
            save: Save::Private,
        })
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[
            (VmaKind::Anonymous, "anonymous"),
            (VmaKind::Heap, "heap"),
            (VmaKind::Stack, "stack"),
        ]
    }

    fn inherited_copy_on_write(&self, vma: &proto::Vma) -> bool {
        // Not the stack: it grows down, and each process has its own.
        matches!(
            VmaKind::try_from(vma.kind),
            Ok(VmaKind::Anonymous | VmaKind::Heap)
        )
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        matches!(
            VmaKind::try_from(vma.kind),
            Ok(VmaKind::Anonymous | VmaKind::Heap | VmaKind::Stack)
        )
    }

    fn filled_privately(&self) -> bool {
        true
    }

    fn map(&self, vma: &proto::Vma, written: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        let mut flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED;
        if vma.flags & VmaFlag::Growsdown as u32 != 0 {
            flags |= MapFlags::MAP_GROWSDOWN;
        }
        to.injector().remote_mmap(
            vma.start,
            vma.end - vma.start,
            prot(vma, written),
            flags,
            None,
            0,
        )?;
        Ok(())
    }
}
