//! What `pipecr dump --leave-running` refuses (issue 3, sections 1 and 2): a PID that
//! does not exist, a kernel thread, a tree that contains pipecr itself, a process already
//! traced by another tracer (the root or a member below it), a descriptor kind pipecr
//! cannot save, an unlinked file above the `--max-inline-file` limit.
//!
//! Each refusal must be one line on stderr, its exit code (2, 3 or 5), no image directory (nor a
//! temporary one beside it), and the tree untouched: every process sleeping or running
//! as before, traced by nobody new, and still working. The tree is `progs/refusee.c`:
//! a root that passes each ping byte from the test through a pipe to its child, which
//! sends it back, so one ping shows that both processes and the pipe between them work.
//! It fails loudly on EINTR, which a stop or signal leaked by the dump would cause.
//!
//! A POSIX timer no restore can create again is refused by a default dump too (one that
//! would kill the tree): `progs/cputimers.c` holds one on `CLOCK_THREAD_CPUTIME_ID` in a
//! two-thread process, or one on its child's CPU-time clock; after the refusal the
//! program finds its timer still armed and its thread or child alive.
//!
//! Nothing here sleeps: the test waits for ready and answer bytes with a deadline.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use common::{
    DEADLINE, KillOnDrop, PIPECR, build, capable, children, have, only_stdio, readable_within,
    state, wait_child,
};
use nix::sys::ptrace;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The first part of every refusal line.
fn failed(pid: i32) -> String {
    format!("error: dump of pid {pid} failed; the tree was resumed untouched: ")
}

/// `TracerPid` of `/proc/PID/status` (0: not traced).
fn tracer(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A running `refusee` tree: the root (our child) and its one child.
struct Tree {
    root: Child,
    child: i32,
    pings: ChildStdin,
    /// The child's answers (the root's stdout).
    answers: File,
    next: u8,
    /// Kills both processes if the test fails before `finish`.
    kill: KillOnDrop,
}

impl Tree {
    /// Starts `refusee ARGS` and waits until its child said it is ready.
    fn start(exe: &Path, args: &[&str]) -> Tree {
        let mut root = only_stdio(&mut Command::new(exe))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pings = root.stdin.take().unwrap();
        let answers = File::from(OwnedFd::from(root.stdout.take().unwrap()));
        let pid = root.id() as i32;
        let mut tree = Tree {
            root,
            child: 0,
            pings,
            answers,
            next: b'a',
            kill: KillOnDrop(vec![pid]),
        };
        tree.expect(b'R', "the ready byte");
        let kids = children(pid);
        assert_eq!(kids.len(), 1, "refusee {args:?}: children {kids:?}");
        tree.child = kids[0];
        tree.kill.0.push(tree.child);
        tree
    }

    fn root(&self) -> i32 {
        self.root.id() as i32
    }

    /// Reads one byte from the child's answers within the deadline and compares it.
    fn expect(&mut self, want: u8, what: &str) {
        assert!(
            readable_within(&self.answers, DEADLINE),
            "refusee did not send {what} within {DEADLINE:?}"
        );
        let mut b = [0u8; 1];
        self.answers
            .read_exact(&mut b)
            .unwrap_or_else(|e| panic!("refusee closed its output instead of sending {what}: {e}"));
        assert_eq!(b[0] as char, want as char, "{what}");
    }

    /// Sends a ping byte through root and child and waits for it to come back.
    fn ping(&mut self) {
        let b = self.next;
        self.next = if b == b'z' { b'a' } else { b + 1 };
        self.pings.write_all(&[b]).unwrap();
        self.expect(b, "the ping byte back");
    }

    /// Both processes sleep or run (none stopped), traced by the given tracers, and
    /// answer a ping.
    fn assert_working(&mut self, root_tracer: i32, child_tracer: i32) {
        for (pid, want) in [(self.root(), root_tracer), (self.child, child_tracer)] {
            let s = state(pid);
            assert!(
                matches!(s, Some('S' | 'R')),
                "pid {pid} is in state {s:?} after the dump"
            );
            assert_eq!(tracer(pid), want, "TracerPid of pid {pid}");
        }
        self.ping();
    }

    /// Ends the tree (end-of-file on its input) and asserts that both processes exited
    /// 0: neither met an error or EINTR.
    fn finish(self) {
        let Tree {
            mut root,
            pings,
            mut answers,
            mut kill,
            ..
        } = self;
        drop(pings);
        let status = wait_child(&mut root, "refusee to exit");
        // Both are gone (the root reaped its child, we reaped the root): their pids may
        // be reused from now on.
        kill.0.clear();
        assert_eq!(status.code(), Some(0), "refusee: {status}");
        let mut rest = Vec::new();
        answers.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "refusee sent more: {rest:?}");
    }
}

