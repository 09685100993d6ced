//! Kafka's quorum RPCs on the wire, mapped to and from the core's
//! [`fjord_raft::messages`].
//!
//! Shapes follow Apache Kafka 4.3.1's schemas and `KafkaRaftClient`: one
//! topic (`__cluster_metadata`; in Fetch v13+ its topic id
//! `AAAAAAAAAAAAAAAAAAAAAQ`, Kafka's `Uuid.METADATA_TOPIC_ID`) with one
//! partition (0). Fetch names its replica in `ReplicaState` (v15+) or
//! `replica_id`, carries `last_fetched_epoch`, and its response carries
//! `diverging_epoch` and `current_leader`. A wrong cluster id
//! (INCONSISTENT_CLUSTER_ID) and a request for another topic or partition
//! (INVALID_REQUEST) are answered in the top-level error code, as Kafka
//! does; every other error (FENCED_LEADER_EPOCH, INCONSISTENT_VOTER_SET,
//! NOT_LEADER_OR_FOLLOWER, ...) in the partition's. A null cluster id is
//! accepted (Kafka's `hasValidClusterId`).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use fjord_metadata::control::ControlRecord;
use fjord_model::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};
use fjord_protocol::kafka_protocol::messages as km;
use fjord_protocol::kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_protocol::Request;
use fjord_raft::messages::*;
use fjord_raft::{Entry, EntryData, VoterKey};
use uuid::Uuid;

pub use fjord_metadata::log::METADATA_TOPIC;

/// Kafka's `Uuid.METADATA_TOPIC_ID`: the topic id of `__cluster_metadata`.
pub const METADATA_TOPIC_ID: Uuid = Uuid::from_u64_pair(0, 1);
/// Versions we send (Kafka 4.3.1's newest; Vote v2 carries the pre-vote flag).
pub const VOTE_VERSION: i16 = 2;
pub const BEGIN_QUORUM_EPOCH_VERSION: i16 = 1;
pub const END_QUORUM_EPOCH_VERSION: i16 = 1;
pub const FETCH_VERSION: i16 = 17;
/// Client id of our quorum connections.
pub const CLIENT_ID: &str = "raft-client";

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn leader_wire(l: Option<NodeId>) -> BrokerId {
    BrokerId(l.map_or(-1, |n| n.0))
}

fn leader_core(l: BrokerId) -> Option<NodeId> {
    (l.0 >= 0).then_some(NodeId(l.0))
}

/// Where the error of a response goes on the wire.
fn top_level(code: ErrorCode) -> bool {
    code == ErrorCode::INCONSISTENT_CLUSTER_ID || code == ErrorCode::INVALID_REQUEST
}

/// The API key and the version we use for a core message.
pub fn api_of(msg: &Message) -> (ApiKey, i16) {
    match msg {
        Message::VoteRequest(_) | Message::VoteResponse(_) => (ApiKey::Vote, VOTE_VERSION),
        Message::BeginQuorumEpochRequest(_) | Message::BeginQuorumEpochResponse(_) => {
            (ApiKey::BeginQuorumEpoch, BEGIN_QUORUM_EPOCH_VERSION)
        }
        Message::EndQuorumEpochRequest(_) | Message::EndQuorumEpochResponse(_) => {
            (ApiKey::EndQuorumEpoch, END_QUORUM_EPOCH_VERSION)
        }
        Message::FetchRequest(_) | Message::FetchResponse(_) => (ApiKey::Fetch, FETCH_VERSION),
        // Not mapped on the wire yet: request_frame / response_frame refuse it.
        Message::FetchSnapshotRequest(_) | Message::FetchSnapshotResponse(_) => {
            (ApiKey::FetchSnapshot, 0)
        }
    }
}

pub fn is_request(msg: &Message) -> bool {
    matches!(
        msg,
        Message::VoteRequest(_)
            | Message::BeginQuorumEpochRequest(_)
            | Message::EndQuorumEpochRequest(_)
            | Message::FetchRequest(_)
            | Message::FetchSnapshotRequest(_)
    )
}

/// A received request the core cannot take: answer it with `code` (and
/// change nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused(pub ErrorCode);

fn one_partition<T>(topics: Vec<(bool, Vec<(i32, T)>)>) -> Result<T, Refused> {
    let mut topics = topics.into_iter();
    match (topics.next(), topics.next()) {
        (Some((true, parts)), None) => {
            let mut parts = parts.into_iter();
            match (parts.next(), parts.next()) {
                (Some((0, p)), None) => Ok(p),
                _ => Err(Refused(ErrorCode::INVALID_REQUEST)),
            }
        }
        _ => Err(Refused(ErrorCode::INVALID_REQUEST)),
    }
}

