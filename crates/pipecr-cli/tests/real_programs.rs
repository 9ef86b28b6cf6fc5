//! Real programs no one here wrote (issue 11 §5), dumped in the middle of their work (the
//! dump kills them) and restored, each verified by its own output going on where it was:
//!
//! - `python3` asyncio: a timer (`asyncio.sleep`) ticking, each tick a round trip through
//!   a `cat` subprocess over pipes, a SIGTERM handler of the event loop;
//! - `node`: `setInterval` feeding a `cat` child process, a SIGTERM listener;
//! - `make -j2` building a small C project, two compiles in flight at the dump: the
//!   objects and the program are byte-identical to an uninterrupted build's;
//! - `top -b`: its iteration headers and process list keep coming;
//! - a `bash` script with `trap` handlers, which gets SIGUSR1 after the restore;
//! - a C program with four threads, each ticking on its own timer (tests/progs/tickers.c);
//! - `python3` waiting on a child through a pidfd (`select`, then `waitid(P_PIDFD)`),
//!   which sees the child exit after the restore (issue 15 §5);
//! - `dbus-daemon` with `dbus-monitor` on its bus: after the restore the bus has the same
//!   id and the monitor, still connected, prints a signal sent then;
//! - `nginx` (a master, two workers) with a request half sent on an accepted connection
//!   at the dump: the same connection gets its answer after the restore.
//!
//! The programs tick on their own timers (that is the point); the test never sleeps: it
//! reads their output lines from a pipe (or a FIFO, for make's compiler wrapper), each
//! with a deadline, and waits for a dumped tree to be gone by polling /proc. A program's
//! stdout is a pipe to the test: outside the tree, so `pipecr restore --inherit-fd`
//! connects the restored program to the same pipe again (through /proc), and the test
//! reads one uninterrupted stream, where every counter must go on from where it was
//! (N+1 after N, never from 1 again). Before each dump the test prints what the tree
//! holds (descriptors with their fdinfo, threads, caught signals, shared mappings): the
//! survey a failure shows.
//!
//! A missing program fails the test (`.ci/run` installs them all); nothing is skipped
//! except, outside CI, for want of the capabilities. The dumps are plain `pipecr dump`:
//! it saves signal handlers, interval timers and clear_child_tid by default.

mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{DEADLINE, KillOnDrop};

/// `common::capable`, but in CI (which runs as root) a missing capability fails the test
/// instead of skipping it.
fn capable() -> bool {
    let ok = common::capable();
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must run these tests with CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE"
    );
    ok
}

/// Fails (never skips) when `prog` is not installed.
fn require(prog: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{prog} is not installed: this test needs it (.ci/run installs it on a fresh machine)"
    );
}

/// A program's output read line by line, each line with a deadline.
struct Lines {
    file: File,
    buf: Vec<u8>,
    /// Every line read so far, for failure messages.
    transcript: String,
    /// The file the program's stderr goes to, shown in failure messages.
    stderr: Option<PathBuf>,
}

impl Lines {
    fn new(file: File) -> Lines {
        Lines {
            file,
            buf: Vec::new(),
            transcript: String::new(),
            stderr: None,
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let end = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line[..end]).into_owned();
        self.transcript.push_str(&line);
        self.transcript.push('\n');
        Some(line)
    }

    /// Reads what is there (after waiting up to `wait` for something); false at end of
    /// file or when nothing came.
    fn fill(&mut self, wait: Duration) -> bool {
        if !common::readable_within(&self.file, wait) {
            return false;
        }
        let mut chunk = [0u8; 65536];
        let n = self.file.read(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next line, `None` at end of file; panics when none comes within [`DEADLINE`].
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(line) = self.take_line() {
                return Some(line);
            }
            if !common::readable_within(&self.file, DEADLINE) {
                panic!(
                    "no output line within {DEADLINE:?}; the end of the output so far:\n{}",
                    self.tail()
                );
            }
            if !self.fill(Duration::ZERO) {
                return None;
            }
        }
    }

    /// The next line, which must come.
    fn expect_line(&mut self) -> String {
        self.line()
            .unwrap_or_else(|| panic!("end of output; it ended with:\n{}", self.tail()))
    }

