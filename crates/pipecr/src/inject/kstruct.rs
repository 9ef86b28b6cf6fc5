//! The kernel structs passed to and from injected system calls, each encoded and decoded
//! once, in the tracee's layout (x86_64, native byte order): `struct sigaction`
//! ([`SigAction`]), `stack_t` ([`AltStack`]), `struct itimerval` ([`ITimer`]),
//! `struct prctl_mm_map` ([`PrctlMmMap`]), `struct clone_args` ([`CloneArgs`]), the
//! capability sets of `capset` ([`CapSets`]), and the POSIX timer ones,
//! `struct itimerspec` ([`ITimerSpec`]) and `struct sigevent` ([`SigEvent`]).
//!
//! Plain data and bytes: no syscalls. Which call takes which struct belongs to
//! [`super::calls`]; where the bytes go in the tracee, to the callers.

use crate::sys::ptrace::SigMask;

/// The native-endian u64 at byte `i` of `b` (callers pass arrays long enough).
fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_ne_bytes(w)
}

/// Writes `words` native-endian from the start of `b` (`b` is long enough).
fn put_words(b: &mut [u8], words: &[u64]) {
    for (i, v) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

bitflags::bitflags! {
    /// `sa_flags` of a signal handler, as the kernel stores them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SaFlags: u64 {
        /// `SA_NOCLDSTOP`: no `SIGCHLD` when a child stops or continues.
        const NOCLDSTOP = libc::SA_NOCLDSTOP as u64;
        /// `SA_NOCLDWAIT`: children do not become zombies.
        const NOCLDWAIT = libc::SA_NOCLDWAIT as u64;
        /// `SA_SIGINFO`: the handler takes three arguments.
        const SIGINFO = libc::SA_SIGINFO as u64;
        /// `SA_RESTORER`: `restorer` is the return trampoline (set by libc).
        const RESTORER = 0x0400_0000;
        /// `SA_ONSTACK`: run on the alternate signal stack.
        const ONSTACK = libc::SA_ONSTACK as u64;
        /// `SA_RESTART`: restart interrupted syscalls.
        const RESTART = libc::SA_RESTART as u64;
        /// `SA_NODEFER`: do not block the signal in its own handler.
        const NODEFER = libc::SA_NODEFER as u64;
        /// `SA_RESETHAND`: reset to the default on entry to the handler.
        const RESETHAND = libc::SA_RESETHAND as u64;
        /// `SA_EXPOSE_TAGBITS`: keep address tag bits in `si_addr`.
        const EXPOSE_TAGBITS = 0x0000_0800;
        /// `SA_UNSUPPORTED`: a probe bit the kernel always clears.
        const UNSUPPORTED = 0x0000_0400;
        // Bits we do not know are kept as they are.
        const _ = !0;
    }
}

/// A signal's disposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigHandler {
    /// `SIG_DFL`.
    Default,
    /// `SIG_IGN`.
    Ignore,
    /// A handler function at this address.
    Function(u64),
}

impl SigHandler {
    /// From the kernel's `sa_handler` value.
    pub fn from_raw(raw: u64) -> SigHandler {
        match raw {
            0 => SigHandler::Default,
            1 => SigHandler::Ignore,
            addr => SigHandler::Function(addr),
        }
    }

    /// The kernel's `sa_handler` value.
    pub fn raw(self) -> u64 {
        match self {
            SigHandler::Default => 0,
            SigHandler::Ignore => 1,
            SigHandler::Function(addr) => addr,
        }
    }
}

/// What `rt_sigaction` reports for one signal (the kernel's `struct sigaction` on x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SigAction {
    /// The signal number (1..=64).
    pub signo: i32,
    /// The disposition.
    pub handler: SigHandler,
    /// `sa_flags`.
    pub flags: SaFlags,
    /// `sa_restorer`: libc's return trampoline.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: SigMask,
}

/// Size of the kernel's `struct sigaction` on x86_64: handler, flags, restorer, mask.
pub const KSIGACTION_SIZE: usize = 32;

