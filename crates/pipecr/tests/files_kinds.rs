//! Every simple kind of open file saved and opened again through the `FileKind` table,
//! in this process: each of our own descriptors is fetched with `pidfd_getfd`, dumped into
//! a real image, read back and restored, and the new open file is checked against the
//! old one (position, status flags, bytes, identity, counters, seals, device numbers).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use pipecr::files::{self, Dropped, DumpOptions, DumpSink, FileError, LiveFile, RestoreCtx};
use pipecr_image::proto::{self, open_file};
use pipecr_image::{Image, ImageMeta, ImageWriter};
use rustix::fs::{FileType, MemfdFlags, Mode, OFlags, SealFlags, SeekFrom};
use rustix::io::Errno;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags};

mod common;

const ID: u64 = 7;

fn me() -> i32 {
    std::process::id() as i32
}

/// Dumps our descriptor `fd` into a new image under `dir`, returning the image path.
fn dump(dir: &Path, fd: BorrowedFd<'_>, options: DumpOptions) -> Result<PathBuf, FileError> {
    dump_from(dir, me(), fd.as_raw_fd(), options)
}

/// Dumps descriptor `fd` of process `pid` into a new image under `dir`.
fn dump_from(dir: &Path, pid: i32, fd: i32, options: DumpOptions) -> Result<PathBuf, FileError> {
    dump_dropping(dir, pid, fd, options).map(|(path, _)| path)
}

/// [`dump_from`], also returning what the sink recorded as left out of the image.
fn dump_dropping(
    dir: &Path,
    pid: i32,
    fd: i32,
    options: DumpOptions,
) -> Result<(PathBuf, Vec<Dropped>), FileError> {
    let path = dir.join("img");
    let mut writer = ImageWriter::create(&path, ImageMeta::default())?;
    let live = LiveFile::fetch(pid, fd)?;
    let mut sink = DumpSink::new(&mut writer, options);
    let mut saved = vec![files::dump_file(ID, &live, &mut sink)?];
    files::finish_dump(&mut saved, &mut sink)?;
    let dropped = sink.dropped().to_vec();
    writer.write_records(pipecr_image::FILES, &saved)?;
    writer.commit()?;
    Ok((path, dropped))
}

/// The saved open file of an image made by [`dump`].
fn saved(image: &Path) -> proto::OpenFile {
    let image = Image::open(image).unwrap();
    let mut files = image
        .read_records::<proto::OpenFile>(pipecr_image::FILES)
        .unwrap();
    assert_eq!(files.len(), 1);
    files.remove(0)
}

/// Opens the saved open file of an image made by [`dump`] again.
fn restore(image: &Path) -> Result<OwnedFd, FileError> {
    let open_file = saved(image);
    let image = Image::open(image)?;
    let mut ctx = RestoreCtx::new(&image)?;
    files::restore_file(&open_file, &mut ctx)
}

/// Dump then restore, both expected to work.
fn roundtrip(fd: BorrowedFd<'_>) -> (proto::OpenFile, OwnedFd) {
    let dir = tempfile::tempdir().unwrap();
    let image = dump(dir.path(), fd, DumpOptions::default()).unwrap();
    let restored = restore(&image).unwrap();
    (saved(&image), restored)
}

fn pos(fd: BorrowedFd<'_>) -> u64 {
    rustix::fs::seek(fd, SeekFrom::Current(0)).unwrap()
}

fn flags(fd: BorrowedFd<'_>) -> OFlags {
    rustix::fs::fcntl_getfl(fd).unwrap()
}

fn access(fd: BorrowedFd<'_>) -> OFlags {
    flags(fd) & OFlags::RWMODE
}

fn link(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn read_at(fd: BorrowedFd<'_>, len: usize, off: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = rustix::io::pread(fd, &mut buf, off).unwrap();
    buf.truncate(n);
    buf
}

fn read_rest(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = rustix::io::read(fd, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn open(path: impl AsRef<Path>, flags: OFlags) -> OwnedFd {
    rustix::fs::open(
        path.as_ref(),
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )
    .unwrap()
}

fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn rdev(fd: BorrowedFd<'_>) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_rdev
}

// ---- regular files ----

#[test]
fn regular_file_keeps_position_append_nonblock_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "log", b"hello, restored world");
    let fd = open(&path, OFlags::RDWR | OFlags::APPEND | OFlags::NONBLOCK);
    rustix::fs::seek(&fd, SeekFrom::Start(7)).unwrap();

    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Regular(regular)) = &saved.kind else {
        panic!("not saved as a regular file: {saved:?}");
    };
    assert_eq!(regular.path, path.to_str().unwrap());
    assert!(!regular.unlinked);
    assert!(regular.contents.is_none());
    let identity = regular.identity.as_ref().unwrap();
    assert_eq!(identity.size, 21);
    assert_eq!(
        FileType::from_raw_mode(identity.mode),
        FileType::RegularFile
    );

    assert_eq!(pos(restored.as_fd()), 7);
    assert_eq!(access(restored.as_fd()), OFlags::RDWR);
    assert!(flags(restored.as_fd()).contains(OFlags::APPEND | OFlags::NONBLOCK));
    assert!(
        rustix::io::fcntl_getfd(&restored)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    );
    assert_eq!(read_rest(restored.as_fd()), b"restored world");
    // A new open file, not the old one: the original did not move.
    assert_eq!(pos(fd.as_fd()), 7);
    // O_APPEND survived: a write goes to the end whatever the position.
    rustix::fs::seek(&restored, SeekFrom::Start(0)).unwrap();
    rustix::io::write(&restored, b"!").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello, restored world!");
}

#[test]
fn regular_file_read_only_and_write_only_access_modes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "data", b"0123456789");
    for mode in [OFlags::RDONLY, OFlags::WRONLY] {
        let fd = open(&path, mode);
        rustix::fs::seek(&fd, SeekFrom::Start(3)).unwrap();
        let (_, restored) = roundtrip(fd.as_fd());
        assert_eq!(access(restored.as_fd()), mode);
        assert!(!flags(restored.as_fd()).intersects(OFlags::APPEND | OFlags::NONBLOCK));
        assert_eq!(pos(restored.as_fd()), 3);
    }
}

#[test]
fn regular_file_changed_since_the_dump_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "config", b"version 1");
    let fd = open(&path, OFlags::RDONLY);
    let images = tempfile::tempdir().unwrap();
    let image = dump(images.path(), fd.as_fd(), DumpOptions::default()).unwrap();

    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b" and more")
        .unwrap();
    let err = restore(&image).unwrap_err();
    let FileError::Changed {
        id,
        path: named,
        what,
    } = &err
    else {
        panic!("not refused as changed: {err:?}");
    };
    assert_eq!(*id, ID);
    assert_eq!(named, path.to_str().unwrap());
    assert!(what.contains("size was 9 bytes, is 18"), "{what}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
}

#[test]
fn regular_file_replaced_by_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "f", b"x");
    let fd = open(&path, OFlags::RDONLY);
    let images = tempfile::tempdir().unwrap();
    let image = dump(images.path(), fd.as_fd(), DumpOptions::default()).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = restore(&image).unwrap_err();
    assert!(
        matches!(&err, FileError::Changed { what, .. } if what.contains("directory")),
        "{err:?}"
    );
}

#[test]
fn unlinked_regular_file_is_recreated_from_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let path = file_with(dir.path(), "scratch", &bytes);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let fd = open(&path, OFlags::RDWR | OFlags::APPEND);
    rustix::fs::seek(&fd, SeekFrom::Start(1234)).unwrap();
    std::fs::remove_file(&path).unwrap();

    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Regular(regular)) = &saved.kind else {
        panic!("not saved as a regular file: {saved:?}");
    };
    assert!(regular.unlinked);
    assert_eq!(regular.path, path.to_str().unwrap());
    assert_eq!(regular.contents.as_ref().unwrap().length, 10_000);

    let stat = rustix::fs::fstat(&restored).unwrap();
    assert_eq!(stat.st_nlink, 0);
    assert_eq!(stat.st_size, 10_000);
    assert_eq!(stat.st_mode & 0o7777, 0o640);
    assert!(link(restored.as_fd()).ends_with(" (deleted)"));
    assert_eq!(read_at(restored.as_fd(), 20_000, 0), bytes);
    assert_eq!(pos(restored.as_fd()), 1234);
    assert_eq!(access(restored.as_fd()), OFlags::RDWR);
    assert!(flags(restored.as_fd()).contains(OFlags::APPEND));
}