    /// Every complete line already written: for a program that is gone (dumped and
    /// killed), what it wrote before the dump.
    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            while let Some(line) = self.take_line() {
                lines.push(line);
            }
            if !self.fill(Duration::ZERO) {
                return lines;
            }
        }
    }

    /// The last lines read, for a failure message.
    fn tail(&self) -> String {
        let t = &self.transcript;
        let mut start = t.len().saturating_sub(3000);
        while !t.is_char_boundary(start) {
            start += 1;
        }
        let mut tail = t[start..].to_owned();
        let stderr = (self.stderr.as_ref())
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        if !stderr.is_empty() {
            let _ = write!(tail, "(its stderr:)\n{stderr}");
        }
        tail
    }
}

/// A pipe for a program's stdout: the test reads the lines, and keeps the write end
/// until the restored program has it again. Failure messages show the program's stderr,
/// which goes to `stderr` (see [`workdir`]).
fn stdout_pipe(stderr: &Path) -> (Lines, File) {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut lines = Lines::new(File::from(read));
    lines.stderr = Some(stderr.to_path_buf());
    (lines, File::from(write))
}

/// The options of `pipecr restore` that connect the restored tree's fd 1 (which led to
/// the test) to the same pipe again: its write end, held by the test, through /proc.
fn inherit_stdout(write: &File) -> Vec<String> {
    vec![
        "--inherit-fd".to_owned(),
        format!("1=/proc/{}/fd/{}", std::process::id(), write.as_raw_fd()),
    ]
}

/// The interpreter behind `name` itself (`sys.executable`), not a wrapper script such as
/// pyenv's shims: the dumped tree is the interpreter.
fn python() -> String {
    require("python3");
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), sig).unwrap();
}

/// What the tree under `root` holds, as a test failure should show it: per process its
/// command, state, parent, threads (each with the kernel function and syscall it is in),
/// caught and blocked signals, shared mappings, and each descriptor with its fdinfo.
fn survey(root: i32) -> String {
    let mut s = String::new();
    for pid in common::descendants(root) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map_or("?", str::trim)
                .to_owned()
        };
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let shared: Vec<&str> = maps
            .lines()
            .filter(|l| l.split(' ').nth(1).is_some_and(|p| p.ends_with('s')))
            .collect();
        let _ = writeln!(
            s,
            "pid {pid} {:?} state {:?} ppid {:?} threads {} SigCgt {} SigBlk {} shared mappings {shared:?}",
            common::comm(pid).unwrap_or_default(),
            common::state(pid),
            common::ppid(pid),
            field("Threads:"),
            field("SigCgt:"),
            field("SigBlk:"),
        );
        let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        tids.sort_unstable();
        for tid in tids {
            let task = format!("/proc/{pid}/task/{tid}");
            let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  thread {tid}: in {:?}, syscall {:?}",
                std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default(),
                syscall.split(' ').next().unwrap_or("").trim(),
            );
        }
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        fds.sort_unstable();
        for fd in fds {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with("mnt_id") && !l.starts_with("ino"))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(s, "  fd {fd} -> {link}: {info}");
        }
    }
    s
}

/// Dumps the tree under `prog` (the dump kills it) and waits until every process of the
/// tree is gone; returns their PIDs.
fn dump_kill(prog: &mut Child, img: &Path) -> Vec<i32> {
    let pid = prog.id() as i32;
    eprintln!("the tree at dump time:\n{}", survey(pid));
    common::dump(pid, img, &[]);
    common::wait_child(prog, "the dumped root to be killed");
    let pids = common::saved_pids(img);
    eprintln!("dumped {} processes: {pids:?}", pids.len());
    common::wait_until("every process of the dumped tree to be gone", || {
        pids.iter().all(|&p| common::state(p).is_none())
    });
    pids
}

/// Starts `pipecr restore` of `img` with `restore_args` and returns once the tree of
/// `pid` runs again.
fn restore(img: &Path, pid: i32, restore_args: &[String]) -> Child {
    let mut cmd = common::restore_command(img);
    cmd.args(restore_args);
    common::restore_started(&mut cmd, pid)
}

/// Spawns `cmd` (with only its stdio descriptors) and drops it: it holds the parent's
/// copies of the child's stdio (the write end of a stdout pipe, say) until dropped.
fn spawn(mut cmd: Command) -> Child {
    common::only_stdio(&mut cmd).spawn().unwrap()
}

