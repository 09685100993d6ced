//! The replicated-log surface: `append_as_leader` (epoch passed in and stamped),
//! `append_as_follower` (the leader's offsets and epochs, checked), `truncate_to`
//! (divergence; crash-safe through an intent completed at open) and
//! `end_offset_for_epoch` (Kafka's OffsetForLeaderEpoch answers).

mod common;

use std::path::Path;

use common::{all_batches, batch, open, small_config};
use fjord_model::{ErrorCode, LeaderEpoch, Offset, ProducerId};
use fjord_records::{BatchBuilder, BatchHeader, Compression};
use fjord_storage::{Log, LogConfig, Storage};

fn header(bytes: &[u8]) -> BatchHeader {
    BatchHeader::parse(bytes).unwrap()
}

/// An idempotent batch (producer 7, epoch 0) with `records` records from `seq`.
fn idem(seq: i32, records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None).producer(7, 0, seq);
    for i in 0..records {
        b.push(
            1_000 + i as i64,
            Some(b"k".as_slice()),
            Some(&[seq as u8; 50]),
            &[],
        );
    }
    b.build(0)
}

fn lead(log: &Log, mut bytes: Vec<u8>, epoch: i32) -> fjord_storage::AppendResult {
    log.append_as_leader(&mut bytes, LeaderEpoch(epoch), 1_000)
        .unwrap()
}

/// Segments of about 1 KiB, so that the test logs have several.
fn tiny() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1024,
        index_interval_bytes: 128,
        ..small_config()
    }
}

#[test]
fn leader_appends_stamp_the_epoch_passed_in_and_record_new_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    // The data says epoch 99; the leader says 2.
    let mut b = batch(3, 10, 0, 1);
    fjord_records::set_partition_leader_epoch(&mut b, 99);
    let r = log.append_as_leader(&mut b, LeaderEpoch(2), 1_000).unwrap();
    assert_eq!((r.base_offset, r.last_offset), (Offset(0), Offset(2)));
    lead(&log, batch(2, 10, 0, 2), 2);
    lead(&log, batch(2, 10, 0, 3), 5);
    let got = all_batches(&log); // checks every CRC
    let epochs: Vec<i32> = got
        .iter()
        .map(|(_, b)| header(b).partition_leader_epoch)
        .collect();
    assert_eq!(epochs, vec![2, 2, 5]);
    assert_eq!(
        log.leader_epochs(),
        vec![(LeaderEpoch(2), Offset(0)), (LeaderEpoch(5), Offset(5))]
    );
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n2\n2 0\n5 5\n");

    // An older epoch is fenced and writes nothing; a negative one is refused.
    let e = log
        .append_as_leader(&mut batch(1, 10, 0, 4), LeaderEpoch(4), 1_000)
        .unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::FENCED_LEADER_EPOCH);
    assert!(log
        .append_as_leader(&mut batch(1, 10, 0, 4), LeaderEpoch(-1), 1_000)
        .is_err());
    assert_eq!(log.log_end_offset(), Offset(7));
    assert!(!log.is_offline());
    // The legacy append stamps the latest epoch.
    log.append(&mut batch(1, 10, 0, 5), 1_000).unwrap();
    assert_eq!(header(&all_batches(&log)[3].1).partition_leader_epoch, 5);

    common::crash(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        log.leader_epochs(),
        vec![(LeaderEpoch(2), Offset(0)), (LeaderEpoch(5), Offset(5))]
    );
}

