//! Saving one unix socket: what `unix_diag` says of it (state, name, socket file, peer,
//! the clients waiting in a listener's queue), its options, and its receive queue read
//! without consuming it (`MSG_PEEK` from peek offset 0), with the descriptors and
//! credentials that travel with the bytes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use pipecr_image::proto::{self, SocketType as SavedType, UnixSocketState};
use rustix::net::{SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType, sockopt};

use super::super::kind::{DumpSink, FileError, LiveFile};
use crate::sys::sockdiag::{self, UnixDiag};
use crate::sys::socket::{peek_offset, recv_message, set_peek_offset};

/// Bytes peeked per `recvmsg` call, and the first buffer size for one message.
const PEEK_CHUNK: usize = 256 << 10;

/// Server-side sockets taken out of a listener's queue to read them (see
/// `waiting_connections`): kept open until the dump ends, so their clients still show
/// them as peers. This kind's state in the [`DumpSink`].
#[derive(Default)]
pub struct Accepted {
    held: Vec<OwnedFd>,
}

/// Saves the unix socket `file` (of type `ty`) as a record.
pub fn socket_record(
    file: &LiveFile,
    ty: SavedType,
    sink: &mut DumpSink<'_>,
) -> Result<proto::UnixSocket, FileError> {
    let fail = fail_for(file);
    let fd = file.file.as_fd();
    let diag =
        sockdiag::unix_diag(file.stat.st_ino).map_err(|e| fail("sock_diag(unix_diag)", e))?;
    let mut record = describe(file, ty, &diag, fd)?;
    if diag.is_listening() {
        record.state = UnixSocketState::Listening as i32;
        record.backlog = diag.wqueue.unwrap_or(0);
        record.waiting = waiting_connections(file, ty, &diag, &record.name, sink)?;
        return Ok(record);
    }
    let what = format!(
        "socket:[{}] (pid {} fd {})",
        file.stat.st_ino, file.pid, file.fd
    );
    let queue = read_queue(file, fd, ty, &diag, &what, sink)?;
    store_queue(&mut record, queue, sink)?;
    Ok(record)
}

fn fail_for(file: &LiveFile) -> impl Fn(&'static str, io::Error) -> FileError + '_ {
    move |op, source| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op,
        source,
    }
}

/// Everything but the queue: inodes, state, names, socket file, shutdown, options.
fn describe(
    file: &LiveFile,
    ty: SavedType,
    diag: &UnixDiag,
    fd: BorrowedFd<'_>,
) -> Result<proto::UnixSocket, FileError> {
    let name = diag.name.clone().map(trim_path).unwrap_or_default();
    // A datagram socket that others connected to reports itself connected too: only a
    // peer makes it so.
    let state = if diag.is_connected() && !(ty == SavedType::Dgram && diag.peer.is_none()) {
        UnixSocketState::Connected
    } else {
        UnixSocketState::Unconnected
    };
    let peer_name = match rustix::net::getpeername(fd) {
        Ok(Some(addr)) => address_bytes(addr),
        _ => Vec::new(),
    };
    let mut record = proto::UnixSocket {
        inode: u64::from(diag.inode),
        // A peer that was closed is reported as inode 0.
        peer_inode: u64::from(diag.peer.unwrap_or(0)),
        r#type: ty as i32,
        shut_read: diag.shut_read,
        shut_write: diag.shut_write,
        state: state as i32,
        peer_name,
        options: Some(options(file, fd)?),
        ..Default::default()
    };
    if !name.is_empty() && name[0] != 0 {
        // A path: is it still the socket's own file?
        let base = if name[0] == b'/' { "root" } else { "cwd" };
        let mut on_disk = format!("/proc/{}/{base}/", file.pid).into_bytes();
        on_disk.extend_from_slice(&name);
        let on_disk = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&on_disk));
        let now = std::fs::symlink_metadata(&on_disk);
        if let Some((_, ino)) = diag.vfs {
            record.file_dev = diag.file_dev().unwrap_or(0);
            record.file_inode = u64::from(ino);
        }
        use std::os::unix::fs::MetadataExt;
        match now {
            Ok(meta)
                if diag.vfs.is_some()
                    && meta.dev() == record.file_dev
                    && meta.ino() == record.file_inode =>
            {
                record.file_mode = meta.mode();
                record.file_uid = meta.uid();
                record.file_gid = meta.gid();
            }
            Ok(_) | Err(_) => record.name_unlinked = true,
        }
    }
    record.name = name;
    Ok(record)
}

