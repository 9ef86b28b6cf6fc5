//! Builds an image directory from arbitrary bytes and reads it the way a restore does:
//! `Image::open`, every listed metadata file as records, every data reference, and
//! `pipecr::pipe::load`. Nothing may panic, hang or allocate beyond the files' sizes.
//!
//! Input layout: one flag byte, then for each of `pipes.img`, `files.img`,
//! `pipes-data.img` and `inventory.img` a u16 LE length and that many bytes (as many as
//! are left). With flag bit 0 set the inventory is not taken from the input but written
//! to match the other files (right lengths, CRC32C and layouts), so the fuzzer gets past
//! the checksums to the records and the pipe checks behind them.
//!
//! Run (nightly toolchain + cargo-fuzz): `cd fuzz && cargo +nightly fuzz run image_open`.

#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use pipecr_image::proto::{FileDigest, FileLayout, Inventory, OpenFile, Pipe};
use pipecr_image::{FILES, INVENTORY, Image, PIPES, PIPES_DATA, encode_record_file};

const FILES_IN_ORDER: [(&str, FileLayout); 3] = [
    (PIPES, FileLayout::Records),
    (FILES, FileLayout::Records),
    (PIPES_DATA, FileLayout::Raw),
];

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Splits `input` into the flag byte and up to four file contents.
fn split(input: &[u8]) -> (u8, Vec<&[u8]>) {
    let Some((&flag, mut rest)) = input.split_first() else {
        return (0, Vec::new());
    };
    let mut parts = Vec::new();
    for _ in 0..4 {
        let Some((len, after)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(after.len());
        let (part, next) = after.split_at(len);
        parts.push(part);
        rest = next;
    }
    (flag, parts)
}

fn read_everything(dir: &std::path::Path) {
    if let Ok(image) = Image::open(dir) {
        if let Ok(pipes) = image.read_records::<Pipe>(PIPES) {
            for pipe in &pipes {
                if let Some(data) = &pipe.data {
                    let _ = image.read_data(data);
                }
            }
        }
        let _ = image.read_records::<OpenFile>(FILES);
        let _ = image.read_records::<Inventory>(PIPES_DATA);
    }
    let _ = pipecr::pipe::load(dir);
}

fuzz_target!(|input: &[u8]| {
    let (flag, parts) = split(input);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "pipecr-fuzz-image-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).expect("create the fuzz image directory");
    let mut digests = Vec::new();
    for (&(name, layout), bytes) in FILES_IN_ORDER.iter().zip(&parts) {
        std::fs::write(dir.join(name), bytes).expect("write a fuzz image file");
        digests.push(FileDigest {
            name: name.to_string(),
            length: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
            layout: layout as i32,
        });
    }
    if flag & 1 != 0 {
        let inventory = Inventory {
            format_major: pipecr_image::FORMAT_MAJOR,
            format_minor: pipecr_image::FORMAT_MINOR,
            files: digests,
            content: pipecr_image::CONTENT_PIPE.to_string(),
            ..Default::default()
        };
        std::fs::write(dir.join(INVENTORY), encode_record_file(&[inventory]))
            .expect("write the fuzz inventory");
    } else if let Some(bytes) = parts.get(3) {
        std::fs::write(dir.join(INVENTORY), bytes).expect("write the fuzz inventory");
    }
    read_everything(&dir);
    let _ = std::fs::remove_dir_all(&dir);
});
