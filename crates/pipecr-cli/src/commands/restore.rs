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

use anyhow::{Context as _, bail};
use pipecr::restore::options::{Inherit, RestoreOptions, Source};
use pipecr::restore::process as restore_process;
use pipecr_image::{Image, proto};

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
    /// The tree is a job of an interactive shell (dumped from its own process group in
    /// the shell's session, on the shell's terminal): restore it into this command's
    /// session and onto its terminal, and, in the foreground, make it the terminal's
    /// foreground job until it ends.
    #[arg(long, conflicts_with = "pidns")]
    shell_job: bool,
}

/// Restores the image and waits for (or detaches from) the restored process.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let image = Image::open(&args.dir)
        .with_context(|| format!("cannot read the image in {}", args.dir.display()))?;
    // Registers, XSAVE areas and syscall numbers are the machine's own: refuse an image
    // of another architecture before anything is created.
    let here = rustix::system::uname();
    let here = here.machine().to_string_lossy();
    let arch = &image.inventory().arch;
    if *arch != here {
        bail!("image was taken on {arch}; this machine is {here}; nothing was restored");
    }
    let processes: Vec<proto::Process> = image
        .read_records(pipecr_image::TREE)
        .context("cannot read the process tree")?;
    let Some(root) = processes.first() else {
        bail!("the image holds no process");
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
        && let Some(p) = restore_process::tree_pids(&tree)
            .into_iter()
            .find(|&p| restore_process::pid_in_use(p))
    {
        bail!("pid {p} is in use by another process; nothing was restored");
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
    };
    let shares_stdout = pipecr::restore::external::plan(&image, &options)
        .map(|plan| plan.iter().any(|(_, r)| r.source == Source::Fd(1)))
        .unwrap_or(false);
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
        restore_process::restore_tree(&image, &tree, &options)
            .with_context(|| format!("restore of pid {pid} failed; nothing was left running"))?
    };
    // One line once the process runs: what a caller waits for. On stdout, unless the
    // tree writes there too (an external end given our fd 1): then on stderr, so the
    // tree's output stays exactly its own.
    if shares_stdout {
        eprintln!("restored pid {pid}");
    } else {
        println!("restored pid {pid}");
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
