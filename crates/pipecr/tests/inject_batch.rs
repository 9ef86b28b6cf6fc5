//! The batch code (`Injector::run_reads`): a session's read-only calls run in one ptrace
//! stop return exactly what the same calls injected one at a time return; the code's
//! mapping is gone afterwards; signals arriving meanwhile are queued again; where the
//! code cannot run (a seccomp filter refuses its `mmap`, `SIGTRAP` ignored or blocked)
//! the calls are injected one at a time; and the process runs on as before.
//!
//! Every test freezes its child on its own thread (ptrace belongs to the thread) and waits
//! for specific pids only.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pipecr::freeze;
use pipecr::inject::{
    AltStack, CodePage, ITimer, Injector, Pending, ReadBatch, SigAction, SigHandler, calls,
};
use pipecr::sys::ptrace as sysptrace;

/// Kills and reaps the child however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for one ready byte `r` on the child's stdout.
fn ready(child: &mut Child) {
    let mut b = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    assert_eq!(&b, b"r");
}

/// Waits until the (main thread of the) process is blocked in syscall `nr`, as
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

/// A program with what a dump reads by injection: handlers with flags and masks, an
/// ignored signal, the three interval timers armed, four threads each with its own
/// alternate stack (and, from pthread_create, a clear_child_tid). It reports ready with
/// "r" once every thread has its stack, then echoes stdin byte by byte ("E" if a read
/// fails), and writes "U" from its SIGUSR1 handler. With `seccomp` as argv[1] it first
/// installs a seccomp filter that makes any mmap with PROT_EXEC fail with EPERM.
const STATE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static pthread_barrier_t ready;

static void on_usr1(int s) { (void)s; if (write(1, "U", 1) != 1) _exit(3); }
static void on_usr2(int s, siginfo_t *i, void *c) { (void)s; (void)i; (void)c; }

static void altstack(size_t size) {
    stack_t ss = { .ss_sp = malloc(size), .ss_size = size, .ss_flags = 0 };
    if (!ss.ss_sp || sigaltstack(&ss, NULL)) _exit(4);
}

static void *worker(void *arg) {
    altstack((size_t)arg);
    pthread_barrier_wait(&ready);
    for (;;) pause();
    return NULL;
}

static void deny_exec_mmap(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) _exit(5);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) _exit(6);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED || errno != EPERM) _exit(7);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "seccomp") == 0) deny_exec_mmap();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sigaddset(&sa.sa_mask, SIGTERM);
    if (sigaction(SIGUSR1, &sa, NULL)) return 8;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaddset(&sa.sa_mask, 40);
    if (sigaction(SIGUSR2, &sa, NULL)) return 9;
    signal(SIGPIPE, SIG_IGN);
    struct itimerval real = { { 4000, 0 }, { 3000, 250000 } };
    struct itimerval virt = { { 7, 0 }, { 9, 500000 } };
    struct itimerval prof = { { 11, 0 }, { 13, 0 } };
    if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL)
        || setitimer(ITIMER_PROF, &prof, NULL)) return 10;
    altstack(65536);
    pthread_barrier_init(&ready, NULL, 4);
    for (int i = 1; i <= 3; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(size_t)(32768 + 4096 * i))) return 11;
    }
    pthread_barrier_wait(&ready);
    if (write(1, "r", 1) != 1) return 12;
    for (;;) {
        char c;
        ssize_t n = read(0, &c, 1);
        if (n == 0) return 0;
        if (n < 0) { if (write(1, "E", 1) != 1) return 13; return 1; }
        if (write(1, &c, 1) != 1) return 14;
    }
}
"#;

fn state_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| common::build_c("inject-batch-state", STATE_C, &["-pthread"]))
}

fn start_state(arg: &str) -> Reaped {
    let mut child = Command::new(state_program())
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(&mut child);
    let pid = child.id() as i32;
    wait_in_syscall(pid, libc::SYS_read);
    Reaped(child)
}

/// What a dump session reads of one thread (and, for the first, of the process).
#[derive(Debug, Clone, PartialEq)]
struct Session {
    tid_address: u64,
    altstack: AltStack,
    process: Option<(Vec<SigAction>, [ITimer; 3])>,
}

/// The signals read: SIGUSR1, SIGUSR2, SIGPIPE (ignored), SIGCHLD, SIGTERM (default).
const READ_SET: u64 = 1 << (libc::SIGUSR1 - 1)
    | 1 << (libc::SIGUSR2 - 1)
    | 1 << (libc::SIGPIPE - 1)
    | 1 << (libc::SIGCHLD - 1)
    | 1 << (libc::SIGTERM - 1);

