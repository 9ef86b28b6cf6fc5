//! Image directories: writer -> reader round trip, the atomic write protocol, and one test
//! per way `Image::open`, `read_records` and `read_data` refuse a damaged or hostile image.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use pipecr_image::proto::{
    self, DataRef, FileDigest, FileLayout, Inventory, OpenFile, Pipe, PipeEnd,
};
use pipecr_image::{
    FILES, FORMAT_MAJOR, FORMAT_MINOR, INVENTORY, Image, ImageError, ImageMeta, ImageWriter,
    PAGE_SIZE, PIPES, PIPES_DATA, decode_record_file, encode_record_file,
};

fn meta() -> ImageMeta {
    ImageMeta {
        content: "pipe".into(),
        tool_version: "0.1.0-test".into(),
        kernel_release: "6.1.0-test".into(),
        arch: "x86_64".into(),
    }
}

/// Writes a small pipe image into `parent/img` and returns its path.
fn write_sample(parent: &Path) -> PathBuf {
    let dir = parent.join("img");
    let mut w = ImageWriter::create(&dir, meta()).unwrap();
    let a = w.raw(PIPES_DATA).unwrap().append(b"hello").unwrap();
    let b = w.raw(PIPES_DATA).unwrap().append(&[7u8; 5000]).unwrap();
    let pipes = vec![
        Pipe {
            id: 1,
            inode: 100,
            capacity: 65536,
            data: Some(a),
            packet_mode: false,
            packet_lengths: vec![],
            ..Default::default()
        },
        Pipe {
            id: 2,
            inode: 200,
            capacity: 4096,
            data: Some(b),
            packet_mode: true,
            packet_lengths: vec![1000, 4000],
            ..Default::default()
        },
    ];
    w.write_records(PIPES, &pipes).unwrap();
    let files = vec![OpenFile {
        id: 10,
        flags: 1,
        pos: 0,
        kind: Some(proto::open_file::Kind::Pipe(PipeEnd {
            pipe_id: 1,
            end: proto::PipeEndKind::Write as i32,
        })),
        ..Default::default()
    }];
    w.write_records(FILES, &files).unwrap();
    assert_eq!(w.commit().unwrap(), dir);
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read_inventory(dir: &Path) -> Inventory {
    let bytes = fs::read(dir.join(INVENTORY)).unwrap();
    decode_record_file("i", &bytes)
        .unwrap()
        .decode_all("i")
        .unwrap()
        .remove(0)
}

fn write_inventory(dir: &Path, inv: &Inventory) {
    fs::write(
        dir.join(INVENTORY),
        encode_record_file(std::slice::from_ref(inv)),
    )
    .unwrap();
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
}

#[test]
fn round_trip() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    assert_eq!(entries(&dir), vec![FILES, INVENTORY, PIPES_DATA, PIPES]);

    let img = Image::open(&dir).unwrap();
    assert_eq!(img.dir(), dir);
    let inv = img.inventory();
    assert_eq!(
        (inv.format_major, inv.format_minor),
        (FORMAT_MAJOR, FORMAT_MINOR)
    );
    assert_eq!(inv.content, "pipe");
    assert_eq!(inv.tool_version, "0.1.0-test");
    assert_eq!(inv.kernel_release, "6.1.0-test");
    assert_eq!(inv.arch, "x86_64");
    assert!(inv.created_unix_ms > 1_600_000_000_000);
    let names: Vec<&str> = inv.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec![PIPES_DATA, PIPES, FILES]);
    assert_eq!(inv.files[0].layout(), FileLayout::Raw);
    assert_eq!(inv.files[1].layout(), FileLayout::Records);
    // Blob 1 at 0 (5 bytes), blob 2 at the next page (5000 bytes).
    assert_eq!(inv.files[0].length, PAGE_SIZE + 5000);
    let raw = fs::read(dir.join(PIPES_DATA)).unwrap();
    assert_eq!(inv.files[0].crc32c, crc32c::crc32c(&raw));
    assert_eq!(&raw[..5], b"hello");
    assert!(raw[5..PAGE_SIZE as usize].iter().all(|&b| b == 0));
    assert!(img.has_file(PIPES) && img.has_file(FILES) && !img.has_file("nope.img"));

    let pipes: Vec<Pipe> = img.read_records(PIPES).unwrap();
    assert_eq!(pipes.len(), 2);
    let d0 = pipes[0].data.as_ref().unwrap();
    let d1 = pipes[1].data.as_ref().unwrap();
    assert_eq!((d0.offset, d0.length), (0, 5));
    assert_eq!((d1.offset, d1.length), (PAGE_SIZE, 5000));
    assert_eq!(img.read_data(d0).unwrap(), b"hello");
    assert_eq!(img.read_data(d1).unwrap(), vec![7u8; 5000]);
    let (f, off, len) = img.open_data(d1).unwrap();
    assert_eq!((off, len), (PAGE_SIZE, 5000));
    assert_eq!(f.metadata().unwrap().len(), PAGE_SIZE + 5000);
    assert_eq!(pipes[1].packet_lengths, vec![1000, 4000]);

    let files: Vec<OpenFile> = img.read_records(FILES).unwrap();
    assert_eq!(files[0].id, 10);
    match &files[0].kind {
        Some(proto::open_file::Kind::Pipe(e)) => assert_eq!(e.end(), proto::PipeEndKind::Write),
        other => panic!("expected a pipe end, got {other:?}"),
    }
}

