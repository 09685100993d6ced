//! OffsetDelete: version 0. Offsets of topics a live consumer group
//! subscribes to are kept (GROUP_SUBSCRIBED_TO_TOPIC).

use std::ops::RangeInclusive;

use fjord_model::{ErrorCode, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetDeleteRequest, OffsetDeleteResponse, TopicName,
};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 0..=0;

pub fn handle(ctx: Ctx, req: OffsetDeleteRequest) -> Pending {
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let resp =
            OffsetDeleteResponse::default().with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0);
        return Pending::Ready(ctx.respond(&resp));
    };
    let group_id = req.group_id.0.to_string();
    let topics: Vec<fjord_group::TopicPartitions> = req
        .topics
        .into_iter()
        .map(|t| fjord_group::TopicPartitions {
            name: t.name.0.to_string(),
            partitions: t
                .partitions
                .into_iter()
                .map(|p| PartitionIndex(p.partition_index))
                .collect(),
        })
        .collect();
    let key = group_id.clone();
    let call = groups.call(&key, move |c, now, out| {
        c.delete_offsets(&group_id, &topics, now, out)
    });
    Pending::later(async move {
        let r = match call.await {
            Ok(r) => r,
            Err(e) => {
                return ctx.respond(&OffsetDeleteResponse::default().with_error_code(e.0));
            }
        };
        let resp = OffsetDeleteResponse::default()
            .with_error_code(r.error.0)
            .with_topics(
                r.topics
                    .into_iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str_bytes(t.name)))
                            .with_partitions(
                                t.partitions
                                    .into_iter()
                                    .map(|(p, e)| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.0)
                                            .with_error_code(e.0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        ctx.respond(&resp)
    })
}
