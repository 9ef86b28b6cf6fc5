//! Freezing live trees: everything stops, everything resumes, nothing sees EINTR, and
//! each refusal leaves the tree as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

use pipecr::freeze::{self, FreezeError};

mod common;

fn state(pid: i32) -> char {
    pipecr::proc::stat(pid).unwrap().state
}

/// `sh -c 'cat | cat'`, with its stdin and stdout as pipes held by the test. Waits until
/// all three processes exist: the shell echoes a ready line once both cats are forked.
/// (An asynchronous list reads /dev/null unless given another stdin: hence fd 3.)
fn cat_pipeline() -> Child {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec 3<&0; cat <&3 3<&- | cat & echo ready >&2; wait")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 6];
    child
        .stderr
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    assert_eq!(&ready, b"ready\n");
    child
}

fn descendants(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for tid in pipecr::proc::threads(p).unwrap() {
            out.extend(pipecr::proc::children(p, tid).unwrap());
        }
        i += 1;
    }
    out
}

#[test]
fn a_pipeline_blocked_in_read_stops_and_resumes_without_losing_data() {
    let mut child = cat_pipeline();
    let root = child.id() as i32;
    // The shell forks both cats before it echoes "ready": sh, cat and cat exist now.
    let all = descendants(root);
    assert_eq!(all.len(), 3, "sh and two cats: {all:?}");
    let tree = freeze::freeze(root).unwrap();
    assert_eq!(
        tree.processes().len(),
        all.len(),
        "every process of the tree is frozen"
    );
    for p in tree.processes() {
        assert_eq!(
            state(p.pid),
            't',
            "pid {} ({}) is in tracing stop",
            p.pid,
            p.comm
        );
    }
    assert_eq!(tree.processes()[0].pid, root);
    tree.resume();
    for &pid in &all {
        assert_ne!(state(pid), 't', "pid {pid} resumed");
    }
    // The cats were blocked in read() when stopped; they must complete it normally.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"through the thawed pipeline\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the thawed pipeline\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "neither cat reported an error"
    );
    assert!(out.status.success());
}

/// A python3 reader that would see EINTR if any signal it handles interrupted its
/// read(): handlers for SIGCONT, SIGUSR1 and SIGCHLD installed without SA_RESTART, and a
/// raw libc read() (Python's own os.read would retry after EINTR). It prints what the read
/// returned and which signals it handled.
const EINTR_PROBE: &str = r#"
import ctypes, errno, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
hits = []
for s in (signal.SIGCONT, signal.SIGUSR1, signal.SIGCHLD):
    signal.signal(s, lambda n, f: hits.append(n))
    signal.siginterrupt(s, True)
print("ready", flush=True)
buf = ctypes.create_string_buffer(64)
r = libc.read(0, buf, 64)
e = ctypes.get_errno()
print("EINTR" if r < 0 and e == errno.EINTR else "read %r" % buf.raw[:r], "signals", hits, flush=True)
"#;

#[test]
fn a_reader_with_non_restarting_handlers_sees_no_eintr() {
    let mut child = Command::new("python3")
        .args(["-c", EINTR_PROBE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    // Wait until it is inside read(0, ...), not merely about to call it.
    let in_read = format!("{} 0x0 ", libc::SYS_read);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .unwrap()
        .starts_with(&in_read)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "python3 never blocked in read()"
        );
        std::thread::yield_now();
    }
    for _ in 0..3 {
        let tree = freeze::freeze(pid).unwrap();
        assert_eq!(state(pid), 't');
        tree.resume();
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"after the freezes\n").unwrap();
    drop(stdin);
    let mut line = String::new();
    out.read_to_string(&mut line).unwrap();
    assert_eq!(line, "read b'after the freezes\\n' signals []\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn dropping_the_frozen_tree_resumes_it() {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    {
        let tree = freeze::freeze(pid).unwrap();
        assert_eq!(tree.thread_count(), 1);
        assert_eq!(state(pid), 't');
    }
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "x");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_missing_pid_is_refused_by_number() {
    let err = freeze::freeze(99_999_999).unwrap_err();
    assert!(
        matches!(err, FreezeError::NoSuchProcess { pid: 99_999_999 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no process with pid 99999999");
}

/// A kernel thread visible in this PID namespace: PF_KTHREAD (0x00200000) in the flags
/// field of its `/proc/PID/stat`.
fn a_kernel_thread() -> Option<(i32, String)> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_owned();
        // After "(comm) ": state ppid pgrp session tty_nr tpgid flags.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let flags: u64 = rest.split(' ').nth(6).unwrap().parse().unwrap();
        if flags & PF_KTHREAD != 0 {
            return Some((pid, comm));
        }
    }
    None
}

#[test]
fn a_kernel_thread_is_refused() {
    let Some((pid, comm)) = a_kernel_thread() else {
        eprintln!("skipped: no kernel thread is visible in this PID namespace");
        return;
    };
    let err = freeze::freeze(pid).unwrap_err();
    assert!(
        matches!(&err, FreezeError::KernelThread { pid: p, comm: c } if *p == pid && *c == comm),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("pid {pid} ({comm}) is a kernel thread; there is nothing to checkpoint")
    );
}

#[test]
fn a_tree_containing_pipecr_itself_is_refused() {
    let me = std::process::id() as i32;
    let err = freeze::freeze(me).unwrap_err();
    assert!(
        matches!(err, FreezeError::ContainsSelf { root, me: m } if root == me && m == me),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the tree of pid {me} contains this pipecr process (pid {me}); run pipecr from outside the tree"
        )
    );
    // An ancestor's tree contains us too (unless our parent is outside this PID namespace).
    let parent = nix::unistd::getppid().as_raw();
    if parent > 0 {
        let err = freeze::freeze(parent).unwrap_err();
        assert!(
            matches!(err, FreezeError::ContainsSelf { root, me: m } if root == parent && m == me),
            "{err:?}"
        );
        assert_eq!(
            thread_status(parent, parent).map(|(_, tracer)| tracer),
            Some(0),
            "our parent was left untraced"
        );
    }
}

