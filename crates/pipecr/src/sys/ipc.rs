//! System V IPC calls (shared memory, semaphores, message queues), each a thin wrapper
//! over libc returning `io::Result`, and [`ShmAttachment`], a segment attached in the
//! calling process (detached when dropped) whose contents are read and written as a
//! file (`/proc/self/map_files`), never through a raw pointer.

use std::fs::File;
use std::io;

/// `IPC_PRIVATE`.
pub const IPC_PRIVATE: i32 = 0;
/// `SHM_RDONLY`: attach read-only.
pub const SHM_RDONLY: i32 = 0o10000;
/// `SHM_EXEC`: attach executable.
pub const SHM_EXEC: i32 = 0o100000;
/// `SHM_REMAP`: replace what is mapped at the address.
pub const SHM_REMAP: i32 = 0o40000;
/// `MSG_COPY`: msgrcv copies the message at an index without removing it (Linux
/// 3.8+, `CONFIG_CHECKPOINT_RESTORE`).
pub const MSG_COPY: i32 = 0o40000;

fn check(ret: libc::c_int) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `shmget(key, size, flags)`—Creates (or finds) a shared memory segment; returns its id.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/shmget.2.html)
pub fn shmget(key: i32, size: u64, flags: i32) -> io::Result<i32> {
    let size = usize::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::shmget(key, size, flags) })
}

/// `shmctl(id, IPC_RMID)`—Marks a segment for removal (gone once no process attaches it).
pub fn shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer; a null pointer is allowed.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `shmctl(id, SHM_LOCK)`—Keeps a segment's pages in memory.
pub fn shm_lock(id: i32) -> io::Result<()> {
    // SAFETY: SHM_LOCK reads no buffer; a null pointer is allowed.
    check(unsafe { libc::shmctl(id, libc::SHM_LOCK, std::ptr::null_mut()) }).map(drop)
}

/// `shmctl(id, IPC_SET)`—Sets a segment's owner and permission bits.
pub fn shm_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: shmid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as _;
    // SAFETY: `ds` is a valid shmid_ds that outlives the call.
    check(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// A shared memory segment attached in the calling process; detached when dropped.
#[derive(Debug)]
pub struct ShmAttachment {
    addr: usize,
    len: u64,
}

impl ShmAttachment {
    /// `shmat(id, NULL, flags)`—Attaches segment `id` of `len` bytes (its size) where the
    /// kernel chooses.
    ///
    /// # References
    ///  - [Linux](https://man7.org/linux/man-pages/man2/shmat.2.html)
    pub fn attach(id: i32, len: u64, read_only: bool) -> io::Result<ShmAttachment> {
        let flags = if read_only { SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose a free place; nothing of ours is
        // replaced.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(ShmAttachment {
            addr: addr as usize,
            len,
        })
    }

    /// The segment as a file (`/proc/self/map_files/START-END`): read with `SEEK_DATA`
    /// and `pread`, written with `pwrite`, without faulting pages into this process.
    pub fn file(&self, write: bool) -> io::Result<File> {
        let page = 4096u64;
        let end = self.addr as u64 + self.len.div_ceil(page).max(1) * page;
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(format!("/proc/self/map_files/{:x}-{end:x}", self.addr))
    }
}

impl Drop for ShmAttachment {
    fn drop(&mut self) {
        // SAFETY: `addr` is the address shmat returned; nothing of ours points into it
        // (only files opened through map_files, which keep their own reference).
        unsafe { libc::shmdt(self.addr as *const libc::c_void) };
    }
}

/// `semget(key, nsems, flags)`—Creates (or finds) a semaphore set; returns its id.
pub fn semget(key: i32, nsems: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::semget(key, nsems, flags) })
}

/// `semctl(id, 0, GETALL)`—The values of the `nsems` semaphores of a set.
pub fn sem_values(id: i32, nsems: usize) -> io::Result<Vec<u16>> {
    let mut values = vec![0u16; nsems.max(1)];
    // SAFETY: GETALL writes one unsigned short per semaphore of the set into the array,
    // which holds `nsems` of them (the caller read nsems from the set).
    check(unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) })?;
    values.truncate(nsems);
    Ok(values)
}

/// `semctl(id, 0, SETALL)`—Sets the value of every semaphore of a set.
pub fn sem_set_values(id: i32, values: &[u16]) -> io::Result<()> {
    let mut values = values.to_vec();
    // SAFETY: SETALL reads one unsigned short per semaphore from the array, which holds
    // as many as the set has (it was created with values.len()).
    check(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_mut_ptr()) }).map(drop)
}

