//! Produce: versions 3..=13 served; 0..=2 are advertised too (librdkafka
//! decides compression support from the advertised minimum, which is why Kafka
//! 4.0 lists them again) but, carrying the old message formats, they fail to
//! decode and the connection is closed, as Kafka 4 does.
//! - v12 is v11 on the wire; from v12 a transactional batch joins its
//!   transaction implicitly (transaction version 2, KIP-890): a partition not
//!   yet in the producer's transaction at this leader is added to it first
//!   (`Txns::add_implicitly`: this node's coordinator, or AddPartitionsToTxn
//!   v5 to the one that coordinates the transactional id; only a partition
//!   this node leads, as Kafka checks leadership first), then appended; the
//!   connection reads its next request only after that append
//!   (`Pending::Ordered`). A refused add answers the coordinator's error as
//!   Kafka's leader does (PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, a busy or
//!   moving coordinator as the retriable NOT_ENOUGH_REPLICAS) and appends
//!   nothing to that partition. Older versions (transaction version 1: the
//!   clients added the partitions themselves) are verified instead (KIP-890
//!   part 1, `transaction.partition.verification.enable`, on by default): a
//!   transactional batch of a producer whose transaction is not open on the
//!   partition is appended only once the coordinator confirms the partition
//!   is in that transaction (`Txns::verify_partitions`); a partition it is
//!   not in is TRANSACTION_ABORTABLE to v11 and INVALID_TXN_STATE to older
//!   versions, as Kafka answers. Both paths append with the partition's
//!   verification guard (`Partition::append_client`), so a transaction that
//!   ended meanwhile (its marker written) is not opened again.
//! - v13 names topics by id (KIP-516): the response echoes the id; an unknown
//!   id is UNKNOWN_TOPIC_ID, an unknown partition of a known topic
//!   UNKNOWN_TOPIC_OR_PARTITION.
//!
//! Appends go through the partition (`fjord_partition::Partition::append_shared`:
//! the request's record bytes are written without a copy) and run in request
//! order on the connection's reader; with acks=all the response waits for
//! the partition's commit (on one node: durable, by group commit). acks=0
//! gets no response. A broker that is not the partition's leader answers
//! NOT_LEADER_OR_FOLLOWER, from v10 with the leader it knows
//! (`current_leader`) and that leader's endpoint (`node_endpoints`, KIP-951),
//! so that clients go there without a Metadata round trip.
//!
//! Idempotent producers (producer id and sequence in the batch) are checked by
//! the partition log (`fjord_storage::producer_state`): a retried batch is
//! answered with its original offsets and NONE, a sequence gap with
//! OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch with INVALID_PRODUCER_EPOCH, all
//! through `errors::storage_error`.
//!
//! A producer over its `producer_byte_rate` quota gets `throttle_time_ms`
//! and its connection is muted that long (`crate::quotas`).

use std::ops::RangeInclusive;

use fjord_model::{limits, ErrorCode, PartitionIndex, ProducerEpoch, ProducerId, TopicPartition};
use fjord_partition::{Acks, VerificationGuard};
use fjord_protocol::kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};

use super::{str_bytes, Ctx, Pending};
use crate::errors;
use crate::quotas::QuotaKind;
use crate::security::authorizer::{Operation, ResourceType};
use crate::state::now_ms;

/// Versions we decode and answer.
pub const VERSIONS: RangeInclusive<i16> = 3..=13;
/// Versions listed in ApiVersions.
pub const ADVERTISED: RangeInclusive<i16> = 0..=13;
/// First version that names topics by id.
const TOPIC_IDS_FROM: i16 = 13;
/// First version with `current_leader` and `node_endpoints` (KIP-951).
const CURRENT_LEADER_FROM: i16 = 10;
/// First version with per-record errors (`record_errors`).
const RECORD_ERRORS_FROM: i16 = 8;
/// First version whose transactional batches join their transaction
/// implicitly (transaction version 2).
const IMPLICIT_ADD_FROM: i16 = 12;
/// First version whose clients know TRANSACTION_ABORTABLE (KIP-890; Kafka's
/// `GENERIC_ERROR_SUPPORTED` operation).
const TRANSACTION_ABORTABLE_FROM: i16 = 11;

fn partition_error(
    index: i32,
    code: ErrorCode,
    message: Option<String>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.0)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(str_bytes))
}

