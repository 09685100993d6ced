//! Sparse, memory-mapped segment indexes (Kafka's layout, big-endian):
//! - `.index`: entries of (offset relative to the segment base: u32, file position: u32);
//!   the offset is the *last* offset of the batch that starts at the position.
//! - `.timeindex`: entries of (timestamp: i64, relative offset: u32); the timestamp is the
//!   largest seen in the segment so far and the offset is the last offset of the batch that
//!   carried it. Entries are only added when the timestamp grows.
//!
//! The active segment's index files are preallocated to `index_bytes_max` and trimmed to
//! their entries when the segment is rolled or the log is closed. Callers serialise access
//! (the segment keeps both indexes behind one mutex).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

/// A file of fixed-size entries, memory mapped.
#[derive(Debug)]
struct MappedEntries<const N: usize> {
    path: PathBuf,
    mmap: Option<MmapMut>,
    entries: usize,
    capacity: usize,
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

fn map(file: &File, len: usize) -> io::Result<Option<MmapMut>> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the file belongs to this log directory, which one `Log` owns; it is only
    // resized by this module after the mapping has been dropped.
    let mmap = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file)? };
    Ok(Some(mmap))
}

impl<const N: usize> MappedEntries<N> {
    /// Creates (or empties) the file and preallocates `max_bytes`.
    fn create(path: &Path, max_bytes: u32) -> io::Result<Self> {
        let file = open_rw(path, true)?;
        let capacity = max_bytes as usize / N;
        file.set_len(0)?;
        file.set_len((capacity * N) as u64)?;
        let mmap = map(&file, capacity * N)?;
        Ok(MappedEntries {
            path: path.to_path_buf(),
            mmap,
            entries: 0,
            capacity,
        })
    }

    /// Opens an existing file; every whole entry in it counts.
    fn load(path: &Path) -> io::Result<Self> {
        let file = open_rw(path, false)?;
        let len = file.metadata()?.len();
        if len % N as u64 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("size {len} is not a multiple of {N}"),
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("index too large"))?;
        let mmap = map(&file, len)?;
        Ok(MappedEntries {
            path: path.to_path_buf(),
            mmap,
            entries: len / N,
            capacity: len / N,
        })
    }

    /// Changes the file (and mapping) size to `max(entries, max_bytes / N)` entries.
    fn resize(&mut self, max_bytes: u32) -> io::Result<()> {
        let capacity = (max_bytes as usize / N).max(self.entries);
        self.remap(capacity)
    }

    /// Shrinks the file to exactly its entries.
    fn trim(&mut self) -> io::Result<()> {
        if self.capacity == self.entries {
            return Ok(());
        }
        self.remap(self.entries)
    }

    fn remap(&mut self, capacity: usize) -> io::Result<()> {
        if let Some(m) = self.mmap.take() {
            m.flush()?;
        }
        let file = open_rw(&self.path, true)?;
        file.set_len((capacity * N) as u64)?;
        self.mmap = map(&file, capacity * N)?;
        self.capacity = capacity;
        Ok(())
    }

    /// msync + fsync of the file (its size may have changed).
    fn sync(&self) -> io::Result<()> {
        if let Some(m) = &self.mmap {
            m.flush()?;
        }
        open_rw(&self.path, false)?.sync_all()
    }

    fn entry(&self, i: usize) -> [u8; N] {
        assert!(i < self.entries);
        let mut out = [0u8; N];
        if let Some(m) = &self.mmap {
            out.copy_from_slice(&m[i * N..(i + 1) * N]);
        }
        out
    }

    fn push(&mut self, bytes: [u8; N]) -> bool {
        if self.entries >= self.capacity {
            return false;
        }
        let i = self.entries;
        match &mut self.mmap {
            Some(m) => m[i * N..(i + 1) * N].copy_from_slice(&bytes),
            None => return false,
        }
        self.entries += 1;
        true
    }

    fn clear(&mut self) {
        self.entries = 0;
    }

    /// Largest `i` with `key(entry(i)) <= target`, by binary search over a sorted index.
    fn floor_by<K: Ord>(&self, target: K, key: impl Fn(&[u8; N]) -> K) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(&self.entry(mid)) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Offset index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    base_offset: i64,
    inner: MappedEntries<OFFSET_ENTRY_BYTES>,
}

