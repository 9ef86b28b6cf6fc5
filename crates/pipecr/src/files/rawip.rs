//! Raw IP sockets (`AF_INET`/`AF_INET6`, `SOCK_RAW`, raw(7)) of any protocol, and ping
//! sockets (`SOCK_DGRAM` with `IPPROTO_ICMP`/`IPPROTO_ICMPV6`): recreated with their
//! protocol, bound address, connected peer, the inet options of [`proto::InetOptions`],
//! `IP_HDRINCL`, their ICMP filter (`ICMP_FILTER`, `ICMP6_FILTER`), `IPV6_CHECKSUM` and
//! their classic BPF filter.
//!
//! **Dump.** A raw socket connected with port 0 (as they are) answers `getpeername` with
//! `ENOTCONN`: its peer and state are read from `/proc/net/raw{,6}` (`/proc/net/icmp{,6}`
//! for a ping socket), by inode, in pipecr's network namespace. Packets waiting to be
//! read are refused: a raw socket has no peek offset (`SO_PEEK_OFF` is ignored by its
//! `recvmsg`), so only the first could be read without consuming it.
//!
//! **Restore.** A raw socket receives every packet of its protocol as soon as it exists:
//! it is created with a filter that drops everything (and emptied of what came before
//! that filter), given its options, bound and connected, and only then given its own
//! filter (or none). The preflight ([`FileKind::prepare`]) refuses, before anything is
//! created, a restorer without `CAP_NET_RAW` (and `CAP_NET_ADMIN` for forced buffer
//! sizes or a mark).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, sockopt};
use rustix::thread::CapabilitySet;

use super::inet::{self, AF_INET, AF_INET6};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use super::sockopts;
use crate::sys::inet as raw;

/// Raw IP and ping sockets.
pub struct RawIpSocketKind;

/// `SOL_RAW` (IPv4 `ICMP_FILTER`, IPv6 `IPV6_CHECKSUM`) and the option numbers.
const SOL_RAW: i32 = 255;
const ICMP_FILTER: i32 = 1;
const ICMP6_FILTER: i32 = 1;
const IPV6_CHECKSUM: i32 = 7;
/// `TCP_ESTABLISHED`: the state of a connected raw socket in /proc/net/raw.
const ESTABLISHED: u8 = 1;

/// Whether `fd` is a ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`/`IPPROTO_ICMPV6`).
fn is_ping(ty: SocketType, protocol: u32) -> bool {
    ty == SocketType::DGRAM
        && (protocol == libc::IPPROTO_ICMP as u32 || protocol == libc::IPPROTO_ICMPV6 as u32)
}

fn protocol_of(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(raw::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)? as u32)
}

/// An address of /proc/net/raw ("0100007F:0001", the words of the address in hex as the
/// kernel holds them, then the port): the IP address.
fn parse_proc_addr(field: &str) -> Option<IpAddr> {
    let (hex, _) = field.split_once(':')?;
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// The remote address and state of the socket with `inode` in a /proc/net table.
fn proc_entry(table: &str, inode: u64) -> Option<(IpAddr, u8)> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        let remote = parse_proc_addr(f.get(2)?)?;
        let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
        Some((remote, state))
    })
}

/// The peer a raw or ping socket is connected to (port 0), from /proc/net.
fn connected_peer(family: u32, ping: bool, inode: u64) -> io::Result<Option<SocketAddr>> {
    let name = match (ping, family == AF_INET6) {
        (false, false) => "raw",
        (false, true) => "raw6",
        (true, false) => "icmp",
        (true, true) => "icmp6",
    };
    let table = std::fs::read_to_string(format!("/proc/net/{name}"))?;
    let (remote, state) = proc_entry(&table, inode).ok_or_else(|| {
        io::Error::other(format!(
            "socket:[{inode}] is not in /proc/net/{name} (not in pipecr's network namespace?)"
        ))
    })?;
    Ok((state == ESTABLISHED && !remote.is_unspecified()).then(|| SocketAddr::new(remote, 0)))
}

