//! Dump each scenario of `pipecr-testprog` while it runs, rebuild every saved process's
//! descriptor table in a fresh process that checks it from inside, then let the original
//! tree check that the dump left it untouched. Also checks the image itself: each open
//! file stored once, independent opens apart, external pipe ends, a shared table.
//!
//! Protocol (see the crate doc of `pipecr-testprog`): `SCENARIO setup` prints
//! `ready <pids>` once built and checks itself after stdin is closed;
//! `SCENARIO verify --image DIR --pid PID` rebuilds and checks. Nothing here sleeps: the
//! harness waits for the ready line, for exit statuses and for end-of-file.
//!
//! Needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE (root in CI); without them each test
//! says so and returns.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use pipecr::dump::{DumpStats, dump_tree};
use pipecr::files::DumpOptions;
use pipecr_image::proto::{self, open_file};

const PROG: &str = env!("CARGO_BIN_EXE_pipecr-testprog");

/// True when this process may dump others; otherwise says why the test is skipped.
fn privileged(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!(
            "{test}: skipped: dumping a tree needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE"
        );
    }
    root
}

/// The bytes `pipecr-testprog` writes for `seed` (same generator as its `pattern`).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A running `SCENARIO setup` tree. Dropping it closes stdin and waits for the root, so a
/// failing test leaves no process behind.
struct Setup {
    scenario: &'static str,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Root first, then the children in order.
    pids: Vec<i32>,
    /// The scratch directory given with `--dir` (files, FIFOs).
    _scratch: tempfile::TempDir,
}

impl Setup {
    fn start(scenario: &'static str, args: &[String]) -> Setup {
        let scratch = tempfile::Builder::new()
            .prefix("pipecr-testprog-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(PROG)
            .arg(scenario)
            .arg("setup")
            .arg("--dir")
            .arg(scratch.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pipecr-testprog");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pids: Vec<i32> = match line.strip_prefix("ready ") {
            Some(rest) => rest
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect(),
            None => {
                drop(stdin);
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let status = child.wait().unwrap();
                panic!("{scenario} setup did not get ready ({status}): {line:?}\n{err}");
            }
        };
        Setup {
            scenario,
            child: Some(child),
            stdin,
            pids,
            _scratch: scratch,
        }
    }

    fn root(&self) -> i32 {
        self.pids[0]
    }

    /// Closes stdin and asserts that every process of the tree found its state intact.
    fn finish(mut self) {
        drop(self.stdin.take());
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} setup: the original tree found its state changed ({}):\n{}",
            self.scenario,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Every error in the chain, for assertion messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        msg.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    msg
}

/// Dumps the tree of `setup` with the library into `dir`.
fn dump(setup: &Setup, dir: &Path) -> DumpStats {
    dump_tree(setup.root(), dir, &DumpOptions::default())
        .unwrap_or_else(|e| panic!("{}: dump failed: {}", setup.scenario, chain(&e)))
}

/// The `pipecr` binary, when it was built next to ours (or named by `PIPECR_BIN`).
fn cli() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("PIPECR_BIN") {
        return Some(bin.into());
    }
    let sibling = Path::new(PROG).parent()?.join("pipecr");
    sibling.exists().then_some(sibling)
}

