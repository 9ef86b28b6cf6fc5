//! `pipecr restore` on a damaged or mismatched image: each case is one clear line naming
//! the problem, a non-zero exit, and nothing left running (no process with the saved
//! PID, no stray child).
//!
//! Every test dumps tests/progs/counter.c (driven through FIFOs, as in
//! restore_process.rs), kills the original, damages the image and restores.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pipecr_image::proto;

use common::{KillOnDrop, PIPECR};

/// A dumped counter whose original is gone.
struct Dumped {
    _dir: tempfile::TempDir,
    root: PathBuf,
    img: PathBuf,
    pid: u32,
}

/// Builds the counter, takes it three steps, dumps it and kills it.
fn dumped() -> Option<Dumped> {
    if !common::capable() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let exe = common::build("counter", &root)?;
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, &root);
    let pid = prog.id();
    let guard = KillOnDrop(vec![pid as i32]);
    for _ in 0..3 {
        ctl.write_all(b"n").unwrap();
        let mut b = [0u8; 1];
        ack.read_exact(&mut b).unwrap();
    }
    let img = root.join("img");
    common::dump(pid as i32, &img, &["--leave-running"]);
    drop(guard);
    prog.wait().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    Some(Dumped {
        _dir: dir,
        root,
        img,
        pid,
    })
}

/// Processes running this test's counter executable: a restore that failed half-way
/// must leave none (tests run in parallel, so our own children are not a measure).
fn running(exe: &Path) -> Vec<String> {
    let deleted = format!("{} (deleted)", exe.display());
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(link) = std::fs::read_link(e.path().join("exe"))
            && (link == exe || link.as_os_str() == deleted.as_str())
        {
            found.push(name);
        }
    }
    found
}

