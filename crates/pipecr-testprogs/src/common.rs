//! What every scenario shares: the [`Scenario`] trait, the two runners (`setup` and
//! `verify`) that implement the protocol of the crate doc, descriptor placement, and the
//! [`Checker`] that compares a descriptor table with what a scenario expects.
//!
//! Scenario descriptors live at fixed numbers (10 and up) and belong to the process's
//! table for its whole life: once placed they are never closed by this program, so they
//! are named by number ([`at`]) rather than owned.

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rustix::fs::{OFlags, SeekFrom};
use rustix::io::{Errno, FdFlags};

/// Where `verify` moves its report channel (a copy of stderr) before the rebuild
/// replaces descriptors 0, 1 and 2.
pub const REPORT_FD: RawFd = 4000;

/// The flags the checks compare: the access mode and the status flags a program can see
/// and set. (`O_LARGEFILE` and friends are left out: the kernel adds them by itself.)
pub const COMPARED_FLAGS: OFlags = OFlags::RWMODE
    .union(OFlags::NONBLOCK)
    .union(OFlags::APPEND)
    .union(OFlags::DIRECT);

/// Default capacity of a pipe (16 pages).
pub const DEFAULT_PIPE_SIZE: usize = 65536;

/// Whether the checks run in the original process after the dump, or in a fresh process
/// whose table was rebuilt from the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The process that built the state, after the dump let it run on.
    Live,
    /// A fresh process after `pipecr::restore::fdtable::rebuild`.
    Rebuilt,
}

/// What a scenario is given when it builds its state.
#[derive(Debug)]
pub struct Env {
    /// A scratch directory for files and FIFOs (the harness's `--dir`, or a temporary one).
    pub dir: PathBuf,
    /// Arguments after `setup` that are meant for the scenario.
    pub args: Vec<String>,
}

/// One self-checking scenario. Role 0 is the root process; roles `1..=children()` are
/// its children, in the order they were created.
pub trait Scenario: Sync {
    /// How many children the root forks (or clones).
    fn children(&self) -> usize {
        0
    }

    /// True when the children are created with `clone(CLONE_FILES)` and share the
    /// root's descriptor table.
    fn clone_files(&self) -> bool {
        false
    }

    /// Builds what the processes share, in the root, before any child exists.
    fn prepare(&self, env: &Env) -> anyhow::Result<()>;

    /// Builds the part of the state that belongs to `role`, in that process, after the
    /// children were created. Descriptors not in [`Scenario::fds`] are closed afterwards
    /// by the runner (except in a table shared with `CLONE_FILES`, which the root tidies).
    fn build(&self, role: usize, env: &Env) -> anyhow::Result<()> {
        let _ = (role, env);
        Ok(())
    }

    /// The descriptor numbers `role` holds besides 0, 1 and 2.
    fn fds(&self, role: usize) -> Vec<RawFd>;

    /// Compares the state of `role` with what it should be, in either mode.
    fn check(&self, role: usize, c: &mut Checker);
}

