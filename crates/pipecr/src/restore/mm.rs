//! The address-space steps of a restore, each run inside the new process through an
//! [`Injector`]: find room for the trampoline and parking places, move the kernel's
//! `[vdso]`/`[vvar]` areas to their saved addresses, map every saved area (files opened
//! in the child by path), write the saved pages, and set the mm fields with
//! `PR_SET_MM_MAP`. Kept apart from [`super::image`], which only orders these steps.
//!
//! The trampoline page doubles as scratch memory: paths, the `struct prctl_mm_map` and
//! the auxv go where [`super::trampoline`] says.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nix::fcntl::OFlag;
use nix::sys::mman::MRemapFlags;
use pipecr_image::PAGE_SIZE;
use pipecr_image::proto::{self, VmaKind};

use super::error::{ProcessRestoreError, Result, os};
use super::trampoline::{AUXV_AT, MM_MAP_AT, PATH_AT, PATH_MAX};
use crate::inject::kstruct::PrctlMmMap;
use crate::inject::{Injector, calls};
use crate::mem::AREA_KINDS;
use crate::mem::area::{AreaKind, MapError, MapTarget, not_restorable};
use crate::mem::maps::{MapEntry, parse_maps};
use crate::objects::ObjectFds;
use crate::sys::kcmp::TargetFd;
use crate::sys::mem::{FileMapping, IOV_MAX, RemoteMem, write_in_batches};

pub(super) const PAGE: u64 = PAGE_SIZE;
/// Lowest address we place a trampoline or a parking area at (above `mmap_min_addr`).
const LOW: u64 = 0x10_0000;
/// Bytes of zeros written into the child per write.
const CHUNK: u64 = 1 << 20;

pub(super) fn area_error(
    pid: i32,
    vma: &proto::Vma,
    what: &str,
    e: ProcessRestoreError,
) -> ProcessRestoreError {
    ProcessRestoreError::Area {
        pid,
        start: vma.start,
        end: vma.end,
        what: format!(
            "{what} {}",
            if vma.path.is_empty() {
                "[anon]"
            } else {
                &vma.path
            }
        ),
        source: Box::new(e),
    }
}

pub(super) fn current_maps(pid: i32) -> Result<Vec<MapEntry>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(os(pid, "read /proc/PID/maps"))?;
    parse_maps(&text).ok_or_else(|| ProcessRestoreError::Os {
        pid,
        op: "parse /proc/PID/maps",
        source: io::Error::from(io::ErrorKind::InvalidData),
    })
}

/// The lowest address at or above [`LOW`] where `len` bytes overlap none of `avoid`.
pub(super) fn find_free(avoid: &[(u64, u64)], len: u64) -> Option<u64> {
    let mut sorted = avoid.to_vec();
    sorted.sort_unstable();
    let mut at = LOW;
    for &(start, end) in &sorted {
        if end <= at {
            continue;
        }
        if start >= at.checked_add(len)? {
            return Some(at);
        }
        at = end;
    }
    // Stay in the lower half of the 47-bit user address space.
    (at.checked_add(len)? <= 1 << 46).then_some(at)
}