/// One session per thread, as a dump runs them, with `code`: returns what each read and
/// whether each ran through the batch code.
fn sessions(pid: i32, tids: &[i32], code: &mut CodePage) -> Vec<(Session, bool)> {
    let mut out = Vec::new();
    for (i, &tid) in tids.iter().enumerate() {
        let mut inj = Injector::new(pid, tid).unwrap();
        inj.use_single_step().unwrap();
        let mut reads = ReadBatch::new();
        let tid_address = calls::read_tid_address(&mut reads);
        let altstack = calls::read_sigaltstack(&mut reads);
        let process: Option<Pending<_>> = (i == 0).then(|| {
            let actions = calls::read_sigactions(&mut reads, READ_SET);
            let timers = calls::read_itimers(&mut reads);
            Pending::new(move |done| Ok((actions.get(done)?, timers.get(done)?)))
        });
        let done = inj.run_reads(&reads, code, i + 1 == tids.len()).unwrap();
        let session = Session {
            tid_address: tid_address.get(&done).unwrap(),
            altstack: altstack.get(&done).unwrap(),
            process: process.map(|p| p.get(&done).unwrap()),
        };
        assert!(inj.intercepted_signals().is_empty());
        inj.finish().unwrap();
        out.push((session, done.batched()));
    }
    out
}

/// Interval timers read twice a moment apart: same intervals; values the same within
/// the time between the reads (ITIMER_REAL counts down while the process is stopped).
fn assert_same_timers(a: &[ITimer; 3], b: &[ITimer; 3]) {
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.which, b.which);
        assert_eq!(a.interval_us, b.interval_us, "{a:?} {b:?}");
        assert!(
            a.value_us >= b.value_us && a.value_us - b.value_us < 5_000_000,
            "{a:?} then {b:?}"
        );
    }
}

/// The process answers as before: its SIGUSR1 handler writes "U"; the read it was
/// blocked in goes on without EINTR and echoes.
fn runs_on(child: &mut Reaped) {
    let pid = child.0.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let stdout = child.0.stdout.as_mut().unwrap();
    let mut b = [0u8; 1];
    stdout.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"U");
    child.0.stdin.as_mut().unwrap().write_all(b"x").unwrap();
    stdout.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
fn batched_reads_equal_one_by_one_reads_and_leave_nothing_mapped() {
    let mut child = start_state("plain");
    let pid = child.0.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    let tids = tree.processes()[0].threads.clone();
    assert_eq!(tids.len(), 4);
    let before = maps(pid);

    let one_by_one = sessions(pid, &tids, &mut CodePage::off(pid));
    let mut code = CodePage::new(pid);
    let batched = sessions(pid, &tids, &mut code);
    assert_eq!(code.mapped(), None, "unmapped by the last session");
    assert_eq!(maps(pid), before);

    assert!(one_by_one.iter().all(|(_, b)| !b));
    assert!(batched.iter().all(|(_, b)| *b));
    for ((a, _), (b, _)) in one_by_one.iter().zip(&batched) {
        assert_eq!(a.tid_address, b.tid_address);
        assert_eq!(a.altstack, b.altstack);
        match (&a.process, &b.process) {
            (Some((acts_a, timers_a)), Some((acts_b, timers_b))) => {
                assert_eq!(acts_a, acts_b);
                assert_same_timers(timers_a, timers_b);
            }
            (None, None) => {}
            other => panic!("{other:?}"),
        }
    }
    // And what they read is what the program set.
    let (leader, _) = &batched[0];
    let (actions, timers) = leader.process.as_ref().unwrap();
    let by_signo = |s: i32| actions.iter().find(|a| a.signo == s).unwrap();
    assert!(matches!(
        by_signo(libc::SIGUSR1).handler,
        SigHandler::Function(_)
    ));
    assert!(by_signo(libc::SIGUSR1).mask.contains(libc::SIGTERM));
    assert!(by_signo(libc::SIGUSR2).mask.contains(40));
    assert_eq!(by_signo(libc::SIGPIPE).handler, SigHandler::Ignore);
    assert_eq!(by_signo(libc::SIGTERM).handler, SigHandler::Default);
    assert_eq!(timers[0].interval_us, 4000 * 1_000_000);
    assert!(timers[0].value_us > 2999 * 1_000_000);
    // CPU-time timers count in the kernel's ticks: the value read may be rounded up.
    let near = |us: u64, want: u64| (want..want + 20_000).contains(&us);
    assert_eq!(timers[1].interval_us, 7_000_000);
    assert!(near(timers[1].value_us, 9_500_000), "{:?}", timers[1]);
    assert_eq!(timers[2].interval_us, 11_000_000);
    assert!(near(timers[2].value_us, 13_000_000), "{:?}", timers[2]);
    let sizes: Vec<u64> = batched.iter().map(|(s, _)| s.altstack.size).collect();
    assert_eq!(sizes, vec![65536, 36864, 40960, 45056]);
    assert!(batched[1..].iter().all(|(s, _)| s.tid_address != 0));

    drop(tree);
    runs_on(&mut child);
}

