//! What processes share that a restore cannot give back shared: a descriptor table or an
//! address space shared with a process other than the parent (a sibling's, through
//! CLONE_FILES | CLONE_PARENT or CLONE_VM | CLONE_PARENT) is refused by a dump that would
//! kill the tree (which runs on), and an image that records it is refused by restore
//! before anything is created. (Tables, filesystem contexts, address spaces and handler
//! tables shared with the parent come back shared: restore_sharing.rs,
//! restore_vmshare.rs.)

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{KillOnDrop, PIPECR};

/// Starts `sharer MODE` and waits for its "ready" line (the child runs).
fn start(mode: &str, dir: &std::path::Path) -> Option<Child> {
    let exe = common::build("sharer", dir)?;
    let mut prog = Command::new(exe)
        .arg(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(prog.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    Some(prog)
}

fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn dump(pid: u32, img: &std::path::Path, options: &[&str]) -> std::process::Output {
    Command::new(PIPECR)
        .arg("dump")
        .args(options)
        .args(["-t", &pid.to_string(), "-D"])
        .arg(img)
        .output()
        .unwrap()
}

#[test]
fn a_parent_waiting_in_vfork_is_refused_and_the_tree_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(mut prog) = start("vfork", dir.path()) else {
        return;
    };
    let [child] = children(prog.id())[..] else {
        panic!("one child: {:?}", children(prog.id()));
    };
    let _guard = KillOnDrop(vec![prog.id() as i32, child]);
    for options in [&[][..], &["--leave-running"][..]] {
        let out = dump(prog.id(), &dir.path().join("img"), options);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{options:?}: {err}");
        assert!(
            err.contains(&format!(
                "thread {0} of pid {0} waits in vfork until its child execs or exits",
                prog.id()
            )),
            "{err}"
        );
        assert!(!dir.path().join("img").exists(), "no image is left");
        // Both still there, untraced: the parent still waits for its child.
        assert!(prog.try_wait().unwrap().is_none());
        for pid in [prog.id() as i32, child] {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            assert!(status.contains("TracerPid:\t0\n"), "{status}");
        }
        assert_eq!(common::state(prog.id() as i32), Some('D'));
    }
}

#[test]
fn a_table_shared_with_a_sibling_is_refused_by_a_killing_dump_and_by_restore() {
    refused_with_a_sibling(
        "sibling",
        "its descriptor table (CLONE_FILES; not through its parent)",
        "a descriptor table shared with pid {first} (CLONE_FILES)",
    );
}

#[test]
fn an_address_space_shared_with_a_sibling_is_refused_by_a_killing_dump_and_by_restore() {
    refused_with_a_sibling(
        "vmsibling",
        "its address space (CLONE_VM; not through its parent)",
        "an address space shared with pid {first} (CLONE_VM)",
    );
}

/// `sharer MODE`: the second child shares `dump_what` with the first; a killing dump
/// refuses it, a `--leave-running` one records it and restore refuses the image, saying
/// `restore_what` (`{first}` is the first child's pid).
fn refused_with_a_sibling(mode: &str, dump_what: &str, restore_what: &str) {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(mut prog) = start(mode, dir.path()) else {
        return;
    };
    let [first, second] = children(prog.id())[..] else {
        panic!("two children: {:?}", children(prog.id()));
    };
    let _guard = KillOnDrop(vec![prog.id() as i32, first, second]);
    let img = dir.path().join("img");
    let out = dump(prog.id(), &img, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("pid {second} shares {dump_what} with pid {first}")),
        "{err}"
    );
    assert!(prog.try_wait().unwrap().is_none(), "the tree runs on");

    // Left running, the image records the shared table; restore refuses it.
    let out = dump(prog.id(), &img, &["--leave-running"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    prog.kill().unwrap();
    prog.wait().unwrap();
    common::kill(first);
    common::kill(second);
    for pid in [first, second] {
        common::wait_until("the children to be gone", || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
    }
    let out = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("nothing was restored")
            && err.contains(&format!(
                "pid {second}: cannot restore {} but not with its parent {}",
                restore_what.replace("{first}", &first.to_string()),
                prog.id()
            )),
        "{err}"
    );
}
