//! `mount(2)` for a process that has just entered a new mount namespace (the init of
//! `pipecr restore --pidns`): keep its mounts to itself, and give it a `/proc` of its own
//! PID namespace.
//!
//! The new namespace itself comes from [`super::clone3::clone3_into_namespaces`].

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)`—Makes every mount of the caller's
/// mount namespace private, so that what it mounts from now on (a new `/proc`) does not
/// propagate back to the namespace it was copied from.
///
/// Needs `CAP_SYS_ADMIN` in the user namespace owning the mount namespace.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/mount.2.html)
///  - [Linux](https://man7.org/linux/man-pages/man7/mount_namespaces.7.html)
#[doc(alias = "mount")]
#[doc(alias = "MS_PRIVATE")]
pub fn make_mounts_private() -> io::Result<()> {
    // SAFETY: the target is a valid NUL-terminated string literal; source, type and data
    // may be NULL for a propagation change, and the kernel reads nothing through them.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)`—Mounts a new
/// proc filesystem at `target`, showing the caller's PID namespace (the one it is a member
/// of): `/proc/PID` then means PID as seen in that namespace.
///
/// Needs `CAP_SYS_ADMIN` in the user namespaces owning the caller's mount and PID
/// namespaces.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/mount.2.html)
///  - [Linux](https://man7.org/linux/man-pages/man5/proc.5.html)
#[doc(alias = "mount")]
pub fn mount_proc(target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: source, target and type are valid NUL-terminated strings that outlive the
    // call; data may be NULL (no mount options).
    let ret = unsafe {
        libc::mount(
            c"proc".as_ptr(),
            target.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
