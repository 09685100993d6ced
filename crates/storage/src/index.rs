//! Sparse segment indexes (Kafka's layout, big-endian):
//! - `.index`: entries of (offset relative to the segment base: u32, file position: u32);
//!   the offset is the *last* offset of the batch that starts at the position.
//! - `.timeindex`: entries of (timestamp: i64, relative offset: u32); the timestamp is the
//!   largest seen in the segment so far and the offset is the last offset of the batch that
//!   carried it. Entries are only added when the timestamp grows.
//!
//! Where the entries live:
//! - the active segment keeps them in memory (a `Vec`, no mapping, no preallocated file);
//!   they are written to the file incrementally (`persist_below`, at recovery-point
//!   checkpoints) and completely when the segment is sealed (`write_exact`);
//! - a sealed segment's files are exact and immutable; they are memory-mapped read-only on
//!   first use and unmapped again when the handle cache (`handles.rs`) evicts them.
//!
//! Callers serialise access (the segment keeps both indexes behind one mutex).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::fs::FileSystem;

use memmap2::Mmap;

pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug)]
enum Store {
    /// Entries in memory (active segment, or a sealed one rebuilt after a bad file).
    Memory(Vec<u8>),
    /// A sealed segment's file, mapped read-only.
    Mapped(Mmap),
    /// A sealed segment's file, not mapped right now (`entries` is still known).
    Unloaded,
}

/// A file of fixed-size entries.
#[derive(Debug)]
struct Entries<const N: usize> {
    path: PathBuf,
    store: Store,
    entries: usize,
    /// Most entries while in memory (`segment.index.bytes / N`): the segment rolls when full.
    capacity: usize,
    /// Entries `[0, persisted)` are written to the file.
    persisted: usize,
}

fn open_rw(fs: &dyn FileSystem, path: &Path, create: bool) -> io::Result<File> {
    fs.open(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false),
    )
}

impl<const N: usize> Entries<N> {
    /// An empty in-memory index. Its file is created with the first entries written
    /// (`persist`) or at `write_exact` (seal, close), not now: a new partition costs one
    /// file (its `.log`) instead of three. A leftover file of the same name (a segment
    /// started again at the same base after a truncation) is emptied now.
    fn create(fs: &dyn FileSystem, path: &Path, max_bytes: u32) -> io::Result<Self> {
        match fs.open(path, OpenOptions::new().write(true)) {
            Ok(file) => fs.set_len(path, &file, 0)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self::memory(path, Vec::new(), max_bytes, 0))
    }

    fn memory(path: &Path, bytes: Vec<u8>, max_bytes: u32, persisted: usize) -> Self {
        let entries = bytes.len() / N;
        Entries {
            path: path.to_path_buf(),
            store: Store::Memory(bytes),
            entries,
            capacity: (max_bytes as usize / N).max(entries),
            persisted,
        }
    }

