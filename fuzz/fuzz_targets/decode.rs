//! Feeds arbitrary bytes to the metadata envelope decoder, then decodes every record as
//! every message type of the schema. Nothing may panic, hang or allocate beyond the
//! input's size; errors are the expected outcome for almost every input.
//!
//! Run (nightly toolchain + cargo-fuzz): `cd fuzz && cargo +nightly fuzz run decode`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pipecr_image::proto::{
    DataRef, FdTable, FileDigest, Inventory, OpenFile, Pipe, PipeEnd, Process,
};
use pipecr_image::{decode_record_file, encode_record_file};
use prost::Message;

fn decode_as<M: Message + Default + PartialEq>(payloads: &[&[u8]]) {
    let Ok(msgs) = payloads
        .iter()
        .map(|p| M::decode(*p))
        .collect::<Result<Vec<M>, _>>()
    else {
        return;
    };
    // Whatever decodes must survive a re-encode/decode round trip unchanged.
    let again = encode_record_file(&msgs);
    let back = decode_record_file("again", &again).expect("re-encoded file must decode");
    let msgs2: Vec<M> = back
        .decode_all("again")
        .expect("re-encoded records must decode");
    assert!(msgs == msgs2, "round trip changed the records");
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = decode_record_file("fuzz.img", data) else {
        return;
    };
    let payloads = &file.records;
    decode_as::<Inventory>(payloads);
    decode_as::<FileDigest>(payloads);
    decode_as::<DataRef>(payloads);
    decode_as::<Pipe>(payloads);
    decode_as::<PipeEnd>(payloads);
    decode_as::<OpenFile>(payloads);
    decode_as::<Process>(payloads);
    decode_as::<FdTable>(payloads);
});
