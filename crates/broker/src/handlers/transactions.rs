//! The transaction APIs, answered by the transaction coordinator
//! (`crate::txns`): AddPartitionsToTxn (v0-3: one transaction; v4-5: a batch
//! of them, or a broker's `verify_only` check), AddOffsetsToTxn, EndTxn,
//! ListTransactions and DescribeTransactions.
//!
//! Transaction version 2 (KIP-890; clients use it when `transaction.version`
//! 2 is finalized): EndTxn v5+ ends the transaction with the epoch bumped and
//! answers the producer id and epoch to continue with; AddPartitionsToTxn v5+
//! without `verify_only` comes from a partition leader that adds a partition
//! for a Produce v12+ or TxnOffsetCommit v5+ (Kafka's
//! `AddPartitionsToTxnManager`), and is a version 2 transition too. Older
//! versions are transaction version 0/1 requests, served as before on the
//! same node.
//!
//! Until `__transaction_state` exists (it is created on the first
//! transactional InitProducerId or FindCoordinator) no transaction exists:
//! ListTransactions lists none, DescribeTransactions answers
//! TRANSACTIONAL_ID_NOT_FOUND, and the other requests answer
//! COORDINATOR_NOT_AVAILABLE. PRODUCER_FENCED is answered as
//! INVALID_PRODUCER_EPOCH to versions from before it existed (KIP-588), as
//! Kafka does.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, PartitionIndex, ProducerEpoch, ProducerId as Pid, TopicPartition};
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use fjord_protocol::kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState,
};
use fjord_protocol::kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use fjord_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId,
};

use super::{str_bytes, Ctx, Pending};
use crate::security::authorizer::{Operation, ResourceType};

pub const LIST_VERSIONS: RangeInclusive<i16> = 0..=2;
pub const DESCRIBE_VERSIONS: RangeInclusive<i16> = 0..=0;
pub const ADD_PARTITIONS_VERSIONS: RangeInclusive<i16> = 0..=5;
pub const ADD_OFFSETS_VERSIONS: RangeInclusive<i16> = 0..=4;
pub const END_TXN_VERSIONS: RangeInclusive<i16> = 0..=5;

/// The first version of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
/// that knows PRODUCER_FENCED.
const PRODUCER_FENCED_FROM: i16 = 2;
/// AddPartitionsToTxn v4+: transactions in a batch.
const BATCHED_FROM: i16 = 4;
/// AddPartitionsToTxn v5+ (a partition leader's add) and EndTxn v5+ are
/// transaction version 2 requests (Kafka's `TransactionVersion` of a request).
const ADD_PARTITIONS_TV2_FROM: i16 = 5;
const END_TXN_TV2_FROM: i16 = 5;

fn fenced_for(version: i16, code: ErrorCode) -> ErrorCode {
    if code == ErrorCode::PRODUCER_FENCED && version < PRODUCER_FENCED_FROM {
        ErrorCode::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

fn reply_code(reply: Result<fjord_txn::Reply, ErrorCode>) -> ErrorCode {
    match reply {
        Ok(fjord_txn::Reply::Done(e) | fjord_txn::Reply::Ended { error: e, .. }) => e,
        Ok(fjord_txn::Reply::InitProducerId { error, .. }) => error,
        Err(e) => e,
    }
}

/// AddPartitionsToTxn `verify_only` on this node's coordinator (KIP-890;
/// `fjord_txn::TxnCoordinator::verify`): a code per partition of
/// `partitions`, NONE for those in the producer's transaction. Also the
/// check of TxnOffsetCommit (the group's offsets partition must be in it)
/// and of a partition leader here before a transactional append. A shard
/// that refuses (loading, not served here) answers its code.
pub(crate) fn verify(
    txns: &std::sync::Arc<crate::txns::Txns>,
    transactional_id: &str,
    producer_id: Pid,
    producer_epoch: ProducerEpoch,
    partitions: &[TopicPartition],
) -> Vec<ErrorCode> {
    let producer = fjord_txn::TxnProducer {
        transactional_id,
        producer_id,
        producer_epoch,
        transaction_version: 0,
    };
    txns.read(transactional_id, |c| c.verify(&producer, partitions))
        .unwrap_or_else(|e| vec![e; partitions.len()])
}

/// One transaction of an AddPartitionsToTxn request.
struct AddTxn {
    transactional_id: String,
    producer_id: Pid,
    producer_epoch: ProducerEpoch,
    verify_only: bool,
    /// (topic, partitions) as requested.
    topics: Vec<(String, Vec<i32>)>,
}

fn topic_results(
    topics: &[(String, Vec<i32>)],
    code: impl Fn(&str, i32) -> ErrorCode,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(str_bytes(name.clone())))
                .with_results_by_partition(
                    parts
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code(name, p).0)
                        })
                        .collect(),
                )
        })
        .collect()
}

