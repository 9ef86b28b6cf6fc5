//! The kinds of memory area: the [`AreaKind`] trait each kind implements (recognise an
//! area of a live process, say how it is saved, map it again in a process being
//! restored), what a kind answers ([`Classified`], [`Save`], [`ObjectId`]), what restore
//! lends a kind to map with ([`MapTarget`], [`MapError`]), and the helpers several kinds
//! share (the flags of every area, the object behind a mapping of a deleted file, mapping
//! a file by path).
//!
//! One module per kind implements the trait; [`super::AREA_KINDS`] lists them, and the
//! dump ([`super`]), the restore (`crate::restore::mm`, its checks and its copy-on-write
//! prefill) and `pipecr show` go through that table ([`super::saved_kind`] finds the kind
//! of a saved area) and know no kind by name. Reading pages and objects is left to [`super`]; the order of the
//! restore steps to `crate::restore`. This module sits below the kinds and the table, so
//! a kind imports it and never [`super`].

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sys::mman::{MapFlags, ProtFlags};
use pipecr_image::proto::{self, MemObjectKind, VmaFlag, VmaKind};

use super::maps::MapEntry;
use super::types::{MemError, display_path};
use crate::inject::{InjectError, Injector};
use crate::sys::kcmp::TargetFd;

/// How an area's contents are saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// Nothing of its contents.
    Nothing,
    /// Its pages, from pagemap.
    Private,
    /// The object behind it, once.
    Object(MemObjectKind),
    /// Its pages from pagemap, and the object behind it (private mapping of a file that
    /// exists nowhere else).
    PrivateAndObject(MemObjectKind),
}

/// What a kind makes of one area of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// The kind recorded in the image.
    pub kind: VmaKind,
    /// Its [`VmaFlag`]s: those of the kind (the dump adds [`base_flags`]).
    pub flags: u32,
    /// How its contents are saved.
    pub save: Save,
}

/// The identity of an object that backs an area and that a descriptor may also name
/// (a memfd both mapped and open): its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// Device (`makedev(major, minor)`).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

impl ObjectId {
    /// The object the maps line of `e` names.
    pub fn of(e: &MapEntry) -> ObjectId {
        ObjectId {
            dev: rustix::fs::makedev(e.dev.0, e.dev.1),
            ino: e.inode,
        }
    }
}

/// Why an area could not be mapped again; restore adds the process and the area.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// An injected call failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// The area needs something restore cannot do yet.
    #[error("cannot restore {what} yet")]
    Unsupported {
        /// What.
        what: String,
    },
    /// The image or the system does not hold what the area needs.
    #[error("{what}")]
    Invalid {
        /// What is missing or inconsistent.
        what: String,
    },
}

/// What restore lends a kind to map an area in the process being restored.
pub trait MapTarget {
    /// The injector driving that process.
    fn injector(&mut self) -> &mut Injector;
    /// A descriptor of that process for `path` opened with the open `flags`: opened once
    /// per path and flags, closed by restore when every area is mapped.
    fn open(&mut self, path: &str, flags: i32) -> Result<TargetFd, MapError>;
    /// A descriptor of that process for the memory object `id` of `mem-objects.img`, as
    /// restore created it ([`AreaKind::create_object`]), opened with the open `flags`:
    /// every process that maps it maps the same object.
    fn object(&mut self, id: u64, flags: i32) -> Result<TargetFd, MapError>;
}

/// Fills a memory object just created with its saved pages (lent by restore to
/// [`AreaKind::create_object`]).
pub type FillObject<'a> = dyn FnMut(BorrowedFd<'_>) -> Result<(), MapError> + 'a;

/// One kind of memory area.
///
/// The dump asks each kind of [`super::AREA_KINDS`] in turn whether it
/// [`claims`](Self::claims) an area and lets the first that does
/// [`classify`](Self::classify) it; restore finds the kind that
/// [`restores`](Self::restores) a saved area and lets it [`map`](Self::map) it.
pub trait AreaKind: Sync {
    /// A short name, for messages and tests.
    fn name(&self) -> &'static str;

