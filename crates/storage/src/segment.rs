//! One segment: a `.log` file of whole batches plus its two sparse indexes.
//!
//! Writers (the log's append path, under the log's append lock) pwrite at the end and then
//! publish the new size with `size.store(Release)`; readers only read below a size they
//! loaded with `Acquire`, so they never see a partial batch and never take the append lock.
//! The indexes sit behind their own short mutex.
//!
//! The active segment keeps its `.log` file open and its indexes in memory. A sealed
//! segment opens its file and maps its index files on first use and lets its `Storage`'s
//! handle cache (`handles.rs`) close them when they have not been used for a while.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fjord_model::limits::{
    DIRECT_IO_BLOCK_BYTES, MESSAGE_BYTES_MAX_CEILING, SEGMENT_SCAN_CHUNK_BYTES,
    SEGMENT_SCAN_HEADER_ONLY_AFTER_BYTES,
};
use fjord_model::TimestampType;
use fjord_records::{validate_batch, validate_stored_batch, BatchHeader, BATCH_HEADER_BYTES};
use parking_lot::Mutex;

use crate::cache::SegmentCache;
use crate::direct::DirectWriter;
use crate::error::StorageError;
use crate::fs::FileSystem;
use crate::handles::Kind;
use crate::index::{OffsetIndex, TimeIndex};
use crate::storage::Shared;

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Cuts the `.log` file of the segment at `base` to `position` bytes (if longer) and
/// fdatasyncs it (all of it: what stays may not have been synced yet).
pub(crate) fn truncate_log_file(
    fs: &dyn FileSystem,
    dir: &Path,
    base: i64,
    position: u64,
) -> io::Result<()> {
    let path = dir.join(file_name(base, LOG_SUFFIX));
    let f = fs.open(&path, OpenOptions::new().write(true))?;
    if f.metadata()?.len() > position {
        fs.set_len(&path, &f, position)?;
    }
    fs.sync_data(&path, &f)
}

/// `00000000000000000123.log` etc.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Parses a segment file name into (base offset, suffix).
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// Offset to report for a batch's max timestamp: the first record that can carry it.
fn offset_of_max_timestamp(h: &BatchHeader) -> i64 {
    if h.timestamp_type() == TimestampType::LogAppendTime || h.base_timestamp == h.max_timestamp {
        h.base_offset
    } else {
        h.last_offset()
    }
}

#[derive(Debug)]
pub(crate) struct Indexes {
    pub(crate) offset: OffsetIndex,
    pub(crate) time: TimeIndex,
    /// Largest batch max_timestamp in the segment (-1 if none).
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    pub(crate) bytes_since_entry: u64,
}

impl Indexes {
    pub(crate) fn new(offset: OffsetIndex, time: TimeIndex) -> Indexes {
        let (max_timestamp, offset_of_max_timestamp) = time.last_entry().unwrap_or((-1, -1));
        Indexes {
            offset,
            time,
            max_timestamp,
            offset_of_max_timestamp,
            bytes_since_entry: 0,
        }
    }

    /// Accounts for a batch written at `position`; adds index entries every `interval` bytes.
    pub(crate) fn on_batch(&mut self, h: &BatchHeader, position: u64, interval: u32) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = offset_of_max_timestamp(h);
        }
        if self.bytes_since_entry > u64::from(interval) {
            if let Ok(pos) = u32::try_from(position) {
                self.offset.append(h.last_offset(), pos);
            }
            if self.max_timestamp >= 0 {
                self.time
                    .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += h.total_bytes() as u64;
    }

    /// Writes the index files exactly (with a final time-index entry), no fsync.
    pub(crate) fn write_exact(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        if self.max_timestamp >= 0 {
            self.time
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.offset.write_exact(fs)?;
        self.time.write_exact(fs)
    }

    fn reset_stats(&mut self) {
        self.offset.clear();
        self.time.clear();
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_entry = 0;
    }
}

#[derive(Debug)]
pub(crate) struct Segment {
    /// Unique id within its `Storage` (handle cache key).
    pub(crate) id: u64,
    /// The storage it belongs to (handle cache).
    ctx: Arc<Shared>,
    pub(crate) base_offset: i64,
    pub(crate) dir: PathBuf,
    /// `dir` joined with the `.log` file's name (the write path uses it with the seam).
    log_path: PathBuf,
    /// The open `.log` file; always open while active, opened on demand once sealed.
    file: Mutex<Option<Arc<File>>>,
    /// No longer the active segment: its files are immutable and its handles cached.
    sealed: AtomicBool,
    /// Bytes of whole batches in the file (published by the writer).
    pub(crate) size: AtomicU64,
    /// Bytes known to be on stable storage.
    pub(crate) flushed_size: AtomicU64,
    /// Sealed (no longer active) and its index files not yet fsynced.
    pub(crate) index_dirty: AtomicBool,
    /// Removed from the log (retention, DeleteRecords); its files are gone or going.
    pub(crate) deleted: AtomicBool,
    /// Being replaced by a cleaned segment (compaction): its open file is kept (readers of
    /// an older view keep reading the old data) and nothing is opened or mapped by path
    /// any more (the paths may name the new segment's files).
    frozen: AtomicBool,
    /// Batches below this offset may leave offset gaps and hold fewer records than their
    /// offset range (a compacted log's, below the recovery point): recovery scans accept
    /// them. `i64::MIN` while unset.
    pub(crate) gaps_below: std::sync::atomic::AtomicI64,
    pub(crate) indexes: Mutex<Indexes>,
    /// How appends reach the file (see `direct.rs`); decided at the first append.
    direct: Mutex<WritePath>,
    /// Its most recent appends' bytes, when written directly (`cache.rs`).
    pub(crate) cache: Arc<SegmentCache>,
}

/// How an active segment's appends reach its file.
#[derive(Debug)]
enum WritePath {
    /// Not decided yet (no append since the segment was opened or created).
    Undecided,
    /// pwrite through the page cache.
    Buffered,
    /// O_DIRECT (`direct.rs`); the file may be up to a block longer than `size`.
    Direct(DirectWriter),
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.sealed.load(Ordering::Acquire) {
            self.ctx.handles.forget(self.id);
        }
        self.ctx.cache.invalidate(&self.cache);
    }
}

