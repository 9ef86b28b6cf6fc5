//! Unix sockets of every shape through `pipecr dump` and `pipecr restore`
//! (tests/progs/unixsocks.c, one mode per family of shapes): a parent and a child set
//! them up, the tree is dumped (and killed) and restored, and the program checks from
//! inside what it holds: names (getsockname/getpeername), the bytes and message
//! boundaries queued, datagram senders, connections waiting in a listener's backlog
//! with what their clients sent (returned by accept), shutdowns, descriptors in flight
//! (received and usable), credentials, options (getsockopt), the owner and signal of
//! O_ASYNC (a signal really delivered). Each mode runs once without a dump first, so a
//! check that fails there is the program's, not pipecr's.
//!
//! A socket connected to a listener outside the tree is refused at restore unless
//! `--external-unix` names its peer's address; then it connects again and the
//! conversation goes on. A socket whose peer is outside the tree (connected by it, or
//! accepted by a listener of the tree) takes a descriptor given with `--inherit-fd`.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::KillOnDrop;

/// Starts `unixsocks OUT CTL ACK MODE DIR [PEER]` with only its stdio, and waits for its
/// "ready" acknowledgement.
fn start(exe: &Path, root: &Path, mode: &str, extra: &[&str]) -> (Child, File, File) {
    for fifo in ["ctl", "ack"] {
        let _ = std::fs::remove_file(root.join(fifo));
        common::mkfifo(&root.join(fifo));
    }
    let _ = std::fs::remove_file(root.join("out"));
    let ctl = common::open_ctl(&root.join("ctl"));
    let prog = common::only_stdio(
        Command::new(exe)
            .args([root.join("out"), root.join("ctl"), root.join("ack")])
            .arg(mode)
            .arg(root)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .unwrap();
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let mut b = [0u8; 1];
    assert!(
        common::readable_within(&ack, common::DEADLINE),
        "{mode}: not ready: {}",
        std::fs::read_to_string(root.join("out")).unwrap_or_default()
    );
    ack.read_exact(&mut b).unwrap_or_else(|e| {
        panic!(
            "{mode}: setup failed ({e}): {}",
            std::fs::read_to_string(root.join("out")).unwrap_or_default()
        )
    });
    std::mem::forget(guard);
    (prog, ctl, ack)
}

/// Asks the program to verify; returns its report (everything after "ready").
fn verify(root: &Path, ctl: &mut File, ack: &mut File) -> String {
    ctl.write_all(b"v").unwrap();
    let mut b = [0u8; 1];
    assert!(
        common::readable_within(ack, common::DEADLINE),
        "no verdict: {}",
        std::fs::read_to_string(root.join("out")).unwrap_or_default()
    );
    let _ = ack.read_exact(&mut b);
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    out.split_once("ready\n")
        .map_or(out.clone(), |(_, r)| r.to_owned())
}

/// Runs MODE once plainly, then set up again, dumped, killed, restored and verified.
fn roundtrip(mode: &str) -> (tempfile::TempDir, pipecr_image::Image) {
    if !common::capable() {
        return_skip();
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = common::build("unixsocks", dir.path()) else {
        panic!("no C compiler");
    };
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let (mut prog, mut ctl, mut ack) = start(&exe, &plain, mode, &[]);
    let report = verify(&plain, &mut ctl, &mut ack);
    assert_eq!(report, "done ok\n", "{mode} without a dump");
    assert_eq!(common::wait_child(&mut prog, "the program").code(), Some(0));

    let root = dir.path().join("dumped");
    std::fs::create_dir(&root).unwrap();
    let (mut prog, mut ctl, mut ack) = start(&exe, &root, mode, &[]);
    let pid = prog.id() as i32;
    let children = common::children(pid);
    let mut guard = KillOnDrop(vec![pid]);
    guard.0.extend(&children);
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped tree to be gone", || {
        children.iter().all(|&c| common::state(c).is_none())
    });
    let restore = common::restore(&img, pid);
    let report = verify(&root, &mut ctl, &mut ack);
    assert_eq!(report, "done ok\n", "{mode} after the restore");
    common::finish_restore(restore, 0);
    let image = pipecr_image::Image::open(&img).unwrap();
    (dir, image)
}

fn return_skip() -> ! {
    panic!("these tests need root (CAP_CHECKPOINT_RESTORE, CAP_SYS_PTRACE)");
}