#[test]
fn a_signal_arriving_during_the_batch_code_is_queued_again() {
    let mut child = start_state("plain");
    let pid = child.0.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    let before = maps(pid);

    // A first session maps the code (and keeps it, as for a thread that is not the
    // process's last).
    let mut code = CodePage::new(pid);
    let mut inj = Injector::new(pid, pid).unwrap();
    assert!(inj.use_single_step().unwrap());
    let mut reads = ReadBatch::new();
    let first = calls::read_tid_address(&mut reads);
    let done = inj.run_reads(&reads, &mut code, false).unwrap();
    assert!(done.batched());
    first.get(&done).unwrap();
    inj.finish().unwrap();
    assert!(code.mapped().is_some());

    // Queued while the process is stopped: the batch code's PTRACE_CONT meets it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let mut inj = Injector::new(pid, pid).unwrap();
    assert!(inj.use_single_step().unwrap());
    let mut reads = ReadBatch::new();
    let alt = calls::read_sigaltstack(&mut reads);
    let done = inj.run_reads(&reads, &mut code, true).unwrap();
    assert!(done.batched());
    assert_eq!(alt.get(&done).unwrap().size, 65536);
    assert_eq!(inj.intercepted_signals(), vec![libc::SIGUSR1]);
    inj.finish().unwrap();
    assert_eq!(code.mapped(), None);
    assert_eq!(maps(pid), before);

    // Pending again, with its siginfo (sent by us, SI_USER), on the thread's queue.
    let own = sysptrace::peek_siginfo(nix::unistd::Pid::from_raw(pid), sysptrace::SigQueue::Thread)
        .unwrap();
    assert_eq!(own.len(), 1, "requeued");
    assert_eq!(own[0].si_signo, libc::SIGUSR1);
    assert_eq!(own[0].si_code, libc::SI_USER);
    drop(tree);

    // Its handler runs once (SA_RESTART: the read goes on), then the usual checks.
    let mut u = [0u8; 1];
    child.0.stdout.as_mut().unwrap().read_exact(&mut u).unwrap();
    assert_eq!(&u, b"U");
    runs_on(&mut child);
}

#[test]
fn a_seccomp_filter_that_refuses_the_mmap_leaves_one_call_at_a_time() {
    let mut child = start_state("seccomp");
    let pid = child.0.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    let tids = tree.processes()[0].threads.clone();
    let before = maps(pid);

    let one_by_one = sessions(pid, &tids, &mut CodePage::off(pid));
    // The injected mmap is refused (EPERM): no code, every session one call at a time.
    let mut code = CodePage::new(pid);
    let fallback = sessions(pid, &tids, &mut code);
    assert!(fallback.iter().all(|(_, b)| !b));
    assert_eq!(code.mapped(), None);
    assert_eq!(maps(pid), before);
    for ((a, _), (b, _)) in one_by_one.iter().zip(&fallback) {
        assert_eq!(a.altstack, b.altstack);
        assert_eq!(a.tid_address, b.tid_address);
    }

    // A dump does not even try the mmap (the status says "Seccomp: 2") and saves it all.
    let core = pipecr::task::dump_core(&tree.processes()[0], true).unwrap();
    assert!(core.handlers_read);
    let usr1 = core
        .sigactions
        .iter()
        .find(|a| a.signo == libc::SIGUSR1)
        .unwrap();
    assert!(usr1.handler > 1);
    assert_eq!(core.itimers.len(), 3);
    let sizes: Vec<u64> = core
        .threads
        .iter()
        .map(|t| t.altstack.unwrap().size)
        .collect();
    assert_eq!(sizes, vec![65536, 36864, 40960, 45056]);
    assert_eq!(maps(pid), before);
    drop(tree);
    runs_on(&mut child);
}

/// A python3 whose `argv[1]` signal (`TRAP` or `SEGV`) is `argv[2]`: `ignore`d or
/// `block`ed; reports ready with "r", then echoes stdin byte by byte.
const PY_DISPOSITION: &str = r#"
import os, signal, sys
sig = getattr(signal, "SIG" + sys.argv[1])
if sys.argv[2] == "ignore":
    signal.signal(sig, signal.SIG_IGN)
