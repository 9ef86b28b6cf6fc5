//! Stopped processes through dump and restore: they come back stopped, by the same
//! signal, their parents' `waitpid` reports what it would have (a stop it had collected
//! is not reported again, one it had not is), and a `SIGCONT` resumes them
//! (tests/progs/stopper.c); a shell's stopped background job the same
//! (`bash -c 'sleep & kill -STOP; wait'`). A process traced by another (of the tree, or
//! outside it) is refused at dump, naming both, and the tree runs on.

mod common;

use common::{last_line, step};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{KillOnDrop, PIPECR};
use pipecr_image::{Image, proto};

#[test]
fn stopped_children_come_back_stopped_with_their_reports() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("stopper", root) else {
        return;
    };
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("both children are stopped");
    let out = root.join("out");
    let line = last_line(&out);
    let kids: Vec<i32> = line
        .strip_prefix("stopped ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let (a, b) = (kids[0], kids[1]);
    let _kids_guard = KillOnDrop(kids.clone());
    assert_eq!((common::state(a), common::state(b)), (Some('T'), Some('T')));

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&kids);
    for &p in [pid, a, b].iter() {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let stop = |p: i32| cores.iter().find(|c| c.pid == p).unwrap().stop_signal;
    assert_eq!(
        (stop(pid), stop(a), stop(b)),
        (0, libc::SIGSTOP, libc::SIGTSTP)
    );
    let reports: Vec<(i32, i32)> = cores
        .iter()
        .find(|c| c.pid == pid)
        .unwrap()
        .child_reports
        .iter()
        .map(|r| (r.pid, r.code))
        .collect();
    assert_eq!(reports, [(b, libc::CLD_STOPPED)], "A's was collected");
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    for want in [
        "stopped:      by SIGSTOP (a group stop; restored stopped)".to_owned(),
        "stopped:      by SIGTSTP (a group stop; restored stopped)".to_owned(),
        format!("child {b} stopped: its waitpid had yet to collect that"),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }

    let _guard = KillOnDrop(vec![pid, a, b]);
    let restore = common::restore(&img, pid);
    // Detached from their group-stop traps, they pass through running on their way
    // back into the stop.
    common::wait_until("A and B to be stopped again", || {
        (common::state(a), common::state(b)) == (Some('T'), Some('T'))
    });
    step(&mut ctl, &mut ack, b'w');
    assert_eq!(last_line(&out), "reports ok");
    step(&mut ctl, &mut ack, b'a');
    assert_eq!(last_line(&out), "A continued and runs");
    assert_eq!(common::state(b), Some('T'), "B is still stopped");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

#[test]
fn a_shells_stopped_job_comes_back_stopped_and_finishes() {
    if !common::capable() || !common::have("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::set_subreaper();
    let ready = root.join("ready");
    common::mkfifo(&ready);
    let out = root.join("out");
    let script = format!(
        "sleep 1000 & p=$!; kill -STOP $p; echo $p > {}; wait $p; echo \"status $?\" > {}",
        ready.display(),
        out.display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut shell = common::only_stdio(&mut cmd).spawn().unwrap();
    let pid = shell.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut line = String::new();
    File::open(&ready)
        .unwrap()
        .read_to_string(&mut line)
        .unwrap();
    let sleep: i32 = line.trim().parse().unwrap();
    let _sleep_guard = KillOnDrop(vec![sleep]);
    common::wait_until("sleep to stop", || common::state(sleep) == Some('T'));

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    shell.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&[sleep]);
    for p in [pid, sleep] {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    let _guard = KillOnDrop(vec![pid, sleep]);
    let restore = common::restore(&img, pid);
    // Detached from its group-stop trap, it passes through running on its way back
    // into the stop (its parent's waitpid already sees it stopped).
    common::wait_until("sleep to be stopped again", || {
        common::state(sleep) == Some('T')
    });
    common::kill_with(sleep, libc::SIGCONT);
    common::wait_until("sleep to run again", || common::state(sleep) == Some('S'));
    assert!(!out.exists(), "the shell still waits");
    common::kill_with(sleep, libc::SIGTERM);
    common::finish_restore(restore, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "status 143\n");
}

/// Starts tests/progs/tracer.c with `arg` and returns it with the PID it traces.
fn start_tracer(exe: &Path, arg: &str) -> (std::process::Child, i32) {
    let mut cmd = Command::new(exe);
    cmd.arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut tracer = common::only_stdio(&mut cmd).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tracer.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let traced = line
        .trim()
        .strip_prefix("tracing ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    (tracer, traced)
}

/// Runs `pipecr dump -t PID` expecting a refusal; returns its message.
fn refused_dump(pid: i32, img: &Path) -> String {
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(!img.exists(), "no image");
    err
}

/// A process of the tree traced by another of the tree, a process of the tree traced
/// from outside, and a process of the tree tracing one outside: each refused at dump,
/// naming both; the tree runs on, still traced as before.
#[test]
fn a_traced_process_is_refused_naming_both() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("tracer", root) else {
        return;
    };
    let img = root.join("img");

    // Inside the tree: the tracer and its traced child.
    let (mut tracer, child) = start_tracer(&exe, "child");
    let tpid = tracer.id() as i32;
    let _guard = KillOnDrop(vec![tpid, child]);
    let err = refused_dump(tpid, &img);
    assert!(
        err.contains(&format!(
            "pid {child} (tracer) is traced by pid {tpid} (tracer, a process of the tree)"
        )),
        "{err}"
    );
    assert_eq!(common::state(tpid), Some('S'), "the tracer runs on");
    let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    assert!(
        status.contains(&format!("TracerPid:\t{tpid}\n")),
        "still traced by it: {status}"
    );

    // From outside: dumping the traced child alone.
    let err = refused_dump(child, &img);
    assert!(
        err.contains(&format!(
            "pid {child} (tracer) is traced by pid {tpid} (tracer, outside the tree)"
        )),
        "{err}"
    );
    tracer.kill().unwrap();
    tracer.wait().unwrap();
    common::kill(child);

    // A process of the tree tracing one outside it.
    let mut cmd = Command::new("sleep");
    cmd.arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut outside = common::only_stdio(&mut cmd).spawn().unwrap();
    let opid = outside.id() as i32;
    let _outside_guard = KillOnDrop(vec![opid]);
    let (mut tracer, traced) = start_tracer(&exe, &opid.to_string());
    assert_eq!(traced, opid);
    let tpid = tracer.id() as i32;
    let _tracer_guard = KillOnDrop(vec![tpid]);
    let err = refused_dump(tpid, &img);
    assert!(
        err.contains(&format!(
            "pid {tpid} (tracer) of the tree traces pid {opid} (sleep), outside the tree"
        )),
        "{err}"
    );
    assert_eq!(common::state(tpid), Some('S'), "the tracer runs on");
    tracer.kill().unwrap();
    tracer.wait().unwrap();
    outside.kill().unwrap();
    outside.wait().unwrap();
}
