//! Opening a file by its file handle (`open_by_handle_at`), which rustix and nix lack:
//! how a file known only through `/proc/PID/fdinfo` (an inotify watch) is found again.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::OFlags;

/// `MAX_HANDLE_SZ` of `include/linux/exportfs.h`: the largest handle the kernel makes.
pub const MAX_HANDLE_SZ: usize = 128;

/// `open_by_handle_at(mount, handle, flags)`—Opens the file that `handle` (its type and
/// bytes, as `name_to_handle_at` or fdinfo gave them) names on the filesystem mounted at
/// `mount`.
///
/// `mount` must be a real open file (a directory opened read-only), not `O_PATH`: the
/// kernel answers EBADF for an `O_PATH` one. Needs `CAP_DAC_READ_SEARCH`. Fails with
/// ESTALE when the file no longer exists.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/open_by_handle_at.2.html)
#[doc(alias = "open_by_handle_at")]
pub fn open_by_handle(
    mount: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: OFlags,
) -> io::Result<OwnedFd> {
    if handle.len() > MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, built
    // in u32 words so that it is aligned as the kernel expects.
    let mut words = [0u32; 2 + MAX_HANDLE_SZ / 4];
    words[0] = handle.len() as u32;
    words[1] = handle_type as u32;
    for (i, b) in handle.iter().enumerate() {
        let (word, shift) = (2 + i / 4, i % 4);
        let mut bytes = words[word].to_ne_bytes();
        bytes[shift] = *b;
        words[word] = u32::from_ne_bytes(bytes);
    }
    // SAFETY: `words` holds a complete struct file_handle whose handle_bytes (at most
    // MAX_HANDLE_SZ) fit in the buffer; the kernel only reads it, during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            words.as_ptr(),
            (flags | OFlags::CLOEXEC).bits() as libc::c_int,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: open_by_handle_at returned a new descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