/// The ranges to unmap so that of `current` only what lies in `stay` is left: each
/// area minus `stay`, neighbours joined into one range when no part of `stay` lies
/// between them (unmapping the hole between two areas is harmless), so a few `munmap`
/// calls do instead of one per area.
pub(super) fn unmap_ranges(current: &[MapEntry], stay: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut stay = stay.to_vec();
    stay.sort_unstable();
    let mut areas: Vec<(u64, u64)> = current.iter().map(|m| (m.start, m.end)).collect();
    areas.sort_unstable();
    // Each area minus `stay`.
    let mut pieces = Vec::new();
    for (mut s, e) in areas {
        for &(ks, ke) in &stay {
            if ke <= s || ks >= e {
                continue;
            }
            if ks > s {
                pieces.push((s, ks));
            }
            s = s.max(ke);
        }
        if s < e {
            pieces.push((s, e));
        }
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in pieces {
        match out.last_mut() {
            Some(last) if !stay.iter().any(|&(ks, ke)| ks < s && ke > last.1) => {
                last.1 = last.1.max(e)
            }
            _ => out.push((s, e)),
        }
    }
    out
}

/// Moves `[vdso]`, `[vvar]` and `[vvar_vclock]` to their saved addresses: each first to a
/// parking place free in both layouts, then to its target, so no move lands on an area
/// still to be moved (`MREMAP_FIXED` would unmap it).
pub(super) fn move_specials(
    inj: &mut Injector,
    pid: i32,
    current: &[MapEntry],
    saved: &[proto::Vma],
    avoid: &[(u64, u64)],
) -> Result<()> {
    let mut moves = Vec::new();
    for m in current {
        let Some(kind) = special_kind(&m.path) else {
            continue;
        };
        let target = saved.iter().find(|v| v.kind == kind as i32);
        match target {
            Some(v) if v.end - v.start != m.len() => {
                return Err(ProcessRestoreError::Unsupported {
                    pid,
                    what: format!(
                        "{} of {} bytes (this kernel's is {} bytes: another kernel?)",
                        m.path,
                        v.end - v.start,
                        m.len()
                    ),
                });
            }
            Some(v) if v.start != m.start => {
                moves.push((m.path.clone(), m.start, v.start, m.len()))
            }
            Some(_) => {}
            // The saved process had none: drop ours.
            None => inj.remote_munmap(m.start, m.len())?,
        }
    }
    let mut avoid = avoid.to_vec();
    let mut parked = Vec::new();
    for (name, from, to, len) in moves {
        let park = find_free(&avoid, len).ok_or_else(|| ProcessRestoreError::Unsupported {
            pid,
            what: format!("moving {name}: no free parking place"),
        })?;
        avoid.push((park, park + len));
        mremap(inj, pid, &name, from, park, len)?;
        parked.push((name, park, to, len));
    }
    for (name, park, to, len) in parked {
        mremap(inj, pid, &name, park, to, len)?;
    }
    Ok(())
}

fn mremap(inj: &mut Injector, pid: i32, name: &str, from: u64, to: u64, len: u64) -> Result<()> {
    let flags = MRemapFlags::MREMAP_MAYMOVE | MRemapFlags::MREMAP_FIXED;
    calls::mremap(inj, from, len, len, flags, to).map_err(|e| {
        ProcessRestoreError::Unsupported {
            pid,
            what: format!("moving {name} from {from:#x} to {to:#x}: the kernel refused ({e})"),
        }
    })?;
    Ok(())
}

/// The saved kind of the kernel area named `path` that is moved into place rather than
/// mapped, as the kinds of memory area say.
fn special_kind(path: &str) -> Option<VmaKind> {
    AREA_KINDS.iter().find_map(|k| k.moved_into_place(path))
}

/// The kind of memory area that maps the saved area `vma` again, if any.
fn area_kind(vma: &proto::Vma) -> Option<&'static dyn AreaKind> {
    AREA_KINDS.iter().copied().find(|k| k.restores(vma))
}

/// Private areas we map ourselves (and make writable while filling).
pub(super) fn is_private_restored(vma: &proto::Vma) -> bool {
    area_kind(vma).is_some_and(|k| k.filled_privately())
}

/// The descriptors a process being restored has open for mapping files, by path and open
/// flags: a file mapped as several areas (code, data, ...) is opened once.
#[derive(Debug, Default)]
pub(super) struct MapFiles(Vec<(String, i32, i32)>);

impl MapFiles {
    /// Closes them all in the child.
    pub(super) fn close(self, inj: &mut Injector) -> Result<()> {
        for (_, _, fd) in self.0 {
            calls::close(inj, TargetFd(fd))?;
        }
        Ok(())
    }
}

/// Maps one saved area at its address (see the module documentation), as its kind of
/// memory area says. A private area is mapped writable when `written` (its pages are
/// written next, then its protection is set), with its saved protection otherwise.
pub(super) fn map_area(
    inj: &mut Injector,
    pid: i32,
    tramp: u64,
    vma: &proto::Vma,
    written: bool,
    files: &mut MapFiles,
    objects: &ObjectFds,
) -> Result<()> {
    let mut target = Target {
        inj,
        tramp,
        files,
        objects,
    };
    match area_kind(vma) {
        Some(kind) => kind.map(vma, written, &mut target),
        None => Err(not_restorable(vma)),
    }
    .map_err(|e| restore_error(pid, e))?;
    install_guards(inj, pid, vma)
}

/// `madvise(MADV_GUARD_INSTALL)`, Linux 6.13+ (`<linux/mman.h>`; not in libc yet).
const MADV_GUARD_INSTALL: u64 = 102;