/// The descriptor number `fd` of the calling process, borrowed.
pub fn at(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: scenario descriptors belong to the process's table for its whole life:
    // this program never closes a number it checks (see the module doc). A number that is
    // not open only makes the system calls made with it fail with EBADF, which the checks
    // report; no memory is involved.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Moves `fd` to descriptor number `target` (which must be free) with close-on-exec
/// set or not, and leaves it there for the life of the process.
pub fn place(fd: OwnedFd, target: RawFd, cloexec: bool) -> anyhow::Result<()> {
    let moved = if fd.as_raw_fd() == target {
        fd
    } else {
        rustix::io::fcntl_dupfd_cloexec(&fd, target)
            .with_context(|| format!("fcntl(F_DUPFD_CLOEXEC, {target})"))?
    };
    if moved.as_raw_fd() != target {
        bail!("descriptor {target} is already taken");
    }
    let flags = if cloexec {
        FdFlags::CLOEXEC
    } else {
        FdFlags::empty()
    };
    rustix::io::fcntl_setfd(&moved, flags).context("fcntl(F_SETFD)")?;
    let _ = moved.into_raw_fd();
    Ok(())
}

/// Makes descriptor `target` (which must be free) a duplicate of `src`: one more
/// descriptor of the same open file.
pub fn dup_to(src: RawFd, target: RawFd, cloexec: bool) -> anyhow::Result<()> {
    let copy =
        rustix::io::fcntl_dupfd_cloexec(at(src), 0).with_context(|| format!("dup({src})"))?;
    place(copy, target, cloexec)
}

/// Opens `path` with `flags` (close-on-exec added; [`place`] decides the final bit).
pub fn open(path: impl AsRef<Path>, flags: OFlags) -> anyhow::Result<OwnedFd> {
    let path = path.as_ref();
    rustix::fs::open(
        path,
        flags | OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("open {}", path.display()))
}

/// Opens the file behind descriptor `fd` again through `/proc/self/fd/N`: a new open
/// file of the same pipe, FIFO or file.
pub fn reopen(fd: RawFd, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        format!("/proc/self/fd/{fd}"),
        flags | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Writes all of `data` into `fd`.
pub fn write_all(fd: impl AsFd, mut data: &[u8]) -> anyhow::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(&fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("write"),
        }
    }
    Ok(())
}

/// `len` deterministic pseudo-random bytes for `seed`: what a scenario writes, and what
/// its checks expect to read back.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The descriptor numbers open in the calling process, without the one used to list
/// them.
pub fn open_fds() -> io::Result<BTreeSet<RawFd>> {
    let mut fds = BTreeSet::new();
    let own = format!("/proc/{}/fd", std::process::id());
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        match std::fs::read_link(entry.path()) {
            Ok(target) if target.as_os_str() == own.as_str() => {}
            Ok(_) => {
                fds.insert(fd);
            }
            Err(_) => {}
        }
    }
    Ok(fds)
}

/// Closes every descriptor of the calling process except 0, 1, 2 and `keep`.
fn close_others(keep: &[RawFd]) -> anyhow::Result<()> {
    for fd in open_fds().context("list /proc/self/fd")? {
        if fd > 2 && !keep.contains(&fd) {
            // The number is not one of ours to keep: the table gives it up.
            nix::unistd::close(fd).with_context(|| format!("close({fd})"))?;
        }
    }
    Ok(())
}

/// Collects the differences between a process's state and a scenario's expectations.
#[derive(Debug)]
pub struct Checker {
    /// Where the checks run.
    pub mode: Mode,
    /// Every difference found, one line each.
    pub diffs: Vec<String>,
    /// The report descriptor, which is not part of the checked table.
    report_fd: Option<RawFd>,
}

impl Checker {
    /// A checker for `mode`; `report_fd` is left out of the descriptor checks.
    pub fn new(mode: Mode, report_fd: Option<RawFd>) -> Self {
        Checker {
            mode,
            diffs: Vec::new(),
            report_fd,
        }
    }

    /// True in the original process.
    pub fn live(&self) -> bool {
        self.mode == Mode::Live
    }

