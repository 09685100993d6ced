//! [`RaftQuorum`]: the KRaft core behind [`MetadataQuorum`].
//!
//! One thread (`fjord-raft`) owns the [`Node`], the `__cluster_metadata-0`
//! log and the listener. It takes events from one bounded queue (received
//! requests with their reply channel, responses from peers, proposals,
//! DescribeQuorum), steps the core with the time (a monotonic clock, ticks
//! every [`TICK_MS`]) and carries its outputs out **in order**:
//!
//! - `PersistState`: the `quorum-state` file, durably, before anything later;
//! - `AppendAsLeader`: consecutive entries become one batch (a LeaderChange
//!   control batch opens an epoch; a proposal's records are one data batch,
//!   so it commits and reaches listeners whole);
//! - `AppendAsFollower`: the leader's batches exactly as received (the
//!   Fetch response's bytes, checked to hold exactly the core's entries);
//! - `TruncateTo`, then `Flush`: done at the end of the round (one fsync),
//!   and answered at once with `Flushed`;
//! - `Send`: requests go to the peer's connection queue, responses to the
//!   waiting inbound connection (a Fetch response carries the log's bytes);
//! - `Committed`: batches below the high watermark go, in offset order and
//!   with the proposals they end, to the `fjord-metadata-apply` thread,
//!   which hands them to the listener and then resolves those proposals.
//!
//! The listener runs on a thread of its own because applying metadata can
//! be slow (a broker opens a partition log, with its fsyncs, for each
//! partition a batch creates): on the quorum's thread it would hold up
//! Fetch and Vote answers long enough for followers to start elections.
//! At most [`METADATA_APPLY_QUEUED_BATCHES_MAX`] batches wait for it; the
//! rest stay in the log until it catches up.
//!
//! A proposal on a node that is not the leader is forwarded to the leader
//! (over its CONTROLLER listener, [`crate::net::FORWARD_PROPOSAL_API_KEY`])
//! and resolves once the leader committed it **and this node's listener
//! handled it**, so the caller then reads its own image as after a local
//! proposal. Forwarding the proposal rather than the admin request (Kafka
//! brokers forward admin requests to the active controller in an Envelope)
//! keeps the admin handlers as they are: they validate against this node's
//! image and propose, whichever node leads. The cost: two nodes that
//! validate conflicting requests at the same moment can both propose (the
//! controller slice of issue 12 moves validation to the active controller).
//!
//! Unlike `LocalQuorum`, nothing in the log is handed to the listener at
//! open: what is not known committed may still be truncated, so listeners
//! see batches only once this node has learned the high watermark.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_metadata::control::ControlRecord;
use fjord_metadata::log::BatchContent;
use fjord_metadata::quorum::Reply;
use fjord_metadata::quorum_state::{QuorumState, QUORUM_STATE_DATA_VERSION};
use fjord_metadata::{
    CommittedBatch, MetadataError, MetadataListener, MetadataLog, MetadataQuorum, Proposal,
};
use fjord_model::limits::{
    METADATA_APPLY_QUEUED_BATCHES_MAX, METADATA_BATCH_BYTES_MAX, METADATA_PROPOSALS_QUEUED_MAX,
    METADATA_RECORDS_PER_PROPOSAL_MAX, RAFT_FETCH_ENTRIES_MAX,
};
use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};
use fjord_raft::messages::{Envelope, Message};
use fjord_raft::{
    Config, Entry, EntryData, Input, LogMeta, LogReader, Node, Output, RoleKind, VoterKey,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::net;
use crate::wire;

/// How often the core is ticked when nothing arrives.
pub const TICK_MS: u64 = 10;

/// A voter of `controller.quorum.voters`: id and CONTROLLER listener address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// Settings of a [`RaftQuorum`].
#[derive(Clone, Debug)]
pub struct RaftQuorumConfig {
    pub node_id: NodeId,
    pub cluster_id: String,
    /// The static voter set: this node included for a voter; a node not
    /// in it (a broker-only node) follows the quorum as an observer.
    pub voters: Vec<Voter>,
    /// Where this node's CONTROLLER listener binds; `None` for an observer,
    /// which only fetches.
    pub listen: Option<SocketAddr>,
    /// Seed of the core's randomized timeouts.
    pub seed: u64,
    /// Kafka's `controller.quorum.election.timeout.ms` (others: defaults).
    pub election_timeout_ms: i64,
    pub fetch_timeout_ms: i64,
    /// How this node reaches the voters' CONTROLLER listeners (TLS, SASL
    /// login); PLAINTEXT by default.
    pub connector: fjord_client::Connector,
    /// Secures the connections this node's CONTROLLER listener accepts;
    /// `None`: PLAINTEXT.
    pub security: Option<Arc<dyn net::ControllerSecurity>>,
    /// The voters' directory ids where known (a dynamic quorum's voter set,
    /// KIP-853): DescribeQuorum reports them.
    pub voter_directory_ids: Vec<(NodeId, uuid::Uuid)>,
    /// The bootstrap checkpoint's VotersRecord (`kraft.version` 1, KIP-853):
    /// the voter set may change (RemoveRaftVoter), and the set in force is
    /// the latest VotersRecord in the log. Empty: a static voter set.
    pub voter_entries: Vec<fjord_metadata::control::VoterEntry>,
    /// This node's metadata directory id (`meta.properties`), if known.
    pub directory_id: Option<uuid::Uuid>,
}

impl RaftQuorumConfig {
    pub fn new(
        node_id: NodeId,
        cluster_id: String,
        voters: Vec<Voter>,
        listen: Option<SocketAddr>,
    ) -> RaftQuorumConfig {
        RaftQuorumConfig {
            node_id,
            cluster_id,
            voters,
            listen,
            seed: u64::from(node_id.0.unsigned_abs()) ^ 0x9e37_79b9_7f4a_7c15,
            election_timeout_ms: fjord_model::limits::RAFT_ELECTION_TIMEOUT_MS_DEFAULT,
            fetch_timeout_ms: fjord_model::limits::RAFT_FETCH_TIMEOUT_MS_DEFAULT,
            connector: fjord_client::Connector::plaintext(),
            security: None,
            voter_directory_ids: Vec::new(),
            voter_entries: Vec::new(),
            directory_id: None,
        }
    }
}

/// What DescribeQuorum reports.
#[derive(Clone, Debug, Default)]
pub struct QuorumStatus {
    pub leader_id: Option<NodeId>,
    pub epoch: LeaderEpoch,
    pub high_watermark: Offset,
    /// (voter, log end offset, last fetch time in ms since the epoch; -1 unknown).
    pub voters: Vec<(NodeId, Offset, i64)>,
    /// Observers (nodes outside the voter set: broker-only nodes) that
    /// fetched from this leader within `RAFT_OBSERVER_SESSION_TIMEOUT_MS`,
    /// as `voters`; empty on a node that does not lead.
    pub observers: Vec<(NodeId, Offset, i64)>,
    /// Each voter's CONTROLLER endpoint.
    pub endpoints: Vec<(NodeId, SocketAddr)>,
    /// The voters' directory ids where known (dynamic quorums).
    pub directory_ids: Vec<(NodeId, uuid::Uuid)>,
}

pub(crate) type InboundReply = oneshot::Sender<(Message, Option<Bytes>)>;

/// The answer to a voter change: Kafka's error code and message.
pub(crate) type VoterChangeReply = oneshot::Sender<(ErrorCode, Option<String>)>;

pub(crate) enum Event {
    Inbound {
        from: NodeId,
        message: Message,
        reply: InboundReply,
    },
    Response {
        from: NodeId,
        correlation_id: u64,
        message: Message,
        raw: Bytes,
    },
    /// Records to append; with an epoch (a controller's decision) only
    /// while this node leads that epoch, never forwarded.
    Propose(Vec<Bytes>, Option<LeaderEpoch>, Reply),
    /// A forwarded proposal committed at `Offset` on the leader: resolve
    /// once this node's listener handled it.
    AwaitLocal(Offset, Reply),
    Describe(oneshot::Sender<QuorumStatus>),
    /// A connection to this voter failed (`Input::PeerUnreachable`).
    Unreachable(NodeId),
    /// RemoveRaftVoter (KIP-853): answered with Kafka's error code and
    /// message once the new VotersRecord commits, or at once when refused.
    RemoveVoter {
        id: NodeId,
        directory_id: uuid::Uuid,
        reply: VoterChangeReply,
    },
    Stop,
}

struct Shared {
    /// Known leader, epoch, and the end of what the listener has applied.
    state: Mutex<(Option<NodeId>, LeaderEpoch, Offset)>,
    /// Batches handed to the apply thread and not applied yet.
    apply_queued: AtomicUsize,
    /// The epoch in which this node leads and has handed every batch before
    /// its epoch's first entry to the listener (its image is complete).
    active_epoch: Mutex<Option<LeaderEpoch>>,
    /// The epoch this node's core leads right now (role Leader), published
    /// after every step: `None` from the step in which it stops leading,
    /// resigned included (a resigned leader keeps its epoch and leader id
    /// in the core, but must decide nothing).
    leading: Mutex<Option<LeaderEpoch>>,
    node_id: NodeId,
}

/// A metadata quorum of several voters over TCP (Kafka's KRaft).
pub struct RaftQuorum {
    shared: Arc<Shared>,
    tx: SyncSender<Event>,
    thread: Mutex<Option<JoinHandle<()>>>,
    apply_thread: Mutex<Option<JoinHandle<()>>>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    local_addr: Option<SocketAddr>,
    voters: Vec<Voter>,
    apis: net::ApisSlot,
}

impl RaftQuorum {
    /// Opens `<data_dir>/__cluster_metadata-0` and `quorum-state`, binds the
    /// CONTROLLER listener, starts the connections to the other voters and
    /// the driver thread.
    pub fn open(
        storage: &fjord_storage::Storage,
        data_dir: &Path,
        config: RaftQuorumConfig,
        listener: Box<dyn MetadataListener>,
    ) -> Result<RaftQuorum, MetadataError> {
        let ids: Vec<NodeId> = config.voters.iter().map(|v| v.id).collect();
        let voter = ids.contains(&config.node_id);
        let reconfigurable = !config.voter_entries.is_empty();
        // A controller of a reconfigurable quorum keeps its listener when it
        // is (or was, before a RemoveRaftVoter) outside the voter set.
        if voter != config.listen.is_some() && !(reconfigurable && config.listen.is_some()) {
            return Err(MetadataError::Failed(format!(
                "node {} {} one of the voters {ids:?} but {} a CONTROLLER listener",
                config.node_id.0,
                if voter { "is" } else { "is not" },
                if voter { "has no" } else { "has" }
            )));
        }
        let (log, _) = MetadataLog::open(storage, data_dir, wall_ms())?;
        if log.start_offset() > Offset(0) {
            return Err(MetadataError::corrupt(
                log.dir(),
                "a metadata log cut below a snapshot (not supported by the voter quorum yet)",
            ));
        }
        let mut meta = log_meta(&log);
        if reconfigurable {
            // KIP-853: the VotersRecords in the log, the latest in force.
            for (offset, voters) in voters_records(&log)? {
                meta.record_voters(offset, voters);
            }
        }
        let persisted = match QuorumState::read(log.dir())? {
            Some(s) => fjord_raft::PersistedState {
                epoch: LeaderEpoch(s.leader_epoch.max(0)),
                leader_id: (s.leader_id >= 0).then_some(NodeId(s.leader_id)),
                voted_id: (s.voted_id >= 0).then_some(NodeId(s.voted_id)),
            },
            None => fjord_raft::PersistedState::default(),
        };
        let mut core_cfg = Config::new(config.node_id, ids, config.cluster_id.clone(), config.seed);
        if reconfigurable {
            core_cfg.reconfigurable = true;
            core_cfg.voters = config
                .voter_entries
                .iter()
                .map(|v| VoterKey::new(NodeId(v.id), v.directory_id.as_u128()))
                .collect();
            core_cfg.directory_id = config.directory_id.map_or(0, |d| d.as_u128());
        }
        core_cfg.election_timeout_ms = config.election_timeout_ms;
        core_cfg.fetch_timeout_ms = config.fetch_timeout_ms;
        // No long polling yet: a connection carries one request at a time,
        // and a held Fetch would delay a Vote behind it.
        core_cfg.fetch_max_wait_ms = 0;
        let clock = Instant::now();
        let node = Node::new(core_cfg, persisted, meta, 0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fjord-raft-net")
            .enable_all()
            .build()
            .map_err(|e| MetadataError::io("start the quorum network for", data_dir, e))?;
        let (tx, rx) = mpsc::sync_channel(METADATA_PROPOSALS_QUEUED_MAX);
        let std_listener = match config.listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|e| {
                    MetadataError::io("bind the controller listener for", data_dir, e)
                })?;
                l.set_nonblocking(true).map_err(|e| {
                    MetadataError::io("bind the controller listener for", data_dir, e)
                })?;
                Some(l)
            }
            None => None,
        };
        let local_addr = std_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| MetadataError::io("bind the controller listener for", data_dir, e))?;
        let mut peers = HashMap::new();
        let apis: net::ApisSlot = Arc::default();
        {
            let _guard = runtime.enter();
            if let Some(std_listener) = std_listener {
                let tcp = tokio::net::TcpListener::from_std(std_listener).map_err(|e| {
                    MetadataError::io("bind the controller listener for", data_dir, e)
                })?;
                runtime.spawn(net::serve(
                    tcp,
                    tx.clone(),
                    config.node_id,
                    config.cluster_id.clone(),
                    apis.clone(),
                    config.security.clone(),
                ));
            }
            for v in config.voters.iter().filter(|v| v.id != config.node_id) {
                peers.insert(
                    v.id,
                    net::spawn_peer(&runtime, v.clone(), tx.clone(), config.connector.clone()),
                );
            }
        }
        // A node restarting as the follower of the leader its quorum-state
        // names says so from the start (no state change will tell: it just
        // fetches); a leader it was itself is not one any more (Resigned).
        let known_leader = node.leader_id().filter(|l| *l != config.node_id);
        let shared = Arc::new(Shared {
            state: Mutex::new((known_leader, node.epoch(), Offset(0))),
            apply_queued: AtomicUsize::new(0),
            active_epoch: Mutex::new(None),
            leading: Mutex::new(None),
            node_id: config.node_id,
        });
        let (apply_tx, apply_rx) = mpsc::channel();
        let applier = Applier {
            listener,
            shared: shared.clone(),
            applied: Offset(0),
            local_waits: BTreeMap::new(),
        };
        let apply_thread = std::thread::Builder::new()
            .name("fjord-metadata-apply".into())
            .spawn(move || applier.run(apply_rx))
            .map_err(|e| MetadataError::io("spawn the metadata apply thread for", data_dir, e))?;
        let mut driver = Driver {
            node,
            log,
            apply: apply_tx,
            shared: shared.clone(),
            peers,
            clock,
            dir: metadata_dir(data_dir),
            inbound: HashMap::new(),
            next_token: 1 << 62,
            stash: None,
            delivered: Offset(0),
            proposals: BTreeMap::new(),
            progress: BTreeMap::new(),
            failed: None,
            endpoints: config.voters.clone(),
            voter_entries: config
                .voter_entries
                .iter()
                .map(|v| (NodeId(v.id), v.clone()))
                .collect(),
            voter_change: None,
            voter_change_result: None,
            net: runtime.handle().clone(),
            connector: config.connector.clone(),
            events: tx.clone(),
            epoch_start: None,
        };
        let thread = std::thread::Builder::new()
            .name("fjord-raft".into())
            .spawn(move || driver.run(rx))
            .map_err(|e| MetadataError::io("spawn the quorum thread for", data_dir, e))?;
        Ok(RaftQuorum {
            shared,
            tx,
            thread: Mutex::new(Some(thread)),
            apply_thread: Mutex::new(Some(apply_thread)),
            runtime: Mutex::new(Some(runtime)),
            local_addr,
            voters: config.voters,
            apis,
        })
    }

    /// The CONTROLLER listener's bound address (`None` for an observer).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops the driver and the network; the log is closed.
    pub fn close(&self) {
        let _ = self.tx.send(Event::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        // The driver is gone, and with it the apply queue's sender: the
        // apply thread applies what it holds and ends.
        if let Some(t) = self.apply_thread.lock().take() {
            let _ = t.join();
        }
        if let Some(rt) = self.runtime.lock().take() {
            rt.shutdown_background();
        }
    }

    /// This node leads and its listener has seen everything committed
    /// before its epoch (Kafka's "active controller").
    pub fn is_active_leader(&self) -> bool {
        self.active_epoch().is_some()
    }

    /// The epoch this node is the active leader of (see
    /// [`RaftQuorum::is_active_leader`]): what a controller running here
    /// binds its proposals to ([`MetadataQuorum::propose_in_epoch`]).
    pub fn active_epoch(&self) -> Option<LeaderEpoch> {
        let (leader, epoch, _) = *self.shared.state.lock();
        let active = *self.shared.active_epoch.lock();
        let leading = *self.shared.leading.lock();
        (leader == Some(self.shared.node_id) && active == Some(epoch) && leading == Some(epoch))
            .then_some(epoch)
    }

    /// The voter this node last knew as leader and its CONTROLLER
    /// address: where brokers send BrokerRegistration and BrokerHeartbeat
    /// (Kafka's brokers find the active controller the same way, from the
    /// quorum's leader).
    pub fn leader_endpoint(&self) -> Option<(NodeId, SocketAddr)> {
        let leader = self.shared.state.lock().0?;
        self.voters
            .iter()
            .find(|v| v.id == leader)
            .map(|v| (v.id, v.addr))
    }

    /// Installs the active controller's APIs (BrokerRegistration,
    /// BrokerHeartbeat, AllocateProducerIds) on the CONTROLLER listener;
    /// before, and on a second call, those requests close the connection.
    /// The voter set this quorum was opened with.
    pub fn voters(&self) -> &[Voter] {
        &self.voters
    }

    pub fn set_controller_apis(&self, apis: Arc<dyn net::ControllerApis>) -> bool {
        self.apis.set(apis).is_ok()
    }

    /// The quorum as DescribeQuorum reports it (waits for the driver).
    pub fn status(&self) -> Option<QuorumStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(Event::Describe(tx)).ok()?;
        rx.blocking_recv().ok()
    }
}

