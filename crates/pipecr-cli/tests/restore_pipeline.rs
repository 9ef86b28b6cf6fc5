//! `pipecr restore` brings back what the processes of a tree share: a parent and its
//! child joined by a pipe that holds data and has the child blocked writing into it, and a
//! regular file whose offset both share.
//!
//! The program (tests/progs/pipeline.c): the child writes numbered lines into the pipe,
//! the parent reads them on command. The test lets the pipe fill until the child blocks,
//! dumps (leaving the tree running), kills both, restores, and checks that each restored
//! process has exactly its saved descriptor numbers, that both ends are one pipe again,
//! that the parent then reads every remaining line in order (the bytes in flight came
//! back, the blocked writer went on), and that the child's write to the shared file moved
//! the parent's offset.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{
    KillOnDrop, build, capable, children, dump, finish_restore, mkfifo, open_ctl, reap, restore,
    set_subreaper,
};

/// The descriptor numbers of `pid`, sorted, with what each points at.
fn fds(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(e.path()).unwrap();
            (n, target.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    fds
}

/// What `fd` of the process points at.
fn target(fds: &[(i32, String)], fd: i32) -> &str {
    &fds.iter().find(|(n, _)| *n == fd).unwrap().1
}

#[test]
fn pipe_and_shared_offset_come_back_shared() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("pipeline", root) else {
        return;
    };
    for name in ["ctl", "ack"] {
        mkfifo(&root.join(name));
    }
    // Read-write: never "no reader", and kept open while the program is gone.
    let mut ctl = open_ctl(&root.join("ctl"));
    set_subreaper();
    let mut prog = Command::new(&exe)
        .args(["shared", "ctl", "ack"].iter().map(|n| root.join(n)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![ppid]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let [cpid] = children(ppid)[..] else {
        panic!("one child: {:?}", children(ppid))
    };
    guard.0.push(cpid);
    // Some lines read; the pipe full; the child blocked in write().
    ctl.write_all(b"f").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges 'f'");
    let (parent_fds, child_fds) = (fds(ppid), fds(cpid));

    let img = root.join("img");
    dump(ppid, &img, &["--leave-running", "--read-handlers"]);
    drop(guard);
    prog.wait().unwrap();
    // Orphaned when its parent died: ours to reap (we are a subreaper).
    reap(&[cpid]);

    let restore = restore(&img, ppid);
    let _guard = KillOnDrop(vec![ppid, cpid]);

    // Exactly the saved descriptor numbers, nothing parked or leaked.
    let (parent_after, child_after) = (fds(ppid), fds(cpid));
    let numbers = |f: &[(i32, String)]| f.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    assert_eq!(
        numbers(&parent_after),
        numbers(&parent_fds),
        "{parent_after:?}"
    );
    assert_eq!(
        numbers(&child_after),
        numbers(&child_fds),
        "{child_after:?}"
    );
    // The pipe joins the two restored processes: the parent's read end (fd 4 after the
    // shared file at 3) and the child's write end (fd 5) are one pipe.
    let read_end = target(&parent_after, 4);
    let write_end = target(&child_after, 5);
    assert!(read_end.starts_with("pipe:"), "{parent_after:?}");
    assert_eq!(read_end, write_end, "{parent_after:?} {child_after:?}");
    assert_eq!(target(&parent_after, 3), target(&child_after, 3));

    // Every remaining line, in order; the child's "C\n" moved the parent's offset too.
    ctl.write_all(b"r").unwrap();
    let mut report = String::new();
    ack.read_to_string(&mut report).unwrap();
    assert_eq!(report, "next 20000 bad 0 pos 4 status 7\n");
    assert_eq!(
        std::fs::read_to_string(root.join("shared")).unwrap(),
        "P\nC\n"
    );
    finish_restore(restore, 0);
}
