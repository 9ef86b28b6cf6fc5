//! What every kind of open file is written against: the [`FileKind`] trait, the live file
//! it is handed at dump ([`LiveFile`]), where it puts what it saves ([`DumpSink`]), what it
//! restores from ([`RestoreCtx`]), the questions it answers about its saved records
//! ([`Stage`], [`External`], [`Description`]) and its error ([`FileError`]).
//!
//! This module knows no kind. Helpers several kinds share live in [`super::common`]; the
//! table of kinds and the dispatch over it in [`super`]. Objects that several open files
//! share (the pipe behind many ends, the second end of a socketpair) are kept by their
//! kind in the per-kind state of [`DumpSink::state`] and [`RestoreCtx::state`], so each is
//! saved once and created once without the contexts knowing the kind.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use pipecr_image::proto::{self, open_file};
use pipecr_image::{Image, ImageError, ImageWriter};

use crate::mem::MemError;
use crate::objects::{ObjectFds, ObjectSaver};
use crate::pipe::PipeError;
use crate::proc::FdInfo;

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
    /// Most bytes of data (holes not counted: found with `SEEK_DATA`/`SEEK_HOLE`) of an
    /// unlinked regular file (or memfd) whose contents are copied into the image, holes
    /// left out; one holding more stops the dump. A sparse file of any size fits when its
    /// data does.
    pub max_inline_file: u64,
    /// Read signal handlers and interval timers by injecting syscalls into each process
    /// (and each thread's `clear_child_tid`, into each thread).
    ///
    /// On by default: whole-process restore needs this state. False (`--no-inject`)
    /// saves no handlers, timers, alternate stacks nor `clear_child_tid` and injects
    /// nothing: while a syscall is injected the thread's registers are pipecr's, and if
    /// pipecr is killed (SIGKILL) in that window the kernel resumes the thread with them,
    /// damaging it. See docs/INJECTION.md for what a killed dump leaves at each step.
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
    /// waits milliseconds for its memory, whatever its size. Off by default: the fork is
    /// one more injection session per process, and while it runs a SIGKILL of pipecr
    /// kills that process (`PTRACE_O_EXITKILL`, see docs/INJECTION.md). Processes a fork
    /// would not copy exactly are read while stopped.
    pub snapshots: bool,
    /// Save an inotify instance that holds queued, unread events without those events
    /// (`--drop-inotify-events`). Off by default, and such a dump is refused: the events
    /// cannot be read without consuming them. When on, the instance and every watch are
    /// saved, the events are left in the live instance (a tree that runs on still reads
    /// them), the restored instance starts with none, and each instance is reported once
    /// in [`DumpSink::dropped`] with the bytes lost.
    pub drop_inotify_events: bool,
    /// Save a netlink socket that holds queued, unread messages without them
    /// (`--drop-netlink-messages`). Off by default, and such a dump is refused: the
    /// messages cannot be read without consuming them, nor queued again as the kernel's.
    /// When on, the live socket keeps them, the restored one starts with none, and each
    /// socket is reported once in [`DumpSink::dropped`].
    pub drop_netlink_messages: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            max_inline_file: 1 << 20,
            read_handlers: true,
            leave_running: true,
            write_behind: false,
            snapshots: false,
            drop_inotify_events: false,
            drop_netlink_messages: false,
        }
    }
}

/// State a dump left out of the image because its options allowed it (the queued events
/// of an inotify instance, [`DumpOptions::drop_inotify_events`]): one per open file, named
/// by its first descriptor, for the caller to tell the user (the library never prints).
/// Displayed as `pid P fd F: dropped WHAT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The process holding the open file (the first, when several do).
    pub pid: i32,
    /// Its descriptor there.
    pub fd: RawFd,
    /// What the image lacks, in words: `32 bytes of queued inotify events`.
    pub what: String,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} fd {}: dropped {}", self.pid, self.fd, self.what)
    }
}

/// Per-kind state kept by a context: one value of each type, created with
/// [`Default`] on first use. A kind keeps its shared objects here under a type of its own
/// (a table of pipes, the second ends of socketpairs), so a new kind brings its state
/// without the contexts knowing it.
#[derive(Default)]
pub struct KindState {
    values: HashMap<TypeId, Box<dyn Any>>,
}

