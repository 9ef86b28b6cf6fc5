//! What the inet socket kinds (TCP in [`super::tcp`], UDP in [`super::udp`], raw IP in
//! [`super::rawip`]) share: not a kind itself. Addresses to and from their saved form, the socket options saved and
//! set again ([`proto::InetOptions`]), and the `inet_diag` dump of a netlink
//! `SOCK_DIAG` socket (through `netlink-packet-sock-diag`) that finds a socket's
//! backlog and the connections waiting in it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use pipecr_image::proto;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink, recv, send, socket_with,
    sockopt,
};

use crate::sys::inet as raw;

/// `AF_INET` and `AF_INET6` as saved.
pub const AF_INET: u32 = libc::AF_INET as u32;
/// See [`AF_INET`].
pub const AF_INET6: u32 = libc::AF_INET6 as u32;

/// A socket address as saved.
pub fn to_saved(addr: SocketAddr) -> proto::InetAddress {
    match addr {
        SocketAddr::V4(a) => proto::InetAddress {
            addr: a.ip().octets().to_vec(),
            port: u32::from(a.port()),
            flowinfo: 0,
            scope_id: 0,
        },
        SocketAddr::V6(a) => proto::InetAddress {
            addr: a.ip().octets().to_vec(),
            port: u32::from(a.port()),
            flowinfo: a.flowinfo(),
            scope_id: a.scope_id(),
        },
    }
}

/// A saved socket address, or `None` when none was saved (no address bytes).
pub fn from_saved(addr: Option<&proto::InetAddress>) -> Result<Option<SocketAddr>, String> {
    let Some(a) = addr else { return Ok(None) };
    let port = u16::try_from(a.port).map_err(|_| format!("port {} out of range", a.port))?;
    match a.addr.len() {
        0 => Ok(None),
        4 => {
            let b: [u8; 4] = a.addr[..].try_into().map_err(|_| "bad address")?;
            Ok(Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(b),
                port,
            ))))
        }
        16 => {
            let b: [u8; 16] = a.addr[..].try_into().map_err(|_| "bad address")?;
            Ok(Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(b),
                port,
                a.flowinfo,
                a.scope_id,
            ))))
        }
        n => Err(format!("an address of {n} bytes")),
    }
}

/// Whether `fd` (pipecr's copy of an open file whose link is `link`) is an IPv4 or IPv6
/// socket of type `kind` speaking `protocol` (`IPPROTO_TCP`, `IPPROTO_UDP`; a socket
/// created with protocol 0 reports none): what the TCP and UDP kinds claim.
pub fn is_inet_socket(
    link: &str,
    fd: BorrowedFd<'_>,
    kind: rustix::net::SocketType,
    protocol: libc::c_int,
) -> bool {
    link.starts_with("socket:[")
        && sockopt::socket_domain(fd)
            .is_ok_and(|d| d == AddressFamily::INET || d == AddressFamily::INET6)
        && sockopt::socket_type(fd).is_ok_and(|t| t == kind)
        && sockopt::socket_protocol(fd)
            .is_ok_and(|p| p.is_none_or(|p| p.as_raw().get() == protocol as u32))
}

/// The socket's own address, `None` when it has no port yet (never bound).
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    let addr = rustix::net::getsockname(fd)?;
    Ok(SocketAddr::try_from(addr).ok().filter(|a| a.port() != 0))
}

