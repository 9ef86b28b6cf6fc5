//! A shell job, dumped and restored with `--shell-job` onto another terminal.
//!
//! A `sh` with job control (`set -m`) leads a session on pty A (its controlling
//! terminal) and starts a `bash` loop in the background: the job leads its own process
//! group in the shell's session, with the terminal on fds 0-2. The loop reads lines from
//! a FIFO (never the terminal: a background job reading it would be stopped) and answers
//! each with `got LINE` on the terminal; `quit` ends it with status 0.
//!
//! The job is dumped (and killed), then restored by a `pipecr restore` leading a new
//! session on pty B:
//! - without `--shell-job` the restore refuses, naming the session, and creates nothing;
//! - with `--shell-job` the job joins restore's session, keeps its own process group, has
//!   pty B wherever it had pty A, is the terminal's foreground group while restore waits
//!   for it, answers on pty B, and restore exits with its status. `restored pid N` goes to
//!   restore's stderr, since the job writes to restore's stdout (the terminal).
//!
//! Everything is waited for with a deadline (reports read from the ptys and the FIFO,
//! or /proc polled), never slept for. Skipped, saying why, without the capabilities, `setsid`
//! or `bash`.

mod common;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{DEADLINE, KillOnDrop, PIPECR, readable_within, wait_child, wait_until};

/// A pseudo-terminal: the master (read here) and the slave, kept open here so that
/// reading the master never meets EIO while no one else holds the slave.
struct Pty {
    master: File,
    slave: File,
    path: PathBuf,
}

impl Pty {
    fn open() -> Pty {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name: CString = ptsname(&master, Vec::new()).unwrap();
        let path = PathBuf::from(name.into_string().unwrap());
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Pty {
            master: File::from(master),
            slave,
            path,
        }
    }

    fn slave_stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().unwrap())
    }

    /// The terminal's foreground process group.
    fn foreground(&self) -> Option<i32> {
        rustix::termios::tcgetpgrp(self.master.as_fd())
            .ok()
            .map(|p| p.as_raw_nonzero().get())
    }
}

