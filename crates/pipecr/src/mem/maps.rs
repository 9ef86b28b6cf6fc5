//! `/proc/PID/maps` and `/proc/PID/smaps`: the areas of an address space. Parsing only;
//! deciding what to save of each area belongs to [`super`].

use std::path::PathBuf;

use crate::proc::ProcError;

/// What `/proc/PID/maps` appends to the path of a file removed while mapped.
const DELETED: &str = " (deleted)";

/// One area, as one header line of `/proc/PID/smaps` (the same line as in `maps`) and its
/// `VmFlags:` line describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// `r` in the permissions column.
    pub read: bool,
    /// `w` in the permissions column.
    pub write: bool,
    /// `x` in the permissions column.
    pub exec: bool,
    /// `s` (MAP_SHARED) rather than `p` (MAP_PRIVATE).
    pub shared: bool,
    /// Offset into the file, in bytes.
    pub offset: u64,
    /// Device of the mapped file (major, minor), (0, 0) for none.
    pub dev: (u32, u32),
    /// Inode of the mapped file, 0 for none.
    pub inode: u64,
    /// The path column, `\012` unescaped and ` (deleted)` removed; empty when absent.
    /// Special areas keep their brackets (`[heap]`, `[vdso]`, `[anon:NAME]`).
    pub path: String,
    /// The path ended in ` (deleted)`.
    pub deleted: bool,
    /// The `VmFlags:` mnemonics (smaps only; empty when parsed from maps).
    pub vm_flags: Vec<String>,
}

impl MapEntry {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for an empty area (never produced by the kernel).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// True when the kernel printed `flag` (e.g. `"gd"`) among the VmFlags.
    pub fn has_vm_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }

    /// The `/proc/PID/map_files/` entry name of this area.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }

    /// The kernel's special area name (`[vdso]`, `[heap]`, ...), if this is one.
    pub fn special(&self) -> Option<&str> {
        (self.inode == 0 && self.path.starts_with('[') && self.path.ends_with(']'))
            .then_some(self.path.as_str())
    }
}

/// Reads `/proc/PID/smaps`: every area with its VmFlags.
pub fn smaps(pid: i32) -> Result<Vec<MapEntry>, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/smaps"));
    let bytes = std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound
            || source.raw_os_error() == Some(libc::ESRCH)
        {
            ProcError::NoSuchProcess { pid }
        } else {
            ProcError::Read {
                path: path.clone(),
                source,
            }
        }
    })?;
    // A path that is not UTF-8 is kept lossily: paths in the image are strings.
    parse_maps(&String::from_utf8_lossy(&bytes)).ok_or(ProcError::Parse {
        path,
        what: "START-END PERMS OFFSET MAJ:MIN INODE [PATH] lines (and smaps Key: value lines)",
    })
}

/// Parses the text of `/proc/PID/maps` or `/proc/PID/smaps` (whose other lines are
/// `Key: value`; only `VmFlags:` is kept). `None` when a line fits neither.
pub fn parse_maps(text: &str) -> Option<Vec<MapEntry>> {
    let mut out: Vec<MapEntry> = Vec::new();
    for line in text.lines() {
        if let Some(entry) = parse_header(line) {
            out.push(entry);
            continue;
        }
        let (key, value) = line.split_once(':')?;
        if key.contains(char::is_whitespace) || out.is_empty() {
            return None;
        }
        if key == "VmFlags" {
            let last = out.last_mut()?;
            last.vm_flags = value.split_ascii_whitespace().map(str::to_owned).collect();
        }
    }
    Some(out)
}

/// Parses one line `START-END PERMS OFFSET MAJ:MIN INODE [PATH]`. The path starts after
/// the padding that follows the inode and runs to the end of the line: it may contain
/// spaces.
fn parse_header(line: &str) -> Option<MapEntry> {
    let mut rest = line;
    let mut field = || {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        let (f, r) = s.split_at(end);
        rest = r;
        Some(f).filter(|f| !f.is_empty())
    };
    let range = field()?;
    let perms = field()?.as_bytes();
    let offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    if perms.len() != 4 {
        return None;
    }
    let flag = |i: usize, yes: u8, no: u8| match perms[i] {
        c if c == yes => Some(true),
        c if c == no => Some(false),
        _ => None,
    };
    // One space separates the inode from the padding; the path itself never starts
    // with a space (it is absolute or bracketed).
    let mut path = rest.trim_start_matches(' ').replace("\\012", "\n");
    let deleted = path.ends_with(DELETED) && !path.starts_with('[');
    if deleted {
        path.truncate(path.len() - DELETED.len());
    }
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: flag(0, b'r', b'-')?,
        write: flag(1, b'w', b'-')?,
        exec: flag(2, b'x', b'-')?,
        shared: flag(3, b's', b'p')?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path,
        deleted,
        vm_flags: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_and_smaps_lines() {
        let text = "\
55d0c4a00000-55d0c4a02000 r--p 00000000 fd:01 1234                       /usr/bin/a b
55d0c4a02000-55d0c4a03000 rw-s 00001000 00:01 77                         /dev/zero (deleted)
Size:                  4 kB
VmFlags: rd wr sh mr mw me ms sd
7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac
7ffe0000-7ffe1000 r-xp 00000000 00:00 0 
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
        let m = parse_maps(text).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].path, "/usr/bin/a b");
        assert!(m[0].read && !m[0].write && !m[0].shared);
        assert_eq!(m[0].dev, (0xfd, 1));
        assert_eq!(m[1].path, "/dev/zero");
        assert!(m[1].deleted && m[1].shared);
        assert_eq!(m[1].offset, 0x1000);
        assert!(m[1].has_vm_flag("sh"));
        assert_eq!(m[2].special(), Some("[stack]"));
        assert!(m[2].has_vm_flag("gd"));
        assert_eq!(m[3].path, "");
        assert_eq!(m[4].start, 0xffffffffff600000);
        assert!(m[4].exec && !m[4].read);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_maps("hello world\n").is_none());
        assert!(parse_maps("1000-2000 rwzp 0 00:00 0\n").is_none());
    }
}
