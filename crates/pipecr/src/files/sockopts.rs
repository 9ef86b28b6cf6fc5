//! What the packet and raw IP socket kinds share ([`super::packet`], [`super::rawip`]):
//! not a kind itself. The options at the `SOL_SOCKET` level of a socket that has no
//! options message of its own ([`proto::SocketOptions`]), the classic BPF filter a
//! socket may carry ([`proto::SocketFilter`]), keeping a socket empty while it is being
//! set up ([`hold_packets`], [`release_packets`]), and whether the restorer holds the
//! capabilities such sockets need.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use pipecr_image::proto;
use rustix::net::sockopt;

use crate::sys::inet as raw;
use crate::sys::packet as pk;

fn micros(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_micros().try_into().unwrap_or(u64::MAX))
}

/// Reads the `SOL_SOCKET` options of [`proto::SocketOptions`].
pub fn read_options(fd: BorrowedFd<'_>) -> io::Result<proto::SocketOptions> {
    Ok(proto::SocketOptions {
        rcvbuf: sockopt::socket_recv_buffer_size(fd)? as u32,
        sndbuf: sockopt::socket_send_buffer_size(fd)? as u32,
        priority: raw::get_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY)?,
        mark: raw::get_int(fd, libc::SOL_SOCKET, libc::SO_MARK)? as u32,
        rcvlowat: raw::get_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT)?,
        rcvtimeo_us: micros(sockopt::socket_timeout(fd, sockopt::Timeout::Recv)?),
        sndtimeo_us: micros(sockopt::socket_timeout(fd, sockopt::Timeout::Send)?),
    })
}

/// The buffer sizes a new socket gets (`net.core.rmem_default`, `wmem_default`, as
/// getsockopt reports them), read from a new UDP socket (which keeps them, and needs no
/// privilege): a saved size that differs is set again.
pub fn default_buffers() -> io::Result<(u32, u32)> {
    let probe = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((
        sockopt::socket_recv_buffer_size(&probe)? as u32,
        sockopt::socket_send_buffer_size(&probe)? as u32,
    ))
}

/// Whether setting `o` again needs `CAP_NET_ADMIN`: buffer sizes other than a new
/// socket's (`SO_*BUFFORCE`) or a mark (`SO_MARK`).
pub fn needs_net_admin(o: &proto::SocketOptions) -> io::Result<bool> {
    let (rcv, snd) = default_buffers()?;
    Ok(o.mark != 0 || (o.rcvbuf != rcv && o.rcvbuf > 0) || (o.sndbuf != snd && o.sndbuf > 0))
}

