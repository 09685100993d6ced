//! One segment: a `.log` file of whole batches plus its two sparse indexes.
//!
//! Writers (the log's append path, under the log's append lock) pwrite at the end and then
//! publish the new size with `size.store(Release)`; readers only read below a size they
//! loaded with `Acquire`, so they never see a partial batch and never take the append lock.
//! The indexes sit behind their own short mutex.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fjord_model::limits::{MESSAGE_BYTES_MAX_CEILING, SEGMENT_SCAN_CHUNK_BYTES};
use fjord_model::TimestampType;
use fjord_records::{validate_batch, BatchHeader, BATCH_HEADER_BYTES};
use parking_lot::Mutex;

use crate::error::StorageError;
use crate::index::{OffsetIndex, TimeIndex};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

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

    /// Index files get their final time-index entry and their exact size.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        if self.max_timestamp >= 0 {
            self.time
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.offset.trim()?;
        self.time.trim()
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
    pub(crate) base_offset: i64,
    pub(crate) dir: PathBuf,
    pub(crate) file: Arc<File>,
    /// Bytes of whole batches in the file (published by the writer).
    pub(crate) size: AtomicU64,
    /// Bytes known to be on stable storage.
    pub(crate) flushed_size: AtomicU64,
    /// Sealed (no longer active) and its index files not yet fsynced.
    pub(crate) index_dirty: AtomicBool,
    /// Removed from the log (retention, DeleteRecords); its files are gone or going.
    pub(crate) deleted: AtomicBool,
    pub(crate) indexes: Mutex<Indexes>,
}

/// What scanning a segment found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Offset after the last valid batch (None if the segment has none).
    pub(crate) next_offset: Option<i64>,
    pub(crate) bytes_truncated: u64,
    pub(crate) problem: Option<String>,
}

