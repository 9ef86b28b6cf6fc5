//! Running system calls inside a stopped thread (x86_64): the tool both dump and restore
//! use to do what only the process itself can, such as reading its signal handlers or
//! replacing its address space.
//!
//! An [`Injector`] drives one thread that the *calling thread* holds in a ptrace-stop
//! (seized by [`crate::freeze`] on this thread, or by restore). It saves the registers on
//! creation, points the thread at a `syscall` instruction with the number and arguments
//! in its registers, lets it run exactly that instruction, reads the result, and on
//! [`Injector::finish`] (or drop) puts everything back so that on detach the thread
//! continues as if nothing happened; in particular a thread stopped inside a blocking call
//! (`read` on an empty pipe, `nanosleep`) restarts it without seeing `EINTR`.
//!
//! The module is layered, each part importing only those below it:
//!
//! - [`calls`]: one typed function per remote syscall (`mmap`, `rt_sigaction`,
//!   `sigaltstack`, `prctl(PR_SET_MM_MAP)`, `clone3`, ...) and the readers dump uses,
//!   each also in a batched form (`read_*`);
//! - `injector`: the [`Injector`]: seizing state, finding a `syscall` instruction,
//!   running one syscall or a [`ReadBatch`], scratch memory, putting the thread back;
//! - `batch`: [`ReadBatch`], [`BatchResults`], [`Pending`] and [`CodePage`], the data of
//!   a batch (its machine code is [`crate::sys::batch_code`]);
//! - [`kstruct`]: the kernel structs those calls pass, each encoded once;
//! - `error`: [`InjectError`].
//!
//! What to inject and in which order belongs to dump and restore; raw ptrace requests
//! live in [`crate::sys::ptrace`], reading and writing the tracee's memory in
//! [`crate::sys::mem::RemoteMem`]. This file only declares the parts and re-exports the
//! names callers use.
//!
//! # How a syscall is run
//!
//! 1. The `syscall` instruction (`0f 05`) comes from, in this order: the caller
//!    ([`Injector::set_syscall_address`], [`Injector::map_trampoline`]); the two bytes
//!    before the instruction pointer when the thread was stopped in a system call; the
//!    `[vdso]` (its fallback paths contain `syscall`); any other executable mapping. The
//!    bytes `0f 05` decode as `syscall` wherever they sit, even inside another instruction.
//! 2. `rax = nr`, `rdi, rsi, rdx, r10, r8, r9 = args`, `rip` = that address, and
//!    `orig_rax = -1` so that the kernel's syscall-restart logic ignores our registers.
//! 3. `PTRACE_SYSCALL` to the syscall-entry stop, `PTRACE_SYSCALL` to the exit stop; the
//!    result is `rax`. A syscall stop is told from a signal by its siginfo, entry from
//!    exit by `PTRACE_GETEVENTMSG` (`PTRACE_GET_SYSCALL_INFO` would need
//!    `PTRACE_O_TRACESYSGOOD`, and the ptrace options belong to the caller).
//!    Or, after [`Injector::use_single_step`] (dump's readers), `PTRACE_SINGLESTEP`: one
//!    stop instead of two, the single-step trap the kernel reports at the syscall's exit
//!    (a `SIGTRAP`, `TRAP_BRKPT`, `rip` just past the instruction), discarded on resume.
//!
//! 4. Or, for a [`ReadBatch`] of read-only calls ([`Injector::run_reads`], dump's
//!    sessions): every call in one stop. The batch code ([`crate::sys::batch_code`]) is
//!    mapped once per process (an injected `mmap`, read + execute, the code written
//!    through `/proc/PID/mem`), each session writes its table of calls after it and
//!    lets the thread run it with `PTRACE_CONT` to its final `int3`; the process's last
//!    session ends the table with the `munmap` of the code, whose next instruction fetch
//!    faults (`SIGSEGV`) in place of the `int3`. Under the same condition as
//!    single-stepping (both force a signal), for threads found in a stop inside signal
//!    handling, else one call at a time.
//!
//! Single-stepping only where it changes nothing: the trap is a *forced* `SIGTRAP`, and
//! the kernel resets the tracee's `SIGTRAP` handler to `SIG_DFL` when it forces one that
//! the thread blocks or the process ignores; there the injector keeps to
//! `PTRACE_SYSCALL`, which sends no signal. Both stop *before* the thread returns to user
//! space, so the page holding the instruction may be unmapped by the very syscall it
//! executes. Restore keeps to `PTRACE_SYSCALL` ([`Injector::release`] hands over a thread
//! in a syscall-exit stop). The trap flag single-stepping sets is cleared by the put-back
//! below, which resumes the thread with `PTRACE_CONT`; a tracer that dies before that
//! leaves it set (the kernel clears it on `PTRACE_DETACH`, not on the tracer's exit):
//! the thread, already running on pipecr's registers, then also takes a `SIGTRAP`.
//!
//! # Putting the thread back
//!
//! The kernel restarts an interrupted syscall (`-ERESTARTSYS` and siblings in `rax`) on
//! the way out of signal handling, after the tracer lets the thread go from a stop that
//! happened *inside* signal handling (a signal-delivery-stop or `PTRACE_EVENT_STOP`), but
//! not after a syscall-exit stop. So [`Injector::finish`] restores the registers and
//! brings the thread back into a stop inside signal handling, before any user code and
//! before the restart logic, which then sees the restored registers:
//!
//! - found in the `PTRACE_EVENT_STOP` of a `PTRACE_INTERRUPT` (how the freeze stops a
//!   thread): `PTRACE_INTERRUPT` again and `PTRACE_CONT`, one stop; the kernel takes
//!   that trap at the top of its signal loop, before dequeuing any signal;
//! - found in a signal-delivery-stop (or not seized): it blocks every signal but one
//!   marker, queues that marker to the thread with `tgkill` and lets it run into the
//!   marker's signal-delivery-stop, where the original signal mask and siginfo are put
//!   back, so that the caller can resume or detach with the signal it meant to hand
//!   back.
//!
//! - left where the batch code ended (a signal-delivery-stop reached by `PTRACE_CONT`,
//!   no single-step flag): registers and siginfo restored in place, no further stop;
//!   the kernel's restart logic runs after that stop too.
//!
//! Signals that arrive while we inject stop the thread in a signal-delivery-stop instead
//! of our syscall stop; they are recorded, suppressed, and queued again (with their
//! siginfo, by an injected `rt_tgsigqueueinfo`) before the thread is put back, so none is
//! lost.
//!
//! # Known gaps
//!
//! - A thread stopped inside an rseq critical section: the kernel clears the thread's
//!   `rseq_cs` pointer when it returns to user space at our address, so that section will
//!   not be aborted if it is preempted after resume.
//! - 64-bit tracees only (`cs == 0x33`); 32-bit and x32 processes are refused.

mod batch;
pub mod calls;
mod error;
mod injector;
pub mod kstruct;

pub use batch::{Arg, BatchResults, CodePage, Pending, ReadBatch};
pub use calls::{itimers, set_sigaction, sigactions, sigactions_of, sigaltstack, tid_address};
pub use error::InjectError;
pub use injector::{Injector, StoppedAt};
pub use kstruct::{AltStack, ITimer, STACK_T_SIZE, SaFlags, SigAction, SigHandler};
