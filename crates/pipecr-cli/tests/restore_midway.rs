//! A restore that fails midway, after the checks made before anything is created passed
//! and some processes of the tree already exist, leaves nothing behind: no process with a
//! saved PID (not even a zombie), no child or orphan of the restorer, no process running
//! the program, and no file created or changed beside the image.
//!
//! The tree is tests/progs/family.c (a parent and its child, each with an output file
//! and two FIFOs). The moment is chosen without timing: a fanotify permission mark on
//! the image's `fds.img` holds the restored root when it opens that file (the root reads
//! its descriptor table there, after the restorer's checks and before it creates its
//! child), the test breaks something, and lets the root go on:
//! - a PID taken: a process of the test takes the child's PID;
//! - a file that vanished: the child's output file is removed;
//! - a damaged page file: `pages.img` is cut short (the checks read it whole before).

mod common;

use std::fs::File;
use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
};

/// A dumped family whose original processes are gone.
struct Dumped {
    _dir: tempfile::TempDir,
    root: PathBuf,
    img: PathBuf,
    exe: PathBuf,
    parent: i32,
    child: i32,
}

fn dumped() -> Option<Dumped> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let exe = build("family", &root)?;
    for name in ["ctl", "ack", "cctl", "cack"] {
        mkfifo(&root.join(name));
    }
    let (_ctl, _cctl) = (open_ctl(&root.join("ctl")), open_ctl(&root.join("cctl")));
    let mut prog = only_stdio(&mut Command::new(&exe))
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
    let parent = prog.id() as i32;
    let _guard = KillOnDrop(vec![parent]);
    // Both have opened their FIFOs once the acks open.
    let _ack = File::open(root.join("ack")).unwrap();
    let _cack = File::open(root.join("cack")).unwrap();
    let [child] = children(parent)[..] else {
        panic!("one child: {:?}", children(parent));
    };
    let _guard2 = KillOnDrop(vec![child]);
    let img = root.join("img");
    dump(parent, &img, &[]);
    prog.wait().unwrap();
    // The child was ours to reap (subreaper) once its parent died.
    reap(&[child]);
    wait_until("the dumped child to be gone", || {
        !Path::new(&format!("/proc/{child}")).exists()
    });
    Some(Dumped {
        _dir: dir,
        root,
        img,
        exe,
        parent,
        child,
    })
}

/// Every file beside the image (the image's own are not opened: one of them is held by
/// the mark), with its contents for a regular file and its type for the others (a FIFO
/// is not read).
fn files_beside(d: &Dumped) -> Vec<(PathBuf, Vec<u8>)> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut files = Vec::new();
    let mut queue = vec![d.root.clone()];
    while let Some(dir) = queue.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path == d.img {
                continue;
            }
            let t = e.file_type().unwrap();
            let content = if t.is_dir() {
                queue.push(path.clone());
                b"dir".to_vec()
            } else if t.is_file() {
                std::fs::read(&path).unwrap()
            } else if t.is_fifo() {
                b"fifo".to_vec()
            } else {
                b"other".to_vec()
            };
            files.push((path, content));
        }
    }
    files.sort();
    files
}

/// Processes (zombies included) running the family executable.
fn running(exe: &Path) -> Vec<i32> {
    let deleted = format!("{} (deleted)", exe.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|l| l == exe || l.as_os_str() == deleted.as_str())
        })
        .collect()
}

