//! `pipecr restore -D DIR [-d]`: bring a dumped process back, with its PID, and (by
//! default) wait for it like a shell waits for a job.
//!
//! Only what [`pipecr::restore::process`] can restore is accepted: a tree of
//! processes (threads included) whose descriptors it can create again; a descriptor
//! that led outside the tree gets one supplied with `--inherit-fd` (by default, those at
//! fds 0-2 get restore's own stdio). Anything else is refused before a process is
//! created. An image dumped with `--no-inject` is restored with default signal handlers,
//! no interval timers and no alternate stacks, after one line on stderr saying so.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use pipecr::diagnose::ErrorClass;
use pipecr::restore::options::{Inherit, RestoreOptions, Source};
use pipecr::restore::process::{self as restore_process, ProcessRestoreError};
use pipecr_image::{Image, proto};
use serde_json::json;

use crate::logging::Logging;
use crate::outcome::{self, Refusal};

/// Restore a dumped process (with the same PID) and wait for it.
///
/// The processes get their descriptors back: files, FIFOs, devices, and the pipes and
/// sockets between them with the bytes in flight. A pipe, socket or terminal that led
/// outside the tree is connected to restore's own stdin/stdout/stderr when it was at fd
/// 0, 1 or 2; any other needs --inherit-fd. Prints `restored pid N` (the root) once they
/// run. The root comes back as a child of this command, which stays in the foreground
/// until it exits and exits with its status (128 + signal if killed).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image directory written by `pipecr dump`.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    /// Return as soon as the process runs instead of waiting for it.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Restore into a new PID namespace (with a minimal init as its PID 1), so that the
    /// saved PIDs need only be free there: a copy can run beside the still-running
    /// original. `restored pid N` gives the PID inside the namespace; this command waits
    /// for the init, which exits with the root's status. Signals are not forwarded;
    /// SIGKILL to the init ends the copy. Needs CAP_SYS_ADMIN.
    #[arg(long)]
    pidns: bool,
    /// Give the descriptor that led outside the tree at original fd number FD (in process
    /// PID only, when given) a source: `fd:N` (one of restore's own descriptors), a path,
    /// or `null`. Repeatable. Bytes that were waiting in an external pipe for the tree are
    /// written into the source when it is a pipe.
    #[arg(long = "inherit-fd", value_name = "[PID:]FD=SOURCE")]
    inherit_fd: Vec<Inherit>,
    /// A unix socket of the tree whose peer was outside it, at this address (a path, or
    /// `@name` for an abstract one), gets a new socket of the same type connected to that
    /// address again (bound to its own saved name, if it had one). Repeatable. Without it
    /// (or --inherit-fd) such a socket stops the restore.
    #[arg(long = "external-unix", value_name = "ADDRESS")]
    external_unix: Vec<String>,
    /// The tree is a job of an interactive shell (dumped from its own process group in
    /// the shell's session, on the shell's terminal): restore it into this command's
    /// session and onto its terminal, and, in the foreground, make it the terminal's
    /// foreground job until it ends.
    #[arg(long, conflicts_with = "pidns")]
    shell_job: bool,
    /// Print one JSON object instead of `restored pid N` once the tree runs: the outcome,
    /// the PIDs, the stats and, on failure, the error's class, code and the PID/fd/kind
    /// concerned (docs/CLI-JSON.md). On stdout, unless the tree writes there too.
    #[arg(long)]
    pub json: bool,
    /// Once the tree runs, write its timings and counts as restore-stats.img next to the
    /// image (replacing an earlier one; `pipecr show` prints it). Without it the image
    /// directory is never written to; the stats are in --json and the -v log anyway.
    #[arg(long)]
    save_stats: bool,
}

