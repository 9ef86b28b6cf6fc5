//! Unix socketpairs saved and opened again through the `FileKind` table, in this process:
//! both ends of a pair with bytes queued each way are fetched with `pidfd_getfd`, dumped
//! into a real image (nothing may be consumed, the peek offset must be put back), read
//! back and restored; the new pair must hold the same bytes with the same message
//! boundaries, be connected end to end, and keep the status flags.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use pipecr::files::{self, DumpOptions, DumpSink, FileError, LiveFile, RestoreCtx};
use pipecr::sys::socket::{peek_offset, set_peek_offset};
use pipecr_image::proto::{self, open_file};
use pipecr_image::{Image, ImageMeta, ImageWriter};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType, recv, send, socketpair,
    sockopt,
};

fn me() -> i32 {
    std::process::id() as i32
}

fn pair(ty: SocketType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None).unwrap()
}

fn inode(fd: BorrowedFd<'_>) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_ino
}

/// Bytes that differ from one position and one message to the next.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Dumps our descriptors `fds` (open file ids 1, 2, ...) into a new image under `dir`.
fn dump(dir: &Path, fds: &[BorrowedFd<'_>]) -> Result<(PathBuf, Vec<proto::OpenFile>), FileError> {
    let path = dir.join("img");
    let mut writer = ImageWriter::create(&path, ImageMeta::default())?;
    let mut sink = DumpSink::new(&mut writer, DumpOptions::default());
    let mut saved = Vec::new();
    for (i, fd) in fds.iter().enumerate() {
        let live = LiveFile::fetch(me(), fd.as_raw_fd())?;
        saved.push(files::dump_file(i as u64 + 1, &live, &mut sink)?);
    }
    files::finish_dump(&mut saved, &mut sink)?;
    writer.write_records(pipecr_image::FILES, &saved)?;
    writer.commit()?;
    Ok((path, saved))
}

fn socket_of(f: &proto::OpenFile) -> &proto::UnixSocket {
    match &f.kind {
        Some(open_file::Kind::UnixSocket(s)) => s,
        other => panic!("not a unix socket: {other:?}"),
    }
}

/// Everything queued in `fd` (made non-blocking for this), one entry per `recv`.
fn drain(fd: BorrowedFd<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((n, _)) => {
                // Stream sockets: 0 is end of file; datagram sockets: an empty message
                // (these tests only shut stream sockets down).
                if n == 0 && sockopt::socket_type(fd).unwrap() == SocketType::STREAM {
                    out.push(Vec::new());
                    break;
                }
                out.push(buf[..n].to_vec());
            }
            Err(Errno::AGAIN) => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    out
}

fn concat(v: &[Vec<u8>]) -> Vec<u8> {
    v.concat()
}

fn nonblocking(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(OFlags::NONBLOCK)
}

/// Checks that `a` and `b` are connected to each other, both ways.
fn assert_connected(a: BorrowedFd<'_>, b: BorrowedFd<'_>) {
    for (from, to) in [(a, b), (b, a)] {
        assert_eq!(send(from, b"ping", SendFlags::DONTWAIT).unwrap(), 4);
        let mut buf = [0u8; 16];
        let (n, _) = recv(to, &mut buf[..], RecvFlags::DONTWAIT).unwrap();
        assert_eq!(&buf[..n], b"ping");
    }
}

/// Sends `messages` from `from`, one `send` each.
fn send_all(from: BorrowedFd<'_>, messages: &[Vec<u8>]) {
    for m in messages {
        assert_eq!(send(from, m, SendFlags::DONTWAIT).unwrap(), m.len());
    }
}

/// One pair of type `ty` with `to_a` queued in end a and `to_b` in end b, dumped (in
/// the given order) and restored (a first, or b first).
fn roundtrip(ty: SocketType, to_a: Vec<Vec<u8>>, to_b: Vec<Vec<u8>>, restore_b_first: bool) {
    let stream = ty == SocketType::STREAM;
    let (a, b) = pair(ty);
    // Room for the largest message.
    sockopt::set_socket_send_buffer_size(&a, 1 << 20).unwrap();
    sockopt::set_socket_send_buffer_size(&b, 1 << 20).unwrap();
    send_all(b.as_fd(), &to_a);
    send_all(a.as_fd(), &to_b);
    rustix::fs::fcntl_setfl(&a, OFlags::NONBLOCK).unwrap();
    // b's owner uses a peek offset of its own: the dump must leave it as it was.
    set_peek_offset(b.as_fd(), 3).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump(dir.path(), &[a.as_fd(), b.as_fd()]).unwrap();

    // The records.
    let (sa, sb) = (socket_of(&saved[0]), socket_of(&saved[1]));
    assert_eq!(sa.inode, inode(a.as_fd()));
    assert_eq!(sb.inode, inode(b.as_fd()));
    assert_eq!(sa.peer_inode, sb.inode);
    assert_eq!(sb.peer_inode, sa.inode);
    assert!(!sa.external && !sb.external);
    assert!(!sa.shut_read && !sa.shut_write);
    let lengths = |v: &[Vec<u8>]| -> Vec<u32> {
        if stream {
            Vec::new()
        } else {
            v.iter().map(|m| m.len() as u32).collect()
        }
    };
    assert_eq!(sa.message_lengths, lengths(&to_a));
    assert_eq!(sb.message_lengths, lengths(&to_b));

    // The originals: peek offsets as they were, nothing consumed.
    assert_eq!(peek_offset(a.as_fd()).unwrap(), -1);
    assert_eq!(peek_offset(b.as_fd()).unwrap(), 3);
    set_peek_offset(b.as_fd(), -1).unwrap();
    let (got_a, got_b) = (drain(a.as_fd()), drain(b.as_fd()));
    if stream {
        assert_eq!(concat(&got_a), concat(&to_a));
        assert_eq!(concat(&got_b), concat(&to_b));
    } else {
        assert_eq!(got_a, to_a);
        assert_eq!(got_b, to_b);
    }

    // The restored pair.
    let image = Image::open(&image).unwrap();
    let records: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let (ra, rb) = if restore_b_first {
        let rb = files::restore_file(&records[1], &mut ctx).unwrap();
        let ra = files::restore_file(&records[0], &mut ctx).unwrap();
        (ra, rb)
    } else {
        let ra = files::restore_file(&records[0], &mut ctx).unwrap();
        let rb = files::restore_file(&records[1], &mut ctx).unwrap();
        (ra, rb)
    };
    assert!(ctx.state::<files::unix::PendingPeers>().is_empty());
    assert_eq!(sockopt::socket_type(&ra).unwrap(), ty);
    assert!(nonblocking(ra.as_fd()), "O_NONBLOCK of end a was kept");
    assert!(!nonblocking(rb.as_fd()));
    assert_eq!(peek_offset(ra.as_fd()).unwrap(), -1);
    let (got_a, got_b) = (drain(ra.as_fd()), drain(rb.as_fd()));
    if stream {
        assert_eq!(concat(&got_a), concat(&to_a));
        assert_eq!(concat(&got_b), concat(&to_b));
    } else {
        assert_eq!(got_a, to_a, "messages of end a, boundaries included");
        assert_eq!(got_b, to_b, "messages of end b, boundaries included");
    }
    assert_connected(ra.as_fd(), rb.as_fd());
}

/// Messages of many sizes, one empty, one larger than the dump's first peek buffer.
fn messages(seed: u8) -> Vec<Vec<u8>> {
    [5, 0, 1, 300_000, 1000, 64, 0, 7]
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, seed.wrapping_add(i as u8)))
        .collect()
}

