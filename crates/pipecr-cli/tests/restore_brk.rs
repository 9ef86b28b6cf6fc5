//! The program break of a heap in two areas (tests/progs/heapsplit.c): a process forked
//! from a parent whose heap had grown grows its own break into a second area, which does
//! not merge with the first; /proc/PID/maps shows both as `[heap]`. After a dump and
//! restore the break is where the program left it (the end of the second area), it grows
//! again, and every byte of both areas is there: the program's own check. (The dump once
//! took the end of the first area: malloc's next growth then corrupted its heap, which
//! a tmux server showed, tests/restore_tmux.rs.)
//!
//! Synchronised with ready bytes on FIFOs, never slept for.

mod common;

use std::io::Read;

use common::{KillOnDrop, last_line, step};

#[test]
fn a_break_past_a_heap_in_two_areas_comes_back_where_it_was() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::set_subreaper();
    let exe = common::build("heapsplit", root).expect("cc builds tests/progs/heapsplit.c");
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the child grew its heap");
    let line = last_line(&root.join("out"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        (fields.first().copied(), fields.get(2..)),
        (Some("child"), Some(&["heaps", "2"][..])),
        "the child's heap is two areas: {line}"
    );
    let child: i32 = fields[1].parse().unwrap();
    std::mem::forget(guard);
    let guard = KillOnDrop(vec![pid, child]);

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("every pid of the tree to be gone", || {
        common::reap_exited(&[child]);
        [pid, child].iter().all(|&p| common::state(p).is_none())
    });

    let _guard = KillOnDrop(vec![pid, child]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        last_line(&root.join("out")),
        "ok",
        "the restored child's own check: {}",
        std::fs::read_to_string(root.join("out")).unwrap()
    );
    std::io::Write::write_all(&mut ctl, b"q").unwrap();
    common::finish_restore(restore, 0);
}
