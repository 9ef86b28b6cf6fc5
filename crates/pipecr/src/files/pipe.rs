//! Anonymous pipes: each end is an open file (`pipe:[N]`); the pipe itself, with its
//! pending bytes, capacity and packet boundaries, is saved once in `pipes.img` whichever
//! processes hold its ends. FIFOs share the pipe-object half of this module.
//!
//! Restore creates each pipe once, from its record, and opens every saved end again
//! through `/proc/self/fd` of two anchor ends, so that two open files that were distinct
//! (an end opened again through `/proc`) stay distinct, and ends that were one open file
//! are one (the caller shares them).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, PipeEndKind, open_file};
use rustix::fs::{FileType, OFlags};

use super::{DumpSink, DumpedPipe, FileError, FileKind, LiveFile, RestoreCtx};
use crate::pipe::{self, PIPE_BUF, PipeImage, SETTABLE_FLAGS};

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
        let pipe_id = register_pipe(file, sink)?;
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
        if sink.pipes.is_empty() {
            return Ok(());
        }
        sink.writer
            .write_records(pipecr_image::PIPES, &pipe_records(sink))?;
        Ok(())
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Pipe(_))
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
        if !ctx.pipes.contains_key(&end.pipe_id) {
            let image = pipe_image(file.id, end.pipe_id, ctx)?;
            let anchors = pipe::restore(&image)?;
            ctx.pipes.insert(end.pipe_id, anchors);
        }
        let (read, write) = &ctx.pipes[&end.pipe_id];
        let flags = OFlags::from_bits_retain(file.flags);
        let anchor = if flags & OFlags::RWMODE == OFlags::WRONLY {
            write
        } else {
            read
        };
        open_end(file.id, anchor.as_fd(), flags)
    }
}

/// The records of `pipes.img` for the pipe objects met so far, by id, each marked with
/// the ends no open file of the tree holds.
pub(crate) fn pipe_records(sink: &DumpSink<'_>) -> Vec<proto::Pipe> {
    let mut records: Vec<proto::Pipe> = sink
        .pipes
        .values()
        .map(|p| proto::Pipe {
            external_reader: !p.has_reader,
            external_writer: !p.has_writer,
            ..p.entry.clone()
        })
        .collect();
    records.sort_by_key(|p| p.id);
    records
}

/// Saves the pipe object behind `file` once (its bytes are read through `file` without
/// consuming them) and notes which end `file` is; returns the pipe's image-wide id.
pub(crate) fn register_pipe(file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<u64, FileError> {
    let key = (file.stat.st_dev, file.stat.st_ino);
    if !sink.pipes.contains_key(&key) {
        let image = pipe::checkpoint(file.file.as_fd())?;
        let data = sink
            .writer
            .raw(pipecr_image::PIPES_DATA)?
            .append(&image.data)?;
        let id = sink.pipes.len() as u64 + 1;
        sink.pipes.insert(
            key,
            DumpedPipe {
                entry: image.to_entry(id, Some(data)),
                has_reader: false,
                has_writer: false,
            },
        );
    }
    let Some(pipe) = sink.pipes.get_mut(&key) else {
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

/// The saved pipe `pipe_id` with its bytes, for open file `file_id`.
pub(crate) fn pipe_image(
    file_id: u64,
    pipe_id: u64,
    ctx: &RestoreCtx<'_>,
) -> Result<PipeImage, FileError> {
    let entry = ctx
        .pipe_entries
        .get(&pipe_id)
        .ok_or_else(|| FileError::Invalid {
            id: file_id,
            reason: format!("it is an end of pipe {pipe_id}, which the image does not hold"),
        })?;
    let data = match &entry.data {
        Some(data) => ctx.image.read_data(data)?,
        None => Vec::new(),
    };
    Ok(PipeImage::from_entry(entry, data, &[])?)
}

/// Opens one more open file of the pipe behind `anchor`, with status flags `flags`.
pub(crate) fn open_end(
    id: u64,
    anchor: BorrowedFd<'_>,
    flags: OFlags,
) -> Result<OwnedFd, FileError> {
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