fn cluster(id: Option<StrBytes>, own: &str) -> String {
    id.map_or_else(|| own.to_string(), |s| s.to_string())
}

/// A decoded request for the core: who sent it (as the request names
/// itself) and the message. `own_id` / `own_cluster_id` stand in for
/// fields older versions lack (Vote v0 and BeginQuorumEpoch v0 name no
/// voter) and for a null cluster id.
pub fn request_to_message(
    req: Request,
    version: i16,
    own_id: NodeId,
    own_cluster_id: &str,
) -> Result<(NodeId, Message), Refused> {
    let is_meta = |name: &TopicName| &**name == METADATA_TOPIC;
    match req {
        Request::Vote(r) => {
            let topics = r
                .topics
                .into_iter()
                .map(|t| {
                    let ok = is_meta(&t.topic_name);
                    (
                        ok,
                        t.partitions
                            .into_iter()
                            .map(|p| (p.partition_index, p))
                            .collect(),
                    )
                })
                .collect();
            let p = one_partition(topics)?;
            let voter = if version >= 1 {
                NodeId(r.voter_id.0)
            } else {
                own_id
            };
            let from = NodeId(p.replica_id.0);
            Ok((
                from,
                Message::VoteRequest(VoteRequest {
                    cluster_id: cluster(r.cluster_id, own_cluster_id),
                    candidate_id: from,
                    candidate_epoch: LeaderEpoch(p.replica_epoch),
                    voter_id: voter,
                    last_offset_epoch: LeaderEpoch(p.last_offset_epoch),
                    last_offset: Offset(p.last_offset),
                    pre_vote: p.pre_vote,
                }),
            ))
        }
        Request::BeginQuorumEpoch(r) => {
            let topics = r
                .topics
                .into_iter()
                .map(|t| {
                    let ok = is_meta(&t.topic_name);
                    (
                        ok,
                        t.partitions
                            .into_iter()
                            .map(|p| (p.partition_index, p))
                            .collect(),
                    )
                })
                .collect();
            let p = one_partition(topics)?;
            let voter = if version >= 1 {
                NodeId(r.voter_id.0)
            } else {
                own_id
            };
            let from = NodeId(p.leader_id.0);
            Ok((
                from,
                Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
                    cluster_id: cluster(r.cluster_id, own_cluster_id),
                    leader_id: from,
                    leader_epoch: LeaderEpoch(p.leader_epoch),
                    voter_id: voter,
                }),
            ))
        }
        Request::EndQuorumEpoch(r) => {
            let topics = r
                .topics
                .into_iter()
                .map(|t| {
                    let ok = is_meta(&t.topic_name);
                    (
                        ok,
                        t.partitions
                            .into_iter()
                            .map(|p| (p.partition_index, p))
                            .collect(),
                    )
                })
                .collect();
            let p = one_partition(topics)?;
            let from = NodeId(p.leader_id.0);
            let preferred_successors = if version >= 1 {
                p.preferred_candidates
                    .iter()
                    .map(|c| NodeId(c.candidate_id.0))
                    .collect()
            } else {
                p.preferred_successors.iter().map(|v| NodeId(*v)).collect()
            };
            Ok((
                from,
                Message::EndQuorumEpochRequest(EndQuorumEpochRequest {
                    cluster_id: cluster(r.cluster_id, own_cluster_id),
                    leader_id: from,
                    leader_epoch: LeaderEpoch(p.leader_epoch),
                    preferred_successors,
                }),
            ))
        }
        Request::Fetch(r) => {
            let replica = if version >= 15 {
                r.replica_state.replica_id
            } else {
                r.replica_id
            };
            let topics = r
                .topics
                .into_iter()
                .map(|t| {
                    let ok = if version >= 13 {
                        t.topic_id == METADATA_TOPIC_ID
                    } else {
                        is_meta(&t.topic)
                    };
                    (
                        ok,
                        t.partitions.into_iter().map(|p| (p.partition, p)).collect(),
                    )
                })
                .collect();
            let p = one_partition(topics)?;
            let from = NodeId(replica.0);
            Ok((
                from,
                Message::FetchRequest(FetchRequest {
                    cluster_id: cluster(r.cluster_id, own_cluster_id),
                    replica_id: from,
                    replica_directory_id: p.replica_directory_id.as_u128(),
                    current_leader_epoch: LeaderEpoch(p.current_leader_epoch),
                    fetch_offset: Offset(p.fetch_offset),
                    last_fetched_epoch: LeaderEpoch(p.last_fetched_epoch),
                    max_wait_ms: i64::from(r.max_wait_ms.max(0)),
                }),
            ))
        }
        _ => Err(Refused(ErrorCode::INVALID_REQUEST)),
    }
}

