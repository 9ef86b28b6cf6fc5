//! Dumping the address space and CPU state of real processes: a C program (built here with
//! `cc`) fills every kind of mapping with known patterns, blocks and raises signals, forks
//! a child that shares memory with it, prints where everything is and "ready", and waits
//! on stdin. The test freezes it, dumps it, and reads every pattern back from the image.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use pipecr::freeze;
use pipecr::mem::MemDumper;
use pipecr_image::proto::{self, VmaFlag, VmaKind};
use pipecr_image::{Image, ImageMeta, ImageWriter, PAGE_SIZE};

const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define ANON_PAGES 16
#define SPARSE (1UL << 30)

static void die(const char *what) { perror(what); exit(2); }

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    /* Private anonymous: page i holds byte 0x10 + i. */
    unsigned char *anon = mmap(NULL, ANON_PAGES * PAGE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) die("mmap anon");
    for (int i = 0; i < ANON_PAGES; i++) memset(anon + i * PAGE, 0x10 + i, PAGE);

    /* A file mapped privately: all 4 pages read, page 2 written with 'M'. */
    int pf = open(argv[1], O_RDONLY);
    if (pf < 0) die("open private file");
    unsigned char *fpriv = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, pf, 0);
    if (fpriv == MAP_FAILED) die("mmap private file");
    close(pf);
    volatile unsigned sum = 0;
    for (int i = 0; i < 4; i++) sum += fpriv[i * PAGE];
    memset(fpriv + 2 * PAGE, 'M', PAGE);

    /* A file mapped shared and written: the file holds the bytes. */
    int sf = open(argv[2], O_RDWR);
    if (sf < 0) die("open shared file");
    unsigned char *fshared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
    if (fshared == MAP_FAILED) die("mmap shared file");
    close(sf);
    memset(fshared, 'S', PAGE);

    /* Shared anonymous memory, shared with the child below. Page 1 stays a hole. */
    unsigned char *shm = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) die("mmap shared anon");
    memset(shm, 'A', PAGE);
    memset(shm + 2 * PAGE, 'B', PAGE);

    /* 1 GiB mapped, 3 pages touched. */
    unsigned char *sparse = mmap(NULL, SPARSE, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sparse == MAP_FAILED) die("mmap sparse");
    madvise(sparse, SPARSE, MADV_NOHUGEPAGE);
    memset(sparse, 0x61, PAGE);
    memset(sparse + SPARSE / 2, 0x62, PAGE);
    memset(sparse + SPARSE - PAGE, 0x63, PAGE);

    /* The heap (brk: below the mmap threshold). */
    unsigned char *heap = malloc(10000);
    for (int i = 0; i < 10000; i++) heap[i] = (unsigned char)(i * 7 + 1);

    /* A value on the stack. */
    volatile uint64_t on_stack = 0x5354414b5354414bULL;

    /* SIGUSR1 blocked and pending for this thread, SIGUSR2 for the process. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &set, NULL)) die("sigprocmask");
    raise(SIGUSR1);
    kill(getpid(), SIGUSR2);

    int ready[2];
    if (pipe(ready)) die("pipe");
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        /* The child writes its own page of the shared object, then waits for EOF. */
        memset(shm + 3 * PAGE, 'C', PAGE);
        close(ready[0]);
        if (write(ready[1], "c", 1) != 1) die("write");
        close(ready[1]);
        char c;
        while (read(0, &c, 1) > 0) {}
        _exit(0);
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) die("read");
    close(ready[0]);

    printf("child=%d\n", (int)child);
    printf("anon=%p\n", (void *)anon);
    printf("fpriv=%p\n", (void *)fpriv);
    printf("fshared=%p\n", (void *)fshared);
    printf("shm=%p\n", (void *)shm);
    printf("sparse=%p\n", (void *)sparse);
    printf("heap=%p\n", (void *)heap);
    printf("stack=%p\n", (void *)&on_stack);
    printf("ready\n");
    fflush(stdout);
    while (read(0, &c, 1) > 0) {}
    waitpid(child, NULL, 0);
    return (int)(sum & 0) + (on_stack == 0x5354414b5354414bULL ? 0 : 1);
}
"#;

