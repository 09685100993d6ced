//! Unit tests and a seeded simulation of the transaction coordinator.

use fjord_model::{ErrorCode, PartitionIndex, ProducerEpoch, ProducerId, TopicPartition};

use crate::records;
use crate::{
    InitRequest, ListFilter, Output, Reply, RequestToken, TxnConfig, TxnCoordinator, TxnProducer,
    TxnResult, TxnState, WriteId,
};

const TIMEOUT_MS: i32 = 60_000;

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition: PartitionIndex(p),
    }
}

/// A test shell: a coordinator, the records it wrote (the log), a producer id
/// source, and helpers that carry out writes.
struct Harness {
    c: TxnCoordinator,
    log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    next_pid: i64,
    next_token: u64,
    now_ms: i64,
    /// The transaction version of the clients' AddPartitionsToTxn and EndTxn.
    tv: i16,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            c: TxnCoordinator::new(TxnConfig::default()),
            log: Vec::new(),
            next_pid: 1000,
            next_token: 0,
            now_ms: 1_000,
            tv: 0,
        }
    }

    /// A coordinator with `transaction.version` 2 finalized and clients that
    /// use it.
    fn v2() -> Harness {
        let mut h = Harness::new();
        h.c.set_transaction_version(2);
        h.tv = 2;
        h
    }

    fn token(&mut self) -> RequestToken {
        self.next_token += 1;
        RequestToken(self.next_token)
    }

    /// Carry out every write successfully (and markers too, when `markers`),
    /// until nothing is left; returns the replies and the markers asked for.
    fn settle(&mut self, mut out: Vec<Output>, markers: bool) -> (Vec<Reply>, Vec<Output>) {
        let mut replies = Vec::new();
        let mut marker_outputs = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out {
                match o {
                    Output::Respond(_, r) => replies.push(r),
                    Output::Persist {
                        write, key, value, ..
                    } => {
                        self.log.push((key, value));
                        self.c.append_done(write, Ok(()), self.now_ms, &mut next);
                    }
                    Output::WriteMarkers {
                        ref transactional_id,
                        producer_id,
                        producer_epoch,
                        ..
                    } => {
                        if markers {
                            self.c.markers_done(
                                transactional_id,
                                producer_id,
                                producer_epoch,
                                self.now_ms,
                                &mut next,
                            );
                        }
                        marker_outputs.push(o.clone());
                    }
                }
                self.c.check_invariants();
            }
            out = next;
        }
        (replies, marker_outputs)
    }

    fn init(&mut self, id: &str, expected: Option<(i64, i16)>) -> Reply {
        let token = self.token();
        let mut out = Vec::new();
        let mut pid = self.next_pid;
        self.c.init_producer_id(
            token,
            &InitRequest {
                transactional_id: id.into(),
                transaction_timeout_ms: TIMEOUT_MS,
                expected: expected.map(|(p, e)| (ProducerId(p), ProducerEpoch(e))),
            },
            self.now_ms,
            &mut || {
                pid += 1;
                Ok(ProducerId(pid))
            },
            &mut out,
        );
        self.next_pid = pid;
        let (replies, _) = self.settle(out, true);
        assert_eq!(replies.len(), 1, "one reply per request: {replies:?}");
        replies[0].clone()
    }

    fn init_ok(&mut self, id: &str) -> (i64, i16) {
        match self.init(id, None) {
            Reply::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            } if error.is_none() => (producer_id.0, producer_epoch.0),
            r => panic!("InitProducerId failed: {r:?}"),
        }
    }

    fn add(&mut self, id: &str, (pid, epoch): (i64, i16), parts: &[TopicPartition]) -> ErrorCode {
        let token = self.token();
        let mut out = Vec::new();
        let mut p = prod(id, pid, epoch);
        p.transaction_version = self.tv;
        self.c
            .add_partitions(token, &p, parts, self.now_ms, &mut out);
        done(self.settle(out, true).0)
    }

    /// EndTxn: the reply and the markers asked for.
    fn end_reply(
        &mut self,
        id: &str,
        (pid, epoch): (i64, i16),
        result: TxnResult,
        markers: bool,
    ) -> (Reply, Vec<Output>) {
        let token = self.token();
        let mut out = Vec::new();
        let mut p = prod(id, pid, epoch);
        p.transaction_version = self.tv;
        let mut next = self.next_pid;
        self.c.end_txn(
            token,
            &p,
            result,
            self.now_ms,
            &mut || {
                next += 1;
                Ok(ProducerId(next))
            },
            &mut out,
        );
        self.next_pid = next;
        let (replies, m) = self.settle(out, markers);
        assert_eq!(replies.len(), 1, "one reply per request: {replies:?}");
        (replies[0].clone(), m)
    }

    fn end(
        &mut self,
        id: &str,
        (pid, epoch): (i64, i16),
        result: TxnResult,
        markers: bool,
    ) -> (ErrorCode, Vec<Output>) {
        let (reply, m) = self.end_reply(id, (pid, epoch), result, markers);
        (done(vec![reply]), m)
    }

    /// The shell reports the markers of `id`'s prepared transaction written.
    fn markers_written(&mut self, id: &str, (pid, epoch): (i64, i16)) {
        let mut out = Vec::new();
        self.c.markers_done(
            id,
            ProducerId(pid),
            ProducerEpoch(epoch),
            self.now_ms,
            &mut out,
        );
        self.settle(out, true);
    }

    fn state(&self, id: &str) -> TxnState {
        let d = &self.c.describe(&[id.to_string()])[0];
        assert!(d.error.is_none(), "{id} not found");
        d.state
    }
}

fn prod(id: &str, pid: i64, epoch: i16) -> TxnProducer<'_> {
    TxnProducer {
        transactional_id: id,
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(epoch),
        transaction_version: 0,
    }
}

fn done(replies: Vec<Reply>) -> ErrorCode {
    assert_eq!(replies.len(), 1, "one reply per request: {replies:?}");
    match &replies[0] {
        Reply::Done(e) | Reply::Ended { error: e, .. } => *e,
        r => panic!("unexpected reply {r:?}"),
    }
}

