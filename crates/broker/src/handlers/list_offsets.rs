//! ListOffsets: versions 1..=7. EARLIEST (-2) is the log start offset,
//! LATEST (-1) the high watermark (also for read_committed: there are no
//! transactions yet, so the last stable offset equals it), MAX_TIMESTAMP (-3,
//! v7) the batch holding the largest timestamp, and a timestamp the first
//! offset whose timestamp is at least it (-1 when none).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Ctx;
use crate::errors;

pub const VERSIONS: RangeInclusive<i16> = 1..=7;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(ctx: &Ctx, req: ListOffsetsRequest) -> Option<BytesMut> {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.broker.topic(&t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let Some(part) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(base.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0));
                continue;
            };
            if p.current_leader_epoch > 0 {
                partitions.push(base.with_error_code(ErrorCode::UNKNOWN_LEADER_EPOCH.0));
                continue;
            }
            let log = &part.log;
            let found = match p.timestamp {
                LATEST => Ok(Some((log.log_end_offset().0, -1))),
                EARLIEST => Ok(Some((log.log_start_offset().0, -1))),
                MAX_TIMESTAMP => Ok(log.max_timestamp().map(|(ts, off)| (off.0, ts))),
                ts if ts >= 0 => log
                    .offset_for_timestamp(ts)
                    .map(|r| r.map(|(off, ts)| (off.0, ts))),
                _ => {
                    partitions.push(base.with_error_code(ErrorCode::INVALID_REQUEST.0));
                    continue;
                }
            };
            partitions.push(match found {
                Ok(Some((offset, ts))) => {
                    let found = base.with_offset(offset).with_timestamp(ts);
                    // The leader epoch field exists from v4 on.
                    if ctx.api_version >= 4 {
                        found.with_leader_epoch(0)
                    } else {
                        found
                    }
                }
                Ok(None) => base,
                Err(e) => base.with_error_code(errors::storage_error(&e).0 .0),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ctx.respond(&ListOffsetsResponse::default().with_topics(topics))
}
