//! The envelope of a metadata file: magic, format version, then length-prefixed records
//! each with a CRC32C of its payload. This module owns the byte layout and nothing else:
//! it never touches the file system, and it decodes with allocation bounded by the input
//! (no length read from the input is ever used to size a buffer).
//!
//! ```text
//! offset  size  field
//!      0     8  magic  89 50 43 52 0d 0a 1a 0a   ("\x89PCR\r\n\x1a\n")
//!      8     2  format major, u16 little-endian
//!     10     2  format minor, u16 little-endian
//!     12     4  reserved, u32 little-endian: written 0, ignored by readers
//!     16        records, back to back, until the end of the file:
//!          4    payload length N, u32 LE, at most MAX_RECORD_LEN
//!          4    CRC32C (Castagnoli) of the payload, u32 LE
//!          N    payload: one protobuf message
//! ```

use std::path::PathBuf;

use prost::Message;

use crate::{FORMAT_MAJOR, FORMAT_MINOR, ImageError, MAX_RECORD_LEN};

/// The first 8 bytes of every metadata file. Like PNG's: a non-ASCII first byte catches
/// 7-bit transfers, CR LF and LF catch line-ending conversion, and ^Z stops `type` on DOS.
pub const MAGIC: [u8; 8] = *b"\x89PCR\r\n\x1a\n";

/// Length of the file header (magic, major, minor, reserved).
pub const HEADER_LEN: usize = 16;

/// Length of each record header (payload length, CRC32C).
pub const RECORD_HEADER_LEN: usize = 8;

/// A decoded metadata file: its version and the payload of every record, borrowed from
/// the input. Every payload has passed its CRC32C; none has been decoded as protobuf yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFile<'a> {
    /// Format major version from the header (always [`FORMAT_MAJOR`] once decoded).
    pub major: u16,
    /// Format minor version from the header (any value is accepted).
    pub minor: u16,
    /// The record payloads, in file order.
    pub records: Vec<&'a [u8]>,
}

impl RecordFile<'_> {
    /// Decodes every payload as `M`. `name` is only used in errors.
    pub fn decode_all<M: Message + Default>(&self, name: &str) -> Result<Vec<M>, ImageError> {
        decode_payloads(PathBuf::from(name), &self.records)
    }
}

pub(crate) fn decode_payloads<M: Message + Default>(
    file: PathBuf,
    payloads: &[&[u8]],
) -> Result<Vec<M>, ImageError> {
    let mut out = Vec::with_capacity(payloads.len());
    for (record, payload) in payloads.iter().enumerate() {
        match M::decode(*payload) {
            Ok(m) => out.push(m),
            Err(source) => {
                return Err(ImageError::Decode {
                    file,
                    record,
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Encodes `records` as a complete metadata file: header with [`FORMAT_MAJOR`] and
/// [`FORMAT_MINOR`], then one record per message.
///
/// This cannot fail. A message longer than [`MAX_RECORD_LEN`] yields a file that
/// [`decode_record_file`] rejects; [`ImageWriter::write_records`](crate::ImageWriter::write_records)
/// checks the lengths first and returns [`ImageError::RecordTooLong`].
pub fn encode_record_file<M: Message>(records: &[M]) -> Vec<u8> {
    let body: usize = records
        .iter()
        .map(|r| RECORD_HEADER_LEN + r.encoded_len())
        .sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&HEADER_MAJOR.to_le_bytes());
    out.extend_from_slice(&HEADER_MINOR.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for r in records {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        r.encode_raw(&mut out);
        let payload = &out[start + RECORD_HEADER_LEN..];
        // Saturate rather than wrap: an oversized length is then refused by readers
        // instead of silently framing the wrong bytes.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let crc = crc32c::crc32c(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

// The header stores the versions as u16; make sure the constants survive that.
const HEADER_MAJOR: u16 = FORMAT_MAJOR as u16;
const HEADER_MINOR: u16 = FORMAT_MINOR as u16;
const _: () = assert!(HEADER_MAJOR as u32 == FORMAT_MAJOR);
const _: () = assert!(HEADER_MINOR as u32 == FORMAT_MINOR);

/// Splits the bytes of one metadata file into its records, checking the envelope: magic,
/// major version, every record's length (against [`MAX_RECORD_LEN`] and the bytes left)
/// and CRC32C. `name` is used in errors only.
///
/// Pure and allocation-bounded: the only allocation is the list of record slices, which
/// grows with the records actually present (at most `bytes.len() / 8`).
///
/// The envelope alone cannot tell a file cut exactly between two records from a shorter
/// complete file; the inventory's length and CRC32C of every file catch that.
pub fn decode_record_file<'a>(name: &str, bytes: &'a [u8]) -> Result<RecordFile<'a>, ImageError> {
    let file = || PathBuf::from(name);
    if bytes.len() < HEADER_LEN {
        // A file too short to hold even the magic is more usefully "not ours" than
        // "truncated", unless what is there is a prefix of the magic.
        let n = bytes.len().min(MAGIC.len());
        if bytes[..n] != MAGIC[..n] {
            return Err(ImageError::BadMagic { file: file() });
        }
        return Err(ImageError::Truncated {
            file: file(),
            record: None,
            needed: HEADER_LEN as u64,
            available: bytes.len() as u64,
        });
    }
    if bytes[..8] != MAGIC {
        return Err(ImageError::BadMagic { file: file() });
    }
    let major = u16::from_le_bytes([bytes[8], bytes[9]]);
    let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
    // bytes[12..16] are reserved: written as zero, ignored here so that a later minor
    // version may use them for something an older reader can safely skip.
    if u32::from(major) != FORMAT_MAJOR {
        return Err(ImageError::UnsupportedVersion {
            file: file(),
            found_major: major.into(),
            found_minor: minor.into(),
            supported_major: FORMAT_MAJOR,
        });
    }

    let mut records = Vec::new();
    let mut rest = &bytes[HEADER_LEN..];
    while !rest.is_empty() {
        let record = records.len();
        let Some((head, after)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            return Err(ImageError::Truncated {
                file: file(),
                record: Some(record),
                needed: RECORD_HEADER_LEN as u64,
                available: rest.len() as u64,
            });
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD_LEN {
            return Err(ImageError::RecordTooLong {
                file: file(),
                record,
                length: len.into(),
                max: MAX_RECORD_LEN,
            });
        }
        let len = len as usize; // <= 16 MiB: fits every usize pipecr builds for
        if len > after.len() {
            return Err(ImageError::Truncated {
                file: file(),
                record: Some(record),
                needed: (RECORD_HEADER_LEN + len) as u64,
                available: rest.len() as u64,
            });
        }
        let (payload, next) = after.split_at(len);
        let found = crc32c::crc32c(payload);
        if found != crc {
            return Err(ImageError::BadCrc {
                file: file(),
                record,
                expected: crc,
                found,
            });
        }
        records.push(payload);
        rest = next;
    }
    Ok(RecordFile {
        major,
        minor,
        records,
    })
}