#[test]
fn new_transactional_id_gets_a_producer_id_and_epoch_zero() {
    let mut h = Harness::new();
    assert_eq!(h.init_ok("tx"), (1001, 0));
    let (key, value) = h.log.last().unwrap().clone();
    assert_eq!(records::decode_key(&key).unwrap(), "tx");
    let v = records::decode_value(&value.unwrap()).unwrap();
    assert_eq!(
        (v.producer_id.0, v.producer_epoch.0, v.state),
        (1001, 0, TxnState::Empty)
    );
    assert_eq!(v.timeout_ms, TIMEOUT_MS);
}

#[test]
fn a_second_producer_fences_the_first() {
    let mut h = Harness::new();
    let first = h.init_ok("tx");
    let second = h.init_ok("tx");
    assert_eq!(second, (first.0, first.1 + 1), "same id, epoch bumped");
    assert_eq!(
        h.add("tx", first, &[tp("t", 0)]),
        ErrorCode::PRODUCER_FENCED
    );
    assert_eq!(h.add("tx", second, &[tp("t", 0)]), ErrorCode::NONE);
    assert_eq!(
        h.add("tx", (5, 0), &[tp("t", 0)]),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        h.add("nope", second, &[tp("t", 0)]),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
}

#[test]
fn commit_writes_prepare_markers_then_complete() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    assert_eq!(h.add("tx", p, &[tp("a", 0), tp("b", 1)]), ErrorCode::NONE);
    assert_eq!(
        h.add("tx", p, &[tp("a", 0)]),
        ErrorCode::NONE,
        "already in: nothing written"
    );
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    let (code, markers) = h.end("tx", p, TxnResult::Commit, false);
    assert_eq!(code, ErrorCode::NONE);
    assert_eq!(
        h.state("tx"),
        TxnState::PrepareCommit,
        "complete waits for the markers"
    );
    assert_eq!(
        markers,
        vec![Output::WriteMarkers {
            transactional_id: "tx".into(),
            producer_id: ProducerId(p.0),
            producer_epoch: ProducerEpoch(p.1),
            result: TxnResult::Commit,
            partitions: vec![tp("a", 0), tp("b", 1)],
            transaction_version: 0,
        }]
    );
    // A retry while the markers are out: retriable.
    assert_eq!(
        h.end("tx", p, TxnResult::Commit, false).0,
        ErrorCode::CONCURRENT_TRANSACTIONS
    );
    assert_eq!(
        h.add("tx", p, &[tp("a", 0)]),
        ErrorCode::CONCURRENT_TRANSACTIONS
    );
    h.markers_written("tx", p);
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
    let d = &h.c.describe(&["tx".to_string()])[0];
    assert!(d.partitions.is_empty());
    // Retried EndTxn after completion: success for the same result only.
    assert_eq!(h.end("tx", p, TxnResult::Commit, true).0, ErrorCode::NONE);
    assert_eq!(
        h.end("tx", p, TxnResult::Abort, true).0,
        ErrorCode::INVALID_TXN_STATE
    );
    // The next transaction reuses the producer id and epoch (TV1).
    assert_eq!(h.add("tx", p, &[tp("c", 0)]), ErrorCode::NONE);
    assert_eq!(h.end("tx", p, TxnResult::Abort, true).0, ErrorCode::NONE);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
}

#[test]
fn end_without_a_transaction_is_invalid_state() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    assert_eq!(
        h.end("tx", p, TxnResult::Commit, true).0,
        ErrorCode::INVALID_TXN_STATE
    );
    assert_eq!(
        h.end("tx", (p.0, p.1 + 1), TxnResult::Commit, true).0,
        ErrorCode::PRODUCER_FENCED
    );
}

#[test]
fn init_during_a_transaction_aborts_it_with_a_bumped_epoch() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
    let token = h.token();
    let mut out = Vec::new();
    h.c.init_producer_id(
        token,
        &InitRequest {
            transactional_id: "tx".into(),
            transaction_timeout_ms: TIMEOUT_MS,
            expected: None,
        },
        h.now_ms,
        &mut || panic!("no new producer id needed"),
        &mut out,
    );
    let (replies, markers) = h.settle(out, true);
    assert_eq!(
        replies,
        vec![Reply::InitProducerId {
            error: ErrorCode::CONCURRENT_TRANSACTIONS,
            producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(-1)
        }]
    );
    match &markers[..] {
        [Output::WriteMarkers {
            producer_epoch,
            result,
            partitions,
            ..
        }] => {
            assert_eq!(
                *producer_epoch,
                ProducerEpoch(p.1 + 1),
                "markers fence the old epoch"
            );
            assert_eq!(*result, TxnResult::Abort);
            assert_eq!(partitions, &vec![tp("a", 0)]);
        }
        m => panic!("expected abort markers, got {m:?}"),
    }
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    // The old producer cannot commit; the retry gets a further epoch.
    assert_eq!(
        h.end("tx", p, TxnResult::Commit, true).0,
        ErrorCode::PRODUCER_FENCED
    );
    assert_eq!(h.init_ok("tx"), (p.0, p.1 + 2));
}

#[test]
fn timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
    let mut out = Vec::new();
    h.c.tick(h.now_ms, &mut out);
    assert!(out.is_empty(), "nothing times out yet");
    let next = h.c.next_deadline_ms().unwrap();
    assert!(next > h.now_ms);
    h.now_ms += TIMEOUT_MS as i64 + 20_000;
    h.c.tick(h.now_ms, &mut out);
    let (_, markers) = h.settle(out, true);
    assert_eq!(markers.len(), 1);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    assert_eq!(
        h.end("tx", p, TxnResult::Commit, true).0,
        ErrorCode::PRODUCER_FENCED
    );
    let d = &h.c.describe(&["tx".to_string()])[0];
    assert_eq!(d.producer_epoch, ProducerEpoch(p.1 + 1));
}

