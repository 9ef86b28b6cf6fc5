//! The golden tree image: a whole process tree dumped once and committed
//! (`tests/golden/tree-v1/`: the program's source `tree.c`, the static binary built from
//! it with `cc -static -O1 -pthread -o tree tree.c`, `generate.sh`, which made the image,
//! and the image `img/`). Every later version must restore it, and the program checks
//! itself: a pipe with 3000 bytes in flight, shared anonymous memory written by the child
//! and seen by the parent, a zombie whose status 42 its parent's `waitpid` gets, a second
//! thread woken through a pipe, a pending `alarm`. It exits 0 when all holds, with a code
//! of its own (10-19) for the first check that fails.
//!
//! The image is an ABI: never regenerate it to make this test pass (see
//! docs/IMAGE-FORMAT.md, "Compatibility"). It names its executable by the path it ran
//! from, `/tmp/pipecr-golden-tree-v1/tree`, where the test puts the committed binary (by
//! rename, so that a restore running the old copy is never disturbed). It is restored into
//! a new PID namespace (`--pidns`), so its saved PIDs cannot collide with the machine's.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use pipecr_image::{Image, proto};

const EXE: &str = "/tmp/pipecr-golden-tree-v1/tree";

fn golden() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tree-v1")
}

/// Puts the committed binary where the image expects it, unless it is there already.
fn install_exe() {
    let bytes = std::fs::read(golden().join("tree")).unwrap();
    if std::fs::read(EXE).is_ok_and(|b| b == bytes) {
        return;
    }
    std::fs::create_dir_all(Path::new(EXE).parent().unwrap()).unwrap();
    let tmp = format!("{EXE}.{}", std::process::id());
    std::fs::write(&tmp, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, EXE).unwrap();
}

#[test]
fn the_golden_tree_image_still_reads() {
    let image = Image::open(&golden().join("img")).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    assert_eq!(tree.len(), 2, "the parent and its child");
    assert_eq!(tree[0].threads.len(), 2, "the parent's two threads");
    let zombies: Vec<i32> = tree[0].zombies.iter().map(|z| z.exit_status).collect();
    assert_eq!(zombies, [42 << 8], "one zombie, exited with 42");
    let objects: Vec<proto::MemObject> = image.read_records(pipecr_image::MEM_OBJECTS).unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0].kind,
        proto::MemObjectKind::SharedAnonymous as i32
    );
    let pipes: Vec<proto::Pipe> = image.read_records(pipecr_image::PIPES).unwrap();
    let pending: Vec<u64> = pipes
        .iter()
        .map(|p| p.data.as_ref().map_or(0, |d| d.length))
        .collect();
    assert!(pending.contains(&3000), "{pending:?}");
}

#[test]
fn the_golden_tree_restores_and_checks_itself() {
    if !common::capable() {
        return;
    }
    install_exe();
    let mut restore = Command::new(common::PIPECR);
    restore
        .args(["restore", "--pidns", "-D"])
        .arg(golden().join("img"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    common::only_stdio(&mut restore);
    let pid = common::saved_pids(&golden().join("img"))[0];
    let restore = common::restore_started(&mut restore, pid);
    // The program's own verdict is the root's exit status, which restore passes on.
    common::finish_restore(restore, 0);
}
