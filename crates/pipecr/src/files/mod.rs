//! Open files, one module per kind, each implementing [`FileKind`]; all of them are
//! listed in [`KINDS`].
//!
//! A kind knows how to recognise one of its files in a live process ([`FileKind::claims`]),
//! how to save it as an `OpenFile` message ([`FileKind::dump`]) and how to open it again
//! in the calling process ([`FileKind::restore`]). The dump and restore orchestration
//! iterate over [`KINDS`] and know no kind by name: a new kind is one new module, one
//! entry in [`KINDS`] and one message in the schema.
//!
//! Objects that several open files share (the pipe behind many ends, the FIFO behind many
//! opens, the peer of a socket) are kept in [`DumpSink`] and [`RestoreCtx`], so each is
//! saved once and created once.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use pipecr_image::proto::{self, open_file};
use pipecr_image::{Image, ImageError, ImageWriter};

use crate::pipe::PipeError;
use crate::proc::FdInfo;

pub mod chardev;
pub mod directory;
pub mod eventfd;
pub mod fifo;
pub mod inotify;
pub mod memfd;
pub mod pipe;
pub mod regular;
pub mod signalfd;
pub mod timerfd;
pub mod unix;

/// Every kind of open file pipecr can save, in the order they are asked to claim a file.
pub static KINDS: &[&dyn FileKind] = &[
    &pipe::PipeKind,
    &fifo::FifoKind,
    // Before regular: a memfd is a regular file too.
    &memfd::MemfdKind,
    &regular::RegularKind,
    &directory::DirectoryKind,
    &chardev::CharDeviceKind,
    &eventfd::EventFdKind,
    &timerfd::TimerFdKind,
    &signalfd::SignalFdKind,
    &inotify::InotifyKind,
    &unix::UnixSocketKind,
];

/// One open file of a frozen process, fetched into pipecr with `pidfd_getfd`.
#[derive(Debug)]
pub struct LiveFile {
    /// The process it was fetched from.
    pub pid: i32,
    /// Its descriptor number in that process.
    pub fd: RawFd,
    /// Our own descriptor for the same open file (close-on-exec; flags and position are
    /// shared with the process, so read-only use only).
    pub file: OwnedFd,
    /// `fstat` of it.
    pub stat: rustix::fs::Stat,
    /// The target of `/proc/PID/fd/N`: a path, or `pipe:[N]`, `socket:[N]`,
    /// `anon_inode:[eventfd]`, ...
    pub link: String,
    /// `/proc/PID/fdinfo/N`.
    pub info: FdInfo,
}

impl LiveFile {
    /// Fetches descriptor `fd` of process `pid` with `pidfd_getfd` (the process need not
    /// be stopped for this, but its files only hold still while it is), with its `fstat`,
    /// `/proc` link and fdinfo.
    pub fn fetch(pid: i32, fd: RawFd) -> Result<LiveFile, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid,
            fd,
            what: format!("/proc/{pid}/fd/{fd}"),
            op,
            source,
        };
        let target = rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| fail("pidfd_open", io::Error::from_raw_os_error(libc::ESRCH)))?;
        let pidfd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty())
            .map_err(|e| fail("pidfd_open", e.into()))?;
        let file =
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
                .map_err(|e| fail("pidfd_getfd", e.into()))?;
        Self::from_fetched(pid, fd, file)
    }

    /// Completes a [`LiveFile`] for `file`, already fetched from descriptor `fd` of `pid`.
    pub fn from_fetched(pid: i32, fd: RawFd, file: OwnedFd) -> Result<LiveFile, FileError> {
        let info = crate::proc::fdinfo(pid, fd).map_err(|e| FileError::Dump {
            pid,
            fd,
            what: format!("/proc/{pid}/fd/{fd}"),
            op: "read fdinfo",
            source: io::Error::other(e.to_string()),
        })?;
        Self::with_info(pid, fd, file, info)
    }

    /// Completes a [`LiveFile`] for `file`, fetched from descriptor `fd` of `pid`, whose
    /// fdinfo the caller already read.
    pub fn with_info(
        pid: i32,
        fd: RawFd,
        file: OwnedFd,
        info: FdInfo,
    ) -> Result<LiveFile, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid,
            fd,
            what: format!("/proc/{pid}/fd/{fd}"),
            op,
            source,
        };
        let stat = rustix::fs::fstat(&file).map_err(|e| fail("fstat", e.into()))?;
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|e| fail("readlink", e))?
            .to_string_lossy()
            .into_owned();
        Ok(LiveFile {
            pid,
            fd,
            file,
            stat,
            link,
            info,
        })
    }
}

