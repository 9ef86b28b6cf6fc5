//! Linux's names and fixed values for the numbers an image records: signal names, and the
//! resource limits (`RLIMIT_*`) with their names, units and the values every process
//! starts from. Defined once for the library and the CLI (`pipecr show`), which print
//! them; the names of system calls depend on the architecture and live in
//! [`crate::arch::x86_64`].
//!
//! The numbers are those of x86_64 (and of every architecture with Linux's generic
//! numbering); the image records them as the kernel gave them.

/// `RLIM_INFINITY`, as the image records it.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// Number of resource limits (`RLIMIT_NLIMITS`): resources are `0..RLIMIT_NLIMITS`.
pub const RLIMIT_NLIMITS: u32 = 16;

/// `RLIMIT_STACK`: the main thread's stack, in bytes.
pub const RLIMIT_STACK: u32 = 3;
/// `RLIMIT_CORE`: the largest core dump, in bytes.
pub const RLIMIT_CORE: u32 = 4;
/// `RLIMIT_NOFILE`: one more than the highest descriptor number that can be opened.
pub const RLIMIT_NOFILE: u32 = 7;

/// The lowercase names of the resource limits, by number (`RLIMIT_CPU` is `cpu`).
const RLIMIT_NAMES: [&str; RLIMIT_NLIMITS as usize] = [
    "cpu",
    "fsize",
    "data",
    "stack",
    "core",
    "rss",
    "nproc",
    "nofile",
    "memlock",
    "as",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "rttime",
];

/// The lowercase name of resource limit `resource` (`nofile` for `RLIMIT_NOFILE`), or
/// `None` for a number Linux does not define.
pub fn rlimit_name(resource: u32) -> Option<&'static str> {
    RLIMIT_NAMES.get(resource as usize).copied()
}

/// Whether resource limit `resource` counts bytes (fsize, data, stack, core, rss,
/// memlock, as, msgqueue).
pub fn rlimit_in_bytes(resource: u32) -> bool {
    matches!(resource, 1..=5 | 8 | 9 | 12)
}

/// The value `(soft, hard)` every process starts from (the kernel's `INIT_RLIMITS`), for
/// the limits whose initial value does not depend on the machine; `None` for nproc and
/// sigpending (sized from the memory at boot) and unknown resources.
pub fn rlimit_initial(resource: u32) -> Option<(u64, u64)> {
    const INF: u64 = RLIM_INFINITY;
    Some(match resource {
        3 => (8 << 20, INF),      // stack
        4 => (0, INF),            // core
        7 => (1024, 4096),        // nofile
        8 => (8 << 20, 8 << 20),  // memlock (since Linux 5.16)
        12 => (819_200, 819_200), // msgqueue
        13 | 14 => (0, 0),        // nice, rtprio
        0..=2 | 5 | 9 | 10 | 15 => (INF, INF),
        _ => return None,
    })
}

/// The names of the standard signals 1 to 31, by number - 1.
const SIGNAL_NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of standard signal `signo` (`SIGINT` for 2), or `None` for a real-time
/// signal (32 to 64) or a number that is no signal.
pub fn signal_name(signo: i32) -> Option<&'static str> {
    let n = usize::try_from(signo).ok()?;
    SIGNAL_NAMES.get(n.checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_libc() {
        for (signo, name) in [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGCHLD, "SIGCHLD"),
            (libc::SIGSYS, "SIGSYS"),
        ] {
            assert_eq!(signal_name(signo), Some(name));
        }
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(libc::SIGRTMIN()), None);
        assert_eq!(signal_name(-3), None);
        assert_eq!(rlimit_name(libc::RLIMIT_NOFILE), Some("nofile"));
        assert_eq!(rlimit_name(libc::RLIMIT_RTTIME), Some("rttime"));
        assert_eq!(rlimit_name(RLIMIT_NLIMITS), None);
        assert_eq!(
            (RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NOFILE),
            (libc::RLIMIT_STACK, libc::RLIMIT_CORE, libc::RLIMIT_NOFILE)
        );
        assert_eq!(rlimit_name(RLIMIT_NLIMITS - 1), Some("rttime"));
    }
}