impl FileKind for RawIpSocketKind {
    fn name(&self) -> &'static str {
        "raw IP socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        let fd = file.file.as_fd();
        file.link.starts_with("socket:[")
            && sockopt::socket_domain(fd)
                .is_ok_and(|d| d == AddressFamily::INET || d == AddressFamily::INET6)
            && sockopt::socket_type(fd)
                .is_ok_and(|t| t == SocketType::RAW || protocol_of(fd).is_ok_and(|p| is_ping(t, p)))
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
        let family = if sockopt::socket_domain(fd).map_err(|e| fail("SO_DOMAIN", e.into()))?
            == AddressFamily::INET6
        {
            AF_INET6
        } else {
            AF_INET
        };
        let ty = sockopt::socket_type(fd).map_err(|e| fail("SO_TYPE", e.into()))?;
        let protocol = protocol_of(fd).map_err(|e| fail("SO_PROTOCOL", e))?;
        let ping = is_ping(ty, protocol);
        let local = SocketAddr::try_from(
            rustix::net::getsockname(fd).map_err(|e| fail("getsockname", e.into()))?,
        )
        .ok()
        // A raw socket's "port" is its protocol: only the address was bound.
        .map(|a| if ping { a } else { SocketAddr::new(a.ip(), 0) })
        .filter(|a| !a.ip().is_unspecified() || a.port() != 0);
        let peer =
            connected_peer(family, ping, file.stat.st_ino).map_err(|e| fail("/proc/net", e))?;
        let filter = match sockopts::read_filter(fd) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                return Err(unsupported(
                    "raw IP socket with an eBPF filter (SO_ATTACH_BPF: it cannot be read back)"
                        .into(),
                ));
            }
            Err(e) => return Err(fail("getsockopt(SO_GET_FILTER)", e)),
        };
        let mut probe = [0u8; 1];
        match rustix::net::recv(fd, &mut probe[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Err(rustix::io::Errno::AGAIN) => {}
            Ok(_) => {
                return Err(unsupported(format!(
                    "{} socket of protocol {protocol} with packets waiting to be read (they \
                     cannot be read without consuming them)",
                    if ping { "ping" } else { "raw IP" }
                )));
            }
            Err(e) => return Err(fail("recv(MSG_PEEK)", e.into())),
        }
        let v6 = family == AF_INET6;
        let hdrincl = !v6
            && !ping
            && raw::get_int(fd, libc::IPPROTO_IP, libc::IP_HDRINCL)
                .map_err(|e| fail("IP_HDRINCL", e))?
                != 0;
        let icmp_filter = match (v6, protocol as i32) {
            (false, libc::IPPROTO_ICMP) if !ping => {
                let mut b = [0u8; 4];
                let n = raw::get_bytes(fd, SOL_RAW, ICMP_FILTER, &mut b)
                    .map_err(|e| fail("ICMP_FILTER", e))?;
                b[..n].to_vec()
            }
            (true, libc::IPPROTO_ICMPV6) if !ping => {
                let mut b = [0u8; 32];
                let n = raw::get_bytes(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &mut b)
                    .map_err(|e| fail("ICMP6_FILTER", e))?;
                b[..n].to_vec()
            }
            _ => Vec::new(),
        };
        let ipv6_checksum = if v6 && !ping && protocol != libc::IPPROTO_ICMPV6 as u32 {
            raw::get_int(fd, SOL_RAW, IPV6_CHECKSUM).map_err(|e| fail("IPV6_CHECKSUM", e))?
        } else {
            -1
        };
        let options = inet::read_ip_options(fd, family).map_err(|e| fail("getsockopt", e))?;
        Ok(open_file::Kind::RawIpSocket(proto::RawIpSocket {
            inode: file.stat.st_ino,
            family,
            r#type: ty.as_raw(),
            protocol,
            local: local.map(inet::to_saved),
            peer: peer.map(inet::to_saved),
            options: Some(options),
            hdrincl,
            icmp_filter,
            ipv6_checksum,
            filter,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::RawIpSocket(_))
    }

    /// Refuses, before anything is created, a restorer without `CAP_NET_RAW` (for raw
    /// sockets) or `CAP_NET_ADMIN` (forced buffer sizes, a mark).
    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        for file in ctx.open_files()? {
            let Some(open_file::Kind::RawIpSocket(s)) = &file.kind else {
                continue;
            };
            let fail = |op: &'static str, source: io::Error| FileError::Restore {
                id: file.id,
                what: describe_socket(s),
                op,
                source,
            };
            // The reason in words, the error the kernel would give as the source.
            let refuse = |op: &'static str, errno: i32, why: String| FileError::Restore {
                id: file.id,
                what: format!("{}: {why}; nothing was created", describe_socket(s)),
                op,
                source: io::Error::from_raw_os_error(errno),
            };
            let mut wanted = Vec::new();
            if s.r#type == SocketType::RAW.as_raw() {
                wanted.push(("CAP_NET_RAW", CapabilitySet::NET_RAW));
            }
            let o = s.options.clone().unwrap_or_default();
            let opts = proto::SocketOptions {
                rcvbuf: o.rcvbuf,
                sndbuf: o.sndbuf,
                mark: o.mark,
                ..Default::default()
            };
            if sockopts::needs_net_admin(&opts)
                .map_err(|e| fail("socket (default buffer sizes)", e))?
            {
                wanted.push(("CAP_NET_ADMIN", CapabilitySet::NET_ADMIN));
            }
            if !o.bound_device.is_empty() {
                if let Err(e) = sockopts::interface_index(&o.bound_device) {
                    return Err(refuse(
                        "SO_BINDTODEVICE",
                        e.raw_os_error().unwrap_or(libc::ENODEV),
                        format!(
                            "no interface named {:?} in this network namespace",
                            o.bound_device
                        ),
                    ));
                }
            }
            let missing = sockopts::missing_capabilities(&wanted).map_err(|e| fail("capget", e))?;
            if !missing.is_empty() {
                return Err(refuse(
                    "socket(SOCK_RAW)",
                    libc::EPERM,
                    format!(
                        "a raw IP socket needs {}, which the restorer lacks",
                        missing.join(" and ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::RawIpSocket(s)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a raw IP socket".into(),
            });
        };
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: file.id,
            what: describe_socket(s),
            op,
            source,
        };
        let invalid = |reason: String| FileError::Invalid {
            id: file.id,
            reason,
        };
        let af = match s.family {
            AF_INET => AddressFamily::INET,
            AF_INET6 => AddressFamily::INET6,
            f => return Err(invalid(format!("address family {f}"))),
        };
        let ty = SocketType::from_raw(s.r#type);
        let ping = is_ping(ty, s.protocol);
        if ty != SocketType::RAW && !ping {
            return Err(invalid(format!(
                "a socket of type {} and protocol {}",
                s.r#type, s.protocol
            )));
        }
        let protocol = std::num::NonZeroU32::new(s.protocol).map(rustix::net::Protocol::from_raw);
        let local = inet::from_saved(s.local.as_ref()).map_err(invalid)?;
        let peer = inet::from_saved(s.peer.as_ref()).map_err(invalid)?;
        let sock = rustix::net::socket_with(af, ty, SocketFlags::CLOEXEC, protocol)
            .map_err(|e| fail("socket", e.into()))?;
        let fd = sock.as_fd();
        // Nothing may be queued before the socket is as it was.
        sockopts::hold_packets(fd).map_err(|(op, e)| fail(op, e))?;
        let defaults = (
            sockopt::socket_recv_buffer_size(fd).map_err(|e| fail("SO_RCVBUF", e.into()))?,
            sockopt::socket_send_buffer_size(fd).map_err(|e| fail("SO_SNDBUF", e.into()))?,
        );
        if let Some(o) = &s.options {
            let mut o = o.clone();
            // Raw sockets have no peek offset to give back.
            o.peek_off = -1;
            // bound: IPV6_V6ONLY cannot be set on a raw socket (it has a "port" at once).
            inet::apply_ip_options(fd, &o, s.family, defaults, true)
                .map_err(|(op, e)| fail(op, e))?;
        }
        let v6 = s.family == AF_INET6;
        if s.hdrincl && !v6 && s.protocol != libc::IPPROTO_RAW as u32 {
            raw::set_int(fd, libc::IPPROTO_IP, libc::IP_HDRINCL, 1)
                .map_err(|e| fail("IP_HDRINCL", e))?;
        }
        if !s.icmp_filter.is_empty() {
            let (level, name, op) = if v6 {
                (libc::IPPROTO_ICMPV6, ICMP6_FILTER, "ICMP6_FILTER")
            } else {
                (SOL_RAW, ICMP_FILTER, "ICMP_FILTER")
            };
            raw::set_bytes(fd, level, name, &s.icmp_filter).map_err(|e| fail(op, e))?;
        }
        if v6 && s.ipv6_checksum >= 0 {
            raw::set_int(fd, SOL_RAW, IPV6_CHECKSUM, s.ipv6_checksum)
                .map_err(|e| fail("IPV6_CHECKSUM", e))?;
        }
        if let Some(l) = local {
            rustix::net::bind(fd, &l).map_err(|e| fail("bind", e.into()))?;
        }
        if let Some(p) = peer {
            rustix::net::connect(fd, &p).map_err(|e| fail("connect", e.into()))?;
        }
        sockopts::release_packets(fd, s.filter.as_ref()).map_err(|(op, e)| fail(op, e))?;
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(sock)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::RawIpSocket(s)) = &file.kind else {
            return Description {
                text: "not a raw IP socket".into(),
                pipe: None,
            };
        };
        let mut text = describe_socket(s);
        if s.peer.as_ref().is_some_and(|p| !p.addr.is_empty()) {
            text.push_str(&format!(" connected to {}", show_ip(s.peer.as_ref())));
        }
        if !s.icmp_filter.is_empty() {
            text.push_str(", ICMP filter");
        }
        Description { text, pipe: None }
    }
}

