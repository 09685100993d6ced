//! Fetch: versions 4..=18. Long poll: the response waits until `min_bytes`
//! are available or `max_wait_ms` passes, woken by appends.
//!
//! Fetch sessions (v7+, KIP-227), with the rules of `crate::fetch_sessions`:
//! a full request with epoch 0 opens a session holding the partitions of
//! its response (its id in the response, 0 when the cache has no room), -1
//! opens none; either closes the session it names. An incremental request
//! (any other epoch) is checked and applied to its session before anything
//! is read (a session error answers at once, with no partitions); the
//! session's partitions are then read as a full request's would be, and the
//! response keeps only those that changed since the last one.
//!
//! From v13 on topics are named by id, in requests and responses; an id we
//! do not know is UNKNOWN_TOPIC_ID for each of its partitions. v14–v18 add
//! nothing a single-node broker must act on: v15 carries the replica's state
//! in a tagged field, v17 and v18 add replica-only tagged fields (directory
//! id, high watermark) that consumers never send, and v16's leader hints
//! (`current_leader`, `node_endpoints`) are filled, as Kafka does, for
//! NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH (KIP-951).
//!
//! A fetch with a replica id (`replica_id` up to v14, `ReplicaState` with
//! the broker epoch from v15) is a follower's: each partition goes through
//! `Partition::follower_fetch` (the follower's progress, the ISR and the
//! high watermark; records up to the log end, whatever the isolation), and
//! a diverging log gets the leader's epoch and end offset in the
//! `diverging_epoch` tagged field (KIP-320), at once.
//!
//! A consumer's fetch (KIP-392) from v11 on may be served by a follower
//! (`Partition::read_from` with `ReadFrom::AnyReplica`: below the
//! follower's own high watermark); before v11 only by the leader. With
//! `replica.selector.class` = Kafka's `RackAwareReplicaSelector` and a
//! `rack_id` in the request, the leader answers a partition that has an
//! eligible follower in that rack with its `preferred_read_replica`, the
//! offsets and no records, at once (Kafka skips the read then).
//!
//! Each partition is read through `fjord_partition::Partition::read_from`, which
//! decides the high watermark, the last stable offset, the leader epoch
//! check (`current_leader_epoch`), the range and, for read_committed, the
//! aborted transactions overlapping it (listed in the response so the client
//! drops their records); a waiting fetch registers
//! with the partitions and is woken by any append through them.
//!
//! The response is encoded here rather than by kafka-protocol so that record
//! data stays in the page cache: each partition's records are file ranges
//! sent with sendfile(2) (see `response.rs`). A test checks the encoding
//! against kafka-protocol's for every version.
//!
//! A consumer over its `consumer_byte_rate` quota gets, at once, an empty
//! response with `throttle_time_ms` (Kafka's `getThrottledResponse`,
//! KIP-219): no partitions, the bytes it would have sent taken back from
//! its rate, no session opened and an incremental session's partitions
//! left as they were (so the next fetch sends what this one held back);
//! its connection reads nothing more for that long (`crate::quotas`). A
//! follower's fetches are not a client's and are never throttled here.
//!
//! A partition named twice in one request is answered once, at its first
//! place, from the position of its last entry, as Kafka's map of wanted
//! partitions does.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fjord_model::{limits, ErrorCode, LeaderEpoch, NodeId, Offset};
use fjord_partition::{Isolation, Partition, ReadFrom};
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::{FetchRequest, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::response_header_version;
use fjord_replication::{FetchOutcome, FollowerFetch};
use fjord_storage::FileSlice;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Ctx, Pending};
use crate::config::ReplicaSelector;
use crate::errors;
use crate::fetch_sessions::{
    self, Incremental, PartitionAnswer, PartitionKey, PartitionRequest, PartitionSeen, TopicRef,
    FINAL_EPOCH, INVALID_SESSION_ID,
};
use crate::quotas::QuotaKind;
use crate::response::{Chunk, Response};
use crate::security::authorizer::{Operation, ResourceType};
use crate::state::now_ms;

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
    /// A follower's (v12+): the epoch of its last batch.
    last_fetched_epoch: i32,
    max_bytes: usize,
}