/// Dumps with `pipecr dump -t PID -D DIR --leave-running` when the CLI is built, with
/// the library otherwise (the CLI crate tests the CLI itself).
fn dump_with_cli(setup: &Setup, dir: &Path) {
    let Some(bin) = cli() else {
        eprintln!(
            "{}: the pipecr binary is not built (cargo build -p pipecr-cli, or set PIPECR_BIN): \
             dumping with the library instead",
            setup.scenario
        );
        dump(setup, dir);
        return;
    };
    let out = Command::new(&bin)
        .args(["dump", "-t", &setup.root().to_string(), "-D"])
        .arg(dir)
        .arg("--leave-running")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {} dump failed ({}):\n{}{}",
        setup.scenario,
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rebuilds `pid`'s table from `dir` in a fresh `pipecr-testprog` and asserts it checks.
fn verify(scenario: &str, dir: &Path, pid: i32) {
    let out = Command::new(PROG)
        .args([scenario, "verify", "--image"])
        .arg(dir)
        .args(["--pid", &pid.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{scenario} verify pid {pid} ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify_all(setup: &Setup, dir: &Path) {
    for &pid in &setup.pids {
        verify(setup.scenario, dir, pid);
    }
}

/// The records of a tree image.
struct Saved {
    processes: Vec<proto::Process>,
    tables: Vec<proto::FdTable>,
    files: Vec<proto::OpenFile>,
    pipes: Vec<proto::Pipe>,
}

impl Saved {
    fn read(dir: &Path) -> Saved {
        let image = pipecr_image::Image::open(dir).unwrap();
        let pipes = if image.has_file(pipecr_image::PIPES) {
            image.read_records(pipecr_image::PIPES).unwrap()
        } else {
            Vec::new()
        };
        let saved = Saved {
            processes: image.read_records(pipecr_image::TREE).unwrap(),
            tables: image.read_records(pipecr_image::FDS).unwrap(),
            files: image.read_records(pipecr_image::FILES).unwrap(),
            pipes,
        };
        saved.consistent();
        saved
    }

    /// Each open file is stored once and used: ids unique, every descriptor points at a
    /// stored file, every stored file has a descriptor.
    fn consistent(&self) {
        let ids: BTreeSet<u64> = self.files.iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), self.files.len(), "open file ids are not unique");
        let used: BTreeSet<u64> = self
            .tables
            .iter()
            .flat_map(|t| t.descriptors.iter().map(|d| d.file_id))
            .collect();
        assert_eq!(used, ids, "descriptors and stored open files disagree");
    }

    fn table_of(&self, pid: i32) -> &proto::FdTable {
        let p = self.processes.iter().find(|p| p.pid == pid).unwrap();
        self.tables.iter().find(|t| t.id == p.fd_table).unwrap()
    }

    fn descriptor(&self, pid: i32, fd: i32) -> &proto::Descriptor {
        self.table_of(pid)
            .descriptors
            .iter()
            .find(|d| d.fd == fd)
            .unwrap_or_else(|| panic!("pid {pid} fd {fd} is not in the image"))
    }

    fn file_of(&self, pid: i32, fd: i32) -> &proto::OpenFile {
        let id = self.descriptor(pid, fd).file_id;
        self.files.iter().find(|f| f.id == id).unwrap()
    }

    fn descriptors(&self) -> usize {
        self.tables.iter().map(|t| t.descriptors.len()).sum()
    }

    fn pipe_of(&self, pid: i32, fd: i32) -> &proto::Pipe {
        let id = match &self.file_of(pid, fd).kind {
            Some(open_file::Kind::Pipe(end)) => end.pipe_id,
            Some(open_file::Kind::Fifo(fifo)) => fifo.pipe_id,
            other => panic!("pid {pid} fd {fd} is not a pipe or FIFO: {other:?}"),
        };
        self.pipes.iter().find(|p| p.id == id).unwrap()
    }

    fn pending(&self, pid: i32, fd: i32) -> u64 {
        self.pipe_of(pid, fd).data.as_ref().map_or(0, |d| d.length)
    }
}

/// A fresh image directory inside a temporary one.
fn image_dir() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::Builder::new()
        .prefix("pipecr-image-")
        .tempdir()
        .unwrap();
    let dir = parent.path().join("img");
    (parent, dir)
}

/// Setup, dump with the library, verify every pid, finish. Returns the image records.
fn roundtrip(scenario: &'static str) -> (Vec<i32>, Saved, DumpStats) {
    let setup = Setup::start(scenario, &[]);
    let (_parent, dir) = image_dir();
    let stats = dump(&setup, &dir);
    verify_all(&setup, &dir);
    let pids = setup.pids.clone();
    setup.finish();
    let saved = Saved::read(&dir);
    assert_eq!(stats.open_files, saved.files.len());
    assert_eq!(stats.descriptors, saved.descriptors());
    (pids, saved, stats)
}

#[test]
fn offsets_shared_across_fork_vs_independent_opens() {
    if !privileged("offsets") {
        return;
    }
    let (pids, saved, stats) = roundtrip("offsets");
    let (root, child) = (pids[0], pids[1]);
    assert_eq!(stats.processes, 2);
    // root: 0 1 2 10 11 13; child: 0 1 2 10 12.
    assert_eq!(saved.descriptors(), 11);
    // Three stdio pipes shared by both, and three opens of `data`.
    assert_eq!(saved.files.len(), 6);
    let shared = saved.file_of(root, 10).id;
    assert_eq!(
        saved.file_of(child, 10).id,
        shared,
        "fd 10 is one open file across fork"
    );
    assert_eq!(
        saved.file_of(root, 13).id,
        shared,
        "fd 13 is a dup of fd 10"
    );
    let independent = [saved.file_of(root, 11).id, saved.file_of(child, 12).id];
    assert!(!independent.contains(&shared));
    assert_ne!(
        independent[0], independent[1],
        "two opens are two open files"
    );
    let regular = saved
        .files
        .iter()
        .filter(|f| matches!(f.kind, Some(open_file::Kind::Regular(_))))
        .count();
    assert_eq!(regular, 3);
    assert_eq!(saved.file_of(root, 10).pos, 150);
    for fd in [0, 1, 2] {
        assert_eq!(saved.file_of(root, fd).id, saved.file_of(child, fd).id);
    }
}

#[test]
fn dup_vs_dupfd_cloexec_vs_o_cloexec_with_the_cli() {
    if !privileged("cloexec") {
        return;
    }
    let setup = Setup::start("cloexec", &[]);
    let (_parent, dir) = image_dir();
    dump_with_cli(&setup, &dir);
    verify_all(&setup, &dir);
    let root = setup.root();
    setup.finish();
    let saved = Saved::read(&dir);
    assert_eq!(saved.descriptors(), 10);
    // 10/12, 11/13 and 14/16 share; 15 alone; plus stdio.
    assert_eq!(saved.files.len(), 7);
    assert_eq!(saved.file_of(root, 10).id, saved.file_of(root, 12).id);
    assert_eq!(saved.file_of(root, 11).id, saved.file_of(root, 13).id);
    assert_eq!(saved.file_of(root, 14).id, saved.file_of(root, 16).id);
    for (fd, cloexec) in [
        (10, true),
        (11, true),
        (12, false),
        (13, true),
        (14, false),
        (15, false),
        (16, true),
    ] {
        assert_eq!(saved.descriptor(root, fd).cloexec, cloexec, "fd {fd}");
        assert_eq!(
            saved.file_of(root, fd).flags & libc_o_cloexec(),
            0,
            "fd {fd}: O_CLOEXEC must not be stored with the open file"
        );
    }
    assert_eq!(saved.pending(root, 10), 1234);
    assert_eq!(saved.pending(root, 14), 99);
}

fn libc_o_cloexec() -> u32 {
    rustix::fs::OFlags::CLOEXEC.bits()
}

#[test]
fn o_append() {
    if !privileged("append") {
        return;
    }
    let (pids, saved, _) = roundtrip("append");
    assert_eq!(saved.descriptors(), 7);
    assert_eq!(
        saved.files.len(),
        7,
        "four independent opens, four open files"
    );
    let append = rustix::fs::OFlags::APPEND.bits();
    for (fd, appends) in [(10, true), (11, true), (12, false), (13, true)] {
        assert_eq!(
            saved.file_of(pids[0], fd).flags & append != 0,
            appends,
            "fd {fd}"
        );
    }
}

#[test]
fn pipe_ends_reopened_through_proc_with_the_cli() {
    if !privileged("reopen") {
        return;
    }
    let setup = Setup::start("reopen", &[]);
    let (_parent, dir) = image_dir();
    dump_with_cli(&setup, &dir);
    verify_all(&setup, &dir);
    let root = setup.root();
    setup.finish();
    let saved = Saved::read(&dir);
    assert_eq!(
        saved.files.len(),
        7,
        "four open files of one pipe, plus stdio"
    );
    assert_eq!(
        saved.pipes.len(),
        4,
        "one pipe besides the three stdio pipes"
    );
    let ids: BTreeSet<u64> = (10..=13).map(|fd| saved.file_of(root, fd).id).collect();
    assert_eq!(ids.len(), 4);
    let pipe = saved.pipe_of(root, 10).id;
    for fd in 11..=13 {
        assert_eq!(saved.pipe_of(root, fd).id, pipe, "fd {fd}");
    }
    assert_eq!(saved.pending(root, 10), 5000);
}

#[test]
fn one_mib_pipes_full_and_empty() {
    if !privileged("big-pipes") {
        return;
    }
    let (pids, saved, stats) = roundtrip("big-pipes");
    let full = saved.pipe_of(pids[0], 10);
    let empty = saved.pipe_of(pids[0], 12);
    assert_eq!((full.capacity, empty.capacity), (1 << 20, 1 << 20));
    assert_eq!(saved.pending(pids[0], 10), 1 << 20);
    assert_eq!(saved.pending(pids[0], 12), 0);
    assert!(stats.pipe_bytes >= 1 << 20);
}

#[test]
fn fifos_read_only_write_only_read_write_and_unlinked() {
    if !privileged("fifos") {
        return;
    }
    let mut setup = Setup::start("fifos", &[]);
    let (_parent, dir) = image_dir();
    dump(&setup, &dir);
    let pids = setup.pids.clone();
    // A FIFO is found again by its path: while the original holds it open, a rebuilt
    // open would join the original's pipe (and its bytes). Verify once it is gone; the
    // scratch directory lives on in `_scratch` until the end of the test.
    drop(setup.stdin.take());
    let out = setup.child.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "fifos setup ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    verify("fifos", &dir, pids[0]);
    drop(setup);
    let saved = Saved::read(&dir);
    let root = pids[0];
    assert_eq!(
        saved.files.len(),
        8,
        "five opens of three FIFOs, plus stdio"
    );
    assert_eq!(saved.pipes.len(), 6, "three FIFOs, three stdio pipes");
    let fifo1 = saved.pipe_of(root, 10).id;
    assert_eq!(saved.pipe_of(root, 11).id, fifo1);
    assert_eq!(saved.pipe_of(root, 12).id, fifo1);
    assert_eq!(saved.pending(root, 10), 3000);
    assert_eq!(saved.pending(root, 13), 0);
    assert_eq!(saved.pending(root, 14), 100);
    match &saved.file_of(root, 14).kind {
        Some(open_file::Kind::Fifo(f)) => assert!(f.unlinked, "fifo3 was unlinked: {f:?}"),
        other => panic!("fd 14: {other:?}"),
    }
}

#[test]
fn socketpair_queues_with_boundaries() {
    if !privileged("sockets") {
        return;
    }
    let (_, saved, _) = roundtrip("sockets");
    assert_eq!(saved.files.len(), 9);
    let sockets: Vec<&proto::UnixSocket> = saved
        .files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(open_file::Kind::UnixSocket(s)) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sockets.len(), 6);
    assert!(sockets.iter().all(|s| !s.external));
    let mut lengths: Vec<Vec<u32>> = sockets.iter().map(|s| s.message_lengths.clone()).collect();
    lengths.sort();
    for want in [vec![1, 10, 100, 1000], vec![5, 500, 5000], vec![7], vec![3]] {
        assert!(
            lengths.contains(&want),
            "message lengths {want:?} not in {lengths:?}"
        );
    }
}

