//! Files of /proc and /sys held open at a position, as `top` holds /proc/stat and
//! /proc/meminfo: a program (`progs/procfiles.c`) with /proc/self/status, /proc/stat and a
//! sysfs file open, dumped (killed) and restored, plainly and into a new PID namespace.
//! The program itself reports after restore: each path (readlink of /proc/self/fd/N),
//! position, flags and the bytes at the position are what they were, /proc/self/status
//! is its own status (its Pid: line is its getpid()), and reading goes on from there.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{KillOnDrop, build, capable, dump, finish_restore, mkfifo, only_stdio};

/// A sysfs file whose text does not change.
fn sysfs_file() -> &'static str {
    let thp = "/sys/kernel/mm/transparent_hugepage/enabled";
    if Path::new(thp).exists() {
        thp
    } else {
        "/sys/devices/system/cpu/online"
    }
}

fn dump_and_restore(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("procfiles", root) else {
        return;
    };
    mkfifo(&root.join("go"));
    let mut prog = only_stdio(&mut Command::new(&exe))
        .arg(root)
        .arg(sysfs_file())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut line = String::new();
    BufReader::new(prog.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");

    let img = root.join("img");
    dump(pid, &img, &[]);
    drop(guard);
    prog.wait().unwrap();

    let restore = common::restore_started(common::restore_command(&img).args(extra), pid);
    let _guard = KillOnDrop(vec![pid]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("go"))
        .unwrap()
        .write_all(b"g")
        .unwrap();
    finish_restore(restore, 0);

    let before = std::fs::read_to_string(root.join("before")).unwrap();
    let after = std::fs::read_to_string(root.join("after")).unwrap();
    assert!(
        before.contains(&format!("fd 10 link /proc/{pid}/status pos ")),
        "{before}"
    );
    assert!(before.contains("fd 11 link /proc/stat pos 3 "), "{before}");
    assert!(
        before.contains(&format!("fd 12 link {} pos 2 ", sysfs_file())),
        "{before}"
    );
    let mut after = after.lines();
    for want in before.lines() {
        assert_eq!(after.next(), Some(want), "{extra:?}");
    }
    let next10 = before
        .lines()
        .find_map(|l| l.strip_prefix("next 10 "))
        .unwrap()
        .to_owned();
    assert_eq!(
        after.collect::<Vec<_>>(),
        ["self yes".to_owned(), format!("read10 {next10}")]
    );
}

#[test]
fn proc_and_sys_files_come_back_at_their_position() {
    if !capable() {
        return;
    }
    dump_and_restore(&[]);
}

#[test]
fn proc_self_files_name_the_restored_process_in_a_new_pid_namespace() {
    if !capable() {
        return;
    }
    // CAP_SYS_ADMIN, for the namespace and its /proc.
    if common::effective_caps() & (1 << 21) == 0 {
        eprintln!("skipped: no CAP_SYS_ADMIN");
        return;
    }
    dump_and_restore(&["--pidns"]);
}
