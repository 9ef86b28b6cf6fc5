//! Regular files of pseudo filesystems: `/proc` (`/proc/stat`, `/proc/meminfo`,
//! `/proc/self/status`, `/proc/sys/...`), `/sys`, cgroup, debugfs, tracefs, securityfs,
//! configfs, efivarfs, pstore; told by the `statfs` type of the file's filesystem
//! ([`PSEUDO_FILESYSTEMS`]). Their bytes are the kernel's: an open file is saved as its
//! path and opened again by path with its status flags, and its position set with `lseek`
//! (a `seq_file`, as most `/proc` files are, reaches a `SEEK_SET` position by producing
//! its text again from the start; sysfs attributes and `/proc/PID/cmdline` take any
//! position). `top` keeps `/proc/stat` and `/proc/meminfo` open this way.
//!
//! Paths that name a process. `/proc/PID/fd/N` shows `/proc/self/...` already resolved to
//! `/proc/PID/...` (and `/proc/thread-self/...` to `/proc/PID/task/TID/...`). A path that
//! names the process holding the file is saved with that PID (`proc_pid`) and opened again
//! at [`Stage::AfterProcess`], in the restored process itself, once it exists: restore
//! gives it the same PID (with `--pidns`, in a namespace that mounts its own `/proc`, where
//! the PID is the same), so the path names the restored process. Refused at dump, naming
//! the process and the fd:
//! - a path naming another process (its `/proc` files depend on it being there, with that
//!   PID, when the holder's descriptors are installed, which only a process's own PID
//!   guarantees);
//! - a path naming a thread other than the main one (`/proc/PID/task/TID/...`,
//!   `/proc/thread-self/...` of a secondary thread): threads are restored after the
//!   descriptors.
//!
//! A path that names no process (`/proc/stat`, `/sys/...`) is opened in the first stage,
//! once, like any path-opened file; [`FileKind::prepare`] checks that each such path
//! still exists before any open file is created. One of a process's own `/proc` files
//! that several processes share (inherited across `fork`) is opened once in each at
//! restore: each has its own position from then on.

use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::{FileType, Mode};

use super::common::{
    check_identity, identity, looks_like_memfd, open_flags, set_position_and_flags,
};
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved, Stage};

/// The pseudo filesystems whose regular files this kind saves: `statfs` `f_type`, name.
pub const PSEUDO_FILESYSTEMS: &[(u64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6265_6570, "configfs"),
    (0xde5e_81e4, "efivarfs"),
    (0x6165_676c, "pstore"),
];

/// The name of pseudo filesystem `fs_type`, if it is one of [`PSEUDO_FILESYSTEMS`].
pub fn pseudo_filesystem(fs_type: u64) -> Option<&'static str> {
    PSEUDO_FILESYSTEMS
        .iter()
        .find(|(t, _)| *t == fs_type)
        .map(|(_, name)| *name)
}

/// Regular files of `/proc`, `/sys` and the other [`PSEUDO_FILESYSTEMS`].
pub struct PseudoFileKind;

/// The PID and, under `/task/`, the TID that a `/proc` path names: `/proc/12/status` is
/// `(12, None)`, `/proc/12/task/13/stat` is `(12, Some(13))`, `/proc/stat` is `None`.
fn proc_ids(path: &str) -> Option<(i32, Option<i32>)> {
    let rest = path.strip_prefix("/proc/")?;
    let mut parts = rest.split('/');
    let pid = parts.next()?.parse().ok()?;
    let tid = match (parts.next(), parts.next()) {
        (Some("task"), Some(tid)) => tid.parse().ok(),
        _ => None,
    };
    Some((pid, tid))
}

/// The `statfs` type of the filesystem `file` is on.
fn fs_type(file: &LiveFile) -> Option<u64> {
    rustix::fs::fstatfs(&file.file)
        .ok()
        .map(|fs| fs.f_type as u64)
}

impl FileKind for PseudoFileKind {
    fn name(&self) -> &'static str {
        "pseudo file"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        FileType::from_raw_mode(file.stat.st_mode) == FileType::RegularFile
            && !looks_like_memfd(file)
            && fs_type(file).is_some_and(|t| pseudo_filesystem(t).is_some())
    }

    fn dump(
        &self,
        file: &LiveFile,
        _sink: &mut DumpSink<'_>,
    ) -> Result<open_file::Kind, FileError> {
        let fs = fs_type(file).unwrap_or(0);
        let refuse = |why: String| FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind: format!(
                "{} file {} ({why})",
                pseudo_filesystem(fs).unwrap_or("pseudo"),
                file.link
            ),
        };
        if !file.link.starts_with('/') {
            return Err(refuse("outside the process's root".into()));
        }
        let mut proc_pid = 0;
        if fs == rustix::fs::PROC_SUPER_MAGIC as u64 {
            if let Some((pid, tid)) = proc_ids(&file.link) {
                if pid != file.pid {
                    return Err(refuse(format!(
                        "it names another process, pid {pid}; only a process's own /proc files are restored"
                    )));
                }
                if let Some(tid) = tid.filter(|t| *t != pid) {
                    return Err(refuse(format!(
                        "it names thread {tid}, which restore creates after the descriptors"
                    )));
                }
                proc_pid = pid;
            }
        }
        Ok(open_file::Kind::PseudoFile(proto::PseudoFile {
            path: file.link.clone(),
            fs_type: fs,
            proc_pid,
            identity: Some(identity(&file.stat)),
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::PseudoFile(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        // Paths that name no process exist now or never will: say so before anything is
        // created. (A process's own /proc files appear with the process.)
        for file in ctx.open_files()? {
            let Some(open_file::Kind::PseudoFile(p)) = &file.kind else {
                continue;
            };
            if p.proc_pid == 0 {
                if let Err(e) = rustix::fs::stat(p.path.as_str()) {
                    return Err(FileError::Restore {
                        id: file.id,
                        what: p.path.clone(),
                        op: "stat (the file is not on this system)",
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn stage(&self, file: &proto::OpenFile) -> Stage {
        match &file.kind {
            Some(open_file::Kind::PseudoFile(p)) if p.proc_pid != 0 => Stage::AfterProcess,
            _ => Stage::Open,
        }
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::PseudoFile(p)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a pseudo file".into(),
            });
        };
        let fd = rustix::fs::open(p.path.as_str(), open_flags(file.flags), Mode::empty()).map_err(
            |e| FileError::Restore {
                id: file.id,
                what: p.path.clone(),
                op: "open",
                source: e.into(),
            },
        )?;
        check_identity(file.id, &p.path, fd.as_fd(), p.identity.as_ref(), false)?;
        set_position_and_flags(fd.as_fd(), file, &p.path)?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::PseudoFile(p)) => format!(
                "{} file {}{}",
                pseudo_filesystem(p.fs_type).unwrap_or("pseudo"),
                p.path,
                if p.proc_pid != 0 {
                    " (its own process)"
                } else {
                    ""
                }
            ),
            _ => "not a pseudo file".into(),
        };
        Description { text, pipe: None }
    }
}
