//! `pipecr show` on images written by `pipecr::pipe::save`, intact and damaged, and on a
//! tree image of a live process (its state in `core.img`, its memory in `mm.img`) and of
//! a live 2-process tree (descriptors, sharing, external ends, the pipe graph).

mod common;

use std::os::fd::AsFd;

use prost::Message as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rustix::pipe::{PipeFlags, pipe_with};

const PACKETS: &[usize] = &[5, 700, 4096, 33];

/// Saves a packet-mode pipe holding PACKETS (bytes "pkt0...", "pkt1...", ...) with both
/// ends; returns the image directory.
fn packet_image(tmp: &Path) -> (PathBuf, Vec<u8>, u64) {
    let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK | PipeFlags::DIRECT).unwrap();
    let mut all = Vec::new();
    for (i, &n) in PACKETS.iter().enumerate() {
        let p: Vec<u8> = format!("pkt{i}:")
            .bytes()
            .chain(std::iter::repeat(b'x'))
            .take(n)
            .collect();
        assert_eq!(rustix::io::write(&w, &p).unwrap(), n);
        all.extend_from_slice(&p);
    }
    let image = pipecr::pipe::checkpoint_ends(&[r.as_fd(), w.as_fd()]).unwrap();
    let dir = pipecr::pipe::save(&image, &tmp.join("img")).unwrap();
    (dir, all, image.inode)
}

fn show(dir: &Path, json: bool) -> std::process::Output {
    let mut cmd = Command::cargo_bin("pipecr").unwrap();
    cmd.arg("show").arg(dir);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[test]
fn human_output_lists_inventory_pipe_and_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all, inode) = packet_image(tmp.path());
    let out = show(&dir, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "format:   1.".to_owned(),
        "content:  pipe".to_owned(),
        format!(
            "kernel:   {}",
            rustix::system::uname().release().to_str().unwrap()
        ),
        "pipes.img".to_owned(),
        "files.img".to_owned(),
        "pipes-data.img".to_owned(),
        format!("pipe 1 (pipe:[{inode}])"),
        "capacity:     65536 B".to_owned(),
        format!("pending:      {} B", all.len()),
        "packet mode:  yes, 4 packet(s) [5, 700, 4096, 33]".to_owned(),
        "\"pkt0:pkt1:xxxx".to_owned(),
        "read end, O_RDONLY|O_NONBLOCK".to_owned(),
        "write end, O_WRONLY|O_NONBLOCK|O_DIRECT".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn json_output_parses_and_holds_the_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all, inode) = packet_image(tmp.path());
    let out = show(&dir, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inv = &v["inventory"];
    assert_eq!(inv["content"], "pipe");
    assert_eq!(inv["format_major"], 1);
    let names: Vec<&str> = inv["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for n in ["pipes.img", "files.img", "pipes-data.img"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let pipes = v["pipes"].as_array().unwrap();
    assert_eq!(pipes.len(), 1);
    let p = &pipes[0];
    assert_eq!(p["inode"], inode);
    assert_eq!(p["capacity"], 65536);
    assert_eq!(p["packet_mode"], true);
    assert_eq!(p["packet_lengths"], serde_json::json!(PACKETS));
    assert_eq!(p["data"]["length"], all.len());
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let flags: Vec<i64> = files.iter().map(|f| f["flags"].as_i64().unwrap()).collect();
    assert!(
        flags.iter().any(|f| f & i64::from(libc_o_direct()) != 0),
        "{flags:?}"
    );
    for f in files {
        assert_eq!(f["kind"]["Pipe"]["pipe_id"], p["id"]);
    }
}

fn libc_o_direct() -> u32 {
    rustix::fs::OFlags::DIRECT.bits()
}

#[test]
fn damaged_image_is_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _) = packet_image(tmp.path());
    let path = dir.join("pipes.img");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    for json in [false, true] {
        let out = show(&dir, json);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("pipes.img"), "{err}");
    }
}

