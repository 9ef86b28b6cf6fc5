//! In-process pipe checkpoint and restore: the 2007 RFC's `ckpoint_pipe(file, img)` and
//! `restore_pipe(fd[2], img)`, done in user space with the kernel's existing calls.
//!
//! [`checkpoint`] reads what a pipe holds without consuming it: `tee(2)` links the pipe's
//! buffers into a scratch pipe of the same capacity, and only the scratch pipe is read. The
//! original pipe keeps exactly the bytes it had, so a failed or abandoned checkpoint changes
//! nothing. Given only a write end, a read end of the same pipe is opened through
//! `/proc/self/fd`.
//!
//! [`restore`] creates a new pipe with the saved capacity, refills it (packet by packet in
//! packet mode, see pipe(2) `O_DIRECT`) and gives each end the saved status flags.
//! [`restore_at`] installs the two ends at chosen descriptor numbers, like the RFC's
//! `restore_pipe(fd, img)`.
//!
//! [`save`] and [`load`] move a [`PipeImage`] to and from an image directory in the
//! format of `pipecr-image` (`pipes.img`, `files.img`, `pipes-data.img`); the conversion to
//! and from the schema's messages is [`PipeImage::to_entry`] / [`PipeImage::from_entry`],
//! which whole-tree dumps reuse.
//!
//! What this module leaves to others: descriptor numbers and close-on-exec bits of a live
//! process (the descriptor table belongs to the dump), and FIFO paths (the FIFO kind).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use pipecr_image::proto::{self, PipeEndKind, open_file};
use pipecr_image::{Image, ImageError, ImageMeta, ImageWriter};
use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

use crate::sys;

/// Largest write the kernel keeps in one piece: a packet-mode write longer than this is
/// split into several packets (pipe(2)), so no saved packet can be longer.
pub const PIPE_BUF: usize = 4096;

/// The kernel's page size on the architectures pipecr supports; one pipe buffer slot.
const PAGE_SIZE: u32 = 4096;

/// Status flags that `fcntl(F_SETFL)` can change on a pipe end; the rest of a saved
/// `flags` word (access mode, `O_LARGEFILE`) is fixed when the end is opened.
pub(crate) const SETTABLE_FLAGS: OFlags = OFlags::APPEND
    .union(OFlags::NONBLOCK)
    .union(OFlags::DIRECT)
    .union(OFlags::NOATIME);

/// Which end of a pipe an open file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// An open file that reads from the pipe (`O_RDONLY`, or `O_RDWR` through `/proc`).
    Read,
    /// An open file that only writes to the pipe (`O_WRONLY`).
    Write,
}

impl End {
    fn of_flags(flags: OFlags) -> End {
        if flags & OFlags::RWMODE == OFlags::WRONLY {
            End::Write
        } else {
            End::Read
        }
    }
}

/// One end of a pipe as it was open: which end, and its file status flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeEndState {
    /// Read or write end.
    pub end: End,
    /// Status flags of the open file as `F_GETFL` reports them (access mode, `O_NONBLOCK`,
    /// `O_DIRECT`, ...). Never `O_CLOEXEC`: that belongs to a descriptor, not an open file.
    pub flags: OFlags,
}

/// Everything needed to recreate one pipe: saved state, no live objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeImage {
    /// The pipe's inode number where it was checkpointed (`pipe:[N]`); informational.
    pub inode: u64,
    /// Capacity in bytes (`F_GETPIPE_SZ`).
    pub capacity: u32,
    /// The bytes waiting to be read, in order.
    pub data: Vec<u8>,
    /// In packet mode, the length of each pending packet in order (they add up to
    /// `data.len()`); `None` for a byte-stream pipe.
    pub packets: Option<Vec<u32>>,
    /// The ends that were checkpointed, with their flags.
    pub ends: Vec<PipeEndState>,
}

