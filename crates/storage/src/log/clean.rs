//! Log compaction (Kafka's LogCleaner, for `cleanup.policy=compact`): keep the latest
//! record of every key.
//!
//! A round (`Log::clean`):
//! 1. The dirty section runs from the cleaner checkpoint (`cleaner-offset-checkpoint`,
//!    the first offset not yet cleaned) to the first uncleanable segment: the active
//!    one, one not wholly below the persisted recovery point, or one with a record
//!    younger than `min.compaction.lag.ms`.
//! 2. A key -> latest offset map is built over the dirty section, in bounded memory
//!    (`dedupe_buffer_bytes / CLEANER_MAP_ENTRY_BYTES * 0.9` keys); when it is full the
//!    round cleans up to where it got, and the next round goes on (several passes).
//! 3. Every sealed segment from the log start to the end of the map is rewritten, in
//!    groups of adjacent segments that fit in one segment (`segment.bytes`), keeping a
//!    record when no later offset of its key is in the map. Keyless records go;
//!    tombstones get a delete horizon (now + `delete.retention.ms`, KIP-534) at their
//!    first cleaning and go at the first cleaning after it. Records of aborted
//!    transactions (the aborted-transaction index) go whatever their keys, and count for
//!    nothing in the map; a transaction marker stays while a batch of its transaction is
//!    kept in the pass, then gets a delete horizon and goes at the first cleaning after
//!    it (Kafka's cleaner). Nothing at or past the first offset of an open transaction
//!    is cleaned. Offsets never change: a batch keeps its base and last
//!    offset (`fjord_records::filter_batch`); a batch that loses every record is dropped,
//!    unless it is its producer's newest (kept empty, for the producer's sequence, as
//!    Kafka does) or the group's last (kept empty, so the group's offset range can be
//!    read back from its file when a swap is completed at open).
//! 4. Each group is swapped in crash-safely, as Kafka does: the new files are written as
//!    `<base>.log.cleaned` (and `.index.cleaned`, `.timeindex.cleaned`) and fsynced;
//!    under the admin lock the group is checked to still be in the log, its segments are
//!    frozen (readers of an older view keep reading the old files through their open
//!    descriptors), the files are renamed to `.swap` (the log file last) and the
//!    directory fsynced — the commit point — then the old segments' files are removed,
//!    the `.swap` files renamed to their final names and the directory fsynced again.
//!    `Log::open` removes `.cleaned` files and completes a `.log.swap` (`complete_swap`).
//! 5. The cleaner checkpoint moves to the end of the map.
//!
//! Only segments wholly below the persisted recovery point are cleaned, so recovery can
//! tell compaction's offset gaps (below the recovery point) from lost writes (above it).

#[allow(clippy::wildcard_imports)]
use super::*;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};

use fjord_model::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use fjord_model::limits::{CLEANER_DEDUPE_BUFFER_BYTES_DEFAULT, CLEANER_MAP_ENTRY_BYTES};
use fjord_records::filter_batch;

use crate::index::{OffsetIndex, TimeIndex};
use crate::segment::Indexes;

/// Suffix of a cleaned segment's files before its swap (`<base>.log.cleaned`).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment's files once committed (`<base>.log.swap`).
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// The first offset not yet cleaned (one entry, in the partition directory).
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// How a cleaning round may use memory and I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanOptions {
    /// `log.cleaner.dedupe.buffer.size` (per thread): bounds the key -> offset map.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: bytes read and written per second, at most.
    pub io_bytes_per_second_max: Option<u64>,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            dedupe_buffer_bytes: CLEANER_DEDUPE_BUFFER_BYTES_DEFAULT,
            io_bytes_per_second_max: None,
        }
    }
}

/// How dirty a compacted log is (`Log::cleanability`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cleanability {
    /// The cleaner checkpoint (at least the log start).
    pub first_dirty: Offset,
    /// Where the cleanable part of the log ends.
    pub first_uncleanable: Offset,
    /// Bytes of the segments already cleaned.
    pub clean_bytes: u64,
    /// Bytes of the cleanable segments not yet cleaned.
    pub dirty_bytes: u64,
    /// `dirty_bytes / (clean_bytes + dirty_bytes)`.
    pub dirty_ratio: f64,
    /// The oldest dirty record is older than `max.compaction.lag.ms`.
    pub overdue: bool,
}

