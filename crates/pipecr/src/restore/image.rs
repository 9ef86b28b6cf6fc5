//! Replace one new process's address space, signal state, threads and registers with
//! the saved ones, by injecting system calls into it. The orchestrator
//! (`restore::process`) decides when (parents first, all detached together); this module
//! is the order of the steps inside one process, [`super::mm`], [`super::signals`],
//! [`super::threads`], [`super::creds`] and [`super::regs`] the steps themselves.
//!
//! [`hold`] seizes and interrupts every process of the tree, children first (so that
//! the news of the restore's own `SIGCONT` reaches no restored parent), then
//! [`load_image`], through an [`Injector`] in the held process: maps a
//! trampoline page at an address free in both layouts; sets the saved personality
//! (`personality(2)`, before any mapping); unregisters the inherited rseq
//! area (before its memory goes); unmaps every other area but
//! `[vdso]`/`[vvar]`/`[vvar_vclock]` and the areas kept as inherited ([`super::cow`]:
//! pages shared copy-on-write with the parent), joining neighbours into one `munmap`;
//! moves those to their saved addresses (`mremap`, through a parking place so that they
//! never land on each other); maps every other saved area (`MAP_FIXED`; files by path,
//! opened in the child), writable while its pages are written (many pages per
//! `process_vm_writev`, [`super::mm::PageWriter`]); sets the saved protections; sets the mm fields and the exe link with
//! `PR_SET_MM_MAP`; registers the saved rseq area again; with every signal blocked,
//! installs the saved handlers (`rt_sigaction`) and interval timers (`setitimer`) and
//! queues the saved pending signals from inside the process (`rt_tgsigqueueinfo` per
//! thread, `rt_sigqueueinfo` process-wide: any `si_code` is allowed to oneself); creates
//! the other threads with their TIDs and state ([`super::threads`]); creates the POSIX
//! timers with their IDs and arms them ([`super::timers`]); sets the
//! alternate signal stack; takes its POSIX record locks ([`super::locks`]); loads,
//! through the same trampoline, each process that shares this address space (`CLONE_VM`,
//! seized before anything was unmapped: what is its own, [`load_sharer`]); sets the
//! thread's name and timer slack, then the credentials ([`super::creds`]) and what a
//! change of ids resets (no_new_privs, parent-death signal, dumpable, child subreaper);
//! the seccomp filters of every thread ([`super::procstate`]: nothing else must need a
//! syscall they might deny); unmaps the trampoline from inside its own `munmap` (the
//! syscall-exit stop comes first), then sets a strict seccomp mode; then sets
//! the saved registers, XSAVE area and blocked mask, and leaves the process in a
//! ptrace-stop, ready to be detached.

use std::fs::File;

use nix::errno::Errno;
use nix::sys::mman::{MmapAdvise, ProtFlags};
use nix::sys::ptrace;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid as NixPid;
use pipecr_image::Image;

use super::cow::Prefilled;
use super::error::{ProcessRestoreError, Result, errno, os};
use super::mm::{
    MapFiles, PAGE, PageWriter, area_error, current_maps, find_free, is_private_restored, map_area,
    move_specials, run_piece, set_mm, unmap_ranges,
};
use super::saved::{SavedProcess, main_thread};
use super::signals::{restore_altstack, restore_signals};
use crate::inject::{Injector, calls};
use crate::objects::ObjectFds;
use crate::sys::ptrace::{self as sys_ptrace, SigMask};

