//! `pipecr dump` and `restore` of packet (`AF_PACKET`), raw IP and ping sockets, each
//! test in a network namespace of its own (made by `unshare(CLONE_NEWNET)` on the
//! test's thread, which every process the test starts inherits, and gone with them).
//!
//! - tests/progs/packets.c holds packet sockets bound to lo (one with options and
//!   promiscuous/all-multicast memberships, one in a fanout group with a locked BPF
//!   filter, one never bound), raw ICMP (bound and connected, ICMP filter), raw UDP
//!   (IP_HDRINCL), raw ICMPv6 (bound, ICMP6 filter) and ping sockets (IPv4 and IPv6); after restore it checks
//!   them from inside and receives frames and echo requests sent after the restore.
//! - A restore without CAP_NET_RAW (under `setpriv --bounding-set -net_raw`) is refused
//!   before anything is created, naming the capability; a restore with it then works.
//! - A packet socket bound to a veth interface comes back bound to the interface of
//!   that name, under its new index; without one, the restore is refused before
//!   anything is created.
//! - A packet socket with a ring, with packets waiting, of the obsolete type
//!   SOCK_PACKET, or bound to an interface since removed is refused at dump, naming the process and descriptor (the area, for a
//!   ring whose descriptor was closed), and the tree runs on.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::KillOnDrop;

/// Moves the calling thread (and whatever it starts from now on) into a new network
/// namespace with its loopback interface up, where group 0 may open ping sockets.
fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip (iproute2) is needed by these tests");
    assert!(st.success(), "ip link set lo up");
    // A sysctl of the opener's network namespace: this one only.
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0")
        .expect("net.ipv4.ping_group_range");
}

/// lo's promiscuity count and all-multicast count (`ip -d link show lo`).
fn lo_counts() -> (u32, u32) {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "lo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> u32 {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in: {text}"))
    };
    (field("promiscuity"), field("allmulti"))
}

/// Waits until the dumped processes are gone (PID 1 reaps slowly).
fn wait_gone(pids: &[i32]) {
    common::wait_until("the dumped tree to be gone", || {
        pids.iter().all(|&p| common::state(p).is_none())
    });
}

/// Starts tests/progs/packets.c in `root` and waits until it has set up its sockets.
fn start_packets(root: &Path) -> (std::process::Child, File, File) {
    let exe = common::build("packets", root).expect("cc builds tests/progs/packets.c");
    let (prog, ctl, mut ack) = common::start_driven(&exe, root);
    let _guard = KillOnDrop(vec![prog.id() as i32]);
    assert!(
        common::readable_within(&ack, common::DEADLINE),
        "packets.c set up its sockets: {:?}",
        std::fs::read_to_string(root.join("out"))
    );
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap();
    std::mem::forget(_guard);
    (prog, ctl, ack)
}

#[test]
fn packet_raw_and_ping_sockets_come_back_and_receive_on_loopback() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut prog, mut ctl, mut ack) = start_packets(root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    assert_eq!(lo_counts(), (1, 1), "the memberships of the program");
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    wait_gone(&[pid]);
    assert_eq!(lo_counts(), (0, 0), "the memberships went with the tree");
    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    for words in [
        "packet socket (raw, protocol 0x88b5) on lo, 2 membership(s)",
        "packet socket (datagram, protocol 0x88b6) on lo, fanout group 4242 (lb), filter of 4 instructions",
        "packet socket (raw, protocol 0x0000) on every interface",
        "raw IP socket of protocol 1 on 127.0.0.1 connected to 127.0.0.1, ICMP filter",
        "raw IP socket of protocol 17 on -",
        "raw IPv6 socket of protocol 58 on ::1, ICMP filter",
        "ping socket on 127.0.0.1:777",
        "pingv6 socket on [::1]:778",
    ] {
        assert!(show.contains(words), "{words:?} in:\n{show}");
    }

    let restore = common::restore(&img, pid);
    assert_eq!(lo_counts(), (1, 1), "the memberships are back");
    common::step(&mut ctl, &mut ack, b'v');
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
    assert_eq!(lo_counts(), (0, 0));
}

