//! One member of a KRaft quorum — a voter, or an observer (a broker-only
//! node that follows the log and never votes) — as a deterministic state
//! machine.
//!
//! [`Node::step`] takes the time and one [`Input`] and pushes [`Output`]s;
//! the caller performs them **in order**: a [`Output::PersistState`] or an
//! [`Output::InstallSnapshot`] must be durable before any later output (a
//! vote or an epoch change goes to disk before the messages that depend on
//! it), appends, truncations and deletions change the log before the next
//! step, and a [`Output::Flush`] is answered later by [`Input::Flushed`].
//! No clock, RNG or I/O lives in here.
//!
//! Snapshots (KIP-630): the state machine tells the node of a snapshot it
//! took of committed entries ([`Input::SnapshotTaken`]); the log then starts
//! at its end offset ([`Output::DeleteBefore`]). A leader answers a Fetch
//! below its log start (or with an epoch older than its snapshot's) with the
//! snapshot's id; the follower fetches it in chunks with FetchSnapshot
//! ([`Output::SnapshotChunk`]), installs it ([`Output::InstallSnapshot`]:
//! the log is replaced, it starts at the snapshot's end) and fetches on.
//!
//! Long polling: a leader with nothing new for a Fetch holds it up to the
//! request's `max_wait_ms` (capped by [`Config::fetch_max_wait_ms`]) and
//! answers when entries are appended, the high watermark moves, it stops
//! leading, or the wait is over (checked on [`Input::Tick`];
//! [`Node::held_fetch_deadline_ms`] says when the next tick is due).
//! Followers still detect a dead leader by the fetch timeout.

use std::collections::{BTreeMap, BTreeSet};

use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};

use crate::log::{Entry, EntryData, LogMeta, LogReader, SnapshotId, VoterKey};
use crate::messages::*;
use fjord_sim::Rng;

/// Bugs that can be switched on to show that the simulator finds them.
/// Never set outside tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlantedBug {
    #[default]
    None,
    /// A follower fetches (and so reports its fetch offset) before its
    /// appended entries are durable.
    FetchBeforeDurable,
    /// A vote is granted without checking that the candidate's log is at
    /// least as up to date as the voter's.
    VoteWithoutLogCheck,
    /// The leader names its snapshot only for a fetch offset below its log
    /// start, not for one at it with another epoch or with an epoch older
    /// than the snapshot's (Kafka's validateOffsetAndEpoch checks all three).
    SnapshotOffsetOnly,
    /// A voter change is appended while the previous one is not committed.
    VoterChangeWhileUncommitted,
}

/// Settings of one node (Kafka's `controller.quorum.*`).
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: NodeId,
    /// This node's metadata log directory id (0: unknown).
    pub directory_id: u128,
    /// `controller.quorum.voters`, or the voter set of the bootstrap
    /// checkpoint: the voters while neither the log nor its snapshot holds
    /// a `VotersRecord` (KIP-853: the latest one is the set in force). A
    /// node not in the set in force is an observer: it fetches from the
    /// leader (found by asking the voters, Kafka's
    /// `controller.quorum.bootstrap.servers`) and never stands.
    pub voters: Vec<VoterKey>,
    /// `controller.quorum.bootstrap.servers` (KIP-853): where an observer
    /// that knows no leader asks who leads, instead of the voters. These
    /// endpoints have no node id: the caller names them with ids of its own
    /// that no node has (Kafka numbers them -2, -3, ...) and routes what is
    /// sent to them; the answer comes from the node behind the endpoint.
    pub bootstrap: Vec<NodeId>,
    /// `kraft.version` 1 (KIP-853): the voter set may change
    /// ([`Input::ChangeVoters`]), and, as in Kafka, Vote, BeginQuorumEpoch
    /// and EndQuorumEpoch are answered whoever sends them and whether or
    /// not this node is a voter (a node added to the set may not know it
    /// yet, nor may the others know the new voter). With a static set
    /// (`false`) only voters are heard.
    pub reconfigurable: bool,
    pub cluster_id: String,
    /// `controller.quorum.election.timeout.ms`: the base; each timeout is
    /// drawn from `[base, 2 * base]`.
    pub election_timeout_ms: i64,
    /// `controller.quorum.election.backoff.max.ms`.
    pub election_backoff_max_ms: i64,
    /// `controller.quorum.fetch.timeout.ms`: a follower that hears nothing
    /// from its leader this long starts an election; a leader that is not
    /// fetched from by a majority for 1.5 times this resigns.
    pub fetch_timeout_ms: i64,
    /// `controller.quorum.request.timeout.ms`: an unanswered request is resent.
    pub request_timeout_ms: i64,
    /// Pause before fetching again after an empty Fetch response (Kafka's
    /// leader holds the Fetch instead: long polling).
    pub fetch_idle_ms: i64,
    /// Most entries in one Fetch response.
    pub fetch_entries_max: usize,
    /// Longest a leader holds a Fetch with nothing to send, and the
    /// `max_wait_ms` this node's Fetch requests carry (0: no long polling),
    /// at most a quarter of the fetch timeout and half the request timeout.
    pub fetch_max_wait_ms: i64,
    /// Most snapshot bytes asked for / sent in one FetchSnapshot.
    pub snapshot_chunk_bytes_max: u32,
    /// Seed of this node's randomized timeouts.
    pub seed: u64,
    #[doc(hidden)]
    pub planted_bug: PlantedBug,
}

impl Config {
    /// Kafka's default timeouts.
    pub fn new(node_id: NodeId, voters: Vec<NodeId>, cluster_id: String, seed: u64) -> Config {
        use fjord_model::limits::*;
        Config {
            node_id,
            directory_id: 0,
            voters: voters.into_iter().map(|id| VoterKey::new(id, 0)).collect(),
            bootstrap: Vec::new(),
            reconfigurable: false,
            cluster_id,
            election_timeout_ms: RAFT_ELECTION_TIMEOUT_MS_DEFAULT,
            election_backoff_max_ms: RAFT_ELECTION_BACKOFF_MAX_MS_DEFAULT,
            fetch_timeout_ms: RAFT_FETCH_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: RAFT_REQUEST_TIMEOUT_MS_DEFAULT,
            fetch_idle_ms: RAFT_FETCH_IDLE_MS_DEFAULT,
            fetch_entries_max: RAFT_FETCH_ENTRIES_MAX,
            fetch_max_wait_ms: RAFT_FETCH_MAX_WAIT_MS_DEFAULT,
            snapshot_chunk_bytes_max: RAFT_FETCH_SNAPSHOT_BYTES_MAX,
            seed,
            planted_bug: PlantedBug::None,
        }
    }
}

/// What a voter keeps on disk (Kafka's `quorum-state` file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistedState {
    pub epoch: LeaderEpoch,
    pub leader_id: Option<NodeId>,
    pub voted_id: Option<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed; timers are checked.
    Tick,
    Receive(Envelope),
    /// A client proposal (leader only).
    Propose(Vec<u8>),
    /// A voter change (leader only, `kraft.version` 1): append a
    /// `VotersRecord` with this set, which must add or remove exactly one
    /// voter. Refused (Kafka's AddVoterHandler / RemoveVoterHandler order)
    /// when this node does not lead, when the set cannot change
    /// (UNSUPPORTED_VERSION), when the leader has not committed an entry of
    /// its epoch yet or the latest `VotersRecord` is not committed
    /// (REQUEST_TIMED_OUT: one change at a time), or when the set is not
    /// the current one with one voter added or removed (INVALID_REQUEST).
    ChangeVoters(Vec<VoterKey>),
    /// A flush completed: the log is durable below `end_offset`.
    Flushed {
        end_offset: Offset,
    },
    /// The state machine took (and made durable) a snapshot of the committed
    /// entries below `end_offset` (at or below the high watermark).
    SnapshotTaken(SnapshotId),
    /// A connection to this voter was refused or reset: its process is
    /// likely gone (a `kill -9` closes its sockets at once). A follower of
    /// it treats it as a leader that resigned (Fjord's addition; Kafka
    /// waits out `controller.quorum.fetch.timeout.ms`): it stops
    /// refusing pre-votes and starts one after a backoff. Safety does not
    /// rest on it: a pre-vote still needs a majority that no longer hears
    /// the leader, and a live leader keeps answering the others.
    PeerUnreachable(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make this durable before performing any later output.
    PersistState(PersistedState),
    Send(Envelope),
    AppendAsLeader(Entry),
    AppendAsFollower(Vec<Entry>),
    TruncateTo(Offset),
    /// The log now starts at this offset (the latest snapshot's end):
    /// entries below it may be deleted.
    DeleteBefore(Offset),
    /// Bytes of a snapshot being fetched, to write at `position` of the
    /// partial snapshot `snapshot_id` (position 0 starts it anew, dropping
    /// any other partial snapshot).
    SnapshotChunk {
        snapshot_id: SnapshotId,
        position: u64,
        bytes: Vec<u8>,
    },
    /// The partial snapshot is complete: make it durable as the latest
    /// snapshot and replace the whole log with it (the log is empty and
    /// starts at `end_offset`), before any later output. The node reads its
    /// voter set ([`LogReader::snapshot_voters`]) at its next step: step it
    /// again right away.
    InstallSnapshot(SnapshotId),
    /// Start a flush of everything appended so far; answer with `Flushed`.
    Flush,
    /// The high watermark advanced: entries below it are committed.
    Committed {
        high_watermark: Offset,
    },
    Proposed {
        offset: Offset,
        epoch: LeaderEpoch,
    },
    ProposalRejected {
        leader_id: Option<NodeId>,
        epoch: LeaderEpoch,
    },
    /// A voter change was appended at `offset` (it is answered once the high
    /// watermark passes it).
    VotersProposed {
        offset: Offset,
        epoch: LeaderEpoch,
    },
    /// A voter change was refused with Kafka's error code.
    VoterChangeRejected {
        error_code: ErrorCode,
        message: &'static str,
    },
}

/// The role of a node, without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    Unattached,
    Prospective,
    Candidate,
    Leader,
    Follower,
    Resigned,
}

#[derive(Clone, Debug)]
struct Replica {
    /// Durable end offset the voter reported in its last valid Fetch.
    end: Offset,
    last_fetch_ms: i64,
    fetched_in_epoch: bool,
    begin_resend_at_ms: i64,
}

#[derive(Clone, Debug)]
struct LeaderState {
    epoch_start: Offset,
    /// The voters of the set in force and the observers that fetched in
    /// this epoch (an observer added to the set counts with what it
    /// fetched; a removed voter stays as an observer).
    replicas: BTreeMap<NodeId, Replica>,
}

#[derive(Clone, Debug)]
struct Election {
    deadline_ms: i64,
    round: u64,
    granted: BTreeSet<NodeId>,
    rejected: BTreeSet<NodeId>,
}

#[derive(Clone, Debug)]
enum Role {
    Unattached {
        deadline_ms: i64,
    },
    Prospective(Election),
    Candidate(Election),
    Leader(LeaderState),
    Follower {
        fetch_deadline_ms: i64,
        in_flight: Option<(u64, i64)>,
        next_fetch_ms: i64,
        leader_resigned: bool,
        /// The leader's snapshot being fetched and the next byte position.
        snapshot: Option<(SnapshotId, u64)>,
    },
    Resigned {
        deadline_ms: i64,
    },
}

/// A Fetch the leader holds (long polling).
#[derive(Clone, Debug)]
struct HeldFetch {
    env: Envelope,
    request: FetchRequest,
    deadline_ms: i64,
    /// The leader's epoch and high watermark when it was held.
    epoch: LeaderEpoch,
    high_watermark: Offset,
}

/// One voter or observer.
pub struct Node {
    cfg: Config,
    rng: Rng,
    now_ms: i64,
    epoch: LeaderEpoch,
    leader_id: Option<NodeId>,
    voted_id: Option<NodeId>,
    role: Role,
    log: LogMeta,
    high_watermark: Offset,
    next_correlation_id: u64,
    /// Last time the leader of this epoch was heard from (a Fetch answered,
    /// BeginQuorumEpoch); none after a restart or an epoch change.
    leader_contact_ms: Option<i64>,
    refused_truncations: u64,
    /// Fetches held by this leader (answered when not leading any more).
    held: Vec<HeldFetch>,
    /// A snapshot installed in the last step whose voter set is read from
    /// the log reader at the start of the next one.
    installed_snapshot: Option<SnapshotId>,
    /// The node an observer searching for the leader asked last (cleared
    /// when it follows a leader): the next search asks another.
    search_asked: Option<NodeId>,
}

