//! Open files, one module per kind, each implementing [`FileKind`]; all of them are
//! listed in [`KINDS`]. This module holds only that table and the dispatch over it.
//!
//! A kind knows how to recognise one of its files in a live process ([`FileKind::claims`]),
//! how to save it as an `OpenFile` message ([`FileKind::dump`]) and how to open it again
//! in the calling process ([`FileKind::restore`]), and it answers the questions asked
//! about its saved records: when it can be restored ([`FileKind::stage`]), whether it
//! leads outside the tree ([`FileKind::external`]) and how `pipecr show` presents it
//! ([`FileKind::describe`]). The dump and restore orchestration and `show` go through the
//! functions here and know no kind by name: a new kind is one new module, one entry in
//! [`KINDS`] and one message in the schema.
//!
//! Layering: [`kind`] (the trait, contexts and error) is at the bottom, [`common`] (what
//! several kinds share) above it, the kinds above that; no kind imports another kind or
//! this module.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use pipecr_image::proto;

pub mod chardev;
pub mod common;
pub mod directory;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fifo;
pub mod inet;
pub mod inotify;
pub mod kind;
pub mod locks;
pub mod memfd;
pub mod namespace;
pub mod netlink;
pub mod packet;
pub mod pidfd;
pub mod pipe;
pub mod procfs;
pub mod rawip;
pub mod regular;
pub mod signalfd;
pub mod sockopts;
pub mod symlink;
pub mod tcp;
pub mod timerfd;
pub mod tty;
pub mod udp;
pub mod unix;
pub mod userfaultfd;

pub use common::{DumpedPipe, PipeObjects, describe, read_contents};
pub use kind::{
    Description, Dropped, DumpEnd, DumpHold, DumpOptions, DumpSink, External, ExternalEnd,
    FileError, FileKind, Holds, InProcessOpen, KindState, LiveFile, PipeUse, Reconnect, RestoreCtx,
    Saved, Stage, TreeDescriptor, TreeTask,
};

/// Every kind of open file pipecr can save, in the order they are asked to claim a file.
pub static KINDS: &[&dyn FileKind] = &[
    &pipe::PipeKind,
    &fifo::FifoKind,
    // Before regular: a memfd is a regular file too.
    &memfd::MemfdKind,
    // Before regular: a namespace file (nsfs) is a regular file too.
    &namespace::NamespaceKind,
    // Before regular: a file of /proc or /sys is a regular file too.
    &procfs::PseudoFileKind,
    &regular::RegularKind,
    &directory::DirectoryKind,
    // Before chardev: pseudo-terminal ends whose master the tree holds are pairs; the
    // others stay terminals reopened by path.
    &tty::PtyKind,
    &chardev::CharDeviceKind,
    &eventfd::EventFdKind,
    &timerfd::TimerFdKind,
    &signalfd::SignalFdKind,
    &inotify::InotifyKind,
    &fanotify::FanotifyKind,
    &epoll::EpollKind,
    &unix::UnixSocketKind,
    &tcp::TcpSocketKind,
    &udp::UdpSocketKind,
    &netlink::NetlinkSocketKind,
    &packet::PacketSocketKind,
    &rawip::RawIpSocketKind,
    &pidfd::PidfdKind,
    &userfaultfd::UserfaultfdKind,
    &symlink::SymlinkKind,
];

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
    restorer_in(KINDS, file)
}

