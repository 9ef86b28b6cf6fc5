//! `pipecr demo --pipes-only`: an in-process round trip through the whole pipe path, with
//! numbers; needs no capability.
//!
//! For each demo pipe (a byte stream and a packet-mode pipe): fill it, checkpoint it (and
//! show it still holds the same bytes), save the image, load it, restore it into a new
//! pipe, and compare byte for byte and packet for packet.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use pipecr::pipe;
use rustix::pipe::{PipeFlags, fcntl_getpipe_size, pipe_with};

use crate::format;

/// One pipe the demo works on: the live pipe and what was written into it.
struct Subject {
    name: &'static str,
    read: OwnedFd,
    write: OwnedFd,
    /// Everything written, in order.
    payload: Vec<u8>,
    /// In packet mode, the length of each write.
    packets: Option<Vec<u32>>,
}

/// Packet sizes written to the packet-mode pipe: small, odd, page-sized, and in between.
const PACKET_SIZES: &[usize] = &[1, 17, 100, 512, 1000, 4096, 3000, 64];

/// Runs every step for every subject, images under `dir` (kept) or a temporary directory;
/// any difference is an error.
pub fn run(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (base, _tmp) = super::demo_workdir::work_dir(dir)?;
    println!("pipecr demo: in-process pipe checkpoint and restore");
    println!("images in {}", base.display());
    for subject in setup()? {
        println!();
        round_trip(&subject, &base.join(format!("{}-pipe", subject.name)))
            .with_context(|| format!("{} pipe", subject.name))?;
    }
    println!();
    println!("all pipes restored identically");
    if dir.is_some() {
        println!("images kept in {} (try: pipecr show DIR)", base.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates and fills the demo pipes.
fn setup() -> anyhow::Result<Vec<Subject>> {
    let flags = PipeFlags::CLOEXEC | PipeFlags::NONBLOCK;
    let (read, write) = pipe_with(flags).context("pipe2")?;
    let payload: Vec<u8> = (0..400)
        .flat_map(|i| {
            format!("pipecr demo line {i:04}: bytes in flight survive the trip\n").into_bytes()
        })
        .collect();
    write_all(write.as_fd(), &payload)?;
    let stream = Subject {
        name: "stream",
        read,
        write,
        payload,
        packets: None,
    };

    let (read, write) = pipe_with(flags | PipeFlags::DIRECT).context("pipe2(O_DIRECT)")?;
    let mut payload = Vec::new();
    for (i, &len) in PACKET_SIZES.iter().enumerate() {
        let fill = b'A' + (i % 26) as u8;
        let packet: Vec<u8> = format!("<{i}>")
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat(fill))
            .take(len)
            .collect();
        let n = rustix::io::write(&write, &packet).context("write packet")?;
        ensure!(n == len, "short packet write: {n} of {len} bytes");
        payload.extend_from_slice(&packet);
    }
    let packets = Subject {
        name: "packet",
        read,
        write,
        payload,
        packets: Some(PACKET_SIZES.iter().map(|&n| n as u32).collect()),
    };
    Ok(vec![stream, packets])
}

fn round_trip(s: &Subject, dir: &Path) -> anyhow::Result<()> {
    let tag = format!("[{}]", s.name);
    let capacity = fcntl_getpipe_size(&s.read).context("F_GETPIPE_SZ")?;
    match &s.packets {
        Some(p) => println!(
            "{tag} filled: {} in {} packets {}, capacity {}",
            format::bytes(s.payload.len() as u64),
            p.len(),
            format::packet_list(p),
            format::bytes(capacity as u64)
        ),
        None => println!(
            "{tag} filled: {}, capacity {}",
            format::bytes(s.payload.len() as u64),
            format::bytes(capacity as u64)
        ),
    }

    // Checkpoint: the pipe must hold the same bytes afterwards.
    let before = pending(s.read.as_fd())?;
    let (image, took) = timed(|| pipe::checkpoint_ends(&[s.read.as_fd(), s.write.as_fd()]))
        .context("checkpoint")?;
    let after = pending(s.read.as_fd())?;
    println!(
        "{tag} checkpoint: {} copied in {}; FIONREAD {before} before, {after} after",
        format::bytes(image.data.len() as u64),
        micros(took)
    );
    ensure!(
        before == after,
        "checkpoint consumed data: FIONREAD {before} -> {after}"
    );
    compare(s, &image.data, image.packets.as_deref(), "checkpoint")?;

    let (saved, took) = timed(|| pipe::save(&image, dir)).context("save")?;
    println!(
        "{tag} save: {} in {} files at {}, took {}",
        format::bytes(dir_size(&saved)?),
        std::fs::read_dir(&saved)?.count(),
        saved.display(),
        micros(took)
    );

    let (loaded, took) = timed(|| pipe::load(&saved)).context("load")?;
    println!("{tag} load: checksums verified, took {}", micros(took));
    ensure!(
        loaded == image,
        "the loaded image differs from the one saved"
    );

    let ((read, _write), took) = timed(|| pipe::restore(&loaded)).context("restore")?;
    let restored_capacity = fcntl_getpipe_size(&read).context("F_GETPIPE_SZ")?;
    println!(
        "{tag} restore: new pipe with capacity {}, {} pending, took {}",
        format::bytes(restored_capacity as u64),
        format::bytes(pending(read.as_fd())?),
        micros(took)
    );
    ensure!(
        restored_capacity == capacity,
        "capacity differs: {capacity} saved, {restored_capacity} restored"
    );

    let (data, reads) = drain(read.as_fd())?;
    compare(
        s,
        &data,
        s.packets.as_ref().map(|_| reads.as_slice()),
        "restored pipe",
    )?;
    match &s.packets {
        Some(p) => println!(
            "{tag} verify: {} read back in {} packets, identical",
            format::bytes(data.len() as u64),
            p.len()
        ),
        None => println!(
            "{tag} verify: {} read back, identical",
            format::bytes(data.len() as u64)
        ),
    }

    // The original pipe still holds everything it held before the checkpoint.
    let (data, reads) = drain(s.read.as_fd())?;
    compare(
        s,
        &data,
        s.packets.as_ref().map(|_| reads.as_slice()),
        "original pipe",
    )?;
    println!("{tag} original pipe: still held all {} bytes", data.len());
    Ok(())
}

/// Checks `data` (and, in packet mode, the packet lengths seen) against what was written.
fn compare(s: &Subject, data: &[u8], packets: Option<&[u32]>, what: &str) -> anyhow::Result<()> {
    if data != s.payload.as_slice() {
        let at = data.iter().zip(&s.payload).position(|(a, b)| a != b);
        match at {
            Some(at) => bail!(
                "{what}: bytes differ from offset {at} ({} bytes, {} expected)",
                data.len(),
                s.payload.len()
            ),
            None => bail!("{what}: {} bytes, {} expected", data.len(), s.payload.len()),
        }
    }
    if let Some(expected) = &s.packets {
        let got = packets.unwrap_or_default();
        ensure!(
            got == expected.as_slice(),
            "{what}: packets {} differ from those written {}",
            format::packet_list(got),
            format::packet_list(expected)
        );
    }
    Ok(())
}

fn pending(fd: BorrowedFd<'_>) -> anyhow::Result<u64> {
    rustix::io::ioctl_fionread(fd).context("ioctl(FIONREAD)")
}

/// Reads exactly what FIONREAD says is pending (so a blocking end never blocks); returns
/// the bytes and the length of each read, which in packet mode is one packet each.
fn drain(fd: BorrowedFd<'_>) -> anyhow::Result<(Vec<u8>, Vec<u32>)> {
    let total = usize::try_from(pending(fd)?)?;
    let mut data = vec![0u8; total];
    let mut reads = Vec::new();
    let mut filled = 0;
    while filled < total {
        let n = rustix::io::read(fd, &mut data[filled..]).context("read")?;
        ensure!(n > 0, "pipe ended after {filled} of {total} bytes");
        reads.push(n as u32);
        filled += n;
    }
    Ok((data, reads))
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> anyhow::Result<()> {
    while !bytes.is_empty() {
        let n = rustix::io::write(fd, bytes).context("write")?;
        bytes = &bytes[n..];
    }
    Ok(())
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

fn timed<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<(T, Duration), E> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed()))
}

fn micros(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}
