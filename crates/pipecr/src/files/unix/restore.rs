//! Creating unix sockets again, all in the process that creates the tree's open files.
//!
//! A socket is created with whatever it is tied to ([`PendingPeers::build`]), the first
//! time one of them is asked for: a connected pair together (a `socketpair`, or through a
//! stand-in listener bound to the accepted side's name, so both ends keep their names);
//! a datagram socket after the socket it is connected to; a listener with the clients of
//! its waiting connections, each connected to it again in queue order. The ones not
//! asked for yet wait in [`PendingPeers`] under their saved inode.
//!
//! Queues are refilled once every open file of the tree exists ([`PendingPeers::fill`],
//! from the kind's `complete`), so that descriptors in flight can be sent again: each
//! socket's bytes are sent again by its peer (or, for a datagram socket, by a socket with
//! the saved sender's address), one `sendmsg` per message, or per stretch of a stream
//! between two points where descriptors or credentials travel. Then shutdowns, then
//! options (`SO_PASSCRED` last: set earlier, the refill would add pipecr's credentials to
//! every message). Paths bound only to be connected to (a socket whose file had been
//! removed, a stand-in listener) are removed when the state is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use pipecr_image::Image;
use pipecr_image::proto::{self, SocketType as SavedType, UnixSocketState, open_file};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, Shutdown, SocketAddrUnix,
    SocketFlags, SocketType, UCred, sendmsg, sendmsg_addr, shutdown, socket_with, socketpair,
    sockopt,
};

use super::super::kind::FileError;
use super::dump::display_name;

/// Largest send buffer restore asks for when refilling a queue (`SO_SNDBUFFORCE`; the
/// kernel doubles it).
const MAX_SNDBUF: usize = 1 << 30;

/// The unix sockets of an image created so far: this kind's state in a `RestoreCtx`.
#[derive(Default)]
pub struct PendingPeers {
    /// Every unix socket record of the image, by inode (read on first use).
    index: Option<Index>,
    /// Created and not yet handed out, by inode.
    ready: BTreeMap<u64, OwnedFd>,
    /// A copy of every socket created, by inode: what queues are refilled through.
    handles: BTreeMap<u64, OwnedFd>,
    /// Stand-in peers, by the inode of the socket (or waiting connection) they serve:
    /// for a peer that was closed before the dump (closed again once the queue is
    /// refilled).
    partners: BTreeMap<u64, OwnedFd>,
    /// Queues refilled already.
    filled: bool,
    /// Paths to remove once the queues are refilled.
    unlink: Vec<PathBuf>,
    /// Paths bound for good: removed again if the queues were never refilled (the
    /// restore failed before).
    bound: Vec<PathBuf>,
}

impl PendingPeers {
    /// True when every socket created with another was handed out.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }
}

