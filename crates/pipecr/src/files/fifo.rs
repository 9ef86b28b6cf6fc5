//! FIFOs (named pipes): the path an open file was opened by, and the pipe behind it,
//! whose bytes are saved once in `pipes.img` like an anonymous pipe's (the table of pipe
//! objects is [`super::common`]'s).
//!
//! Restore opens the path read-write first, so that opening a one-sided end later never
//! blocks, refills the FIFO through that anchor, and opens each saved open file again
//! through `/proc/self/fd` of the anchor. The anchor is closed when the restore of the
//! descriptor table ends. An unlinked FIFO is recreated under a temporary name in its old
//! directory, opened, and unlinked again.
//!
//! Refilled only when the FIFO's pipe is new. A FIFO's pipe lives as long as someone has
//! the FIFO open; when a process outside the tree kept it open across the dump, opening
//! the path at restore reaches that same pipe, still holding whatever the outside left in
//! it (the saved bytes, unless the outside read them, plus whatever it wrote since).
//! Refilling would then hand the saved bytes a second time. The live pipe is the truth
//! there, as a regular file's bytes on disk are: it is left as it is. Whether the pipe
//! survived is asked of the kernel before the anchor is opened (`pipe_survives`).
//!
//! Whether a side of a FIFO was closed matters only through who holds the path at
//! restore: every end is opened by path, and once the anchor is closed the pipe has
//! exactly the readers and writers of the restored tree plus those outside, as at the
//! dump. So FIFOs are never external and need no `poll` at dump. (A reader that opened
//! the FIFO non-blocking before any writer came gets no `POLLHUP` until a writer comes
//! and goes, see `fifo_open` in fs/pipe.c; the restored reader is opened while the anchor
//! writes, so it gets `POLLHUP` once the anchor is closed and no writer is left.)

use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode, OFlags};

use super::common::{
    DELETED, RestoredPipes, identity, open_end, pipe_image, pipe_note, pipe_use_by_mode,
    register_pipe,
};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};

/// Named pipes (`mkfifo(3)`).
pub struct FifoKind;

impl FileKind for FifoKind {
    fn name(&self) -> &'static str {
        "FIFO"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::Fifo
            && !file.link.starts_with("pipe:[")
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let pipe_id = register_pipe(file, sink)?;
        let unlinked = file.stat.st_nlink == 0;
        let path = match file.link.strip_suffix(DELETED) {
            Some(path) if unlinked => path,
            _ => &file.link,
        };
        Ok(open_file::Kind::Fifo(proto::Fifo {
            path: path.to_owned(),
            pipe_id,
            identity: Some(identity(&file.stat)),
            unlinked,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Fifo(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Fifo(fifo)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a FIFO".into(),
            });
        };
        if !ctx
            .state::<RestoredPipes>()
            .anchors
            .contains_key(&fifo.pipe_id)
        {
            let image = pipe_image(file.id, fifo.pipe_id, ctx)?;
            let survives = !fifo.unlinked
                && pipe_survives(&fifo.path).map_err(|source| FileError::Restore {
                    id: file.id,
                    what: fifo.path.clone(),
                    op: "open, to see whether the FIFO is still open elsewhere",
                    source,
                })?;
            let anchor = open_anchor(file.id, fifo)?;
            if !survives {
                crate::pipe::fill(anchor.as_fd(), &image)?;
            }
            let second = anchor.try_clone().map_err(|source| FileError::Restore {
                id: file.id,
                what: fifo.path.clone(),
                op: "dup",
                source,
            })?;
            ctx.state::<RestoredPipes>()
                .anchors
                .insert(fifo.pipe_id, (anchor, second));
        }
        let Some((anchor, _)) = ctx.state::<RestoredPipes>().anchors.get(&fifo.pipe_id) else {
            unreachable!("inserted above");
        };
        open_end(
            file.id,
            anchor.as_fd(),
            OFlags::from_bits_retain(file.flags),
        )
    }

    fn describe(&self, file: &proto::OpenFile, saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::Fifo(x)) = &file.kind else {
            return Description {
                text: "not a FIFO".into(),
                pipe: None,
            };
        };
        let gone = if x.unlinked { " (unlinked)" } else { "" };
        let mut pipe = pipe_use_by_mode(x.pipe_id, "FIFO open", file.flags);
        pipe.fifo = Some(x.path.clone());
        Description {
            text: format!("FIFO {}{gone}, {}", x.path, pipe_note(saved, x.pipe_id)),
            pipe: Some(pipe),
        }
    }
}

/// Whether the FIFO at `path` has a pipe already: some open file (of a process outside
/// the restored tree) reads or writes it, so its bytes are live and must not be refilled.
///
/// Asked of the kernel without holding the FIFO: an `O_WRONLY | O_NONBLOCK` open fails
/// with `ENXIO` exactly when it has no reader. With no reader, a reader of our own sees
/// pending bytes with `FIONREAD`; when there are none, a writer of ours opened and closed
/// again makes the kernel report `POLLHUP` on our reader exactly when no writer is left
/// (`pipe_poll`: no writer and one seen since the reader was opened).
fn pipe_survives(path: &str) -> std::io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    match rustix::fs::stat(path) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Fifo => {}
        // Gone or no longer a FIFO: open_anchor says so.
        _ => return Ok(false),
    }
    let writer = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::open(path, writer, Mode::empty()) {
        Ok(_) => return Ok(true),
        Err(rustix::io::Errno::NXIO) => {}
        Err(e) => return Err(e.into()),
    }
    let reader = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rustix::io::ioctl_fionread(&reader)? > 0 {
        return Ok(true);
    }
    drop(rustix::fs::open(path, writer, Mode::empty())?);
    let mut polled = [PollFd::new(&reader, PollFlags::empty())];
    rustix::event::poll(&mut polled, Some(&Timespec::default()))?;
    Ok(!polled[0].revents().contains(PollFlags::HUP))
}

/// Opens the FIFO of `fifo` read-write and non-blocking: at its path, or for an unlinked
/// one, at a temporary path in its old directory that is removed right away.
fn open_anchor(id: u64, fifo: &proto::Fifo) -> Result<OwnedFd, FileError> {
    let fail = |op, source: std::io::Error| FileError::Restore {
        id,
        what: fifo.path.clone(),
        op,
        source,
    };
    let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = if fifo.unlinked {
        let dir = std::path::Path::new(&fifo.path)
            .parent()
            .unwrap_or(std::path::Path::new("/tmp"));
        let temp = dir.join(format!(".pipecr-fifo-{}-{id}", std::process::id()));
        let mode = fifo.identity.as_ref().map_or(0o600, |i| i.mode & 0o7777);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &temp,
            FileType::Fifo,
            Mode::from_raw_mode(mode),
            0,
        )
        .map_err(|e| fail("mkfifo", e.into()))?;
        // The restorer's umask took bits away: the saved mode, exactly.
        let opened = rustix::fs::chmod(&temp, Mode::from_raw_mode(mode))
            .map_err(|e| fail("chmod", e.into()))
            .and_then(|()| {
                rustix::fs::open(&temp, flags, Mode::empty()).map_err(|e| fail("open", e.into()))
            });
        let _ = std::fs::remove_file(&temp);
        opened?
    } else {
        rustix::fs::open(&fifo.path, flags, Mode::empty()).map_err(|e| fail("open", e.into()))?
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| fail("fstat", e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
        return Err(FileError::Changed {
            id,
            path: fifo.path.clone(),
            what: "it is no longer a FIFO".into(),
        });
    }
    Ok(fd)
}
