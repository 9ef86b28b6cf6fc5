//! `pipecr dump --leave-running --no-inject` must never harm the tree it saves, even when
//! pipecr is killed with SIGKILL at any moment of the dump (issue 3, section 1).
//!
//! The tree is a shell with two pipelines of self-checking Python programs:
//!
//! ```text
//! sh ─┬─ sh ── python producer ──pipe──▶ sh ── python checker ──▶ stdout (the test)
//!     └─ sh ── python writer ──pipe (full)──▶ sh ── python late ──▶ stdout (the test)
//! ```
//!
//! - `producer` writes one batch of numbered lines per token byte it reads from the test
//!   (so data flows while dumps run, and the producer often blocks on the full pipe);
//!   `checker` verifies that the sequence is exact and complete and prints its count and
//!   sha256.
//! - `writer` blocks in `write()` on a full pipe for the whole test; `late` blocks in
//!   `read()` on an empty pipe (the test's "go" pipe), then drains and verifies the
//!   writer's bytes.
//! - Every read and write is a raw `read(2)`/`write(2)` through ctypes, with handlers for
//!   SIGCONT and SIGUSR1 installed *without* SA_RESTART: a stop or signal that leaked out
//!   of a dump as a delivered signal would surface as EINTR, and any error makes the
//!   program fail loudly (on stderr, plus an "exit N" line from its shell).
//!
//! The test waits only for ready lines, output lines and EOF; the one `sleep` picks the
//! moment at which pipecr is killed.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use pipecr_image::{Image, proto};
use rustix::pipe::{PipeFlags, pipe_with};

/// The programs of the tree; `sys.argv[1]` names the role.
const PROG: &str = r#"
import ctypes, hashlib, os, signal, sys

role = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
libc.read.restype = ctypes.c_ssize_t
libc.write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
libc.write.restype = ctypes.c_ssize_t
# Without SA_RESTART: a signal delivered during a blocking read/write makes it fail
# with EINTR instead of being restarted, and the program reports it.
for s in (signal.SIGCONT, signal.SIGUSR1):
    signal.signal(s, lambda *a: None)
    signal.siginterrupt(s, True)

def die(msg):
    sys.stderr.write(f"{role} FAILED: {msg}\n")
    sys.stderr.flush()
    os._exit(1)

BUF = ctypes.create_string_buffer(1 << 16)

def rd(fd, n):
    r = libc.read(fd, BUF, min(n, len(BUF)))
    if r < 0:
        e = ctypes.get_errno()
        die(f"read(fd {fd}): {os.strerror(e)} (errno {e})")
    return ctypes.string_at(BUF, r)

def wr(fd, data):
    while data:
        r = libc.write(fd, data, len(data))
        if r < 0:
            e = ctypes.get_errno()
            die(f"write(fd {fd}): {os.strerror(e)} (errno {e})")
        data = data[r:]

def ready():
    wr(5, f"ready {role} {os.getpid()}\n".encode())
    os.close(5)

def line(i):
    return b"%08d %s\n" % (i, (b"%08x" % ((i * 2654435761) & 0xFFFFFFFF)) * 4)

