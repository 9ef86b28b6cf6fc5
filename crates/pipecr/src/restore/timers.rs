//! The POSIX timers (`timer_create`) of a restored process: checked before anything is
//! created ([`check`], [`check_kernel`]) and created again from inside the process with
//! their saved IDs, notification, period and time left ([`restore`]).
//!
//! A program keeps its timers' IDs in memory (`timer_t`, and `si_timerid` it compares),
//! so a timer must come back with the same ID: `prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)`
//! makes `timer_create` take the ID from `*timerid` (Linux 6.15+); a kernel without it is
//! refused before any process is created.
//!
//! What does not come back exactly:
//! - the overrun count (`timer_getoverrun`): the kernel has no call to set it, so a
//!   restored timer reports 0 until it overruns again;
//! - a timer armed with `TIMER_ABSTIME` is re-armed relative to the time left at dump (a
//!   `CLOCK_REALTIME` one no longer follows a change of the wall clock);
//! - a timer signal that was pending at dump is queued again as a plain signal with the
//!   same siginfo (`restore::signals`); the kernel counts the timer as not pending, so
//!   an expiry before the program takes it queues a second signal instead of raising the
//!   overrun.

use pipecr_image::proto;

use super::error::{ProcessRestoreError, Result};
use super::saved::SavedProcess;
use crate::inject::kstruct::{ITimerSpec, SigEvent};
use crate::inject::{InjectError, Injector, calls};
use nix::sys::mman::{MapFlags, ProtFlags};

/// The page the arguments of `timer_create` and `timer_settime` are written into.
const PAGE: u64 = 4096;

/// Checks, before anything is created, that every saved timer of `saved` is one
/// [`restore`] can create: distinct IDs, and each one [`crate::posix_timers::check`]
/// accepts against its saved threads.
pub(super) fn check(saved: &SavedProcess) -> Result<()> {
    let pid = saved.pid();
    let tids: Vec<i32> = saved.core.threads.iter().map(|t| t.tid).collect();
    let mut ids: Vec<i32> = saved.core.posix_timers.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) || ids.iter().any(|&id| id < 0) {
        return Err(ProcessRestoreError::Invalid {
            pid,
            what: format!("POSIX timer ids {ids:?}"),
        });
    }
    if !saved.core.posix_timers.is_empty() && !saved.core.handlers_read {
        return Err(ProcessRestoreError::Invalid {
            pid,
            what: "POSIX timers in an image whose handlers were not read".to_owned(),
        });
    }
    // The rule the dump applied already (an image from elsewhere may break it).
    for t in &saved.core.posix_timers {
        crate::posix_timers::check(pid, &tids, t)?;
    }
    Ok(())
}

/// Checks, before anything is created, that this kernel can give a new timer a chosen
/// ID when some process of `tree` has POSIX timers.
pub(super) fn check_kernel(tree: &[SavedProcess]) -> Result<()> {
    let Some(first) = tree.iter().find(|p| !p.core.posix_timers.is_empty()) else {
        return Ok(());
    };
    let supported = crate::sys::timer::restore_ids_supported().map_err(|e| {
        ProcessRestoreError::Unsupported {
            pid: first.pid(),
            what: format!("POSIX timers: prctl(PR_TIMER_CREATE_RESTORE_IDS) failed: {e}"),
        }
    })?;
    if !supported {
        return Err(ProcessRestoreError::Unsupported {
            pid: first.pid(),
            what: format!(
                "{} POSIX timer(s) with their IDs (ids {:?}): this kernel cannot give a new \
                 timer a chosen ID (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15 or later), \
                 and the program's timer_t values name the saved ones",
                first.core.posix_timers.len(),
                first
                    .core
                    .posix_timers
                    .iter()
                    .map(|t| t.id)
                    .collect::<Vec<_>>()
            ),
        });
    }
    Ok(())
}

