//! Pipe calls that rustix exposes only as `unsafe`.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::pipe::{IoSliceRaw, SpliceFlags};

/// `vmsplice(fd, [bytes], 1, 0)`—Hands immutable, static bytes to a pipe's write end.
///
/// The kernel may link the pages of `bytes` into the pipe instead of copying them, so they
/// must never change while the pipe holds them; `'static` shared bytes never do. Returns
/// how many bytes the pipe took.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/vmsplice.2.html)
#[doc(alias = "vmsplice")]
pub fn vmsplice_static(fd: BorrowedFd<'_>, bytes: &'static [u8]) -> io::Result<usize> {
    let iov = [IoSliceRaw::from_slice(bytes)];
    // SAFETY: the pages handed to the pipe are immutable and live for the whole program,
    // so the pipe can never observe them changing; no GIFT flag, so nothing is given away.
    Ok(unsafe { rustix::pipe::vmsplice(fd, &iov, SpliceFlags::empty()) }?)
}
