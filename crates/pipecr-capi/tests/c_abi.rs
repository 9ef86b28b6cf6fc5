//! The C ABI from C: compiles `tests/c/roundtrip.c` against `include/pipecr.h` with the
//! system C compiler, links it once with `libpipecr.so` and once with `libpipecr.a`, and
//! runs both; the C program checks bytes, packets, capacity, flags and error paths, and
//! exits 0 only if everything matched.
//!
//! `cargo test` does not build a package's cdylib or staticlib for its integration tests
//! (they link only against an rlib, and this crate has none), so the test builds them
//! itself: `cargo build -p pipecr-capi` with the profile and target directory of the
//! running test, through the `cargo` that runs the test. Cargo releases its build lock
//! before it runs tests, so this works from a clean clone with `cargo test --workspace`
//! as the only command.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the running test binary was built: target directory, target triple (when one
/// was given to cargo) and profile directory name.
struct BuildDir {
    target_dir: PathBuf,
    triple: Option<OsString>,
    profile_dir: PathBuf,
}

fn build_dir() -> BuildDir {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf();
    // The test binary is `<target dir>[/<triple>]/<profile>/deps/c_abi-<hash>`.
    let exe = env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <profile>/deps")
        .to_path_buf();
    let above = profile_dir.parent().expect("profile dir has a parent");
    let triple = (above.canonicalize().ok() != target_dir.canonicalize().ok())
        .then(|| above.file_name().expect("triple dir name").to_os_string());
    BuildDir {
        target_dir,
        triple,
        profile_dir,
    }
}

/// The cargo profile whose output directory is `dir_name` (`debug` is `dev`).
fn profile_name(dir_name: &str) -> &str {
    match dir_name {
        "debug" => "dev",
        other => other,
    }
}

fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed\n{}", show(&out));
    out
}

/// Builds libpipecr.so and libpipecr.a; returns the directory that holds them.
fn build_libpipecr() -> PathBuf {
    let dir = build_dir();
    let profile_dir_name = dir
        .profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile dir name is UTF-8");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .args(["-p", "pipecr-capi", "--lib", "--locked", "--profile"])
        .arg(profile_name(profile_dir_name))
        .arg("--target-dir")
        .arg(&dir.target_dir);
    if let Some(triple) = &dir.triple {
        cmd.arg("--target").arg(triple);
    }
    run(&mut cmd);
    for lib in ["libpipecr.so", "libpipecr.a"] {
        let path = dir.profile_dir.join(lib);
        assert!(
            path.is_file(),
            "cargo build did not produce {}",
            path.display()
        );
    }
    dir.profile_dir
}

#[test]
fn c_program_round_trips_pipes_through_libpipecr() {
    let libdir = build_libpipecr();
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest_dir.join("tests/c/roundtrip.c");
    let include = manifest_dir.join("include");
    let work = tempfile::Builder::new()
        .prefix("pipecr-capi-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let cc = env::var_os("CC").unwrap_or_else(|| "cc".into());

    // The header must be plain C99: any extension or warning fails the build.
    let common = |cmd: &mut Command| {
        cmd.args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-I",
        ])
        .arg(&include)
        .arg(&source);
    };

    let dynamic = work.path().join("roundtrip-dynamic");
    let mut cmd = Command::new(&cc);
    common(&mut cmd);
    cmd.arg("-o")
        .arg(&dynamic)
        .arg("-L")
        .arg(&libdir)
        .arg("-lpipecr")
        .arg(format!("-Wl,-rpath,{}", libdir.display()));
    run(&mut cmd);

    // A Rust staticlib needs the system libraries the Rust standard library uses
    // (`rustc --print native-static-libs`); extra ones cost nothing.
    let statik = work.path().join("roundtrip-static");
    let mut cmd = Command::new(&cc);
    common(&mut cmd);
    cmd.arg("-o")
        .arg(&statik)
        .arg(libdir.join("libpipecr.a"))
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ]);
    run(&mut cmd);

    for (name, exe) in [("dynamic", &dynamic), ("static", &statik)] {
        let scratch = work.path().join(format!("images-{name}"));
        std::fs::create_dir(&scratch).expect("scratch dir");
        let out = Command::new(exe)
            .arg(&scratch)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "roundtrip.c linked {name} reported differences\n{}",
            show(&out)
        );
    }
}
