//! `pipecr dump -D DIR` with a DIR that already exists (issue 11, section 4): an empty
//! one is accepted, as `mkdir DIR && criu dump -D DIR` users expect, and becomes the
//! image; a non-empty one is refused with one line naming it, and left untouched. (A
//! failed dump into an empty DIR leaves it empty: tests/dump_refuse.rs.)
//!
//! The program is tests/progs/counter.c: one count per byte on its control FIFO, one
//! acknowledgement byte back. The test waits for acknowledgements only.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{KillOnDrop, PIPECR, build, capable, finish_restore, kill, start_driven};

/// Sends one step, waits for the acknowledgement, returns the last count printed.
fn step(root: &Path, ctl: &mut File, ack: &mut File) -> String {
    ctl.write_all(b"n").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program acknowledges the step");
    let out = std::fs::read_to_string(root.join("out")).unwrap();
    out.lines().last().unwrap().to_owned()
}

/// Builds and starts counter in `root`, one step taken.
fn start(root: &Path) -> Option<(Child, File, File)> {
    if !capable() {
        return None;
    }
    let exe = build("counter", root)?;
    let (prog, mut ctl, mut ack) = start_driven(&exe, root);
    assert_eq!(step(root, &mut ctl, &mut ack), "1");
    Some((prog, ctl, ack))
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_existing_empty_dir_becomes_the_image_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some((mut prog, mut ctl, mut ack)) = start(root) else {
        return;
    };
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let img = root.join("img");
    std::fs::create_dir(&img).unwrap();
    // The default dump: saved, then killed.
    let out = common::dump(pid, &img, &[]);
    assert!(
        out.starts_with(&format!("dumped pid {pid} into {}: ", img.display())),
        "{out}"
    );
    prog.wait().unwrap();
    assert!(
        names(&img).contains(&"inventory.img".to_owned()),
        "{:?}",
        names(&img)
    );
    assert!(!names(root).iter().any(|n| n.starts_with("img.tmp-")));

    let restore = common::restore(&img, pid);
    assert_eq!(step(root, &mut ctl, &mut ack), "2");
    kill(pid);
    finish_restore(restore, 128 + libc::SIGKILL);
}

#[test]
fn a_non_empty_dir_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some((mut prog, mut ctl, mut ack)) = start(root) else {
        return;
    };
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let img = root.join("img");
    std::fs::create_dir(&img).unwrap();
    std::fs::write(img.join("notes"), b"mine").unwrap();
    let before = common::snapshot(&img);
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: dump of pid {pid} failed; the tree was resumed untouched: image {}: \
             already exists and is not an empty directory (refusing to overwrite)\n",
            img.display()
        )
    );
    // A conflict (docs/CLI-JSON.md).
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(common::snapshot(&img), before);
    assert!(!names(root).iter().any(|n| n.starts_with("img.tmp-")));
    // The program was not killed and runs on.
    assert_eq!(step(root, &mut ctl, &mut ack), "2");
    ctl.write_all(b"q").unwrap();
    assert!(prog.wait().unwrap().success());
}
