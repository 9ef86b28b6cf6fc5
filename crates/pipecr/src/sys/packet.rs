//! Packet sockets (`AF_PACKET`) as the kernel describes them: the `SOL_PACKET` option
//! numbers (`linux/if_packet.h`), the `packet_diag` dump of `NETLINK_SOCK_DIAG` (what
//! `ss -0` uses: the interface, version, flags, memberships, rings and fanout group of
//! each packet socket, [`packet_diag`]), and attaching a classic BPF filter
//! ([`attach_filter`], which needs a pointer in its argument).
//!
//! The `packet_diag` request and reply are built and parsed here by hand, as plain
//! bytes: `netlink-packet-sock-diag` knows only inet and unix sockets. What the values
//! mean is documented where the packet kind uses them (`files/packet.rs`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink, recv, sendto,
    socket_with,
};

/// `SOL_PACKET`.
pub const SOL_PACKET: i32 = 263;
/// `PACKET_ADD_MEMBERSHIP` (`struct packet_mreq`).
pub const PACKET_ADD_MEMBERSHIP: i32 = 1;
/// `PACKET_RX_RING`.
pub const PACKET_RX_RING: i32 = 5;
/// `PACKET_COPY_THRESH`.
pub const PACKET_COPY_THRESH: i32 = 7;
/// `PACKET_AUXDATA`.
pub const PACKET_AUXDATA: i32 = 8;
/// `PACKET_ORIGDEV`.
pub const PACKET_ORIGDEV: i32 = 9;
/// `PACKET_VERSION`.
pub const PACKET_VERSION: i32 = 10;
/// `PACKET_RESERVE`.
pub const PACKET_RESERVE: i32 = 12;
/// `PACKET_TX_RING`.
pub const PACKET_TX_RING: i32 = 13;
/// `PACKET_LOSS`.
pub const PACKET_LOSS: i32 = 14;
/// `PACKET_VNET_HDR`.
pub const PACKET_VNET_HDR: i32 = 15;
/// `PACKET_TIMESTAMP`.
pub const PACKET_TIMESTAMP: i32 = 17;
/// `PACKET_FANOUT`.
pub const PACKET_FANOUT: i32 = 18;
/// `PACKET_TX_HAS_OFF`.
pub const PACKET_TX_HAS_OFF: i32 = 19;
/// `PACKET_QDISC_BYPASS`.
pub const PACKET_QDISC_BYPASS: i32 = 20;
/// `PACKET_IGNORE_OUTGOING`.
pub const PACKET_IGNORE_OUTGOING: i32 = 23;
/// `PACKET_VNET_HDR_SZ` (Linux 6.7).
pub const PACKET_VNET_HDR_SZ: i32 = 24;
/// `SO_GET_FILTER` (= `SO_ATTACH_FILTER`), `SO_LOCK_FILTER`.
pub const SO_GET_FILTER: i32 = libc::SO_ATTACH_FILTER;
/// See [`SO_GET_FILTER`].
pub const SO_LOCK_FILTER: i32 = 44;

/// `SOCK_DIAG_BY_FAMILY`, `NLM_F_REQUEST | NLM_F_DUMP`, `NLMSG_DONE`, `NLMSG_ERROR`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
/// `PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT`.
const PACKET_SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8;
/// Attribute types of a `packet_diag_msg` reply.
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;
/// The size of `struct packet_diag_mclist` (index, count, type, alen, addr[32]).
const MCLIST_SIZE: usize = 44;

/// `struct packet_diag_ring`: a memory-mapped ring's `tpacket_req3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketRing {
    /// `tp_block_size`, `tp_block_nr`, `tp_frame_size`, `tp_frame_nr`.
    pub block_size: u32,
    /// See [`PacketRing::block_size`].
    pub block_nr: u32,
    /// See [`PacketRing::block_size`].
    pub frame_size: u32,
    /// See [`PacketRing::block_size`].
    pub frame_nr: u32,
}

