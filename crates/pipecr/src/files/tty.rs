//! Pseudo-terminal pairs whose master the tree holds: the master (`/dev/ptmx`), its
//! slaves (`/dev/pts/N`, also reached through `/dev/tty`), and the state of the pair:
//! settings (`termios2`), window size, packet mode, lock, exclusive mode and the bytes
//! waiting in both directions.
//!
//! A pair is saved with its master (one open file per pair: `/dev/ptmx` opens a new pair
//! each time), each slave open file names its master. A restore opens a new master at
//! the same ptmx path (so in the same devpts instance), unlocks it, and opens every
//! slave open file from it with `TIOCGPTPEER`: the slave's number may change, which no
//! descriptor notices. The controlling terminal is the process's business
//! (`restore::ctty`): this kind only says which saved open file stands for which
//! terminal ([`FileKind::terminal`]).
//!
//! A slave whose master is not in the tree is saved as a `CharDevice` record, reopened
//! by path, exactly as the character-device kind saves terminals (the user's terminal,
//! `--shell-job`).
//!
//! **Queued bytes without loss.** A terminal's queues can only be read by consuming
//! them, so a dump reads them and puts them back at once, while the tree is frozen,
//! whatever happens next (a dump that fails, `--leave-running`):
//! 1. The master's input (what the slave wrote): read from the master with `O_NONBLOCK`
//!    set on the open file for the moment and packet mode off (a status byte pending in
//!    packet mode refuses the dump: it cannot be put back).
//! 2. The slave's input (what the master wrote): read from a slave open file of the
//!    tree with `ICANON` off, the quiet settings of 3. and `VMIN` = `VTIME` = 0, which
//!    makes a canonical partial line readable too.
//! 3. Both are put back through the other end under "quiet" settings: the saved ones
//!    with echo, signals, extended processing, input translation and output processing
//!    off, and every special character moved to a byte the data does not hold, so the
//!    line discipline stores the bytes as they are; in canonical mode each newline (and
//!    `VEOL`, `VEOL2`) ends a line again and a partial line stays partial. A `poll` on
//!    the receiving end makes the kernel process them at once. Then the saved settings
//!    and packet mode come back. A restore fills a new pair the same way.
//!
//! What is not exact (docs/IMAGE-FORMAT.md §5.4.3): an end-of-file
//! character (`VEOF`) queued in canonical mode comes back as a line end only while
//! `VEOL` or `VEOL2` is 0 (their default); a pending `VLNEXT` escape, the echo column and
//! output stopped with `VSTOP` are not saved; a `/dev/tty` descriptor comes back as an
//! open of the slave itself (same terminal, `fstat` shows the slave's device); bytes
//! beyond what a line discipline holds (4 KiB), not yet passed through it, come back
//! without the echo and translation they would still have had.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode, OFlags};

use super::common::{DELETED, open_flags, set_position_and_flags};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved};
use crate::sys::tty as sys;

/// Pseudo-terminal masters and the slaves of the masters the tree holds.
pub struct PtyKind;

/// `TTYAUX_MAJOR`: `/dev/tty` is minor 0, `/dev/ptmx` minor 2.
const TTYAUX_MAJOR: u32 = 5;
/// `UNIX98_PTY_SLAVE_MAJOR` and the seven majors after it (`/dev/pts/N`).
const PTS_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;
/// `UNIX98_PTY_SLAVE_MAJOR`: the major of every devpts slave.
const PTS_MAJOR: u32 = 136;
/// `DEVPTS_SUPER_MAGIC`.
const DEVPTS_MAGIC: i64 = 0x1cd1;
/// The special characters a line discipline acts on, moved out of the way while bytes
/// are put back (`VEOL` and `VEOL2` stay: they end lines as they did).
const SPECIAL: [usize; 12] = [
    libc::VINTR,
    libc::VQUIT,
    libc::VERASE,
    libc::VKILL,
    libc::VEOF,
    libc::VSTART,
    libc::VSTOP,
    libc::VSUSP,
    libc::VREPRINT,
    libc::VDISCARD,
    libc::VWERASE,
    libc::VLNEXT,
];

/// What a live character device is to this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Master,
    Slave { index: u32 },
    DevTty,
}