/// Limits and choices for a dump.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Largest unlinked regular file (or memfd) whose contents are copied into the image;
    /// a larger one stops the dump.
    pub max_inline_file: u64,
    /// Read signal handlers and interval timers by injecting syscalls into each process
    /// (and each thread's `clear_child_tid`, into each thread).
    ///
    /// Off by default: while a syscall is injected, the thread's registers are pipecr's,
    /// and if pipecr is killed (SIGKILL) in that window the kernel resumes the thread
    /// with them, damaging it. Every other step of a dump leaves a tree that survives
    /// pipecr's death untouched. Whole-process restore needs this state.
    pub read_handlers: bool,
    /// Let the tree run on after a successful dump (`--leave-running`). When false the
    /// tree is killed while still stopped, after the image is committed: a restored copy
    /// then carries on exactly where the original stopped. On error the tree is always
    /// resumed.
    pub leave_running: bool,
    /// With `leave_running`: read the tree's memory into a buffer while it is stopped and
    /// write it into the image after the tree runs again, so it is stopped for one copy
    /// of its memory instead of the page cache's pace. The buffer is sized from the
    /// memory of the processes that are read while stopped (all of them, or with
    /// `snapshots` those that cannot be forked), at most half the memory available, and
    /// allocated before the freeze; pages beyond it are written while stopped. Off by
    /// default: it costs that much memory, and the time to allocate it (about 0.5 ms per
    /// MiB here), for the length of the dump.
    pub write_behind: bool,
    /// With `leave_running`: take a copy-on-write snapshot of each process (a fork made
    /// from inside it by syscall injection, see [`crate::snapshot`]) while the tree is
    /// stopped, and read the memory from the snapshots after it runs again. The tree then
    /// waits milliseconds for its memory, whatever its size. Off by default for the same
    /// reason as `read_handlers`: injection is not safe against pipecr being SIGKILLed.
    /// Processes a fork would not copy exactly are read while stopped.
    pub snapshots: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            max_inline_file: 1 << 20,
            read_handlers: false,
            leave_running: true,
            write_behind: false,
            snapshots: false,
        }
    }
}

/// A pipe object met during a dump (an anonymous pipe or a FIFO's pipe), saved once.
#[derive(Debug, Clone)]
pub struct DumpedPipe {
    /// The record for `pipes.img` (its id is the image-wide pipe id).
    pub entry: proto::Pipe,
    /// Some open file of the tree reads from it.
    pub has_reader: bool,
    /// Some open file of the tree writes to it.
    pub has_writer: bool,
}

/// Where kinds put what they save: the image being written and the objects shared
/// between open files.
pub struct DumpSink<'w> {
    /// The image being written.
    pub writer: &'w mut ImageWriter,
    /// The options of this dump.
    pub options: DumpOptions,
    /// Pipe objects by (device, inode), in the order they were met.
    pub pipes: BTreeMap<(u64, u64), DumpedPipe>,
}

impl<'w> DumpSink<'w> {
    /// A sink that writes into `writer`.
    pub fn new(writer: &'w mut ImageWriter, options: DumpOptions) -> Self {
        DumpSink {
            writer,
            options,
            pipes: BTreeMap::new(),
        }
    }
}

