//! Rebuild descriptor tables from a tree image: every open file of the tree created once
//! ([`create_all`], in the root of the restored tree, before it creates its children),
//! parked above every saved descriptor number, and inherited by every process of the tree
//! through `clone3` (no `CLONE_FILES`); each process then [`install`]s its own table from
//! the parked set, at the same descriptor numbers with the same close-on-exec bits, and
//! closes the parked set. So an open file shared across processes (a pipe between parent
//! and child, a shared offset) comes back shared. [`rebuild`] does both for one process.
//!
//! The order of steps, and why:
//! 1. Read and check the whole image first (the inventory verifies every checksum), so a
//!    damaged image changes nothing in the process.
//! 2. Create each open file once (pipes and FIFOs refilled once, their anchors kept until
//!    every end is open). The kinds create them at whatever numbers the kernel picks,
//!    which may be numbers a table needs for something else.
//! 3. Move every created file above the highest number of any table, so installing one
//!    descriptor can never close another that is still to be installed, in any process.
//!    `RLIMIT_NOFILE` must hold them there (raised up to the hard limit if needed).
//! 4. Install each descriptor with `dup3`, which also replaces whatever the process had at
//!    that number (its stdio, say), atomically.
//! 5. Close the parked copies: only the saved descriptors remain.
//!
//! Each open file is created at the stage its kind asks for ([`Stage`]): the
//! [`Stage::Open`] ones in step 2, after which each kind may complete them now that all
//! exist ([`FileKind::complete`]: an epoll instance registers its targets); the [`Stage::AfterProcess`] ones by [`install`] in the
//! process being rebuilt, once its other descriptors are installed (the kind sees them
//! through [`RestoreCtx::installed`]); the [`Stage::AfterTree`] ones by
//! [`LateFiles::install`] (or [`install_after_tree`]), which the orchestration calls in
//! each process once every process's descriptors exist. An open file of a later stage is
//! created in each process that holds it: so far only a process's own `/proc/PID/...`
//! files ([`crate::files::procfs`], at [`Stage::AfterProcess`]) are, and processes that
//! shared one get one each.
//!
//! I/O signals (`O_ASYNC`, owner, signal) are set on the open files of step 2 after the
//! kinds completed them, so that bytes put back into a queue then (a unix socket's) signal
//! no one. A lease is taken when its open file is created and again through each
//! descriptor installed for it ([`files::locks::renew_lease`]): the kernel names that
//! descriptor in the break's `si_fd` and makes the caller the file's owner, so the saved
//! owner is set back after it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use pipecr_image::proto;
use pipecr_image::{Image, ImageError};

use super::external::Inherited;
use crate::files::{self, FileError, FileKind, RestoreCtx, Stage};