/// The socket's peer, `None` when it is not connected.
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    match rustix::net::getpeername(fd) {
        Ok(Some(addr)) => Ok(SocketAddr::try_from(addr).ok()),
        Ok(None) | Err(rustix::io::Errno::NOTCONN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `127.0.0.1:80` or `[::1]:80`, or `-` for no address.
pub fn show(addr: Option<&proto::InetAddress>) -> String {
    match from_saved(addr) {
        Ok(Some(a)) => a.to_string(),
        Ok(None) => "-".into(),
        Err(e) => e,
    }
}

fn bool_opt(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<bool> {
    Ok(raw::get_int(fd, level, name)? != 0)
}

fn micros(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_micros().try_into().unwrap_or(u64::MAX))
}

/// Reads the options of [`proto::InetOptions`] that apply to a socket of `family`
/// (`tcp`: the TCP-level ones too, otherwise the UDP-level ones).
pub fn read_options(fd: BorrowedFd<'_>, family: u32, tcp: bool) -> io::Result<proto::InetOptions> {
    let mut o = read_ip_options(fd, family)?;
    if tcp {
        o.nodelay = sockopt::tcp_nodelay(fd)?;
        o.cork = sockopt::tcp_cork(fd)?;
        o.keepidle = sockopt::tcp_keepidle(fd)?.as_secs() as i32;
        o.keepintvl = sockopt::tcp_keepintvl(fd)?.as_secs() as i32;
        o.keepcnt = sockopt::tcp_keepcnt(fd)? as i32;
        o.user_timeout = sockopt::tcp_user_timeout(fd)?;
        o.quickack = sockopt::tcp_quickack(fd)?;
        o.notsent_lowat = raw::get_int(fd, libc::IPPROTO_TCP, raw::TCP_NOTSENT_LOWAT)? as u32;
        o.defer_accept = raw::get_int(fd, libc::IPPROTO_TCP, raw::TCP_DEFER_ACCEPT)?;
        o.congestion = sockopt::tcp_congestion(fd)?;
    } else {
        o.udp_segment = raw::get_int(fd, raw::SOL_UDP, raw::UDP_SEGMENT)?;
    }
    Ok(o)
}

/// The integer options of [`proto::InetOptions::int_options`], by level: `SOL_SOCKET`,
/// then the IP level of the socket's family (IPv4, IPv6).
const INT_OPTIONS_SOCKET: [i32; 5] = [
    libc::SO_TIMESTAMP,
    libc::SO_TIMESTAMPNS,
    libc::SO_RXQ_OVFL,
    libc::SO_DONTROUTE,
    libc::SO_SELECT_ERR_QUEUE,
];
/// See [`INT_OPTIONS_SOCKET`].
const INT_OPTIONS_IPV4: [i32; 10] = [
    libc::IP_PKTINFO,
    libc::IP_RECVTTL,
    libc::IP_RECVTOS,
    libc::IP_RECVERR,
    libc::IP_RECVOPTS,
    libc::IP_RETOPTS,
    libc::IP_RECVORIGDSTADDR,
    libc::IP_MULTICAST_TTL,
    libc::IP_MULTICAST_LOOP,
    libc::IP_MTU_DISCOVER,
];
/// See [`INT_OPTIONS_SOCKET`].
const INT_OPTIONS_IPV6: [i32; 8] = [
    libc::IPV6_RECVPKTINFO,
    libc::IPV6_RECVHOPLIMIT,
    libc::IPV6_RECVTCLASS,
    libc::IPV6_RECVERR,
    libc::IPV6_MULTICAST_HOPS,
    libc::IPV6_MULTICAST_LOOP,
    libc::IPV6_MTU_DISCOVER,
    libc::IPV6_RECVORIGDSTADDR,
];

/// Reads the options of [`proto::InetOptions::int_options`] (those the kernel answers).
fn read_int_options(fd: BorrowedFd<'_>, v6: bool) -> Vec<proto::IntOption> {
    let (ip_level, ip_names): (i32, &[i32]) = if v6 {
        (libc::IPPROTO_IPV6, &INT_OPTIONS_IPV6)
    } else {
        (libc::IPPROTO_IP, &INT_OPTIONS_IPV4)
    };
    INT_OPTIONS_SOCKET
        .iter()
        .map(|&n| (libc::SOL_SOCKET, n))
        .chain(ip_names.iter().map(|&n| (ip_level, n)))
        .filter_map(|(level, name)| {
            let value = raw::get_int(fd, level, name).ok()?;
            Some(proto::IntOption { level, name, value })
        })
        .collect()
}

/// Sets each of `options` whose value differs from what `fd` has now.
fn apply_int_options(
    fd: BorrowedFd<'_>,
    options: &[proto::IntOption],
) -> Result<(), (&'static str, io::Error)> {
    for o in options {
        let now = raw::get_int(fd, o.level, o.name).ok();
        if now != Some(o.value) {
            raw::set_int(fd, o.level, o.name, o.value).map_err(|e| {
                (
                    "setsockopt (an integer option of InetOptions.int_options)",
                    io::Error::new(
                        e.kind(),
                        format!("level {} option {} = {}: {e}", o.level, o.name, o.value),
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// Reads the options of [`proto::InetOptions`] at the socket and IP levels (none of the
/// TCP or UDP ones): what every inet socket has, a raw one too.
pub fn read_ip_options(fd: BorrowedFd<'_>, family: u32) -> io::Result<proto::InetOptions> {
    let v6 = family == AF_INET6;
    let mut o = proto::InetOptions {
        reuseaddr: sockopt::socket_reuseaddr(fd)?,
        reuseport: sockopt::socket_reuseport(fd)?,
        keepalive: sockopt::socket_keepalive(fd)?,
        rcvbuf: sockopt::socket_recv_buffer_size(fd)? as u32,
        sndbuf: sockopt::socket_send_buffer_size(fd)? as u32,
        priority: raw::get_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY)?,
        mark: raw::get_int(fd, libc::SOL_SOCKET, libc::SO_MARK)? as u32,
        broadcast: sockopt::socket_broadcast(fd)?,
        rcvlowat: raw::get_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT)?,
        rcvtimeo_us: micros(sockopt::socket_timeout(
            fd,
            rustix::net::sockopt::Timeout::Recv,
        )?),
        sndtimeo_us: micros(sockopt::socket_timeout(
            fd,
            rustix::net::sockopt::Timeout::Send,
        )?),
        // Raw sockets have no peek offset (EOPNOTSUPP): off.
        peek_off: match raw::get_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => -1,
            other => other?,
        },
        ..Default::default()
    };
    if let Some(l) = sockopt::socket_linger(fd)? {
        o.linger_on = true;
        o.linger_secs = l.as_secs() as i32;
    }
    let mut dev = [0u8; 32];
    let n = raw::get_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut dev)?;
    o.bound_device = String::from_utf8_lossy(&dev[..n])
        .trim_end_matches('\0')
        .to_owned();
    if v6 {
        o.v6only = sockopt::ipv6_v6only(fd)?;
        o.tos = raw::get_int(fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS)?;
        o.ttl = raw::get_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)?;
        o.freebind = bool_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)?;
    } else {
        o.tos = raw::get_int(fd, libc::IPPROTO_IP, libc::IP_TOS)?;
        o.ttl = raw::get_int(fd, libc::IPPROTO_IP, libc::IP_TTL)?;
        o.freebind = bool_opt(fd, libc::IPPROTO_IP, libc::IP_FREEBIND)?;
    }
    // Not for TCP: the kernel refuses several of them on stream sockets (multicast).
    if sockopt::socket_type(fd)? != SocketType::STREAM {
        o.int_options = read_int_options(fd, v6);
    }
    Ok(o)
}

/// The receive and send buffer sizes a new socket like `fd` gets (what a saved size is
/// compared with: only a size that differs is set again, with `SO_*BUFFORCE`).
fn default_buffers(family: u32, tcp: bool) -> io::Result<(usize, usize)> {
    let af = if family == AF_INET6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let ty = if tcp {
        SocketType::STREAM
    } else {
        SocketType::DGRAM
    };
    let s = socket_with(af, ty, SocketFlags::CLOEXEC, None)?;
    Ok((
        sockopt::socket_recv_buffer_size(&s)?,
        sockopt::socket_send_buffer_size(&s)?,
    ))
}

/// Sets the options saved in `o` on a socket of `family`: every option whose value
/// differs from what a new socket has. Called before the socket is bound (the options
/// bind depends on: reuse, v6only, freebind, device), or with `bound` after (then
/// `IPV6_V6ONLY`, which the kernel refuses on a bound socket, is left to the caller).
pub fn apply_options(
    fd: BorrowedFd<'_>,
    o: &proto::InetOptions,
    family: u32,
    tcp: bool,
    bound: bool,
) -> Result<(), (&'static str, io::Error)> {
    let defaults = default_buffers(family, tcp).map_err(|e| ("socket", e))?;
    apply_ip_options(fd, o, family, defaults, bound)?;
    if tcp {
        apply_tcp_options(fd, o)?;
    } else if o.udp_segment != 0 {
        raw::set_int(fd, raw::SOL_UDP, raw::UDP_SEGMENT, o.udp_segment)
            .map_err(|e| ("UDP_SEGMENT", e))?;
    }
    Ok(())
}

/// The socket- and IP-level part of [`apply_options`] (what [`read_ip_options`] reads),
/// for a socket whose new buffers sizes are `defaults` (receive, send): a saved size
/// that differs is set again.
pub fn apply_ip_options(
    fd: BorrowedFd<'_>,
    o: &proto::InetOptions,
    family: u32,
    defaults: (usize, usize),
    bound: bool,
) -> Result<(), (&'static str, io::Error)> {
    let v6 = family == AF_INET6;
    let e = |what: &'static str| move |err: rustix::io::Errno| (what, io::Error::from(err));
    let r = |what: &'static str| move |err: io::Error| (what, err);
    if o.reuseaddr {
        sockopt::set_socket_reuseaddr(fd, true).map_err(e("SO_REUSEADDR"))?;
    }
    if o.reuseport {
        sockopt::set_socket_reuseport(fd, true).map_err(e("SO_REUSEPORT"))?;
    }
    if o.keepalive {
        sockopt::set_socket_keepalive(fd, true).map_err(e("SO_KEEPALIVE"))?;
    }
    let (rcv, snd) = defaults;
    if o.rcvbuf as usize != rcv && o.rcvbuf > 0 {
        sockopt::set_socket_recv_buffer_size_force(fd, o.rcvbuf as usize / 2)
            .map_err(e("SO_RCVBUFFORCE"))?;
    }
    if o.sndbuf as usize != snd && o.sndbuf > 0 {
        sockopt::set_socket_send_buffer_size_force(fd, o.sndbuf as usize / 2)
            .map_err(e("SO_SNDBUFFORCE"))?;
    }
    if o.linger_on {
        let secs = Duration::from_secs(o.linger_secs.max(0) as u64);
        sockopt::set_socket_linger(fd, Some(secs)).map_err(e("SO_LINGER"))?;
    }
    if o.priority != 0 {
        raw::set_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY, o.priority)
            .map_err(r("SO_PRIORITY"))?;
    }
    if o.mark != 0 {
        raw::set_int(fd, libc::SOL_SOCKET, libc::SO_MARK, o.mark as i32).map_err(r("SO_MARK"))?;
    }
    if o.broadcast {
        sockopt::set_socket_broadcast(fd, true).map_err(e("SO_BROADCAST"))?;
    }
    if o.rcvlowat > 1 {
        raw::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, o.rcvlowat)
            .map_err(r("SO_RCVLOWAT"))?;
    }
    for (us, which, what) in [
        (o.rcvtimeo_us, sockopt::Timeout::Recv, "SO_RCVTIMEO"),
        (o.sndtimeo_us, sockopt::Timeout::Send, "SO_SNDTIMEO"),
    ] {
        if us != 0 {
            sockopt::set_socket_timeout(fd, which, Some(Duration::from_micros(us)))
                .map_err(e(what))?;
        }
    }
    if o.peek_off >= 0 {
        raw::set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, o.peek_off)
            .map_err(r("SO_PEEK_OFF"))?;
    }
    if !o.bound_device.is_empty() {
        raw::set_bytes(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            o.bound_device.as_bytes(),
        )
        .map_err(r("SO_BINDTODEVICE"))?;
    }
    if v6 {
        if !bound {
            sockopt::set_ipv6_v6only(fd, o.v6only).map_err(e("IPV6_V6ONLY"))?;
        }
        if o.tos != 0 {
            raw::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, o.tos)
                .map_err(r("IPV6_TCLASS"))?;
        }
        raw::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, o.ttl)
            .map_err(r("IPV6_UNICAST_HOPS"))?;
        if o.freebind {
            raw::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1)
                .map_err(r("IPV6_FREEBIND"))?;
        }
    } else {
        if o.tos != 0 {
            raw::set_int(fd, libc::IPPROTO_IP, libc::IP_TOS, o.tos).map_err(r("IP_TOS"))?;
        }
        raw::set_int(fd, libc::IPPROTO_IP, libc::IP_TTL, o.ttl).map_err(r("IP_TTL"))?;
        if o.freebind {
            raw::set_int(fd, libc::IPPROTO_IP, libc::IP_FREEBIND, 1).map_err(r("IP_FREEBIND"))?;
        }
    }
    apply_int_options(fd, &o.int_options)
}

