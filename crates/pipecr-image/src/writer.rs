//! Writing an image directory atomically. This module owns the write protocol: every file
//! goes into a sibling temporary directory, and only a complete, fsync'd image is renamed
//! into place, so a crash mid-dump never leaves a directory that looks like an image.
//! The final directory may already exist if it is empty (`mkdir DIR && pipecr dump -D
//! DIR`): `rename(2)` replaces an empty directory atomically, and until then it stays as
//! it was, so a failed or killed dump leaves it empty. What goes into the files is the
//! caller's business.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::proto::{DataRef, FileDigest, FileLayout, Inventory};
use crate::{
    FORMAT_MAJOR, FORMAT_MINOR, INVENTORY, ImageError, MAX_RECORD_LEN, PAGE_SIZE, check_name,
    encode_record_file,
};

/// What the caller tells the writer about the image; recorded in the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMeta {
    /// What the image holds, e.g. `"pipe"` or `"tree"` (see [`Inventory::content`]).
    pub content: String,
    /// Version of the tool writing the image (its `CARGO_PKG_VERSION`).
    pub tool_version: String,
    /// `uname -r` of this machine.
    pub kernel_release: String,
    /// `uname -m` of this machine, e.g. `"x86_64"`.
    pub arch: String,
}

/// Writes a new image directory atomically.
///
/// Files go into a sibling temporary directory `DIR.tmp-<pid>-<n>`. [`commit`](Self::commit)
/// fsyncs every file, writes the inventory (every file's length and CRC32C and layout, the
/// [`ImageMeta`], the format version and the creation time), fsyncs the directory, renames
/// it to `DIR` (replacing `DIR` if it is an empty directory, whose permission bits the
/// image keeps) and fsyncs the parent. Dropping the writer without committing removes the
/// temporary directory and leaves `DIR` as it was.
///
/// ```no_run
/// # fn main() -> Result<(), pipecr_image::ImageError> {
/// use pipecr_image::{ImageMeta, ImageWriter, proto};
/// let mut w = ImageWriter::create("/tmp/img".as_ref(), ImageMeta::default())?;
/// let data = w.raw("pipes-data.img")?.append(b"hello")?;
/// let pipe = proto::Pipe { id: 1, capacity: 65536, data: Some(data), ..Default::default() };
/// w.write_records("pipes.img", &[pipe])?;
/// let dir = w.commit()?;
/// # let _ = dir; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ImageWriter {
    dir: PathBuf,
    tmp: PathBuf,
    meta: ImageMeta,
    files: Vec<Entry>,
    committed: bool,
}

#[derive(Debug)]
struct Entry {
    layout: FileLayout,
    raw: RawWriter,
}

/// One raw data file of an image being written: blobs appended at page-aligned offsets.
/// Obtained from [`ImageWriter::raw`].
#[derive(Debug)]
pub struct RawWriter {
    name: String,
    path: PathBuf,
    file: File,
    /// Bytes written so far (the file's length).
    len: u64,
    /// CRC32C of those bytes, kept as they are written so commit needs no second pass.
    crc: u32,
}

/// Distinguishes temporary directories of several writers in one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Zeros for padding; one page is the most padding ever needed.
static ZEROS: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