/// The response of the same API as `request` carrying `code` and this
/// node's epoch and leader (for requests the core does not answer).
pub fn error_response(
    request: &Message,
    code: ErrorCode,
    epoch: LeaderEpoch,
    leader_id: Option<NodeId>,
) -> Message {
    match request {
        Message::VoteRequest(_) | Message::VoteResponse(_) => Message::VoteResponse(VoteResponse {
            error_code: code,
            leader_epoch: epoch,
            leader_id,
            vote_granted: false,
        }),
        Message::BeginQuorumEpochRequest(_) | Message::BeginQuorumEpochResponse(_) => {
            Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
                error_code: code,
                leader_epoch: epoch,
                leader_id,
            })
        }
        Message::EndQuorumEpochRequest(_) | Message::EndQuorumEpochResponse(_) => {
            Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
                error_code: code,
                leader_epoch: epoch,
                leader_id,
            })
        }
        Message::FetchRequest(_) | Message::FetchResponse(_) => {
            Message::FetchResponse(FetchResponse {
                error_code: code,
                leader_epoch: epoch,
                leader_id,
                high_watermark: Offset(-1),
                diverging_epoch: None,
                snapshot_id: None,
                records: Vec::new(),
            })
        }
        Message::FetchSnapshotRequest(r) => Message::FetchSnapshotResponse(FetchSnapshotResponse {
            error_code: code,
            leader_epoch: epoch,
            leader_id,
            snapshot_id: r.snapshot_id,
            size: 0,
            position: r.position,
            bytes: Vec::new(),
        }),
        Message::FetchSnapshotResponse(r) => {
            Message::FetchSnapshotResponse(FetchSnapshotResponse {
                error_code: code,
                leader_epoch: epoch,
                leader_id,
                bytes: Vec::new(),
                ..r.clone()
            })
        }
    }
}

/// An error response for a request that could not even be mapped (wrong
/// topic, partition or API).
pub fn refusal_frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    code: ErrorCode,
) -> Result<BytesMut, String> {
    let stand_in = match ApiKey::try_from(api_key) {
        Ok(ApiKey::Vote) => Message::VoteResponse(VoteResponse {
            error_code: code,
            leader_epoch: LeaderEpoch(-1),
            leader_id: None,
            vote_granted: false,
        }),
        Ok(ApiKey::BeginQuorumEpoch) => {
            Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
                error_code: code,
                leader_epoch: LeaderEpoch(-1),
                leader_id: None,
            })
        }
        Ok(ApiKey::EndQuorumEpoch) => Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
            error_code: code,
            leader_epoch: LeaderEpoch(-1),
            leader_id: None,
        }),
        Ok(ApiKey::Fetch) => Message::FetchResponse(FetchResponse {
            error_code: code,
            leader_epoch: LeaderEpoch(-1),
            leader_id: None,
            high_watermark: Offset(-1),
            diverging_epoch: None,
            snapshot_id: None,
            records: Vec::new(),
        }),
        _ => return Err(format!("no quorum API {api_key}")),
    };
    // Refusals are always top-level on the wire.
    response_frame(correlation_id, version, &stand_in, None, true)
}