/// Copy of `many-pipes`' layout: which ends of pipe `k` role `role` holds.
fn many_holds(role: usize, k: usize) -> (bool, bool) {
    let read = k % 9 == role;
    let write = (5 * k + 3) % 9 == role || (role == 0 && k % 3 == 0);
    (read, write)
}

#[test]
fn many_pipes_shared_among_a_parent_and_eight_children() {
    if !privileged("many-pipes") {
        return;
    }
    let (pids, saved, stats) = roundtrip("many-pipes");
    assert_eq!(pids.len(), 9);
    assert_eq!(stats.processes, 9);
    let held: usize = (0..9)
        .flat_map(|role| (0..64).map(move |k| many_holds(role, k)))
        .map(|(r, w)| usize::from(r) + usize::from(w))
        .sum();
    assert_eq!(saved.descriptors(), 9 * 3 + held);
    // Each end is one open file, whichever processes hold it.
    assert_eq!(saved.files.len(), 3 + 128);
    assert_eq!(saved.pipes.len(), 3 + 64);
    let mut seen = BTreeMap::new();
    for k in 0..64 {
        let (reader, writer) = (k % 9, (5 * k + 3) % 9);
        let (r, w) = (10 + 2 * k as i32, 11 + 2 * k as i32);
        let pipe = saved.pipe_of(pids[reader], r);
        assert_eq!(saved.pipe_of(pids[writer], w).id, pipe.id, "pipe {k}");
        assert!(
            !pipe.external_reader && !pipe.external_writer,
            "pipe {k}: {pipe:?}"
        );
        assert_eq!(saved.pending(pids[reader], r), 100 + 37 * k as u64);
        if k % 3 == 0 && writer != 0 {
            assert_eq!(
                saved.file_of(pids[0], w).id,
                saved.file_of(pids[writer], w).id,
                "pipe {k}: the write end is one open file in two processes"
            );
        }
        seen.insert(pipe.id, k);
    }
    assert_eq!(seen.len(), 64);
}

