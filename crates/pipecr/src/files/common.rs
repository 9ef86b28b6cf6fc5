//! What several kinds of open file share, as CRIU's `files.c` serves `pipes.c` and
//! `fifo.c`: the identity of a file and the check that it is still the one saved, the
//! "(deleted)" suffix of `/proc` links, which saved flags `open(2)` takes and putting back
//! position and flags, reading an unlinked file's bytes, words for a file no kind claims,
//! and the table of pipe objects that anonymous pipes and FIFOs both use.
//!
//! No kind lives here, and this module imports none: kinds import it. The trait and the
//! contexts are in [`super::kind`].

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use pipecr_image::proto;
use rustix::fs::{FileType, Mode, OFlags, SeekFrom};

use super::kind::{DumpSink, FileError, LiveFile, PipeUse, RestoreCtx, Saved};
use crate::pipe::{self, PIPE_BUF, PipeImage, SETTABLE_FLAGS};

/// What `/proc/PID/fd/N` appends to the path of a file whose name was removed.
pub const DELETED: &str = " (deleted)";

/// What `/proc/PID/fd/N` shows before a memfd's name.
pub const MEMFD_PREFIX: &str = "/memfd:";

/// The identity of a file from its `fstat`.
pub fn identity(stat: &rustix::fs::Stat) -> proto::FileIdentity {
    proto::FileIdentity {
        dev: stat.st_dev,
        inode: stat.st_ino,
        size: stat.st_size as u64,
        mtime_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64,
        mode: stat.st_mode,
    }
}

/// True for an unlinked file whose link reads `/memfd:NAME (deleted)`: a memfd (or, in
/// theory, a deleted file at `/memfd:NAME`, which the memfd kind tells apart by asking for
/// its seals). Path-opened kinds leave such files to the memfd kind.
pub fn looks_like_memfd(file: &LiveFile) -> bool {
    file.stat.st_nlink == 0 && file.link.starts_with(MEMFD_PREFIX) && file.link.ends_with(DELETED)
}

/// The saved status flags that `open(2)` accepts and keeps (access mode, `O_APPEND`,
/// `O_NONBLOCK`, synchronous I/O, ...), always with `O_CLOEXEC`.
///
/// Flags that only make sense while creating a file (`O_CREAT`, `O_TRUNC`, `O_EXCL`,
/// `O_TMPFILE`, which the kernel leaves in `f_flags`), and `O_DIRECTORY`, which the caller
/// adds when it wants it, are left out.
pub fn open_flags(saved: u32) -> OFlags {
    let keep = OFlags::RWMODE
        | OFlags::APPEND
        | OFlags::NONBLOCK
        | OFlags::DIRECT
        | OFlags::DSYNC
        | OFlags::SYNC
        | OFlags::NOATIME
        | OFlags::NOFOLLOW
        | OFlags::LARGEFILE
        | OFlags::PATH;
    (OFlags::from_bits_retain(saved) & keep) | OFlags::CLOEXEC
}

/// Seeks a freshly opened `fd` to the saved position and sets the saved status flags
/// that can change after `open` (those of `crate::pipe::SETTABLE_FLAGS`).
///
/// Nothing is done for an `O_PATH` file, which has neither; the seek is skipped at
/// position 0, where every new open file already is (and where devices that cannot seek
/// stay).
pub fn set_position_and_flags(
    fd: BorrowedFd<'_>,
    file: &proto::OpenFile,
    what: &str,
) -> Result<(), FileError> {
    let saved = OFlags::from_bits_retain(file.flags);
    if saved.contains(OFlags::PATH) {
        return Ok(());
    }
    let fail = |op, e: rustix::io::Errno| FileError::Restore {
        id: file.id,
        what: what.to_owned(),
        op,
        source: e.into(),
    };
    if file.pos != 0 {
        let at = rustix::fs::seek(fd, SeekFrom::Start(file.pos)).map_err(|e| fail("lseek", e))?;
        if at != file.pos {
            return Err(FileError::Restore {
                id: file.id,
                what: what.to_owned(),
                op: "lseek",
                source: io::Error::other(format!("landed at {at} instead of {}", file.pos)),
            });
        }
    }
    rustix::fs::fcntl_setfl(fd, saved & SETTABLE_FLAGS).map_err(|e| fail("fcntl(F_SETFL)", e))
}