fn encode<R: Encodable>(
    api: ApiKey,
    correlation_id: i32,
    version: i16,
    body: &R,
) -> Result<BytesMut, String> {
    let mut out = BytesMut::new();
    let hv = fjord_protocol::response_header_version(api as i16, version);
    fjord_protocol::encode_response(correlation_id, hv, body, version, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Encodes a core response as Kafka's response frame (size prefix,
/// header, body) at `version`. `records` are the Fetch response's raw
/// batches (read from the log: the entries' exact bytes).
/// `force_top_level` puts the error in the top-level field.
pub fn response_frame(
    correlation_id: i32,
    version: i16,
    msg: &Message,
    records: Option<Bytes>,
    force_top_level: bool,
) -> Result<BytesMut, String> {
    response_frame_with_leader(correlation_id, version, msg, records, force_top_level, None)
}

/// [`response_frame`], and a Fetch response names the leader's CONTROLLER
/// endpoint in its `NodeEndpoints` (v16+) when `leader` gives it, as
/// Kafka's does: an observer that found the leader through a bootstrap
/// server learns from it where to fetch (KIP-853).
pub fn response_frame_with_leader(
    correlation_id: i32,
    version: i16,
    msg: &Message,
    records: Option<Bytes>,
    force_top_level: bool,
    leader: Option<(NodeId, SocketAddr)>,
) -> Result<BytesMut, String> {
    let split = |code: ErrorCode| {
        if force_top_level || top_level(code) {
            (code.0, ErrorCode::NONE.0)
        } else {
            (ErrorCode::NONE.0, code.0)
        }
    };
    match msg {
        Message::VoteResponse(r) => {
            let (top, part) = split(r.error_code);
            let p = km::vote_response::PartitionData::default()
                .with_partition_index(0)
                .with_error_code(part)
                .with_leader_id(leader_wire(r.leader_id))
                .with_leader_epoch(r.leader_epoch.0)
                .with_vote_granted(r.vote_granted);
            let t = km::vote_response::TopicData::default()
                .with_topic_name(TopicName(sb(METADATA_TOPIC)))
                .with_partitions(vec![p]);
            let body = km::VoteResponse::default()
                .with_error_code(top)
                .with_topics(if top == 0 { vec![t] } else { vec![] });
            encode(ApiKey::Vote, correlation_id, version, &body)
        }
        Message::BeginQuorumEpochResponse(r) => {
            let (top, part) = split(r.error_code);
            let p = km::begin_quorum_epoch_response::PartitionData::default()
                .with_partition_index(0)
                .with_error_code(part)
                .with_leader_id(leader_wire(r.leader_id))
                .with_leader_epoch(r.leader_epoch.0);
            let t = km::begin_quorum_epoch_response::TopicData::default()
                .with_topic_name(TopicName(sb(METADATA_TOPIC)))
                .with_partitions(vec![p]);
            let body = km::BeginQuorumEpochResponse::default()
                .with_error_code(top)
                .with_topics(if top == 0 { vec![t] } else { vec![] });
            encode(ApiKey::BeginQuorumEpoch, correlation_id, version, &body)
        }
        Message::EndQuorumEpochResponse(r) => {
            let (top, part) = split(r.error_code);
            let p = km::end_quorum_epoch_response::PartitionData::default()
                .with_partition_index(0)
                .with_error_code(part)
                .with_leader_id(leader_wire(r.leader_id))
                .with_leader_epoch(r.leader_epoch.0);
            let t = km::end_quorum_epoch_response::TopicData::default()
                .with_topic_name(TopicName(sb(METADATA_TOPIC)))
                .with_partitions(vec![p]);
            let body = km::EndQuorumEpochResponse::default()
                .with_error_code(top)
                .with_topics(if top == 0 { vec![t] } else { vec![] });
            encode(ApiKey::EndQuorumEpoch, correlation_id, version, &body)
        }
        Message::FetchResponse(r) => {
            let (top, part) = split(r.error_code);
            let mut p = km::fetch_response::PartitionData::default()
                .with_partition_index(0)
                .with_error_code(part)
                .with_high_watermark(r.high_watermark.0)
                .with_current_leader(
                    km::fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(leader_wire(r.leader_id))
                        .with_leader_epoch(r.leader_epoch.0),
                )
                .with_records(Some(records.unwrap_or_default()));
            if let Some(d) = r.diverging_epoch {
                p = p.with_diverging_epoch(
                    km::fetch_response::EpochEndOffset::default()
                        .with_epoch(d.epoch.0)
                        .with_end_offset(d.end_offset.0),
                );
            }
            if let Some(s) = r.snapshot_id {
                p = p.with_snapshot_id(
                    km::fetch_response::SnapshotId::default()
                        .with_end_offset(s.end_offset.0)
                        .with_epoch(s.epoch.0),
                );
            }
            let t = km::fetch_response::FetchableTopicResponse::default()
                .with_topic(TopicName(sb(METADATA_TOPIC)))
                .with_topic_id(METADATA_TOPIC_ID)
                .with_partitions(vec![p]);
            let endpoints = leader
                .filter(|(id, _)| version >= 16 && r.leader_id == Some(*id))
                .map(|(id, addr)| {
                    km::fetch_response::NodeEndpoint::default()
                        .with_node_id(BrokerId(id.0))
                        .with_host(sb(&addr.ip().to_string()))
                        .with_port(i32::from(addr.port()))
                })
                .into_iter()
                .collect();
            let body = km::FetchResponse::default()
                .with_error_code(top)
                .with_responses(if top == 0 { vec![t] } else { vec![] })
                .with_node_endpoints(endpoints);
            encode(ApiKey::Fetch, correlation_id, version, &body)
        }
        other => Err(format!("not a response: {other:?}")),
    }
}

/// Encodes a core request as Kafka's request frame at our version.
pub fn request_frame(msg: &Message, correlation_id: i32) -> Result<BytesMut, String> {
    let e = |e: fjord_client::ClientError| e.to_string();
    match msg {
        Message::VoteRequest(r) => {
            let p = km::vote_request::PartitionData::default()
                .with_partition_index(0)
                .with_replica_epoch(r.candidate_epoch.0)
                .with_replica_id(BrokerId(r.candidate_id.0))
                .with_last_offset_epoch(r.last_offset_epoch.0)
                .with_last_offset(r.last_offset.0)
                .with_pre_vote(r.pre_vote);
            let t = km::vote_request::TopicData::default()
                .with_topic_name(TopicName(sb(METADATA_TOPIC)))
                .with_partitions(vec![p]);
            let body = km::VoteRequest::default()
                .with_cluster_id(Some(sb(&r.cluster_id)))
                .with_voter_id(BrokerId(r.voter_id.0))
                .with_topics(vec![t]);
            fjord_client::encode_request(&body, VOTE_VERSION, correlation_id, CLIENT_ID).map_err(e)
        }
        Message::BeginQuorumEpochRequest(r) => {
            let p = km::begin_quorum_epoch_request::PartitionData::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(r.leader_id.0))
                .with_leader_epoch(r.leader_epoch.0);
            let t = km::begin_quorum_epoch_request::TopicData::default()
                .with_topic_name(TopicName(sb(METADATA_TOPIC)))
                .with_partitions(vec![p]);
            let body = km::BeginQuorumEpochRequest::default()
                .with_cluster_id(Some(sb(&r.cluster_id)))
                .with_voter_id(BrokerId(r.voter_id.0))
                .with_topics(vec![t]);
            fjord_client::encode_request(
                &body,
                BEGIN_QUORUM_EPOCH_VERSION,
                correlation_id,
                CLIENT_ID,
            )
            .map_err(e)
        }
        Message::EndQuorumEpochRequest(r) => {
            let candidates = r
                .preferred_successors
                .iter()
                .map(|n| {
                    km::end_quorum_epoch_request::ReplicaInfo::default()
                        .with_candidate_id(BrokerId(n.0))
                })
                .collect();
            let p = km::end_quorum_epoch_request::PartitionData::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(r.leader_id.0))
                .with_leader_epoch(r.leader_epoch.0)
                .with_preferred_candidates(candidates);
            let t = km::end_quorum_epoch_request::TopicData::default()
                .with_topic_name(TopicName(sb(METADATA_TOPIC)))
                .with_partitions(vec![p]);
            let body = km::EndQuorumEpochRequest::default()
                .with_cluster_id(Some(sb(&r.cluster_id)))
                .with_topics(vec![t]);
            fjord_client::encode_request(&body, END_QUORUM_EPOCH_VERSION, correlation_id, CLIENT_ID)
                .map_err(e)
        }
        Message::FetchRequest(r) => {
            let p = km::fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(r.current_leader_epoch.0)
                .with_fetch_offset(r.fetch_offset.0)
                .with_last_fetched_epoch(r.last_fetched_epoch.0)
                .with_replica_directory_id(Uuid::from_u128(r.replica_directory_id))
                .with_log_start_offset(-1)
                .with_partition_max_bytes(FETCH_PARTITION_BYTES_MAX);
            let t = km::fetch_request::FetchTopic::default()
                .with_topic(TopicName(sb(METADATA_TOPIC)))
                .with_topic_id(METADATA_TOPIC_ID)
                .with_partitions(vec![p]);
            let body = km::FetchRequest::default()
                .with_cluster_id(Some(sb(&r.cluster_id)))
                .with_replica_state(
                    km::fetch_request::ReplicaState::default()
                        .with_replica_id(BrokerId(r.replica_id.0))
                        .with_replica_epoch(-1),
                )
                .with_max_wait_ms(i32::try_from(r.max_wait_ms.max(0)).unwrap_or(i32::MAX))
                .with_min_bytes(0)
                .with_max_bytes(FETCH_PARTITION_BYTES_MAX)
                .with_topics(vec![t]);
            fjord_client::encode_request(&body, FETCH_VERSION, correlation_id, CLIENT_ID).map_err(e)
        }
        other => Err(format!("not a request: {other:?}")),
    }
}

