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

/// Task flag of an io_uring worker (`PF_IO_WORKER`): the thread an io_uring instance
/// runs in the process's thread group (`iou-sqp-PID` for a submission-queue poller,
/// `iou-wrk-PID` for async work).
const PF_IO_WORKER: u64 = 0x0000_0010;

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
    /// The controlling terminal's device number (`tty_nr`, as `st_rdev` encodes it); 0
    /// when there is none.
    pub tty_nr: u64,
    /// The foreground process group of the controlling terminal (`tpgid`); -1 or 0 when
    /// there is none.
    pub tpgid: i32,
    /// The kernel's per-task flags (`PF_*`).
    pub flags: u64,
}

impl Stat {
    /// True for a kernel thread, which has no user space to checkpoint.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// True for an io_uring worker thread: it runs kernel code only and never enters a
    /// ptrace-stop, though it may be seized.
    pub fn is_io_worker(&self) -> bool {
        self.flags & PF_IO_WORKER != 0
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
    let tty_nr = rest.next()?.parse::<i64>().ok()? as u32 as u64;
    let tpgid = rest.next()?.parse().ok()?;
    let flags = rest.next()?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgid,
        sid,
        tty_nr,
        tpgid,
        flags,
    })
}

/// The exit status of a zombie, as `waitpid` would report it to its parent (field 52,
/// `exit_code`, of `/proc/PID/stat`: the exit code shifted left by 8, or the terminating
/// signal with 0x80 for a core dump). The kernel shows it only to a reader that may trace
/// the process; 0 otherwise.
pub fn exit_code(pid: i32) -> Result<i32, ProcError> {
    let path = format!("/proc/{pid}/stat");
    let text = read(pid, path.clone())?;
    parse_exit_code(&text).ok_or(ProcError::Parse {
        path: path.into(),
        what: "exit_code (field 52)",
    })
}

