//! `pipecr dump --leave-running --snapshot` killed while it reads a snapshot: the
//! snapshot (a fork of the process, see `pipecr::snapshot`) dies with it and never runs,
//! and the process runs on untouched.
//!
//! tests/progs/memhog.c holds 1 GiB of patterned memory, so reading the snapshot takes
//! long enough to kill the dump meanwhile. The test is a subreaper, so the snapshot,
//! orphaned once its intermediate parent is reaped, is our child: we see it appear, and
//! reap it once it died.

mod common;

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::*;

/// The `TracerPid:` of `pid`, `None` once it is gone.
fn tracer(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

#[test]
fn a_killed_snapshot_dump_leaves_no_copy_running() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = build("memhog", dir.path()) else {
        return;
    };
    set_subreaper();
    let mut ctl = Ctl::new(dir.path(), "m");
    let mut hog = Command::new(&exe)
        .arg(dir.path().join("m.ctl"))
        .arg(dir.path().join("m.ack"))
        .args(["1024", "1024", "1", "0"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = hog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    ctl.connect();
    let mut addr = [0u8; 17];
    ctl.ack.as_mut().unwrap().read_exact(&mut addr).unwrap();
    if !seccomp_free(pid) {
        eprintln!("skipped: the program runs under seccomp, so no snapshot is taken");
        kill(pid);
        let _ = hog.wait();
        return;
    }

    let img = dir.path().join("img");
    let mut dump = Command::new(PIPECR)
        .args([
            "dump",
            "--leave-running",
            "--read-handlers",
            "--snapshot",
            "-t",
        ])
        .arg(pid.to_string())
        .arg("-D")
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dumper = dump.id() as i32;
    let me = std::process::id() as i32;
    let mut copy = 0;
    // Killed while it injects the fork, a dump damages (or, under EXITKILL, kills) the
    // process, as --read-handlers warns. Once the tree runs again, nothing can.
    wait_until(
        "the snapshot to come to us and the tree to run again",
        || {
            copy = children(me)
                .into_iter()
                .find(|&c| c != pid && c != dumper && comm(c).as_deref() == Some("memhog"))
                .unwrap_or(0);
            copy != 0 && tracer(pid) == Some(0)
        },
    );
    // The copy is stopped under ptrace, never running.
    assert_eq!(state(copy), Some('t'), "the snapshot {copy}");

    kill(dumper);
    assert_eq!(dump.wait().unwrap().signal(), Some(libc::SIGKILL));
    // PTRACE_O_EXITKILL: the copy died with its tracer.
    let status = rustix::process::waitpid(
        rustix::process::Pid::from_raw(copy),
        rustix::process::WaitOptions::empty(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        status.1.terminating_signal(),
        Some(libc::SIGKILL),
        "the snapshot"
    );
    assert!(!img.exists(), "no image from a killed dump");

    // The process runs on, its memory intact, with no child of ours in it.
    assert!(children(pid).is_empty());
    ctl.step(b'v').unwrap();
    ctl.send(b'q');
    assert!(hog.wait().unwrap().success());
}
