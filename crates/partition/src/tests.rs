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

/// KIP-392 in the partition layer, a leader on node 1 and a follower on
/// node 2 driven by hand: a follower serves consumers only below the high
/// watermark it learnt from the leader (never its whole log), refuses
/// leader-only reads, answers OFFSET_OUT_OF_RANGE past its log end; the
/// leader offers as read replicas only in-sync followers holding the fetch
/// offset, and stops offering one that leaves the ISR.
#[test]
fn a_follower_serves_reads_below_its_high_watermark_and_only_in_sync_followers_are_offered() {
    use fjord_replication::{PartitionState, Settings};
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (n1, n2) = (NodeId(1), NodeId(2));
    let state = PartitionState {
        leader: n1,
        leader_epoch: LeaderEpoch(1),
        partition_epoch: 1,
        replicas: vec![n1, n2],
        isr: vec![n1, n2],
    };
    let facts = ReplicaState {
        leader: n1,
        leader_epoch: LeaderEpoch(1),
        replicas: vec![n1, n2],
        isr: vec![n1, n2],
    };
    let open_on = |dir: &std::path::Path, node| {
        let (log, _) = Log::open(&Storage::default(), dir, LogConfig::default(), 0).unwrap();
        Partition::new(PartitionIndex(0), log, node, facts.clone())
    };
    let leader = open_on(d1.path(), n1);
    let follower = open_on(d2.path(), n2);
    let settings = Settings {
        replica_lag_time_max_ms: 1_000,
        min_insync_replicas: 1,
    };
    let mut now = 1_000;
    leader.become_leader(state.clone(), settings, now);
    follower.become_follower(
        state.clone(),
        7,
        fjord_replication::FollowerSettings::default(),
    );
    let consumer_read = |p: &Partition, from, offset| {
        p.read_from(
            from,
            Offset(offset),
            1 << 20,
            Isolation::ReadUncommitted,
            LeaderEpoch(1),
            true,
        )
    };
    // One round of replication: the follower fetches, the leader answers.
    let replicate = |now: i64| {
        let (to, fetch) = follower.poll_replica_fetch(now).expect("a fetch to send");
        assert_eq!(to, n1);
        let got = leader.follower_fetch(fetch, 1 << 20, now).unwrap();
        let bytes = got.records.map(|r| r.to_vec().unwrap()).unwrap_or_default();
        follower
            .on_replica_fetch_answer(now, fetch, got.answer, &bytes)
            .unwrap();
        follower.log.flush().unwrap();
        follower.on_follower_flush();
    };
    append(&leader, 3, 10, Acks::Leader);
    leader.log.flush().unwrap();
    leader.replication_tick(now, false);
    // No follower has reported a log end yet: none is offered.
    assert_eq!(leader.read_replica_candidates(Offset(0), now), Some(vec![]));
    replicate(now);
    // The follower holds 3 records but the leader's answer said high
    // watermark 0: it serves nothing yet, and nothing is out of range.
    assert_eq!(follower.log_end_offset(), Offset(3));
    assert_eq!(follower.high_watermark(), Offset(0));
    let f = consumer_read(&follower, ReadFrom::AnyReplica, 0);
    assert_eq!((read_bytes(&f), f.high_watermark), (0, Offset(0)));
    let f = consumer_read(&follower, ReadFrom::AnyReplica, 2);
    assert_eq!(read_bytes(&f), 0);
    // A leader-only read (Fetch before v11) is refused on the follower.
    let f = consumer_read(&follower, ReadFrom::Leader, 0);
    let e = f.records.unwrap_err();
    assert_eq!(e.kafka_code(), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    // The next fetch tells the leader the follower holds 3: the high
    // watermark moves on the leader, then on the follower.
    now += 10;
    replicate(now);
    assert_eq!(leader.high_watermark(), Offset(3));
    replicate(now);
    assert_eq!(follower.high_watermark(), Offset(3));
    let f = consumer_read(&follower, ReadFrom::AnyReplica, 0);
    assert_eq!(read_bytes(&f), batch(3, 10).len());
    assert_eq!(f.high_watermark, Offset(3));
    // More on the leader: the follower still serves only up to 3, and an
    // offset past its log end is out of range (the consumer goes back to
    // the leader).
    append(&leader, 2, 20, Acks::Leader);
    let f = consumer_read(&follower, ReadFrom::AnyReplica, 3);
    assert_eq!(read_bytes(&f), 0);
    let f = consumer_read(&follower, ReadFrom::AnyReplica, 4);
    assert_eq!(
        f.records.unwrap_err().kafka_code(),
        ErrorCode::OFFSET_OUT_OF_RANGE
    );
    // The leader offers the follower for offsets it holds, not beyond.
    let offered = leader.read_replica_candidates(Offset(3), now).unwrap();
    assert_eq!(offered.iter().map(|r| r.node).collect::<Vec<_>>(), vec![n2]);
    assert_eq!(offered[0].log_end, Offset(3));
    assert_eq!(leader.read_replica_candidates(Offset(4), now), Some(vec![]));
    // A follower does not offer anyone: its consumers read there.
    assert_eq!(follower.read_replica_candidates(Offset(0), now), None);
    // The follower stops fetching: past replica.lag.time.max.ms the leader
    // asks to shrink the ISR, and from then on does not offer it.
    now += 5_000;
    let out = leader.replication_tick(now, false);
    assert!(
        out.iter()
            .any(|o| matches!(o, fjord_replication::LeaderOutput::AlterPartition(_))),
        "{out:?}"
    );
    assert_eq!(leader.read_replica_candidates(Offset(0), now), Some(vec![]));
    leader.on_alter_partition_answer(Ok(PartitionState {
        partition_epoch: 2,
        isr: vec![n1],
        ..state.clone()
    }));
    assert_eq!(leader.replica_state().isr, vec![n1]);
    assert_eq!(leader.read_replica_candidates(Offset(0), now), Some(vec![]));
    // A node that is no replica (removed by a reassignment) serves no reads.
    follower.set_replica_state(ReplicaState {
        leader: n1,
        leader_epoch: LeaderEpoch(2),
        replicas: vec![n1],
        isr: vec![n1],
    });
    follower.stop_replicating();
    let f = follower.read_from(
        ReadFrom::AnyReplica,
        Offset(0),
        1 << 20,
        Isolation::ReadUncommitted,
        LeaderEpoch::UNKNOWN,
        true,
    );
    assert_eq!(
        f.records.unwrap_err().kafka_code(),
        ErrorCode::NOT_LEADER_OR_FOLLOWER
    );
}

/// A transactional batch of producer 7 at epoch 0 with base sequence `seq`.
fn txn_batch(seq: i32) -> Vec<u8> {
    txn_batch_of(7, seq)
}

/// A transactional batch of producer `pid` at epoch 0 with base sequence `seq`.
fn txn_batch_of(pid: i64, seq: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None)
        .producer(pid, 0, seq)
        .transactional(true);
    b.push(10, Some(b"k".as_slice()), Some(b"v".as_slice()), &[]);
    b.build(0)
}

