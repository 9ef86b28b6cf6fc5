//! The address space of a stopped process, turned into image records: its areas
//! ([`proto::Vma`]), its mm fields, auxv and executable ([`proto::Mm`]), the contents
//! of the pages worth keeping (the page store `pages.img`), and memory objects shared
//! between areas and processes ([`proto::MemObject`], saved once).
//!
//! What is stored, per page of a private area (decided from `/proc/PID/pagemap`, so
//! absent pages are never touched and a sparse 1 GiB area costs its page-table walk):
//!
//! 1. present or swapped pages only;
//! 2. not a page that is still the file's (a present page with the file bit set: never
//!    written since it was mapped) nor the shared zero page (same bit);
//! 3. not all zeros in anonymous memory (restore gets zeros anyway); in private file
//!    mappings an all-zero modified page is a `zero` run, since restore would otherwise
//!    see the file's bytes;
//! 4. once per physical frame: a page a parent and its forked child still share
//!    copy-on-write (same PFN) is stored by whichever is dumped first and referenced by
//!    the other. Only when the kernel shows us PFNs (CAP_SYS_ADMIN in the
//!    initial user namespace, see [`pagemap`]); otherwise each process stores its own
//!    copy.
//!
//! A mapped file that maps shows as deleted but that is still linked in the same
//! directory (what `sem_open` leaves behind) is recorded under that name, as the file it
//! is. Shared memory that lives on no disk (shared anonymous, SysV, memfd,
//! deleted files) is
//! read through `/proc/PID/map_files` once per object (dev, inode), skipping holes with
//! `SEEK_DATA`. `[vvar]`, `[vvar_vclock]`, `[vsyscall]` and `[vdso]` are recorded, never
//! read. Guard pages (`MADV_GUARD_INSTALL`, pagemap bit 58) are recorded in their area's
//! guard regions, never read. An AIO ring's kind reads the ring's header and unread
//! events itself ([`area::AreaKind::read_state`]). I/O and PFN mappings, hugetlb areas
//! and mappings of anonymous inodes are refused with [`MemError::Unsupported`].
//!
//! What an area is and how it is saved is for the kinds of memory area to say: one
//! module each ([`aio`], [`anon`], [`file_private`], [`file_shared`], [`memobj`], [`special`],
//! [`sysvshm`], [`refused`]) implementing [`area::AreaKind`], all listed in [`AREA_KINDS`], which the
//! dump here, the restore (`crate::restore`) and `pipecr show` go through
//! ([`saved_kind`]). This module reads what the kinds ask for (pages, objects) and knows
//! no kind by name.
//!
//! Every function expects the process to be stopped (see [`crate::freeze`]); none of
//! them uses ptrace, so any thread may call them.

pub mod aio;
pub mod anon;
pub mod area;
pub mod file_private;
pub mod file_shared;
pub mod maps;
pub mod memobj;
pub mod pagemap;
pub mod pages;
pub mod refused;
pub mod special;
pub mod sysvshm;
pub(crate) mod types;

pub use types::{MemError, PAGE_SIZE};

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::time::{Duration, Instant};

use pipecr_image::{ImageError, ImageWriter, RawWriter, proto};
use proto::{MemObjectKind, VmaFlag};

use crate::proc::ProcError;
use area::{AreaKind, Classified, Save, base_flags, unsupported};
use maps::MapEntry;
use pagemap::{Pagemap, PagemapEntry};
use pages::{MemReader, PageStore, Stored};
use types::display_path;

/// Pages of address space covered by one pagemap read (8 MiB): bounds the read buffer.
const CHUNK_PAGES: usize = 2048;

/// Bytes of a memory object read at a time.
const OBJECT_BATCH: u64 = 4 << 20;

/// Every kind of memory area, in the order they are asked to claim an area.
pub static AREA_KINDS: &[&dyn AreaKind] = &[
    // First: these flags refuse any area but the kernel's special ones and named shared
    // anonymous memory.
    &refused::RefusedArea,
    // Before memobj: `/SYSVKEY (deleted)` is an attachment of a System V segment, saved
    // with the segment in ipc.img.
    &sysvshm::SysvShmArea,
    // Before memobj: `/[aio] (deleted)` is the ring of an AIO context, not a file.
    &aio::AioRingArea,
    // Before memobj and special: `[heap]`, `[stack]`, `[anon:NAME]` and areas without a
    // path are anonymous memory.
    &anon::AnonArea,
    // Before special: `[anon_shmem:NAME]` is shared memory.
    &memobj::MemObjectArea,
    &special::SpecialArea,
    // Last: what is left is a mapping of a file, private or shared.
    &file_private::FilePrivateArea,
    &file_shared::FileSharedArea,
];

