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
    dump_with(dir, fds, DumpOptions::default())
}

/// [`dump`] with `options`, as the orchestration does it: the descriptors told first,
/// then each saved, then the open files met in flight.
fn dump_with(
    dir: &Path,
    fds: &[BorrowedFd<'_>],
    options: DumpOptions,
) -> Result<(PathBuf, Vec<proto::OpenFile>), FileError> {
    let path = dir.join("img");
    let mut writer = ImageWriter::create(&path, ImageMeta::default())?;
    let mut sink = DumpSink::new(&mut writer, options);
    sink.set_descriptors(fds.iter().enumerate().map(|(i, fd)| files::TreeDescriptor {
        pid: me(),
        fd: fd.as_raw_fd(),
        ino: inode(*fd),
        file_id: i as u64 + 1,
    }));
    let mut saved = Vec::new();
    for (i, fd) in fds.iter().enumerate() {
        let live = LiveFile::fetch(me(), fd.as_raw_fd())?;
        saved.push(files::dump_file(i as u64 + 1, &live, &mut sink)?);
    }
    loop {
        let batch = sink.take_in_flight();
        if batch.is_empty() {
            break;
        }
        for (id, live) in batch {
            saved.push(files::dump_file(id, &live, &mut sink)?);
        }
    }
    files::finish_dump(&mut saved, &mut sink)?;
    writer.write_records(pipecr_image::FILES, &saved)?;
    writer.commit()?;
    Ok((path, saved))
}

/// Opens every saved open file again, then lets each kind finish (refill queues, send
/// the descriptors in flight), as the restore of a tree does; by id.
fn restore_all(
    records: &[proto::OpenFile],
    ctx: &mut RestoreCtx<'_>,
) -> std::collections::BTreeMap<u64, OwnedFd> {
    let mut out = std::collections::BTreeMap::new();
    for f in records {
        let fd = files::restore_file(f, ctx).unwrap();
        ctx.add_opened(f.id, fd.try_clone().unwrap());
        out.insert(f.id, fd);
    }
    for f in records {
        files::complete_file(f, ctx).unwrap();
    }
    out
}

/// Opens a saved socket again and lets the kind finish what it created (refill queues),
/// as the restore of a tree does once every open file exists.
fn restore_one(file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<OwnedFd, FileError> {
    let fd = files::restore_file(file, ctx)?;
    ctx.add_opened(file.id, fd.try_clone().unwrap());
    files::complete_file(file, ctx)?;
    Ok(fd)
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
        let rb = restore_one(&records[1], &mut ctx).unwrap();
        let ra = restore_one(&records[0], &mut ctx).unwrap();
        (ra, rb)
    } else {
        let ra = restore_one(&records[0], &mut ctx).unwrap();
        let rb = restore_one(&records[1], &mut ctx).unwrap();
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
    let ra = restore_one(&saved[0], &mut ctx).unwrap();
    let rb = restore_one(&saved[1], &mut ctx).unwrap();
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
    let ra = restore_one(&saved[0], &mut ctx).unwrap();
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
    let err = restore_one(&saved[0], &mut ctx).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FileError::Invalid { id: 1, .. }), "{msg}");
    assert!(
        msg.contains(&format!("socket:[{}]", sa.peer_inode)),
        "{msg}"
    );
    assert!(msg.contains("no process of the dumped tree"), "{msg}");
}

/// Receives one message with up to 8 descriptors; returns its bytes and descriptors.
fn recv_with_fds(fd: BorrowedFd<'_>) -> (Vec<u8>, Vec<OwnedFd>) {
    let mut buf = vec![0u8; 4096];
    let msg = pipecr::sys::socket::recv_message(fd, &mut buf, libc::MSG_DONTWAIT).unwrap();
    buf.truncate(msg.bytes);
    (buf, msg.fds)
}

fn send_fds(through: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, sendmsg};
    use std::io::IoSlice;
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::uninit(); 512];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    sendmsg(
        through,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
}