/// Kafka's `VerificationStateEntry` (KIP-890): while a producer's
/// verification is in progress the leader keeps the lowest first sequence of
/// the requests that started or joined it, and a batch of that producer
/// starting above it is OUT_OF_ORDER_SEQUENCE_NUMBER (the lower one, retried,
/// must go first: no gap is ever appended); a Produce v12+ (transaction
/// version 2) of a producer with no batches here must start at sequence 0
/// (`ProducerAppendInfo.checkSequence` in Kafka 4.3.1).
#[test]
fn a_verification_in_progress_holds_the_lowest_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let epoch = ProducerEpoch(0);
    let code = |r: Result<Appended, PartitionError>| r.err().map(|e| e.kafka_code());
    let oos = Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
    // Producer 7 with no state here: a verification at 3 (its answer was
    // lost), then a request at 5 joins it: 5 may not go first.
    let g = p
        .start_verification(ProducerId(7), epoch, 3, false, 1_000)
        .unwrap();
    let joined = p.start_verification(ProducerId(7), epoch, 5, false, 1_001);
    assert_eq!(joined, Some(g));
    assert_eq!(
        code(p.append_client(&txn_batch(5), Acks::Leader, 1_000, true, Some(g))),
        oos
    );
    assert_eq!(p.log_end_offset(), Offset(0), "nothing appended");
    // The lowest one goes in (any first sequence for a producer with no
    // state), then the rest in order, with no verification any more.
    p.append_client(&txn_batch(3), Acks::Leader, 1_000, true, Some(g))
        .unwrap();
    p.append_client(&txn_batch(4), Acks::Leader, 1_000, true, None)
        .unwrap();
    p.append_client(&txn_batch(5), Acks::Leader, 1_000, true, None)
        .unwrap();
    // A lower sequence joining the verification lowers the bar.
    let g8 = p
        .start_verification(ProducerId(8), epoch, 4, false, 1_000)
        .unwrap();
    assert_eq!(
        p.start_verification(ProducerId(8), epoch, 2, false, 1_000),
        Some(g8)
    );
    let verify = |seq| p.append_client(&txn_batch_of(8, seq), Acks::Leader, 1_000, true, Some(g8));
    assert_eq!(code(verify(4)), oos);
    verify(2).unwrap();
    // Produce v12+: a producer with no state must start at 0.
    let g9 = p
        .start_verification(ProducerId(9), epoch, 1, true, 1_000)
        .unwrap();
    let verify =
        |seq, g| p.append_client(&txn_batch_of(9, seq), Acks::Leader, 1_000, true, Some(g));
    assert_eq!(code(verify(1, g9)), oos);
    assert_eq!(
        p.start_verification(ProducerId(9), epoch, 0, true, 1_000),
        Some(g9)
    );
    verify(0, g9).unwrap();
    // ... but one with batches here continues its sequence (a marker at the
    // same epoch keeps them).
    p.append_marker(
        &fjord_storage::TxnMarker {
            producer_id: ProducerId(7),
            producer_epoch: epoch,
            coordinator_epoch: 0,
            aborted: true,
            transaction_version: 0,
        },
        1_000,
    )
    .unwrap();
    let g7 = p
        .start_verification(ProducerId(7), epoch, 6, true, 1_000)
        .unwrap();
    p.append_client(&txn_batch(6), Acks::Leader, 1_000, true, Some(g7))
        .unwrap();
}

