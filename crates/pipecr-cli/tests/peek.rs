//! `pipecr peek` on a live helper process (a small python3 program) that holds a pipe with
//! known bytes. The helper reports its descriptors on a ready line, waits on stdin, and
//! when told checks from inside that its pipe still holds exactly the same bytes.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command as StdCommand, Stdio};

use assert_cmd::Command;
use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// The helper. argv: MODE (`both`, `write-only`, `packets`, `fifo`), a regular file to
/// hold, and in `fifo` mode the path of a FIFO to make and open read-write (its one
/// descriptor is both READ_FD and WRITE_FD). Prints "PID READ_FD WRITE_FD REG_FD
/// CLOSED_FD", then reads lines on stdin: answers "ping" with "pong"; on "verify" reads
/// its pipe (through /proc/self/fd when it kept only the write end) and exits 0 when the
/// bytes (and packet sizes) are those it wrote, 3 otherwise; exits 0 on anything else.
const HELPER: &str = r#"
import os, sys
mode, regular = sys.argv[1], sys.argv[2]
data = bytes(range(256)) * 16 + b"end-of-known-bytes"
sizes = [10, 300, 4096]
if mode == "packets":
    r, w = os.pipe2(os.O_DIRECT)
    data = data * 2
    off = 0
    for n in sizes:
        assert os.write(w, data[off:off + n]) == n
        off += n
    data = data[:off]
elif mode == "fifo":
    os.mkfifo(sys.argv[3])
    r = w = os.open(sys.argv[3], os.O_RDWR)
    assert os.write(w, data) == len(data)
else:
    r, w = os.pipe()
    assert os.write(w, data) == len(data)
if mode == "write-only":
    os.close(r)
    r = -1
reg = os.open(regular, os.O_RDONLY)
closed = os.open("/dev/null", os.O_RDONLY)
os.close(closed)
print(os.getpid(), r, w, reg, closed, flush=True)
while True:
    line = sys.stdin.readline().strip()
    if line != "ping":
        break
    print("pong", flush=True)
if line != "verify":
    sys.exit(0)
rd = r if r >= 0 else os.open("/proc/self/fd/%d" % w, os.O_RDONLY | os.O_NONBLOCK)
os.set_blocking(rd, False)
got, reads = b"", []
while True:
    try:
        chunk = os.read(rd, 1 << 20)
    except BlockingIOError:
        break
    if not chunk:
        break
    got += chunk
    reads.append(len(chunk))
ok = got == data and (mode != "packets" or reads == sizes)
if not ok:
    print("pipe changed: %d bytes, reads %r" % (len(got), reads), file=sys.stderr)
sys.exit(0 if ok else 3)
"#;

const DATA_LEN: usize = 256 * 16 + 18;

fn known_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).cycle().take(256 * 16).collect();
    v.extend_from_slice(b"end-of-known-bytes");
    v
}

/// A running helper; killed and reaped on drop if the test did not finish it.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: i32,
    read_fd: i32,
    write_fd: i32,
    reg_fd: i32,
    closed_fd: i32,
    regular: tempfile::NamedTempFile,
    /// Holds the FIFO of `fifo` mode.
    dir: tempfile::TempDir,
}

