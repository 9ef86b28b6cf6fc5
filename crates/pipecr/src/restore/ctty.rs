//! A session's controlling terminal, given back by its leader: which terminal it is, the
//! image says (`Process.ctty_file_id`, the open file of the tree standing for it, a
//! pseudo-terminal master); this module only makes the new one the session's again,
//! inside the restored leader, from the parked open files (`fdtable`).
//!
//! The leader takes the terminal (`TIOCSCTTY`) after `setsid` and before it creates its
//! children, so that they inherit it as they did; it sets the saved foreground process
//! group (`TIOCSPGRP`) once its children exist, since that group may be one of theirs.
//! Members do nothing: they inherit the terminal from their parent. A terminal outside
//! the tree is not the image's business (the restored tree keeps the restorer's, as
//! before).

use super::fdtable::ParkedFiles;
use super::saved::SavedProcess;

/// In the restored session leader `saved`, after `setsid`: makes the terminal of open
/// file `ctty_file_id` its controlling terminal. Nothing for another process, or when
/// there is none.
pub fn take(saved: &SavedProcess, parked: &ParkedFiles) -> Result<(), String> {
    let Some(fd) = leader_terminal(saved, parked)? else {
        return Ok(());
    };
    rustix::process::ioctl_tiocsctty(fd).map_err(|e| {
        format!(
            "TIOCSCTTY on open file {} (the session's controlling terminal): {e}",
            saved.process.ctty_file_id
        )
    })
}

/// In the restored session leader `saved`, once its children exist: sets the saved
/// foreground process group of its controlling terminal.
pub fn foreground(saved: &SavedProcess, parked: &ParkedFiles) -> Result<(), String> {
    let Some(fd) = leader_terminal(saved, parked)? else {
        return Ok(());
    };
    let pgrp = saved.process.foreground_pgrp;
    let Some(group) = rustix::process::Pid::from_raw(pgrp) else {
        return Ok(());
    };
    rustix::termios::tcsetpgrp(fd, group)
        .map_err(|e| format!("TIOCSPGRP {pgrp} (the terminal's foreground process group): {e}"))
}

fn leader_terminal<'p>(
    saved: &SavedProcess,
    parked: &'p ParkedFiles,
) -> Result<Option<std::os::fd::BorrowedFd<'p>>, String> {
    let id = saved.process.ctty_file_id;
    if id == 0 || saved.process.sid != saved.pid() {
        return Ok(None);
    }
    parked
        .file(id)
        .map(Some)
        .ok_or_else(|| format!("the controlling terminal's open file {id} was not created"))
}
