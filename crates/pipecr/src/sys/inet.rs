//! Socket options and ioctls of inet and netlink sockets that rustix does not wrap: TCP
//! repair mode (`TCP_REPAIR`, `TCP_REPAIR_QUEUE`, `TCP_QUEUE_SEQ`, `TCP_REPAIR_OPTIONS`,
//! `TCP_REPAIR_WINDOW`), `TCP_INFO`, the queue sizes (`SIOCINQ`, `SIOCOUTQ`,
//! `SIOCOUTQNSD`) and plain integer or byte-string options by level and name.
//!
//! The option numbers are the kernel's (`include/uapi/linux/tcp.h`, `asm-generic/socket.h`,
//! `linux/netlink.h`); what they mean is documented where the kinds use them
//! (`files/tcp.rs`, `files/udp.rs`, `files/netlink.rs`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `TCP_REPAIR`: put a socket into (1) or out of (0) repair mode.
pub const TCP_REPAIR: i32 = 19;
/// `TCP_REPAIR_QUEUE`: which queue `TCP_QUEUE_SEQ`, `send` and `recv` act on in repair mode.
pub const TCP_REPAIR_QUEUE: i32 = 20;
/// `TCP_QUEUE_SEQ`: the sequence number of the selected queue.
pub const TCP_QUEUE_SEQ: i32 = 21;
/// `TCP_REPAIR_OPTIONS`: the options negotiated at the handshake.
pub const TCP_REPAIR_OPTIONS: i32 = 22;
/// `TCP_REPAIR_WINDOW`: `struct tcp_repair_window`.
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `TCP_INFO`: `struct tcp_info`.
pub const TCP_INFO: i32 = 11;
/// `TCP_MAXSEG`.
pub const TCP_MAXSEG: i32 = 2;
/// `TCP_DEFER_ACCEPT`.
pub const TCP_DEFER_ACCEPT: i32 = 9;
/// `TCP_TIMESTAMP`: the socket's timestamp clock offset.
pub const TCP_TIMESTAMP: i32 = 24;
/// `TCP_NOTSENT_LOWAT`.
pub const TCP_NOTSENT_LOWAT: i32 = 25;
/// `TCP_RECV_QUEUE`, `TCP_SEND_QUEUE`: values of `TCP_REPAIR_QUEUE`.
pub const TCP_RECV_QUEUE: i32 = 1;
/// See [`TCP_RECV_QUEUE`].
pub const TCP_SEND_QUEUE: i32 = 2;
/// `TCPOPT_MAXSEG`, `TCPOPT_WINDOW`, `TCPOPT_SACK_PERM`, `TCPOPT_TIMESTAMP`: codes of
/// `struct tcp_repair_opt`.
pub const TCPOPT_MAXSEG: u32 = 2;
/// See [`TCPOPT_MAXSEG`].
pub const TCPOPT_WINDOW: u32 = 3;
/// See [`TCPOPT_MAXSEG`].
pub const TCPOPT_SACK_PERM: u32 = 4;
/// See [`TCPOPT_MAXSEG`].
pub const TCPOPT_TIMESTAMP: u32 = 8;
/// `SIOCOUTQNSD`: bytes of the send queue not yet sent.
pub const SIOCOUTQNSD: u64 = 0x894B;
/// `SIOCINQ` (`FIONREAD`): bytes waiting to be read.
pub const SIOCINQ: u64 = libc::FIONREAD;
/// `SIOCOUTQ` (`TIOCOUTQ`): bytes in the send queue (not yet acknowledged).
pub const SIOCOUTQ: u64 = libc::TIOCOUTQ;
/// `UDP_CORK` and `UDP_SEGMENT` (`SOL_UDP`).
pub const UDP_CORK: i32 = 1;
/// See [`UDP_CORK`].
pub const UDP_SEGMENT: i32 = 103;
/// `SOL_UDP`.
pub const SOL_UDP: i32 = 17;
/// `SOL_NETLINK` and its options.
pub const SOL_NETLINK: i32 = 270;
/// `NETLINK_ADD_MEMBERSHIP`.
pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
/// `NETLINK_LIST_MEMBERSHIPS`.
pub const NETLINK_LIST_MEMBERSHIPS: i32 = 9;