fn end_of(stat: &rustix::fs::Stat) -> Option<End> {
    if FileType::from_raw_mode(stat.st_mode) != FileType::CharacterDevice {
        return None;
    }
    let (major, minor) = (
        rustix::fs::major(stat.st_rdev),
        rustix::fs::minor(stat.st_rdev),
    );
    match (major, minor) {
        (TTYAUX_MAJOR, 2) => Some(End::Master),
        (TTYAUX_MAJOR, 0) => Some(End::DevTty),
        (m, n) if PTS_MAJORS.contains(&m) => Some(End::Slave {
            index: ((m - PTS_MAJOR) << 20) | n,
        }),
        _ => None,
    }
}

/// The device number of slave `index` (as `st_rdev` and `/proc/PID/stat`'s `tty_nr`).
fn slave_device(index: u32) -> u64 {
    rustix::fs::makedev(PTS_MAJOR + (index >> 20), index & 0xf_ffff)
}

/// The devpts instance (its `st_dev`) a master reached by `link` in process `pid`
/// belongs to: the master's own when it was opened inside devpts (`/dev/pts/ptmx`),
/// else the `pts` directory beside it, which is where the kernel looked.
fn devpts_of_master(pid: i32, link: &str, st_dev: u64, path_fs: i64) -> io::Result<u64> {
    if path_fs == DEVPTS_MAGIC {
        return Ok(st_dev);
    }
    let dir = std::path::Path::new(link)
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    let pts = format!(
        "/proc/{pid}/root{}/pts",
        dir.display().to_string().trim_end_matches('/')
    );
    Ok(std::fs::metadata(pts)?.dev())
}

/// The pairs of the tree being dumped: each master by (devpts, index), and a slave
/// descriptor of each, found once among the tree's descriptors.
#[derive(Default)]
struct TreePtys {
    scanned: bool,
    /// Open-file id, and a descriptor holding it, of each master.
    masters: BTreeMap<(u64, u32), (u64, i32, RawFd)>,
    slaves: BTreeMap<(u64, u32), (i32, RawFd)>,
}

fn scan(sink: &mut DumpSink<'_>) -> Result<(), FileError> {
    if sink.peek_state::<TreePtys>().is_some_and(|t| t.scanned) {
        return Ok(());
    }
    let descriptors: Vec<_> = sink.descriptors().copied().collect();
    let mut found = TreePtys {
        scanned: true,
        ..TreePtys::default()
    };
    for d in descriptors {
        let path = format!("/proc/{}/fd/{}", d.pid, d.fd);
        let fail = |op, source: io::Error| FileError::Dump {
            pid: d.pid,
            fd: d.fd,
            what: path.clone(),
            op,
            source,
        };
        let Ok(stat) = rustix::fs::stat(&path) else {
            continue;
        };
        match end_of(&stat) {
            Some(End::Master) => {
                let info = crate::proc::fdinfo(d.pid, d.fd)
                    .map_err(|e| fail("read fdinfo", io::Error::other(e.to_string())))?;
                let Some(index) = info.get("tty-index").and_then(|v| v.trim().parse().ok()) else {
                    continue;
                };
                let link = std::fs::read_link(&path).map_err(|e| fail("readlink", e))?;
                let fs = rustix::fs::statfs(&path).map_err(|e| fail("statfs", e.into()))?;
                let devpts = devpts_of_master(
                    d.pid,
                    &link.to_string_lossy(),
                    stat.st_dev,
                    fs.f_type as i64,
                )
                .map_err(|e| fail("stat the devpts beside ptmx", e))?;
                found
                    .masters
                    .insert((devpts, index), (d.file_id, d.pid, d.fd));
            }
            Some(End::Slave { index }) => {
                found
                    .slaves
                    .entry((stat.st_dev, index))
                    .or_insert((d.pid, d.fd));
            }
            _ => {}
        }
    }
    *sink.state::<TreePtys>() = found;
    Ok(())
}

/// The record of a terminal that stays outside the tree, as the character-device kind
/// writes it (reopened by path).
fn by_path(file: &LiveFile) -> Result<open_file::Kind, FileError> {
    if file.stat.st_nlink == 0 || !file.link.starts_with('/') {
        let path = file.link.strip_suffix(DELETED).unwrap_or(&file.link);
        return Err(FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: format!(
                "terminal {path} without a name to open it by (its pseudo-terminal master is not in the tree)"
            ),
        });
    }
    Ok(open_file::Kind::CharDevice(proto::CharDevice {
        path: file.link.clone(),
        major: rustix::fs::major(file.stat.st_rdev),
        minor: rustix::fs::minor(file.stat.st_rdev),
        terminal: true,
        unlinked: false,
        mode: file.stat.st_mode,
    }))
}

