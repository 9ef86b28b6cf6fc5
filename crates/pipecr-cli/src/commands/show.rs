//! `pipecr show DIR [--json]`: print an image directory for people, or as one JSON
//! document for programs.
//!
//! The image is opened with `pipecr_image::Image::open`, which verifies every listed file
//! (length, CRC32C) first, so a damaged image is an error naming the file before anything
//! is printed. Sections are built from the files the image lists: the inventory always,
//! pipes and open files when present, and for tree images the process tree and, per
//! process, its state (`core.img`: cwd, limits, registers and signals of each thread) and
//! its address space (`mm.img`, `mem-objects.img`: areas like /proc/PID/maps and how many
//! pages of each are saved in `pages.img`). Files this version does not interpret are
//! listed in the inventory and otherwise left alone. New kinds of content add a section
//! here and a key in the JSON document.
//!
//! The JSON document is the records as the schema defines them (enums as numbers), with
//! three exceptions so that it stays small and readable: `Mm.auxv` becomes a list of
//! `{"type", "value"}` pairs, `Thread.xsave` becomes its length and XCR0, and each
//! `Siginfo.raw` becomes `si_errno`/`si_code`. Page contents are never included. Next to
//! the records it carries the views the human output derives from them, computed by the
//! same functions: `pipe_graph` (each pipe's readers and writers as `{pid, fd}`) and
//! `shared_files` (open file id -> its descriptors, for files held by several processes).
//!
//! Before printing, every pipe record is checked as restore checks it, so that an
//! impossible pipe is an error naming the image, file and record, not nonsense on screen.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipecr::files::{self, PipeUse, Saved};
use pipecr::sys::names;
use pipecr_image::proto::{self, FileLayout};
use pipecr_image::{CORE, FDS, FILES, Image, MEM_OBJECTS, MM, PAGE_SIZE, PAGES, TREE};
use serde::Serialize;

use crate::format;

/// Bytes of each pipe's pending data shown in the human-readable output.
const PREVIEW_BYTES: usize = 64;

/// Print what an image directory holds.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print one JSON document: the records {"inventory", "processes", "fd_tables",
    /// "pipes", "files", "core", "mm", "mem_objects"} (auxv decoded, XSAVE areas and raw
    /// siginfo summarised, page contents left out) and the views derived from them,
    /// {"pipe_graph", "shared_files"}, as the human output shows them.
    #[arg(long)]
    json: bool,
}

/// Everything `show` reads from an image; also the shape of the `--json` document.
#[derive(Debug, Serialize)]
struct Shown {
    inventory: proto::Inventory,
    processes: Vec<proto::Process>,
    fd_tables: Vec<proto::FdTable>,
    pipes: Vec<proto::Pipe>,
    files: Vec<proto::OpenFile>,
    core: Vec<proto::Core>,
    mm: Vec<proto::Mm>,
    mem_objects: Vec<proto::MemObject>,
    ipc: Vec<proto::IpcObject>,
    /// `stats.img` (none in images of older versions).
    stats: Vec<proto::DumpStats>,
    /// `restore-stats.img` beside the image, from its last restore (none before one).
    restore_stats: Vec<proto::RestoreStats>,
}