/// Reads what `f` has into `buf` until `buf` holds `want`; `Err` saying what came instead
/// after [`DEADLINE`] or at end of file.
fn read_until(f: &mut File, buf: &mut Vec<u8>, want: &str) -> Result<(), String> {
    let start = Instant::now();
    while !String::from_utf8_lossy(buf).contains(want) {
        let got = || String::from_utf8_lossy(buf).into_owned();
        let left = DEADLINE.saturating_sub(start.elapsed());
        if !readable_within(f, left) {
            return Err(format!("timed out waiting for {want:?}; got {:?}", got()));
        }
        let mut chunk = [0u8; 4096];
        let n = f
            .read(&mut chunk)
            .map_err(|e| format!("{e} waiting for {want:?}; got {:?}", got()))?;
        if n == 0 {
            return Err(format!("end of file waiting for {want:?}; got {:?}", got()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// What a pty master has to read now (nothing after a short while), for messages.
fn pending(f: &mut File) -> String {
    let mut buf = Vec::new();
    while readable_within(f, std::time::Duration::from_millis(100)) {
        let mut chunk = [0u8; 4096];
        match f.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads `f` to its end (all writers gone), with [`DEADLINE`].
fn read_to_end(f: &mut File, what: &str) -> String {
    let start = Instant::now();
    let mut buf = Vec::new();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        assert!(
            readable_within(f, left),
            "timed out reading {what}; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        let mut chunk = [0u8; 4096];
        let n = f.read(&mut chunk).unwrap();
        if n == 0 {
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Process group and session of `pid` (`/proc/PID/stat`), `None` once it is gone.
fn pgid_sid(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 2..].split(' ');
    // state ppid pgrp session
    let pgid = f.nth(2)?.parse().ok()?;
    let sid = f.next()?.parse().ok()?;
    Some((pgid, sid))
}

fn fd_target(pid: i32, fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The child's stderr pipe as a `File` (pollable, readable with a deadline).
fn stderr_of(child: &mut Child) -> File {
    File::from(OwnedFd::from(child.stderr.take().unwrap()))
}

/// `setsid -c pipecr ARGS`: restore leads a new session whose controlling terminal is
/// `pty` (its stdin and stdout); its stderr is a pipe. `setsid` execs pipecr in the
/// session it made (the test's child is not a group leader, so it does not fork): the
/// child's PID is restore's, and the session's.
fn restore_on(pty: &Pty, args: &[&str], img: &Path) -> Child {
    Command::new("setsid")
        .arg("-c")
        .arg(PIPECR)
        .args(args)
        .arg("-D")
        .arg(img)
        .stdin(pty.slave_stdio())
        .stdout(pty.slave_stdio())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn shell_job_restored_onto_another_terminal() {
    if !common::capable() || !common::have("setsid") || !common::have("bash") {
        return;
    }
    // common::capable() already did this; the job must hold only its own descriptors and
    // the terminal.
    pipecr::sys::fd::cloexec_from(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fifo = root.join("lines");
    common::mkfifo(&fifo);
    // Read-write: the open never waits for the job, and writes never meet "no reader"
    // while the job is gone between dump and restore.
    let mut lines = common::open_ctl(&fifo);
    let pidfile = root.join("job.pid");
    let img = root.join("img");

    // 1-2. The shell on pty A, the job in the background.
    let a = Pty::open();
    let job_script = format!(
        "exec 3<>'{}'; while read -r -u 3 l; do [ \"$l\" = quit ] && exit 0; \
         echo \"got $l\"; done; exit 3",
        fifo.display()
    );
    let shell_script = format!(
        "set -m; bash -c '{}' & echo $! > '{}'; wait",
        job_script.replace('\'', "'\\''"),
        pidfile.display()
    );
    let mut shell = Command::new("setsid")
        .args(["-c", "sh", "-c", &shell_script])
        .stdin(a.slave_stdio())
        .stdout(a.slave_stdio())
        .stderr(a.slave_stdio())
        .spawn()
        .unwrap();
    let shell_pid = shell.id() as i32;
    let mut guard = KillOnDrop(vec![shell_pid]);
    let mut job = 0;
    wait_until("the shell to write the job's PID", || {
        job = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        job > 0
    });
    guard.0.push(job);
    let (pgid, sid) = pgid_sid(job).expect("the job runs");
    assert_eq!(pgid, job, "the job leads its own process group");
    assert_eq!(sid, shell_pid, "the job is in the shell's session");
    assert_eq!(fd_target(job, 1), Some(a.path.clone()), "job's stdout");

    // 3. Once on pty A.
    let mut a_out = Vec::new();
    let mut a_master = a.master.try_clone().unwrap();
    lines.write_all(b"one\n").unwrap();
    if let Err(e) = read_until(&mut a_master, &mut a_out, "got one") {
        panic!("the job's answer on pty A: {e}");
    }

    // 4. Dump (and kill) the job; the shell reaps it and exits.
    // Its signal handlers too: bash has some.
    common::dump(job, &img, &["--read-handlers"]);
    let status = wait_child(&mut shell, "the shell to exit once its job is gone");
    eprintln!("shell: {status}");
    wait_until("the job's PID to be free", || gone(job));

    // 5. Without --shell-job, from another session: refused, nothing created.
    let b = Pty::open();
    let mut refused = restore_on(&b, &["restore"], &img);
    let mut err = stderr_of(&mut refused);
    let err = read_to_end(&mut err, "the refused restore's stderr");
    let status = wait_child(&mut refused, "the refused restore to exit");
    eprintln!("restore without --shell-job: {status}; stderr: {err:?}");
    assert!(!status.success(), "restore without --shell-job: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err:?}");
    assert!(errors[0].contains("session"), "names the session: {err:?}");
    assert!(gone(job), "the refused restore created {job}");
    drop(b);

    // 6. With --shell-job, on pty B in a new session.
    let b = Pty::open();
    let mut restore = restore_on(&b, &["restore", "--shell-job"], &img);
    let restore_pid = restore.id() as i32;
    guard.0.push(restore_pid);
    let mut err = stderr_of(&mut restore);
    let mut err_buf = Vec::new();
    let want = format!("restored pid {job}\n");
    let mut b_master = b.master.try_clone().unwrap();
    if let Err(e) = read_until(&mut err, &mut err_buf, &want) {
        let on_tty = pending(&mut b_master);
        // Restore waits for the job: end it (if it runs) to get restore's status.
        let status = match restore.try_wait().unwrap() {
            Some(status) => status,
            None => {
                common::kill(job);
                wait_child(&mut restore, "restore to exit once its job is killed")
            }
        };
        panic!("restore --shell-job ({status}): stderr: {e}; pty B: {on_tty:?}");
    }

    let (pgid, sid) = pgid_sid(job).expect("the restored job runs");
    assert_eq!(sid, restore_pid, "the job joined restore's session");
    assert_eq!(pgid, job, "the job leads its own process group again");
    // The terminal at fds 0 and 1 is restore's stdin and stdout, the terminal. At fd 2 it
    // is restore's stderr taken by number (a pipe here), or the terminal.
    for fd in 0..=1 {
        assert_eq!(
            fd_target(job, fd),
            Some(b.path.clone()),
            "the job's fd {fd} is restore's terminal"
        );
    }
    let fd2 = fd_target(job, 2);
    assert!(
        fd2 == Some(b.path.clone()) || fd2 == fd_target(restore_pid, 2),
        "the job's fd 2 is {fd2:?}: neither restore's terminal {} nor restore's stderr {:?}",
        b.path.display(),
        fd_target(restore_pid, 2)
    );
    eprintln!("the job's fd 2: {fd2:?}");
    wait_until("the job to be the terminal's foreground group", || {
        b.foreground() == Some(job)
    });

    let mut b_out = Vec::new();
    lines.write_all(b"two\n").unwrap();
    if let Err(e) = read_until(&mut b_master, &mut b_out, "got two") {
        panic!("the restored job's answer on pty B: {e}");
    }
    let b_text = String::from_utf8_lossy(&b_out);
    assert!(
        !b_text.contains("restored pid"),
        "`restored pid` went to stderr, not the terminal: {b_text:?}"
    );

    lines.write_all(b"quit\n").unwrap();
    let status = wait_child(&mut restore, "restore to exit with the job");
    let mut rest = read_to_end(&mut err, "restore's stderr");
    rest.insert_str(0, &String::from_utf8_lossy(&err_buf));
    assert_eq!(status.code(), Some(0), "restore's status: {rest}");
    assert!(gone(job), "the job is gone with restore");
}
