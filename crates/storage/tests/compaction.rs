//! Log compaction (`Log::clean`): the latest record of every key survives with its offset,
//! older ones and keyless ones go, tombstones go after `delete.retention.ms`, the cleaned
//! log reopens as it was (recovery accepts compaction's offset gaps), and a crash at any
//! fsync, rename or removal of a cleaning round leaves a log that reopens valid with every
//! latest value (`FJORD_FAULT_SEEDS=n` runs more seeds of the crash test). A corrupt
//! segment met by the `LogCleaner` stops only that partition's cleaning, with the reason.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::fault::FaultFs;
use fjord_model::Offset;
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::{
    CleanOptions, CleanerConfig, CleanerTotals, FileSystem, Log, LogCleaner, LogConfig, Storage,
    StorageLimits,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

const RETENTION_MS: i64 = 1_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1024,
        segment_ms: None,
        index_interval_bytes: 128,
        index_bytes_max: 4096,
        retention_ms: None,
        retention_bytes: None,
        compact: true,
        delete: false,
        delete_retention_ms: RETENTION_MS,
        ..LogConfig::default()
    }
}

/// One write: (key, value; None is a tombstone).
type Write = (u8, Option<u16>);

fn keyed_batch(writes: &[Write], ts: i64, compression: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression);
    for (k, v) in writes {
        let key = format!("key-{k}");
        let value = v.map(|v| format!("value-{v}-{}", "x".repeat(usize::from(v % 40))));
        b.push(
            ts,
            Some(key.as_bytes()),
            value.as_ref().map(|v| v.as_bytes()),
            &[],
        );
    }
    b.build(0)
}

/// Every record in the log from its start: offset -> (key, value). Checks each batch as a
/// compacted log stores it and that offsets only grow.
fn read_all(log: &Log) -> BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)> {
    let r = log
        .read(
            log.log_start_offset(),
            usize::MAX,
            log.log_end_offset(),
            true,
        )
        .expect("read");
    let bytes = r.to_vec().expect("bytes");
    let mut out = BTreeMap::new();
    let mut prev = -1;
    for b in fjord_records::batches(&bytes) {
        let (h, range) = b.expect("framing");
        fjord_records::validate_stored_batch(&bytes[range.clone()]).expect("valid batch");
        assert!(h.base_offset > prev, "batch {} after {prev}", h.base_offset);
        prev = h.last_offset();
        for rec in fjord_records::decode_records(&bytes[range]).expect("records") {
            assert!(rec.offset >= h.base_offset && rec.offset <= h.last_offset());
            let key = rec.key.expect("keyed").to_vec();
            out.insert(rec.offset, (key, rec.value.map(|v| v.to_vec())));
        }
    }
    out
}

/// The model: every write by offset.
type Model = BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>;

fn model_of(writes: &[(i64, Write)]) -> Model {
    writes
        .iter()
        .map(|&(o, (k, v))| {
            let key = format!("key-{k}").into_bytes();
            let value =
                v.map(|v| format!("value-{v}-{}", "x".repeat(usize::from(v % 40))).into_bytes());
            (o, (key, value))
        })
        .collect()
}

/// Checks a read of the log against the model: every record read is the one written at
/// its offset; every key's latest write is there (a tombstone may be gone);
/// `tombstones_gone`: no tombstone is left below the cleaner checkpoint.
fn check(log: &Log, model: &Model, tombstones_gone: bool) {
    let read = read_all(log);
    for (o, rec) in &read {
        assert_eq!(
            model.get(o),
            Some(rec),
            "record at offset {o} differs from the write"
        );
    }
    let mut latest: BTreeMap<&[u8], (i64, &Option<Vec<u8>>)> = BTreeMap::new();
    for (o, (k, v)) in model {
        latest.insert(k, (*o, v));
    }
    for (k, (o, v)) in &latest {
        if v.is_some() {
            assert!(
                read.contains_key(o),
                "latest value of {k:?} (offset {o}) lost"
            );
        }
    }
    let cleaned_to = log.first_dirty_offset().0;
    let mut seen = std::collections::HashSet::new();
    for (o, (k, v)) in read.range(..cleaned_to) {
        assert!(
            seen.insert(k.clone()),
            "key {k:?} twice below the cleaner checkpoint ({o})"
        );
        if tombstones_gone {
            assert!(v.is_some(), "tombstone at {o} outlived its retention");
        }
    }
}

