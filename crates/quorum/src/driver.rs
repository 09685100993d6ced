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
    /// `kraft.version` 1 although the data directory holds no voter set (a
    /// controller formatted with `--no-initial-controllers`, KIP-853): the
    /// node starts as an observer and may be added as a voter.
    pub dynamic: bool,
    /// `controller.quorum.bootstrap.servers`, resolved: where an observer
    /// that knows no voter asks who leads (the core names them -2, -3, ...).
    pub bootstrap: Vec<SocketAddr>,
    /// This node's CONTROLLER listener name (the first of
    /// `controller.listener.names`): the endpoint of a voter being added
    /// that the leader reaches.
    pub listener_name: String,
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
            dynamic: false,
            bootstrap: Vec::new(),
            listener_name: "CONTROLLER".to_string(),
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

/// The core's answer to an inbound request, the Fetch response's raw
/// batches, and the leader's endpoint when known (a Fetch response's
/// `NodeEndpoints`).
pub(crate) type InboundReply =
    oneshot::Sender<(Message, Option<Bytes>, Option<(NodeId, SocketAddr)>)>;

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
        /// The leader's endpoint a Fetch response named.
        leader_endpoint: Option<(NodeId, SocketAddr)>,
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
    /// AddRaftVoter, first step: the leader's checks before it asks the
    /// new voter for its ApiVersions; answered with the address to ask
    /// (its endpoint named like this node's CONTROLLER listener).
    AddVoterCheck {
        id: NodeId,
        directory_id: uuid::Uuid,
        listeners: Vec<fjord_metadata::control::VoterEndpoint>,
        reply: oneshot::Sender<Result<SocketAddr, (ErrorCode, Option<String>)>>,
    },
    /// AddRaftVoter, second step, with the new voter's `kraft.version`
    /// range: answered once the new VotersRecord commits, or refused.
    AddVoter {
        id: NodeId,
        directory_id: uuid::Uuid,
        listeners: Vec<fjord_metadata::control::VoterEndpoint>,
        kraft_versions: Option<(i16, i16)>,
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
    /// The CONTROLLER endpoint of every voter known (configured, or
    /// learned from VotersRecords and Fetch responses).
    endpoints: Mutex<Vec<Voter>>,
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
    kraft_version: i16,
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
        let reconfigurable = config.dynamic || !config.voter_entries.is_empty();
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
        // KIP-853: the VotersRecords in the log, the latest in force (and
        // every voter's endpoints there).
        let mut logged_voters = Vec::new();
        if reconfigurable {
            for (offset, voters) in voters_records(&log)? {
                meta.record_voters(
                    offset,
                    voters
                        .iter()
                        .map(|v| VoterKey::new(NodeId(v.id), v.directory_id.as_u128()))
                        .collect(),
                );
                logged_voters.push(voters);
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
            core_cfg.bootstrap = (0..config.bootstrap.len()).map(bootstrap_id).collect();
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
                let ctx = Arc::new(net::ListenerContext {
                    node_id: config.node_id,
                    cluster_id: config.cluster_id.clone(),
                    kraft_version: i16::from(reconfigurable),
                    connector: config.connector.clone(),
                });
                runtime.spawn(net::serve(
                    tcp,
                    tx.clone(),
                    ctx,
                    apis.clone(),
                    config.security.clone(),
                ));
            }
            for v in config.voters.iter().filter(|v| v.id != config.node_id) {
                peers.insert(
                    v.id,
                    net::spawn_peer(
                        runtime.handle(),
                        v.clone(),
                        tx.clone(),
                        config.connector.clone(),
                    ),
                );
            }
            if reconfigurable {
                for (i, addr) in config.bootstrap.iter().enumerate() {
                    let v = Voter {
                        id: bootstrap_id(i),
                        addr: *addr,
                    };
                    peers.insert(
                        v.id,
                        net::spawn_peer(runtime.handle(), v, tx.clone(), config.connector.clone()),
                    );
                }
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
            endpoints: Mutex::new(config.voters.clone()),
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
            fetchers: BTreeMap::new(),
            listener_name: config.listener_name.clone(),
            reconfigurable,
            net: runtime.handle().clone(),
            connector: config.connector.clone(),
            events: tx.clone(),
            epoch_start: None,
        };
        for voters in logged_voters {
            driver.learn_voters(voters);
        }
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
            kraft_version: i16::from(reconfigurable),
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
        self.shared
            .endpoints
            .lock()
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

    /// The finalized `kraft.version`: 1 for a dynamic quorum (KIP-853),
    /// 0 for a static one.
    pub fn kraft_version(&self) -> i16 {
        self.kraft_version
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

/// The id the core knows the `i`th bootstrap server by: Kafka's -2, -3, ...
/// (an endpoint without a node id).
fn bootstrap_id(i: usize) -> NodeId {
    NodeId(-2 - i32::try_from(i).unwrap_or(i32::MAX - 2))
}

/// The VotersRecords in the log (KIP-853): (offset, voter set).
fn voters_records(
    log: &MetadataLog,
) -> Result<Vec<(Offset, Vec<fjord_metadata::control::VoterEntry>)>, MetadataError> {
    voters_records_from(log, Offset(0))
}

/// The VotersRecords in the log from `from` on.
fn voters_records_from(
    log: &MetadataLog,
    mut from: Offset,
) -> Result<Vec<(Offset, Vec<fjord_metadata::control::VoterEntry>)>, MetadataError> {
    let mut found = Vec::new();
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
                    found.push((Offset(b.base_offset.0 + i as i64), voters));
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

/// A replica fetching from this leader (see `Driver::fetchers`).
#[derive(Clone, Copy, Debug)]
struct Fetcher {
    directory_id: u128,
    last_fetch_ms: i64,
    caught_up_ms: Option<i64>,
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
    /// The voter change waiting for its VotersRecord (at this offset) to
    /// commit, and when it times out (ms on this node's clock).
    voter_change: Option<(Offset, VoterChangeReply, i64)>,
    /// What the core said of the last `Input::ChangeVoters`.
    voter_change_result: Option<Result<Offset, (ErrorCode, &'static str)>>,
    /// Replicas that fetched from this leader: directory id, last fetch and
    /// last time caught up to the log end (ms on this node's clock), what
    /// AddRaftVoter checks (Kafka's `isReplicaCaughtUp`).
    fetchers: BTreeMap<NodeId, Fetcher>,
    /// See [`RaftQuorumConfig::listener_name`].
    listener_name: String,
    /// `kraft.version` 1: the voter set may change.
    reconfigurable: bool,
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
                        let now = self.now();
                        let caught_up = f.fetch_offset >= self.log.end_offset();
                        let fetcher = self.fetchers.entry(from).or_insert(Fetcher {
                            directory_id: f.replica_directory_id,
                            last_fetch_ms: now,
                            caught_up_ms: None,
                        });
                        if fetcher.directory_id != f.replica_directory_id {
                            // Another incarnation (a new directory) of that id.
                            fetcher.caught_up_ms = None;
                        }
                        fetcher.directory_id = f.replica_directory_id;
                        fetcher.last_fetch_ms = now;
                        if caught_up {
                            fetcher.caught_up_ms = Some(now);
                        }
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
                    let _ = reply.send((msg, None, None));
                }
            }
            Event::Response {
                from,
                correlation_id,
                message,
                raw,
                leader_endpoint,
            } => {
                // Before the core hears of the leader: where to fetch from.
                if let Some((id, addr)) = leader_endpoint {
                    self.learn_endpoint(id, addr);
                }
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
                    // The voters', then the observers' that fetched with one.
                    directory_ids: self
                        .node
                        .voters()
                        .iter()
                        .map(|v| (v.id, v.directory_id))
                        .chain(self.fetchers.iter().map(|(id, f)| (*id, f.directory_id)))
                        .filter(|(_, d)| *d != 0)
                        .map(|(id, d)| (id, uuid::Uuid::from_u128(d)))
                        .collect(),
                });
            }
            Event::Unreachable(peer) => self.step(Input::PeerUnreachable(peer)),
            Event::RemoveVoter {
                id,
                directory_id,
                reply,
            } => self.remove_voter(id, directory_id, reply),
            Event::AddVoterCheck {
                id,
                directory_id,
                listeners,
                reply,
            } => {
                let _ = reply.send(self.add_voter_check(id, directory_id, &listeners));
            }
            Event::AddVoter {
                id,
                directory_id,
                listeners,
                kraft_versions,
                reply,
            } => self.add_voter(id, directory_id, listeners, kraft_versions, reply),
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
        let new: Vec<VoterKey> = current.iter().copied().filter(|v| *v != key).collect();
        self.voter_change_result = None;
        self.step(Input::ChangeVoters(new));
        match self.voter_change_result.take() {
            Some(Ok(offset)) => self.pend_voter_change(offset, reply),
            // The core's preconditions hold but the set would not change
            // (or would be empty): Kafka's VOTER_NOT_FOUND.
            Some(Err((code, _))) if code == ErrorCode::INVALID_REQUEST => {
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
    /// when this node stopped leading or its record was truncated, or when
    /// the request timeout passed (Kafka's pending operation expires: a new
    /// change may then be asked for; the core still refuses one while this
    /// VotersRecord is uncommitted).
    fn settle_voter_change(&mut self) {
        let Some((offset, _, deadline_ms)) = &self.voter_change else {
            return;
        };
        let (offset, deadline_ms) = (*offset, *deadline_ms);
        let outcome = if self.node.high_watermark() > offset {
            Some((ErrorCode::NONE, None))
        } else if self.now() >= deadline_ms {
            Some((
                ErrorCode::REQUEST_TIMED_OUT,
                Some("Request timed out waiting for the new voter set to commit".to_string()),
            ))
        } else if self.node.role() != RoleKind::Leader || self.log.end_offset() <= offset {
            Some((
                ErrorCode::NOT_LEADER_OR_FOLLOWER,
                Some("the leader changed before the voter change committed".to_string()),
            ))
        } else {
            None
        };
        if let Some(answer) = outcome {
            if let Some((_, reply, _)) = self.voter_change.take() {
                let _ = reply.send(answer);
            }
        }
    }

    fn pend_voter_change(&mut self, offset: Offset, reply: VoterChangeReply) {
        let deadline_ms = self.now() + fjord_model::limits::RAFT_REQUEST_TIMEOUT_MS_DEFAULT;
        self.voter_change = Some((offset, reply, deadline_ms));
    }

    /// The leader-only checks of AddRaftVoter before the new voter is asked
    /// for its ApiVersions (Kafka's KafkaRaftClient and AddVoterHandler
    /// order): the address to ask, or the refusal.
    fn add_voter_check(
        &self,
        id: NodeId,
        directory_id: uuid::Uuid,
        listeners: &[fjord_metadata::control::VoterEndpoint],
    ) -> Result<SocketAddr, (ErrorCode, Option<String>)> {
        if self.node.role() != RoleKind::Leader {
            return Err((ErrorCode::NOT_LEADER_OR_FOLLOWER, None));
        }
        if directory_id.is_nil() || id.0 < 0 {
            return Err((
                ErrorCode::INVALID_REQUEST,
                Some("Add voter request didn't include a valid voter".into()),
            ));
        }
        let endpoint = listeners.iter().find(|l| l.name == self.listener_name);
        let Some(endpoint) = endpoint else {
            return Err((
                ErrorCode::INVALID_REQUEST,
                Some(format!(
                    "Add voter request didn't include the endpoint for the default listener {}",
                    self.listener_name
                )),
            ));
        };
        if self.voter_change.is_some() {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT,
                Some(
                    "Request timed out waiting for leader to handle previous voter change request"
                        .into(),
                ),
            ));
        }
        let epoch_committed = self
            .epoch_start
            .is_some_and(|(e, at)| e == self.node.epoch() && self.node.high_watermark() > at);
        if !epoch_committed {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT,
                Some(
                    "Request timed out waiting for leader to establish HWM and fence previous voter changes"
                        .into(),
                ),
            ));
        }
        if !self.reconfigurable {
            // A static voter set (kraft.version 0).
            return Err((
                ErrorCode::UNSUPPORTED_VERSION,
                Some(
                    "Cluster doesn't support adding voter because the kraft.version feature is 0"
                        .into(),
                ),
            ));
        }
        if self
            .node
            .log()
            .last_voter_change()
            .is_some_and(|at| at >= self.node.high_watermark())
        {
            return Err((
                ErrorCode::REQUEST_TIMED_OUT,
                Some(
                    "Request timed out waiting for voters to commit the latest voter change".into(),
                ),
            ));
        }
        if self.node.voters().iter().any(|v| v.id == id) {
            return Err((
                ErrorCode::DUPLICATE_VOTER,
                Some(format!(
                    "The voter id {} is already part of the set of voters {:?}.",
                    id.0,
                    self.voter_ids().iter().map(|v| v.0).collect::<Vec<_>>()
                )),
            ));
        }
        use std::net::ToSocketAddrs;
        (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                (
                    ErrorCode::REQUEST_TIMED_OUT,
                    Some(format!(
                        "New voter {} is not ready to receive requests",
                        id.0
                    )),
                )
            })
    }

    /// AddRaftVoter once the new voter's ApiVersions answered: its
    /// `kraft.version` range must hold the finalized level (1), and it must
    /// be an observer that fetched from this leader with that directory id
    /// and caught up with the log end (Kafka's `isReplicaCaughtUp`: within
    /// the last hour); then the VotersRecord with it is appended.
    fn add_voter(
        &mut self,
        id: NodeId,
        directory_id: uuid::Uuid,
        listeners: Vec<fjord_metadata::control::VoterEndpoint>,
        kraft_versions: Option<(i16, i16)>,
        reply: VoterChangeReply,
    ) {
        if let Err(refused) = self.add_voter_check(id, directory_id, &listeners) {
            let _ = reply.send(refused);
            return;
        }
        let finalized = fjord_metadata::log::KRAFT_VERSION_DYNAMIC;
        let Some((min, max)) =
            kraft_versions.filter(|(lo, hi)| *lo <= finalized && finalized <= *hi)
        else {
            let (lo, hi) = kraft_versions.unwrap_or((0, 0));
            let _ = reply.send((
                ErrorCode::INVALID_REQUEST,
                Some(format!(
                    "Aborted add voter operation for {} since the kraft.version range (min: {lo}, max: {hi}) doesn't support the finalized version {finalized}",
                    id.0
                )),
            ));
            return;
        };
        let now = self.now();
        let caught_up = self.fetchers.get(&id).is_some_and(|f| {
            f.directory_id == directory_id.as_u128()
                && f.caught_up_ms.is_some()
                && now - f.last_fetch_ms < fjord_model::limits::RAFT_ADD_VOTER_FETCHED_WITHIN_MS
        });
        if !caught_up {
            let _ = reply.send((
                ErrorCode::REQUEST_TIMED_OUT,
                Some(format!(
                    "Aborted add voter operation for {} ({directory_id}) since it is lagging behind",
                    id.0
                )),
            ));
            return;
        }
        self.voter_entries.insert(
            id,
            fjord_metadata::control::VoterEntry {
                id: id.0,
                directory_id,
                endpoints: listeners,
                kraft_version_min: min,
                kraft_version_max: max,
            },
        );
        let mut new = self.node.voters().to_vec();
        new.push(VoterKey::new(id, directory_id.as_u128()));
        self.voter_change_result = None;
        self.step(Input::ChangeVoters(new));
        match self.voter_change_result.take() {
            Some(Ok(offset)) => {
                if let Some(v) = self.voter_entries.get(&id).cloned() {
                    self.learn_voters(vec![v]);
                }
                self.pend_voter_change(offset, reply);
            }
            Some(Err((code, message))) => {
                let _ = reply.send((code, Some(message.to_string())));
            }
            None => {
                let _ = reply.send((ErrorCode::NOT_LEADER_OR_FOLLOWER, None));
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
                    if let Some(at) = entries
                        .iter()
                        .find(|e| matches!(e.data, EntryData::Voters(_)))
                        .map(|e| e.offset)
                    {
                        match voters_records_from(&self.log, at) {
                            Ok(found) => {
                                for (_, voters) in found {
                                    self.learn_voters(voters);
                                }
                            }
                            Err(e) => self.fail("read a VotersRecord", e),
                        }
                    }
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
        let leader = match &env.message {
            Message::FetchResponse(r) => r.leader_id.and_then(|l| {
                self.endpoints
                    .iter()
                    .find(|v| v.id == l)
                    .map(|v| (v.id, v.addr))
            }),
            _ => None,
        };
        let _ = reply.send((env.message, raw, leader));
    }

    /// Every voter's entry of a VotersRecord: its endpoints (a new voter's
    /// come from its AddRaftVoter request), so that this node reaches it
    /// and lists it in the next VotersRecord.
    fn learn_voters(&mut self, voters: Vec<fjord_metadata::control::VoterEntry>) {
        for v in voters {
            let addr = v.endpoints.first().and_then(|e| {
                use std::net::ToSocketAddrs;
                (e.host.as_str(), e.port).to_socket_addrs().ok()?.next()
            });
            if let Some(addr) = addr {
                self.learn_endpoint(NodeId(v.id), addr);
            }
            self.voter_entries.insert(NodeId(v.id), v);
        }
    }

    /// Where node `id`'s CONTROLLER listener is: a connection to it (a new
    /// one when it moved).
    fn learn_endpoint(&mut self, id: NodeId, addr: SocketAddr) {
        if self.endpoints.iter().any(|v| v.id == id && v.addr == addr) {
            return;
        }
        self.endpoints.retain(|v| v.id != id);
        let v = Voter { id, addr };
        self.endpoints.push(v.clone());
        *self.shared.endpoints.lock() = self.endpoints.clone();
        if id != self.node.node_id() && id.0 >= 0 {
            let peer = net::spawn_peer(&self.net, v, self.events.clone(), self.connector.clone());
            self.peers.insert(id, peer);
        }
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