/// What scanning a segment found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Offset after the last valid batch (None if the segment has none).
    pub(crate) next_offset: Option<i64>,
    pub(crate) bytes_truncated: u64,
    /// Bytes read by the scan.
    pub(crate) bytes_scanned: u64,
    pub(crate) problem: Option<String>,
}

fn open_log_rw(fs: &dyn FileSystem, path: &Path, create: bool) -> Result<File, StorageError> {
    fs.open(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create),
    )
    .map_err(|e| StorageError::io_path("open segment", path, e))
}

impl Segment {
    fn new(
        ctx: &Arc<Shared>,
        dir: &Path,
        base_offset: i64,
        file: Option<File>,
        size: u64,
        sealed: bool,
        indexes: Indexes,
    ) -> Segment {
        Segment {
            id: ctx.handles.next_segment_id(),
            ctx: Arc::clone(ctx),
            base_offset,
            dir: dir.to_path_buf(),
            log_path: dir.join(file_name(base_offset, LOG_SUFFIX)),
            file: Mutex::new(file.map(Arc::new)),
            sealed: AtomicBool::new(sealed),
            size: AtomicU64::new(size),
            flushed_size: AtomicU64::new(size),
            index_dirty: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            gaps_below: std::sync::atomic::AtomicI64::new(i64::MIN),
            indexes: Mutex::new(indexes),
            direct: Mutex::new(WritePath::Undecided),
            cache: Arc::new(SegmentCache::default()),
        }
    }

