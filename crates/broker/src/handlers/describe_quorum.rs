//! DescribeQuorum: versions 0..=2. A single node answers as a one-voter
//! KRaft cluster would: `__cluster_metadata` partition 0 with this node as
//! leader and only voter and no observers (log end offset and high
//! watermark reported as 0). A cluster node (`controller.quorum.voters`)
//! forwards the request to the active controller, as Kafka's brokers do:
//! its CONTROLLER listener answers with the leader, epoch, high watermark,
//! every voter's progress and the observers (broker-only nodes) that fetch
//! from it (what `kafka-metadata-quorum` shows).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};

use super::{str_bytes, Ctx};
use crate::state::now_ms;

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

/// Kafka's metadata topic, the only one DescribeQuorum knows.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The epoch a single-node quorum reaches at its first election.
const QUORUM_EPOCH: i32 = 1;
/// Fjord's metadata is a file, not a log: nothing to count.
const METADATA_LOG_END_OFFSET: i64 = 0;

pub fn handle(ctx: &Ctx, req: DescribeQuorumRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let node = BrokerId(broker.config.node_id.0);
    let valid = req.topics.len() == 1
        && &*req.topics[0].topic_name == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    if !valid {
        // Kafka answers every requested partition with UNKNOWN_TOPIC_OR_PARTITION
        // and its message.
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0)
                            .with_error_message(Some(str_bytes(
                                crate::errors::UNKNOWN_TOPIC_OR_PARTITION_MESSAGE,
                            )))
                    })
                    .collect();
                TopicData::default()
                    .with_topic_name(t.topic_name)
                    .with_partitions(partitions)
            })
            .collect();
        return ctx.respond(&DescribeQuorumResponse::default().with_topics(topics));
    }
    if let Some(crate::state::Quorum::Raft(_)) = broker.quorum() {
        // As Kafka's brokers: the active controller answers (its view has
        // every voter's and observer's progress); sent on as it is.
        return match crate::controller_link::forward(broker, &req, ctx.api_version) {
            Ok(resp) => ctx.respond(&resp),
            Err(e) => {
                let (code, _) = crate::errors::state_error(&e);
                ctx.respond(&DescribeQuorumResponse::default().with_error_code(code.0))
            }
        };
    }
    let now = now_ms();
    let voter = ReplicaState::default()
        .with_replica_id(node)
        .with_log_end_offset(METADATA_LOG_END_OFFSET)
        .with_last_fetch_timestamp(now)
        .with_last_caught_up_timestamp(now);
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(ErrorCode::NONE.0)
        .with_leader_id(node)
        .with_leader_epoch(QUORUM_EPOCH)
        .with_high_watermark(METADATA_LOG_END_OFFSET)
        .with_current_voters(vec![voter])
        .with_observers(vec![]);
    let nodes = vec![Node::default()
        .with_node_id(node)
        .with_listeners(vec![Listener::default()
            .with_name(str_bytes("PLAINTEXT"))
            .with_host(str_bytes(broker.config.advertised_host.clone()))
            .with_port(broker.config.advertised_port)])];
    ctx.respond(&quorum_response(ctx.api_version, partition, nodes))
}

/// The answer for `__cluster_metadata-0`; `nodes` (the voters' endpoints) only from v2.
fn quorum_response(
    api_version: i16,
    partition: PartitionData,
    nodes: Vec<Node>,
) -> DescribeQuorumResponse {
    let topic = TopicData::default()
        .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
        .with_partitions(vec![partition]);
    let resp = DescribeQuorumResponse::default()
        .with_error_code(ErrorCode::NONE.0)
        .with_topics(vec![topic]);
    if api_version >= 2 {
        resp.with_nodes(nodes)
    } else {
        resp
    }
}
