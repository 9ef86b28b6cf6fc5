//! The types every step of a memory dump shares: the page size and [`MemError`]. Kept
//! below [`super`] and its readers ([`super::pagemap`], [`super::pages`]) so that they
//! import it and not the module that drives them; what is saved and how is left to
//! [`super`].

use std::io;

use pipecr_image::ImageError;

use super::maps::MapEntry;
use crate::proc::ProcError;

/// The page size pipecr saves memory in.
pub const PAGE_SIZE: u64 = pipecr_image::PAGE_SIZE;

/// Why an address space could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// `/proc` could not be read.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// The image could not be written.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file about the process could not be read.
    #[error("pid {pid}: cannot read {what}")]
    Read {
        /// The process.
        pid: i32,
        /// The file.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Memory of the process could not be read.
    #[error("pid {pid}: cannot read memory at {addr:#x} ({path})")]
    Pages {
        /// The process.
        pid: i32,
        /// The first address that failed.
        addr: u64,
        /// The area's path, or `anonymous`.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An area of a kind pipecr cannot save yet.
    #[error(
        "pid {pid}: cannot save the area {start:#x}-{end:#x} ({path}): {what} is not supported yet"
    )]
    Unsupported {
        /// The process.
        pid: i32,
        /// The area's start.
        start: u64,
        /// The area's end.
        end: u64,
        /// The area's path, or `anonymous`.
        path: String,
        /// What kind of area it is.
        what: &'static str,
    },
}

/// The path of an area for messages: its path column, or `anonymous`.
pub(crate) fn display_path(e: &MapEntry) -> String {
    if e.path.is_empty() {
        "anonymous".into()
    } else {
        e.path.clone()
    }
}