#[test]
fn unlinked_write_only_file_keeps_its_access_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "w", b"abc");
    let fd = open(&path, OFlags::WRONLY);
    std::fs::remove_file(&path).unwrap();
    let (_, restored) = roundtrip(fd.as_fd());
    assert_eq!(access(restored.as_fd()), OFlags::WRONLY);
    let reader = pipecr::sys::fd::reopen(restored.as_fd(), OFlags::RDONLY).unwrap();
    assert_eq!(read_at(reader.as_fd(), 10, 0), b"abc");
}

#[test]
fn unlinked_file_above_the_limit_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "big", &[1u8; 5000]);
    let fd = open(&path, OFlags::RDONLY);
    std::fs::remove_file(&path).unwrap();
    let images = tempfile::tempdir().unwrap();
    let err = dump(
        images.path(),
        fd.as_fd(),
        DumpOptions {
            max_inline_file: 4096,
            ..DumpOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, FileError::TooLarge { pid, fd: n, size: 5000, limit: 4096, .. }
            if pid == me() && n == fd.as_raw_fd()),
        "{err:?}"
    );
}

#[test]
fn regular_file_whose_name_ends_in_deleted_is_still_linked() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "odd (deleted)", b"still here");
    let fd = open(&path, OFlags::RDONLY);
    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Regular(regular)) = &saved.kind else {
        panic!("not saved as a regular file: {saved:?}");
    };
    assert!(!regular.unlinked);
    assert_eq!(regular.path, path.to_str().unwrap());
    assert_eq!(read_rest(restored.as_fd()), b"still here");
}

#[test]
fn regular_file_reachable_only_through_another_hard_link_is_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), "first", b"x");
    std::fs::hard_link(&path, dir.path().join("second")).unwrap();
    let fd = open(&path, OFlags::RDONLY);
    std::fs::remove_file(&path).unwrap();
    assert_unsupported(fd.as_fd(), "another hard link");
}

// ---- files of /proc and /sys ----

/// Reads exactly `n` bytes (or up to end of file) from `fd`, moving its position.
fn read_n(fd: BorrowedFd<'_>, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = rustix::io::read(fd, &mut out[got..]).unwrap();
        if k == 0 {
            break;
        }
        got += k;
    }
    out.truncate(got);
    out
}

fn pseudo_of(f: &proto::OpenFile) -> &proto::PseudoFile {
    match &f.kind {
        Some(open_file::Kind::PseudoFile(p)) => p,
        other => panic!("not a pseudo file: {other:?}"),
    }
}

#[test]
fn proc_meminfo_comes_back_at_its_position_and_reading_goes_on() {
    let fd = open("/proc/meminfo", OFlags::RDONLY);
    // Past the first line (MemTotal, which does not change): the next starts MemFree.
    let first = String::from_utf8(read_n(fd.as_fd(), 200)).unwrap();
    let line = first.find('\n').unwrap() + 1;
    rustix::fs::seek(&fd, SeekFrom::Start(line as u64)).unwrap();
    let (saved, restored) = roundtrip(fd.as_fd());
    let p = pseudo_of(&saved);
    assert_eq!((p.path.as_str(), p.proc_pid), ("/proc/meminfo", 0));
    assert_eq!(link(restored.as_fd()), "/proc/meminfo");
    assert_eq!(pos(restored.as_fd()), line as u64);
    assert_eq!(files::stage_of(&saved).unwrap(), files::Stage::Open);
    assert_eq!(read_n(restored.as_fd(), 8), b"MemFree:");
}

#[test]
fn proc_stat_keeps_flags_and_position() {
    let fd = open("/proc/stat", OFlags::RDONLY | OFlags::NONBLOCK);
    let head = read_n(fd.as_fd(), 3);
    assert_eq!(head, b"cpu");
    let (_, restored) = roundtrip(fd.as_fd());
    assert_eq!(link(restored.as_fd()), "/proc/stat");
    assert_eq!(pos(restored.as_fd()), 3);
    assert_eq!(flags(restored.as_fd()), flags(fd.as_fd()));
    // What follows "cpu" on the first line: the blank before the counters.
    assert_eq!(read_n(restored.as_fd(), 1), b" ");
}

#[test]
fn proc_self_status_names_the_restored_process() {
    let fd = open("/proc/self/status", OFlags::RDONLY);
    let name_line = String::from_utf8(read_n(fd.as_fd(), 64)).unwrap();
    let line = name_line.find('\n').unwrap() + 1;
    rustix::fs::seek(&fd, SeekFrom::Start(line as u64)).unwrap();
    let next = read_n(fd.as_fd(), 6);
    rustix::fs::seek(&fd, SeekFrom::Start(line as u64)).unwrap();
    let (saved, restored) = roundtrip(fd.as_fd());
    let p = pseudo_of(&saved);
    assert_eq!(p.path, format!("/proc/{}/status", me()));
    assert_eq!(p.proc_pid, me());
    // Opened in the restored process itself, once it exists.
    assert_eq!(files::stage_of(&saved).unwrap(), files::Stage::AfterProcess);
    assert_eq!(link(restored.as_fd()), format!("/proc/{}/status", me()));
    assert_eq!(pos(restored.as_fd()), line as u64);
    assert_eq!(read_n(restored.as_fd(), 6), next);
}

#[test]
fn sysfs_file_comes_back_at_its_position() {
    let path = "/sys/kernel/mm/transparent_hugepage/enabled";
    let alt = "/sys/devices/system/cpu/online";
    let path = if Path::new(path).exists() { path } else { alt };
    let whole = std::fs::read(path).unwrap();
    assert!(whole.len() > 2, "{path}: {whole:?}");
    let fd = open(path, OFlags::RDONLY);
    assert_eq!(read_n(fd.as_fd(), 2), whole[..2]);
    let (saved, restored) = roundtrip(fd.as_fd());
    assert_eq!(pseudo_of(&saved).fs_type, 0x6265_6572, "sysfs");
    assert_eq!(link(restored.as_fd()), path);
    assert_eq!(pos(restored.as_fd()), 2);
    assert_eq!(read_rest(restored.as_fd()), whole[2..]);
}

#[test]
fn proc_files_of_another_process_are_not_supported() {
    let fd = open("/proc/1/status", OFlags::RDONLY);
    assert_unsupported(fd.as_fd(), "it names another process, pid 1");
}

#[test]
fn proc_files_of_a_secondary_thread_are_not_supported() {
    let fd = std::thread::spawn(|| open("/proc/thread-self/stat", OFlags::RDONLY))
        .join()
        .unwrap();
    let shown = link(fd.as_fd());
    assert!(shown.contains("/task/"), "{shown}");
    assert_unsupported(fd.as_fd(), "which restore creates after the descriptors");
}

#[test]
fn pseudo_file_missing_on_this_system_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let fd = open("/proc/stat", OFlags::RDONLY);
    let image = dump(dir.path(), fd.as_fd(), DumpOptions::default()).unwrap();
    let mut record = saved(&image);
    if let Some(open_file::Kind::PseudoFile(p)) = &mut record.kind {
        p.path = "/sys/no/such/attribute".into();
    }
    let path = dir.path().join("img2");
    let mut writer = ImageWriter::create(&path, ImageMeta::default()).unwrap();
    writer
        .write_records(pipecr_image::FILES, std::slice::from_ref(&record))
        .unwrap();
    writer.commit().unwrap();
    let image = Image::open(&path).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    let err = files::prepare_restore(&mut ctx).unwrap_err().to_string();
    assert!(err.contains("/sys/no/such/attribute"), "{err}");
    assert!(err.contains("not on this system"), "{err}");
}

// ---- directories ----

#[test]
fn directory_keeps_path_and_listing_position() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        file_with(dir.path(), &format!("entry-{i:02}"), b"");
    }
    let fd = open(
        dir.path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
    );
    // List a few entries through a duplicate, which shares the position.
    let mut listing = rustix::fs::Dir::new(fd.try_clone().unwrap()).unwrap();
    for _ in 0..5 {
        listing.read().unwrap().unwrap();
    }
    let cookie = pos(fd.as_fd());

    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Directory(d)) = &saved.kind else {
        panic!("not saved as a directory: {saved:?}");
    };
    assert_eq!(d.path, dir.path().to_str().unwrap());
    assert_eq!(link(restored.as_fd()), d.path);
    assert_eq!(pos(restored.as_fd()), cookie);
    assert_eq!(access(restored.as_fd()), OFlags::RDONLY);
    assert!(flags(restored.as_fd()).contains(OFlags::DIRECTORY | OFlags::NONBLOCK));
}

