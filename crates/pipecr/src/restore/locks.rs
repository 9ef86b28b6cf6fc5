//! The POSIX record locks of a restored process (`Core.posix_locks`), taken from inside
//! it with an injected `fcntl(F_SETLK)`: a POSIX lock belongs to the descriptor table
//! of the process that sets it, so no other process can take it for it. Run once every
//! descriptor of the process is installed and no more will be closed (closing any
//! descriptor of a file drops the process's POSIX locks on it). The flock and OFD locks
//! belong to open files and are taken where those are created (`crate::files::locks`).

use std::os::fd::AsFd;

use pipecr_image::proto::{self, FileLockKind};

use super::error::{ProcessRestoreError, Result};
use super::trampoline::SCRATCH_AT;
use crate::files::locks::{describe_lock, holders};
use crate::inject::kstruct::Flock;
use crate::inject::{InjectError, Injector, calls};
use crate::sys::kcmp::TargetFd;

/// Takes the saved POSIX locks of process `pid` (`core`) through the trampoline page at
/// `tramp`; a lock held by a process outside the tree refuses the restore, naming it.
pub(super) fn restore(inj: &mut Injector, pid: i32, tramp: u64, core: &proto::Core) -> Result<()> {
    for lock in &core.posix_locks {
        if lock.kind != FileLockKind::Posix as i32 {
            return Err(ProcessRestoreError::Invalid {
                pid,
                what: format!(
                    "fd {}: a lock of kind {} among POSIX locks",
                    lock.fd, lock.kind
                ),
            });
        }
        let flock = Flock {
            kind: if lock.write {
                libc::F_WRLCK
            } else {
                libc::F_RDLCK
            } as i16,
            start: lock.start,
            len: lock.len,
        };
        match calls::fcntl_setlk_at(inj, tramp + SCRATCH_AT, TargetFd(lock.fd), &flock) {
            Ok(()) => {}
            Err(InjectError::Syscall { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) =>
            {
                let holder = std::fs::File::open(format!("/proc/{pid}/fd/{}", lock.fd))
                    .map(|f| holders(f.as_fd()))
                    .unwrap_or_else(|_| "another process".to_owned());
                return Err(ProcessRestoreError::Unsupported {
                    pid,
                    what: format!(
                        "fd {}: its {} ({holder} holds a conflicting lock)",
                        lock.fd,
                        describe_lock(lock)
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