fn termios_to_proto(t: &libc::termios2) -> proto::Termios {
    proto::Termios {
        iflag: t.c_iflag,
        oflag: t.c_oflag,
        cflag: t.c_cflag,
        lflag: t.c_lflag,
        line: u32::from(t.c_line),
        cc: t.c_cc.to_vec(),
        ispeed: t.c_ispeed,
        ospeed: t.c_ospeed,
    }
}

fn termios_from_proto(p: &proto::Termios) -> Option<libc::termios2> {
    let mut t = zero_termios();
    t.c_iflag = p.iflag;
    t.c_oflag = p.oflag;
    t.c_cflag = p.cflag;
    t.c_lflag = p.lflag;
    t.c_line = u8::try_from(p.line).ok()?;
    if p.cc.len() != t.c_cc.len() {
        return None;
    }
    t.c_cc.copy_from_slice(&p.cc);
    t.c_ispeed = p.ispeed;
    t.c_ospeed = p.ospeed;
    Some(t)
}

fn zero_termios() -> libc::termios2 {
    libc::termios2 {
        c_iflag: 0,
        c_oflag: 0,
        c_cflag: 0,
        c_lflag: 0,
        c_line: 0,
        c_cc: Default::default(),
        c_ispeed: 0,
        c_ospeed: 0,
    }
}

/// The settings under which queued bytes are put back as they are (see the module
/// documentation), or `None` when `data` holds every byte value a special character
/// could be moved to.
fn quiet(saved: &libc::termios2, data: &[u8]) -> Option<libc::termios2> {
    let mut used = [false; 256];
    for &b in data {
        used[usize::from(b)] = true;
    }
    used[usize::from(b'\n')] = true;
    used[usize::from(saved.c_cc[libc::VEOL])] = true;
    used[usize::from(saved.c_cc[libc::VEOL2])] = true;
    let spare = (1..=255u8).find(|&b| !used[usize::from(b)])?;
    let mut t = *saved;
    t.c_iflag &=
        !(libc::ISTRIP | libc::INLCR | libc::IGNCR | libc::ICRNL | libc::IUCLC | libc::IXANY);
    t.c_oflag &= !libc::OPOST;
    t.c_lflag &= !(libc::ECHO
        | libc::ECHOE
        | libc::ECHOK
        | libc::ECHONL
        | libc::ECHOCTL
        | libc::ECHOKE
        | libc::ECHOPRT
        | libc::ISIG
        | libc::IEXTEN);
    for i in SPECIAL {
        t.c_cc[i] = spare;
    }
    Some(t)
}