fn write(
    log: &Log,
    writes: &[Write],
    ts: i64,
    compression: Compression,
    model: &mut Vec<(i64, Write)>,
) {
    let mut b = keyed_batch(writes, ts, compression);
    let r = log.append(&mut b, ts).expect("append");
    for (i, w) in writes.iter().enumerate() {
        model.push((r.base_offset.0 + i as i64, *w));
    }
}

#[test]
fn compaction_keeps_the_latest_value_of_every_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::default();
    let (log, _) = Log::open(&storage, dir.path(), config(), 0).unwrap();
    let mut writes = Vec::new();
    for round in 0..60u16 {
        let batch: Vec<Write> = (0..5u8)
            .map(|k| (k, Some(round * 5 + u16::from(k))))
            .collect();
        let codec =
            [Compression::None, Compression::Lz4, Compression::Zstd][usize::from(round % 3)];
        write(&log, &batch, 10 + i64::from(round), codec, &mut writes);
    }
    // A batch keyless records would never get in (the broker refuses them), but a
    // follower's or an older log's could: the cleaner drops them.
    log.flush().unwrap();
    let before = log.size_bytes();
    let segments = log.segment_count();
    assert!(segments > 5, "{segments} segments");
    let stats = log
        .clean(100, &CleanOptions::default())
        .unwrap()
        .expect("cleaned");
    assert!(stats.records_retained < stats.records_read, "{stats:?}");
    assert!(
        log.size_bytes() < before / 2,
        "{} of {before} bytes left",
        log.size_bytes()
    );
    assert_eq!(
        log.segment_count(),
        segments,
        "groups are made by the sizes before cleaning"
    );
    assert_eq!(log.first_dirty_offset(), stats.cleaned_to);
    check(&log, &model_of(&writes), false);
    // A second round groups the small cleaned segments into one.
    for round in 60..70u16 {
        write(
            &log,
            &[(0, Some(round))],
            10 + i64::from(round),
            Compression::None,
            &mut writes,
        );
    }
    log.flush().unwrap();
    let segments = log.segment_count();
    let stats = log
        .clean(100, &CleanOptions::default())
        .unwrap()
        .expect("cleaned");
    assert!(
        log.segment_count() < segments / 2,
        "{} of {segments} segments",
        log.segment_count()
    );
    assert!(stats.segments_after < stats.segments_before, "{stats:?}");
    let model = model_of(&writes);
    check(&log, &model, false);
    // Reads at every offset land on the batch holding it or the next one.
    for o in 0..log.log_end_offset().0 {
        let r = log.read(Offset(o), 1, log.log_end_offset(), true).unwrap();
        let bytes = r.to_vec().unwrap();
        if let Some(Ok((h, _))) = fjord_records::batches(&bytes).next() {
            assert!(
                h.last_offset() >= o,
                "read at {o} returned a batch ending at {}",
                h.last_offset()
            );
        }
    }
    // Reopen (clean and after a crash): the gaps are accepted, the data is the same.
    let seen = read_all(&log);
    log.close().unwrap();
    drop(log);
    let (log, report) = Log::open(&storage, dir.path(), config(), 200).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(read_all(&log), seen);
    assert_eq!(log.first_dirty_offset(), stats.cleaned_to);
    drop(log);
    // Without the clean-shutdown marker and with index files gone every segment is scanned.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".index") || name == ".clean_shutdown" {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let (log, report) = Log::open(&storage, dir.path(), config(), 300).unwrap();
    assert_eq!(report.bytes_truncated, 0, "{:?}", report.problems);
    assert!(report.hole_at.is_none(), "{:?}", report.problems);
    assert_eq!(read_all(&log), seen);
}

