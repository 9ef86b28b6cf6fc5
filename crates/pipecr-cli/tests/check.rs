//! `pipecr check` on this machine, and as an unprivileged user.

mod common;

use assert_cmd::Command;

fn cap_eff() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn check_reports_every_feature_and_exits_by_the_required_ones() {
    let out = Command::cargo_bin("pipecr")
        .unwrap()
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    for name in [
        "pidfd_getfd",
        "kcmp KCMP_FILE",
        "tee",
        "splice",
        "vmsplice",
        "ptrace seize",
        "clone3 set_tid",
        "timer_create chosen IDs",
        "CAP_CHECKPOINT_RESTORE",
        "CAP_SYS_PTRACE",
        "CAP_SYS_RESOURCE",
        "pipe-max-size",
        "kernel",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.get(8..).unwrap_or("").starts_with(&format!("{name}:"))),
            "no line for {name}:\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok      pidfd_getfd:")),
        "{stdout}"
    );
    // CAP_CHECKPOINT_RESTORE (40) and CAP_SYS_PTRACE (19) are required; CI runs as root.
    let caps = cap_eff();
    if caps & (1 << 40) != 0 && caps & (1 << 19) != 0 {
        assert!(out.status.success(), "{stdout}");
        assert!(!stdout.contains("MISSING"), "{stdout}");
    } else {
        eprintln!("without CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE: expecting failure");
        assert!(!out.status.success());
        assert!(stdout.contains("MISSING"), "{stdout}");
    }
}

/// As `nobody` (no capabilities): both required capabilities are MISSING, the last line
/// on stderr names them, and the exit status is 1.
#[test]
fn check_without_capabilities_fails_naming_what_is_missing() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to run a command as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = common::pipecr_as_nobody(tmp.path())
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // A missing privilege or kernel feature (docs/CLI-JSON.md).
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    for name in ["CAP_CHECKPOINT_RESTORE", "CAP_SYS_PTRACE"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("MISSING {name}:"))),
            "no MISSING line for {name}:\n{stdout}"
        );
    }
    let missing: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("MISSING "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        stderr.lines().last(),
        Some(format!("error: required feature(s) missing: {}", missing.join(", ")).as_str()),
        "{stderr}"
    );
    assert!(missing.len() >= 2, "{missing:?}");
}