/// The socket options a program may rely on, read from our copy (they belong to the
/// socket).
fn options(file: &LiveFile, fd: BorrowedFd<'_>) -> Result<proto::UnixSocketOptions, FileError> {
    let fail = fail_for(file);
    let timeout = |which| -> Result<u64, FileError> {
        sockopt::socket_timeout(fd, which)
            .map(|t| t.map_or(0, |d| d.as_micros() as u64))
            .map_err(|e| fail("getsockopt(SO_RCVTIMEO/SO_SNDTIMEO)", e.into()))
    };
    Ok(proto::UnixSocketOptions {
        sndbuf: sockopt::socket_send_buffer_size(fd)
            .map_err(|e| fail("getsockopt(SO_SNDBUF)", e.into()))? as u32,
        rcvbuf: sockopt::socket_recv_buffer_size(fd)
            .map_err(|e| fail("getsockopt(SO_RCVBUF)", e.into()))? as u32,
        passcred: sockopt::socket_passcred(fd)
            .map_err(|e| fail("getsockopt(SO_PASSCRED)", e.into()))?,
        peek_off: peek_offset(fd).map_err(|e| fail("getsockopt(SO_PEEK_OFF)", e))?,
        rcvlowat: crate::sys::sockopt::int_option(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT)
            .map_err(|e| fail("getsockopt(SO_RCVLOWAT)", e))?,
        rcvtimeo_us: timeout(sockopt::Timeout::Recv)?,
        sndtimeo_us: timeout(sockopt::Timeout::Send)?,
    })
}

/// The connections waiting in listener `file`'s queue, taken out with `accept` on our
/// copy to read what their clients sent (no other call reaches them). This consumes
/// them: only a dump that kills the tree afterwards may do it.
fn waiting_connections(
    file: &LiveFile,
    ty: SavedType,
    diag: &UnixDiag,
    name: &[u8],
    sink: &mut DumpSink<'_>,
) -> Result<Vec<proto::UnixSocket>, FileError> {
    let fail = fail_for(file);
    if diag.icons.is_empty() {
        return Ok(Vec::new());
    }
    if sink.options.leave_running {
        return Err(FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: format!(
                "unix {} socket listening on {} with {} connection(s) waiting to be accepted, \
                 with --leave-running (their queues can only be read by accepting them, \
                 which the tree would miss; dump without --leave-running)",
                type_name(ty),
                display_name(name),
                diag.icons.len()
            ),
        });
    }
    // Every client must be a socket of the tree (or gone): checked before anything is
    // taken out of the queue.
    if let Some(&outside) = diag
        .icons
        .iter()
        .find(|&&c| c != 0 && sink.descriptors_of_inode(u64::from(c)).is_empty())
    {
        return Err(FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: format!(
                "unix {} socket listening on {} with a connection waiting to be accepted from                  socket:[{outside}], which no process of the tree holds",
                type_name(ty),
                display_name(name),
            ),
        });
    }
    let mut out = Vec::new();
    for _ in 0..diag.icons.len() {
        let conn =
            rustix::net::accept_with(&file.file, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
                .map_err(|e| fail("accept (a connection waiting in the backlog)", e.into()))?;
        let stat = rustix::fs::fstat(&conn).map_err(|e| fail("fstat", e.into()))?;
        let cdiag =
            sockdiag::unix_diag(stat.st_ino).map_err(|e| fail("sock_diag(unix_diag)", e))?;
        let live = LiveFile {
            pid: file.pid,
            fd: file.fd,
            file: conn,
            stat,
            link: format!("socket:[{}]", stat.st_ino),
            info: file.info.clone(),
        };
        let mut record = describe(&live, ty, &cdiag, live.file.as_fd())?;
        record.name = name.to_vec();
        record.name_unlinked = false;
        record.options = None;
        let what = format!(
            "a connection waiting in socket:[{}] (pid {} fd {})",
            file.stat.st_ino, file.pid, file.fd
        );
        let queue = read_queue(&live, live.file.as_fd(), ty, &cdiag, &what, sink)?;
        store_queue(&mut record, queue, sink)?;
        sink.state::<Accepted>().held.push(live.file);
        out.push(record);
    }
    Ok(out)
}

fn store_queue(
    record: &mut proto::UnixSocket,
    queue: Queue,
    sink: &mut DumpSink<'_>,
) -> Result<(), FileError> {
    record.queue = if queue.bytes.is_empty() {
        None
    } else {
        Some(
            sink.writer
                .raw(pipecr_image::SOCKETS_DATA)?
                .append(&queue.bytes)?,
        )
    };
    record.message_lengths = queue.lengths;
    record.ancillary = queue.ancillary;
    record.sources = if queue.sources.iter().all(Vec::is_empty) {
        Vec::new()
    } else {
        queue.sources
    };
    Ok(())
}