#[test]
fn append_with_fills_at_aligned_offset() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    let mut w = ImageWriter::create(&dir, meta()).unwrap();
    let raw = w.raw(PIPES_DATA).unwrap();
    let a = raw.append(b"x").unwrap();
    let b = raw
        .append_with(3, |f, off| {
            assert_eq!(off, PAGE_SIZE);
            let mut f = f;
            f.seek(SeekFrom::Start(off))?;
            f.write_all(b"abc")
        })
        .unwrap();
    assert_eq!((b.offset, b.length), (PAGE_SIZE, 3));
    // A fill that writes too little is refused and undone.
    let err = raw.append_with(10, |f, off| {
        let mut f = f;
        f.seek(SeekFrom::Start(off))?;
        f.write_all(b"ab")
    });
    assert!(matches!(err, Err(ImageError::FillLength { .. })), "{err:?}");
    let c = raw.append(b"after").unwrap();
    assert_eq!(c.offset, 2 * PAGE_SIZE);
    let empty = raw.append(b"").unwrap();
    assert_eq!((empty.offset, empty.length), (0, 0));
    w.commit().unwrap();

    let img = Image::open(&dir).unwrap();
    assert_eq!(img.read_data(&a).unwrap(), b"x");
    assert_eq!(img.read_data(&b).unwrap(), b"abc");
    assert_eq!(img.read_data(&c).unwrap(), b"after");
    assert_eq!(img.read_data(&empty).unwrap(), b"");
}

#[test]
fn error_message_names_image_file_and_record() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    // Damage a record's payload and make the inventory agree with the damaged file, so
    // only the record CRC can notice.
    flip_byte(&dir.join(PIPES), 16 + 8 + 1);
    let mut inv = read_inventory(&dir);
    let bytes = fs::read(dir.join(PIPES)).unwrap();
    inv.files
        .iter_mut()
        .find(|f| f.name == PIPES)
        .unwrap()
        .crc32c = crc32c::crc32c(&bytes);
    write_inventory(&dir, &inv);
    let img = Image::open(&dir).unwrap();
    let err = img.read_records::<Pipe>(PIPES).unwrap_err();
    assert!(
        matches!(err, ImageError::BadCrc { record: 0, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "image {}: pipes.img record 0: CRC32C mismatch (damaged image)",
            dir.display()
        )
    );
}

#[test]
fn refuses_existing_dir() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("precious"), b"x").unwrap();
    match ImageWriter::create(&dir, meta()) {
        Err(ImageError::AlreadyExists { dir: d }) => assert_eq!(d, dir),
        other => panic!("{other:?}"),
    }
    // A file of that name counts too.
    let file = t.path().join("f");
    fs::write(&file, b"").unwrap();
    assert!(matches!(
        ImageWriter::create(&file, meta()),
        Err(ImageError::AlreadyExists { .. })
    ));
}

#[test]
fn an_empty_dir_becomes_the_image_keeping_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o710)).unwrap();
    let mut w = ImageWriter::create(&dir, meta()).unwrap();
    w.write_records(PIPES, &[Pipe::default()]).unwrap();
    // Until the commit the empty directory is untouched.
    assert!(entries(&dir).is_empty());
    assert_eq!(w.commit().unwrap(), dir);
    assert_eq!(entries(t.path()), vec!["img"]);
    Image::open(&dir).unwrap();
    let mode = fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o710);
}

#[test]
fn a_dropped_writer_leaves_the_empty_dir_empty() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    fs::create_dir(&dir).unwrap();
    let mut w = ImageWriter::create(&dir, meta()).unwrap();
    w.write_records(PIPES, &[Pipe::default()]).unwrap();
    drop(w);
    assert_eq!(entries(t.path()), vec!["img"]);
    assert!(entries(&dir).is_empty());
}