impl Drop for RaftQuorum {
    fn drop(&mut self) {
        self.close();
    }
}

impl RaftQuorum {
    fn send_proposal(&self, records: Vec<Bytes>, epoch: Option<LeaderEpoch>) -> Proposal {
        if records.is_empty() || records.len() > METADATA_RECORDS_PER_PROPOSAL_MAX {
            return Proposal::failed(MetadataError::InvalidProposal(format!(
                "{} records (1..={METADATA_RECORDS_PER_PROPOSAL_MAX})",
                records.len()
            )));
        }
        let (p, reply) = Proposal::pair();
        match self.tx.try_send(Event::Propose(records, epoch, reply)) {
            Ok(()) => p,
            Err(mpsc::TrySendError::Full(_)) => Proposal::failed(MetadataError::Busy),
            Err(mpsc::TrySendError::Disconnected(_)) => Proposal::failed(MetadataError::Closed),
        }
    }
}

impl MetadataQuorum for RaftQuorum {
    fn propose(&self, records: Vec<Bytes>) -> Proposal {
        self.send_proposal(records, None)
    }

    fn propose_in_epoch(&self, epoch: LeaderEpoch, records: Vec<Bytes>) -> Proposal {
        self.send_proposal(records, Some(epoch))
    }

    fn leader_and_epoch(&self) -> (Option<NodeId>, LeaderEpoch) {
        let s = self.shared.state.lock();
        (s.0, s.1)
    }