/// Kafka refuses records without a key on compacted topics (INVALID_RECORD),
/// naming each of them in `record_errors` (its index in the batch; clients fail
/// those records with INVALID_RECORD and the rest of the batch with another
/// error). Batches that do not parse are left to the storage engine's validation.
fn keyless_records(records: Option<&[u8]>) -> Vec<BatchIndexAndErrorMessage> {
    let mut out = Vec::new();
    let Some(records) = records else {
        return out;
    };
    for (_, range) in fjord_records::batches(records).map_while(Result::ok) {
        let mut index = 0i32;
        let _ = fjord_records::visit_records_bounded(
            &records[range],
            limits::DECOMPRESSED_BATCH_BYTES_MAX,
            |r| {
                if r.key.is_none() {
                    out.push(
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(index)
                            .with_batch_index_error_message(Some(str_bytes(
                                "Compacted topic cannot accept message without key.",
                            ))),
                    );
                }
                index = index.saturating_add(1);
            },
        );
    }
    out
}

/// A Produce's transactional producer and the partitions whose
/// verification started, with their guards.
type Unverified = (
    ProducerId,
    ProducerEpoch,
    Vec<(TopicPartition, VerificationGuard)>,
);

/// The transactional batches of a Produce whose producer's transaction is
/// not open on their partition at this leader: that producer, and each such
/// partition with the verification started for it
/// (`Partition::start_verification`). `None` when there are none.
fn unverified(ctx: &Ctx, req: &ProduceRequest, now: i64) -> Option<Unverified> {
    let mut producer = None;
    let mut parts = Vec::new();
    for td in &req.topic_data {
        let topic = if ctx.api_version >= TOPIC_IDS_FROM {
            ctx.broker.topic_by_id(td.topic_id)
        } else {
            ctx.broker.topic(&td.name)
        };
        let Some(topic) = topic else { continue };
        for pd in &td.partition_data {
            let Some(p) = topic.partition(pd.index) else {
                continue;
            };
            // A partition led elsewhere is answered NOT_LEADER_OR_FOLLOWER by
            // the append and is never verified nor added: Kafka's leader
            // checks leadership before it asks the coordinator
            // (`Partition.maybeStartTransactionVerification`).
            if p.replica_state().leader != p.local() {
                continue;
            }
            let Some(records) = pd.records.as_deref() else {
                continue;
            };
            let Some(Ok((h, _))) = fjord_records::batches(records).next() else {
                continue;
            };
            if !h.is_transactional() || h.producer_id < 0 {
                continue;
            }
            let (pid, epoch) = (ProducerId(h.producer_id), ProducerEpoch(h.producer_epoch));
            // Kafka: "Transactional records contained more than one producer
            // ID"; a second producer's batches are left to the append's check.
            if producer.is_some_and(|first| first != (pid, epoch)) {
                continue;
            }
            let implicit_add = ctx.api_version >= IMPLICIT_ADD_FROM;
            let started = p.start_verification(pid, epoch, h.base_sequence, implicit_add, now);
            let Some(guard) = started else {
                continue;
            };
            producer.get_or_insert((pid, epoch));
            parts.push((
                TopicPartition {
                    topic: topic.name.clone(),
                    partition: PartitionIndex(pd.index),
                },
                guard,
            ));
        }
    }
    let (pid, epoch) = producer?;
    Some((pid, epoch, parts))
}

/// A refused verification or implicit add as the producer of a Produce
/// `version` is answered (Kafka's leader: `AddPartitionsToTxnManager` then
/// `ReplicaManager`): PRODUCER_FENCED as INVALID_PRODUCER_EPOCH;
/// TRANSACTION_ABORTABLE as INVALID_TXN_STATE to versions before it was
/// known (v10 and older); a busy, moving or unreachable coordinator as the
/// retriable NOT_ENOUGH_REPLICAS, which old clients retry without a
/// metadata refresh.
fn produce_code(version: i16, code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::PRODUCER_FENCED => ErrorCode::INVALID_PRODUCER_EPOCH,
        ErrorCode::TRANSACTION_ABORTABLE if version < TRANSACTION_ABORTABLE_FROM => {
            ErrorCode::INVALID_TXN_STATE
        }
        ErrorCode::CONCURRENT_TRANSACTIONS
        | ErrorCode::NETWORK_EXCEPTION
        | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
        | ErrorCode::COORDINATOR_NOT_AVAILABLE
        | ErrorCode::NOT_COORDINATOR => ErrorCode::NOT_ENOUGH_REPLICAS,
        code => code,
    }
}

