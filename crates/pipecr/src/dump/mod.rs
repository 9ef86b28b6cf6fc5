//! Dump orchestration: live tree -> image. Knows the order of the steps and nothing about
//! any one kind of open file (those are [`crate::files::KINDS`]).
//!
//! 1. Freeze the tree ([`crate::freeze`]); from here on, any error resumes it untouched.
//! 2. List every descriptor of every process from `/proc` (number, close-on-exec,
//!    position, flags) and group the descriptors into open files: bucket by a cheap key
//!    (device, inode, position, flags), then order each bucket with `kcmp(KCMP_FILE)`, so
//!    sharing is decided in O(n log n) kcmp calls, never O(n²).
//! 3. Group processes into descriptor tables the same way (`KCMP_FILES`), so a table
//!    shared through `CLONE_FILES` is saved once; likewise filesystem contexts
//!    (`KCMP_FS`, `CLONE_FS`), address spaces (`KCMP_VM`: `clone(CLONE_VM)`) and
//!    signal-handler tables (`KCMP_SIGHAND`) shared by processes that are not threads of
//!    one another: each is recorded with the first process that has it, and an address
//!    space is saved once, with that process.
//! 4. Save each open file once: fetch it with `pidfd_getfd`, let its kind save it, close
//!    it. pipecr holds one borrowed descriptor at a time, whatever the tree's size.
//! 5. Let the kinds finish (shared records, external ends), write the tree and the
//!    descriptor tables.
//! 6. Save each process's registers, signals and limits ([`crate::task`]) and its
//!    address space ([`crate::mem`]); pages a child still shares copy-on-write with its
//!    parent are stored once. When the tree runs on, a copy-on-write snapshot of each
//!    process may be taken instead ([`DumpOptions::snapshots`], [`crate::snapshot`]),
//!    and memory read while stopped may go into a write-behind buffer allocated before
//!    the freeze ([`DumpOptions::write_behind`]).
//! 7. Resume the tree, then read the snapshots, write the held pages and commit the image
//!    (fsync + rename) while the tree already runs again; or, when the tree is not to run
//!    on, do all that first and kill it while it is still stopped.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipecr_image::proto;
use pipecr_image::{ImageError, ImageWriter};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags};

use crate::files::{
    self, Dropped, DumpOptions, DumpSink, ExternalEnd, FileError, LiveFile, Saved, TreeDescriptor,
    TreeTask,
};
use crate::freeze::{self, FreezeError, FrozenTree};
use crate::mem::{self, MemDumper, MemError, MemStats};
use crate::proc::{self, FdInfo, ProcError};
use crate::snapshot::{self, Snapshot};
use crate::sys::kcmp::{self, Shared, TargetFd};
use crate::task::{self, TaskError};

