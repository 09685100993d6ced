//! ListOffsets: versions 1..=11. EARLIEST (-2) is the log start offset,
//! LATEST (-1) the high watermark (also for read_committed: there are no
//! transactions yet, so the last stable offset equals it), MAX_TIMESTAMP (-3,
//! v7) the batch holding the largest timestamp, EARLIEST_LOCAL (-4, v8) the
//! log start offset too (all of a Fjord log is local), and a timestamp the
//! first offset whose timestamp is at least it (-1 when none). Without tiered
//! storage LATEST_TIERED (-5, v9) and EARLIEST_PENDING_UPLOAD (-6, v11) find
//! nothing: offset -1, leader epoch -1, no error, as Apache Kafka answers
//! them. A special timestamp the request's version does not know, or any
//! other negative one, is UNSUPPORTED_VERSION, again as Kafka answers.
//!
//! v11 has the same layout as v10 (kafka-protocol 0.18 knows v10 only), so
//! its response is encoded as v10.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{limits, ErrorCode, Offset};
use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use fjord_protocol::kafka_protocol::protocol::Message;

use super::Ctx;
use crate::errors;

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

/// The storage engine answers timestamp queries per batch; Kafka answers per
/// record. Find the first record (at or above the log start) of the batch
/// holding `offset` whose timestamp satisfies `pick`, decompressing the batch
/// if it must.
fn in_batch(
    log: &fjord_storage::Log,
    offset: Offset,
    pick: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, fjord_storage::StorageError> {
    let read = log.read(offset, 1, log.log_end_offset(), true)?;
    let mut bytes = Vec::with_capacity(read.bytes);
    for s in &read.slices {
        s.read_into(&mut bytes)
            .map_err(|e| fjord_storage::StorageError::Io {
                context: "reading a batch for a timestamp lookup".into(),
                source: e,
            })?;
    }
    let Some(Ok((_, range))) = fjord_records::batches(&bytes).next() else {
        return Ok(None);
    };
    let log_start = log.log_start_offset().0;
    let mut found = None;
    // A batch that cannot be decoded keeps the batch-level answer.
    let _ = fjord_records::visit_records_bounded(
        &bytes[range],
        limits::DECOMPRESSED_BATCH_BYTES_MAX,
        |r| {
            if found.is_none() && r.offset >= log_start && pick(r.timestamp) {
                found = Some((r.offset, r.timestamp));
            }
        },
    );
    Ok(found)
}

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
            if first_version_of(p.timestamp).is_none_or(|first| ctx.api_version < first) {
                partitions.push(base.with_error_code(ErrorCode::UNSUPPORTED_VERSION.0));
                continue;
            }
            let log = &part.log;
            let found =
                match p.timestamp {
                    LATEST => Ok(Some((log.log_end_offset().0, -1))),
                    EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset().0, -1))),
                    // Nothing is tiered: no offset, no epoch.
                    LATEST_TIERED | EARLIEST_PENDING_UPLOAD => Ok(None),
                    MAX_TIMESTAMP => match log.max_timestamp() {
                        None => Ok(None),
                        Some((max_ts, off)) => in_batch(log, off, |ts| ts == max_ts)
                            .map(|r| r.or(Some((off.0, max_ts)))),
                    },
                    target if target >= 0 => match log.offset_for_timestamp(target) {
                        Ok(Some((off, batch_ts))) => in_batch(log, off, |ts| ts >= target)
                            .map(|r| r.or(Some((off.0, batch_ts)))),
                        other => other.map(|r| r.map(|(off, ts)| (off.0, ts))),
                    },
                    _ => Ok(None),
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
    };
    same_layout.respond(&resp)
}
