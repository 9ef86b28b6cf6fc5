//! How `dump::dump_tree` scales with the size of the tree: 10, 100 and 500 processes
//! holding about 1k, 10k and 50k descriptors in total, with pipes shared across
//! processes. A plain `main` (no criterion: one dump of a 500-process tree is a
//! measurement on its own), printing a table.
//!
//! The tree is built by a small Python program (a fresh single-threaded process; forking
//! this multi-threaded bench would not be safe), an 8-ary tree of forked processes:
//!
//! - the root raises RLIMIT_NOFILE to its hard limit, closes any descriptor it inherited
//!   beyond stdio, and creates P pipes, each holding a
//!   short line of pending data;
//! - every process forks its children first (so they inherit every end), then keeps a
//!   window of W consecutive pipes (both ends) and closes the rest, then `dup`s every
//!   fourth descriptor it kept: 2.5 W descriptors plus stdio. Windows are spread so that
//!   each pipe end is shared by about 4 processes (`kcmp` groups of 4 and more);
//! - stdin (the release pipe), stdout (the ready pipe) and stderr are pipes from the
//!   bench, shared by every process;
//! - each process writes one ready byte, then blocks in `read()` until the bench closes
//!   the release pipe.
//!
//! Measured per size, each repeated [`REPS`] times on the same tree (medians reported):
//! `dump_tree` total and frozen time (`DumpStats`), and two baselines in the same run:
//! `freeze` + `resume` alone (the floor of the frozen time) and a `/proc` scan that
//! reads every descriptor's link and fdinfo (what any dumper must read, without
//! freezing, grouping or writing anything).
//!
//! Run: `cargo bench -p pipecr --bench dump_scale` (results: docs/BENCHMARKS.md).

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use pipecr::dump::{DumpStats, dump_tree};
use pipecr::files::DumpOptions;

/// (processes, descriptors in total).
const SIZES: [(usize, usize); 3] = [(10, 1_000), (100, 10_000), (500, 50_000)];
const REPS: usize = 5;

const TREE: &str = r#"
import os, resource, sys

n, total = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
os.closerange(3, hard)                    # nothing but stdio from whoever started the bench
per = total // n                          # descriptors per process, stdio included
w = max(1, int((per - 3) / 2.5))          # pipes kept per process (2 ends + 1/2 dup each)
p = max(w, -(-n * w // 4))                # pipes: each one in about 4 windows
ends = []
for j in range(p):
    r, wr = os.pipe()
    os.write(wr, b"pipe %d\n" % j)
    ends.append((r, wr))
lo = min(min(e) for e in ends)
hi = max(max(e) for e in ends) + 1

def setup(i):
    start = i * p // n
    keep = set()
    for k in range(w):
        keep.update(ends[(start + k) % p])
    prev = lo
    for fd in sorted(keep):
        os.closerange(prev, fd)
        prev = fd + 1
    os.closerange(prev, hi)
    kept = sorted(keep)
    dups = [os.dup(fd) for fd in kept[::4]]
    os.write(1, b"r")
    while os.read(0, 1):
        pass

def run(i):
    kids = []
    for c in range(8 * i + 1, min(n, 8 * i + 9)):
        pid = os.fork()
        if pid == 0:
            try:
                run(c)
                code = 0
            except BaseException as e:
                sys.stderr.write(f"process {c}: {e!r}\n")
                code = 1
            os._exit(code)
        kids.append(pid)
    setup(i)
    for pid in kids:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"child {pid} of process {i}: status {status}")

run(0)
"#;

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A running tree, blocked in `read()` of its release pipe.
struct Tree {
    child: Child,
    release: Option<ChildStdin>,
    _ready: ChildStdout,
}

impl Tree {
    fn spawn(processes: usize, descriptors: usize) -> Tree {
        let mut child = Command::new(python())
            .args(["-I", "-S", "-c", TREE])
            .arg(processes.to_string())
            .arg(descriptors.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut ready = child.stdout.take().unwrap();
        let mut got = 0;
        let mut buf = [0u8; 512];
        while got < processes {
            let n = ready.read(&mut buf).unwrap();
            if n == 0 {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("tree ended after {got} of {processes} ready bytes:\n{err}");
            }
            got += n;
        }
        Tree {
            release: child.stdin.take(),
            child,
            _ready: ready,
        }
    }

    fn root(&self) -> i32 {
        self.child.id() as i32
    }

    /// Closes the release pipe and checks that every process exited 0.
    fn finish(mut self) {
        drop(self.release.take());
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success() && err.is_empty(), "tree: {status}\n{err}");
    }
}

/// `root` and every process below it.
fn descendants(root: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        all.push(pid);
        for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap();
            queue.extend(
                children
                    .split_whitespace()
                    .map(|c| c.parse::<i32>().unwrap()),
            );
        }
    }
    all
}

