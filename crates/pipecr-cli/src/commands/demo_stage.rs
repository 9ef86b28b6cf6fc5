//! `pipecr demo-stage ...` (hidden): the processes of the pipeline that `pipecr demo`
//! checkpoints, so the demo needs no program but pipecr itself.
//!
//! `supervise` is the tree's root, like a shell running `produce | transform... | consume`:
//! it creates the pipes (optionally resized), starts one pipecr process per stage with the
//! pipe ends as stdin/stdout, closes its own copies, waits for every stage and exits 0 when
//! all succeeded. Everything is deterministic, so an uninterrupted run and a run that was
//! dumped, killed and restored midway must write the same output file byte for byte.
//!
//! - `produce` writes numbered lines `SEQ HASH PAYLOAD` with a pseudo-random payload;
//! - each `transform` rot13s the payload and replaces HASH with a running FNV-1a hash of
//!   every payload it has seen (state that only survives a restore if memory does);
//! - `consume` checks that SEQ counts up by one, writes every line to the output file, and
//!   ends it with a trailer giving the line count and a hash of all it wrote.
//!
//! Two hooks let the demo catch the pipeline with full pipes, without timing guesses:
//! writers write their stdout non-blocking and, each time it is full (`EAGAIN`), send
//! `SIGUSR2` to the `--notify` PID before waiting for room with `poll`; and `consume
//! --pause-after N` stops reading after N lines, tells the `--notify` PID (`SIGUSR1`),
//! and waits for a `SIGUSR1` of its own (blocked, and waited for with `sigwait`), so the
//! pipes upstream fill and stay full. No stage holds a
//! descriptor leading outside the tree: stdin is /dev/null, stderr a file, and the
//! notification is a signal, not a descriptor.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, bail, ensure};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, fcntl_setpipe_size, pipe_with};

/// One stage of the demo pipeline (used by `pipecr demo`; not meant to be run by hand).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Debug, clap::Subcommand)]
enum Stage {
    /// The tree's root: start `produce | transform x N | consume` and wait for them.
    Supervise(SuperviseArgs),
    /// Write LINES deterministic lines to stdout.
    Produce {
        #[arg(long)]
        lines: u64,
        #[arg(long, value_name = "PID")]
        notify: Option<i32>,
    },
    /// Rot13 each line's payload and stamp it with a running hash.
    Transform {
        #[arg(long, value_name = "PID")]
        notify: Option<i32>,
    },
    /// Check the sequence numbers and write every line to OUT, then a trailer.
    Consume(ConsumeArgs),
}

/// What `supervise` passes on to its stages.
#[derive(Debug, clap::Args)]
struct SuperviseArgs {
    /// Lines the producer writes.
    #[arg(long)]
    lines: u64,
    /// Transform stages between producer and consumer.
    #[arg(long, default_value_t = 1)]
    transforms: u32,
    /// Capacity to give every pipe (F_SETPIPE_SZ); the kernel's default when absent.
    #[arg(long, value_name = "BYTES")]
    pipe_size: Option<usize>,
    /// Where writers send SIGUSR2 each time their stdout pipe is full.
    #[arg(long, value_name = "PID")]
    notify: Option<i32>,
    #[command(flatten)]
    consume: ConsumeArgs,
}

#[derive(Debug, Clone, clap::Args)]
struct ConsumeArgs {
    /// The output file (created or truncated).
    #[arg(long)]
    out: PathBuf,
    /// Stop reading after this many lines until SIGUSR1 arrives.
    #[arg(long, value_name = "LINES")]
    pause_after: Option<u64>,
    /// Where to send SIGUSR1 once paused.
    #[arg(long, value_name = "PID")]
    paused_notify: Option<i32>,
    /// MiB of memory the consumer fills and keeps (to give the image some weight).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    ballast_mib: usize,
}

/// Runs one stage; errors go to stderr (a file the demo shows when the run fails).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.stage {
        Stage::Supervise(a) => supervise(a),
        Stage::Produce { lines, notify } => produce(lines, notify),
        Stage::Transform { notify } => transform(notify),
        Stage::Consume(a) => consume(a),
    }
}

/// The first field of every line the producer writes, before any transform.
const NO_HASH: &str = "0000000000000000";

