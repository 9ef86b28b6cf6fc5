//! Golden images: image directories written once by `pipe::save` and committed under
//! `tests/golden/v1/`, which every later version must still load and restore.
//!
//! The image format is an ABI (a checkpoint taken by one version is restored by another,
//! maybe on another machine), so these files are never regenerated to make a test pass. A
//! change that breaks them breaks old images in the field; what to do then is a format
//! decision (docs/IMAGE-FORMAT.md), not a test update.
//!
//! The expected contents come from the generator functions below ([`goldens`]), never from
//! the images: each test loads an image, compares it with what the generator says was
//! saved, restores it into a real pipe and checks that pipe's bytes, packet sizes (one read
//! each), capacity and flags.
//!
//! To add a golden image: add it to [`goldens`], then run
//! `cargo test -p pipecr --test golden -- --ignored regenerate`, which writes the images
//! that are missing and leaves every existing one untouched.

mod common;

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use pipecr::pipe::{self, End, PipeEndState, PipeImage};
use rustix::fs::OFlags;

use common::drain;

/// Where the golden images of format v1 live.
fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

/// A fixed inode number for every golden image: the saved value is informational, but it
/// must come back as saved.
const INODE: u64 = 0x00c0_ffee;

fn end(end: End, flags: OFlags) -> PipeEndState {
    PipeEndState { end, flags }
}

/// `len` bytes of xorshift32 output from `seed`: deterministic, and without the short
/// period that would hide a block read at the wrong offset.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A few KiB of numbered lines of text.
fn text() -> Vec<u8> {
    (0..64)
        .map(|i| format!("{i:03}: the quick brown fox jumps over the lazy dog, 0123456789\n"))
        .collect::<String>()
        .into_bytes()
}

/// Packet lengths of the `packets` image: one byte, a full page, an odd size, ...
const PACKETS: [u32; 10] = [1, 17, 4096, 100, 2048, 3, 4095, 512, 9, 1000];

/// Every golden image, by directory name, with the pipe it holds.
fn goldens() -> Vec<(&'static str, PipeImage)> {
    let rw = || {
        vec![
            end(End::Read, OFlags::RDONLY),
            end(End::Write, OFlags::WRONLY),
        ]
    };
    vec![
        (
            // An empty pipe still has a capacity to restore.
            "empty-64k",
            PipeImage {
                inode: INODE,
                capacity: 64 * 1024,
                data: Vec::new(),
                packets: None,
                ends: rw(),
            },
        ),
        (
            "partial-text",
            PipeImage {
                inode: INODE + 1,
                capacity: 64 * 1024,
                data: text(),
                packets: None,
                ends: vec![
                    end(End::Read, OFlags::RDONLY | OFlags::NONBLOCK),
                    end(End::Write, OFlags::WRONLY),
                ],
            },
        ),
        (
            // The largest pipe an unprivileged process may have (pipe-max-size default).
            "full-1m",
            PipeImage {
                inode: INODE + 2,
                capacity: 1 << 20,
                data: noise(1 << 20, 0x5eed_1234),
                packets: None,
                ends: rw(),
            },
        ),
        (
            "packets",
            PipeImage {
                inode: INODE + 3,
                capacity: 64 * 1024,
                data: noise(PACKETS.iter().sum::<u32>() as usize, 0xbad_cafe),
                packets: Some(PACKETS.to_vec()),
                ends: vec![
                    end(End::Read, OFlags::RDONLY),
                    end(
                        End::Write,
                        OFlags::WRONLY | OFlags::DIRECT | OFlags::NONBLOCK,
                    ),
                ],
            },
        ),
        (
            // Checkpointed through its write end alone, at a small capacity.
            "write-end-only",
            PipeImage {
                inode: INODE + 4,
                capacity: 16 * 1024,
                data: b"written, not yet read\n".repeat(100),
                packets: None,
                ends: vec![end(End::Write, OFlags::WRONLY | OFlags::NONBLOCK)],
            },
        ),
    ]
}

/// The status flags a restored end must show for `end` of `image`: those saved for it,
/// else plain ones (a packet-mode write end keeps `O_DIRECT`).
fn expected_flags(image: &PipeImage, which: End) -> OFlags {
    match image.ends.iter().find(|e| e.end == which) {
        Some(state) => state.flags,
        None => match which {
            End::Read => OFlags::RDONLY,
            End::Write if image.packets.is_some() => OFlags::WRONLY | OFlags::DIRECT,
            End::Write => OFlags::WRONLY,
        },
    }
}

