//! `pipecr show DIR [--json]`: print an image directory for people, or as one JSON
//! document for programs.
//!
//! The image is opened with `pipecr_image::Image::open`, which verifies every listed file
//! (length, CRC32C) first, so a damaged image is an error naming the file before anything
//! is printed. Sections are built from the files the image lists: the inventory always,
//! pipes and open files when present; files this version does not interpret are listed in
//! the inventory and otherwise left alone. New kinds of content (process trees) add a
//! section here and a key in the JSON document.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipecr_image::proto::{self, FileLayout, PipeEndKind, open_file};
use pipecr_image::{FDS, FILES, Image, PIPES, TREE};
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
    /// Print one JSON document: {"inventory", "processes", "fd_tables", "pipes", "files"}.
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
}

/// Opens and verifies the image, then prints it.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Image errors name the image directory and the file (and record) at fault.
    let image = Image::open(&args.dir)?;
    let shown = Shown {
        inventory: image.inventory().clone(),
        processes: records(&image, TREE)?,
        fd_tables: records(&image, FDS)?,
        pipes: records(&image, PIPES)?,
        files: records(&image, FILES)?,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&shown).context("cannot encode JSON")?;
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
    print_tree(shown, &holders);
    print_external(shown, &holders);

    for pipe in &shown.pipes {
        println!();
        let fifo_path = shown.files.iter().find_map(|f| match &f.kind {
            Some(open_file::Kind::Fifo(x)) if x.pipe_id == pipe.id => Some(x.path.as_str()),
            _ => None,
        });
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
        let ends: Vec<_> = shown
            .files
            .iter()
            .filter(|f| match &f.kind {
                Some(open_file::Kind::Pipe(e)) => e.pipe_id == pipe.id,
                Some(open_file::Kind::Fifo(x)) => x.pipe_id == pipe.id,
                _ => false,
            })
            .collect();
        if ends.is_empty() {
            println!("  ends:         none recorded");
        }
        if pipe.external_writer {
            println!("  writers:      outside the tree (no process of the tree holds a write end)");
        }
        if pipe.external_reader {
            println!("  readers:      outside the tree (no process of the tree holds a read end)");
        }
        for f in ends {
            let which = match &f.kind {
                Some(open_file::Kind::Pipe(end)) => match PipeEndKind::try_from(end.end) {
                    Ok(PipeEndKind::Read) => "read end",
                    Ok(PipeEndKind::Write) => "write end",
                    _ => "end of unknown kind",
                },
                _ => "FIFO open",
            };
            println!(
                "  file {}:       {which}, {}{}",
                f.id,
                format::open_flags(f.flags),
                held_by(&holders, f.id)
            );
        }
    }

    // Open files that are not ends of a listed pipe: other kinds, for later versions.
    let others: Vec<_> = shown
        .files
        .iter()
        .filter(|f| match &f.kind {
            Some(open_file::Kind::Pipe(e)) => !shown.pipes.iter().any(|p| p.id == e.pipe_id),
            Some(open_file::Kind::Fifo(x)) => !shown.pipes.iter().any(|p| p.id == x.pipe_id),
            _ => true,
        })
        .collect();
    if !others.is_empty() {
        println!();
        println!("other open files");
        for f in others {
            println!(
                "  file {}: {}, {}, pos {}{}",
                f.id,
                describe(f, &shown.pipes),
                format::open_flags(f.flags),
                f.pos,
                held_by(&holders, f.id)
            );
        }
    }
    Ok(())
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
        let Some(table) = shown.fd_tables.iter().find(|t| t.id == p.fd_table) else {
            println!(
                "{indent}  descriptor table {} missing from the image",
                p.fd_table
            );
            continue;
        };
        if table.shared {
            println!(
                "{indent}  descriptor table {} shared with other processes (CLONE_FILES)",
                table.id
            );
        }
        for d in &table.descriptors {
            let file = shown.files.iter().find(|f| f.id == d.file_id);
            let what = file.map_or_else(
                || "missing open file".to_owned(),
                |f| describe(f, &shown.pipes),
            );
            let cloexec = if d.cloexec { " [cloexec]" } else { "" };
            println!(
                "{indent}  fd {:<3} -> file {}: {what}{cloexec}",
                d.fd, d.file_id
            );
        }
    }
    let shared: Vec<_> = holders
        .iter()
        .filter(|(_, list)| {
            let mut pids: Vec<i32> = list.iter().map(|h| h.0).collect();
            pids.dedup();
            pids.len() > 1
        })
        .collect();
    if !shared.is_empty() {
        println!();
        println!("open files shared across processes");
        for (id, list) in shared {
            let names: Vec<String> = list
                .iter()
                .map(|(pid, fd, _)| format!("pid {pid} fd {fd}"))
                .collect();
            println!("  file {id}: {}", names.join(", "));
        }
    }
}

