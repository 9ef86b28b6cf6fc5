//! userfaultfds through dump and restore (tests/progs/uffd.c). The program holds a
//! userfaultfd at fd 10 (`UFFD_FEATURE_THREAD_ID`) with a 16-page anonymous area
//! registered for missing faults, served by a handler thread waiting in `read(2)` with
//! `UFFDIO_COPY`. The image holds the features and the one range with its mode; after the
//! restore the main thread touches a page never touched before and gets the handler's
//! bytes, and the handler saw the fault at that page's address from that thread.
//!
//! A fault waiting for an answer at the dump (a second thread touching a page of an
//! `O_NONBLOCK` userfaultfd nobody serves yet) is not lost: stopping the thread takes it
//! out of the wait, the dump saves it at the faulting instruction, and after the restore
//! the fault comes again and the program serves it. Write-protected pages, and a second
//! userfaultfd in a process with registered ranges, are refused at dump, naming the
//! process, the descriptor and why, and the program runs on.
//!
//! The program is driven by ready bytes on FIFOs only; the restore runs in the `pipecr`
//! binary.

mod common;

use common::{last_line, step};
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

use common::{KillOnDrop, PIPECR};
use pipecr_image::{Image, proto};

/// `UFFD_FEATURE_THREAD_ID`.
const THREAD_ID: u64 = 1 << 8;

#[test]
fn a_userfaultfd_comes_back_registered_and_its_handler_serves_a_new_fault() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("uffd", root).expect("cc builds tests/progs/uffd.c");
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program registered its area");
    let out = root.join("out");
    assert_eq!(last_line(&out), "ready");

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("the dumped process to be gone", || {
        common::state(pid).is_none()
    });

    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS).unwrap();
    let (file, u) = files
        .iter()
        .find_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Userfaultfd(u)) => Some((f, u)),
            _ => None,
        })
        .expect("the image holds the userfaultfd");
    let at: Vec<(i32, bool)> = tables
        .iter()
        .flat_map(|t| &t.descriptors)
        .filter(|d| d.file_id == file.id)
        .map(|d| (d.fd, d.cloexec))
        .collect();
    assert_eq!(at, [(10, true)]);
    assert_eq!(
        file.flags & libc::O_NONBLOCK as u32,
        0,
        "a blocking userfaultfd"
    );
    assert!(u.initialized);
    assert_eq!(u.features, THREAD_ID);
    let page = rustix::param::page_size() as u64;
    let ranges: Vec<(u64, u32)> = u.ranges.iter().map(|r| (r.end - r.start, r.mode)).collect();
    assert_eq!(
        ranges,
        [(16 * page, 1)],
        "one area of 16 pages, missing mode"
    );
    // The range is an area of the saved memory, registered there.
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let vma = mms[0]
        .vmas
        .iter()
        .find(|v| v.start == u.ranges[0].start)
        .expect("an area at the range's start");
    assert_eq!(vma.end, u.ranges[0].end);
    assert!(vma.vm_flags.iter().any(|f| f == "um"), "{:?}", vma.vm_flags);
    // `show` says what it is.
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    let want = format!(
        "userfaultfd, features 0x100, registered {:#x}-{:#x} (missing)",
        u.ranges[0].start, u.ranges[0].end
    );
    assert!(text.contains(&want), "{text}");

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    let link = std::fs::read_link(format!("/proc/{pid}/fd/10")).unwrap();
    assert_eq!(link.to_str(), Some("anon_inode:[userfaultfd]"));
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// Dumps the tree of `pid` and returns the error it printed (the dump must fail and leave
/// no image).
fn refused(pid: i32, img: &std::path::Path) -> String {
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(!img.exists());
    stderr
}

/// Starts tests/progs/uffd.c in `mode` (`pending`, `wp`) driven through FIFOs in `root`
/// and waits for its ready ack: (the program, its control FIFO, its ack FIFO).
fn start(exe: &std::path::Path, root: &std::path::Path, mode: &str) -> (Child, File, File) {
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let ctl = common::open_ctl(&root.join("ctl"));
    let prog = Command::new(exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .arg(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program is ready");
    std::mem::forget(guard);
    (prog, ctl, ack)
}

#[test]
fn a_fault_waiting_at_the_dump_is_raised_again_after_the_restore_and_served() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("uffd", root).expect("cc builds tests/progs/uffd.c");
    let (mut prog, mut ctl, mut ack) = start(&exe, root, "pending");
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/10")).unwrap();
    assert!(info.contains("pending:\t1\n"), "{info}");

    // Stopping the faulting thread takes it out of the wait (the kernel raises the fault
    // again when it runs): the dump sees no fault waiting and saves the thread at the
    // faulting instruction.
    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("the dumped process to be gone", || {
        common::state(pid).is_none()
    });
    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let file = files
        .iter()
        .find(|f| matches!(f.kind, Some(proto::open_file::Kind::Userfaultfd(_))))
        .expect("the image holds the userfaultfd");
    assert_ne!(file.flags & libc::O_NONBLOCK as u32, 0, "saved O_NONBLOCK");

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        last_line(&root.join("out")),
        "ok",
        "the restored program's own check"
    );
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn write_protected_pages_are_refused_and_the_program_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("uffd", root).expect("cc builds tests/progs/uffd.c");
    let (mut prog, mut ctl, mut ack) = start(&exe, root, "wp");
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);

    let stderr = refused(pid, &root.join("img"));
    assert!(
        stderr.contains(&format!(
            "pid {pid} fd 10: userfaultfd with write-protected pages (the first at 0x"
        )) && stderr.contains("registering again protects none"),
        "{stderr}"
    );
    // Resumed untouched: page 0 is still protected, and its bytes are there.
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&root.join("out")), "ok");
    ctl.write_all(b"q").unwrap();
    assert!(prog.wait().unwrap().success());
}

#[test]
fn two_userfaultfds_in_a_process_with_registered_ranges_are_refused_and_it_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("uffd", root).expect("cc builds tests/progs/uffd.c");
    let (mut prog, mut ctl, mut ack) = start(&exe, root, "two");
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);

    let stderr = refused(pid, &root.join("img"));
    assert!(
        stderr.contains(&format!(
            "pid {pid} fd 10: userfaultfd (one of 2 in a process with registered ranges: \
             smaps does not say which ranges are whose) is not supported"
        )),
        "{stderr}"
    );
    // Resumed untouched: the handler still serves a new fault.
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&root.join("out")), "ok");
    ctl.write_all(b"q").unwrap();
    assert!(prog.wait().unwrap().success());
}