/// `semctl(id, num, GETPID)`—The process of the last operation on semaphore `num`.
pub fn sem_pid(id: i32, num: i32) -> io::Result<i32> {
    // SAFETY: GETPID takes no fourth argument.
    check(unsafe { libc::semctl(id, num, libc::GETPID) })
}

/// `semctl(id, 0, IPC_SET)`—Sets a set's owner and permission bits.
pub fn sem_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: semid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as _;
    // SAFETY: `ds` is a valid semid_ds that outlives the call (IPC_SET reads it).
    check(unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) }).map(drop)
}

/// `semctl(id, 0, IPC_RMID)`—Removes a semaphore set.
pub fn sem_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no fourth argument.
    check(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
}

/// `msgget(key, flags)`—Creates (or finds) a message queue; returns its id.
pub fn msgget(key: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::msgget(key, flags) })
}

/// `msgctl(id, IPC_STAT)`: a queue's `msg_qbytes`.
pub fn msg_qbytes(id: i32) -> io::Result<u64> {
    // SAFETY: msqid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid msqid_ds that outlives the call (IPC_STAT fills it).
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds.msg_qbytes as u64)
}

/// `msgctl(id, IPC_SET)`—Sets a queue's owner, permission bits and `msg_qbytes`.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> io::Result<()> {
    // SAFETY: msqid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as _;
    ds.msg_qbytes = qbytes as _;
    // SAFETY: `ds` is a valid msqid_ds that outlives the call (IPC_SET reads it).
    check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `msgctl(id, IPC_RMID)`—Removes a message queue.
pub fn msg_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer; a null pointer is allowed.
    check(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// The longest message text [`msg_copy`] reads (`MSGMAX` can be raised up to `INT_MAX`;
/// the kernel's default is 8192).
const MSG_COPY_MAX: usize = 16 << 20;

/// `msgrcv(id, buf, len, index, MSG_COPY | IPC_NOWAIT)`—A copy of the message at
/// `index` (0 the oldest) of a queue, left in the queue: its type and text; `None` past
/// the last message.
pub fn msg_copy(id: i32, index: i64) -> io::Result<Option<(i64, Vec<u8>)>> {
    let mut text_len = 8192usize;
    loop {
        // mtype (a long) then the text.
        let mut buf = vec![0u8; 8 + text_len];
        // SAFETY: `buf` holds a long and `text_len` bytes, as msgrcv's msgsz says.
        let n = unsafe {
            libc::msgrcv(
                id,
                buf.as_mut_ptr().cast(),
                text_len,
                index,
                MSG_COPY | libc::IPC_NOWAIT,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENOMSG) => return Ok(None),
                Some(libc::E2BIG) if text_len < MSG_COPY_MAX => {
                    text_len *= 4;
                    continue;
                }
                _ => return Err(err),
            }
        }
        let mtype = i64::from_ne_bytes(buf[..8].try_into().unwrap_or([0; 8]));
        buf.drain(..8);
        buf.truncate(n as usize);
        return Ok(Some((mtype, buf)));
    }
}

/// `msgsnd(id, {mtype, text}, len, IPC_NOWAIT)`—Queues a message.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` holds a long and `text.len()` bytes, as msgsz says.
    check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) }).map(drop)
}

/// A child of the calling process that does nothing until dropped (then it is killed
/// and reaped): a process with no System V semaphore undo list (`fork` shares none), to
/// compare others with (`kcmp(KCMP_SYSVSEM)`). The calling thread may have one: glibc
/// creates threads with `CLONE_SYSVSEM`, which allocates one to share.
#[derive(Debug)]
pub struct IdleChild {
    pid: i32,
}

impl IdleChild {
    /// `fork()`; the child only calls `pause()`, forever (async-signal-safe, so a
    /// multi-threaded caller is fine).
    pub fn spawn() -> io::Result<IdleChild> {
        // SAFETY: the child runs only async-signal-safe calls (pause) and never returns.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(io::Error::last_os_error()),
            0 => loop {
                // SAFETY: pause takes no arguments.
                unsafe { libc::pause() };
            },
            pid => Ok(IdleChild { pid }),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for IdleChild {
    fn drop(&mut self) {
        // SAFETY: plain integer arguments; the pid is our own child, not yet reaped.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        loop {
            // SAFETY: a null status pointer is allowed; we wait for this child only.
            let r = unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL) };
            if r != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
}