/// Why a pipe could not be checkpointed, restored, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The descriptor is open but is not a pipe or FIFO.
    #[error("fd {fd} is a {kind}, not a pipe or FIFO")]
    NotAPipe {
        /// The descriptor given.
        fd: RawFd,
        /// What it is instead.
        kind: &'static str,
    },
    /// Descriptors given together are ends of different pipes.
    #[error("fd {fd} is not an end of the same pipe as fd {first}")]
    DifferentPipes {
        /// The first descriptor given.
        first: RawFd,
        /// The descriptor that belongs to another pipe.
        fd: RawFd,
    },
    /// A system call on a descriptor failed.
    #[error("fd {fd}: {op} failed")]
    Sys {
        /// The descriptor involved.
        fd: RawFd,
        /// The operation, named after its system call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused to give a pipe the saved capacity.
    #[error(
        "pipe capacity of {requested} bytes refused by the kernel: the limit is \
         /proc/sys/fs/pipe-max-size = {max} bytes without CAP_SYS_RESOURCE (or the user's \
         pipe buffer quota is used up)"
    )]
    CapacityRefused {
        /// The capacity asked for.
        requested: u32,
        /// `/proc/sys/fs/pipe-max-size` at the time (0 when it could not be read).
        max: u64,
        /// The OS error (`EPERM`).
        #[source]
        source: io::Error,
    },
    /// The kernel set a capacity other than the saved one (it rounds up to a power of two
    /// of pages), so the restored pipe would not behave as the saved one.
    #[error("pipe capacity of {requested} bytes cannot be restored exactly: the kernel gave {got}")]
    CapacityMismatch {
        /// The capacity asked for.
        requested: u32,
        /// The capacity obtained.
        got: usize,
    },
    /// The pipe's pending bytes could not be copied in full.
    #[error("pipe:[{inode}]: only {copied} of {pending} pending bytes could be copied")]
    Incomplete {
        /// Inode of the pipe.
        inode: u64,
        /// Bytes the pipe reported as pending (`FIONREAD`).
        pending: u64,
        /// Bytes actually copied.
        copied: u64,
    },
    /// A pipe image contradicts itself or the kernel's rules.
    #[error("pipe image is invalid: {0}")]
    Invalid(String),
    /// The image directory could not be written or read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A record of an image's metadata file describes an impossible pipe. Names the image
    /// directory, the file and the record (from 0) the way [`ImageError`] does, e.g.
    /// `image /x/y: pipes.img record 0: capacity 5000 is not a power-of-two number of
    /// pages`; `error` is what was wrong ([`PipeError::Invalid`] from
    /// [`PipeImage::validate`]). The message already holds its text, so it is not repeated
    /// as a `source`; [`PipeError::without_context`] reaches it.
    #[error("{} record {record}: {}", loc(file), reason(error))]
    Record {
        /// `DIR/NAME` of the metadata file.
        file: PathBuf,
        /// Index of the record in the file, from 0.
        record: usize,
        /// What was wrong with the record.
        error: Box<PipeError>,
    },
}

impl PipeError {
    /// The error without the file and record it was found in: for
    /// [`PipeError::Record`] the error inside, otherwise `self`. For callers that match
    /// on what went wrong, wherever it was.
    pub fn without_context(&self) -> &PipeError {
        match self {
            PipeError::Record { error, .. } => error.without_context(),
            other => other,
        }
    }

    /// Puts `self` in the context of record `record` of the file `file` (`DIR/NAME`).
    pub fn in_record(self, file: PathBuf, record: usize) -> PipeError {
        PipeError::Record {
            file,
            record,
            error: Box::new(self),
        }
    }
}

/// `image DIR: NAME` like the image crate's messages, the bare path without a directory.
fn loc(file: &Path) -> String {
    match (file.parent(), file.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => {
            format!("image {}: {}", dir.display(), name.to_string_lossy())
        }
        _ => file.display().to_string(),
    }
}

/// The reason alone: an invalid record's message without the generic prefix.
fn reason(error: &PipeError) -> String {
    match error {
        PipeError::Invalid(reason) => reason.clone(),
        other => other.to_string(),
    }
}

fn sys_err(fd: impl AsFd, op: &'static str) -> impl FnOnce(Errno) -> PipeError {
    let fd = fd.as_fd().as_raw_fd();
    move |e| PipeError::Sys {
        fd,
        op,
        source: e.into(),
    }
}

