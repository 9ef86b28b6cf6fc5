//! A parent that waits for its child the way util-linux `script` does (SIGCHLD blocked,
//! read through a signalfd polled with `poll(-1)`, tests/progs/sigchldfd.c) is dumped
//! while it waits, restored, and its child told to exit: the parent must read exactly
//! one SIGCHLD, the child's exit (`CLD_EXITED`, status 7), and reap it. A report the
//! restore made itself (the continue of the child it stopped and continued) must not
//! reach the program, nor stand in for the exit: a standard signal already pending
//! swallows the next one, and `script` ignores a SIGCHLD that is not an exit.
//!
//! The stray report depended on scheduling: the child had to run after the restore took
//! its parent under ptrace, and, for the exit to be lost, to exit before the parent read
//! the stray report. Before the fix, about 1 round in 20 of this program read a stray
//! `CLD_CONTINUED` on a machine shared with other builds (`script`, in
//! restore_tty.rs, hung in about 1 run in 15); hence several rounds per run.
//!
//! Synchronised with ready bytes on FIFOs and the program's own acks, never slept for.

mod common;

use std::io::{Read, Write};

use common::KillOnDrop;

/// One dump and restore of sigchldfd.c; the child then exits and the parent must see it.
fn dump_restore_and_end_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("sigchldfd", root).expect("cc builds tests/progs/sigchldfd.c");
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its child");
    let line = common::last_line(&root.join("out"));
    let child: i32 = line
        .strip_prefix("child ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    // Dumped as it waits in poll() (`do_sys_poll`, `poll_schedule_timeout`: kernels
    // name the sleep differently).
    common::wait_until("the parent to wait in poll()", || {
        common::wchan(pid).contains("poll")
    });
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::reap(&[child]);
    for p in [pid, child] {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }
    let before = std::fs::read_to_string(root.join("out")).unwrap();

    let _guard = KillOnDrop(vec![pid, child]);
    let restore = common::restore(&img, pid);
    ctl.write_all(b"e").unwrap();
    assert!(
        common::readable_within(&ack, common::DEADLINE),
        "the parent never saw its child's exit: parent {} in {:?}, child {:?}, out {:?}",
        pid,
        common::wchan(pid),
        common::state(child),
        std::fs::read_to_string(root.join("out")).unwrap()
    );
    ack.read_exact(&mut b).unwrap();
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    let after: Vec<&str> = out[before.len()..].lines().collect();
    assert_eq!(
        after,
        [
            format!("sigchld pid={child} code=1 status=7"),
            format!("reaped pid={child} status=7"),
        ],
        "what the parent read from its signalfd after the restore"
    );
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_parent_reading_sigchld_through_a_signalfd_sees_its_restored_child_exit() {
    if !common::capable() {
        return;
    }
    // The stray report was a race: a few rounds in one test.
    for _ in 0..5 {
        dump_restore_and_end_the_child();
    }
}
