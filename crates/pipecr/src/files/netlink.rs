//! Netlink sockets of the route (`NETLINK_ROUTE`) and uevent (`NETLINK_KOBJECT_UEVENT`)
//! families: recreated with their protocol, type, port id (the `nl_pid` they were bound
//! to or given at first use), multicast groups (`NETLINK_LIST_MEMBERSHIPS`), connected
//! destination and buffer sizes.
//!
//! Messages queued and not read are not kept: they are the kernel's answers or
//! notifications, not bytes a program wrote, and a restored socket cannot be made to
//! receive them again; a socket holding some is refused at dump. Netlink sockets of other
//! protocols (`NETLINK_SOCK_DIAG`, generic netlink, audit, ...) are refused too.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, sockopt};

use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use crate::sys::inet as raw;

/// Route and uevent netlink sockets.
pub struct NetlinkSocketKind;

const NETLINK_ROUTE: u32 = 0;
const NETLINK_KOBJECT_UEVENT: u32 = 15;

fn protocol_name(p: u32) -> &'static str {
    match p {
        0 => "route",
        4 => "sock_diag",
        9 => "audit",
        12 => "netfilter",
        15 => "uevent",
        16 => "generic",
        _ => "other",
    }
}

/// (`nl_pid`, `nl_groups`) of a raw `sockaddr_nl`.
fn parse_nl(b: &[u8]) -> (u32, u32) {
    let word = |at: usize| {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    };
    (word(4), word(8))
}

/// A raw `sockaddr_nl` for (`pid`, `groups`).
fn sockaddr_nl(pid: u32, groups: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&pid.to_ne_bytes());
    b.extend_from_slice(&groups.to_ne_bytes());
    b
}

fn groups_of(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut buf = [0u8; 128];
    let n = raw::get_bytes(
        fd,
        raw::SOL_NETLINK,
        raw::NETLINK_LIST_MEMBERSHIPS,
        &mut buf,
    )?;
    let mut words: Vec<u32> = buf[..n]
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}

impl FileKind for NetlinkSocketKind {
    fn name(&self) -> &'static str {
        "netlink socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        let fd = file.file.as_fd();
        file.link.starts_with("socket:[")
            && sockopt::socket_domain(fd).is_ok_and(|d| d == AddressFamily::NETLINK)
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
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
        let fd = file.file.as_fd();
        let protocol = raw::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .map_err(|e| fail("SO_PROTOCOL", e))? as u32;
        if protocol != NETLINK_ROUTE && protocol != NETLINK_KOBJECT_UEVENT {
            return Err(unsupported(format!(
                "netlink socket of protocol {protocol} ({}; only route and uevent netlink sockets are saved)",
                protocol_name(protocol)
            )));
        }
        let ty = sockopt::socket_type(fd).map_err(|e| fail("SO_TYPE", e.into()))?;
        let (port_id, _) = parse_nl(&raw::raw_name(fd, false).map_err(|e| fail("getsockname", e))?);
        let (dst_port_id, dst_group) = match raw::raw_name(fd, true) {
            Ok(b) => parse_nl(&b),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => (0, 0),
            Err(e) => return Err(fail("getpeername", e)),
        };
        let groups = groups_of(fd).map_err(|e| fail("NETLINK_LIST_MEMBERSHIPS", e))?;
        let mut probe = [0u8; 1];
        match rustix::net::recv(fd, &mut probe[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Err(rustix::io::Errno::AGAIN) => {}
            Ok(_) => {
                return Err(unsupported(format!(
                    "{} netlink socket with messages waiting to be read",
                    protocol_name(protocol)
                )));
            }
            Err(e) => return Err(fail("recv(MSG_PEEK)", e.into())),
        }
        Ok(open_file::Kind::NetlinkSocket(proto::NetlinkSocket {
            inode: file.stat.st_ino,
            r#type: ty.as_raw(),
            protocol,
            port_id,
            groups,
            dst_port_id,
            dst_group,
            rcvbuf: sockopt::socket_recv_buffer_size(fd).map_err(|e| fail("SO_RCVBUF", e.into()))?
                as u32,
            sndbuf: sockopt::socket_send_buffer_size(fd).map_err(|e| fail("SO_SNDBUF", e.into()))?
                as u32,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::NetlinkSocket(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::NetlinkSocket(s)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a netlink socket".into(),
            });
        };
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: file.id,
            what: format!("{} netlink socket", protocol_name(s.protocol)),
            op,
            source,
        };
        if s.protocol != NETLINK_ROUTE && s.protocol != NETLINK_KOBJECT_UEVENT {
            return Err(FileError::Invalid {
                id: file.id,
                reason: format!("a netlink socket of protocol {}", s.protocol),
            });
        }
        let ty = SocketType::from_raw(s.r#type);
        let sock = rustix::net::socket_with(
            AddressFamily::NETLINK,
            ty,
            SocketFlags::CLOEXEC,
            std::num::NonZeroU32::new(s.protocol).map(rustix::net::Protocol::from_raw),
        )
        .map_err(|e| fail("socket", e.into()))?;
        let fd = sock.as_fd();
        let fresh = (
            sockopt::socket_recv_buffer_size(fd).map_err(|e| fail("SO_RCVBUF", e.into()))?,
            sockopt::socket_send_buffer_size(fd).map_err(|e| fail("SO_SNDBUF", e.into()))?,
        );
        if s.rcvbuf as usize != fresh.0 && s.rcvbuf > 0 {
            sockopt::set_socket_recv_buffer_size_force(fd, s.rcvbuf as usize / 2)
                .map_err(|e| fail("SO_RCVBUFFORCE", e.into()))?;
        }
        if s.sndbuf as usize != fresh.1 && s.sndbuf > 0 {
            sockopt::set_socket_send_buffer_size_force(fd, s.sndbuf as usize / 2)
                .map_err(|e| fail("SO_SNDBUFFORCE", e.into()))?;
        }
        if s.port_id != 0 {
            raw::raw_bind_or_connect(fd, &sockaddr_nl(s.port_id, 0), false)
                .map_err(|e| fail("bind (port id)", e))?;
        }
        for (w, word) in s.groups.iter().enumerate() {
            for bit in 0..32 {
                if word & (1 << bit) != 0 {
                    let group = (w * 32 + bit + 1) as i32;
                    raw::set_int(fd, raw::SOL_NETLINK, raw::NETLINK_ADD_MEMBERSHIP, group)
                        .map_err(|e| fail("NETLINK_ADD_MEMBERSHIP", e))?;
                }
            }
        }
        if s.dst_port_id != 0 || s.dst_group != 0 {
            raw::raw_bind_or_connect(fd, &sockaddr_nl(s.dst_port_id, s.dst_group), true)
                .map_err(|e| fail("connect", e))?;
        }
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(sock)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::NetlinkSocket(s)) = &file.kind else {
            return Description {
                text: "not a netlink socket".into(),
                pipe: None,
            };
        };
        Description {
            text: format!(
                "{} netlink socket, port id {}, groups {:#x}",
                protocol_name(s.protocol),
                s.port_id,
                s.groups.first().copied().unwrap_or(0)
            ),
            pipe: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_nl_round_trip() {
        assert_eq!(parse_nl(&sockaddr_nl(1234, 0x11)), (1234, 0x11));
        assert_eq!(parse_nl(&[]), (0, 0));
    }
}
