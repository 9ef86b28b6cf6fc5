//! `pipecr restore` brings back what the processes of a tree share: a parent and its
//! child joined by a pipe that holds data and has the child blocked writing into it, and a
//! regular file whose offset both share.
//!
//! The program (tests/progs/pipeline.c): the child writes numbered lines into the pipe,
//! the parent reads them on command. The test lets the pipe fill until the child blocks,
//! dumps (leaving the tree running), kills both, restores, and checks that each restored
//! process has exactly its saved descriptor numbers, that both ends are one pipe again,
//! that the parent then reads every remaining line in order (the bytes in flight came
//! back, the blocked writer went on), and that the child's write to the shared file moved
//! the parent's offset.

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

fn fifo(root: &Path, name: &str) {
    assert!(
        Command::new("mkfifo")
            .arg(root.join(name))
            .status()
            .unwrap()
            .success()
    );
}

/// The descriptor numbers of `pid`, sorted, with what each points at.
fn fds(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(e.path()).unwrap();
            (n, target.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    fds
}

/// What `fd` of the process points at.
fn target(fds: &[(i32, String)], fd: i32) -> &str {
    &fds.iter().find(|(n, _)| *n == fd).unwrap().1
}

#[test]
fn pipe_and_shared_offset_come_back_shared() {
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/pipeline.c");
    let exe = root.join("pipeline");
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
    for name in ["ctl", "ack"] {
        fifo(root, name);
    }
    // Read-write: never "no reader", and kept open while the program is gone.
    let mut ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("ctl"))
        .unwrap();
    rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(std::process::id() as i32))
        .unwrap();
    let mut prog = Command::new(&exe)
        .args(["shared", "ctl", "ack"].iter().map(|n| root.join(n)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![ppid]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let children = std::fs::read_to_string(format!("/proc/{ppid}/task/{ppid}/children")).unwrap();
    let cpid: i32 = children.trim().parse().unwrap();
    guard.0.push(cpid);
    // Some lines read; the pipe full; the child blocked in write().
    ctl.write_all(b"f").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges 'f'");
    let (parent_fds, child_fds) = (fds(ppid), fds(cpid));

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

    // Exactly the saved descriptor numbers, nothing parked or leaked.
    let (parent_after, child_after) = (fds(ppid), fds(cpid));
    let numbers = |f: &[(i32, String)]| f.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    assert_eq!(
        numbers(&parent_after),
        numbers(&parent_fds),
        "{parent_after:?}"
    );
    assert_eq!(
        numbers(&child_after),
        numbers(&child_fds),
        "{child_after:?}"
    );
    // The pipe joins the two restored processes: the parent's read end (fd 4 after the
    // shared file at 3) and the child's write end (fd 5) are one pipe.
    let read_end = target(&parent_after, 4);
    let write_end = target(&child_after, 5);
    assert!(read_end.starts_with("pipe:"), "{parent_after:?}");
    assert_eq!(read_end, write_end, "{parent_after:?} {child_after:?}");
    assert_eq!(target(&parent_after, 3), target(&child_after, 3));

    // Every remaining line, in order; the child's "C\n" moved the parent's offset too.
    ctl.write_all(b"r").unwrap();
    let mut report = String::new();
    ack.read_to_string(&mut report).unwrap();
    assert_eq!(report, "next 20000 bad 0 pos 4 status 7\n");
    assert_eq!(
        std::fs::read_to_string(root.join("shared")).unwrap(),
        "P\nC\n"
    );
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored parent: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