#[test]
fn tombstones_go_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&Storage::default(), dir.path(), config(), 0).unwrap();
    let mut writes = Vec::new();
    for round in 0..40u16 {
        write(
            &log,
            &[(1, Some(round)), (2, Some(round))],
            10,
            Compression::None,
            &mut writes,
        );
    }
    write(&log, &[(1, None)], 10, Compression::None, &mut writes);
    for round in 0..40u16 {
        write(
            &log,
            &[(2, Some(100 + round))],
            10,
            Compression::None,
            &mut writes,
        );
    }
    log.flush().unwrap();
    log.clean(100, &CleanOptions::default())
        .unwrap()
        .expect("cleaned");
    let model = model_of(&writes);
    check(&log, &model, false);
    let tombstone = writes.iter().find(|(_, w)| w.1.is_none()).unwrap().0;
    assert!(
        read_all(&log).contains_key(&tombstone),
        "tombstone removed before its retention"
    );
    // More dirt, then a round after the horizon (100 + RETENTION_MS): the tombstone goes.
    for round in 0..40u16 {
        write(
            &log,
            &[(2, Some(200 + round))],
            10,
            Compression::None,
            &mut writes,
        );
    }
    log.flush().unwrap();
    log.clean(100 + RETENTION_MS, &CleanOptions::default())
        .unwrap()
        .expect("cleaned");
    assert!(
        !read_all(&log).contains_key(&tombstone),
        "tombstone kept past its retention"
    );
    let model = model_of(&writes);
    check(&log, &model, true);
    let read = read_all(&log);
    assert!(
        !read.values().any(|(k, _)| k == b"key-1"),
        "an older value of a deleted key came back"
    );
}

#[test]
fn a_small_dedupe_buffer_cleans_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&Storage::default(), dir.path(), config(), 0).unwrap();
    let mut writes = Vec::new();
    for round in 0..30u16 {
        let batch: Vec<Write> = (0..8u8)
            .map(|k| (k + (round % 4) as u8 * 8, Some(round)))
            .collect();
        write(&log, &batch, 10, Compression::Gzip, &mut writes);
    }
    log.flush().unwrap();
    // Room for 10 keys: each pass maps about one batch of 8.
    let opts = CleanOptions {
        dedupe_buffer_bytes: 24 * 12,
        io_bytes_per_second_max: None,
    };
    let mut passes = 0;
    while let Some(stats) = log.clean(100, &opts).unwrap() {
        passes += 1;
        assert!(stats.map_keys <= 10, "{stats:?}");
        assert!(passes < 100, "no progress");
    }
    assert!(passes > 3, "{passes} passes");
    check(&log, &model_of(&writes), false);
}

/// A filesystem that stops working (every later change fails, as if the process died)
/// at its `stop_at`-th fsync, rename or removal.
#[derive(Debug)]
struct StopFs {
    inner: Arc<FaultFs>,
    left: AtomicI64,
}

impl StopFs {
    fn tick(&self) -> std::io::Result<()> {
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(std::io::Error::other("stopped"));
        }
        Ok(())
    }
    fn stopped(&self) -> bool {
        self.left.load(Ordering::SeqCst) <= 0
    }
}

