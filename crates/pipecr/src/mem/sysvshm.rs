//! Attachments of System V shared memory segments (`shmat`; maps: `/SYSVKEY (deleted)`,
//! the inode being the segment's id). The segment itself (its key, owner, mode, size and
//! contents) is an IPC object saved once in `ipc.img` (`crate::ipc`), attached or not;
//! an attachment records only the segment's id and its `shmat` flags, and nothing of its
//! pages. Restore creates the segments with their ids before any process, and maps each
//! attachment again with an injected `shmat(id, address, flags | SHM_REMAP)`.
//!
//! Only whole attachments are supported: one that was split (`mprotect` of part of it)
//! or partly unmapped is refused when dumped.

use std::os::unix::fs::MetadataExt;

use nix::sys::mman::ProtFlags;
use pipecr_image::proto::{self, VmaKind};

use super::area::{AreaKind, Classified, MapError, MapTarget, Save, unsupported};
use super::maps::MapEntry;
use super::types::{MemError, PAGE_SIZE};
use crate::sys::ipc::{SHM_EXEC, SHM_RDONLY, SHM_REMAP};

/// System V shared memory attachments.
#[derive(Debug)]
pub struct SysvShmArea;

/// The `shmat` flags of attachment `e`: read-only when it may never be written (no
/// `VM_MAYWRITE`, smaps `mw`), executable when it is.
fn shmat_flags(e: &MapEntry) -> u32 {
    let mut flags = 0;
    if !e.has_vm_flag("mw") {
        flags |= SHM_RDONLY as u32;
    }
    if e.exec {
        flags |= SHM_EXEC as u32;
    }
    flags
}

impl AreaKind for SysvShmArea {
    fn name(&self) -> &'static str {
        "sysv shm"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        e.shared && e.path.starts_with("/SYSV") && e.special().is_none()
    }

    fn classify(&self, pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        // The segment's size is its file's (map_files names the segment of this area).
        let size = std::fs::metadata(format!("/proc/{pid}/map_files/{}", e.map_files_name()))
            .map(|m| m.size())
            .map_err(|source| MemError::Read {
                pid,
                what: format!("/proc/PID/map_files/{}", e.map_files_name()),
                source,
            })?;
        if e.offset != 0 || e.end - e.start != size.div_ceil(PAGE_SIZE) * PAGE_SIZE {
            return Err(unsupported(
                pid,
                e,
                "a System V shared memory attachment split or partly unmapped",
            ));
        }
        Ok(Classified {
            kind: VmaKind::SysvShm,
            flags: 0,
            save: Save::Nothing,
        })
    }

    fn record(&self, e: &MapEntry, vma: &mut proto::Vma) {
        vma.sysv_shm_id = e.inode as i32;
        vma.sysv_shm_flags = shmat_flags(e);
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[(VmaKind::SysvShm, "sysv-shm")]
    }

    fn restorable(&self, _vma: &proto::Vma) -> Result<(), &'static str> {
        Ok(())
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        vma.kind == VmaKind::SysvShm as i32
    }

    fn map(&self, vma: &proto::Vma, _: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        let flags = vma.sysv_shm_flags as i32 & (SHM_RDONLY | SHM_EXEC);
        let at = to.injector().syscall_checked(
            libc::SYS_shmat,
            [
                vma.sysv_shm_id as u64,
                vma.start,
                (flags | SHM_REMAP) as u64,
                0,
                0,
                0,
            ],
        )?;
        if at != vma.start {
            return Err(MapError::Invalid {
                what: format!(
                    "shmat of segment id {} landed at {at:#x}, not {:#x}",
                    vma.sysv_shm_id, vma.start
                ),
            });
        }
        // What shmat gave, and the saved protection if mprotect changed it since.
        let mut given = libc::PROT_READ;
        if flags & SHM_RDONLY == 0 {
            given |= libc::PROT_WRITE;
        }
        if flags & SHM_EXEC != 0 {
            given |= libc::PROT_EXEC;
        }
        if vma.prot as i32 != given {
            to.injector().remote_mprotect(
                vma.start,
                vma.end - vma.start,
                ProtFlags::from_bits_truncate(vma.prot as i32),
            )?;
        }
        Ok(())
    }
}
