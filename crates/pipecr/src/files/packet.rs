//! Packet sockets (`AF_PACKET`, packet(7)): `SOCK_RAW` and `SOCK_DGRAM`, recreated with
//! their protocol, the interface they are bound to (by name: restore binds to the
//! interface of that name in the restored network namespace), their fanout group, their
//! `SOL_PACKET` options, their memberships (multicast, promiscuous, all-multicast,
//! unicast), their `SOL_SOCKET` options and their classic BPF filter.
//!
//! **Dump.** `getsockname` gives the protocol and interface; `getsockopt` the options and
//! the fanout group; the `packet_diag` dump of `NETLINK_SOCK_DIAG`
//! ([`crate::sys::packet::packet_diag`]) the memberships, the copy threshold and whether
//! a memory-mapped ring is set up. Refused, naming the process and descriptor:
//! - a ring (`PACKET_RX_RING`, `PACKET_TX_RING`): "packet socket with a mapped ring"
//!   (the kernel's position in the ring cannot be read, so the frames a program and the
//!   kernel exchange through it could not be brought back in step);
//! - packets waiting to be read: packet sockets have no peek offset (`SO_PEEK_OFF`), so
//!   only the first could be read without consuming it;
//! - a fanout group whose mode runs a BPF program (`PACKET_FANOUT_CBPF`, `_EBPF`), and
//!   an eBPF socket filter: neither can be read back.
//!
//! **Restore** creates the socket with protocol 0 (it receives nothing yet) under a
//! filter that drops everything, sets its options, binds it to its protocol and
//! interface, joins its fanout group and adds its memberships, and only then, emptied,
//! gets its own filter (or none): it never holds a packet of another interface or more
//! than its share of its fanout group. The
//! preflight ([`FileKind::prepare`]) refuses, before anything is created, a restorer
//! without `CAP_NET_RAW` (and `CAP_NET_ADMIN` when buffer sizes or a mark must be
//! forced) and an interface name missing from the network namespace.
//!
//! Not kept: `PACKET_FANOUT_FLAG_UNIQUEID` (the group is joined again by its id, which
//! the kernel had chosen), statistics (`PACKET_STATISTICS`, reset when read).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, sockopt};
use rustix::thread::CapabilitySet;

use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use super::sockopts;
use crate::sys::inet as raw;
use crate::sys::packet as pk;

/// Packet sockets (`AF_PACKET`).
pub struct PacketSocketKind;

/// `PACKET_FANOUT_CBPF`, `PACKET_FANOUT_EBPF`: modes that run a program.
const FANOUT_CBPF: u32 = 6;
const FANOUT_EBPF: u32 = 7;
/// `PACKET_FANOUT_FLAG_UNIQUEID >> 8`, as the flags byte of the fanout word holds it.
const FANOUT_UNIQUEID: u32 = 0x2000 >> 8;

/// (`sll_protocol` in host order, `sll_ifindex`) of a raw `sockaddr_ll`.
fn parse_ll(b: &[u8]) -> (u16, u32) {
    let protocol = b.get(2..4).map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
    let ifindex = b
        .get(4..8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes);
    (protocol, ifindex)
}

/// A raw `sockaddr_ll` for (`protocol` in host order, `ifindex`).
fn sockaddr_ll(protocol: u16, ifindex: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    b.extend_from_slice(&protocol.to_be_bytes());
    b.extend_from_slice(&ifindex.to_ne_bytes());
    b.extend_from_slice(&[0; 12]); // hatype, pkttype, halen, addr[8]
    b
}

/// A raw `struct packet_mreq`.
fn packet_mreq(ifindex: u32, kind: u16, address: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&ifindex.to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&(address.len().min(8) as u16).to_ne_bytes());
    let mut addr = [0u8; 8];
    let n = address.len().min(8);
    addr[..n].copy_from_slice(&address[..n]);
    b.extend_from_slice(&addr);
    b
}

fn type_name(ty: u32) -> &'static str {
    match ty {
        3 => "raw",
        2 => "datagram",
        _ => "?",
    }
}

fn fanout_mode(word: u32) -> &'static str {
    match (word >> 16) & 0xff {
        0 => "hash",
        1 => "lb",
        2 => "cpu",
        3 => "rollover",
        4 => "rnd",
        5 => "qm",
        6 => "cbpf",
        7 => "ebpf",
        _ => "?",
    }
}