/// The kind among `kinds` that restores a saved open file ([`restorer_of`] asks
/// [`KINDS`]; a test may ask its own table).
pub fn restorer_in(
    kinds: &[&'static dyn FileKind],
    file: &proto::OpenFile,
) -> Result<&'static dyn FileKind, FileError> {
    let Some(kind) = &file.kind else {
        return Err(FileError::Invalid {
            id: file.id,
            reason: "a kind of file this version of pipecr does not know".into(),
        });
    };
    kinds
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
    let kind =
        kind_of(file).inspect_err(|e| tracing::debug!(pid = file.pid, fd = file.fd, "{e}"))?;
    tracing::debug!(pid = file.pid, fd = file.fd, kind = kind.name(), id, link = %file.link, "saving open file");
    // Locks and lease first: a refused one stops the dump before the kind reads anything
    // (reading an unlinked file's bytes opens it again, which breaks a write lease).
    let held = locks::open_file_locks(&file.info, file.pid, file.fd)?;
    let lease = locks::open_file_lease(&file.info, file.stat.st_nlink, file.pid, file.fd)?;
    let kind = kind.dump(file, sink).inspect_err(|e| {
        tracing::debug!(
            pid = file.pid,
            fd = file.fd,
            kind = kind.name(),
            "cannot save: {e}"
        )
    })?;
    let (owner, signal) = common::owner_and_signal(file)?;
    Ok(proto::OpenFile {
        id,
        flags: file.info.flags,
        pos: file.info.pos,
        locks: held,
        kind: Some(kind),
        owner,
        signal,
        lease,
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

/// The saved open file that stands for terminal device `tty_nr`, the controlling
/// terminal of session `sid` (from `/proc/PID/stat`), when the image recreates that
/// terminal: the one of `files` whose kind answers [`FileKind::terminal`] with both (the
/// number alone may be another devpts instance's terminal).
pub fn terminal_file(files: &[proto::OpenFile], tty_nr: u64, sid: i32) -> Option<u64> {
    files.iter().find_map(|f| {
        let kind = restorer_of(f).ok()?;
        (kind.terminal(f) == Some((tty_nr, sid))).then_some(f.id)
    })
}

/// The records of `pipes.img` for the pipe objects a dump met so far (each marked with
/// the ends no open file of the tree holds).
pub fn pipe_records(sink: &DumpSink<'_>) -> Vec<proto::Pipe> {
    common::pipe_records(sink)
}

/// Lets every kind read and check what it shares before any open file is restored (see
/// [`FileKind::prepare`]).
pub fn prepare_restore(ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
    for kind in KINDS {
        kind.prepare(ctx)?;
    }
    Ok(())
}

/// Lets every kind check its records in the restoring process itself, before any
/// process or open file is created (see [`FileKind::prepare`]): what the restorer lacks
/// (a capability, an interface) stops the restore there. The processes that create the
/// open files run the same checks again.
pub fn preflight(image: &pipecr_image::Image) -> Result<(), FileError> {
    prepare_restore(&mut RestoreCtx::new(image)?)
}

/// When a saved open file can be created (see [`FileKind::stage`]).
pub fn stage_of(file: &proto::OpenFile) -> Result<Stage, FileError> {
    Ok(restorer_of(file)?.stage(file))
}

/// The call by which process `pid` (with threads `threads`) opens a saved open file of
/// [`Stage::AfterThreads`] itself (see [`FileKind::in_process_open`]).
pub fn in_process_open(
    file: &proto::OpenFile,
    pid: i32,
    threads: &[i32],
) -> Result<InProcessOpen, FileError> {
    restorer_of(file)?.in_process_open(file, pid, threads)
}

/// Completes, through `fd` (the restoring process's copy), a saved open file that its
/// process opened itself (see [`FileKind::complete_in_process`]).
pub fn complete_in_process(
    file: &proto::OpenFile,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<(), FileError> {
    restorer_of(file)?.complete_in_process(file, fd)
}

/// Opens a saved open file again in the calling process.
pub fn restore_file(
    file: &proto::OpenFile,
    ctx: &mut RestoreCtx<'_>,
) -> Result<OwnedFd, FileError> {
    let kind = restorer_of(file)?;
    tracing::debug!(id = file.id, kind = kind.name(), "opening saved file");
    restore_with(kind, file, ctx)
        .inspect_err(|e| tracing::debug!(id = file.id, kind = kind.name(), "cannot open: {e}"))
}

/// Lets every open file's kind finish its restore just before the tree is released
/// (see [`FileKind::before_release`]).
pub fn before_release(saved: &Saved<'_>) -> Result<(), FileError> {
    for kind in KINDS {
        kind.before_release(saved)?;
    }
    Ok(())
}

/// Opens a saved open file again in the calling process with `kind`, then takes again
/// the locks and the lease it held itself (flock, OFD, `F_SETLEASE`: [`locks`]).
pub fn restore_with(
    kind: &dyn FileKind,
    file: &proto::OpenFile,
    ctx: &mut RestoreCtx<'_>,
) -> Result<OwnedFd, FileError> {
    let fd = kind.restore(file, ctx)?;
    locks::take_open_file_locks(file, fd.as_fd())?;
    locks::take_lease(file, fd.as_fd())?;
    Ok(fd)
}

/// Lets the kind of `file` finish it once every open file exists (see
/// [`FileKind::complete`]).
pub fn complete_file(file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
    restorer_of(file)?.complete(file, ctx)
}

/// How `pipecr show` presents a saved open file (see [`FileKind::describe`]).
pub fn describe_saved(file: &proto::OpenFile, saved: &Saved<'_>) -> Description {
    match restorer_of(file) {
        Ok(kind) => kind.describe(file, saved),
        Err(_) => Description {
            text: "a kind unknown to this version".to_owned(),
            pipe: None,
        },
    }
}

/// Every open file of `saved` whose other side is outside the tree, with the
/// descriptors that held it, in open-file order (see [`FileKind::external`]). Open files
/// no descriptor holds are left out.
pub fn external_ends(saved: &Saved<'_>) -> Vec<ExternalEnd> {
    let tables: BTreeMap<u64, &proto::FdTable> = saved.tables.iter().map(|t| (t.id, t)).collect();
    let mut holders: BTreeMap<u64, Vec<(i32, RawFd)>> = BTreeMap::new();
    for p in saved.processes {
        for d in tables.get(&p.fd_table).iter().flat_map(|t| &t.descriptors) {
            holders.entry(d.file_id).or_default().push((p.pid, d.fd));
        }
    }
    let mut ends = Vec::new();
    for file in saved.files {
        let Some(mut held) = holders.remove(&file.id) else {
            continue;
        };
        held.sort_unstable();
        let Ok(kind) = restorer_of(file) else {
            continue;
        };
        if let Some(ext) = kind.external(file, saved) {
            ends.push(ExternalEnd {
                file_id: file.id,
                holders: held,
                what: ext.what,
                pending: ext.pending,
                terminal: ext.terminal,
                flags: file.flags,
                pipe: ext.pipe,
                reconnect: ext.reconnect,
            });
        }
    }
    ends
}

/// Words for a live file no kind claims, for the error that stops the dump: for a
/// socket, what [`unix::describe_socket`] finds out about it; otherwise [`describe`].
pub fn describe_live(file: &LiveFile) -> String {
    if file.link.starts_with("socket:") {
        return unix::describe_socket(file.file.as_fd());
    }
    describe(&file.link, &file.stat)
}
