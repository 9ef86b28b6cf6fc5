//! Character devices that can be opened again by path with the same meaning: the memory
//! devices (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`) and
//! terminals (pseudo-terminal slaves `/dev/pts/N`, `/dev/tty`, virtual consoles, serial
//! lines).
//!
//! A terminal is saved by path only: restore opens the same device again, which is right
//! when the restored tree runs on the terminal it was dumped from (the user's shell) and
//! fails, naming the path, when that terminal is gone. Pseudo-terminal pairs whose master
//! the tree holds are the `tty` kind's (asked first); it also writes this kind's record
//! for a slave whose master is outside the tree, restored here. The master of a legacy
//! BSD pseudo-terminal is not claimed: opening it again would make a new, unrelated
//! terminal. Any other character device is left unclaimed, so the dump stops naming it.
//!
//! A device node removed after it was opened (a `mknod`'d copy of `/dev/null`, a node of a
//! terminal) is saved with its device number and mode; restore makes a node of the same
//! type, device number and mode under a temporary name in its old directory (`mknod`,
//! which needs `CAP_MKNOD`), opens it and removes it again, so the open file is of a
//! removed node of the same device, as it was.

use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode, OFlags};

use super::common::{DELETED, open_flags, set_position_and_flags};
use super::kind::{
    Description, DumpSink, External, FileError, FileKind, LiveFile, RestoreCtx, Saved,
};

/// `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom` and terminals.
pub struct CharDeviceKind;

/// `MEM_MAJOR` (`include/uapi/linux/major.h`).
const MEM_MAJOR: u32 = 1;
/// Minors of `MEM_MAJOR` that hold no state: null, zero, full, random, urandom
/// (`drivers/char/mem.c`).
const STATELESS_MEM_MINORS: [u32; 5] = [3, 5, 7, 8, 9];
/// `TTYAUX_MAJOR`, whose minor 2 is `/dev/ptmx`.
const TTYAUX_MAJOR: u32 = 5;
/// Minor of `/dev/ptmx` under [`TTYAUX_MAJOR`].
const PTMX_MINOR: u32 = 2;
/// `PTY_MASTER_MAJOR`: masters of the legacy BSD pseudo-terminals.
const PTY_MASTER_MAJOR: u32 = 2;
/// `UNIX98_PTY_MASTER_MAJOR` and the seven majors after it.
const UNIX98_PTY_MASTER_MAJORS: std::ops::RangeInclusive<u32> = 128..=135;

fn is_stateless_mem(major: u32, minor: u32) -> bool {
    major == MEM_MAJOR && STATELESS_MEM_MINORS.contains(&minor)
}

fn is_pty_master(major: u32, minor: u32) -> bool {
    (major == TTYAUX_MAJOR && minor == PTMX_MINOR)
        || major == PTY_MASTER_MAJOR
        || UNIX98_PTY_MASTER_MAJORS.contains(&major)
}

