//! The KRaft quorum core (issue 12): Apache Kafka's quorum protocol
//! (KIP-595, with KIP-996 pre-vote and KIP-630 snapshots) as a
//! deterministic, sans-IO state machine, and a seeded simulator that checks
//! it.
//!
//! - [`node::Node`] is one voter, or an observer (a node not in the voter
//!   set: it follows the leader by Fetch, finds it by asking the voters, or
//!   the bootstrap servers when it knows none ([`node::Config::bootstrap`]),
//!   never votes or stands, and does not count toward the high watermark).
//!   Time, received messages, client proposals, flush completions and the
//!   state machine's snapshots go in ([`node::Input`]); messages, log
//!   operations (append as leader, append as follower, truncate, flush,
//!   delete below the log start, snapshot chunks and install), durable
//!   quorum-state writes and high-watermark advances come out
//!   ([`node::Output`]). Roles: unattached, prospective (pre-vote),
//!   candidate, leader, follower, resigned. Randomized timeouts come from a
//!   seed the caller passes ([`fjord_sim::Rng`]); there is no global state.
//! - The voter set (KIP-853, Kafka's `VoterSetHistory`): the voter set in
//!   force is the latest `VotersRecord` ([`log::EntryData::Voters`]) in the
//!   log, committed or not, else the one in the snapshot the log starts
//!   from, else the configured one (`controller.quorum.voters` or the
//!   bootstrap checkpoint's); truncating a `VotersRecord` away restores the
//!   set before it ([`log::LogMeta`] keeps the history). Quorum size,
//!   elections, the high watermark and check-quorum use the set in force;
//!   voters are (node id, directory id) ([`log::VoterKey`]). With
//!   `kraft.version` 1 ([`node::Config::reconfigurable`]) the leader
//!   appends a change of one voter at a time ([`node::Input::ChangeVoters`],
//!   Kafka's error codes), and a leader that removed itself resigns once
//!   that change is committed.
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
//!   (check-quorum) and sends EndQuorumEpoch. A leader holds a Fetch it has
//!   nothing for up to its `max_wait_ms` (long polling).
//! - Snapshots (KIP-630): the log starts at the latest snapshot the state
//!   machine took; a follower whose fetch offset is below the leader's log
//!   start gets the snapshot's id, fetches it with FetchSnapshot in chunks,
//!   installs it in place of its log and fetches on from its end.
//! - [`messages`] holds the RPCs with Kafka's fields and error codes; their
//!   wire mapping to `kafka-protocol` comes with the network slice.
//! - [`sim`] runs N voters and M observers over a faulty network (loss,
//!   delay, duplication, reordering, partitions), with crashes that lose
//!   unsynced log suffixes, clock drift, random snapshots and a random
//!   workload, and checks the safety invariants after every step (see its
//!   docs). `tests/sim.rs` runs thousands of seeds.
//!
//! The wire mapping and the `MetadataQuorum` adapter are in `fjord-quorum`
//! (which asks for voter changes on AddRaftVoter and RemoveRaftVoter).

pub mod log;
pub mod messages;
pub mod node;

pub mod sim;

pub use log::{Entry, EntryData, LogMeta, LogReader, SnapshotChunk, SnapshotId, VoterKey};
pub use node::{Config, Input, Node, Output, PersistedState, RoleKind};
