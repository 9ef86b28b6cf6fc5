//! Scenarios about files with a position: offsets shared across fork versus independent
//! opens, `O_APPEND`, and the other kinds of the list (eventfd, memfd, an
//! unlinked file, a directory, character devices).

use std::os::fd::RawFd;

use anyhow::Context as _;
use rustix::fs::{OFlags, SeekFrom};

use crate::common::{Checker, Env, Scenario, at, dup_to, open, pattern, place, write_all};

/// Creates `path` holding `data`.
fn create_file(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("write {}", path.display()))
}

fn seek(fd: RawFd, to: u64) -> anyhow::Result<()> {
    rustix::fs::seek(at(fd), SeekFrom::Start(to)).with_context(|| format!("lseek fd {fd}"))?;
    Ok(())
}

/// Size of the file `offsets` works on.
const OFFSETS_LEN: usize = 65536;

/// (a) Offsets shared across fork versus independent opens of one file.
///
/// Root: fd 10 `data` read-write at 150 (shared with the child's fd 10, which moved it
/// there after the fork), fd 13 a dup of 10, fd 11 an independent read-only open at 200.
/// Child 1: fd 10 (inherited), fd 12 its own read-only open at 300.
pub struct Offsets;

impl Scenario for Offsets {
    fn children(&self) -> usize {
        1
    }

    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        let path = env.dir.join("data");
        create_file(&path, &pattern(1, OFFSETS_LEN))?;
        place(open(&path, OFlags::RDWR)?, 10, false)?;
        seek(10, 100)?;
        place(open(&path, OFlags::RDONLY)?, 11, false)?;
        seek(11, 200)?;
        dup_to(10, 13, false)?;
        Ok(())
    }

    fn build(&self, role: usize, env: &Env) -> anyhow::Result<()> {
        if role == 1 {
            // Moves the root's offset too: the open file is shared across the fork.
            seek(10, 150)?;
            place(open(env.dir.join("data"), OFlags::RDONLY)?, 12, false)?;
            seek(12, 300)?;
        }
        Ok(())
    }

    fn fds(&self, role: usize) -> Vec<RawFd> {
        if role == 0 {
            vec![10, 11, 13]
        } else {
            vec![10, 12]
        }
    }

    fn check(&self, role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(role));
        let data = pattern(1, OFFSETS_LEN);
        let other = if role == 0 { 11 } else { 12 };
        let other_pos = if role == 0 { 200 } else { 300 };
        c.flags(10, OFlags::RDWR);
        c.flags(other, OFlags::RDONLY);
        c.pos(10, 150);
        c.pos(other, other_pos);
        c.shared(10, other, false);
        c.same_object(10, other);
        for fd in self.fds(role) {
            c.cloexec(fd, false);
            c.contents(fd, &data);
            if let Some(link) = c.link(fd) {
                if !link.ends_with("/data") {
                    c.fail(format!("fd {fd}: leads to {link}, expected .../data"));
                }
            }
        }
        if role == 0 {
            c.flags(13, OFlags::RDWR);
            c.pos(13, 150);
            c.shared(10, 13, true);
        }
        // Moving offsets in the original tree would disturb the other process that
        // shares fd 10; the rebuilt process is alone with its copy.
        if !c.live() {
            let moved = rustix::fs::seek(at(10), SeekFrom::Start(77));
            c.ok("fd 10: lseek", moved);
            c.pos(other, other_pos);
            if role == 0 {
                c.pos(13, 77);
            }
            let back = rustix::fs::seek(at(10), SeekFrom::Start(150));
            c.ok("fd 10: lseek", back);
        }
    }
}

/// Size of the file `append` works on.
const APPEND_LEN: usize = 1000;

/// (c) `O_APPEND`: fd 10 write-only appending at the end, fd 11 read-write appending at
/// 0, fd 12 read-only at 10, fd 13 write-only, appending, non-blocking and close-on-exec
/// at 500. Four independent opens of one file.
pub struct Append;

