//! `pipecr restore` brings back who a process is: its personality, its user and group
//! ids (real, effective, saved, filesystem), its supplementary groups and capability
//! sets; and it refuses, before creating anything, to give a process credentials the
//! restorer could not give it.
//!
//! The program (tests/progs/identity.c) sets its personality and, started as root,
//! becomes uid 1000/1003/1004, gid 1000/1001/1002 with groups 1001 1002 and only
//! CAP_NET_BIND_SERVICE; it records that and, per byte read from a control FIFO, compares
//! what it is now with the record and acknowledges on a second FIFO.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{KillOnDrop, PIPECR};

struct Dumped {
    _dir: tempfile::TempDir,
    root: PathBuf,
    img: PathBuf,
    pid: u32,
    ctl: File,
    ack: File,
}

/// Builds and starts the program (as root: it changes its ids), checks its first report,
/// dumps it and kills it.
fn dumped() -> Option<Dumped> {
    if !common::capable() {
        return None;
    }
    if !rustix::process::geteuid().is_root() || common::effective_caps() & (0b11 << 6) != 0b11 << 6
    {
        eprintln!("skipped: the program changes its ids: needs root with CAP_SETUID/SETGID");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let exe = common::build("identity", &root)?;
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, &root);
    let pid = prog.id();
    let guard = KillOnDrop(vec![pid as i32]);
    let line = step(&root, &mut ctl, &mut ack);
    assert_eq!(line, EXPECTED, "before the dump");
    let img = root.join("img");
    common::dump(pid as i32, &img, &["--leave-running"]);
    drop(guard);
    prog.wait().unwrap();
    Some(Dumped {
        _dir: dir,
        root,
        img,
        pid,
        ctl,
        ack,
    })
}

/// What the program reports when it is what it made itself: ids real, effective, saved,
/// fs; personality ADDR_NO_RANDOMIZE | UNAME26; CAP_NET_BIND_SERVICE effective.
const EXPECTED: &str = "uid=1000,1003,1004,1003 gid=1000,1001,1002,1001 persona=0x60000 \
                        groups=1001,1002 caps=0x400: same";

/// Sends one command byte, waits for the acknowledgement, returns the last line printed.
fn step(root: &Path, ctl: &mut File, ack: &mut File) -> String {
    ctl.write_all(b"c").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the command");
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    out.lines().last().unwrap().to_owned()
}

#[test]
fn ids_groups_capabilities_and_personality_come_back() {
    let Some(mut d) = dumped() else { return };
    let restore = common::restore(&d.img, d.pid as i32);
    let _guard = KillOnDrop(vec![d.pid as i32]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "1000 1003 1004 1003");
    assert_eq!(field("Gid:"), "1000 1001 1002 1001");
    assert_eq!(field("Groups:"), "1001 1002");
    assert_eq!(field("CapEff:"), "0000000000000400");
    assert_eq!(field("CapPrm:"), "0000000000000400");
    assert_eq!(field("CapInh:"), "0000000000000400");
    let persona = std::fs::read_to_string(format!("/proc/{}/personality", d.pid)).unwrap();
    assert_eq!(persona.trim(), "00060000");
    // From inside: everything it recorded before the dump, itself included the
    // dumpable flag its own setresuid cleared.
    assert_eq!(step(&d.root, &mut d.ctl, &mut d.ack), EXPECTED);
    d.ctl.write_all(b"q").unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restored program: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn credentials_the_restorer_lacks_are_refused_before_anything_runs() {
    let Some(d) = dumped() else { return };
    // Root, but without CAP_SETUID and CAP_SETGID (gone from the bounding set, so from
    // the permitted set after exec).
    let out = Command::new("setpriv")
        .args(["--bounding-set=-setuid,-setgid", PIPECR, "restore", "-D"])
        .arg(&d.img)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: cannot run setpriv: {e}");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "pid {}: cannot restore user ids 1000/1003/1004 (fs 1003): needs CAP_SETUID",
            d.pid
        )),
        "{err}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", d.pid)).exists(),
        "nothing is created"
    );
}