/// A temporary directory, and a file in it for the program's stderr.
fn workdir() -> (tempfile::TempDir, File) {
    let dir = tempfile::tempdir().unwrap();
    let err = File::create(dir.path().join("stderr")).unwrap();
    (dir, err)
}

/// Reads lines `tick N echo N` (N from `*next` on, counting up with no gap) until `upto`.
fn echo_ticks(out: &mut Lines, next: &mut u64, upto: u64) {
    while *next <= upto {
        let line = out.expect_line();
        assert_eq!(line, format!("tick {next} echo {next}"), "{}", out.tail());
        *next += 1;
    }
}

/// The lines written by a killed program before its dump must go on from `*next`.
fn echo_ticks_before_dump(lines: &[String], next: &mut u64) {
    for line in lines {
        assert_eq!(*line, format!("tick {next} echo {next}"));
        *next += 1;
    }
}

/// After the ticks, the program's goodbye: `bye after tick N cat exited 0`, N its last
/// tick (the lines between are further ticks).
fn echo_bye(out: &mut Lines, next: &mut u64) {
    loop {
        let line = out.expect_line();
        if line.starts_with("bye") {
            assert_eq!(line, format!("bye after tick {} cat exited 0", *next - 1));
            return;
        }
        assert_eq!(line, format!("tick {next} echo {next}"), "{}", out.tail());
        *next += 1;
    }
}

const ASYNCIO_PY: &str = r#"
import asyncio, signal


async def main():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    cat = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    n = 0
    while not stop.done():
        await asyncio.sleep(0.02)
        n += 1
        cat.stdin.write(b"%d\n" % n)
        await cat.stdin.drain()
        echo = (await cat.stdout.readline()).decode().strip()
        print("tick", n, "echo", echo, flush=True)
    cat.stdin.close()
    print("bye after tick", n, "cat exited", await cat.wait(), flush=True)


asyncio.run(main())
"#;

#[test]
fn python_asyncio_timer_and_subprocess_go_on() {
    if !capable() {
        return;
    }
    let python = python();
    require("cat");
    // The event loop's SIGTERM handler stops it; it closes cat's stdin and reaps cat.
    ticks_go_on_across_a_restore(&python, "ticks.py", ASYNCIO_PY);
}

const INTERVAL_JS: &str = r#"
const { spawn } = require("child_process");
const cat = spawn("cat", [], { stdio: ["pipe", "pipe", "inherit"] });
let sent = 0;
let echoed = 0;
let pending = "";
cat.stdout.setEncoding("utf8");
cat.stdout.on("data", (data) => {
  pending += data;
  let i;
  while ((i = pending.indexOf("\n")) >= 0) {
    echoed += 1;
    process.stdout.write(`tick ${echoed} echo ${pending.slice(0, i)}\n`);
    pending = pending.slice(i + 1);
  }
});
const timer = setInterval(() => {
  sent += 1;
  cat.stdin.write(`${sent}\n`);
}, 20);
process.on("SIGTERM", () => {
  clearInterval(timer);
  cat.on("close", (code) => {
    process.stdout.write(`bye after tick ${echoed} cat exited ${code}\n`);
  });
  cat.stdin.end();
});
"#;

#[test]
fn node_set_interval_and_child_process_go_on() {
    if !capable() {
        return;
    }
    require("node");
    require("cat");
    // The SIGTERM listener stops the interval, ends cat's input, and reports cat's exit;
    // then node has nothing left to do and exits 0.
    ticks_go_on_across_a_restore("node", "ticks.js", INTERVAL_JS);
}