/// Why a descriptor table could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An open file could not be created.
    #[error(transparent)]
    File(#[from] FileError),
    /// The image holds no process with this pid.
    #[error("the image holds no process with pid {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// The image contradicts itself.
    #[error("image: {0}")]
    Invalid(String),
    /// `RLIMIT_NOFILE` is too low for the tree's open files.
    #[error(
        "RLIMIT_NOFILE: restoring needs {need} descriptors ({count} open files parked above \
         fd {top}), but the hard limit is {hard}; raise it (ulimit -Hn) before restoring"
    )]
    Limit {
        /// The descriptors needed.
        need: u64,
        /// The highest saved descriptor number.
        top: RawFd,
        /// The distinct open files.
        count: usize,
        /// The hard limit.
        hard: u64,
    },
    /// Installing a descriptor failed.
    #[error("fd {fd}: {op} failed")]
    Install {
        /// The descriptor number.
        fd: RawFd,
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RebuildError {
    /// True when an open file could not be created because its file is missing or no
    /// longer the one saved: something on this machine to fix, not a fault of the image
    /// or of the restore.
    pub fn is_conflict(&self) -> bool {
        match self {
            RebuildError::File(FileError::Changed { .. }) => true,
            RebuildError::File(FileError::Restore { source, .. }) => {
                source.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}

/// What a rebuild installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The descriptor numbers installed, sorted.
    pub fds: Vec<RawFd>,
    /// The distinct open files created.
    pub open_files: usize,
}

/// The saved process `pid` of the tree image in `dir`, with its descriptor table.
pub fn saved_table(image: &Image, pid: i32) -> Result<proto::FdTable, RebuildError> {
    let processes: Vec<proto::Process> = image.read_records(pipecr_image::TREE)?;
    let process = processes
        .iter()
        .find(|p| p.pid == pid)
        .ok_or(RebuildError::NoSuchProcess { pid })?;
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS)?;
    tables
        .into_iter()
        .find(|t| t.id == process.fd_table)
        .ok_or_else(|| {
            RebuildError::Invalid(format!(
                "pid {pid} uses fd table {}, which is missing",
                process.fd_table
            ))
        })
}

/// Every open file of a tree, created once in the calling process and parked above
/// every descriptor number the tree's tables use (close-on-exec, which `clone3` without
/// `CLONE_FILES` keeps: children inherit the whole set), by open-file id.
///
/// Each process of the tree then [`install`]s its own table from the set and closes the
/// parked descriptors (dropping this closes them in the process that created it).
pub struct ParkedFiles {
    /// The kinds that created the set, and create its deferred files.
    kinds: &'static [&'static dyn FileKind],
    files: BTreeMap<u64, OwnedFd>,
    /// Open files of a later stage than [`Stage::Open`], created by each process that
    /// holds them ([`install`], [`LateFiles::install`]), by open-file id.
    deferred: BTreeMap<u64, (Stage, proto::OpenFile)>,
    /// The image, for the deferred open files.
    image: Image,
    /// Descriptors given for external ends, by open-file id and descriptor number.
    slots: BTreeMap<(u64, RawFd), OwnedFd>,
    /// The highest descriptor number of any table the set was made for.
    top: RawFd,
    /// Open files whose I/O signal owner did not exist yet when they were created (a
    /// process of the tree made later): set by [`LateFiles::install`].
    owners_due: BTreeMap<u64, proto::OpenFile>,
    /// Open files that hold a lease, taken again through each descriptor installed for
    /// them ([`files::locks::renew_lease`]).
    leased: BTreeMap<u64, proto::OpenFile>,
}

impl std::fmt::Debug for ParkedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedFiles")
            .field("files", &self.files)
            .field("deferred", &self.deferred.keys())
            .field("slots", &self.slots)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl ParkedFiles {
    /// What is left for [`Stage::AfterTree`], in every process of the tree, once each
    /// has installed its table: `None` when no open file of the tree waits for that stage
    /// (then the orchestration has nothing to wait for). Holds no descriptor, so it
    /// outlives the parked set.
    pub fn late(&self) -> Option<LateFiles> {
        let deferred: BTreeMap<u64, proto::OpenFile> = self
            .deferred
            .iter()
            .filter(|(_, (stage, _))| *stage == Stage::AfterTree)
            .map(|(&id, (_, file))| (id, file.clone()))
            .collect();
        if deferred.is_empty() && self.owners_due.is_empty() {
            return None;
        }
        Some(LateFiles {
            kinds: self.kinds,
            image: self.image.clone(),
            deferred,
            owners_due: self.owners_due.clone(),
            external: self.slots.keys().copied().collect(),
            top: self.top,
        })
    }

    /// How many descriptors are parked (open files created, and descriptors given for
    /// external ends).
    pub fn len(&self) -> usize {
        self.files.len() + self.slots.len()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.slots.is_empty()
    }

    /// The highest descriptor number of any table the set was made for.
    pub fn top(&self) -> RawFd {
        self.top
    }

    /// The open file `id`, when the set created it.
    pub fn file(&self, id: u64) -> Option<BorrowedFd<'_>> {
        self.files.get(&id).map(|f| f.as_fd())
    }

    /// The parked descriptor numbers, sorted.
    pub fn parked_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self
            .files
            .values()
            .chain(self.slots.values())
            .map(|f| f.as_raw_fd())
            .collect();
        fds.sort_unstable();
        fds
    }
}