impl KindState {
    /// The value of type `T`, created with [`Default`] if there is none yet.
    pub fn get<T: Any + Default>(&mut self) -> &mut T {
        let slot = self
            .values
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match slot.downcast_mut::<T>() {
            Some(value) => value,
            None => unreachable!("each value is stored under its own TypeId"),
        }
    }

    /// The value of type `T`, if one was created.
    pub fn peek<T: Any>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>())?.downcast_ref::<T>()
    }
}

/// One descriptor of the tree being dumped, with the saved open file it holds: what a
/// kind whose file refers to other open files (an epoll instance to its targets) finds
/// their image ids by (see [`DumpSink::descriptors_of_inode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeDescriptor {
    /// A process holding the descriptor (for a descriptor table shared by several
    /// processes, the first of them).
    pub pid: i32,
    /// The descriptor number.
    pub fd: RawFd,
    /// The inode number of the file behind it (`ino:` of fdinfo, or `fstat`).
    pub ino: u64,
    /// The id of its open file in the image.
    pub file_id: u64,
}

/// What a PID or TID of the tree being dumped is (see [`DumpSink::task`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeTask {
    /// A process (its main thread).
    Process,
    /// A thread other than the main one of process `of`.
    Thread {
        /// The process it is a thread of.
        of: i32,
    },
    /// A zombie child of a process of the tree.
    Zombie,
}

/// Where kinds put what they save: the image being written, the options of the dump and
/// each kind's shared objects.
pub struct DumpSink<'w> {
    /// The image being written.
    pub writer: &'w mut ImageWriter,
    /// The options of this dump.
    pub options: DumpOptions,
    /// Each kind's shared objects (see [`DumpSink::state`]).
    state: KindState,
    /// Every descriptor of the tree, by inode (see [`DumpSink::descriptors_of_inode`]).
    descriptors: BTreeMap<u64, Vec<TreeDescriptor>>,
    /// What kinds left out on the options' word (see [`DumpSink::drop_state`]).
    dropped: Vec<Dropped>,
    /// What kinds changed in the live tree until the dump ends (see [`DumpSink::hold`]).
    holds: Vec<Box<dyn DumpHold>>,
    /// Where memory objects are saved (see [`DumpSink::save_object`]).
    objects: Option<&'w mut dyn ObjectSaver>,
    /// Every PID and TID of the tree (see [`DumpSink::task`]).
    tasks: BTreeMap<i32, TreeTask>,
    /// Open files met in flight (see [`DumpSink::file_id_of`]).
    in_flight: InFlight,
}

/// Open files met in a queue (passed with `SCM_RIGHTS` and not yet received) that no
/// descriptor of the tree holds: each gets an id after those of the tree's open files and
/// is saved like them, by the orchestration ([`DumpSink::take_in_flight`]).
#[derive(Default)]
struct InFlight {
    /// The next id to give.
    next_id: u64,
    /// Saved or to be saved, by id: a copy of each, to recognise it when met again.
    known: Vec<(u64, OwnedFd)>,
    /// Met and not yet handed to the orchestration.
    pending: Vec<(u64, LiveFile)>,
}

/// How a dump ended, for what a kind changed in the live tree while dumping it
/// ([`DumpHold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpEnd {
    /// The image is committed and the tree was killed while still stopped.
    Killed,
    /// The tree runs on: the dump failed, or it succeeded with `--leave-running`. What
    /// was changed must be undone before the tree runs.
    RunsOn,
}

/// Something a kind changed in the live tree while dumping it that must last until the
/// dump ends (a TCP connection in repair mode, so that killing the tree sends nothing,
/// and the firewall rule that holds the peer's packets): kept or undone then.
pub trait DumpHold {
    /// The dump ended as `end`: undo the change ([`DumpEnd::RunsOn`]) or keep what must
    /// outlive the tree ([`DumpEnd::Killed`]). Best effort: the tree's fate is decided.
    fn release(self: Box<Self>, end: DumpEnd);
}

/// The [`DumpHold`]s of one dump: released with [`DumpEnd::RunsOn`] when dropped, unless
/// [`Holds::release`] was called first (a dump that fails undoes them on its way out).
#[derive(Default)]
pub struct Holds(Vec<Box<dyn DumpHold>>);

impl Holds {
    /// Releases every hold, last taken first.
    pub fn release(mut self, end: DumpEnd) {
        while let Some(h) = self.0.pop() {
            h.release(end);
        }
    }
}