/// Parses field 52 (`exit_code`) out of the text of `/proc/PID/stat`.
pub fn parse_exit_code(text: &str) -> Option<i32> {
    let close = text.rfind(')')?;
    // Field 3 (state) is the first after the command name: field 52 is the 50th.
    text.get(close + 1..)?
        .split_ascii_whitespace()
        .nth(49)?
        .parse()
        .ok()
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

/// Whether thread `tid` of process `pid` is blocked in `vfork` (or in a `clone` or
/// `clone3` that gives `CLONE_VFORK`), waiting until its child execs or exits: an
/// uninterruptible wait (`D`) in that syscall, from `/proc/PID/task/TID/stat` and
/// `.../syscall`. Such a thread cannot be stopped by ptrace until its child lets it go.
/// `Ok(false)` for a thread gone meanwhile.
pub fn in_vfork_wait(pid: i32, tid: i32) -> Result<bool, ProcError> {
    let state = match read(pid, format!("/proc/{pid}/task/{tid}/stat")) {
        Ok(text) => parse_stat(&text).map(|s| s.state),
        Err(ProcError::NoSuchProcess { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if state != Some('D') {
        return Ok(false);
    }
    let text = match read(pid, format!("/proc/{pid}/task/{tid}/syscall")) {
        Ok(text) => text,
        Err(ProcError::NoSuchProcess { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !parse_vfork_syscall(&text) {
        return Ok(false);
    }
    // clone3 keeps its flags in memory (`struct clone_args`, flags first): a clone3 in
    // `D` may be any thread or process creation caught in an uninterruptible moment
    // (pthread_create uses clone3 too). Read them; if they cannot be read, assume it
    // waits for a vfork child, as the caller must not hang on one.
    let mut fields = text.split_whitespace();
    if fields.next().and_then(|nr| nr.parse::<i64>().ok()) == Some(libc::SYS_clone3) {
        let args = fields
            .next()
            .and_then(|a| a.strip_prefix("0x"))
            .and_then(|a| u64::from_str_radix(a, 16).ok());
        if let Some(args) = args {
            let mut flags = [0u8; 8];
            if crate::sys::mem::RemoteMem::of_thread(pid, tid)
                .read(args, &mut flags)
                .is_ok()
            {
                return Ok(u64::from_ne_bytes(flags) & libc::CLONE_VFORK as u64 != 0);
            }
        }
    }
    Ok(true)
}

/// Whether a `/proc/PID/task/TID/syscall` line names a syscall that waits for a vfork
/// child: `vfork`, `clone` with `CLONE_VFORK` in its flags (first argument), or `clone3`
/// (its flags are in memory: [`in_vfork_wait`] reads them).
pub fn parse_vfork_syscall(text: &str) -> bool {
    let mut fields = text.split_whitespace();
    let flags = |f: Option<&str>| {
        f.and_then(|f| f.strip_prefix("0x"))
            .and_then(|f| u64::from_str_radix(f, 16).ok())
    };
    match fields.next().and_then(|nr| nr.parse::<i64>().ok()) {
        Some(libc::SYS_vfork) | Some(libc::SYS_clone3) => true,
        Some(libc::SYS_clone) => {
            flags(fields.next()).is_some_and(|f| f & libc::CLONE_VFORK as u64 != 0)
        }
        _ => false,
    }
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

/// What `/proc/PID/fdinfo/N` says about a timerfd (`timerfd_show` in `fs/timerfd.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerFdInfo {
    /// `clockid:` (`CLOCK_REALTIME`, `CLOCK_MONOTONIC`, ...).
    pub clockid: i32,
    /// `ticks:`: expirations counted and not yet read.
    pub ticks: u64,
    /// `settime flags:` (octal): `TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`.
    pub settime_flags: u32,
    /// `it_value:` as (seconds, nanoseconds): the time remaining to the next expiry,
    /// 0 when disarmed or expired.
    pub value: (u64, u32),
    /// `it_interval:` as (seconds, nanoseconds).
    pub interval: (u64, u32),
}

/// One `inotify wd:` line of `/proc/PID/fdinfo/N` (`inotify_fdinfo` in
/// `fs/notify/fdinfo.c`): one watch of an inotify instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatchInfo {
    /// The watch descriptor.
    pub wd: i32,
    /// Inode number of the watched file.
    pub ino: u64,
    /// Device of its filesystem, as the kernel encodes it (`MAJOR << 20 | MINOR`).
    pub sdev: u32,
    /// The events watched, with `IN_ONESHOT` and `IN_EXCL_UNLINK`.
    pub mask: u32,
    /// Its file handle as (type, bytes), when the kernel printed one.
    pub handle: Option<(i32, Vec<u8>)>,
}

impl InotifyWatchInfo {
    /// The device as `stat(2)` reports it in `st_dev`.
    pub fn dev(&self) -> u64 {
        let (major, minor) = (u64::from(self.sdev >> 20), u64::from(self.sdev & 0xf_ffff));
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }
}

impl FdInfo {
    /// The timerfd lines, or which one is missing or malformed.
    pub fn timerfd(&self) -> Result<TimerFdInfo, &'static str> {
        let pair = |key: &'static str| -> Result<(u64, u32), &'static str> {
            let v = self.get(key).ok_or(key)?;
            let (s, ns) = v
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .and_then(|v| v.split_once(','))
                .ok_or(key)?;
            let sec = s.trim().parse().map_err(|_| key)?;
            let nsec: u32 = ns.trim().parse().map_err(|_| key)?;
            if nsec >= 1_000_000_000 {
                return Err(key);
            }
            Ok((sec, nsec))
        };
        Ok(TimerFdInfo {
            clockid: self
                .get("clockid")
                .and_then(|v| v.parse().ok())
                .ok_or("clockid")?,
            ticks: self
                .get("ticks")
                .and_then(|v| v.parse().ok())
                .ok_or("ticks")?,
            settime_flags: self
                .get("settime flags")
                .and_then(|v| u32::from_str_radix(v, 8).ok())
                .ok_or("settime flags")?,
            value: pair("it_value")?,
            interval: pair("it_interval")?,
        })
    }

    /// The `sigmask:` of a signalfd (bit N-1 for signal N), or `None`.
    pub fn signalfd_mask(&self) -> Option<u64> {
        u64::from_str_radix(self.get("sigmask")?, 16).ok()
    }

    /// Every `inotify wd:` line, in the kernel's order, or the first malformed one.
    pub fn inotify_watches(&self) -> Result<Vec<InotifyWatchInfo>, String> {
        self.extra
            .iter()
            .filter(|(k, _)| k == "inotify wd")
            .map(|(_, v)| parse_inotify_watch(v).ok_or_else(|| format!("inotify wd:{v}")))
            .collect()
    }
}

/// Parses what follows `inotify wd:` on a watch line: `%x ino:%lx sdev:%x mask:%x
/// ignored_mask:%x [fhandle-bytes:%x fhandle-type:%x f_handle:%02x...]`.
fn parse_inotify_watch(rest: &str) -> Option<InotifyWatchInfo> {
    let mut fields = rest.split_ascii_whitespace();
    let wd = i32::from_str_radix(fields.next()?, 16).ok()?;
    let (mut ino, mut sdev, mut mask) = (None, None, None);
    let (mut bytes, mut kind, mut handle) = (None, None, None);
    for field in fields {
        let (key, value) = field.split_once(':')?;
        match key {
            "ino" => ino = Some(u64::from_str_radix(value, 16).ok()?),
            "sdev" => sdev = Some(u32::from_str_radix(value, 16).ok()?),
            "mask" => mask = Some(u32::from_str_radix(value, 16).ok()?),
            "fhandle-bytes" => bytes = Some(usize::from_str_radix(value, 16).ok()?),
            "fhandle-type" => kind = Some(i32::from_str_radix(value, 16).ok()?),
            "f_handle" => {
                if value.len() % 2 != 0 || !value.is_ascii() {
                    return None;
                }
                let decoded: Option<Vec<u8>> = (0..value.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
                    .collect();
                handle = Some(decoded?);
            }
            _ => {}
        }
    }
    let handle = match (bytes, kind, handle) {
        (Some(n), Some(t), Some(h)) if h.len() == n => Some((t, h)),
        (None, None, None) => None,
        _ => return None,
    };
    Some(InotifyWatchInfo {
        wd,
        ino: ino?,
        sdev: sdev?,
        mask: mask?,
        handle,
    })
}

/// Whether capability `bit` (`CAP_SYS_ADMIN` = 21, ...) is in the calling process's
/// effective set (`CapEff:` of `/proc/self/status`); false when that cannot be read.
pub fn has_effective_cap(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| bit < 64 && caps & (1 << bit) != 0)
}

/// The `fanotify flags:%x event-flags:%x` line of a fanotify group's fdinfo
/// (`fanotify_show_fdinfo` in `fs/notify/fdinfo.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanotifyGroupInfo {
    /// The `fanotify_init` flags the group was made with (`FAN_CLASS_*`, `FAN_REPORT_*`,
    /// `FAN_UNLIMITED_*`, `FAN_CLOEXEC`, `FAN_NONBLOCK`, ...).
    pub flags: u32,
    /// Its `event_f_flags`: the status flags of the descriptors events carry.
    pub event_flags: u32,
}

/// What a fanotify mark is on, as its fdinfo line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanotifyObject {
    /// `fanotify ino:%lx sdev:%x ...`: an inode, with its file handle when the kernel
    /// printed one.
    Inode {
        /// Inode number.
        ino: u64,
        /// Device of its filesystem, as the kernel encodes it (`MAJOR << 20 | MINOR`).
        sdev: u32,
        /// Its file handle as (type, bytes).
        handle: Option<(i32, Vec<u8>)>,
    },
    /// `fanotify mnt_id:%x ...`: a mount, by its id (as in `/proc/PID/mountinfo`).
    Mount {
        /// The mount id.
        mnt_id: u64,
    },
    /// `fanotify sdev:%x ...`: a whole filesystem (`FAN_MARK_FILESYSTEM`).
    Filesystem {
        /// Its device, as the kernel encodes it.
        sdev: u32,
    },
    /// A kind of mark this version does not know (`fanotify mnt_ns:`, ...): the key.
    Other(String),
}

/// One mark line of a fanotify group's fdinfo (`fanotify_fdinfo` in
/// `fs/notify/fdinfo.c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanotifyMarkInfo {
    /// What the mark is on.
    pub object: FanotifyObject,
    /// `mflags:`: `FAN_MARK_IGNORED_SURV_MODIFY`, `FAN_MARK_EVICTABLE`, `FAN_MARK_IGNORE`.
    pub mflags: u32,
    /// `mask:`: the events, with `FAN_ONDIR` and `FAN_EVENT_ON_CHILD`.
    pub mask: u32,
    /// `ignored_mask:`.
    pub ignored_mask: u32,
}

/// `sdev` as the kernel encodes it (`MAJOR << 20 | MINOR`) turned into `st_dev`.
pub fn kernel_dev(sdev: u32) -> u64 {
    let (major, minor) = (u64::from(sdev >> 20), u64::from(sdev & 0xf_ffff));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

impl FdInfo {
    /// The `fanotify flags:` line of a fanotify group, or `None`.
    pub fn fanotify_group(&self) -> Option<FanotifyGroupInfo> {
        let rest = self.get("fanotify flags")?;
        let (flags, event) = rest.split_once(' ')?;
        let event = event.trim().strip_prefix("event-flags:")?;
        Some(FanotifyGroupInfo {
            flags: u32::from_str_radix(flags.trim(), 16).ok()?,
            event_flags: u32::from_str_radix(event, 16).ok()?,
        })
    }

    /// Every mark line of a fanotify group, in the kernel's order, or the first
    /// malformed one.
    pub fn fanotify_marks(&self) -> Result<Vec<FanotifyMarkInfo>, String> {
        self.extra
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("fanotify ")?, v)))
            .filter(|(k, _)| *k != "flags")
            .map(|(k, v)| parse_fanotify_mark(k, v).ok_or_else(|| format!("fanotify {k}:{v}")))
            .collect()
    }
}

