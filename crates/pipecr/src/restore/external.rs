//! External ends: open files of a dumped tree whose other side was outside it (the
//! stdio of a shell job, a pipe to a log collector, a terminal). They cannot be created
//! again from the image, so restore hands each one a descriptor supplied by the caller
//! (`--inherit-fd FD=SOURCE`), and by default connects the ones at fds 0, 1 and 2 to the
//! restorer's own stdio. Any other external end without a source stops the restore
//! before a process is created: a silently dead pipe is never handed to a program.
//!
//! Which open files are external each kind says ([`crate::files::FileKind::external`]):
//! the read end of a pipe whose writer is outside the tree and the write end of a pipe
//! whose reader is outside, a unix socket whose peer is outside, a terminal (it belongs
//! to the session that ran the tree, and the tree is restored onto the caller's). This
//! module decides what each gets: those at fds 0-2 or named by a request are substituted;
//! with `--shell-job` every other terminal gets the caller's terminal too; other
//! terminals are reopened by path.
//!
//! Bytes in flight: bytes that were waiting in an external pipe for the tree to read are
//! written into the supplied descriptor when it is a pipe (it must be empty), so nothing
//! is lost; a source that is not a pipe cannot take them and the restore refuses, unless
//! the source is `null` (the caller discards them explicitly). Bytes the tree had written
//! into an external pipe are still in that pipe for its reader; they are not written
//! again. An inherited descriptor keeps its own status flags (O_NONBLOCK, O_APPEND): they
//! belong to the caller's open file.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use pipecr_image::proto;
use pipecr_image::{Image, ImageError};
use rustix::fs::{FileType, Mode, OFlags};

use super::options::RestoreOptions;
pub use super::options::{Inherit, Source};
pub use crate::files::ExternalEnd;
use crate::files::Saved;
use crate::objects::ObjectFds;
use crate::pipe::{PipeError, PipeImage};

/// Why the external ends could not be given descriptors.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// External ends without a source.
    #[error(
        "{} of the dumped tree {} outside it: {}; supply {} with --inherit-fd \
         FD=fd:N|PATH|null",
        plural(.0.len(), "descriptor", "descriptors"),
        if .0.len() == 1 { "leads" } else { "lead" },
        .0.join("; "),
        if .0.len() == 1 { "it" } else { "each" }
    )]
    Unsupplied(Vec<String>),
    /// A request names no external end.
    #[error(
        "--inherit-fd {request}: no external descriptor is held at that number{}",
        if .known.is_empty() { String::new() } else { format!(" (external: {})", .known) }
    )]
    NoSuchEnd {
        /// The request as given.
        request: String,
        /// The external descriptors there are.
        known: String,
    },
    /// A source could not be opened or used.
    #[error("--inherit-fd {request}: {what}")]
    Source {
        /// The request as given (or the default one).
        request: String,
        /// What went wrong.
        what: String,
    },
    /// Bytes waiting for the tree cannot be handed over through the source.
    #[error(
        "{end}: {pending} bytes were waiting in it for the tree to read, and {source_} is not \
         a pipe that can take them; supply a pipe (--inherit-fd {fd}=fd:N) or discard them \
         with --inherit-fd {fd}=null"
    )]
    Pending {
        /// The external end.
        end: String,
        /// The bytes waiting.
        pending: u64,
        /// The source given.
        source_: String,
        /// The descriptor number to name in the hint.
        fd: RawFd,
    },
    /// The saved bytes could not be written into the supplied pipe.
    #[error("{end}: cannot hand the {pending} waiting bytes to {source_}")]
    Refill {
        /// The external end.
        end: String,
        /// The bytes waiting.
        pending: u64,
        /// The source given.
        source_: String,
        /// What failed.
        #[source]
        source: PipeError,
    },
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Every external end of the tree image, by open file, in open-file order. Which open
/// files are external, and what each needs, the kinds say
/// ([`crate::files::external_ends`]).
pub fn external_ends(image: &Image) -> Result<Vec<ExternalEnd>, ImageError> {
    let processes: Vec<proto::Process> = image.read_records(pipecr_image::TREE)?;
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS)?;
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES)?;
    let pipes: Vec<proto::Pipe> = if image.has_file(pipecr_image::PIPES) {
        image.read_records(pipecr_image::PIPES)?
    } else {
        Vec::new()
    };
    Ok(crate::files::external_ends(&Saved {
        processes: &processes,
        tables: &tables,
        files: &files,
        pipes: &pipes,
    }))
}

/// Descriptors of the calling process standing in for external open files, by open-file
/// id and descriptor number: [`crate::restore::fdtable::create`] installs these instead
/// of creating the files. By number, because one external open file held at fds 0, 1
/// and 2 (a terminal, say) gets the caller's 0, 1 and 2. Kept open by the restorer until
/// the tree is created (its children inherit them).
#[derive(Debug, Default)]
pub struct Inherited {
    slots: BTreeMap<(u64, RawFd), OwnedFd>,
    /// The memory objects the restorer created for the tree.
    objects: ObjectFds,
}

