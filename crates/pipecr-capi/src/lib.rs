//! C ABI for pipecr's in-process pipe checkpoint and restore: `libpipecr.so` /
//! `libpipecr.a`, declared by the hand-written header `include/pipecr.h`.
//!
//! Three functions, the 2007 RFC's interface for C programs:
//!
//! - [`pipecr_checkpoint_pipe`]: save the pipe behind a descriptor (either end) into a new
//!   image directory, without consuming its data ([`pipecr::pipe::checkpoint`] +
//!   [`pipecr::pipe::save`]).
//! - [`pipecr_restore_pipe`]: recreate a saved pipe and install its ends at chosen
//!   descriptor numbers, or at new ones ([`pipecr::pipe::load`] +
//!   [`pipecr::pipe::restore_at`] / [`pipecr::pipe::restore`]).
//! - [`pipecr_last_error`]: the message of the last failure on the calling thread.
//!
//! Every entry point returns 0 on success and -1 on failure, sets `errno` (the OS error
//! when there is one, else a close match, else `EINVAL`) and records a message. Null
//! pointers and bad descriptor numbers are errors; a panic inside pipecr is caught and
//! reported as an error, it never unwinds into C.
//!
//! # `unsafe` in this crate
//!
//! pipecr keeps `unsafe` in one place, `pipecr::sys`. This crate is the one other place:
//! a C ABI takes raw pointers (a C string, an `int[2]`) and raw descriptor numbers, and
//! writes `errno`, none of which can be done without `unsafe`. Each block is one operation
//! with a `// SAFETY:` comment; everything else here is safe code over pipecr's API.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::RefCell;
use std::error::Error as StdError;
use std::ffi::{CStr, CString, OsStr, c_char, c_int};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use pipecr::pipe::{self, PipeError};
use pipecr_image::ImageError;

/// Why a call failed: the message for [`pipecr_last_error`] and the `errno` to set.
struct Failure {
    message: String,
    errno: c_int,
}

impl Failure {
    fn new(errno: c_int, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            errno,
        }
    }

    /// A failure of pipecr: the error and its causes as one line, the first OS error in
    /// the chain as `errno`.
    fn from_pipe(err: &PipeError) -> Failure {
        Failure::new(errno_of(err), chain(err))
    }
}

thread_local! {
    /// The message of the last failure on this thread; empty before the first one.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The `errno` that best describes `err`: the first OS error in its chain of causes, a
/// close match for the image errors that have none, else `EINVAL`.
fn errno_of(err: &PipeError) -> c_int {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return code;
        }
        cause = e.source();
    }
    match err {
        PipeError::Image(ImageError::AlreadyExists { .. }) => libc::EEXIST,
        PipeError::Image(ImageError::NotAnImage { .. } | ImageError::MissingFile { .. }) => {
            libc::ENOENT
        }
        _ => libc::EINVAL,
    }
}

/// `err` and each of its causes, separated by `": "`; a cause whose text the message
/// already holds is skipped.
fn chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}

/// Records `failure` for [`pipecr_last_error`], sets `errno`, and returns -1.
fn fail(failure: Failure) -> c_int {
    // A C string cannot hold NUL: a message with one (a hostile image name, say) keeps
    // its text with the NULs replaced.
    let message = CString::new(failure.message.replace('\0', "\u{FFFD}"))
        .unwrap_or_else(|_| CString::default());
    // During thread teardown the slot may be gone already; errno still tells the story.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = message);
    set_errno(failure.errno);
    -1
}

/// Sets the calling thread's `errno`.
fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns a valid, aligned pointer to the calling thread's
    // errno, which lives as long as the thread; writing an int to it is what C does.
    unsafe { *libc::__errno_location() = code };
}

/// Runs the body of an entry point named `name`: its failure or panic becomes -1 with
/// `errno` and a message, success becomes 0.
fn entry(name: &str, body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(failure)) => fail(Failure {
            message: format!("{name}: {}", failure.message),
            ..failure
        }),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown panic");
            fail(Failure::new(
                libc::EINVAL,
                format!("{name}: internal error (panic: {what}); please report it"),
            ))
        }
    }
}