/// Runs `interpreter SCRIPT` (the script's source is `source`), a program that prints
/// numbered ticks on stdout and says goodbye on SIGTERM: waits for 5 ticks, dumps it
/// (killing it), restores it with the same stdout pipe, and checks that the ticks go on
/// from where they were (N+1 after N, never from 1 again), then that SIGTERM reaches its
/// handler, which ends it cleanly with exit 0 and nothing after the goodbye.
fn ticks_go_on_across_a_restore(interpreter: &str, name: &str, source: &str) {
    let (dir, err) = workdir();
    let script = dir.path().join(name);
    std::fs::write(&script, source).unwrap();
    let (mut out, write) = stdout_pipe(&dir.path().join("stderr"));
    let mut cmd = Command::new(interpreter);
    cmd.arg(&script)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut next = 1;
    echo_ticks(&mut out, &mut next, 5);

    let img = dir.path().join("img");
    guard.0 = dump_kill(&mut prog, &img);
    // What it wrote before the dump: then the restored program writes.
    let before_dump = out.drain();
    let restore = restore(&img, pid, &inherit_stdout(&write));
    drop(write);
    // The restored program's ticks go on: N+1 after N.
    echo_ticks_before_dump(&before_dump, &mut next);
    let restored_from = next;
    echo_ticks(&mut out, &mut next, restored_from + 5);

    signal(pid, rustix::process::Signal::TERM);
    echo_bye(&mut out, &mut next);
    common::finish_restore(restore, 0);
    assert_eq!(out.line(), None, "nothing after the goodbye");
}

/// The sources of the C project (main.c and seven others).
const FUNCTIONS: u32 = 7;

/// Writes the C project into `dir`, its Makefile compiling with `cc`.
fn c_project(dir: &Path, cc: &str) {
    let mut main = String::from("#include <stdio.h>\n");
    let mut calls = String::new();
    for i in 1..=FUNCTIONS {
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int f{i}(int x) {{ return x * {i} + {}; }}\n", i * i),
        )
        .unwrap();
        let _ = writeln!(main, "int f{i}(int);");
        let _ = writeln!(calls, "    s = f{i}(s);");
    }
    let _ = write!(
        main,
        "int main(void) {{\n    int s = 1;\n{calls}    printf(\"%d\\n\", s);\n    return 0;\n}}\n"
    );
    std::fs::write(dir.join("main.c"), main).unwrap();
    let objs: Vec<String> = std::iter::once("main.o".to_owned())
        .chain((1..=FUNCTIONS).map(|i| format!("f{i}.o")))
        .collect();
    let makefile = format!(
        "CC = {cc}\nOBJS = {}\n\nprog: $(OBJS)\n\t$(CC) -o prog $(OBJS)\n\n\
         %.o: %.c\n\t$(CC) -O2 -c -o $@ $<\n",
        objs.join(" ")
    );
    std::fs::write(dir.join("Makefile"), makefile).unwrap();
}

/// The artifacts of a build of [`c_project`], by name.
fn artifacts(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::iter::once("prog".to_owned())
        .chain(std::iter::once("main.o".to_owned()))
        .chain((1..=FUNCTIONS).map(|i| format!("f{i}.o")))
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(&name).display()));
            (name, bytes)
        })
        .collect()
}

#[test]
fn make_j2_build_finishes_identical_to_an_uninterrupted_one() {
    if !capable() {
        return;
    }
    require("make");
    require("cc");
    require("bash");
    let (dir, err) = workdir();
    let root = dir.path();

    // The reference: the same project built without interruption.
    let reference = root.join("reference");
    std::fs::create_dir(&reference).unwrap();
    c_project(&reference, "cc");
    let status = Command::new("make")
        .arg("-j2")
        .current_dir(&reference)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the reference build: {status}");

    // The interrupted build compiles through a wrapper that announces each run on the
    // FIFO `ack` and waits for one byte on the FIFO `gate` before it runs cc.
    let build = root.join("build");
    std::fs::create_dir(&build).unwrap();
    let (ack_path, gate_path) = (root.join("ack"), root.join("gate"));
    common::mkfifo(&ack_path);
    common::mkfifo(&gate_path);
    let mut ack = Lines::new(common::open_ctl(&ack_path));
    let mut gate = common::open_ctl(&gate_path);
    let wrapper = root.join("slowcc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\necho \"cc $*\" > {}\nread -r -n 1 token < {}\nexec cc \"$@\"\n",
            ack_path.display(),
            gate_path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    c_project(&build, wrapper.to_str().unwrap());
    let log = File::create(root.join("make.log")).unwrap();
    let mut cmd = Command::new("make");
    cmd.arg("-j2")
        .current_dir(&build)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);

    // Two compiles start and wait; let them run; the next two start and wait: the dump
    // comes with two objects built and two compiles in flight.
    let mut started = Vec::new();
    for _ in 0..2 {
        started.push(ack.expect_line());
    }
    gate.write_all(b"gg").unwrap();
    for _ in 0..2 {
        started.push(ack.expect_line());
    }
    let img = root.join("img");
    guard.0 = dump_kill(&mut prog, &img);
    let restore = restore(&img, pid, &[]);

    // Every other compile and the link may run now.
    let runs = FUNCTIONS as usize + 2;
    gate.write_all(&vec![b'g'; runs - 2]).unwrap();
    while started.len() < runs {
        started.push(ack.expect_line());
    }
    common::finish_restore(restore, 0);
    let mut compiled: Vec<&str> = started
        .iter()
        .filter_map(|l| l.strip_prefix("cc -O2 -c -o "))
        .collect();
    compiled.sort_unstable();
    let mut want: Vec<String> = std::iter::once("main.o main.c".to_owned())
        .chain((1..=FUNCTIONS).map(|i| format!("f{i}.o f{i}.c")))
        .collect();
    want.sort_unstable();
    assert_eq!(compiled, want, "each source compiled once: {started:?}");
    assert!(
        started.last().unwrap().starts_with("cc -o prog "),
        "{started:?}"
    );

    let (built, wanted) = (artifacts(&build), artifacts(&reference));
    for ((name, got), (_, want)) in built.iter().zip(&wanted) {
        assert!(got == want, "{name} differs from the uninterrupted build's");
    }
    let run = |dir: &Path| Command::new(dir.join("prog")).output().unwrap();
    assert_eq!(run(&build), run(&reference));
}