/// Installs the guard regions of the saved area `vma` again (`MADV_GUARD_INSTALL`), so
/// that a touch there faults as it did. Its pages hold nothing: none were saved.
fn install_guards(inj: &mut Injector, pid: i32, vma: &proto::Vma) -> Result<()> {
    for g in &vma.guard_regions {
        let len = g.nr_pages.checked_mul(PAGE);
        let inside = len
            .and_then(|len| g.start.checked_add(len))
            .is_some_and(|end| g.start >= vma.start && end <= vma.end);
        let (Some(len), true) = (len, inside && g.start % PAGE == 0) else {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "guard region at {:#x} ({} pages) outside its area {:#x}-{:#x}",
                    g.start, g.nr_pages, vma.start, vma.end
                ),
            });
        };
        inj.syscall_checked(
            libc::SYS_madvise,
            [g.start, len, MADV_GUARD_INSTALL, 0, 0, 0],
        )
        .map_err(|e| ProcessRestoreError::Unsupported {
            pid,
            what: format!(
                "guard pages at {:#x}-{:#x} (madvise(MADV_GUARD_INSTALL) needs Linux 6.13+): {e}",
                g.start,
                g.start + len
            ),
        })?;
    }
    Ok(())
}

/// What a kind of memory area is lent to map an area of the process being restored:
/// its injector, its files opened by path once each, and the memory objects the
/// restorer holds.
struct Target<'a> {
    inj: &'a mut Injector,
    tramp: u64,
    files: &'a mut MapFiles,
    objects: &'a ObjectFds,
}

impl MapTarget for Target<'_> {
    fn injector(&mut self) -> &mut Injector {
        self.inj
    }

    fn open(&mut self, path: &str, flags: i32) -> std::result::Result<TargetFd, MapError> {
        let open = self
            .files
            .0
            .iter()
            .find(|(p, f, _)| p == path && *f == flags)
            .map(|&(_, _, fd)| fd);
        let fd = match open {
            Some(fd) => fd,
            None => {
                let fd = open_in_child(self.inj, self.tramp, path, flags)?;
                self.files.0.push((path.to_owned(), flags, fd));
                fd
            }
        };
        Ok(TargetFd(fd))
    }

    fn object(&mut self, id: u64, flags: i32) -> std::result::Result<TargetFd, MapError> {
        use std::os::fd::AsRawFd;
        let fd = self.objects.get(id).ok_or_else(|| MapError::Invalid {
            what: format!("memory object {id} is not in mem-objects.img"),
        })?;
        // The restorer's descriptor, opened again in the process: the same object.
        let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
        self.open(&path, flags)
    }
}

/// The restore error for a [`MapError`] of process `pid`.
fn restore_error(pid: i32, e: MapError) -> ProcessRestoreError {
    match e {
        MapError::Inject(e) => ProcessRestoreError::Inject(e),
        MapError::Unsupported { what } => ProcessRestoreError::Unsupported { pid, what },
        MapError::Invalid { what } => ProcessRestoreError::Invalid { pid, what },
    }
}

/// Opens `path` in the child (`openat(AT_FDCWD, path, flags | O_CLOEXEC)`), the path
/// written into the trampoline page; returns the child's descriptor.
fn open_in(inj: &mut Injector, pid: i32, tramp: u64, path: &str, flags: i32) -> Result<i32> {
    open_in_child(inj, tramp, path, flags).map_err(|e| restore_error(pid, e))
}

/// [`open_in`], with the error of the area layer.
fn open_in_child(
    inj: &mut Injector,
    tramp: u64,
    path: &str,
    flags: i32,
) -> std::result::Result<i32, MapError> {
    if path.len() > PATH_MAX || path.as_bytes().contains(&0) {
        return Err(MapError::Unsupported {
            what: format!("opening a path of {} bytes", path.len()),
        });
    }
    let mut bytes = path.as_bytes().to_vec();
    bytes.push(0);
    inj.write_memory(tramp + PATH_AT, &bytes)?;
    let flags = OFlag::from_bits_retain(flags | libc::O_CLOEXEC);
    let fd = calls::openat(inj, tramp + PATH_AT, flags).map_err(|e| MapError::Invalid {
        what: format!("cannot open {path} in the new process: {e}"),
    })?;
    Ok(fd.0)
}

/// Bytes read from `pages.img` and written into the child per batch: one buffer, reused.
const BATCH: usize = 4 << 20;

