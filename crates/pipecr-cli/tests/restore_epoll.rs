//! `pipecr restore` brings back an event loop blocked in `epoll_wait`: its epoll instance
//! with every registration (a FIFO, an edge-triggered eventfd, a pipe registered under a
//! number since closed), shared with a child, keeps serving events after the dump killed
//! the original.
//!
//! A registration whose open file no process of the tree holds any more stops the dump,
//! naming it, and leaves the tree serving.
//!
//! What events left in the registrations (a disarmed one-shot, an edge taken or not, a
//! level-triggered target) comes back as an uninterrupted run shows it, but for the two
//! states the kernel gives no way to restore (tests/progs/epollstate.c).
//!
//! The program (tests/progs/epoller.c) reports each event it serves on its output file
//! and acknowledges on a FIFO: the test waits for acknowledgements only.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::KillOnDrop;

/// Sends one command byte, waits for the acknowledgement, returns the last line printed.
fn step(root: &Path, ctl: &mut File, ack: &mut File, cmd: u8) -> String {
    ctl.write_all(&[cmd]).unwrap();
    let mut b = [0u8; 1];
    assert!(
        common::readable_within(ack, common::DEADLINE),
        "no acknowledgement of {:?}",
        cmd as char
    );
    ack.read_exact(&mut b)
        .expect("the program acknowledges the command");
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    out.lines().last().unwrap().to_owned()
}

#[test]
fn an_event_loop_blocked_in_epoll_wait_keeps_serving_events() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("epoller", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    assert_eq!(
        step(root, &mut ctl, &mut ack, b'e'),
        "eventfd data=2 count=1"
    );
    assert_eq!(step(root, &mut ctl, &mut ack, b'p'), "pipe data=3 byte=x");
    let children = common::children(pid);
    assert_eq!(children.len(), 1, "the program forked one child");
    guard.0.extend(&children);
    common::wait_in(pid, "do_epoll_wait");

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped tree to be gone", || {
        children.iter().all(|&c| common::state(c).is_none())
    });

    let restore = common::restore(&img, pid);
    // Each registration serves its events again: the eventfd (edge-triggered), the pipe
    // under the number it was registered with (since closed), the control FIFO.
    assert_eq!(
        step(root, &mut ctl, &mut ack, b'e'),
        "eventfd data=2 count=1"
    );
    assert_eq!(step(root, &mut ctl, &mut ack, b'p'), "pipe data=3 byte=x");
    assert_eq!(
        step(root, &mut ctl, &mut ack, b'e'),
        "eventfd data=2 count=1"
    );
    // The child changes the registration in the epoll they share: the parent sees it.
    assert_eq!(step(root, &mut ctl, &mut ack, b's'), "shared ok");
    assert_eq!(
        step(root, &mut ctl, &mut ack, b'e'),
        "eventfd data=5 count=1"
    );
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_registration_only_a_process_outside_the_tree_holds_stops_the_dump() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("epoller", root) else {
        return;
    };
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let mut ctl = common::open_ctl(&root.join("ctl"));
    // The program registers its stdin, then replaces it: only this test holds the pipe.
    let (stdin_r, _stdin_w) = rustix::pipe::pipe().unwrap();
    let _kept = stdin_r.try_clone().unwrap();
    let mut prog = common::only_stdio(
        Command::new(&exe)
            .args([root.join("out"), root.join("ctl"), root.join("ack")])
            .arg("stdin")
            .stdin(Stdio::from(stdin_r))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .unwrap();
    let pid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![pid]);
    let mut ack = File::open(root.join("ack")).unwrap();
    assert_eq!(
        step(root, &mut ctl, &mut ack, b'e'),
        "eventfd data=2 count=1"
    );
    guard.0.extend(common::children(pid));

    let img = root.join("img");
    let out = Command::new(common::PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the dump must refuse");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "pid {pid} fd 3: epoll instance has a target registered as fd 0"
        )),
        "{err}"
    );
    assert!(!img.exists(), "no image may be left behind");
    // The tree runs on untouched.
    assert_eq!(step(root, &mut ctl, &mut ack, b'p'), "pipe data=3 byte=x");
    ctl.write_all(b"q").unwrap();
    let status = common::wait_child(&mut prog, "the program to exit");
    assert_eq!(status.code(), Some(0));
}

/// The lines tests/progs/epollstate.c prints for `v`.
fn epoll_states(root: &Path, ctl: &mut File, ack: &mut File) -> Vec<String> {
    step(root, ctl, ack, b'v');
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines[lines.len().saturating_sub(6)..].to_vec()
}

/// What events left behind in the registrations (tests/progs/epollstate.c), run once
/// uninterrupted and once dumped and restored. A one-shot registration that fired stays
/// disarmed when its target is ready (`a-rearmed`: it fires only once re-armed), an
/// edge not yet taken is reported once, a level-triggered target is ready again. Two
/// exact differences are limits of what the kernel offers (docs/IMAGE-FORMAT.md §5.4,
/// "What events leave behind"): an edge the program already took while its target stays
/// ready is reported once more (`first` holds 3); a disarmed one-shot registration whose
/// target is ready for nothing comes back armed for `EPOLLERR | EPOLLHUP` (its events
/// `40000018`, not `40000000`), so a byte written does not wake it, but its peer's close
/// does.
#[test]
fn registrations_keep_what_their_events_left_within_the_kernels_limits() {
    if !common::capable() {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for dumped in [false, true] {
        let root = runs.path().join(if dumped { "dumped" } else { "plain" });
        std::fs::create_dir(&root).unwrap();
        let Some(exe) = common::build("epollstate", &root) else {
            return;
        };
        let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, &root);
        let pid = prog.id() as i32;
        let _guard = KillOnDrop(vec![pid]);
        let mut b = [0u8; 1];
        ack.read_exact(&mut b).expect("the program is set up");
        let restore = if dumped {
            let img = root.join("img");
            common::dump(pid, &img, &[]);
            prog.wait().unwrap();
            Some(common::restore(&img, pid))
        } else {
            None
        };
        outputs.push(epoll_states(&root, &mut ctl, &mut ack));
        ctl.write_all(b"q").unwrap();
        match restore {
            Some(restore) => {
                common::finish_restore(restore, 0);
            }
            None => assert!(common::wait_child(&mut prog, "the program to exit").success()),
        }
    }
    assert_eq!(
        outputs[0],
        [
            "first: 4 5",
            "second: 5",
            "b-events: 40000000",
            "b-after-write: 5",
            "a-rearmed: 1 5",
            "b-after-close: 5"
        ],
        "uninterrupted"
    );
    assert_eq!(
        outputs[1],
        [
            "first: 3 4 5",
            "second: 5",
            "b-events: 40000018",
            "b-after-write: 5",
            "a-rearmed: 1 5",
            "b-after-close: 2 5"
        ],
        "restored"
    );
}
