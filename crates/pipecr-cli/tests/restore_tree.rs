//! `pipecr restore` brings back a tree: a parent and the child it forked, both with their
//! PIDs and in-memory counters, the child still the parent's child (the parent's
//! `waitpid` returns the child's exit status after restore).
//!
//! The program (tests/progs/family.c) gives each process its own control and ack FIFOs
//! and output file, so the test drives each one with ready bytes only. The test process
//! makes itself a child subreaper so that the original child, orphaned when both are
//! killed after the dump, is reaped here and its PID is free again.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::ppid as ppid_of;
use common::{
    KillOnDrop, build, capable, children, dump, finish_restore, mkfifo, open_ctl, reap, restore,
    restore_command, set_subreaper,
};

/// One process's control and ack FIFOs and output file.
struct Ends {
    ctl: File,
    ack: File,
    out: std::path::PathBuf,
}

impl Ends {
    /// Sends one command byte, waits for the acknowledgement, returns the output so far.
    fn step(&mut self, cmd: u8) -> String {
        self.ctl.write_all(&[cmd]).unwrap();
        let mut b = [0u8; 1];
        self.ack
            .read_exact(&mut b)
            .expect("the program acknowledges the command");
        std::fs::read_to_string(&self.out).unwrap()
    }
}

#[test]
fn parent_and_child_come_back_related() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("family", root) else {
        return;
    };
    for name in ["ctl", "ack", "cctl", "cack"] {
        mkfifo(&root.join(name));
    }
    // Read-write: never "no reader", and kept open while the program is gone.
    let (ctl, cctl) = (open_ctl(&root.join("ctl")), open_ctl(&root.join("cctl")));
    set_subreaper();
    let mut prog = Command::new(&exe)
        .args(
            ["out", "ctl", "ack", "cout", "cctl", "cack"]
                .iter()
                .map(|n| root.join(n)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![ppid]);
    let mut parent = Ends {
        ctl,
        ack: File::open(root.join("ack")).unwrap(),
        out: root.join("out"),
    };
    let mut child = Ends {
        ctl: cctl,
        ack: File::open(root.join("cack")).unwrap(),
        out: root.join("cout"),
    };
    let [cpid] = children(ppid)[..] else {
        panic!("one child: {:?}", children(ppid))
    };
    guard.0.push(cpid);
    parent.step(b'n');
    parent.step(b'n');
    assert_eq!(child.step(b'n'), "child 1\n");

    let img = root.join("img");
    dump(ppid, &img, &["--leave-running", "--read-handlers"]);
    drop(guard);
    prog.wait().unwrap();
    // Orphaned when its parent died: ours to reap (we are a subreaper).
    reap(&[cpid]);

    let restore = restore(&img, ppid);
    let _guard = KillOnDrop(vec![ppid, cpid]);
    assert_eq!(ppid_of(cpid), Some(ppid), "the restored child's parent");

    assert_eq!(parent.step(b'n'), "parent 1\nparent 2\nparent 3\n");
    assert_eq!(child.step(b'n'), "child 1\nchild 2\n");
    // The restored tree can be dumped again; its output files are put back as they were
    // at this dump before that image is restored below.
    let img2 = root.join("img2");
    dump(ppid, &img2, &["--leave-running", "--read-handlers"]);
    let saved_out = std::fs::metadata(&parent.out).unwrap();
    child.ctl.write_all(b"q").unwrap();
    // The parent's waitpid returns the child's exit status: its count.
    assert_eq!(
        parent.step(b'w'),
        "parent 1\nparent 2\nparent 3\nchild exited 2\n"
    );
    parent.ctl.write_all(b"q").unwrap();
    finish_restore(restore, 0);

    // A failed restore leaves nothing behind. With the files as at the second dump but
    // without the executable, both processes are created and seized, and the areas mapped
    // from it cannot be restored: both are killed.
    let f = OpenOptions::new().write(true).open(&parent.out).unwrap();
    f.set_len(saved_out.len()).unwrap();
    f.set_modified(saved_out.modified().unwrap()).unwrap();
    drop(f);
    // A directory where the executable was: it passes the check that the files exist,
    // made before anything is created, and fails only when mapped, half-way.
    std::fs::remove_file(&exe).unwrap();
    std::fs::create_dir(&exe).unwrap();
    for (image, what) in [
        (&img2, "could not be restored"),
        (&img, "changed since the dump"),
    ] {
        let out = restore_command(image).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("nothing was left running"), "{err}");
        assert!(err.contains(what), "{err}");
        eprintln!("refused as expected: {err}");
        for pid in [ppid, cpid] {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid}: {err}"
            );
        }
    }
}
