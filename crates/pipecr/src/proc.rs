//! Readers of `/proc/PID/...`: the facts about a live process that the kernel publishes
//! as text. Parsing only; no process is touched.

use std::io;
use std::path::PathBuf;

/// Why a `/proc` file could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process (or thread) does not exist, or no longer does.
    #[error("no process with pid {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// The file exists but could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file's text is not in the format this version understands.
    #[error("cannot parse {}: {what}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
}

/// Process flag of a kernel thread (`PF_KTHREAD` in `include/linux/sched.h`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` that pipecr uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The process id.
    pub pid: i32,
    /// The command name (`comm`), without the parentheses.
    pub comm: String,
    /// Scheduler state letter: R, S, D, T, t, Z, X, ...
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// The kernel's per-task flags (`PF_*`).
    pub flags: u64,
}

impl Stat {
    /// True for a kernel thread, which has no user space to checkpoint.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

fn read(pid: i32, path: String) -> Result<String, ProcError> {
    std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
            ProcError::NoSuchProcess { pid }
        } else {
            ProcError::Read {
                path: path.into(),
                source,
            }
        }
    })
}

/// Reads `/proc/PID/stat`.
pub fn stat(pid: i32) -> Result<Stat, ProcError> {
    let path = format!("/proc/{pid}/stat");
    let text = read(pid, path.clone())?;
    parse_stat(&text).ok_or(ProcError::Parse {
        path: path.into(),
        what: "pid (comm) state ppid pgrp session ... flags",
    })
}

/// Parses the text of `/proc/PID/stat`. The command name may itself contain spaces and
/// parentheses, so it runs from the first `(` to the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgid = rest.next()?.parse().ok()?;
    let sid = rest.next()?.parse().ok()?;
    // tty_nr, tpgid, then flags.
    let flags = rest.nth(2)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgid,
        sid,
        flags,
    })
}

/// The `TracerPid:` of `/proc/PID/status`: the pid tracing this process, 0 for none.
pub fn tracer(pid: i32) -> Result<i32, ProcError> {
    let path = format!("/proc/{pid}/status");
    let text = read(pid, path.clone())?;
    text.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(ProcError::Parse {
            path: path.into(),
            what: "a TracerPid: line",
        })
}

fn numbers_in_dir(pid: i32, path: String) -> Result<Vec<i32>, ProcError> {
    let entries = std::fs::read_dir(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ProcError::NoSuchProcess { pid }
        } else {
            ProcError::Read {
                path: path.clone().into(),
                source,
            }
        }
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ProcError::Read {
            path: path.clone().into(),
            source,
        })?;
        if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The thread ids of process `pid` (`/proc/PID/task`), sorted.
pub fn threads(pid: i32) -> Result<Vec<i32>, ProcError> {
    numbers_in_dir(pid, format!("/proc/{pid}/task"))
}

/// The descriptor numbers open in process `pid` (`/proc/PID/fd`), sorted.
pub fn fds(pid: i32) -> Result<Vec<i32>, ProcError> {
    numbers_in_dir(pid, format!("/proc/{pid}/fd"))
}

/// The children that thread `tid` of process `pid` forked
/// (`/proc/PID/task/TID/children`).
pub fn children(pid: i32, tid: i32) -> Result<Vec<i32>, ProcError> {
    let path = format!("/proc/{pid}/task/{tid}/children");
    let text = read(tid, path.clone())?;
    text.split_ascii_whitespace()
        .map(|s| {
            s.parse().map_err(|_| ProcError::Parse {
                path: path.clone().into(),
                what: "space-separated pids",
            })
        })
        .collect()
}

/// One descriptor as `/proc/PID/fdinfo/N` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdInfo {
    /// File position (`pos:`).
    pub pos: u64,
    /// Status flags of the open file (`flags:`), with the synthetic `O_CLOEXEC` removed.
    pub flags: u32,
    /// The descriptor's close-on-exec bit, which the kernel reports as `O_CLOEXEC` in
    /// `flags:`.
    pub cloexec: bool,
    /// Mount id (`mnt_id:`).
    pub mnt_id: u64,
    /// Inode number (`ino:`), where the kernel prints it.
    pub ino: Option<u64>,
    /// Every other `key: value` line, in order (kind-specific: `eventfd-count`, ...).
    pub extra: Vec<(String, String)>,
}

impl FdInfo {
    /// The value of a kind-specific line, e.g. `eventfd-count`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `O_CLOEXEC` as the kernel prints it in fdinfo's `flags:` (octal 02000000).
const FDINFO_CLOEXEC: u32 = 0o2000000;

/// Reads `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    let path = format!("/proc/{pid}/fdinfo/{fd}");
    let text = read(pid, path.clone())?;
    parse_fdinfo(&text).ok_or(ProcError::Parse {
        path: path.into(),
        what: "pos:, flags: and mnt_id: lines",
    })
}

/// Parses the text of `/proc/PID/fdinfo/FD`.
pub fn parse_fdinfo(text: &str) -> Option<FdInfo> {
    let mut info = FdInfo::default();
    let (mut pos, mut flags) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pos" => pos = Some(value.parse().ok()?),
            "flags" => flags = Some(u32::from_str_radix(value, 8).ok()?),
            "mnt_id" => info.mnt_id = value.parse().ok()?,
            "ino" => info.ino = Some(value.parse().ok()?),
            _ => info.extra.push((key.to_owned(), value.to_owned())),
        }
    }
    let flags = flags?;
    info.pos = pos?;
    info.cloexec = flags & FDINFO_CLOEXEC != 0;
    info.flags = flags & !FDINFO_CLOEXEC;
    Some(info)
}

