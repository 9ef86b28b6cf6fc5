//! `pipecr dump` and `restore` of TCP, UDP and netlink sockets, each test in a network
//! namespace of its own (made by `unshare(CLONE_NEWNET)` on the test's thread, which every
//! process the test starts inherits, and gone with them), so ports never collide with
//! other tests.
//!
//! - tests/progs/inet.c holds listeners (IPv4, IPv6), two loopback connections with
//!   bytes queued both ways, one waiting to be accepted with bytes its client sent, a
//!   bound socket, UDP sockets with queued datagrams from
//!   three senders, route and uevent netlink sockets; after restore it checks all of it
//!   from inside and moves 2 MB more each way.
//! - A python3 asyncio echo server (a real program) with the test as its client outside
//!   the tree: the client keeps talking while the tree is dumped, gone and restored,
//!   and every line comes back once, in order, without a reset.
//! - `python3 -m http.server` (HTTP/1.1, keep-alive) answers the next request on the
//!   same connection after restore.
//! - Half-closed connections (CLOSE_WAIT and FIN_WAIT2 ends) come back in their states.
//! - A connection in SYN_SENT is refused, naming it, and the tree runs on; raw, packet,
//!   proc-connector netlink sockets and a reset TCP socket are refused too.
//! - A restore that fails leaves no socket behind, and a second restore takes the
//!   connection over.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::KillOnDrop;

/// Moves the calling thread (and whatever it starts from now on) into a new network
/// namespace with its loopback interface up.
fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip (iproute2) is needed by these tests");
    assert!(st.success(), "ip link set lo up");
}

