//! System V IPC through dump and restore (tests/progs/sysv.c): shared memory segments
//! attached by two processes (one attachment read-only), one attached by nobody, one
//! removed while attached; a semaphore set; a message queue with messages of several
//! types. The image holds each object once with its id, key, mode and contents; the dump
//! removes them with the tree; after the restore the program finds them under the same
//! ids and keys, with their contents, values and messages in order, and a write through
//! a segment is seen by the other process. A restore whose id is taken is refused before
//! anything is created and leaves nothing; a process with semaphore undo adjustments is
//! refused at dump and left running.
//!
//! Keys are unique per run (derived from the program's pid), so tests running at the
//! same time never meet; ids are the kernel's, allocated cyclically.

mod common;

use common::{last_line, step};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{KillOnDrop, PIPECR};
use pipecr_image::Image;
use pipecr_image::proto::{self, ipc_object};

/// Whether `/proc/sysvipc/NAME` lists an object with id `id` (the second column).
fn listed(name: &str, id: i32) -> bool {
    std::fs::read_to_string(format!("/proc/sysvipc/{name}"))
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
}

fn perm_of(o: &proto::IpcObject) -> (char, proto::IpcPerm) {
    match o.kind.as_ref().unwrap() {
        ipc_object::Kind::Shm(s) => ('m', s.perm.unwrap()),
        ipc_object::Kind::Sem(s) => ('s', s.perm.unwrap()),
        ipc_object::Kind::Msg(m) => ('q', m.perm.unwrap()),
    }
}

