//! Helpers shared by the integration tests: capabilities, building the C programs of
//! `tests/progs/`, FIFO ready bytes, running `pipecr dump` and `pipecr restore`, and
//! waiting for a process condition through /proc with a deadline.
//!
//! Each test binary uses only some of them.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PIPECR: &str = env!("CARGO_BIN_EXE_pipecr");

/// How long a condition the test waits for may take before the test gives up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// This process's effective capability set (`CapEff` of /proc/self/status).
pub fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// CAP_SYS_PTRACE (19) and CAP_CHECKPOINT_RESTORE (40) or CAP_SYS_ADMIN (21).
pub fn has_caps() -> bool {
    let caps = effective_caps();
    caps & (1 << 19) != 0 && caps & ((1 << 40) | (1 << 21)) != 0
}

/// `has_caps`, saying why the test is skipped when not. Also marks every descriptor this
/// process inherited above 2 close-on-exec: the programs a test starts and dumps may
/// hold only what they open themselves, not what the test runner leaked to the test (a
/// job server's pipe, say), which would lead outside the dumped tree.
pub fn capable() -> bool {
    pipecr::sys::fd::cloexec_from(3).unwrap();
    let ok = has_caps();
    if !ok {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
    }
    ok
}

/// Kills PIDs on drop: what a failed test leaves running (restored processes are not
/// our children).
pub struct KillOnDrop(pub Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_tree(&self.0);
    }
}

pub fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Builds `tests/progs/NAME.c` into `dir`; `None` (test skipped, reason printed) without a
/// working C compiler.
pub fn build(name: &str, dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/progs/{name}.c"));
    let exe = dir.join(name);
    // -pthread: some programs run threads; harmless for the others.
    match Command::new("cc")
        .args(["-O1", "-pthread", "-o"])
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

/// `which`: whether `prog` runs (for tests of real programs such as gzip or python3).
pub fn have(prog: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: {prog} is not installed");
    }
    ok
}

/// Kills every process of `pids` at once: all stopped first (SIGSTOP), then killed, so
/// that none runs on seeing another die (a reader that sees the end of its pipe and
/// reports it in an output file a later restore expects unchanged, say).
pub fn kill_tree(pids: &[i32]) {
    for &p in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(p) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        }
    }
    for &p in pids {
        kill(p);
    }
}

/// Makes every descriptor above 2 of this process close-on-exec before `cmd` starts: a
/// dumped tree must hold only what it opens itself, not what the test runner leaked to
/// the test (a jobserver pipe, a harness's descriptor), which would lead outside the
/// tree.
pub fn only_stdio(cmd: &mut Command) -> &mut Command {
    pipecr::sys::fd::cloexec_from(3).unwrap();
    cmd
}

pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Opens a control FIFO read-write: the open never waits for a reader, a write never
/// meets "no reader", and the FIFO stays open while the program is gone (dumped).
pub fn open_ctl(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts a test program driven through FIFOs (tests/progs/counter.c and its kin) as
/// `exe ROOT/out ROOT/ctl ROOT/ack`, without stdio, after making the two FIFOs in `root`.
/// Returns it with the control FIFO (opened by [`open_ctl`]) and the ack FIFO (opened once
/// the program has opened its end). The program is killed if that open fails; after
/// that, guarding it is the caller's.
pub fn start_driven(exe: &Path, root: &Path) -> (Child, File, File) {
    for fifo in ["ctl", "ack"] {
        mkfifo(&root.join(fifo));
    }
    let ctl = open_ctl(&root.join("ctl"));
    let prog = Command::new(exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let ack = File::open(root.join("ack")).unwrap();
    std::mem::forget(guard);
    (prog, ctl, ack)
}

/// One program's control FIFO (we write command bytes) and ack FIFO (it answers one
/// byte per command).
pub struct Ctl {
    pub name: String,
    pub ctl: File,
    pub ack: Option<File>,
    ack_path: PathBuf,
}

impl Ctl {
    /// Makes `DIR/NAME.ctl` and `DIR/NAME.ack` and opens the control end.
    pub fn new(dir: &Path, name: &str) -> Ctl {
        let ctl_path = dir.join(format!("{name}.ctl"));
        let ack_path = dir.join(format!("{name}.ack"));
        mkfifo(&ctl_path);
        mkfifo(&ack_path);
        Ctl {
            name: name.to_owned(),
            ctl: open_ctl(&ctl_path),
            ack: None,
            ack_path,
        }
    }

    /// Opens the ack end: waits until the program opened it for writing.
    pub fn connect(&mut self) {
        self.ack = Some(File::open(&self.ack_path).unwrap());
    }

    pub fn send(&mut self, cmd: u8) {
        self.ctl.write_all(&[cmd]).unwrap();
    }

    /// Waits for one acknowledgement byte; `Err` with what happened when the program
    /// closed its end instead (it failed, or exited).
    pub fn wait_ack(&mut self) -> Result<(), String> {
        let ack = self.ack.as_mut().expect("connect() first");
        if !readable_within(ack, DEADLINE) {
            return Err(format!(
                "{} did not acknowledge within {DEADLINE:?}",
                self.name
            ));
        }
        let mut b = [0u8; 1];
        ack.read_exact(&mut b)
            .map_err(|e| format!("{} did not acknowledge: {e}", self.name))
    }

    /// Sends a command and waits for its acknowledgement.
    pub fn step(&mut self, cmd: u8) -> Result<(), String> {
        self.send(cmd);
        self.wait_ack()
    }
}

/// Whether `f` has something to read (or its writers are gone) within `timeout`.
pub fn readable_within(f: &File, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let left = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(f, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) if start.elapsed() < timeout => continue,
            Err(_) => return false,
        }
    }
}