/// Creates, in the calling process, every open file of every descriptor table of the
/// tree image (`fds.img`, files from `files.img`), each once, parked above the highest
/// saved descriptor number. Pipes are refilled once here. An external open file in
/// `inherited` is not created: the descriptor given for it is parked instead.
///
/// Fails clearly when `RLIMIT_NOFILE` cannot hold the parked set above the highest saved
/// number (the soft limit is raised up to the hard one when that is enough).
pub fn create_all(image: &Image, inherited: &Inherited) -> Result<ParkedFiles, RebuildError> {
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS)?;
    create(image, &tables, inherited)
}

/// [`create_all`] for the open files of `tables` only.
pub fn create(
    image: &Image,
    tables: &[proto::FdTable],
    inherited: &Inherited,
) -> Result<ParkedFiles, RebuildError> {
    create_in(files::KINDS, image, tables, inherited)
}

/// [`create`] with the kinds of `kinds`.
fn create_in(
    kinds: &'static [&'static dyn FileKind],
    image: &Image,
    tables: &[proto::FdTable],
    inherited: &Inherited,
) -> Result<ParkedFiles, RebuildError> {
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES)?;
    let files: BTreeMap<u64, proto::OpenFile> = files.into_iter().map(|f| (f.id, f)).collect();
    let descriptors = || tables.iter().flat_map(|t| t.descriptors.iter());
    let top = descriptors().map(|d| d.fd).max().unwrap_or(0);
    let mut ids: Vec<u64> = descriptors().map(|d| d.file_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure_nofile(top, ids.len() + inherited.len())?;

    let mut ctx = RestoreCtx::new(image)?;
    ctx.set_objects(inherited.objects());
    for kind in kinds {
        kind.prepare(&mut ctx)?;
    }
    let park = |fd: BorrowedFd<'_>, at: RawFd| {
        rustix::io::fcntl_dupfd_cloexec(fd, top + 1).map_err(|e| RebuildError::Install {
            fd: at,
            op: "fcntl(F_DUPFD_CLOEXEC)",
            source: e.into(),
        })
    };
    let mut slots: BTreeMap<(u64, RawFd), OwnedFd> = BTreeMap::new();
    // Each open file to create, once, with its kind, its stage and the first number that
    // holds it (for messages), in descriptor order.
    let mut wanted: Vec<(&proto::OpenFile, &dyn FileKind, Stage, RawFd)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for d in descriptors() {
        // An external end given a descriptor for this number is not created.
        if let Some(given) = inherited.get(d.file_id, d.fd) {
            if let std::collections::btree_map::Entry::Vacant(slot) = slots.entry((d.file_id, d.fd))
            {
                // The locks the open file held: already held when the caller gave the
                // same open file back (taking them again changes nothing), taken on the
                // one given otherwise, or refused when someone else holds them.
                if let Some(file) = files.get(&d.file_id) {
                    files::locks::take_open_file_locks(file, given)?;
                }
                slot.insert(park(given, d.fd)?);
            }
            continue;
        }
        if !seen.insert(d.file_id) {
            continue;
        }
        let file = files.get(&d.file_id).ok_or_else(|| {
            RebuildError::Invalid(format!(
                "fd {} points at open file {}, which is missing",
                d.fd, d.file_id
            ))
        })?;
        let kind = files::restorer_in(kinds, file)?;
        wanted.push((file, kind, kind.stage(file), d.fd));
    }
    // Open files no descriptor of any table holds: those that sat in a queue (passed
    // with SCM_RIGHTS, not yet received). Created like the others, for the kind whose
    // queue holds them to send them again ([`FileKind::complete`]).
    let all_tables: Vec<proto::FdTable> = if image.has_file(pipecr_image::FDS) {
        image.read_records(pipecr_image::FDS)?
    } else {
        tables.to_vec()
    };
    let held: BTreeSet<u64> = all_tables
        .iter()
        .flat_map(|t| t.descriptors.iter().map(|d| d.file_id))
        .collect();
    for file in files.values().filter(|f| !held.contains(&f.id)) {
        let kind = files::restorer_in(kinds, file)?;
        wanted.push((file, kind, kind.stage(file), top + 1));
    }
    let mut deferred = BTreeMap::new();
    let mut now = Vec::new();
    let mut owners_due = BTreeMap::new();
    for (file, kind, stage, at) in wanted {
        if stage != Stage::Open {
            if !held.contains(&file.id) {
                return Err(RebuildError::Invalid(format!(
                    "open file {} ({}) sits only in a queue, and its kind is created later                      than the queues are filled",
                    file.id,
                    kind.name()
                )));
            }
            deferred.insert(file.id, (stage, file.clone()));
            continue;
        }
        // Logged here, in the root before any table is installed (see restore::process).
        tracing::debug!(
            file = file.id,
            fd = at,
            kind = kind.name(),
            "opening saved file"
        );
        let opened = files::restore_with(kind, file, &mut ctx).inspect_err(|e| {
            tracing::debug!(
                file = file.id,
                fd = at,
                kind = kind.name(),
                "cannot open: {e}"
            )
        })?;
        let parked = park(opened.as_fd(), at)?;
        ctx.add_opened(file.id, parked);
        now.push((file, kind));
    }
    // Every open file now exists once; the kinds whose files refer to others (an epoll
    // instance to its targets) finish them here, so what they add is shared by every
    // process like the files themselves. External ends are reachable too, through a copy
    // of the descriptor given for them.
    let mut lent = Vec::new();
    for (&(id, at), given) in &slots {
        if ctx.opened(id).is_none() {
            ctx.add_opened(id, park(given.as_fd(), at)?);
            lent.push(id);
        }
    }
    for (file, kind) in &now {
        kind.complete(file, &mut ctx)?;
    }
    // I/O signals (O_ASYNC, its owner and signal) last, once every queue is filled
    // (a unix socket's bytes are sent in `complete`): data put back is not news, and
    // must not signal anyone.
    for (file, _) in &now {
        let Some(fd) = ctx.opened(file.id) else {
            continue;
        };
        if !files::common::restore_owner_and_signal(fd, file)? {
            owners_due.insert(file.id, (*file).clone());
        }
    }
    let leased: BTreeMap<u64, proto::OpenFile> = now
        .iter()
        .filter(|(f, _)| f.lease.is_some())
        .map(|(f, _)| (f.id, (*f).clone()))
        .collect();
    let mut created = ctx.take_opened();
    for id in lent {
        created.remove(&id);
    }
    // The anchors of pipes and FIFOs lived until every end was opened; they go now.
    drop(ctx);
    Ok(ParkedFiles {
        kinds,
        files: created,
        deferred,
        image: image.clone(),
        slots,
        top,
        owners_due,
        leased,
    })
}

