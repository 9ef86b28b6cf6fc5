//! POSIX timers (`timer_create`) through dump and restore (tests/progs/timers.c): a
//! periodic `CLOCK_MONOTONIC` timer with a `sigev_value`, a disarmed one-shot
//! `CLOCK_REALTIME` one, a `SIGEV_THREAD_ID` one aimed at a second thread, and one whose
//! last signal was taken with an overrun. The image holds each with its ID, clock,
//! notification, setting and overrun; after the restore the
//! program finds, through the `timer_t` values it kept, the same timers (IDs), the period
//! kept and ticking on schedule, the disarmed one still disarmed, the long one's time
//! left, and signals that carry the right `si_value` and `si_timerid` to the right thread.
//! The overrun is saved but cannot be given back (no kernel call sets it): the restored
//! timer reports 0 until it overruns again, as docs/IMAGE-FORMAT.md says.
//! A dump that may not inject refuses the process and leaves it running.
//!
//! The program is driven by ready bytes on FIFOs only; the restore runs in the `pipecr`
//! binary.

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::process::Command;

use common::{KillOnDrop, PIPECR};
use pipecr_image::{Image, proto};

#[test]
fn posix_timers_come_back_with_their_ids_settings_and_targets() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("timers", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its timers");
    let out = root.join("out");
    let ids = last_line(&out);
    let overrun: i32 = ids
        .strip_prefix("ids 0 1 2 3 overrun ")
        .unwrap_or_else(|| panic!("{ids}"))
        .parse()
        .unwrap();
    assert!(overrun > 0);

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);

    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let mut timers = cores[0].posix_timers.clone();
    timers.sort_by_key(|t| t.id);
    let worker = cores[0].threads.iter().find(|t| t.tid != pid).unwrap().tid;
    let summary: Vec<(i32, i32, i32, i32, u64, i32, u64)> = timers
        .iter()
        .map(|t| {
            (
                t.id,
                t.clock,
                t.notify,
                t.signo,
                t.value,
                t.target,
                t.interval_ns,
            )
        })
        .collect();
    let rt = libc::SIGRTMIN();
    assert_eq!(
        summary,
        [
            (
                0,
                libc::CLOCK_MONOTONIC,
                libc::SIGEV_SIGNAL,
                rt + 2,
                1111,
                pid,
                20_000_000
            ),
            (
                1,
                libc::CLOCK_REALTIME,
                libc::SIGEV_SIGNAL,
                rt + 3,
                2222,
                pid,
                0
            ),
            (
                2,
                libc::CLOCK_MONOTONIC,
                libc::SIGEV_THREAD_ID,
                rt + 4,
                3333,
                worker,
                0
            ),
            (
                3,
                libc::CLOCK_MONOTONIC,
                libc::SIGEV_SIGNAL,
                rt + 5,
                4444,
                pid,
                1_000_000
            ),
        ]
    );
    assert!(timers[0].value_ns > 0 && timers[0].value_ns <= 20_000_000);
    assert_eq!(timers[1].value_ns, 0, "the fired one-shot is disarmed");
    assert!((900_000_000_000..1_000_000_000_000).contains(&timers[2].value_ns));
    assert_eq!(timers[3].overrun, overrun);

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&out), "ok", "the restored program's own check");
    // Saved, but not settable: the restored timer starts again at 0.
    step(&mut ctl, &mut ack, b'o');
    assert_eq!(last_line(&out), "overrun 0");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_dump_that_may_not_inject_refuses_posix_timers_and_leaves_the_process_running() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("timers", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let _guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program set up its timers");
    let img = root.join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "--no-inject", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {pid} has 4 POSIX timer(s)"))
            && stderr.contains("which this dump was asked not to do (--no-inject)"),
        "{stderr}"
    );
    assert!(!img.exists());
    // Resumed untouched: its timers still pass its own check.
    step(&mut ctl, &mut ack, b'v');
    assert_eq!(last_line(&root.join("out")), "ok");
    ctl.write_all(b"q").unwrap();
    assert!(prog.wait().unwrap().success());
}