impl SigAction {
    /// The kernel's `struct sigaction` bytes (the signal number is not part of it).
    pub fn to_bytes(self) -> [u8; KSIGACTION_SIZE] {
        let mut out = [0u8; KSIGACTION_SIZE];
        out[0..8].copy_from_slice(&self.handler.raw().to_ne_bytes());
        out[8..16].copy_from_slice(&self.flags.bits().to_ne_bytes());
        out[16..24].copy_from_slice(&self.restorer.to_ne_bytes());
        out[24..32].copy_from_slice(&self.mask.0.to_ne_bytes());
        out
    }

    /// Decodes the kernel's `struct sigaction` for signal `signo`.
    pub fn from_bytes(signo: i32, b: &[u8; KSIGACTION_SIZE]) -> SigAction {
        SigAction {
            signo,
            handler: SigHandler::from_raw(word(b, 0)),
            flags: SaFlags::from_bits_retain(word(b, 8)),
            restorer: word(b, 16),
            mask: SigMask(word(b, 24)),
        }
    }
}

/// One interval timer as `getitimer(2)` reports it, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ITimer {
    /// `ITIMER_REAL` (0), `ITIMER_VIRTUAL` (1) or `ITIMER_PROF` (2).
    pub which: i32,
    /// `it_interval`: the period after each expiry, 0 for a one-shot timer.
    pub interval_us: u64,
    /// `it_value`: time left until the next expiry, 0 when disarmed.
    pub value_us: u64,
}

/// Size of `struct itimerval`: two `struct timeval` of (`tv_sec`, `tv_usec`), 8 bytes each.
pub const ITIMERVAL_SIZE: usize = 32;

impl ITimer {
    /// The `struct itimerval` bytes (`which` is not part of it).
    pub fn to_bytes(self) -> [u8; ITIMERVAL_SIZE] {
        let mut b = [0u8; ITIMERVAL_SIZE];
        for (i, us) in [self.interval_us, self.value_us].into_iter().enumerate() {
            b[i * 16..i * 16 + 8].copy_from_slice(&(us / 1_000_000).to_ne_bytes());
            b[i * 16 + 8..i * 16 + 16].copy_from_slice(&(us % 1_000_000).to_ne_bytes());
        }
        b
    }

    /// Decodes the `struct itimerval` of timer `which`.
    pub fn from_bytes(which: i32, b: &[u8; ITIMERVAL_SIZE]) -> ITimer {
        ITimer {
            which,
            interval_us: word(b, 0) * 1_000_000 + word(b, 8),
            value_us: word(b, 16) * 1_000_000 + word(b, 24),
        }
    }
}

/// A POSIX timer's setting as `timer_gettime(2)` reports it and `timer_settime(2)` takes
/// it (`struct itimerspec`), in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ITimerSpec {
    /// `it_interval`: the period after each expiry, 0 for a one-shot timer.
    pub interval_ns: u64,
    /// `it_value`: time left until the next expiry (relative), 0 when disarmed.
    pub value_ns: u64,
}

/// Size of `struct itimerspec`: two `struct timespec` of (`tv_sec`, `tv_nsec`), 8 bytes
/// each.
pub const ITIMERSPEC_SIZE: usize = 32;

impl ITimerSpec {
    /// The `struct itimerspec` bytes.
    pub fn to_bytes(self) -> [u8; ITIMERSPEC_SIZE] {
        let mut b = [0u8; ITIMERSPEC_SIZE];
        let ns = 1_000_000_000;
        let words = [
            self.interval_ns / ns,
            self.interval_ns % ns,
            self.value_ns / ns,
            self.value_ns % ns,
        ];
        put_words(&mut b, &words);
        b
    }

    /// Decodes a `struct itimerspec` (the kernel writes normalised values).
    pub fn from_bytes(b: &[u8; ITIMERSPEC_SIZE]) -> ITimerSpec {
        let ns = 1_000_000_000u64;
        ITimerSpec {
            interval_ns: word(b, 0).wrapping_mul(ns).wrapping_add(word(b, 8)),
            value_ns: word(b, 16).wrapping_mul(ns).wrapping_add(word(b, 24)),
        }
    }
}

