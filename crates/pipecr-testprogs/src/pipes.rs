//! Pipe scenarios: ends opened again through `/proc`, 1 MiB pipes, 64 pipes spread over
//! nine processes, packet mode, pipes whose other end is the harness, and a tree with a
//! perf_event fd (which pipecr cannot save: the dump must fail and leave it untouched).

use std::os::fd::RawFd;

use anyhow::{Context as _, bail};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use crate::common::{
    Checker, DEFAULT_PIPE_SIZE, Env, Scenario, at, open, pattern, place, reopen, write_all,
};

/// (d) Pipe ends opened again through `/proc/self/fd` with another `O_NONBLOCK`:
/// 10 read end and 11 write end (blocking), 12 = open(/proc/self/fd/10,
/// O_RDONLY|O_NONBLOCK), 13 = open(/proc/self/fd/11, O_WRONLY|O_NONBLOCK). Four open
/// files of one pipe holding 5000 bytes.
pub struct Reopen;

impl Scenario for Reopen {
    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(4, 5000))?;
        place(r, 10, false)?;
        place(w, 11, false)?;
        place(reopen(10, OFlags::RDONLY | OFlags::NONBLOCK)?, 12, false)?;
        place(reopen(11, OFlags::WRONLY | OFlags::NONBLOCK)?, 13, false)?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        vec![10, 11, 12, 13]
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        c.flags(10, OFlags::RDONLY);
        c.flags(11, OFlags::WRONLY);
        c.flags(12, OFlags::RDONLY | OFlags::NONBLOCK);
        c.flags(13, OFlags::WRONLY | OFlags::NONBLOCK);
        for fd in 10..=13 {
            c.cloexec(fd, false);
        }
        c.shared(10, 12, false);
        c.shared(11, 13, false);
        c.same_object(10, 12);
        c.same_object(10, 13);
        c.same_object(10, 11);
        if !c.live() {
            // Separate open files: their flags are their own.
            let r = rustix::fs::fcntl_setfl(at(12), OFlags::empty());
            c.ok("fd 12: fcntl(F_SETFL)", r);
            c.flags(10, OFlags::RDONLY);
            let r = rustix::fs::fcntl_setfl(at(10), OFlags::NONBLOCK);
            c.ok("fd 10: fcntl(F_SETFL)", r);
            c.flags(12, OFlags::RDONLY);
            let r = rustix::fs::fcntl_setfl(at(10), OFlags::empty());
            c.ok("fd 10: fcntl(F_SETFL)", r);
            let r = rustix::fs::fcntl_setfl(at(12), OFlags::NONBLOCK);
            c.ok("fd 12: fcntl(F_SETFL)", r);
        }
        c.pipe_bytes(12, &pattern(4, 5000));
    }
}

/// One MiB.
const MIB: usize = 1 << 20;

/// (e) Two pipes of 1 MiB capacity: 10/11 full (1 MiB pending), 12/13 empty.
pub struct BigPipes;

impl Scenario for BigPipes {
    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        for (seed, r_at, w_at) in [(5u64, 10, 11), (6, 12, 13)] {
            let (r, w) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK)?;
            let size = rustix::pipe::fcntl_setpipe_size(&w, MIB).context("F_SETPIPE_SZ 1 MiB")?;
            if size != MIB {
                bail!("F_SETPIPE_SZ gave {size} bytes, not 1 MiB");
            }
            if seed == 5 {
                let data = pattern(seed, MIB);
                let mut off = 0;
                while off < data.len() {
                    match rustix::io::write(&w, &data[off..]) {
                        Ok(n) => off += n,
                        Err(Errno::INTR) => {}
                        Err(e) => bail!("filling the 1 MiB pipe stopped at {off} bytes: {e}"),
                    }
                }
            }
            rustix::fs::fcntl_setfl(&r, OFlags::empty())?;
            rustix::fs::fcntl_setfl(&w, OFlags::empty())?;
            place(r, r_at, false)?;
            place(w, w_at, false)?;
        }
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        vec![10, 11, 12, 13]
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for fd in 10..=13 {
            c.flags(
                fd,
                if fd % 2 == 0 {
                    OFlags::RDONLY
                } else {
                    OFlags::WRONLY
                },
            );
            c.cloexec(fd, false);
            c.pipe_size(fd, MIB);
        }
        // Full: not one more byte fits (a separate non-blocking writer keeps 11 as it is).
        if let Some(w) = c.ok(
            "fd 11: open a non-blocking writer",
            reopen(11, OFlags::WRONLY | OFlags::NONBLOCK),
        ) {
            c.eq(
                "fd 11: writing one more byte into the full pipe",
                rustix::io::write(&w, b"x").err(),
                Some(Errno::AGAIN),
            );
        }
        c.pipe_bytes(10, &pattern(5, MIB));
        c.pipe_bytes(12, &[]);
        // Still 1 MiB once empty.
        c.pipe_size(10, MIB);
    }
}

