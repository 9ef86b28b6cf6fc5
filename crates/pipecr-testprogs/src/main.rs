//! `pipecr-testprog`: self-checking test programs for pipecr, zdtm style. Each scenario
//! builds a state (open files, pipes, FIFOs, sockets, children holding some of them),
//! lets pipecr dump it, and checks that state twice: in place after the dump (the dump
//! must leave it untouched) and in a fresh process whose descriptor table was rebuilt
//! from the image.
//!
//! # Protocol
//!
//! `pipecr-testprog SCENARIO setup [--dir DIR] [ARGS...]`
//!
//! 1. Builds the state in the root and in every child (children are forked, or cloned
//!    with `CLONE_FILES` where the scenario says so). Scenario descriptors sit at fixed
//!    numbers from 10 up; every process ends with exactly 0, 1, 2 and its scenario
//!    descriptors. Files and FIFOs go into `DIR` (a temporary directory if none is given).
//!    `ARGS` are the scenario's own (the external-pipe scenario takes two paths).
//! 2. Each child says it is ready with one byte on a pipe and closes it; only when all
//!    are (the root reads until end-of-file, so no child still holds that pipe), the root
//!    writes one line to stdout: `ready <root pid> [<child pid>...]\n`. Stdout is the
//!    harness's pipe and part of the tree's state like any other descriptor.
//! 3. Every process blocks reading stdin until end-of-file (the harness closes it after
//!    the dump). A read interrupted with EINTR counts as a difference.
//! 4. Every process checks its state: descriptor numbers, flags, close-on-exec bits,
//!    positions, sharing (kcmp), pipe capacities and contents (read them all), and prints
//!    each difference to stderr. The root waits for each child by pid and exits 0 when
//!    nothing differed anywhere, 1 otherwise.
//!
//! `pipecr-testprog SCENARIO verify --image DIR --pid PID`
//!
//! A fresh process: it moves its report channel (a copy of stderr) to descriptor 4000,
//! calls `pipecr::restore::fdtable::rebuild(DIR, PID)`, which replaces 0, 1, 2 and
//! installs the saved descriptors, then runs the same checks as step 4 for the role PID
//! had (the root, or the child that named itself `tp-child-N` in `/proc/PID/comm`). Each
//! difference goes to the report channel; exit 0 when there is none, 1 otherwise.
//!
//! `pipecr-testprog list` prints the scenario names.
//!
//! Exit code 2 means the program itself could not run (bad arguments, setup failed).

mod common;
mod descriptors;
mod epolls;
mod events;
mod fifos;
mod files;
mod pipes;
mod sockets;
mod terminals;

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::common::Scenario;

/// Every scenario, by name.
static SCENARIOS: &[(&str, &dyn Scenario)] = &[
    ("offsets", &files::Offsets),
    ("cloexec", &descriptors::Cloexec),
    ("append", &files::Append),
    ("reopen", &pipes::Reopen),
    ("big-pipes", &pipes::BigPipes),
    ("fifos", &fifos::Fifos),
    ("sockets", &sockets::Socketpairs),
    ("many-pipes", &pipes::ManyPipes),
    ("misc-files", &files::MiscFiles),
    ("packets", &pipes::Packets),
    ("external", &pipes::External),
    ("clone-files", &descriptors::CloneFiles),
    ("perf-event", &pipes::PerfEvent),
    ("epolls", &epolls::Epolls),
    ("terminal", &terminals::Terminal),
    ("event-fds", &events::EventFds),
];

const USAGE: &str = "usage: pipecr-testprog SCENARIO setup [--dir DIR] [ARGS...]\n       \
                     pipecr-testprog SCENARIO verify --image DIR --pid PID\n       \
                     pipecr-testprog list";

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pipecr-testprog: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run() -> anyhow::Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        bail!("{USAGE}");
    };
    if name == "list" {
        for (name, _) in SCENARIOS {
            println!("{name}");
        }
        return Ok(0);
    }
    let Some(&(_, scenario)) = SCENARIOS.iter().find(|(n, _)| n == name) else {
        bail!("unknown scenario {name:?} (see `pipecr-testprog list`)");
    };
    match args.get(1).map(String::as_str) {
        Some("setup") => {
            let mut rest = args[2..].to_vec();
            let mut dir = None;
            if rest.first().map(String::as_str) == Some("--dir") {
                let Some(d) = rest.get(1) else {
                    bail!("--dir needs a directory");
                };
                dir = Some(PathBuf::from(d));
                rest.drain(..2);
            }
            common::run_setup(scenario, dir, rest)
        }
        Some("verify") => {
            let (mut image, mut pid) = (None, None);
            let mut it = args[2..].iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--image" => image = it.next().map(PathBuf::from),
                    "--pid" => {
                        pid = Some(
                            it.next()
                                .context("--pid needs a value")?
                                .parse::<i32>()
                                .context("--pid")?,
                        )
                    }
                    other => bail!("unexpected argument {other:?}\n{USAGE}"),
                }
            }
            let (Some(image), Some(pid)) = (image, pid) else {
                bail!("verify needs --image and --pid\n{USAGE}");
            };
            common::run_verify(scenario, &image, pid)
        }
        _ => bail!("{USAGE}"),
    }
}
