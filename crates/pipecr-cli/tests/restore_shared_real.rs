//! Real programs no one here wrote that share memory between processes, dumped in the
//! middle of their work (the dump kills them), restored, and finishing with the right
//! results, which they check themselves (tests/scripts/):
//!
//! - Python `multiprocessing`: a `Pool(2)`, `Process`es bumping a `Value` and an `Array`
//!   under a `Lock` (POSIX semaphores: `/dev/shm/sem.*` mapped and unlinked; the values
//!   in the multiprocessing heap, a `/dev/shm` file mapped and unlinked), a
//!   `shared_memory.SharedMemory` (a `/dev/shm` file mapped shared by every worker);
//! - a `multiprocessing.Manager` (its server process holds a dict, a list and a queue,
//!   reached over unix sockets) with a worker updating them;
//! - `sqlite3` in WAL mode, a writer and a reader process (the `-shm` index mapped
//!   shared by both).
//!
//! The program's stdout is a pipe to the test, outside the tree: `--inherit-fd`
//! connects the restored program to it again, so the test reads one stream whose
//! counters must go on where they were. It never sleeps: each line has a deadline.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{DEADLINE, KillOnDrop};
use pipecr_image::{Image, proto};

/// A program's stdout, read line by line with a deadline per line.
struct Lines {
    file: File,
    buf: Vec<u8>,
    seen: String,
}