/// Builds the program once per test binary (tests run in parallel).
fn program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| common::build_c("memprog", PROGRAM, &[]))
        .clone()
}

/// The running program and what it printed.
struct Running {
    child: Child,
    addrs: HashMap<String, u64>,
    child_pid: i32,
    _files: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let files = tempfile::tempdir().unwrap();
        let private = files.path().join("private");
        let shared = files.path().join("shared");
        // Page i of the private file holds 'a' + i; the shared file is 2 pages of '.'.
        let content: Vec<u8> = (0..4u8)
            .flat_map(|i| std::iter::repeat_n(b'a' + i, PAGE_SIZE as usize))
            .collect();
        std::fs::write(&private, content).unwrap();
        std::fs::write(&shared, vec![b'.'; 2 * PAGE_SIZE as usize]).unwrap();
        let mut child = Command::new(program())
            .arg(&private)
            .arg(&shared)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut addrs = HashMap::new();
        let mut child_pid = 0;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "program exited early"
            );
            let line = line.trim_end();
            if line == "ready" {
                break;
            }
            let (k, v) = line.split_once('=').unwrap();
            if k == "child" {
                child_pid = v.parse().unwrap();
            } else {
                let v = u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap();
                addrs.insert(k.to_owned(), v);
            }
        }
        Running {
            child,
            addrs,
            child_pid,
            _files: files,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn addr(&self, name: &str) -> u64 {
        self.addrs[name]
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // EOF on stdin ends both processes; the parent reaps its child.
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        if !std::thread::panicking() {
            assert!(
                status.success(),
                "the program saw its state change: {status}"
            );
        }
    }
}

/// What a dump produced, read back from the committed image.
struct Dumped {
    image: Image,
    mms: Vec<proto::Mm>,
    cores: Vec<proto::Core>,
    objects: Vec<proto::MemObject>,
    stats: pipecr::mem::MemStats,
    _dir: tempfile::TempDir,
}

/// Freezes the tree of `root`, saves every process's core and memory, resumes it.
fn dump(root: i32) -> (Dumped, std::time::Duration) {
    dump_holding(root, 0)
}

/// [`dump`], holding up to `write_behind` bytes of pages in memory until the tree runs.
fn dump_holding(root: i32, write_behind: usize) -> (Dumped, std::time::Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let mut writer = ImageWriter::create(&path, ImageMeta::default()).unwrap();
    let tree = freeze::freeze(root).unwrap();
    let start = Instant::now();
    let mut mem = MemDumper::with_write_behind(write_behind);
    let mut mms = Vec::new();
    let mut cores = Vec::new();
    for p in tree.processes() {
        cores.push(pipecr::task::dump_core(p, false).unwrap());
        mms.push(mem.dump_process(p.pid, &mut writer).unwrap());
    }
    let took = start.elapsed();
    tree.resume();
    let (objects, stats, held) = mem.finish();
    held.write(&mut writer).unwrap();
    writer.write_records(pipecr_image::MM, &mms).unwrap();
    writer.write_records(pipecr_image::CORE, &cores).unwrap();
    writer
        .write_records(pipecr_image::MEM_OBJECTS, &objects)
        .unwrap();
    writer.commit().unwrap();
    let image = Image::open(&path).unwrap();
    // What was written is what reads back.
    assert_eq!(
        image.read_records::<proto::Mm>(pipecr_image::MM).unwrap(),
        mms
    );
    (
        Dumped {
            image,
            mms,
            cores,
            objects,
            stats,
            _dir: dir,
        },
        took,
    )
}

impl Dumped {
    fn mm(&self, pid: i32) -> &proto::Mm {
        self.mms.iter().find(|m| m.pid == pid).unwrap()
    }

    fn page_at(&self, index: u64) -> Vec<u8> {
        self.image
            .read_data(&proto::DataRef {
                file: pipecr_image::PAGES.into(),
                offset: index * PAGE_SIZE,
                length: PAGE_SIZE,
            })
            .unwrap()
    }

