//! `pipecr demo`: the in-process round trip succeeds, and its images are readable.

use assert_cmd::Command;

#[test]
fn demo_round_trip_succeeds() {
    let out = Command::cargo_bin("pipecr")
        .unwrap()
        .arg("demo")
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
fn demo_keeps_images_with_dir_and_show_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    Command::cargo_bin("pipecr")
        .unwrap()
        .args(["demo", "--dir"])
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