/// Builds `progs/refusee.c` into `dir`; `None` (reason printed) without a C compiler or
/// the capabilities a dump needs.
fn refusee(dir: &Path) -> Option<PathBuf> {
    if !capable() {
        return None;
    }
    build("refusee", dir)
}

/// A fresh, empty directory for the image directory `DIR/img`: after a refusal it must
/// still be empty (no image, no `img.tmp-*`).
fn image_parent() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::Builder::new()
        .prefix("pipecr-refuse-")
        .tempdir()
        .unwrap();
    let img = parent.path().join("img");
    (parent, img)
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

/// Runs `pipecr dump --leave-running [OPTIONS] -t PID -D DIR/img` and asserts the
/// refusal: exactly the line `want` on stderr, nothing on stdout, exit code `code` (2 bad
/// arguments, 3 unsupported, 5 conflict: docs/CLI-JSON.md), nothing left in DIR.
fn refuse(code: i32, pid: i32, options: &[&str], want: &str) {
    let (parent, img) = image_parent();
    let out = Command::new(PIPECR)
        .args(["dump", "--leave-running"])
        .args(options)
        .args(["-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{want}\n"));
    assert_eq!(out.status.code(), Some(code), "pipecr dump: {}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_empty(parent.path());
}

/// `pipecr dump --leave-running [OPTIONS] -t PID -D IMG`, asserting success and that
/// both processes of the tree were saved.
fn dump_ok(pid: i32, img: &Path, options: &[&str]) {
    let options: Vec<&str> = ["--leave-running"].iter().chain(options).copied().collect();
    let stdout = common::dump(pid, img, &options);
    assert!(
        stdout.starts_with(&format!(
            "dumped pid {pid} into {}: 2 process(es)",
            img.display()
        )),
        "{stdout}"
    );
}

#[test]
fn a_pid_that_does_not_exist() {
    if !capable() {
        return;
    }
    // Above PID_MAX_LIMIT (4194304 on 64-bit kernels): no process can ever have it.
    let pid = 99_999_999;
    refuse(
        2,
        pid,
        &[],
        &format!("{}no process with pid {pid}", failed(pid)),
    );
}

/// A kernel thread visible here: kthreadd if it is, else the one with the smallest pid
/// (the long-lived ones), with its name. `None` in a PID namespace that shows none.
fn kernel_thread() -> Option<(i32, String)> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        // After the name: state ppid pgrp session tty_nr tpgid flags ...
        let flags: u64 = stat[close + 2..]
            .split(' ')
            .nth(6)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        if flags & PF_KTHREAD != 0 {
            found.push((pid, comm));
        }
    }
    found.sort();
    let kthreadd = found.iter().position(|(_, c)| c == "kthreadd");
    match kthreadd {
        Some(i) => Some(found.swap_remove(i)),
        None => found.into_iter().next(),
    }
}

#[test]
fn a_kernel_thread() {
    if !capable() {
        return;
    }
    let Some((pid, comm)) = kernel_thread() else {
        eprintln!("skipped: no kernel thread is visible in this PID namespace");
        return;
    };
    refuse(
        3,
        pid,
        &[],
        &format!(
            "{}pid {pid} ({comm}) is a kernel thread; there is nothing to checkpoint",
            failed(pid)
        ),
    );
    assert_eq!(tracer(pid), 0, "{comm} was left traced");
}