/// A follower's fetch (Fetch's `replica_id` up to v14, `ReplicaState`
/// from v15): its id and broker epoch (-1 before v15).
#[derive(Clone, Copy)]
struct FromReplica {
    id: NodeId,
    broker_epoch: i64,
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
    /// read_committed: the aborted transactions overlapping the records, as
    /// (producer id, first offset).
    pub aborted_transactions: Vec<(i64, i64)>,
    /// v12+ tagged field 0: a follower's log diverges (KIP-320): the
    /// leader's (epoch, end offset).
    pub diverging_epoch: Option<(i32, i64)>,
    /// v12+ tagged field 1 (filled from v16, KIP-951): the leader and
    /// epoch this node knows, with NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH.
    pub current_leader: Option<(i32, i32)>,
    /// v11+: the replica a consumer should fetch this partition from
    /// instead (KIP-392; -1: none, read here).
    pub preferred_read_replica: i32,
}

/// A broker a `current_leader` hint names (v16+ `node_endpoints`).
pub struct NodeEndpointOut {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

pub struct TopicOut {
    /// Written up to v12.
    pub name: String,
    /// Written from v13 on.
    pub id: Uuid,
    pub partitions: Vec<PartitionOut>,
}

/// What a request does with fetch sessions.
enum Plan {
    /// No session (before v7, epoch -1, or a session the request emptied).
    Sessionless,
    /// Epoch 0: open a session with the partitions of the response.
    Open { privileged: bool },
    /// An incremental fetch: `req.topics` now lists the session's
    /// partitions, in its order, each with what was last sent about it.
    Incremental {
        id: i32,
        epoch: i32,
        seen: Vec<(PartitionKey, PartitionSeen)>,
    },
    /// Answer this at once, with no partitions.
    Error(ErrorCode),
}

pub fn handle(ctx: Ctx, mut req: FetchRequest) -> Pending {
    let plan = session_plan(&ctx, &mut req);
    if let Plan::Error(code) = plan {
        let body = encode(ctx.api_version, ctx.correlation_id, code, false, Vec::new());
        if ctx.broker.metrics.enabled() {
            ctx.broker.metrics.errors_answered(ctx.api_key, [code.0]);
        }
        ctx.log_answered(|| vec![code.0]);
        return Pending::Stream(tokio::spawn(async move { Some(body) }));
    }
    Pending::Stream(tokio::spawn(async move { fetch(ctx, req, plan).await }))
}

fn session_key(by_id: bool, name: &str, id: Uuid, partition: i32) -> PartitionKey {
    PartitionKey {
        topic: if by_id {
            TopicRef::Id(id)
        } else {
            TopicRef::Name(name.to_string())
        },
        partition,
    }
}

/// Resolve the request's session (see the module docs); an incremental
/// request's `topics` become its session's partitions.
fn session_plan(ctx: &Ctx, req: &mut FetchRequest) -> Plan {
    if ctx.api_version < 7 {
        return Plan::Sessionless;
    }
    let by_id = ctx.api_version >= FIRST_TOPIC_ID_VERSION;
    if fetch_sessions::is_full(req.session_epoch) {
        if req.session_id != INVALID_SESSION_ID {
            ctx.broker.fetch_sessions.lock().remove(req.session_id);
        }
        if req.session_epoch == FINAL_EPOCH {
            return Plan::Sessionless;
        }
        let replica = if ctx.api_version >= 15 {
            req.replica_state.replica_id.0
        } else {
            req.replica_id.0
        };
        return Plan::Open {
            privileged: replica >= 0,
        };
    }
    let updates: Vec<(PartitionKey, PartitionRequest)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    session_key(by_id, &t.topic.0, t.topic_id, p.partition),
                    PartitionRequest {
                        fetch_offset: p.fetch_offset,
                        partition_max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                        last_fetched_epoch: p.last_fetched_epoch,
                        log_start_offset: p.log_start_offset,
                    },
                )
            })
        })
        .collect();
    let forgotten: Vec<PartitionKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |&p| session_key(by_id, &t.topic.0, t.topic_id, p))
        })
        .collect();
    let outcome = ctx.broker.fetch_sessions.lock().begin_incremental(
        now_ms(),
        req.session_id,
        req.session_epoch,
        by_id,
        updates,
        &forgotten,
    );
    match outcome {
        Incremental::Error(code) => Plan::Error(code),
        Incremental::Closed => Plan::Sessionless,
        Incremental::Open { epoch, partitions } => {
            req.topics = session_topics(&partitions);
            Plan::Incremental {
                id: req.session_id,
                epoch,
                seen: partitions.into_iter().map(|(k, _, s)| (k, s)).collect(),
            }
        }
    }
}