/// Differences between a saved identity and the file now found, in words; empty when
/// they match. Only what survives a copy to another machine is compared: the file type,
/// and with `compare_contents` the size and mtime.
fn differences(
    saved: &proto::FileIdentity,
    now: &rustix::fs::Stat,
    compare_contents: bool,
) -> Vec<String> {
    let now = identity(now);
    let mut out = Vec::new();
    let (was, is) = (
        FileType::from_raw_mode(saved.mode),
        FileType::from_raw_mode(now.mode),
    );
    if was != is {
        out.push(format!(
            "it was a {}, it is now a {}",
            pipe::file_type_name(was),
            pipe::file_type_name(is)
        ));
        return out;
    }
    if !compare_contents {
        return out;
    }
    if saved.size != now.size {
        out.push(format!("size was {} bytes, is {}", saved.size, now.size));
    }
    if saved.mtime_ns != now.mtime_ns {
        out.push(format!(
            "mtime was {} ns, is {} ns",
            saved.mtime_ns, now.mtime_ns
        ));
    }
    out
}

/// Checks that `fd`, opened at `path` for open file `id`, is the file whose identity was
/// saved: same type, and with `compare_contents` same size and mtime.
pub fn check_identity(
    id: u64,
    path: &str,
    fd: BorrowedFd<'_>,
    saved: Option<&proto::FileIdentity>,
    compare_contents: bool,
) -> Result<(), FileError> {
    let Some(saved) = saved else {
        return Err(FileError::Invalid {
            id,
            reason: format!("{path} was saved without its identity"),
        });
    };
    let now = rustix::fs::fstat(fd).map_err(|e| FileError::Restore {
        id,
        what: path.to_owned(),
        op: "fstat",
        source: e.into(),
    })?;
    let diff = differences(saved, &now, compare_contents);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(FileError::Changed {
            id,
            path: path.to_owned(),
            what: diff.join("; "),
        })
    }
}