    /// Whether `e` is an area of this kind (asked only when no kind listed before it in
    /// [`super::AREA_KINDS`] claimed it).
    fn claims(&self, e: &MapEntry) -> bool;

    /// What `e`, an area of process `pid`, is and how it is saved; an error for an area
    /// of this kind that cannot be saved.
    fn classify(&self, pid: i32, e: &MapEntry) -> Result<Classified, MemError>;

    /// The object behind `e` that a descriptor could also name, where the area is
    /// backed by one (`None` otherwise), as its maps line names it. (The dump keys the
    /// objects it saves by the `stat` of `/proc/PID/map_files`, the same object.)
    fn object(&self, _e: &MapEntry) -> Option<ObjectId> {
        None
    }

    /// Adds to the saved area `vma` what this kind records of `e` beyond its kind, flags
    /// and contents (a System V attachment: its segment's id and `shmat` flags). Nothing
    /// by default.
    fn record(&self, _e: &MapEntry, _vma: &mut proto::Vma) {}

    /// Adds to the saved area `vma` what this kind reads of `e` in the live process
    /// (kernel state user space sees only in the area's memory: an AIO ring's header
    /// and unread events), read from the stopped process `source` (`pid` itself, or a
    /// snapshot of it); an error names `pid`. Nothing by default.
    fn read_state(
        &self,
        _pid: i32,
        _source: i32,
        _e: &MapEntry,
        _vma: &mut proto::Vma,
    ) -> Result<(), MemError> {
        Ok(())
    }

    /// Whether what [`read_state`](Self::read_state) saves of an area must be read while
    /// the process is stopped: kernel state it changes as it runs (an AIO ring's head,
    /// tail and events), which a copy-on-write snapshot does not freeze
    /// ([`super::only_private`]). No by default.
    fn read_while_stopped(&self) -> bool {
        false
    }

    /// The saved kinds ([`VmaKind`]) this kind records areas as, each with the short
    /// name `pipecr show` lists such areas under ([`super::saved_kind`]).
    fn saved_kinds(&self) -> &'static [(VmaKind, &'static str)];

    /// Whether restore can bring back the saved area `vma`, one this kind recorded
    /// ([`saved_kinds`](Self::saved_kinds)); what the area is, for the refusal, when it
    /// cannot. Asked before anything is created. By default an area is restorable.
    fn restorable(&self, _vma: &proto::Vma) -> Result<(), &'static str> {
        Ok(())
    }

    /// Whether the file at [`mapped_file`](Self::mapped_file), whose metadata where
    /// restore runs is `now`, can still be mapped as the saved area `vma`; what is wrong
    /// with it otherwise. Asked before anything is created. By default any file will do.
    fn mapped_file_fits(&self, _vma: &proto::Vma, _now: &std::fs::Metadata) -> Result<(), String> {
        Ok(())
    }

    /// The file that must exist where restore runs for the saved area `vma` to be mapped
    /// again (checked before anything is created); `None` when it maps no file by path.
    fn mapped_file<'a>(&self, _vma: &'a proto::Vma) -> Option<&'a str> {
        None
    }

    /// Whether the saved area `vma` is private memory a parent may map and fill with its
    /// pages before it creates its children, for them to inherit copy-on-write (restore
    /// checks the rest: not shared, not growing down, page-aligned).
    fn inherited_copy_on_write(&self, _vma: &proto::Vma) -> bool {
        false
    }

    /// Whether this kind maps the saved area `vma` again.
    fn restores(&self, vma: &proto::Vma) -> bool;

    /// Whether a restored area of this kind is private memory that restore fills with
    /// the saved pages (mapped writable while they are written, then protected).
    fn filled_privately(&self) -> bool {
        false
    }

    /// For an area the kernel gives every new process (named `path` in its maps), the
    /// saved kind restore moves it onto instead of mapping it; `None` when this kind has
    /// no such area.
    fn moved_into_place(&self, _path: &str) -> Option<VmaKind> {
        None
    }

    /// Creates, in the restorer and before any process of the tree, the memory object
    /// `object` of `mem-objects.img` when it is of a kind this kind of area creates
    /// (`None` otherwise): empty and of its saved size, filled by `fill` with its saved
    /// pages, then given what must come after its contents (seals, mode). Restore holds
    /// the descriptor until every process is restored; descriptors and mappings of the
    /// object are opened from it.
    fn create_object(
        &self,
        _object: &proto::MemObject,
        _fill: &mut FillObject<'_>,
    ) -> Option<Result<OwnedFd, MapError>> {
        None
    }

    /// Maps the saved area `vma` at its address in the process of `to`: writable when
    /// `written` (its pages are written next, then its protection set), with its saved
    /// protection otherwise. By default: [`not_restorable`].
    fn map(&self, vma: &proto::Vma, written: bool, to: &mut dyn MapTarget) -> Result<(), MapError> {
        let _ = (written, to);
        Err(not_restorable(vma))
    }
}