/// The answer for one transaction: per topic and partition.
async fn add_one(ctx: &Ctx, txn: AddTxn) -> Vec<AddPartitionsToTxnTopicResult> {
    let version = ctx.api_version;
    // Partitions of topics that do not exist: UNKNOWN_TOPIC_OR_PARTITION, and
    // nothing is added (the others: OPERATION_NOT_ATTEMPTED), as Kafka does.
    let exists = |name: &str, p: i32| {
        ctx.broker
            .topic(name)
            .is_some_and(|t| p >= 0 && p < t.partition_count())
    };
    let unknown = txn
        .topics
        .iter()
        .any(|(name, parts)| parts.iter().any(|&p| !exists(name, p)));
    if unknown {
        return topic_results(&txn.topics, |name, p| {
            if exists(name, p) {
                ErrorCode::OPERATION_NOT_ATTEMPTED
            } else {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            }
        });
    }
    let Some(txns) = ctx.broker.txns.get().cloned() else {
        return topic_results(&txn.topics, |_, _| ErrorCode::COORDINATOR_NOT_AVAILABLE);
    };
    let partitions: Vec<TopicPartition> = txn
        .topics
        .iter()
        .flat_map(|(name, parts)| {
            parts.iter().map(move |&p| TopicPartition {
                topic: name.clone(),
                partition: PartitionIndex(p),
            })
        })
        .collect();
    if txn.verify_only {
        // KIP-890's check by a partition leader: is each partition in the
        // producer's ongoing transaction?
        let codes = verify(
            &txns,
            &txn.transactional_id,
            txn.producer_id,
            txn.producer_epoch,
            &partitions,
        );
        let code = |name: &str, p: i32| {
            partitions
                .iter()
                .position(|tp| tp.topic == name && tp.partition.0 == p)
                .and_then(|i| codes.get(i).copied())
                .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR)
        };
        return topic_results(&txn.topics, code);
    }
    let id = txn.transactional_id.clone();
    let (pid, epoch) = (txn.producer_id, txn.producer_epoch);
    let transaction_version = if version >= ADD_PARTITIONS_TV2_FROM {
        fjord_txn::TRANSACTION_VERSION_EPOCH_BUMP
    } else {
        0
    };
    let reply = txns
        .request(&txn.transactional_id, move |c, token, now, out| {
            let producer = fjord_txn::TxnProducer {
                transactional_id: &id,
                producer_id: pid,
                producer_epoch: epoch,
                transaction_version,
            };
            c.add_partitions(token, &producer, &partitions, now, out)
        })
        .await;
    let code = fenced_for(version, reply_code(reply));
    topic_results(&txn.topics, |_, _| code)
}

