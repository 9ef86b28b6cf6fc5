//! Checkpoint + restore of N full 1 MiB pipes, against a baseline measured in the same
//! run: the same bytes drained with `read()` and written into new pipes with `write()`.
//!
//! Every iteration starts from freshly filled source pipes (criterion's `iter_batched`;
//! filling is setup and is not timed, nor is closing what an iteration produced). Each
//! variant leaves N new pipes of 1 MiB capacity holding the 1 MiB the sources held:
//!
//! - `pipecr_in_memory`: `pipe::checkpoint` (tee into a scratch pipe, read it into the
//!   image) then `pipe::restore` (pipe2, F_SETPIPE_SZ, write); the sources keep their data.
//! - `baseline_read_write`: pipe2 + F_SETPIPE_SZ, `read()` the source into a buffer,
//!   `write()` it into the new pipe; the sources are consumed.
//! - `pipecr_checkpoint_only`, `pipecr_restore_only`: the two halves of
//!   `pipecr_in_memory` (restore from images made once, outside the timed part).
//! - `pipecr_zero_copy`: `pipe::clone_live`, checkpoint and restore in one step while the
//!   source is alive: pipe2 + F_SETPIPE_SZ, then one `tee()` from the source into the new
//!   pipe; no byte passes through user memory, and the sources keep their data.
//! - `pipecr_via_image_dir` (N = 1 and 16): checkpoint, `pipe::save` to an image directory
//!   under the temp dir (fsync'd), `pipe::load`, restore.
//!
//! Run: `cargo bench -p pipecr --bench pipe_roundtrip -- --warm-up-time 1 --measurement-time 5`
//! Results and their reading: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pipecr::pipe;
use rustix::pipe::PipeFlags;

const MIB: usize = 1 << 20;
const COUNTS: [usize; 3] = [1, 16, 256];

/// A pipe as (read end, write end).
type Pipe = (OwnedFd, OwnedFd);

/// A new pipe of 1 MiB capacity.
fn new_pipe() -> Pipe {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe2");
    let got = rustix::pipe::fcntl_setpipe_size(&w, MIB).unwrap_or_else(|e| {
        panic!(
            "F_SETPIPE_SZ 1 MiB: {e} (needs /proc/sys/fs/pipe-max-size >= 1 MiB and room in \
             /proc/sys/fs/pipe-user-pages-soft, or CAP_SYS_RESOURCE/CAP_SYS_ADMIN)"
        )
    });
    assert_eq!(got, MIB, "pipe capacity");
    (r, w)
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        let n = rustix::io::write(fd, data).expect("write");
        data = &data[n..];
    }
}

/// `n` new pipes, each full: 1 MiB of `pattern` pending in a 1 MiB pipe.
fn full_pipes(n: usize, pattern: &[u8]) -> Vec<Pipe> {
    (0..n)
        .map(|_| {
            let (r, w) = new_pipe();
            write_all(w.as_fd(), pattern);
            (r, w)
        })
        .collect()
}

fn pattern() -> Vec<u8> {
    (0..MIB).map(|i| (i % 251) as u8).collect()
}

/// pipecr's in-memory path: checkpoint (the source keeps its bytes), then restore.
fn pipecr_in_memory(sources: &[Pipe]) -> Vec<Pipe> {
    sources
        .iter()
        .map(|(r, _)| {
            let image = pipe::checkpoint(r.as_fd()).expect("checkpoint");
            pipe::restore(&image).expect("restore")
        })
        .collect()
}

/// The baseline: drain each source with read() and refill a new pipe with write().
fn baseline_read_write(sources: &[Pipe], buf: &mut [u8]) -> Vec<Pipe> {
    sources
        .iter()
        .map(|(r, _)| {
            let (nr, nw) = new_pipe();
            let pending = rustix::io::ioctl_fionread(r).expect("FIONREAD") as usize;
            let mut got = 0;
            while got < pending {
                got += rustix::io::read(r, &mut buf[got..pending]).expect("read");
            }
            write_all(nw.as_fd(), &buf[..pending]);
            (nr, nw)
        })
        .collect()
}

/// pipecr's zero-copy path: checkpoint and restore in one step with `pipe::clone_live`
/// (tee straight into a new pipe of the same capacity).
fn pipecr_zero_copy(sources: &[Pipe]) -> Vec<Pipe> {
    sources
        .iter()
        .map(|(r, _)| pipe::clone_live(r.as_fd()).expect("clone_live"))
        .collect()
}