/// The path behind a C string argument named `what`: any bytes but NUL, as Linux paths
/// are; not necessarily UTF-8.
///
/// # Safety
///
/// `ptr` is null or points to a NUL-terminated string that stays valid and unchanged
/// during the call.
unsafe fn path_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a Path, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            libc::EINVAL,
            format!("{what} is a null pointer"),
        ));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string that outlives
    // the call (the header says so).
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::new(libc::ENOENT, format!("{what} is empty")));
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// Borrows descriptor `fd` of the calling process after checking that it is open.
fn borrow_fd<'a>(fd: c_int) -> Result<BorrowedFd<'a>, Failure> {
    let not_open = |err: io::Error| {
        let errno = err.raw_os_error().unwrap_or(libc::EBADF);
        Failure::new(errno, format!("fd {fd} is not an open descriptor: {err}"))
    };
    if fd < 0 {
        return Err(not_open(io::Error::from_raw_os_error(libc::EBADF)));
    }
    // SAFETY: fcntl(F_GETFD) takes an integer and touches no memory; on a number that is
    // not open it fails with EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(not_open(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is open (checked just above) and not -1; the header requires the
    // caller to keep it open for the duration of the call, which is as long as this
    // borrow is used.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `pipecr_checkpoint_pipe(fd, image_path)`: checkpoints the pipe (or FIFO) behind `fd`,
/// which may be its read or its write end, into a new image directory `image_path`.
///
/// The pipe's data is not consumed: afterwards it holds exactly the bytes it held before.
/// `image_path` must not exist; it appears only once complete (written atomically).
/// Returns 0, or -1 with `errno` set and a message for [`pipecr_last_error`].
///
/// # Safety
///
/// `image_path` is null or a NUL-terminated string valid for the duration of the call;
/// `fd` stays open (no other thread closes it) during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pipecr_checkpoint_pipe(fd: c_int, image_path: *const c_char) -> c_int {
    entry("pipecr_checkpoint_pipe", || {
        // SAFETY: forwarded from this function's contract.
        let path = unsafe { path_arg(image_path, "image_path") }?;
        let fd = borrow_fd(fd)?;
        let image = pipe::checkpoint(fd).map_err(|e| Failure::from_pipe(&e))?;
        pipe::save(&image, path).map_err(|e| Failure::from_pipe(&e))?;
        Ok(())
    })
}

/// `pipecr_restore_pipe(image_path, fd)`: recreates the pipe saved in `image_path` with
/// its capacity, pending bytes (packet by packet in packet mode) and the flags of its
/// ends, and installs its read end at `fd[0]` and its write end at `fd[1]`.
///
/// A non-negative number is used as is (whatever it referred to is closed, as by
/// `dup2`); a negative one lets pipecr pick a new number, which is written back into
/// `fd`. The two numbers must differ. The ends are not close-on-exec, as with `pipe(2)`.
/// Returns 0, or -1 with `errno` set and a message for [`pipecr_last_error`]; on failure
/// `fd` is unchanged.
///
/// # Safety
///
/// `image_path` is null or a NUL-terminated string valid for the duration of the call;
/// `fd` is null or points to two writable `int`s not accessed by others during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pipecr_restore_pipe(image_path: *const c_char, fd: *mut c_int) -> c_int {
    entry("pipecr_restore_pipe", || {
        // SAFETY: forwarded from this function's contract.
        let path = unsafe { path_arg(image_path, "image_path") }?;
        if fd.is_null() {
            return Err(Failure::new(libc::EINVAL, "fd is a null pointer"));
        }
        // SAFETY: non-null, and the caller promises two valid, exclusively ours ints.
        let fds = unsafe { &mut *fd.cast::<[c_int; 2]>() };
        let [read_fd, write_fd] = *fds;
        if read_fd >= 0 && read_fd == write_fd {
            return Err(Failure::new(
                libc::EINVAL,
                format!("fd[0] and fd[1] are both {read_fd}: the two ends need two numbers"),
            ));
        }
        let image = pipe::load(path).map_err(|e| {
            // "not a pipecr image" is true but less helpful than "it does not exist".
            if let Err(err) = path.symlink_metadata() {
                if err.kind() == io::ErrorKind::NotFound {
                    return Failure::new(
                        libc::ENOENT,
                        format!("image {}: no such file or directory", path.display()),
                    );
                }
            }
            let mut failure = Failure::from_pipe(&e);
            if !failure.message.contains(&*path.to_string_lossy()) {
                failure.message = format!("image {}: {}", path.display(), failure.message);
            }
            failure
        })?;
        *fds = if read_fd >= 0 && write_fd >= 0 {
            pipe::restore_at(&image, read_fd, write_fd).map_err(|e| Failure::from_pipe(&e))?;
            [read_fd, write_fd]
        } else {
            let (read, write) = pipe::restore(&image).map_err(|e| Failure::from_pipe(&e))?;
            hand_over(read, write, read_fd, write_fd)?
        };
        Ok(())
    })
}

