//! How a run ends, for programs: the exit code of a failure and the `--json` object
//! (docs/CLI-JSON.md). The library's errors are mapped by [`pipecr::diagnose`]; the few
//! refusals the command makes itself are a [`Refusal`] with their own class and code.

use std::fmt;
use std::path::Path;

use pipecr::diagnose::{Diagnosis, ErrorClass};
use serde_json::{Value, json};

/// A refusal made by the command itself (not by the library), with its class and code.
#[derive(Debug)]
pub struct Refusal {
    /// What kind of failure.
    pub class: ErrorClass,
    /// Its stable code.
    pub code: &'static str,
    /// What the user is told.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// A refusal as an `anyhow::Error`.
    pub fn err(class: ErrorClass, code: &'static str, message: impl Into<String>) -> anyhow::Error {
        Refusal {
            class,
            code,
            message: message.into(),
        }
        .into()
    }
}

/// The diagnosis of a failed run: of the first error in the chain that says what it is.
pub fn diagnose(err: &anyhow::Error) -> Diagnosis {
    for cause in err.chain() {
        if let Some(r) = cause.downcast_ref::<Refusal>() {
            return Diagnosis {
                class: r.class,
                code: r.code,
                pid: None,
                tid: None,
                fd: None,
                kind: None,
                file: None,
            };
        }
        if let Some(d) = pipecr::diagnose::diagnose_one(cause) {
            return d;
        }
    }
    pipecr::diagnose::diagnose(err.as_ref())
}

/// The `error` member of a failure's JSON object.
pub fn error_json(d: &Diagnosis, message: &str) -> Value {
    json!({
        "class": d.class.name(),
        "code": d.code,
        "exit_code": d.class.exit_code(),
        "message": message,
        "pid": d.pid,
        "tid": d.tid,
        "fd": d.fd,
        "kind": d.kind,
        "file": d.file,
    })
}

/// The JSON object of a failed `command`.
pub fn failure_json(command: &str, d: &Diagnosis, message: &str, log: Option<&Path>) -> Value {
    json!({
        "command": command,
        "outcome": "error",
        "exit_code": d.class.exit_code(),
        "error": error_json(d, message),
        "log_file": log.map(|p| p.display().to_string()),
    })
}

/// Prints one JSON object on one line of stdout.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// Nanoseconds as milliseconds, for JSON and people.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