pub fn add_partitions(ctx: Ctx, req: AddPartitionsToTxnRequest) -> Pending {
    let batched = ctx.api_version >= BATCHED_FROM;
    let txns: Vec<AddTxn> = if batched {
        req.transactions
            .into_iter()
            .map(|t| AddTxn {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: Pid(t.producer_id.0),
                producer_epoch: ProducerEpoch(t.producer_epoch),
                verify_only: t.verify_only,
                topics: t
                    .topics
                    .into_iter()
                    .map(|tp| (tp.name.0.to_string(), tp.partitions))
                    .collect(),
            })
            .collect()
    } else {
        vec![AddTxn {
            transactional_id: req.v3_and_below_transactional_id.0.to_string(),
            producer_id: Pid(req.v3_and_below_producer_id.0),
            producer_epoch: ProducerEpoch(req.v3_and_below_producer_epoch),
            verify_only: false,
            topics: req
                .v3_and_below_topics
                .into_iter()
                .map(|tp| (tp.name.0.to_string(), tp.partitions))
                .collect(),
        }]
    };
    Pending::later(async move {
        let mut by_txn = Vec::with_capacity(txns.len());
        for t in txns {
            let id = t.transactional_id.clone();
            by_txn.push((id, add_one(&ctx, t).await));
        }
        let mut resp = AddPartitionsToTxnResponse::default();
        if batched {
            resp = resp.with_results_by_transaction(
                by_txn
                    .into_iter()
                    .map(|(id, results)| {
                        AddPartitionsToTxnResult::default()
                            .with_transactional_id(TransactionalId(str_bytes(id)))
                            .with_topic_results(results)
                    })
                    .collect(),
            );
        } else if let Some((_, results)) = by_txn.pop() {
            resp = resp.with_results_by_topic_v3_and_below(results);
        }
        ctx.respond(&resp)
    })
}

pub fn add_offsets(ctx: Ctx, req: AddOffsetsToTxnRequest) -> Pending {
    let Some(txns) = ctx.broker.txns.get().cloned() else {
        return Pending::Ready(
            ctx.respond(
                &AddOffsetsToTxnResponse::default()
                    .with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0),
            ),
        );
    };
    // The group's `__consumer_offsets` partition joins the transaction.
    let offsets_partitions = ctx
        .broker
        .topic(crate::groups::OFFSETS_TOPIC)
        .map_or(fjord_model::limits::OFFSETS_TOPIC_PARTITIONS_DEFAULT, |t| {
            t.partition_count()
        });
    let offsets_partition = TopicPartition {
        topic: crate::groups::OFFSETS_TOPIC.to_string(),
        partition: PartitionIndex(fjord_group::offsets_partition_for(
            &req.group_id.0,
            offsets_partitions,
        )),
    };
    let id = req.transactional_id.0.to_string();
    let (pid, epoch) = (Pid(req.producer_id.0), ProducerEpoch(req.producer_epoch));
    let call = txns.request(&id.clone(), move |c, token, now, out| {
        let producer = fjord_txn::TxnProducer {
            transactional_id: &id,
            producer_id: pid,
            producer_epoch: epoch,
            transaction_version: 0,
        };
        c.add_offsets(token, &producer, offsets_partition, now, out)
    });
    Pending::later(async move {
        let code = fenced_for(ctx.api_version, reply_code(call.await));
        ctx.respond(&AddOffsetsToTxnResponse::default().with_error_code(code.0))
    })
}