/// A session's partitions as request topics: consecutive partitions of one
/// topic under one entry, in the session's order.
fn session_topics(
    partitions: &[(PartitionKey, PartitionRequest, PartitionSeen)],
) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (key, r, _) in partitions {
        let part = FetchPartition::default()
            .with_partition(key.partition)
            .with_fetch_offset(r.fetch_offset)
            .with_partition_max_bytes(r.partition_max_bytes)
            .with_current_leader_epoch(r.current_leader_epoch)
            .with_last_fetched_epoch(r.last_fetched_epoch)
            .with_log_start_offset(r.log_start_offset);
        let same = topics.last().is_some_and(|t| match &key.topic {
            TopicRef::Id(id) => t.topic_id == *id,
            TopicRef::Name(name) => *t.topic.0 == **name,
        });
        if same {
            if let Some(t) = topics.last_mut() {
                t.partitions.push(part);
            }
            continue;
        }
        let t = match &key.topic {
            TopicRef::Id(id) => FetchTopic::default().with_topic_id(*id),
            TopicRef::Name(name) => {
                FetchTopic::default().with_topic(TopicName(StrBytes::from_string(name.clone())))
            }
        };
        topics.push(t.with_partitions(vec![part]));
    }
    topics
}

/// What sessions compare of a partition's answer.
fn session_answer(p: &PartitionOut) -> PartitionAnswer {
    PartitionAnswer {
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
        records_bytes: p.records_bytes,
        error: !p.error.is_none(),
        // Kafka's `CachedPartition.maybeUpdateResponseData`: a preferred
        // read replica is always sent.
        must_send: p.diverging_epoch.is_some()
            || p.current_leader.is_some()
            || p.preferred_read_replica >= 0,
    }
}

