//! ListOffsets: versions 1..=11, answered by the partition
//! (`fjord_partition::Partition::list_offset`, which also checks
//! `current_leader_epoch`). EARLIEST (-2) is the log start offset,
//! LATEST (-1) the high watermark (the last stable offset for read_committed;
//! with no transactions yet it equals the high watermark), MAX_TIMESTAMP (-3,
//! v7) the batch holding the largest timestamp, EARLIEST_LOCAL (-4, v8) the
//! log start offset too (all of a Fjord log is local), and a timestamp the
//! first offset whose timestamp is at least it (-1 when none). Without tiered
//! storage LATEST_TIERED (-5, v9) and EARLIEST_PENDING_UPLOAD (-6, v11) find
//! nothing: offset -1, leader epoch -1, no error, as Apache Kafka answers
//! them. A special timestamp the request's version does not know, or any
//! other negative one, is UNSUPPORTED_VERSION, again as Kafka answers.
//!
//! A partition named more than once in a request is answered once, with
//! INVALID_REQUEST, as Kafka answers duplicate partitions.
//!
//! v11 has the same layout as v10 (kafka-protocol 0.18 knows v10 only), so
//! its response is encoded as v10.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, LeaderEpoch};
use fjord_partition::{Isolation, OffsetQuery};
use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use fjord_protocol::kafka_protocol::protocol::Message;

use super::Ctx;
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 1..=11;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

/// The first version that knows the special timestamp `ts` (`None`: no
/// version knows it).
fn first_version_of(ts: i64) -> Option<i16> {
    match ts {
        LATEST | EARLIEST => Some(0),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL => Some(8),
        LATEST_TIERED => Some(9),
        EARLIEST_PENDING_UPLOAD => Some(11),
        t if t >= 0 => Some(0),
        _ => None,
    }
}

/// What a ListOffsets timestamp asks the partition (`None`: no version knows it).
fn query_of(ts: i64) -> Option<OffsetQuery> {
    Some(match ts {
        LATEST => OffsetQuery::Latest,
        EARLIEST => OffsetQuery::Earliest,
        MAX_TIMESTAMP => OffsetQuery::MaxTimestamp,
        EARLIEST_LOCAL => OffsetQuery::EarliestLocal,
        LATEST_TIERED => OffsetQuery::LatestTiered,
        EARLIEST_PENDING_UPLOAD => OffsetQuery::EarliestPendingUpload,
        t if t >= 0 => OffsetQuery::Timestamp(t),
        _ => return None,
    })
}

pub fn handle(ctx: &Ctx, req: ListOffsetsRequest) -> Option<BytesMut> {
    let isolation = Isolation::from_wire(req.isolation_level);
    // How often each topic-partition is named; true once answered.
    let mut named: HashMap<(String, i32), (usize, bool)> = HashMap::new();
    for t in &req.topics {
        for p in &t.partitions {
            named
                .entry((t.name.0.to_string(), p.partition_index))
                .or_insert((0, false))
                .0 += 1;
        }
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        // DESCRIBE on the topic.
        let denied = !ctx.may(ResourceType::Topic, &t.name.0, Operation::Describe);
        let topic = ctx.broker.topic(&t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            if let Some((count, answered)) =
                named.get_mut(&(t.name.0.to_string(), p.partition_index))
            {
                if *count > 1 {
                    if !*answered {
                        *answered = true;
                        partitions.push(base.with_error_code(ErrorCode::INVALID_REQUEST.0));
                    }
                    continue;
                }
            }
            if denied {
                partitions.push(base.with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0));
                continue;
            }
            let Some(part) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(base.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0));
                continue;
            };
            let query = match query_of(p.timestamp) {
                Some(q) if first_version_of(p.timestamp).is_some_and(|f| ctx.api_version >= f) => q,
                _ => {
                    partitions.push(base.with_error_code(ErrorCode::UNSUPPORTED_VERSION.0));
                    continue;
                }
            };
            let found = part.list_offset(query, isolation, LeaderEpoch(p.current_leader_epoch));
            partitions.push(match found {
                Ok(Some(f)) => {
                    let found = base.with_offset(f.offset.0).with_timestamp(f.timestamp_ms);
                    // The leader epoch field exists from v4 on.
                    if ctx.api_version >= 4 {
                        found.with_leader_epoch(f.leader_epoch.0)
                    } else {
                        found
                    }
                }
                Ok(None) => base,
                Err(e) => base.with_error_code(errors::partition_error(&e).0 .0),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    let resp = ListOffsetsResponse::default().with_topics(topics);
    let known_max = <ListOffsetsResponse as Message>::VERSIONS.max;
    if ctx.api_version <= known_max {
        return ctx.respond(&resp);
    }
    // A newer version with the same layout (see the module comment).
    let same_layout = Ctx {
        broker: ctx.broker.clone(),
        api_key: ctx.api_key,
        api_version: known_max,
        correlation_id: ctx.correlation_id,
        client_id: None,
        peer: ctx.peer,
        listener: ctx.listener.clone(),
        principal: ctx.principal.clone(),
        request_bytes: ctx.request_bytes,
        throttle: ctx.throttle.clone(),
    };
    same_layout.respond(&resp)
}