#[test]
fn directory_gaining_entries_is_still_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let fd = open(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY);
    let images = tempfile::tempdir().unwrap();
    let image = dump(images.path(), fd.as_fd(), DumpOptions::default()).unwrap();
    file_with(dir.path(), "new", b"");
    let restored = restore(&image).unwrap();
    assert_eq!(link(restored.as_fd()), dir.path().to_str().unwrap());
}

// ---- character devices ----

#[test]
fn memory_devices_are_reopened_with_their_flags() {
    for (path, mode, minor) in [
        ("/dev/null", OFlags::WRONLY | OFlags::APPEND, 3),
        ("/dev/zero", OFlags::RDONLY | OFlags::NONBLOCK, 5),
        ("/dev/full", OFlags::RDWR, 7),
        ("/dev/random", OFlags::RDONLY | OFlags::NONBLOCK, 8),
        ("/dev/urandom", OFlags::RDONLY, 9),
    ] {
        let fd = open(path, mode);
        let (saved, restored) = roundtrip(fd.as_fd());
        let Some(open_file::Kind::CharDevice(dev)) = &saved.kind else {
            panic!("{path} not saved as a character device: {saved:?}");
        };
        assert_eq!(
            (dev.path.as_str(), dev.major, dev.minor, dev.terminal),
            (path, 1, minor, false)
        );
        assert_eq!(rdev(restored.as_fd()), rdev(fd.as_fd()), "{path}");
        assert_eq!(
            flags(restored.as_fd()) & (OFlags::RWMODE | OFlags::APPEND | OFlags::NONBLOCK),
            mode,
            "{path}"
        );
    }
    let zero = open("/dev/zero", OFlags::RDONLY);
    let (_, restored) = roundtrip(zero.as_fd());
    let mut buf = [1u8; 64];
    assert_eq!(rustix::io::read(&restored, &mut buf).unwrap(), 64);
    assert_eq!(buf, [0u8; 64]);
}

#[test]
fn pty_slave_is_a_terminal_and_its_master_is_not_supported() {
    let master =
        rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let name = name.to_str().unwrap().to_owned();
    let slave = open(&name, OFlags::RDWR | OFlags::NOCTTY);

    let (saved, restored) = roundtrip(slave.as_fd());
    let Some(open_file::Kind::CharDevice(dev)) = &saved.kind else {
        panic!("pty slave not saved as a character device: {saved:?}");
    };
    assert!(dev.terminal);
    assert_eq!(dev.path, name);
    assert_eq!(rdev(restored.as_fd()), rdev(slave.as_fd()));
    assert!(rustix::termios::isatty(&restored));
    assert_eq!(access(restored.as_fd()), OFlags::RDWR);
    assert!(!flags(restored.as_fd()).contains(OFlags::NONBLOCK));

    let images = tempfile::tempdir().unwrap();
    let err = dump(images.path(), master.as_fd(), DumpOptions::default()).unwrap_err();
    assert!(matches!(err, FileError::Unsupported { .. }), "{err:?}");
}

#[test]
fn other_character_devices_are_not_supported() {
    // /dev/mem-like devices with state (here /dev/kmsg, major 1 minor 11) are refused.
    let Ok(fd) = rustix::fs::open(
        "/dev/kmsg",
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let images = tempfile::tempdir().unwrap();
    let err = dump(images.path(), fd.as_fd(), DumpOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, FileError::Unsupported { .. }), "{err:?}");
    assert!(message.contains("/dev/kmsg"), "{message}");
}

// ---- eventfd ----