/// KIP-890 part 1: a client's transactional batch of a producer whose
/// transaction is not open here is appended only with the guard of a
/// verification in progress; once appended, the transaction is open and
/// needs none; a marker ends it, and a guard from before the marker (a late
/// confirmation) no longer lets a batch in.
#[test]
fn a_transactional_append_needs_its_verification_until_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let (pid, epoch) = (ProducerId(7), ProducerEpoch(0));
    let refused = |r: Result<Appended, PartitionError>| match r {
        Err(e) => e.kafka_code(),
        Ok(a) => panic!("appended at {:?}", a.result.base_offset),
    };
    // Unverified: refused, nothing appended; with the check off it would go in.
    assert_eq!(
        refused(p.append_client(&txn_batch(0), Acks::Leader, 1_000, true, None)),
        ErrorCode::INVALID_TXN_STATE
    );
    assert_eq!(p.log_end_offset(), Offset(0));
    let g = p.start_verification(pid, epoch, 0, false, 1_000).unwrap();
    assert_eq!(
        p.start_verification(pid, epoch, 0, false, 1_001),
        Some(g),
        "joined"
    );
    p.append_client(&txn_batch(0), Acks::Leader, 1_000, true, Some(g))
        .unwrap();
    assert!(p.in_transaction(pid, epoch));
    // Open here: no verification, no guard needed.
    assert_eq!(p.start_verification(pid, epoch, 1, false, 1_002), None);
    p.append_client(&txn_batch(1), Acks::Leader, 1_000, true, None)
        .unwrap();
    // The guard was used up by the first append.
    let marker = fjord_storage::TxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        coordinator_epoch: 0,
        aborted: true,
        transaction_version: 0,
    };
    let g2 = {
        p.append_marker(&marker, 1_000).unwrap();
        // A verification started for the next transaction, then the
        // coordinator aborted it (a marker) before the confirmed append.
        let g2 = p.start_verification(pid, epoch, 2, false, 1_003).unwrap();
        assert_ne!(g2, g);
        p.append_marker(&marker, 1_000).unwrap();
        g2
    };
    let end = p.log_end_offset();
    assert_eq!(
        refused(p.append_client(&txn_batch(2), Acks::Leader, 1_000, true, Some(g2))),
        ErrorCode::INVALID_TXN_STATE
    );
    assert_eq!(p.log_end_offset(), end, "nothing appended");
    assert!(!p.in_transaction(pid, epoch), "no hanging transaction");
    // Non-transactional batches never need one; with the check off, none do.
    p.append_client(&batch(1, 20), Acks::Leader, 1_000, true, None)
        .unwrap();
    p.append_client(&txn_batch(2), Acks::Leader, 1_000, false, None)
        .unwrap();
}