async fn fetch(ctx: Ctx, req: FetchRequest, plan: Plan) -> Option<Response> {
    let mut wants: Vec<Want> = Vec::new();
    let mut topics = Vec::new();
    // The topics found, by topic index (bytes out are counted on them).
    let mut topic_refs = Vec::with_capacity(req.topics.len());
    let by_id = ctx.api_version >= FIRST_TOPIC_ID_VERSION;
    // Kafka keys a fetch's partitions by topic-partition (the ordered map of
    // `FetchRequest.fetchData`): a partition named twice is answered once, at
    // its first place, for the position of its last entry. The index is kept
    // only when the request names more than one partition.
    let many = req.topics.iter().map(|t| t.partitions.len()).sum::<usize>() > 1;
    let mut first_want: HashMap<(Uuid, &str, i32), usize> = HashMap::new();
    let follower = req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0;
    for (ti, ft) in req.topics.iter().enumerate() {
        let topic = if by_id {
            ctx.broker.topic_by_id(ft.topic_id)
        } else {
            ctx.broker.topic(&ft.topic.0)
        };
        // READ on the topic for a consumer (a follower was checked for
        // CLUSTER_ACTION before dispatch); an unknown topic id stays unknown.
        let denied = !follower
            && (topic.is_some() || !by_id)
            && !ctx.may(
                ResourceType::Topic,
                topic.as_ref().map_or(&*ft.topic.0, |t| t.name.as_str()),
                Operation::Read,
            );
        let topic = if denied { None } else { topic };
        topic_refs.push(topic.clone());
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
                    w.last_fetched_epoch = fp.last_fetched_epoch;
                    w.max_bytes = fp.partition_max_bytes.max(0) as usize;
                    continue;
                }
                first_want.insert(key, wants.len());
            }
            let target = topic.as_ref().and_then(|t| t.partition(fp.partition));
            let error = if denied {
                ErrorCode::TOPIC_AUTHORIZATION_FAILED
            } else if topic.is_none() && by_id {
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
                last_fetched_epoch: fp.last_fetched_epoch,
                max_bytes: fp.partition_max_bytes.max(0) as usize,
            });
        }
    }
    // 0 (or less) allows only the first batch (KIP-74), as in Kafka.
    let response_max = req.max_bytes.max(0) as usize;
    // A consumer with a byte-rate quota gets at most what its quota allows
    // in the whole window (Kafka's `getMaxValueInQuotaWindow`).
    let response_max = match ctx.quota_window_bytes(QuotaKind::Fetch) {
        Some(max) if !follower => response_max.min(max),
        _ => response_max,
    };
    let isolation = Isolation::from_wire(req.isolation_level);
    let replica = if ctx.api_version >= 15 {
        (req.replica_state.replica_id.0 >= 0).then_some(FromReplica {
            id: NodeId(req.replica_state.replica_id.0),
            broker_epoch: req.replica_state.replica_epoch,
        })
    } else {
        (req.replica_id.0 >= 0).then_some(FromReplica {
            id: NodeId(req.replica_id.0),
            broker_epoch: -1,
        })
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait_ms = i64::from(req.max_wait_ms).clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let notify = Arc::new(Notify::new());
    // Registered with every wanted partition since the last wake-up (an append
    // takes the registrations it wakes).
    let mut registered = false;
    // KIP-392: a consumer's Fetch v11+ may be read on a follower, and one
    // naming its rack may be sent to a follower in that rack.
    let read_from = if replica.is_none() && ctx.api_version >= 11 {
        ReadFrom::AnyReplica
    } else {
        ReadFrom::Leader
    };
    let racks = (read_from == ReadFrom::AnyReplica
        && ctx.broker.config.replica_selector == ReplicaSelector::RackAware
        && !req.rack_id.is_empty())
    .then(|| RackSelect {
        client_rack: req.rack_id.to_string(),
        brokers: ctx
            .live_brokers()
            .into_iter()
            .filter_map(|b| Some((b.id, b.rack?)))
            .collect(),
    });
    let how = ReadHow {
        response_max,
        isolation,
        replica,
        read_from,
        racks: racks.as_ref(),
    };
    let parts = loop {
        let (parts, total, any_error) = read_all(&wants, &how);
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
            break read_all(&wants, &how).0;
        }
        registered = false;
    };
    // A consumer over its byte-rate quota gets nothing this time.
    let throttle_ms = if replica.is_none() {
        consumer_throttle_ms(&ctx, &parts)
    } else {
        0
    };
    // Sessions: open one, or keep only what changed in this one.
    let mut session_id = INVALID_SESSION_ID;
    let mut error = ErrorCode::NONE;
    let mut keep: Option<Vec<bool>> = None;
    match &plan {
        // Throttled: the session stays as it was (Kafka's
        // `IncrementalFetchContext.getThrottledResponse`), none is opened.
        Plan::Incremental { id, epoch, .. } if throttle_ms > 0 => {
            session_id = *id;
            if ctx
                .broker
                .fetch_sessions
                .lock()
                .epoch(*id)
                .is_some_and(|e| e != *epoch)
            {
                error = ErrorCode::INVALID_FETCH_SESSION_EPOCH;
            }
        }
        Plan::Open { .. } if throttle_ms > 0 => {}
        Plan::Open { privileged } => {
            let entries = wants
                .iter()
                .zip(&parts)
                .map(|(w, p)| {
                    let t = &topics[w.topic_idx];
                    (
                        session_key(by_id, &t.name, t.id, w.partition),
                        PartitionRequest {
                            fetch_offset: w.fetch_offset,
                            partition_max_bytes: i32::try_from(w.max_bytes).unwrap_or(i32::MAX),
                            current_leader_epoch: w.current_leader_epoch,
                            last_fetched_epoch: w.last_fetched_epoch,
                            log_start_offset: -1,
                        },
                        session_answer(p).seen(),
                    )
                })
                .collect();
            session_id =
                ctx.broker
                    .fetch_sessions
                    .lock()
                    .create(now_ms(), *privileged, by_id, entries);
        }
        Plan::Incremental { id, epoch, seen } => {
            // The session's partitions are all distinct: one want each.
            assert_eq!(
                seen.len(),
                wants.len(),
                "session {id}: partitions and wants differ"
            );
            let answers: Vec<_> = seen
                .iter()
                .zip(&parts)
                .map(|((k, s), p)| (k.clone(), *s, session_answer(p)))
                .collect();
            session_id = *id;
            let finished = ctx
                .broker
                .fetch_sessions
                .lock()
                .finish_incremental(*id, *epoch, &answers);
            keep = Some(finished.unwrap_or_else(|code| {
                error = code;
                vec![false; wants.len()]
            }));
        }
        Plan::Sessionless | Plan::Error(_) => {}
    }
    if throttle_ms > 0 {
        keep = Some(vec![false; wants.len()]);
    }
    let mut endpoints: Vec<NodeEndpointOut> = Vec::new();
    // Kafka counts a follower's fetches apart (ReplicationBytesOutPerSec).
    let metering = ctx.broker.metrics.enabled() && replica.is_none();
    for (i, (w, mut p)) in wants.iter().zip(parts).enumerate() {
        if keep.as_ref().is_some_and(|k| !k[i]) {
            continue;
        }
        if let Some(t) = topic_refs.get(w.topic_idx).and_then(Option::as_ref) {
            if metering && p.records_bytes > 0 {
                t.stats.fetched(p.records_bytes);
            }
        }
        // KIP-951: where the leader is now, for a client to go there at once.
        if ctx.api_version >= 16
            && (p.error == ErrorCode::NOT_LEADER_OR_FOLLOWER
                || p.error == ErrorCode::FENCED_LEADER_EPOCH)
        {
            if let Some(part) = &w.target {
                let r = part.replica_state();
                p.current_leader = Some((r.leader.0, r.leader_epoch.0));
                if r.leader.0 >= 0 && !endpoints.iter().any(|e| e.node_id == r.leader.0) {
                    if let Some(b) = ctx.live_brokers().into_iter().find(|b| b.id == r.leader) {
                        endpoints.push(NodeEndpointOut {
                            node_id: b.id.0,
                            host: b.host,
                            port: i32::from(b.port),
                            rack: b.rack,
                        });
                    }
                }
            }
        }
        topics[w.topic_idx].partitions.push(p);
    }
    if keep.is_some() {
        // An incremental response names only topics with a partition in it,
        // each once per run of its partitions.
        let mut kept: Vec<TopicOut> = Vec::with_capacity(topics.len());
        for t in topics.into_iter().filter(|t| !t.partitions.is_empty()) {
            match kept.last_mut() {
                Some(last) if last.id == t.id && last.name == t.name => {
                    last.partitions.extend(t.partitions)
                }
                _ => kept.push(t),
            }
        }
        topics = kept;
    }
    if ctx.broker.metrics.enabled() {
        ctx.broker.metrics.errors_answered(
            ctx.api_key,
            std::iter::once(error.0).filter(|c| *c != 0).chain(
                topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error.0)),
            ),
        );
    }
    ctx.log_answered(|| {
        let mut codes: Vec<i16> = std::iter::once(error.0)
            .chain(
                topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error.0)),
            )
            .filter(|c| *c != 0)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        codes
    });
    let mut resp = encode_session(
        ctx.api_version,
        ctx.correlation_id,
        error,
        session_id,
        isolation == Isolation::ReadCommitted,
        topics,
        endpoints,
    );
    if throttle_ms > 0 {
        set_throttle_time(&mut resp, ctx.api_version, throttle_ms);
    }
    Some(resp)
}