#[test]
fn not_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let out = show(tmp.path(), false);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A python3 child that has finished starting (it said so on stdout) and now blocks in
/// read(2) on a pipe the test holds; killed and reaped on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn spawn() -> Self {
        use std::io::BufRead as _;
        use std::process::Stdio;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys; print('ready', flush=True); sys.stdin.buffer.read()",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        // "ready" comes just before the read(2) the child then blocks in; nothing the
        // child could send tells us it got there, so watch /proc/PID/syscall (the call
        // number first while blocked in one) until it shows read (0).
        let path = format!("/proc/{}/syscall", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !std::fs::read_to_string(&path).unwrap().starts_with("0 ") {
            assert!(
                std::time::Instant::now() < deadline,
                "child never blocked in read"
            );
            std::thread::yield_now();
        }
        Sleeper(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dumps the live child with the library; returns the image directory.
fn tree_image(tmp: &Path, pid: i32) -> PathBuf {
    let dir = tmp.join("tree");
    pipecr::dump::dump_tree(pid, &dir, &pipecr::files::DumpOptions::default()).unwrap();
    dir
}

#[test]
fn tree_image_shows_state_and_memory_of_each_process() {
    let child = Sleeper::spawn();
    let pid = child.pid();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tree_image(tmp.path(), pid);
    let image = pipecr_image::Image::open(&dir).unwrap();
    let cores: Vec<pipecr_image::proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let rip = match &cores[0].threads[0].regs {
        Some(pipecr_image::proto::thread::Regs::X8664(r)) => r.rip,
        None => panic!("no registers"),
    };
    drop(child);

    let out = show(&dir, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The process section starts after the tree; look only there.
    let section = text
        .find(&format!("\npid {pid} ("))
        .map(|at| &text[at..])
        .unwrap_or_else(|| panic!("no section for pid {pid} in:\n{text}"));
    for want in [
        "content:  tree".to_owned(),
        "mm.img".to_owned(),
        "core.img".to_owned(),
        "pages.img".to_owned(),
        format!("thread {pid} (leader)"),
        format!("rip {rip:#018x}"),
        // Blocked in read(0): interrupted by the freeze, restarted on resume.
        "in system call 0 (read), interrupted".to_owned(),
        "umask:".to_owned(),
        "limits:       nofile".to_owned(),
        "saved pages:".to_owned(),
        "[heap]".to_owned(),
        "[stack]".to_owned(),
        "[vdso]".to_owned(),
    ] {
        let haystack = if want.ends_with(".img") || want.starts_with("content") {
            &text[..]
        } else {
            section
        };
        assert!(haystack.contains(&want), "missing {want:?} in:\n{text}");
    }
    // Kernel areas are never saved; heap and stack are.
    for (area, kind) in [("[vdso]", "vdso"), ("[heap]", "heap"), ("[stack]", "stack")] {
        let line = section
            .lines()
            .find(|l| l.ends_with(area))
            .unwrap_or_else(|| panic!("no {area} line in:\n{section}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[2], kind, "{line}");
        if area == "[vdso]" {
            assert_eq!(cols[3], "-", "{line}");
        } else {
            assert!(cols[3].parse::<u64>().unwrap() > 0, "{line}");
        }
    }
}

#[test]
fn tree_image_json_has_core_mm_and_objects_without_raw_bytes() {
    let child = Sleeper::spawn();
    let pid = child.pid();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tree_image(tmp.path(), pid);
    drop(child);

    let out = show(&dir, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["inventory"]["content"], "tree");
    assert_eq!(v["processes"][0]["pid"], pid);

    let core = v["core"].as_array().unwrap();
    assert_eq!(core.len(), 1);
    assert_eq!(core[0]["pid"], pid);
    assert_eq!(core[0]["rlimits"].as_array().unwrap().len(), 16);
    let thread = &core[0]["threads"][0];
    assert_eq!(thread["tid"], pid);
    assert!(thread["x86_64"]["rip"].as_u64().unwrap() > 0, "{thread}");
    assert_eq!(thread["x86_64"]["orig_rax"], 0, "blocked in read(2)");
    // The XSAVE area is summarised, not printed as an array of numbers.
    assert!(thread.get("xsave").is_none(), "{thread}");
    assert!(thread["xsave_len"].as_u64().unwrap() >= 512, "{thread}");

    let mm = v["mm"].as_array().unwrap();
    assert_eq!(mm.len(), 1);
    assert_eq!(mm[0]["pid"], pid);
    let kinds: Vec<i64> = mm[0]["vmas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_i64().unwrap())
        .collect();
    for kind in [
        pipecr_image::proto::VmaKind::Heap,
        pipecr_image::proto::VmaKind::Stack,
        pipecr_image::proto::VmaKind::Vdso,
    ] {
        assert!(kinds.contains(&(kind as i64)), "{kind:?} not in {kinds:?}");
    }
    assert!(!mm[0]["pages"].as_array().unwrap().is_empty());
    // auxv decoded into entries, AT_NULL (0) last.
    let auxv = mm[0]["auxv"].as_array().unwrap();
    assert_eq!(auxv.last().unwrap()["type"], 0, "{auxv:?}");
    assert!(
        auxv.iter().any(|e| e["type"] == 6 && e["value"] == 4096),
        "AT_PAGESZ"
    );
    assert!(v["mem_objects"].is_array());
}

/// `pipecr show IMG | head -0`: a reader that is gone ends `show` quietly by `SIGPIPE`,
/// as it ends any Unix filter, not with a panic.
#[test]
fn a_reader_that_goes_away_ends_show_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _) = packet_image(tmp.path());
    let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
    drop(r);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipecr"))
        .arg("show")
        .arg(&dir)
        .stdout(std::process::Stdio::from(w))
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

// ---------------------------------------------------------------------------------------
// Damage that the checksums of the inventory agree with.

/// Exactly one line on stderr, nothing on stdout, exit code 4 (damaged image): what `show` must do
/// with a damaged image, in both output modes. Returns the line.
fn refused(dir: &Path) -> String {
    refused_with(dir, 4)
}

/// [`refused`] with exit code `code` (3: an image of an unsupported format version).
fn refused_with(dir: &Path, code: i32) -> String {
    let mut lines = Vec::new();
    for json in [false, true] {
        let out = show(dir, json);
        // A damaged image (docs/CLI-JSON.md).
        assert_eq!(
            out.status.code(),
            Some(code),
            "json {json}: {:?}",
            out.status
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "json {json}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "json {json}: {err}");
        lines.push(err.trim_end().to_owned());
    }
    assert_eq!(lines[0], lines[1]);
    lines.remove(0)
}

/// Writes an image of pipe records `pipes`, each pending byte count taken from `data`
/// (stored in `pipes-data.img`), with the image crate's writer: every checksum is right.
fn pipe_records_image(dir: &Path, pipes: &[(pipecr_image::proto::Pipe, &[u8])]) {
    let mut w = pipecr_image::ImageWriter::create(
        dir,
        pipecr::pipe::image_meta(pipecr_image::CONTENT_PIPE),
    )
    .unwrap();
    let mut records = Vec::new();
    for (pipe, data) in pipes {
        let data = w
            .raw(pipecr_image::PIPES_DATA)
            .unwrap()
            .append(data)
            .unwrap();
        records.push(pipecr_image::proto::Pipe {
            data: Some(data),
            ..pipe.clone()
        });
    }
    w.write_records(pipecr_image::PIPES, &records).unwrap();
    w.commit().unwrap();
}

fn pipe_record(id: u64, capacity: u32, packets: Option<&[u32]>) -> pipecr_image::proto::Pipe {
    pipecr_image::proto::Pipe {
        id,
        inode: 1000 + id,
        capacity,
        packet_mode: packets.is_some(),
        packet_lengths: packets.unwrap_or_default().to_vec(),
        ..Default::default()
    }
}

#[test]
fn impossible_pipes_are_refused_naming_image_file_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    let good = pipe_record(1, 65536, None);
    let cases: [(pipecr_image::proto::Pipe, &[u8], &str); 3] = [
        (
            pipe_record(2, 5000, None),
            b"hello",
            "capacity 5000 is not a power-of-two number of pages",
        ),
        (
            pipe_record(2, 65536, Some(&[3, 4])),
            b"0123456789",
            "packet lengths add up to 7 bytes but 10 bytes are pending",
        ),
        // Three packets in two bytes: one of them holds nothing.
        (
            pipe_record(2, 65536, Some(&[1, 0, 1])),
            b"ab",
            "a packet of 0 bytes (packets hold 1 to 4096 bytes)",
        ),
    ];
    for (i, (bad, data, why)) in cases.into_iter().enumerate() {
        // Alone (record 0), and after a valid pipe (record 1).
        for (record, pipes) in [
            (0, vec![(bad.clone(), data)]),
            (1, vec![(good.clone(), &b"fine"[..]), (bad.clone(), data)]),
        ] {
            let dir = tmp.path().join(format!("img-{i}-{record}"));
            pipe_records_image(&dir, &pipes);
            assert!(pipecr_image::Image::open(&dir).is_ok(), "checksums agree");
            assert_eq!(
                refused(&dir),
                format!(
                    "error: image {}: pipes.img record {record}: {why}",
                    dir.display()
                )
            );
        }
    }
}

/// Replaces `name` in the image `dir` by `bytes` and makes the inventory agree with it
/// (length and CRC32C), so that only reading the file itself finds the damage.
fn replace_resealed(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
    let inv_path = dir.join(pipecr_image::INVENTORY);
    let inv_bytes = std::fs::read(&inv_path).unwrap();
    let mut inv: pipecr_image::proto::Inventory =
        pipecr_image::decode_record_file("inv", &inv_bytes)
            .unwrap()
            .decode_all("inv")
            .unwrap()
            .remove(0);
    let digest = inv.files.iter_mut().find(|f| f.name == name).unwrap();
    digest.length = bytes.len() as u64;
    digest.crc32c = crc32c::crc32c(bytes);
    std::fs::write(&inv_path, pipecr_image::encode_record_file(&[inv])).unwrap();
    pipecr_image::Image::open(dir).expect("the inventory agrees with the damaged file");
}

#[test]
fn damage_behind_correct_inventory_checksums_is_one_specific_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _) = packet_image(tmp.path());
    let image = pipecr_image::Image::open(&dir).unwrap();
    let pipes: Vec<pipecr_image::proto::Pipe> = image.read_records(pipecr_image::PIPES).unwrap();
    // Two records, so that the damaged one is record 1.
    let two = pipecr_image::encode_record_file(&[pipes[0].clone(), pipes[0].clone()]);
    let second = two.len() - pipes[0].encoded_len();
    let d = dir.display();

    let mut bad_magic = two.clone();
    bad_magic[0] = b'X';
    let mut bad_crc = two.clone();
    bad_crc[second + 1] ^= 0x01;
    let truncated = &two[..two.len() - 3];
    let mut v2 = two.clone();
    v2[8..10].copy_from_slice(&2u16.to_le_bytes());
    v2[10..12].copy_from_slice(&0u16.to_le_bytes());
    let record_len = (pipecr_image::RECORD_HEADER_LEN + pipes[0].encoded_len()) as u64;

    for (bytes, want) in [
        (
            &bad_magic[..],
            format!("error: image {d}: pipes.img: bad magic, not a pipecr metadata file"),
        ),
        (
            &bad_crc[..],
            format!("error: image {d}: pipes.img record 1: CRC32C mismatch (damaged image)"),
        ),
        (
            truncated,
            format!(
                "error: image {d}: pipes.img record 1: truncated (needs {record_len} bytes, {} \
                 left; damaged image)",
                record_len - 3
            ),
        ),
        (
            &v2[..],
            format!(
                "error: image {d}: pipes.img: format version 2.0 is not supported (this \
                 pipecr reads format 1.x)"
            ),
        ),
    ] {
        replace_resealed(&dir, pipecr_image::PIPES, bytes);
        // A newer format is unsupported (3), not damaged (4).
        let code = if want.contains("format version") {
            3
        } else {
            4
        };
        assert_eq!(refused_with(&dir, code), want);
    }
}

// ---------------------------------------------------------------------------------------
// A live 2-process tree (tests/progs/showtree.c).

/// The running `showtree` parent and its child; both killed (and the parent reaped) on
/// drop.
struct Tree {
    parent: std::process::Child,
    pids: Vec<i32>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        common::kill_tree(&self.pids);
        let _ = self.parent.wait();
    }
}

/// `(pid, fd)` -> (open file id, what the line says after `file N: `), from the
/// `process tree` section.
fn fd_lines(text: &str) -> std::collections::BTreeMap<(i32, i32), (u64, String)> {
    let mut out = std::collections::BTreeMap::new();
    let section = text
        .split("\nprocess tree\n")
        .nth(1)
        .expect("a process tree section");
    let mut pid = 0;
    for line in section.lines().take_while(|l| !l.is_empty()) {
        let l = line.trim_start();
        if let Some(rest) = l.strip_prefix("pid ") {
            pid = rest.split(' ').next().unwrap().parse().unwrap();
        } else if let Some(rest) = l.strip_prefix("fd ") {
            let (fd, rest) = rest.split_once(" -> file ").unwrap();
            let (id, what) = rest.split_once(": ").unwrap();
            let old = out.insert(
                (pid, fd.trim().parse().unwrap()),
                (id.parse().unwrap(), what.to_owned()),
            );
            assert!(old.is_none(), "{line}");
        }
    }
    out
}

/// The section of the human output that starts with the line `head` and ends at the next
/// empty line.
fn section<'a>(text: &'a str, head: &str) -> Vec<&'a str> {
    let at = text
        .find(&format!("\n{head}\n"))
        .unwrap_or_else(|| panic!("no section {head:?} in:\n{text}"));
    text[at + 1..]
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

/// The pipe id in `read end of pipe 3, 120 B pending`.
fn pipe_id_in(what: &str) -> u64 {
    let rest = what.split(" of pipe ").nth(1).unwrap();
    rest.split(',').next().unwrap().parse().unwrap()
}

#[test]
fn two_process_tree_shows_descriptors_sharing_external_ends_and_pipe_graph() {
    if !common::capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = common::build("showtree", tmp.path()) else {
        return;
    };
    let shared = tmp.path().join("shared.txt");
    // The parent's fd 0: a pipe whose writer (this test) is outside the tree, 3 B pending.
    let (ext_r, ext_w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
    assert_eq!(rustix::io::write(&ext_w, b"ext").unwrap(), 3);
    let ext_inode = rustix::fs::fstat(&ext_w).unwrap().st_ino;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg(&shared)
        .stdin(std::process::Stdio::from(ext_r))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut parent = common::only_stdio(&mut cmd).spawn().unwrap();
    let mut line = String::new();
    // Kept open to the end: the parent's fd 1 then has its reader outside the tree.
    let mut parent_out = std::io::BufReader::new(parent.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut parent_out, &mut line).unwrap();
    let ids: Vec<i32> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("showtree said {line:?}"))
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (p, c) = (ids[0], ids[1]);
    let _tree = Tree {
        parent,
        pids: vec![p, c],
    };
    let img = tmp.path().join("img");
    common::dump(p, &img, &["--leave-running"]);

    let out = show(&img, false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The tree, each process's descriptors.
    let tree = section(&text, "process tree");
    assert!(
        tree[0].starts_with(&format!("  pid {p} (showtree), pgid ")),
        "{text}"
    );
    let child_at = tree
        .iter()
        .position(|l| l.starts_with(&format!("    pid {c} (showtree), pgid ")))
        .unwrap_or_else(|| panic!("no child line in:\n{text}"));
    assert!(tree[1..child_at].iter().all(|l| l.starts_with("    fd ")));
    assert!(
        tree[child_at + 1..]
            .iter()
            .all(|l| l.starts_with("      fd "))
    );
    let fds = fd_lines(&text);
    let of = |pid: i32, fd: i32| {
        fds.get(&(pid, fd))
            .unwrap_or_else(|| panic!("no pid {pid} fd {fd} in:\n{text}"))
    };
    let listed =
        |pid: i32| -> Vec<i32> { fds.keys().filter(|k| k.0 == pid).map(|k| k.1).collect() };
    assert_eq!(listed(p), [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11], "{text}");
    assert_eq!(listed(c), [3, 7], "{text}");
    let (ext_pipe, a, b) = (
        pipe_id_in(&of(p, 0).1),
        pipe_id_in(&of(p, 4).1),
        pipe_id_in(&of(p, 5).1),
    );
    let want = [
        ((p, 0), format!("read end of pipe {ext_pipe}, 3 B pending")),
        ((p, 3), format!("file {}", shared.display())),
        (
            (p, 4),
            format!("write end of pipe {a}, 120 B pending [cloexec]"),
        ),
        (
            (p, 5),
            format!("read end of pipe {b}, 14 B pending, packet mode"),
        ),
        (
            (p, 6),
            format!("write end of pipe {b}, 14 B pending, packet mode"),
        ),
        ((c, 3), format!("file {}", shared.display())),
        (
            (c, 7),
            format!("read end of pipe {a}, 120 B pending [cloexec]"),
        ),
    ];
    for ((pid, fd), what) in &want {
        assert_eq!(&of(*pid, *fd).1, what, "pid {pid} fd {fd}");
    }
    // One open file for the fd 3 of both; the child's read end is another than the
    // parent's write end.
    let shared_file = of(p, 3).0;
    assert_eq!(of(c, 3).0, shared_file);
    assert_ne!(of(c, 7).0, of(p, 4).0);

    // Sharing across processes: only the file opened before the fork.
    assert_eq!(
        section(&text, "open files shared across processes"),
        [format!("  file {shared_file}: pid {p} fd 3, pid {c} fd 3")]
    );

    // External ends: fd 0 (its writer is this test) and fd 1 (its reader is this test).
    let external = text
        .lines()
        .position(|l| l.starts_with("external descriptors ("))
        .unwrap_or_else(|| panic!("no external section in:\n{text}"));
    let external: Vec<&str> = text
        .lines()
        .skip(external + 1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(external.len(), 2, "{external:?}");
    assert_eq!(
        external[0],
        format!("  pid {p} fd 0: read end of pipe:[{ext_inode}] (its writer is outside the tree)")
    );
    assert!(
        external[1].starts_with(&format!("  pid {p} fd 1: write end of pipe:[")),
        "{external:?}"
    );

    // The pipe graph, per pipe.
    let pipe_section = |id: u64| {
        let head = text
            .lines()
            .find(|l| l.starts_with(&format!("pipe {id} (")))
            .unwrap_or_else(|| panic!("no pipe {id} in:\n{text}"));
        section(&text, head)
    };
    let ext = pipe_section(ext_pipe);
    for want in [
        "  pending:      3 B (in pipes-data.img at offset 0)".to_owned(),
        format!("  readers:      pid {p} fd 0"),
        "  writers:      outside the tree (no process of the tree holds a write end)".to_owned(),
    ] {
        assert!(ext.contains(&want.as_str()), "{want:?} not in {ext:#?}");
    }
    let pa = pipe_section(a);
    for want in [
        format!("  readers:      pid {c} fd 7"),
        format!("  writers:      pid {p} fd 4"),
        "  packet mode:  no".to_owned(),
    ] {
        assert!(pa.contains(&want.as_str()), "{want:?} not in {pa:#?}");
    }
    assert!(pa.iter().any(|l| l.starts_with("  pending:      120 B (")));
    let pb = pipe_section(b);
    for want in [
        format!("  readers:      pid {p} fd 5"),
        format!("  writers:      pid {p} fd 6"),
        "  packet mode:  yes, 2 packet(s) [4, 10]".to_owned(),
    ] {
        assert!(pb.contains(&want.as_str()), "{want:?} not in {pb:#?}");
    }
    // Each end's line is aligned with the labels above it, whatever its id's width; ids
    // reach two digits here (12 open files, 10 of them pipe ends).
    let end_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pipe "))
        .flat_map(|head| section(&text, head))
        .filter(|l| l.starts_with("  file "))
        .collect();
    assert_eq!(end_lines.len(), 10, "{end_lines:#?}");
    let mut two_digits = false;
    for l in &end_lines {
        let label = l[2..].split(':').next().unwrap();
        two_digits |= label.len() > "file 9".len();
        assert!(
            l[16..].starts_with("read end, ") || l[16..].starts_with("write end, "),
            "{l:?} not aligned at column 16"
        );
    }
    assert!(two_digits, "no end with a two-digit id in:\n{text}");

    // --json: the raw records, and the same derived views.
    let out = show(&img, true);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["processes"].as_array().unwrap().len(), 2);
    assert_eq!(v["pipes"].as_array().unwrap().len(), 6);
    assert_eq!(v["files"].as_array().unwrap().len(), 12);
    assert_eq!(
        v["shared_files"],
        serde_json::json!({ shared_file.to_string(): [{"pid": p, "fd": 3}, {"pid": c, "fd": 3}] })
    );
    let graph = v["pipe_graph"].as_array().unwrap();
    assert_eq!(graph.len(), 6);
    let node = |id: u64| graph.iter().find(|n| n["id"] == id).unwrap();
    let pipes = v["pipes"].as_array().unwrap();
    let ext_node = node(ext_pipe);
    assert_eq!(ext_node["inode"], ext_inode);
    assert_eq!(ext_node["bytes_pending"], 3);
    assert_eq!(
        ext_node["readers"],
        serde_json::json!([{"pid": p, "fd": 0}])
    );
    assert_eq!(ext_node["writers"], serde_json::json!([]));
    assert_eq!(ext_node["external_writer"], true);
    assert_eq!(ext_node["external_reader"], false);
    let a_node = node(a);
    assert_eq!(a_node["bytes_pending"], 120);
    assert_eq!(a_node["packet_mode"], false);
    assert_eq!(a_node["readers"], serde_json::json!([{"pid": c, "fd": 7}]));
    assert_eq!(a_node["writers"], serde_json::json!([{"pid": p, "fd": 4}]));
    assert_eq!(a_node["external_writer"], false);
    assert_eq!(a_node["external_reader"], false);
    let b_node = node(b);
    assert_eq!(b_node["bytes_pending"], 14);
    assert_eq!(b_node["packet_mode"], true);
    assert_eq!(b_node["packets"], serde_json::json!([4, 10]));
    assert_eq!(b_node["readers"], serde_json::json!([{"pid": p, "fd": 5}]));
    assert_eq!(b_node["writers"], serde_json::json!([{"pid": p, "fd": 6}]));
    // Each node agrees with its raw record.
    for n in graph {
        let raw = pipes.iter().find(|r| r["id"] == n["id"]).unwrap();
        assert_eq!(n["inode"], raw["inode"]);
        assert_eq!(n["external_reader"], raw["external_reader"]);
        assert_eq!(n["external_writer"], raw["external_writer"]);
    }
}

// ---------------------------------------------------------------------------------------
// One process holding a descriptor of each event-loop kind (tests/progs/showkinds.c).

#[test]
fn event_loop_descriptors_show_targets_timer_mask_watch_position_and_closed_writer() {
    if !common::capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = common::build("showkinds", tmp.path()) else {
        return;
    };
    let watched = tmp.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    // Its fd 0: a pipe the test never writes, so that it blocks reading it.
    let (in_r, _in_w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg(&watched)
        .stdin(std::process::Stdio::from(in_r))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = common::only_stdio(&mut cmd).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id() as i32;
    let _tree = Tree {
        parent: child,
        pids: vec![pid],
    };
    let img = tmp.path().join("img");
    common::dump(pid, &img, &["--leave-running"]);

    let shown = show(&img, false);
    let text = String::from_utf8(shown.stdout).unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let fds = fd_lines(&text);
    let of = |fd: i32| {
        fds.get(&(pid, fd))
            .unwrap_or_else(|| panic!("no pid {pid} fd {fd} in:\n{text}"))
    };
    let listed: Vec<i32> = fds.keys().map(|k| k.1).collect();
    assert_eq!(listed, [0, 1, 2, 3, 4, 5, 6, 7, 8], "{text}");
    let (timer, pipe_end) = (of(4).0, of(8).0);
    let pipe = pipe_id_in(&of(8).1);
    // The kernel adds EPOLLERR and EPOLLHUP to every registration.
    assert_eq!(
        of(3).1,
        format!(
            "epoll, targets: fd 4 (open file {timer}) IN|ERR|HUP data 0x11; fd 8 (open file \
             {pipe_end}) IN|ERR|HUP|ET data 0x22 [cloexec]"
        )
    );
    // The time left depends on when the dump ran: at most the 1000 s it was armed with.
    let timerfd = &of(4).1;
    let left = timerfd
        .strip_prefix("timerfd CLOCK_MONOTONIC, every 1.5s, next expiry in ")
        .and_then(|rest| rest.strip_suffix("s, 0 expirations unread [cloexec]"))
        .unwrap_or_else(|| panic!("timerfd line {timerfd:?}"));
    let left: f64 = left.parse().unwrap();
    assert!(left > 900.0 && left <= 1000.0, "{timerfd}");
    assert_eq!(of(5).1, "signalfd SIGUSR1 SIGUSR2 [cloexec]");
    assert_eq!(
        of(6).1,
        format!(
            "inotify, watches: wd 1 {} for IN_CREATE|IN_DELETE [cloexec]",
            watched.display()
        )
    );
    assert_eq!(
        of(7).1,
        format!("proc file /proc/{pid}/status (its own process) [cloexec]")
    );
    assert_eq!(
        of(8).1,
        format!("read end of pipe {pipe}, 4 B pending, writer closed")
    );

    // The /proc file's position, and the other kinds' flags, where every open file that
    // is not a pipe end is listed.
    let others = section(&text, "other open files");
    for (fd, what, flags) in [
        (3, of(3).1.as_str(), "O_RDWR"),
        (4, timerfd, "O_RDWR"),
        (5, of(5).1.as_str(), "O_RDWR"),
        (6, of(6).1.as_str(), "O_RDONLY"),
    ] {
        let what = what.strip_suffix(" [cloexec]").unwrap();
        let want = format!(
            "  file {}: {what}, {flags}, pos 0, held by pid {pid} fd {fd}",
            of(fd).0
        );
        assert!(
            others.contains(&want.as_str()),
            "{want:?} not in {others:#?}"
        );
    }
    let want = format!(
        "  file {}: proc file /proc/{pid}/status (its own process), O_RDONLY|O_LARGEFILE, \
         pos 10, held by pid {pid} fd 7",
        of(7).0
    );
    assert!(
        others.contains(&want.as_str()),
        "{want:?} not in {others:#?}"
    );
    // The pipe with no writer: its bytes, and no writer anywhere.
    let head = format!("pipe {pipe} (pipe:[");
    let head = text
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no pipe {pipe} in:\n{text}"));
    let pipe_lines = section(&text, head);
    for want in [
        "  preview:".to_owned(),
        "    \"left\"".to_owned(),
        format!("  readers:      pid {pid} fd 8"),
        "  writers:      none (closed: no process anywhere holds a write end)".to_owned(),
        format!("  file {pipe_end}:       read end, O_RDONLY, held by pid {pid} fd 8"),
    ] {
        assert!(
            pipe_lines.contains(&want.as_str()),
            "{want:?} not in {pipe_lines:#?}"
        );
    }

    // --json: one record of each kind, with what the lines above say.
    let shown = show(&img, true);
    assert!(shown.status.success());
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let files = v["files"].as_array().unwrap();
    let kind = |name: &str| -> Vec<&serde_json::Value> {
        files.iter().filter_map(|f| f["kind"].get(name)).collect()
    };
    let epoll = kind("Epoll");
    assert_eq!(epoll.len(), 1, "{files:#?}");
    let mut targets: Vec<(i64, u64, u64)> = epoll[0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tfd"].as_i64().unwrap(),
                t["file_id"].as_u64().unwrap(),
                t["data"].as_u64().unwrap(),
            )
        })
        .collect();
    targets.sort();
    assert_eq!(targets, [(4, timer, 0x11), (8, pipe_end, 0x22)]);
    let timerfd = kind("Timerfd");
    assert_eq!(timerfd.len(), 1, "{files:#?}");
    assert_eq!(timerfd[0]["clockid"], 1);
    assert_eq!(timerfd[0]["interval_sec"], 1);
    assert_eq!(timerfd[0]["interval_nsec"], 500_000_000);
    assert!(timerfd[0]["value_sec"].as_u64().unwrap() <= 1000);
    assert_eq!(
        kind("Signalfd"),
        [&serde_json::json!({ "sigmask": (1u64 << 9) | (1 << 11) })]
    );
    let inotify = kind("Inotify");
    assert_eq!(inotify.len(), 1, "{files:#?}");
    let watches = inotify[0]["watches"].as_array().unwrap();
    assert_eq!(watches.len(), 1);
    assert_eq!(watches[0]["wd"], 1);
    assert_eq!(watches[0]["mask"], 0x300);
    assert_eq!(watches[0]["path"], watched.to_str().unwrap());
    let proc_file = kind("PseudoFile");
    assert_eq!(proc_file.len(), 1, "{files:#?}");
    assert_eq!(proc_file[0]["path"], format!("/proc/{pid}/status"));
    assert_eq!(proc_file[0]["proc_pid"], pid);
    let record = files.iter().find(|f| f["id"] == of(7).0).unwrap();
    assert_eq!(record["pos"], 10);
    let pipe_record = v["pipes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == pipe)
        .unwrap();
    assert_eq!(pipe_record["writer_closed"], true);
    assert_eq!(pipe_record["data"]["length"], 4);
    assert!(
        kind("Pipe").iter().any(|p| p["pipe_id"] == pipe),
        "{files:#?}"
    );
}
