//! Scenarios about descriptors rather than files: close-on-exec set by `dup`,
//! `F_DUPFD_CLOEXEC`, `O_CLOEXEC` and `dup3`, and a descriptor table shared with
//! `CLONE_FILES`.

use std::os::fd::RawFd;

use rustix::fs::OFlags;
use rustix::pipe::PipeFlags;

use crate::common::{Checker, Env, Scenario, at, dup_to, pattern, place, write_all};

/// (b) dup versus `F_DUPFD_CLOEXEC` versus `O_CLOEXEC`, on two pipes.
///
/// Pipe 1 made with `O_CLOEXEC`: read end 10 and write end 11 (both close-on-exec);
/// 12 = dup(10) (no close-on-exec); 13 = fcntl(11, F_DUPFD_CLOEXEC) (close-on-exec).
/// Pipe 2 made without: 14 and 15 (neither); 16 = dup3(14, O_CLOEXEC).
pub struct Cloexec;

/// Descriptor and whether it is close-on-exec.
const CLOEXEC_FDS: [(RawFd, bool); 7] = [
    (10, true),
    (11, true),
    (12, false),
    (13, true),
    (14, false),
    (15, false),
    (16, true),
];

impl Scenario for Cloexec {
    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        write_all(&w, &pattern(2, 1234))?;
        place(r, 10, true)?;
        place(w, 11, true)?;
        dup_to(10, 12, false)?;
        let copy = rustix::io::fcntl_dupfd_cloexec(at(11), 13)?;
        place(copy, 13, true)?;
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(22, 99))?;
        place(r, 14, false)?;
        place(w, 15, false)?;
        dup_to(14, 16, true)?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        CLOEXEC_FDS.iter().map(|f| f.0).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for (fd, cloexec) in CLOEXEC_FDS {
            c.cloexec(fd, cloexec);
        }
        for fd in [10, 12, 14, 16] {
            c.flags(fd, OFlags::RDONLY);
        }
        for fd in [11, 13, 15] {
            c.flags(fd, OFlags::WRONLY);
        }
        c.shared(10, 12, true);
        c.shared(11, 13, true);
        c.shared(14, 16, true);
        c.shared(10, 14, false);
        c.same_object(10, 11);
        c.same_object(14, 15);
        if !c.live() {
            // One open file behind two descriptors: a flag set through one shows on the
            // other, and not on another pipe's end.
            let r = rustix::fs::fcntl_setfl(at(10), OFlags::NONBLOCK);
            c.ok("fd 10: fcntl(F_SETFL)", r);
            c.flags(12, OFlags::RDONLY | OFlags::NONBLOCK);
            c.flags(14, OFlags::RDONLY);
            let r = rustix::fs::fcntl_setfl(at(10), OFlags::empty());
            c.ok("fd 10: fcntl(F_SETFL)", r);
        }
        c.pipe_bytes(10, &pattern(2, 1234));
        c.pipe_bytes(14, &pattern(22, 99));
    }
}

/// A descriptor table shared with `clone(CLONE_FILES)`: the root makes pipe 10/11 (1000
/// bytes pending), its child, in the same table, makes pipe 12/13 (2000 bytes pending,
/// close-on-exec). Both processes see all four descriptors.
pub struct CloneFiles;

impl Scenario for CloneFiles {
    fn children(&self) -> usize {
        1
    }

    fn clone_files(&self) -> bool {
        true
    }

    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(12, 1000))?;
        place(r, 10, false)?;
        place(w, 11, false)?;
        Ok(())
    }

    fn build(&self, role: usize, _env: &Env) -> anyhow::Result<()> {
        if role == 1 {
            let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
            write_all(&w, &pattern(13, 2000))?;
            place(r, 12, true)?;
            place(w, 13, true)?;
        }
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        vec![10, 11, 12, 13]
    }

    fn check(&self, role: usize, c: &mut Checker) {
        c.stdio();
        // In the original tree the table is shared: the root's checks open descriptors
        // of their own in it for a moment, so only the root checks the numbers.
        if !c.live() || role == 0 {
            c.fd_set(&self.fds(role));
        }
        for (fd, flags, cloexec) in [
            (10, OFlags::RDONLY, false),
            (11, OFlags::WRONLY, false),
            (12, OFlags::RDONLY, true),
            (13, OFlags::WRONLY, true),
        ] {
            c.flags(fd, flags);
            c.cloexec(fd, cloexec);
        }
        // In the original tree both processes see one table: the root reads the pipes.
        if !c.live() || role == 0 {
            c.pipe_bytes(10, &pattern(12, 1000));
            c.pipe_bytes(12, &pattern(13, 2000));
        }
    }
}
