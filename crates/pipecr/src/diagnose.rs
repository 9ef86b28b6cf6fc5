//! What went wrong, for programs: every error of the library mapped, in this one place,
//! to a class (which decides the exit code of the `pipecr` command), a stable code and
//! the PID, thread, fd and kind concerned. Only the error enums are read, never their
//! messages.
//!
//! On top of the library: it imports the error types of every layer, and no layer
//! imports it. A variant added to an error enum lands in the catch-all arm of its
//! enum's function (class [`ErrorClass::Internal`], code of its enum) until it is
//! given its own arm here.

use std::error::Error;
use std::io;

use pipecr_image::ImageError;

use crate::dump::DumpError;
use crate::files::FileError;
use crate::freeze::FreezeError;
use crate::inject::InjectError;
use crate::mem::MemError;
use crate::pipe::PipeError;
use crate::posix_timers::Unrestorable;
use crate::proc::ProcError;
use crate::restore::external::ExternalError;
use crate::restore::process::ProcessRestoreError;
use crate::task::TaskError;

/// What kind of failure it was: what a caller can do about it. Each class has its own
/// exit code ([`ErrorClass::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Anything else: a system call that failed unexpectedly, a bug (exit code 1).
    Internal,
    /// The arguments are wrong: a PID that does not exist, an `--inherit-fd` that names
    /// nothing (exit code 2, as for a command line clap refuses).
    BadArguments,
    /// The tree holds something pipecr cannot save or restore (exit code 3): the dump
    /// refused and left the tree running.
    Unsupported,
    /// The image is damaged, incomplete or not an image (exit code 4).
    DamagedImage,
    /// Something on this machine is in the way (exit code 5): a PID in use, a file that
    /// is missing or changed, a descriptor that needs a source, a process traced by
    /// another tracer, an image directory that exists.
    Conflict,
    /// This machine lacks a privilege or kernel feature pipecr needs (exit code 6).
    Environment,
}

impl ErrorClass {
    /// Every class, in exit-code order.
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Internal,
        ErrorClass::BadArguments,
        ErrorClass::Unsupported,
        ErrorClass::DamagedImage,
        ErrorClass::Conflict,
        ErrorClass::Environment,
    ];

    /// The exit code of the `pipecr` command for this class.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Internal => 1,
            ErrorClass::BadArguments => 2,
            ErrorClass::Unsupported => 3,
            ErrorClass::DamagedImage => 4,
            ErrorClass::Conflict => 5,
            ErrorClass::Environment => 6,
        }
    }

    /// Its stable name (`"unsupported"`, ...), as `--json` gives it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Internal => "internal",
            ErrorClass::BadArguments => "bad_arguments",
            ErrorClass::Unsupported => "unsupported",
            ErrorClass::DamagedImage => "damaged_image",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Environment => "environment",
        }
    }
}

/// One failure, for programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What kind of failure.
    pub class: ErrorClass,
    /// A stable code naming the failure (`"unsupported_file"`, `"pid_in_use"`, ...);
    /// `docs/CLI-JSON.md` lists them.
    pub code: &'static str,
    /// The process concerned.
    pub pid: Option<i32>,
    /// The thread concerned.
    pub tid: Option<i32>,
    /// The descriptor concerned (in the process `pid`).
    pub fd: Option<i32>,
    /// What the file, area or resource is, in words (`"inet socket"`, ...).
    pub kind: Option<String>,
    /// The file concerned: a file of the image, or a path the restore needs.
    pub file: Option<String>,
}

impl Diagnosis {
    fn new(class: ErrorClass, code: &'static str) -> Diagnosis {
        Diagnosis {
            class,
            code,
            pid: None,
            tid: None,
            fd: None,
            kind: None,
            file: None,
        }
    }

    fn pid(mut self, pid: i32) -> Self {
        self.pid = Some(pid);
        self
    }

    fn tid(mut self, tid: i32) -> Self {
        self.tid = Some(tid);
        self
    }

    fn fd(mut self, fd: i32) -> Self {
        self.fd = Some(fd);
        self
    }

    fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    fn file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

/// The diagnosis of `err` or of the first error of its `source()` chain that is one of
/// the library's; [`ErrorClass::Internal`] with code `"internal"` when none is.
pub fn diagnose(err: &(dyn Error + 'static)) -> Diagnosis {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(d) = diagnose_one(e) {
            return d;
        }
        next = e.source();
    }
    Diagnosis::new(ErrorClass::Internal, "internal")
}

/// The diagnosis of `err` itself when it is one of the library's errors.
pub fn diagnose_one(err: &(dyn Error + 'static)) -> Option<Diagnosis> {
    if let Some(e) = err.downcast_ref::<DumpError>() {
        return Some(dump(e));
    }
    if let Some(e) = err.downcast_ref::<ProcessRestoreError>() {
        return Some(restore(e));
    }
    if let Some(e) = err.downcast_ref::<FreezeError>() {
        return Some(freeze(e));
    }
    if let Some(e) = err.downcast_ref::<FileError>() {
        return Some(file(e));
    }
    if let Some(e) = err.downcast_ref::<MemError>() {
        return Some(mem(e));
    }
    if let Some(e) = err.downcast_ref::<TaskError>() {
        return Some(task(e));
    }
    if let Some(e) = err.downcast_ref::<InjectError>() {
        return Some(inject(e));
    }
    if let Some(e) = err.downcast_ref::<ExternalError>() {
        return Some(external(e));
    }
    if let Some(e) = err.downcast_ref::<PipeError>() {
        return Some(pipe(e));
    }
    if let Some(e) = err.downcast_ref::<ProcError>() {
        return Some(proc(e));
    }
    if let Some(e) = err.downcast_ref::<Unrestorable>() {
        return Some(timer(e));
    }
    if let Some(e) = err.downcast_ref::<ImageError>() {
        return Some(image(e));
    }
    None
}

/// A failed system call: missing privilege (`EPERM`, `EACCES`) is the machine's, the
/// rest internal.
fn os(code: &'static str, source: &io::Error) -> Diagnosis {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => Diagnosis::new(ErrorClass::Environment, code),
        _ => Diagnosis::new(ErrorClass::Internal, code),
    }
}

fn dump(e: &DumpError) -> Diagnosis {
    match e {
        DumpError::Freeze(e) => freeze(e),
        DumpError::Proc(e) => proc(e),
        DumpError::Mem(e) => mem(e),
        DumpError::Task(e) => task(e),
        DumpError::File(e) => file(e),
        DumpError::Image(e) => image(e),
        DumpError::Shared { pid, what, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "shared_resource")
                .pid(*pid)
                .kind(*what)
        }
        DumpError::Sys { pid, op, source } => os("system_call_failed", source).pid(*pid).kind(*op),
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "dump_failed"),
    }
}

fn freeze(e: &FreezeError) -> Diagnosis {
    match e {
        FreezeError::NoSuchProcess { pid } => {
            Diagnosis::new(ErrorClass::BadArguments, "no_such_process").pid(*pid)
        }
        FreezeError::KernelThread { pid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "kernel_thread").pid(*pid)
        }
        FreezeError::AlreadyTraced { pid, .. } => {
            Diagnosis::new(ErrorClass::Conflict, "already_traced").pid(*pid)
        }
        FreezeError::TracesOutside { tracer, .. } => {
            Diagnosis::new(ErrorClass::Conflict, "traces_outside").pid(*tracer)
        }
        FreezeError::ContainsSelf { root, .. } => {
            Diagnosis::new(ErrorClass::BadArguments, "tree_contains_pipecr").pid(*root)
        }
        FreezeError::Zombie { pid } => Diagnosis::new(ErrorClass::Unsupported, "zombie").pid(*pid),
        FreezeError::ZombieLeader { pid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "zombie_leader").pid(*pid)
        }
        FreezeError::IoUringWorker { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "io_uring")
                .pid(*pid)
                .tid(*tid)
        }
        FreezeError::Ptrace {
            pid, tid, source, ..
        } => os("ptrace_failed", source).pid(*pid).tid(*tid),
        FreezeError::Proc(e) => proc(e),
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "freeze_failed"),
    }
}