/// Reads everything `fd` has to read now (`fd` must not block: `O_NONBLOCK`, or a slave
/// with `VMIN` = `VTIME` = 0). The end is EAGAIN, a read of 0, or EIO (a master whose
/// slave is closed).
fn drain(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::IO) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes `data` into `to`, for the other end `from` to read, and has the kernel pass it
/// through `from`'s line discipline now (`poll` runs the pending work).
fn feed(to: BorrowedFd<'_>, from: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let mut rest = data;
    let mut stuck = 0;
    while !rest.is_empty() {
        match rustix::io::write(to, rest) {
            Ok(n) if n > 0 => {
                rest = &rest[n..];
                stuck = 0;
            }
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                stuck += 1;
                if stuck > 3 {
                    return Err(io::Error::other(format!(
                        "the terminal took {} of {} bytes",
                        data.len() - rest.len(),
                        data.len()
                    )));
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        flush(from)?;
    }
    flush(from).map(|_| ())
}

/// `poll(fd, 0)`: a terminal's poll processes the bytes waiting for its line discipline.
/// Returns whether the other end is closed (`POLLHUP`).
fn flush(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    Ok(fds[0].revents().contains(rustix::event::PollFlags::HUP))
}

/// Whether the master has a packet-mode status byte waiting (`POLLPRI`).
fn status_pending(master: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [rustix::event::PollFd::new(
        &master,
        rustix::event::PollFlags::PRI,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    Ok(fds[0].revents().contains(rustix::event::PollFlags::PRI))
}

/// Puts `input` (for the slave to read) and `output` (for the master to read) into a
/// pair whose packet mode is off, under quiet settings, then sets `saved`.
fn refill(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    saved: &libc::termios2,
    input: &[u8],
    output: &[u8],
) -> Result<(), String> {
    if !input.is_empty() || !output.is_empty() {
        let t = quiet(saved, input)
            .ok_or("the queued input holds every byte value: no byte is left to move the special characters to")?;
        sys::set_termios2(master, &t).map_err(|e| format!("TCSETS2: {e}"))?;
        feed(master, slave, input).map_err(|e| format!("putting back the slave's input: {e}"))?;
        feed(slave, master, output).map_err(|e| format!("putting back the master's input: {e}"))?;
    }
    sys::set_termios2(master, saved).map_err(|e| format!("TCSETS2: {e}"))
}

/// What a dump read of a pair.
struct Read {
    termios: libc::termios2,
    input: Vec<u8>,
    output: Vec<u8>,
    exclusive: bool,
}

/// Reads the queues of the pair of `master` (and its exclusive mode, through `slave`)
/// and puts them back; packet mode is off meanwhile.
fn read_queues(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    termios: libc::termios2,
    output: Vec<u8>,
) -> Result<Read, String> {
    let exclusive =
        sys::get_int(slave, sys::TIOCGEXCL).map_err(|e| format!("TIOCGEXCL: {e}"))? != 0;
    // Quiet too: bytes the line discipline had no room for yet pass through it as they
    // are read, and must not be echoed or raise signals.
    let mut raw = quiet(&termios, &[]).unwrap_or(termios);
    raw.c_lflag &= !libc::ICANON;
    raw.c_cc[libc::VMIN] = 0;
    raw.c_cc[libc::VTIME] = 0;
    let read = sys::set_termios2(master, &raw)
        .map_err(|e| format!("TCSETS2: {e}"))
        .and_then(|()| drain(slave).map_err(|e| format!("reading the slave's input: {e}")));
    let input = match read {
        Ok(input) => input,
        Err(e) => {
            // Nothing read: the settings go back, the output too.
            let _ = refill(master, slave, &termios, &[], &output);
            return Err(e);
        }
    };
    refill(master, slave, &termios, &input, &output)?;
    Ok(Read {
        termios,
        input,
        output,
        exclusive,
    })
}

impl PtyKind {
    fn dump_master(
        &self,
        file: &LiveFile,
        sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            op,
            source,
        };
        let m = file.file.as_fd();
        let index = sys::get_int(m, sys::TIOCGPTN).map_err(|e| fail("TIOCGPTN", e))?;
        let refuse = |why: String| FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: format!("pseudo-terminal master {} (pts {index}): {why}", file.link),
        };
        if file.link.ends_with(DELETED) || !file.link.starts_with('/') {
            return Err(refuse(
                "its devpts instance has no ptmx left to open a new pair in".to_owned(),
            ));
        }
        let fs = rustix::fs::fstatfs(m).map_err(|e| fail("fstatfs", e.into()))?;
        let devpts = devpts_of_master(file.pid, &file.link, file.stat.st_dev, fs.f_type as i64)
            .map_err(|e| fail("stat the devpts beside ptmx", e))?;
        // The restore opens a new master at the same path: it must lead to the same
        // devpts instance in the tree's mount namespace.
        let again = format!("/proc/{}/root{}", file.pid, file.link);
        let reachable = rustix::fs::stat(&again).ok().and_then(|st| {
            let fs = rustix::fs::statfs(&again).ok()?;
            let dev = devpts_of_master(file.pid, &file.link, st.st_dev, fs.f_type as i64).ok()?;
            Some(end_of(&st) == Some(End::Master) && dev == devpts)
        });
        if reachable != Some(true) {
            return Err(refuse(format!(
                "its devpts instance {}:{} is not reachable through {} any more",
                rustix::fs::major(devpts),
                rustix::fs::minor(devpts),
                file.link
            )));
        }
        scan(sink)?;
        let tree_slave = sink
            .peek_state::<TreePtys>()
            .and_then(|t| t.slaves.get(&(devpts, index)).copied());
        let termios = sys::get_termios2(m).map_err(|e| fail("TCGETS2", e))?;
        let ws = rustix::termios::tcgetwinsize(m).map_err(|e| fail("TIOCGWINSZ", e.into()))?;
        let packet = sys::get_int(m, sys::TIOCGPKT).map_err(|e| fail("TIOCGPKT", e))? != 0;
        let locked = sys::get_int(m, sys::TIOCGPTLCK).map_err(|e| fail("TIOCGPTLCK", e))? != 0;
        // ENOTTY: the slave is no session's controlling terminal.
        let session = rustix::termios::tcgetsid(m).map_or(0, |p| p.as_raw_nonzero().get());

        // A slave of the tree, if there is one; bytes either end wrote and the other's
        // line discipline has not taken yet are processed first, so that the queues
        // hold still while they are read.
        let tree_slave = match tree_slave {
            Some((pid, fd)) => Some(LiveFile::fetch(pid, fd)?.file),
            None => None,
        };
        if let Some(s) = &tree_slave {
            flush(s.as_fd()).map_err(|e| fail("poll", e))?;
        }
        let hung_up = flush(m).map_err(|e| fail("poll", e))?;
        if tree_slave.is_none() && !hung_up {
            // Its input could only be read through a slave opened for the purpose,
            // whose close would leave the master hung up: refused before anything is
            // read.
            return Err(refuse("no slave in the tree and not hung up: the slave is open outside the tree, or was never opened".to_owned()));
        }

        // After the flush: processing pending bytes may itself raise a status.
        if packet && status_pending(m).map_err(|e| fail("poll", e))? {
            return Err(refuse(
                "a packet-mode status byte its reader has not read, which cannot be put back"
                    .to_owned(),
            ));
        }

        // 1. The master's input, with O_NONBLOCK on the open file for the moment.
        let flags = rustix::fs::fcntl_getfl(m).map_err(|e| fail("fcntl(F_GETFL)", e.into()))?;
        rustix::fs::fcntl_setfl(m, flags | OFlags::NONBLOCK)
            .map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        if packet {
            sys::set_int(m, sys::TIOCPKT, 0).map_err(|e| fail("TIOCPKT", e))?;
        }
        let drained = drain(m);
        let _ = rustix::fs::fcntl_setfl(m, flags);
        let result = (|| -> Result<Read, FileError> {
            let output = drained.map_err(|e| fail("read", e))?;
            // 2. The slave's input, through a slave of the tree, or one opened from the
            //    master when the tree holds none and the slave was closed (opening and
            //    closing it again leaves that state as it was).
            let slave = match tree_slave {
                Some(s) => Ok(s),
                None => peer(m, locked).map_err(|e| fail("TIOCGPTPEER", e)),
            };
            let slave = match slave {
                Ok(s) => s,
                Err(e) => {
                    let _ = refill_output(m, &termios, &output);
                    return Err(e);
                }
            };
            read_queues(m, slave.as_fd(), termios, output)
                .map_err(|e| fail("read and put back the queued bytes", io::Error::other(e)))
        })();
        if packet {
            let _ = sys::set_int(m, sys::TIOCPKT, 1);
        }
        let read = result?;
        Ok(open_file::Kind::Pty(proto::PtyEnd {
            master_id: 0,
            master: true,
            via_dev_tty: false,
            path: file.link.clone(),
            state: Some(proto::PtyState {
                index,
                termios: Some(termios_to_proto(&read.termios)),
                rows: u32::from(ws.ws_row),
                cols: u32::from(ws.ws_col),
                xpixel: u32::from(ws.ws_xpixel),
                ypixel: u32::from(ws.ws_ypixel),
                packet,
                locked,
                exclusive: read.exclusive,
                input: read.input,
                output: read.output,
                session,
            }),
        }))
    }

    fn dump_slave(
        &self,
        file: &LiveFile,
        sink: &mut DumpSink<'_>,
        end: End,
    ) -> Result<open_file::Kind, FileError> {
        scan(sink)?;
        let Some(ptys) = sink.peek_state::<TreePtys>() else {
            return by_path(file);
        };
        let master_id = match end {
            End::Slave { index } => ptys.masters.get(&(file.stat.st_dev, index)).map(|m| m.0),
            End::DevTty => {
                // The terminal behind /dev/tty (the holder's controlling terminal when it
                // was opened): among the tree's masters of its number, the one whose
                // settings it sees change (another devpts instance may have a terminal of
                // the same number, in the tree or not).
                let dev = sys::get_int(file.file.as_fd(), sys::TIOCGDEV).unwrap_or(0);
                let (major, minor) = ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00));
                let candidates: Vec<(u64, i32, RawFd)> = if PTS_MAJORS.contains(&major) {
                    let index = ((major - PTS_MAJOR) << 20) | minor;
                    ptys.masters
                        .iter()
                        .filter(|((_, i), _)| *i == index)
                        .map(|(_, &m)| m)
                        .collect()
                } else {
                    Vec::new()
                };
                let mut found = None;
                for (id, pid, fd) in candidates {
                    let master = LiveFile::fetch(pid, fd)?;
                    let same =
                        same_terminal(file.file.as_fd(), master.file.as_fd()).map_err(|e| {
                            FileError::Dump {
                                pid: file.pid,
                                fd: file.fd,
                                what: file.link.clone(),
                                op: "compare with a pseudo-terminal master of the tree",
                                source: e,
                            }
                        })?;
                    if same {
                        found = Some(id);
                        break;
                    }
                }
                found
            }
            End::Master => None,
        };
        let Some(master_id) = master_id else {
            return by_path(file);
        };
        Ok(open_file::Kind::Pty(proto::PtyEnd {
            master_id,
            master: false,
            via_dev_tty: end == End::DevTty,
            path: file.link.clone(),
            state: None,
        }))
    }
}

