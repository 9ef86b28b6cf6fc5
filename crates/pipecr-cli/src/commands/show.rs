//! `pipecr show DIR [--json]`: print an image directory for people, or as one JSON
//! document for programs.
//!
//! The image is opened with `pipecr_image::Image::open`, which verifies every listed file
//! (length, CRC32C) first, so a damaged image is an error naming the file before anything
//! is printed. Sections are built from the files the image lists: the inventory always,
//! pipes and open files when present; files this version does not interpret are listed in
//! the inventory and otherwise left alone. New kinds of content (process trees) add a
//! section here and a key in the JSON document.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipecr_image::proto::{self, FileLayout, PipeEndKind, open_file};
use pipecr_image::{FILES, Image, PIPES};
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
    /// Print one JSON document: {"inventory": ..., "pipes": [...], "files": [...]}.
    #[arg(long)]
    json: bool,
}

/// Everything `show` reads from an image; also the shape of the `--json` document.
#[derive(Debug, Serialize)]
struct Shown {
    inventory: proto::Inventory,
    pipes: Vec<proto::Pipe>,
    files: Vec<proto::OpenFile>,
}

/// Opens and verifies the image, then prints it.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Image errors name the image directory and the file (and record) at fault.
    let image = Image::open(&args.dir)?;
    let shown = Shown {
        inventory: image.inventory().clone(),
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

    for pipe in &shown.pipes {
        println!();
        println!("pipe {} (pipe:[{}])", pipe.id, pipe.inode);
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
            .filter(|f| matches!(&f.kind, Some(open_file::Kind::Pipe(e)) if e.pipe_id == pipe.id))
            .collect();
        if ends.is_empty() {
            println!("  ends:         none recorded");
        }
        for f in ends {
            if let Some(open_file::Kind::Pipe(end)) = &f.kind {
                let which = match PipeEndKind::try_from(end.end) {
                    Ok(PipeEndKind::Read) => "read end",
                    Ok(PipeEndKind::Write) => "write end",
                    _ => "end of unknown kind",
                };
                println!(
                    "  file {}:       {which}, {}",
                    f.id,
                    format::open_flags(f.flags)
                );
            }
        }
    }

    // Open files that are not ends of a listed pipe: other kinds, for later versions.
    let others: Vec<_> = shown
        .files
        .iter()
        .filter(|f| match &f.kind {
            Some(open_file::Kind::Pipe(e)) => !shown.pipes.iter().any(|p| p.id == e.pipe_id),
            None => true,
        })
        .collect();
    if !others.is_empty() {
        println!();
        println!("other open files");
        for f in others {
            let kind = match &f.kind {
                Some(open_file::Kind::Pipe(e)) => format!("end of missing pipe {}", e.pipe_id),
                None => "kind unknown to this version".to_owned(),
            };
            println!(
                "  file {}: {kind}, {}, pos {}",
                f.id,
                format::open_flags(f.flags),
                f.pos
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