/// Number of pipes in `many-pipes`.
const MANY: usize = 64;
/// Number of children in `many-pipes`.
const MANY_CHILDREN: usize = 8;

/// (h) 64 pipes shared among the root and 8 children. Pipe k has its read end at
/// 10 + 2k and its write end at 11 + 2k, and carries 100 + 37k bytes. Its read end
/// belongs to role k mod 9, its write end to role (5k + 3) mod 9, and the root also keeps
/// the write end of every third pipe (one open file shared across two processes).
pub struct ManyPipes;

/// Which ends of pipe `k` `role` holds: (read, write).
fn many_holds(role: usize, k: usize) -> (bool, bool) {
    let n = MANY_CHILDREN + 1;
    let read = k % n == role;
    let write = (5 * k + 3) % n == role || (role == 0 && k % 3 == 0);
    (read, write)
}

fn many_data(k: usize) -> Vec<u8> {
    pattern(100 + k as u64, 100 + 37 * k)
}

impl Scenario for ManyPipes {
    fn children(&self) -> usize {
        MANY_CHILDREN
    }

    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        for k in 0..MANY {
            let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
            write_all(&w, &many_data(k))?;
            place(r, 10 + 2 * k as RawFd, false)?;
            place(w, 11 + 2 * k as RawFd, false)?;
        }
        Ok(())
    }

    fn fds(&self, role: usize) -> Vec<RawFd> {
        let mut fds = Vec::new();
        for k in 0..MANY {
            let (read, write) = many_holds(role, k);
            if read {
                fds.push(10 + 2 * k as RawFd);
            }
            if write {
                fds.push(11 + 2 * k as RawFd);
            }
        }
        fds
    }

    fn check(&self, role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(role));
        for k in 0..MANY {
            let (read, write) = many_holds(role, k);
            let (r, w) = (10 + 2 * k as RawFd, 11 + 2 * k as RawFd);
            if read {
                c.flags(r, OFlags::RDONLY);
                c.cloexec(r, false);
                c.pipe_size(r, DEFAULT_PIPE_SIZE);
            }
            if write {
                c.flags(w, OFlags::WRONLY);
                c.cloexec(w, false);
            }
            if read && write {
                c.same_object(r, w);
            }
            // In the original tree the bytes are read once, by the first process that
            // holds an end; a rebuilt process holds its own copy of every pipe it had.
            let first = (0..=MANY_CHILDREN)
                .find(|&p| {
                    let (r, w) = many_holds(p, k);
                    r || w
                })
                .unwrap_or(0);
            if (read || write) && (!c.live() || first == role) {
                c.pipe_bytes(if read { r } else { w }, &many_data(k));
            }
        }
    }
}

/// Number of packets in the big packet pipe.
const PACKETS: usize = 200;

/// Packet `i` of the big packet pipe: 1 to 4096 bytes.
pub fn packet(i: usize) -> Vec<u8> {
    pattern(1000 + i as u64, 1 + (i * 733) % 4096)
}

/// (j) Packet-mode pipes (`O_DIRECT`): 10/11 with capacity 1 MiB and 200 packets of 1
/// to 4096 bytes; 12/13 with one packet of 3000 bytes; 14/15 empty.
pub struct Packets;

