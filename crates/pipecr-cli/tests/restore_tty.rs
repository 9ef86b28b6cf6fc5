//! Pseudo-terminal pairs through dump and restore (tests/progs/ptypair.c): the master in
//! the root, the slave the controlling terminal of a session led by its child, whose own
//! child is the foreground group and holds the slave and `/dev/tty`. Bytes are queued
//! both ways at the dump: a canonical line and a partial one for the slave, output and
//! echo for the master.
//!
//! - A dump and restore: the image holds the pair with its state (and a second one in
//!   raw mode, both ends in the root, whose queued bytes come back byte for byte); after the restore the
//!   program checks from inside the bytes each side reads (the partial line stays partial
//!   and goes on), the settings (canonical, echo, `VERASE`, a 12345-baud `BOTHER` speed),
//!   window size, packet mode, lock, exclusive mode, `tcgetpgrp`, `getsid`, `/dev/tty`,
//!   and each process's `tty_nr` and `tpgid` in `/proc`, all on the new slave number.
//! - `--leave-running`, and a dump that fails after the pair was read (a perf_event fd
//!   later in the tree): the tree goes on and finds every byte where it was.
//! - A real program: `script` running `sh` with a counter printing to the terminal; after
//!   the restore the counter ends, and `script` sees its shell exit and ends too.
//!
//! Synchronised with ready bytes on FIFOs, never slept for.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::{KillOnDrop, PIPECR, last_line, step};
use pipecr_image::{Image, proto};

/// Starts ptypair.c in `root`; returns it with its FIFOs and the pids of C and G.
fn start(root: &std::path::Path) -> (std::process::Child, std::fs::File, std::fs::File, [i32; 2]) {
    let exe = common::build("ptypair", root).expect("cc builds tests/progs/ptypair.c");
    let (prog, ctl, mut ack) = common::start_driven(&exe, root);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program set up its pair");
    let line = last_line(&root.join("out"));
    let pids: Vec<i32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    (prog, ctl, ack, [pids[0], pids[1]])
}

#[test]
fn a_pty_pair_and_its_session_come_back_with_their_queued_bytes_and_settings() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack, [c, g]) = start(root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid, c, g]);

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&[c, g]);
    for p in [pid, c, g] {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let ends: Vec<&proto::PtyEnd> = files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Pty(p)) => Some(p),
            _ => None,
        })
        .collect();
    let masters: Vec<&&proto::PtyEnd> = ends.iter().filter(|e| e.master).collect();
    assert_eq!(masters.len(), 2, "two pairs: {ends:?}");
    let (master, raw) = match masters[0].state.as_ref().unwrap().packet {
        true => (masters[0], masters[1]),
        false => (masters[1], masters[0]),
    };
    let raw_state = raw.state.as_ref().unwrap();
    assert_eq!(raw_state.input, b"\x03\r\x7fraw");
    assert_eq!(raw_state.output, b"\x03x\n");
    let state = master.state.as_ref().unwrap();
    assert_eq!(state.input, b"line1\npart");
    assert_eq!(state.output, b"out1\r\nline1\r\npart");
    assert_eq!(
        (state.rows, state.cols, state.xpixel, state.ypixel),
        (33, 101, 7, 9)
    );
    assert!(state.packet && state.locked && state.exclusive, "{state:?}");
    assert_eq!(
        (state.session, raw_state.session),
        (c, 0),
        "whose controlling terminal"
    );
    let termios = state.termios.as_ref().unwrap();
    assert_eq!((termios.ispeed, termios.ospeed), (12345, 12345));
    assert_eq!(termios.cc[libc::VERASE], 8);
    // G's slave and its /dev/tty, both of this pair.
    let mut slaves: Vec<(bool, u64)> = ends
        .iter()
        .filter(|e| !e.master && e.master_id == master.master_id)
        .map(|e| (e.via_dev_tty, e.master_id))
        .collect();
    slaves.sort();
    assert_eq!(
        slaves,
        [(false, master.master_id), (true, master.master_id)]
    );
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    let ctty: Vec<(i32, u64, i32)> = tree
        .iter()
        .map(|p| (p.pid, p.ctty_file_id, p.foreground_pgrp))
        .collect();
    assert_eq!(
        ctty,
        [
            (pid, 0, 0),
            (c, master.master_id, g),
            (g, master.master_id, 0)
        ]
    );
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("pseudo-terminal master /dev/ptmx")
            && text.contains("10 B input and 17 B output queued, packet mode, locked, exclusive"),
        "{text}"
    );

    let _guard = KillOnDrop(vec![pid, c, g]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        last_line(&root.join("out")),
        "ok",
        "the restored program's own check: {}",
        std::fs::read_to_string(root.join("out")).unwrap()
    );
    std::io::Write::write_all(&mut ctl, b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_dump_that_leaves_the_tree_running_or_fails_loses_no_byte_of_the_pair() {
    if !common::capable() {
        return;
    }
    for failing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (mut prog, mut ctl, mut ack, [c, g]) = start(root);
        let pid = prog.id() as i32;
        let _guard = KillOnDrop(vec![pid, c, g]);
        let img = root.join("img");
        if failing {
            step(&mut ctl, &mut ack, b'f');
            assert_eq!(last_line(&root.join("out")), "ok");
            let out = Command::new(PIPECR)
                .args(["dump", "-t", &pid.to_string(), "-D"])
                .arg(&img)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "the dump refuses a perf_event fd");
            assert!(
                err.contains(&format!("pid {g} fd 100: anonymous inode perf_event")),
                "{err}"
            );
            assert!(!img.exists());
        } else {
            common::dump(pid, &img, &["--leave-running"]);
        }
        step(&mut ctl, &mut ack, b'v');
        assert_eq!(
            last_line(&root.join("out")),
            "ok",
            "the tree's own check after the dump (failing: {failing}): {}",
            std::fs::read_to_string(root.join("out")).unwrap()
        );
        std::io::Write::write_all(&mut ctl, b"q").unwrap();
        common::wait_child(&mut prog, "the program to exit");
    }
}

