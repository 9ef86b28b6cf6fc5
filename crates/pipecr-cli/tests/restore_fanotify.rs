//! `pipecr dump` and `restore` of a fanotify group (tests/progs/fanotify.c): an inode
//! mark with an ignore mask, a mount mark and a filesystem mark, all on a tmpfs the test
//! mounts for itself (unmounted at the end), so that no one else's files make events.
//!
//! - The group comes back with the same fdinfo (flags, event flags, each mark's object,
//!   masks and mark flags), and its marks report accesses made after restore with
//!   descriptors of the right files; the program checks all of it from inside.
//! - A group holding unread events is refused, naming the bytes, and the tree runs on.
//! - A restore without CAP_SYS_ADMIN refuses before it creates any process.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::KillOnDrop;

/// A tmpfs mounted at a directory of its own, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir(at).unwrap();
        rustix::mount::mount(
            "pipecr-test",
            at,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mount tmpfs");
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Starts `exe OUT CTL ACK DIR` (a program driven through FIFOs, as
/// [`common::start_driven`] starts them) and waits for its ready byte.
fn start(exe: &Path, root: &Path, dir: &Path) -> (Child, File, File) {
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let ctl = common::open_ctl(&root.join("ctl"));
    let prog = Command::new(exe)
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(vec![prog.id() as i32]);
    let mut ack = File::open(root.join("ack")).unwrap();
    std::mem::forget(guard);
    assert!(common::readable_within(&ack, common::DEADLINE));
    ack.read_exact(&mut [0u8; 1]).unwrap();
    (prog, ctl, ack)
}

/// Sends one command byte and waits for its ack.
fn command(ctl: &mut File, ack: &mut File, c: u8) {
    ctl.write_all(&[c]).unwrap();
    assert!(
        common::readable_within(ack, common::DEADLINE),
        "no answer to {}",
        c as char
    );
    ack.read_exact(&mut [0u8; 1]).unwrap();
}

/// `pipecr dump -t PID -D IMG` that is expected to fail; its stderr.
fn dump_fails(pid: i32, img: &Path) -> String {
    let out = Command::new(common::PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the dump of {pid} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn fanotify_group_comes_back_with_its_marks_and_reports_events() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mnt = Tmpfs::mount(&root.join("mnt"));
    let exe = common::build("fanotify", root).expect("cc builds tests/progs/fanotify.c");
    let (mut prog, mut ctl, mut ack) = start(&exe, root, &mnt.0);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let out = || std::fs::read_to_string(root.join("out")).unwrap();
    assert_eq!(out(), "ready\n");

    // An event waiting in the group: the dump is refused, naming it, and the tree runs
    // on (it reads the event, then answers).
    std::fs::write(mnt.0.join("watched"), b"by the test").unwrap();
    let err = dump_fails(pid, &root.join("refused"));
    assert!(
        err.contains(&format!("pid {pid} fd 7: fanotify group holding "))
            && err.contains(" bytes of unread events (pipecr cannot read them without consuming them, nor queue them again) is not supported"),
        "{err}"
    );
    command(&mut ctl, &mut ack, b'd');

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    common::wait_child(&mut prog, "the dumped program to be gone");
    let show = Command::new(common::PIPECR)
        .arg("show")
        .arg(&img)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    let m = mnt.0.display();
    assert!(
        show.contains(&format!(
            "fanotify group (notification class), marks: filesystem {m} for \
             FAN_CLOSE_NOWRITE; mount {m} for FAN_OPEN; inode {m}/watched for \
             FAN_MODIFY|FAN_CLOSE_WRITE ignoring FAN_OPEN"
        )),
        "{show}"
    );

    // Without CAP_SYS_ADMIN the restore refuses before it creates anything.
    let no_admin = Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"])
        .arg(common::PIPECR)
        .args(["restore", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) is needed by this test");
    let err = String::from_utf8_lossy(&no_admin.stderr);
    // Exit code 6: this machine (here, this restorer) lacks a privilege.
    assert_eq!(no_admin.status.code(), Some(6), "{err}");
    // Refused by pipecr itself before it made any process (a new process that failed to
    // set up would be named: "pid N: the new process failed to set up: ...").
    assert!(
        err.contains(&format!(
            "restore of pid {pid} failed; nothing was left running: open file "
        )) && err.contains(
            " (fanotify group): fanotify_init (needs CAP_SYS_ADMIN, which this restore lacks) \
             failed"
        ),
        "{err}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "a process was left behind"
    );

    let restore = common::restore(&img, pid);
    command(&mut ctl, &mut ack, b'v');
    assert_eq!(out().lines().last(), Some("ok"), "{}", out());
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}
