//! Idempotent producers through `Log`: duplicates, sequence and epoch errors, and the
//! producer state surviving clean close, crash and damaged snapshots.

mod common;

use common::{all_batches, open, small_config};
use fjord_model::{ErrorCode, Offset, ProducerEpoch, ProducerId, TimestampType};
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::{Log, LogConfig, Storage};

/// An idempotent batch of `records` records with 100-byte values.
fn idem(pid: i64, epoch: i16, seq: i32, records: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None).producer(pid, epoch, seq);
    for i in 0..records {
        let value = vec![(seq as usize + i) as u8; 100];
        b.push(ts + i as i64, Some(b"key".as_slice()), Some(&value), &[]);
    }
    b.build(0)
}

fn append(log: &Log, mut bytes: Vec<u8>) -> Result<fjord_storage::AppendResult, ErrorCode> {
    log.append(&mut bytes, 5_000).map_err(|e| e.kafka_code())
}

#[test]
fn retry_returns_the_original_offsets_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, common::batch(2, 10, 1, 1)).unwrap();
    let first = append(&log, idem(7, 0, 0, 3, 1_000)).unwrap();
    assert_eq!(
        (first.base_offset, first.last_offset),
        (Offset(2), Offset(4))
    );
    assert!(!first.duplicate);
    let second = append(&log, idem(7, 0, 3, 2, 1_000)).unwrap();
    assert_eq!(second.base_offset, Offset(5));
    let batches = all_batches(&log);

    for _ in 0..2 {
        let again = append(&log, idem(7, 0, 0, 3, 1_000)).unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.base_offset, again.last_offset),
            (Offset(2), Offset(4))
        );
        assert_eq!(again.records_count, 0);
        assert_eq!(again.log_append_time_ms, -1);
    }
    let again = append(&log, idem(7, 0, 3, 2, 1_000)).unwrap();
    assert_eq!(
        (again.base_offset, again.last_offset),
        (Offset(5), Offset(6))
    );
    assert_eq!(log.log_end_offset(), Offset(7));
    assert_eq!(all_batches(&log), batches);

    // The next sequence goes on; two batches of one append are checked in order.
    let two = [idem(7, 0, 5, 1, 1_000), idem(7, 0, 6, 2, 1_000)].concat();
    let r = append(&log, two.clone()).unwrap();
    assert_eq!((r.base_offset, r.last_offset), (Offset(7), Offset(9)));
    let r = append(&log, two).unwrap();
    assert!(r.duplicate);
    assert_eq!((r.base_offset, r.last_offset), (Offset(7), Offset(9)));
    let state = log.producer_state(ProducerId(7)).unwrap();
    assert_eq!(state.epoch, ProducerEpoch(0));
    assert_eq!(state.last_sequence(), Some(7));
    assert_eq!(state.batches.len(), 4);
}

#[test]
fn gaps_old_epochs_and_missing_sequences_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, idem(3, 0, 0, 2, 1_000)).unwrap();
    let end = log.log_end_offset();
    // Gap, overlap and a new epoch not starting at 0.
    for bad in [
        idem(3, 0, 3, 1, 0),
        idem(3, 0, 1, 1, 0),
        idem(3, 1, 5, 1, 0),
    ] {
        assert_eq!(
            append(&log, bad).unwrap_err(),
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
    }
    // A good batch in the same append as a gap: nothing is written.
    let mixed = [idem(3, 0, 2, 1, 0), idem(3, 0, 9, 1, 0)].concat();
    assert_eq!(
        append(&log, mixed).unwrap_err(),
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(log.log_end_offset(), end);

    // Epoch bump starts at 0; then the old epoch is fenced.
    let r = append(&log, idem(3, 1, 0, 1, 1_000)).unwrap();
    assert_eq!(r.base_offset, end);
    assert_eq!(
        append(&log, idem(3, 0, 2, 1, 0)).unwrap_err(),
        ErrorCode::INVALID_PRODUCER_EPOCH
    );
    // A producer id without a sequence number is an invalid record (as in Kafka).
    assert_eq!(
        append(&log, idem(4, 0, -1, 1, 0)).unwrap_err(),
        ErrorCode::INVALID_RECORD
    );
    // A batch without producer id is never checked.
    append(&log, common::batch(1, 1, 0, 0)).unwrap();
    assert_eq!(log.producer_count(), 1);
}

#[test]
fn log_append_time_duplicates_answer_the_original_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    let first = log.append(&mut idem(1, 0, 0, 1, 0), 7_000).unwrap();
    assert_eq!(first.log_append_time_ms, 7_000);
    let again = log.append(&mut idem(1, 0, 0, 1, 0), 9_000).unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.base_offset, again.log_append_time_ms),
        (Offset(0), 7_000)
    );
}

