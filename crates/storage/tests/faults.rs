//! Fault injection through the filesystem seam (`Storage::with_file_system`): an fsync
//! error takes the log offline without a panic; a torn write is cut off; a simulated crash
//! that drops every unsynced write (per file) keeps exactly what was acknowledged, and
//! recovery reports what it had to cut; a seeded property test interleaves appends, syncs,
//! truncations and crashes against a model (`FJORD_FAULT_SEEDS=n` runs n seeds,
//! `FJORD_FAULT_SEED=s` replays one).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::fault::FaultFs;
use common::{all_batches, batch, split};
use fjord_model::{ErrorCode, LeaderEpoch, Offset};
use fjord_records::BatchHeader;
use fjord_storage::{Log, LogConfig, RecoveryReport, Storage};
use rand::{Rng, SeedableRng};

fn tiny() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1024,
        segment_ms: None,
        index_interval_bytes: 128,
        index_bytes_max: 4096,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

/// A storage of the write path this thread tests (`common::on_both_write_paths`).
fn storage(fs: &Arc<FaultFs>) -> Storage {
    Storage::with_file_system(common::limits(), fs.clone())
}

fn open(fs: &Arc<FaultFs>, dir: &Path) -> (Arc<Log>, RecoveryReport) {
    Log::open(&storage(fs), dir, tiny(), 0).unwrap()
}

/// The newest segment's `.log` file.
fn newest_log_file(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// Every offset of the log reads from the batch that holds it (indexes consistent).
fn check_reads(log: &Log) {
    let end = log.log_end_offset();
    let batches = all_batches(log);
    for (base, bytes) in &batches {
        let h = BatchHeader::parse(bytes).unwrap();
        for o in [*base, h.last_offset()] {
            let r = log.read(Offset(o), 1, end, true).unwrap();
            assert_eq!(split(&r.to_vec().unwrap())[0].0, *base, "read at {o}");
        }
    }
    if let Some((base, bytes)) = batches.first() {
        let ts = BatchHeader::parse(bytes).unwrap().max_timestamp;
        let found = log.offset_for_timestamp(ts).unwrap().map(|x| x.0);
        assert_eq!(found, Some(Offset(*base).max(log.log_start_offset())));
    }
}

#[test]
fn an_fsync_error_takes_the_log_offline() {
    let fs = Arc::new(FaultFs::new());
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(&fs, dir.path());
    for i in 0..5 {
        log.append_as_leader(&mut batch(2, 50, i, i as u64), LeaderEpoch(1), 0)
            .unwrap();
    }
    log.sync_to(log.log_end_offset()).wait_blocking().unwrap();
    let before = all_batches(&log);
    fs.fail_syncs.store(true, Ordering::SeqCst);
    let r = log
        .append_as_leader(&mut batch(2, 50, 9, 9), LeaderEpoch(1), 0)
        .unwrap();
    // The waiter for it gets KAFKA_STORAGE_ERROR, and so does everything after.
    let e = log.sync_to(r.last_offset).wait_blocking().unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::KAFKA_STORAGE_ERROR, "{e}");
    assert!(log.is_offline());
    let e = log
        .append_as_leader(&mut batch(1, 50, 9, 10), LeaderEpoch(1), 0)
        .unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::KAFKA_STORAGE_ERROR);
    let e = log.sync_to(r.last_offset).wait_blocking().unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::KAFKA_STORAGE_ERROR);
    assert_eq!(
        log.truncate_to(Offset(2)).unwrap_err().kafka_code(),
        ErrorCode::KAFKA_STORAGE_ERROR
    );
    assert!(log.flush().is_err());
    assert!(log.close().is_err());
    // Reads still work.
    assert_eq!(all_batches(&log)[..5], before[..]);

    // The disk recovers; a reopen brings the log back (the unsynced batch may be gone).
    common::crash(log);
    fs.fail_syncs.store(false, Ordering::SeqCst);
    fs.crash(None);
    let (log, report) = open(&fs, dir.path());
    assert!(!report.clean);
    assert_eq!(all_batches(&log)[..5], before[..]);
    log.append(&mut batch(1, 50, 9, 11), 0).unwrap();
}