/// Checkpoints the pipe behind `fd`, which may be either end (or a FIFO), without
/// consuming its data: afterwards the pipe holds exactly the bytes it held before.
///
/// Records the capacity, the pending bytes, packet boundaries in packet mode, and the
/// status flags of `fd` as the one end in [`PipeImage::ends`].
///
/// Packet mode is seen on a write end by its `O_DIRECT` flag; from a read end alone, by
/// the pending bytes themselves: several packets read back one per read, and a single
/// packet of two bytes or more loses its tail to a short read, which a probe on a `tee`'d
/// copy detects. A single one-byte packet (or no packet at all) cannot be told from a
/// byte stream and is saved as one; any reader sees the same bytes either way.
///
/// # Example
///
/// Save a pipe with bytes in flight, then make a new pipe holding the same bytes with
/// [`restore`]; the original keeps its own.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::os::fd::AsFd;
///
/// let (read, write) = rustix::pipe::pipe()?;
/// rustix::io::write(&write, b"in flight")?;
/// let image = pipecr::pipe::checkpoint(read.as_fd())?;
/// assert_eq!(image.data, b"in flight");
///
/// let (copy, _copy_write) = pipecr::pipe::restore(&image)?;
/// let mut buf = [0u8; 16];
/// assert_eq!(rustix::io::read(&copy, &mut buf)?, 9);
/// assert_eq!(&buf[..9], b"in flight");
/// // Nothing was consumed from the original.
/// assert_eq!(rustix::io::read(&read, &mut buf)?, 9);
/// # Ok(())
/// # }
/// ```
pub fn checkpoint(fd: BorrowedFd<'_>) -> Result<PipeImage, PipeError> {
    checkpoint_ends(&[fd])
}

/// [`checkpoint`] of a pipe that a running process may read or write meanwhile (`pipecr
/// peek`): a copy is exact only if no one moved between counting the pending bytes and
/// copying them, so it is taken again, a bounded number of times, until one is.
pub fn peek(fd: BorrowedFd<'_>) -> Result<PipeImage, PipeError> {
    const ATTEMPTS: usize = 64;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match checkpoint(fd) {
            Err(e @ PipeError::Incomplete { .. }) => last = Some(e),
            other => return other,
        }
        std::thread::yield_now();
    }
    Err(last.unwrap_or_else(|| PipeError::Invalid("no attempt made".into())))
}