fn eventfd_read(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut buf = [0u8; 8];
    rustix::io::read(fd, &mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

fn eventfd_add(fd: BorrowedFd<'_>, n: u64) {
    assert_eq!(rustix::io::write(fd, &n.to_ne_bytes()).unwrap(), 8);
}

#[test]
fn eventfd_count_is_restored_and_left_in_the_original() {
    use rustix::event::EventfdFlags;
    let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap();
    // More than the 32 bits eventfd's initial value can hold.
    eventfd_add(fd.as_fd(), (1 << 40) + 26);

    let (saved, restored) = roundtrip(fd.as_fd());
    assert_eq!(
        saved.kind,
        Some(open_file::Kind::Eventfd(proto::EventFd {
            count: (1 << 40) + 26,
            semaphore: false
        }))
    );
    assert!(flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    assert_eq!(link(restored.as_fd()), "anon_inode:[eventfd]");
    assert_eq!(eventfd_read(restored.as_fd()), Ok((1 << 40) + 26));
    assert_eq!(eventfd_read(restored.as_fd()), Err(Errno::AGAIN));
    assert_eq!(eventfd_read(fd.as_fd()), Ok((1 << 40) + 26));
}

#[test]
fn eventfd_semaphore_mode_reads_one_at_a_time() {
    use rustix::event::EventfdFlags;
    let fd = rustix::event::eventfd(
        3,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK | EventfdFlags::SEMAPHORE,
    )
    .unwrap();
    let (saved, restored) = roundtrip(fd.as_fd());
    assert_eq!(
        saved.kind,
        Some(open_file::Kind::Eventfd(proto::EventFd {
            count: 3,
            semaphore: true
        }))
    );
    for _ in 0..3 {
        assert_eq!(eventfd_read(restored.as_fd()), Ok(1));
    }
    assert_eq!(eventfd_read(restored.as_fd()), Err(Errno::AGAIN));
}

#[test]
fn blocking_empty_eventfd_stays_blocking() {
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let (saved, restored) = roundtrip(fd.as_fd());
    assert_eq!(
        saved.kind,
        Some(open_file::Kind::Eventfd(proto::EventFd {
            count: 0,
            semaphore: false
        }))
    );
    assert!(!flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    eventfd_add(restored.as_fd(), 2);
    assert_eq!(eventfd_read(restored.as_fd()), Ok(2));
}

// ---- timerfd ----

fn timerfd_settime(
    fd: BorrowedFd<'_>,
    flags: TimerfdTimerFlags,
    value: (i64, i64),
    interval: (i64, i64),
) {
    let spec = |(tv_sec, tv_nsec)| rustix::time::Timespec { tv_sec, tv_nsec };
    rustix::time::timerfd_settime(
        fd,
        flags,
        &Itimerspec {
            it_value: spec(value),
            it_interval: spec(interval),
        },
    )
    .unwrap();
}

fn nanos(t: rustix::time::Timespec) -> i128 {
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

fn ticks(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut buf = [0u8; 8];
    rustix::io::read(fd, &mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

/// Whether `fd` has something to read right now.
fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut pfd, Some(&zero)).unwrap() == 1
}

/// A `key: value` line of our own `/proc/self/fdinfo/N`.
fn fdinfo_line(fd: BorrowedFd<'_>, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {key} line"))
}

#[test]
fn relative_periodic_timerfd_keeps_clock_period_remaining_time_and_flags() {
    let fd = rustix::time::timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )
    .unwrap();
    timerfd_settime(
        fd.as_fd(),
        TimerfdTimerFlags::empty(),
        (1000, 0),
        (0, 500_000_000),
    );
    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Timerfd(t)) = &saved.kind else {
        panic!("not saved as a timerfd: {saved:?}");
    };
    assert_eq!((t.clockid, t.settime_flags, t.ticks), (1, 0, 0));
    assert_eq!((t.interval_sec, t.interval_nsec), (0, 500_000_000));
    assert!(t.value_sec < 1000 && t.value_sec >= 990, "{t:?}");
    assert_eq!(link(restored.as_fd()), "anon_inode:[timerfd]");
    assert!(flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    let now = rustix::time::timerfd_gettime(&restored).unwrap();
    assert_eq!(nanos(now.it_interval), 500_000_000);
    let remaining = nanos(now.it_value);
    assert!(remaining > 0 && remaining <= i128::from(t.value_sec + 1) * 1_000_000_000);
    assert_eq!(fdinfo_line(restored.as_fd(), "clockid:"), "1");
    assert_eq!(ticks(restored.as_fd()), Err(Errno::AGAIN));
}

#[test]
fn fired_one_shot_timerfd_keeps_its_unread_expiration() {
    let fd = rustix::time::timerfd_create(TimerfdClockId::Boottime, TimerfdFlags::CLOEXEC).unwrap();
    timerfd_settime(fd.as_fd(), TimerfdTimerFlags::empty(), (0, 1), (0, 0));
    // Wait until it has fired: readable means one expiration counted.
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    assert_eq!(rustix::event::poll(&mut pfd, None).unwrap(), 1);
    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Timerfd(t)) = &saved.kind else {
        panic!("not saved as a timerfd: {saved:?}");
    };
    assert_eq!(
        (t.clockid, t.ticks, t.value_sec, t.value_nsec),
        (7, 1, 0, 0)
    );
    assert!(!flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    // Readable (checked first: a read of a blocking timerfd with nothing counted waits).
    let mut pfd = [rustix::event::PollFd::new(
        &restored,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    assert_eq!(rustix::event::poll(&mut pfd, Some(&zero)).unwrap(), 1);
    assert_eq!(ticks(restored.as_fd()), Ok(1));
    let now = rustix::time::timerfd_gettime(&restored).unwrap();
    assert_eq!((nanos(now.it_value), nanos(now.it_interval)), (0, 0));
    // The dump read nothing from the original.
    assert!(readable_now(fd.as_fd()));
    assert_eq!(ticks(fd.as_fd()), Ok(1));
}

#[test]
fn absolute_realtime_timerfd_stays_absolute_with_cancel_on_set() {
    const DEADLINE: i128 = 4_000_000_000 * 1_000_000_000;
    let fd = rustix::time::timerfd_create(TimerfdClockId::Realtime, TimerfdFlags::CLOEXEC).unwrap();
    timerfd_settime(
        fd.as_fd(),
        TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
        (4_000_000_000, 0),
        (0, 0),
    );
    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Timerfd(t)) = &saved.kind else {
        panic!("not saved as a timerfd: {saved:?}");
    };
    assert_eq!((t.clockid, t.settime_flags), (0, 3));
    let at = i128::from(t.value_sec) * 1_000_000_000 + i128::from(t.value_nsec);
    assert!((at - DEADLINE).abs() < 1_000_000_000, "saved expiry {at}");
    assert_eq!(fdinfo_line(restored.as_fd(), "settime flags:"), "03");
    let remaining = nanos(rustix::time::timerfd_gettime(&restored).unwrap().it_value);
    let now = nanos(rustix::time::clock_gettime(rustix::time::ClockId::Realtime));
    assert!((now + remaining - DEADLINE).abs() < 1_000_000_000);
}

// ---- signalfd ----

#[test]
fn signalfd_keeps_its_mask_and_reads_a_signal_sent_after_restore() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR1);
    mask.add(Signal::SIGWINCH);
    let original = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .unwrap();
    let (saved, restored) = roundtrip(original.as_fd());
    assert_eq!(
        saved.kind,
        Some(open_file::Kind::Signalfd(proto::SignalFd {
            sigmask: (1 << (10 - 1)) | (1 << (28 - 1))
        }))
    );
    assert_eq!(link(restored.as_fd()), "anon_inode:[signalfd]");
    assert!(flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    assert_eq!(
        fdinfo_line(restored.as_fd(), "sigmask:"),
        fdinfo_line(original.as_fd(), "sigmask:")
    );
    // A signal for this thread, blocked so that it stays pending, is read from it.
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr1), None).unwrap();
    // raise(3) directs it at the calling thread.
    nix::sys::signal::raise(Signal::SIGUSR1).unwrap();
    let mut info = [0u8; 128];
    assert_eq!(rustix::io::read(&restored, &mut info).unwrap(), 128);
    assert_eq!(u32::from_ne_bytes(info[..4].try_into().unwrap()), 10);
    assert_eq!(rustix::io::read(&restored, &mut info), Err(Errno::AGAIN));
}

// ---- inotify ----

#[test]
fn inotify_watches_keep_their_numbers_masks_and_files() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = tempfile::tempdir().unwrap();
    let watched = file_with(dir.path(), "watched", b"");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
    assert_eq!(
        inotify::add_watch(&fd, &sub, WatchFlags::CREATE).unwrap(),
        1
    );
    // Watch descriptors 2 and 3 come and go: a gap.
    for wd in [2, 3] {
        assert_eq!(
            inotify::add_watch(&fd, dir.path(), WatchFlags::ATTRIB).unwrap(),
            wd
        );
        inotify::remove_watch(&fd, wd).unwrap();
    }
    let mut buf = [0u8; 256];
    while rustix::io::read(&fd, &mut buf).is_ok() {}
    assert_eq!(
        inotify::add_watch(&fd, &watched, WatchFlags::MODIFY | WatchFlags::ONESHOT).unwrap(),
        4
    );
    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Inotify(i)) = &saved.kind else {
        panic!("not saved as inotify: {saved:?}");
    };
    let got: Vec<(i32, u32, &str)> = i
        .watches
        .iter()
        .map(|w| (w.wd, w.mask, w.path.as_str()))
        .collect();
    let (sub_s, watched_s) = (sub.to_str().unwrap(), watched.to_str().unwrap());
    assert_eq!(
        got,
        vec![
            (1, WatchFlags::CREATE.bits(), sub_s),
            (
                4,
                (WatchFlags::MODIFY | WatchFlags::ONESHOT).bits(),
                watched_s
            ),
        ]
    );
    assert_eq!(link(restored.as_fd()), "anon_inode:inotify");
    assert!(flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    // No event of the placeholders that made the gap is left for the program.
    assert_eq!(rustix::io::ioctl_fionread(&restored).unwrap(), 0);
    std::fs::write(&watched, b"changed").unwrap();
    let n = rustix::io::read(&restored, &mut buf).unwrap();
    assert!(n >= 16);
    let wd = i32::from_ne_bytes(buf[..4].try_into().unwrap());
    let mask = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    assert_eq!(
        (wd, mask & WatchFlags::MODIFY.bits()),
        (4, WatchFlags::MODIFY.bits())
    );
}

#[test]
fn inotify_watch_follows_its_file_through_a_rename_by_file_handle() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = tempfile::tempdir().unwrap();
    let before = file_with(dir.path(), "before", b"");
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
    assert_eq!(
        inotify::add_watch(&fd, &before, WatchFlags::MODIFY).unwrap(),
        1
    );
    let dumped = tempfile::tempdir().unwrap();
    let image = dump(dumped.path(), fd.as_fd(), DumpOptions::default()).unwrap();
    // Between dump and restore the saved path stops leading to the file.
    let after = dir.path().join("after");
    std::fs::rename(&before, &after).unwrap();
    let restored = restore(&image).unwrap();
    std::fs::write(&after, b"changed").unwrap();
    let mut buf = [0u8; 64];
    assert!(rustix::io::read(&restored, &mut buf).unwrap() >= 16);
    let wd = i32::from_ne_bytes(buf[..4].try_into().unwrap());
    let mask = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    assert_eq!((wd, mask), (1, WatchFlags::MODIFY.bits()));
}

// ---- memfd ----

#[test]
fn memfd_name_size_contents_seals_and_position() {
    let fd = rustix::fs::memfd_create(
        "pipecr test memfd",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::io::write(&fd, b"memory only").unwrap();
    // A hole at the end: the size is more than what was written.
    rustix::fs::ftruncate(&fd, 8192).unwrap();
    rustix::fs::seek(&fd, SeekFrom::Start(7)).unwrap();
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).unwrap();

    let (saved, restored) = roundtrip(fd.as_fd());
    let Some(open_file::Kind::Memfd(memfd)) = &saved.kind else {
        panic!("not saved as a memfd: {saved:?}");
    };
    assert_eq!(memfd.name, "pipecr test memfd");
    assert_eq!(memfd.size, 8192);

    assert_eq!(link(restored.as_fd()), "/memfd:pipecr test memfd (deleted)");
    assert_eq!(rustix::fs::fstat(&restored).unwrap().st_size, 8192);
    let mut expected = b"memory only".to_vec();
    expected.resize(8192, 0);
    assert_eq!(read_at(restored.as_fd(), 10_000, 0), expected);
    assert_eq!(pos(restored.as_fd()), 7);
    assert_eq!(access(restored.as_fd()), OFlags::RDWR);
    assert_eq!(
        rustix::fs::fcntl_get_seals(&restored).unwrap(),
        rustix::fs::fcntl_get_seals(&fd).unwrap()
    );
    assert_eq!(rustix::fs::ftruncate(&restored, 1), Err(Errno::PERM));
}