impl Node {
    /// A node starting (or restarting) from its durable quorum state and
    /// log. The high watermark starts at the log start (the snapshot holds
    /// committed entries only) and is learned again.
    pub fn new(cfg: Config, state: PersistedState, log: LogMeta, now_ms: i64) -> Node {
        let high_watermark = log.start();
        let mut node = Node {
            rng: Rng::new(cfg.seed),
            cfg,
            now_ms,
            epoch: state.epoch,
            leader_id: state.leader_id,
            voted_id: state.voted_id,
            role: Role::Unattached {
                deadline_ms: now_ms,
            },
            log,
            high_watermark,
            next_correlation_id: 1,
            leader_contact_ms: None,
            refused_truncations: 0,
            held: Vec::new(),
            installed_snapshot: None,
            search_asked: None,
        };
        let deadline_ms = now_ms + node.election_timeout();
        let voter = node.is_voter();
        // An observer without a leader asks the voters at once.
        let deadline_ms = if voter { deadline_ms } else { now_ms };
        node.role = match state.leader_id {
            // We led this epoch but lost the leader's in-memory state.
            Some(l) if l == node.cfg.node_id && voter => Role::Resigned { deadline_ms },
            Some(l) if l == node.cfg.node_id => Role::Unattached { deadline_ms },
            Some(_) => node.follower_role(),
            None => Role::Unattached { deadline_ms },
        };
        node
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }
    /// False for an observer: this node is not in the voter set in force.
    pub fn is_voter(&self) -> bool {
        let (me, dir) = (self.cfg.node_id, self.cfg.directory_id);
        self.voters().iter().any(|v| v.matches(me, dir))
    }
    /// The voter set in force: the latest `VotersRecord` in the log
    /// (committed or not), else the one of the snapshot the log starts
    /// from, else the configured one.
    pub fn voters(&self) -> &[VoterKey] {
        self.log.voters().unwrap_or(&self.cfg.voters)
    }
    fn is_voter_id(&self, id: NodeId) -> bool {
        self.voters().iter().any(|v| v.id == id)
    }
    /// When the earliest Fetch this leader holds must be answered: the
    /// driver ticks by then.
    pub fn held_fetch_deadline_ms(&self) -> Option<i64> {
        self.held.iter().map(|h| h.deadline_ms).min()
    }
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn voted_id(&self) -> Option<NodeId> {
        self.voted_id
    }
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
    /// Diverging-epoch answers refused because they would truncate below
    /// the high watermark or to a negative offset (0 in a correct quorum).
    pub fn refused_truncations(&self) -> u64 {
        self.refused_truncations
    }
    pub fn log(&self) -> &LogMeta {
        &self.log
    }
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Unattached { .. } => RoleKind::Unattached,
            Role::Prospective(_) => RoleKind::Prospective,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
            Role::Follower { .. } => RoleKind::Follower,
            Role::Resigned { .. } => RoleKind::Resigned,
        }
    }

    /// Handles one input at local time `now_ms` (never decreasing).
    pub fn step(&mut self, now_ms: i64, input: Input, log: &dyn LogReader, out: &mut Vec<Output>) {
        assert!(now_ms >= self.now_ms, "time never goes back");
        self.now_ms = now_ms;
        if let Some(id) = self.installed_snapshot.take() {
            // The caller installed it after the last step: its voter set.
            if self.log.snapshot_id() == Some(id) && self.log.voters().is_none() {
                self.log.set_snapshot_voters(log.snapshot_voters(id));
            }
        }
        // What `log` holds: entries appended during this step reach it only
        // after the caller performed the outputs.
        let readable_end = self.log.end();
        match input {
            Input::Tick => self.tick(out),
            Input::Receive(env) => {
                if env.to == self.cfg.node_id {
                    self.receive(env, log, out)
                }
            }
            Input::Propose(payload) => self.propose(payload, out),
            Input::ChangeVoters(voters) => self.change_voters(voters, out),
            Input::PeerUnreachable(peer) => self.peer_unreachable(peer),
            Input::Flushed { end_offset } => {
                self.log.flushed(end_offset);
                if let Role::Leader(_) = self.role {
                    self.leader_update_high_watermark(out);
                }
                self.maybe_fetch(out);
            }
            Input::SnapshotTaken(id) => self.snapshot_taken(id, out),
        }
        if !self.held.is_empty() {
            self.answer_held_fetches(readable_end, log, out);
        }
    }

    // ---- helpers ----

    fn majority(&self) -> usize {
        self.voters().len() / 2 + 1
    }

    fn election_timeout(&mut self) -> i64 {
        let base = self.cfg.election_timeout_ms;
        self.rng.range_i64(base, 2 * base)
    }

    fn backoff(&mut self) -> i64 {
        let max = self.cfg.election_backoff_max_ms;
        self.rng.range_i64(0, max)
    }

    fn follower_role(&self) -> Role {
        Role::Follower {
            fetch_deadline_ms: self.now_ms + self.cfg.fetch_timeout_ms,
            in_flight: None,
            next_fetch_ms: self.now_ms,
            leader_resigned: false,
            snapshot: None,
        }
    }

    /// The `max_wait_ms` our Fetches ask for: the configured wait, kept
    /// well inside the fetch timeout (a held Fetch must not look like a dead
    /// leader; Kafka: 500 ms against 2 s) and the request timeout.
    fn fetch_wait_ms(&self) -> i64 {
        self.cfg
            .fetch_max_wait_ms
            .min(self.cfg.fetch_timeout_ms / 4)
            .min(self.cfg.request_timeout_ms / 2)
            .max(0)
    }

    fn persist(&self, out: &mut Vec<Output>) {
        out.push(Output::PersistState(PersistedState {
            epoch: self.epoch,
            leader_id: self.leader_id,
            voted_id: self.voted_id,
        }));
    }

    fn send(&mut self, to: NodeId, message: Message, out: &mut Vec<Output>) -> u64 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        out.push(Output::Send(Envelope {
            from: self.cfg.node_id,
            to,
            correlation_id,
            message,
        }));
        correlation_id
    }

    fn reply(&self, req: &Envelope, message: Message, out: &mut Vec<Output>) {
        out.push(Output::Send(Envelope {
            from: self.cfg.node_id,
            to: req.from,
            correlation_id: req.correlation_id,
            message,
        }));
    }

    /// The other voters of the set in force.
    fn others(&self) -> Vec<NodeId> {
        let me = self.cfg.node_id;
        self.voters()
            .iter()
            .map(|v| v.id)
            .filter(|v| *v != me)
            .collect()
    }

    // ---- transitions ----

    fn set_epoch(
        &mut self,
        epoch: LeaderEpoch,
        leader_id: Option<NodeId>,
        voted_id: Option<NodeId>,
    ) {
        assert!(epoch >= self.epoch, "the epoch never goes back");
        if epoch == self.epoch {
            // Election safety, where it is relied on: one leader per epoch.
            assert!(
                self.leader_id.is_none() || self.leader_id == leader_id,
                "a second leader for epoch {epoch}"
            );
        }
        if epoch != self.epoch || leader_id != self.leader_id {
            self.leader_contact_ms = None;
        }
        self.epoch = epoch;
        self.leader_id = leader_id;
        self.voted_id = voted_id;
    }

    fn become_unattached(&mut self, epoch: LeaderEpoch, out: &mut Vec<Output>) {
        assert!(epoch > self.epoch);
        self.set_epoch(epoch, None, None);
        self.persist(out);
        let deadline_ms = if self.is_voter() {
            self.now_ms + self.election_timeout()
        } else {
            self.now_ms
        };
        self.role = Role::Unattached { deadline_ms };
    }

    /// An observer that lost its leader (or never had one) asks a voter of
    /// the set in force who leads: any Fetch response names the leader.
    /// The first voter asked is chosen at random among those that are not
    /// the leader it lost (which is likely gone), the next ones in turn.
    /// An answer that names no new leader, or a voter found unreachable,
    /// makes it ask the next one after `fetch_idle_ms`; one that does not
    /// answer, after the request timeout. (Before, it waited a request
    /// timeout after every answer, and went back to the leader it lost
    /// when a voter that had not noticed its death yet still named it:
    /// a broker-only node then took seconds to follow a new leader, and
    /// its heartbeats, which go to the quorum leader, with it.) An
    /// observer that knows no voter (a controller formatted with
    /// `--no-initial-controllers` that has not fetched a VotersRecord yet)
    /// asks the bootstrap servers instead. (Kafka asks the bootstrap
    /// servers whenever they are configured, again `quorum.retry.backoff.ms`
    /// after an answer; the voters in force are never staler than that list.)
    fn observer_search(&mut self, out: &mut Vec<Output>) {
        assert!(!self.is_voter(), "only observers search for the leader");
        let deadline_ms = self.now_ms + self.cfg.request_timeout_ms;
        self.role = Role::Unattached { deadline_ms };
        let mut targets: Vec<NodeId> = self.voters().iter().map(|v| v.id).collect();
        if targets.is_empty() {
            targets.clone_from(&self.cfg.bootstrap);
        }
        if targets.is_empty() {
            return;
        }
        targets.sort();
        let to = match self.search_asked {
            // The next one after the one asked last, in turn.
            Some(last) => targets
                .iter()
                .find(|t| **t > last)
                .copied()
                .unwrap_or(targets[0]),
            None => {
                let lost = self.leader_id;
                let others: Vec<NodeId> = targets
                    .iter()
                    .copied()
                    .filter(|t| Some(*t) != lost)
                    .collect();
                let from = if others.is_empty() { &targets } else { &others };
                from[self.rng.below(from.len())]
            }
        };
        self.search_asked = Some(to);
        let msg = Message::FetchRequest(FetchRequest {
            cluster_id: self.cfg.cluster_id.clone(),
            replica_id: self.cfg.node_id,
            replica_directory_id: self.cfg.directory_id,
            current_leader_epoch: self.epoch,
            fetch_offset: self.log.end(),
            last_fetched_epoch: self.log.last_epoch(),
            max_wait_ms: 0,
        });
        self.send(to, msg, out);
    }

    fn become_follower(&mut self, epoch: LeaderEpoch, leader: NodeId, out: &mut Vec<Output>) {
        assert!(leader != self.cfg.node_id);
        let voted = if epoch == self.epoch {
            self.voted_id
        } else {
            None
        };
        self.set_epoch(epoch, Some(leader), voted);
        self.persist(out);
        self.role = self.follower_role();
        self.search_asked = None;
        self.maybe_fetch(out);
    }

    fn become_prospective(&mut self, out: &mut Vec<Output>) {
        let deadline_ms = self.now_ms + self.election_timeout();
        let round = self.next_correlation_id;
        let mut granted = BTreeSet::new();
        granted.insert(self.cfg.node_id);
        self.role = Role::Prospective(Election {
            deadline_ms,
            round,
            granted,
            rejected: BTreeSet::new(),
        });
        self.request_votes(true, out);
        self.count_votes(out);
    }

    fn become_candidate(&mut self, out: &mut Vec<Output>) {
        let me = self.cfg.node_id;
        self.set_epoch(LeaderEpoch(self.epoch.0 + 1), None, Some(me));
        self.persist(out);
        let deadline_ms = self.now_ms + self.election_timeout();
        let mut granted = BTreeSet::new();
        granted.insert(me);
        self.role = Role::Candidate(Election {
            deadline_ms,
            round: self.next_correlation_id,
            granted,
            rejected: BTreeSet::new(),
        });
        self.request_votes(false, out);
        self.count_votes(out);
    }

    fn become_leader(&mut self, out: &mut Vec<Output>) {
        let me = self.cfg.node_id;
        assert_eq!(self.voted_id, Some(me), "a leader voted for itself");
        self.set_epoch(self.epoch, Some(me), Some(me));
        self.persist(out);
        let epoch_start = self.log.end();
        let now = self.now_ms;
        let replicas = self
            .others()
            .into_iter()
            .map(|v| {
                let r = Replica {
                    end: Offset(0),
                    last_fetch_ms: now,
                    fetched_in_epoch: false,
                    begin_resend_at_ms: now + self.cfg.request_timeout_ms,
                };
                (v, r)
            })
            .collect();
        self.role = Role::Leader(LeaderState {
            epoch_start,
            replicas,
        });
        // The epoch starts with a control entry; nothing from older epochs is
        // committed before it is.
        let entry = Entry {
            offset: epoch_start,
            epoch: self.epoch,
            data: EntryData::LeaderChange {
                leader_id: me,
                voters: self.voters().iter().map(|v| v.id).collect(),
            },
        };
        self.log.append(entry.offset, entry.epoch);
        out.push(Output::AppendAsLeader(entry));
        out.push(Output::Flush);
        for v in self.others() {
            let msg = Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                leader_id: me,
                leader_epoch: self.epoch,
                voter_id: v,
            });
            self.send(v, msg, out);
        }
        self.leader_update_high_watermark(out);
    }

    fn resign(&mut self, out: &mut Vec<Output>) {
        let deadline_ms = self.now_ms + self.election_timeout();
        self.role = Role::Resigned { deadline_ms };
        let others = self.others();
        for v in others.iter().copied() {
            let msg = Message::EndQuorumEpochRequest(EndQuorumEpochRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                leader_id: self.cfg.node_id,
                leader_epoch: self.epoch,
                preferred_successors: others.clone(),
            });
            self.send(v, msg, out);
        }
    }

    /// After a failed pre-vote: back to following the known leader, or wait.
    fn fall_back(&mut self) {
        self.role = match self.leader_id {
            Some(l) if l != self.cfg.node_id => self.follower_role(),
            _ => {
                let deadline_ms = self.now_ms + self.election_timeout() + self.backoff();
                Role::Unattached { deadline_ms }
            }
        };
    }

    /// A message carried `epoch` and maybe its leader: move to it if newer,
    /// or learn the leader of our epoch. True if the role changed.
    fn observe(
        &mut self,
        epoch: LeaderEpoch,
        leader: Option<NodeId>,
        out: &mut Vec<Output>,
    ) -> bool {
        let me = self.cfg.node_id;
        if epoch > self.epoch {
            match leader {
                Some(l) if l != me => self.become_follower(epoch, l, out),
                _ => self.become_unattached(epoch, out),
            }
            return true;
        }
        if epoch == self.epoch && self.leader_id.is_none() {
            if let Some(l) = leader {
                if l != me {
                    self.become_follower(epoch, l, out);
                    return true;
                }
            }
        }
        false
    }

    // ---- timers ----

    fn tick(&mut self, out: &mut Vec<Output>) {
        let now = self.now_ms;
        let request_timeout_ms = self.cfg.request_timeout_ms;
        let start_election = match &mut self.role {
            Role::Unattached { deadline_ms } | Role::Resigned { deadline_ms } => {
                now >= *deadline_ms
            }
            Role::Prospective(e) | Role::Candidate(e) => now >= e.deadline_ms,
            Role::Follower {
                fetch_deadline_ms,
                in_flight,
                ..
            } => {
                if in_flight.is_some_and(|(_, sent)| now - sent >= request_timeout_ms) {
                    *in_flight = None;
                }
                now >= *fetch_deadline_ms
            }
            Role::Leader(_) => {
                self.leader_tick(out);
                return;
            }
        };
        if start_election && !self.is_voter() {
            self.observer_search(out);
        } else if start_election {
            self.become_prospective(out);
        } else {
            self.maybe_fetch(out);
        }
    }

    fn leader_tick(&mut self, out: &mut Vec<Output>) {
        let now = self.now_ms;
        let check_quorum_ms = self.cfg.fetch_timeout_ms * 3 / 2;
        let majority = self.majority();
        let me_voter = self.is_voter();
        // KIP-853: a leader that removed itself resigns once that
        // VotersRecord is committed (Kafka's RemoveVoterHandler).
        let removed_committed = !me_voter
            && self
                .log
                .last_voter_change()
                .is_some_and(|at| at < self.high_watermark);
        self.sync_replicas();
        let voters: BTreeSet<NodeId> = self.voters().iter().map(|v| v.id).collect();
        let Role::Leader(state) = &mut self.role else {
            return;
        };
        // Check-quorum over the voter set in force; the leader counts
        // itself only while it is in it (Kafka's LeaderState).
        let recent = usize::from(me_voter)
            + state
                .replicas
                .iter()
                .filter(|(id, r)| voters.contains(id) && now - r.last_fetch_ms < check_quorum_ms)
                .count();
        if recent < majority || removed_committed {
            self.resign(out);
            return;
        }
        let mut resend = Vec::new();
        for (id, r) in state.replicas.iter_mut() {
            if voters.contains(id) && !r.fetched_in_epoch && now >= r.begin_resend_at_ms {
                r.begin_resend_at_ms = now + self.cfg.request_timeout_ms;
                resend.push(*id);
            }
        }
        for v in resend {
            let msg = Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                leader_id: self.cfg.node_id,
                leader_epoch: self.epoch,
                voter_id: v,
            });
            self.send(v, msg, out);
        }
    }

    /// A leader tracks every voter of the set in force (a voter just added
    /// gets BeginQuorumEpoch unless it fetched in this epoch already).
    fn sync_replicas(&mut self) {
        let now = self.now_ms;
        let resend_at = now + self.cfg.request_timeout_ms;
        let others = self.others();
        if let Role::Leader(state) = &mut self.role {
            for v in others {
                state.replicas.entry(v).or_insert(Replica {
                    end: Offset(0),
                    last_fetch_ms: now,
                    fetched_in_epoch: false,
                    begin_resend_at_ms: resend_at,
                });
            }
        }
    }

    // ---- elections ----

    fn request_votes(&mut self, pre_vote: bool, out: &mut Vec<Output>) {
        // Kafka's ReplicaEpoch: our current epoch, also in a pre-vote (a
        // candidate has already moved to the epoch it stands in).
        let candidate_epoch = self.epoch;
        for v in self.others() {
            let msg = Message::VoteRequest(VoteRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                candidate_id: self.cfg.node_id,
                candidate_epoch,
                voter_id: v,
                last_offset_epoch: self.log.last_epoch(),
                last_offset: self.log.end(),
                pre_vote,
            });
            self.send(v, msg, out);
        }
    }

    fn count_votes(&mut self, out: &mut Vec<Output>) {
        let majority = self.majority();
        let n = self.voters().len();
        match &self.role {
            Role::Prospective(e) => {
                if e.granted.len() >= majority {
                    self.become_candidate(out);
                } else if e.rejected.len() > n - majority {
                    self.fall_back();
                }
            }
            Role::Candidate(e) if e.granted.len() >= majority => self.become_leader(out),
            _ => {}
        }
    }

    fn handle_vote_request(&mut self, env: &Envelope, req: &VoteRequest, out: &mut Vec<Output>) {
        let deny = |node: &Node, code: ErrorCode| {
            Message::VoteResponse(VoteResponse {
                error_code: code,
                leader_epoch: node.epoch,
                leader_id: node.leader_id,
                vote_granted: false,
            })
        };
        if req.cluster_id != self.cfg.cluster_id {
            return self.reply(env, deny(self, ErrorCode::INCONSISTENT_CLUSTER_ID), out);
        }
        // KIP-853: with a changing voter set, anyone may ask and anyone
        // answers (either side may not know of the latest VotersRecord);
        // only votes from its own set count for the candidate.
        let known =
            self.cfg.reconfigurable || (self.is_voter_id(req.candidate_id) && self.is_voter());
        if !known || req.candidate_id != env.from || req.voter_id != self.cfg.node_id {
            return self.reply(env, deny(self, ErrorCode::INCONSISTENT_VOTER_SET), out);
        }
        if req.candidate_epoch < self.epoch {
            return self.reply(env, deny(self, ErrorCode::FENCED_LEADER_EPOCH), out);
        }
        // As in Kafka, a pre-vote too moves us to a newer epoch: a voter left
        // alone in a higher epoch (after a lost election) is heard again.
        if req.candidate_epoch > self.epoch {
            self.become_unattached(req.candidate_epoch, out);
        }
        let log_ok = self.cfg.planted_bug == PlantedBug::VoteWithoutLogCheck
            || (req.last_offset_epoch, req.last_offset) >= (self.log.last_epoch(), self.log.end());
        let now = self.now_ms;
        let granted = if req.pre_vote {
            // KIP-996: no state change; refuse while a leader is heard from.
            let heard = self
                .leader_contact_ms
                .is_some_and(|t| now - t < self.cfg.fetch_timeout_ms);
            let leader_alive = match &self.role {
                Role::Leader(_) => true,
                Role::Follower {
                    leader_resigned, ..
                } => !*leader_resigned && heard,
                _ => false,
            };
            // A pre-vote is for the next epoch: this epoch's vote does not matter.
            log_ok && !leader_alive
        } else {
            assert_eq!(req.candidate_epoch, self.epoch);
            log_ok
                && self.leader_id.is_none()
                && (self.voted_id.is_none() || self.voted_id == Some(req.candidate_id))
        };
        if granted && !req.pre_vote && self.voted_id.is_none() {
            self.voted_id = Some(req.candidate_id);
            self.persist(out);
            let deadline_ms = self.now_ms + self.election_timeout();
            self.role = Role::Unattached { deadline_ms };
        }
        let msg = Message::VoteResponse(VoteResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: self.epoch,
            leader_id: self.leader_id,
            vote_granted: granted,
        });
        self.reply(env, msg, out);
    }

    fn handle_vote_response(&mut self, env: &Envelope, resp: &VoteResponse, out: &mut Vec<Output>) {
        if self.observe(resp.leader_epoch, resp.leader_id, out)
            || resp.error_code != ErrorCode::NONE
        {
            return;
        }
        let epoch = self.epoch;
        let (e, needs_epoch) = match &mut self.role {
            Role::Prospective(e) => (e, resp.leader_epoch <= epoch),
            Role::Candidate(e) => (e, resp.leader_epoch == epoch),
            _ => return,
        };
        let from_voter = self
            .log
            .voters()
            .unwrap_or(&self.cfg.voters)
            .iter()
            .any(|v| v.id == env.from);
        if !needs_epoch || env.correlation_id < e.round || !from_voter {
            return;
        }
        if resp.vote_granted {
            e.granted.insert(env.from);
        } else {
            e.rejected.insert(env.from);
        }
        self.count_votes(out);
    }

    // ---- begin / end quorum epoch ----

    /// The checks BeginQuorumEpoch and EndQuorumEpoch share: the cluster,
    /// a sender that is the voter it names as leader, an epoch not older
    /// than ours.
    fn check_leader_message(
        &self,
        env: &Envelope,
        cluster_id: &str,
        leader_id: NodeId,
        leader_epoch: LeaderEpoch,
    ) -> ErrorCode {
        if cluster_id != self.cfg.cluster_id {
            ErrorCode::INCONSISTENT_CLUSTER_ID
        } else if (!self.cfg.reconfigurable && !self.is_voter_id(leader_id))
            || leader_id != env.from
        {
            ErrorCode::INCONSISTENT_VOTER_SET
        } else if leader_epoch < self.epoch {
            ErrorCode::FENCED_LEADER_EPOCH
        } else {
            ErrorCode::NONE
        }
    }

    fn handle_begin_epoch(
        &mut self,
        env: &Envelope,
        req: &BeginQuorumEpochRequest,
        out: &mut Vec<Output>,
    ) {
        let checked =
            self.check_leader_message(env, &req.cluster_id, req.leader_id, req.leader_epoch);
        let code = if checked != ErrorCode::NONE {
            checked
        } else if req.leader_epoch == self.epoch
            && self.leader_id.is_some_and(|l| l != req.leader_id)
        {
            // Cannot happen with one leader per epoch; refuse, change nothing.
            ErrorCode::INCONSISTENT_VOTER_SET
        } else {
            if self.leader_id != Some(req.leader_id) || req.leader_epoch > self.epoch {
                self.become_follower(req.leader_epoch, req.leader_id, out);
            }
            self.leader_contact_ms = Some(self.now_ms);
            ErrorCode::NONE
        };
        let msg = Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
            error_code: code,
            leader_epoch: self.epoch,
            leader_id: self.leader_id,
        });
        self.reply(env, msg, out);
    }

    /// See [`Input::PeerUnreachable`].
    fn peer_unreachable(&mut self, peer: NodeId) {
        if peer == self.cfg.node_id {
            return;
        }
        let observer = !self.is_voter();
        if observer && self.search_asked == Some(peer) {
            self.search_again_soon();
        }
        if self.leader_id != Some(peer) {
            return;
        }
        // An observer looks for the new leader at once; a voter after a
        // random backoff (its election must not collide with another's).
        let soon = if observer {
            self.now_ms
        } else {
            self.now_ms + self.backoff()
        };
        if let Role::Follower {
            fetch_deadline_ms,
            leader_resigned,
            ..
        } = &mut self.role
        {
            *leader_resigned = true;
            *fetch_deadline_ms = soon.min(*fetch_deadline_ms);
        }
    }

    fn handle_end_epoch(
        &mut self,
        env: &Envelope,
        req: &EndQuorumEpochRequest,
        out: &mut Vec<Output>,
    ) {
        let checked =
            self.check_leader_message(env, &req.cluster_id, req.leader_id, req.leader_epoch);
        let code = if checked != ErrorCode::NONE {
            checked
        } else {
            if req.leader_epoch > self.epoch {
                self.become_unattached(req.leader_epoch, out);
            } else if self.leader_id == Some(req.leader_id) {
                let soon = self.now_ms + self.backoff();
                if let Role::Follower {
                    fetch_deadline_ms,
                    leader_resigned,
                    ..
                } = &mut self.role
                {
                    *leader_resigned = true;
                    *fetch_deadline_ms = soon.min(*fetch_deadline_ms);
                }
            }
            ErrorCode::NONE
        };
        let msg = Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
            error_code: code,
            leader_epoch: self.epoch,
            leader_id: self.leader_id,
        });
        self.reply(env, msg, out);
    }

    // ---- fetch ----

    fn maybe_fetch(&mut self, out: &mut Vec<Output>) {
        let now = self.now_ms;
        let durable = self.log.durable_end() == self.log.end()
            || self.cfg.planted_bug == PlantedBug::FetchBeforeDurable;
        let Some(leader) = self.leader_id else {
            return;
        };
        let snapshot = match &self.role {
            Role::Follower {
                in_flight: None,
                next_fetch_ms,
                snapshot,
                ..
            } if *next_fetch_ms <= now && durable => *snapshot,
            _ => return,
        };
        let msg = match snapshot {
            Some((snapshot_id, position)) => Message::FetchSnapshotRequest(FetchSnapshotRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                replica_id: self.cfg.node_id,
                max_bytes: self.cfg.snapshot_chunk_bytes_max,
                current_leader_epoch: self.epoch,
                snapshot_id,
                position,
            }),
            // Only durable data is reported: fetch_offset is the durable end.
            None => Message::FetchRequest(FetchRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                replica_id: self.cfg.node_id,
                replica_directory_id: self.cfg.directory_id,
                current_leader_epoch: self.epoch,
                fetch_offset: self.log.end(),
                last_fetched_epoch: self.log.last_epoch(),
                max_wait_ms: self.fetch_wait_ms(),
            }),
        };
        let id = self.send(leader, msg, out);
        if let Role::Follower { in_flight, .. } = &mut self.role {
            *in_flight = Some((id, now));
        }
    }

    /// The errors of a request only the leader of `epoch` answers (Kafka's
    /// `validateLeaderOnlyRequest`, plus the cluster and replica checks).
    fn check_leader_request(
        &self,
        env: &Envelope,
        cluster_id: &str,
        replica_id: NodeId,
        epoch: LeaderEpoch,
    ) -> ErrorCode {
        if cluster_id != self.cfg.cluster_id {
            ErrorCode::INCONSISTENT_CLUSTER_ID
        } else if replica_id != env.from {
            ErrorCode::INVALID_REQUEST
        } else if epoch < self.epoch {
            ErrorCode::FENCED_LEADER_EPOCH
        } else if epoch > self.epoch {
            ErrorCode::UNKNOWN_LEADER_EPOCH
        } else if !matches!(self.role, Role::Leader(_)) {
            ErrorCode::NOT_LEADER_OR_FOLLOWER
        } else {
            ErrorCode::NONE
        }
    }

    /// Kafka's `validateOffsetAndEpoch`: does the follower's log match ours
    /// up to `fetch_offset`? If not, where it diverges, or the snapshot to
    /// fetch when the answer lies below our log start.
    fn validate_fetch(
        &self,
        fetch_offset: Offset,
        last_fetched_epoch: LeaderEpoch,
    ) -> Result<(), (Option<DivergingEpoch>, Option<SnapshotId>)> {
        if fetch_offset.0 == 0 && self.log.start().0 == 0 {
            return Ok(());
        }
        if let Some(snap) = self.log.snapshot_id() {
            let epoch_checks = self.cfg.planted_bug != PlantedBug::SnapshotOffsetOnly;
            if fetch_offset < snap.end_offset
                || (epoch_checks
                    && ((fetch_offset == snap.end_offset && last_fetched_epoch != snap.epoch)
                        || last_fetched_epoch < snap.epoch))
            {
                return Err((None, Some(snap)));
            }
        }
        let (epoch, end) = self.log.end_offset_for_epoch(last_fetched_epoch);
        if epoch != last_fetched_epoch || end < fetch_offset {
            let div = DivergingEpoch {
                epoch,
                end_offset: end,
            };
            return Err((Some(div), None));
        }
        Ok(())
    }

    fn handle_fetch_request(
        &mut self,
        env: &Envelope,
        req: &FetchRequest,
        log: &dyn LogReader,
        may_hold: bool,
        out: &mut Vec<Output>,
    ) {
        let mut resp = FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: self.epoch,
            leader_id: self.leader_id,
            high_watermark: self.high_watermark,
            diverging_epoch: None,
            snapshot_id: None,
            records: Vec::new(),
        };
        resp.error_code = if req.fetch_offset.0 < 0 {
            ErrorCode::INVALID_REQUEST
        } else {
            self.check_leader_request(
                env,
                &req.cluster_id,
                req.replica_id,
                req.current_leader_epoch,
            )
        };
        if resp.error_code != ErrorCode::NONE {
            return self.reply(env, Message::FetchResponse(resp), out);
        }
        if let Err((diverging_epoch, snapshot_id)) =
            self.validate_fetch(req.fetch_offset, req.last_fetched_epoch)
        {
            resp.diverging_epoch = diverging_epoch;
            resp.snapshot_id = snapshot_id;
            return self.reply(env, Message::FetchResponse(resp), out);
        }
        let now = self.now_ms;
        let hw_before = self.high_watermark;
        if let Role::Leader(state) = &mut self.role {
            // Observers are tracked too (they count once added to the
            // voter set; until then the voter set filters them out).
            if state.replicas.contains_key(&req.replica_id)
                || state.replicas.len() < fjord_model::limits::RAFT_OBSERVERS_TRACKED_MAX
            {
                let r = state.replicas.entry(req.replica_id).or_insert(Replica {
                    end: Offset(0),
                    last_fetch_ms: now,
                    fetched_in_epoch: true,
                    begin_resend_at_ms: now,
                });
                r.end = r.end.max(req.fetch_offset);
                r.last_fetch_ms = now;
                r.fetched_in_epoch = true;
            }
        }
        self.leader_update_high_watermark(out);
        assert!(
            self.high_watermark <= self.log.end(),
            "the high watermark is within the log"
        );
        // Long polling: nothing to send yet (no entries, the high watermark
        // did not move), hold the request.
        let wait_ms = req.max_wait_ms.min(self.cfg.fetch_max_wait_ms);
        if may_hold
            && wait_ms > 0
            && req.fetch_offset >= self.log.end()
            && self.high_watermark == hw_before
            && self.held.len() < fjord_model::limits::RAFT_HELD_FETCHES_MAX
        {
            self.held.push(HeldFetch {
                env: env.clone(),
                request: req.clone(),
                deadline_ms: now + wait_ms,
                epoch: self.epoch,
                high_watermark: self.high_watermark,
            });
            return;
        }
        resp.high_watermark = self.high_watermark;
        resp.records = log.read(req.fetch_offset, self.cfg.fetch_entries_max);
        self.reply(env, Message::FetchResponse(resp), out);
    }

    /// Answers the held Fetches that have something to say: entries were
    /// appended (before this step: `readable_end` is where `log` ends), the
    /// high watermark moved, the epoch or role changed, or their wait is
    /// over.
    fn answer_held_fetches(
        &mut self,
        readable_end: Offset,
        log: &dyn LogReader,
        out: &mut Vec<Output>,
    ) {
        let now = self.now_ms;
        let leading = matches!(self.role, Role::Leader(_));
        let (due, kept): (Vec<HeldFetch>, Vec<HeldFetch>) =
            std::mem::take(&mut self.held).into_iter().partition(|h| {
                !leading
                    || h.epoch != self.epoch
                    || h.high_watermark != self.high_watermark
                    || readable_end.min(self.log.end()) > h.request.fetch_offset
                    || now >= h.deadline_ms
            });
        self.held = kept;
        for h in due {
            self.handle_fetch_request(&h.env, &h.request, log, false, out);
        }
        assert!(
            self.held.iter().all(|h| h.epoch == self.epoch && leading),
            "only a leader holds fetches, of its own epoch"
        );
    }

    /// Our current Fetch or FetchSnapshot was answered with an error (or by
    /// someone other than our leader): learn a newer epoch or leader, else
    /// retry after a pause.
    fn fetch_failed(
        &mut self,
        error_code: ErrorCode,
        epoch: LeaderEpoch,
        leader: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        if self.observe(epoch, leader, out) {
            return;
        }
        let now = self.now_ms;
        let my_epoch = self.epoch;
        if let Role::Follower {
            next_fetch_ms,
            leader_resigned,
            ..
        } = &mut self.role
        {
            *next_fetch_ms = now + self.cfg.fetch_idle_ms;
            // Our leader says it does not lead (it resigned or restarted).
            if error_code == ErrorCode::NOT_LEADER_OR_FOLLOWER && epoch == my_epoch {
                *leader_resigned = true;
            }
        }
    }

    /// A response not to our current fetch: learn what it says of the
    /// epoch and leader. An observer searching for the leader also goes
    /// back to the leader it knew when that one answers itself (another
    /// voter naming it may not have noticed it is gone yet); an answer
    /// from the voter it asked with no news makes it ask the next one
    /// soon.
    fn stray_fetch_response(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        leader: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        if self.observe(epoch, leader, out) || self.is_voter() {
            return;
        }
        if let (Role::Unattached { .. }, Some(l)) = (&self.role, leader) {
            // (Not itself: a leader that removed itself and resigned hears
            // the others still name it until the next election.)
            if epoch == self.epoch
                && self.leader_id == Some(l)
                && l != self.cfg.node_id
                && from == l
            {
                self.become_follower(epoch, l, out);
                return;
            }
        }
        if self.search_asked == Some(from) {
            self.search_again_soon();
        }
    }

    /// An observer searching for the leader asks the next voter after
    /// `fetch_idle_ms` (the one asked answered without news, or is
    /// unreachable).
    fn search_again_soon(&mut self) {
        let soon = self.now_ms + self.cfg.fetch_idle_ms;
        if let Role::Unattached { deadline_ms } = &mut self.role {
            *deadline_ms = soon.min(*deadline_ms);
        }
    }

    /// The leader of our epoch answered our current request: it is alive.
    fn leader_answered(&mut self, got_data: bool, out: &mut Vec<Output>) {
        let now = self.now_ms;
        self.leader_contact_ms = Some(now);
        let fetch_timeout = self.cfg.fetch_timeout_ms;
        // With long polling an empty answer came after the wait already.
        let idle = if self.fetch_wait_ms() > 0 {
            0
        } else {
            self.cfg.fetch_idle_ms
        };
        if let Role::Follower {
            fetch_deadline_ms,
            next_fetch_ms,
            leader_resigned,
            ..
        } = &mut self.role
        {
            *fetch_deadline_ms = now + fetch_timeout;
            *leader_resigned = false;
            *next_fetch_ms = if got_data { now } else { now + idle };
        }
        self.maybe_fetch(out);
    }

    fn is_current_request(&self, env: &Envelope) -> bool {
        matches!(self.role, Role::Follower { in_flight: Some((id, _)), .. }
            if id == env.correlation_id)
    }

    fn handle_fetch_response(
        &mut self,
        env: &Envelope,
        resp: &FetchResponse,
        out: &mut Vec<Output>,
    ) {
        let snapshotting = matches!(
            self.role,
            Role::Follower {
                snapshot: Some(_),
                ..
            }
        );
        if !self.is_current_request(env) || snapshotting {
            return self.stray_fetch_response(env.from, resp.leader_epoch, resp.leader_id, out);
        }
        if let Role::Follower { in_flight, .. } = &mut self.role {
            *in_flight = None;
        }
        if resp.error_code != ErrorCode::NONE
            || resp.leader_epoch != self.epoch
            || self.leader_id != Some(env.from)
        {
            return self.fetch_failed(resp.error_code, resp.leader_epoch, resp.leader_id, out);
        }
        let mut got_entries = false;
        if let Some(snap) = resp.snapshot_id {
            // KIP-630: what we miss is only in the leader's snapshot.
            if snap.end_offset.0 > 0 && snap.epoch.0 >= 0 && snap.epoch <= resp.leader_epoch {
                if let Role::Follower { snapshot, .. } = &mut self.role {
                    *snapshot = Some((snap, 0));
                }
                got_entries = true;
            }
        } else if let Some(div) = resp.diverging_epoch {
            let (_, local_end) = self.log.end_offset_for_epoch(div.epoch);
            let to = local_end.min(div.end_offset).min(self.log.end());
            // Committed entries are never truncated: a leader asking for it
            // is refused (and counted; the simulator checks the count is 0).
            if to < self.high_watermark || to.0 < 0 {
                self.refused_truncations += 1;
                return;
            }
            if to < self.log.end() {
                self.log.truncate_to(to);
                out.push(Output::TruncateTo(to));
                if self.log.durable_end() < self.log.end() {
                    out.push(Output::Flush);
                }
            }
            got_entries = true;
        } else if !resp.records.is_empty() {
            // Entries must continue our log, in order, within the leader's epoch.
            let mut expect = self.log.end();
            let mut last_epoch = self.log.last_epoch();
            let valid = resp.records.iter().all(|e| {
                let ok =
                    e.offset == expect && e.epoch >= last_epoch && e.epoch <= resp.leader_epoch;
                expect = expect.next();
                last_epoch = e.epoch;
                ok
            });
            if valid {
                for e in &resp.records {
                    self.log.append(e.offset, e.epoch);
                    if let EntryData::Voters(v) = &e.data {
                        self.log.record_voters(e.offset, v.clone());
                    }
                }
                out.push(Output::AppendAsFollower(resp.records.clone()));
                out.push(Output::Flush);
                got_entries = true;
            }
        }
        if resp.diverging_epoch.is_none() && resp.snapshot_id.is_none() {
            self.follower_high_watermark(resp.high_watermark, out);
        }
        self.leader_answered(got_entries, out);
    }

    fn follower_high_watermark(&mut self, leader_hw: Offset, out: &mut Vec<Output>) {
        let hw = leader_hw.min(self.log.end());
        if hw > self.high_watermark {
            self.high_watermark = hw;
            out.push(Output::Committed { high_watermark: hw });
        }
    }

    fn handle_fetch_snapshot_request(
        &mut self,
        env: &Envelope,
        req: &FetchSnapshotRequest,
        log: &dyn LogReader,
        out: &mut Vec<Output>,
    ) {
        let mut resp = FetchSnapshotResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: self.epoch,
            leader_id: self.leader_id,
            snapshot_id: req.snapshot_id,
            size: 0,
            position: req.position,
            bytes: Vec::new(),
        };
        resp.error_code = self.check_leader_request(
            env,
            &req.cluster_id,
            req.replica_id,
            req.current_leader_epoch,
        );
        if resp.error_code == ErrorCode::NONE {
            let max_bytes = req.max_bytes.min(self.cfg.snapshot_chunk_bytes_max) as usize;
            match log.read_snapshot(req.snapshot_id, req.position, max_bytes) {
                None => resp.error_code = SNAPSHOT_NOT_FOUND,
                Some(chunk) if req.position >= chunk.size_bytes => {
                    resp.error_code = POSITION_OUT_OF_RANGE;
                }
                Some(chunk) => {
                    assert!(
                        chunk.bytes.len() <= max_bytes,
                        "a snapshot read returns at most the bytes asked for"
                    );
                    resp.size = chunk.size_bytes;
                    resp.bytes = chunk.bytes;
                    let now = self.now_ms;
                    if let Role::Leader(state) = &mut self.role {
                        if let Some(r) = state.replicas.get_mut(&req.replica_id) {
                            r.last_fetch_ms = now;
                            r.fetched_in_epoch = true;
                        }
                    }
                }
            }
        }
        self.reply(env, Message::FetchSnapshotResponse(resp), out);
    }

    fn handle_fetch_snapshot_response(
        &mut self,
        env: &Envelope,
        resp: &FetchSnapshotResponse,
        out: &mut Vec<Output>,
    ) {
        let fetching = match &self.role {
            Role::Follower { snapshot, .. } if self.is_current_request(env) => *snapshot,
            _ => None,
        };
        let Some((id, position)) = fetching else {
            return self.stray_fetch_response(env.from, resp.leader_epoch, resp.leader_id, out);
        };
        if let Role::Follower { in_flight, .. } = &mut self.role {
            *in_flight = None;
        }
        let gone =
            resp.error_code == SNAPSHOT_NOT_FOUND || resp.error_code == POSITION_OUT_OF_RANGE;
        if (resp.error_code != ErrorCode::NONE && !gone)
            || resp.leader_epoch != self.epoch
            || self.leader_id != Some(env.from)
        {
            return self.fetch_failed(resp.error_code, resp.leader_epoch, resp.leader_id, out);
        }
        let end = resp.position.checked_add(resp.bytes.len() as u64);
        let valid = !gone
            && resp.snapshot_id == id
            && resp.position == position
            && end.is_some_and(|e| e <= resp.size)
            && (!resp.bytes.is_empty() || end == Some(resp.size));
        if !valid {
            // The leader deleted it (or answered nonsense): start over with
            // a Fetch, which names its latest snapshot.
            if let Role::Follower { snapshot, .. } = &mut self.role {
                *snapshot = None;
            }
            return self.leader_answered(false, out);
        }
        let end = end.unwrap_or(resp.size);
        if !resp.bytes.is_empty() {
            out.push(Output::SnapshotChunk {
                snapshot_id: id,
                position,
                bytes: resp.bytes.clone(),
            });
        }
        let done = end == resp.size;
        if let Role::Follower { snapshot, .. } = &mut self.role {
            *snapshot = (!done).then_some((id, end));
        }
        if done {
            // Everything in a snapshot is committed; our own committed
            // entries cannot be above it (the leader sent it because our log
            // does not reach or match its end).
            if self.high_watermark > id.end_offset {
                self.refused_truncations += 1;
                return;
            }
            self.log.reset_to_snapshot(id);
            self.installed_snapshot = Some(id);
            out.push(Output::InstallSnapshot(id));
            self.follower_high_watermark(id.end_offset, out);
        }
        self.leader_answered(true, out);
    }

    /// The state machine took a snapshot: the log starts at its end.
    fn snapshot_taken(&mut self, id: SnapshotId, out: &mut Vec<Output>) {
        if id.end_offset <= self.log.start() {
            return; // not newer than the one the log starts from
        }
        // Where it is relied on: a snapshot holds committed entries only.
        assert!(
            id.end_offset <= self.high_watermark,
            "snapshot {id:?} ends above the high watermark {}",
            self.high_watermark
        );
        self.log.advance_start(id);
        out.push(Output::DeleteBefore(id.end_offset));
    }

    fn leader_update_high_watermark(&mut self, out: &mut Vec<Output>) {
        let me = self.cfg.node_id;
        let majority = self.majority();
        let Role::Leader(state) = &self.role else {
            return;
        };
        // Over the voter set in force (the leader counts only while in it).
        let mut ends: Vec<Offset> = self
            .voters()
            .iter()
            .map(|v| {
                if v.id == me {
                    self.log.durable_end()
                } else {
                    state.replicas.get(&v.id).map_or(Offset(0), |r| r.end)
                }
            })
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&candidate) = ends.get(majority - 1) else {
            return;
        };
        // Nothing is committed until the entry starting our epoch is.
        if candidate > state.epoch_start && candidate > self.high_watermark {
            assert!(candidate <= self.log.end());
            self.high_watermark = candidate;
            out.push(Output::Committed {
                high_watermark: candidate,
            });
        }
    }

    // ---- proposals and dispatch ----

    fn propose(&mut self, payload: Vec<u8>, out: &mut Vec<Output>) {
        if !matches!(self.role, Role::Leader(_)) {
            out.push(Output::ProposalRejected {
                leader_id: self.leader_id,
                epoch: self.epoch,
            });
            return;
        }
        let entry = Entry {
            offset: self.log.end(),
            epoch: self.epoch,
            data: EntryData::Data(payload),
        };
        self.log.append(entry.offset, entry.epoch);
        out.push(Output::Proposed {
            offset: entry.offset,
            epoch: entry.epoch,
        });
        out.push(Output::AppendAsLeader(entry));
        out.push(Output::Flush);
    }

    fn change_voters(&mut self, voters: Vec<VoterKey>, out: &mut Vec<Output>) {
        let reject = |error_code: ErrorCode, message: &'static str, out: &mut Vec<Output>| {
            out.push(Output::VoterChangeRejected {
                error_code,
                message,
            });
        };
        let Role::Leader(state) = &self.role else {
            return reject(ErrorCode::NOT_LEADER_OR_FOLLOWER, "not the leader", out);
        };
        if !self.cfg.reconfigurable {
            return reject(
                ErrorCode::UNSUPPORTED_VERSION,
                "the voter set is static (kraft.version 0)",
                out,
            );
        }
        // Kafka's order: the leader must have committed its epoch, and the
        // latest voter change must be committed (one change at a time).
        if self.high_watermark <= state.epoch_start {
            return reject(
                ErrorCode::REQUEST_TIMED_OUT,
                "the leader has not committed its epoch yet",
                out,
            );
        }
        if self.cfg.planted_bug != PlantedBug::VoterChangeWhileUncommitted
            && self
                .log
                .last_voter_change()
                .is_some_and(|at| at >= self.high_watermark)
        {
            return reject(
                ErrorCode::REQUEST_TIMED_OUT,
                "the latest voter change is not committed yet",
                out,
            );
        }
        let current: BTreeSet<VoterKey> = self.voters().iter().copied().collect();
        let new: BTreeSet<VoterKey> = voters.iter().copied().collect();
        let ids: BTreeSet<NodeId> = voters.iter().map(|v| v.id).collect();
        let one_step = current.symmetric_difference(&new).count() == 1;
        if new.is_empty() || ids.len() != voters.len() || !one_step {
            return reject(
                ErrorCode::INVALID_REQUEST,
                "a voter change adds or removes exactly one voter",
                out,
            );
        }
        let entry = Entry {
            offset: self.log.end(),
            epoch: self.epoch,
            data: EntryData::Voters(voters.clone()),
        };
        self.log.append(entry.offset, entry.epoch);
        self.log.record_voters(entry.offset, voters);
        out.push(Output::VotersProposed {
            offset: entry.offset,
            epoch: entry.epoch,
        });
        out.push(Output::AppendAsLeader(entry));
        out.push(Output::Flush);
        // The new set is in force at once: track its voters, and the high
        // watermark may move (a removed voter no longer holds it back).
        self.sync_replicas();
        self.leader_update_high_watermark(out);
    }

    fn receive(&mut self, env: Envelope, log: &dyn LogReader, out: &mut Vec<Output>) {
        if !self.cfg.reconfigurable
            && !self.is_voter_id(env.from)
            && !matches!(
                env.message,
                Message::FetchRequest(_) | Message::FetchSnapshotRequest(_)
            )
        {
            // Only Fetch and FetchSnapshot are served to non-voters
            // (observers); anything else
            // from an unknown node changes nothing.
            if let Message::VoteRequest(_) = env.message {
                let msg = Message::VoteResponse(VoteResponse {
                    error_code: ErrorCode::INCONSISTENT_VOTER_SET,
                    leader_epoch: self.epoch,
                    leader_id: self.leader_id,
                    vote_granted: false,
                });
                self.reply(&env, msg, out);
            }
            return;
        }
        match &env.message {
            Message::VoteRequest(r) => self.handle_vote_request(&env, r, out),
            Message::VoteResponse(r) => self.handle_vote_response(&env, r, out),
            Message::BeginQuorumEpochRequest(r) => self.handle_begin_epoch(&env, r, out),
            Message::BeginQuorumEpochResponse(r) => {
                if r.error_code == ErrorCode::FENCED_LEADER_EPOCH {
                    self.observe(r.leader_epoch, r.leader_id, out);
                }
            }
            Message::EndQuorumEpochRequest(r) => self.handle_end_epoch(&env, r, out),
            Message::EndQuorumEpochResponse(r) => {
                self.observe(r.leader_epoch, r.leader_id, out);
            }
            Message::FetchRequest(r) => self.handle_fetch_request(&env, r, log, true, out),
            Message::FetchResponse(r) => self.handle_fetch_response(&env, r, out),
            Message::FetchSnapshotRequest(r) => {
                self.handle_fetch_snapshot_request(&env, r, log, out)
            }
            Message::FetchSnapshotResponse(r) => self.handle_fetch_snapshot_response(&env, r, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::SnapshotChunk;

    struct VecLog(Vec<Entry>);
    impl LogReader for VecLog {
        fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry> {
            self.0
                .iter()
                .skip(from.0 as usize)
                .take(max_entries)
                .cloned()
                .collect()
        }
        fn read_snapshot(&self, _: SnapshotId, _: u64, _: usize) -> Option<SnapshotChunk> {
            None
        }
    }

    fn cfg(id: i32, voters: &[i32]) -> Config {
        Config::new(
            NodeId(id),
            voters.iter().map(|v| NodeId(*v)).collect(),
            "c1".into(),
            42,
        )
    }

    fn entries(epochs: &[i32]) -> Vec<Entry> {
        epochs
            .iter()
            .enumerate()
            .map(|(i, e)| Entry {
                offset: Offset(i as i64),
                epoch: LeaderEpoch(*e),
                data: EntryData::Data(vec![i as u8]),
            })
            .collect()
    }

    fn node_with_log(
        id: i32,
        voters: &[i32],
        state: PersistedState,
        epochs: &[i32],
    ) -> (Node, VecLog) {
        let log = entries(epochs);
        let meta = LogMeta::from_epochs(log.iter().map(|e| e.epoch));
        (Node::new(cfg(id, voters), state, meta, 0), VecLog(log))
    }

    fn vote(from: i32, to: i32, epoch: i32, last_epoch: i32, last_offset: i64) -> Envelope {
        Envelope {
            from: NodeId(from),
            to: NodeId(to),
            correlation_id: 9,
            message: Message::VoteRequest(VoteRequest {
                cluster_id: "c1".into(),
                candidate_id: NodeId(from),
                candidate_epoch: LeaderEpoch(epoch),
                voter_id: NodeId(to),
                last_offset_epoch: LeaderEpoch(last_epoch),
                last_offset: Offset(last_offset),
                pre_vote: false,
            }),
        }
    }

    fn vote_response(out: &[Output]) -> VoteResponse {
        out.iter()
            .find_map(|o| match o {
                Output::Send(Envelope {
                    message: Message::VoteResponse(r),
                    ..
                }) => Some(r.clone()),
                _ => None,
            })
            .expect("a vote response")
    }

    fn fetch_response(out: &[Output]) -> FetchResponse {
        out.iter()
            .find_map(|o| match o {
                Output::Send(Envelope {
                    message: Message::FetchResponse(r),
                    ..
                }) => Some(r.clone()),
                _ => None,
            })
            .expect("a fetch response")
    }

    fn state(epoch: i32, leader: Option<i32>, voted: Option<i32>) -> PersistedState {
        PersistedState {
            epoch: LeaderEpoch(epoch),
            leader_id: leader.map(NodeId),
            voted_id: voted.map(NodeId),
        }
    }

    #[test]
    fn a_follower_whose_leader_is_unreachable_pre_votes_before_the_fetch_timeout() {
        let mut out = Vec::new();
        // Another voter unreachable: nothing changes.
        let (mut n, log) = node_with_log(2, &[1, 2, 3], state(3, Some(1), None), &[1, 2, 3]);
        n.step(10, Input::PeerUnreachable(NodeId(3)), &log, &mut out);
        let backoff = n.cfg.election_backoff_max_ms;
        assert!(backoff < n.cfg.fetch_timeout_ms);
        n.step(11 + backoff, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Follower);
        // The leader unreachable: a pre-vote once the backoff passed, before
        // the fetch timeout.
        let (mut n, log) = node_with_log(2, &[1, 2, 3], state(3, Some(1), None), &[1, 2, 3]);
        n.step(10, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Follower);
        n.step(20, Input::PeerUnreachable(NodeId(1)), &log, &mut out);
        out.clear();
        n.step(21 + backoff, Input::Tick, &log, &mut out);
        assert!(21 + backoff < 10 + n.cfg.fetch_timeout_ms);
        assert_eq!(n.role(), RoleKind::Prospective);
        let pre_votes = out
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Send(Envelope {
                        message: Message::VoteRequest(VoteRequest { pre_vote: true, .. }),
                        ..
                    })
                )
            })
            .count();
        assert_eq!(pre_votes, 2);
        // Pre-votes from others are granted at once.
        let (mut m, log) = node_with_log(3, &[1, 2, 3], state(3, Some(1), None), &[1, 2, 3]);
        m.step(10, Input::PeerUnreachable(NodeId(1)), &log, &mut out);
        let mut pre = vote(2, 3, 4, 3, 3);
        if let Message::VoteRequest(r) = &mut pre.message {
            r.pre_vote = true;
        }
        out.clear();
        m.step(11, Input::Receive(pre), &log, &mut out);
        assert!(
            vote_response(&out).vote_granted,
            "the leader is not heard from"
        );
    }

    #[test]
    fn vote_is_persisted_before_it_is_sent_and_granted_once_per_epoch() {
        let (mut n, log) = node_with_log(1, &[1, 2, 3], state(3, None, None), &[1, 2, 3]);
        let mut out = Vec::new();
        n.step(10, Input::Receive(vote(2, 1, 4, 3, 3)), &log, &mut out);
        let persist = out
            .iter()
            .position(|o| matches!(o, Output::PersistState(s) if s.voted_id == Some(NodeId(2))));
        let send = out.iter().position(|o| matches!(o, Output::Send(_)));
        assert!(persist.is_some() && persist < send, "{out:?}");
        assert!(vote_response(&out).vote_granted);
        assert_eq!(n.epoch(), LeaderEpoch(4));
        // Another candidate in the same epoch is refused; the first again is granted.
        out.clear();
        n.step(11, Input::Receive(vote(3, 1, 4, 3, 9)), &log, &mut out);
        assert!(!vote_response(&out).vote_granted);
        out.clear();
        n.step(12, Input::Receive(vote(2, 1, 4, 3, 3)), &log, &mut out);
        assert!(vote_response(&out).vote_granted);
        // After a restart from the persisted state the vote still holds.
        let (mut again, log) = node_with_log(1, &[1, 2, 3], state(4, None, Some(2)), &[1, 2, 3]);
        out.clear();
        again.step(0, Input::Receive(vote(3, 1, 4, 3, 9)), &log, &mut out);
        assert!(!vote_response(&out).vote_granted);
    }

    #[test]
    fn vote_refused_to_a_candidate_with_an_older_log() {
        let (mut n, log) = node_with_log(1, &[1, 2, 3], state(3, None, None), &[1, 2, 3]);
        let mut out = Vec::new();
        // Same last epoch, shorter log.
        n.step(0, Input::Receive(vote(2, 1, 4, 3, 2)), &log, &mut out);
        assert!(!vote_response(&out).vote_granted);
        // Older last epoch, longer log.
        out.clear();
        n.step(0, Input::Receive(vote(3, 1, 4, 2, 10)), &log, &mut out);
        assert!(!vote_response(&out).vote_granted);
        assert_eq!(n.voted_id(), None);
    }

    #[test]
    fn bad_votes_get_kafka_error_codes_and_change_nothing() {
        let (mut n, log) = node_with_log(1, &[1, 2, 3], state(5, Some(2), None), &[1, 2, 5]);
        let cases = [
            (
                {
                    let mut v = vote(3, 1, 6, 5, 3);
                    if let Message::VoteRequest(r) = &mut v.message {
                        r.cluster_id = "other".into();
                    }
                    v
                },
                ErrorCode::INCONSISTENT_CLUSTER_ID,
            ),
            (vote(7, 1, 6, 5, 3), ErrorCode::INCONSISTENT_VOTER_SET),
            (vote(3, 2, 6, 5, 3), ErrorCode::NONE), // addressed to another node: ignored
            (vote(3, 1, 4, 5, 3), ErrorCode::FENCED_LEADER_EPOCH),
        ];
        for (req, code) in cases {
            let mut out = Vec::new();
            n.step(0, Input::Receive(req), &log, &mut out);
            assert!(
                !out.iter().any(|o| matches!(o, Output::PersistState(_))),
                "{out:?}"
            );
            if code == ErrorCode::NONE {
                assert!(out.is_empty());
            } else {
                let r = vote_response(&out);
                assert_eq!(r.error_code, code);
                assert!(!r.vote_granted);
                assert_eq!(r.leader_epoch, LeaderEpoch(5));
            }
            assert_eq!(
                (n.epoch(), n.leader_id(), n.voted_id()),
                (LeaderEpoch(5), Some(NodeId(2)), None)
            );
        }
    }

    fn elect_single(id: i32) -> (Node, Vec<Entry>, Vec<Output>) {
        let mut n = Node::new(
            cfg(id, &[id]),
            PersistedState::default(),
            LogMeta::default(),
            0,
        );
        let mut out = Vec::new();
        n.step(5_000, Input::Tick, &VecLog(Vec::new()), &mut out);
        assert_eq!(n.role(), RoleKind::Leader);
        let log: Vec<Entry> = out
            .iter()
            .filter_map(|o| match o {
                Output::AppendAsLeader(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        (n, log, out)
    }

    #[test]
    fn single_voter_commits_only_what_is_durable() {
        let (mut n, mut log, out) = elect_single(1);
        assert!(matches!(
            &log[..],
            [Entry {
                epoch: LeaderEpoch(1),
                data: EntryData::LeaderChange { .. },
                ..
            }]
        ));
        assert!(!out.iter().any(|o| matches!(o, Output::Committed { .. })));
        let mut out = Vec::new();
        n.step(
            5_001,
            Input::Propose(b"x".to_vec()),
            &VecLog(log.clone()),
            &mut out,
        );
        assert!(out.contains(&Output::Proposed {
            offset: Offset(1),
            epoch: LeaderEpoch(1)
        }));
        log.extend(out.iter().filter_map(|o| match o {
            Output::AppendAsLeader(e) => Some(e.clone()),
            _ => None,
        }));
        assert_eq!(n.high_watermark(), Offset(0));
        out.clear();
        n.step(
            5_002,
            Input::Flushed {
                end_offset: Offset(1),
            },
            &VecLog(log.clone()),
            &mut out,
        );
        assert_eq!(
            out,
            vec![Output::Committed {
                high_watermark: Offset(1)
            }]
        );
        out.clear();
        n.step(
            5_003,
            Input::Flushed {
                end_offset: Offset(2),
            },
            &VecLog(log),
            &mut out,
        );
        assert_eq!(
            out,
            vec![Output::Committed {
                high_watermark: Offset(2)
            }]
        );
    }

    fn fetch(from: i32, epoch: i32, offset: i64, last_epoch: i32) -> Envelope {
        Envelope {
            from: NodeId(from),
            to: NodeId(1),
            correlation_id: 3,
            message: Message::FetchRequest(FetchRequest {
                cluster_id: "c1".into(),
                replica_id: NodeId(from),
                replica_directory_id: 0,
                current_leader_epoch: LeaderEpoch(epoch),
                fetch_offset: Offset(offset),
                last_fetched_epoch: LeaderEpoch(last_epoch),
                max_wait_ms: 0,
            }),
        }
    }

    #[test]
    fn leader_answers_fetch_with_diverging_epoch_errors_and_entries() {
        // A leader of epoch 6 whose log is [1,1,3,3,6].
        let (mut n, _) = node_with_log(1, &[1, 2, 3], state(5, None, None), &[1, 1, 3, 3]);
        let log = VecLog(entries(&[1, 1, 3, 3]));
        let mut out = Vec::new();
        n.step(5_000, Input::Tick, &log, &mut out); // prospective
        for v in [2, 3] {
            let env = Envelope {
                from: NodeId(v),
                to: NodeId(1),
                correlation_id: u64::MAX,
                message: Message::VoteResponse(VoteResponse {
                    error_code: ErrorCode::NONE,
                    leader_epoch: n.epoch(),
                    leader_id: None,
                    vote_granted: true,
                }),
            };
            n.step(5_001, Input::Receive(env), &log, &mut out);
        }
        assert_eq!((n.role(), n.epoch()), (RoleKind::Leader, LeaderEpoch(6)));
        let mut full = entries(&[1, 1, 3, 3]);
        full.extend(out.iter().filter_map(|o| match o {
            Output::AppendAsLeader(e) => Some(e.clone()),
            _ => None,
        }));
        let log = VecLog(full);
        let ask = |n: &mut Node, env: Envelope| {
            let mut out = Vec::new();
            n.step(5_002, Input::Receive(env), &log, &mut out);
            fetch_response(&out)
        };
        // Follower has [1,1,2,2,2]: epoch 2 is not in our log; ours ends epoch 1 at 2.
        let r = ask(&mut n, fetch(2, 6, 5, 2));
        assert_eq!(
            r.diverging_epoch,
            Some(DivergingEpoch {
                epoch: LeaderEpoch(1),
                end_offset: Offset(2)
            })
        );
        assert!(r.records.is_empty());
        // Follower has [1,1,3,3,3]: epoch 3 ends at 4 here.
        let r = ask(&mut n, fetch(2, 6, 5, 3));
        assert_eq!(
            r.diverging_epoch,
            Some(DivergingEpoch {
                epoch: LeaderEpoch(3),
                end_offset: Offset(4)
            })
        );
        // Follower has [1,1,3]: matches; gets the rest.
        let r = ask(&mut n, fetch(2, 6, 3, 3));
        assert_eq!(r.diverging_epoch, None);
        assert_eq!(
            r.records.iter().map(|e| e.offset.0).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(
            r.high_watermark,
            Offset(0),
            "nothing committed before the epoch's first entry is"
        );
        // Stale and future epochs, wrong cluster.
        assert_eq!(
            ask(&mut n, fetch(2, 5, 3, 3)).error_code,
            ErrorCode::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            ask(&mut n, fetch(2, 7, 3, 3)).error_code,
            ErrorCode::UNKNOWN_LEADER_EPOCH
        );
        let mut bad = fetch(2, 6, 3, 3);
        if let Message::FetchRequest(f) = &mut bad.message {
            f.cluster_id = "x".into();
        }
        assert_eq!(
            ask(&mut n, bad).error_code,
            ErrorCode::INCONSISTENT_CLUSTER_ID
        );
        // Durable on the leader and on voter 3: the high watermark covers the new epoch.
        let mut out = Vec::new();
        n.step(
            5_002,
            Input::Flushed {
                end_offset: Offset(5),
            },
            &log,
            &mut out,
        );
        let r = ask(&mut n, fetch(3, 6, 5, 6));
        assert_eq!(r.high_watermark, Offset(5));
        assert_eq!(n.high_watermark(), Offset(5));
    }

    #[test]
    fn follower_truncates_on_diverging_epoch_and_fetches_only_durable_data() {
        let (mut n, log) = node_with_log(2, &[1, 2, 3], state(6, Some(1), None), &[1, 1, 2, 2, 2]);
        let mut out = Vec::new();
        n.step(0, Input::Tick, &log, &mut out);
        let id = match &out[..] {
            [Output::Send(Envelope {
                correlation_id,
                message: Message::FetchRequest(f),
                ..
            })] => {
                assert_eq!(
                    (f.fetch_offset, f.last_fetched_epoch),
                    (Offset(5), LeaderEpoch(2))
                );
                *correlation_id
            }
            other => panic!("{other:?}"),
        };
        let reply = |id: u64, resp: FetchResponse| Envelope {
            from: NodeId(1),
            to: NodeId(2),
            correlation_id: id,
            message: Message::FetchResponse(resp),
        };
        let base = FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(6),
            leader_id: Some(NodeId(1)),
            high_watermark: Offset(0),
            diverging_epoch: Some(DivergingEpoch {
                epoch: LeaderEpoch(1),
                end_offset: Offset(2),
            }),
            snapshot_id: None,
            records: Vec::new(),
        };
        out.clear();
        n.step(1, Input::Receive(reply(id, base.clone())), &log, &mut out);
        assert_eq!(out[0], Output::TruncateTo(Offset(2)));
        let id = match out.last() {
            Some(Output::Send(Envelope {
                correlation_id,
                message: Message::FetchRequest(f),
                ..
            })) => {
                assert_eq!(
                    (f.fetch_offset, f.last_fetched_epoch),
                    (Offset(2), LeaderEpoch(1))
                );
                *correlation_id
            }
            other => panic!("{other:?}"),
        };
        // A late duplicate of the first answer changes nothing.
        out.clear();
        n.step(2, Input::Receive(reply(1, base.clone())), &log, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Entries arrive: appended, and no new Fetch until they are durable.
        let new = vec![
            Entry {
                offset: Offset(2),
                epoch: LeaderEpoch(3),
                data: EntryData::Data(vec![7]),
            },
            Entry {
                offset: Offset(3),
                epoch: LeaderEpoch(6),
                data: EntryData::Data(vec![8]),
            },
        ];
        let resp = FetchResponse {
            diverging_epoch: None,
            records: new.clone(),
            high_watermark: Offset(3),
            ..base
        };
        out.clear();
        n.step(3, Input::Receive(reply(id, resp)), &log, &mut out);
        assert_eq!(out[0], Output::AppendAsFollower(new));
        assert!(out.contains(&Output::Committed {
            high_watermark: Offset(3)
        }));
        assert!(!out.iter().any(|o| matches!(o, Output::Send(_))), "{out:?}");
        out.clear();
        n.step(
            4,
            Input::Flushed {
                end_offset: Offset(4),
            },
            &log,
            &mut out,
        );
        assert!(
            matches!(&out[..], [Output::Send(Envelope { message: Message::FetchRequest(f), .. })]
            if f.fetch_offset == Offset(4) && f.last_fetched_epoch == LeaderEpoch(6))
        );
    }

    #[test]
    fn leader_resigns_when_a_majority_stops_fetching() {
        let (mut n, _) = node_with_log(1, &[1, 2, 3], state(0, None, None), &[]);
        let log = VecLog(Vec::new());
        let mut out = Vec::new();
        n.step(5_000, Input::Tick, &log, &mut out);
        for v in [2, 3] {
            for pre in [true, false] {
                let env = Envelope {
                    from: NodeId(v),
                    to: NodeId(1),
                    correlation_id: u64::MAX,
                    message: Message::VoteResponse(VoteResponse {
                        error_code: ErrorCode::NONE,
                        leader_epoch: if pre { LeaderEpoch(0) } else { LeaderEpoch(1) },
                        leader_id: None,
                        vote_granted: true,
                    }),
                };
                n.step(5_000, Input::Receive(env), &log, &mut out);
            }
        }
        assert_eq!(n.role(), RoleKind::Leader);
        out.clear();
        n.step(5_000 + 2_000, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Leader, "within 1.5 fetch timeouts");
        n.step(5_000 + 3_000, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Resigned);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Send(Envelope {
                message: Message::EndQuorumEpochRequest(_),
                ..
            })
        )));
        out.clear();
        n.step(5_000 + 3_001, Input::Propose(vec![1]), &log, &mut out);
        assert!(matches!(out[..], [Output::ProposalRejected { .. }]));
    }

    /// A log with entries from any offset and maybe one snapshot.
    struct SnapLog {
        entries: Vec<Entry>,
        snapshot: Option<(SnapshotId, Vec<u8>)>,
    }
    impl LogReader for SnapLog {
        fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry> {
            self.entries
                .iter()
                .filter(|e| e.offset >= from)
                .take(max_entries)
                .cloned()
                .collect()
        }
        fn read_snapshot(
            &self,
            id: SnapshotId,
            position: u64,
            max: usize,
        ) -> Option<SnapshotChunk> {
            let (sid, bytes) = self.snapshot.as_ref().filter(|(sid, _)| *sid == id)?;
            assert_eq!(*sid, id);
            let from = (position as usize).min(bytes.len());
            let to = (from + max).min(bytes.len());
            Some(SnapshotChunk {
                size_bytes: bytes.len() as u64,
                bytes: bytes[from..to].to_vec(),
            })
        }
    }

    /// Node 1 of [1, 2, 3] elected in epoch 6 over a log of `epochs`; the
    /// log with its LeaderChange entry.
    fn lead_three(epochs: &[i32]) -> (Node, Vec<Entry>) {
        let (mut n, _) = node_with_log(1, &[1, 2, 3], state(5, None, None), epochs);
        let log = VecLog(entries(epochs));
        let mut out = Vec::new();
        n.step(5_000, Input::Tick, &log, &mut out);
        for v in [2, 3] {
            let env = Envelope {
                from: NodeId(v),
                to: NodeId(1),
                correlation_id: u64::MAX,
                message: Message::VoteResponse(VoteResponse {
                    error_code: ErrorCode::NONE,
                    leader_epoch: n.epoch(),
                    leader_id: None,
                    vote_granted: true,
                }),
            };
            n.step(5_001, Input::Receive(env), &log, &mut out);
        }
        assert_eq!((n.role(), n.epoch()), (RoleKind::Leader, LeaderEpoch(6)));
        let mut full = entries(epochs);
        full.extend(out.iter().filter_map(|o| match o {
            Output::AppendAsLeader(e) => Some(e.clone()),
            _ => None,
        }));
        (n, full)
    }

    fn sent(out: &[Output]) -> Vec<Envelope> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn fetch_snapshot(from: i32, epoch: i32, id: SnapshotId, position: u64) -> Envelope {
        Envelope {
            from: NodeId(from),
            to: NodeId(1),
            correlation_id: 4,
            message: Message::FetchSnapshotRequest(FetchSnapshotRequest {
                cluster_id: "c1".into(),
                replica_id: NodeId(from),
                max_bytes: 4,
                current_leader_epoch: LeaderEpoch(epoch),
                snapshot_id: id,
                position,
            }),
        }
    }

    #[test]
    fn leader_names_its_snapshot_below_its_log_start_and_serves_it_in_chunks() {
        // Log [1,1,3,3,6]; committed through voter 3; snapshot of [0, 4).
        let (mut n, full) = lead_three(&[1, 1, 3, 3]);
        let mut out = Vec::new();
        let log = VecLog(full.clone());
        n.step(
            5_002,
            Input::Flushed {
                end_offset: Offset(5),
            },
            &log,
            &mut out,
        );
        n.step(5_002, Input::Receive(fetch(3, 6, 5, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(5));
        let id = SnapshotId {
            end_offset: Offset(4),
            epoch: LeaderEpoch(3),
        };
        out.clear();
        n.step(5_003, Input::SnapshotTaken(id), &log, &mut out);
        assert_eq!(out, vec![Output::DeleteBefore(Offset(4))]);
        assert_eq!(
            (n.log().start(), n.log().snapshot_id()),
            (Offset(4), Some(id))
        );
        // An older snapshot changes nothing.
        out.clear();
        let old = SnapshotId {
            end_offset: Offset(2),
            epoch: LeaderEpoch(1),
        };
        n.step(5_003, Input::SnapshotTaken(old), &log, &mut out);
        assert!(out.is_empty());
        let log = SnapLog {
            entries: full[4..].to_vec(),
            snapshot: Some((id, b"0123456789".to_vec())),
        };
        let ask = |n: &mut Node, env: Envelope| {
            let mut out = Vec::new();
            n.step(5_004, Input::Receive(env), &log, &mut out);
            match sent(&out).pop().map(|e| e.message) {
                Some(m) => m,
                None => panic!("no answer: {out:?}"),
            }
        };
        let snapshot_of = |m: Message| match m {
            Message::FetchResponse(r) => (r.snapshot_id, r.diverging_epoch, r.records.len()),
            other => panic!("{other:?}"),
        };
        // Below the log start; at it with another epoch; an epoch older than the snapshot's.
        assert_eq!(
            snapshot_of(ask(&mut n, fetch(2, 6, 2, 1))),
            (Some(id), None, 0)
        );
        assert_eq!(
            snapshot_of(ask(&mut n, fetch(2, 6, 4, 2))),
            (Some(id), None, 0)
        );
        assert_eq!(
            snapshot_of(ask(&mut n, fetch(2, 6, 5, 2))),
            (Some(id), None, 0)
        );
        assert_eq!(
            snapshot_of(ask(&mut n, fetch(2, 6, 0, 0))),
            (Some(id), None, 0)
        );
        // At the log start with the snapshot's epoch: entries from there.
        assert_eq!(snapshot_of(ask(&mut n, fetch(2, 6, 4, 3))), (None, None, 1));
        // Epoch 3 ended at 4 here: a follower with more of epoch 3 diverges there.
        let div = DivergingEpoch {
            epoch: LeaderEpoch(3),
            end_offset: Offset(4),
        };
        assert_eq!(
            snapshot_of(ask(&mut n, fetch(2, 6, 5, 3))),
            (None, Some(div), 0)
        );
        // FetchSnapshot: chunks of at most max_bytes, by position.
        let chunk = |m: Message| match m {
            Message::FetchSnapshotResponse(r) => (r.error_code, r.size, r.position, r.bytes),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(2, 6, id, 0))),
            (ErrorCode::NONE, 10, 0, b"0123".to_vec())
        );
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(2, 6, id, 8))),
            (ErrorCode::NONE, 10, 8, b"89".to_vec())
        );
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(2, 6, id, 10))).0,
            POSITION_OUT_OF_RANGE
        );
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(2, 6, old, 0))).0,
            SNAPSHOT_NOT_FOUND
        );
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(2, 5, id, 0))).0,
            ErrorCode::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(2, 7, id, 0))).0,
            ErrorCode::UNKNOWN_LEADER_EPOCH
        );
        // Observers may fetch snapshots too.
        assert_eq!(
            chunk(ask(&mut n, fetch_snapshot(9, 6, id, 4))).3,
            b"4567".to_vec()
        );
    }

    #[test]
    fn follower_fetches_a_snapshot_in_chunks_installs_it_and_fetches_on() {
        let (mut n, log) = node_with_log(2, &[1, 2, 3], state(6, Some(1), None), &[1, 1]);
        let mut out = Vec::new();
        n.step(0, Input::Tick, &log, &mut out);
        let id = SnapshotId {
            end_offset: Offset(9),
            epoch: LeaderEpoch(5),
        };
        let reply = |req: &Envelope, message: Message| Envelope {
            from: NodeId(1),
            to: NodeId(2),
            correlation_id: req.correlation_id,
            message,
        };
        let fetch_resp = FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(6),
            leader_id: Some(NodeId(1)),
            high_watermark: Offset(12),
            diverging_epoch: None,
            snapshot_id: Some(id),
            records: Vec::new(),
        };
        let chunk_resp = |position: u64, bytes: &[u8]| {
            Message::FetchSnapshotResponse(FetchSnapshotResponse {
                error_code: ErrorCode::NONE,
                leader_epoch: LeaderEpoch(6),
                leader_id: Some(NodeId(1)),
                snapshot_id: id,
                size: 5,
                position,
                bytes: bytes.to_vec(),
            })
        };
        let req = sent(&out).pop().unwrap();
        out.clear();
        n.step(
            1,
            Input::Receive(reply(&req, Message::FetchResponse(fetch_resp.clone()))),
            &log,
            &mut out,
        );
        let req = sent(&out).pop().unwrap();
        assert!(
            matches!(&req.message, Message::FetchSnapshotRequest(r) if r.snapshot_id == id && r.position == 0),
            "{req:?}"
        );
        out.clear();
        n.step(
            2,
            Input::Receive(reply(&req, chunk_resp(0, b"abc"))),
            &log,
            &mut out,
        );
        assert_eq!(
            out[0],
            Output::SnapshotChunk {
                snapshot_id: id,
                position: 0,
                bytes: b"abc".to_vec()
            }
        );
        let req = sent(&out).pop().unwrap();
        assert!(matches!(&req.message, Message::FetchSnapshotRequest(r) if r.position == 3));
        // A chunk for another position (a late duplicate) is not taken.
        out.clear();
        n.step(
            3,
            Input::Receive(reply(&req, chunk_resp(0, b"abc"))),
            &log,
            &mut out,
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::SnapshotChunk { .. })),
            "{out:?}"
        );
        // Start over with a Fetch after it (the leader names its snapshot again).
        let req = sent(&out).pop().unwrap();
        assert!(matches!(&req.message, Message::FetchRequest(_)), "{req:?}");
        out.clear();
        n.step(
            4,
            Input::Receive(reply(&req, Message::FetchResponse(fetch_resp))),
            &log,
            &mut out,
        );
        let req = sent(&out).pop().unwrap();
        out.clear();
        n.step(
            5,
            Input::Receive(reply(&req, chunk_resp(0, b"abc"))),
            &log,
            &mut out,
        );
        let req = sent(&out).pop().unwrap();
        out.clear();
        n.step(
            6,
            Input::Receive(reply(&req, chunk_resp(3, b"de"))),
            &log,
            &mut out,
        );
        let installed = out.iter().position(|o| *o == Output::InstallSnapshot(id));
        let chunk = out
            .iter()
            .position(|o| matches!(o, Output::SnapshotChunk { position: 3, .. }));
        assert!(chunk.is_some() && chunk < installed, "{out:?}");
        assert!(out.contains(&Output::Committed {
            high_watermark: Offset(9)
        }));
        assert_eq!(
            (n.log().start(), n.log().end(), n.high_watermark()),
            (Offset(9), Offset(9), Offset(9))
        );
        let req = sent(&out).pop().unwrap();
        assert!(
            matches!(&req.message, Message::FetchRequest(f) if f.fetch_offset == Offset(9) && f.last_fetched_epoch == LeaderEpoch(5)),
            "{req:?}"
        );
        // SNAPSHOT_NOT_FOUND (the leader deleted it) goes back to Fetch.
        let (mut m, log) = node_with_log(2, &[1, 2, 3], state(6, Some(1), None), &[]);
        out.clear();
        m.step(0, Input::Tick, &log, &mut out);
        let req = sent(&out).pop().unwrap();
        let resp = FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(6),
            leader_id: Some(NodeId(1)),
            high_watermark: Offset(12),
            diverging_epoch: None,
            snapshot_id: Some(id),
            records: Vec::new(),
        };
        out.clear();
        m.step(
            1,
            Input::Receive(reply(&req, Message::FetchResponse(resp))),
            &log,
            &mut out,
        );
        let req = sent(&out).pop().unwrap();
        let gone = Message::FetchSnapshotResponse(FetchSnapshotResponse {
            error_code: SNAPSHOT_NOT_FOUND,
            leader_epoch: LeaderEpoch(6),
            leader_id: Some(NodeId(1)),
            snapshot_id: id,
            size: 0,
            position: 0,
            bytes: Vec::new(),
        });
        out.clear();
        m.step(200, Input::Receive(reply(&req, gone)), &log, &mut out);
        m.step(300, Input::Tick, &log, &mut out);
        assert!(
            sent(&out)
                .iter()
                .any(|e| matches!(e.message, Message::FetchRequest(_))),
            "{out:?}"
        );
        assert_eq!(m.role(), RoleKind::Follower);
    }

    /// The answer to `probe` of a node that does not lead but knows that
    /// `leader` leads `epoch`.
    fn names_leader(probe: &Envelope, epoch: i32, leader: i32) -> Envelope {
        Envelope {
            from: probe.to,
            to: probe.from,
            correlation_id: probe.correlation_id,
            message: Message::FetchResponse(FetchResponse {
                error_code: ErrorCode::NOT_LEADER_OR_FOLLOWER,
                leader_epoch: LeaderEpoch(epoch),
                leader_id: Some(NodeId(leader)),
                high_watermark: Offset(-1),
                diverging_epoch: None,
                snapshot_id: None,
                records: Vec::new(),
            }),
        }
    }

    #[test]
    fn observer_finds_the_leader_follows_it_and_never_votes() {
        let (mut n, log) = node_with_log(9, &[1, 2, 3], state(0, None, None), &[]);
        assert!(!n.is_voter());
        let mut out = Vec::new();
        n.step(0, Input::Tick, &log, &mut out);
        let probe = sent(&out).pop().expect("asks a voter");
        assert!(
            matches!(&probe.message, Message::FetchRequest(f) if f.replica_id == NodeId(9)),
            "{probe:?}"
        );
        assert!([1, 2, 3].contains(&probe.to.0));
        // The voter does not lead but knows who does.
        let answer = names_leader(&probe, 4, 2);
        out.clear();
        n.step(1, Input::Receive(answer), &log, &mut out);
        assert_eq!(
            (n.role(), n.leader_id(), n.epoch()),
            (RoleKind::Follower, Some(NodeId(2)), LeaderEpoch(4))
        );
        assert!(sent(&out)
            .iter()
            .any(|e| e.to == NodeId(2) && matches!(e.message, Message::FetchRequest(_))));
        // A vote request is refused and changes nothing.
        out.clear();
        let mut v = vote(1, 9, 5, 4, 10);
        if let Message::VoteRequest(r) = &mut v.message {
            r.voter_id = NodeId(9);
        }
        n.step(2, Input::Receive(v), &log, &mut out);
        let r = vote_response(&out);
        assert!(!r.vote_granted);
        assert_eq!(r.error_code, ErrorCode::INCONSISTENT_VOTER_SET);
        assert_eq!(n.voted_id(), None);
        // The leader falls silent: no election, the observer asks the voters again.
        out.clear();
        for t in (100..10_000).step_by(100) {
            n.step(t, Input::Tick, &log, &mut out);
            assert!(
                matches!(n.role(), RoleKind::Follower | RoleKind::Unattached),
                "{:?}",
                n.role()
            );
        }
        assert!(!sent(&out)
            .iter()
            .any(|e| matches!(e.message, Message::VoteRequest(_))));
        assert!(
            sent(&out).iter().any(|e| e.to != NodeId(2)),
            "asks other voters too"
        );
        assert_eq!(n.role(), RoleKind::Unattached);
        // A new leader answers: followed.
        let probe = sent(&out).pop().unwrap();
        let answer = Envelope {
            from: probe.to,
            to: NodeId(9),
            correlation_id: probe.correlation_id,
            message: Message::FetchResponse(FetchResponse {
                error_code: ErrorCode::FENCED_LEADER_EPOCH,
                leader_epoch: LeaderEpoch(5),
                leader_id: Some(NodeId(3)),
                high_watermark: Offset(-1),
                diverging_epoch: None,
                snapshot_id: None,
                records: Vec::new(),
            }),
        };
        out.clear();
        n.step(10_000, Input::Receive(answer), &log, &mut out);
        assert_eq!(
            (n.role(), n.leader_id()),
            (RoleKind::Follower, Some(NodeId(3)))
        );
    }

    #[test]
    fn an_observer_with_no_voters_asks_the_bootstrap_servers_who_leads() {
        // A controller formatted with --no-initial-controllers: no voter set
        // known, only controller.quorum.bootstrap.servers (ids -2, -3).
        let mut c = cfg(4, &[]);
        c.reconfigurable = true;
        c.directory_id = 44;
        c.bootstrap = vec![NodeId(-2), NodeId(-3)];
        let log = VecLog(Vec::new());
        let meta = LogMeta::from_epochs(std::iter::empty());
        let mut n = Node::new(c, PersistedState::default(), meta, 0);
        assert!(!n.is_voter());
        let mut out = Vec::new();
        n.step(0, Input::Tick, &log, &mut out);
        let probe = sent(&out).pop().expect("asks a bootstrap server");
        assert!([-2, -3].contains(&probe.to.0), "{probe:?}");
        assert!(
            matches!(&probe.message, Message::FetchRequest(f)
                if f.replica_id == NodeId(4) && f.replica_directory_id == 44),
            "{probe:?}"
        );
        // The node behind that endpoint (a follower) names the leader.
        let answer = names_leader(&probe, 3, 2);
        out.clear();
        n.step(1, Input::Receive(answer), &log, &mut out);
        assert_eq!(
            (n.role(), n.leader_id(), n.epoch()),
            (RoleKind::Follower, Some(NodeId(2)), LeaderEpoch(3))
        );
        assert!(sent(&out)
            .iter()
            .any(|e| e.to == NodeId(2) && matches!(e.message, Message::FetchRequest(_))));
    }

    #[test]
    fn observer_fetches_do_not_count_toward_the_high_watermark() {
        let (mut n, full) = lead_three(&[1, 1]);
        let log = VecLog(full);
        let mut out = Vec::new();
        n.step(
            5_002,
            Input::Flushed {
                end_offset: Offset(3),
            },
            &log,
            &mut out,
        );
        // Observers 8 and 9 hold everything; the voters nothing yet.
        for o in [8, 9] {
            let r = {
                out.clear();
                n.step(5_003, Input::Receive(fetch(o, 6, 3, 6)), &log, &mut out);
                fetch_response(&out)
            };
            assert_eq!(r.error_code, ErrorCode::NONE);
        }
        assert_eq!(n.high_watermark(), Offset(0));
        out.clear();
        n.step(5_004, Input::Receive(fetch(2, 6, 3, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(3));
        // And they do not keep the leader in office.
        n.step(
            5_004 + 2_999,
            Input::Receive(fetch(8, 6, 3, 6)),
            &log,
            &mut out,
        );
        n.step(5_004 + 3_000, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Resigned);
    }

    #[test]
    fn leader_holds_an_empty_fetch_until_data_arrives_or_the_wait_ends() {
        let (mut n, full) = lead_three(&[1, 1]);
        let mut log = VecLog(full);
        let mut out = Vec::new();
        n.step(
            5_002,
            Input::Flushed {
                end_offset: Offset(3),
            },
            &log,
            &mut out,
        );
        let mut waiting = fetch(2, 6, 3, 6);
        if let Message::FetchRequest(f) = &mut waiting.message {
            f.max_wait_ms = 300;
        }
        // The fetch moves the high watermark: answered at once.
        out.clear();
        n.step(5_003, Input::Receive(waiting.clone()), &log, &mut out);
        assert_eq!(fetch_response(&out).high_watermark, Offset(3));
        // Nothing new now: held, then answered when a proposal is appended.
        out.clear();
        n.step(5_004, Input::Receive(waiting.clone()), &log, &mut out);
        assert!(sent(&out).is_empty(), "{out:?}");
        assert_eq!(n.held_fetch_deadline_ms(), Some(5_004 + 300));
        n.step(5_010, Input::Tick, &log, &mut out);
        assert!(sent(&out).is_empty(), "{out:?}");
        n.step(5_011, Input::Propose(b"p".to_vec()), &log, &mut out);
        log.0.extend(out.iter().filter_map(|o| match o {
            Output::AppendAsLeader(e) => Some(e.clone()),
            _ => None,
        }));
        // Answered at the next step, when the log holds the new entry.
        assert!(sent(&out).is_empty(), "{out:?}");
        out.clear();
        n.step(5_012, Input::Tick, &log, &mut out);
        let r = fetch_response(&out);
        assert_eq!(
            r.records.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![Offset(3)]
        );
        assert_eq!(n.held_fetch_deadline_ms(), None);
        // Held again; nothing happens; answered empty when the wait is over.
        let mut again = fetch(2, 6, 4, 6);
        if let Message::FetchRequest(f) = &mut again.message {
            f.max_wait_ms = 300;
        }
        out.clear();
        n.step(
            5_012,
            Input::Flushed {
                end_offset: Offset(4),
            },
            &log,
            &mut out,
        );
        n.step(5_013, Input::Receive(fetch(3, 6, 4, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(4));
        out.clear();
        n.step(5_013, Input::Receive(again), &log, &mut out);
        assert!(sent(&out).is_empty(), "{out:?}");
        n.step(5_013 + 299, Input::Tick, &log, &mut out);
        assert!(sent(&out).is_empty(), "{out:?}");
        n.step(5_013 + 300, Input::Tick, &log, &mut out);
        let r = fetch_response(&out);
        assert!(r.records.is_empty());
        assert_eq!(r.high_watermark, n.high_watermark());
        // A leader that resigns answers what it holds.
        let mut held = fetch(3, 6, 4, 6);
        if let Message::FetchRequest(f) = &mut held.message {
            f.max_wait_ms = 300;
        }
        out.clear();
        n.step(5_400, Input::Receive(held), &log, &mut out);
        assert!(n.held_fetch_deadline_ms().is_some());
        n.step(5_400 + 3_000, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Resigned);
        assert_eq!(
            fetch_response(&out).error_code,
            ErrorCode::NOT_LEADER_OR_FOLLOWER
        );
        assert_eq!(n.held_fetch_deadline_ms(), None);
    }

    fn voter(id: i32) -> VoterKey {
        VoterKey::new(NodeId(id), 0)
    }

    fn flushed(end_offset: i64) -> Input {
        Input::Flushed {
            end_offset: Offset(end_offset),
        }
    }

    fn voter_change_refusal(out: &[Output]) -> Option<ErrorCode> {
        out.iter().find_map(|o| match o {
            Output::VoterChangeRejected { error_code, .. } => Some(*error_code),
            _ => None,
        })
    }

    fn appended(out: &[Output]) -> Vec<Entry> {
        out.iter()
            .filter_map(|o| match o {
                Output::AppendAsLeader(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn leader_changes_voters_one_at_a_time_and_commits_with_the_set_in_force() {
        let (mut n, full) = lead_three(&[1, 1]);
        let mut log = VecLog(full);
        let mut out = Vec::new();
        let all = |ids: &[i32]| ids.iter().map(|i| voter(*i)).collect::<Vec<_>>();
        // A static voter set never changes.
        n.step(5_002, Input::ChangeVoters(all(&[1, 2])), &log, &mut out);
        assert_eq!(
            voter_change_refusal(&out),
            Some(ErrorCode::UNSUPPORTED_VERSION)
        );
        n.cfg.reconfigurable = true;
        // Not before the leader committed its epoch.
        out.clear();
        n.step(5_002, Input::ChangeVoters(all(&[1, 2])), &log, &mut out);
        assert_eq!(
            voter_change_refusal(&out),
            Some(ErrorCode::REQUEST_TIMED_OUT)
        );
        n.step(5_002, flushed(3), &log, &mut out);
        n.step(5_003, Input::Receive(fetch(2, 6, 3, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(3));
        // One voter added or removed, no more, no less.
        for bad in [
            all(&[1]),
            all(&[1, 2, 3, 4, 5]),
            all(&[1, 2, 4]),
            all(&[1, 2, 3]),
        ] {
            out.clear();
            n.step(5_004, Input::ChangeVoters(bad), &log, &mut out);
            assert_eq!(voter_change_refusal(&out), Some(ErrorCode::INVALID_REQUEST));
        }
        // Observer 4 fetched; it is added and counts at once.
        n.step(5_004, Input::Receive(fetch(4, 6, 3, 6)), &log, &mut out);
        out.clear();
        n.step(
            5_005,
            Input::ChangeVoters(all(&[1, 2, 3, 4])),
            &log,
            &mut out,
        );
        assert!(out.contains(&Output::VotersProposed {
            offset: Offset(3),
            epoch: LeaderEpoch(6)
        }));
        log.0.extend(appended(&out));
        assert_eq!(n.voters(), all(&[1, 2, 3, 4]).as_slice());
        // A second change waits for the first to commit.
        out.clear();
        n.step(5_006, Input::ChangeVoters(all(&[1, 2, 3])), &log, &mut out);
        assert_eq!(
            voter_change_refusal(&out),
            Some(ErrorCode::REQUEST_TIMED_OUT)
        );
        // Three of the four voters now make the high watermark.
        n.step(5_006, flushed(4), &log, &mut out);
        n.step(5_007, Input::Receive(fetch(2, 6, 4, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(3));
        n.step(5_008, Input::Receive(fetch(4, 6, 4, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(4));
        // The leader removes itself: it leads on, not counting itself,
        // until the change commits, then resigns.
        out.clear();
        n.step(5_009, Input::ChangeVoters(all(&[2, 3, 4])), &log, &mut out);
        log.0.extend(appended(&out));
        assert!(!n.is_voter());
        n.step(5_009, flushed(5), &log, &mut out);
        n.step(5_010, Input::Receive(fetch(2, 6, 5, 6)), &log, &mut out);
        assert_eq!(
            n.high_watermark(),
            Offset(4),
            "the leader's copy does not count"
        );
        n.step(5_011, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Leader);
        n.step(5_012, Input::Receive(fetch(4, 6, 5, 6)), &log, &mut out);
        assert_eq!(n.high_watermark(), Offset(5));
        out.clear();
        n.step(5_013, Input::Tick, &log, &mut out);
        assert_eq!(n.role(), RoleKind::Resigned);
        let told: Vec<NodeId> = sent(&out)
            .iter()
            .filter(|e| matches!(e.message, Message::EndQuorumEpochRequest(_)))
            .map(|e| e.to)
            .collect();
        assert_eq!(told, vec![NodeId(2), NodeId(3), NodeId(4)]);
    }

    #[test]
    fn the_voter_set_is_the_latest_voters_record_and_truncation_restores_the_one_before() {
        let (mut n, log) = node_with_log(4, &[1, 2, 3], state(6, Some(1), None), &[1, 1]);
        n.cfg.reconfigurable = true;
        assert!(!n.is_voter());
        let mut out = Vec::new();
        n.step(0, Input::Tick, &log, &mut out);
        let req = sent(&out).pop().expect("fetches from the leader");
        let record = Entry {
            offset: Offset(2),
            epoch: LeaderEpoch(6),
            data: EntryData::Voters(vec![voter(1), voter(2), voter(3), voter(4)]),
        };
        let answer = |req: &Envelope, resp: FetchResponse| Envelope {
            from: NodeId(1),
            to: NodeId(4),
            correlation_id: req.correlation_id,
            message: Message::FetchResponse(resp),
        };
        let mut resp = FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(6),
            leader_id: Some(NodeId(1)),
            high_watermark: Offset(2),
            diverging_epoch: None,
            snapshot_id: None,
            records: vec![record],
        };
        out.clear();
        n.step(
            1,
            Input::Receive(answer(&req, resp.clone())),
            &log,
            &mut out,
        );
        // In force as soon as it is in the log, not yet committed.
        assert!(n.is_voter());
        assert_eq!(n.voters().len(), 4);
        assert_eq!(n.high_watermark(), Offset(2));
        // A new leader's log diverges below it: truncated, the set before.
        n.step(
            2,
            Input::Flushed {
                end_offset: Offset(3),
            },
            &log,
            &mut out,
        );
        let req = sent(&out).pop().expect("fetches again");
        resp.records.clear();
        resp.diverging_epoch = Some(DivergingEpoch {
            epoch: LeaderEpoch(1),
            end_offset: Offset(2),
        });
        out.clear();
        n.step(3, Input::Receive(answer(&req, resp)), &log, &mut out);
        assert!(out.contains(&Output::TruncateTo(Offset(2))), "{out:?}");
        assert!(!n.is_voter());
        assert_eq!(n.voters(), [voter(1), voter(2), voter(3)].as_slice());
    }
}
