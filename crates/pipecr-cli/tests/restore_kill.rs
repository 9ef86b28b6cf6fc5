//! Reliability of `pipecr restore` (issue 5, section 5).
//!
//! - Killed with SIGKILL at random moments, it leaves no process of the tree behind
//!   (unless the tree was restored whole and runs, exactly as dumped), and never changes
//!   the image: a later restore succeeds and the tree finishes with the right output.
//! - A damaged image (one byte flipped, in each file in turn) is refused with a one-line
//!   error before any process of the tree exists.
//!
//! The tree (tests/progs/peers.c, mode `blocked`): a writes into a full 1 MiB pipe and
//! blocks, b is idle, c blocks reading an empty pipe from b; 1 MiB in flight. The test
//! process is a child subreaper: when `pipecr restore` dies, the processes it created
//! (its children, and theirs) come to the test, which reaps them and so sees every one.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TRIALS: usize = 30;
/// The first trials are not killed: they measure how long a whole restore takes.
const CALIBRATION_TRIALS: usize = 3;

/// The blocked tree, started in `dir` and driven until a and c block.
struct Peers {
    child: Child,
    ctls: Vec<Ctl>,
    pids: Vec<i32>,
    _guard: KillOnDrop,
}

fn start(exe: &Path, dir: &Path) -> Peers {
    std::fs::create_dir_all(dir).unwrap();
    let mut ctls: Vec<Ctl> = ["a", "b", "c"].iter().map(|n| Ctl::new(dir, n)).collect();
    let child = only_stdio(&mut Command::new(exe))
        .args(["blocked", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("out")).unwrap())
        .stderr(File::create(dir.join("err")).unwrap())
        .spawn()
        .unwrap();
    let root = child.id() as i32;
    let mut guard = KillOnDrop(vec![root]);
    for c in &mut ctls {
        c.connect();
    }
    let pids: Vec<i32> = std::iter::once(root).chain(children(root)).collect();
    assert_eq!(pids.len(), 3);
    guard.0 = pids.clone();
    let mut p = Peers {
        child,
        ctls,
        pids,
        _guard: guard,
    };
    p.ctls[0].step(b'W').unwrap();
    p.ctls[2].step(b'R').unwrap();
    wait_blocked(&p.pids);
    p
}

/// a in its write to the full pipe, b reading its control FIFO, c in its read.
fn wait_blocked(pids: &[i32]) {
    for &p in pids {
        wait_in(
            p,
            if p == pids[0] {
                "pipe_write"
            } else {
                "pipe_read"
            },
        );
    }
}

/// Releases a and c, quits, and returns the output once the tree (waited for by `wait`)
/// is gone.
fn release_and_quit(ctls: &mut [Ctl], dir: &Path, wait: impl FnOnce()) -> String {
    let out = || std::fs::read_to_string(dir.join("out")).unwrap_or_default();
    for (p, c) in [(1, b'R'), (0, 0), (1, b'w'), (2, 0), (1, b'q'), (2, b'q')] {
        let r = if c == 0 {
            ctls[p].wait_ack()
        } else {
            ctls[p].step(c)
        };
        r.unwrap_or_else(|e| panic!("{e}\noutput:\n{}", out()));
    }
    ctls[0].send(b'q');
    wait();
    assert_eq!(std::fs::read_to_string(dir.join("err")).unwrap(), "");
    out()
}

/// The output of the tree without any dump.
fn expected_output(exe: &Path, dir: &Path) -> String {
    let mut p = start(exe, dir);
    let out = release_and_quit(&mut p.ctls, dir, || {
        assert!(wait_child(&mut p.child, "the tree").success())
    });
    assert!(
        out.ends_with("a: sent 1179648 received 0 sum 811c9dc5\n"),
        "{out}"
    );
    out
}