/// Waits for our child `child` with a deadline (the test fails instead of hanging).
pub fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(what, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Runs `pipecr dump [OPTIONS] -t PID -D IMG`, panics with its stderr if it fails, and
/// returns what it printed.
pub fn dump(pid: i32, img: &Path, options: &[&str]) -> String {
    let out = Command::new(PIPECR)
        .arg("dump")
        .args(options)
        .args(["-t", &pid.to_string(), "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump of {pid} into {}: {}",
        img.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pipecr restore -D IMG`, foreground, with stdout piped and stderr to a pipe.
pub fn restore_command(img: &Path) -> Command {
    let mut cmd = Command::new(PIPECR);
    cmd.args(["restore", "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts `pipecr restore -D IMG` in the foreground and returns once it printed
/// `restored pid PID`; panics with its stderr if it failed instead.
pub fn restore(img: &Path, pid: i32) -> Child {
    restore_started(&mut restore_command(img), pid)
}

/// Spawns `cmd`, a `pipecr restore` with its stdout piped, and returns once it printed
/// `restored pid PID`; panics with its stderr if it failed instead.
pub fn restore_started(cmd: &mut Command, pid: i32) -> Child {
    let mut restore = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(restore.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = restore.wait_with_output().unwrap();
        panic!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(line.trim(), format!("restored pid {pid}"));
    restore
}

/// Waits for a foreground `pipecr restore` and returns its output, panicking unless it
/// exited with `code` (the restored root's status, 128 + signal if killed).
pub fn finish_restore(mut restore: Child, code: i32) -> Output {
    wait_child(&mut restore, "pipecr restore to exit");
    let out = restore.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "pipecr restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Makes the test process a child subreaper: processes orphaned below it (a dumped
/// tree's children once the dump killed their parent, or a restored tree whose `pipecr
/// restore` died) come to it, so it can reap them and free their PIDs. Tests reap only
/// PIDs they know (`reap`): other tests of the binary wait for their own children.
pub fn set_subreaper() {
    rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(std::process::id() as i32))
        .unwrap();
}

/// Reaps each of `pids` that is our child (blocking until it exited), ignoring those that
/// are not. Returns the PIDs that were reaped here.
pub fn reap(pids: &[i32]) -> Vec<i32> {
    let mut reaped = Vec::new();
    for &p in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(p) {
            if let Ok(Some(_)) =
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            {
                reaped.push(p);
            }
        }
    }
    reaped
}

/// Reaps each of `pids` that is our child and already exited, without waiting.
pub fn reap_exited(pids: &[i32]) -> Vec<i32> {
    let mut reaped = Vec::new();
    for &p in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(p) {
            if let Ok(Some(_)) =
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG)
            {
                reaped.push(p);
            }
        }
    }
    reaped
}

