//! Opening a log: inventory, completing an interrupted truncation, scanning what is not
//! known to be durable, rebuilding indexes and the idempotent-producer state.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Log {
    /// Opens (creating if missing) the partition log in `dir`, recovering after a crash.
    /// Its background flushes run on `storage`'s threads and its sealed segments' handles
    /// count against `storage`'s cache.
    pub fn open(
        storage: &Storage,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Arc<Log>, RecoveryReport), StorageError> {
        let ctx = Arc::clone(storage.context());
        let started = Instant::now();
        let config = config.normalized();
        let mut report = RecoveryReport::default();
        // A new log: nothing of its creation is fsynced here (no data depends on it yet,
        // and a partition whose directory or files a crash lost is recreated empty by the
        // next `open`); the first sync round of data makes the directory entries durable
        // (`parent_dirty`, `dir_dirty`) before the data counts as durable.
        let created = !dir.exists();
        if created {
            ctx.fs
                .create_dir_all(dir)
                .map_err(|e| StorageError::io_path("create", dir, e))?;
        }

        // Inventory; remove leftovers of interrupted operations. A directory just created
        // holds nothing: no listing, no checkpoint to read (creating 1,000 partitions
        // looked for about ten missing files each).
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        let mut txn_files = Vec::new();
        let mut marker_seen = false;
        let mut swaps = Vec::new();
        let mut swap_indexes = Vec::new();
        let listing = if created {
            None
        } else {
            Some(fs::read_dir(dir).map_err(|e| StorageError::io_path("list", dir, e))?)
        };
        for entry in listing.into_iter().flatten() {
            let entry = entry.map_err(|e| StorageError::io_path("list", dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(".tmp")
                || name.ends_with(".deleted")
                || name.ends_with(clean::CLEANED_SUFFIX)
            {
                // `.cleaned`: a compaction that had not reached its swap; the old segments
                // are intact.
                let _ = ctx.fs.remove_file(&entry.path());
                continue;
            }
            if let Some(stem) = name.strip_suffix(clean::SWAP_SUFFIX) {
                if let Some((base, LOG_SUFFIX)) = segment::parse_file_name(stem) {
                    swaps.push(base);
                } else {
                    swap_indexes.push(entry.path());
                }
                continue;
            }
            if name == CLEAN_SHUTDOWN_FILE {
                marker_seen = true;
                continue;
            }
            match segment::parse_file_name(&name) {
                Some((base, LOG_SUFFIX)) => bases.push(base),
                Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => {
                    index_files.push((base, entry.path()))
                }
                Some((base, crate::txn_index::TXN_INDEX_SUFFIX)) => txn_files.push(base),
                _ => {}
            }
        }
        bases.sort_unstable();
        // A compaction interrupted after its commit point (`.log.swap` written): finish it.
        // Index `.swap` files without their `.log.swap` belong to one that had not reached
        // it: the old segment is intact.
        swaps.sort_unstable();
        for &base in &swaps {
            let replaced = clean::complete_swap(&*ctx.fs, dir, base, &bases)?;
            warn_problem(
                &mut report,
                dir,
                format!(
                    "completed an interrupted compaction: segment {base} replaces {replaced:?}"
                ),
            );
            bases.retain(|b| !replaced.contains(b));
            if let Err(at) = bases.binary_search(&base) {
                bases.insert(at, base);
            }
        }
        for path in swap_indexes {
            if path.exists() {
                let _ = ctx.fs.remove_file(&path);
            }
        }
        if !swaps.is_empty() {
            checkpoint::sync_dir(&*ctx.fs, dir)
                .map_err(|e| StorageError::io_path("fsync", dir, e))?;
        }
        index_files.retain(|(_, p)| p.exists());
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                warn_problem(
                    &mut report,
                    dir,
                    format!("removing orphan index {}", path.display()),
                );
                let _ = ctx.fs.remove_file(&path);
            }
        }

        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        report.clean = marker_seen;
        let read_offset = |name| {
            if created {
                Ok(None)
            } else {
                checkpoint::read_offset(dir, name)
            }
        };
        let recovery_point = match read_offset(RECOVERY_POINT_FILE) {
            Ok(rp) => rp,
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("recovery point checkpoint unreadable: {e}"),
                );
                None
            }
        };
        report.recovery_point = recovery_point.map(Offset);
        // Everything below the recovery point was on stable storage before the crash:
        // offset gaps there are compaction's, not a lost write (see `Segment::gaps_below`).
        let gaps_below = recovery_point.unwrap_or(i64::MIN);
        let start_checkpoint = match read_offset(LOG_START_FILE) {
            Ok(ls) => ls,
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("log start checkpoint unreadable: {e}"),
                );
                None
            }
        };
        let epochs_read = if created {
            Ok(Vec::new())
        } else {
            checkpoint::read_epochs(dir)
        };
        let mut epochs = match epochs_read {
            Ok(e) => e,
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("leader epoch checkpoint unreadable: {e}"),
                );
                Vec::new()
            }
        };

        // A truncation interrupted by a crash: complete it before anything is read.
        let mut recovery_point = recovery_point;
        let truncation = if created {
            Ok(None)
        } else {
            checkpoint::read_truncation(dir)
        };
        match truncation {
            Ok(None) => {}
            Ok(Some(t)) => {
                complete_truncation(&*ctx.fs, dir, t, &mut bases, &mut report)?;
                if marker_seen {
                    ctx.fs
                        .remove_file(&marker)
                        .map_err(|e| StorageError::io_path("remove", &marker, e))?;
                    report.clean = false;
                }
                if recovery_point.is_none_or(|rp| rp > t.log_end) {
                    checkpoint::write_offset(&*ctx.fs, dir, RECOVERY_POINT_FILE, t.log_end)
                        .map_err(|e| StorageError::io_path("write checkpoint in", dir, e))?;
                    recovery_point = Some(t.log_end);
                }
                let keep = epochs.partition_point(|&(_, s)| s < t.log_end);
                if keep < epochs.len() {
                    epochs.truncate(keep);
                    checkpoint::write_epochs(&*ctx.fs, dir, &epochs)
                        .map_err(|e| StorageError::io_path("write leader epochs in", dir, e))?;
                }
                checkpoint::sync_dir(&*ctx.fs, dir)
                    .map_err(|e| StorageError::io_path("fsync", dir, e))?;
                let intent = dir.join(TRUNCATION_FILE);
                ctx.fs
                    .remove_file(&intent)
                    .map_err(|e| StorageError::io_path("remove", &intent, e))?;
                checkpoint::sync_dir(&*ctx.fs, dir)
                    .map_err(|e| StorageError::io_path("fsync", dir, e))?;
                report.truncation_completed = Some(Offset(t.log_end));
            }
            Err(e) => {
                // Not written by us (the file is replaced atomically). Whatever the interrupted
                // truncation left is a prefix of the log, which recovery handles.
                warn_problem(
                    &mut report,
                    dir,
                    format!("removing unreadable truncation intent: {e}"),
                );
                let intent = dir.join(TRUNCATION_FILE);
                ctx.fs
                    .remove_file(&intent)
                    .map_err(|e| StorageError::io_path("remove", &intent, e))?;
            }
        }

        // Segments before `scan_from` are trusted; the others are validated batch by batch.
        // After a crash, the segment holding the recovery point is scanned only from its
        // last index entry below the recovery point on.
        let rp_trusted = if report.clean {
            i64::MAX
        } else {
            recovery_point.unwrap_or(i64::MIN)
        };
        let scan_from = if report.clean {
            bases.len()
        } else {
            bases
                .partition_point(|&b| b <= rp_trusted)
                .saturating_sub(1)
        };
        let last_i = bases.len().saturating_sub(1);
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
        let mut scanned: Vec<bool> = Vec::with_capacity(bases.len());
        let mut active_next: Option<Option<i64>> = None;
        let interval = config.index_interval_bytes;
        let index_max = config.index_bytes_max;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i == last_i;
            report.segments_loaded += 1;
            let mut outcome = None;
            let seg = if i < scan_from && !is_last {
                match Segment::open_sealed(&ctx, dir, base)? {
                    (Some(seg), _) => seg,
                    (None, problem) => {
                        let problem = problem.unwrap_or_default();
                        warn_problem(&mut report, dir, format!("rebuilding index: {problem}"));
                        let (seg, _) = Segment::open_rw(&ctx, dir, base, index_max, i64::MIN)?;
                        seg.gaps_below.store(gaps_below, Ordering::Release);
                        outcome = Some(seg.recover(interval, i64::MIN)?);
                        report.indexes_rebuilt += 1;
                        seg
                    }
                }
            } else if report.clean {
                // The active segment after a clean shutdown: find its end from the index.
                let (seg, all) = Segment::open_rw(&ctx, dir, base, index_max, i64::MAX)?;
                seg.gaps_below.store(gaps_below, Ordering::Release);
                let tail = if all {
                    seg.scan_tail(interval)
                } else {
                    Err("index files do not match the segment".to_string())
                };
                match tail {
                    Ok(next) => active_next = Some(next),
                    Err(p) => {
                        warn_problem(
                            &mut report,
                            dir,
                            format!("{}: {p}; rebuilding its index", seg.display()),
                        );
                        outcome = Some(seg.recover(interval, i64::MIN)?);
                        report.indexes_rebuilt += 1;
                    }
                }
                seg
            } else if i == scan_from {
                let (seg, _) = Segment::open_rw(&ctx, dir, base, index_max, rp_trusted)?;
                seg.gaps_below.store(gaps_below, Ordering::Release);
                outcome = Some(seg.recover_from_index(interval, rp_trusted)?);
                seg
            } else {
                let (seg, _) = Segment::open_rw(&ctx, dir, base, index_max, i64::MIN)?;
                seg.gaps_below.store(gaps_below, Ordering::Release);
                outcome = Some(seg.recover(interval, i64::MIN)?);
                report.indexes_rebuilt += 1;
                seg
            };
            let mut stop = false;
            if let Some(o) = &outcome {
                report.segments_scanned += 1;
                report.bytes_scanned += o.bytes_scanned;
                if is_last {
                    active_next = Some(o.next_offset);
                }
                if let Some(p) = &o.problem {
                    report.bytes_truncated += o.bytes_truncated;
                    warn_problem(
                        &mut report,
                        dir,
                        format!(
                            "{}: {p}; truncated {} bytes",
                            seg.display(),
                            o.bytes_truncated
                        ),
                    );
                    if !is_last {
                        stop = true;
                        active_next = Some(o.next_offset);
                    }
                }
            }
            // A hole: the next segment does not start where this one's last batch ends. A
            // log without compaction has no legitimate gaps, so the crash lost the end of
            // this segment while a later one kept data (write-back order is not the log's
            // order). The log ends at the hole, as it would at a corrupt batch.
            let mut hole = None;
            if let (Some(o), false, false) = (&outcome, stop, is_last) {
                let end = o.next_offset.unwrap_or(base);
                let next_base = bases[i + 1];
                let compacted_gap = end < next_base && next_base <= gaps_below;
                if end != next_base && !compacted_gap {
                    hole = Some(end);
                    report.hole_at = Some(Offset(end));
                    warn_problem(
                        &mut report,
                        dir,
                        format!(
                            "{} ends at offset {end} but the next segment starts at \
                             {next_base}; the log ends at the hole",
                            seg.display()
                        ),
                    );
                    stop = true;
                    active_next = Some(o.next_offset);
                }
            }
            scanned.push(outcome.is_some());
            segments.push(Arc::new(seg));
            if stop {
                // Everything after a corrupt batch or a hole is unreachable: drop the later
                // segments.
                for &later in &bases[i + 1..] {
                    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                        let p = dir.join(segment::file_name(later, suffix));
                        if let Err(e) = ctx.fs.remove_file(&p) {
                            if e.kind() != io::ErrorKind::NotFound {
                                return Err(StorageError::io_path("remove", &p, e));
                            }
                        }
                    }
                    report.segments_deleted += 1;
                }
                warn_problem(
                    &mut report,
                    dir,
                    format!(
                        "deleted {} segments after the {}",
                        bases.len() - i - 1,
                        if hole.is_some() { "hole" } else { "corruption" }
                    ),
                );
                break;
            }
        }

        if segments.is_empty() {
            let base = start_checkpoint.unwrap_or(0).max(0);
            segments.push(Arc::new(Segment::create(&ctx, dir, base, index_max)?));
            scanned.push(false);
            active_next = Some(None);
        }
        let last = segments.len() - 1;
        let active = Arc::clone(&segments[last]);
        let next = active_next.unwrap_or(None);
        let log_end = next.unwrap_or(active.base_offset).max(active.base_offset);

        // A crash with nothing to repair (no truncation, only the active segment scanned):
        // no fsync here. The scanned tail may still be only in the page cache (the process
        // died, not the machine), so it counts as not yet durable, exactly as before the
        // crash: the background flush queued below syncs it, and the next checkpoint
        // records it; another crash before that just scans the same tail again.
        let light = !report.clean
            && scanned[last]
            && report.bytes_truncated == 0
            && report.segments_deleted == 0
            && scanned.iter().enumerate().all(|(i, s)| !*s || i == last);

        let first_base = segments[0].base_offset;
        let log_start = start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        epochs.retain(|&(_, start)| start <= log_end);
        truncate_epochs_from_start(&mut epochs, log_start);
        let cleaned_to = match read_offset(clean::CLEANER_CHECKPOINT_FILE) {
            Ok(c) => c.unwrap_or(log_start).clamp(log_start, log_end),
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("cleaner checkpoint unreadable (the log is cleaned again): {e}"),
                );
                log_start
            }
        };
        // Aborted transactions: the files' entries, those after the producer snapshot
        // rebuilt with the producer state; then each segment's file made to match.
        txn_files.sort_unstable();
        let loaded = txns::load_txn_files(dir, &txn_files, &mut report);
        let (mut aborted, rebuild_below) =
            match txns::index_from_loaded(&loaded, first_base, log_end) {
                Some(idx) => (idx, loaded.damaged.unwrap_or(i64::MAX)),
                None => (TxnIndex::new(), first_base),
            };
        let producers = if created {
            // Nothing to replay, no snapshot to look for.
            ProducerStateMap::default()
        } else {
            rebuild_producer_state(
                &*ctx.fs,
                dir,
                &segments,
                log_end,
                rebuild_below,
                now_ms,
                &mut report,
                &mut aborted,
            )?
        };
        for (i, seg) in segments.iter().enumerate() {
            let next = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset);
            let want = aborted.entries_between(Offset(seg.base_offset), Offset(next));
            if loaded
                .on_disk
                .get(&seg.base_offset)
                .map_or(&[][..], Vec::as_slice)
                != want
                || (want.is_empty() && loaded.on_disk.contains_key(&seg.base_offset))
            {
                txns::write_txn_file(&*ctx.fs, dir, seg.base_offset, want)?;
            }
        }
        for base in loaded.on_disk.keys() {
            if segments
                .binary_search_by_key(base, |s| s.base_offset)
                .is_err()
            {
                txns::write_txn_file(&*ctx.fs, dir, *base, &[])?;
            }
        }

        let (recovery_point_now, checkpoint_written) = if light {
            active.flushed_size.store(0, Ordering::Release);
            let durable = recovery_point.unwrap_or(0).clamp(0, log_end);
            (durable, recovery_point.unwrap_or(i64::MIN))
        } else {
            // Scanned segments get exact index files; sealed ones drop their in-memory
            // copies. Then make what recovery produced durable and record it.
            for (i, seg) in segments.iter().enumerate().filter(|(i, _)| scanned[*i]) {
                seg.finish_recovery(i != last).map_err(|e| {
                    StorageError::io(format!("write index of {}", seg.display()), e)
                })?;
            }
            if scanned.iter().any(|s| *s) || (!report.clean && !created) {
                for (seg, _) in segments.iter().zip(&scanned).filter(|(_, s)| **s) {
                    seg.sync_data_now()
                        .map_err(|e| StorageError::io(format!("fsync {}", seg.display()), e))?;
                    seg.index_dirty.store(true, Ordering::Release);
                    seg.sync_indexes_if_dirty().map_err(|e| {
                        StorageError::io(format!("fsync index of {}", seg.display()), e)
                    })?;
                    seg.track_file();
                }
                checkpoint::sync_dir(&*ctx.fs, dir)
                    .map_err(|e| StorageError::io_path("fsync", dir, e))?;
            }
            let rp_now = if report.clean {
                recovery_point.unwrap_or(log_end).min(log_end)
            } else {
                log_end
            };
            if created {
                // Empty: a missing checkpoint means the same (recovery scans from the
                // start); the flusher writes one once data past it is durable.
                assert_eq!(rp_now, log_end, "a new log holds data");
                (rp_now, rp_now)
            } else {
                if !report.clean || recovery_point != Some(rp_now) {
                    checkpoint::write_offset(&*ctx.fs, dir, RECOVERY_POINT_FILE, rp_now)
                        .map_err(|e| StorageError::io_path("write checkpoint in", dir, e))?;
                }
                (rp_now, rp_now)
            }
        };
        // The marker's removal is made durable before the first write (see `append`):
        // until then the files are exactly what the marker vouches for.
        let marker_unsynced = report.clean;
        if report.clean {
            ctx.fs
                .remove_file(&marker)
                .map_err(|e| StorageError::io_path("remove", &marker, e))?;
        }

        // The log's invariants as recovery leaves them (each call that changes them later
        // asserts them again).
        assert!(
            log_start <= log_end && recovery_point_now <= log_end,
            "recovered log start {log_start}, recovery point {recovery_point_now}, end {log_end}"
        );
        assert_epochs_ordered(&epochs);
        report.log_start_offset = Offset(log_start);
        report.log_end_offset = Offset(log_end);
        report.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if !report.problems.is_empty() {
            tracing::warn!(
                dir = %dir.display(),
                truncated = report.bytes_truncated,
                rebuilt = report.indexes_rebuilt,
                "log recovered with problems"
            );
        }
        let fs_root = ctx.filesystem_root(dir);
        let log = Arc::new_cyclic(|me| Log {
            dir: dir.to_path_buf(),
            me: me.clone(),
            ctx,
            append: Mutex::new(AppendState {
                active: Arc::clone(&active),
                roll_base_ms: now_ms,
                messages_since_flush: 0,
                last_flush_ms: now_ms,
                producers,
            }),
            view: RwLock::new(Arc::new(View {
                segments,
                log_start,
            })),
            log_end: AtomicI64::new(log_end),
            sync: Mutex::new(SyncState {
                durable_end: recovery_point_now,
                waiters: Vec::new(),
                queued: false,
                generation: 0,
            }),
            admin: Mutex::new(()),
            checkpoint_state: Mutex::new(CheckpointState {
                written: checkpoint_written,
                at: Instant::now(),
                force: light,
            }),
            recovery_point: AtomicI64::new(recovery_point_now),
            marker_unsynced: AtomicBool::new(marker_unsynced),
            status: AtomicU8::new(OPEN),
            failure: Mutex::new(None),
            dir_dirty: AtomicBool::new(created),
            parent_dirty: AtomicBool::new(created),
            unsynced_files: Mutex::new(Vec::new()),
            config: RwLock::new(config),
            epochs: Mutex::new(epochs),
            cleaned_to: AtomicI64::new(cleaned_to),
            cleaning: Mutex::new(()),
            aborted: Mutex::new(aborted),
            fs_root,
        });
        if light {
            log.request_flush();
        }
        Ok((log, report))
    }
}