/// Descriptors sitting in a queue (SCM_RIGHTS): a file only the queue holds (an eventfd
/// with a count), the socket itself (queued in its own queue) and /dev/null are saved
/// (the first as an open file of its own), nothing is consumed, and after the restore
/// they arrive with their message, usable.
#[test]
fn descriptors_in_the_queue_are_saved_and_sent_again() {
    let (a, b) = pair(SocketType::STREAM);
    let counter = rustix::event::eventfd(5, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let null = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, 0.into()).unwrap();
    send(&b, b"before", SendFlags::empty()).unwrap();
    send_fds(
        b.as_fd(),
        b"fds",
        &[counter.as_fd(), a.as_fd(), null.as_fd()],
    );
    send(&b, b"after", SendFlags::empty()).unwrap();
    drop(counter);

    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump(dir.path(), &[a.as_fd(), b.as_fd(), null.as_fd()]).unwrap();
    assert_eq!(saved.len(), 4, "a, b, /dev/null and the eventfd in flight");
    let sa = socket_of(&saved[0]);
    assert_eq!(sa.ancillary.len(), 2, "{:?}", sa.ancillary);
    // A peek returns the descriptors with the bytes glued before them: they are saved
    // at the start of that stretch, and the bytes after them start one of their own.
    assert_eq!(
        (sa.ancillary[0].at, sa.ancillary[1].at),
        (0, 9),
        "{:?}",
        sa.ancillary
    );
    assert_eq!(sa.ancillary[0].file_ids, [4, 1, 3]);
    assert!(matches!(
        saved[3].kind,
        Some(open_file::Kind::Eventfd(proto::EventFd { count: 5, .. }))
    ));
    // Nothing consumed: the original still reads the same.
    assert_eq!(peek_offset(a.as_fd()).unwrap(), -1);
    let mut buf = [0u8; 6];
    assert_eq!(recv(&a, &mut buf, RecvFlags::PEEK).unwrap().0, 6);
    drop((a, b));

    let image = Image::open(&image).unwrap();
    let records: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let restored = restore_all(&records, &mut ctx);
    drop(ctx);
    let ra = restored[&1].as_fd();
    let (bytes, fds) = recv_with_fds(ra);
    assert_eq!((bytes.as_slice(), fds.len()), (&b"beforefds"[..], 3));
    let mut count = [0u8; 8];
    assert_eq!(rustix::io::read(&fds[0], &mut count).unwrap(), 8);
    assert_eq!(
        u64::from_ne_bytes(count),
        5,
        "the eventfd in flight kept its count"
    );
    assert_eq!(
        inode(fds[1].as_fd()),
        inode(ra),
        "the socket came back inside its own queue"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/self/fd/{}", fds[2].as_raw_fd())).unwrap(),
        Path::new("/dev/null")
    );
    let (bytes, fds) = recv_with_fds(ra);
    assert_eq!((bytes.as_slice(), fds.len()), (&b"after"[..], 0));
}

fn unique(tag: &str) -> Vec<u8> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "\0pipecr-test-{tag}-{}-{}",
        me(),
        N.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

fn name_of(addr: Option<rustix::net::SocketAddrAny>) -> Vec<u8> {
    let Some(addr) = addr else { return Vec::new() };
    let u = rustix::net::SocketAddrUnix::try_from(addr).unwrap();
    if let Some(a) = u.abstract_name() {
        let mut v = vec![0];
        v.extend_from_slice(a);
        v
    } else {
        u.path_bytes()
            .map(|p| p.iter().copied().take_while(|&b| b != 0).collect())
            .unwrap_or_default()
    }
}

