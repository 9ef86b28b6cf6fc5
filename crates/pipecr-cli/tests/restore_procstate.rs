//! The state a program sets for itself and relies on comes back, checked from inside the
//! restored program (tests/progs/procstate.c): per thread its name, credentials,
//! capabilities, securebits, parent-death signal, personality, timer slack, no_new_privs
//! and seccomp
//! filters (the one it shares with the main thread still shared, so a later TSYNC of its
//! own succeeds; each still denies the call it denied); per process personality,
//! dumpable, THP setting and child subreaper (an orphaned grandchild is re-parented to
//! it after the restore).

mod common;

use common::{last_line, step};
use std::io::{Read, Write};
use std::process::Command;

use common::{KillOnDrop, PIPECR};
use pipecr_image::{Image, proto};

/// `field` of the `/proc/PID/task/TID/status` text of `tid`.
fn task_status(pid: i32, tid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("{field} in {status}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn process_and_thread_state_comes_back() {
    if !common::capable() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the program changes its ids and securebits: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("procstate", root) else {
        return;
    };
    common::set_subreaper();
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b).expect("the program is ready");
    let out = root.join("out");
    let line = last_line(&out);
    let kids: Vec<i32> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let mut tree = vec![pid];
    tree.extend(&kids);
    let _kids_guard = KillOnDrop(kids.clone());
    step(&mut ctl, &mut ack, b'c');
    assert_eq!(last_line(&out), "same", "before the dump");
    let threads = common::children(pid);
    assert_eq!(threads, [kids[0]], "C is the only child");

    let img = root.join("img");
    common::dump(pid, &img, &[]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::reap(&kids);
    for &p in &tree {
        common::wait_until("every pid of the tree to be gone", || {
            common::state(p).is_none()
        });
    }

    // The image: the worker's own name, credentials, securebits, filters.
    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let core = cores.iter().find(|c| c.pid == pid).unwrap();
    let prctl = core.prctl.as_ref().expect("read by injection");
    assert_eq!(
        (prctl.dumpable, prctl.child_subreaper, prctl.thp_disable),
        (0, true, 1)
    );
    let main = core.threads.iter().find(|t| t.tid == pid).unwrap();
    let worker = core.threads.iter().find(|t| t.tid != pid).unwrap();
    let worker_tid = worker.tid;
    assert_eq!(worker.comm, "ps-worker");
    assert!(main.creds.is_none(), "the main thread's are the process's");
    let wc = worker.creds.as_ref().expect("the worker's differ");
    assert_eq!((wc.egid, wc.fsgid), (1234, 1234));
    assert_eq!(wc.cap_effective & (1 << 13), 0, "CAP_NET_RAW out");
    assert_eq!(main.prctl.as_ref().unwrap().securebits, 4);
    assert_eq!(worker.prctl.as_ref().unwrap().securebits, 16);
    assert_eq!(main.prctl.as_ref().unwrap().pdeathsig, libc::SIGWINCH);
    assert_eq!(worker.prctl.as_ref().unwrap().pdeathsig, libc::SIGURG);
    assert_eq!(
        (main.timer_slack_ns, worker.timer_slack_ns),
        (123456, 654321)
    );
    assert_eq!(
        (main.personality, worker.personality),
        (None, Some(0x60000))
    );
    assert_eq!(core.personality, 0x40000);
    let filters = |t: &proto::Thread| t.seccomp.as_ref().map_or(0, |s| s.filters.len());
    assert_eq!((filters(main), filters(worker)), (1, 2));
    assert_eq!(
        main.seccomp.as_ref().unwrap().filters[0],
        worker.seccomp.as_ref().unwrap().filters[0],
        "oldest first: the shared one"
    );
    assert!(main.no_new_privs && worker.no_new_privs);

    // `show` says so.
    let shown = Command::new(PIPECR).arg("show").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    for want in [
        "prctl:        dumpable 0, child subreaper, THP disabled".to_owned(),
        format!("thread {worker_tid} \"ps-worker\""),
        "securebits 0x10, parent-death signal SIGURG, personality 0x60000, timer slack \
         654321 ns, no_new_privs"
            .to_owned(),
        "seccomp: 2 filter(s), oldest first, of 7, 7 instruction(s)".to_owned(),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }

    let _guard = KillOnDrop(tree.clone());
    let restore = common::restore(&img, pid);
    // From outside: what /proc shows of each thread.
    assert_eq!(task_status(pid, worker_tid, "Gid:"), "0 1234 0 1234");
    assert_eq!(task_status(pid, pid, "Gid:"), "0 0 0 0");
    assert_eq!(task_status(pid, worker_tid, "Seccomp_filters:"), "2");
    assert_eq!(task_status(pid, pid, "NoNewPrivs:"), "1");
    assert_eq!(task_status(pid, pid, "THP_enabled:"), "0");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{worker_tid}/comm")).unwrap();
    assert_eq!(comm.trim(), "ps-worker");
    // From inside: everything it recorded.
    step(&mut ctl, &mut ack, b'c');
    assert_eq!(last_line(&out), "same", "after the restore");
    step(&mut ctl, &mut ack, b't');
    assert_eq!(
        last_line(&out),
        "tsync ok",
        "the shared filter is shared again"
    );
    step(&mut ctl, &mut ack, b'o');
    assert_eq!(last_line(&out), "adopted", "a subreaper again");
    ctl.write_all(b"q").unwrap();
    common::finish_restore(restore, 0);
}

/// A process in strict seccomp mode (tests/progs/strict.c) comes back in it: `read` and
/// `write` work, any other call kills it.
#[test]
fn strict_seccomp_mode_comes_back() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("strict", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program is in strict mode");
    step(&mut ctl, &mut ack, b'p');
    let img = root.join("img");
    // Injecting would kill it: refused, and it runs on.
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "thread {pid} of pid {pid} is in strict seccomp mode: the calls a dump injects"
        )) && err.contains("dump with --no-inject"),
        "{err}"
    );
    step(&mut ctl, &mut ack, b'p');
    common::dump(pid, &img, &["--no-inject"]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("its pid to be free", || common::state(pid).is_none());

    let image = Image::open(&img).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let seccomp = cores[0].threads[0].seccomp.as_ref().expect("saved");
    assert_eq!((seccomp.mode, seccomp.filters.len()), (1, 0));

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    assert_eq!(task_status(pid, pid, "Seccomp:"), "1");
    step(&mut ctl, &mut ack, b'p');
    // getpid: killed, as strict mode does.
    ctl.write_all(b"x").unwrap();
    common::finish_restore(restore, 128 + libc::SIGKILL);
}