impl Cleanability {
    /// Kafka's choice: dirty enough (`min.cleanable.dirty.ratio`) or overdue.
    pub fn should_clean(&self, min_dirty_ratio_ppm: u32) -> bool {
        self.dirty_bytes > 0
            && (self.overdue || self.dirty_ratio * 1e6 >= f64::from(min_dirty_ratio_ppm))
    }
}

/// What a cleaning round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub first_dirty: Offset,
    /// The new cleaner checkpoint.
    pub cleaned_to: Offset,
    /// Bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub records_read: u64,
    pub records_retained: u64,
    /// Keys in the offset map.
    pub map_keys: usize,
    /// The map filled before the dirty section's end: another round continues.
    pub map_full: bool,
    pub duration_us: u64,
}

/// A 128-bit hash of a key (Kafka's map keys by a 16-byte MD5 digest).
fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x5eed_u32.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Limits the cleaner's I/O rate by sleeping (Kafka's Throttler).
struct Throttle {
    rate: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate: rate.filter(|r| *r > 0),
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn account(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        if let Some(rate) = self.rate {
            let due = self.bytes as f64 / rate as f64;
            let elapsed = self.started.elapsed().as_secs_f64();
            if due > elapsed {
                std::thread::sleep(std::time::Duration::from_secs_f64(due - elapsed));
            }
        }
    }
}

fn with_suffix(dir: &Path, base: i64, kind: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", segment::file_name(base, kind)))
}

/// Completes a compaction whose `<base>.log.swap` survived a crash (see the module docs):
/// removes the old segments in the swap's offset range, renames the `.swap` files to their
/// final names. Returns the bases of the segments it removed (other than `base`).
pub(crate) fn complete_swap(
    fs: &dyn FileSystem,
    dir: &Path,
    base: i64,
    bases: &[i64],
) -> Result<Vec<i64>, StorageError> {
    let log_swap = with_suffix(dir, base, LOG_SUFFIX, SWAP_SUFFIX);
    let file = File::open(&log_swap).map_err(|e| StorageError::io_path("open", &log_swap, e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::io_path("stat", &log_swap, e))?
        .len();
    let mut scanner = Scanner::for_headers(&file, 0, len);
    let mut next = base;
    loop {
        match scanner.next_header() {
            Ok(Some((h, _))) => next = h.next_offset(),
            Ok(None) => break,
            Err(ScanError::Io(e)) => return Err(StorageError::io_path("read", &log_swap, e)),
            Err(ScanError::Bad(detail)) => {
                return Err(StorageError::Corrupt {
                    path: log_swap.display().to_string(),
                    position: 0,
                    detail,
                })
            }
        }
    }
    let replaced: Vec<i64> = bases
        .iter()
        .copied()
        .filter(|&b| b > base && b < next)
        .collect();
    for &old in &replaced {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = dir.join(segment::file_name(old, suffix));
            match fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io_path("remove", &p, e)),
            }
        }
    }
    for kind in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
        let from = with_suffix(dir, base, kind, SWAP_SUFFIX);
        if from.exists() {
            let to = dir.join(segment::file_name(base, kind));
            fs.rename(&from, &to)
                .map_err(|e| StorageError::io_path("rename", &from, e))?;
        }
    }
    Ok(replaced)
}

/// The aborted transactions of a log, by producer: (first offset, marker offset).
struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    fn new(aborted: Vec<crate::txn_index::AbortedTxn>) -> AbortedRanges {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in aborted {
            by_producer
                .entry(t.producer_id.0)
                .or_default()
                .push((t.first_offset.0, t.last_offset.0));
        }
        AbortedRanges(by_producer)
    }

    /// Whether a data batch belongs to an aborted transaction.
    fn holds(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.0.get(&h.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, marker)| first <= h.base_offset && h.base_offset < marker)
            })
    }
}

