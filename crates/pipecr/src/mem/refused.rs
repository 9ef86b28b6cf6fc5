//! Areas pipecr refuses to save: I/O and PFN mappings (`VM_IO`, `VM_PFNMAP`), hugetlb
//! mappings, mappings of a socket (maps: `socket:[N]`: a packet socket's ring, whose
//! kernel-side position cannot be read; the descriptor may have been closed since, so the
//! packet socket kind never sees it) and mappings of an anonymous inode (maps:
//! `anon_inode:[NAME]`), which no path opens again: the rings of an io_uring instance
//! (still mapped after its descriptor was closed), a perf event's buffer, ... Their dump
//! is a [`MemError::Unsupported`] naming the area; nothing of them is ever restored.
//! Kernel special areas and named shared anonymous memory are left to
//! their own kinds, whatever their flags.

use pipecr_image::proto::{self, VmaKind};

use super::area::{AreaKind, Classified, is_named_shmem, unsupported};
use super::maps::MapEntry;
use super::types::MemError;

/// How maps names the file of a mapping of an anonymous inode.
const ANON_INODE: &str = "anon_inode:";

/// Areas with `io`, `pf` or `ht` among their VmFlags, mapped sockets and mapped
/// anonymous inodes.
#[derive(Debug)]
pub struct RefusedArea;

impl AreaKind for RefusedArea {
    fn name(&self) -> &'static str {
        "refused"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        e.special().is_none()
            && !is_named_shmem(e)
            && (e.has_vm_flag("io")
                || e.has_vm_flag("pf")
                || e.has_vm_flag("ht")
                || is_socket(e)
                || e.inode != 0 && e.path.starts_with(ANON_INODE))
    }

    fn classify(&self, pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        Err(if is_socket(e) {
            unsupported(
                pid,
                e,
                "a memory-mapped socket (a packet socket with a mapped ring, PACKET_RX_RING \
                 or PACKET_TX_RING)",
            )
        } else if e.path == "anon_inode:[io_uring]" {
            unsupported(
                pid,
                e,
                "an io_uring ring (its instance's queues and requests in flight live in the \
                 kernel, which gives user space no way to read them out or rebuild them; \
                 CRIU cannot either)",
            )
        } else if e.inode != 0 && e.path.starts_with(ANON_INODE) {
            unsupported(
                pid,
                e,
                "a mapping of an anonymous inode (an object of the kernel no path opens again)",
            )
        } else if e.has_vm_flag("io") || e.has_vm_flag("pf") {
            unsupported(pid, e, "an I/O or PFN mapping (VM_IO/VM_PFNMAP)")
        } else {
            unsupported(pid, e, "a hugetlb mapping")
        })
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        // Its areas are refused at dump: none is ever saved.
        &[]
    }

    fn restores(&self, _vma: &proto::Vma) -> bool {
        false
    }
}

/// A mapping of a socket (`socket:[N]`: sockfs names every socket so).
fn is_socket(e: &MapEntry) -> bool {
    e.path.starts_with("socket:[") && e.path.ends_with(']')
}
