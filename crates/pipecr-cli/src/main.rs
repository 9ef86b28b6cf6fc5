//! `pipecr`: checkpoint and restore Linux processes and their pipes, from user space.
//!
//! This file only parses the command line, sets up logging and dispatches; each
//! subcommand lives in its own module under `commands/`. Every error ends up here: it is
//! printed as one line, mapped to an exit code ([`outcome::diagnose`], docs/CLI-JSON.md)
//! and, with `--json`, given as a JSON object on stdout.

mod commands;
mod format;
mod logging;
mod outcome;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use pipecr::diagnose::ErrorClass;

/// Checkpoint and restore Linux processes and their pipes, from user space.
///
/// Exit codes: 0 success; 1 internal error; 2 bad arguments; 3 unsupported (the dump or
/// restore refused something pipecr cannot save or bring back; the tree runs on
/// untouched); 4 damaged image; 5 conflict (a PID in use, a missing or changed file, a
/// descriptor that needs --inherit-fd, a process traced by another tracer); 6 missing
/// privilege or kernel feature. `pipecr restore` without -d exits, once the restored
/// tree has run, with its root's status.
#[derive(Debug, Parser)]
#[command(name = "pipecr", version)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(commands::check::Args),
    Dump(commands::dump::Args),
    Peek(commands::peek::Args),
    Restore(commands::restore::Args),
    Show(commands::show::Args),
    Demo(commands::demo::Args),
    Completions(commands::generate::CompletionsArgs),
    Man(commands::generate::ManArgs),
    #[command(hide = true)]
    DemoStage(commands::demo_stage::Args),
}

impl Command {
    /// The subcommand's name and whether it answers in JSON.
    fn name_and_json(&self) -> (&'static str, bool) {
        match self {
            Command::Check(a) => ("check", a.json),
            Command::Dump(a) => ("dump", a.json),
            Command::Restore(a) => ("restore", a.json),
            Command::Peek(_) => ("peek", false),
            Command::Show(_) => ("show", false),
            Command::Demo(_) => ("demo", false),
            Command::Completions(_) => ("completions", false),
            Command::Man(_) => ("man", false),
            Command::DemoStage(_) => ("demo-stage", false),
        }
    }
}

/// `--version`: the tool's version and the image format versions it reads and writes.
fn long_version() -> String {
    format!(
        "{}\nimage format: writes {}.{}, reads {}.x (any minor version of major {})",
        env!("CARGO_PKG_VERSION"),
        pipecr_image::FORMAT_MAJOR,
        pipecr_image::FORMAT_MINOR,
        pipecr_image::FORMAT_MAJOR,
        pipecr_image::FORMAT_MAJOR,
    )
}

/// The clap definition of the whole command line (completions and the man page are
/// generated from it).
pub fn cli_command() -> clap::Command {
    Cli::command().long_version(long_version())
}

fn main() -> ExitCode {
    // clap exits 2 on a bad command line (0 for --help and --version).
    let cli = match cli_command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let (name, json) = cli.command.name_and_json();
    if matches!(
        cli.command,
        Command::Show(_)
            | Command::Peek(_)
            | Command::Check(_)
            | Command::Completions(_)
            | Command::Man(_)
    ) {
        // Commands that only print: a reader that goes away (`| head`) ends them
        // quietly. Not the others: a dump or restore must never die of a pipe.
        let _ = pipecr::sys::signal::default_disposition(nix::sys::signal::Signal::SIGPIPE as i32);
    }
    let progress = matches!(cli.command, Command::Dump(_) | Command::Restore(_));
    let logging = match logging::init(&cli.log, progress) {
        Ok(l) => l,
        Err(err) => {
            let err =
                outcome::Refusal::err(ErrorClass::BadArguments, "log_file", format!("{err:#}"));
            return fail(name, json, &err, None);
        }
    };
    let result = match cli.command {
        Command::Check(args) => commands::check::run(args),
        Command::Dump(args) => commands::dump::run(args, &logging),
        Command::Peek(args) => commands::peek::run(args),
        Command::Restore(args) => commands::restore::run(args, &logging),
        Command::Show(args) => commands::show::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Completions(args) => commands::generate::completions(args, cli_command()),
        Command::Man(args) => commands::generate::man(args, cli_command()),
        Command::DemoStage(args) => commands::demo_stage::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            logging.finish_progress();
            fail(name, json, &err, Some(&logging))
        }
    }
}

/// Reports a failure (one line on stderr, the log's path when there is a log, the JSON
/// object with --json) and returns its exit code.
fn fail(
    name: &str,
    json: bool,
    err: &anyhow::Error,
    logging: Option<&logging::Logging>,
) -> ExitCode {
    let d = outcome::diagnose(err);
    let message = format!("{err:#}");
    eprintln!("error: {message}");
    let log = logging.and_then(|l| l.log_file.as_deref());
    if let Some(l) = logging {
        l.log_failure(&message);
    }
    if let Some(path) = log {
        eprintln!("pipecr: the log of this run is in {}", path.display());
    }
    if json {
        outcome::print_json(&outcome::failure_json(name, &d, &message, log));
    }
    ExitCode::from(d.class.exit_code())
}
