//! `pipecr completions SHELL` and `pipecr man`: shell completions and the man page,
//! generated from the clap definition of the command line, so they never drift from it.
//!
//! Installed with (README):
//! `pipecr completions bash > /usr/share/bash-completion/completions/pipecr` and
//! `pipecr man > /usr/local/share/man/man1/pipecr.1`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

/// Print a shell completion script for pipecr on stdout.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Print pipecr's man page (roff, section 1) on stdout.
#[derive(Debug, clap::Args)]
pub struct ManArgs {}

/// Writes the completion script of `cmd` for the shell asked.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "pipecr", &mut out);
    out.flush().context("writing the completions")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the man page of `cmd`.
pub fn man(_args: ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .context("writing the man page")?;
    out.flush().context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}