/// Checks that `RLIMIT_NOFILE` lets `count` descriptors be parked above `top` (with a
/// little room for the restorer's own), raising the soft limit up to the hard one if
/// that is enough.
fn ensure_nofile(top: RawFd, count: usize) -> Result<(), RebuildError> {
    const SLACK: u64 = 64;
    let need = top.max(0) as u64 + 1 + count as u64 + SLACK;
    let limit = |e: rustix::io::Errno| RebuildError::Install {
        fd: top,
        op: "setrlimit(RLIMIT_NOFILE)",
        source: e.into(),
    };
    let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    if soft >= need {
        return Ok(());
    }
    let hard = now.maximum.unwrap_or(u64::MAX);
    if hard < need {
        return Err(RebuildError::Limit {
            need,
            top,
            count,
            hard,
        });
    }
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(need),
            maximum: now.maximum,
        },
    )
    .map_err(limit)
}

/// Installs `table` in the calling process from `parked` (made for a set of tables that
/// includes this one): each descriptor at its saved number with its close-on-exec bit,
/// by `dup3`, replacing whatever the process had at that number. Then the open files of
/// [`Stage::AfterProcess`] are created, here, and installed the same way. Those of
/// [`Stage::AfterTree`] are left to [`install_after_tree`]. The parked descriptors stay
/// open: the caller closes them (see [`crate::sys::fd::close_all_except`]).
pub fn install(table: &proto::FdTable, parked: &ParkedFiles) -> Result<Rebuilt, RebuildError> {
    let mut installed = BTreeMap::new();
    for d in &table.descriptors {
        if d.fd > parked.top {
            return Err(RebuildError::Invalid(format!(
                "fd {} lies above the parked files (made for tables up to fd {})",
                d.fd, parked.top
            )));
        }
        let slot = parked.slots.get(&(d.file_id, d.fd));
        if slot.is_none() && parked.deferred.contains_key(&d.file_id) {
            continue;
        }
        let file = slot
            .or_else(|| parked.files.get(&d.file_id))
            .ok_or_else(|| {
                RebuildError::Invalid(format!(
                    "fd {} points at open file {}, which was not created",
                    d.fd, d.file_id
                ))
            })?;
        // A lease is taken again through each descriptor of the open file created here
        // (not one given for an external end, which is the caller's).
        let leased = parked.leased.get(&d.file_id).filter(|_| slot.is_none());
        install_one(d, file.as_fd(), leased)?;
        installed.insert(d.fd, d.file_id);
    }
    let due: BTreeMap<u64, &proto::OpenFile> = parked
        .deferred
        .iter()
        .filter(|(_, (stage, _))| *stage == Stage::AfterProcess)
        .map(|(&id, (_, file))| (id, file))
        .collect();
    let deferred = Deferred {
        kinds: parked.kinds,
        image: &parked.image,
        files: &due,
        external: &|key| parked.slots.contains_key(&key),
        top: parked.top,
    };
    deferred.install(table, &mut installed)?;
    Ok(rebuilt(installed))
}

