//! The one error type of the crate. It owns the wording users see when an image cannot be
//! written or read; every variant names the file (and the record, where there is one), and
//! operating-system errors are kept as the `#[source]`.

use std::io;
use std::path::{Path, PathBuf};

use crate::proto::FileLayout;

/// Everything that can go wrong writing or reading an image.
///
/// `file` fields hold the path as far as it is known: `DIR/NAME` when the error comes from
/// [`ImageWriter`](crate::ImageWriter) or [`Image`](crate::Image), the bare name given to
/// [`decode_record_file`](crate::decode_record_file) otherwise. Record indexes count from 0.
/// Messages read like `image /x/y: pipes.img record 3: CRC32C mismatch (damaged image)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// An operating-system call on a file of the image failed.
    #[error("{}: cannot {op}", loc(.file))]
    Io {
        /// The file or directory the call was about.
        file: PathBuf,
        /// What was being done, e.g. `"create"`, `"write"`, `"fsync"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// [`ImageWriter::create`](crate::ImageWriter::create) was given a path that exists
    /// and is not an empty directory. Images, and anything else, are never overwritten.
    #[error(
        "image {}: already exists and is not an empty directory (refusing to overwrite)",
        .dir.display()
    )]
    AlreadyExists {
        /// The directory that exists.
        dir: PathBuf,
    },

    /// The directory holds no inventory, so it is not an image (or not a complete one).
    #[error("{}: not a pipecr image (no {})", .dir.display(), crate::INVENTORY)]
    NotAnImage {
        /// The directory that was opened.
        dir: PathBuf,
    },

    /// A file name is not a plain name of a file inside the image directory (it is empty,
    /// `.` or `..`, contains `/`, `\` or NUL, or is the reserved inventory name). In a
    /// read image this means the image is hostile or damaged.
    #[error("image {}: invalid file name {name:?}: {reason}", .dir.display())]
    BadFileName {
        /// The image directory.
        dir: PathBuf,
        /// The offending name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The same file name was written twice, or is listed twice in the inventory.
    #[error("{}: file appears twice in the image", loc(.file))]
    DuplicateFile {
        /// The file.
        file: PathBuf,
    },

    /// A file the inventory lists (or the caller asked for) is not in the image.
    #[error("{}: no such file in the image", loc(.file))]
    MissingFile {
        /// The file.
        file: PathBuf,
    },

    /// A listed file exists but is not a regular file (a directory, a symlink, a device).
    #[error("{}: not a regular file (damaged or hostile image)", loc(.file))]
    NotAFile {
        /// The file.
        file: PathBuf,
    },

    /// A file does not start with the metadata magic `\x89PCR\r\n\x1a\n`.
    #[error("{}: bad magic, not a pipecr metadata file", loc(.file))]
    BadMagic {
        /// The file.
        file: PathBuf,
    },

    /// A file (or the inventory) is in a format major version this reader does not know.
    #[error(
        "{}: format version {found_major}.{found_minor} is not supported \
         (this pipecr reads format {supported_major}.x)",
        loc(.file)
    )]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The major version found.
        found_major: u32,
        /// The minor version found.
        found_minor: u32,
        /// The one major version this reader supports ([`FORMAT_MAJOR`](crate::FORMAT_MAJOR)).
        supported_major: u32,
    },

    /// The file ends inside its header (`record` is `None`) or inside a record.
    #[error(
        "{}{}: truncated (needs {needed} bytes, {available} left; damaged image)",
        loc(.file),
        rec(*.record)
    )]
    Truncated {
        /// The file.
        file: PathBuf,
        /// The record being read, `None` for the file header.
        record: Option<usize>,
        /// Bytes the header or record claims.
        needed: u64,
        /// Bytes that are left in the file.
        available: u64,
    },

    /// A record claims a length above [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN).
    #[error(
        "{} record {record}: length {length} exceeds the limit of {max} bytes (damaged image)",
        loc(.file)
    )]
    RecordTooLong {
        /// The file.
        file: PathBuf,
        /// The record index.
        record: usize,
        /// The claimed (or, when writing, actual) length.
        length: u64,
        /// The limit.
        max: u32,
    },

    /// A record's payload does not match its CRC32C.
    #[error("{} record {record}: CRC32C mismatch (damaged image)", loc(.file))]
    BadCrc {
        /// The file.
        file: PathBuf,
        /// The record index.
        record: usize,
        /// The checksum stored in the record header.
        expected: u32,
        /// The checksum of the payload as read.
        found: u32,
    },

    /// A record's payload passed its CRC but is not a valid protobuf message of the
    /// expected type.
    #[error("{} record {record}: cannot decode", loc(.file))]
    Decode {
        /// The file.
        file: PathBuf,
        /// The record index.
        record: usize,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },

    /// The inventory must hold exactly one record.
    #[error("{}: holds {count} records, expected exactly 1 (damaged image)", loc(.file))]
    InventoryRecords {
        /// The inventory file.
        file: PathBuf,
        /// The number of records found.
        count: usize,
    },

    /// A listed file's length differs from the inventory.
    #[error(
        "{}: length is {found} bytes, inventory says {expected} (damaged image)",
        loc(.file)
    )]
    Length {
        /// The file.
        file: PathBuf,
        /// Length from the inventory.
        expected: u64,
        /// Length on disk.
        found: u64,
    },

    /// A listed file's CRC32C differs from the inventory.
    #[error(
        "{}: CRC32C is {found:#010x}, inventory says {expected:#010x} (damaged image)",
        loc(.file)
    )]
    Checksum {
        /// The file.
        file: PathBuf,
        /// Checksum from the inventory.
        expected: u32,
        /// Checksum of the file as read.
        found: u32,
    },

    /// A file was used as the wrong layout (records read from a raw file, data from a
    /// metadata file, or a name reused for a different layout while writing).
    #[error(
        "{}: is a {} file, expected {}",
        loc(.file),
        .found.as_str_name(),
        .expected.as_str_name()
    )]
    WrongLayout {
        /// The file.
        file: PathBuf,
        /// The layout the operation needs.
        expected: FileLayout,
        /// The layout the file has (unknown values read as `FILE_LAYOUT_UNSPECIFIED`).
        found: FileLayout,
    },

    /// A [`DataRef`](crate::proto::DataRef) points outside its file.
    #[error(
        "{}: data at offset {offset} length {length} is outside the file ({file_length} bytes; damaged image)",
        loc(.file)
    )]
    DataOutOfRange {
        /// The raw file.
        file: PathBuf,
        /// The referenced offset.
        offset: u64,
        /// The referenced length.
        length: u64,
        /// The file's length (from the inventory).
        file_length: u64,
    },

    /// A [`DataRef`](crate::proto::DataRef) offset is not a multiple of
    /// [`PAGE_SIZE`](crate::PAGE_SIZE).
    #[error("{}: data offset {offset} is not page-aligned (damaged image)", loc(.file))]
    DataMisaligned {
        /// The raw file.
        file: PathBuf,
        /// The referenced offset.
        offset: u64,
    },

    /// After [`RawWriter::append_with`](crate::RawWriter::append_with) the file did not
    /// have the length the caller promised.
    #[error(
        "{}: fill wrote to length {found}, expected {expected} (offset + length)",
        loc(.file)
    )]
    FillLength {
        /// The raw file.
        file: PathBuf,
        /// `offset + len`.
        expected: u64,
        /// The file's length afterwards.
        found: u64,
    },
}

/// `image DIR: NAME` when the path has a directory part, the bare name otherwise.
fn loc(file: &Path) -> String {
    match (file.parent(), file.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => {
            format!("image {}: {}", dir.display(), name.to_string_lossy())
        }
        _ => file.display().to_string(),
    }
}

fn rec(record: Option<usize>) -> String {
    match record {
        Some(i) => format!(" record {i}"),
        None => " header".to_string(),
    }
}

impl ImageError {
    pub(crate) fn io(file: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        ImageError::Io {
            file: file.into(),
            op,
            source,
        }
    }
}