/// The kind of memory area that records saved areas of kind `vma_kind` (a [`proto::Vma`]'s
/// `kind`), with the short name such areas are listed under; `None` for a saved kind no
/// kind of this version records (`VMA_KIND_UNSPECIFIED`, or one of a newer version).
pub fn saved_kind(vma_kind: i32) -> Option<(&'static dyn AreaKind, &'static str)> {
    let wanted = proto::VmaKind::try_from(vma_kind).ok()?;
    AREA_KINDS.iter().find_map(|&kind| {
        kind.saved_kinds()
            .iter()
            .find(|(k, _)| *k == wanted)
            .map(|&(_, name)| (kind, name))
    })
}

/// What a memory dump did, for people and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Pages written to the page store.
    pub pages_stored: u64,
    /// Pages referenced again through their PFN (shared copy-on-write) instead of stored.
    pub pages_reused: u64,
    /// Present all-zero pages not stored.
    pub pages_zero: u64,
    /// Whether pagemap showed physical frames (`None`: no present page was met).
    pub pfns_visible: Option<bool>,
    /// Time spent reading process memory (the rest of a memory dump is pagemap, `/proc`
    /// and writing the page store).
    pub read_time: Duration,
}

/// Tracing target of the progress events: `total` (bytes a dump or restore expects to
/// move) once, then `done` (bytes just moved) as it goes. A progress bar listens to
/// them; nothing is computed for them unless a subscriber does.
pub const PROGRESS: &str = "pipecr::progress";

/// Saves the address spaces of the processes of one image: holds the page store and the
/// memory objects met so far, so that what processes share is stored once.
///
/// Call [`dump_process`](Self::dump_process) for each process, parents first, then
/// [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct MemDumper {
    store: PageStore,
    objects: Vec<proto::MemObject>,
    object_ids: HashMap<(u64, u64), u64>,
    pfns_visible: Option<bool>,
    read_time: Duration,
}

/// Pages a dump has read but not written yet (see [`MemDumper::with_write_behind`]):
/// they must be written before the image is committed.
#[must_use = "held pages are missing from the image until written"]
#[derive(Debug)]
pub struct HeldPages(PageStore);

impl HeldPages {
    /// Bytes waiting to be written.
    pub fn bytes(&self) -> usize {
        self.0.held()
    }

    /// Writes them into the page store of `writer`, where their indices already point.
    pub fn write(mut self, writer: &mut ImageWriter) -> Result<(), ImageError> {
        if self.0.held() == 0 {
            return Ok(());
        }
        self.0.flush(writer.raw(pipecr_image::PAGES)?)
    }
}

impl MemDumper {
    /// A dumper with an empty page store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A dumper that holds up to `bytes` of pages in memory instead of writing them as it
    /// reads them; [`finish`](Self::finish) hands them over as [`HeldPages`]. Lets a dump
    /// resume the tree before its memory reaches the page cache. The memory is allocated
    /// and touched here, before any process is stopped.
    pub fn with_write_behind(bytes: usize) -> Self {
        let mut dumper = Self::default();
        dumper.store.hold_back(bytes);
        dumper
    }

    /// Saves the address space of the stopped process `pid`: its pages into the page
    /// store [`pipecr_image::PAGES`] of `writer`, memory objects it is the first to map
    /// into this dumper; returns its [`proto::Mm`].
    pub fn dump_process(
        &mut self,
        pid: i32,
        writer: &mut ImageWriter,
    ) -> Result<proto::Mm, MemError> {
        self.dump_process_from(pid, pid, writer)
    }

