//! Descriptors that lead outside the dumped tree: a bash loop whose stdin and output are
//! pipes held by this test. After the dump kills it, restore connects those ends to
//! restore's own stdio (by default) or to what `--inherit-fd` names; bytes that were
//! waiting in the stdin pipe are handed over, and an end without a source is refused
//! before any process is created.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

mod common;

use common::{KillOnDrop, PIPECR};

/// A bash loop that echoes each line of its stdin as `got LINE` to `out_fd`, with
/// `out_fd` being our stdout pipe (moved there when it is not 1), dumped (and so
/// killed) after it answered `first` and while `waiting` sat unread in its stdin pipe.
struct Dumped {
    dir: tempfile::TempDir,
    pid: i32,
}

impl Dumped {
    fn img(&self) -> std::path::PathBuf {
        self.dir.path().join("img")
    }
}

/// `read -u 3` blocks on a FIFO (the "go" line) so that bytes written behind `first`
/// stay in the stdin pipe, unread, when the dump comes.
fn dump_loop(out_fd: i32, waiting: &[u8]) -> Option<Dumped> {
    if !common::capable() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    common::mkfifo(&go);
    let redirect = if out_fd == 1 {
        String::new()
    } else {
        format!("exec {out_fd}>&1 1>/dev/null; ")
    };
    let script = format!(
        "{redirect}exec 3<>{go}; read l; echo \"got $l\" >&{out_fd}; read -u 3 x; \
         while read l; do echo \"got $l\" >&{out_fd}; done",
        go = go.display()
    );
    let mut prog = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(vec![prog.id() as i32]);
    let mut stdin = prog.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    stdin.write_all(waiting).unwrap();
    let mut stdout = BufReader::new(prog.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "got first\n");
    // bash reads its stdin one byte at a time: `waiting` is still in the pipe once it
    // blocks on the FIFO, which /proc shows as a read in pipe_read.
    wait_for_fifo_read(prog.id() as i32);
    let img = dir.path().join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &prog.id().to_string(), "-D"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let pid = prog.id() as i32;
    assert!(
        report.contains(&format!("external: pid {pid} fd 0: read end of pipe:[")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "external: pid {pid} fd {out_fd}: write end of pipe:["
        )),
        "{report}"
    );
    let status = prog.wait().unwrap();
    assert!(!status.success(), "the dump kills the tree: {status:?}");
    drop(stdin);
    std::mem::forget(_guard);
    Some(Dumped { dir, pid })
}

/// Waits until `pid` sleeps in a pipe read, polling its wait channel: the FIFO, since
/// its stdin pipe still holds bytes (or is at a line boundary it does not read past).
fn wait_for_fifo_read(pid: i32) {
    let start = std::time::Instant::now();
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.ends_with("pipe_read") {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "bash never blocked on the FIFO (wchan {wchan:?})"
        );
        std::thread::yield_now();
    }
}

fn restore(img: &Path, options: &[&str]) -> Command {
    let mut cmd = Command::new(PIPECR);
    cmd.args(["restore", "-D"]).arg(img).args(options);
    cmd
}

/// Starts restore with piped stdio and waits for its "restored pid" line: on stderr
/// when the tree writes to restore's stdout, else on stdout (then left out of what the
/// returned reader yields).
fn spawn_restore(
    img: &Path,
    options: &[&str],
    pid: i32,
    tree_uses_stdout: bool,
) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let mut child = restore(img, options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = if tree_uses_stdout {
            stderr.read_line(&mut line).unwrap()
        } else {
            stdout.read_line(&mut line).unwrap()
        };
        if n == 0 {
            let _ = child.wait();
            let _ = stderr.read_to_string(&mut seen);
            panic!("restore failed: {seen}");
        }
        seen.push_str(&line);
        if line.trim() == format!("restored pid {pid}") {
            break;
        }
    }
    let stdin = child.stdin.take().unwrap();
    (child, stdin, stdout)
}