/// Parses one fanotify mark line: `KEY` is what came before the first colon (`ino`,
/// `mnt_id`, `sdev`, ...), `rest` the rest: `%x [sdev:%x] mflags:%x mask:%x
/// ignored_mask:%x [fhandle-bytes:%x fhandle-type:%x f_handle:%02x...]`.
fn parse_fanotify_mark(key: &str, rest: &str) -> Option<FanotifyMarkInfo> {
    let mut fields = rest.split_ascii_whitespace();
    let first = u64::from_str_radix(fields.next()?, 16).ok()?;
    let (mut sdev, mut mflags, mut mask, mut ignored) = (None, None, None, None);
    let (mut bytes, mut kind, mut handle) = (None, None, None);
    for field in fields {
        let (k, value) = field.split_once(':')?;
        match k {
            "sdev" => sdev = Some(u32::from_str_radix(value, 16).ok()?),
            "mflags" => mflags = Some(u32::from_str_radix(value, 16).ok()?),
            "mask" => mask = Some(u32::from_str_radix(value, 16).ok()?),
            "ignored_mask" => ignored = Some(u32::from_str_radix(value, 16).ok()?),
            "fhandle-bytes" => bytes = Some(usize::from_str_radix(value, 16).ok()?),
            "fhandle-type" => kind = Some(i32::from_str_radix(value, 16).ok()?),
            "f_handle" => handle = Some(hex_bytes(value)?),
            _ => {}
        }
    }
    let handle = match (bytes, kind, handle) {
        (Some(n), Some(t), Some(h)) if h.len() == n => Some((t, h)),
        (None, None, None) => None,
        _ => return None,
    };
    let object = match key {
        "ino" => FanotifyObject::Inode {
            ino: first,
            sdev: sdev?,
            handle,
        },
        "mnt_id" => FanotifyObject::Mount { mnt_id: first },
        "sdev" => FanotifyObject::Filesystem {
            sdev: u32::try_from(first).ok()?,
        },
        other => FanotifyObject::Other(other.to_owned()),
    };
    Some(FanotifyMarkInfo {
        object,
        mflags: mflags?,
        mask: mask?,
        ignored_mask: ignored?,
    })
}