/// The owner of `file`'s I/O signals (`F_GETOWN_EX`; `None` when nobody owns them) and
/// the signal sent for them (`F_GETSIG`, 0 for `SIGIO`): state of every open file, which
/// `O_ASYNC` delivers to.
pub fn owner_and_signal(file: &LiveFile) -> Result<(Option<proto::FileOwner>, i32), FileError> {
    let fail = |op, source: io::Error| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op,
        source,
    };
    // An O_PATH descriptor does no I/O: it has no owner (and fcntl refuses to say).
    if OFlags::from_bits_retain(file.info.flags).contains(OFlags::PATH) {
        return Ok((None, 0));
    }
    let fd = file.file.as_fd();
    let (kind, id) =
        crate::sys::owner::file_owner(fd).map_err(|e| fail("fcntl(F_GETOWN_EX)", e))?;
    let signal = crate::sys::owner::file_signal(fd).map_err(|e| fail("fcntl(F_GETSIG)", e))?;
    let owner = (id != 0).then_some(proto::FileOwner { r#type: kind, id });
    Ok((owner, signal))
}

/// Gives the restored `fd` of `file` its saved I/O signal (`F_SETSIG`) and owner
/// (`F_SETOWN_EX`). Returns false, having set the signal only, when the owner does not
/// exist yet (`ESRCH`: a process of the tree created later): the caller sets it again
/// once every process exists.
pub fn restore_owner_and_signal(
    fd: BorrowedFd<'_>,
    file: &proto::OpenFile,
) -> Result<bool, FileError> {
    let fail = |op, source: io::Error| FileError::Restore {
        id: file.id,
        what: "its I/O signal owner".to_owned(),
        op,
        source,
    };
    if file.signal != 0 {
        crate::sys::owner::set_file_signal(fd, file.signal)
            .map_err(|e| fail("fcntl(F_SETSIG)", e))?;
    }
    // O_ASYNC last, once its signal is chosen (kinds set the flags they know).
    let asynchronous = OFlags::ASYNC;
    if OFlags::from_bits_retain(file.flags).contains(asynchronous) {
        let now = rustix::fs::fcntl_getfl(fd).map_err(|e| fail("fcntl(F_GETFL)", e.into()))?;
        if !now.contains(asynchronous) {
            rustix::fs::fcntl_setfl(fd, now | asynchronous)
                .map_err(|e| fail("fcntl(F_SETFL, O_ASYNC)", e.into()))?;
        }
    }
    let Some(owner) = &file.owner else {
        return Ok(true);
    };
    match crate::sys::owner::set_file_owner(fd, owner.r#type, owner.id) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(fail("fcntl(F_SETOWN_EX)", e)),
    }
}

/// How many bytes of data the file of `reader` (an open file of pipecr's own, whose
/// position may move) holds: the sum of its data extents (`SEEK_DATA`/`SEEK_HOLE`), so
/// holes count nothing. A file system that cannot tell holes reports one extent, the
/// whole size.
pub fn data_bytes(reader: BorrowedFd<'_>, size: u64) -> io::Result<u64> {
    let mut total = 0;
    let mut off = 0;
    while off < size {
        let data = match rustix::fs::seek(reader, SeekFrom::Data(off)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = rustix::fs::seek(reader, SeekFrom::Hole(data))
            .unwrap_or(size)
            .min(size);
        total += hole.saturating_sub(data);
        off = hole.max(data + 1);
    }
    Ok(total)
}

/// Checks that the unlinked file or memfd `file` (read through `reader`, a new open file
/// of pipecr's own) holds at most `limit` bytes of data, holes not counted.
pub fn check_data_limit(
    file: &LiveFile,
    reader: BorrowedFd<'_>,
    limit: u64,
) -> Result<(), FileError> {
    let size = file.stat.st_size as u64;
    let data = data_bytes(reader, size).map_err(|source| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op: "lseek(SEEK_DATA)",
        source,
    })?;
    if data > limit {
        return Err(FileError::TooLarge {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            size: data,
            limit,
        });
    }
    Ok(())
}

/// Reads the whole content of a file we hold, from offset 0, refusing more than `limit`
/// bytes; for unlinked files and memfds, whose bytes live only in the kernel.
pub fn read_contents(file: &LiveFile, size: u64, limit: u64) -> Result<Vec<u8>, FileError> {
    if size > limit {
        return Err(FileError::TooLarge {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            size,
            limit,
        });
    }
    let fail = |op, source: io::Error| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op,
        source,
    };
    // A new read-only open of the same file: the process's own open file may be
    // write-only, and its position must not move.
    let reader = crate::sys::fd::reopen(file.file.as_fd(), rustix::fs::OFlags::RDONLY)
        .map_err(|e| fail("open(/proc/self/fd) for reading", e))?;
    let mut data = vec![0u8; size as usize];
    let mut off = 0usize;
    while off < data.len() {
        let n = rustix::io::pread(&reader, &mut data[off..], off as u64)
            .map_err(|e| fail("pread", e.into()))?;
        if n == 0 {
            break;
        }
        off += n;
    }
    data.truncate(off);
    Ok(data)
}

/// `(st_dev, st_ino)` of an open file.
pub fn stat_identity(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    rustix::fs::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino))
}

/// Opens (`O_PATH`) the file that `handle` names on the filesystem of device `dev`,
/// through each of its mounts in turn, and returns it with its path when it is the file
/// `(dev, ino)`, reachable by that path: how a file that fdinfo names only by inode and
/// handle (an inotify watch, a fanotify mark) is found again. Needs
/// `CAP_DAC_READ_SEARCH`.
pub fn open_handle(
    dev: u64,
    ino: u64,
    handle_type: i32,
    handle: &[u8],
) -> Option<(OwnedFd, String)> {
    let me = std::process::id() as i32;
    let mounts = crate::proc::mount_points_of(me, dev).ok()?;
    for mount in mounts {
        // Not O_PATH: open_by_handle_at refuses an O_PATH descriptor for the mount.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let Ok(mount) = rustix::fs::open(&mount, flags, Mode::empty()) else {
            continue;
        };
        let Ok(file) = crate::sys::fhandle::open_by_handle(
            mount.as_fd(),
            handle_type,
            handle,
            OFlags::PATH | OFlags::NOFOLLOW,
        ) else {
            continue;
        };
        if stat_identity(file.as_fd()) != Some((dev, ino)) {
            continue;
        }
        let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
            continue;
        };
        let path = path.to_string_lossy().into_owned();
        // The path must lead back to the same file: not "... (deleted)", not a path
        // relative to a bind mount of a subdirectory.
        let same =
            rustix::fs::lstat(path.as_str()).is_ok_and(|s| (s.st_dev, s.st_ino) == (dev, ino));
        if same {
            return Some((file, path));
        }
    }
    None
}