    /// The saved bytes of the page at `addr` of process `pid`: `None` when the image
    /// holds nothing for it.
    fn page(&self, pid: i32, addr: u64) -> Option<Vec<u8>> {
        let mm = self.mm(pid);
        let addr = addr - addr % PAGE_SIZE;
        let vma = mm.vmas.iter().find(|v| v.start <= addr && addr < v.end)?;
        let (runs, at) = if vma.kind() == VmaKind::Object {
            let object = self.objects.iter().find(|o| o.id == vma.object_id)?;
            (&object.pages, addr - vma.start + vma.pgoff)
        } else {
            (&mm.pages, addr)
        };
        let run = runs
            .iter()
            .find(|r| r.start <= at && at < r.start + r.nr_pages * PAGE_SIZE)?;
        if run.zero {
            return Some(vec![0; PAGE_SIZE as usize]);
        }
        Some(self.page_at(run.store_index + (at - run.start) / PAGE_SIZE))
    }

    fn vma(&self, pid: i32, addr: u64) -> &proto::Vma {
        let mm = self.mm(pid);
        mm.vmas
            .iter()
            .find(|v| v.start <= addr && addr < v.end)
            .unwrap_or_else(|| panic!("no area of pid {pid} holds {addr:#x}"))
    }

    /// Saved pages of `pid` inside [start, end).
    fn pages_in(&self, pid: i32, start: u64, end: u64) -> u64 {
        self.mm(pid)
            .pages
            .iter()
            .map(|r| {
                let (a, b) = (
                    r.start.max(start),
                    (r.start + r.nr_pages * PAGE_SIZE).min(end),
                );
                b.saturating_sub(a) / PAGE_SIZE
            })
            .sum()
    }
}

/// Waits until `pid` blocks in read(2) (it prints "ready" just before): /proc/PID/syscall
/// starts with the number of the call the thread is blocked in.
fn blocked_in_read(pid: i32) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap();
        if text.starts_with(&format!("{} ", libc::SYS_read)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never blocked in read: {text}"
        );
        std::thread::yield_now();
    }
}

fn filled(byte: u8) -> Vec<u8> {
    vec![byte; PAGE_SIZE as usize]
}

#[test]
fn every_kind_of_mapping_is_saved_with_only_the_pages_that_matter() {
    let prog = Running::start();
    let (d, took) = dump(prog.pid());
    eprintln!("dump of parent + child: {took:?}, {:?}", d.stats);
    check_every_kind(&prog, &d);
}