/// Decodes `%02x...` hex bytes.
fn hex_bytes(value: &str) -> Option<Vec<u8>> {
    if value.len() % 2 != 0 || !value.is_ascii() {
        return None;
    }
    (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
        .collect()
}

/// The mount point of mount `mnt_id` in the mount namespace of process `pid` (from
/// `/proc/PID/mountinfo`), `None` when it has no such mount.
pub fn mount_point_by_id(pid: i32, mnt_id: u64) -> Result<Option<PathBuf>, ProcError> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = read(pid, path.clone())?;
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(id), Some(point)) = (f.next(), f.nth(3)) else {
            return Err(ProcError::Parse {
                path: path.into(),
                what: "ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ...",
            });
        };
        if id.parse::<u64>().ok() == Some(mnt_id) {
            return Ok(Some(PathBuf::from(unescape_octal(point))));
        }
    }
    Ok(None)
}

/// The mount points, in the mount namespace of process `pid`, of the filesystem on
/// device `dev` (`st_dev` encoding), from `/proc/PID/mountinfo`: those that mount the
/// filesystem's root first.
pub fn mount_points_of(pid: i32, dev: u64) -> Result<Vec<PathBuf>, ProcError> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = read(pid, path.clone())?;
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let want = format!("{major}:{minor}");
    let mut found: Vec<(bool, PathBuf)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(_id), Some(_parent), Some(devno), Some(root), Some(point)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(ProcError::Parse {
                path: path.into(),
                what: "ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ...",
            });
        };
        if devno == want {
            found.push((root != "/", PathBuf::from(unescape_octal(point))));
        }
    }
    found.sort_by_key(|(not_root, _)| *not_root);
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Undoes the kernel's `\ooo` escapes of spaces, tabs, newlines and backslashes in
/// mountinfo paths.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .try_fold(0u32, |n, &c| {
                    (b'0'..=b'7')
                        .contains(&c)
                        .then(|| n * 8 + u32::from(c - b'0'))
                })
                .and_then(|n| u8::try_from(n).ok())
        });
        if let (b'\\', Some(c)) = (b[i], code) {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn a_vfork_wait_is_told_from_other_syscalls() {
        assert!(parse_vfork_syscall(
            "58 0x1 0x2 0x3 0x4 0x5 0x6 0x7ffc 0x7f00\n"
        ));
        assert!(parse_vfork_syscall(
            "435 0x7ffc 0x58 0x0 0x0 0x0 0x0 0x7ffc 0x7f00\n"
        ));
        // clone(CLONE_VM | CLONE_VFORK | SIGCHLD), and a plain fork-like clone.
        assert!(parse_vfork_syscall(
            "56 0x4111 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00\n"
        ));
        assert!(!parse_vfork_syscall(
            "56 0x1200011 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00\n"
        ));
        assert!(!parse_vfork_syscall(
            "0 0x3 0x7ffc 0x1 0x0 0x0 0x0 0x7ffc 0x7f00\n"
        ));
        assert!(!parse_vfork_syscall("running\n"));
        assert!(!parse_vfork_syscall("-1 0x7ffc 0x7f00\n"));
    }

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
    fn zombie_exit_code_is_field_52() {
        // A real zombie's line (killed by SIGTERM: status 15), comm with a space and `)`.
        let text = "77 (a) b) Z 76 76 76 0 -1 4227084 45 0 0 0 0 0 0 0 20 0 1 0 123 0 0 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 15\n";
        assert_eq!(parse_exit_code(text), Some(15));
        assert_eq!(parse_exit_code("77 (a) Z 76 76"), None);
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
    fn timerfd_lines() {
        let text = "pos:\t0\nflags:\t02004002\nmnt_id:\t17\nino:\t1038\nclockid: 7\nticks: 3\n\
                    settime flags: 03\nit_value: (99, 987789876)\nit_interval: (0, 500000000)\n";
        let t = parse_fdinfo(text).unwrap().timerfd().unwrap();
        assert_eq!(
            t,
            TimerFdInfo {
                clockid: 7,
                ticks: 3,
                settime_flags: 3,
                value: (99, 987_789_876),
                interval: (0, 500_000_000),
            }
        );
        let broken = parse_fdinfo("pos: 0\nflags: 02\nclockid: 1\nticks: 0\n").unwrap();
        assert_eq!(broken.timerfd(), Err("settime flags"));
    }

    #[test]
    fn signalfd_mask_line() {
        let info = parse_fdinfo("pos:\t0\nflags:\t02\nsigmask:\t0000000000000a00\n").unwrap();
        assert_eq!(info.signalfd_mask(), Some(0xa00));
    }

    #[test]
    fn fanotify_lines() {
        let text = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\n\
            fanotify flags:6 event-flags:88002\n\
            fanotify sdev:15 mflags:0 mask:8 ignored_mask:0\n\
            fanotify mnt_id:1b mflags:0 mask:40000020 ignored_mask:0\n\
            fanotify ino:98c2b1 sdev:fe00000 mflags:40 mask:a ignored_mask:20 fhandle-bytes:8 fhandle-type:1 f_handle:b1c298005663d793\n\
            fanotify mnt_ns:effffff9 mflags:0 mask:1000000 ignored_mask:0\n";
        let info = parse_fdinfo(text).unwrap();
        assert_eq!(
            info.fanotify_group(),
            Some(FanotifyGroupInfo {
                flags: 6,
                event_flags: 0x88002
            })
        );
        let marks = info.fanotify_marks().unwrap();
        assert_eq!(marks.len(), 4);
        assert_eq!(marks[0].object, FanotifyObject::Filesystem { sdev: 0x15 });
        assert_eq!(marks[1].object, FanotifyObject::Mount { mnt_id: 27 });
        assert_eq!((marks[1].mask, marks[1].ignored_mask), (0x4000_0020, 0));
        assert_eq!(
            marks[2].object,
            FanotifyObject::Inode {
                ino: 0x98c2b1,
                sdev: 0xfe0_0000,
                handle: Some((1, vec![0xb1, 0xc2, 0x98, 0, 0x56, 0x63, 0xd7, 0x93]))
            }
        );
        assert_eq!((marks[2].mflags, marks[2].ignored_mask), (0x40, 0x20));
        assert_eq!(marks[3].object, FanotifyObject::Other("mnt_ns".into()));
        assert_eq!(kernel_dev(0xfe0_0000), 0xfe00);
        let bad =
            parse_fdinfo("pos: 0\nflags: 0\nfanotify ino:zz sdev:0 mflags:0 mask:2\n").unwrap();
        assert!(bad.fanotify_marks().is_err());
    }

    #[test]
    fn inotify_watch_lines() {
        let text = "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n\
            inotify wd:2 ino:263 sdev:fe00001 mask:80000fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:6302000000000000\n\
            inotify wd:1a ino:3c4a7 sdev:fe00000 mask:2 ignored_mask:0\n";
        let w = parse_fdinfo(text).unwrap().inotify_watches().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].wd, w[0].ino, w[0].mask), (2, 0x263, 0x8000_0fff));
        assert_eq!(w[0].handle, Some((1, vec![0x63, 2, 0, 0, 0, 0, 0, 0])));
        assert_eq!(w[0].dev(), 0xfe01);
        assert_eq!(
            (w[1].wd, w[1].ino, w[1].handle.clone()),
            (0x1a, 0x3c4a7, None)
        );
        let bad = parse_fdinfo("pos: 0\nflags: 0\ninotify wd:1 ino:zz sdev:0 mask:2\n").unwrap();
        assert!(bad.inotify_watches().is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_octal("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
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