/// Takes `saved.pid()` (seized by [`hold`], with the processes sharing its address
/// space), replaces its address space, handlers, pending signals, registers and mask with the saved ones,
/// and leaves it in a ptrace-stop of the calling thread, ready to be detached.
///
/// Areas filled ahead (`prefilled`, see [`super::cow`]) that it inherited or filled are
/// kept, and only the pages where it differs are written. `tree` holds `saved`. The
/// memory objects it maps are opened from `objects` (see [`super::objects`]).
pub(super) fn load_image(
    image: &Image,
    tree: &[SavedProcess],
    saved: &SavedProcess,
    prefilled: &[Prefilled],
    objects: &ObjectFds,
) -> Result<()> {
    let pid = saved.pid();
    let t = NixPid::from_raw(pid);
    let thread = main_thread(pid, &saved.core).ok_or_else(|| ProcessRestoreError::Invalid {
        pid,
        what: "no thread in core.img".to_owned(),
    })?;
    // The processes sharing its address space (`CLONE_VM`, created so by their parents):
    // held (by [`hold`]) before the memory they run in goes, and loaded below, with it.
    let sharers: Vec<&SavedProcess> = tree
        .iter()
        .filter(|p| p.process.shares_vm_with == pid)
        .collect();
    let mut inj = Injector::new(pid, pid)?;
    let current = current_maps(pid)?;
    let kept = match tree.iter().position(|p| p.pid() == pid) {
        Some(idx) => super::cow::kept_areas(tree, idx, prefilled, &current),
        None => Vec::new(),
    };
    let is_kept = |start: u64, end: u64| kept.iter().any(|k| k.start == start && k.end == end);
    let saved_areas: Vec<(u64, u64)> = saved.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    let cur_areas: Vec<(u64, u64)> = current.iter().map(|m| (m.start, m.end)).collect();
    let mut avoid: Vec<(u64, u64)> = saved_areas.iter().chain(&cur_areas).copied().collect();
    let tramp = find_free(&avoid, PAGE).ok_or_else(|| ProcessRestoreError::Unsupported {
        pid,
        what: "a layout with no free page for the trampoline".to_owned(),
    })?;
    inj.map_trampoline(tramp)?;
    avoid.push((tramp, tramp + PAGE));
    // The saved personality, before any area is mapped (READ_IMPLIES_EXEC changes what
    // mmap does); it was the restorer's until now.
    calls::personality(&mut inj, saved.core.personality).map_err(|e| {
        ProcessRestoreError::Unsupported {
            pid,
            what: format!("personality {:#x}: {e}", saved.core.personality),
        }
    })?;
    // The transparent-huge-page setting, before any area is mapped (faults follow it).
    super::procstate::thp(&mut inj, &saved.core)?;
    // From here on, PTRACE_O_EXITKILL kills it if the restorer dies; the death signal
    // set while it was being made (see `spawn_tree_stopped`) would outlive the restore
    // and kill the program when its parent exits. The program's own is not saved.
    calls::prctl_set_pdeathsig(&mut inj, 0)?;

    // The inherited rseq area is in memory about to go: unregister it first, or the
    // kernel would write into whatever is mapped there next.
    let rseq =
        sys_ptrace::rseq_configuration(t).map_err(os(pid, "PTRACE_GET_RSEQ_CONFIGURATION"))?;
    if rseq.abi_pointer != 0 {
        calls::rseq_unregister(&mut inj, rseq.abi_pointer, rseq.abi_size, rseq.signature)?;
    }

    // Everything but the trampoline, the kernel's own areas and the kept areas goes.
    let movable = ["[vdso]", "[vvar]", "[vvar_vclock]"];
    let mut stay: Vec<(u64, u64)> = current
        .iter()
        .filter(|m| movable.contains(&m.path.as_str()) || m.path == "[vsyscall]")
        .map(|m| (m.start, m.end))
        .chain(kept.iter().map(|k| (k.start, k.end)))
        .collect();
    stay.push((tramp, tramp + PAGE));
    for (start, end) in unmap_ranges(&current, &stay) {
        inj.remote_munmap(start, end - start)?;
    }
    move_specials(&mut inj, pid, &current, &saved.mm.vmas, &avoid)?;

    let pages =
        File::open(image.dir().join(pipecr_image::PAGES)).map_err(os(pid, "open pages.img"))?;
    // The areas some page run starts in (a run lies in one area): mapped writable while
    // their pages are written; every other one gets its saved protection at once.
    let mut run_starts: Vec<u64> = saved.mm.pages.iter().map(|r| r.start).collect();
    run_starts.sort_unstable();
    let written = |start: u64, end: u64| {
        let i = run_starts.partition_point(|&s| s < start);
        run_starts.get(i).is_some_and(|&s| s < end)
    };
    let mut files = MapFiles::default();
    for vma in saved.mm.vmas.iter().filter(|v| !is_kept(v.start, v.end)) {
        let w = written(vma.start, vma.end);
        map_area(&mut inj, pid, tramp, vma, w, &mut files, objects)
            .map_err(|e| area_error(pid, vma, "map", e))?;
    }
    files.close(&mut inj)?;
    // Mapped when it holds anything (the pages are copied from the mapping); if the
    // kernel will not map it, read instead.
    let len = pages.metadata().map_err(os(pid, "stat pages.img"))?.len();
    let map = (len > 0)
        .then(|| crate::sys::mem::FileMapping::map(&pages, len).ok())
        .flatten();
    let mut writer = PageWriter::new(&pages, map.as_ref());
    for run in &saved.mm.pages {
        // A run lies in one area (kept_areas keeps none that a run straddles).
        if kept
            .iter()
            .any(|k| run.start >= k.start && run.start < k.end)
        {
            continue;
        }
        writer.push(&mut inj, pid, run_piece(pid, run)?)?;
    }
    for k in &kept {
        let filler = &tree[k.filler];
        if filler.pid() == pid {
            // It holds our own pages already.
            continue;
        }
        let (writes, drops) = super::cow::diff(&saved.mm, &filler.mm, k.start, k.end);
        for piece in writes {
            writer.push(&mut inj, pid, piece)?;
        }
        for (start, end) in drops {
            calls::madvise(&mut inj, start, end - start, MmapAdvise::MADV_DONTNEED)?;
        }
    }
    writer.flush(&mut inj, pid)?;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
    for vma in &saved.mm.vmas {
        let kept = is_kept(vma.start, vma.end);
        let kept_other = kept && vma.prot != rw;
        let read_only = vma.prot & libc::PROT_WRITE as u32 == 0;
        let filled = !kept && is_private_restored(vma) && written(vma.start, vma.end);
        if kept_other || filled && read_only {
            let prot = ProtFlags::from_bits_truncate(vma.prot as i32);
            inj.remote_mprotect(vma.start, vma.end - vma.start, prot)
                .map_err(|e| area_error(pid, vma, "mprotect", e.into()))?;
        }
    }
    set_mm(&mut inj, pid, tramp, &saved.mm)?;
    super::threads::register_rseq(&mut inj, thread)?;
    // Handlers and timers first, then the pending signals, all blocked until the saved
    // mask is set at the end: they are delivered after detach, to the saved handlers.
    sys_ptrace::set_sigmask(t, SigMask(!0)).map_err(os(pid, "PTRACE_SETSIGMASK"))?;
    restore_signals(&mut inj, pid, tramp, &saved.core)?;
    // The restore's own SIGCONT left a continue report for each live child's parent.
    super::procstate::child_reports(&mut inj, saved, tree)?;
    // The other threads, created with every signal blocked (the mask just set).
    super::threads::create(&mut inj, saved, tramp)?;
    // What it opens itself once its threads exist (a pidfd of one of them).
    super::inprocess::open(&mut inj, image, tree, saved)?;
    // POSIX timers once the threads exist (one may be aimed at a thread), still with
    // every signal blocked: an expiry now is delivered after release.
    super::timers::restore(&mut inj, pid, &saved.core)?;
    restore_altstack(&mut inj, pid, tramp, thread)?;
    // Its POSIX record locks, once no descriptor of it will be closed any more.
    super::locks::restore(&mut inj, pid, tramp, &saved.core)?;
    for sharer in sharers {
        load_sharer(image, tree, sharer, tramp)?;
    }
    // The main thread's name is the process's, set when it was created.
    super::procstate::thread_attrs(&mut inj, tramp, thread, &saved.process.comm)?;
    // Then the credentials (creating the threads above needed the restorer's), and
    // what a change of ids resets.
    let creds = thread.creds.as_ref().or(saved.core.creds.as_ref());
    if let Some(creds) = creds {
        let securebits = thread.prctl.as_ref().map(|p| p.securebits);
        super::creds::restore(&mut inj, pid, tramp, creds, securebits)?;
    }
    super::creds::after(&mut inj, pid, thread, Some(&saved.core))?;
    // Seccomp filters last: from here on only the two munmaps below run in it.
    let scratch = super::procstate::seccomp(&mut inj, saved, tramp)?;
    if let Some((at, len)) = scratch {
        inj.remote_munmap(at, len)?;
    }
    inj.unmap_trampoline(tramp)?;
    super::procstate::strict_last(&mut inj, thread)?;
    // Signals that arrived meanwhile (the SIGCONT we sent, say) are dropped: they were
    // meant for the process that no longer exists.
    let _ = inj.release();

    super::regs::set_final(pid, pid, thread)
}

