//! File locks through dump and restore (tests/progs/locks.c): an flock lock, OFD locks
//! and POSIX record locks held by a program, and its child blocked waiting for one of
//! them. The image holds the flock and OFD locks with their open files and the POSIX
//! locks with the process; after the restore another process (this test) sees every
//! lock held, with its range, type and holder, the child is blocked again, and the
//! program releases its lock (the child then gets it) and takes the others again. A
//! restore is refused, naming the process, while one outside the tree holds a
//! conflicting lock, and leaves nothing behind.

mod common;

use common::{last_line, step};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use common::KillOnDrop;
use pipecr_image::Image;
use pipecr_image::proto::{self, FileLockKind};

/// Whether `/proc/locks` shows `pid` blocked waiting for a POSIX lock.
fn blocked(pid: i32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&"->")
                && cols.get(2) == Some(&"POSIX")
                && cols.get(5) == Some(&pid.to_string().as_str())
        })
}

/// What `F_GETLK` (or `F_OFD_GETLK`) reports for a write lock on `start..start+len` of
/// `file`: the conflicting lock's type and pid.
fn conflict(file: &File, cmd: i32, start: i64, len: i64) -> (i32, i32) {
    let mut fl = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    };
    let arg = match cmd {
        libc::F_GETLK => nix::fcntl::FcntlArg::F_GETLK(&mut fl),
        _ => nix::fcntl::FcntlArg::F_OFD_GETLK(&mut fl),
    };
    nix::fcntl::fcntl(file.as_fd(), arg).unwrap();
    (i32::from(fl.l_type), fl.l_pid)
}

#[test]
fn flock_ofd_and_posix_locks_come_back_held_and_a_waiter_waits_again() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("locks", root) else {
        return;
    };
    let (f1, f2) = (root.join("file1"), root.join("file2"));
    std::fs::write(&f1, b"one").unwrap();
    std::fs::write(&f2, vec![b'2'; 400]).unwrap();
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let mut ctl = common::open_ctl(&root.join("ctl"));
    let mut prog = common::only_stdio(&mut Command::new(&exe))
        .args([
            root.join("out"),
            root.join("ctl"),
            root.join("ack"),
            f1.clone(),
            f2.clone(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program took its locks");
    let out = root.join("out");
    let first = last_line(&out);
    let kid: i32 = first
        .strip_prefix(&format!("pids {pid} "))
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    std::mem::forget(guard);
    let _guard = KillOnDrop(vec![pid, kid]);
    common::wait_until("the child to wait for the lock", || blocked(kid));

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped child to be gone", || {
        !Path::new(&format!("/proc/{kid}")).exists()
    });

    let image = Image::open(&img).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let mut held: Vec<(i32, bool, u64, u64)> = files
        .iter()
        .flat_map(|f| f.locks.iter().map(|l| (l.kind, l.write, l.start, l.len)))
        .collect();
    held.sort_unstable();
    let (flock, ofd, posix) = (
        FileLockKind::Flock as i32,
        FileLockKind::Ofd as i32,
        FileLockKind::Posix as i32,
    );
    assert_eq!(
        held,
        [
            (flock, true, 0, 0),
            (ofd, false, 0, 100),
            (ofd, true, 200, 100)
        ]
    );
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let posix_of = |p: i32| -> Vec<(i32, i32, bool, u64, u64)> {
        let core = cores.iter().find(|c| c.pid == p).unwrap();
        let mut v: Vec<_> = core
            .posix_locks
            .iter()
            .map(|l| (l.kind, l.fd, l.write, l.start, l.len))
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        posix_of(pid),
        [(posix, 5, false, 300, 0), (posix, 5, true, 100, 100)]
    );
    assert_eq!(posix_of(kid), [], "a waiter holds nothing");

    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{text}");
    for want in [
        "posix locks:  fd 5: POSIX write lock on bytes 100..200, fd 5: POSIX read lock on bytes 300..EOF",
        "flock write lock",
        "OFD read lock on bytes 0..100, OFD write lock on bytes 200..300",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // Someone outside the tree holds a conflicting flock lock: refused, naming it.
    let outsider = File::open(&f1).unwrap();
    rustix::fs::flock(
        &outsider,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .unwrap();
    let refused = common::restore_command(&img).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    let me = std::process::id();
    assert!(
        stderr.contains("cannot take its flock write lock again")
            && stderr.contains(&format!("pid {me} (FLOCK lock)")),
        "{stderr}"
    );
    for p in [pid, kid] {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} left behind"
        );
    }
    drop(outsider);
    // A POSIX lock of ours on the range the program's POSIX write lock covers: refused,
    // naming us.
    let fl = libc::flock {
        l_type: libc::F_RDLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 150,
        l_len: 1,
        l_pid: 0,
    };
    let outsider_read = File::open(&f2).unwrap();
    nix::fcntl::fcntl(outsider_read.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&fl)).unwrap();
    let refused = common::restore_command(&img).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("fd 5: its POSIX write lock on bytes 100..200")
            && stderr.contains(&format!("pid {me} (POSIX lock)")),
        "{stderr}"
    );
    for p in [pid, kid] {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} left behind"
        );
    }
    drop(outsider_read);

    let restore = common::restore(&img, pid);
    common::wait_until("the restored child to wait for the lock again", || {
        blocked(kid)
    });
    let (file1, file2) = (File::open(&f1).unwrap(), File::open(&f2).unwrap());
    let wr = i32::from(libc::F_WRLCK as i16);
    let rd = i32::from(libc::F_RDLCK as i16);
    assert_eq!(
        conflict(&file2, libc::F_GETLK, 100, 100),
        (wr, pid),
        "POSIX write"
    );
    assert_eq!(
        conflict(&file2, libc::F_GETLK, 350, 10),
        (rd, pid),
        "POSIX read to EOF"
    );
    assert_eq!(
        conflict(&file2, libc::F_OFD_GETLK, 0, 100),
        (rd, -1),
        "OFD read"
    );
    assert_eq!(
        conflict(&file2, libc::F_OFD_GETLK, 250, 1),
        (wr, -1),
        "OFD write"
    );
    assert_eq!(
        rustix::fs::flock(&file1, rustix::fs::FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK),
        "the flock lock is held"
    );
    step(&mut ctl, &mut ack, b'u');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// `flock -n FILE` exit status: 0 when the lock is free, 1 when someone holds it.