    /// A sealed, exact index file of `len` bytes, not mapped yet.
    fn sealed(path: &Path, len: u64) -> io::Result<Self> {
        if !len.is_multiple_of(N as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("size {len} is not a multiple of {N}"),
            ));
        }
        let entries = usize::try_from(len / N as u64)
            .map_err(|_| io::Error::other("index file too large"))?;
        Ok(Entries {
            path: path.to_path_buf(),
            store: Store::Unloaded,
            entries,
            capacity: entries,
            persisted: entries,
        })
    }

    fn bytes(&self) -> Option<&[u8]> {
        match &self.store {
            Store::Memory(v) => Some(v),
            Store::Mapped(m) => Some(&m[..self.entries * N]),
            Store::Unloaded => None,
        }
    }

    fn is_loaded(&self) -> bool {
        !matches!(self.store, Store::Unloaded)
    }

    /// Maps an unloaded file; returns whether a new mapping was made.
    fn ensure_loaded(&mut self) -> io::Result<bool> {
        if self.is_loaded() {
            return Ok(false);
        }
        if self.entries == 0 {
            self.store = Store::Memory(Vec::new());
            return Ok(false);
        }
        let file = File::open(&self.path)?;
        let len = file.metadata()?.len();
        if len < (self.entries * N) as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shrank to {len} bytes"),
            ));
        }
        // SAFETY: sealed index files are never written again (only deleted, which keeps
        // the mapping valid); the mapping covers no more than the file's length.
        let mmap = unsafe {
            memmap2::MmapOptions::new()
                .len(self.entries * N)
                .map(&file)?
        };
        self.store = Store::Mapped(mmap);
        Ok(true)
    }

    /// Drops a mapping (the handle cache evicted it). In-memory entries stay.
    fn unmap(&mut self) -> bool {
        if matches!(self.store, Store::Mapped(_)) {
            self.store = Store::Unloaded;
            return true;
        }
        false
    }

    fn entry(&self, i: usize) -> Option<[u8; N]> {
        let b = self.bytes()?.get(i * N..(i + 1) * N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Some(out)
    }

    fn push(&mut self, bytes: [u8; N]) -> bool {
        if self.entries >= self.capacity {
            return false;
        }
        match &mut self.store {
            Store::Memory(v) => v.extend_from_slice(&bytes),
            _ => return false,
        }
        self.entries += 1;
        true
    }

    fn clear(&mut self) {
        self.store = Store::Memory(Vec::new());
        self.entries = 0;
        self.persisted = 0;
    }

    /// Writes in-memory entries `[persisted, upto)` to the file; returns the file to
    /// fdatasync if anything was written.
    fn persist(&mut self, fs: &dyn FileSystem, upto: usize) -> io::Result<Option<File>> {
        let upto = upto.min(self.entries);
        if upto <= self.persisted {
            return Ok(None);
        }
        let Store::Memory(v) = &self.store else {
            return Ok(None);
        };
        let file = open_rw(fs, &self.path, true)?;
        fs.write_at(
            &self.path,
            &file,
            &v[self.persisted * N..upto * N],
            (self.persisted * N) as u64,
        )?;
        self.persisted = upto;
        Ok(Some(file))
    }

    /// Makes the file hold exactly the entries (no fsync).
    fn write_exact(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        if let Store::Memory(_) = self.store {
            self.persist(fs, self.entries)?;
            let file = open_rw(fs, &self.path, true)?;
            fs.set_len(&self.path, &file, (self.entries * N) as u64)?;
        }
        Ok(())
    }

    /// Sealed: drop the in-memory copy (the exact file is mapped on next use).
    fn make_sealed(&mut self) {
        if matches!(self.store, Store::Memory(_)) && self.persisted == self.entries {
            self.store = Store::Unloaded;
            self.capacity = self.entries;
        }
    }

    fn sync(&self, fs: &dyn FileSystem) -> io::Result<()> {
        let file = open_rw(fs, &self.path, false)?;
        fs.sync_all(&self.path, &file)
    }

    /// Largest `i` with `key(entry(i)) <= target`, by binary search over a sorted index.
    fn floor_by<K: Ord>(&self, target: K, key: impl Fn(&[u8]) -> K) -> Option<usize> {
        let b = self.bytes()?;
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(&b[mid * N..(mid + 1) * N]) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

/// Reads entries `i` of a file without mapping it.
fn read_entry<const N: usize>(file: &File, i: u64) -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    file.read_exact_at(&mut out, i * N as u64)?;
    Ok(out)
}

/// The whole file if present (missing: empty).
fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
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
    inner: Entries<OFFSET_ENTRY_BYTES>,
}

impl OffsetIndex {
    /// A new, empty index (in memory; the file is created empty).
    /// An empty in-memory index that touches no file (a log that is not there:
    /// `Log::absent`).
    pub(crate) fn empty(path: &Path, base_offset: i64) -> Self {
        OffsetIndex {
            base_offset,
            inner: Entries::memory(path, Vec::new(), 0, 0),
        }
    }

    pub(crate) fn create(
        fs: &dyn FileSystem,
        path: &Path,
        base_offset: i64,
        max_bytes: u32,
    ) -> io::Result<Self> {
        Ok(OffsetIndex {
            base_offset,
            inner: Entries::create(fs, path, max_bytes)?,
        })
    }

    /// A sealed segment's index: checks size and first/last entries against the log size
    /// without mapping the file.
    pub(crate) fn open_sealed(path: &Path, base_offset: i64, log_size: u64) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let idx = OffsetIndex {
            base_offset,
            inner: Entries::sealed(path, len)?,
        };
        let n = idx.inner.entries as u64;
        if n > 0 {
            let first = idx.decode(&read_entry::<OFFSET_ENTRY_BYTES>(&file, 0)?);
            let last = idx.decode(&read_entry::<OFFSET_ENTRY_BYTES>(&file, n - 1)?);
            check_offset_entries(first, last, n, log_size)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(idx)
    }