/// Reads one line from the ready FIFO `f`, with a deadline.
fn ready_line(f: &mut std::fs::File) -> String {
    let mut line = Vec::new();
    loop {
        assert!(
            common::readable_within(f, common::DEADLINE),
            "no ready line; got {:?}",
            String::from_utf8_lossy(&line)
        );
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        if b[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(b[0]);
    }
}

#[test]
fn script_running_a_shell_counter_goes_on_after_a_restore_with_no_line_lost_or_repeated() {
    if !common::capable() || !common::have("script") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (tick_path, ready_path) = (root.join("tick"), root.join("ready"));
    common::mkfifo(&tick_path);
    common::mkfifo(&ready_path);
    let mut tick = common::open_ctl(&tick_path);
    let mut ready = common::open_ctl(&ready_path);
    let typescript = root.join("typescript");
    // The counter prints each line to its terminal (script's pty), then says so on the
    // ready FIFO; one line per tick, until "q".
    let counter = format!(
        "i=0; while read x < {tick} && [ \"$x\" != q ]; do i=$((i+1)); echo line $i; echo $i > {ready}; done",
        tick = tick_path.display(),
        ready = ready_path.display()
    );
    common::set_subreaper();
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-f", "-c"])
        .arg(format!("sh -c '{counter}'"))
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut script = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = script.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let send =
        |tick: &mut std::fs::File, s: &str| std::io::Write::write_all(tick, s.as_bytes()).unwrap();
    for i in 1..=3 {
        send(&mut tick, "\n");
        assert_eq!(ready_line(&mut ready), i.to_string());
    }
    // Mid-work: line 3 is printed (in the typescript, or still queued in the pty).
    let tree = common::descendants(pid);
    assert!(tree.len() >= 2, "script and its shell: {tree:?}");
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    script.wait().unwrap();
    common::reap(&tree);
    for &p in &tree {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }
    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    assert!(
        files
            .iter()
            .any(|f| matches!(&f.kind, Some(proto::open_file::Kind::Pty(p)) if p.master)),
        "script's pty is saved as a pair"
    );

    let _guard = KillOnDrop(tree.clone());
    let restore = common::restore(&img, pid);
    for i in 4..=6 {
        send(&mut tick, "\n");
        assert_eq!(ready_line(&mut ready), i.to_string());
    }
    // The counter ends; so does its shell, and script sees it exit (its SIGCHLD, read
    // through a signalfd) and ends too, with the shell's status, writing its trailer.
    send(&mut tick, "q\n");
    common::finish_restore(restore, 0);
    let text = std::fs::read_to_string(&typescript).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(
        lines,
        ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"],
        "the typescript: {text:?}"
    );
    assert!(
        text.trim_end().lines().last().is_some_and(
            |l| l.starts_with("Script done on ") && l.ends_with("[COMMAND_EXIT_CODE=\"0\"]")
        ),
        "script wrote its trailer with the shell's status: {text:?}"
    );
}

/// A devpts instance of our own, mounted at a directory of the test's (`newinstance`),
/// unmounted (lazily) when dropped.
struct Devpts(std::path::PathBuf);

impl Devpts {
    fn mount(at: &std::path::Path) -> Devpts {
        std::fs::create_dir(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "mount a new devpts instance at {}",
            at.display()
        );
        Devpts(at.to_owned())
    }

    fn detach(&self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Devpts {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Starts ptypair.c with its master opened at `ptmx`.
fn start_at(
    root: &std::path::Path,
    ptmx: &std::path::Path,
) -> (std::process::Child, std::fs::File, std::fs::File, [i32; 2]) {
    let exe = common::build("ptypair", root).expect("cc builds tests/progs/ptypair.c");
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let ctl = common::open_ctl(&root.join("ctl"));
    let prog = Command::new(&exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .arg(ptmx)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let mut ack = std::fs::File::open(root.join("ack")).unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program set up its pair");
    std::mem::forget(guard);
    let line = last_line(&root.join("out"));
    let pids: Vec<i32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    (prog, ctl, ack, [pids[0], pids[1]])
}

#[test]
fn a_pair_of_another_devpts_instance_comes_back_in_it_or_is_refused_once_unreachable() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::set_subreaper();
    let pts = Devpts::mount(&root.join("pts"));
    let ptmx = pts.0.join("ptmx");
    let (mut prog, mut ctl, mut ack, [c, g]) = start_at(root, &ptmx);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid, c, g]);
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&[c, g]);
    for p in [pid, c, g] {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }
    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let master = files
        .iter()
        .find_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Pty(p)) if p.master => Some(p.path.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(master, ptmx.display().to_string());

    let _guard = KillOnDrop(vec![pid, c, g]);
    let restore = common::restore(&img, pid);
    // G's slave is in our instance again.
    let links: Vec<std::path::PathBuf> = std::fs::read_dir(format!("/proc/{g}/fd"))
        .unwrap()
        .map(|e| std::fs::read_link(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        links.iter().any(|l| l.starts_with(&pts.0) && l != &ptmx),
        "{links:?}"
    );
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        last_line(&root.join("out")),
        "ok",
        "the restored program's own check: {}",
        std::fs::read_to_string(root.join("out")).unwrap()
    );
    std::io::Write::write_all(&mut ctl, b"q").unwrap();
    common::finish_restore(restore, 0);

    // Once the instance is detached, nothing could open a pair in it again: refused,
    // and the tree runs on with every byte.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pts = Devpts::mount(&root.join("pts"));
    let (mut prog, mut ctl, mut ack, [c, g]) = start_at(root, &pts.0.join("ptmx"));
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid, c, g]);
    pts.detach();
    let img = root.join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !img.exists(), "{err}");
    assert!(
        err.contains(&format!("pid {pid} fd 6: pseudo-terminal master"))
            && err.contains("devpts instance"),
        "{err}"
    );
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        last_line(&root.join("out")),
        "ok",
        "the tree's own check after the refusal: {}",
        std::fs::read_to_string(root.join("out")).unwrap()
    );
    std::io::Write::write_all(&mut ctl, b"q").unwrap();
    common::wait_child(&mut prog, "the program to exit");
}