/// Whether `dev_tty` (an open of `/dev/tty`) is the slave of `master`: a change of the
/// `VDISCARD` character made through the master (a character Linux's line discipline
/// does not act on, so the change has no effect) shows through it. The settings are put
/// back at once. A pair in packet mode with `EXTPROC` would report the change to its
/// reader: not probed (false).
fn same_terminal(dev_tty: BorrowedFd<'_>, master: BorrowedFd<'_>) -> io::Result<bool> {
    let saved = sys::get_termios2(master)?;
    let packet = sys::get_int(master, sys::TIOCGPKT)? != 0;
    if packet && saved.c_lflag & libc::EXTPROC != 0 {
        return Ok(false);
    }
    let before = sys::get_termios2(dev_tty)?;
    if before.c_cc != saved.c_cc || before.c_lflag != saved.c_lflag {
        return Ok(false);
    }
    let mut probe = saved;
    probe.c_cc[libc::VDISCARD] = saved.c_cc[libc::VDISCARD] ^ 0x55;
    sys::set_termios2(master, &probe)?;
    let seen = sys::get_termios2(dev_tty);
    sys::set_termios2(master, &saved)?;
    Ok(seen?.c_cc[libc::VDISCARD] == probe.c_cc[libc::VDISCARD])
}

/// Opens a slave of the pair of `master` (unlocking it for the moment when `locked`).
fn peer(master: BorrowedFd<'_>, locked: bool) -> io::Result<OwnedFd> {
    if locked {
        sys::set_int(master, sys::TIOCSPTLCK, 0)?;
    }
    let slave = open_peer(master, OFlags::RDWR);
    if locked {
        sys::set_int(master, sys::TIOCSPTLCK, 1)?;
    }
    slave
}

