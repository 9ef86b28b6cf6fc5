//! `pipecr demo`: the whole story (a running pipeline dumped with data in its pipes,
//! restored, finished, its output verified) succeeds and says what it did; without the
//! capabilities it fails naming them; `--pipes-only` keeps the in-process pipe round trip.

use std::path::Path;
use std::process::Command as StdCommand;

use assert_cmd::Command;

fn has_caps() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    let caps = u64::from_str_radix(hex, 16).unwrap();
    // CAP_SYS_PTRACE (19) and CAP_CHECKPOINT_RESTORE (40) or CAP_SYS_ADMIN (21).
    caps & (1 << 19) != 0 && caps & ((1 << 40) | (1 << 21)) != 0
}

/// The number `N` in `... {before}N B ...` on the line starting with `line`.
fn number_after(stdout: &str, line: &str, before: &str) -> u64 {
    let l = stdout
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{stdout}"));
    let rest = &l[l.find(before).unwrap_or_else(|| panic!("{l}")) + before.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn demo_dumps_restores_and_verifies_the_pipeline() {
    if !has_caps() {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    let out = Command::cargo_bin("pipecr")
        .unwrap()
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("[3/5] dump: 4 processes, 2 pipes holding"),
        "{stdout}"
    );
    let in_flight = number_after(&stdout, "[3/5] dump:", "pipes holding ");
    assert!(in_flight > 0, "no bytes in flight:\n{stdout}");
    assert!(stdout.contains("tree stopped"), "{stdout}");
    assert!(stdout.contains("image "), "{stdout}");
    assert!(
        stdout.contains("identical to the uninterrupted run"),
        "{stdout}"
    );
    assert!(stdout.contains("\nverified: "), "{stdout}");
    // The outputs are there and equal, and the image is readable.
    let reference = std::fs::read(dir.join("reference.out")).unwrap();
    assert!(!reference.is_empty());
    assert_eq!(reference, std::fs::read(dir.join("restored.out")).unwrap());
    let show = Command::cargo_bin("pipecr")
        .unwrap()
        .arg("show")
        .arg(dir.join("image"))
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
}

#[test]
fn demo_without_capabilities_names_them_and_fails() {
    // Drop the capabilities with setpriv (util-linux); only root can, and only where the
    // tool exists.
    let setpriv = Path::new("/usr/bin/setpriv");
    if !has_caps() || !setpriv.exists() {
        eprintln!("skipped: needs root's capabilities to drop and /usr/bin/setpriv");
        return;
    }
    let out = StdCommand::new(setpriv)
        .args([
            "--inh-caps=-all",
            "--bounding-set=-sys_ptrace,-checkpoint_restore,-sys_admin",
        ])
        .arg(env!("CARGO_BIN_EXE_pipecr"))
        .arg("demo")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("CAP_SYS_PTRACE"), "{stderr}");
    assert!(stderr.contains("CAP_CHECKPOINT_RESTORE"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn demo_pipes_only_round_trip_succeeds() {
    let out = Command::cargo_bin("pipecr")
        .unwrap()
        .args(["demo", "--pipes-only"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("all pipes restored identically"),
        "{stdout}"
    );
    assert!(stdout.contains("[packet] verify:"), "{stdout}");
}

#[test]
fn demo_pipes_only_keeps_images_with_dir_and_show_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    Command::cargo_bin("pipecr")
        .unwrap()
        .args(["demo", "--pipes-only", "--dir"])
        .arg(&dir)
        .assert()
        .success();
    for sub in ["stream-pipe", "packet-pipe"] {
        let out = Command::cargo_bin("pipecr")
            .unwrap()
            .arg("show")
            .arg(dir.join(sub))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