#[test]
fn a_master_whose_slave_was_never_opened_in_the_tree_is_refused_and_the_tree_runs_on() {
    if !common::capable() || !common::have("python3") {
        return;
    }
    // The master alone; its slave never opened, so reading its queue would need a slave
    // opened (and closed) by the dump, which would leave the master hung up.
    let prog = "import os, sys\n\
        m = os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)\n\
        print('ready', m, flush=True)\n\
        sys.stdin.readline()\n\
        try:\n    os.read(m, 10); print('data')\n\
        except BlockingIOError:\n    print('still waiting for a slave')\n\
        except OSError as e:\n    print('errno', e.errno)\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", prog])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = child.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let fd: i32 = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let dumped = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&dumped.stderr);
    assert!(!dumped.status.success() && !img.exists(), "{err}");
    assert!(
        err.contains(&format!(
            "pid {pid} fd {fd}: pseudo-terminal master /dev/ptmx"
        )) && err.contains("no slave in the tree"),
        "{err}"
    );
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(
        line.trim(),
        "still waiting for a slave",
        "the master as it was"
    );
    common::wait_child(&mut child, "python3 to exit");
}

#[test]
fn a_packet_mode_status_byte_not_yet_read_is_refused_and_left_for_its_reader() {
    if !common::capable() || !common::have("python3") {
        return;
    }
    // Packet mode on, then the slave's input flushed: the master has a status byte
    // (TIOCPKT_FLUSHREAD) waiting, which no call could put back.
    let prog = "import os, sys, fcntl, termios\n\
        m, s = os.openpty()\n\
        fcntl.ioctl(m, termios.TIOCPKT, b'\\x01\\x00\\x00\\x00')\n\
        termios.tcflush(s, termios.TCIFLUSH)\n\
        print('ready', m, flush=True)\n\
        sys.stdin.readline()\n\
        print('status', os.read(m, 10)[0])\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", prog])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = child.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let fd: i32 = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let dumped = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&dumped.stderr);
    assert!(!dumped.status.success() && !img.exists(), "{err}");
    assert!(
        err.contains(&format!("pid {pid} fd {fd}: pseudo-terminal master"))
            && err.contains("packet-mode status byte"),
        "{err}"
    );
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(
        line.trim(),
        // TIOCPKT_FLUSHREAD (include/uapi/asm-generic/ioctls.h).
        "status 1",
        "the status byte is still there"
    );
    common::wait_child(&mut child, "python3 to exit");
}