/// Why a dump failed. The tree has been resumed untouched whenever one is returned.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The tree could not be frozen.
    #[error(transparent)]
    Freeze(#[from] FreezeError),
    /// `/proc` could not be read.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// An address space could not be saved.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// The registers, signals or limits of a process could not be saved, or it holds
    /// something pipecr cannot save yet.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// An open file could not be saved.
    #[error(transparent)]
    File(#[from] FileError),
    /// System V IPC objects of the tree could not be saved.
    #[error(transparent)]
    Ipc(#[from] crate::ipc::IpcError),
    /// The image could not be written.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Two processes share something a restore cannot give back shared.
    #[error(
        "pid {pid} shares {what} with pid {with}; a restore would give each its own, so \
         the tree cannot be dumped this way"
    )]
    Shared {
        /// The later process.
        pid: i32,
        /// The process it shares with.
        with: i32,
        /// What they share.
        what: &'static str,
    },
    /// A process's controlling terminal is a pseudo-terminal of the tree that a restore
    /// could not give it back.
    #[error("pid {pid}: controlling terminal: {what}")]
    Terminal {
        /// The process.
        pid: i32,
        /// Why, in words.
        what: String,
    },
    /// A system call on a process failed.
    #[error("pid {pid}: {op} failed")]
    Sys {
        /// The process.
        pid: i32,
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// What a dump did, for people and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct DumpStats {
    /// The image directory written.
    pub dir: PathBuf,
    /// Processes saved.
    pub processes: usize,
    /// Threads stopped.
    pub threads: usize,
    /// Descriptors saved (over all descriptor tables).
    pub descriptors: usize,
    /// Distinct open files saved.
    pub open_files: usize,
    /// Pipe objects saved (anonymous pipes and FIFOs).
    pub pipes: usize,
    /// Bytes that were pending in those pipes.
    pub pipe_bytes: u64,
    /// Pages saved, shared and skipped (see [`MemStats`]).
    pub memory: MemStats,
    /// Processes whose memory was read from a copy-on-write snapshot after the tree
    /// resumed ([`DumpOptions::snapshots`]).
    pub snapshots: usize,
    /// The open files whose other side is outside the tree, with the descriptors that
    /// held them: restore needs a source for each (`--inherit-fd`).
    pub external: Vec<ExternalEnd>,
    /// State saved without part of it because the options allowed it (queued inotify
    /// events, [`DumpOptions::drop_inotify_events`]): one per open file, for the caller
    /// to tell the user.
    pub dropped: Vec<Dropped>,
    /// System V IPC objects saved (`ipc.img`).
    pub ipc_objects: usize,
    /// How long the tree was stopped.
    pub frozen: Duration,
    /// The whole dump, commit included.
    pub total: Duration,
    /// How long each step took, in the order they ran: `freeze`, `files` (listing,
    /// grouping and saving the open files), `core` (registers, signals, limits), `memory`
    /// (address spaces read while stopped), `snapshots` (read after the tree resumed),
    /// `memory-write` (pages held back, written after the tree resumed), `commit`.
    pub stages: Vec<(&'static str, Duration)>,
}

impl DumpStats {
    /// Adds `took` to step `name` (appended on first use, so the order is the order of
    /// first use).
    fn stage(&mut self, name: &'static str, took: Duration) {
        tracing::debug!(
            stage = name,
            ms = took.as_secs_f64() * 1e3,
            "dump step done"
        );
        match self.stages.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t += took,
            None => self.stages.push((name, took)),
        }
    }

    /// The `stats.img` record of this dump so far, `frozen` and `total` as given.
    fn record(&self, frozen: Duration, total: Duration) -> proto::DumpStats {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        proto::DumpStats {
            frozen_ns: ns(frozen),
            total_ns: ns(total),
            memory_read_ns: ns(self.memory.read_time),
            processes: self.processes as u64,
            threads: self.threads as u64,
            descriptors: self.descriptors as u64,
            open_files: self.open_files as u64,
            pipes: self.pipes as u64,
            pipe_bytes: self.pipe_bytes,
            pages_stored: self.memory.pages_stored,
            pages_reused: self.memory.pages_reused,
            pages_zero: self.memory.pages_zero,
            page_bytes: self.memory.pages_stored * mem::PAGE_SIZE,
            snapshots: self.snapshots as u64,
            stages: self
                .stages
                .iter()
                .map(|&(name, took)| proto::StageTime {
                    name: name.to_owned(),
                    ns: ns(took),
                })
                .collect(),
        }
    }
}

/// One descriptor of one process, as listed before grouping.
#[derive(Debug, Clone)]
struct Slot {
    pid: i32,
    fd: RawFd,
    info: FdInfo,
    /// (mount id, inode) of the file behind the descriptor, or (device, inode) where
    /// fdinfo lacks the inode; either way equal for descriptors of one open file.
    object: (u64, u64),
}

impl Slot {
    /// Descriptors that share an open file agree on this key; others rarely do.
    fn key(&self) -> (u64, u64, u64, u32) {
        (self.object.0, self.object.1, self.info.pos, self.info.flags)
    }
}

/// Dumps the tree rooted at `root` into a new image directory `dir` (absent, or an empty
/// directory that the image replaces), then lets the tree run on or kills it
/// ([`DumpOptions::leave_running`]). On error, the tree is resumed untouched and `dir` is
/// left as it was (absent or empty).
///
/// Every step is logged through `tracing` (a `dump` span with the root's PID, a
/// `process` span per process, an event per open file with its PID, fd and kind), and
/// the image gets a `stats.img` with the timings and counts (also returned).
///
/// # Example
///
/// Dump a child process; it is killed once the image is written (see
/// [`crate::restore::process::restore_tree`] to bring it back). Needs `CAP_SYS_PTRACE`
/// (root).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::process::{Command, Stdio};
/// use pipecr::files::DumpOptions;
///
/// let mut child = Command::new("sleep")
///     .arg("100")
///     .stdin(Stdio::null())
///     .stdout(Stdio::null())
///     .stderr(Stdio::null())
///     .spawn()?;
/// // Killed once the image is written (the library's default lets it run on).
/// let kill_after = DumpOptions { leave_running: false, ..DumpOptions::default() };
/// let dir = tempfile::tempdir()?;
/// let image = dir.path().join("img");
/// let stats = pipecr::dump::dump_tree(child.id() as i32, &image, &kill_after)?;
/// assert_eq!((stats.processes, stats.threads), (1, 1));
/// assert!(stats.memory.pages_stored > 0);
/// assert!(image.join(pipecr_image::STATS).exists());
/// // The dump killed it.
/// assert!(!child.wait()?.success());
/// # Ok(())
/// # }
/// ```
pub fn dump_tree(root: i32, dir: &Path, options: &DumpOptions) -> Result<DumpStats, DumpError> {
    let _span = tracing::info_span!("dump", root).entered();
    tracing::info!(root, dir = %dir.display(), "dump starts");
    let start = Instant::now();
    remove_abandoned_temp_dirs(dir);
    let mut writer = ImageWriter::create(dir, crate::pipe::image_meta(pipecr_image::CONTENT_TREE))?;
    // The write-behind buffer is allocated and touched before the freeze (page faults
    // are slow, and the tree should not wait for them), sized for the processes that
    // will be read while stopped.
    let snapshots = options.leave_running && options.snapshots;
    let mem = if options.leave_running && options.write_behind {
        let mut direct = unfrozen_tree(root);
        direct.retain(|&pid| !(snapshots && snapshot::eligible(pid)));
        MemDumper::with_write_behind(mem::write_behind_size(&direct))
    } else {
        MemDumper::new()
    };
    let freezing = Instant::now();
    let (tree, tracer_scan) = freeze::freeze_with_tracer_scan(root)?;
    let frozen_at = Instant::now();
    let mut stats = DumpStats::default();
    stats.stage("freeze", frozen_at - freezing);
    tracing::info!(
        processes = tree.processes().len(),
        threads = tree.thread_count(),
        "tree frozen"
    );
    if tracing::enabled!(target: mem::PROGRESS, tracing::Level::INFO) {
        let pids: Vec<i32> = tree.processes().iter().map(|p| p.pid).collect();
        tracing::info!(target: mem::PROGRESS, total = mem::saved_size_estimate(&pids));
    }
    // Dropped before `tree` on every error path: what kinds changed in the live tree is
    // undone before it resumes.
    let (memory, holds, ipc) = save_tree(&tree, &mut writer, options, mem, snapshots, &mut stats)?;
    // The machine's tracers were scanned while the tree was saved.
    tracer_scan.check(&tree)?;
    let committing;
    if options.leave_running {
        holds.release(files::DumpEnd::RunsOn);
        // What is left to read is in snapshots, and what is left to write is in memory:
        // let the tree run while it is read, written and made durable.
        tree.resume();
        stats.frozen = frozen_at.elapsed();
        tracing::info!(ms = stats.frozen.as_secs_f64() * 1e3, "tree resumed");
        stats.memory = memory.finish(&mut writer, &mut stats)?;
        let record = stats.record(stats.frozen, start.elapsed());
        writer.write_records(pipecr_image::STATS, &[record])?;
        committing = Instant::now();
        stats.dir = writer.commit()?;
    } else {
        // Only a durable image may replace the tree; if the commit fails, dropping
        // `tree` resumes it.
        stats.memory = memory.finish(&mut writer, &mut stats)?;
        let record = stats.record(frozen_at.elapsed(), start.elapsed());
        writer.write_records(pipecr_image::STATS, &[record])?;
        committing = Instant::now();
        stats.dir = writer.commit()?;
        tree.kill();
        holds.release(files::DumpEnd::Killed);
        // The tree's System V IPC objects went into the image with it: they go too, so
        // that a restore can create them again with their ids.
        crate::ipc::remove(&ipc);
        stats.frozen = frozen_at.elapsed();
        tracing::info!(ms = stats.frozen.as_secs_f64() * 1e3, "tree killed");
    }
    stats.stage("commit", committing.elapsed());
    stats.total = start.elapsed();
    tracing::info!(
        dir = %stats.dir.display(),
        ms = stats.total.as_secs_f64() * 1e3,
        "dump done"
    );
    Ok(stats)
}

/// Removes `DIR.tmp-PID-N` directories left by dumps into `dir` that were killed before
/// they could commit (a SIGKILL leaves no chance to clean up). Only those whose PID no
/// longer exists go: a live PID may be another dump writing right now. Best effort: a
/// leftover that cannot be removed is no reason to fail this dump.
fn remove_abandoned_temp_dirs(dir: &Path) {
    let (Some(parent), Some(base)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let mut prefix = base.to_os_string();
    prefix.push(".tmp-");
    let Some(prefix) = prefix.to_str() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if matches!(proc::stat(owner), Err(ProcError::NoSuchProcess { .. })) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The processes of the tree under `root` as they are now, without stopping anything:
/// what the write-behind buffer is sized from. Processes that come or go meanwhile only
/// make the estimate less exact.
fn unfrozen_tree(root: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if pids.contains(&pid) {
            continue;
        }
        pids.push(pid);
        for tid in proc::threads(pid).unwrap_or_default() {
            queue.extend(proc::children(pid, tid).unwrap_or_default());
        }
    }
    pids
}

fn save_tree(
    tree: &FrozenTree,
    writer: &mut ImageWriter,
    options: &DumpOptions,
    mut mem: MemDumper,
    snapshots: bool,
    stats: &mut DumpStats,
) -> Result<(MemoryLeft, files::Holds, Vec<proto::IpcObject>), DumpError> {
    let files_started = Instant::now();
    let processes = tree.processes();
    let pids: Vec<i32> = processes.iter().map(|p| p.pid).collect();
    let tables = group_shared(pids.clone(), Shared::Files)?;
    let fs = group_shared(pids.clone(), Shared::Fs)?;
    let vm = group_shared(pids.clone(), Shared::Vm)?;
    let sighand = group_shared(pids, Shared::Sighand)?;
    refuse_shared(processes, [&tables, &fs, &vm, &sighand], options)?;

    // Every descriptor of every distinct table: processes that share a table
    // (CLONE_FILES) map to one leader, listed once.
    let leaders: std::collections::BTreeSet<i32> = tables.values().copied().collect();
    let mut slots = Vec::new();
    for &leader in &leaders {
        for fd in proc::fds(leader)? {
            let info = proc::fdinfo(leader, fd)?;
            // fdinfo's mount id and inode are shared by every descriptor of one open
            // file, and are already read; stat the /proc link only on kernels without
            // an `ino:` line.
            let object = match info.ino {
                Some(ino) => (info.mnt_id, ino),
                None => {
                    use std::os::unix::fs::MetadataExt;
                    let meta =
                        std::fs::metadata(format!("/proc/{leader}/fd/{fd}")).map_err(|source| {
                            DumpError::Sys {
                                pid: leader,
                                op: "stat /proc/PID/fd/N",
                                source,
                            }
                        })?;
                    (meta.dev(), meta.ino())
                }
            };
            slots.push(Slot {
                pid: leader,
                fd,
                info,
                object,
            });
        }
    }
    let groups = group_open_files(&mut slots)?;

    // Save each open file once, holding one borrowed descriptor at a time.
    // Open files are numbered first, so a kind whose file refers to others (an epoll
    // instance to its targets) can find their ids among the tree's descriptors.
    let mut file_of_slot = vec![0u64; slots.len()];
    for (index, group) in groups.iter().enumerate() {
        for &s in group {
            file_of_slot[s] = index as u64 + 1;
        }
    }
    let mut sink = DumpSink::new(writer, options.clone());
    // The bytes of memfds and deleted files are memory objects, which mappings of the
    // same files share: saved once, by the memory dump.
    sink.set_object_saver(&mut mem);
    sink.set_tasks(
        processes
            .iter()
            .flat_map(|p| {
                p.threads.iter().map(move |&tid| {
                    let task = if tid == p.pid {
                        TreeTask::Process
                    } else {
                        TreeTask::Thread { of: p.pid }
                    };
                    (tid, task)
                })
            })
            .chain(tree.zombies().iter().map(|z| (z.pid, TreeTask::Zombie))),
    );
    sink.set_descriptors(
        slots
            .iter()
            .zip(&file_of_slot)
            .map(|(slot, &file_id)| TreeDescriptor {
                pid: slot.pid,
                fd: slot.fd,
                ino: slot.object.1,
                file_id,
            }),
    );
    let mut pidfds: BTreeMap<i32, OwnedFd> = BTreeMap::new();
    let mut open_files = Vec::with_capacity(groups.len());
    for (index, group) in groups.iter().enumerate() {
        let id = index as u64 + 1;
        let first = &slots[group[0]];
        let live = fetch(&mut pidfds, first)?;
        open_files.push(files::dump_file(id, &live, &mut sink)?);
    }
    drop(pidfds);
    // Open files met in flight in a queue (passed with SCM_RIGHTS, not yet received) that
    // no descriptor holds: saved the same way, under the ids the kinds gave them; saving
    // one may meet more (a socket queued in a socket).
    loop {
        let batch = sink.take_in_flight();
        if batch.is_empty() {
            break;
        }
        for (id, live) in batch {
            open_files.push(files::dump_file(id, &live, &mut sink)?);
        }
    }
    open_files.sort_by_key(|f| f.id);
    files::finish_dump(&mut open_files, &mut sink)?;
    let pipe_records = files::pipe_records(&sink);
    let pipes = pipe_records.len();
    let pipe_bytes = pipe_records
        .iter()
        .map(|p| p.data.as_ref().map_or(0, |d| d.length))
        .sum();

    // Descriptor tables and processes.
    let mut fd_tables: BTreeMap<i32, proto::FdTable> = BTreeMap::new();
    let table_ids: BTreeMap<i32, u64> = tables
        .values()
        .enumerate()
        .map(|(i, &leader)| (leader, i as u64 + 1))
        .collect();
    for (s, slot) in slots.iter().enumerate() {
        let table = fd_tables.entry(slot.pid).or_insert_with(|| proto::FdTable {
            id: table_ids[&slot.pid],
            ..Default::default()
        });
        table.descriptors.push(proto::Descriptor {
            fd: slot.fd,
            file_id: file_of_slot[s],
            cloexec: slot.info.cloexec,
        });
    }
    let mut records = Vec::with_capacity(processes.len());
    for p in processes {
        let leader = tables[&p.pid];
        let table = fd_tables.entry(leader).or_insert_with(|| proto::FdTable {
            id: table_ids[&leader],
            ..Default::default()
        });
        if leader != p.pid {
            table.shared = true;
        }
        records.push(proto::Process {
            pid: p.pid,
            ppid: p.ppid,
            pgid: p.pgid,
            sid: p.sid,
            comm: p.comm.clone(),
            threads: p.threads.clone(),
            fd_table: table.id,
            shares_fs_with: shared_with(&fs, p.pid),
            shares_vm_with: shared_with(&vm, p.pid),
            shares_sighand_with: shared_with(&sighand, p.pid),
            // Set by `controlling_terminals` once every record exists.
            ctty_file_id: 0,
            foreground_pgrp: 0,
            // Its children that exited and are not reaped: only their wait status is left.
            zombies: tree
                .zombies()
                .iter()
                .filter(|z| z.ppid == p.pid)
                .map(|z| proto::Zombie {
                    pid: z.pid,
                    pgid: z.pgid,
                    sid: z.sid,
                    exit_status: z.exit_status,
                })
                .collect(),
        });
    }
    controlling_terminals(&mut records, &open_files)?;
    let mut fd_tables: Vec<proto::FdTable> = fd_tables.into_values().collect();
    fd_tables.sort_by_key(|t| t.id);
    for t in &mut fd_tables {
        t.descriptors.sort_by_key(|d| d.fd);
    }
    let descriptors = fd_tables.iter().map(|t| t.descriptors.len()).sum();
    let external = files::external_ends(&Saved {
        processes: &records,
        tables: &fd_tables,
        files: &open_files,
        pipes: &pipe_records,
    });
    let dropped = sink.dropped().to_vec();
    let holds = sink.take_holds();
    drop(sink);
    writer.write_records(pipecr_image::FILES, &open_files)?;
    writer.write_records(pipecr_image::FDS, &fd_tables)?;
    writer.write_records(pipecr_image::TREE, &records)?;
    let pids: Vec<i32> = processes.iter().map(|p| p.pid).collect();
    let ipc = crate::ipc::dump(&pids, writer)?;
    let posix_locks = posix_locks_of(&slots, &records)?;
    stats.stage("files", files_started.elapsed());
    // An address space shared with an earlier process is that process's to save.
    let vm_sharers: Vec<i32> = records
        .iter()
        .filter(|r| r.shares_vm_with != 0)
        .map(|r| r.pid)
        .collect();
    let memory = save_processes(
        tree,
        writer,
        options.read_handlers,
        mem,
        snapshots,
        FromDescriptors {
            posix_locks,
            vm_sharers: &vm_sharers,
        },
        stats,
    )?;
    stats.processes = processes.len();
    stats.threads = tree.thread_count();
    stats.descriptors = descriptors;
    stats.open_files = open_files.len();
    stats.pipes = pipes;
    stats.pipe_bytes = pipe_bytes;
    stats.snapshots = memory.snapshots.len();
    stats.external = external;
    stats.dropped = dropped;
    stats.ipc_objects = ipc.len();
    Ok((memory, holds, ipc))
}

/// Saves what each process is beyond its descriptors: its CPU and signal state
/// ([`crate::task`], `core.img`) and, unless `snapshots` lets it wait for a snapshot of
/// the process ([`crate::snapshot`]), its address space ([`crate::mem`]). Must run on
/// the thread that froze the tree. The processes in `vm_sharers` share the address space
/// of an earlier one, saved with it: theirs get an empty record.
fn save_processes(
    tree: &FrozenTree,
    writer: &mut ImageWriter,
    read_handlers: bool,
    mut mem: MemDumper,
    snapshots: bool,
    shared: FromDescriptors<'_>,
    stats: &mut DumpStats,
) -> Result<MemoryLeft, DumpError> {
    let FromDescriptors {
        mut posix_locks,
        vm_sharers,
    } = shared;
    let processes = tree.processes();
    let mut cores = Vec::with_capacity(processes.len());
    let mut mms = Vec::with_capacity(processes.len());
    let mut taken = Vec::new();
    for (i, p) in processes.iter().enumerate() {
        let _span = tracing::debug_span!("process", pid = p.pid).entered();
        tracing::debug!(pid = p.pid, comm = %p.comm, threads = p.threads.len(), "saving");
        let started = Instant::now();
        // The state first: it refuses what cannot be saved before any page is read.
        let children: Vec<i32> = processes
            .iter()
            .filter(|c| c.ppid == p.pid && c.pid != p.pid)
            .map(|c| c.pid)
            .collect();
        let mut core = task::dump_core_in_tree(p, read_handlers, &children)?;
        core.posix_locks = posix_locks.remove(&p.pid).unwrap_or_default();
        for thread in &mut core.threads {
            // A signal the freeze caught in delivery is in no kernel queue any more:
            // without this it would be lost in the image (the live tree gets it back).
            if let Some(signal) = tree.intercepted_signal(thread.tid) {
                thread
                    .pending
                    .push(task::intercepted_siginfo(p.pid, thread.tid, signal)?);
            }
        }
        cores.push(core);
        let core_done = Instant::now();
        stats.stage("core", core_done - started);
        if vm_sharers.contains(&p.pid) {
            mms.push(Some(proto::Mm {
                pid: p.pid,
                ..Default::default()
            }));
            continue;
        }
        // A process that cannot be forked exactly, or whose fork fails, is read now.
        let snapshot = (snapshots && snapshot::eligible(p.pid))
            .then(|| Snapshot::take(p).ok())
            .flatten();
        match snapshot {
            Some(s) => {
                tracing::debug!(pid = p.pid, snapshot = s.pid(), "memory left to a snapshot");
                mms.push(None);
                taken.push((i, s));
            }
            None => mms.push(Some(mem.dump_process(p.pid, writer)?)),
        }
        stats.stage("memory", core_done.elapsed());
    }
    writer.write_records(pipecr_image::CORE, &cores)?;
    Ok(MemoryLeft {
        mem,
        pids: processes.iter().map(|p| p.pid).collect(),
        mms,
        snapshots: taken,
    })
}

/// Records each process's controlling terminal when it is one the image recreates (a
/// pseudo-terminal pair of the tree, [`files::terminal_file`]), and its session leader's
/// foreground process group. Refused when a restore could not give it back: a member
/// whose session leader is not in the tree, or whose terminal is not its leader's (none
/// included), or a foreground group with no process in the tree.
fn controlling_terminals(
    records: &mut [proto::Process],
    open_files: &[proto::OpenFile],
) -> Result<(), DumpError> {
    let mut foreground = BTreeMap::new();
    for r in records.iter_mut() {
        let stat = proc::stat(r.pid)?;
        if stat.tty_nr == 0 {
            continue;
        }
        if let Some(id) = files::terminal_file(open_files, stat.tty_nr, stat.sid) {
            r.ctty_file_id = id;
            if r.sid == r.pid && stat.tpgid > 0 {
                foreground.insert(r.pid, stat.tpgid);
            }
        }
    }
    let groups: std::collections::BTreeSet<i32> = records.iter().map(|r| r.pgid).collect();
    let leaders: BTreeMap<i32, u64> = records
        .iter()
        .filter(|r| r.sid == r.pid)
        .map(|r| (r.pid, r.ctty_file_id))
        .collect();
    for r in records.iter_mut() {
        if r.ctty_file_id == 0 {
            // A member that left the terminal its session leader has (TIOCNOTTY) would
            // inherit it again from its restored parent.
            if let Some(&of_leader) = leaders.get(&r.sid)
                && of_leader != 0
                && r.sid != r.pid
            {
                return Err(DumpError::Terminal {
                    pid: r.pid,
                    what: format!(
                        "none, while its session leader {} has a pseudo-terminal of the tree (open file {of_leader})",
                        r.sid
                    ),
                });
            }
            continue;
        }
        match leaders.get(&r.sid) {
            None => {
                return Err(DumpError::Terminal {
                    pid: r.pid,
                    what: format!(
                        "a pseudo-terminal of the tree (open file {}), of session {} whose leader is not in the tree",
                        r.ctty_file_id, r.sid
                    ),
                });
            }
            Some(&of_leader) if of_leader != r.ctty_file_id => {
                return Err(DumpError::Terminal {
                    pid: r.pid,
                    what: format!(
                        "open file {}, not its session leader {}'s (a member that changed terminal)",
                        r.ctty_file_id, r.sid
                    ),
                });
            }
            Some(_) => {}
        }
        if let Some(&fg) = foreground.get(&r.pid) {
            if !groups.contains(&fg) {
                return Err(DumpError::Terminal {
                    pid: r.pid,
                    what: format!("its foreground process group {fg} has no process in the tree"),
                });
            }
            r.foreground_pgrp = fg;
        }
    }
    Ok(())
}

/// The POSIX record locks the tree holds, by holder (see [`files::locks`]): each lock
/// once, with the first descriptor of its table it shows on. A lock whose holder is not a
/// process of the tree (a descriptor table shared with one outside it) is refused.
fn posix_locks_of(
    slots: &[Slot],
    processes: &[proto::Process],
) -> Result<BTreeMap<i32, Vec<proto::FileLock>>, DumpError> {
    let mut out: BTreeMap<i32, Vec<proto::FileLock>> = BTreeMap::new();
    let mut ordered: Vec<&Slot> = slots.iter().collect();
    ordered.sort_by_key(|s| (s.pid, s.fd));
    for slot in ordered {
        for (holder, lock) in files::locks::posix_locks(&slot.info, slot.fd) {
            if !processes.iter().any(|p| p.pid == holder) {
                return Err(DumpError::File(FileError::Unsupported {
                    pid: slot.pid,
                    fd: slot.fd,
                    kind: format!(
                        "a file with a POSIX lock held by pid {holder}, outside the tree"
                    ),
                }));
            }
            let held = out.entry(holder).or_default();
            // The same lock seen again through another descriptor of the same open file.
            let key = |l: &proto::FileLock, object| (object, l.start, l.len, l.write);
            let seen = held.iter().any(|l| {
                key(l, objects_of(slots, slot.pid, l.fd)) == key(&lock, Some(slot.object))
            });
            if !seen {
                held.push(lock);
            }
        }
    }
    Ok(out)
}

/// The (mount, inode) of descriptor `fd` of `pid`, among `slots`.
fn objects_of(slots: &[Slot], pid: i32, fd: RawFd) -> Option<(u64, u64)> {
    slots
        .iter()
        .find(|s| s.pid == pid && s.fd == fd)
        .map(|s| s.object)
}

/// What the dump of the descriptors tells the saving of each process: the POSIX locks
/// each holds, and the processes whose address space an earlier one saves.
struct FromDescriptors<'a> {
    posix_locks: BTreeMap<i32, Vec<proto::FileLock>>,
    vm_sharers: &'a [i32],
}

/// The address spaces a dump has yet to finish once the tree may run: those to read
/// from snapshots, and the pages read but not yet written.
struct MemoryLeft {
    mem: MemDumper,
    /// The processes, in tree order, and their records so far (`None`: in a snapshot).
    pids: Vec<i32>,
    mms: Vec<Option<proto::Mm>>,
    /// Snapshots, by index in `pids`.
    snapshots: Vec<(usize, Snapshot)>,
}

impl MemoryLeft {
    /// Reads each snapshot (and kills it), writes the held pages and the memory records.
    fn finish(
        mut self,
        writer: &mut ImageWriter,
        dump: &mut DumpStats,
    ) -> Result<MemStats, DumpError> {
        for (i, snapshot) in std::mem::take(&mut self.snapshots) {
            let started = Instant::now();
            let mm = self
                .mem
                .dump_process_from(self.pids[i], snapshot.pid(), writer)?;
            self.mms[i] = Some(mm);
            dump.stage("snapshots", started.elapsed());
        }
        let (objects, stats, held) = self.mem.finish();
        let started = Instant::now();
        let bytes = held.bytes();
        held.write(writer)?;
        if bytes > 0 {
            dump.stage("memory-write", started.elapsed());
        }
        let mms: Vec<proto::Mm> = self.mms.into_iter().flatten().collect();
        writer.write_records(pipecr_image::MM, &mms)?;
        writer.write_records(pipecr_image::MEM_OBJECTS, &objects)?;
        Ok(stats)
    }
}

/// Fetches descriptor `fd` of `pid` through a pidfd opened once per process.
fn fetch(pidfds: &mut BTreeMap<i32, OwnedFd>, slot: &Slot) -> Result<LiveFile, DumpError> {
    let (pid, fd) = (slot.pid, slot.fd);
    let sys = |op, source: rustix::io::Errno| DumpError::Sys {
        pid,
        op,
        source: source.into(),
    };
    let pidfd = match pidfds.entry(pid) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            let target =
                Pid::from_raw(pid).ok_or(DumpError::Proc(ProcError::NoSuchProcess { pid }))?;
            let pidfd = rustix::process::pidfd_open(target, PidfdFlags::empty())
                .map_err(|e| sys("pidfd_open", e))?;
            e.insert(pidfd)
        }
    };
    let file = rustix::process::pidfd_getfd(&*pidfd, fd, PidfdGetfdFlags::empty())
        .map_err(|e| sys("pidfd_getfd", e))?;
    Ok(LiveFile::with_info(pid, fd, file, slot.info.clone())?)
}