/// Opens and verifies the image, then prints it.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Image errors name the image directory and the file (and record) at fault.
    let image = Image::open(&args.dir)?;
    let shown = Shown {
        inventory: image.inventory().clone(),
        processes: records(&image, TREE)?,
        fd_tables: records(&image, FDS)?,
        // Each pipe checked as restore checks it, so that an impossible one is an error
        // naming the image, file and record, not nonsense on screen.
        pipes: pipecr::pipe::check_records(&image)?,
        files: records(&image, FILES)?,
        core: records(&image, CORE)?,
        mm: records(&image, MM)?,
        mem_objects: records(&image, MEM_OBJECTS)?,
        ipc: records(&image, pipecr_image::IPC)?,
        stats: records(&image, pipecr_image::STATS)?,
        restore_stats: restore_stats(&image)?,
    };
    if args.json {
        let text =
            serde_json::to_string_pretty(&json_view(&shown)).context("cannot encode JSON")?;
        println!("{text}");
    } else {
        print_human(&image, &shown)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The records of metadata file `name`, or none when the image does not list it.
fn records<M: prost::Message + Default>(image: &Image, name: &str) -> anyhow::Result<Vec<M>> {
    if !image.has_file(name) {
        return Ok(Vec::new());
    }
    Ok(image.read_records(name)?)
}

fn print_human(image: &Image, shown: &Shown) -> anyhow::Result<()> {
    let inv = &shown.inventory;
    println!("image {}", image.dir().display());
    println!("  format:   {}.{}", inv.format_major, inv.format_minor);
    println!("  tool:     pipecr {}", inv.tool_version);
    println!("  kernel:   {} ({})", inv.kernel_release, inv.arch);
    println!("  created:  {}", format::unix_ms(inv.created_unix_ms));
    println!("  content:  {}", inv.content);
    println!("  files:");
    let width = inv.files.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &inv.files {
        let layout = match FileLayout::try_from(f.layout) {
            Ok(FileLayout::Records) => "records",
            Ok(FileLayout::Raw) => "raw",
            _ => "unknown layout",
        };
        println!(
            "    {:<width$}  {:>10} bytes  {layout:<7}  crc32c {:08x}",
            f.name, f.length, f.crc32c
        );
    }

    let holders = holders(shown);
    let graph = pipe_graph(shown, &holders);
    print_tree(shown, &holders);
    print_external(shown);

    for pipe in &shown.pipes {
        println!();
        let ends = pipe_ends(shown, pipe.id);
        let fifo_path = ends.iter().find_map(|(_, u)| u.fifo.as_deref());
        match fifo_path {
            Some(path) => println!("pipe {} (FIFO {path}, inode {})", pipe.id, pipe.inode),
            None => println!("pipe {} (pipe:[{}])", pipe.id, pipe.inode),
        }
        println!(
            "  capacity:     {}",
            format::bytes(u64::from(pipe.capacity))
        );
        let data = pipe.data.as_ref();
        let pending = data.map_or(0, |d| d.length);
        match data {
            Some(d) => println!(
                "  pending:      {} (in {} at offset {})",
                format::bytes(pending),
                d.file,
                d.offset
            ),
            None => println!("  pending:      0 B"),
        }
        if pipe.packet_mode {
            println!(
                "  packet mode:  yes, {} packet(s) {}",
                pipe.packet_lengths.len(),
                format::packet_list(&pipe.packet_lengths)
            );
        } else {
            println!("  packet mode:  no");
        }
        if let Some(d) = data.filter(|d| d.length > 0) {
            let head = read_head(image, d, PREVIEW_BYTES)?;
            println!("  preview:");
            let mut lines = format::preview(&head, PREVIEW_BYTES, "    ");
            let more = pending.saturating_sub(head.len() as u64);
            if more > 0 {
                lines.push(format!("    ... {more} more bytes"));
            }
            for line in lines {
                println!("{line}");
            }
        }
        let node = graph.iter().find(|n| n.id == pipe.id);
        if let Some(node) = node.filter(|_| !shown.processes.is_empty()) {
            print_side(
                "readers",
                &node.readers,
                node.external_reader,
                node.reader_closed,
                "read",
            );
            print_side(
                "writers",
                &node.writers,
                node.external_writer,
                node.writer_closed,
                "write",
            );
        }
        if ends.is_empty() {
            println!("  ends:         none recorded");
        }
        for (f, used) in ends {
            // The label padded like "capacity:", whatever the width of the id.
            println!(
                "  {:<13} {}, {}{}",
                format!("file {}:", f.id),
                used.role,
                format::open_flags(f.flags),
                held_by(&holders, f.id)
            );
        }
    }

    // Open files that are not ends of a listed pipe: other kinds, for later versions.
    let others: Vec<_> = shown
        .files
        .iter()
        .filter(|f| {
            pipe_use(shown, f).is_none_or(|u| !shown.pipes.iter().any(|p| p.id == u.pipe_id))
        })
        .collect();
    if !others.is_empty() {
        println!();
        println!("other open files");
        for f in others {
            println!(
                "  file {}: {}, {}, pos {}{}",
                f.id,
                describe(shown, f),
                format::open_flags(f.flags),
                f.pos,
                held_by(&holders, f.id)
            );
        }
    }
    let locked: Vec<_> = shown
        .files
        .iter()
        .filter(|f| !f.locks.is_empty() || f.lease.is_some())
        .collect();
    if !locked.is_empty() {
        println!();
        println!("file locks held by open files");
        for f in locked {
            let locks: Vec<String> = f
                .locks
                .iter()
                .map(pipecr::files::locks::describe_lock)
                .chain(f.lease.as_ref().map(pipecr::files::locks::describe_lease))
                .collect();
            println!("  file {}: {}", f.id, locks.join(", "));
        }
    }
    print_ipc(shown);
    print_processes(image, shown);
    print_stats(shown);
    Ok(())
}

/// The System V IPC objects of the image, one line each.
fn print_ipc(shown: &Shown) {
    use proto::ipc_object::Kind;
    if shown.ipc.is_empty() {
        return;
    }
    println!();
    println!("System V IPC objects");
    for o in &shown.ipc {
        let mode = |p: &Option<proto::IpcPerm>| p.map_or(0, |p| p.mode);
        let detail = match &o.kind {
            Some(Kind::Shm(s)) => format!(
                "{}, mode {:04o}, {} attachment(s){}{}, {} stored",
                format::bytes(s.size),
                mode(&s.perm),
                s.nattch,
                if s.removed { ", removed" } else { "" },
                if s.locked { ", locked" } else { "" },
                format::bytes(
                    s.extents
                        .iter()
                        .map(|e| e.data.as_ref().map_or(0, |d| d.length))
                        .sum()
                )
            ),
            Some(Kind::Sem(s)) => format!(
                "mode {:04o}, values {:?}",
                mode(&s.perm),
                s.sems.iter().map(|x| x.value).collect::<Vec<_>>()
            ),
            Some(Kind::Msg(m)) => format!(
                "mode {:04o}, {} message(s) of types {:?}",
                mode(&m.perm),
                m.messages.len(),
                m.messages.iter().map(|x| x.mtype).collect::<Vec<_>>()
            ),
            None => String::new(),
        };
        println!("  {}: {detail}", pipecr::ipc::describe(o));
    }
}

/// The records of `restore-stats.img` beside the image, when a restore wrote one. It is
/// not listed in the inventory, so its own envelope is all that checks it.
fn restore_stats(image: &Image) -> anyhow::Result<Vec<proto::RestoreStats>> {
    let path = image.dir().join(pipecr_image::RESTORE_STATS);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file = pipecr_image::decode_record_file(&path.to_string_lossy(), &bytes)?;
    file.records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            prost::Message::decode(*r)
                .with_context(|| format!("{} record {i}: cannot decode", path.display()))
        })
        .collect()
}

/// Milliseconds, for people.
fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn print_stats(shown: &Shown) {
    for s in &shown.stats {
        println!();
        println!("dump stats");
        println!(
            "  tree stopped {} (to the writing of stats.img); dump {}; memory read {}",
            ms(s.frozen_ns),
            ms(s.total_ns),
            ms(s.memory_read_ns)
        );
        println!(
            "  {} process(es), {} thread(s), {} descriptor(s), {} open file(s), {} pipe(s) \
             holding {}",
            s.processes,
            s.threads,
            s.descriptors,
            s.open_files,
            s.pipes,
            format::bytes(s.pipe_bytes)
        );
        println!(
            "  pages: {} stored ({}), {} shared copy-on-write, {} zero; {} snapshot(s)",
            s.pages_stored,
            format::bytes(s.page_bytes),
            s.pages_reused,
            s.pages_zero,
            s.snapshots
        );
        print_stages(&s.stages);
    }
    for s in &shown.restore_stats {
        println!();
        println!("last restore ({})", format::unix_ms(s.created_unix_ms));
        println!(
            "  {} process(es), {} thread(s), {} page(s) ({}) written; took {}",
            s.processes,
            s.threads,
            s.pages,
            format::bytes(s.page_bytes),
            ms(s.total_ns)
        );
        print_stages(&s.stages);
    }
}