/// What [`every_kind_of_mapping_is_saved_with_only_the_pages_that_matter`] checks in a
/// dump of the program.
fn check_every_kind(prog: &Running, d: &Dumped) {
    let (pid, child) = (prog.pid(), prog.child_pid);
    assert_eq!(d.mms.len(), 2, "the parent and its child");

    // Private anonymous memory: every page, with its pattern, in both processes.
    let anon = prog.addr("anon");
    for i in 0..16u64 {
        for p in [pid, child] {
            assert_eq!(
                d.page(p, anon + i * PAGE_SIZE),
                Some(filled(0x10 + i as u8)),
                "pid {p} anon page {i}"
            );
        }
    }

    // The sparse 1 GiB mapping: exactly the 3 touched pages.
    let sparse = prog.addr("sparse");
    let gib = 1u64 << 30;
    for (off, byte) in [(0, 0x61), (gib / 2, 0x62), (gib - PAGE_SIZE, 0x63)] {
        assert_eq!(d.page(pid, sparse + off), Some(filled(byte)));
    }
    assert_eq!(d.pages_in(pid, sparse, sparse + gib), 3);
    assert_eq!(d.pages_in(child, sparse, sparse + gib), 3);

    // The private file mapping: only the written page.
    let fpriv = prog.addr("fpriv");
    let vma = d.vma(pid, fpriv);
    assert_eq!(vma.kind(), VmaKind::FilePrivate);
    assert!(vma.path.ends_with("/private"), "{}", vma.path);
    assert!(
        vma.identity
            .as_ref()
            .is_some_and(|i| i.size == 4 * PAGE_SIZE)
    );
    assert_eq!(d.page(pid, fpriv + 2 * PAGE_SIZE), Some(filled(b'M')));
    for i in [0, 1, 3] {
        assert_eq!(d.page(pid, fpriv + i * PAGE_SIZE), None, "file page {i}");
    }

    // The shared file mapping: recorded, nothing stored (the file has the bytes).
    let fshared = prog.addr("fshared");
    let vma = d.vma(pid, fshared);
    assert_eq!(vma.kind(), VmaKind::FileShared);
    assert!(vma.flags & VmaFlag::Shared as u32 != 0);
    assert_eq!(d.page(pid, fshared), None);

    // Shared anonymous memory: one object for both processes, holes skipped.
    let shm = prog.addr("shm");
    let (pv, cv) = (d.vma(pid, shm), d.vma(child, shm));
    assert_eq!(pv.kind(), VmaKind::Object);
    assert_ne!(pv.object_id, 0);
    assert_eq!(
        pv.object_id, cv.object_id,
        "one object for parent and child"
    );
    let shared_anon: Vec<_> = d
        .objects
        .iter()
        .filter(|o| o.kind() == proto::MemObjectKind::SharedAnonymous)
        .collect();
    assert_eq!(shared_anon.len(), 1);
    assert_eq!(
        shared_anon[0].pages.iter().map(|r| r.nr_pages).sum::<u64>(),
        3
    );
    for (i, byte) in [(0, Some(b'A')), (1, None), (2, Some(b'B')), (3, Some(b'C'))] {
        for p in [pid, child] {
            assert_eq!(
                d.page(p, shm + i * PAGE_SIZE),
                byte.map(filled),
                "pid {p} shm page {i}"
            );
        }
    }

    // The heap and the stack.
    let heap = prog.addr("heap");
    assert_eq!(d.vma(pid, heap).kind(), VmaKind::Heap);
    let mut bytes = Vec::new();
    let first = heap - heap % PAGE_SIZE;
    for page in 0..4 {
        bytes.extend(d.page(pid, first + page * PAGE_SIZE).unwrap());
    }
    let at = (heap - first) as usize;
    for i in 0..10000usize {
        assert_eq!(bytes[at + i], (i * 7 + 1) as u8, "heap byte {i}");
    }
    let mm = d.mm(pid);
    assert!(
        mm.start_brk <= heap && heap < mm.brk,
        "brk {:#x}..{:#x}",
        mm.start_brk,
        mm.brk
    );
    let stack = prog.addr("stack");
    assert_eq!(d.vma(pid, stack).kind(), VmaKind::Stack);
    assert!(d.vma(pid, stack).flags & VmaFlag::Growsdown as u32 != 0);
    let page = d.page(pid, stack).unwrap();
    let at = (stack % PAGE_SIZE) as usize;
    assert_eq!(&page[at..at + 8], &0x5354414b5354414bu64.to_ne_bytes());

    // The kernel's areas: recorded, never stored.
    let kinds: BTreeSet<i32> = mm.vmas.iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&(VmaKind::Vdso as i32)), "{kinds:?}");
    for v in mm.vmas.iter().filter(|v| {
        matches!(
            v.kind(),
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall
        )
    }) {
        assert!(v.flags & VmaFlag::NotSaved as u32 != 0);
        assert_eq!(d.pages_in(pid, v.start, v.end), 0, "{}", v.path);
    }

    // The mm fields, auxv, exe.
    assert!(mm.start_code < mm.end_code && mm.start_code != 0);
    assert!(mm.arg_start < mm.arg_end && mm.env_start < mm.env_end);
    assert!(!mm.auxv.is_empty() && mm.auxv.len() % 16 == 0);
    assert!(mm.exe.ends_with("/memprog"), "{}", mm.exe);

    // No page stored twice: what the children share copy-on-write with the parent is
    // referenced, not copied, whenever the kernel shows us PFNs.
    let referenced: BTreeSet<u64> = d
        .mms
        .iter()
        .flat_map(|m| &m.pages)
        .chain(d.objects.iter().flat_map(|o| &o.pages))
        .filter(|r| !r.zero)
        .flat_map(|r| r.store_index..r.store_index + r.nr_pages)
        .collect();
    let stored = d.image.file(pipecr_image::PAGES).unwrap().length / PAGE_SIZE;
    assert_eq!(
        referenced.len() as u64,
        stored,
        "every stored page is referenced"
    );
    assert_eq!(stored, d.stats.pages_stored);
    if d.stats.pfns_visible == Some(true) {
        let parent_anon = d.mm(pid).pages.iter().find(|r| r.start == anon).unwrap();
        let child_anon = d.mm(child).pages.iter().find(|r| r.start == anon).unwrap();
        assert_eq!(
            parent_anon.store_index, child_anon.store_index,
            "CoW pages stored once"
        );
        assert!(d.stats.pages_reused >= 16 + 3);
    } else {
        eprintln!("pagemap hides PFNs here: copy-on-write pages are stored per process");
    }
    // Roughly the touched non-zero pages: ours (16 + 3 + 1 + 3 + heap + stack) plus what
    // libc and the loader wrote; far from the 1 GiB mapped.
    assert!(stored < 512, "{stored} pages stored");
}

