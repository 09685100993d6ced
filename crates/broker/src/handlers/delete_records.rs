//! DeleteRecords: versions 0..=2. Offset -1 means the high watermark; the
//! partition (`fjord_partition::Partition::delete_records_before`) refuses
//! an offset past it with OFFSET_OUT_OF_RANGE. The partitions of a topic
//! the principal may not DELETE are TOPIC_AUTHORIZATION_FAILED.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, Offset};
use fjord_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::Ctx;
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

pub fn handle(ctx: &Ctx, req: DeleteRecordsRequest) -> Option<BytesMut> {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.broker.topic(&t.name.0);
        let allowed = ctx.may(ResourceType::Topic, &t.name.0, Operation::Delete);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if !allowed {
                partitions.push(base.with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0));
                continue;
            }
            let Some(part) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(base.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0));
                continue;
            };
            let target = (p.offset != -1).then_some(Offset(p.offset));
            partitions.push(match part.delete_records_before(target) {
                Ok(low) => base.with_low_watermark(low.0),
                Err(e) => base.with_error_code(errors::partition_error(&e).0 .0),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ctx.respond(&DeleteRecordsResponse::default().with_topics(topics))
}