/// `getsockopt(fd, level, name, &int)`—Reads an integer socket option.
///
/// # References
///  - [getsockopt(2)](https://man7.org/linux/man-pages/man2/getsockopt.2.html)
#[doc(alias = "getsockopt")]
pub fn get_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call and
    // `len` holds the size of `value`; the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `setsockopt(fd, level, name, &int)`—Sets an integer socket option.
///
/// # References
///  - [setsockopt(2)](https://man7.org/linux/man-pages/man2/setsockopt.2.html)
#[doc(alias = "setsockopt")]
pub fn set_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    set_bytes(fd, level, name, &value.to_ne_bytes())
}

/// `getsockopt(fd, level, name, buf)`—Reads a socket option into `buf`, returns the
/// length the kernel wrote (a structure such as `tcp_info`, a name, a bitmap).
///
/// # References
///  - [getsockopt(2)](https://man7.org/linux/man-pages/man2/getsockopt.2.html)
#[doc(alias = "getsockopt")]
pub fn get_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `buf` is valid for writes of `len` bytes and `len` for a write, for the
    // duration of the call; the kernel writes at most `len` bytes and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((len as usize).min(buf.len()))
}

/// `setsockopt(fd, level, name, bytes)`—Sets a socket option from raw bytes (a
/// structure, an array of structures, a name).
///
/// # References
///  - [setsockopt(2)](https://man7.org/linux/man-pages/man2/setsockopt.2.html)
#[doc(alias = "setsockopt")]
pub fn set_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, bytes: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(bytes.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `bytes` is valid for reads of `len` bytes for the duration of the call; the
    // kernel only reads it.
    let ret = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, bytes.as_ptr().cast(), len) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(fd, request, &int)`—Reads an integer through a socket ioctl ([`SIOCINQ`],
/// [`SIOCOUTQ`], [`SIOCOUTQNSD`]).
///
/// # References
///  - [tcp(7)](https://man7.org/linux/man-pages/man7/tcp.7.html) (section "Ioctls")
#[doc(alias = "ioctl")]
pub fn ioctl_int(fd: BorrowedFd<'_>, request: u64) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    // SAFETY: these requests write one `int` through the pointer, which is valid for
    // writes for the duration of the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &raw mut value) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `getsockname(fd)` or `getpeername(fd)`—The raw `sockaddr` bytes of a socket's own
/// address or its peer's (for families rustix does not parse, such as netlink).
///
/// # References
///  - [getsockname(2)](https://man7.org/linux/man-pages/man2/getsockname.2.html)
#[doc(alias = "getsockname")]
#[doc(alias = "getpeername")]
pub fn raw_name(fd: BorrowedFd<'_>, peer: bool) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `len` bytes and `len` for a write, for the
    // duration of the call; the kernel writes at most `len` bytes and updates `len`.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        }
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// `bind(fd, sockaddr)` or `connect(fd, sockaddr)` with a raw `sockaddr` (a
/// `sockaddr_nl` built by the caller).
///
/// # References
///  - [bind(2)](https://man7.org/linux/man-pages/man2/bind.2.html)
///  - [connect(2)](https://man7.org/linux/man-pages/man2/connect.2.html)
#[doc(alias = "bind")]
#[doc(alias = "connect")]
pub fn raw_bind_or_connect(fd: BorrowedFd<'_>, addr: &[u8], connect: bool) -> io::Result<()> {
    let len = libc::socklen_t::try_from(addr.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `addr` is valid for reads of `len` bytes for the duration of the call; the
    // kernel only reads it (and checks its family and length).
    let ret = unsafe {
        if connect {
            libc::connect(fd.as_raw_fd(), addr.as_ptr().cast(), len)
        } else {
            libc::bind(fd.as_raw_fd(), addr.as_ptr().cast(), len)
        }
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
