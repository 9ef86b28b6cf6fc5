//! Memory checkpoint and restore against the cost of copying the same bytes by hand
//! (issue 4, section 4). A plain `main` (no criterion: one dump of 1 GiB is a measurement
//! on its own), printing markdown tables.
//!
//! The process is `tests/progs/memhog.c`, built with `cc`: it maps an area of private
//! anonymous memory, writes a non-zero pattern into the pages it touches, optionally
//! forks a child sharing the area copy-on-write, tells its address on a FIFO and serves
//! 'v' (verify the pattern) and 'q' (reap the child, exit) on another. Cases:
//!
//! - 64 MiB dense and 1 GiB dense: every page touched;
//! - 1 GiB mapped, 10 MiB touched: 2560 pages spread evenly;
//! - 1 GiB dense with a forked child sharing it copy-on-write (a fresh tree for each dump:
//!   a dump unshares what the tree shared, see the comment in `main`); its restore
//!   brings back both processes (`q` then makes the parent reap its child).
//!
//! Measured per case, [`REPS`] times each (medians reported):
//!
//! - dump: `pipecr::dump::dump_tree` (`DumpStats.total`, image fsync'd, and
//!   `DumpStats.frozen`);
//! - restore: `pipecr restore -D DIR` (the binary, foreground) from its start to its
//!   `restored pid N` line, then the pattern is verified in the restored process;
//! - image size: the sum of the file lengths, and of the blocks allocated;
//! - baseline dump: `pread` of the touched pages from `/proc/PID/mem` into a 4 MiB buffer,
//!   `write` into one file, `fsync` (no freezing, no page scan: the floor for the bytes);
//! - baseline restore: start a fresh memhog with the same area untouched (until it has
//!   told its address), then read that file back and `pwrite` it into the area through
//!   `/proc/PID/mem`; the pattern is verified.
//!
//! Run: `cargo bench -p pipecr-cli --bench mem_roundtrip` (results: docs/BENCHMARKS.md).
//! `PIPECR_MEM_ONLY=NAME` runs one case (`64M`, `1G`, `1G-sparse`, `1G-fork`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipecr::dump::dump_tree;
use pipecr::files::DumpOptions;

const PIPECR: &str = env!("CARGO_BIN_EXE_pipecr");
const REPS: usize = 3;
const PAGE: u64 = 4096;

struct Case {
    name: &'static str,
    size_mib: u64,
    touch_mib: u64,
    fork: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "64M",
        size_mib: 64,
        touch_mib: 64,
        fork: false,
    },
    Case {
        name: "1G",
        size_mib: 1024,
        touch_mib: 1024,
        fork: false,
    },
    Case {
        name: "1G-sparse",
        size_mib: 1024,
        touch_mib: 10,
        fork: false,
    },
    Case {
        name: "1G-fork",
        size_mib: 1024,
        touch_mib: 1024,
        fork: true,
    },
];

impl Case {
    /// The touched page ranges of the area, as (first page, pages), as memhog.c lays
    /// them out.
    fn runs(&self) -> Vec<(u64, u64)> {
        let npages = (self.size_mib << 20) / PAGE;
        let stride = npages / ((self.touch_mib << 20) / PAGE);
        if stride == 1 {
            vec![(0, npages)]
        } else {
            (0..npages)
                .step_by(stride as usize)
                .map(|p| (p, 1))
                .collect()
        }
    }

    fn touched_bytes(&self) -> u64 {
        self.runs().iter().map(|r| r.1 * PAGE).sum()
    }
}

/// A running memhog and our ends of its FIFOs.
struct Prog {
    child: Child,
    ctl: File,
    ack: File,
    addr: u64,
}

struct Fifos {
    ctl: PathBuf,
    ack: PathBuf,
}

impl Fifos {
    fn new(dir: &Path) -> Fifos {
        let f = Fifos {
            ctl: dir.join("ctl"),
            ack: dir.join("ack"),
        };
        for p in [&f.ctl, &f.ack] {
            let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
            assert!(ok, "mkfifo {}", p.display());
        }
        f
    }
}