/// One `struct packet_diag_mclist`: a membership added with `PACKET_ADD_MEMBERSHIP`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketMembership {
    /// The interface index.
    pub ifindex: u32,
    /// How many times it was added.
    pub count: u32,
    /// `PACKET_MR_*`.
    pub kind: u16,
    /// The link-layer address (`alen` bytes).
    pub address: Vec<u8>,
}

/// What `packet_diag` says about one packet socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketDiag {
    /// Its inode.
    pub inode: u32,
    /// `SOCK_RAW` or `SOCK_DGRAM`.
    pub sock_type: u8,
    /// Its protocol (`pdiag_num`, host byte order).
    pub protocol: u16,
    /// `packet_diag_info`: interface index, version, reserve, copy threshold, timestamp
    /// flags and `PDI_*` flags.
    pub ifindex: u32,
    /// See [`PacketDiag::ifindex`].
    pub version: u32,
    /// See [`PacketDiag::ifindex`].
    pub reserve: u32,
    /// See [`PacketDiag::ifindex`].
    pub copy_thresh: u32,
    /// See [`PacketDiag::ifindex`].
    pub tstamp: u32,
    /// See [`PacketDiag::ifindex`].
    pub flags: u32,
    /// The memberships, in the kernel's order.
    pub memberships: Vec<PacketMembership>,
    /// The receive ring, if one is set up.
    pub rx_ring: Option<PacketRing>,
    /// The transmit ring, if one is set up.
    pub tx_ring: Option<PacketRing>,
    /// The fanout group (`id | type << 16 | flags << 24`), if any.
    pub fanout: Option<u32>,
}

/// `sendto(NETLINK_SOCK_DIAG, packet_diag_req{PACKET_SHOW_*}, NLM_F_DUMP)`—Asks the
/// kernel about the packet socket with inode `inode` (in the caller's network
/// namespace): `None` when there is none such.
///
/// The kernel answers packet requests only as a dump of every packet socket of the
/// namespace; the one with `inode` is picked from it.
///
/// # References
///  - [sock_diag(7)](https://man7.org/linux/man-pages/man7/sock_diag.7.html),
///    `include/uapi/linux/packet_diag.h`
pub fn packet_diag(inode: u64) -> io::Result<Option<PacketDiag>> {
    let Ok(ino) = u32::try_from(inode) else {
        return Ok(None);
    };
    let nl = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    let kernel = netlink::SocketAddrNetlink::new(0, 0);
    sendto(&nl, &request(), SendFlags::empty(), &kernel)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut found = None;
    loop {
        let (n, _) = recv(&nl, &mut buf[..], RecvFlags::empty())?;
        match parse_batch(&buf[..n], ino, &mut found)? {
            Batch::More => continue,
            Batch::Done => return Ok(found),
        }
    }
}

