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

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use pipecr_image::proto;
use pipecr_image::{Image, ImageError};

use super::external::Inherited;
use crate::files::{self, FileError, RestoreCtx};

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
#[derive(Debug)]
pub struct ParkedFiles {
    files: BTreeMap<u64, OwnedFd>,
    /// Descriptors given for external ends, by open-file id and descriptor number.
    slots: BTreeMap<(u64, RawFd), OwnedFd>,
    /// The highest descriptor number of any table the set was made for.
    top: RawFd,
}

impl ParkedFiles {
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
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES)?;
    let files: BTreeMap<u64, proto::OpenFile> = files.into_iter().map(|f| (f.id, f)).collect();
    let descriptors = || tables.iter().flat_map(|t| t.descriptors.iter());
    let top = descriptors().map(|d| d.fd).max().unwrap_or(0);
    let mut ids: Vec<u64> = descriptors().map(|d| d.file_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure_nofile(top, ids.len() + inherited.len())?;

    let mut ctx = RestoreCtx::new(image)?;
    files::prepare_restore(&mut ctx)?;
    let mut created: BTreeMap<u64, OwnedFd> = BTreeMap::new();
    let mut slots: BTreeMap<(u64, RawFd), OwnedFd> = BTreeMap::new();
    for d in descriptors() {
        let park = |fd: BorrowedFd<'_>| {
            rustix::io::fcntl_dupfd_cloexec(fd, top + 1).map_err(|e| RebuildError::Install {
                fd: d.fd,
                op: "fcntl(F_DUPFD_CLOEXEC)",
                source: e.into(),
            })
        };
        // An external end given a descriptor for this number is not created.
        if let Some(given) = inherited.get(d.file_id, d.fd) {
            if let std::collections::btree_map::Entry::Vacant(slot) = slots.entry((d.file_id, d.fd))
            {
                slot.insert(park(given)?);
            }
            continue;
        }
        if created.contains_key(&d.file_id) {
            continue;
        }
        let file = files.get(&d.file_id).ok_or_else(|| {
            RebuildError::Invalid(format!(
                "fd {} points at open file {}, which is missing",
                d.fd, d.file_id
            ))
        })?;
        let parked = park(files::restore_file(file, &mut ctx)?.as_fd())?;
        created.insert(d.file_id, parked);
    }
    // The anchors of pipes and FIFOs lived until every end was opened; they go now.
    drop(ctx);
    Ok(ParkedFiles {
        files: created,
        slots,
        top,
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
/// by `dup3`, replacing whatever the process had at that number. The parked descriptors
/// stay open: the caller closes them (see [`crate::sys::fd::close_all_except`]).
pub fn install(table: &proto::FdTable, parked: &ParkedFiles) -> Result<Rebuilt, RebuildError> {
    let mut fds = Vec::with_capacity(table.descriptors.len());
    let mut used: Vec<u64> = Vec::new();
    for d in &table.descriptors {
        let install = |op, source| RebuildError::Install {
            fd: d.fd,
            op,
            source,
        };
        if d.fd > parked.top {
            return Err(RebuildError::Invalid(format!(
                "fd {} lies above the parked files (made for tables up to fd {})",
                d.fd, parked.top
            )));
        }
        let file = parked
            .slots
            .get(&(d.file_id, d.fd))
            .or_else(|| parked.files.get(&d.file_id))
            .ok_or_else(|| {
                RebuildError::Invalid(format!(
                    "fd {} points at open file {}, which was not created",
                    d.fd, d.file_id
                ))
            })?;
        let copy = file.try_clone().map_err(|e| install("dup", e))?;
        let installed =
            crate::sys::fd::install_at(copy, d.fd, d.cloexec).map_err(|e| install("dup3", e))?;
        // The number now belongs to the table being rebuilt, not to this function.
        let _ = installed.into_raw_fd();
        fds.push(d.fd);
        used.push(d.file_id);
    }
    fds.sort_unstable();
    used.sort_unstable();
    used.dedup();
    Ok(Rebuilt {
        fds,
        open_files: used.len(),
    })
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
    let parked = create(&image, std::slice::from_ref(&table), &Inherited::none())?;
    install(&table, &parked)
}
