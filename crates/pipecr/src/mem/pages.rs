//! Reading page contents out of a stopped process and storing them in the image's page
//! store. What to read is decided by [`super`]; this module reads it in large batches
//! (through [`RemoteMem`], which owns the system calls) and writes it.

use std::collections::HashMap;
use std::io;

use pipecr_image::{ImageError, RawWriter};

use super::types::PAGE_SIZE;
use crate::sys::mem::RemoteMem;

/// One page of zeros, to compare with.
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// True when `page` holds only zeros.
pub fn is_zero(page: &[u8]) -> bool {
    page == &ZERO_PAGE[..page.len()]
}

/// Reads memory of one process.
///
/// Pages that pagemap shows mapped by this process alone are read with
/// `process_vm_readv` (one copy). Every other page goes through `/proc/PID/mem`:
/// `process_vm_readv` pins what it reads (FOLL_PIN), and since Linux 5.19 pinning a page
/// that a parent and its child still share copy-on-write un-shares it, so a dump would
/// double the memory of a forked tree and store the page twice in every later dump.
/// `/proc/PID/mem` reads through `access_remote_vm` without pinning (at the price of a
/// second copy through a kernel page), leaves shared pages shared, and also reads areas
/// without PROT_READ (FOLL_FORCE), which `process_vm_readv` cannot.
#[derive(Debug)]
pub struct MemReader {
    mem: RemoteMem,
}

/// A range of a process's memory to read: address, length, and whether every page in it
/// is mapped by that process alone (pagemap bit 56), so that pinning it shares nothing.
pub type Range = (u64, usize, bool);

impl MemReader {
    /// A reader of `pid`'s memory; `/proc/PID/mem` is opened on first need.
    pub fn new(pid: i32) -> Self {
        MemReader {
            mem: RemoteMem::of_process(pid),
        }
    }

    /// Fills `buf` with the bytes of `ranges`, one after the other; `buf.len()` is the
    /// sum of the lengths.
    ///
    /// On error, returns the address of the range that could not be read.
    pub fn read(&mut self, ranges: &[Range], buf: &mut [u8]) -> Result<(), (u64, io::Error)> {
        let mut off = 0;
        for &(addr, len, exclusive) in ranges {
            let dst = &mut buf[off..off + len];
            // What process_vm_readv did not read (an area without PROT_READ, say) is
            // read through /proc/PID/mem.
            let done = if exclusive {
                self.mem.read_pinned(addr, dst)
            } else {
                0
            };
            if done < len {
                self.mem
                    .read_unpinned(addr + done as u64, &mut dst[done..])
                    .map_err(|e| (e.addr, e.source))?;
            }
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
///
/// Pages can be held back in memory (a write-behind buffer, [`hold_back`](Self::hold_back))
/// instead of being written as they are read: a dump reads them while the tree is stopped
/// and writes them ([`flush`](Self::flush)) once it runs again, so the tree waits for one
/// copy of its memory, not for the page cache. Store indices are assigned when a page is
/// stored, held or not, so records can refer to held pages before they are written.
#[derive(Debug, Default)]
pub struct PageStore {
    by_pfn: HashMap<u64, Stored>,
    /// Reused buffer for pages written as soon as they are read.
    scratch: Vec<u8>,
    /// The write-behind buffer (its length is its capacity) and how much of it is used.
    behind: Vec<u8>,
    behind_used: usize,
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

    /// Gives the store a write-behind buffer of `bytes` (rounded down to whole pages),
    /// touched now: fresh memory faults page by page, which should happen before the tree
    /// is stopped, not while it waits. Replaces an empty buffer only.
    pub fn hold_back(&mut self, bytes: usize) {
        if self.behind_used > 0 {
            return;
        }
        let page = PAGE_SIZE as usize;
        // A non-zero fill: the allocator's zeroed memory is not yet mapped, and writing
        // zeros over it may be optimised away.
        self.behind = vec![1u8; bytes / page * page];
    }

    /// Bytes held back, not yet written.
    pub fn held(&self) -> usize {
        self.behind_used
    }

    /// Lets `fill` write `len` bytes (whole pages) into the store's memory, keeps the
    /// non-zero pages (held back when the write-behind buffer has room, written to `raw`
    /// otherwise) and says in `out` what each page became, in order.
    ///
    /// When the buffer is too full for `len`, what it holds is written first, so the store
    /// stays in index order.
    pub fn store_with<E: From<ImageError>>(
        &mut self,
        raw: &mut RawWriter,
        len: usize,
        out: &mut Vec<Stored>,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let page = PAGE_SIZE as usize;
        if self.behind.len() - self.behind_used < len {
            self.flush(raw)?;
        }
        // Every blob of the store is whole pages, so appends are contiguous and a page's
        // index is its offset / PAGE_SIZE.
        let base = raw.len().div_ceil(PAGE_SIZE) + (self.behind_used / page) as u64;
        let held = len <= self.behind.len();
        let buf = if held {
            &mut self.behind[self.behind_used..self.behind_used + len]
        } else {
            self.scratch.resize(len, 0);
            &mut self.scratch[..len]
        };
        fill(buf)?;
        out.clear();
        let mut kept = 0usize;
        for i in 0..len / page {
            if is_zero(&buf[i * page..(i + 1) * page]) {
                out.push(Stored::Zero);
                self.zero += 1;
                continue;
            }
            if kept != i {
                buf.copy_within(i * page..(i + 1) * page, kept * page);
            }
            out.push(Stored::At(base + kept as u64));
            kept += 1;
        }
        if held {
            self.behind_used += kept * page;
        } else if kept > 0 {
            raw.append(&buf[..kept * page])?;
        }
        self.stored += kept as u64;
        Ok(())
    }

    /// Writes the pages held back to `raw`; the buffer stays, empty, for more.
    pub fn flush(&mut self, raw: &mut RawWriter) -> Result<(), ImageError> {
        if self.behind_used > 0 {
            raw.append(&self.behind[..self.behind_used])?;
            self.behind_used = 0;
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
