//! File leases and `O_ASYNC` through dump and restore (tests/progs/leases.c). A program
//! holds a read lease, its child a write lease, each with its own `F_SETSIG` signal; the
//! program's pipe and socketpair hold bytes in flight and signal their readiness
//! (`O_ASYNC`, `F_SETOWN_EX`, `F_SETSIG`) to the program and to its child. The image
//! holds each lease with its open file. After the restore the programs check, from
//! inside: no signal was delivered by the restore, the leases (`F_GETLEASE`), owners and
//! signals are back, a write into the pipe and the socket signals the right process with
//! the right signal and `si_fd`; then this test opens both files in a way that breaks
//! the leases, and each holder gets its lease-break signal with its descriptor as
//! `si_fd`. A lease being broken at dump time is refused, naming it, and the tree runs
//! on.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::path::Path;

use common::KillOnDrop;
use pipecr_image::{Image, proto};

/// Opens `path` with `flags | O_NONBLOCK`: the errno a lease makes it fail with, or
/// `None` when it opens.
fn try_open(path: &Path, flags: rustix::fs::OFlags) -> Option<rustix::io::Errno> {
    rustix::fs::open(
        path,
        flags | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .err()
}

/// Starts `leases` in `root` with its two files, waits for its ready byte; returns it,
/// its control and ack FIFOs and the pids it printed.
fn start(root: &Path) -> (std::process::Child, std::fs::File, std::fs::File, i32, i32) {
    let exe = common::build("leases", root).expect("cc builds tests/progs/leases.c");
    std::fs::write(root.join("rlease"), b"read lease").unwrap();
    std::fs::write(root.join("wlease"), b"write lease").unwrap();
    let (prog, ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap_or_else(|e| {
        panic!(
            "the program set up its leases ({e}): {}",
            std::fs::read_to_string(root.join("out")).unwrap_or_default()
        )
    });
    let line = last_line(&root.join("out"));
    let pids: Vec<i32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    std::mem::forget(guard);
    (prog, ctl, ack, pids[0], pids[1])
}

#[test]
fn leases_and_io_signals_come_back_and_signal_the_same_processes() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack, pid, kid) = start(root);
    let guard = KillOnDrop(vec![pid, kid]);
    use rustix::fs::OFlags;
    assert_eq!(
        try_open(&root.join("rlease"), OFlags::RDONLY),
        None,
        "a read lease lets readers in"
    );

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&[kid]);
    for p in [pid, kid] {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }
    // The dump killed the holders: nobody leases the files now.
    assert_eq!(try_open(&root.join("wlease"), OFlags::RDONLY), None);

    // The image: each lease with its open file, the owners and signals.
    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut leases: Vec<(String, bool, i32)> = files
        .iter()
        .filter_map(|f| {
            let lease = f.lease.as_ref()?;
            let Some(proto::open_file::Kind::Regular(r)) = &f.kind else {
                panic!("a lease on {f:?}");
            };
            Some((r.path.clone(), lease.write, f.signal))
        })
        .collect();
    leases.sort();
    let rtmin = libc::SIGRTMIN();
    assert_eq!(
        leases,
        [
            (root.join("rlease").display().to_string(), false, rtmin + 2),
            (root.join("wlease").display().to_string(), true, rtmin + 3),
        ]
    );

    // `show` lists them with the locks.
    let shown = std::process::Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    for want in ["read lease", "write lease"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("  file ") && l.ends_with(want)),
            "{want:?} in:\n{text}"
        );
    }

    let _guard = KillOnDrop(vec![pid, kid]);
    let restore = common::restore(&img, pid);
    // The leases are held again: a conflicting open fails (and starts a break) until
    // the holders let go.
    step(&mut ctl, &mut ack, b'v');
    let out = root.join("out");
    assert_eq!(
        last_line(&out),
        "ok",
        "the restored programs' own checks:\n{}",
        std::fs::read_to_string(&out).unwrap()
    );
    assert_eq!(
        try_open(&root.join("rlease"), OFlags::WRONLY),
        Some(rustix::io::Errno::WOULDBLOCK),
        "the read lease keeps writers out"
    );
    assert_eq!(
        try_open(&root.join("wlease"), OFlags::RDONLY),
        Some(rustix::io::Errno::WOULDBLOCK),
        "the write lease keeps readers out"
    );
    step(&mut ctl, &mut ack, b'b');
    assert_eq!(
        last_line(&out),
        "ok",
        "the lease breaks as the programs saw them:\n{}",
        std::fs::read_to_string(&out).unwrap()
    );
    // Released by their holders: the files open.
    assert_eq!(try_open(&root.join("rlease"), OFlags::WRONLY), None);
    assert_eq!(try_open(&root.join("wlease"), OFlags::RDONLY), None);
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_lease_being_broken_is_refused_and_the_tree_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::set_subreaper();
    let (mut prog, mut ctl, _ack, pid, kid) = start(root);
    let _guard = KillOnDrop(vec![pid, kid]);
    // A writer waits for the read lease to go: the break has begun.
    assert_eq!(
        try_open(&root.join("rlease"), rustix::fs::OFlags::WRONLY),
        Some(rustix::io::Errno::WOULDBLOCK)
    );
    let img = root.join("img");
    let out = std::process::Command::new(common::PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pid {pid} fd 10: a file with a lease being broken (a process waits to open the file"
        )),
        "{stderr}"
    );
    assert!(!img.exists());
    // Still running, untouched: it exits when told.
    assert_eq!(common::state(pid).map(|s| s != 'Z'), Some(true));
    ctl.write_all(b"q").unwrap();
    assert!(prog.wait().unwrap().success());
    common::reap(&[kid]);
}