impl Scenario for Packets {
    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::DIRECT)?;
        rustix::pipe::fcntl_setpipe_size(&w, MIB).context("F_SETPIPE_SZ 1 MiB")?;
        for i in 0..PACKETS {
            let p = packet(i);
            let n = rustix::io::write(&w, &p)?;
            if n != p.len() {
                bail!("packet {i}: short write {n} of {}", p.len());
            }
        }
        place(r, 10, false)?;
        place(w, 11, false)?;
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::DIRECT)?;
        write_all(&w, &pattern(7, 3000))?;
        place(r, 12, false)?;
        place(w, 13, false)?;
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::DIRECT)?;
        place(r, 14, false)?;
        place(w, 15, false)?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        (10..=15).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for fd in [10, 12, 14] {
            // O_DIRECT shows on the write end only.
            c.flags(fd, OFlags::RDONLY);
            c.flags(fd + 1, OFlags::WRONLY | OFlags::DIRECT);
            c.cloexec(fd, false);
            c.cloexec(fd + 1, false);
        }
        c.pipe_size(10, MIB);
        c.pipe_size(12, DEFAULT_PIPE_SIZE);
        let want: Vec<Vec<u8>> = (0..PACKETS).map(packet).collect();
        c.packets(10, &want);
        c.packets(12, &[pattern(7, 3000)]);
        c.packets(14, &[]);
        // Still packet mode after the rebuild: two writes, two reads.
        if !c.live() {
            for p in [&b"abc"[..], b"de"] {
                let r = rustix::io::write(at(15), p);
                c.ok("fd 15: write", r);
            }
            c.packets(14, &[b"abc".to_vec(), b"de".to_vec()]);
        }
    }
}

/// (k) Pipes whose other end is the harness. Arguments: a path to the harness's read
/// end of pipe X and a path to its write end of pipe Y (`/proc/HARNESS/fd/N`). fd 10 is
/// a write end of X (5000 bytes written by the setup), fd 11 a read end of Y (the harness
/// writes 7000 bytes of `pattern(31)` after the ready line and before the dump).
pub struct External;

/// Bytes the setup writes into X.
pub const EXTERNAL_X: (u64, usize) = (30, 5000);
/// Bytes the harness writes into Y.
pub const EXTERNAL_Y: (u64, usize) = (31, 7000);

impl Scenario for External {
    fn prepare(&self, env: &Env) -> anyhow::Result<()> {
        let [x, y] = env.args.as_slice() else {
            bail!("external needs two arguments: the harness's read end of X and write end of Y");
        };
        place(open(x, OFlags::WRONLY)?, 10, false)?;
        write_all(at(10), &pattern(EXTERNAL_X.0, EXTERNAL_X.1))?;
        place(open(y, OFlags::RDONLY)?, 11, false)?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        vec![10, 11]
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        c.flags(10, OFlags::WRONLY);
        c.flags(11, OFlags::RDONLY);
        c.cloexec(10, false);
        c.cloexec(11, false);
        c.pipe_bytes(10, &pattern(EXTERNAL_X.0, EXTERNAL_X.1));
        c.pipe_bytes(11, &pattern(EXTERNAL_Y.0, EXTERNAL_Y.1));
    }
}

/// A tree pipecr cannot save: a perf_event fd (a disabled software dummy event of the
/// process itself) at fd 10, next to the read end (11) of a pipe holding 1000 bytes
/// (write end 12). The dump must fail naming pid, fd and kind; the setup then checks that
/// nothing changed.
pub struct PerfEvent;

/// The first 64 bytes of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`).
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bit fields: disabled (bit 0), exclude_kernel (5), exclude_hv (6), ...
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

impl Scenario for PerfEvent {
    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        let attr = PerfEventAttr {
            kind: 1,   // PERF_TYPE_SOFTWARE
            size: 64,  // PERF_ATTR_SIZE_VER0
            config: 9, // PERF_COUNT_SW_DUMMY
            sample_period: 0,
            sample_type: 0,
            read_format: 0,
            flags: 1 | (1 << 5) | (1 << 6),
            wakeup_events: 0,
            bp_type: 0,
            config1: 0,
        };
        // SAFETY: perf_event_open reads `attr.size` bytes of `attr`, which lives across
        // the call, and touches no other memory.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &raw const attr,
                0,
                -1,
                -1,
                libc::c_ulong::from(8u8), // PERF_FLAG_FD_CLOEXEC
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("perf_event_open");
        }
        // SAFETY: perf_event_open succeeded: `fd` is a new descriptor nothing else owns.
        let fan =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let (r, w) = rustix::pipe::pipe()?;
        write_all(&w, &pattern(8, 1000))?;
        place(fan, 10, false)?;
        place(r, 11, false)?;
        place(w, 12, false)?;
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        vec![10, 11, 12]
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        c.flags(11, OFlags::RDONLY);
        c.flags(12, OFlags::WRONLY);
        if let Some(link) = c.link(10) {
            c.eq("fd 10: link", link.as_str(), "anon_inode:[perf_event]");
        }
        c.pipe_bytes(11, &pattern(8, 1000));
    }
}
