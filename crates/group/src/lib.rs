//! Fjord's consumer-group coordinator: Kafka's classic group protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and committed offsets
//! (OffsetCommit, OffsetFetch, OffsetDelete), plus ListGroups, DescribeGroups
//! and DeleteGroups.
//!
//! It is a deterministic, sans-IO state machine ([`GroupCoordinator`]): it
//! never reads a clock (time comes in as `now_ms`), never does I/O, never
//! spawns. Each call pushes [`Output`]s: responses to requests that were held
//! (JoinGroup, SyncGroup) and records to persist in `__consumer_offsets`.
//!
//! # Contract with the shell (the broker)
//! - Carry out the outputs of one call in order: append every
//!   [`Output::Persist`] durably before sending any response that follows it
//!   in the same batch, and before sending the response a method returns.
//! - After every call, re-read [`GroupCoordinator::next_deadline_ms`] (an index
//!   lookup: groups' timers are kept in a deadline-ordered set) and call
//!   [`GroupCoordinator::tick`] when that time has come; `tick` visits only the
//!   groups that have something due.
//! - OffsetCommit goes through [`GroupCoordinator::commit_offsets_undoable`]:
//!   if its records cannot be appended, pass the returned [`CommitUndo`] to
//!   [`GroupCoordinator::undo_commit`] before the next call, and answer with an
//!   error. Other records are not undone: the in-memory state goes on, and a
//!   restart brings back the last state that was written.
//! - At start-up, feed every record of `__consumer_offsets` in log order to
//!   [`GroupCoordinator::replay`], then call [`GroupCoordinator::finish_replay`].
//! - Every held request (a `RequestToken` passed to `join` or `sync`) gets
//!   exactly one response, possibly much later.
//!
//! # KIP-848 (next)
//! The consumer protocol (ConsumerGroupHeartbeat, server-side assignment) fits
//! beside the classic one without a rewrite: committed offsets, persistence
//! ([`records`]: Kafka's ConsumerGroupMetadata/TargetAssignment/CurrentAssignment
//! records are further key versions 3..=13 of the same topic), replay, expiry
//! and the sans-IO contract stay as they are. A group gets a kind (classic or
//! consumer); the consumer kind keeps per-member epochs and target
//! assignments instead of generations, and its heartbeat is one more method
//! that returns a response directly (no held requests). An assignor runs
//! inside the coordinator as a pure function of subscriptions and topic
//! metadata, which the shell passes in.

mod coordinator;
mod group;
pub mod records;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use fjord_model::limits;
use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex};

pub use coordinator::{CommitUndo, GroupCoordinator, TxnCommitUndo};

/// Kafka's GROUP_SUBSCRIBED_TO_TOPIC (86), answered by OffsetDelete.
pub const GROUP_SUBSCRIBED_TO_TOPIC: ErrorCode = ErrorCode(86);

/// Errors of this crate: records of `__consumer_offsets` that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("__consumer_offsets record truncated while reading {field}")]
    Truncated { field: &'static str },
    #[error("__consumer_offsets record: invalid length {len} for {field}")]
    BadLength { field: &'static str, len: i64 },
    #[error("__consumer_offsets record: {field} is not UTF-8")]
    Utf8 { field: &'static str },
    #[error("__consumer_offsets record: unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("__consumer_offsets record: unknown {kind} value version {version}")]
    UnknownValueVersion { kind: &'static str, version: i16 },
}

/// Settings of the coordinator (Kafka's names in the doc comments).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: i32,
    /// `group.max.size`.
    pub group_members_max: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_bytes_max: usize,
    /// How long a new member whose JoinGroup is held may stay without rejoining.
    pub new_member_join_timeout_ms: i64,
    /// Mixed into generated member ids so ids stay unique across restarts
    /// (the shell passes something random or the start time; tests pass 0).
    pub member_id_seed: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: limits::GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            session_timeout_ms_min: limits::GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: limits::GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT,
            group_members_max: limits::GROUP_MEMBERS_MAX,
            offsets_retention_ms: limits::OFFSETS_RETENTION_MS_DEFAULT,
            offsets_retention_check_interval_ms:
                limits::OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            offset_metadata_bytes_max: limits::OFFSET_METADATA_BYTES_MAX_DEFAULT,
            new_member_join_timeout_ms: limits::GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS,
            member_id_seed: 0,
        }
    }
}