    fn high_watermark(&self) -> Offset {
        self.shared.state.lock().2
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn metadata_dir(data_dir: &Path) -> PathBuf {
    fjord_metadata::metadata_log_dir(data_dir)
}

/// The core's view of the log found at open: one epoch per offset.
fn log_meta(log: &MetadataLog) -> LogMeta {
    let end = log.end_offset();
    let epochs = log.epochs();
    let mut per_offset = Vec::new();
    let mut offset = Offset(0);
    for (i, (epoch, start)) in epochs.iter().enumerate() {
        let next = epochs.get(i + 1).map_or(end, |(_, s)| *s).min(end);
        // Offsets before the first recorded epoch (none in our logs) count as epoch 0.
        while offset < *start && offset < end {
            per_offset.push(LeaderEpoch(0));
            offset = offset.next();
        }
        while offset < next {
            per_offset.push(*epoch);
            offset = offset.next();
        }
    }
    while offset < end {
        per_offset.push(LeaderEpoch(0));
        offset = offset.next();
    }
    LogMeta::from_epochs(per_offset)
}

/// The VotersRecords in the log (KIP-853): (offset, voter set).
fn voters_records(log: &MetadataLog) -> Result<Vec<(Offset, Vec<VoterKey>)>, MetadataError> {
    let mut found = Vec::new();
    let mut from = Offset(0);
    let end = log.end_offset();
    while from < end {
        let batches = log.read_chunk(from, end)?;
        let Some(last) = batches.last() else {
            break;
        };
        from = last.last_offset.next();
        for b in batches {
            let BatchContent::Control(records) = b.content else {
                continue;
            };
            for (i, r) in records.into_iter().enumerate() {
                if let ControlRecord::Voters(voters) = r {
                    let keys = voters
                        .iter()
                        .map(|v| VoterKey::new(NodeId(v.id), v.directory_id.as_u128()))
                        .collect();
                    found.push((Offset(b.base_offset.0 + i as i64), keys));
                }
            }
        }
    }
    Ok(found)
}

/// Reads the log for a Fetch response and remembers the bytes it read, so
/// the response carries exactly those batches.
struct Reader<'a> {
    log: &'a MetadataLog,
    last: RefCell<Option<(Offset, Offset, Bytes)>>,
}

impl LogReader for Reader<'_> {
    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry> {
        let raw = match self.log.read_raw(from, METADATA_BATCH_BYTES_MAX) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("reading the metadata log for a fetch: {e}");
                return Vec::new();
            }
        };
        // Whole batches only, up to about `max_entries` entries.
        let mut cut = 0;
        let mut count = 0;
        for item in fjord_records::batches(&raw) {
            let Ok((h, range)) = item else { break };
            if count > 0 && count + h.records_count.max(0) as usize > max_entries {
                break;
            }
            count += h.records_count.max(0) as usize;
            cut = range.end;
        }
        let raw = Bytes::from(raw).slice(..cut);
        match wire::decode_entries(&raw) {
            Ok(entries) if entries.first().is_some_and(|e| e.offset == from) => {
                let last = entries.last().map_or(from, |e| e.offset);
                *self.last.borrow_mut() = Some((from, last, raw));
                entries
            }
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::error!("metadata log batch unreadable at {}: {e}", from.0);
                Vec::new()
            }
        }
    }

    /// No snapshots are served yet (the core is never told of one, so its
    /// log starts at 0 and it never names one in a Fetch response).
    fn read_snapshot(
        &self,
        _id: fjord_raft::SnapshotId,
        _position: u64,
        _max_bytes: usize,
    ) -> Option<fjord_raft::SnapshotChunk> {
        None
    }
}

