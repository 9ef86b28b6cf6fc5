//! `pipecr restore`, again and again: one process dumped and restored 10 times in a row,
//! `--leave-running` dumps of a program that counts on its own, each restorable, and a
//! real `sleep` back in its `clock_nanosleep` with the time it had left.
//!
//! Restores run in the `pipecr` binary in the foreground (not `-d`): it is the restored
//! process's parent and reaps it once the test kills it, so the PID is free again for the
//! next restore (a detached process would be reparented, and a reaper that never comes
//! would leave a zombie holding the PID).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, build, capable, finish_restore, kill, mkfifo, open_ctl, wait_until};

/// `pipecr dump --leave-running`.
fn dump(pid: u32, img: &Path) {
    common::dump(pid as i32, img, &["--leave-running"]);
}

/// Starts `pipecr restore -D img` in the foreground and returns once it printed
/// `restored pid PID`.
fn restore(img: &Path, pid: u32) -> Child {
    common::restore(img, pid as i32)
}

/// Kills the restored `pid` and waits for its `pipecr restore`, which reaps it and
/// reports the kill as 128 + SIGKILL.
fn kill_restored(pid: u32, restore: Child) {
    kill(pid as i32);
    finish_restore(restore, 128 + libc::SIGKILL);
}

fn step(ctl: &mut File, ack: &mut File) {
    ctl.write_all(b"n").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the step");
}

#[test]
fn dumped_and_restored_ten_times_in_a_row() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("counter", root) else {
        return;
    };
    for fifo in ["ctl", "ack"] {
        mkfifo(&root.join(fifo));
    }
    // Read-write: our end keeps the FIFO open while the program is gone.
    let mut ctl = open_ctl(&root.join("ctl"));
    let mut prog = Command::new(&exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id();
    let _guard = KillOnDrop(vec![pid as i32]);
    let mut ack = File::open(root.join("ack")).unwrap();
    step(&mut ctl, &mut ack);

    let mut expected = String::from("1\n");
    let mut running: Option<Child> = None;
    for round in 0..10 {
        let img = root.join(format!("img{round}"));
        // The first round dumps the original, every later one the copy restored by the
        // round before: an image of a restored process must restore as well.
        dump(pid, &img);
        match running.take() {
            None => {
                prog.kill().unwrap();
                prog.wait().unwrap();
            }
            Some(restore) => kill_restored(pid, restore),
        }
        let restore = restore(&img, pid);
        step(&mut ctl, &mut ack);
        expected.push_str(&format!("{}\n", round + 2));
        assert_eq!(
            std::fs::read_to_string(root.join("out")).unwrap(),
            expected,
            "round {round}"
        );
        running = Some(restore);
    }
    // The tenth copy exits normally when told to.
    ctl.write_all(b"q").unwrap();
    finish_restore(running.unwrap(), 0);
    assert_eq!(
        std::fs::read_to_string(root.join("out")).unwrap(),
        (1..=11).map(|n| format!("{n}\n")).collect::<String>()
    );
}

/// Reads the ticker's counter at `addr` in `pid`'s memory.
fn counter(pid: u32, addr: u64) -> u64 {
    use std::os::unix::fs::FileExt as _;
    let mem = File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut b = [0u8; 8];
    mem.read_exact_at(&mut b, addr).unwrap();
    u64::from_ne_bytes(b)
}

#[test]
fn dumps_every_100_ms_of_a_running_program_each_restore() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("ticker", root) else {
        return;
    };
    let addr_file = root.join("addr");
    let mut prog = Command::new(&exe)
        .arg(&addr_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id();
    let _guard = KillOnDrop(vec![pid as i32]);
    wait_until("the ticker to tell its counter's address", || {
        std::fs::read_to_string(&addr_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let addr = std::fs::read_to_string(&addr_file).unwrap();
    let addr = u64::from_str_radix(addr.trim(), 16).unwrap();
    wait_until("the ticker to count", || counter(pid, addr) >= 10);

    // The counter just before each dump: the image holds this value or a larger one.
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(counter(pid, addr));
        dump(pid, &root.join(format!("img{i}")));
        // Pacing, not synchronisation: the dumps are meant to be spread over the run
        // (the issue asks for one every 100 ms); nothing waits on this sleep.
        std::thread::sleep(Duration::from_millis(100));
    }
    prog.kill().unwrap();
    prog.wait().unwrap();
    assert!(
        before.windows(2).all(|w| w[0] < w[1]),
        "the program counted between dumps: {before:?}"
    );

    for i in 0..before.len() {
        let restore = restore(&root.join(format!("img{i}")), pid);
        let resumed = counter(pid, addr);
        // From this image, not from scratch and not from a later one: the copy is read
        // as soon as it runs, well before it could count through the ~100 ms between
        // two dumps.
        assert!(
            before[i] <= resumed,
            "image {i}: counter was {} before the dump, the copy is at {resumed}",
            before[i]
        );
        if let Some(&next) = before.get(i + 1) {
            assert!(
                resumed < next,
                "image {i}: the copy is at {resumed}, the next dump was taken at {next}"
            );
        }
        wait_until("the restored copy to count on", || {
            counter(pid, addr) >= resumed + 20
        });
        kill_restored(pid, restore);
    }
}

/// The syscall number the thread is blocked in (`/proc/PID/syscall`), if any.
fn blocked_in(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

const SYS_CLOCK_NANOSLEEP: u64 = 230;

#[test]
fn sleep_1000_is_back_in_clock_nanosleep() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut prog = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id();
    let _guard = KillOnDrop(vec![pid as i32]);
    wait_until("sleep to sleep", || {
        blocked_in(pid) == Some(SYS_CLOCK_NANOSLEEP)
    });
    let img = dir.path().join("img");
    dump(pid, &img);
    prog.kill().unwrap();
    prog.wait().unwrap();

    let restore = restore(&img, pid);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "sleep\n"
    );
    wait_until("the restored sleep to sleep again", || {
        blocked_in(pid) == Some(SYS_CLOCK_NANOSLEEP)
    });
    kill_restored(pid, restore);
}

#[test]
fn sleep_keeps_its_remaining_time() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spawned = Instant::now();
    let mut prog = Command::new("sleep")
        .arg("4")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id();
    let _guard = KillOnDrop(vec![pid as i32]);
    wait_until("sleep to sleep", || {
        blocked_in(pid) == Some(SYS_CLOCK_NANOSLEEP)
    });
    // Not synchronisation: this is the part of the sleep the copy must not sleep again.
    std::thread::sleep(Duration::from_secs(2));
    let img = dir.path().join("img");
    dump(pid, &img);
    let remaining = Duration::from_secs(4).saturating_sub(spawned.elapsed());
    prog.kill().unwrap();
    prog.wait().unwrap();

    let restored = Instant::now();
    let restore = restore(&img, pid);
    let out = restore.wait_with_output().unwrap();
    let slept = restored.elapsed();
    assert!(
        out.status.success(),
        "restored sleep: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // At least what remained when the dump ended; well under the full 4 s it would take
    // if the sleep restarted from scratch (about 2 s are expected).
    assert!(
        slept + Duration::from_millis(100) >= remaining && slept < Duration::from_secs(3),
        "slept {slept:?} after restore; {remaining:?} remained at the dump"
    );
}