/// The name of interface `ifindex` in the network namespace of `fd`.
fn ifname(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<String> {
    Ok(rustix::net::netdevice::index_to_name(fd, ifindex)?)
}

fn int(fd: BorrowedFd<'_>, name: i32) -> io::Result<i32> {
    raw::get_int(fd, pk::SOL_PACKET, name)
}

impl FileKind for PacketSocketKind {
    fn name(&self) -> &'static str {
        "packet socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        file.link.starts_with("socket:[")
            && sockopt::socket_domain(file.file.as_fd()).is_ok_and(|d| d == AddressFamily::PACKET)
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
        let ty = sockopt::socket_type(fd)
            .map_err(|e| fail("SO_TYPE", e.into()))?
            .as_raw();
        if ty != SocketType::RAW.as_raw() && ty != SocketType::DGRAM.as_raw() {
            return Err(unsupported(format!(
                "packet socket of type {ty} (SOCK_PACKET, obsolete: only SOCK_RAW and \
                 SOCK_DGRAM packet sockets are saved)"
            )));
        }
        let (protocol, ifindex) =
            parse_ll(&raw::raw_name(fd, false).map_err(|e| fail("getsockname", e))?);
        let diag = pk::packet_diag(file.stat.st_ino)
            .map_err(|e| fail("sock_diag (packet_diag)", e))?
            .ok_or_else(|| {
                fail(
                    "sock_diag (packet_diag)",
                    io::Error::other(
                        "the socket is not in pipecr's network namespace; run pipecr in the \
                         tree's network namespace",
                    ),
                )
            })?;
        // The kernel marks a socket whose interface was removed with index -1.
        if ifindex as i32 == -1 {
            return Err(unsupported(format!(
                "packet socket (protocol {protocol:#06x}) bound to an interface that was removed"
            )));
        }
        let words = |r: &pk::PacketRing| format!("{} blocks of {} bytes", r.block_nr, r.block_size);
        if let Some(ring) = diag.rx_ring.as_ref().or(diag.tx_ring.as_ref()) {
            return Err(unsupported(format!(
                "packet socket with a mapped ring ({} {}; not saved yet)",
                if diag.rx_ring.is_some() {
                    "PACKET_RX_RING"
                } else {
                    "PACKET_TX_RING"
                },
                words(ring)
            )));
        }
        let fanout = int(fd, pk::PACKET_FANOUT).map_err(|e| fail("PACKET_FANOUT", e))? as u32;
        if fanout != 0 && matches!((fanout >> 16) & 0xff, FANOUT_CBPF | FANOUT_EBPF) {
            return Err(unsupported(format!(
                "packet socket in fanout group {} of mode {} (its BPF program cannot be read \
                 back)",
                fanout & 0xffff,
                fanout_mode(fanout)
            )));
        }
        let filter = match sockopts::read_filter(fd) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                return Err(unsupported(
                    "packet socket with an eBPF filter (SO_ATTACH_BPF: it cannot be read back)"
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
                    "packet socket with packets waiting to be read (protocol {protocol:#06x}; \
                     a packet socket has no peek offset, so they cannot be read without \
                     consuming them)"
                )));
            }
            Err(e) => return Err(fail("recv(MSG_PEEK)", e.into())),
        }
        let name_of = |index: u32| -> Result<String, FileError> {
            if index == 0 {
                return Ok(String::new());
            }
            ifname(fd, index).map_err(|e| fail("ioctl(SIOCGIFNAME)", e))
        };
        let memberships = diag
            .memberships
            .iter()
            .map(|m| {
                Ok(proto::PacketMembership {
                    ifindex: m.ifindex,
                    ifname: name_of(m.ifindex)?,
                    r#type: u32::from(m.kind),
                    address: m.address.clone(),
                    count: m.count,
                })
            })
            .collect::<Result<Vec<_>, FileError>>()?;
        let flag = |name: i32, op| int(fd, name).map(|v| v != 0).map_err(|e| fail(op, e));
        Ok(open_file::Kind::PacketSocket(proto::PacketSocket {
            inode: file.stat.st_ino,
            r#type: ty,
            protocol: u32::from(protocol),
            ifindex,
            ifname: name_of(ifindex)?,
            version: int(fd, pk::PACKET_VERSION).map_err(|e| fail("PACKET_VERSION", e))? as u32,
            reserve: int(fd, pk::PACKET_RESERVE).map_err(|e| fail("PACKET_RESERVE", e))? as u32,
            copy_thresh: diag.copy_thresh,
            timestamp: int(fd, pk::PACKET_TIMESTAMP).map_err(|e| fail("PACKET_TIMESTAMP", e))?
                as u32,
            auxdata: flag(pk::PACKET_AUXDATA, "PACKET_AUXDATA")?,
            origdev: flag(pk::PACKET_ORIGDEV, "PACKET_ORIGDEV")?,
            vnet_hdr: flag(pk::PACKET_VNET_HDR, "PACKET_VNET_HDR")?,
            loss: flag(pk::PACKET_LOSS, "PACKET_LOSS")?,
            qdisc_bypass: flag(pk::PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS")?,
            ignore_outgoing: flag(pk::PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING")?,
            tx_has_off: flag(pk::PACKET_TX_HAS_OFF, "PACKET_TX_HAS_OFF")?,
            // Older kernels know no such option: 0.
            vnet_hdr_sz: int(fd, pk::PACKET_VNET_HDR_SZ).map_or(0, |v| v as u32),
            fanout,
            memberships,
            options: Some(sockopts::read_options(fd).map_err(|e| fail("getsockopt", e))?),
            filter,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::PacketSocket(_))
    }

    /// Refuses, before anything is created, a restore this process cannot give: without
    /// `CAP_NET_RAW` (`CAP_NET_ADMIN` too for forced buffer sizes or a mark), or onto an
    /// interface this network namespace lacks.
    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        for file in ctx.open_files()? {
            let Some(open_file::Kind::PacketSocket(s)) = &file.kind else {
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
            let mut wanted = vec![("CAP_NET_RAW", CapabilitySet::NET_RAW)];
            let opts = s.options.unwrap_or_default();
            if sockopts::needs_net_admin(&opts)
                .map_err(|e| fail("socket (default buffer sizes)", e))?
            {
                wanted.push(("CAP_NET_ADMIN", CapabilitySet::NET_ADMIN));
            }
            let missing = sockopts::missing_capabilities(&wanted).map_err(|e| fail("capget", e))?;
            if !missing.is_empty() {
                return Err(refuse(
                    "socket(AF_PACKET)",
                    libc::EPERM,
                    format!(
                        "a packet socket needs {}, which the restorer lacks",
                        missing.join(" and ")
                    ),
                ));
            }
            let names = std::iter::once(s.ifname.as_str())
                .chain(s.memberships.iter().map(|m| m.ifname.as_str()))
                .filter(|n| !n.is_empty());
            for name in names {
                if let Err(e) = sockopts::interface_index(name) {
                    return Err(refuse(
                        "find the interface",
                        e.raw_os_error().unwrap_or(libc::ENODEV),
                        format!("no interface named {name:?} in this network namespace"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::PacketSocket(s)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a packet socket".into(),
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
        let protocol =
            u16::try_from(s.protocol).map_err(|_| invalid(format!("protocol {}", s.protocol)))?;
        if s.r#type != SocketType::RAW.as_raw() && s.r#type != SocketType::DGRAM.as_raw() {
            return Err(invalid(format!("a packet socket of type {}", s.r#type)));
        }
        let index_of = |name: &str| -> Result<u32, FileError> {
            if name.is_empty() {
                return Ok(0);
            }
            sockopts::interface_index(name).map_err(|e| fail("find the interface by name", e))
        };
        // Protocol 0: the socket receives nothing until it is bound below.
        let sock = rustix::net::socket_with(
            AddressFamily::PACKET,
            SocketType::from_raw(s.r#type),
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| fail("socket(AF_PACKET)", e.into()))?;
        let fd = sock.as_fd();
        // Nothing may be queued before the socket is as it was.
        sockopts::hold_packets(fd).map_err(|(op, e)| fail(op, e))?;
        let set = |name: i32, value: u32, op: &'static str| {
            raw::set_int(fd, pk::SOL_PACKET, name, value as i32).map_err(|e| fail(op, e))
        };
        if s.version != 0 {
            set(pk::PACKET_VERSION, s.version, "PACKET_VERSION")?;
        }
        if s.reserve != 0 {
            set(pk::PACKET_RESERVE, s.reserve, "PACKET_RESERVE")?;
        }
        if s.copy_thresh != 0 {
            set(pk::PACKET_COPY_THRESH, s.copy_thresh, "PACKET_COPY_THRESH")?;
        }
        if s.timestamp != 0 {
            set(pk::PACKET_TIMESTAMP, s.timestamp, "PACKET_TIMESTAMP")?;
        }
        for (on, name, op) in [
            (s.auxdata, pk::PACKET_AUXDATA, "PACKET_AUXDATA"),
            (s.origdev, pk::PACKET_ORIGDEV, "PACKET_ORIGDEV"),
            (s.vnet_hdr, pk::PACKET_VNET_HDR, "PACKET_VNET_HDR"),
            (s.loss, pk::PACKET_LOSS, "PACKET_LOSS"),
            (
                s.qdisc_bypass,
                pk::PACKET_QDISC_BYPASS,
                "PACKET_QDISC_BYPASS",
            ),
            (
                s.ignore_outgoing,
                pk::PACKET_IGNORE_OUTGOING,
                "PACKET_IGNORE_OUTGOING",
            ),
            (s.tx_has_off, pk::PACKET_TX_HAS_OFF, "PACKET_TX_HAS_OFF"),
        ] {
            if on {
                set(name, 1, op)?;
            }
        }
        // With vnet_hdr the kernel starts at the plain header's 10 bytes.
        if s.vnet_hdr && s.vnet_hdr_sz != 0 && s.vnet_hdr_sz != 10 {
            set(pk::PACKET_VNET_HDR_SZ, s.vnet_hdr_sz, "PACKET_VNET_HDR_SZ")?;
        }
        if let Some(o) = &s.options {
            sockopts::apply_options(fd, o).map_err(|(op, e)| fail(op, e))?;
        }
        let ifindex = index_of(&s.ifname)?;
        if protocol != 0 || ifindex != 0 {
            raw::raw_bind_or_connect(fd, &sockaddr_ll(protocol, ifindex), false)
                .map_err(|e| fail("bind (protocol, interface)", e))?;
        }
        if s.fanout != 0 {
            set(
                pk::PACKET_FANOUT,
                s.fanout & !(FANOUT_UNIQUEID << 24),
                "PACKET_FANOUT",
            )?;
        }
        for m in &s.memberships {
            let kind = u16::try_from(m.r#type)
                .map_err(|_| invalid(format!("a membership of type {}", m.r#type)))?;
            let mreq = packet_mreq(index_of(&m.ifname)?, kind, &m.address);
            for _ in 0..m.count.max(1) {
                raw::set_bytes(fd, pk::SOL_PACKET, pk::PACKET_ADD_MEMBERSHIP, &mreq)
                    .map_err(|e| fail("PACKET_ADD_MEMBERSHIP", e))?;
            }
        }
        sockopts::release_packets(fd, s.filter.as_ref()).map_err(|(op, e)| fail(op, e))?;
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(sock)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::PacketSocket(s)) = &file.kind else {
            return Description {
                text: "not a packet socket".into(),
                pipe: None,
            };
        };
        let mut text = describe_socket(s);
        if s.fanout != 0 {
            text.push_str(&format!(
                ", fanout group {} ({})",
                s.fanout & 0xffff,
                fanout_mode(s.fanout)
            ));
        }
        if !s.memberships.is_empty() {
            text.push_str(&format!(", {} membership(s)", s.memberships.len()));
        }
        if let Some(f) = &s.filter {
            text.push_str(&format!(
                ", filter of {} instructions",
                f.instructions.len()
            ));
        }
        Description { text, pipe: None }
    }
}

/// "packet socket (raw, protocol 0x0003) on lo".
fn describe_socket(s: &proto::PacketSocket) -> String {
    let on = if s.ifname.is_empty() {
        "on every interface".to_owned()
    } else {
        format!("on {}", s.ifname)
    };
    format!(
        "packet socket ({}, protocol {:#06x}) {on}",
        type_name(s.r#type),
        s.protocol
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_ll_round_trip() {
        let b = sockaddr_ll(0x88b5, 7);
        assert_eq!(b.len(), 20);
        assert_eq!(parse_ll(&b), (0x88b5, 7));
        assert_eq!(parse_ll(&[]), (0, 0));
    }

    #[test]
    fn membership_request_layout() {
        let b = packet_mreq(3, 1, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[0..4], &3u32.to_ne_bytes());
        assert_eq!(&b[6..8], &6u16.to_ne_bytes());
        assert_eq!(&b[8..14], &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn described_with_group_and_interface() {
        let s = proto::PacketSocket {
            r#type: 2,
            protocol: 0x88b6,
            ifname: "lo".into(),
            fanout: 4242,
            ..Default::default()
        };
        assert_eq!(
            describe_socket(&s),
            "packet socket (datagram, protocol 0x88b6) on lo"
        );
        let file = proto::OpenFile {
            kind: Some(open_file::Kind::PacketSocket(s)),
            ..Default::default()
        };
        let saved = Saved {
            processes: &[],
            tables: &[],
            files: &[],
            pipes: &[],
        };
        assert!(
            PacketSocketKind
                .describe(&file, &saved)
                .text
                .ends_with("fanout group 4242 (hash)")
        );
    }
}
