//! What an operator or a program driving pipecr sees (issue 14): the log file naming the
//! failing pid and fd (also with stderr closed), `RUST_LOG` and `-v`, the `--json`
//! objects of dump, restore and check on success and failure, each exit code (1: a dump
//! into a full 64 KiB tmpfs; 5: a restore whose open file is gone), the stats
//! that `show` prints, completions that parse, the man page, `--version`.
//!
//! Trees: `sleep` with stdio on /dev/null (nothing leads outside it), and
//! `progs/refusee.c perf_event` (a child holding a perf_event fd at fd 10, which pipecr
//! cannot save). Nothing sleeps: the refusee says ready with a byte, dumped processes
//! are reaped before a restore.

mod common;

use std::fs::File;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{DEADLINE, KillOnDrop, PIPECR, build, capable, children, only_stdio};
use serde_json::Value;

fn pipecr(args: &[&str]) -> Output {
    Command::new(PIPECR)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The one JSON object on stdout.
fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `sleep 1000` with stdio on /dev/null and nothing else open.
fn sleeper() -> Child {
    only_stdio(&mut Command::new("sleep"))
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills and reaps a process that is not (or no longer) our child, once it is gone.
fn kill_restored(pid: i32) {
    common::kill(pid);
    common::reap(&[pid]);
    common::wait_until("the restored process to be gone", || {
        common::state(pid).is_none_or(|s| s == 'Z')
    });
}

#[test]
fn version_names_the_image_formats() {
    let out = pipecr(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = format!(
        "pipecr {}\nimage format: writes {}.{}, reads {}.x",
        env!("CARGO_PKG_VERSION"),
        pipecr_image::FORMAT_MAJOR,
        pipecr_image::FORMAT_MINOR,
        pipecr_image::FORMAT_MAJOR
    );
    assert!(text.starts_with(&want), "{text}");
}

#[test]
fn completions_are_generated_and_bash_parses_them() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _pipecr"),
        ("zsh", "#compdef pipecr"),
        ("fish", "complete -c pipecr"),
    ] {
        let out = pipecr(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {text}");
        // Every subcommand a user types, and the options added for operators (fish
        // names long options without their dashes: `-l log-file`).
        for word in ["dump", "restore", "log-file", "json"] {
            assert!(text.contains(word), "{shell} lacks {word}");
        }
        let file = dir.path().join(format!("pipecr.{shell}"));
        std::fs::write(&file, &text).unwrap();
        if shell == "bash" {
            let status = Command::new("bash").arg("-n").arg(&file).status().unwrap();
            assert!(status.success(), "bash -n {}", file.display());
        }
    }
}

#[test]
fn the_man_page_is_roff_naming_the_subcommands_and_exit_codes() {
    let out = pipecr(&["man"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(".TH pipecr 1"), "{text}");
    assert!(text.contains(".SH NAME"), "{text}");
    assert!(text.contains(".SH SYNOPSIS"), "{text}");
    for sub in ["dump", "restore", "show", "check", "completions"] {
        assert!(
            text.contains(&format!("pipecr\\-{sub}")),
            "no {sub}: {text}"
        );
    }
    assert!(text.contains("5 conflict"), "exit codes: {text}");
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = pipecr(&["dump", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(2));
    // A PID above any pid_max: no such process, a bad argument too.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = pipecr(&[
        "dump",
        "-t",
        "2000000000",
        "-D",
        img.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(v["command"], "dump");
    assert_eq!(v["outcome"], "error");
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["error"]["class"], "bad_arguments");
    assert_eq!(v["error"]["code"], "no_such_process");
    assert_eq!(v["error"]["pid"], 2000000000);
}

/// `refusee perf_event` started, its child ready: (root, child pid, its stdin).
fn perf_event_tree(exe: &Path) -> (Child, i32, std::process::ChildStdin, KillOnDrop) {
    let mut root = only_stdio(&mut Command::new(exe))
        .arg("perf_event")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let kill = KillOnDrop(vec![root.id() as i32]);
    let stdin = root.stdin.take().unwrap();
    let mut answers = File::from(OwnedFd::from(root.stdout.take().unwrap()));
    assert!(common::readable_within(&answers, DEADLINE), "no ready byte");
    let mut byte = [0u8];
    answers.read_exact(&mut byte).unwrap();
    assert_eq!(byte[0], b'R');
    let kids = children(root.id() as i32);
    assert_eq!(kids.len(), 1, "{kids:?}");
    (root, kids[0], stdin, kill)
}

#[test]
fn an_unsupported_fd_is_named_in_the_log_and_the_json_and_exits_3() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = build("refusee", dir.path()) else {
        return;
    };
    let (mut root, child, stdin, mut kill) = perf_event_tree(&exe);
    kill.0.push(child);
    let pid = root.id() as i32;
    let img = dir.path().join("img");
    let log = dir.path().join("dump.log");
    let out = Command::new(PIPECR)
        .args(["dump", "--leave-running", "--json", "--log-file"])
        .arg(&log)
        .args(["-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v = json_of(&out);
    assert_eq!(v["outcome"], "error");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["error"]["class"], "unsupported");
    assert_eq!(v["error"]["code"], "unsupported_file");
    assert_eq!(v["error"]["pid"], child);
    assert_eq!(v["error"]["fd"], 10);
    assert!(
        v["error"]["kind"].as_str().unwrap().contains("perf_event"),
        "{v}"
    );
    assert_eq!(v["log_file"], log.display().to_string());
    // stderr: the error, then where the log is.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: dump of pid {pid} failed")),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        format!("pipecr: the log of this run is in {}", log.display())
    );
    // The log: a debug line naming the process and the descriptor that stopped the
    // dump, and the error the user was told, last.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("DEBUG")
            && l.contains(&format!("pid={child}"))
            && l.contains("fd=10")
            && l.contains("perf_event")),
        "{text}"
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("ERROR pipecr: dump of pid")
            && last.contains(&format!("pid {child} fd 10")),
        "{text}"
    );

    // The same with stderr closed: the log is still written.
    let log2 = dir.path().join("closed.log");
    let status = Command::new("sh")
        .args([
            "-c",
            "exec 2>&-; exec \"$0\" dump --leave-running --log-file \"$1\" -t \"$2\" -D \"$3\"",
        ])
        .arg(PIPECR)
        .arg(&log2)
        .arg(pid.to_string())
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("pid={child}")) && l.contains("fd=10")),
        "{text}"
    );
    assert!(!img.exists());
    // The tree ran on: end of input ends it with status 0.
    drop(stdin);
    let status = common::wait_child(&mut root, "refusee to exit");
    assert!(status.success(), "{status}");
}