/// A listener bound to a path with a connection waiting to be accepted (its client sent
/// bytes), an accepted connection with bytes each way, and a client bound to an abstract
/// name: saved and restored with names, backlog, the waiting connection and every byte.
#[test]
fn named_stream_sockets_listening_accepted_and_waiting() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&listener, &rustix::net::SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&listener, 7).unwrap();
    let addr = rustix::net::SocketAddrUnix::new(&path).unwrap();
    // An accepted connection whose client has an abstract name.
    let client = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    let cname = unique("client");
    rustix::net::bind(
        &client,
        &rustix::net::SocketAddrUnix::new_abstract_name(&cname[1..]).unwrap(),
    )
    .unwrap();
    rustix::net::connect(&client, &addr).unwrap();
    let server = rustix::net::accept(&listener).unwrap();
    send(&client, b"to server", SendFlags::empty()).unwrap();
    send(&server, b"to client", SendFlags::empty()).unwrap();
    // A connection waiting to be accepted, with what its client sent.
    let waiting = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    rustix::net::connect(&waiting, &addr).unwrap();
    send(&waiting, b"hello before accept", SendFlags::empty()).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let options = DumpOptions {
        leave_running: false,
        ..DumpOptions::default()
    };
    let fds = [
        listener.as_fd(),
        client.as_fd(),
        server.as_fd(),
        waiting.as_fd(),
    ];
    let (image, saved) = dump_with(tmp.path(), &fds, options).unwrap();
    let sl = socket_of(&saved[0]);
    assert_eq!(sl.state, proto::UnixSocketState::Listening as i32);
    assert_eq!(sl.backlog, 7);
    assert_eq!(sl.name, path.as_os_str().as_bytes());
    assert_eq!(sl.waiting.len(), 1);
    assert_eq!(sl.waiting[0].peer_inode, inode(waiting.as_fd()));
    assert_eq!(socket_of(&saved[2]).name, path.as_os_str().as_bytes());
    assert_eq!(socket_of(&saved[1]).name, cname);
    assert!(saved.iter().all(|f| !socket_of(f).external));
    drop((listener, client, server, waiting));

    let image = Image::open(&image).unwrap();
    let records: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let r = restore_all(&records, &mut ctx);
    drop(ctx);
    let (listener, client, server, waiting) = (&r[&1], &r[&2], &r[&3], &r[&4]);
    assert_eq!(
        name_of(Some(rustix::net::getsockname(listener).unwrap())),
        path.as_os_str().as_bytes()
    );
    assert!(sockopt::socket_acceptconn(listener).unwrap());
    assert_eq!(
        name_of(Some(rustix::net::getsockname(server).unwrap())),
        path.as_os_str().as_bytes()
    );
    assert_eq!(
        name_of(rustix::net::getpeername(client).unwrap()),
        path.as_os_str().as_bytes()
    );
    assert_eq!(
        name_of(Some(rustix::net::getsockname(client).unwrap())),
        cname
    );
    assert_eq!(name_of(rustix::net::getpeername(server).unwrap()), cname);
    assert_eq!(concat(&drain(server.as_fd())), b"to server");
    assert_eq!(concat(&drain(client.as_fd())), b"to client");
    assert_connected(client.as_fd(), server.as_fd());
    // accept returns the waiting connection, with what its client had sent.
    let conn = rustix::net::accept(listener).unwrap();
    assert_eq!(concat(&drain(conn.as_fd())), b"hello before accept");
    assert_connected(waiting.as_fd(), conn.as_fd());
    // And the listener takes new connections at its path.
    let again = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let conn2 = rustix::net::accept(listener).unwrap();
    assert_connected(again.as_fd(), conn2.as_fd());
}