#[test]
fn eventfd_memfd_unlinked_file_directory_and_devices() {
    if !privileged("misc-files") {
        return;
    }
    let (pids, saved, _) = roundtrip("misc-files");
    assert_eq!(saved.files.len(), 12);
    match &saved.file_of(pids[0], 11).kind {
        Some(open_file::Kind::Eventfd(e)) => assert!(e.count == 3 && e.semaphore, "{e:?}"),
        other => panic!("fd 11: {other:?}"),
    }
    match &saved.file_of(pids[0], 13).kind {
        Some(open_file::Kind::Regular(f)) => assert!(f.unlinked, "{f:?}"),
        other => panic!("fd 13: {other:?}"),
    }
}

#[test]
fn packet_mode_pipe_with_many_packets() {
    if !privileged("packets") {
        return;
    }
    let (pids, saved, _) = roundtrip("packets");
    let big = saved.pipe_of(pids[0], 10);
    assert!(big.packet_mode);
    let want: Vec<u32> = (0..200).map(|i| 1 + (i * 733) % 4096).collect();
    assert_eq!(big.packet_lengths, want);
    let one = saved.pipe_of(pids[0], 12);
    assert!(one.packet_mode);
    assert_eq!(one.packet_lengths, vec![3000]);
    assert!(saved.pipe_of(pids[0], 14).packet_mode);
}

