//! Syscall injection into real, frozen processes: the result comes back, memory can be
//! mapped and written, signal handlers can be read, and the process afterwards continues
//! exactly as before (a blocked read or sleep is restarted, no signal is lost).
//!
//! Every test freezes its child on its own thread (ptrace belongs to the thread) and waits
//! for specific pids only.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::mman::{MapFlags, ProtFlags};
use pipecr::freeze;
use pipecr::inject::{self, Injector, SaFlags, SigHandler};
use pipecr::sys::ptrace as sysptrace;

/// Kills and reaps the child however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the (single-threaded) process is blocked in syscall `nr`, as
/// `/proc/PID/syscall` shows it. Polls an event the kernel reports; the deadline only
/// turns a hang into a failure.
fn wait_in_syscall(pid: i32, nr: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = format!("{nr} ");
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if now.starts_with(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never blocked in syscall {nr}: {now:?}"
        );
        std::thread::yield_now();
    }
}

fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap()
}

/// A C program that reports ready on stderr, then blocks in `read(0)` and prints what the
/// read returned: the data, or the errno it failed with.
const BLOCKED_READ_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    char buf[256];
    if (write(2, "r", 1) != 1) return 2;
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0) { printf("error %d\n", errno); return 1; }
    printf("read %zd: %.*s", n, (int)n, buf);
    return 0;
}
"#;

/// Compiles [`BLOCKED_READ_C`] once per test binary.
fn blocked_read_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| common::build_c("inject-blocked-read", BLOCKED_READ_C, &[]))
}

/// Waits for one ready byte on the child's `stderr` (or `stdout` with `from_stdout`).
fn ready(child: &mut Child, from_stdout: bool) {
    let mut b = [0u8; 1];
    if from_stdout {
        child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    } else {
        child.stderr.as_mut().unwrap().read_exact(&mut b).unwrap();
    }
    assert_eq!(&b, b"r");
}

#[test]
fn getpid_in_a_sleeping_process_and_the_sleep_is_restarted() {
    let child = Reaped(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    wait_in_syscall(pid, libc::SYS_clock_nanosleep);
    let tree = freeze::freeze(pid).unwrap();
    let mut inj = Injector::new(pid, pid).unwrap();
    let at = inj.stopped_at();
    assert_eq!(at.syscall(), Some(libc::SYS_clock_nanosleep));
    assert!(at.will_restart(), "rax = {}", at.regs.rax as i64);
    assert_eq!(at.regs.rax as i64, -516, "-ERESTART_RESTARTBLOCK");

    assert_eq!(
        inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(),
        i64::from(pid)
    );
    assert_eq!(
        inj.syscall(libc::SYS_gettid, [0; 6]).unwrap(),
        i64::from(pid)
    );
    // The instruction before the stopped rip was used: it is a `syscall`.
    assert_eq!(inj.syscall_address(), Some(at.regs.rip - 2));
    // An error comes back as -errno, or as a typed error naming the call.
    assert_eq!(
        inj.syscall(libc::SYS_close, [u64::MAX, 0, 0, 0, 0, 0])
            .unwrap(),
        -i64::from(libc::EBADF)
    );
    let err = inj
        .syscall_checked(libc::SYS_munmap, [1, 4096, 0, 0, 0, 0])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&pid.to_string()) && msg.contains("munmap"),
        "{msg}"
    );
    inj.finish().unwrap();
    tree.resume();

    // sleep(1) re-entered its sleep through restart_syscall: had the registers not been
    // restored exactly, it would have failed with an "Unknown error 516" and exited.
    wait_in_syscall(pid, libc::SYS_restart_syscall);
    assert_eq!(pipecr::proc::stat(pid).unwrap().state, 'S');
}

#[test]
fn a_blocked_read_resumes_and_gets_its_data_without_eintr() {
    blocked_read_resumes(false);
}

#[test]
fn a_blocked_read_resumes_after_single_stepped_calls() {
    blocked_read_resumes(true);
}

