//! System V IPC objects of a tree: which belong to it, saving them (`ipc.img`, segment
//! contents in `ipc-data.img`), and creating them again with their saved ids.
//!
//! Which objects belong to a tree (pipecr's IPC namespace is the host's, shared with
//! processes outside the tree, so not every object there is the tree's):
//! - shared memory segments attached by a process of the tree, and those a process of
//!   the tree created (`cpid`) that nothing attaches now; a segment also attached
//!   outside the tree is refused (restore could not give it back to both);
//! - semaphore sets on which a process of the tree made the last operation on some
//!   semaphore (`semctl(GETPID)`);
//! - message queues a process of the tree last sent to or received from (`lspid`,
//!   `lrpid`).
//!
//! A tree in an IPC namespace of its own is refused (its objects are not visible here);
//! so is, when the tree uses semaphore sets, a process with a semaphore undo list
//! (`semop` with `SEM_UNDO`; every process with threads has one too): the kernel shows
//! the adjustments nowhere, so they could be neither saved nor given back.
//!
//! Restore ([`check`], then [`create`]) refuses before creating anything when a saved id
//! or key is taken, then creates each object with `/proc/sys/kernel/{shm,sem,msg}_next_id`
//! set to its id (`CONFIG_CHECKPOINT_RESTORE`, `CAP_CHECKPOINT_RESTORE`), sets its owner
//! and mode, fills it (segment contents, semaphore values, messages in order), and
//! removes all it created if anything fails ([`Created`] does on drop). Attaching
//! segments is for the memory area kind (`crate::mem::sysvshm`), by id.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::FileExt;

use pipecr_image::proto::{self, ipc_object};
use pipecr_image::{Image, ImageError, ImageWriter};

use crate::sys::ipc as sys;

/// Why System V IPC objects could not be saved or created again.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// A file of `/proc` could not be read or parsed.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A call on an object failed.
    #[error("{what}: {op} failed")]
    Sys {
        /// The object (`shm id 5 (key 0x1234)`).
        what: String,
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Something pipecr cannot save or give back.
    #[error("{what}")]
    Unsupported {
        /// What, naming the process or object.
        what: String,
    },
    /// The image could not be read or written.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// The three kinds of object, as `/proc/sysvipc` and `/proc/sys/kernel` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shm,
    Sem,
    Msg,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Sem => "sem",
            Kind::Msg => "msg",
        }
    }
}

/// One line of `/proc/sysvipc/{shm,sem,msg}`, its columns by name.
#[derive(Debug, Clone)]
struct Row {
    fields: Vec<(String, i64)>,
}

impl Row {
    fn get(&self, name: &str) -> i64 {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |&(_, v)| v)
    }
}

/// Reads `/proc/sysvipc/NAME`: a header line of column names, then one line per object
/// (`perms` is octal, every other column decimal).
fn rows(kind: Kind) -> Result<Vec<Row>, IpcError> {
    let path = format!("/proc/sysvipc/{}", kind.name());
    let text = std::fs::read_to_string(&path).map_err(|source| IpcError::Read {
        path: path.clone(),
        source,
    })?;
    parse_rows(&text).ok_or(IpcError::Read {
        path,
        source: io::Error::from(io::ErrorKind::InvalidData),
    })
}

fn parse_rows(text: &str) -> Option<Vec<Row>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let mut fields = Vec::new();
        for (name, value) in header.iter().zip(line.split_whitespace()) {
            let v = if *name == "perms" {
                i64::from_str_radix(value, 8).ok()?
            } else {
                value.parse().ok()?
            };
            fields.push(((*name).to_owned(), v));
        }
        out.push(Row { fields });
    }
    Some(out)
}

/// The id column of a row.
fn row_id(kind: Kind, row: &Row) -> i32 {
    row.get(match kind {
        Kind::Shm => "shmid",
        Kind::Sem => "semid",
        Kind::Msg => "msqid",
    }) as i32
}

fn perm(kind: Kind, row: &Row) -> proto::IpcPerm {
    proto::IpcPerm {
        key: row.get("key") as i32,
        id: row_id(kind, row),
        uid: row.get("uid") as u32,
        gid: row.get("gid") as u32,
        cuid: row.get("cuid") as u32,
        cgid: row.get("cgid") as u32,
        mode: (row.get("perms") & 0o777) as u32,
    }
}