/// `sun_path` bytes of a unix address (a leading NUL for an abstract name), without the
/// NUL that ends a path; empty for an unnamed socket.
pub fn address_bytes(addr: SocketAddrAny) -> Vec<u8> {
    if addr.addr_len() as usize <= std::mem::size_of::<libc::sa_family_t>() {
        return Vec::new();
    }
    let Ok(unix) = SocketAddrUnix::try_from(addr) else {
        return Vec::new();
    };
    if let Some(name) = unix.abstract_name() {
        let mut v = vec![0];
        v.extend_from_slice(name);
        return v;
    }
    unix.path_bytes()
        .map(|p| trim_path(p.to_vec()))
        .unwrap_or_default()
}

/// A path name without the NUL bytes the kernel may keep after it.
fn trim_path(mut name: Vec<u8>) -> Vec<u8> {
    if name.first().is_some_and(|&b| b != 0) {
        while name.last() == Some(&0) {
            name.pop();
        }
    }
    name
}

/// A name for people: the path, `@name` for an abstract one, `(unnamed)`.
pub fn display_name(name: &[u8]) -> String {
    match name.first() {
        None => "(unnamed)".into(),
        Some(0) => format!("@{}", String::from_utf8_lossy(&name[1..])),
        Some(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

pub fn type_name(ty: SavedType) -> &'static str {
    match ty {
        SavedType::Stream => "stream",
        SavedType::Dgram => "datagram",
        SavedType::Seqpacket => "seqpacket",
        SavedType::Unspecified => "unknown-type",
    }
}

/// What waits in a socket's receive queue.
#[derive(Debug, Default)]
struct Queue {
    /// The bytes, in order.
    bytes: Vec<u8>,
    /// Datagram and seqpacket sockets: the length of each message.
    lengths: Vec<u32>,
    /// Descriptors and credentials, by message index or byte offset.
    ancillary: Vec<proto::UnixAncillary>,
    /// Datagram sockets: each message's sender address.
    sources: Vec<Vec<u8>>,
}

/// Reads the receive queue of `fd` without consuming it: sets the socket's peek offset
/// to 0 and `SO_PASSCRED` on (to see the credentials the kernel keeps with each
/// message), peeks until the queue is exhausted, and puts both back.
fn read_queue(
    file: &LiveFile,
    fd: BorrowedFd<'_>,
    ty: SavedType,
    diag: &UnixDiag,
    what: &str,
    sink: &mut DumpSink<'_>,
) -> Result<Queue, FileError> {
    let fail = fail_for(file);
    // A stream socket reports every queued byte: nothing to peek when it is empty. (Not
    // peeking an empty stream socket also leaves a pending error, such as ECONNRESET
    // from a peer that closed with unread data, for the process to see.)
    if ty == SavedType::Stream && diag.rqueue == Some(0) {
        return Ok(Queue::default());
    }
    let old = peek_offset(fd).map_err(|e| fail("getsockopt(SO_PEEK_OFF)", e))?;
    if let Err(e) = set_peek_offset(fd, 0) {
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!(
                    "unix {} socket (this kernel has no SO_PEEK_OFF for it, so its queue cannot be read without consuming it)",
                    type_name(ty)
                ),
            });
        }
        return Err(fail("setsockopt(SO_PEEK_OFF, 0)", e));
    }
    let passcred = sockopt::socket_passcred(fd).unwrap_or(false);
    let cred_on = if passcred {
        Ok(())
    } else {
        sockopt::set_socket_passcred(fd, true)
    };
    let peeked = match cred_on {
        Ok(()) => peek_all(file, fd, ty, diag, what, sink),
        Err(e) => Err(fail("setsockopt(SO_PASSCRED)", e.into())),
    };
    // Put the process's options back whatever happened.
    let cred_back = if passcred {
        Ok(())
    } else {
        sockopt::set_socket_passcred(fd, false)
    };
    let put_back = set_peek_offset(fd, old);
    let queue = peeked?;
    cred_back.map_err(|e| fail("setsockopt(SO_PASSCRED) back off", e.into()))?;
    put_back.map_err(|e| fail("setsockopt(SO_PEEK_OFF) back to its old value", e))?;
    Ok(queue)
}

