//! What the image says about one process ([`SavedProcess`], read by [`load`]) and the
//! questions about it that several restore steps ask ([`main_thread`], [`zombie_exit`]). Plain data read
//! from the image; what is done with it is left to the steps above.

use pipecr_image::Image;
use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};

/// Everything the image says about one process.
#[derive(Debug, Clone)]
pub struct SavedProcess {
    /// Its place in the tree (pid, pgid, sid, threads, descriptor table).
    pub process: proto::Process,
    /// Registers, signals, limits, cwd.
    pub core: proto::Core,
    /// Its address space.
    pub mm: proto::Mm,
}

impl SavedProcess {
    /// The saved PID.
    pub fn pid(&self) -> i32 {
        self.process.pid
    }
}

/// Reads the saved process `pid` from `image`.
pub fn load(image: &Image, pid: i32) -> Result<SavedProcess> {
    let invalid = |what: &str| ProcessRestoreError::Invalid {
        pid,
        what: what.to_owned(),
    };
    let process = image
        .read_records::<proto::Process>(pipecr_image::TREE)?
        .into_iter()
        .find(|p| p.pid == pid)
        .ok_or_else(|| invalid("not in tree.img"))?;
    let core = image
        .read_records::<proto::Core>(pipecr_image::CORE)?
        .into_iter()
        .find(|c| c.pid == pid)
        .ok_or_else(|| invalid("no record in core.img"))?;
    let mm = image
        .read_records::<proto::Mm>(pipecr_image::MM)?
        .into_iter()
        .find(|m| m.pid == pid)
        .ok_or_else(|| invalid("no record in mm.img"))?;
    Ok(SavedProcess { process, core, mm })
}

/// The saved main thread of `core` (`tid == pid`; the first one for an image that has none
/// such).
pub(super) fn main_thread(pid: i32, core: &proto::Core) -> Option<&proto::Thread> {
    core.threads
        .iter()
        .find(|t| t.tid == pid)
        .or_else(|| core.threads.first())
}

/// How a saved zombie ended, decoded from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZombieExit {
    /// `_exit(code)`.
    Exited(i32),
    /// Killed by `signal` at its default action; `core` when it dumped core.
    Signaled {
        /// The signal.
        signal: i32,
        /// The 0x80 bit: a core was dumped.
        core: bool,
    },
}

/// Decodes a zombie's saved wait status; `None` for one no process can end with (a stop
/// or continue status, stray bits, a signal whose default action does not end a process).
pub fn zombie_exit(status: i32) -> Option<ZombieExit> {
    if status & !0xffff != 0 {
        return None;
    }
    let signal = status & 0x7f;
    if signal == 0 {
        return (status & 0xff == 0).then_some(ZombieExit::Exited(status >> 8));
    }
    // Anything above the low byte, or 0x7f (a stop), is no death by a signal.
    if status & !0xff != 0 || signal == 0x7f || signal > 64 {
        return None;
    }
    let ignored_or_stops = [
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGURG,
        libc::SIGWINCH,
    ];
    if ignored_or_stops.contains(&signal) {
        return None;
    }
    Some(ZombieExit::Signaled {
        signal,
        core: status & 0x80 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombie_statuses_decode_as_wait_does() {
        assert_eq!(zombie_exit(7 << 8), Some(ZombieExit::Exited(7)));
        assert_eq!(zombie_exit(0), Some(ZombieExit::Exited(0)));
        assert_eq!(
            zombie_exit(libc::SIGTERM),
            Some(ZombieExit::Signaled {
                signal: libc::SIGTERM,
                core: false
            })
        );
        assert_eq!(
            zombie_exit(libc::SIGSEGV | 0x80),
            Some(ZombieExit::Signaled {
                signal: libc::SIGSEGV,
                core: true
            })
        );
        // A stop status, a continue status, a signal that ends nothing, stray bits.
        assert_eq!(zombie_exit((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(zombie_exit(0xffff), None);
        assert_eq!(zombie_exit(libc::SIGCHLD), None);
        assert_eq!(zombie_exit(1 << 16), None);
        assert_eq!(zombie_exit((1 << 8) | 3), None);
    }
}