/// The storage's owner hears of every write failure in a log's directory (what a
/// cluster node halts on): the log that goes offline, once, with the error; a listener
/// set later hears of the first failure at once.
#[test]
fn the_owner_is_told_of_a_failed_write() {
    let fs = Arc::new(FaultFs::new());
    let storage = storage(&fs);
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    storage.on_failure(Arc::new(move |f: &fjord_storage::LogFailure| {
        h.lock().unwrap().push(f.clone())
    }));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log_a, _) = Log::open(&storage, a.path(), tiny(), 0).unwrap();
    let (log_b, _) = Log::open(&storage, b.path(), tiny(), 0).unwrap();
    for log in [&log_a, &log_b] {
        log.append(&mut batch(1, 50, 0, 1), 0).unwrap();
        log.sync_to(log.log_end_offset()).wait_blocking().unwrap();
    }
    assert!(heard.lock().unwrap().is_empty(), "no failure yet");
    assert!(storage.first_failure().is_none());

    // A torn append takes log a offline: heard once, however often it is retried.
    fs.tear_next_write(30);
    log_a.append(&mut batch(2, 50, 0, 2), 0).unwrap_err();
    log_a.append(&mut batch(2, 50, 0, 3), 0).unwrap_err();
    {
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(heard[0].dir, a.path());
        assert!(heard[0].reason.contains("injected I/O error"), "{heard:?}");
    }
    // An fsync error takes log b offline: heard too.
    fs.fail_syncs.store(true, Ordering::SeqCst);
    log_b.append(&mut batch(1, 50, 0, 4), 0).unwrap();
    log_b
        .sync_to(log_b.log_end_offset())
        .wait_blocking()
        .unwrap_err();
    assert_eq!(heard.lock().unwrap().len(), 2);
    assert_eq!(heard.lock().unwrap()[1].dir, b.path());
    // A listener set after the failures hears of the first one at once.
    let late = Arc::new(std::sync::Mutex::new(None));
    let l = Arc::clone(&late);
    storage.on_failure(Arc::new(move |f: &fjord_storage::LogFailure| {
        *l.lock().unwrap() = Some(f.dir.clone())
    }));
    assert_eq!(late.lock().unwrap().as_deref(), Some(a.path()));
    assert_eq!(
        storage.first_failure().map(|f| f.dir),
        Some(a.path().to_path_buf())
    );
    common::crash(log_a);
    common::crash(log_b);
}

#[test]
fn a_torn_write_is_cut_off_and_the_log_goes_offline() {
    let fs = Arc::new(FaultFs::new());
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(&fs, dir.path());
    log.append(&mut batch(2, 50, 0, 1), 0).unwrap();
    let before = all_batches(&log);
    fs.tear_next_write(30);
    let e = log.append(&mut batch(2, 50, 0, 2), 0).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::KAFKA_STORAGE_ERROR);
    assert!(log.is_offline());
    assert_eq!(all_batches(&log), before);
    common::crash(log);
    let (log, report) = open(&fs, dir.path());
    assert_eq!(all_batches(&log), before, "{report:?}");
    assert_eq!(
        report.bytes_truncated, 0,
        "the partial write was cut at once"
    );
}

