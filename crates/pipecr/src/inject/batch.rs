//! A batch of read-only system calls for one injection session ([`ReadBatch`]), what it
//! returned ([`BatchResults`]), values decoded from that ([`Pending`]), and the per-process
//! mapping of the code that runs a batch with one ptrace stop ([`CodePage`]).
//!
//! The typed readers of [`super::calls`] add their calls to a batch and hand back a
//! [`Pending`]; [`super::Injector::run_reads`] runs the whole batch, through the batch
//! code when it can and one call at a time otherwise; each `Pending` then decodes its
//! value from the results. Running belongs to the injector; the machine code and its
//! table layout to [`crate::sys::batch_code`].

use std::fmt;
use std::io;

use super::error::{InjectError, syscall_name};

/// One argument of a batched call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A plain value.
    Value(u64),
    /// The address, in the tracee, of this call's own output buffer (its `out_len`
    /// bytes, see [`ReadBatch::push`]).
    Out,
}

/// A call of a batch: number, arguments, bytes of output it writes through [`Arg::Out`].
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) nr: i64,
    pub(crate) args: [Arg; 6],
    pub(crate) out_len: usize,
}

/// Read-only system calls to run in one thread, collected before any of them runs.
///
/// Only calls that change nothing in the process belong here (reads of its state): the
/// batch code runs them all even when one fails, and a pipecr killed while they run
/// leaves them run.
#[derive(Debug, Default)]
pub struct ReadBatch {
    calls: Vec<Call>,
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> ReadBatch {
        ReadBatch::default()
    }

    /// Adds `nr(args...)`, which writes at most `out_len` bytes to its output buffer
    /// (the argument given as [`Arg::Out`]); returns the call's index in
    /// [`BatchResults`].
    pub fn push(&mut self, nr: i64, args: [Arg; 6], out_len: usize) -> usize {
        self.calls.push(Call { nr, args, out_len });
        self.calls.len() - 1
    }

    /// How many calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub(crate) fn calls(&self) -> &[Call] {
        &self.calls
    }
}

/// What each call of a [`ReadBatch`] returned.
#[derive(Debug)]
pub struct BatchResults {
    pub(crate) pid: i32,
    pub(crate) tid: i32,
    pub(crate) nrs: Vec<i64>,
    /// Raw results: a value or `-errno`.
    pub(crate) rets: Vec<i64>,
    /// Each call's output buffer, `out_len` bytes.
    pub(crate) outs: Vec<Vec<u8>>,
    pub(crate) batched: bool,
}

impl BatchResults {
    /// The raw result of call `i`: a value, or `-errno` (0 for an index out of range).
    pub fn raw(&self, i: usize) -> i64 {
        self.rets.get(i).copied().unwrap_or(0)
    }

    /// The result of call `i`, a `-errno` result as [`InjectError::Syscall`].
    pub fn checked(&self, i: usize) -> Result<u64, InjectError> {
        let ret = self.raw(i);
        if (-4095..0).contains(&ret) {
            let nr = self.nrs.get(i).copied().unwrap_or(-1);
            return Err(InjectError::Syscall {
                pid: self.pid,
                tid: self.tid,
                nr,
                name: syscall_name(nr),
                source: io::Error::from_raw_os_error(-ret as i32),
            });
        }
        Ok(ret as u64)
    }

    /// The output buffer of call `i` (empty for an index out of range).
    pub fn out(&self, i: usize) -> &[u8] {
        self.outs.get(i).map_or(&[], |o| o.as_slice())
    }

    /// The first `N` bytes of call `i`'s output buffer (zeros past its end).
    pub fn out_array<const N: usize>(&self, i: usize) -> [u8; N] {
        let mut a = [0u8; N];
        let out = self.out(i);
        let n = out.len().min(N);
        a[..n].copy_from_slice(&out[..n]);
        a
    }

    /// True when the batch code ran the calls (one ptrace stop per batch); false when
    /// they were injected one at a time.
    pub fn batched(&self) -> bool {
        self.batched
    }
}

/// How a [`Pending`] value is read from the results.
type Decode<T> = Box<dyn FnOnce(&BatchResults) -> Result<T, InjectError>>;

/// A value decoded from [`BatchResults`] once its batch has run.
pub struct Pending<T> {
    decode: Decode<T>,
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

impl<T: 'static> Pending<T> {
    /// A value `decode` reads from the results.
    pub fn new(decode: impl FnOnce(&BatchResults) -> Result<T, InjectError> + 'static) -> Self {
        Pending {
            decode: Box::new(decode),
        }
    }

    /// Decodes the value from the results of the batch it was added to.
    pub fn get(self, results: &BatchResults) -> Result<T, InjectError> {
        (self.decode)(results)
    }

    /// The value turned into another by `f`.
    pub fn map<U: 'static>(self, f: impl FnOnce(T) -> U + 'static) -> Pending<U> {
        Pending::new(move |r| self.get(r).map(f))
    }
}

/// Where the batch code is in one process: mapped by the first of its threads' sessions
/// that can run it, shared by the next ones, unmapped by the last
/// ([`super::Injector::run_reads`]).
#[derive(Debug)]
pub struct CodePage {
    pub(crate) pid: i32,
    pub(crate) state: PageState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageState {
    /// Not mapped yet: the next session that can run the batch code maps it.
    NotYet,
    /// Mapped at `addr`, `len` bytes, read and execute only.
    Mapped { addr: u64, len: u64 },
    /// Never (again): every call is injected one at a time.
    Off,
}

impl CodePage {
    /// The batch code of process `pid`, to be mapped when first needed.
    pub fn new(pid: i32) -> CodePage {
        CodePage {
            pid,
            state: PageState::NotYet,
        }
    }

    /// No batch code for process `pid`: its sessions inject one call at a time (a
    /// process whose seccomp filter might refuse or punish the `mmap`, say).
    pub fn off(pid: i32) -> CodePage {
        CodePage {
            pid,
            state: PageState::Off,
        }
    }

    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The address of the mapping while it is mapped.
    pub fn mapped(&self) -> Option<u64> {
        match self.state {
            PageState::Mapped { addr, .. } => Some(addr),
            _ => None,
        }
    }
}
