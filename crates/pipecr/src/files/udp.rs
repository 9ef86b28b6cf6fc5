//! UDP sockets, IPv4 and IPv6: bound or not, connected or not, with the datagrams waiting
//! in them and the address each came from.
//!
//! **Dump.** The queue is read without consuming it from pipecr's `pidfd_getfd` copy: the
//! peek offset (`SO_PEEK_OFF`) is set to 0 and each `recvmsg(MSG_PEEK)` returns the next
//! datagram with its source address; the process's own peek offset is put back after.
//! A socket corked with `UDP_CORK` while holding a datagram being built is refused (the
//! held bytes cannot be read).
//!
//! **Restore** creates the socket, sets its options, binds it, then puts each datagram
//! back into its queue *from its original source address*: a raw socket
//! (`IPPROTO_RAW`, the IP header written by us) sends it to the socket's own address with
//! the saved source, over the loopback path of the network namespace; only then is the
//! socket connected (a connected socket would drop datagrams from other sources). The
//! queue is then peeked again to check every datagram arrived.
//!
//! Not kept: `shutdown(2)` of a UDP socket (a rarely used no-op for most programs).

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvFlags, SocketFlags, SocketType, recvmsg, sockopt,
};

use super::inet::{self, AF_INET, AF_INET6};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use crate::sys::inet as raw;
use crate::sys::socket::{peek_offset, set_peek_offset};

/// UDP sockets (`AF_INET`/`AF_INET6`, `SOCK_DGRAM`).
pub struct UdpSocketKind;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65535;

impl FileKind for UdpSocketKind {
    fn name(&self) -> &'static str {
        "UDP socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        inet::is_inet_socket(
            &file.link,
            file.file.as_fd(),
            SocketType::DGRAM,
            libc::IPPROTO_UDP,
        )
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
        let family = if sockopt::socket_domain(fd).map_err(|e| fail("SO_DOMAIN", e.into()))?
            == AddressFamily::INET6
        {
            AF_INET6
        } else {
            AF_INET
        };
        let local = inet::local_addr(fd).map_err(|e| fail("getsockname", e))?;
        let peer = inet::peer_addr(fd).map_err(|e| fail("getpeername", e))?;
        let options = inet::read_options(fd, family, false).map_err(|e| fail("getsockopt", e))?;
        let corked =
            raw::get_int(fd, raw::SOL_UDP, raw::UDP_CORK).map_err(|e| fail("UDP_CORK", e))?;
        let pending = raw::ioctl_int(fd, raw::SIOCOUTQ).map_err(|e| fail("ioctl(SIOCOUTQ)", e))?;
        if corked != 0 && pending > 0 {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!(
                    "UDP socket {} corked (UDP_CORK) with {pending} bytes of a datagram held",
                    local.map_or("-".into(), |a| a.to_string())
                ),
            });
        }
        let (bytes, datagrams) = peek_all(fd).map_err(|(op, e)| fail(op, e))?;
        let queue = if bytes.is_empty() {
            None
        } else {
            Some(
                sink.writer
                    .raw(pipecr_image::SOCKETS_DATA)?
                    .append(&bytes)?,
            )
        };
        Ok(open_file::Kind::UdpSocket(proto::UdpSocket {
            inode: file.stat.st_ino,
            family,
            local: local.map(inet::to_saved),
            peer: peer.map(inet::to_saved),
            bound: local.is_some(),
            options: Some(options),
            queue,
            datagrams,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::UdpSocket(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::UdpSocket(s)) = &file.kind else {
            return Err(invalid(file.id, "not a UDP socket".into()));
        };
        let what = format!("UDP socket {}", inet::show(s.local.as_ref()));
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: file.id,
            what: what.clone(),
            op,
            source,
        };
        let af = match s.family {
            AF_INET => AddressFamily::INET,
            AF_INET6 => AddressFamily::INET6,
            f => return Err(invalid(file.id, format!("address family {f}"))),
        };
        let local = inet::from_saved(s.local.as_ref()).map_err(|e| invalid(file.id, e))?;
        let peer = inet::from_saved(s.peer.as_ref()).map_err(|e| invalid(file.id, e))?;
        let bytes = match &s.queue {
            Some(d) => ctx.image.read_data(d)?,
            None => Vec::new(),
        };
        let total: u64 = s.datagrams.iter().map(|d| u64::from(d.length)).sum();
        if total != bytes.len() as u64 {
            return Err(invalid(
                file.id,
                "datagram lengths do not add up to the queue".into(),
            ));
        }
        if !s.datagrams.is_empty() && local.is_none() {
            return Err(invalid(
                file.id,
                "datagrams queued in an unbound socket".into(),
            ));
        }
        let default_opts = proto::InetOptions::default();
        let opts = s.options.as_ref().unwrap_or(&default_opts);
        let sock = rustix::net::socket_with(af, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
            .map_err(|e| fail("socket", e.into()))?;
        let fd = sock.as_fd();
        // The peek offset is set last: refilling checks the queue by peeking.
        let mut early = opts.clone();
        early.peek_off = -1;
        inet::apply_options(fd, &early, s.family, false, false).map_err(|(op, e)| fail(op, e))?;
        if let Some(l) = local {
            rustix::net::bind(fd, &l).map_err(|e| fail("bind", e.into()))?;
        }
        if let Some(l) = local {
            let mut at = 0usize;
            for d in &s.datagrams {
                let src = inet::from_saved(d.source.as_ref())
                    .map_err(|e| invalid(file.id, e))?
                    .ok_or_else(|| invalid(file.id, "a datagram without its source".into()))?;
                let len = d.length as usize;
                inject(src, deliverable(l), &bytes[at..at + len])
                    .map_err(|e| fail("sendto (raw socket, saved source address)", e))?;
                at += len;
            }
            let (got, seen) = peek_all(fd).map_err(|(op, e)| fail(op, e))?;
            if got != bytes || seen.len() != s.datagrams.len() {
                return Err(fail(
                    "refill the queue",
                    io::Error::other(format!(
                        "{} of {} datagrams arrived",
                        seen.len(),
                        s.datagrams.len()
                    )),
                ));
            }
        }
        if let Some(p) = peer {
            rustix::net::connect(fd, &p).map_err(|e| fail("connect", e.into()))?;
        }
        if opts.peek_off >= 0 {
            set_peek_offset(fd, opts.peek_off).map_err(|e| fail("SO_PEEK_OFF", e))?;
        }
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(sock)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::UdpSocket(s)) = &file.kind else {
            return Description {
                text: "not a UDP socket".into(),
                pipe: None,
            };
        };
        let v = if s.family == AF_INET6 { "v6" } else { "" };
        let peer = if s.peer.as_ref().is_some_and(|p| !p.addr.is_empty()) {
            format!(" connected to {}", inet::show(s.peer.as_ref()))
        } else {
            String::new()
        };
        Description {
            text: format!(
                "UDP{v} socket {}{peer}, {} datagram(s) queued ({} B)",
                inet::show(s.local.as_ref()),
                s.datagrams.len(),
                s.queue.as_ref().map_or(0, |d| d.length)
            ),
            pipe: None,
        }
    }
}

