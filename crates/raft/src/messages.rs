//! The KRaft RPCs as the core sees them: Fjord-side structs with the fields
//! and error codes of Kafka's `Vote`, `BeginQuorumEpoch`, `EndQuorumEpoch`,
//! `Fetch` and `FetchSnapshot` (on `__cluster_metadata`). A missing leader is `None` here
//! where Kafka's wire says `-1`. Mapping these to `kafka-protocol`'s messages
//! is the network layer's job (a later slice of issue 12).

use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};

use crate::log::{Entry, SnapshotId};

/// Kafka's `SNAPSHOT_NOT_FOUND` (98): the asked snapshot is not there.
pub const SNAPSHOT_NOT_FOUND: ErrorCode = ErrorCode(98);
/// Kafka's `POSITION_OUT_OF_RANGE` (99): the asked snapshot position is at or
/// past its end.
pub const POSITION_OUT_OF_RANGE: ErrorCode = ErrorCode(99);

/// A message between two members of the quorum. `correlation_id` is the request header's
/// correlation id: a response echoes its request's, which is how a node
/// tells an answer to its current request from a late or duplicated one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub correlation_id: u64,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    BeginQuorumEpochRequest(BeginQuorumEpochRequest),
    BeginQuorumEpochResponse(BeginQuorumEpochResponse),
    EndQuorumEpochRequest(EndQuorumEpochRequest),
    EndQuorumEpochResponse(EndQuorumEpochResponse),
    FetchRequest(FetchRequest),
    FetchResponse(FetchResponse),
    FetchSnapshotRequest(FetchSnapshotRequest),
    FetchSnapshotResponse(FetchSnapshotResponse),
}

/// Vote (also the pre-vote of KIP-996 when `pre_vote`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    pub cluster_id: String,
    pub candidate_id: NodeId,
    /// Kafka's `ReplicaEpoch`: the sender's current epoch — for a vote the
    /// epoch it stands in, for a pre-vote the epoch it would leave (it would
    /// stand in the next one). A voter in an older epoch moves to it.
    pub candidate_epoch: LeaderEpoch,
    /// Whom the request is for (KIP-853's voter key, without directory id).
    pub voter_id: NodeId,
    /// Epoch of the candidate's last log entry.
    pub last_offset_epoch: LeaderEpoch,
    /// The candidate's log end offset.
    pub last_offset: Offset,
    pub pre_vote: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    pub error_code: ErrorCode,
    /// The voter's current epoch and the leader it knows in it.
    pub leader_epoch: LeaderEpoch,
    pub leader_id: Option<NodeId>,
    pub vote_granted: bool,
}

/// A new leader tells a voter about its epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginQuorumEpochRequest {
    pub cluster_id: String,
    pub leader_id: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub voter_id: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginQuorumEpochResponse {
    pub error_code: ErrorCode,
    pub leader_epoch: LeaderEpoch,
    pub leader_id: Option<NodeId>,
}

/// A leader gives its epoch up (check-quorum resignation or shutdown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndQuorumEpochRequest {
    pub cluster_id: String,
    pub leader_id: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub preferred_successors: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndQuorumEpochResponse {
    pub error_code: ErrorCode,
    pub leader_epoch: LeaderEpoch,
    pub leader_id: Option<NodeId>,
}

/// A follower's (or an observer's) Fetch of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub cluster_id: String,
    /// The fetching node's id, voter or observer (Kafka's `ReplicaId`).
    pub replica_id: NodeId,
    /// Its metadata log directory id (Kafka's `ReplicaDirectoryId`, KIP-853;
    /// 0: none): with the id, the replica a leader adds as a voter.
    pub replica_directory_id: u128,
    pub current_leader_epoch: LeaderEpoch,
    /// The follower's log end offset, all of it durable on the follower.
    pub fetch_offset: Offset,
    /// Epoch of the follower's entry just below `fetch_offset`.
    pub last_fetched_epoch: LeaderEpoch,
    /// Kafka's `MaxWaitMs`: how long the leader may hold the request while
    /// it has nothing new to send (long polling); 0 answers at once.
    pub max_wait_ms: i64,
}

/// KIP-595: where the follower's log stops matching the leader's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DivergingEpoch {
    pub epoch: LeaderEpoch,
    pub end_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    pub error_code: ErrorCode,
    pub leader_epoch: LeaderEpoch,
    pub leader_id: Option<NodeId>,
    pub high_watermark: Offset,
    pub diverging_epoch: Option<DivergingEpoch>,
    /// KIP-630's `SnapshotId`: the fetch offset is below the leader's log
    /// start (or its epoch is older than the snapshot's): fetch this
    /// snapshot with FetchSnapshot, then Fetch from its end. `None` is
    /// Kafka's `(-1, -1)`.
    pub snapshot_id: Option<SnapshotId>,
    /// Entries from `fetch_offset` on (empty with a diverging epoch or a
    /// snapshot id).
    pub records: Vec<Entry>,
}

/// KIP-630: a follower fetches a part of the leader's snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSnapshotRequest {
    pub cluster_id: String,
    pub replica_id: NodeId,
    /// Most bytes in the response (Kafka's `MaxBytes`).
    pub max_bytes: u32,
    pub current_leader_epoch: LeaderEpoch,
    pub snapshot_id: SnapshotId,
    /// Byte position in the snapshot to read from.
    pub position: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSnapshotResponse {
    /// `SNAPSHOT_NOT_FOUND`, `POSITION_OUT_OF_RANGE`, or the leader-only
    /// request errors of Fetch.
    pub error_code: ErrorCode,
    /// Kafka's `CurrentLeader`.
    pub leader_epoch: LeaderEpoch,
    pub leader_id: Option<NodeId>,
    pub snapshot_id: SnapshotId,
    /// The whole snapshot's size in bytes.
    pub size: u64,
    /// Where `bytes` start in the snapshot.
    pub position: u64,
    /// Kafka's `UnalignedRecords`: raw snapshot bytes.
    pub bytes: Vec<u8>,
}