fn flock_free(file: &Path) -> bool {
    let st = Command::new("flock")
        .arg("-n")
        .arg(file)
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    match st.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("flock -n: {other:?}"),
    }
}

/// A real program: `flock(1)` (util-linux) holding a lock while its command (a shell
/// waiting for a line on a FIFO) runs. After the restore the lock is held again; once the
/// command has its line it finishes, flock exits 0 and the lock is free.
#[test]
fn flock_1_holds_its_lock_across_a_restore() {
    if !common::capable() {
        return;
    }
    assert!(
        common::have("flock"),
        "flock(1) (util-linux) is needed: .ci/run installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lock = root.join("lock");
    std::fs::write(&lock, b"").unwrap();
    let fifo = root.join("line");
    common::mkfifo(&fifo);
    let mut feed = common::open_ctl(&fifo);
    let out = root.join("out");
    let script = format!(
        "read x < '{}'; echo \"got $x\" > '{}'",
        fifo.display(),
        out.display()
    );
    let mut prog = common::only_stdio(&mut Command::new("flock"))
        .arg(&lock)
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    common::wait_until("flock to start its command", || {
        !common::children(pid).is_empty()
    });
    let sh = common::children(pid)[0];
    std::mem::forget(guard);
    let _guard = KillOnDrop(vec![pid, sh]);
    common::wait_in(sh, "pipe_read");
    assert!(!flock_free(&lock), "flock holds its lock");

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped shell to be gone", || {
        !Path::new(&format!("/proc/{sh}")).exists()
    });
    assert!(flock_free(&lock), "the dump killed the tree and its lock");

    let restore = common::restore(&img, pid);
    assert!(
        !flock_free(&lock),
        "the restored flock holds its lock again"
    );
    feed.write_all(b"hello\n").unwrap();
    common::finish_restore(restore, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "got hello\n");
    assert!(flock_free(&lock), "released when its command finished");
}

/// Holds a POSIX lock on bytes 0-9 of argv[1] (Python's `fcntl.lockf`), says so, waits for
/// a line on the FIFO argv[2], writes it into the file under the lock, releases it.
const LOCKF_PY: &str = r#"
import fcntl, sys
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
print("locked", flush=True)
line = open(sys.argv[2]).readline()
f.write(line)
f.flush()
fcntl.lockf(f, fcntl.LOCK_UN, 10, 0)
print("done", flush=True)
"#;

/// A real program: Python's `fcntl.lockf` holding a record lock while it waits. After the
/// restore another process sees the lock held by the same pid; the program then writes
/// under it and releases it.
#[test]
fn python_lockf_holds_its_record_lock_across_a_restore() {
    if !common::capable() {
        return;
    }
    assert!(
        common::have("python3"),
        "python3 is needed: .ci/run installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("data");
    std::fs::write(&data, b"0123456789abcdef").unwrap();
    let fifo = root.join("line");
    common::mkfifo(&fifo);
    let mut feed = common::open_ctl(&fifo);
    let script = root.join("lockf.py");
    std::fs::write(&script, LOCKF_PY).unwrap();
    let out = root.join("out");
    let mut prog = common::only_stdio(&mut Command::new("python3"))
        .arg(&script)
        .arg(&data)
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    common::wait_until("the program to take its lock", || {
        std::fs::read_to_string(&out).unwrap() == "locked\n"
    });
    common::wait_in(pid, "pipe_read");
    let file = File::open(&data).unwrap();
    let wr = i32::from(libc::F_WRLCK as i16);
    assert_eq!(conflict(&file, libc::F_GETLK, 0, 10), (wr, pid));

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    assert_eq!(
        conflict(&file, libc::F_GETLK, 0, 10).0,
        i32::from(libc::F_UNLCK as i16),
        "the dump killed the program and its lock"
    );

    let restore = common::restore(&img, pid);
    assert_eq!(
        conflict(&file, libc::F_GETLK, 0, 10),
        (wr, pid),
        "held again by the restored program"
    );
    feed.write_all(b"hello\n").unwrap();
    common::finish_restore(restore, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "locked\ndone\n");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "hello\n6789abcdef");
    assert_eq!(
        conflict(&file, libc::F_GETLK, 0, 10).0,
        i32::from(libc::F_UNLCK as i16)
    );
}