def pattern(n):
    return (bytes(range(251)) * (n // 251 + 1))[:n]

if role == "producer":
    total, batch = int(os.environ["PIPECR_LINES"]), int(os.environ["PIPECR_BATCH"])
    ready()
    i = 0
    while True:
        t = rd(0, 1)
        if not t:
            break
        if t != b"t":
            die(f"bad token {t!r}")
        if i >= total:
            die("a token after the last line")
        end = min(total, i + batch)
        wr(1, b"".join(line(k) for k in range(i, end)))
        i = end
    if i != total:
        die(f"tokens ended after {i} of {total} lines")
    wr(1, b"producer ok lines=%d\n" % i)
elif role == "checker":
    total = int(os.environ["PIPECR_LINES"])
    ready()
    h = hashlib.sha256()
    n, rest, trailer = 0, b"", None
    while True:
        chunk = rd(0, 1 << 16)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for l in lines:
            if trailer is not None:
                die(f"data after the trailer: {l[:60]!r}")
            if n < total:
                want = line(n)[:-1]
                if l != want:
                    die(f"line {n}: got {l[:60]!r}, want {want!r}")
                h.update(l + b"\n")
                n += 1
            else:
                trailer = l
    if rest:
        die(f"unterminated last line {rest[:60]!r}")
    if trailer != b"producer ok lines=%d" % total:
        die(f"after {n} lines: trailer {trailer!r}")
    wr(1, b"checker ok lines=%d sha256=%s\n" % (n, h.hexdigest().encode()))
elif role == "writer":
    size = int(os.environ["PIPECR_WBYTES"])
    data = pattern(size)
    ready()
    wr(1, data)  # more than the pipe holds: blocks until `late` reads
elif role == "late":
    size = int(os.environ["PIPECR_WBYTES"])
    ready()
    g = rd(4, 1)  # blocks on an empty pipe until the test says go
    if g != b"g":
        die(f"go pipe gave {g!r}")
    got = bytearray()
    while True:
        chunk = rd(0, 1 << 16)
        if not chunk:
            break
        got += chunk
    if bytes(got) != pattern(size):
        die(f"got {len(got)} bytes, not the {size}-byte pattern")
    wr(1, b"late ok bytes=%d\n" % len(got))
else:
    die("unknown role")
"#;

/// The tree of the kill test. fd 0 of the shell: tokens from the test; $PIPECR_GO: the
/// go pipe (opened through /proc, see [`Tree::spawn`]); fd 5: ready lines, to stdout.
/// Each program's shell prints "ROLE exit N" if the program fails.
const KILL_TREE: &str = r#"
exec 3<&0 4<"$PIPECR_GO" 5>&1
{ "$PY" -I -S -c "$PROG" producer || echo "producer exit $?"; } <&3 3<&- 4<&- | { "$PY" -I -S -c "$PROG" checker || echo "checker exit $?"; } 3<&- 4<&- &
{ "$PY" -I -S -c "$PROG" writer || echo "writer exit $?"; } 3<&- 4<&- | { "$PY" -I -S -c "$PROG" late || echo "late exit $?"; } 3<&-
wait
"#;

/// Only the blocked writer and the blocked reader.
const BLOCKED_TREE: &str = r#"
exec 4<"$PIPECR_GO" 5>&1
{ "$PY" -I -S -c "$PROG" writer || echo "writer exit $?"; } 4<&- | { "$PY" -I -S -c "$PROG" late || echo "late exit $?"; }
"#;

/// Execs `/bin/sh -c SCRIPT` with only descriptors 0, 1 and 2 open.
const LAUNCH: &str =
    "import os, sys; os.closerange(3, 1 << 20); os.execv('/bin/sh', ['sh', '-c', sys.argv[1]])";

const LINES: usize = 200_000;
const BATCH: usize = 1_000;
/// 16 times the default pipe capacity.
const WBYTES: usize = 1 << 20;
const TRIALS: usize = 64;
/// The first trials are not killed: they measure how long a whole dump takes.
const CALIBRATION_TRIALS: usize = 3;

fn pipecr() -> &'static str {
    env!("CARGO_BIN_EXE_pipecr")
}

/// The system Python (fast to start) or whatever `python3` is on PATH.
fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

/// Root with CAP_SYS_PTRACE, and Python: what these tests need. Says why when not.
fn can_run() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    // Bit 19 of CapEff: CAP_SYS_PTRACE (linux/capability.h).
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap_or(0);
    if cap_eff & (1 << 19) == 0 {
        eprintln!("skipped: needs CAP_SYS_PTRACE to freeze a tree (CI runs it as root)");
        return false;
    }
    if Command::new(python())
        .args(["-c", "import ctypes, hashlib"])
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("skipped: needs python3 with ctypes for the tree's programs");
        return false;
    }
    true
}

/// A running tree under `sh -c SCRIPT`, with the pipes the test drives it through.
struct Tree {
    sh: Option<Child>,
    root: i32,
    tokens: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    /// The write end of the go pipe; the shell opened its read end through /proc.
    go: Option<OwnedFd>,
    _go_read: OwnedFd,
    /// (role, pid) of each program, from its ready line.
    ready: Vec<(String, i32)>,
}