impl OffsetIndex {
    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u32) -> io::Result<Self> {
        Ok(OffsetIndex {
            base_offset,
            inner: MappedEntries::create(path, max_bytes)?,
        })
    }

    pub(crate) fn load(path: &Path, base_offset: i64) -> io::Result<Self> {
        Ok(OffsetIndex {
            base_offset,
            inner: MappedEntries::load(path)?,
        })
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full_after(&self, more: usize) -> bool {
        self.inner.entries + more > self.inner.capacity
    }

    /// (absolute offset, position) of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> (i64, u32) {
        let e = self.inner.entry(i);
        (
            self.base_offset + i64::from(be_u32(&e[0..4])),
            be_u32(&e[4..8]),
        )
    }

    pub(crate) fn last_entry(&self) -> Option<(i64, u32)> {
        self.inner.entries.checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds an entry if it is past the last one and fits; returns whether it was added.
    pub(crate) fn append(&mut self, offset: i64, position: u32) -> bool {
        let rel = offset - self.base_offset;
        let Ok(rel) = u32::try_from(rel) else {
            return false;
        };
        if let Some((last, last_pos)) = self.last_entry() {
            if offset <= last || position <= last_pos {
                return false;
            }
        }
        let mut e = [0u8; OFFSET_ENTRY_BYTES];
        e[0..4].copy_from_slice(&rel.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.inner.push(e)
    }

    /// Position of a batch at or before the batch holding `target`: the entry with the
    /// largest offset `<= target` (position 0 if none).
    pub(crate) fn lookup(&self, target: i64) -> u32 {
        let Ok(rel) = u32::try_from(target - self.base_offset) else {
            return 0;
        };
        match self.inner.floor_by(rel, |e| be_u32(&e[0..4])) {
            Some(i) => self.entry(i).1,
            None => 0,
        }
    }

    /// Checks the invariants that a torn or stale index would break.
    pub(crate) fn sanity_check(&self, log_size: u64) -> Result<(), String> {
        let n = self.inner.entries;
        if n == 0 {
            return Ok(());
        }
        let (first_off, first_pos) = self.entry(0);
        let (last_off, last_pos) = self.entry(n - 1);
        if n > 1 && (last_off <= first_off || last_pos <= first_pos) {
            return Err(format!(
                "last entry ({last_off}, {last_pos}) is not past the first"
            ));
        }
        if u64::from(last_pos) >= log_size.max(1) {
            return Err(format!(
                "entry position {last_pos} is past the log size {log_size}"
            ));
        }
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear();
    }
    pub(crate) fn resize(&mut self, max_bytes: u32) -> io::Result<()> {
        self.inner.resize(max_bytes)
    }
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.inner.trim()
    }
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// Time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    inner: MappedEntries<TIME_ENTRY_BYTES>,
}

