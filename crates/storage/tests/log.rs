//! Behaviour of `Log`: append, read, roll, reopen, retention, timestamps, epochs, errors.

mod common;

use common::{all_batches, batch, open, small_config, split};
use fjord_model::{ErrorCode, LeaderEpoch, Offset, TimestampType};
use fjord_records::BatchHeader;
use fjord_storage::{Log, LogConfig, Storage, StorageError};

#[test]
fn append_assigns_offsets_and_reads_back_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), Offset(0));
    let mut a = batch(3, 10, 100, 1);
    let mut b = batch(2, 10, 200, 2);
    let r1 = log.append(&mut a, 5_000).unwrap();
    assert_eq!(
        (r1.base_offset, r1.last_offset, r1.records_count),
        (Offset(0), Offset(2), 3)
    );
    assert_eq!(r1.log_append_time_ms, -1);
    let r2 = log.append(&mut b, 5_000).unwrap();
    assert_eq!((r2.base_offset, r2.last_offset), (Offset(3), Offset(4)));
    assert_eq!(log.log_end_offset(), Offset(5));

    let got = all_batches(&log);
    assert_eq!(got, vec![(0, a.clone()), (3, b.clone())]);
    // Reading from an offset inside a batch returns that whole batch.
    let r = log.read(Offset(4), 1 << 20, Offset(5), true).unwrap();
    assert_eq!(split(&r.to_vec().unwrap()), vec![(3, b.clone())]);
    // At the end: empty, no error.
    assert_eq!(
        log.read(Offset(5), 1 << 20, Offset(5), true).unwrap().bytes,
        0
    );
    // Two batches in one append.
    let mut both = [batch(1, 1, 300, 3), batch(4, 1, 301, 4)].concat();
    let r3 = log.append(&mut both, 5_000).unwrap();
    assert_eq!(
        (r3.base_offset, r3.last_offset, r3.records_count),
        (Offset(5), Offset(9), 5)
    );
    assert_eq!(
        all_batches(&log).iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![0, 3, 5, 6]
    );
}

#[test]
fn read_limits_follow_kip_74_and_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut sizes = vec![];
    for i in 0..5 {
        let mut b = batch(2, 100, 10, i);
        sizes.push(b.len());
        log.append(&mut b, 0).unwrap();
    }
    let end = log.log_end_offset();
    // Too small for one batch: the first batch anyway with min_one_batch, nothing without.
    let r = log.read(Offset(0), 10, end, true).unwrap();
    assert_eq!((r.bytes, r.slices.len()), (sizes[0], 1));
    assert_eq!(log.read(Offset(0), 10, end, false).unwrap().bytes, 0);
    // Exactly two batches fit.
    let r = log
        .read(Offset(1), sizes[0] + sizes[1] + 5, end, true)
        .unwrap();
    assert_eq!(r.bytes, sizes[0] + sizes[1]);
    // The upper bound (high watermark) stops before the batch that reaches it.
    let r = log.read(Offset(0), usize::MAX, Offset(6), true).unwrap();
    assert_eq!(split(&r.to_vec().unwrap()).len(), 3);
    let r = log.read(Offset(0), usize::MAX, Offset(5), true).unwrap();
    assert_eq!(split(&r.to_vec().unwrap()).len(), 2);
    // Out of range.
    let e = log.read(Offset(11), 100, end, true).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    assert!(log.read(Offset(-1), 100, end, true).is_err());
}

#[test]
fn segments_roll_by_size_and_reads_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut expected = vec![];
    for i in 0..60 {
        let mut b = batch(1 + (i % 3) as usize, 150, 1_000 + i as i64, i);
        let r = log.append(&mut b, 0).unwrap();
        expected.push((r.base_offset.0, b));
    }
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    assert_eq!(all_batches(&log), expected);
    // Segment files are named by base offset.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    assert_eq!(names[0], "00000000000000000000.log");
    assert_eq!(names.len(), log.segment_count());
    // Every start offset gives the batch holding it first.
    for (base, bytes) in &expected {
        let r = log
            .read(Offset(*base), 1, log.log_end_offset(), true)
            .unwrap();
        assert_eq!(r.to_vec().unwrap(), *bytes);
    }
    let total: u64 = expected.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(log.size_bytes(), total);
}