/// Creates and installs, in the calling process, the open files of `table` whose kind
/// restores them at [`Stage::AfterTree`]: for the orchestration to call once every
/// process of the tree has installed its table ([`install`]). Returns what it installed
/// (nothing, with the kinds there are so far). [`ParkedFiles::late`] and
/// [`LateFiles::install`] do the same in two steps, for a process that closes the parked
/// set in between.
pub fn install_after_tree(
    table: &proto::FdTable,
    parked: &ParkedFiles,
) -> Result<Rebuilt, RebuildError> {
    match parked.late() {
        Some(late) => late.install(table),
        None => Ok(rebuilt(BTreeMap::new())),
    }
}

/// The open files of a tree restored at [`Stage::AfterTree`] ([`ParkedFiles::late`]),
/// each to be created by every process that holds it once every process of the tree has
/// installed its table.
pub struct LateFiles {
    kinds: &'static [&'static dyn FileKind],
    image: Image,
    /// The open files of that stage, by id.
    deferred: BTreeMap<u64, proto::OpenFile>,
    /// Open files created earlier whose I/O signal owner is set now, by id.
    owners_due: BTreeMap<u64, proto::OpenFile>,
    /// The descriptors given for external ends (open-file id, number): installed already.
    external: BTreeSet<(u64, RawFd)>,
    /// The highest descriptor number of any table of the tree.
    top: RawFd,
}

impl std::fmt::Debug for LateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateFiles")
            .field("deferred", &self.deferred.keys())
            .field("external", &self.external)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl LateFiles {
    /// Creates and installs, in the calling process (whose table `table` is installed
    /// already, [`install`]), the open files of `table` of [`Stage::AfterTree`]: each at
    /// its saved numbers with their close-on-exec bits, the kinds seeing every other
    /// descriptor of the table through [`RestoreCtx::installed`]. Returns what it
    /// installed; nothing, cheaply, when the table holds none of them.
    pub fn install(&self, table: &proto::FdTable) -> Result<Rebuilt, RebuildError> {
        let late = |d: &proto::Descriptor| {
            !self.external.contains(&(d.file_id, d.fd)) && self.deferred.contains_key(&d.file_id)
        };
        self.set_owners(table)?;
        if !table.descriptors.iter().any(late) {
            return Ok(rebuilt(BTreeMap::new()));
        }
        // What install put in place, for the kinds to see.
        let mut installed = table
            .descriptors
            .iter()
            .filter(|d| !late(d))
            .map(|d| (d.fd, d.file_id))
            .collect();
        let files: BTreeMap<u64, &proto::OpenFile> =
            self.deferred.iter().map(|(&id, f)| (id, f)).collect();
        let deferred = Deferred {
            kinds: self.kinds,
            image: &self.image,
            files: &files,
            external: &|key| self.external.contains(&key),
            top: self.top,
        };
        deferred.install(table, &mut installed)?;
        let added = table
            .descriptors
            .iter()
            .filter(|d| late(d) && installed.contains_key(&d.fd))
            .map(|d| (d.fd, d.file_id))
            .collect();
        Ok(rebuilt(added))
    }
}