#[test]
fn rust_log_and_verbose_choose_what_stderr_shows() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (env, flag, want, unwanted) in [
        (None, None, None, Some("dump starts")),
        (
            None,
            Some("-v"),
            Some("dump starts"),
            Some("saving open file"),
        ),
        (Some("pipecr=debug"), None, Some("saving open file"), None),
        (Some("off"), Some("-vv"), None, Some("dump starts")),
    ] {
        let mut child = sleeper();
        let pid = child.id() as i32;
        let _kill = KillOnDrop(vec![pid]);
        let img = dir.path().join(format!("img-{pid}"));
        let mut cmd = Command::new(PIPECR);
        cmd.args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
            .arg(&img)
            .stdin(Stdio::null())
            .env_remove("RUST_LOG");
        if let Some(env) = env {
            cmd.env("RUST_LOG", env);
        }
        if let Some(flag) = flag {
            cmd.arg(flag);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        if let Some(want) = want {
            assert!(stderr.contains(want), "{env:?} {flag:?}: {stderr}");
        }
        if let Some(unwanted) = unwanted {
            assert!(!stderr.contains(unwanted), "{env:?} {flag:?}: {stderr}");
        }
        if env.is_none() && flag.is_none() {
            assert_eq!(stderr, "", "a default dump logs nothing");
        }
        common::kill(pid);
        child.wait().unwrap();
    }
}

