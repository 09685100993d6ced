//! ListPartitionReassignments: version 0. The reassignments in progress
//! as this node's metadata image holds them (`adding_replicas` /
//! `removing_replicas` of the partitions, KIP-455): every one for a null
//! topic list, else those of the named partitions (Kafka skips unknown
//! topics and partitions silently). A single node never moves replicas, so
//! its answer is always empty.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=0;

pub fn handle(ctx: &Ctx, req: ListPartitionReassignmentsRequest) -> Option<BytesMut> {
    let filter: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let ongoing = fjord_controller::reassignment::ongoing(&ctx.broker.image(), filter.as_deref());
    let ids = |v: &[i32]| v.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for o in ongoing {
        let partition = OngoingPartitionReassignment::default()
            .with_partition_index(o.partition)
            .with_replicas(ids(&o.replicas))
            .with_adding_replicas(ids(&o.adding_replicas))
            .with_removing_replicas(ids(&o.removing_replicas));
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == o.topic => t.partitions.push(partition),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(o.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    ctx.respond(
        &ListPartitionReassignmentsResponse::default()
            .with_error_code(ErrorCode::NONE.0)
            .with_error_message(None)
            .with_topics(topics),
    )
}