/// The TCP-level part of [`apply_options`] (also what a restored connection sets once
/// it is out of repair mode).
pub fn apply_tcp_options(
    fd: BorrowedFd<'_>,
    o: &proto::InetOptions,
) -> Result<(), (&'static str, io::Error)> {
    let e = |what: &'static str| move |err: rustix::io::Errno| (what, io::Error::from(err));
    let r = |what: &'static str| move |err: io::Error| (what, err);
    sockopt::set_tcp_nodelay(fd, o.nodelay).map_err(e("TCP_NODELAY"))?;
    sockopt::set_tcp_cork(fd, o.cork).map_err(e("TCP_CORK"))?;
    if o.keepidle > 0 {
        sockopt::set_tcp_keepidle(fd, Duration::from_secs(o.keepidle as u64))
            .map_err(e("TCP_KEEPIDLE"))?;
    }
    if o.keepintvl > 0 {
        sockopt::set_tcp_keepintvl(fd, Duration::from_secs(o.keepintvl as u64))
            .map_err(e("TCP_KEEPINTVL"))?;
    }
    if o.keepcnt > 0 {
        sockopt::set_tcp_keepcnt(fd, o.keepcnt as u32).map_err(e("TCP_KEEPCNT"))?;
    }
    if o.user_timeout != 0 {
        sockopt::set_tcp_user_timeout(fd, o.user_timeout).map_err(e("TCP_USER_TIMEOUT"))?;
    }
    if o.notsent_lowat != 0 {
        raw::set_int(
            fd,
            libc::IPPROTO_TCP,
            raw::TCP_NOTSENT_LOWAT,
            o.notsent_lowat as i32,
        )
        .map_err(r("TCP_NOTSENT_LOWAT"))?;
    }
    if o.defer_accept != 0 {
        raw::set_int(fd, libc::IPPROTO_TCP, raw::TCP_DEFER_ACCEPT, o.defer_accept)
            .map_err(r("TCP_DEFER_ACCEPT"))?;
    }
    if !o.congestion.is_empty() {
        let now = sockopt::tcp_congestion(fd).map_err(e("TCP_CONGESTION"))?;
        if now != o.congestion {
            sockopt::set_tcp_congestion(fd, &o.congestion).map_err(e("TCP_CONGESTION"))?;
        }
    }
    Ok(())
}

