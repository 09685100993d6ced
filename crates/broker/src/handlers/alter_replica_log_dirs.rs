//! AlterReplicaLogDirs: versions 1..=2. Fjord has one log directory: moving a
//! replica there is a no-op (NONE); any other path is LOG_DIR_NOT_FOUND, and
//! a partition this node does not host is REPLICA_NOT_AVAILABLE, as in Kafka.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, TopicName,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 1..=2;

/// Kafka's REPLICA_NOT_AVAILABLE.
pub const REPLICA_NOT_AVAILABLE: ErrorCode = ErrorCode(9);

pub fn handle(ctx: &Ctx, req: AlterReplicaLogDirsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let ours = super::describe_log_dirs::log_dir(broker);
    let is_ours = |path: &str| {
        let p = Path::new(path);
        p == ours
            || p == broker.config.data_dir
            || std::fs::canonicalize(p).is_ok_and(|c| c == ours)
    };
    // Results grouped by topic, in request order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut by_topic: BTreeMap<String, Vec<AlterReplicaLogDirPartitionResult>> = BTreeMap::new();
    for dir in &req.dirs {
        let dir_ok = is_ours(&dir.path);
        for t in &dir.topics {
            let name = t.name.0.to_string();
            let topic = broker.topic(&name);
            let results = by_topic.entry(name.clone()).or_insert_with(|| {
                order.push(name.clone());
                Vec::new()
            });
            for &p in &t.partitions {
                let code = if !dir_ok {
                    ErrorCode::LOG_DIR_NOT_FOUND
                } else if topic.as_ref().and_then(|t| t.partition(p)).is_none() {
                    REPLICA_NOT_AVAILABLE
                } else {
                    ErrorCode::NONE
                };
                results.push(
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code.0),
                );
            }
        }
    }
    let results = order
        .into_iter()
        .filter_map(|name| {
            let partitions = by_topic.remove(&name)?;
            Some(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partitions(partitions),
            )
        })
        .collect();
    ctx.respond(&AlterReplicaLogDirsResponse::default().with_results(results))
}
