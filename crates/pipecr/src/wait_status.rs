//! How a process ended: its wait status decoded ([`decode`]), and a child made to end
//! the same way ([`end_as`]). The restore of zombies and of pidfds of exited processes
//! both create a child that dies as the saved one did.

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

/// How a process ended, decoded from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
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

/// Decodes a saved wait status (a zombie's, a reaped process's behind a pidfd); `None` for one no process can end with (a stop
/// or continue status, stray bits, a signal whose default action does not end a process).
pub fn decode(status: i32) -> Option<Ending> {
    if status & !0xffff != 0 {
        return None;
    }
    let signal = status & 0x7f;
    if signal == 0 {
        return (status & 0xff == 0).then_some(Ending::Exited(status >> 8));
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
    Some(Ending::Signaled {
        signal,
        core: status & 0x80 != 0,
    })
}

/// Ends the calling process (a child made for this) as `ending` says: `_exit(code)`, or
/// its signal at the default action, unblocked, with no core written (no `RLIMIT_CORE`
/// and not dumpable: a `core_pattern` that pipes to a program ignores `RLIMIT_CORE` 0,
/// and the caller's handlers, Rust's `SIGSEGV` one, are not the saved process's). A
/// core dump's 0x80 bit therefore does not come back. Never returns; should the signal
/// not end it, it exits with 127, which the parent can tell from the status it expects.
pub fn end_as(ending: Ending) -> ! {
    if let Ending::Signaled { signal, .. } = ending {
        let _ = crate::sys::rlimit::set_own_rlimit(libc::RLIMIT_CORE, 0, 0);
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        let _ = crate::sys::signal::default_disposition(signal);
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        let me = nix::unistd::getpid();
        let _ = crate::sys::ptrace::tgkill(me, me, signal);
    }
    match ending {
        Ending::Exited(code) => crate::sys::clone3::child_exit(code),
        Ending::Signaled { .. } => crate::sys::clone3::child_exit(127),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombie_statuses_decode_as_wait_does() {
        assert_eq!(decode(7 << 8), Some(Ending::Exited(7)));
        assert_eq!(decode(0), Some(Ending::Exited(0)));
        assert_eq!(
            decode(libc::SIGTERM),
            Some(Ending::Signaled {
                signal: libc::SIGTERM,
                core: false
            })
        );
        assert_eq!(
            decode(libc::SIGSEGV | 0x80),
            Some(Ending::Signaled {
                signal: libc::SIGSEGV,
                core: true
            })
        );
        // A stop status, a continue status, a signal that ends nothing, stray bits.
        assert_eq!(decode((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(decode(0xffff), None);
        assert_eq!(decode(libc::SIGCHLD), None);
        assert_eq!(decode(1 << 16), None);
        assert_eq!(decode((1 << 8) | 3), None);
    }
}
