//! The aborted-transaction index through `Log`: ABORT markers add entries (Kafka's
//! `.txnindex` files, one per segment), read_committed collection, and the index kept
//! exact across segment rolls, clean close, crashes, damaged files, truncation,
//! retention and a follower's appends — against a simple model of transactions.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{open, small_config};
use fjord_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::txn_index::{AbortedTxn, TxnIndex};
use fjord_storage::{Log, LogConfig, Storage, TxnMarker};

/// What was written, in offset order: (offset, producer, what).
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// A transactional batch (its first offset).
    Data,
    /// A marker; true: ABORT.
    Marker(bool),
}

/// The index Kafka's rules give for `events` (the model): a transaction starts at its
/// producer's first transactional batch after the previous marker; an ABORT records
/// it with the last stable offset right after it (the oldest other open transaction's
/// first offset, or the offset after the marker). A marker of a producer with no open
/// transaction completes none and records nothing (Kafka's
/// `ProducerAppendInfo.appendEndTxnMarker`).
fn model(events: &[(i64, i64, Ev)]) -> Vec<AbortedTxn> {
    let mut open: BTreeMap<i64, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for &(offset, pid, ev) in events {
        match ev {
            Ev::Data => {
                open.entry(pid).or_insert(offset);
            }
            Ev::Marker(abort) => {
                let Some(first) = open.remove(&pid) else {
                    continue;
                };
                if abort {
                    let lso = open.values().copied().min().unwrap_or(offset + 1);
                    out.push(AbortedTxn {
                        producer_id: ProducerId(pid),
                        first_offset: Offset(first),
                        last_offset: Offset(offset),
                        last_stable_offset: Offset(lso.min(offset + 1)),
                    });
                }
            }
        }
    }
    out
}

fn txn_batch(pid: i64, seq: i32, records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None)
        .producer(pid, 0, seq)
        .transactional(true);
    for i in 0..records {
        b.push(
            1_000 + i as i64,
            Some(b"key".as_slice()),
            Some(&[7u8; 120][..]),
            &[],
        );
    }
    b.build(0)
}

fn marker(pid: i64, aborted: bool) -> TxnMarker {
    TxnMarker {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(0),
        coordinator_epoch: 0,
        aborted,
        transaction_version: 0,
    }
}

