//! `pipecr check`: probe the kernel features and capabilities pipecr relies on.

use std::process::ExitCode;

use pipecr::check::{all_required_ok, run_checks};

/// Probe the kernel features and capabilities pipecr needs, one line each; exits non-zero
/// when a required one is missing.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints one line per check (`ok`, `MISSING` for a required feature, `absent` for an
/// optional one).
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let checks = run_checks();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &checks {
        let word = match (c.is_ok(), c.required) {
            (true, _) => "ok",
            (false, true) => "MISSING",
            (false, false) => "absent",
        };
        println!(
            "{word:<8}{:<width$}  {}",
            format!("{}:", c.name),
            c.detail(),
            width = width + 1
        );
    }
    if all_required_ok(&checks) {
        Ok(ExitCode::SUCCESS)
    } else {
        let missing: Vec<_> = checks
            .iter()
            .filter(|c| c.required && !c.is_ok())
            .map(|c| c.name)
            .collect();
        eprintln!("error: required feature(s) missing: {}", missing.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
