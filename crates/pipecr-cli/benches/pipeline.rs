//! A pipeline dumped and restored with full pipes and weighty memory (issue 5, section 6):
//! how long is it stopped, how long do dump and restore take, how big is the image? A
//! plain `main` printing a markdown table (each dump is a measurement on its own).
//!
//! The pipeline is `pipecr demo`'s (`pipecr demo-stage supervise`: produce, 9 transforms,
//! consume, so 10 pipes, under a supervisor; 12 processes). Its consumer pauses after
//! 20 000 lines and the writers signal each full pipe (SIGUSR2), so every dump happens with
//! every pipe full, found without guessing at timing. Cases:
//!
//! - `full`: each pipe resized to 1 MiB (F_SETPIPE_SZ) and full, plus 256 MiB of dense,
//!   touched memory in the consumer;
//! - `pipes`: the 1 MiB pipes alone;
//! - `memory`: the 256 MiB alone (pipes at the default 64 KiB, full).
//!
//! Per case, [`REPS`] times (medians reported): start the pipeline, wait for it to be
//! full, then
//!
//! - *running on*: `dump_tree` with `leave_running` and `snapshots` (`pipecr dump
//!   --leave-running --read-handlers --snapshot`: memory read from copy-on-write forks
//!   after the tree resumes; `DumpStats.frozen`: freeze to resume; `total`: to the
//!   fsync'd, renamed image);
//! - *dump*: `dump_tree` without it, as `pipecr demo` does (`frozen` then runs from the
//!   freeze to the kill, after the commit);
//! - *restore*: `pipecr restore -D DIR` from spawn to its `restored pid N` line; the
//!   consumer is then resumed and the output checked against an uninterrupted run's;
//! - *outage*: from the freeze of the second dump to the restored tree running (its
//!   stopped time, reaping the killed tree, the restore);
//! - baselines, in the same state: *tee*, copying every pipe's bytes out with
//!   `pipecr::pipe::checkpoint` (tee into a scratch pipe, read) with the tree running;
//!   *copy*, `pread` of every private writable mapping of every process from
//!   `/proc/PID/mem` and `write` into one file, no fsync (the bytes any dumper moves).
//!
//! Run: `cargo bench -p pipecr-cli --bench pipeline` (results: docs/BENCHMARKS.md).
//! `PIPECR_PIPELINE_ONLY=NAME` runs one case; `PIPECR_BENCH_DIR` moves the scratch
//! directory (default /tmp); `PIPECR_PIPELINE_NO_HANDLERS=1` dumps without reading signal
//! handlers, `PIPECR_PIPELINE_NO_SNAPSHOTS=1` without snapshots (memory read into a
//! write-behind buffer while stopped), to see what each costs.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use pipecr::dump::dump_tree;
use pipecr::files::DumpOptions;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};

const PIPECR: &str = env!("CARGO_BIN_EXE_pipecr");
const REPS: usize = 3;
const TRANSFORMS: usize = 9;
const LINES: u64 = 400_000;
const PAUSE: u64 = 20_000;

struct Case {
    name: &'static str,
    pipe_size: Option<usize>,
    ballast_mib: usize,
}

const CASES: [Case; 3] = [
    Case {
        name: "full",
        pipe_size: Some(1 << 20),
        ballast_mib: 256,
    },
    Case {
        name: "pipes",
        pipe_size: Some(1 << 20),
        ballast_mib: 0,
    },
    Case {
        name: "memory",
        pipe_size: None,
        ballast_mib: 256,
    },
];