#[test]
fn roll_by_time_and_by_full_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: Some(1_000),
        ..LogConfig::default()
    };
    let (log, _) = Log::open(&Storage::default(), dir.path(), cfg, 0).unwrap();
    log.append(&mut batch(1, 1, 0, 0), 10).unwrap();
    log.append(&mut batch(1, 1, 0, 0), 900).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&mut batch(1, 1, 0, 0), 1_500).unwrap();
    assert_eq!(log.segment_count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 0,
        index_bytes_max: 48,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    for i in 0..20 {
        log.append(&mut batch(1, 1, i, i as u64), 0).unwrap();
    }
    assert!(log.segment_count() >= 4, "{}", log.segment_count());
    assert_eq!(all_batches(&log).len(), 20);
}

#[test]
fn clean_close_and_crash_reopen_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = vec![];
    {
        let log = open(dir.path(), small_config());
        for i in 0..30 {
            let mut b = batch(2, 120, 10 * i as i64, i);
            let r = log.append(&mut b, 0).unwrap();
            expected.push((r.base_offset.0, b));
        }
        log.close().unwrap();
        let e = log.append(&mut batch(1, 1, 0, 0), 0).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::KAFKA_STORAGE_ERROR);
        assert!(dir.path().join(".clean_shutdown").exists());
    }
    let (log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 0).unwrap();
    assert!(report.clean, "{report:?}");
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(report.bytes_truncated, 0);
    assert!(!dir.path().join(".clean_shutdown").exists());
    assert_eq!(all_batches(&log), expected);
    assert_eq!(log.max_timestamp(), Some((291, Offset(59))));
    // Appends continue at the right offset; then a crash (drop without close).
    let mut b = batch(1, 5, 1_000, 99);
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, Offset(60));
    expected.push((60, b));
    common::crash(log);
    let (log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 0).unwrap();
    assert!(!report.clean);
    assert!(report.segments_scanned >= 1);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(report.log_end_offset, Offset(61));
    assert_eq!(all_batches(&log), expected);
    // The recovery point was written: the next crash scans only the tail.
    common::crash(log);
    let (_log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 0).unwrap();
    assert_eq!(report.segments_scanned, 1, "{report:?}");
}

#[test]
fn log_append_time_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    let mut b = batch(3, 4, 100, 1);
    let r = log.append(&mut b, 777_000).unwrap();
    assert_eq!(r.log_append_time_ms, 777_000);
    let got = all_batches(&log);
    let h = BatchHeader::parse(&got[0].1).unwrap();
    assert_eq!(h.max_timestamp, 777_000);
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(log.max_timestamp(), Some((777_000, Offset(0))));
    assert_eq!(
        log.offset_for_timestamp(500).unwrap(),
        Some((Offset(0), 777_000))
    );
}

#[test]
fn invalid_input_is_rejected_with_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        message_bytes_max: 500,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    let mut big = batch(1, 600, 0, 0);
    let e = log.append(&mut big, 0).unwrap_err();
    assert!(matches!(e, StorageError::MessageTooLarge { .. }));
    assert_eq!(e.kafka_code(), ErrorCode::MESSAGE_TOO_LARGE);
    let mut bad = batch(1, 10, 0, 0);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let e = log.append(&mut bad, 0).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::CORRUPT_MESSAGE);
    // A good batch followed by a torn one: nothing is written.
    let mut torn = [batch(1, 10, 0, 0), batch(1, 10, 0, 1)[..30].to_vec()].concat();
    assert!(log.append(&mut torn, 0).is_err());
    assert_eq!(log.log_end_offset(), Offset(0));
    // Nothing at all: a no-op.
    let r = log.append(&mut [], 0).unwrap();
    assert_eq!((r.base_offset, r.records_count), (Offset(0), 0));
    // Larger than a segment.
    let dir2 = tempfile::tempdir().unwrap();
    let log2 = open(
        dir2.path(),
        LogConfig {
            segment_bytes_max: 1024,
            ..LogConfig::default()
        },
    );
    let mut many: Vec<u8> = (0..5).flat_map(|i| batch(1, 300, 0, i)).collect();
    let e = log2.append(&mut many, 0).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::RECORD_LIST_TOO_LARGE);
}