/// A shell (the root) that runs pipecr on its own tree, `depth` levels below it, then
/// answers a line on stdin: the refusal must leave it running.
fn dump_from_inside(depth: usize) {
    if !capable() || !have("sh") {
        return;
    }
    let (parent, img) = image_parent();
    let run = r#""$PIPECR" dump --leave-running -t "$ROOT" -D "$IMG" & p=$!; wait $p; echo "pipecr $p $? $$""#;
    let script = match depth {
        1 => format!("ROOT=$$; {run}; read line; echo \"pong $line\""),
        _ => format!(
            "export ROOT=$$; sh -c '{}'; read line; echo \"pong $line\"",
            run.replace('\'', "'\\''")
        ),
    };
    let mut sh = only_stdio(&mut Command::new("sh"))
        .args(["-c", &script])
        .env("PIPECR", PIPECR)
        .env("IMG", &img)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let root = sh.id() as i32;
    let mut kill = KillOnDrop(vec![root]);
    let mut stdin = sh.stdin.take().unwrap();
    let mut stdout = BufReader::new(sh.stdout.take().unwrap());
    let mut stderr = BufReader::new(sh.stderr.take().unwrap());

    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [tag, me, code, shell] = fields[..] else {
        panic!("unexpected line from the shell: {line:?}");
    };
    // Bad arguments: the tree asked for holds pipecr (docs/CLI-JSON.md).
    assert_eq!((tag, code), ("pipecr", "2"), "{line:?}");
    // pipecr's parent: the root itself, or a shell below it.
    assert_eq!(shell == root.to_string(), depth == 1, "{line:?}");
    let mut err = String::new();
    stderr.read_line(&mut err).unwrap();
    assert_eq!(
        err,
        format!(
            "{}the tree of pid {root} contains this pipecr process (pid {me}); run pipecr \
             from outside the tree\n",
            failed(root)
        )
    );
    assert_empty(parent.path());

    // The shell runs on: sleeping in `read` (or about to), traced by nobody, answering.
    let s = state(root);
    assert!(matches!(s, Some('S' | 'R')), "the shell is in state {s:?}");
    assert_eq!(tracer(root), 0);
    stdin.write_all(b"ping\n").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "pong ping\n");
    drop(stdin);
    let status = wait_child(&mut sh, "the shell to exit");
    kill.0.clear();
    assert!(status.success(), "sh: {status}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "more on stderr");
}

#[test]
fn a_tree_whose_root_runs_pipecr() {
    dump_from_inside(1);
}

#[test]
fn a_tree_with_pipecr_two_levels_down() {
    dump_from_inside(2);
}

/// This thread traces `pid` (seized: no stop, nothing the tracee notices) until dropped,
/// which stops and detaches it again. ptrace belongs to the thread: create and drop it
/// on the same one.
struct Seized(Pid);

impl Seized {
    fn new(pid: i32) -> Seized {
        let pid = Pid::from_raw(pid);
        ptrace::seize(pid, ptrace::Options::empty()).unwrap();
        Seized(pid)
    }
}

impl Drop for Seized {
    fn drop(&mut self) {
        // PTRACE_DETACH needs a stopped tracee: interrupt, wait for that stop, detach.
        if ptrace::interrupt(self.0).is_err() {
            return;
        }
        loop {
            match waitpid(self.0, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) => {
                    let _ = ptrace::detach(self.0, None);
                    return;
                }
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }
}

/// The name of thread `tid` of this process, as the kernel shows it.
fn thread_comm(tid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap();
    comm.trim_end().to_owned()
}

#[test]
fn a_root_already_traced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let mut tree = Tree::start(&exe, &["none"]);
    let root = tree.root();
    let seized = Seized::new(root);
    let me = rustix::thread::gettid().as_raw_nonzero().get();
    refuse(
        5,
        root,
        &[],
        &format!(
            "{}pid {root} (refusee) is traced by pid {me} ({}, outside the tree); a restore \
             cannot give a tracer its tracee back: detach the tracer first",
            failed(root),
            thread_comm(me)
        ),
    );
    tree.assert_working(me, 0);
    drop(seized);
    tree.assert_working(0, 0);
    tree.finish();
}

#[test]
fn a_child_already_traced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let mut tree = Tree::start(&exe, &["none"]);
    let (root, child) = (tree.root(), tree.child);
    let seized = Seized::new(child);
    let me = rustix::thread::gettid().as_raw_nonzero().get();
    // The root is stopped first, then the child is found traced: the root must be
    // resumed, and the child left with its own tracer only.
    refuse(
        5,
        root,
        &[],
        &format!(
            "{}pid {child} (refusee) is traced by pid {me} ({}, outside the tree); a restore \
             cannot give a tracer its tracee back: detach the tracer first",
            failed(root),
            thread_comm(me)
        ),
    );
    tree.assert_working(0, me);
    drop(seized);
    tree.assert_working(0, 0);
    tree.finish();
}