/// Most bytes of metadata log one Fetch asks for (Kafka's
/// `controller.quorum.fetch.max.bytes`... its raft client uses 8 MiB).
pub const FETCH_PARTITION_BYTES_MAX: i32 = fjord_model::limits::METADATA_BATCH_BYTES_MAX as i32;

/// A decoded response: the core message and, for Fetch, the raw batches.
pub struct DecodedResponse {
    pub correlation_id: i32,
    pub message: Message,
    pub raw_records: Bytes,
    /// The leader's endpoint a Fetch response names (`NodeEndpoints`).
    pub leader_endpoint: Option<(NodeId, SocketAddr)>,
}

fn pick<T>(mut v: Vec<T>) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v.swap_remove(0))
    }
}

/// Decodes a response frame (without its size prefix) of `api` at `version`.
/// The frame comes from a configured voter and is bounded by the caller.
pub fn decode_response(api: ApiKey, version: i16, frame: Bytes) -> Result<DecodedResponse, String> {
    let err = |top: i16, part: i16| {
        if top != 0 {
            ErrorCode(top)
        } else {
            ErrorCode(part)
        }
    };
    match api {
        ApiKey::Vote => {
            let (cid, r) = fjord_client::decode_response::<km::VoteResponse>(frame, version)?;
            let p = pick(r.topics)
                .and_then(|t| pick(t.partitions))
                .unwrap_or_default();
            let (epoch, leader) = if r.error_code != 0 {
                (LeaderEpoch(-1), None)
            } else {
                (LeaderEpoch(p.leader_epoch), leader_core(p.leader_id))
            };
            Ok(DecodedResponse {
                correlation_id: cid,
                message: Message::VoteResponse(VoteResponse {
                    error_code: err(r.error_code, p.error_code),
                    leader_epoch: epoch,
                    leader_id: leader,
                    vote_granted: r.error_code == 0 && p.error_code == 0 && p.vote_granted,
                }),
                raw_records: Bytes::new(),
                leader_endpoint: None,
            })
        }
        ApiKey::BeginQuorumEpoch => {
            let (cid, r) =
                fjord_client::decode_response::<km::BeginQuorumEpochResponse>(frame, version)?;
            let p = pick(r.topics)
                .and_then(|t| pick(t.partitions))
                .unwrap_or_default();
            let (epoch, leader) = if r.error_code != 0 {
                (LeaderEpoch(-1), None)
            } else {
                (LeaderEpoch(p.leader_epoch), leader_core(p.leader_id))
            };
            Ok(DecodedResponse {
                correlation_id: cid,
                message: Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
                    error_code: err(r.error_code, p.error_code),
                    leader_epoch: epoch,
                    leader_id: leader,
                }),
                raw_records: Bytes::new(),
                leader_endpoint: None,
            })
        }
        ApiKey::EndQuorumEpoch => {
            let (cid, r) =
                fjord_client::decode_response::<km::EndQuorumEpochResponse>(frame, version)?;
            let p = pick(r.topics)
                .and_then(|t| pick(t.partitions))
                .unwrap_or_default();
            let (epoch, leader) = if r.error_code != 0 {
                (LeaderEpoch(-1), None)
            } else {
                (LeaderEpoch(p.leader_epoch), leader_core(p.leader_id))
            };
            Ok(DecodedResponse {
                correlation_id: cid,
                message: Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
                    error_code: err(r.error_code, p.error_code),
                    leader_epoch: epoch,
                    leader_id: leader,
                }),
                raw_records: Bytes::new(),
                leader_endpoint: None,
            })
        }
        ApiKey::Fetch => {
            let (cid, r) = fjord_client::decode_response::<km::FetchResponse>(frame, version)?;
            let p = pick(r.responses).and_then(|t| pick(t.partitions));
            let Some(p) = p.filter(|_| r.error_code == 0) else {
                return Ok(DecodedResponse {
                    correlation_id: cid,
                    message: error_response(
                        &Message::FetchRequest(FetchRequest {
                            cluster_id: String::new(),
                            replica_id: NodeId(-1),
                            replica_directory_id: 0,
                            current_leader_epoch: LeaderEpoch(-1),
                            fetch_offset: Offset(0),
                            last_fetched_epoch: LeaderEpoch(0),
                            max_wait_ms: 0,
                        }),
                        if r.error_code != 0 {
                            ErrorCode(r.error_code)
                        } else {
                            ErrorCode::INVALID_REQUEST
                        },
                        LeaderEpoch(-1),
                        None,
                    ),
                    raw_records: Bytes::new(),
                    leader_endpoint: None,
                });
            };
            let diverging = (p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0)
                .then_some(DivergingEpoch {
                    epoch: LeaderEpoch(p.diverging_epoch.epoch),
                    end_offset: Offset(p.diverging_epoch.end_offset),
                });
            let snapshot_id = (p.snapshot_id.end_offset >= 0 && p.snapshot_id.epoch >= 0)
                .then_some(fjord_raft::SnapshotId {
                    end_offset: Offset(p.snapshot_id.end_offset),
                    epoch: LeaderEpoch(p.snapshot_id.epoch),
                });
            let leader_id = leader_core(p.current_leader.leader_id);
            let leader_endpoint = r
                .node_endpoints
                .iter()
                .filter(|e| Some(NodeId(e.node_id.0)) == leader_id)
                .find_map(|e| {
                    let port = u16::try_from(e.port).ok()?;
                    let ip = e.host.parse::<std::net::IpAddr>().ok()?;
                    Some((NodeId(e.node_id.0), SocketAddr::new(ip, port)))
                });
            let raw = p.records.unwrap_or_default();
            let records = if p.error_code == 0 && diverging.is_none() && snapshot_id.is_none() {
                decode_entries(&raw)?
            } else {
                Vec::new()
            };
            Ok(DecodedResponse {
                correlation_id: cid,
                message: Message::FetchResponse(FetchResponse {
                    error_code: ErrorCode(p.error_code),
                    leader_epoch: LeaderEpoch(p.current_leader.leader_epoch),
                    leader_id,
                    high_watermark: Offset(p.high_watermark),
                    diverging_epoch: diverging,
                    snapshot_id,
                    records,
                }),
                raw_records: raw,
                leader_endpoint,
            })
        }
        other => Err(format!("{other:?} is not a quorum API")),
    }
}

