//! Zombies through dump and restore (tests/progs/zombies.c): a parent with four children
//! that have exited and are not reaped (one with status 7, one killed by SIGTERM, one with
//! status 0, one killed by SIGQUIT with a core dump where the system writes one: restored
//! killed by SIGQUIT, without the core-dump bit, which cannot be reproduced). The dump saves them in the parent's record with their wait statuses; `show`
//! lists them; the restore brings them back as zombies of the restored parent with their
//! PIDs, and the parent's own `waitpid` returns exactly what it would have.
//!
//! The test is a child subreaper: the zombies, orphaned when the dump kills their parent,
//! come to it, and it reaps them so their PIDs are free for the restore.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::process::Command;

use common::{KillOnDrop, PIPECR};
use pipecr_image::{Image, proto};

#[test]
fn zombies_come_back_with_their_pids_and_wait_statuses() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("zombies", root) else {
        return;
    };
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program has four zombie children");
    let out = root.join("out");
    let line = last_line(&out);
    let (kids, dumped) = line
        .strip_prefix("zombies ")
        .and_then(|l| l.split_once(" dumped "))
        .unwrap_or_else(|| panic!("{line}"));
    let kids: Vec<i32> = kids.split(' ').map(|p| p.parse().unwrap()).collect();
    let core = if dumped == "1" { 0x80 } else { 0 };
    for &k in &kids {
        assert_eq!(common::state(k), Some('Z'), "child {k} before the dump");
        assert_eq!(common::ppid(k), Some(pid));
    }

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    // Orphaned when the dump killed their parent: ours to reap.
    common::reap(&kids);
    for &p in std::iter::once(&pid).chain(&kids) {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    // The image: one process, its three zombies with their wait statuses.
    let image = Image::open(&img).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    assert_eq!(tree.len(), 1, "{tree:?}");
    let saved: Vec<(i32, i32, i32, i32)> = tree[0]
        .zombies
        .iter()
        .map(|z| (z.pid, z.pgid, z.sid, z.exit_status))
        .collect();
    let (pgid, sid) = (tree[0].pgid, tree[0].sid);
    assert_eq!(
        saved,
        [
            (kids[0], pgid, sid, 7 << 8),
            (kids[1], pgid, sid, libc::SIGTERM),
            (kids[2], pgid, sid, 0),
            (kids[3], pgid, sid, libc::SIGQUIT | core),
        ]
    );

    // `show` lists them under their parent.
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    for want in [
        format!("pid {} (zombie, exit status 7)", kids[0]),
        format!("pid {} (zombie, killed by SIGTERM)", kids[1]),
        format!("pid {} (zombie, exit status 0)", kids[2]),
        format!(
            "pid {} (zombie, killed by SIGQUIT{})",
            kids[3],
            if core != 0 { ", core dumped" } else { "" }
        ),
    ] {
        assert!(
            text.lines().any(|l| l.trim() == want),
            "{want:?} in:\n{text}"
        );
    }

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    // Zombies again, of the restored parent, with the same PIDs.
    for &k in &kids {
        assert_eq!(common::state(k), Some('Z'), "restored child {k}");
        assert_eq!(common::ppid(k), Some(pid), "restored child {k}'s parent");
    }
    step(&mut ctl, &mut ack, b'w');
    assert_eq!(last_line(&out), "ok", "the restored parent's own waitpid");
    for &k in &kids {
        assert_eq!(common::state(k), None, "child {k} reaped by its parent");
    }
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// A real shell (issue 12 §4): `bash` starts a background pipeline `cat FIFO | tr 1-9
/// a-i` and execs `sleep`, which never waits. Once it is `sleep`, the test writes `123`
/// into the FIFO (so no stage can end before the exec, when bash would still reap it):
/// both stages exit and stay unreaped, zombies of `sleep`. Dumped in that state and restored, `sleep` has the same two zombie children
/// again, with their PIDs and exit status 0, and the pipeline's output is untouched.
#[test]
fn a_shell_pipeline_whose_stages_exited_unreaped_comes_back_so() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let go = dir.path().join("go");
    common::mkfifo(&go);
    common::set_subreaper();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!(
            "cat {} | tr 1-9 a-i > {} & exec sleep 1000",
            go.display(),
            out.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut prog = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    common::wait_until("bash to become sleep", || {
        common::comm(pid).as_deref() == Some("sleep")
    });
    std::fs::write(&go, b"123\n").unwrap();
    common::wait_until("both stages to exit", || {
        common::children(pid).len() == 2
            && common::children(pid)
                .iter()
                .all(|&c| common::state(c) == Some('Z'))
    });
    let stages = common::children(pid);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "abc\n");

    let img = dir.path().join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&stages);
    for &p in std::iter::once(&pid).chain(&stages) {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }
    let image = Image::open(&img).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    let mut saved: Vec<(i32, i32)> = tree[0]
        .zombies
        .iter()
        .map(|z| (z.pid, z.exit_status))
        .collect();
    saved.sort_unstable();
    let mut want: Vec<(i32, i32)> = stages.iter().map(|&s| (s, 0)).collect();
    want.sort_unstable();
    assert_eq!(saved, want);

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    assert_eq!(common::comm(pid).as_deref(), Some("sleep"));
    for &s in &stages {
        assert_eq!(common::state(s), Some('Z'), "stage {s} after the restore");
        assert_eq!(common::ppid(s), Some(pid));
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "abc\n");
    common::kill(pid);
    common::finish_restore(restore, 128 + libc::SIGKILL);
}
