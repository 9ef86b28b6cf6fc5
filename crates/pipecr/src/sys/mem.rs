//! Another process's memory, read and written from here ([`RemoteMem`]: through
//! `process_vm_readv`/`process_vm_writev` and `/proc/PID/mem`, with the partial-transfer
//! and `IOV_MAX` handling written once), and memory the restorer hands to the kernel by
//! address only: a read-only mapping of a
//! file whose bytes are copied into another process with `process_vm_writev` (never read
//! from user space, so a file truncated behind our back makes the call fail with
//! `EFAULT` instead of raising `SIGBUS`), and private anonymous areas a process being
//! restored maps at fixed addresses in its own address space and fills from a file
//! (`pread` straight into them), for its children to inherit copy-on-write.
//!
//! Which pages go where belongs to [`crate::restore`] and [`crate::mem`]; which thread
//! may be written (a tracee in a ptrace-stop) to [`crate::inject`].

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

/// Remote pieces one `process_vm_readv`/`process_vm_writev` takes at most (the kernel's
/// `IOV_MAX`).
pub const IOV_MAX: usize = 1024;

/// A failed access to another process's memory: where, how much, and why.
#[derive(Debug, thiserror::Error)]
#[error("{len} bytes at {addr:#x}")]
pub struct RemoteMemError {
    /// The first address not read or written.
    pub addr: u64,
    /// Bytes left from there.
    pub len: usize,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Reads and writes the memory of another process (or one of its threads).
///
/// Ranges go through `process_vm_readv`/`process_vm_writev` first (one copy); what they
/// do not transfer (an area without the protection, a page the kernel will not pin) goes
/// through `/proc/PID/mem`, which a tracer may read and write regardless of protection
/// (private file mappings get a private copy of the page, as a debugger's breakpoint).
/// `/proc/PID/mem` is opened on first need.
#[derive(Debug)]
pub struct RemoteMem {
    /// Whom `process_vm_*` address: a process or any of its threads.
    target: i32,
    /// `/proc/PID/mem` or `/proc/PID/task/TID/mem`.
    path: String,
    writable: bool,
    mem: Option<File>,
}

impl RemoteMem {
    /// Reads (and writes with `process_vm_writev` only) process `pid`'s memory;
    /// `/proc/PID/mem` is opened read-only.
    pub fn of_process(pid: i32) -> RemoteMem {
        RemoteMem {
            target: pid,
            path: format!("/proc/{pid}/mem"),
            writable: false,
            mem: None,
        }
    }

    /// Reads and writes the memory of thread `tid` of process `pid` (a tracee: writing
    /// through `/proc` needs ptrace access); `/proc/PID/task/TID/mem` is opened read-write.
    pub fn of_thread(pid: i32, tid: i32) -> RemoteMem {
        RemoteMem {
            target: tid,
            path: format!("/proc/{pid}/task/{tid}/mem"),
            writable: true,
            mem: None,
        }
    }

    /// `process_vm_readv(pid, {dst}, {addr, len})` until done or refused—Reads
    /// `dst.len()` bytes at `addr` with the pages pinned; returns how many it read (the
    /// kernel stops at the first page it cannot read).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/process_vm_readv.2.html)
    #[doc(alias = "process_vm_readv")]
    pub fn read_pinned(&self, addr: u64, dst: &mut [u8]) -> usize {
        let pid = Pid::from_raw(self.target);
        let mut done = 0;
        while done < dst.len() {
            let remote = [RemoteIoVec {
                base: (addr + done as u64) as usize,
                len: dst.len() - done,
            }];
            match process_vm_readv(pid, &mut [IoSliceMut::new(&mut dst[done..])], &remote) {
                Ok(n) if n > 0 => done += n,
                Ok(_) | Err(_) => break,
            }
        }
        done
    }

    /// `process_vm_writev(pid, {src}, {addr, len})` until done or refused—Writes `src`
    /// at `addr`; returns how many bytes it wrote.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/process_vm_writev.2.html)
    #[doc(alias = "process_vm_writev")]
    pub fn write_pinned(&self, addr: u64, src: &[u8]) -> usize {
        let pid = Pid::from_raw(self.target);
        let mut done = 0;
        while done < src.len() {
            let remote = [RemoteIoVec {
                base: (addr + done as u64) as usize,
                len: src.len() - done,
            }];
            match process_vm_writev(pid, &[IoSlice::new(&src[done..])], &remote) {
                Ok(n) if n > 0 => done += n,
                Ok(_) | Err(_) => break,
            }
        }
        done
    }

