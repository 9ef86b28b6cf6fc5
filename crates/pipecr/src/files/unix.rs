//! Unix socketpairs: unnamed `AF_UNIX` sockets connected to an unnamed peer (stream,
//! datagram and seqpacket), with the bytes queued in them.
//!
//! Each end is one open file (`socket:[N]`) saved as a `UnixSocket` record: its inode, the
//! inode of its peer (asked of the kernel with `unix_diag`, see [`crate::sys::sockdiag`]),
//! the bytes waiting to be read by it, the message boundaries of a datagram or seqpacket
//! socket and its shutdown state. The queue is read with `MSG_PEEK` and a peek offset
//! (`SO_PEEK_OFF`), so nothing is consumed and the process's own peek offset is put
//! back afterwards.
//!
//! Restore creates the pair when the first of its two ends is restored, fills both
//! queues (the bytes queued in one end are sent through the other, one `send` per
//! message), applies the shutdowns, and keeps the second end in [`PendingPeers`] (this
//! kind's state in the [`RestoreCtx`]) under its saved inode until it is asked for. An end whose peer was closed before the
//! dump is restored the same way and its new peer closed again; an end whose peer lives
//! outside the dumped tree (`external`) cannot be restored yet.
//!
//! Named or listening unix sockets, and sockets of other families, are not claimed: the
//! dump stops naming them ([`describe_socket`]).

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, SocketType as SavedType, open_file};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags,
    Shutdown, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType, recvmsg, send, shutdown,
    socketpair, sockopt,
};

use super::kind::{
    Description, DumpSink, External, FileError, FileKind, LiveFile, RestoreCtx, Saved,
};
use crate::sys::sockdiag::{self, UnixDiag};
use crate::sys::socket::{peek_offset, set_peek_offset};

/// Unix socketpairs (`socketpair(AF_UNIX, ...)`): unnamed, connected, any socket type.
pub struct UnixSocketKind;

/// Ends created with their peer and waiting to be asked for, by saved inode: this kind's
/// state in a [`RestoreCtx`] ([`RestoreCtx::state`]).
#[derive(Debug, Default)]
pub struct PendingPeers {
    ends: std::collections::BTreeMap<u64, OwnedFd>,
}