fn go(d: &Dumped) {
    // Opened read-write: never blocks, whoever holds the other side.
    let mut fifo = common::open_ctl(&d.dir.path().join("go"));
    fifo.write_all(b"go\n").unwrap();
}

fn refused(out: &Output, pid: i32) -> String {
    assert!(!out.status.success(), "restore should fail");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "a process was left behind"
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    err
}

#[test]
fn stdio_ends_go_to_restores_own_stdio_with_the_waiting_bytes() {
    let Some(d) = dump_loop(1, b"second\nthird\n") else {
        return;
    };
    let (mut child, mut stdin, mut stdout) = spawn_restore(&d.img(), &[], d.pid, true);
    let _guard = KillOnDrop(vec![d.pid]);
    go(&d);
    stdin.write_all(b"fourth\n").unwrap();
    drop(stdin);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    // The lines that waited in the old pipe come first, then what restore's stdin
    // brought; nothing else shares restore's stdout.
    assert_eq!(out, "got second\ngot third\ngot fourth\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn waiting_bytes_with_no_pipe_to_take_them_are_refused() {
    let Some(d) = dump_loop(1, b"second\n") else {
        return;
    };
    let out = restore(&d.img(), &[])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = refused(&out, d.pid);
    assert!(
        err.contains(&format!("pid {} fd 0: read end of pipe:[", d.pid))
            && err.contains("7 bytes were waiting")
            && err.contains("--inherit-fd 0=null"),
        "{err}"
    );
    // Discarding them is the caller's explicit choice.
    let (mut child, stdin, mut stdout) =
        spawn_restore(&d.img(), &["--inherit-fd", "0=null"], d.pid, true);
    let _guard = KillOnDrop(vec![d.pid]);
    drop(stdin);
    go(&d);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "");
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_end_beyond_stdio_needs_inherit_fd() {
    let Some(d) = dump_loop(5, b"") else {
        return;
    };
    let out = restore(&d.img(), &[])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    let err = refused(&out, d.pid);
    assert!(
        err.contains(&format!("pid {} fd 5: write end of pipe:[", d.pid))
            && err.contains("--inherit-fd FD=fd:N|PATH|null"),
        "{err}"
    );
    // A request that matches nothing names what there is.
    let out = restore(&d.img(), &["--inherit-fd", "7=null"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    let err = refused(&out, d.pid);
    assert!(
        err.contains("--inherit-fd 7=null: no external descriptor is held at that number")
            && err.contains(&format!("pid {} fd 5", d.pid)),
        "{err}"
    );

    // Sources that cannot be used are refused before anything is created.
    for (request, why) in [
        (
            "5=fd:99",
            "pipecr restore has no descriptor 99 to hand over",
        ),
        ("5=/nonexistent/dir/log", "cannot open /nonexistent/dir/log"),
    ] {
        let out = restore(&d.img(), &["--inherit-fd", request])
            .stdin(Stdio::piped())
            .output()
            .unwrap();
        let err = refused(&out, d.pid);
        assert!(
            err.contains(&format!("--inherit-fd {request}: {why}")),
            "{err}"
        );
    }

    // fd:1: restore's own stdout.
    let (mut child, mut stdin, mut stdout) =
        spawn_restore(&d.img(), &["--inherit-fd", "5=fd:1"], d.pid, true);
    let _guard = KillOnDrop(vec![d.pid]);
    go(&d);
    stdin.write_all(b"to stdout\n").unwrap();
    drop(stdin);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "got to stdout\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_end_can_be_given_a_path() {
    let Some(d) = dump_loop(5, b"") else {
        return;
    };
    let log = d.dir.path().join("log");
    let request = format!("5={}", log.display());
    let (mut child, mut stdin, mut stdout) =
        spawn_restore(&d.img(), &["--inherit-fd", &request], d.pid, false);
    let _guard = KillOnDrop(vec![d.pid]);
    go(&d);
    stdin.write_all(b"one\ntwo\n").unwrap();
    drop(stdin);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, "");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "got one\ngot two\n");
}