#[test]
fn pipes_with_an_external_reader_and_an_external_writer() {
    if !privileged("external") {
        return;
    }
    // X: the harness keeps the read end; Y: the harness keeps the write end.
    let (x_read, x_write) = rustix::pipe::pipe().unwrap();
    let (y_read, y_write) = rustix::pipe::pipe().unwrap();
    drop(x_write);
    drop(y_read);
    let me = std::process::id();
    let path = |fd: &OwnedFd| format!("/proc/{me}/fd/{}", fd.as_raw_fd());
    let setup = Setup::start("external", &[path(&x_read), path(&y_write)]);
    let y_data = pattern(31, 7000);
    assert_eq!(rustix::io::write(&y_write, &y_data).unwrap(), y_data.len());
    let (_parent, dir) = image_dir();
    dump(&setup, &dir);
    verify_all(&setup, &dir);
    let root = setup.root();
    setup.finish();
    let saved = Saved::read(&dir);
    let inode = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
    let x = saved.pipe_of(root, 10);
    assert_eq!(x.inode, inode(&x_read));
    assert!(x.external_reader && !x.external_writer, "X: {x:?}");
    assert_eq!(saved.pending(root, 10), 5000);
    let y = saved.pipe_of(root, 11);
    assert_eq!(y.inode, inode(&y_write));
    assert!(y.external_writer && !y.external_reader, "Y: {y:?}");
    assert_eq!(saved.pending(root, 11), 7000);
    // The harness holds the write end of the tree's stdin: external too.
    assert!(saved.pipe_of(root, 0).external_writer);
    // It dropped its read end of the tree's stdout after the ready line: that pipe has no
    // reader anywhere, which is not external.
    let stdout = saved.pipe_of(root, 1);
    assert!(
        stdout.reader_closed && !stdout.external_reader,
        "{stdout:?}"
    );
}