#[test]
fn dump_and_restore_json_stats_and_show() {
    if !capable() {
        return;
    }
    common::set_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    let pid = child.id() as i32;
    let mut kill = KillOnDrop(vec![pid]);
    let img = dir.path().join("img");
    let out = Command::new(PIPECR)
        .args(["dump", "--json", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let v = json_of(&out);
    assert_eq!(v["command"], "dump");
    assert_eq!(v["outcome"], "ok");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["root_pid"], pid);
    assert_eq!(v["pids"], serde_json::json!([pid]));
    assert_eq!(v["dir"], img.display().to_string());
    assert_eq!(v["left_running"], false);
    let stats = &v["stats"];
    assert_eq!(stats["processes"], 1);
    assert_eq!(stats["threads"], 1);
    assert_eq!(stats["descriptors"], 3);
    assert!(stats["pages_stored"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(
        stats["page_bytes"].as_u64().unwrap(),
        stats["pages_stored"].as_u64().unwrap() * 4096
    );
    assert!(stats["frozen_ms"].as_f64().unwrap() > 0.0, "{stats}");
    let names: Vec<&str> = stats["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["freeze", "files", "core", "memory", "commit"]);
    // The dump killed it: reap it so that its PID is free.
    child.wait().unwrap();
    kill.0.clear();

    // stats.img is in the image and listed like every other file.
    let image = pipecr_image::Image::open(&img).unwrap();
    assert!(image.has_file(pipecr_image::STATS));
    let saved: Vec<pipecr_image::proto::DumpStats> =
        image.read_records(pipecr_image::STATS).unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        saved[0].pages_stored,
        stats["pages_stored"].as_u64().unwrap()
    );

    let log = dir.path().join("restore.log");
    let out = pipecr(&[
        "restore",
        "-d",
        "--json",
        "--save-stats",
        "--log-file",
        log.to_str().unwrap(),
        "-D",
        img.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    // The log names each descriptor as its open file is created, and the end.
    let text = std::fs::read_to_string(&log).unwrap();
    for fd in 0..3 {
        assert!(
            text.lines().any(|l| l.contains("opening saved file")
                && l.contains(&format!(" fd={fd} "))
                && l.contains("character device")),
            "fd {fd}: {text}"
        );
    }
    assert!(text.contains(&format!("restore done root={pid}")), "{text}");
    let v = json_of(&out);
    let _restored = KillOnDrop(vec![pid]);
    assert_eq!(v["command"], "restore");
    assert_eq!(v["outcome"], "ok");
    assert_eq!(v["root_pid"], pid);
    assert_eq!(v["pids"], serde_json::json!([pid]));
    assert_eq!(v["detached"], true);
    assert_eq!(v["stats"]["processes"], 1);
    assert_eq!(v["stats"]["pages"], saved[0].pages_stored);
    assert_eq!(common::comm(pid).as_deref(), Some("sleep"));
    assert!(img.join(pipecr_image::RESTORE_STATS).exists());

    let out = pipecr(&["show", img.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\ndump stats\n"), "{text}");
    assert!(
        text.contains("  1 process(es), 1 thread(s), 3 descriptor(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  pages: {} stored", saved[0].pages_stored)),
        "{text}"
    );
    assert!(text.contains("\nlast restore ("), "{text}");
    assert!(text.contains("steps: check "), "{text}");
    let out = pipecr(&["show", "--json", img.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"][0]["processes"], 1);
    assert_eq!(v["restore_stats"][0]["processes"], 1);

    // Restored again while it runs: its PID is in use, a conflict.
    let out = pipecr(&["restore", "-d", "--json", "-D", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let e = json_of(&out);
    assert_eq!(e["error"]["class"], "conflict");
    assert_eq!(e["error"]["code"], "pid_in_use");
    assert_eq!(e["error"]["pid"], pid);
    kill_restored(pid);
}

#[test]
fn a_damaged_image_exits_4_and_a_missing_executable_5() {
    if !capable() {
        return;
    }
    common::set_subreaper();
    let dir = tempfile::tempdir().unwrap();
    // A private copy of sleep, to be removed after the dump.
    let exe = dir.path().join("mysleep");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = only_stdio(&mut Command::new(&exe))
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let _kill = KillOnDrop(vec![pid]);
    let img = dir.path().join("img");
    common::dump(pid, &img, &[]);
    child.wait().unwrap();

    // A byte of pages.img flipped: the inventory's checksum says so.
    let copy = dir.path().join("damaged");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&img).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let pages = copy.join(pipecr_image::PAGES);
    let mut bytes = std::fs::read(&pages).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&pages, bytes).unwrap();
    let out = pipecr(&["restore", "-d", "--json", "-D", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let v = json_of(&out);
    assert_eq!(v["error"]["class"], "damaged_image");
    assert_eq!(v["error"]["code"], "damaged_image");
    assert_eq!(v["error"]["file"], pages.display().to_string());
    assert!(common::state(pid).is_none(), "nothing was restored");

    std::fs::remove_file(&exe).unwrap();
    let out = pipecr(&["restore", "-d", "--json", "-D", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let v = json_of(&out);
    assert_eq!(v["error"]["class"], "conflict");
    assert_eq!(v["error"]["code"], "missing_file");
    assert_eq!(v["error"]["pid"], pid);
    assert_eq!(v["error"]["file"], exe.display().to_string());
    assert!(common::state(pid).is_none(), "nothing was restored");
}

#[test]
fn a_progress_bar_on_a_terminal_only() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    let pid = child.id() as i32;
    let _kill = KillOnDrop(vec![pid]);
    // On a terminal (`script` gives the command one), with the threshold lowered to 1
    // byte: the bar, then the result; `script` records what the terminal got.
    let typescript = dir.path().join("typescript");
    let img = dir.path().join("img");
    let command = format!(
        "{PIPECR} dump --leave-running -t {pid} -D {}",
        img.display()
    );
    let status = Command::new("script")
        .args(["-qec", &command])
        .arg(&typescript)
        .env("PIPECR_PROGRESS_MIN", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let seen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(seen.contains(" KiB/"), "no progress bar: {seen}");
    assert!(seen.contains(&format!("dumped pid {pid} into")), "{seen}");
    // Not on a terminal: nothing but the result.
    let img2 = dir.path().join("img2");
    let out = Command::new(PIPECR)
        .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
        .arg(&img2)
        .env("PIPECR_PROGRESS_MIN", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    common::kill(pid);
    child.wait().unwrap();
}

#[test]
fn check_json_lists_every_check() {
    let out = pipecr(&["check", "--json"]);
    let v = json_of(&out);
    assert_eq!(v["command"], "check");
    let checks = v["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        assert!(c["name"].is_string() && c["ok"].is_boolean() && c["required"].is_boolean());
    }
    let all_required = checks
        .iter()
        .all(|c| c["ok"] == true || c["required"] == false);
    assert_eq!(v["outcome"], if all_required { "ok" } else { "error" });
    assert_eq!(
        out.status.code(),
        Some(if all_required { 0 } else { 6 }),
        "{v}"
    );
}

#[test]
fn an_open_file_gone_since_the_dump_is_a_conflict_exit_5() {
    if !capable() {
        return;
    }
    common::set_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, b"kept open").unwrap();
    // sleep holding the file open at fd 3 (the shell opens it and becomes sleep).
    let mut child = only_stdio(&mut Command::new("sh"))
        .arg("-c")
        .arg(format!("exec 3<{} && exec sleep 1000", data.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let _kill = KillOnDrop(vec![pid]);
    common::wait_until("sleep to hold the file at fd 3", || {
        std::fs::read_link(format!("/proc/{pid}/fd/3")).is_ok_and(|l| l == data)
            && common::comm(pid).as_deref() == Some("sleep")
    });
    let img = dir.path().join("img");
    common::dump(pid, &img, &[]);
    child.wait().unwrap();
    common::wait_until("the dumped process to be gone", || {
        common::state(pid).is_none()
    });

    std::fs::remove_file(&data).unwrap();
    let out = pipecr(&["restore", "-d", "--json", "-D", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let v = json_of(&out);
    assert_eq!(v["error"]["class"], "conflict");
    assert_eq!(v["error"]["code"], "file_missing_or_changed");
    assert_eq!(v["error"]["pid"], pid);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&data.display().to_string()) && !message.contains("[conflict]"),
        "{v}"
    );
    assert!(common::state(pid).is_none(), "nothing was restored");
}

/// Unmounts a test's tmpfs when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn a_full_disk_is_an_internal_error_exit_1_and_the_tree_runs_on() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A 64 KiB file system: the image of a process's memory does not fit.
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &small,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=64k",
    )
    .unwrap();
    let _unmount = Unmount(small.clone());
    let mut child = sleeper();
    let pid = child.id() as i32;
    let _kill = KillOnDrop(vec![pid]);

    let img = small.join("img");
    let out = pipecr(&[
        "dump",
        "--json",
        "-t",
        &pid.to_string(),
        "-D",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json_of(&out);
    assert_eq!(v["error"]["class"], "internal");
    assert_eq!(v["error"]["code"], "image_io_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("No space left on device"),
        "{v}"
    );
    assert!(!img.exists());
    // The tree was resumed: sleep still runs, and is not stopped (just resumed, it may
    // still be running on its way back into its sleep).
    common::wait_until("the resumed sleep to sleep again", || {
        common::state(pid) == Some('S')
    });
    assert!(child.try_wait().unwrap().is_none());
}