/// Refuses what restore cannot bring back: anything the root shares with its parent,
/// outside the tree; a signal-handler table shared without the address space going with
/// it (the kernel allows none); and, when the tree is to be
/// killed after the dump, a descriptor table (`CLONE_FILES`), filesystem context
/// (`CLONE_FS`), address space (`CLONE_VM`) or signal-handler table (`CLONE_SIGHAND`)
/// that a process shares with an earlier one but not with its parent (a restored process
/// can only be given its parent's). A `--leave-running` image records those, and restore
/// refuses them. `groups` are the leaders of descriptor tables, filesystem contexts,
/// address spaces and signal-handler tables, in that order.
fn refuse_shared(
    processes: &[crate::freeze::FrozenProcess],
    groups: [&BTreeMap<i32, i32>; 4],
    options: &DumpOptions,
) -> Result<(), DumpError> {
    let [tables, fs, vm, sighand] = groups;
    let pids: Vec<i32> = processes.iter().map(|p| p.pid).collect();
    for p in processes.iter().filter(|p| !pids.contains(&p.ppid)) {
        // A root sharing with its parent, outside the tree: a restored root is the
        // restorer's child and can be given nothing of that parent's.
        let (Some(me), Some(parent)) = (Pid::from_raw(p.pid), Pid::from_raw(p.ppid)) else {
            continue;
        };
        for (what, said) in [
            (Shared::Vm, "its address space (CLONE_VM) outside the tree"),
            (
                Shared::Sighand,
                "its signal handlers (CLONE_SIGHAND) outside the tree",
            ),
            (
                Shared::Files,
                "its descriptor table (CLONE_FILES) outside the tree",
            ),
            (
                Shared::Fs,
                "its filesystem context (CLONE_FS) outside the tree",
            ),
        ] {
            // A parent that cannot be compared (gone, or not ours to look at) shares
            // nothing we could save either way.
            if kcmp::kcmp_shared(me, parent, what).is_ok_and(|o| o == Ordering::Equal) {
                return Err(DumpError::Shared {
                    pid: p.pid,
                    with: p.ppid,
                    what: said,
                });
            }
        }
    }
    for p in processes {
        let leader = |groups: &BTreeMap<i32, i32>| groups.get(&p.pid).copied().unwrap_or(p.pid);
        if leader(sighand) != p.pid && leader(vm) != leader(sighand) {
            return Err(DumpError::Shared {
                pid: p.pid,
                with: leader(sighand),
                what: "its signal handlers (CLONE_SIGHAND) without its address space",
            });
        }
        if options.leave_running {
            continue;
        }
        let parent = |groups: &BTreeMap<i32, i32>| groups.get(&p.ppid).copied();
        for (groups, what) in [
            (
                tables,
                "its descriptor table (CLONE_FILES; not through its parent)",
            ),
            (
                fs,
                "its filesystem context (CLONE_FS; not through its parent)",
            ),
            (vm, "its address space (CLONE_VM; not through its parent)"),
            (
                sighand,
                "its signal handlers (CLONE_SIGHAND; not through its parent)",
            ),
        ] {
            if leader(groups) != p.pid && parent(groups) != Some(leader(groups)) {
                return Err(DumpError::Shared {
                    pid: p.pid,
                    with: leader(groups),
                    what,
                });
            }
        }
    }
    Ok(())
}

