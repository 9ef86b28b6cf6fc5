//! A tree of processes sharing memory, dumped and restored, against the same tree with
//! private memory (issue 12, section 4). A plain `main` printing a markdown table.
//!
//! The tree is `tests/progs/sharetree.c`, built with `cc`: a parent maps 256 MiB of
//! anonymous memory, writes a pattern over every page and forks 7 children, which
//! inherit it. Two cases, measured alternately in the same run:
//!
//! - `shared`: `MAP_SHARED | MAP_ANONYMOUS`: one memory object, mapped by 8 processes;
//! - `private` (the baseline): `MAP_PRIVATE | MAP_ANONYMOUS`: the children share the
//!   pages copy-on-write (the image stores each frame once, see `pipecr::mem`).
//!
//! Per case, [`REPS`] times (a fresh tree each time; medians reported): `pipecr dump`
//! (the binary, from its start to its exit; it kills the tree), the image size (sum of
//! file lengths), `pipecr restore` from its start to its `restored pid N` line; then
//! the restored parent verifies its pattern and, when shared, sees a byte one restored
//! child writes. The image is expected to hold the 256 MiB once: within 5 % of 256 MiB
//! plus the private pages of the 8 processes (their stacks, heaps, libraries' data).
//!
//! Run: `cargo bench -p pipecr-cli --bench shared_tree` (results: docs/BENCHMARKS.md).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipecr_image::{Image, proto};

const PIPECR: &str = env!("CARGO_BIN_EXE_pipecr");
const REPS: usize = 5;
const MIB: u64 = 256;
const NPROC: usize = 8;
const PAGE: u64 = 4096;

fn build(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/sharetree.c");
    let exe = dir.join("sharetree");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc sharetree.c");
    exe
}

fn fifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn verify(ctl: &mut File, ack: &mut File) -> bool {
    ctl.write_all(b"v").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap();
    b[0] == b'y'
}

fn image_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Bytes of pages the processes' own records reference (distinct store indices): what
/// the image holds beside the memory objects.
fn private_bytes(dir: &Path) -> u64 {
    let image = Image::open(dir).unwrap();
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let objects: Vec<proto::MemObject> = image.read_records(pipecr_image::MEM_OBJECTS).unwrap();
    let mut object_pages = std::collections::BTreeSet::new();
    for o in &objects {
        for r in o.pages.iter().filter(|r| !r.zero) {
            object_pages.extend(r.store_index..r.store_index + r.nr_pages);
        }
    }
    let mut pages = std::collections::BTreeSet::new();
    for mm in &mms {
        for r in mm.pages.iter().filter(|r| !r.zero) {
            pages.extend(r.store_index..r.store_index + r.nr_pages);
        }
    }
    pages.retain(|p| !object_pages.contains(p));
    pages.len() as u64 * PAGE
}

struct Run {
    dump: Duration,
    restore: Duration,
    image: u64,
    private: u64,
}

fn once(exe: &Path, dir: &Path, shared: bool, rep: usize) -> Run {
    let work = dir.join(format!(
        "{}-{rep}",
        if shared { "shared" } else { "private" }
    ));
    fs::create_dir_all(&work).unwrap();
    let (ctlp, ackp) = (work.join("ctl"), work.join("ack"));
    fifo(&ctlp);
    fifo(&ackp);
    let mut ctl = rw(&ctlp);
    let mut child = Command::new(exe)
        .arg(&ctlp)
        .arg(&ackp)
        .arg(MIB.to_string())
        .arg(if shared { "1" } else { "0" })
        .arg(NPROC.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ack = rw(&ackp);
    let mut ready = [0u8; 6];
    ack.read_exact(&mut ready).unwrap();
    assert!(verify(&mut ctl, &mut ack), "the tree before the dump");
    let pid = child.id() as i32;
    let img = work.join("img");
    let t = Instant::now();
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let dump = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.wait().unwrap();
    let image: Vec<proto::Process> = Image::open(&img)
        .unwrap()
        .read_records(pipecr_image::TREE)
        .unwrap();
    assert_eq!(image.len(), NPROC);
    // The children are orphans of the killed parent: wait until every PID is free.
    let pids: Vec<i32> = image.iter().map(|p| p.pid).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < deadline, "the dumped tree is still there");
        std::thread::yield_now();
    }
    let t = Instant::now();
    let mut restore = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(restore.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let restore_time = t.elapsed();
    assert_eq!(line.trim(), format!("restored pid {pid}"));
    assert!(verify(&mut ctl, &mut ack), "the restored tree");
    ctl.write_all(b"q").unwrap();
    assert!(restore.wait().unwrap().success());
    let run = Run {
        dump,
        restore: restore_time,
        image: image_bytes(&img),
        private: private_bytes(&img),
    };
    fs::remove_dir_all(&work).unwrap();
    run
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    // The tree holds only what it opens itself: nothing the shell or cargo leaked to us.
    pipecr::sys::fd::cloexec_from(3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let exe = build(tmp.path());
    let mut shared = Vec::new();
    let mut private = Vec::new();
    for rep in 0..REPS {
        shared.push(once(&exe, tmp.path(), true, rep));
        private.push(once(&exe, tmp.path(), false, rep));
    }
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    println!(
        "| case | dump | restore | image | private pages | image / expected (shared: 256 MiB + private; private: private) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut meds = Vec::new();
    for (name, runs) in [("shared", &shared), ("private", &private)] {
        let dump = median(runs.iter().map(|r| r.dump).collect());
        let restore = median(runs.iter().map(|r| r.restore).collect());
        let image = median(runs.iter().map(|r| r.image).collect());
        let priv_ = median(runs.iter().map(|r| r.private).collect());
        // The private tree's pages are all private: the 256 MiB are among them.
        let expected = if name == "shared" {
            (MIB << 20) + priv_
        } else {
            priv_
        };
        let ratio = image as f64 / expected as f64;
        println!(
            "| {name} | {} | {} | {} | {} | {ratio:.3} |",
            ms(dump),
            ms(restore),
            mib(image),
            mib(priv_)
        );
        meds.push((dump, restore, image, priv_));
    }
    let (s, p) = (meds[0], meds[1]);
    println!(
        "\nshared / private: dump {:.2}x, restore {:.2}x (medians of {REPS})",
        s.0.as_secs_f64() / p.0.as_secs_f64(),
        s.1.as_secs_f64() / p.1.as_secs_f64()
    );
    for (name, runs) in [("shared", &shared), ("private", &private)] {
        let all: Vec<String> = runs
            .iter()
            .map(|r| format!("{}/{}", ms(r.dump), ms(r.restore)))
            .collect();
        println!("{name} runs (dump/restore): {}", all.join(", "));
    }
}
