//! Pipelines end to end (issue 5, section 4): a tree dumped mid-flight (its pipes holding
//! data, the tree killed by the dump) and restored, once and ten times in a row (the
//! restored tree dumped again), finishes with the same output, byte for byte, as an
//! uninterrupted run of the same pipeline.
//!
//! - `seq | gzip -1 | sha256sum > OUT` under `sh -c`: real, unmodified programs, dumped
//!   when gzip has read a given amount more (`/proc/PID/io`) and seq is blocked writing
//!   into its full pipe (`/proc/PID/wchan`).
//! - a Python producer `| sort | uniq -c > OUT`: sort holds what it read in memory; the
//!   producer writes one batch per token byte and acknowledges it, and the dump follows.
//! - tests/progs/peers.c: two processes joined by two FIFOs, by a socketpair, by a
//!   packet-mode pipe; and a writer blocked on a full 1 MiB pipe with a reader blocked
//!   on an empty one. The test drives each process with command bytes on a FIFO and
//!   waits for its acknowledgement, so data is in flight (in both directions where the
//!   channel has two) at each dump; the programs check every byte (and every packet's
//!   length) they read.
//!
//! The last stage writes to a regular file through a shell redirection (or the stdout
//! the test gave the tree): pipecr restores it by path and position. Nothing waits for
//! time to pass: each dump follows an acknowledgement or a condition polled in /proc.

mod common;

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

/// Dump options: signal handlers too (gzip, sort and Python install some).
const DUMP: &[&str] = &["--read-handlers"];

/// Dump options of a snapshot: the tree runs on while its memory is read from
/// copy-on-write forks, and the test kills it once the dump returns.
const SNAPSHOT: &[&str] = &["--read-handlers", "--leave-running", "--snapshot"];

/// A running tree and the process that waits for it: the test (the tree as started, our
/// child) or a foreground `pipecr restore`. [`Tree::checkpoint`] dumps it (which kills
/// it) and restores it from that image.
struct Tree {
    root: i32,
    owner: Option<Child>,
    restored: bool,
    images: PathBuf,
    dumps: usize,
    guard: KillOnDrop,
    /// Dump with [`SNAPSHOT`] and kill the tree after each dump, instead of [`DUMP`].
    snapshots: bool,
}

impl Tree {
    fn new(child: Child, images: &Path) -> Tree {
        let root = child.id() as i32;
        Tree {
            root,
            owner: Some(child),
            restored: false,
            images: images.to_path_buf(),
            dumps: 0,
            guard: KillOnDrop(vec![root]),
            snapshots: false,
        }
    }

    /// Dumps the tree (the dump kills it, or we do once a snapshot dump returns), reaps
    /// what was ours of it, and restores it.
    fn checkpoint(&mut self) {
        self.dumps += 1;
        let img = self.images.join(format!("img-{}", self.dumps));
        let printed = dump(
            self.root,
            &img,
            if self.snapshots { SNAPSHOT } else { DUMP },
        );
        let pids = saved_pids(&img);
        assert_eq!(pids[0], self.root);
        if self.snapshots {
            if pids.iter().all(|&p| seccomp_free(p)) {
                let all = format!(
                    "memory of {} process(es) read from copy-on-write snapshots",
                    pids.len()
                );
                assert!(printed.contains(&all), "{printed}");
            } else {
                eprintln!("no snapshot taken: the tree runs under seccomp (read while stopped)");
            }
            // It ran on meanwhile (its state no longer the image's): only its output
            // could tell, and that is written at the end.
            for &p in &pids {
                kill(p);
            }
        }
        self.guard.0 = pids.clone();
        let mut owner = self.owner.take().unwrap();
        if self.restored {
            // The restored root was killed: its `pipecr restore` says so.
            finish_restore(owner, 128 + libc::SIGKILL);
        } else {
            let status = wait_child(&mut owner, "the dumped tree to die");
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        }
        // The root's children, orphaned, came to us (a subreaper) or to the restore that
        // just exited (and so to us): reaped here, their PIDs are free again.
        reap(&pids);
        for &p in &pids {
            wait_until(&format!("pid {p} of the dumped tree to be gone"), || {
                state(p).is_none()
            });
        }
        self.owner = Some(restore(&img, self.root));
        self.restored = true;
    }