impl Drop for Holds {
    fn drop(&mut self) {
        while let Some(h) = self.0.pop() {
            h.release(DumpEnd::RunsOn);
        }
    }
}

impl<'w> DumpSink<'w> {
    /// A sink that writes into `writer`.
    pub fn new(writer: &'w mut ImageWriter, options: DumpOptions) -> Self {
        DumpSink {
            writer,
            options,
            state: KindState::default(),
            descriptors: BTreeMap::new(),
            dropped: Vec::new(),
            holds: Vec::new(),
            objects: None,
            tasks: BTreeMap::new(),
            in_flight: InFlight {
                next_id: 1,
                ..InFlight::default()
            },
        }
    }

    /// Lets the kinds save memory objects (the contents of a memfd or a deleted file,
    /// which mappings may share) through `saver`, the memory dump of the same image.
    pub fn set_object_saver(&mut self, saver: &'w mut dyn ObjectSaver) {
        self.objects = Some(saver);
    }

    /// Saves the memory object `file` (a read-only descriptor) is open on, once for the
    /// image however many descriptors and mappings name it; returns its id in
    /// `mem-objects.img`, or `None` when this sink saves no objects (the kind then keeps
    /// the contents itself).
    pub fn save_object(
        &mut self,
        pid: i32,
        file: &std::fs::File,
        kind: proto::MemObjectKind,
        name: &str,
    ) -> Result<Option<u64>, FileError> {
        match self.objects.as_deref_mut() {
            Some(saver) => Ok(Some(
                saver
                    .save_object(self.writer, pid, file, kind, name)
                    .map_err(Box::new)?,
            )),
            None => Ok(None),
        }
    }

    /// Tells the kinds every PID and TID of the tree, before any open file is dumped.
    pub fn set_tasks(&mut self, tasks: impl IntoIterator<Item = (i32, TreeTask)>) {
        self.tasks = tasks.into_iter().collect();
    }

    /// What `id` is in the tree being dumped, `None` when it is not in it (or the
    /// orchestration did not call [`DumpSink::set_tasks`]): for a kind whose file names a
    /// process (a pidfd), which a restore recreates only for processes it restores.
    pub fn task(&self, id: i32) -> Option<TreeTask> {
        self.tasks.get(&id).copied()
    }