/// Gives the caller a freshly restored pipe: each end at its requested number when that
/// is non-negative, else where it is; clears close-on-exec. Returns the final numbers.
fn hand_over(
    read: OwnedFd,
    write: OwnedFd,
    read_fd: RawFd,
    write_fd: RawFd,
) -> Result<[c_int; 2], Failure> {
    let sys = |fd: &OwnedFd, op: &str, err: io::Error| {
        Failure::new(
            err.raw_os_error().unwrap_or(libc::EINVAL),
            format!("fd {}: {op} failed: {err}", fd.as_raw_fd()),
        )
    };
    // An end may have landed on the number requested for the other one: move it out of
    // the way first, so installing one end never closes the other.
    let (mut read, mut write) = (read, write);
    if write_fd >= 0 && read.as_raw_fd() == write_fd {
        read = rustix::io::fcntl_dupfd_cloexec(&read, 0)
            .map_err(|e| sys(&read, "fcntl(F_DUPFD_CLOEXEC)", e.into()))?;
    }
    if read_fd >= 0 && write.as_raw_fd() == read_fd {
        write = rustix::io::fcntl_dupfd_cloexec(&write, 0)
            .map_err(|e| sys(&write, "fcntl(F_DUPFD_CLOEXEC)", e.into()))?;
    }
    let place = |fd: OwnedFd, target: RawFd| -> Result<OwnedFd, Failure> {
        if target < 0 {
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())
                .map_err(|e| sys(&fd, "fcntl(F_SETFD)", e.into()))?;
            return Ok(fd);
        }
        let from = fd.as_fd().as_raw_fd();
        pipecr::sys::fd::install_at(fd, target, false).map_err(|err| {
            Failure::new(
                err.raw_os_error().unwrap_or(libc::EINVAL),
                format!("fd {from}: dup3 to fd {target} failed: {err}"),
            )
        })
    };
    let read = place(read, read_fd)?;
    let write = place(write, write_fd)?;
    // From here on the caller owns both descriptors.
    Ok([read.into_raw_fd(), write.into_raw_fd()])
}

/// `pipecr_last_error()`: the message of the last failed pipecr call on the calling
/// thread, as a NUL-terminated string; the empty string if none has failed.
///
/// Successful calls leave it unchanged, as with `errno`. The pointer stays valid until
/// the next pipecr call on the same thread; it must not be freed.
#[unsafe(no_mangle)]
pub extern "C" fn pipecr_last_error() -> *const c_char {
    // The thread's slot outlives any call on the thread; only its teardown removes it.
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    //! The entry points called from Rust, for what C cannot easily provoke; the C view is
    //! `tests/c_abi.rs`.

    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn last_error() -> String {
        // SAFETY: pipecr_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(pipecr_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    fn errno() -> c_int {
        io::Error::last_os_error().raw_os_error().unwrap()
    }

    #[test]
    fn last_error_is_empty_before_any_failure_and_per_thread() {
        std::thread::spawn(|| assert_eq!(last_error(), ""))
            .join()
            .unwrap();
    }

    #[test]
    fn null_pointers_are_errors() {
        // SAFETY: null is allowed by the contract.
        assert_eq!(unsafe { pipecr_checkpoint_pipe(0, std::ptr::null()) }, -1);
        assert_eq!(errno(), libc::EINVAL);
        assert!(
            last_error().contains("image_path is a null pointer"),
            "{}",
            last_error()
        );
        let mut fds = [-1, -1];
        // SAFETY: null path, valid fd array.
        assert_eq!(
            unsafe { pipecr_restore_pipe(std::ptr::null(), fds.as_mut_ptr()) },
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
        let path = CString::new("/nonexistent").unwrap();
        // SAFETY: valid path, null array.
        assert_eq!(
            unsafe { pipecr_restore_pipe(path.as_ptr(), std::ptr::null_mut()) },
            -1
        );
        assert!(
            last_error().contains("fd is a null pointer"),
            "{}",
            last_error()
        );
    }

    #[test]
    fn round_trip_with_new_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let image = CString::new(dir.path().join("img").as_os_str().as_bytes()).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        rustix::io::write(&w, b"hello").unwrap();
        // SAFETY: `r` is open for the call; `image` is a valid C string.
        assert_eq!(
            unsafe { pipecr_checkpoint_pipe(r.as_raw_fd(), image.as_ptr()) },
            0
        );
        let mut fds = [-1, -1];
        // SAFETY: valid path and array.
        let rc = unsafe { pipecr_restore_pipe(image.as_ptr(), fds.as_mut_ptr()) };
        assert_eq!(rc, 0, "{}", last_error());
        assert!(fds[0] >= 0 && fds[1] >= 0 && fds[0] != fds[1]);
        // SAFETY: pipecr_restore_pipe handed both descriptors to us.
        let (nr, _nw) = unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let mut buf = [0u8; 16];
        assert_eq!(rustix::io::read(&nr, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // Checkpointing again over the same image is refused.
        // SAFETY: as above.
        assert_eq!(
            unsafe { pipecr_checkpoint_pipe(r.as_raw_fd(), image.as_ptr()) },
            -1
        );
        assert_eq!(errno(), libc::EEXIST);
    }

    #[test]
    fn panics_become_errors() {
        let rc = entry("pipecr_test", || panic!("boom"));
        assert_eq!(rc, -1);
        assert_eq!(errno(), libc::EINVAL);
        assert!(last_error().contains("pipecr_test: internal error (panic: boom)"));
    }
}