#[test]
fn a_pending_write_makes_other_requests_wait() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    let mut out = Vec::new();
    h.c.add_partitions(
        RequestToken(900),
        &prod("tx", p.0, p.1),
        &[tp("a", 0)],
        h.now_ms,
        &mut out,
    );
    let write = match &out[..] {
        [Output::Persist { write, .. }] => *write,
        o => panic!("expected one write, got {o:?}"),
    };
    assert_eq!(
        h.add("tx", p, &[tp("b", 0)]),
        ErrorCode::CONCURRENT_TRANSACTIONS
    );
    assert_eq!(
        h.end("tx", p, TxnResult::Commit, true).0,
        ErrorCode::CONCURRENT_TRANSACTIONS
    );
    assert!(matches!(
        h.init("tx", None),
        Reply::InitProducerId {
            error: ErrorCode::CONCURRENT_TRANSACTIONS,
            ..
        }
    ));
    let mut out = Vec::new();
    h.c.append_done(write, Ok(()), h.now_ms, &mut out);
    assert_eq!(
        out,
        vec![Output::Respond(
            RequestToken(900),
            Reply::Done(ErrorCode::NONE)
        )]
    );
    assert_eq!(h.state("tx"), TxnState::Ongoing);
}

#[test]
fn a_failed_write_changes_nothing_and_answers_its_error() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    let mut out = Vec::new();
    h.c.add_partitions(
        RequestToken(7),
        &prod("tx", p.0, p.1),
        &[tp("a", 0)],
        h.now_ms,
        &mut out,
    );
    let Output::Persist { write, .. } = out[0].clone() else {
        panic!()
    };
    let mut out = Vec::new();
    h.c.append_done(
        write,
        Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        h.now_ms,
        &mut out,
    );
    assert_eq!(
        out,
        vec![Output::Respond(
            RequestToken(7),
            Reply::Done(ErrorCode::COORDINATOR_NOT_AVAILABLE)
        )]
    );
    assert_eq!(h.state("tx"), TxnState::Empty);
    h.c.check_invariants();
}

/// InitProducerId during a transaction: the fence's write, taken out of
/// `out` (the harness would carry it out): its write id and value.
fn start_fence(h: &mut Harness) -> (WriteId, records::TxnLogValue) {
    let mut out = Vec::new();
    h.c.init_producer_id(
        RequestToken(1),
        &InitRequest {
            transactional_id: "tx".into(),
            transaction_timeout_ms: TIMEOUT_MS,
            expected: None,
        },
        h.now_ms,
        &mut || panic!("no new id"),
        &mut out,
    );
    match out.remove(0) {
        Output::Persist { write, value, .. } => {
            (write, records::decode_value(&value.unwrap()).unwrap())
        }
        o => panic!("{o:?}"),
    }
}

fn fail_write(h: &mut Harness, write: WriteId) {
    let mut out = Vec::new();
    h.c.append_done(
        write,
        Err(ErrorCode::NOT_ENOUGH_REPLICAS),
        h.now_ms,
        &mut out,
    );
    h.c.check_invariants();
}

/// The markers of `id`'s transaction as the timeout abort sends them: epoch
/// and transaction version.
fn abort_on_timeout(h: &mut Harness) -> Vec<(i16, i16)> {
    h.now_ms += TIMEOUT_MS as i64 + 1;
    let mut out = Vec::new();
    h.c.tick(h.now_ms, &mut out);
    let (_, m) = h.settle(out, true);
    m.iter()
        .map(|o| match o {
            Output::WriteMarkers {
                producer_epoch,
                transaction_version,
                result,
                ..
            } => {
                assert_eq!(*result, TxnResult::Abort);
                (producer_epoch.0, *transaction_version)
            }
            o => panic!("not markers: {o:?}"),
        })
        .collect()
}

/// Kafka's transaction version 0/1 fence (`endTransactionWithTV1`): the
/// bumped epoch is set in memory before the write, so a failed write still
/// fences the producer, and the next fence (`hasFailedEpochFence`) does not
/// bump it again; the abort markers carry it.
#[test]
fn a_failed_fence_keeps_its_epoch_and_does_not_bump_it_twice() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
    let (write, v) = start_fence(&mut h);
    assert_eq!(
        (v.state, v.producer_epoch.0, v.client_transaction_version),
        (TxnState::PrepareAbort, p.1 + 1, 0)
    );
    fail_write(&mut h, write);
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    let d = &h.c.describe(&["tx".to_string()])[0];
    assert_eq!(d.producer_epoch.0, p.1 + 1, "bumped in memory");
    assert_eq!(
        h.add("tx", p, &[tp("b", 0)]),
        ErrorCode::PRODUCER_FENCED,
        "the old producer is fenced all the same"
    );
    let (write, v) = start_fence(&mut h);
    assert_eq!(
        v.producer_epoch.0,
        p.1 + 1,
        "second fence after a failed one keeps the epoch"
    );
    fail_write(&mut h, write);
    assert_eq!(abort_on_timeout(&mut h), vec![(p.1 + 1, 0)]);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    assert_eq!(h.init_ok("tx"), (p.0, p.1 + 2));
}

/// Kafka 4.3.1's transaction version 2 fence (`endTransaction` with the
/// finalized version): the abort is prepared as a version 2 client's, one
/// epoch above the one in memory, which a failed write leaves as it was; so
/// the fence after a failed one carries a bumped epoch too, which the
/// partition leaders accept (an equal one they refuse while the transaction
/// is open: it would hang).
#[test]
fn tv2_a_failed_fence_is_retried_with_a_bumped_epoch() {
    let mut h = Harness::v2();
    let (pid, e0) = h.init_ok("tx");
    assert_eq!(h.add("tx", (pid, e0), &[tp("a", 0)]), ErrorCode::NONE);
    let (write, v) = start_fence(&mut h);
    assert_eq!(
        (v.state, v.producer_epoch.0, v.client_transaction_version),
        (TxnState::PrepareAbort, e0 + 1, 2)
    );
    fail_write(&mut h, write);
    let d = &h.c.describe(&["tx".to_string()])[0];
    assert_eq!(d.producer_epoch.0, e0, "not bumped in memory");
    let (write, v) = start_fence(&mut h);
    assert_eq!(v.producer_epoch.0, e0 + 1);
    fail_write(&mut h, write);
    let markers = abort_on_timeout(&mut h);
    assert_eq!(markers, vec![(e0 + 1, 2)]);
    // The leader of a-0, where the producer wrote at e0, takes them.
    let mut leader = fjord_storage::producer_state::ProducerStateMap::default();
    let data = fjord_storage::producer_state::IncomingBatch {
        producer_id: ProducerId(pid),
        epoch: ProducerEpoch(e0),
        first_sequence: 0,
        last_sequence: 0,
        base_offset: fjord_model::Offset(0),
        last_offset: fjord_model::Offset(0),
        timestamp_ms: h.now_ms,
        transactional: true,
    };
    let Ok(fjord_storage::producer_state::Verdict::Append(u)) = leader.check(&[data], 1) else {
        panic!("data refused")
    };
    leader.commit(u, h.now_ms);
    let marker = fjord_storage::producer_state::IncomingMarker {
        producer_id: ProducerId(pid),
        epoch: ProducerEpoch(markers[0].0),
        coordinator_epoch: 0,
        offset: fjord_model::Offset(1),
        timestamp_ms: h.now_ms,
        aborted: true,
        transaction_version: markers[0].1,
    };
    let (_, done) = leader
        .check_marker(&marker)
        .expect("the leader takes the markers");
    assert!(done.is_some_and(|t| t.aborted));
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
}

