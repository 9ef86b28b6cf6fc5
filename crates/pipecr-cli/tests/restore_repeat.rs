//! `pipecr restore`, again and again: one process dumped and restored 10 times in a row,
//! `--leave-running` dumps of a program that counts on its own, each restorable, and a
//! real `sleep` back in its `clock_nanosleep` with the time it had left.
//!
//! Restores run in the `pipecr` binary in the foreground (not `-d`): it is the restored
//! process's parent and reaps it once the test kills it, so the PID is free again for the
//! next restore (a detached process would be reparented, and a reaper that never comes
//! would leave a zombie holding the PID).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PIPECR: &str = env!("CARGO_BIN_EXE_pipecr");

/// How long a condition the test waits for may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(20);

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
        kill(self.0);
    }
}

fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Builds `tests/progs/NAME.c` into `dir`; `None` (test skipped) without a C compiler.
fn build(name: &str, dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/progs/{name}.c"));
    let exe = dir.join(name);
    match Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => Some(exe),
        other => {
            eprintln!("skipped: cannot build {name}.c with cc: {other:?}");
            None
        }
    }
}

/// Waits until `cond` holds, or panics with `what` after [`DEADLINE`]. For conditions
/// the test cannot be told about (a file growing, a process entering a syscall).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn dump(pid: u32, img: &Path) {
    let out = Command::new(PIPECR)
        .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump of {pid} into {}: {}",
        img.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `pipecr restore -D img` in the foreground and returns once it printed
/// `restored pid PID`.
fn restore(img: &Path, pid: u32) -> Child {
    let mut restore = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(restore.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = restore.wait_with_output().unwrap();
        panic!(
            "restore of {} failed: {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(line.trim(), format!("restored pid {pid}"));
    restore
}

/// Kills the restored `pid` and waits for its `pipecr restore`, which reaps it and
/// reports the kill as 128 + SIGKILL.
fn kill_restored(pid: u32, restore: Child) {
    kill(pid as i32);
    let out = restore.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "pipecr restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn step(ctl: &mut File, ack: &mut File) {
    ctl.write_all(b"n").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the step");
}

#[test]
fn dumped_and_restored_ten_times_in_a_row() {
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("counter", root) else {
        return;
    };
    for fifo in ["ctl", "ack"] {
        assert!(
            Command::new("mkfifo")
                .arg(root.join(fifo))
                .status()
                .unwrap()
                .success()
        );
    }
    // Read-write: our end keeps the FIFO open while the program is gone.
    let mut ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("ctl"))
        .unwrap();
    let mut prog = Command::new(&exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id();
    let _guard = KillOnDrop(pid as i32);
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
    let out = running.unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "last restored program: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
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
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
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
    let _guard = KillOnDrop(pid as i32);
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
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
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
    let _guard = KillOnDrop(pid as i32);
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
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
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
    let _guard = KillOnDrop(pid as i32);
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
