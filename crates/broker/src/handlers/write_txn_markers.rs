//! WriteTxnMarkers (API 27): versions 1-2, as Kafka 4.3.1. v2 (KIP-1228)
//! adds each marker's transaction version, which kafka-protocol 0.18's
//! structs cannot carry: the request and response structs are Fjord's own
//! (`fjord_protocol::requests::owned`). A v1 marker counts as transaction
//! version 0. For version 2 and later the partition requires the marker's
//! producer epoch to be above the one of the transaction it ends (the
//! coordinator bumped it), except for the retry of a marker already written
//! (`check_marker`). A transaction coordinator sends
//! it to the leader of each partition of a transaction that ends (Kafka's
//! `TransactionMarkerChannelManager`, Fjord's `txns` shell in a cluster), and
//! the admin client's `abortTransaction` (the `kafka-transactions` tool's
//! `abort`) sends it to abort a hanging transaction.
//!
//! As Kafka's `handleWriteTxnMarkersRequest`: CLUSTER_ACTION on the cluster
//! is required when an authorizer is set (otherwise every partition gets
//! CLUSTER_AUTHORIZATION_FAILED, see `authz`); each partition's control
//! batch is appended as the coordinator's (no sequence; the producer
//! state's `check_marker` refuses an older producer epoch with
//! INVALID_PRODUCER_EPOCH and an older coordinator epoch with
//! TRANSACTION_COORDINATOR_FENCED), through the same path as the markers a
//! coordinator writes into partitions it leads itself
//! ([`append_marker`]): the last stable offset moves and an aborted
//! transaction enters the `.txnindex`. A partition this node does not have
//! gets UNKNOWN_TOPIC_OR_PARTITION, one it does not lead
//! NOT_LEADER_OR_FOLLOWER; each is answered once its marker is committed
//! (acks=all, as Kafka appends markers). A marker in a `__consumer_offsets`
//! partition then completes the producer's transactional offset commits in
//! that group shard (Kafka's `onTransactionCompleted`).

use std::future::Future;
use std::ops::RangeInclusive;

use fjord_model::{ErrorCode, ProducerEpoch, ProducerId, TopicPartition};
use fjord_protocol::requests::owned::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use fjord_protocol::requests::owned::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use fjord_storage::TxnMarker;

use super::{Ctx, Pending};
use crate::state::{now_ms, Broker};

pub const VERSIONS: RangeInclusive<i16> = 1..=2;

/// Append `marker` to partition `tp` of this node now (it must lead it);
/// the future resolves once the marker is committed, after a marker in a
/// `__consumer_offsets` partition has completed the producer's transaction
/// in that group shard. The error is the partition's refusal or a failure to
/// commit, as Kafka codes.
pub(crate) fn append_marker(
    broker: &Broker,
    tp: &TopicPartition,
    marker: &TxnMarker,
) -> Result<impl Future<Output = Result<(), ErrorCode>> + Send + 'static, ErrorCode> {
    let partition = broker
        .topic(&tp.topic)
        .and_then(|t| t.partition(tp.partition.0))
        .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)?;
    let (_, committed) = partition
        .append_marker(marker, now_ms())
        .map_err(|e| e.kafka_code())?;
    // A group's transactional offsets become visible (or are dropped) once
    // the marker is in its offsets partition.
    let complete = if tp.topic == crate::groups::OFFSETS_TOPIC {
        broker
            .groups
            .loaded()
            .cloned()
            .zip(u32::try_from(tp.partition.0).ok())
    } else {
        None
    };
    let (producer_id, commit) = (marker.producer_id, !marker.aborted);
    Ok(async move {
        committed.await.map_err(|e| e.kafka_code())?;
        if let Some((groups, p)) = complete {
            groups.complete_txn(p, producer_id, commit).await;
        }
        Ok(())
    })
}

/// The answer with `code` for every partition of the request (Kafka's
/// `getErrorResponse`).
pub(crate) fn error_response(
    req: &WriteTxnMarkersRequest,
    code: ErrorCode,
) -> WriteTxnMarkersResponse {
    WriteTxnMarkersResponse {
        markers: req
            .markers
            .iter()
            .map(|m| WritableTxnMarkerResult {
                producer_id: m.producer_id,
                topics: m
                    .topics
                    .iter()
                    .map(|t| {
                        topic_result(
                            t.name.clone(),
                            t.partition_indexes.iter().map(|&p| (p, code)),
                        )
                    })
                    .collect(),
                ..WritableTxnMarkerResult::default()
            })
            .collect(),
        ..WriteTxnMarkersResponse::default()
    }
}

fn topic_result(
    name: String,
    partitions: impl Iterator<Item = (i32, ErrorCode)>,
) -> WritableTxnMarkerTopicResult {
    WritableTxnMarkerTopicResult {
        name,
        partitions: partitions
            .map(|(partition_index, code)| WritableTxnMarkerPartitionResult {
                partition_index,
                error_code: code.0,
                ..WritableTxnMarkerPartitionResult::default()
            })
            .collect(),
        ..WritableTxnMarkerTopicResult::default()
    }
}

pub fn handle(ctx: Ctx, req: WriteTxnMarkersRequest) -> Pending {
    // Every marker is appended now, in request order; the answer waits for
    // all of them to commit.
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let marker = TxnMarker {
            producer_id: ProducerId(m.producer_id),
            producer_epoch: ProducerEpoch(m.producer_epoch),
            coordinator_epoch: m.coordinator_epoch,
            aborted: !m.transaction_result,
            // Absent from v1: 0, as Kafka's default.
            transaction_version: i16::from(m.transaction_version),
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for p in t.partition_indexes {
                let tp = TopicPartition {
                    topic: t.name.clone(),
                    partition: fjord_model::PartitionIndex(p),
                };
                partitions.push((p, append_marker(&ctx.broker, &tp, &marker)));
            }
            topics.push((t.name, partitions));
        }
        markers.push((m.producer_id, topics));
    }
    Pending::later(async move {
        let mut results = Vec::with_capacity(markers.len());
        for (producer_id, topics) in markers {
            let mut topic_results = Vec::with_capacity(topics.len());
            for (name, partitions) in topics {
                let mut codes = Vec::with_capacity(partitions.len());
                for (p, appended) in partitions {
                    let code = match appended {
                        Ok(committed) => committed.await.err().unwrap_or(ErrorCode::NONE),
                        Err(code) => code,
                    };
                    codes.push((p, code));
                }
                topic_results.push(topic_result(name, codes.into_iter()));
            }
            results.push(WritableTxnMarkerResult {
                producer_id,
                topics: topic_results,
                ..WritableTxnMarkerResult::default()
            });
        }
        ctx.respond(&WriteTxnMarkersResponse {
            markers: results,
            ..WriteTxnMarkersResponse::default()
        })
    })
}