    /// `process_vm_writev(pid, {src}, remote)`—Writes consecutive bytes of `src` to the
    /// `(address, length)` pieces of `remote` (at most [`IOV_MAX`]), in order, in one
    /// call. Returns how many bytes were written: fewer than asked when a piece cannot
    /// be written (the kernel stops there); 0 on error.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/process_vm_writev.2.html)
    #[doc(alias = "process_vm_writev")]
    pub fn write_scattered(&self, src: &[u8], remote: &[(u64, usize)]) -> usize {
        let iov: Vec<RemoteIoVec> = remote
            .iter()
            .map(|&(base, len)| RemoteIoVec {
                base: base as usize,
                len,
            })
            .collect();
        process_vm_writev(Pid::from_raw(self.target), &[IoSlice::new(src)], &iov).unwrap_or(0)
    }

    /// `pread(/proc/PID/mem, dst, addr)` until done—Reads `dst.len()` bytes at `addr`
    /// without pinning them (pages shared copy-on-write stay shared) and regardless of
    /// protection.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man5/proc_pid_mem.5.html)
    #[doc(alias = "pread")]
    pub fn read_unpinned(&mut self, addr: u64, dst: &mut [u8]) -> Result<(), RemoteMemError> {
        let len = dst.len();
        let err = |source| RemoteMemError { addr, len, source };
        self.file()
            .map_err(err)?
            .read_exact_at(dst, addr)
            .map_err(err)
    }

    /// `pwrite(/proc/PID/mem, src, addr)` until done—Writes `src` at `addr` regardless of
    /// protection (a tracer only).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man5/proc_pid_mem.5.html)
    #[doc(alias = "pwrite")]
    pub fn write_unpinned(&mut self, addr: u64, src: &[u8]) -> Result<(), RemoteMemError> {
        let len = src.len();
        let err = |source| RemoteMemError { addr, len, source };
        self.file()
            .map_err(err)?
            .write_all_at(src, addr)
            .map_err(err)
    }

    /// Reads `dst.len()` bytes at `addr`: [`read_pinned`](Self::read_pinned), then
    /// [`read_unpinned`](Self::read_unpinned) for what it did not read.
    pub fn read(&mut self, addr: u64, dst: &mut [u8]) -> Result<(), RemoteMemError> {
        let done = self.read_pinned(addr, dst);
        if done < dst.len() {
            self.read_unpinned(addr + done as u64, &mut dst[done..])?;
        }
        Ok(())
    }

    /// Writes `src` at `addr`: [`write_pinned`](Self::write_pinned), then
    /// [`write_unpinned`](Self::write_unpinned) for what it did not write.
    pub fn write(&mut self, addr: u64, src: &[u8]) -> Result<(), RemoteMemError> {
        let done = self.write_pinned(addr, src);
        if done < src.len() {
            self.write_unpinned(addr + done as u64, &src[done..])?;
        }
        Ok(())
    }