fn print_stages(stages: &[proto::StageTime]) {
    if stages.is_empty() {
        return;
    }
    let list: Vec<String> = stages
        .iter()
        .map(|t| format!("{} {}", t.name, ms(t.ns)))
        .collect();
    println!("  steps: {}", list.join(", "));
}

/// The first `limit` bytes of a data reference, read without loading the whole blob.
fn read_head(image: &Image, d: &proto::DataRef, limit: usize) -> anyhow::Result<Vec<u8>> {
    let path = image.dir().join(&d.file);
    let (mut file, offset, length) = image.open_data(d)?;
    let want = length.min(limit as u64);
    let mut buf = Vec::with_capacity(want as usize);
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.take(want).read_to_end(&mut buf))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(buf)
}

/// Open file id -> every (pid, fd, cloexec) that points at it, over all processes.
type Holders = BTreeMap<u64, Vec<(i32, i32, bool)>>;

fn holders(shown: &Shown) -> Holders {
    let mut out: Holders = BTreeMap::new();
    for p in &shown.processes {
        let Some(table) = shown.fd_tables.iter().find(|t| t.id == p.fd_table) else {
            continue;
        };
        for d in &table.descriptors {
            out.entry(d.file_id)
                .or_default()
                .push((p.pid, d.fd, d.cloexec));
        }
    }
    out
}

/// `, held by pid 12 fd 3, pid 13 fd 3` (nothing for an image without a tree).
fn held_by(holders: &Holders, file: u64) -> String {
    match holders.get(&file) {
        Some(list) if !list.is_empty() => {
            let names: Vec<String> = list
                .iter()
                .map(|(pid, fd, _)| format!("pid {pid} fd {fd}"))
                .collect();
            format!(", held by {}", names.join(", "))
        }
        _ => String::new(),
    }
}

/// The process tree with each process's descriptors, and the open files shared across
/// processes.
fn print_tree(shown: &Shown, holders: &Holders) {
    if shown.processes.is_empty() {
        return;
    }
    println!();
    println!("process tree");
    let pids: Vec<i32> = shown.processes.iter().map(|p| p.pid).collect();
    let mut depth: BTreeMap<i32, usize> = BTreeMap::new();
    for p in &shown.processes {
        let d = if pids.contains(&p.ppid) {
            depth.get(&p.ppid).copied().unwrap_or(0) + 1
        } else {
            0
        };
        depth.insert(p.pid, d);
        let indent = "  ".repeat(d + 1);
        let threads = if p.threads.len() > 1 {
            format!(", {} threads", p.threads.len())
        } else {
            String::new()
        };
        println!(
            "{indent}pid {} ({}), pgid {}, sid {}{threads}",
            p.pid, p.comm, p.pgid, p.sid
        );
        for (with, what) in [
            (p.shares_vm_with, "address space (CLONE_VM)"),
            (p.shares_sighand_with, "signal handlers (CLONE_SIGHAND)"),
            (p.shares_fs_with, "filesystem context (CLONE_FS)"),
        ] {
            if with != 0 {
                println!("{indent}  shares its {what} with pid {with}");
            }
        }
        match shown.fd_tables.iter().find(|t| t.id == p.fd_table) {
            None => println!(
                "{indent}  descriptor table {} missing from the image",
                p.fd_table
            ),
            Some(table) => {
                if table.shared {
                    println!(
                        "{indent}  descriptor table {} shared with other processes (CLONE_FILES)",
                        table.id
                    );
                }
                for d in &table.descriptors {
                    let file = shown.files.iter().find(|f| f.id == d.file_id);
                    let what =
                        file.map_or_else(|| "missing open file".to_owned(), |f| describe(shown, f));
                    let cloexec = if d.cloexec { " [cloexec]" } else { "" };
                    println!(
                        "{indent}  fd {:<3} -> file {}: {what}{cloexec}",
                        d.fd, d.file_id
                    );
                }
            }
        }
        // Its children that exited and are not reaped: one level below it, as children.
        for z in &p.zombies {
            println!("{indent}  pid {} (zombie, {})", z.pid, zombie_end(z));
        }
    }
    let shared = shared_files(holders);
    if !shared.is_empty() {
        println!();
        println!("open files shared across processes");
        for (id, list) in shared {
            println!("  file {id}: {}", descriptor_list(&list));
        }
    }
}

/// How a saved zombie ended, as its parent's `wait` will see it: `exit status 7`,
/// `killed by SIGTERM`, `killed by SIGSEGV, core dumped`; a group or session it led.
fn zombie_end(z: &proto::Zombie) -> String {
    let status = z.exit_status;
    let mut end = match status & 0x7f {
        0 if status & !0xff00 == 0 => format!("exit status {}", status >> 8),
        signo if signo != 0x7f && status & !0xff == 0 => {
            let core = if status & 0x80 != 0 {
                ", core dumped"
            } else {
                ""
            };
            format!("killed by {}{core}", signal_name(signo))
        }
        _ => format!("wait status {status:#x}, which no exit gives"),
    };
    if z.sid == z.pid {
        end.push_str(", session leader");
    } else if z.pgid == z.pid {
        end.push_str(", process group leader");
    }
    end
}

/// One descriptor of one process: where a program finds an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Descriptor {
    pid: i32,
    fd: i32,
}

/// `pid 12 fd 3, pid 13 fd 3`.
fn descriptor_list(list: &[Descriptor]) -> String {
    let names: Vec<String> = list
        .iter()
        .map(|d| format!("pid {} fd {}", d.pid, d.fd))
        .collect();
    names.join(", ")
}

