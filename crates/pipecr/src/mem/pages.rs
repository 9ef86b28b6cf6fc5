//! Reading page contents out of a stopped process and storing them in the image's page
//! store. What to read is decided by [`super`]; this module reads it in large batches and
//! writes it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;

use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;
use pipecr_image::{ImageError, RawWriter};

use super::PAGE_SIZE;

/// Most iovecs one `process_vm_readv` takes (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// One page of zeros, to compare with.
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// True when `page` holds only zeros.
pub fn is_zero(page: &[u8]) -> bool {
    page == &ZERO_PAGE[..page.len()]
}

/// Reads memory of one process: `process_vm_readv` in batches of up to `IOV_MAX` (1024)
/// ranges, and `/proc/PID/mem` (which reads through the kernel's FOLL_FORCE, so also
/// areas without PROT_READ) for what `process_vm_readv` refuses.
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
    /// `buf.len()` is the sum of the lengths. `readable`: the area has PROT_READ, so
    /// `process_vm_readv` is worth trying.
    ///
    /// On error, returns the address of the range that could not be read.
    pub fn read(
        &mut self,
        ranges: &[(u64, usize)],
        buf: &mut [u8],
        readable: bool,
    ) -> Result<(), (u64, io::Error)> {
        let mut off = 0;
        for group in ranges.chunks(IOV_MAX) {
            let total: usize = group.iter().map(|r| r.1).sum();
            let chunk = &mut buf[off..off + total];
            let done = if readable {
                match self.readv(group, chunk) {
                    Ok(n) => n,
                    // A fault on the first range (PROT_NONE, VM_IO): try the slow way.
                    Err(nix::errno::Errno::EFAULT) => 0,
                    Err(e) => return Err((group[0].0, e.into())),
                }
            } else {
                0
            };
            if done < total {
                self.pread_rest(group, chunk, done)?;
            }
            off += total;
        }
        Ok(())
    }

    fn readv(&self, group: &[(u64, usize)], chunk: &mut [u8]) -> nix::Result<usize> {
        let mut locals = Vec::with_capacity(group.len());
        let mut rest = chunk;
        for &(_, len) in group {
            let (a, b) = rest.split_at_mut(len);
            locals.push(IoSliceMut::new(a));
            rest = b;
        }
        let remotes: Vec<RemoteIoVec> = group
            .iter()
            .map(|&(base, len)| RemoteIoVec {
                base: base as usize,
                len,
            })
            .collect();
        process_vm_readv(Pid::from_raw(self.pid), &mut locals, &remotes)
    }

    /// Reads what `process_vm_readv` left: everything of `group` after its first `done`
    /// bytes, through `/proc/PID/mem`.
    fn pread_rest(
        &mut self,
        group: &[(u64, usize)],
        chunk: &mut [u8],
        mut done: usize,
    ) -> Result<(), (u64, io::Error)> {
        if self.mem.is_none() {
            let mem = File::open(format!("/proc/{}/mem", self.pid)).map_err(|e| (group[0].0, e))?;
            self.mem = Some(mem);
        }
        let Some(mem) = &self.mem else {
            return Ok(());
        };
        let mut off = 0;
        for &(addr, len) in group {
            if done >= len {
                done -= len;
                off += len;
                continue;
            }
            let from = addr + done as u64;
            mem.read_exact_at(&mut chunk[off + done..off + len], from)
                .map_err(|e| (from, e))?;
            done = 0;
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