/// Starts the tree, dumps it (which kills it) and reaps it: the image, with the tree's
/// PIDs free again.
fn dumped(exe: &Path, dir: &Path) -> (Vec<Ctl>, Vec<i32>) {
    let mut p = start(exe, dir);
    dump(p.pids[0], &dir.join("img"), &["--read-handlers"]);
    let status = wait_child(&mut p.child, "the dumped tree");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    reap(&p.pids);
    for &pid in &p.pids {
        wait_until("the dumped tree to be gone", || state(pid).is_none());
    }
    assert_eq!(saved_pids(&dir.join("img")), p.pids);
    (std::mem::take(&mut p.ctls), p.pids.clone())
}

/// What is left of the tree `pids` once `pipecr restore` is gone: nothing (after
/// reaping the zombies that came to us), or the whole tree, restored and blocked as it
/// was dumped. Anything else (some of them, or one stopped, traced or elsewhere) is a
/// stray: a panic describing each.
fn leftover(pids: &[i32], trial: usize) -> Option<()> {
    let start = Instant::now();
    loop {
        reap_exited(pids);
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&p| state(p).is_some_and(|s| s != 'Z'))
            .collect();
        if alive.is_empty() && pids.iter().all(|&p| state(p).is_none()) {
            return None;
        }
        let untraced = |p: i32| {
            std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("TracerPid:") && l.ends_with("\t0"))
            })
        };
        if alive.len() == pids.len()
            && pids.iter().all(|&p| state(p) == Some('S') && untraced(p))
            && wchan(pids[0]).ends_with("pipe_write")
            && pids[1..].iter().all(|&p| wchan(p).ends_with("pipe_read"))
        {
            return Some(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            let describe: Vec<String> = pids
                .iter()
                .map(|&p| {
                    let status =
                        std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
                    let field = |f: &str| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix(f))
                            .unwrap_or("-")
                            .trim()
                            .to_owned()
                    };
                    format!(
                        "pid {p}: state {:?} wchan {} parent {:?} tracer {} name {}",
                        state(p),
                        wchan(p),
                        ppid(p),
                        field("TracerPid:"),
                        field("Name:")
                    )
                })
                .collect();
            panic!(
                "trial {trial}: stray processes of the tree after pipecr restore was \
                 killed:\n{}",
                describe.join("\n")
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn restore_killed_at_random_moments_leaves_no_stray_and_the_image_intact() {
    if !capable() {
        return;
    }
    set_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = build("peers", tmp.path()) else {
        return;
    };
    let expected = expected_output(&exe, &tmp.path().join("plain"));
    let dir = tmp.path().join("run");
    let (mut ctls, pids) = dumped(&exe, &dir);
    let img = dir.join("img");
    let _guard = KillOnDrop(pids.clone());
    let image = snapshot(&img);
    let mut rng = Rng::from_env("PIPECR_RESTORE_KILL_SEED");

    let mut whole: Vec<Duration> = Vec::new();
    let (mut nothing, mut running, mut completed) = (0, 0, 0);
    for trial in 0..TRIALS {
        let kill_after = if trial < CALIBRATION_TRIALS {
            None
        } else {
            let mut sorted = whole.clone();
            sorted.sort();
            let typical = sorted[sorted.len() / 2].as_micros() as u64;
            // Up to a little more than a whole restore: kills land in every phase, and
            // some after the end.
            Some(Duration::from_micros(
                rng.next() % (typical * 12 / 10).max(1),
            ))
        };
        let start = Instant::now();
        let mut restore = restore_command(&img).spawn().unwrap();
        match kill_after {
            None => {
                let mut line = String::new();
                BufReader::new(restore.stdout.take().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                if line.is_empty() {
                    let out = restore.wait_with_output().unwrap();
                    panic!(
                        "trial {trial}: {}\nout: {:?}",
                        String::from_utf8_lossy(&out.stderr),
                        std::fs::read_to_string(dir.join("out"))
                    );
                }
                assert_eq!(line.trim(), format!("restored pid {}", pids[0]));
                whole.push(start.elapsed());
                wait_blocked(&pids);
                kill_tree(&pids);
                finish_restore(restore, 128 + libc::SIGKILL);
                completed += 1;
            }
            Some(delay) => {
                // Choosing a moment, not waiting for an event.
                std::thread::sleep(delay);
                restore.kill().unwrap();
                let out = restore.wait_with_output().unwrap();
                let reported = String::from_utf8_lossy(&out.stdout).contains("restored pid");
                if out.status.signal() != Some(libc::SIGKILL) {
                    // It finished before the kill, with the tree and so its status.
                    assert!(reported, "trial {trial}: {out:?}");
                    completed += 1;
                } else if leftover(&pids, trial).is_some() {
                    running += 1;
                } else {
                    assert!(!reported, "trial {trial}: reported a restore, left nothing");
                    nothing += 1;
                }
                if std::env::var_os("PIPECR_KILL_VERBOSE").is_some() {
                    eprintln!(
                        "trial {trial}: kill after {delay:?}: {}, reported: {reported}",
                        out.status
                    );
                }
            }
        }
        // Whatever runs is ours now: kill and reap it, so the PIDs are free again.
        kill_tree(&pids);
        reap(&pids);
        for &p in &pids {
            wait_until(&format!("trial {trial}: pid {p} to be gone"), || {
                state(p).is_none()
            });
        }
        assert!(
            snapshot(&img) == image,
            "trial {trial}: the image directory changed"
        );
    }
    let mut sorted = whole.clone();
    sorted.sort();
    eprintln!(
        "{TRIALS} restores of a {}-process tree (whole restore {:?}): {nothing} killed \
         leaving nothing, {running} killed after the tree was restored whole, {completed} \
         not killed before they ended",
        pids.len(),
        sorted[sorted.len() / 2]
    );
    assert!(nothing > 0, "no kill landed during a restore");

    // The image still restores, and the tree finishes as if never interrupted.
    let restore = restore(&img, pids[0]);
    wait_blocked(&pids);
    let out = release_and_quit(&mut ctls, &dir, || {
        finish_restore(restore, 0);
    });
    assert_eq!(out, expected);
}

#[test]
fn damaged_image_is_refused_before_any_process_exists() {
    if !capable() {
        return;
    }
    set_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = build("peers", tmp.path()) else {
        return;
    };
    let expected = expected_output(&exe, &tmp.path().join("plain"));
    let dir = tmp.path().join("run");
    let (mut ctls, pids) = dumped(&exe, &dir);
    let img = dir.join("img");
    let _guard = KillOnDrop(pids.clone());
    let image = snapshot(&img);
    assert!(
        image.len() > 3,
        "{:?}",
        image.iter().map(|f| &f.0).collect::<Vec<_>>()
    );

    let bad = dir.join("bad");
    let mut refused = Vec::new();
    for (name, contents) in &image {
        if contents.is_empty() {
            continue;
        }
        // The image with one byte of this file flipped (in its middle).
        let _ = std::fs::remove_dir_all(&bad);
        std::fs::create_dir(&bad).unwrap();
        for (n, c) in &image {
            let mut c = c.clone();
            if n == name {
                let at = c.len() / 2;
                c[at] ^= 0x5a;
            }
            std::fs::write(bad.join(n), c).unwrap();
        }
        let mut restore = restore_command(&bad).spawn().unwrap();
        wait_child(&mut restore, "pipecr restore of a damaged image");
        let out = restore.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let name = name.display().to_string();
        assert!(!out.status.success(), "{name}: {out:?}");
        assert!(out.stdout.is_empty(), "{name}: {out:?}");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(
            err.contains(&name),
            "{name}: the error names the file: {err}"
        );
        assert!(err.contains("damaged image"), "{name}: {err}");
        // None of the tree's PIDs exists, nor came to us as a zombie.
        for &p in &pids {
            assert_eq!(state(p), None, "{name}: pid {p} exists: {err}");
        }
        assert_eq!(reap_exited(&pids), Vec::<i32>::new(), "{name}: {err}");
        refused.push(format!("{name}: {}", err.trim_end()));
    }
    eprintln!("refused:\n{}", refused.join("\n"));
    assert_eq!(snapshot(&img), image);

    // The undamaged image restores, and the tree finishes as if never interrupted.
    let restore = restore(&img, pids[0]);
    wait_blocked(&pids);
    let out = release_and_quit(&mut ctls, &dir, || {
        finish_restore(restore, 0);
    });
    assert_eq!(out, expected);
}
