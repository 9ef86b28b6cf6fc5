//! `pipecr check`: probe the kernel features and capabilities pipecr relies on.

use std::process::ExitCode;

use pipecr::check::{all_required_ok, run_checks};
use pipecr::diagnose::ErrorClass;
use serde_json::json;

/// Probe the kernel features and capabilities pipecr needs, one line each; exits with 6
/// when a required one is missing.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object on stdout: the outcome and every check (docs/CLI-JSON.md).
    #[arg(long)]
    pub json: bool,
}

/// Prints one line per check (`ok`, `MISSING` for a required feature, `absent` for an
/// optional one).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let checks = run_checks();
    let ok = all_required_ok(&checks);
    let missing: Vec<_> = checks
        .iter()
        .filter(|c| c.required && !c.is_ok())
        .map(|c| c.name)
        .collect();
    let code = if ok {
        0
    } else {
        ErrorClass::Environment.exit_code()
    };
    if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "required": c.required,
                    "ok": c.is_ok(),
                    "detail": c.detail(),
                })
            })
            .collect();
        let mut out = json!({
            "command": "check",
            "outcome": if ok { "ok" } else { "error" },
            "exit_code": code,
            "checks": list,
        });
        if !ok {
            out["error"] = json!({
                "class": ErrorClass::Environment.name(),
                "code": "missing_feature",
                "exit_code": code,
                "message": format!("required feature(s) missing: {}", missing.join(", ")),
                "missing": missing,
            });
        }
        println!("{out}");
        return Ok(ExitCode::from(code));
    }
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
    if !ok {
        eprintln!("error: required feature(s) missing: {}", missing.join(", "));
    }
    Ok(ExitCode::from(code))
}