/// Records the records a consumer's fetch read against its byte-rate quota
/// and returns its throttle time, the larger of the byte rate's and the
/// request quota's (`request_percentage`, recorded when the request was
/// dispatched: what is left of the connection's mute); a throttled fetch
/// sends none of the records, so they are taken back (Kafka's
/// `handleFetchRequest`: record, then unrecord when throttled).
fn consumer_throttle_ms(ctx: &Ctx, parts: &[PartitionOut]) -> i32 {
    if !ctx.broker.quotas.enabled() {
        return 0;
    }
    let request_ms = ctx.throttle.as_ref().map_or(0, |t| {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        i32::try_from(t.muted_for_ms(now)).unwrap_or(i32::MAX)
    });
    let bytes = parts.iter().map(|p| p.records_bytes).sum::<usize>() as f64;
    let throttle_ms = ctx
        .quota_throttle_ms(QuotaKind::Fetch, bytes)
        .max(request_ms);
    if throttle_ms > 0 {
        ctx.quota_unrecord(QuotaKind::Fetch, bytes);
    }
    throttle_ms
}

/// Writes `throttle_ms` into an encoded response's `throttle_time_ms`
/// (the first field of the body, in every version served).
fn set_throttle_time(resp: &mut Response, version: i16, throttle_ms: i32) {
    let at = 8 + usize::from(response_header_version(API_KEY, version) >= 1);
    if let Some(Chunk::Bytes(first)) = resp.chunks.first_mut() {
        if first.len() >= at + 4 {
            let mut head = BytesMut::from(&first[..]);
            head[at..at + 4].copy_from_slice(&throttle_ms.to_be_bytes());
            *first = head.freeze();
        }
    }
}

/// A consumer's rack and the racks of the live brokers, for the
/// rack-aware replica selector (KIP-392).
struct RackSelect {
    client_rack: String,
    /// Live brokers with a rack.
    brokers: HashMap<NodeId, String>,
}

/// How a fetch reads its partitions.
struct ReadHow<'a> {
    response_max: usize,
    isolation: Isolation,
    replica: Option<FromReplica>,
    read_from: ReadFrom,
    /// Set when the leader may name a preferred read replica.
    racks: Option<&'a RackSelect>,
}

/// The follower a consumer should read `w` from instead of this leader
/// (Kafka's `findPreferredReadReplica` with the `RackAwareReplicaSelector`),
/// or `None` to read here.
fn preferred_read_replica(part: &Partition, w: &Want, racks: &RackSelect) -> Option<NodeId> {
    let leader = part.local();
    if part.replica_state().leader != leader {
        return None;
    }
    let candidates = part.read_replica_candidates(Offset(w.fetch_offset), now_ms())?;
    fjord_replication::select_rack_aware(&racks.client_rack, leader, &candidates, |n| {
        racks.brokers.get(&n).cloned()
    })
}