impl PendingPeers {
    /// True when every end created with its peer was handed out.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Bytes peeked per `recvmsg` call, and the first buffer size for one message.
const PEEK_CHUNK: usize = 256 << 10;
/// Room for ancillary data seen while peeking (credentials, or descriptors, which make
/// the dump fail).
const CONTROL_SPACE: usize = 4096;
/// Largest send buffer restore asks for when refilling a queue (`SO_SNDBUFFORCE`; the
/// kernel doubles it).
const MAX_SNDBUF: usize = 1 << 30;

impl FileKind for UnixSocketKind {
    fn name(&self) -> &'static str {
        "unix socketpair"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link.starts_with("socket:[") && is_socketpair_end(file.file.as_fd())
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            op,
            source,
        };
        let fd = file.file.as_fd();
        let sock_type =
            sockopt::socket_type(fd).map_err(|e| fail("getsockopt(SO_TYPE)", e.into()))?;
        let saved_type = match sock_type {
            SocketType::STREAM => SavedType::Stream,
            SocketType::DGRAM => SavedType::Dgram,
            SocketType::SEQPACKET => SavedType::Seqpacket,
            other => {
                return Err(FileError::Unsupported {
                    pid: file.pid,
                    fd: file.fd,
                    kind: format!("unix socket of type {}", other.as_raw()),
                });
            }
        };
        let diag = sockdiag::unix_diag(file.stat.st_ino)
            .map_err(|e| fail("sock_diag(UDIAG_SHOW_PEER)", e))?;
        // A peer that was closed is reported as inode 0.
        let peer_inode = u64::from(diag.peer.unwrap_or(0));
        let queue = read_queue(file, saved_type, &diag)?;
        let data = if queue.bytes.is_empty() {
            None
        } else {
            Some(
                sink.writer
                    .raw(pipecr_image::SOCKETS_DATA)?
                    .append(&queue.bytes)?,
            )
        };
        Ok(open_file::Kind::UnixSocket(proto::UnixSocket {
            inode: file.stat.st_ino,
            peer_inode,
            r#type: saved_type as i32,
            queue: data,
            message_lengths: queue.lengths,
            external: false,
            shut_read: diag.shut_read,
            shut_write: diag.shut_write,
        }))
    }

    fn finish(
        &self,
        files: &mut [proto::OpenFile],
        _sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        let inodes: std::collections::BTreeSet<u64> = files
            .iter()
            .filter_map(|f| match &f.kind {
                Some(open_file::Kind::UnixSocket(s)) => Some(s.inode),
                _ => None,
            })
            .collect();
        for f in files.iter_mut() {
            if let Some(open_file::Kind::UnixSocket(s)) = &mut f.kind {
                s.external = s.peer_inode != 0 && !inodes.contains(&s.peer_inode);
            }
        }
        Ok(())
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::UnixSocket(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::UnixSocket(sock)) = &file.kind else {
            return Err(invalid(file.id, "not a unix socket".into()));
        };
        let fail = |op, source: io::Error| FileError::Restore {
            id: file.id,
            what: format!("unix socket:[{}]", sock.inode),
            op,
            source,
        };
        let fd = match ctx.state::<PendingPeers>().ends.remove(&sock.inode) {
            // Created, filled and shut down with its peer.
            Some(fd) => fd,
            None => create_pair(file.id, sock, ctx)?,
        };
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&fd, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(fd)
    }

    fn external(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Option<External> {
        match &file.kind {
            Some(open_file::Kind::UnixSocket(s)) if s.external => Some(External {
                what: format!(
                    "unix socket:[{}] (its peer socket:[{}] is outside the tree)",
                    s.inode, s.peer_inode
                ),
                pending: s.queue.as_ref().map_or(0, |d| d.length),
                terminal: false,
                pipe: None,
            }),
            _ => None,
        }
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::UnixSocket(x)) = &file.kind else {
            return Description {
                text: "not a unix socket".into(),
                pipe: None,
            };
        };
        let ty = match SavedType::try_from(x.r#type) {
            Ok(t) if t != SavedType::Unspecified => type_name(t),
            _ => "unknown type",
        };
        let queued = x.queue.as_ref().map_or(0, |d| d.length);
        let ext = if x.external {
            ", peer outside the tree"
        } else {
            ""
        };
        Description {
            text: format!(
                "unix {ty} socket:[{}] -> socket:[{}], {queued} B queued{ext}",
                x.inode, x.peer_inode
            ),
            pipe: None,
        }
    }
}

/// True when `fd` is an unnamed unix socket connected to an unnamed peer: one end of a
/// socketpair. Any failing call means "no".
fn is_socketpair_end(fd: BorrowedFd<'_>) -> bool {
    sockopt::socket_domain(fd).is_ok_and(|d| d == AddressFamily::UNIX)
        && rustix::net::getsockname(fd).is_ok_and(unnamed)
        && match rustix::net::getpeername(fd) {
            // A connected unnamed peer reports just its family; no address at all is
            // unnamed too.
            Ok(Some(addr)) => unnamed(addr),
            Ok(None) => true,
            Err(_) => false,
        }
}

/// True for the address of an unnamed unix socket: the family alone, no `sun_path`.
/// (rustix turns this address into an empty path or an empty abstract name, so the
/// length is checked here.)
fn unnamed(addr: SocketAddrAny) -> bool {
    addr.address_family() == AddressFamily::UNIX
        && addr.addr_len() as usize == std::mem::size_of::<libc::sa_family_t>()
}

/// What waits in a socket's receive queue.
#[derive(Debug, Default)]
struct Queue {
    /// The bytes, in order.
    bytes: Vec<u8>,
    /// Datagram and seqpacket sockets: the length of each message.
    lengths: Vec<u32>,
}

/// Reads the receive queue of `file` without consuming it: sets the socket's peek offset
/// to 0, peeks until the queue is exhausted, and puts the process's peek offset back.
fn read_queue(file: &LiveFile, ty: SavedType, diag: &UnixDiag) -> Result<Queue, FileError> {
    let fail = |op, source: io::Error| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op,
        source,
    };
    let fd = file.file.as_fd();
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
    let peeked = peek_all(file, fd, ty, diag);
    // Put the process's peek offset back whatever happened.
    let put_back = set_peek_offset(fd, old);
    let queue = peeked?;
    put_back.map_err(|e| fail("setsockopt(SO_PEEK_OFF) back to its old value", e))?;
    Ok(queue)
}