impl Helper {
    fn start(mode: &str) -> Helper {
        let regular = tempfile::NamedTempFile::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut child = StdCommand::new("python3")
            .args(["-c", HELPER, mode])
            .arg(regular.path())
            .arg(dir.path().join("fifo"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("these tests need python3 on PATH");
        let stdin = child.stdin.take();
        let mut line = String::new();
        // The ready line: the helper's pipe is filled and its descriptors are final.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let n: Vec<i32> = line
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(n.len(), 5, "helper said {line:?}");
        Helper {
            child,
            stdin,
            stdout,
            pid: n[0],
            read_fd: n[1],
            write_fd: n[2],
            reg_fd: n[3],
            closed_fd: n[4],
            regular,
            dir,
        }
    }

    /// The FIFO of `fifo` mode.
    fn fifo(&self) -> std::path::PathBuf {
        self.dir.path().join("fifo")
    }

    /// Sends "ping" and waits for "pong": the helper runs and answers.
    fn ping(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"ping\n").unwrap();
        stdin.flush().unwrap();
        if self.stdout.buffer().is_empty() {
            // Ready within the deadline, or the helper is stuck (stopped, say).
            let mut fds = [PollFd::new(self.stdout.get_ref(), PollFlags::IN)];
            let left = Timespec {
                tv_sec: common::DEADLINE.as_secs() as i64,
                tv_nsec: 0,
            };
            let n = poll(&mut fds, Some(&left)).unwrap();
            assert_eq!(n, 1, "helper did not answer within {:?}", common::DEADLINE);
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "pong\n");
    }

    fn peek(&self, fd: i32, raw: bool) -> std::process::Output {
        let mut cmd = Command::cargo_bin("pipecr").unwrap();
        cmd.args(["peek", "-t", &self.pid.to_string(), &fd.to_string()]);
        if raw {
            cmd.arg("--raw");
        }
        cmd.output().unwrap()
    }

    /// Tells the helper to check its pipe from inside; asserts it found it unchanged.
    fn verify_unchanged(mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"verify\n").unwrap();
        drop(stdin);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "helper found its pipe changed: {status}");
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn stderr_line(out: &std::process::Output) -> String {
    let s = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(s.lines().count(), 1, "one line expected: {s:?}");
    s.trim_end().to_owned()
}

#[test]
fn raw_is_exactly_the_pending_bytes_from_either_end() {
    let h = Helper::start("both");
    for fd in [h.read_fd, h.write_fd] {
        let out = h.peek(fd, true);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, known_bytes(), "fd {fd}");
        assert!(out.stderr.is_empty());
    }
    h.verify_unchanged();
}

#[test]
fn summary_of_a_write_only_end() {
    let h = Helper::start("write-only");
    let out = h.peek(h.write_fd, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ino = std::fs::read_link(format!("/proc/{}/fd/{}", h.pid, h.write_fd)).unwrap();
    let ino = ino
        .to_str()
        .unwrap()
        .trim_start_matches("pipe:[")
        .trim_end_matches(']');
    assert!(
        text.contains(&format!("pid {} fd {}", h.pid, h.write_fd)),
        "{text}"
    );
    assert!(text.contains(&format!("pipe inode:    {ino}")), "{text}");
    assert!(text.contains("end:           write (O_WRONLY)"), "{text}");
    assert!(
        text.contains(&format!("pending:       {DATA_LEN} B")),
        "{text}"
    );
    assert!(text.contains("capacity:      65536 B"), "{text}");
    assert!(text.contains("packet mode:   no"), "{text}");
    assert!(text.contains("00000000  00 01 02 03"), "{text}");
    // Raw from the write end alone: still exactly the bytes.
    assert_eq!(h.peek(h.write_fd, true).stdout, known_bytes());
    h.verify_unchanged();
}

#[test]
fn summary_of_a_packet_mode_pipe() {
    let h = Helper::start("packets");
    let out = h.peek(h.write_fd, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("end:           write (O_WRONLY|O_DIRECT)"),
        "{text}"
    );
    assert!(text.contains("pending:       4406 B"), "{text}");
    assert!(
        text.contains("packet mode:   yes, 3 packet(s) [10, 300, 4096]"),
        "{text}"
    );
    // From the read end the boundaries show too (each read of the copy is one packet).
    let out = h.peek(h.read_fd, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[10, 300, 4096]"), "{text}");
    h.verify_unchanged();
}

#[test]
fn no_such_pid() {
    // pid_max itself is never handed out: PIDs are below it.
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
    let pid = max.trim();
    let out = Command::cargo_bin("pipecr")
        .unwrap()
        .args(["peek", "-t", pid, "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr_line(&out),
        format!("error: no process with pid {pid}")
    );
}

#[test]
fn fd_not_open() {
    let h = Helper::start("both");
    let out = h.peek(h.closed_fd, false);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr_line(&out),
        format!("error: pid {} has no fd {}", h.pid, h.closed_fd)
    );
    h.verify_unchanged();
}

#[test]
fn fd_is_a_regular_file() {
    let h = Helper::start("both");
    let out = h.peek(h.reg_fd, true);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr_line(&out),
        format!(
            "error: pid {} fd {} is a regular file ({}), not a pipe or FIFO",
            h.pid,
            h.reg_fd,
            h.regular.path().display()
        )
    );
    h.verify_unchanged();
}

/// A root helper's pipe, peeked at by `nobody`: refused with the one-line permission
/// error, exit status 1; the pipe is untouched.
#[test]
fn permission_denied_for_another_user() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to run a command as another user");
        return;
    }
    let h = Helper::start("both");
    let tmp = tempfile::tempdir().unwrap();
    for raw in [false, true] {
        let mut cmd = common::pipecr_as_nobody(tmp.path());
        cmd.args(["peek", "-t", &h.pid.to_string(), &h.read_fd.to_string()]);
        if raw {
            cmd.arg("--raw");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "raw {raw}");
        assert!(out.stdout.is_empty(), "raw {raw}");
        assert_eq!(
            stderr_line(&out),
            format!(
                "error: permission denied: cannot take fd {} of pid {} (pidfd_getfd needs \
                 ptrace access: the same user, or CAP_SYS_PTRACE)",
                h.read_fd, h.pid
            )
        );
    }
    h.verify_unchanged();
}