/// Seizes every process of `tree` (each continued from its self-stop, parents listed
/// before their children), children first, and interrupts it: on return each is in a
/// ptrace-stop of the calling thread, ready for [`load_image`], and dies if the
/// restorer dies (`PTRACE_O_EXITKILL`: the kernel kills a process held half-made rather
/// than letting it run).
///
/// Why children first: a process continued from a stop tells its parent so
/// (`SIGCHLD`, `CLD_CONTINUED`) only when it next runs, in the kernel's signal code,
/// before any ptrace trap; its interrupt stop therefore proves the report was sent.
/// Sent while the parent is still the restorer's (`SIGCHLD` at its default and not
/// blocked, not traced), the report is discarded by the kernel. Sent once the parent is
/// seized, it would be queued to the parent, after the parent's saved pending signals:
/// the restored program would read a continue it never caused, and, since a standard
/// signal already pending absorbs the next one, lose the `SIGCHLD` of its child's exit
/// if that came before it read the first (util-linux `script` then never ends).
pub(super) fn hold(tree: &[SavedProcess]) -> Result<()> {
    for saved in tree.iter().rev() {
        seize(saved.pid())?;
    }
    Ok(())
}

/// Seizes our child `pid` (running, or blocked in `pause()`) and interrupts it: on
/// return it is in a ptrace-stop of the calling thread, and dies if the restorer dies
/// (`PTRACE_O_EXITKILL`).
fn seize(pid: i32) -> Result<()> {
    let t = NixPid::from_raw(pid);
    ptrace::seize(t, ptrace::Options::PTRACE_O_EXITKILL).map_err(errno(pid, "PTRACE_SEIZE"))?;
    ptrace::interrupt(t).map_err(errno(pid, "PTRACE_INTERRUPT"))?;
    loop {
        match waitpid(t, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) => return Ok(()),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                return Err(ProcessRestoreError::Child {
                    pid,
                    message: "it died before it could be seized".to_owned(),
                });
            }
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(e) => return Err(errno(pid, "waitpid")(e)),
        }
    }
}