/// Appends one step chosen by `r` and records it in `events`.
fn step(log: &Log, r: u64, events: &mut Vec<(i64, i64, Ev)>) {
    let pid = (r % 3) as i64 + 1;
    if (r >> 8).is_multiple_of(3) {
        let aborted = (r >> 16).is_multiple_of(2);
        let (w, _) = log
            .append_marker(&marker(pid, aborted), LeaderEpoch(0), 2_000)
            .unwrap();
        events.push((w.base_offset.0, pid, Ev::Marker(aborted)));
    } else {
        let seq = log
            .producer_state(ProducerId(pid))
            .and_then(|e| e.last_sequence())
            .map_or(0, |s| s + 1);
        let records = 1 + ((r >> 20) % 4) as usize;
        let mut bytes = txn_batch(pid, seq, records);
        let w = log.append(&mut bytes, 2_000).unwrap();
        events.push((w.base_offset.0, pid, Ev::Data));
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 11
}

/// The `.txnindex` files of `dir`, read back as one index (in base order).
fn files_index(dir: &Path) -> TxnIndex {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txnindex"))
        .collect();
    names.sort();
    let mut bytes = Vec::new();
    for n in names {
        let one = std::fs::read(dir.join(&n)).unwrap();
        assert!(!one.is_empty(), "{n}: an empty index file is not kept");
        bytes.extend(one);
    }
    TxnIndex::from_bytes(&bytes).unwrap()
}

fn reopen(dir: &Path, cfg: &LogConfig) -> std::sync::Arc<Log> {
    Log::open(&Storage::default(), dir, cfg.clone(), 3_000)
        .unwrap()
        .0
}

#[test]
fn aborts_are_indexed_and_collected_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // Two interleaved transactions, one committed, one aborted, then a late one.
    log.append(&mut txn_batch(1, 0, 2), 2_000).unwrap(); // 0..=1
    log.append(&mut txn_batch(2, 0, 3), 2_000).unwrap(); // 2..=4
    log.append_marker(&marker(1, false), LeaderEpoch(0), 2_000)
        .unwrap(); // 5
    log.append(&mut txn_batch(1, 2, 1), 2_000).unwrap(); // 6
    log.append_marker(&marker(2, true), LeaderEpoch(0), 2_000)
        .unwrap(); // 7
    log.append_marker(&marker(1, true), LeaderEpoch(0), 2_000)
        .unwrap(); // 8
    let want = vec![
        AbortedTxn {
            producer_id: ProducerId(2),
            first_offset: Offset(2),
            last_offset: Offset(7),
            // Producer 1's transaction from 6 is still open.
            last_stable_offset: Offset(6),
        },
        AbortedTxn {
            producer_id: ProducerId(1),
            first_offset: Offset(6),
            last_offset: Offset(8),
            last_stable_offset: Offset(9),
        },
    ];
    assert_eq!(log.aborted_index(), want);
    // Kafka's format, one file for the segment at 0.
    assert_eq!(files_index(dir.path()).entries(), &want[..]);
    assert!(dir.path().join("00000000000000000000.txnindex").exists());
    // Collection: overlapping the fetched range only.
    assert_eq!(log.aborted_transactions(Offset(0), Offset(2)), Vec::new());
    assert_eq!(log.aborted_transactions(Offset(0), Offset(3)), want[..1]);
    assert_eq!(log.aborted_transactions(Offset(3), Offset(9)), want);
    assert_eq!(log.aborted_transactions(Offset(8), Offset(9)), want[1..]);
    assert_eq!(log.aborted_transactions(Offset(9), Offset(9)), Vec::new());
    // The records of a read: `next_offset` is the bound the fetch uses.
    let read = log.read(Offset(0), 1 << 20, Offset(9), true).unwrap();
    assert_eq!(read.next_offset, 9);
    let read = log.read(Offset(0), 1, Offset(9), true).unwrap();
    assert_eq!(read.next_offset, 2);
    log.close().unwrap();
    drop(log);
    let log = reopen(dir.path(), &LogConfig::default());
    assert_eq!(log.aborted_index(), want);
}

/// A marker of a producer whose transaction is not open here (never opened, or
/// already ended by an earlier marker: a coordinator's retry, or the abort of a
/// transaction that wrote nothing to this partition) completes no transaction: no
/// `.txnindex` entry, nothing for read_committed fetches, the last stable offset
/// unmoved, and so after a reopen and on a follower.
#[test]
fn a_marker_without_an_open_transaction_completes_none() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(&mut txn_batch(1, 0, 2), 2_000).unwrap(); // 0..=1
    let (_, done) = log
        .append_marker(&marker(1, false), LeaderEpoch(0), 2_000)
        .unwrap(); // 2
    assert!(
        done.is_some(),
        "the commit completes producer 1's transaction"
    );
    log.append(&mut txn_batch(2, 0, 1), 2_000).unwrap(); // 3, stays open
    for (pid, at) in [(1, 4), (9, 5)] {
        let (w, done) = log
            .append_marker(&marker(pid, true), LeaderEpoch(0), 2_000)
            .unwrap();
        assert_eq!(w.base_offset, Offset(at));
        assert_eq!(done, None, "producer {pid} has no open transaction");
    }
    assert_eq!(log.aborted_index(), Vec::new());
    assert_eq!(log.aborted_transactions(Offset(0), Offset(6)), Vec::new());
    assert!(!dir.path().join("00000000000000000000.txnindex").exists());
    assert_eq!(log.first_unstable_offset(), Some(Offset(3)));
    let (_, done) = log
        .append_marker(&marker(2, true), LeaderEpoch(0), 2_000)
        .unwrap(); // 6
    let want = vec![AbortedTxn {
        producer_id: ProducerId(2),
        first_offset: Offset(3),
        last_offset: Offset(6),
        last_stable_offset: Offset(7),
    }];
    assert!(done.is_some_and(|t| t.aborted && t.first_offset == Offset(3)));
    assert_eq!(log.aborted_index(), want);
    // A follower and a recovery replay the same markers to the same index.
    let fdir = tempfile::tempdir().unwrap();
    let follower = open(fdir.path(), LogConfig::default());
    let leo = log.log_end_offset();
    let read = log.read(Offset(0), 1 << 20, leo, true).unwrap();
    follower
        .append_as_follower(&read.to_vec().unwrap(), 2_000)
        .unwrap();
    assert_eq!(follower.aborted_index(), want);
    common::crash(log);
    let log = reopen(dir.path(), &LogConfig::default());
    assert_eq!(log.aborted_index(), want);
}

