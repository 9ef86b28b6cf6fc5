//! `NETLINK_SOCK_DIAG` queries about unix sockets (`unix_diag`, what `ss -x` uses): the
//! peer of a socket, its shutdown state, its bound name and socket file, the clients
//! waiting in a listener's queue, by the socket's inode.
//!
//! The kernel offers no other way to learn which socket a unix socket is connected to
//! (`SO_PEERCRED` names a process, not a socket). The request and the reply are built and
//! parsed here by hand, as plain bytes: no `unsafe` is needed.

use std::io;

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink, recv, sendto,
    socket_with,
};

/// `SOCK_DIAG_BY_FAMILY`, the netlink message type of a sock_diag request.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS |
/// UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID`.
const UDIAG_SHOW: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x40;
/// Attribute types of a `unix_diag_msg` reply.
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const UNIX_DIAG_UID: u16 = 7;
/// `RCV_SHUTDOWN` and `SEND_SHUTDOWN` bits of `sk_shutdown`.
const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
/// `TCP_LISTEN`, the state of a listening unix socket.
const TCP_LISTEN: u8 = 10;
/// `TCP_ESTABLISHED`, the state of a connected unix socket.
const TCP_ESTABLISHED: u8 = 1;

/// What `unix_diag` says about one unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnixDiag {
    /// Its inode.
    pub inode: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: u8,
    /// Its state (`TCP_ESTABLISHED`, `TCP_LISTEN`, `TCP_CLOSE`).
    pub state: u8,
    /// The inode of the socket it is connected to; `Some(0)` when that socket was closed,
    /// `None` when it is not connected.
    pub peer: Option<u32>,
    /// The address it is bound to (`sun_path` bytes, a leading NUL for the abstract
    /// namespace); `None` when unnamed.
    pub name: Option<Vec<u8>>,
    /// `shutdown(SHUT_RD)` was called on it (or `SHUT_WR` on its peer, or the peer closed).
    pub shut_read: bool,
    /// `shutdown(SHUT_WR)` was called on it (or `SHUT_RD` on its peer, or the peer closed).
    pub shut_write: bool,
    /// Bytes waiting to be read (`unix_inq_len`: all messages of a stream or seqpacket
    /// socket, the first message of a datagram socket), if reported; for a listening
    /// socket, the connections waiting to be accepted.
    pub rqueue: Option<u32>,
    /// Bytes sent and not yet read by the peer; for a listening socket, its backlog.
    pub wqueue: Option<u32>,
    /// The socket file of a path-bound socket: `(device, inode)`, the device as the
    /// kernel encodes it internally (major << 20 | minor).
    pub vfs: Option<(u32, u32)>,
    /// A listening socket: the inode of the client of each connection waiting to be
    /// accepted, in queue order (0 for one whose client is gone).
    pub icons: Vec<u32>,
    /// The owner's uid (in the caller's user namespace), if reported.
    pub uid: Option<u32>,
}

impl UnixDiag {
    /// The socket listens for connections.
    pub fn is_listening(&self) -> bool {
        self.state == TCP_LISTEN
    }

    /// The socket file's device as `stat` reports it (`st_dev`), for a path-bound socket.
    pub fn file_dev(&self) -> Option<u64> {
        self.vfs
            .map(|(dev, _)| libc::makedev(dev >> 20, dev & 0xfffff))
    }

    /// The socket is connected (its peer may have closed since).
    pub fn is_connected(&self) -> bool {
        self.state == TCP_ESTABLISHED
    }
}

/// `sendto(NETLINK_SOCK_DIAG, unix_diag_req{udiag_ino})`—Asks the kernel about the unix
/// socket with inode `inode` (in the caller's network namespace).
///
/// Fails with `ENOENT` when no such socket exists, and with the error the kernel returns
/// when `unix_diag` is not available (`CONFIG_UNIX_DIAG`).
///
/// # References
///  - [sock_diag(7)](https://man7.org/linux/man-pages/man7/sock_diag.7.html)
#[doc(alias = "sock_diag")]
pub fn unix_diag(inode: u64) -> io::Result<UnixDiag> {
    let ino = u32::try_from(inode).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
    let nl = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    let req = request(ino);
    let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
    sendto(&nl, &req, SendFlags::empty(), &kernel)?;
    let mut buf = vec![0u8; 1 << 16];
    let (n, _) = recv(&nl, &mut buf[..], RecvFlags::empty())?;
    parse_reply(&buf[..n], ino)
}

/// `nlmsghdr` + `unix_diag_req` for one socket, by inode.
fn request(ino: u32) -> Vec<u8> {
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes()); // nlmsg_flags
    req.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    req.push(libc::AF_UNIX as u8); // sdiag_family
    req.push(0); // sdiag_protocol
    req.extend_from_slice(&0u16.to_ne_bytes()); // pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // udiag_states: any
    req.extend_from_slice(&ino.to_ne_bytes()); // udiag_ino
    req.extend_from_slice(&UDIAG_SHOW.to_ne_bytes()); // udiag_show
    // udiag_cookie = INET_DIAG_NOCOOKIE twice: match by inode alone.
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed unix_diag reply")
}