/// One line about an open file of any kind.
fn describe(f: &proto::OpenFile, pipes: &[proto::Pipe]) -> String {
    let pipe_note = |id: u64| {
        pipes.iter().find(|p| p.id == id).map_or_else(
            || format!("pipe {id} (missing)"),
            |p| {
                let pending = p.data.as_ref().map_or(0, |d| d.length);
                let mut s = format!("pipe {id}, {pending} B pending");
                if p.packet_mode {
                    s.push_str(", packet mode");
                }
                s
            },
        )
    };
    match &f.kind {
        Some(open_file::Kind::Pipe(e)) => {
            let which = match PipeEndKind::try_from(e.end) {
                Ok(PipeEndKind::Read) => "read end",
                Ok(PipeEndKind::Write) => "write end",
                _ => "end",
            };
            format!("{which} of {}", pipe_note(e.pipe_id))
        }
        Some(open_file::Kind::Fifo(x)) => {
            let gone = if x.unlinked { " (unlinked)" } else { "" };
            format!("FIFO {}{gone}, {}", x.path, pipe_note(x.pipe_id))
        }
        Some(open_file::Kind::Regular(x)) => {
            let gone = if x.unlinked {
                " (unlinked, contents in image)"
            } else {
                ""
            };
            format!("file {}{gone}", x.path)
        }
        Some(open_file::Kind::Directory(x)) => format!("directory {}", x.path),
        Some(open_file::Kind::CharDevice(x)) => {
            let tty = if x.terminal { "terminal " } else { "" };
            format!("{tty}{} ({}:{})", x.path, x.major, x.minor)
        }
        Some(open_file::Kind::UnixSocket(x)) => {
            let ty = match proto::SocketType::try_from(x.r#type) {
                Ok(proto::SocketType::Stream) => "stream",
                Ok(proto::SocketType::Dgram) => "datagram",
                Ok(proto::SocketType::Seqpacket) => "seqpacket",
                _ => "unknown type",
            };
            let queued = x.queue.as_ref().map_or(0, |d| d.length);
            let ext = if x.external {
                ", peer outside the tree"
            } else {
                ""
            };
            format!(
                "unix {ty} socket:[{}] -> socket:[{}], {queued} B queued{ext}",
                x.inode, x.peer_inode
            )
        }
        Some(open_file::Kind::Eventfd(x)) => {
            let sem = if x.semaphore { ", semaphore" } else { "" };
            format!("eventfd, count {}{sem}", x.count)
        }
        Some(open_file::Kind::Memfd(x)) => {
            format!("memfd:{} ({} B, seals {:#x})", x.name, x.size, x.seals)
        }
        None => "a kind unknown to this version".to_owned(),
    }
}

/// Descriptors whose other side leads outside the tree: restore must be told what to
/// connect them to.
fn print_external(shown: &Shown, holders: &Holders) {
    let mut lines = Vec::new();
    for f in &shown.files {
        let why = match &f.kind {
            Some(open_file::Kind::Pipe(e)) => shown
                .pipes
                .iter()
                .find(|p| p.id == e.pipe_id)
                .and_then(|p| {
                    let reads = PipeEndKind::try_from(e.end) == Ok(PipeEndKind::Read);
                    match (reads, p.external_writer, p.external_reader) {
                        (true, true, _) => Some(format!(
                            "reads pipe {} whose writers are outside the tree",
                            p.id
                        )),
                        (false, _, true) => Some(format!(
                            "writes pipe {} whose readers are outside the tree",
                            p.id
                        )),
                        _ => None,
                    }
                }),
            Some(open_file::Kind::UnixSocket(x)) if x.external => Some(format!(
                "unix socket:[{}] whose peer socket:[{}] is outside the tree",
                x.inode, x.peer_inode
            )),
            _ => None,
        };
        if let Some(why) = why {
            for (pid, fd, _) in holders.get(&f.id).into_iter().flatten() {
                lines.push(format!("  pid {pid} fd {fd}: {why}"));
            }
        }
    }
    if !lines.is_empty() {
        println!();
        println!("external descriptors (their other side is outside the tree)");
        for line in lines {
            println!("{line}");
        }
    }
}