#[test]
fn registers_and_signals_of_the_stopped_thread() {
    let prog = Running::start();
    let pid = prog.pid();
    blocked_in_read(pid);
    let (d, _) = dump(pid);
    let core = d.cores.iter().find(|c| c.pid == pid).unwrap();
    assert_eq!(core.threads.len(), 1);
    let t = &core.threads[0];
    assert_eq!(t.tid, pid);
    let Some(proto::thread::Regs::X8664(regs)) = &t.regs else {
        panic!("no x86_64 registers");
    };
    // Stopped in read(0, ...): rip in executable code (libc), rsp in [stack].
    let text = d.vma(pid, regs.rip);
    assert!(
        text.prot & 4 != 0,
        "rip {:#x} in {} not executable",
        regs.rip,
        text.path
    );
    assert_eq!(d.vma(pid, regs.rsp).kind(), VmaKind::Stack);
    assert_eq!(regs.orig_rax, libc::SYS_read as u64, "stopped in read(2)");
    assert_ne!(regs.fs_base, 0, "glibc's TLS");
    // XSAVE: at least the legacy area and the header; XCR0 has x87 and SSE.
    assert!(t.xsave.len() >= 576, "{}", t.xsave.len());
    let xcr0 = u64::from_ne_bytes(t.xsave[464..472].try_into().unwrap());
    assert_eq!(xcr0 & 3, 3, "xcr0 {xcr0:#x}");

    let bit = |sig: i32| 1u64 << (sig - 1);
    assert_eq!(t.blocked & bit(libc::SIGUSR1), bit(libc::SIGUSR1));
    assert_eq!(t.blocked & bit(libc::SIGUSR2), bit(libc::SIGUSR2));
    let thread_sigs: Vec<i32> = t.pending.iter().map(|s| s.signo).collect();
    let shared_sigs: Vec<i32> = core.shared_pending.iter().map(|s| s.signo).collect();
    assert_eq!(thread_sigs, [libc::SIGUSR1], "raise() queues on the thread");
    assert_eq!(shared_sigs, [libc::SIGUSR2], "kill() queues on the process");
    assert!(t.pending.iter().all(|s| s.raw.len() == 128));
    // glibc registers rseq for every thread (unless tuned off).
    if let Some(rseq) = &t.rseq {
        assert!(rseq.length >= 32);
        assert!(d.vma(pid, rseq.address).kind() != VmaKind::Unspecified);
    }

    assert_eq!(core.rlimits.len(), 16);
    let nofile = &core.rlimits[libc::RLIMIT_NOFILE as usize];
    let ours = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    assert_eq!(Some(nofile.soft), ours.current.or(Some(u64::MAX)));
    assert_eq!(core.cwd, std::env::current_dir().unwrap().to_string_lossy());
    assert_eq!(core.root, "/");
    let umask = rustix::process::umask(rustix::fs::Mode::empty());
    rustix::process::umask(umask);
    assert_eq!(core.umask, umask.bits());
}

#[test]
fn pages_held_back_while_stopped_are_all_in_the_image() {
    let prog = Running::start();
    let (plain, _) = dump(prog.pid());
    let stored = plain.stats.pages_stored as usize * PAGE_SIZE as usize;
    // All of it held; a buffer too small for it, so part is written while stopped and
    // the rest after; a buffer smaller than one read, so nothing is held.
    for bytes in [stored * 2, stored / 3, 2 * PAGE_SIZE as usize] {
        let (held, _) = dump_holding(prog.pid(), bytes);
        check_every_kind(&prog, &held);
        let len = std::fs::metadata(held.image.dir().join(pipecr_image::PAGES))
            .unwrap()
            .len();
        assert_eq!(
            len,
            held.stats.pages_stored * PAGE_SIZE,
            "write-behind of {bytes} bytes: pages.img holds every stored page once"
        );
    }
}