/// What the restore of open files inside one process keeps between files: the image,
/// and the shared objects already created (pipes by id, socket peers by inode).
pub struct RestoreCtx<'i> {
    /// The image being restored.
    pub image: &'i Image,
    /// Every pipe record of the image, by pipe id.
    pub pipe_entries: BTreeMap<u64, proto::Pipe>,
    /// Pipes already recreated: the pipe id and two anchor ends from which every saved
    /// end is opened again.
    pub pipes: BTreeMap<u64, (OwnedFd, OwnedFd)>,
    /// Objects created for one open file and waiting for another (the second end of a
    /// socketpair), by a key the kind chooses (the saved inode).
    pub pending: BTreeMap<u64, OwnedFd>,
    /// Every open-file record of the image (`files.img`), read on first use by
    /// [`RestoreCtx::open_files`].
    open_files: Option<Vec<proto::OpenFile>>,
}

impl<'i> RestoreCtx<'i> {
    /// A context for restoring open files of `image`; reads and checks `pipes.img` if
    /// present ([`crate::pipe::check_records`]).
    pub fn new(image: &'i Image) -> Result<Self, FileError> {
        let pipe_entries = crate::pipe::check_records(image)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        Ok(RestoreCtx {
            image,
            pipe_entries,
            pipes: BTreeMap::new(),
            pending: BTreeMap::new(),
            open_files: None,
        })
    }

    /// Every open-file record of the image, for a kind that creates two open files at
    /// once and needs the record of the second (the peer of a socketpair end). Read
    /// from `files.img` on first use, then kept.
    pub fn open_files(&mut self) -> Result<&[proto::OpenFile], FileError> {
        if self.open_files.is_none() {
            self.open_files = Some(self.image.read_records(pipecr_image::FILES)?);
        }
        Ok(self.open_files.as_deref().unwrap_or_default())
    }
}

/// Why an open file could not be saved or opened again.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// pipecr cannot save this kind of file (yet).
    #[error("pid {pid} fd {fd}: {kind} is not supported")]
    Unsupported {
        /// The process.
        pid: i32,
        /// The descriptor.
        fd: RawFd,
        /// What it is, in words (`epoll`, `inet socket`, ...).
        kind: String,
    },
    /// A system call on the file failed during the dump.
    #[error("pid {pid} fd {fd} ({what}): {op} failed")]
    Dump {
        /// The process.
        pid: i32,
        /// The descriptor.
        fd: RawFd,
        /// What the file is (its /proc link).
        what: String,
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file is too large to be copied into the image.
    #[error(
        "pid {pid} fd {fd} ({what}): {size} bytes is more than the {limit}-byte limit for file contents kept in the image"
    )]
    TooLarge {
        /// The process.
        pid: i32,
        /// The descriptor.
        fd: RawFd,
        /// What the file is.
        what: String,
        /// Its size.
        size: u64,
        /// The limit ([`DumpOptions::max_inline_file`]).
        limit: u64,
    },
    /// A saved open file could not be opened again.
    #[error("open file {id} ({what}): {op} failed")]
    Restore {
        /// The open file's id in the image.
        id: u64,
        /// What it is (path or kind).
        what: String,
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file on disk is not the one that was saved.
    #[error("open file {id}: {path} changed since the dump ({what})")]
    Changed {
        /// The open file's id in the image.
        id: u64,
        /// Its path.
        path: String,
        /// What differs.
        what: String,
    },
    /// The image contradicts itself (a missing pipe record, an unknown kind, ...).
    #[error("open file {id}: {reason}")]
    Invalid {
        /// The open file's id in the image.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A pipe could not be checkpointed or recreated.
    #[error(transparent)]
    Pipe(#[from] PipeError),
    /// The image could not be written or read.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// One kind of open file: how to recognise, save and reopen it.
pub trait FileKind: Sync {
    /// A short name for messages and `pipecr show` ("pipe", "regular file", ...).
    fn name(&self) -> &'static str;

    /// True when this kind saves `file`.
    fn claims(&self, file: &LiveFile) -> bool;

    /// Saves what is needed to open `file` again. Flags and position are saved by the
    /// caller from fdinfo; shared objects go into `sink` once.
    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError>;

    /// Called once after every open file of the tree was dumped, with all of them:
    /// write shared records, mark ends whose peer is outside the tree.
    fn finish(
        &self,
        files: &mut [proto::OpenFile],
        sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        let _ = (files, sink);
        Ok(())
    }

    /// True when this kind restores open files saved as `kind`.
    fn restores(&self, kind: &open_file::Kind) -> bool;

    /// Opens `file` again in the calling process with its saved status flags and
    /// position. The descriptor returned is close-on-exec; the caller installs it.
    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError>;
}

/// The kind that saves `file`, or why none does.
pub fn kind_of(file: &LiveFile) -> Result<&'static dyn FileKind, FileError> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.claims(file))
        .ok_or_else(|| FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: describe_live(file),
        })
}

/// The kind that restores a saved open file.
pub fn restorer_of(file: &proto::OpenFile) -> Result<&'static dyn FileKind, FileError> {
    let Some(kind) = &file.kind else {
        return Err(FileError::Invalid {
            id: file.id,
            reason: "a kind of file this version of pipecr does not know".into(),
        });
    };
    KINDS
        .iter()
        .copied()
        .find(|k| k.restores(kind))
        .ok_or_else(|| FileError::Invalid {
            id: file.id,
            reason: "no kind restores it".into(),
        })
}

