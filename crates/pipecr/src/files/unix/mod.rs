//! Unix sockets (`AF_UNIX`) of every shape: stream, datagram and seqpacket; unnamed,
//! bound to a path (also one removed since) or to an abstract name; never connected,
//! listening (with the connections waiting to be accepted), connected (accepted or
//! connecting, or a socketpair end), shut down in either direction; with the bytes,
//! message boundaries, sender addresses, descriptors and credentials queued in them,
//! and the options programs set.
//!
//! Each socket held by the tree is one open file (`socket:[N]`) saved as a `UnixSocket`
//! record (`unix/dump.rs`): what `unix_diag` tells ([`crate::sys::sockdiag`]: its peer, state,
//! name, socket file, the clients waiting in a listener), its options, and its queue
//! read with `MSG_PEEK` from peek offset 0 (`SO_PEEK_OFF`), so nothing is consumed and
//! the process's peek offset is put back. Peeking a message that carries descriptors
//! (`SCM_RIGHTS`) installs them in pipecr: they are the files in flight, and each is
//! saved like any open file of the tree ([`DumpSink::file_id_of`]), referred to by id.
//! The connections waiting in a listener can only be reached by accepting them: the
//! dump takes them out of our copy of the listener (and so refuses with
//! `--leave-running`), and saves each with what its client sent.
//!
//! Restore (`unix/restore.rs`) creates each socket with what it is tied to, and refills the
//! queues once every open file exists (`complete`), sending the descriptors in flight
//! again from the files created for them. A socket whose peer is outside the tree is
//! external: it takes a descriptor given at restore (`--inherit-fd`) or, when its peer
//! had a name, a new socket connected to that name when the caller allows it
//! (`--external-unix`); otherwise restore stops naming it.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, SocketType as SavedType, UnixSocketState, open_file};
use rustix::net::{AddressFamily, SocketAddrAny, SocketAddrUnix, SocketType, sockopt};

use super::kind::{
    Description, DumpSink, External, FileError, FileKind, LiveFile, Reconnect, RestoreCtx, Saved,
};

mod dump;
mod restore;

pub use dump::Accepted;
pub use restore::PendingPeers;

/// Unix sockets of every shape.
pub struct UnixSocketKind;

impl FileKind for UnixSocketKind {
    fn name(&self) -> &'static str {
        "unix socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link.starts_with("socket:[")
            && sockopt::socket_domain(file.file.as_fd()).is_ok_and(|d| d == AddressFamily::UNIX)
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let ty = dump::saved_type(file)?;
        Ok(open_file::Kind::UnixSocket(dump::socket_record(
            file, ty, sink,
        )?))
    }