impl Lines {
    /// The next line; `None` at end of file. Panics when none comes within DEADLINE.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                self.seen.push_str(&line);
                self.seen.push('\n');
                return Some(line);
            }
            assert!(
                common::readable_within(&self.file, DEADLINE),
                "no line within {DEADLINE:?}; so far:\n{}",
                self.seen
            );
            let mut chunk = [0u8; 4096];
            let n = self.file.read(&mut chunk).unwrap();
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Every complete line already written, without waiting.
    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            while self.buf.contains(&b'\n') {
                lines.push(self.line().unwrap());
            }
            if !common::readable_within(&self.file, std::time::Duration::ZERO) {
                return lines;
            }
            let mut chunk = [0u8; 4096];
            let n = self.file.read(&mut chunk).unwrap();
            if n == 0 {
                return lines;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The interpreter itself (`sys.executable`), not a wrapper such as pyenv's shims.
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs (.ci/run installs it)");
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs `python3 SCRIPT ARGS` in `dir`, reads its lines until `mid_work` says it is in
/// the middle of its work, dumps it (killing the tree), checks the image with
/// `check_image`, restores it with the same stdout pipe, and returns every line it
/// printed (before and after the dump, one stream) once it exited 0.
fn dump_mid_work(
    dir: &Path,
    script: &str,
    args: &[&str],
    mid_work: impl Fn(&str) -> bool,
    check_image: impl Fn(&Image),
) -> Vec<String> {
    let path = dir.join("script.py");
    std::fs::write(&path, script).unwrap();
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let write = File::from(write);
    let mut out = Lines {
        file: File::from(read),
        buf: Vec::new(),
        seen: String::new(),
    };
    let mut cmd = Command::new(python());
    cmd.arg(&path)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(File::create(dir.join("stderr")).unwrap());
    let mut prog = common::only_stdio(&mut cmd).spawn().unwrap();
    drop(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut lines = Vec::new();
    loop {
        let line = out.line().expect("the program works on");
        let done = mid_work(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    let img = dir.join("img");
    common::dump(pid, &img, &[]);
    common::wait_child(&mut prog, "the dumped root to be killed");
    let pids = common::saved_pids(&img);
    guard.0 = pids.clone();
    common::wait_until("every process of the dumped tree to be gone", || {
        pids.iter().all(|&p| common::state(p).is_none())
    });
    check_image(&Image::open(&img).unwrap());
    lines.extend(out.drain());
    let mut restore = common::restore_command(&img);
    restore.args([
        "--inherit-fd".to_owned(),
        format!("1=/proc/{}/fd/{}", std::process::id(), write.as_raw_fd()),
    ]);
    let restore = common::restore_started(&mut restore, pid);
    drop(write);
    while let Some(line) = out.line() {
        lines.push(line);
    }
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    let status = common::finish_restore(restore, 0);
    drop(status);
    assert!(stderr.is_empty(), "its stderr:\n{stderr}");
    lines
}

#[test]
fn python_multiprocessing_finishes_after_a_restore() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rounds = 40;
    let lines = dump_mid_work(
        dir.path(),
        include_str!("scripts/mp_shared.py"),
        &[&rounds.to_string()],
        |l| l == "tick 5 500",
        |image| {
            let objects: Vec<proto::MemObject> =
                image.read_records(pipecr_image::MEM_OBJECTS).unwrap();
            let deleted = |prefix: &str| {
                objects.iter().any(|o| {
                    o.kind == proto::MemObjectKind::DeletedFile as i32 && o.name.starts_with(prefix)
                })
            };
            assert!(
                deleted("/dev/shm/sem."),
                "the Lock's semaphore: {objects:#?}"
            );
            assert!(
                deleted("/dev/shm/pym-"),
                "the heap of Value and Array: {objects:#?}"
            );
            let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
            let psm = mms
                .iter()
                .flat_map(|m| &m.vmas)
                .filter(|v| {
                    v.kind == proto::VmaKind::FileShared as i32
                        && v.path.starts_with("/dev/shm/psm_")
                })
                .count();
            assert!(psm >= 1, "the SharedMemory mapped shared, by path");
            // Each semaphore object once, however many processes map it.
            let mut names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all, "{names:?}");
        },
    );
    // One stream: every round once, in order, then the program's own verdict.
    let ticks: Vec<String> = (1..=rounds)
        .map(|r| format!("tick {r} {}", r * 100))
        .collect();
    assert_eq!(lines[..rounds], ticks[..], "{lines:#?}");
    assert_eq!(lines[rounds..], ["done ok"], "{lines:#?}");
}

#[test]
fn python_multiprocessing_manager_finishes_after_a_restore() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rounds = 40;
    let lines = dump_mid_work(
        dir.path(),
        include_str!("scripts/mp_manager.py"),
        &[&rounds.to_string()],
        |l| l == "tick 5",
        |image| {
            let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
            let sockets = files
                .iter()
                .filter(|f| matches!(f.kind, Some(proto::open_file::Kind::UnixSocket(_))))
                .count();
            assert!(sockets >= 2, "the manager's connections: {files:#?}");
        },
    );
    // One stream: every round once, in order, then the program's own verdict.
    let ticks: Vec<String> = (1..=rounds).map(|r| format!("tick {r}")).collect();
    assert_eq!(lines[..rounds], ticks[..], "{lines:#?}");
    assert_eq!(lines[rounds..], ["done ok"], "{lines:#?}");
}

#[test]
fn sqlite_wal_writer_and_reader_finish_after_a_restore() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let lines = dump_mid_work(
        dir.path(),
        include_str!("scripts/sqlite_wal.py"),
        &[db.to_str().unwrap(), "500"],
        |l| l == "reader 200",
        |image| {
            let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
            let shm = format!("{}-shm", db.display());
            let mapping = mms
                .iter()
                .flat_map(|m| &m.vmas)
                .filter(|v| v.path == shm && v.kind == proto::VmaKind::FileShared as i32)
                .count();
            assert!(mapping >= 1, "the WAL index {shm} is mapped shared");
        },
    );
    let readers: Vec<&String> = lines.iter().filter(|l| l.starts_with("reader")).collect();
    let want: Vec<String> = (1..=5).map(|k| format!("reader {}", k * 100)).collect();
    assert_eq!(readers, want.iter().collect::<Vec<_>>(), "{lines:#?}");
    assert_eq!(
        lines.last().unwrap(),
        "done [0, 0] 500 125250 ok",
        "{lines:#?}"
    );
}