#[test]
fn follower_appends_the_leaders_batches_byte_for_byte() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(ld.path(), small_config());
    let follower = open(fd.path(), small_config());
    lead(&leader, batch(3, 100, 0, 1), 1);
    lead(&leader, idem(0, 2), 1);
    lead(&leader, batch(4, 100, 0, 2), 3);
    lead(&leader, idem(2, 3), 3);
    for i in 0..20 {
        lead(&leader, batch(2, 300, i, 10 + i as u64), 4);
    }
    assert!(leader.segment_count() > 3);

    // Fetch in pieces of whole batches, as a replica fetcher would.
    let batches = all_batches(&leader);
    for chunk in batches.chunks(3) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|(_, b)| b.clone()).collect();
        let r = follower.append_as_follower(&bytes, 2_000).unwrap();
        assert_eq!(r.base_offset.0, chunk[0].0);
        assert_eq!(r.log_append_time_ms, -1);
        assert_eq!(follower.log_end_offset().0, r.last_offset.0 + 1);
    }
    assert_eq!(all_batches(&follower), batches);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(
        follower
            .producer_state(ProducerId(7))
            .map(|e| e.last_sequence()),
        leader
            .producer_state(ProducerId(7))
            .map(|e| e.last_sequence())
    );
    assert_eq!(
        follower
            .producer_state(ProducerId(7))
            .unwrap()
            .last_sequence(),
        Some(4)
    );

    // Wrong first offset (a repeat, a gap), offsets inside that skip, epochs going back:
    // refused, nothing written, the log stays online.
    let leo = follower.log_end_offset();
    let last = batches.last().unwrap().1.clone();
    let at = |base: i64, epoch: i32| {
        let mut b = batch(2, 10, 0, 77);
        fjord_records::set_base_offset(&mut b, base);
        fjord_records::set_partition_leader_epoch(&mut b, epoch);
        b
    };
    let gap = at(leo.0 + 1, 4);
    let back = at(leo.0, 2);
    let skip = [at(leo.0, 4), at(leo.0 + 3, 4)].concat();
    for bad in [last, gap, back, skip] {
        let e = follower.append_as_follower(&bad, 2_000).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::UNKNOWN_SERVER_ERROR, "{e}");
        assert_eq!(follower.log_end_offset(), leo);
    }
    // A damaged batch (CRC) is refused too.
    let mut bad = at(leo.0, 4);
    let n = bad.len();
    bad[n - 1] ^= 1;
    let e = follower.append_as_follower(&bad, 2_000).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::CORRUPT_MESSAGE);
    assert!(!follower.is_offline());
    // A new epoch from the leader's data starts where its first batch does.
    follower.append_as_follower(&at(leo.0, 9), 2_000).unwrap();
    assert_eq!(
        follower.leader_epochs().last(),
        Some(&(LeaderEpoch(9), leo))
    );
    // Reopen after a crash: the same log.
    let expect = all_batches(&follower);
    common::crash(follower);
    let follower = open(fd.path(), small_config());
    assert_eq!(all_batches(&follower), expect);
    assert_eq!(
        follower.leader_epochs().last(),
        Some(&(LeaderEpoch(9), leo))
    );
}

/// A log of 30 batches of 2 records (offsets 0..60) over several segments, epochs
/// 1 (from 0), 2 (from 20), 4 (from 40); batches 10.. are one idempotent producer's.
fn divergent_log(dir: &Path) -> std::sync::Arc<Log> {
    let log = open(dir, tiny());
    for i in 0..30i32 {
        let epoch = match i {
            0..10 => 1,
            10..20 => 2,
            _ => 4,
        };
        let b = if i < 10 {
            batch(2, 150, i64::from(i), i as u64)
        } else {
            idem((i - 10) * 2, 2)
        };
        lead(&log, b, epoch);
    }
    assert_eq!(log.log_end_offset(), Offset(60));
    assert!(log.segment_count() >= 4, "{}", log.segment_count());
    log
}

