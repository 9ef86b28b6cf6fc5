//! The completion ring of an AIO context (`io_setup(2)`; maps: `/[aio] (deleted)`). The
//! ring's address is the context's id (`aio_context_t`), which the program holds and
//! passes to `io_submit`/`io_getevents`: it must come back at the same address, as a
//! working context.
//!
//! Saved: the ring header's `nr`, `head` and `tail`, and the completion events not read
//! yet (slots `head .. tail`), read from the stopped process's memory (the kernel shows
//! nothing else of a context). The ring itself is kernel memory: its pages are not
//! stored.
//!
//! Restored in the process being loaded, by injected calls: `io_setup` with the number
//! of events that gives a ring of the saved size (checked: the new ring has the saved
//! `nr`); the kernel's own tail (which the ring header only mirrors) moved to the saved
//! one by completing requests that do nothing (1-byte writes to `/dev/null`, which
//! complete at once), the header's `head` moved along so that slots free up, then set
//! to the saved head; the unread events written into their slots; then the ring moved
//! to its saved address with `mremap` (the kernel follows a moved ring: its context id
//! becomes the new address). `io_submit` and `io_getevents` on the saved id then work on
//! it, and the events from before the dump are read first.
//!
//! Requests in flight (submitted, not completed) when the dump reads the ring are not
//! seen: Linux shows user space no count of them (see docs/IMAGE-FORMAT.md §5.6.1).
//! Requests to files and block devices complete on their own, frozen process or not, and
//! land in the ring. A ring whose header does not look like one (magic, size) is refused.

use nix::sys::mman::{MRemapFlags, MapFlags, ProtFlags};
use pipecr_image::proto::{self, VmaKind};

use super::area::{AreaKind, Classified, MapError, MapTarget, Save, unsupported};
use super::maps::MapEntry;
use super::types::{MemError, PAGE_SIZE};
use crate::inject::calls;
use crate::sys::mem::RemoteMem;

/// The path maps shows for an AIO ring (with ` (deleted)`, removed by the parser).
const AIO_PATH: &str = "/[aio]";

/// `AIO_RING_MAGIC` (`fs/aio.c`).
const AIO_RING_MAGIC: u32 = 0xa10a_10a1;

/// Bytes of `struct aio_ring`'s header (`id, nr, head, tail, magic, compat_features,
/// incompat_features, header_length`: eight `u32`), before the first event.
const HEADER: u64 = 32;

/// Bytes of one `struct io_event` (`data, obj, res, res2`).
const EVENT: u64 = 32;

/// Offset of `head` in the header.
const HEAD_AT: u64 = 8;

/// `IOCB_CMD_PWRITE` (`<linux/aio_abi.h>`).
const IOCB_CMD_PWRITE: u16 = 1;

/// Bytes of one `struct iocb`.
const IOCB: u64 = 64;

/// AIO completion rings.
#[derive(Debug)]
pub struct AioRingArea;