/// Injects into a thread blocked in `read`, one ptrace stop per call (`step`) or two, and
/// checks the registers are all back (`eflags`: no trap flag left) and the read restarts.
fn blocked_read_resumes(step: bool) {
    let mut child = Reaped(
        Command::new(blocked_read_program())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    ready(&mut child.0, false);
    wait_in_syscall(pid, libc::SYS_read);
    let tree = freeze::freeze(pid).unwrap();
    {
        let mut inj = Injector::new(pid, pid).unwrap();
        let at = inj.stopped_at();
        assert_eq!(at.syscall(), Some(libc::SYS_read));
        assert_eq!(at.regs.rax as i64, -512, "-ERESTARTSYS");
        if step {
            assert!(inj.use_single_step().unwrap());
        }
        for _ in 0..3 {
            assert_eq!(
                inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(),
                i64::from(pid)
            );
        }
        let before = inj.stopped_at().regs;
        inj.finish().unwrap();
        // Registers are exactly back (the injected syscalls clobbered rax, rcx, r11, rip).
        let after = nix::sys::ptrace::getregs(nix::unistd::Pid::from_raw(pid)).unwrap();
        let fields = |r: &libc::user_regs_struct| {
            [
                r.rip, r.rax, r.orig_rax, r.rsp, r.rbp, r.rdi, r.rsi, r.rdx, r.rcx, r.r8, r.r9,
                r.r10, r.r11, r.rbx, r.r12, r.r13, r.r14, r.r15, r.eflags, r.fs_base, r.cs,
            ]
        };
        assert_eq!(fields(&before), fields(&after));
    }
    tree.resume();

    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "read 6: hello\n");
    assert!(child.0.wait().unwrap().success());
}

/// Detaching kicks the thread through the kernel's restart logic whatever stop it is in;
/// a plain `PTRACE_CONT` does so only from a stop inside signal handling, which is where
/// `finish` leaves the thread.
#[test]
fn a_blocked_read_restarts_even_when_resumed_with_ptrace_cont() {
    let mut child = Reaped(
        Command::new(blocked_read_program())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    ready(&mut child.0, false);
    wait_in_syscall(pid, libc::SYS_read);
    let tree = freeze::freeze(pid).unwrap();
    let mut inj = Injector::new(pid, pid).unwrap();
    assert!(inj.stopped_at().will_restart());
    assert_eq!(
        inj.syscall(libc::SYS_getppid, [0; 6]).unwrap(),
        i64::from(std::process::id() as i32)
    );
    inj.finish().unwrap();
    nix::sys::ptrace::cont(nix::unistd::Pid::from_raw(pid), None).unwrap();
    // Still traced, but running: back in read().
    wait_in_syscall(pid, libc::SYS_read);

    child.0.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "read 3: hi\n");
    assert!(child.0.wait().unwrap().success());
    // Nothing left to detach (the process is gone).
    drop(tree);
}