/// `TIOCGPTPEER` with the access mode of `flags`, never becoming a controlling terminal.
fn open_peer(master: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
    let mode = flags & OFlags::RWMODE;
    let flags = rustix::pty::OpenptFlags::from_bits_retain(
        (mode | OFlags::NOCTTY | OFlags::CLOEXEC).bits(),
    );
    Ok(rustix::pty::ioctl_tiocgptpeer(master, flags)?)
}

/// When no slave could be had: the master's input goes back alone (a slave opened for
/// the purpose is closed again at once).
fn refill_output(
    master: BorrowedFd<'_>,
    termios: &libc::termios2,
    output: &[u8],
) -> Result<(), String> {
    if output.is_empty() {
        return Ok(());
    }
    let slave = open_peer(master, OFlags::RDWR).map_err(|e| format!("TIOCGPTPEER: {e}"))?;
    refill(master, slave.as_fd(), termios, &[], output)
}

/// The pairs a restore created, by the open-file id of their master: the master, and a
/// slave opened to set it up (closed when the restore context goes).
#[derive(Default)]
struct Pairs {
    pairs: BTreeMap<u64, Pair>,
}

struct Pair {
    master: OwnedFd,
    slave: OwnedFd,
}

fn master_record(
    files: &[proto::OpenFile],
    id: u64,
) -> Option<(&proto::OpenFile, &proto::PtyEnd, &proto::PtyState)> {
    let f = files.iter().find(|f| f.id == id)?;
    match &f.kind {
        Some(open_file::Kind::Pty(p)) if p.master => Some((f, p, p.state.as_ref()?)),
        _ => None,
    }
}

