//! In-process pipe checkpoint and restore, checked byte for byte: every case the RFC's
//! interface must hold for (empty, partly full, full at 64 KiB and 1 MiB, packet mode,
//! O_NONBLOCK, only a write end, data from splice and vmsplice, refused capacity).

mod common;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

use std::path::{Path, PathBuf};

use pipecr::pipe::{self, End, PipeError, PipeImage};
use pipecr_image::{Image, ImageWriter, proto};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};
use rustix::thread::{CapabilitySet, CapabilitySets};

use common::drain;

fn new_pipe(flags: PipeFlags) -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(flags | PipeFlags::CLOEXEC).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn pending(fd: BorrowedFd<'_>) -> u64 {
    rustix::io::ioctl_fionread(fd).unwrap()
}

fn write_all(fd: BorrowedFd<'_>, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        off += rustix::io::write(fd, &data[off..]).unwrap();
    }
}

fn flags(fd: BorrowedFd<'_>) -> OFlags {
    rustix::fs::fcntl_getfl(fd).unwrap()
}

fn capacity(fd: BorrowedFd<'_>) -> usize {
    rustix::pipe::fcntl_getpipe_size(fd).unwrap()
}

/// Checkpoints through `at`, checks the original still holds `expected`, restores, and
/// checks the new pipe holds `expected` too. Returns the image and the new ends.
fn round_trip(at: BorrowedFd<'_>, expected: &[u8]) -> (PipeImage, OwnedFd, OwnedFd) {
    let before = pending(reader_of(at).as_fd());
    let image = pipe::checkpoint(at).unwrap();
    assert_eq!(image.data, expected, "checkpointed bytes");
    assert_eq!(
        pending(reader_of(at).as_fd()),
        before,
        "checkpoint consumed data"
    );
    let (r, w) = pipe::restore(&image).unwrap();
    assert_eq!(
        pending(r.as_fd()),
        expected.len() as u64,
        "restored pending bytes"
    );
    assert_eq!(
        capacity(w.as_fd()),
        image.capacity as usize,
        "restored capacity"
    );
    (image, r, w)
}

fn reader_of(fd: BorrowedFd<'_>) -> OwnedFd {
    pipecr::sys::fd::reopen(fd, OFlags::RDONLY | OFlags::NONBLOCK).unwrap()
}

#[test]
fn empty_pipe_keeps_capacity_and_holds_nothing() {
    let (r, _w) = new_pipe(PipeFlags::empty());
    rustix::pipe::fcntl_setpipe_size(&r, 16 * 4096).unwrap();
    let (image, nr, _nw) = round_trip(r.as_fd(), &[]);
    assert_eq!(image.capacity, 16 * 4096);
    assert_eq!(image.packets, None);
    assert_eq!(capacity(nr.as_fd()), 16 * 4096);
    assert_eq!(drain(nr.as_fd()).0, Vec::<u8>::new());
}

#[test]
fn partly_full_pipe_is_copied_and_left_intact() {
    let (r, w) = new_pipe(PipeFlags::empty());
    let data = pattern(10_000, 1);
    write_all(w.as_fd(), &data);
    let (image, nr, _nw) = round_trip(r.as_fd(), &data);
    assert_eq!(image.capacity, 65536);
    assert_eq!(image.ends.len(), 1);
    assert_eq!(image.ends[0].end, End::Read);
    assert_eq!(drain(nr.as_fd()).0, data);
    // The original gives its reader exactly the bytes it had.
    assert_eq!(drain(r.as_fd()).0, data);
}

#[test]
fn full_pipe_at_default_64k() {
    let (r, w) = new_pipe(PipeFlags::NONBLOCK);
    let data = pattern(65536, 2);
    write_all(w.as_fd(), &data);
    assert_eq!(
        rustix::io::write(&w, b"x"),
        Err(Errno::AGAIN),
        "pipe should be full"
    );
    let (image, nr, nw) = round_trip(r.as_fd(), &data);
    assert_eq!(image.capacity, 65536);
    rustix::fs::fcntl_setfl(&nw, OFlags::NONBLOCK).unwrap();
    assert_eq!(
        rustix::io::write(&nw, b"x"),
        Err(Errno::AGAIN),
        "restored pipe is full too"
    );
    assert_eq!(drain(nr.as_fd()).0, data);
}