#[test]
fn stream_pair_roundtrip() {
    let to_a = vec![pattern(3000, 1), pattern(2000, 2), pattern(1, 3)];
    let to_b = vec![pattern(7000, 4)];
    roundtrip(SocketType::STREAM, to_a, to_b, false);
}

#[test]
fn stream_pair_larger_than_the_default_buffer() {
    // More than a new socket's send buffer: restore must raise it to refill.
    roundtrip(
        SocketType::STREAM,
        vec![pattern(600_000, 9)],
        Vec::new(),
        true,
    );
}

#[test]
fn dgram_pair_roundtrip() {
    roundtrip(SocketType::DGRAM, messages(10), messages(50), false);
}

#[test]
fn dgram_pair_roundtrip_peer_first() {
    roundtrip(SocketType::DGRAM, messages(20), vec![pattern(9, 1)], true);
}

#[test]
fn seqpacket_pair_roundtrip() {
    roundtrip(SocketType::SEQPACKET, messages(30), messages(70), false);
}

#[test]
fn empty_pairs_roundtrip() {
    for ty in [SocketType::STREAM, SocketType::DGRAM, SocketType::SEQPACKET] {
        roundtrip(ty, Vec::new(), Vec::new(), false);
    }
}

#[test]
fn shutdown_is_kept() {
    let (a, b) = pair(SocketType::STREAM);
    send_all(a.as_fd(), &[b"last words".to_vec()]);
    rustix::net::shutdown(&a, Shutdown::Write).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump(dir.path(), &[a.as_fd(), b.as_fd()]).unwrap();
    let (sa, sb) = (socket_of(&saved[0]), socket_of(&saved[1]));
    assert!(sa.shut_write && !sa.shut_read);
    assert!(sb.shut_read && !sb.shut_write);

    let image = Image::open(&image).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let ra = files::restore_file(&saved[0], &mut ctx).unwrap();
    let rb = files::restore_file(&saved[1], &mut ctx).unwrap();
    // b reads the bytes, then end of file.
    assert_eq!(drain(rb.as_fd()), vec![b"last words".to_vec(), Vec::new()]);
    assert_eq!(
        send(&ra, b"x", SendFlags::DONTWAIT | SendFlags::NOSIGNAL),
        Err(Errno::PIPE)
    );
    // The other way still works.
    assert_eq!(send(&rb, b"y", SendFlags::DONTWAIT).unwrap(), 1);
    assert_eq!(drain(ra.as_fd()), vec![b"y".to_vec()]);
}