/// The leader of `pid`'s group in `groups` ([`group_shared`]), or 0 when that is `pid`
/// itself: what the image records.
fn shared_with(groups: &BTreeMap<i32, i32>, pid: i32) -> i32 {
    groups.get(&pid).copied().filter(|&l| l != pid).unwrap_or(0)
}

/// Maps every pid to the pid of the first process (in tree order) that shares its `what`
/// (descriptor table, filesystem context, ...), with `kcmp` as the order.
fn group_shared(pids: Vec<i32>, what: Shared) -> Result<BTreeMap<i32, i32>, DumpError> {
    let op = match what {
        Shared::Vm => "kcmp(KCMP_VM)",
        Shared::Files => "kcmp(KCMP_FILES)",
        Shared::Fs => "kcmp(KCMP_FS)",
        Shared::Sighand => "kcmp(KCMP_SIGHAND)",
        Shared::Sysvsem => "kcmp(KCMP_SYSVSEM)",
    };
    let mut order: Vec<(usize, i32)> = pids.iter().copied().enumerate().collect();
    let mut failure = None;
    order.sort_by(|a, b| {
        if a.1 == b.1 {
            return Ordering::Equal;
        }
        let (Some(pa), Some(pb)) = (Pid::from_raw(a.1), Pid::from_raw(b.1)) else {
            return Ordering::Equal;
        };
        kcmp::kcmp_shared(pa, pb, what)
            .map(|o| o.then(a.0.cmp(&b.0)))
            .unwrap_or_else(|e| {
                failure.get_or_insert((a.1, e));
                a.0.cmp(&b.0)
            })
    });
    if let Some((pid, source)) = failure {
        return Err(DumpError::Sys { pid, op, source });
    }
    // Within a run of equal objects the order is tree order: the first is the leader.
    let mut leaders = BTreeMap::new();
    let mut i = 0;
    while i < order.len() {
        let leader = order[i].1;
        let mut j = i;
        while j < order.len() {
            let same = j == i || {
                let (pa, pb) = (Pid::from_raw(leader), Pid::from_raw(order[j].1));
                match (pa, pb) {
                    (Some(pa), Some(pb)) => {
                        kcmp::kcmp_shared(pa, pb, what).map_err(|source| DumpError::Sys {
                            pid: order[j].1,
                            op,
                            source,
                        })? == Ordering::Equal
                    }
                    _ => false,
                }
            };
            if !same {
                break;
            }
            leaders.insert(order[j].1, leader);
            j += 1;
        }
        i = j;
    }
    Ok(leaders)
}

