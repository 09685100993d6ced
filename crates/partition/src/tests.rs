use std::sync::Arc;
use std::time::Duration;

use fjord_model::{LeaderEpoch, NodeId, Offset, PartitionIndex};
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::{Log, LogConfig, Storage};
use tokio::sync::Notify;

use super::*;

const NODE: NodeId = NodeId(1);

fn open(dir: &std::path::Path) -> Partition {
    let (log, _) = Log::open(&Storage::default(), dir, LogConfig::default(), 0).unwrap();
    Partition::new(
        PartitionIndex(0),
        log,
        NODE,
        ReplicaState::single_node(NODE),
    )
}

/// One batch of `n` records with timestamps `ts, ts+1, ...`.
fn batch(n: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.push(
            ts + i as i64,
            Some(b"k".as_slice()),
            Some(b"v".as_slice()),
            &[],
        );
    }
    b.build(0)
}

fn append(p: &Partition, n: usize, ts: i64, acks: Acks) -> Appended {
    let mut b = batch(n, ts);
    p.append(&mut b, acks, 1_000).unwrap()
}

fn read_bytes(f: &Fetched) -> usize {
    f.records.as_ref().map(|r| r.bytes).unwrap()
}

#[tokio::test]
async fn a_shared_append_leaves_its_input_alone_and_commits_like_an_owned_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    append(&p, 2, 10, Acks::Leader);
    let input = [batch(3, 20), batch(1, 30)].concat();
    let a = p.append_shared(&input, Acks::All, 1_000).unwrap();
    assert_eq!(input, [batch(3, 20), batch(1, 30)].concat());
    assert_eq!(
        (a.result.base_offset, a.result.last_offset),
        (Offset(2), Offset(5))
    );
    tokio::time::timeout(Duration::from_secs(10), a.committed)
        .await
        .unwrap()
        .unwrap();
    assert!(p.log.durable_offset() >= Offset(6));
    assert_eq!(p.high_watermark(), Offset(6));
    let f = p.read(
        Offset(2),
        1 << 20,
        Isolation::ReadUncommitted,
        LeaderEpoch::UNKNOWN,
        true,
    );
    let got = f.records.unwrap().to_vec().unwrap();
    let stored: Vec<_> = fjord_records::batches(&got).map(|b| b.unwrap().0).collect();
    assert_eq!(
        stored.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![2, 5]
    );
    assert!(stored
        .iter()
        .all(|h| h.partition_leader_epoch == p.leader_epoch().0));
}

#[test]
fn append_moves_the_high_watermark_and_reads_stop_there() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    assert_eq!(p.high_watermark(), Offset(0));
    let a = append(&p, 3, 10, Acks::Leader);
    assert_eq!(a.result.base_offset, Offset(0));
    assert_eq!(a.result.last_offset, Offset(2));
    assert_eq!(p.high_watermark(), Offset(3));
    assert_eq!(p.last_stable_offset(), Offset(3));
    let f = p.read(
        Offset(0),
        1 << 20,
        Isolation::ReadUncommitted,
        LeaderEpoch::UNKNOWN,
        true,
    );
    assert_eq!(f.high_watermark, Offset(3));
    assert_eq!(f.last_stable_offset, Offset(3));
    assert_eq!(f.log_start_offset, Offset(0));
    assert_eq!(read_bytes(&f), batch(3, 10).len());
    // At the high watermark: nothing yet, no error.
    let f = p.read(
        Offset(3),
        1 << 20,
        Isolation::ReadCommitted,
        LeaderEpoch(0),
        true,
    );
    assert_eq!(read_bytes(&f), 0);
    // Past the log end: out of range.
    let f = p.read(
        Offset(4),
        1 << 20,
        Isolation::ReadUncommitted,
        LeaderEpoch(0),
        true,
    );
    assert!(matches!(
        f.records,
        Err(PartitionError::OffsetOutOfRange { requested: 4, .. })
    ));
    assert_eq!(f.high_watermark, Offset(3));
}

#[tokio::test]
async fn acks_all_resolves_once_durable_and_acks_one_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let a = append(&p, 2, 10, Acks::Leader);
    assert!(
        matches!(a.committed.0, Waiting::Ready),
        "acks=1 is committed by the append"
    );
    a.committed.await.unwrap();
    let a = append(&p, 2, 10, Acks::All);
    assert!(matches!(a.committed.0, Waiting::Sync(_)) || p.log.durable_offset() >= Offset(4));
    tokio::time::timeout(Duration::from_secs(10), a.committed)
        .await
        .unwrap()
        .unwrap();
    assert!(p.log.durable_offset() >= Offset(4));
}