#[test]
fn closed_peer_restores_as_closed() {
    let (a, b) = pair(SocketType::STREAM);
    send_all(b.as_fd(), &[b"bye".to_vec()]);
    drop(b);
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump(dir.path(), &[a.as_fd()]).unwrap();
    let sa = socket_of(&saved[0]);
    assert_eq!(sa.peer_inode, 0, "a closed peer has no inode");
    assert!(!sa.external);
    assert!(sa.shut_read && sa.shut_write);
    assert_eq!(drain(a.as_fd()), vec![b"bye".to_vec(), Vec::new()]);

    let image = Image::open(&image).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let ra = files::restore_file(&saved[0], &mut ctx).unwrap();
    assert!(ctx.state::<files::unix::PendingPeers>().is_empty());
    assert_eq!(drain(ra.as_fd()), vec![b"bye".to_vec(), Vec::new()]);
}

#[test]
fn peer_outside_the_tree_is_external_and_not_restored() {
    let (a, b) = pair(SocketType::DGRAM);
    send_all(b.as_fd(), &[b"hi".to_vec()]);
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump(dir.path(), &[a.as_fd()]).unwrap();
    let sa = socket_of(&saved[0]);
    assert!(sa.external);
    assert_eq!(sa.peer_inode, inode(b.as_fd()));

    let image = Image::open(&image).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let err = files::restore_file(&saved[0], &mut ctx).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FileError::Invalid { id: 1, .. }), "{msg}");
    assert!(
        msg.contains(&format!("socket:[{}]", sa.peer_inode)),
        "{msg}"
    );
    assert!(msg.contains("no process of the dumped tree"), "{msg}");
}