impl LateFiles {
    /// Sets the I/O signal owner of the open files of `table` that could not get it when
    /// created (every process of the tree exists now), through the installed descriptors.
    fn set_owners(&self, table: &proto::FdTable) -> Result<(), RebuildError> {
        let mut done = BTreeSet::new();
        for d in &table.descriptors {
            let Some(file) = self.owners_due.get(&d.file_id) else {
                continue;
            };
            if !done.insert(d.file_id) {
                continue;
            }
            let own =
                crate::sys::fd::dup_own(d.fd, self.top + 1).map_err(|e| RebuildError::Install {
                    fd: d.fd,
                    op: "fcntl(F_DUPFD_CLOEXEC)",
                    source: e,
                })?;
            if !files::common::restore_owner_and_signal(own.as_fd(), file)? {
                let owner = file.owner.unwrap_or_default();
                return Err(RebuildError::Invalid(format!(
                    "fd {}: the owner of its I/O signals, {} {}, is not a process of the tree                      and does not exist",
                    d.fd,
                    match owner.r#type {
                        crate::sys::owner::OWNER_TID => "thread",
                        crate::sys::owner::OWNER_PGRP => "process group",
                        _ => "process",
                    },
                    owner.id
                )));
            }
        }
        Ok(())
    }
}

/// The open files of one deferred stage, and what creating them needs.
struct Deferred<'a> {
    kinds: &'a [&'static dyn FileKind],
    image: &'a Image,
    /// The open files of the stage, by id.
    files: &'a BTreeMap<u64, &'a proto::OpenFile>,
    /// Whether the descriptor (open-file id, number) was given for an external end.
    external: &'a dyn Fn((u64, RawFd)) -> bool,
    /// Created files are parked above this number before they are installed.
    top: RawFd,
}

impl Deferred<'_> {
    /// Creates the open files of `table` of this stage (once each in this process,
    /// shared by its descriptors) and installs them; `installed` (number -> open-file id)
    /// is what the kinds see through [`RestoreCtx::installed`], and grows with them.
    fn install(
        &self,
        table: &proto::FdTable,
        installed: &mut BTreeMap<RawFd, u64>,
    ) -> Result<(), RebuildError> {
        let due: Vec<&proto::Descriptor> = table
            .descriptors
            .iter()
            .filter(|d| !(self.external)((d.file_id, d.fd)) && self.files.contains_key(&d.file_id))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut ctx = RestoreCtx::new(self.image)?;
        for kind in self.kinds {
            kind.prepare(&mut ctx)?;
        }
        ctx.set_installed(installed.clone());
        for d in due {
            if ctx.opened(d.file_id).is_none() {
                let Some(file) = self.files.get(&d.file_id) else {
                    continue;
                };
                let kind = files::restorer_in(self.kinds, file)?;
                let fd = files::restore_with(kind, file, &mut ctx)?;
                if !files::common::restore_owner_and_signal(fd.as_fd(), file)? {
                    return Err(RebuildError::Invalid(format!(
                        "fd {}: the owner of its I/O signals does not exist yet",
                        d.fd
                    )));
                }
                // Above every saved number, so installing it never closes one still to
                // come.
                let fd = rustix::io::fcntl_dupfd_cloexec(&fd, self.top + 1).map_err(|e| {
                    RebuildError::Install {
                        fd: d.fd,
                        op: "fcntl(F_DUPFD_CLOEXEC)",
                        source: e.into(),
                    }
                })?;
                ctx.add_opened(d.file_id, fd);
            }
            let Some(file) = ctx.opened(d.file_id) else {
                continue;
            };
            let leased = self
                .files
                .get(&d.file_id)
                .copied()
                .filter(|f| f.lease.is_some());
            install_one(d, file, leased)?;
            installed.insert(d.fd, d.file_id);
        }
        Ok(())
    }
}

