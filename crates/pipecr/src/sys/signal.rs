//! Signal dispositions of the calling process, which rustix does not cover and nix
//! offers only as `unsafe` (a handler is code the kernel will jump to).

use std::io;

/// `sigaction(sig, SIG_DFL)` for every signal but `SIGKILL` and `SIGSTOP`—Gives every
/// signal its default disposition again.
///
/// For a process about to become a restored one: what it inherited from the restorer
/// (Rust ignores `SIGPIPE` and catches `SIGSEGV`/`SIGBUS` with handlers in the restorer's
/// code) must not leak into the restored program; its own handlers are set afterwards.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
pub fn reset_all_dispositions() -> io::Result<()> {
    for signo in 1..=64 {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        match default_disposition(signo) {
            // glibc refuses its own two real-time signals (32, 33) with EINVAL: they are
            // not the program's to set, and the kernel keeps them at their default anyway.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => other?,
        }
    }
    Ok(())
}

/// `sigaction(signo, SIG_DFL)`—Gives one signal its default disposition again: for a
/// command that prints, `SIGPIPE`, which Rust ignores, so that a reader that goes away
/// (`pipecr show | head`) ends it quietly, as it ends any other Unix filter.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
pub fn default_disposition(signo: i32) -> io::Result<()> {
    // SAFETY: a zeroed `struct sigaction` is a valid value (no flags, empty mask); only
    // the handler is set, to SIG_DFL, which is not code.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `action` is a valid, initialised struct for the duration of the call; the
    // old action is not asked for (null). SIG_DFL installs no code.
    let ret = unsafe { libc::sigaction(signo, &action, std::ptr::null_mut()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