#[test]
fn segments_semaphores_and_messages_come_back_with_their_ids() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("sysv", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its objects");
    let out = root.join("out");
    let first = last_line(&out);
    let ids: Vec<i32> = first
        .strip_prefix("ids ")
        .unwrap_or_else(|| panic!("{first}"))
        .split(' ')
        .map(|i| i.parse().unwrap())
        .collect();
    let [a, c, d, s, m] = ids[..] else {
        panic!("{first}")
    };
    let kid = common::children(pid)[0];
    std::mem::forget(guard);
    let _guard = KillOnDrop(vec![pid, kid]);

    let img = root.join("img");
    // Attached outside the tree too: refused, and the tree runs on untouched.
    let outside = pipecr::sys::ipc::ShmAttachment::attach(a, 3 * 4096 + 100, true).unwrap();
    let refused = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("shared memory segment id {a}"))
            && stderr.contains("processes outside the tree attach it too"),
        "{stderr}"
    );
    assert!(!img.exists());
    drop(outside);

    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    common::wait_until("the dumped child to be gone", || {
        !Path::new(&format!("/proc/{kid}")).exists()
    });
    // The objects went into the image with the tree.
    for (name, id) in [("shm", a), ("shm", c), ("shm", d), ("sem", s), ("msg", m)] {
        assert!(!listed(name, id), "{name} {id} still exists after the dump");
    }

    let image = Image::open(&img).unwrap();
    assert!(
        image.file(pipecr_image::IPC).is_some(),
        "ipc.img in the inventory"
    );
    let objects: Vec<proto::IpcObject> = image.read_records(pipecr_image::IPC).unwrap();
    let mut summary: Vec<(char, i32)> = objects
        .iter()
        .map(|o| (perm_of(o).0, perm_of(o).1.id))
        .collect();
    summary.sort_unstable();
    let mut want = vec![('m', a), ('m', c), ('m', d), ('s', s), ('q', m)];
    want.sort_unstable();
    assert_eq!(summary, want);
    for o in &objects {
        match o.kind.as_ref().unwrap() {
            ipc_object::Kind::Shm(seg) if seg.perm.as_ref().unwrap().id == a => {
                assert_eq!(
                    (seg.size, seg.nattch, seg.removed),
                    (3 * 4096 + 100, 3, false)
                );
                assert_eq!(seg.perm.as_ref().unwrap().mode, 0o640);
                // Pages 0 and 2 hold data; page 1 is a hole, not stored.
                let stored: u64 = seg
                    .extents
                    .iter()
                    .map(|e| e.data.as_ref().unwrap().length)
                    .sum();
                assert!(stored <= 2 * 4096 + 100, "{:?}", seg.extents);
            }
            ipc_object::Kind::Shm(seg) if seg.perm.as_ref().unwrap().id == d => {
                assert!(seg.removed && seg.nattch == 2);
                assert_eq!(seg.perm.as_ref().unwrap().key, 0);
            }
            ipc_object::Kind::Sem(set) => {
                let values: Vec<u32> = set.sems.iter().map(|x| x.value).collect();
                assert_eq!(values, [4, 0, 42]);
            }
            ipc_object::Kind::Msg(q) => {
                let types: Vec<i64> = q.messages.iter().map(|x| x.mtype).collect();
                assert_eq!(types, [2, 1, 3, 7]);
                assert_eq!(q.messages[0].text, b"two");
                assert_eq!(q.messages[3].text.len(), 5000);
            }
            _ => {}
        }
    }
    // Each attachment is recorded with its segment's id and flags.
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let attachments: Vec<(i32, i32, u32)> = mms
        .iter()
        .flat_map(|mm| {
            mm.vmas
                .iter()
                .filter(|v| v.kind == proto::VmaKind::SysvShm as i32)
                .map(move |v| (mm.pid, v.sysv_shm_id, v.sysv_shm_flags))
        })
        .collect();
    let mut attachments = attachments;
    attachments.sort_unstable();
    let mut want = vec![
        (pid, a, 0),
        (pid, d, 0),
        (kid, a, 0),
        (kid, a, 0o10000),
        (kid, d, 0),
    ];
    want.sort_unstable();
    assert_eq!(attachments, want);

    // What `pipecr show` tells a person.
    let show = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{text}");
    for want in [
        "System V IPC objects".to_owned(),
        format!("semaphore set id {s} (key "),
        "values [4, 0, 42]".to_owned(),
        "4 message(s) of types [2, 1, 3, 7]".to_owned(),
        "3 attachment(s)".to_owned(),
        "2 attachment(s), removed".to_owned(),
    ] {
        assert!(text.contains(&want), "{want:?} not in:\n{text}");
    }

    // An id taken: refused before anything is created, nothing left behind.
    std::fs::write("/proc/sys/kernel/msg_next_id", m.to_string()).unwrap();
    let squatter = pipecr::sys::ipc::msgget(0, libc::IPC_CREAT | 0o600).unwrap();
    assert_eq!(squatter, m);
    let refused = common::restore_command(&img).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("message queue id {m}")) && stderr.contains("its id is taken"),
        "{stderr}"
    );
    for (name, id) in [("shm", a), ("shm", c), ("shm", d), ("sem", s)] {
        assert!(
            !listed(name, id),
            "{name} {id} left behind by a refused restore"
        );
    }
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    pipecr::sys::ipc::msg_remove(squatter).unwrap();

    // A restore that fails once the objects exist (the program's flock lock on its
    // output file is held by us) removes every object it created.
    let outsider = File::open(&out).unwrap();
    rustix::fs::flock(
        &outsider,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .unwrap();
    let refused = common::restore_command(&img).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot take its flock read lock again"),
        "{stderr}"
    );
    for (name, id) in [("shm", a), ("shm", c), ("shm", d), ("sem", s), ("msg", m)] {
        assert!(
            !listed(name, id),
            "{name} {id} left behind by a failed restore"
        );
    }
    drop(outsider);

    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    step(&mut ctl, &mut ack, b'q');
    common::finish_restore(restore, 0);
    for (name, id) in [("shm", a), ("shm", c), ("shm", d), ("sem", s), ("msg", m)] {
        assert!(
            !listed(name, id),
            "{name} {id} outlived the program that removed it"
        );
    }
}

#[test]
fn semaphore_undo_adjustments_are_refused_at_dump_naming_the_process() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("sysv", root) else {
        return;
    };
    for fifo in ["ctl", "ack"] {
        common::mkfifo(&root.join(fifo));
    }
    let mut ctl = common::open_ctl(&root.join("ctl"));
    let mut prog = common::only_stdio(&mut Command::new(&exe))
        .args([root.join("out"), root.join("ctl"), root.join("ack")])
        .arg("undo")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut ack = File::open(root.join("ack")).unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its objects");
    let kid = common::children(pid)[0];
    std::mem::forget(guard);
    let _guard = KillOnDrop(vec![pid, kid]);
    let img = root.join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {pid} has a System V semaphore undo list")),
        "{stderr}"
    );
    assert!(!img.exists());
    // Left running, its objects untouched.
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&root.join("out")), "ok");
    step(&mut ctl, &mut ack, b'q');
    assert!(prog.wait().unwrap().success());
}