    /// The processes of the tree being dumped (main threads, no zombies), by PID.
    pub fn processes(&self) -> impl Iterator<Item = i32> + '_ {
        self.tasks
            .iter()
            .filter(|(_, t)| **t == TreeTask::Process)
            .map(|(&pid, _)| pid)
    }

    /// Keeps `hold` until the dump ends (see [`DumpHold`]).
    pub fn hold(&mut self, hold: Box<dyn DumpHold>) {
        self.holds.push(hold);
    }

    /// Hands over every [`DumpHold`] taken so far, for the orchestration to release when
    /// it knows how the dump ends.
    pub fn take_holds(&mut self) -> Holds {
        Holds(std::mem::take(&mut self.holds))
    }

    /// The image id of `file`, an open file met in a queue (a descriptor passed with
    /// `SCM_RIGHTS` and installed in pipecr by peeking): the id of the tree's open file
    /// when a descriptor of the tree holds it (told by `kcmp`), else the id it got when
    /// it was met before, else a new id, and it is saved with the others
    /// ([`DumpSink::take_in_flight`]). `holder` names the queue, for messages.
    pub fn file_id_of(&mut self, file: OwnedFd, holder: &str) -> Result<u64, FileError> {
        use crate::sys::kcmp::{TargetFd, kcmp_files};
        use std::os::fd::AsRawFd;
        let me = std::process::id() as i32;
        let fail = |op, source: io::Error| FileError::Dump {
            pid: me,
            fd: file.as_raw_fd(),
            what: format!("a descriptor in flight in {holder}"),
            op,
            source,
        };
        let stat = rustix::fs::fstat(&file).map_err(|e| fail("fstat", e.into()))?;
        let pid_of = rustix::process::Pid::from_raw;
        let same = |pid: i32, fd: RawFd| match (pid_of(me), pid_of(pid)) {
            (Some(a), Some(b)) => kcmp_files(a, TargetFd(file.as_raw_fd()), b, TargetFd(fd))
                .is_ok_and(|o| o == std::cmp::Ordering::Equal),
            _ => false,
        };
        if let Some(d) = self
            .descriptors_of_inode(stat.st_ino)
            .iter()
            .find(|d| same(d.pid, d.fd))
        {
            return Ok(d.file_id);
        }
        if let Some((id, _)) = self
            .in_flight
            .known
            .iter()
            .find(|(_, f)| same(me, f.as_raw_fd()))
        {
            return Ok(*id);
        }
        let id = self.in_flight.next_id;
        self.in_flight.next_id += 1;
        let copy = file.try_clone().map_err(|e| fail("dup", e))?;
        let fd = file.as_raw_fd();
        let live = LiveFile::from_fetched(me, fd, file)?;
        self.in_flight.known.push((id, copy));
        self.in_flight.pending.push((id, live));
        Ok(id)
    }

    /// The open files met in flight since the last call, with their ids, for the
    /// orchestration to save like the others (saving them may meet more).
    pub fn take_in_flight(&mut self) -> Vec<(u64, LiveFile)> {
        std::mem::take(&mut self.in_flight.pending)
    }

    /// Records that a kind saved an open file without some of its state because the
    /// options asked for it, so that the caller can say so.
    pub fn drop_state(&mut self, dropped: Dropped) {
        self.dropped.push(dropped);
    }

    /// Everything recorded with [`DumpSink::drop_state`], in the order of the dump.
    pub fn dropped(&self) -> &[Dropped] {
        &self.dropped
    }

    /// Tells the kinds every descriptor of the tree and the open file it holds, before
    /// any open file is dumped (the orchestration numbers open files first).
    pub fn set_descriptors(&mut self, descriptors: impl IntoIterator<Item = TreeDescriptor>) {
        self.descriptors.clear();
        for d in descriptors {
            self.in_flight.next_id = self.in_flight.next_id.max(d.file_id + 1);
            self.descriptors.entry(d.ino).or_default().push(d);
        }
    }

    /// The descriptors of the tree whose file has inode number `ino`, with the image id
    /// of the open file each holds: the candidates for "which saved open file is this
    /// live file", which a kind then settles with `kcmp`. Empty when the orchestration
    /// did not call [`DumpSink::set_descriptors`].
    pub fn descriptors_of_inode(&self, ino: u64) -> &[TreeDescriptor] {
        self.descriptors.get(&ino).map_or(&[], Vec::as_slice)
    }

    /// Every descriptor of the tree (see [`DumpSink::set_descriptors`]), by inode: what
    /// a kind whose open files pair up across the tree looks through (a pseudo-terminal
    /// slave for its master).
    pub fn descriptors(&self) -> impl Iterator<Item = &TreeDescriptor> {
        self.descriptors.values().flatten()
    }

    /// The per-kind state of type `T` (created empty on first use).
    pub fn state<T: Any + Default>(&mut self) -> &mut T {
        self.state.get()
    }

    /// The per-kind state of type `T`, if a kind created it.
    pub fn peek_state<T: Any>(&self) -> Option<&T> {
        self.state.peek()
    }
}

/// What the restore of open files keeps between files: the image, each kind's shared
/// objects already created, and the open files already created, by id.
pub struct RestoreCtx<'i> {
    /// The image being restored.
    pub image: &'i Image,
    /// Each kind's shared objects (see [`RestoreCtx::state`]).
    state: KindState,
    /// Open files already created, by open-file id (see [`RestoreCtx::opened`]).
    opened: BTreeMap<u64, OwnedFd>,
    /// The descriptors of the process being rebuilt that are already installed: number
    /// -> open-file id (see [`RestoreCtx::installed`]).
    installed: BTreeMap<RawFd, u64>,
    /// Every open-file record of the image (`files.img`), read on first use by
    /// [`RestoreCtx::open_files`].
    open_files: Option<Vec<proto::OpenFile>>,
    /// The memory objects the restore created (see [`RestoreCtx::object`]).
    objects: Option<&'i ObjectFds>,
}

impl<'i> RestoreCtx<'i> {
    /// A context for restoring open files of `image`. Kinds read what they share from
    /// the image on first use; [`super::prepare_restore`] lets them check it up front.
    pub fn new(image: &'i Image) -> Result<Self, FileError> {
        Ok(RestoreCtx {
            image,
            state: KindState::default(),
            opened: BTreeMap::new(),
            installed: BTreeMap::new(),
            open_files: None,
            objects: None,
        })
    }