#[test]
fn leader_epoch_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    assert!(p.check_leader_epoch(LeaderEpoch(-1)).is_ok());
    assert!(p.check_leader_epoch(LeaderEpoch(0)).is_ok());
    let code = |e: i32| {
        p.check_leader_epoch(LeaderEpoch(e))
            .err()
            .map(|e| e.kafka_code())
    };
    assert_eq!(code(1), Some(ErrorCode::UNKNOWN_LEADER_EPOCH));
    assert_eq!(code(-2), Some(ErrorCode::FENCED_LEADER_EPOCH));
    let mut r = p.replica_state();
    r.leader_epoch = LeaderEpoch(5);
    p.set_replica_state(r);
    assert_eq!(code(4), Some(ErrorCode::FENCED_LEADER_EPOCH));
    assert_eq!(code(6), Some(ErrorCode::UNKNOWN_LEADER_EPOCH));
    assert_eq!(code(5), None);
    // Fetch and ListOffsets decide with the same check.
    let f = p.read(
        Offset(0),
        100,
        Isolation::ReadUncommitted,
        LeaderEpoch(4),
        true,
    );
    assert_eq!(
        f.records.unwrap_err().kafka_code(),
        ErrorCode::FENCED_LEADER_EPOCH
    );
    let l = p.list_offset(
        OffsetQuery::Latest,
        Isolation::ReadUncommitted,
        LeaderEpoch(6),
    );
    assert_eq!(l.unwrap_err().kafka_code(), ErrorCode::UNKNOWN_LEADER_EPOCH);
    let l = p
        .list_offset(
            OffsetQuery::Latest,
            Isolation::ReadUncommitted,
            LeaderEpoch(5),
        )
        .unwrap()
        .unwrap();
    assert_eq!(l.leader_epoch, LeaderEpoch(5));
}

#[test]
#[should_panic(expected = "moves back")]
fn leader_epoch_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let mut r = p.replica_state();
    r.leader_epoch = LeaderEpoch(3);
    p.set_replica_state(r.clone());
    r.leader_epoch = LeaderEpoch(2);
    p.set_replica_state(r);
}

#[test]
fn a_follower_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    p.set_replica_state(ReplicaState {
        leader: NodeId(2),
        leader_epoch: LeaderEpoch(1),
        replicas: vec![NodeId(2), NODE],
        isr: vec![NodeId(2), NODE],
    });
    let mut b = batch(1, 0);
    let e = p.append(&mut b, Acks::All, 0).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    assert_eq!(p.log_end_offset(), Offset(0), "nothing was written");
}

#[test]
fn with_other_isr_members_the_high_watermark_waits_and_reads_stop_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    append(&p, 2, 10, Acks::Leader);
    p.set_replica_state(ReplicaState {
        leader: NODE,
        leader_epoch: LeaderEpoch(1),
        replicas: vec![NODE, NodeId(2)],
        isr: vec![NODE, NodeId(2)],
    });
    append(&p, 3, 20, Acks::Leader);
    assert_eq!(p.log_end_offset(), Offset(5));
    assert_eq!(
        p.high_watermark(),
        Offset(2),
        "no follower has the new batch"
    );
    // Everything below the high watermark, nothing of the uncommitted batch.
    let f = p.read(
        Offset(0),
        1 << 20,
        Isolation::ReadUncommitted,
        LeaderEpoch(1),
        true,
    );
    assert_eq!(read_bytes(&f), batch(2, 10).len());
    // Between the high watermark and the log end: empty, not out of range.
    let f = p.read(
        Offset(3),
        1 << 20,
        Isolation::ReadUncommitted,
        LeaderEpoch(1),
        true,
    );
    assert_eq!(read_bytes(&f), 0);
    let latest = p
        .list_offset(
            OffsetQuery::Latest,
            Isolation::ReadUncommitted,
            LeaderEpoch::UNKNOWN,
        )
        .unwrap()
        .unwrap();
    assert_eq!(latest.offset, Offset(2));
    // A timestamp only in the uncommitted batch finds nothing.
    let ts = p
        .list_offset(
            OffsetQuery::Timestamp(20),
            Isolation::ReadUncommitted,
            LeaderEpoch::UNKNOWN,
        )
        .unwrap();
    assert_eq!(ts, None);
    // DeleteRecords may not pass the high watermark.
    let e = p.delete_records_before(Some(Offset(4))).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    // Back to a single replica: everything appended is committed.
    p.set_replica_state(ReplicaState {
        leader_epoch: LeaderEpoch(2),
        ..ReplicaState::single_node(NODE)
    });
    assert_eq!(p.high_watermark(), Offset(5));
}

