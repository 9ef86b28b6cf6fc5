//! Pages a parent and its child shared copy-on-write when dumped come back shared, as
//! CRIU does it: through `fork`.
//!
//! The image stores such a page once; the child's page run points at the parent's store
//! indices. While the tree is being created ([`super::process`]), a process about to
//! create its children first maps each private anonymous area that one of its
//! descendants (a child, a grandchild, ...) has too (same range) and shares pages in
//! ([`prefill`]), at its saved address
//! (`MAP_FIXED_NOREPLACE`: skipped where the restorer has something mapped), and fills it
//! with its own saved pages from `pages.img`; it reports the area on a pipe to the
//! restorer. The children created next inherit the area copy-on-write (and their own
//! children after them).
//!
//! When the image of a process is loaded ([`super::image`]), an area it inherited (or
//! filled) this way is kept ([`kept_areas`]): not unmapped, not mapped again, given its
//! saved protection; only the pages that differ from those of the process that filled it
//! are written, and the pages that process had but this one has not (zero) are dropped
//! with `MADV_DONTNEED` ([`diff`]).

use std::fs::File;
use std::io::Read as _;
use std::os::fd::OwnedFd;

use pipecr_image::proto::{self, VmaFlag};
use pipecr_image::{Image, PAGE_SIZE};

use super::mm::{Piece, Source};
use super::saved::SavedProcess;
use crate::mem::maps::MapEntry;
use crate::sys::mem::OwnArea;

/// An area a process filled with its pages before creating its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefilled {
    /// The process that filled it.
    pub pid: i32,
    pub start: u64,
    pub end: u64,
}

/// An area of the process being loaded that is kept as it inherited (or filled) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kept {
    pub start: u64,
    pub end: u64,
    /// Index in the tree of the process whose pages it holds.
    pub filler: usize,
}

/// Private anonymous areas that can be filled ahead (not a stack that grows down).
pub(super) fn prefillable(vma: &proto::Vma) -> bool {
    crate::mem::saved_kind(vma.kind).is_some_and(|(kind, _)| kind.inherited_copy_on_write(vma))
        && vma.flags & (VmaFlag::Growsdown as u32 | VmaFlag::Shared as u32) == 0
        // Guard pages are installed per process, on an area it maps itself.
        && vma.guard_regions.is_empty()
        && vma.start < vma.end
        && vma.start % PAGE_SIZE == 0
        && vma.end % PAGE_SIZE == 0
}