#[test]
fn memfd_without_sealing_allowed_stays_unsealable() {
    let fd = rustix::fs::memfd_create("plain", MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&fd, b"abc").unwrap();
    assert_eq!(rustix::fs::fcntl_get_seals(&fd).unwrap(), SealFlags::SEAL);
    let (_, restored) = roundtrip(fd.as_fd());
    assert_eq!(
        rustix::fs::fcntl_get_seals(&restored).unwrap(),
        SealFlags::SEAL
    );
    assert_eq!(
        rustix::fs::fcntl_add_seals(&restored, SealFlags::WRITE),
        Err(Errno::PERM)
    );
    assert_eq!(read_at(restored.as_fd(), 10, 0), b"abc");
}

#[test]
fn memfd_opened_read_only_is_restored_read_only() {
    let fd =
        rustix::fs::memfd_create("ro", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::io::write(&fd, b"read me").unwrap();
    rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE | SealFlags::SEAL).unwrap();
    let ro = pipecr::sys::fd::reopen(fd.as_fd(), OFlags::RDONLY | OFlags::NONBLOCK).unwrap();
    rustix::fs::seek(&ro, SeekFrom::Start(5)).unwrap();

    let (_, restored) = roundtrip(ro.as_fd());
    assert_eq!(access(restored.as_fd()), OFlags::RDONLY);
    assert!(flags(restored.as_fd()).contains(OFlags::NONBLOCK));
    assert_eq!(pos(restored.as_fd()), 5);
    assert_eq!(read_rest(restored.as_fd()), b"me");
    assert_eq!(
        rustix::fs::fcntl_get_seals(&restored).unwrap(),
        SealFlags::WRITE | SealFlags::SEAL
    );
}

#[test]
fn memfd_above_the_limit_is_too_large() {
    let fd = rustix::fs::memfd_create("big", MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 1 << 16).unwrap();
    let images = tempfile::tempdir().unwrap();
    let err = dump(
        images.path(),
        fd.as_fd(),
        DumpOptions {
            max_inline_file: 1 << 12,
            ..DumpOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, FileError::TooLarge { size: 65536, limit: 4096, what, .. } if what.contains("/memfd:big")),
        "{err:?}"
    );
}

// ---- unsupported kinds ----

fn assert_unsupported(fd: BorrowedFd<'_>, kind: &str) {
    let images = tempfile::tempdir().unwrap();
    let err = dump(images.path(), fd, DumpOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, FileError::Unsupported { .. }), "{err:?}");
    assert!(message.contains(&format!("pid {}", me())), "{message}");
    assert!(
        message.contains(&format!("fd {}", fd.as_raw_fd())),
        "{message}"
    );
    assert!(message.contains(kind), "{message}");
}

/// The dump of descriptor `fd` of `pid` stops with exactly the one-line message that
/// names the process, the descriptor and `kind`.
fn assert_unsupported_in(pid: i32, fd: i32, kind: &str) {
    let images = tempfile::tempdir().unwrap();
    let err = dump_from(images.path(), pid, fd, DumpOptions::default()).unwrap_err();
    assert!(
        matches!(&err, FileError::Unsupported { pid: p, fd: f, kind: k } if *p == pid && *f == fd && k == kind),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("pid {pid} fd {fd}: {kind} is not supported")
    );
}

/// The first 64 bytes of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`).
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bit fields: disabled (bit 0), exclude_kernel (5), exclude_hv (6), ...
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// A new perf_event fd (a kind pipecr still refuses): a disabled software dummy event
/// of this process.
fn perf_event() -> OwnedFd {
    let attr = PerfEventAttr {
        kind: 1,   // PERF_TYPE_SOFTWARE
        size: 64,  // PERF_ATTR_SIZE_VER0
        config: 9, // PERF_COUNT_SW_DUMMY
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: 1 | (1 << 5) | (1 << 6),
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: perf_event_open reads `attr.size` bytes of `attr`, which lives across the
    // call, and touches no other memory.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &raw const attr,
            0,
            -1,
            -1,
            libc::c_ulong::from(8u8), // PERF_FLAG_FD_CLOEXEC
        )
    };
    assert!(
        fd >= 0,
        "perf_event_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: perf_event_open succeeded: `fd` is a new descriptor nothing else owns.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) }
}

#[test]
fn perf_event_is_not_supported_and_named() {
    let event = perf_event();
    assert_unsupported(event.as_fd(), "anonymous inode perf_event");
}

/// A userfaultfd of this process with no range registered: refused, since a dump
/// cannot tell it from another process's (one passed over a socket, say).
#[test]
fn a_userfaultfd_with_no_registered_range_is_refused_and_named() {
    // SAFETY: userfaultfd takes one integer and touches no memory.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
    // SAFETY: userfaultfd succeeded: `fd` is a new descriptor nothing else owns.
    let uffd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    assert_unsupported(
        uffd.as_fd(),
        "userfaultfd with no range of its process registered: it may be another process's",
    );
}

/// A fanotify group made with `flags` and `event_flags` (needs CAP_SYS_ADMIN).
fn fanotify(flags: u32, event_flags: u32) -> OwnedFd {
    // SAFETY: fanotify_init takes two integers and touches no memory.
    let fd = unsafe { libc::fanotify_init(flags, event_flags) };
    assert!(
        fd >= 0,
        "fanotify_init: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fanotify_init succeeded: `fd` is a new descriptor nothing else owns.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

/// `fanotify_mark(group, flags, mask, AT_FDCWD, path)`.
fn fanotify_mark(group: BorrowedFd<'_>, flags: u32, mask: u64, path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let r =
        unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) };
    assert_eq!(r, 0, "fanotify_mark: {}", std::io::Error::last_os_error());
}

