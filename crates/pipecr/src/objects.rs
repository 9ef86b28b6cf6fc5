//! Memory objects that open files and memory areas share: a memfd both open and mapped,
//! a deleted file still open and mapped. Their contents are one [`MemObject`](pipecr_image::proto::MemObject) in
//! `mem-objects.img`, saved once whichever descriptor or mapping meets them first, and
//! restore creates each once, for the descriptors and the mappings alike.
//!
//! This module holds only what both sides use: [`ObjectSaver`], through which a kind of
//! open file hands the memory dump ([`crate::mem::MemDumper`]) an object to save, and
//! [`ObjectFds`], the objects a restore created (by `crate::restore`, before the tree),
//! which the kinds of open file reopen and the kinds of memory area map. It sits below
//! `files` and `mem` and imports neither's kinds.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pipecr_image::ImageWriter;
use pipecr_image::proto::MemObjectKind;

use crate::mem::types::MemError;

/// Saves memory objects into the image, once each (keyed by the object's device and
/// inode).
pub trait ObjectSaver {
    /// Saves the object `file` is open on (a read-only descriptor of it), of `kind`,
    /// named `name` (its path as `/proc` shows it, " (deleted)" removed), unless it is
    /// saved already; returns its id in `mem-objects.img`. `pid` names the process, for
    /// errors.
    fn save_object(
        &mut self,
        writer: &mut ImageWriter,
        pid: i32,
        file: &File,
        kind: MemObjectKind,
        name: &str,
    ) -> Result<u64, MemError>;
}

/// The memory objects a restore created, one read-write descriptor each, by id in
/// `mem-objects.img`, with the device and inode they had when dumped.
#[derive(Debug, Default)]
pub struct ObjectFds {
    objects: BTreeMap<u64, (OwnedFd, u64, u64)>,
}

impl ObjectFds {
    /// No object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds object `id`, which had device `dev` and inode `ino`, held by `fd`.
    pub fn insert(&mut self, id: u64, dev: u64, ino: u64, fd: OwnedFd) {
        self.objects.insert(id, (fd, dev, ino));
    }

    /// The descriptor of object `id`.
    pub fn get(&self, id: u64) -> Option<BorrowedFd<'_>> {
        self.objects.get(&id).map(|(fd, _, _)| fd.as_fd())
    }

    /// The object that had device `dev` and inode `ino` at the dump.
    pub fn by_identity(&self, dev: u64, ino: u64) -> Option<BorrowedFd<'_>> {
        self.objects
            .values()
            .find(|(_, d, i)| (*d, *i) == (dev, ino))
            .map(|(fd, _, _)| fd.as_fd())
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