#[test]
fn mmap_write_read_mprotect_munmap_and_a_trampoline() {
    let child = Reaped(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    wait_in_syscall(pid, libc::SYS_clock_nanosleep);
    let tree = freeze::freeze(pid).unwrap();
    let mut inj = Injector::new(pid, pid).unwrap();

    const AT: u64 = 0x3a5a_0000_0000;
    let addr = inj
        .remote_mmap(
            AT,
            4096,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED_NOREPLACE,
            None,
            0,
        )
        .unwrap();
    assert_eq!(addr, AT);
    assert!(
        maps(pid).contains("3a5a00000000-3a5a00001000 rw-p"),
        "{}",
        maps(pid)
    );
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    inj.write_memory(AT, &pattern).unwrap();
    let mut back = vec![0u8; 4096];
    inj.read_memory(AT, &mut back).unwrap();
    assert_eq!(back, pattern);

    // Read-only now: process_vm_writev refuses, /proc/PID/mem does it.
    inj.remote_mprotect(AT, 4096, ProtFlags::PROT_READ).unwrap();
    assert!(maps(pid).contains("3a5a00000000-3a5a00001000 r--p"));
    inj.write_memory(AT + 100, b"through /proc/PID/mem")
        .unwrap();
    // And PROT_NONE can still be read.
    inj.remote_mprotect(AT, 4096, ProtFlags::PROT_NONE).unwrap();
    let mut word = [0u8; 21];
    inj.read_memory(AT + 100, &mut word).unwrap();
    assert_eq!(&word, b"through /proc/PID/mem");
    inj.remote_munmap(AT, 4096).unwrap();
    assert!(!maps(pid).contains("3a5a00000000-"));

    // A trampoline page: inject through it, then unmap it with a syscall run from it.
    const TRAMPOLINE: u64 = 0x3a5b_0000_0000;
    let page = inj.map_trampoline(TRAMPOLINE).unwrap();
    assert_eq!(page, TRAMPOLINE);
    assert_eq!(inj.syscall_address(), Some(TRAMPOLINE));
    assert!(maps(pid).contains("3a5b00000000-3a5b00001000 r-xp"));
    assert_eq!(
        inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(),
        i64::from(pid)
    );
    inj.unmap_trampoline(page).unwrap();
    assert!(!maps(pid).contains("3a5b00000000-"));
    assert_eq!(inj.syscall_address(), None);
    // Found again (before the stopped rip, or in the vdso).
    assert_eq!(
        inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(),
        i64::from(pid)
    );

    inj.finish().unwrap();
    tree.resume();
    wait_in_syscall(pid, libc::SYS_restart_syscall);
}

/// A python3 that installs a SIGUSR1 handler (which writes "U"), ignores SIGPIPE (as
/// python always does), reports ready with "r", then echoes stdin byte by byte.
const PY_HANDLER: &str = r#"
import os, signal, sys
signal.signal(signal.SIGUSR1, lambda *a: os.write(1, b"U"))
os.write(1, b"r")
while True:
    b = os.read(0, 1)
    if not b:
        break
    os.write(1, b)
"#;

fn python_with_handler() -> Reaped {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY_HANDLER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(&mut child, true);
    Reaped(child)
}

#[test]
fn sigactions_of_a_python_process() {
    let child = python_with_handler();
    let pid = child.0.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    assert_eq!(tree.thread_count(), 1);
    let mut inj = Injector::new(pid, pid).unwrap();
    let rsp = inj.stopped_at().regs.rsp;
    let mut stack_before = vec![0u8; 512];
    inj.read_memory(rsp - 512, &mut stack_before).unwrap();

    let actions = inject::sigactions(&mut inj).unwrap();
    assert_eq!(actions.len(), 62);
    let get = |sig: i32| *actions.iter().find(|a| a.signo == sig).unwrap();
    let usr1 = get(libc::SIGUSR1);
    assert!(matches!(usr1.handler, SigHandler::Function(_)), "{usr1:?}");
    assert!(usr1.flags.contains(SaFlags::RESTORER), "{usr1:?}");
    assert_ne!(usr1.restorer, 0);
    assert_eq!(get(libc::SIGUSR2).handler, SigHandler::Default);
    assert_eq!(get(libc::SIGPIPE).handler, SigHandler::Ignore);
    assert!(matches!(get(libc::SIGINT).handler, SigHandler::Function(_)));
    assert!(
        actions
            .iter()
            .all(|a| a.signo != libc::SIGKILL && a.signo != libc::SIGSTOP)
    );

    // Write one back changed, read it, put the original back.
    let mut changed = get(libc::SIGUSR2);
    changed.handler = SigHandler::Ignore;
    inject::set_sigaction(&mut inj, &changed).unwrap();
    assert_eq!(
        inject::sigactions(&mut inj).unwrap()[libc::SIGUSR2 as usize - 2].handler,
        SigHandler::Ignore
    );
    inject::set_sigaction(&mut inj, &get(libc::SIGUSR2)).unwrap();

    // The scratch area below the red zone was given back.
    let mut stack_after = vec![0u8; 512];
    inj.read_memory(rsp - 512, &mut stack_after).unwrap();
    assert_eq!(stack_before, stack_after);
    inj.finish().unwrap();
    drop(tree);
}

#[test]
fn a_signal_arriving_during_injection_is_delivered_after_resume() {
    signal_during_injection(false);
}

#[test]
fn a_signal_arriving_during_single_stepped_injection_is_delivered_after_resume() {
    signal_during_injection(true);
}

fn signal_during_injection(step: bool) {
    let mut child = python_with_handler();
    let pid = child.0.id() as i32;
    wait_in_syscall(pid, libc::SYS_read);
    let tree = freeze::freeze(pid).unwrap();

    // Queued while the process is stopped: the first injected step meets it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let shared =
        sysptrace::peek_siginfo(nix::unistd::Pid::from_raw(pid), sysptrace::SigQueue::Shared)
            .unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].si_signo, libc::SIGUSR1);
    assert_eq!(shared[0].si_code, libc::SI_USER);
    let own = sysptrace::peek_siginfo(nix::unistd::Pid::from_raw(pid), sysptrace::SigQueue::Thread)
        .unwrap();
    assert!(own.is_empty());

    let mut inj = Injector::new(pid, pid).unwrap();
    assert!(inj.stopped_at().will_restart());
    if step {
        assert!(inj.use_single_step().unwrap());
    }
    assert_eq!(
        inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(),
        i64::from(pid)
    );
    assert_eq!(inj.intercepted_signals(), vec![libc::SIGUSR1]);
    inj.finish().unwrap();

    // Pending again, with its siginfo (sent by us, SI_USER), now on the thread's queue.
    let own = sysptrace::peek_siginfo(nix::unistd::Pid::from_raw(pid), sysptrace::SigQueue::Thread)
        .unwrap();
    assert_eq!(own.len(), 1, "requeued");
    assert_eq!(own[0].si_signo, libc::SIGUSR1);
    assert_eq!(own[0].si_code, libc::SI_USER);
    tree.resume();

    // The handler runs once, then the read goes on and echoes.
    let mut stdout = child.0.stdout.take().unwrap();
    let mut u = [0u8; 1];
    stdout.read_exact(&mut u).unwrap();
    assert_eq!(&u, b"U");
    child.0.stdin.as_mut().unwrap().write_all(b"x").unwrap();
    stdout.read_exact(&mut u).unwrap();
    assert_eq!(&u, b"x");
}

