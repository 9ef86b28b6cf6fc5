//! The layout of the trampoline page: the one page, free in both the current and the
//! saved layout, that restore maps into a new process ([`crate::inject::Injector::map_trampoline`])
//! to inject system calls through while everything else is unmapped and replaced. Its
//! `syscall` instruction sits at its start; the rest is scratch memory for the arguments
//! the injected calls read. This module owns where each argument goes; the steps that
//! write them ([`super::mm`], [`super::signals`], [`super::threads`], [`super::creds`])
//! own what they write.
//!
//! ```text
//!    0  syscall instruction (0f 05)                    Injector::map_trampoline
//!   64  PATH_AT: a path to open (up to PATH_MAX bytes
//!       and its NUL)                                   mm (areas, exe)
//!       SCRATCH_AT (same place, once no file is opened
//!       any more): struct sigaction, itimerval, siginfo,
//!       stack_t; the group list or capset structures,
//!       up to the end of the page                      signals, threads, creds
//! 1024  MM_MAP_AT: struct prctl_mm_map                 mm (set_mm)
//!       CLONE_ARGS_AT (same place, once the mm fields
//!       are set): struct clone_args                    threads
//! 1152  SET_TID_AT: the one-entry set_tid array        threads
//! 2048  AUXV_AT: the auxiliary vector, to the end      mm (set_mm)
//! 4096  end of the page
//! ```

/// Size of the trampoline page.
pub(super) const SIZE: u64 = 4096;
/// Where the path of a file to open is written.
pub(super) const PATH_AT: u64 = 64;
/// Longest path opened through the trampoline (the rest of the page holds other data).
pub(super) const PATH_MAX: usize = 1024 - 64 - 1;
/// Where a `struct sigaction`, `struct itimerval`, siginfo, `stack_t`, group list or
/// the capset structures are written (the path area: no file is opened any more when
/// these are); creds may use it up to the end of the page.
pub(super) const SCRATCH_AT: u64 = PATH_AT;
/// Where the `struct prctl_mm_map` is written.
pub(super) const MM_MAP_AT: u64 = 1024;
/// Where the `struct clone_args` of a new thread is written (the `prctl_mm_map` area: no
/// longer needed once the mm fields are set).
pub(super) const CLONE_ARGS_AT: u64 = MM_MAP_AT;
/// Where the one-entry `set_tid` array of a new thread is written.
pub(super) const SET_TID_AT: u64 = CLONE_ARGS_AT + 128;
/// Where the auxiliary vector is written (up to the end of the page).
pub(super) const AUXV_AT: u64 = 2048;
