//! Copy-on-write snapshots ([`pipecr::snapshot`]): a snapshot keeps the memory of the
//! stopped process as it was, while the process, resumed, overwrites it; the process is
//! left without any new child, not even a zombie.
//!
//! The program (C, built here with `cc`) fills 16 pages with 'A', prints their address,
//! then for each byte on stdin fills them with that byte and answers `k`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use pipecr::freeze;
use pipecr::mem::MemDumper;
use pipecr::snapshot::{self, Snapshot};
use pipecr_image::{ImageMeta, ImageWriter, PAGE_SIZE};

const PAGES: usize = 16;

const PROGRAM: &str = r#"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "seccomp") == 0) {
        /* A filter that allows everything: the process is under seccomp all the same. */
        struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        struct sock_fprog prog = {1, allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 4;
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 5;
    }
    size_t len = 16 * 4096;
    unsigned char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    if (a == MAP_FAILED) return 2;
    memset(a, 'A', len);
    printf("%p\n", (void *)a);
    fflush(stdout);
    unsigned char c;
    while (read(0, &c, 1) == 1) {
        memset(a, c, len);
        if (write(1, "k", 1) != 1) return 3;
    }
    return 0;
}
"#;

fn capable() -> bool {
    pipecr::sys::fd::cloexec_from(3).unwrap();
    // CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE, for ptrace and /proc/PID/mem.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let ok = eff & (1 << 19) != 0 && eff & (1 << 40) != 0;
    if !ok {
        eprintln!("skipped: needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE");
    }
    ok
}

/// The program, built once per test binary.
fn program() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| common::build_c("snapshot-overwrite", PROGRAM, &[]))
        .clone()
}

fn seccomp_free(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .is_some_and(|v| v.trim() == "0")
    })
}

/// The children of `pid` as the kernel lists them (zombies included).
fn children(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap()
}

struct Program {
    child: Child,
    addr: u64,
    out: BufReader<std::process::ChildStdout>,
}

impl Program {
    fn start() -> Program {
        Program::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Program {
        let mut child = Command::new(program())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = u64::from_str_radix(line.trim().trim_start_matches("0x"), 16).unwrap();
        Program { child, addr, out }
    }

    /// Makes the program fill its pages with `byte`, and waits until it has.
    fn fill(&mut self, byte: u8) {
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(&[byte])
            .unwrap();
        let mut k = [0u8; 1];
        self.out.read_exact(&mut k).unwrap();
        assert_eq!(&k, b"k");
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        if !std::thread::panicking() {
            assert!(status.success(), "{status}");
        }
    }
}

fn read_pages(pid: i32, addr: u64) -> Vec<u8> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0u8; PAGES * PAGE_SIZE as usize];
    mem.read_exact_at(&mut buf, addr).unwrap();
    buf
}

#[test]
fn a_snapshot_keeps_the_memory_the_process_overwrites_after_resume() {
    if !capable() {
        return;
    }
    let mut prog = Program::start();
    let pid = prog.pid();
    if !seccomp_free(pid) {
        // Inherited from us (a container's profile, say): a filter could kill it for
        // forking, so no snapshot is taken.
        assert!(!snapshot::eligible(pid));
        eprintln!("skipped: the program runs under seccomp");
        return;
    }
    assert!(snapshot::eligible(pid));
    let before = children(pid);

    let tree = freeze::freeze(pid).unwrap();
    let snap = Snapshot::take(&tree.processes()[0]).unwrap();
    assert_ne!(snap.pid(), pid);
    // Neither the fork in between nor the snapshot is the program's child.
    assert_eq!(children(pid), before);
    tree.resume();

    prog.fill(b'B');
    assert!(read_pages(pid, prog.addr).iter().all(|&b| b == b'B'));
    // The snapshot still holds what was there when the tree was stopped.
    assert!(read_pages(snap.pid(), prog.addr).iter().all(|&b| b == b'A'));

    // Dumped from the snapshot: the record is the program's, the pages the old ones.
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ImageWriter::create(&dir.path().join("img"), ImageMeta::default()).unwrap();
    let mut mem = MemDumper::new();
    let mm = mem.dump_process_from(pid, snap.pid(), &mut writer).unwrap();
    assert_eq!(mm.pid, pid);
    let len = PAGES as u64 * PAGE_SIZE;
    let run = mm
        .pages
        .iter()
        .find(|r| r.start <= prog.addr && prog.addr + len <= r.start + r.nr_pages * PAGE_SIZE)
        .expect("the pages are saved, in one run");
    assert!(!run.zero);
    let (_, _, held) = mem.finish();
    held.write(&mut writer).unwrap();
    let image_dir = writer.commit().unwrap();
    let pages = std::fs::read(image_dir.join(pipecr_image::PAGES)).unwrap();
    let at = (run.store_index * PAGE_SIZE + (prog.addr - run.start)) as usize;
    assert!(
        pages[at..at + PAGES * PAGE_SIZE as usize]
            .iter()
            .all(|&b| b == b'A')
    );

    let copy = snap.pid();
    drop(snap);
    assert!(
        !std::path::Path::new(&format!("/proc/{copy}")).exists()
            || std::fs::read_to_string(format!("/proc/{copy}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the snapshot is killed"
    );
    prog.fill(b'C');
    assert_eq!(children(pid), before);
}

#[test]
fn shared_memory_is_not_snapshotted() {
    if !capable() {
        return;
    }
    // A shared anonymous mapping: the fork would share it, not copy it.
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import mmap,sys; m=mmap.mmap(-1, 4096); sys.stdout.write('r'); sys.stdout.flush(); sys.stdin.read()",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut r).unwrap();
    assert!(!snapshot::eligible(child.id() as i32));
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// `dump_tree` with snapshots: a plain process is read from its snapshot, one under
/// seccomp while the tree is stopped; both images hold the memory as it was stopped.
#[test]
fn a_dump_forks_only_processes_without_seccomp() {
    if !capable() {
        return;
    }
    for (args, snapshots) in [(&[][..], 1), (&["seccomp"][..], 0)] {
        let mut prog = Program::start_with(args);
        if !seccomp_free(prog.pid()) && args.is_empty() {
            eprintln!("skipped: the program runs under seccomp");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let options = pipecr::files::DumpOptions {
            read_handlers: true,
            leave_running: true,
            snapshots: true,
            ..Default::default()
        };
        let stats = pipecr::dump::dump_tree(prog.pid(), &dir.path().join("img"), &options).unwrap();
        assert_eq!(stats.snapshots, snapshots, "{args:?}");
        let image = pipecr_image::Image::open(&stats.dir).unwrap();
        let mms: Vec<pipecr_image::proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
        assert_eq!(mms.len(), 1);
        assert_eq!(mms[0].pid, prog.pid());
        let len = PAGES as u64 * PAGE_SIZE;
        let run = mms[0]
            .pages
            .iter()
            .find(|r| r.start <= prog.addr && prog.addr + len <= r.start + r.nr_pages * PAGE_SIZE)
            .expect("the pages are saved, in one run");
        let pages = std::fs::read(stats.dir.join(pipecr_image::PAGES)).unwrap();
        let at = (run.store_index * PAGE_SIZE + (prog.addr - run.start)) as usize;
        assert!(
            pages[at..at + len as usize].iter().all(|&b| b == b'A'),
            "{args:?}"
        );
        // It runs on, with no new child.
        prog.fill(b'B');
        assert_eq!(children(prog.pid()), "");
    }
}