/// A child holding `kind` at fd 10, which pipecr cannot save.
fn unsupported(kind: &str, words: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let mut tree = Tree::start(&exe, &[kind]);
    tree.ping();
    let (root, child) = (tree.root(), tree.child);
    refuse(
        3,
        root,
        &[],
        &format!(
            "{}pid {child} fd 10: {words} is not supported",
            failed(root)
        ),
    );
    tree.assert_working(0, 0);
    tree.ping();
    tree.finish();
}

#[test]
fn a_perf_event_in_a_child() {
    unsupported("perf_event", "anonymous inode perf_event");
}

#[test]
fn an_inotify_instance_with_unread_events_needs_drop_inotify_events() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let watched = tempfile::tempdir().unwrap();
    let mut tree = Tree::start(&exe, &["inotify", watched.path().to_str().unwrap()]);
    tree.ping();
    let (root, child) = (tree.root(), tree.child);
    // One IN_CREATE event for "x": a 16-byte header and the name padded to 16 bytes.
    refuse(
        3,
        root,
        &[],
        &format!(
            "{}pid {child} fd 10: inotify instance holding 32 bytes of unread events (pipecr \
             cannot save them without consuming them; --drop-inotify-events saves the \
             instance and its watches without them) is not supported",
            failed(root)
        ),
    );
    tree.assert_working(0, 0);

    let (_parent, img) = image_parent();
    let stdout = common::dump(root, &img, &["--leave-running", "--drop-inotify-events"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "dumped pid {root} into {}: 2 process(es)",
            img.display()
        )),
        "{stdout}"
    );
    // Said once, right after the summary (the external ends, the timing follow).
    assert_eq!(
        lines[1],
        format!("pid {child} fd 10: dropped 32 bytes of queued inotify events")
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("dropped")).count(),
        1,
        "{stdout}"
    );
    assert!(
        lines[lines.len() - 1].ends_with("; the tree runs on"),
        "{stdout}"
    );
    tree.assert_working(0, 0);
    // The child exits 0 only if it still reads the event of "x" at end-of-file.
    tree.finish();
}

/// The default `--max-inline-file`: 1 MiB.
const LIMIT: u64 = 1 << 20;

/// The bytes `refusee unlinked` writes: `i * 7 + 1` for each offset `i` in blocks of 4096.
fn unlinked_pattern(size: u64) -> Vec<u8> {
    (0..size).map(|i| ((i % 4096) * 7 + 1) as u8).collect()
}

/// The contents the image `img` keeps for the unlinked file at `pid`'s `fd`.
fn saved_contents(img: &Path, pid: i32, fd: i32) -> Vec<u8> {
    use pipecr_image::proto::{self, open_file};
    let image = pipecr_image::Image::open(img).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS).unwrap();
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    let table = tree.iter().find(|p| p.pid == pid).unwrap().fd_table;
    let table = tables.iter().find(|t| t.id == table).unwrap();
    let id = table
        .descriptors
        .iter()
        .find(|d| d.fd == fd)
        .unwrap()
        .file_id;
    let file = files.iter().find(|f| f.id == id).unwrap();
    let Some(open_file::Kind::Regular(regular)) = &file.kind else {
        panic!("pid {pid} fd {fd} not saved as a regular file: {file:?}");
    };
    assert!(regular.unlinked, "{regular:?}");
    if let Some(data) = &regular.contents {
        return image.read_data(data).unwrap();
    }
    // Kept as the memory object of the same file (device and inode), which a mapping of
    // it would share: its pages, zeros where none is stored.
    let id = regular.identity.as_ref().unwrap();
    let objects: Vec<proto::MemObject> = image.read_records(pipecr_image::MEM_OBJECTS).unwrap();
    let object = objects
        .iter()
        .find(|o| {
            o.identity
                .as_ref()
                .is_some_and(|i| (i.dev, i.inode) == (id.dev, id.inode))
        })
        .unwrap_or_else(|| panic!("no contents and no object for {regular:?}"));
    let pages = std::fs::read(img.join(pipecr_image::PAGES)).unwrap();
    let size = object.identity.as_ref().unwrap().size as usize;
    let mut bytes = vec![0u8; size.next_multiple_of(4096)];
    for run in object.pages.iter().filter(|r| !r.zero) {
        let (at, from, len) = (
            run.start as usize,
            run.store_index as usize * 4096,
            run.nr_pages as usize * 4096,
        );
        bytes[at..at + len].copy_from_slice(&pages[from..from + len]);
    }
    bytes.truncate(size);
    bytes
}