/// How a POSIX timer notifies (`struct sigevent` as `timer_create(2)` reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SigEvent {
    /// `sigev_value`, raw: `sival_int` in the low 32 bits, or `sival_ptr`.
    pub value: u64,
    /// `sigev_signo`.
    pub signo: i32,
    /// `sigev_notify`: `SIGEV_SIGNAL` 0, `SIGEV_NONE` 1, `SIGEV_THREAD` 2, with
    /// `SIGEV_THREAD_ID` (4) added for a timer aimed at the thread `tid`.
    pub notify: i32,
    /// `sigev_notify_thread_id` (`_sigev_un._tid`): the target thread with
    /// `SIGEV_THREAD_ID`, ignored otherwise.
    pub tid: i32,
}

/// Size of the kernel's `struct sigevent` (`SIGEV_MAX_SIZE`): value, signo, notify, then
/// a union padded to 64 bytes whose first int is the thread id.
pub const SIGEVENT_SIZE: usize = 64;

impl SigEvent {
    /// The `struct sigevent` bytes.
    pub fn to_bytes(self) -> [u8; SIGEVENT_SIZE] {
        let mut b = [0u8; SIGEVENT_SIZE];
        b[0..8].copy_from_slice(&self.value.to_ne_bytes());
        b[8..12].copy_from_slice(&self.signo.to_ne_bytes());
        b[12..16].copy_from_slice(&self.notify.to_ne_bytes());
        b[16..20].copy_from_slice(&self.tid.to_ne_bytes());
        b
    }
}

/// A thread's alternate signal stack (`stack_t`, see sigaltstack(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AltStack {
    /// `ss_sp`: the lowest address of the stack.
    pub sp: u64,
    /// `ss_flags`: `SS_ONSTACK`, `SS_DISABLE`, `SS_AUTODISARM`.
    pub flags: i32,
    /// `ss_size` in bytes.
    pub size: u64,
}

/// Size of the kernel's `stack_t` on x86_64: pointer, int (padded to 8), size_t.
pub const STACK_T_SIZE: usize = 24;

impl AltStack {
    /// The `stack_t` bytes the kernel reads and writes.
    pub fn to_bytes(self) -> [u8; STACK_T_SIZE] {
        let mut b = [0u8; STACK_T_SIZE];
        b[0..8].copy_from_slice(&self.sp.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[16..24].copy_from_slice(&self.size.to_ne_bytes());
        b
    }

    /// Decodes a `stack_t`.
    pub fn from_bytes(b: &[u8; STACK_T_SIZE]) -> AltStack {
        let mut flags = [0u8; 4];
        flags.copy_from_slice(&b[8..12]);
        AltStack {
            sp: word(b, 0),
            flags: i32::from_ne_bytes(flags),
            size: word(b, 16),
        }
    }
}

/// A record lock (`struct flock`, see fcntl(2)), relative to the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flock {
    /// `l_type`: `F_RDLCK` or `F_WRLCK`.
    pub kind: i16,
    /// `l_start`: the first byte.
    pub start: u64,
    /// `l_len`: bytes locked, 0 to the end of the file.
    pub len: u64,
}

/// Size of `struct flock` on x86_64: two shorts (padded to 8), two off_t, a pid_t
/// (padded to 8).
pub const FLOCK_SIZE: usize = 32;