#[test]
fn a_process_traced_by_someone_else_is_refused_untouched() {
    let mut target = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id() as i32;
    // Another tracer: python3 seizes the target, says so, and holds on until its stdin closes.
    let script = format!(
        "import ctypes,sys\nlibc=ctypes.CDLL(None,use_errno=True)\n\
         r=libc.ptrace(0x4206,{pid},0,0)\nsys.stdout.write('seized\\n' if r==0 else 'failed %d\\n'%ctypes.get_errno())\n\
         sys.stdout.flush()\nsys.stdin.read()\n"
    );
    let mut tracer = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 7];
    tracer
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"seized\n");
    let err = freeze::freeze(pid).unwrap_err();
    match err {
        FreezeError::AlreadyTraced {
            pid: p,
            tracer: t,
            where_,
            ..
        } => {
            assert_eq!(p, pid);
            assert_eq!(t, tracer.id() as i32);
            assert_eq!(where_, "outside the tree");
        }
        other => panic!("expected AlreadyTraced, got {other:?}"),
    }
    drop(tracer.stdin.take());
    assert!(tracer.wait().unwrap().success());
    // The target still works.
    target.stdin.take().unwrap().write_all(b"ok").unwrap();
    let mut out = String::new();
    target
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "ok");
    assert!(target.wait().unwrap().success());
}

// ---- a tree that keeps changing while it is frozen ----

/// The pid and parent pid of every process in /proc, from `/proc/PID/stat`.
fn all_parents() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid = rest.split(' ').nth(1).unwrap().parse().unwrap();
        out.push((pid, ppid));
    }
    out
}

/// `root` and its descendants, found by following the ppid links of every process.
fn tree_by_ppid(root: i32) -> BTreeSet<i32> {
    let parents = all_parents();
    let mut tree = BTreeSet::from([root]);
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for &(pid, _) in parents.iter().filter(|&&(_, ppid)| ppid == parent) {
            if tree.insert(pid) {
                queue.push(pid);
            }
        }
    }
    tree
}

fn task_ids(pid: i32) -> BTreeSet<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().parse().unwrap())
        .collect()
}

/// (State letter, TracerPid) of a thread, or `None` once it is gone.
fn thread_status(pid: i32, tid: i32) -> Option<(char, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let state = field("State:").chars().next().unwrap();
    let tracer = field("TracerPid:").parse().unwrap();
    Some((state, tracer))
}

/// A progress record of `freeze_churn`: (sequence number, threads created by the root).
fn record(bytes: &[u8]) -> (u32, u32) {
    let word = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
    (word(0), word(4))
}

/// Kills the churning tree's process group however the test ends.
struct Churn {
    child: Child,
}

impl Drop for Churn {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
}

