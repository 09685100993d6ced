//! DescribeProducers: version 0 (`kafka-transactions describe-producers`).
//! Each partition's idempotent producers from its producer state
//! (`Partition::active_producers`): id, epoch, last sequence and the
//! timestamp of its newest batch, the coordinator epoch of its last marker
//! (-1 before any) and the first offset of its open transaction (-1 when
//! none is open; `kafka-transactions find-hanging` reads it). An
//! unknown topic or partition is UNKNOWN_TOPIC_OR_PARTITION (with Kafka's
//! message for an unknown topic, none for an unknown partition, as Kafka).
//! A topic the principal may not READ is TOPIC_AUTHORIZATION_FAILED.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};

use super::{str_bytes, Ctx};
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 0..=0;

pub fn handle(ctx: &Ctx, req: DescribeProducersRequest) -> Option<BytesMut> {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            // Kafka: READ on the topic, before whether it exists.
            let allowed = ctx.may(ResourceType::Topic, &t.name.0, Operation::Read);
            let topic = ctx.broker.topic(&t.name.0).filter(|_| allowed);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let out = PartitionResponse::default().with_partition_index(index);
                    if !allowed {
                        return out.with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0);
                    }
                    let Some(topic) = &topic else {
                        return out
                            .with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0)
                            .with_error_message(Some(str_bytes(
                                errors::UNKNOWN_TOPIC_OR_PARTITION_MESSAGE,
                            )));
                    };
                    let Some(part) = topic.partition(index) else {
                        return out.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
                    };
                    match part.active_producers() {
                        Ok(producers) => out.with_active_producers(
                            producers
                                .into_iter()
                                .map(|(id, e)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(id.0))
                                        .with_producer_epoch(i32::from(e.epoch.0))
                                        .with_last_sequence(e.last_sequence().unwrap_or(-1))
                                        .with_last_timestamp(e.last_timestamp_ms)
                                        .with_coordinator_epoch(e.coordinator_epoch)
                                        .with_current_txn_start_offset(
                                            e.current_txn_first_offset.map_or(-1, |o| o.0),
                                        )
                                })
                                .collect(),
                        ),
                        Err(e) => {
                            let (code, msg) = errors::partition_error(&e);
                            out.with_error_code(code.0)
                                .with_error_message(Some(str_bytes(msg)))
                        }
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ctx.respond(&DescribeProducersResponse::default().with_topics(topics))
}