struct Driver {
    node: Node,
    log: MetadataLog,
    /// To the apply thread, in offset order.
    apply: mpsc::Sender<Apply>,
    shared: Arc<Shared>,
    peers: HashMap<NodeId, tokio::sync::mpsc::Sender<(u64, Message)>>,
    clock: Instant,
    dir: PathBuf,
    /// Inbound requests waiting for the core's answer, by token.
    inbound: HashMap<u64, InboundReply>,
    next_token: u64,
    /// The batches of the last Fetch response: (first offset, last offset, bytes).
    stash: Option<(Offset, Offset, Bytes)>,
    /// Batches below this went to the apply thread.
    delivered: Offset,
    /// Waiting proposals by their last offset: (epoch, reply).
    proposals: BTreeMap<Offset, (LeaderEpoch, Reply)>,
    /// Followers' last fetch (offset, wall time) as the leader saw it.
    progress: BTreeMap<NodeId, (Offset, i64)>,
    failed: Option<String>,
    endpoints: Vec<Voter>,
    /// Every voter's VotersRecord entry (id, directory id, endpoints) known
    /// from the bootstrap checkpoint: what a new VotersRecord lists.
    voter_entries: BTreeMap<NodeId, fjord_metadata::control::VoterEntry>,
    /// The RemoveRaftVoter waiting for its VotersRecord (at this offset) to
    /// commit.
    voter_change: Option<(Offset, VoterChangeReply)>,
    /// What the core said of the last `Input::ChangeVoters`.
    voter_change_result: Option<Result<Offset, (ErrorCode, &'static str)>>,
    net: tokio::runtime::Handle,
    /// How forwarded proposals reach the leader's CONTROLLER listener.
    connector: fjord_client::Connector,
    events: SyncSender<Event>,
    /// This node's current leader epoch and the offset of its LeaderChange.
    epoch_start: Option<(LeaderEpoch, Offset)>,
}

impl Driver {
    fn now(&self) -> i64 {
        self.clock.elapsed().as_millis() as i64
    }