impl Flock {
    /// The `struct flock` bytes the kernel reads (`l_whence` `SEEK_SET`, `l_pid` 0).
    pub fn to_bytes(self) -> [u8; FLOCK_SIZE] {
        let mut b = [0u8; FLOCK_SIZE];
        b[0..2].copy_from_slice(&self.kind.to_ne_bytes());
        b[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
        b[8..16].copy_from_slice(&self.start.to_ne_bytes());
        b[16..24].copy_from_slice(&self.len.to_ne_bytes());
        b
    }
}

/// `struct prctl_mm_map` (`<linux/prctl.h>`): the mm fields `PR_SET_MM_MAP` sets at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrctlMmMap {
    /// `start_code`.
    pub start_code: u64,
    /// `end_code`.
    pub end_code: u64,
    /// `start_data`.
    pub start_data: u64,
    /// `end_data`.
    pub end_data: u64,
    /// `start_brk`.
    pub start_brk: u64,
    /// `brk`.
    pub brk: u64,
    /// `start_stack`.
    pub start_stack: u64,
    /// `arg_start`.
    pub arg_start: u64,
    /// `arg_end`.
    pub arg_end: u64,
    /// `env_start`.
    pub env_start: u64,
    /// `env_end`.
    pub env_end: u64,
    /// `auxv`: the address of the auxiliary vector in the tracee.
    pub auxv: u64,
    /// `auxv_size` in bytes.
    pub auxv_size: u32,
    /// `exe_fd`: a descriptor in the tracee for the new exe link, `u32::MAX` for none.
    pub exe_fd: u32,
}

/// Size of `struct prctl_mm_map`: twelve u64 and two u32.
pub const PRCTL_MM_MAP_SIZE: usize = 104;

impl PrctlMmMap {
    /// The `struct prctl_mm_map` bytes.
    pub fn to_bytes(&self) -> [u8; PRCTL_MM_MAP_SIZE] {
        let mut b = [0u8; PRCTL_MM_MAP_SIZE];
        let words = [
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
            self.start_brk,
            self.brk,
            self.start_stack,
            self.arg_start,
            self.arg_end,
            self.env_start,
            self.env_end,
            self.auxv,
        ];
        put_words(&mut b, &words);
        b[96..100].copy_from_slice(&self.auxv_size.to_ne_bytes());
        b[100..104].copy_from_slice(&self.exe_fd.to_ne_bytes());
        b
    }
}

/// `struct clone_args` up to `set_tid_size` (`CLONE_ARGS_SIZE_VER1`), see clone3(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloneArgs {
    /// `flags`: `CLONE_*`.
    pub flags: u64,
    /// `pidfd`: where to store a pidfd (`CLONE_PIDFD`).
    pub pidfd: u64,
    /// `child_tid`.
    pub child_tid: u64,
    /// `parent_tid`.
    pub parent_tid: u64,
    /// `exit_signal`.
    pub exit_signal: u64,
    /// `stack`: lowest address of the child's stack.
    pub stack: u64,
    /// `stack_size`.
    pub stack_size: u64,
    /// `tls`.
    pub tls: u64,
    /// `set_tid`: address of an array of wanted TIDs in the tracee.
    pub set_tid: u64,
    /// `set_tid_size`: the array's length.
    pub set_tid_size: u64,
}

/// `CLONE_ARGS_SIZE_VER1`: the size of [`CloneArgs`], up to `set_tid_size`.
pub const CLONE_ARGS_SIZE: usize = 80;

impl CloneArgs {
    /// The `struct clone_args` bytes.
    pub fn to_bytes(&self) -> [u8; CLONE_ARGS_SIZE] {
        let mut b = [0u8; CLONE_ARGS_SIZE];
        let words = [
            self.flags,
            self.pidfd,
            self.child_tid,
            self.parent_tid,
            self.exit_signal,
            self.stack,
            self.stack_size,
            self.tls,
            self.set_tid,
            self.set_tid_size,
        ];
        put_words(&mut b, &words);
        b
    }
}

/// The three capability sets `capset` takes, 64 bits each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two `__user_cap_data_struct`.
pub const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Size of `struct __user_cap_header_struct` followed by two `__user_cap_data_struct`.
pub const CAPSET_SIZE: usize = 32;