/// Sets the options saved in `o` that differ from a new socket's.
pub fn apply_options(
    fd: BorrowedFd<'_>,
    o: &proto::SocketOptions,
) -> Result<(), (&'static str, io::Error)> {
    let e = |what: &'static str| move |err: rustix::io::Errno| (what, io::Error::from(err));
    let r = |what: &'static str| move |err: io::Error| (what, err);
    let now_rcv = sockopt::socket_recv_buffer_size(fd).map_err(e("SO_RCVBUF"))?;
    let now_snd = sockopt::socket_send_buffer_size(fd).map_err(e("SO_SNDBUF"))?;
    if o.rcvbuf as usize != now_rcv && o.rcvbuf > 0 {
        sockopt::set_socket_recv_buffer_size_force(fd, o.rcvbuf as usize / 2)
            .map_err(e("SO_RCVBUFFORCE"))?;
    }
    if o.sndbuf as usize != now_snd && o.sndbuf > 0 {
        sockopt::set_socket_send_buffer_size_force(fd, o.sndbuf as usize / 2)
            .map_err(e("SO_SNDBUFFORCE"))?;
    }
    if o.priority != 0 {
        raw::set_int(fd, libc::SOL_SOCKET, libc::SO_PRIORITY, o.priority)
            .map_err(r("SO_PRIORITY"))?;
    }
    if o.mark != 0 {
        raw::set_int(fd, libc::SOL_SOCKET, libc::SO_MARK, o.mark as i32).map_err(r("SO_MARK"))?;
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
    Ok(())
}

/// The classic BPF filter attached to the socket, `None` when it has none. An eBPF
/// program (`SO_ATTACH_BPF`) cannot be read back: the error says so (`EACCES`).
pub fn read_filter(fd: BorrowedFd<'_>) -> io::Result<Option<proto::SocketFilter>> {
    // The length is counted in instructions, not bytes (sk_get_filter): given room for
    // BPF_MAXINSNS (4096) instructions as a count of bytes, the kernel copies the
    // whole program and answers how many instructions it has.
    let mut buf = vec![0u8; 4096 * 8];
    let count = raw::get_bytes(fd, libc::SOL_SOCKET, pk::SO_GET_FILTER, &mut buf)?;
    if count == 0 {
        return Ok(None);
    }
    buf.truncate(count * 8);
    let instructions = buf
        .chunks_exact(8)
        .map(|c| proto::BpfInstruction {
            code: u32::from(u16::from_ne_bytes([c[0], c[1]])),
            jt: u32::from(c[2]),
            jf: u32::from(c[3]),
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let locked = raw::get_int(fd, libc::SOL_SOCKET, pk::SO_LOCK_FILTER)? != 0;
    Ok(Some(proto::SocketFilter {
        instructions,
        locked,
    }))
}

/// Attaches the saved filter `f` again (and locks it when it was locked).
pub fn apply_filter(
    fd: BorrowedFd<'_>,
    f: &proto::SocketFilter,
) -> Result<(), (&'static str, io::Error)> {
    let bad = || {
        (
            "SO_ATTACH_FILTER",
            io::Error::new(io::ErrorKind::InvalidData, "a BPF instruction out of range"),
        )
    };
    let insns = f
        .instructions
        .iter()
        .map(|i| {
            Ok((
                u16::try_from(i.code).map_err(|_| bad())?,
                u8::try_from(i.jt).map_err(|_| bad())?,
                u8::try_from(i.jf).map_err(|_| bad())?,
                i.k,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    pk::attach_filter(fd, &insns).map_err(|e| ("SO_ATTACH_FILTER", e))?;
    if f.locked {
        raw::set_int(fd, libc::SOL_SOCKET, pk::SO_LOCK_FILTER, 1)
            .map_err(|e| ("SO_LOCK_FILTER", e))?;
    }
    Ok(())
}

/// The index of the interface called `name` in the caller's network namespace.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let probe = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    Ok(rustix::net::netdevice::name_to_index(&probe, name)?)
}

/// The capabilities among `wanted` (names and sets) the calling thread does not have
/// in its effective set, by name.
pub fn missing_capabilities(
    wanted: &[(&'static str, rustix::thread::CapabilitySet)],
) -> io::Result<Vec<&'static str>> {
    let caps = rustix::thread::capabilities(None)?;
    Ok(wanted
        .iter()
        .filter(|(_, set)| !caps.effective.contains(*set))
        .map(|(name, _)| *name)
        .collect())
}

/// `SO_DETACH_FILTER`.
const SO_DETACH_FILTER: i32 = 27;

/// Attaches a filter that drops every packet: a raw or packet socket being set up takes
/// no packet it would not have taken once set up (all of them for a raw socket of its
/// protocol, those of every interface before it is bound, more than its share before it
/// joins a fanout group). [`release_packets`] ends it.
pub fn hold_packets(fd: BorrowedFd<'_>) -> Result<(), (&'static str, io::Error)> {
    // BPF_RET | BPF_K, 0: keep no byte of any packet.
    pk::attach_filter(fd, &[(0x06, 0, 0, 0)]).map_err(|e| ("SO_ATTACH_FILTER (drop all)", e))
}

/// Empties the socket of what came before [`hold_packets`] took effect, then puts its
/// saved filter in place (or none): from here on it takes packets as it did.
pub fn release_packets(
    fd: BorrowedFd<'_>,
    filter: Option<&proto::SocketFilter>,
) -> Result<(), (&'static str, io::Error)> {
    let mut scratch = vec![0u8; 65536];
    while rustix::net::recv(fd, &mut scratch[..], rustix::net::RecvFlags::DONTWAIT).is_ok() {}
    match filter {
        Some(f) => apply_filter(fd, f),
        None => raw::set_int(fd, libc::SOL_SOCKET, SO_DETACH_FILTER, 0)
            .map_err(|e| ("SO_DETACH_FILTER", e)),
    }
}