    fn run(&mut self, rx: mpsc::Receiver<Event>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(TICK_MS)) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.step(Input::Tick);
            // Batches held back while the apply queue was full.
            self.deliver(self.node.high_watermark());
            if let Some(reason) = &self.failed {
                tracing::error!("metadata quorum stopped: {reason}");
                break;
            }
        }
        for (_, (_, reply)) in std::mem::take(&mut self.proposals) {
            reply.send(Err(MetadataError::Closed));
        }
        if let Err(e) = self.log.close() {
            tracing::warn!("closing the metadata log: {e}");
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Inbound {
                from,
                message,
                reply,
            } => {
                let token = self.next_token;
                self.next_token += 1;
                if let Message::FetchRequest(f) = &message {
                    if self.node.role() == RoleKind::Leader
                        && (self.progress.contains_key(&from)
                            || self.progress.len()
                                < fjord_model::limits::RAFT_OBSERVERS_TRACKED_MAX)
                    {
                        self.progress.insert(from, (f.fetch_offset, wall_ms()));
                    }
                }
                let stand_in = message.clone();
                self.inbound.insert(token, reply);
                self.step(Input::Receive(Envelope {
                    from,
                    to: self.node.node_id(),
                    correlation_id: token,
                    message,
                }));
                // The core did not answer (a request from outside the voter
                // set): Kafka's error, nothing changed.
                if let Some(reply) = self.inbound.remove(&token) {
                    let msg = wire::error_response(
                        &stand_in,
                        ErrorCode::INCONSISTENT_VOTER_SET,
                        self.node.epoch(),
                        self.node.leader_id(),
                    );
                    let _ = reply.send((msg, None));
                }
            }
            Event::Response {
                from,
                correlation_id,
                message,
                raw,
            } => {
                if let Message::FetchResponse(r) = &message {
                    if let (Some(first), Some(last)) = (r.records.first(), r.records.last()) {
                        self.stash = Some((first.offset, last.offset, raw));
                    }
                }
                self.step(Input::Receive(Envelope {
                    from,
                    to: self.node.node_id(),
                    correlation_id,
                    message,
                }));
            }
            Event::AwaitLocal(offset, reply) => {
                // The apply thread knows what this node's listener handled.
                if let Err(mpsc::SendError(Apply::AwaitLocal(_, reply))) =
                    self.apply.send(Apply::AwaitLocal(offset, reply))
                {
                    reply.send(Err(MetadataError::Closed));
                }
            }
            Event::Propose(_, Some(epoch), reply)
                if self.node.role() != RoleKind::Leader || self.node.epoch() != epoch =>
            {
                // A controller's decision from an epoch this node no longer
                // leads (resigned, deposed, or leading a later one): its
                // image may be stale, so the records go nowhere. Forwarding
                // them let a cut-off controller's fencing reach the new
                // leader and shrink ISRs to the cut node.
                reply.send(Err(MetadataError::NoLeader(format!(
                    "this node does not lead epoch {} (epoch {}, {:?})",
                    epoch.0,
                    self.node.epoch().0,
                    self.node.role()
                ))));
            }
            Event::Propose(records, _, reply) => {
                if self.node.role() != RoleKind::Leader {
                    let leader = self
                        .node
                        .leader_id()
                        .and_then(|l| self.endpoints.iter().find(|v| v.id == l));
                    match leader {
                        Some(v) => {
                            let addr = v.addr;
                            self.net.spawn(net::forward_proposal(
                                addr,
                                records,
                                reply,
                                self.events.clone(),
                                self.connector.clone(),
                            ));
                        }
                        None => reply.send(Err(MetadataError::NoLeader(format!(
                            "none known in epoch {}",
                            self.node.epoch().0
                        )))),
                    }
                    return;
                }
                let mut out = Vec::new();
                let now = self.now();
                let mut last = None;
                for r in records {
                    let reader = Reader {
                        log: &self.log,
                        last: RefCell::new(None),
                    };
                    self.node
                        .step(now, Input::Propose(r.to_vec()), &reader, &mut out);
                    if let Some(Output::Proposed { offset, epoch }) = out
                        .iter()
                        .rev()
                        .find(|o| matches!(o, Output::Proposed { .. }))
                    {
                        last = Some((*offset, *epoch));
                    }
                }
                match last {
                    Some((offset, epoch)) => {
                        self.proposals.insert(offset, (epoch, reply));
                    }
                    // The core refuses proposals only when this node no longer leads.
                    None => reply.send(Err(MetadataError::NoLeader(
                        "this node stopped leading before the proposal was appended".into(),
                    ))),
                }
                self.execute(out, None);
            }
            Event::Describe(tx) => {
                let leader = self.node.role() == RoleKind::Leader;
                let me = self.node.node_id();
                let voters = self
                    .voter_ids()
                    .into_iter()
                    .map(|v| {
                        if v == me {
                            (v, self.log.end_offset(), wall_ms())
                        } else if leader {
                            let (o, t) = self.progress.get(&v).copied().unwrap_or((Offset(-1), -1));
                            (v, o, t)
                        } else {
                            (v, Offset(-1), -1)
                        }
                    })
                    .collect();
                let voter_ids = self.voter_ids();
                let now = wall_ms();
                let observers = if leader {
                    self.progress
                        .iter()
                        .filter(|(id, (_, at))| {
                            !voter_ids.contains(id)
                                && now - at <= fjord_model::limits::RAFT_OBSERVER_SESSION_TIMEOUT_MS
                        })
                        .map(|(id, (o, at))| (*id, *o, *at))
                        .collect()
                } else {
                    Vec::new()
                };
                let _ = tx.send(QuorumStatus {
                    leader_id: self.node.leader_id(),
                    epoch: self.node.epoch(),
                    high_watermark: self.node.high_watermark(),
                    voters,
                    observers,
                    endpoints: self
                        .endpoints
                        .iter()
                        .filter(|v| voter_ids.contains(&v.id))
                        .map(|v| (v.id, v.addr))
                        .collect(),
                    directory_ids: self
                        .node
                        .voters()
                        .iter()
                        .filter(|v| v.directory_id != 0)
                        .map(|v| (v.id, uuid::Uuid::from_u128(v.directory_id)))
                        .collect(),
                });
            }
            Event::Unreachable(peer) => self.step(Input::PeerUnreachable(peer)),
            Event::RemoveVoter {
                id,
                directory_id,
                reply,
            } => self.remove_voter(id, directory_id, reply),
            Event::Stop => {}
        }
    }

    /// The voter set in force (the core's: static, or the latest
    /// VotersRecord).
    fn voter_ids(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.node.voters().iter().map(|v| v.id).collect();
        v.sort_unstable();
        v
    }

    /// RemoveRaftVoter on this node (Kafka's KafkaRaftClient and
    /// RemoveVoterHandler order of checks and error codes).
    fn remove_voter(&mut self, id: NodeId, directory_id: uuid::Uuid, reply: VoterChangeReply) {
        if self.node.role() != RoleKind::Leader {
            let _ = reply.send((ErrorCode::NOT_LEADER_OR_FOLLOWER, None));
            return;
        }
        if directory_id.is_nil() {
            let _ = reply.send((
                ErrorCode::INVALID_REQUEST,
                Some("Remove voter request didn't include a valid voter".into()),
            ));
            return;
        }
        if self.voter_change.is_some() {
            let _ = reply.send((
                ErrorCode::REQUEST_TIMED_OUT,
                Some(
                    "Request timed out waiting for leader to handle previous voter change request"
                        .into(),
                ),
            ));
            return;
        }
        let key = VoterKey::new(id, directory_id.as_u128());
        let current = self.node.voters().to_vec();
        let found = current.contains(&key);
        let new: Vec<VoterKey> = current.iter().copied().filter(|v| *v != key).collect();
        self.voter_change_result = None;
        self.step(Input::ChangeVoters(new));
        match self.voter_change_result.take() {
            Some(Ok(offset)) => self.voter_change = Some((offset, reply)),
            // The core's preconditions hold but the set would not change
            // (or would be empty): Kafka's VOTER_NOT_FOUND.
            Some(Err((code, _)))
                if code == ErrorCode::INVALID_REQUEST || !found && code == ErrorCode::NONE =>
            {
                let _ = reply.send((
                    ErrorCode::VOTER_NOT_FOUND,
                    Some(format!(
                        "Cannot remove voter {} ({}) from the set of voters {:?}",
                        id.0,
                        directory_id,
                        current.iter().map(|v| v.id.0).collect::<Vec<_>>()
                    )),
                ));
            }
            Some(Err((code, message))) => {
                let _ = reply.send((code, Some(message.to_string())));
            }
            None => {
                let _ = reply.send((ErrorCode::NOT_LEADER_OR_FOLLOWER, None));
            }
        }
    }

    /// The pending voter change is answered once committed, or refused
    /// when this node stopped leading or its record was truncated.
    fn settle_voter_change(&mut self) {
        let Some((offset, _)) = &self.voter_change else {
            return;
        };
        let offset = *offset;
        let outcome = if self.node.high_watermark() > offset {
            Some((ErrorCode::NONE, None))
        } else if self.node.role() != RoleKind::Leader || self.log.end_offset() <= offset {
            Some((
                ErrorCode::NOT_LEADER_OR_FOLLOWER,
                Some("the leader changed before the voter change committed".to_string()),
            ))
        } else {
            None
        };
        if let Some(answer) = outcome {
            if let Some((_, reply)) = self.voter_change.take() {
                let _ = reply.send(answer);
            }
        }
    }

    fn step(&mut self, input: Input) {
        if self.failed.is_some() {
            return;
        }
        let mut out = Vec::new();
        let reader = Reader {
            log: &self.log,
            last: RefCell::new(None),
        };
        let now = self.now();
        self.node.step(now, input, &reader, &mut out);
        let read = reader.last.into_inner();
        self.execute(out, read);
        self.publish_active();
        self.settle_voter_change();
    }

    /// Sets `Shared::leading`: the core's epoch while its role is leader,
    /// `None` otherwise. Called after every step, so a leader that resigns
    /// (the core keeps its epoch and leader id) stops being active at once.
    fn publish_active(&self) {
        let leading = (self.node.role() == RoleKind::Leader).then_some(self.node.epoch());
        let mut slot = self.shared.leading.lock();
        if let (Some(was), Some(now)) = (*slot, leading) {
            assert!(now >= was, "a leader epoch never moves back");
        }
        *slot = leading;
    }

    fn fail(&mut self, what: &str, e: MetadataError) {
        if self.failed.is_none() {
            self.failed = Some(format!("{what}: {e}"));
        }
    }

    /// Carries out the core's outputs in order (see the module docs).
    fn execute(&mut self, outputs: Vec<Output>, read: Option<(Offset, Offset, Bytes)>) {
        let mut leader_entries: Vec<Entry> = Vec::new();
        let mut flush = false;
        for o in outputs {
            match o {
                Output::AppendAsLeader(e) => {
                    leader_entries.push(e);
                    continue;
                }
                Output::Flush => {
                    flush = true;
                    continue;
                }
                Output::VotersProposed { offset, .. } => {
                    self.voter_change_result = Some(Ok(offset));
                    continue;
                }
                Output::VoterChangeRejected {
                    error_code,
                    message,
                } => {
                    self.voter_change_result = Some(Err((error_code, message)));
                    continue;
                }
                Output::Proposed { .. } | Output::ProposalRejected { .. } => continue,
                _ => {}
            }
            self.append_as_leader(std::mem::take(&mut leader_entries));
            match o {
                Output::PersistState(s) => {
                    let q = QuorumState {
                        leader_id: s.leader_id.map_or(-1, |n| n.0),
                        leader_epoch: s.epoch.0,
                        voted_id: s.voted_id.map_or(-1, |n| n.0),
                        voted_directory_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                        data_version: QUORUM_STATE_DATA_VERSION,
                    };
                    if let Err(e) = q.write(&self.dir) {
                        self.fail("write quorum-state", e);
                    }
                    let mut st = self.shared.state.lock();
                    st.0 = s.leader_id;
                    st.1 = s.epoch;
                }
                Output::AppendAsFollower(entries) => {
                    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                        continue;
                    };
                    let stash = self.stash.take();
                    match stash {
                        Some((f, l, raw)) if f == first.offset && l == last.offset => {
                            if let Err(e) = self.log.append_as_follower(&raw, wall_ms()) {
                                self.fail("append as follower", e);
                            }
                        }
                        _ => self.fail(
                            "append as follower",
                            MetadataError::Failed("entries without their batches".into()),
                        ),
                    }
                    assert_eq!(
                        self.log.end_offset(),
                        last.offset.next(),
                        "the follower's log ends where the core's does"
                    );
                }
                Output::TruncateTo(offset) => {
                    assert!(
                        offset >= self.delivered,
                        "committed batches handed to the apply thread are never truncated"
                    );
                    if let Err(e) = self.log.truncate_to(offset) {
                        self.fail("truncate", e);
                    }
                    let dropped: Vec<Offset> =
                        self.proposals.range(offset..).map(|(o, _)| *o).collect();
                    for o in dropped {
                        if let Some((_, reply)) = self.proposals.remove(&o) {
                            reply.send(Err(MetadataError::NoLeader(
                                "the proposal was truncated by a new leader".into(),
                            )));
                        }
                    }
                }
                Output::Send(env) => self.send(env, &read),
                Output::Committed { high_watermark } => self.deliver(high_watermark),
                _ => {}
            }
        }
        self.append_as_leader(leader_entries);
        if flush && self.failed.is_none() {
            if let Err(e) = self.log.sync_to(self.log.end_offset()) {
                return self.fail("fsync", e);
            }
            let end_offset = self.log.durable_end();
            let mut out = Vec::new();
            let reader = Reader {
                log: &self.log,
                last: RefCell::new(None),
            };
            let now = self.now();
            self.node
                .step(now, Input::Flushed { end_offset }, &reader, &mut out);
            let read = reader.last.into_inner();
            self.execute(out, read);
        }
    }

    fn append_as_leader(&mut self, entries: Vec<Entry>) {
        let now = wall_ms();
        let mut i = 0;
        while i < entries.len() && self.failed.is_none() {
            let e = &entries[i];
            let result = match &e.data {
                EntryData::LeaderChange { leader_id, voters } => {
                    i += 1;
                    self.epoch_start = Some((e.epoch, e.offset));
                    let ids: Vec<i32> = voters.iter().map(|v| v.0).collect();
                    self.log.start_epoch(e.epoch).and_then(|()| {
                        self.log.append_control(
                            &ControlRecord::LeaderChange {
                                leader_id: leader_id.0,
                                voters: ids,
                                granting_voters: vec![leader_id.0],
                            },
                            now,
                        )
                    })
                }
                EntryData::Voters(keys) => {
                    i += 1;
                    // Each voter's entry as the bootstrap checkpoint lists it.
                    let entries: Option<Vec<_>> = keys
                        .iter()
                        .map(|k| {
                            self.voter_entries
                                .get(&k.id)
                                .filter(|v| v.directory_id.as_u128() == k.directory_id)
                                .cloned()
                        })
                        .collect();
                    match entries {
                        Some(entries) => self
                            .log
                            .append_control(&ControlRecord::Voters(entries), now),
                        None => Err(MetadataError::Failed(format!(
                            "a VotersRecord names voters {keys:?} this node has no endpoints for"
                        ))),
                    }
                }
                EntryData::Data(_) => {
                    let mut values = Vec::new();
                    while let Some(Entry {
                        data: EntryData::Data(v),
                        ..
                    }) = entries.get(i)
                    {
                        values.push(Bytes::copy_from_slice(v));
                        i += 1;
                    }
                    self.log.append_data(&values, now)
                }
            };
            match result {
                Ok((first, _)) => assert_eq!(first, e.offset, "the log and the core agree"),
                Err(err) => self.fail("append as leader", err),
            }
        }
        if let Some(last) = entries.last() {
            if self.failed.is_none() {
                assert_eq!(self.log.end_offset(), last.offset.next());
                assert_eq!(self.log.last_epoch().map(|(e, _)| e), Some(last.epoch));
            }
        }
    }

    fn send(&mut self, env: Envelope, read: &Option<(Offset, Offset, Bytes)>) {
        if wire::is_request(&env.message) {
            if let Some(q) = self.peers.get(&env.to) {
                // Full or closed: dropped; the core resends on its timers.
                let _ = q.try_send((env.correlation_id, env.message));
            }
            return;
        }
        let Some(reply) = self.inbound.remove(&env.correlation_id) else {
            return;
        };
        let raw = match &env.message {
            Message::FetchResponse(r) => match (r.records.first(), r.records.last(), read) {
                (Some(f), Some(l), Some((rf, rl, raw))) if f.offset == *rf && l.offset == *rl => {
                    Some(raw.clone())
                }
                (None, _, _) => None,
                _ => {
                    tracing::error!("fetch response entries without their batches");
                    None
                }
            },
            _ => None,
        };
        let _ = reply.send((env.message, raw));
    }

    /// Hands committed batches, with the proposals they end, to the apply
    /// thread (at most [`METADATA_APPLY_QUEUED_BATCHES_MAX`] waiting).
    fn deliver(&mut self, high_watermark: Offset) {
        while self.delivered < high_watermark
            && self.failed.is_none()
            && self.shared.apply_queued.load(Ordering::Acquire) < METADATA_APPLY_QUEUED_BATCHES_MAX
        {
            let batches = match self.log.read_chunk(self.delivered, high_watermark) {
                Ok(b) => b,
                Err(e) => return self.fail("read committed batches", e),
            };
            if batches.is_empty() {
                return;
            }
            for b in batches {
                if self.shared.apply_queued.load(Ordering::Acquire)
                    >= METADATA_APPLY_QUEUED_BATCHES_MAX
                {
                    return;
                }
                assert!(
                    b.base_offset >= self.delivered,
                    "each batch is delivered once"
                );
                assert!(
                    b.last_offset < high_watermark,
                    "only committed batches are delivered"
                );
                let batch = match b.content {
                    BatchContent::Data(records) => Some(CommittedBatch {
                        base_offset: b.base_offset,
                        last_offset: b.last_offset,
                        epoch: b.epoch,
                        append_time_ms: b.append_time_ms,
                        records,
                    }),
                    _ => None,
                };
                let ended: Vec<Offset> = self
                    .proposals
                    .range(..=b.last_offset)
                    .map(|(o, _)| *o)
                    .collect();
                let replies = ended
                    .into_iter()
                    .filter_map(|o| self.proposals.remove(&o).map(|(_, r)| (o, r)))
                    .collect();
                self.delivered = b.last_offset.next();
                self.shared.apply_queued.fetch_add(1, Ordering::AcqRel);
                let sent = self.apply.send(Apply::Batch {
                    batch,
                    end: self.delivered,
                    replies,
                    epoch_start: self.epoch_start,
                });
                if sent.is_err() {
                    return self.fail(
                        "hand committed batches to the apply thread",
                        MetadataError::Closed,
                    );
                }
            }
        }
    }
}