    /// Records a difference.
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.diffs.push(msg.into());
    }

    /// Records a difference unless `got == want`.
    pub fn eq<T: PartialEq + Debug>(&mut self, what: impl Display, got: T, want: T) {
        if got != want {
            self.fail(format!("{what}: got {got:?}, expected {want:?}"));
        }
    }

    /// Records a failed system call and returns `None`.
    pub fn ok<T, E: Display>(&mut self, what: impl Display, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(format!("{what}: {e}"));
                None
            }
        }
    }

    /// The table holds exactly 0, 1, 2 and `fds` (and the report descriptor).
    pub fn fd_set(&mut self, fds: &[RawFd]) {
        let Some(mut open) = self.ok("list /proc/self/fd", open_fds()) else {
            return;
        };
        if let Some(r) = self.report_fd {
            open.remove(&r);
        }
        let want: BTreeSet<RawFd> = [0, 1, 2].into_iter().chain(fds.iter().copied()).collect();
        let missing: Vec<_> = want.difference(&open).collect();
        let extra: Vec<_> = open.difference(&want).collect();
        if !missing.is_empty() {
            self.fail(format!("descriptors missing: {missing:?}"));
        }
        if !extra.is_empty() {
            let links: Vec<String> = extra
                .iter()
                .map(
                    |fd| match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
                        Ok(l) => format!("{fd} -> {}", l.display()),
                        Err(_) => format!("{fd} (closed since)"),
                    },
                )
                .collect();
            self.fail(format!("descriptors not expected: {}", links.join(", ")));
        }
    }

    /// Status flags of `fd` (see [`COMPARED_FLAGS`]).
    pub fn flags(&mut self, fd: RawFd, want: OFlags) {
        if let Some(got) = self.ok(
            format_args!("fd {fd}: fcntl(F_GETFL)"),
            rustix::fs::fcntl_getfl(at(fd)),
        ) {
            self.eq(
                format_args!("fd {fd}: status flags"),
                got & COMPARED_FLAGS,
                want,
            );
        }
    }

    /// Close-on-exec bit of descriptor `fd`.
    pub fn cloexec(&mut self, fd: RawFd, want: bool) {
        if let Some(got) = self.ok(
            format_args!("fd {fd}: fcntl(F_GETFD)"),
            rustix::io::fcntl_getfd(at(fd)),
        ) {
            self.eq(
                format_args!("fd {fd}: FD_CLOEXEC"),
                got.contains(FdFlags::CLOEXEC),
                want,
            );
        }
    }

    /// Position of `fd`.
    pub fn pos(&mut self, fd: RawFd, want: u64) {
        if let Some(got) = self.ok(
            format_args!("fd {fd}: lseek(SEEK_CUR)"),
            rustix::fs::seek(at(fd), SeekFrom::Current(0)),
        ) {
            self.eq(format_args!("fd {fd}: position"), got, want);
        }
    }

    /// Whether descriptors `a` and `b` share one open file (`kcmp(KCMP_FILE)`).
    pub fn shared(&mut self, a: RawFd, b: RawFd, want: bool) {
        let me = rustix::process::getpid();
        let got = pipecr::sys::kcmp::kcmp_files(
            me,
            pipecr::sys::kcmp::TargetFd(a),
            me,
            pipecr::sys::kcmp::TargetFd(b),
        );
        if let Some(o) = self.ok(format_args!("kcmp(fd {a}, fd {b})"), got) {
            self.eq(
                format_args!("fd {a} and fd {b} share one open file"),
                o.is_eq(),
                want,
            );
        }
    }

    /// Inode of the file behind `fd`.
    pub fn inode(&mut self, fd: RawFd) -> Option<u64> {
        self.ok(format_args!("fd {fd}: fstat"), rustix::fs::fstat(at(fd)))
            .map(|s| s.st_ino)
    }

    /// Whether `a` and `b` lead to the same pipe, FIFO or file.
    pub fn same_object(&mut self, a: RawFd, b: RawFd) {
        if let (Some(x), Some(y)) = (self.inode(a), self.inode(b)) {
            if x != y {
                self.fail(format!(
                    "fd {a} (inode {x}) and fd {b} (inode {y}) should lead to the same object"
                ));
            }
        }
    }

    /// Target of `/proc/self/fd/N`.
    pub fn link(&mut self, fd: RawFd) -> Option<String> {
        self.ok(
            format_args!("fd {fd}: readlink"),
            std::fs::read_link(format!("/proc/self/fd/{fd}")),
        )
        .map(|p| p.to_string_lossy().into_owned())
    }

    /// Capacity of the pipe behind `fd`.
    pub fn pipe_size(&mut self, fd: RawFd, want: usize) {
        if let Some(got) = self.ok(
            format_args!("fd {fd}: fcntl(F_GETPIPE_SZ)"),
            rustix::pipe::fcntl_getpipe_size(at(fd)),
        ) {
            self.eq(format_args!("fd {fd}: pipe capacity"), got, want);
        }
    }

    /// Reads everything pending in the pipe or FIFO behind `fd` (through a new,
    /// non-blocking read end, so `fd` keeps its flags) and compares it with `want`.
    pub fn pipe_bytes(&mut self, fd: RawFd, want: &[u8]) {
        if let Some(packets) = self.drain(fd) {
            let got: Vec<u8> = packets.concat();
            self.bytes(format_args!("fd {fd}: pending bytes"), &got, want);
        }
    }

    /// Like [`Checker::pipe_bytes`], one `read` per packet: the pipe must return exactly
    /// the packets in `want`, in order.
    pub fn packets(&mut self, fd: RawFd, want: &[Vec<u8>]) {
        let Some(got) = self.drain(fd) else {
            return;
        };
        if got.len() != want.len() {
            let lengths: Vec<usize> = got.iter().map(Vec::len).take(8).collect();
            self.fail(format!(
                "fd {fd}: {} reads returned data, expected {} packets (first lengths {lengths:?})",
                got.len(),
                want.len()
            ));
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            self.bytes(format_args!("fd {fd}: packet {i}"), g, w);
        }
    }

    fn drain(&mut self, fd: RawFd) -> Option<Vec<Vec<u8>>> {
        let reader = self.ok(
            format_args!("fd {fd}: open /proc/self/fd/{fd} for reading"),
            reopen(fd, OFlags::RDONLY | OFlags::NONBLOCK),
        )?;
        let mut reads = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rustix::io::read(&reader, &mut buf) {
                Ok(0) | Err(Errno::AGAIN) => break,
                Ok(n) => reads.push(buf[..n].to_vec()),
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.fail(format!("fd {fd}: read: {e}"));
                    return None;
                }
            }
        }
        Some(reads)
    }

    /// Compares two byte strings, saying where they first differ.
    pub fn bytes(&mut self, what: impl Display, got: &[u8], want: &[u8]) {
        if got == want {
            return;
        }
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        let at = first.map_or_else(
            || format!("the first {} bytes agree", got.len().min(want.len())),
            |i| format!("first difference at byte {i}"),
        );
        self.fail(format!(
            "{what}: got {} bytes, expected {} ({at})",
            got.len(),
            want.len()
        ));
    }

    /// Whole contents of the file behind `fd`, read with `pread` (its position stays).
    pub fn contents(&mut self, fd: RawFd, want: &[u8]) {
        let mut got = vec![0u8; want.len() + 1];
        let mut off = 0;
        while off < got.len() {
            match rustix::io::pread(at(fd), &mut got[off..], off as u64) {
                Ok(0) => break,
                Ok(n) => off += n,
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.fail(format!("fd {fd}: pread: {e}"));
                    return;
                }
            }
        }
        got.truncate(off);
        self.bytes(format_args!("fd {fd}: file contents"), &got, want);
    }

    /// Descriptors 0, 1 and 2 are the harness's pipes: stdin a read end, stdout and
    /// stderr write ends, all without close-on-exec.
    pub fn stdio(&mut self) {
        for (fd, mode) in [
            (0, OFlags::RDONLY),
            (1, OFlags::WRONLY),
            (2, OFlags::WRONLY),
        ] {
            self.flags(fd, mode);
            self.cloexec(fd, false);
            if let Some(link) = self.link(fd) {
                if !link.starts_with("pipe:[") {
                    self.fail(format!("fd {fd}: expected a pipe, found {link}"));
                }
            }
        }
    }
}

