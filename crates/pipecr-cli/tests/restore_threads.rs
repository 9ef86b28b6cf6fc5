//! `pipecr restore` of a multi-threaded C program (tests/progs/threads.c): four worker
//! threads, each with its own counter in memory and `__thread` variables, blocked in a
//! futex wait (a pthread barrier) at dump time, and the main thread blocked in `read` on a
//! control FIFO. After restore the same TIDs exist, every counter continues where it was,
//! the thread-local values are each thread's own, and the threads compute for a while on
//! both cores, yielding and reading their CPU from their rseq areas, without a fault; at
//! the end the main thread joins the workers (their `clear_child_tid` came back: the dump
//! runs with `--read-handlers`, which reads it) and exits 0.
//!
//! The test drives the program with ready bytes only (one command byte, one ack byte per
//! step; see the program). The restore runs in the `pipecr` binary.

mod common;

use common::step;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{KillOnDrop, PIPECR};

/// One step: a command byte, then wait for the ack.
/// The last report line: (tids, counters, errors).
fn last_report(out: &Path) -> (Vec<i32>, Vec<u64>, u32) {
    let text = std::fs::read_to_string(out).unwrap();
    let line = text.lines().last().expect("a report line");
    let parts: Vec<&str> = line.split('|').collect();
    assert_eq!(parts.len(), 3, "report line {line:?}");
    let tids = parts[0]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    let counters = parts[1]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    (tids, counters, parts[2].trim().parse().unwrap())
}

fn tasks(pid: u32) -> Vec<i32> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    tids.sort_unstable();
    tids
}

#[test]
fn restored_threads_keep_tids_counters_tls_and_rseq() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("threads", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let out = root.join("out");
    let pid = prog.id();
    let guard = KillOnDrop(vec![pid as i32]);
    // The ack of the start: every worker has its TID published.
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap();
    // Counters 3 each, some work done before the dump.
    for cmd in [b'n', b'n', b'w', b'n'] {
        step(&mut ctl, &mut ack, cmd);
    }
    let (tids, counters, errors) = last_report(&out);
    assert_eq!(counters, vec![3; 4]);
    assert_eq!(errors, 0);
    let mut all = tids.clone();
    all.push(pid as i32);
    all.sort_unstable();
    assert_eq!(tasks(pid), all);

    let img = root.join("img");
    let dumped = Command::new(PIPECR)
        .args([
            "dump",
            "--leave-running",
            "--read-handlers",
            "-t",
            &pid.to_string(),
            "-D",
        ])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        dumped.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    prog.kill().unwrap();
    prog.wait().unwrap();
    std::mem::forget(guard);

    let _guard = KillOnDrop(vec![pid as i32]);
    let mut restore = common::restore(&img, pid as i32);
    assert_eq!(tasks(pid), all, "the same TIDs after restore");

    // From the dumped state: 3 each.
    step(&mut ctl, &mut ack, b'n');
    let (after_tids, counters, errors) = last_report(&out);
    assert_eq!(after_tids, tids);
    assert_eq!(counters, vec![4; 4]);
    assert_eq!(errors, 0);
    // A while on both cores: each step is every worker computing and yielding.
    for _ in 0..8 {
        step(&mut ctl, &mut ack, b'w');
    }
    step(&mut ctl, &mut ack, b'n');
    let (_, counters, errors) = last_report(&out);
    assert_eq!(counters, vec![5; 4]);
    assert_eq!(errors, 0, "a thread lost its TLS, TID or rseq area");
    assert_eq!(tasks(pid), all);
    ctl.write_all(b"q").unwrap();
    // A join that never returns (no clear_child_tid) would hang: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    while restore.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the restored program did not exit: its pthread_join hangs?"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = restore.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "restored program: {:?} {}",
        done.status,
        String::from_utf8_lossy(&done.stderr)
    );
}

/// A thread's ID taken by another process refuses the restore before anything is
/// created, naming the ID; once it is free the same image restores.
#[test]
fn a_thread_id_in_use_refuses_the_restore_before_anything_exists() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("threads", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let out = root.join("out");
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap();
    step(&mut ctl, &mut ack, b'n');
    let (tids, _, _) = last_report(&out);
    let img = root.join("img");
    common::dump(pid, &img, &["--leave-running"]);
    prog.kill().unwrap();
    prog.wait().unwrap();
    std::mem::forget(guard);

    // A process of ours takes the last worker's TID. The kernel frees a killed
    // thread's ID a moment after its process can be reaped: until then the ID is
    // neither usable (EEXIST) nor visible in /proc, so the take is tried again.
    let taken = *tids.last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        match pipecr::sys::clone3::clone3_with_tid(0, libc::SIGCHLD, &[taken]) {
            Ok(None) => {
                // A copy of one thread of a multi-threaded test: raw system calls only.
                let _ = pipecr::sys::fd::close_all_except(&[]);
                loop {
                    rustix::event::pause();
                }
            }
            Ok(Some(p)) => break p,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && Instant::now() < deadline => {
                std::thread::yield_now();
            }
            Err(e) => panic!("cannot take tid {taken}: {e}"),
        }
    };
    let refused = common::restore_command(&img).output().unwrap();
    assert_eq!(refused.status.code(), Some(5), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&format!("pid {taken} is in use")), "{err}");
    assert!(err.contains("nothing was restored"), "{err}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the refused restore created pid {pid}"
    );
    common::kill(taken);
    let _ = rustix::process::waitpid(Some(holder), rustix::process::WaitOptions::empty());

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    let mut all = tids.clone();
    all.push(pid);
    all.sort_unstable();
    assert_eq!(tasks(pid as u32), all, "the same TIDs after restore");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}