/// Creates the pair of master record `id` (once), filled and set as saved.
fn pair(ctx: &mut RestoreCtx<'_>, id: u64) -> Result<(), FileError> {
    if ctx.state::<Pairs>().pairs.contains_key(&id) {
        return Ok(());
    }
    let files = ctx.open_files()?;
    let Some((file, end, state)) = master_record(files, id) else {
        return Err(FileError::Invalid {
            id,
            reason: "not a pseudo-terminal master with its state".into(),
        });
    };
    let what = format!(
        "pseudo-terminal master {} (was pts {})",
        end.path, state.index
    );
    let fail = |op, e: io::Error| FileError::Restore {
        id,
        what: what.clone(),
        op,
        source: e,
    };
    let termios = state
        .termios
        .as_ref()
        .and_then(termios_from_proto)
        .ok_or_else(|| FileError::Invalid {
            id,
            reason: "pseudo-terminal settings of the wrong size".into(),
        })?;
    let flags = open_flags(file.flags) | OFlags::NOCTTY;
    let master = rustix::fs::open(end.path.as_str(), flags, Mode::empty())
        .map_err(|e| fail("open", e.into()))?;
    let st = rustix::fs::fstat(&master).map_err(|e| fail("fstat", e.into()))?;
    if end_of(&st) != Some(End::Master) {
        return Err(FileError::Changed {
            id,
            path: end.path.clone(),
            what: "it is not a pseudo-terminal multiplexer (ptmx) any more".into(),
        });
    }
    rustix::pty::unlockpt(&master).map_err(|e| fail("unlockpt", e.into()))?;
    let slave = open_peer(master.as_fd(), OFlags::RDWR).map_err(|e| fail("TIOCGPTPEER", e))?;
    let ws = rustix::termios::Winsize {
        ws_row: state.rows as u16,
        ws_col: state.cols as u16,
        ws_xpixel: state.xpixel as u16,
        ws_ypixel: state.ypixel as u16,
    };
    rustix::termios::tcsetwinsize(&master, ws).map_err(|e| fail("TIOCSWINSZ", e.into()))?;
    refill(
        master.as_fd(),
        slave.as_fd(),
        &termios,
        &state.input,
        &state.output,
    )
    .map_err(|e| fail("fill the queues", io::Error::other(e)))?;
    if state.packet {
        sys::set_int(master.as_fd(), sys::TIOCPKT, 1).map_err(|e| fail("TIOCPKT", e))?;
    }
    set_position_and_flags(master.as_fd(), file, &end.path)?;
    ctx.state::<Pairs>()
        .pairs
        .insert(id, Pair { master, slave });
    Ok(())
}

fn pty_end(file: &proto::OpenFile) -> Result<&proto::PtyEnd, FileError> {
    match &file.kind {
        Some(open_file::Kind::Pty(p)) => Ok(p),
        _ => Err(FileError::Invalid {
            id: file.id,
            reason: "not a pseudo-terminal end".into(),
        }),
    }
}