/// Restores the image and waits for (or detaches from) the restored process.
pub fn run(args: Args, logging: &Logging) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let image = Image::open(&args.dir)
        .with_context(|| format!("cannot read the image in {}", args.dir.display()))?;
    // Registers, XSAVE areas and syscall numbers are the machine's own: refuse an image
    // of another architecture before anything is created.
    let here = rustix::system::uname();
    let here = here.machine().to_string_lossy();
    let arch = &image.inventory().arch;
    if *arch != here {
        return Err(Refusal::err(
            ErrorClass::Unsupported,
            "arch_mismatch",
            format!("image was taken on {arch}; this machine is {here}; nothing was restored"),
        ));
    }
    let processes: Vec<proto::Process> = image
        .read_records(pipecr_image::TREE)
        .context("cannot read the process tree")?;
    let Some(root) = processes.first() else {
        return Err(Refusal::err(
            ErrorClass::DamagedImage,
            "empty_image",
            "the image holds no process",
        ));
    };
    let pid = root.pid;
    let tree = processes
        .iter()
        .map(|p| restore_process::load(&image, p.pid))
        .collect::<Result<Vec<_>, _>>()?;
    // nix, not rustix: both are 0 when the leader lives in an ancestor PID namespace
    // (a container's init), and rustix's Pid cannot hold 0.
    let sid = nix::unistd::getsid(None).context("getsid")?;
    let pgid = nix::unistd::getpgrp();
    // A shell job's session was its shell's, which is not restored: the job joins ours.
    let sid = match (args.shell_job, tree.first()) {
        (true, Some(root)) if root.process.sid != root.pid() => root.process.sid,
        _ => sid.as_raw(),
    };
    restore_process::check_tree(&tree, sid, pgid.as_raw())
        .with_context(|| format!("cannot restore pid {pid}; nothing was restored"))?;
    // An impossible pipe (one the kernel could not hold) is refused before anything exists.
    pipecr::pipe::check_records(&image)
        .with_context(|| format!("cannot restore pid {pid}; nothing was restored"))?;
    // In a new PID namespace, the saved PIDs are free.
    if !args.pidns
        && let Some(p) = restore_process::tree_ids(&tree)
            .into_iter()
            .find(|&p| restore_process::pid_in_use(p))
    {
        return Err(ProcessRestoreError::PidInUse { pid: p }.into());
    }
    // Only a dump asked not to inject (`--no-inject`) leaves these out: say once what
    // the processes come back without.
    if tree.iter().any(|p| !p.core.handlers_read) {
        let threads = if tree
            .iter()
            .any(|p| !p.core.handlers_read && p.core.threads.len() > 1)
        {
            "; pthread_join on a restored thread that exits will wait forever"
        } else {
            ""
        };
        eprintln!(
            "pipecr: the image has no signal handlers (dumped with --no-inject, or by an older \
             pipecr without --read-handlers): handlers, interval timers, alternate signal \
             stacks, clear_child_tid, securebits, parent-death signals and child subreapers \
             come back as defaults{threads}"
        );
    }
    let options = RestoreOptions {
        inherit: args.inherit_fd.clone(),
        shell_job: args.shell_job,
        external_unix: args.external_unix.clone(),
    };
    let shares_stdout = pipecr::restore::external::plan(&image, &options)
        .map(|plan| plan.iter().any(|(_, r)| r.source == Source::Fd(1)))
        .unwrap_or(false);
    let checked = started.elapsed();
    let pages: u64 = tree
        .iter()
        .flat_map(|p| &p.mm.pages)
        .filter(|r| !r.zero)
        .map(|r| r.nr_pages)
        .sum();
    let page_bytes = pages * pipecr_image::PAGE_SIZE;
    tracing::info!(target: pipecr::mem::PROGRESS, total = page_bytes);
    let mut stages = vec![("check", checked)];
    let child = if args.pidns {
        // The init is the child we wait for: it exits with the root's status.
        let ns = pipecr::restore::pidns::restore_tree_in_new_pidns(&image, &tree, &options)
            .with_context(|| format!("restore of pid {pid} failed; nothing was left running"))?;
        eprintln!(
            "pipecr: restored into a new pid namespace; its init is pid {} here",
            ns.init()
        );
        ns.init()
    } else {
        let (root, timings) = restore_process::restore_tree_timed(&image, &tree, &options)
            .with_context(|| format!("restore of pid {pid} failed; nothing was left running"))?;
        stages.extend(timings.stages);
        root
    };
    logging.finish_progress();
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let stats = proto::RestoreStats {
        total_ns: ns(started.elapsed()),
        processes: tree.len() as u64,
        threads: tree.iter().map(|p| p.core.threads.len() as u64).sum(),
        pages,
        page_bytes,
        stages: stages
            .iter()
            .map(|&(name, took)| proto::StageTime {
                name: name.to_owned(),
                ns: ns(took),
            })
            .collect(),
        created_unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    tracing::info!(
        pid,
        ms = stats.total_ns as f64 / 1e6,
        processes = stats.processes,
        page_bytes = stats.page_bytes,
        "restored"
    );
    if args.save_stats {
        write_restore_stats(&args.dir, &stats);
    }
    // One line once the process runs: what a caller waits for. On stdout, unless the
    // tree writes there too (an external end given our fd 1): then on stderr, so the
    // tree's output stays exactly its own.
    let line = if args.json {
        json!({
            "command": "restore",
            "outcome": "ok",
            "exit_code": 0,
            "root_pid": pid,
            "pids": restore_process::tree_pids(&tree),
            "pidns_init": args.pidns.then(|| child.as_raw()),
            "detached": args.detach,
            "stats": restore_stats_json(&stats),
            "log_file": logging.log_file.as_ref().map(|p| p.display().to_string()),
        })
        .to_string()
    } else {
        format!("restored pid {pid}")
    };
    if shares_stdout {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    // A shell job in the foreground owns the terminal while it runs, as the shell would
    // have given it; ours again afterwards.
    let foreground = match tree.first() {
        Some(root) if args.shell_job => Foreground::take(root.process.pgid),
        _ => None,
    };
    let status = loop {
        match nix_wait(child.as_raw()) {
            Ok(Some(code)) => break Ok(ExitCode::from(code)),
            Ok(None) => continue,
            Err(e) => break Err(e).with_context(|| format!("waiting for pid {pid}")),
        }
    };
    drop(foreground);
    status
}

/// The controlling terminal handed to a restored job's process group, given back to ours
/// on drop.
struct Foreground {
    tty: std::os::fd::OwnedFd,
    ours: rustix::process::Pid,
}

impl Foreground {
    /// Makes `job` the foreground process group of our controlling terminal, when one of
    /// our stdio descriptors is that terminal and we are its foreground group now.
    fn take(job: i32) -> Option<Foreground> {
        let job = rustix::process::Pid::from_raw(job)?;
        let ours = rustix::process::getpgrp();
        let tty = (0..=2)
            .filter_map(|n| pipecr::sys::fd::dup_own(n, 3).ok())
            .find(|fd| rustix::termios::tcgetpgrp(fd).is_ok_and(|g| g == ours))?;
        if job == ours {
            return None;
        }
        set_foreground(&tty, job);
        Some(Foreground { tty, ours })
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        set_foreground(&self.tty, self.ours);
    }
}

/// `tcsetpgrp` with SIGTTOU blocked: from a background group (ours, once the job has the
/// terminal) the call would otherwise stop us. Best effort: a terminal that went away
/// leaves nothing to hand over.
fn set_foreground(tty: &std::os::fd::OwnedFd, group: rustix::process::Pid) {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    let blocked = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok();
    let _ = rustix::termios::tcsetpgrp(tty, group);
    if blocked {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

/// Waits for `pid`: `Some(status)` once it is gone (exit code, or 128 + signal).
fn nix_wait(pid: i32) -> std::io::Result<Option<u8>> {
    // Only this PID: the restored process is our only child anyway.
    let ret = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::empty(),
    );
    match ret {
        Ok(Some((_, s))) => {
            if let Some(code) = s.exit_status() {
                Ok(Some(code as u8))
            } else if let Some(sig) = s.terminating_signal() {
                Ok(Some((128 + sig) as u8))
            } else {
                Ok(None)
            }
        }
        Ok(None) => Ok(None),
        Err(rustix::io::Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `restore-stats.img` next to the image (replacing the one of an earlier
/// restore), for `--save-stats`. Best effort: an image on a read-only disk restores all
/// the same; the stats are in the log and in `--json` anyway.
fn write_restore_stats(dir: &std::path::Path, stats: &proto::RestoreStats) {
    let bytes = pipecr_image::encode_record_file(std::slice::from_ref(stats));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        pipecr_image::RESTORE_STATS,
        std::process::id()
    ));
    let written = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, dir.join(pipecr_image::RESTORE_STATS)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("cannot write {}: {e}", pipecr_image::RESTORE_STATS);
    }
}

/// A `restore-stats.img` record as JSON (times in milliseconds).
pub fn restore_stats_json(s: &proto::RestoreStats) -> serde_json::Value {
    json!({
        "total_ms": outcome::ms(s.total_ns),
        "processes": s.processes,
        "threads": s.threads,
        "pages": s.pages,
        "page_bytes": s.page_bytes,
        "stages": s.stages.iter().map(|t| json!({"name": t.name, "ms": outcome::ms(t.ns)})).collect::<Vec<_>>(),
    })
}