/// The `fanotify` lines of a descriptor's fdinfo, each with the inode/mount numbers
/// and file handle left out (they name the same objects in another way after restore),
/// sorted.
fn fanotify_lines(fd: BorrowedFd<'_>) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("fanotify"))
        .map(|l| {
            l.split_whitespace()
                .filter(|f| {
                    !["ino:", "mnt_id:", "fhandle-", "f_handle:"]
                        .iter()
                        .any(|p| f.starts_with(p))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.sort();
    lines
}

/// A tmpfs mounted on a new directory, unmounted (lazily) when dropped: a filesystem
/// and a mount no one else makes events on.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        rustix::mount::mount(
            "pipecr-test",
            dir.path(),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mount tmpfs");
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.0.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn fanotify_group_comes_back_with_its_flags_and_marks() {
    let dir = Tmpfs::new();
    let file = file_with(dir.path(), "watched", b"x");
    let group = fanotify(
        libc::FAN_CLASS_NOTIF | libc::FAN_NONBLOCK | libc::FAN_UNLIMITED_QUEUE,
        (libc::O_RDONLY | libc::O_LARGEFILE) as u32,
    );
    fanotify_mark(
        group.as_fd(),
        libc::FAN_MARK_ADD,
        libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE,
        &file,
    );
    fanotify_mark(
        group.as_fd(),
        libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORED_MASK | libc::FAN_MARK_IGNORED_SURV_MODIFY,
        libc::FAN_CLOSE_NOWRITE,
        &file,
    );
    fanotify_mark(
        group.as_fd(),
        libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
        libc::FAN_CLOSE_WRITE | libc::FAN_ONDIR,
        dir.path(),
    );
    fanotify_mark(
        group.as_fd(),
        libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
        libc::FAN_MODIFY,
        dir.path(),
    );
    let before = fanotify_lines(group.as_fd());
    assert_eq!(before.len(), 4, "{before:?}");

    let (saved, restored) = roundtrip(group.as_fd());
    let Some(open_file::Kind::Fanotify(f)) = &saved.kind else {
        panic!("not saved as fanotify: {saved:?}");
    };
    assert_eq!(f.marks.len(), 3, "{f:?}");
    // Same flags, event flags, masks, ignore masks and mark flags, as fdinfo shows them.
    assert_eq!(fanotify_lines(restored.as_fd()), before);
    assert_eq!(flags(restored.as_fd()) & OFlags::NONBLOCK, OFlags::NONBLOCK);

    // The restored marks report a write to the file, with a descriptor of it: the
    // inode mark (FAN_MODIFY | FAN_CLOSE_WRITE), the filesystem mark (FAN_MODIFY), the
    // mount mark (FAN_CLOSE_WRITE), merged into one event.
    std::fs::write(&file, b"more").unwrap();
    let events = fanotify_events(restored.as_fd());
    assert_eq!(events.len(), 1, "{events:?}");
    let (mask, fd) = &events[0];
    assert_eq!(*mask, libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE);
    assert_eq!(
        link(fd.as_ref().expect("a descriptor").as_fd()),
        file.to_str().unwrap()
    );
}

/// The events queued in a fanotify group (non-blocking), as (mask, descriptor).
fn fanotify_events(group: BorrowedFd<'_>) -> Vec<(u64, Option<OwnedFd>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match rustix::io::read(group, &mut buf) {
            Ok(n) => n,
            Err(Errno::AGAIN) => return out,
            Err(e) => panic!("read fanotify: {e}"),
        };
        let mut at = 0;
        while at + 24 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let mask = u64::from_ne_bytes(buf[at + 8..at + 16].try_into().unwrap());
            let fd = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
            // SAFETY: each event carries a new descriptor (or -1) that the reader owns.
            let fd =
                (fd >= 0).then(|| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            out.push((mask, fd));
            at += len.max(24);
        }
    }
}

#[test]
fn fanotify_group_with_unread_events_is_refused_with_the_bytes() {
    let dir = Tmpfs::new();
    let file = file_with(dir.path(), "watched", b"x");
    let group = fanotify(
        libc::FAN_CLASS_NOTIF | libc::FAN_NONBLOCK,
        libc::O_RDONLY as u32,
    );
    fanotify_mark(group.as_fd(), libc::FAN_MARK_ADD, libc::FAN_MODIFY, &file);
    std::fs::write(&file, b"y").unwrap();
    let queued = rustix::io::ioctl_fionread(&group).unwrap();
    assert!(queued >= 24, "{queued}");
    assert_unsupported_in(
        me(),
        group.as_raw_fd(),
        &format!(
            "fanotify group holding {queued} bytes of unread events (pipecr cannot read \
             them without consuming them, nor queue them again)"
        ),
    );
    // The refusal read nothing.
    assert_eq!(rustix::io::ioctl_fionread(&group).unwrap(), queued);
}

/// An inotify instance watching a new directory for `IN_CREATE`, with one event queued:
/// the creation of "a", 32 bytes (a 16-byte header and the name padded to 16 bytes).
fn inotify_with_one_event() -> (tempfile::TempDir, OwnedFd) {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = tempfile::tempdir().unwrap();
    let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
    assert_eq!(
        inotify::add_watch(&inotify, dir.path(), WatchFlags::CREATE).unwrap(),
        1
    );
    file_with(dir.path(), "a", b"");
    assert_eq!(rustix::io::ioctl_fionread(&inotify).unwrap(), 32);
    (dir, inotify)
}

#[test]
fn inotify_with_unread_events_is_refused_with_the_bytes_it_would_lose() {
    let (_dir, inotify) = inotify_with_one_event();
    let fd = inotify.as_raw_fd();
    assert_unsupported_in(
        me(),
        fd,
        "inotify instance holding 32 bytes of unread events (pipecr cannot save them \
         without consuming them; --drop-inotify-events saves the instance and its watches \
         without them)",
    );
    // The refusal read nothing: the event is still there for the program.
    let mut buf = [0u8; 64];
    assert_eq!(rustix::io::read(&inotify, &mut buf).unwrap(), 32);
}

#[test]
fn inotify_with_unread_events_is_saved_without_them_when_asked() {
    use rustix::fs::inotify::WatchFlags;
    let (dir, inotify) = inotify_with_one_event();
    let fd = inotify.as_raw_fd();
    let images = tempfile::tempdir().unwrap();
    let options = DumpOptions {
        drop_inotify_events: true,
        ..DumpOptions::default()
    };
    let (image, dropped) = dump_dropping(images.path(), me(), fd, options).unwrap();
    assert_eq!(
        dropped,
        vec![Dropped {
            pid: me(),
            fd,
            what: "32 bytes of queued inotify events".into(),
        }]
    );
    assert_eq!(
        dropped[0].to_string(),
        format!(
            "pid {} fd {fd}: dropped 32 bytes of queued inotify events",
            me()
        )
    );
    let saved = saved(&image);
    let Some(open_file::Kind::Inotify(i)) = &saved.kind else {
        panic!("not saved as inotify: {saved:?}");
    };
    let watches: Vec<(i32, u32, &str)> = i
        .watches
        .iter()
        .map(|w| (w.wd, w.mask, w.path.as_str()))
        .collect();
    assert_eq!(
        watches,
        vec![(1, WatchFlags::CREATE.bits(), dir.path().to_str().unwrap())]
    );

    // The restored instance has the watch and no queued event...
    let restored = restore(&image).unwrap();
    assert_eq!(rustix::io::ioctl_fionread(&restored).unwrap(), 0);
    let mut buf = [0u8; 64];
    assert_eq!(rustix::io::read(&restored, &mut buf), Err(Errno::AGAIN));
    file_with(dir.path(), "b", b"");
    assert_eq!(rustix::io::read(&restored, &mut buf).unwrap(), 32);
    let wd = i32::from_ne_bytes(buf[..4].try_into().unwrap());
    let mask = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    assert_eq!((wd, mask), (1, WatchFlags::CREATE.bits()));
    assert_eq!(&buf[16..18], b"b\0");

    // ...while the live one still has the event of "a", then the one of "b".
    assert_eq!(rustix::io::read(&inotify, &mut buf).unwrap(), 64);
    assert_eq!(&buf[16..18], b"a\0");
    assert_eq!(&buf[48..50], b"b\0");
}

#[test]
fn perf_event_and_io_uring_of_another_process_are_not_supported_and_named() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = common::build_c("odd-kinds", include_str!("c/odd_kinds.c"), &[]);
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fds: Vec<i32> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let [event, ring] = fds[..] else {
        panic!("odd-kinds printed {line:?}");
    };
    assert_unsupported_in(pid, event, "anonymous inode perf_event");
    if ring < 0 {
        eprintln!("io_uring part skipped: io_uring_setup is refused on this kernel");
    } else {
        assert_unsupported_in(
            pid,
            ring,
            "an io_uring instance (its queues, registered files and buffers and requests in \
             flight live in the kernel, which gives user space no way to read them out or \
             rebuild them; CRIU cannot either)",
        );
    }
    // Fetching its descriptors left the program alone: it still reads its stdin and exits 0.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

// ---- pipes whose other side is gone, and the status flags of pipe ends ----

/// Dumps our descriptors `fds` (open file ids 1, 2, ...) into one image under `dir`.
fn dump_all(dir: &Path, fds: &[BorrowedFd<'_>]) -> (PathBuf, Vec<proto::OpenFile>) {
    let path = dir.join("img");
    let mut writer = ImageWriter::create(&path, ImageMeta::default()).unwrap();
    let mut sink = DumpSink::new(&mut writer, DumpOptions::default());
    let mut saved = Vec::new();
    for (i, fd) in fds.iter().enumerate() {
        let live = LiveFile::fetch(me(), fd.as_raw_fd()).unwrap();
        saved.push(files::dump_file(i as u64 + 1, &live, &mut sink).unwrap());
    }
    files::finish_dump(&mut saved, &mut sink).unwrap();
    writer.write_records(pipecr_image::FILES, &saved).unwrap();
    writer.commit().unwrap();
    (path, saved)
}

/// Restores every open file of `saved`, in order, then closes the anchors (as a restore
/// does once every open file exists).
fn restore_all(image: &Path, saved: &[proto::OpenFile]) -> Vec<OwnedFd> {
    let image = Image::open(image).unwrap();
    let mut ctx = RestoreCtx::new(&image).unwrap();
    files::prepare_restore(&mut ctx).unwrap();
    saved
        .iter()
        .map(|f| files::restore_file(f, &mut ctx).unwrap())
        .collect()
}

/// The only pipe record of an image, and what `external` says of each saved open file.
fn pipe_and_externals(image: &Path, saved: &[proto::OpenFile]) -> (proto::Pipe, Vec<String>) {
    let image = Image::open(image).unwrap();
    let pipes: Vec<proto::Pipe> = image.read_records(pipecr_image::PIPES).unwrap();
    assert_eq!(pipes.len(), 1, "{pipes:?}");
    let view = files::Saved {
        processes: &[],
        tables: &[],
        files: saved,
        pipes: &pipes,
    };
    let externals = saved
        .iter()
        .filter_map(|f| files::restorer_of(f).unwrap().external(f, &view))
        .map(|e| e.what)
        .collect();
    (pipes[0].clone(), externals)
}

/// The `flags:` line of our `/proc/self/fdinfo/N`, without close-on-exec (which is the
/// descriptor's, not the open file's).
fn fdinfo_flags(fd: BorrowedFd<'_>) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let line = info.lines().find(|l| l.starts_with("flags:")).unwrap();
    let flags = u32::from_str_radix(line["flags:".len()..].trim(), 8).unwrap();
    flags & !(libc::O_CLOEXEC as u32)
}

#[test]
fn pipe_read_end_whose_writer_was_closed_reads_its_bytes_then_end_of_file() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    assert_eq!(rustix::io::write(&w, b"last bytes").unwrap(), 10);
    drop(w);
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump_all(dir.path(), &[r.as_fd()]);
    let (pipe, externals) = pipe_and_externals(&image, &saved);
    assert!(pipe.writer_closed && !pipe.external_writer, "{pipe:?}");
    assert!(!pipe.reader_closed && !pipe.external_reader, "{pipe:?}");
    assert!(externals.is_empty(), "{externals:?}");
    // The original keeps its bytes.
    assert_eq!(read_rest(r.as_fd()), b"last bytes");

    let restored = restore_all(&image, &saved);
    assert_eq!(read_rest(restored[0].as_fd()), b"last bytes");
    let mut buf = [0u8; 8];
    assert_eq!(rustix::io::read(&restored[0], &mut buf), Ok(0));
}

#[test]
fn pipe_write_end_whose_reader_was_closed_gets_epipe() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    drop(r);
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump_all(dir.path(), &[w.as_fd()]);
    let (pipe, externals) = pipe_and_externals(&image, &saved);
    assert!(pipe.reader_closed && !pipe.external_reader, "{pipe:?}");
    assert!(!pipe.writer_closed && !pipe.external_writer, "{pipe:?}");
    assert!(externals.is_empty(), "{externals:?}");

    let restored = restore_all(&image, &saved);
    // The test harness ignores SIGPIPE, as Rust programs do: the write fails instead.
    assert_eq!(rustix::io::write(&restored[0], b"x"), Err(Errno::PIPE));
}

#[test]
fn pipe_whose_writer_is_held_elsewhere_stays_external() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    assert_eq!(rustix::io::write(&w, b"abc").unwrap(), 3);
    let dir = tempfile::tempdir().unwrap();
    // Only the read end is dumped: the write end we keep is "outside the tree".
    let (image, saved) = dump_all(dir.path(), &[r.as_fd()]);
    let (pipe, externals) = pipe_and_externals(&image, &saved);
    assert!(pipe.external_writer && !pipe.writer_closed, "{pipe:?}");
    let ino = rustix::fs::fstat(&r).unwrap().st_ino;
    assert_eq!(
        externals,
        vec![format!(
            "read end of pipe:[{ino}] (its writer is outside the tree)"
        )]
    );
    drop(w);
}