fn start(stage_exe: &Path, case: &Case, out: &Path, log: &Path, gated: bool) -> Child {
    let mut cmd = Command::new(stage_exe);
    cmd.args(["demo-stage", "supervise", "--lines"])
        .arg(LINES.to_string())
        .arg("--transforms")
        .arg(TRANSFORMS.to_string())
        .arg("--ballast-mib")
        .arg(case.ballast_mib.to_string())
        .arg("--out")
        .arg(out);
    if let Some(size) = case.pipe_size {
        cmd.arg("--pipe-size").arg(size.to_string());
    }
    if gated {
        cmd.arg("--pause-after")
            .arg(PAUSE.to_string())
            .arg("--notify")
            .arg(std::process::id().to_string());
    }
    let log = File::options().create(true).append(true).open(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The stages in pipeline order (pid, name), and dups of the writers' stdout pipes.
struct Stages {
    pids: Vec<i32>,
    pipes: Vec<OwnedFd>,
}

fn stdout_of(pid: i32) -> OwnedFd {
    let pidfd = pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        PidfdFlags::empty(),
    )
    .unwrap();
    pidfd_getfd(&pidfd, 1, PidfdGetfdFlags::empty()).unwrap()
}

/// The stages linked by their pipes, or None while one is missing or a pipe has room.
fn full(root: i32) -> Option<Stages> {
    let children = fs::read_to_string(format!("/proc/{root}/task/{root}/children")).unwrap();
    let pids: Vec<i32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    if pids.len() < TRANSFORMS + 2 {
        return None;
    }
    let link = |pid: i32, fd: i32| {
        fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut info = Vec::new();
    for &pid in &pids {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.get(1) != Some(&&b"demo-stage"[..]) {
            return None;
        }
        info.push((pid, args[2].to_vec(), link(pid, 0), link(pid, 1)));
    }
    let mut order = Vec::new();
    let mut next = info.iter().find(|s| s.1 == b"produce");
    while let Some(s) = next {
        order.push(s.0);
        next = info.iter().find(|t| s.3.starts_with("pipe:") && t.2 == s.3);
    }
    assert_eq!(order.len(), TRANSFORMS + 2, "stages linked by pipes");
    let mut pipes = Vec::new();
    for &pid in &order[..order.len() - 1] {
        let end = stdout_of(pid);
        let mut fds = [PollFd::new(&end, PollFlags::OUT)];
        poll(&mut fds, Some(&Timespec::default())).unwrap();
        if fds[0].revents().contains(PollFlags::OUT) {
            return None;
        }
        pipes.push(end);
    }
    Some(Stages { pids: order, pipes })
}

/// Waits for the consumer's pause (SIGUSR1) and every pipe full (checked at each SIGUSR2).
fn wait_full(waited: &SigSet, child: &mut Child) -> Stages {
    let mut paused = false;
    loop {
        match waited.wait().unwrap() {
            Signal::SIGCHLD => {
                if let Some(s) = child.try_wait().unwrap() {
                    panic!("pipeline ended ({s}) before its pipes were full");
                }
                continue;
            }
            Signal::SIGUSR1 => paused = true,
            _ => {}
        }
        if paused && let Some(stages) = full(child.id() as i32) {
            return stages;
        }
    }
}

/// Baseline: the pipes' bytes copied out through tee, the tree running (and paused).
fn baseline_tee(pipes: &[OwnedFd]) -> (Duration, u64) {
    let t = Instant::now();
    let mut bytes = 0;
    for p in pipes {
        bytes += pipecr::pipe::checkpoint(p.as_fd()).unwrap().data.len() as u64;
    }
    (t.elapsed(), bytes)
}

/// Baseline: every private writable mapping of every process read from /proc/PID/mem
/// and written into one file (no fsync).
fn baseline_copy(pids: &[i32], out: &Path, buf: &mut [u8]) -> (Duration, u64) {
    let t = Instant::now();
    let mut file = File::create(out).unwrap();
    let mut bytes = 0;
    for &pid in pids {
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let mem = File::open(format!("/proc/{pid}/mem")).unwrap();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (range, perms) = (f.next().unwrap(), f.next().unwrap());
            if !perms.starts_with("rw") || !perms.ends_with('p') || line.contains("[vvar") {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap();
            let (mut at, end) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            while at < end {
                let n = ((end - at) as usize).min(buf.len());
                if mem.read_exact_at(&mut buf[..n], at).is_err() {
                    break;
                }
                file.write_all(&buf[..n]).unwrap();
                bytes += n as u64;
                at += n as u64;
            }
        }
    }
    (t.elapsed(), bytes)
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
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

#[derive(Default)]
struct Samples {
    snap_frozen: Vec<Duration>,
    snap_total: Vec<Duration>,
    dump_frozen: Vec<Duration>,
    dump_total: Vec<Duration>,
    restore: Vec<Duration>,
    outage: Vec<Duration>,
    tee: Vec<Duration>,
    copy: Vec<Duration>,
}

fn main() {
    let mut waited = SigSet::empty();
    for s in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGCHLD] {
        waited.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None).unwrap();
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    // Only the stages' stdio may lead out of the tree.
    pipecr::sys::fd::cloexec_from(3).unwrap();
    let work = tempfile::tempdir_in(std::env::var_os("PIPECR_BENCH_DIR").unwrap_or("/tmp".into()))
        .unwrap();
    let stage_exe = Path::new(PIPECR);
    let log = work.path().join("stages.log");
    let only = std::env::var("PIPECR_PIPELINE_ONLY").ok();
    // As `pipecr demo` dumps (signal handlers read by injection), unless told otherwise.
    let read_handlers = std::env::var_os("PIPECR_PIPELINE_NO_HANDLERS").is_none();
    let snapshots = std::env::var_os("PIPECR_PIPELINE_NO_SNAPSHOTS").is_none();
    let mut buf = vec![0u8; 4 << 20];
    let mut rows = Vec::new();
    for case in CASES
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
    {
        let dir = work.path().join(case.name);
        fs::create_dir(&dir).unwrap();
        let reference = dir.join("reference.out");
        let mut child = start(stage_exe, case, &reference, &log, false);
        assert!(child.wait().unwrap().success(), "reference run");
        let reference = fs::read(&reference).unwrap();

        let mut s = Samples::default();
        let mut last = None;
        for rep in 0..REPS {
            let out = dir.join("restored.out");
            let mut child = start(stage_exe, case, &out, &log, true);
            let root = child.id() as i32;
            let stages = wait_full(&waited, &mut child);
            let (tee, pipe_bytes) = baseline_tee(&stages.pipes);
            let mut all = vec![root];
            all.extend(&stages.pids);
            let (copy, mem_bytes) = baseline_copy(&all, &dir.join("copy.bin"), &mut buf);
            drop(stages.pipes);
            s.tee.push(tee);
            s.copy.push(copy);

            let snap = dir.join("running-on");
            let _ = fs::remove_dir_all(&snap);
            let options = DumpOptions {
                read_handlers,
                leave_running: true,
                snapshots,
                write_behind: true,
                ..DumpOptions::default()
            };
            let st = dump_tree(root, &snap, &options).unwrap();
            s.snap_frozen.push(st.frozen);
            s.snap_total.push(st.total);

            let img = dir.join("image");
            let _ = fs::remove_dir_all(&img);
            let options = DumpOptions {
                leave_running: false,
                ..options
            };
            let frozen_at = Instant::now();
            let dt = dump_tree(root, &img, &options).unwrap();
            child.wait().unwrap();
            for &pid in &stages.pids {
                waitpid(Pid::from_raw(pid), None).unwrap();
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
            s.restore.push(t.elapsed());
            s.outage.push(frozen_at.elapsed());
            assert_eq!(line.trim(), format!("restored pid {root}"), "{}", case.name);
            kill(Pid::from_raw(*stages.pids.last().unwrap()), Signal::SIGUSR1).unwrap();
            assert!(
                restore.wait().unwrap().success(),
                "{}: restored run",
                case.name
            );
            assert!(
                fs::read(&out).unwrap() == reference,
                "{}: restored output differs",
                case.name
            );
            s.dump_frozen.push(dt.frozen);
            s.dump_total.push(dt.total);
            eprintln!(
                "{} rep {rep}: running on: stopped {} total {}; dump stopped {} total {}; \
                 restore {}; outage {}; tee {} ({}); copy {} ({}); image {}",
                case.name,
                ms(st.frozen),
                ms(st.total),
                ms(dt.frozen),
                ms(dt.total),
                ms(*s.restore.last().unwrap()),
                ms(*s.outage.last().unwrap()),
                ms(tee),
                mib(pipe_bytes),
                ms(copy),
                mib(mem_bytes),
                mib(du(&img)),
            );
            last = Some((dt, du(&img), pipe_bytes, mem_bytes));
        }
        let (dt, image, pipe_bytes, mem_bytes) = last.unwrap();
        rows.push(format!(
            "| {} | {} ({} pipes) | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} ({}) |",
            case.name,
            mib(dt.pipe_bytes),
            dt.pipes,
            mib(dt.memory.pages_stored * 4096),
            mib(image),
            ms(median(s.snap_frozen)),
            ms(median(s.snap_total)),
            ms(median(s.dump_frozen)),
            ms(median(s.dump_total)),
            ms(median(s.restore)),
            ms(median(s.outage)),
            ms(median(s.tee)),
            mib(pipe_bytes),
            ms(median(s.copy)),
            mib(mem_bytes),
        ));
        let _ = fs::remove_dir_all(&dir);
    }
    println!(
        "| case | in pipes | memory saved | image | running on: stopped | running on: total | dump: stopped (to kill) | dump: total | restore | outage (freeze to running) | baseline tee | baseline copy |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
}
