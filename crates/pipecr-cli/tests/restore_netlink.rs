//! `pipecr dump` and `restore` of netlink sockets beyond route and uevent, each test in a
//! network namespace of its own (made by `unshare(CLONE_NEWNET)` on the test's thread,
//! which every process the test starts inherits, and gone with them).
//!
//! - tests/progs/netlinks.c holds generic (with every `SOL_NETLINK` option, in nlctrl's
//!   notify group), route (`NETLINK_LISTEN_ALL_NSID`), sock_diag, netfilter, xfrm and
//!   connector sockets; after restore it checks their port ids, options and groups from
//!   inside, resolves nlctrl again with `CTRL_CMD_GETFAMILY` and runs a sock_diag dump.
//! - Sockets holding kernel state a new socket would not have are refused, naming why: a
//!   connector socket in the proc-events group, a netfilter socket bound to an
//!   nfnetlink_queue queue or owning an nf_tables table. The tree runs on.
//! - An audit socket comes back and asks the kernel again; the audit daemon's own socket
//!   is refused.
//! - A socket with an unread answer is refused, naming the bytes; with
//!   `--drop-netlink-messages` it is saved without it, and the live one keeps it.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
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

#[test]
fn netlink_sockets_of_many_protocols_come_back_with_ports_options_and_groups() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("netlinks", root).expect("cc builds tests/progs/netlinks.c");
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    assert!(common::readable_within(&ack, common::DEADLINE));
    ack.read_exact(&mut b).unwrap();
    let out = || std::fs::read_to_string(root.join("out")).unwrap();
    let ports: Vec<u32> = out()
        .trim()
        .strip_prefix("ports ")
        .unwrap_or_else(|| panic!("the program prints its ports: {}", out()))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    common::wait_child(&mut prog, "the dumped program to be gone");
    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    let generic = "generic netlink socket";
    for (fd, what) in [
        (
            10,
            format!(
                "{generic}, port id {}, groups 0x8000, group 16 = nlctrl/notify, \
                 NETLINK_PKTINFO|NETLINK_BROADCAST_ERROR|NETLINK_NO_ENOBUFS|NETLINK_CAP_ACK|\
                 NETLINK_EXT_ACK|NETLINK_GET_STRICT_CHK",
                ports[0]
            ),
        ),
        (11, format!("{generic}, port id {}, groups 0x0", ports[1])),
        (
            12,
            format!(
                "route netlink socket, port id {}, groups 0x1, NETLINK_LISTEN_ALL_NSID",
                ports[2]
            ),
        ),
        (13, "sock_diag netlink socket, port id 0, groups 0x0".into()),
        (
            14,
            format!("netfilter netlink socket, port id {}, groups 0x0", ports[3]),
        ),
        (
            15,
            format!("xfrm netlink socket, port id {}, groups 0x0", ports[4]),
        ),
        (
            16,
            format!("connector netlink socket, port id {}, groups 0x0", ports[5]),
        ),
    ] {
        let shown = show.lines().any(|l| {
            l.trim_start().starts_with(&format!("fd {fd}  -> file ")) && l.ends_with(&what)
        });
        assert!(shown, "fd {fd}: {what:?} not in\n{show}");
    }

    let restore = common::restore(&img, pid);
    ctl.write_all(b"v").unwrap();
    assert!(
        common::readable_within(&ack, common::DEADLINE),
        "no answer to v"
    );
    ack.read_exact(&mut b).unwrap();
    assert_eq!(out().lines().last(), Some("ok"), "{}", out());
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// A python3 program that runs argv[2] (which makes a socket `s`, at fd 3), says
/// "ready" on argv[1], waits for one byte on the FIFO argv[3], then runs argv[4] (which
/// may check something and exit with a status of its own).
const HOLDER_PY: &str = r#"
import socket, struct, sys
exec(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("ready\n")
with open(sys.argv[3], "rb") as ctl:
    ctl.read(1)
exec(sys.argv[4])
"#;

/// A netlink message: header (length, type, flags, sequence 1, port 0) and `body`.
const NLMSG_PY: &str = r#"
def nlmsg(ty, flags, body, seq=1):
    return struct.pack('=IHHII', 16 + len(body), ty, flags, seq, 0) + body
def attr(ty, value):
    a = struct.pack('=HH', 4 + len(value), ty) + value
    return a + b'\0' * (-len(a) % 4)
def acked(s):
    r = s.recv(65536)
    assert struct.unpack_from('=H', r, 4)[0] == 2 and struct.unpack_from('=i', r, 16)[0] == 0, r
"#;

/// Starts [`HOLDER_PY`] with `make` and `after`, in `root`; returns it once it is ready.
fn start_holder(root: &Path, make: &str, after: &str) -> std::process::Child {
    let ready = root.join("ready");
    common::mkfifo(&ready);
    common::mkfifo(&root.join("ctl"));
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(HOLDER_PY)
        .arg(&ready)
        .arg(format!("{NLMSG_PY}\n{make}"))
        .arg(root.join("ctl"))
        .arg(after)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = common::only_stdio(&mut cmd).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(File::open(&ready).unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n", "{make}: the holder did not start");
    child
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

/// `pipecr dump [OPTIONS] -t PID -D IMG`: (success, stdout, stderr).
fn dump(pid: i32, img: &Path, options: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::PIPECR)
        .arg("dump")
        .args(options)
        .args(["-t", &pid.to_string(), "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn netlink_sockets_holding_kernel_state_are_refused_naming_it() {
    if !common::capable() {
        return;
    }
    private_netns();
    for (make, words) in [
        (
            // CN_IDX_PROC: the proc connector's group.
            "s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11); s.bind((0, 1))",
            "connector netlink socket in the process-events group (CN_IDX_PROC: the proc \
             connector keeps its listen state and event filter in the kernel, where pipecr \
             cannot read them)",
        ),
        (
            // NFQNL_MSG_CONFIG with NFQA_CFG_CMD BIND for queue 4242.
            "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12); s.bind((0, 0))
s.send(nlmsg((3 << 8) | 2, 1 | 4, struct.pack('=BBH', 0, 0, socket.htons(4242)) + attr(1, struct.pack('=BBH', 1, 0, 0))))
acked(s)",
            "netfilter netlink socket whose nfnetlink_queue queue 4242 is bound to its port id",
        ),
        (
            // A batch creating an inet table with NFT_TABLE_F_OWNER.
            "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12); s.bind((0, 0))
batch = struct.pack('=BBH', 0, 0, socket.htons(10))
table = struct.pack('=BBH', 1, 0, 0) + attr(1, b'pipecr_owned\\0') + attr(2, struct.pack('>I', 2))
s.send(nlmsg(0x10, 1, batch, 1) + nlmsg((10 << 8) | 0, 1 | 4 | 0x400, table, 2) + nlmsg(0x11, 1, batch, 3))
acked(s)",
            "netfilter netlink socket whose nf_tables table pipecr_owned is owned by its port id",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut prog = start_holder(root, make, "");
        let pid = prog.id() as i32;
        let _guard = KillOnDrop(vec![pid]);
        let (ok, _, err) = dump(pid, &root.join("img"), &[]);
        assert!(!ok, "{make}: the dump succeeded");
        assert!(
            err.contains(&format!("pid {pid} fd 3: {words}")) && err.contains("is not supported"),
            "{make}: {err}"
        );
        // The tree runs on: it reads its command and exits cleanly.
        let mut ctl = common::open_ctl(&root.join("ctl"));
        ctl.write_all(b"x").unwrap();
        let status = common::wait_child(&mut prog, "the holder to finish");
        assert!(status.success(), "{make}: {status:?}");
    }
}

#[test]
fn a_netlink_socket_with_an_unread_answer_is_refused_or_saved_without_it() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // RTM_GETLINK dump: the answer (lo's RTM_NEWLINK, then NLMSG_DONE) left unread; after
    // the command the program reads it and exits 0 if it is there.
    let mut prog = start_holder(
        root,
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind((0, 0))
s.send(nlmsg(18, 1 | 0x300, struct.pack('=BxHiII', 0, 0, 0, 0, 0)))
while not s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT): pass",
        "s.setblocking(False)
sys.exit(0 if struct.unpack_from('=H', s.recv(65536), 4)[0] == 16 else 7)",
    );
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let (ok, _, err) = dump(pid, &root.join("refused"), &[]);
    assert!(!ok, "the dump succeeded");
    assert!(
        err.contains(&format!(
            "pid {pid} fd 3: route netlink socket with messages waiting to be read (the first is "
        )) && err.contains(
            "bytes of receive buffer in use): pipecr cannot save them without consuming them, \
             nor queue them again as the kernel's; --drop-netlink-messages saves the socket \
             without them is not supported"
        ),
        "{err}"
    );
    let (ok, stdout, err) = dump(
        pid,
        &root.join("img"),
        &["--leave-running", "--drop-netlink-messages"],
    );
    assert!(ok, "{err}");
    assert!(
        stdout.contains(&format!(
            "pid {pid} fd 3: dropped queued messages of a route netlink socket ("
        )),
        "{stdout}"
    );
    // The live socket still has its answer: the program reads it and exits 0.
    let mut ctl = common::open_ctl(&root.join("ctl"));
    ctl.write_all(b"x").unwrap();
    let status = common::wait_child(&mut prog, "the holder to finish");
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_audit_socket_comes_back_and_asks_the_kernel_again() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // After restore: the same port id, and AUDIT_GET is answered (audit_status).
    let mut prog = start_holder(
        root,
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9); s.bind((0, 0))
port = s.getsockname()[0]",
        "assert s.getsockname()[0] == port, (s.getsockname(), port)
s.send(nlmsg(1000, 1, b''))
r = s.recv(65536)
sys.exit(0 if struct.unpack_from('=H', r, 4)[0] == 1000 and len(r) >= 32 else 7)",
    );
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let img = root.join("img");
    let (ok, _, err) = dump(pid, &img, &[]);
    assert!(ok, "{err}");
    common::wait_child(&mut prog, "the dumped program to be gone");
    let restore = common::restore(&img, pid);
    let mut ctl = common::open_ctl(&root.join("ctl"));
    ctl.write_all(b"x").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn the_audit_daemons_socket_is_refused() {
    if !common::capable() {
        return;
    }
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // AUDIT_SET (mask AUDIT_STATUS_PID) with the program's own PID: it is the audit
    // daemon until it unregisters (pid 0) after the command.
    let status = |pid: &str| format!("struct.pack('=11I', 4, 0, 0, {pid}, 0, 0, 0, 0, 0, 0, 0)");
    let mut prog = start_holder(
        root,
        &format!(
            "import os
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9); s.bind((0, 0))
s.send(nlmsg(1001, 1 | 4, {}))
acked(s)",
            status("os.getpid()")
        ),
        &format!("s.send(nlmsg(1001, 1, {}))", status("0")),
    );
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let (ok, _, err) = dump(pid, &root.join("img"), &[]);
    assert!(!ok, "the dump succeeded");
    assert!(
        err.contains(&format!(
            "pid {pid} fd 3: audit netlink socket of a tree holding the audit daemon (pid \
             {pid} registered its socket with AUDIT_SET; a new socket would not be \
             registered) is not supported"
        )),
        "{err}"
    );
    let mut ctl = common::open_ctl(&root.join("ctl"));
    ctl.write_all(b"x").unwrap();
    let status = common::wait_child(&mut prog, "the holder to finish");
    assert!(status.success(), "{status:?}");
}