    fn file(&mut self) -> io::Result<&File> {
        let file = match self.mem.take() {
            Some(file) => file,
            None => File::options()
                .read(true)
                .write(self.writable)
                .open(&self.path)?,
        };
        Ok(self.mem.insert(file))
    }
}

/// Writes consecutive local bytes to the remote pieces `remote`, in batches of at most
/// [`IOV_MAX`] pieces: `batch(local_offset, pieces)` writes one batch and returns how many
/// bytes it wrote; each piece a batch did not wholly write goes to `slow(piece,
/// local_offset)` (the `/proc/PID/mem` way, say), and the next batch starts after it.
pub fn write_in_batches<E>(
    remote: &[(u64, usize)],
    mut batch: impl FnMut(usize, &[(u64, usize)]) -> usize,
    mut slow: impl FnMut((u64, usize), usize) -> Result<(), E>,
) -> Result<(), E> {
    let mut local_at = 0;
    let mut i = 0;
    while i < remote.len() {
        let end = (i + IOV_MAX).min(remote.len());
        let mut left = batch(local_at, &remote[i..end]);
        // Skip the pieces written whole; the first one not (wholly) written goes the slow
        // way.
        while i < end && left >= remote[i].1 {
            left -= remote[i].1;
            local_at += remote[i].1;
            i += 1;
        }
        if i < end {
            slow(remote[i], local_at)?;
            local_at += remote[i].1;
            i += 1;
        }
    }
    Ok(())
}

/// `mmap(NULL, len, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)`, then
/// `open("/proc/self/map_files/START-END", O_RDWR)` and `munmap`—Creates the shmem
/// object the kernel makes for shared anonymous memory (maps shows it as
/// `/dev/zero (deleted)`), of `len` bytes, and returns a read-write descriptor of it:
/// whatever maps that descriptor shares the memory, as processes forked after a
/// `MAP_SHARED | MAP_ANONYMOUS` mapping do. Opening `map_files` needs
/// `CAP_CHECKPOINT_RESTORE` (or `CAP_SYS_ADMIN`).
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
///  - [Linux](https://man7.org/linux/man-pages/man5/proc_pid_map_files.5.html)
#[doc(alias = "mmap")]
pub fn shared_anonymous(len: u64) -> io::Result<std::os::fd::OwnedFd> {
    let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a new mapping at an address the kernel chooses: it replaces nothing, is
    // never accessed (PROT_NONE) and is unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = addr as usize;
    let path = format!("/proc/self/map_files/{:x}-{:x}", start, start + len);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path);
    // SAFETY: the mapping made above, which holds no Rust data; the object lives on
    // in the descriptor.
    unsafe {
        libc::munmap(addr, len);
    }
    Ok(opened?.into())
}

/// A read-only shared mapping of the first `len` bytes of a file (see the module
/// documentation). Unmapped on drop.
#[derive(Debug)]
pub struct FileMapping {
    addr: usize,
    len: usize,
}

