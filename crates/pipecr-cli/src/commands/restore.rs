//! `pipecr restore -D DIR [-d]`: bring a dumped process back, with its PID, and (by
//! default) wait for it like a shell waits for a job.
//!
//! Only what [`pipecr::restore::process`] can restore is accepted: one single-threaded
//! process whose descriptors are all files it can reopen by itself (no pipe or socket to
//! the outside). Anything else is refused before a process is created.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use pipecr::restore::process as restore_process;
use pipecr_image::{Image, proto};

/// Restore a dumped process (with the same PID) and wait for it.
///
/// Today: one single-threaded process whose descriptors are files, FIFOs and devices it
/// can reopen by itself. Prints `restored pid N` once it runs. The process comes back as a child of this command, which stays
/// in the foreground until it exits and exits with its status (128 + signal if killed).
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
    let processes: Vec<proto::Process> = image
        .read_records(pipecr_image::TREE)
        .context("cannot read the process tree")?;
    let [process] = processes.as_slice() else {
        bail!(
            "the image holds {} processes; restoring more than one process is not supported yet",
            processes.len()
        );
    };
    let pid = process.pid;
    let saved = restore_process::load(&image, pid)?;
    let sid = rustix::process::getsid(None).context("getsid")?;
    let pgid = rustix::process::getpgrp();
    restore_process::check_supported(
        &saved,
        sid.as_raw_nonzero().get(),
        pgid.as_raw_nonzero().get(),
    )?;
    if restore_process::pid_in_use(pid) {
        bail!("pid {pid} is in use by another process; nothing was restored");
    }
    let child = restore_process::restore(&args.dir, &image, &saved)
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