/// The error for a saved area no kind can map again.
pub fn not_restorable(vma: &proto::Vma) -> MapError {
    MapError::Unsupported {
        what: format!("area {:#x}-{:#x} {}", vma.start, vma.end, vma.path),
    }
}

/// The [`VmaFlag`]s every area gets from its maps line: shared, deleted, grows down.
pub fn base_flags(e: &MapEntry) -> u32 {
    let mut flags = 0;
    if e.shared {
        flags |= VmaFlag::Shared as u32;
    }
    if e.deleted {
        flags |= VmaFlag::Deleted as u32;
    }
    if e.has_vm_flag("gd") {
        flags |= VmaFlag::Growsdown as u32;
    }
    flags
}

/// The refusal of area `e` of process `pid`: `what` it is cannot be saved yet.
pub fn unsupported(pid: i32, e: &MapEntry, what: &'static str) -> MemError {
    MemError::Unsupported {
        pid,
        start: e.start,
        end: e.end,
        path: display_path(e),
        what,
    }
}

/// Whether `e` is a named shared anonymous area (`[anon_shmem:NAME]`).
pub fn is_named_shmem(e: &MapEntry) -> bool {
    e.path.starts_with("[anon_shmem:")
}

/// The kind of the memory object behind a mapping of a file that exists nowhere else
/// (its path ends in ` (deleted)`): shared `/dev/zero`, SysV, memfd, or a deleted file.
pub fn deleted_object_kind(e: &MapEntry) -> MemObjectKind {
    if e.path == "/dev/zero" && e.shared {
        MemObjectKind::SharedAnonymous
    } else if e.path.starts_with("/SYSV") {
        MemObjectKind::Sysv
    } else if e.path.starts_with("/memfd:") {
        MemObjectKind::Memfd
    } else {
        MemObjectKind::DeletedFile
    }
}

/// The saved protection of `vma`, with `PROT_WRITE` added when `written` (its pages are
/// written after it is mapped).
pub fn prot(vma: &proto::Vma, written: bool) -> ProtFlags {
    let prot = ProtFlags::from_bits_truncate(vma.prot as i32);
    if written {
        prot | ProtFlags::PROT_WRITE
    } else {
        prot
    }
}

/// Maps the file at `vma.path`, or the memory object `vma.object_id` when it names one,
/// opened with `open_flags` in the process of `to`, at the area's address with `flags`
/// and `prot` (`MAP_FIXED` added).
pub fn map_file(
    to: &mut dyn MapTarget,
    vma: &proto::Vma,
    open_flags: i32,
    flags: MapFlags,
    prot: ProtFlags,
) -> Result<(), MapError> {
    let fd = if vma.object_id != 0 {
        to.object(vma.object_id, open_flags)?
    } else {
        to.open(&vma.path, open_flags)?
    };
    to.injector().remote_mmap(
        vma.start,
        vma.end - vma.start,
        prot,
        flags | MapFlags::MAP_FIXED,
        Some(fd),
        vma.pgoff,
    )?;
    Ok(())
}
