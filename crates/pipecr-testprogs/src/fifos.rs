//! FIFO scenarios: one FIFO opened read-write, read-only and write-only with data
//! pending, an empty one, and one whose name was removed.

use std::os::fd::RawFd;

use rustix::fs::{FileType, Mode, OFlags};

use crate::common::{
    Checker, DEFAULT_PIPE_SIZE, Env, Scenario, at, open, pattern, place, write_all,
};

/// (f) FIFOs in the scratch directory. `fifo1`: fd 10 read-write, fd 11 read-only
/// (blocking), fd 12 write-only non-blocking, 3000 bytes pending, three independent
/// opens. `fifo2`: fd 13 read-write non-blocking, empty. `fifo3`: fd 14 read-write,
/// 100 bytes pending, its name removed.
///
/// A FIFO is found again by its path, and a FIFO held open by the original process still
/// has that process's bytes: the harness runs `verify` after the original tree exited.
pub struct Fifos;

/// Descriptor, FIFO name, flags.
const FIFO_FDS: [(RawFd, &str, OFlags); 5] = [
    (10, "fifo1", OFlags::RDWR),
    (11, "fifo1", OFlags::RDONLY),
    (12, "fifo1", OFlags::WRONLY.union(OFlags::NONBLOCK)),
    (13, "fifo2", OFlags::RDWR.union(OFlags::NONBLOCK)),
    (14, "fifo3", OFlags::RDWR),
];

impl Scenario for Fifos {
    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        for name in ["fifo1", "fifo2", "fifo3"] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                env.dir.join(name),
                FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )?;
        }
        for (fd, name, flags) in FIFO_FDS {
            // Opened non-blocking so a one-sided open does not wait; the flags are set
            // as saved right after.
            let file = open(env.dir.join(name), flags | OFlags::NONBLOCK)?;
            rustix::fs::fcntl_setfl(&file, flags)?;
            place(file, fd, false)?;
        }
        write_all(at(12), &pattern(9, 3000))?;
        write_all(at(14), &pattern(10, 100))?;
        std::fs::remove_file(env.dir.join("fifo3"))?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        FIFO_FDS.iter().map(|f| f.0).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for (fd, name, flags) in FIFO_FDS {
            c.flags(fd, flags);
            c.cloexec(fd, false);
            c.pipe_size(fd, DEFAULT_PIPE_SIZE);
            if let Some(st) = c.ok(format_args!("fd {fd}: fstat"), rustix::fs::fstat(at(fd))) {
                c.eq(
                    format_args!("fd {fd}: file type"),
                    FileType::from_raw_mode(st.st_mode),
                    FileType::Fifo,
                );
            }
            if let Some(link) = c.link(fd) {
                // An unlinked FIFO comes back nameless, under whatever name pipecr gave
                // it on the way: only the "(deleted)" is part of the contract.
                let want = if name == "fifo3" {
                    " (deleted)".to_string()
                } else {
                    format!("/{name}")
                };
                if !link.ends_with(&want) {
                    c.fail(format!("fd {fd}: leads to {link}, expected ...{want}"));
                }
            }
        }
        if let Some(st) = c.ok("fd 14: fstat", rustix::fs::fstat(at(14))) {
            c.eq("fd 14: link count", st.st_nlink, 0);
        }
        c.shared(10, 11, false);
        c.shared(10, 12, false);
        c.shared(11, 12, false);
        c.same_object(10, 11);
        c.same_object(10, 12);
        c.pipe_bytes(11, &pattern(9, 3000));
        c.pipe_bytes(13, &[]);
        c.pipe_bytes(14, &pattern(10, 100));
    }
}