#[test]
fn raw_ptrace_requests_on_a_frozen_thread() {
    let child = python_with_handler();
    let pid = child.0.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    let t = nix::unistd::Pid::from_raw(pid);

    let xstate = sysptrace::get_xstate(t).unwrap();
    // Legacy FXSAVE area plus the 64-byte XSAVE header at least.
    assert!(xstate.len() >= 576, "{}", xstate.len());
    // For ptrace the kernel puts XCR0 at byte 464 (what gdb reads): it always enables
    // x87 and SSE.
    let xcr0 = u64::from_ne_bytes(xstate[464..472].try_into().unwrap());
    assert_eq!(xcr0 & 0b11, 0b11, "x87 and SSE enabled: {xcr0:#x}");
    sysptrace::set_xstate(t, &xstate).unwrap();
    assert_eq!(sysptrace::get_xstate(t).unwrap(), xstate);

    let mask = sysptrace::get_sigmask(t).unwrap();
    let more = mask.with(libc::SIGUSR2);
    sysptrace::set_sigmask(t, more).unwrap();
    assert_eq!(sysptrace::get_sigmask(t).unwrap(), more);
    sysptrace::set_sigmask(t, mask).unwrap();
    assert_eq!(sysptrace::get_sigmask(t).unwrap(), mask);

    // glibc 2.35+ registers an rseq area per thread; older ones none. Either way the
    // request answers, and a registration has the original ABI size at least.
    let rseq = sysptrace::rseq_configuration(t).unwrap();
    if rseq.abi_pointer != 0 {
        assert!(rseq.abi_size >= 32, "{rseq:?}");
    }
    drop(tree);
}

/// A python3 whose SIGTRAP disposition is `argv[1]`: `catch` (a handler that writes "T"),
/// `ignore`, or `block` (blocked, default action); it reports ready with "r", then
/// echoes stdin byte by byte.
const PY_TRAP: &str = r#"
import os, signal, sys
how = sys.argv[1]
if how == "catch":
    signal.signal(signal.SIGTRAP, lambda *a: os.write(1, b"T"))
elif how == "ignore":
    signal.signal(signal.SIGTRAP, signal.SIG_IGN)
else:
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTRAP])
os.write(1, b"r")
while True:
    b = os.read(0, 1)
    if not b:
        break
    os.write(1, b)
"#;

fn python_trap(how: &str) -> Reaped {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY_TRAP)
        .arg(how)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(&mut child, true);
    Reaped(child)
}

/// Single-stepping forces a SIGTRAP: used only where that cannot reset the handler (not
/// ignored, not blocked), and a caught SIGTRAP keeps its handler.
#[test]
fn single_step_only_where_sigtrap_is_neither_ignored_nor_blocked() {
    for (how, usable) in [("catch", true), ("ignore", false), ("block", false)] {
        let mut child = python_trap(how);
        let pid = child.0.id() as i32;
        wait_in_syscall(pid, libc::SYS_read);
        let tree = freeze::freeze(pid).unwrap();
        let mut inj = Injector::new(pid, pid).unwrap();
        assert_eq!(inj.use_single_step().unwrap(), usable, "{how}");
        assert_eq!(
            inj.syscall(libc::SYS_getpid, [0; 6]).unwrap(),
            i64::from(pid)
        );
        let trap = inject::sigactions_of(&mut inj, 1 << (libc::SIGTRAP - 1)).unwrap();
        let want = if how == "ignore" {
            SigHandler::Ignore
        } else if how == "catch" {
            trap[0].handler
        } else {
            SigHandler::Default
        };
        assert_eq!(trap[0].handler, want, "{how}");
        if how == "catch" {
            assert!(matches!(want, SigHandler::Function(_)), "{want:?}");
        }
        inj.finish().unwrap();
        // The mask came back as it was (SIGTRAP still blocked for "block").
        let mask = sysptrace::get_sigmask(nix::unistd::Pid::from_raw(pid)).unwrap();
        assert_eq!(mask.contains(libc::SIGTRAP), how == "block", "{how}");
        tree.resume();

        // A SIGTRAP now finds the disposition the program set: the handler still runs.
        let mut stdout = child.0.stdout.take().unwrap();
        if how == "catch" {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTRAP,
            )
            .unwrap();
            let mut t = [0u8; 1];
            stdout.read_exact(&mut t).unwrap();
            assert_eq!(&t, b"T");
        }
        child.0.stdin.as_mut().unwrap().write_all(b"x").unwrap();
        let mut x = [0u8; 1];
        stdout.read_exact(&mut x).unwrap();
        assert_eq!(&x, b"x", "{how}");
    }
}