/// Appends `n` single-record batches for producers 1..=3 in turn; returns
/// (pid, seq, base offset) of each.
fn fill(log: &Log, n: i32) -> Vec<(i64, i32, Offset)> {
    let mut out = Vec::new();
    for i in 0..n {
        let pid = i64::from(i % 3) + 1;
        let seq = (i / 3) * 2;
        let r = append(log, idem(pid, 0, seq, 2, 1_000)).unwrap();
        out.push((pid, seq, r.base_offset));
    }
    out
}

/// The last five batches of every producer are duplicates with their original offsets;
/// the next sequence is accepted and a gap is not.
fn assert_state(log: &Log, appended: &[(i64, i32, Offset)]) {
    let end = log.log_end_offset();
    for pid in 1..=3 {
        let mine: Vec<_> = appended.iter().filter(|a| a.0 == pid).collect();
        for &&(_, seq, base) in mine.iter().rev().take(5) {
            let r = append(log, idem(pid, 0, seq, 2, 1_000)).unwrap();
            assert!(r.duplicate, "pid {pid} seq {seq}");
            assert_eq!(r.base_offset, base, "pid {pid} seq {seq}");
        }
        let next = mine.last().map_or(0, |a| a.1 + 2);
        assert_eq!(
            append(log, idem(pid, 0, next + 1, 1, 1_000)).unwrap_err(),
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
    }
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn state_survives_clean_close_without_replay() {
    let dir = tempfile::tempdir().unwrap();
    let appended = {
        let log = open(dir.path(), small_config());
        let a = fill(&log, 40);
        log.close().unwrap();
        a
    };
    let (log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 1_000).unwrap();
    assert!(report.clean);
    assert_eq!(report.producer_snapshot, Some(log.log_end_offset()));
    assert_eq!(report.producer_batches_replayed, 0);
    assert_state(&log, &appended);
    assert!(log.segment_count() > 2, "the test should roll segments");
}

#[test]
fn state_survives_a_crash_replaying_only_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let appended = fill(&log, 40);
    let active_batches = {
        let last_base = appended.iter().map(|a| a.2).max().unwrap();
        let r = log
            .read(last_base, usize::MAX, log.log_end_offset(), true)
            .unwrap();
        assert!(r.bytes > 0);
        log.segment_count()
    };
    common::crash(log);
    let (log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 1_000).unwrap();
    assert!(!report.clean);
    let snap = report
        .producer_snapshot
        .expect("a snapshot from the last roll");
    assert!(snap.0 > 0 && snap < log.log_end_offset(), "{report:?}");
    // Only the batches after the last roll are replayed (two-record batches).
    assert_eq!(
        report.producer_batches_replayed,
        ((log.log_end_offset().0 - snap.0) / 2) as u64,
        "{report:?}"
    );
    assert_eq!(log.segment_count(), active_batches);
    assert_state(&log, &appended);
    // A crash right after a crash reopen: the same again.
    common::crash(log);
    let (log, _) = Log::open(&Storage::default(), dir.path(), small_config(), 1_000).unwrap();
    assert_state(&log, &appended);
}

#[test]
fn damaged_or_missing_snapshots_fall_back_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let appended = fill(&log, 40);
    log.close().unwrap();
    drop(log);
    let snapshots = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
            .collect();
        v.sort();
        v
    };
    let snaps = snapshots(dir.path());
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    // Garble the newest: the older one is used and the rest replayed.
    std::fs::write(&snaps[1], b"FJPS garbage").unwrap();
    let (log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 1_000).unwrap();
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("producer snapshot")));
    assert!(report.producer_snapshot.is_some());
    assert!(report.producer_batches_replayed > 0);
    assert_state(&log, &appended);
    log.close().unwrap();
    drop(log);
    // No snapshot at all: everything is replayed from the first segment.
    for s in snapshots(dir.path()) {
        std::fs::remove_file(s).unwrap();
    }
    let (log, report) = Log::open(&Storage::default(), dir.path(), small_config(), 1_000).unwrap();
    assert_eq!(report.producer_snapshot, None);
    assert_eq!(report.producer_batches_replayed, 40);
    assert_state(&log, &appended);
}