/// Restores `d`, expecting a refusal: returns the error line after checking that the
/// exit is non-zero, the message is one line holding every `wanted` piece, and nothing
/// runs with the saved PID.
fn refused(d: &Dumped, wanted: &[&str]) -> String {
    let out = Command::new(PIPECR)
        .args(["restore", "-D"])
        .arg(&d.img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _guard = KillOnDrop(vec![d.pid as i32]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "restore succeeded: {err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Handlers are saved by default, so nothing but the error is said.
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    for w in wanted {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert!(
        !Path::new(&format!("/proc/{}", d.pid)).exists(),
        "pid {} runs after: {err}",
        d.pid
    );
    let stray = running(&d.root.join("counter"));
    assert!(stray.is_empty(), "stray processes {stray:?}: {err}");
    eprintln!("refused as expected: {err}");
    err
}

/// Decodes the records of metadata file `name`.
fn records<M: prost::Message + Default>(img: &Path, name: &str) -> Vec<M> {
    let bytes = std::fs::read(img.join(name)).unwrap();
    let file = pipecr_image::decode_record_file(name, &bytes).unwrap();
    file.records
        .iter()
        .map(|r| M::decode(*r).unwrap())
        .collect()
}

/// Rewrites the inventory with `edit` applied (a valid, consistent inventory.img).
fn edit_inventory(img: &Path, edit: impl FnOnce(&mut proto::Inventory)) {
    let mut inv: Vec<proto::Inventory> = records(img, pipecr_image::INVENTORY);
    assert_eq!(inv.len(), 1);
    edit(&mut inv[0]);
    std::fs::write(
        img.join(pipecr_image::INVENTORY),
        pipecr_image::encode_record_file(&inv),
    )
    .unwrap();
}

/// Replaces metadata file `name` with `bytes` and lists the new length and CRC32C in
/// the inventory, so only the content is wrong, not the file's checksum.
fn replace_listed(img: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(img.join(name), bytes).unwrap();
    edit_inventory(img, |inv| {
        let d = inv.files.iter_mut().find(|d| d.name == name).unwrap();
        d.length = bytes.len() as u64;
        d.crc32c = crc32c::crc32c(bytes);
    });
}

#[test]
fn another_architecture_is_refused() {
    let Some(d) = dumped() else { return };
    edit_inventory(&d.img, |inv| inv.arch = "aarch64".into());
    refused(&d, &["image was taken on aarch64; this machine is x86_64"]);
}

#[test]
fn a_missing_file_is_refused_naming_it() {
    let Some(d) = dumped() else { return };
    let exe = d.root.join("counter");
    std::fs::remove_file(&exe).unwrap();
    let err = refused(&d, &[&format!("executable {}: ENOENT", exe.display())]);
    // Found before anything was created, not by the new process failing to map it.
    assert!(!err.contains("in the new process"), "{err}");
}

#[test]
fn a_missing_mapped_file_is_refused_naming_it() {
    let Some(d) = dumped() else { return };
    let mut mms: Vec<proto::Mm> = records(&d.img, pipecr_image::MM);
    let exe = d.root.join("counter").to_string_lossy().into_owned();
    let lib = mms[0]
        .vmas
        .iter_mut()
        .find(|v| v.kind == proto::VmaKind::FilePrivate as i32 && v.path != exe)
        .expect("a mapped library");
    lib.path = "/nonexistent/libgone.so.6".into();
    replace_listed(
        &d.img,
        pipecr_image::MM,
        &pipecr_image::encode_record_file(&mms),
    );
    refused(
        &d,
        &["mapped file /nonexistent/libgone.so.6: ENOENT: No such file or directory"],
    );
}

#[test]
fn cpu_state_this_machine_lacks_is_refused() {
    let Some(d) = dumped() else { return };
    let mut cores: Vec<proto::Core> = records(&d.img, pipecr_image::CORE);
    // XSTATE_BV, the XSAVE header's first word (offset 512): claim component 40, which
    // no CPU defines yet.
    let xsave = &mut cores[0].threads[0].xsave;
    assert!(xsave.len() >= 576, "an XSAVE area of {} bytes", xsave.len());
    let mut bv = u64::from_le_bytes(xsave[512..520].try_into().unwrap());
    bv |= 1 << 40;
    xsave[512..520].copy_from_slice(&bv.to_le_bytes());
    replace_listed(
        &d.img,
        pipecr_image::CORE,
        &pipecr_image::encode_record_file(&cores),
    );
    refused(
        &d,
        &[
            &format!("pid {}: thread {}", d.pid, d.pid),
            "uses CPU state this machine does not enable: feature bit 40",
        ],
    );
}

#[test]
fn a_changed_file_is_refused_naming_it() {
    let Some(d) = dumped() else { return };
    let out = d.root.join("out");
    OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"99\n")
        .unwrap();
    refused(&d, &[&out.to_string_lossy(), "changed since the dump"]);
}

#[test]
fn a_damaged_pages_file_is_refused_before_anything_runs() {
    let Some(d) = dumped() else { return };
    let path = d.img.join(pipecr_image::PAGES);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    refused(&d, &["pages.img"]);
}

#[test]
fn a_truncated_core_file_is_refused_naming_it() {
    let Some(d) = dumped() else { return };
    let path = d.img.join(pipecr_image::CORE);
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    refused(&d, &["core.img"]);
}

#[test]
fn an_undecodable_core_record_is_refused_naming_it() {
    let Some(d) = dumped() else { return };
    // A well-framed record (its CRC right, listed in the inventory) whose payload is not
    // a Core message (field 1, `pid`, with the wrong wire type).
    let mut bytes = pipecr_image::encode_record_file(&[proto::Core::default()]);
    let garbage = [0x0a_u8, 0x7f, 0x01];
    let body = bytes.len() - 8;
    bytes.truncate(body);
    bytes.extend_from_slice(&(garbage.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&garbage).to_le_bytes());
    bytes.extend_from_slice(&garbage);
    replace_listed(&d.img, pipecr_image::CORE, &bytes);
    refused(&d, &["core.img", "record 0"]);
}

#[test]
fn a_truncated_mm_record_is_refused_naming_it() {
    let Some(d) = dumped() else { return };
    let mms: Vec<proto::Mm> = records(&d.img, pipecr_image::MM);
    let mut bytes = pipecr_image::encode_record_file(&mms);
    bytes.truncate(bytes.len() - 5);
    replace_listed(&d.img, pipecr_image::MM, &bytes);
    refused(&d, &["mm.img", "record 0"]);
}

#[test]
fn an_impossible_pipe_is_refused_before_anything_runs() {
    let Some(d) = dumped() else { return };
    // Well framed and listed with the right checksum, but no kernel pipe holds 5000
    // bytes: only the check of the record's meaning can catch it.
    let mut pipes: Vec<proto::Pipe> = records(&d.img, pipecr_image::PIPES);
    assert!(
        !pipes.is_empty(),
        "the counter's FIFOs are pipes of the image"
    );
    pipes[0].capacity = 5000;
    replace_listed(
        &d.img,
        pipecr_image::PIPES,
        &pipecr_image::encode_record_file(&pipes),
    );
    let err = refused(&d, &[]);
    let want = format!(
        "error: cannot restore pid {}; nothing was restored: image {}: pipes.img record 0: \
         capacity 5000 is not a power-of-two number of pages",
        d.pid,
        d.img.display()
    );
    assert_eq!(err.trim_end(), want);
}
