//! Pipes whose other side no process holds any more, and the status flags of pipe ends
//! handed across processes: a parent and its child (`progs/peerless.c`) sharing ends from
//! `pipe()` and `pipe2(O_NONBLOCK)` with bytes in them, an end opened again through
//! `/proc`, the read end of a pipe whose writer was closed (as `make` holds one) and the
//! write end of a pipe whose reader was closed. Dumped (killed) and restored with no
//! option: every end has the flags it had (`F_GETFL` and fdinfo, seen by the processes
//! themselves), the reader gets the bytes then end of file, the writer `EPIPE`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{
    KillOnDrop, build, capable, children, dump, finish_restore, mkfifo, only_stdio, reap, restore,
    set_subreaper,
};

#[test]
fn pipes_whose_peer_was_closed_and_pipe_end_flags_come_back_exactly() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("peerless", root) else {
        return;
    };
    mkfifo(&root.join("go"));
    set_subreaper();
    let mut prog = only_stdio(&mut Command::new(&exe))
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut line = String::new();
    BufReader::new(prog.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let [cpid] = children(pid)[..] else {
        panic!("one child: {:?}", children(pid))
    };
    guard.0.push(cpid);

    let img = root.join("img");
    dump(pid, &img, &[]);
    drop(guard);
    prog.wait().unwrap();
    reap(&[cpid]);

    // No --inherit-fd: the pipe whose writer was closed leads nowhere.
    let restore = restore(&img, pid);
    let _guard = KillOnDrop(vec![pid, cpid]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("go"))
        .unwrap()
        .write_all(b"gg")
        .unwrap();
    finish_restore(restore, 0);

    for p in [pid, cpid] {
        let before = std::fs::read_to_string(root.join(format!("before.{p}"))).unwrap();
        let after = std::fs::read_to_string(root.join(format!("after.{p}"))).unwrap();
        assert_eq!(before.lines().count(), 8, "{before}");
        let mut after = after.lines();
        for want in before.lines() {
            assert_eq!(after.next(), Some(want), "pid {p}");
        }
        let rest: Vec<&str> = after.collect();
        if p == pid {
            assert_eq!(rest, ["tail tail eof", "write EPIPE"]);
        } else {
            assert!(rest.is_empty(), "{rest:?}");
        }
    }
}
