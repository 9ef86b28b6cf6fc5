//! Processes that share a kernel object with their parent without being its threads come
//! back sharing it (tests/progs/sharing.c): a child created with `clone(CLONE_FILES)`
//! shares the parent's descriptor table (a descriptor either opens after the restore is
//! open in the other, and not in a third process), and one created with `clone(CLONE_FS)`
//! shares its filesystem context (a `chdir` or `umask` of either is the other's, and not
//! the third's). The program checks all this itself after the restore.
//!
//! The program is driven by ready bytes on FIFOs only; the restore runs in the `pipecr`
//! binary.

mod common;

use common::step;
use std::io::{Read, Write};
use std::path::Path;

use common::KillOnDrop;
use pipecr_image::{Image, proto};

fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_shared_descriptor_table_and_filesystem_context_come_back_shared() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("sharing", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let mut b = [0u8; 1];
    let guard = KillOnDrop(vec![pid]);
    ack.read_exact(&mut b)
        .expect("the program and its children run");
    let out = root.join("out");
    let first = lines(&out).pop().unwrap();
    let pids: Vec<i32> = first
        .strip_prefix("pids ")
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let [files_child, fs_child] = pids[..] else {
        panic!("{first}")
    };
    std::mem::forget(guard);
    let _guard = KillOnDrop(vec![pid, files_child, fs_child]);

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    for p in [files_child, fs_child] {
        common::wait_until("the dumped children to be gone", || {
            !Path::new(&format!("/proc/{p}")).exists()
        });
    }
    let image = Image::open(&img).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    let rec = |p: i32| tree.iter().find(|r| r.pid == p).unwrap().clone();
    assert_eq!(rec(files_child).fd_table, rec(pid).fd_table);
    assert_ne!(rec(fs_child).fd_table, rec(pid).fd_table);
    assert_eq!(
        [rec(pid), rec(files_child), rec(fs_child)].map(|r| r.shares_fs_with),
        [0, 0, pid]
    );

    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        lines(&out).pop().unwrap(),
        "ok",
        "the restored program's own check"
    );
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}