#[test]
fn timestamps_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    // Batch i has records with timestamps 1000*i .. 1000*i+2 (3 records).
    for i in 0..40 {
        log.append(&mut batch(3, 50, 1_000 * i, i as u64), 0)
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((Offset(0), 0)));
    assert_eq!(
        log.offset_for_timestamp(5_000).unwrap(),
        Some((Offset(15), 5_000))
    );
    // Inside batch 7 (7000..7002): that batch, with its max timestamp.
    assert_eq!(
        log.offset_for_timestamp(7_001).unwrap(),
        Some((Offset(21), 7_002))
    );
    assert_eq!(
        log.offset_for_timestamp(7_003).unwrap(),
        Some((Offset(24), 8_000))
    );
    assert_eq!(
        log.offset_for_timestamp(39_002).unwrap(),
        Some((Offset(117), 39_002))
    );
    assert_eq!(log.offset_for_timestamp(39_003).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((39_002, Offset(119))));
}

#[test]
fn delete_records_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for i in 0..50 {
        log.append(&mut batch(2, 150, 1_000 * i, i as u64), 0)
            .unwrap();
    }
    let segments = log.segment_count();
    assert!(segments >= 4, "{segments}");
    // DeleteRecords: log start moves, segments below go.
    assert_eq!(log.delete_records_before(Offset(31)).unwrap(), Offset(31));
    assert_eq!(log.log_start_offset(), Offset(31));
    assert!(log.segment_count() < segments);
    let e = log
        .read(Offset(30), 100, log.log_end_offset(), true)
        .unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    // The batch holding 31 (30..=31) is still readable from 31.
    let first = split(
        &log.read(Offset(31), 1, log.log_end_offset(), true)
            .unwrap()
            .to_vec()
            .unwrap(),
    );
    assert_eq!(first[0].0, 30);
    assert_eq!(
        log.delete_records_before(Offset(10)).unwrap(),
        Offset(31),
        "never goes back"
    );
    assert!(log.delete_records_before(Offset(101)).is_err());
    // Survives a reopen (checkpoint).
    common::crash(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), Offset(31));

    // Time retention: segments whose newest record is older than retention.ms go.
    log.set_config(LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    });
    let before = log.segment_count();
    let deleted = log.apply_retention(40_000).unwrap();
    assert!(deleted > 0 && log.segment_count() == before - deleted);
    assert!(log.log_start_offset().0 > 31);
    // Everything left has a segment with newest timestamp >= 30_000.
    let first = all_batches(&log)[0].0;
    assert!(first >= 2 * 25, "first remaining batch at {first}");
    // Size retention keeps at most retention.bytes (plus the active segment).
    log.set_config(LogConfig {
        retention_bytes: Some(3_000),
        ..small_config()
    });
    log.apply_retention(40_000).unwrap();
    assert!(log.size_bytes() <= 3_000 + 4_096, "{}", log.size_bytes());
    // Never the active segment, even if everything is expired.
    log.set_config(LogConfig {
        retention_ms: Some(0),
        ..small_config()
    });
    log.apply_retention(i64::MAX / 2).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), Offset(100));
    let r = log
        .read(
            log.log_start_offset(),
            usize::MAX,
            log.log_end_offset(),
            true,
        )
        .unwrap();
    assert!(r.bytes > 0);
}