#[test]
fn descriptors_in_the_queue_are_refused_and_kept() {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, sendmsg};
    use std::io::IoSlice;
    use std::mem::MaybeUninit;

    let (a, b) = pair(SocketType::STREAM);
    let passed = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, 0.into()).unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [passed.as_fd()];
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    sendmsg(&b, &[IoSlice::new(b"fd")], &mut control, SendFlags::empty()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let err = dump(dir.path(), &[a.as_fd()]).unwrap_err();
    assert!(matches!(err, FileError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("SCM_RIGHTS"), "{err}");
    assert_eq!(peek_offset(a.as_fd()).unwrap(), -1);
    assert_eq!(drain(a.as_fd()), vec![b"fd".to_vec()]);
}

/// The message that stops a dump of our descriptor `fd`.
fn unsupported(fd: BorrowedFd<'_>) -> String {
    let live = LiveFile::fetch(me(), fd.as_raw_fd()).unwrap();
    match files::kind_of(&live) {
        Err(e @ FileError::Unsupported { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(k) => panic!("claimed by {}", k.name()),
    }
}

#[test]
fn named_unix_sockets_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let msg = unsupported(listener.as_fd());
    assert!(
        msg.contains(&format!(
            "unix stream socket listening on {}",
            path.display()
        )),
        "{msg}"
    );

    let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let (server, _) = listener.accept().unwrap();
    let msg = unsupported(client.as_fd());
    assert!(
        msg.contains(&format!(
            "unix stream socket connected to {}",
            path.display()
        )),
        "{msg}"
    );
    let msg = unsupported(server.as_fd());
    assert!(
        msg.contains(&format!("unix stream socket bound to {}", path.display())),
        "{msg}"
    );

    let unbound = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
    let msg = unsupported(unbound.as_fd());
    assert!(msg.contains("unconnected unix datagram socket"), "{msg}");
}

// TCP, UDP, route and uevent netlink sockets are saved (files/tcp.rs, udp.rs,
// netlink.rs; tests in crates/pipecr-cli/tests/restore_inet.rs); other netlink
// protocols are not.
#[test]
fn sock_diag_netlink_sockets_are_unsupported() {
    let nl = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(rustix::net::netlink::SOCK_DIAG),
    )
    .unwrap();
    // Claimed by the netlink kind, which refuses it at dump.
    let dir = tempfile::tempdir().unwrap();
    let msg = match dump(dir.path(), &[nl.as_fd()]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a sock_diag netlink socket was saved"),
    };
    assert!(
        msg.contains("netlink socket of protocol 4 (sock_diag"),
        "{msg}"
    );
}

#[test]
fn pending_error_of_a_reset_stream_is_not_consumed() {
    // b closes with unread bytes: a is left with ECONNRESET pending after its own queue.
    let (a, b) = pair(SocketType::STREAM);
    send_all(b.as_fd(), &[b"bye".to_vec()]);
    send_all(a.as_fd(), &[b"unread".to_vec()]);
    drop(b);
    let dir = tempfile::tempdir().unwrap();
    dump(dir.path(), &[a.as_fd()]).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = recv(&a, &mut buf[..], RecvFlags::DONTWAIT).unwrap();
    assert_eq!(&buf[..n], b"bye");
    assert_eq!(
        recv(&a, &mut buf[..], RecvFlags::DONTWAIT).map(|(n, _)| n),
        Err(Errno::CONNRESET)
    );
}

#[test]
fn seqpacket_end_whose_peer_was_closed_keeps_its_messages_then_end_of_file() {
    let (a, b) = pair(SocketType::SEQPACKET);
    send_all(b.as_fd(), &[b"one".to_vec(), b"two!".to_vec()]);
    drop(b);
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump(dir.path(), &[a.as_fd()]).unwrap();
    let sa = socket_of(&saved[0]);
    assert_eq!(sa.peer_inode, 0, "a closed peer has no inode");
    assert!(!sa.external);

    let image = Image::open(&image).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let ra = files::restore_file(&saved[0], &mut ctx).unwrap();
    drop(ctx);
    let mut buf = [0u8; 16];
    for want in [&b"one"[..], b"two!", b""] {
        let (n, _) = recv(&ra, &mut buf[..], RecvFlags::DONTWAIT).unwrap();
        assert_eq!(&buf[..n], want);
    }
    assert_eq!(
        send(&ra, b"x", SendFlags::DONTWAIT | SendFlags::NOSIGNAL),
        Err(Errno::PIPE)
    );
}
