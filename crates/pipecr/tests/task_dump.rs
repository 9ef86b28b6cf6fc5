//! Signal handlers and interval timers in the dump: they have no /proc interface and are
//! read by default (`read_handlers`) by injecting syscalls into the frozen process,
//! which must run on afterwards; with `read_handlers: false` nothing is injected.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use pipecr::files::DumpOptions;
use pipecr_image::{Image, proto};

/// A python3 process with a SIGUSR1 handler, SIGPIPE ignored and ITIMER_REAL armed for
/// 1000 s (its SIGALRM handled), blocked reading stdin after printing "ready".
fn python_with_handlers() -> Child {
    let script = r#"
import signal, sys
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
signal.setitimer(signal.ITIMER_REAL, 1000.0, 500.0)
print("ready", flush=True)
line = sys.stdin.readline()
print("after", line.strip(), len(got), flush=True)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn handlers_and_timers_are_saved_by_default_and_the_process_runs_on() {
    let mut child = python_with_handlers();
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pipecr::dump::dump_tree(pid, &img, &DumpOptions::default()).unwrap();

    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let core = cores.iter().find(|c| c.pid == pid).unwrap();
    assert!(core.handlers_read);
    let action = |signo: i32| core.sigactions.iter().find(|a| a.signo == signo);
    let usr1 = action(libc::SIGUSR1).expect("SIGUSR1 handler saved");
    assert!(
        usr1.handler > 1,
        "a handler function, not SIG_DFL/SIG_IGN: {usr1:?}"
    );
    // SA_RESTORER (0x04000000): libc returns from handlers through its own trampoline.
    assert_ne!(usr1.flags & 0x0400_0000, 0, "libc installs a restorer");
    assert_eq!(
        action(libc::SIGPIPE).map(|a| a.handler),
        Some(1),
        "SIGPIPE ignored"
    );
    assert!(
        action(libc::SIGUSR2).is_none(),
        "SIGUSR2 is SIG_DFL, not listed"
    );

    assert_eq!(core.itimers.len(), 1, "{:?}", core.itimers);
    let real = &core.itimers[0];
    assert_eq!(real.which, 0, "ITIMER_REAL");
    assert_eq!(real.interval_us, 500_000_000);
    assert!(
        real.value_us <= 1_000_000_000 && real.value_us > 900_000_000,
        "about 1000 s left: {}",
        real.value_us
    );

    // The injected syscalls left the process as it was: its blocked read completes and
    // no handler ran.
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after go 0\n");
}

#[test]
fn a_process_that_catches_nothing_has_no_handlers_and_no_timers() {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // cat is exec'd before it reads: wait until it is in read(2) on fd 0, which /proc
    // publishes, so the dump sees cat and not the test's forked copy.
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.starts_with("0 0x0 "))
    {
        std::thread::yield_now();
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let options = DumpOptions {
        read_handlers: true,
        ..DumpOptions::default()
    };
    pipecr::dump::dump_tree(pid, &img, &options).unwrap();
    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let core = cores.iter().find(|c| c.pid == pid).unwrap();
    assert!(core.handlers_read);
    assert!(
        core.sigactions.iter().all(|a| a.handler == 1),
        "{:?}",
        core.sigactions
    );
    assert!(core.itimers.is_empty());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"still here")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"still here");
}

#[test]
fn without_read_handlers_nothing_is_injected_and_the_image_says_handlers_are_unknown() {
    let mut child = python_with_handlers();
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let options = DumpOptions {
        read_handlers: false,
        ..DumpOptions::default()
    };
    pipecr::dump::dump_tree(pid, &img, &options).unwrap();
    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let core = cores.iter().find(|c| c.pid == pid).unwrap();
    assert!(!core.handlers_read);
    assert!(core.sigactions.is_empty() && core.itimers.is_empty());
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after go 0\n");
}
