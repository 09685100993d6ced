//! OffsetForLeaderEpoch: versions 2..=4. Consumers (replica id -1, v3+) ask
//! where a leader epoch ends to validate their position after a leader
//! change (KIP-320); the partition answers from its log's leader epoch cache
//! (`Partition::end_offset_for_epoch`; the current epoch ends at the log
//! end, also on an empty partition). An epoch the log cannot place is
//! (-1, -1) with no error, as from Kafka; an unknown topic or partition is
//! UNKNOWN_TOPIC_OR_PARTITION, a stale or future `current_leader_epoch`
//! FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, LeaderEpoch};
use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::Ctx;
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 2..=4;

pub fn handle(ctx: &Ctx, req: OffsetForLeaderEpochRequest) -> Option<BytesMut> {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            // DESCRIBE on the topic for a consumer (a follower was checked
            // for CLUSTER_ACTION before dispatch).
            let denied = req.replica_id.0 < 0
                && !ctx.may(ResourceType::Topic, &t.topic.0, Operation::Describe);
            let topic = ctx.broker.topic(&t.topic.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if denied {
                        return out.with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0);
                    }
                    let Some(part) = topic.as_ref().and_then(|t| t.partition(p.partition)) else {
                        return out.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
                    };
                    match part.end_offset_for_epoch(
                        LeaderEpoch(p.leader_epoch),
                        LeaderEpoch(p.current_leader_epoch),
                    ) {
                        Ok(Some((epoch, offset))) => {
                            out.with_leader_epoch(epoch.0).with_end_offset(offset.0)
                        }
                        Ok(None) => out,
                        Err(e) => out.with_error_code(errors::partition_error(&e).0 .0),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(&OffsetForLeaderEpochResponse::default().with_topics(topics))
}
