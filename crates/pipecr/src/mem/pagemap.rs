//! `/proc/PID/pagemap`: one 64-bit entry per virtual page, telling whether the page is
//! present or swapped, whether it is a file's (or shared) page, whether this process maps
//! it exclusively, and its physical frame (PFN). Reading and decoding only.
//!
//! The PFN is only shown to readers that opened the file with CAP_SYS_ADMIN (in the
//! initial user namespace); others see 0. [`PagemapEntry::pfn`] is therefore only
//! meaningful when [`Pagemap::shows_pfns`] says so.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::types::PAGE_SIZE;

/// Bit 63: the page is present in RAM.
const PM_PRESENT: u64 = 1 << 63;
/// Bit 62: the page is swapped out (bits 0-54 then hold swap type and offset).
const PM_SWAPPED: u64 = 1 << 62;
/// Bit 61: the page is a file page or shared anonymous (not a private anonymous page).
const PM_FILE: u64 = 1 << 61;
/// Bit 58: a guard region marker (`MADV_GUARD_INSTALL`, Linux 6.13+; shown since 6.14).
/// The kernel reports it as a swap entry too (bit 62): it is a PTE marker, no page.
const PM_GUARD_REGION: u64 = 1 << 58;
/// Bit 56: the page is mapped exclusively by this process.
const PM_EXCLUSIVE: u64 = 1 << 56;
/// The page is write-protected through a userfaultfd (`PM_UFFD_WP`).
const PM_UFFD_WP: u64 = 1 << 57;
/// Bit 55: the pte is soft-dirty.
const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bits 0-54: the page frame number (present pages).
const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// One pagemap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    /// Bit 63: in RAM.
    pub fn present(self) -> bool {
        self.0 & PM_PRESENT != 0
    }
    /// Bit 62: swapped out.
    pub fn swapped(self) -> bool {
        self.0 & PM_SWAPPED != 0
    }
    /// Bit 61: a file page or shared anonymous page, i.e. not private anonymous memory.
    /// For a private file mapping, a present page with this bit is still the file's page
    /// (never written since it was mapped). The shared zero page also carries it.
    pub fn file_or_shared(self) -> bool {
        self.0 & PM_FILE != 0
    }
    /// Bit 58: a guard page (`MADV_GUARD_INSTALL`): no page behind it, a touch faults.
    /// It also reads as swapped (bit 62); nothing of it can be read.
    pub fn guard(self) -> bool {
        self.0 & PM_GUARD_REGION != 0
    }
    /// Bit 56: only this process maps the page (its map count is 1). A page a parent and
    /// its forked child share copy-on-write reads shared in both (checked on Linux 6.18
    /// with a parent, child and grandchild sharing three pages); once one of them pins
    /// it (`process_vm_readv`), the kernel un-shares it and both copies read exclusive.
    pub fn exclusive(self) -> bool {
        self.0 & PM_EXCLUSIVE != 0
    }
    /// Bit 57: write-protected through a userfaultfd (`UFFDIO_WRITEPROTECT`), also
    /// for a page not present (a marker the kernel keeps in its place).
    pub fn uffd_wp(self) -> bool {
        self.0 & PM_UFFD_WP != 0
    }
    /// Bit 55: soft-dirty.
    pub fn soft_dirty(self) -> bool {
        self.0 & PM_SOFT_DIRTY != 0
    }
    /// Bits 0-54 of a present page: its physical frame, 0 when hidden from us.
    pub fn pfn(self) -> Option<u64> {
        (self.present() && !self.swapped()).then_some(self.0 & PM_PFN_MASK)
    }
}

/// An open `/proc/PID/pagemap`.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    shows_pfns: Option<bool>,
    buf: Vec<u8>,
}

impl Pagemap {
    /// Opens `/proc/PID/pagemap` (needs ptrace-read access to the process).
    pub fn open(pid: i32) -> io::Result<Pagemap> {
        Ok(Pagemap {
            file: File::open(format!("/proc/{pid}/pagemap"))?,
            shows_pfns: None,
            buf: Vec::new(),
        })
    }

    /// Reads into `out` the entries of the `pages` pages starting at virtual address
    /// `start` (page-aligned).
    pub fn read(
        &mut self,
        start: u64,
        out: &mut Vec<PagemapEntry>,
        pages: usize,
    ) -> io::Result<()> {
        self.buf.resize(pages * 8, 0);
        self.file
            .read_exact_at(&mut self.buf, start / PAGE_SIZE * 8)?;
        out.clear();
        out.extend(
            self.buf
                .chunks_exact(8)
                .map(|c| PagemapEntry(u64::from_ne_bytes(c.try_into().unwrap_or_default()))),
        );
        if self.shows_pfns.is_none()
            && let Some(pfn) = out.iter().find_map(|e| e.pfn())
        {
            self.shows_pfns = Some(pfn != 0);
        }
        Ok(())
    }

    /// Whether the kernel shows us PFNs: `None` until a present page was read, then
    /// `Some(false)` when PFNs read as 0 (no CAP_SYS_ADMIN in the initial namespace).
    pub fn shows_pfns(&self) -> Option<bool> {
        self.shows_pfns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bits() {
        let e = PagemapEntry(0xa100_0000_0011_02dd);
        assert!(e.present() && !e.swapped() && e.file_or_shared() && e.exclusive());
        assert!(!e.soft_dirty());
        assert_eq!(e.pfn(), Some(0x11_02dd));
        let swapped = PagemapEntry(PM_SWAPPED | 0x1234);
        assert!(swapped.swapped() && swapped.pfn().is_none());
        assert_eq!(PagemapEntry(0).pfn(), None);
    }
}
