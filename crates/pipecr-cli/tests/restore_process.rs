//! `pipecr restore`: a dumped C program (dynamically linked) comes back with its PID and
//! continues its in-memory counter where it was.
//!
//! The program (tests/progs/counter.c) counts one step per byte read from a control FIFO,
//! prints the count to a file it made its stdout, and acknowledges on a second FIFO, so
//! the test drives it with ready bytes only. The restore runs in the `pipecr` binary: the
//! test process is multi-threaded, and the restored process's child side allocates.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Child;

use common::{KillOnDrop, build, capable, dump, finish_restore, restore, restore_command};

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    prog: Child,
    ctl: File,
    ack: File,
}

/// Builds the counter, starts it and takes it three steps.
fn start() -> Option<Setup> {
    if !capable() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let exe = build("counter", &root)?;
    let (prog, mut ctl, mut ack) = common::start_driven(&exe, &root);
    let guard = KillOnDrop(vec![prog.id() as i32]);
    for _ in 0..3 {
        step(&mut ctl, &mut ack);
    }
    std::mem::forget(guard);
    assert_eq!(
        std::fs::read_to_string(root.join("out")).unwrap(),
        "1\n2\n3\n"
    );
    Some(Setup {
        _dir: dir,
        root,
        prog,
        ctl,
        ack,
    })
}

fn step(ctl: &mut File, ack: &mut File) {
    ctl.write_all(b"n").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the step");
}

#[test]
fn restored_counter_continues_with_its_pid() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    // The default: the tree is killed once the image is safe.
    dump(pid as i32, &img, &[]);
    let status = s.prog.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the dump kills the tree: {status:?}"
    );

    let restore = restore(&img, pid as i32);
    let _guard = KillOnDrop(vec![pid as i32]);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, s.root.join("counter"));

    step(&mut s.ctl, &mut s.ack);
    step(&mut s.ctl, &mut s.ack);
    assert_eq!(
        std::fs::read_to_string(s.root.join("out")).unwrap(),
        "1\n2\n3\n4\n5\n"
    );
    s.ctl.write_all(b"q").unwrap();
    finish_restore(restore, 0);
}

#[test]
fn restore_refuses_a_pid_in_use() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    dump(pid as i32, &img, &["--leave-running"]);
    // The original still runs: its PID is taken.
    let out = restore_command(&img).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {pid} is in use")), "{err}");
    // Nothing was created, and the original is untouched.
    step(&mut s.ctl, &mut s.ack);
    s.ctl.write_all(b"q").unwrap();
    assert!(s.prog.wait().unwrap().success());
}