impl Drop for PendingPeers {
    fn drop(&mut self) {
        for p in &self.unlink {
            let _ = std::fs::remove_file(p);
        }
        if !self.filled {
            for p in &self.bound {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The unix socket records of an image.
struct Index {
    /// Open files: inode -> (open-file id, record).
    sockets: BTreeMap<u64, (u64, proto::UnixSocket)>,
    /// Clients of connections waiting in a listener: client inode -> listener inode.
    clients: BTreeMap<u64, u64>,
    /// Waiting connections (server side): inode -> listener inode.
    waiting: BTreeMap<u64, u64>,
}

fn invalid(id: u64, reason: String) -> FileError {
    FileError::Invalid { id, reason }
}

fn restore_err(id: u64, inode: u64, op: &'static str, source: io::Error) -> FileError {
    FileError::Restore {
        id,
        what: format!("unix socket:[{inode}]"),
        op,
        source,
    }
}

/// The socket type of a record.
fn socket_type(id: u64, sock: &proto::UnixSocket) -> Result<SocketType, FileError> {
    match SavedType::try_from(sock.r#type) {
        Ok(SavedType::Stream) => Ok(SocketType::STREAM),
        Ok(SavedType::Dgram) => Ok(SocketType::DGRAM),
        Ok(SavedType::Seqpacket) => Ok(SocketType::SEQPACKET),
        _ => Err(invalid(
            id,
            format!("unix socket of unknown type {}", sock.r#type),
        )),
    }
}

fn state_of(sock: &proto::UnixSocket) -> UnixSocketState {
    UnixSocketState::try_from(sock.state).unwrap_or(UnixSocketState::Unspecified)
}

/// The address for saved name bytes (a path, or a leading NUL for an abstract name).
fn address(name: &[u8]) -> io::Result<SocketAddrUnix> {
    match name.first() {
        Some(0) => Ok(SocketAddrUnix::new_abstract_name(&name[1..])?),
        _ => Ok(SocketAddrUnix::new(std::ffi::OsStr::from_bytes(name))?),
    }
}

fn is_path(name: &[u8]) -> bool {
    name.first().is_some_and(|&b| b != 0)
}

fn new_socket(ty: SocketType) -> io::Result<OwnedFd> {
    Ok(socket_with(
        AddressFamily::UNIX,
        ty,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

/// Makes `path` free for a bind: removes a socket file that the dumped tree left (the
/// same device and inode as saved) or that nothing listens on any more; anything else
/// there stops the restore.
fn clear_stale(path: &std::path::Path, dev: u64, ino: u64, ty: SocketType) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let in_use = || {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} exists and is not a socket file left by the dumped tree",
                path.display()
            ),
        )
    };
    if !meta.file_type().is_socket() {
        return Err(in_use());
    }
    let stale = (meta.dev(), meta.ino()) == (dev, ino) || {
        let probe = new_socket(ty)?;
        matches!(
            rustix::net::connect(&probe, &SocketAddrUnix::new(path)?),
            Err(Errno::CONNREFUSED)
        )
    };
    if !stale {
        return Err(in_use());
    }
    std::fs::remove_file(path)
}

impl PendingPeers {
    /// Whether the records of the image must be given ([`PendingPeers::load`]) first.
    pub fn needs_index(&self) -> bool {
        self.index.is_none()
    }

    /// Whether the queues were refilled ([`PendingPeers::fill`]).
    pub fn is_filled(&self) -> bool {
        self.filled
    }

    /// Ids of the open files in flight in the queues of the sockets created.
    pub fn carried_files(&self) -> BTreeSet<u64> {
        let Some(index) = &self.index else {
            return BTreeSet::new();
        };
        index
            .sockets
            .values()
            .filter(|(_, s)| self.handles.contains_key(&s.inode))
            .flat_map(|(_, s)| carried_files(s))
            .collect()
    }

    /// Reads the unix socket records among `files` (every open file of the image).
    pub fn load(&mut self, files: &[proto::OpenFile]) {
        self.index.get_or_insert_with(|| {
            let mut index = Index {
                sockets: BTreeMap::new(),
                clients: BTreeMap::new(),
                waiting: BTreeMap::new(),
            };
            for f in files {
                if let Some(open_file::Kind::UnixSocket(s)) = &f.kind {
                    index.sockets.insert(s.inode, (f.id, s.clone()));
                    for w in &s.waiting {
                        index.waiting.insert(w.inode, s.inode);
                        if w.peer_inode != 0 {
                            index.clients.insert(w.peer_inode, s.inode);
                        }
                    }
                }
            }
            index
        });
    }

    /// The socket of record `sock` (open file `id`): created now, with what it is tied
    /// to, unless it was created with another already.
    pub fn take(&mut self, id: u64, sock: &proto::UnixSocket) -> Result<OwnedFd, FileError> {
        if self.index.is_none() {
            return Err(invalid(
                id,
                "unix sockets restored before the image was read".into(),
            ));
        }
        if !self.handles.contains_key(&sock.inode) {
            self.build(sock.inode)?;
        }
        self.ready.remove(&sock.inode).ok_or_else(|| {
            invalid(
                id,
                format!("unix socket:[{}] was asked for twice", sock.inode),
            )
        })
    }

    fn record(&self, inode: u64) -> Option<(u64, proto::UnixSocket)> {
        self.index.as_ref()?.sockets.get(&inode).cloned()
    }

    /// Records a created open-file socket.
    fn created(&mut self, inode: u64, fd: OwnedFd, id: u64) -> Result<(), FileError> {
        let copy = fd
            .try_clone()
            .map_err(|e| restore_err(id, inode, "dup", e))?;
        self.handles.insert(inode, copy);
        self.ready.insert(inode, fd);
        Ok(())
    }

    /// Binds `fd` to the saved name of `sock` (nothing for an unnamed one), removing a
    /// stale socket file first, giving the file its saved mode and owner, and noting a
    /// path to remove again.
    fn bind_name(
        &mut self,
        id: u64,
        fd: BorrowedFd<'_>,
        sock: &proto::UnixSocket,
        ty: SocketType,
        temporary: bool,
    ) -> Result<(), FileError> {
        if sock.name.is_empty() {
            return Ok(());
        }
        let fail = |op, e| restore_err(id, sock.inode, op, e);
        let addr = address(&sock.name).map_err(|e| fail("bind (name)", e))?;
        if is_path(&sock.name) {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&sock.name));
            clear_stale(path, sock.file_dev, sock.file_inode, ty).map_err(|e| {
                fail(
                    "bind (the path is taken)",
                    io::Error::new(e.kind(), format!("{}: {e}", path.display())),
                )
            })?;
            rustix::net::bind(fd, &addr).map_err(|e| {
                fail(
                    "bind",
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("{}: {e}", path.display()),
                    ),
                )
            })?;
            if sock.file_mode != 0 && !temporary {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    path,
                    std::fs::Permissions::from_mode(sock.file_mode & 0o7777),
                )
                .map_err(|e| fail("chmod (socket file)", e))?;
                std::os::unix::fs::lchown(path, Some(sock.file_uid), Some(sock.file_gid))
                    .map_err(|e| fail("chown (socket file)", e))?;
            }
            if temporary || sock.name_unlinked {
                self.unlink.push(path.to_owned());
            } else {
                self.bound.push(path.to_owned());
            }
        } else {
            rustix::net::bind(fd, &addr).map_err(|e| {
                fail(
                    "bind",
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("{}: {e}", display_name(&sock.name)),
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Creates socket `inode` with whatever it is tied to.
    fn build(&mut self, inode: u64) -> Result<(), FileError> {
        if self.handles.contains_key(&inode) {
            return Ok(());
        }
        let listener = self
            .index
            .as_ref()
            .and_then(|i| i.clients.get(&inode).copied());
        if let Some(listener) = listener {
            return self.build(listener);
        }
        let Some((id, sock)) = self.record(inode) else {
            return Err(invalid(
                0,
                format!("unix socket:[{inode}] is referred to but not in the image"),
            ));
        };
        match state_of(&sock) {
            UnixSocketState::Listening => self.build_listener(id, &sock),
            UnixSocketState::Unconnected => {
                let ty = socket_type(id, &sock)?;
                let fd = new_socket(ty).map_err(|e| restore_err(id, inode, "socket", e))?;
                self.bind_name(id, fd.as_fd(), &sock, ty, false)?;
                self.created(inode, fd, id)
            }
            UnixSocketState::Connected | UnixSocketState::Unspecified => {
                self.build_connected(id, &sock)
            }
        }
    }

    /// A connected socket: with its peer, or with a stand-in for a peer since closed.
    fn build_connected(&mut self, id: u64, sock: &proto::UnixSocket) -> Result<(), FileError> {
        let ty = socket_type(id, sock)?;
        if sock.external {
            return Err(invalid(
                id,
                format!(
                    "unix socket:[{}] is connected to socket:[{}]{}, which no process of the \
                     dumped tree holds; supply a descriptor for it (--inherit-fd) or, for a \
                     named peer, have it connect again (--external-unix PATH)",
                    sock.inode,
                    sock.peer_inode,
                    if sock.peer_name.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", display_name(&sock.peer_name))
                    }
                ),
            ));
        }
        let listener = self
            .index
            .as_ref()
            .and_then(|i| i.waiting.get(&sock.peer_inode).copied());
        if let Some(listener) = listener {
            // A client whose connection waits in a listener of the tree.
            return self.build(listener);
        }
        let peer = if sock.peer_inode == 0 {
            None
        } else {
            let (peer_id, peer) = self.record(sock.peer_inode).ok_or_else(|| {
                invalid(
                    id,
                    format!(
                        "the peer socket:[{}] of unix socket:[{}] is not in the image and not marked external",
                        sock.peer_inode, sock.inode
                    ),
                )
            })?;
            if peer.r#type != sock.r#type {
                return Err(invalid(
                    id,
                    format!(
                        "unix socket:[{}] and its peer socket:[{}] (open file {peer_id}) do not match",
                        sock.inode, sock.peer_inode
                    ),
                ));
            }
            Some((peer_id, peer))
        };
        let mutual = peer
            .as_ref()
            .is_none_or(|(_, p)| p.peer_inode == sock.inode);
        if ty == SocketType::DGRAM && !mutual {
            // Connected to a socket that is not connected back: that one first, then
            // connect to its name.
            let Some((peer_id, peer)) = peer else {
                return Ok(());
            };
            self.build(peer.inode)?;
            if peer.name.is_empty() {
                return Err(invalid(
                    peer_id,
                    format!(
                        "unix datagram socket:[{}] is connected to the unnamed socket:[{}], \
                         which is not connected back",
                        sock.inode, peer.inode
                    ),
                ));
            }
            let fd = new_socket(ty).map_err(|e| restore_err(id, sock.inode, "socket", e))?;
            self.bind_name(id, fd.as_fd(), sock, ty, false)?;
            let addr =
                address(&peer.name).map_err(|e| restore_err(id, sock.inode, "connect", e))?;
            rustix::net::connect(&fd, &addr)
                .map_err(|e| restore_err(id, sock.inode, "connect", e.into()))?;
            return self.created(sock.inode, fd, id);
        }
        if let Some((peer_id, peer)) = peer.as_ref().filter(|_| !mutual) {
            return Err(invalid(
                id,
                format!(
                    "unix socket:[{}] and its peer socket:[{}] (open file {peer_id}) do not match",
                    sock.inode, peer.inode
                ),
            ));
        }
        self.build_pair(id, sock, peer, ty)
    }

    /// Two connected ends (`peer` `None`: a stand-in for a peer since closed).
    fn build_pair(
        &mut self,
        id: u64,
        sock: &proto::UnixSocket,
        peer: Option<(u64, proto::UnixSocket)>,
        ty: SocketType,
    ) -> Result<(), FileError> {
        let fail = |op, e: io::Error| restore_err(id, sock.inode, op, e);
        let peer_name: &[u8] = peer.as_ref().map_or(&[], |(_, p)| &p.name);
        let (ours, theirs) = if sock.name.is_empty() && peer_name.is_empty() {
            socketpair(
                AddressFamily::UNIX,
                ty,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )
            .map_err(|e| fail("socketpair", e.into()))?
        } else if ty == SocketType::DGRAM {
            // Two datagram sockets connected to each other by name.
            let ours = new_socket(ty).map_err(|e| fail("socket", e))?;
            let theirs = new_socket(ty).map_err(|e| fail("socket", e))?;
            self.bind_name(id, ours.as_fd(), sock, ty, false)?;
            if let Some((peer_id, p)) = &peer {
                self.bind_name(*peer_id, theirs.as_fd(), p, ty, false)?;
            }
            if sock.name.is_empty() || peer_name.is_empty() {
                return Err(invalid(
                    id,
                    format!(
                        "unix datagram sockets socket:[{}] and socket:[{}] are connected to each \
                         other but only one has a name",
                        sock.inode, sock.peer_inode
                    ),
                ));
            }
            rustix::net::connect(&ours, &address(peer_name).map_err(|e| fail("connect", e))?)
                .map_err(|e| fail("connect", e.into()))?;
            rustix::net::connect(
                &theirs,
                &address(&sock.name).map_err(|e| fail("connect", e))?,
            )
            .map_err(|e| fail("connect", e.into()))?;
            (ours, theirs)
        } else {
            // One end was accepted from a listener (it carries the listener's name): a
            // stand-in listener bound to that name accepts the other end, which binds its
            // own name first.
            let ours_accepted = !sock.name.is_empty()
                && (peer_name.is_empty() || self.is_listener_name(&sock.name) || {
                    !self.is_listener_name(peer_name) && sock.inode < sock.peer_inode
                });
            let (acc, acc_id, client, client_id) = if ours_accepted {
                let client = peer.clone().map(|(i, p)| (p, i));
                (
                    sock.clone(),
                    id,
                    client.as_ref().map(|c| c.0.clone()),
                    client.map(|c| c.1),
                )
            } else {
                let Some((peer_id, p)) = peer.clone() else {
                    return Err(invalid(id, "an accepted end without a peer".into()));
                };
                (p, peer_id, Some(sock.clone()), Some(id))
            };
            let listener = new_socket(ty).map_err(|e| fail("socket", e))?;
            let stand_in = proto::UnixSocket {
                name_unlinked: false,
                file_mode: 0,
                ..acc.clone()
            };
            self.bind_name(acc_id, listener.as_fd(), &stand_in, ty, true)?;
            rustix::net::listen(&listener, 1).map_err(|e| fail("listen", e.into()))?;
            let connecting = new_socket(ty).map_err(|e| fail("socket", e))?;
            if let (Some(c), Some(cid)) = (&client, client_id) {
                self.bind_name(cid, connecting.as_fd(), c, ty, false)?;
            }
            let addr = address(&acc.name).map_err(|e| fail("connect", e))?;
            rustix::net::connect(&connecting, &addr).map_err(|e| fail("connect", e.into()))?;
            let accepted =
                rustix::net::accept_with(&listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
                    .map_err(|e| fail("accept", e.into()))?;
            drop(listener);
            // The stand-in's path goes now: the real listener may bind it next.
            if is_path(&acc.name) {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(&acc.name));
                let _ = std::fs::remove_file(&path);
                self.unlink.retain(|p| *p != path);
                if acc.name_unlinked {
                    self.unlink.push(path);
                }
            }
            if ours_accepted {
                (accepted, connecting)
            } else {
                (connecting, accepted)
            }
        };
        self.created(sock.inode, ours, id)?;
        match peer {
            Some((peer_id, p)) => self.created(p.inode, theirs, peer_id)?,
            None => {
                self.partners.insert(sock.inode, theirs);
            }
        }
        Ok(())
    }

    fn is_listener_name(&self, name: &[u8]) -> bool {
        self.index.as_ref().is_some_and(|i| {
            i.sockets
                .values()
                .any(|(_, s)| state_of(s) == UnixSocketState::Listening && s.name == name)
        })
    }

    /// A listening socket, bound and listening with its backlog, then the clients of its
    /// waiting connections connected to it in queue order. Accepted sockets that carry
    /// its name are created first (their stand-in listener needs the name free).
    fn build_listener(&mut self, id: u64, sock: &proto::UnixSocket) -> Result<(), FileError> {
        let ty = socket_type(id, sock)?;
        let fail = |op, e: io::Error| restore_err(id, sock.inode, op, e);
        let accepted: Vec<u64> = self
            .index
            .iter()
            .flat_map(|i| i.sockets.values())
            .filter(|(_, s)| {
                // An external one (its client outside the tree) is never created: the
                // descriptor supplied for it stands in (crate::restore::external).
                s.name == sock.name
                    && !s.external
                    && matches!(
                        state_of(s),
                        UnixSocketState::Connected | UnixSocketState::Unspecified
                    )
            })
            .map(|(_, s)| s.inode)
            .collect();
        for inode in accepted {
            self.build(inode)?;
        }
        if sock.name.is_empty() {
            return Err(invalid(
                id,
                format!("listening unix socket:[{}] without a name", sock.inode),
            ));
        }
        let fd = new_socket(ty).map_err(|e| fail("socket", e))?;
        self.bind_name(id, fd.as_fd(), sock, ty, false)?;
        let backlog = i32::try_from(sock.backlog).unwrap_or(i32::MAX);
        rustix::net::listen(&fd, backlog).map_err(|e| fail("listen", e.into()))?;
        let addr = address(&sock.name).map_err(|e| fail("connect", e))?;
        for w in &sock.waiting {
            let client = new_socket(ty).map_err(|e| fail("socket", e))?;
            let saved = if w.peer_inode == 0 {
                None
            } else {
                Some(self.record(w.peer_inode).ok_or_else(|| {
                    invalid(
                        id,
                        format!(
                            "unix socket:[{}] listening on {} has a connection waiting from \
                             socket:[{}], which is not in the image",
                            sock.inode,
                            display_name(&sock.name),
                            w.peer_inode
                        ),
                    )
                })?)
            };
            if let Some((cid, c)) = &saved {
                self.bind_name(*cid, client.as_fd(), c, ty, false)?;
            }
            rustix::net::connect(&client, &addr)
                .map_err(|e| fail("connect (a waiting connection)", e.into()))?;
            match saved {
                Some((cid, c)) => self.created(c.inode, client, cid)?,
                None => {
                    self.partners.insert(w.inode, client);
                }
            }
        }
        self.created(sock.inode, fd, id)
    }

    /// Refills every queue of the sockets created, then applies shutdowns and options:
    /// once, when every open file of the tree exists (`files` are they, by id: the
    /// descriptors in flight are sent again from them).
    pub fn fill(&mut self, image: &Image, files: &BTreeMap<u64, OwnedFd>) -> Result<(), FileError> {
        if self.filled {
            return Ok(());
        }
        self.filled = true;
        let Some(index) = &self.index else {
            return Ok(());
        };
        let built: Vec<(u64, proto::UnixSocket)> = index
            .sockets
            .values()
            .filter(|(_, s)| self.handles.contains_key(&s.inode))
            .cloned()
            .collect();
        let mut senders = Senders::default();
        for (id, sock) in &built {
            if state_of(sock) == UnixSocketState::Listening {
                for w in &sock.waiting {
                    let through = match self.handles.get(&w.peer_inode) {
                        Some(c) => c.as_fd(),
                        None => match self.partners.get(&w.inode) {
                            Some(p) => p.as_fd(),
                            None => continue,
                        },
                    };
                    let bytes = saved_queue(*id, w, image)?;
                    refill_stream(through, &bytes, w, files).map_err(|e| {
                        restore_err(*id, w.inode, "send (refilling a waiting connection)", e)
                    })?;
                }
                continue;
            }
            let bytes = saved_queue(*id, sock, image)?;
            if bytes.is_empty() && sock.message_lengths.is_empty() {
                continue;
            }
            let fail = |e| restore_err(*id, sock.inode, "send (refilling the queue)", e);
            let peer = self
                .handles
                .get(&sock.peer_inode)
                .filter(|_| sock.peer_inode != 0)
                .or_else(|| self.partners.get(&sock.inode))
                .map(|f| f.as_fd());
            if sock.r#type == SavedType::Dgram as i32 {
                self.refill_dgram(*id, sock, &bytes, peer, files, &mut senders)?;
            } else {
                let Some(peer) = peer else {
                    return Err(invalid(
                        *id,
                        format!(
                            "unix socket:[{}] holds queued bytes but has no peer to send them",
                            sock.inode
                        ),
                    ));
                };
                refill_stream(peer, &bytes, sock, files).map_err(fail)?;
            }
        }
        drop(senders);
        // Shutdowns last: a shut-down end accepts no more bytes for its queue.
        for (id, sock) in &built {
            if let Some(fd) = self.handles.get(&sock.inode) {
                apply_shutdown(fd.as_fd(), sock)
                    .map_err(|e| restore_err(*id, sock.inode, "shutdown", e))?;
            }
        }
        // Peers closed before the dump are closed again.
        self.partners.clear();
        for (id, sock) in &built {
            if let (Some(fd), Some(options)) = (self.handles.get(&sock.inode), &sock.options) {
                apply_options(fd.as_fd(), options)
                    .map_err(|(op, e)| restore_err(*id, sock.inode, op, e))?;
            }
        }
        // Remove the paths that were bound only to be connected to.
        for p in std::mem::take(&mut self.unlink) {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    /// Refills the queue of datagram socket `sock`: each message sent by a socket with
    /// its saved sender's address (its peer, another socket of the tree, or a stand-in
    /// bound to that address for the time of one send).
    fn refill_dgram(
        &self,
        id: u64,
        sock: &proto::UnixSocket,
        bytes: &[u8],
        peer: Option<BorrowedFd<'_>>,
        files: &BTreeMap<u64, OwnedFd>,
        senders: &mut Senders,
    ) -> Result<(), FileError> {
        let fail = |op, e: io::Error| restore_err(id, sock.inode, op, e);
        let peer_name: Vec<u8> = self
            .record(sock.peer_inode)
            .map(|(_, p)| p.name)
            .unwrap_or_default();
        let peer_mutual = peer.is_some()
            && self
                .record(sock.peer_inode)
                .is_none_or(|(_, p)| p.peer_inode == sock.inode);
        let to = if sock.name.is_empty() {
            None
        } else {
            Some(address(&sock.name).map_err(|e| fail("sendto", e))?)
        };
        let ty = SocketType::DGRAM;
        let mut off = 0usize;
        for (i, &len) in sock.message_lengths.iter().enumerate() {
            let msg = &bytes[off..off + len as usize];
            off += len as usize;
            let source: &[u8] = sock.sources.get(i).map_or(&[], Vec::as_slice);
            let anc = sock.ancillary.iter().find(|a| a.at == i as u64);
            // Through the peer when the message came from it (or from an unnamed
            // sender to an unnamed socket, which only its peer can reach).
            if peer_mutual && (source == peer_name.as_slice() || to.is_none()) {
                let Some(peer) = peer else {
                    return Err(invalid(id, "a datagram without its sender".into()));
                };
                send_one(peer, None, msg, anc, files, true)
                    .map_err(|e| fail("send (refilling the queue)", e))?;
                continue;
            }
            let Some(to) = &to else {
                return Err(invalid(
                    id,
                    format!(
                        "unix datagram socket:[{}] is unnamed and not connected to a socket \
                         of the tree: its queued messages cannot be sent to it again",
                        sock.inode
                    ),
                ));
            };
            let from = if source.is_empty() {
                None
            } else {
                self.index
                    .as_ref()
                    .and_then(|i| {
                        i.sockets.values().find(|(_, s)| {
                            s.name == source && state_of(s) != UnixSocketState::Listening
                        })
                    })
                    .and_then(|(_, s)| self.handles.get(&s.inode))
                    .map(|f| f.as_fd())
            };
            match from {
                Some(from) => send_one(from, Some(to), msg, anc, files, true)
                    .map_err(|e| fail("sendto (refilling the queue)", e))?,
                None if source.is_empty() => {
                    let s = senders.unnamed(ty).map_err(|e| fail("socket", e))?;
                    send_one(s, Some(to), msg, anc, files, true)
                        .map_err(|e| fail("sendto (refilling the queue)", e))?;
                }
                None => {
                    // A stand-in bound to the sender's address for one send.
                    let s = new_socket(ty).map_err(|e| fail("socket", e))?;
                    let addr = address(source).map_err(|e| fail("bind", e))?;
                    if is_path(source) {
                        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(source));
                        clear_stale(path, 0, 0, ty)
                            .map_err(|e| fail("bind (the sender's path)", e))?;
                    }
                    rustix::net::bind(&s, &addr).map_err(|e| {
                        fail(
                            "bind (a stand-in for the sender)",
                            io::Error::new(
                                io::Error::from(e).kind(),
                                format!("{}: {e}", display_name(source)),
                            ),
                        )
                    })?;
                    let sent = send_one(s.as_fd(), Some(to), msg, anc, files, true);
                    drop(s);
                    if is_path(source) {
                        let _ = std::fs::remove_file(std::ffi::OsStr::from_bytes(source));
                    }
                    sent.map_err(|e| fail("sendto (refilling the queue)", e))?;
                }
            }
        }
        Ok(())
    }
}

/// Unnamed sockets sending datagrams for senders that were unnamed.
#[derive(Default)]
struct Senders {
    unnamed: Option<OwnedFd>,
}

impl Senders {
    fn unnamed(&mut self, ty: SocketType) -> io::Result<BorrowedFd<'_>> {
        if self.unnamed.is_none() {
            self.unnamed = Some(new_socket(ty)?);
        }
        match &self.unnamed {
            Some(s) => Ok(s.as_fd()),
            None => Err(io::Error::other("no sender")),
        }
    }
}

/// The saved queue of `sock` (open file `id`), checked against its message lengths and
/// ancillary data.
pub fn saved_queue(id: u64, sock: &proto::UnixSocket, image: &Image) -> Result<Vec<u8>, FileError> {
    let bytes = match &sock.queue {
        Some(r) => image.read_data(r)?,
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
    let limit = if stream {
        bytes.len() as u64
    } else {
        sock.message_lengths.len() as u64
    };
    if sock.ancillary.iter().any(|a| a.at > limit)
        || sock.ancillary.windows(2).any(|w| w[0].at >= w[1].at)
        || (!sock.sources.is_empty() && sock.sources.len() != sock.message_lengths.len())
    {
        return Err(invalid(
            id,
            format!(
                "unix socket:[{}]: its ancillary data or senders do not match its queue",
                sock.inode
            ),
        ));
    }
    Ok(bytes)
}

/// Sends `bytes` through `through` (connected), one `sendmsg` per saved message
/// (seqpacket) or per stretch between two ancillary points (stream).
fn refill_stream(
    through: BorrowedFd<'_>,
    bytes: &[u8],
    sock: &proto::UnixSocket,
    files: &BTreeMap<u64, OwnedFd>,
) -> io::Result<()> {
    if sock.message_lengths.is_empty() {
        // Stream: cut at each ancillary point; each stretch carries the ancillary data
        // of its start.
        let mut bounds: Vec<(usize, Option<&proto::UnixAncillary>)> = vec![(0, None)];
        bounds.extend(sock.ancillary.iter().map(|a| (a.at as usize, Some(a))));
        for (i, &(start, anc)) in bounds.iter().enumerate() {
            let end = bounds.get(i + 1).map_or(bytes.len(), |b| b.0);
            if end > start {
                send_one(through, None, &bytes[start..end], anc, files, false)?;
            }
        }
        Ok(())
    } else {
        let mut off = 0usize;
        for (i, &len) in sock.message_lengths.iter().enumerate() {
            let msg = &bytes[off..off + len as usize];
            off += len as usize;
            let anc = sock.ancillary.iter().find(|a| a.at == i as u64);
            send_one(through, None, msg, anc, files, true)?;
        }
        Ok(())
    }
}

/// Sends `msg` (whole, or for a stream all of it in as many sends as it takes) with its
/// ancillary data, raising the send buffer when the queue does not fit in it.
fn send_one(
    through: BorrowedFd<'_>,
    to: Option<&SocketAddrUnix>,
    msg: &[u8],
    anc: Option<&proto::UnixAncillary>,
    files: &BTreeMap<u64, OwnedFd>,
    whole: bool,
) -> io::Result<()> {
    let original = sockopt::socket_send_buffer_size(through)?;
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    if let Some(a) = anc {
        for id in &a.file_ids {
            let f = files.get(id).ok_or_else(|| {
                io::Error::other(format!(
                    "open file {id}, in flight in the queue, was not created"
                ))
            })?;
            fds.push(f.as_fd());
        }
    }
    let mut creds = anc.filter(|a| a.pid != 0).map(|a| UCred {
        pid: rustix::process::Pid::from_raw(a.pid).unwrap_or_else(rustix::process::getpid),
        uid: rustix::process::Uid::from_raw(a.uid),
        gid: rustix::process::Gid::from_raw(a.gid),
    });
    let mut off = 0usize;
    let mut first = true;
    loop {
        let mut space = vec![std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if first {
            if !fds.is_empty() {
                control.push(SendAncillaryMessage::ScmRights(&fds));
            }
            if let Some(c) = creds {
                control.push(SendAncillaryMessage::ScmCredentials(c));
            }
        }
        let iov = [IoSlice::new(&msg[off..])];
        let sent = match to {
            Some(to) => sendmsg_addr(through, to, &iov, &mut control, flags),
            None => sendmsg(through, &iov, &mut control, flags),
        };
        match sent {
            Ok(n) if whole && n != msg.len() => {
                return Err(io::Error::other("a message was sent in part"));
            }
            Ok(n) => {
                off += n;
                first = false;
                if off >= msg.len() {
                    break;
                }
            }
            Err(Errno::INTR) => {}
            // The sender's pid is not a process now (a process of the tree not yet
            // created): the credentials keep their uid and gid and carry ours.
            Err(Errno::SRCH) if creds.is_some_and(|c| c.pid != rustix::process::getpid()) => {
                if let Some(c) = &mut creds {
                    c.pid = rustix::process::getpid();
                }
            }
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
                        msg.len()
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Give the socket back the buffer size it had (the kernel doubles what it is given);
    // the bytes already queued stay.
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
    match shutdown(fd, how) {
        // A datagram socket that is not connected (its peer closed) has nothing to shut.
        Err(Errno::NOTCONN) => Ok(()),
        other => Ok(other?),
    }
}

/// Sets the saved options on `fd`.
fn apply_options(
    fd: BorrowedFd<'_>,
    o: &proto::UnixSocketOptions,
) -> Result<(), (&'static str, io::Error)> {
    let set_buf = |force: fn(BorrowedFd<'_>, usize) -> rustix::io::Result<()>,
                   plain: fn(BorrowedFd<'_>, usize) -> rustix::io::Result<()>,
                   get: fn(BorrowedFd<'_>) -> rustix::io::Result<usize>,
                   saved: u32,
                   op: &'static str| {
        if saved == 0 || get(fd).is_ok_and(|now| now == saved as usize) {
            return Ok(());
        }
        // The kernel doubles what it is given.
        let half = (saved / 2) as usize;
        match force(fd, half) {
            Err(Errno::PERM) => plain(fd, half).map_err(|e| (op, e.into())),
            other => other.map_err(|e| (op, e.into())),
        }
    };
    set_buf(
        |f, v| sockopt::set_socket_send_buffer_size_force(f, v),
        |f, v| sockopt::set_socket_send_buffer_size(f, v),
        |f| sockopt::socket_send_buffer_size(f),
        o.sndbuf,
        "setsockopt(SO_SNDBUF)",
    )?;
    set_buf(
        |f, v| sockopt::set_socket_recv_buffer_size_force(f, v),
        |f, v| sockopt::set_socket_recv_buffer_size(f, v),
        |f| sockopt::socket_recv_buffer_size(f),
        o.rcvbuf,
        "setsockopt(SO_RCVBUF)",
    )?;
    if o.rcvlowat > 1 {
        crate::sys::sockopt::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, o.rcvlowat)
            .map_err(|e| ("setsockopt(SO_RCVLOWAT)", e))?;
    }
    for (us, which, op) in [
        (
            o.rcvtimeo_us,
            sockopt::Timeout::Recv,
            "setsockopt(SO_RCVTIMEO)",
        ),
        (
            o.sndtimeo_us,
            sockopt::Timeout::Send,
            "setsockopt(SO_SNDTIMEO)",
        ),
    ] {
        if us != 0 {
            sockopt::set_socket_timeout(fd, which, Some(std::time::Duration::from_micros(us)))
                .map_err(|e| (op, e.into()))?;
        }
    }
    if o.peek_off >= 0 {
        crate::sys::socket::set_peek_offset(fd, o.peek_off)
            .map_err(|e| ("setsockopt(SO_PEEK_OFF)", e))?;
    }
    if o.passcred {
        sockopt::set_socket_passcred(fd, true)
            .map_err(|e| ("setsockopt(SO_PASSCRED)", e.into()))?;
    }
    Ok(())
}

/// Ids of the open files a queue of `sock` (or of its waiting connections) carries.
pub fn carried_files(sock: &proto::UnixSocket) -> BTreeSet<u64> {
    sock.ancillary
        .iter()
        .chain(sock.waiting.iter().flat_map(|w| w.ancillary.iter()))
        .flat_map(|a| a.file_ids.iter().copied())
        .collect()
}