/// The names of the nftables tables of this network namespace.
fn nft_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft (nftables) is needed by these tests");
    assert!(out.status.success(), "nft list tables: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ss -ltnH`: the listening TCP sockets, "LISTEN 0 7 127.0.0.1:PORT ..." per line.
fn listeners() -> String {
    let out = Command::new("ss").args(["-ltnH"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Send-Q of the listener on `addr` (its backlog), from `ss -ltnH`.
fn backlog_of(addr: &str) -> Option<u32> {
    listeners()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(3) == Some(&addr))
        .and_then(|f| f.get(2)?.parse().ok())
}

/// Waits until the dumped processes are gone (PID 1 reaps slowly).
fn wait_gone(pids: &[i32]) {
    common::wait_until("the dumped tree to be gone", || {
        pids.iter().all(|&p| common::state(p).is_none())
    });
}

#[test]
fn tcp_udp_and_netlink_sockets_come_back_with_their_queues() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("inet", root).expect("cc builds tests/progs/inet.c");
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    assert!(common::readable_within(&ack, common::DEADLINE));
    ack.read_exact(&mut b).unwrap();
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    let ports: Vec<u16> = out
        .trim()
        .strip_prefix("ports ")
        .expect("the program prints its ports")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let (v4, v6) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("[::1]:{}", ports[1]),
    );
    assert_eq!(backlog_of(&v4), Some(7), "{}", listeners());
    assert_eq!(backlog_of(&v6), Some(3), "{}", listeners());

    // A dump that lets the tree run on cannot take the waiting connection from its
    // listener's queue: refused, and the tree is as it was (checked after restore).
    let out = Command::new(common::PIPECR)
        .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
        .arg(root.join("img-refused"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the dump was refused");
    assert!(
        err.contains(&format!(
            "listening on {v4} with 1 connection(s) waiting to be accepted"
        )),
        "{err}"
    );
    assert!(!nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    wait_gone(&[pid]);
    // While the tree is away its connections are held by the network lock.
    assert!(nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    assert!(backlog_of(&v4).is_none(), "the listener died with the tree");
    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains(&format!("TCP socket listening on {v4}, backlog 7")),
        "{show}"
    );
    assert!(show.contains("UDP socket 127.0.0.1:"), "{show}");
    assert!(show.contains("3 datagram(s) queued (15 B)"), "{show}");
    assert!(show.contains("route netlink socket"), "{show}");

    let restore = common::restore(&img, pid);
    // The lock is gone once the tree runs, the listeners are back with their backlogs.
    assert!(!nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    assert_eq!(backlog_of(&v4), Some(7), "{}", listeners());
    assert_eq!(backlog_of(&v6), Some(3), "{}", listeners());
    ctl.write_all(b"v").unwrap();
    assert!(
        common::readable_within(&ack, common::DEADLINE),
        "no answer to v"
    );
    ack.read_exact(&mut b).unwrap();
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// A python3 asyncio TCP echo server: each line comes back as "echo LINE". Writes its
/// port into argv[1] once it listens.
const ECHO_PY: &str = r#"
import asyncio, sys
async def handle(r, w):
    while True:
        line = await r.readline()
        if not line:
            break
        w.write(b"echo " + line)
        await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    with open(sys.argv[1], "w") as f:
        f.write(f"{port}\n")
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"#;

/// Starts `python3 -c SCRIPT ARGS...` with only stdio (to /dev/null), and returns it with
/// the first line it writes into the FIFO `ready` (passed as its first argument).
fn start_python(root: &Path, script: &str, args: &[&str]) -> (std::process::Child, String) {
    let ready = root.join("ready");
    common::mkfifo(&ready);
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(script)
        .arg(&ready)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = common::only_stdio(&mut cmd).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(File::open(&ready).unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// The interpreter itself (`sys.executable`), not a wrapper script (pyenv's shims).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed by this test");
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Sends "line N" and reads back "echo line N".
fn round_trip(conn: &mut BufReader<TcpStream>, n: u32) {
    conn.get_mut()
        .write_all(format!("line {n}\n").as_bytes())
        .unwrap_or_else(|e| panic!("send line {n}: {e}"));
    let mut back = String::new();
    conn.read_line(&mut back)
        .unwrap_or_else(|e| panic!("reply to line {n}: {e}"));
    assert_eq!(back, format!("echo line {n}\n"));
}

#[test]
fn an_asyncio_echo_server_keeps_its_client_outside_the_tree_across_a_restore() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut server, port) = start_python(root, ECHO_PY, &[]);
    let pid = server.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut conn = BufReader::new(stream);
    for n in 0..100 {
        round_trip(&mut conn, n);
    }
    // One line the server has not answered yet when it is dumped: sent before the
    // freeze, it waits in the server's receive queue (or arrives while it is stopped).
    conn.get_mut().write_all(b"line 100\n").unwrap();
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    server.wait().unwrap();
    wait_gone(&[pid]);
    // While the server is gone the client goes on writing: its packets are dropped by
    // the lock (and retransmitted), never answered with a reset.
    conn.get_mut().write_all(b"line 101\n").unwrap();
    let restore = common::restore(&img, pid);
    for n in [100, 101] {
        let mut back = String::new();
        conn.read_line(&mut back)
            .unwrap_or_else(|e| panic!("reply to line {n} after restore: {e}"));
        assert_eq!(back, format!("echo line {n}\n"));
    }
    for n in 102..200 {
        round_trip(&mut conn, n);
    }
    // A new client is served by the restored listener too.
    let mut other = BufReader::new(TcpStream::connect(format!("127.0.0.1:{port}")).unwrap());
    other
        .get_ref()
        .set_read_timeout(Some(common::DEADLINE))
        .unwrap();
    round_trip(&mut other, 7);
    common::kill(pid);
    common::finish_restore(restore, 128 + 9);
}

/// `python3 -m http.server` as a script: HTTP/1.1 (keep-alive) on 127.0.0.1, an ephemeral
/// port written to argv[1], serving the current directory.
const HTTP_PY: &str = r#"
import http.server, sys
http.server.SimpleHTTPRequestHandler.protocol_version = "HTTP/1.1"
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
with open(sys.argv[1], "w") as f:
    f.write(f"{srv.server_address[1]}\n")
srv.serve_forever()
"#;

/// Sends `GET /PATH` on the keep-alive connection and returns the body of the answer.
fn get(conn: &mut BufReader<TcpStream>, path: &str) -> String {
    conn.get_mut()
        .write_all(format!("GET /{path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut status = String::new();
    conn.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut length = 0;
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn http_server_answers_the_next_request_on_the_same_connection_after_restore() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("a.txt"), "first file\n").unwrap();
    std::fs::write(root.join("b.txt"), "second file\n").unwrap();
    let (mut server, port) = start_python(root, HTTP_PY, &[]);
    let pid = server.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut conn = BufReader::new(stream);
    assert_eq!(get(&mut conn, "a.txt"), "first file\n");
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    server.wait().unwrap();
    wait_gone(&[pid]);
    let restore = common::restore(&img, pid);
    // The same connection: the server's handler thread reads the next request.
    assert_eq!(get(&mut conn, "b.txt"), "second file\n");
    assert_eq!(get(&mut conn, "a.txt"), "first file\n");
    common::kill(pid);
    common::finish_restore(restore, 128 + 9);
}

/// A process holding a listener, an established connection (both ends) and a
/// connection whose client shut its sending side (the server's end in CLOSE_WAIT, the
/// client's in FIN_WAIT2). On a byte from the FIFO argv[2] it checks them all and
/// writes what it found into argv[3]: "more" over the established connection, then on
/// the half-closed one: the server still reads end of file, its "after" reaches the
/// client, the client cannot send, and once the server closes the client reads end of
/// file.
const HALF_CLOSED_PY: &str = r#"
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4)
c2 = socket.create_connection(l.getsockname()); s2, _ = l.accept()
c = socket.create_connection(l.getsockname()); s, _ = l.accept()
c.shutdown(socket.SHUT_WR)
assert s.recv(10) == b""
with open(sys.argv[1], "w") as f:
    f.write("ready\n")
with open(sys.argv[2], "rb") as ctl:
    ctl.read(1)
res = []
s2.sendall(b"more"); res.append(c2.recv(10).decode())
res.append("eof" if s.recv(10) == b"" else "data")
s.sendall(b"after"); res.append(c.recv(10).decode())
try:
    c.send(b"x"); res.append("sent")
except BrokenPipeError:
    res.append("epipe")
s.close()
res.append("eof" if c.recv(10) == b"" else "data")
with open(sys.argv[3], "w") as f:
    f.write(" ".join(res) + "\n")
"#;

/// Starts HALF_CLOSED_PY in `root`; returns it with its control FIFO's path and output
/// file.
fn start_half_closed(root: &Path) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    let ctl_path = root.join("ctl");
    common::mkfifo(&ctl_path);
    let out_path = root.join("out");
    let (prog, _) = start_python(
        root,
        HALF_CLOSED_PY,
        &[ctl_path.to_str().unwrap(), out_path.to_str().unwrap()],
    );
    (prog, ctl_path, out_path)
}

/// What HALF_CLOSED_PY finds when everything works.
const HALF_CLOSED_OK: &str = "more eof after epipe eof\n";

#[test]
fn half_closed_connections_come_back_in_their_states() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut prog, ctl_path, out_path) = start_half_closed(root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    wait_gone(&[pid]);
    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("(CLOSE_WAIT)") && show.contains("(FIN_WAIT2)"),
        "{show}"
    );
    let restore = common::restore(&img, pid);
    let mut ctl = common::open_ctl(&ctl_path);
    ctl.write_all(b"x").unwrap();
    common::finish_restore(restore, 0);
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), HALF_CLOSED_OK);
}

#[test]
fn a_connection_in_syn_sent_is_refused_and_the_tree_runs_on() {
    if !common::capable() {
        return;
    }
    private_netns();
    // SYNs to port 9 vanish in this namespace: a connect there stays in SYN_SENT.
    let st = Command::new("nft")
        .args(["add table inet blackhole; \
             add chain inet blackhole out { type filter hook output priority 0; }; \
             add rule inet blackhole out tcp dport 9 drop"])
        .status()
        .unwrap();
    assert!(st.success());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut prog, ctl_path, out_path) = start_half_closed(root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    // The tree gets a SYN_SENT socket too: a second program holding one.
    let dir2 = tempfile::tempdir().unwrap();
    let hold_ctl = dir2.path().join("ctl");
    common::mkfifo(&hold_ctl);
    let (mut holder, _) = start_python(
        dir2.path(),
        HOLDER_PY,
        &[
            "s = socket.socket(); s.setblocking(False); s.connect_ex(('127.0.0.1', 9))",
            hold_ctl.to_str().unwrap(),
        ],
    );
    let hpid = holder.id() as i32;
    let _hguard = KillOnDrop(vec![hpid]);
    let out = Command::new(common::PIPECR)
        .args(["dump", "-t", &hpid.to_string(), "-D"])
        .arg(root.join("img"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the dump was refused");
    assert!(
        err.contains(&format!("pid {hpid} fd 3: TCP connection"))
            && err.contains("in state SYN_SENT"),
        "{err}"
    );
    let mut hctl = common::open_ctl(&hold_ctl);
    hctl.write_all(b"x").unwrap();
    assert!(common::wait_child(&mut holder, "the holder to finish").success());
    // The half-closed program, dumped with --leave-running (its connections locked and
    // in repair mode meanwhile), goes on with no lock left.
    common::dump(pid, &root.join("img2"), &["--leave-running"]);
    assert!(!nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    let mut ctl = common::open_ctl(&ctl_path);
    ctl.write_all(b"x").unwrap();
    let status = common::wait_child(&mut prog, "the program to finish");
    assert!(status.success(), "{status:?}");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), HALF_CLOSED_OK);
}

/// Runs the Python statements argv[2] (which leave the socket under test at fd 3),
/// writes "ready" into argv[1], then waits for a byte on the FIFO argv[3] and exits 0.
const HOLDER_PY: &str = r#"
import socket, struct, sys
exec(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("ready\n")
with open(sys.argv[3], "rb") as ctl:
    ctl.read(1)
"#;

#[test]
fn raw_packet_netlink_and_ended_tcp_sockets_are_refused_naming_them() {
    if !common::capable() {
        return;
    }
    private_netns();
    for (n, (expr, words)) in [
        (
            "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
            "raw IP socket",
        ),
        (
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)",
            "packet socket",
        ),
        (
            "s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11); s.bind((0, 1))",
            "connector netlink socket in the process-events group",
        ),
        // A connection reset by its peer: CLOSE, with ECONNRESET pending.
        (
            "s = socket.socket(); l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
s.connect(l.getsockname()); a, _ = l.accept()
a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
a.close(); l.close()
while s.getsockopt(socket.SOL_TCP, socket.TCP_INFO, 1)[0] != 7: pass",
            "TCP socket",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ctl_path = root.join("ctl");
        common::mkfifo(&ctl_path);
        let (mut prog, _) = start_python(root, HOLDER_PY, &[expr, ctl_path.to_str().unwrap()]);
        let pid = prog.id() as i32;
        let _guard = KillOnDrop(vec![pid]);
        let out = Command::new(common::PIPECR)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(root.join(format!("img{n}")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expr}: the dump was refused");
        assert!(
            err.contains(&format!("pid {pid} fd 3: {words}"))
                && err.contains("not supported")
                && (n != 3 || err.contains("whose connection ended")),
            "{expr}: {err}"
        );
        // The tree runs on: it reads its command and exits cleanly.
        // Kept open until the program has read it: a FIFO no one holds loses its bytes.
        let mut ctl = common::open_ctl(&ctl_path);
        ctl.write_all(b"x").unwrap();
        let status = common::wait_child(&mut prog, "the program to finish");
        assert!(status.success(), "{expr}: {status:?}");
    }
}

#[test]
fn leave_running_lets_the_connection_go_on_without_a_lock() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (server, port) = start_python(root, ECHO_PY, &[]);
    let pid = server.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut conn = BufReader::new(stream);
    round_trip(&mut conn, 1);
    common::dump(pid, &root.join("img"), &["--leave-running"]);
    // Repair mode is off again and the lock gone: the conversation goes on at once.
    assert!(!nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    for n in 2..50 {
        round_trip(&mut conn, n);
    }
}

#[test]
fn a_failed_restore_leaves_no_socket_and_a_second_one_takes_the_connection_over() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut server, port) = start_python(root, ECHO_PY, &[]);
    let pid = server.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut conn = BufReader::new(stream);
    round_trip(&mut conn, 1);
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    server.wait().unwrap();
    wait_gone(&[pid]);
    // Someone else listens on the server's port: the restore cannot bind its listener.
    let blocker = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    let out = common::restore_command(&img).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the restore failed");
    assert!(
        err.contains("bind") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(common::state(pid).is_none(), "no process is left");
    // No socket of the server's is left: only the blocker and our own client end use
    // its port; the connection's packets are still held for another try.
    let ss = Command::new("ss").args(["-tanH"]).output().unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout);
    let local = format!("127.0.0.1:{port}");
    let mine: Vec<&str> = ss
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some(local.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{ss}");
    assert!(mine[0].starts_with("LISTEN"), "{ss}");
    assert!(nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    drop(blocker);
    let restore = common::restore(&img, pid);
    for n in 2..20 {
        round_trip(&mut conn, n);
    }
    assert!(!nft_tables().contains("pipecr_lock_"), "{}", nft_tables());
    common::kill(pid);
    common::finish_restore(restore, 128 + 9);
}
