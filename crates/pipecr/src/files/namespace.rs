//! Namespace files held open (`/proc/PID/ns/TYPE`, or a bind mount of one): descriptors
//! a program keeps to `setns(2)` into a namespace later, or to keep it alive.
//!
//! Saved: the namespace's type and inode, and a process of the tree that is in it, if
//! any. A namespace of the tree is opened again through that restored process's
//! `/proc/PID/ns/` (after every process exists, [`Stage::AfterTree`]), so the file names
//! the restored tree's namespace: the same one when the tree is restored where it ran,
//! the new PID namespace under `restore --pidns`. A namespace no process of the tree is
//! in (another process's, kept alive by this file) is found again by its inode in some
//! process's `/proc/PID/ns/`; a restore refuses, before anything is created, when no
//! process on the machine is in it any more.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::proto::{self, open_file};
use rustix::fs::{Mode, OFlags};

use super::common::set_position_and_flags;
use super::kind::{Description, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved, Stage};

/// Namespace files.
pub struct NamespaceKind;

/// The namespace types, as `/proc/PID/fd/N` names them.
const TYPES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// The entries of `/proc/PID/ns/` that can hold a namespace of type `ns_type`.
fn entries(ns_type: &str) -> &'static [&'static str] {
    match ns_type {
        "pid" => &["pid", "pid_for_children"],
        "time" => &["time", "time_for_children"],
        "cgroup" => &["cgroup"],
        "ipc" => &["ipc"],
        "mnt" => &["mnt"],
        "net" => &["net"],
        "user" => &["user"],
        "uts" => &["uts"],
        _ => &[],
    }
}

/// `TYPE:[N]` → (`TYPE`, `N`), for the namespace types there are.
fn parse_link(link: &str) -> Option<(&'static str, u64)> {
    let (ns_type, rest) = link.split_once(":[")?;
    let inode = rest.strip_suffix(']')?.parse().ok()?;
    TYPES.iter().find(|t| **t == ns_type).map(|t| (*t, inode))
}

/// The inode of the namespace `/proc/PID/ns/ENTRY` names.
fn ns_inode(pid: i32, entry: &str) -> Option<u64> {
    rustix::fs::stat(format!("/proc/{pid}/ns/{entry}"))
        .ok()
        .map(|s| s.st_ino)
}

/// Some `/proc/PID/ns/ENTRY` of a process of this machine that names namespace `inode`
/// of type `ns_type`.
fn find_holder(ns_type: &str, inode: u64) -> Option<String> {
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        for e in entries(ns_type) {
            if ns_inode(pid, e) == Some(inode) {
                return Some(format!("/proc/{pid}/ns/{e}"));
            }
        }
    }
    None
}

impl FileKind for NamespaceKind {
    fn name(&self) -> &'static str {
        "namespace file"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        parse_link(&file.link).is_some_and(|(_, inode)| inode == file.stat.st_ino)
            && rustix::fs::fstatfs(&file.file).is_ok_and(|fs| fs.f_type == libc::NSFS_MAGIC)
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let Some((ns_type, inode)) = parse_link(&file.link) else {
            return Err(FileError::Unsupported {
                pid: file.pid,
                fd: file.fd,
                kind: format!("namespace file {}", file.link),
            });
        };
        // The holder first: its own namespace is the likeliest.
        let candidates = std::iter::once(file.pid).chain(sink.processes());
        let owner = candidates
            .flat_map(|pid| entries(ns_type).iter().map(move |e| (pid, *e)))
            .find(|&(pid, e)| ns_inode(pid, e) == Some(inode));
        let (owner_pid, owner_entry) = owner.map_or((0, String::new()), |(p, e)| (p, e.to_owned()));
        Ok(open_file::Kind::Namespace(proto::NamespaceFile {
            ns_type: ns_type.to_owned(),
            inode,
            owner_pid,
            owner_entry,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::Namespace(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        for file in ctx.open_files()? {
            let Some(open_file::Kind::Namespace(ns)) = &file.kind else {
                continue;
            };
            let bad =
                if !entries(&ns.ns_type).contains(&ns.owner_entry.as_str()) && ns.owner_pid != 0 {
                    Some(format!(
                        "namespace file of type {:?} saved with /proc/PID/ns/{:?}",
                        ns.ns_type, ns.owner_entry
                    ))
                } else if ns.owner_pid == 0 && find_holder(&ns.ns_type, ns.inode).is_none() {
                    Some(format!(
                        "namespace {}:[{}] (held open, no process of the tree in it): no process \
                     on this machine is in it any more",
                        ns.ns_type, ns.inode
                    ))
                } else {
                    None
                };
            if let Some(reason) = bad {
                return Err(FileError::Invalid {
                    id: file.id,
                    reason,
                });
            }
        }
        Ok(())
    }

    fn stage(&self, _file: &proto::OpenFile) -> Stage {
        // The process whose namespace it names must exist.
        Stage::AfterTree
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::Namespace(ns)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a namespace file".into(),
            });
        };
        let what = format!("{}:[{}]", ns.ns_type, ns.inode);
        let path = if ns.owner_pid != 0 {
            format!("/proc/{}/ns/{}", ns.owner_pid, ns.owner_entry)
        } else {
            find_holder(&ns.ns_type, ns.inode).ok_or_else(|| FileError::Restore {
                id: file.id,
                what: what.clone(),
                op: "find a process in the namespace",
                source: io::Error::from_raw_os_error(libc::ENOENT),
            })?
        };
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(
            |e| FileError::Restore {
                id: file.id,
                what: format!("{what} at {path}"),
                op: "open",
                source: e.into(),
            },
        )?;
        set_position_and_flags(fd.as_fd(), file, &what)?;
        Ok(fd)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let text = match &file.kind {
            Some(open_file::Kind::Namespace(ns)) if ns.owner_pid != 0 => format!(
                "{} namespace [{}] of pid {} ({})",
                ns.ns_type, ns.inode, ns.owner_pid, ns.owner_entry
            ),
            Some(open_file::Kind::Namespace(ns)) => {
                format!("{} namespace [{}], outside the tree", ns.ns_type, ns.inode)
            }
            _ => "not a namespace file".into(),
        };
        Description { text, pipe: None }
    }
}