/// Waits until `cond` holds, or panics with `what` after [`DEADLINE`]. For conditions
/// the test cannot be told about (a counter growing, a process entering a syscall).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The state letter of `pid` (`/proc/PID/stat`), `None` once it is gone.
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// The parent of `pid`, `None` once it is gone.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// The command name of `pid` (`/proc/PID/comm`), `None` once it is gone.
pub fn comm(pid: i32) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(c.trim_end().to_owned())
}

/// A field of `/proc/PID/io` (`rchar`, `wchar`, ...), `None` once it is gone.
pub fn io(pid: i32, field: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
}

/// The kernel function `pid` sleeps in (`/proc/PID/wchan`), "0" when running.
pub fn wchan(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// Waits until `pid` sleeps in a kernel function whose name ends with `want`
/// (`pipe_write`, `pipe_read`: kernels prefix them differently).
pub fn wait_in(pid: i32, want: &str) {
    wait_until(&format!("pid {pid} to block in {want}"), || {
        wchan(pid).ends_with(want)
    });
}

/// The direct children of `pid` (every thread's).
pub fn children(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return all;
    };
    for task in tasks.flatten() {
        if let Ok(c) = std::fs::read_to_string(task.path().join("children")) {
            all.extend(c.split_whitespace().map(|c| c.parse::<i32>().unwrap()));
        }
    }
    all
}

/// `root` and every process below it.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        all.push(pid);
        queue.extend(children(pid));
    }
    all
}

/// The bytes waiting in the pipe at `fd` of `pid` (`pipecr peek --raw`), or its error.
pub fn peek(pid: i32, fd: i32) -> Result<Vec<u8>, String> {
    let out = Command::new(PIPECR)
        .args(["peek", "--raw", "-t", &pid.to_string(), &fd.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "peek {pid} {fd}: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// The PIDs of the processes saved in the image `img`, the root first.
pub fn saved_pids(img: &Path) -> Vec<i32> {
    let image = pipecr_image::Image::open(img).unwrap();
    let tree: Vec<pipecr_image::proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    tree.iter().map(|p| p.pid).collect()
}

/// Every file under `dir` (relative path) with its contents, sorted.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut queue = vec![dir.to_path_buf()];
    while let Some(d) = queue.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                queue.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                files.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// xorshift64*: enough randomness to choose moments, reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `$VAR` when set, else from the clock; prints how to rerun.
    pub fn from_env(var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .map(|s| s.parse().unwrap())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
            });
        eprintln!("random moments: seed {seed} (rerun with {var}={seed})");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Whether `pid` runs without a seccomp filter: `pipecr dump --snapshot` forks only such
/// processes (a filter could kill a process for forking).
pub fn seccomp_free(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .is_some_and(|v| v.trim() == "0")
    })
}

/// The uid and gid of `nobody`, for runs without privileges.
pub const NOBODY: u32 = 65534;

/// A `pipecr` command that runs as uid and gid [`NOBODY`] (no capabilities), from a copy
/// of the binary in `dir` (made traversable, mode 0755): the build directory may not be
/// reachable by that user. Runs in `/`.
pub fn pipecr_as_nobody(dir: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("pipecr");
    if !exe.exists() {
        // Copied by another process: a copy written from this one leaves its write
        // descriptor, for an instant, in every child another test thread forks then, and
        // exec of a file open for writing fails with ETXTBSY.
        let status = Command::new("install")
            .args(["-m", "0755", PIPECR])
            .arg(&exe)
            .status()
            .unwrap();
        assert!(status.success(), "install {PIPECR}: {status}");
    }
    let mut cmd = Command::new(exe);
    cmd.uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdin(Stdio::null());
    cmd
}

/// Sends signal `sig` to `pid` (panics if it cannot).
pub fn kill_with(pid: i32, sig: i32) {
    let signal = nix::sys::signal::Signal::try_from(sig).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("kill {pid} {signal}: {e}"));
}

/// Sends command byte `cmd` to a program driven through FIFOs ([`start_driven`]) and
/// waits for its one-byte acknowledgement.
pub fn step(ctl: &mut File, ack: &mut File, cmd: u8) {
    ctl.write_all(&[cmd]).unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the step");
}

/// The last line a program driven through FIFOs wrote to its output file `out` (empty
/// when none).
pub fn last_line(out: &Path) -> String {
    let text = std::fs::read_to_string(out).unwrap();
    text.lines().last().unwrap_or("").to_owned()
}
