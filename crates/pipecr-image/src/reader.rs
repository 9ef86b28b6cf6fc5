//! Reading an image directory. This module owns the damage checks done before anything is
//! restored: the inventory's envelope and version, then every listed file's presence,
//! kind, length and CRC32C. After [`Image::open`] succeeds, record files and data
//! references are still bounds- and CRC-checked as they are read, so a file changed
//! behind our back yields an error, never a panic or an oversized allocation.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::envelope::{HEADER_LEN, RECORD_HEADER_LEN, decode_payloads};
use crate::proto::{DataRef, FileDigest, FileLayout, Inventory};
use crate::{
    FORMAT_MAJOR, INVENTORY, ImageError, MAX_RECORD_LEN, PAGE_SIZE, check_name, decode_record_file,
};

/// An image directory opened for reading, its inventory validated and every listed file
/// checked (present, a regular file, listed length, listed CRC32C). Files in the directory
/// that the inventory does not list are ignored.
#[derive(Debug, Clone)]
pub struct Image {
    dir: PathBuf,
    inventory: Inventory,
    /// Name -> index into `inventory.files`.
    by_name: HashMap<String, usize>,
}

impl Image {
    /// Opens and checks the image in `dir`.
    ///
    /// Errors: [`ImageError::NotAnImage`] without an inventory; any envelope error of the
    /// inventory ([`BadMagic`](ImageError::BadMagic), [`UnsupportedVersion`](ImageError::UnsupportedVersion),
    /// [`BadCrc`](ImageError::BadCrc), ...); [`InventoryRecords`](ImageError::InventoryRecords)
    /// unless it holds exactly one record; and per listed file
    /// [`BadFileName`](ImageError::BadFileName), [`DuplicateFile`](ImageError::DuplicateFile),
    /// [`MissingFile`](ImageError::MissingFile), [`NotAFile`](ImageError::NotAFile),
    /// [`Length`](ImageError::Length) or [`Checksum`](ImageError::Checksum).
    pub fn open(dir: &Path) -> Result<Image, ImageError> {
        let inv_path = dir.join(INVENTORY);
        // One record of at most MAX_RECORD_LEN: anything longer is damaged, and reading
        // one byte more than that is enough to say so.
        let limit = (HEADER_LEN + RECORD_HEADER_LEN) as u64 + u64::from(MAX_RECORD_LEN) + 1;
        let bytes = match File::open(&inv_path) {
            Ok(f) => read_limited(f, limit).map_err(|e| ImageError::io(&inv_path, "read", e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NotAnImage {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(ImageError::io(&inv_path, "open", e)),
        };
        let name = inv_path.to_string_lossy();
        let file = decode_record_file(&name, &bytes)?;
        if file.records.len() != 1 {
            return Err(ImageError::InventoryRecords {
                file: inv_path,
                count: file.records.len(),
            });
        }
        let inventory: Inventory =
            Message::decode(file.records[0]).map_err(|source| ImageError::Decode {
                file: inv_path.clone(),
                record: 0,
                source,
            })?;
        if inventory.format_major != FORMAT_MAJOR {
            return Err(ImageError::UnsupportedVersion {
                file: inv_path,
                found_major: inventory.format_major,
                found_minor: inventory.format_minor,
                supported_major: FORMAT_MAJOR,
            });
        }

        let mut by_name = HashMap::with_capacity(inventory.files.len());
        for (i, d) in inventory.files.iter().enumerate() {
            check_name(dir, &d.name)?;
            if by_name.insert(d.name.clone(), i).is_some() {
                return Err(ImageError::DuplicateFile {
                    file: dir.join(&d.name),
                });
            }
        }
        for d in &inventory.files {
            verify_file(dir, d)?;
        }
        Ok(Image {
            dir: dir.to_path_buf(),
            inventory,
            by_name,
        })
    }

    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The inventory, as read.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// True when the inventory lists a file called `name`.
    pub fn has_file(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The inventory entry of `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&FileDigest> {
        self.by_name.get(name).map(|&i| &self.inventory.files[i])
    }

    fn listed(&self, name: &str, layout: FileLayout) -> Result<&FileDigest, ImageError> {
        let d = self.file(name).ok_or_else(|| ImageError::MissingFile {
            file: self.dir.join(name),
        })?;
        let found = FileLayout::try_from(d.layout).unwrap_or(FileLayout::Unspecified);
        if found != layout {
            return Err(ImageError::WrongLayout {
                file: self.dir.join(name),
                expected: layout,
                found,
            });
        }
        Ok(d)
    }

    /// Decodes every record of the metadata file `name`.
    ///
    /// A file the inventory does not list is [`ImageError::MissingFile`] (callers that
    /// treat a file as optional ask [`has_file`](Self::has_file) first).
    pub fn read_records<M: Message + Default>(&self, name: &str) -> Result<Vec<M>, ImageError> {
        let d = self.listed(name, FileLayout::Records)?;
        let path = self.dir.join(name);
        let bytes = File::open(&path)
            .and_then(|f| read_limited(f, d.length.saturating_add(1)))
            .map_err(|e| ImageError::io(&path, "read", e))?;
        // Checked at open; checked again because the file may have changed since.
        if bytes.len() as u64 != d.length {
            return Err(ImageError::Length {
                file: path,
                expected: d.length,
                found: bytes.len() as u64,
            });
        }
        let display = path.to_string_lossy();
        let file = decode_record_file(&display, &bytes)?;
        decode_payloads(path.clone(), &file.records)
    }

    /// Checks `r` against the inventory: a listed raw file, a page-aligned offset and
    /// `offset + length` within the listed length.
    fn check_ref(&self, r: &DataRef) -> Result<PathBuf, ImageError> {
        let d = self.listed(&r.file, FileLayout::Raw)?;
        let path = self.dir.join(&r.file);
        if r.length == 0 {
            // Nothing is read; an empty blob is written as offset 0.
            return Ok(path);
        }
        if r.offset % PAGE_SIZE != 0 {
            return Err(ImageError::DataMisaligned {
                file: path,
                offset: r.offset,
            });
        }
        match r.offset.checked_add(r.length) {
            Some(end) if end <= d.length => Ok(path),
            _ => Err(ImageError::DataOutOfRange {
                file: path,
                offset: r.offset,
                length: r.length,
                file_length: d.length,
            }),
        }
    }

    /// The length of the bytes `r` points to, after checking the reference against the
    /// inventory as [`Image::read_data`] does, without opening or reading the file: for
    /// checking an image's records before restoring or showing anything.
    pub fn data_len(&self, r: &DataRef) -> Result<u64, ImageError> {
        self.check_ref(r)?;
        Ok(r.length)
    }

    /// Reads the bytes `r` points to, after checking the reference against the inventory
    /// ([`MissingFile`](ImageError::MissingFile), [`WrongLayout`](ImageError::WrongLayout),
    /// [`DataMisaligned`](ImageError::DataMisaligned),
    /// [`DataOutOfRange`](ImageError::DataOutOfRange)). Never allocates more than the
    /// (verified) file holds.
    pub fn read_data(&self, r: &DataRef) -> Result<Vec<u8>, ImageError> {
        let path = self.check_ref(r)?;
        if r.length == 0 {
            return Ok(Vec::new());
        }
        // `length` fits in memory only if the file does; check_ref bounded it by the
        // file's verified length.
        let len = usize::try_from(r.length).map_err(|_| ImageError::DataOutOfRange {
            file: path.clone(),
            offset: r.offset,
            length: r.length,
            file_length: self.file(&r.file).map_or(0, |d| d.length),
        })?;
        let mut f = File::open(&path).map_err(|e| ImageError::io(&path, "open", e))?;
        let mut buf = vec![0u8; len];
        f.seek(SeekFrom::Start(r.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| ImageError::io(&path, "read", e))?;
        Ok(buf)
    }

    /// Opens the raw file of `r` for zero-copy use (splice, mmap), after the same checks
    /// as [`read_data`](Self::read_data). Returns the file, the offset and the length.
    pub fn open_data(&self, r: &DataRef) -> Result<(File, u64, u64), ImageError> {
        let path = self.check_ref(r)?;
        let f = File::open(&path).map_err(|e| ImageError::io(&path, "open", e))?;
        Ok((f, r.offset, r.length))
    }
}

/// Reads at most `limit` bytes, growing the buffer as bytes arrive rather than by what a
/// header claims.
fn read_limited(f: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Checks one listed file: present, regular (not a symlink), listed length, listed CRC32C.
fn verify_file(dir: &Path, d: &FileDigest) -> Result<(), ImageError> {
    let path = dir.join(&d.name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::MissingFile { file: path });
        }
        Err(e) => return Err(ImageError::io(&path, "stat", e)),
    };
    if !meta.is_file() {
        return Err(ImageError::NotAFile { file: path });
    }
    if meta.len() != d.length {
        return Err(ImageError::Length {
            file: path,
            expected: d.length,
            found: meta.len(),
        });
    }
    let mut f = File::open(&path).map_err(|e| ImageError::io(&path, "open", e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut crc = 0u32;
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io(&path, "read", e)),
        };
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        total += n as u64;
    }
    if total != d.length {
        return Err(ImageError::Length {
            file: path,
            expected: d.length,
            found: total,
        });
    }
    if crc != d.crc32c {
        return Err(ImageError::Checksum {
            file: path,
            expected: d.crc32c,
            found: crc,
        });
    }
    Ok(())
}