impl Inherited {
    /// No substitution: every open file is created from the image.
    pub fn none() -> Self {
        Inherited::default()
    }

    /// The descriptor standing in for open file `file_id` where a process had it at
    /// `fd`, if any.
    pub fn get(&self, file_id: u64, fd: RawFd) -> Option<BorrowedFd<'_>> {
        self.slots.get(&(file_id, fd)).map(|f| f.as_fd())
    }

    /// How many (open file, descriptor number) pairs are substituted.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is substituted.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Hands the tree the memory objects the restorer created (descriptors of memfds and
    /// deleted files are opened from them).
    pub fn set_objects(&mut self, objects: ObjectFds) {
        self.objects = objects;
    }

    /// The memory objects the restorer created for the tree.
    pub fn objects(&self) -> &ObjectFds {
        &self.objects
    }
}

/// Which source each external end of the image gets, at each descriptor number that
/// held it: from `options.inherit`, else (fds 0-2) the caller's own descriptor of that
/// number, else (a terminal, with `options.shell_job`) the caller's terminal. Refuses,
/// naming each, external ends left without one (terminals excepted: they are reopened
/// by path) and requests that match nothing. Opens nothing.
pub fn plan(
    image: &Image,
    options: &RestoreOptions,
) -> Result<Vec<(ExternalEnd, Inherit)>, ExternalError> {
    let requests = &options.inherit;
    let ends = external_ends(image)?;
    for r in requests {
        let matches = |&(pid, fd): &(i32, RawFd)| fd == r.fd && r.pid.is_none_or(|p| p == pid);
        if !ends.iter().any(|e| e.holders.iter().any(matches)) {
            return Err(ExternalError::NoSuchEnd {
                request: request_text(r),
                known: ends
                    .iter()
                    .flat_map(|e| e.holders.iter().map(move |h| (h, e)))
                    .map(|((pid, fd), e)| format!("pid {pid} fd {fd}: {}", e.what))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    // The caller's terminal, for a shell job's other terminal descriptors.
    let tty =
        (0..=2).find(|&n| crate::sys::fd::dup_own(n, 3).is_ok_and(|f| rustix::termios::isatty(&f)));
    let mut planned = Vec::new();
    let mut unsupplied = Vec::new();
    for end in ends {
        let mut numbers: Vec<RawFd> = end.holders.iter().map(|&(_, fd)| fd).collect();
        numbers.dedup();
        for fd in numbers {
            // The first request that names a holder at this number wins.
            let request = requests.iter().find(|r| {
                r.fd == fd
                    && end
                        .holders
                        .iter()
                        .any(|&(pid, n)| n == fd && r.pid.is_none_or(|p| p == pid))
            });
            let reconnect = end.reconnect.as_ref().is_some_and(|r| {
                options
                    .external_unix
                    .iter()
                    .any(|a| address_matches(a, &r.peer_name))
            });
            let source = match request {
                Some(r) => Some(r.source.clone()),
                None if reconnect => Some(Source::Reconnect),
                None if (0..=2).contains(&fd) => Some(Source::Fd(fd)),
                None if end.terminal && options.shell_job => tty.map(Source::Fd),
                None => None,
            };
            match source {
                Some(source) => planned.push((
                    end.clone(),
                    Inherit {
                        pid: request.and_then(|r| r.pid),
                        fd,
                        source,
                    },
                )),
                // Reopened by path, as saved.
                None if end.terminal => {}
                None => unsupplied.push(describe_at(&end, fd)),
            }
        }
    }
    if !unsupplied.is_empty() {
        return Err(ExternalError::Unsupplied(unsupplied));
    }
    Ok(planned)
}

/// [`plan`], then opens each source (in the calling process, close-on-exec) and writes
/// the bytes that were waiting for the tree into the first source of each end, when it
/// is a pipe.
pub fn resolve(image: &Image, options: &RestoreOptions) -> Result<Inherited, ExternalError> {
    let mut inherited = Inherited::none();
    let mut handed_over = Vec::new();
    for (end, request) in plan(image, options)? {
        let fd = open_source(&request, &end)?;
        if !handed_over.contains(&end.file_id) {
            hand_over_pending(image, &end, &request, fd.as_fd())?;
            handed_over.push(end.file_id);
        }
        inherited.slots.insert((end.file_id, request.fd), fd);
    }
    Ok(inherited)
}

/// Whether `--external-unix` address `given` (a path, `@name` for an abstract one)
/// names the saved address `saved` (`sun_path` bytes, a leading NUL when abstract).
fn address_matches(given: &str, saved: &[u8]) -> bool {
    match given.strip_prefix('@') {
        Some(name) => saved.first() == Some(&0) && &saved[1..] == name.as_bytes(),
        None => saved == given.as_bytes(),
    }
}

fn request_text(r: &Inherit) -> String {
    match r.pid {
        Some(pid) => format!("{pid}:{}={}", r.fd, r.source),
        None => format!("{}={}", r.fd, r.source),
    }
}

/// `end` as held at descriptor number `fd` (by whichever processes).
fn describe_at(end: &ExternalEnd, fd: RawFd) -> String {
    let at = end
        .holders
        .iter()
        .filter(|h| h.1 == fd)
        .map(|(pid, fd)| format!("pid {pid} fd {fd}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{at}: {}", end.what)
}

fn describe_end(end: &ExternalEnd) -> String {
    let at = end
        .holders
        .iter()
        .map(|(pid, fd)| format!("pid {pid} fd {fd}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{at}: {}", end.what)
}

/// A new descriptor (close-on-exec, in the calling process) for `request`'s source.
fn open_source(request: &Inherit, end: &ExternalEnd) -> Result<OwnedFd, ExternalError> {
    let fail = |what: String| ExternalError::Source {
        request: request_text(request),
        what,
    };
    let access = OFlags::from_bits_retain(end.flags) & OFlags::RWMODE;
    let open = |path: &std::path::Path| -> Result<OwnedFd, ExternalError> {
        let create = if access == OFlags::RDONLY {
            OFlags::empty()
        } else {
            OFlags::CREATE
        };
        // Non-blocking while opening: a FIFO without a peer must not hang the restore.
        let fd = rustix::fs::open(
            path,
            access | create | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| fail(format!("cannot open {}: {e}", path.display())))?;
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|e| fail(format!("fcntl(F_SETFL) on {}: {e}", path.display())))?;
        Ok(fd)
    };
    match &request.source {
        Source::Reconnect => {
            let Some(r) = &end.reconnect else {
                return Err(fail("it is not a socket whose peer had an address".into()));
            };
            let fd = crate::sys::socket::connect_unix(r.socket_type, &r.name, &r.peer_name)
                .map_err(|e| {
                    fail(format!(
                        "cannot connect a new unix socket to {}: {e}",
                        String::from_utf8_lossy(&r.peer_name)
                    ))
                })?;
            // Created here: it takes the saved status flags.
            rustix::fs::fcntl_setfl(
                &fd,
                OFlags::from_bits_retain(end.flags) & (OFlags::NONBLOCK | OFlags::ASYNC),
            )
            .map_err(|e| fail(format!("fcntl(F_SETFL): {e}")))?;
            Ok(fd)
        }
        Source::Null => open(std::path::Path::new("/dev/null")),
        Source::Path(path) => open(path),
        Source::Fd(n) => {
            let fd = crate::sys::fd::dup_own(*n, 3).map_err(|e| {
                fail(format!(
                    "pipecr restore has no descriptor {n} to hand over ({e})"
                ))
            })?;
            Ok(fd)
        }
    }
}

/// Writes the bytes that were waiting for the tree in `end` into `fd` when it is a pipe;
/// refuses when there are bytes and `fd` cannot take them (a `null` source discards
/// them).
fn hand_over_pending(
    image: &Image,
    end: &ExternalEnd,
    request: &Inherit,
    fd: BorrowedFd<'_>,
) -> Result<(), ExternalError> {
    if end.pending == 0 || request.source == Source::Null {
        return Ok(());
    }
    let pending_error = || ExternalError::Pending {
        end: describe_end(end),
        pending: end.pending,
        source_: request.source.to_string(),
        fd: request.fd,
    };
    let is_pipe = rustix::fs::fstat(fd)
        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo)
        .unwrap_or(false);
    let Some(entry) = &end.pipe else {
        // A socket's receive queue cannot be refilled from this side.
        return Err(pending_error());
    };
    if !is_pipe {
        return Err(pending_error());
    }
    let refill = |source| ExternalError::Refill {
        end: describe_end(end),
        pending: end.pending,
        source_: request.source.to_string(),
        source,
    };
    let data = match &entry.data {
        Some(data) => image.read_data(data)?,
        None => Vec::new(),
    };
    let saved = PipeImage::from_entry(entry, data, &[]).map_err(refill)?;
    let already = rustix::io::ioctl_fionread(fd).unwrap_or(0);
    if already != 0 {
        return Err(refill(PipeError::Invalid(format!(
            "it already holds {already} bytes, written after the dump, which would be read \
             before the waiting ones; hand over an empty pipe and write into it once the tree \
             is restored"
        ))));
    }
    // Another end of the supplied pipe, for writing: /proc/self/fd of a read end opened
    // write-only is the same pipe's write side.
    let write = crate::sys::fd::reopen(fd, OFlags::WRONLY | OFlags::NONBLOCK)
        .map_err(|e| refill(PipeError::Invalid(format!("reopen for writing: {e}"))))?;
    crate::pipe::fill(write.as_fd(), &saved).map_err(refill)
}