/// Whether `line` is an iteration header of top: `top - HH:MM:SS ...`.
fn top_header(line: &str) -> bool {
    line.strip_prefix("top - ").is_some_and(|rest| {
        let b = rest.as_bytes();
        b.len() > 8
            && b[..8].iter().enumerate().all(|(i, c)| {
                if i % 3 == 2 {
                    *c == b':'
                } else {
                    c.is_ascii_digit()
                }
            })
    })
}

#[test]
fn top_batch_goes_on_reporting() {
    if !capable() {
        return;
    }
    require("top");
    let (dir, err) = workdir();
    let (mut out, write) = stdout_pipe(&dir.path().join("stderr"));
    let mut cmd = Command::new("top");
    cmd.args(["-b", "-d", "0.2", "-n", "100000", "-w", "200"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut headers = 0;
    while headers < 3 {
        if top_header(&out.expect_line()) {
            headers += 1;
        }
    }

    let img = dir.path().join("img");
    guard.0 = dump_kill(&mut prog, &img);
    // What it wrote before the dump (a frame may end in the middle: the restored top
    // writes the rest from its stdio buffer).
    out.drain();
    let restore = restore(&img, pid, &inherit_stdout(&write));
    drop(write);
    // Three more iterations from the restored top; the process list of the last full one
    // (between the second and third header) shows top itself, with its PID.
    let own = |line: &str| {
        let mut words = line.split_whitespace();
        words.next() == Some(&pid.to_string()) && words.last() == Some("top")
    };
    let (mut headers, mut seen_itself) = (0, false);
    while headers < 3 {
        let line = out.expect_line();
        if top_header(&line) {
            headers += 1;
        } else if headers == 2 && own(&line) {
            seen_itself = true;
        }
    }
    assert!(
        seen_itself,
        "the restored top lists itself (pid {pid}):\n{}",
        out.tail()
    );
    common::kill(pid);
    common::finish_restore(restore, 128 + 9);
}

/// Counts, one line `tick N` per 20 ms; SIGUSR1 prints the count, SIGTERM ends it.
const TRAP_SH: &str = r#"
n=0
trap 'echo "got USR1 at $n"' USR1
trap 'echo "bye at $n"; exit 0' TERM
while :; do
  n=$((n + 1))
  echo "tick $n"
  sleep 0.02
done
"#;

/// Reads `tick N` lines, N from `*next` on, until one that is not a tick, returned.
fn bash_ticks_until_other(out: &mut Lines, next: &mut u64) -> String {
    loop {
        let line = out.expect_line();
        if !line.starts_with("tick ") {
            return line;
        }
        assert_eq!(line, format!("tick {next}"), "{}", out.tail());
        *next += 1;
    }
}

#[test]
fn bash_trap_handlers_run_after_restore() {
    if !capable() {
        return;
    }
    require("bash");
    require("sleep");
    let (dir, err) = workdir();
    let (mut out, write) = stdout_pipe(&dir.path().join("stderr"));
    let mut cmd = Command::new("bash");
    cmd.args(["-c", TRAP_SH])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut next = 1;
    while next <= 5 {
        assert_eq!(out.expect_line(), format!("tick {next}"));
        next += 1;
    }

    let img = dir.path().join("img");
    guard.0 = dump_kill(&mut prog, &img);
    // What it wrote before the dump: then the restored program writes.
    let before_dump = out.drain();
    let restore = restore(&img, pid, &inherit_stdout(&write));
    drop(write);
    for line in before_dump {
        assert_eq!(line, format!("tick {next}"));
        next += 1;
    }
    let restored_from = next;
    while next < restored_from + 3 {
        assert_eq!(out.expect_line(), format!("tick {next}"), "{}", out.tail());
        next += 1;
    }

    // The trap runs, with the count where it is (the tick printed last, or the one
    // counted but not yet printed).
    signal(pid, rustix::process::Signal::USR1);
    let got = bash_ticks_until_other(&mut out, &mut next);
    let at: u64 = got
        .strip_prefix("got USR1 at ")
        .unwrap_or_else(|| panic!("{got:?} instead of the USR1 trap's line"))
        .parse()
        .unwrap();
    assert!(
        at == next - 1 || at == next,
        "USR1 trap at {at}, last tick {}",
        next - 1
    );
    signal(pid, rustix::process::Signal::TERM);
    let bye = bash_ticks_until_other(&mut out, &mut next);
    assert!(
        bye == format!("bye at {}", next - 1) || bye == format!("bye at {next}"),
        "{bye:?} after tick {}",
        next - 1
    );
    common::finish_restore(restore, 0);
    assert_eq!(out.line(), None, "nothing after the goodbye");
}

/// Takes a line `thread T tick N` of tests/progs/tickers.c, which must be the next tick
/// of thread T.
fn tick(line: &str, last: &mut [u64; 4]) {
    let parsed = line
        .strip_prefix("thread ")
        .and_then(|l| l.split_once(" tick "))
        .and_then(|(t, n)| Some((t.parse::<usize>().ok()?, n.parse::<u64>().ok()?)));
    let Some((t, n)) = parsed.filter(|(t, _)| *t < 4) else {
        panic!("{line:?} is not a tick");
    };
    assert_eq!(
        n,
        last[t] + 1,
        "{line:?} after tick {} of thread {t}",
        last[t]
    );
    last[t] = n;
}

#[test]
fn threads_each_go_on_ticking() {
    if !capable() {
        return;
    }
    require("cc");
    let (dir, err) = workdir();
    let exe = common::build("tickers", dir.path()).expect("cc builds tests/progs/tickers.c");
    let (mut out, write) = stdout_pipe(&dir.path().join("stderr"));
    let mut cmd = Command::new(&exe);
    cmd.current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    // Each thread's last tick.
    let mut last = [0u64; 4];
    while last.iter().any(|&n| n < 3) {
        tick(&out.expect_line(), &mut last);
    }

    let img = dir.path().join("img");
    guard.0 = dump_kill(&mut prog, &img);
    // What it wrote before the dump: then the restored program writes.
    let before_dump = out.drain();
    let restore = restore(&img, pid, &inherit_stdout(&write));
    drop(write);
    for line in before_dump {
        tick(&line, &mut last);
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert_eq!(tasks, 5, "the main thread and the four tickers");
    let restored_at = last;
    while (0..4).any(|t| last[t] < restored_at[t] + 3) {
        tick(&out.expect_line(), &mut last);
    }

    // sigwait returns in the main thread, which joins every ticker.
    signal(pid, rustix::process::Signal::TERM);
    loop {
        let line = out.expect_line();
        if let Some(totals) = line.strip_prefix("joined after ticks ") {
            let want = last.map(|n| n.to_string()).join(" ");
            assert_eq!(totals, want, "each thread's last tick");
            break;
        }
        tick(&line, &mut last);
    }
    common::finish_restore(restore, 0);
    assert_eq!(out.line(), None, "nothing after the join");
}

/// Waits on its child through a pidfd (issue 15 §5): `select` on the pidfd, then
/// `waitid(P_PIDFD)`. The child, `sh`, blocks reading a FIFO the test writes to only after
/// the restore.
const PIDFD_WAIT_PY: &str = r#"
import os, select, subprocess, sys
fifo = os.open(sys.argv[1], os.O_RDWR)
child = subprocess.Popen(["sh", "-c", "read line; exit 3"], stdin=fifo)
os.close(fifo)
fd = os.pidfd_open(child.pid)
print("waiting on", child.pid, flush=True)
ready, _, _ = select.select([fd], [], [])
info = os.waitid(os.P_PIDFD, fd, os.WEXITED)
print("child", info.si_pid, "exited", info.si_status, "ready", ready == [fd], flush=True)
"#;

#[test]
fn python_waiting_on_a_child_through_a_pidfd_sees_it_exit_after_restore() {
    if !capable() {
        return;
    }
    let python = python();
    require("sh");
    let (dir, err) = workdir();
    let script = dir.path().join("pidfd_wait.py");
    std::fs::write(&script, PIDFD_WAIT_PY).unwrap();
    let fifo = dir.path().join("go");
    common::mkfifo(&fifo);
    let (mut out, write) = stdout_pipe(&dir.path().join("stderr"));
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(&fifo)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let line = out.line().expect("python says which child it waits on");
    let child: i32 = line
        .strip_prefix("waiting on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));

    let img = dir.path().join("img");
    guard.0 = dump_kill(&mut prog, &img);
    assert!(guard.0.contains(&child), "{:?}", guard.0);
    let restore = restore(&img, pid, &inherit_stdout(&write));
    drop(write);
    // The child reads its line and exits 3; python, in select on the pidfd, sees it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    assert_eq!(
        out.line().as_deref(),
        Some(format!("child {child} exited 3 ready True").as_str())
    );
    common::finish_restore(restore, 0);
    assert_eq!(out.line(), None, "nothing after its last line");
}

/// A session bus and a client on it: `dbus-daemon` (unix listening socket, its audit
/// netlink socket, epoll) and `dbus-monitor` watching one interface, started by a shell
/// that waits for both. Prints `addr ADDRESS`, then the monitor's own output.
const DBUS_SH: &str = r#"
coproc BUS { exec dbus-daemon --session --nofork --print-address --address="unix:path=$PWD/bus"; }
read -r addr <&"${BUS[0]}"
echo "addr $addr"
DBUS_SESSION_BUS_ADDRESS=$addr dbus-monitor "type='signal',interface='org.pipecr.Test'" &
wait
"#;

/// Sends signal `Tick(text)` of interface `org.pipecr.Test` on the bus at `addr`.
fn dbus_tick(addr: &str, text: &str) {
    let out = Command::new("dbus-send")
        .env("DBUS_SESSION_BUS_ADDRESS", addr)
        .args([
            "--session",
            "--type=signal",
            "/org/pipecr/Test",
            "org.pipecr.Test.Tick",
            &format!("string:{text}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "dbus-send: {out:?}");
}

/// The bus's id (`org.freedesktop.DBus.GetId`): the daemon's own, made when it started.
fn dbus_id(addr: &str) -> String {
    let out = Command::new("dbus-send")
        .env("DBUS_SESSION_BUS_ADDRESS", addr)
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetId",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "dbus-send GetId: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("string \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no id in {text}"))
        .to_owned()
}

/// Reads the monitor's output until the argument line of a `Tick` signal, returned.
fn dbus_next_tick(out: &mut Lines) -> String {
    loop {
        let line = out.expect_line();
        if line.contains("interface=org.pipecr.Test; member=Tick") {
            return out.expect_line().trim().to_owned();
        }
    }
}

#[test]
fn dbus_daemon_and_a_monitor_go_on_with_the_same_bus() {
    if !capable() {
        return;
    }
    for prog in ["bash", "dbus-daemon", "dbus-monitor", "dbus-send"] {
        require(prog);
    }
    let (dir, err) = workdir();
    let (mut out, write) = stdout_pipe(&dir.path().join("stderr"));
    let mut cmd = Command::new("bash");
    cmd.args(["-c", DBUS_SH])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let line = out.expect_line();
    let addr = line
        .strip_prefix("addr ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    // The monitor is on the bus once it reports losing its own name (it becomes a
    // monitor); then it sees our signals.
    while !out.expect_line().contains("member=NameLost") {}
    let id = dbus_id(&addr);
    dbus_tick(&addr, "before");
    assert_eq!(dbus_next_tick(&mut out), "string \"before\"");

    let img = dir.path().join("img");
    guard.0 = dump_kill(&mut prog, &img);
    assert_eq!(
        guard.0.len(),
        3,
        "bash, dbus-daemon, dbus-monitor: {:?}",
        guard.0
    );
    out.drain();
    let restore = restore(&img, pid, &inherit_stdout(&write));
    drop(write);
    // The same bus (its id), and the monitor still connected, seeing new signals.
    assert_eq!(dbus_id(&addr), id);
    dbus_tick(&addr, "after");
    assert_eq!(dbus_next_tick(&mut out), "string \"after\"");
    common::kill_tree(&guard.0);
    common::finish_restore(restore, 128 + 9);
}

/// nginx's configuration for [`nginx_answers_a_request_begun_before_the_dump`]: a master
/// and two workers in the foreground, everything under `dir`, one server on `port`.
fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n}}\n"
    )
}

/// Whether a process of `pids` holds the server end of the TCP connection whose client
/// end is `client` (`ss -tnp`: the connection's line names the processes holding it).
fn accepted_by(pids: &[i32], client: std::net::SocketAddr) -> bool {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established", "dst", &client.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    pids.iter().any(|p| text.contains(&format!("pid={p},")))
}

/// Reads an HTTP/1.1 response whose body is `Content-Length` bytes long.
fn http_response(conn: &mut std::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no Content-Length in {text:?}"));
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = conn.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the connection ended after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// nginx (a master and two workers, epoll, a listening socket, shared memory between
/// them) with a request half sent on an accepted connection at the dump: after the
/// restore the same connection gets its answer once the request ends, new connections
/// are served, and a graceful quit (SIGQUIT) ends it with status 0.
#[test]
fn nginx_answers_a_request_begun_before_the_dump() {
    if !capable() {
        return;
    }
    require("nginx");
    require("ss");
    let (dir, err) = workdir();
    let root = dir.path();
    std::fs::create_dir(root.join("www")).unwrap();
    std::fs::write(root.join("www/index.html"), "hello from nginx\n").unwrap();
    // A free port: the kernel picks one for a socket bound and closed at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(root.join("nginx.conf"), nginx_conf(root, port)).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-p")
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    let mut prog = spawn(cmd);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    common::wait_until("nginx to listen", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    common::wait_until("both workers", || common::children(pid).len() == 2);
    let get = b"GET /index.html HTTP/1.1\r\nHost: test\r\n";
    let mut first = std::net::TcpStream::connect(addr).unwrap();
    first.write_all(get).unwrap();
    first.write_all(b"\r\n").unwrap();
    let answer = http_response(&mut first);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello from nginx\n"), "{answer}");

    // Half a request on a connection a worker has accepted.
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(get).unwrap();
    let workers = common::children(pid);
    let client = conn.local_addr().unwrap();
    common::wait_until("a worker to accept the connection", || {
        accepted_by(&workers, client)
    });
    let img = root.join("img");
    guard.0 = dump_kill(&mut prog, &img);
    assert_eq!(guard.0.len(), 3, "a master and two workers: {:?}", guard.0);
    let restore = restore(&img, pid, &[]);
    conn.write_all(b"\r\n").unwrap();
    let answer = http_response(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello from nginx\n"), "{answer}");
    let mut again = std::net::TcpStream::connect(addr).unwrap();
    again.set_read_timeout(Some(DEADLINE)).unwrap();
    again.write_all(get).unwrap();
    again.write_all(b"\r\n").unwrap();
    assert!(http_response(&mut again).ends_with("hello from nginx\n"));
    drop((first, conn, again));
    signal(pid, rustix::process::Signal::QUIT);
    common::finish_restore(restore, 0);
    let log = std::fs::read_to_string(root.join("access.log")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"GET /index.html HTTP/1.1\" 200"))
            .count(),
        3,
        "{log}"
    );
}