fn start(exe: &Path, fifos: &Fifos, case: &Case, fill: bool) -> Prog {
    // Read-write: the FIFO stays open across the program's death and restore.
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifos.ctl)
        .unwrap();
    let child = Command::new(exe)
        .arg(&fifos.ctl)
        .arg(&fifos.ack)
        .arg(case.size_mib.to_string())
        .arg(case.touch_mib.to_string())
        .arg(if fill { "1" } else { "0" })
        .arg(if case.fork && fill { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read-write as well: a killed tree's last writer (a dying child) never makes our
    // next read see end-of-file.
    let mut ack = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifos.ack)
        .unwrap();
    let mut msg = [0u8; 17];
    ack.read_exact(&mut msg).unwrap();
    let addr = u64::from_str_radix(std::str::from_utf8(&msg[..16]).unwrap(), 16).unwrap();
    Prog {
        child,
        ctl,
        ack,
        addr,
    }
}

fn verify(ctl: &mut File, ack: &mut File) -> bool {
    ctl.write_all(b"v").unwrap();
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).unwrap();
    b[0] == b'y'
}

fn stop(mut prog: Prog) {
    prog.ctl.write_all(b"q").unwrap();
    assert!(prog.child.wait().unwrap().success());
}

/// (sum of file lengths, sum of allocated blocks) under `dir`.
fn du(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            let (l, b) = du(&e.path());
            total = (total.0 + l, total.1 + b);
        } else {
            total = (total.0 + m.len(), total.1 + m.blocks() * 512);
        }
    }
    total
}

/// Copies the touched pages of `pid`'s area into `out` through `/proc/PID/mem`.
fn baseline_dump(pid: u32, addr: u64, runs: &[(u64, u64)], out: &Path, buf: &mut [u8]) {
    let mem = File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut file = File::create(out).unwrap();
    for &(first, pages) in runs {
        let (mut off, end) = (first * PAGE, (first + pages) * PAGE);
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            mem.read_exact_at(&mut buf[..n], addr + off).unwrap();
            file.write_all(&buf[..n]).unwrap();
            off += n as u64;
        }
    }
    file.sync_all().unwrap();
}

/// Writes `file` back into the area of a fresh process through `/proc/PID/mem`.
fn baseline_restore(pid: u32, addr: u64, runs: &[(u64, u64)], file: &Path, buf: &mut [u8]) {
    let mem = OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .unwrap();
    let mut file = File::open(file).unwrap();
    for &(first, pages) in runs {
        let (mut off, end) = (first * PAGE, (first + pages) * PAGE);
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            file.read_exact(&mut buf[..n]).unwrap();
            mem.write_all_at(&buf[..n], addr + off).unwrap();
            off += n as u64;
        }
    }
}

