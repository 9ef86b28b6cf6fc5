//! Property tests of the whole pipe path: a real pipe in an arbitrary state goes through
//! checkpoint, save, load and restore and must come back with the same bytes, packet
//! boundaries, capacity and end flags; and a saved image with random damage must load as
//! an error or as the very image saved, never panic.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use pipecr::pipe::{self, PipeImage};
use proptest::prelude::*;
use proptest::test_runner::Config;
use rustix::fs::OFlags;
use rustix::pipe::PipeFlags;

use common::drain;

const PAGE: usize = 4096;

/// What the pipe holds: one byte stream, or packets of these lengths (each at most
/// PIPE_BUF, one pipe buffer each, so they always fit).
#[derive(Debug, Clone)]
enum Contents {
    Stream(usize),
    Packets(Vec<usize>),
}

/// Which ends `checkpoint_ends` is given.
#[derive(Debug, Clone, Copy)]
enum Given {
    Read,
    Write,
    Both,
}

#[derive(Debug, Clone)]
struct Case {
    capacity: usize,
    contents: Contents,
    seed: u64,
    nonblock_read: bool,
    nonblock_write: bool,
    given: Given,
}

fn case() -> impl Strategy<Value = Case> {
    // 1 to 256 pages: every power of two the kernel accepts up to 1 MiB, which the
    // default pipe-max-size allows without privilege.
    (0u32..=8).prop_flat_map(|shift| {
        let capacity = PAGE << shift;
        let slots = capacity / PAGE;
        let contents = prop_oneof![
            (0..=capacity).prop_map(Contents::Stream),
            prop::collection::vec(1..=pipe::PIPE_BUF, 0..=slots).prop_map(Contents::Packets),
        ];
        let given = prop_oneof![Just(Given::Read), Just(Given::Write), Just(Given::Both)];
        (contents, any::<u64>(), any::<bool>(), any::<bool>(), given).prop_map(
            move |(contents, seed, nonblock_read, nonblock_write, given)| Case {
                capacity,
                contents,
                seed,
                nonblock_read,
                nonblock_write,
                given,
            },
        )
    })
}

/// Deterministic bytes from `seed` (xorshift), so a megabyte case costs no shrinking.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The flags a test compares: access mode, O_NONBLOCK, O_DIRECT.
fn flags(fd: BorrowedFd<'_>) -> OFlags {
    rustix::fs::fcntl_getfl(fd).unwrap() & (OFlags::RWMODE | OFlags::NONBLOCK | OFlags::DIRECT)
}

/// Makes the pipe of `case`; returns its ends, the bytes and the expected reads.
fn make_pipe(case: &Case) -> (OwnedFd, OwnedFd, Vec<u8>, Vec<usize>) {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
    rustix::pipe::fcntl_setpipe_size(&w, case.capacity).unwrap();
    assert_eq!(rustix::pipe::fcntl_getpipe_size(&w).unwrap(), case.capacity);
    let (data, reads) = match &case.contents {
        Contents::Stream(len) => {
            let data = bytes(*len, case.seed);
            let mut off = 0;
            while off < data.len() {
                off += rustix::io::write(&w, &data[off..]).unwrap();
            }
            let reads = if data.is_empty() {
                vec![]
            } else {
                vec![data.len()]
            };
            (data, reads)
        }
        Contents::Packets(lengths) => {
            rustix::fs::fcntl_setfl(&w, OFlags::DIRECT).unwrap();
            let data = bytes(lengths.iter().sum(), case.seed);
            let mut off = 0;
            for &len in lengths {
                assert_eq!(rustix::io::write(&w, &data[off..off + len]).unwrap(), len);
                off += len;
            }
            (data, lengths.clone())
        }
    };
    let direct = rustix::fs::fcntl_getfl(&w).unwrap() & OFlags::DIRECT;
    if case.nonblock_read {
        rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK).unwrap();
    }
    if case.nonblock_write {
        rustix::fs::fcntl_setfl(&w, OFlags::NONBLOCK | direct).unwrap();
    }
    (r, w, data, reads)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are reported with their case; nothing is written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn checkpoint_save_load_restore_keeps_bytes_packets_capacity_and_flags(case in case()) {
        let (r, w, data, reads) = make_pipe(&case);
        let ends: Vec<BorrowedFd<'_>> = match case.given {
            Given::Read => vec![r.as_fd()],
            Given::Write => vec![w.as_fd()],
            Given::Both => vec![r.as_fd(), w.as_fd()],
        };
        let image = pipe::checkpoint_ends(&ends).unwrap();
        prop_assert_eq!(image.capacity as usize, case.capacity);
        prop_assert_eq!(&image.data, &data);

        let tmp = tempfile::tempdir().unwrap();
        let dir = pipe::save(&image, &tmp.path().join("img")).unwrap();
        let loaded = pipe::load(&dir).unwrap();
        prop_assert_eq!(&loaded, &image);
        let (nr, nw) = pipe::restore(&loaded).unwrap();

        prop_assert_eq!(rustix::pipe::fcntl_getpipe_size(&nw).unwrap(), case.capacity);
        if matches!(case.given, Given::Read | Given::Both) {
            prop_assert_eq!(flags(nr.as_fd()), flags(r.as_fd()));
        }
        if matches!(case.given, Given::Write | Given::Both) {
            prop_assert_eq!(flags(nw.as_fd()), flags(w.as_fd()));
        }
        let (got, got_reads) = drain(nr.as_fd());
        prop_assert_eq!(&got, &data);
        prop_assert_eq!(&got_reads, &reads, "one read per packet");
        // The original was not consumed.
        let (orig, orig_reads) = drain(r.as_fd());
        prop_assert_eq!(&orig, &data);
        prop_assert_eq!(&orig_reads, &reads);
    }
}

/// A packet-mode image with both ends, saved once: what the damage test starts from.
fn original() -> PipeImage {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::DIRECT).unwrap();
    for (i, len) in [5usize, 4096, 1, 300].into_iter().enumerate() {
        let packet = bytes(len, i as u64 + 1);
        assert_eq!(rustix::io::write(&w, &packet).unwrap(), len);
    }
    pipe::checkpoint_ends(&[r.as_fd(), w.as_fd()]).unwrap()
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR the byte at this position (modulo the length) with a non-zero mask.
    Flip(usize, u8),
    /// Cut the file to this length (modulo the length).
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        any::<usize>().prop_map(Damage::Truncate),
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn damaged_image_loads_as_an_error_or_the_original(
        file in 0usize..4,
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let image = original();
        let tmp = tempfile::tempdir().unwrap();
        let saved = pipe::save(&image, &tmp.path().join("img")).unwrap();
        let dir = tmp.path().join("damaged");
        copy_dir(&saved, &dir);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        prop_assert_eq!(names.len(), 4, "inventory, pipes, files, pipes-data");
        let path = dir.join(&names[file % names.len()]);
        let mut bytes = std::fs::read(&path).unwrap();
        for d in &damages {
            if bytes.is_empty() {
                break;
            }
            match *d {
                Damage::Flip(at, mask) => {
                    let at = at % bytes.len();
                    bytes[at] ^= mask;
                }
                Damage::Truncate(len) => bytes.truncate(len % bytes.len()),
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        match pipe::load(&dir) {
            // Every refusal names the image it is about.
            Err(err) => prop_assert!(
                err.to_string().contains(&dir.display().to_string()),
                "{}", err
            ),
            Ok(loaded) => prop_assert_eq!(loaded, image),
        }
    }
}