/// Sorts `slots` so that descriptors of one open file are adjacent and returns the
/// groups (indexes into the sorted `slots`), in order of first appearance.
fn group_open_files(slots: &mut [Slot]) -> Result<Vec<Vec<usize>>, DumpError> {
    let mut failure = None;
    slots.sort_by(|a, b| {
        a.key().cmp(&b.key()).then_with(|| {
            if (a.pid, a.fd) == (b.pid, b.fd) {
                return Ordering::Equal;
            }
            match compare_files(a, b) {
                Ok(o) => o,
                Err(e) => {
                    failure.get_or_insert(e);
                    (a.pid, a.fd).cmp(&(b.pid, b.fd))
                }
            }
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..slots.len() {
        let joins = match groups.last() {
            Some(group) => {
                let head = &slots[group[0]];
                head.key() == slots[i].key() && compare_files(head, &slots[i])? == Ordering::Equal
            }
            None => false,
        };
        match groups.last_mut() {
            Some(group) if joins => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    // Stable, readable ids: open files numbered in the order of (pid, fd) of their first
    // descriptor.
    groups.sort_by_key(|g| g.iter().map(|&s| (slots[s].pid, slots[s].fd)).min());
    Ok(groups)
}

fn compare_files(a: &Slot, b: &Slot) -> Result<Ordering, DumpError> {
    let (Some(pa), Some(pb)) = (Pid::from_raw(a.pid), Pid::from_raw(b.pid)) else {
        return Err(DumpError::Proc(ProcError::NoSuchProcess { pid: 0 }));
    };
    kcmp::kcmp_files(pa, TargetFd(a.fd), pb, TargetFd(b.fd)).map_err(|source| DumpError::Sys {
        pid: a.pid,
        op: "kcmp(KCMP_FILE)",
        source,
    })
}
