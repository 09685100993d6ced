//! Fetch: versions 4..=12. Long poll: the response waits until `min_bytes`
//! are available or `max_wait_ms` passes, woken by appends. Fetch sessions
//! (v7+, KIP-227) are declined the way the KIP allows: every response carries
//! session id 0 and is a full response, so clients send full requests.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_model::{limits, ErrorCode, Offset};
use fjord_protocol::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::Notify;

use super::{Ctx, Pending};
use crate::errors;
use crate::state::Partition;

pub const VERSIONS: RangeInclusive<i16> = 4..=12;

/// One partition the request asks for, resolved once.
struct Want {
    topic_idx: usize,
    partition: i32,
    target: Option<Arc<Partition>>,
    /// An error that no amount of waiting changes (unknown partition, bad epoch).
    error: ErrorCode,
    fetch_offset: i64,
    max_bytes: usize,
}

pub fn handle(ctx: Ctx, req: FetchRequest) -> Pending {
    if req.session_id != 0 {
        // We never hand out session ids, so an incremental request names one we do not know.
        let resp = FetchResponse::default()
            .with_error_code(ErrorCode::FETCH_SESSION_ID_NOT_FOUND.0)
            .with_session_id(0);
        return Pending::Ready(ctx.respond(&resp));
    }
    Pending::later(async move { fetch(ctx, req).await })
}

async fn fetch(ctx: Ctx, req: FetchRequest) -> Option<bytes::BytesMut> {
    let mut wants = Vec::new();
    let mut topic_names = Vec::new();
    for (ti, ft) in req.topics.iter().enumerate() {
        let topic = ctx.broker.topic(&ft.topic.0);
        topic_names.push((ft.topic.clone(), ft.topic_id));
        for fp in &ft.partitions {
            let target = topic.as_ref().and_then(|t| t.partition(fp.partition));
            let error = if target.is_none() {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                epoch_check(fp.current_leader_epoch)
            };
            wants.push(Want {
                topic_idx: ti,
                partition: fp.partition,
                target,
                error,
                fetch_offset: fp.fetch_offset,
                max_bytes: fp.partition_max_bytes.max(0) as usize,
            });
        }
    }
    let response_max = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait_ms = i64::from(req.max_wait_ms).clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let notify = Arc::new(Notify::new());
    let parts = loop {
        // Register before reading so an append between the read and the wait still wakes us.
        for w in &wants {
            if let Some(p) = &w.target {
                p.register_waiter(&notify);
            }
        }
        let (parts, total, any_error) = read_all(&wants, response_max);
        if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            break parts;
        }
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            break read_all(&wants, response_max).0;
        }
    };
    let mut topics: Vec<FetchableTopicResponse> = topic_names
        .into_iter()
        .map(|(name, id)| {
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(id)
        })
        .collect();
    for (w, pd) in wants.iter().zip(parts) {
        topics[w.topic_idx].partitions.push(pd);
    }
    let resp = FetchResponse::default()
        .with_error_code(0)
        .with_session_id(0)
        .with_responses(topics);
    ctx.respond(&resp)
}

/// Single node: the leader epoch is 0 and never changes.
fn epoch_check(current_leader_epoch: i32) -> ErrorCode {
    match current_leader_epoch {
        -1 | 0 => ErrorCode::NONE,
        e if e > 0 => ErrorCode::UNKNOWN_LEADER_EPOCH,
        _ => ErrorCode::FENCED_LEADER_EPOCH,
    }
}

/// Read every wanted partition once. Returns the partition data, the bytes
/// read, and whether some partition has an error (which answers at once).
fn read_all(wants: &[Want], response_max: usize) -> (Vec<PartitionData>, usize, bool) {
    let mut out = Vec::with_capacity(wants.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in wants {
        let mut pd = PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(Bytes::new()));
        let Some(p) = &w.target else {
            any_error = true;
            out.push(pd.with_error_code(w.error.0));
            continue;
        };
        let hw = p.log.log_end_offset().0;
        let start = p.log.log_start_offset().0;
        pd = pd
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(start);
        if !w.error.is_none() {
            any_error = true;
            out.push(pd.with_error_code(w.error.0));
            continue;
        }
        if w.fetch_offset < start || w.fetch_offset > hw {
            any_error = true;
            out.push(pd.with_error_code(ErrorCode::OFFSET_OUT_OF_RANGE.0));
            continue;
        }
        if w.fetch_offset == hw {
            out.push(pd);
            continue;
        }
        // KIP-74: the first batch of the response comes whole even if larger than the limits.
        let room = response_max.saturating_sub(total).min(w.max_bytes);
        let min_one = total == 0;
        match p
            .log
            .read(Offset(w.fetch_offset), room, Offset(hw), min_one)
        {
            Ok(r) => {
                let mut buf = Vec::with_capacity(r.bytes);
                let mut failed = None;
                for s in &r.slices {
                    if let Err(e) = s.read_into(&mut buf) {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(e) = failed {
                    tracing::error!(partition = w.partition, "fetch read failed: {e}");
                    any_error = true;
                    out.push(pd.with_error_code(ErrorCode::KAFKA_STORAGE_ERROR.0));
                    continue;
                }
                total += buf.len();
                out.push(pd.with_records(Some(Bytes::from(buf))));
            }
            Err(e) => {
                let (code, msg) = errors::storage_error(&e);
                tracing::debug!(partition = w.partition, "fetch failed: {msg}");
                any_error = true;
                out.push(pd.with_error_code(code.0));
            }
        }
    }
    (out, total, any_error)
}
