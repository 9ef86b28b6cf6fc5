//! Files whose names were removed, through dump and restore (tests/progs/deleted.c): a
//! 1 GiB sparse file with three pages of data, two device nodes made with `mknod` (of
//! `/dev/null` and `/dev/zero`, with their own modes) and a FIFO holding bytes, each
//! unlinked after it was opened, and a 1 GiB memfd with one page of data. The image stays small (the sparse file costs its
//! pages, not its size, and is within the default `--max-inline-file` limit, which
//! counts data); after the restore the program checks from inside the file's size, data
//! extents, holes, bytes and position, each node's type, device number and mode and that
//! it still works, the FIFO's mode and bytes; nothing is left in the directory.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{KillOnDrop, PIPECR};

/// The bytes of every file of the image directory `img`.
fn image_bytes(img: &Path) -> u64 {
    std::fs::read_dir(img)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            // Allocated, not apparent: a sparse image file would hide its size.
            m.len().max(m.blocks() * 512)
        })
        .sum()
}

/// The names in `dir` other than the test's own files.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["deleted", "out", "ctl", "ack", "img"].contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

#[test]
fn a_sparse_deleted_file_device_nodes_and_a_fifo_come_back_removed() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("deleted", root).expect("cc builds tests/progs/deleted.c");
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap_or_else(|e| {
        panic!(
            "the program set up its files ({e}): {}",
            std::fs::read_to_string(root.join("out")).unwrap_or_default()
        )
    });
    let out = root.join("out");
    assert_eq!(last_line(&out), "ready");
    assert_eq!(leftovers(root), Vec::<String>::new(), "every name removed");

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("the dumped program to be gone", || {
        common::state(pid).is_none()
    });
    // 2 GiB of file and memfd, 16 KiB of data: the image holds the data and the
    // program's memory.
    let size = image_bytes(&img);
    eprintln!("image of the sparse files: {size} bytes");
    assert!(
        size < 4 << 20,
        "the image takes {size} bytes for 16 KiB of file data"
    );
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    let root_s = root.display().to_string();
    for want in [
        format!("{root_s}/null (1:3) (removed, mode 640)"),
        format!("{root_s}/zero (1:5) (removed, mode 604)"),
        format!("FIFO {root_s}/fifo (unlinked)"),
        format!("file {root_s}/sparse (unlinked"),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(
        last_line(&out),
        "ok",
        "the restored program's own check:\n{}",
        std::fs::read_to_string(&out).unwrap()
    );
    assert_eq!(
        leftovers(root),
        Vec::<String>::new(),
        "the recreated names are removed again"
    );
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_dense_deleted_file_above_the_limit_is_refused_by_its_data() {
    if !common::capable() {
        return;
    }
    // A 64 MiB file with 8 KiB of data fits the 1 MiB default; the same file with 2 MiB
    // of data does not, and the message counts data.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let script = format!(
        "import os, sys\nfd = os.open({p:?}, os.O_RDWR | os.O_CREAT, 0o600)\nos.ftruncate(fd, 64 << 20)\n\
         os.pwrite(fd, b'x' * int(sys.argv[1]), 32 << 20)\nos.dup2(fd, 9)\nos.close(fd)\nos.unlink({p:?})\n\
         print('ready', flush=True)\nsys.stdin.read()",
        p = path.display().to_string()
    );
    for (data, fits) in [(8192u64, true), (2 << 20, false)] {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &script, &data.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = common::only_stdio(&mut cmd).spawn().unwrap();
        let pid = child.id() as i32;
        let _guard = KillOnDrop(vec![pid]);
        let mut ready = [0u8; 6];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut ready)
            .unwrap();
        let img = dir.path().join(format!("img{data}"));
        let out = Command::new(PIPECR)
            .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
            .arg(&img)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if fits {
            assert!(out.status.success(), "{stderr}");
            assert!(image_bytes(&img) < 8 << 20, "{}", image_bytes(&img));
        } else {
            assert!(!out.status.success());
            assert!(
                stderr.contains(&format!(
                    "pid {pid} fd 9 ({} (deleted)): 2097152 bytes of data is more than the \
                     1048576-byte limit for file contents kept in the image (holes are not \
                     counted; --max-inline-file)",
                    path.display()
                )),
                "{stderr}"
            );
        }
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success(), "runs on after the dump");
    }
}
