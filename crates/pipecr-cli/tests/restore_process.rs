//! `pipecr restore`: a dumped C program (dynamically linked) comes back with its PID and
//! continues its in-memory counter where it was.
//!
//! The program (tests/progs/counter.c) counts one step per byte read from a control FIFO,
//! prints the count to a file it made its stdout, and acknowledges on a second FIFO, so
//! the test drives it with ready bytes only. The restore runs in the `pipecr` binary: the
//! test process is multi-threaded, and the restored process's child side allocates.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const PIPECR: &str = env!("CARGO_BIN_EXE_pipecr");

fn has_caps() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    let caps = u64::from_str_radix(hex, 16).unwrap();
    // CAP_SYS_PTRACE (19) and CAP_CHECKPOINT_RESTORE (40) or CAP_SYS_ADMIN (21).
    caps & (1 << 19) != 0 && caps & ((1 << 40) | (1 << 21)) != 0
}

/// Kills a PID on drop (the restored process is not our child).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    prog: Child,
    ctl: File,
    ack: File,
}

/// Builds the counter, starts it and takes it three steps.
fn start() -> Option<Setup> {
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/counter.c");
    let exe = root.join("counter");
    match Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("skipped: cannot build the test program with cc: {other:?}");
            return None;
        }
    }
    for fifo in ["ctl", "ack"] {
        assert!(
            Command::new("mkfifo")
                .arg(root.join(fifo))
                .status()
                .unwrap()
                .success()
        );
    }
    // Read-write: our end keeps the FIFO open while the program is gone, and a write
    // never meets "no reader".
    let mut ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("ctl"))
        .unwrap();
    let prog = Command::new(&exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(prog.id() as i32);
    let mut ack = File::open(root.join("ack")).unwrap();
    for _ in 0..3 {
        step(&mut ctl, &mut ack);
    }
    std::mem::forget(_guard);
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

fn dump(pid: u32, img: &Path) {
    dump_with(pid, img, &["--leave-running"]);
}

fn dump_with(pid: u32, img: &Path, options: &[&str]) {
    let out = Command::new(PIPECR)
        .arg("dump")
        .args(options)
        .args(["-t", &pid.to_string(), "-D"])
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn restored_counter_continues_with_its_pid() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    // The default: the tree is killed once the image is safe.
    dump_with(pid, &img, &[]);
    let status = s.prog.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the dump kills the tree: {status:?}"
    );

    let mut restore = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(pid as i32);
    let mut line = String::new();
    BufReader::new(restore.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = restore.wait_with_output().unwrap();
        panic!("restore failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(line.trim(), format!("restored pid {pid}"));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, s.root.join("counter"));

    step(&mut s.ctl, &mut s.ack);
    step(&mut s.ctl, &mut s.ack);
    assert_eq!(
        std::fs::read_to_string(s.root.join("out")).unwrap(),
        "1\n2\n3\n4\n5\n"
    );
    s.ctl.write_all(b"q").unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored program: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn restore_refuses_a_pid_in_use() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    dump(pid, &img);
    // The original still runs: its PID is taken.
    let out = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {pid} is in use")), "{err}");
    // Nothing was created, and the original is untouched.
    step(&mut s.ctl, &mut s.ack);
    s.ctl.write_all(b"q").unwrap();
    assert!(s.prog.wait().unwrap().success());
}