const APPEND_FDS: [(RawFd, OFlags, u64, bool); 4] = [
    (
        10,
        OFlags::WRONLY.union(OFlags::APPEND),
        APPEND_LEN as u64,
        false,
    ),
    (11, OFlags::RDWR.union(OFlags::APPEND), 0, false),
    (12, OFlags::RDONLY, 10, false),
    (
        13,
        OFlags::WRONLY.union(OFlags::APPEND).union(OFlags::NONBLOCK),
        500,
        true,
    ),
];

impl Scenario for Append {
    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        let path = env.dir.join("log");
        create_file(&path, &pattern(3, APPEND_LEN))?;
        for (fd, flags, pos, cloexec) in APPEND_FDS {
            place(open(&path, flags)?, fd, cloexec)?;
            seek(fd, pos)?;
        }
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        APPEND_FDS.iter().map(|f| f.0).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for (fd, flags, pos, cloexec) in APPEND_FDS {
            c.flags(fd, flags);
            c.pos(fd, pos);
            c.cloexec(fd, cloexec);
        }
        c.contents(12, &pattern(3, APPEND_LEN));
        c.shared(10, 11, false);
        c.shared(10, 13, false);
        if !c.live() {
            // Independent opens: clearing O_APPEND on one leaves the others appending.
            let r = rustix::fs::fcntl_setfl(at(11), OFlags::empty());
            c.ok("fd 11: fcntl(F_SETFL)", r);
            c.flags(11, OFlags::RDWR);
            c.flags(10, OFlags::WRONLY | OFlags::APPEND);
        }
    }
}

/// Contents of the memfd.
const MEMFD_LEN: usize = 10000;
/// Contents of the unlinked file.
const UNLINKED_LEN: usize = 5000;

/// (i) eventfd (counter 7; semaphore with count 3, non-blocking), a sealed memfd with
/// contents, an unlinked regular file, a directory, and /dev/null, /dev/zero, /dev/full,
/// /dev/urandom.
///
/// fd 10 eventfd(7); fd 11 eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK); fd 12 memfd
/// "pipecr-test" (10000 bytes, position 123, seals GROW|SHRINK, close-on-exec); fd 13
/// unlinked file (5000 bytes, read-write, position 42); fd 14 the scratch directory;
/// fd 15 /dev/null read-write; 16 /dev/zero; 17 /dev/full write-only; 18 /dev/urandom.
pub struct MiscFiles;

/// Character devices: descriptor, path, flags, (major, minor).
const DEVICES: [(RawFd, &str, OFlags, (u32, u32)); 4] = [
    (15, "/dev/null", OFlags::RDWR, (1, 3)),
    (16, "/dev/zero", OFlags::RDONLY, (1, 5)),
    (17, "/dev/full", OFlags::WRONLY, (1, 7)),
    (18, "/dev/urandom", OFlags::RDONLY, (1, 9)),
];

impl Scenario for MiscFiles {
    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        use rustix::event::{EventfdFlags, eventfd};
        place(eventfd(7, EventfdFlags::CLOEXEC)?, 10, false)?;
        place(
            eventfd(
                3,
                EventfdFlags::CLOEXEC | EventfdFlags::SEMAPHORE | EventfdFlags::NONBLOCK,
            )?,
            11,
            false,
        )?;