/// Read every wanted partition once. Returns the partitions, the bytes found,
/// and whether some partition has an error or a preferred read replica
/// (either answers at once).
fn read_all(wants: &[Want], how: &ReadHow<'_>) -> (Vec<PartitionOut>, usize, bool) {
    let (response_max, isolation, replica) = (how.response_max, how.isolation, how.replica);
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
            aborted_transactions: Vec::new(),
            diverging_epoch: None,
            current_leader: None,
            preferred_read_replica: -1,
        };
        let Some(part) = w.target.as_ref().filter(|_| w.error.is_none()) else {
            any_error = true;
            out.push(p);
            continue;
        };
        // KIP-74: the first batch of the response comes whole even if larger than the limits.
        let room = response_max.saturating_sub(total).min(w.max_bytes);
        if let Some(r) = replica {
            if follower_read(part, w, r, room, &mut p) {
                any_error = true;
            }
            total += p.records_bytes;
            out.push(p);
            continue;
        }
        // KIP-392: the leader names a follower in the consumer's rack and
        // sends no records (Kafka skips the read then), with the offsets.
        let epoch_ok = part
            .check_leader_epoch(LeaderEpoch(w.current_leader_epoch))
            .is_ok();
        if let Some(node) = how
            .racks
            .filter(|_| epoch_ok)
            .and_then(|racks| preferred_read_replica(part, w, racks))
        {
            p.preferred_read_replica = node.0;
            p.high_watermark = part.high_watermark().0;
            p.last_stable_offset = part.last_stable_offset().0.min(p.high_watermark);
            p.log_start_offset = part.log_start_offset().0;
            any_error = true;
            out.push(p);
            continue;
        }
        let fetched = part.read_from(
            how.read_from,
            Offset(w.fetch_offset),
            room,
            isolation,
            LeaderEpoch(w.current_leader_epoch),
            total == 0,
        );
        p.high_watermark = fetched.high_watermark.0;
        p.last_stable_offset = fetched.last_stable_offset.0;
        p.log_start_offset = fetched.log_start_offset.0;
        p.aborted_transactions = fetched
            .aborted
            .iter()
            .map(|t| (t.producer_id.0, t.first_offset.0))
            .collect();
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

/// A follower's fetch of one partition, through the partition layer
/// (`Partition::follower_fetch`: the follower's progress, the ISR and the
/// high watermark move; records up to the log end). Returns true when the
/// answer must go at once (an error, a diverging epoch).
fn follower_read(
    part: &Partition,
    w: &Want,
    r: FromReplica,
    room: usize,
    p: &mut PartitionOut,
) -> bool {
    let fetch = FollowerFetch {
        replica: r.id,
        broker_epoch: r.broker_epoch,
        fetch_offset: Offset(w.fetch_offset),
        last_fetched_epoch: LeaderEpoch(w.last_fetched_epoch),
        current_leader_epoch: LeaderEpoch(w.current_leader_epoch),
    };
    let fetched = match part.follower_fetch(fetch, room, crate::state::now_ms()) {
        Ok(f) => f,
        Err(e) => {
            let (code, msg) = errors::partition_error(&e);
            tracing::debug!(partition = w.partition, "replica fetch refused: {msg}");
            p.error = code;
            p.high_watermark = part.high_watermark().0;
            p.last_stable_offset = p.high_watermark;
            p.log_start_offset = part.log_start_offset().0;
            return true;
        }
    };
    // The AlterPartition it may ask for is sent by the leader tick.
    let a = fetched.answer;
    p.high_watermark = a.high_watermark.0;
    p.last_stable_offset = a.high_watermark.0;
    p.log_start_offset = a.log_start.0;
    match a.outcome {
        FetchOutcome::Records => {
            if let Some(read) = fetched.records {
                p.records_bytes = read.bytes;
                p.records = read.slices;
            }
            false
        }
        FetchOutcome::Diverging { epoch, end_offset } => {
            p.diverging_epoch = Some((epoch.0, end_offset.0));
            true
        }
        FetchOutcome::Error(code) => {
            p.error = code;
            true
        }
    }
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
    encode_with_endpoints(
        version,
        correlation_id,
        error,
        read_committed,
        topics,
        Vec::new(),
    )
}

