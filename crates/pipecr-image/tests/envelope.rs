//! The metadata envelope in memory: exact bytes, one test per way a file is rejected, and
//! property tests (round trip, no panic on arbitrary input, every damage detected).

use pipecr_image::proto::{self, DataRef, OpenFile, Pipe, PipeEnd, open_file};
use pipecr_image::{
    FORMAT_MAJOR, HEADER_LEN, ImageError, MAGIC, MAX_RECORD_LEN, RECORD_HEADER_LEN,
    decode_record_file, encode_record_file,
};
use proptest::prelude::*;
use prost::Message;

fn sample_pipe() -> Pipe {
    Pipe {
        id: 7,
        inode: 123_456,
        capacity: 65536,
        data: Some(DataRef {
            file: "pipes-data.img".into(),
            offset: 4096,
            length: 5,
        }),
        packet_mode: true,
        packet_lengths: vec![2, 3],
        ..Default::default()
    }
}

/// A valid file of three records.
fn sample_file() -> Vec<u8> {
    let mut b = sample_pipe();
    b.id = 8;
    encode_record_file(&[sample_pipe(), b, Pipe::default()])
}

fn header(major: u16, minor: u16, reserved: u32) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&major.to_le_bytes());
    v.extend_from_slice(&minor.to_le_bytes());
    v.extend_from_slice(&reserved.to_le_bytes());
    v
}

fn push_record(v: &mut Vec<u8>, payload: &[u8]) {
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    v.extend_from_slice(payload);
}

#[test]
fn encodes_exact_bytes() {
    let pipe = PipeEnd {
        pipe_id: 1,
        end: proto::PipeEndKind::Write as i32,
    };
    let bytes = encode_record_file(&[pipe]);
    let payload = [0x08, 0x01, 0x10, 0x02];
    let crc = crc32c::crc32c(&payload).to_le_bytes();
    let mut expected = b"\x89PCR\r\n\x1a\n\x01\x00\x01\x00\x00\x00\x00\x00".to_vec();
    expected.extend_from_slice(&[4, 0, 0, 0]);
    expected.extend_from_slice(&crc);
    expected.extend_from_slice(&payload);
    assert_eq!(bytes, expected);
    assert_eq!(HEADER_LEN, 16);
    assert_eq!(RECORD_HEADER_LEN, 8);

    let f = decode_record_file("x.img", &bytes).unwrap();
    assert_eq!((f.major, f.minor), (1, 1));
    assert_eq!(f.records, vec![&payload[..]]);
}

#[test]
fn empty_file_of_records_round_trips() {
    let bytes = encode_record_file::<Pipe>(&[]);
    assert_eq!(bytes.len(), HEADER_LEN);
    assert!(decode_record_file("x", &bytes).unwrap().records.is_empty());
}

#[test]
fn round_trip_records() {
    let bytes = sample_file();
    let f = decode_record_file("pipes.img", &bytes).unwrap();
    let pipes: Vec<Pipe> = f.decode_all("pipes.img").unwrap();
    assert_eq!(pipes.len(), 3);
    assert_eq!(pipes[0], sample_pipe());
    assert_eq!(pipes[1].id, 8);
    assert_eq!(pipes[2], Pipe::default());
}

#[test]
fn rejects_truncated_header() {
    let bytes = sample_file();
    for len in 8..HEADER_LEN {
        match decode_record_file("pipes.img", &bytes[..len]) {
            Err(ImageError::Truncated {
                record: None,
                needed: 16,
                available,
                ..
            }) => assert_eq!(available, len as u64),
            other => panic!("len {len}: {other:?}"),
        }
    }
    // Shorter than the magic but a prefix of it: still "truncated", not "bad magic".
    assert!(matches!(
        decode_record_file("pipes.img", &bytes[..3]),
        Err(ImageError::Truncated { record: None, .. })
    ));
    assert!(matches!(
        decode_record_file("pipes.img", b""),
        Err(ImageError::Truncated { record: None, .. })
    ));
}