        use rustix::fs::{MemfdFlags, SealFlags};
        let memfd = rustix::fs::memfd_create(
            "pipecr-test",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        write_all(&memfd, &pattern(12, MEMFD_LEN))?;
        rustix::fs::fcntl_add_seals(&memfd, SealFlags::GROW | SealFlags::SHRINK)?;
        place(memfd, 12, true)?;
        seek(12, 123)?;

        let path = env.dir.join("unlinked");
        create_file(&path, &pattern(13, UNLINKED_LEN))?;
        place(open(&path, OFlags::RDWR)?, 13, false)?;
        seek(13, 42)?;
        std::fs::remove_file(&path)?;

        create_file(&env.dir.join("marker"), b"marker")?;
        place(
            open(&env.dir, OFlags::RDONLY | OFlags::DIRECTORY)?,
            14,
            false,
        )?;
        for (fd, path, flags, _) in DEVICES {
            place(open(path, flags)?, fd, false)?;
        }
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        (10..=18).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for fd in self.fds(0) {
            c.cloexec(fd, fd == 12);
        }

        // eventfds: the link names the kind; reads give the counter (semaphore: 1 each).
        for fd in [10, 11] {
            if let Some(link) = c.link(fd) {
                c.eq(
                    format_args!("fd {fd}: link"),
                    link.as_str(),
                    "anon_inode:[eventfd]",
                );
            }
        }
        c.flags(10, OFlags::RDWR);
        c.flags(11, OFlags::RDWR | OFlags::NONBLOCK);
        let mut buf = [0u8; 8];
        if let Some(n) = c.ok("fd 10: read", rustix::io::read(at(10), &mut buf)) {
            c.eq(
                "fd 10: eventfd counter",
                (n, u64::from_ne_bytes(buf)),
                (8, 7),
            );
        }
        for i in 0..3 {
            if let Some(n) = c.ok("fd 11: read", rustix::io::read(at(11), &mut buf)) {
                c.eq(
                    format_args!("fd 11: semaphore read {i}"),
                    (n, u64::from_ne_bytes(buf)),
                    (8, 1),
                );
            }
        }
        c.eq(
            "fd 11: fourth semaphore read",
            rustix::io::read(at(11), &mut buf).err(),
            Some(rustix::io::Errno::AGAIN),
        );

        // memfd: name, contents, position, seals.
        if let Some(link) = c.link(12) {
            c.eq("fd 12: link", link.as_str(), "/memfd:pipecr-test (deleted)");
        }
        c.flags(12, OFlags::RDWR);
        c.pos(12, 123);
        c.contents(12, &pattern(12, MEMFD_LEN));
        if let Some(seals) = c.ok("fd 12: F_GET_SEALS", rustix::fs::fcntl_get_seals(at(12))) {
            use rustix::fs::SealFlags;
            c.eq("fd 12: seals", seals, SealFlags::GROW | SealFlags::SHRINK);
        }

        // The unlinked file: its bytes, position, and no name.
        c.flags(13, OFlags::RDWR);
        c.pos(13, 42);
        c.contents(13, &pattern(13, UNLINKED_LEN));
        if let Some(st) = c.ok("fd 13: fstat", rustix::fs::fstat(at(13))) {
            c.eq("fd 13: link count", st.st_nlink, 0);
        }
        if let Some(link) = c.link(13) {
            if !link.ends_with(" (deleted)") {
                c.fail(format!("fd 13: leads to {link}, expected a deleted file"));
            }
        }

        // The directory: a directory, and the scratch one (it holds `marker`).
        c.flags(14, OFlags::RDONLY);
        if let Some(st) = c.ok("fd 14: fstat", rustix::fs::fstat(at(14))) {
            c.eq(
                "fd 14: file type",
                rustix::fs::FileType::from_raw_mode(st.st_mode),
                rustix::fs::FileType::Directory,
            );
        }
        let marker = rustix::fs::statat(at(14), "marker", rustix::fs::AtFlags::empty());
        c.ok("fd 14: stat marker in the directory", marker);

        for (fd, path, flags, (major, minor)) in DEVICES {
            c.flags(fd, flags);
            if let Some(link) = c.link(fd) {
                c.eq(format_args!("fd {fd}: link"), link.as_str(), path);
            }
            if let Some(st) = c.ok(format_args!("fd {fd}: fstat"), rustix::fs::fstat(at(fd))) {
                c.eq(
                    format_args!("fd {fd}: device"),
                    (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)),
                    (major, minor),
                );
            }
        }
    }
}
