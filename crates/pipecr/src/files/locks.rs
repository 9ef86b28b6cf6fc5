//! File locks, generic per-open-file state that any kind of open file may hold: reading
//! them from `/proc/PID/fdinfo/N` "lock:" lines (the format of `/proc/locks`,
//! `lock_get_status` in the kernel's `fs/locks.c`), and taking them again.
//!
//! - `flock(2)` locks and open file description locks (`F_OFD_SETLK`) belong to the open
//!   file: saved in its `OpenFile.locks` ([`open_file_locks`]), taken again by whoever
//!   creates the open file, right after it is created ([`take_open_file_locks`]).
//! - POSIX record locks (`F_SETLK`) belong to a process (its descriptor table): saved in
//!   its `Core.posix_locks` with the descriptor they were set through
//!   ([`posix_locks`]); restore takes them from inside the process, once nothing of its
//!   table will be closed any more (closing any descriptor of the file would drop them).
//!
//! fdinfo lists only the locks held through that open file (and, for POSIX locks, by
//! that table), never the waits blocked on a lock: a process blocked in `F_SETLKW` or
//! `flock` was in a syscall and retries it when restored.
//! - Leases (`F_SETLEASE`) belong to the open file too: saved in its `OpenFile.lease`
//!   ([`open_file_lease`]), taken again right after the open file is created
//!   ([`take_lease`]) and once more through each descriptor installed for it
//!   ([`renew_lease`]): the kernel sends a lease break to the file's owner
//!   (`F_SETOWN`, which taking a lease sets to the caller, so the saved owner is set again
//!   after it) with the descriptor it was taken through as `si_fd`. A lease being broken
//!   (a process waits to open the file) is refused: the break would have to be started
//!   again from outside the tree. A lease on a file whose name was removed (or a memfd)
//!   is refused too: its contents are read through a new open of it, which breaks a write
//!   lease, and the restorer keeps the new file open for writing until the tree runs,
//!   which no lease tolerates. Delegations (NFS servers) are refused.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use pipecr_image::proto::{self, FileLockKind};

use super::kind::FileError;
use crate::proc::FdInfo;

/// One "lock:" line of fdinfo (or one line of `/proc/locks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    /// `FLOCK`, `POSIX`, `OFDLCK`, `LEASE`, `DELEG`, ...
    pub class: String,
    /// `ADVISORY`, `MANDATORY`; for a lease `ACTIVE`, `BREAKING` or `BREAKER`.
    pub mode: String,
    /// `WRITE` rather than `READ`.
    pub write: bool,
    /// The holder's pid (-1 for OFD locks).
    pub pid: i32,
    /// The file's device (major, minor) and inode.
    pub dev: (u32, u32),
    /// Inode.
    pub ino: u64,
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive; `None` for `EOF`.
    pub end: Option<u64>,
}

impl LockLine {
    /// Parses `1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (the leading
    /// `N:` may be followed by `->` for a blocked waiter, which is not a lock held:
    /// `None`).
    pub fn parse(line: &str) -> Option<LockLine> {
        let mut cols = line.split_whitespace();
        cols.next()?.strip_suffix(':')?;
        let mut class = cols.next()?;
        if class == "->" {
            return None;
        }
        if class.is_empty() {
            class = cols.next()?;
        }
        let mode = cols.next()?;
        let access = cols.next()?;
        let pid: i32 = cols.next()?.parse().ok()?;
        let mut id = cols.next()?.split(':');
        let major = u32::from_str_radix(id.next()?, 16).ok()?;
        let minor = u32::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        let start: u64 = cols.next()?.parse().ok()?;
        let end = match cols.next()? {
            "EOF" => None,
            e => Some(e.parse().ok()?),
        };
        Some(LockLine {
            class: class.to_owned(),
            mode: mode.to_owned(),
            write: access == "WRITE",
            pid,
            dev: (major, minor),
            ino,
            start,
            end,
        })
    }

    fn to_proto(&self, kind: FileLockKind, fd: RawFd) -> proto::FileLock {
        let (start, len) = match kind {
            FileLockKind::Flock => (0, 0),
            _ => (
                self.start,
                self.end.map_or(0, |e| e.saturating_sub(self.start) + 1),
            ),
        };
        proto::FileLock {
            kind: kind as i32,
            write: self.write,
            start,
            len,
            fd,
        }
    }
}

fn lines(info: &FdInfo) -> impl Iterator<Item = LockLine> + '_ {
    info.extra
        .iter()
        .filter(|(k, _)| k == "lock")
        .filter_map(|(_, v)| LockLine::parse(v))
}

/// The flock and OFD locks the open file of descriptor `fd` of `pid` (described by
/// `info`) holds (its lease is [`open_file_lease`]'s); an error for a delegation.
pub fn open_file_locks(
    info: &FdInfo,
    pid: i32,
    fd: RawFd,
) -> Result<Vec<proto::FileLock>, FileError> {
    let mut out = Vec::new();
    for l in lines(info) {
        let kind = match l.class.as_str() {
            "FLOCK" => FileLockKind::Flock,
            "OFDLCK" => FileLockKind::Ofd,
            "POSIX" | "LEASE" => continue,
            other => {
                return Err(FileError::Unsupported {
                    pid,
                    fd,
                    kind: format!("a file with a {other} lock (lease or delegation)"),
                });
            }
        };
        out.push(l.to_proto(kind, 0));
    }
    Ok(out)
}