#[test]
fn commit_refuses_dir_created_meanwhile() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    let w = ImageWriter::create(&dir, meta()).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("precious"), b"x").unwrap();
    assert!(matches!(w.commit(), Err(ImageError::AlreadyExists { .. })));
    assert_eq!(entries(t.path()), vec!["img"]);
    assert_eq!(entries(&dir), vec!["precious"]);
}

#[test]
fn dropped_writer_leaves_no_temp_dir() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("img");
    let mut w = ImageWriter::create(&dir, meta()).unwrap();
    w.raw(PIPES_DATA).unwrap().append(b"data").unwrap();
    w.write_records(PIPES, &[Pipe::default()]).unwrap();
    assert_eq!(entries(t.path()).len(), 1); // the temp dir, while writing
    assert!(entries(t.path())[0].starts_with("img.tmp-"));
    drop(w);
    assert!(entries(t.path()).is_empty());
}

#[test]
fn commit_leaves_no_temp_dir() {
    let t = tempfile::tempdir().unwrap();
    write_sample(t.path());
    assert_eq!(entries(t.path()), vec!["img"]);
}

#[test]
fn writer_refuses_bad_and_duplicate_names() {
    let t = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&t.path().join("img"), meta()).unwrap();
    for bad in ["", ".", "..", "a/b", "../x", INVENTORY, "a\0b"] {
        assert!(
            matches!(
                w.write_records::<Pipe>(bad, &[]),
                Err(ImageError::BadFileName { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(w.raw(bad), Err(ImageError::BadFileName { .. })),
            "{bad:?}"
        );
    }
    w.write_records::<Pipe>(PIPES, &[]).unwrap();
    assert!(matches!(
        w.write_records::<Pipe>(PIPES, &[]),
        Err(ImageError::DuplicateFile { .. })
    ));
    assert!(matches!(w.raw(PIPES), Err(ImageError::WrongLayout { .. })));
    w.raw(PIPES_DATA).unwrap();
    assert!(matches!(
        w.write_records::<Pipe>(PIPES_DATA, &[]),
        Err(ImageError::DuplicateFile { .. })
    ));
}

#[test]
fn not_an_image() {
    let t = tempfile::tempdir().unwrap();
    match Image::open(t.path()) {
        Err(ImageError::NotAnImage { dir }) => assert_eq!(dir, t.path()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Image::open(&t.path().join("missing")),
        Err(ImageError::NotAnImage { .. })
    ));
}

#[test]
fn rejects_damaged_inventory() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    let len = fs::metadata(dir.join(INVENTORY)).unwrap().len();
    flip_byte(&dir.join(INVENTORY), len - 1);
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::BadCrc { record: 0, .. })
    ));
    fs::write(dir.join(INVENTORY), b"garbage!garbage!").unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::BadMagic { .. })
    ));
}

#[test]
fn inventory_must_hold_one_record() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    let inv = read_inventory(&dir);
    fs::write(dir.join(INVENTORY), encode_record_file(&[inv.clone(), inv])).unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::InventoryRecords { count: 2, .. })
    ));
    fs::write(dir.join(INVENTORY), encode_record_file::<Inventory>(&[])).unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::InventoryRecords { count: 0, .. })
    ));
}

#[test]
fn rejects_unknown_major_in_inventory() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    // In the envelope header...
    let mut bytes = fs::read(dir.join(INVENTORY)).unwrap();
    bytes[8] = 2;
    fs::write(dir.join(INVENTORY), &bytes).unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::UnsupportedVersion {
            found_major: 2,
            supported_major: 1,
            ..
        })
    ));
    // ...and in the inventory record.
    let mut inv = {
        bytes[8] = 1;
        decode_record_file("i", &bytes)
            .unwrap()
            .decode_all::<Inventory>("i")
            .unwrap()
            .remove(0)
    };
    inv.format_major = 3;
    write_inventory(&dir, &inv);
    let err = Image::open(&dir).unwrap_err();
    assert!(
        matches!(err, ImageError::UnsupportedVersion { found_major: 3, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("format version 3.{FORMAT_MINOR} is not supported")),
        "{err}"
    );
}

#[test]
fn accepts_newer_minor() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    let mut inv = read_inventory(&dir);
    inv.format_minor = FORMAT_MINOR + 5;
    let mut bytes = encode_record_file(&[inv]);
    bytes[10] = 5; // header minor
    fs::write(dir.join(INVENTORY), &bytes).unwrap();
    // Files the inventory does not list are ignored.
    fs::write(dir.join("unlisted.img"), b"whatever").unwrap();
    let img = Image::open(&dir).unwrap();
    assert_eq!(img.inventory().format_minor, FORMAT_MINOR + 5);
    assert!(!img.has_file("unlisted.img"));
    assert_eq!(img.read_records::<Pipe>(PIPES).unwrap().len(), 2);
}