    /// Lends the kinds the memory objects the restore created (a memfd that is also
    /// mapped is opened from its object, so that the descriptor and the mappings are one
    /// file).
    pub fn set_objects(&mut self, objects: &'i ObjectFds) {
        self.objects = Some(objects);
    }

    /// The memory object `id` of `mem-objects.img`, as the restore created it.
    pub fn object(&self, id: u64) -> Option<BorrowedFd<'_>> {
        self.objects?.get(id)
    }

    /// The memory object that had device `dev` and inode `ino` at the dump.
    pub fn object_by_identity(&self, dev: u64, ino: u64) -> Option<BorrowedFd<'_>> {
        self.objects?.by_identity(dev, ino)
    }

    /// The per-kind state of type `T` (created empty on first use).
    pub fn state<T: Any + Default>(&mut self) -> &mut T {
        self.state.get()
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

    /// The open file `file_id`, when the orchestration already created it (in the calling
    /// process): what a kind restored at a later [`Stage`] finds its targets by.
    pub fn opened(&self, file_id: u64) -> Option<BorrowedFd<'_>> {
        self.opened.get(&file_id).map(|f| f.as_fd())
    }

    /// Records that open file `file_id` was created as `fd` (for [`RestoreCtx::opened`]).
    pub fn add_opened(&mut self, file_id: u64, fd: OwnedFd) {
        self.opened.insert(file_id, fd);
    }

    /// Hands back every open file recorded with [`RestoreCtx::add_opened`], by id.
    pub fn take_opened(&mut self) -> BTreeMap<u64, OwnedFd> {
        std::mem::take(&mut self.opened)
    }

    /// For a kind restored at [`Stage::AfterProcess`] or later, in the process being
    /// rebuilt: its descriptors already installed, number -> open-file id (an epoll
    /// instance finds its targets at these numbers). Empty at [`Stage::Open`].
    pub fn installed(&self) -> &BTreeMap<RawFd, u64> {
        &self.installed
    }

    /// Records the descriptors installed so far in the process being rebuilt (for
    /// [`RestoreCtx::installed`]).
    pub fn set_installed(&mut self, installed: BTreeMap<RawFd, u64>) {
        self.installed = installed;
    }
}

/// When a saved open file can be created, relative to the others of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// As soon as its turn comes: it needs nothing but the image (most kinds).
    Open,
    /// After every other descriptor of the process is installed, in that process: an
    /// epoll instance, say, which needs its targets' final descriptor numbers, or a
    /// process's own `/proc/PID/...` file, which needs the process.
    AfterProcess,
    /// After every process's descriptors exist: a unix socket carrying `SCM_RIGHTS`, say,
    /// which needs the files it queues.
    AfterTree,
    /// After the process's threads exist, by the restored process itself, through the
    /// call [`FileKind::in_process_open`] names: a pidfd of one of its threads, which
    /// exists only once the threads are created, after every descriptor.
    AfterThreads,
}

/// A system call that opens a saved open file again when made by the process that
/// holds it ([`Stage::AfterThreads`]): its number and arguments. It returns the new
/// descriptor, which the restore moves to the saved number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProcessOpen {
    /// The system call's number (`libc::SYS_*`).
    pub nr: i64,
    /// Its six arguments.
    pub args: [u64; 6],
}

/// The records of an image (or of a dump in progress) that questions about one saved
/// open file may need: the tree and its descriptor tables, every open file and every
/// pipe object.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    /// `tree.img`.
    pub processes: &'a [proto::Process],
    /// `fds.img`.
    pub tables: &'a [proto::FdTable],
    /// `files.img`.
    pub files: &'a [proto::OpenFile],
    /// `pipes.img`.
    pub pipes: &'a [proto::Pipe],
}

impl Saved<'_> {
    /// A process and descriptor number that hold open file `file_id` (the first
    /// process of `processes` whose table has it), if any.
    pub fn holder(&self, file_id: u64) -> Option<(i32, RawFd)> {
        self.processes.iter().find_map(|p| {
            let table = self.tables.iter().find(|t| t.id == p.fd_table)?;
            let d = table.descriptors.iter().find(|d| d.file_id == file_id)?;
            Some((p.pid, d.fd))
        })
    }

    /// The pipe object `id`, if the image holds it.
    pub fn pipe(&self, id: u64) -> Option<&proto::Pipe> {
        self.pipes.iter().find(|p| p.id == id)
    }
}