#[test]
fn a_restore_without_cap_net_raw_is_refused_before_anything_is_created() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut prog, mut ctl, mut ack) = start_packets(root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    wait_gone(&[pid]);

    let out = Command::new("setpriv")
        .args([
            "--bounding-set",
            "-net_raw",
            "--",
            common::PIPECR,
            "restore",
            "-D",
        ])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) is needed by this test");
    let err = String::from_utf8_lossy(&out.stderr);
    // Class "environment": this machine lacks a privilege.
    assert_eq!(out.status.code(), Some(6), "the restore was refused: {err}");
    assert!(
        err.contains("needs CAP_NET_RAW, which the restorer lacks")
            && err.contains("packet socket (raw, protocol 0x88b5) on lo"),
        "{err}"
    );
    // Nothing was created: no process, no membership on lo.
    assert!(common::state(pid).is_none(), "pid {pid} exists");
    assert_eq!(lo_counts(), (0, 0));

    let restore = common::restore(&img, pid);
    common::step(&mut ctl, &mut ack, b'v');
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// Runs `exec(sys.argv[2])`, writes "ready" into the FIFO argv[1], then waits for a byte
/// on the FIFO argv[3].
const HOLDER_PY: &str = r#"
import socket, struct, sys
exec(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("ready\n")
with open(sys.argv[3], "rb") as ctl:
    ctl.read(1)
"#;

/// The interpreter itself (`sys.executable`), not a wrapper script (pyenv's shims).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed by this test");
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn rings_queued_packets_and_sock_packet_are_refused_naming_them() {
    if !common::capable() {
        return;
    }
    private_netns();
    add_veth();
    for (n, (expr, words)) in [
        (
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 5, struct.pack('IIII', 4096, 4, 2048, 8))",
            "packet socket with a mapped ring (PACKET_RX_RING 4 blocks of 4096 bytes",
        ),
        (
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x88b7))
s.bind(('lo', 0x88b7))
t = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
t.sendto(bytes(12) + b'\\x88\\xb7' + b'queued', ('lo', 0))
t.close()
import select
select.select([s], [], [])",
            "packet socket with packets waiting to be read (protocol 0x88b7",
        ),
        // The ring mapped (mmap from libc: Python's mmap keeps a descriptor of its own),
        // then its descriptor closed: only the mapping holds the socket.
        (
            "import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 5, struct.pack('IIII', 4096, 4, 2048, 8))
assert libc.mmap(None, 16384, 3, 1, s.fileno(), 0) not in (None, ctypes.c_void_p(-1).value)
s.close()
s = open('/dev/null')",
            "a memory-mapped socket (a packet socket with a mapped ring",
        ),
        (
            "s = socket.socket(socket.AF_PACKET, 10, socket.htons(3))",
            "packet socket of type 10 (SOCK_PACKET, obsolete",
        ),
        (
            "import subprocess
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(('pcr0', 3))
subprocess.run(['ip', 'link', 'del', 'pcr0'], check=True)",
            "packet socket (protocol 0x0003) bound to an interface that was removed",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ready = root.join("ready");
        let ctl_path = root.join("ctl");
        common::mkfifo(&ready);
        common::mkfifo(&ctl_path);
        let mut cmd = Command::new(python());
        cmd.arg("-c")
            .arg(HOLDER_PY)
            .arg(&ready)
            .arg(expr)
            .arg(&ctl_path)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut prog = common::only_stdio(&mut cmd).spawn().unwrap();
        let pid = prog.id() as i32;
        let _guard = KillOnDrop(vec![pid]);
        let mut line = String::new();
        BufReader::new(File::open(&ready).unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "{expr}");
        let out = Command::new(common::PIPECR)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(root.join(format!("img{n}")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expr}: the dump was refused");
        assert!(
            err.contains(&format!("pid {pid}"))
                && err.contains(words)
                && (n == 2 || err.contains(&format!("pid {pid} fd 3: {words}")))
                && err.contains("not supported"),
            "{expr}: {err}"
        );
        // The tree runs on: it reads its command and exits cleanly.
        let mut ctl = common::open_ctl(&ctl_path);
        ctl.write_all(b"x").unwrap();
        let status = common::wait_child(&mut prog, "the program to finish");
        assert!(status.success(), "{expr}: {status:?}");
    }
}

/// Adds the veth pair pcr0-pcr1 (both up) to the test's network namespace; returns
/// pcr0's index.
fn add_veth() -> u32 {
    for args in [
        &[
            "link", "add", "pcr0", "type", "veth", "peer", "name", "pcr1",
        ][..],
        &["link", "set", "pcr0", "up"],
        &["link", "set", "pcr1", "up"],
    ] {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    }
    // A socket of the test thread's network namespace asks for the index.
    let probe = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .unwrap();
    rustix::net::netdevice::name_to_index(&probe, "pcr0").expect("pcr0's index")
}

/// Sets up `exec(argv[2])`, writes "ready" into the FIFO argv[1], waits for a byte on
/// the FIFO argv[3], then runs `exec(argv[4])` (its checks: an exception exits 1).
const CHECKED_PY: &str = r#"
import socket, struct, sys
exec(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("ready\n")
with open(sys.argv[3], "rb") as ctl:
    ctl.read(1)
exec(sys.argv[4])
"#;

#[test]
fn the_interface_is_found_again_by_name_or_the_restore_refused() {
    if !common::capable() {
        return;
    }
    private_netns();
    let first = add_veth();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ready = root.join("ready");
    let ctl_path = root.join("ctl");
    common::mkfifo(&ready);
    common::mkfifo(&ctl_path);
    let setup = "s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x88b8))
s.bind(('pcr0', 0x88b8))
s.setsockopt(263, 1, struct.pack('iHH8s', socket.if_nametoindex('pcr0'), 1, 0, b''))";
    // After restore: still bound to pcr0 (whatever its index now), and a frame sent into
    // pcr1 arrives through pcr0.
    let check = "assert s.getsockname()[0] == 'pcr0', s.getsockname()
t = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
t.sendto(b'\\xff' * 6 + bytes(6) + b'\\x88\\xb8' + b'through-pcr0', ('pcr1', 0))
s.settimeout(10)
data = s.recv(100)
assert data == b'through-pcr0', data";
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(CHECKED_PY)
        .arg(&ready)
        .arg(setup)
        .arg(&ctl_path)
        .arg(check)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut prog = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut line = String::new();
    BufReader::new(File::open(&ready).unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    wait_gone(&[pid]);

    // The interface is gone: refused before anything is created.
    let st = Command::new("ip")
        .args(["link", "del", "pcr0"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = common::restore_command(&img).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Class "conflict": something on this machine is in the way.
    assert_eq!(out.status.code(), Some(5), "the restore was refused: {err}");
    assert!(
        err.contains("packet socket (datagram, protocol 0x88b8) on pcr0")
            && err.contains("no interface named \"pcr0\" in this network namespace"),
        "{err}"
    );
    assert!(common::state(pid).is_none(), "pid {pid} exists");

    // Back under another index: the socket is bound to it by name.
    let second = add_veth();
    assert_ne!(first, second);
    let restore = common::restore(&img, pid);
    let mut ctl = common::open_ctl(&ctl_path);
    ctl.write_all(b"x").unwrap();
    common::finish_restore(restore, 0);
}