#[test]
fn a_tree_creating_threads_and_processes_nonstop_is_frozen_whole() {
    use std::os::unix::process::CommandExt;
    let exe = common::build_c(
        "freeze-churn",
        include_str!("c/freeze_churn.c"),
        &["-pthread"],
    );
    // TracerPid names the tracing thread: this test's.
    let me = nix::unistd::gettid().as_raw();
    let mut churn = Churn {
        child: Command::new(exe)
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    let root = churn.child.id() as i32;
    let mut progress = churn.child.stdout.take().unwrap();
    let mut rec = [0u8; 8];
    // The first record: both spawner threads of the root are running.
    progress.read_exact(&mut rec).unwrap();
    let mut last = record(&rec);

    let mut most_processes = 0;
    for cycle in 0..10 {
        let tree = freeze::freeze(root).unwrap();
        // Every thread of the tree is stopped: nothing in it can fork, clone or exit,
        // so what /proc shows now is the whole tree.
        let frozen: BTreeMap<i32, BTreeSet<i32>> = tree
            .processes()
            .iter()
            .map(|p| (p.pid, p.threads.iter().copied().collect()))
            .collect();
        let in_proc = tree_by_ppid(root);
        assert_eq!(
            frozen.keys().copied().collect::<BTreeSet<_>>(),
            in_proc,
            "cycle {cycle}: the frozen processes are exactly the tree's"
        );
        let mut threads = 0;
        for (&pid, tids) in &frozen {
            assert_eq!(
                &task_ids(pid),
                tids,
                "cycle {cycle}: every thread of pid {pid} is frozen"
            );
            for &tid in tids {
                assert_eq!(
                    thread_status(pid, tid),
                    Some(('t', me)),
                    "cycle {cycle}: thread {tid} of pid {pid} is in tracing stop, traced by us"
                );
            }
            threads += tids.len();
        }
        assert_eq!(tree.thread_count(), threads, "cycle {cycle}");
        most_processes = most_processes.max(frozen.len());

        // Drain what the root wrote before it stopped: the last record says how far it got.
        rustix::fs::fcntl_setfl(&progress, rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rustix::io::read(&progress, &mut buf) {
                Ok(n) => {
                    assert!(n > 0 && n % 8 == 0, "whole records: {n} bytes");
                    last = record(&buf[n - 8..n]);
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("progress pipe: {e}"),
            }
        }
        rustix::fs::fcntl_setfl(&progress, rustix::fs::OFlags::empty()).unwrap();

        tree.resume();
        for (&pid, tids) in &frozen {
            for &tid in tids {
                // A short-lived thread may be gone already; any other is untraced.
                if let Some((_, tracer)) = thread_status(pid, tid) {
                    assert_eq!(
                        tracer, 0,
                        "cycle {cycle}: thread {tid} of pid {pid} detached"
                    );
                }
            }
        }
        // The root goes on where it stopped: the next records follow on, and its
        // spawner threads create threads again.
        let at_freeze = last;
        loop {
            progress.read_exact(&mut rec).unwrap();
            let next = record(&rec);
            assert_eq!(
                next.0,
                last.0 + 1,
                "cycle {cycle}: no record lost or repeated"
            );
            last = next;
            if last.0 >= at_freeze.0 + 3 && last.1 > at_freeze.1 {
                break;
            }
        }
    }
    assert!(
        most_processes > 10,
        "the tree grew while it was frozen and thawed: at most {most_processes} processes"
    );
    drop(progress);
    drop(churn);
}

/// A python3 parent whose child exited with status 5 and is not reaped: it prints the
/// child's pid once the child is a zombie (waitid WNOWAIT), then blocks reading stdin.
fn parent_of_a_zombie() -> (Child, i32) {
    let mut parent = Command::new("python3")
        .args([
            "-c",
            "import os, sys\n\
             p = os.fork()\n\
             if p == 0: os._exit(5)\n\
             os.waitid(os.P_PID, p, os.WEXITED | os.WNOWAIT)\n\
             print(p, flush=True)\n\
             sys.stdin.read()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let zombie = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    (parent, zombie)
}

#[test]
fn a_zombie_child_is_recorded_with_its_wait_status_not_seized() {
    let (mut parent, zombie) = parent_of_a_zombie();
    let pid = parent.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    assert_eq!(
        tree.processes().iter().map(|p| p.pid).collect::<Vec<_>>(),
        [pid]
    );
    let stat = pipecr::proc::stat(pid).unwrap();
    assert_eq!(
        tree.zombies(),
        [freeze::FrozenZombie {
            pid: zombie,
            ppid: pid,
            pgid: stat.pgid,
            sid: stat.sid,
            exit_status: 5 << 8,
        }]
    );
    assert_eq!(tree.thread_count(), 1, "only the parent's thread is seized");
    drop(tree);
    // Resumed, and the zombie is still its parent's to reap.
    assert_eq!(state(zombie), 'Z');
    drop(parent.stdin.take());
    assert!(parent.wait().unwrap().success());
}

#[test]
fn a_zombie_root_is_refused() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Exited, not reaped: waitid WNOWAIT waits for that and leaves it a zombie.
    rustix::process::waitid(
        rustix::process::WaitId::Pid(rustix::process::Pid::from_raw(pid).unwrap()),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
    )
    .unwrap();
    let err = freeze::freeze(pid).unwrap_err();
    assert!(
        matches!(err, FreezeError::Zombie { pid: p } if p == pid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "pid {pid} is a zombie (exited, not yet reaped by its parent): there is nothing left \
             to checkpoint"
        )
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_process_whose_main_thread_exited_while_another_runs_is_refused() {
    // The main thread ends with the exit syscall (60 on x86_64, 93 on aarch64), not
    // exit_group: its leader is a zombie while the other thread reads stdin.
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import ctypes, platform, sys, threading\n\
             t = threading.Thread(target=lambda: (print('up', flush=True), sys.stdin.read()))\n\
             t.start()\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             libc.syscall(93 if platform.machine() == 'aarch64' else 60, 0)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "up\n");
    // Nothing can tell the test that a thread has exited: poll its state, with a deadline.
    let start = std::time::Instant::now();
    while state(pid) != 'Z' {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the main thread never exited"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let err = freeze::freeze(pid).unwrap_err();
    assert!(
        matches!(err, FreezeError::ZombieLeader { pid: p, threads: 1 } if p == pid),
        "{err:?}"
    );
    // Untouched: the other thread still reads, and ends the process when stdin closes.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