fn supervise(a: SuperviseArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the pipecr executable")?;
    let notify: Vec<String> = a
        .notify
        .map(|p| vec!["--notify".to_owned(), p.to_string()])
        .unwrap_or_default();
    let mut commands = Vec::new();
    let mut produce = vec![
        "produce".to_owned(),
        "--lines".to_owned(),
        a.lines.to_string(),
    ];
    produce.extend(notify.iter().cloned());
    commands.push(("produce".to_owned(), produce));
    for i in 0..a.transforms {
        let mut t = vec!["transform".to_owned()];
        t.extend(notify.iter().cloned());
        commands.push((format!("transform {}", i + 1), t));
    }
    let mut consume = vec!["consume".to_owned(), "--out".to_owned()];
    consume.push(a.consume.out.to_string_lossy().into_owned());
    if let Some(n) = a.consume.pause_after {
        consume.extend(["--pause-after".to_owned(), n.to_string()]);
    }
    if let Some(pid) = a.notify {
        consume.extend(["--paused-notify".to_owned(), pid.to_string()]);
    }
    consume.extend([
        "--ballast-mib".to_owned(),
        a.consume.ballast_mib.to_string(),
    ]);
    commands.push(("consume".to_owned(), consume));

    let mut children = Vec::new();
    let mut upstream: Option<OwnedFd> = None;
    let last = commands.len() - 1;
    for (i, (name, argv)) in commands.into_iter().enumerate() {
        let stdin = match upstream.take() {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        };
        let stdout = if i < last {
            let (r, w) = pipe_with(PipeFlags::CLOEXEC).context("pipe2")?;
            if let Some(size) = a.pipe_size {
                fcntl_setpipe_size(&w, size)
                    .with_context(|| format!("F_SETPIPE_SZ {size} on the pipe after {name}"))?;
            }
            upstream = Some(r);
            Stdio::from(w)
        } else {
            Stdio::null()
        };
        let child = Command::new(&exe)
            .arg("demo-stage")
            .args(&argv)
            .stdin(stdin)
            .stdout(stdout)
            .spawn()
            .with_context(|| format!("cannot start the {name} stage"))?;
        children.push((name, child));
    }
    let mut failed = Vec::new();
    for (name, mut child) in children {
        let status = child
            .wait()
            .with_context(|| format!("waiting for the {name} stage"))?;
        if !status.success() {
            failed.push(format!("{name} ({status})"));
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("stage(s) failed: {}", failed.join(", "))
    }
}

/// Stdout, written in chunks without blocking blind: when the pipe is full, tell the
/// `notify` PID (SIGUSR2), then wait for room.
struct Output {
    buf: Vec<u8>,
    notify: Option<Pid>,
}

/// Bytes gathered before a write to the pipe.
const CHUNK: usize = 32 << 10;

impl Output {
    fn new(notify: Option<i32>) -> anyhow::Result<Output> {
        let out = std::io::stdout();
        let fd = out.as_fd();
        let flags = fcntl_getfl(fd).context("F_GETFL on stdout")?;
        fcntl_setfl(fd, flags | OFlags::NONBLOCK).context("F_SETFL O_NONBLOCK on stdout")?;
        Ok(Output {
            buf: Vec::with_capacity(2 * CHUNK),
            notify: notify.map(Pid::from_raw),
        })
    }

    fn push(&mut self, line: &[u8]) -> anyhow::Result<()> {
        self.buf.extend_from_slice(line);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let out = std::io::stdout();
        let fd = out.as_fd();
        let mut done = 0;
        while done < self.buf.len() {
            match rustix::io::write(fd, &self.buf[done..]) {
                Ok(n) => done += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if let Some(pid) = self.notify {
                        // The demo may be gone; the pipeline runs on regardless.
                        let _ = kill(pid, Signal::SIGUSR2);
                    }
                    wait_writable(fd)?;
                }
                Err(e) => return Err(e).context("write to stdout"),
            }
        }
        self.buf.clear();
        Ok(())
    }
}

fn wait_writable(fd: BorrowedFd<'_>) -> anyhow::Result<()> {
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    loop {
        match poll(&mut fds, None) {
            Ok(_) => return Ok(()),
            // A restored poll comes back with EINTR (its restart block stayed in the
            // dumped kernel): ask again.
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("poll on stdout"),
        }
    }
}