/// Blocks until stdin reaches end-of-file. A read interrupted by the dump (EINTR, which
/// the program did not ask for) or data on stdin is a difference.
fn wait_for_eof(diffs: &mut Vec<String>) {
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(rustix::stdio::stdin(), &mut buf) {
            Ok(0) => return,
            Ok(n) => diffs.push(format!("{n} unexpected bytes on stdin")),
            Err(Errno::INTR) => diffs.push("read(stdin) failed with EINTR".into()),
            Err(e) => {
                diffs.push(format!("read(stdin): {e}"));
                return;
            }
        }
    }
}

fn print_diffs(out: &mut dyn io::Write, who: &str, diffs: &[String]) {
    for d in diffs {
        let _ = writeln!(out, "{who}: {d}");
    }
}

/// Name a child gives itself (`/proc/PID/comm`), so that `verify` can tell its role
/// from the image.
fn child_name(role: usize) -> String {
    format!("tp-child-{role}")
}

/// `pipecr-testprog SCENARIO setup [--dir DIR] [ARGS...]`: builds the state, prints the
/// ready line, waits for EOF on stdin, then checks that the state is untouched. Returns
/// the exit code.
pub fn run_setup(s: &dyn Scenario, dir: Option<PathBuf>, args: Vec<String>) -> anyhow::Result<i32> {
    // A scratch directory of our own is removed when `_scratch` drops (in the root only:
    // children leave with process::exit and run no destructors).
    let (_scratch, dir) = match dir {
        Some(dir) => (None, dir),
        None => {
            let t = tempfile::Builder::new()
                .prefix("pipecr-testprog-")
                .tempdir()
                .context("create a scratch directory")?;
            let path = t.path().to_owned();
            (Some(t), path)
        }
    };
    // Descriptors inherited from whoever started us are not part of the scenario.
    close_others(&[])?;
    let env = Env { dir, args };
    s.prepare(&env).context("prepare")?;

    let (ready_r, ready_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("pipe")?;
    let mut children = Vec::new();
    for role in 1..=s.children() {
        let pid = if s.clone_files() {
            spawn_clone_files(s, role, &env, ready_w.as_fd())?
        } else {
            // SAFETY: this program is single-threaded (no thread is ever started), so the
            // child may run any code after fork.
            match unsafe { nix::unistd::fork() }.context("fork")? {
                nix::unistd::ForkResult::Child => {
                    drop(ready_r);
                    let code = forked_child(s, role, &env, ready_w);
                    std::process::exit(code)
                }
                nix::unistd::ForkResult::Parent { child } => child,
            }
        };
        children.push(pid);
    }
    // With a shared table the children write their ready byte through this very number:
    // it may only be closed once they all did.
    let ready_w = if s.clone_files() {
        Some(ready_w)
    } else {
        drop(ready_w);
        None
    };

    let mut diffs = Vec::new();
    let built = s.build(0, &env);
    // Forked children close their copy of the ready pipe right after writing to it:
    // end-of-file, not the last byte, says that none of them holds it any more (the
    // dump must not find it in their tables). Cloned children share our copy.
    let mut got = 0;
    let mut buf = [0u8; 64];
    while ready_w.is_none() || got < children.len() {
        match rustix::io::read(&ready_r, &mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("read the children's ready bytes"),
        }
    }
    drop((ready_r, ready_w));
    if let Err(e) = built {
        diffs.push(format!("build: {e:#}"));
    } else if got < children.len() {
        diffs.push(format!(
            "only {got} of {} children got ready",
            children.len()
        ));
    } else {
        close_others(&s.fds(0))?;
        let pids: Vec<String> = std::iter::once(std::process::id() as i32)
            .chain(children.iter().map(|p| p.as_raw()))
            .map(|p| p.to_string())
            .collect();
        let mut out = io::stdout().lock();
        writeln!(out, "ready {}", pids.join(" "))?;
        out.flush()?;
        drop(out);
        wait_for_eof(&mut diffs);
        let mut c = Checker::new(Mode::Live, None);
        s.check(0, &mut c);
        diffs.extend(c.diffs);
    }
    for pid in children {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => {}
            Ok(status) => diffs.push(format!("child {pid}: {status:?}")),
            Err(e) => diffs.push(format!("waitpid({pid}): {e}")),
        }
    }
    print_diffs(&mut io::stderr(), "setup", &diffs);
    Ok(i32::from(!diffs.is_empty()))
}