impl AreaKind for AioRingArea {
    fn name(&self) -> &'static str {
        "aio ring"
    }

    fn claims(&self, e: &MapEntry) -> bool {
        e.shared && e.deleted && e.inode != 0 && e.path == AIO_PATH
    }

    fn classify(&self, pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
        if e.offset != 0 || e.len() % PAGE_SIZE != 0 || e.len() <= HEADER {
            return Err(unsupported(
                pid,
                e,
                "a part of an AIO ring (split or partly unmapped)",
            ));
        }
        Ok(Classified {
            kind: VmaKind::AioRing,
            flags: 0,
            save: Save::Nothing,
        })
    }

    fn read_state(
        &self,
        pid: i32,
        source: i32,
        e: &MapEntry,
        vma: &mut proto::Vma,
    ) -> Result<(), MemError> {
        let mut mem = RemoteMem::of_process(source);
        let read = |mem: &mut RemoteMem, addr: u64, buf: &mut [u8]| {
            mem.read_unpinned(addr, buf).map_err(|err| MemError::Pages {
                pid,
                addr: err.addr,
                path: AIO_PATH.into(),
                source: err.source,
            })
        };
        let mut header = [0u8; HEADER as usize];
        read(&mut mem, e.start, &mut header)?;
        let word =
            |i: usize| u32::from_ne_bytes(header[i * 4..i * 4 + 4].try_into().unwrap_or_default());
        let (nr, head, tail, magic) = (word(1), word(2), word(3), word(4));
        let slots = (e.len() - HEADER) / EVENT;
        if magic != AIO_RING_MAGIC || u64::from(nr) != slots || nr < 2 || tail >= nr {
            return Err(unsupported(
                pid,
                e,
                "an AIO ring whose header is not the kernel's (magic, size or tail)",
            ));
        }
        // The program may write head itself (reaping events in user space); the kernel
        // takes it modulo nr.
        let head = head % nr;
        let unread = (u64::from(tail) + u64::from(nr) - u64::from(head)) % u64::from(nr);
        let mut events = vec![0u8; (unread * EVENT) as usize];
        // At most two pieces: head .. the end of the ring, then from slot 0 on.
        let first = unread.min(u64::from(nr - head));
        let (a, b) = events.split_at_mut((first * EVENT) as usize);
        if !a.is_empty() {
            read(&mut mem, e.start + HEADER + u64::from(head) * EVENT, a)?;
        }
        if !b.is_empty() {
            read(&mut mem, e.start + HEADER, b)?;
        }
        vma.aio_ring = Some(proto::AioRing {
            nr,
            head,
            tail,
            nr_events: (nr - 2) / 2,
            events,
        });
        Ok(())
    }

    fn read_while_stopped(&self) -> bool {
        // The ring is shared with the kernel: a fork's view of it moves on with the
        // process.
        true
    }

    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)] {
        &[(VmaKind::AioRing, "aio-ring")]
    }

    fn restorable(&self, vma: &proto::Vma) -> Result<(), &'static str> {
        check(vma).map(drop)
    }

    fn restores(&self, vma: &proto::Vma) -> bool {
        vma.kind == VmaKind::AioRing as i32
    }

    fn map(&self, vma: &proto::Vma, _: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        let ring = check(vma).map_err(|what| MapError::Invalid { what: what.into() })?;
        let len = vma.end - vma.start;
        let (nr, head, tail) = (
            u64::from(ring.nr),
            u64::from(ring.head),
            u64::from(ring.tail),
        );
        // Completions that bring the kernel's tail to the saved one: a full turn first
        // when the saved ring had wrapped.
        let count = if tail >= head { tail } else { nr + tail };
        let null = if count > 0 {
            Some(to.open("/dev/null", libc::O_WRONLY)?)
        } else {
            None
        };
        let inj = to.injector();
        let scratch = inj.remote_mmap(
            0,
            PAGE_SIZE,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            None,
            0,
        )?;
        let ctx = calls::io_setup(inj, ring.nr_events, scratch)?;
        let mut new_header = [0u8; HEADER as usize];
        inj.read_memory(ctx, &mut new_header)?;
        let new_nr = u32::from_ne_bytes(new_header[4..8].try_into().unwrap_or_default());
        if new_nr != ring.nr {
            return Err(MapError::Unsupported {
                what: format!(
                    "the AIO context at {:#x}: io_setup({}) made a ring of {new_nr} events here, the saved one had {} (a machine with many more CPUs?)",
                    vma.start, ring.nr_events, ring.nr
                ),
            });
        }
        if let Some(fd) = null {
            // One iocb, then as many pointers to it as the page holds.
            let mut iocb = [0u8; IOCB as usize];
            iocb[16..18].copy_from_slice(&IOCB_CMD_PWRITE.to_ne_bytes());
            iocb[20..24].copy_from_slice(&(fd.0 as u32).to_ne_bytes());
            iocb[24..32].copy_from_slice(&scratch.to_ne_bytes());
            iocb[32..40].copy_from_slice(&1u64.to_ne_bytes());
            inj.write_memory(scratch, &iocb)?;
            let ptrs_at = scratch + IOCB;
            let max = (PAGE_SIZE - IOCB) / 8;
            let ptrs: Vec<u8> = (0..max).flat_map(|_| scratch.to_ne_bytes()).collect();
            inj.write_memory(ptrs_at, &ptrs)?;
            let mut done = 0;
            while done < count {
                let n = calls::io_submit(inj, ctx, (count - done).min(max), ptrs_at)?;
                if n == 0 {
                    return Err(MapError::Invalid {
                        what: format!(
                            "the AIO context at {:#x}: io_submit took nothing",
                            vma.start
                        ),
                    });
                }
                done += n;
                // Read events free their slots: the header's head says which are read.
                let at = done.min(head) as u32;
                inj.write_memory(ctx + HEAD_AT, &at.to_ne_bytes())?;
            }
        }
        // The unread events, into their slots (at most two pieces: the ring wraps).
        let first = ((nr - head) * EVENT).min(ring.events.len() as u64) as usize;
        let (a, b) = ring.events.split_at(first);
        if !a.is_empty() {
            inj.write_memory(ctx + HEADER + head * EVENT, a)?;
        }
        if !b.is_empty() {
            inj.write_memory(ctx + HEADER, b)?;
        }
        inj.remote_munmap(scratch, PAGE_SIZE)?;
        let flags = MRemapFlags::MREMAP_MAYMOVE | MRemapFlags::MREMAP_FIXED;
        let moved = calls::mremap(inj, ctx, len, len, flags, vma.start)?;
        if moved != vma.start {
            return Err(MapError::Invalid {
                what: format!("the AIO ring moved to {moved:#x}, not {:#x}", vma.start),
            });
        }
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
        if vma.prot != rw {
            let prot = ProtFlags::from_bits_truncate(vma.prot as i32);
            inj.remote_mprotect(vma.start, len, prot)?;
        }
        Ok(())
    }
}