impl Log {
    /// The log of a partition that has no copy on this node: closed (appends fail with
    /// `StorageError::Closed`, reads find it empty) and nothing on disk: no directory, no
    /// file is created or opened, nothing is flushed. A broker keeps one for each partition
    /// it does not host, so that it costs memory only; `Log::open` makes a real one when
    /// the node becomes a replica.
    pub fn absent(storage: &Storage, dir: &Path, config: LogConfig) -> Arc<Log> {
        let ctx = Arc::clone(storage.context());
        let active = Arc::new(Segment::absent(&ctx, dir));
        Arc::new_cyclic(|me| Log {
            dir: dir.to_path_buf(),
            me: me.clone(),
            append: Mutex::new(AppendState {
                active: Arc::clone(&active),
                roll_base_ms: 0,
                messages_since_flush: 0,
                last_flush_ms: 0,
                producers: ProducerStateMap::default(),
            }),
            view: RwLock::new(Arc::new(View {
                segments: vec![active],
                log_start: 0,
            })),
            log_end: AtomicI64::new(0),
            sync: Mutex::new(SyncState {
                durable_end: 0,
                waiters: Vec::new(),
                queued: false,
                generation: 0,
            }),
            admin: Mutex::new(()),
            checkpoint_state: Mutex::new(CheckpointState {
                written: 0,
                at: Instant::now(),
                force: false,
            }),
            recovery_point: AtomicI64::new(0),
            marker_unsynced: AtomicBool::new(false),
            status: AtomicU8::new(CLOSED),
            failure: Mutex::new(None),
            dir_dirty: AtomicBool::new(false),
            parent_dirty: AtomicBool::new(false),
            unsynced_files: Mutex::new(Vec::new()),
            config: RwLock::new(config.normalized()),
            epochs: Mutex::new(Vec::new()),
            cleaned_to: AtomicI64::new(0),
            cleaning: Mutex::new(()),
            aborted: Mutex::new(TxnIndex::new()),
            fs_root: None,
            ctx,
        })
    }
}

