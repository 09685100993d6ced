//! The transaction coordinator's state machine: one [`TxnMetadata`] per
//! transactional id, moved between Kafka's states by requests, by `now_ms`
//! and by the shell's reports of appends and markers. A transition is decided
//! at once, kept pending while its record is written, and applied when the
//! write is reported done (Kafka's `pendingState` / `TxnTransitMetadata`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fjord_model::limits::{TRANSACTIONAL_ID_BYTES_MAX, TRANSACTION_PARTITIONS_MAX};
use fjord_model::{ErrorCode, PartitionIndex, ProducerEpoch, ProducerId, TopicPartition};

use crate::records::{self, TxnLogValue};
use crate::{
    DescribedTxn, InitRequest, ListFilter, ListedTxn, Output, RecordError, Reply, RequestToken,
    TxnConfig, TxnProducer, TxnResult, TxnState, WriteId, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    TRANSACTION_VERSION_EPOCH_BUMP,
};

/// What is written for a transactional id: the fields of its log value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Persisted {
    producer_id: ProducerId,
    previous_producer_id: ProducerId,
    /// Transaction version 2: the producer id the transactional id moves to
    /// when the transaction being ended completes (its epoch was exhausted);
    /// -1 otherwise.
    next_producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    /// The transaction version of the client that made the last transition
    /// (Kafka's `clientTransactionVersion`, written in version 1 values).
    client_version: i16,
    /// The epoch before the last bump (to recognise a retried InitProducerId);
    /// not written, as in Kafka.
    last_producer_epoch: ProducerEpoch,
    timeout_ms: i32,
    state: TxnState,
    partitions: BTreeSet<TopicPartition>,
    start_ms: i64,
    last_update_ms: i64,
}

impl Persisted {
    fn to_value(&self) -> TxnLogValue {
        let mut grouped: Vec<(String, Vec<i32>)> = Vec::new();
        // BTreeSet order: by topic, then partition, so topics are contiguous.
        for tp in &self.partitions {
            match grouped.last_mut() {
                Some((topic, ids)) if *topic == tp.topic => ids.push(tp.partition.0),
                _ => grouped.push((tp.topic.clone(), vec![tp.partition.0])),
            }
        }
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: grouped,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_version,
        }
    }

    fn from_value(v: TxnLogValue) -> Persisted {
        let mut partitions = BTreeSet::new();
        for (topic, ids) in v.partitions {
            for id in ids {
                partitions.insert(TopicPartition {
                    topic: topic.clone(),
                    partition: PartitionIndex(id),
                });
            }
        }
        Persisted {
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            client_version: v.client_transaction_version,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
        }
    }
}

/// What to do once a pending write is done.
#[derive(Clone, Debug)]
enum Then {
    /// Answer InitProducerId with the new id and epoch.
    Init(RequestToken),
    /// Answer NONE (AddPartitionsToTxn, AddOffsetsToTxn).
    Ack(RequestToken),
    /// A prepare written for EndTxn: answer NONE, send the markers.
    EndTxn(RequestToken),
    /// The ongoing transaction was fenced for an InitProducerId: answer
    /// CONCURRENT_TRANSACTIONS (the client retries and gets a new epoch),
    /// send the abort markers.
    FencedForInit(RequestToken),
    /// Fenced on timeout: send the abort markers.
    FencedOnTimeout,
    /// The completion after the markers.
    Complete,
    /// A tombstone for an expired transactional id.
    Expire,
}

#[derive(Clone, Debug)]
struct Pending {
    write: WriteId,
    /// `None` for a tombstone.
    target: Option<Persisted>,
    then: Then,
}

#[derive(Clone, Debug)]
struct TxnMetadata {
    cur: Persisted,
    pending: Option<Pending>,
    /// A fence of transaction version 0/1 whose write failed already bumped
    /// the epoch in memory; the next fence does not bump it again (Kafka's
    /// `hasFailedEpochFence`).
    failed_epoch_fence: bool,
    /// The markers were written but the completion's write failed: `tick`
    /// writes it again.
    complete_retry: bool,
}

/// The transactions this node coordinates. See the crate docs for the contract.
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: BTreeMap<String, TxnMetadata>,
    /// Pending writes → their transactional id.
    writes: HashMap<WriteId, String>,
    next_write: u64,
    next_check_ms: Option<i64>,
    /// The finalized `transaction.version` (the shell keeps it current): the
    /// version of the values written, and the version of the coordinator's
    /// own transitions (fences, timeouts), as Kafka's "server TV".
    transaction_version: i16,
}