impl TimeIndex {
    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u32) -> io::Result<Self> {
        Ok(TimeIndex {
            base_offset,
            inner: MappedEntries::create(path, max_bytes)?,
        })
    }

    pub(crate) fn load(path: &Path, base_offset: i64) -> io::Result<Self> {
        Ok(TimeIndex {
            base_offset,
            inner: MappedEntries::load(path)?,
        })
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full_after(&self, more: usize) -> bool {
        self.inner.entries + more > self.inner.capacity
    }

    /// (timestamp, absolute offset) of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> (i64, i64) {
        let e = self.inner.entry(i);
        (
            be_i64(&e[0..8]),
            self.base_offset + i64::from(be_u32(&e[8..12])),
        )
    }

    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.inner.entries.checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds (timestamp, offset) if the timestamp is larger than the last entry's.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return false;
        };
        if let Some((last_ts, last_off)) = self.last_entry() {
            if timestamp <= last_ts || offset < last_off {
                return false;
            }
        }
        let mut e = [0u8; TIME_ENTRY_BYTES];
        e[0..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&rel.to_be_bytes());
        self.inner.push(e)
    }

    /// An offset from which to scan for the first batch with max timestamp `>= target`:
    /// all batches up to the returned offset's batch (exclusive) are older than `target`.
    pub(crate) fn lookup(&self, target: i64) -> i64 {
        // Entries with ts < target: everything appended up to them is older than target.
        match self
            .inner
            .floor_by(target.saturating_sub(1), |e| be_i64(&e[0..8]))
        {
            Some(i) => self.entry(i).1,
            None => self.base_offset,
        }
    }

    pub(crate) fn sanity_check(&self) -> Result<(), String> {
        let n = self.inner.entries;
        if n > 1 {
            let (first_ts, first_off) = self.entry(0);
            let (last_ts, last_off) = self.entry(n - 1);
            if last_ts <= first_ts || last_off < first_off {
                return Err(format!(
                    "last entry ({last_ts}, {last_off}) is not past the first"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear();
    }
    pub(crate) fn resize(&mut self, max_bytes: u32) -> io::Result<()> {
        self.inner.resize(max_bytes)
    }
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.inner.trim()
    }
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&path, 100, 80).unwrap();
        assert_eq!(idx.lookup(150), 0);
        assert!(idx.append(110, 1000));
        assert!(idx.append(120, 2000));
        assert!(!idx.append(120, 3000), "offsets must grow");
        assert!(idx.append(130, 3000));
        assert_eq!(idx.lookup(105), 0);
        assert_eq!(idx.lookup(110), 1000);
        assert_eq!(idx.lookup(119), 1000);
        assert_eq!(idx.lookup(120), 2000);
        assert_eq!(idx.lookup(10_000), 3000);
        assert_eq!(idx.lookup(5), 0);
        assert!(idx.is_full_after(8));
        assert!(!idx.is_full_after(7));
        idx.trim().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        drop(idx);
        let idx = OffsetIndex::load(&path, 100).unwrap();
        assert_eq!(idx.entries(), 3);
        assert_eq!(idx.last_entry(), Some((130, 3000)));
        idx.sanity_check(4000).unwrap();
        assert!(idx.sanity_check(3000).is_err());
    }

    #[test]
    fn untrimmed_index_fails_sanity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = OffsetIndex::create(&path, 0, 800).unwrap();
        assert!(idx.append(10, 100));
        assert!(idx.append(20, 200));
        drop(idx);
        let idx = OffsetIndex::load(&path, 0).unwrap();
        assert_eq!(idx.entries(), 100);
        assert!(idx.sanity_check(1000).is_err());
    }

    #[test]
    fn time_index_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let mut idx = TimeIndex::create(&path, 50, 1200).unwrap();
        assert_eq!(idx.lookup(1), 50);
        assert!(idx.maybe_append(1000, 60));
        assert!(!idx.maybe_append(1000, 70), "timestamp must grow");
        assert!(idx.maybe_append(2000, 80));
        assert_eq!(idx.lookup(500), 50);
        assert_eq!(idx.lookup(1000), 50);
        assert_eq!(idx.lookup(1001), 60);
        assert_eq!(idx.lookup(2000), 60);
        assert_eq!(idx.lookup(5000), 80);
        assert_eq!(idx.last_entry(), Some((2000, 80)));
        idx.sanity_check().unwrap();
        assert_eq!(idx.entries(), 2);
        idx.trim().unwrap();
        idx.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn bad_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert!(OffsetIndex::load(&path, 0).is_err());
        assert!(OffsetIndex::load(&dir.path().join("missing.index"), 0).is_err());
    }
}