fn invalid(id: u64, reason: String) -> FileError {
    FileError::Invalid { id, reason }
}

type Step<T> = Result<T, (&'static str, io::Error)>;

/// Every datagram queued in `fd`, with its source, read with `MSG_PEEK` from peek offset
/// 0; the socket's peek offset is put back.
fn peek_all(fd: BorrowedFd<'_>) -> Step<(Vec<u8>, Vec<proto::UdpDatagram>)> {
    let old = peek_offset(fd).map_err(|e| ("getsockopt(SO_PEEK_OFF)", e))?;
    set_peek_offset(fd, 0).map_err(|e| ("setsockopt(SO_PEEK_OFF, 0)", e))?;
    let result = peek_from_zero(fd);
    let back = set_peek_offset(fd, old);
    let r = result?;
    back.map_err(|e| ("setsockopt(SO_PEEK_OFF) back", e))?;
    Ok(r)
}

fn peek_from_zero(fd: BorrowedFd<'_>) -> Step<(Vec<u8>, Vec<proto::UdpDatagram>)> {
    let mut bytes = Vec::new();
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut space: [MaybeUninit<u8>; 0] = [];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = match recvmsg(
            fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::PEEK | RecvFlags::DONTWAIT | RecvFlags::TRUNC,
        ) {
            Ok(m) => m,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(("recvmsg(MSG_PEEK)", e.into())),
        };
        if msg.bytes > buf.len() {
            return Err(("recvmsg(MSG_PEEK)", io::Error::other("datagram too long")));
        }
        let source = msg
            .address
            .and_then(|a| SocketAddr::try_from(a).ok())
            .map(inet::to_saved);
        bytes.extend_from_slice(&buf[..msg.bytes]);
        datagrams.push(proto::UdpDatagram {
            length: msg.bytes as u32,
            source,
        });
        if bytes.len() > i32::MAX as usize / 2 {
            return Err(("recvmsg(MSG_PEEK)", io::Error::other("queue too long")));
        }
    }
    Ok((bytes, datagrams))
}

/// Where a datagram for a socket bound to `local` can be sent: the wildcard address
/// becomes the loopback address.
fn deliverable(local: SocketAddr) -> SocketAddr {
    let mut to = local;
    if to.ip().is_unspecified() {
        to.set_ip(match to {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    to
}

/// Sends one UDP datagram with payload `data` from `src` to `dst` through a raw socket,
/// so that it arrives as if `src` had sent it.
fn inject(src: SocketAddr, dst: SocketAddr, data: &[u8]) -> io::Result<()> {
    let udp_len = u16::try_from(8 + data.len()).map_err(|_| io::Error::other("too long"))?;
    let mut udp = Vec::with_capacity(8 + data.len());
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    inet::inject(src, dst, libc::IPPROTO_UDP as u8, udp, 6, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_becomes_loopback() {
        let a: SocketAddr = "0.0.0.0:99".parse().unwrap();
        assert_eq!(deliverable(a), "127.0.0.1:99".parse().unwrap());
        let b: SocketAddr = "[::]:7".parse().unwrap();
        assert_eq!(deliverable(b), "[::1]:7".parse().unwrap());
    }
}
