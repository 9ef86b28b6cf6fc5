//! `pipecr dump -t PID -D DIR [--leave-running]`: save a live process tree (memory,
//! registers, descriptors, open files, pipe contents) into a new image directory, then
//! kill the tree or let it run on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipecr::dump::DumpStats;
use pipecr::files::DumpOptions;
use pipecr_image::{Image, proto};
use serde_json::json;

use crate::logging::Logging;
use crate::{format, outcome};

/// Save a running process tree into an image directory.
///
/// The tree under PID (all descendants, all threads) is stopped with ptrace and saved:
/// memory, registers, signals, descriptors, open files and the bytes in its pipes. After
/// a successful dump the tree is killed while still stopped (so `pipecr restore` carries
/// on exactly where it stopped); with --leave-running it is resumed exactly as it was.
/// On any failure the tree is resumed untouched and no image is left.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The root of the tree to dump.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    pid: i32,
    /// The image directory to create; it may exist if it is empty.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    /// Resume the tree after the dump instead of killing it.
    #[arg(long)]
    leave_running: bool,
    /// Largest unlinked file or memfd whose contents are copied into the image.
    #[arg(long, value_name = "BYTES", default_value_t = DumpOptions::default().max_inline_file)]
    max_inline_file: u64,
    /// Accepted for compatibility: signal handlers and the rest are saved by default.
    #[arg(long, hide = true, conflicts_with = "no_inject")]
    read_handlers: bool,
    /// Inject no syscall into the tree, so that a dump killed at any moment leaves every
    /// thread with its own registers and signal mask (docs/INJECTION.md). Loses what
    /// only an injected syscall can read: signal handlers (a restored process gets
    /// default dispositions, so a signal it caught now kills it), interval timers
    /// (setitimer: not re-armed), alternate signal stacks and each thread's
    /// clear_child_tid (pthread_join on a restored thread that exits waits forever).
    #[arg(long, conflicts_with = "snapshot")]
    no_inject: bool,
    /// With --leave-running: fork a copy-on-write snapshot of each process (by injecting
    /// a fork: if pipecr is killed during that step the process is killed) and read its
    /// memory after the tree runs again, so the tree is stopped for milliseconds whatever
    /// its size. Processes with shared memory, MADV_DONTFORK/WIPEONFORK areas or seccomp
    /// are read while stopped, into memory, and written after the tree resumes.
    #[arg(long, requires = "leave_running")]
    snapshot: bool,
    /// Dump an inotify instance that holds queued, unread events without those events
    /// (without this flag such a dump is refused: the events cannot be read without
    /// consuming them). The instance and its watches are saved; the restored process never
    /// reads the queued events, so it never learns of the changes to watched files they
    /// reported. The live tree keeps them (with --leave-running it still reads them). Each
    /// instance is named once on stdout: "pid P fd F: dropped N bytes of queued inotify
    /// events".
    #[arg(long)]
    drop_inotify_events: bool,
    /// Dump a netlink socket that holds queued, unread messages without them (without
    /// this flag such a dump is refused: they cannot be read without consuming them, nor
    /// queued again as coming from the kernel). The socket, its port id, groups and
    /// options are saved; the restored process never reads those answers or
    /// notifications. The live tree keeps them. Each socket is named once on stdout:
    /// "pid P fd F: dropped queued messages of a ... netlink socket (N bytes of receive
    /// buffer)".
    #[arg(long)]
    drop_netlink_messages: bool,
    /// Print one JSON object on stdout instead of the lines for people: the outcome, the
    /// PIDs saved, the stats and, on failure, the error's class, code and the PID/fd/kind
    /// concerned (docs/CLI-JSON.md).
    #[arg(long)]
    pub json: bool,
}

/// What a dump with --no-inject did not save, as it says once.
const NOT_SAVED: &str = "not saved (--no-inject): signal handlers, interval timers, alternate \
     signal stacks, threads' clear_child_tid, securebits and parent-death signals, child \
     subreapers, waitpid reports not yet collected; a restore gives the processes defaults";