#[test]
fn full_pipe_at_1_mib() {
    let (r, w) = new_pipe(PipeFlags::NONBLOCK);
    rustix::pipe::fcntl_setpipe_size(&w, 1 << 20).unwrap();
    let data = pattern(1 << 20, 3);
    write_all(w.as_fd(), &data);
    let (image, nr, nw) = round_trip(w.as_fd(), &data);
    assert_eq!(image.capacity, 1 << 20);
    rustix::fs::fcntl_setfl(&nw, OFlags::NONBLOCK).unwrap();
    assert_eq!(
        rustix::io::write(&nw, b"x"),
        Err(Errno::AGAIN),
        "restored pipe is full too"
    );
    assert_eq!(drain(nr.as_fd()).0, data);
    assert_eq!(drain(r.as_fd()).0, data);
}

const PACKETS: &[usize] = &[1, 17, 4096, 100, 3000, 2, 4095, 512, 1, 777];

fn packet_pipe() -> (OwnedFd, OwnedFd, Vec<u8>) {
    let (r, w) = new_pipe(PipeFlags::DIRECT);
    let mut all = Vec::new();
    for (i, &len) in PACKETS.iter().enumerate() {
        let packet = pattern(len, i as u8);
        assert_eq!(rustix::io::write(&w, &packet).unwrap(), len);
        all.extend(packet);
    }
    (r, w, all)
}

#[test]
fn packet_mode_keeps_every_boundary_from_the_write_end() {
    let (_r, w, all) = packet_pipe();
    let (image, nr, nw) = round_trip(w.as_fd(), &all);
    let lengths: Vec<u32> = PACKETS.iter().map(|&l| l as u32).collect();
    assert_eq!(image.packets.as_deref(), Some(&lengths[..]));
    assert!(
        flags(nw.as_fd()).contains(OFlags::DIRECT),
        "write end stays in packet mode"
    );
    let (bytes, reads) = drain(nr.as_fd());
    assert_eq!(bytes, all);
    assert_eq!(reads, PACKETS, "one read per packet after restore");
}

#[test]
fn packet_mode_is_seen_from_the_read_end_alone() {
    let (r, _w, all) = packet_pipe();
    let (image, nr, _nw) = round_trip(r.as_fd(), &all);
    assert_eq!(image.packets.as_ref().map(Vec::len), Some(PACKETS.len()));
    let (_, reads) = drain(nr.as_fd());
    assert_eq!(reads, PACKETS);
    // The original still hands out the same packets.
    assert_eq!(drain(r.as_fd()).1, PACKETS);
}

#[test]
fn nonblocking_flags_of_each_end_are_restored() {
    let (r, w) = new_pipe(PipeFlags::empty());
    rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK).unwrap();
    write_all(w.as_fd(), b"hello");
    let image = pipe::checkpoint_ends(&[r.as_fd(), w.as_fd()]).unwrap();
    let (nr, nw) = pipe::restore(&image).unwrap();
    assert_eq!(
        flags(nr.as_fd()) & (OFlags::RWMODE | OFlags::NONBLOCK),
        OFlags::RDONLY | OFlags::NONBLOCK
    );
    assert_eq!(
        flags(nw.as_fd()) & (OFlags::RWMODE | OFlags::NONBLOCK),
        OFlags::WRONLY
    );

    // And the other way round.
    rustix::fs::fcntl_setfl(&r, OFlags::empty()).unwrap();
    rustix::fs::fcntl_setfl(&w, OFlags::NONBLOCK).unwrap();
    let image = pipe::checkpoint_ends(&[r.as_fd(), w.as_fd()]).unwrap();
    let (nr, nw) = pipe::restore(&image).unwrap();
    assert!(!flags(nr.as_fd()).contains(OFlags::NONBLOCK));
    assert!(flags(nw.as_fd()).contains(OFlags::NONBLOCK));
    assert_eq!(drain(nr.as_fd()).0, b"hello");
}