/// Open files held by more than one process: open file id -> every descriptor of it.
fn shared_files(holders: &Holders) -> BTreeMap<u64, Vec<Descriptor>> {
    holders
        .iter()
        .filter(|(_, list)| {
            let mut pids: Vec<i32> = list.iter().map(|h| h.0).collect();
            pids.sort_unstable();
            pids.dedup();
            pids.len() > 1
        })
        .map(|(&id, list)| {
            let list = list
                .iter()
                .map(|&(pid, fd, _)| Descriptor { pid, fd })
                .collect();
            (id, list)
        })
        .collect()
}

/// One pipe (or FIFO) of the image: what it holds, and who reads and writes it.
#[derive(Debug, Serialize)]
struct PipeNode {
    id: u64,
    inode: u64,
    /// The FIFO's path; `None` for an anonymous pipe.
    fifo: Option<String>,
    capacity: u32,
    bytes_pending: u64,
    packet_mode: bool,
    packets: Vec<u32>,
    /// Descriptors of the tree that can read the pipe.
    readers: Vec<Descriptor>,
    /// Descriptors of the tree that can write the pipe.
    writers: Vec<Descriptor>,
    /// No process of the tree holds a read end.
    external_reader: bool,
    /// No process of the tree holds a write end.
    external_writer: bool,
    /// No open file anywhere reads the pipe (its readers were all closed).
    reader_closed: bool,
    /// No open file anywhere writes the pipe (its writers were all closed).
    writer_closed: bool,
}

/// The records as the library's questions about saved open files take them.
fn saved(shown: &Shown) -> Saved<'_> {
    Saved {
        processes: &shown.processes,
        tables: &shown.fd_tables,
        files: &shown.files,
        pipes: &shown.pipes,
    }
}

/// One line about an open file of any kind, as its kind describes it.
fn describe(shown: &Shown, f: &proto::OpenFile) -> String {
    files::describe_saved(f, &saved(shown)).text
}

/// How open file `f` uses a pipe object, if it is an end (or open) of one.
fn pipe_use(shown: &Shown, f: &proto::OpenFile) -> Option<PipeUse> {
    files::describe_saved(f, &saved(shown)).pipe
}

/// The open files of the image that are ends (or opens) of pipe `id`, with how each
/// uses it.
fn pipe_ends(shown: &Shown, id: u64) -> Vec<(&proto::OpenFile, PipeUse)> {
    shown
        .files
        .iter()
        .filter_map(|f| pipe_use(shown, f).map(|u| (f, u)))
        .filter(|(_, u)| u.pipe_id == id)
        .collect()
}

/// The pipe graph: for each pipe, which descriptors read it and which write it. An open
/// file reads when it is a read end or opened for reading (`O_RDONLY`, `O_RDWR`), and
/// writes when it is a write end or opened for writing (`O_WRONLY`, `O_RDWR`).
fn pipe_graph(shown: &Shown, holders: &Holders) -> Vec<PipeNode> {
    shown
        .pipes
        .iter()
        .map(|pipe| {
            let (mut readers, mut writers) = (Vec::new(), Vec::new());
            let mut fifo = None;
            for (f, used) in pipe_ends(shown, pipe.id) {
                let (reads, writes) = (used.reads, used.writes);
                if used.fifo.is_some() {
                    fifo = used.fifo;
                }
                let held = holders.get(&f.id).map_or(&[][..], Vec::as_slice);
                for &(pid, fd, _) in held {
                    if reads {
                        readers.push(Descriptor { pid, fd });
                    }
                    if writes {
                        writers.push(Descriptor { pid, fd });
                    }
                }
            }
            PipeNode {
                id: pipe.id,
                inode: pipe.inode,
                fifo,
                capacity: pipe.capacity,
                bytes_pending: pipe.data.as_ref().map_or(0, |d| d.length),
                packet_mode: pipe.packet_mode,
                packets: pipe.packet_lengths.clone(),
                readers,
                writers,
                external_reader: pipe.external_reader,
                external_writer: pipe.external_writer,
                reader_closed: pipe.reader_closed,
                writer_closed: pipe.writer_closed,
            }
        })
        .collect()
}

/// `  readers:      pid 12 fd 3` from the pipe graph; `end` names the end in the message
/// when nobody in the tree holds one.
fn print_side(label: &str, list: &[Descriptor], external: bool, closed: bool, end: &str) {
    let label = format!("{label}:");
    if external {
        println!("  {label:<13} outside the tree (no process of the tree holds a {end} end)");
    } else if closed {
        println!("  {label:<13} none (closed: no process anywhere holds a {end} end)");
    } else if list.is_empty() {
        println!("  {label:<13} none");
    } else {
        println!("  {label:<13} {}", descriptor_list(list));
    }
}

