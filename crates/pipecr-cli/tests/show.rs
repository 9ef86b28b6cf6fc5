//! `pipecr show` on images written by `pipecr::pipe::save`, intact and damaged.

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
