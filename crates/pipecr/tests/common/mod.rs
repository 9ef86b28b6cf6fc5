//! Helpers shared by the library's integration tests.
#![allow(dead_code)]

use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::process::Command;

use rustix::fs::OFlags;
use rustix::io::Errno;

/// Compiles the C program `source` (`cc -O1`, then `extra` arguments) into cargo's
/// scratch directory for tests as `name`, and returns its path. It is compiled under a
/// unique name and renamed into place, so test binaries running at once never see half a
/// binary. Callers keep the path in a `OnceLock` to build once per test binary.
pub fn build_c(name: &str, source: &str, extra: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let unique = format!("{name}-{}", std::process::id());
    let src = dir.join(format!("{unique}.c"));
    std::fs::write(&src, source).unwrap();
    let tmp = dir.join(&unique);
    let out = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(extra)
        .output()
        .expect("cc (gcc) must be installed");
    let _ = std::fs::remove_file(&src);
    assert!(
        out.status.success(),
        "cc {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = dir.join(name);
    std::fs::rename(&tmp, &exe).unwrap();
    exe
}

/// Reads everything the pipe behind `fd` holds now, through a fresh non-blocking reader
/// (`fd` itself may be a write end); returns the bytes and the length of each read (one
/// packet per read in packet mode).
pub fn drain(fd: BorrowedFd<'_>) -> (Vec<u8>, Vec<usize>) {
    let reader = pipecr::sys::fd::reopen(fd, OFlags::RDONLY | OFlags::NONBLOCK).unwrap();
    let mut out = Vec::new();
    let mut reads = Vec::new();
    let mut buf = vec![0u8; 2 << 20];
    loop {
        match rustix::io::read(&reader, &mut buf) {
            Ok(0) | Err(Errno::AGAIN) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                reads.push(n);
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    (out, reads)
}