/// Descriptors whose other side leads outside the tree: restore must be told what to
/// connect them to (the same list `pipecr dump` prints and restore works from).
fn print_external(shown: &Shown) {
    let ends = files::external_ends(&saved(shown));
    if ends.is_empty() {
        return;
    }
    println!();
    println!(
        "external descriptors (their other side is outside the tree; restore connects fds \
         0-2 to its own; others need --inherit-fd, but a terminal is reopened by path)"
    );
    for end in &ends {
        for (pid, fd) in &end.holders {
            println!("  pid {pid} fd {fd}: {}", end.what);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Process state and address space (core.img, mm.img, mem-objects.img).

/// Areas listed in full; above this, areas with nothing saved that are not kernel areas
/// are elided (counted, not listed).
const MAX_AREAS_LISTED: usize = 64;

/// The resource limits always shown.
const MAIN_LIMITS: [u32; 3] = [
    names::RLIMIT_NOFILE,
    names::RLIMIT_STACK,
    names::RLIMIT_CORE,
];

/// Per process: its state and its address space, for people.
fn print_processes(image: &Image, shown: &Shown) {
    let mut pids: Vec<i32> = shown.processes.iter().map(|p| p.pid).collect();
    for pid in shown
        .core
        .iter()
        .map(|c| c.pid)
        .chain(shown.mm.iter().map(|m| m.pid))
    {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    // Pages in pages.img: run indices beyond it mean a damaged image.
    let store_pages = image
        .inventory()
        .files
        .iter()
        .find(|f| f.name == PAGES)
        .map_or(0, |f| f.length / PAGE_SIZE);
    // Store indices referenced by processes already printed (tree order, parents first):
    // a page a child still shares copy-on-write with its parent is stored once.
    let mut seen: HashSet<u64> = HashSet::new();
    for pid in pids {
        let core = shown.core.iter().find(|c| c.pid == pid);
        let mm = shown.mm.iter().find(|m| m.pid == pid);
        if core.is_none() && mm.is_none() {
            continue;
        }
        let comm = shown
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .map_or("?", |p| p.comm.as_str());
        println!();
        println!("pid {pid} ({comm})");
        if let Some(core) = core {
            print_core(core);
        }
        if let Some(mm) = mm {
            print_mm(mm, &shown.mem_objects, store_pages, &mut seen);
        }
    }
}

fn print_core(core: &proto::Core) {
    println!("  cwd:          {}", core.cwd);
    if core.root != "/" {
        println!("  root:         {}", core.root);
    }
    println!("  umask:        {:04o}", core.umask);
    if !core.posix_locks.is_empty() {
        let locks: Vec<String> = core
            .posix_locks
            .iter()
            .map(|l| format!("fd {}: {}", l.fd, pipecr::files::locks::describe_lock(l)))
            .collect();
        println!("  posix locks:  {}", locks.join(", "));
    }
    if core.personality != 0 {
        println!("  personality:  {:#x}", core.personality);
    }
    if core.stop_signal != 0 {
        println!(
            "  stopped:      by {} (a group stop; restored stopped)",
            signal_name(core.stop_signal)
        );
    }
    match &core.prctl {
        Some(p) => {
            let mut what = vec![format!("dumpable {}", p.dumpable)];
            if p.child_subreaper {
                what.push("child subreaper".to_owned());
            }
            match p.thp_disable {
                0 => {}
                1 => what.push("THP disabled".to_owned()),
                v => what.push(format!("THP disabled except where advised ({v:#x})")),
            }
            println!("  prctl:        {}", what.join(", "));
        }
        None if core.thp_disabled_status => {
            println!("  prctl:        THP disabled (dumpable and subreaper not read)")
        }
        None => {}
    }
    for r in &core.child_reports {
        let what = match r.code {
            5 => "stopped",
            6 => "continued",
            _ => "changed state",
        };
        println!(
            "  child {} {what}: its waitpid had yet to collect that",
            r.pid
        );
    }
    let get = |r: u32| core.rlimits.iter().find(|l| l.resource == r);
    let main: Vec<String> = MAIN_LIMITS
        .iter()
        .filter_map(|&r| get(r))
        .map(rlimit_text)
        .collect();
    println!("  limits:       {} (soft/hard)", main.join(", "));
    let other: Vec<String> = core
        .rlimits
        .iter()
        .filter(|l| !MAIN_LIMITS.contains(&l.resource))
        .filter(|l| names::rlimit_initial(l.resource).is_some_and(|i| i != (l.soft, l.hard)))
        .map(rlimit_text)
        .collect();
    if !other.is_empty() {
        println!(
            "                other limits not at Linux's initial values: {}",
            other.join(", ")
        );
    }
    println!(
        "  signals pending for the whole process: {}",
        siginfo_list(&core.shared_pending)
    );
    for t in &core.threads {
        let leader = if t.tid == core.pid { " (leader)" } else { "" };
        // Named when its name is its own, not the process's (the leader's).
        let process_name = core
            .threads
            .iter()
            .find(|l| l.tid == core.pid)
            .map_or("", |l| l.comm.as_str());
        if t.comm.is_empty() || t.comm == process_name {
            println!("  thread {}{leader}", t.tid);
        } else {
            println!("  thread {} \"{}\"{leader}", t.tid, t.comm);
        }
        match &t.regs {
            Some(proto::thread::Regs::X8664(r)) => {
                println!("    rip {:#018x}  rsp {:#018x}", r.rip, r.rsp);
                println!("    {}", syscall_state(r));
            }
            None => println!("    registers of an architecture unknown to this version"),
        }
        println!("    blocked signals: {}", sigmask_text(t.blocked));
        println!("    pending signals: {}", siginfo_list(&t.pending));
        let mut extra = vec![format!("XSAVE area {} B", t.xsave.len())];
        if let Some(xcr0) = pipecr::arch::x86_64::xcr0(&t.xsave) {
            extra.push(format!("XCR0 {xcr0:#x}"));
        }
        match &t.rseq {
            Some(rs) => extra.push(format!(
                "rseq at {:#x} ({} B, signature {:#x})",
                rs.address, rs.length, rs.signature
            )),
            None => extra.push("no rseq".to_owned()),
        }
        println!("    {}", extra.join(", "));
        let mut state = Vec::new();
        if let Some(p) = &t.prctl {
            if p.securebits != 0 {
                state.push(format!("securebits {:#x}", p.securebits));
            }
            if p.pdeathsig != 0 {
                state.push(format!("parent-death signal {}", signal_name(p.pdeathsig)));
            }
        }
        if let Some(persona) = t.personality {
            state.push(format!("personality {persona:#x}"));
        }
        if t.timer_slack_ns != 0 {
            state.push(format!("timer slack {} ns", t.timer_slack_ns));
        }
        if t.no_new_privs {
            state.push("no_new_privs".to_owned());
        }
        if !state.is_empty() {
            println!("    {}", state.join(", "));
        }
        if let Some(c) = &t.creds {
            println!(
                "    own credentials: uid {}/{}/{}/{}, gid {}/{}/{}/{}, groups {:?}, capabilities effective {:#x} permitted {:#x}",
                c.ruid,
                c.euid,
                c.suid,
                c.fsuid,
                c.rgid,
                c.egid,
                c.sgid,
                c.fsgid,
                c.groups,
                c.cap_effective,
                c.cap_permitted
            );
        }
        match &t.seccomp {
            Some(sc) if sc.mode == 1 => println!("    seccomp: strict"),
            Some(sc) => {
                let sizes: Vec<String> = sc
                    .filters
                    .iter()
                    .map(|f| (f.program.len() / 8).to_string())
                    .collect();
                println!(
                    "    seccomp: {} filter(s), oldest first, of {} instruction(s)",
                    sc.filters.len(),
                    sizes.join(", ")
                );
            }
            None => {}
        }
    }
}

/// What the thread was doing, from `orig_rax` and `rax`.
fn syscall_state(r: &proto::X86Regs) -> String {
    let nr = r.orig_rax as i64;
    if nr < 0 {
        return "running user code (not in a system call)".to_owned();
    }
    let name =
        pipecr::arch::x86_64::syscall_name(nr).map_or_else(String::new, |n| format!(" ({n})"));
    let ret = r.rax as i64;
    match pipecr::arch::x86_64::restart_code_name(ret) {
        Some(code) => format!(
            "in system call {nr}{name}, interrupted: rax {ret} = {code} (restarted on resume)"
        ),
        None => format!("after system call {nr}{name}, which returned {ret}"),
    }
}

/// The name of signal `signo`; real-time signals by number.
fn signal_name(signo: i32) -> String {
    names::signal_name(signo).map_or_else(|| format!("signal {signo}"), str::to_owned)
}

/// `none`, or `0x0000000000010002 (SIGINT, SIGCHLD)` (bit N-1 is signal N).
fn sigmask_text(mask: u64) -> String {
    if mask == 0 {
        return "none".to_owned();
    }
    let names: Vec<String> = (1..=64)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(signal_name)
        .collect();
    format!("{mask:#018x} ({})", names.join(", "))
}

/// `none`, or `2 (SIGUSR1, SIGTERM)`, oldest first.
fn siginfo_list(list: &[proto::Siginfo]) -> String {
    if list.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<String> = list.iter().map(|s| signal_name(s.signo)).collect();
    format!("{} ({})", list.len(), names.join(", "))
}

fn rlimit_name(resource: u32) -> String {
    names::rlimit_name(resource).map_or_else(|| format!("rlimit {resource}"), str::to_owned)
}

/// `stack 8 MiB/unlimited`.
fn rlimit_text(l: &proto::Rlimit) -> String {
    // Limits counted in bytes read better in binary units.
    let in_bytes = names::rlimit_in_bytes(l.resource);
    let value = |v: u64| {
        if v == names::RLIM_INFINITY {
            return "unlimited".to_owned();
        }
        if !in_bytes || v == 0 {
            return v.to_string();
        }
        let mut v = v;
        for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
            if v % 1024 != 0 || unit == "TiB" {
                return format!("{v} {unit}");
            }
            v /= 1024;
        }
        unreachable!()
    };
    format!(
        "{} {}/{}",
        rlimit_name(l.resource),
        value(l.soft),
        value(l.hard)
    )
}

/// Short lowercase name of an area kind, as the area list shows it (the kind of memory
/// area that records it names it).
fn vma_kind_name(kind: i32) -> &'static str {
    pipecr::mem::saved_kind(kind).map_or("unknown", |(_, name)| name)
}

/// `rw-p`, as /proc/PID/maps shows it.
fn prot_text(vma: &proto::Vma) -> String {
    let bit = |b: u32, c: char| if vma.prot & b != 0 { c } else { '-' };
    let shared = if vma.flags & proto::VmaFlag::Shared as u32 != 0 {
        's'
    } else {
        'p'
    };
    [bit(1, 'r'), bit(2, 'w'), bit(4, 'x'), shared]
        .iter()
        .collect()
}

/// Pages of `runs` (sorted by start, as the image keeps them) inside `[start, end)`:
/// (stored in the page store, recorded as zero).
fn pages_in(runs: &[proto::PageRun], start: u64, end: u64) -> (u64, u64) {
    let first = runs
        .partition_point(|r| r.start.saturating_add(r.nr_pages.saturating_mul(PAGE_SIZE)) <= start);
    let (mut stored, mut zero) = (0, 0);
    for r in runs[first..].iter().take_while(|r| r.start < end) {
        let r_end = r.start.saturating_add(r.nr_pages.saturating_mul(PAGE_SIZE));
        let n = (r_end.min(end).saturating_sub(r.start.max(start))) / PAGE_SIZE;
        if r.zero {
            zero += n;
        } else {
            stored += n;
        }
    }
    (stored, zero)
}

fn print_mm(
    mm: &proto::Mm,
    objects: &[proto::MemObject],
    store_pages: u64,
    seen: &mut HashSet<u64>,
) {
    let deleted = if mm.exe_deleted { " (deleted)" } else { "" };
    println!("  executable:   {}{deleted}", mm.exe);

    // Kinds, in the order of VmaKind.
    let mut kinds: BTreeMap<i32, usize> = BTreeMap::new();
    for v in &mm.vmas {
        *kinds.entry(v.kind).or_default() += 1;
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{} {n}", vma_kind_name(*k)))
        .collect();
    println!("  areas:        {} ({})", mm.vmas.len(), kinds.join(", "));

    let (mut stored, mut zero, mut shared, mut beyond) = (0u64, 0u64, 0u64, 0u64);
    for r in &mm.pages {
        if r.zero {
            zero = zero.saturating_add(r.nr_pages);
            continue;
        }
        stored = stored.saturating_add(r.nr_pages);
        let end = r.store_index.saturating_add(r.nr_pages);
        beyond += end.saturating_sub(store_pages.max(r.store_index));
        // Only indices inside the store are looked at: a damaged count cannot make this
        // loop long.
        for i in r.store_index..end.min(store_pages) {
            if !seen.insert(i) {
                shared += 1;
            }
        }
    }
    let mut line = format!(
        "  saved pages:  {stored} in {PAGES}, {}",
        format::bytes(stored.saturating_mul(PAGE_SIZE))
    );
    if shared > 0 {
        line.push_str(&format!(
            ", {shared} of them shared copy-on-write with a process above (stored once)"
        ));
    }
    if zero > 0 {
        line.push_str(&format!(
            ", plus {zero} modified file page(s) that are all zeros"
        ));
    }
    println!("{line}");
    if beyond > 0 {
        println!(
            "  WARNING:      {beyond} page(s) point beyond the end of {PAGES} (damaged image)"
        );
    }
    let brk_how = match proto::BrkSource::try_from(mm.brk_source) {
        Ok(proto::BrkSource::HeapEnd) => "end of [heap]: an upper bound, exact when page-aligned",
        Ok(proto::BrkSource::Syscall) => "brk(0) in the process: exact",
        _ => "source unknown",
    };
    println!(
        "  heap:         start_brk {:#x}, brk {:#x} ({brk_how})",
        mm.start_brk, mm.brk
    );
    println!(
        "  code {:#x}-{:#x}, data {:#x}-{:#x}, stack start {:#x}",
        mm.start_code, mm.end_code, mm.start_data, mm.end_data, mm.start_stack
    );

    // The area list, like /proc/PID/maps, with the pages saved for each.
    let rows: Vec<(String, &proto::Vma, String)> = mm
        .vmas
        .iter()
        .map(|v| {
            let saved = if v.flags & proto::VmaFlag::NotSaved as u32 != 0 {
                "-".to_owned()
            } else {
                let (mut s, z) = pages_in(&mm.pages, v.start, v.end);
                if v.object_id != 0
                    && let Some(o) = objects.iter().find(|o| o.id == v.object_id)
                {
                    // The object's pages that this area's window covers.
                    let from = v.pgoff;
                    let to = v.pgoff.saturating_add(v.end.saturating_sub(v.start));
                    s += pages_in(&o.pages, from, to).0;
                }
                if z > 0 {
                    format!("{s}+{z}z")
                } else {
                    s.to_string()
                }
            };
            (format!("{:x}-{:x}", v.start, v.end), v, saved)
        })
        .collect();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let long = rows.len() > MAX_AREAS_LISTED;
    println!("  address space (pages: saved in {PAGES}, \"-\" never saved, \"Nz\" zero pages):");
    println!(
        "    {:<width$}  prot  {:<13}  {:>6}  path",
        "range", "kind", "pages"
    );
    let mut elided = 0usize;
    for (range, v, saved) in &rows {
        let kernel = v.flags & proto::VmaFlag::NotSaved as u32 != 0;
        let special = matches!(vma_kind_name(v.kind), "heap" | "stack");
        if long && !kernel && !special && saved == "0" {
            elided += 1;
            continue;
        }
        if elided > 0 {
            println!("    ... {elided} area(s) with no saved page");
            elided = 0;
        }
        let mut path = v.path.clone();
        if v.flags & proto::VmaFlag::Deleted as u32 != 0 {
            path.push_str(" (deleted)");
        }
        if v.object_id != 0 {
            path.push_str(&format!(" [object {}]", v.object_id));
        }
        let line = format!(
            "    {range:<width$}  {}  {:<13}  {saved:>6}  {path}",
            prot_text(v),
            vma_kind_name(v.kind)
        );
        println!("{}", line.trim_end());
    }
    if elided > 0 {
        println!("    ... {elided} area(s) with no saved page");
    }
    if long {
        println!(
            "    (areas with no saved page elided above {MAX_AREAS_LISTED} areas; --json lists all)"
        );
    }
    let used: Vec<&proto::MemObject> = {
        let ids: Vec<u64> = mm.vmas.iter().map(|v| v.object_id).collect();
        objects.iter().filter(|o| ids.contains(&o.id)).collect()
    };
    for o in used {
        let kind = match proto::MemObjectKind::try_from(o.kind) {
            Ok(proto::MemObjectKind::SharedAnonymous) => "shared anonymous memory",
            Ok(proto::MemObjectKind::Sysv) => "System V shared memory",
            Ok(proto::MemObjectKind::Memfd) => "memfd",
            Ok(proto::MemObjectKind::DeletedFile) => "deleted file",
            _ => "object of unknown kind",
        };
        let pages: u64 = o.pages.iter().filter(|r| !r.zero).map(|r| r.nr_pages).sum();
        let size = o.identity.as_ref().map_or(0, |i| i.size);
        println!(
            "  object {}:     {kind} {}, {} B, {pages} page(s) saved once for every area that maps it",
            o.id, o.name, size
        );
    }
}

// ---------------------------------------------------------------------------------------
// The `--json` document.

/// The `--json` document: the records as the schema has them, except the few byte fields
/// that would print as long arrays of numbers.
#[derive(Debug, Serialize)]
struct JsonView<'a> {
    inventory: &'a proto::Inventory,
    processes: &'a [proto::Process],
    fd_tables: &'a [proto::FdTable],
    pipes: &'a [proto::Pipe],
    files: &'a [proto::OpenFile],
    core: Vec<CoreView<'a>>,
    mm: Vec<MmView<'a>>,
    mem_objects: &'a [proto::MemObject],
    ipc: &'a [proto::IpcObject],
    stats: &'a [proto::DumpStats],
    restore_stats: &'a [proto::RestoreStats],
    /// Derived, as the human output shows it: each pipe with its readers and writers.
    pipe_graph: Vec<PipeNode>,
    /// Derived: open file id -> its descriptors, for files held by several processes.
    shared_files: BTreeMap<u64, Vec<Descriptor>>,
}

fn json_view(shown: &Shown) -> JsonView<'_> {
    let holders = holders(shown);
    JsonView {
        pipe_graph: pipe_graph(shown, &holders),
        shared_files: shared_files(&holders),
        inventory: &shown.inventory,
        processes: &shown.processes,
        fd_tables: &shown.fd_tables,
        pipes: &shown.pipes,
        files: &shown.files,
        core: shown.core.iter().map(CoreView::from).collect(),
        mm: shown.mm.iter().map(MmView::from).collect(),
        mem_objects: &shown.mem_objects,
        ipc: &shown.ipc,
        stats: &shown.stats,
        restore_stats: &shown.restore_stats,
    }
}

/// `Core` with its threads' byte fields summarised.
#[derive(Debug, Serialize)]
struct CoreView<'a> {
    pid: i32,
    cwd: &'a str,
    root: &'a str,
    umask: u32,
    rlimits: &'a [proto::Rlimit],
    personality: u32,
    shared_pending: Vec<SiginfoView>,
    threads: Vec<ThreadView<'a>>,
    posix_locks: &'a [proto::FileLock],
    prctl: Option<&'a proto::ProcessPrctl>,
    stop_signal: i32,
    thp_disabled_status: bool,
    child_reports: &'a [proto::ChildReport],
}

