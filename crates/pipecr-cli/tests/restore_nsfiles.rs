//! Namespace files held open through dump and restore (tests/progs/nsfiles.c): the
//! program's own net, uts and pid_for_children namespaces, its child's ipc namespace
//! (a process of the tree) and the uts namespace of `unshare --uts sleep`, a process
//! outside the tree (no process of the tree is in it). The image names each by type and
//! inode with the process of the tree it was found in (none for the last, which the
//! restore finds again through the outside process); after the restore, where the tree ran, each descriptor names the same
//! namespace (same inode, same `NS_GET_NSTYPE`) and `setns` into the uts one works,
//! checked by the program itself.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use common::KillOnDrop;
use pipecr_image::{Image, proto};

#[test]
fn namespace_files_come_back_naming_the_same_namespaces() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("nsfiles", root).expect("cc builds tests/progs/nsfiles.c");
    common::set_subreaper();
    let own_uts = std::fs::metadata("/proc/self/ns/uts").unwrap().ino();
    let mut outside = std::process::Command::new("unshare")
        .args(["--uts", "sleep", "1000"])
        .spawn()
        .unwrap();
    let outside_pid = outside.id() as i32;
    let _outside_guard = KillOnDrop(vec![outside_pid]);
    let outside_uts = format!("/proc/{outside_pid}/ns/uts");
    common::wait_until("unshare to enter its own uts namespace", || {
        std::fs::metadata(&outside_uts).is_ok_and(|m| m.ino() != own_uts)
    });
    std::fs::write(root.join("OUTSIDE"), outside_pid.to_string()).unwrap();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program holds its namespace files");
    let out = root.join("out");
    let line = last_line(&out);
    let inodes: Vec<u64> = line
        .strip_prefix("inodes ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let kid = common::children(pid)[0];

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

    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut saved: Vec<(String, u64, i32, String)> = files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Namespace(n)) => Some((
                n.ns_type.clone(),
                n.inode,
                n.owner_pid,
                n.owner_entry.clone(),
            )),
            _ => None,
        })
        .collect();
    saved.sort();
    // The outside uts namespace: no process of the tree is in it.
    let mut want = vec![
        ("net".to_owned(), inodes[0], pid, "net".to_owned()),
        ("uts".to_owned(), inodes[1], pid, "uts".to_owned()),
        ("pid".to_owned(), inodes[2], pid, "pid".to_owned()),
        ("ipc".to_owned(), inodes[3], pid, "ipc".to_owned()),
        ("uts".to_owned(), inodes[4], 0, String::new()),
    ];
    want.sort();
    assert_eq!(saved, want);

    let _guard = KillOnDrop(vec![pid, kid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
    outside.kill().unwrap();
    outside.wait().unwrap();
}

#[test]
fn a_namespace_no_process_is_in_any_more_is_refused_before_anything_is_created() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let own_uts = std::fs::metadata("/proc/self/ns/uts").unwrap().ino();
    let mut outside = std::process::Command::new("unshare")
        .args(["--uts", "sleep", "1000"])
        .spawn()
        .unwrap();
    let outside_pid = outside.id() as i32;
    let outside_guard = KillOnDrop(vec![outside_pid]);
    let outside_uts = format!("/proc/{outside_pid}/ns/uts");
    common::wait_until("unshare to enter its own uts namespace", || {
        std::fs::metadata(&outside_uts).is_ok_and(|m| m.ino() != own_uts)
    });
    let ns_inode = std::fs::metadata(&outside_uts).unwrap().ino();
    // python3 holds the outside uts namespace open at fd 3 and waits.
    let mut cmd = std::process::Command::new("python3");
    cmd.args([
        "-c",
        &format!(
            "import os, sys\nfd = os.open({outside_uts:?}, os.O_RDONLY)\nprint('ready', flush=True)\nsys.stdin.read()"
        ),
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped());
    let mut prog = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut ready = [0u8; 6];
    prog.stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();

    let img = dir.path().join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("the dumped process to be gone", || {
        common::state(pid).is_none()
    });
    // Nobody is in that namespace any more.
    outside.kill().unwrap();
    outside.wait().unwrap();
    drop(outside_guard);

    let out = common::restore_command(&img).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "namespace uts:[{ns_inode}] (held open, no process of the tree in it): no process on this machine is in it any more"
        )),
        "{stderr}"
    );
    assert_eq!(common::state(pid), None, "nothing was created");
}