impl FileSystem for StopFs {
    fn open(&self, path: &Path, options: &std::fs::OpenOptions) -> std::io::Result<std::fs::File> {
        if self.stopped() {
            return Err(std::io::Error::other("stopped"));
        }
        self.inner.open(path, options)
    }
    fn write_at(
        &self,
        path: &Path,
        file: &std::fs::File,
        buf: &[u8],
        pos: u64,
    ) -> std::io::Result<()> {
        if self.stopped() {
            return Err(std::io::Error::other("stopped"));
        }
        self.inner.write_at(path, file, buf, pos)
    }
    fn write_vectored_at(
        &self,
        path: &Path,
        file: &std::fs::File,
        bufs: &[&[u8]],
        pos: u64,
    ) -> std::io::Result<()> {
        if self.stopped() {
            return Err(std::io::Error::other("stopped"));
        }
        self.inner.write_vectored_at(path, file, bufs, pos)
    }
    fn write_all(&self, path: &Path, file: &mut std::fs::File, buf: &[u8]) -> std::io::Result<()> {
        if self.stopped() {
            return Err(std::io::Error::other("stopped"));
        }
        self.inner.write_all(path, file, buf)
    }
    fn set_len(&self, path: &Path, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        if self.stopped() {
            return Err(std::io::Error::other("stopped"));
        }
        self.inner.set_len(path, file, len)
    }
    fn sync_data(&self, path: &Path, file: &std::fs::File) -> std::io::Result<()> {
        self.tick()?;
        self.inner.sync_data(path, file)
    }
    fn sync_all(&self, path: &Path, file: &std::fs::File) -> std::io::Result<()> {
        self.tick()?;
        self.inner.sync_all(path, file)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.tick()?;
        self.inner.sync_dir(dir)
    }
    fn sync_filesystem(
        &self,
        root: &std::fs::File,
        files: &[(&Path, &std::fs::File)],
    ) -> std::io::Result<()> {
        self.tick()?;
        self.inner.sync_filesystem(root, files)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.tick()?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.tick()?;
        self.inner.remove_file(path)
    }
}

/// Writes a seeded history to a compacted log and makes it durable.
fn seeded_history(seed: u64, fs: Arc<dyn FileSystem>, dir: &Path) -> Vec<(i64, Write)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let storage = Storage::with_file_system(StorageLimits::default(), fs);
    let (log, _) = Log::open(&storage, dir, config(), 0).unwrap();
    let mut writes = Vec::new();
    for _ in 0..rng.gen_range(20..60) {
        let n = rng.gen_range(1..6);
        let batch: Vec<Write> = (0..n)
            .map(|_| {
                let v = if rng.gen_bool(0.1) {
                    None
                } else {
                    Some(rng.gen_range(0..1000u16))
                };
                (rng.gen_range(0..8u8), v)
            })
            .collect();
        let codec = if rng.gen_bool(0.5) {
            Compression::None
        } else {
            Compression::Snappy
        };
        write(&log, &batch, 10, codec, &mut writes);
    }
    log.flush().unwrap();
    log.close().unwrap();
    writes
}

