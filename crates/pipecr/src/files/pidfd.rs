//! pidfds (`pidfd_open(2)`, `clone(CLONE_PIDFD)`): descriptors that name a process, or
//! one thread of it (`PIDFD_THREAD`).
//!
//! The process named is read from fdinfo (`Pid:`, -1 once it has exited and been
//! reaped). A process of the tree, live or a zombie, is named by its PID, which the
//! restore gives back: the pidfd is opened again on the restored process once every
//! process of the tree exists ([`Stage::AfterTree`]). A reaped process leaves only its
//! exit status, which the kernel keeps for the pidfd (`PIDFD_INFO_EXIT`, Linux 6.15);
//! restore makes a child of its own that ends the same way, opens the pidfd on it and
//! reaps it, so the pidfd polls readable and `PIDFD_GET_INFO` reports the same status.
//!
//! A pidfd of a thread other than a main one can only be opened once that thread
//! exists, which at restore is after every descriptor: the process that holds it opens
//! it again itself, through an injected `pidfd_open` ([`Stage::AfterThreads`]). So it
//! is saved when the thread is one of the holder's own.
//!
//! Refused at dump, naming the pidfd: a process outside the tree (a restore could not
//! give it back), a thread of another process than the holder's, and a reaped process
//! whose status the kernel did not keep.
//! A pidfd that several processes share is opened again by each of them: the restored
//! ones name the same process with the same flags, but are separate open files (an
//! `F_SETFL` by one is not seen by the others).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::OFlags;
use rustix::process::Pid;

use super::common::set_position_and_flags;
use super::kind::{
    Description, DumpSink, FileError, FileKind, InProcessOpen, LiveFile, RestoreCtx, Saved, Stage,
    TreeTask,
};
use crate::sys::pidfd::PIDFD_THREAD;
use crate::wait_status::{self, Ending};

/// pidfds.
pub struct PidfdKind;

/// The `/proc/PID/fd/N` links of a pidfd: the anonymous inode of Linux before 6.9 and
/// the pidfs file since (which still shows the same name).
const LINKS: [&str; 2] = ["anon_inode:[pidfd]", "pidfd:[pidfd]"];