impl Tree {
    /// Starts the tree and waits for the ready lines of `roles`.
    ///
    /// Pipes are the only stdio (a tree holding /dev/null would depend on more kinds of
    /// files than this test is about). The go pipe reaches the shell without an inherited
    /// descriptor: the shell opens `/proc/<test>/fd/<read end>`, a new open file of the
    /// same pipe, so nothing but the three stdio descriptors crosses the exec and the
    /// other tests' children inherit nothing of it.
    fn spawn(script: &str, roles: &[&str]) -> Tree {
        let (go_read, go_write) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let go_path = format!("/proc/{}/fd/{}", std::process::id(), go_read.as_raw_fd());
        // Python closes whatever descriptors the test runner leaked to us beyond stdio,
        // then becomes the shell (same pid): the tree holds only what the script opens.
        let mut sh = Command::new(python())
            .args(["-I", "-S", "-c", LAUNCH, script])
            .env("PY", python())
            .env("PROG", PROG)
            .env("PIPECR_GO", go_path)
            .env("PIPECR_LINES", LINES.to_string())
            .env("PIPECR_BATCH", BATCH.to_string())
            .env("PIPECR_WBYTES", WBYTES.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let root = sh.id() as i32;
        let mut tree = Tree {
            tokens: sh.stdin.take(),
            out: BufReader::new(sh.stdout.take().unwrap()),
            sh: Some(sh),
            root,
            go: Some(go_write),
            _go_read: go_read,
            ready: Vec::new(),
        };
        while tree.ready.len() < roles.len() {
            let line = tree.line();
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("ready"), Some(role), Some(pid)) if roles.contains(&role) => {
                    tree.ready.push((role.to_owned(), pid.parse().unwrap()))
                }
                _ => panic!("expected a ready line, got {line:?}{}", tree.stderr()),
            }
        }
        tree
    }

    /// The next line of the tree's stdout (panics at EOF).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(
            line.ends_with('\n'),
            "tree output ended early (after {line:?}){}",
            self.stderr()
        );
        line.pop();
        line
    }

    fn pid_of(&self, role: &str) -> i32 {
        self.ready.iter().find(|(r, _)| r == role).unwrap().1
    }

    /// Lets the producer write one more batch.
    fn token(&mut self) {
        self.tokens.as_mut().unwrap().write_all(b"t").unwrap();
    }

    /// Closes the token pipe, waits for the checker's line, sends go, reads the rest of
    /// the output to EOF and waits for the shell. Returns every output line after the
    /// ready lines, in order, and the stderr of the whole tree.
    fn finish(mut self, tokens_left: usize) -> (Vec<String>, String) {
        for _ in 0..tokens_left {
            self.token();
        }
        drop(self.tokens.take());
        let mut lines = Vec::new();
        if self.ready.iter().any(|(r, _)| r == "checker") {
            lines.push(self.line());
        }
        let mut go = fs::File::from(self.go.take().unwrap());
        go.write_all(b"g").unwrap();
        drop(go);
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        lines.extend(rest.lines().map(str::to_owned));
        let mut sh = self.sh.take().unwrap();
        let mut stderr = String::new();
        sh.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = sh.wait().unwrap();
        assert!(status.success(), "sh: {status}; stderr:\n{stderr}");
        (lines, stderr)
    }

    /// What the tree wrote on stderr so far, for failure messages (only once it ended).
    fn stderr(&mut self) -> String {
        let Some(sh) = self.sh.as_mut() else {
            return String::new();
        };
        if !matches!(sh.try_wait(), Ok(Some(_))) {
            return String::new();
        }
        let mut s = String::new();
        if let Some(mut e) = sh.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        format!("\nstderr of the tree:\n{s}")
    }
}

impl Drop for Tree {
    /// A failed test kills what is left of its tree, so it leaves no blocked programs.
    fn drop(&mut self) {
        if let Some(mut sh) = self.sh.take() {
            for pid in descendants(self.root) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = sh.wait();
        }
    }
}

/// `root` and every process below it, from /proc/PID/task/TID/children.
fn descendants(root: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        all.push(pid);
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                queue.extend(
                    children
                        .split_whitespace()
                        .map(|c| c.parse::<i32>().unwrap()),
                );
            }
        }
    }
    all
}

/// Every thread of `pids` that is stopped ('t' tracing stop, 'T' stopped) or still has
/// a tracer, described for a failure message.
fn stopped_or_traced(pids: &[i32]) -> Vec<String> {
    let mut bad = Vec::new();
    for &pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let (Ok(stat), Ok(status)) = (
                fs::read_to_string(task.path().join("stat")),
                fs::read_to_string(task.path().join("status")),
            ) else {
                continue;
            };
            // The state is the first field after the command name in parentheses.
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
            let tracer = status
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .map_or(0, |v| v.trim().parse::<i32>().unwrap());
            if state == 't' || state == 'T' || tracer != 0 {
                bad.push(format!(
                    "pid {pid} thread {}: state {state}, tracer {tracer}",
                    task.file_name().to_string_lossy()
                ));
            }
        }
    }
    bad
}