    /// Like [`dump_process`](Self::dump_process), reading everything from the stopped
    /// process `source` instead: a [`crate::snapshot::Snapshot`] of `pid`. The record and
    /// the errors name `pid`.
    pub fn dump_process_from(
        &mut self,
        pid: i32,
        source: i32,
        writer: &mut ImageWriter,
    ) -> Result<proto::Mm, MemError> {
        let _span = tracing::debug_span!("memory", pid).entered();
        let mut entries = maps::smaps(source)?;
        relink(pid, source, &mut entries)?;
        tracing::debug!(
            pid,
            source,
            areas = entries.len(),
            "saving the address space"
        );
        let mut mm = mm_fields(source)?;
        mm.pid = pid;
        mm.auxv =
            std::fs::read(format!("/proc/{source}/auxv")).map_err(|source| MemError::Read {
                pid,
                what: "/proc/PID/auxv".into(),
                source,
            })?;
        let (exe, exe_deleted) = read_link(source, "exe").map_err(|e| match e {
            MemError::Read { what, source, .. } => MemError::Read { pid, what, source },
            e => e,
        })?;
        mm.exe = exe;
        mm.exe_deleted = exe_deleted;
        mm.exe_identity = std::fs::metadata(format!("/proc/{source}/exe"))
            .ok()
            .map(|m| identity(&m));

        let raw = writer.raw(pipecr_image::PAGES)?;
        let mut pagemap = Pagemap::open(source).map_err(|source| MemError::Read {
            pid,
            what: "/proc/PID/pagemap".into(),
            source,
        })?;
        let mut reader = MemReader::new(source);
        for e in &entries {
            let Classified {
                kind,
                mut flags,
                save,
            } = classify(pid, e)?;
            let mut vma = proto::Vma {
                start: e.start,
                end: e.end,
                prot: u32::from(e.read) | u32::from(e.write) << 1 | u32::from(e.exec) << 2,
                kind: kind as i32,
                pgoff: e.offset,
                path: e.path.clone(),
                vm_flags: e.vm_flags.clone(),
                ..Default::default()
            };
            if e.inode != 0 {
                vma.identity = Some(
                    std::fs::metadata(format!("/proc/{source}/map_files/{}", e.map_files_name()))
                        .map(|m| identity(&m))
                        .unwrap_or_else(|_| proto::FileIdentity {
                            dev: rustix::fs::makedev(e.dev.0, e.dev.1),
                            inode: e.inode,
                            ..Default::default()
                        }),
                );
            }
            match save {
                Save::Nothing => {
                    flags |= VmaFlag::NotSaved as u32;
                    // A shared mapping of a file may hold guard pages too.
                    if e.inode != 0 {
                        vma.guard_regions = scan_guards(pid, e, &mut pagemap)?;
                    }
                }
                Save::Private => {
                    vma.guard_regions =
                        self.dump_private(pid, e, &mut pagemap, &mut reader, raw, &mut mm)?
                }
                Save::Object(k) => {
                    vma.object_id = self.dump_object(pid, source, e, k, raw)?;
                    vma.guard_regions = scan_guards(pid, e, &mut pagemap)?;
                }
                Save::PrivateAndObject(k) => {
                    vma.object_id = self.dump_object(pid, source, e, k, raw)?;
                    vma.guard_regions =
                        self.dump_private(pid, e, &mut pagemap, &mut reader, raw, &mut mm)?;
                }
            }
            vma.flags = flags;
            if let Some(kind) = AREA_KINDS.iter().find(|k| k.claims(e)) {
                kind.record(e, &mut vma);
                kind.read_state(pid, source, e, &mut vma)?;
            }
            mm.vmas.push(vma);
        }
        if self.pfns_visible.is_none() {
            self.pfns_visible = pagemap.shows_pfns();
        }
        // /proc has no field for the current break; the kernel keeps [heap] ending at
        // PAGE_ALIGN(brk). The heap may be several areas, all shown as [heap]: after a
        // fork the break grows into a new area that does not merge with the old one (a
        // tmux server's, say). The break is the end of the last; the end of the first
        // would give a break below memory malloc already uses, and its next sbrk would
        // corrupt the heap.
        mm.brk = entries
            .iter()
            .filter(|e| e.path == "[heap]" && e.inode == 0)
            .map(|e| e.end)
            .max()
            .unwrap_or(mm.start_brk);
        mm.set_brk_source(proto::BrkSource::HeapEnd);
        Ok(mm)
    }

    /// The memory objects saved, for `mem-objects.img`, what was done, and the pages
    /// still to be written.
    pub fn finish(self) -> (Vec<proto::MemObject>, MemStats, HeldPages) {
        let stats = MemStats {
            pages_stored: self.store.stored,
            pages_reused: self.store.reused,
            pages_zero: self.store.zero,
            pfns_visible: self.pfns_visible,
            read_time: self.read_time,
        };
        (self.objects, stats, HeldPages(self.store))
    }

