//! Probes for the kernel features and capabilities pipecr relies on, as `pipecr check`
//! reports them.
//!
//! Each probe *uses* the feature on objects it creates and destroys itself (pipes, a
//! memfd, a throw-away child), rather than trusting a kernel version: a feature can be
//! configured out, blocked by seccomp or an LSM, or need a capability. No probe leaves a
//! process or a descriptor behind: descriptors are [`OwnedFd`]s, and the one child is a
//! [`ParkedChild`](crate::sys::clone3::ParkedChild), killed and reaped when dropped.
//!
//! This module only reports; what to print, and whether a missing feature is fatal, is
//! the caller's business (see [`Check::required`] and [`all_required_ok`]).

use std::cmp::Ordering;
use std::fmt;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::ptrace;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use rustix::fs::{MemfdFlags, fstat, memfd_create};
use rustix::io::{fcntl_dupfd_cloexec, ioctl_fionread, read, write};
use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice, tee};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

use crate::sys::clone3::{fork_parked, probe_set_tid};
use crate::sys::kcmp::{TargetFd, kcmp_files};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The feature works; the text says what was seen (a value, a version).
    Ok(String),
    /// The feature is missing or does not work; the text says why and what it costs.
    Missing(String),
}

/// One probed feature or capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name of what was probed, e.g. `"pidfd_getfd"` or `"CAP_SYS_PTRACE"`.
    pub name: &'static str,
    /// True when pipecr cannot checkpoint or restore without it; false for information
    /// (limits, optional capabilities, the kernel release).
    pub required: bool,
    /// What the probe found.
    pub status: Status,
}

impl Check {
    /// True when the probe found the feature working.
    pub fn is_ok(&self) -> bool {
        matches!(self.status, Status::Ok(_))
    }

    /// The probe's detail or reason text.
    pub fn detail(&self) -> &str {
        match &self.status {
            Status::Ok(s) | Status::Missing(s) => s,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match (&self.status, self.required) {
            (Status::Ok(_), _) => "ok",
            (Status::Missing(_), true) => "MISSING",
            (Status::Missing(_), false) => "absent",
        };
        write!(f, "{word:<8}{}: {}", self.name, self.detail())
    }
}

/// True when every [`Check::required`] probe found its feature.
pub fn all_required_ok(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.is_ok() || !c.required)
}

/// Runs every probe, in a fixed order, and returns one [`Check`] each.
///
/// The ptrace probe seizes, interrupts and detaches its child from the calling thread
/// (ptrace belongs to a thread) and waits for that child's PID only; nothing stays
/// attached or alive afterwards.
pub fn run_checks() -> Vec<Check> {
    let caps = read_cap_eff();
    let pipe_max = crate::pipe::pipe_max_size();
    let mut checks = vec![
        probe("pidfd_getfd", true, probe_pidfd),
        probe("kcmp KCMP_FILE", true, probe_kcmp),
        probe("tee", true, probe_tee),
        probe("splice", true, probe_splice),
        probe("vmsplice", true, probe_vmsplice),
        probe("ptrace seize", true, probe_ptrace),
        probe("clone3 set_tid", true, probe_clone3),
        probe("timer_create chosen IDs", false, probe_timer_ids),
        probe("System V IPC ids", false, crate::ipc::probe),
    ];
    checks.push(cap_check(
        "CAP_CHECKPOINT_RESTORE",
        true,
        &caps,
        &[CAP_CHECKPOINT_RESTORE, CAP_SYS_ADMIN],
        "needed to restore processes with their PIDs (clone3 set_tid) and to read \
         /proc/PID/map_files"
            .to_owned(),
    ));
    checks.push(cap_check(
        "CAP_SYS_PTRACE",
        true,
        &caps,
        &[CAP_SYS_PTRACE],
        "needed to freeze and read processes that are not our own children or belong to \
         another user"
            .to_owned(),
    ));
    let max_text = match &pipe_max {
        Ok(n) => format!("{n} bytes"),
        Err(_) => "the limit".to_owned(),
    };
    checks.push(cap_check(
        "CAP_SYS_RESOURCE",
        false,
        &caps,
        &[CAP_SYS_RESOURCE],
        format!("pipe capacities above /proc/sys/fs/pipe-max-size ({max_text}) cannot be restored"),
    ));
    checks.push(Check {
        name: "pipe-max-size",
        required: false,
        status: match pipe_max {
            Ok(n) => Status::Ok(format!("{n} bytes (/proc/sys/fs/pipe-max-size)")),
            Err(e) => Status::Missing(format!("cannot read /proc/sys/fs/pipe-max-size: {e}")),
        },
    });
    let uname = rustix::system::uname();
    checks.push(Check {
        name: "kernel",
        required: false,
        status: Status::Ok(format!(
            "{} {}",
            uname.release().to_string_lossy(),
            uname.machine().to_string_lossy()
        )),
    });
    checks
}