/// Words for a file no kind claims, for the error that stops the dump.
pub fn describe(link: &str, stat: &rustix::fs::Stat) -> String {
    if let Some(anon) = link.strip_prefix("anon_inode:") {
        let name = anon.trim_matches(|c| c == '[' || c == ']');
        return match name {
            "eventpoll" => "epoll instance".into(),
            "io_uring" => "an io_uring instance (its queues, registered files and buffers and \
                 requests in flight live in the kernel, which gives user space no way to read \
                 them out or rebuild them; CRIU cannot either)"
                .into(),
            "[fanotify]" | "fanotify" => "fanotify instance".into(),
            "pidfd" | "[pidfd]" => "pidfd".into(),
            other => format!("anonymous inode {other}"),
        };
    }
    if link.starts_with("socket:") {
        return "socket (other than a unix socketpair)".into();
    }
    let kind = pipe::file_type_name(FileType::from_raw_mode(stat.st_mode));
    format!("{kind} {link}")
}

// ---------------------------------------------------------------------------------------
// Pipe objects: an anonymous pipe and a FIFO both stand on a pipe, saved once in
// `pipes.img` whichever open files (ends, FIFO opens) of whichever processes use it.

/// A pipe object met during a dump (an anonymous pipe or a FIFO's pipe), saved once.
#[derive(Debug, Clone)]
pub struct DumpedPipe {
    /// The record for `pipes.img` (its id is the image-wide pipe id).
    pub entry: proto::Pipe,
    /// Some open file of the tree reads from it.
    pub has_reader: bool,
    /// Some open file of the tree writes to it.
    pub has_writer: bool,
    /// No open file anywhere writes to it: a read end of the tree reported `POLLHUP`
    /// ([`peer_closed`]).
    pub writer_closed: bool,
    /// No open file anywhere reads from it: a write end of the tree reported `POLLERR`.
    pub reader_closed: bool,
}

/// The pipe objects of a dump, by (device, inode), in the order they were met: the
/// per-kind state ([`DumpSink::state`]) of the kinds that stand on pipes.
#[derive(Debug, Default)]
pub struct PipeObjects {
    /// The pipes, by (device, inode).
    pub pipes: BTreeMap<(u64, u64), DumpedPipe>,
}

impl PipeObjects {
    /// The records of `pipes.img` for the pipe objects met so far, by id, each marked
    /// with the ends no open file of the tree holds: external when someone outside the
    /// tree holds them, closed when no one does.
    pub fn records(&self) -> Vec<proto::Pipe> {
        let mut records: Vec<proto::Pipe> = self
            .pipes
            .values()
            .map(|p| proto::Pipe {
                external_reader: !p.has_reader && !p.reader_closed,
                external_writer: !p.has_writer && !p.writer_closed,
                reader_closed: !p.has_reader && p.reader_closed,
                writer_closed: !p.has_writer && p.writer_closed,
                ..p.entry.clone()
            })
            .collect();
        records.sort_by_key(|p| p.id);
        records
    }
}

/// Which side of its pipe no open file holds any more, as the kernel itself says, for an
/// end `file` of an anonymous pipe: `(writer_closed, reader_closed)`.
///
/// `poll` reports `POLLHUP` on a read end exactly when the pipe has no writer
/// (`pipe->writers == 0`), and `POLLERR` on a write end exactly when it has no reader;
/// pipecr's own descriptors fetched with `pidfd_getfd` are the tree's open files and add
/// nothing. Call it before pipecr opens any end of its own on the pipe (the read end
/// [`crate::pipe::checkpoint`] opens through `/proc` for a write end, say), which would
/// count as a reader. (For a FIFO opened non-blocking before any writer came, the kernel
/// holds `POLLHUP` back; FIFOs are reopened by path and do not use this.)
pub fn peer_closed(file: &LiveFile) -> Result<(bool, bool), FileError> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut polled = [PollFd::new(&file.file, PollFlags::empty())];
    rustix::event::poll(&mut polled, Some(&Timespec::default())).map_err(|e| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op: "poll",
        source: e.into(),
    })?;
    let got = polled[0].revents();
    let mode = OFlags::from_bits_retain(file.info.flags) & OFlags::RWMODE;
    Ok((
        mode == OFlags::RDONLY && got.contains(PollFlags::HUP),
        mode == OFlags::WRONLY && got.contains(PollFlags::ERR),
    ))
}

