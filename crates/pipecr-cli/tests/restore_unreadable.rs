//! Memory that cannot be read as it stands, through dump and restore
//! (tests/progs/unreadable.c): pages written then made `PROT_NONE`, write-only pages,
//! a guard region installed with `MADV_GUARD_INSTALL` between pages that hold bytes, and
//! a classic `PROT_NONE` guard page, and guard regions in shared anonymous memory and in
//! a file mapped shared. The image records the guard regions (and stores no
//! page for it); after the restore the program finds, from inside, the same
//! `/proc/self/maps` lines, every written page's bytes (read after giving the area
//! `PROT_READ`), and both guards faulting on a touch (`SIGSEGV`, caught).
//!
//! The program is driven by ready bytes on FIFOs only; the restore runs in the `pipecr`
//! binary.

mod common;

use std::io::{Read, Write};

use common::{KillOnDrop, last_line, step};
use pipecr_image::{Image, proto};

#[test]
fn unreadable_memory_comes_back_with_its_bytes_protections_and_guards() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("unreadable", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its areas");
    let out = root.join("out");
    let text = std::fs::read_to_string(&out).unwrap();
    let areas: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("areas "))
        .unwrap_or_else(|| panic!("{text}"))
        .split(' ')
        .map(|a| u64::from_str_radix(a, 16).unwrap())
        .collect();
    let (a, bb, c, d, e, f) = (areas[0], areas[1], areas[2], areas[3], areas[4], areas[5]);

    // The maps lines the program compares after the restore are real ones.
    let lines: Vec<&str> = text.lines().skip(1).collect();
    for (i, (start, perms, path)) in [
        (a, "---p", ""),
        (bb, "-w-p", ""),
        (c, "rw-p", ""),
        (d, "---p", ""),
        (e, "rw-s", "/dev/zero (deleted)"),
        (f, "rw-s", "out.map"),
    ]
    .into_iter()
    .enumerate()
    {
        let line = lines[i];
        assert!(line.starts_with(&format!("{start:x}-")), "{line}");
        assert!(line.contains(&format!(" {perms} ")), "{line}");
        assert!(line.ends_with(path), "{line}");
    }

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);

    let image = Image::open(&img).unwrap();
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let vma = |start: u64| {
        mms[0]
            .vmas
            .iter()
            .find(|v| v.start == start)
            .unwrap_or_else(|| panic!("no area at {start:#x}"))
    };
    assert_eq!(vma(a).prot, 0, "A is PROT_NONE");
    assert_eq!(vma(bb).prot, libc::PROT_WRITE as u32, "B is write-only");
    let guards: Vec<(u64, u64)> = vma(c)
        .guard_regions
        .iter()
        .map(|g| (g.start, g.nr_pages))
        .collect();
    assert_eq!(guards, [(c + 2 * 4096, 1)], "C's guard region");
    assert!(vma(d).guard_regions.is_empty() && vma(d).prot == 0);
    for (start, kind) in [(e, proto::VmaKind::Object), (f, proto::VmaKind::FileShared)] {
        let g: Vec<(u64, u64)> = vma(start)
            .guard_regions
            .iter()
            .map(|g| (g.start, g.nr_pages))
            .collect();
        assert_eq!(g, [(start + 4096, 1)], "{kind:?}'s guard region");
        assert_eq!(vma(start).kind, kind as i32);
    }
    // Every written page is stored, the guard page not.
    let stored = |start: u64, end: u64| -> u64 {
        mms[0]
            .pages
            .iter()
            .filter(|r| !r.zero)
            .map(|r| {
                let (s, e) = (r.start.max(start), (r.start + r.nr_pages * 4096).min(end));
                e.saturating_sub(s) / 4096
            })
            .sum()
    };
    assert_eq!(stored(a, a + 3 * 4096), 3);
    assert_eq!(stored(bb, bb + 2 * 4096), 2);
    assert_eq!(stored(c, c + 5 * 4096), 4);
    assert_eq!(stored(c + 2 * 4096, c + 3 * 4096), 0);
    assert_eq!(stored(d, d + 3 * 4096), 2);

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}