#[test]
fn replay_restores_state_and_resends_markers_of_prepared_transactions() {
    let mut h = Harness::new();
    let a = h.init_ok("a");
    let b = h.init_ok("b");
    assert_eq!(h.add("a", a, &[tp("t", 0)]), ErrorCode::NONE);
    assert_eq!(h.add("b", b, &[tp("t", 1)]), ErrorCode::NONE);
    assert_eq!(h.end("a", a, TxnResult::Commit, true).0, ErrorCode::NONE);
    // b's commit is prepared, but the markers are never reported: a crash.
    assert_eq!(h.end("b", b, TxnResult::Commit, false).0, ErrorCode::NONE);
    let mut fresh = TxnCoordinator::new(TxnConfig::default());
    for (k, v) in &h.log {
        fresh.replay(k, v.as_deref()).unwrap();
    }
    let mut out = Vec::new();
    fresh.finish_replay(h.now_ms, &mut out);
    assert_eq!(
        out,
        vec![Output::WriteMarkers {
            transactional_id: "b".into(),
            producer_id: ProducerId(b.0),
            producer_epoch: ProducerEpoch(b.1),
            result: TxnResult::Commit,
            partitions: vec![tp("t", 1)],
            transaction_version: 0,
        }]
    );
    let ids = vec!["a".to_string(), "b".to_string()];
    let described = fresh.describe(&ids);
    assert_eq!(described[0].state, TxnState::CompleteCommit);
    assert_eq!(described[1].state, TxnState::PrepareCommit);
    assert_eq!(described[0].producer_epoch, ProducerEpoch(a.1));
    fresh.check_invariants();
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id() {
    let mut h = Harness::new();
    let old = records::TxnLogValue {
        producer_id: ProducerId(77),
        previous_producer_id: ProducerId(-1),
        next_producer_id: ProducerId(-1),
        producer_epoch: ProducerEpoch(i16::MAX - 1),
        timeout_ms: TIMEOUT_MS,
        state: TxnState::CompleteCommit,
        partitions: vec![],
        last_update_ms: h.now_ms,
        start_ms: 0,
        client_transaction_version: 0,
    };
    h.c.replay(
        &records::encode_key("tx"),
        Some(&records::encode_value(&old)),
    )
    .unwrap();
    let (pid, epoch) = h.init_ok("tx");
    assert_eq!(epoch, 0);
    assert_ne!(pid, 77);
}

#[test]
fn kip_360_epoch_bump_by_the_producer_itself() {
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    let bumped = match h.init("tx", Some(p)) {
        Reply::InitProducerId {
            error,
            producer_id,
            producer_epoch,
        } if error.is_none() => (producer_id.0, producer_epoch.0),
        r => panic!("{r:?}"),
    };
    assert_eq!(bumped, (p.0, p.1 + 1));
    // The same request retried (its answer was lost): the same epoch again.
    match h.init("tx", Some(p)) {
        Reply::InitProducerId {
            error,
            producer_epoch,
            ..
        } => {
            assert!(error.is_none());
            assert_eq!(producer_epoch.0, bumped.1);
        }
        r => panic!("{r:?}"),
    }
    // Another producer id: fenced. A stale epoch: fenced.
    assert!(matches!(
        h.init("tx", Some((p.0 + 50, 0))),
        Reply::InitProducerId {
            error: ErrorCode::PRODUCER_FENCED,
            ..
        }
    ));
    let _ = h.init_ok("tx");
    assert!(matches!(
        h.init("tx", Some(p)),
        Reply::InitProducerId {
            error: ErrorCode::PRODUCER_FENCED,
            ..
        }
    ));
}

#[test]
fn bad_timeouts_and_ids_are_refused() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    for (id, timeout, want) in [
        ("tx", 0, ErrorCode::INVALID_TRANSACTION_TIMEOUT),
        (
            "tx",
            TxnConfig::default().timeout_ms_max + 1,
            ErrorCode::INVALID_TRANSACTION_TIMEOUT,
        ),
        ("", 1000, ErrorCode::INVALID_REQUEST),
    ] {
        out.clear();
        h.c.init_producer_id(
            RequestToken(1),
            &InitRequest {
                transactional_id: id.into(),
                transaction_timeout_ms: timeout,
                expected: None,
            },
            0,
            &mut || panic!("no id for a refused request"),
            &mut out,
        );
        assert!(
            matches!(&out[..], [Output::Respond(_, Reply::InitProducerId { error, .. })] if *error == want)
        );
    }
    assert_eq!(h.c.txn_count(), 0);
}

#[test]
fn idle_transactional_ids_expire() {
    let mut h = Harness::new();
    let _ = h.init_ok("tx");
    h.now_ms += TxnConfig::default().transactional_id_expiration_ms + 1;
    let mut out = Vec::new();
    h.c.tick(h.now_ms, &mut out);
    h.settle(out, true);
    assert_eq!(
        h.c.describe(&["tx".to_string()])[0].error,
        ErrorCode::TRANSACTIONAL_ID_NOT_FOUND
    );
    assert_eq!(h.log.last().unwrap().1, None, "a tombstone was written");
}