#[test]
fn only_the_write_end_at_hand() {
    let (r, w) = new_pipe(PipeFlags::empty());
    let data = pattern(3000, 4);
    write_all(w.as_fd(), &data);
    drop(r);
    let image = pipe::checkpoint(w.as_fd()).unwrap();
    assert_eq!(image.data, data);
    assert_eq!(image.ends.len(), 1);
    assert_eq!(image.ends[0].end, End::Write);
    assert_eq!(image.ends[0].flags & OFlags::RWMODE, OFlags::WRONLY);
    // Nothing was consumed: a reader opened now still gets every byte.
    assert_eq!(drain(w.as_fd()).0, data);
    let (nr, nw) = pipe::restore(&image).unwrap();
    assert_eq!(flags(nw.as_fd()) & OFlags::RWMODE, OFlags::WRONLY);
    assert_eq!(capacity(nr.as_fd()), 65536);
    assert_eq!(drain(nr.as_fd()).0, data);
}

#[test]
fn data_that_entered_by_splice_from_a_file() {
    let data = pattern(20_000, 5);
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let (r, w) = new_pipe(PipeFlags::empty());
    let mut off = 0u64;
    while (off as usize) < data.len() {
        let n = rustix::pipe::splice(
            &file,
            Some(&mut off),
            &w,
            None,
            data.len(),
            SpliceFlags::empty(),
        )
        .unwrap();
        assert!(n > 0);
    }
    let (_image, nr, _nw) = round_trip(r.as_fd(), &data);
    assert_eq!(drain(nr.as_fd()).0, data);
}

static VMSPLICED: [u8; 9000] = {
    let mut a = [0u8; 9000];
    let mut i = 0;
    while i < a.len() {
        a[i] = (i % 251) as u8;
        i += 1;
    }
    a
};

#[test]
fn data_that_entered_by_vmsplice() {
    let (r, w) = new_pipe(PipeFlags::empty());
    let n = pipecr::sys::pipe::vmsplice_static(w.as_fd(), &VMSPLICED).unwrap();
    assert_eq!(n, VMSPLICED.len());
    let (_image, nr, _nw) = round_trip(r.as_fd(), &VMSPLICED);
    assert_eq!(drain(nr.as_fd()).0, VMSPLICED);
}

/// The calling thread's capability sets, put back when dropped.
struct SavedCapabilities(CapabilitySets);

impl Drop for SavedCapabilities {
    fn drop(&mut self) {
        rustix::thread::set_capabilities(None, self.0).unwrap();
    }
}

/// Drops CAP_SYS_RESOURCE from this thread's effective set (capabilities are per thread,
/// and the kernel checks the caller's) until the returned guard is dropped. Lowering the
/// effective set is always allowed; raising it back works because the permitted set is
/// kept.
fn without_cap_sys_resource() -> Result<SavedCapabilities, String> {
    let saved = rustix::thread::capabilities(None).map_err(|e| format!("capget: {e}"))?;
    let mut lowered = saved;
    lowered.effective.remove(CapabilitySet::SYS_RESOURCE);
    rustix::thread::set_capabilities(None, lowered).map_err(|e| format!("capset: {e}"))?;
    let guard = SavedCapabilities(saved);
    let now = rustix::thread::capabilities(None).map_err(|e| format!("capget: {e}"))?;
    if now.effective.contains(CapabilitySet::SYS_RESOURCE) {
        return Err("CAP_SYS_RESOURCE is still effective after capset".into());
    }
    Ok(guard)
}

#[test]
fn capacity_above_pipe_max_size_is_a_clear_error() {
    let _guard = match without_cap_sys_resource() {
        Ok(guard) => guard,
        Err(why) => {
            eprintln!("skipped: cannot drop CAP_SYS_RESOURCE ({why}), nothing to refuse");
            return;
        }
    };
    let max = pipe::pipe_max_size().unwrap();
    let image = PipeImage {
        inode: 0,
        capacity: (max * 2) as u32,
        data: b"abc".to_vec(),
        packets: None,
        ends: vec![],
    };
    match pipe::restore(&image) {
        Err(err @ PipeError::CapacityRefused { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains(&format!("{}", max * 2)), "{msg}");
            assert!(msg.contains("pipe-max-size"), "{msg}");
        }
        other => panic!("expected CapacityRefused, got {other:?}"),
    }
}