#[test]
fn truncate_to_removes_the_tail_and_everything_that_depends_on_it() {
    for target in [59, 45, 41, 40, 21, 20, 13, 1, 0] {
        let dir = tempfile::tempdir().unwrap();
        let log = divergent_log(dir.path());
        let before = all_batches(&log);
        log.flush().unwrap();
        assert_eq!(log.durable_offset(), Offset(60));
        let new_end = log.truncate_to(Offset(target)).unwrap();
        // Offsets are batch starts at even numbers: an odd target drops its whole batch.
        let expect_end = target - target % 2;
        assert_eq!(new_end, Offset(expect_end), "target {target}");
        assert_eq!(log.log_end_offset(), new_end);
        let kept: Vec<_> = before
            .iter()
            .filter(|(o, _)| *o < expect_end)
            .cloned()
            .collect();
        assert_eq!(all_batches(&log), kept, "target {target}");
        assert!(log.durable_offset() <= new_end && log.recovery_point() <= new_end);
        // Every kept offset reads from the right batch (indexes consistent).
        for o in 0..expect_end {
            let r = log.read(Offset(o), 1, new_end, true).unwrap();
            let got = common::split(&r.to_vec().unwrap());
            assert_eq!(got[0].0, o - o % 2, "read {o} after truncation to {target}");
        }
        if expect_end > 0 {
            assert_eq!(
                log.offset_for_timestamp(0).unwrap().map(|x| x.0),
                Some(Offset(0))
            );
        }
        // Epochs starting at or after the new end are gone.
        let epochs: Vec<(i32, i64)> = log
            .leader_epochs()
            .iter()
            .map(|(e, o)| (e.0, o.0))
            .collect();
        let all = [(1, 0), (2, 20), (4, 40)];
        let want: Vec<_> = all
            .iter()
            .copied()
            .filter(|&(_, s)| s < expect_end)
            .collect();
        assert_eq!(epochs, want, "target {target}");
        // The producer state is what the kept batches say.
        let seq = log
            .producer_state(ProducerId(7))
            .and_then(|e| e.last_sequence());
        let want_seq = (expect_end > 20).then(|| ((expect_end - 20) - 1) as i32);
        assert_eq!(seq, want_seq, "target {target}");

        // Appends go on from the new end, as leader (new epoch) or as follower.
        let r = lead(&log, batch(1, 10, 0, 99), 6);
        assert_eq!(r.base_offset, new_end);
        let r2 = log.sync_to(r.last_offset);
        r2.wait_blocking().unwrap();
        assert_eq!(log.leader_epochs().last(), Some(&(LeaderEpoch(6), new_end)));
        let after = all_batches(&log);
        assert!(!dir.path().join("truncation-intent").exists());

        // Crash and reopen: the same log.
        common::crash(log);
        let (log, report) = Log::open(&Storage::default(), dir.path(), tiny(), 0).unwrap();
        assert_eq!(all_batches(&log), after, "target {target}: {report:?}");
        assert_eq!(report.truncation_completed, None);
        assert_eq!(log.leader_epochs().last(), Some(&(LeaderEpoch(6), new_end)));
        log.close().unwrap();
    }
}

#[test]
fn truncate_to_edges() {
    let dir = tempfile::tempdir().unwrap();
    let log = divergent_log(dir.path());
    // At or past the end: nothing changes.
    assert_eq!(log.truncate_to(Offset(60)).unwrap(), Offset(60));
    assert_eq!(log.truncate_to(Offset(1_000)).unwrap(), Offset(60));
    // Below the log start: out of range.
    log.delete_records_before(Offset(10)).unwrap();
    let e = log.truncate_to(Offset(8)).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    assert_eq!(log.log_end_offset(), Offset(60));
    // Exactly at the log start: empty, but the start stays.
    assert_eq!(log.truncate_to(Offset(10)).unwrap(), Offset(10));
    assert_eq!(log.log_start_offset(), Offset(10));
    assert!(all_batches(&log).is_empty());
    let r = lead(&log, batch(2, 10, 0, 1), 7);
    assert_eq!(r.base_offset, Offset(10));
    assert!(!log.is_offline());
}

/// A crash at any point of `truncate_to` reopens to the log before or after it: the
/// intent file is what decides. Simulated by building each possible on-disk state.
#[test]
fn an_interrupted_truncation_is_completed_at_open() {
    // The finished truncation, for comparison.
    let done_dir = tempfile::tempdir().unwrap();
    let log = divergent_log(done_dir.path());
    log.close().unwrap();
    common::crash(log);
    let template = tempfile::tempdir().unwrap();
    copy_dir(done_dir.path(), template.path());
    let log = open(done_dir.path(), tiny());
    let before = all_batches(&log);
    let epochs_before = log.leader_epochs();
    log.truncate_to(Offset(33)).unwrap();
    let after = all_batches(&log);
    let epochs_after = log.leader_epochs();
    // Where the cut is: the active segment's size.
    let (tail_base, tail_len) = newest_segment(done_dir.path());
    common::crash(log);

    // 1. Crash before the intent is durable: the old log.
    let d1 = tempfile::tempdir().unwrap();
    copy_dir(template.path(), d1.path());
    let (log, report) = Log::open(&Storage::default(), d1.path(), tiny(), 0).unwrap();
    assert_eq!(all_batches(&log), before);
    assert_eq!(log.leader_epochs(), epochs_before);
    assert_eq!(report.truncation_completed, None);
    drop(log);

    // 2. The intent is written, nothing else (also: the clean-shutdown marker is there).
    // 3. ... and the later segments are removed. 4. ... and the tail is cut too.
    for stage in 2..=4 {
        let d = tempfile::tempdir().unwrap();
        copy_dir(template.path(), d.path());
        std::fs::write(
            d.path().join("truncation-intent"),
            format!("0\n1\n{tail_base} {tail_len} 32\n"),
        )
        .unwrap();
        if stage >= 3 {
            for e in std::fs::read_dir(d.path()).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                if let Some(base) = name.get(..20).and_then(|s| s.parse::<i64>().ok()) {
                    if base > tail_base {
                        std::fs::remove_file(d.path().join(&name)).unwrap();
                    }
                }
            }
        }
        if stage >= 4 {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.path().join(format!("{tail_base:020}.log")))
                .unwrap();
            f.set_len(tail_len).unwrap();
        }
        let (log, report) = Log::open(&Storage::default(), d.path(), tiny(), 0).unwrap();
        assert_eq!(
            report.truncation_completed,
            Some(Offset(32)),
            "stage {stage}"
        );
        assert!(!report.clean);
        assert_eq!(all_batches(&log), after, "stage {stage}");
        assert_eq!(log.leader_epochs(), epochs_after, "stage {stage}");
        assert_eq!(log.log_end_offset(), Offset(32));
        assert!(!d.path().join("truncation-intent").exists());
        let r = lead(&log, idem(12, 2), 4);
        assert_eq!(r.base_offset, Offset(32));
        assert!(
            !r.duplicate,
            "the truncated batch is not a duplicate any more"
        );
        log.close().unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// (base offset, length) of the newest segment's `.log` file.