/// Restores `d`, running `break_it` while the restored root is held at its open of
/// `fds.img`; expects a one-line refusal holding every `wanted` piece and nothing left
/// behind but what `break_it` made (`kept`: PIDs the test holds itself).
fn fails_midway(d: &Dumped, break_it: impl FnOnce(), wanted: &[&str], kept: &[i32]) {
    // Close-on-exec: the restorer must not hold the group (closing it answers whatever
    // is still held).
    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
    )
    .unwrap();
    fan.mark(
        MarkFlags::FAN_MARK_ADD,
        MaskFlags::FAN_OPEN_PERM,
        std::fs::File::open(&d.img).unwrap().as_fd(),
        Some(Path::new(pipecr_image::FDS)),
    )
    .unwrap();
    let mut restore = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&d.img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let restorer = restore.id() as i32;
    let _guard = KillOnDrop(vec![restorer]);
    let mut break_it = Some(break_it);
    let mut before = None;
    while break_it.is_some() {
        for event in fan.read_events().unwrap() {
            let Some(fd) = event.fd() else { continue };
            if event.pid() == d.parent
                && let Some(f) = break_it.take()
            {
                assert_eq!(ppid(d.parent), Some(restorer), "the root is the restorer's");
                assert!(
                    !Path::new(&format!("/proc/{}", d.child)).exists() || kept.contains(&d.child)
                );
                f();
                before = Some(files_beside(d));
            }
            fan.write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW))
                .unwrap();
        }
    }
    // No more holding: later opens go through.
    drop(fan);
    let status = wait_child(&mut restore, "pipecr restore to fail");
    let mut err = String::new();
    restore
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut out = String::new();
    restore
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(!status.success(), "restore succeeded: {out} {err}");
    assert!(out.is_empty(), "{out}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    for w in wanted {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    // Nothing left: no saved PID in use (a zombie has its /proc entry too) but the ones
    // the test holds, no process of the program, no child or orphan of ours (we are a
    // subreaper: whatever the restorer left would come to us), no file changed.
    for pid in [d.parent, d.child] {
        assert!(
            kept.contains(&pid) || !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is left: {err}"
        );
    }
    assert_eq!(running(&d.exe), Vec::<i32>::new(), "{err}");
    let mut ours = children(std::process::id() as i32);
    ours.retain(|p| !kept.contains(p));
    assert_eq!(ours, Vec::<i32>::new(), "children of the test left: {err}");
    assert!(
        before.as_ref() == Some(&files_beside(d)),
        "files beside the image changed: {err}"
    );
    eprintln!("failed midway as expected: {err}");
}

/// Takes `pid` for a process of ours that waits until killed.
fn hold_pid(pid: i32) -> KillOnDrop {
    match pipecr::sys::clone3::clone3_with_tid(0, libc::SIGCHLD, &[pid]) {
        // A copy of one thread of a multi-threaded test: raw system calls only.
        Ok(None) => {
            // None of the test's descriptors (the fanotify group above all) stays open.
            let _ = pipecr::sys::fd::close_all_except(&[]);
            loop {
                rustix::event::pause();
            }
        }
        Ok(Some(p)) => {
            assert_eq!(p.as_raw_nonzero().get(), pid);
            KillOnDrop(vec![pid])
        }
        Err(e) => panic!("cannot take pid {pid}: {e}"),
    }
}

#[test]
fn a_restore_failing_midway_leaves_nothing_behind() {
    if !capable() {
        return;
    }
    set_subreaper();

    // A PID taken after the checks.
    let Some(d) = dumped() else { return };
    let mut holder = None;
    let child = d.child;
    fails_midway(
        &d,
        || holder = Some(hold_pid(child)),
        &[&format!("set_tid {child}"), "File exists"],
        &[child],
    );
    // The process that took the PID is none of the restore's: it ran on, and ends by
    // our SIGTERM, not by a SIGKILL of the restorer's.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).unwrap(),
        nix::sys::wait::WaitStatus::Signaled(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGTERM,
            false
        ),
        "the process holding pid {child}"
    );
    std::mem::forget(holder);

    // A file that vanished.
    let Some(d) = dumped() else { return };
    let cout = d.root.join("cout");
    fails_midway(
        &d,
        || std::fs::remove_file(&cout).unwrap(),
        &[&cout.display().to_string()],
        &[],
    );

    // A damaged page file.
    let Some(d) = dumped() else { return };
    let pages = d.img.join(pipecr_image::PAGES);
    fails_midway(
        &d,
        || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&pages)
                .unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len / 2).unwrap();
        },
        &["pages.img"],
        &[],
    );
}
