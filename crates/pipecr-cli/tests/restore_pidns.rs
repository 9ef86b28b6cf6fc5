//! `pipecr restore --pidns`: a copy of a dumped program runs in a new PID namespace, with
//! its saved PID there, beside the original that still runs with the same PID outside.
//!
//! The program (tests/progs/counter.c) counts one step per byte read from a control FIFO,
//! appends the count to a file (its stdout), and acknowledges on a second FIFO, so the
//! test drives it with ready bytes only. The copy reopens its FIFOs by path: once the
//! image is written, the test moves the original's FIFOs aside (the original keeps them
//! open) and makes new ones at the saved paths, so that each process has its own
//! control and acknowledgement FIFOs. Both append to the same output file, which the
//! test checks after each step.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{KillOnDrop, PIPECR};

fn has_caps() -> bool {
    // Every test here starts programs to dump: only their stdio may lead out of the
    // tree, not descriptors this process inherited (a job server's pipe, say).
    pipecr::sys::fd::cloexec_from(3).unwrap();
    // CAP_SYS_ADMIN too, for the new namespaces and the /proc mount.
    common::has_caps() && common::effective_caps() & (1 << 21) != 0
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    prog: Child,
    ctl: File,
    ack: File,
}

/// Builds the counter, starts it and takes it three steps.
fn start() -> Option<Setup> {
    if !has_caps() {
        eprintln!(
            "skipped: needs CAP_SYS_PTRACE, CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN (new \
             PID and mount namespaces)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let exe = common::build("counter", &root)?;
    let (prog, mut ctl, mut ack) = common::start_driven(&exe, &root);
    let guard = KillOnDrop(vec![prog.id() as i32]);
    for _ in 0..3 {
        step(&mut ctl, &mut ack);
    }
    std::mem::forget(guard);
    assert_eq!(read_out(&root), "1\n2\n3\n");
    Some(Setup {
        _dir: dir,
        root,
        prog,
        ctl,
        ack,
    })
}

fn mkfifos(root: &Path) {
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
}

fn read_out(root: &Path) -> String {
    std::fs::read_to_string(root.join("out")).unwrap()
}

fn step(ctl: &mut File, ack: &mut File) {
    ctl.write_all(b"n").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the step");
}

/// A running `pipecr restore --pidns` and the init of its namespace.
struct Restored {
    restore: Child,
    /// The namespace's init (our view), killed on drop: that ends the whole copy.
    _init: KillOnDrop,
    /// The restored root, as we see it (outside the namespace).
    outer_pid: i32,
}

/// Runs `pipecr restore --pidns` of `img` and waits for its `restored pid N` line.
fn restore_pidns(img: &Path, pid: u32) -> Restored {
    // The PID inside the namespace: the saved one.
    let restore = common::restore_started(common::restore_command(img).arg("--pidns"), pid as i32);
    let init = only_child(restore.id() as i32);
    let init_guard = KillOnDrop(vec![init]);
    let outer_pid = only_child(init);
    Restored {
        restore,
        _init: init_guard,
        outer_pid,
    }
}

/// The one child of `pid` (from /proc/PID/task/PID/children).
fn only_child(pid: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let children: Vec<i32> = children
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 1, "children of {pid}: {children:?}");
    children[0]
}

/// The `NSpid` line of `/proc/PID/status`: the PID in each namespace, outermost first.
fn nspid(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Gives the copy its own FIFOs at the saved paths; the original keeps the old ones open.
/// Returns the new control FIFO opened read-write: the copy, once it runs, must never see
/// it without a writer (end of file: it would exit).
fn separate_fifos(root: &Path) -> File {
    for fifo in ["ctl", "ack"] {
        std::fs::rename(root.join(fifo), root.join(format!("{fifo}.orig"))).unwrap();
    }
    mkfifos(root);
    common::open_ctl(&root.join("ctl"))
}

#[test]
fn copy_runs_beside_the_original_with_the_same_pid() {
    copy_beside_the_original(&["--leave-running"]);
}

/// The same, from a dump that read the memory from a copy-on-write snapshot after the
/// original had resumed.
#[test]
fn copy_of_a_snapshot_runs_beside_the_original() {
    copy_beside_the_original(&["--leave-running", "--read-handlers", "--snapshot"]);
}

fn copy_beside_the_original(dump_options: &[&str]) {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let _orig = KillOnDrop(vec![pid as i32]);
    let img = s.root.join("img");
    let printed = common::dump(pid as i32, &img, dump_options);
    if dump_options.contains(&"--snapshot") && common::seccomp_free(pid as i32) {
        assert!(
            printed.contains("memory of 1 process(es) read from copy-on-write snapshots"),
            "{printed}"
        );
    }
    let mut ctl = separate_fifos(&s.root);

    let mut r = restore_pidns(&img, pid);
    // The same PID inside a new namespace, the same program.
    assert_eq!(nspid(r.outer_pid), vec![r.outer_pid, pid as i32]);
    assert_ne!(r.outer_pid, pid as i32);
    let exe = std::fs::read_link(format!("/proc/{}/exe", r.outer_pid)).unwrap();
    assert_eq!(exe, s.root.join("counter"));
    // Its own FIFOs: the copy holds the write end of the new ack, so this does not block.
    let mut ack = File::open(s.root.join("ack")).unwrap();

    // Both continue from the dump point (3), each appending to the shared output file.
    step(&mut s.ctl, &mut s.ack);
    assert_eq!(read_out(&s.root), "1\n2\n3\n4\n");
    step(&mut ctl, &mut ack);
    assert_eq!(read_out(&s.root), "1\n2\n3\n4\n4\n");
    step(&mut ctl, &mut ack);
    step(&mut s.ctl, &mut s.ack);
    assert_eq!(read_out(&s.root), "1\n2\n3\n4\n4\n5\n5\n");

    // The copy ends; restore exits with its status; the original runs on.
    ctl.write_all(b"q").unwrap();
    let status = r.restore.wait().unwrap();
    assert!(status.success(), "restore --pidns: {status:?}");
    step(&mut s.ctl, &mut s.ack);
    assert_eq!(read_out(&s.root), "1\n2\n3\n4\n4\n5\n5\n6\n");
    s.ctl.write_all(b"q").unwrap();
    assert!(s.prog.wait().unwrap().success());
}

#[test]
fn restore_exits_with_the_roots_status() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    // The default dump kills the original: the copy has the FIFOs to itself.
    common::dump(pid as i32, &img, &[]);
    assert_eq!(s.prog.wait().unwrap().signal(), Some(libc::SIGKILL));

    // An exit code: end of file on its control FIFO makes the counter exit with 3. (No
    // step: the output file must stay as saved for the second restore.)
    let mut r = restore_pidns(&img, pid);
    drop(s.ctl);
    let status = r.restore.wait().unwrap();
    assert_eq!(status.code(), Some(3), "restore --pidns: {status:?}");

    // A signal: 128 + its number.
    let mut ctl = common::open_ctl(&s.root.join("ctl"));
    let mut r = restore_pidns(&img, pid);
    step(&mut ctl, &mut s.ack);
    assert_eq!(read_out(&s.root), "1\n2\n3\n4\n");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(r.outer_pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = r.restore.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "restore --pidns: {status:?}"
    );
}

#[test]
fn failed_pidns_restore_leaves_nothing() {
    let Some(mut s) = start() else { return };
    let pid = s.prog.id();
    let img = s.root.join("img");
    common::dump(pid as i32, &img, &[]);
    assert_eq!(s.prog.wait().unwrap().signal(), Some(libc::SIGKILL));
    // Its control FIFO is gone: the restored root fails to open it, inside the new
    // namespace (after the init has been created).
    std::fs::remove_file(s.root.join("ctl")).unwrap();

    // Orphans of the restore (an init it did not reap) would come to us.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let out = Command::new(PIPECR)
        .args(["restore", "--pidns", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains(&format!(
            "restore of pid {pid} failed; nothing was left running"
        )) && errors[0].contains(&format!("{}", s.root.join("ctl").display())),
        "{err}"
    );
    // Nothing in another PID namespace came to us: the init was reaped, and with it the
    // namespace ended.
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(p) = name.to_str().filter(|n| n.parse::<u32>().is_ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The parent is the second field after the parenthesised name.
        let ppid = stat.rsplit(')').next().unwrap().split_whitespace().nth(1);
        if ppid != Some(me.as_str()) {
            continue;
        }
        let Ok(ns) = std::fs::read_link(format!("/proc/{p}/ns/pid")) else {
            continue;
        };
        assert_eq!(ns, ours, "process {p} ({stat}) was left behind");
    }
}