impl Segment {
    pub(crate) fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, suffix))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn display(&self) -> String {
        self.path(LOG_SUFFIX).display().to_string()
    }

    /// Creates a new, empty segment with preallocated indexes.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        index_bytes_max: u32,
    ) -> Result<Segment, StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| StorageError::io_path("create segment", &log_path, e))?;
        let idx_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let offset = OffsetIndex::create(&idx_path, base_offset, index_bytes_max)
            .map_err(|e| StorageError::io_path("create index", &idx_path, e))?;
        let tidx_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let time = TimeIndex::create(&tidx_path, base_offset, index_bytes_max)
            .map_err(|e| StorageError::io_path("create time index", &tidx_path, e))?;
        Ok(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size: AtomicU64::new(0),
            flushed_size: AtomicU64::new(0),
            index_dirty: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            indexes: Mutex::new(Indexes {
                offset,
                time,
                max_timestamp: -1,
                offset_of_max_timestamp: -1,
                bytes_since_entry: 0,
            }),
        })
    }

    /// Opens an existing `.log` file and tries to load its index files as they are.
    /// Returns the segment and, if the index files are missing or fail their sanity
    /// check, why (the caller then rebuilds them with `recover`).
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
    ) -> Result<(Segment, Option<String>), StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| StorageError::io_path("open segment", &log_path, e))?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io_path("stat segment", &log_path, e))?
            .len();
        let idx_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let tidx_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let loaded = OffsetIndex::load(&idx_path, base_offset)
            .map_err(|e| format!("{}: {e}", idx_path.display()))
            .and_then(|o| {
                o.sanity_check(size)
                    .map_err(|e| format!("{}: {e}", idx_path.display()))?;
                Ok(o)
            })
            .and_then(|o| {
                let t = TimeIndex::load(&tidx_path, base_offset)
                    .map_err(|e| format!("{}: {e}", tidx_path.display()))?;
                t.sanity_check()
                    .map_err(|e| format!("{}: {e}", tidx_path.display()))?;
                Ok((o, t))
            });
        let (indexes, problem) = match loaded {
            Ok((offset, time)) => {
                let (max_timestamp, offset_of_max_timestamp) =
                    time.last_entry().unwrap_or((-1, -1));
                (
                    Indexes {
                        offset,
                        time,
                        max_timestamp,
                        offset_of_max_timestamp,
                        bytes_since_entry: 0,
                    },
                    None,
                )
            }
            Err(problem) => {
                // Placeholders: empty in-memory indexes until `recover` rebuilds the files.
                let offset = OffsetIndex::create(&idx_path, base_offset, 0)
                    .map_err(|e| StorageError::io_path("create index", &idx_path, e))?;
                let time = TimeIndex::create(&tidx_path, base_offset, 0)
                    .map_err(|e| StorageError::io_path("create time index", &tidx_path, e))?;
                let idx = Indexes {
                    offset,
                    time,
                    max_timestamp: -1,
                    offset_of_max_timestamp: -1,
                    bytes_since_entry: 0,
                };
                (idx, Some(problem))
            }
        };
        Ok((
            Segment {
                base_offset,
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                size: AtomicU64::new(size),
                flushed_size: AtomicU64::new(size),
                index_dirty: AtomicBool::new(false),
                deleted: AtomicBool::new(false),
                indexes: Mutex::new(indexes),
            },
            problem,
        ))
    }

    /// Scans the whole file, validating every batch (CRC and framing; the CRC is skipped
    /// for batches ending below `trusted_below`, which are known to be on stable storage) and
    /// its offsets, rebuilds both indexes from scratch (capacity `index_bytes_max`), and
    /// truncates the file at the first invalid batch. Only called before the log is shared.
    pub(crate) fn recover(
        &self,
        index_bytes_max: u32,
        index_interval_bytes: u32,
        trusted_below: i64,
    ) -> Result<ScanOutcome, StorageError> {
        let mut idx = self.indexes.lock();
        let idx_path = self.path(INDEX_SUFFIX);
        let tidx_path = self.path(TIME_INDEX_SUFFIX);
        idx.offset = OffsetIndex::create(&idx_path, self.base_offset, index_bytes_max)
            .map_err(|e| StorageError::io_path("create index", &idx_path, e))?;
        idx.time = TimeIndex::create(&tidx_path, self.base_offset, index_bytes_max)
            .map_err(|e| StorageError::io_path("create time index", &tidx_path, e))?;
        idx.reset_stats();
        let size = self.size();
        let mut scanner = Scanner::new(&self.file, 0, size);
        let mut out = ScanOutcome::default();
        let mut expected = self.base_offset;
        let mut valid_end = 0u64;
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
            if h.last_offset() >= trusted_below {
                let bytes = match scanner.window(pos, h.total_bytes()) {
                    Ok(b) => b,
                    Err(e) => return Err(StorageError::io(format!("read {}", self.display()), e)),
                };
                if let Err(e) = validate_batch(bytes) {
                    out.problem = Some(format!("batch at position {pos}: {e}"));
                    break;
                }
            }
            if h.base_offset < expected || h.last_offset() < h.base_offset {
                out.problem = Some(format!(
                    "batch at position {pos} has offsets {}..={}, expected from {expected}",
                    h.base_offset,
                    h.last_offset()
                ));
                break;
            }
            idx.on_batch(&h, pos, index_interval_bytes);
            expected = h.next_offset();
            out.next_offset = Some(expected);
            valid_end = pos + h.total_bytes() as u64;
        }
        if valid_end < size {
            self.file
                .set_len(valid_end)
                .map_err(|e| StorageError::io(format!("truncate {}", self.display()), e))?;
            out.bytes_truncated = size - valid_end;
            if out.problem.is_none() {
                out.problem = Some("trailing bytes".into());
            }
            self.size.store(valid_end, Ordering::Release);
            self.flushed_size.store(valid_end, Ordering::Release);
        }
        Ok(out)
    }

    /// Finds the end of a trusted segment by reading batch headers from its last index
    /// entry on (framing only). `Err` describes a problem (the caller then runs `recover`).
    pub(crate) fn scan_tail(&self, index_interval_bytes: u32) -> Result<Option<i64>, String> {
        let mut idx = self.indexes.lock();
        let start = idx.offset.last_entry().map_or(0, |(_, p)| u64::from(p));
        let mut scanner = Scanner::new(&self.file, start, self.size());
        let mut next = None;
        loop {
            match scanner.next_header() {
                Ok(Some((h, pos))) => {
                    if h.last_offset() < h.base_offset || h.base_offset < self.base_offset {
                        return Err(format!("batch at {pos} has bad offsets"));
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

    /// File position to start scanning for `offset`.
    pub(crate) fn lookup(&self, offset: i64) -> u64 {
        u64::from(self.indexes.lock().offset.lookup(offset))
    }

    /// (max timestamp, its offset), -1s if none.
    pub(crate) fn max_timestamp(&self) -> (i64, i64) {
        let idx = self.indexes.lock();
        (idx.max_timestamp, idx.offset_of_max_timestamp)
    }

    /// Position and offset to scan from for the first batch with max timestamp >= target.
    pub(crate) fn time_lookup(&self, target: i64) -> u64 {
        let idx = self.indexes.lock();
        let off = idx.time.lookup(target);
        u64::from(idx.offset.lookup(off))
    }

    /// fsyncs the data written so far; returns the size now durable.
    pub(crate) fn sync_data(&self) -> io::Result<u64> {
        let size = self.size();
        if self.flushed_size.load(Ordering::Acquire) < size {
            self.file.sync_data()?;
            self.flushed_size.fetch_max(size, Ordering::AcqRel);
        }
        Ok(size)
    }

    /// fsyncs a sealed segment's index files if they changed.
    pub(crate) fn sync_indexes_if_dirty(&self) -> io::Result<()> {
        if self.index_dirty.load(Ordering::Acquire) && !self.deleted.load(Ordering::Acquire) {
            let idx = self.indexes.lock();
            let res = idx.offset.sync().and_then(|()| idx.time.sync());
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

    /// Removes the segment's files (the open descriptor keeps working for readers).
    pub(crate) fn delete_files(&self) -> io::Result<()> {
        self.deleted.store(true, Ordering::Release);
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            match fs::remove_file(self.path(suffix)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Modification time of the `.log` file in ms since the epoch (retention fallback).
    pub(crate) fn modified_ms(&self) -> Option<i64> {
        let m = self.file.metadata().ok()?.modified().ok()?;
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
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a File, start: u64, end: u64) -> Scanner<'a> {
        Scanner {
            file,
            pos: start,
            end,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Bytes `[pos, pos + len)`; the caller guarantees `pos + len <= end`.
    pub(crate) fn window(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len as u64 > have_end {
            let avail = usize::try_from(self.end.saturating_sub(pos)).unwrap_or(usize::MAX);
            let want = len.max(SEGMENT_SCAN_CHUNK_BYTES).min(avail);
            if want < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past segment end",
                ));
            }
            self.buf.clear();
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
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
        Ok(Some((h, pos)))
    }
}