/// Completes an interrupted `truncate_to` at open: removes the segments after the cut one
/// (newest first) and cuts its file.
pub(super) fn complete_truncation(
    fs: &dyn FileSystem,
    dir: &Path,
    t: Truncation,
    bases: &mut Vec<i64>,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    warn_problem(
        report,
        dir,
        format!(
            "completing an interrupted truncation to offset {} (segment {} cut at {})",
            t.log_end, t.base, t.position
        ),
    );
    while let Some(&last) = bases.last() {
        if last <= t.base {
            break;
        }
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = dir.join(segment::file_name(last, suffix));
            if let Err(e) = fs.remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(StorageError::io_path("remove", &p, e));
                }
            }
        }
        report.segments_deleted += 1;
        bases.pop();
    }
    if bases.last() == Some(&t.base) {
        segment::truncate_log_file(fs, dir, t.base, t.position).map_err(|e| {
            StorageError::io_path(
                "truncate",
                &dir.join(segment::file_name(t.base, LOG_SUFFIX)),
                e,
            )
        })?;
    }
    Ok(())
}

/// Loads the newest usable producer snapshot at or below `log_end` (deleting later and
/// damaged ones) and also at or below `snapshot_at_most` (the aborted-transaction index
/// is not trusted past it), and replays the batch headers after it. `aborted` keeps its
/// entries below that snapshot and gets those of the ABORT markers replayed.
#[allow(clippy::too_many_arguments)]
pub(super) fn rebuild_producer_state(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[Arc<Segment>],
    log_end: i64,
    snapshot_at_most: i64,
    now_ms: i64,
    report: &mut RecoveryReport,
    aborted: &mut TxnIndex,
) -> Result<ProducerStateMap, StorageError> {
    let mut state = ProducerStateMap::default();
    let mut from = segments.first().map_or(log_end, |s| s.base_offset);
    let snapshots =
        producer_state::list_snapshots(dir).map_err(|e| StorageError::io_path("list", dir, e))?;
    for (offset, path) in snapshots.into_iter().rev() {
        if offset <= log_end && offset > snapshot_at_most {
            continue;
        }
        let loaded = if offset > log_end {
            Err(format!("it is past the log end {log_end}"))
        } else {
            std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| state.load_snapshot(&bytes))
        };
        match loaded {
            Ok(()) => {
                report.producer_snapshot = Some(Offset(offset));
                from = from.max(offset);
                break;
            }
            Err(e) => {
                warn_problem(
                    report,
                    dir,
                    format!("removing producer snapshot {}: {e}", path.display()),
                );
                let _ = fs.remove_file(&path);
            }
        }
    }
    aborted.truncate_to(Offset(from));
    if from < log_end {
        let first = segments
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        for seg in &segments[first..] {
            let file = seg
                .file()
                .map_err(|e| StorageError::io(format!("open {}", seg.display()), e))?;
            let start = if seg.base_offset <= from {
                seg.lookup(from)
            } else {
                0
            };
            let mut scanner = Scanner::new(&file, start, seg.size());
            loop {
                let (h, pos) = match scanner.next_header() {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, start, e)),
                };
                if h.base_offset >= log_end {
                    break;
                }
                if h.last_offset() < from {
                    continue;
                }
                report.producer_batches_replayed += 1;
                if !producer_state::is_txn_marker(&h) {
                    state.replay(&h);
                    continue;
                }
                let batch = scanner
                    .window(pos, h.total_bytes())
                    .map_err(|e| StorageError::io(format!("read {}", seg.display()), e))?;
                let aborts = match marker_aborts(&h, batch) {
                    Ok(a) => a,
                    Err(e) => {
                        warn_problem(
                            report,
                            dir,
                            format!(
                                "{}: unreadable marker at {}: {e}",
                                seg.display(),
                                h.base_offset
                            ),
                        );
                        false
                    }
                };
                if let Some(txn) = replay_marker(&mut state, &h, aborts) {
                    aborted.append(txn);
                }
            }
        }
    }
    state.remove_expired(now_ms);
    Ok(state)
}

fn warn_problem(report: &mut RecoveryReport, dir: &Path, problem: String) {
    tracing::warn!(dir = %dir.display(), "log recovery: {problem}");
    report.problems.push(problem);
}