fn probe(name: &'static str, required: bool, f: fn() -> Result<String, String>) -> Check {
    Check {
        name,
        required,
        status: match f() {
            Ok(detail) => Status::Ok(detail),
            Err(reason) => Status::Missing(reason),
        },
    }
}

/// Bytes the pipe probes move around.
const PAYLOAD: &[u8] = b"pipecr check payload";

/// A pipe holding [`PAYLOAD`]: (read end, write end).
fn filled_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let (r, w) =
        pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| format!("pipe2: {e}"))?;
    let n = write(&w, PAYLOAD).map_err(|e| format!("write to a new pipe: {e}"))?;
    if n != PAYLOAD.len() {
        return Err(format!(
            "short write to a new pipe: {n} of {}",
            PAYLOAD.len()
        ));
    }
    Ok((r, w))
}

/// Reads everything pending from a non-blocking pipe read end.
fn drain(r: impl AsFd) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match read(&r, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::AGAIN) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read from a pipe: {e}")),
        }
    }
}

fn expect_payload(what: &str, got: &[u8]) -> Result<(), String> {
    if got == PAYLOAD {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {} bytes that differ from the {} written",
            got.len(),
            PAYLOAD.len()
        ))
    }
}

fn probe_pidfd() -> Result<String, String> {
    let (r, _w) = filled_pipe()?;
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open (Linux 5.3+): {e}"))?;
    let got = pidfd_getfd(&pidfd, r.as_raw_fd(), PidfdGetfdFlags::empty())
        .map_err(|e| format!("pidfd_getfd (Linux 5.6+): {e}"))?;
    let (a, b) = (
        fstat(&r).map_err(|e| format!("fstat: {e}"))?,
        fstat(&got).map_err(|e| format!("fstat: {e}"))?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err("pidfd_getfd returned a different file".to_owned());
    }
    Ok(format!(
        "pidfd_open + pidfd_getfd on self: fd {} fetched as pipe:[{}]",
        r.as_raw_fd(),
        b.st_ino
    ))
}

fn probe_kcmp() -> Result<String, String> {
    let (r, w) = filled_pipe()?;
    let dup = fcntl_dupfd_cloexec(&r, 0).map_err(|e| format!("dup: {e}"))?;
    let me = getpid();
    let fd = |f: &OwnedFd| TargetFd(f.as_raw_fd());
    let same = kcmp_files(me, fd(&r), me, fd(&dup)).map_err(|e| format!("kcmp: {e}"))?;
    if same != Ordering::Equal {
        return Err("a descriptor and its dup compare as different open files".to_owned());
    }
    let other = kcmp_files(me, fd(&r), me, fd(&w)).map_err(|e| format!("kcmp: {e}"))?;
    if other == Ordering::Equal {
        return Err("the two ends of a pipe compare as one open file".to_owned());
    }
    Ok("tells a dup (same open file) from the other end of the pipe".to_owned())
}

fn probe_tee() -> Result<String, String> {
    let (r, _w) = filled_pipe()?;
    let (sr, sw) =
        pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| format!("pipe2: {e}"))?;
    let n = tee(&r, &sw, usize::MAX, SpliceFlags::NONBLOCK).map_err(|e| format!("tee: {e}"))?;
    if n != PAYLOAD.len() {
        return Err(format!("tee copied {n} of {} bytes", PAYLOAD.len()));
    }
    let left = ioctl_fionread(&r).map_err(|e| format!("ioctl(FIONREAD): {e}"))?;
    if left != PAYLOAD.len() as u64 {
        return Err(format!(
            "tee consumed data: {left} of {} bytes left",
            PAYLOAD.len()
        ));
    }
    expect_payload("tee copy", &drain(&sr)?)?;
    expect_payload("tee source", &drain(&r)?)?;
    Ok(format!("copied {n} bytes without consuming them"))
}