#[test]
fn pipe_write_end_dumped_alone_while_its_reader_is_held_elsewhere_stays_external() {
    // The checkpoint opens a read end of its own through /proc for a lone write end;
    // it must not be taken for the reader, nor hide that a reader exists.
    let (r, w) = rustix::pipe::pipe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (image, saved) = dump_all(dir.path(), &[w.as_fd()]);
    let (pipe, externals) = pipe_and_externals(&image, &saved);
    assert!(pipe.external_reader && !pipe.reader_closed, "{pipe:?}");
    assert_eq!(externals.len(), 1, "{externals:?}");
    drop(r);
}

#[test]
fn pipe_ends_come_back_with_exactly_their_status_flags() {
    for extra in [OFlags::empty(), OFlags::NONBLOCK] {
        let (r, w) = rustix::pipe::pipe().unwrap();
        if !extra.is_empty() {
            rustix::fs::fcntl_setfl(&r, extra).unwrap();
            rustix::fs::fcntl_setfl(&w, extra).unwrap();
        }
        assert_eq!(rustix::io::write(&w, b"12345").unwrap(), 5);
        // A third open file of the pipe, opened again through /proc (O_LARGEFILE).
        let again = open(format!("/proc/self/fd/{}", r.as_raw_fd()), OFlags::RDONLY);
        let originals = [r.as_fd(), w.as_fd(), again.as_fd()];
        let dir = tempfile::tempdir().unwrap();
        let (image, saved) = dump_all(dir.path(), &originals);
        let restored = restore_all(&image, &saved);
        for (o, n) in originals.iter().zip(&restored) {
            assert_eq!(flags(*o), flags(n.as_fd()), "F_GETFL, extra {extra:?}");
            assert_eq!(fdinfo_flags(*o), fdinfo_flags(n.as_fd()), "fdinfo flags");
        }
        assert!(!flags(restored[0].as_fd()).contains(OFlags::LARGEFILE));
        assert!(flags(restored[2].as_fd()).contains(OFlags::LARGEFILE));
        // The read end and the one opened through /proc are distinct open files.
        rustix::fs::fcntl_setfl(&restored[2], OFlags::NONBLOCK | OFlags::LARGEFILE).unwrap();
        rustix::fs::fcntl_setfl(&restored[0], OFlags::empty()).unwrap();
        assert!(flags(restored[2].as_fd()).contains(OFlags::NONBLOCK));
        assert!(!flags(restored[0].as_fd()).contains(OFlags::NONBLOCK));
    }
}

// ---- a FIFO kept open outside the tree ----

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

fn pending(fd: BorrowedFd<'_>) -> u64 {
    rustix::io::ioctl_fionread(fd).unwrap()
}

#[test]
fn fifo_kept_open_outside_with_its_bytes_is_not_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    mkfifo(&path);
    // "Outside the tree": a reader and a writer that stay open across dump and restore.
    let outside_r = open(&path, OFlags::RDONLY | OFlags::NONBLOCK);
    let outside_w = open(&path, OFlags::WRONLY);
    assert_eq!(rustix::io::write(&outside_w, b"once").unwrap(), 4);
    let tree = open(&path, OFlags::RDONLY | OFlags::NONBLOCK);
    let (image, saved) = dump_all(dir.path(), &[tree.as_fd()]);
    drop(tree);

    let restored = restore_all(&image, &saved);
    assert_eq!(pending(restored[0].as_fd()), 4, "the bytes are there once");
    let mut buf = [0u8; 16];
    assert_eq!(rustix::io::read(&restored[0], &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"once");
    // Still the pipe the outside writes into.
    assert_eq!(rustix::io::write(&outside_w, b"more").unwrap(), 4);
    assert_eq!(rustix::io::read(&restored[0], &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"more");
    drop(outside_r);
}

#[test]
fn fifo_kept_open_outside_that_was_drained_since_the_dump_is_not_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    mkfifo(&path);
    // Only a writer stays outside; the bytes it wrote are read before the restore.
    let tree = open(&path, OFlags::RDONLY | OFlags::NONBLOCK);
    let outside_w = open(&path, OFlags::WRONLY);
    assert_eq!(rustix::io::write(&outside_w, b"read").unwrap(), 4);
    let (image, saved) = dump_all(dir.path(), &[tree.as_fd()]);
    let mut buf = [0u8; 16];
    assert_eq!(rustix::io::read(&tree, &mut buf), Ok(4));
    drop(tree);

    let restored = restore_all(&image, &saved);
    assert_eq!(
        pending(restored[0].as_fd()),
        0,
        "what was read is not handed again"
    );
    assert_eq!(rustix::io::write(&outside_w, b"new").unwrap(), 3);
    assert_eq!(rustix::io::read(&restored[0], &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"new");
}

#[test]
fn fifo_no_one_kept_open_is_refilled_from_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    mkfifo(&path);
    let tree = open(&path, OFlags::RDWR | OFlags::NONBLOCK);
    assert_eq!(rustix::io::write(&tree, b"saved").unwrap(), 5);
    let (image, saved) = dump_all(dir.path(), &[tree.as_fd()]);
    drop(tree);

    let restored = restore_all(&image, &saved);
    assert_eq!(pending(restored[0].as_fd()), 5);
    let mut buf = [0u8; 16];
    assert_eq!(rustix::io::read(&restored[0], &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"saved");
}

#[test]
fn fifo_read_end_whose_writer_was_closed_reads_its_bytes_then_end_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    mkfifo(&path);
    let tree = open(&path, OFlags::RDONLY | OFlags::NONBLOCK);
    let writer = open(&path, OFlags::WRONLY);
    assert_eq!(rustix::io::write(&writer, b"last bytes").unwrap(), 10);
    // Every writer gone: no process outside holds the FIFO either.
    drop(writer);
    let (image, saved) = dump_all(dir.path(), &[tree.as_fd()]);
    // Not external: a FIFO is opened again by path, and has then the writers it had
    // (none) once the restore's own anchor is closed.
    let (_, externals) = pipe_and_externals(&image, &saved);
    assert!(externals.is_empty(), "{externals:?}");
    // The original keeps its bytes.
    assert_eq!(pending(tree.as_fd()), 10);
    drop(tree);

    let restored = restore_all(&image, &saved);
    assert_eq!(read_rest(restored[0].as_fd()), b"last bytes");
    let mut buf = [0u8; 8];
    assert_eq!(
        rustix::io::read(&restored[0], &mut buf),
        Ok(0),
        "end of file: no writer"
    );
}