impl FileKind for CharDeviceKind {
    fn name(&self) -> &'static str {
        "character device"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        if FileType::from_raw_mode(file.stat.st_mode) != FileType::CharacterDevice {
            return false;
        }
        let (major, minor) = (
            rustix::fs::major(file.stat.st_rdev),
            rustix::fs::minor(file.stat.st_rdev),
        );
        // isatty is TCGETS: it reads the settings and changes nothing.
        is_stateless_mem(major, minor)
            || (!is_pty_master(major, minor) && rustix::termios::isatty(&file.file))
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let unlinked = file.stat.st_nlink == 0;
        let path = match file.link.strip_suffix(DELETED) {
            Some(path) if unlinked => path,
            _ => &file.link,
        };
        if !path.starts_with('/') {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("character device {path} without a name to open it by"),
            });
        }
        let (major, minor) = (
            rustix::fs::major(file.stat.st_rdev),
            rustix::fs::minor(file.stat.st_rdev),
        );
        Ok(open_file::Kind::CharDevice(proto::CharDevice {
            path: path.to_owned(),
            major,
            minor,
            terminal: !is_stateless_mem(major, minor),
            unlinked,
            mode: file.stat.st_mode,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::CharDevice(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::CharDevice(dev)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a character device".into(),
            });
        };
        let fail = |op, e: rustix::io::Errno| FileError::Restore {
            id: file.id,
            what: dev.path.clone(),
            op,
            source: e.into(),
        };
        // O_NOCTTY: which terminal is a session's controlling one is the session's
        // business, not a side effect of reopening a descriptor. O_NONBLOCK: a serial line
        // without carrier must not hang the open; the saved flag is set afterwards.
        let flags = open_flags(file.flags) | OFlags::NOCTTY | OFlags::NONBLOCK;
        let fd = if dev.unlinked {
            recreate_removed(file.id, dev, flags)?
        } else {
            rustix::fs::open(&dev.path, flags, Mode::empty()).map_err(|e| fail("open", e))?
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| fail("fstat", e))?;
        let (major, minor) = (
            rustix::fs::major(stat.st_rdev),
            rustix::fs::minor(stat.st_rdev),
        );
        let is_chr = FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice;
        if !is_chr || (major, minor) != (dev.major, dev.minor) {
            let now = if is_chr {
                format!("device {major}:{minor}")
            } else {
                format!(
                    "a {}",
                    crate::pipe::file_type_name(FileType::from_raw_mode(stat.st_mode))
                )
            };
            return Err(FileError::Changed {
                id: file.id,
                path: dev.path.clone(),
                what: format!(
                    "it was character device {}:{}, it is now {now}",
                    dev.major, dev.minor
                ),
            });
        }
        set_position_and_flags(fd.as_fd(), file, &dev.path)?;
        Ok(fd)
    }

    /// A terminal belongs to the session that ran the tree: restore puts the caller's in
    /// its place when asked (or at fds 0-2), else reopens it by path.
    fn external(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Option<External> {
        match &file.kind {
            Some(open_file::Kind::CharDevice(c)) if c.terminal => Some(External {
                what: format!("terminal {}", c.path),
                pending: 0,
                terminal: true,
                pipe: None,
                reconnect: None,
            }),
            _ => None,
        }
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::CharDevice(x)) => {
                let tty = if x.terminal { "terminal " } else { "" };
                let gone = if x.unlinked {
                    format!(" (removed, mode {:o})", x.mode & 0o7777)
                } else {
                    String::new()
                };
                format!("{tty}{} ({}:{}){gone}", x.path, x.major, x.minor)
            }
            _ => "not a character device".into(),
        };
        Description { text, pipe: None }
    }
}

/// Makes a node of the saved device `dev` (its type, device number and permission bits)
/// under a temporary name in its old directory, opens it with `flags` and removes it.
fn recreate_removed(id: u64, dev: &proto::CharDevice, flags: OFlags) -> Result<OwnedFd, FileError> {
    let fail = |op, e: rustix::io::Errno| FileError::Restore {
        id,
        what: format!("{}{DELETED}", dev.path),
        op,
        source: e.into(),
    };
    let dir = std::path::Path::new(&dev.path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("/tmp"));
    let temp = dir.join(format!(".pipecr-dev-{}-{id}", std::process::id()));
    let mode = if dev.mode == 0 {
        0o600
    } else {
        dev.mode & 0o7777
    };
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &temp,
        FileType::CharacterDevice,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(dev.major, dev.minor),
    )
    .map_err(|e| fail("mknod", e))?;
    // The umask may have taken bits away: the saved mode, exactly.
    let opened = rustix::fs::chmod(&temp, Mode::from_raw_mode(mode))
        .map_err(|e| fail("chmod", e))
        .and_then(|()| rustix::fs::open(&temp, flags, Mode::empty()).map_err(|e| fail("open", e)));
    let removed = rustix::fs::unlink(&temp).map_err(|e| fail("unlink", e));
    let fd = opened?;
    removed?;
    Ok(fd)
}