/// `Seccomp`: the mode and each filter's instruction count and flags.
#[derive(Debug, Serialize)]
struct SeccompView {
    mode: u32,
    filters: Vec<(usize, u64)>,
}

/// `Thread`: `regs` as `"x86_64": {...}`; the XSAVE area as its length and XCR0.
#[derive(Debug, Serialize)]
struct ThreadView<'a> {
    tid: i32,
    x86_64: Option<&'a proto::X86Regs>,
    xsave_len: usize,
    xcr0: Option<u64>,
    blocked: u64,
    pending: Vec<SiginfoView>,
    rseq: Option<&'a proto::Rseq>,
    comm: &'a str,
    creds: Option<&'a proto::Creds>,
    prctl: Option<&'a proto::ThreadPrctl>,
    no_new_privs: bool,
    seccomp: Option<SeccompView>,
    timer_slack_ns: u64,
    personality: Option<u32>,
}

/// `Siginfo`: the signal and the two fields every siginfo_t starts with after it, instead
/// of the 128 raw bytes.
#[derive(Debug, Serialize)]
struct SiginfoView {
    signo: i32,
    errno: Option<i32>,
    code: Option<i32>,
    raw_len: usize,
}

impl From<&proto::Siginfo> for SiginfoView {
    fn from(s: &proto::Siginfo) -> Self {
        let int_at = |at: usize| {
            let b: [u8; 4] = s.raw.get(at..at + 4)?.try_into().ok()?;
            Some(i32::from_le_bytes(b))
        };
        SiginfoView {
            signo: s.signo,
            errno: int_at(4),
            code: int_at(8),
            raw_len: s.raw.len(),
        }
    }
}