#[test]
fn a_failed_dump_into_an_empty_dir_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let path = dir.path().join("unlinked");
    let size = (LIMIT + 1).to_string();
    let mut tree = Tree::start(&exe, &["unlinked", path.to_str().unwrap(), &size]);
    let (root, child) = (tree.root(), tree.child);
    let (parent, img) = image_parent();
    std::fs::create_dir(&img).unwrap();
    // Refused after the tree was frozen and part of the image written.
    let out = Command::new(PIPECR)
        .args(["dump", "--leave-running", "-t", &root.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}pid {child} fd 10 ", failed(root))),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(3));
    // DIR is still there, still empty, and nothing is beside it.
    assert_empty(&img);
    let beside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["img"]);
    tree.assert_working(0, 0);
    tree.finish();
}

#[test]
fn an_unlinked_file_of_exactly_the_default_limit_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let path = dir.path().join("unlinked");
    let size = LIMIT.to_string();
    let mut tree = Tree::start(&exe, &["unlinked", path.to_str().unwrap(), &size]);
    let (parent, img) = image_parent();
    dump_ok(tree.root(), &img, &[]);
    tree.assert_working(0, 0);
    assert!(saved_contents(&img, tree.child, 10) == unlinked_pattern(LIMIT));
    drop(parent);
    tree.finish();
}

#[test]
fn an_unlinked_file_one_byte_above_the_limit_needs_max_inline_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = refusee(dir.path()) else {
        return;
    };
    let path = dir.path().join("unlinked");
    let size = (LIMIT + 1).to_string();
    let mut tree = Tree::start(&exe, &["unlinked", path.to_str().unwrap(), &size]);
    let (root, child) = (tree.root(), tree.child);
    refuse(
        3,
        root,
        &[],
        &format!(
            "{}pid {child} fd 10 ({} (deleted)): {} bytes of data is more than the \
             {LIMIT}-byte limit for file contents kept in the image (holes are not counted; \
             --max-inline-file)",
            failed(root),
            path.display(),
            LIMIT + 1
        ),
    );
    tree.assert_working(0, 0);
    // A limit one byte too small is still a refusal; a larger one saves the file.
    refuse(
        3,
        root,
        &["--max-inline-file", "1048576"],
        &format!(
            "{}pid {child} fd 10 ({} (deleted)): {} bytes of data is more than the \
             {LIMIT}-byte limit for file contents kept in the image (holes are not counted; \
             --max-inline-file)",
            failed(root),
            path.display(),
            LIMIT + 1
        ),
    );
    let (parent, img) = image_parent();
    dump_ok(root, &img, &["--max-inline-file", "2000000"]);
    tree.assert_working(0, 0);
    assert!(saved_contents(&img, child, 10) == unlinked_pattern(LIMIT + 1));
    drop(parent);
    tree.finish();
}

/// A running `progs/cputimers.c MODE`: the process, its control and ack FIFOs, and the
/// ID and clock id of its one timer as it printed them.
struct TimerHolder {
    prog: Child,
    ctl: File,
    ack: File,
    out: PathBuf,
    id: i32,
    clock: i32,
    kill: KillOnDrop,
}