/// The lease the open file of descriptor `fd` of `pid` (described by `info`, with
/// `nlink` links to its file) holds, if any; an error, naming it, for a lease being
/// broken or one on a file with no name left (see the module documentation).
pub fn open_file_lease(
    info: &FdInfo,
    nlink: u64,
    pid: i32,
    fd: RawFd,
) -> Result<Option<proto::FileLease>, FileError> {
    let Some(l) = lines(info).find(|l| l.class == "LEASE") else {
        return Ok(None);
    };
    let refuse = |why: &str| FileError::Unsupported {
        pid,
        fd,
        kind: format!("a file with a {why}"),
    };
    if l.mode != "ACTIVE" {
        return Err(refuse(
            "lease being broken (a process waits to open the file; dump again once the lease is released)",
        ));
    }
    if nlink == 0 {
        return Err(refuse(
            "lease whose name was removed (or a memfd with a lease)",
        ));
    }
    Ok(Some(proto::FileLease { write: l.write }))
}

/// `F_RDLCK` or `F_WRLCK` for a saved lease.
fn lease_type(lease: &proto::FileLease) -> i32 {
    i32::from(if lease.write {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    } as libc::c_short)
}

/// Takes again, on `fd` (the open file `file` just created), the lease it held; the
/// kernel's refusal (someone has the file open in a way the lease does not allow) names
/// the lease.
pub fn take_lease(file: &proto::OpenFile, fd: BorrowedFd<'_>) -> Result<(), FileError> {
    let Some(lease) = &file.lease else {
        return Ok(());
    };
    crate::sys::owner::set_file_lease(fd, lease_type(lease)).map_err(|source| FileError::Restore {
        id: file.id,
        what: format!(
            "its {} lease (held by {})",
            if lease.write { "write" } else { "read" },
            holders(fd)
        ),
        op: "fcntl(F_SETLEASE)",
        source,
    })
}

/// Takes the lease of `file` again through `fd`, a descriptor just installed for it, so
/// that a break names that descriptor (`si_fd`) and goes to the calling process; then
/// gives the file its saved owner back, which taking a lease replaced. Returns false when
/// that owner does not exist yet (see
/// [`restore_owner_and_signal`](super::common::restore_owner_and_signal)).
pub fn renew_lease(file: &proto::OpenFile, fd: BorrowedFd<'_>) -> Result<bool, FileError> {
    if file.lease.is_none() {
        return Ok(true);
    }
    take_lease(file, fd)?;
    super::common::restore_owner_and_signal(fd, file)
}

/// The POSIX record locks shown on descriptor `fd` (described by `info`), each with the
/// pid that holds it.
pub fn posix_locks(info: &FdInfo, fd: RawFd) -> Vec<(i32, proto::FileLock)> {
    lines(info)
        .filter(|l| l.class == "POSIX")
        .map(|l| (l.pid, l.to_proto(FileLockKind::Posix, fd)))
        .collect()
}

/// The `struct flock` of a saved lock (`SEEK_SET`).
pub fn flock_struct(lock: &proto::FileLock) -> libc::flock {
    libc::flock {
        l_type: if lock.write {
            libc::F_WRLCK
        } else {
            libc::F_RDLCK
        } as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: lock.start as libc::off_t,
        l_len: lock.len as libc::off_t,
        l_pid: 0,
    }
}

/// How a lock is named in messages.
pub fn describe_lock(lock: &proto::FileLock) -> String {
    let kind = match FileLockKind::try_from(lock.kind) {
        Ok(FileLockKind::Flock) => "flock",
        Ok(FileLockKind::Posix) => "POSIX",
        Ok(FileLockKind::Ofd) => "OFD",
        _ => "unknown",
    };
    let access = if lock.write { "write" } else { "read" };
    match FileLockKind::try_from(lock.kind) {
        Ok(FileLockKind::Flock) => format!("{kind} {access} lock"),
        _ if lock.len == 0 => format!("{kind} {access} lock on bytes {}..EOF", lock.start),
        _ => format!(
            "{kind} {access} lock on bytes {}..{}",
            lock.start,
            lock.start + lock.len
        ),
    }
}

/// How a lease is named in messages: `read lease`, `write lease`.
pub fn describe_lease(lease: &proto::FileLease) -> String {
    format!("{} lease", if lease.write { "write" } else { "read" })
}