/// The core's entries in concatenated record batches (one entry per
/// offset): a LeaderChange control record becomes
/// [`EntryData::LeaderChange`], a VotersRecord [`EntryData::Voters`] (the
/// voter set from there on), other control records (KIP-853's
/// KRaftVersion) an empty data entry, data records their value.
/// Every batch is checked (framing, CRC) first.
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for item in fjord_records::batches(bytes) {
        let (h, range) = item.map_err(|e| e.to_string())?;
        let batch = &bytes[range];
        fjord_records::validate_batch(batch).map_err(|e| e.to_string())?;
        let epoch = LeaderEpoch(h.partition_leader_epoch);
        let mut bad = None;
        let control = h.is_control();
        fjord_records::visit_records_bounded(batch, DECOMPRESSED_BATCH_BYTES_MAX, |r| {
            let data = if control {
                match ControlRecord::decode(r.key.unwrap_or(&[]), r.value.unwrap_or(&[])) {
                    Ok(ControlRecord::LeaderChange {
                        leader_id, voters, ..
                    }) => EntryData::LeaderChange {
                        leader_id: NodeId(leader_id),
                        voters: voters.into_iter().map(NodeId).collect(),
                    },
                    Ok(ControlRecord::Voters(voters)) => EntryData::Voters(
                        voters
                            .iter()
                            .map(|v| VoterKey::new(NodeId(v.id), v.directory_id.as_u128()))
                            .collect(),
                    ),
                    Ok(_) => EntryData::Data(Vec::new()),
                    Err(e) => {
                        bad = Some(e.to_string());
                        return;
                    }
                }
            } else {
                EntryData::Data(r.value.unwrap_or(&[]).to_vec())
            };
            out.push(Entry {
                offset: Offset(r.offset),
                epoch,
                data,
            });
        })
        .map_err(|e| e.to_string())?;
        if let Some(b) = bad {
            return Err(b);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// Kafka's answer to a request of `api_key` (a quorum API or one of the
/// controller APIs) whose principal was denied on the CONTROLLER listener,
/// as `ControllerApis` answers it (`getErrorResponse` of the request):
/// `code` in every place the response has one (per topic, resource or
/// partition where Kafka lists them), as a whole frame. `body` is the
/// request's body after its header.
pub fn denied_frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    code: ErrorCode,
    body: &mut fjord_protocol::Reader,
) -> Result<BytesMut, String> {
    if let Ok(frame) = refusal_frame(api_key, version, correlation_id, code) {
        return Ok(frame);
    }
    let api = ApiKey::try_from(api_key).map_err(|_| format!("unknown api {api_key}"))?;
    let request = fjord_protocol::decode_request(api_key, version, body)
        .map_err(|e| format!("api {api_key}: {e}"))?;
    let c = code.0;
    let message = || Some(StrBytes::from_static_str("Cluster authorization failed."));
    let frame = |body: &dyn DynEncodable| body.frame(api, correlation_id, version);
    match request {
        Request::BrokerRegistration(_) => {
            frame(&km::BrokerRegistrationResponse::default().with_error_code(c))
        }
        Request::BrokerHeartbeat(_) => {
            frame(&km::BrokerHeartbeatResponse::default().with_error_code(c))
        }
        Request::AlterPartition(_) => {
            frame(&km::AlterPartitionResponse::default().with_error_code(c))
        }
        Request::AllocateProducerIds(_) => {
            frame(&km::AllocateProducerIdsResponse::default().with_error_code(c))
        }
        Request::DescribeQuorum(_) => frame(
            &km::DescribeQuorumResponse::default()
                .with_error_code(c)
                .with_error_message(message()),
        ),
        Request::DescribeCluster(_) => frame(
            &km::DescribeClusterResponse::default()
                .with_error_code(c)
                .with_error_message(message()),
        ),
        Request::CreateTopics(r) => frame(
            &km::CreateTopicsResponse::default().with_topics(
                r.topics
                    .into_iter()
                    .map(|t| {
                        km::create_topics_response::CreatableTopicResult::default()
                            .with_name(t.name)
                            .with_error_code(c)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        Request::DeleteTopics(r) => {
            let mut results: Vec<_> = r
                .topic_names
                .into_iter()
                .map(|name| {
                    km::delete_topics_response::DeletableTopicResult::default()
                        .with_name(Some(name))
                        .with_error_code(c)
                })
                .collect();
            results.extend(r.topics.into_iter().map(|t| {
                km::delete_topics_response::DeletableTopicResult::default()
                    .with_name(t.name)
                    .with_topic_id(t.topic_id)
                    .with_error_code(c)
            }));
            frame(&km::DeleteTopicsResponse::default().with_responses(results))
        }
        Request::CreatePartitions(r) => frame(
            &km::CreatePartitionsResponse::default().with_results(
                r.topics
                    .into_iter()
                    .map(|t| {
                        km::create_partitions_response::CreatePartitionsTopicResult::default()
                            .with_name(t.name)
                            .with_error_code(c)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        Request::AlterConfigs(r) => frame(
            &km::AlterConfigsResponse::default().with_responses(
                r.resources
                    .into_iter()
                    .map(|res| {
                        km::alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name)
                            .with_error_code(c)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        Request::IncrementalAlterConfigs(r) => frame(
            &km::IncrementalAlterConfigsResponse::default().with_responses(
                r.resources
                    .into_iter()
                    .map(|res| {
                        km::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name)
                            .with_error_code(c)
                            .with_error_message(message())
                    })
                    .collect(),
            ),
        ),
        Request::ElectLeaders(r) => frame(
            &km::ElectLeadersResponse::default()
                .with_error_code(c)
                .with_replica_election_results(
                    r.topic_partitions
                        .into_iter()
                        .flatten()
                        .map(|t| {
                            km::elect_leaders_response::ReplicaElectionResult::default()
                                .with_topic(t.topic)
                                .with_partition_result(
                                    t.partitions
                                        .into_iter()
                                        .map(|p| {
                                            km::elect_leaders_response::PartitionResult::default()
                                                .with_partition_id(p)
                                                .with_error_code(c)
                                                .with_error_message(message())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        ),
        _ => Err(format!("api {api_key} is not served on the CONTROLLER listener")),
    }
}

/// A response body [`denied_frame`] can encode whatever its type.
trait DynEncodable {
    fn frame(&self, api: ApiKey, correlation_id: i32, version: i16) -> Result<BytesMut, String>;
}

impl<R: Encodable> DynEncodable for R {
    fn frame(&self, api: ApiKey, correlation_id: i32, version: i16) -> Result<BytesMut, String> {
        encode(api, correlation_id, version, self)
    }
}