/// Checkpoints one pipe through several of its ends (say `fd[0]` and `fd[1]`), recording the
/// flags of each; all must be ends of the same pipe.
pub fn checkpoint_ends(fds: &[BorrowedFd<'_>]) -> Result<PipeImage, PipeError> {
    let Some(first) = fds.first() else {
        return Err(PipeError::Invalid("no pipe end given".into()));
    };
    let mut ends = Vec::with_capacity(fds.len());
    let mut identity = None;
    for fd in fds {
        let stat = rustix::fs::fstat(fd).map_err(sys_err(fd, "fstat"))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type != FileType::Fifo {
            return Err(PipeError::NotAPipe {
                fd: fd.as_raw_fd(),
                kind: file_type_name(file_type),
            });
        }
        let id = (stat.st_dev, stat.st_ino);
        if *identity.get_or_insert(id) != id {
            return Err(PipeError::DifferentPipes {
                first: first.as_raw_fd(),
                fd: fd.as_raw_fd(),
            });
        }
        let flags = rustix::fs::fcntl_getfl(fd).map_err(sys_err(fd, "fcntl(F_GETFL)"))?;
        ends.push(PipeEndState {
            end: End::of_flags(flags),
            flags,
        });
    }
    let inode = identity.map_or(0, |(_, ino)| ino);

    // tee needs a descriptor that reads. A write end alone gets a read end of the same
    // pipe through /proc, non-blocking so that opening a FIFO never waits for a writer.
    let reopened;
    let reader = match fds.iter().zip(&ends).find(|(_, e)| e.end == End::Read) {
        Some((fd, _)) => *fd,
        None => {
            reopened =
                sys::fd::reopen(*first, OFlags::RDONLY | OFlags::NONBLOCK).map_err(|source| {
                    PipeError::Sys {
                        fd: first.as_raw_fd(),
                        op: "open(/proc/self/fd) for reading",
                        source,
                    }
                })?;
            reopened.as_fd()
        }
    };

    let capacity =
        rustix::pipe::fcntl_getpipe_size(reader).map_err(sys_err(reader, "fcntl(F_GETPIPE_SZ)"))?;
    let capacity = u32::try_from(capacity)
        .map_err(|_| PipeError::Invalid(format!("capacity {capacity} does not fit 32 bits")))?;
    let (data, chunks) = copy_pending(reader, capacity, inode)?;

    // O_DIRECT shows only on a write end. From a read end alone, packet mode shows as a
    // read that returns less than was pending: each read of a packet-mode buffer returns
    // one packet, while byte-stream buffers merge into one read. When one read took
    // everything, the bytes are either one packet or a byte stream: head_is_packet tells.
    let writer_packets = ends
        .iter()
        .any(|e| e.end == End::Write && e.flags.contains(OFlags::DIRECT));
    let packet_mode = writer_packets
        || chunks.len() > 1
        || match chunks.as_slice() {
            [len] if *len > 1 => head_is_packet(reader, capacity, *len, inode)?,
            _ => false,
        };
    let packets = packet_mode.then_some(chunks);
    Ok(PipeImage {
        inode,
        capacity,
        data,
        packets,
        ends,
    })
}

/// The zero-copy path: checkpoint and restore in one step while the pipe is alive.
/// Returns a new pipe (read end, write end; close-on-exec) with the capacity, pending
/// bytes, packet boundaries and end flags of the pipe behind `fd`, which keeps its bytes.
///
/// `tee(2)` links the source's buffers straight into the new pipe: no byte passes through
/// user memory, and packet buffers stay packets. Used to run a copy beside a live
/// original; [`checkpoint`] + [`restore`] is the same result through a [`PipeImage`].
pub fn clone_live(fd: BorrowedFd<'_>) -> Result<(OwnedFd, OwnedFd), PipeError> {
    let stat = rustix::fs::fstat(fd).map_err(sys_err(fd, "fstat"))?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::Fifo {
        return Err(PipeError::NotAPipe {
            fd: fd.as_raw_fd(),
            kind: file_type_name(file_type),
        });
    }
    let flags = rustix::fs::fcntl_getfl(fd).map_err(sys_err(fd, "fcntl(F_GETFL)"))?;
    let end = End::of_flags(flags);
    let reopened;
    let reader = if end == End::Read {
        fd
    } else {
        reopened = sys::fd::reopen(fd, OFlags::RDONLY | OFlags::NONBLOCK).map_err(|source| {
            PipeError::Sys {
                fd: fd.as_raw_fd(),
                op: "open(/proc/self/fd) for reading",
                source,
            }
        })?;
        reopened.as_fd()
    };
    let capacity =
        rustix::pipe::fcntl_getpipe_size(reader).map_err(sys_err(reader, "fcntl(F_GETPIPE_SZ)"))?;
    let capacity = u32::try_from(capacity)
        .map_err(|_| PipeError::Invalid(format!("capacity {capacity} does not fit 32 bits")))?;
    let pending = rustix::io::ioctl_fionread(reader).map_err(sys_err(reader, "ioctl(FIONREAD)"))?;
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(sys_err(fd, "pipe2"))?;
    set_capacity(write.as_fd(), capacity)?;
    if pending > 0 {
        let copied = rustix::pipe::tee(reader, &write, pending as usize, SpliceFlags::NONBLOCK)
            .map_err(sys_err(reader, "tee"))?;
        if copied as u64 != pending {
            return Err(PipeError::Incomplete {
                inode: stat.st_ino,
                pending,
                copied: copied as u64,
            });
        }
    }
    let state = PipeEndState { end, flags };
    let image = PipeImage {
        inode: stat.st_ino,
        capacity,
        data: Vec::new(),
        packets: flags.contains(OFlags::DIRECT).then(Vec::new),
        ends: vec![state],
    };
    let read = apply_flags(read, image.flags_of(End::Read))?;
    let write = apply_flags(write, image.flags_of(End::Write))?;
    Ok((read, write))
}

/// Copies the pending bytes of the pipe read through `reader` without consuming them;
/// returns them with the length of each read, which in packet mode is one packet each.
fn copy_pending(
    reader: BorrowedFd<'_>,
    capacity: u32,
    inode: u64,
) -> Result<(Vec<u8>, Vec<u32>), PipeError> {
    let pending = rustix::io::ioctl_fionread(reader).map_err(sys_err(reader, "ioctl(FIONREAD)"))?;
    if pending == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    if pending > u64::from(capacity) {
        return Err(PipeError::Incomplete {
            inode,
            pending,
            copied: 0,
        });
    }
    // tee copies buffers, not bytes, and always from the head of the pipe, so the scratch
    // pipe must take every buffer in one call: give it as many slots as the source has.
    let (scratch_r, scratch_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(sys_err(reader, "pipe2 (scratch pipe)"))?;
    set_capacity(scratch_w.as_fd(), capacity)?;
    let copied = rustix::pipe::tee(reader, &scratch_w, pending as usize, SpliceFlags::NONBLOCK)
        .map_err(sys_err(reader, "tee"))?;
    if copied as u64 != pending {
        return Err(PipeError::Incomplete {
            inode,
            pending,
            copied: copied as u64,
        });
    }
    drop(scratch_w);

    let mut data = vec![0u8; copied];
    let mut chunks = Vec::new();
    let mut filled = 0;
    while filled < copied {
        let n = rustix::io::read(&scratch_r, &mut data[filled..])
            .map_err(sys_err(&scratch_r, "read (scratch pipe)"))?;
        if n == 0 {
            break;
        }
        chunks.push(n as u32);
        filled += n;
    }
    if filled != copied {
        return Err(PipeError::Incomplete {
            inode,
            pending,
            copied: filled as u64,
        });
    }
    Ok((data, chunks))
}

/// Whether the `len` bytes at the head of the pipe read through `reader`, which one read
/// returned whole, are one packet rather than a byte stream; without consuming them.
///
/// A read of fewer bytes than a packet-mode buffer holds discards the rest of the packet
/// (the kernel's `pipe_read` empties a `PIPE_BUF_FLAG_PACKET` buffer), while a byte stream
/// keeps it. `tee(2)` copies that flag with the buffers, so the head is linked into a
/// scratch pipe, one byte is read there, and `FIONREAD` shows whether the other `len - 1`
/// went with it. A pipe that changed meanwhile is [`PipeError::Incomplete`].
///
/// Only a packet of two bytes or more can be told apart: a one-byte packet and a one-byte
/// stream read the same, so a single one-byte packet is saved as a byte stream, and
/// restores to a pipe that behaves the same for any reader.
fn head_is_packet(
    reader: BorrowedFd<'_>,
    capacity: u32,
    len: u32,
    inode: u64,
) -> Result<bool, PipeError> {
    let (scratch_r, scratch_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(sys_err(reader, "pipe2 (scratch pipe)"))?;
    set_capacity(scratch_w.as_fd(), capacity)?;
    let copied = rustix::pipe::tee(reader, &scratch_w, len as usize, SpliceFlags::NONBLOCK)
        .map_err(sys_err(reader, "tee"))?;
    let changed = |copied: u64| PipeError::Incomplete {
        inode,
        pending: u64::from(len),
        copied,
    };
    if copied != len as usize {
        return Err(changed(copied as u64));
    }
    let mut byte = [0u8; 1];
    let n = rustix::io::read(&scratch_r, &mut byte)
        .map_err(sys_err(&scratch_r, "read (scratch pipe)"))?;
    let left = rustix::io::ioctl_fionread(&scratch_r)
        .map_err(sys_err(&scratch_r, "ioctl(FIONREAD) (scratch pipe)"))?;
    match (n, left) {
        (1, 0) => Ok(true),
        (1, left) if left == u64::from(len) - 1 => Ok(false),
        _ => Err(changed(n as u64 + left)),
    }
}

/// Sets the capacity of the pipe behind `fd` to exactly `capacity` bytes.
fn set_capacity(fd: BorrowedFd<'_>, capacity: u32) -> Result<(), PipeError> {
    let current =
        rustix::pipe::fcntl_getpipe_size(fd).map_err(sys_err(fd, "fcntl(F_GETPIPE_SZ)"))?;
    if current == capacity as usize {
        return Ok(());
    }
    let got = rustix::pipe::fcntl_setpipe_size(fd, capacity as usize).map_err(|e| {
        if e == Errno::PERM {
            PipeError::CapacityRefused {
                requested: capacity,
                max: pipe_max_size().unwrap_or(0),
                source: e.into(),
            }
        } else {
            sys_err(fd, "fcntl(F_SETPIPE_SZ)")(e)
        }
    })?;
    if got != capacity as usize {
        return Err(PipeError::CapacityMismatch {
            requested: capacity,
            got,
        });
    }
    Ok(())
}

/// `/proc/sys/fs/pipe-max-size`: the largest capacity an unprivileged process may set.
pub fn pipe_max_size() -> io::Result<u64> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The kernel's rules for a pipe of `capacity` bytes holding `pending` bytes, cut into
/// `packets` in packet mode: what [`PipeImage::validate`] checks, without the bytes.
fn check_shape(capacity: u32, pending: u64, packets: Option<&[u32]>) -> Result<(), PipeError> {
    let invalid = |msg: String| Err(PipeError::Invalid(msg));
    if capacity < PAGE_SIZE || !capacity.is_power_of_two() {
        return invalid(format!(
            "capacity {capacity} is not a power-of-two number of pages"
        ));
    }
    if pending > u64::from(capacity) {
        return invalid(format!(
            "{pending} pending bytes do not fit the capacity of {capacity} bytes"
        ));
    }
    if let Some(packets) = packets {
        let total: u64 = packets.iter().map(|&p| u64::from(p)).sum();
        if total != pending {
            return invalid(format!(
                "packet lengths add up to {total} bytes but {pending} bytes are pending"
            ));
        }
        if let Some(bad) = packets.iter().find(|&&p| p == 0 || p as usize > PIPE_BUF) {
            return invalid(format!(
                "a packet of {bad} bytes (packets hold 1 to {PIPE_BUF} bytes)"
            ));
        }
        let slots = (capacity / PAGE_SIZE) as usize;
        if packets.len() > slots {
            return invalid(format!(
                "{} packets do not fit the {slots} buffers of a {capacity}-byte pipe",
                packets.len()
            ));
        }
    }
    Ok(())
}

/// Checks every record of the image's `pipes.img` as restore would (capacity, pending
/// bytes against their data file, packet lengths and count) without reading any pipe's
/// bytes, and returns the records. For refusing an impossible pipe before anything is
/// created or shown: the error ([`PipeError::Record`]) names the image, the file and the
/// record. An image without `pipes.img` has no pipes.
pub fn check_records(image: &Image) -> Result<Vec<proto::Pipe>, PipeError> {
    if !image.has_file(pipecr_image::PIPES) {
        return Ok(Vec::new());
    }
    let pipes: Vec<proto::Pipe> = image.read_records(pipecr_image::PIPES)?;
    let file = image.dir().join(pipecr_image::PIPES);
    for (record, entry) in pipes.iter().enumerate() {
        let pending = match &entry.data {
            Some(data) => image.data_len(data)?,
            None => 0,
        };
        let packets = entry.packet_mode.then_some(entry.packet_lengths.as_slice());
        check_shape(entry.capacity, pending, packets)
            .map_err(|e| e.in_record(file.clone(), record))?;
    }
    Ok(pipes)
}

impl PipeImage {
    /// Checks the image against itself and the kernel's rules before anything is created.
    pub fn validate(&self) -> Result<(), PipeError> {
        check_shape(
            self.capacity,
            self.data.len() as u64,
            self.packets.as_deref(),
        )
    }

    /// Flags the restored end `end` gets: those of the first saved end of that kind, else
    /// a plain end (a write end of a packet-mode pipe stays in packet mode).
    fn flags_of(&self, end: End) -> OFlags {
        match self.ends.iter().find(|e| e.end == end) {
            Some(state) => state.flags,
            None if end == End::Write && self.packets.is_some() => OFlags::WRONLY | OFlags::DIRECT,
            None if end == End::Write => OFlags::WRONLY,
            None => OFlags::RDONLY,
        }
    }

    /// The schema message for this pipe, with `id` and the place its bytes were stored.
    pub fn to_entry(&self, id: u64, data: Option<proto::DataRef>) -> proto::Pipe {
        proto::Pipe {
            id,
            inode: self.inode,
            capacity: self.capacity,
            data,
            packet_mode: self.packets.is_some(),
            packet_lengths: self.packets.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// The schema messages for the saved ends, numbered from `first_id`.
    pub fn end_entries(&self, pipe_id: u64, first_id: u64) -> Vec<proto::OpenFile> {
        (first_id..)
            .zip(&self.ends)
            .map(|(id, state)| proto::OpenFile {
                id,
                flags: state.flags.bits(),
                pos: 0,
                kind: Some(open_file::Kind::Pipe(proto::PipeEnd {
                    pipe_id,
                    end: match state.end {
                        End::Read => PipeEndKind::Read,
                        End::Write => PipeEndKind::Write,
                    } as i32,
                })),
                ..Default::default()
            })
            .collect()
    }

    /// Rebuilds a pipe image from its schema message, the bytes its `data` points to, and
    /// the open files that are its ends. Checks the result with [`PipeImage::validate`].
    pub fn from_entry(
        entry: &proto::Pipe,
        data: Vec<u8>,
        ends: &[proto::OpenFile],
    ) -> Result<PipeImage, PipeError> {
        let mut states = Vec::new();
        for file in ends {
            let Some(open_file::Kind::Pipe(end)) = &file.kind else {
                continue;
            };
            if end.pipe_id != entry.id {
                continue;
            }
            let flags = OFlags::from_bits_retain(file.flags);
            let kind = match PipeEndKind::try_from(end.end) {
                Ok(PipeEndKind::Read) => End::Read,
                Ok(PipeEndKind::Write) => End::Write,
                // An end kind this version does not know: its access mode still says
                // whether it reads.
                _ => End::of_flags(flags),
            };
            states.push(PipeEndState { end: kind, flags });
        }
        let image = PipeImage {
            inode: entry.inode,
            capacity: entry.capacity,
            data,
            packets: entry.packet_mode.then(|| entry.packet_lengths.clone()),
            ends: states,
        };
        image.validate()?;
        Ok(image)
    }
}

/// Creates a new pipe that holds what `image` holds: same capacity, same pending bytes
/// (packet by packet in packet mode), each end with its saved status flags. Returns the
/// read end and the write end, both close-on-exec.
///
/// An end saved with `O_RDWR` (a pipe end opened again through `/proc`) is opened that
/// way. A capacity above `/proc/sys/fs/pipe-max-size` without `CAP_SYS_RESOURCE` is
/// [`PipeError::CapacityRefused`], never a silently smaller pipe.
pub fn restore(image: &PipeImage) -> Result<(OwnedFd, OwnedFd), PipeError> {
    image.validate()?;
    // Non-blocking while refilling, so a pipe that cannot take the bytes is an error
    // rather than a hang; the saved flags are applied afterwards.
    let (read, write) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| {
            PipeError::Sys {
                fd: -1,
                op: "pipe2",
                source: e.into(),
            }
        })?;
    set_capacity(write.as_fd(), image.capacity)?;
    refill(write.as_fd(), image)?;
    let read = apply_flags(read, image.flags_of(End::Read))?;
    let write = apply_flags(write, image.flags_of(End::Write))?;
    Ok((read, write))
}

/// Gives an existing, empty pipe (a FIFO opened read-write, say) the capacity and the
/// pending bytes of `image`, through `write`, which must be non-blocking.
pub fn fill(write: BorrowedFd<'_>, image: &PipeImage) -> Result<(), PipeError> {
    image.validate()?;
    let pending = rustix::io::ioctl_fionread(write).map_err(sys_err(write, "ioctl(FIONREAD)"))?;
    if pending != 0 {
        return Err(PipeError::Invalid(format!(
            "the pipe to refill already holds {pending} bytes"
        )));
    }
    set_capacity(write, image.capacity)?;
    refill(write, image)?;
    // Refilling may have switched the end to packet mode; hand it back as it was.
    rustix::fs::fcntl_setfl(write, OFlags::NONBLOCK).map_err(sys_err(write, "fcntl(F_SETFL)"))?;
    Ok(())
}

/// Writes the saved bytes into the new pipe through `write`, which is non-blocking.
fn refill(write: BorrowedFd<'_>, image: &PipeImage) -> Result<(), PipeError> {
    match &image.packets {
        Some(packets) => {
            // A pipe buffer is a packet when the write that filled it came through an
            // O_DIRECT file; one write per packet keeps every boundary.
            rustix::fs::fcntl_setfl(write, OFlags::NONBLOCK | OFlags::DIRECT)
                .map_err(sys_err(write, "fcntl(F_SETFL, O_DIRECT)"))?;
            let mut offset = 0;
            for &len in packets {
                let packet = &image.data[offset..offset + len as usize];
                let n = rustix::io::write(write, packet).map_err(sys_err(write, "write"))?;
                if n != packet.len() {
                    return Err(PipeError::Incomplete {
                        inode: image.inode,
                        pending: image.data.len() as u64,
                        copied: (offset + n) as u64,
                    });
                }
                offset += n;
            }
        }
        None => {
            let mut offset = 0;
            while offset < image.data.len() {
                let n = rustix::io::write(write, &image.data[offset..])
                    .map_err(sys_err(write, "write"))?;
                offset += n;
            }
        }
    }
    Ok(())
}

/// Gives a restored end its saved status flags; an `O_RDWR` end is a new open file of the
/// same pipe, since the access mode cannot be changed afterwards.
fn apply_flags(fd: OwnedFd, flags: OFlags) -> Result<OwnedFd, PipeError> {
    let fd = if flags & OFlags::RWMODE == OFlags::RDWR {
        sys::fd::reopen(fd.as_fd(), OFlags::RDWR | OFlags::NONBLOCK).map_err(|source| {
            PipeError::Sys {
                fd: fd.as_raw_fd(),
                op: "open(/proc/self/fd) read-write",
                source,
            }
        })?
    } else {
        fd
    };
    rustix::fs::fcntl_setfl(&fd, flags & SETTABLE_FLAGS).map_err(sys_err(&fd, "fcntl(F_SETFL)"))?;
    Ok(fd)
}

/// Restores `image` into a new pipe whose read end is descriptor `read_fd` and write end
/// `write_fd` of the calling process, like the RFC's `restore_pipe(fd, img)`.
///
/// Whatever those numbers referred to is closed, as `dup2(2)` would. The two descriptors
/// are not close-on-exec (as `pipe(2)` makes them) and now belong to the caller.
pub fn restore_at(image: &PipeImage, read_fd: RawFd, write_fd: RawFd) -> Result<(), PipeError> {
    if read_fd == write_fd || read_fd < 0 || write_fd < 0 {
        return Err(PipeError::Invalid(format!(
            "cannot install a pipe at fds {read_fd} and {write_fd}: two distinct, \
             non-negative descriptor numbers are needed"
        )));
    }
    let (read, write) = restore(image)?;
    // The new ends may sit on one of the target numbers; move them above both first so
    // installing one end can never close the other.
    let above = read_fd.max(write_fd) + 1;
    let park = |fd: OwnedFd| {
        rustix::io::fcntl_dupfd_cloexec(&fd, above).map_err(sys_err(&fd, "fcntl(F_DUPFD_CLOEXEC)"))
    };
    let (read, write) = (park(read)?, park(write)?);
    let install = |fd: OwnedFd, target: RawFd| {
        let from = fd.as_raw_fd();
        sys::fd::install_at(fd, target, false).map_err(|source| PipeError::Sys {
            fd: from,
            op: "dup3",
            source,
        })
    };
    let read = install(read, read_fd)?;
    let write = install(write, write_fd)?;
    // The caller owns the numbers it asked for.
    let _ = (read.into_raw_fd(), write.into_raw_fd());
    Ok(())
}

/// Saves `image` as a new image directory `dir` (written atomically; an existing `dir` is
/// refused). Returns the directory written.
pub fn save(image: &PipeImage, dir: &Path) -> Result<PathBuf, PipeError> {
    image.validate()?;
    let mut writer = ImageWriter::create(dir, image_meta(pipecr_image::CONTENT_PIPE))?;
    let data = writer.raw(pipecr_image::PIPES_DATA)?.append(&image.data)?;
    writer.write_records(pipecr_image::PIPES, &[image.to_entry(1, Some(data))])?;
    writer.write_records(pipecr_image::FILES, &image.end_entries(1, 1))?;
    Ok(writer.commit()?)
}

/// Loads the one pipe of an image directory written by [`save`], after the image's
/// checksums have been verified. A record that passed its checksum but describes an
/// impossible pipe is [`PipeError::Record`], naming the directory, `pipes.img` and the
/// record.
pub fn load(dir: &Path) -> Result<PipeImage, PipeError> {
    let image = Image::open(dir)?;
    let pipes: Vec<proto::Pipe> = image.read_records(pipecr_image::PIPES)?;
    let [entry] = pipes.as_slice() else {
        return Err(PipeError::Invalid(format!(
            "{}: {} holds {} pipes, expected exactly one",
            dir.display(),
            pipecr_image::PIPES,
            pipes.len()
        )));
    };
    let files: Vec<proto::OpenFile> = if image.has_file(pipecr_image::FILES) {
        image.read_records(pipecr_image::FILES)?
    } else {
        Vec::new()
    };
    let data = match &entry.data {
        Some(data) => image.read_data(data)?,
        None => Vec::new(),
    };
    PipeImage::from_entry(entry, data, &files)
        .map_err(|e| e.in_record(dir.join(pipecr_image::PIPES), 0))
}

/// What the inventory records about this machine and tool.
pub fn image_meta(content: &str) -> ImageMeta {
    let uname = rustix::system::uname();
    ImageMeta {
        content: content.to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_release: uname.release().to_string_lossy().into_owned(),
        arch: uname.machine().to_string_lossy().into_owned(),
    }
}

/// A name for a file type, for messages.
pub fn file_type_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}