fn newest_segment(dir: &Path) -> (i64, u64) {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
            Some((base, e.metadata().unwrap().len()))
        })
        .max()
        .unwrap()
}

#[test]
fn end_offset_for_epoch_answers_as_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // No epoch known: undefined.
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(0)), None);
    // Epochs 2 (from 0), 4 (from 5), 7 (from 12); log end 20.
    lead(&log, batch(5, 1, 0, 0), 2);
    lead(&log, batch(7, 1, 0, 1), 4);
    lead(&log, batch(8, 1, 0, 2), 7);
    let q = |e: i32| {
        log.end_offset_for_epoch(LeaderEpoch(e))
            .map(|(e, o)| (e.0, o.0))
    };
    // The latest epoch ends at the log end.
    assert_eq!(q(7), Some((7, 20)));
    // A known epoch ends where the next starts.
    assert_eq!(q(2), Some((2, 5)));
    assert_eq!(q(4), Some((4, 12)));
    // An unknown epoch between known ones: the largest below it, the next one's start.
    assert_eq!(q(3), Some((2, 5)));
    assert_eq!(q(6), Some((4, 12)));
    // Below every known epoch: the requested epoch and the first one's start.
    assert_eq!(q(1), Some((1, 0)));
    assert_eq!(q(0), Some((0, 0)));
    // Above the latest, or UNDEFINED_EPOCH: undefined.
    assert_eq!(q(8), None);
    assert_eq!(q(-1), None);
    // After the log start moved past epoch 2's data, the cache starts at the log start.
    log.delete_records_before(Offset(6)).unwrap();
    assert_eq!(q(1), Some((1, 6)));
    assert_eq!(q(4), Some((4, 12)));
}

/// A leader serves compacted batches (records missing, offsets with gaps
/// inside a batch) as its cleaner left them; a follower stores them as they
/// are, with the log end after the batch's last offset.
#[test]
fn a_follower_stores_a_compacted_batch_as_the_leader_holds_it() {
    let mut b = BatchBuilder::new(Compression::None).partition_leader_epoch(3);
    for i in 0..4 {
        let key = format!("k{i}");
        b.push(1_000 + i, Some(key.as_bytes()), Some(b"v".as_slice()), &[]);
    }
    let whole = b.build(0);
    let compacted = fjord_records::filter_batch(&whole, 1 << 20, None, |r| r.offset % 2 == 1)
        .unwrap()
        .batch;
    assert!(
        fjord_records::validate_batch(&compacted).is_err(),
        "a producer could not send it"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let r = log.append_as_follower(&compacted, 1_000).unwrap();
    assert_eq!((r.base_offset, r.last_offset), (Offset(0), Offset(3)));
    assert_eq!(log.log_end_offset(), Offset(4));
    let stored = log
        .read(Offset(0), 1 << 20, Offset(4), true)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(stored, compacted, "stored byte for byte");
    // A damaged one is still refused.
    let mut bad = compacted.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    let fresh = tempfile::tempdir().unwrap();
    let log = open(fresh.path(), small_config());
    assert!(log.append_as_follower(&bad, 1_000).is_err());
    assert_eq!(log.log_end_offset(), Offset(0));
}