    /// Loads the longest valid prefix of the file's entries whose offsets are below
    /// `below` and positions below `log_size` (strictly increasing), into memory. Returns
    /// the index and whether every entry of the file was kept.
    pub(crate) fn load_prefix(
        path: &Path,
        base_offset: i64,
        max_bytes: u32,
        below: i64,
        log_size: u64,
    ) -> io::Result<(Self, bool)> {
        let bytes = read_all(path)?;
        let whole = bytes.len() / OFFSET_ENTRY_BYTES;
        let mut kept = 0;
        let mut prev: Option<(i64, u32)> = None;
        for e in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let (off, pos) = (base_offset + i64::from(be_u32(&e[0..4])), be_u32(&e[4..8]));
            let grows = prev.is_none_or(|(po, pp)| off > po && pos > pp);
            if !grows || off >= below || u64::from(pos) >= log_size {
                break;
            }
            prev = Some((off, pos));
            kept += 1;
        }
        let all = kept == whole && bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES);
        let mut v = bytes;
        v.truncate(kept * OFFSET_ENTRY_BYTES);
        Ok((
            OffsetIndex {
                base_offset,
                inner: Entries::memory(path, v, max_bytes, kept),
            },
            all,
        ))
    }

    fn decode(&self, e: &[u8]) -> (i64, u32) {
        (
            self.base_offset + i64::from(be_u32(&e[0..4])),
            be_u32(&e[4..8]),
        )
    }

    pub(crate) fn entries(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full_after(&self, more: usize) -> bool {
        self.inner.entries + more > self.inner.capacity
    }

    #[cfg(test)]
    pub(crate) fn is_loaded(&self) -> bool {
        self.inner.is_loaded()
    }

    pub(crate) fn ensure_loaded(&mut self) -> io::Result<bool> {
        self.inner.ensure_loaded()
    }

    pub(crate) fn unmap(&mut self) -> bool {
        self.inner.unmap()
    }

    /// (absolute offset, position) of entry `i` (None if unloaded or out of range).
    pub(crate) fn entry(&self, i: usize) -> Option<(i64, u32)> {
        self.inner.entry(i).map(|e| self.decode(&e))
    }

    pub(crate) fn last_entry(&self) -> Option<(i64, u32)> {
        self.inner
            .entries
            .checked_sub(1)
            .and_then(|i| self.entry(i))
    }

    /// Adds an entry if it is past the last one and fits; returns whether it was added.
    pub(crate) fn append(&mut self, offset: i64, position: u32) -> bool {
        let rel = offset - self.base_offset;
        let Ok(rel) = u32::try_from(rel) else {
            return false;
        };
        if let Some((last, last_pos)) = self.last_entry() {
            // Entries come from batches in log order (`lookup`'s binary search relies on it).
            assert!(
                offset > last && position > last_pos,
                "{}: index entry ({offset}, {position}) after ({last}, {last_pos})",
                self.inner.path.display()
            );
        }
        let mut e = [0u8; OFFSET_ENTRY_BYTES];
        e[0..4].copy_from_slice(&rel.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.inner.push(e)
    }

    /// Position of a batch at or before the batch holding `target`: the entry with the
    /// largest offset `<= target` (position 0 if none or not loaded).
    pub(crate) fn lookup(&self, target: i64) -> u32 {
        let Ok(rel) = u32::try_from(target - self.base_offset) else {
            return 0;
        };
        match self.inner.floor_by(rel, |e| be_u32(&e[0..4])) {
            Some(i) => self.entry(i).map_or(0, |e| e.1),
            None => 0,
        }
    }

    /// Writes the in-memory entries with offsets below `below` to the file; returns the
    /// file to fdatasync if anything was written.
    pub(crate) fn persist_below(
        &mut self,
        fs: &dyn FileSystem,
        below: i64,
    ) -> io::Result<Option<File>> {
        let n = match u32::try_from(below - 1 - self.base_offset) {
            Ok(rel) => self
                .inner
                .floor_by(rel, |e| be_u32(&e[0..4]))
                .map_or(0, |i| i + 1),
            Err(_) if below > self.base_offset => self.inner.entries,
            Err(_) => 0,
        };
        self.inner.persist(fs, n)
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear();
    }
    pub(crate) fn write_exact(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        self.inner.write_exact(fs)
    }
    pub(crate) fn make_sealed(&mut self) {
        self.inner.make_sealed()
    }
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }
    pub(crate) fn sync(&self, fs: &dyn FileSystem) -> io::Result<()> {
        self.inner.sync(fs)
    }
}