impl FileMapping {
    /// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0)`—Maps the first `len` bytes of
    /// `file` (`len` > 0). Not populated: only the pages copied from are faulted in.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn map(file: &File, len: u64) -> io::Result<FileMapping> {
        let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a new mapping at an address the kernel chooses: it replaces nothing,
        // and no Rust reference to it is ever made (only its address is passed on).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(FileMapping {
            addr: addr as usize,
            len,
        })
    }

    /// The mapped length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping is never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `pwrite(fd, mapping + offset, len, at)` until done—Copies `len` bytes of the
    /// mapping from `offset` on into the file `fd` at `at` (an error past the mapping's
    /// end, or when the mapped file is shorter than the mapping says).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/pwrite.2.html)
    #[doc(alias = "pwrite")]
    pub fn write_to_file(
        &self,
        offset: usize,
        len: usize,
        fd: std::os::fd::BorrowedFd<'_>,
        at: u64,
    ) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
        let mut done = 0usize;
        while done < len {
            let to = at
                .checked_add(done as u64)
                .and_then(|o| i64::try_from(o).ok())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: the source lies inside the mapping (checked above), which lives as
            // long as `self`; the kernel only reads it.
            let n = unsafe {
                libc::pwrite(
                    fd.as_raw_fd(),
                    (self.addr + offset + done) as *const libc::c_void,
                    len - done,
                    to,
                )
            };
            match n {
                n if n > 0 => done += n as usize,
                0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// `process_vm_writev(pid, {mapping + offset, total}, remote)`—Copies consecutive
    /// bytes of the mapping from `offset` on into process `pid` at the `(address,
    /// length)` pieces of `remote` (at most `IOV_MAX`), in order. Returns how many bytes
    /// were written: fewer than asked when a remote piece cannot be written (the kernel
    /// stops there).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/process_vm_writev.2.html)
    #[doc(alias = "process_vm_writev")]
    pub fn write_to_process(
        &self,
        pid: i32,
        offset: usize,
        remote: &[(u64, usize)],
    ) -> io::Result<usize> {
        let total = remote
            .iter()
            .try_fold(0usize, |acc, &(_, len)| acc.checked_add(len));
        match total.and_then(|t| offset.checked_add(t)) {
            Some(end) if end <= self.len => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
        let total = total.unwrap_or(0);
        let local = libc::iovec {
            iov_base: (self.addr + offset) as *mut libc::c_void,
            iov_len: total,
        };
        let remote: Vec<libc::iovec> = remote
            .iter()
            .map(|&(base, len)| libc::iovec {
                iov_base: base as usize as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        // SAFETY: the local range lies inside our mapping (checked above) and is only
        // read, by the kernel, which reports a fault as EFAULT; the remote addresses are
        // in another process and checked by the kernel; both iovec arrays outlive the
        // call.
        let ret = unsafe {
            libc::process_vm_writev(
                pid,
                &local,
                1,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ret as usize)
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, made in `map`, of which no reference exists.
        unsafe {
            libc::munmap(self.addr as *mut libc::c_void, self.len);
        }
    }
}

/// A private anonymous area mapped by this process at a fixed address, in a process that
/// holds no Rust data there (it did not exist before). Unmapped on drop unless kept.
#[derive(Debug)]
pub struct OwnArea {
    addr: u64,
    len: u64,
    keep: bool,
}

impl OwnArea {
    /// `mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_FIXED_NOREPLACE, -1, 0)`—Maps `[addr, addr + len)` (page-aligned), or `None`
    /// when anything is mapped there already (`EEXIST`, or an older kernel that put it
    /// elsewhere).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn map_fixed_noreplace(addr: u64, len: u64) -> io::Result<Option<OwnArea>> {
        let (Ok(a), Ok(l)) = (usize::try_from(addr), usize::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        if len == 0 || addr % 4096 != 0 || len % 4096 != 0 || addr.checked_add(len).is_none() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping, so no memory in use by
        // this process changes; the new area holds no Rust data.
        let got = unsafe {
            libc::mmap(
                a as *mut libc::c_void,
                l,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if got == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EEXIST) => Ok(None),
                _ => Err(e),
            };
        }
        if got as usize != a {
            // A kernel without MAP_FIXED_NOREPLACE took it as a hint.
            // SAFETY: the mapping just made, elsewhere, holding nothing.
            unsafe {
                libc::munmap(got, l);
            }
            return Ok(None);
        }
        Ok(Some(OwnArea {
            addr,
            len,
            keep: false,
        }))
    }

    /// `pread(file, addr + at, len, offset)` until done—Fills `len` bytes of the area
    /// from `at` on with the bytes of `file` at `offset` (`UnexpectedEof` past its end).
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/pread.2.html)
    #[doc(alias = "pread")]
    pub fn fill_from(&mut self, at: u64, len: u64, file: &File, offset: u64) -> io::Result<()> {
        match at.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
        let mut done = 0u64;
        while done < len {
            let off = offset
                .checked_add(done)
                .and_then(|o| i64::try_from(o).ok())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: the destination lies inside the area (checked above), which this
            // process mapped and no Rust reference points into.
            let n = unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    (self.addr + at + done) as usize as *mut libc::c_void,
                    (len - done) as usize,
                    off,
                )
            };
            match n {
                n if n > 0 => done += n as u64,
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Leaves the area mapped (for the children about to be forked, and for the restorer
    /// to find).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for OwnArea {
    fn drop(&mut self) {
        if !self.keep {
            // SAFETY: our own mapping, made in `map_fixed_noreplace`, holding no Rust data.
            unsafe {
                libc::munmap(self.addr as usize as *mut libc::c_void, self.len as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_skip_written_pieces_and_send_the_first_short_one_the_slow_way() {
        let remote: Vec<(u64, usize)> = (0..IOV_MAX as u64 + 3).map(|i| (i * 8192, 4)).collect();
        let mut batches = Vec::new();
        let mut slow = Vec::new();
        write_in_batches::<()>(
            &remote,
            |at, pieces| {
                batches.push((at, pieces.len()));
                // The first batch stops half-way into its third piece.
                if at == 0 { 10 } else { pieces.len() * 4 }
            },
            |piece, at| {
                slow.push((piece, at));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(slow, vec![((2 * 8192, 4), 8)]);
        assert_eq!(batches, vec![(0, IOV_MAX), (12, IOV_MAX)]);
    }

    #[test]
    fn own_memory_round_trips() {
        let mut mem = RemoteMem::of_thread(std::process::id() as i32, std::process::id() as i32);
        let src = [7u8; 100];
        let mut dst = [0u8; 100];
        mem.read(src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
    }
}