/// `SHM_DEST` and `SHM_LOCKED` mode bits of a segment.
const SHM_DEST: i64 = 0o1000;
const SHM_LOCKED: i64 = 0o2000;

/// How an object is named in messages.
pub fn describe(object: &proto::IpcObject) -> String {
    let (kind, perm) = match &object.kind {
        Some(ipc_object::Kind::Shm(s)) => ("shared memory segment", &s.perm),
        Some(ipc_object::Kind::Sem(s)) => ("semaphore set", &s.perm),
        Some(ipc_object::Kind::Msg(m)) => ("message queue", &m.perm),
        None => return "an IPC object of a kind this version does not know".to_owned(),
    };
    let perm = (*perm).unwrap_or_default();
    format!("{kind} id {} (key {:#x})", perm.id, perm.key as u32)
}

/// The System V shared memory segments (by id) the maps of `pid` attach, one per area
/// (`/SYSVKEY (deleted)`: the inode is the segment's id).
fn attached_segments(pid: i32) -> Result<Vec<i32>, IpcError> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|source| IpcError::Read { path, source })?;
    // START-END PERMS OFFSET DEV INODE PATH: a shared ('s') mapping of "/SYSV...".
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let perms = cols.nth(1)?;
            let inode = cols.nth(2)?;
            let path = cols.next()?;
            (perms.ends_with('s') && path.starts_with("/SYSV")).then(|| inode.parse().ok())?
        })
        .collect())
}