    /// Waits for the tree to finish and checks it exited 0.
    fn finish(mut self) {
        let mut owner = self.owner.take().unwrap();
        if self.restored {
            finish_restore(owner, 0);
        } else {
            let status = wait_child(&mut owner, "the tree to finish");
            assert!(status.success(), "{status}");
        }
        self.guard.0.clear();
    }
}

/// `sh -c SCRIPT` in `dir`: stdin /dev/null, stdout /dev/null, stderr to `dir/err`.
fn sh(dir: &Path, script: &str) -> Command {
    let mut cmd = Command::new("sh");
    only_stdio(&mut cmd)
        .args(["-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("err")).unwrap());
    cmd
}

/// Waits until the processes below `root` run the programs `comms` (all forked and
/// exec'd); returns their PIDs in that order.
fn stages(root: i32, comms: &[&str]) -> Vec<i32> {
    let mut pids = Vec::new();
    wait_until(&format!("the stages {comms:?} to start"), || {
        let below: Vec<(i32, String)> = descendants(root)
            .into_iter()
            .filter_map(|p| Some((p, comm(p)?)))
            .collect();
        pids = comms
            .iter()
            .filter_map(|c| below.iter().find(|(_, n)| n == c).map(|(p, _)| *p))
            .collect();
        pids.len() == comms.len()
    });
    pids
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("err")).unwrap()
}

// --- a. seq | gzip -1 | sha256sum ----------------------------------------------------

// Long enough that the ten cycles (2 MiB each, plus what gzip reads between a poll and
// the freeze on a loaded machine) never reach its end: a pipeline that finishes, or whose
// seq has exited unreaped, before a dump is not what the tests check.
const GZIP_PIPELINE: &str = "seq 1 20000000 | gzip -1 | sha256sum > out";
/// The same, three times longer (~540 MB), for snapshot dumps: the tree runs on while
/// the image is written, and must not have finished (writing `out`, which the restore
/// then rightly finds changed) before the test kills it, even on a loaded machine.
const GZIP_PIPELINE_LONG: &str = "seq 1 60000000 | gzip -1 | sha256sum > out";

/// Dumps `cycles` times, each once gzip has read `step` more bytes (168.9 MB in all, 3 times that for snapshots);
/// with `snapshots`, as [`SNAPSHOT`] dumps.
fn gzip_pipeline(cycles: usize, step: u64, snapshots: bool) {
    if !capable() || !have("gzip") || !have("sha256sum") {
        return;
    }
    set_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let (plain, dumped) = (tmp.path().join("plain"), tmp.path().join("dumped"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&dumped).unwrap();

    let pipeline = if snapshots {
        GZIP_PIPELINE_LONG
    } else {
        GZIP_PIPELINE
    };
    let status = sh(&plain, pipeline).status().unwrap();
    assert!(status.success(), "{status}: {}", stderr_of(&plain));
    let expected = std::fs::read(plain.join("out")).unwrap();
    assert_eq!(expected.len(), 68, "{}", String::from_utf8_lossy(&expected));

    let child = sh(&dumped, pipeline).spawn().unwrap();
    let mut tree = Tree::new(child, &dumped);
    tree.snapshots = snapshots;
    for cycle in 0..cycles {
        let [seq, gzip, _] = stages(tree.root, &["seq", "gzip", "sha256sum"])[..] else {
            unreachable!()
        };
        let start = io(gzip, "rchar").unwrap();
        wait_until("gzip to read on", || match io(gzip, "rchar") {
            Some(n) => n >= start + step,
            None => panic!("cycle {cycle}: gzip finished before the dump"),
        });
        // seq is ahead of gzip: blocked in a write to its full pipe but for a moment
        // now and then.
        wait_in(seq, "pipe_write");
        // Informative only: `pipecr peek` at a pipe in motion fails now and then.
        let pending = |pid| peek(pid, 1).map_or_else(|e| e, |b| format!("{} bytes", b.len()));
        eprintln!(
            "cycle {cycle}: gzip read {} bytes since the last restore; waiting: {} for \
             gzip, {} for sha256sum",
            io(gzip, "rchar").unwrap_or(0).saturating_sub(start),
            pending(seq),
            pending(gzip)
        );
        tree.checkpoint();
    }
    tree.finish();
    assert_eq!(stderr_of(&dumped), "");
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(dumped.join("out")).unwrap()),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn gzip_pipeline_restored_mid_flight() {
    gzip_pipeline(1, 8 << 20, false);
}

#[test]
fn gzip_pipeline_dumped_and_restored_ten_times() {
    gzip_pipeline(10, 2 << 20, false);
}

/// The image of a snapshot dump is the tree as it was stopped, though the tree ran on
/// (gzip and sha256sum changing their memory) while it was read.
#[test]
fn gzip_pipeline_restored_from_snapshots() {
    gzip_pipeline(3, 4 << 20, true);
}

// --- b. python producer | sort | uniq -c ---------------------------------------------

/// One batch of `per` lines per token byte read from argv[1], each batch acknowledged on
/// argv[2] once written; exits after `batches` batches. The lines repeat (uniq counts).
const PRODUCER: &str = r#"
import os, sys
tok = os.open(sys.argv[1], os.O_RDONLY)
ack = os.open(sys.argv[2], os.O_WRONLY)
batches, per = int(sys.argv[3]), int(sys.argv[4])
for b in range(batches):
    t = os.read(tok, 1)
    if t != b"t":
        sys.exit(f"producer: token {t!r}")
    data = memoryview(b"".join(b"%d\n" % ((k * 2654435761) % 49999) for k in range(b * per, (b + 1) * per)))
    while data:
        data = data[os.write(1, data):]
    os.write(ack, b"k")
"#;

const BATCHES: usize = 20;
const PER_BATCH: usize = 25_000;

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Starts the sort pipeline in `dir`: the producer's token FIFO is `dir/p.ctl`.
fn sort_pipeline_start(dir: &Path) -> (Child, Ctl) {
    let mut p = Ctl::new(dir, "p");
    let script = format!(
        "\"$PY\" -I -S -c \"$PRODUCER\" p.ctl p.ack {BATCHES} {PER_BATCH} | sort -S 256M | \
         uniq -c > out"
    );
    let child = sh(dir, &script)
        .env("PY", python())
        .env("PRODUCER", PRODUCER)
        .env("LC_ALL", "C")
        .spawn()
        .unwrap();
    p.connect();
    (child, p)
}

/// Dumps after each of the batches in `dump_after`.
fn sort_pipeline(dump_after: &[usize]) {
    if !capable() || !have(python()) || !have("sort") || !have("uniq") {
        return;
    }
    set_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let (plain, dumped) = (tmp.path().join("plain"), tmp.path().join("dumped"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&dumped).unwrap();

    let (mut child, mut p) = sort_pipeline_start(&plain);
    for _ in 0..BATCHES {
        p.step(b't')
            .unwrap_or_else(|e| panic!("{e}: {}", stderr_of(&plain)));
    }
    let status = wait_child(&mut child, "the uninterrupted pipeline");
    assert!(status.success(), "{status}: {}", stderr_of(&plain));
    let expected = std::fs::read(plain.join("out")).unwrap();
    assert_eq!(
        expected.iter().filter(|&&b| b == b'\n').count(),
        49999,
        "distinct lines"
    );

    let (child, mut p) = sort_pipeline_start(&dumped);
    let mut tree = Tree::new(child, &dumped);
    let mut held = 0;
    for batch in 0..BATCHES {
        p.step(b't')
            .unwrap_or_else(|e| panic!("batch {batch}: {e}: {}", stderr_of(&dumped)));
        if dump_after.contains(&batch) {
            let [py, _, _] = stages(tree.root, &["python3", "sort", "uniq"])[..] else {
                unreachable!()
            };
            // Informative: sort may or may not have drained the batch already.
            if peek(py, 1).is_ok_and(|b| !b.is_empty()) {
                held += 1;
            }
            tree.checkpoint();
        }
    }
    eprintln!(
        "{} dumps, {held} with bytes waiting for sort",
        dump_after.len()
    );
    tree.finish();
    assert_eq!(stderr_of(&dumped), "");
    assert!(std::fs::read(dumped.join("out")).unwrap() == expected);
}

#[test]
fn sort_pipeline_restored_mid_flight() {
    sort_pipeline(&[9]);
}

#[test]
fn sort_pipeline_dumped_and_restored_ten_times() {
    sort_pipeline(&(2..12).collect::<Vec<_>>());
}

// --- c, d, e. tests/progs/peers.c ----------------------------------------------------

/// One step of a peers script: `(process, command)` sends the byte and waits for the
/// acknowledgement; the others as named.
#[derive(Clone, Copy, Debug)]
enum Step {
    Cmd(usize, u8),
    /// Waits for one more acknowledgement (of a command that acknowledges twice).
    Ack(usize),
    /// The process sleeps in this kernel function (`pipe_write`, `pipe_read`).
    Blocked(usize, &'static str),
    Checkpoint,
}

use Step::*;

/// Runs `script` on a fresh `peers MODE` tree in `dir` (with `names` its processes,
/// "a" the root) and returns its output. With `dumps`, each `Checkpoint` dumps the tree
/// and restores it; without, `Checkpoint` is a no-op (the uninterrupted run).
fn run_peers(exe: &Path, mode: &str, names: &[&str], dir: &Path, script: &[Step], dumps: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut ctls: Vec<Ctl> = names.iter().map(|n| Ctl::new(dir, n)).collect();
    if mode == "fifo" {
        mkfifo(&dir.join("ab"));
        mkfifo(&dir.join("ba"));
    }
    let child = only_stdio(&mut Command::new(exe))
        .args([mode, dir.to_str().unwrap()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("out")).unwrap())
        .stderr(File::create(dir.join("err")).unwrap())
        .spawn()
        .unwrap();
    let mut tree = Tree::new(child, dir);
    for c in &mut ctls {
        c.connect();
    }
    let pids: Vec<i32> = {
        let kids = children(tree.root);
        assert_eq!(kids.len(), names.len() - 1, "{kids:?}");
        std::iter::once(tree.root).chain(kids).collect()
    };
    tree.guard.0 = pids.clone();
    let out = || std::fs::read_to_string(dir.join("out")).unwrap_or_default();
    for (i, step) in script.iter().enumerate() {
        let ok = match *step {
            Cmd(p, c) => ctls[p].step(c),
            Ack(p) => ctls[p].wait_ack(),
            Blocked(p, f) => {
                wait_in(pids[p], f);
                Ok(())
            }
            Checkpoint => {
                if dumps {
                    tree.checkpoint();
                }
                Ok(())
            }
        };
        if let Err(e) = ok {
            panic!(
                "{mode}, step {i} ({step:?}): {e}\noutput:\n{}{}",
                out(),
                stderr_of(dir)
            );
        }
    }
    // The children report and exit, then the root reaps them and reports.
    for (p, ctl) in ctls.iter_mut().enumerate().skip(1) {
        ctl.step(b'q')
            .unwrap_or_else(|e| panic!("{mode}: quit {p}: {e}\noutput:\n{}", out()));
    }
    ctls[0].send(b'q');
    tree.finish();
    assert_eq!(stderr_of(dir), "");
}

/// Runs `script` without and with dumps and compares the outputs.
fn peers(mode: &str, names: &[&str], script: &[Step]) {
    if !capable() {
        return;
    }
    set_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = build("peers", tmp.path()) else {
        return;
    };
    let (plain, dumped) = (tmp.path().join("plain"), tmp.path().join("dumped"));
    run_peers(&exe, mode, names, &plain, script, false);
    let expected = std::fs::read_to_string(plain.join("out")).unwrap();
    assert!(
        !expected.contains("want") && expected.contains(" exited 0\n"),
        "{expected}"
    );
    run_peers(&exe, mode, names, &dumped, script, true);
    assert_eq!(
        std::fs::read_to_string(dumped.join("out")).unwrap(),
        expected
    );
}

/// `cycles` times: both write (so a chunk is in flight each way, on top of the one still
/// unread from the cycle before), dump and restore, both read one chunk.
fn both_ways(cycles: usize) -> Vec<Step> {
    let mut s = vec![Cmd(0, b'w'), Cmd(1, b'w')];
    for _ in 0..cycles {
        s.extend([
            Cmd(0, b'w'),
            Cmd(1, b'w'),
            Checkpoint,
            Cmd(0, b'r'),
            Cmd(1, b'r'),
        ]);
    }
    s.extend([Cmd(0, b'r'), Cmd(1, b'r')]);
    s
}

#[test]
fn fifos_both_ways_restored_mid_flight() {
    peers("fifo", &["a", "b"], &both_ways(1));
}

#[test]
fn fifos_both_ways_dumped_and_restored_ten_times() {
    peers("fifo", &["a", "b"], &both_ways(10));
}

#[test]
fn socketpair_both_ways_restored_mid_flight() {
    peers("socketpair", &["a", "b"], &both_ways(1));
}

#[test]
fn socketpair_both_ways_dumped_and_restored_ten_times() {
    peers("socketpair", &["a", "b"], &both_ways(10));
}

/// `cycles` times: a writes 12 packets (sizes 1 to 4096), dump and restore, b reads them
/// one read each and checks each length.
fn packets(cycles: usize) -> Vec<Step> {
    let mut s = vec![Cmd(0, b'w'), Cmd(1, b'r')];
    for _ in 0..cycles {
        s.extend([Cmd(0, b'w'), Checkpoint, Cmd(1, b'r')]);
    }
    s
}

#[test]
fn packet_pipe_restored_mid_flight() {
    peers("packet", &["a", "b"], &packets(1));
}

#[test]
fn packet_pipe_dumped_and_restored_ten_times() {
    peers("packet", &["a", "b"], &packets(10));
}

/// `cycles` times: a blocks writing into its full 1 MiB pipe, c blocks reading its empty
/// one; dump and restore; both are blocked again; b reads a's pipe (a goes on and
/// acknowledges), then writes into c's (c goes on and acknowledges).
fn blocked(cycles: usize) -> Vec<Step> {
    let mut s = Vec::new();
    for _ in 0..cycles {
        s.extend([
            Cmd(0, b'W'),
            Cmd(2, b'R'),
            Blocked(0, "pipe_write"),
            Blocked(2, "pipe_read"),
            Checkpoint,
            Blocked(0, "pipe_write"),
            Blocked(2, "pipe_read"),
            Cmd(1, b'R'),
            Ack(0),
            Cmd(1, b'w'),
            Ack(2),
        ]);
    }
    s
}

#[test]
fn blocked_writer_and_reader_restored_blocked() {
    peers("blocked", &["a", "b", "c"], &blocked(1));
}

#[test]
fn blocked_writer_and_reader_dumped_and_restored_ten_times() {
    peers("blocked", &["a", "b", "c"], &blocked(10));
}
