//! POSIX timer support the restorer asks of its own kernel: whether `timer_create` can
//! be told which ID to give (`PR_TIMER_CREATE_RESTORE_IDS`, Linux 6.15+).
//!
//! This module owns the raw call; the timers themselves are created inside restored
//! processes by injected calls ([`crate::inject::calls`]).

use std::io;

/// `PR_TIMER_CREATE_RESTORE_IDS` from `<linux/prctl.h>`.
const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
/// `PR_TIMER_CREATE_RESTORE_IDS_GET`: read the mode without changing it.
const PR_TIMER_CREATE_RESTORE_IDS_GET: libc::c_ulong = 2;

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET)`—Whether this
/// kernel lets `timer_create` take the ID of the new timer from the caller. `Ok(false)`
/// when it does not know the request (`EINVAL`: before Linux 6.15).
///
/// # References
///  - [Linux](https://github.com/torvalds/linux/blob/master/include/uapi/linux/prctl.h)
#[doc(alias = "PR_TIMER_CREATE_RESTORE_IDS")]
pub fn restore_ids_supported() -> io::Result<bool> {
    // SAFETY: this prctl takes integers only and changes nothing.
    let ret = unsafe {
        libc::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_GET,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if ret == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(true)
}