/// What `inet_diag` says of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetDiag {
    /// Its inode.
    pub inode: u32,
    /// The kernel's TCP state.
    pub state: u8,
    /// For a listener: connections waiting to be accepted; otherwise bytes queued to read.
    pub recv_queue: u32,
    /// For a listener: its backlog; otherwise bytes queued to send.
    pub send_queue: u32,
    /// Its local address.
    pub local: SocketAddr,
    /// Its peer's address (the unspecified address and port 0 when it has none).
    pub remote: SocketAddr,
}

/// Every socket of `family` and `protocol` (`IPPROTO_TCP`, `IPPROTO_UDP`) in the states
/// of `states` (`1 << state` bits) in the caller's network namespace, from an
/// `inet_diag` dump.
pub fn inet_diag(family: u32, protocol: u8, states: u32) -> io::Result<Vec<InetDiag>> {
    let nl = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    rustix::net::connect(&nl, &netlink::SocketAddrNetlink::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: family as u8,
            protocol,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_truncate(states),
            socket_id: if family == AF_INET6 {
                SocketId::new_v6()
            } else {
                SocketId::new_v4()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    send(&nl, &buf, SendFlags::empty())?;
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, format!("inet_diag: {e}"));
    let mut found = Vec::new();
    let mut rx = vec![0u8; 64 << 10];
    loop {
        let n = recv(&nl, &mut rx[..], RecvFlags::empty())?.0;
        let mut at = 0;
        while at < n {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[at..n])
                .map_err(|e| bad(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    found.push(InetDiag {
                        inode: r.header.inode,
                        state: r.header.state,
                        recv_queue: r.header.recv_queue,
                        send_queue: r.header.send_queue,
                        local: SocketAddr::new(
                            r.header.socket_id.source_address,
                            r.header.socket_id.source_port,
                        ),
                        remote: SocketAddr::new(
                            r.header.socket_id.destination_address,
                            r.header.socket_id.destination_port,
                        ),
                    });
                }
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(e.code.map_or_else(
                        || bad("error".into()),
                        |c| io::Error::from_raw_os_error(-c.get()),
                    ));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += (len + 3) & !3;
        }
    }
}

/// The internet checksum of `data` (one's complement sum of 16-bit words) added to
/// `sum`, folded and complemented.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for pair in data.chunks(2) {
        let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends the transport segment `l4` (a UDP datagram or a TCP segment, header included,
/// its checksum field at `csum_at` left zero) of protocol `proto` from `src` to `dst`
/// through a raw socket (`IPPROTO_RAW`: the IP header is ours), so that it arrives as if
/// `src` had sent it. The checksum is computed here; `mark` is the packet's `SO_MARK`
/// (0: none), which the TCP network lock lets through.
pub fn inject(
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
    mut l4: Vec<u8>,
    csum_at: usize,
    mark: u32,
) -> io::Result<()> {
    use std::net::IpAddr;
    // An IPv4 address seen by an IPv6 socket is v4-mapped: send such packets as IPv4.
    let v4 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    let len = u16::try_from(l4.len()).map_err(|_| io::Error::other("packet too long"))?;
    let (s, d, af, to): (Vec<u8>, Vec<u8>, _, SocketAddr) =
        if let (Some(s), Some(d)) = (v4(src), v4(dst)) {
            (
                s.octets().to_vec(),
                d.octets().to_vec(),
                AddressFamily::INET,
                SocketAddr::new(IpAddr::V4(d), 0),
            )
        } else {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
                return Err(io::Error::other("an IPv6 packet for an IPv4 socket"));
            };
            (
                s.octets().to_vec(),
                d.octets().to_vec(),
                AddressFamily::INET6,
                SocketAddr::new(IpAddr::V6(d), 0),
            )
        };
    // Pseudo-header: addresses, protocol, length (RFC 768, RFC 793, RFC 8200 8.1).
    let mut sum = 0u32;
    for pair in s.chunks(2).chain(d.chunks(2)) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    sum += u32::from(proto) + u32::from(len);
    let mut c = checksum(&l4, sum);
    if c == 0 && proto == libc::IPPROTO_UDP as u8 {
        c = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    let mut pkt = Vec::with_capacity(40 + l4.len());
    if af == AddressFamily::INET {
        // The kernel fills the total length and header checksum (IP_HDRINCL, raw(7)).
        let total = len
            .checked_add(20)
            .ok_or_else(|| io::Error::other("packet too long"))?;
        pkt.extend_from_slice(&[0x45, 0]);
        pkt.extend_from_slice(&total.to_be_bytes());
        pkt.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
    } else {
        // IPPROTO_RAW on IPv6 implies IPV6_HDRINCL: the header is sent as is.
        pkt.extend_from_slice(&[0x60, 0, 0, 0]);
        pkt.extend_from_slice(&len.to_be_bytes());
        pkt.extend_from_slice(&[proto, 64]);
    }
    pkt.extend_from_slice(&s);
    pkt.extend_from_slice(&d);
    pkt.extend_from_slice(&l4);
    let sock = socket_with(
        af,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(rustix::net::ipproto::RAW),
    )?;
    if mark != 0 {
        raw::set_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark as i32)?;
    }
    rustix::net::sendto(&sock, &pkt, SendFlags::empty(), &to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071's example words: 0001 f203 f4f5 f6f7 sum to ddf2 (complement 220d).
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0),
            0x220d
        );
    }
}
