//! `pipecr restore` brings back signal state: handlers (with `SA_SIGINFO`), a blocked
//! signal pending for the thread, one pending for the process (with its `si_value`), and
//! an armed `ITIMER_REAL`, per-thread alternate signal stacks (tests/progs/altstack.c),
//! all from a plain dump (issue 11: full fidelity is the default); a dump with
//! `--no-inject` says what it did not save, and its restore uses defaults and says so.
//!
//! The program (tests/progs/signals.c) reports its handler counts and the timer on each
//! byte read from a control FIFO and acknowledges on a second FIFO: the test waits for
//! acknowledgements only. The restore runs in the `pipecr` binary (single-threaded).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;

use common::KillOnDrop;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    prog: Child,
    ctl: File,
    ack: File,
}

/// Builds the program, starts it and takes one report.
fn start() -> Option<Setup> {
    let mut s = launch("signals")?;
    let line = step(&s.root, &mut s.ctl, &mut s.ack, b'r');
    assert!(
        line.starts_with("usr1=0 usr2=0 rt=0 rtval=0 alrm=0 left="),
        "{line}"
    );
    Some(s)
}

/// Builds tests/progs/`name`.c and starts it with its output file and FIFOs.
fn launch(name: &str) -> Option<Setup> {
    if !common::capable() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let exe = common::build(name, &root)?;
    let (prog, ctl, ack) = common::start_driven(&exe, &root);
    Some(Setup {
        _dir: dir,
        root,
        prog,
        ctl,
        ack,
    })
}

/// Sends one command byte, waits for the acknowledgement, returns the last line printed.
fn step(root: &Path, ctl: &mut File, ack: &mut File, cmd: u8) -> String {
    ctl.write_all(&[cmd]).unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the command");
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    out.lines().last().unwrap().to_owned()
}

/// `pipecr dump --leave-running [OPTIONS]`; returns what it printed.
fn dump(pid: u32, img: &Path, options: &[&str]) -> String {
    let mut opts = vec!["--leave-running"];
    opts.extend_from_slice(options);
    common::dump(pid as i32, img, &opts)
}

/// Starts `pipecr restore` and waits for its `restored pid` line.
fn restore(img: &Path, pid: u32) -> Child {
    common::restore(img, pid as i32)
}

#[test]
fn handlers_pending_signals_and_timer_come_back() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    // What sigaction says of two handlers: the handler, its flags, its mask.
    let handlers = step(&s.root, &mut s.ctl, &mut s.ack, b'f');
    let flags_usr1 = libc::SA_RESTART | libc::SA_NODEFER;
    let flags_rt = libc::SA_RESTART | libc::SA_SIGINFO;
    assert_eq!(
        handlers,
        format!("usr1 handler=1 flags={flags_usr1:x} mask=1 rt handler=1 flags={flags_rt:x}"),
        "before the dump"
    );
    dump(pid, &img, &[]);
    s.prog.kill().unwrap();
    s.prog.wait().unwrap();

    let restore = restore(&img, pid);
    let _guard = KillOnDrop(vec![pid as i32]);
    // The handler is back: SIGUSR1 is counted, not fatal. It is queued before the
    // command byte, so it is handled before the program reads it.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::USR1,
    )
    .unwrap();
    let line = step(&s.root, &mut s.ctl, &mut s.ack, b'r');
    assert!(
        line.starts_with("usr1=1 usr2=0 rt=0 rtval=0 alrm=0 left="),
        "{line}"
    );
    // Each handler with its flags and its mask (the handler just returned through its
    // saved restorer).
    assert_eq!(step(&s.root, &mut s.ctl, &mut s.ack, b'f'), handlers);
    // Unblocking delivers the two signals pending at dump time, once each, with the
    // process-wide one's value.
    let line = step(&s.root, &mut s.ctl, &mut s.ack, b'u');
    let (counts, left) = line.split_once(" left=").unwrap();
    assert_eq!(counts, "usr1=1 usr2=1 rt=1 rtval=42 alrm=0");
    let left: i64 = left.parse().unwrap();
    assert!((900..1000).contains(&left), "timer: {left} s left");
    s.ctl.write_all(b"q").unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored program: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("warning") && !err.contains("defaults"),
        "{err}"
    );
}

