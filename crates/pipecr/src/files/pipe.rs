//! Anonymous pipes: each end is an open file (`pipe:[N]`); the pipe itself, with its
//! pending bytes, capacity and packet boundaries, is saved once in `pipes.img` whichever
//! processes hold its ends. The table of pipe objects, which FIFOs share, is
//! [`super::common`]'s; this kind writes it out when the dump finishes.
//!
//! Whether a side of the pipe that no process of the tree holds leads outside the tree is
//! asked of the kernel at dump ([`peer_closed`]): a read end polls `POLLHUP` exactly when
//! the pipe has no writer anywhere, a write end `POLLERR` exactly when it has no reader.
//! Such a side is saved as closed (`writer_closed`, `reader_closed`), not external, and
//! needs nothing at restore; only a side some process outside the tree still holds is
//! external.
//!
//! Restore creates each pipe once, from its record, with `pipe2`: two anchor open files.
//! The saved end of each direction that came from `pipe()` (the one without
//! `O_LARGEFILE`, which every `open` adds) is that anchor itself, so its status flags come
//! back exactly; every other saved end (opened again through `/proc` in the original,
//! so with `O_LARGEFILE`) is opened again through `/proc/self/fd` of the anchor, so open
//! files that were distinct stay distinct, and ends that were one open file are one (the
//! caller shares them). An anchor no saved end is is closed when every end is open: a
//! pipe whose writer was closed then has no writer again (reads return its bytes, then
//! end of file), one whose reader was closed has no reader (writes get `EPIPE`).

use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, PipeEndKind, open_file};
use rustix::fs::{FileType, OFlags};

use super::common::{
    RestoredPipes, load_pipe_records, mark_closed, open_end, peer_closed, pipe_image, pipe_note,
    pipe_records, register_pipe, share_end,
};
use super::kind::{
    Description, DumpSink, External, FileError, FileKind, LiveFile, PipeUse, RestoreCtx, Saved,
};
use crate::pipe;

/// Anonymous pipes (`pipe(2)`).
pub struct PipeKind;

impl FileKind for PipeKind {
    fn name(&self) -> &'static str {
        "pipe"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::Fifo
            && file.link.starts_with("pipe:[")
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        // Before register_pipe, whose checkpoint opens a read end of its own for a write end.
        let closed = peer_closed(file)?;
        let pipe_id = register_pipe(file, sink)?;
        mark_closed(file, sink, closed);
        let end = if OFlags::from_bits_retain(file.info.flags) & OFlags::RWMODE == OFlags::WRONLY {
            PipeEndKind::Write
        } else {
            PipeEndKind::Read
        };
        Ok(open_file::Kind::Pipe(proto::PipeEnd {
            pipe_id,
            end: end as i32,
        }))
    }

    fn finish(
        &self,
        _files: &mut [proto::OpenFile],
        sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        // Pipes and FIFOs share one table of pipe objects; it is written here, once.
        let records = pipe_records(sink);
        if records.is_empty() {
            return Ok(());
        }
        sink.writer.write_records(pipecr_image::PIPES, &records)?;
        Ok(())
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Pipe(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        load_pipe_records(ctx)
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Pipe(end)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a pipe end".into(),
            });
        };
        if !ctx
            .state::<RestoredPipes>()
            .anchors
            .contains_key(&end.pipe_id)
        {
            let image = pipe_image(file.id, end.pipe_id, ctx)?;
            let anchors = pipe::restore(&image)?;
            ctx.state::<RestoredPipes>()
                .anchors
                .insert(end.pipe_id, anchors);
        }
        let flags = OFlags::from_bits_retain(file.flags);
        let mode = flags & OFlags::RWMODE;
        let writes = mode == OFlags::WRONLY;
        let from_pipe_call = !flags.contains(OFlags::LARGEFILE) && mode != OFlags::RDWR;
        let pipes = ctx.state::<RestoredPipes>();
        if from_pipe_call && let Some(anchor) = pipes.hand_out(end.pipe_id, writes) {
            return share_end(file.id, anchor, flags);
        }
        let Some((read, write)) = pipes.anchors.get(&end.pipe_id) else {
            unreachable!("inserted above");
        };
        let anchor = if writes { write } else { read };
        open_end(file.id, anchor.as_fd(), flags)
    }

    fn external(&self, file: &proto::OpenFile, saved: &Saved<'_>) -> Option<External> {
        let Some(open_file::Kind::Pipe(end)) = &file.kind else {
            return None;
        };
        let p = saved.pipe(end.pipe_id)?;
        let reads = end.end == PipeEndKind::Read as i32;
        let (what, pending) = if reads && p.external_writer {
            (
                format!(
                    "read end of pipe:[{}] (its writer is outside the tree)",
                    p.inode
                ),
                p.data.as_ref().map_or(0, |d| d.length),
            )
        } else if !reads && p.external_reader {
            (
                format!(
                    "write end of pipe:[{}] (its reader is outside the tree)",
                    p.inode
                ),
                0,
            )
        } else {
            return None;
        };
        Some(External {
            what,
            pending,
            terminal: false,
            pipe: Some(p.clone()),
            reconnect: None,
        })
    }

    fn describe(&self, file: &proto::OpenFile, saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::Pipe(e)) = &file.kind else {
            return Description {
                text: "not a pipe end".into(),
                pipe: None,
            };
        };
        let mode = OFlags::from_bits_retain(file.flags) & OFlags::RWMODE;
        let rdwr = mode == OFlags::RDWR;
        let (which, role, reads, writes) = match PipeEndKind::try_from(e.end) {
            Ok(PipeEndKind::Read) => ("read end", "read end", true, rdwr),
            Ok(PipeEndKind::Write) => ("write end", "write end", rdwr, true),
            _ => (
                "end",
                "end of unknown kind",
                mode != OFlags::WRONLY,
                mode != OFlags::RDONLY,
            ),
        };
        Description {
            text: format!("{which} of {}", pipe_note(saved, e.pipe_id)),
            pipe: Some(PipeUse {
                pipe_id: e.pipe_id,
                role,
                reads,
                writes,
                fifo: None,
            }),
        }
    }
}
