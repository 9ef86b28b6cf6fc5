//! `pipecr demo`: the whole story in one command. Start a pipeline of processes with data
//! flowing, dump it while its pipes hold data (the dump kills it), restore it, let it
//! finish, and check that its output is byte for byte that of an uninterrupted run.
//!
//! The pipeline is pipecr itself re-executed as `pipecr demo-stage` ([`super::demo_stage`]):
//! a supervisor (the tree's root, like a shell) running `produce | transform | consume`,
//! the consumer writing into a file in the demo's work directory. Steps:
//!
//! 1. an uninterrupted run gives the reference output;
//! 2. a second run whose consumer pauses after [`PAUSE_AFTER`] lines; writers signal
//!    (SIGUSR2) each time their pipe is full, and the demo dumps once every pipe is full
//!    (checked on the live pipes, through `pidfd_getfd`), so no timing is guessed;
//! 3. `dump_tree` in this process saves the tree and kills it; the demo (a child
//!    subreaper) reaps every process so the PIDs are free again;
//! 4. `pipecr restore -D IMAGE` runs as a child process (restore must be called from a
//!    single-threaded process, and the progress spinner is a thread); once it says the
//!    tree runs, SIGUSR1 lets the consumer go on;
//! 5. the restored run's output is compared with the reference.
//!
//! `--pipes-only` runs the older in-process pipe round trip ([`super::demo_pipes`]),
//! which needs no capability.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use pipecr::files::DumpOptions;
use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};

use crate::format;

/// Checkpoint a running pipeline with data in its pipes, restore it, and verify its output.
///
/// Runs `produce | transform | consume > FILE` (pipecr's own hidden `demo-stage`
/// processes under a supervisor) once uninterrupted, then again: dumps it while its pipes
/// are full (which kills it), restores it from the image, lets it finish, and checks that
/// the output is identical. Needs root with CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the work directory (image, outputs, stage log) in DIR instead of a temporary
    /// one; with --pipes-only, the pipe images.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Only the in-process pipe checkpoint/restore round trip (needs no capability).
    #[arg(long)]
    pipes_only: bool,
    /// Lines the producer writes.
    #[arg(long, default_value_t = 200_000, hide = true)]
    lines: u64,
    /// Transform stages.
    #[arg(long, default_value_t = 1, hide = true)]
    transforms: u32,
    /// Capacity of every pipe (F_SETPIPE_SZ).
    #[arg(long, hide = true, value_name = "BYTES")]
    pipe_size: Option<usize>,
}

/// Lines the consumer takes before it pauses in the checkpointed run.
pub const PAUSE_AFTER: u64 = 20_000;