pub fn end_txn(ctx: Ctx, req: EndTxnRequest) -> Pending {
    let fail = |code: ErrorCode| {
        EndTxnResponse::default()
            .with_error_code(code.0)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let Some(txns) = ctx.broker.txns.get().cloned() else {
        return Pending::Ready(ctx.respond(&fail(ErrorCode::COORDINATOR_NOT_AVAILABLE)));
    };
    let id = req.transactional_id.0.to_string();
    let (pid, epoch) = (Pid(req.producer_id.0), ProducerEpoch(req.producer_epoch));
    let result = if req.committed {
        fjord_txn::TxnResult::Commit
    } else {
        fjord_txn::TxnResult::Abort
    };
    let transaction_version = if ctx.api_version >= END_TXN_TV2_FROM {
        fjord_txn::TRANSACTION_VERSION_EPOCH_BUMP
    } else {
        0
    };
    Pending::later(async move {
        // A version 2 end whose epoch is exhausted moves the transactional id
        // to a fresh producer id: taken off the shard's lock (a new block of
        // ids is committed to the metadata log), only when it will be needed.
        let exhausted = transaction_version > 0
            && txns
                .read(&id, |c| c.describe(std::slice::from_ref(&id)))
                .ok()
                .and_then(|mut d| d.pop())
                .is_some_and(|d| d.error.is_none() && d.producer_epoch.0 >= i16::MAX - 1);
        let mut fresh = if exhausted {
            let broker = ctx.broker.clone();
            Some(
                tokio::task::spawn_blocking(move || broker.next_producer_id())
                    .await
                    .map_err(|_| ErrorCode::UNKNOWN_SERVER_ERROR)
                    .and_then(|r| r.map_err(|e| crate::errors::state_error(&e).0)),
            )
        } else {
            None
        };
        let reply = txns
            .request(&id.clone(), move |c, token, now, out| {
                let producer = fjord_txn::TxnProducer {
                    transactional_id: &id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    transaction_version,
                };
                // Asked for without one taken: the client retries, and the
                // retry takes one.
                let mut next = move || {
                    fresh
                        .take()
                        .unwrap_or(Err(ErrorCode::COORDINATOR_NOT_AVAILABLE))
                };
                c.end_txn(token, &producer, result, now, &mut next, out)
            })
            .await;
        let resp = match reply {
            Ok(fjord_txn::Reply::Ended {
                error,
                producer_id,
                producer_epoch,
            }) if error.is_none() => EndTxnResponse::default()
                .with_producer_id(ProducerId(producer_id.0))
                .with_producer_epoch(producer_epoch.0),
            other => fail(fenced_for(ctx.api_version, reply_code(other))),
        };
        ctx.respond(&resp)
    })
}

/// Java's `String.matches` for the patterns ListTransactions v2 carries,
/// as far as Fjord understands them: literal characters, `.` (any one
/// character), `.*` (any run) and `\` escapes. `None` for a pattern that uses
/// more of the regular-expression language.
fn matches_pattern(pattern: &str, s: &str) -> Option<bool> {
    #[derive(Clone, Copy)]
    enum Tok {
        Lit(char),
        Any,
        AnyRun,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Tok::Lit(chars.next()?)),
            '.' if chars.peek() == Some(&'*') => {
                chars.next();
                toks.push(Tok::AnyRun);
            }
            '.' => toks.push(Tok::Any),
            '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => return None,
            c => toks.push(Tok::Lit(c)),
        }
    }
    let text: Vec<char> = s.chars().collect();
    // Classic wildcard matching with backtracking over the last `.*`.
    let (mut t, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < text.len() {
        match toks.get(t) {
            Some(Tok::Lit(c)) if *c == text[i] => {
                t += 1;
                i += 1;
            }
            Some(Tok::Any) => {
                t += 1;
                i += 1;
            }
            Some(Tok::AnyRun) => {
                star = Some((t, i));
                t += 1;
            }
            _ => match star {
                Some((st, si)) => {
                    t = st + 1;
                    i = si + 1;
                    star = Some((st, si + 1));
                }
                None => return Some(false),
            },
        }
    }
    Some(toks[t..].iter().all(|k| matches!(k, Tok::AnyRun)))
}

pub fn list(ctx: &Ctx, req: ListTransactionsRequest) -> Option<BytesMut> {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for s in req.state_filters {
        match fjord_txn::TxnState::parse(s.as_str()) {
            Some(state) => states.push(state),
            None => unknown.push(s),
        }
    }
    let pattern = req
        .transactional_id_pattern
        .map(|p| p.to_string())
        .filter(|p| !p.is_empty());
    if let Some(p) = &pattern {
        if matches_pattern(p, "").is_none() {
            return ctx.respond(
                &ListTransactionsResponse::default()
                    .with_error_code(ErrorCode::INVALID_REGULAR_EXPRESSION.0)
                    .with_unknown_state_filters(unknown),
            );
        }
    }
    let filter = fjord_txn::ListFilter {
        states,
        producer_ids: req
            .producer_id_filters
            .into_iter()
            .map(|p| Pid(p.0))
            .collect(),
        duration_ms_min: if ctx.api_version >= 1 {
            req.duration_filter
        } else {
            -1
        },
    };
    let mut error = ErrorCode::NONE;
    let mut listed = Vec::new();
    if let Some(txns) = ctx.broker.txns.loaded().cloned() {
        let now = crate::state::now_ms();
        for shard in txns.read_all(|c| c.list(&filter, now)) {
            match shard {
                Ok(l) => listed.extend(l),
                Err(e) => error = e,
            }
        }
    }
    let states = listed
        .into_iter()
        .filter(|t| {
            pattern
                .as_deref()
                .is_none_or(|p| matches_pattern(p, &t.transactional_id) == Some(true))
        })
        // Kafka lists only the ids the principal may DESCRIBE.
        .filter(|t| {
            ctx.may(
                ResourceType::TransactionalId,
                &t.transactional_id,
                Operation::Describe,
            )
        })
        .map(|t| {
            Listed::default()
                .with_transactional_id(TransactionalId(str_bytes(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id.0))
                .with_transaction_state(str_bytes(t.state.as_str()))
        })
        .collect();
    ctx.respond(
        &ListTransactionsResponse::default()
            .with_error_code(error.0)
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states),
    )
}