#[test]
fn a_sparse_gib_dumps_fast_and_small() {
    let prog = Running::start();
    let (d, took) = dump(prog.pid());
    let sparse = prog.addr("sparse");
    assert_eq!(d.pages_in(prog.pid(), sparse, sparse + (1 << 30)), 3);
    eprintln!(
        "2 processes, 2 GiB mapped in all: memory+core saved in {took:?}; {} pages stored",
        d.stats.pages_stored
    );
    // Reading 2 x 256 Ki pagemap entries takes milliseconds; reading the GiB would not.
    assert!(took.as_secs() < 5, "{took:?}");
}

#[test]
fn the_whole_dump_writes_core_and_memory() {
    let prog = Running::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let stats =
        pipecr::dump::dump_tree(prog.pid(), &path, &pipecr::files::DumpOptions::default()).unwrap();
    assert!(stats.memory.pages_stored > 0);
    let image = Image::open(&path).unwrap();
    let mms: Vec<proto::Mm> = image.read_records(pipecr_image::MM).unwrap();
    let cores: Vec<proto::Core> = image.read_records(pipecr_image::CORE).unwrap();
    let tree: Vec<proto::Process> = image.read_records(pipecr_image::TREE).unwrap();
    let pids = |it: &mut dyn Iterator<Item = i32>| it.collect::<Vec<_>>();
    let order = pids(&mut tree.iter().map(|p| p.pid));
    assert_eq!(pids(&mut mms.iter().map(|m| m.pid)), order);
    assert_eq!(pids(&mut cores.iter().map(|c| c.pid)), order);
    let objects: Vec<proto::MemObject> = image.read_records(pipecr_image::MEM_OBJECTS).unwrap();
    assert!(!objects.is_empty());
}

#[test]
fn posix_timers_are_refused_naming_the_pid() {
    let exe = common::build_c(
        "timer",
        r#"#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    timer_t t;
    struct sigevent ev = { .sigev_notify = SIGEV_NONE };
    if (timer_create(CLOCK_MONOTONIC, &ev, &t)) return 2;
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
"#,
        &["-lrt"],
    );
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id() as i32;
    let tree = freeze::freeze(pid).unwrap();
    let err = pipecr::task::dump_core(&tree.processes()[0], false).unwrap_err();
    drop(tree);
    let msg = err.to_string();
    assert!(
        msg.contains(&pid.to_string()) && msg.contains("POSIX timer"),
        "{msg}"
    );
    child.stdin.take().unwrap().write_all(b"").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Physical frames of `pages` pages from `start` in `pid`, as pagemap shows them.
fn frames(pid: i32, start: u64, pages: usize) -> Vec<Option<u64>> {
    let mut map = pipecr::mem::pagemap::Pagemap::open(pid).unwrap();
    let mut out = Vec::new();
    map.read(start, &mut out, pages).unwrap();
    out.iter().map(|e| e.pfn()).collect()
}

#[test]
fn a_dump_leaves_copy_on_write_pages_shared() {
    let prog = Running::start();
    let (pid, child) = (prog.pid(), prog.child_pid);
    let anon = prog.addr("anon");
    let shared = |a: &[Option<u64>], b: &[Option<u64>]| {
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.is_some() && x == y)
            .count()
    };
    let before = shared(&frames(pid, anon, 16), &frames(child, anon, 16));
    if before == 0 {
        eprintln!("skipped: no page frame numbers visible, or no page shared after fork");
        return;
    }
    let _ = dump(pid);
    // Reading a page with process_vm_readv would pin it and un-share it (Linux >= 5.19):
    // the dump must leave parent and child on the same frames as before.
    let after = shared(&frames(pid, anon, 16), &frames(child, anon, 16));
    assert_eq!(
        after, before,
        "pages still shared copy-on-write after the dump"
    );
}