    fn finish(
        &self,
        files: &mut [proto::OpenFile],
        _sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        let mut known = std::collections::BTreeSet::new();
        for f in files.iter() {
            if let Some(open_file::Kind::UnixSocket(s)) = &f.kind {
                known.insert(s.inode);
                known.extend(s.waiting.iter().map(|w| w.inode));
            }
        }
        for f in files.iter_mut() {
            if let Some(open_file::Kind::UnixSocket(s)) = &mut f.kind {
                s.external = s.state != UnixSocketState::Listening as i32
                    && s.state != UnixSocketState::Unconnected as i32
                    && s.peer_inode != 0
                    && !known.contains(&s.peer_inode);
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
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a unix socket".into(),
            });
        };
        if ctx.state::<PendingPeers>().needs_index() {
            let files = ctx.open_files()?.to_vec();
            ctx.state::<PendingPeers>().load(&files);
        }
        let fd = ctx.state::<PendingPeers>().take(file.id, sock)?;
        // O_ASYNC is set by the orchestration once the queues are filled
        // (`common::restore_owner_and_signal`): the bytes put back signal no one.
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags)
            & (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::ASYNC);
        rustix::fs::fcntl_setfl(&fd, flags).map_err(|e| FileError::Restore {
            id: file.id,
            what: format!("unix socket:[{}]", sock.inode),
            op: "fcntl(F_SETFL)",
            source: e.into(),
        })?;
        Ok(fd)
    }

    fn complete(&self, _file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        if ctx.state::<PendingPeers>().is_filled() {
            return Ok(());
        }
        // Copies of the open files in flight in any queue, for the state to send.
        let carried = ctx.state::<PendingPeers>().carried_files();
        let mut files = BTreeMap::new();
        for id in carried {
            let Some(fd) = ctx.opened(id) else {
                return Err(FileError::Invalid {
                    id,
                    reason: "an open file in flight in a unix socket's queue was not created"
                        .into(),
                });
            };
            let copy: OwnedFd = fd.try_clone_to_owned().map_err(|e| FileError::Restore {
                id,
                what: "an open file in flight".into(),
                op: "dup",
                source: e,
            })?;
            files.insert(id, copy);
        }
        let image = ctx.image;
        ctx.state::<PendingPeers>().fill(image, &files)
    }

    fn external(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Option<External> {
        match &file.kind {
            Some(open_file::Kind::UnixSocket(s)) if s.external => Some(External {
                what: format!(
                    "unix {} socket:[{}] (its peer socket:[{}]{} is outside the tree)",
                    type_name(s.r#type),
                    s.inode,
                    s.peer_inode,
                    if s.peer_name.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", dump::display_name(&s.peer_name))
                    }
                ),
                pending: s.queue.as_ref().map_or(0, |d| d.length),
                terminal: false,
                pipe: None,
                reconnect: (!s.peer_name.is_empty()).then(|| Reconnect {
                    socket_type: match SavedType::try_from(s.r#type) {
                        Ok(SavedType::Dgram) => libc::SOCK_DGRAM,
                        Ok(SavedType::Seqpacket) => libc::SOCK_SEQPACKET,
                        _ => libc::SOCK_STREAM,
                    },
                    peer_name: s.peer_name.clone(),
                    name: s.name.clone(),
                }),
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
        let ty = type_name(x.r#type);
        let queued = x.queue.as_ref().map_or(0, |d| d.length);
        let name = if x.name.is_empty() {
            String::new()
        } else {
            format!(
                " {}{}",
                dump::display_name(&x.name),
                if x.name_unlinked { " (removed)" } else { "" }
            )
        };
        let in_flight: usize = x.ancillary.iter().map(|a| a.file_ids.len()).sum();
        let fds = if in_flight == 0 {
            String::new()
        } else {
            format!(", {in_flight} descriptor(s) in flight")
        };
        let text = match UnixSocketState::try_from(x.state) {
            Ok(UnixSocketState::Listening) => format!(
                "unix {ty} socket:[{}]{name} listening (backlog {}), {} connection(s) waiting",
                x.inode,
                x.backlog,
                x.waiting.len()
            ),
            Ok(UnixSocketState::Unconnected) => format!(
                "unix {ty} socket:[{}]{name}, not connected, {queued} B queued{fds}",
                x.inode
            ),
            _ => format!(
                "unix {ty} socket:[{}]{name} -> socket:[{}], {queued} B queued{fds}{}",
                x.inode,
                x.peer_inode,
                if x.external {
                    ", peer outside the tree"
                } else {
                    ""
                }
            ),
        };
        Description { text, pipe: None }
    }
}

fn type_name(ty: i32) -> &'static str {
    match SavedType::try_from(ty) {
        Ok(t) => dump::type_name(t),
        Err(_) => "unknown-type",
    }
}

/// True for the address of an unnamed unix socket: the family alone, no `sun_path`.
/// (rustix turns this address into an empty path or an empty abstract name, so the
/// length is checked here.)
fn unnamed(addr: SocketAddrAny) -> bool {
    addr.address_family() == AddressFamily::UNIX
        && addr.addr_len() as usize == std::mem::size_of::<libc::sa_family_t>()
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
