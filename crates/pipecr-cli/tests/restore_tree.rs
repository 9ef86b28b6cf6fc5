//! `pipecr restore` brings back a tree: a parent and the child it forked, both with their
//! PIDs and in-memory counters, the child still the parent's child (the parent's
//! `waitpid` returns the child's exit status after restore).
//!
//! The program (tests/progs/family.c) gives each process its own control and ack FIFOs
//! and output file, so the test drives each one with ready bytes only. The test process
//! makes itself a child subreaper so that the original child, orphaned when both are
//! killed after the dump, is reaped here and its PID is free again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

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

/// Kills PIDs on drop (restored processes are not our children).
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &p in &self.0 {
            if let Some(pid) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// One process's control and ack FIFOs and output file.
struct Ends {
    ctl: File,
    ack: File,
    out: std::path::PathBuf,
}

impl Ends {
    /// Sends one command byte, waits for the acknowledgement, returns the output so far.
    fn step(&mut self, cmd: u8) -> String {
        self.ctl.write_all(&[cmd]).unwrap();
        let mut b = [0u8; 1];
        self.ack
            .read_exact(&mut b)
            .expect("the program acknowledges the command");
        std::fs::read_to_string(&self.out).unwrap()
    }
}

fn fifo(root: &Path, name: &str) {
    assert!(
        Command::new("mkfifo")
            .arg(root.join(name))
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn parent_and_child_come_back_related() {
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/family.c");
    let exe = root.join("family");
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
            return;
        }
    }
    for name in ["ctl", "ack", "cctl", "cack"] {
        fifo(root, name);
    }
    let open_ctl = |name: &str| {
        // Read-write: never "no reader", and kept open while the program is gone.
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(root.join(name))
            .unwrap()
    };
    let (ctl, cctl) = (open_ctl("ctl"), open_ctl("cctl"));
    rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(std::process::id() as i32))
        .unwrap();
    let mut prog = Command::new(&exe)
        .args(
            ["out", "ctl", "ack", "cout", "cctl", "cack"]
                .iter()
                .map(|n| root.join(n)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![ppid]);
    let mut parent = Ends {
        ctl,
        ack: File::open(root.join("ack")).unwrap(),
        out: root.join("out"),
    };
    let mut child = Ends {
        ctl: cctl,
        ack: File::open(root.join("cack")).unwrap(),
        out: root.join("cout"),
    };
    let children = std::fs::read_to_string(format!("/proc/{ppid}/task/{ppid}/children")).unwrap();
    let cpid: i32 = children.trim().parse().unwrap();
    guard.0.push(cpid);
    parent.step(b'n');
    parent.step(b'n');
    assert_eq!(child.step(b'n'), "child 1\n");

    let img = root.join("img");
    let out = Command::new(PIPECR)
        .args([
            "dump",
            "--leave-running",
            "--read-handlers",
            "-t",
            &ppid.to_string(),
            "-D",
        ])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(guard);
    prog.wait().unwrap();
    // Orphaned when its parent died: ours to reap (we are a subreaper).
    let _ = rustix::process::waitpid(
        rustix::process::Pid::from_raw(cpid),
        rustix::process::WaitOptions::empty(),
    );

    let mut restore = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(vec![ppid, cpid]);
    let mut line = String::new();
    BufReader::new(restore.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = restore.wait_with_output().unwrap();
        panic!("restore failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(line.trim(), format!("restored pid {ppid}"));
    let stat = std::fs::read_to_string(format!("/proc/{cpid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let child_ppid: i32 = after_comm.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(child_ppid, ppid, "the restored child's parent");

    assert_eq!(parent.step(b'n'), "parent 1\nparent 2\nparent 3\n");
    assert_eq!(child.step(b'n'), "child 1\nchild 2\n");
    // The restored tree can be dumped again; its output files are put back as they were
    // at this dump before that image is restored below.
    let img2 = root.join("img2");
    let out = Command::new(PIPECR)
        .args([
            "dump",
            "--leave-running",
            "--read-handlers",
            "-t",
            &ppid.to_string(),
            "-D",
        ])
        .arg(&img2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "second dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved_out = std::fs::metadata(&parent.out).unwrap();
    child.ctl.write_all(b"q").unwrap();
    // The parent's waitpid returns the child's exit status: its count.
    assert_eq!(
        parent.step(b'w'),
        "parent 1\nparent 2\nparent 3\nchild exited 2\n"
    );
    parent.ctl.write_all(b"q").unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored parent: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // A failed restore leaves nothing behind. With the files as at the second dump but
    // without the executable, both processes are created and seized, and the areas mapped
    // from it cannot be restored: both are killed.
    let f = OpenOptions::new().write(true).open(&parent.out).unwrap();
    f.set_len(saved_out.len()).unwrap();
    f.set_modified(saved_out.modified().unwrap()).unwrap();
    drop(f);
    std::fs::remove_file(&exe).unwrap();
    for (image, what) in [
        (&img2, "could not be restored"),
        (&img, "changed since the dump"),
    ] {
        let out = Command::new(PIPECR)
            .args(["restore", "-D"])
            .arg(image)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("nothing was left running"), "{err}");
        assert!(err.contains(what), "{err}");
        eprintln!("refused as expected: {err}");
        for pid in [ppid, cpid] {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid}: {err}"
            );
        }
    }
}
