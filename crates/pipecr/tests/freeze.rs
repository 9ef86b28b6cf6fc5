//! Freezing live trees: everything stops, everything resumes, nothing sees EINTR, and
//! each refusal leaves the tree as it was.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

use pipecr::freeze::{self, FreezeError};

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
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "through the thawed pipeline\n");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "", "no program saw an error (EINTR)");
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

#[test]
fn a_kernel_thread_is_refused() {
    // pid 2 is kthreadd on every Linux system that has kernel threads in this namespace.
    match pipecr::proc::stat(2) {
        Ok(stat) if stat.is_kernel_thread() => {
            let err = freeze::freeze(2).unwrap_err();
            assert!(
                matches!(err, FreezeError::KernelThread { pid: 2, .. }),
                "{err:?}"
            );
        }
        _ => eprintln!("skipped: pid 2 is not a kernel thread in this pid namespace"),
    }
}

#[test]
fn a_tree_containing_pipecr_itself_is_refused() {
    let me = std::process::id() as i32;
    let err = freeze::freeze(me).unwrap_err();
    assert!(matches!(err, FreezeError::ContainsSelf { .. }), "{err:?}");
    assert_ne!(state(me), 't');
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
        FreezeError::AlreadyTraced { pid: p, tracer: t } => {
            assert_eq!(p, pid);
            assert_eq!(t, tracer.id() as i32);
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