impl FileKind for PidfdKind {
    fn name(&self) -> &'static str {
        "pidfd"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        LINKS.contains(&file.link.as_str())
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let refuse = |what: String| FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: what,
        };
        let pid: i32 = file
            .info
            .get("Pid")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| FileError::Dump {
                pid: file.pid,
                fd: file.fd,
                what: file.link.clone(),
                op: "parse fdinfo",
                source: io::Error::new(io::ErrorKind::InvalidData, "no Pid: line"),
            })?;
        let thread = file.info.flags & PIDFD_THREAD != 0;
        let which = if thread { "thread" } else { "process" };
        if pid <= 0 {
            let status =
                crate::sys::pidfd::exit_status(file.file.as_fd()).map_err(|e| FileError::Dump {
                    pid: file.pid,
                    fd: file.fd,
                    what: file.link.clone(),
                    op: "ioctl(PIDFD_GET_INFO)",
                    source: e,
                })?;
            return match status {
                Some(status) if wait_status::decode(status).is_some() => {
                    Ok(open_file::Kind::Pidfd(proto::Pidfd {
                        pid: 0,
                        thread,
                        exit_status: status,
                        thread_of: 0,
                    }))
                }
                Some(status) => Err(refuse(format!(
                    "pidfd of a reaped {which} whose exit status {status:#x} no process can end with"
                ))),
                None => Err(refuse(format!(
                    "pidfd of a {which} that is not in pipecr's PID namespace or has exited \
                     without the kernel keeping its status (PIDFD_INFO_EXIT, Linux 6.15)"
                ))),
            };
        }
        match sink.task(pid) {
            Some(TreeTask::Process | TreeTask::Zombie) => {
                Ok(open_file::Kind::Pidfd(proto::Pidfd {
                    pid,
                    thread,
                    exit_status: 0,
                    thread_of: 0,
                }))
            }
            Some(TreeTask::Thread { of }) if of == file.pid => {
                // The same open file held by another process (inherited by a child)
                // could not be opened there: the thread's process opens it.
                let holders = sink.descriptors_of_inode(file.stat.st_ino);
                let id = holders
                    .iter()
                    .find(|d| d.pid == file.pid && d.fd == file.fd)
                    .map(|d| d.file_id);
                if let Some(other) = holders
                    .iter()
                    .find(|d| Some(d.file_id) == id && d.pid != file.pid)
                {
                    return Err(refuse(format!(
                        "pidfd of thread {pid} of process {of}, also held by process {} as \
                         fd {} (a restore opens a thread's pidfd in the thread's own process \
                         only)",
                        other.pid, other.fd
                    )));
                }
                Ok(open_file::Kind::Pidfd(proto::Pidfd {
                    pid,
                    thread,
                    exit_status: 0,
                    thread_of: of,
                }))
            }
            Some(TreeTask::Thread { of }) => Err(refuse(format!(
                "pidfd of thread {pid} of process {of}, another process than its holder's \
                 (a restore creates threads after every descriptor, and opens a thread's \
                 pidfd in the thread's own process)"
            ))),
            None => Err(refuse(format!(
                "pidfd of {which} {pid}, which is outside the tree (a restore could not give it back)"
            ))),
        }
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Pidfd(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let pidfds: Vec<(u64, proto::Pidfd)> = ctx
            .open_files()?
            .iter()
            .filter_map(|f| match &f.kind {
                Some(open_file::Kind::Pidfd(p)) => Some((f.id, *p)),
                _ => None,
            })
            .collect();
        if pidfds.is_empty() {
            return Ok(());
        }
        let tree: Vec<proto::Process> = ctx.image.read_records(pipecr_image::TREE)?;
        let in_tree = |pid: i32| {
            tree.iter()
                .any(|p| p.pid == pid || p.zombies.iter().any(|z| z.pid == pid))
        };
        for (id, p) in &pidfds {
            let bad = match p.pid {
                0 if wait_status::decode(p.exit_status).is_none() => Some(format!(
                    "pidfd of a reaped process with exit status {:#x}, which no process can end with",
                    p.exit_status
                )),
                0 => None,
                tid if p.thread_of != 0 => (!tree
                    .iter()
                    .any(|q| q.pid == p.thread_of && q.threads.contains(&tid)))
                .then(|| {
                    format!(
                        "pidfd of thread {tid} of process {}, which is not a thread of the image",
                        p.thread_of
                    )
                }),
                pid if !in_tree(pid) => Some(format!(
                    "pidfd of pid {pid}, which is not a process of the image"
                )),
                _ => None,
            };
            if let Some(reason) = bad {
                return Err(FileError::Invalid { id: *id, reason });
            }
        }
        // A thread's pidfd is opened by the thread's process: no other may hold it.
        if pidfds.iter().any(|(_, p)| p.thread_of != 0) {
            let tables: Vec<proto::FdTable> = ctx.image.read_records(pipecr_image::FDS)?;
            for (id, p) in pidfds.iter().filter(|(_, p)| p.thread_of != 0) {
                let own = tree
                    .iter()
                    .find(|q| q.pid == p.thread_of)
                    .map(|q| q.fd_table);
                let other = tables
                    .iter()
                    .filter(|t| Some(t.id) != own)
                    .find(|t| t.descriptors.iter().any(|d| d.file_id == *id));
                if let Some(t) = other {
                    let holder = tree
                        .iter()
                        .find(|q| q.fd_table == t.id)
                        .map_or(0, |q| q.pid);
                    return Err(FileError::Invalid {
                        id: *id,
                        reason: format!(
                            "pidfd of thread {} of process {} is also held by process {holder}: \
                             a restore opens a thread's pidfd in the thread's own process only",
                            p.pid, p.thread_of
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn stage(&self, file: &proto::OpenFile) -> Stage {
        match &file.kind {
            // A thread exists only once its process has been loaded.
            Some(open_file::Kind::Pidfd(p)) if p.thread_of != 0 => Stage::AfterThreads,
            // The process it names must exist: every process of the tree does by then.
            _ => Stage::AfterTree,
        }
    }

    fn in_process_open(
        &self,
        file: &proto::OpenFile,
        pid: i32,
        threads: &[i32],
    ) -> Result<InProcessOpen, FileError> {
        let invalid = |reason: String| FileError::Invalid {
            id: file.id,
            reason,
        };
        let Some(open_file::Kind::Pidfd(p)) = &file.kind else {
            return Err(invalid("not a pidfd".into()));
        };
        if p.thread_of != pid || !threads.contains(&p.pid) {
            return Err(invalid(format!(
                "pidfd of thread {} of process {}, held by process {pid}: a restore opens a \
                 thread's pidfd in the thread's own process only",
                p.pid, p.thread_of
            )));
        }
        let nonblock = OFlags::from_bits_retain(file.flags).contains(OFlags::NONBLOCK);
        let flags = PIDFD_THREAD | if nonblock { OFlags::NONBLOCK.bits() } else { 0 };
        Ok(InProcessOpen {
            nr: libc::SYS_pidfd_open,
            args: [p.pid as u64, u64::from(flags), 0, 0, 0, 0],
        })
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Pidfd(p)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a pidfd".into(),
            });
        };
        let nonblock = OFlags::from_bits_retain(file.flags).contains(OFlags::NONBLOCK);
        let fail = |op, source: io::Error| FileError::Restore {
            id: file.id,
            what: format!("pidfd of pid {}", p.pid),
            op,
            source,
        };
        let fd = if p.pid > 0 {
            let pid = Pid::from_raw(p.pid)
                .ok_or_else(|| fail("pidfd_open", io::Error::from_raw_os_error(libc::ESRCH)))?;
            crate::sys::pidfd::open(pid, p.thread, nonblock).map_err(|e| fail("pidfd_open", e))?
        } else {
            let ending = wait_status::decode(p.exit_status).ok_or_else(|| FileError::Invalid {
                id: file.id,
                reason: format!("exit status {:#x} no process can end with", p.exit_status),
            })?;
            ended_like(ending, p.thread, nonblock, p.exit_status).map_err(|e| {
                FileError::Restore {
                    id: file.id,
                    what: format!(
                        "pidfd of a reaped process (exit status {:#x})",
                        p.exit_status
                    ),
                    op: "recreate the ended process",
                    source: e,
                }
            })?
        };
        set_position_and_flags(fd.as_fd(), file, "pidfd")?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Pidfd(p)) => {
                let which = if p.thread { "thread" } else { "process" };
                if p.thread_of != 0 {
                    format!("pidfd of thread {} of process {}", p.pid, p.thread_of)
                } else if p.pid > 0 {
                    format!("pidfd of {which} {}", p.pid)
                } else {
                    format!(
                        "pidfd of a reaped {which}, exit status {:#x}",
                        p.exit_status
                    )
                }
            }
            _ => "not a pidfd".into(),
        };
        Description { text, pipe: None }
    }
}

/// A pidfd of a child of ours that ended as `ending` and has been reaped, so that it
/// reports what the saved one did: readable, and `exit_status` through
/// `PIDFD_GET_INFO`.
fn ended_like(
    ending: Ending,
    thread: bool,
    nonblock: bool,
    exit_status: i32,
) -> io::Result<OwnedFd> {
    let child = match crate::sys::clone3::fork()? {
        Some(child) => child,
        None => wait_status::end_as(ending),
    };
    // Opened before it is reaped: a zombie's pidfd outlives its reaping.
    let fd = crate::sys::pidfd::open(child, thread, nonblock);
    let reaped = reap(child);
    let fd = fd?;
    reaped?;
    match crate::sys::pidfd::exit_status(fd.as_fd())? {
        // The core-dump bit cannot come back (no core is written again).
        Some(status) if status == exit_status & !0x80 || status == exit_status => Ok(fd),
        other => Err(io::Error::other(format!(
            "the child made to end with status {exit_status:#x} reported {other:?}"
        ))),
    }
}

/// Waits for our child `child` to end and reaps it.
fn reap(child: Pid) -> io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.as_raw_nonzero().get());
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(
                nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
            ) => {
                return Ok(());
            }
            Ok(_) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