/// Loads `saved`, a process sharing the address space just restored (`CLONE_VM`; seized
/// by [`seize`]), through the trampoline page at `tramp` in that address space: what is
/// its own beyond the memory (personality, rseq area, handlers unless it shares them
/// too, interval and POSIX timers, pending signals, threads, alternate stack,
/// credentials, registers), as for the first process of the address space. Its memory
/// is that process's: its own image holds none. It was created with `CLONE_VM`, which
/// gives no rseq area to unregister. Leaves it in a ptrace-stop, ready to be detached.
fn load_sharer(
    image: &Image,
    tree: &[SavedProcess],
    saved: &SavedProcess,
    tramp: u64,
) -> Result<()> {
    let pid = saved.pid();
    let t = NixPid::from_raw(pid);
    let thread = main_thread(pid, &saved.core).ok_or_else(|| ProcessRestoreError::Invalid {
        pid,
        what: "no thread in core.img".to_owned(),
    })?;
    let mut inj = Injector::new(pid, pid)?;
    inj.set_syscall_address(tramp)?;
    calls::personality(&mut inj, saved.core.personality).map_err(|e| {
        ProcessRestoreError::Unsupported {
            pid,
            what: format!("personality {:#x}: {e}", saved.core.personality),
        }
    })?;
    calls::prctl_set_pdeathsig(&mut inj, 0)?;
    super::threads::register_rseq(&mut inj, thread)?;
    sys_ptrace::set_sigmask(t, SigMask(!0)).map_err(os(pid, "PTRACE_SETSIGMASK"))?;
    // A shared table of handlers gets the same handlers again: the saved ones are the
    // table's.
    restore_signals(&mut inj, pid, tramp, &saved.core)?;
    super::threads::create(&mut inj, saved, tramp)?;
    super::inprocess::open(&mut inj, image, tree, saved)?;
    super::timers::restore(&mut inj, pid, &saved.core)?;
    restore_altstack(&mut inj, pid, tramp, thread)?;
    super::procstate::thread_attrs(&mut inj, tramp, thread, &saved.process.comm)?;
    if let Some(creds) = thread.creds.as_ref().or(saved.core.creds.as_ref()) {
        let securebits = thread.prctl.as_ref().map(|p| p.securebits);
        super::creds::restore(&mut inj, pid, tramp, creds, securebits)?;
    }
    super::creds::after(&mut inj, pid, thread, Some(&saved.core))?;
    if let Some((at, len)) = super::procstate::seccomp(&mut inj, saved, tramp)? {
        inj.remote_munmap(at, len)?;
    }
    let _ = inj.release();
    super::regs::set_final(pid, pid, thread)
}