impl ImageWriter {
    /// Starts a new image that will become `dir` on [`commit`](Self::commit).
    ///
    /// Fails with [`ImageError::AlreadyExists`] if `dir` exists and is not an empty
    /// directory: an image, or anything else, is never overwritten.
    pub fn create(dir: &Path, meta: ImageMeta) -> Result<Self, ImageError> {
        let empty_dir = match vacancy(dir)? {
            Vacancy::Absent => None,
            Vacancy::EmptyDir(mode) => Some(mode),
            Vacancy::Taken => {
                return Err(ImageError::AlreadyExists {
                    dir: dir.to_path_buf(),
                });
            }
        };
        let Some(base) = dir.file_name() else {
            return Err(ImageError::io(
                dir,
                "create image directory",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path has no final component",
                ),
            ));
        };
        let pid = std::process::id();
        loop {
            let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = base.to_os_string();
            tmp_name.push(format!(".tmp-{pid}-{n}"));
            let tmp = dir.with_file_name(tmp_name);
            match fs::create_dir(&tmp) {
                Ok(()) => {
                    // The image takes the place of the empty directory: keep its mode.
                    if let Some(mode) = empty_dir {
                        if let Err(e) = fs::set_permissions(&tmp, mode) {
                            let _ = fs::remove_dir(&tmp);
                            return Err(ImageError::io(tmp, "chmod", e));
                        }
                    }
                    return Ok(ImageWriter {
                        dir: dir.to_path_buf(),
                        tmp,
                        meta,
                        files: Vec::new(),
                        committed: false,
                    });
                }
                // A leftover of a crashed process that had our pid: pick the next n.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ImageError::io(tmp, "create directory", e)),
            }
        }
    }

    /// The directory the image will have once committed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a whole metadata file `name`: the header, then one record per message.
    ///
    /// Fails if `name` is not a plain file name (see [`ImageError::BadFileName`]), was
    /// already written, or a message is longer than [`MAX_RECORD_LEN`].
    pub fn write_records<M: Message>(
        &mut self,
        name: &str,
        records: &[M],
    ) -> Result<(), ImageError> {
        self.check_new(name)?;
        let path = self.tmp.join(name);
        for (record, r) in records.iter().enumerate() {
            let length = r.encoded_len() as u64;
            if length > u64::from(MAX_RECORD_LEN) {
                return Err(ImageError::RecordTooLong {
                    file: self.dir.join(name),
                    record,
                    length,
                    max: MAX_RECORD_LEN,
                });
            }
        }
        let bytes = encode_record_file(records);
        let mut raw = RawWriter::create(name, path)?;
        raw.write(&bytes)?;
        self.files.push(Entry {
            layout: FileLayout::Records,
            raw,
        });
        Ok(())
    }

    /// The raw data file `name`, created empty on first use.
    ///
    /// Fails if `name` is not a plain file name or was written as a metadata file.
    pub fn raw(&mut self, name: &str) -> Result<&mut RawWriter, ImageError> {
        let found = self.files.iter().position(|e| e.raw.name == name);
        let i = match found {
            Some(i) if self.files[i].layout == FileLayout::Raw => i,
            Some(_) => {
                return Err(ImageError::WrongLayout {
                    file: self.dir.join(name),
                    expected: FileLayout::Raw,
                    found: FileLayout::Records,
                });
            }
            None => {
                check_name(&self.dir, name)?;
                let raw = RawWriter::create(name, self.tmp.join(name))?;
                self.files.push(Entry {
                    layout: FileLayout::Raw,
                    raw,
                });
                self.files.len() - 1
            }
        };
        Ok(&mut self.files[i].raw)
    }

    /// Finishes the image: fsyncs every file, writes and fsyncs the inventory, fsyncs the
    /// temporary directory, renames it to the final directory and fsyncs the parent.
    /// Returns the final directory.
    ///
    /// If something other than an empty directory took the final name meanwhile, the
    /// commit fails with [`ImageError::AlreadyExists`] and the temporary directory is
    /// removed. (`rename(2)` replaces only an empty directory: a directory filled between
    /// the check and the rename makes it fail the same way.)
    pub fn commit(mut self) -> Result<PathBuf, ImageError> {
        let mut digests = Vec::with_capacity(self.files.len());
        for e in &self.files {
            e.raw
                .file
                .sync_all()
                .map_err(|err| ImageError::io(&e.raw.path, "fsync", err))?;
            digests.push(FileDigest {
                name: e.raw.name.clone(),
                length: e.raw.len,
                crc32c: e.raw.crc,
                layout: e.layout as i32,
            });
        }
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let inventory = Inventory {
            format_major: FORMAT_MAJOR,
            format_minor: FORMAT_MINOR,
            tool_version: self.meta.tool_version.clone(),
            kernel_release: self.meta.kernel_release.clone(),
            arch: self.meta.arch.clone(),
            created_unix_ms,
            files: digests,
            content: self.meta.content.clone(),
        };
        let bytes = encode_record_file(&[inventory]);
        let inv_path = self.tmp.join(INVENTORY);
        let mut inv = RawWriter::create(INVENTORY, inv_path.clone())?;
        inv.write(&bytes)?;
        inv.file
            .sync_all()
            .map_err(|e| ImageError::io(&inv_path, "fsync", e))?;
        drop(inv);
        sync_dir(&self.tmp)?;

        let taken = || ImageError::AlreadyExists {
            dir: self.dir.clone(),
        };
        if matches!(vacancy(&self.dir)?, Vacancy::Taken) {
            return Err(taken());
        }
        fs::rename(&self.tmp, &self.dir).map_err(|e| {
            use std::io::ErrorKind::{AlreadyExists, DirectoryNotEmpty, NotADirectory};
            match e.kind() {
                DirectoryNotEmpty | AlreadyExists | NotADirectory => taken(),
                _ => ImageError::io(&self.dir, "rename the temporary directory to", e),
            }
        })?;
        self.committed = true;
        if let Some(parent) = self.dir.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_dir(parent)?;
        }
        Ok(self.dir.clone())
    }

    fn check_new(&self, name: &str) -> Result<(), ImageError> {
        check_name(&self.dir, name)?;
        if self.files.iter().any(|e| e.raw.name == name) {
            return Err(ImageError::DuplicateFile {
                file: self.dir.join(name),
            });
        }
        Ok(())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.committed {
            self.files.clear();
            // Best effort: a drop cannot report errors, and a leftover `*.tmp-*` never
            // looks like an image (its inventory, if any, was never renamed into place).
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

impl RawWriter {
    fn create(name: &str, path: PathBuf) -> Result<Self, ImageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, "create", e))?;
        Ok(RawWriter {
            name: name.to_string(),
            path,
            file,
            len: 0,
            crc: 0,
        })
    }

    /// The file's name inside the image.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True while nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` at the current end (the file position may have been moved by a
    /// caller's `fill`).
    fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(bytes))
            .map_err(|e| ImageError::io(&self.path, "write", e))?;
        self.len += bytes.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        Ok(())
    }

    /// Pads with zeros to the next multiple of [`PAGE_SIZE`]; returns the new end.
    ///
    /// The gap is left as a hole: the file is extended and nothing is written for it. It
    /// reads as zeros, and the checksum covers it as such; a whole page of padding takes
    /// no disk space.
    fn pad(&mut self) -> Result<u64, ImageError> {
        let pad = self.len.next_multiple_of(PAGE_SIZE) - self.len;
        if pad > 0 {
            let end = self.len + pad;
            self.file
                .set_len(end)
                .map_err(|e| ImageError::io(&self.path, "extend", e))?;
            self.crc = crc32c::crc32c_append(self.crc, &ZEROS[..pad as usize]);
            self.len = end;
        }
        Ok(self.len)
    }

    fn data_ref(&self, offset: u64, length: u64) -> DataRef {
        DataRef {
            file: self.name.clone(),
            offset,
            length,
        }
    }

    /// Appends a blob at the next page-aligned offset (zeros fill the gap after the
    /// previous blob) and returns where it is.
    ///
    /// An empty blob writes nothing and is referenced as offset 0, length 0.
    pub fn append(&mut self, bytes: &[u8]) -> Result<DataRef, ImageError> {
        if bytes.is_empty() {
            return Ok(self.data_ref(0, 0));
        }
        let offset = self.pad()?;
        self.write(bytes)?;
        Ok(self.data_ref(offset, bytes.len() as u64))
    }

    /// Like [`append`](Self::append), but the caller writes the `len` bytes itself, e.g.
    /// with `splice(2)` from a pipe: `fill(&file, offset)` must write exactly `len` bytes
    /// at `offset` (the file's current end, page-aligned). Afterwards the file must be
    /// exactly `offset + len` long ([`ImageError::FillLength`] otherwise); the bytes are
    /// then read back once to extend the file's CRC32C.
    ///
    /// `fill` may move the file position; later writes do not depend on it.
    pub fn append_with(
        &mut self,
        len: u64,
        fill: impl FnOnce(&File, u64) -> std::io::Result<()>,
    ) -> Result<DataRef, ImageError> {
        if len == 0 {
            return Ok(self.data_ref(0, 0));
        }
        let offset = self.pad()?;
        fill(&self.file, offset).map_err(|e| ImageError::io(&self.path, "fill", e))?;
        let found = self
            .file
            .metadata()
            .map_err(|e| ImageError::io(&self.path, "stat", e))?
            .len();
        let expected = offset + len;
        if found != expected {
            // Put the file back as it was so the image stays consistent if the caller
            // carries on without this blob.
            let _ = self.file.set_len(offset);
            return Err(ImageError::FillLength {
                file: self.path.clone(),
                expected,
                found,
            });
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| ImageError::io(&self.path, "seek", e))?;
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut left = len;
        let mut crc = self.crc;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            (&self.file)
                .read_exact(&mut buf[..n])
                .map_err(|e| ImageError::io(&self.path, "read back", e))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            left -= n as u64;
        }
        self.crc = crc;
        self.len = expected;
        Ok(self.data_ref(offset, len))
    }
}

/// Whether an image may take the name `path`.
enum Vacancy {
    /// Nothing has it.
    Absent,
    /// An empty directory (not a symlink to one), with these permissions.
    EmptyDir(fs::Permissions),
    /// Anything else.
    Taken,
}

fn vacancy(path: &Path) -> Result<Vacancy, ImageError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vacancy::Absent),
        Err(e) => return Err(ImageError::io(path, "stat", e)),
    };
    if !meta.is_dir() {
        return Ok(Vacancy::Taken);
    }
    let mut entries = fs::read_dir(path).map_err(|e| ImageError::io(path, "list", e))?;
    Ok(match entries.next() {
        None => Vacancy::EmptyDir(meta.permissions()),
        Some(_) => Vacancy::Taken,
    })
}

/// Makes a directory's entries durable. Only Unix can open and fsync a directory; other
/// systems have no equivalent through std, and pipecr runs on Linux anyway.
fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ImageError::io(dir, "fsync directory", e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
