//! pidfds and `O_PATH` descriptors through dump and restore (tests/progs/pidfds.c). The
//! program holds pidfds of a live child (blocking and `PIDFD_NONBLOCK`), of itself and of
//! its own main thread and of its worker thread (`PIDFD_THREAD`), of a zombie child, of a child that exited 9 and
//! was reaped and of one killed by SIGTERM and reaped; and `O_PATH` descriptors of a file,
//! of a directory, of a symbolic link itself (`O_NOFOLLOW`) and of a link removed after it
//! was opened, and of a directory removed after it was opened. After the restore the program checks, from inside: the same flags, each
//! pidfd naming the restored process (fdinfo `Pid:`), readable exactly when its process
//! has exited, the reaped ones' statuses through `PIDFD_GET_INFO`, `waitid(P_PIDFD)` on
//! the zombie and on the live child after `pidfd_send_signal`, the `O_PATH` ones naming
//! the same file and directory, the links pointing where they did.
//!
//! A pidfd of a process outside the tree is refused at dump, naming it, and the process
//! runs on. The test is a child subreaper: the children, orphaned when the dump kills
//! their parent, come to it, and it reaps them so their PIDs are free for the restore.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{KillOnDrop, PIPECR};
use pipecr_image::{Image, proto};

#[test]
fn pidfds_and_o_path_descriptors_come_back_naming_the_same_things() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("pidfds", root).expect("cc builds tests/progs/pidfds.c");
    std::fs::write(root.join("file"), b"x").unwrap();
    std::os::unix::fs::symlink("file", root.join("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("gone")).unwrap();
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program holds its pidfds");
    let out = root.join("out");
    let line = last_line(&out);
    let kids: Vec<i32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let (kid, zombie, worker) = (kids[0], kids[1], kids[2]);
    assert!(!root.join("gone").exists());

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&kids[..2]);
    for &p in [pid, kid, zombie, worker].iter() {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    // The image: every pidfd with what it names.
    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut pidfds: Vec<(i32, bool, i32, i32)> = files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Pidfd(p)) => {
                Some((p.pid, p.thread, p.exit_status, p.thread_of))
            }
            _ => None,
        })
        .collect();
    pidfds.sort();
    let mut want = vec![
        (0, false, 9 << 8, 0),
        (0, false, libc::SIGTERM, 0),
        (kid, false, 0, 0),
        (kid, false, 0, 0),
        (pid, false, 0, 0),
        (pid, true, 0, 0),
        (worker, true, 0, pid),
        (zombie, false, 0, 0),
    ];
    want.sort();
    assert_eq!(pidfds, want);
    let links: Vec<(String, String, bool)> = files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Symlink(l)) => {
                Some((l.path.clone(), l.target.clone(), l.unlinked))
            }
            _ => None,
        })
        .collect();
    let root_s = root.display().to_string();
    assert_eq!(
        links,
        [
            (format!("{root_s}/link"), "file".to_owned(), false),
            (format!("{root_s}/gone"), "nowhere".to_owned(), true),
        ]
    );

    // `show` says what each pidfd names.
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    for want in [
        format!("pidfd of process {kid}"),
        format!("pidfd of thread {pid}"),
        format!("pidfd of thread {worker} of process {pid}"),
        "pidfd of a reaped process, exit status 0x900".to_owned(),
        format!("symbolic link {root_s}/gone -> nowhere (removed)"),
        format!("directory {root_s}/sub (removed)"),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }

    let _guard = KillOnDrop(vec![pid, kid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    assert!(
        !root.join("gone").exists() && !root.join("sub").exists(),
        "the removed link and directory are removed again"
    );
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_pidfd_of_a_process_outside_the_tree_is_refused_and_the_tree_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The shell holds a pidfd of its parent (the test, outside the tree) at fd 5, then
    // waits on a FIFO; python3 opens it since the shell cannot.
    let fifo = dir.path().join("go");
    common::mkfifo(&fifo);
    let me = std::process::id();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        &format!(
            "import os, sys\nfd = os.pidfd_open({me})\nif fd != 5:\n    os.dup2(fd, 5)\n    os.close(fd)\n\
             print('ready', flush=True)\n\
             open({fifo:?}).read()\nprint('resumed', flush=True)",
            fifo = fifo.display().to_string()
        ),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = child.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");

    let img = dir.path().join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pid {pid} fd 5: pidfd of process {me}, which is outside the tree"
        )),
        "{stderr}"
    );
    assert!(!img.exists());
    // Resumed untouched: it goes on when told.
    std::fs::write(&fifo, b"").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "resumed\n");
    assert!(child.wait().unwrap().success());
}

/// A pidfd of a thread that a child inherited is refused at dump, naming the thread, its
/// process and the other holder (a restore opens a thread's pidfd in that thread's own
/// process), and the tree runs on.
#[test]
fn a_thread_pidfd_held_by_another_process_is_refused_and_the_tree_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A worker thread blocked reading stdin (a pipe from the test); its pidfd at fd 5 in
    // the process and in a child forked after it was opened, blocked reading stdin too.
    // Each ends on one byte.
    let script = "import os, threading\n\
         r, w = os.pipe()\n\
         def work():\n    os.write(w, str(threading.get_native_id()).encode())\n    os.read(0, 1)\n\
         t = threading.Thread(target=work)\nt.start()\n\
         tid = int(os.read(r, 32))\n\
         fd = os.pidfd_open(tid, os.O_EXCL)\n\
         if fd != 5:\n    os.dup2(fd, 5)\n    os.close(fd)\n\
         kid = os.fork()\n\
         if kid == 0:\n    os.read(0, 1)\n    os._exit(0)\n\
         print('ready', tid, kid, flush=True)\n\
         t.join()\nos.waitpid(kid, 0)\nprint('resumed', flush=True)";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        stdout.read_exact(&mut b).unwrap();
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let ids: Vec<i32> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let (tid, kid) = (ids[0], ids[1]);
    let _guard = KillOnDrop(vec![pid, kid]);

    let img = dir.path().join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pidfd of thread {tid} of process {pid}, also held by process {kid} as fd 5"
        )),
        "{stderr}"
    );
    assert!(!img.exists());
    // Resumed untouched: the thread and the child end when told, then the process.
    stdin.write_all(b"xx").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "resumed\n");
    assert!(child.wait().unwrap().success());
}