/// What the quorum's thread hands to the apply thread.
enum Apply {
    /// A committed batch (`None`: a control batch, nothing to apply), the
    /// end of the log after it, the proposals it ends, and this node's
    /// (epoch, offset of its LeaderChange) when it leads.
    Batch {
        batch: Option<CommittedBatch>,
        end: Offset,
        replies: Vec<(Offset, Reply)>,
        epoch_start: Option<(LeaderEpoch, Offset)>,
    },
    /// A forwarded proposal committed at this offset on the leader: resolve
    /// once this node's listener handled it.
    AwaitLocal(Offset, Reply),
}

/// The `fjord-metadata-apply` thread: hands committed batches to the
/// listener in offset order, then resolves the proposals they end.
struct Applier {
    listener: Box<dyn MetadataListener>,
    shared: Arc<Shared>,
    /// Batches below this were handed to the listener.
    applied: Offset,
    /// Forwarded proposals waiting for this node's listener, by offset.
    local_waits: BTreeMap<Offset, Vec<Reply>>,
}

impl Applier {
    fn run(mut self, rx: mpsc::Receiver<Apply>) {
        while let Ok(m) = rx.recv() {
            match m {
                Apply::Batch {
                    batch,
                    end,
                    replies,
                    epoch_start,
                } => self.apply(batch, end, replies, epoch_start),
                Apply::AwaitLocal(offset, reply) => {
                    if offset < self.applied {
                        reply.send(Ok(offset));
                    } else {
                        self.local_waits.entry(offset).or_default().push(reply);
                    }
                }
            }
        }
        for (_, waits) in std::mem::take(&mut self.local_waits) {
            for reply in waits {
                reply.send(Err(MetadataError::Closed));
            }
        }
    }