/// One group's rewrite, written and fsynced as `.cleaned` files.
struct Cleaned {
    base: i64,
    bytes: u64,
    records_read: u64,
    records_retained: u64,
}

impl Log {
    /// The first offset not yet cleaned (the cleaner checkpoint, at least the log start).
    pub fn first_dirty_offset(&self) -> Offset {
        Offset(
            self.cleaned_to
                .load(Ordering::Acquire)
                .max(self.view.read().log_start),
        )
    }

    /// How dirty the log is; `None` unless `cleanup.policy` holds `compact`.
    pub fn cleanability(&self, now_ms: i64) -> Option<Cleanability> {
        let cfg = self.config.read().clone();
        if !cfg.compact {
            return None;
        }
        let view = Arc::clone(&self.view.read());
        Some(self.cleanability_in(&view, &cfg, now_ms).0)
    }

    /// (cleanability, index of the first uncleanable segment).
    fn cleanability_in(&self, view: &View, cfg: &LogConfig, now_ms: i64) -> (Cleanability, usize) {
        let persisted_rp = self.checkpoint_state.lock().written;
        // Nothing at or past the first offset of an open transaction is cleaned: whether
        // its records stay depends on its marker (Kafka's first unstable offset bound).
        let first_unstable = self.first_unstable_offset().map_or(i64::MAX, |o| o.0);
        let segs = &view.segments;
        let last = segs.len() - 1;
        let mut uncleanable = last;
        for i in 0..last {
            let next_base = segs[i + 1].base_offset;
            let max_ts = segs[i].max_timestamp().0;
            let too_young = cfg.min_compaction_lag_ms > 0
                && max_ts >= 0
                && now_ms.saturating_sub(max_ts) < cfg.min_compaction_lag_ms;
            if next_base > persisted_rp || next_base > first_unstable || too_young {
                uncleanable = i;
                break;
            }
        }
        let first_uncleanable = segs[uncleanable].base_offset;
        let first_dirty = self.cleaned_to.load(Ordering::Acquire).max(view.log_start);
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut first_dirty_seg = None;
        for i in 0..uncleanable {
            if segs[i + 1].base_offset <= first_dirty {
                clean_bytes += segs[i].size();
            } else {
                dirty_bytes += segs[i].size();
                first_dirty_seg.get_or_insert(i);
            }
        }
        let overdue = first_dirty_seg.is_some_and(|i| {
            cfg.max_compaction_lag_ms < i64::MAX
                && first_timestamp(&segs[i])
                    .is_some_and(|ts| now_ms.saturating_sub(ts) > cfg.max_compaction_lag_ms)
        });
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        (
            Cleanability {
                first_dirty: Offset(first_dirty),
                first_uncleanable: Offset(first_uncleanable),
                clean_bytes,
                dirty_bytes,
                dirty_ratio,
                overdue,
            },
            uncleanable,
        )
    }