/// Appends, a sync, more appends; then a power loss that drops every unsynced write
/// (`tear`: except the first bytes of the newest segment's unsynced part).
fn crash_after_partly_synced_appends(tear: Option<u64>) {
    let fs = Arc::new(FaultFs::new());
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes_max: 4096,
        ..tiny()
    };
    let (log, _) = Log::open(&storage(&fs), dir.path(), cfg.clone(), 0).unwrap();
    for i in 0..12u64 {
        log.append(&mut batch(2, 100, i as i64, i), 0).unwrap();
    }
    let acked = log.log_end_offset();
    log.sync_to(Offset(acked.0 - 1)).wait_blocking().unwrap();
    let synced = all_batches(&log);
    // Then three batches that fit the active segment (no roll: nothing syncs them).
    let active_room = 4096 - common::data_len(&newest_log_file(dir.path()));
    let mut unsynced = 0;
    for i in 0..3u64 {
        let mut b = batch(1, 60, 100 + i as i64, 100 + i);
        if b.len() as u64 * (i + 1) < active_room {
            log.append(&mut b, 0).unwrap();
            unsynced += 1;
        }
    }
    assert!(unsynced >= 2, "room for {unsynced}");
    let all = all_batches(&log);
    assert!(log.durable_offset() == acked);
    let newest = newest_log_file(dir.path());
    common::crash(log);
    let changed = fs.crash(tear.map(|n| (newest.as_path(), n)));
    assert!(changed.contains(&newest), "{changed:?}");

    let (log, report) = Log::open(&storage(&fs), dir.path(), cfg, 0).unwrap();
    let got = all_batches(&log);
    // Everything acknowledged is there, byte for byte; after it, only whole batches that
    // were written (a prefix of them).
    assert_eq!(got[..synced.len()], synced[..], "{report:?}");
    assert_eq!(got[..], all[..got.len()], "{report:?}");
    assert!(!report.clean);
    match tear {
        None => {
            assert_eq!(got.len(), synced.len(), "{report:?}");
            assert_eq!(report.log_end_offset, acked);
            assert_eq!(report.bytes_truncated, 0);
        }
        Some(n) => {
            // The kept bytes hold some whole batches and a partial one, which recovery cut.
            let first = &all[synced.len()].1;
            let whole = if n as usize >= first.len() { 1 } else { 0 };
            assert_eq!(got.len(), synced.len() + whole, "{report:?}");
            assert!(report.bytes_truncated > 0, "{report:?}");
            assert!(!report.problems.is_empty());
        }
    }
    check_reads(&log);
    // The log goes on from where recovery left it.
    let r = log.append(&mut batch(1, 10, 0, 50), 0).unwrap();
    assert_eq!(r.base_offset, report.log_end_offset);
    log.sync_to(r.last_offset).wait_blocking().unwrap();
}

#[test]
fn a_crash_keeps_exactly_the_synced_batches() {
    common::on_both_write_paths(|_| crash_after_partly_synced_appends(None));
}

/// Buffered writes: a crash keeps the first bytes written after the last sync. (Direct
/// writes rewrite whole blocks; their torn last block is `direct.rs`'s test.)
#[test]
fn a_crash_that_tears_the_unsynced_tail_is_detected_and_cut() {
    crash_after_partly_synced_appends(Some(40));
    crash_after_partly_synced_appends(Some(150));
}

/// The model: batches (base offset, bytes) of the log, and how many of them were
/// acknowledged as durable.
struct Model {
    batches: Vec<(i64, Vec<u8>)>,
    durable: usize,
}

/// The offset after the model's last batch (0 when empty: these logs start at 0).
fn model_end(batches: &[(i64, Vec<u8>)]) -> i64 {
    batches.last().map_or(0, |(o, b)| {
        o + i64::from(BatchHeader::parse(b).unwrap().last_offset_delta) + 1
    })
}

fn run_seed(seed: u64, steps: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fs = Arc::new(FaultFs::new());
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(&fs, dir.path());
    let mut model = Model {
        batches: Vec::new(),
        durable: 0,
    };
    let mut epoch = 1;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.gen_range(0..100) {
            0..55 => {
                if rng.gen_range(0..10) == 0 {
                    epoch += 1;
                }
                let records = rng.gen_range(1..4);
                let value = rng.gen_range(1..200);
                let mut b = batch(records, value, step as i64, seed * 1000 + step as u64);
                let r = log
                    .append_as_leader(&mut b, LeaderEpoch(epoch), step as i64)
                    .unwrap();
                assert_eq!(r.base_offset.0, model_end(&model.batches), "{ctx}");
                model.batches.push((r.base_offset.0, b));
            }
            55..70 => {
                let end = log.log_end_offset();
                if end.0 > 0 {
                    log.sync_to(Offset(end.0 - 1)).wait_blocking().unwrap();
                }
                model.durable = model.batches.len();
                assert_eq!(log.durable_offset(), end, "{ctx}");
            }
            70..85 => {
                let end = log.log_end_offset().0;
                let target = rng.gen_range(0..=end + 1);
                let new_end = log.truncate_to(Offset(target)).unwrap();
                let keep = model
                    .batches
                    .iter()
                    .take_while(|(o, b)| {
                        o + i64::from(BatchHeader::parse(b).unwrap().last_offset_delta) < target
                    })
                    .count();
                model.batches.truncate(keep);
                model.durable = model.durable.min(keep);
                let expect = if target >= end {
                    end
                } else {
                    model_end(&model.batches)
                };
                assert_eq!(new_end.0, expect, "{ctx}: truncate to {target}");
            }
            _ => {
                let tear = match rng.gen_range(0..3) {
                    0 => None,
                    _ => Some(rng.gen_range(0..300u64)),
                };
                let newest = newest_log_file(dir.path());
                common::crash(log);
                fs.crash(tear.map(|n| (newest.as_path(), n)));
                let (l, report) = open(&fs, dir.path());
                log = l;
                let got = all_batches(&log);
                assert!(
                    got.len() >= model.durable,
                    "{ctx}: lost acknowledged data {report:?}"
                );
                assert_eq!(got[..], model.batches[..got.len()], "{ctx}: {report:?}");
                model.batches.truncate(got.len());
                model.durable = got.len();
            }
        }
        assert_eq!(all_batches(&log), model.batches, "{ctx}");
        // Epochs: every recorded epoch with data starts where its first batch does.
        let leo = log.log_end_offset().0;
        for (e, start) in log.leader_epochs() {
            if start.0 < leo {
                let (_, b) = model
                    .batches
                    .iter()
                    .find(|(o, _)| *o == start.0)
                    .unwrap_or_else(|| panic!("{ctx}: epoch {} starts inside a batch", e.0));
                assert_eq!(
                    BatchHeader::parse(b).unwrap().partition_leader_epoch,
                    e.0,
                    "{ctx}"
                );
            }
        }
    }
    check_reads(&log);
}