/// The address of a saved socket address without its port ("-" for none).
fn show_ip(a: Option<&proto::InetAddress>) -> String {
    match inet::from_saved(a) {
        Ok(Some(a)) => a.ip().to_string(),
        Ok(None) => "-".into(),
        Err(e) => e,
    }
}

/// "raw IP socket of protocol 1 on 127.0.0.1", "ping socket on -".
fn describe_socket(s: &proto::RawIpSocket) -> String {
    let v = if s.family == AF_INET6 { "v6" } else { "" };
    if is_ping(SocketType::from_raw(s.r#type), s.protocol) {
        return format!("ping{v} socket on {}", inet::show(s.local.as_ref()));
    }
    format!(
        "raw IP{v} socket of protocol {} on {}",
        s.protocol,
        show_ip(s.local.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_raw_lines() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   1: 0100007F:0001 0200007F:0000 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
   1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n";
        assert_eq!(
            proc_entry(table, 4242),
            Some((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 1))
        );
        assert_eq!(proc_entry(table, 4243).map(|e| e.1), Some(7));
        assert_eq!(proc_entry(table, 1), None);
        let v6 = parse_proc_addr("00000000000000000000000001000000:0000").unwrap();
        assert_eq!(v6, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn described() {
        let s = proto::RawIpSocket {
            family: AF_INET,
            r#type: 3,
            protocol: 1,
            local: Some(inet::to_saved("127.0.0.1:0".parse().unwrap())),
            ..Default::default()
        };
        assert_eq!(
            describe_socket(&s),
            "raw IP socket of protocol 1 on 127.0.0.1"
        );
    }
}