fn proc(e: &ProcError) -> Diagnosis {
    match e {
        ProcError::NoSuchProcess { pid } => {
            Diagnosis::new(ErrorClass::Conflict, "process_gone").pid(*pid)
        }
        ProcError::Read { path, source } => {
            os("proc_read_failed", source).file(path.display().to_string())
        }
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "proc_failed"),
    }
}

fn file(e: &FileError) -> Diagnosis {
    match e {
        FileError::Unsupported { pid, fd, kind } => {
            Diagnosis::new(ErrorClass::Unsupported, "unsupported_file")
                .pid(*pid)
                .fd(*fd)
                .kind(kind.as_str())
        }
        FileError::Unreachable { pid, fd, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "unreachable_file")
                .pid(*pid)
                .fd(*fd)
        }
        FileError::Dump {
            pid,
            fd,
            what,
            source,
            ..
        } => os("file_dump_failed", source)
            .pid(*pid)
            .fd(*fd)
            .kind(what.as_str()),
        FileError::TooLarge { pid, fd, what, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "file_too_large")
                .pid(*pid)
                .fd(*fd)
                .kind(what.as_str())
        }
        FileError::Restore { what, source, .. } => match source.kind() {
            // A network interface a packet socket was bound to.
            _ if source.raw_os_error() == Some(libc::ENODEV) => {
                Diagnosis::new(ErrorClass::Conflict, "missing_interface")
            }
            io::ErrorKind::NotFound => Diagnosis::new(ErrorClass::Conflict, "missing_file"),
            _ => os("file_restore_failed", source),
        }
        .kind(what.as_str()),
        FileError::Changed { path, .. } => {
            Diagnosis::new(ErrorClass::Conflict, "file_changed").file(path.as_str())
        }
        FileError::Invalid { .. } => Diagnosis::new(ErrorClass::DamagedImage, "invalid_record"),
        FileError::Pipe(e) => pipe(e),
        FileError::Image(e) => image(e),
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "file_failed"),
    }
}

fn pipe(e: &PipeError) -> Diagnosis {
    match e {
        PipeError::NotAPipe { fd, kind } => Diagnosis::new(ErrorClass::BadArguments, "not_a_pipe")
            .fd(*fd)
            .kind(*kind),
        PipeError::DifferentPipes { fd, .. } => {
            Diagnosis::new(ErrorClass::BadArguments, "different_pipes").fd(*fd)
        }
        PipeError::Sys { fd, source, .. } => os("pipe_call_failed", source).fd(*fd),
        PipeError::CapacityRefused { .. } => {
            Diagnosis::new(ErrorClass::Environment, "pipe_capacity_refused")
        }
        PipeError::Invalid(_) => Diagnosis::new(ErrorClass::DamagedImage, "invalid_record"),
        PipeError::Record { file, .. } => {
            Diagnosis::new(ErrorClass::DamagedImage, "invalid_record")
                .file(file.display().to_string())
        }
        PipeError::Image(e) => image(e),
        _ => Diagnosis::new(ErrorClass::Internal, "pipe_failed"),
    }
}

fn mem(e: &MemError) -> Diagnosis {
    match e {
        MemError::Proc(e) => proc(e),
        MemError::Image(e) => image(e),
        MemError::Read { pid, source, .. } => os("memory_read_failed", source).pid(*pid),
        MemError::Pages { pid, source, .. } => os("memory_read_failed", source).pid(*pid),
        MemError::Unsupported { pid, what, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "unsupported_area")
                .pid(*pid)
                .kind(*what)
        }
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "memory_failed"),
    }
}

fn task(e: &TaskError) -> Diagnosis {
    match e {
        TaskError::Ptrace {
            pid, tid, source, ..
        } => os("ptrace_failed", source).pid(*pid).tid(*tid),
        TaskError::Read { pid, source, .. } => os("proc_read_failed", source).pid(*pid),
        TaskError::PosixTimers { pid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "posix_timers_need_injection").pid(*pid)
        }
        TaskError::UnrestorableTimer(e) => timer(e),
        TaskError::StrictSeccomp { pid, tid } => {
            Diagnosis::new(ErrorClass::Unsupported, "strict_seccomp_needs_no_inject")
                .pid(*pid)
                .tid(*tid)
        }
        TaskError::SeccompDenies { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "seccomp_denies_injection")
                .pid(*pid)
                .tid(*tid)
        }
        TaskError::IoUringRegistered { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "io_uring")
                .pid(*pid)
                .tid(*tid)
        }
        TaskError::Inject(e) => inject(e),
        TaskError::Proc(e) => proc(e),
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "task_failed"),
    }
}

