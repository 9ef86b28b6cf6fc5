//! Real programs, not written for pipecr, dumped, killed and restored, continue their
//! computation where they were (they do not start over):
//!
//! - python3 with three threads incrementing counters under a lock, the main thread
//!   reporting them on each byte read from a control FIFO;
//! - a `sh` loop counting the lines it reads from a FIFO, answering each with its count.
//!
//! Each waits for reports only (no sleeps). Skipped, saying why, without the
//! capabilities or the interpreter.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{KillOnDrop, PIPECR};

/// A temporary directory with the FIFOs `ctl` (opened read-write here, so the program's
/// open does not block) and `ack`.
fn fifos() -> (tempfile::TempDir, PathBuf, File) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let ctl = common::open_ctl(&root.join("ctl"));
    (dir, root, ctl)
}

/// Dumps `prog` (left running for the dump, then killed here) and restores it: returns
/// the running `pipecr restore`.
fn dump_kill_restore(prog: &mut Child, img: &Path) -> Child {
    let pid = prog.id();
    let out = Command::new(PIPECR)
        .args(["dump", "--leave-running", "--read-handlers", "-t"])
        .arg(pid.to_string())
        .arg("-D")
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    prog.kill().unwrap();
    prog.wait().unwrap();
    common::restore(img, pid as i32)
}

fn finished(restore: Child) {
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored program: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

const COUNTERS_PY: &str = r#"
import os, sys, threading

out_path, ctl_path, ack_path = sys.argv[1:4]
lock = threading.Lock()
counts = [0, 0, 0]


def work(i):
    while True:
        with lock:
            counts[i] += 1


for i in range(3):
    threading.Thread(target=work, args=(i,), daemon=True).start()
out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
ctl = os.open(ctl_path, os.O_RDONLY)
ack = os.open(ack_path, os.O_WRONLY)
while True:
    c = os.read(ctl, 1)
    if c != b"r":
        os._exit(0 if c == b"q" else 3)
    with lock:
        snap = list(counts)
    os.write(out, ("%d %d %d\n" % tuple(snap)).encode())
    os.write(ack, b"a")
"#;

/// Asks for one report of the three counters.
fn counters(root: &Path, ctl: &mut File, ack: &mut File) -> [u64; 3] {
    ctl.write_all(b"r").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program reports");
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    let v: Vec<u64> = out
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    v.try_into().unwrap()
}

/// Reports until the sum of the counters passes `above` (each report is one round trip
/// with the program, no sleep); `None` after many reports without progress.
fn progress(root: &Path, ctl: &mut File, ack: &mut File, above: u64) -> Option<[u64; 3]> {
    (0..100_000)
        .map(|_| counters(root, ctl, ack))
        .find(|c| c.iter().sum::<u64>() > above)
}

#[test]
fn python_threads_continue_counting() {
    if !common::capable() {
        return;
    }
    // The interpreter itself, not a wrapper script (pyenv's shims are).
    let python = match Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        other => {
            eprintln!("skipped: no python3: {other:?}");
            return;
        }
    };
    let (_dir, root, mut ctl) = fifos();
    std::fs::write(root.join("counters.py"), COUNTERS_PY).unwrap();
    let mut prog = Command::new(python.trim())
        .arg(root.join("counters.py"))
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let before = progress(&root, &mut ctl, &mut ack, 0).expect("the threads count");
    let img = root.join("img");
    let restore = dump_kill_restore(&mut prog, &img);
    // The same PID again, now the restored process: the guard stays.
    let _guard = guard;
    // Where they were, not from zero: every counter at least as far as before the dump,
    // and all four threads at work (the three counting, the main one reporting).
    let after = counters(&root, &mut ctl, &mut ack);
    for i in 0..3 {
        assert!(after[i] >= before[i], "{after:?} after, {before:?} before");
    }
    let sum = after.iter().sum::<u64>();
    let later = progress(&root, &mut ctl, &mut ack, sum).expect("the restored threads count");
    assert!(later.iter().sum::<u64>() > sum);
    ctl.write_all(b"q").unwrap();
    finished(restore);
}

#[test]
fn shell_loop_continues_its_count() {
    if !common::capable() {
        return;
    }
    let (_dir, root, mut ctl) = fifos();
    // The count lives only in the shell's memory.
    let script = "exec 3<ctl 4>ack; i=0; while read -r c <&3; do \
                  [ \"$c\" = q ] && exit 0; i=$((i+1)); echo \"$i\" >&4; done; exit 3";
    let mut prog = Command::new("sh")
        .args(["-c", script])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let mut ack = BufReader::new(File::open(root.join("ack")).unwrap());
    let mut count = |ctl: &mut File| {
        ctl.write_all(b"n\n").unwrap();
        let mut line = String::new();
        ack.read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    for want in ["1", "2", "3"] {
        assert_eq!(count(&mut ctl), want);
    }
    let img = root.join("img");
    let restore = dump_kill_restore(&mut prog, &img);
    // The same PID again, now the restored process: the guard stays.
    let _guard = guard;
    assert_eq!(count(&mut ctl), "4");
    assert_eq!(count(&mut ctl), "5");
    ctl.write_all(b"q\n").unwrap();
    finished(restore);
}