    /// Saves the pages of a private area worth saving (see the module documentation);
    /// returns the guard regions (`MADV_GUARD_INSTALL`) found in it.
    fn dump_private(
        &mut self,
        pid: i32,
        e: &MapEntry,
        pagemap: &mut Pagemap,
        reader: &mut MemReader,
        raw: &mut RawWriter,
        mm: &mut proto::Mm,
    ) -> Result<Vec<proto::GuardRegion>, MemError> {
        let mut guards = Vec::new();
        let anonymous = e.inode == 0;
        let page = PAGE_SIZE as usize;
        let mut entries: Vec<PagemapEntry> = Vec::with_capacity(CHUNK_PAGES);
        let mut plan: Vec<(u64, Option<Stored>, Option<u64>)> = Vec::new();
        let mut ranges: Vec<pages::Range> = Vec::new();
        let mut outcome: Vec<Stored> = Vec::new();
        let mut chunk = e.start;
        while chunk < e.end {
            let n = CHUNK_PAGES.min(((e.end - chunk) / PAGE_SIZE) as usize);
            pagemap
                .read(chunk, &mut entries, n)
                .map_err(|source| MemError::Read {
                    pid,
                    what: format!("/proc/PID/pagemap at {chunk:#x}"),
                    source,
                })?;
            let shows_pfns = pagemap.shows_pfns() == Some(true);
            plan.clear();
            ranges.clear();
            for (i, pm) in entries.iter().enumerate() {
                let addr = chunk + i as u64 * PAGE_SIZE;
                // A guard page holds nothing and cannot be read: it is recorded, to be
                // installed again.
                if pm.guard() {
                    push_guard(&mut guards, addr);
                    continue;
                }
                // Present with the file bit: the file's own page, or the zero page.
                if !(pm.swapped() || pm.present() && !pm.file_or_shared()) {
                    continue;
                }
                // Every frame is looked up and remembered, whatever bit 56 says: on
                // Linux 6.18 a page a child shares copy-on-write with its parent reads
                // "exclusive" in the child and "shared" in the parent. One frame holds
                // one content while the tree is frozen, so a match is always right.
                let shared_pfn = pm.pfn().filter(|_| shows_pfns);
                if let Some(known) = shared_pfn.and_then(|pfn| self.store.lookup(pfn)) {
                    self.store.reused += u64::from(matches!(known, Stored::At(_)));
                    plan.push((addr, Some(known), None));
                    continue;
                }
                plan.push((addr, None, shared_pfn));
                // Only a present page mapped by this process alone may be pinned to read
                // it (see `MemReader`).
                let alone = pm.present() && !pm.swapped() && pm.exclusive();
                match ranges.last_mut() {
                    Some((start, len, excl)) if *start + *len as u64 == addr && *excl == alone => {
                        *len += page
                    }
                    _ => ranges.push((addr, page, alone)),
                }
            }
            if !ranges.is_empty() {
                let total = ranges.iter().map(|r| r.1).sum();
                let read_time = &mut self.read_time;
                self.store.store_with(raw, total, &mut outcome, |buf| {
                    let started = Instant::now();
                    let read =
                        reader
                            .read(&ranges, buf)
                            .map_err(|(addr, source)| MemError::Pages {
                                pid,
                                addr,
                                path: display_path(e),
                                source,
                            });
                    *read_time += started.elapsed();
                    read
                })?;
                tracing::info!(target: PROGRESS, done = total as u64);
            }
            let mut read = outcome.iter();
            for &(addr, known, pfn) in &plan {
                let stored = match known {
                    Some(s) => s,
                    None => {
                        let s = read.next().copied().unwrap_or(Stored::Zero);
                        if let Some(pfn) = pfn {
                            self.store.remember(pfn, s);
                        }
                        s
                    }
                };
                if stored == Stored::Zero && anonymous {
                    continue;
                }
                push_run(&mut mm.pages, addr, stored);
            }
            chunk += n as u64 * PAGE_SIZE;
        }
        Ok(guards)
    }

    /// Saves the object an area maps, the first time it is met; returns its id.
    fn dump_object(
        &mut self,
        pid: i32,
        source: i32,
        e: &MapEntry,
        kind: MemObjectKind,
        raw: &mut RawWriter,
    ) -> Result<u64, MemError> {
        let path = format!("/proc/{source}/map_files/{}", e.map_files_name());
        let what = format!("{path} ({})", display_path(e));
        let file = File::open(&path).map_err(|source| MemError::Read {
            pid,
            what: what.clone(),
            source,
        })?;
        self.save_object_from(pid, &file, kind, &e.path, &what, raw)
    }