/// A crash at each fsync, rename and removal of a cleaning round (then at the next, ...
/// until a round completes): the log reopens without problems, reads back only records
/// as written at their offsets, with every key's latest value, and cleans again.
#[test]
fn a_crash_at_any_step_of_a_cleaning_round_loses_no_latest_value() {
    let seeds: u64 = std::env::var("FJORD_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 0..seeds {
        let mut stop_at = 0;
        loop {
            let dir = tempfile::tempdir().unwrap();
            let fault = Arc::new(FaultFs::new());
            let writes = seeded_history(seed, fault.clone(), dir.path());
            let model = model_of(&writes);
            let stop = Arc::new(StopFs {
                inner: fault.clone(),
                left: AtomicI64::new(i64::MAX),
            });
            let storage = Storage::with_file_system(StorageLimits::default(), stop.clone());
            let (log, _) = Log::open(&storage, dir.path(), config(), 50).unwrap();
            stop.left.store(stop_at, Ordering::SeqCst);
            let finished = log.clean(100, &CleanOptions::default()).is_ok() && !stop.stopped();
            drop(log);
            drop(storage);
            fault.crash(None);
            let (log, report) = Log::open(&Storage::default(), dir.path(), config(), 200)
                .unwrap_or_else(|e| panic!("seed {seed}, crash at step {stop_at}: {e}"));
            assert_eq!(
                report.bytes_truncated, 0,
                "seed {seed} step {stop_at}: {:?}",
                report.problems
            );
            assert!(
                report.hole_at.is_none(),
                "seed {seed} step {stop_at}: {:?}",
                report.problems
            );
            check(&log, &model, false);
            log.clean(300, &CleanOptions::default()).unwrap();
            check(&log, &model, false);
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                assert!(
                    !name.ends_with(".cleaned") && !name.ends_with(".swap"),
                    "{name} left"
                );
            }
            if finished {
                assert!(
                    stop_at > 3,
                    "seed {seed}: a round took only {stop_at} steps"
                );
                break;
            }
            stop_at += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Keyed writes and tombstones with compaction at random points (and random clocks):
    /// a read from the start gives only records as written at their offsets, every key's
    /// latest value, each key at most once below the cleaner checkpoint, and, once every
    /// tombstone's retention has passed and the log was cleaned again, no tombstone there.
    #[test]
    fn compaction_at_random_points_keeps_latest_values(
        ops in prop::collection::vec(
            prop_oneof![
                4 => prop::collection::vec((0u8..12, prop::option::weighted(0.85, 0u16..500)), 1..6)
                    .prop_map(Some),
                1 => Just(None),
            ],
            1..80,
        ),
        compressed in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(&Storage::default(), dir.path(), config(), 0).unwrap();
        let mut writes = Vec::new();
        let mut now = 10;
        let codec = if compressed { Compression::Zstd } else { Compression::None };
        for op in &ops {
            now += 7;
            match op {
                Some(batch) => write(&log, batch, now, codec, &mut writes),
                None => {
                    log.flush().unwrap();
                    log.clean(now, &CleanOptions::default()).unwrap();
                    check(&log, &model_of(&writes), false);
                }
            }
        }
        log.flush().unwrap();
        log.clean(now, &CleanOptions::default()).unwrap();
        let model = model_of(&writes);
        check(&log, &model, false);
        // Past every horizon, with fresh dirt so that a round runs: no tombstone stays.
        write(&log, &[(200, Some(1))], now, codec, &mut writes);
        let mut filler = Vec::new();
        let segments = log.segment_count();
        while log.segment_count() < segments + 2 {
            write(&log, &[(201, Some(2))], now, codec, &mut filler);
        }
        writes.extend(filler);
        log.flush().unwrap();
        // A round stamps the delete horizon on tombstones it meets for the first time;
        // the next round after that horizon removes them.
        let later = now + RETENTION_MS + 10;
        log.clean(later, &CleanOptions::default()).unwrap();
        let mut filler = Vec::new();
        let segments = log.segment_count();
        while log.segment_count() < segments + 2 {
            write(&log, &[(202, Some(3))], later, codec, &mut filler);
        }
        writes.extend(filler);
        log.flush().unwrap();
        log.clean(later + RETENTION_MS + 10, &CleanOptions::default()).unwrap();
        check(&log, &model_of(&writes), true);
    }
}

/// Writes 60 batches of 5 keys over many small segments and flushes (so the sealed
/// segments are below the persisted recovery point and cleanable).
fn fill(log: &Log, first_round: u16, model: &mut Vec<(i64, Write)>) {
    for round in first_round..first_round + 60 {
        let batch: Vec<Write> = (0..5u8)
            .map(|k| (k, Some(round * 5 + u16::from(k))))
            .collect();
        write(log, &batch, 10 + i64::from(round), Compression::None, model);
    }
    log.flush().unwrap();
}

/// Waits (10 s at most) until `done` holds for the cleaner's totals.
fn wait_totals(cleaner: &LogCleaner, what: &str, done: impl Fn(CleanerTotals) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(cleaner.totals()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {:?}",
            cleaner.totals()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_corrupt_segment_stops_only_its_partitions_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::default();
    let (bad, _) = Log::open(&storage, &dir.path().join("t-0"), config(), 0).unwrap();
    let (good, _) = Log::open(&storage, &dir.path().join("t-1"), config(), 0).unwrap();
    let (mut bad_writes, mut good_writes) = (Vec::new(), Vec::new());
    fill(&bad, 0, &mut bad_writes);
    fill(&good, 0, &mut good_writes);
    assert!(bad.segment_count() > 5, "{} segments", bad.segment_count());
    // The first batch of the first (sealed) segment claims 2 GiB: the cleaner's scan of it
    // fails. Reads of later segments and appends do not touch it.
    let first = dir.path().join("t-0").join("00000000000000000000.log");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(8)).unwrap();
    std::io::Write::write_all(&mut file, &i32::MAX.to_be_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);

    let logs = vec![Arc::clone(&bad), Arc::clone(&good)];
    let cleaner = LogCleaner::start(
        CleanerConfig {
            threads: 1,
            backoff: std::time::Duration::from_millis(10),
            ..CleanerConfig::default()
        },
        Box::new(move || logs.clone()),
    );
    wait_totals(&cleaner, "one failure and one round", |t| {
        t.failures >= 1 && t.rounds >= 1
    });
    let why = cleaner
        .failure(&bad)
        .expect("the bad log's cleaning stopped");
    assert!(
        why.contains("00000000000000000000.log") && why.contains("claims"),
        "the reason names the segment and the damage: {why}"
    );
    assert_eq!(cleaner.failure(&good), None);
    assert_eq!(
        bad.first_dirty_offset(),
        Offset(0),
        "nothing of it was cleaned"
    );
    assert!(good.first_dirty_offset() > Offset(0));
    check(&good, &model_of(&good_writes), false);

    // The damaged partition still takes appends and serves reads past the damage.
    assert!(!bad.is_offline());
    let end_before = bad.log_end_offset();
    fill(&bad, 60, &mut bad_writes);
    assert!(bad.log_end_offset() > end_before);
    let r = bad
        .read(end_before, usize::MAX, bad.log_end_offset(), true)
        .unwrap();
    let bytes = r.to_vec().unwrap();
    let model = model_of(&bad_writes);
    let mut read = 0;
    for b in fjord_records::batches(&bytes) {
        let (_, range) = b.unwrap();
        for rec in fjord_records::decode_records(&bytes[range]).unwrap() {
            let (key, value) = &model[&rec.offset];
            assert_eq!(rec.key.as_deref(), Some(key.as_slice()));
            assert_eq!(rec.value.as_deref(), value.as_deref());
            read += 1;
        }
    }
    assert_eq!(
        read, 300,
        "every record appended after the damage reads back"
    );

    // The other partition keeps being cleaned; the damaged one is not tried again.
    let rounds = cleaner.totals().rounds;
    fill(&good, 60, &mut good_writes);
    cleaner.wake();
    wait_totals(&cleaner, "another round of the good log", |t| {
        t.rounds > rounds
    });
    assert_eq!(cleaner.totals().failures, 1);
    assert_eq!(bad.first_dirty_offset(), Offset(0));
    check(&good, &model_of(&good_writes), false);
}

/// A transactional batch of producer `pid` (epoch 0) writing `key-<k>` = `value`.
fn txn_write(log: &Log, pid: i64, keys: &[u8], value: &str) -> i64 {
    let seq = log
        .producer_state(fjord_model::ProducerId(pid))
        .and_then(|e| e.last_sequence())
        .map_or(0, |s| s + 1);
    let mut b = BatchBuilder::new(Compression::None)
        .producer(pid, 0, seq)
        .transactional(true);
    for k in keys {
        b.push(
            10,
            Some(format!("key-{k}").as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    let mut bytes = b.build(0);
    log.append(&mut bytes, 10).expect("append").base_offset.0
}

fn end_txn(log: &Log, pid: i64, commit: bool) -> i64 {
    let m = fjord_storage::TxnMarker {
        producer_id: fjord_model::ProducerId(pid),
        producer_epoch: fjord_model::ProducerEpoch(0),
        coordinator_epoch: 0,
        aborted: !commit,
        transaction_version: 0,
    };
    log.append_marker(&m, fjord_model::LeaderEpoch(0), 10)
        .expect("marker")
        .0
        .base_offset
        .0
}

/// Every batch from the log start: (base offset, control, values of its data records).
fn batches(log: &Log) -> Vec<(i64, bool, Vec<String>)> {
    let r = log
        .read(
            log.log_start_offset(),
            usize::MAX,
            log.log_end_offset(),
            true,
        )
        .expect("read");
    let bytes = r.to_vec().expect("bytes");
    let mut out = Vec::new();
    for b in fjord_records::batches(&bytes) {
        let (h, range) = b.expect("framing");
        fjord_records::validate_stored_batch(&bytes[range.clone()]).expect("valid batch");
        let values = if h.is_control() {
            Vec::new()
        } else {
            fjord_records::decode_records(&bytes[range])
                .expect("records")
                .into_iter()
                .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
                .collect()
        };
        out.push((h.base_offset, h.is_control(), values));
    }
    out
}

/// Filler: non-transactional writes of keys 100.. (rolls segments).
fn filler(log: &Log, rounds: u16, model: &mut Vec<(i64, Write)>) {
    for round in 0..rounds {
        write(
            log,
            &[(100, Some(round)), (101, Some(round))],
            10,
            Compression::None,
            model,
        );
    }
}

#[test]
fn aborted_transactions_are_cleaned_away_and_markers_go_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&Storage::default(), dir.path(), config(), 0).unwrap();
    let mut model = Vec::new();
    // Producer 8 commits key-1 = committed; producer 7 then aborts key-1 and key-2
    // (a compacted __consumer_offsets holding an aborted TxnOffsetCommit after a
    // committed one), then commits key-9 (its aborted batch is not its newest).
    let committed_at = txn_write(&log, 8, &[1], "committed");
    let commit_8 = end_txn(&log, 8, true);
    let aborted_at = txn_write(&log, 7, &[1, 2], "aborted");
    let abort_7 = end_txn(&log, 7, false);
    filler(&log, 20, &mut model);
    txn_write(&log, 7, &[9], "later");
    end_txn(&log, 7, true);
    filler(&log, 20, &mut model);
    log.flush().unwrap();
    log.clean(100, &CleanOptions::default())
        .unwrap()
        .expect("cleaned");
    let after = batches(&log);
    let values: Vec<&String> = after.iter().flat_map(|(_, _, v)| v).collect();
    assert!(
        !values.iter().any(|v| *v == "aborted"),
        "records of an aborted transaction survived compaction: {after:?}"
    );
    assert!(
        after
            .iter()
            .any(|(o, _, v)| *o == committed_at && v == &["committed".to_string()]),
        "the committed value of key-1 was lost (an aborted later write shadowed it)"
    );
    assert!(!after.iter().any(|(o, _, _)| *o == aborted_at));
    // Both markers are still there: producer 8's transaction has data, producer 7's
    // abort marker waits for its delete horizon (100 + RETENTION_MS).
    assert!(after.iter().any(|(o, c, _)| *o == commit_8 && *c));
    assert!(after.iter().any(|(o, c, _)| *o == abort_7 && *c));
    // After the horizon: the abort marker goes, the commit marker of data kept stays.
    filler(&log, 20, &mut model);
    log.flush().unwrap();
    log.clean(100 + RETENTION_MS, &CleanOptions::default())
        .unwrap()
        .expect("cleaned");
    let after = batches(&log);
    assert!(
        !after.iter().any(|(o, _, _)| *o == abort_7),
        "the abort marker outlived its transaction's data and its retention: {after:?}"
    );
    assert!(after.iter().any(|(o, c, _)| *o == commit_8 && *c));
    assert!(after
        .iter()
        .any(|(o, _, v)| *o == committed_at && v == &["committed".to_string()]));

    // An open transaction bounds the cleaning: nothing at or after its first offset is
    // cleaned (its records may yet be aborted).
    let open_at = txn_write(&log, 9, &[100], "open");
    filler(&log, 40, &mut model);
    log.flush().unwrap();
    let c = log.cleanability(5_000).expect("compacted");
    assert!(
        c.first_uncleanable.0 <= open_at,
        "cleanable up to {} past the open transaction at {open_at}",
        c.first_uncleanable.0
    );
    let _ = log.clean(5_000, &CleanOptions::default()).unwrap();
    assert!(batches(&log).iter().any(|(o, _, _)| *o == open_at));
}