impl CapSets {
    /// `struct __user_cap_header_struct { u32 version; int pid; }` (version 3, pid 0: the
    /// calling thread), then two `struct __user_cap_data_struct { u32 effective,
    /// permitted, inheritable; }`, low halves first. The data starts at byte 8.
    pub fn to_bytes(&self) -> [u8; CAPSET_SIZE] {
        let mut b = [0u8; CAPSET_SIZE];
        b[0..4].copy_from_slice(&CAPABILITY_VERSION_3.to_ne_bytes());
        let mut at = 8;
        for half in [0, 32] {
            for set in [self.effective, self.permitted, self.inheritable] {
                b[at..at + 4].copy_from_slice(&((set >> half) as u32).to_ne_bytes());
                at += 4;
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altstack_bytes_round_trip() {
        let a = AltStack {
            sp: 0x7f00_0000_1000,
            flags: libc::SS_DISABLE,
            size: 65536,
        };
        assert_eq!(AltStack::from_bytes(&a.to_bytes()), a);
        assert_eq!(&a.to_bytes()[16..24], &65536u64.to_ne_bytes());
    }

    #[test]
    fn sigaction_bytes_round_trip() {
        let a = SigAction {
            signo: libc::SIGUSR1,
            handler: SigHandler::Function(0x5555_0000_1234),
            flags: SaFlags::SIGINFO | SaFlags::RESTORER | SaFlags::RESTART,
            restorer: 0x7fff_0000_4321,
            mask: SigMask::EMPTY.with(libc::SIGINT),
        };
        assert_eq!(SigAction::from_bytes(a.signo, &a.to_bytes()), a);
        assert_eq!(SigHandler::from_raw(0), SigHandler::Default);
        assert_eq!(SigHandler::from_raw(1), SigHandler::Ignore);
    }

    #[test]
    fn itimerval_bytes_round_trip() {
        let t = ITimer {
            which: 1,
            interval_us: 2_500_000,
            value_us: 999_999,
        };
        assert_eq!(ITimer::from_bytes(1, &t.to_bytes()), t);
        assert_eq!(&t.to_bytes()[0..8], &2u64.to_ne_bytes());
        assert_eq!(&t.to_bytes()[8..16], &500_000u64.to_ne_bytes());
    }

    #[test]
    fn timer_structs_match_libc() {
        let spec = ITimerSpec {
            interval_ns: 1_250_000_000,
            value_ns: 7,
        };
        assert_eq!(ITimerSpec::from_bytes(&spec.to_bytes()), spec);
        let b = spec.to_bytes();
        assert_eq!(&b[0..8], &1u64.to_ne_bytes());
        assert_eq!(&b[8..16], &250_000_000u64.to_ne_bytes());
        assert_eq!(std::mem::size_of::<libc::itimerspec>(), ITIMERSPEC_SIZE);
        assert_eq!(std::mem::size_of::<libc::sigevent>(), SIGEVENT_SIZE);
        let ev = SigEvent {
            value: 0xdead_beef_0000_0001,
            signo: libc::SIGRTMIN(),
            notify: libc::SIGEV_THREAD_ID,
            tid: 4242,
        };
        let b = ev.to_bytes();
        let at = |off: usize| i32::from_ne_bytes(b[off..off + 4].try_into().unwrap());
        assert_eq!(
            at(std::mem::offset_of!(libc::sigevent, sigev_signo)),
            ev.signo
        );
        assert_eq!(
            at(std::mem::offset_of!(libc::sigevent, sigev_notify)),
            ev.notify
        );
        assert_eq!(
            at(std::mem::offset_of!(libc::sigevent, sigev_notify_thread_id)),
            4242
        );
    }

    #[test]
    fn struct_layouts() {
        let m = PrctlMmMap {
            auxv: 7,
            auxv_size: 3,
            exe_fd: u32::MAX,
            ..PrctlMmMap::default()
        };
        let b = m.to_bytes();
        assert_eq!(&b[88..96], &7u64.to_ne_bytes());
        assert_eq!(&b[96..104], &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        let c = CloneArgs {
            set_tid: 9,
            set_tid_size: 1,
            ..CloneArgs::default()
        };
        assert_eq!(
            &c.to_bytes()[64..80],
            &[9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        let caps = CapSets {
            effective: 1 << 33 | 1,
            permitted: 0,
            inheritable: 0,
        }
        .to_bytes();
        assert_eq!(&caps[8..12], &1u32.to_ne_bytes());
        assert_eq!(&caps[20..24], &2u32.to_ne_bytes());
    }
}