/// Where the bytes of one piece of a page run come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Zeros (a `zero` run).
    Zero,
    /// `pages.img` from this byte offset on.
    Store(u64),
}

/// Bytes to put at `addr`: `len` bytes of `src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub addr: u64,
    pub len: u64,
    pub src: Source,
}

/// The piece of `run` (its address, length and source), or an error for a run whose
/// length or store offset overflows.
pub(super) fn run_piece(pid: i32, run: &proto::PageRun) -> Result<Piece> {
    let bad = || ProcessRestoreError::Invalid {
        pid,
        what: format!("page run at {:#x}: {} pages", run.start, run.nr_pages),
    };
    let len = run.nr_pages.checked_mul(PAGE).ok_or_else(bad)?;
    run.start.checked_add(len).ok_or_else(bad)?;
    let src = if run.zero {
        Source::Zero
    } else {
        let off = run.store_index.checked_mul(PAGE).ok_or_else(bad)?;
        off.checked_add(len).ok_or_else(bad)?;
        Source::Store(off)
    };
    Ok(Piece {
        addr: run.start,
        len,
        src,
    })
}

/// Writes saved pages into the child: consecutive pieces whose bytes are consecutive in
/// `pages.img` are written with one `process_vm_writev` of up to [`IOV_MAX`] remote
/// pieces (a sparse area of single pages costs a few calls, not two per page), straight
/// from a mapping of `pages.img` (no copy through a buffer of ours; where the file cannot
/// be mapped, through one reused buffer filled by `pread`). Pieces it cannot write (a
/// protection the kernel refuses) go through [`Injector::write_memory`], which falls back
/// to `/proc/PID/mem`.
pub(super) struct PageWriter<'a> {
    pages: &'a File,
    map: Option<&'a FileMapping>,
    buf: Vec<u8>,
    /// Zeros, allocated on first need and never written (so backed by the zero page).
    zeros: Vec<u8>,
    /// The batch: remote (address, length), and the bytes in `buf`.
    remote: Vec<(u64, usize)>,
    filled: usize,
    /// `pages.img` offset of the batch's first byte, and of the byte after its last.
    file_start: u64,
    file_end: u64,
}

