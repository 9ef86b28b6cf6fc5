//! Reading page contents out of a stopped process and storing them in the image's page
//! store. What to read is decided by [`super`]; this module reads it in large batches and
//! writes it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use pipecr_image::{ImageError, RawWriter};

use super::PAGE_SIZE;

/// One page of zeros, to compare with.
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// True when `page` holds only zeros.
pub fn is_zero(page: &[u8]) -> bool {
    page == &ZERO_PAGE[..page.len()]
}

/// Reads memory of one process through `/proc/PID/mem`.
///
/// Not `process_vm_readv`: it pins the pages it reads (FOLL_PIN), and since Linux 5.19
/// pinning a page that a parent and its child still share copy-on-write un-shares it: a
/// dump would double the memory of a forked tree and store the page twice in every later
/// dump. `/proc/PID/mem` reads through `access_remote_vm` without pinning, leaves shared
/// pages shared, and also reads areas without PROT_READ (FOLL_FORCE).
#[derive(Debug)]
pub struct MemReader {
    pid: i32,
    mem: Option<File>,
}

impl MemReader {
    /// A reader of `pid`'s memory; `/proc/PID/mem` is opened on first need.
    pub fn new(pid: i32) -> Self {
        MemReader { pid, mem: None }
    }

    /// Fills `buf` with the bytes of `ranges` (address, length), one after the other;
    /// `buf.len()` is the sum of the lengths.
    ///
    /// On error, returns the address of the range that could not be read.
    pub fn read(
        &mut self,
        ranges: &[(u64, usize)],
        buf: &mut [u8],
    ) -> Result<(), (u64, io::Error)> {
        let mem = match &self.mem {
            Some(mem) => mem,
            None => {
                let first = ranges.first().map_or(0, |r| r.0);
                let mem = File::open(format!("/proc/{}/mem", self.pid)).map_err(|e| (first, e))?;
                self.mem.insert(mem)
            }
        };
        let mut off = 0;
        for &(addr, len) in ranges {
            mem.read_exact_at(&mut buf[off..off + len], addr)
                .map_err(|e| (addr, e))?;
            off += len;
        }
        Ok(())
    }
}

/// What a page became in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Its bytes are page `index` of the store.
    At(u64),
    /// All zeros: nothing stored.
    Zero,
}

/// The image's page store (`pages.img`) and the index of pages shared copy-on-write, by
/// physical frame, so that each such page is stored once.
#[derive(Debug, Default)]
pub struct PageStore {
    by_pfn: HashMap<u64, Stored>,
    /// Pages written to the store.
    pub stored: u64,
    /// Pages found already stored through their PFN.
    pub reused: u64,
    /// All-zero pages not stored.
    pub zero: u64,
}

impl PageStore {
    /// What the page at frame `pfn` became, if it was met before.
    pub fn lookup(&self, pfn: u64) -> Option<Stored> {
        self.by_pfn.get(&pfn).copied()
    }

    /// Remembers what the page at frame `pfn` became.
    pub fn remember(&mut self, pfn: u64, stored: Stored) {
        self.by_pfn.insert(pfn, stored);
    }

    /// Compacts the non-zero pages of `buf` (whole pages) to its front, writes them to
    /// the store and returns what each page of `buf` became, in order.
    pub fn store(
        &mut self,
        raw: &mut RawWriter,
        buf: &mut [u8],
        out: &mut Vec<Stored>,
    ) -> Result<(), ImageError> {
        let page = PAGE_SIZE as usize;
        out.clear();
        let mut kept = 0usize;
        for i in 0..buf.len() / page {
            if is_zero(&buf[i * page..(i + 1) * page]) {
                out.push(Stored::Zero);
                self.zero += 1;
                continue;
            }
            if kept != i {
                buf.copy_within(i * page..(i + 1) * page, kept * page);
            }
            out.push(Stored::At(kept as u64));
            kept += 1;
        }
        if kept > 0 {
            // Every blob of the store is whole pages, so appends are contiguous and a
            // page's index is its offset / PAGE_SIZE.
            let at = raw.append(&buf[..kept * page])?;
            let base = at.offset / PAGE_SIZE;
            for s in out.iter_mut() {
                if let Stored::At(k) = s {
                    *k += base;
                }
            }
            self.stored += kept as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut p = vec![0u8; 4096];
        assert!(is_zero(&p));
        p[4095] = 1;
        assert!(!is_zero(&p));
    }
}
