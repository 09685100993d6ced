//! The networked KRaft metadata quorum (issue 12): the `fjord-raft` core
//! run on a real `__cluster_metadata-0` log and over TCP.
//!
//! - [`wire`]: Kafka's quorum RPCs as Apache Kafka's `KafkaRaftClient`
//!   sends them — Vote (52), BeginQuorumEpoch (53), EndQuorumEpoch (54),
//!   Fetch (1) on `__cluster_metadata` partition 0, DescribeQuorum (55) —
//!   mapped to and from [`fjord_raft::messages`]. Requests are decoded by
//!   `fjord-protocol`'s generated, bounds-checked decoders; responses and
//!   our own requests are encoded with `kafka-protocol`.
//! - [`driver`]: [`RaftQuorum`], a [`fjord_metadata::MetadataQuorum`]
//!   beside `LocalQuorum`: one thread owns the `fjord_raft::Node` and the
//!   log, feeds it time, received RPCs and flush completions, and carries
//!   out its outputs (appends as leader or follower, truncation, fsync, the
//!   `quorum-state` file, messages); committed batches go to the listener
//!   in order on every node.
//! - [`net`]: the CONTROLLER listener (inbound RPCs, plus ApiVersions and
//!   DescribeQuorum for Kafka's tools; the active controller's APIs,
//!   BrokerRegistration, BrokerHeartbeat and AllocateProducerIds, through
//!   the [`ControllerApis`] the broker installs) and one outbound connection per
//!   other voter (connect with backoff, bounded queue, one request in
//!   flight).

pub mod driver;
pub mod net;
pub mod wire;

pub use driver::{QuorumStatus, RaftQuorum, RaftQuorumConfig, Voter};
pub use net::{ConnectionId, ControllerApis, CONTROLLER_APIS};