#[test]
fn list_filters_by_state_producer_and_duration() {
    let mut h = Harness::new();
    let a = h.init_ok("a");
    let _b = h.init_ok("b");
    assert_eq!(h.add("a", a, &[tp("t", 0)]), ErrorCode::NONE);
    h.now_ms += 5_000;
    let all = h.c.list(
        &ListFilter {
            duration_ms_min: -1,
            ..Default::default()
        },
        h.now_ms,
    );
    assert_eq!(all.len(), 2);
    let ongoing = h.c.list(
        &ListFilter {
            states: vec![TxnState::Ongoing],
            duration_ms_min: -1,
            ..Default::default()
        },
        h.now_ms,
    );
    assert_eq!(
        ongoing
            .iter()
            .map(|t| t.transactional_id.as_str())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    let by_pid = h.c.list(
        &ListFilter {
            producer_ids: vec![ProducerId(a.0)],
            duration_ms_min: -1,
            ..Default::default()
        },
        h.now_ms,
    );
    assert_eq!(by_pid.len(), 1);
    // The duration counts from the transaction's start timestamp, as in Kafka.
    let ongoing_for = |h: &Harness, ms| {
        h.c.list(
            &ListFilter {
                states: vec![TxnState::Ongoing],
                duration_ms_min: ms,
                ..Default::default()
            },
            h.now_ms,
        )
    };
    assert_eq!(ongoing_for(&h, 4_000).len(), 1);
    assert!(ongoing_for(&h, 6_000).is_empty());
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Four producers share two transactional ids; writes fail, markers are
/// delayed, time jumps, the coordinator restarts from its log. After every
/// step the invariants hold, every request is answered once, and the markers
/// that follow a commit answered NONE are commit markers. The partitions'
/// leaders are modelled by their producer state (`fjord_storage`'s, as a
/// Fjord leader checks a marker): a producer writes a transactional batch to
/// each partition it added, and every marker the coordinator sends must be
/// taken by its partitions (one refused would leave the transaction open
/// there: a hanging transaction).
#[test]
fn seeded_simulation_keeps_invariants() {
    let seeds: u64 = std::env::var("FJORD_TXN_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut commits = 0;
    for seed in 0..seeds {
        commits += simulate(seed);
    }
    assert!(
        commits as u64 > seeds / 4,
        "the simulation commits transactions ({commits})"
    );
}

/// Markers asked for and not yet written: transactional id, producer id and
/// epoch, result, partitions, transaction version.
type Markers = (
    String,
    ProducerId,
    ProducerEpoch,
    TxnResult,
    Vec<TopicPartition>,
    i16,
);

/// Returns how many commits were acknowledged.
fn simulate(seed: u64) -> usize {
    use fjord_storage::producer_state::{IncomingBatch, IncomingMarker, ProducerStateMap, Verdict};
    use std::collections::HashMap;
    let mut rng = seed;
    // Odd seeds: transaction version 2 (epoch bumped by every EndTxn).
    let tv: i16 = if seed % 2 == 1 { 2 } else { 0 };
    let new_coordinator = || {
        let mut c = TxnCoordinator::new(TxnConfig::default());
        c.set_transaction_version(tv);
        c
    };
    let mut c = new_coordinator();
    let mut log: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut writes: Vec<(WriteId, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut markers: Vec<Markers> = Vec::new();
    let mut producers: Vec<Option<(ProducerId, ProducerEpoch)>> = vec![None; 4];
    // Open requests: token → (producer, is a commit, the partition an
    // AddPartitionsToTxn adds with the producer's id and epoch).
    type Added = Option<(TopicPartition, (ProducerId, ProducerEpoch))>;
    let mut open: HashMap<u64, (usize, bool, Added)> = HashMap::new();
    let mut leaders: HashMap<TopicPartition, (ProducerStateMap, i64)> = HashMap::new();
    let mut expect_commit: HashMap<String, bool> = HashMap::new();
    let mut acked_commits = 0;
    let mut next_token = 0u64;
    let mut pid_source = 0i64;
    let mut now_ms = 0i64;
    let ids = ["x", "y"];
    for _step in 0..300 {
        let mut out = Vec::new();
        let r = splitmix64(&mut rng);
        let who = (r % 4) as usize;
        let id = ids[who % 2];
        next_token += 1;
        let token = RequestToken(next_token);
        match (r >> 8) % 9 {
            0 => {
                open.insert(next_token, (who, false, None));
                let req = InitRequest {
                    transactional_id: id.into(),
                    transaction_timeout_ms: 30_000,
                    expected: None,
                };
                c.init_producer_id(
                    token,
                    &req,
                    now_ms,
                    &mut || {
                        pid_source += 1;
                        Ok(ProducerId(pid_source))
                    },
                    &mut out,
                );
            }
            1 | 2 => {
                if let Some((p, e)) = producers[who] {
                    let part = tp("t", ((r >> 16) % 3) as i32);
                    open.insert(next_token, (who, false, Some((part.clone(), (p, e)))));
                    let mut pr = prod(id, p.0, e.0);
                    pr.transaction_version = tv;
                    c.add_partitions(token, &pr, &[part], now_ms, &mut out);
                }
            }
            3 => {
                if let Some((p, e)) = producers[who] {
                    let result = if (r >> 20).is_multiple_of(2) {
                        TxnResult::Commit
                    } else {
                        TxnResult::Abort
                    };
                    open.insert(next_token, (who, result == TxnResult::Commit, None));
                    let mut pr = prod(id, p.0, e.0);
                    pr.transaction_version = tv;
                    c.end_txn(
                        token,
                        &pr,
                        result,
                        now_ms,
                        &mut || {
                            pid_source += 1;
                            Ok(ProducerId(pid_source))
                        },
                        &mut out,
                    );
                }
            }
            4 | 5 => {
                if !writes.is_empty() {
                    let i = (r >> 16) as usize % writes.len();
                    let (w, k, v) = writes.remove(i);
                    if (r >> 24).is_multiple_of(5) {
                        c.append_done(w, Err(ErrorCode::NOT_ENOUGH_REPLICAS), now_ms, &mut out);
                    } else {
                        log.push((k, v));
                        c.append_done(w, Ok(()), now_ms, &mut out);
                    }
                }
            }
            6 => {
                if !markers.is_empty() {
                    let i = (r >> 16) as usize % markers.len();
                    let (id, p, e, result, partitions, version) = markers.remove(i);
                    for part in partitions {
                        let (leader, end) = leaders.entry(part.clone()).or_default();
                        let marker = IncomingMarker {
                            producer_id: p,
                            epoch: e,
                            coordinator_epoch: 0,
                            offset: fjord_model::Offset(*end),
                            timestamp_ms: now_ms,
                            aborted: result == TxnResult::Abort,
                            transaction_version: version,
                        };
                        match leader.check_marker(&marker) {
                            Ok((update, _)) => leader.commit(update, now_ms),
                            Err(refused) => panic!(
                                "seed {seed}: the leader of {part:?} refused {id}'s {result:?} marker \
                                 at epoch {} (transaction version {version}): {refused}; its \
                                 transaction would never end",
                                e.0
                            ),
                        }
                        *end += 1;
                    }
                    c.markers_done(&id, p, e, now_ms, &mut out);
                }
            }
            7 => {
                now_ms += ((r >> 16) % 20_000) as i64;
                c.tick(now_ms, &mut out);
            }
            _ => {
                if (r >> 16).is_multiple_of(4) {
                    // Restart: writes and markers in flight are lost, their
                    // requests never answered (the clients time out).
                    c = new_coordinator();
                    for (k, v) in &log {
                        c.replay(k, v.as_deref()).unwrap();
                    }
                    writes.clear();
                    markers.clear();
                    open.clear();
                    c.finish_replay(now_ms, &mut out);
                }
            }
        }
        for o in out {
            match o {
                Output::Respond(t, reply) => {
                    let Some((who, is_commit, added)) = open.remove(&t.0) else {
                        panic!("seed {seed}: a second answer to {t:?}")
                    };
                    match reply {
                        Reply::Done(ErrorCode::NONE) => {
                            // The partition is in the transaction: the
                            // producer writes a batch to it (its leader
                            // refuses what a Fjord leader would).
                            if let Some((part, (p, e))) = added {
                                let (leader, end) = leaders.entry(part).or_default();
                                let sequence = leader
                                    .get(p)
                                    .filter(|entry| entry.epoch == e)
                                    .and_then(|entry| entry.last_sequence())
                                    .map_or(0, |last| last + 1);
                                let batch = IncomingBatch {
                                    producer_id: p,
                                    epoch: e,
                                    first_sequence: sequence,
                                    last_sequence: sequence,
                                    base_offset: fjord_model::Offset(*end),
                                    last_offset: fjord_model::Offset(*end),
                                    timestamp_ms: now_ms,
                                    transactional: true,
                                };
                                if let Ok(Verdict::Append(update)) = leader.check(&[batch], 1) {
                                    leader.commit(update, now_ms);
                                    *end += 1;
                                }
                            }
                        }
                        Reply::InitProducerId {
                            error,
                            producer_id,
                            producer_epoch,
                        } if error.is_none() => {
                            producers[who] = Some((producer_id, producer_epoch))
                        }
                        Reply::Ended {
                            error: ErrorCode::NONE,
                            producer_id,
                            producer_epoch,
                        } => {
                            if tv == 2 {
                                // The producer continues with the epoch it was given.
                                producers[who] = Some((producer_id, producer_epoch));
                            }
                            if is_commit {
                                expect_commit.insert(ids[who % 2].to_string(), true);
                                acked_commits += 1;
                            }
                        }
                        _ => {}
                    }
                }
                Output::Persist {
                    write, key, value, ..
                } => writes.push((write, key, value)),
                Output::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    result,
                    partitions,
                    transaction_version,
                } => {
                    assert!(!partitions.is_empty());
                    if expect_commit.contains_key(&transactional_id) {
                        assert_eq!(
                            result,
                            TxnResult::Commit,
                            "seed {seed}: abort markers after an acknowledged commit"
                        );
                    }
                    markers.push((
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        result,
                        partitions,
                        transaction_version,
                    ));
                }
            }
        }
        // An acknowledged commit stays prepared (across restarts too) until
        // its markers are written; then the expectation is met.
        expect_commit.retain(|id, _| {
            let state = c.describe(std::slice::from_ref(id))[0].state;
            assert_ne!(
                state,
                TxnState::PrepareAbort,
                "seed {seed}: {id} acknowledged commit turned to abort"
            );
            state == TxnState::PrepareCommit
        });
        c.check_invariants();
    }
    acked_commits
}

// ------------------------------------------------ transaction version 2 (KIP-890)

fn ended(r: &Reply) -> (ErrorCode, i64, i16) {
    match r {
        Reply::Ended {
            error,
            producer_id,
            producer_epoch,
        } => (*error, producer_id.0, producer_epoch.0),
        r => panic!("not an EndTxn reply: {r:?}"),
    }
}

fn markers_epochs(markers: &[Output]) -> Vec<(i64, i16, TxnResult)> {
    markers
        .iter()
        .map(|m| match m {
            Output::WriteMarkers {
                producer_id,
                producer_epoch,
                result,
                ..
            } => (producer_id.0, producer_epoch.0, *result),
            o => panic!("not markers: {o:?}"),
        })
        .collect()
}

#[test]
fn tv2_every_end_bumps_the_epoch_and_the_markers_carry_it() {
    let mut h = Harness::v2();
    let (pid, e0) = h.init_ok("tx");
    assert_eq!(h.add("tx", (pid, e0), &[tp("a", 0)]), ErrorCode::NONE);
    let (r, m) = h.end_reply("tx", (pid, e0), TxnResult::Commit, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 1));
    assert_eq!(markers_epochs(&m), vec![(pid, e0 + 1, TxnResult::Commit)]);
    // The markers say they end a version 2 transaction (WriteTxnMarkers v2,
    // KIP-1228), so that leaders require the bumped epoch.
    assert!(matches!(
        &m[..],
        [Output::WriteMarkers {
            transaction_version: 2,
            ..
        }]
    ));
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
    // The old epoch is fenced for the next transaction, the new one works.
    assert_eq!(
        h.add("tx", (pid, e0), &[tp("a", 0)]),
        ErrorCode::PRODUCER_FENCED
    );
    assert_eq!(h.add("tx", (pid, e0 + 1), &[tp("b", 0)]), ErrorCode::NONE);
    let (r, m) = h.end_reply("tx", (pid, e0 + 1), TxnResult::Abort, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 2));
    assert_eq!(markers_epochs(&m), vec![(pid, e0 + 2, TxnResult::Abort)]);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    // Values are written in version 1 with the client's transaction version.
    let (_, value) = h.log.last().unwrap();
    let v = value.as_deref().unwrap();
    assert_eq!(&v[..2], &[0, 1], "flexible value version");
    let decoded = records::decode_value(v).unwrap();
    assert_eq!(decoded.client_transaction_version, 2);
    assert_eq!(decoded.producer_epoch, ProducerEpoch(e0 + 2));
}

#[test]
fn tv2_a_retried_end_gets_the_first_answer() {
    let mut h = Harness::v2();
    let (pid, e0) = h.init_ok("tx");
    assert_eq!(h.add("tx", (pid, e0), &[tp("a", 0)]), ErrorCode::NONE);
    let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Commit, false);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 1));
    // While the markers are out: retriable; an EndTxn naming the new epoch is
    // no retry and is fenced.
    let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Commit, false);
    assert_eq!(ended(&r).0, ErrorCode::CONCURRENT_TRANSACTIONS);
    let (r, _) = h.end_reply("tx", (pid, e0 + 1), TxnResult::Commit, false);
    assert_eq!(ended(&r).0, ErrorCode::PRODUCER_FENCED);
    h.markers_written("tx", (pid, e0 + 1));
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
    // After completion: the same result answers as the first attempt did,
    // with the bumped epoch; the other result is an invalid state.
    let (r, m) = h.end_reply("tx", (pid, e0), TxnResult::Commit, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 1));
    assert!(m.is_empty(), "a retry writes no markers");
    let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Abort, true);
    assert_eq!(ended(&r).0, ErrorCode::INVALID_TXN_STATE);
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
}