/// xorshift64*: the producer's payloads, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn produce(lines: u64, notify: Option<i32>) -> anyhow::Result<ExitCode> {
    let mut out = Output::new(notify)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut line = Vec::with_capacity(128);
    for seq in 0..lines {
        line.clear();
        write!(line, "{seq:010} {NO_HASH} ").expect("writing to a Vec");
        let len = 20 + rng.next() % 80;
        for _ in 0..len {
            let r = rng.next() % 27;
            line.push(if r == 26 { b' ' } else { b'a' + r as u8 });
        }
        line.push(b'\n');
        out.push(&line)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// FNV-1a, 64 bits, continued from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Splits `SEQ HASH PAYLOAD\n` into (SEQ, PAYLOAD without the newline).
fn fields(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line.strip_suffix(b"\n")?;
    let sp = line.iter().position(|&b| b == b' ')?;
    let (seq, rest) = line.split_at(sp);
    let rest = &rest[1..];
    let sp = rest.iter().position(|&b| b == b' ')?;
    Some((seq, &rest[sp + 1..]))
}

fn transform(notify: Option<i32>) -> anyhow::Result<ExitCode> {
    let mut out = Output::new(notify)?;
    let mut input = BufReader::with_capacity(CHUNK, std::io::stdin().lock());
    let mut hash = FNV_START;
    let mut line = Vec::with_capacity(256);
    let mut next = Vec::with_capacity(256);
    for n in 1u64.. {
        line.clear();
        if input.read_until(b'\n', &mut line).context("read stdin")? == 0 {
            break;
        }
        let (seq, payload) = fields(&line).with_context(|| format!("malformed input line {n}"))?;
        hash = fnv(hash, payload);
        next.clear();
        next.extend_from_slice(seq);
        write!(next, " {hash:016x} ").expect("writing to a Vec");
        next.extend(payload.iter().map(|&b| match b {
            b'a'..=b'z' => b'a' + (b - b'a' + 13) % 26,
            b => b,
        }));
        next.push(b'\n');
        out.push(&next)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn consume(a: ConsumeArgs) -> anyhow::Result<ExitCode> {
    // Blocked from the start, so an early SIGUSR1 waits for us instead of killing us.
    let mut resume = SigSet::empty();
    resume.add(Signal::SIGUSR1);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&resume), None).context("block SIGUSR1")?;
    let ballast = ballast(a.ballast_mib);
    let file =
        File::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut input = BufReader::with_capacity(CHUNK, std::io::stdin().lock());
    let mut hash = FNV_START;
    let mut line = Vec::with_capacity(256);
    let mut count = 0u64;
    loop {
        if a.pause_after == Some(count) {
            out.flush()
                .with_context(|| format!("write {}", a.out.display()))?;
            if let Some(pid) = a.paused_notify {
                // The demo may be gone; then nobody will resume us, but the error says so.
                kill(Pid::from_raw(pid), Signal::SIGUSR1)
                    .with_context(|| format!("SIGUSR1 to pid {pid}"))?;
            }
            resume.wait().context("sigwait for SIGUSR1")?;
        }
        line.clear();
        if input.read_until(b'\n', &mut line).context("read stdin")? == 0 {
            break;
        }
        let (seq, _) =
            fields(&line).with_context(|| format!("malformed input line {}", count + 1))?;
        let seq: u64 = std::str::from_utf8(seq)
            .ok()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad sequence number on line {}", count + 1))?;
        ensure!(
            seq == count,
            "line {} carries sequence number {seq}: lines were lost or repeated",
            count + 1
        );
        hash = fnv(hash, &line);
        out.write_all(&line)
            .with_context(|| format!("write {}", a.out.display()))?;
        count += 1;
    }
    // Touch the ballast once more so it is visibly kept alive until the end.
    let sum = ballast
        .iter()
        .step_by(4096)
        .map(|&b| u64::from(b))
        .sum::<u64>();
    writeln!(out, "# {count} lines, fnv {hash:016x}, ballast {sum}")
        .and_then(|()| out.flush())
        .with_context(|| format!("write {}", a.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `mib` MiB of memory with a non-zero byte on every page (so every page is resident and
/// saved), kept by the caller.
fn ballast(mib: usize) -> Vec<u8> {
    let mut v = vec![0u8; mib << 20];
    for (i, page) in v.chunks_mut(4096).enumerate() {
        page.fill((i % 251 + 1) as u8);
    }
    v
}
