//! The pipecr checkpoint image format: schema, envelope, checksums. No syscalls beyond
//! ordinary file I/O, no Linux-only code, no `unsafe`: it builds and fuzzes anywhere.
//!
//! An image is a directory (see `docs/IMAGE-FORMAT.md`, which is normative):
//!
//! - [`INVENTORY`] (`inventory.img`): format version, tool, kernel, arch, creation time,
//!   and every other file with its length, CRC32C and layout ([`proto::Inventory`]).
//! - Metadata files: a header (magic, format version) and length-prefixed protobuf
//!   records each with a CRC32C — written by [`ImageWriter::write_records`], read by
//!   [`Image::read_records`], encoded and decoded in memory by [`encode_record_file`] and
//!   [`decode_record_file`].
//! - Raw data files: blobs at [`PAGE_SIZE`]-aligned offsets, referenced from records by
//!   [`proto::DataRef`] — written by [`RawWriter`], read by [`Image::read_data`] or opened
//!   for splice/mmap by [`Image::open_data`].
//!
//! # Tasks
//!
//! - **Write an image**: [`ImageWriter::create`], then [`ImageWriter::raw`] and
//!   [`ImageWriter::write_records`], then [`ImageWriter::commit`]. Nothing appears at the
//!   final path until the commit's atomic rename.
//! - **Read an image**: [`Image::open`] checks everything listed before returning; then
//!   [`Image::read_records`] and [`Image::read_data`].
//! - **Handle damage**: every failure is an [`ImageError`] naming the file and record.
//!
//! # Compatibility
//!
//! A reader accepts [`FORMAT_MAJOR`] with any minor version (unknown fields are ignored)
//! and refuses any other major version with [`ImageError::UnsupportedVersion`]. Schema
//! fields are added, never renumbered or reused.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod envelope;
mod error;
mod reader;
mod writer;

/// The generated schema types (`proto/pipecr/image/v1/*.proto`, package `pipecr.image.v1`).
/// The `.proto` files are the specification; `docs/IMAGE-FORMAT.md` explains every field.
#[allow(missing_docs)]
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/pipecr.image.v1.rs"));
}

pub use envelope::{
    HEADER_LEN, MAGIC, RECORD_HEADER_LEN, RecordFile, decode_record_file, encode_record_file,
};
pub use error::ImageError;
pub use reader::Image;
pub use writer::{ImageMeta, ImageWriter, RawWriter};
/// `tree.img`: one `Process` record per process of a tree dump, parents first.
pub const TREE: &str = "tree.img";
/// `fds.img`: one `FdTable` record per descriptor table of a tree dump.
pub const FDS: &str = "fds.img";
/// `files-data.img`: contents of unlinked regular files and memfds.
pub const FILES_DATA: &str = "files-data.img";
/// `sockets-data.img`: bytes queued in sockets.
pub const SOCKETS_DATA: &str = "sockets-data.img";
/// `mm.img`: one `Mm` record per process of a tree dump (its areas and page runs).
pub const MM: &str = "mm.img";
/// `core.img`: one `Core` record per process of a tree dump (registers and signals of
/// each thread, cwd, root, umask, rlimits, personality).
pub const CORE: &str = "core.img";
/// `mem-objects.img`: one `MemObject` record per memory object saved once (shared
/// anonymous memory, SysV shm, memfds, deleted files).
pub const MEM_OBJECTS: &str = "mem-objects.img";
/// `pages.img`: the raw page store; page `i` is at byte offset `i * PAGE_SIZE`.
pub const PAGES: &str = "pages.img";
/// `stats.img`: one `DumpStats` record (timings and counts of the dump). Optional: a
/// restore never reads it, and images written before it existed have none.
pub const STATS: &str = "stats.img";
/// `restore-stats.img`: one `RestoreStats` record, written next to the image by `pipecr
/// restore --save-stats` (not listed in the inventory: the image itself is not changed).
pub const RESTORE_STATS: &str = "restore-stats.img";
/// The inventory's `content` for an image of a process tree.
pub const CONTENT_TREE: &str = "tree";
/// The inventory's `content` for an image of one in-process pipe.
pub const CONTENT_PIPE: &str = "pipe";

/// The format major version this crate writes and the only one it reads.
pub const FORMAT_MAJOR: u32 = 1;
/// The format minor version this crate writes. Readers accept any minor version of their
/// major version.
pub const FORMAT_MINOR: u32 = 1;
/// Alignment of every blob in a raw data file, so blobs can be mapped or spliced in place.
pub const PAGE_SIZE: u64 = 4096;
/// Name of the inventory file, the first file a reader opens.
pub const INVENTORY: &str = "inventory.img";
/// Name of the metadata file of [`proto::Pipe`] records.
pub const PIPES: &str = "pipes.img";
/// Name of the metadata file of [`proto::OpenFile`] records.
pub const FILES: &str = "files.img";
/// Name of the raw file holding pipe contents.
pub const PIPES_DATA: &str = "pipes-data.img";
/// Longest record payload a reader accepts (16 MiB); bounds what damage can make a reader
/// allocate.
pub const MAX_RECORD_LEN: u32 = 16 << 20;

/// Checks that `name` is a plain file name inside an image directory (`dir` is only used
/// in the error).
pub(crate) fn check_name(dir: &std::path::Path, name: &str) -> Result<(), ImageError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "names a directory"
    } else if name.contains(['/', '\\']) {
        "contains a path separator"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name == INVENTORY {
        "reserved for the inventory"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(ImageError::BadFileName {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        reason,
    })
}
