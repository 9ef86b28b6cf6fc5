//! Checks that this machine can take a saved process, run before any process is created
//! (a restore that would fail half-way should fail here, with a message that says why):
//!
//! - the CPU state in each thread's XSAVE area: every component its header marks as in
//!   use (`XSTATE_BV`) must be one this machine enables (`XCR0`), or the kernel refuses
//!   the area (or the program faults on its first AVX-512 instruction);
//! - the files its address space maps, and its executable: each must exist here.
//!
//! Kept apart from [`super::process`], whose checks are about the image itself.

use std::collections::BTreeSet;
use std::io;

use pipecr_image::proto::{self, VmaKind};

use super::error::{ProcessRestoreError, Result};
use super::saved::SavedProcess;

/// Offset of the XSAVE header's `XSTATE_BV` in the standard-format XSAVE area.
const XSTATE_BV_AT: usize = 512;

/// The XSAVE state components, by bit number (Intel SDM Vol. 1 §13.1).
const XFEATURES: [&str; 20] = [
    "x87",
    "SSE",
    "AVX",
    "MPX bound registers",
    "MPX bound config",
    "AVX-512 opmask",
    "AVX-512 ZMM_Hi256",
    "AVX-512 Hi16_ZMM",
    "processor trace",
    "PKRU (protection keys)",
    "PASID",
    "CET user",
    "CET supervisor",
    "HDC",
    "UINTR",
    "LBR",
    "HWP",
    "AMX TILECFG",
    "AMX TILEDATA",
    "APX",
];

/// The names of the XSAVE components in `mask` (`feature bit N` for unnamed ones).
pub(super) fn xfeature_names(mask: u64) -> String {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| match XFEATURES.get(b) {
            Some(name) => format!("{name} (bit {b})"),
            None => format!("feature bit {b}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that every thread's saved XSAVE area uses only components this machine
/// enables (`xcr0`: its `XCR0`, [`crate::sys::cpu::xcr0`]).
pub(super) fn check_xstate(saved: &SavedProcess, xcr0: Option<u64>) -> Result<()> {
    let pid = saved.pid();
    for thread in &saved.core.threads {
        if thread.xsave.is_empty() {
            continue;
        }
        let Some(bv) = thread
            .xsave
            .get(XSTATE_BV_AT..XSTATE_BV_AT + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
        else {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "thread {}: an XSAVE area of {} bytes (no XSAVE header)",
                    thread.tid,
                    thread.xsave.len()
                ),
            });
        };
        // Without XSAVE the kernel takes the legacy area only: x87 and SSE.
        let here = xcr0.unwrap_or(0b11);
        let missing = bv & !here;
        if missing != 0 {
            return Err(ProcessRestoreError::CpuFeatures {
                pid,
                tid: thread.tid,
                missing: xfeature_names(missing),
                saved: bv,
                here,
            });
        }
    }
    Ok(())
}

/// Checks that the executable and every file the saved address space maps exist.
pub(super) fn check_files(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let mapped: BTreeSet<&str> = saved
        .mm
        .vmas
        .iter()
        .filter(|v| {
            matches!(
                VmaKind::try_from(v.kind),
                Ok(VmaKind::FilePrivate | VmaKind::FileShared)
            )
        })
        .map(|v: &proto::Vma| v.path.as_str())
        .collect();
    let exe = (!saved.mm.exe.is_empty()).then_some(("executable", saved.mm.exe.as_str()));
    for (what, path) in exe
        .into_iter()
        .chain(mapped.into_iter().map(|p| ("mapped file", p)))
    {
        if let Err(source) = std::fs::metadata(path) {
            return Err(ProcessRestoreError::File {
                pid,
                what,
                path: path.to_owned(),
                errno: errno_name(&source),
                source,
            });
        }
    }
    Ok(())
}

/// The symbolic name of the errors a path lookup gives.
fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::ELOOP) => "ELOOP",
        Some(libc::ENAMETOOLONG) => "ENAMETOOLONG",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_named() {
        assert_eq!(
            xfeature_names(1 << 7 | 1 << 40),
            "AVX-512 Hi16_ZMM (bit 7), feature bit 40"
        );
    }
}