/// Who holds a lock that conflicts with `lock` on the file of `fd`, from `/proc/locks`:
/// the pids of the other holders of any lock on the same file, for the message.
pub fn holders(fd: BorrowedFd<'_>) -> String {
    let Ok(st) = rustix::fs::fstat(fd) else {
        return "another process".to_owned();
    };
    let dev = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut pids: Vec<String> = text
        .lines()
        .filter_map(LockLine::parse)
        .filter(|l| l.dev == dev && l.ino == st.st_ino)
        .map(|l| {
            if l.pid > 0 {
                format!("pid {} ({} lock)", l.pid, l.class)
            } else {
                format!("an open file of another process ({} lock)", l.class)
            }
        })
        .collect();
    pids.dedup();
    if pids.is_empty() {
        "another process".to_owned()
    } else {
        pids.join(", ")
    }
}

/// Takes again, on `fd` (the open file `file` just created), the flock and OFD locks it
/// held; a lock held by a process outside the tree makes it fail, naming that process.
pub fn take_open_file_locks(file: &proto::OpenFile, fd: BorrowedFd<'_>) -> Result<(), FileError> {
    for lock in &file.locks {
        let result = match FileLockKind::try_from(lock.kind) {
            Ok(FileLockKind::Flock) => rustix::fs::flock(
                fd,
                if lock.write {
                    rustix::fs::FlockOperation::NonBlockingLockExclusive
                } else {
                    rustix::fs::FlockOperation::NonBlockingLockShared
                },
            )
            .map_err(std::io::Error::from),
            Ok(FileLockKind::Ofd) => {
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_SETLK(&flock_struct(lock)))
                    .map(drop)
                    .map_err(std::io::Error::from)
            }
            _ => {
                return Err(FileError::Invalid {
                    id: file.id,
                    reason: format!("a lock of kind {} held by an open file", lock.kind),
                });
            }
        };
        if let Err(source) = result {
            if source.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(FileError::LockHeld {
                    id: file.id,
                    lock: describe_lock(lock),
                    holder: holders(fd),
                });
            }
            return Err(FileError::Restore {
                id: file.id,
                what: describe_lock(lock),
                op: "take the lock",
                source,
            });
        }
    }
    let _ = fd.as_raw_fd();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines() {
        let l = LockLine::parse("1: POSIX  ADVISORY  WRITE 1234 08:01:5678 100 199").unwrap();
        assert_eq!(
            (
                l.class.as_str(),
                l.write,
                l.pid,
                l.dev,
                l.ino,
                l.start,
                l.end
            ),
            ("POSIX", true, 1234, (8, 1), 5678, 100, Some(199))
        );
        assert_eq!(l.to_proto(FileLockKind::Posix, 3).len, 100);
        let l = LockLine::parse("2: OFDLCK ADVISORY  READ  -1 00:1f:42 0 EOF").unwrap();
        assert_eq!(
            (l.class.as_str(), l.write, l.pid, l.end),
            ("OFDLCK", false, -1, None)
        );
        assert_eq!(l.to_proto(FileLockKind::Ofd, 0).len, 0);
        let l = LockLine::parse("3: FLOCK  ADVISORY  WRITE 77 fd:00:9 0 EOF").unwrap();
        assert_eq!(l.dev, (0xfd, 0));
        assert!(LockLine::parse("1: -> POSIX  ADVISORY  WRITE 5 08:01:5678 0 EOF").is_none());
        assert!(LockLine::parse("garbage").is_none());
    }

    fn info_with(lock: &str) -> FdInfo {
        FdInfo {
            pos: 0,
            flags: 0,
            cloexec: false,
            mnt_id: 0,
            ino: None,
            extra: vec![("lock".to_owned(), lock.to_owned())],
        }
    }

    #[test]
    fn leases() {
        let active = info_with("1: LEASE  ACTIVE    READ  4242 fd:00:9 0 EOF");
        assert_eq!(
            open_file_lease(&active, 1, 7, 10).unwrap(),
            Some(proto::FileLease { write: false })
        );
        // Not a lock of the open file's own list: flock and OFD locks leave it alone.
        assert_eq!(open_file_locks(&active, 7, 10).unwrap(), vec![]);
        let write = info_with("1: LEASE  ACTIVE    WRITE 4242 fd:00:9 0 EOF");
        assert_eq!(
            open_file_lease(&write, 1, 7, 10).unwrap(),
            Some(proto::FileLease { write: true })
        );
        let breaking = info_with("1: LEASE  BREAKING  UNLCK 4242 fd:00:9 0 EOF");
        let err = open_file_lease(&breaking, 1, 7, 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("pid 7 fd 10: a file with a lease being broken"),
            "{err}"
        );
        let err = open_file_lease(&active, 0, 7, 10).unwrap_err().to_string();
        assert!(err.contains("lease whose name was removed"), "{err}");
        let deleg = info_with("1: DELEG  ACTIVE    READ  4242 fd:00:9 0 EOF");
        assert!(open_file_locks(&deleg, 7, 10).is_err());
        assert_eq!(
            open_file_lease(
                &info_with("1: FLOCK  ADVISORY  WRITE 77 fd:00:9 0 EOF"),
                1,
                7,
                10
            )
            .unwrap(),
            None
        );
    }
}