#[test]
fn invalid_images_are_refused_before_any_pipe_is_made() {
    let base = PipeImage {
        inode: 0,
        capacity: 65536,
        data: vec![7; 10],
        packets: None,
        ends: vec![],
    };
    let cases = [
        PipeImage {
            capacity: 5000,
            ..base.clone()
        },
        PipeImage {
            capacity: 4096,
            data: vec![0; 5000],
            ..base.clone()
        },
        PipeImage {
            packets: Some(vec![3, 3]),
            ..base.clone()
        },
        PipeImage {
            packets: Some(vec![0, 10]),
            ..base.clone()
        },
        PipeImage {
            capacity: 4096,
            data: vec![0; 2],
            packets: Some(vec![1, 1]),
            ..base.clone()
        },
    ];
    for case in cases {
        assert!(
            matches!(pipe::restore(&case), Err(PipeError::Invalid(_))),
            "{case:?}"
        );
    }
}

#[test]
fn not_a_pipe_names_the_fd_and_kind() {
    let file = tempfile::tempfile().unwrap();
    let err = pipe::checkpoint(file.as_fd()).unwrap_err();
    assert!(
        matches!(
            err,
            PipeError::NotAPipe {
                kind: "regular file",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("fd {}", file.as_raw_fd()))
    );
}

#[test]
fn ends_of_different_pipes_are_refused() {
    let (r1, _w1) = new_pipe(PipeFlags::empty());
    let (_r2, w2) = new_pipe(PipeFlags::empty());
    let err = pipe::checkpoint_ends(&[r1.as_fd(), w2.as_fd()]).unwrap_err();
    assert!(matches!(err, PipeError::DifferentPipes { .. }), "{err:?}");
}

/// The `flags:` line of /proc/self/fdinfo/N: the open file's status flags plus the
/// descriptor's close-on-exec bit (O_CLOEXEC).
fn fdinfo_flags(fd: i32) -> OFlags {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let octal = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    OFlags::from_bits_retain(u32::from_str_radix(octal.trim(), 8).unwrap())
}

#[test]
fn restore_at_installs_the_ends_at_the_given_numbers() {
    let (r, w) = new_pipe(PipeFlags::empty());
    write_all(w.as_fd(), b"at fixed numbers");
    let image = pipe::checkpoint_ends(&[r.as_fd(), w.as_fd()]).unwrap();
    // Target numbers that are in use, crossed over: restore_at replaces them as dup2
    // would, and installing one end must not close the other.
    let (busy_r, busy_w) = new_pipe(PipeFlags::empty());
    let (rt, wt) = (busy_w.into_raw_fd(), busy_r.into_raw_fd());
    pipe::restore_at(&image, rt, wt).unwrap();
    let (rf, wf) = (fdinfo_flags(rt), fdinfo_flags(wt));
    assert_eq!(rf & OFlags::RWMODE, OFlags::RDONLY);
    assert_eq!(wf & OFlags::RWMODE, OFlags::WRONLY);
    assert!(
        !rf.contains(OFlags::CLOEXEC) && !wf.contains(OFlags::CLOEXEC),
        "like pipe(2), not close-on-exec"
    );
    let same_pipe = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    assert_eq!(
        same_pipe(rt),
        same_pipe(wt),
        "both numbers lead to one pipe"
    );
    let reader = std::fs::File::open(format!("/proc/self/fd/{rt}")).unwrap();
    assert_eq!(drain(reader.as_fd()).0, b"at fixed numbers");
}

#[test]
fn save_and_load_round_trip_through_an_image_directory() {
    let (r, w, all) = packet_pipe();
    rustix::fs::fcntl_setfl(&w, OFlags::NONBLOCK | OFlags::DIRECT).unwrap();
    let image = pipe::checkpoint_ends(&[r.as_fd(), w.as_fd()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    pipe::save(&image, &path).unwrap();
    let loaded = pipe::load(&path).unwrap();
    assert_eq!(loaded, image);
    let (nr, nw) = pipe::restore(&loaded).unwrap();
    assert!(flags(nw.as_fd()).contains(OFlags::NONBLOCK | OFlags::DIRECT));
    let (bytes, reads) = drain(nr.as_fd());
    assert_eq!(bytes, all);
    assert_eq!(reads, PACKETS);
    // Saving over an existing image is refused.
    assert!(matches!(
        pipe::save(&image, &path),
        Err(PipeError::Image(_))
    ));
}

#[test]
fn clone_live_copies_bytes_packets_and_flags_without_consuming() {
    let (r, w, all) = packet_pipe();
    rustix::fs::fcntl_setfl(&w, OFlags::NONBLOCK | OFlags::DIRECT).unwrap();
    let (nr, nw) = pipe::clone_live(w.as_fd()).unwrap();
    assert_eq!(capacity(nw.as_fd()), capacity(w.as_fd()));
    assert!(flags(nw.as_fd()).contains(OFlags::NONBLOCK | OFlags::DIRECT));
    let (bytes, reads) = drain(nr.as_fd());
    assert_eq!(bytes, all);
    assert_eq!(reads, PACKETS, "tee keeps packet boundaries");
    assert_eq!(drain(r.as_fd()).0, all, "the source keeps its bytes");

    let (r, w) = new_pipe(PipeFlags::empty());
    rustix::pipe::fcntl_setpipe_size(&r, 1 << 20).unwrap();
    let data = pattern(1 << 20, 9);
    write_all(w.as_fd(), &data);
    let (nr, _nw) = pipe::clone_live(r.as_fd()).unwrap();
    assert_eq!(capacity(nr.as_fd()), 1 << 20);
    assert_eq!(drain(nr.as_fd()).0, data);
    assert_eq!(drain(r.as_fd()).0, data);
}

#[test]
fn one_packet_is_seen_from_the_read_end_alone() {
    let (r, w) = new_pipe(PipeFlags::DIRECT | PipeFlags::NONBLOCK);
    let packet = pattern(100, 11);
    assert_eq!(rustix::io::write(&w, &packet).unwrap(), 100);
    drop(w);
    let (image, nr, _nw) = round_trip(r.as_fd(), &packet);
    assert_eq!(image.packets, Some(vec![100]));
    // A short read of a packet loses the rest of it, in the restored pipe as in the
    // original.
    for reader in [nr.as_fd(), r.as_fd()] {
        let mut buf = [0u8; 10];
        assert_eq!(rustix::io::read(reader, &mut buf).unwrap(), 10);
        assert_eq!(buf[..], packet[..10]);
        assert_eq!(pending(reader), 0, "rest of the packet discarded");
    }
}

#[test]
fn one_read_of_a_byte_stream_stays_a_byte_stream_from_the_read_end() {
    let (r, w) = new_pipe(PipeFlags::empty());
    let data = pattern(100, 12);
    write_all(w.as_fd(), &data);
    let (image, nr, _nw) = round_trip(r.as_fd(), &data);
    assert_eq!(image.packets, None);
    let mut buf = [0u8; 10];
    assert_eq!(rustix::io::read(&nr, &mut buf).unwrap(), 10);
    assert_eq!(pending(nr.as_fd()), 90, "a byte stream keeps the rest");
    assert_eq!(drain(r.as_fd()).0, data, "the probe consumed nothing");
}

#[test]
fn a_one_byte_packet_from_the_read_end_is_saved_as_a_byte_stream() {
    // Documented limit: one one-byte packet reads exactly like one byte of a stream.
    let (r, w) = new_pipe(PipeFlags::DIRECT);
    assert_eq!(rustix::io::write(&w, b"z").unwrap(), 1);
    let (image, nr, _nw) = round_trip(r.as_fd(), b"z");
    assert_eq!(image.packets, None);
    assert_eq!(drain(nr.as_fd()), (b"z".to_vec(), vec![1]));
}

/// Saves `image` as `<tmp>/valid`, then writes `<tmp>/damaged` through the image writer
/// with the same files except that `damage` has changed the pipes.img record: every CRC
/// and the inventory are right, only the record's values are impossible.
fn save_damaged(
    image: &PipeImage,
    damage: impl FnOnce(&mut proto::Pipe),
) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let valid = pipe::save(image, &tmp.path().join("valid")).unwrap();
    let opened = Image::open(&valid).unwrap();
    let mut pipes: Vec<proto::Pipe> = opened.read_records(pipecr_image::PIPES).unwrap();
    let files: Vec<proto::OpenFile> = opened.read_records(pipecr_image::FILES).unwrap();
    let data = opened.read_data(pipes[0].data.as_ref().unwrap()).unwrap();

    let damaged = tmp.path().join("damaged");
    let mut writer =
        ImageWriter::create(&damaged, pipe::image_meta(pipecr_image::CONTENT_PIPE)).unwrap();
    pipes[0].data = Some(
        writer
            .raw(pipecr_image::PIPES_DATA)
            .unwrap()
            .append(&data)
            .unwrap(),
    );
    damage(&mut pipes[0]);
    writer.write_records(pipecr_image::PIPES, &pipes).unwrap();
    writer.write_records(pipecr_image::FILES, &files).unwrap();
    writer.commit().unwrap();
    // The envelope layer has nothing to object to.
    Image::open(&damaged).unwrap();
    (tmp, damaged)
}

fn load_error(dir: &Path) -> PipeError {
    let err = pipe::load(dir).unwrap_err();
    assert!(
        matches!(&err, PipeError::Record { record: 0, file, .. } if file == &dir.join("pipes.img")),
        "{err:?}"
    );
    assert!(
        matches!(err.without_context(), PipeError::Invalid(_)),
        "{err:?}"
    );
    err
}

#[test]
fn impossible_record_values_name_the_image_file_and_record() {
    let stream = PipeImage {
        inode: 1,
        capacity: 65536,
        data: pattern(300, 13),
        packets: None,
        ends: vec![],
    };
    let packets = PipeImage {
        packets: Some(vec![100, 200]),
        ..stream.clone()
    };

    let (_tmp, dir) = save_damaged(&stream, |p| p.capacity = 5000);
    assert_eq!(
        load_error(&dir).to_string(),
        format!(
            "image {}: pipes.img record 0: capacity 5000 is not a power-of-two number of pages",
            dir.display()
        )
    );

    let (_tmp, dir) = save_damaged(&packets, |p| p.packet_lengths = vec![100, 201]);
    assert_eq!(
        load_error(&dir).to_string(),
        format!(
            "image {}: pipes.img record 0: packet lengths add up to 301 bytes but 300 bytes \
             are pending",
            dir.display()
        )
    );

    // More packets than bytes: the lengths still add up, so the empty ones give it away.
    let (_tmp, dir) = save_damaged(&packets, |p| p.packet_lengths = vec![100, 200, 0, 0]);
    assert_eq!(
        load_error(&dir).to_string(),
        format!(
            "image {}: pipes.img record 0: a packet of 0 bytes (packets hold 1 to 4096 bytes)",
            dir.display()
        )
    );

    // More packets than the pipe has buffers.
    let (_tmp, dir) = save_damaged(&packets, |p| {
        p.capacity = 4096;
        p.packet_lengths = vec![1; 300];
    });
    assert_eq!(
        load_error(&dir).to_string(),
        format!(
            "image {}: pipes.img record 0: 300 packets do not fit the 1 buffers of a \
             4096-byte pipe",
            dir.display()
        )
    );

    // Packet mode claimed for bytes with no packet lengths at all.
    let (_tmp, dir) = save_damaged(&stream, |p| p.packet_mode = true);
    assert_eq!(
        load_error(&dir).to_string(),
        format!(
            "image {}: pipes.img record 0: packet lengths add up to 0 bytes but 300 bytes \
             are pending",
            dir.display()
        )
    );
}
