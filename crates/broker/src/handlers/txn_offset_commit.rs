//! TxnOffsetCommit: versions 0..=5. A transactional producer commits
//! a consumer group's offsets inside its transaction (Kafka's
//! `sendOffsetsToTransaction`): they are written to the group's
//! `__consumer_offsets` partition as a transactional batch of the producer,
//! kept pending by the group coordinator, and become the group's committed
//! offsets only when the transaction's COMMIT marker is written there (an
//! ABORT drops them); OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT meanwhile.
//!
//! Checks, in Kafka's order: WRITE on the transactional id and READ on the
//! group (before dispatch, `authz`); partitions of topics the principal may
//! not READ get TOPIC_AUTHORIZATION_FAILED; an empty group id is
//! INVALID_GROUP_ID;
//! partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION; the group's
//! offsets partition must be in the producer's ongoing transaction
//! (AddOffsetsToTxn put it there), asked of the transaction coordinator as
//! AddPartitionsToTxn's `verify_only` does (a stale epoch is
//! INVALID_PRODUCER_EPOCH, another producer id INVALID_PRODUCER_ID_MAPPING,
//! a partition not in the transaction TRANSACTION_ABORTABLE from v4, the
//! first version whose clients know it (KIP-890), and INVALID_TXN_STATE
//! before, as Kafka's group coordinator answers); then the group's
//! checks (generation, member id, group instance id from v3), as
//! OffsetCommit's. Nothing is written when any check fails.
//!
//! v5 is transaction version 2 (KIP-890): the client sends no
//! AddOffsetsToTxn, and the group's offsets partition is added to the
//! transaction here (`Txns::add_implicitly`: AddPartitionsToTxn v5 when
//! another broker coordinates the transactional id) instead of verified; a
//! busy or moving transaction coordinator is answered
//! COORDINATOR_NOT_AVAILABLE (the client retries).

use std::ops::RangeInclusive;

use fjord_model::TopicPartition;
use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex, ProducerEpoch, ProducerId};
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::transactions::verify;
use super::{str_bytes, Ctx, Pending};
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 0..=5;
/// First version whose offsets partition joins the transaction here.
const IMPLICIT_ADD_FROM: i16 = 5;
/// First version answered TRANSACTION_ABORTABLE (KIP-890).
const TRANSACTION_ABORTABLE_FROM: i16 = 4;

/// How the transaction coordinator's check is made.
enum Check {
    /// Decided here: NONE, or the error every partition gets.
    Now(ErrorCode),
    /// Asked of the transaction coordinator on another broker, for the
    /// group's offsets partition.
    Remote((fjord_model::NodeId, Option<String>), TopicPartition),
    /// v5+: the group's offsets partition is added to the transaction.
    Add(TopicPartition),
}

/// What the asynchronous part asks the transaction coordinator.
enum Ask {
    Verify((fjord_model::NodeId, Option<String>)),
    Add,
}

/// An implicit add refused by a busy or moving coordinator: the client
/// looks the group coordinator up again and retries.
fn retriable_as_group(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::CONCURRENT_TRANSACTIONS
        | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
        | ErrorCode::NOT_COORDINATOR => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        code => fenced_as_group(code),
    }
}

/// A refused check of the transaction coordinator as Kafka's group
/// coordinator answers it to a TxnOffsetCommit of `version`: an offsets
/// partition not in the transaction (the coordinator says
/// TRANSACTION_ABORTABLE) is TRANSACTION_ABORTABLE
/// to v4, the version that verifies and knows that error, and
/// INVALID_TXN_STATE to the others (`AddPartitionsToTxnManager`: only the
/// `genericError` operation keeps it); a stale epoch INVALID_PRODUCER_EPOCH.
fn refused_as_group(version: i16, code: ErrorCode) -> ErrorCode {
    let verifies_abortable = (TRANSACTION_ABORTABLE_FROM..IMPLICIT_ADD_FROM).contains(&version);
    match fenced_as_group(code) {
        ErrorCode::INVALID_TXN_STATE | ErrorCode::TRANSACTION_ABORTABLE if verifies_abortable => {
            ErrorCode::TRANSACTION_ABORTABLE
        }
        ErrorCode::TRANSACTION_ABORTABLE => ErrorCode::INVALID_TXN_STATE,
        code => code,
    }
}