#[test]
fn no_inject_says_what_it_loses_and_restores_defaults() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    let out = dump(pid, &img, &["--no-inject"]);
    let said: Vec<&str> = out.lines().filter(|l| l.contains("not saved")).collect();
    assert_eq!(
        said,
        [
            "not saved (--no-inject): signal handlers, interval timers, alternate signal \
             stacks, threads' clear_child_tid, securebits and parent-death signals, child \
             subreapers, waitpid reports not yet collected; a restore gives the processes \
             defaults"
        ],
        "{out}"
    );
    s.prog.kill().unwrap();
    s.prog.wait().unwrap();

    let restore = restore(&img, pid);
    let _guard = KillOnDrop(vec![pid as i32]);
    // SIG_DFL for SIGUSR1 terminates the process.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::USR1,
    )
    .unwrap();
    let out = restore.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGUSR1));
    let err = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("--no-inject")).collect();
    assert_eq!(
        said,
        [
            "pipecr: the image has no signal handlers (dumped with --no-inject, or by an older \
             pipecr without --read-handlers): handlers, interval timers, alternate signal \
             stacks, clear_child_tid, securebits, parent-death signals and child subreapers \
             come back as defaults"
        ],
        "{err}"
    );
}

#[test]
fn read_handlers_is_still_accepted() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    let out = dump(pid, &img, &["--read-handlers"]);
    assert!(!out.contains("not saved"), "{out}");
    s.prog.kill().unwrap();
    s.prog.wait().unwrap();
    let restore = restore(&img, pid);
    let _guard = KillOnDrop(vec![pid as i32]);
    // The handler is back: SIGUSR1 is counted, not fatal.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::USR1,
    )
    .unwrap();
    let line = step(&s.root, &mut s.ctl, &mut s.ack, b'r');
    assert!(line.starts_with("usr1=1 "), "{line}");
    s.ctl.write_all(b"q").unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(out.status.success(), "restored program: {:?}", out.status);
}

#[test]
fn alternate_signal_stacks_come_back_per_thread() {
    let Some(mut s) = launch("altstack") else {
        return;
    };
    let pid = s.prog.id();
    let line = step(&s.root, &mut s.ctl, &mut s.ack, b's');
    assert_eq!(line, "main=alt,same other=alt,same", "before the dump");
    let img = s.root.join("img");
    dump(pid, &img, &[]);
    s.prog.kill().unwrap();
    s.prog.wait().unwrap();

    let restore = restore(&img, pid);
    let _guard = KillOnDrop(vec![pid as i32]);
    // Each thread's handler runs on that thread's own alternate stack, and each thread
    // still reports the stack it installed.
    let line = step(&s.root, &mut s.ctl, &mut s.ack, b's');
    assert_eq!(line, "main=alt,same other=alt,same");
    s.ctl.write_all(b"q").unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored program: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A signalfd (tests/progs/sigfd.c) comes back with its flags, and the signals pending
/// for the process at the dump (SIGUSR2, and SIGRTMIN+2 queued twice with values 7 and
/// 8) are read from it after the restore, in the kernel's order, each once, with its
/// code, value and sender; a signal sent after the restore is read from it too.
#[test]
fn signals_pending_at_the_dump_are_read_from_a_signalfd_after_restore() {
    let Some(mut s) = launch("sigfd") else { return };
    let mut b = [0u8; 1];
    s.ack.read_exact(&mut b).expect("the program is set up");
    let pid = s.prog.id();
    let img = s.root.join("img");
    common::dump(pid as i32, &img, &[]);
    s.prog.wait().unwrap();
    let restore = restore(&img, pid);
    let _guard = KillOnDrop(vec![pid as i32]);
    // SI_USER 0, SI_QUEUE -1; SIGRTMIN+2 is printed as 1002 (SIGRTMIN+n as 1000 + n).
    assert_eq!(
        step(&s.root, &mut s.ctl, &mut s.ack, b'v'),
        format!(
            "sfd flags=11 {}/0/0/1 1002/-1/7/1 1002/-1/8/1 empty {}/0/0/1",
            libc::SIGUSR2,
            libc::SIGUSR2
        )
    );
    s.ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}