impl<'a> PageWriter<'a> {
    pub(super) fn new(pages: &'a File, map: Option<&'a FileMapping>) -> PageWriter<'a> {
        PageWriter {
            pages,
            map,
            buf: Vec::new(),
            zeros: Vec::new(),
            remote: Vec::new(),
            filled: 0,
            file_start: 0,
            file_end: 0,
        }
    }

    /// Queues `piece` (written by [`flush`](Self::flush) at the latest).
    pub(super) fn push(&mut self, inj: &mut Injector, pid: i32, piece: Piece) -> Result<()> {
        let mut done = 0;
        while done < piece.len {
            let addr = piece.addr + done;
            let left = piece.len - done;
            match piece.src {
                Source::Zero => {
                    let n = left.min(CHUNK) as usize;
                    if self.zeros.len() < n {
                        self.zeros = vec![0u8; CHUNK as usize];
                    }
                    inj.write_memory(addr, &self.zeros[..n])?;
                    done += n as u64;
                }
                Source::Store(off) => {
                    let off = off + done;
                    let contiguous = !self.remote.is_empty() && off == self.file_end;
                    if !contiguous || self.filled == BATCH || self.remote.len() == IOV_MAX {
                        self.flush(inj, pid)?;
                        self.file_start = off;
                        self.file_end = off;
                    }
                    let n = left.min((BATCH - self.filled) as u64) as usize;
                    self.remote.push((addr, n));
                    self.filled += n;
                    self.file_end += n as u64;
                    done += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Reads the batch from `pages.img` and writes it into the child.
    pub(super) fn flush(&mut self, inj: &mut Injector, pid: i32) -> Result<()> {
        if self.remote.is_empty() {
            return Ok(());
        }
        let remote = std::mem::take(&mut self.remote);
        let filled = std::mem::replace(&mut self.filled, 0);
        tracing::info!(target: crate::mem::PROGRESS, done = filled as u64);
        if let Some(map) = self.map
            && let Ok(start) = usize::try_from(self.file_start)
            && start + filled <= map.len()
        {
            // Not written (or not wholly): read it and write it the slow way.
            let pages = self.pages;
            return write_in_batches(
                &remote,
                |at, batch| map.write_to_process(pid, start + at, batch).unwrap_or(0),
                |(addr, len), at| {
                    let mut bytes = vec![0u8; len];
                    pages
                        .read_exact_at(&mut bytes, (start + at) as u64)
                        .map_err(os(pid, "read pages.img"))?;
                    inj.write_memory(addr, &bytes)?;
                    Ok(())
                },
            );
        }
        if self.buf.len() < filled {
            self.buf = vec![0u8; BATCH];
        }
        let buf = &mut self.buf[..filled];
        self.pages
            .read_exact_at(buf, self.file_start)
            .map_err(os(pid, "read pages.img"))?;
        let child = RemoteMem::of_process(pid);
        // The first piece not (wholly) written goes through the injector's fallback.
        write_in_batches(
            &remote,
            |at, batch| child.write_scattered(&buf[at..], batch),
            |(addr, len), at| Ok(inj.write_memory(addr, &buf[at..at + len])?),
        )
    }
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map)` with the saved mm fields, auxv and
/// exe (opened in the child). The struct and the auxv go into the trampoline page.
pub(super) fn set_mm(inj: &mut Injector, pid: i32, tramp: u64, mm: &proto::Mm) -> Result<()> {
    if mm.auxv.len() > (PAGE - AUXV_AT) as usize || mm.auxv.len() % 8 != 0 {
        return Err(ProcessRestoreError::Invalid {
            pid,
            what: format!("auxv of {} bytes", mm.auxv.len()),
        });
    }
    inj.write_memory(tramp + AUXV_AT, &mm.auxv)?;
    // The exe link already names the saved executable when the restorer runs that very
    // file (restoring a pipecr process, say); the kernel would refuse to replace it with
    // itself while it is mapped (EBUSY), so it is left as it is.
    let same_exe = || -> Option<bool> {
        let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        if link.as_os_str() != mm.exe.as_str() {
            return Some(false);
        }
        let now = rustix::fs::stat(format!("/proc/{pid}/exe")).ok()?;
        let saved = rustix::fs::stat(mm.exe.as_str()).ok()?;
        Some((now.st_dev, now.st_ino) == (saved.st_dev, saved.st_ino))
    };
    let exe_fd = if mm.exe.is_empty() || same_exe() == Some(true) {
        u32::MAX
    } else {
        open_in(inj, pid, tramp, &mm.exe, libc::O_RDONLY)? as u32
    };
    let map = PrctlMmMap {
        start_code: mm.start_code,
        end_code: mm.end_code,
        start_data: mm.start_data,
        end_data: mm.end_data,
        start_brk: mm.start_brk,
        brk: mm.brk,
        start_stack: mm.start_stack,
        arg_start: mm.arg_start,
        arg_end: mm.arg_end,
        env_start: mm.env_start,
        env_end: mm.env_end,
        auxv: tramp + AUXV_AT,
        auxv_size: mm.auxv.len() as u32,
        exe_fd,
    };
    let result = calls::prctl_set_mm_map(inj, tramp + MM_MAP_AT, &map);
    if exe_fd != u32::MAX {
        calls::close(inj, TargetFd(exe_fd as i32))?;
    }
    result.map_err(|e| ProcessRestoreError::Os {
        pid,
        op: "prctl(PR_SET_MM, PR_SET_MM_MAP)",
        source: io::Error::other(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapping_joins_neighbours_but_spares_what_stays() {
        let area = |start: u64, end: u64| MapEntry {
            start,
            end,
            ..MapEntry::default()
        };
        let current = [
            area(0x1000, 0x2000),
            area(0x3000, 0x4000),
            area(0x5000, 0x8000),
            area(0x9000, 0xa000),
        ];
        let stay = [(0x6000, 0x7000)];
        assert_eq!(
            unmap_ranges(&current, &stay),
            vec![(0x1000, 0x6000), (0x7000, 0xa000)]
        );
        assert_eq!(unmap_ranges(&current, &[]), vec![(0x1000, 0xa000)]);
    }

    #[test]
    fn free_space_is_found_between_areas() {
        let avoid = [(LOW, LOW + 2 * PAGE), (LOW + 3 * PAGE, LOW + 4 * PAGE)];
        assert_eq!(find_free(&avoid, PAGE), Some(LOW + 2 * PAGE));
        assert_eq!(find_free(&avoid, 2 * PAGE), Some(LOW + 4 * PAGE));
        assert_eq!(find_free(&[], PAGE), Some(LOW));
    }
}