impl TimerHolder {
    /// Builds and starts `cputimers MODE` in `dir` and waits for its ready byte.
    fn start(dir: &Path, mode: &str) -> Option<TimerHolder> {
        if !capable() {
            return None;
        }
        let exe = build("cputimers", dir)?;
        for fifo in ["ctl", "ack"] {
            common::mkfifo(&dir.join(fifo));
        }
        let ctl = common::open_ctl(&dir.join("ctl"));
        let out = dir.join("out");
        let prog = only_stdio(&mut Command::new(&exe))
            .arg(&out)
            .arg(dir.join("ctl"))
            .arg(dir.join("ack"))
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let kill = KillOnDrop(vec![prog.id() as i32]);
        let ack = File::open(dir.join("ack")).unwrap();
        let mut holder = TimerHolder {
            prog,
            ctl,
            ack,
            out,
            id: -1,
            clock: 0,
            kill,
        };
        holder.wait_ack("the ready byte");
        let line = holder.last_line();
        let (id, clock) = line
            .strip_prefix("timer ")
            .and_then(|l| l.split_once(" clock "))
            .unwrap_or_else(|| panic!("{line}"));
        (holder.id, holder.clock) = (id.parse().unwrap(), clock.parse().unwrap());
        Some(holder)
    }

    fn pid(&self) -> i32 {
        self.prog.id() as i32
    }

    fn wait_ack(&mut self, what: &str) {
        assert!(readable_within(&self.ack, DEADLINE), "no {what}");
        let mut b = [0u8; 1];
        self.ack.read_exact(&mut b).unwrap();
    }

    fn last_line(&self) -> String {
        let text = std::fs::read_to_string(&self.out).unwrap();
        text.lines().last().unwrap_or("").to_owned()
    }

    /// Asks the program to check its timer and the thread or child it names, from inside.
    fn assert_working(&mut self) {
        self.ctl.write_all(b"v").unwrap();
        self.wait_ack("answer to 'v'");
        assert_eq!(self.last_line(), "ok", "the program's own check");
    }

    fn finish(mut self) {
        self.ctl.write_all(b"q").unwrap();
        let status = wait_child(&mut self.prog, "cputimers");
        assert!(status.success(), "{status}");
        std::mem::forget(self.kill);
    }
}

/// Runs a default `pipecr dump -t PID -D DIR/img` (one that would kill the tree on
/// success) and asserts the refusal: exactly the line `want` on stderr, nothing on
/// stdout, exit code 3 (unsupported), nothing left in DIR.
fn refuse_default_dump(pid: i32, want: &str) {
    let (parent, img) = image_parent();
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{want}\n"));
    assert_eq!(out.status.code(), Some(3), "pipecr dump: {}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_empty(parent.path());
}

/// Asserts that `pid` was left as the dump found it: traced by nobody, not stopped.
fn assert_untouched(pid: i32) {
    assert_eq!(tracer(pid), 0, "pid {pid} is still traced");
    let s = state(pid);
    assert!(matches!(s, Some('S' | 'R')), "pid {pid} is in state {s:?}");
}

#[test]
fn a_timer_on_the_thread_cpu_clock_of_a_two_thread_process() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut prog) = TimerHolder::start(dir.path(), "thread") else {
        return;
    };
    let pid = prog.pid();
    // CLOCK_THREAD_CPUTIME_ID as the kernel stores it: the calling thread's, unnamed.
    refuse_default_dump(
        pid,
        &format!(
            "{}pid {pid}: POSIX timer {} cannot be restored: it runs on the CPU-time clock of \
             the thread that created it (clock id -2), and in a process of 2 threads \
             /proc/{pid}/timers does not say which thread that is",
            failed(pid),
            prog.id
        ),
    );
    assert_untouched(pid);
    prog.assert_working();
    prog.finish();
}

#[test]
fn a_timer_on_the_cpu_clock_of_its_child() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut prog) = TimerHolder::start(dir.path(), "child") else {
        return;
    };
    let pid = prog.pid();
    let child = children(pid);
    assert_eq!(child.len(), 1, "{child:?}");
    let child = child[0];
    prog.kill.0.push(child);
    // MAKE_PROCESS_CPUCLOCK(child, CPUCLOCK_SCHED), as clock_getcpuclockid gave it.
    assert_eq!(prog.clock, (!child << 3) | 2);
    refuse_default_dump(
        pid,
        &format!(
            "{}pid {pid}: POSIX timer {} cannot be restored: it runs on the CPU-time clock of \
             another process, {child} (clock id {})",
            failed(pid),
            prog.id,
            prog.clock
        ),
    );
    assert_untouched(pid);
    assert_untouched(child);
    prog.assert_working();
    prog.finish();
}
