//! `pipecr peek -t PID FD`: show what a live process's pipe holds, without stopping the
//! process or consuming anything.
//!
//! The descriptor is fetched with `pidfd_getfd(2)` (a new descriptor in our process for
//! the same open file) and checkpointed with `pipecr::pipe::checkpoint`, which copies the
//! pending bytes with `tee(2)`. The process keeps running and its pipe keeps its bytes.

use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use pipecr::pipe::{End, PipeError, PipeImage};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};

use crate::format;

/// Bytes of the pending data shown in the summary.
const PREVIEW_BYTES: usize = 256;

/// Show the bytes waiting in a process's pipe, without stopping the process or consuming
/// them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The process that holds the pipe.
    #[arg(short = 't', long = "tree", value_name = "PID",
          value_parser = clap::value_parser!(i32).range(1..))]
    pid: i32,
    /// The descriptor number in that process (either end of a pipe, or a FIFO).
    #[arg(value_name = "FD", value_parser = clap::value_parser!(i32).range(0..))]
    fd: i32,
    /// Write exactly the pending bytes to stdout, and nothing else.
    #[arg(long)]
    raw: bool,
}

/// Fetches the descriptor, checkpoints its pipe, and prints a summary or the raw bytes.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (pid, fd) = (args.pid, args.fd);
    let file = fetch(pid, fd)?;
    let image = pipecr::pipe::peek(file.as_fd()).map_err(|e| match e {
        PipeError::NotAPipe { kind, .. } => {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| format!(" ({})", p.display()))
                .unwrap_or_default();
            anyhow!("pid {pid} fd {fd} is a {kind}{target}, not a pipe or FIFO")
        }
        other => {
            anyhow::Error::new(other).context(format!("pid {pid} fd {fd}: cannot read the pipe"))
        }
    })?;
    if args.raw {
        let mut out = std::io::stdout().lock();
        out.write_all(&image.data)
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
    } else {
        print_summary(pid, fd, &image);
    }
    Ok(ExitCode::SUCCESS)
}

/// `pidfd_open(pid)` + `pidfd_getfd(fd)`, with errors that name the pid and fd.
fn fetch(pid: i32, fd: i32) -> anyhow::Result<OwnedFd> {
    let Some(target) = Pid::from_raw(pid).filter(|_| pid > 0) else {
        bail!("no process with pid {pid}");
    };
    let pidfd = pidfd_open(target, PidfdFlags::empty()).map_err(|e| match e {
        Errno::SRCH | Errno::INVAL => anyhow!("no process with pid {pid}"),
        e => anyhow!("pid {pid}: pidfd_open failed: {e}"),
    })?;
    if fd < 0 {
        bail!("pid {pid} has no fd {fd}");
    }
    pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()).map_err(|e| match e {
        Errno::BADF => anyhow!("pid {pid} has no fd {fd}"),
        Errno::SRCH => anyhow!("pid {pid} exited before its fd {fd} could be read"),
        Errno::PERM | Errno::ACCESS => anyhow!(
            "permission denied: cannot take fd {fd} of pid {pid} (pidfd_getfd needs ptrace \
             access: the same user, or CAP_SYS_PTRACE)"
        ),
        e => anyhow!("pid {pid} fd {fd}: pidfd_getfd failed: {e}"),
    })
}

fn print_summary(pid: i32, fd: i32, image: &PipeImage) {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("pipe:[{}]", image.inode));
    println!("pid {pid} fd {fd}: {target}");
    println!("  pipe inode:    {}", image.inode);
    for end in &image.ends {
        let which = match end.end {
            End::Read => "read",
            End::Write => "write",
        };
        println!(
            "  end:           {which} ({})",
            format::open_flags(end.flags.bits())
        );
    }
    println!(
        "  pending:       {}",
        format::bytes(image.data.len() as u64)
    );
    println!(
        "  capacity:      {}",
        format::bytes(u64::from(image.capacity))
    );
    match &image.packets {
        Some(packets) => println!(
            "  packet mode:   yes, {} packet(s) {}",
            packets.len(),
            format::packet_list(packets)
        ),
        None => println!("  packet mode:   no"),
    }
    println!(
        "  preview (first {} bytes):",
        image.data.len().min(PREVIEW_BYTES)
    );
    for line in format::preview(&image.data, PREVIEW_BYTES, "    ") {
        println!("{line}");
    }
}