impl FileKind for PtyKind {
    fn name(&self) -> &'static str {
        "pseudo-terminal"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        end_of(&file.stat).is_some()
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        match end_of(&file.stat) {
            Some(End::Master) => self.dump_master(file, sink),
            Some(end) => self.dump_slave(file, sink, end),
            None => Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("{} (not a terminal)", file.link),
            }),
        }
    }

    /// The master's own id goes into its record, now that ids are final.
    fn finish(
        &self,
        files: &mut [proto::OpenFile],
        _sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        for f in files.iter_mut() {
            if let Some(open_file::Kind::Pty(p)) = &mut f.kind
                && p.master
            {
                p.master_id = f.id;
            }
        }
        Ok(())
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Pty(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let files = ctx.open_files()?;
        for f in files {
            if let Some(open_file::Kind::Pty(p)) = &f.kind
                && master_record(files, p.master_id).is_none()
            {
                return Err(FileError::Invalid {
                    id: f.id,
                    reason: format!(
                        "pseudo-terminal end whose master (open file {}) is missing",
                        p.master_id
                    ),
                });
            }
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let end = pty_end(file)?;
        pair(ctx, end.master_id)?;
        let Some(p) = ctx.state::<Pairs>().pairs.get(&end.master_id) else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "pseudo-terminal pair not created".into(),
            });
        };
        let fail = |op, e: io::Error| FileError::Restore {
            id: file.id,
            what: end.path.clone(),
            op,
            source: e,
        };
        if end.master {
            return p.master.try_clone().map_err(|e| fail("dup", e));
        }
        let slave = open_peer(p.master.as_fd(), open_flags(file.flags))
            .map_err(|e| fail("TIOCGPTPEER", e))?;
        set_position_and_flags(slave.as_fd(), file, &end.path)?;
        Ok(slave)
    }

    /// Exclusive mode and the lock last: every slave is open by now.
    fn complete(&self, file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let end = pty_end(file)?;
        let Some(state) = end.state.as_ref().filter(|_| end.master) else {
            return Ok(());
        };
        let (exclusive, locked) = (state.exclusive, state.locked);
        let Some(p) = ctx.state::<Pairs>().pairs.get(&file.id) else {
            return Ok(());
        };
        let fail = |op, e: io::Error| FileError::Restore {
            id: file.id,
            what: end.path.clone(),
            op,
            source: e,
        };
        if exclusive {
            sys::set_exclusive(p.slave.as_fd(), true).map_err(|e| fail("TIOCEXCL", e))?;
        }
        if locked {
            sys::set_int(p.master.as_fd(), sys::TIOCSPTLCK, 1)
                .map_err(|e| fail("TIOCSPTLCK", e))?;
        }
        Ok(())
    }

    fn terminal(&self, file: &proto::OpenFile) -> Option<(u64, i32)> {
        match &file.kind {
            Some(open_file::Kind::Pty(p)) if p.master => {
                let state = p.state.as_ref()?;
                Some((slave_device(state.index), state.session))
            }
            _ => None,
        }
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Pty(p)) if p.master => match &p.state {
                Some(s) => format!(
                    "pseudo-terminal master {} (pts {}), {}x{}, {} B input and {} B output queued{}{}{}",
                    p.path,
                    s.index,
                    s.cols,
                    s.rows,
                    s.input.len(),
                    s.output.len(),
                    if s.packet { ", packet mode" } else { "" },
                    if s.locked { ", locked" } else { "" },
                    if s.exclusive { ", exclusive" } else { "" },
                ),
                None => format!("pseudo-terminal master {} (no state)", p.path),
            },
            Some(open_file::Kind::Pty(p)) => format!(
                "pseudo-terminal slave {} of open file {}{}",
                p.path,
                p.master_id,
                if p.via_dev_tty {
                    " (through /dev/tty)"
                } else {
                    ""
                }
            ),
            _ => "not a pseudo-terminal end".into(),
        };
        Description { text, pipe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_image() {
        let mut t = zero_termios();
        t.c_iflag = 0o2400;
        t.c_oflag = 0o5;
        t.c_cflag = 0o10277;
        t.c_lflag = 0o105073;
        t.c_line = 3;
        t.c_cc[libc::VERASE] = 8;
        t.c_ispeed = 12345;
        t.c_ospeed = 54321;
        let back = termios_from_proto(&termios_to_proto(&t)).unwrap();
        assert_eq!(termios_to_proto(&back), termios_to_proto(&t));
        let mut short = termios_to_proto(&t);
        short.cc.pop();
        assert!(
            termios_from_proto(&short).is_none(),
            "c_cc of the wrong size"
        );
        short = termios_to_proto(&t);
        short.line = 256;
        assert!(
            termios_from_proto(&short).is_none(),
            "a line discipline above 255"
        );
    }

    #[test]
    fn quiet_settings_keep_lines_and_move_special_characters_out_of_the_data() {
        let mut t = zero_termios();
        t.c_lflag = libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN;
        t.c_iflag = libc::ICRNL | libc::IXON;
        t.c_oflag = libc::OPOST | libc::ONLCR;
        t.c_cc[libc::VINTR] = 3;
        t.c_cc[libc::VERASE] = 0x7f;
        let data = b"\x01\x02\x03abc\n";
        let q = quiet(&t, data).unwrap();
        assert_eq!(
            q.c_lflag,
            libc::ICANON,
            "canonical stays, echo and signals go"
        );
        assert_eq!(
            q.c_iflag,
            libc::IXON,
            "no translation; flow control untouched"
        );
        assert_eq!(q.c_oflag & libc::OPOST, 0);
        let spare = q.c_cc[libc::VINTR];
        assert!(!data.contains(&spare) && spare != 0, "{spare}");
        assert!(SPECIAL.iter().all(|&i| q.c_cc[i] == spare));
        let every: Vec<u8> = (0..=255).collect();
        assert!(quiet(&t, &every).is_none());
    }

    #[test]
    fn slave_devices_are_numbered_as_proc_stat_shows_them() {
        assert_eq!(slave_device(0), rustix::fs::makedev(136, 0));
        assert_eq!(slave_device(3), 136 << 8 | 3);
        // The kernel's new_encode_dev: minor bits above 8 go above the major.
        assert_eq!(
            slave_device(300),
            (136 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)
        );
    }
}