/// Baseline: what reading every descriptor's link and fdinfo from /proc costs, without
/// freezing, grouping, fetching or writing. Returns the number of descriptors read.
fn proc_scan(root: i32) -> usize {
    let mut n = 0;
    for pid in descendants(root) {
        for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let fd = entry.file_name();
            let fd = fd.to_str().unwrap();
            std::hint::black_box(fs::read_link(entry.path()).unwrap());
            std::hint::black_box(fs::read(format!("/proc/{pid}/fdinfo/{fd}")).unwrap());
            n += 1;
        }
    }
    n
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration, per: usize) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6 / per as f64)
}

struct Row {
    processes: usize,
    descriptors: usize,
    open_files: usize,
    pipes: usize,
    pipe_bytes: u64,
    image: u64,
    total: Duration,
    frozen: Duration,
    totals: Vec<Duration>,
    freeze_only: Duration,
    scan: Duration,
}

fn measure(processes: usize, descriptors: usize, tmp: &Path) -> Row {
    let build = Instant::now();
    let tree = Tree::spawn(processes, descriptors);
    let built = build.elapsed();
    let root = tree.root();
    assert_eq!(descendants(root).len(), processes, "tree size");

    let mut stats: Vec<DumpStats> = Vec::new();
    let mut image = 0;
    for rep in 0..REPS {
        let dir = tmp.join(format!("p{processes}-{rep}"));
        let s = dump_tree(root, &dir, &DumpOptions::default()).expect("dump_tree");
        image = dir_size(&dir);
        fs::remove_dir_all(&dir).unwrap();
        stats.push(s);
    }
    let mut freeze_only = Vec::new();
    let mut scan = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        let frozen = pipecr::freeze::freeze(root).expect("freeze");
        frozen.resume();
        freeze_only.push(t.elapsed());
        let t = Instant::now();
        let n = proc_scan(root);
        scan.push(t.elapsed());
        assert_eq!(n, stats[0].descriptors, "scan saw other descriptors");
    }
    tree.finish();
    let s = &stats[0];
    let totals: Vec<Duration> = stats.iter().map(|s| s.total).collect();
    eprintln!(
        "  {processes} processes: tree built in {}; dump totals {:?}",
        ms(built),
        totals.iter().map(|&d| ms(d)).collect::<Vec<_>>()
    );
    Row {
        processes: s.processes,
        descriptors: s.descriptors,
        open_files: s.open_files,
        pipes: s.pipes,
        pipe_bytes: s.pipe_bytes,
        image,
        total: median(totals.clone()),
        frozen: median(stats.iter().map(|s| s.frozen).collect()),
        totals,
        freeze_only: median(freeze_only),
        scan: median(scan),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let tmp = tempfile::Builder::new()
        .prefix("pipecr-dump-scale-")
        .tempdir()
        .unwrap();
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    eprintln!(
        "dump_scale: {REPS} dumps per size, images under {} (RLIMIT_NOFILE of the dumper: {:?})",
        tmp.path().display(),
        nofile.current
    );
    // PIPECR_SCALE_ONLY=500 measures only the 500-process tree (for profiling).
    let only: Option<usize> = std::env::var("PIPECR_SCALE_ONLY")
        .ok()
        .map(|v| v.parse().expect("PIPECR_SCALE_ONLY: a process count"));
    let rows: Vec<Row> = SIZES
        .iter()
        .filter(|&&(p, _)| only.is_none_or(|o| o == p))
        .map(|&(p, d)| measure(p, d, tmp.path()))
        .collect();

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n| processes | descriptors | open files | pipes (bytes) | image | dump total | frozen | total / descriptor | frozen / descriptor | baseline: freeze+resume | baseline: /proc scan |"
    )
    .unwrap();
    writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for r in &rows {
        writeln!(
            out,
            "| {} | {} | {} | {} ({} B) | {} KiB | {} | {} | {} | {} | {} | {} |",
            r.processes,
            r.descriptors,
            r.open_files,
            r.pipes,
            r.pipe_bytes,
            r.image / 1024,
            ms(r.total),
            ms(r.frozen),
            us(r.total, r.descriptors),
            us(r.frozen, r.descriptors),
            ms(r.freeze_only),
            ms(r.scan),
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nRatios between consecutive sizes (linear growth: time ratio = descriptor ratio):\n"
    )
    .unwrap();
    writeln!(
        out,
        "| sizes | descriptors × | dump total × | frozen × | /proc scan × |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let x = |x: Duration, y: Duration| y.as_secs_f64() / x.as_secs_f64();
        writeln!(
            out,
            "| {} → {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            a.descriptors,
            b.descriptors,
            b.descriptors as f64 / a.descriptors as f64,
            x(a.total, b.total),
            x(a.frozen, b.frozen),
            x(a.scan, b.scan),
        )
        .unwrap();
    }
    writeln!(out, "\nAll dump totals (ms), in run order:").unwrap();
    for r in &rows {
        writeln!(
            out,
            "- {} processes: {}",
            r.processes,
            r.totals
                .iter()
                .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
    }
}