/// A forked child: builds its part, keeps only its descriptors, says it is ready, waits
/// for EOF and checks. Returns the exit code.
fn forked_child(s: &dyn Scenario, role: usize, env: &Env, ready_w: OwnedFd) -> i32 {
    let mut diffs = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        let name = std::ffi::CString::new(child_name(role))?;
        nix::sys::prctl::set_name(&name)?;
        s.build(role, env)?;
        let mut keep = s.fds(role);
        keep.push(ready_w.as_raw_fd());
        close_others(&keep)?;
        write_all(&ready_w, b"r")?;
        drop(ready_w);
        Ok(())
    })();
    if let Err(e) = result {
        // The ready pipe closes when we exit: the root sees one child short.
        eprintln!("child {role}: build: {e:#}");
        return 1;
    }
    wait_for_eof(&mut diffs);
    let mut c = Checker::new(Mode::Live, None);
    s.check(role, &mut c);
    diffs.extend(c.diffs);
    print_diffs(&mut io::stderr(), &format!("child {role}"), &diffs);
    i32::from(!diffs.is_empty())
}

/// Creates child `role` with `clone(CLONE_FILES)`: it shares the root's descriptor table,
/// so it closes nothing (the root tidies the shared table once everybody is ready).
fn spawn_clone_files(
    s: &dyn Scenario,
    role: usize,
    env: &Env,
    ready_w: BorrowedFd<'_>,
) -> anyhow::Result<nix::unistd::Pid> {
    let mut stack = vec![0u8; 1 << 20];
    let child = Box::new(|| -> isize {
        let mut diffs = Vec::new();
        let result = (|| -> anyhow::Result<()> {
            let name = std::ffi::CString::new(child_name(role))?;
            nix::sys::prctl::set_name(&name)?;
            s.build(role, env)?;
            write_all(ready_w, b"r")?;
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("child {role}: build: {e:#}");
            std::process::exit(1);
        }
        wait_for_eof(&mut diffs);
        let mut c = Checker::new(Mode::Live, None);
        s.check(role, &mut c);
        diffs.extend(c.diffs);
        print_diffs(&mut io::stderr(), &format!("child {role}"), &diffs);
        std::process::exit(i32::from(!diffs.is_empty()))
    });
    // SAFETY: clone without CLONE_VM gives the child a copy of our memory, like fork,
    // and `stack` is a live, writable buffer for its stack; this program is
    // single-threaded. The child leaves with process::exit and never returns into our frames.
    let pid = unsafe {
        nix::sched::clone(
            child,
            &mut stack,
            nix::sched::CloneFlags::CLONE_FILES,
            Some(nix::libc::SIGCHLD),
        )
    }
    .context("clone(CLONE_FILES)")?;
    Ok(pid)
}

/// The role of saved process `pid`: 0 for the root, N for the child that named itself
/// `tp-child-N`.
fn role_of(image: &Path, pid: i32) -> anyhow::Result<usize> {
    let image = pipecr_image::Image::open(image)?;
    let processes: Vec<pipecr_image::proto::Process> = image.read_records(pipecr_image::TREE)?;
    let p = processes
        .iter()
        .find(|p| p.pid == pid)
        .with_context(|| format!("the image holds no process {pid}"))?;
    Ok(p.comm
        .strip_prefix("tp-child-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// `pipecr-testprog SCENARIO verify --image DIR --pid PID`: rebuilds the saved table of
/// `pid` in this fresh process and checks it from inside. Returns the exit code.
pub fn run_verify(s: &dyn Scenario, image: &Path, pid: i32) -> anyhow::Result<i32> {
    // Descriptors inherited from whoever started us are not part of the saved table.
    close_others(&[])?;
    // The rebuild replaces 0, 1 and 2: keep a copy of stderr out of its way.
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c <= REPORT_FD as u64) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    let report = rustix::io::fcntl_dupfd_cloexec(io::stderr(), REPORT_FD)
        .context("move the report channel to a high descriptor")?;
    let report_fd = report.as_raw_fd();
    let mut out = File::from(report);

    let role = role_of(image, pid)?;
    if let Err(e) = pipecr::restore::fdtable::rebuild(image, pid) {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            msg.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        writeln!(out, "verify pid {pid}: rebuild failed: {msg}")?;
        return Ok(1);
    }
    let mut c = Checker::new(Mode::Rebuilt, Some(report_fd));
    s.check(role, &mut c);
    print_diffs(
        &mut out,
        &format!("verify pid {pid} (role {role})"),
        &c.diffs,
    );
    Ok(i32::from(!c.diffs.is_empty()))
}