else:
    signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
os.write(1, b"r")
while True:
    b = os.read(0, 1)
    if not b:
        break
    os.write(1, b)
"#;

/// Where the batch code's signals could change a disposition it does not run, or ends
/// another way: SIGTRAP ignored or blocked, no code at all (one call at a time);
/// SIGSEGV ignored or blocked, the code runs but is unmapped by one more injected call
/// instead of the fault that follows its own munmap. Either way nothing stays mapped and
/// the disposition is the program's.
#[test]
fn where_sigtrap_or_sigsegv_is_ignored_or_blocked() {
    for (sig, signo) in [("TRAP", libc::SIGTRAP), ("SEGV", libc::SIGSEGV)] {
        for how in ["ignore", "block"] {
            let mut child = Command::new("python3")
                .arg("-c")
                .arg(PY_DISPOSITION)
                .args([sig, how])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            ready(&mut child);
            let mut child = Reaped(child);
            let pid = child.0.id() as i32;
            wait_in_syscall(pid, libc::SYS_read);
            let tree = freeze::freeze(pid).unwrap();
            let before = maps(pid);
            let mut inj = Injector::new(pid, pid).unwrap();
            assert_eq!(inj.use_single_step().unwrap(), sig == "SEGV", "{sig} {how}");
            let mut reads = ReadBatch::new();
            let action = calls::read_sigactions(&mut reads, 1 << (signo - 1));
            let mut code = CodePage::new(pid);
            let done = inj.run_reads(&reads, &mut code, true).unwrap();
            assert_eq!(done.batched(), sig == "SEGV", "{sig} {how}");
            let action = action.get(&done).unwrap();
            let want = if how == "ignore" {
                SigHandler::Ignore
            } else {
                SigHandler::Default
            };
            assert_eq!(action[0].handler, want, "{sig} {how}");
            inj.finish().unwrap();
            assert_eq!(code.mapped(), None);
            assert_eq!(maps(pid), before, "{sig} {how}");
            let mask = sysptrace::get_sigmask(nix::unistd::Pid::from_raw(pid)).unwrap();
            assert_eq!(mask.contains(signo), how == "block", "{sig} {how}");
            // Read again, one call at a time: the disposition is still the program's.
            let mut inj = Injector::new(pid, pid).unwrap();
            let again = calls::sigactions_of(&mut inj, 1 << (signo - 1)).unwrap();
            assert_eq!(again[0].handler, want, "{sig} {how}");
            inj.finish().unwrap();
            drop(tree);

            let stdout = child.0.stdout.as_mut().unwrap();
            child.0.stdin.as_mut().unwrap().write_all(b"x").unwrap();
            let mut x = [0u8; 1];
            stdout.read_exact(&mut x).unwrap();
            assert_eq!(&x, b"x", "{sig} {how}");
        }
    }
}

/// A batch larger than one run of the code holds (125 calls, a page of outputs) runs in
/// several, each ending at the code's `int3`, the last one unmapping it; the results are
/// those of the same calls injected one at a time.
#[test]
fn a_batch_larger_than_the_table_runs_in_several_runs() {
    let mut child = start_state("plain");
    let pid = child.0.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    let before = maps(pid);
    let read = |code: &mut CodePage| {
        let mut inj = Injector::new(pid, pid).unwrap();
        inj.use_single_step().unwrap();
        let mut reads = ReadBatch::new();
        // 3 x 62 handlers, 186 calls.
        let all: Vec<_> = (0..3)
            .map(|_| calls::read_sigactions(&mut reads, !0))
            .collect();
        let alt = calls::read_sigaltstack(&mut reads);
        assert_eq!(reads.len(), 187);
        let done = inj.run_reads(&reads, code, true).unwrap();
        let all: Vec<Vec<SigAction>> = all.into_iter().map(|p| p.get(&done).unwrap()).collect();
        let alt = alt.get(&done).unwrap();
        inj.finish().unwrap();
        (all, alt, done.batched())
    };
    let (one_by_one, alt_a, batched_a) = read(&mut CodePage::off(pid));
    let mut code = CodePage::new(pid);
    let (batched, alt_b, batched_b) = read(&mut code);
    assert!(!batched_a && batched_b);
    assert_eq!(one_by_one, batched);
    assert_eq!(batched[0], batched[2]);
    assert_eq!(batched[0].len(), 62);
    assert_eq!(alt_a, alt_b);
    assert_eq!(code.mapped(), None);
    assert_eq!(maps(pid), before);
    drop(tree);
    runs_on(&mut child);
}
