//! Rebuild the descriptor table of one saved process inside the calling process: every
//! open file created once (through its kind), installed at the same descriptor numbers
//! with the same close-on-exec bits, sharing between its descriptors kept.
//!
//! The order of steps, and why:
//! 1. Read and check the whole image first (the inventory verifies every checksum), so a
//!    damaged image changes nothing in the process.
//! 2. Create each open file once. The kinds create them at whatever numbers the kernel
//!    picks, which may be numbers the table needs for something else.
//! 3. Move every created file above the highest number to install, so installing one
//!    descriptor can never close another that is still to be installed.
//! 4. Install each descriptor with `dup3`, which also replaces whatever the process had at
//!    that number (its stdio, say), atomically.
//! 5. Drop the anchors and moved copies: only the saved descriptors remain.

use std::collections::BTreeMap;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use pipecr_image::proto;
use pipecr_image::{Image, ImageError};

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

/// Rebuilds, in the calling process, the descriptor table that process `pid` had when
/// the tree image in `dir` was taken. Descriptors the calling process has at other
/// numbers are left alone; those at saved numbers are replaced.
pub fn rebuild(dir: &Path, pid: i32) -> Result<Rebuilt, RebuildError> {
    let image = Image::open(dir)?;
    let table = saved_table(&image, pid)?;
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES)?;
    let files: BTreeMap<u64, proto::OpenFile> = files.into_iter().map(|f| (f.id, f)).collect();

    let top = table.descriptors.iter().map(|d| d.fd).max().unwrap_or(0);
    let mut ctx = RestoreCtx::new(&image)?;
    let mut created: BTreeMap<u64, OwnedFd> = BTreeMap::new();
    for d in &table.descriptors {
        if created.contains_key(&d.file_id) {
            continue;
        }
        let file = files.get(&d.file_id).ok_or_else(|| {
            RebuildError::Invalid(format!(
                "fd {} points at open file {}, which is missing",
                d.fd, d.file_id
            ))
        })?;
        let fd = files::restore_file(file, &mut ctx)?;
        let parked =
            rustix::io::fcntl_dupfd_cloexec(&fd, top + 1).map_err(|e| RebuildError::Install {
                fd: d.fd,
                op: "fcntl(F_DUPFD_CLOEXEC)",
                source: e.into(),
            })?;
        created.insert(d.file_id, parked);
    }
    // Anchors of pipes and FIFOs may sit on numbers to be installed: close them first.
    drop(ctx);

    let mut fds = Vec::with_capacity(table.descriptors.len());
    for d in &table.descriptors {
        let install = |op, source| RebuildError::Install {
            fd: d.fd,
            op,
            source,
        };
        let copy = created[&d.file_id]
            .try_clone()
            .map_err(|e| install("dup", e))?;
        let installed =
            crate::sys::fd::install_at(copy, d.fd, d.cloexec).map_err(|e| install("dup3", e))?;
        // The number now belongs to the table being rebuilt, not to this function.
        let _ = installed.into_raw_fd();
        fds.push(d.fd);
    }
    fds.sort_unstable();
    Ok(Rebuilt {
        fds,
        open_files: created.len(),
    })
}