/// Refuses a tree in an IPC namespace other than ours: its objects are not visible here.
fn refuse_namespace(pids: &[i32]) -> Result<(), IpcError> {
    let ours = std::fs::read_link("/proc/self/ns/ipc").ok();
    for &pid in pids {
        if std::fs::read_link(format!("/proc/{pid}/ns/ipc")).ok() != ours {
            return Err(IpcError::Unsupported {
                what: format!(
                    "pid {pid} is in an IPC namespace of its own; pipecr saves System V IPC \
                     objects of its own namespace only"
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a process of `pids` with a semaphore undo list: its adjustments (`semop` with
/// `SEM_UNDO`) are shown nowhere, so they can be neither saved nor given back. A list
/// exists once a process used `SEM_UNDO`, and in every process with threads (glibc
/// creates them with `CLONE_SYSVSEM`), so this is asked only when the tree uses
/// semaphore sets.
fn refuse_undo(pids: &[i32]) -> Result<(), IpcError> {
    let sys = |pid: i32, op| {
        move |source| IpcError::Sys {
            what: format!("pid {pid}"),
            op,
            source,
        }
    };
    let me = rustix::process::getpid().as_raw_nonzero().get();
    // A process known to have none, to compare with.
    let blank = sys::IdleChild::spawn().map_err(sys(me, "fork"))?;
    let Some(reference) = rustix::process::Pid::from_raw(blank.pid()) else {
        return Ok(());
    };
    for &pid in pids {
        let Some(target) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        let same =
            crate::sys::kcmp::kcmp_shared(target, reference, crate::sys::kcmp::Shared::Sysvsem)
                .map_err(sys(pid, "kcmp(KCMP_SYSVSEM)"))?;
        if same != std::cmp::Ordering::Equal {
            return Err(IpcError::Unsupported {
                what: format!(
                    "pid {pid} has a System V semaphore undo list (semop with SEM_UNDO, or \
                     threads, which share one) while the tree uses semaphore sets: its \
                     adjustments are not shown by the kernel, so pipecr cannot save them"
                ),
            });
        }
    }
    Ok(())
}

/// Saves the System V IPC objects that belong to the frozen processes `pids` (see the
/// module documentation) into `ipc.img` (and `ipc-data.img`) of `writer`, and returns
/// them. Reads without changing them, except a segment's last-attach pid and times
/// (pipecr attaches it, read-only, to read it).
pub fn dump(pids: &[i32], writer: &mut ImageWriter) -> Result<Vec<proto::IpcObject>, IpcError> {
    refuse_namespace(pids)?;
    let tree: BTreeSet<i32> = pids.iter().copied().collect();
    let mut attached: Vec<i32> = Vec::new();
    for &pid in pids {
        attached.extend(attached_segments(pid)?);
    }
    let mut objects = Vec::new();
    for row in rows(Kind::Shm)? {
        let id = row_id(Kind::Shm, &row);
        let ours = attached.iter().filter(|&&a| a == id).count() as i64;
        let nattch = row.get("nattch");
        let created_here = tree.contains(&(row.get("cpid") as i32)) && nattch == 0;
        if ours == 0 && !created_here {
            continue;
        }
        let p = perm(Kind::Shm, &row);
        if nattch > ours {
            return Err(IpcError::Unsupported {
                what: format!(
                    "shared memory segment id {id} (key {:#x}) is attached {nattch} times, \
                     {ours} of them by the tree: processes outside the tree attach it too",
                    p.key as u32
                ),
            });
        }
        let size = row.get("size") as u64;
        let mode = row.get("perms");
        let extents = dump_contents(id, p.key, size, writer)?;
        objects.push(proto::IpcObject {
            kind: Some(ipc_object::Kind::Shm(proto::ShmSegment {
                perm: Some(p),
                size,
                cpid: row.get("cpid") as i32,
                lpid: row.get("lpid") as i32,
                nattch: nattch as u64,
                removed: mode & SHM_DEST != 0,
                locked: mode & SHM_LOCKED != 0,
                extents,
            })),
        });
    }
    for row in rows(Kind::Sem)? {
        let id = row_id(Kind::Sem, &row);
        let p = perm(Kind::Sem, &row);
        let what = || format!("semaphore set id {id} (key {:#x})", p.key as u32);
        let nsems = row.get("nsems") as usize;
        let sys = |op| {
            move |source| IpcError::Sys {
                what: what(),
                op,
                source,
            }
        };
        let mut sems = Vec::with_capacity(nsems);
        for num in 0..nsems {
            let pid = match sys::sem_pid(id, num as i32) {
                Ok(pid) => pid,
                // A set this dumper may not read is not one the tree's processes use
                // under the dumper's own credentials; it is left alone.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => 0,
                Err(e) => return Err(sys("semctl(GETPID)")(e)),
            };
            sems.push(proto::Semaphore { value: 0, pid });
        }
        if !sems.iter().any(|s| tree.contains(&s.pid)) {
            continue;
        }
        let values = sys::sem_values(id, nsems).map_err(sys("semctl(GETALL)"))?;
        for (s, v) in sems.iter_mut().zip(values) {
            s.value = u32::from(v);
        }
        objects.push(proto::IpcObject {
            kind: Some(ipc_object::Kind::Sem(proto::SemSet {
                perm: Some(p),
                sems,
                otime: row.get("otime"),
                ctime: row.get("ctime"),
            })),
        });
    }
    for row in rows(Kind::Msg)? {
        let id = row_id(Kind::Msg, &row);
        let (lspid, lrpid) = (row.get("lspid") as i32, row.get("lrpid") as i32);
        if !tree.contains(&lspid) && !tree.contains(&lrpid) {
            continue;
        }
        let p = perm(Kind::Msg, &row);
        let sys = |op| {
            move |source| IpcError::Sys {
                what: format!("message queue id {id} (key {:#x})", p.key as u32),
                op,
                source,
            }
        };
        let qbytes = sys::msg_qbytes(id).map_err(sys("msgctl(IPC_STAT)"))?;
        let qnum = row.get("qnum");
        let mut messages = Vec::new();
        for index in 0..qnum {
            match sys::msg_copy(id, index).map_err(sys("msgrcv(MSG_COPY)"))? {
                Some((mtype, text)) => messages.push(proto::QueuedMessage { mtype, text }),
                None => break,
            }
        }
        if messages.len() as i64 != qnum {
            return Err(IpcError::Unsupported {
                what: format!(
                    "message queue id {id}: {qnum} messages queued, {} read (a process \
                     outside the tree uses it)",
                    messages.len()
                ),
            });
        }
        objects.push(proto::IpcObject {
            kind: Some(ipc_object::Kind::Msg(proto::MsgQueue {
                perm: Some(p),
                qbytes,
                lspid,
                lrpid,
                messages,
            })),
        });
    }
    if objects
        .iter()
        .any(|o| matches!(o.kind, Some(ipc_object::Kind::Sem(_))))
    {
        refuse_undo(pids)?;
    }
    writer.write_records(pipecr_image::IPC, &objects)?;
    Ok(objects)
}

/// Saves the bytes of segment `id` that exist (holes skipped with `SEEK_DATA`) into
/// `ipc-data.img`.
fn dump_contents(
    id: i32,
    key: i32,
    size: u64,
    writer: &mut ImageWriter,
) -> Result<Vec<proto::ShmExtent>, IpcError> {
    let what = || format!("shared memory segment id {id} (key {:#x})", key as u32);
    let sys = |op| {
        move |source| IpcError::Sys {
            what: what(),
            op,
            source,
        }
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let attachment = sys::ShmAttachment::attach(id, size, true).map_err(sys("shmat"))?;
    let file = attachment.file(false).map_err(sys("open map_files"))?;
    let mut extents = Vec::new();
    let mut off = 0u64;
    while off < size {
        let data = match rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(off)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(sys("lseek(SEEK_DATA)")(e.into())),
        };
        if data >= size {
            break;
        }
        let hole = rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(data))
            .map_err(|e| sys("lseek(SEEK_HOLE)")(e.into()))?
            .min(size);
        let raw = writer.raw(pipecr_image::IPC_DATA)?;
        let len = hole - data;
        let stored = raw.append_with(len, |out, at| {
            let mut buf = vec![0u8; len.min(1 << 20) as usize];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                file.read_exact_at(&mut buf[..n], data + done)?;
                out.write_all_at(&buf[..n], at + done)?;
                done += n as u64;
            }
            Ok(())
        })?;
        extents.push(proto::ShmExtent {
            offset: data,
            data: Some(stored),
        });
        off = hole.max(data + 1);
    }
    Ok(extents)
}

/// Removes the objects a dump saved, once the tree they belong to is gone (a dump that
/// kills the tree moves them into the image, so that a restore can create them again
/// with their ids). Best effort: one already gone is no error.
pub fn remove(objects: &[proto::IpcObject]) {
    for object in objects {
        let _ = match &object.kind {
            Some(ipc_object::Kind::Shm(s)) => sys::shm_remove(id_of(&s.perm)),
            Some(ipc_object::Kind::Sem(s)) => sys::sem_remove(id_of(&s.perm)),
            Some(ipc_object::Kind::Msg(m)) => sys::msg_remove(id_of(&m.perm)),
            None => Ok(()),
        };
    }
}

fn id_of(perm: &Option<proto::IpcPerm>) -> i32 {
    perm.as_ref().map_or(-1, |p| p.id)
}

/// The objects of `image` (none in an image without `ipc.img`).
pub fn load(image: &Image) -> Result<Vec<proto::IpcObject>, IpcError> {
    if !image.has_file(pipecr_image::IPC) {
        return Ok(Vec::new());
    }
    Ok(image.read_records(pipecr_image::IPC)?)
}

fn kind_of(object: &proto::IpcObject) -> Result<(Kind, proto::IpcPerm), IpcError> {
    let (kind, perm) = match &object.kind {
        Some(ipc_object::Kind::Shm(s)) => (Kind::Shm, &s.perm),
        Some(ipc_object::Kind::Sem(s)) => (Kind::Sem, &s.perm),
        Some(ipc_object::Kind::Msg(m)) => (Kind::Msg, &m.perm),
        None => {
            return Err(IpcError::Unsupported {
                what: describe(object),
            });
        }
    };
    let perm = (*perm).ok_or_else(|| IpcError::Unsupported {
        what: format!("{}: no id in the image", describe(object)),
    })?;
    Ok((kind, perm))
}

/// Checks, before anything is created, that every object of `objects` can be created
/// again: its id free, its key (unless private) unused, the kernel able to choose ids.
pub fn check(objects: &[proto::IpcObject]) -> Result<(), IpcError> {
    if objects.is_empty() {
        return Ok(());
    }
    let mut live: Vec<(Kind, Vec<Row>)> = Vec::new();
    for kind in [Kind::Shm, Kind::Sem, Kind::Msg] {
        live.push((kind, rows(kind)?));
        let path = format!("/proc/sys/kernel/{}_next_id", kind.name());
        if !std::path::Path::new(&path).exists() {
            return Err(IpcError::Unsupported {
                what: format!(
                    "this kernel has no {path} (CONFIG_CHECKPOINT_RESTORE): System V IPC \
                     objects cannot be given their ids"
                ),
            });
        }
    }
    for object in objects {
        let (kind, perm) = kind_of(object)?;
        let rows = &live
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[][..], |(_, r)| r);
        for row in rows.iter() {
            let taken_id = row_id(kind, row) == perm.id;
            let taken_key = perm.key != sys::IPC_PRIVATE && row.get("key") as i32 == perm.key;
            if taken_id || taken_key {
                let what = if taken_id { "its id" } else { "its key" };
                return Err(IpcError::Unsupported {
                    what: format!(
                        "{}: {what} is taken by a live object (id {}, key {:#x}); remove it \
                         (ipcrm -{} {}) or restore where it does not exist",
                        describe(object),
                        row_id(kind, row),
                        row.get("key") as u32,
                        match kind {
                            Kind::Shm => 'm',
                            Kind::Sem => 's',
                            Kind::Msg => 'q',
                        },
                        row_id(kind, row)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The objects a restore created so far: removed when dropped, unless
/// [`finish`](Self::finish)ed.
#[derive(Debug, Default)]
pub struct Created {
    objects: Vec<(Kind, i32)>,
    /// Segments that were marked for removal when dumped, removed again by `finish`.
    removed: Vec<i32>,
    done: bool,
}

impl Created {
    /// Marks for removal the segments that were (attached but removed) when dumped,
    /// once every process has attached them again, and keeps everything else.
    pub fn finish(mut self) -> Result<(), IpcError> {
        self.done = true;
        for &id in &self.removed {
            sys::shm_remove(id).map_err(|source| IpcError::Sys {
                what: format!("shared memory segment id {id}"),
                op: "shmctl(IPC_RMID)",
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for &(kind, id) in self.objects.iter().rev() {
            let _ = match kind {
                Kind::Shm => sys::shm_remove(id),
                Kind::Sem => sys::sem_remove(id),
                Kind::Msg => sys::msg_remove(id),
            };
        }
    }
}

/// Creates every object of `objects` (from `image`) again with its id, owner, mode and
/// contents ([`check`] first). On error, what was created is removed.
pub fn create(image: &Image, objects: &[proto::IpcObject]) -> Result<Created, IpcError> {
    let mut created = Created::default();
    for object in objects {
        let (kind, perm) = kind_of(object)?;
        let what = describe(object);
        let sys = |op: &'static str| {
            let what = what.clone();
            move |source| IpcError::Sys { what, op, source }
        };
        let next = format!("/proc/sys/kernel/{}_next_id", kind.name());
        std::fs::write(&next, perm.id.to_string()).map_err(sys("write *_next_id"))?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (perm.mode & 0o777) as i32;
        let got = match &object.kind {
            Some(ipc_object::Kind::Shm(s)) => {
                sys::shmget(perm.key, s.size, flags).map_err(sys("shmget"))?
            }
            Some(ipc_object::Kind::Sem(s)) => {
                sys::semget(perm.key, s.sems.len() as i32, flags).map_err(sys("semget"))?
            }
            _ => sys::msgget(perm.key, flags).map_err(sys("msgget"))?,
        };
        created.objects.push((kind, got));
        if got != perm.id {
            return Err(IpcError::Unsupported {
                what: format!(
                    "{what}: the kernel gave it id {got} (another took the id meanwhile)"
                ),
            });
        }
        let id = got;
        match &object.kind {
            Some(ipc_object::Kind::Shm(s)) => {
                fill_segment(image, id, s).map_err(|e| match e {
                    IpcError::Sys { op, source, .. } => IpcError::Sys {
                        what: what.clone(),
                        op,
                        source,
                    },
                    e => e,
                })?;
                if s.locked {
                    sys::shm_lock(id).map_err(sys("shmctl(SHM_LOCK)"))?;
                }
                sys::shm_set_owner(id, perm.uid, perm.gid, perm.mode)
                    .map_err(sys("shmctl(IPC_SET)"))?;
                if s.removed {
                    created.removed.push(id);
                }
            }
            Some(ipc_object::Kind::Sem(s)) => {
                let values: Vec<u16> = s
                    .sems
                    .iter()
                    .map(|v| u16::try_from(v.value).unwrap_or(u16::MAX))
                    .collect();
                if !values.is_empty() {
                    sys::sem_set_values(id, &values).map_err(sys("semctl(SETALL)"))?;
                }
                sys::sem_set_owner(id, perm.uid, perm.gid, perm.mode)
                    .map_err(sys("semctl(IPC_SET)"))?;
            }
            Some(ipc_object::Kind::Msg(m)) => {
                // Room for every saved message whatever msg_qbytes was, then the saved
                // limit: the kernel keeps messages already queued beyond it.
                // The kernel bounds both the bytes and the number of messages by it.
                let total: u64 = m.messages.iter().map(|x| x.text.len() as u64).sum();
                let room = total.max(m.messages.len() as u64).max(m.qbytes);
                sys::msg_set(id, 0, 0, 0o600, room).map_err(sys("msgctl(IPC_SET)"))?;
                for msg in &m.messages {
                    sys::msg_send(id, msg.mtype, &msg.text).map_err(sys("msgsnd"))?;
                }
                sys::msg_set(id, perm.uid, perm.gid, perm.mode, m.qbytes)
                    .map_err(sys("msgctl(IPC_SET)"))?;
            }
            None => {}
        }
    }
    Ok(created)
}

/// Writes the saved contents of segment `id`.
fn fill_segment(image: &Image, id: i32, s: &proto::ShmSegment) -> Result<(), IpcError> {
    if s.extents.is_empty() {
        return Ok(());
    }
    let sys = |op| {
        move |source| IpcError::Sys {
            what: String::new(),
            op,
            source,
        }
    };
    let attachment = sys::ShmAttachment::attach(id, s.size, false).map_err(sys("shmat"))?;
    let file = attachment.file(true).map_err(sys("open map_files"))?;
    for extent in &s.extents {
        let Some(data) = &extent.data else { continue };
        if extent.offset.saturating_add(data.length) > s.size {
            return Err(IpcError::Unsupported {
                what: format!(
                    "shared memory segment id {id}: bytes at {:#x} beyond its size {}",
                    extent.offset, s.size
                ),
            });
        }
        let (src, at, len) = image.open_data(data)?;
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..n], at + done)
                .map_err(sys("read ipc-data.img"))?;
            file.write_all_at(&buf[..n], extent.offset + done)
                .map_err(sys("write segment"))?;
            done += n as u64;
        }
    }
    Ok(())
}

/// Whether this system lets System V IPC objects be saved and given their ids again:
/// `msgrcv(MSG_COPY)` reads a message without removing it (tried on a private queue,
/// removed at once), and `/proc/sys/kernel/{shm,sem,msg}_next_id` exist and are writable
/// by this process. For `pipecr check`.
pub fn probe() -> Result<String, String> {
    let id = sys::msgget(sys::IPC_PRIVATE, libc::IPC_CREAT | 0o600)
        .map_err(|e| format!("msgget: {e}"))?;
    let copied = sys::msg_send(id, 1, b"probe").and_then(|()| sys::msg_copy(id, 0));
    let left = sys::msg_copy(id, 0);
    let _ = sys::msg_remove(id);
    match (copied, left) {
        (Ok(Some((1, text))), Ok(Some(_))) if text == b"probe" => {}
        (Err(e), _) | (_, Err(e)) => {
            return Err(format!(
                "msgrcv(MSG_COPY) failed ({e}): message queues cannot be read without \
                 emptying them (CONFIG_CHECKPOINT_RESTORE)"
            ));
        }
        _ => return Err("msgrcv(MSG_COPY) did not copy the message".to_owned()),
    }
    for kind in [Kind::Shm, Kind::Sem, Kind::Msg] {
        let path = format!("/proc/sys/kernel/{}_next_id", kind.name());
        rustix::fs::access(path.as_str(), rustix::fs::Access::WRITE_OK)
            .map_err(|e| format!("{path}: {e}: System V IPC objects cannot be given their ids"))?;
    }
    Ok("msgrcv(MSG_COPY) and /proc/sys/kernel/{shm,sem,msg}_next_id: objects come back with their ids".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_by_column_name() {
        let text = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                    1234      65538  1600                  8192  4242  4243      2     0     0     0     0 1700000000 1700000001 1700000002                  4096                     0\n";
        let rows = parse_rows(text).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(row_id(Kind::Shm, r), 65538);
        assert_eq!(r.get("perms"), 0o1600);
        assert_eq!(r.get("perms") & SHM_DEST, SHM_DEST);
        assert_eq!(perm(Kind::Shm, r).mode, 0o600);
        assert_eq!(r.get("nattch"), 2);
        assert_eq!(r.get("cpid"), 4242);
        assert!(parse_rows("key semid\n1 x\n").is_none());
    }
}
