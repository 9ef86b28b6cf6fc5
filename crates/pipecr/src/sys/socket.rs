//! Socket calls rustix does not wrap, or not as needed: the peek offset
//! (`SO_PEEK_OFF`), which lets a dump read a socket's queue with `MSG_PEEK` one message
//! after another without consuming anything, and `recvmsg` with the sender address,
//! descriptors and credentials of a unix socket's message ([`recv_message`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF)`—Returns the socket's peek offset; `-1` (the
/// default) means `MSG_PEEK` always reads from the head of the queue.
///
/// # References
///  - [socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html)
#[doc(alias = "SO_PEEK_OFF")]
pub fn peek_offset(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call and
    // `len` holds the size of `value`; the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, offset)`—Sets the socket's peek offset: with
/// `offset >= 0`, each `MSG_PEEK` reads from that offset in the queue and moves it past
/// what it returned; `-1` turns this off.
///
/// Fails with `EOPNOTSUPP` for sockets whose protocol has no peek offset.
///
/// # References
///  - [socket(7)](https://man7.org/linux/man-pages/man7/socket.7.html)
#[doc(alias = "SO_PEEK_OFF")]
pub fn set_peek_offset(fd: BorrowedFd<'_>, offset: i32) -> io::Result<()> {
    let value: libc::c_int = offset;
    // SAFETY: `value` is valid for reads of `size_of::<c_int>()` bytes for the duration
    // of the call; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One message (or stretch of a stream) read by [`recv_message`].
#[derive(Debug, Default)]
pub struct ReceivedMessage {
    /// Its length (the whole message's with `MSG_TRUNC`, even if longer than the buffer).
    pub bytes: usize,
    /// `MSG_CTRUNC`: ancillary data did not fit.
    pub control_truncated: bool,
    /// The sender's address (`sun_path` bytes, a leading NUL for an abstract name);
    /// empty when unnamed or not reported.
    pub source: Vec<u8>,
    /// Descriptors received with it (`SCM_RIGHTS`), now ours.
    pub fds: Vec<OwnedFd>,
    /// `SCM_CREDENTIALS` as the kernel reported them: `(pid, uid, gid)`; pid 0 when the
    /// kernel recorded none.
    pub creds: Option<(i32, u32, u32)>,
}

/// `recvmsg(fd, {buf, control}, flags)` on a unix socket—Receives (or with `MSG_PEEK`
/// peeks) one message with its sender address, descriptors and credentials, parsed by
/// hand: credentials may carry pid 0, which typed wrappers cannot hold.
///
/// # References
///  - [recvmsg(2)](https://man7.org/linux/man-pages/man2/recvmsg.2.html),
///    [unix(7)](https://man7.org/linux/man-pages/man7/unix.7.html)
#[doc(alias = "recvmsg")]
pub fn recv_message(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> io::Result<ReceivedMessage> {
    // Room for SCM_MAX_FD (253) descriptors and one ucred, aligned for cmsghdr.
    let mut control = vec![0u64; 4096 / 8];
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() * 8;
    // SAFETY: every pointer in `msg` points at a buffer of the length given beside it,
    // valid for writes for the duration of the call; MSG_CMSG_CLOEXEC makes received
    // descriptors close-on-exec.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = ReceivedMessage {
        bytes: n as usize,
        control_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        ..ReceivedMessage::default()
    };
    let family = std::mem::size_of::<libc::sa_family_t>();
    let namelen = msg.msg_namelen as usize;
    if namelen > family && namelen <= std::mem::size_of::<libc::sockaddr_un>() {
        let path: Vec<u8> = addr.sun_path[..namelen - family]
            .iter()
            .map(|&c| c as u8)
            .collect();
        out.source = path;
        if out.source.first().is_some_and(|&b| b != 0) {
            while out.source.last() == Some(&0) {
                out.source.pop();
            }
        }
    }
    // SAFETY: `msg` was filled by the kernel; CMSG_FIRSTHDR/CMSG_NXTHDR walk the control
    // buffer within msg_controllen, which the kernel set to what it wrote.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` points at a complete cmsghdr inside `control` (see above).
        let header = unsafe { std::ptr::read_unaligned(cmsg) };
        // SAFETY: CMSG_DATA of a header inside the buffer points inside it too.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        // SAFETY: CMSG_LEN only computes a length.
        let payload = header.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            for i in 0..payload / 4 {
                // SAFETY: the payload holds `payload / 4` ints inside the buffer.
                let raw = unsafe { std::ptr::read_unaligned(data.cast::<i32>().add(i)) };
                // SAFETY: the kernel installed this descriptor in our table for us; it is
                // owned by nothing else.
                out.fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        } else if header.cmsg_level == libc::SOL_SOCKET
            && header.cmsg_type == libc::SCM_CREDENTIALS
            && payload >= std::mem::size_of::<libc::ucred>()
        {
            // SAFETY: the payload holds one ucred inside the buffer.
            let cred = unsafe { std::ptr::read_unaligned(data.cast::<libc::ucred>()) };
            out.creds = Some((cred.pid, cred.uid, cred.gid));
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    Ok(out)
}

/// The unix address for `sun_path` bytes (a leading NUL for an abstract name).
fn unix_address(name: &[u8]) -> io::Result<rustix::net::SocketAddrUnix> {
    use std::os::unix::ffi::OsStrExt;
    match name.first() {
        Some(0) => Ok(rustix::net::SocketAddrUnix::new_abstract_name(&name[1..])?),
        _ => Ok(rustix::net::SocketAddrUnix::new(
            std::ffi::OsStr::from_bytes(name),
        )?),
    }
}

/// `socket(AF_UNIX, socket_type)`, `bind(name)` unless `name` is empty, then
/// `connect(peer)`—A new unix socket connected to the address `peer` (`sun_path` bytes,
/// a leading NUL for an abstract name). Close-on-exec.
///
/// # References
///  - [unix(7)](https://man7.org/linux/man-pages/man7/unix.7.html)
pub fn connect_unix(socket_type: i32, name: &[u8], peer: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::from_raw(socket_type as u32),
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    if !name.is_empty() {
        rustix::net::bind(&fd, &unix_address(name)?)?;
    }
    rustix::net::connect(&fd, &unix_address(peer)?)?;
    Ok(fd)
}