/// KAFKA-17754: an EndTxn delayed past the end of its transaction must not
/// end the next one. With transaction version 1 it would: both carry the
/// same epoch.
#[test]
fn tv2_a_late_end_cannot_end_a_later_transaction() {
    for late in [TxnResult::Commit, TxnResult::Abort] {
        let mut h = Harness::v2();
        let (pid, e0) = h.init_ok("tx");
        assert_eq!(h.add("tx", (pid, e0), &[tp("a", 0)]), ErrorCode::NONE);
        let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Abort, true);
        assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 1));
        // The next transaction is running when the late request comes.
        assert_eq!(h.add("tx", (pid, e0 + 1), &[tp("b", 0)]), ErrorCode::NONE);
        let (r, m) = h.end_reply("tx", (pid, e0), late, true);
        assert_eq!(ended(&r).0, ErrorCode::PRODUCER_FENCED, "{late:?}");
        assert!(m.is_empty(), "no markers for the late request");
        assert_eq!(h.state("tx"), TxnState::Ongoing);
        let d = &h.c.describe(&["tx".to_string()])[0];
        assert_eq!(d.partitions, vec![tp("b", 0)]);
        assert_eq!(d.producer_epoch, ProducerEpoch(e0 + 1));
    }
    // The same sequence with transaction version 1 clients ends the later
    // transaction: what version 2 prevents.
    let mut h = Harness::new();
    let p = h.init_ok("tx");
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
    assert_eq!(h.end("tx", p, TxnResult::Abort, true).0, ErrorCode::NONE);
    assert_eq!(h.add("tx", p, &[tp("b", 0)]), ErrorCode::NONE);
    assert_eq!(h.end("tx", p, TxnResult::Commit, true).0, ErrorCode::NONE);
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
}