/// Whether `pid` and its only child map the same frame at `addr` (pagemap PFNs).
fn shares_first_page(pid: u32, addr: u64) -> bool {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let child: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let pfn = |p: u32| {
        let pagemap = File::open(format!("/proc/{p}/pagemap")).unwrap();
        let mut b = [0u8; 8];
        pagemap.read_exact_at(&mut b, addr / PAGE * 8).unwrap();
        u64::from_ne_bytes(b) & ((1 << 55) - 1)
    };
    pfn(pid) == pfn(child)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn main() {
    // Descriptors inherited from whoever started the bench would be dumped with memhog
    // as leading outside its tree: none reaches it.
    pipecr::sys::fd::cloexec_from(3).unwrap();
    let work = tempfile::tempdir_in(std::env::var_os("PIPECR_BENCH_DIR").unwrap_or("/tmp".into()))
        .unwrap();
    let exe = work.path().join("memhog");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/memhog.c");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc memhog.c");
    let only = std::env::var("PIPECR_MEM_ONLY").ok();
    let mut buf = vec![0u8; 4 << 20];
    let mut rows = Vec::new();
    for case in CASES
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
    {
        let dir = work.path().join(case.name);
        fs::create_dir(&dir).unwrap();
        let fifos = Fifos::new(&dir);
        let runs = case.runs();
        let mut prog = start(&exe, &fifos, case, true);
        let mut pid = prog.child.id();
        let base_file = dir.join("baseline.bin");

        let mut base_dump = Vec::new();
        for _ in 0..REPS {
            let _ = fs::remove_file(&base_file);
            let t = Instant::now();
            baseline_dump(pid, prog.addr, &runs, &base_file, &mut buf);
            base_dump.push(t.elapsed());
        }

        let (mut total, mut frozen) = (Vec::new(), Vec::new());
        let img = dir.join("img");
        let mut stats = None;
        for rep in 0..REPS {
            if case.fork && rep > 0 {
                // A fresh tree per dump: reading pages with process_vm_readv unshares the
                // pages a parent shares copy-on-write with its child (the kernel's
                // FOLL_PIN rule), so after one dump the tree no longer shares them.
                stop(prog);
                prog = start(&exe, &fifos, case, true);
                pid = prog.child.id();
            }
            let _ = fs::remove_dir_all(&img);
            let options = DumpOptions {
                read_handlers: true,
                ..DumpOptions::default()
            };
            let s = dump_tree(pid as i32, &img, &options).unwrap();
            total.push(s.total);
            frozen.push(s.frozen);
            eprintln!(
                "{}: dump {rep}: {} ms, pages stored {} reused {}",
                case.name,
                s.total.as_millis(),
                s.memory.pages_stored,
                s.memory.pages_reused
            );
            stats = Some(s);
        }
        let stats = stats.unwrap();
        let (len, blocks) = du(&img);
        assert!(
            verify(&mut prog.ctl, &mut prog.ack),
            "{}: original",
            case.name
        );
        let addr = prog.addr;
        let (ctl, ack) = (prog.ctl.try_clone().unwrap(), prog.ack.try_clone().unwrap());
        stop(prog);
        let (mut ctl, mut ack) = (ctl, ack);

        let mut restore = Vec::new();
        {
            for _ in 0..REPS {
                let t = Instant::now();
                let mut child = Command::new(PIPECR)
                    .args(["restore", "-D"])
                    .arg(&img)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                let mut line = String::new();
                BufReader::new(child.stdout.take().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                restore.push(t.elapsed());
                assert_eq!(line.trim(), format!("restored pid {pid}"), "{}", case.name);
                assert!(verify(&mut ctl, &mut ack), "{}: restored", case.name);
                if case.fork {
                    eprintln!(
                        "{}: restored parent and child share the area's first page: {}",
                        case.name,
                        shares_first_page(pid, addr)
                    );
                }
                ctl.write_all(b"q").unwrap();
                assert!(child.wait().unwrap().success());
            }
        }

        let (mut base_spawn, mut base_restore) = (Vec::new(), Vec::new());
        for _ in 0..REPS {
            let t = Instant::now();
            let mut fresh = start(&exe, &fifos, case, false);
            base_spawn.push(t.elapsed());
            baseline_restore(fresh.child.id(), fresh.addr, &runs, &base_file, &mut buf);
            base_restore.push(t.elapsed());
            assert!(
                verify(&mut fresh.ctl, &mut fresh.ack),
                "{}: baseline",
                case.name
            );
            stop(fresh);
        }

        let (bd, br) = (median(base_dump), median(base_restore));
        let (t, f) = (median(total), median(frozen));
        let r = (!restore.is_empty()).then(|| median(restore));
        eprintln!(
            "{}: pages stored {} reused {} zero {}",
            case.name,
            stats.memory.pages_stored,
            stats.memory.pages_reused,
            stats.memory.pages_zero
        );
        rows.push(format!(
            "| {} | {} | {} / {} | {} | {} | {} | {:.2} | {:.2} | {} | {} ({}) | {} | {} |",
            case.name,
            mib(case.touched_bytes()),
            mib(len),
            mib(blocks),
            ms(t),
            ms(f),
            ms(bd),
            t.as_secs_f64() / bd.as_secs_f64(),
            f.as_secs_f64() / bd.as_secs_f64(),
            r.map_or("n/a".into(), ms),
            ms(br),
            ms(median(base_spawn)),
            r.map_or("n/a".into(), |r| format!(
                "{:.2}",
                r.as_secs_f64() / br.as_secs_f64()
            )),
            stats.memory.pages_stored,
        ));
        let _ = fs::remove_dir_all(&dir);
    }
    println!(
        "| case | touched | image (length / allocated) | dump total | frozen | baseline dump | total ÷ baseline | frozen ÷ baseline | restore | baseline restore (of which spawn) | restore ÷ baseline | pages stored |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
}