impl<'a> From<&'a proto::Core> for CoreView<'a> {
    fn from(c: &'a proto::Core) -> Self {
        CoreView {
            pid: c.pid,
            cwd: &c.cwd,
            root: &c.root,
            umask: c.umask,
            rlimits: &c.rlimits,
            personality: c.personality,
            shared_pending: c.shared_pending.iter().map(SiginfoView::from).collect(),
            posix_locks: &c.posix_locks,
            prctl: c.prctl.as_ref(),
            stop_signal: c.stop_signal,
            thp_disabled_status: c.thp_disabled_status,
            child_reports: &c.child_reports,
            threads: c
                .threads
                .iter()
                .map(|t| ThreadView {
                    tid: t.tid,
                    x86_64: match &t.regs {
                        Some(proto::thread::Regs::X8664(r)) => Some(r),
                        None => None,
                    },
                    xsave_len: t.xsave.len(),
                    xcr0: pipecr::arch::x86_64::xcr0(&t.xsave),
                    blocked: t.blocked,
                    pending: t.pending.iter().map(SiginfoView::from).collect(),
                    rseq: t.rseq.as_ref(),
                    comm: &t.comm,
                    creds: t.creds.as_ref(),
                    prctl: t.prctl.as_ref(),
                    no_new_privs: t.no_new_privs,
                    seccomp: t.seccomp.as_ref().map(|s| SeccompView {
                        mode: s.mode,
                        filters: s
                            .filters
                            .iter()
                            .map(|f| (f.program.len() / 8, f.flags))
                            .collect(),
                    }),
                    timer_slack_ns: t.timer_slack_ns,
                    personality: t.personality,
                })
                .collect(),
        }
    }
}

