//! Dumps at scale inside `cargo test`: thousands of pipes with data in one process, and a
//! tree holding more descriptors in total than pipecr itself may have open.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};

use pipecr::dump::dump_tree;
use pipecr::files::DumpOptions;
use pipecr_image::{Image, proto};

/// The RLIMIT_NOFILE soft limit pipecr dumps under in these tests (the hard limit where
/// the project is developed).
const NOFILE: u64 = 20_000;

/// Runs a python3 `script` with stdin, stdout and stderr as pipes from the test, and
/// waits for `ready` bytes on its stdout.
fn python(script: &str, args: &[String], ready: usize) -> Child {
    let mut child = Command::new("python3")
        .args(["-I", "-S", "-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = vec![0u8; ready];
    if child.stdout.as_mut().unwrap().read_exact(&mut got).is_err() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("python3 did not get ready: {err}");
    }
    assert_eq!(got, vec![b'r'; ready]);
    child
}

/// Closes the program's stdin (its release), returns what it printed, and checks that it
/// exited 0 with nothing on stderr.
fn release(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "{}: {err}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lowers this process's soft RLIMIT_NOFILE to [`NOFILE`] if it is higher, so that the
/// dump below cannot hold every descriptor of the tree at once whatever the machine.
fn limit_own_descriptors() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft > NOFILE) {
        limit.current = Some(NOFILE);
        setrlimit(Resource::Nofile, limit).unwrap();
    }
    getrlimit(Resource::Nofile).current.unwrap()
}

/// One process, 5000 pipes, each holding the 8 bytes of its index (little endian); the
/// read end of pipe `i` is fd `3 + 2i`, its write end `4 + 2i`. After "r" it waits for
/// stdin to close, then checks that every pipe still holds exactly its 8 bytes.
const MANY_PIPES: &str = r#"
import os, resource, struct, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
os.closerange(3, hard)
ends = []
for i in range(n):
    r, w = os.pipe()
    if (r, w) != (3 + 2 * i, 4 + 2 * i):
        raise SystemExit(f"pipe {i} is fds {r},{w}")
    os.write(w, struct.pack("<Q", i))
    ends.append((r, w))
os.write(1, b"r")
while os.read(0, 1):
    pass
for i, (r, w) in enumerate(ends):
    os.set_blocking(r, False)
    got = os.read(r, 64)
    if got != struct.pack("<Q", i):
        raise SystemExit(f"pipe {i} holds {got!r}")
    try:
        extra = os.read(r, 64)
        raise SystemExit(f"pipe {i} holds more: {extra!r}")
    except BlockingIOError:
        pass
print("intact", n)
"#;

#[test]
fn five_thousand_pipes_with_data_in_one_process() {
    const PIPES: usize = 5000;
    limit_own_descriptors();
    let child = python(MANY_PIPES, &[PIPES.to_string()], 1);
    let pid = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let start = std::time::Instant::now();
    let stats = dump_tree(pid, &img, &DumpOptions::default()).unwrap();
    eprintln!("dumped 5000 pipes in {:?}", start.elapsed());
    // stdin, stdout and stderr are pipes too, with their other ends in this test.
    assert_eq!(stats.pipes, PIPES + 3);
    assert_eq!(stats.descriptors, 2 * PIPES + 3);
    assert_eq!(stats.open_files, 2 * PIPES + 3);
    assert_eq!(stats.pipe_bytes, 8 * PIPES as u64);

    let image = Image::open(&img).unwrap();
    let pipes: BTreeMap<u64, proto::Pipe> = image
        .read_records::<proto::Pipe>(pipecr_image::PIPES)
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    assert_eq!(pipes.len(), PIPES + 3);
    let files: BTreeMap<u64, proto::OpenFile> = image
        .read_records::<proto::OpenFile>(pipecr_image::FILES)
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS).unwrap();
    assert_eq!(tables.len(), 1);
    let fds: BTreeMap<i32, u64> = tables[0]
        .descriptors
        .iter()
        .map(|d| (d.fd, d.file_id))
        .collect();
    assert_eq!(fds.len(), 2 * PIPES + 3);
    // The pipe behind a descriptor, and which end it is.
    let pipe_of = |fd: i32| {
        let file = &files[&fds[&fd]];
        let Some(proto::open_file::Kind::Pipe(end)) = &file.kind else {
            panic!("fd {fd} is not a pipe end: {file:?}");
        };
        (end.pipe_id, end.end)
    };
    let mut seen = BTreeSet::new();
    for i in 0..PIPES {
        let (r, w) = (3 + 2 * i as i32, 4 + 2 * i as i32);
        let (read_pipe, read_end) = pipe_of(r);
        let (write_pipe, write_end) = pipe_of(w);
        assert_eq!(read_pipe, write_pipe, "fds {r} and {w} are one pipe");
        assert_eq!(read_end, proto::PipeEndKind::Read as i32);
        assert_eq!(write_end, proto::PipeEndKind::Write as i32);
        let pipe = &pipes[&read_pipe];
        assert!(!pipe.external_reader && !pipe.external_writer, "{pipe:?}");
        let data = image.read_data(pipe.data.as_ref().unwrap()).unwrap();
        assert_eq!(data, (i as u64).to_le_bytes(), "the bytes of pipe {i}");
        assert!(seen.insert(read_pipe), "pipe {i} saved once");
    }
    // The process ran on with every pipe as it was.
    assert_eq!(release(child), format!("intact {PIPES}\n"));
}