fn timer(e: &Unrestorable) -> Diagnosis {
    Diagnosis::new(ErrorClass::Unsupported, "unrestorable_timer")
        .pid(e.pid)
        .kind("POSIX timer")
}

fn inject(e: &InjectError) -> Diagnosis {
    match e {
        InjectError::NotX86_64 { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "not_x86_64")
                .pid(*pid)
                .tid(*tid)
        }
        InjectError::Exited { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Conflict, "process_gone")
                .pid(*pid)
                .tid(*tid)
        }
        InjectError::Ptrace {
            pid, tid, source, ..
        }
        | InjectError::Syscall {
            pid, tid, source, ..
        } => os("injection_failed", source).pid(*pid).tid(*tid),
        InjectError::Fault { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Internal, "injection_failed")
                .pid(*pid)
                .tid(*tid)
        }
        InjectError::NoSyscallInstruction { pid }
        | InjectError::NotASyscallInstruction { pid, .. }
        | InjectError::Memory { pid, .. }
        | InjectError::Proc { pid, .. } => {
            Diagnosis::new(ErrorClass::Internal, "injection_failed").pid(*pid)
        }
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "injection_failed"),
    }
}

fn external(e: &ExternalError) -> Diagnosis {
    match e {
        ExternalError::Image(e) => image(e),
        ExternalError::Unsupplied(_) => Diagnosis::new(ErrorClass::Conflict, "external_unsupplied"),
        ExternalError::NoSuchEnd { .. } => {
            Diagnosis::new(ErrorClass::BadArguments, "no_such_external")
        }
        ExternalError::Source { .. } => Diagnosis::new(ErrorClass::BadArguments, "bad_inherit_fd"),
        ExternalError::Pending { fd, .. } => {
            Diagnosis::new(ErrorClass::Conflict, "external_pending").fd(*fd)
        }
        #[allow(unreachable_patterns)]
        _ => Diagnosis::new(ErrorClass::Internal, "external_failed"),
    }
}

fn restore(e: &ProcessRestoreError) -> Diagnosis {
    match e {
        ProcessRestoreError::Image(e) => image(e),
        ProcessRestoreError::External(e) => external(e),
        ProcessRestoreError::Invalid { pid, .. } => {
            Diagnosis::new(ErrorClass::DamagedImage, "invalid_record").pid(*pid)
        }
        ProcessRestoreError::Unsupported { pid, what } => {
            Diagnosis::new(ErrorClass::Unsupported, "unsupported_restore")
                .pid(*pid)
                .kind(what.as_str())
        }
        ProcessRestoreError::Credentials { pid, .. } => {
            Diagnosis::new(ErrorClass::Environment, "credentials").pid(*pid)
        }
        ProcessRestoreError::CpuFeatures { pid, tid, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "cpu_features")
                .pid(*pid)
                .tid(*tid)
        }
        ProcessRestoreError::File {
            pid, what, path, ..
        } => Diagnosis::new(ErrorClass::Conflict, "missing_file")
            .pid(*pid)
            .kind(*what)
            .file(path.as_str()),
        ProcessRestoreError::PidInUse { pid } => {
            Diagnosis::new(ErrorClass::Conflict, "pid_in_use").pid(*pid)
        }
        ProcessRestoreError::Os { pid, source, .. } => os("system_call_failed", source).pid(*pid),
        ProcessRestoreError::Child { pid, .. } => {
            Diagnosis::new(ErrorClass::Internal, "setup_failed").pid(*pid)
        }
        ProcessRestoreError::ChildConflict { pid, .. } => {
            Diagnosis::new(ErrorClass::Conflict, "file_missing_or_changed").pid(*pid)
        }
        ProcessRestoreError::Area {
            pid, what, source, ..
        } => {
            let mut d = restore(source);
            d.pid.get_or_insert(*pid);
            d.kind.get_or_insert_with(|| what.clone());
            d
        }
        ProcessRestoreError::UnrestorableTimer(e) => timer(e),
        ProcessRestoreError::Timer { pid, .. } => {
            Diagnosis::new(ErrorClass::Internal, "timer_failed").pid(*pid)
        }
        ProcessRestoreError::Inject(e) => inject(e),
        // A kind's check of its records before anything is created (a fanotify group
        // without CAP_SYS_ADMIN), or its step just before the release.
        ProcessRestoreError::OpenFile(e) => file(e),
        _ => Diagnosis::new(ErrorClass::Internal, "restore_failed"),
    }
}