/// One auxiliary vector entry (`AT_*` type and value).
#[derive(Debug, Serialize)]
struct AuxvEntry {
    r#type: u64,
    value: u64,
}

/// `Mm` with `auxv` decoded into entries (native-endian u64 pairs; the image's arch is
/// x86-64, little-endian).
#[derive(Debug, Serialize)]
struct MmView<'a> {
    pid: i32,
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    brk_source: i32,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: Vec<AuxvEntry>,
    exe: &'a str,
    exe_identity: Option<&'a proto::FileIdentity>,
    exe_deleted: bool,
    vmas: &'a [proto::Vma],
    pages: &'a [proto::PageRun],
}

impl<'a> From<&'a proto::Mm> for MmView<'a> {
    fn from(m: &'a proto::Mm) -> Self {
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let auxv = m
            .auxv
            .chunks_exact(16)
            .map(|p| AuxvEntry {
                r#type: word(&p[..8]),
                value: word(&p[8..]),
            })
            .collect();
        MmView {
            pid: m.pid,
            start_code: m.start_code,
            end_code: m.end_code,
            start_data: m.start_data,
            end_data: m.end_data,
            start_brk: m.start_brk,
            brk: m.brk,
            brk_source: m.brk_source,
            start_stack: m.start_stack,
            arg_start: m.arg_start,
            arg_end: m.arg_end,
            env_start: m.env_start,
            env_end: m.env_end,
            auxv,
            exe: &m.exe,
            exe_identity: m.exe_identity.as_ref(),
            exe_deleted: m.exe_deleted,
            vmas: &m.vmas,
            pages: &m.pages,
        }
    }
}