/// `nlmsghdr` + `packet_diag_req` for a dump of every packet socket.
fn request() -> Vec<u8> {
    let mut req = Vec::with_capacity(36);
    req.extend_from_slice(&36u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    req.push(libc::AF_PACKET as u8); // sdiag_family
    req.push(0); // sdiag_protocol (must be 0)
    req.extend_from_slice(&0u16.to_ne_bytes()); // pad
    req.extend_from_slice(&0u32.to_ne_bytes()); // pdiag_ino (ignored by the dump)
    req.extend_from_slice(&PACKET_SHOW.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // pdiag_cookie
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
    io::Error::new(io::ErrorKind::InvalidData, "malformed packet_diag reply")
}

/// Whether a datagram of the dump ended it.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    More,
    Done,
}

/// Parses one datagram of the dump's reply (netlink messages one after another),
/// keeping the socket with inode `ino` in `found`.
fn parse_batch(buf: &[u8], ino: u32, found: &mut Option<PacketDiag>) -> io::Result<Batch> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32_at(buf, at).ok_or_else(malformed)? as usize;
        let ty = u16_at(buf, at + 4).ok_or_else(malformed)?;
        if len < 16 {
            return Err(malformed());
        }
        let msg = buf.get(at + 16..at + len).ok_or_else(malformed)?;
        match ty {
            NLMSG_DONE => return Ok(Batch::Done),
            NLMSG_ERROR => {
                let err = i32::from_ne_bytes(
                    msg.get(..4)
                        .ok_or_else(malformed)?
                        .try_into()
                        .map_err(|_| malformed())?,
                );
                return Err(io::Error::from_raw_os_error(-err));
            }
            SOCK_DIAG_BY_FAMILY if u32_at(msg, 4) == Some(ino) => {
                *found = Some(parse_socket(msg)?);
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(Batch::More)
}

/// Parses one `packet_diag_msg` with its attributes.
fn parse_socket(msg: &[u8]) -> io::Result<PacketDiag> {
    if msg.len() < 16 {
        return Err(malformed());
    }
    let mut diag = PacketDiag {
        sock_type: msg[1],
        protocol: u16_at(msg, 2).ok_or_else(malformed)?,
        inode: u32_at(msg, 4).ok_or_else(malformed)?,
        ..PacketDiag::default()
    };
    let ring = |data: &[u8]| -> io::Result<PacketRing> {
        Ok(PacketRing {
            block_size: u32_at(data, 0).ok_or_else(malformed)?,
            block_nr: u32_at(data, 4).ok_or_else(malformed)?,
            frame_size: u32_at(data, 8).ok_or_else(malformed)?,
            frame_nr: u32_at(data, 12).ok_or_else(malformed)?,
        })
    };
    // rtattrs: u16 length (header included), u16 type, payload, padded to 4 bytes.
    let mut at = 16;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at).ok_or_else(malformed)? as usize;
        // NLA_F_NESTED may be set on the type.
        let atype = u16_at(msg, at + 2).ok_or_else(malformed)? & 0x3fff;
        if alen < 4 {
            return Err(malformed());
        }
        let data = msg.get(at + 4..at + alen).ok_or_else(malformed)?;
        match atype {
            PACKET_DIAG_INFO => {
                let w = |i: usize| u32_at(data, i * 4).ok_or_else(malformed);
                diag.ifindex = w(0)?;
                diag.version = w(1)?;
                diag.reserve = w(2)?;
                diag.copy_thresh = w(3)?;
                diag.tstamp = w(4)?;
                diag.flags = w(5)?;
            }
            PACKET_DIAG_MCLIST => {
                for m in data.chunks_exact(MCLIST_SIZE) {
                    let alen = usize::from(u16_at(m, 10).ok_or_else(malformed)?).min(32);
                    diag.memberships.push(PacketMembership {
                        ifindex: u32_at(m, 0).ok_or_else(malformed)?,
                        count: u32_at(m, 4).ok_or_else(malformed)?,
                        kind: u16_at(m, 8).ok_or_else(malformed)?,
                        address: m[12..12 + alen].to_vec(),
                    });
                }
            }
            PACKET_DIAG_RX_RING => diag.rx_ring = Some(ring(data)?),
            PACKET_DIAG_TX_RING => diag.tx_ring = Some(ring(data)?),
            PACKET_DIAG_FANOUT => diag.fanout = Some(u32_at(data, 0).ok_or_else(malformed)?),
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(diag)
}

/// `setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &sock_fprog)`—Attaches the classic BPF
/// program `insns` (each a `struct sock_filter`: code, jt, jf, k) to the socket.
///
/// # References
///  - [socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html),
///    [Documentation/networking/filter.rst](https://docs.kernel.org/networking/filter.html)
#[doc(alias = "SO_ATTACH_FILTER")]
pub fn attach_filter(fd: BorrowedFd<'_>, insns: &[(u16, u8, u8, u32)]) -> io::Result<()> {
    let mut prog: Vec<libc::sock_filter> = insns
        .iter()
        .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, `len` instructions valid for reads for the
    // duration of the call; the kernel copies them and keeps no pointer.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(data);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn message(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(body);
        b
    }

    /// Two sockets in one datagram, then the end of the dump: the one asked for is
    /// kept with its info, membership, ring and fanout group.
    #[test]
    fn dump_reply_attributes() {
        let mut other = vec![libc::AF_PACKET as u8, 3, 3, 0];
        other.extend_from_slice(&5u32.to_ne_bytes());
        other.extend_from_slice(&[0; 8]);
        let mut mine = vec![libc::AF_PACKET as u8, 2];
        mine.extend_from_slice(&0x800u16.to_ne_bytes());
        mine.extend_from_slice(&77u32.to_ne_bytes());
        mine.extend_from_slice(&[0; 8]);
        let info: Vec<u8> = [1u32, 2, 16, 0, 3, 0x13]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        mine.extend(attr(PACKET_DIAG_INFO, &info));
        let mut ml = Vec::new();
        ml.extend_from_slice(&1u32.to_ne_bytes());
        ml.extend_from_slice(&2u32.to_ne_bytes());
        ml.extend_from_slice(&1u16.to_ne_bytes());
        ml.extend_from_slice(&6u16.to_ne_bytes());
        ml.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        ml.extend_from_slice(&[0; 26]);
        mine.extend(attr(PACKET_DIAG_MCLIST | 0x8000, &ml));
        let ring: Vec<u8> = [4096u32, 4, 2048, 8, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        mine.extend(attr(PACKET_DIAG_RX_RING, &ring));
        mine.extend(attr(PACKET_DIAG_FANOUT, &(9u32 | 1 << 16).to_ne_bytes()));
        let mut b = message(SOCK_DIAG_BY_FAMILY, &other);
        b.extend(message(SOCK_DIAG_BY_FAMILY, &mine));
        let mut found = None;
        assert_eq!(parse_batch(&b, 77, &mut found).unwrap(), Batch::More);
        let d = found.unwrap();
        assert_eq!((d.sock_type, d.protocol, d.inode), (2, 0x800, 77));
        assert_eq!((d.ifindex, d.version, d.reserve, d.tstamp), (1, 2, 16, 3));
        assert_eq!(d.flags, 0x13);
        assert_eq!(
            d.memberships,
            [PacketMembership {
                ifindex: 1,
                count: 2,
                kind: 1,
                address: vec![1, 2, 3, 4, 5, 6],
            }]
        );
        assert_eq!(d.rx_ring.map(|r| (r.block_nr, r.frame_nr)), Some((4, 8)));
        assert_eq!(d.tx_ring, None);
        assert_eq!(d.fanout, Some(9 | 1 << 16));
        let mut found = None;
        assert_eq!(
            parse_batch(&message(NLMSG_DONE, &[0; 4]), 77, &mut found).unwrap(),
            Batch::Done
        );
        assert!(found.is_none());
    }

    #[test]
    fn errors_and_damage() {
        let mut e = (-libc::EPERM).to_ne_bytes().to_vec();
        e.extend_from_slice(&[0; 16]);
        let err = parse_batch(&message(NLMSG_ERROR, &e), 1, &mut None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        let mut short = message(SOCK_DIAG_BY_FAMILY, &[0; 16]);
        short[0] = 200;
        assert!(parse_batch(&short, 1, &mut None).is_err());
        let mut bad_attr = vec![0u8; 8];
        bad_attr.extend_from_slice(&[0; 8]);
        bad_attr[4..8].copy_from_slice(&3u32.to_ne_bytes());
        bad_attr.extend_from_slice(&[2, 0, 0, 0]);
        assert!(parse_batch(&message(SOCK_DIAG_BY_FAMILY, &bad_attr), 3, &mut None).is_err());
    }
}
