//! The kernel's special areas that are not anonymous memory: `[vdso]`, `[vvar]`,
//! `[vvar_vclock]`, `[vsyscall]` and any other bracketed name the kernel prints
//! (`[heap]`, `[stack]` and `[anon:NAME]` are [`super::anon`]'s). They are recorded,
//! never read. Restore moves the new process's own `[vdso]`/`[vvar]`/`[vvar_vclock]`
//! onto the saved addresses (the moving itself is left to `crate::restore::mm`) and has
//! nothing to map for them; `[vsyscall]` sits at its fixed address. Other special areas
//! cannot be restored.

use pipecr_image::proto::{self, VmaKind};

use super::area::{AreaKind, Classified, MapError, MapTarget, Save};
use super::maps::MapEntry;
use super::types::MemError;

/// Kernel special areas.
#[derive(Debug)]
pub struct SpecialArea;

/// The kernel areas restore moves into place, by name, with the kind saved for each.
const MOVED: [(&str, VmaKind); 3] = [
    ("[vdso]", VmaKind::Vdso),
    ("[vvar]", VmaKind::Vvar),
    ("[vvar_vclock]", VmaKind::VvarVclock),
];

impl AreaKind for SpecialArea {
    fn name(&self) -> &'static str {
        "special"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        e.special().is_some()
    }

    fn classify(&self, _pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        let kind = match e.special() {
            Some("[vsyscall]") => VmaKind::Vsyscall,
            Some(s) => self.moved_into_place(s).unwrap_or(VmaKind::OtherSpecial),
            None => VmaKind::OtherSpecial,
        };
        Ok(Classified {
            kind,
            flags: 0,
            save: Save::Nothing,
        })
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[
            (VmaKind::Vdso, "vdso"),
            (VmaKind::Vvar, "vvar"),
            (VmaKind::VvarVclock, "vvar-vclock"),
            (VmaKind::Vsyscall, "vsyscall"),
            (VmaKind::OtherSpecial, "kernel-area"),
        ]
    }

    fn restorable(&self, vma: &proto::Vma) -> Result<(), &'static str> {
        if vma.kind == VmaKind::OtherSpecial as i32 {
            return Err("a kernel special area");
        }
        Ok(())
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        matches!(
            VmaKind::try_from(vma.kind),
            Ok(VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall)
        )
    }

    fn moved_into_place(&self, path: &str) -> Option<VmaKind> {
        MOVED
            .iter()
            .find(|(name, _)| *name == path)
            .map(|&(_, kind)| kind)
    }

    fn map(&self, _: &proto::Vma, _: bool, _: &mut dyn MapTarget) -> Result<(), MapError> {
        // Moved into place already, or never movable (the fixed [vsyscall]).
        Ok(())
    }
}