#[test]
fn fifo_write_end_whose_reader_was_closed_gets_epipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    mkfifo(&path);
    let reader = open(&path, OFlags::RDONLY | OFlags::NONBLOCK);
    let tree = open(&path, OFlags::WRONLY);
    drop(reader);
    assert_eq!(rustix::io::write(&tree, b"x"), Err(Errno::PIPE));
    let (image, saved) = dump_all(dir.path(), &[tree.as_fd()]);
    let (_, externals) = pipe_and_externals(&image, &saved);
    assert!(externals.is_empty(), "{externals:?}");
    drop(tree);

    let restored = restore_all(&image, &saved);
    // The test harness ignores SIGPIPE, as Rust programs do: the write fails instead.
    assert_eq!(rustix::io::write(&restored[0], b"x"), Err(Errno::PIPE));
    assert_eq!(
        fdinfo_flags(restored[0].as_fd()) & libc::O_ACCMODE as u32,
        libc::O_WRONLY as u32
    );
}

// ---- netlink sockets ----

/// `SOL_NETLINK` and the options a generic netlink socket test sets.
const SOL_NETLINK: i32 = 270;
const NETLINK_OPTIONS: [i32; 6] = [3, 4, 5, 10, 11, 12];
/// `NETLINK_ADD_MEMBERSHIP`, `NETLINK_LIST_MEMBERSHIPS`.
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
/// The nlctrl family's "notify" multicast group: the first group generic netlink gives
/// out (`GENL_ID_CTRL`).
const NLCTRL_NOTIFY: u32 = 16;

fn nl_get(fd: BorrowedFd<'_>, opt: i32) -> i32 {
    pipecr::sys::inet::get_int(fd, SOL_NETLINK, opt).unwrap()
}

/// The words of `NETLINK_LIST_MEMBERSHIPS`, trailing zeros dropped.
fn memberships(fd: BorrowedFd<'_>) -> Vec<u32> {
    let mut buf = [0u8; 32];
    let n =
        pipecr::sys::inet::get_bytes(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, &mut buf).unwrap();
    let mut words: Vec<u32> = buf[..n]
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    words
}

/// A generic netlink socket in nlctrl's "notify" group with every option on.
fn generic_netlink() -> OwnedFd {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::GENERIC),
    )
    .unwrap();
    pipecr::sys::inet::set_int(
        sock.as_fd(),
        SOL_NETLINK,
        NETLINK_ADD_MEMBERSHIP,
        NLCTRL_NOTIFY as i32,
    )
    .unwrap();
    for opt in NETLINK_OPTIONS {
        pipecr::sys::inet::set_int(sock.as_fd(), SOL_NETLINK, opt, 1).unwrap();
    }
    sock
}

#[test]
fn generic_netlink_socket_keeps_its_options_and_groups_by_name() {
    let sock = generic_netlink();
    let dir = tempfile::tempdir().unwrap();
    let image = dump(dir.path(), sock.as_fd(), DumpOptions::default()).unwrap();
    drop(sock);
    let mut saved = saved(&image);
    let Some(open_file::Kind::NetlinkSocket(s)) = &mut saved.kind else {
        panic!("not saved as a netlink socket: {saved:?}");
    };
    assert_eq!(s.protocol, 16);
    assert_eq!(s.groups, vec![1 << (NLCTRL_NOTIFY - 1)]);
    assert_eq!(
        s.genl_groups,
        vec![proto::GenlGroup {
            id: NLCTRL_NOTIFY,
            family: "nlctrl".into(),
            name: "notify".into(),
        }]
    );
    assert_eq!(
        s.options,
        NETLINK_OPTIONS.iter().map(|o| 1 << o).sum::<u32>()
    );
    let restored = restore(&image).unwrap();
    assert_eq!(
        memberships(restored.as_fd()),
        vec![1 << (NLCTRL_NOTIFY - 1)]
    );
    for opt in NETLINK_OPTIONS {
        assert_eq!(nl_get(restored.as_fd(), opt), 1, "option {opt}");
    }
    drop(restored);

    // Saved on a boot where the group had number 31: restored, it joins the group of
    // that name, whatever its number here.
    s.groups = vec![1 << 30];
    s.genl_groups[0].id = 31;
    let moved = dir.path().join("moved");
    let mut writer = ImageWriter::create(&moved, ImageMeta::default()).unwrap();
    writer
        .write_records(pipecr_image::FILES, std::slice::from_ref(&saved))
        .unwrap();
    writer.commit().unwrap();
    let restored = restore(&moved).unwrap();
    assert_eq!(
        memberships(restored.as_fd()),
        vec![1 << (NLCTRL_NOTIFY - 1)]
    );

    // A family that is not registered here is named.
    let Some(open_file::Kind::NetlinkSocket(s)) = &mut saved.kind else {
        unreachable!()
    };
    s.genl_groups[0].family = "no-such-family".into();
    let gone = dir.path().join("gone");
    let mut writer = ImageWriter::create(&gone, ImageMeta::default()).unwrap();
    writer
        .write_records(pipecr_image::FILES, std::slice::from_ref(&saved))
        .unwrap();
    writer.commit().unwrap();
    let err = restore(&gone).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "open file {ID} (generic netlink socket in group notify of family \
             no-such-family): find the group (CTRL_CMD_GETFAMILY) failed"
        )
    );
}

#[test]
fn netlink_socket_with_queued_messages_is_refused_or_saved_without_them() {
    use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::GENERIC),
    )
    .unwrap();
    // CTRL_CMD_GETFAMILY for "nlctrl", its answer left unread.
    let mut req = Vec::new();
    let attr_name = b"nlctrl\0";
    let attr_len = 4 + attr_name.len();
    let len = 16 + 4 + ((attr_len + 3) & !3);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&0x10u16.to_ne_bytes()); // GENL_ID_CTRL
    req.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    req.extend_from_slice(&[0u8; 8]);
    req.extend_from_slice(&[3, 1, 0, 0]); // CTRL_CMD_GETFAMILY, version 1
    req.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    req.extend_from_slice(&2u16.to_ne_bytes()); // CTRL_ATTR_FAMILY_NAME
    req.extend_from_slice(attr_name);
    req.resize(len, 0);
    rustix::net::sendto(
        &sock,
        &req,
        SendFlags::empty(),
        &rustix::net::netlink::SocketAddrNetlink::new(0, 0),
    )
    .unwrap();
    let fd = sock.as_raw_fd();
    let dir = tempfile::tempdir().unwrap();
    let err = dump(dir.path(), sock.as_fd(), DumpOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "pid {} fd {fd}: generic netlink socket with messages waiting to be read (the \
             first is ",
            me()
        )) && message.contains("bytes of receive buffer in use): pipecr cannot save them"),
        "{message}"
    );
    let options = DumpOptions {
        drop_netlink_messages: true,
        ..DumpOptions::default()
    };
    let (image, dropped) = dump_dropping(dir.path(), me(), fd, options).unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(
        dropped[0]
            .what
            .starts_with("queued messages of a generic netlink socket ("),
        "{dropped:?}"
    );
    // The live socket still has the answer; the restored one (after the live one is
    // closed: it takes its port id) has nothing.
    let mut buf = [0u8; 4096];
    let n = rustix::io::read(&sock, &mut buf).unwrap();
    assert!(n > 20, "{n}");
    assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 0x10);
    drop(sock);
    let restored = restore(&image).unwrap();
    assert_eq!(
        rustix::net::recv(&restored, &mut buf, rustix::net::RecvFlags::DONTWAIT).map(|r| r.0),
        Err(Errno::AGAIN)
    );
}