/// Whether a transition made at client transaction version `v` bumps the
/// epoch at the end of the transaction.
fn bumps_epoch(v: i16) -> bool {
    v >= TRANSACTION_VERSION_EPOCH_BUMP
}

fn epoch_exhausted(epoch: ProducerEpoch) -> bool {
    epoch.0 >= i16::MAX - 1
}

fn respond(out: &mut Vec<Output>, token: RequestToken, error: ErrorCode) {
    out.push(Output::Respond(token, Reply::Done(error)));
}

fn respond_ended(
    out: &mut Vec<Output>,
    token: RequestToken,
    error: ErrorCode,
    p: (ProducerId, ProducerEpoch),
) {
    let (producer_id, producer_epoch) = if error.is_none() {
        p
    } else {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    };
    out.push(Output::Respond(
        token,
        Reply::Ended {
            error,
            producer_id,
            producer_epoch,
        },
    ));
}

fn respond_init_error(out: &mut Vec<Output>, token: RequestToken, error: ErrorCode) {
    assert!(!error.is_none());
    out.push(Output::Respond(
        token,
        Reply::InitProducerId {
            error,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        },
    ));
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            txns: BTreeMap::new(),
            writes: HashMap::new(),
            next_write: 0,
            next_check_ms: None,
            transaction_version: 0,
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The finalized `transaction.version` (the shell sets it before each
    /// call from the metadata image): values are written in version 1 from
    /// level 1, and the coordinator's own aborts (fences, timeouts) are
    /// transitions of that version.
    pub fn set_transaction_version(&mut self, level: i16) {
        self.transaction_version = level;
    }

    /// Decide a transition for `id` and emit its write; it is applied in
    /// [`Self::append_done`].
    fn begin(&mut self, id: &str, target: Option<Persisted>, then: Then, out: &mut Vec<Output>) {
        let txn = self.txns.get_mut(id);
        let txn = match txn {
            Some(t) => t,
            None => unreachable!("begin on a transactional id that is not held"),
        };
        assert!(
            txn.pending.is_none(),
            "one pending transition per transactional id"
        );
        if let Some(t) = &target {
            assert!(
                t.state.may_follow(txn.cur.state),
                "invalid transition {:?} -> {:?}",
                txn.cur.state,
                t.state
            );
        }
        let write = WriteId(self.next_write);
        self.next_write += 1;
        let version = records::value_version_for(self.transaction_version);
        let value = target
            .as_ref()
            .map(|t| records::encode_value_version(&t.to_value(), version));
        txn.pending = Some(Pending {
            write,
            target,
            then,
        });
        self.writes.insert(write, id.to_owned());
        out.push(Output::Persist {
            write,
            transactional_id: id.to_owned(),
            key: records::encode_key(id),
            value,
        });
    }

    /// InitProducerId with a transactional id (Kafka's
    /// `handleInitProducerId`): a new producer id for a new transactional id,
    /// else the epoch bumped (a new id when the epoch is exhausted), fencing
    /// the previous producer; an ongoing transaction is aborted first and the
    /// client told to retry. `next_producer_id` hands out a fresh producer id
    /// (from the node's block); it is called only when one is needed.
    pub fn init_producer_id(
        &mut self,
        token: RequestToken,
        req: &InitRequest,
        now_ms: i64,
        next_producer_id: &mut dyn FnMut() -> Result<ProducerId, ErrorCode>,
        out: &mut Vec<Output>,
    ) {
        let id = req.transactional_id.as_str();
        if id.is_empty() || id.len() > TRANSACTIONAL_ID_BYTES_MAX {
            return respond_init_error(out, token, ErrorCode::INVALID_REQUEST);
        }
        if req.transaction_timeout_ms <= 0
            || req.transaction_timeout_ms > self.config.timeout_ms_max
        {
            return respond_init_error(out, token, ErrorCode::INVALID_TRANSACTION_TIMEOUT);
        }
        if !self.txns.contains_key(id) {
            let producer_id = match next_producer_id() {
                Ok(p) => p,
                Err(e) => return respond_init_error(out, token, e),
            };
            self.txns.insert(
                id.to_owned(),
                TxnMetadata {
                    cur: Persisted {
                        producer_id,
                        previous_producer_id: NO_PRODUCER_ID,
                        next_producer_id: NO_PRODUCER_ID,
                        producer_epoch: NO_PRODUCER_EPOCH,
                        client_version: 0,
                        last_producer_epoch: NO_PRODUCER_EPOCH,
                        timeout_ms: req.transaction_timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        start_ms: -1,
                        last_update_ms: now_ms,
                    },
                    pending: None,
                    failed_epoch_fence: false,
                    complete_retry: false,
                },
            );
        }
        let Some(txn) = self.txns.get(id) else {
            unreachable!("inserted above")
        };
        let cur = &txn.cur;
        if txn.pending.is_some() {
            return respond_init_error(out, token, ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        if let Some((pid, epoch)) = req.expected {
            // KIP-360: a producer naming its id may bump its own epoch, unless
            // another producer has taken the transactional id since.
            let valid = cur.producer_epoch == NO_PRODUCER_EPOCH
                || pid == cur.producer_id
                || (pid == cur.previous_producer_id && epoch_exhausted(epoch));
            if !valid {
                return respond_init_error(out, token, ErrorCode::PRODUCER_FENCED);
            }
        }
        match cur.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                respond_init_error(out, token, ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut target = cur.clone();
                target.state = TxnState::Empty;
                target.partitions.clear();
                target.start_ms = -1;
                target.timeout_ms = req.transaction_timeout_ms;
                target.last_update_ms = now_ms;
                target.next_producer_id = NO_PRODUCER_ID;
                // InitProducerId transitions are version 0 ones, as Kafka's.
                target.client_version = 0;
                let expected_epoch = req.expected.map(|(_, e)| e);
                if epoch_exhausted(cur.producer_epoch)
                    && expected_epoch.is_none_or(|e| e == cur.producer_epoch)
                {
                    let fresh = match next_producer_id() {
                        Ok(p) => p,
                        Err(e) => return respond_init_error(out, token, e),
                    };
                    target.previous_producer_id = cur.producer_id;
                    target.producer_id = fresh;
                    target.producer_epoch = ProducerEpoch(0);
                    target.last_producer_epoch = if req.expected.is_some() {
                        cur.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    let bumped = ProducerEpoch(cur.producer_epoch.0 + 1);
                    match expected_epoch {
                        None => {
                            target.producer_epoch = bumped;
                            target.last_producer_epoch = NO_PRODUCER_EPOCH;
                        }
                        Some(e)
                            if cur.producer_epoch == NO_PRODUCER_EPOCH
                                || e == cur.producer_epoch =>
                        {
                            target.producer_epoch = bumped;
                            target.last_producer_epoch = cur.producer_epoch;
                        }
                        // A retry of the bump already made: answer the same epoch.
                        Some(e) if e == cur.last_producer_epoch => {}
                        Some(_) => {
                            return respond_init_error(out, token, ErrorCode::PRODUCER_FENCED)
                        }
                    }
                }
                self.begin(id, Some(target), Then::Init(token), out);
            }
            TxnState::Ongoing => {
                let target = self.fence_target(id, now_ms);
                self.begin(id, Some(target), Then::FencedForInit(token), out);
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("never a current state: Dead ids are removed, fences are pending only")
            }
        }
    }

    /// The PrepareAbort that fences an ongoing transaction (InitProducerId,
    /// or its timeout), with its epoch bumped so that the producer that ran
    /// it can no longer write or end it, as Kafka 4.3.1 prepares it for the
    /// finalized `transaction.version`:
    /// - 2 (`endTransaction`): as a version 2 client's abort
    ///   (`prepareAbortOrCommit`), one above the epoch in memory, the
    ///   previous one kept as the last epoch. A failed fence left the epoch in
    ///   memory as it was, so the next one bumps it too: its markers always
    ///   carry an epoch above the producer's, the only one a leader takes for
    ///   a version 2 marker while the transaction is open.
    /// - 0/1 (`endTransactionWithTV1`): a version 0 transition at the epoch
    ///   bumped once: a failed fence already set it in memory
    ///   ([`Self::fence_failed`]) and the next does not bump it again.
    ///
    /// A fence never moves to a new producer id (Kafka's version 2 one does
    /// when the epoch is exhausted; here the next InitProducerId does).
    fn fence_target(&self, id: &str, now_ms: i64) -> Persisted {
        let Some(txn) = self.txns.get(id) else {
            unreachable!("fence of a transactional id that is not held")
        };
        assert_eq!(txn.cur.state, TxnState::Ongoing);
        let mut target = txn.cur.clone();
        let version = self.transaction_version;
        let bump = bumps_epoch(version) || !txn.failed_epoch_fence;
        if bump && target.producer_epoch.0 < i16::MAX {
            target.producer_epoch = ProducerEpoch(target.producer_epoch.0 + 1);
        }
        if bumps_epoch(version) {
            target.last_producer_epoch = txn.cur.producer_epoch;
            target.client_version = version;
        } else {
            target.last_producer_epoch = NO_PRODUCER_EPOCH;
            target.client_version = 0;
        }
        target.state = TxnState::PrepareAbort;
        target.last_update_ms = now_ms;
        target.next_producer_id = NO_PRODUCER_ID;
        target
    }

    /// The write of the fence `target` failed: a version 0/1 fence keeps its
    /// bumped epoch in memory (Kafka sets it before the write and never
    /// hands it to a client, so the fenced producer stays fenced), a version
    /// 2 one leaves the epoch as it was.
    fn fence_failed(txn: &mut TxnMetadata, target: Option<&Persisted>) {
        txn.failed_epoch_fence = true;
        if let Some(t) = target.filter(|t| !bumps_epoch(t.client_version)) {
            txn.cur.producer_epoch = t.producer_epoch;
            txn.cur.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
    }

    /// Checks shared by AddPartitionsToTxn, AddOffsetsToTxn and EndTxn.
    fn check_producer(&self, p: &TxnProducer<'_>) -> Result<&TxnMetadata, ErrorCode> {
        let (id, producer_id, producer_epoch) =
            (p.transactional_id, p.producer_id, p.producer_epoch);
        if id.is_empty() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        let Some(txn) = self.txns.get(id) else {
            return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        };
        if txn.cur.producer_id != producer_id {
            return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        }
        if txn.cur.producer_epoch != producer_epoch {
            return Err(ErrorCode::PRODUCER_FENCED);
        }
        if txn.pending.is_some() {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        Ok(txn)
    }

    /// AddPartitionsToTxn `verify_only` (KIP-890 part 1): a partition
    /// leader asks, before it appends a transactional batch of a producer
    /// whose transaction it has not seen yet, whether each partition is in
    /// that producer's transaction. Kafka's answer
    /// (`handleVerifyPartitionsInTransaction`): INVALID_REQUEST for an empty
    /// id, INVALID_PRODUCER_ID_MAPPING for an unknown id or another producer
    /// id, PRODUCER_FENCED for another epoch, CONCURRENT_TRANSACTIONS while
    /// the transaction is being committed or aborted; otherwise NONE for a
    /// partition of the transaction and TRANSACTION_ABORTABLE for any other
    /// (the leader answers that to old clients as INVALID_TXN_STATE). A
    /// pending write is not waited for, as in Kafka: the partitions are those
    /// already written. Reads only.
    pub fn verify(
        &self,
        producer: &TxnProducer<'_>,
        partitions: &[TopicPartition],
    ) -> Vec<ErrorCode> {
        let every = |code: ErrorCode| vec![code; partitions.len()];
        if producer.transactional_id.is_empty() {
            return every(ErrorCode::INVALID_REQUEST);
        }
        let Some(txn) = self.txns.get(producer.transactional_id) else {
            return every(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        };
        let cur = &txn.cur;
        if cur.producer_id != producer.producer_id {
            return every(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        }
        if cur.producer_epoch != producer.producer_epoch {
            return every(ErrorCode::PRODUCER_FENCED);
        }
        if matches!(cur.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return every(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        partitions
            .iter()
            .map(|tp| {
                if cur.partitions.contains(tp) {
                    ErrorCode::NONE
                } else {
                    ErrorCode::TRANSACTION_ABORTABLE
                }
            })
            .collect()
    }

    /// AddPartitionsToTxn for one transaction (v3- carries one; the batched
    /// v4+ form is one call per transaction). The error code answers every
    /// partition of the request.
    pub fn add_partitions(
        &mut self,
        token: RequestToken,
        producer: &TxnProducer<'_>,
        partitions: &[TopicPartition],
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let transactional_id = producer.transactional_id;
        let txn = match self.check_producer(producer) {
            Ok(t) => t,
            Err(e) => return respond(out, token, e),
        };
        if matches!(
            txn.cur.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return respond(out, token, ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        if txn.cur.state == TxnState::Ongoing
            && partitions.iter().all(|tp| txn.cur.partitions.contains(tp))
        {
            return respond(out, token, ErrorCode::NONE);
        }
        let mut target = txn.cur.clone();
        if target.state != TxnState::Ongoing {
            target.start_ms = now_ms;
            target.partitions.clear();
        }
        target.partitions.extend(partitions.iter().cloned());
        if target.partitions.len() > TRANSACTION_PARTITIONS_MAX {
            return respond(out, token, ErrorCode::INVALID_REQUEST);
        }
        target.client_version = producer.transaction_version;
        target.state = TxnState::Ongoing;
        target.last_update_ms = now_ms;
        self.begin(transactional_id, Some(target), Then::Ack(token), out);
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition
    /// (`offsets_partition`, which the shell computes) joins the transaction.
    pub fn add_offsets(
        &mut self,
        token: RequestToken,
        producer: &TxnProducer<'_>,
        offsets_partition: TopicPartition,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        self.add_partitions(token, producer, &[offsets_partition], now_ms, out);
    }

    /// EndTxn from a client (Kafka's `handleEndTransaction`). A transaction
    /// version 2 client ([`TxnProducer::transaction_version`]) goes to
    /// [`Self::end_txn_v2`]. Version 0/1: Ongoing → PrepareCommit/PrepareAbort,
    /// answered once the prepare is written (with the producer's id and
    /// epoch, unchanged); then the markers, then the completion.
    /// `next_producer_id` hands out a fresh producer id when a version 2
    /// transaction's epoch is exhausted.
    pub fn end_txn(
        &mut self,
        token: RequestToken,
        producer: &TxnProducer<'_>,
        result: TxnResult,
        now_ms: i64,
        next_producer_id: &mut dyn FnMut() -> Result<ProducerId, ErrorCode>,
        out: &mut Vec<Output>,
    ) {
        if bumps_epoch(producer.transaction_version) {
            return self.end_txn_v2(token, producer, result, now_ms, next_producer_id, out);
        }
        let transactional_id = producer.transactional_id;
        let txn = match self.check_producer(producer) {
            Ok(t) => t,
            Err(e) => return respond_ended(out, token, e, (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)),
        };
        let current = (txn.cur.producer_id, txn.cur.producer_epoch);
        let code = match (txn.cur.state, result) {
            (TxnState::Ongoing, _) => None,
            // A retried EndTxn whose first attempt went through.
            (TxnState::CompleteCommit, TxnResult::Commit)
            | (TxnState::CompleteAbort, TxnResult::Abort) => Some(ErrorCode::NONE),
            (TxnState::PrepareCommit, TxnResult::Commit)
            | (TxnState::PrepareAbort, TxnResult::Abort) => {
                Some(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            _ => Some(ErrorCode::INVALID_TXN_STATE),
        };
        if let Some(code) = code {
            return respond_ended(out, token, code, current);
        }
        let mut target = txn.cur.clone();
        target.state = match result {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        };
        target.last_update_ms = now_ms;
        target.client_version = producer.transaction_version;
        target.next_producer_id = NO_PRODUCER_ID;
        self.begin(transactional_id, Some(target), Then::EndTxn(token), out);
    }

    /// EndTxn of a transaction version 2 client (Kafka 4's TV2
    /// `endTransaction`): the prepare bumps the epoch (the markers carry the
    /// bumped one, the answer too), and an exhausted epoch takes a new
    /// producer id at the completion. The epoch a request names tells a retry
    /// (one below the current: answered as the first attempt was) from the
    /// next transaction's end (equal), and anything else is fenced: a late
    /// EndTxn of an earlier transaction can never end a later one
    /// (KAFKA-17754). An abort with no partitions (nothing was added, or the
    /// producer never learned whether it was) is a transaction of its own.
    fn end_txn_v2(
        &mut self,
        token: RequestToken,
        producer: &TxnProducer<'_>,
        result: TxnResult,
        now_ms: i64,
        next_producer_id: &mut dyn FnMut() -> Result<ProducerId, ErrorCode>,
        out: &mut Vec<Output>,
    ) {
        let none = (NO_PRODUCER_ID, NO_PRODUCER_EPOCH);
        let (id, pid, epoch) = (
            producer.transactional_id,
            producer.producer_id,
            producer.producer_epoch,
        );
        if id.is_empty() {
            return respond_ended(out, token, ErrorCode::INVALID_REQUEST, none);
        }
        let Some(txn) = self.txns.get(id) else {
            return respond_ended(out, token, ErrorCode::INVALID_PRODUCER_ID_MAPPING, none);
        };
        // First, so that a transition (possibly to a new producer id) ends
        // before the next checks.
        if txn.pending.is_some() {
            return respond_ended(out, token, ErrorCode::CONCURRENT_TRANSACTIONS, none);
        }
        let cur = &txn.cur;
        let retry_on_overflow =
            cur.previous_producer_id == pid && epoch.0 == i16::MAX - 1 && cur.producer_epoch.0 == 0;
        let retry_on_bump =
            cur.producer_epoch.0 == epoch.0.saturating_add(1) && cur.producer_id == pid;
        if cur.producer_id != pid && !retry_on_overflow {
            return respond_ended(out, token, ErrorCode::INVALID_PRODUCER_ID_MAPPING, none);
        }
        use TxnState::*;
        let valid_epoch = match cur.state {
            Ongoing | Empty | Dead | PrepareEpochFence => epoch == cur.producer_epoch,
            PrepareCommit | PrepareAbort => retry_on_bump,
            CompleteCommit | CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == cur.producer_epoch
            }
        };
        if !valid_epoch {
            return respond_ended(out, token, ErrorCode::PRODUCER_FENCED, none);
        }
        let retry = retry_on_bump || retry_on_overflow;
        let current = (cur.producer_id, cur.producer_epoch);
        // (next state, whether no partition was added)
        let next = match (cur.state, result) {
            (Ongoing, TxnResult::Commit) => Ok((PrepareCommit, false)),
            (Ongoing, TxnResult::Abort) => Ok((PrepareAbort, false)),
            (CompleteCommit, TxnResult::Commit) | (CompleteAbort, TxnResult::Abort) if retry => {
                Err(ErrorCode::NONE)
            }
            (CompleteCommit, TxnResult::Commit) => Err(ErrorCode::INVALID_TXN_STATE),
            (CompleteCommit, TxnResult::Abort) if retry => Err(ErrorCode::INVALID_TXN_STATE),
            (CompleteCommit | CompleteAbort | Empty, TxnResult::Abort) => Ok((PrepareAbort, true)),
            (PrepareCommit, TxnResult::Commit) | (PrepareAbort, TxnResult::Abort) => {
                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            (Dead | PrepareEpochFence, _) => {
                unreachable!("never a current state: Dead ids are removed, fences are pending only")
            }
            _ => Err(ErrorCode::INVALID_TXN_STATE),
        };
        let (state, no_partitions) = match next {
            Ok(n) => n,
            Err(code) => return respond_ended(out, token, code, current),
        };
        let Some(bumped) = cur.producer_epoch.0.checked_add(1) else {
            // Only a fence reaches i16::MAX, and no client holds that epoch.
            return respond_ended(out, token, ErrorCode::PRODUCER_FENCED, none);
        };
        let mut target = cur.clone();
        if epoch_exhausted(cur.producer_epoch) {
            target.next_producer_id = match next_producer_id() {
                Ok(p) => p,
                Err(e) => return respond_ended(out, token, e, none),
            };
        } else {
            target.next_producer_id = NO_PRODUCER_ID;
        }
        target.state = state;
        target.producer_epoch = ProducerEpoch(bumped);
        target.last_producer_epoch = cur.producer_epoch;
        target.client_version = producer.transaction_version;
        target.last_update_ms = now_ms;
        if no_partitions {
            target.partitions.clear();
            target.start_ms = now_ms;
        }
        self.begin(id, Some(target), Then::EndTxn(token), out);
    }

    /// The producer id and epoch a client continues with once the prepared
    /// transaction `p` completes.
    fn after_completion(p: &Persisted) -> (ProducerId, ProducerEpoch) {
        if bumps_epoch(p.client_version) && p.next_producer_id != NO_PRODUCER_ID {
            (p.next_producer_id, ProducerEpoch(0))
        } else {
            (p.producer_id, p.producer_epoch)
        }
    }

    fn markers_for(id: &str, p: &Persisted, out: &mut Vec<Output>) {
        let result = match p.state {
            TxnState::PrepareCommit => TxnResult::Commit,
            TxnState::PrepareAbort => TxnResult::Abort,
            s => unreachable!("markers are sent from a prepared state, not {s:?}"),
        };
        out.push(Output::WriteMarkers {
            transactional_id: id.to_owned(),
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            result,
            partitions: p.partitions.iter().cloned().collect(),
            transaction_version: p.client_version,
        });
    }

    /// The shell appended (or failed to append) the record of `write`.
    /// `result` is `Err(code)` with the Kafka code to answer the request with.
    pub fn append_done(
        &mut self,
        write: WriteId,
        result: Result<(), ErrorCode>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let Some(id) = self.writes.remove(&write) else {
            return; // unknown or already reported: nothing waits for it
        };
        let Some(txn) = self.txns.get_mut(&id) else {
            unreachable!("a pending write's transactional id is held")
        };
        let pending = match txn.pending.take() {
            Some(p) if p.write == write => p,
            other => unreachable!("write {write:?} is not the pending one: {other:?}"),
        };
        if let Err(code) = result {
            assert!(!code.is_none());
            match pending.then {
                Then::Init(t) => respond_init_error(out, t, code),
                Then::FencedForInit(t) => {
                    Self::fence_failed(txn, pending.target.as_ref());
                    respond_init_error(out, t, code);
                }
                Then::FencedOnTimeout => Self::fence_failed(txn, pending.target.as_ref()),
                Then::Ack(t) => respond(out, t, code),
                Then::EndTxn(t) => respond_ended(out, t, code, (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)),
                Then::Complete => txn.complete_retry = true,
                Then::Expire => {}
            }
            return;
        }
        let Some(target) = pending.target else {
            assert!(matches!(pending.then, Then::Expire));
            self.txns.remove(&id);
            return;
        };
        assert!(target.state.may_follow(txn.cur.state));
        txn.cur = target;
        txn.failed_epoch_fence = false;
        txn.complete_retry = false;
        match pending.then {
            Then::Init(t) => out.push(Output::Respond(
                t,
                Reply::InitProducerId {
                    error: ErrorCode::NONE,
                    producer_id: txn.cur.producer_id,
                    producer_epoch: txn.cur.producer_epoch,
                },
            )),
            Then::Ack(t) => respond(out, t, ErrorCode::NONE),
            Then::EndTxn(t) => {
                let continues = Self::after_completion(&txn.cur);
                respond_ended(out, t, ErrorCode::NONE, continues);
                self.send_markers(&id, now_ms, out);
            }
            Then::FencedForInit(t) => {
                respond_init_error(out, t, ErrorCode::CONCURRENT_TRANSACTIONS);
                self.send_markers(&id, now_ms, out);
            }
            Then::FencedOnTimeout => self.send_markers(&id, now_ms, out),
            Then::Complete | Then::Expire => {}
        }
    }

    /// Markers for a prepared transaction; with no partitions there are none
    /// to write and it completes at once.
    fn send_markers(&mut self, id: &str, now_ms: i64, out: &mut Vec<Output>) {
        let Some(txn) = self.txns.get(id) else {
            unreachable!("markers of a transactional id that is not held")
        };
        if txn.cur.partitions.is_empty() {
            self.complete(id, now_ms, out);
        } else {
            Self::markers_for(id, &txn.cur, out);
        }
    }

    fn complete(&mut self, id: &str, now_ms: i64, out: &mut Vec<Output>) {
        let Some(txn) = self.txns.get(id) else {
            unreachable!("completion of a transactional id that is not held")
        };
        let mut target = txn.cur.clone();
        target.state = match txn.cur.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            s => unreachable!("completion from {s:?}"),
        };
        target.partitions.clear();
        target.last_update_ms = now_ms;
        let (producer_id, producer_epoch) = Self::after_completion(&txn.cur);
        if producer_id != txn.cur.producer_id {
            // The exhausted epoch of a version 2 transaction: the next
            // transaction runs under the new producer id.
            target.previous_producer_id = txn.cur.producer_id;
            target.producer_id = producer_id;
            target.producer_epoch = producer_epoch;
            target.last_producer_epoch = txn.cur.producer_epoch;
        }
        target.next_producer_id = NO_PRODUCER_ID;
        self.begin(id, Some(target), Then::Complete, out);
    }

    /// The markers of [`Output::WriteMarkers`] are in every partition. A
    /// report that no longer matches the transaction (a stale one, after a
    /// reload) is ignored.
    pub fn markers_done(
        &mut self,
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let Some(txn) = self.txns.get(transactional_id) else {
            return;
        };
        let prepared = matches!(
            txn.cur.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        );
        if !prepared
            || txn.pending.is_some()
            || txn.cur.producer_id != producer_id
            || txn.cur.producer_epoch != producer_epoch
        {
            return;
        }
        self.complete(transactional_id, now_ms, out);
    }

    /// Abort transactions that outlived their timeout, expire transactional
    /// ids idle for `transactional.id.expiration.ms`, retry failed
    /// completions. Runs its scan once per `abort_check_interval_ms`.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        if let Some(at) = self.next_check_ms {
            if now_ms < at {
                return;
            }
        }
        self.next_check_ms = Some(now_ms.saturating_add(self.config.abort_check_interval_ms));
        let mut timed_out = Vec::new();
        let mut expired = Vec::new();
        let mut retry = Vec::new();
        for (id, txn) in &self.txns {
            if txn.pending.is_some() {
                continue;
            }
            let cur = &txn.cur;
            match cur.state {
                TxnState::Ongoing
                    if cur.start_ms.saturating_add(cur.timeout_ms as i64) < now_ms =>
                {
                    timed_out.push(id.clone())
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if cur
                        .last_update_ms
                        .saturating_add(self.config.transactional_id_expiration_ms)
                        <= now_ms =>
                {
                    expired.push(id.clone())
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort if txn.complete_retry => {
                    retry.push(id.clone())
                }
                _ => {}
            }
        }
        for id in timed_out {
            let target = self.fence_target(&id, now_ms);
            self.begin(&id, Some(target), Then::FencedOnTimeout, out);
        }
        for id in expired {
            self.begin(&id, None, Then::Expire, out);
        }
        for id in retry {
            self.complete(&id, now_ms, out);
        }
    }

    /// When [`Self::tick`] next has work (`None` before the first tick: call it).
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.next_check_ms
    }

    /// Load one record of `__transaction_state` (in log order).
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        let id = records::decode_key(key)?;
        let Some(value) = value else {
            self.txns.remove(&id);
            return Ok(());
        };
        let cur = Persisted::from_value(records::decode_value(value)?);
        self.txns.insert(
            id,
            TxnMetadata {
                cur,
                pending: None,
                failed_epoch_fence: false,
                complete_retry: false,
            },
        );
        Ok(())
    }

    /// After the last replayed record: transactions that were prepared but
    /// not completed get their markers again (markers are idempotent).
    pub fn finish_replay(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let prepared: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                matches!(
                    t.cur.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in prepared {
            self.send_markers(&id, now_ms, out);
        }
    }

    /// DescribeTransactions.
    pub fn describe(&self, transactional_ids: &[String]) -> Vec<DescribedTxn> {
        transactional_ids
            .iter()
            .map(|id| match self.txns.get(id) {
                Some(t) => DescribedTxn {
                    transactional_id: id.clone(),
                    error: ErrorCode::NONE,
                    state: t.cur.state,
                    producer_id: t.cur.producer_id,
                    producer_epoch: t.cur.producer_epoch,
                    timeout_ms: t.cur.timeout_ms,
                    start_ms: t.cur.start_ms,
                    partitions: t.cur.partitions.iter().cloned().collect(),
                },
                None => DescribedTxn {
                    transactional_id: id.clone(),
                    error: ErrorCode::TRANSACTIONAL_ID_NOT_FOUND,
                    state: TxnState::Dead,
                    producer_id: NO_PRODUCER_ID,
                    producer_epoch: NO_PRODUCER_EPOCH,
                    timeout_ms: -1,
                    start_ms: -1,
                    partitions: Vec::new(),
                },
            })
            .collect()
    }

    /// ListTransactions (Kafka's filters: states, producer ids, and a
    /// duration measured from the transaction's start timestamp).
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> Vec<ListedTxn> {
        self.txns
            .iter()
            .filter(|(_, t)| filter.states.is_empty() || filter.states.contains(&t.cur.state))
            .filter(|(_, t)| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&t.cur.producer_id)
            })
            .filter(|(_, t)| {
                filter.duration_ms_min < 0
                    || now_ms.saturating_sub(t.cur.start_ms) > filter.duration_ms_min
            })
            .map(|(id, t)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: t.cur.producer_id,
                state: t.cur.state,
            })
            .collect()
    }

    /// How many transactional ids this coordinator holds.
    pub fn txn_count(&self) -> usize {
        self.txns.len()
    }

    /// Check the invariants between the maps (tests call it after every step).
    pub fn check_invariants(&self) {
        for (write, id) in &self.writes {
            let pending = self.txns.get(id).and_then(|t| t.pending.as_ref());
            assert_eq!(
                pending.map(|p| p.write),
                Some(*write),
                "write map out of step"
            );
        }
        for (id, t) in &self.txns {
            if let Some(p) = &t.pending {
                assert_eq!(self.writes.get(&p.write), Some(id));
            }
            assert!(!matches!(
                t.cur.state,
                TxnState::Dead | TxnState::PrepareEpochFence
            ));
            if matches!(
                t.cur.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) {
                assert!(
                    t.cur.partitions.is_empty(),
                    "{id}: no partitions outside a transaction"
                );
            }
        }
    }
}