/// The flags of a pipe end that an image can carry (and nothing the kernel adds).
fn pipe_flags(fd: BorrowedFd<'_>) -> OFlags {
    let mask = OFlags::RWMODE | OFlags::NONBLOCK | OFlags::DIRECT | OFlags::APPEND;
    rustix::fs::fcntl_getfl(fd).unwrap() & mask
}

/// Loads golden image `name`, checks it against the generator, restores it and checks
/// the pipe.
fn check_golden(name: &str) {
    let (_, expected) = goldens()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no generator for golden image {name}"));
    let dir = golden_dir().join(name);
    assert!(
        dir.is_dir(),
        "golden image {} is missing: it is part of the test suite (see the module doc)",
        dir.display()
    );

    let loaded = pipe::load(&dir)
        .unwrap_or_else(|e| panic!("{name}: this version cannot load a v1 golden image: {e}"));
    assert_eq!(loaded.inode, expected.inode, "{name}: inode");
    assert_eq!(loaded.capacity, expected.capacity, "{name}: capacity");
    assert_eq!(loaded.packets, expected.packets, "{name}: packet lengths");
    assert_eq!(loaded.ends, expected.ends, "{name}: ends and their flags");
    assert_eq!(
        loaded.data.len(),
        expected.data.len(),
        "{name}: pending byte count"
    );
    assert!(loaded.data == expected.data, "{name}: pending bytes differ");

    let (read, write) = pipe::restore(&loaded).unwrap_or_else(|e| panic!("{name}: restore: {e}"));
    assert_eq!(
        rustix::pipe::fcntl_getpipe_size(&write).unwrap(),
        expected.capacity as usize,
        "{name}: restored capacity"
    );
    assert_eq!(
        pipe_flags(read.as_fd()),
        expected_flags(&expected, End::Read),
        "{name}: restored read end flags"
    );
    assert_eq!(
        pipe_flags(write.as_fd()),
        expected_flags(&expected, End::Write),
        "{name}: restored write end flags"
    );
    assert_eq!(
        rustix::io::ioctl_fionread(&read).unwrap(),
        expected.data.len() as u64,
        "{name}: bytes pending in the restored pipe"
    );
    let (bytes, reads) = drain(read.as_fd());
    assert_eq!(bytes.len(), expected.data.len(), "{name}: bytes read back");
    assert!(bytes == expected.data, "{name}: bytes read back differ");
    if let Some(packets) = &expected.packets {
        let reads: Vec<u32> = reads.iter().map(|&n| n as u32).collect();
        assert_eq!(&reads, packets, "{name}: one read per packet");
    }
}

#[test]
fn golden_empty_64k() {
    check_golden("empty-64k");
}

#[test]
fn golden_partial_text() {
    check_golden("partial-text");
}

#[test]
fn golden_full_1m() {
    check_golden("full-1m");
}

#[test]
fn golden_packets() {
    check_golden("packets");
}

#[test]
fn golden_write_end_only() {
    check_golden("write-end-only");
}

/// Every generator has its image, and every image directory a generator and a test.
#[test]
fn golden_set_is_complete() {
    let mut on_disk: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut generated: Vec<String> = goldens().iter().map(|(n, _)| n.to_string()).collect();
    generated.sort();
    assert_eq!(on_disk, generated, "tests/golden/v1 and goldens() disagree");
}

/// The generators describe valid pipes; a broken generator would make the goldens
/// meaningless.
#[test]
fn generators_are_valid_images() {
    for (name, image) in goldens() {
        image.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Writes the golden images that are missing; never touches an existing one.
/// `cargo test -p pipecr --test golden -- --ignored regenerate`
#[test]
#[ignore = "writes tests/golden/v1; run by hand when adding a golden image"]
fn regenerate() {
    let root = golden_dir();
    std::fs::create_dir_all(&root).unwrap();
    for (name, image) in goldens() {
        let dir = root.join(name);
        if dir.exists() {
            println!("{name}: exists, left untouched");
            continue;
        }
        let written = pipe::save(&image, &dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}: written to {}", written.display());
    }
}