/// Kafka's group coordinator answers a stale producer epoch so.
fn fenced_as_group(code: ErrorCode) -> ErrorCode {
    if code == ErrorCode::PRODUCER_FENCED {
        ErrorCode::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

pub fn handle(ctx: Ctx, req: TxnOffsetCommitRequest) -> Pending {
    let group_id = req.group_id.0.to_string();
    let producer_id = ProducerId(req.producer_id.0);
    let producer_epoch = ProducerEpoch(req.producer_epoch);
    // (topic, partition, error) decided here; the rest goes to the group.
    let mut decided: Vec<(String, i32, ErrorCode)> = Vec::new();
    let mut topics: Vec<fjord_group::CommitTopic> = Vec::new();
    let refusal = if group_id.is_empty() {
        Some(ErrorCode::INVALID_GROUP_ID)
    } else {
        None
    };
    for t in req.topics {
        let name = t.name.0.to_string();
        let topic = ctx.broker.topic(&name);
        // The transactional id's WRITE and the group's READ are checked
        // before dispatch; READ on each topic here, as Kafka.
        let allowed = ctx.may(ResourceType::Topic, &name, Operation::Read);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let known = topic
                .as_ref()
                .is_some_and(|tp| tp.partition(p.partition_index).is_some());
            if !allowed {
                decided.push((
                    name.clone(),
                    p.partition_index,
                    ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                ));
            } else if let Some(e) = refusal {
                decided.push((name.clone(), p.partition_index, e));
            } else if !known {
                decided.push((
                    name.clone(),
                    p.partition_index,
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ));
            } else {
                partitions.push(fjord_group::CommitPartition {
                    partition: PartitionIndex(p.partition_index),
                    offset: Offset(p.committed_offset),
                    leader_epoch: LeaderEpoch(p.committed_leader_epoch),
                    metadata: p.committed_metadata.map(|m| m.to_string()),
                });
            }
        }
        if !partitions.is_empty() {
            topics.push(fjord_group::CommitTopic { name, partitions });
        }
    }
    // The coordinators' checks, now (in request order): a failure answers
    // every partition that reached them. In a cluster whose transaction
    // coordinator for this id is another broker, that broker is asked
    // (AddPartitionsToTxn `verify_only`, as Kafka's group coordinator does)
    // before the commit.
    let groups = ctx.broker.groups.get().cloned();
    let txns = ctx.broker.txns.get().cloned();
    let check = match (&groups, &txns) {
        _ if topics.is_empty() => Check::Now(ErrorCode::NONE),
        (None, _) | (_, None) => Check::Now(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        (Some(g), Some(txns)) => {
            let shard = g.read(&group_id, |_| ()).err();
            let offsets_partition = TopicPartition {
                topic: crate::groups::OFFSETS_TOPIC.to_string(),
                partition: PartitionIndex(g.partition_for(&group_id) as i32),
            };
            match (
                shard,
                txns.remote_coordinator(&ctx.broker, &req.transactional_id.0),
            ) {
                (Some(e), _) => Check::Now(e),
                (None, _) if ctx.api_version >= IMPLICIT_ADD_FROM => Check::Add(offsets_partition),
                (None, Some(remote)) => Check::Remote(remote, offsets_partition),
                (None, None) => Check::Now(retriable_as_group(
                    verify(
                        txns,
                        &req.transactional_id.0,
                        producer_id,
                        producer_epoch,
                        std::slice::from_ref(&offsets_partition),
                    )
                    .pop()
                    .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR),
                )),
            }
        }
    };
    let transactional_id = req.transactional_id.0.to_string();
    let commit_request = fjord_group::TxnCommitRequest {
        group_id,
        producer_id: producer_id.0,
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        topics,
    };
    let refuse = |code: ErrorCode,
                  decided: &mut Vec<(String, i32, ErrorCode)>,
                  r: &fjord_group::TxnCommitRequest| {
        for t in &r.topics {
            for p in &t.partitions {
                decided.push((t.name.clone(), p.partition.0, code));
            }
        }
    };
    let (commit_now, remote) = match (check, groups) {
        (Check::Now(code), Some(g)) if code.is_none() && !commit_request.topics.is_empty() => {
            (Some(g.txn_commit(commit_request, producer_epoch)), None)
        }
        (Check::Remote(remote, offsets_partition), Some(g)) => (
            None,
            Some((Ask::Verify(remote), offsets_partition, g, commit_request)),
        ),
        (Check::Add(offsets_partition), Some(g)) => {
            (None, Some((Ask::Add, offsets_partition, g, commit_request)))
        }
        (Check::Now(code), _) => {
            refuse(
                refused_as_group(ctx.api_version, code),
                &mut decided,
                &commit_request,
            );
            (None, None)
        }
        (Check::Remote(..) | Check::Add(_), None) => {
            refuse(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                &mut decided,
                &commit_request,
            );
            (None, None)
        }
    };
    Pending::later(async move {
        let mut results = decided;
        let commit = match (remote, txns) {
            (Some((ask, offsets_partition, g, commit_request)), Some(txns)) => {
                let code = match ask {
                    Ask::Verify(coordinator) => {
                        txns.verify_remote(
                            coordinator,
                            &transactional_id,
                            producer_id,
                            producer_epoch,
                            &offsets_partition,
                        )
                        .await
                    }
                    Ask::Add => {
                        let code = txns
                            .add_implicitly(
                                &ctx.broker,
                                &transactional_id,
                                producer_id,
                                producer_epoch,
                                vec![offsets_partition],
                            )
                            .await;
                        retriable_as_group(code)
                    }
                };
                if code.is_none() {
                    Some(g.txn_commit(commit_request, producer_epoch))
                } else {
                    refuse(
                        refused_as_group(ctx.api_version, code),
                        &mut results,
                        &commit_request,
                    );
                    None
                }
            }
            (Some((_, _, _, commit_request)), None) => {
                refuse(
                    ErrorCode::COORDINATOR_NOT_AVAILABLE,
                    &mut results,
                    &commit_request,
                );
                None
            }
            (None, _) => commit_now,
        };
        if let Some(commit) = commit {
            for t in commit.await {
                for (p, e) in t.partitions {
                    results.push((t.name.clone(), p.0, e));
                }
            }
        }
        let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
        for (name, p, e) in results {
            let part = TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(e.0);
            match topics.iter_mut().find(|t| *t.name.0 == *name) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(vec![part]),
                ),
            }
        }
        ctx.respond(&TxnOffsetCommitResponse::default().with_topics(topics))
    })
}