/// The stored pages of `mm` in `[start, end)`, as sorted `(start, end, offset in
/// pages.img of start)`; zero runs (zeros, as absent pages of anonymous memory) and runs
/// whose numbers overflow are left out.
fn segs(mm: &proto::Mm, start: u64, end: u64) -> Vec<(u64, u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = mm
        .pages
        .iter()
        .filter(|r| !r.zero)
        .filter_map(|r| {
            let len = r.nr_pages.checked_mul(PAGE_SIZE)?;
            let rend = r.start.checked_add(len)?;
            let off = r.store_index.checked_mul(PAGE_SIZE)?;
            off.checked_add(len)?;
            let (s, e) = (r.start.max(start), rend.min(end));
            (s < e).then(|| (s, e, off + (s - r.start)))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Whether `a` and `b` (sorted segments) hold the same stored page at some address.
fn share_any(a: &[(u64, u64, u64)], b: &[(u64, u64, u64)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        if x.0 < y.1 && y.0 < x.1 && x.2.wrapping_sub(x.0) == y.2.wrapping_sub(y.0) {
            return true;
        }
        if x.1 <= y.1 { i += 1 } else { j += 1 }
    }
    false
}

/// Runs in the new process `tree[idx]` before it creates its children (see the module
/// documentation): maps and fills the areas it shares pages in with one of them, and
/// reports each on `report` as `PID START END\n`. An area whose report cannot be written
/// is unmapped again (the restorer would not know of it).
pub(super) fn prefill(
    image: &Image,
    tree: &[SavedProcess],
    idx: usize,
    report: &OwnedFd,
) -> Result<(), String> {
    let saved = &tree[idx];
    let pid = saved.pid();
    // Its descendants, not only its children: a grandchild may share pages with it that
    // the child in between rewrote, and inherits whatever the child inherited when the
    // child creates it (tree order puts every parent before its children).
    let mut below = vec![pid];
    let mut descendants: Vec<&SavedProcess> = Vec::new();
    for c in tree.iter().skip(idx + 1) {
        if below.contains(&c.process.ppid) {
            below.push(c.pid());
            descendants.push(c);
        }
    }
    if descendants.is_empty() {
        return Ok(());
    }
    let mut pages: Option<File> = None;
    for vma in saved.mm.vmas.iter().filter(|v| prefillable(v)) {
        let mine = segs(&saved.mm, vma.start, vma.end);
        if mine.is_empty() {
            continue;
        }
        let shared = descendants.iter().any(|c| {
            c.mm.vmas
                .iter()
                .any(|v| v.start == vma.start && v.end == vma.end && prefillable(v))
                && share_any(&mine, &segs(&c.mm, vma.start, vma.end))
        });
        if !shared {
            continue;
        }
        let Some(mut area) = OwnArea::map_fixed_noreplace(vma.start, vma.end - vma.start)
            .map_err(|e| format!("mmap {:#x}-{:#x}: {e}", vma.start, vma.end))?
        else {
            continue;
        };
        let file = match &pages {
            Some(f) => f,
            None => pages.insert(
                File::open(image.dir().join(pipecr_image::PAGES))
                    .map_err(|e| format!("open pages.img: {e}"))?,
            ),
        };
        for &(s, e, off) in &mine {
            area.fill_from(s - vma.start, e - s, file, off)
                .map_err(|e| format!("read pages.img for {s:#x}: {e}"))?;
        }
        let line = format!("{pid} {} {}\n", vma.start, vma.end);
        if rustix::io::write(report, line.as_bytes()) == Ok(line.len()) {
            area.keep();
        }
    }
    Ok(())
}

/// Everything reported on `report` (non-blocking: every writer has stopped by now).
pub(super) fn read_reports(report: OwnedFd) -> Vec<Prefilled> {
    // The bytes read stay in `bytes` when the read ends with EAGAIN.
    let mut bytes = Vec::new();
    let _ = File::from(report).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pid = w.next()?.parse().ok()?;
            let start = w.next()?.parse().ok()?;
            let end = w.next()?.parse().ok()?;
            Some(Prefilled { pid, start, end })
        })
        .collect()
}

/// The areas of `tree[idx]` to keep as inherited: each prefillable saved area that the
/// process itself or its nearest ancestor that reported one there filled, lies wholly
/// in `current` (its maps now), and holds whole page runs only.
pub(super) fn kept_areas(
    tree: &[SavedProcess],
    idx: usize,
    prefilled: &[Prefilled],
    current: &[MapEntry],
) -> Vec<Kept> {
    if prefilled.is_empty() {
        return Vec::new();
    }
    let saved = &tree[idx];
    // Itself, then its parent, and so on up.
    let mut chain = vec![idx];
    let mut at = idx;
    while let Some(p) = tree[..at]
        .iter()
        .position(|q| q.pid() == tree[at].process.ppid)
    {
        chain.push(p);
        at = p;
    }
    let mut kept = Vec::new();
    for vma in saved.mm.vmas.iter().filter(|v| prefillable(v)) {
        let Some(&filler) = chain.iter().find(|&&i| {
            prefilled
                .iter()
                .any(|r| r.pid == tree[i].pid() && r.start == vma.start && r.end == vma.end)
        }) else {
            continue;
        };
        let straddles = saved.mm.pages.iter().any(|r| {
            let end = r.start.saturating_add(r.nr_pages.saturating_mul(PAGE_SIZE));
            r.start < vma.end && vma.start < end && (r.start < vma.start || end > vma.end)
        });
        if straddles || !covered(current, vma.start, vma.end) {
            continue;
        }
        kept.push(Kept {
            start: vma.start,
            end: vma.end,
            filler,
        });
    }
    kept
}

/// Whether `[start, end)` is wholly mapped in `maps`.
fn covered(maps: &[MapEntry], start: u64, end: u64) -> bool {
    let mut sorted: Vec<(u64, u64)> = maps.iter().map(|m| (m.start, m.end)).collect();
    sorted.sort_unstable();
    let mut at = start;
    for (s, e) in sorted {
        if s <= at && e > at {
            at = e;
        }
        if at >= end {
            return true;
        }
    }
    false
}

/// What to do in a kept area `[start, end)` of process `mine` holding the pages of
/// `filler`: the pieces to write (where this process's page differs) and the ranges to
/// drop (pages the filler had that this process has not: zeros).
pub(super) fn diff(
    mine: &proto::Mm,
    filler: &proto::Mm,
    start: u64,
    end: u64,
) -> (Vec<Piece>, Vec<(u64, u64)>) {
    let (x, f) = (segs(mine, start, end), segs(filler, start, end));
    let mut bounds: Vec<u64> = x.iter().chain(&f).flat_map(|&(s, e, _)| [s, e]).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let (mut writes, mut drops): (Vec<Piece>, Vec<(u64, u64)>) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        while i < x.len() && x[i].1 <= a {
            i += 1;
        }
        while j < f.len() && f[j].1 <= a {
            j += 1;
        }
        let at = |s: &[(u64, u64, u64)], k: usize| {
            s.get(k)
                .filter(|seg| seg.0 <= a && a < seg.1)
                .map(|seg| seg.2 + (a - seg.0))
        };
        match (at(&x, i), at(&f, j)) {
            (Some(xo), fo) if fo != Some(xo) => match writes.last_mut() {
                Some(p) if p.addr + p.len == a && p.src == Source::Store(xo - p.len) => {
                    p.len += b - a
                }
                _ => writes.push(Piece {
                    addr: a,
                    len: b - a,
                    src: Source::Store(xo),
                }),
            },
            (None, Some(_)) => match drops.last_mut() {
                Some(d) if d.1 == a => d.1 = b,
                _ => drops.push((a, b)),
            },
            _ => {}
        }
    }
    (writes, drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(runs: &[(u64, u64, u64)]) -> proto::Mm {
        proto::Mm {
            pages: runs
                .iter()
                .map(|&(start, nr_pages, store_index)| proto::PageRun {
                    start,
                    nr_pages,
                    store_index,
                    zero: false,
                })
                .collect(),
            ..Default::default()
        }
    }

    const P: u64 = PAGE_SIZE;

    #[test]
    fn only_differing_pages_are_written_and_missing_ones_dropped() {
        let base = 0x10000;
        // Filler: pages 0..4 at store 0..4. Mine: 0..2 shared, page 2 its own (store 9),
        // page 3 absent, page 5 its own (store 10).
        let filler = mm(&[(base, 4, 0)]);
        let mine = mm(&[(base, 2, 0), (base + 2 * P, 1, 9), (base + 5 * P, 1, 10)]);
        let (writes, drops) = diff(&mine, &filler, base, base + 8 * P);
        assert_eq!(
            writes,
            vec![
                Piece {
                    addr: base + 2 * P,
                    len: P,
                    src: Source::Store(9 * P)
                },
                Piece {
                    addr: base + 5 * P,
                    len: P,
                    src: Source::Store(10 * P)
                },
            ]
        );
        assert_eq!(drops, vec![(base + 3 * P, base + 4 * P)]);
        let same = diff(&filler, &filler, base, base + 8 * P);
        assert_eq!(same, (Vec::new(), Vec::new()));
    }

    #[test]
    fn sharing_needs_the_same_page_at_the_same_address() {
        let a = segs(&mm(&[(0x10000, 4, 0)]), 0, u64::MAX);
        let b = segs(&mm(&[(0x10000 + P, 1, 1)]), 0, u64::MAX);
        let c = segs(&mm(&[(0x10000 + P, 1, 7)]), 0, u64::MAX);
        assert!(share_any(&a, &b));
        assert!(!share_any(&a, &c));
    }
}