fn image(e: &ImageError) -> Diagnosis {
    let damaged = |code, file: &std::path::Path| {
        Diagnosis::new(ErrorClass::DamagedImage, code).file(file.display().to_string())
    };
    match e {
        ImageError::Io { file, source, .. } => {
            os("image_io_failed", source).file(file.display().to_string())
        }
        ImageError::AlreadyExists { dir } => {
            Diagnosis::new(ErrorClass::Conflict, "image_exists").file(dir.display().to_string())
        }
        ImageError::NotAnImage { dir } => damaged("not_an_image", dir),
        ImageError::UnsupportedVersion { file, .. } => {
            Diagnosis::new(ErrorClass::Unsupported, "image_version")
                .file(file.display().to_string())
        }
        ImageError::MissingFile { file }
        | ImageError::NotAFile { file }
        | ImageError::DuplicateFile { file }
        | ImageError::BadMagic { file }
        | ImageError::Truncated { file, .. }
        | ImageError::RecordTooLong { file, .. }
        | ImageError::BadCrc { file, .. }
        | ImageError::Decode { file, .. }
        | ImageError::InventoryRecords { file, .. }
        | ImageError::Length { file, .. }
        | ImageError::Checksum { file, .. }
        | ImageError::WrongLayout { file, .. }
        | ImageError::DataOutOfRange { file, .. }
        | ImageError::DataMisaligned { file, .. } => damaged("damaged_image", file),
        ImageError::BadFileName { dir, .. } => damaged("damaged_image", dir),
        _ => Diagnosis::new(ErrorClass::Internal, "image_failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_match_the_names() {
        let codes: std::collections::BTreeSet<u8> =
            ErrorClass::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes.len(), ErrorClass::ALL.len());
        assert_eq!(ErrorClass::Unsupported.exit_code(), 3);
        assert_eq!(ErrorClass::DamagedImage.name(), "damaged_image");
    }

    #[test]
    fn a_wrapped_unsupported_file_names_pid_fd_and_kind() {
        let e = DumpError::File(FileError::Unsupported {
            pid: 12,
            fd: 7,
            kind: "inet socket".into(),
        });
        let d = diagnose(&e);
        assert_eq!(d.class, ErrorClass::Unsupported);
        assert_eq!(d.code, "unsupported_file");
        assert_eq!((d.pid, d.fd), (Some(12), Some(7)));
        assert_eq!(d.kind.as_deref(), Some("inet socket"));
    }

    #[test]
    fn an_area_error_takes_its_cause_class() {
        let e = ProcessRestoreError::Area {
            pid: 5,
            start: 0x1000,
            end: 0x2000,
            what: "map".into(),
            source: Box::new(ProcessRestoreError::File {
                pid: 5,
                what: "mapped file",
                path: "/gone".into(),
                errno: "ENOENT",
                source: io::Error::from_raw_os_error(libc::ENOENT),
            }),
        };
        let d = diagnose(&e);
        assert_eq!((d.class, d.code), (ErrorClass::Conflict, "missing_file"));
        assert_eq!(d.file.as_deref(), Some("/gone"));
    }

    #[test]
    fn eperm_is_the_machine_s() {
        let e = FreezeError::Ptrace {
            pid: 1,
            tid: 1,
            op: "PTRACE_SEIZE",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(diagnose(&e).class, ErrorClass::Environment);
    }

    #[test]
    fn a_foreign_error_is_internal() {
        let e = io::Error::other("x");
        assert_eq!(diagnose(&e).code, "internal");
    }
}