#[test]
fn producers_expire_after_a_day_of_inactivity() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, idem(1, 0, 0, 1, 1_000)).unwrap();
    assert_eq!(log.producer_count(), 1);
    log.apply_retention(1_000 + 24 * 3600 * 1000).unwrap();
    assert_eq!(log.producer_count(), 0);
    // Forgotten: any sequence is accepted again (Kafka's behaviour for unknown ids).
    append(&log, idem(1, 0, 17, 1, 1_000)).unwrap();
    // Expired producers are not loaded back after a restart either.
    log.close().unwrap();
    let (log, _) = Log::open(
        &Storage::default(),
        dir.path(),
        LogConfig::default(),
        2_000 + 24 * 3600 * 1000,
    )
    .unwrap();
    assert_eq!(log.producer_count(), 0);
}

/// A transactional batch of one producer (the attribute bit set).
fn txn_batch(pid: i64, epoch: i16, seq: i32, records: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None)
        .producer(pid, epoch, seq)
        .transactional(true);
    for i in 0..records {
        b.push(
            ts + i as i64,
            Some(b"key".as_slice()),
            Some(b"v".as_slice()),
            &[],
        );
    }
    b.build(0)
}

fn marker(pid: i64, epoch: i16, aborted: bool) -> fjord_storage::TxnMarker {
    fjord_storage::TxnMarker {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(epoch),
        coordinator_epoch: 0,
        aborted,
        transaction_version: 0,
    }
}

#[test]
fn markers_close_open_transactions_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append(&log, common::batch(2, 10, 1, 1)).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    append(&log, txn_batch(7, 0, 0, 3, 1_000)).unwrap();
    append(&log, txn_batch(8, 0, 0, 1, 1_000)).unwrap();
    // Two open transactions: the oldest one's first offset bounds what is stable.
    assert_eq!(log.first_unstable_offset(), Some(Offset(2)));
    // A non-transactional batch while a transaction is open is refused.
    assert_eq!(
        append(&log, idem(7, 0, 3, 1, 1_000)).unwrap_err(),
        ErrorCode::INVALID_TXN_STATE
    );
    let (written, done) = log
        .append_marker(&marker(7, 0, true), fjord_model::LeaderEpoch(0), 2_000)
        .unwrap();
    let done = done.expect("producer 7's transaction was open");
    assert_eq!(written.base_offset, Offset(6));
    assert_eq!(
        (done.first_offset, done.last_offset),
        (Offset(2), Offset(6))
    );
    assert!(done.aborted);
    assert_eq!(log.first_unstable_offset(), Some(Offset(5)));
    // A marker of an older epoch is refused and nothing is written.
    append(&log, txn_batch(7, 1, 0, 1, 1_000)).unwrap();
    assert_eq!(
        log.append_marker(&marker(7, 0, false), fjord_model::LeaderEpoch(0), 2_000)
            .map_err(|e| e.kafka_code())
            .unwrap_err(),
        ErrorCode::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(log.log_end_offset(), Offset(8));
    log.append_marker(&marker(8, 0, false), fjord_model::LeaderEpoch(0), 2_000)
        .unwrap();
    assert_eq!(log.first_unstable_offset(), Some(Offset(7)));
    // Clients may not write control batches.
    let mut forged = fjord_records::end_txn_marker_batch(
        0,
        1_000,
        0,
        7,
        1,
        fjord_records::EndTxnMarker {
            marker: fjord_records::MarkerType::Commit,
            coordinator_epoch: 0,
        },
    );
    assert!(log
        .append_as_leader(&mut forged, fjord_model::LeaderEpoch(0), 1_000)
        .is_err());
    assert_eq!(log.first_unstable_offset(), Some(Offset(7)));
    // After a crash the producer state is rebuilt from the batch headers, markers included.
    common::crash(log);
    let (log, _) = Log::open(&Storage::default(), dir.path(), LogConfig::default(), 3_000).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(Offset(7)));
    log.append_marker(&marker(7, 1, false), fjord_model::LeaderEpoch(0), 3_000)
        .unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    assert!(log.producer_state(ProducerId(7)).is_some());
}