/// Runs the demo; a missing capability or any difference in the output is a failure.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.pipes_only {
        return super::demo_pipes::run(args.dir.as_deref());
    }
    let checks = pipecr::check::run_checks();
    let missing: Vec<_> = checks.iter().filter(|c| c.required && !c.is_ok()).collect();
    if !missing.is_empty() {
        eprintln!("pipecr demo needs, and this process lacks:");
        for c in &missing {
            eprintln!("  {}: {}", c.name, c.detail());
        }
        eprintln!(
            "run it as root (CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE); `pipecr check` \
             lists every probe; `pipecr demo --pipes-only` needs no capability"
        );
        return Ok(ExitCode::FAILURE);
    }
    ensure!(
        args.lines > PAUSE_AFTER + 50_000,
        "--lines must exceed {} so the pipes fill while the consumer pauses",
        PAUSE_AFTER + 50_000
    );

    // Before any thread exists (the spinner's): every thread inherits the mask, so the
    // stages' SIGUSR2 and SIGCHLD wait for `sigwait` below.
    let mut waited = SigSet::empty();
    waited.add(Signal::SIGUSR1);
    waited.add(Signal::SIGUSR2);
    waited.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
        .context("block SIGUSR1, SIGUSR2, SIGCHLD")?;
    // The dump kills the stages while their parent is killed too: as the subreaper we
    // inherit and reap them, which frees their PIDs for the restore.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("PR_SET_CHILD_SUBREAPER")?;
    // Descriptors we inherited (a terminal multiplexer's, a CI runner's) must not reach
    // the pipeline: they would lead outside the dumped tree.
    // Only the stages' stdio may lead out of the tree, not what we inherited.
    pipecr::sys::fd::cloexec_from(3).context("cannot mark inherited descriptors close-on-exec")?;

    let (work, _tmp) = super::demo_workdir::work_dir(args.dir.as_deref())?;
    let image = work.join("image");
    if image.exists() {
        std::fs::remove_dir_all(&image)
            .with_context(|| format!("cannot remove the old image {}", image.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the pipecr executable")?;
    let pipeline = Pipeline {
        exe,
        lines: args.lines,
        transforms: args.transforms,
        pipe_size: args.pipe_size,
        log: work.join("stages.log"),
    };
    let transforms = vec!["transform"; args.transforms as usize].join(" | ");
    println!("pipecr demo: checkpoint and restore a running pipeline, with data in flight");
    println!(
        "  pipeline: produce | {transforms} | consume > FILE   ({} processes under a \
         supervisor, {} pipes; {} lines)",
        args.transforms + 2,
        args.transforms + 1,
        args.lines
    );
    println!("  work directory: {}", work.display());
    let ui = Ui::new();

    // 1. The reference.
    ui.step("1/5 uninterrupted run");
    let reference = work.join("reference.out");
    let started = Instant::now();
    let mut child = pipeline.start(&reference, None, None)?;
    let status = child.wait().context("waiting for the reference run")?;
    let took = started.elapsed();
    if !status.success() {
        bail!(
            "the reference run failed ({status}); {}",
            pipeline.log_tail()
        );
    }
    let reference_len = file_len(&reference)?;
    ui.line(format!(
        "[1/5] uninterrupted run: {} of output in {}",
        format::bytes(reference_len),
        ms(took)
    ));

    // 2. The run to checkpoint, caught with full pipes.
    ui.step("2/5 second run: waiting for the pipes to fill");
    let output = work.join("restored.out");
    let started = Instant::now();
    let mut child = pipeline.start(
        &output,
        Some(PAUSE_AFTER),
        Some(rustix::process::getpid().as_raw_nonzero().get()),
    )?;
    let root = child.id() as i32;
    let stages = match wait_full(&waited, &mut child, args.transforms as usize + 2) {
        Ok(stages) => stages,
        Err(e) => {
            kill_tree(&mut child);
            return Err(e.context(pipeline.log_tail()));
        }
    };
    let names: Vec<String> = stages
        .iter()
        .map(|s| format!("{} {}", s.name, s.pid))
        .collect();
    ui.line(format!(
        "[2/5] second run: consumer paused after {PAUSE_AFTER} lines, every pipe full after {}",
        ms(started.elapsed())
    ));
    ui.line(format!(
        "      processes: supervisor {root}, {}",
        names.join(", ")
    ));
    for pair in stages.windows(2) {
        let (w, r) = (&pair[0], &pair[1]);
        ui.line(format!(
            "      pipe {} -> {}: {} pending of {}; a line in it: {}",
            w.name,
            r.name,
            format::bytes(w.pending),
            format::bytes(w.capacity),
            w.preview
        ));
    }
    ui.line(format!(
        "      output so far: {}",
        format::bytes(file_len(&output)?)
    ));

    // 3. Dump; the tree is killed once the image is committed.
    ui.step("3/5 dump");
    let options = DumpOptions {
        read_handlers: true,
        leave_running: false,
        ..DumpOptions::default()
    };
    let stats = match pipecr::dump::dump_tree(root, &image, &options) {
        Ok(stats) => stats,
        Err(e) => {
            kill_tree(&mut child);
            return Err(e).with_context(|| format!("dump of the pipeline (pid {root}) failed"));
        }
    };
    child.wait().context("reaping the dumped supervisor")?;
    for s in &stages {
        // Orphaned by the supervisor's death, they are ours to reap (subreaper).
        waitpid(Pid::from_raw(s.pid), None)
            .with_context(|| format!("reaping the dumped {} stage (pid {})", s.name, s.pid))?;
    }
    let (image_len, _) = du(&image)?;
    ui.line(format!(
        "[3/5] dump: {} processes, {} pipes holding {} in flight, {} memory pages",
        stats.processes,
        stats.pipes,
        format::bytes(stats.pipe_bytes),
        stats.memory.pages_stored,
    ));
    ui.line(format!(
        "      tree stopped {} (image committed, then killed); dump took {}; image {} in {}",
        ms(stats.frozen),
        ms(stats.total),
        format::bytes(image_len),
        image.display()
    ));

    // 4. Restore in a child `pipecr restore`, then let the consumer go on.
    ui.step("4/5 restore");
    let started = Instant::now();
    let mut restore = Command::new(&pipeline.exe)
        .arg("restore")
        .arg("-D")
        .arg(&image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `pipecr restore`")?;
    let mut first = String::new();
    let stdout = restore.stdout.take().context("restore's stdout")?;
    BufReader::new(stdout)
        .read_line(&mut first)
        .context("reading `pipecr restore`'s output")?;
    let running = started.elapsed();
    if first.trim() != format!("restored pid {root}") {
        let _ = restore.kill();
        let out = restore.wait_with_output();
        let err = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        bail!("`pipecr restore` did not restore pid {root}: {first}{err}");
    }
    let consumer = stages.last().context("no consumer stage")?.pid;
    kill(Pid::from_raw(consumer), Signal::SIGUSR1)
        .with_context(|| format!("SIGUSR1 to the restored consumer (pid {consumer})"))?;
    let done = restore
        .wait_with_output()
        .context("waiting for `pipecr restore`")?;
    let finished = started.elapsed();
    if !done.status.success() {
        bail!(
            "the restored pipeline failed ({}): {}; {}",
            done.status,
            String::from_utf8_lossy(&done.stderr).trim(),
            pipeline.log_tail()
        );
    }
    ui.line(format!(
        "[4/5] restore: pipecr restore -D {}: all {} processes running again after {}, \
         pipeline finished after {}",
        image.display(),
        stats.processes,
        ms(running),
        ms(finished)
    ));

    // 5. Verify.
    ui.step("5/5 verify");
    let same = same_contents(&reference, &output)?;
    ui.finish();
    if let Some(at) = same {
        bail!(
            "the restored run's output {} differs from the reference {} from byte {at}",
            output.display(),
            reference.display()
        );
    }
    println!(
        "[5/5] verify: {} identical to the uninterrupted run ({})",
        output.display(),
        format::bytes(reference_len)
    );
    println!(
        "verified: the pipeline was dumped with {} in its pipes, restored, and finished with \
         the same output; downtime {} (stopped) + {} (restore)",
        format::bytes(stats.pipe_bytes),
        ms(stats.frozen),
        ms(running)
    );
    if args.dir.is_some() {
        println!(
            "work directory kept: {} (try: pipecr show {})",
            work.display(),
            image.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How to start the pipeline.
struct Pipeline {
    /// This pipecr, which runs `pipecr restore`.
    exe: PathBuf,
    lines: u64,
    transforms: u32,
    pipe_size: Option<usize>,
    /// Every stage's stderr, appended.
    log: PathBuf,
}

impl Pipeline {
    /// Starts the supervisor writing into `out`; stdin and stdout /dev/null, stderr the log.
    fn start(&self, out: &Path, pause: Option<u64>, notify: Option<i32>) -> anyhow::Result<Child> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["demo-stage", "supervise", "--lines"])
            .arg(self.lines.to_string())
            .arg("--transforms")
            .arg(self.transforms.to_string())
            .arg("--out")
            .arg(out);
        if let Some(size) = self.pipe_size {
            cmd.arg("--pipe-size").arg(size.to_string());
        }
        if let Some(n) = pause {
            cmd.arg("--pause-after").arg(n.to_string());
        }
        if let Some(pid) = notify {
            cmd.arg("--notify").arg(pid.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the pipeline's supervisor")
    }

    /// The end of the stage log, for an error message.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
        format!("stage log {}:\n  {tail}", self.log.display())
    }
}

/// One stage process as seen live, with its stdout pipe when it writes one.
struct Stage {
    pid: i32,
    name: String,
    /// Bytes pending in its stdout pipe, and that pipe's capacity.
    pending: u64,
    capacity: u64,
    /// The first pending line, shortened.
    preview: String,
}

/// Waits until the consumer has paused (its SIGUSR1) and every pipe is full: each
/// SIGUSR2 (a writer found its pipe full) triggers a look at all pipes; the last such
/// signal comes after the last pipe filled, so no state is missed. Returns the stages in
/// pipeline order.
fn wait_full(waited: &SigSet, supervisor: &mut Child, count: usize) -> anyhow::Result<Vec<Stage>> {
    let mut paused = false;
    loop {
        match waited.wait().context("sigwait")? {
            Signal::SIGCHLD => {
                if let Some(status) = supervisor
                    .try_wait()
                    .context("waiting for the supervisor")?
                {
                    bail!("the pipeline ended ({status}) before its pipes were full");
                }
                continue;
            }
            Signal::SIGUSR1 => paused = true,
            _ => {}
        }
        if paused && let Some(stages) = full_pipes(supervisor.id() as i32, count)? {
            return Ok(stages);
        }
    }
}

/// Ends a pipeline left running after a failure: its stages, then the supervisor, and
/// reaps them all (the stages come to us, the subreaper). Best effort: errors are moot.
fn kill_tree(supervisor: &mut Child) {
    let root = supervisor.id();
    let stages: Vec<i32> = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for &pid in &stages {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = supervisor.kill();
    let _ = supervisor.wait();
    for &pid in &stages {
        let _ = waitpid(Pid::from_raw(pid), None);
    }
}

/// The stages in pipeline order with their pipes' state, or None while a stage is
/// missing or a pipe still has room.
fn full_pipes(root: i32, count: usize) -> anyhow::Result<Option<Vec<Stage>>> {
    let children = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
        .with_context(|| format!("cannot list the children of pid {root}"))?;
    let pids: Vec<i32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if pids.len() < count {
        return Ok(None);
    }
    // (pid, name, stdin pipe inode, stdout pipe inode)
    let mut found = Vec::new();
    for &pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.get(1) != Some(&&b"demo-stage"[..]) {
            // Still between fork and exec.
            return Ok(None);
        }
        let name = String::from_utf8_lossy(args.get(2).copied().unwrap_or_default()).into_owned();
        let link = |fd: i32| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        found.push((pid, name, link(0), link(1)));
    }
    // Follow the pipes from the producer.
    let mut order = Vec::new();
    let mut next = found.iter().find(|s| s.1 == "produce");
    while let Some(s) = next {
        order.push(s);
        next = found
            .iter()
            .find(|t| s.3.starts_with("pipe:") && t.2 == s.3);
    }
    ensure!(
        order.len() == count,
        "found {} of the {count} stages linked by pipes under pid {root}",
        order.len()
    );
    let mut stages = Vec::new();
    let mut transform = 0;
    for (i, (pid, name, _, _)) in order.into_iter().enumerate() {
        let name = if name == "transform" {
            transform += 1;
            format!("transform{transform}")
        } else {
            name.clone()
        };
        let mut stage = Stage {
            pid: *pid,
            name,
            pending: 0,
            capacity: 0,
            preview: String::new(),
        };
        if i + 1 < count {
            let end = stdout_of(*pid)?;
            let mut fds = [PollFd::new(&end, PollFlags::OUT)];
            poll(&mut fds, Some(&rustix::event::Timespec::default()))
                .context("poll on a stage's pipe")?;
            if fds[0].revents().contains(PollFlags::OUT) {
                return Ok(None);
            }
            stage.pending = rustix::io::ioctl_fionread(&end).context("FIONREAD")?;
            stage.capacity = rustix::pipe::fcntl_getpipe_size(&end).context("F_GETPIPE_SZ")? as u64;
            // A copy, through tee: the pipe keeps its bytes.
            let image = pipecr::pipe::peek(end.as_fd())
                .with_context(|| format!("peek into the pipe of pid {pid}"))?;
            stage.preview = preview(&image.data);
        }
        stages.push(stage);
    }
    Ok(Some(stages))
}

/// A copy of `pid`'s stdout descriptor.
fn stdout_of(pid: i32) -> anyhow::Result<OwnedFd> {
    let pid_ = rustix::process::Pid::from_raw(pid).context("pid 0")?;
    let pidfd =
        pidfd_open(pid_, PidfdFlags::empty()).with_context(|| format!("pidfd_open {pid}"))?;
    pidfd_getfd(&pidfd, 1, PidfdGetfdFlags::empty())
        .with_context(|| format!("pidfd_getfd of fd 1 in pid {pid}"))
}

/// The first complete line of `data` (the reader may have taken part of the first),
/// quoted and shortened.
fn preview(data: &[u8]) -> String {
    let line = data.split(|&b| b == b'\n').nth(1).unwrap_or_default();
    let text = String::from_utf8_lossy(&line[..line.len().min(48)]);
    format!("\"{text}...\"")
}

/// Byte offset of the first difference, or None when both files are identical.
fn same_contents(a: &Path, b: &Path) -> anyhow::Result<Option<u64>> {
    let x = std::fs::read(a).with_context(|| format!("cannot read {}", a.display()))?;
    let y = std::fs::read(b).with_context(|| format!("cannot read {}", b.display()))?;
    if x == y {
        return Ok(None);
    }
    let at = x.iter().zip(&y).position(|(p, q)| p != q);
    Ok(Some(at.unwrap_or(x.len().min(y.len())) as u64))
}

fn file_len(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// (sum of file lengths, sum of allocated bytes) under `dir`.
fn du(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let m = e
            .metadata()
            .with_context(|| format!("cannot stat {}", e.path().display()))?;
        if m.is_dir() {
            let (l, b) = du(&e.path())?;
            total = (total.0 + l, total.1 + b);
        } else {
            total = (total.0 + m.len(), total.1 + m.blocks() * 512);
        }
    }
    Ok(total)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Progress on stderr (a spinner with the current step, hidden when stderr is not a
/// terminal) and results on stdout, printed above the spinner.
struct Ui {
    bar: ProgressBar,
}

impl Ui {
    fn new() -> Ui {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Ui { bar }
    }

    fn step(&self, msg: &'static str) {
        self.bar.set_message(msg);
        self.bar.reset_elapsed();
    }

    fn line(&self, text: String) {
        self.bar.suspend(|| println!("{text}"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