/// Installs a copy of `file` at `d`'s number with `d`'s close-on-exec bit; with
/// `leased`, the record of the open file, its lease is taken again through that number.
fn install_one(
    d: &proto::Descriptor,
    file: BorrowedFd<'_>,
    leased: Option<&proto::OpenFile>,
) -> Result<(), RebuildError> {
    let install = |op, source| RebuildError::Install {
        fd: d.fd,
        op,
        source,
    };
    let copy = file.try_clone_to_owned().map_err(|e| install("dup", e))?;
    let installed =
        crate::sys::fd::install_at(copy, d.fd, d.cloexec).map_err(|e| install("dup3", e))?;
    // O_ASYNC remembers the descriptor number it was set through (the `si_fd` of the
    // signals it sends): set it again through this one.
    let flags =
        rustix::fs::fcntl_getfl(&installed).map_err(|e| install("fcntl(F_GETFL)", e.into()))?;
    if flags.contains(rustix::fs::OFlags::ASYNC) {
        rustix::fs::fcntl_setfl(&installed, flags - rustix::fs::OFlags::ASYNC)
            .and_then(|()| rustix::fs::fcntl_setfl(&installed, flags))
            .map_err(|e| install("fcntl(F_SETFL, O_ASYNC)", e.into()))?;
    }
    // So does a lease (the `si_fd` of its break), and taking it makes the caller the
    // file's owner: the saved owner is set again after it (or, when that owner does not
    // exist yet, once every process does: it is among the owners due then).
    if let Some(file) = leased {
        files::locks::renew_lease(file, installed.as_fd())?;
    }
    // The number now belongs to the table being rebuilt, not to this function.
    let _ = installed.into_raw_fd();
    Ok(())
}

/// What was installed: numbers -> open-file ids.
fn rebuilt(installed: BTreeMap<RawFd, u64>) -> Rebuilt {
    let fds: Vec<RawFd> = installed.keys().copied().collect();
    let mut used: Vec<u64> = installed.into_values().collect();
    used.sort_unstable();
    used.dedup();
    Rebuilt {
        fds,
        open_files: used.len(),
    }
}