fn probe_splice() -> Result<String, String> {
    let (r, _w) = filled_pipe()?;
    let memfd = memfd_create("pipecr-check", MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd_create: {e}"))?;
    let out = splice(&r, None, &memfd, None, PAYLOAD.len(), SpliceFlags::NONBLOCK)
        .map_err(|e| format!("splice pipe -> file: {e}"))?;
    if out != PAYLOAD.len() {
        return Err(format!(
            "splice pipe -> file moved {out} of {} bytes",
            PAYLOAD.len()
        ));
    }
    let (br, bw) =
        pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| format!("pipe2: {e}"))?;
    let mut offset = 0u64;
    let back = splice(
        &memfd,
        Some(&mut offset),
        &bw,
        None,
        PAYLOAD.len(),
        SpliceFlags::NONBLOCK,
    )
    .map_err(|e| format!("splice file -> pipe: {e}"))?;
    if back != PAYLOAD.len() {
        return Err(format!(
            "splice file -> pipe moved {back} of {} bytes",
            PAYLOAD.len()
        ));
    }
    expect_payload("splice round trip", &drain(&br)?)?;
    Ok(format!("pipe -> memfd -> pipe, {out} bytes each way"))
}

fn probe_vmsplice() -> Result<String, String> {
    let (r, w) =
        pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| format!("pipe2: {e}"))?;
    // `w` is a write end, so the kernel only reads from PAYLOAD (into the pipe); without
    // SPLICE_F_GIFT the pages are not handed over.
    let n = nix::fcntl::vmsplice(
        &w,
        &[IoSlice::new(PAYLOAD)],
        nix::fcntl::SpliceFFlags::empty(),
    )
    .map_err(|e| format!("vmsplice: {e}"))?;
    if n != PAYLOAD.len() {
        return Err(format!("vmsplice moved {n} of {} bytes", PAYLOAD.len()));
    }
    expect_payload("vmsplice", &drain(&r)?)?;
    Ok(format!("{n} bytes from memory into a pipe"))
}

fn probe_ptrace() -> Result<String, String> {
    let child = fork_parked().map_err(|e| format!("cannot create a child to trace: {e}"))?;
    let raw = child.pid().as_raw_nonzero().get();
    let pid = nix::unistd::Pid::from_raw(raw);
    ptrace::seize(pid, ptrace::Options::empty())
        .map_err(|e| format!("PTRACE_SEIZE of child {raw}: {e}"))?;
    ptrace::interrupt(pid).map_err(|e| format!("PTRACE_INTERRUPT of child {raw}: {e}"))?;
    let status = loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| format!("waitpid({raw}): {e}"))?,
        }
    };
    let stopped = matches!(
        status,
        WaitStatus::PtraceEvent(p, nix::sys::signal::Signal::SIGTRAP, libc::PTRACE_EVENT_STOP)
            if p == pid
    );
    if !stopped {
        return Err(format!(
            "child {raw} did not report PTRACE_EVENT_STOP after PTRACE_INTERRUPT: {status:?}"
        ));
    }
    ptrace::detach(pid, None).map_err(|e| format!("PTRACE_DETACH of child {raw}: {e}"))?;
    // Dropping `child` kills and reaps it, on the error paths above too.
    drop(child);
    Ok("seized and interrupted a child, then detached".to_owned())
}

fn probe_timer_ids() -> Result<String, String> {
    match crate::sys::timer::restore_ids_supported() {
        Ok(true) => Ok(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS) known: POSIX timers come back with their IDs"
                .to_owned(),
        ),
        Ok(false) => Err(
            "no prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.15+): images with \
                          POSIX timers (timer_create) cannot be restored here"
                .to_owned(),
        ),
        Err(e) => Err(format!("prctl(PR_TIMER_CREATE_RESTORE_IDS) failed: {e}")),
    }
}

fn probe_clone3() -> Result<String, String> {
    match probe_set_tid() {
        Ok(()) => {
            Ok("clone3 accepts a chosen PID (probe refused with EEXIST, as expected)".to_owned())
        }
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::EPERM) => {
                "clone3 set_tid refused (EPERM): needs CAP_CHECKPOINT_RESTORE; processes \
                 cannot be restored with their PIDs"
                    .to_owned()
            }
            Some(libc::ENOSYS) => "no clone3 in this kernel (Linux 5.3+ needed)".to_owned(),
            Some(libc::E2BIG | libc::EINVAL) => {
                format!("clone3 without set_tid support (Linux 5.5+ needed): {e}")
            }
            _ => format!("clone3 set_tid probe failed: {e}"),
        }),
    }
}

