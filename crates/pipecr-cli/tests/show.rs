//! `pipecr show` on images written by `pipecr::pipe::save`, intact and damaged, and on a
//! tree image of a live process (its state in `core.img`, its memory in `mm.img`).

use std::os::fd::AsFd;
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