/// Dumps the tree and prints what was saved.
pub fn run(args: Args, logging: &Logging) -> anyhow::Result<ExitCode> {
    let options = DumpOptions {
        max_inline_file: args.max_inline_file,
        read_handlers: !args.no_inject,
        leave_running: args.leave_running,
        snapshots: args.snapshot,
        // What cannot be forked is read while stopped: into memory, to be written later.
        write_behind: args.snapshot,
        drop_inotify_events: args.drop_inotify_events,
        drop_netlink_messages: args.drop_netlink_messages,
    };
    let stats = pipecr::dump::dump_tree(args.pid, &args.dir, &options).with_context(|| {
        format!(
            "dump of pid {} failed; the tree was resumed untouched",
            args.pid
        )
    })?;
    logging.finish_progress();
    if args.json {
        outcome::print_json(&to_json(&args, &stats, logging));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "dumped pid {} into {}: {} process(es), {} thread(s), {} descriptor(s), {} open file(s), \
         {} pipe(s) holding {}",
        args.pid,
        stats.dir.display(),
        stats.processes,
        stats.threads,
        stats.descriptors,
        stats.open_files,
        stats.pipes,
        format::bytes(stats.pipe_bytes),
    );
    if args.no_inject {
        println!("{NOT_SAVED}");
    }
    // Each open file saved without part of its state, as asked: "pid P fd F: dropped ...".
    for dropped in &stats.dropped {
        println!("{dropped}");
    }
    // Each descriptor that led outside the tree: restore needs a source for it.
    for end in &stats.external {
        for (pid, fd) in &end.holders {
            println!("external: pid {pid} fd {fd}: {}", end.what);
        }
    }
    if stats.snapshots > 0 {
        println!(
            "memory of {} process(es) read from copy-on-write snapshots after the tree resumed",
            stats.snapshots
        );
    }
    if stats.ipc_objects > 0 {
        println!(
            "System V IPC: {} object(s) saved; {}",
            stats.ipc_objects,
            if args.leave_running {
                "left in place, so a restore on this system needs them removed first"
            } else {
                "removed with the tree, for a restore to create them again with their ids"
            }
        );
    }
    println!(
        "tree stopped for {:.1} ms; dump took {:.1} ms; {}",
        stats.frozen.as_secs_f64() * 1e3,
        stats.total.as_secs_f64() * 1e3,
        if args.leave_running {
            "the tree runs on"
        } else {
            "the tree was killed"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The `--json` object of a successful dump (docs/CLI-JSON.md).
fn to_json(args: &Args, stats: &DumpStats, logging: &Logging) -> serde_json::Value {
    // The PIDs as the image holds them (tree order), and the stats record as written.
    let image = Image::open(&stats.dir).ok();
    let pids: Vec<i32> = image
        .as_ref()
        .and_then(|i| i.read_records::<proto::Process>(pipecr_image::TREE).ok())
        .map(|p| p.iter().map(|p| p.pid).collect())
        .unwrap_or_default();
    let record = image
        .as_ref()
        .and_then(|i| i.read_records::<proto::DumpStats>(pipecr_image::STATS).ok())
        .and_then(|r| r.into_iter().next());
    let mut stats_json = record
        .as_ref()
        .map(dump_stats_json)
        .unwrap_or_else(|| json!({}));
    // What only the end of the dump knows: the whole stop, the whole dump.
    stats_json["frozen_ms"] = json!(stats.frozen.as_secs_f64() * 1e3);
    stats_json["total_ms"] = json!(stats.total.as_secs_f64() * 1e3);
    stats_json["stages"] = stats
        .stages
        .iter()
        .map(|(name, took)| json!({"name": name, "ms": took.as_secs_f64() * 1e3}))
        .collect();
    json!({
        "command": "dump",
        "outcome": "ok",
        "exit_code": 0,
        "root_pid": args.pid,
        "pids": pids,
        "dir": stats.dir.display().to_string(),
        "left_running": args.leave_running,
        // False after --no-inject: no signal handlers, interval timers, alternate stacks
        // or clear_child_tid in the image.
        "handlers_saved": !args.no_inject,
        "stats": stats_json,
        "external": stats.external.iter().flat_map(|end| end.holders.iter().map(|(pid, fd)| {
            json!({"pid": pid, "fd": fd, "what": end.what})
        })).collect::<Vec<_>>(),
        "dropped": stats.dropped.iter().map(|d| {
            json!({"pid": d.pid, "fd": d.fd, "what": d.what})
        }).collect::<Vec<_>>(),
        "log_file": logging.log_file.as_ref().map(|p| p.display().to_string()),
    })
}

/// A `stats.img` record as JSON (times in milliseconds).
pub fn dump_stats_json(s: &proto::DumpStats) -> serde_json::Value {
    json!({
        "frozen_ms": outcome::ms(s.frozen_ns),
        "total_ms": outcome::ms(s.total_ns),
        "memory_read_ms": outcome::ms(s.memory_read_ns),
        "processes": s.processes,
        "threads": s.threads,
        "descriptors": s.descriptors,
        "open_files": s.open_files,
        "pipes": s.pipes,
        "pipe_bytes": s.pipe_bytes,
        "pages_stored": s.pages_stored,
        "pages_reused": s.pages_reused,
        "pages_zero": s.pages_zero,
        "page_bytes": s.page_bytes,
        "snapshots": s.snapshots,
        "stages": s.stages.iter().map(|t| json!({"name": t.name, "ms": outcome::ms(t.ns)})).collect::<Vec<_>>(),
    })
}
