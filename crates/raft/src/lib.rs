//! The KRaft quorum core (issue 12, first slice): Apache Kafka's quorum
//! protocol (KIP-595, with KIP-996 pre-vote) as a deterministic, sans-IO
//! state machine, and a seeded simulator that checks it.
//!
//! - [`node::Node`] is one voter. Time, received messages, client
//!   proposals and flush completions go in ([`node::Input`]); messages,
//!   log operations (append as leader, append as follower, truncate,
//!   flush), durable quorum-state writes and high-watermark advances come
//!   out ([`node::Output`]). Roles: unattached, prospective (pre-vote),
//!   candidate, leader, follower, resigned. Static voters
//!   (`controller.quorum.voters`). Randomized timeouts come from a seed the
//!   caller passes ([`rng::Rng`]); there is no global state.
//! - Replication is pull-based as in Kafka: a follower fetches with its log
//!   end offset and the epoch of its last entry, only once everything it
//!   appended is durable (so the offset it reports is durable); the leader
//!   answers with entries, or with a diverging epoch and the end offset of
//!   that epoch in its own log, and the follower truncates and fetches
//!   again. The leader's high watermark is the largest offset that a
//!   majority of voters hold durably, counted only once the
//!   `LeaderChange` entry that opens its epoch is covered; it never moves
//!   back. Followers learn it from Fetch responses. A leader that is not
//!   fetched from by a majority within 1.5 fetch timeouts resigns
//!   (check-quorum) and sends EndQuorumEpoch.
//! - [`messages`] holds the RPCs with Kafka's fields and error codes; their
//!   wire mapping to `kafka-protocol` comes with the network slice.
//! - [`sim`] runs N voters over a faulty network (loss, delay, duplication,
//!   reordering, partitions), with crashes that lose unsynced log suffixes,
//!   clock drift and a random workload, and checks the safety invariants
//!   after every step (see its docs). `tests/sim.rs` runs thousands of seeds.
//!
//! Not yet here (later slices): snapshots and FetchSnapshot (KIP-630),
//! observers, dynamic voters, long-polling Fetch, the wire mapping, and
//! the `MetadataQuorum` adapter that puts this core behind
//! `fjord_metadata::quorum`.

pub mod log;
pub mod messages;
pub mod node;
pub mod rng;
pub mod sim;

pub use log::{Entry, EntryData, LogMeta, LogReader};
pub use node::{Config, Input, Node, Output, PersistedState, RoleKind};