    pub(crate) fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, suffix))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn display(&self) -> String {
        self.path(LOG_SUFFIX).display().to_string()
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Creates a new, empty active segment: its `.log` file; the indexes in memory (their
    /// files are written at the first checkpoint with entries, at seal or at close).
    pub(crate) fn create(
        ctx: &Arc<Shared>,
        dir: &Path,
        base_offset: i64,
        index_bytes_max: u32,
    ) -> Result<Segment, StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = open_log_rw(&*ctx.fs, &log_path, true)?;
        let idx_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let offset = OffsetIndex::create(&*ctx.fs, &idx_path, base_offset, index_bytes_max)
            .map_err(|e| StorageError::io_path("create index", &idx_path, e))?;
        let tidx_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let time = TimeIndex::create(&*ctx.fs, &tidx_path, base_offset, index_bytes_max)
            .map_err(|e| StorageError::io_path("create time index", &tidx_path, e))?;
        Ok(Segment::new(
            ctx,
            dir,
            base_offset,
            Some(file),
            0,
            false,
            Indexes::new(offset, time),
        ))
    }

    /// The empty active segment of a log that is not on this node (`Log::absent`): no
    /// file is created or opened.
    pub(crate) fn absent(ctx: &Arc<Shared>, dir: &Path) -> Segment {
        let offset = OffsetIndex::empty(&dir.join(file_name(0, INDEX_SUFFIX)), 0);
        let time = TimeIndex::empty(&dir.join(file_name(0, TIME_INDEX_SUFFIX)), 0);
        Segment::new(ctx, dir, 0, None, 0, false, Indexes::new(offset, time))
    }

    /// A trusted sealed segment: stats its `.log` file and sanity-checks its index files
    /// without opening or mapping anything for good. Returns the segment and, if the index
    /// files are missing or fail their check, why (the caller then reopens it with
    /// `open_rw` and rebuilds them with `recover`).
    pub(crate) fn open_sealed(
        ctx: &Arc<Shared>,
        dir: &Path,
        base_offset: i64,
    ) -> Result<(Option<Segment>, Option<String>), StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let size = fs::metadata(&log_path)
            .map_err(|e| StorageError::io_path("stat segment", &log_path, e))?
            .len();
        let idx_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let tidx_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let offset = match OffsetIndex::open_sealed(&idx_path, base_offset, size) {
            Ok(o) => o,
            Err(e) => return Ok((None, Some(format!("{}: {e}", idx_path.display())))),
        };
        let (time, last) = match TimeIndex::open_sealed(&tidx_path, base_offset) {
            Ok(x) => x,
            Err(e) => return Ok((None, Some(format!("{}: {e}", tidx_path.display())))),
        };
        let mut indexes = Indexes::new(offset, time);
        if let Some((ts, off)) = last {
            indexes.max_timestamp = ts;
            indexes.offset_of_max_timestamp = off;
        }
        Ok((
            Some(Segment::new(
                ctx,
                dir,
                base_offset,
                None,
                size,
                true,
                indexes,
            )),
            None,
        ))
    }

    /// Opens a segment's `.log` file for writing (recovery or the active segment) and
    /// loads into memory the valid prefix of its index entries with offsets below
    /// `keep_below` (time entries: only those covered by the kept offset entries, or all
    /// when `keep_below` is `i64::MAX`). Returns it and whether every entry was kept.
    pub(crate) fn open_rw(
        ctx: &Arc<Shared>,
        dir: &Path,
        base_offset: i64,
        index_bytes_max: u32,
        keep_below: i64,
    ) -> Result<(Segment, bool), StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = open_log_rw(&*ctx.fs, &log_path, false)?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io_path("stat segment", &log_path, e))?
            .len();
        let idx_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let tidx_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let (offset, offset_all) =
            OffsetIndex::load_prefix(&idx_path, base_offset, index_bytes_max, keep_below, size)
                .map_err(|e| StorageError::io_path("read index", &idx_path, e))?;
        let time_max = if keep_below == i64::MAX {
            i64::MAX
        } else {
            offset.last_entry().map_or(i64::MIN, |(o, _)| o)
        };
        let (time, time_all) =
            TimeIndex::load_prefix(&tidx_path, base_offset, index_bytes_max, time_max)
                .map_err(|e| StorageError::io_path("read time index", &tidx_path, e))?;
        Ok((
            Segment::new(
                ctx,
                dir,
                base_offset,
                Some(file),
                size,
                false,
                Indexes::new(offset, time),
            ),
            offset_all && time_all,
        ))
    }

    /// The open `.log` file, opening it if the handle cache closed it.
    pub(crate) fn file(self: &Arc<Self>) -> io::Result<Arc<File>> {
        let sealed = self.is_sealed();
        let existing = self.file.lock().clone();
        let file = match existing {
            Some(f) => f,
            None => {
                if self.frozen.load(Ordering::Acquire) {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "segment replaced by compaction",
                    ));
                }
                let f = Arc::new(File::open(self.path(LOG_SUFFIX))?);
                let mut slot = self.file.lock();
                match &*slot {
                    Some(other) => Arc::clone(other),
                    None => {
                        *slot = Some(Arc::clone(&f));
                        f
                    }
                }
            }
        };
        if sealed && self.flushed_size.load(Ordering::Acquire) >= self.size() {
            self.ctx.handles.touch(self, Kind::File);
        }
        Ok(file)
    }

    /// The file while it is held open (active segment, recovery).
    fn open_file(&self) -> io::Result<Arc<File>> {
        self.file
            .lock()
            .clone()
            .ok_or_else(|| io::Error::other("segment file is not open"))
    }

    /// Writes `bytes` at `pos` (the end) of the active segment.
    pub(crate) fn write_at(&self, bytes: &[u8], pos: u64) -> io::Result<()> {
        self.write_vectored_at(&[bytes], pos)
    }

    /// Writes `bufs`, one after the other, at `pos` (the end) of the active segment: one
    /// pwritev, or one O_DIRECT pwrite of whole blocks (`direct.rs`).
    pub(crate) fn write_vectored_at(&self, bufs: &[&[u8]], pos: u64) -> io::Result<()> {
        let file = self.open_file()?;
        let mut path = self.direct.lock();
        if let WritePath::Undecided = *path {
            *path = self.decide_write_path(&file, pos);
        }
        let written = match &mut *path {
            WritePath::Direct(w) => {
                let fs = &*self.ctx.fs;
                let res = w.write(fs, &self.ctx.scratch, &self.log_path, bufs, pos);
                if res.is_ok() {
                    self.ctx.stats.direct_write();
                    if self.ctx.cache.enabled() {
                        // Readers of recent data find it here, not on the device.
                        self.ctx
                            .cache
                            .insert(&self.cache, pos, Bytes::from(bufs.concat()));
                    }
                }
                res
            }
            _ => match bufs {
                [one] => self.ctx.fs.write_at(&self.log_path, &file, one, pos),
                _ => self
                    .ctx
                    .fs
                    .write_vectored_at(&self.log_path, &file, bufs, pos),
            },
        };
        if let Err(e) = written {
            // Best effort: cut off a partial write. The log goes offline either way.
            *path = WritePath::Undecided;
            self.ctx.cache.invalidate(&self.cache);
            let _ = self.ctx.fs.set_len(&self.log_path, &file, pos);
            return Err(e);
        }
        Ok(())
    }

    /// The write path of an active segment of `size` bytes at its first append.
    fn decide_write_path(&self, file: &File, size: u64) -> WritePath {
        if !self.ctx.direct_writes_in(&self.dir) {
            return WritePath::Buffered;
        }
        match DirectWriter::open(&*self.ctx.fs, &self.log_path, file, size) {
            Ok(w) => WritePath::Direct(w),
            Err(e) => {
                tracing::warn!(
                    "cannot open {} for direct writes ({e}); writing it through the page cache",
                    self.display()
                );
                WritePath::Buffered
            }
        }
    }

    /// Ends direct writes to this segment: cuts the zeros after its last block's data off
    /// the file and fdatasyncs it (sealing, closing). A later append decides its write
    /// path again. The sync comes before the roll creates the next segment: recovery
    /// trusts the size of a segment that has a successor below the recovery point (which
    /// may already be this segment's end), so padding must not survive a crash there.
    pub(crate) fn trim_padding(&self) -> io::Result<()> {
        let mut path = self.direct.lock();
        if let WritePath::Direct(_) = *path {
            *path = WritePath::Undecided;
            let file = self.open_file()?;
            let size = self.size();
            if file.metadata()?.len() > size {
                self.ctx.fs.set_len(&self.log_path, &file, size)?;
                self.ctx.fs.sync_data(&self.log_path, &file)?;
                self.ctx.stats.file_sync();
                self.flushed_size.fetch_max(size, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Called by the handle cache: close the file or unmap an index. An unsynced file
    /// stays open (its fsync must see any write-back error).
    pub(crate) fn release(&self, kind: Kind) {
        if !self.is_sealed() || (kind == Kind::File && self.frozen.load(Ordering::Acquire)) {
            return;
        }
        match kind {
            Kind::File => {
                if self.flushed_size.load(Ordering::Acquire) >= self.size() {
                    self.file.lock().take();
                }
            }
            Kind::OffsetIndex => {
                self.indexes.lock().offset.unmap();
            }
            Kind::TimeIndex => {
                self.indexes.lock().time.unmap();
            }
        }
    }

    /// Registers a sealed segment's open file with the handle cache (after its fsync).
    pub(crate) fn track_file(self: &Arc<Self>) {
        let open = self.file.lock().is_some();
        if open && self.is_sealed() && self.flushed_size.load(Ordering::Acquire) >= self.size() {
            self.ctx.handles.touch(self, Kind::File);
        }
    }

    /// Seals the (formerly active) segment: exact index files, in-memory copies dropped.
    pub(crate) fn seal(&self) -> io::Result<()> {
        self.trim_padding()?;
        let mut idx = self.indexes.lock();
        idx.write_exact(&*self.ctx.fs)?;
        idx.offset.make_sealed();
        idx.time.make_sealed();
        self.sealed.store(true, Ordering::Release);
        self.index_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes the active segment's index entries for offsets below `below` to the files and
    /// fdatasyncs them (recovery-point checkpoints).
    pub(crate) fn persist_indexes_below(&self, below: i64) -> io::Result<()> {
        let files = {
            let mut idx = self.indexes.lock();
            if self.is_sealed() {
                return Ok(());
            }
            let fs = &*self.ctx.fs;
            let a = idx.offset.persist_below(fs, below)?;
            let b = idx.time.persist_below(fs, below)?;
            [
                a.map(|f| (f, idx.offset.path().to_path_buf())),
                b.map(|f| (f, idx.time.path().to_path_buf())),
            ]
        };
        for (f, path) in files.into_iter().flatten() {
            self.ctx.fs.sync_data(&path, &f)?;
        }
        Ok(())
    }

    /// Scans the whole file, validating every batch (CRC and framing; the CRC is skipped
    /// for batches ending below `trusted_below`, which are known to be on stable storage) and
    /// its offsets, rebuilds both indexes from scratch (in memory), and truncates the file
    /// at the first invalid batch. Only called before the log is shared.
    pub(crate) fn recover(
        &self,
        index_interval_bytes: u32,
        trusted_below: i64,
    ) -> Result<ScanOutcome, StorageError> {
        self.indexes.lock().reset_stats();
        self.scan_and_truncate(0, None, index_interval_bytes, trusted_below)
    }

    /// Like `recover`, but keeps the index entries loaded by `open_rw` and scans only from
    /// the last one on (framing and CRCs). Falls back to `recover` if the region that should
    /// be trusted does not check out.
    ///
    /// Below the recovery point batches are trusted without their CRCs, except those
    /// sharing a block with the scanned tail: a write that completes a partly filled block
    /// (a direct write's rewrite of the last block, or the page cache's write-back of a
    /// page holding durable bytes and new ones) may be torn by a power loss and damage
    /// bytes that were durable before it. Those batches, from the block holding the last
    /// index entry on, are CRC-checked too; damage among them is cut like a torn tail.
    pub(crate) fn recover_from_index(
        &self,
        index_interval_bytes: u32,
        trusted_below: i64,
    ) -> Result<ScanOutcome, StorageError> {
        let last = self.indexes.lock().offset.last_entry();
        let Some((last_offset, pos)) = last else {
            // Under one index interval of data: check it all.
            return self.recover(index_interval_bytes, i64::MIN);
        };
        let pos = u64::from(pos);
        let block = DIRECT_IO_BLOCK_BYTES as u64;
        let crc_from = pos / block * block;
        let from = self.index_position_at_or_before(crc_from);
        if self.check_crcs(from, pos, crc_from).is_err() {
            return self.recover(index_interval_bytes, i64::MIN);
        }
        let out = self.scan_and_truncate_inner(
            pos,
            Some(last_offset),
            index_interval_bytes,
            trusted_below,
            Some(crc_from),
        )?;
        match out {
            Some(o) => Ok(o),
            None => self.recover(index_interval_bytes, i64::MIN),
        }
    }

    /// The position of the last offset-index entry at or before `position` (0 if none).
    fn index_position_at_or_before(&self, position: u64) -> u64 {
        let idx = self.indexes.lock();
        let (mut lo, mut hi) = (0, idx.offset.entries());
        // Entries are in ascending position: the first one after `position` is at `lo`.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match idx.offset.entry(mid) {
                Some((_, p)) if u64::from(p) <= position => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1)
            .and_then(|i| idx.offset.entry(i))
            .map_or(0, |(_, p)| u64::from(p))
    }

    /// CRC-checks the batches in `[from, until)` (`from` at a batch) that end after
    /// `crc_from`, reading nothing else and changing nothing. `Err` describes the first
    /// problem.
    fn check_crcs(&self, from: u64, until: u64, crc_from: u64) -> Result<(), String> {
        let file = self.open_file().map_err(|e| e.to_string())?;
        let gaps_below = self.gaps_below.load(Ordering::Acquire);
        let mut scanner = Scanner::new(&file, from, until);
        while let Some((h, pos)) = scanner.next_header().map_err(|e| match e {
            ScanError::Io(e) => e.to_string(),
            ScanError::Bad(p) => p,
        })? {
            if pos + h.total_bytes() as u64 <= crc_from {
                continue;
            }
            let bytes = scanner
                .window(pos, h.total_bytes())
                .map_err(|e| e.to_string())?;
            let valid = if h.last_offset() < gaps_below {
                validate_stored_batch(bytes)
            } else {
                validate_batch(bytes)
            };
            valid.map_err(|e| format!("batch at position {pos}: {e}"))?;
        }
        Ok(())
    }

    fn scan_and_truncate(
        &self,
        start: u64,
        first_last_offset: Option<i64>,
        index_interval_bytes: u32,
        trusted_below: i64,
    ) -> Result<ScanOutcome, StorageError> {
        let out = self.scan_and_truncate_inner(
            start,
            first_last_offset,
            index_interval_bytes,
            trusted_below,
            None,
        )?;
        Ok(out.unwrap_or_default())
    }

    /// With `strict` (`Some(crc_from)`: batches ending after that position are CRC-checked
    /// even below `trusted_below`), `Ok(None)` is a problem below `trusted_below` (nothing
    /// was truncated).
    fn scan_and_truncate_inner(
        &self,
        start: u64,
        first_last_offset: Option<i64>,
        index_interval_bytes: u32,
        trusted_below: i64,
        strict: Option<u64>,
    ) -> Result<Option<ScanOutcome>, StorageError> {
        let crc_from = strict.unwrap_or(u64::MAX);
        let file = self
            .open_file()
            .map_err(|e| StorageError::io(format!("read {}", self.display()), e))?;
        let mut idx = self.indexes.lock();
        let size = self.size();
        let mut scanner = Scanner::new(&file, start, size);
        let mut out = ScanOutcome::default();
        let mut expected = if first_last_offset.is_some() {
            None
        } else {
            Some(self.base_offset)
        };
        let mut valid_end = start;
        let gaps_below = self.gaps_below.load(Ordering::Acquire);
        loop {
            let (h, pos) = match scanner.next_header() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(ScanError::Io(e)) => {
                    return Err(StorageError::io(format!("read {}", self.display()), e))
                }
                Err(ScanError::Bad(p)) => {
                    out.problem = Some(p);
                    break;
                }
            };
            let compacted = h.last_offset() < gaps_below;
            if h.last_offset() >= trusted_below || pos + h.total_bytes() as u64 > crc_from {
                let bytes = match scanner.window(pos, h.total_bytes()) {
                    Ok(b) => b,
                    Err(e) => return Err(StorageError::io(format!("read {}", self.display()), e)),
                };
                let valid = if compacted {
                    validate_stored_batch(bytes)
                } else {
                    validate_batch(bytes)
                };
                if let Err(e) = valid {
                    out.problem = Some(format!("batch at position {pos}: {e}"));
                    break;
                }
            }
            // Offsets in a segment are contiguous from its base (the base offset is not
            // covered by the CRC, so this is what catches a damaged one).
            // Compaction leaves gaps (whole batches removed) below `gaps_below`.
            let contiguous = match expected {
                Some(e) if compacted => h.base_offset >= e,
                Some(e) => h.base_offset == e,
                None => Some(h.last_offset()) == first_last_offset,
            };
            if !contiguous || h.last_offset() < h.base_offset {
                out.problem = Some(format!(
                    "batch at position {pos} has offsets {}..={}, expected {}",
                    h.base_offset,
                    h.last_offset(),
                    expected.map_or_else(|| "an indexed batch".to_string(), |e| e.to_string())
                ));
                break;
            }
            idx.on_batch(&h, pos, index_interval_bytes);
            expected = Some(h.next_offset());
            out.next_offset = expected;
            valid_end = pos + h.total_bytes() as u64;
        }
        out.bytes_scanned = scanner.bytes_read;
        if strict.is_some()
            && out.problem.is_some()
            && out.next_offset.is_none_or(|n| n < trusted_below)
        {
            return Ok(None);
        }
        if valid_end < size {
            let padding = crate::direct::is_padding(&file, valid_end, size)
                .map_err(|e| StorageError::io(format!("read {}", self.display()), e))?;
            self.ctx
                .fs
                .set_len(&self.log_path, &file, valid_end)
                .map_err(|e| StorageError::io(format!("truncate {}", self.display()), e))?;
            if padding {
                // The zeros after a direct write's last batch (`direct.rs`): nothing lost.
                out.problem = None;
            } else {
                out.bytes_truncated = size - valid_end;
                if out.problem.is_none() {
                    out.problem = Some("trailing bytes".into());
                }
            }
            self.size.store(valid_end, Ordering::Release);
            self.flushed_size.store(valid_end, Ordering::Release);
        }
        Ok(Some(out))
    }

    /// Finds the end of a trusted segment by reading batch headers from its last index
    /// entry on (framing only). `Err` describes a problem (the caller then runs `recover`).
    pub(crate) fn scan_tail(&self, index_interval_bytes: u32) -> Result<Option<i64>, String> {
        let file = self.open_file().map_err(|e| e.to_string())?;
        let mut idx = self.indexes.lock();
        let entry = idx.offset.last_entry();
        let start = entry.map_or(0, |(_, p)| u64::from(p));
        let mut scanner = Scanner::new(&file, start, self.size());
        let mut next: Option<i64> = None;
        loop {
            match scanner.next_header() {
                Ok(Some((h, pos))) => {
                    let contiguous = match (next, entry) {
                        (Some(n), _) => h.base_offset == n,
                        (None, Some((last, _))) => h.last_offset() == last,
                        (None, None) => h.base_offset == self.base_offset,
                    };
                    if !contiguous || h.last_offset() < h.base_offset {
                        return Err(format!("batch at {pos} has unexpected offsets"));
                    }
                    // No entry is added for the first batch (bytes_since_entry starts at 0).
                    idx.on_batch(&h, pos, index_interval_bytes);
                    next = Some(h.next_offset());
                }
                Ok(None) => return Ok(next),
                Err(ScanError::Io(e)) => return Err(e.to_string()),
                Err(ScanError::Bad(p)) => return Err(p),
            }
        }
    }

    /// Writes the index files exactly after recovery; a sealed segment drops its
    /// in-memory copy. The caller fsyncs (`index_dirty`).
    pub(crate) fn finish_recovery(&self, sealed: bool) -> io::Result<()> {
        if sealed {
            self.seal()
        } else {
            self.indexes.lock().write_exact(&*self.ctx.fs)
        }
    }

    /// File position to start scanning for `offset`.
    pub(crate) fn lookup(self: &Arc<Self>, offset: i64) -> u64 {
        let (pos, mapped) = {
            let mut idx = self.indexes.lock();
            let mapped = self.load(&mut idx, Kind::OffsetIndex);
            (u64::from(idx.offset.lookup(offset)), mapped)
        };
        if mapped {
            self.ctx.handles.touch(self, Kind::OffsetIndex);
        }
        pos
    }

    /// Maps a sealed index on demand; true if it is a cached mapping (touch it).
    fn load(&self, idx: &mut Indexes, kind: Kind) -> bool {
        if !self.is_sealed() || self.frozen.load(Ordering::Acquire) {
            // A frozen segment's index paths may name its replacement's files: an index
            // not mapped yet is not loaded (lookups then scan from the file's start).
            return false;
        }
        let res = match kind {
            Kind::OffsetIndex => idx.offset.ensure_loaded(),
            Kind::TimeIndex => idx.time.ensure_loaded(),
            Kind::File => return false,
        };
        if let Err(e) = res {
            if !self.deleted.load(Ordering::Acquire) {
                tracing::warn!("cannot map {kind:?} of {}: {e}", self.display());
            }
            return false;
        }
        true
    }

    /// (max timestamp, its offset), -1s if none.
    pub(crate) fn max_timestamp(&self) -> (i64, i64) {
        let idx = self.indexes.lock();
        (idx.max_timestamp, idx.offset_of_max_timestamp)
    }

    /// Position to scan from for the first batch with max timestamp >= target.
    pub(crate) fn time_lookup(self: &Arc<Self>, target: i64) -> u64 {
        let (pos, mapped) = {
            let mut idx = self.indexes.lock();
            let a = self.load(&mut idx, Kind::TimeIndex);
            let b = self.load(&mut idx, Kind::OffsetIndex);
            let off = idx.time.lookup(target);
            (u64::from(idx.offset.lookup(off)), a && b)
        };
        if mapped {
            self.ctx.handles.touch(self, Kind::TimeIndex);
            self.ctx.handles.touch(self, Kind::OffsetIndex);
        }
        pos
    }

    /// fsyncs the data written so far; returns the size now durable.
    pub(crate) fn sync_data(&self) -> io::Result<u64> {
        let size = self.size();
        if self.flushed_size.load(Ordering::Acquire) < size {
            // Unsynced data: the file was never released (see `release`).
            let file = self.open_file()?;
            self.ctx.fs.sync_data(&self.log_path, &file)?;
            self.ctx.stats.file_sync();
            self.flushed_size.fetch_max(size, Ordering::AcqRel);
        }
        Ok(size)
    }

    /// The open file and its path, for a syncfs round that must cover it (the file stays
    /// open while it holds unsynced data, see `release`).
    pub(crate) fn file_for_sync(&self) -> io::Result<(&Path, Arc<File>)> {
        Ok((&self.log_path, self.open_file()?))
    }

    /// Records that the first `size` bytes are on stable storage (a syncfs covered them).
    pub(crate) fn mark_synced(&self, size: u64) {
        assert!(
            size <= self.size(),
            "synced past the end of {}",
            self.display()
        );
        self.flushed_size.fetch_max(size, Ordering::AcqRel);
    }

    /// fdatasyncs the file unconditionally (after recovery: the page cache may hold data
    /// that never reached the disk before the crash).
    pub(crate) fn sync_data_now(&self) -> io::Result<()> {
        let file = self.open_file()?;
        self.ctx.fs.sync_data(&self.log_path, &file)
    }

    /// fsyncs a sealed segment's index files if they changed.
    pub(crate) fn sync_indexes_if_dirty(&self) -> io::Result<()> {
        if self.index_dirty.load(Ordering::Acquire) && !self.deleted.load(Ordering::Acquire) {
            let res = {
                let idx = self.indexes.lock();
                let fs = &*self.ctx.fs;
                idx.offset.sync(fs).and_then(|()| idx.time.sync(fs))
            };
            match res {
                Ok(()) => {}
                // Deleted concurrently: nothing left to make durable.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && self.deleted.load(Ordering::Acquire) => {}
                Err(e) => return Err(e),
            }
            self.index_dirty.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Pins the open `.log` file and stops opening or mapping anything by path (see
    /// `frozen`): called before compaction renames a replacement over this segment's files.
    pub(crate) fn freeze(self: &Arc<Self>) -> io::Result<()> {
        let file = self.file()?;
        let mut slot = self.file.lock();
        if slot.is_none() {
            *slot = Some(file);
        }
        self.frozen.store(true, Ordering::Release);
        // Compaction replaces it: readers of the new view read the new segments.
        self.ctx.cache.invalidate(&self.cache);
        assert!(
            slot.is_some(),
            "{}: frozen without its file",
            self.display()
        );
        Ok(())
    }

    /// Takes the segment out of service without deleting its files (a truncation replaces
    /// it with a new object for the shortened file): later reads of it fail as out of
    /// range, and its index mappings are dropped now, before the files shrink.
    pub(crate) fn retire(&self) {
        self.deleted.store(true, Ordering::Release);
        self.ctx.cache.invalidate(&self.cache);
        let mut idx = self.indexes.lock();
        idx.offset.unmap();
        idx.time.unmap();
    }

    /// Where a truncation to `offset` cuts this segment: (position, offset) of the first
    /// batch whose last offset is `>= offset` (the whole batch goes), or the end.
    pub(crate) fn find_cut(
        self: &Arc<Self>,
        file: &File,
        offset: i64,
    ) -> Result<(u64, i64), StorageError> {
        let from = self.lookup(offset);
        let size = self.size();
        let mut scanner = Scanner::for_headers(file, from, size);
        let mut end = (size, self.base_offset);
        loop {
            match scanner.next_header() {
                Ok(Some((h, pos))) => {
                    if h.last_offset() >= offset {
                        return Ok((pos, h.base_offset));
                    }
                    end = (pos + h.total_bytes() as u64, h.next_offset());
                }
                Ok(None) => return Ok(end),
                Err(ScanError::Io(e)) => {
                    return Err(StorageError::io(format!("read {}", self.display()), e))
                }
                Err(ScanError::Bad(detail)) => {
                    return Err(StorageError::Corrupt {
                        path: self.display(),
                        position: from,
                        detail,
                    })
                }
            }
        }
    }

    /// Removes the segment's files (an open descriptor keeps working for readers).
    pub(crate) fn delete_files(&self) -> io::Result<()> {
        self.deleted.store(true, Ordering::Release);
        self.ctx.cache.invalidate(&self.cache);
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            crate::txn_index::TXN_INDEX_SUFFIX,
        ] {
            match self.ctx.fs.remove_file(&self.path(suffix)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Modification time of the `.log` file in ms since the epoch (retention fallback).
    pub(crate) fn modified_ms(&self) -> Option<i64> {
        let m = fs::metadata(self.path(LOG_SUFFIX)).ok()?.modified().ok()?;
        let d = m.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(d.as_millis()).ok()
    }
}

#[derive(Debug)]
pub(crate) enum ScanError {
    Io(io::Error),
    /// Torn or garbled framing.
    Bad(String),
}

/// Reads batch headers (and, on request, whole batches) sequentially from a file region,
/// through a buffer of `SEGMENT_SCAN_CHUNK_BYTES`.
pub(crate) struct Scanner<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
    /// Bytes read from the file so far.
    pub(crate) bytes_read: u64,
    /// Headers only (`for_headers`): after a batch of at least
    /// `SEGMENT_SCAN_HEADER_ONLY_AFTER_BYTES`, read just the next header.
    headers_only: bool,
    /// Size of the batch whose header was read last.
    last_batch_bytes: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a File, start: u64, end: u64) -> Scanner<'a> {
        Scanner {
            file,
            pos: start,
            end,
            buf: Vec::new(),
            buf_start: 0,
            bytes_read: 0,
            headers_only: false,
            last_batch_bytes: 0,
        }
    }

    /// A scanner for callers that read only headers (`next_header`), such as
    /// the fetch path: where batches are large a chunk would hold at most one
    /// header, so it reads that header alone instead of copying a chunk of
    /// record data it does not need. The first read (usually at an index
    /// entry, so at a batch) is a header alone too.
    pub(crate) fn for_headers(file: &'a File, start: u64, end: u64) -> Scanner<'a> {
        Scanner {
            headers_only: true,
            last_batch_bytes: SEGMENT_SCAN_HEADER_ONLY_AFTER_BYTES,
            ..Scanner::new(file, start, end)
        }
    }

    /// Bytes `[pos, pos + len)`; the caller guarantees `pos + len <= end`.
    pub(crate) fn window(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len as u64 > have_end {
            let avail = usize::try_from(self.end.saturating_sub(pos)).unwrap_or(usize::MAX);
            let chunk = if self.headers_only
                && self.last_batch_bytes >= SEGMENT_SCAN_HEADER_ONLY_AFTER_BYTES
            {
                len
            } else {
                SEGMENT_SCAN_CHUNK_BYTES
            };
            let want = len.max(chunk).min(avail);
            if want < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past segment end",
                ));
            }
            self.buf.clear();
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.bytes_read += want as u64;
            self.buf_start = pos;
        }
        let at = usize::try_from(pos - self.buf_start).unwrap_or(0);
        Ok(&self.buf[at..at + len])
    }

    /// The next batch's header and position; `Ok(None)` at the end.
    pub(crate) fn next_header(&mut self) -> Result<Option<(BatchHeader, u64)>, ScanError> {
        let pos = self.pos;
        if pos >= self.end {
            return Ok(None);
        }
        if self.end - pos < BATCH_HEADER_BYTES as u64 {
            return Err(ScanError::Bad(format!(
                "{} bytes at position {pos}: a partial batch header",
                self.end - pos
            )));
        }
        let head = self
            .window(pos, BATCH_HEADER_BYTES)
            .map_err(ScanError::Io)?;
        let h = BatchHeader::parse(head)
            .map_err(|e| ScanError::Bad(format!("batch at position {pos}: {e}")))?;
        let total = h.total_bytes();
        if total > MESSAGE_BYTES_MAX_CEILING || pos + total as u64 > self.end {
            return Err(ScanError::Bad(format!(
                "batch at position {pos} claims {total} bytes, {} left in the segment",
                self.end - pos
            )));
        }
        self.pos = pos + total as u64;
        self.last_batch_bytes = total;
        Ok(Some((h, pos)))
    }
}