/// The kernel function `pid` sleeps in (`/proc/PID/wchan`), "0" when running.
fn wchan(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap()
}

/// Waits until `pid` sleeps in the kernel function `want`. This waits for a state the
/// kernel reports, not for time to pass: the program announced that its next step is the
/// blocking call, and the call cannot complete while its peer does not move.
fn wait_in(pid: i32, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Kernels name the pipe functions differently (pipe_write, anon_pipe_write, ...).
    while !wchan(pid).ends_with(want) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never blocked in {want} (wchan {})",
            wchan(pid)
        );
        std::thread::yield_now();
    }
}

/// `DIR.tmp-*` siblings of the image directory `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut prefix = dir.file_name().unwrap().to_os_string();
    prefix.push(".tmp-");
    let prefix = prefix.to_string_lossy().into_owned();
    fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// xorshift64*: enough randomness to choose kill moments, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn dump_command(root: i32, dir: &Path) -> Command {
    let mut cmd = Command::new(pipecr());
    cmd.args(["dump", "-t", &root.to_string(), "-D"])
        .arg(dir)
        .arg("--leave-running")
        // The guarantee tested here is the one of a dump that injects nothing (see
        // docs/INJECTION.md for what the default injection risks).
        .arg("--no-inject")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn sigkill_at_random_moments_never_harms_the_tree() {
    if !can_run() {
        return;
    }
    let roles = ["producer", "checker", "writer", "late"];
    let batches = LINES.div_ceil(BATCH);
    assert!(TRIALS < batches);

    // The output of the same tree, same tokens, no dump.
    let (expected, stderr) = Tree::spawn(KILL_TREE, &roles).finish(batches);
    assert!(stderr.is_empty(), "uninterrupted tree failed:\n{stderr}");
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert!(
        expected[0].starts_with(&format!("checker ok lines={LINES} sha256=")),
        "{expected:?}"
    );
    assert_eq!(expected[1], format!("late ok bytes={WBYTES}"));

    let seed = std::env::var("PIPECR_KILL_SEED")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
        });
    eprintln!("kill moments: seed {seed} (rerun with PIPECR_KILL_SEED={seed})");
    let mut rng = Rng(seed | 1);

    let tmp = tempfile::tempdir().unwrap();
    let mut tree = Tree::spawn(KILL_TREE, &roles);
    let processes = descendants(tree.root).len();
    let mut whole_dump = Vec::new();
    let (mut killed, mut completed, mut images_after_kill, mut tmp_left) = (0, 0, 0, 0);
    for trial in 0..TRIALS {
        // One more batch starts to flow, so the dump meets data in motion.
        tree.token();
        let dir = tmp.path().join(format!("img-{trial}"));
        // The kill moment: a delay drawn at random up to a little more than a whole dump
        // takes, so kills land in every phase (exec, freeze, save, resume, commit) and
        // some land after the end. Choosing a moment, not waiting for an event.
        let kill_after = if trial < CALIBRATION_TRIALS || rng.next() % 8 == 0 {
            None
        } else {
            let mut sorted = whole_dump.clone();
            sorted.sort();
            let typical: Duration = sorted[sorted.len() / 2];
            let range = typical.as_micros() as u64 * 11 / 10;
            Some(Duration::from_micros(rng.next() % range.max(1)))
        };
        let start = Instant::now();
        let mut child = dump_command(tree.root, &dir).spawn().unwrap();
        if let Some(delay) = kill_after {
            std::thread::sleep(delay);
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let was_killed = out.status.signal() == Some(libc::SIGKILL);
        if std::env::var_os("PIPECR_KILL_VERBOSE").is_some() {
            eprintln!(
                "trial {trial}: kill after {kill_after:?}, exit after {:?}: {}",
                start.elapsed(),
                out.status
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if was_killed {
            killed += 1;
        } else {
            assert!(
                out.status.success(),
                "trial {trial}: pipecr dump failed ({}):\n{stderr}",
                out.status
            );
            completed += 1;
            if kill_after.is_none() {
                whole_dump.push(start.elapsed());
            }
        }

        // pipecr is reaped: the kernel detached whatever it had seized.
        let stopped = stopped_or_traced(&descendants(tree.root));
        assert!(
            stopped.is_empty(),
            "trial {trial} (kill after {kill_after:?}, killed: {was_killed}): tree left \
             stopped:\n{}",
            stopped.join("\n")
        );
        // Either a complete image or none.
        if dir.exists() {
            let image = Image::open(&dir).unwrap_or_else(|e| {
                panic!(
                    "trial {trial}: {} exists but is not a complete image: {e}",
                    dir.display()
                )
            });
            let saved: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
            assert_eq!(
                saved.len(),
                processes,
                "trial {trial}: processes in the image"
            );
            if was_killed {
                images_after_kill += 1;
            }
            fs::remove_dir_all(&dir).unwrap();
        } else {
            assert!(
                was_killed,
                "trial {trial}: pipecr succeeded but wrote no image"
            );
        }
        // A killed dump may leave DIR.tmp-PID-N behind; the next dump into DIR removes
        // every such leftover whose PID is gone, so after a successful dump none remain.
        let left = leftovers(&dir);
        assert!(
            was_killed || left.is_empty(),
            "trial {trial}: leftovers after a successful dump: {left:?}"
        );
        if was_killed && !left.is_empty() {
            tmp_left += 1;
        }
    }
    eprintln!(
        "{TRIALS} dumps of a {processes}-process tree: {killed} killed by SIGKILL \
         ({images_after_kill} of them after the image was committed), {completed} completed; \
         whole dump {:?} (median of the unkilled); {tmp_left} killed dump(s) left a DIR.tmp-*, \
         removed by a later dump",
        {
            let mut d = whole_dump.clone();
            d.sort();
            d[d.len() / 2]
        }
    );
    assert!(killed > 0 && completed >= CALIBRATION_TRIALS);

    let (output, stderr) = tree.finish(batches - TRIALS);
    assert!(stderr.is_empty(), "a program of the tree failed:\n{stderr}");
    assert_eq!(output, expected);
}

#[test]
fn blocked_reader_and_writer_complete_after_a_dump() {
    if !can_run() {
        return;
    }
    let tree = Tree::spawn(BLOCKED_TREE, &["writer", "late"]);
    let (writer, late) = (tree.pid_of("writer"), tree.pid_of("late"));
    wait_in(writer, "pipe_write");
    wait_in(late, "pipe_read");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let out = dump_command(tree.root, &dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The image holds the full pipe's 64 KiB, and the go pipe empty.
    let image = Image::open(&dir).unwrap();
    let pipes: Vec<proto::Pipe> = image.read_records(pipecr_image::PIPES).unwrap();
    let pending = |p: &proto::Pipe| p.data.as_ref().map_or(0, |d| d.length);
    let full: Vec<_> = pipes.iter().filter(|p| pending(p) > 0).collect();
    assert_eq!(full.len(), 1, "{pipes:?}");
    assert_eq!(pending(full[0]), u64::from(full[0].capacity), "{pipes:?}");
    assert!(!full[0].external_reader && !full[0].external_writer);
    let inode_of = |pid: i32, fd: i32| {
        let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        let link = link.as_os_str().to_string_lossy().into_owned();
        link.trim_start_matches("pipe:[")
            .trim_end_matches(']')
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(full[0].inode, inode_of(writer, 1));
    let go = pipes.iter().find(|p| p.inode == inode_of(late, 4)).unwrap();
    assert_eq!(pending(go), 0);
    assert!(go.external_writer, "{go:?}");
    assert_eq!(
        pipecr_data_of(&image, full[0]),
        (0..full[0].capacity as usize)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
    );

    // Resumed into the same calls: still blocked, no EINTR seen.
    assert!(stopped_or_traced(&descendants(tree.root)).is_empty());
    wait_in(writer, "pipe_write");
    wait_in(late, "pipe_read");

    let (output, stderr) = tree.finish(0);
    assert!(stderr.is_empty(), "a program of the tree failed:\n{stderr}");
    assert_eq!(output, vec![format!("late ok bytes={WBYTES}")]);
}

fn pipecr_data_of(image: &Image, pipe: &proto::Pipe) -> Vec<u8> {
    image.read_data(pipe.data.as_ref().unwrap()).unwrap()
}