/// A FIFO the helper holds open read-write: the summary names the FIFO's path and the
/// bytes pending; `--raw` gives exactly those bytes; the FIFO still holds them.
#[test]
fn fifo_summary_and_raw() {
    let h = Helper::start("fifo");
    assert_eq!(h.read_fd, h.write_fd);
    let out = h.peek(h.read_fd, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!("pid {} fd {}: {}", h.pid, h.read_fd, h.fifo().display())
    );
    assert!(
        text.contains("end:           read (O_RDWR|O_LARGEFILE)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("pending:       {DATA_LEN} B")),
        "{text}"
    );
    assert!(text.contains("packet mode:   no"), "{text}");
    let out = h.peek(h.read_fd, true);
    assert!(out.status.success());
    assert_eq!(out.stdout, known_bytes());
    h.verify_unchanged();
}

/// `State` and `TracerPid` of /proc/PID/status.
fn run_state(pid: i32) -> (char, i32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    (
        field("State:").chars().next().unwrap(),
        field("TracerPid:").parse().unwrap(),
    )
}

/// Twenty peeks in a row: while each runs, the helper is sampled as often as we can and
/// is never traced nor stopped, and it answers a ping during each peek.
#[test]
fn peeking_never_stops_or_traces_the_process() {
    let mut h = Helper::start("both");
    let mut samples = 0u64;
    for i in 0..20 {
        let fd = if i % 2 == 0 { h.read_fd } else { h.write_fd };
        let mut peek = StdCommand::new(env!("CARGO_BIN_EXE_pipecr"))
            .args(["peek", "--raw", "-t", &h.pid.to_string(), &fd.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = peek.stdout.take().unwrap();
        // Read what peek prints on another thread, so that a full pipe cannot block it.
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
            v
        });
        h.ping();
        let status = loop {
            let (state, tracer) = run_state(h.pid);
            samples += 1;
            assert_eq!(tracer, 0, "peek {i}: helper traced");
            assert!(
                !matches!(state, 't' | 'T'),
                "peek {i}: helper in state {state}"
            );
            if let Some(status) = peek.try_wait().unwrap() {
                break status;
            }
        };
        assert!(status.success(), "peek {i}: {status}");
        assert_eq!(reader.join().unwrap(), known_bytes(), "peek {i}");
        let (state, tracer) = run_state(h.pid);
        assert!(tracer == 0 && !matches!(state, 't' | 'T'));
        h.ping();
    }
    assert!(samples >= 20);
    h.verify_unchanged();
}