/// Parses the reply to [`request`]: one `unix_diag_msg` with attributes, or an error.
fn parse_reply(buf: &[u8], ino: u32) -> io::Result<UnixDiag> {
    let len = u32_at(buf, 0).ok_or_else(malformed)? as usize;
    let ty = u16_at(buf, 4).ok_or_else(malformed)?;
    let msg = buf.get(16..len).ok_or_else(malformed)?;
    if ty == NLMSG_ERROR {
        let err = i32::from_ne_bytes(msg.get(..4).ok_or_else(malformed)?.try_into().unwrap());
        return Err(io::Error::from_raw_os_error(-err));
    }
    if ty != SOCK_DIAG_BY_FAMILY || msg.len() < 16 {
        return Err(malformed());
    }
    let mut diag = UnixDiag {
        sock_type: msg[1],
        state: msg[2],
        inode: u32_at(msg, 4).ok_or_else(malformed)?,
        ..UnixDiag::default()
    };
    if diag.inode != ino {
        return Err(malformed());
    }
    // rtattrs: u16 length (header included), u16 type, payload, padded to 4 bytes.
    let mut at = 16;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at).ok_or_else(malformed)? as usize;
        let atype = u16_at(msg, at + 2).ok_or_else(malformed)?;
        if alen < 4 {
            return Err(malformed());
        }
        let data = msg.get(at + 4..at + alen).ok_or_else(malformed)?;
        match atype {
            UNIX_DIAG_NAME => diag.name = Some(data.to_vec()),
            UNIX_DIAG_PEER => diag.peer = Some(u32_at(data, 0).ok_or_else(malformed)?),
            UNIX_DIAG_RQLEN => {
                diag.rqueue = Some(u32_at(data, 0).ok_or_else(malformed)?);
                diag.wqueue = u32_at(data, 4);
            }
            UNIX_DIAG_VFS => {
                let ino = u32_at(data, 0).ok_or_else(malformed)?;
                let dev = u32_at(data, 4).ok_or_else(malformed)?;
                diag.vfs = Some((dev, ino));
            }
            UNIX_DIAG_ICONS => {
                diag.icons = data
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
            UNIX_DIAG_UID => diag.uid = u32_at(data, 0),
            UNIX_DIAG_SHUTDOWN => {
                let bits = *data.first().ok_or_else(malformed)?;
                diag.shut_read = bits & RCV_SHUTDOWN != 0;
                diag.shut_write = bits & SEND_SHUTDOWN != 0;
            }
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(diag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply() {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        b.extend_from_slice(&[0; 16]);
        let e = parse_reply(&b, 5).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    /// A reply with a name, the socket file, the clients waiting and the queue lengths.
    #[test]
    fn listener_reply_attributes() {
        let attr = |ty: u16, data: &[u8]| {
            let mut a = Vec::new();
            a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            a.extend_from_slice(&ty.to_ne_bytes());
            a.extend_from_slice(data);
            while a.len() % 4 != 0 {
                a.push(0);
            }
            a
        };
        let mut msg = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, TCP_LISTEN, 0];
        msg.extend_from_slice(&77u32.to_ne_bytes()); // udiag_ino
        msg.extend_from_slice(&[0; 8]); // cookie
        msg.extend(attr(UNIX_DIAG_NAME, b"/run/x.sock\0"));
        let mut vfs = 900u32.to_ne_bytes().to_vec();
        vfs.extend_from_slice(&((8u32 << 20) | 3).to_ne_bytes());
        msg.extend(attr(UNIX_DIAG_VFS, &vfs));
        let mut icons = 11u32.to_ne_bytes().to_vec();
        icons.extend_from_slice(&12u32.to_ne_bytes());
        msg.extend(attr(UNIX_DIAG_ICONS, &icons));
        let mut rq = 2u32.to_ne_bytes().to_vec();
        rq.extend_from_slice(&7u32.to_ne_bytes());
        msg.extend(attr(UNIX_DIAG_RQLEN, &rq));
        msg.extend(attr(UNIX_DIAG_UID, &1000u32.to_ne_bytes()));
        let mut b = Vec::new();
        b.extend_from_slice(&((16 + msg.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&msg);
        let d = parse_reply(&b, 77).unwrap();
        assert!(d.is_listening());
        assert_eq!(d.name.as_deref(), Some(&b"/run/x.sock\0"[..]));
        assert_eq!(d.vfs, Some(((8 << 20) | 3, 900)));
        assert_eq!(d.file_dev(), Some(libc::makedev(8, 3)));
        assert_eq!(d.icons, [11, 12]);
        assert_eq!((d.rqueue, d.wqueue), (Some(2), Some(7)));
        assert_eq!(d.uid, Some(1000));
        assert_eq!(d.peer, None);
    }

    #[test]
    fn truncated_reply_is_an_error() {
        assert!(parse_reply(&[1, 2, 3], 5).is_err());
        let mut b = Vec::new();
        b.extend_from_slice(&100u32.to_ne_bytes());
        b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b.extend_from_slice(&[0; 20]);
        assert!(parse_reply(&b, 5).is_err());
    }
}