/// Peeks every message or byte queued in `fd`, whose peek offset is 0.
fn peek_all(
    file: &LiveFile,
    fd: BorrowedFd<'_>,
    ty: SavedType,
    diag: &UnixDiag,
) -> Result<Queue, FileError> {
    let fail = |op, source: io::Error| FileError::Dump {
        pid: file.pid,
        fd: file.fd,
        what: file.link.clone(),
        op,
        source,
    };
    let unsupported = |kind: String| FileError::Unsupported {
        pid: file.pid,
        fd: file.fd,
        kind,
    };
    let stream = ty == SavedType::Stream;
    let mut queue = Queue::default();
    let mut buf = vec![0u8; PEEK_CHUNK];
    let mut space = vec![MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let mut flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
    if !stream {
        // Return a message's full length even when it is longer than the buffer.
        flags |= RecvFlags::TRUNC;
    }
    loop {
        if stream
            && diag
                .rqueue
                .is_some_and(|total| queue.bytes.len() >= total as usize)
        {
            break;
        }
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = match recvmsg(fd, &mut [IoSliceMut::new(&mut buf)], &mut control, flags) {
            Ok(msg) => msg,
            Err(Errno::AGAIN) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(fail("recvmsg(MSG_PEEK)", e.into())),
        };
        let mut rights = msg.flags.contains(ReturnFlags::CTRUNC);
        for cmsg in control.drain() {
            // Descriptors passed in the queue were installed in pipecr by the peek;
            // dropping the message closes them again.
            if matches!(cmsg, RecvAncillaryMessage::ScmRights(_)) {
                rights = true;
            }
        }
        if rights {
            return Err(unsupported(format!(
                "unix {} socket with file descriptors (SCM_RIGHTS) in its queue",
                type_name(ty)
            )));
        }
        if stream {
            if msg.bytes == 0 {
                // End of file: the peer shut down or closed.
                break;
            }
            queue.bytes.extend_from_slice(&buf[..msg.bytes]);
            continue;
        }
        if msg.bytes > buf.len() {
            // Truncated: the peek offset moved by the buffer's length only. Go back to
            // the message's start and peek it again whole.
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
        if msg.bytes == 0
            && ty == SavedType::Seqpacket
            && diag.shut_read
            && diag
                .rqueue
                .is_none_or(|total| queue.bytes.len() >= total as usize)
        {
            // A shut-down seqpacket socket returns 0 at the end of its queue (and a
            // zero-length message there cannot be told from it).
            break;
        }
        queue.bytes.extend_from_slice(&buf[..msg.bytes]);
        queue.lengths.push(msg.bytes as u32);
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

/// Creates the socketpair for the saved end `sock` (open file `id`), fills both queues,
/// applies the shutdowns, and leaves the peer's end in [`PendingPeers`].
fn create_pair(
    id: u64,
    sock: &proto::UnixSocket,
    ctx: &mut RestoreCtx<'_>,
) -> Result<OwnedFd, FileError> {
    let fail = |op, source: io::Error| FileError::Restore {
        id,
        what: format!("unix socket:[{}]", sock.inode),
        op,
        source,
    };
    if sock.external {
        return Err(invalid(
            id,
            format!(
                "unix socket:[{}] is connected to socket:[{}], which no process of the dumped tree holds; reconnecting it to a descriptor supplied at restore is not supported yet",
                sock.inode, sock.peer_inode
            ),
        ));
    }
    let ty = match SavedType::try_from(sock.r#type) {
        Ok(SavedType::Stream) => SocketType::STREAM,
        Ok(SavedType::Dgram) => SocketType::DGRAM,
        Ok(SavedType::Seqpacket) => SocketType::SEQPACKET,
        _ => {
            return Err(invalid(
                id,
                format!("unix socket of unknown type {}", sock.r#type),
            ));
        }
    };
    // The peer's record, found before anything is created.
    let peer = if sock.peer_inode == 0 {
        None
    } else {
        let peer = ctx
            .open_files()?
            .iter()
            .find_map(|f| match &f.kind {
                Some(open_file::Kind::UnixSocket(s)) if s.inode == sock.peer_inode => {
                    Some((f.id, s.clone()))
                }
                _ => None,
            })
            .ok_or_else(|| {
                invalid(
                    id,
                    format!(
                        "the peer socket:[{}] of unix socket:[{}] is not in the image and not marked external",
                        sock.peer_inode, sock.inode
                    ),
                )
            })?;
        if peer.1.peer_inode != sock.inode || peer.1.r#type != sock.r#type {
            return Err(invalid(
                id,
                format!(
                    "unix socket:[{}] and its peer socket:[{}] (open file {}) do not match",
                    sock.inode, sock.peer_inode, peer.0
                ),
            ));
        }
        Some(peer)
    };
    let (ours, theirs) = socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None)
        .map_err(|e| fail("socketpair", e.into()))?;
    // The bytes queued in one end were sent by the other: send them again through it.
    let own_queue = saved_queue(id, sock, ctx)?;
    refill(theirs.as_fd(), &own_queue, sock).map_err(|e| fail("send (refilling the queue)", e))?;
    if let Some((peer_id, peer)) = &peer {
        let peer_queue = saved_queue(*peer_id, peer, ctx)?;
        refill(ours.as_fd(), &peer_queue, peer).map_err(|e| FileError::Restore {
            id: *peer_id,
            what: format!("unix socket:[{}]", peer.inode),
            op: "send (refilling the queue)",
            source: e,
        })?;
    }
    // Shutdowns last: a shut-down end accepts no more bytes for its queue.
    apply_shutdown(ours.as_fd(), sock).map_err(|e| fail("shutdown", e))?;
    match peer {
        Some((peer_id, peer)) => {
            apply_shutdown(theirs.as_fd(), &peer).map_err(|e| FileError::Restore {
                id: peer_id,
                what: format!("unix socket:[{}]", peer.inode),
                op: "shutdown",
                source: e,
            })?;
            ctx.state::<PendingPeers>().ends.insert(peer.inode, theirs);
        }
        // The peer had been closed before the dump: close it again.
        None => drop(theirs),
    }
    Ok(ours)
}

/// The saved queue of `sock` (open file `id`), checked against its message lengths.
fn saved_queue(
    id: u64,
    sock: &proto::UnixSocket,
    ctx: &RestoreCtx<'_>,
) -> Result<Vec<u8>, FileError> {
    let bytes = match &sock.queue {
        Some(r) => ctx.image.read_data(r)?,
        None => Vec::new(),
    };
    let stream = sock.r#type == SavedType::Stream as i32;
    let total: u64 = sock.message_lengths.iter().map(|&l| u64::from(l)).sum();
    if (stream && !sock.message_lengths.is_empty()) || (!stream && total != bytes.len() as u64) {
        return Err(invalid(
            id,
            format!(
                "unix socket:[{}]: message lengths (sum {total}) do not match its {} queued bytes",
                sock.inode,
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Sends `bytes` through `through`, one `send` per saved message (datagram, seqpacket) or
/// all of them (stream), raising the send buffer when the queue does not fit in it.
fn refill(through: BorrowedFd<'_>, bytes: &[u8], sock: &proto::UnixSocket) -> io::Result<()> {
    if bytes.is_empty() && sock.message_lengths.is_empty() {
        return Ok(());
    }
    let original = sockopt::socket_send_buffer_size(through)?;
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let send_one = |msg: &[u8], whole: bool| -> io::Result<usize> {
        loop {
            match send(through, msg, flags) {
                Ok(n) if whole && n != msg.len() => {
                    return Err(io::Error::other("a message was sent in part"));
                }
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                // The queued bytes are charged to the sender's buffer until read: grow it
                // (SO_SNDBUFFORCE as root, else up to net.core.wmem_max) and try again.
                Err(e @ (Errno::AGAIN | Errno::MSGSIZE | Errno::NOBUFS)) => {
                    let now = sockopt::socket_send_buffer_size(through)?;
                    let want = now.max(msg.len() + 4096);
                    let grown = now < MAX_SNDBUF
                        && match sockopt::set_socket_send_buffer_size_force(through, want) {
                            Ok(()) => true,
                            Err(Errno::PERM) => {
                                sockopt::set_socket_send_buffer_size(through, want)?;
                                sockopt::socket_send_buffer_size(through)? > now
                            }
                            Err(e) => return Err(e.into()),
                        };
                    if !grown {
                        return Err(io::Error::other(format!(
                            "{} queued bytes do not fit in a send buffer of {now} bytes ({e}; \
                             a larger one needs CAP_NET_ADMIN or a larger net.core.wmem_max)",
                            bytes.len()
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if sock.message_lengths.is_empty() {
        let mut off = 0;
        while off < bytes.len() {
            off += send_one(&bytes[off..], false)?;
        }
    } else {
        let mut off = 0;
        for &len in &sock.message_lengths {
            let msg = &bytes[off..off + len as usize];
            send_one(msg, true)?;
            off += len as usize;
        }
    }
    // Give the socket back the buffer size a new socket has (the kernel doubles what it
    // is given); the bytes already queued stay.
    if sockopt::socket_send_buffer_size(through)? != original {
        match sockopt::set_socket_send_buffer_size_force(through, original / 2) {
            Err(Errno::PERM) => sockopt::set_socket_send_buffer_size(through, original / 2)?,
            other => other?,
        }
    }
    Ok(())
}

/// Applies the saved shutdown state of `sock` to `fd`.
fn apply_shutdown(fd: BorrowedFd<'_>, sock: &proto::UnixSocket) -> io::Result<()> {
    let how = match (sock.shut_read, sock.shut_write) {
        (true, true) => Shutdown::Both,
        (true, false) => Shutdown::Read,
        (false, true) => Shutdown::Write,
        (false, false) => return Ok(()),
    };
    Ok(shutdown(fd, how)?)
}

fn invalid(id: u64, reason: String) -> FileError {
    FileError::Invalid { id, reason }
}

fn type_name(ty: SavedType) -> &'static str {
    match ty {
        SavedType::Stream => "stream",
        SavedType::Dgram => "datagram",
        SavedType::Seqpacket => "seqpacket",
        SavedType::Unspecified => "unknown-type",
    }
}

/// Words for a socket no kind claims, for the error that stops the dump: its family,
/// type, state and address where they say what it is ("unix stream socket listening on
/// /run/x.sock", "TCP socket", "netlink socket", ...).
pub fn describe_socket(fd: BorrowedFd<'_>) -> String {
    let ty = match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => "stream",
        Ok(SocketType::DGRAM) => "datagram",
        Ok(SocketType::SEQPACKET) => "seqpacket",
        Ok(SocketType::RAW) => "raw",
        _ => "",
    };
    let Ok(domain) = sockopt::socket_domain(fd) else {
        return "socket".into();
    };
    match domain {
        AddressFamily::UNIX => describe_unix(fd, ty),
        AddressFamily::INET | AddressFamily::INET6 => {
            let v = if domain == AddressFamily::INET {
                ""
            } else {
                "v6"
            };
            let proto = match ty {
                "stream" => "TCP",
                "datagram" => "UDP",
                _ => "raw IP",
            };
            let listening = sockopt::socket_acceptconn(fd).unwrap_or(false);
            let local = rustix::net::getsockname(fd)
                .ok()
                .and_then(|a| std::net::SocketAddr::try_from(a).ok());
            match (local, listening) {
                (Some(a), true) => format!("{proto}{v} socket listening on {a}"),
                (Some(a), false) if a.port() != 0 => format!("{proto}{v} socket bound to {a}"),
                _ => format!("{proto}{v} socket"),
            }
        }
        AddressFamily::NETLINK => "netlink socket".into(),
        AddressFamily::PACKET => "packet socket".into(),
        other => format!("socket of address family {}", other.as_raw()),
    }
}

fn describe_unix(fd: BorrowedFd<'_>, ty: &str) -> String {
    let name = |addr: Option<SocketAddrAny>| {
        let addr = addr?;
        if unnamed(addr.clone()) {
            return None;
        }
        let a = SocketAddrUnix::try_from(addr).ok()?;
        if let Some(p) = a.path() {
            Some(p.to_string_lossy().into_owned())
        } else {
            a.abstract_name()
                .map(|n| format!("@{}", String::from_utf8_lossy(n)))
        }
    };
    let local = name(rustix::net::getsockname(fd).ok());
    if sockopt::socket_acceptconn(fd).unwrap_or(false) {
        return match local {
            Some(l) => format!("unix {ty} socket listening on {l}"),
            None => format!("listening unix {ty} socket"),
        };
    }
    match (local, rustix::net::getpeername(fd)) {
        (Some(l), Ok(p)) => match name(p) {
            Some(p) => format!("unix {ty} socket bound to {l}, connected to {p}"),
            None => format!("unix {ty} socket bound to {l}, connected"),
        },
        (Some(l), Err(_)) => format!("unix {ty} socket bound to {l}"),
        (None, Ok(p)) => match name(p) {
            Some(p) => format!("unix {ty} socket connected to {p}"),
            None => format!("unix {ty} socket"),
        },
        (None, Err(_)) => format!("unconnected unix {ty} socket"),
    }
}