/// Seeds 0..300 with buffered writes, the even ones with direct writes
/// (`FJORD_FAULT_SEEDS=n`: 0..n on both); `FJORD_FAULT_SEED=s` replays just seed `s`.
/// A failing seed is printed with the command that replays it.
#[test]
fn appends_syncs_truncations_and_crashes_match_a_model() {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name}={v}")))
    };
    let seeds: Vec<u64> = match env("FJORD_FAULT_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("FJORD_FAULT_SEEDS").unwrap_or(300)).collect(),
    };
    common::on_both_write_paths(|direct| {
        // Direct writes: every other seed (CI time), all of them with FJORD_FAULT_SEED(S).
        let step = if direct && seeds.len() > 1 && std::env::var("FJORD_FAULT_SEEDS").is_err() {
            2
        } else {
            1
        };
        for &seed in seeds.iter().step_by(step) {
            if let Err(panic) = std::panic::catch_unwind(|| run_seed(seed, 60)) {
                eprintln!(
                    "model test failed at seed {seed} (direct writes: {direct}); replay with \
                     FJORD_FAULT_SEED={seed} cargo test -p fjord-storage --test faults"
                );
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// A new log's creation fsyncs nothing (Kafka does not fsync empty segments either); its
/// first sync round of data makes the directory's entry in its parent and the files'
/// entries in the directory durable before the data, and a crash before any data leaves
/// a log that opens empty.
#[test]
fn a_new_log_defers_its_creation_fsyncs_to_its_first_data() {
    let fs = Arc::new(FaultFs::new());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let (log, _) = open(&fs, &dir);
    assert!(
        fs.synced_paths.lock().unwrap().is_empty(),
        "creation synced"
    );
    log.close().unwrap();
    drop(log);
    // Lost in a crash before any data: the directory and all its files gone.
    std::fs::remove_dir_all(&dir).unwrap();
    let (log, _) = open(&fs, &dir);
    assert_eq!(log.log_end_offset(), Offset(0));
    // Half created (a segment without its index files): opens empty too.
    drop(log);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "log") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let (log, _) = open(&fs, &dir);
    assert_eq!(log.log_end_offset(), Offset(0));
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
    let (log, _) = open(&fs, &dir);
    fs.synced_paths.lock().unwrap().clear();
    let r = log
        .append_as_leader(&mut batch(2, 50, 0, 0), LeaderEpoch(1), 0)
        .unwrap();
    log.sync_to(r.last_offset).wait_blocking().unwrap();
    let synced = fs.synced_paths.lock().unwrap().clone();
    let at = |p: &Path| synced.iter().position(|s| s == p);
    let data = at(&newest_log_file(&dir)).expect("data synced");
    let parent = at(root.path()).expect("parent directory synced");
    let own = synced
        .iter()
        .rposition(|s| s == &dir)
        .expect("log directory synced");
    assert!(parent < data && own < data, "{synced:?}");
    // Acknowledged, so it survives a crash.
    drop(log);
    fs.crash(None);
    let (log, _) = open(&fs, &dir);
    assert_eq!(log.log_end_offset(), Offset(2));
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A new log creates one file, its segment's `.log` (each file created costs an inode
/// allocation, the bulk of creating 10,000 partitions): the index files are first written
/// at a checkpoint with entries, a roll or close. Acknowledged data survives a crash
/// before they exist, and a clean reopen finds them.
#[test]
fn a_new_log_creates_only_its_segment_file() {
    let fs = Arc::new(FaultFs::new());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let (log, _) = open(&fs, &dir);
    assert_eq!(names(&dir), ["00000000000000000000.log"]);
    let r = log
        .append_as_leader(&mut batch(2, 50, 0, 0), LeaderEpoch(1), 0)
        .unwrap();
    log.sync_to(r.last_offset).wait_blocking().unwrap();
    drop(log);
    fs.crash(None);
    let (log, _) = open(&fs, &dir);
    assert_eq!(log.log_end_offset(), Offset(2));
    check_reads(&log);
    log.close().unwrap();
    let files = names(&dir);
    for want in [
        "00000000000000000000.index",
        "00000000000000000000.timeindex",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} missing: {files:?}");
    }
    drop(log);
    let (log, report) = open(&fs, &dir);
    assert!(report.clean, "{report:?}");
    assert_eq!(log.log_end_offset(), Offset(2));
    check_reads(&log);
}

/// The log of a partition this node does not host: closed, empty, and nothing on disk,
/// whatever is asked of it.
#[test]
fn an_absent_log_touches_no_disk() {
    let fs = Arc::new(FaultFs::new());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let log = Log::absent(&storage(&fs), &dir, tiny());
    assert!(log.is_closed());
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(log.log_start_offset(), Offset(0));
    let err = log
        .append_as_leader(&mut batch(1, 10, 0, 0), LeaderEpoch(1), 0)
        .unwrap_err();
    assert!(
        matches!(err, fjord_storage::StorageError::Closed { .. }),
        "{err:?}"
    );
    log.checkpoint().unwrap();
    log.close().unwrap();
    assert_eq!(log.size_bytes(), 0);
    assert!(!dir.exists(), "an absent log made its directory");
    assert!(fs.synced_paths.lock().unwrap().is_empty());
}

/// `Log::write_unsynced_file` costs no fsync; the log's first sync round makes the file
/// durable before that round's data counts as durable: a crash before it leaves the file
/// empty (never synced), one after it the whole file.
#[test]
fn a_file_written_beside_the_log_is_durable_with_its_first_synced_data() {
    common::on_both_write_paths(|_| {
        let fs = Arc::new(FaultFs::new());
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("t-0");
        let file = part.join("partition.metadata");
        let text = b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAQ\n";

        let (log, _) = open(&fs, &part);
        let syncs = fs.syncs.load(Ordering::SeqCst);
        log.write_unsynced_file("partition.metadata", text).unwrap();
        assert_eq!(
            fs.syncs.load(Ordering::SeqCst),
            syncs,
            "written without a sync"
        );
        assert_eq!(std::fs::read(&file).unwrap(), text);
        common::crash(log);
        fs.crash(None);
        assert_eq!(std::fs::read(&file).unwrap(), b"", "never synced");

        let (log, _) = open(&fs, &part);
        log.write_unsynced_file("partition.metadata", text).unwrap();
        let r = log.append(&mut batch(1, 10, 0, 1), 0).unwrap();
        log.sync_to(r.last_offset).wait_blocking().unwrap();
        let synced = fs.synced_paths.lock().unwrap().clone();
        let at = synced.iter().position(|p| *p == file);
        let data_at = synced
            .iter()
            .position(|p| p.extension().is_some_and(|x| x == "log"));
        assert!(at.is_some(), "file synced: {synced:?}");
        assert!(
            data_at.is_none_or(|d| at < Some(d)),
            "before the data: {synced:?}"
        );
        common::crash(log);
        fs.crash(None);
        assert_eq!(std::fs::read(&file).unwrap(), text);
        let (log, report) = open(&fs, &part);
        assert_eq!(report.log_end_offset, Offset(1));
        // Nothing left to sync once it has been: the next round does not sync it again.
        let before = fs.synced_paths.lock().unwrap().len();
        let r = log.append(&mut batch(1, 10, 1, 2), 0).unwrap();
        log.sync_to(r.last_offset).wait_blocking().unwrap();
        let again = fs.synced_paths.lock().unwrap()[before..].to_vec();
        assert!(!again.contains(&file), "{again:?}");
    });
}
