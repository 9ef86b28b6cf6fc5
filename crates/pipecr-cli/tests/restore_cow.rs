//! `pipecr restore` brings back the pages a parent and its child shared copy-on-write
//! as shared again (one frame for both, as after the original `fork`), and each
//! process's own pages as its own: the child's rewritten pages, the pages it dropped
//! (zeros again) and the read-only protection it gave the area, and the parent's.
//!
//! The program (tests/progs/cowpages.c) checks its own memory on request; the test reads
//! the frames through `/proc/PID/pagemap` (root sees frame numbers).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt as _;
use std::process::{Command, Stdio};

use common::{
    KillOnDrop, build, capable, children, dump, finish_restore, mkfifo, open_ctl, reap, restore,
    set_subreaper,
};

const PAGE: u64 = 4096;

/// The frame number of the page at `addr` in `pid`, if present.
fn pfn(pid: i32, addr: u64) -> Option<u64> {
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).unwrap();
    let mut b = [0u8; 8];
    pagemap.read_exact_at(&mut b, addr / PAGE * 8).unwrap();
    let entry = u64::from_ne_bytes(b);
    // Bit 63: present; bits 0-54: the frame (0 unless we may see it).
    (entry >> 63 == 1).then_some(entry & ((1 << 55) - 1))
}

/// Asks for a check of the process's own memory: true when it matched.
fn verified(ctl: &mut File, ack: &mut File) -> bool {
    ctl.write_all(b"v").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap();
    b[0] == b'y'
}

#[test]
fn pages_shared_copy_on_write_come_back_shared() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = build("cowpages", root) else {
        return;
    };
    for name in ["ctl", "ack", "cctl", "cack"] {
        mkfifo(&root.join(name));
    }
    // Read-write: never "no reader", and kept open while the program is gone.
    let (mut ctl, mut cctl) = (open_ctl(&root.join("ctl")), open_ctl(&root.join("cctl")));
    set_subreaper();
    let mut prog = Command::new(&exe)
        .args(["ctl", "ack", "cctl", "cack"].iter().map(|n| root.join(n)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = prog.id() as i32;
    let mut guard = KillOnDrop(vec![ppid]);
    let mut ack = open_ctl(&root.join("ack"));
    let mut cack = open_ctl(&root.join("cack"));
    let mut msg = [0u8; 17];
    ack.read_exact(&mut msg).unwrap();
    let addr = u64::from_str_radix(std::str::from_utf8(&msg[..16]).unwrap(), 16).unwrap();
    let [cpid] = children(ppid)[..] else {
        panic!("one child: {:?}", children(ppid))
    };
    guard.0.push(cpid);
    assert!(verified(&mut ctl, &mut ack), "the parent, before the dump");
    assert!(verified(&mut cctl, &mut cack), "the child, before the dump");
    let shared = addr;
    let own = addr + 10 * PAGE;
    if pfn(ppid, shared) == Some(0) {
        // The dump tells shared pages by their frames; so does this test.
        eprintln!("skipped: /proc/PID/pagemap shows no frame numbers here (CAP_SYS_ADMIN)");
        drop(guard);
        prog.wait().unwrap();
        reap(&[cpid]);
        return;
    }
    assert_eq!(
        pfn(ppid, shared),
        pfn(cpid, shared),
        "shared before the dump"
    );

    let img = root.join("img");
    dump(ppid, &img, &["--read-handlers"]);
    drop(guard);
    prog.wait().unwrap();
    reap(&[cpid]);

    let restore = restore(&img, ppid);
    let _guard = KillOnDrop(vec![ppid, cpid]);
    assert_eq!(children(ppid), vec![cpid], "the restored parent's children");
    assert!(verified(&mut ctl, &mut ack), "the restored parent's memory");
    assert!(
        verified(&mut cctl, &mut cack),
        "the restored child's memory"
    );
    for page in [0, 9, 45, 63] {
        let at = addr + page * PAGE;
        let (p, c) = (pfn(ppid, at), pfn(cpid, at));
        assert!(
            p.is_some_and(|f| f != 0),
            "page {page} present in the parent"
        );
        assert_eq!(p, c, "page {page}: one frame for parent and child");
    }
    assert_ne!(pfn(ppid, own), pfn(cpid, own), "the child's own page");
    let maps = std::fs::read_to_string(format!("/proc/{cpid}/maps")).unwrap();
    let line = maps
        .lines()
        .find(|l| l.starts_with(&format!("{addr:x}-")))
        .unwrap_or_else(|| panic!("no area at {addr:#x}: {maps}"));
    assert!(
        line.contains(" r--p "),
        "the child's area is read-only: {line}"
    );
    ctl.write_all(b"q").unwrap();
    finish_restore(restore, 0);
}

/// A grandchild that still shares pages copy-on-write with its grandparent, pages its
/// parent (in between) rewrote, shares them again after restore
/// (tests/progs/cowdeep.c).
#[test]
fn pages_shared_with_a_grandchild_come_back_shared() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = build("cowdeep", root).expect("cc builds cowdeep.c");
    set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let p = prog.id() as i32;
    let guard = KillOnDrop(vec![p]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program is set up");
    let out = root.join("out");
    let last = || {
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .last()
            .unwrap_or("")
            .to_owned()
    };
    let line = last();
    let w: Vec<&str> = line.split_whitespace().collect();
    let addr = u64::from_str_radix(w[1], 16).unwrap();
    let (c, g): (i32, i32) = (w[2].parse().unwrap(), w[3].parse().unwrap());
    let mut guard = guard;
    guard.0.extend([c, g]);
    let check = |ctl: &mut File, ack: &mut File| {
        ctl.write_all(b"v").unwrap();
        ack.read_exact(&mut [0u8; 1]).unwrap();
        last()
    };
    assert_eq!(check(&mut ctl, &mut ack), "ok", "before the dump");
    let own = addr;
    if pfn(p, own) == Some(0) {
        eprintln!("skipped: /proc/PID/pagemap shows no frame numbers here (CAP_SYS_ADMIN)");
        return;
    }
    assert_eq!(
        pfn(p, own),
        pfn(g, own),
        "P and G share page 0 before the dump"
    );
    assert_ne!(pfn(p, own), pfn(c, own));

    let img = root.join("img");
    dump(p, &img, &[]);
    drop(guard);
    prog.wait().unwrap();
    reap(&[c, g]);
    for pid in [p, c, g] {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(pid).is_none()
        });
    }

    let restore = restore(&img, p);
    let _guard = KillOnDrop(vec![p, c, g]);
    assert_eq!(check(&mut ctl, &mut ack), "ok", "after the restore");
    for page in [0, 7, 31, 63] {
        let at = addr + page * PAGE;
        assert!(pfn(p, at).is_some_and(|f| f != 0), "page {page} present");
        assert_eq!(pfn(p, at), pfn(g, at), "page {page}: one frame for P and G");
        assert_ne!(pfn(p, at), pfn(c, at), "page {page}: C's own");
    }
    ctl.write_all(b"q").unwrap();
    finish_restore(restore, 0);
}