/// pipecr through the disk: checkpoint, save to `dir/i`, load, restore.
fn pipecr_via_image_dir(sources: &[Pipe], dir: &std::path::Path) -> Vec<Pipe> {
    sources
        .iter()
        .enumerate()
        .map(|(i, (r, _))| {
            let image = pipe::checkpoint(r.as_fd()).expect("checkpoint");
            let path: PathBuf = pipe::save(&image, &dir.join(i.to_string())).expect("save");
            drop(image);
            let image = pipe::load(&path).expect("load");
            pipe::restore(&image).expect("restore")
        })
        .collect()
}

/// Each variant once, checked: the new pipes hold the pattern, and pipecr left the
/// sources as they were. A benchmark of a wrong result measures nothing.
fn check_variants(pattern: &[u8]) {
    let holds_pattern = |(r, _): &Pipe| {
        let mut buf = vec![0u8; MIB + 1];
        let n = rustix::io::read(r, &mut buf).expect("read");
        n == MIB && buf[..n] == *pattern
    };
    let sources = full_pipes(2, pattern);
    assert!(pipecr_in_memory(&sources).iter().all(holds_pattern));
    assert!(
        sources.iter().all(holds_pattern),
        "checkpoint consumed data"
    );
    let sources = full_pipes(2, pattern);
    assert!(pipecr_zero_copy(&sources).iter().all(holds_pattern));
    let sources = full_pipes(2, pattern);
    let mut buf = vec![0u8; MIB];
    assert!(
        baseline_read_write(&sources, &mut buf)
            .iter()
            .all(holds_pattern)
    );
    let sources = full_pipes(2, pattern);
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        pipecr_via_image_dir(&sources, dir.path())
            .iter()
            .all(holds_pattern)
    );
}

fn roundtrip(c: &mut Criterion) {
    let pattern = pattern();
    check_variants(&pattern);

    let mut group = c.benchmark_group("roundtrip_full_1MiB_pipes");
    for n in COUNTS {
        group.throughput(Throughput::Bytes((n * MIB) as u64));
        // Large N: few, long iterations; setup (filling n MiB) runs once per iteration.
        group.sample_size(match n {
            1 => 100,
            16 => 30,
            _ => 10,
        });
        let setup = || full_pipes(n, &pattern);

        group.bench_with_input(BenchmarkId::new("pipecr_in_memory", n), &n, |b, _| {
            b.iter_batched(
                setup,
                |sources| {
                    let restored = pipecr_in_memory(&sources);
                    // Returned, so closing both happens outside the timed part.
                    black_box((sources, restored))
                },
                BatchSize::PerIteration,
            )
        });

        // The two halves of pipecr_in_memory, to see where its time goes.
        group.bench_with_input(BenchmarkId::new("pipecr_checkpoint_only", n), &n, |b, _| {
            b.iter_batched(
                setup,
                |sources| {
                    let images: Vec<_> = sources
                        .iter()
                        .map(|(r, _)| pipe::checkpoint(r.as_fd()).expect("checkpoint"))
                        .collect();
                    black_box((sources, images))
                },
                BatchSize::PerIteration,
            )
        });
        let images: Vec<_> = full_pipes(n, &pattern)
            .iter()
            .map(|(r, _)| pipe::checkpoint(r.as_fd()).expect("checkpoint"))
            .collect();
        group.bench_with_input(BenchmarkId::new("pipecr_restore_only", n), &n, |b, _| {
            b.iter_batched(
                || (),
                |()| {
                    let restored: Vec<Pipe> = images
                        .iter()
                        .map(|image| pipe::restore(image).expect("restore"))
                        .collect();
                    black_box(restored)
                },
                BatchSize::PerIteration,
            )
        });
        drop(images);

        let mut buf = vec![0u8; MIB];
        group.bench_with_input(BenchmarkId::new("baseline_read_write", n), &n, |b, _| {
            b.iter_batched(
                setup,
                |sources| {
                    let restored = baseline_read_write(&sources, &mut buf);
                    black_box((sources, restored))
                },
                BatchSize::PerIteration,
            )
        });

        group.bench_with_input(BenchmarkId::new("pipecr_zero_copy", n), &n, |b, _| {
            b.iter_batched(
                setup,
                |sources| {
                    let restored = pipecr_zero_copy(&sources);
                    black_box((sources, restored))
                },
                BatchSize::PerIteration,
            )
        });

        // 256 fsync'd image directories per iteration measure the disk, not pipecr.
        if n <= 16 {
            group.bench_with_input(BenchmarkId::new("pipecr_via_image_dir", n), &n, |b, _| {
                b.iter_batched(
                    || {
                        (
                            full_pipes(n, &pattern),
                            tempfile::tempdir().expect("tempdir"),
                        )
                    },
                    |(sources, dir)| {
                        let restored = pipecr_via_image_dir(&sources, dir.path());
                        // The directory is removed outside the timed part.
                        black_box((sources, restored, dir))
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
