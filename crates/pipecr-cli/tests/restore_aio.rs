//! AIO contexts (`io_setup`) through dump and restore (tests/progs/aio.c): one whose
//! ring went round once and holds three completion events not read yet (wrapping
//! around the ring's end), and one never used. The image holds each ring's header and
//! the unread events; after the restore the program finds, from inside and through the
//! context ids it kept: the three events from before the dump, in order, with their
//! bytes; a new read submitted on each context completing with its bytes; the rings
//! mapped at their ids.
//!
//! The program is driven by ready bytes on FIFOs only; the restore runs in the `pipecr`
//! binary.

mod common;

use std::io::{Read, Write};

use common::{KillOnDrop, last_line, step};
use pipecr_image::{Image, proto};

#[test]
fn aio_contexts_come_back_at_their_ids_with_their_unread_events() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("aio", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its contexts");
    let out = root.join("out");
    let line = last_line(&out);
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!((words[0], words[3]), ("ctx", "nr"), "{line}");
    let a = u64::from_str_radix(words[1], 16).unwrap();
    let bctx = u64::from_str_radix(words[2], 16).unwrap();
    let nr: u32 = words[4].parse().unwrap();

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);

    let image = Image::open(&img).unwrap();
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let ring = |ctx: u64| {
        let vma = mms[0]
            .vmas
            .iter()
            .find(|v| v.start == ctx)
            .unwrap_or_else(|| panic!("no area at {ctx:#x}"));
        assert_eq!(vma.kind, proto::VmaKind::AioRing as i32);
        vma.aio_ring.clone().unwrap()
    };
    let ra = ring(a);
    assert_eq!((ra.nr, ra.head, ra.tail), (nr, nr - 2, 1), "A wrapped");
    assert_eq!(ra.events.len(), 3 * 32);
    let data: Vec<u64> = ra
        .events
        .chunks(32)
        .map(|e| u64::from_ne_bytes(e[..8].try_into().unwrap()))
        .collect();
    assert_eq!(data, [111, 112, 113], "the unread events' data, in order");
    let rb = ring(bctx);
    assert_eq!((rb.head, rb.tail, rb.events.len()), (0, 0, 0), "B idle");

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// io_uring cannot be saved from user space: a dump refuses it, naming the process and
/// the descriptor, the ring still mapped after the descriptor was closed, the kernel
/// poller thread, or the thread's registered ring (descriptor closed, ring unmapped), and
/// saying why; the program runs on untouched (tests/progs/uring.c).
#[test]
fn io_uring_is_refused_clearly_and_the_program_runs_on() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = common::build("uring", dir.path()) else {
        return;
    };
    for mode in ["fd", "mapped", "sqpoll", "registered"] {
        let root = dir.path().join(mode);
        std::fs::create_dir(&root).unwrap();
        for fifo in ["ctl", "ack"] {
            common::mkfifo(&root.join(fifo));
        }
        let mut ctl = common::open_ctl(&root.join("ctl"));
        let mut prog = common::only_stdio(&mut std::process::Command::new(&exe))
            .arg(root.join("out"))
            .arg(root.join("ctl"))
            .arg(root.join("ack"))
            .arg(mode)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = prog.id() as i32;
        let _guard = KillOnDrop(vec![pid]);
        let mut ack = std::fs::File::open(root.join("ack")).unwrap();
        let mut b = [0u8; 1];
        ack.read_exact(&mut b).expect("the program set up its ring");
        let text = std::fs::read_to_string(root.join("out")).unwrap();
        let line = text.lines().next().unwrap_or_default();
        let words: Vec<&str> = line.split(' ').collect();
        let (fd, ring) = (words[1], words[3]);

        let out = std::process::Command::new(common::PIPECR)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(root.join("img"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{mode}: {err}");
        assert!(!root.join("img").exists(), "{mode}: no image");
        let expect = match mode {
            "fd" => format!("pid {pid} fd {fd}: an io_uring instance ("),
            "mapped" => format!("pid {pid}: cannot save the area 0x{ring}-"),
            "sqpoll" => format!("of pid {pid} is an io_uring worker"),
            _ => {
                assert_eq!(last_line(&root.join("out")), "registered 0");
                format!("thread {pid} of pid {pid} holds an io_uring instance as registered ring 0")
            }
        };
        assert!(err.contains(&expect), "{mode}: {err}");
        assert!(
            err.contains("no way to read them out or rebuild them"),
            "{mode}: says why: {err}"
        );
        if mode == "mapped" {
            assert!(
                err.contains("(anon_inode:[io_uring]): an io_uring ring"),
                "{err}"
            );
        }
        // The program runs on: it answers.
        step(&mut ctl, &mut ack, b'p');
        ctl.write_all(b"q").unwrap();
        assert!(prog.wait().unwrap().success(), "{mode}");
    }
}
