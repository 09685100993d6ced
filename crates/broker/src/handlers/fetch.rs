//! Fetch: versions 4..=18. Long poll: the response waits until `min_bytes`
//! are available or `max_wait_ms` passes, woken by appends. Fetch sessions
//! (v7+, KIP-227) are declined the way the KIP allows: every response carries
//! session id 0 and is a full response, so clients send full requests. A
//! full request (session epoch 0 or -1, whatever session id it names) is
//! served; an incremental one (any other epoch) gets
//! FETCH_SESSION_ID_NOT_FOUND, as from Kafka for a session it does not know.
//!
//! From v13 on topics are named by id, in requests and responses; an id we
//! do not know is UNKNOWN_TOPIC_ID for each of its partitions. v14–v18 add
//! nothing a single-node broker must act on: v15 carries the replica's state
//! in a tagged field, v17 and v18 add replica-only tagged fields (directory
//! id, high watermark) that consumers never send, and v16's leader hints
//! (`current_leader`, `node_endpoints`) are tagged fields Kafka only fills for
//! NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH: as the only replica and
//! with leader epoch 0 we never answer the first and the second only to
//! epochs no client holds, so they are always omitted.
//!
//! Each partition is read through `fjord_partition::Partition::read`, which
//! decides the high watermark, the last stable offset, the leader epoch
//! check (`current_leader_epoch`) and the range; a waiting fetch registers
//! with the partitions and is woken by any append through them.
//!
//! The response is encoded here rather than by kafka-protocol so that record
//! data stays in the page cache: each partition's records are file ranges
//! sent with sendfile(2) (see `response.rs`). A test checks the encoding
//! against kafka-protocol's for every version.
//!
//! A partition named twice in one request is answered once, at its first
//! place, from the position of its last entry, as Kafka's map of wanted
//! partitions does.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fjord_model::{limits, ErrorCode, LeaderEpoch, Offset};
use fjord_partition::{Isolation, Partition};
use fjord_protocol::kafka_protocol::messages::FetchRequest;
use fjord_protocol::response_header_version;
use fjord_storage::FileSlice;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Ctx, Pending};
use crate::errors;
use crate::response::{Chunk, Response};

pub const VERSIONS: RangeInclusive<i16> = 4..=18;
const API_KEY: i16 = 1;
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// The first version naming topics by id instead of by name.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

/// One partition the request asks for, resolved once.
struct Want {
    topic_idx: usize,
    partition: i32,
    target: Option<Arc<Partition>>,
    /// An error that no amount of waiting changes (unknown topic or partition).
    error: ErrorCode,
    fetch_offset: i64,
    current_leader_epoch: i32,
    max_bytes: usize,
}

/// What the response says about one partition.
pub struct PartitionOut {
    pub partition: i32,
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Vec<FileSlice>,
    pub records_bytes: usize,
}

pub struct TopicOut {
    /// Written up to v12.
    pub name: String,
    /// Written from v13 on.
    pub id: Uuid,
    pub partitions: Vec<PartitionOut>,
}

/// Whether a request is a full fetch: session epoch 0 (open a session,
/// which we decline) or -1 (no session, KIP-227's FINAL_EPOCH), whatever
/// session id it names, as Kafka's `FetchMetadata::isFull`. Anything else
/// is an incremental fetch in a session.
fn is_full_fetch(session_epoch: i32) -> bool {
    session_epoch == 0 || session_epoch == -1
}

pub fn handle(ctx: Ctx, req: FetchRequest) -> Pending {
    if !is_full_fetch(req.session_epoch) {
        // We never hand out session ids, so an incremental request names one we do not know.
        let body = encode(
            ctx.api_version,
            ctx.correlation_id,
            ErrorCode::FETCH_SESSION_ID_NOT_FOUND,
            false,
            Vec::new(),
        );
        ctx.log_answered(|| vec![ErrorCode::FETCH_SESSION_ID_NOT_FOUND.0]);
        return Pending::Stream(tokio::spawn(async move { Some(body) }));
    }
    Pending::Stream(tokio::spawn(async move { fetch(ctx, req).await }))
}