/// Marks the pipe object behind `file` (registered with [`register_pipe`]) with the sides
/// [`peer_closed`] found closed.
pub fn mark_closed(file: &LiveFile, sink: &mut DumpSink<'_>, closed: (bool, bool)) {
    let key = (file.stat.st_dev, file.stat.st_ino);
    if let Some(pipe) = sink.state::<PipeObjects>().pipes.get_mut(&key) {
        pipe.writer_closed |= closed.0;
        pipe.reader_closed |= closed.1;
    }
}

/// The records of `pipes.img` for the pipe objects of `sink` (none if no pipe was met).
pub fn pipe_records(sink: &DumpSink<'_>) -> Vec<proto::Pipe> {
    sink.peek_state::<PipeObjects>()
        .map(PipeObjects::records)
        .unwrap_or_default()
}

/// Saves the pipe object behind `file` once (its bytes are read through `file` without
/// consuming them) and notes which end `file` is; returns the pipe's image-wide id.
pub fn register_pipe(file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<u64, FileError> {
    let key = (file.stat.st_dev, file.stat.st_ino);
    if !sink.state::<PipeObjects>().pipes.contains_key(&key) {
        let image = pipe::checkpoint(file.file.as_fd())?;
        let data = sink
            .writer
            .raw(pipecr_image::PIPES_DATA)?
            .append(&image.data)?;
        let pipes = &mut sink.state::<PipeObjects>().pipes;
        let id = pipes.len() as u64 + 1;
        pipes.insert(
            key,
            DumpedPipe {
                entry: image.to_entry(id, Some(data)),
                has_reader: false,
                has_writer: false,
                writer_closed: false,
                reader_closed: false,
            },
        );
    }
    let Some(pipe) = sink.state::<PipeObjects>().pipes.get_mut(&key) else {
        unreachable!("inserted above");
    };
    let flags = OFlags::from_bits_retain(file.info.flags);
    match flags & OFlags::RWMODE {
        OFlags::WRONLY => pipe.has_writer = true,
        OFlags::RDWR => (pipe.has_reader, pipe.has_writer) = (true, true),
        _ => pipe.has_reader = true,
    }
    // O_DIRECT shows only on a write end. A pipe first met through its read end and
    // holding a single packet looked like a byte stream: one packet it is.
    if flags.contains(OFlags::DIRECT) && flags & OFlags::RWMODE != OFlags::RDONLY {
        let entry = &mut pipe.entry;
        let pending = entry.data.as_ref().map_or(0, |d| d.length);
        if !entry.packet_mode && (pending as usize) <= PIPE_BUF {
            entry.packet_mode = true;
            entry.packet_lengths = if pending == 0 {
                vec![]
            } else {
                vec![pending as u32]
            };
        }
    }
    Ok(pipe.entry.id)
}

/// The pipe objects of a restore: every record of `pipes.img` by pipe id, and the pipes
/// already recreated, each with two anchor open files from which every saved end is
/// opened again. The per-kind state ([`RestoreCtx::state`]) of the kinds that stand on
/// pipes; the anchors are closed with the context.
#[derive(Debug, Default)]
pub struct RestoredPipes {
    /// Every pipe record of the image, by pipe id (`None` until read).
    entries: Option<BTreeMap<u64, proto::Pipe>>,
    /// Pipes already recreated, by pipe id.
    pub anchors: BTreeMap<u64, (OwnedFd, OwnedFd)>,
    /// The anchors already handed out as saved ends themselves (by pipe id, and true for
    /// the write anchor), see [`RestoredPipes::hand_out`].
    handed_out: std::collections::BTreeSet<(u64, bool)>,
}

impl RestoredPipes {
    /// The read (or with `write`, the write) anchor of pipe `pipe_id`, the first time it is
    /// asked for; `None` after that, or before the pipe is recreated.
    ///
    /// An anonymous pipe's anchors are the two open files `pipe2` made. The one saved end
    /// of each direction that came from `pipe()` in the original (the one without
    /// `O_LARGEFILE`, which every `open` adds) is restored as that anchor itself, so its
    /// status flags are exactly the saved ones; other ends of the same direction were
    /// opened again through `/proc` in the original too, and are here.
    pub fn hand_out(&mut self, pipe_id: u64, write: bool) -> Option<BorrowedFd<'_>> {
        let (read_anchor, write_anchor) = self.anchors.get(&pipe_id)?;
        if !self.handed_out.insert((pipe_id, write)) {
            return None;
        }
        Some(if write { write_anchor } else { read_anchor }.as_fd())
    }
}

