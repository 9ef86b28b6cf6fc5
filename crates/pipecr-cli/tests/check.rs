//! `pipecr check` on this machine.

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