#[test]
fn clone_files_table_is_saved_once() {
    if !privileged("clone-files") {
        return;
    }
    let (pids, saved, stats) = roundtrip("clone-files");
    assert_eq!(stats.processes, 2);
    assert_eq!(saved.tables.len(), 1, "one table for two processes");
    assert!(saved.tables[0].shared);
    assert_eq!(
        saved.table_of(pids[0]).id,
        saved.table_of(pids[1]).id,
        "both processes use the shared table"
    );
    let fds: Vec<i32> = saved.tables[0].descriptors.iter().map(|d| d.fd).collect();
    assert_eq!(fds, vec![0, 1, 2, 10, 11, 12, 13]);
}

#[test]
fn unsupported_perf_event_stops_the_dump_and_leaves_the_tree_untouched() {
    if !privileged("perf_event") {
        return;
    }
    let setup = Setup::start("perf-event", &[]);
    let (parent, dir) = image_dir();
    let err = dump_tree(setup.root(), &dir, &DumpOptions::default())
        .expect_err("a perf_event fd cannot be saved");
    let msg = err.to_string();
    for part in [
        format!("pid {}", setup.root()),
        "fd 10".into(),
        "anonymous inode perf_event".into(),
    ] {
        assert!(msg.contains(&part), "{msg:?} does not name {part:?}");
    }
    assert!(!dir.exists(), "no image directory may be left behind");
    let left: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    setup.finish();
}

/// Every registration of each epoll instance comes back with its number, open file,
/// events and data: the scenario checks them from inside with `epoll_wait`, `epoll_ctl`
/// and fdinfo; here the image says which open file each registration names.
#[test]
fn epoll_registrations_moved_reused_oneshot_nested_and_shared() {
    if !privileged("epolls") {
        return;
    }
    let (pids, saved, _) = roundtrip("epolls");
    let (root, child) = (pids[0], pids[1]);
    let targets = |fd: i32| match &saved.file_of(root, fd).kind {
        Some(open_file::Kind::Epoll(e)) => e.targets.clone(),
        other => panic!("fd {fd}: {other:?}"),
    };
    let id = |pid: i32, fd: i32| saved.descriptor(pid, fd).file_id;
    let named: BTreeSet<(i32, u64)> = targets(10).iter().map(|t| (t.tfd, t.file_id)).collect();
    // tfd 30 was closed after a dup to 14; 31 was registered with a pipe end that lives
    // on at 16, then with the eventfd 31 holds now.
    let want = BTreeSet::from([
        (11, id(root, 11)),
        (12, id(root, 12)),
        (13, id(root, 13)),
        (18, id(root, 18)),
        (19, id(root, 19)),
        (22, id(root, 22)),
        (30, id(root, 14)),
        (31, id(root, 16)),
        (31, id(root, 31)),
    ]);
    assert_eq!(named, want);
    assert_ne!(id(root, 31), id(root, 16));
    // One open file for the epoll the root and its child share.
    assert_eq!(id(root, 25), id(child, 25));
    assert_eq!(targets(25).len(), 2);
    assert_eq!(targets(22).len(), 1);
}