pub fn describe(ctx: &Ctx, req: DescribeTransactionsRequest) -> Option<BytesMut> {
    let txns = ctx.broker.txns.loaded().cloned();
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let not_found = |code: ErrorCode| {
                TransactionState::default()
                    .with_error_code(code.0)
                    .with_transactional_id(id.clone())
                    .with_producer_id(ProducerId(0))
            };
            // Kafka: DESCRIBE on the transactional id, before its state.
            if !ctx.may(ResourceType::TransactionalId, &id.0, Operation::Describe) {
                return not_found(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
            }
            let Some(txns) = &txns else {
                return not_found(ErrorCode::TRANSACTIONAL_ID_NOT_FOUND);
            };
            let key = id.0.to_string();
            let d = match txns.read(&key, |c| c.describe(std::slice::from_ref(&key))) {
                Ok(mut d) => d.pop(),
                Err(e) => return not_found(e),
            };
            let Some(d) = d.filter(|d| d.error.is_none()) else {
                return not_found(ErrorCode::TRANSACTIONAL_ID_NOT_FOUND);
            };
            let mut topics: Vec<TopicData> = Vec::new();
            // Only the partitions of topics the principal may DESCRIBE.
            for tp in d
                .partitions
                .iter()
                .filter(|tp| ctx.may(ResourceType::Topic, &tp.topic, Operation::Describe))
            {
                match topics.last_mut() {
                    Some(t) if t.topic.0.as_str() == tp.topic => t.partitions.push(tp.partition.0),
                    _ => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(str_bytes(tp.topic.clone())))
                            .with_partitions(vec![tp.partition.0]),
                    ),
                }
            }
            TransactionState::default()
                .with_transactional_id(id)
                .with_transaction_state(str_bytes(d.state.as_str()))
                .with_transaction_timeout_ms(d.timeout_ms)
                .with_transaction_start_time_ms(d.start_ms)
                .with_producer_id(ProducerId(d.producer_id.0))
                .with_producer_epoch(d.producer_epoch.0)
                .with_topics(topics)
        })
        .collect();
    ctx.respond(&DescribeTransactionsResponse::default().with_transaction_states(states))
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn patterns_match_as_java_regex_does_for_the_subset_understood() {
        assert_eq!(matches_pattern(".*", "anything"), Some(true));
        assert_eq!(matches_pattern("app-.*", "app-1"), Some(true));
        assert_eq!(matches_pattern("app-.*", "other"), Some(false));
        assert_eq!(matches_pattern("a.c", "abc"), Some(true));
        assert_eq!(matches_pattern("a.c", "abbc"), Some(false));
        assert_eq!(matches_pattern("a\\.c", "abc"), Some(false));
        assert_eq!(matches_pattern("a\\.c", "a.c"), Some(true));
        assert_eq!(matches_pattern(".*-x-.*", "a-x-b"), Some(true));
        assert_eq!(matches_pattern("exact", "exact"), Some(true));
        assert_eq!(matches_pattern("exact", "exactly"), Some(false));
        assert_eq!(matches_pattern("[a-z]+", "abc"), None);
    }
}