/// Peeks every message or byte queued in `fd`, whose peek offset is 0.
fn peek_all(
    file: &LiveFile,
    fd: BorrowedFd<'_>,
    ty: SavedType,
    diag: &UnixDiag,
    what: &str,
    sink: &mut DumpSink<'_>,
) -> Result<Queue, FileError> {
    let fail = fail_for(file);
    let stream = ty == SavedType::Stream;
    let mut queue = Queue::default();
    let mut buf = vec![0u8; PEEK_CHUNK];
    let mut flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    if !stream {
        // Return a message's full length even when it is longer than the buffer.
        flags |= libc::MSG_TRUNC;
    }
    loop {
        if stream
            && diag
                .rqueue
                .is_some_and(|total| queue.bytes.len() >= total as usize)
        {
            break;
        }
        let msg = match recv_message(fd, &mut buf, flags) {
            Ok(msg) => msg,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(fail("recvmsg(MSG_PEEK)", e)),
        };
        if msg.control_truncated {
            return Err(fail(
                "recvmsg(MSG_PEEK)",
                io::Error::other("ancillary data did not fit (more than 253 descriptors?)"),
            ));
        }
        if !stream && msg.bytes > buf.len() {
            // Truncated: the peek offset moved by the buffer's length only. Go back to
            // the message's start and peek it again whole (the descriptors it carries
            // are closed here and installed again).
            drop(msg.fds);
            let start = i32::try_from(queue.bytes.len()).map_err(|_| {
                fail(
                    "setsockopt(SO_PEEK_OFF)",
                    io::Error::from_raw_os_error(libc::EOVERFLOW),
                )
            })?;
            set_peek_offset(fd, start).map_err(|e| fail("setsockopt(SO_PEEK_OFF)", e))?;
            buf.resize(msg.bytes, 0);
            continue;
        }
        let mut entry = proto::UnixAncillary::default();
        if let Some((pid, uid, gid)) = msg.creds.filter(|c| c.0 != 0) {
            (entry.pid, entry.uid, entry.gid) = (pid, uid, gid);
        }
        // Peeking installed the descriptors in pipecr: they are the files in flight
        // themselves.
        let files = msg.fds;
        if stream && msg.bytes == 0 {
            // End of file: the peer shut down or closed.
            break;
        }
        if msg.bytes == 0
            && ty == SavedType::Seqpacket
            && diag.shut_read
            && files.is_empty()
            && diag
                .rqueue
                .is_none_or(|total| queue.bytes.len() >= total as usize)
        {
            // A shut-down seqpacket socket returns 0 at the end of its queue (and a
            // zero-length message there cannot be told from it).
            break;
        }
        // A peek that reaches a stretch carrying descriptors returns them with every
        // byte it glued before (a read would return them with the stretch's first byte
        // only): the descriptors are saved at the start of the peeked stretch, so a
        // restored reader gets them with the bytes it read in one go before.
        for f in files {
            entry.file_ids.push(sink.file_id_of(f, what)?);
        }
        let at = if stream {
            queue.bytes.len() as u64
        } else {
            queue.lengths.len() as u64
        };
        if entry.pid != 0 || !entry.file_ids.is_empty() {
            entry.at = at;
            // Stream bytes from one sender with no descriptors glue into one entry.
            let glued = stream
                && entry.file_ids.is_empty()
                && queue.ancillary.last().is_some_and(|last| {
                    last.file_ids.is_empty()
                        && (last.pid, last.uid, last.gid) == (entry.pid, entry.uid, entry.gid)
                });
            if !glued {
                queue.ancillary.push(entry);
            }
        } else if stream
            && queue
                .ancillary
                .last()
                .is_some_and(|l| l.pid != 0 || !l.file_ids.is_empty())
        {
            // Bytes without credentials or descriptors after bytes with them: a
            // boundary of its own (a read stops there).
            queue.ancillary.push(proto::UnixAncillary {
                at,
                ..Default::default()
            });
        }
        queue.bytes.extend_from_slice(&buf[..msg.bytes]);
        if !stream {
            queue.lengths.push(msg.bytes as u32);
            if ty == SavedType::Dgram {
                queue.sources.push(msg.source);
            }
        }
        if queue.bytes.len() > i32::MAX as usize {
            return Err(fail(
                "recvmsg(MSG_PEEK)",
                io::Error::other("queue longer than the peek offset can address"),
            ));
        }
    }
    // Check against what the kernel counts (the whole queue of a stream or seqpacket
    // socket, the first message of a datagram socket): out-of-band data, say, is not
    // seen by peeking.
    let seen = match ty {
        SavedType::Dgram => queue.lengths.first().map_or(0, |&l| l as usize),
        _ => queue.bytes.len(),
    };
    if let Some(total) = diag.rqueue.filter(|&total| seen != total as usize) {
        return Err(fail(
            "recvmsg(MSG_PEEK)",
            io::Error::other(format!(
                "peeked {seen} bytes but the kernel counts {total} (out-of-band data?)"
            )),
        ));
    }
    Ok(queue)
}

/// The saved type of a live socket, or why it is not one pipecr saves.
pub fn saved_type(file: &LiveFile) -> Result<SavedType, FileError> {
    let fd = file.file.as_fd();
    let sock_type = sockopt::socket_type(fd).map_err(|e| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op: "getsockopt(SO_TYPE)",
        source: e.into(),
    })?;
    match sock_type {
        SocketType::STREAM => Ok(SavedType::Stream),
        SocketType::DGRAM => Ok(SavedType::Dgram),
        SocketType::SEQPACKET => Ok(SavedType::Seqpacket),
        other => Err(FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: format!("unix socket of type {}", other.as_raw()),
        }),
    }
}