/// When a Produce v12+ asks its transaction's coordinator again to add its
/// partitions (Kafka's `ReplicaManager.maybeRetryOnConcurrentTransactions`,
/// for the add-partition operation only, not for a v11-and-older
/// verification): an answer of CONCURRENT_TRANSACTIONS (the producer's
/// previous transaction is still writing its markers) is retried after
/// `add.partitions.to.txn.retry.backoff.ms` until
/// `add.partitions.to.txn.retry.backoff.max.ms` (at most Kafka's
/// `request.timeout.ms`) have passed since the first attempt; then the
/// producer gets it as NOT_ENOUGH_REPLICAS and retries itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConcurrentRetry {
    backoff_ms: u64,
    max_ms: u64,
}

impl ConcurrentRetry {
    fn of(config: &crate::config::BrokerConfig) -> ConcurrentRetry {
        ConcurrentRetry {
            backoff_ms: config.add_partitions_to_txn_retry_backoff_ms,
            max_ms: config
                .add_partitions_to_txn_retry_backoff_max_ms
                .min(limits::REQUEST_TIMEOUT_MS_DEFAULT),
        }
    }

    /// After an attempt answered `code`, `elapsed_ms` after the first one
    /// started: how long to wait before the next, or `None` to answer.
    fn wait_ms(self, code: ErrorCode, elapsed_ms: u64) -> Option<u64> {
        (code == ErrorCode::CONCURRENT_TRANSACTIONS && elapsed_ms < self.max_ms)
            .then_some(self.backoff_ms)
    }
}

/// The message of a refused verification (Kafka's for INVALID_TXN_STATE).
fn refusal_message(code: ErrorCode) -> String {
    match code {
        ErrorCode::INVALID_TXN_STATE => "Partition was not added to the transaction".into(),
        ErrorCode::NOT_ENOUGH_REPLICAS => {
            "Unable to verify the partition has been added to the transaction".into()
        }
        code => format!("the transaction coordinator refused the partition: {code:?}"),
    }
}

pub fn handle(ctx: Ctx, req: ProduceRequest) -> Pending {
    let verify = ctx.broker.transaction_verification();
    let implicit_add = ctx.api_version >= IMPLICIT_ADD_FROM;
    let transactional_id = req
        .transactional_id
        .as_ref()
        .map(|s| s.to_string())
        .filter(|_| (verify || implicit_add) && Acks::from_wire(req.acks).is_some());
    let Some(transactional_id) = transactional_id else {
        return append_all(ctx, req, &[], &[]);
    };
    let Some((pid, epoch, parts)) = unverified(&ctx, &req, now_ms()) else {
        return append_all(ctx, req, &[], &[]);
    };
    let (appended, barrier) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let partitions: Vec<TopicPartition> = parts.iter().map(|(tp, _)| tp.clone()).collect();
        let codes: Vec<ErrorCode> = match ctx.broker.txns.get().cloned() {
            // v12+ (transaction version 2): the partitions join the
            // transaction here (Kafka's `ADD_PARTITION` operation).
            Some(txns) if implicit_add => {
                let retry = ConcurrentRetry::of(&ctx.broker.config);
                let started = tokio::time::Instant::now();
                let code = loop {
                    let code = txns
                        .add_implicitly(
                            &ctx.broker,
                            &transactional_id,
                            pid,
                            epoch,
                            partitions.clone(),
                        )
                        .await;
                    let elapsed_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    match retry.wait_ms(code, elapsed_ms) {
                        Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
                        None => break code,
                    }
                };
                vec![code; parts.len()]
            }
            // Older versions: their clients added the partitions; the
            // coordinator is asked whether they did (KIP-890 part 1).
            Some(txns) => {
                txns.verify_partitions(&ctx.broker, &transactional_id, pid, epoch, &partitions)
                    .await
            }
            None => vec![ErrorCode::COORDINATOR_NOT_AVAILABLE; parts.len()],
        };
        let mut refused = Vec::new();
        let mut guards = Vec::new();
        for ((tp, guard), code) in parts.into_iter().zip(codes) {
            if code.is_none() {
                guards.push((tp, guard));
            } else {
                tracing::debug!(%transactional_id, topic = %tp.topic, partition = tp.partition.0, "transaction verification refused: {code:?}");
                refused.push((tp, produce_code(ctx.api_version, code)));
            }
        }
        let pending = append_all(ctx, req, &refused, &guards);
        let _ = appended.send(());
        match pending {
            Pending::Ready(r) => r,
            Pending::Task(t) | Pending::Ordered(t, _) => t.await.ok().flatten(),
            Pending::Stream(_) => unreachable!("Produce answers without file ranges"),
        }
    });
    Pending::Ordered(task, Some(barrier))
}