#[test]
fn rejects_truncated_record() {
    let bytes = sample_file();
    // Cut inside the first record's payload.
    let err =
        decode_record_file("pipes.img", &bytes[..HEADER_LEN + RECORD_HEADER_LEN + 3]).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Truncated {
                record: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    // Cut inside the second record's header.
    let first = HEADER_LEN + RECORD_HEADER_LEN + sample_pipe().encoded_len();
    let err = decode_record_file("pipes.img", &bytes[..first + 5]).unwrap_err();
    match err {
        ImageError::Truncated {
            record: Some(1),
            needed: 8,
            available: 5,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_bad_magic() {
    let mut bytes = sample_file();
    bytes[1] = b'X';
    match decode_record_file("pipes.img", &bytes) {
        Err(ImageError::BadMagic { file }) => assert_eq!(file.to_str(), Some("pipes.img")),
        other => panic!("{other:?}"),
    }
    // Too short and not a prefix of the magic: not ours at all.
    assert!(matches!(
        decode_record_file("pipes.img", b"{\"json\""),
        Err(ImageError::BadMagic { .. })
    ));
}

#[test]
fn rejects_bad_crc() {
    let mut bytes = sample_file();
    let last = bytes.len() - 1; // empty third record: flip into the second's payload
    let second_payload_end = last + 1 - RECORD_HEADER_LEN;
    bytes[second_payload_end - 1] ^= 0x40;
    let err = decode_record_file("pipes.img", &bytes).unwrap_err();
    match &err {
        ImageError::BadCrc {
            file,
            record: 1,
            expected,
            found,
        } => {
            assert_eq!(file.to_str(), Some("pipes.img"));
            assert_ne!(expected, found);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "pipes.img record 1: CRC32C mismatch (damaged image)"
    );
}

#[test]
fn rejects_impossible_length() {
    let mut bytes = header(1, 0, 0);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(b"abc");
    match decode_record_file("pipes.img", &bytes) {
        Err(ImageError::RecordTooLong {
            record: 0,
            length,
            max,
            ..
        }) => {
            assert_eq!(length, u64::from(u32::MAX));
            assert_eq!(max, MAX_RECORD_LEN);
        }
        other => panic!("{other:?}"),
    }
    // One above the limit is refused too; the limit itself is only "truncated" here.
    let mut bytes = header(1, 0, 0);
    bytes.extend_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        decode_record_file("p", &bytes),
        Err(ImageError::RecordTooLong { record: 0, .. })
    ));
}

#[test]
fn huge_claim_in_small_file_is_truncated_without_allocating() {
    // 20 bytes: header + the length field of a record claiming 16 MiB.
    let mut bytes = header(1, 0, 0);
    bytes.extend_from_slice(&MAX_RECORD_LEN.to_le_bytes());
    assert_eq!(bytes.len(), 20);
    assert!(matches!(
        decode_record_file("p", &bytes),
        Err(ImageError::Truncated {
            record: Some(0),
            needed: 8,
            available: 4,
            ..
        })
    ));
    // 24 bytes: the whole record header, claiming 16 MiB that are not there.
    bytes.extend_from_slice(&0u32.to_le_bytes());
    match decode_record_file("p", &bytes) {
        Err(ImageError::Truncated {
            record: Some(0),
            needed,
            available: 8,
            ..
        }) => assert_eq!(needed, 8 + u64::from(MAX_RECORD_LEN)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_unknown_major_version() {
    let mut bytes = sample_file();
    bytes[8] = 2;
    match decode_record_file("pipes.img", &bytes) {
        Err(ImageError::UnsupportedVersion {
            found_major: 2,
            found_minor: pipecr_image::FORMAT_MINOR,
            supported_major: FORMAT_MAJOR,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    bytes[8] = 0;
    assert!(matches!(
        decode_record_file("pipes.img", &bytes),
        Err(ImageError::UnsupportedVersion { found_major: 0, .. })
    ));
}

#[test]
fn accepts_newer_minor_and_ignores_unknown_fields() {
    // A record as a newer writer might make it: a Pipe plus field 99 (varint 1), and
    // nonzero reserved bytes.
    let mut payload = sample_pipe().encode_to_vec();
    payload.extend_from_slice(&[0x98, 0x06, 0x01]);
    let mut bytes = header(1, 7, 0xdead_beef);
    push_record(&mut bytes, &payload);
    let f = decode_record_file("pipes.img", &bytes).unwrap();
    assert_eq!(f.minor, 7);
    let pipes: Vec<Pipe> = f.decode_all("pipes.img").unwrap();
    assert_eq!(pipes, vec![sample_pipe()]);

    // An enum value this version does not know is kept as its number.
    let end = PipeEnd {
        pipe_id: 1,
        end: 42,
    };
    let bytes = encode_record_file(&[end]);
    let back: Vec<PipeEnd> = decode_record_file("f", &bytes)
        .unwrap()
        .decode_all("f")
        .unwrap();
    assert_eq!(back[0].end(), proto::PipeEndKind::Unspecified);
    assert_eq!(back[0].end, 42);
}

#[test]
fn rejects_undecodable_payload() {
    let mut bytes = header(1, 0, 0);
    push_record(&mut bytes, &[0x08]); // field 1 varint, value missing
    let f = decode_record_file("pipes.img", &bytes).unwrap();
    match f.decode_all::<Pipe>("pipes.img") {
        Err(ImageError::Decode { record: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
}

fn data_ref() -> impl Strategy<Value = DataRef> {
    (".{0,20}", any::<u64>(), any::<u64>()).prop_map(|(file, offset, length)| DataRef {
        file,
        offset,
        length,
    })
}

fn pipe() -> impl Strategy<Value = Pipe> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        proptest::option::of(data_ref()),
        any::<bool>(),
        proptest::collection::vec(any::<u32>(), 0..20),
    )
        .prop_map(
            |(id, inode, capacity, data, packet_mode, packet_lengths)| Pipe {
                id,
                inode,
                capacity,
                data,
                packet_mode,
                packet_lengths,
                ..Default::default()
            },
        )
}

fn open_file() -> impl Strategy<Value = OpenFile> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        proptest::option::of((any::<u64>(), any::<i32>())),
    )
        .prop_map(|(id, flags, pos, kind)| OpenFile {
            id,
            flags,
            pos,
            kind: kind.map(|(pipe_id, end)| open_file::Kind::Pipe(PipeEnd { pipe_id, end })),
            ..Default::default()
        })
}

/// Record boundaries (offsets where a record starts or the file ends) of a valid file.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let f = decode_record_file("x", bytes).unwrap();
    let mut at = HEADER_LEN;
    let mut out = vec![at];
    for r in f.records {
        at += RECORD_HEADER_LEN + r.len();
        out.push(at);
    }
    out
}

proptest! {
    #[test]
    fn prop_round_trip_pipes(pipes in proptest::collection::vec(pipe(), 0..10)) {
        let bytes = encode_record_file(&pipes);
        let back: Vec<Pipe> = decode_record_file("pipes.img", &bytes).unwrap().decode_all("pipes.img").unwrap();
        prop_assert_eq!(back, pipes);
    }

    #[test]
    fn prop_round_trip_open_files(files in proptest::collection::vec(open_file(), 0..10)) {
        let bytes = encode_record_file(&files);
        let back: Vec<OpenFile> = decode_record_file("files.img", &bytes).unwrap().decode_all("files.img").unwrap();
        prop_assert_eq!(back, files);
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(f) = decode_record_file("x", &bytes) {
            let _ = f.decode_all::<Pipe>("x");
            let _ = f.decode_all::<OpenFile>("x");
            let _ = f.decode_all::<proto::Inventory>("x");
        }
    }

    #[test]
    fn prop_arbitrary_records_after_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = header(1, 0, 0);
        bytes.extend_from_slice(&body);
        let _ = decode_record_file("x", &bytes);
    }

    /// Flipping bits of any one byte is detected, except in the minor version and the
    /// reserved field, which readers accept with any value (bytes 10..16).
    #[test]
    fn prop_byte_flip_detected(
        pipes in proptest::collection::vec(pipe(), 1..5),
        pos in any::<prop::sample::Index>(),
        mask in 1u8..,
    ) {
        let bytes = encode_record_file(&pipes);
        let i = pos.index(bytes.len());
        let mut damaged = bytes.clone();
        damaged[i] ^= mask;
        let result = decode_record_file("x", &damaged);
        if (10..16).contains(&i) {
            let f = result.unwrap();
            let back: Vec<Pipe> = f.decode_all("x").unwrap();
            prop_assert_eq!(back, pipes);
        } else {
            prop_assert!(result.is_err(), "flip at {} not detected", i);
        }
    }

    /// Cutting the file anywhere but at a record boundary is detected; cutting at a
    /// boundary leaves a valid file of the records before it (the inventory's length
    /// check catches that case).
    #[test]
    fn prop_truncation_detected(
        pipes in proptest::collection::vec(pipe(), 1..5),
        pos in any::<prop::sample::Index>(),
    ) {
        let bytes = encode_record_file(&pipes);
        let cut = pos.index(bytes.len());
        let b = boundaries(&bytes);
        let result = decode_record_file("x", &bytes[..cut]);
        match b.iter().position(|&x| x == cut) {
            Some(n) => {
                let back: Vec<Pipe> = result.unwrap().decode_all("x").unwrap();
                prop_assert_eq!(&back[..], &pipes[..n]);
            }
            None => prop_assert!(result.is_err(), "cut at {} not detected", cut),
        }
    }
}
