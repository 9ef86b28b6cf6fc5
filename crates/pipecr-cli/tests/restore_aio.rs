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