fn unix_records(image: &pipecr_image::Image) -> Vec<pipecr_image::proto::UnixSocket> {
    use pipecr_image::proto::{self, open_file};
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    files
        .into_iter()
        .filter_map(|f| match f.kind {
            Some(open_file::Kind::UnixSocket(s)) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn stream_sockets_listening_accepted_waiting_half_closed_and_idle() {
    let (dir, image) = roundtrip("stream");
    let socks = unix_records(&image);
    let listener = socks
        .iter()
        .find(|s| s.name.ends_with(b"/l.sock") && !s.waiting.is_empty())
        .expect("the listener");
    assert_eq!(listener.backlog, 7);
    assert_eq!(listener.waiting.len(), 2, "two connections waited");
    let gone = socks
        .iter()
        .find(|s| s.name.ends_with(b"/gone.sock") && s.backlog == 3)
        .expect("the listener on a removed path");
    assert!(gone.name_unlinked);
    // What `pipecr show` says of them.
    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(dir.path().join("dumped/img"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("l.sock listening (backlog 7), 2 connection(s) waiting"),
        "{text}"
    );
    assert!(
        text.contains("gone.sock (removed) listening (backlog 3)"),
        "{text}"
    );
}

#[test]
fn datagram_senders_and_seqpacket_boundaries() {
    let (_dir, image) = roundtrip("dgram");
    let socks = unix_records(&image);
    let d = socks
        .iter()
        .find(|s| s.message_lengths.len() == 4)
        .expect("the datagram socket with four messages");
    assert_eq!(d.message_lengths, [3, 4, 5, 0]);
}

#[test]
fn descriptors_in_flight_and_credentials() {
    let (_dir, image) = roundtrip("rights");
    let socks = unix_records(&image);
    let with_fds = socks
        .iter()
        .find(|s| s.ancillary.iter().any(|a| a.file_ids.len() == 3))
        .expect("the queue with three descriptors in flight");
    // The socket itself is one of them.
    let own: Vec<pipecr_image::proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let own_id = own
        .iter()
        .find(|f| {
            matches!(&f.kind, Some(pipecr_image::proto::open_file::Kind::UnixSocket(s)) if s.inode == with_fds.inode)
        })
        .unwrap()
        .id;
    assert!(with_fds.ancillary[0].file_ids.contains(&own_id));
    assert!(socks.iter().any(|s| s.ancillary.iter().any(|a| a.pid != 0)));
}

#[test]
fn socket_options_and_the_owner_of_o_async() {
    let (_dir, image) = roundtrip("options");
    let files: Vec<pipecr_image::proto::OpenFile> =
        image.read_records(pipecr_image::FILES).unwrap();
    let owned: Vec<_> = files.iter().filter(|f| f.owner.is_some()).collect();
    assert_eq!(owned.len(), 2, "the socket and the pipe have an owner");
    assert!(owned.iter().any(|f| f.signal == libc::SIGRTMIN() + 1));
}

/// A socket whose peer is a listener outside the tree: refused without a word on it,
/// connected again with `--external-unix`, and the conversation goes on.
#[test]
fn a_peer_outside_the_tree_is_refused_or_connected_again() {
    if !common::capable() {
        return_skip();
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("unixsocks", root).expect("no C compiler");
    let peer = root.join("peer.sock");
    let listener = UnixListener::bind(&peer).unwrap();
    let (mut prog, mut ctl, mut ack) = start(&exe, root, "external", &[peer.to_str().unwrap()]);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let (mut first, _) = listener.accept().unwrap();
    let mut b = [0u8; 6];
    first.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"before");
    let img = root.join("img");
    let out = common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    // The old connection ends with the dumped tree.
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let _ = out;

    let refused = common::restore_command(&img).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("pid {pid} fd "))
            && err.contains(&format!("{} is outside the tree", peer.display())),
        "{err}"
    );
    assert!(common::state(pid).is_none(), "nothing is left running");

    let restore = common::restore_started(
        common::restore_command(&img).args(["--external-unix", peer.to_str().unwrap()]),
        pid,
    );
    let (mut second, _) = listener.accept().unwrap();
    ctl.write_all(b"v").unwrap();
    let mut b = [0u8; 5];
    second.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after");
    second.write_all(b"ok").unwrap();
    assert!(common::readable_within(&ack, common::DEADLINE));
    let _ = ack.read_exact(&mut [0u8; 1]);
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    assert!(out.ends_with("done ok\n"), "{out}");
    common::finish_restore(restore, 0);
}

/// Python's own `socketserver.UnixStreamServer` (an upper-casing line server) and a
/// client in the middle of a conversation, in one tree: dumped (killed) while the client
/// waits between two requests, restored; the conversation goes on on the same
/// connection, and the restored server accepts a new client at its path.
#[test]
fn python_unix_stream_server_with_a_client_mid_conversation() {
    const SCRIPT: &str = r#"
import os, sys, socket, socketserver
path, go, ready, out = sys.argv[1:5]
class Upper(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())
            self.wfile.flush()
server = socketserver.UnixStreamServer(path, Upper)
if os.fork() == 0:
    server.socket.close()
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rwb")
    f.write(b"hello\n"); f.flush()
    first = f.readline()
    f.write(b"world\n"); f.flush()
    r = os.open(ready, os.O_WRONLY)
    os.write(r, b"1")
    with open(go, "rb") as g:
        g.read(1)
    second = f.readline()
    f.write(b"third\n"); f.flush()
    third = f.readline()
    with open(out, "a") as o:
        o.write(f"client {first!r} {second!r} {third!r} peer {s.getpeername()}\n")
    os.write(r, b"2")
    os._exit(0)
server.serve_forever()
"#;
    if !common::capable() {
        return_skip();
    }
    assert!(
        common::have("python3"),
        "python3 is needed (.ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let path = root.join("upper.sock");
    for fifo in ["go", "ready"] {
        common::mkfifo(&root.join(fifo));
    }
    let mut go = common::open_ctl(&root.join("go"));
    let mut ready = common::open_ctl(&root.join("ready"));
    let out = root.join("out");
    let mut prog = common::only_stdio(
        Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&path)
            .arg(root.join("go"))
            .arg(root.join("ready"))
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .unwrap();
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    assert!(
        common::readable_within(&ready, common::DEADLINE),
        "the client did not start"
    );
    ready.read_exact(&mut b).unwrap();
    let children = common::children(pid);
    assert_eq!(children.len(), 1);
    guard.0.extend(&children);

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped tree to be gone", || {
        children.iter().all(|&c| common::state(c).is_none())
    });
    let restore = common::restore(&img, pid);
    go.write_all(b"g").unwrap();
    assert!(
        common::readable_within(&ready, common::DEADLINE),
        "the client did not finish"
    );
    ready.read_exact(&mut b).unwrap();
    let report = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        report,
        format!(
            "client b'HELLO\\n' b'WORLD\\n' b'THIRD\\n' peer {}\n",
            path.display()
        )
    );
    // The restored server takes a new client at its path.
    let mut again = std::os::unix::net::UnixStream::connect(&path).unwrap();
    again.write_all(b"again\n").unwrap();
    let mut reply = [0u8; 6];
    again.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"AGAIN\n");
    drop(again);
    common::kill(pid);
    common::finish_restore(restore, 128 + libc::SIGKILL);
}