/// A root and 3 forked children sharing `n` pipes (all `2n` ends open in every process);
/// each writes "r" once all its descriptors are in place, then waits for stdin to close.
/// The root then reaps the children and fails if any failed.
const SHARED_PIPES: &str = r#"
import os, resource, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
os.closerange(3, hard)
for i in range(n):
    os.pipe()
kids = []
for c in range(3):
    pid = os.fork()
    if pid == 0:
        os.write(1, b"r")
        while os.read(0, 1):
            pass
        os._exit(0)
    kids.append(pid)
os.write(1, b"r")
while os.read(0, 1):
    pass
for pid in kids:
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"child {pid}: status {status}")
print("done")
"#;

#[test]
fn a_tree_with_more_descriptors_than_pipecr_may_open_is_dumped_with_its_sharing() {
    const PIPES: usize = 7000;
    const PROCESSES: usize = 4;
    let own_limit = limit_own_descriptors();
    let per_process = 2 * PIPES + 3;
    assert!(
        (PROCESSES * per_process) as u64 > 2 * own_limit,
        "the tree holds far more descriptors than pipecr may open: {own_limit}"
    );
    let child = python(SHARED_PIPES, &[PIPES.to_string()], PROCESSES);
    let root = child.id() as i32;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let start = std::time::Instant::now();
    let stats = dump_tree(root, &img, &DumpOptions::default()).unwrap();
    eprintln!(
        "dumped {} descriptors in {:?} (frozen {:?})",
        stats.descriptors,
        start.elapsed(),
        stats.frozen
    );
    assert_eq!(stats.processes, PROCESSES);
    assert_eq!(stats.descriptors, PROCESSES * per_process);
    // Every descriptor is inherited through fork: one open file per pipe end.
    assert_eq!(stats.open_files, per_process);
    assert_eq!(stats.pipes, PIPES + 3);

    let image = Image::open(&img).unwrap();
    let processes: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    assert_eq!(processes.len(), PROCESSES);
    let tables: BTreeMap<u64, proto::FdTable> = image
        .read_records::<proto::FdTable>(pipecr_image::FDS)
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    assert_eq!(tables.len(), PROCESSES, "no descriptor table is shared");
    let total: usize = tables.values().map(|t| t.descriptors.len()).sum();
    assert_eq!(total, PROCESSES * per_process);
    // fd -> the open files behind it, over all processes.
    let mut by_fd: BTreeMap<i32, BTreeSet<u64>> = BTreeMap::new();
    let mut holders: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &processes {
        let table = &tables[&p.fd_table];
        assert!(!table.shared);
        assert_eq!(table.descriptors.len(), per_process, "pid {}", p.pid);
        for d in &table.descriptors {
            by_fd.entry(d.fd).or_default().insert(d.file_id);
            *holders.entry(d.file_id).or_default() += 1;
        }
    }
    assert_eq!(by_fd.len(), per_process);
    for (fd, ids) in &by_fd {
        assert_eq!(ids.len(), 1, "fd {fd} is one open file in all processes");
    }
    assert_eq!(holders.len(), per_process);
    assert!(
        holders.values().all(|&n| n == PROCESSES),
        "each open file is referenced by all {PROCESSES} processes"
    );
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES).unwrap();
    assert_eq!(files.len(), per_process);
    // Each pipe has exactly one read-end open file and one write-end open file.
    let mut ends: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
    for f in &files {
        let Some(proto::open_file::Kind::Pipe(end)) = &f.kind else {
            panic!("not a pipe end: {f:?}");
        };
        ends.entry(end.pipe_id).or_default().push(end.end);
    }
    assert_eq!(ends.len(), PIPES + 3);
    let pipes: Vec<proto::Pipe> = image.read_records(pipecr_image::PIPES).unwrap();
    assert_eq!(pipes.len(), PIPES + 3);
    let mut internal = 0;
    for pipe in &pipes {
        let mut kinds = ends[&pipe.id].clone();
        kinds.sort();
        if pipe.external_reader || pipe.external_writer {
            // stdin, stdout and stderr: the test holds their other ends.
            assert_eq!(kinds.len(), 1, "pipe {pipe:?}");
        } else {
            assert_eq!(
                kinds,
                [
                    proto::PipeEndKind::Read as i32,
                    proto::PipeEndKind::Write as i32
                ],
                "pipe {pipe:?}"
            );
            internal += 1;
        }
    }
    assert_eq!(internal, PIPES);
    assert_eq!(release(child), "done\n");
}