/// Saves one live open file as an `OpenFile` record with id `id`.
pub fn dump_file(
    id: u64,
    file: &LiveFile,
    sink: &mut DumpSink<'_>,
) -> Result<proto::OpenFile, FileError> {
    let kind = kind_of(file)?.dump(file, sink)?;
    Ok(proto::OpenFile {
        id,
        flags: file.info.flags,
        pos: file.info.pos,
        kind: Some(kind),
    })
}

/// Lets every kind finish the dump (see [`FileKind::finish`]).
pub fn finish_dump(
    files: &mut [proto::OpenFile],
    sink: &mut DumpSink<'_>,
) -> Result<(), FileError> {
    for kind in KINDS {
        kind.finish(files, sink)?;
    }
    Ok(())
}

/// Opens a saved open file again in the calling process.
pub fn restore_file(
    file: &proto::OpenFile,
    ctx: &mut RestoreCtx<'_>,
) -> Result<OwnedFd, FileError> {
    restorer_of(file)?.restore(file, ctx)
}

/// Words for a live file no kind claims, for the error that stops the dump: for a
/// socket, what [`unix::describe_socket`] finds out about it; otherwise [`describe`].
pub fn describe_live(file: &LiveFile) -> String {
    if file.link.starts_with("socket:") {
        return unix::describe_socket(file.file.as_fd());
    }
    describe(&file.link, &file.stat)
}

/// Words for a file no kind claims, for the error that stops the dump.
pub fn describe(link: &str, stat: &rustix::fs::Stat) -> String {
    use rustix::fs::FileType;
    if let Some(anon) = link.strip_prefix("anon_inode:") {
        let name = anon.trim_matches(|c| c == '[' || c == ']');
        return match name {
            "eventpoll" => "epoll instance".into(),
            "signalfd" => "signalfd".into(),
            "timerfd" => "timerfd".into(),
            "inotify" => "inotify instance".into(),
            "io_uring" => "io_uring instance".into(),
            "[fanotify]" | "fanotify" => "fanotify instance".into(),
            "pidfd" | "[pidfd]" => "pidfd".into(),
            other => format!("anonymous inode {other}"),
        };
    }
    if link.starts_with("socket:") {
        return "socket (other than a unix socketpair)".into();
    }
    let kind = crate::pipe::file_type_name(FileType::from_raw_mode(stat.st_mode));
    format!("{kind} {link}")
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