/// Reads exactly `want.len()` bytes from the pty master `master` (waiting for each with
/// a deadline: slave output reaches the master asynchronously) and compares them.
fn expect_from_master(master: &OwnedFd, want: &str) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let mut fds = [PollFd::new(master, PollFlags::IN)];
        match poll(&mut fds, Some(&deadline)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll the pty master: {e}"),
        }
        let n = rustix::io::read(master, &mut buf[..want.len() - got.len()]).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        want,
        "read from the pty master"
    );
}

#[test]
fn pty_slave_and_dev_random() {
    if !privileged("terminal") {
        return;
    }
    // The harness holds the master (pipecr cannot save one) and a slave of its own, so
    // the terminal lives on, unhung, while the tree and the rebuilt tables come and go.
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let name = name.into_string().unwrap();
    let _slave = rustix::fs::open(
        &name,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();

    let setup = Setup::start("terminal", std::slice::from_ref(&name));
    let (_parent, dir) = image_dir();
    dump_with_cli(&setup, &dir);
    // The rebuilt descriptors lead to this very terminal: what verify writes through
    // fds 10 and 11 comes out of our master.
    verify_all(&setup, &dir);
    expect_from_master(&master, "rebuilt-fd10 rebuilt-fd11 ");
    let root = setup.root();
    setup.finish();
    expect_from_master(&master, "live-fd10 live-fd11 ");

    let saved = Saved::read(&dir);
    let device = |fd: i32| match &saved.file_of(root, fd).kind {
        Some(open_file::Kind::CharDevice(d)) => (d.path.clone(), d.terminal),
        other => panic!("fd {fd}: not saved as a character device: {other:?}"),
    };
    for fd in [10, 11, 12] {
        assert_eq!(device(fd), (name.clone(), true), "fd {fd}");
    }
    assert_eq!(device(13), ("/dev/random".to_owned(), false));
    assert_eq!(saved.file_of(root, 12).id, saved.file_of(root, 10).id);
    assert_ne!(saved.file_of(root, 11).id, saved.file_of(root, 10).id);
    assert_eq!(
        saved.files.len(),
        3 + 3,
        "stdio, two opens of the slave, /dev/random"
    );
}

#[test]
fn timerfds_signalfd_and_inotify_of_an_event_loop() {
    if !privileged("event-fds") {
        return;
    }
    let setup = Setup::start("event-fds", &[]);
    let (_parent, dir) = image_dir();
    dump_with_cli(&setup, &dir);
    verify_all(&setup, &dir);
    let root = setup.root();
    setup.finish();
    let saved = Saved::read(&dir);
    // Six timerfds, a signalfd, an inotify instance, a directory, plus stdio.
    assert_eq!(saved.files.len(), 12);
    let timer = |fd| match &saved.file_of(root, fd).kind {
        Some(open_file::Kind::Timerfd(t)) => *t,
        other => panic!("fd {fd}: {other:?}"),
    };
    let clocks: Vec<i32> = (10..=15).map(|fd| timer(fd).clockid).collect();
    assert_eq!(clocks, vec![1, 0, 7, 8, 9, 1]);
    // Absolute timers are saved at their absolute expiry, with their flags.
    let realtime = timer(11);
    assert_eq!(realtime.settime_flags, 3);
    assert!(
        realtime.value_sec.abs_diff(4_000_000_000) <= 1,
        "{realtime:?}"
    );
    assert_eq!(timer(12).settime_flags, 1);
    assert_eq!((timer(13).value_sec, timer(13).value_nsec), (0, 0));
    assert_eq!(timer(15).ticks, 1);
    match &saved.file_of(root, 16).kind {
        Some(open_file::Kind::Signalfd(s)) => assert_eq!(s.sigmask, 0x0800_0200),
        other => panic!("fd 16: {other:?}"),
    }
    match &saved.file_of(root, 17).kind {
        Some(open_file::Kind::Inotify(i)) => {
            let wds: Vec<i32> = i.watches.iter().map(|w| w.wd).collect();
            assert_eq!(wds, vec![1, 4]);
            assert!(i.watches[1].path.ends_with("/events/watched"), "{i:?}");
            assert!(!i.watches[1].handle.is_empty());
        }
        other => panic!("fd 17: {other:?}"),
    }
}