/// One POSIX timer as `/proc/PID/timers` lists it (`show_timer` in the kernel's
/// `fs/proc/base.c`): four lines, `ID: %d`, `signal: %d/%px` (signal number and
/// `sigev_value`, 16 hex digits), `notify: %s/%s.%d` (`signal`, `none` or `thread`; `tid`
/// with `SIGEV_THREAD_ID`, else `pid`; the target in our PID namespace) and `ClockID: %d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcTimer {
    /// The kernel's timer ID.
    pub id: i32,
    /// `sigev_signo`.
    pub signo: i32,
    /// `sigev_value`, raw.
    pub value: u64,
    /// `sigev_notify`: `SIGEV_SIGNAL` 0, `SIGEV_NONE` 1, `SIGEV_THREAD` 2, plus
    /// `SIGEV_THREAD_ID` (4) when aimed at a thread.
    pub notify: i32,
    /// The process or thread it notifies.
    pub target: i32,
    /// The clock id.
    pub clock: i32,
}

/// Reads `/proc/PID/timers`. Empty when the kernel has no such file (built without
/// `CONFIG_CHECKPOINT_RESTORE`: timers cannot be seen there at all).
pub fn timers(pid: i32) -> Result<Vec<ProcTimer>, ProcError> {
    let path = format!("/proc/{pid}/timers");
    let text = match std::fs::read_to_string(&path) {
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                && std::path::Path::new(&format!("/proc/{pid}")).exists() =>
        {
            return Ok(Vec::new());
        }
        other => other,
    };
    let text = text.map_err(|source| ProcError::Read {
        path: path.clone().into(),
        source,
    })?;
    parse_timers(&text).ok_or(ProcError::Parse {
        path: path.into(),
        what: "ID:, signal: N/VALUE, notify: KIND/pid|tid.N and ClockID: lines per timer",
    })
}

/// Parses the text of `/proc/PID/timers` (see [`ProcTimer`]).
pub fn parse_timers(text: &str) -> Option<Vec<ProcTimer>> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() % 4 != 0 {
        return None;
    }
    lines
        .chunks(4)
        .map(|t| {
            let id = t[0].strip_prefix("ID:")?.trim().parse().ok()?;
            let (signo, value) = t[1].strip_prefix("signal:")?.trim().split_once('/')?;
            let (how, target) = t[2].strip_prefix("notify:")?.trim().split_once('/')?;
            let (scope, target) = target.split_once('.')?;
            let kind = match how {
                "signal" => libc::SIGEV_SIGNAL,
                "none" => libc::SIGEV_NONE,
                "thread" => libc::SIGEV_THREAD,
                _ => return None,
            };
            let thread_id = match scope {
                "tid" => libc::SIGEV_THREAD_ID,
                "pid" => 0,
                _ => return None,
            };
            let value = value.trim_start_matches("0x");
            Some(ProcTimer {
                id,
                signo: signo.parse().ok()?,
                value: u64::from_str_radix(value, 16).ok()?,
                notify: kind | thread_id,
                target: target.parse().ok()?,
                clock: t[3].strip_prefix("ClockID:")?.trim().parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_parsed() {
        let text = "ID: 1\nsignal: 34/00007fff86e452a8\nnotify: signal/tid.2634\nClockID: 1\n\
                    ID: 0\nsignal: 14/0000000000000000\nnotify: none/pid.2634\nClockID: -6\n";
        let t = parse_timers(text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            ProcTimer {
                id: 1,
                signo: 34,
                value: 0x7fff_86e4_52a8,
                notify: libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID,
                target: 2634,
                clock: 1,
            }
        );
        assert_eq!((t[1].notify, t[1].clock), (libc::SIGEV_NONE, -6));
        assert!(parse_timers("ID: 1\n").is_none());
        assert_eq!(parse_timers("").unwrap(), []);
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let text = "4242 (my (odd) prog) S 1 4242 4242 34816 4242 4194560 100 0 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "my (odd) prog");
        assert_eq!(stat.state, 'S');
        assert_eq!((stat.ppid, stat.pgid, stat.sid), (1, 4242, 4242));
        assert_eq!(stat.flags, 4194560);
        assert!(!stat.is_kernel_thread());
    }

    #[test]
    fn kernel_thread_flag() {
        let stat = parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0").unwrap();
        assert!(stat.is_kernel_thread());
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        let stat = stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(threads(me).unwrap().contains(&me));
        assert!(fds(me).unwrap().contains(&0) || fds(me).unwrap().contains(&1));
        assert_eq!(tracer(me).unwrap(), 0);
    }

    #[test]
    fn fdinfo_splits_cloexec_from_the_file_flags() {
        let text = "pos:\t42\nflags:\t02104002\nmnt_id:\t15\nino:\t778274\neventfd-count: 5\n";
        let info = parse_fdinfo(text).unwrap();
        assert_eq!(info.pos, 42);
        assert!(info.cloexec);
        assert_eq!(info.flags, 0o104002);
        assert_eq!(info.mnt_id, 15);
        assert_eq!(info.ino, Some(778274));
        assert_eq!(info.get("eventfd-count"), Some("5"));
        assert_eq!(parse_fdinfo("flags: 0\n"), None);
    }

    #[test]
    fn missing_pid_is_named() {
        // pid_max is at most 4194304, so this pid cannot exist.
        let err = stat(99_999_999).unwrap_err();
        assert!(
            matches!(err, ProcError::NoSuchProcess { pid: 99_999_999 }),
            "{err:?}"
        );
    }
}