/// A process whose seccomp filter kills it on a call the dump would inject
/// (tests/progs/guarded.c: getitimer) is refused, naming the call and the filter's
/// answer, and runs on; dumped without injection, it comes back under its filter, which
/// still kills it on that call.
#[test]
fn a_filter_that_would_kill_on_an_injected_call_is_refused_and_restored() {
    if !common::capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(exe) = common::build("guarded", root) else {
        return;
    };
    let (mut prog, mut ctl, mut ack) = common::start_driven(&exe, root);
    let pid = prog.id() as i32;
    let guard = KillOnDrop(vec![pid]);
    let mut b = [0u8; 1];
    ack.read_exact(&mut b)
        .expect("the program is under its filter");
    let img = root.join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "thread {pid} of pid {pid}: its seccomp filters answer getitimer(0, ...), which \
             the dump injects to read its state, with SECCOMP_RET_KILL_PROCESS"
        )),
        "{err}"
    );
    step(&mut ctl, &mut ack, b'p');
    common::dump(pid, &img, &["--no-inject"]);
    prog.wait().unwrap();
    std::mem::forget(guard);
    common::wait_until("its pid to be free", || common::state(pid).is_none());

    let _guard = KillOnDrop(vec![pid]);
    let restore = common::restore(&img, pid);
    assert_eq!(task_status(pid, pid, "Seccomp_filters:"), "1");
    step(&mut ctl, &mut ack, b'p');
    ctl.write_all(b"x").unwrap();
    common::finish_restore(restore, 128 + libc::SIGSYS);
}