/// Capability bit numbers from `<linux/capability.h>`.
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// The effective capability set from `/proc/self/status` (`CapEff:`, hexadecimal).
fn read_cap_eff() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or("no CapEff line in /proc/self/status")?;
    u64::from_str_radix(hex.trim(), 16).map_err(|e| {
        format!(
            "cannot parse CapEff {:?} in /proc/self/status: {e}",
            hex.trim()
        )
    })
}

fn cap_name(bit: u32) -> &'static str {
    match bit {
        CAP_SYS_PTRACE => "CAP_SYS_PTRACE",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_SYS_RESOURCE => "CAP_SYS_RESOURCE",
        CAP_CHECKPOINT_RESTORE => "CAP_CHECKPOINT_RESTORE",
        _ => "capability",
    }
}

/// A capability check: Ok when any of `bits` is effective (the first is the one named, the
/// others are older, broader capabilities the kernel accepts instead).
fn cap_check(
    name: &'static str,
    required: bool,
    caps: &Result<u64, String>,
    bits: &[u32],
    without: String,
) -> Check {
    let status = match caps {
        Err(e) => Status::Missing(e.clone()),
        Ok(eff) => match bits.iter().find(|&&b| eff & (1u64 << b) != 0) {
            Some(&b) if b == bits[0] => Status::Ok(format!("effective (bit {b})")),
            Some(&b) => Status::Ok(format!("effective through {} (bit {b})", cap_name(b))),
            None => Status::Missing(format!("not effective (CapEff {eff:#x}): {without}")),
        },
    };
    Check {
        name,
        required,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    fn has_cap(bit: u32) -> bool {
        read_cap_eff().unwrap() & (1 << bit) != 0
    }

    #[test]
    fn feature_probes_pass_here() {
        let checks = run_checks();
        for name in [
            "pidfd_getfd",
            "kcmp KCMP_FILE",
            "tee",
            "splice",
            "vmsplice",
            "ptrace seize",
            "pipe-max-size",
            "kernel",
            "System V IPC ids",
        ] {
            let c = by_name(&checks, name);
            assert!(c.is_ok(), "{c}");
        }
    }

    #[test]
    fn capability_checks_follow_cap_eff() {
        let checks = run_checks();
        assert_eq!(
            by_name(&checks, "CAP_SYS_PTRACE").is_ok(),
            has_cap(CAP_SYS_PTRACE)
        );
        assert_eq!(
            by_name(&checks, "CAP_SYS_RESOURCE").is_ok(),
            has_cap(CAP_SYS_RESOURCE)
        );
        let restore = has_cap(CAP_CHECKPOINT_RESTORE) || has_cap(CAP_SYS_ADMIN);
        assert_eq!(by_name(&checks, "CAP_CHECKPOINT_RESTORE").is_ok(), restore);
        assert_eq!(by_name(&checks, "clone3 set_tid").is_ok(), restore);
        assert!(!by_name(&checks, "CAP_SYS_RESOURCE").required);
        if !has_cap(CAP_SYS_RESOURCE) {
            assert!(
                by_name(&checks, "CAP_SYS_RESOURCE")
                    .detail()
                    .contains("pipe-max-size")
            );
        }
    }

    #[test]
    fn no_child_left_behind() {
        run_checks();
        // Children are listed per creating thread, so tests on other threads do not count.
        match std::fs::read_to_string("/proc/thread-self/children") {
            Ok(children) => assert_eq!(children.trim(), "", "children left: {children}"),
            Err(e) => eprintln!("skipped: /proc/thread-self/children unreadable ({e})"),
        }
    }

    #[test]
    fn display_is_one_line_per_check() {
        let ok = Check {
            name: "tee",
            required: true,
            status: Status::Ok("fine".into()),
        };
        let missing = Check {
            name: "clone3 set_tid",
            required: true,
            status: Status::Missing("EPERM".into()),
        };
        assert_eq!(ok.to_string(), "ok      tee: fine");
        assert_eq!(missing.to_string(), "MISSING clone3 set_tid: EPERM");
        assert!(all_required_ok(std::slice::from_ref(&ok)));
        assert!(!all_required_ok(&[ok, missing]));
    }
}