#[test]
fn leader_epochs_are_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.record_leader_epoch(LeaderEpoch(1), Offset(0)).unwrap();
    log.append(&mut batch(5, 1, 0, 0), 0).unwrap();
    log.record_leader_epoch(LeaderEpoch(3), Offset(5)).unwrap();
    log.append(&mut batch(5, 1, 0, 0), 0).unwrap();
    assert!(log.record_leader_epoch(LeaderEpoch(2), Offset(10)).is_err());
    // Batches carry the leader epoch.
    let b = all_batches(&log);
    assert_eq!(
        BatchHeader::parse(&b[0].1).unwrap().partition_leader_epoch,
        1
    );
    assert_eq!(
        BatchHeader::parse(&b[1].1).unwrap().partition_leader_epoch,
        3
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(5)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(2)),
        Some((LeaderEpoch(1), Offset(5)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(3)),
        Some((LeaderEpoch(3), Offset(10)))
    );
    // Kafka: above the latest epoch is undefined; below the first, the first's start.
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(7)), None);
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(0)),
        Some((LeaderEpoch(0), Offset(0)))
    );
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n2\n1 0\n3 5\n");
    common::crash(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(
        log.leader_epochs(),
        vec![(LeaderEpoch(1), Offset(0)), (LeaderEpoch(3), Offset(5))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_to_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut tasks = vec![];
    for t in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let r = log.append(&mut batch(1, 100, 0, t * 100 + i), 0).unwrap();
                log.sync_to(r.last_offset).await.unwrap();
                assert!(log.durable_offset() > r.last_offset);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.log_end_offset(), Offset(320));
    assert_eq!(log.durable_offset(), Offset(320));
    // Already durable: resolves at once.
    log.sync_to(Offset(3)).await.unwrap();
    // The recovery point moved past sealed segments in the background.
    let rp = std::fs::read_to_string(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    let rp: i64 = rp.lines().nth(2).unwrap().parse().unwrap();
    assert!(rp > 0, "recovery point {rp}");
}

#[test]
fn flush_interval_messages_syncs_in_background() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush_interval_messages: Some(3),
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    for i in 0..3 {
        log.append(&mut batch(1, 1, 0, i), 0).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while log.durable_offset() < Offset(3) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(log.durable_offset(), Offset(3));
    log.flush().unwrap();
    log.sync_to(Offset(2)).wait_blocking().unwrap();
}

#[test]
fn delete_log_dir_removes_everything() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("topic-0");
    let log = open(&dir, LogConfig::default());
    log.append(&mut batch(1, 1, 0, 0), 0).unwrap();
    log.close().unwrap();
    common::crash(log);
    fjord_storage::delete_log_dir(&dir).unwrap();
    assert!(!dir.exists());
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
    std::fs::create_dir(data.path().join("t-1.123.deleted")).unwrap();
    assert_eq!(fjord_storage::remove_deleted_dirs(data.path()).unwrap(), 1);
}

#[test]
fn concurrent_reads_during_appends_see_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..400u64 {
                log.append(&mut batch(1 + (i % 4) as usize, 40, i as i64, i), 0)
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 10 {
        let end = log.log_end_offset();
        let got = split(
            &log.read(Offset(0), usize::MAX, end, true)
                .unwrap()
                .to_vec()
                .unwrap(),
        );
        let mut next = 0;
        for (base, b) in &got {
            assert_eq!(*base, next);
            next = BatchHeader::parse(b).unwrap().next_offset();
        }
        assert_eq!(next, end.0);
        reads += 1;
    }
    writer.join().unwrap();
}

#[test]
fn crash_recovery_scans_only_past_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes_max: 64 << 20,
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg.clone());
    // 8 MiB in one segment, made durable in groups.
    let template = batch(16, 1000, 1_000, 7);
    let mut expected = 0u64;
    for i in 0..512 {
        let r = log.append(&mut template.clone(), 0).unwrap();
        expected += 1;
        if i % 64 == 63 {
            log.sync_to(r.last_offset).wait_blocking().unwrap();
            // The in-memory recovery point follows every group commit.
            assert_eq!(log.recovery_point(), log.log_end_offset());
        }
    }
    assert!(log.size_bytes() > 8_000_000);
    // The flusher persists the recovery point at most once per interval: wait it out,
    // then one more durable append carries the checkpoint.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let r = log.append(&mut template.clone(), 0).unwrap();
    expected += 1;
    log.sync_to(r.last_offset).wait_blocking().unwrap();
    let checkpointed = log.log_end_offset().0;
    let read_rp = || {
        let text =
            std::fs::read_to_string(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
        text.lines().nth(2).unwrap().parse::<i64>().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while read_rp() < checkpointed {
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint not written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // An unflushed tail, then a crash.
    for _ in 0..3 {
        log.append(&mut template.clone(), 0).unwrap();
        expected += 1;
    }
    let size = log.size_bytes();
    common::crash(log);
    let (log, report) = Log::open(&Storage::default(), dir.path(), cfg.clone(), 0).unwrap();
    assert!(!report.clean);
    assert_eq!(report.recovery_point, Some(Offset(checkpointed)));
    assert!(log.durable_offset() >= Offset(checkpointed));
    assert_eq!(report.segments_scanned, 1, "{report:?}");
    // The tail (3 batches of ~16 KiB) plus at most an index interval and a batch.
    assert!(
        report.bytes_scanned < 256 * 1024,
        "scanned {} of {size} bytes: {report:?}",
        report.bytes_scanned
    );
    assert_eq!(report.bytes_truncated, 0);
    let got = all_batches(&log);
    assert_eq!(got.len() as u64, expected);
    assert!(got.iter().all(|(_, b)| b[61..] == template[61..]));
    // Recovery left the checkpoint and the fsync of the scanned tail to the background:
    // both follow at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while read_rp() < log.log_end_offset().0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after recovery"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(log.durable_offset(), log.log_end_offset());
    // `checkpoint()` (for a timer) persists what is durable; the next crash scans nothing
    // before it.
    log.append(&mut template.clone(), 0).unwrap();
    log.sync_to(log.log_end_offset()).wait_blocking().unwrap();
    log.checkpoint().unwrap();
    assert_eq!(read_rp(), log.log_end_offset().0);
    common::crash(log);
    let (_log, report) = Log::open(&Storage::default(), dir.path(), cfg, 0).unwrap();
    assert!(report.bytes_scanned < 64 * 1024, "{report:?}");
}

/// The concatenated bytes of every segment file of `dir`, in order.
fn segment_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

#[test]
fn shared_appends_write_the_same_bytes_as_owned_ones_without_touching_the_input() {
    use fjord_records::{BatchBuilder, Compression};
    let idempotent = |seq: i32, records: usize| {
        let mut b = BatchBuilder::new(Compression::None).producer(7, 0, seq);
        for i in 0..records {
            b.push(1_000 + i as i64, Some(b"k"), Some(&[i as u8; 300]), &[]);
        }
        b.build(0)
    };
    for timestamp_type in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
        let cfg = LogConfig {
            timestamp_type,
            ..small_config()
        };
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let owned = open(da.path(), cfg.clone());
        let shared = open(db.path(), cfg.clone());
        let requests: Vec<Vec<u8>> = vec![
            batch(3, 50, 100, 1),
            [
                batch(1, 10, 200, 2),
                batch(5, 700, 201, 3),
                batch(2, 1, 202, 4),
            ]
            .concat(),
            idempotent(0, 4),
            idempotent(0, 4), // a retry: answered as a duplicate, nothing written
            idempotent(4, 2),
            batch(3, 900, 300, 5), // rolls the small segments
            [batch(1, 1500, 400, 6), batch(1, 1500, 401, 7)].concat(),
        ];
        for (i, req) in requests.iter().enumerate() {
            let epoch = LeaderEpoch(2 + i as i32 / 3);
            let mut mine = req.clone();
            let a = owned
                .append_as_leader(&mut mine, epoch, 9_000 + i as i64)
                .unwrap();
            let input = req.clone();
            let b = shared
                .append_as_leader_shared(&input, epoch, 9_000 + i as i64)
                .unwrap();
            assert_eq!(input, *req, "the shared input is not changed");
            assert_eq!(
                (
                    a.base_offset,
                    a.last_offset,
                    a.log_append_time_ms,
                    a.duplicate
                ),
                (
                    b.base_offset,
                    b.last_offset,
                    b.log_append_time_ms,
                    b.duplicate
                ),
                "request {i}"
            );
        }
        assert!(owned.segment_count() > 1, "{}", owned.segment_count());
        assert_eq!(owned.log_end_offset(), shared.log_end_offset());
        assert_eq!(segment_bytes(da.path()), segment_bytes(db.path()));
        assert_eq!(all_batches(&owned), all_batches(&shared));
        // And the shared log reopens (recovery checks every batch's framing and CRC).
        shared.close().unwrap();
        let reopened = open(db.path(), cfg);
        assert_eq!(reopened.log_end_offset(), owned.log_end_offset());
        assert_eq!(all_batches(&reopened), all_batches(&owned));
    }
}
