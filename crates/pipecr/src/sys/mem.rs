//! Memory the restorer hands to the kernel by address only: a read-only mapping of a
//! file whose bytes are copied into another process with `process_vm_writev` (never read
//! from user space, so a file truncated behind our back makes the call fail with
//! `EFAULT` instead of raising `SIGBUS`), and private anonymous areas a process being
//! restored maps at fixed addresses in its own address space and fills from a file
//! (`pread` straight into them), for its children to inherit copy-on-write.
//!
//! Which pages go where belongs to [`crate::restore`].

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

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
