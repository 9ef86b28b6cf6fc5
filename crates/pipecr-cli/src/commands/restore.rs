//! `pipecr restore -D DIR [-d]`: bring a dumped process back, with its PID, and (by
//! default) wait for it like a shell waits for a job.
//!
//! Only what [`pipecr::restore::process`] can restore is accepted: a tree of
//! processes (threads included) whose descriptors are all files they can reopen by
//! themselves (no pipe or socket to the outside). Anything else is refused before a
//! process is created. An image dumped without `--read-handlers` is restored with
//! default signal handlers and no interval timers, after a warning on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use pipecr::restore::process as restore_process;
use pipecr_image::{Image, proto};

/// Restore a dumped process (with the same PID) and wait for it.
///
/// Today: a tree of processes (threads included) whose descriptors are files, FIFOs and
/// devices they can reopen by themselves. Prints `restored pid N` (the root) once they
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
    restore_process::check_tree(&tree, sid.as_raw(), pgid.as_raw())?;
    if let Some(p) = tree.iter().find(|p| restore_process::pid_in_use(p.pid())) {
        bail!(
            "pid {} is in use by another process; nothing was restored",
            p.pid()
        );
    }
    if tree.iter().any(|p| !p.core.handlers_read) {
        eprintln!(
            "pipecr: warning: signal handlers and interval timers were not saved (dump without \
             --read-handlers): restored with defaults"
        );
        if tree
            .iter()
            .any(|p| !p.core.handlers_read && p.core.threads.len() > 1)
        {
            eprintln!(
                "pipecr: warning: nor were the threads' clear_child_tid addresses: joining a \
                 restored thread that exits (pthread_join) will wait forever"
            );
        }
    }
    let child = restore_process::restore_tree(&args.dir, &image, &tree)
        .with_context(|| format!("restore of pid {pid} failed; nothing was left running"))?;
    // One line once the process runs: what a caller waits for (the process does not
    // share our stdout, so this line is the only thing on it until we exit).
    println!("restored pid {pid}");
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        match nix_wait(child.as_raw()) {
            Ok(Some(code)) => return Ok(ExitCode::from(code)),
            Ok(None) => continue,
            Err(e) => return Err(e).with_context(|| format!("waiting for pid {pid}")),
        }
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