/// Rebuilds, in the calling process, the descriptor table that process `pid` had when
/// the tree image in `dir` was taken. Descriptors the calling process has at other
/// numbers are left alone; those at saved numbers are replaced.
///
/// [`create`] for this one table, then [`install`], then the parked copies are closed.
/// External ends are created from the image like the rest (a pipe whose other end is
/// not there); whole-tree restore substitutes them ([`super::external`]).
pub fn rebuild(dir: &Path, pid: i32) -> Result<Rebuilt, RebuildError> {
    let image = Image::open(dir)?;
    let table = saved_table(&image, pid)?;
    // The memory objects (memfds, unlinked files) its descriptors are opened from.
    let mut inherited = Inherited::none();
    inherited.set_objects(
        super::objects::create(&image).map_err(|e| RebuildError::Invalid(e.to_string()))?,
    );
    let parked = create(&image, std::slice::from_ref(&table), &inherited)?;
    let mut rebuilt = install(&table, &parked)?;
    let late = install_after_tree(&table, &parked)?;
    if !late.fds.is_empty() {
        rebuilt.fds.extend(late.fds);
        rebuilt.fds.sort_unstable();
        rebuilt.open_files += late.open_files;
    }
    Ok(rebuilt)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pipecr_image::proto::open_file;
    use pipecr_image::{ImageMeta, ImageWriter};

    use super::*;
    use crate::files::{Description, DumpSink, LiveFile, Saved};

    /// What [`Staged`] restored, in order: the open file and the descriptors installed
    /// at that moment.
    static LOG: Mutex<Vec<(u64, BTreeMap<RawFd, u64>)>> = Mutex::new(Vec::new());

    /// A test-only kind: restores eventfd records, those with count 2 at
    /// [`Stage::AfterProcess`], those with count 4 at [`Stage::AfterTree`].
    struct Staged;

    static STAGED: &[&dyn FileKind] = &[&Staged];

    impl FileKind for Staged {
        fn name(&self) -> &'static str {
            "staged"
        }
        fn claims(&self, _file: &LiveFile) -> bool {
            false
        }
        fn dump(
            &self,
            _file: &LiveFile,
            _sink: &mut DumpSink<'_>,
        ) -> Result<open_file::Kind, FileError> {
            Err(FileError::Invalid {
                id: 0,
                reason: "test kind".into(),
            })
        }
        fn restores(&self, kind: &open_file::Kind) -> bool {
            matches!(kind, open_file::Kind::Eventfd(_))
        }
        fn stage(&self, file: &proto::OpenFile) -> Stage {
            match &file.kind {
                Some(open_file::Kind::Eventfd(e)) if e.count == 2 => Stage::AfterProcess,
                Some(open_file::Kind::Eventfd(e)) if e.count == 4 => Stage::AfterTree,
                _ => Stage::Open,
            }
        }
        fn restore(
            &self,
            file: &proto::OpenFile,
            ctx: &mut RestoreCtx<'_>,
        ) -> Result<OwnedFd, FileError> {
            LOG.lock().unwrap().push((file.id, ctx.installed().clone()));
            Ok(rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap())
        }
        fn describe(&self, _file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
            Description {
                text: "staged".into(),
                pipe: None,
            }
        }
    }

    fn eventfd(id: u64, count: u64) -> proto::OpenFile {
        proto::OpenFile {
            id,
            flags: 0,
            pos: 0,
            kind: Some(open_file::Kind::Eventfd(proto::EventFd {
                count,
                semaphore: false,
            })),
            ..Default::default()
        }
    }

    /// An open file of Stage::AfterProcess is created after the others are installed,
    /// sees them at their numbers, and is installed at its own; one of Stage::AfterTree
    /// is left to the late step, which creates it after all those (and after the parked
    /// set is closed), and skips a table that holds none.
    #[test]
    fn deferred_stage_runs_after_the_process_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut writer = ImageWriter::create(&path, ImageMeta::default()).unwrap();
        // Open file 2 is the deferred one, between the two others in descriptor order;
        // open file 4, at the highest number, waits for the whole tree.
        let files = [eventfd(1, 1), eventfd(2, 2), eventfd(3, 3), eventfd(4, 4)];
        writer.write_records(pipecr_image::FILES, &files).unwrap();
        writer.commit().unwrap();
        let image = Image::open(&path).unwrap();
        // High numbers, away from what the other tests of this binary use.
        let table = proto::FdTable {
            id: 1,
            shared: false,
            descriptors: (0..4)
                .map(|i| proto::Descriptor {
                    fd: 700 + i,
                    file_id: i as u64 + 1,
                    cloexec: true,
                })
                .collect(),
        };
        let parked = create_in(
            STAGED,
            &image,
            std::slice::from_ref(&table),
            &Inherited::none(),
        )
        .unwrap();
        let created: Vec<u64> = LOG.lock().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(
            created,
            [1, 3],
            "Stage::Open files first, the deferred one not yet"
        );
        assert_eq!(parked.len(), 2);

        let rebuilt = install(&table, &parked).unwrap();
        assert_eq!(rebuilt.fds, [700, 701, 702]);
        let log = LOG.lock().unwrap().clone();
        assert_eq!(log.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 3, 2]);
        assert!(log[0].1.is_empty());
        assert_eq!(log[2].1, BTreeMap::from([(700, 1), (702, 3)]));
        assert!(
            !Path::new("/proc/self/fd/703").exists(),
            "not before the tree"
        );

        let late = parked.late().expect("an open file waits for the tree");
        // The orchestration closes the parked set before the late step.
        drop(parked);
        let other = proto::FdTable {
            id: 2,
            shared: false,
            descriptors: vec![proto::Descriptor {
                fd: 710,
                file_id: 1,
                cloexec: true,
            }],
        };
        assert_eq!(late.install(&other).unwrap().fds, Vec::<RawFd>::new());
        assert_eq!(
            LOG.lock().unwrap().len(),
            3,
            "nothing created for a table without it"
        );
        let rebuilt = late.install(&table).unwrap();
        assert_eq!((rebuilt.fds, rebuilt.open_files), (vec![703], 1));
        let log = LOG.lock().unwrap().clone();
        assert_eq!(log.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 3, 2, 4]);
        assert_eq!(log[3].1, BTreeMap::from([(700, 1), (701, 2), (702, 3)]));

        for fd in 700..704 {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            assert_eq!(link.to_str(), Some("anon_inode:[eventfd]"), "fd {fd}");
            // Close it: install_at hands back the number it filled.
            let any = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
            drop(crate::sys::fd::install_at(any, fd, true).unwrap());
        }
    }
}