/// What a saved open file whose other side is outside the tree needs at restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// What it is, for people: "write end of `pipe:[1234]` (its reader is outside the
    /// tree)".
    pub what: String,
    /// Bytes that were waiting in it for the tree to read.
    pub pending: u64,
    /// Whether it is a terminal (substituted only when asked for or at fds 0-2;
    /// otherwise reopened by path).
    pub terminal: bool,
    /// The saved pipe, for a pipe end (its bytes are handed over at restore).
    pub pipe: Option<proto::Pipe>,
    /// For a socket whose peer had a name: how to connect a new socket to it, when the
    /// caller allows that.
    pub reconnect: Option<Reconnect>,
}

/// How a new socket can take the place of a saved one whose peer was outside the tree:
/// a unix socket of the same type, bound to the same name, connected to the peer's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub socket_type: i32,
    /// The peer's address (`sun_path` bytes; a leading NUL for an abstract name).
    pub peer_name: Vec<u8>,
    /// The socket's own address, empty when unnamed.
    pub name: Vec<u8>,
}

/// One open file of the image whose other side is outside the tree, with the
/// descriptors that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalEnd {
    /// The open file's id in the image.
    pub file_id: u64,
    /// Every (pid, fd) that held it, sorted.
    pub holders: Vec<(i32, RawFd)>,
    /// What it is, for people: "write end of `pipe:[1234]` (its reader is outside the
    /// tree)".
    pub what: String,
    /// Bytes that were waiting in it for the tree to read.
    pub pending: u64,
    /// Whether it is a terminal (substituted only when asked for or at fds 0-2).
    pub terminal: bool,
    /// The saved file status flags (for the access mode a path is opened with).
    pub flags: u32,
    /// The saved pipe, for a pipe end (its bytes are handed over at restore).
    pub pipe: Option<proto::Pipe>,
    /// For a socket whose peer had a name: how to connect again.
    pub reconnect: Option<Reconnect>,
}

/// How `pipecr show` presents one saved open file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// One line for people: "read end of pipe 1, 5 B pending".
    pub text: String,
    /// For an open file of a pipe object (an anonymous pipe's end, a FIFO open): which
    /// pipe, and how it uses it (`show` groups the pipe graph by it).
    pub pipe: Option<PipeUse>,
}

/// How an open file uses a pipe object of `pipes.img`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeUse {
    /// The pipe's id in `pipes.img`.
    pub pipe_id: u64,
    /// What the open file is to the pipe: "read end", "write end", "FIFO open".
    pub role: &'static str,
    /// It can read from the pipe.
    pub reads: bool,
    /// It can write into the pipe.
    pub writes: bool,
    /// The FIFO's path; `None` for an anonymous pipe.
    pub fifo: Option<String>,
}