/// Append every partition's records (those in `refused` get its code and
/// nothing appended; those in `guards` were verified with the transaction
/// coordinator) and answer.
fn append_all(
    ctx: Ctx,
    req: ProduceRequest,
    refused: &[(TopicPartition, ErrorCode)],
    guards: &[(TopicPartition, VerificationGuard)],
) -> Pending {
    let refused_code = |name: &str, index: i32| {
        refused
            .iter()
            .find(|(tp, _)| tp.topic == name && tp.partition.0 == index)
            .map(|(_, code)| *code)
    };
    let guard = |name: &str, index: i32| {
        guards
            .iter()
            .find(|(tp, _)| tp.topic == name && tp.partition.0 == index)
            .map(|(_, g)| *g)
    };
    let verify = ctx.broker.transaction_verification();
    let acks = Acks::from_wire(req.acks);
    let now = now_ms();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index in response, commit waiter) for acks=all.
    let mut to_commit = Vec::new();
    let by_id = ctx.api_version >= TOPIC_IDS_FROM;
    // Leaders named in `current_leader` answers (KIP-951).
    let mut named_leaders = std::collections::BTreeSet::new();
    for td in req.topic_data {
        let topic = if by_id {
            ctx.broker.topic_by_id(td.topic_id)
        } else {
            ctx.broker.topic(&td.name)
        };
        let unknown_topic = if by_id && topic.is_none() {
            ErrorCode::UNKNOWN_TOPIC_ID
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        };
        let name = topic
            .as_ref()
            .map_or_else(|| td.name.0.to_string(), |t| t.name.clone());
        let compacted = topic.as_ref().is_some_and(|t| {
            t.settings
                .read()
                .cleanup_policy
                .split(',')
                .any(|p| p.trim() == "compact")
        });
        // WRITE on the topic (an unknown topic id stays unknown).
        let denied =
            (topic.is_some() || !by_id) && !ctx.may(ResourceType::Topic, &name, Operation::Write);
        let mut partitions = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let target = topic.as_ref().and_then(|t| t.partition(pd.index));
            let result = match (acks, target) {
                (None, _) => partition_error(pd.index, ErrorCode::INVALID_REQUIRED_ACKS, None),
                (Some(_), _) if denied => {
                    partition_error(pd.index, ErrorCode::TOPIC_AUTHORIZATION_FAILED, None)
                }
                (Some(_), None) => partition_error(pd.index, unknown_topic, None),
                (Some(_), Some(_)) if refused_code(&name, pd.index).is_some() => {
                    let code = refused_code(&name, pd.index).unwrap_or(ErrorCode::NONE);
                    partition_error(pd.index, code, Some(refusal_message(code)))
                }
                (Some(acks), Some(p)) => {
                    let keyless = if compacted {
                        keyless_records(pd.records.as_deref())
                    } else {
                        Vec::new()
                    };
                    if !keyless.is_empty() {
                        let e = partition_error(
                            pd.index,
                            ErrorCode::INVALID_RECORD,
                            Some("compacted topic cannot accept a record without a key".into()),
                        );
                        if ctx.api_version >= RECORD_ERRORS_FROM {
                            e.with_record_errors(keyless)
                        } else {
                            e
                        }
                    } else {
                        let records = pd.records.unwrap_or_default();
                        // Not copied: the request's bytes go to the file as they are,
                        // behind patched batch headers (`Partition::append_shared`).
                        let guard = guard(&name, pd.index);
                        match p.append_client(&records, acks, now, verify, guard) {
                            Ok(appended) => {
                                let r = appended.result;
                                if let (Some(t), false) = (&topic, r.duplicate) {
                                    if ctx.broker.metrics.enabled() {
                                        t.stats.produced(records.len(), r.records_count);
                                    }
                                }
                                if acks == Acks::All {
                                    to_commit.push((
                                        topics.len(),
                                        partitions.len(),
                                        appended.committed,
                                    ));
                                }
                                PartitionProduceResponse::default()
                                    .with_index(pd.index)
                                    .with_base_offset(r.base_offset.0)
                                    .with_log_append_time_ms(r.log_append_time_ms)
                                    .with_log_start_offset(r.log_start_offset.0)
                            }
                            Err(e) => {
                                let (code, msg) = errors::partition_error(&e);
                                tracing::debug!(topic = %name, partition = pd.index, "produce rejected: {msg}");
                                let r = partition_error(pd.index, code, Some(msg));
                                let facts = p.replica_state();
                                if code == ErrorCode::NOT_LEADER_OR_FOLLOWER
                                    && ctx.api_version >= CURRENT_LEADER_FROM
                                    && facts.leader.0 >= 0
                                {
                                    named_leaders.insert(facts.leader);
                                    r.with_current_leader(
                                        LeaderIdAndEpoch::default()
                                            .with_leader_id(BrokerId(facts.leader.0))
                                            .with_leader_epoch(facts.leader_epoch.0),
                                    )
                                } else {
                                    r
                                }
                            }
                        }
                    }
                }
            };
            partitions.push(result);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_topic_id(td.topic_id)
                .with_partition_responses(partitions),
        );
    }
    // The producer byte-rate quota counts the request's bytes (Kafka's
    // `request.sizeInBytes`); over it the connection is muted, acks=0 too.
    let throttle_ms = ctx.quota_throttle_ms(QuotaKind::Produce, ctx.request_bytes as f64);
    if acks == Some(Acks::None) {
        return Pending::Ready(None);
    }
    let endpoints = if named_leaders.is_empty() {
        Vec::new()
    } else {
        ctx.live_brokers()
            .into_iter()
            .filter(|b| named_leaders.contains(&b.id))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(b.id.0))
                    .with_host(str_bytes(b.host))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.map(str_bytes))
            })
            .collect()
    };
    let mut resp = ProduceResponse::default()
        .with_responses(topics)
        .with_throttle_time_ms(throttle_ms)
        .with_node_endpoints(endpoints);
    if to_commit.is_empty() {
        return Pending::Ready(ctx.respond(&resp));
    }
    Pending::later(async move {
        // One waiter per partition; group commit shares the fdatasync among them.
        for (t, p, waiter) in to_commit {
            if let Err(e) = waiter.await {
                let (code, msg) = errors::partition_error(&e);
                tracing::error!("durable append failed: {msg}");
                let pr = &mut resp.responses[t].partition_responses[p];
                *pr = partition_error(pr.index, code, Some(msg));
            }
        }
        ctx.respond(&resp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's defaults (20 ms, 100 ms): a CONCURRENT_TRANSACTIONS answer
    /// is asked again every 20 ms while less than 100 ms have passed (six
    /// attempts, at 0, 20, ..., 100 ms, when the coordinator stays busy);
    /// any other answer, or that one once the time is up, goes to the
    /// producer.
    #[test]
    fn a_busy_coordinator_is_asked_again_for_a_while() {
        let retry = ConcurrentRetry::of(&crate::config::BrokerConfig::default());
        assert_eq!(
            retry,
            ConcurrentRetry {
                backoff_ms: 20,
                max_ms: 100
            }
        );
        let busy = ErrorCode::CONCURRENT_TRANSACTIONS;
        let mut elapsed = 0;
        let mut attempts = 1;
        while let Some(wait) = retry.wait_ms(busy, elapsed) {
            elapsed += wait;
            attempts += 1;
        }
        assert_eq!((attempts, elapsed), (6, 100));
        for code in [
            ErrorCode::NONE,
            ErrorCode::PRODUCER_FENCED,
            ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
        ] {
            assert_eq!(retry.wait_ms(code, 0), None, "{code:?}");
        }
        // Bounded by Kafka's request.timeout.ms default.
        let config = crate::config::BrokerConfig {
            add_partitions_to_txn_retry_backoff_max_ms: 60_000,
            ..crate::config::BrokerConfig::default()
        };
        assert_eq!(ConcurrentRetry::of(&config).max_ms, 30_000);
    }
}
