//! Open files a restored process opens again itself, through injected calls, once its
//! threads exist ([`Stage::AfterThreads`]): a pidfd of one of its own threads, say, which
//! cannot be opened before the thread is created, and threads are created after every
//! descriptor. Each is opened by the call its kind names, then moved to its saved number
//! with its close-on-exec bit (`dup3`), while the process is still held by the restorer
//! and runs nothing of its own; then its kind completes it through the restorer's own
//! copy of the descriptor ([`files::complete_in_process`]).

use std::os::fd::{AsFd, OwnedFd};

use pipecr_image::{Image, proto};

use super::error::{ProcessRestoreError, Result};
use super::saved::SavedProcess;
use crate::files::{self, Stage};
use crate::inject::{Injector, calls};
use crate::sys::kcmp::TargetFd;

/// Opens, in `saved` (held by `inj`, its threads created), the open files of its
/// descriptor table that it opens itself. A table shared with a process loaded before
/// it (`CLONE_FILES`, `tree` order) was completed by that one. Reads nothing more than
/// the descriptor tables when the image holds no such file.
pub(super) fn open(
    inj: &mut Injector,
    image: &Image,
    tree: &[SavedProcess],
    saved: &SavedProcess,
) -> Result<()> {
    let pid = saved.pid();
    let table_id = saved.process.fd_table;
    let first = tree.iter().find(|p| p.process.fd_table == table_id);
    if first.is_some_and(|p| p.pid() != pid) {
        return Ok(());
    }
    let tables: Vec<proto::FdTable> = image.read_records(pipecr_image::FDS)?;
    let Some(table) = tables.iter().find(|t| t.id == table_id) else {
        return Ok(());
    };
    if table.descriptors.is_empty() {
        return Ok(());
    }
    let files: Vec<proto::OpenFile> = image.read_records(pipecr_image::FILES)?;
    for d in &table.descriptors {
        let Some(file) = files.iter().find(|f| f.id == d.file_id) else {
            continue;
        };
        if files::stage_of(file)? != Stage::AfterThreads {
            continue;
        }
        let call = files::in_process_open(file, pid, &saved.process.threads)?;
        tracing::debug!(
            pid,
            fd = d.fd,
            file = file.id,
            "opened by the process itself"
        );
        let opened =
            inj.syscall_checked(call.nr, call.args)
                .map_err(|e| ProcessRestoreError::Child {
                    pid,
                    message: format!(
                        "cannot open again open file {} for fd {}: {e}",
                        file.id, d.fd
                    ),
                })?;
        let cloexec = if d.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        if opened != d.fd as u64 {
            inj.syscall_checked(libc::SYS_dup3, [opened, d.fd as u64, cloexec, 0, 0, 0])?;
            calls::close(inj, TargetFd(opened as i32))?;
        } else if !d.cloexec {
            // Opened at its number already: only the close-on-exec bit may differ (the
            // kinds open close-on-exec).
            inj.syscall_checked(libc::SYS_fcntl, [opened, libc::F_SETFD as u64, 0, 0, 0, 0])?;
        }
        let copy = fetch(pid, d.fd).map_err(|e| ProcessRestoreError::Child {
            pid,
            message: format!(
                "cannot fetch open file {} at fd {} opened again: {e}",
                file.id, d.fd
            ),
        })?;
        files::complete_in_process(file, copy.as_fd())?;
    }
    Ok(())
}

/// The restoring process's own copy of descriptor `fd` of process `pid` (`pidfd_getfd`).
fn fetch(pid: i32, fd: i32) -> std::io::Result<OwnedFd> {
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    let pidfd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty())?;
    Ok(rustix::process::pidfd_getfd(
        &pidfd,
        fd,
        rustix::process::PidfdGetfdFlags::empty(),
    )?)
}
