//! Shared memory of every kind through dump and restore (tests/progs/shmem.c): shared
//! anonymous memory, a shared mapping of `/dev/zero`, memfds (open and mapped twice,
//! mapped with the descriptor closed, mapped privately), a deleted file still open and
//! mapped, a file mapped shared twice, and a named POSIX semaphore (a `/dev/shm` file), in
//! a parent, its child and its grandchild. The program checks itself: the
//! contents, that a write by any of the three is seen by the others through every shared
//! area, that a memfd's and the deleted file's descriptors are one file with their
//! mappings, sizes, protections and offsets. The test checks the image: each object
//! saved once, whoever maps it, with only the pages that exist.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::path::Path;

use common::KillOnDrop;
use pipecr_image::{Image, proto};

#[test]
fn shared_memory_of_every_kind_comes_back_shared() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let exe = common::build("shmem", root).expect("cc builds shmem.c");
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program is set up");
    let out = root.join("out");
    assert_eq!(last_line(&out), "ready");
    let tree = common::descendants(pid);
    assert_eq!(tree.len(), 3, "parent, child, grandchild: {tree:?}");
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "before the dump");

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&tree);
    for &p in &tree {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    // Each object once, whichever processes and areas map it.
    let image = Image::open(&img).unwrap();
    let objects: Vec<proto::MemObject> = image.read_records(pipecr_image::MEM_OBJECTS).unwrap();
    let of = |k: proto::MemObjectKind| {
        objects
            .iter()
            .filter(|o| o.kind == k as i32)
            .collect::<Vec<_>>()
    };
    let pages = |o: &proto::MemObject| o.pages.iter().map(|r| r.nr_pages).sum::<u64>();
    let anon = of(proto::MemObjectKind::SharedAnonymous);
    let mut anon_pages: Vec<(u64, u64)> = anon
        .iter()
        .map(|o| (o.identity.as_ref().unwrap().size, pages(o)))
        .collect();
    anon_pages.sort_unstable();
    // Z: 4 pages, pages 0 and 3 touched; A: 16 pages, pages 0, 1, 5 touched at setup and
    // 9, 15 by the check before the dump.
    assert_eq!(anon_pages, [(4 * 4096, 2), (16 * 4096, 5)], "{objects:#?}");
    let mut memfds: Vec<&str> = of(proto::MemObjectKind::Memfd)
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    memfds.sort_unstable();
    assert_eq!(
        memfds,
        ["/memfd:mapped-only", "/memfd:private", "/memfd:shm-test"]
    );
    assert_eq!(
        of(proto::MemObjectKind::DeletedFile).len(),
        1,
        "{objects:#?}"
    );
    assert_eq!(objects.len(), 6, "{objects:#?}");
    // The memfd's descriptor names its object and holds no bytes of its own.
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let memfd = files
        .iter()
        .find_map(|f| match &f.kind {
            Some(proto::open_file::Kind::Memfd(m)) => Some(m),
            _ => None,
        })
        .expect("the memfd's descriptor is saved");
    assert_ne!(memfd.object_id, 0);
    assert!(memfd.contents.is_none());
    let shm = objects.iter().find(|o| o.id == memfd.object_id).unwrap();
    assert_eq!(shm.name, "/memfd:shm-test");
    // Every area of every process that maps an object names one of these.
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    assert_eq!(mms.len(), 3);
    for mm in &mms {
        let named: Vec<u64> = mm
            .vmas
            .iter()
            .filter(|v| v.object_id != 0)
            .map(|v| v.object_id)
            .collect();
        assert!(named.len() >= 6, "pid {}: {named:?}", mm.pid);
        assert!(named.iter().all(|id| objects.iter().any(|o| o.id == *id)));
    }

    // The shared file mappings: nothing of them in the image, the file holds it.
    let data = root.join("out.data");
    for mm in &mms {
        let shared: Vec<&proto::Vma> = mm
            .vmas
            .iter()
            .filter(|v| {
                v.kind == proto::VmaKind::FileShared as i32 && v.path == data.to_str().unwrap()
            })
            .collect();
        assert_eq!(shared.len(), 2, "pid {}: {shared:#?}", mm.pid);
        for v in shared {
            assert_ne!(v.flags & proto::VmaFlag::NotSaved as u32, 0);
            assert!(
                !mm.pages
                    .iter()
                    .any(|r| r.start >= v.start && r.start < v.end)
            );
        }
    }
    // The named semaphore: a /dev/shm file, mapped shared by path by all three.
    let sem = format!("/dev/shm/sem.pipecr-shmem-{pid}");
    for mm in &mms {
        assert!(
            mm.vmas
                .iter()
                .any(|v| v.path == sem && v.kind == proto::VmaKind::FileShared as i32),
            "pid {}: {sem} mapped shared",
            mm.pid
        );
    }
    let bytes = std::fs::read(&data).unwrap();
    assert_eq!(bytes.len(), 4 * 4096);

    // A file that shrank under its mapping, or is gone, is refused before anything is
    // created, naming it.
    let refused = |why: &str| {
        let out = common::restore_command(&img).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{why}: {err}");
        assert!(err.contains(data.to_str().unwrap()), "{why}: {err}");
        for &p in &tree {
            assert_eq!(common::state(p), None, "{why}: nothing left behind");
        }
        err
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let err = refused("shrunk");
    assert!(err.contains("is 4096 bytes"), "{err}");
    std::fs::rename(&data, root.join("moved")).unwrap();
    let err = refused("missing");
    assert!(err.contains("ENOENT"), "{err}");
    std::fs::rename(root.join("moved"), &data).unwrap();
    std::fs::write(&data, &bytes).unwrap();

    let _guard = KillOnDrop(tree.clone());
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "after the restore");
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "after the restore, a second round");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
    assert!(
        !Path::new(&sem).exists(),
        "the program unlinked its semaphore"
    );
}