#[test]
fn list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let q = |query| {
        p.list_offset(query, Isolation::ReadCommitted, LeaderEpoch::UNKNOWN)
            .unwrap()
            .map(|l| (l.offset.0, l.timestamp_ms))
    };
    assert_eq!(q(OffsetQuery::Latest), Some((0, -1)));
    assert_eq!(q(OffsetQuery::Timestamp(0)), None);
    append(&p, 3, 100, Acks::Leader); // offsets 0..3, timestamps 100..103
    append(&p, 3, 50, Acks::Leader); // offsets 3..6, timestamps 50..53
    assert_eq!(q(OffsetQuery::Latest), Some((6, -1)));
    assert_eq!(q(OffsetQuery::Earliest), Some((0, -1)));
    assert_eq!(q(OffsetQuery::EarliestLocal), Some((0, -1)));
    assert_eq!(q(OffsetQuery::LatestTiered), None);
    assert_eq!(q(OffsetQuery::EarliestPendingUpload), None);
    // Per record, not per batch.
    assert_eq!(q(OffsetQuery::Timestamp(101)), Some((1, 101)));
    assert_eq!(q(OffsetQuery::Timestamp(500)), None);
    assert_eq!(q(OffsetQuery::MaxTimestamp), Some((2, 102)));
    assert_eq!(p.delete_records_before(Some(Offset(4))).unwrap(), Offset(4));
    assert_eq!(q(OffsetQuery::Earliest), Some((4, -1)));
    // The delete is bounded by the high watermark; None means it.
    assert_eq!(p.delete_records_before(None).unwrap(), Offset(6));
    let e = p.delete_records_before(Some(Offset(7))).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    let e = p.delete_records_before(Some(Offset(-2))).unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    // Below the log start is out of range for a fetch.
    let f = p.read(
        Offset(3),
        100,
        Isolation::ReadUncommitted,
        LeaderEpoch::UNKNOWN,
        true,
    );
    assert_eq!(
        f.records.unwrap_err().kafka_code(),
        ErrorCode::OFFSET_OUT_OF_RANGE
    );
    assert_eq!(f.log_start_offset, Offset(6));
}

#[tokio::test]
async fn any_append_wakes_the_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(open(dir.path()));
    let n = Arc::new(Notify::new());
    p.register_waiter(&n);
    let woken = n.notified();
    let writer = p.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        append(&writer, 1, 0, Acks::None);
    });
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("the append wakes the waiting fetch");
    task.await.unwrap();
    // A wake-up takes the registrations it woke.
    assert!(p.waiters.lock().is_empty());
    // A duplicate (idempotent retry) appends nothing and wakes nobody.
    let mut b = BatchBuilder::new(Compression::None)
        .producer(7, 0, 0)
        .push(0, Some(b"k".as_slice()), None, &[])
        .build(0);
    let mut again = b.clone();
    p.append(&mut b, Acks::Leader, 0).unwrap();
    p.register_waiter(&n);
    let dup = p.append(&mut again, Acks::Leader, 0).unwrap();
    assert!(dup.result.duplicate);
    assert_eq!(p.waiters.lock().len(), 1);
}

#[test]
fn a_waiter_that_gives_up_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let gone = Arc::new(Notify::new());
    p.register_waiter(&gone);
    drop(gone);
    let staying = Arc::new(Notify::new());
    p.register_waiter(&staying);
    // Registering twice keeps one entry.
    p.register_waiter(&staying);
    let waiters = p.waiters.lock();
    assert_eq!(waiters.len(), 1);
    assert!(Arc::ptr_eq(&waiters[0], &staying));
}

#[test]
fn the_high_watermark_is_the_log_end_at_open_and_covers_appends_made_around_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = open(dir.path());
        append(&p, 4, 0, Acks::All)
            .committed
            .wait_blocking()
            .unwrap();
        p.log.close().unwrap();
    }
    let p = open(dir.path());
    assert_eq!(p.high_watermark(), Offset(4));
    // The group coordinator still appends to the log directly.
    let mut b = batch(2, 0);
    p.log.append(&mut b, 0).unwrap();
    assert_eq!(p.high_watermark(), Offset(6));
}

#[test]
fn acks_and_isolation_from_the_wire() {
    assert_eq!(Acks::from_wire(-1), Some(Acks::All));
    assert_eq!(Acks::from_wire(0), Some(Acks::None));
    assert_eq!(Acks::from_wire(1), Some(Acks::Leader));
    assert_eq!(Acks::from_wire(2), None);
    assert_eq!(Acks::from_wire(-2), None);
    assert_eq!(Isolation::from_wire(1), Isolation::ReadCommitted);
    assert_eq!(Isolation::from_wire(0), Isolation::ReadUncommitted);
}

/// The leader's epoch, not the client's, is stamped into every appended batch.
#[test]
fn appends_carry_the_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let epochs = |p: &Partition| -> Vec<i32> {
        let f = p.read(
            Offset(0),
            1 << 20,
            Isolation::ReadUncommitted,
            LeaderEpoch::UNKNOWN,
            true,
        );
        let bytes = f.records.unwrap().to_vec().unwrap();
        fjord_records::batches(&bytes)
            .map(|b| b.unwrap().0.partition_leader_epoch)
            .collect()
    };
    append(&p, 1, 0, Acks::Leader);
    let mut r = p.replica_state();
    r.leader_epoch = LeaderEpoch(3);
    p.set_replica_state(r);
    append(&p, 1, 0, Acks::Leader);
    assert_eq!(epochs(&p), vec![0, 3]);
    assert_eq!(
        p.log.leader_epochs(),
        vec![(LeaderEpoch(0), Offset(0)), (LeaderEpoch(3), Offset(1))]
    );
}