/// Identifies a held request so its response can be routed later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(pub u64);

/// A group's state (Kafka's names via [`GroupState::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
    /// Parse a state name as ListGroups' `states_filter` carries it (case-insensitive, like Kafka).
    pub fn parse(s: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|g| g.as_str().eq_ignore_ascii_case(s))
    }
}

/// One protocol a member supports (an assignor name and its subscription metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    pub session_timeout_ms: i32,
    /// v0 has none: the broker passes the session timeout.
    pub rebalance_timeout_ms: i32,
    /// Empty for a member that has none yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// True for JoinGroup v4+ without `group_instance_id`: a new member first
    /// gets MEMBER_ID_REQUIRED with its id, and joins with it.
    pub require_known_member_id: bool,
    pub client_id: String,
    pub client_host: String,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinMember>,
}

impl JoinResponse {
    pub(crate) fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Sent by the leader only: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub(crate) fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LeaveMember {
    /// Empty when only the instance id is known.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveMemberResult {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: ErrorCode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveResponse {
    /// Group-level error; LeaveGroup v0-v2 (one member) should answer with the
    /// member's error when this is NONE.
    pub error: ErrorCode,
    pub members: Vec<LeaveMemberResult>,
}

#[derive(Clone, Debug)]
pub struct CommitPartition {
    pub partition: PartitionIndex,
    pub offset: Offset,
    pub leader_epoch: LeaderEpoch,
    pub metadata: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CommitTopic {
    pub name: String,
    pub partitions: Vec<CommitPartition>,
}

#[derive(Clone, Debug)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 for a commit outside group management (simple consumers, admin tools).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<CommitTopic>,
}

/// A TxnOffsetCommit: offsets committed by a transactional producer, kept
/// pending until its transaction's marker.
#[derive(Clone, Debug)]
pub struct TxnCommitRequest {
    pub group_id: String,
    pub producer_id: i64,
    /// -1 when not given (before v3, or outside group management).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<CommitTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub partitions: Vec<(PartitionIndex, ErrorCode)>,
}

/// A committed offset as OffsetFetch reports it. Unknown → offset -1,
/// leader epoch -1, empty metadata, no error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: PartitionIndex,
    pub offset: Offset,
    pub leader_epoch: LeaderEpoch,
    pub metadata: String,
    pub error: ErrorCode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedTopic {
    pub name: String,
    pub partitions: Vec<FetchedOffset>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOffsetsResponse {
    pub error: ErrorCode,
    pub topics: Vec<FetchedTopic>,
}

/// A (topic, partitions) selection used by OffsetFetch and OffsetDelete.
#[derive(Clone, Debug)]
pub struct TopicPartitions {
    pub name: String,
    pub partitions: Vec<PartitionIndex>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Subscription metadata for the chosen protocol (Stable groups only, like Kafka).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: ErrorCode,
    /// `Dead` for a group that does not exist (Kafka's answer).
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol ("" when none).
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOffsetsResponse {
    pub error: ErrorCode,
    pub topics: Vec<TopicResult>,
}

/// What the shell must do after a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer a held JoinGroup.
    Join(RequestToken, JoinResponse),
    /// Answer a held SyncGroup.
    Sync(RequestToken, SyncResponse),
    /// Append this record to `__consumer_offsets` (partition: [`offsets_partition_for`]).
    /// `value: None` is a tombstone.
    Persist {
        group_id: String,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it
/// (`abs(hashCode) % partitions`, with abs(i32::MIN) = 0).
pub fn offsets_partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "offsets topic needs at least one partition");
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}