fn check_offset_entries(
    (first_off, first_pos): (i64, u32),
    (last_off, last_pos): (i64, u32),
    n: u64,
    log_size: u64,
) -> Result<(), String> {
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

/// Time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    inner: Entries<TIME_ENTRY_BYTES>,
}

impl TimeIndex {
    /// An empty in-memory index that touches no file (a log that is not there:
    /// `Log::absent`).
    pub(crate) fn empty(path: &Path, base_offset: i64) -> Self {
        TimeIndex {
            base_offset,
            inner: Entries::memory(path, Vec::new(), 0, 0),
        }
    }

    pub(crate) fn create(
        fs: &dyn FileSystem,
        path: &Path,
        base_offset: i64,
        max_bytes: u32,
    ) -> io::Result<Self> {
        Ok(TimeIndex {
            base_offset,
            inner: Entries::create(fs, path, max_bytes)?,
        })
    }

    /// A sealed segment's time index: checks size and first/last entries; returns the
    /// last entry too (the segment's largest timestamp and its offset).
    pub(crate) fn open_sealed(
        path: &Path,
        base_offset: i64,
    ) -> io::Result<(Self, Option<(i64, i64)>)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let idx = TimeIndex {
            base_offset,
            inner: Entries::sealed(path, len)?,
        };
        let n = idx.inner.entries as u64;
        let mut last = None;
        if n > 0 {
            let (first_ts, first_off) = idx.decode(&read_entry::<TIME_ENTRY_BYTES>(&file, 0)?);
            let (last_ts, last_off) = idx.decode(&read_entry::<TIME_ENTRY_BYTES>(&file, n - 1)?);
            if n > 1 && (last_ts <= first_ts || last_off < first_off) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("last entry ({last_ts}, {last_off}) is not past the first"),
                ));
            }
            last = Some((last_ts, last_off));
        }
        Ok((idx, last))
    }

    /// Loads the longest prefix of increasing entries with offsets `<= max_offset` into
    /// memory; returns it and whether every entry of the file was kept.
    pub(crate) fn load_prefix(
        path: &Path,
        base_offset: i64,
        max_bytes: u32,
        max_offset: i64,
    ) -> io::Result<(Self, bool)> {
        let bytes = read_all(path)?;
        let whole = bytes.len() / TIME_ENTRY_BYTES;
        let mut kept = 0;
        let mut prev: Option<(i64, i64)> = None;
        for e in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let (ts, off) = (be_i64(&e[0..8]), base_offset + i64::from(be_u32(&e[8..12])));
            let grows = prev.is_none_or(|(pt, po)| ts > pt && off >= po);
            if !grows || off > max_offset || ts < 0 {
                break;
            }
            prev = Some((ts, off));
            kept += 1;
        }
        let all = kept == whole && bytes.len().is_multiple_of(TIME_ENTRY_BYTES);
        let mut v = bytes;
        v.truncate(kept * TIME_ENTRY_BYTES);
        Ok((
            TimeIndex {
                base_offset,
                inner: Entries::memory(path, v, max_bytes, kept),
            },
            all,
        ))
    }

    fn decode(&self, e: &[u8]) -> (i64, i64) {
        (
            be_i64(&e[0..8]),
            self.base_offset + i64::from(be_u32(&e[8..12])),
        )
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full_after(&self, more: usize) -> bool {
        self.inner.entries + more > self.inner.capacity
    }

    pub(crate) fn ensure_loaded(&mut self) -> io::Result<bool> {
        self.inner.ensure_loaded()
    }

    pub(crate) fn unmap(&mut self) -> bool {
        self.inner.unmap()
    }

    /// (timestamp, absolute offset) of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> Option<(i64, i64)> {
        self.inner.entry(i).map(|e| self.decode(&e))
    }

    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.inner
            .entries
            .checked_sub(1)
            .and_then(|i| self.entry(i))
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
            Some(i) => self.entry(i).map_or(self.base_offset, |e| e.1),
            None => self.base_offset,
        }
    }

    /// Writes the in-memory entries with offsets below `below` to the file.
    pub(crate) fn persist_below(
        &mut self,
        fs: &dyn FileSystem,
        below: i64,
    ) -> io::Result<Option<File>> {
        let mut n = 0;
        while n < self.inner.entries && self.entry(n).is_some_and(|(_, off)| off < below) {
            n += 1;
        }
        self.inner.persist(fs, n)
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear();
    }
    pub(crate) fn write_exact(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        self.inner.write_exact(fs)
    }
    pub(crate) fn make_sealed(&mut self) {
        self.inner.make_sealed()
    }
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }
    pub(crate) fn sync(&self, fs: &dyn FileSystem) -> io::Result<()> {
        self.inner.sync(fs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFileSystem;

    #[test]
    #[should_panic(expected = "index entry (120, 3000) after (120, 2000)")]
    fn offset_index_entries_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&OsFileSystem, &path, 100, 80).unwrap();
        assert!(idx.append(120, 2000));
        idx.append(120, 3000);
    }

    #[test]
    fn offset_index_lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&OsFileSystem, &path, 100, 80).unwrap();
        assert_eq!(idx.lookup(150), 0);
        assert!(idx.append(110, 1000));
        assert!(idx.append(120, 2000));
        // Offsets and positions must grow: anything else is a bug (asserted, see below).
        assert!(idx.append(130, 3000));
        assert_eq!(idx.lookup(105), 0);
        assert_eq!(idx.lookup(110), 1000);
        assert_eq!(idx.lookup(119), 1000);
        assert_eq!(idx.lookup(120), 2000);
        assert_eq!(idx.lookup(10_000), 3000);
        assert_eq!(idx.lookup(5), 0);
        assert!(idx.is_full_after(8));
        assert!(!idx.is_full_after(7));
        // Incremental persistence writes only entries below the bound.
        assert!(idx.persist_below(&OsFileSystem, 121).unwrap().is_some());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        assert!(idx.persist_below(&OsFileSystem, 121).unwrap().is_none());
        idx.write_exact(&OsFileSystem).unwrap();
        idx.make_sealed();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        assert!(!idx.is_loaded());
        assert_eq!(idx.lookup(125), 0, "unloaded: safe fallback");
        assert!(idx.ensure_loaded().unwrap());
        assert_eq!(idx.lookup(125), 2000);
        drop(idx);
        let idx = OffsetIndex::open_sealed(&path, 100, 4000).unwrap();
        assert_eq!(idx.entries(), 3);
        assert!(OffsetIndex::open_sealed(&path, 100, 3000).is_err());
        let (mut idx, all) = OffsetIndex::load_prefix(&path, 100, 80, 125, 4000).unwrap();
        assert!(!all);
        assert_eq!(idx.last_entry(), Some((120, 2000)));
        assert!(idx.append(140, 5000));
    }

    #[test]
    fn garbage_after_valid_entries_is_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = OffsetIndex::create(&OsFileSystem, &path, 0, 800).unwrap();
        assert!(idx.append(10, 100));
        assert!(idx.append(20, 200));
        idx.write_exact(&OsFileSystem).unwrap();
        drop(idx);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 13]);
        std::fs::write(&path, bytes).unwrap();
        let (idx, all) = OffsetIndex::load_prefix(&path, 0, 800, i64::MAX, 1000).unwrap();
        assert!(!all);
        assert_eq!(idx.entries(), 2);
        assert!(OffsetIndex::open_sealed(&path, 0, 1000).is_err());
    }

    #[test]
    fn time_index_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let mut idx = TimeIndex::create(&OsFileSystem, &path, 50, 1200).unwrap();
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
        assert_eq!(idx.entries(), 2);
        idx.write_exact(&OsFileSystem).unwrap();
        idx.sync(&OsFileSystem).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        let (_, last) = TimeIndex::open_sealed(&path, 50).unwrap();
        assert_eq!(last, Some((2000, 80)));
        let (idx, all) = TimeIndex::load_prefix(&path, 50, 1200, 70).unwrap();
        assert!(!all);
        assert_eq!(idx.last_entry(), Some((1000, 60)));
    }

    #[test]
    fn bad_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert!(OffsetIndex::open_sealed(&path, 0, 100).is_err());
        assert!(OffsetIndex::open_sealed(&dir.path().join("missing.index"), 0, 100).is_err());
    }
}
