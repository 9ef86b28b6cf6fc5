//! `pipecr`: checkpoint and restore Linux processes and their pipes, from user space.
//!
//! This file only parses the command line and dispatches; each subcommand lives in its own
//! module under `commands/`. Every error ends up here and is printed as one line.

mod commands;
mod format;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Checkpoint and restore Linux processes and their pipes, from user space.
#[derive(Debug, Parser)]
#[command(name = "pipecr", version)]
struct Cli {
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
    #[command(hide = true)]
    DemoStage(commands::demo_stage::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Show(_) | Command::Peek(_) | Command::Check(_)
    ) {
        // Commands that only print: a reader that goes away (`| head`) ends them
        // quietly. Not the others: a dump or restore must never die of a pipe.
        let _ = pipecr::sys::signal::default_disposition(nix::sys::signal::Signal::SIGPIPE as i32);
    }
    let result = match cli.command {
        Command::Check(args) => commands::check::run(args),
        Command::Dump(args) => commands::dump::run(args),
        Command::Peek(args) => commands::peek::run(args),
        Command::Restore(args) => commands::restore::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::DemoStage(args) => commands::demo_stage::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
