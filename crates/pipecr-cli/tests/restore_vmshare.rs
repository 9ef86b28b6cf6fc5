//! Processes that share their parent's address space without being its threads come back
//! sharing it (tests/progs/vmshare.c): a child created with `clone(CLONE_VM |
//! CLONE_SIGHAND)` shares the parent's memory and its table of signal handlers (a handler
//! either installs after the restore is the other's; the parent's handler runs in the
//! child and counts in the shared memory), and one created with `clone(CLONE_VM)` alone
//! (a vfork or posix_spawn child's window) shares the memory and keeps its own handlers.
//! Same PIDs, same parent; the children's exit statuses reach the parent. The program
//! checks all this itself after the restore. Either child dumped without its parent is
//! refused (the memory would be shared with a process outside the tree).
//!
//! The program is driven by ready bytes on FIFOs only; the restore runs in the `pipecr`
//! binary.

mod common;

use common::step;
use std::io::Read;
use std::path::Path;

use common::KillOnDrop;
use pipecr_image::{Image, proto};

fn last_line(out: &Path) -> String {
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_shared_address_space_and_handler_table_come_back_shared() {
    round_trip(&[]);
}

/// The same from a dump that lets the tree run on (its memory read from copy-on-write
/// snapshots), the original killed afterwards.
#[test]
fn a_shared_address_space_comes_back_shared_from_a_dump_left_running() {
    round_trip(&["--leave-running"]);
}

fn round_trip(options: &[&str]) {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("vmshare", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program and its children run");
    let out = root.join("out");
    let first = last_line(&out);
    let pids: Vec<i32> = first
        .strip_prefix("pids ")
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let [h, m] = pids[..] else { panic!("{first}") };
    std::mem::forget(guard);
    let _guard = KillOnDrop(vec![pid, h, m]);
    // A child dumped without the parent whose memory it shares is refused, and the
    // tree runs on untouched.
    for (child, what) in [
        (h, "its address space (CLONE_VM) outside the tree"),
        (m, "its address space (CLONE_VM) outside the tree"),
    ] {
        let img = root.join(format!("alone-{child}"));
        let refused = std::process::Command::new(common::PIPECR)
            .args(["dump", "-t", &child.to_string(), "-D"])
            .arg(&img)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{err}");
        assert!(
            err.contains(&format!("pid {child} shares {what} with pid {pid}")),
            "{err}"
        );
        assert!(!img.exists(), "no image is left");
    }
    // Before the dump, the program's own check passes (what the restore must keep).
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the program's check before the dump");

    let img = root.join("img");
    common::dump(pid, &img, options);
    if !options.is_empty() {
        common::kill_tree(&[pid, h, m]);
    }
    prog.wait().unwrap();
    for p in [h, m] {
        common::wait_until("the dumped children to be gone", || {
            !Path::new(&format!("/proc/{p}")).exists()
        });
    }
    let image = Image::open(&img).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    let rec = |p: i32| tree.iter().find(|r| r.pid == p).unwrap().clone();
    assert_eq!(
        [rec(pid), rec(h), rec(m)].map(|r| (r.shares_vm_with, r.shares_sighand_with)),
        [(0, 0), (pid, pid), (pid, 0)]
    );
    // The memory is saved once, with the parent.
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let mm = |p: i32| mms.iter().find(|r| r.pid == p).unwrap().clone();
    assert!(!mm(pid).vmas.is_empty());
    assert!(mm(h).vmas.is_empty() && mm(h).pages.is_empty());
    assert!(mm(m).vmas.is_empty() && mm(m).pages.is_empty());
    let show = std::process::Command::new(common::PIPECR)
        .args(["show"])
        .arg(&img)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains(&format!(
            "shares its address space (CLONE_VM) with pid {pid}"
        )) && show.contains(&format!(
            "shares its signal handlers (CLONE_SIGHAND) with pid {pid}"
        )),
        "{show}"
    );

    let restore = common::restore(&img, pid);
    for p in [h, m] {
        assert_eq!(common::ppid(p), Some(pid), "pid {p} is the parent's child");
    }
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    step(&mut ctl, &mut ack, b'q');
    assert_eq!(last_line(&out), "exits ok", "the children's exit statuses");
    common::finish_restore(restore, 0);
}