/// The saved ring of `vma`, when it is whole and consistent with the area's size.
fn check(vma: &proto::Vma) -> Result<&proto::AioRing, &'static str> {
    let ring = vma
        .aio_ring
        .as_ref()
        .ok_or("an AIO ring whose context is not in the image")?;
    let len = vma.end.saturating_sub(vma.start);
    let unread = (u64::from(ring.tail) + u64::from(ring.nr) - u64::from(ring.head))
        % u64::from(ring.nr.max(1));
    let fits = len > HEADER
        && len % PAGE_SIZE == 0
        && vma.start % PAGE_SIZE == 0
        && u64::from(ring.nr) == (len - HEADER) / EVENT
        && ring.nr >= 2
        && ring.head < ring.nr
        && ring.tail < ring.nr
        && ring.events.len() as u64 == unread * EVENT;
    if !fits {
        return Err("an AIO ring whose saved header does not fit its area");
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved ring is restorable only when its header fits its area and it holds
    /// exactly the events between head and tail.
    #[test]
    fn a_saved_ring_must_fit_its_area() {
        let ring = |head: u32, tail: u32, events: usize| proto::Vma {
            start: 0x7000_0000,
            end: 0x7000_1000,
            kind: VmaKind::AioRing as i32,
            aio_ring: Some(proto::AioRing {
                nr: 127,
                head,
                tail,
                nr_events: 62,
                events: vec![0; events * 32],
            }),
            ..Default::default()
        };
        assert_eq!(AioRingArea.restorable(&ring(0, 0, 0)), Ok(()));
        assert_eq!(AioRingArea.restorable(&ring(3, 5, 2)), Ok(()));
        assert_eq!(AioRingArea.restorable(&ring(126, 1, 2)), Ok(()), "wrapped");
        assert!(AioRingArea.restorable(&ring(3, 5, 1)).is_err());
        assert!(AioRingArea.restorable(&ring(0, 127, 127)).is_err());
        let mut other_size = ring(0, 0, 0);
        other_size.end += 4096;
        assert!(AioRingArea.restorable(&other_size).is_err());
        let mut none = ring(0, 0, 0);
        none.aio_ring = None;
        assert!(AioRingArea.restorable(&none).is_err());
    }

    #[test]
    fn claims_the_ring_of_a_context_only() {
        let e = |path: &str, shared: bool, deleted: bool| MapEntry {
            start: 0x1000,
            end: 0x2000,
            shared,
            deleted,
            inode: 7,
            path: path.into(),
            ..MapEntry::default()
        };
        assert!(AioRingArea.claims(&e("/[aio]", true, true)));
        assert!(!AioRingArea.claims(&e("/[aio]", false, true)));
        assert!(!AioRingArea.claims(&e("/tmp/[aio]", true, true)));
    }
}