async fn fetch(ctx: Ctx, req: FetchRequest) -> Option<Response> {
    let mut wants: Vec<Want> = Vec::new();
    let mut topics = Vec::new();
    let by_id = ctx.api_version >= FIRST_TOPIC_ID_VERSION;
    // Kafka keys a fetch's partitions by topic-partition (the ordered map of
    // `FetchRequest.fetchData`): a partition named twice is answered once, at
    // its first place, for the position of its last entry. The index is kept
    // only when the request names more than one partition.
    let many = req.topics.iter().map(|t| t.partitions.len()).sum::<usize>() > 1;
    let mut first_want: HashMap<(Uuid, &str, i32), usize> = HashMap::new();
    for (ti, ft) in req.topics.iter().enumerate() {
        let topic = if by_id {
            ctx.broker.topic_by_id(ft.topic_id)
        } else {
            ctx.broker.topic(&ft.topic.0)
        };
        topics.push(TopicOut {
            name: ft.topic.0.to_string(),
            id: ft.topic_id,
            partitions: Vec::with_capacity(ft.partitions.len()),
        });
        for fp in &ft.partitions {
            if many {
                let key = if by_id {
                    (ft.topic_id, "", fp.partition)
                } else {
                    (Uuid::nil(), &*ft.topic.0, fp.partition)
                };
                if let Some(&i) = first_want.get(&key) {
                    let w = &mut wants[i];
                    w.fetch_offset = fp.fetch_offset;
                    w.current_leader_epoch = fp.current_leader_epoch;
                    w.max_bytes = fp.partition_max_bytes.max(0) as usize;
                    continue;
                }
                first_want.insert(key, wants.len());
            }
            let target = topic.as_ref().and_then(|t| t.partition(fp.partition));
            let error = if topic.is_none() && by_id {
                ErrorCode::UNKNOWN_TOPIC_ID
            } else if target.is_none() {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                ErrorCode::NONE
            };
            wants.push(Want {
                topic_idx: ti,
                partition: fp.partition,
                target,
                error,
                fetch_offset: fp.fetch_offset,
                current_leader_epoch: fp.current_leader_epoch,
                max_bytes: fp.partition_max_bytes.max(0) as usize,
            });
        }
    }
    // 0 (or less) allows only the first batch (KIP-74), as in Kafka.
    let response_max = req.max_bytes.max(0) as usize;
    let isolation = Isolation::from_wire(req.isolation_level);
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait_ms = i64::from(req.max_wait_ms).clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let notify = Arc::new(Notify::new());
    // Registered with every wanted partition since the last wake-up (an append
    // takes the registrations it wakes).
    let mut registered = false;
    let parts = loop {
        let (parts, total, any_error) = read_all(&wants, response_max, isolation);
        if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            break parts;
        }
        if !registered {
            // Only now that we will wait; then read again, so that an append
            // between the read above and the registration still counts.
            for w in &wants {
                if let Some(p) = &w.target {
                    p.register_waiter(&notify);
                }
            }
            registered = true;
            continue;
        }
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            break read_all(&wants, response_max, isolation).0;
        }
        registered = false;
    };
    for (w, p) in wants.iter().zip(parts) {
        topics[w.topic_idx].partitions.push(p);
    }
    ctx.log_answered(|| {
        let mut codes: Vec<i16> = topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error.0))
            .filter(|c| *c != 0)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        codes
    });
    Some(encode(
        ctx.api_version,
        ctx.correlation_id,
        ErrorCode::NONE,
        isolation == Isolation::ReadCommitted,
        topics,
    ))
}

