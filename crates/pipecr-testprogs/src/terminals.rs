//! Terminals and the random device: a pseudo-terminal slave opened twice, a dup of it,
//! and `/dev/random`.

use std::os::fd::RawFd;

use anyhow::bail;
use rustix::fs::OFlags;

use crate::common::{Checker, Env, Scenario, at, dup_to, open, place, write_all};

/// (l) A pseudo-terminal slave whose master the harness holds. Argument: the slave's
/// path (`/dev/pts/N`). pipecr saves a terminal by path and cannot save a master (opening
/// `/dev/ptmx` again would make an unrelated terminal), so the master stays outside the
/// tree, where it keeps the terminal alive for the rebuild.
///
/// fd 10: the slave, read-write, no close-on-exec; fd 11: a second open of it,
/// write-only and non-blocking, close-on-exec; fd 12: a dup of 10; fd 13: `/dev/random`,
/// read-only and non-blocking. The checks write a mark through 10 and 11 ([`mark`]),
/// which the harness reads from the master: proof that the descriptors lead to its
/// terminal.
pub struct Terminal;

/// What the checks write through the slave at `fd`, by mode: the harness reads these
/// bytes from the master (no newline, so output processing leaves them as they are).
pub fn mark(live: bool, fd: RawFd) -> String {
    let mode = if live { "live" } else { "rebuilt" };
    format!("{mode}-fd{fd} ")
}

/// `/dev/random`: `MEM_MAJOR` 1, minor 8.
const RANDOM: (u32, u32) = (1, 8);

impl Scenario for Terminal {
    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        let [slave] = env.args.as_slice() else {
            bail!(
                "terminal needs one argument: the path of a pty slave whose master the harness holds"
            );
        };
        // O_NOCTTY: which terminal controls a session is not what this scenario is about.
        place(open(slave, OFlags::RDWR | OFlags::NOCTTY)?, 10, false)?;
        place(
            open(slave, OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?,
            11,
            true,
        )?;
        dup_to(10, 12, false)?;
        place(
            open("/dev/random", OFlags::RDONLY | OFlags::NONBLOCK)?,
            13,
            false,
        )?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        vec![10, 11, 12, 13]
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for (fd, cloexec) in [(10, false), (11, true), (12, false), (13, false)] {
            c.cloexec(fd, cloexec);
        }
        c.flags(10, OFlags::RDWR);
        c.flags(11, OFlags::WRONLY | OFlags::NONBLOCK);
        c.flags(12, OFlags::RDWR);
        c.flags(13, OFlags::RDONLY | OFlags::NONBLOCK);
        c.shared(10, 12, true);
        c.shared(10, 11, false);

        // The slave: a terminal, the same /dev/pts/N by path and by device number.
        let path = c.link(10);
        for fd in [10, 11, 12] {
            c.eq(
                format_args!("fd {fd}: isatty"),
                rustix::termios::isatty(at(fd)),
                true,
            );
            if let (Some(link), Some(path)) = (c.link(fd), &path) {
                c.eq(format_args!("fd {fd}: link"), &link, path);
            }
        }
        if let Some(path) = &path {
            if !path.starts_with("/dev/pts/") {
                c.fail(format!("fd 10: leads to {path}, expected /dev/pts/N"));
            }
            let by_path = c.ok(format_args!("stat {path}"), rustix::fs::stat(path));
            let by_fd = c.ok("fd 10: fstat", rustix::fs::fstat(at(10)));
            if let (Some(p), Some(f)) = (by_path, by_fd) {
                c.eq("fd 10: device of the terminal", f.st_rdev, p.st_rdev);
            }
        }
        for fd in [10, 11] {
            let mark = mark(c.live(), fd);
            c.ok(
                format_args!("fd {fd}: write to the terminal"),
                write_all(at(fd), mark.as_bytes()),
            );
        }

        // /dev/random: by path and device, not a terminal.
        if let Some(link) = c.link(13) {
            c.eq("fd 13: link", link.as_str(), "/dev/random");
        }
        if let Some(st) = c.ok("fd 13: fstat", rustix::fs::fstat(at(13))) {
            c.eq(
                "fd 13: device",
                (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)),
                RANDOM,
            );
        }
        c.eq("fd 13: isatty", rustix::termios::isatty(at(13)), false);
        let mut buf = [0u8; 16];
        if let Some(n) = c.ok("fd 13: read", rustix::io::read(at(13), &mut buf)) {
            c.eq("fd 13: random bytes read", n, buf.len());
        }
    }
}