/// [`encode`] with v16+ `node_endpoints` (the leaders `current_leader`
/// hints name).
pub fn encode_with_endpoints(
    version: i16,
    correlation_id: i32,
    error: ErrorCode,
    read_committed: bool,
    topics: Vec<TopicOut>,
    endpoints: Vec<NodeEndpointOut>,
) -> Response {
    encode_session(
        version,
        correlation_id,
        error,
        INVALID_SESSION_ID,
        read_committed,
        topics,
        endpoints,
    )
}

/// [`encode_with_endpoints`] in fetch session `session_id` (v7+; 0: none).
pub fn encode_session(
    version: i16,
    correlation_id: i32,
    error: ErrorCode,
    session_id: i32,
    read_committed: bool,
    topics: Vec<TopicOut>,
    endpoints: Vec<NodeEndpointOut>,
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
        e.buf.put_i32(session_id);
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
            // Aborted transactions: only for read_committed. A partition the
            // broker does not know gets an empty list rather than null
            // whatever the isolation, as from Kafka.
            let unknown = p.error == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                || p.error == ErrorCode::UNKNOWN_TOPIC_ID;
            if read_committed {
                e.len_prefix(p.aborted_transactions.len());
                for (producer_id, first_offset) in &p.aborted_transactions {
                    e.buf.put_i64(*producer_id);
                    e.buf.put_i64(*first_offset);
                    if e.flexible {
                        e.buf.put_u8(0); // no tagged fields
                    }
                }
            } else if unknown {
                e.len_prefix(0);
            } else {
                e.null_array();
            }
            if version >= 11 {
                e.buf.put_i32(p.preferred_read_replica);
            }
            // Records are never null, even on errors: an empty array then.
            e.len_prefix(p.records_bytes);
            e.files(p.records);
            if e.flexible {
                let tags = usize::from(p.diverging_epoch.is_some())
                    + usize::from(p.current_leader.is_some());
                put_uvarint(&mut e.buf, tags as u64);
                if let Some((epoch, end_offset)) = p.diverging_epoch {
                    put_uvarint(&mut e.buf, 0);
                    put_uvarint(&mut e.buf, 4 + 8 + 1);
                    e.buf.put_i32(epoch);
                    e.buf.put_i64(end_offset);
                    e.buf.put_u8(0);
                }
                if let Some((leader, epoch)) = p.current_leader {
                    put_uvarint(&mut e.buf, 1);
                    put_uvarint(&mut e.buf, 4 + 4 + 1);
                    e.buf.put_i32(leader);
                    e.buf.put_i32(epoch);
                    e.buf.put_u8(0);
                }
            }
        }
        e.no_tags();
    }
    if version >= 16 && !endpoints.is_empty() {
        // Tagged field 0: NodeEndpoints, encoded aside for its size.
        let mut inner = Enc {
            buf: BytesMut::new(),
            chunks: Vec::new(),
            flexible: true,
        };
        inner.len_prefix(endpoints.len());
        for n in &endpoints {
            inner.buf.put_i32(n.node_id);
            inner.string(&n.host);
            inner.buf.put_i32(n.port);
            match &n.rack {
                Some(r) => inner.string(r),
                None => put_uvarint(&mut inner.buf, 0),
            }
            inner.no_tags();
        }
        put_uvarint(&mut e.buf, 1);
        put_uvarint(&mut e.buf, 0);
        put_uvarint(&mut e.buf, inner.buf.len() as u64);
        e.buf.put_slice(&inner.buf);
    } else {
        e.no_tags();
    }
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
    use fjord_protocol::kafka_protocol::messages::{
        BrokerId, FetchResponse, ProducerId, TopicName,
    };
    use fjord_protocol::kafka_protocol::protocol::StrBytes;
    use std::io::Write;

    /// A throttle time lands where kafka-protocol writes `throttle_time_ms`.
    #[test]
    fn throttle_time_is_patched_into_every_version() {
        for version in VERSIONS {
            let mut ours = encode(version, 77, ErrorCode::NONE, false, Vec::new());
            set_throttle_time(&mut ours, version, 1234);
            let mut want = BytesMut::new();
            fjord_protocol::encode_response(
                77,
                response_header_version(API_KEY, version),
                &FetchResponse::default().with_throttle_time_ms(1234),
                version,
                &mut want,
            )
            .unwrap();
            assert_eq!(ours.to_bytes().unwrap(), want.freeze(), "v{version}");
        }
    }

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
                    FileSlice::in_file(file.clone(), 10, 100),
                    FileSlice {
                        file: file.clone(),
                        position: 200,
                        len: 50,
                        // From the batch cache: the same bytes as the file's.
                        cached: Some(Bytes::copy_from_slice(&data[200..250])),
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
                                    aborted_transactions: if read_committed {
                                        vec![(7, 3), (9, 5)]
                                    } else {
                                        Vec::new()
                                    },
                                    diverging_epoch: None,
                                    current_leader: None,
                                    preferred_read_replica: -1,
                                },
                                PartitionOut {
                                    partition: 1,
                                    error: ErrorCode::OFFSET_OUT_OF_RANGE,
                                    high_watermark: 5,
                                    last_stable_offset: 5,
                                    log_start_offset: 0,
                                    records: Vec::new(),
                                    records_bytes: 0,
                                    aborted_transactions: Vec::new(),
                                    diverging_epoch: None,
                                    current_leader: None,
                                    preferred_read_replica: -1,
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
                let none = read_committed.then(Vec::<AbortedTransaction>::new);
                let some = read_committed.then(|| {
                    [(7, 3), (9, 5)]
                        .into_iter()
                        .map(|(pid, first)| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(pid))
                                .with_first_offset(first)
                        })
                        .collect::<Vec<_>>()
                });
                let part = |i: i32, code: i16, hw: i64, start: i64, recs: Vec<u8>| {
                    let aborted = if i == 0 { some.clone() } else { none.clone() };
                    PartitionData::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(if version >= 5 { start } else { -1 })
                        .with_aborted_transactions(aborted)
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

    /// The replication fields (v12+ tagged: a diverging epoch, a current
    /// leader; v16+ node endpoints) equal kafka-protocol's encoding.
    #[test]
    fn replication_fields_match_kafka_protocol() {
        use fjord_protocol::kafka_protocol::messages::fetch_response::{
            EpochEndOffset, LeaderIdAndEpoch, NodeEndpoint,
        };
        let topic_id = Uuid::from_u128(7);
        for version in FIRST_FLEXIBLE_VERSION..=*VERSIONS.end() {
            let endpoints = version >= 16;
            let ours = encode_with_endpoints(
                version,
                9,
                ErrorCode::NONE,
                false,
                vec![TopicOut {
                    name: "t".into(),
                    id: topic_id,
                    partitions: vec![
                        PartitionOut {
                            partition: 0,
                            error: ErrorCode::NONE,
                            high_watermark: 4,
                            last_stable_offset: 4,
                            log_start_offset: 0,
                            records: Vec::new(),
                            records_bytes: 0,
                            aborted_transactions: Vec::new(),
                            diverging_epoch: Some((3, 17)),
                            current_leader: None,
                            preferred_read_replica: 3,
                        },
                        PartitionOut {
                            partition: 1,
                            error: ErrorCode::NOT_LEADER_OR_FOLLOWER,
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                            records: Vec::new(),
                            records_bytes: 0,
                            aborted_transactions: Vec::new(),
                            diverging_epoch: None,
                            current_leader: Some((2, 5)),
                            preferred_read_replica: -1,
                        },
                    ],
                }],
                if endpoints {
                    vec![NodeEndpointOut {
                        node_id: 2,
                        host: "127.0.0.1".into(),
                        port: 9093,
                        rack: Some("r1".into()),
                    }]
                } else {
                    Vec::new()
                },
            );
            let mut got = Vec::new();
            for c in &ours.chunks {
                match c {
                    Chunk::Bytes(b) => got.extend_from_slice(b),
                    Chunk::File(f) => f.read_into(&mut got).unwrap(),
                }
            }
            let base = |i: i32, code: i16, hw: i64, start: i64| {
                PartitionData::default()
                    .with_partition_index(i)
                    .with_error_code(code)
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(start)
                    .with_aborted_transactions(None)
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_records(Some(Bytes::new()))
            };
            let mut expected =
                FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        base(0, 0, 4, 0)
                            .with_diverging_epoch(
                                EpochEndOffset::default().with_epoch(3).with_end_offset(17),
                            )
                            .with_preferred_read_replica(BrokerId(3)),
                        base(1, ErrorCode::NOT_LEADER_OR_FOLLOWER.0, -1, -1).with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(2))
                                .with_leader_epoch(5),
                        ),
                    ])]);
            if endpoints {
                expected = expected.with_node_endpoints(vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9093)
                    .with_rack(Some(StrBytes::from_static_str("r1")))]);
            }
            let mut want = BytesMut::new();
            fjord_protocol::encode_response(
                9,
                response_header_version(API_KEY, version),
                &expected,
                version,
                &mut want,
            )
            .unwrap();
            assert_eq!(got, want.to_vec(), "fetch v{version}");
        }
    }
}