/// Read every wanted partition once. Returns the partitions, the bytes found,
/// and whether some partition has an error (which answers at once).
fn read_all(
    wants: &[Want],
    response_max: usize,
    isolation: Isolation,
) -> (Vec<PartitionOut>, usize, bool) {
    let mut out = Vec::with_capacity(wants.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in wants {
        let mut p = PartitionOut {
            partition: w.partition,
            error: w.error,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Vec::new(),
            records_bytes: 0,
        };
        let Some(part) = w.target.as_ref().filter(|_| w.error.is_none()) else {
            any_error = true;
            out.push(p);
            continue;
        };
        // KIP-74: the first batch of the response comes whole even if larger than the limits.
        let room = response_max.saturating_sub(total).min(w.max_bytes);
        let fetched = part.read(
            Offset(w.fetch_offset),
            room,
            isolation,
            LeaderEpoch(w.current_leader_epoch),
            total == 0,
        );
        p.high_watermark = fetched.high_watermark.0;
        p.last_stable_offset = fetched.last_stable_offset.0;
        p.log_start_offset = fetched.log_start_offset.0;
        match fetched.records {
            Ok(r) => {
                total += r.bytes;
                p.records_bytes = r.bytes;
                p.records = r.slices;
            }
            Err(e) => {
                let (code, msg) = errors::partition_error(&e);
                tracing::debug!(partition = w.partition, "fetch failed: {msg}");
                any_error = true;
                p.error = code;
            }
        }
        out.push(p);
    }
    (out, total, any_error)
}

/// Writes Kafka's primitives in the classic or flexible (compact) form.
struct Enc {
    buf: BytesMut,
    chunks: Vec<Chunk>,
    flexible: bool,
}

impl Enc {
    fn len_prefix(&mut self, len: usize) {
        if self.flexible {
            put_uvarint(&mut self.buf, len as u64 + 1);
        } else {
            self.buf.put_i32(len as i32);
        }
    }
    fn string(&mut self, s: &str) {
        if self.flexible {
            put_uvarint(&mut self.buf, s.len() as u64 + 1);
        } else {
            self.buf.put_i16(s.len() as i16);
        }
        self.buf.put_slice(s.as_bytes());
    }
    fn null_array(&mut self) {
        if self.flexible {
            put_uvarint(&mut self.buf, 0);
        } else {
            self.buf.put_i32(-1);
        }
    }
    fn no_tags(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        }
    }
    /// Cut the bytes so far into a chunk, then the file ranges.
    fn files(&mut self, slices: Vec<FileSlice>) {
        if !self.buf.is_empty() {
            self.chunks.push(Chunk::Bytes(self.buf.split().freeze()));
        }
        self.chunks
            .extend(slices.into_iter().filter(|s| s.len > 0).map(Chunk::File));
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Encode a whole Fetch response frame: size, header, body.
pub fn encode(
    version: i16,
    correlation_id: i32,
    error: ErrorCode,
    read_committed: bool,
    topics: Vec<TopicOut>,
) -> Response {
    assert!(
        VERSIONS.contains(&version),
        "fetch v{version} is not served"
    );
    let mut e = Enc {
        buf: BytesMut::with_capacity(256),
        chunks: Vec::new(),
        flexible: version >= FIRST_FLEXIBLE_VERSION,
    };
    e.buf.put_i32(0); // size, patched below
    e.buf.put_i32(correlation_id);
    if response_header_version(API_KEY, version) >= 1 {
        e.buf.put_u8(0);
    }
    e.buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        e.buf.put_i16(error.0);
        e.buf.put_i32(0); // session_id: sessions are declined
    }
    e.len_prefix(topics.len());
    for t in topics {
        if version >= FIRST_TOPIC_ID_VERSION {
            e.buf.put_slice(t.id.as_bytes());
        } else {
            e.string(&t.name);
        }
        e.len_prefix(t.partitions.len());
        for p in t.partitions {
            e.buf.put_i32(p.partition);
            e.buf.put_i16(p.error.0);
            e.buf.put_i64(p.high_watermark);
            e.buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                e.buf.put_i64(p.log_start_offset);
            }
            // Aborted transactions: only for read_committed (there are none
            // yet). A partition the broker does not know gets an empty list
            // rather than null whatever the isolation, as from Kafka.
            let unknown = p.error == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                || p.error == ErrorCode::UNKNOWN_TOPIC_ID;
            if read_committed || unknown {
                e.len_prefix(0);
            } else {
                e.null_array();
            }
            if version >= 11 {
                e.buf.put_i32(-1); // preferred_read_replica
            }
            // Records are never null, even on errors: an empty array then.
            e.len_prefix(p.records_bytes);
            e.files(p.records);
            e.no_tags();
        }
        e.no_tags();
    }
    e.no_tags();
    if !e.buf.is_empty() {
        let rest = e.buf.split().freeze();
        e.chunks.push(Chunk::Bytes(rest));
    }
    let total: usize = e.chunks.iter().map(Chunk::len).sum();
    let size = (total - 4) as i32;
    if let Some(Chunk::Bytes(first)) = e.chunks.first_mut() {
        let mut head = BytesMut::from(&first[..]);
        head[..4].copy_from_slice(&size.to_be_bytes());
        *first = head.freeze();
    }
    Response { chunks: e.chunks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fjord_protocol::kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use fjord_protocol::kafka_protocol::messages::{BrokerId, FetchResponse, TopicName};
    use fjord_protocol::kafka_protocol::protocol::StrBytes;
    use std::io::Write;

    /// Our encoding equals kafka-protocol's for the same response, every version.
    #[test]
    fn encoding_matches_kafka_protocol() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let file = Arc::new(file);
        let orders_id = Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        for version in VERSIONS {
            for read_committed in [false, true] {
                let slices = vec![
                    FileSlice {
                        file: file.clone(),
                        position: 10,
                        len: 100,
                    },
                    FileSlice {
                        file: file.clone(),
                        position: 200,
                        len: 50,
                    },
                ];
                let ours = encode(
                    version,
                    77,
                    ErrorCode::NONE,
                    read_committed,
                    vec![
                        TopicOut {
                            name: "orders".into(),
                            id: orders_id,
                            partitions: vec![
                                PartitionOut {
                                    partition: 0,
                                    error: ErrorCode::NONE,
                                    high_watermark: 10,
                                    last_stable_offset: 10,
                                    log_start_offset: 2,
                                    records: slices,
                                    records_bytes: 150,
                                },
                                PartitionOut {
                                    partition: 1,
                                    error: ErrorCode::OFFSET_OUT_OF_RANGE,
                                    high_watermark: 5,
                                    last_stable_offset: 5,
                                    log_start_offset: 0,
                                    records: Vec::new(),
                                    records_bytes: 0,
                                },
                            ],
                        },
                        TopicOut {
                            name: "empty".into(),
                            id: Uuid::nil(),
                            partitions: Vec::new(),
                        },
                    ],
                );
                let mut got = Vec::new();
                for c in &ours.chunks {
                    match c {
                        Chunk::Bytes(b) => got.extend_from_slice(b),
                        Chunk::File(f) => f.read_into(&mut got).unwrap(),
                    }
                }
                let mut records = data[10..110].to_vec();
                records.extend_from_slice(&data[200..250]);
                let aborted = read_committed.then(Vec::<AbortedTransaction>::new);
                let part = |i: i32, code: i16, hw: i64, start: i64, recs: Vec<u8>| {
                    PartitionData::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(if version >= 5 { start } else { -1 })
                        .with_aborted_transactions(aborted.clone())
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(Bytes::from(recs)))
                };
                let expected = FetchResponse::default().with_responses(vec![
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str("orders")))
                        .with_topic_id(orders_id)
                        .with_partitions(vec![
                            part(0, 0, 10, 2, records),
                            part(1, ErrorCode::OFFSET_OUT_OF_RANGE.0, 5, 0, Vec::new()),
                        ]),
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str("empty"))),
                ]);
                let mut want = BytesMut::new();
                fjord_protocol::encode_response(
                    77,
                    response_header_version(API_KEY, version),
                    &expected,
                    version,
                    &mut want,
                )
                .unwrap();
                assert_eq!(
                    got,
                    want.to_vec(),
                    "fetch v{version} read_committed={read_committed}"
                );
            }
        }
    }
}