/// Two `socat`s relaying lines from a FIFO through a unix stream connection (one listens
/// at a path, the other connects) into another FIFO: dumped (killed) after a first line
/// went through, restored, and the next lines go through the same connection.
#[test]
fn socat_relays_through_a_unix_socket_across_a_restore() {
    if !common::capable() {
        return_skip();
    }
    assert!(
        common::have("socat"),
        "socat is needed (.ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sock = root.join("relay.sock");
    for fifo in ["in", "out"] {
        common::mkfifo(&root.join(fifo));
    }
    let mut input = common::open_ctl(&root.join("in"));
    let mut output = common::open_ctl(&root.join("out"));
    let mut prog = common::only_stdio(
        Command::new("sh")
            .arg("-c")
            .arg(
                "socat -u UNIX-LISTEN:\"$1\" OPEN:\"$3\" & \
                 exec socat -u OPEN:\"$2\" UNIX-CONNECT:\"$1\",retry=100,interval=0.05",
            )
            .arg("relay")
            .arg(&sock)
            .arg(root.join("in"))
            .arg(root.join("out"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .unwrap();
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let read_line = |output: &mut File, want: &[u8]| {
        let mut got = vec![0u8; want.len()];
        let mut n = 0;
        while n < want.len() {
            assert!(
                common::readable_within(output, common::DEADLINE),
                "nothing came through (got {:?})",
                String::from_utf8_lossy(&got[..n])
            );
            n += output.read(&mut got[n..]).unwrap();
        }
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    };
    input.write_all(b"first line\n").unwrap();
    read_line(&mut output, b"first line\n");
    let children = common::children(pid);
    guard.0.extend(&children);

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped tree to be gone", || {
        children.iter().all(|&c| common::state(c).is_none())
    });
    // The connection between the two is in the image, its two ends linked.
    let image = pipecr_image::Image::open(&img).unwrap();
    let socks = unix_records(&image);
    assert!(
        socks
            .iter()
            .any(|a| socks.iter().any(|b| a.peer_inode == b.inode
                && b.peer_inode == a.inode
                && a.name.ends_with(b"relay.sock"))),
        "{socks:?}"
    );
    let restore = common::restore(&img, pid);
    input.write_all(b"second line\n").unwrap();
    read_line(&mut output, b"second line\n");
    input.write_all(b"third line\n").unwrap();
    read_line(&mut output, b"third line\n");
    for c in &children {
        common::kill(*c);
    }
    common::kill(pid);
    let _ = common::finish_restore(restore, 128 + libc::SIGKILL);
}

/// The same socket whose peer was outside the tree takes a descriptor given at restore
/// (`--inherit-fd FD=fd:0`, one end of a socketpair the test holds the other end of).
#[test]
fn a_peer_outside_the_tree_takes_an_inherited_descriptor() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    if !common::capable() {
        return_skip();
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("unixsocks", root).expect("no C compiler");
    let peer = root.join("peer.sock");
    let listener = UnixListener::bind(&peer).unwrap();
    let (mut prog, mut ctl, mut ack) =
        start(&exe, root, "external", &[peer.to_str().unwrap(), "anypeer"]);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let (first, _) = listener.accept().unwrap();
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    drop(first);
    let ends = pipecr::restore::external::external_ends(&pipecr_image::Image::open(&img).unwrap())
        .unwrap();
    assert_eq!(ends.len(), 1, "{ends:?}");
    let fd = ends[0].holders[0].1;

    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let mut cmd = common::restore_command(&img);
    cmd.arg("--inherit-fd")
        .arg(format!("{fd}=fd:0"))
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    let restore = common::restore_started(&mut cmd, pid);
    ctl.write_all(b"v").unwrap();
    let mut b = [0u8; 5];
    mine.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after");
    mine.write_all(b"ok").unwrap();
    assert!(common::readable_within(&ack, common::DEADLINE));
    let _ = ack.read_exact(&mut [0u8; 1]);
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    assert!(out.ends_with("done ok\n"), "{out}");
    common::finish_restore(restore, 0);
}

/// A listener of the tree whose accepted connection's client is outside it (python3, a
/// line server; the test is the client): the accepted socket takes a descriptor given at
/// restore (`--inherit-fd FD=fd:0`) and the listener is restored around it, accepting a
/// new client at its path. (The listener used to create every accepted socket bearing
/// its name, the external one too, which failed the restore.)
#[test]
fn an_accepted_connection_whose_client_is_outside_the_tree_takes_an_inherited_descriptor() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    const SERVER: &str = r#"
import socket, sys
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(sys.argv[1])
l.listen(4)
c, _ = l.accept()
def line(s):
    b = b''
    while not b.endswith(b'\n'):
        d = s.recv(1)
        if not d:
            return b''
        b += d
    return b
while True:
    b = line(c)
    if not b:
        sys.exit(0)
    c.sendall(b.upper())
    if b == b'accept\n':
        n, _ = l.accept()
        n.sendall(line(n).upper())
        n.close()
"#;
    if !common::capable() {
        return_skip();
    }
    assert!(common::have("python3"), ".ci/run installs python3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SERVER])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut prog = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut first = None;
    common::wait_until("the server to listen", || {
        first = UnixStream::connect(&path).ok();
        first.is_some()
    });
    let mut first = first.unwrap();
    let ask = |s: &mut UnixStream, what: &str| {
        s.write_all(what.as_bytes()).unwrap();
        let mut b = vec![0u8; what.len()];
        s.read_exact(&mut b).unwrap();
        String::from_utf8(b).unwrap()
    };
    assert_eq!(ask(&mut first, "before\n"), "BEFORE\n");
    let img = dir.path().join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the old connection ends with the dumped tree"
    );
    let ends = pipecr::restore::external::external_ends(&pipecr_image::Image::open(&img).unwrap())
        .unwrap();
    assert_eq!(ends.len(), 1, "the accepted connection: {ends:?}");
    let fd = ends[0].holders[0].1;

    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let mut cmd = common::restore_command(&img);
    cmd.arg("--inherit-fd")
        .arg(format!("{fd}=fd:0"))
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    let restore = common::restore_started(&mut cmd, pid);
    let _guard = KillOnDrop(vec![pid]);
    assert_eq!(ask(&mut mine, "after\n"), "AFTER\n");
    assert_eq!(ask(&mut mine, "accept\n"), "ACCEPT\n");
    let mut second = UnixStream::connect(&path).unwrap();
    assert_eq!(ask(&mut second, "new\n"), "NEW\n");
    drop(mine);
    common::finish_restore(restore, 0);
}
