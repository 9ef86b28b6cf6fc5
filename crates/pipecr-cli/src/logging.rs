//! Logs and progress: the `-v`/`-q`/`--log-file` options, `RUST_LOG`, and the progress
//! bar, all fed by the library's `tracing` events.
//!
//! - stderr: warnings only by default (the library emits none, so a default run prints
//!   what it always printed); `-v` info, `-vv` debug, `-vvv` trace; `-q` nothing. When
//!   `RUST_LOG` is set it decides instead (`RUST_LOG=pipecr=debug`).
//! - `--log-file PATH`: appended to, at debug level (trace with `-vvv`, or what
//!   `RUST_LOG` says). It is written whether or not stderr is open.
//! - progress: the library's `pipecr::progress` events (bytes expected, bytes moved) drive
//!   a bar on stderr, only when stderr is a terminal, not with `-q`, and only for work
//!   of [`PROGRESS_THRESHOLD`] or more (`PIPECR_PROGRESS_MIN=BYTES` sets another).
//!
//! With `-q` and no `--log-file` no subscriber is installed at all: logging is off.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::{Layer, Registry};

use pipecr::mem::PROGRESS;

/// Work smaller than this (bytes) shows no progress bar: it is over before one helps.
pub const PROGRESS_THRESHOLD: u64 = 256 << 20;

/// [`PROGRESS_THRESHOLD`], or the byte count in `PIPECR_PROGRESS_MIN` (tests show the bar
/// for small work that way).
fn threshold() -> u64 {
    std::env::var("PIPECR_PROGRESS_MIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROGRESS_THRESHOLD)
}

/// The options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log more on stderr: -v what is done, -vv each process and open file, -vvv
    /// everything. RUST_LOG, when set, decides instead (e.g. RUST_LOG=pipecr=debug).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log nothing on stderr and show no progress bar (errors are still printed).
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Append a debug-level log to PATH (trace with -vvv), also when stderr is closed. A
    /// failure message then names it.
    #[arg(long, global = true, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

/// The logging set up for this run.
pub struct Logging {
    /// The log file, when one is written.
    pub log_file: Option<PathBuf>,
    bar: Option<Arc<Mutex<Option<ProgressBar>>>>,
}

impl Logging {
    /// Removes the progress bar, if one is shown: before the result is printed.
    pub fn finish_progress(&self) {
        if let Some(bar) = &self.bar
            && let Ok(mut bar) = bar.lock()
            && let Some(bar) = bar.take()
        {
            bar.finish_and_clear();
        }
    }

    /// Appends the failure `message` to the log file (if any), so the log ends with
    /// what the user was told.
    pub fn log_failure(&self, message: &str) {
        if let Some(path) = &self.log_file
            && let Ok(mut f) = OpenOptions::new().append(true).open(path)
        {
            let _ = writeln!(f, "ERROR pipecr: {message}");
        }
    }
}

fn level(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// `RUST_LOG` when set, `default` otherwise; never the progress events, which are not
/// log lines.
fn filter(default: LevelFilter) -> EnvFilter {
    let base = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec,
        _ => default.to_string(),
    };
    EnvFilter::try_new(format!("{base},{PROGRESS}=off"))
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},{PROGRESS}=off")))
}

/// Installs the subscriber `args` ask for. `progress`: whether this command may show a
/// progress bar.
pub fn init(args: &LogArgs, progress: bool) -> anyhow::Result<Logging> {
    let file = match &args.log_file {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?,
        ),
        None => None,
    };
    let stderr_tty = std::io::stderr().is_terminal();
    let bar = (progress && !args.quiet && stderr_tty).then(|| Arc::new(Mutex::new(None)));
    if args.quiet && file.is_none() {
        return Ok(Logging {
            log_file: None,
            bar: None,
        });
    }
    let stderr_layer = (!args.quiet).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(stderr_tty)
            .with_filter(filter(level(args.verbose)))
    });
    let file_layer = file.map(|f: File| {
        tracing_subscriber::fmt::layer()
            .with_writer(Mutex::new(f))
            .with_ansi(false)
            .with_filter(filter(level(args.verbose.max(2))))
    });
    let progress_layer = bar
        .clone()
        .map(|bar| ProgressLayer { bar }.with_filter(filter_fn(|meta| meta.target() == PROGRESS)));
    let subscriber = Registry::default()
        .with(stderr_layer)
        .with(file_layer)
        .with(progress_layer);
    tracing::subscriber::set_global_default(subscriber).context("cannot install the logger")?;
    Ok(Logging {
        log_file: args.log_file.clone(),
        bar,
    })
}

/// Turns `pipecr::progress` events into a bar: `total` creates it (when large enough),
/// `done` advances it. Draws only on a terminal; spawns no thread (a restore must stay
/// single-threaded).
struct ProgressLayer {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

#[derive(Default)]
struct Amounts {
    total: Option<u64>,
    done: Option<u64>,
}

impl Visit for Amounts {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "total" => self.total = Some(value),
            "done" => self.done = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for ProgressLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut amounts = Amounts::default();
        event.record(&mut amounts);
        let Ok(mut bar) = self.bar.lock() else {
            return;
        };
        if let Some(total) = amounts.total {
            if let Some(old) = bar.take() {
                old.finish_and_clear();
            }
            if total >= threshold() {
                let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ) {
                    b.set_style(style);
                }
                *bar = Some(b);
            }
        }
        if let (Some(done), Some(b)) = (amounts.done, bar.as_ref()) {
            b.inc(done);
        }
    }
}