/// Reads and checks `pipes.img` into the context, once ([`crate::pipe::check_records`]).
pub fn load_pipe_records(ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
    if ctx.state::<RestoredPipes>().entries.is_none() {
        let entries = pipe::check_records(ctx.image)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        ctx.state::<RestoredPipes>().entries = Some(entries);
    }
    Ok(())
}

/// The saved pipe `pipe_id` with its bytes, for open file `file_id`.
pub fn pipe_image(
    file_id: u64,
    pipe_id: u64,
    ctx: &mut RestoreCtx<'_>,
) -> Result<PipeImage, FileError> {
    load_pipe_records(ctx)?;
    let image = ctx.image;
    let entry = ctx
        .state::<RestoredPipes>()
        .entries
        .as_ref()
        .and_then(|e| e.get(&pipe_id))
        .cloned()
        .ok_or_else(|| FileError::Invalid {
            id: file_id,
            reason: format!("it is an end of pipe {pipe_id}, which the image does not hold"),
        })?;
    let data = match &entry.data {
        Some(data) => image.read_data(data)?,
        None => Vec::new(),
    };
    Ok(PipeImage::from_entry(&entry, data, &[])?)
}

/// The open file `anchor` itself, for saved open file `id` (a new descriptor of it), with
/// the settable status flags of `flags`.
pub fn share_end(id: u64, anchor: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, FileError> {
    let fail = |op, source| FileError::Restore {
        id,
        what: "pipe end".into(),
        op,
        source,
    };
    let fd = rustix::io::fcntl_dupfd_cloexec(anchor, 0)
        .map_err(|e| fail("fcntl(F_DUPFD_CLOEXEC)", e.into()))?;
    rustix::fs::fcntl_setfl(&fd, flags & SETTABLE_FLAGS)
        .map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
    Ok(fd)
}

/// Opens one more open file of the pipe behind `anchor`, with status flags `flags`.
pub fn open_end(id: u64, anchor: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, FileError> {
    let fail = |op, source| FileError::Restore {
        id,
        what: "pipe end".into(),
        op,
        source,
    };
    // Non-blocking, so opening a write end never waits for a reader.
    let fd = crate::sys::fd::reopen(anchor, (flags & OFlags::RWMODE) | OFlags::NONBLOCK)
        .map_err(|e| fail("open(/proc/self/fd)", e))?;
    rustix::fs::fcntl_setfl(&fd, flags & SETTABLE_FLAGS)
        .map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
    Ok(fd)
}

/// `pipe 3, 5 B pending, packet mode, writer closed` (or `pipe 3 (missing)`), for
/// `pipecr show`.
pub fn pipe_note(saved: &Saved<'_>, id: u64) -> String {
    saved.pipe(id).map_or_else(
        || format!("pipe {id} (missing)"),
        |p| {
            let pending = p.data.as_ref().map_or(0, |d| d.length);
            let mut s = format!("pipe {id}, {pending} B pending");
            if p.packet_mode {
                s.push_str(", packet mode");
            }
            if p.writer_closed {
                s.push_str(", writer closed");
            }
            if p.reader_closed {
                s.push_str(", reader closed");
            }
            s
        },
    )
}

/// How an open file opened by path with status flags `flags` uses pipe `pipe_id`: it
/// reads when opened for reading (`O_RDONLY`, `O_RDWR`) and writes when opened for
/// writing (`O_WRONLY`, `O_RDWR`).
pub fn pipe_use_by_mode(pipe_id: u64, role: &'static str, flags: u32) -> PipeUse {
    let mode = OFlags::from_bits_retain(flags) & OFlags::RWMODE;
    PipeUse {
        pipe_id,
        role,
        reads: mode != OFlags::WRONLY,
        writes: mode != OFlags::RDONLY,
        fifo: None,
    }
}