    /// Saves the object `file` is open on, the first time it is met (by device and
    /// inode); returns its id. `what` names it in errors.
    fn save_object_from(
        &mut self,
        pid: i32,
        file: &File,
        kind: MemObjectKind,
        name: &str,
        what: &str,
        raw: &mut RawWriter,
    ) -> Result<u64, MemError> {
        let fail = |source| MemError::Read {
            pid,
            what: what.to_owned(),
            source,
        };
        let meta = file.metadata().map_err(fail)?;
        if let Some(&id) = self.object_ids.get(&(meta.dev(), meta.ino())) {
            return Ok(id);
        }
        let id = self.objects.len() as u64 + 1;
        self.object_ids.insert((meta.dev(), meta.ino()), id);
        let seals = match kind {
            MemObjectKind::Memfd => rustix::fs::fcntl_get_seals(file)
                .map(|s| s.bits())
                .unwrap_or(0),
            _ => 0,
        };
        let mut object = proto::MemObject {
            id,
            kind: kind as i32,
            identity: Some(identity(&meta)),
            name: name.to_owned(),
            pages: Vec::new(),
            seals,
        };
        let size = meta.len().next_multiple_of(PAGE_SIZE);
        let mut outcome = Vec::new();
        let mut off = 0;
        while off < size {
            // Holes read as zeros: skip them without reading.
            let data = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(off)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break,
                Err(err) => return Err(fail(err.into())),
            };
            let hole = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(data))
                .unwrap_or(size)
                .next_multiple_of(PAGE_SIZE)
                .min(size);
            let mut at = data - data % PAGE_SIZE;
            while at < hole {
                let len = OBJECT_BATCH.min(hole - at) as usize;
                let read_time = &mut self.read_time;
                self.store.store_with(raw, len, &mut outcome, |buf| {
                    let _time = Timed(read_time, Instant::now());
                    let mut got = 0;
                    while got < len {
                        match file.read_at(&mut buf[got..], at + got as u64) {
                            Ok(0) => break,
                            Ok(k) => got += k,
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(err) => return Err(fail(err)),
                        }
                    }
                    // Past end of file (the last partial page) reads as zeros.
                    buf[got..].fill(0);
                    Ok(())
                })?;
                tracing::info!(target: PROGRESS, done = len as u64);
                for (i, &s) in outcome.iter().enumerate() {
                    if s != Stored::Zero {
                        push_run(&mut object.pages, at + i as u64 * PAGE_SIZE, s);
                    }
                }
                at += len as u64;
            }
            off = hole.max(data + 1);
        }
        self.objects.push(object);
        Ok(id)
    }
}

impl crate::objects::ObjectSaver for MemDumper {
    fn save_object(
        &mut self,
        writer: &mut ImageWriter,
        pid: i32,
        file: &File,
        kind: MemObjectKind,
        name: &str,
    ) -> Result<u64, MemError> {
        let raw = writer.raw(pipecr_image::PAGES)?;
        self.save_object_from(pid, file, kind, name, name, raw)
    }
}