#[test]
fn tv2_abort_without_partitions_is_a_transaction_of_its_own() {
    let mut h = Harness::v2();
    let (pid, e0) = h.init_ok("tx");
    let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Commit, true);
    assert_eq!(ended(&r).0, ErrorCode::INVALID_TXN_STATE);
    let (r, m) = h.end_reply("tx", (pid, e0), TxnResult::Abort, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 1));
    assert!(m.is_empty(), "no partitions, no markers");
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    // ... and again from CompleteAbort at the new epoch.
    let (r, _) = h.end_reply("tx", (pid, e0 + 1), TxnResult::Abort, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 2));
    h.c.check_invariants();
}

fn replay_state(h: &mut Harness, id: &str, v: &records::TxnLogValue) {
    h.c.replay(
        &records::encode_key(id),
        Some(&records::encode_value_version(v, 1)),
    )
    .unwrap();
}

#[test]
fn tv2_an_exhausted_epoch_moves_to_a_new_producer_id_at_the_end() {
    let mut h = Harness::v2();
    let last = i16::MAX - 1;
    replay_state(
        &mut h,
        "tx",
        &records::TxnLogValue {
            producer_id: ProducerId(77),
            previous_producer_id: ProducerId(-1),
            next_producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(last),
            timeout_ms: TIMEOUT_MS,
            state: TxnState::CompleteCommit,
            partitions: vec![],
            last_update_ms: 1_000,
            start_ms: 0,
            client_transaction_version: 2,
        },
    );
    assert_eq!(h.add("tx", (77, last), &[tp("a", 0)]), ErrorCode::NONE);
    let (r, m) = h.end_reply("tx", (77, last), TxnResult::Commit, true);
    let (code, new_pid, new_epoch) = ended(&r);
    assert_eq!(code, ErrorCode::NONE);
    assert_ne!(new_pid, 77);
    assert_eq!(new_epoch, 0);
    // The markers close the transaction under the old id, at i16::MAX.
    assert_eq!(markers_epochs(&m), vec![(77, i16::MAX, TxnResult::Commit)]);
    let d = &h.c.describe(&["tx".to_string()])[0];
    assert_eq!(
        (d.state, d.producer_id, d.producer_epoch),
        (
            TxnState::CompleteCommit,
            ProducerId(new_pid),
            ProducerEpoch(0)
        )
    );
    // A retry from the old id and its last epoch is answered with the new ones.
    let (r, _) = h.end_reply("tx", (77, last), TxnResult::Commit, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, new_pid, 0));
    // The old id no longer adds partitions; the new one does.
    assert_eq!(
        h.add("tx", (77, last), &[tp("a", 0)]),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(h.add("tx", (new_pid, 0), &[tp("a", 0)]), ErrorCode::NONE);
}