/// Creates the saved POSIX timers of `core` in the process `inj` drives (its threads
/// exist: a timer may be aimed at one), each with its ID, clock and notification, then
/// arms each with its period and the time left (relative).
///
/// `timer_create` writes the new ID back, and the trampoline page is not writable by the
/// process: the arguments go into a page mapped for the purpose (the saved areas are all
/// in place, so the kernel picks a free place) and unmapped afterwards.
pub(super) fn restore(inj: &mut Injector, pid: i32, core: &proto::Core) -> Result<()> {
    if core.posix_timers.is_empty() {
        return Ok(());
    }
    let at = calls::mmap(
        inj,
        0,
        PAGE,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
        None,
        0,
    )?;
    let out = create_and_arm(inj, pid, at, core);
    let unmapped = calls::munmap(inj, at, PAGE);
    out?;
    unmapped?;
    Ok(())
}

/// [`restore`] with its arguments written at `at`, a writable page of the process.
fn create_and_arm(inj: &mut Injector, pid: i32, at: u64, core: &proto::Core) -> Result<()> {
    let failed =
        |t: &proto::PosixTimer, step: &str, source: InjectError| ProcessRestoreError::Timer {
            pid,
            id: t.id,
            what: format!(
                "clock {}, notify {}, signal {}, target {}: {step}",
                t.clock, t.notify, t.signo, t.target
            ),
            source,
        };
    calls::prctl_timer_create_restore_ids(inj, true).map_err(|source| {
        ProcessRestoreError::Timer {
            pid,
            id: core.posix_timers[0].id,
            what: "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)".to_owned(),
            source,
        }
    })?;
    let created = (|| {
        for t in &core.posix_timers {
            let event = SigEvent {
                value: t.value,
                signo: t.signo,
                notify: t.notify,
                tid: if t.notify & libc::SIGEV_THREAD_ID != 0 {
                    t.target
                } else {
                    0
                },
            };
            let id = calls::timer_create_at(inj, at, t.clock, &event, t.id)
                .map_err(|e| failed(t, "timer_create", e))?;
            if id != t.id {
                return Err(ProcessRestoreError::Unsupported {
                    pid,
                    what: format!("POSIX timer {}: the kernel gave it ID {id}", t.id),
                });
            }
        }
        Ok(())
    })();
    // Off again whatever happened: the program's own timer_create must not read its
    // timer_t as a wish.
    let off = calls::prctl_timer_create_restore_ids(inj, false);
    created?;
    off?;
    for t in core.posix_timers.iter().filter(|t| t.value_ns != 0) {
        let spec = ITimerSpec {
            interval_ns: t.interval_ns,
            value_ns: t.value_ns,
        };
        calls::timer_settime_at(inj, at, t.id, 0, &spec)
            .map_err(|e| failed(t, "timer_settime", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(timers: Vec<proto::PosixTimer>) -> SavedProcess {
        let thread = |tid| proto::Thread {
            tid,
            ..Default::default()
        };
        SavedProcess {
            process: proto::Process {
                pid: 100,
                ..Default::default()
            },
            core: proto::Core {
                pid: 100,
                threads: vec![thread(100), thread(101)],
                handlers_read: true,
                posix_timers: timers,
                ..Default::default()
            },
            mm: proto::Mm::default(),
        }
    }

    #[test]
    fn unsupported_timers_are_refused_by_name() {
        let timer = proto::PosixTimer {
            id: 3,
            clock: 1,
            notify: libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID,
            signo: 40,
            target: 101,
            ..Default::default()
        };
        assert!(check(&saved(vec![timer])).is_ok());
        let stray = proto::PosixTimer {
            target: 555,
            ..timer
        };
        let msg = check(&saved(vec![stray])).unwrap_err().to_string();
        assert!(
            msg.contains("pid 100") && msg.contains("POSIX timer 3") && msg.contains("555"),
            "{msg}"
        );
        let thread_cpu = proto::PosixTimer { clock: -2, ..timer };
        let msg = check(&saved(vec![thread_cpu])).unwrap_err().to_string();
        assert!(msg.contains("CPU-time clock"), "{msg}");
        let twice = vec![timer, timer];
        assert!(check(&saved(twice)).is_err());
    }
}
