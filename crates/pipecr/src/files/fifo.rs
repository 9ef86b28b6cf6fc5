//! FIFOs (named pipes): the path an open file was opened by, and the pipe behind it,
//! whose bytes are saved once in `pipes.img` like an anonymous pipe's (the table of pipe
//! objects is [`super::common`]'s).
//!
//! Restore opens the path read-write first, so that opening a one-sided end later never
//! blocks, refills the FIFO through that anchor, and opens each saved open file again
//! through `/proc/self/fd` of the anchor. The anchor is closed when the restore of the
//! descriptor table ends. An unlinked FIFO is recreated under a temporary name in its old
//! directory, opened, and unlinked again.

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
            let anchor = open_anchor(file.id, fifo)?;
            crate::pipe::fill(anchor.as_fd(), &image)?;
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
        let opened = rustix::fs::open(&temp, flags, Mode::empty());
        let _ = std::fs::remove_file(&temp);
        opened.map_err(|e| fail("open", e.into()))?
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