    fn apply(
        &mut self,
        batch: Option<CommittedBatch>,
        end: Offset,
        replies: Vec<(Offset, Reply)>,
        epoch_start: Option<(LeaderEpoch, Offset)>,
    ) {
        assert!(end > self.applied, "batches are applied once, in order");
        let mut refused = None;
        if let Some(batch) = batch {
            assert!(
                batch.base_offset >= self.applied,
                "batches are applied in order"
            );
            // As in LocalQuorum: a batch the listener refuses (say a topic
            // two nodes created at once) is refused on every node alike; its
            // proposal gets the error and the quorum goes on.
            if let Err(e) = self.listener.handle_commit(&batch) {
                tracing::warn!(
                    offset = batch.base_offset.0,
                    "committed metadata batch not applied: {e}"
                );
                refused = Some((batch.last_offset, e.to_string()));
            }
        }
        self.applied = end;
        let queued = self.shared.apply_queued.fetch_sub(1, Ordering::AcqRel);
        assert!(queued > 0, "every applied batch was queued");
        let epoch = {
            let mut st = self.shared.state.lock();
            st.2 = self.applied;
            st.1
        };
        if let Some((leading, start)) = epoch_start {
            if self.applied > start && leading == epoch {
                *self.shared.active_epoch.lock() = Some(leading);
            }
        }
        let result = |o: Offset| match &refused {
            Some((last, e)) if *last == o => Err(MetadataError::Apply(e.clone())),
            _ => Ok(o),
        };
        for (o, reply) in replies {
            reply.send(result(o));
        }
        let done: Vec<Offset> = self
            .local_waits
            .range(..self.applied)
            .map(|(o, _)| *o)
            .collect();
        for o in done {
            for reply in self.local_waits.remove(&o).unwrap_or_default() {
                reply.send(result(o));
            }
        }
    }
}

// Kafka's limit of entries per Fetch response as the core asks for them.
const _: () = assert!(RAFT_FETCH_ENTRIES_MAX > 0);
