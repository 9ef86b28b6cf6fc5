//! What the image says about one process ([`SavedProcess`], read by [`load`]) and the
//! questions about it that several restore steps ask ([`main_thread`]; how a zombie ended is [`crate::wait_status`]'s). Plain data read
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