/// One kind of open file: how to recognise, save and reopen it, and what it answers
/// about its saved records.
///
/// Required: [`name`](Self::name), [`claims`](Self::claims), [`dump`](Self::dump),
/// [`restores`](Self::restores), [`restore`](Self::restore) and
/// [`describe`](Self::describe); the rest have defaults that fit a kind that shares
/// nothing, is never external and is restored in the first stage.
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

    /// Called once before any open file is restored, to read and check what the kind
    /// shares across open files (a bad record then stops the restore before anything
    /// is created). Also called by [`super::preflight`] in the restoring process before
    /// any process exists, with a context of its own: what the restorer lacks (a
    /// capability, a network interface) is refused there.
    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let _ = ctx;
        Ok(())
    }

    /// When `file` can be created (see [`Stage`]).
    fn stage(&self, file: &proto::OpenFile) -> Stage {
        let _ = file;
        Stage::Open
    }

    /// For a `file` of [`Stage::AfterThreads`]: the call that opens it again when made
    /// by process `pid` (which holds it), whose threads are `threads` (its main one
    /// included). An error when that process cannot open it.
    fn in_process_open(
        &self,
        file: &proto::OpenFile,
        pid: i32,
        threads: &[i32],
    ) -> Result<InProcessOpen, FileError> {
        let _ = (pid, threads);
        Err(FileError::Invalid {
            id: file.id,
            reason: format!(
                "a {} is not opened by the restored process itself",
                self.name()
            ),
        })
    }

    /// For a `file` of [`Stage::AfterThreads`], once the call of
    /// [`FileKind::in_process_open`] opened it in the restored process (whose memory and
    /// threads are in place, and which runs nothing of its own yet): completes it from
    /// the restoring process, through `fd`, a copy of the new descriptor
    /// (`pidfd_getfd`). For state the opening call alone does not give back (the ranges
    /// registered on a userfaultfd). Nothing to do by default.
    fn complete_in_process(
        &self,
        file: &proto::OpenFile,
        fd: BorrowedFd<'_>,
    ) -> Result<(), FileError> {
        let _ = (file, fd);
        Ok(())
    }

    /// Opens `file` again in the calling process with its saved status flags and
    /// position. The descriptor returned is close-on-exec; the caller installs it.
    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError>;

    /// Called once for every open file created at [`Stage::Open`], after all of them
    /// exist (each reachable by id through [`RestoreCtx::opened`], its own included),
    /// in the process that created them and before any descriptor is installed: for a
    /// kind whose file refers to other open files (an epoll instance registers its
    /// targets here).
    fn complete(&self, file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let _ = (file, ctx);
        Ok(())
    }

    /// Called once per kind in the restoring process (pipecr) with the image's records,
    /// after every process of the tree is ready (stopped, descriptors installed) and just
    /// before they are released: for what must wait until the restore cannot fail any
    /// more (TCP connections leave repair mode, reached through a process holding them
    /// with [`Saved::holder`], and the firewall rule that held their packets is
    /// removed). An error fails the restore.
    fn before_release(&self, saved: &Saved<'_>) -> Result<(), FileError> {
        let _ = saved;
        Ok(())
    }

    /// Whether the saved `file` leads outside the tree (its peer, reader or writer is not
    /// in it, or it belongs to the session, as a terminal does), and what restore then
    /// needs; `None` when the image can recreate it alone.
    fn external(&self, file: &proto::OpenFile, saved: &Saved<'_>) -> Option<External> {
        let _ = (file, saved);
        None
    }

    /// The terminal device (`st_rdev`, as `/proc/PID/stat`'s `tty_nr` gives it) that the
    /// saved `file` stands for, with the session whose controlling terminal it was (0:
    /// none), when the restore recreates that terminal from the image: what a process
    /// whose controlling terminal it is gets it back through (one open file per terminal
    /// answers: a pseudo-terminal pair's master). `None` by default.
    fn terminal(&self, file: &proto::OpenFile) -> Option<(u64, i32)> {
        let _ = file;
        None
    }

    /// How `pipecr show` presents the saved `file`.
    fn describe(&self, file: &proto::OpenFile, saved: &Saved<'_>) -> Description;
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
    /// A file refers to an open file that no descriptor of the tree holds, which a
    /// restore could not recreate.
    #[error("pid {pid} fd {fd}: {what}")]
    Unreachable {
        /// The process.
        pid: i32,
        /// The descriptor.
        fd: RawFd,
        /// What is referred to and by what, in words.
        what: String,
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
    /// A file holds more data than may be copied into the image.
    #[error(
        "pid {pid} fd {fd} ({what}): {size} bytes of data is more than the {limit}-byte limit for file contents kept in the image (holes are not counted; --max-inline-file)"
    )]
    TooLarge {
        /// The process.
        pid: i32,
        /// The descriptor.
        fd: RawFd,
        /// What the file is.
        what: String,
        /// Its bytes of data (holes not counted), or its size where holes are not
        /// told apart.
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
    /// A lock the open file held is held by a process outside the tree now.
    #[error("open file {id}: cannot take its {lock} again: {holder} holds a conflicting lock")]
    LockHeld {
        /// The open file's id in the image.
        id: u64,
        /// The lock, in words.
        lock: String,
        /// Who holds the conflicting lock, in words (`pid 1234 (POSIX lock)`).
        holder: String,
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
    /// A memory object (the contents of a memfd or a deleted file) could not be saved.
    #[error(transparent)]
    Memory(#[from] Box<MemError>),
}