/// Random transactions of three producers on small segments; after every round the
/// index (in memory and in the files) equals the model, across clean reopen, crash,
/// a damaged file, truncation and retention.
#[test]
fn the_index_follows_the_model_through_rolls_crashes_and_truncation() {
    for seed0 in 0..6u64 {
        let mut seed = seed0 + 1;
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_config();
        let mut log = open(dir.path(), cfg.clone());
        let mut events: Vec<(i64, i64, Ev)> = Vec::new();
        for round in 0..8 {
            for _ in 0..30 {
                step(&log, rng(&mut seed), &mut events);
            }
            let want = model(&events);
            assert_eq!(log.aborted_index(), want, "seed {seed0} round {round}");
            match round % 4 {
                0 => {
                    log.close().unwrap();
                    drop(log);
                    log = reopen(dir.path(), &cfg);
                }
                1 => {
                    common::crash(log);
                    log = reopen(dir.path(), &cfg);
                }
                2 => {
                    // A torn index file: its entries are rebuilt from the log.
                    common::crash(log);
                    let mut files: Vec<_> = std::fs::read_dir(dir.path())
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .filter(|p| p.extension().is_some_and(|x| x == "txnindex"))
                        .collect();
                    files.sort();
                    if let Some(f) = files.get(files.len() / 2) {
                        let len = std::fs::metadata(f).unwrap().len();
                        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
                        file.set_len(len - 3).unwrap();
                    }
                    log = reopen(dir.path(), &cfg);
                }
                _ => {
                    // A follower's truncation somewhere in the last rounds' data.
                    let end = log.log_end_offset().0;
                    let to = end - 1 - (rng(&mut seed) % 40) as i64;
                    let new_end = log.truncate_to(Offset(to.max(0))).unwrap();
                    events.retain(|&(o, _, _)| o < new_end.0);
                }
            }
            assert_eq!(
                log.aborted_index(),
                model(&events),
                "seed {seed0} after round {round}"
            );
            assert_eq!(files_index(dir.path()).entries(), &model(&events)[..]);
        }
        assert!(log.segment_count() > 3, "the test rolls segments");
        // Retention: whole segments go with their index entries.
        let before = log.aborted_index();
        let start = log.delete_records_before(log.log_end_offset()).unwrap();
        let after = log.aborted_index();
        assert!(after.len() < before.len());
        assert_eq!(&before[before.len() - after.len()..], &after[..]);
        assert!(before[..before.len() - after.len()]
            .iter()
            .all(|t| t.last_offset < start));
        assert_eq!(files_index(dir.path()).entries(), &after[..]);
        log.close().unwrap();
        drop(log);
        let log = reopen(dir.path(), &cfg);
        assert_eq!(log.aborted_index(), after);
    }
}

#[test]
fn a_follower_builds_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut events = Vec::new();
    let mut seed = 99;
    for _ in 0..120 {
        step(&log, rng(&mut seed), &mut events);
    }
    let fdir = tempfile::tempdir().unwrap();
    let follower = open(fdir.path(), small_config());
    let leo = log.log_end_offset();
    let mut at = Offset(0);
    while at < leo {
        let read = log.read(at, 1000, leo, true).unwrap();
        follower
            .append_as_follower(&read.to_vec().unwrap(), 2_000)
            .unwrap();
        at = Offset(read.next_offset);
    }
    assert_eq!(follower.log_end_offset(), leo);
    assert!(!follower.aborted_index().is_empty());
    assert_eq!(follower.aborted_index(), log.aborted_index());
    assert_eq!(files_index(fdir.path()), files_index(dir.path()));
}