    /// Runs one cleaning round if the log is compacted and has a cleanable dirty section
    /// (whatever its dirty ratio: the caller decides with `cleanability`). Returns what it
    /// did, `None` if there was nothing to clean. An error before a group's commit point
    /// leaves the log as it was (the `.cleaned` files are removed); after it, the log goes
    /// offline (reopening completes the swap).
    pub fn clean(
        &self,
        now_ms: i64,
        opts: &CleanOptions,
    ) -> Result<Option<CleanStats>, StorageError> {
        let _cleaning = self.cleaning.lock();
        self.check_writable()?;
        let cfg = self.config.read().clone();
        if !cfg.compact {
            return Ok(None);
        }
        let started = Instant::now();
        let view = Arc::clone(&self.view.read());
        let (c, uncleanable) = self.cleanability_in(&view, &cfg, now_ms);
        if c.dirty_bytes == 0 {
            return Ok(None);
        }
        let first_dirty = c.first_dirty.0;
        let mut throttle = Throttle::new(opts.io_bytes_per_second_max);

        // Aborted transactions: their records count for nothing and go.
        let aborted =
            AbortedRanges::new(self.aborted_transactions(Offset(view.log_start), Offset(i64::MAX)));

        // The key -> latest offset map over the dirty section (committed and
        // non-transactional records only).
        let capacity = (opts.dedupe_buffer_bytes / CLEANER_MAP_ENTRY_BYTES * 9 / 10).max(1);
        let mut map: HashMap<u128, i64> = HashMap::new();
        let mut end = first_dirty;
        let mut map_full = false;
        'segments: for i in 0..uncleanable {
            let seg = &view.segments[i];
            let seg_end = view.segments[i + 1].base_offset;
            if seg_end <= first_dirty {
                continue;
            }
            let file = self.segment_file(seg, first_dirty, seg_end)?;
            let mut scanner = Scanner::new(&file, 0, seg.size());
            loop {
                let (h, pos) = match scanner.next_header() {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, 0, e)),
                };
                if h.last_offset() < first_dirty {
                    continue;
                }
                let records = usize::try_from(h.records_count).unwrap_or(0);
                if !map.is_empty() && map.len() + records > capacity {
                    map_full = true;
                    break 'segments;
                }
                let bytes = scanner
                    .window(pos, h.total_bytes())
                    .map_err(|e| StorageError::io(format!("read {}", seg.display()), e))?;
                throttle.account(bytes.len());
                if !h.is_control() && !aborted.holds(&h) {
                    fjord_records::visit_records_bounded(
                        bytes,
                        DECOMPRESSED_BATCH_BYTES_MAX,
                        |r| {
                            if let Some(k) = r.key {
                                map.insert(key_hash(k), r.offset);
                            }
                        },
                    )
                    .map_err(|e| StorageError::Corrupt {
                        path: seg.display(),
                        position: pos,
                        detail: e.to_string(),
                    })?;
                }
                end = h.next_offset();
            }
            end = end.max(seg_end);
        }
        if end <= first_dirty {
            return Ok(None);
        }

        // Producers' newest batches (kept, if only empty, for their sequences).
        let producer_last: HashSet<i64> = self.append.lock().producers.newest_batch_offsets();

        // Groups of adjacent segments below the map's end, each fitting in one segment.
        let count = view.segments[..uncleanable]
            .iter()
            .take_while(|s| s.base_offset < end)
            .count();
        let mut groups: Vec<Vec<Arc<Segment>>> = Vec::new();
        let mut i = 0;
        while i < count {
            let base = view.segments[i].base_offset;
            let mut bytes = view.segments[i].size();
            let mut j = i + 1;
            while j < count {
                let size = view.segments[j].size();
                let span = view.segments[j + 1].base_offset - base;
                if bytes + size > cfg.segment_bytes_max || span > i64::from(i32::MAX) {
                    break;
                }
                bytes += size;
                j += 1;
            }
            groups.push(view.segments[i..j].to_vec());
            i = j;
        }

        let mut stats = CleanStats {
            first_dirty: Offset(first_dirty),
            cleaned_to: Offset(end),
            map_keys: map.len(),
            map_full,
            ..CleanStats::default()
        };
        let horizon = now_ms.saturating_add(cfg.delete_retention_ms.max(0));
        // Producers whose transaction has records kept so far in this pass (their
        // marker stays); carried across groups, as a transaction may span them.
        let mut txns_with_data: HashSet<i64> = HashSet::new();
        for group in &groups {
            let before: u64 = group.iter().map(|s| s.size()).sum();
            let cleaned = match self.write_cleaned(
                group,
                &map,
                end,
                now_ms,
                horizon,
                &producer_last,
                (&aborted, &mut txns_with_data),
                &cfg,
                &mut throttle,
            ) {
                Ok(c) => c,
                Err(e) => {
                    self.remove_cleaned(group[0].base_offset);
                    return Err(e);
                }
            };
            stats.records_read += cleaned.records_read;
            stats.records_retained += cleaned.records_retained;
            let swapped = self.swap_in(group, &cleaned);
            if swapped.is_err() {
                // Before the commit point the `.cleaned` files go; after it they were
                // renamed (nothing to remove) and reopening completes the swap.
                self.remove_cleaned(group[0].base_offset);
            }
            if !swapped? {
                // The log changed under the round (retention, truncation): stop here.
                self.remove_cleaned(group[0].base_offset);
                stats.cleaned_to = Offset(first_dirty);
                return Ok(Some(stats));
            }
            stats.bytes_before += before;
            stats.bytes_after += cleaned.bytes;
            stats.segments_before += group.len();
            stats.segments_after += 1;
        }

        checkpoint::write_offset(&*self.ctx.fs, &self.dir, CLEANER_CHECKPOINT_FILE, end)
            .map_err(|e| StorageError::io_path("write cleaner checkpoint in", &self.dir, e))?;
        let previous = self.cleaned_to.swap(end, Ordering::AcqRel);
        assert!(
            previous <= end,
            "cleaner checkpoint {previous} moved back to {end}"
        );
        stats.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::info!(
            dir = %self.dir.display(),
            dirty_ratio = format!("{:.3}", c.dirty_ratio),
            dirty_bytes = c.dirty_bytes,
            first_dirty,
            cleaned_to = end,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            segments_before = stats.segments_before,
            segments_after = stats.segments_after,
            records_read = stats.records_read,
            records_retained = stats.records_retained,
            duration_ms = stats.duration_us / 1000,
            "cleaned log"
        );
        Ok(Some(stats))
    }

    fn remove_cleaned(&self, base: i64) {
        for kind in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = with_suffix(&self.dir, base, kind, CLEANED_SUFFIX);
            let _ = self.ctx.fs.remove_file(&p);
        }
    }

    /// Writes a group's cleaned files (`.cleaned`) and fsyncs them.
    #[allow(clippy::too_many_arguments)]
    fn write_cleaned(
        &self,
        group: &[Arc<Segment>],
        map: &HashMap<u128, i64>,
        end: i64,
        now_ms: i64,
        horizon: i64,
        producer_last: &HashSet<i64>,
        (aborted, txns_with_data): (&AbortedRanges, &mut HashSet<i64>),
        cfg: &LogConfig,
        throttle: &mut Throttle,
    ) -> Result<Cleaned, StorageError> {
        let fs = &*self.ctx.fs;
        let dir = &self.dir;
        let base = group[0].base_offset;
        let log_path = with_suffix(dir, base, LOG_SUFFIX, CLEANED_SUFFIX);
        let idx_path = with_suffix(dir, base, INDEX_SUFFIX, CLEANED_SUFFIX);
        let tidx_path = with_suffix(dir, base, TIME_INDEX_SUFFIX, CLEANED_SUFFIX);
        let out = fs
            .open(
                &log_path,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true),
            )
            .map_err(|e| StorageError::io_path("create", &log_path, e))?;
        let offset = OffsetIndex::create(fs, &idx_path, base, cfg.index_bytes_max)
            .map_err(|e| StorageError::io_path("create", &idx_path, e))?;
        let time = TimeIndex::create(fs, &tidx_path, base, cfg.index_bytes_max)
            .map_err(|e| StorageError::io_path("create", &tidx_path, e))?;
        let mut indexes = Indexes::new(offset, time);
        let mut position = 0u64;
        let mut result = Cleaned {
            base,
            bytes: 0,
            records_read: 0,
            records_retained: 0,
        };
        let mut last_written = i64::MIN;
        for (n, seg) in group.iter().enumerate() {
            let file = self.segment_file(seg, base, end)?;
            let size = seg.size();
            let mut scanner = Scanner::new(&file, 0, size);
            loop {
                let (h, pos) = match scanner.next_header() {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, 0, e)),
                };
                let bytes = scanner
                    .window(pos, h.total_bytes())
                    .map_err(|e| StorageError::io(format!("read {}", seg.display()), e))?;
                throttle.account(bytes.len());
                let group_last = n + 1 == group.len() && pos + h.total_bytes() as u64 == size;
                let corrupt = |e: fjord_records::RecordsError| StorageError::Corrupt {
                    path: seg.display(),
                    position: pos,
                    detail: e.to_string(),
                };
                let kept_whole = |result: &mut Cleaned| {
                    result.records_read += u64::try_from(h.records_count).unwrap_or(0);
                    result.records_retained += u64::try_from(h.records_count).unwrap_or(0);
                };
                let newest_of_producer =
                    h.has_producer_id() && producer_last.contains(&h.last_offset());
                let rewritten: Option<Vec<u8>> = if h.base_offset >= end {
                    // Past the map's end nothing is cleaned.
                    kept_whole(&mut result);
                    None
                } else if h.is_control() {
                    // A transaction marker stays while records of its transaction do
                    // (Kafka's cleaner); once none is left it gets a delete horizon, and
                    // goes at the first cleaning after it.
                    let is_marker = fjord_records::control::parse_end_txn_marker(&h, bytes)
                        .map_err(corrupt)?
                        .is_some();
                    if !is_marker || txns_with_data.remove(&h.producer_id) {
                        kept_whole(&mut result);
                        None
                    } else if !h.has_delete_horizon() {
                        kept_whole(&mut result);
                        Some(
                            fjord_records::with_delete_horizon(
                                bytes,
                                DECOMPRESSED_BATCH_BYTES_MAX,
                                horizon,
                            )
                            .map_err(corrupt)?,
                        )
                    } else if now_ms >= h.base_timestamp && !group_last && !newest_of_producer {
                        result.records_read += u64::try_from(h.records_count).unwrap_or(0);
                        continue;
                    } else {
                        kept_whole(&mut result);
                        None
                    }
                } else {
                    // Records of an aborted transaction go, whatever their keys.
                    let aborted_batch = aborted.holds(&h);
                    let f = filter_batch(bytes, DECOMPRESSED_BATCH_BYTES_MAX, Some(horizon), |r| {
                        if aborted_batch {
                            return false;
                        }
                        let Some(key) = r.key else {
                            return false;
                        };
                        if map
                            .get(&key_hash(key))
                            .is_some_and(|&latest| r.offset < latest)
                        {
                            return false;
                        }
                        // A tombstone goes once its batch's delete horizon has passed.
                        r.value.is_some() || !h.has_delete_horizon() || now_ms < h.base_timestamp
                    })
                    .map_err(corrupt)?;
                    result.records_read += f.records_read as u64;
                    result.records_retained += f.records_retained as u64;
                    let sets_horizon = f.retains_tombstone && !h.has_delete_horizon();
                    let out = if f.records_retained == f.records_read && !sets_horizon {
                        None
                    } else if f.records_retained == 0 && !group_last && !newest_of_producer {
                        continue;
                    } else {
                        Some(f.batch)
                    };
                    // A transaction with a batch kept (an aborted one's only empty, for its
                    // producer's sequence) keeps its marker in this pass.
                    if h.is_transactional() && (f.records_retained > 0 || aborted_batch) {
                        txns_with_data.insert(h.producer_id);
                    }
                    out
                };
                let batch: &[u8] = rewritten.as_deref().unwrap_or(bytes);
                let header = BatchHeader::parse(batch).map_err(corrupt)?;
                assert!(
                    header.base_offset > last_written,
                    "cleaned batch at {} after offset {last_written}",
                    header.base_offset
                );
                last_written = header.last_offset();
                fs.write_at(&log_path, &out, batch, position)
                    .map_err(|e| StorageError::io_path("write", &log_path, e))?;
                throttle.account(batch.len());
                indexes.on_batch(&header, position, cfg.index_interval_bytes);
                position += batch.len() as u64;
            }
        }
        result.bytes = position;
        fs.sync_data(&log_path, &out)
            .map_err(|e| StorageError::io_path("fsync", &log_path, e))?;
        indexes
            .write_exact(fs)
            .map_err(|e| StorageError::io_path("write", &idx_path, e))?;
        indexes
            .offset
            .sync(fs)
            .map_err(|e| StorageError::io_path("fsync", &idx_path, e))?;
        indexes
            .time
            .sync(fs)
            .map_err(|e| StorageError::io_path("fsync", &tidx_path, e))?;
        Ok(result)
    }

    /// Swaps a group's cleaned files in (see the module docs). `Ok(false)`: the group is no
    /// longer in the log (nothing was changed).
    fn swap_in(&self, group: &[Arc<Segment>], cleaned: &Cleaned) -> Result<bool, StorageError> {
        let _admin = self.admin.lock();
        self.check_writable()?;
        let fs = &*self.ctx.fs;
        let dir = &self.dir;
        let base = cleaned.base;
        let (at, group_end) = {
            let view = self.view.read();
            let Some(at) = view.segments.iter().position(|s| Arc::ptr_eq(s, &group[0])) else {
                return Ok(false);
            };
            let present = view.segments.len() > at + group.len()
                && group
                    .iter()
                    .zip(&view.segments[at..])
                    .all(|(a, b)| Arc::ptr_eq(a, b));
            if !present {
                return Ok(false);
            }
            (at, view.segments[at + group.len()].base_offset)
        };
        for seg in group {
            seg.freeze()
                .map_err(|e| StorageError::io(format!("open {}", seg.display()), e))?;
        }
        let commit = (|| -> io::Result<()> {
            checkpoint::sync_dir(fs, dir)?;
            for kind in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                fs.rename(
                    &with_suffix(dir, base, kind, CLEANED_SUFFIX),
                    &with_suffix(dir, base, kind, SWAP_SUFFIX),
                )?;
            }
            checkpoint::sync_dir(fs, dir)
        })();
        if let Err(e) = commit {
            // Whether the swap is durable is unknown: reopening decides.
            let err = StorageError::io_path("commit compaction in", dir, e);
            self.fail(&err);
            return Err(err);
        }
        let finish = (|| -> Result<Arc<Segment>, StorageError> {
            // The merged segment's aborted transactions, before the others' files go (a
            // crash in between leaves entries twice: recovery keeps one).
            self.persist_txn_index(base, group_end)?;
            for seg in &group[1..] {
                seg.delete_files()
                    .map_err(|e| StorageError::io(format!("remove {}", seg.display()), e))?;
            }
            for kind in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                let from = with_suffix(dir, base, kind, SWAP_SUFFIX);
                fs.rename(&from, &dir.join(segment::file_name(base, kind)))
                    .map_err(|e| StorageError::io_path("rename", &from, e))?;
            }
            checkpoint::sync_dir(fs, dir).map_err(|e| StorageError::io_path("fsync", dir, e))?;
            match Segment::open_sealed(&self.ctx, dir, base)? {
                (Some(seg), _) => Ok(Arc::new(seg)),
                (None, problem) => Err(StorageError::Corrupt {
                    path: dir
                        .join(segment::file_name(base, LOG_SUFFIX))
                        .display()
                        .to_string(),
                    position: 0,
                    detail: problem.unwrap_or_default(),
                }),
            }
        })();
        let new_seg = match finish {
            Ok(s) => s,
            Err(e) => {
                self.fail(&e);
                return Err(e);
            }
        };
        assert_eq!(
            new_seg.size(),
            cleaned.bytes,
            "{}: cleaned size",
            new_seg.display()
        );
        {
            let mut v = self.view.write();
            let mut nv = View::clone(&v);
            assert!(
                Arc::ptr_eq(&nv.segments[at], &group[0]),
                "segments changed under the admin lock"
            );
            nv.segments.splice(at..at + group.len(), [new_seg]);
            *v = Arc::new(nv);
        }
        for seg in group {
            seg.deleted.store(true, Ordering::Release);
        }
        Ok(true)
    }
}

/// Timestamp of a segment's first batch (its first record's create time), if readable.
fn first_timestamp(seg: &Arc<Segment>) -> Option<i64> {
    let file = seg.file().ok()?;
    let mut scanner = Scanner::for_headers(&file, 0, seg.size());
    match scanner.next_header() {
        Ok(Some((h, _))) if !h.has_delete_horizon() => Some(h.base_timestamp),
        Ok(Some((h, _))) => Some(h.max_timestamp),
        _ => None,
    }
}