/// A datagram socket bound to an abstract name with messages from a named sender and an
/// unnamed one, and options set: each message comes back with its sender's address.
#[test]
fn named_datagram_socket_keeps_senders_and_options() {
    let rname = unique("dgram");
    let sname = unique("sender");
    let recv_sock = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
    let raddr = rustix::net::SocketAddrUnix::new_abstract_name(&rname[1..]).unwrap();
    rustix::net::bind(&recv_sock, &raddr).unwrap();
    let named = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
    rustix::net::bind(
        &named,
        &rustix::net::SocketAddrUnix::new_abstract_name(&sname[1..]).unwrap(),
    )
    .unwrap();
    let unnamed = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
    rustix::net::sendto(&named, b"one", SendFlags::empty(), &raddr).unwrap();
    rustix::net::sendto(&unnamed, b"two!", SendFlags::empty(), &raddr).unwrap();
    rustix::net::sendto(&named, b"three", SendFlags::empty(), &raddr).unwrap();
    sockopt::set_socket_passcred(&recv_sock, true).unwrap();
    sockopt::set_socket_timeout(
        &recv_sock,
        sockopt::Timeout::Recv,
        Some(std::time::Duration::from_millis(1500)),
    )
    .unwrap();
    pipecr::sys::sockopt::set_int_option(recv_sock.as_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, 3)
        .unwrap();
    sockopt::set_socket_recv_buffer_size(&recv_sock, 100_000).unwrap();
    let rcvbuf = sockopt::socket_recv_buffer_size(&recv_sock).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let (image, saved) = dump(tmp.path(), &[recv_sock.as_fd(), named.as_fd()]).unwrap();
    let s = socket_of(&saved[0]);
    assert_eq!(s.message_lengths, [3, 4, 5]);
    assert_eq!(s.sources, [sname.clone(), Vec::new(), sname.clone()]);
    drop((recv_sock, named, unnamed));

    let image = Image::open(&image).unwrap();
    let records: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let r = restore_all(&records, &mut ctx);
    drop(ctx);
    let rs = r[&1].as_fd();
    assert_eq!(name_of(Some(rustix::net::getsockname(rs).unwrap())), rname);
    assert!(sockopt::socket_passcred(rs).unwrap());
    assert_eq!(
        sockopt::socket_timeout(rs, sockopt::Timeout::Recv).unwrap(),
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(
        pipecr::sys::sockopt::int_option(rs, libc::SOL_SOCKET, libc::SO_RCVLOWAT).unwrap(),
        3
    );
    assert_eq!(sockopt::socket_recv_buffer_size(rs).unwrap(), rcvbuf);
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let (n, _, from) = rustix::net::recvfrom(rs, &mut buf, RecvFlags::DONTWAIT).unwrap();
        got.push((buf[..n].to_vec(), name_of(from)));
    }
    assert_eq!(
        got,
        [
            (b"one".to_vec(), sname.clone()),
            (b"two!".to_vec(), Vec::new()),
            (b"three".to_vec(), sname.clone())
        ]
    );
}

#[test]
fn proc_connector_netlink_sockets_are_unsupported() {
    // TCP, UDP and netlink sockets are saved (files/tcp.rs, udp.rs, netlink.rs; tests in
    // crates/pipecr-cli/tests/restore_inet.rs and restore_netlink.rs), but not a
    // connector socket in the process-events group, whose listen state the kernel
    // keeps out of reach.
    let nl = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(rustix::net::netlink::CONNECTOR),
    )
    .unwrap();
    rustix::net::bind(&nl, &rustix::net::netlink::SocketAddrNetlink::new(0, 1)).unwrap();
    // Claimed by the netlink kind, which refuses it at dump.
    let dir = tempfile::tempdir().unwrap();
    let msg = match dump(dir.path(), &[nl.as_fd()]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a proc connector netlink socket was saved"),
    };
    assert!(
        msg.contains("connector netlink socket in the process-events group (CN_IDX_PROC"),
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
    let ra = restore_one(&saved[0], &mut ctx).unwrap();
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

/// Connections waiting in a listener can only be read by accepting them: a dump that lets
/// the tree run on refuses, naming them, and leaves them waiting; so does a dump that
/// would kill the tree when a client is not the tree's.
#[test]
fn waiting_connections_are_refused_when_the_tree_runs_on_or_their_client_is_outside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    std::io::Write::write_all(&mut client, b"queued").unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let fds = [listener.as_fd(), client.as_fd()];
    let err = dump(tmp.path(), &fds).unwrap_err().to_string();
    assert!(
        err.contains("--leave-running") && err.contains("1 connection(s) waiting"),
        "{err}"
    );
    let options = DumpOptions {
        leave_running: false,
        ..DumpOptions::default()
    };
    let tmp2 = tempfile::tempdir().unwrap();
    let err = dump_with(tmp2.path(), &[listener.as_fd()], options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("which no process of the tree holds"), "{err}");
    // Still waiting, with its bytes.
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = [0u8; 6];
    std::io::Read::read_exact(&mut conn, &mut got).unwrap();
    assert_eq!(&got, b"queued");
}