/// Gives back its name to each area whose file maps shows as deleted but still has a link
/// in the same directory (what `sem_open` leaves: it maps a temporary name, links the
/// real one and removes the temporary one), so that it is mapped again by that name, as
/// the file it is, and not saved as a copy. A shared mapping of such a file whose other
/// name is not found is refused: a copy would no longer be shared with the file.
fn relink(pid: i32, source: i32, entries: &mut [MapEntry]) -> Result<(), MemError> {
    for e in entries.iter_mut().filter(|e| e.deleted && e.inode != 0) {
        let Ok(meta) =
            std::fs::metadata(format!("/proc/{source}/map_files/{}", e.map_files_name()))
        else {
            continue;
        };
        if meta.nlink() == 0 {
            continue;
        }
        let dir = std::path::Path::new(&e.path).parent();
        // A directory of another file system cannot hold a link to it: the file lives
        // on a pseudo file system (the `/[aio]` ring of an AIO context, say), where
        // its name never was a path.
        if dir
            .and_then(|d| std::fs::metadata(d).ok())
            .is_none_or(|d| d.dev() != meta.dev())
        {
            continue;
        }
        let other = dir
            .and_then(|d| std::fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .flatten()
            .find(|entry| {
                entry.ino() == meta.ino()
                    && entry
                        .metadata()
                        .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
            });
        match other {
            Some(entry) => {
                e.path = entry.path().to_string_lossy().into_owned();
                e.deleted = false;
            }
            None if e.shared => {
                return Err(unsupported(
                    pid,
                    e,
                    "a shared mapping of a file whose name was removed while another link to it remains elsewhere",
                ));
            }
            None => {}
        }
    }
    Ok(())
}

/// Whether everything a dump saves of `pid`'s memory is private to it (pages of private
/// areas; no memory object, which others could change, nor kernel state read from an
/// area, which moves on with the process) and a fork copies every area as
/// it is and quietly (none marked `MADV_DONTFORK` or `MADV_WIPEONFORK`, none registered
/// with userfaultfd, whose monitor may be told of forks): then a fork of it is an exact
/// copy of what the dump reads (see [`crate::snapshot`]).
pub fn only_private(pid: i32) -> Result<bool, MemError> {
    for e in maps::smaps(pid)? {
        if ["dc", "wf", "um", "uw", "ui"]
            .iter()
            .any(|flag| e.has_vm_flag(flag))
        {
            return Ok(false);
        }
        if AREA_KINDS
            .iter()
            .find(|k| k.claims(&e))
            .is_some_and(|k| k.read_while_stopped())
        {
            return Ok(false);
        }
        match classify(pid, &e) {
            Ok(Classified {
                save: Save::Nothing | Save::Private,
                ..
            }) => {}
            Ok(_) | Err(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// How much write-behind buffer a dump of the processes `pids` should hold: their
/// private and shared anonymous memory (proportional shares, so pages shared copy-on-write
/// count once over the tree) plus swap, with an eighth to spare, and never more than half
/// of `MemAvailable`. Best effort: a process that is gone or unreadable counts 0.
pub fn write_behind_size(pids: &[i32]) -> usize {
    let want = saved_size_estimate(pids) / 1024;
    let available = std::fs::read_to_string("/proc/meminfo")
        .map(|t| kib_of(&t, "MemAvailable:"))
        .unwrap_or(0);
    let bytes = (want + want / 8).min(available / 2).saturating_mul(1024);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// About how many bytes of memory a dump of the processes `pids` saves: their private and
/// shared anonymous memory (proportional shares) plus swap, from `smaps_rollup`. What a
/// progress bar and the write-behind buffer are sized from. Best effort: a process that
/// is gone or unreadable counts 0.
pub fn saved_size_estimate(pids: &[i32]) -> u64 {
    let mut kib = 0u64;
    for pid in pids {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            kib += kib_of(&text, "Pss_Anon:")
                + kib_of(&text, "Pss_Shmem:")
                + kib_of(&text, "SwapPss:");
        }
    }
    kib.saturating_mul(1024)
}

/// The value of the `key` line of a `/proc` file in kB (`MemAvailable:   123 kB`); 0 when
/// absent.
fn kib_of(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Adds the time since `.1` to `.0` when dropped: times a closure with several exits.
struct Timed<'a>(&'a mut Duration, Instant);

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        *self.0 += self.1.elapsed();
    }
}

/// The guard regions (`MADV_GUARD_INSTALL`) of an area whose pages are not read from
/// pagemap (a shared mapping): its pagemap walked for them alone.
fn scan_guards(
    pid: i32,
    e: &MapEntry,
    pagemap: &mut Pagemap,
) -> Result<Vec<proto::GuardRegion>, MemError> {
    let mut guards = Vec::new();
    let mut entries: Vec<PagemapEntry> = Vec::with_capacity(CHUNK_PAGES);
    let mut chunk = e.start;
    while chunk < e.end {
        let n = CHUNK_PAGES.min(((e.end - chunk) / PAGE_SIZE) as usize);
        pagemap
            .read(chunk, &mut entries, n)
            .map_err(|source| MemError::Read {
                pid,
                what: format!("/proc/PID/pagemap at {chunk:#x}"),
                source,
            })?;
        for (i, pm) in entries.iter().enumerate() {
            if pm.guard() {
                push_guard(&mut guards, chunk + i as u64 * PAGE_SIZE);
            }
        }
        chunk += n as u64 * PAGE_SIZE;
    }
    Ok(guards)
}

/// Appends the guard page at `addr` to `guards`, extending the last run when it ends
/// there.
fn push_guard(guards: &mut Vec<proto::GuardRegion>, addr: u64) {
    if let Some(last) = guards.last_mut()
        && last.start + last.nr_pages * PAGE_SIZE == addr
    {
        last.nr_pages += 1;
        return;
    }
    guards.push(proto::GuardRegion {
        start: addr,
        nr_pages: 1,
    });
}

/// Appends one page to a list of runs, extending the last run when both its address and
/// its store index follow on.
fn push_run(runs: &mut Vec<proto::PageRun>, start: u64, stored: Stored) {
    let (zero, index) = match stored {
        Stored::Zero => (true, 0),
        Stored::At(i) => (false, i),
    };
    if let Some(last) = runs.last_mut()
        && last.zero == zero
        && last.start + last.nr_pages * PAGE_SIZE == start
        && (zero || last.store_index + last.nr_pages == index)
    {
        last.nr_pages += 1;
        return;
    }
    runs.push(proto::PageRun {
        start,
        nr_pages: 1,
        store_index: index,
        zero,
    });
}

/// Decides what an area is and how it is saved: asks the kinds of [`AREA_KINDS`] in
/// turn.
fn classify(pid: i32, e: &MapEntry) -> Result<Classified, MemError> {
    let kind = AREA_KINDS
        .iter()
        .find(|k| k.claims(e))
        .ok_or_else(|| unsupported(pid, e, "an area of unknown kind"))?;
    let mut c = kind.classify(pid, e)?;
    c.flags |= base_flags(e);
    Ok(c)
}

/// The identity of a file from its metadata.
fn identity(m: &std::fs::Metadata) -> proto::FileIdentity {
    proto::FileIdentity {
        dev: m.dev(),
        inode: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        mode: m.mode(),
    }
}

/// readlink `/proc/PID/NAME`, " (deleted)" removed and reported.
pub(crate) fn read_link(pid: i32, name: &str) -> Result<(String, bool), MemError> {
    let link =
        std::fs::read_link(format!("/proc/{pid}/{name}")).map_err(|source| MemError::Read {
            pid,
            what: format!("/proc/PID/{name}"),
            source,
        })?;
    let link = link.to_string_lossy();
    Ok(match link.strip_suffix(" (deleted)") {
        Some(p) => (p.to_owned(), true),
        None => (link.into_owned(), false),
    })
}

/// The mm fields of `/proc/PID/stat` (proc(5) fields 26-28 and 45-51).
fn mm_fields(pid: i32) -> Result<proto::Mm, MemError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| MemError::Read {
        pid,
        what: path.clone(),
        source,
    })?;
    parse_mm_fields(pid, &text).ok_or(MemError::Proc(ProcError::Parse {
        path: path.into(),
        what: "52 fields, the mm fields at 26-28 and 45-51",
    }))
}

/// Parses the mm fields out of the text of `/proc/PID/stat`.
fn parse_mm_fields(pid: i32, text: &str) -> Option<proto::Mm> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<u64> = rest
        .split_ascii_whitespace()
        .skip(1) // state
        .map(|f| {
            f.parse::<u64>()
                .or_else(|_| f.parse::<i64>().map(|v| v as u64))
        })
        .collect::<Result<_, _>>()
        .ok()?;
    // fields[0] is proc(5) field 4 (ppid).
    let f = |n: usize| fields.get(n - 4).copied();
    Some(proto::Mm {
        pid,
        start_code: f(26)?,
        end_code: f(27)?,
        start_stack: f(28)?,
        start_data: f(45)?,
        end_data: f(46)?,
        start_brk: f(47)?,
        arg_start: f(48)?,
        arg_end: f(49)?,
        env_start: f(50)?,
        env_end: f(51)?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every saved kind of area is recorded by exactly one kind of memory area, which
    /// names it, and says whether restore can bring it back, as the preflight asks.
    #[test]
    fn every_saved_kind_has_one_kind() {
        let kinds: Vec<proto::VmaKind> = (1..64)
            .filter_map(|k| proto::VmaKind::try_from(k).ok())
            .collect();
        assert_eq!(kinds.len(), 13);
        let mut names = Vec::new();
        for k in kinds {
            let owners = AREA_KINDS
                .iter()
                .filter(|a| a.saved_kinds().iter().any(|(s, _)| *s == k))
                .count();
            assert_eq!(owners, 1, "{k:?}");
            names.push(saved_kind(k as i32).unwrap().1);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 13, "distinct names");
        assert!(saved_kind(proto::VmaKind::Unspecified as i32).is_none());
        assert!(saved_kind(999).is_none());

        let vma = |kind: proto::VmaKind, object_id: u64, flags: u32| proto::Vma {
            kind: kind as i32,
            object_id,
            flags,
            path: "/bin/true".into(),
            ..Default::default()
        };
        let restorable = |v: &proto::Vma| saved_kind(v.kind).unwrap().0.restorable(v);
        let deleted = VmaFlag::Deleted as u32;
        use proto::VmaKind::*;
        assert_eq!(restorable(&vma(Anonymous, 0, 0)), Ok(()));
        assert_eq!(restorable(&vma(Vdso, 0, 0)), Ok(()));
        assert_eq!(restorable(&vma(FileShared, 0, 0)), Ok(()));
        assert_eq!(restorable(&vma(Object, 3, 0)), Ok(()));
        assert_eq!(
            restorable(&vma(Object, 0, 0)),
            Err("shared memory whose object is not in the image")
        );
        assert_eq!(
            restorable(&vma(OtherSpecial, 0, 0)),
            Err("a kernel special area")
        );
        assert_eq!(restorable(&vma(FilePrivate, 2, deleted)), Ok(()));
        let memfd = vma(FilePrivate, 2, deleted);
        assert_eq!(saved_kind(memfd.kind).unwrap().0.mapped_file(&memfd), None);
        let file = vma(FilePrivate, 0, 0);
        assert_eq!(
            saved_kind(file.kind).unwrap().0.mapped_file(&file),
            Some("/bin/true")
        );
        let heap = vma(Heap, 0, 0);
        let stack = vma(Stack, 0, 0);
        let inherited = |v: &proto::Vma| saved_kind(v.kind).unwrap().0.inherited_copy_on_write(v);
        assert!(inherited(&heap) && !inherited(&stack) && !inherited(&file));
    }

    #[test]
    fn mm_fields_from_stat() {
        let text = "29737 (c a t) R 29734 29734 28351 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 \
            609319 3133440 381 18446744073709551615 94455842689024 94455842708905 \
            140735501129920 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94455842724912 \
            94455842726528 94456147046400 140735501134552 140735501134572 \
            140735501134572 140735501135851 0\n";
        let mm = parse_mm_fields(1, text).unwrap();
        assert_eq!(mm.start_code, 94455842689024);
        assert_eq!(mm.end_code, 94455842708905);
        assert_eq!(mm.start_stack, 140735501129920);
        assert_eq!(mm.start_data, 94455842724912);
        assert_eq!(mm.start_brk, 94456147046400);
        assert_eq!(mm.env_end, 140735501135851);
    }

    #[test]
    fn runs_merge_only_when_address_and_index_follow() {
        let mut runs = Vec::new();
        push_run(&mut runs, 0x1000, Stored::At(5));
        push_run(&mut runs, 0x2000, Stored::At(6));
        push_run(&mut runs, 0x3000, Stored::At(2));
        push_run(&mut runs, 0x4000, Stored::Zero);
        push_run(&mut runs, 0x5000, Stored::Zero);
        push_run(&mut runs, 0x7000, Stored::At(3));
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.start, r.nr_pages, r.store_index, r.zero))
            .collect();
        assert_eq!(
            got,
            [
                (0x1000, 2, 5, false),
                (0x3000, 1, 2, false),
                (0x4000, 2, 0, true),
                (0x7000, 1, 3, false)
            ]
        );
    }

    #[test]
    fn each_area_goes_to_the_kind_that_saves_it() {
        use proto::VmaKind;
        let area = |path: &str, shared: bool, deleted: bool, inode: u64, flags: &[&str]| MapEntry {
            start: 0x1000,
            end: 0x2000,
            shared,
            deleted,
            inode,
            path: path.into(),
            vm_flags: flags.iter().map(|f| f.to_string()).collect(),
            ..MapEntry::default()
        };
        let cases = [
            (
                area("", false, false, 0, &[]),
                "anonymous",
                VmaKind::Anonymous,
                Save::Private,
            ),
            (
                area("[stack]", false, false, 0, &["gd"]),
                "anonymous",
                VmaKind::Stack,
                Save::Private,
            ),
            (
                area("[anon_shmem:x]", true, false, 9, &["ht"]),
                "memory object",
                VmaKind::Object,
                Save::Object(MemObjectKind::SharedAnonymous),
            ),
            (
                area("/memfd:m", true, true, 9, &[]),
                "memory object",
                VmaKind::Object,
                Save::Object(MemObjectKind::Memfd),
            ),
            (
                area("[vdso]", false, false, 0, &[]),
                "special",
                VmaKind::Vdso,
                Save::Nothing,
            ),
            (
                area("/tmp/gone", false, true, 9, &[]),
                "private file",
                VmaKind::FilePrivate,
                Save::PrivateAndObject(MemObjectKind::DeletedFile),
            ),
            (
                area("/lib/x.so", true, false, 9, &[]),
                "shared file",
                VmaKind::FileShared,
                Save::Nothing,
            ),
        ];
        for (e, name, kind, save) in cases {
            let claimer = AREA_KINDS.iter().find(|k| k.claims(&e)).unwrap();
            assert_eq!(claimer.name(), name, "{e:?}");
            let c = classify(1, &e).unwrap();
            assert_eq!((c.kind, c.save), (kind, save), "{e:?}");
        }
        let stack = classify(1, &area("[stack]", false, false, 0, &["gd"])).unwrap();
        assert_eq!(
            stack.flags,
            VmaFlag::Growsdown as u32 | VmaFlag::Anonymous as u32
        );
        let gone = classify(1, &area("/memfd:m", true, true, 9, &[])).unwrap();
        assert_eq!(gone.flags, VmaFlag::Shared as u32 | VmaFlag::Deleted as u32);
        for e in [
            area("/dev/mem", true, false, 9, &["io"]),
            area("", true, false, 0, &[]),
        ] {
            assert!(
                matches!(classify(1, &e), Err(MemError::Unsupported { .. })),
                "{e:?}"
            );
        }
    }
}