#[test]
fn rejects_missing_data_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    fs::remove_file(dir.join(PIPES_DATA)).unwrap();
    match Image::open(&dir) {
        Err(ImageError::MissingFile { file }) => assert_eq!(file, dir.join(PIPES_DATA)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_listed_non_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    fs::remove_file(dir.join(PIPES_DATA)).unwrap();
    fs::create_dir(dir.join(PIPES_DATA)).unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::NotAFile { .. })
    ));
}

#[test]
fn rejects_checksum_mismatch_in_data_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    flip_byte(&dir.join(PIPES_DATA), 2);
    match Image::open(&dir) {
        Err(ImageError::Checksum {
            file,
            expected,
            found,
        }) => {
            assert_eq!(file, dir.join(PIPES_DATA));
            assert_ne!(expected, found);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_length_mismatch() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    // Cut at a record boundary: the envelope alone could not tell.
    let bytes = fs::read(dir.join(FILES)).unwrap();
    fs::write(dir.join(FILES), &bytes[..16]).unwrap();
    match Image::open(&dir) {
        Err(ImageError::Length {
            file,
            expected,
            found: 16,
        }) => {
            assert_eq!(file, dir.join(FILES));
            assert_eq!(expected, bytes.len() as u64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_data_ref_out_of_range() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    let img = Image::open(&dir).unwrap();
    let file_length = PAGE_SIZE + 5000;
    for (offset, length) in [
        (PAGE_SIZE, 5001),
        (3 * PAGE_SIZE, 1),
        (0, u64::MAX),
        (u64::MAX - 4095, 4096),
    ] {
        let r = DataRef {
            file: PIPES_DATA.into(),
            offset,
            length,
        };
        match img.read_data(&r) {
            Err(ImageError::DataOutOfRange {
                offset: o,
                length: l,
                file_length: fl,
                ..
            }) => assert_eq!((o, l, fl), (offset, length, file_length)),
            other => panic!("{offset} {length}: {other:?}"),
        }
        assert!(matches!(
            img.open_data(&r),
            Err(ImageError::DataOutOfRange { .. })
        ));
    }
    let err = img
        .read_data(&DataRef {
            file: PIPES_DATA.into(),
            offset: 1,
            length: 1,
        })
        .unwrap_err();
    assert!(
        matches!(err, ImageError::DataMisaligned { offset: 1, .. }),
        "{err:?}"
    );
    // Unlisted file, and a metadata file used as data.
    let unlisted = DataRef {
        file: "other.img".into(),
        offset: 0,
        length: 1,
    };
    assert!(matches!(
        img.read_data(&unlisted),
        Err(ImageError::MissingFile { .. })
    ));
    let wrong = DataRef {
        file: PIPES.into(),
        offset: 0,
        length: 1,
    };
    assert!(matches!(
        img.read_data(&wrong),
        Err(ImageError::WrongLayout { .. })
    ));
    assert!(matches!(
        img.read_records::<Pipe>(PIPES_DATA),
        Err(ImageError::WrongLayout { .. })
    ));
    assert!(matches!(
        img.read_records::<Pipe>("nope.img"),
        Err(ImageError::MissingFile { .. })
    ));
}

#[test]
fn rejects_hostile_file_names() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    fs::write(t.path().join("secret"), b"s").unwrap();
    let base = read_inventory(&dir);
    for name in ["../secret", "/etc/passwd", "..", ".", "", "a\\b", INVENTORY] {
        let mut inv = base.clone();
        inv.files.push(FileDigest {
            name: name.into(),
            length: 1,
            crc32c: crc32c::crc32c(b"s"),
            layout: FileLayout::Raw as i32,
        });
        write_inventory(&dir, &inv);
        match Image::open(&dir) {
            Err(ImageError::BadFileName { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // Listed twice.
    let mut inv = base.clone();
    inv.files.push(inv.files[0].clone());
    write_inventory(&dir, &inv);
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::DuplicateFile { .. })
    ));
}

#[cfg(unix)]
#[test]
fn rejects_symlinked_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = write_sample(t.path());
    let target = t.path().join("elsewhere");
    fs::rename(dir.join(PIPES_DATA), &target).unwrap();
    std::os::unix::fs::symlink(&target, dir.join(PIPES_DATA)).unwrap();
    assert!(matches!(
        Image::open(&dir),
        Err(ImageError::NotAFile { .. })
    ));
}