#[test]
fn tv2_state_survives_a_coordinator_reload_mid_transaction() {
    // Prepared (markers not written) at an exhausted epoch: the reloaded
    // coordinator sends the markers again and moves to the new producer id.
    let mut h = Harness::v2();
    let last = i16::MAX - 1;
    replay_state(
        &mut h,
        "tx",
        &records::TxnLogValue {
            producer_id: ProducerId(77),
            previous_producer_id: ProducerId(-1),
            next_producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(last),
            timeout_ms: TIMEOUT_MS,
            state: TxnState::CompleteAbort,
            partitions: vec![],
            last_update_ms: 1_000,
            start_ms: 0,
            client_transaction_version: 2,
        },
    );
    let p = h.init_ok("plain");
    assert_eq!(h.add("plain", p, &[tp("b", 0)]), ErrorCode::NONE);
    assert_eq!(h.add("tx", (77, last), &[tp("a", 0)]), ErrorCode::NONE);
    let (r, _) = h.end_reply("tx", (77, last), TxnResult::Commit, false);
    let (_, new_pid, _) = ended(&r);
    assert_eq!(h.state("tx"), TxnState::PrepareCommit);

    let mut fresh = Harness::v2();
    for (k, v) in &h.log {
        fresh.c.replay(k, v.as_deref()).unwrap();
    }
    assert_eq!(fresh.state("tx"), TxnState::PrepareCommit);
    assert_eq!(fresh.state("plain"), TxnState::Ongoing);
    let mut out = Vec::new();
    fresh.c.finish_replay(fresh.now_ms, &mut out);
    let (_, m) = fresh.settle(out, true);
    assert_eq!(markers_epochs(&m), vec![(77, i16::MAX, TxnResult::Commit)]);
    let d = &fresh.c.describe(&["tx".to_string()])[0];
    assert_eq!(
        (d.state, d.producer_id, d.producer_epoch),
        (
            TxnState::CompleteCommit,
            ProducerId(new_pid),
            ProducerEpoch(0)
        )
    );
    // The retry after the reload still gets the first answer.
    let (r, _) = fresh.end_reply("tx", (77, last), TxnResult::Commit, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, new_pid, 0));
    // An ongoing version 2 transaction reloads as it was, and ends with a bump.
    assert_eq!(fresh.add("plain", p, &[tp("c", 0)]), ErrorCode::NONE);
    let (r, m) = fresh.end_reply("plain", p, TxnResult::Abort, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, p.0, p.1 + 1));
    assert_eq!(markers_epochs(&m), vec![(p.0, p.1 + 1, TxnResult::Abort)]);
}

#[test]
fn version_1_clients_keep_their_epoch_when_version_2_is_finalized() {
    let mut h = Harness::v2();
    h.tv = 0;
    let p = h.init_ok("tx");
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
    let (r, m) = h.end_reply("tx", p, TxnResult::Commit, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, p.0, p.1));
    assert_eq!(markers_epochs(&m), vec![(p.0, p.1, TxnResult::Commit)]);
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
}

#[test]
fn tv2_timeout_abort_bumps_once_and_the_producer_may_abort_after_it() {
    let mut h = Harness::v2();
    let (pid, e0) = h.init_ok("tx");
    assert_eq!(h.add("tx", (pid, e0), &[tp("a", 0)]), ErrorCode::NONE);
    h.now_ms += TIMEOUT_MS as i64 + 1;
    let mut out = Vec::new();
    h.c.tick(h.now_ms, &mut out);
    let (_, m) = h.settle(out, true);
    assert_eq!(markers_epochs(&m), vec![(pid, e0 + 1, TxnResult::Abort)]);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    // The producer's own abort (it still holds the old epoch) is a retry.
    let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Abort, true);
    assert_eq!(ended(&r), (ErrorCode::NONE, pid, e0 + 1));
    let (r, _) = h.end_reply("tx", (pid, e0), TxnResult::Commit, true);
    assert_eq!(ended(&r).0, ErrorCode::INVALID_TXN_STATE);
}

/// KIP-890 part 1: AddPartitionsToTxn `verify_only` answers as Kafka's
/// coordinator does, state by state.
#[test]
fn verify_only_answers_as_kafka() {
    let mut h = Harness::new();
    let verify = |h: &Harness, (pid, epoch): (i64, i16), parts: &[TopicPartition]| {
        h.c.verify(&prod("tx", pid, epoch), parts)
    };
    assert_eq!(
        verify(&h, (7, 0), &[tp("a", 0)]),
        vec![ErrorCode::INVALID_PRODUCER_ID_MAPPING],
        "an unknown transactional id"
    );
    assert_eq!(
        h.c.verify(&prod("", 7, 0), &[tp("a", 0)]),
        vec![ErrorCode::INVALID_REQUEST]
    );
    let p = h.init_ok("tx");
    // No transaction yet: no partition is in it.
    assert_eq!(
        verify(&h, p, &[tp("a", 0)]),
        vec![ErrorCode::TRANSACTION_ABORTABLE]
    );
    assert_eq!(h.add("tx", p, &[tp("a", 0)]), ErrorCode::NONE);
    assert_eq!(
        verify(&h, p, &[tp("a", 0), tp("a", 1)]),
        vec![ErrorCode::NONE, ErrorCode::TRANSACTION_ABORTABLE]
    );
    assert_eq!(
        verify(&h, (p.0 + 1, p.1), &[tp("a", 0)]),
        vec![ErrorCode::INVALID_PRODUCER_ID_MAPPING]
    );
    assert_eq!(
        verify(&h, (p.0, p.1 + 1), &[tp("a", 0)]),
        vec![ErrorCode::PRODUCER_FENCED]
    );
    // While the markers are out: retriable.
    let (code, _markers) = h.end("tx", p, TxnResult::Abort, false);
    assert_eq!(code, ErrorCode::NONE);
    assert_eq!(
        verify(&h, p, &[tp("a", 0)]),
        vec![ErrorCode::CONCURRENT_TRANSACTIONS]
    );
    h.markers_written("tx", p);
    // Completed: the partition left the transaction with its marker.
    assert_eq!(
        verify(&h, p, &[tp("a", 0)]),
        vec![ErrorCode::TRANSACTION_ABORTABLE]
    );
    h.c.check_invariants();
}
