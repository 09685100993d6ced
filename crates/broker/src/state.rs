//! The broker's state: topics and their partitions (each a
//! [`fjord_partition::Partition`] over its log), following the metadata image.
//!
//! Topic ids, partition counts, config overrides, dynamic broker configs and
//! the producer-id block live as KRaft records in the local
//! `__cluster_metadata` log (crate `fjord-metadata`, a one-voter quorum;
//! with `controller.quorum.voters` set, a `fjord_quorum::RaftQuorum`, where
//! the quorum leader runs the controller (`crate::active_controller`) and
//! the other nodes forward admin operations to it
//! (`crate::controller_link`)). Every partition's leader, epoch, replicas
//! and ISR come from the image ([`replica_state_of`]).
//! An admin operation validates against the image, proposes records,
//! and answers only after they are committed (durable) and applied: each
//! new image goes to [`Broker::apply_delta`] (through
//! [`crate::cluster_metadata::BrokerPublisher`], on its own thread once the
//! node is loaded), which opens the logs of new partitions and closes and
//! deletes those of removed topics. CreateTopics is the exception, as in
//! Kafka: it is answered at the commit and the logs are created behind
//! the answer ([`Broker::create_topic_answered_at_commit`]).
//!
//! Invariant: a topic in `topics` is in an image and has the log of
//! every partition this node hosts open (the others have a `Log::absent`:
//! no directory, no file); records are durable before any answer depends
//! on them.
//!
//! Start-up: [`Broker::open_deferred`] (what `fjord serve` uses) loads the
//! metadata (snapshot + log; on a new data dir, bootstrap records, or the
//! migrated content of an old `fjord-metadata.json`) and returns; the group
//! coordinator comes up in the background (see
//! [`crate::groups::GroupsSlot`]), so a node serves Produce, Fetch and
//! Metadata while `__consumer_offsets` is created or replayed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use fjord_controller::{
    BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig, ControllerError,
    FeatureRange, NewTopic,
};
use fjord_metadata::image::PartitionRegistration;
use fjord_metadata::{
    frame_records_for, ConfigResource, ImageHandle, LocalQuorum, LocalQuorumConfig, MetadataDelta,
    MetadataImage, MetadataLoader, MetadataQuorum,
};
use fjord_model::{ErrorCode, LeaderEpoch, NodeId, PartitionIndex, ProducerId};
use fjord_partition::ReplicaState;
use fjord_protocol::metadata_records::{MetadataRecord, ProducerIdsRecord, RemoveTopicRecord};
use fjord_storage::{Log, Storage};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::cluster_metadata as cm;
use crate::config::{BrokerConfig, DynamicBrokerConfigs, TopicSettings};

pub use fjord_partition::Partition;

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Explicit per-topic overrides, by Kafka topic config name.
    pub overrides: RwLock<BTreeMap<String, String>>,
    /// Effective settings: broker defaults plus overrides.
    pub settings: RwLock<TopicSettings>,
    pub partitions: RwLock<Vec<Arc<Partition>>>,
    /// Bytes and records in and out, for metrics.
    pub stats: crate::metrics::TopicStats,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.read().get(i).cloned())
    }
    pub fn partition_count(&self) -> i32 {
        self.partitions.read().len() as i32
    }
}

/// How far the topic registry follows the metadata image.
#[derive(Default)]
struct RegistryProgress {
    /// The end offset of the last image applied.
    applied: fjord_model::Offset,
    /// The end offset of the last image whose apply failed, and why.
    failed: Option<(fjord_model::Offset, String)>,
}

/// Producer ids are handed out in blocks; the end of the block is persisted first.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// The first producer id of a new cluster.
const PRODUCER_ID_FIRST: i64 = 1000;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// This node's storage engine (flush threads, file-handle cache): every
    /// partition log is opened through it; stops with the last reference.
    pub storage: Storage,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises admin operations: validate, propose, wait for the commit.
    /// Never taken by the metadata thread (which applies what they propose).
    admin: Mutex<()>,
    /// The metadata quorum (set once at open) and the latest image.
    quorum: OnceLock<Quorum>,
    image: OnceLock<ImageHandle>,
    /// How a cluster node reaches the others (set with the quorum).
    links: OnceLock<crate::security::links::NodeLinks>,
    /// Metadata is loaded: a topic created from now on starts with empty
    /// logs (a leftover directory of the same name is removed first). From
    /// then on the registry follows each image behind its publication, on
    /// the publisher's own thread (`cm::BrokerPublisher`).
    loaded: AtomicBool,
    /// How far the registry follows the image (`apply_delta`), and the
    /// images whose apply failed; `registry_moved` is notified at each.
    registry: Mutex<RegistryProgress>,
    registry_moved: parking_lot::Condvar,
    /// The partition directories (`<topic>-<partition>`) found in the data
    /// directory at start that no hosted partition has claimed yet. A
    /// hosted partition opens its directory from this set as its data
    /// (also when the KRaft quorum replays the topic's creation after
    /// `loaded`); what is left once the node has caught up with the
    /// metadata is a stray: a copy of a partition the image does not place
    /// here (see [`Broker::delete_strays`]).
    found_at_start: Mutex<Option<std::collections::HashSet<String>>>,
    producer_id_next: AtomicI64,
    producer_id_block_end: AtomicI64,
    /// The controller's logic (`fjord_controller`): admin requests become
    /// records through it, under `admin`. Set at the end of loading (one
    /// node), or while this node is the active controller of a cluster,
    /// with the metadata epoch it was activated in: its decisions are
    /// proposed bound to that epoch (`propose_in_epoch`).
    controller: Mutex<Option<(LeaderEpoch, Controller)>>,
    /// This node's broker epoch (its registration's), -1 until registered.
    pub(crate) broker_epoch: AtomicI64,
    /// The broker epoch of the clean stop before this start (the
    /// clean-shutdown file's, `cm::take_clean_shutdown_epoch`), -1 without
    /// one: what a cluster broker registers with as `previous_broker_epoch`.
    pub(crate) previous_broker_epoch: i64,
    /// `close` started: the heartbeat thread does the controlled shutdown
    /// and stops, the controller thread stops.
    pub(crate) stopping: AtomicBool,
    /// The registration/heartbeat thread of a cluster broker.
    heartbeat: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Consumer groups: loaded at the end of `open`, or in the background
    /// after `open_deferred` (empty until then).
    pub groups: crate::groups::GroupsSlot,
    /// The transaction coordinator: created with `__transaction_state`, on
    /// the first transactional request (empty until then).
    pub txns: crate::txns::TxnsSlot,
    /// The log cleaner's threads (compacted topics); stopped by `close`
    /// and when the broker is dropped.
    cleaner: parking_lot::Mutex<Option<fjord_storage::LogCleaner>>,
    /// Dynamic broker configs and the topic defaults they give (changed
    /// only by `apply_delta`).
    dynamic: RwLock<(DynamicBrokerConfigs, TopicSettings)>,
    /// The replica fetchers (which partitions this node follows, on which
    /// leader), following the image.
    pub(crate) replication: crate::replica_fetcher::Replication,
    /// Request, connection and error counters (`crate::metrics`).
    pub metrics: Arc<crate::metrics::BrokerMetrics>,
    /// Incremental fetch sessions (KIP-227, `crate::fetch_sessions`).
    pub(crate) fetch_sessions: parking_lot::Mutex<crate::fetch_sessions::FetchSessionCache>,
    /// Client quotas (`crate::quotas`), following the image.
    pub quotas: crate::quotas::ClientQuotas,
    /// Connection limits and the request-bytes pool (`crate::connection_quotas`).
    pub connections: Arc<crate::connection_quotas::Connections>,
}

/// The one-voter quorum of a single node, or the KRaft quorum of a cluster
/// (`controller.quorum.voters` set).
pub enum Quorum {
    Local(LocalQuorum),
    Raft(fjord_quorum::RaftQuorum),
}

impl Quorum {
    pub fn get(&self) -> &dyn MetadataQuorum {
        match self {
            Quorum::Local(q) => q,
            Quorum::Raft(q) => q,
        }
    }

    fn close(&self) {
        match self {
            Quorum::Local(q) => q.close(),
            Quorum::Raft(q) => q.close(),
        }
    }
}

/// A registered, unfenced broker as clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveBroker {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Storage(#[from] fjord_storage::StorageError),
    #[error("metadata file {path}: {reason}")]
    Metadata { path: String, reason: String },
    #[error("{code:?}: {message}")]
    Kafka { code: ErrorCode, message: String },
}

impl StateError {
    pub fn kafka(code: ErrorCode, message: impl Into<String>) -> StateError {
        StateError::Kafka {
            code,
            message: message.into(),
        }
    }
}

/// A partition's replica facts (leader, leader epoch, replicas, ISR) as the
/// metadata image holds them: the one source of them on every node (on a
/// single node the image says this node leads at epoch 0 and is the only
/// replica). A leader of -1 (none) leads nowhere: every request for the
/// partition gets NOT_LEADER_OR_FOLLOWER.
pub fn replica_state_of(reg: &PartitionRegistration) -> ReplicaState {
    let ids = |v: &[i32]| v.iter().map(|&n| NodeId(n)).collect::<Vec<_>>();
    ReplicaState {
        leader: NodeId(reg.leader),
        leader_epoch: LeaderEpoch(reg.leader_epoch),
        replicas: ids(&reg.replicas),
        isr: ids(&reg.isr),
    }
}

/// One line per leadership change a user cares about: a partition left
/// without a leader (offline, a warning), back online, or moved to another
/// leader. ISR-only changes are not logged here.
fn log_leadership_change(topic: &str, partition: i32, before: &ReplicaState, after: &ReplicaState) {
    if before.leader == after.leader {
        return;
    }
    let isr: Vec<i32> = after.isr.iter().map(|n| n.0).collect();
    if after.leader.0 < 0 {
        tracing::warn!(
            topic,
            partition,
            epoch = after.leader_epoch.0,
            ?isr,
            "partition offline: no leader"
        );
    } else if before.leader.0 < 0 {
        tracing::info!(
            topic,
            partition,
            leader = after.leader.0,
            epoch = after.leader_epoch.0,
            ?isr,
            "partition online"
        );
    } else {
        tracing::info!(
            topic,
            partition,
            from = before.leader.0,
            to = after.leader.0,
            epoch = after.leader_epoch.0,
            ?isr,
            "partition leader changed"
        );
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Broker {
    /// How this cluster node reaches the others (`None` before its
    /// quorum is opened, and on a single node).
    pub(crate) fn links(&self) -> Option<&crate::security::links::NodeLinks> {
        self.links.get()
    }

    /// Open the data directory: read the metadata file, open every partition
    /// log, and load the group coordinator (creating `__consumer_offsets` if
    /// needed) before returning.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, StateError> {
        let broker = Broker::open_topics(config, Arc::new(crate::fatal::halt_process))?;
        broker.groups.load_blocking(true)?;
        Ok(broker)
    }

    /// Like [`Broker::open`], but returns once the topics are open: replay of
    /// an existing `__consumer_offsets` starts in the background now, and a
    /// missing one is created on the first group request (as Kafka does on the
    /// first FindCoordinator). Until a group's shard is loaded, its requests
    /// are answered COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS,
    /// which clients retry.
    pub fn open_deferred(config: BrokerConfig) -> Result<Arc<Broker>, StateError> {
        Broker::open_deferred_with_halt(config, Arc::new(crate::fatal::halt_process))
    }

    /// Like [`Broker::open_deferred`], with what a cluster node does when a
    /// write in its data directory fails (`crate::fatal`; the process halts
    /// by default, a test records it instead).
    pub fn open_deferred_with_halt(
        config: BrokerConfig,
        halt: crate::fatal::Halt,
    ) -> Result<Arc<Broker>, StateError> {
        let broker = Broker::open_topics(config, halt)?;
        if broker.topic(crate::groups::OFFSETS_TOPIC).is_some() {
            broker.groups.start_loading();
        }
        Ok(broker)
    }

    fn open_topics(
        config: BrokerConfig,
        halt: crate::fatal::Halt,
    ) -> Result<Arc<Broker>, StateError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| meta_err(&dir, e))?;
        let legacy = cm::read_legacy(&dir)?;
        let legacy_dynamic =
            DynamicBrokerConfigs::load(&dir).map_err(|e| StateError::Metadata {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        let cluster_id = match cm::read_meta_properties(&dir)? {
            Some(id) => {
                if config.kraft.is_cluster() {
                    if let Some(want) = config.cluster_id.as_ref().filter(|w| **w != id) {
                        return Err(StateError::kafka(
                            ErrorCode::INCONSISTENT_CLUSTER_ID,
                            format!(
                                "{} was formatted for cluster {id}, not {want}",
                                dir.display()
                            ),
                        ));
                    }
                }
                // On a single node too: with another node.id every partition
                // would name a node that is not this one, and its copies would
                // be moved aside as strays.
                if let Some(n) = cm::read_meta_node_id(&dir)?.filter(|n| *n != config.node_id) {
                    return Err(StateError::kafka(
                        ErrorCode::INVALID_CONFIG,
                        format!(
                            "{} was formatted for node.id {}, not {}",
                            dir.display(),
                            n.0,
                            config.node_id.0
                        ),
                    ));
                }
                id
            }
            None if config.kraft.is_cluster() => {
                return Err(StateError::kafka(
                    ErrorCode::INVALID_CONFIG,
                    format!(
                        "{} is not formatted: run `fjord format --data-dir {} --cluster-id ID` with the same settings first",
                        dir.display(),
                        dir.display()
                    ),
                ));
            }
            None => {
                let id = legacy
                    .as_ref()
                    .map(|l| l.cluster_id.clone())
                    .or_else(|| config.cluster_id.clone())
                    .unwrap_or_else(|| short_id(Uuid::new_v4()));
                cm::write_meta_properties(&dir, &id, config.node_id)?;
                id
            }
        };
        let topic_defaults = DynamicBrokerConfigs::default()
            .topic_defaults(&config)
            .map_err(|e| StateError::Metadata {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        // Read (and removed) before any log opens, as Kafka does.
        let previous_broker_epoch = if config.kraft.is_cluster() && config.kraft.has_role("broker")
        {
            cm::take_clean_shutdown_epoch(&dir)
        } else {
            -1
        };
        let broker = Arc::new_cyclic(|me| Broker {
            dynamic: RwLock::new((DynamicBrokerConfigs::default(), topic_defaults)),
            cluster_id: cluster_id.clone(),
            storage: Storage::new(fjord_storage::StorageLimits {
                syncfs_min_logs: if config.group_commit_syncfs {
                    fjord_model::limits::GROUP_COMMIT_SYNCFS_MIN_LOGS
                } else {
                    0
                },
                direct_io: config.direct_io,
                batch_cache_bytes: config.batch_cache_bytes,
                ..fjord_storage::StorageLimits::default()
            }),
            topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            quorum: OnceLock::new(),
            image: OnceLock::new(),
            links: OnceLock::new(),
            loaded: AtomicBool::new(false),
            registry: Mutex::new(RegistryProgress::default()),
            registry_moved: parking_lot::Condvar::new(),
            // A single node too: its replay of the metadata log at start
            // may delete a topic whose name a later record creates again,
            // and that later topic's data is what the directory holds.
            found_at_start: Mutex::new(Some(partition_dirs_in(&dir))),
            producer_id_next: AtomicI64::new(0),
            producer_id_block_end: AtomicI64::new(0),
            controller: Mutex::new(None),
            broker_epoch: AtomicI64::new(-1),
            previous_broker_epoch,
            stopping: AtomicBool::new(false),
            heartbeat: Mutex::new(None),
            groups: crate::groups::GroupsSlot::new(me.clone()),
            txns: crate::txns::TxnsSlot::new(me.clone()),
            cleaner: parking_lot::Mutex::new(None),
            replication: crate::replica_fetcher::Replication::new(me.clone()),
            metrics: Default::default(),
            quotas: crate::quotas::ClientQuotas::new(config.quota_window),
            connections: Arc::new(crate::connection_quotas::Connections::new(
                config.quota_window,
                config.connection_limits.clone(),
                config.queued_max_request_bytes,
            )),
            fetch_sessions: parking_lot::Mutex::new(crate::fetch_sessions::FetchSessionCache::new(
                config.fetch_session_cache_slots,
                fjord_model::limits::FETCH_SESSION_EVICTION_MS,
                // Session ids are not secrets (Kafka's are random too):
                // only unpredictable enough not to repeat across restarts.
                uuid::Uuid::new_v4().as_u64_pair().0,
            )),
            config,
        });
        if broker.config.kraft.is_cluster() {
            // Before the metadata log opens: it lives in the data directory too.
            broker
                .storage
                .on_failure(crate::fatal::log_dir_failure_listener(
                    &dir,
                    Arc::clone(&halt),
                ));
        }
        let (loader, image) = MetadataLoader::new(
            &cluster_id,
            Box::new(cm::BrokerPublisher::new(Arc::downgrade(&broker))),
        );
        let _ = broker.image.set(image);
        if broker.config.kraft.is_cluster() {
            Broker::open_raft_quorum(&broker, Box::new(loader))?;
            broker.loaded.store(true, Ordering::SeqCst);
            return Ok(broker);
        }
        let (quorum, report) = LocalQuorum::open(
            &broker.storage,
            &dir,
            LocalQuorumConfig::new(broker.config.node_id),
            Box::new(loader),
            now_ms(),
        )
        .map_err(|e| meta_err_str(&dir, e))?;
        tracing::info!(?report, "metadata loaded");
        let _ = broker.quorum.set(Quorum::Local(quorum));
        if report.new_log {
            // One proposal, so a crash leaves either nothing or all of it:
            // the bootstrap records and, for an old data directory, its
            // whole content (same topic ids, counts, overrides, configs,
            // producer-id block end).
            let mut records = cm::bootstrap_records(&broker.config)?;
            records.extend(cm::migration_records(
                broker.config.node_id,
                legacy.as_ref(),
                &legacy_dynamic,
            ));
            broker.propose(records)?;
            if legacy.is_some() {
                tracing::info!(
                    "migrated {} into the metadata log",
                    cm::LEGACY_METADATA_FILE
                );
            }
        }
        // The records are durable: the old files are not needed any more
        // (also after a crash between the commit and this rename).
        cm::retire_legacy_files(&dir)?;
        broker.start_controller()?;
        let next = match broker.image().next_producer_id() {
            n if n >= 0 => n,
            _ => PRODUCER_ID_FIRST,
        };
        broker.producer_id_next.store(next, Ordering::SeqCst);
        broker.producer_id_block_end.store(next, Ordering::SeqCst);
        broker.loaded.store(true, Ordering::SeqCst);
        // The replay is over: what no partition claimed is stray.
        broker.delete_strays(&broker.image())?;
        broker.start_cleaner();
        Ok(broker)
    }

    /// Starts the KRaft quorum of a cluster node. Nothing is replayed at
    /// open (only what is known committed reaches the image); the node that
    /// becomes the active leader of a new cluster proposes the bootstrap
    /// records once (a background thread waits for that).
    /// The KRaft settings with the voters of the bootstrap snapshot in the
    /// data directory when only `controller.quorum.bootstrap.servers` is
    /// set (KIP-853), and their directory ids; a voter's directory id
    /// there must be this node's.
    /// The snapshot's VotersRecord entries come back too: they make the
    /// quorum reconfigurable (RemoveRaftVoter).
    #[allow(clippy::type_complexity)]
    fn dynamic_voters(
        cfg: &BrokerConfig,
    ) -> Result<
        (
            crate::kraft::KraftConfig,
            Vec<(NodeId, Uuid)>,
            Vec<fjord_metadata::control::VoterEntry>,
        ),
        StateError,
    > {
        let dir = &cfg.data_dir;
        if !cfg.kraft.voters.is_empty() || cfg.kraft.bootstrap_servers.is_empty() {
            return Ok((cfg.kraft.clone(), Vec::new(), Vec::new()));
        }
        let Some((_, voters)) =
            fjord_metadata::log::snapshot_voters(dir).map_err(|e| meta_err_str(dir, e))?
        else {
            return Ok((cfg.kraft.clone(), Vec::new(), Vec::new()));
        };
        if let Some(me) = voters.iter().find(|v| v.id == cfg.node_id.0) {
            let own = cm::read_meta_directory_id(dir)?;
            if own != Some(me.directory_id) {
                return Err(StateError::kafka(
                    ErrorCode::INVALID_CONFIG,
                    format!(
                        "voter {} of the bootstrap snapshot has directory id {}, but {} has {}",
                        me.id,
                        cm::kafka_uuid_string(me.directory_id),
                        dir.display(),
                        own.map_or("none".to_string(), cm::kafka_uuid_string)
                    ),
                ));
            }
        }
        let kraft = cfg
            .kraft
            .with_snapshot_voters(&voters)
            .map_err(|e| StateError::kafka(ErrorCode::INVALID_CONFIG, e.to_string()))?;
        let ids = voters
            .iter()
            .map(|v| (NodeId(v.id), v.directory_id))
            .collect();
        Ok((kraft, ids, voters))
    }

    fn open_raft_quorum(
        broker: &Arc<Broker>,
        loader: Box<dyn fjord_metadata::MetadataListener>,
    ) -> Result<(), StateError> {
        let cfg = &broker.config;
        let dir = cfg.data_dir.clone();
        let bad = |e: crate::config::ConfigError| {
            StateError::kafka(ErrorCode::INVALID_CONFIG, e.to_string())
        };
        if cfg.kraft.has_role("controller") {
            // The bootstrap levels this controller would finalize as the
            // first active one: refused now, at start, if Fjord cannot run
            // them, rather than when it is elected.
            cm::cluster_bootstrap_records(cfg)?;
        }
        let (kraft, directory_ids, voter_entries) = Broker::dynamic_voters(cfg)?;
        let (voters, listen) = kraft.quorum(cfg.node_id).map_err(bad)?;
        let broker_role = cfg.kraft.has_role("broker");
        let advertised: Vec<String> = if broker_role {
            cfg.client_listeners()
                .map_err(bad)?
                .into_iter()
                .map(|l| l.name)
                .collect()
        } else {
            Vec::new()
        };
        let links =
            crate::security::links::node_links(&cfg.security, &cfg.kraft, &advertised, broker_role)
                .map_err(bad)?;
        let controller_connector = links.controller.clone();
        let _ = broker.links.set(links);
        let voters = voters
            .into_iter()
            .map(|(id, addr)| fjord_quorum::Voter { id, addr })
            .collect();
        let mut qc = fjord_quorum::RaftQuorumConfig::new(
            cfg.node_id,
            broker.cluster_id.clone(),
            voters,
            listen,
        );
        qc.seed ^= now_ms() as u64;
        qc.voter_directory_ids = directory_ids;
        // KIP-853: no voter set known at all (a controller formatted with
        // --no-initial-controllers): an observer that finds the leader
        // through the bootstrap servers and may be added as a voter.
        qc.dynamic = kraft.voters.is_empty() && !kraft.bootstrap_servers.is_empty();
        if qc.dynamic || !voter_entries.is_empty() {
            qc.directory_id = cm::read_meta_directory_id(&dir)?;
            qc.voter_entries = voter_entries;
            qc.bootstrap = kraft.bootstrap_addrs().map_err(bad)?;
        }
        qc.connector = controller_connector;
        if let Some(listener) = cfg.controller_listener().map_err(bad)? {
            qc.listener_name.clone_from(&listener.name);
            if listener.protocol != crate::security::SecurityProtocol::Plaintext {
                let security = crate::security::ListenerSecurity::build(&cfg.security, &listener)
                    .map_err(bad)?;
                qc.security = Some(Arc::new(crate::server::ControllerListenerSecurity::new(
                    Arc::downgrade(broker),
                    Arc::new(security),
                )));
            }
        }
        if let Some(t) = cfg.kraft.election_timeout_ms {
            qc.election_timeout_ms = t;
        }
        if let Some(t) = cfg.kraft.fetch_timeout_ms {
            qc.fetch_timeout_ms = t;
        }
        let quorum = fjord_quorum::RaftQuorum::open(&broker.storage, &dir, qc, loader)
            .map_err(|e| meta_err_str(&dir, e))?;
        match quorum.local_addr() {
            Some(addr) => tracing::info!(controller_listener = %addr, "metadata quorum started"),
            None => tracing::info!("metadata quorum started: following it as an observer"),
        }
        let _ = broker.quorum.set(Quorum::Raft(quorum));
        if let Some(Quorum::Raft(q)) = broker.quorum.get() {
            if cfg.kraft.has_role("controller") {
                q.set_controller_apis(Arc::new(crate::active_controller::Apis::new(
                    Arc::downgrade(broker),
                )));
                crate::active_controller::start(broker).map_err(|e| meta_err(&dir, e))?;
            }
        }
        if cfg.kraft.has_role("broker") {
            crate::replica_fetcher::start_leader_tick(broker).map_err(|e| meta_err(&dir, e))?;
            let handle = crate::controller_link::start(broker).map_err(|e| meta_err(&dir, e))?;
            *broker.heartbeat.lock() = Some(handle);
        }
        Ok(())
    }

    /// True once the active controller has registered this process (this
    /// incarnation, not one before a restart) and the metadata image shows
    /// that registration unfenced. A restarted node's replayed image still
    /// holds its previous registration, often unfenced: that one does not
    /// count.
    pub fn is_registered_unfenced(&self) -> bool {
        self.registered_unfenced_in(&self.image())
    }

    /// [`Broker::is_registered_unfenced`] as of `image`.
    fn registered_unfenced_in(&self, image: &MetadataImage) -> bool {
        let epoch = self.broker_epoch.load(Ordering::SeqCst);
        epoch >= 0
            && image
                .broker(self.config.node_id)
                .is_some_and(|r| r.broker_epoch == epoch && !r.fenced)
    }

    /// The metadata quorum, once open.
    pub fn quorum(&self) -> Option<&Quorum> {
        self.quorum.get()
    }

    /// Starts the controller's logic on the loaded image and registers this
    /// node through it (RegisterBrokerRecord, then unfenced: it is caught
    /// up) unless the image already holds an unfenced registration of it
    /// with this node's advertised listener.
    fn start_controller(&self) -> Result<(), StateError> {
        let _admin = self.admin.lock();
        let image = self.image();
        let config = ControllerConfig {
            first_producer_id: PRODUCER_ID_FIRST,
            // Topic ids must differ across restarts: a fresh seed each start.
            seed: Uuid::new_v4().as_u128() as u64,
            // Nothing to rebalance on one node (and nothing drives `tick`).
            auto_leader_rebalance: false,
            min_insync_replicas: self.static_min_insync_replicas(),
            ..ControllerConfig::default()
        };
        let mut c = Controller::activate(config, image.clone(), now_ms());
        let node = self.config.node_id;
        let endpoints = self.config.endpoints();
        let epoch = match image.broker(node) {
            Some(b)
                if !b.fenced
                    && b.end_points.len() == endpoints.len()
                    && b.end_points.iter().zip(&endpoints).all(|(have, want)| {
                        have.name == want.name
                            && have.host == want.host
                            && have.port == want.port
                            && have.security_protocol == want.security_protocol
                    })
                    && b.rack.clone().filter(|r| !r.is_empty()) == self.config.rack =>
            {
                b.broker_epoch
            }
            _ => {
                // A single node is its only broker: no earlier incarnation of
                // it can still be alive.
                c.forget_session(node);
                let registration = BrokerRegistration {
                    broker_id: node,
                    cluster_id: self.cluster_id.clone(),
                    incarnation_id: Uuid::new_v4(),
                    listeners: endpoints,
                    rack: self.config.rack.clone(),
                    features: cm::registered_features()
                        .into_iter()
                        .map(|f| FeatureRange {
                            name: f.name,
                            min: f.min_supported_version,
                            max: f.max_supported_version,
                        })
                        .collect(),
                    log_dirs: Vec::new(),
                    previous_broker_epoch: -1,
                };
                let r = c
                    .register_broker(now_ms(), &registration)
                    .map_err(controller_error)?;
                self.propose(r.records)?;
                c.reset(self.image());
                let heartbeat = BrokerHeartbeat {
                    broker_id: node,
                    broker_epoch: r.response,
                    current_metadata_offset: self.image().end_offset().0,
                    want_fence: false,
                    want_shut_down: false,
                };
                let h = c
                    .heartbeat(now_ms(), &heartbeat)
                    .map_err(controller_error)?;
                assert!(!h.response.is_fenced, "a single node is caught up at once");
                self.propose(h.records)?;
                c.reset(self.image());
                r.response
            }
        };
        self.broker_epoch.store(epoch, Ordering::SeqCst);
        let quorum_epoch = self.controller_epoch().unwrap_or_default();
        *self.controller.lock() = Some((quorum_epoch, c));
        Ok(())
    }

    /// Runs `f` on the controller, reset to the committed image first, and
    /// returns the metadata epoch its decision is bound to (propose its
    /// records with [`Broker::propose_in_epoch`]); `None` where there is no
    /// active controller: a node of a KRaft cluster that is not the active
    /// quorum leader (its callers forward to the controller instead, see
    /// `forwards_admin`), or one whose controller was activated in an
    /// earlier epoch (the controller thread activates a fresh one). Callers
    /// hold `admin`, so nothing is proposed in between.
    fn with_controller<T>(&self, f: impl FnOnce(&mut Controller) -> T) -> Option<(LeaderEpoch, T)> {
        let epoch = self.controller_epoch()?;
        let mut guard = self.controller.lock();
        let (activated_in, c) = guard.as_mut()?;
        if *activated_in != epoch {
            return None;
        }
        c.reset(self.image());
        Some((epoch, f(c)))
    }

    /// The metadata epoch in which this node is the active controller: the
    /// one-voter quorum's epoch on a single node; in a cluster the epoch
    /// this node leads with its image complete (`RaftQuorum::active_epoch`),
    /// `None` while it does not (a resigned leader included).
    pub(crate) fn controller_epoch(&self) -> Option<LeaderEpoch> {
        match self.quorum.get() {
            Some(Quorum::Raft(q)) => q.active_epoch(),
            Some(Quorum::Local(q)) => Some(q.leader_and_epoch().1),
            None => None,
        }
    }

    /// Admin operations go to the active controller (a cluster node that is
    /// not it): see [`crate::controller_link`].
    pub(crate) fn forwards_admin(&self) -> bool {
        self.config.kraft.is_cluster() && !self.is_active_controller()
    }

    /// Waits until `f` sees what a forwarded admin operation committed
    /// applied here too (this node follows the metadata log behind the
    /// controller), at most `METADATA_FORWARD_TIMEOUT_MS`.
    pub(crate) fn wait_applied<T>(
        &self,
        f: impl Fn(&Broker) -> Option<T>,
    ) -> Result<T, StateError> {
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_millis(fjord_model::limits::METADATA_FORWARD_TIMEOUT_MS);
        loop {
            if let Some(v) = f(self) {
                return Ok(v);
            }
            if std::time::Instant::now() > deadline {
                return Err(StateError::kafka(
                    ErrorCode::REQUEST_TIMED_OUT,
                    "the controller committed the change; this broker has not applied it yet",
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// This node runs the controller: a single node always, a cluster node
    /// while it is the active KRaft leader.
    pub(crate) fn is_active_controller(&self) -> bool {
        self.controller_epoch().is_some()
    }

    /// The controller id that Metadata and DescribeCluster report along with
    /// `listed`, the brokers the same answer lists: this node on a single
    /// node. In a cluster it must be one of `listed`, because clients send
    /// admin requests to it (any broker forwards them to the active
    /// controller; Kafka's brokers name a random live broker here): the
    /// quorum leader when listed, else this node when listed, else the
    /// lowest listed broker, else -1. Naming a node the answer does not list
    /// left librdkafka's admin client "waiting for controller" until its
    /// next metadata refresh, minutes later.
    pub fn controller_id(&self, listed: &[LiveBroker]) -> i32 {
        let Some(Quorum::Raft(q)) = self.quorum.get() else {
            return self.config.node_id.0;
        };
        let is_listed = |id: &i32| listed.iter().any(|b| b.id.0 == *id);
        let leader = q.leader_endpoint().map(|(id, _)| id.0);
        leader
            .filter(is_listed)
            .or_else(|| Some(self.config.node_id.0).filter(is_listed))
            .or_else(|| listed.iter().map(|b| b.id.0).min())
            .unwrap_or(-1)
    }

    /// The controller settings of a cluster node (Kafka's names in
    /// `ControllerConfig`'s docs).
    fn cluster_controller_config(&self) -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: self.config.broker_session_timeout_ms,
            // Sooner than the session only: a shorter session needs neither.
            activation_fence_ms: Some(fjord_controller::activation_fence_ms(
                self.config.broker_heartbeat_interval_ms,
            ))
            .filter(|ms| *ms < self.config.broker_session_timeout_ms),
            activation_fence_only: Some(match self.quorum() {
                Some(Quorum::Raft(q)) => q.voters().iter().map(|v| v.id).collect(),
                _ => self.config.kraft.voters.iter().map(|v| v.0).collect(),
            }),
            auto_leader_rebalance: true,
            first_producer_id: PRODUCER_ID_FIRST,
            min_insync_replicas: self.static_min_insync_replicas(),
            // Topic ids must differ across activations: a fresh seed each.
            seed: Uuid::new_v4().as_u128() as u64,
            ..ControllerConfig::default()
        }
    }

    /// This node's static `min.insync.replicas` (its configuration file's,
    /// else Kafka's default 1).
    pub(crate) fn static_min_insync_replicas(&self) -> usize {
        self.config.static_min_insync_replicas()
    }

    /// Activates the controller on the committed image, unless it is active.
    pub(crate) fn activate_controller(&self) {
        let _admin = self.admin.lock();
        let Some(epoch) = self.controller_epoch() else {
            return;
        };
        let mut guard = self.controller.lock();
        if guard.as_ref().is_none_or(|(at, _)| *at != epoch) {
            let image = self.image();
            tracing::info!(
                offset = image.end_offset().0,
                epoch = epoch.0,
                brokers = image.brokers().len(),
                "this node is the active controller"
            );
            *guard = Some((
                epoch,
                Controller::activate(self.cluster_controller_config(), image, now_ms()),
            ));
        }
    }

    /// Drops the controller (this node no longer leads the quorum).
    pub(crate) fn deactivate_controller(&self) {
        if self.controller.lock().take().is_some() {
            tracing::info!("this node is no longer the active controller");
        }
    }

    /// Runs one controller operation as the active controller: under the
    /// admin lock, on the controller reset to the committed image, its
    /// records proposed and committed before the answer is returned.
    /// NOT_CONTROLLER where this node is not the active controller.
    pub(crate) fn as_active_controller<T>(
        &self,
        f: impl FnOnce(
            &mut Controller,
            i64,
        ) -> Result<fjord_controller::ControllerResult<T>, ControllerError>,
    ) -> Result<T, (ErrorCode, String)> {
        let not_controller = || {
            (
                ErrorCode::NOT_CONTROLLER,
                "this node is not the active controller".to_string(),
            )
        };
        if !self.is_active_controller() {
            return Err(not_controller());
        }
        let _admin = self.admin.lock();
        let (epoch, result) = self
            .with_controller(|c| f(c, now_ms()))
            .ok_or_else(not_controller)?;
        let result = result.map_err(|e| (e.code, e.message))?;
        // These decisions (fencing, unfencing, ISR changes, elections) are
        // not atomic in Kafka either: more records than one proposal takes
        // go in several, in order, all in the decision's epoch. Fencing a
        // broker of 10,000 partitions is 10,001 records; as one proposal the
        // quorum refused it and the broker was never fenced.
        for chunk in result
            .records
            .chunks(fjord_model::limits::METADATA_RECORDS_PER_PROPOSAL_MAX)
        {
            self.propose_in_epoch(epoch, chunk.to_vec())
                .map_err(|e| match e {
                    StateError::Kafka { code, message } => (code, message),
                    other => (ErrorCode::NOT_CONTROLLER, other.to_string()),
                })?;
        }
        Ok(result.response)
    }

    /// The unfenced brokers of the image with their PLAINTEXT endpoint
    /// (or first one) and rack, by id: what Metadata and DescribeCluster
    /// list. In a cluster these are the brokers registered with the
    /// controller and unfenced by it (none until the first registers).
    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        self.live_brokers_on(None)
    }

    /// [`Broker::live_brokers`] with the endpoints of `listener`, the one a
    /// client connected on: a broker without that listener is not listed,
    /// as in Kafka. `None`: the PLAINTEXT endpoint (or first one).
    pub fn live_brokers_on(&self, listener: Option<&str>) -> Vec<LiveBroker> {
        self.image()
            .brokers()
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let e = match listener {
                    Some(name) => b.end_points.iter().find(|e| e.name == name)?,
                    None => b
                        .end_points
                        .iter()
                        .find(|e| e.name == "PLAINTEXT")
                        .or_else(|| b.end_points.first())?,
                };
                Some(LiveBroker {
                    id: NodeId(b.broker_id),
                    host: e.host.clone(),
                    port: e.port,
                    // Data directories bootstrapped before a02684f hold "" for "no rack";
                    // clients are told null, as Kafka does for a broker without a rack.
                    rack: b.rack.clone().filter(|r| !r.is_empty()),
                })
            })
            .collect()
    }

    /// The latest metadata image.
    pub fn image(&self) -> MetadataImage {
        match self.image.get() {
            Some(h) => h.current(),
            None => MetadataImage::empty(&self.cluster_id),
        }
    }

    /// The finalized `transaction.version` (0 when the image has none, as
    /// on a quorum bootstrapped before Kafka 4.0).
    pub fn transaction_version(&self) -> i16 {
        self.image()
            .feature_level(crate::features::TRANSACTION_VERSION_FEATURE)
            .unwrap_or(0)
    }

    /// The admin lock: held while an admin operation validates against the
    /// image and proposes, so nothing is proposed in between.
    pub(crate) fn admin_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.admin.lock()
    }

    /// `records` framed at the versions Kafka writes at the image's
    /// `metadata.version` (the bootstrap level before one is finalized: the
    /// records that finalize it come first).
    fn frame(&self, records: &[MetadataRecord]) -> Vec<bytes::Bytes> {
        let level = self
            .image()
            .metadata_version()
            .unwrap_or(cm::BOOTSTRAP_METADATA_VERSION);
        frame_records_for(records, level)
    }

    /// Proposes `records` and waits until they are committed and applied.
    pub(crate) fn propose(&self, records: Vec<MetadataRecord>) -> Result<(), StateError> {
        let offset = self.commit(None, records)?;
        self.wait_registry(offset)
    }

    /// Proposes a controller's decision, bound to the metadata epoch it was
    /// made in (see `controller_epoch`): NOT_CONTROLLER, and nothing
    /// written, once this node no longer leads that epoch. A deposed
    /// controller's records must never reach the next leader: it decided
    /// on an image that may be stale (a cut-off controller fences the
    /// brokers it cannot hear and shrinks ISRs to itself). Waits until
    /// they are committed and applied.
    pub(crate) fn propose_in_epoch(
        &self,
        epoch: LeaderEpoch,
        records: Vec<MetadataRecord>,
    ) -> Result<(), StateError> {
        let offset = self.commit(Some(epoch), records)?;
        self.wait_registry(offset)
    }

    /// Proposes `records` (bound to `epoch` when given) and waits until
    /// they are committed and the published image holds them (what the
    /// controller decides on next), not until the registry applied them:
    /// the offset of the proposal's last record.
    fn commit(
        &self,
        epoch: Option<LeaderEpoch>,
        records: Vec<MetadataRecord>,
    ) -> Result<fjord_model::Offset, StateError> {
        let Some(q) = self.quorum.get() else {
            return Err(StateError::kafka(
                ErrorCode::NOT_CONTROLLER,
                "metadata is not loaded",
            ));
        };
        let framed = self.frame(&records);
        let proposal = match epoch {
            Some(epoch) => q.get().propose_in_epoch(epoch, framed),
            None => q.get().propose(framed),
        };
        proposal
            .wait_blocking()
            .map_err(|e| meta_err_str(&self.config.data_dir, e))
    }

    /// Waits until the registry applied the image that holds `offset`
    /// (opened the logs of the partitions it created, ...): the apply's
    /// error if that image is the one whose apply failed.
    fn wait_registry(&self, offset: fjord_model::Offset) -> Result<(), StateError> {
        let mut progress = self.registry.lock();
        while progress.applied <= offset {
            if self.stopping.load(Ordering::SeqCst) {
                return Err(StateError::kafka(
                    ErrorCode::NOT_CONTROLLER,
                    "the broker is shutting down",
                ));
            }
            self.registry_moved
                .wait_for(&mut progress, std::time::Duration::from_millis(100));
        }
        match &progress.failed {
            Some((end, reason)) if *end == offset.next() => Err(meta_err_str(
                &self.config.data_dir,
                fjord_metadata::MetadataError::Apply(reason.clone()),
            )),
            _ => Ok(()),
        }
    }

    /// Waits until the registry applied every image published so far (an
    /// admin operation that reads the registry, right after a CreateTopics
    /// answered at the commit).
    fn registry_caught_up(&self) {
        let end = self.image().end_offset();
        let mut progress = self.registry.lock();
        while progress.applied < end && !self.stopping.load(Ordering::SeqCst) {
            self.registry_moved
                .wait_for(&mut progress, std::time::Duration::from_millis(100));
        }
    }

    /// The registry applied the image ending at `end` (`Err`: its apply
    /// failed part way).
    pub(crate) fn record_registry_applied(
        &self,
        end: fjord_model::Offset,
        result: Result<(), String>,
    ) {
        let mut progress = self.registry.lock();
        progress.applied = progress.applied.max(end);
        if let Err(reason) = result {
            progress.failed = Some((end, reason));
        }
        drop(progress);
        self.registry_moved.notify_all();
    }

    /// The end offset of the last image the registry applied: what a
    /// broker reports to the controller as its metadata offset (Kafka's
    /// broker reports the image its publishers applied), so it is unfenced
    /// only once its logs follow the metadata.
    pub(crate) fn registry_applied(&self) -> fjord_model::Offset {
        self.registry.lock().applied
    }

    /// Metadata is loaded (see `loaded`).
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// The epoch an admin operation that decides without the controller's
    /// logic (topic deletion, topic configs) is bound to, taken under
    /// `admin`: NOT_CONTROLLER where this cluster node stopped being the
    /// active controller since `forwards_admin` (the client retries).
    fn admin_epoch(&self) -> Result<LeaderEpoch, StateError> {
        self.controller_epoch().ok_or_else(|| {
            StateError::kafka(
                ErrorCode::NOT_CONTROLLER,
                "this node is no longer the active controller",
            )
        })
    }

    /// [`Broker::propose_in_epoch`] with the epoch of a decision, or a
    /// plain proposal where there was no controller to decide (a single
    /// node before its controller started).
    fn propose_at(
        &self,
        epoch: Option<LeaderEpoch>,
        records: Vec<MetadataRecord>,
    ) -> Result<(), StateError> {
        match epoch {
            Some(epoch) => self.propose_in_epoch(epoch, records),
            None => self.propose(records),
        }
    }

    /// Makes the registry follow a new image (called on the metadata
    /// thread, in log order, for every committed batch).
    pub(crate) fn apply_delta(
        &self,
        delta: &MetadataDelta,
        image: &MetadataImage,
    ) -> Result<(), StateError> {
        let node = self.config.node_id;
        if delta.client_quotas_changed() {
            self.quotas.update(image);
            self.connections.update_ip_rates(image);
        }
        let broker_configs_changed = delta.changed_configs().any(|r| {
            matches!(r, ConfigResource::Broker(None)) || *r == ConfigResource::Broker(Some(node))
        });
        if broker_configs_changed {
            let dynamic = cm::dynamic_configs(image, node);
            match dynamic.connection_limits(&self.config) {
                Ok(limits) => self.connections.set_limits(limits),
                Err(e) => tracing::warn!("ignoring dynamic connection limits: {e}"),
            }
            match dynamic.topic_defaults(&self.config) {
                Ok(defaults) => *self.dynamic.write() = (dynamic, defaults),
                // Values were validated before they were proposed.
                Err(e) => tracing::warn!("ignoring dynamic broker configs: {e}"),
            }
        }
        for old in delta.deleted_topics() {
            let removed = {
                let mut topics = self.topics.write();
                match topics.get(&old.name) {
                    Some(t) if t.id == old.id => topics.remove(&old.name),
                    _ => None,
                }
            };
            if let Some(topic) = removed {
                for p in topic.partitions.read().iter() {
                    self.replication.unfollow(topic.id, p.index.0);
                    p.stop_replicating();
                    p.wake_waiters();
                    let _ = p.log.close();
                    self.remove_partition_dir(&topic.name, topic.id, p.index.0)?;
                }
            }
        }
        let fresh = self.loaded.load(Ordering::SeqCst);
        for t in delta.created_topics() {
            let overrides = image.configs(&ConfigResource::Topic(t.name.clone()));
            let settings = self.settings_lenient(&t.name, &overrides);
            let parts = t
                .partitions
                .iter()
                .map(|(&p, reg)| self.open_partition(&t.name, t.id, p, reg, &settings, fresh))
                .collect::<Result<Vec<_>, _>>()?;
            for (part, reg) in parts.iter().zip(t.partitions.values()) {
                self.follow_image(t.id, part, reg, &settings);
            }
            let topic = Topic {
                name: t.name.clone(),
                id: t.id,
                overrides: RwLock::new(overrides),
                settings: RwLock::new(settings),
                partitions: RwLock::new(parts),
                stats: Default::default(),
            };
            self.topics.write().insert(t.name.clone(), Arc::new(topic));
        }
        for (old, new) in delta.changed_topics() {
            let Some(topic) = self.topic(&new.name) else {
                continue;
            };
            let settings = topic.settings.read().clone();
            let current = topic.partition_count();
            for (&p, reg) in new.partitions.iter().filter(|(&p, _)| p >= current) {
                assert_eq!(p, topic.partition_count(), "partitions are added in order");
                let part = self.open_partition(&new.name, new.id, p, reg, &settings, fresh)?;
                self.follow_image(topic.id, &part, reg, &settings);
                topic.partitions.write().push(part);
            }
            // Leader, epoch, replicas and ISR follow the image (a
            // PartitionChangeRecord: a new leader, a shrunk or grown ISR).
            for (&p, reg) in new.partitions.iter().filter(|(&p, _)| p < current) {
                let Some(part) = topic.partition(p) else {
                    continue;
                };
                let facts = replica_state_of(reg);
                let before = part.replica_state();
                let hosts = facts.replicas.contains(&node);
                if hosts && part.log.is_closed() {
                    // A replica again (a reassignment back): an empty log,
                    // filled from the leader.
                    let fresh = self.open_partition(&new.name, new.id, p, reg, &settings, true)?;
                    if let Some(slot) = topic.partitions.write().get_mut(p as usize) {
                        *slot = fresh.clone();
                    }
                    tracing::info!(topic = %new.name, partition = p, "this node is a replica again");
                    self.follow_image(topic.id, &fresh, reg, &settings);
                    continue;
                }
                let epoch_moved = old
                    .partitions
                    .get(&p)
                    .is_none_or(|o| o.partition_epoch != reg.partition_epoch);
                if before != facts {
                    log_leadership_change(&new.name, p, &before, &facts);
                    self.follow_image(topic.id, &part, reg, &settings);
                } else if epoch_moved && reg.leader == node.0 {
                    // A change the replica state does not show (the ELR,
                    // KIP-966; a ClearElrRecord): the leader's next
                    // AlterPartition must carry the new partition epoch, or
                    // the controller refuses it (INVALID_UPDATE_VERSION)
                    // and the ISR can no longer grow.
                    self.follow_image(topic.id, &part, reg, &settings);
                }
                if !hosts && before.replicas.contains(&node) {
                    self.delete_copy(&new.name, new.id, &part)?;
                }
            }
        }
        // Coordinator shards follow their partition's leadership (cluster).
        let touched = |name: &str| {
            (
                name == crate::groups::OFFSETS_TOPIC,
                name == crate::txns::TXN_STATE_TOPIC,
            )
        };
        let (offsets, txn_state) = delta
            .created_topics()
            .map(|t| touched(&t.name))
            .chain(delta.changed_topics().map(|(_, t)| touched(&t.name)))
            .fold((false, false), |(a, b), (c, d)| (a || c, b || d));
        if offsets {
            if let Some(g) = self.groups.loaded() {
                g.follow_leadership();
            }
        }
        if txn_state {
            self.txns.follow_leadership();
        }
        for resource in delta.changed_configs() {
            let ConfigResource::Topic(name) = resource else {
                continue;
            };
            if let Some(topic) = self.topic(name) {
                let overrides = image.configs(resource);
                let settings = self.settings_lenient(name, &overrides);
                let leader = self.leader_settings(&settings);
                for p in topic.partitions.read().iter() {
                    p.log.set_config(settings.log_config());
                    // min.insync.replicas reaches a leadership at once.
                    p.set_leader_settings(leader);
                }
                *topic.overrides.write() = overrides;
                *topic.settings.write() = settings;
            }
        }
        if broker_configs_changed {
            for topic in self.topics() {
                let overrides = topic.overrides.read().clone();
                let settings = self.settings_lenient(&topic.name, &overrides);
                let leader = self.leader_settings(&settings);
                for p in topic.partitions.read().iter() {
                    p.log.set_config(settings.log_config());
                    p.set_leader_settings(leader);
                }
                *topic.settings.write() = settings;
            }
        }
        // A cluster broker has caught up with the metadata once the
        // controller unfences this incarnation: what it found at start and
        // no hosted partition claimed is stray. As of the image applied
        // (the published one may be ahead of the registry).
        if self.config.kraft.is_cluster()
            && self.found_at_start.lock().is_some()
            && self.registered_unfenced_in(image)
        {
            self.delete_strays(image)?;
        }
        Ok(())
    }

    /// Deletes the partition directories found at start that no hosted
    /// partition claimed: copies of partitions the image places on other
    /// nodes, or of topics it no longer holds (Kafka's stray logs in KRaft,
    /// which its LogManager deletes once the broker has the metadata). Runs
    /// once; from then on a replica's directory is created when it becomes
    /// one and deleted when it ceases to be one.
    fn delete_strays(&self, image: &MetadataImage) -> Result<(), StateError> {
        let Some(left) = self.found_at_start.lock().take() else {
            return Ok(());
        };
        let me = self.config.node_id.0;
        for name in left {
            let Some((topic, p)) = name
                .rsplit_once('-')
                .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?)))
            else {
                continue;
            };
            let hosted_here = image
                .topics()
                .get(topic)
                .and_then(|t| t.partitions.get(&p))
                .is_some_and(|reg| reg.replicas.contains(&me));
            if hosted_here {
                // Opened already (it claimed no directory only if it had none).
                continue;
            }
            let dir = self.config.data_dir.join(&name);
            if dir.is_dir() {
                // Moved aside, not deleted, as Kafka does with stray logs: a
                // copy wrongly judged stray can still be recovered by hand.
                let aside = self
                    .config
                    .data_dir
                    .join(format!("{name}.{}-stray", Uuid::new_v4().simple()));
                std::fs::rename(&dir, &aside).map_err(|e| meta_err(&dir, e))?;
                tracing::warn!(
                    topic,
                    partition = p,
                    moved_to = %aside.display(),
                    "moved a stray log aside: the metadata does not place this partition here"
                );
            }
        }
        // Directories written before topic ids were kept get theirs now,
        // from the caught-up image.
        for t in image.topics().iter() {
            for (&p, reg) in &t.partitions {
                let dir = partition_dir(&self.config.data_dir, &t.name, p);
                if reg.replicas.contains(&me)
                    && dir.is_dir()
                    && read_partition_topic_id(&dir).is_none()
                {
                    write_partition_metadata(&dir, t.id)?;
                }
            }
        }
        Ok(())
    }

    /// This node's part in replicating a partition, from its registration
    /// in the image: the leader (`Partition::become_leader`, with the
    /// topic's `min.insync.replicas`), a follower fetching from the leader
    /// (`Partition::become_follower`, and a replica fetcher on the
    /// leader), or no replica at all (nothing to fetch; every request gets
    /// NOT_LEADER_OR_FOLLOWER). A single-replica partition keeps the
    /// single-node rules.
    fn follow_image(
        &self,
        topic_id: Uuid,
        part: &Arc<Partition>,
        reg: &PartitionRegistration,
        settings: &TopicSettings,
    ) {
        let me = self.config.node_id;
        let ids = |v: &[i32]| v.iter().map(|&n| NodeId(n)).collect::<Vec<_>>();
        let state = fjord_replication::PartitionState {
            leader: NodeId(reg.leader),
            leader_epoch: LeaderEpoch(reg.leader_epoch),
            partition_epoch: reg.partition_epoch,
            replicas: ids(&reg.replicas),
            isr: ids(&reg.isr),
        };
        if !reg.replicas.contains(&me.0) {
            self.replication.unfollow(topic_id, part.index.0);
            part.stop_replicating();
            part.set_replica_state(replica_state_of(reg));
        } else if reg.leader == me.0 {
            self.replication.unfollow(topic_id, part.index.0);
            // An AlterPartition it asks for is sent by the leader tick.
            let _ = part.become_leader(state, self.leader_settings(settings), now_ms());
        } else {
            let epoch = self.broker_epoch.load(Ordering::SeqCst);
            part.become_follower(
                state,
                epoch,
                fjord_replication::FollowerSettings {
                    durable_fetch: self.config.replica_fetch_durable,
                    ..Default::default()
                },
            );
            if reg.leader >= 0 {
                let target = crate::replica_fetcher::FetchTarget {
                    topic_id,
                    partition: part.clone(),
                };
                self.replication.follow(NodeId(reg.leader), target);
            } else {
                self.replication.unfollow(topic_id, part.index.0);
            }
        }
    }

    /// This node was removed from the replicas of `part` (a reassignment,
    /// committed: the image says so): its copy goes, as a Kafka broker
    /// deletes a partition it no longer hosts (StopReplica with delete in
    /// KRaft). The partition stays listed with its log closed, answering
    /// NOT_LEADER_OR_FOLLOWER like any partition this node does not host.
    fn delete_copy(
        &self,
        topic: &str,
        topic_id: Uuid,
        part: &Arc<Partition>,
    ) -> Result<(), StateError> {
        part.stop_replicating();
        part.wake_waiters();
        let _ = part.log.close();
        self.remove_partition_dir(topic, topic_id, part.index.0)?;
        tracing::info!(
            topic,
            partition = part.index.0,
            "no longer a replica: deleted this node's copy"
        );
        Ok(())
    }

    /// Deletes the directory of a partition this node no longer hosts (its
    /// topic deleted, or the node removed from its replicas).
    ///
    /// While the node replays the metadata log at start (until
    /// `delete_strays` has run) the directory holds what the node had when it
    /// stopped, which may belong to a later record: a topic deleted and
    /// created again under the same name, a replica removed and added back.
    /// The topic id in the directory (`partition.metadata`) tells: a
    /// directory of this very topic id is deleted (a copy this node missed
    /// the deletion of must not become the new topic's data); one of another
    /// topic id is left for that topic's creation to claim; one without an
    /// id (written before ids were kept) goes back to the directories found
    /// at start, to be claimed by a later record or moved aside as a stray
    /// once the replay is over. Deleting every such directory lost every
    /// acknowledged record of a re-created topic at the next restart.
    fn remove_partition_dir(&self, topic: &str, topic_id: Uuid, p: i32) -> Result<(), StateError> {
        let dir = partition_dir(&self.config.data_dir, topic, p);
        {
            let mut found = self.found_at_start.lock();
            if let Some(found) = found.as_mut() {
                let name = format!("{topic}-{p}");
                match read_partition_topic_id(&dir) {
                    Some(id) if id == topic_id => {
                        found.remove(&name);
                    }
                    _ => {
                        if dir.is_dir() {
                            found.insert(name);
                        }
                        return Ok(());
                    }
                }
            }
        }
        // A copy this node no longer hosted is gone already.
        if dir.exists() {
            fjord_storage::delete_log_dir(&dir)?;
        }
        Ok(())
    }

    /// A leadership's replication settings: the topic's
    /// `min.insync.replicas`, the broker's `replica.lag.time.max.ms`.
    fn leader_settings(&self, settings: &TopicSettings) -> fjord_replication::Settings {
        let min_insync_replicas = settings
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(fjord_model::limits::MIN_INSYNC_REPLICAS_DEFAULT);
        fjord_replication::Settings {
            replica_lag_time_max_ms: self.config.replica.lag_time_max_ms,
            min_insync_replicas,
        }
    }

    /// Defaults with `overrides` applied, skipping (with a warning) any that
    /// no longer validate (they were checked when proposed).
    fn settings_lenient(&self, topic: &str, overrides: &BTreeMap<String, String>) -> TopicSettings {
        let mut settings = self.topic_defaults();
        for (k, v) in overrides {
            if let Err(e) = settings.set(k, v) {
                tracing::warn!(%topic, "ignoring stored config: {e}");
            }
        }
        settings
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// [`Broker::topic`], also for a topic committed whose logs the registry
    /// is still creating (a CreateTopics answered at the commit): waits for
    /// the registry then. For requests about a topic's configs, which Kafka
    /// answers from its image as soon as the topic is committed.
    pub fn committed_topic(&self, name: &str) -> Option<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Some(t);
        }
        self.image().topics().get(name)?;
        self.registry_caught_up();
        self.topic(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Create a topic. `overrides` are topic config names; validated first.
    /// Internal topics are created by the broker only: asking for a missing
    /// one starts its creation and answers LEADER_NOT_AVAILABLE (retriable).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, StateError> {
        self.create_replicated_topic(name, partitions, -1, &[], overrides, validate_only)
    }

    /// [`Broker::create_topic`] with a replication factor (-1: the broker's
    /// `default.replication.factor`). Placement over the registered
    /// brokers is the active controller's.
    /// `assignments`: the replicas of partition 0, 1, ... chosen by the
    /// client (CreateTopics' manual assignment; `partitions` is their
    /// count), or empty for the controller to place them.
    pub fn create_replicated_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: &[Vec<i32>],
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, StateError> {
        self.refuse_internal_topic(name)?;
        self.create_topic_unchecked(
            name,
            partitions,
            replication_factor,
            assignments,
            overrides,
            validate_only,
        )
    }

    /// CreateTopics: [`Broker::create_replicated_topic`], answered once the
    /// records are committed, as Kafka's controller answers. The topic
    /// returned is the one committed (its id, overrides and settings, no
    /// partitions): its partitions' logs are created behind the answer,
    /// and it is in the registry (and so in Metadata answers) once they
    /// exist, so a client that produces at once is told
    /// UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE until then, and
    /// retries.
    pub fn create_topic_answered_at_commit(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: &[Vec<i32>],
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, StateError> {
        self.refuse_internal_topic(name)?;
        self.create_topic_committed(
            name,
            partitions,
            replication_factor,
            assignments,
            overrides,
            validate_only,
        )
        .map(|(topic, _)| topic)
    }

    /// Internal topics are created by the broker only: asking for a missing
    /// one starts its creation and is answered LEADER_NOT_AVAILABLE.
    fn refuse_internal_topic(&self, name: &str) -> Result<(), StateError> {
        if !is_internal_topic(name) {
            return Ok(());
        }
        if self.image().topics().get(name).is_some() {
            return Err(StateError::kafka(
                ErrorCode::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            ));
        }
        if name == crate::txns::TXN_STATE_TOPIC {
            self.txns.start_loading();
        } else {
            self.groups.start_loading();
        }
        Err(StateError::kafka(
            ErrorCode::LEADER_NOT_AVAILABLE,
            format!("internal topic '{name}' is being created by the broker"),
        ))
    }

    /// `create_topic` without the internal-topic check (for the broker's
    /// own topics): the topic from the registry, its logs open.
    pub(crate) fn create_topic_unchecked(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: &[Vec<i32>],
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, StateError> {
        let (committed, offset) = self.create_topic_committed(
            name,
            partitions,
            replication_factor,
            assignments,
            overrides,
            validate_only,
        )?;
        if validate_only {
            return Ok(committed);
        }
        let id = committed.id;
        match offset {
            Some(offset) => {
                self.wait_registry(offset)?;
                self.topic(name).filter(|t| t.id == id).ok_or_else(|| {
                    StateError::kafka(ErrorCode::UNKNOWN_SERVER_ERROR, "created topic not applied")
                })
            }
            // Forwarded: this node follows the controller's log behind.
            None => self.wait_applied(|b| b.topic(name).filter(|t| t.id == id)),
        }
    }

    /// Creates a topic and waits until its records are committed: the topic
    /// as committed, and the offset of its records (`None` where the
    /// controller is another node, or for `validate_only`).
    fn create_topic_committed(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: &[Vec<i32>],
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(Arc<Topic>, Option<fjord_model::Offset>), StateError> {
        use fjord_model::limits::PARTITIONS_PER_TOPIC_MAX;
        if !fjord_model::is_valid_topic_name(name) {
            return Err(StateError::kafka(
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                format!("invalid topic name '{name}'"),
            ));
        }
        if name == fjord_model::CLUSTER_METADATA_TOPIC {
            return Err(StateError::kafka(
                ErrorCode::INVALID_REQUEST,
                fjord_model::cluster_metadata_creation_refused(),
            ));
        }
        assert!(
            assignments.is_empty() || assignments.len() == partitions as usize,
            "a manual assignment names every partition"
        );
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(StateError::kafka(
                ErrorCode::INVALID_PARTITIONS,
                format!("partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let settings = self.settings_with(&overrides)?;
        // What the answer describes: the topic as committed (its partitions'
        // logs are created behind the answer; see `cm::BrokerPublisher`).
        let answer = |id: Uuid, overrides: BTreeMap<String, String>| {
            Arc::new(Topic {
                name: name.to_string(),
                id,
                overrides: RwLock::new(overrides),
                settings: RwLock::new(settings.clone()),
                partitions: RwLock::new(Vec::new()),
                stats: Default::default(),
            })
        };
        if self.forwards_admin() {
            // Answered once the controller committed the records (Kafka's
            // forwarding broker does not wait for its own metadata either).
            let id = crate::controller_link::forward_create_topic(
                self,
                name,
                partitions,
                replication_factor,
                assignments,
                &overrides,
                validate_only,
            )?;
            return Ok((answer(id, overrides), None));
        }
        let _admin = self.admin.lock();
        if self.image().topics().get(name).is_some() {
            return Err(StateError::kafka(
                ErrorCode::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            ));
        }
        let default_rf = self.config.default_replication_factor;
        let new = if assignments.is_empty() {
            NewTopic {
                name: name.to_string(),
                num_partitions: partitions,
                replication_factor: if replication_factor == -1 {
                    default_rf
                } else {
                    replication_factor
                },
                assignments: Vec::new(),
                configs: overrides.clone(),
            }
        } else {
            NewTopic {
                name: name.to_string(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: assignments.to_vec(),
                configs: overrides.clone(),
            }
        };
        let (epoch, id, records) = match self.with_controller(|c| {
            c.create_topics(
                std::slice::from_ref(&new),
                partitions,
                default_rf,
                validate_only,
            )
        }) {
            Some((epoch, result)) => match result.response.into_iter().next() {
                Some(Ok(created)) => (Some(epoch), created.topic_id, result.records),
                Some(Err(e)) => return Err(controller_error(e)),
                None => {
                    return Err(StateError::kafka(
                        ErrorCode::UNKNOWN_SERVER_ERROR,
                        "no answer for the topic",
                    ))
                }
            },
            // Leadership moved since `forwards_admin`: the client retries.
            None if self.config.kraft.is_cluster() => {
                return Err(StateError::kafka(
                    ErrorCode::NOT_CONTROLLER,
                    "this node is no longer the active controller",
                ))
            }
            None => {
                let id = Uuid::new_v4();
                let records = cm::topic_records(
                    self.config.node_id,
                    name,
                    id,
                    0..partitions,
                    &overrides,
                    true,
                );
                (None, id, records)
            }
        };
        if validate_only {
            return Ok((answer(id, overrides), None));
        }
        // Committed: the image (what the next admin operation decides on)
        // holds the topic; the registry opens its logs behind.
        let offset = self.commit(epoch, records)?;
        tracing::info!(topic = name, %id, partitions, "topic created");
        Ok((answer(id, overrides), Some(offset)))
    }

    pub fn delete_topic(&self, name: &str) -> Result<Uuid, StateError> {
        if is_internal_topic(name) {
            return Err(StateError::kafka(
                ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                format!("'{name}' is an internal topic and cannot be deleted"),
            ));
        }
        if self.forwards_admin() {
            let id = crate::controller_link::forward_delete_topic(self, name)?;
            self.wait_applied(|b| b.topic(name).is_none_or(|t| t.id != id).then_some(()))?;
            return Ok(id);
        }
        let _admin = self.admin.lock();
        self.registry_caught_up();
        let topic = self.topic(name).ok_or_else(|| {
            StateError::kafka(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic '{name}' does not exist"),
            )
        })?;
        // Applying the removal closes and deletes the partition logs.
        let epoch = self.admin_epoch()?;
        self.propose_in_epoch(
            epoch,
            vec![MetadataRecord::RemoveTopic(RemoveTopicRecord {
                topic_id: topic.id,
                ..Default::default()
            })],
        )?;
        assert!(
            self.topic(name).is_none_or(|t| t.id != topic.id),
            "a removed topic is gone from the registry"
        );
        tracing::info!(topic = name, id = %topic.id, "topic deleted");
        Ok(topic.id)
    }

    /// Grow a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), StateError> {
        if self.forwards_admin() {
            crate::controller_link::forward_create_partitions(self, name, count, validate_only)?;
            if validate_only {
                return Ok(());
            }
            return self.wait_applied(|b| {
                b.topic(name)
                    .filter(|t| t.partition_count() >= count)
                    .map(|_| ())
            });
        }
        let _admin = self.admin.lock();
        self.registry_caught_up();
        let topic = self.topic(name).ok_or_else(|| {
            StateError::kafka(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic '{name}' does not exist"),
            )
        })?;
        let current = topic.partition_count();
        if count <= current {
            return Err(StateError::kafka(
                ErrorCode::INVALID_PARTITIONS,
                format!(
                    "topic currently has {current} partitions, {count} would not be an increase"
                ),
            ));
        }
        if count > fjord_model::limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(StateError::kafka(
                ErrorCode::INVALID_PARTITIONS,
                "too many partitions",
            ));
        }
        let (epoch, records) =
            match self.with_controller(|c| c.create_partitions(name, count, &[], validate_only)) {
                Some((epoch, result)) => (Some(epoch), result.map_err(controller_error)?.records),
                None if self.config.kraft.is_cluster() => {
                    return Err(StateError::kafka(
                        ErrorCode::NOT_CONTROLLER,
                        "this node is no longer the active controller",
                    ))
                }
                None => (
                    None,
                    cm::topic_records(
                        self.config.node_id,
                        name,
                        topic.id,
                        current..count,
                        &BTreeMap::new(),
                        false,
                    ),
                ),
            };
        if validate_only {
            return Ok(());
        }
        self.propose_at(epoch, records)?;
        assert_eq!(topic.partition_count(), count, "new partitions are applied");
        tracing::info!(topic = name, from = current, to = count, "partitions added");
        Ok(())
    }

    /// Replace (`incremental == false`) or patch a topic's config overrides.
    /// `changes`: name → Some(value) to set, None to delete (revert to default).
    pub fn alter_topic_config(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), StateError> {
        if self.forwards_admin() {
            return crate::controller_link::forward_alter_topic_config(
                self,
                name,
                changes,
                incremental,
                validate_only,
            );
        }
        let _admin = self.admin.lock();
        self.registry_caught_up();
        let topic = self.topic(name).ok_or_else(|| {
            StateError::kafka(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic '{name}' does not exist"),
            )
        })?;
        let mut overrides = if incremental {
            topic.overrides.read().clone()
        } else {
            BTreeMap::new()
        };
        for (k, v) in changes {
            match v {
                Some(v) => {
                    overrides.insert(k.clone(), v.clone());
                }
                None => {
                    overrides.remove(k);
                }
            }
        }
        self.settings_with(&overrides)?;
        if validate_only {
            return Ok(());
        }
        let old = topic.overrides.read().clone();
        let mut records =
            cm::config_diff(&ConfigResource::Topic(name.to_string()), &old, &overrides);
        if records.is_empty() {
            return Ok(());
        }
        records.extend(cm::clear_elr_records(&self.image(), &records));
        let epoch = self.admin_epoch()?;
        self.propose_in_epoch(epoch, records)
    }

    /// A preferred-leader election for one partition (ElectLeaders), run
    /// by the active controller: Ok once the new leader is committed;
    /// ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE or
    /// NOT_CONTROLLER otherwise.
    pub fn elect_preferred_leader(&self, topic: &str, partition: i32) -> Result<(), StateError> {
        let results = self
            .as_active_controller(|c, _| {
                Ok(c.elect_preferred_leaders(&[(topic.to_string(), partition)]))
            })
            .map_err(|(code, message)| StateError::kafka(code, message))?;
        match results.into_iter().next() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(controller_error(e)),
            None => Err(StateError::kafka(
                ErrorCode::UNKNOWN_SERVER_ERROR,
                "no answer for the partition",
            )),
        }
    }

    /// A partition's entry: its log if this node hosts it (is one of its
    /// replicas), else a log that is
    /// not there ([`Log::absent`]: no directory, no open file; every
    /// produce and fetch gets NOT_LEADER_OR_FOLLOWER, as on Kafka). A
    /// directory found at start is the partition's data; other than that,
    /// with `fresh` (created while the broker runs) a directory left by a
    /// deleted topic of the same name is removed first, so old data never
    /// leaks in.
    fn open_partition(
        &self,
        topic: &str,
        topic_id: Uuid,
        p: i32,
        reg: &PartitionRegistration,
        settings: &TopicSettings,
        fresh: bool,
    ) -> Result<Arc<Partition>, StateError> {
        let dir = partition_dir(&self.config.data_dir, topic, p);
        let absent = || {
            Arc::new(Partition::new(
                PartitionIndex(p),
                Log::absent(&self.storage, &dir, settings.log_config()),
                self.config.node_id,
                replica_state_of(reg),
            ))
        };
        if !reg.replicas.contains(&self.config.node_id.0) {
            return Ok(absent());
        }
        let mut exists = dir.exists();
        // A directory of another topic id is not this partition's data (see
        // `remove_partition_dir`).
        let foreign = exists && read_partition_topic_id(&dir).is_some_and(|id| id != topic_id);
        let (replaying, found) = match self.found_at_start.lock().as_mut() {
            Some(f) => (true, !foreign && f.remove(&format!("{topic}-{p}"))),
            None => (false, false),
        };
        if replaying && foreign {
            // That directory belongs to a later topic of this name (created
            // again after this one was deleted). This one is deleted further
            // on in the replay; until then it has no copy.
            return Ok(absent());
        }
        if fresh && !found && exists {
            fjord_storage::delete_log_dir(&dir)?;
            exists = false;
        }
        let (log, report) = Log::open(&self.storage, &dir, settings.log_config(), now_ms())?;
        if !exists {
            // Made durable by the log's first sync round, before any data in it is: a
            // new partition costs no fsync (two per partition made creating 1,000 of
            // them take seconds). A crash before that leaves the directory without its
            // id, which the next start treats as an older directory: this topic (the
            // only one with data there) claims it, and the caught-up image writes it.
            log.write_unsynced_file(
                PARTITION_METADATA_FILE,
                partition_metadata_text(topic_id).as_bytes(),
            )?;
        }
        if !report.clean && report.log_end_offset.0 > 0 {
            tracing::info!(%topic, partition = p, ?report, "recovered partition");
        }
        Ok(Arc::new(Partition::new(
            PartitionIndex(p),
            log,
            self.config.node_id,
            replica_state_of(reg),
        )))
    }

    /// Broker defaults with `overrides` (topic config names) applied; unknown
    /// names and invalid values are INVALID_CONFIG.
    fn settings_with(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicSettings, StateError> {
        let mut settings = self.topic_defaults();
        for (k, v) in overrides {
            match settings.set(k, v) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(StateError::kafka(
                        ErrorCode::INVALID_CONFIG,
                        format!("Unknown topic config name: {k}"),
                    ))
                }
                Err(e) => return Err(StateError::kafka(ErrorCode::INVALID_CONFIG, e.to_string())),
            }
        }
        Ok(settings)
    }

    /// Defaults for topic settings: static config plus dynamic broker configs.
    pub fn topic_defaults(&self) -> TopicSettings {
        self.dynamic.read().1.clone()
    }

    /// The dynamic broker configs in force.
    pub fn dynamic_configs(&self) -> DynamicBrokerConfigs {
        self.dynamic.read().0.clone()
    }

    /// `transaction.partition.verification.enable` in force (dynamic, else
    /// static): whether a partition leader verifies transactional batches
    /// with the transaction coordinator (KIP-890 part 1).
    pub fn transaction_verification(&self) -> bool {
        self.dynamic.read().0.flag(
            crate::config::TRANSACTION_PARTITION_VERIFICATION,
            self.config.transaction_partition_verification,
        )
    }

    /// Change the dynamic broker configs: `change` maps the current ones to
    /// the new ones (under the admin lock, so concurrent changes do not
    /// lose each other). The result is validated, persisted, and applied to
    /// every topic as its new defaults (its own overrides still win).
    pub fn alter_dynamic_configs(
        &self,
        change: impl FnOnce(&DynamicBrokerConfigs) -> Result<DynamicBrokerConfigs, StateError>,
        validate_only: bool,
    ) -> Result<(), StateError> {
        let _admin = self.admin.lock();
        let old = self.dynamic.read().0.clone();
        let new = change(&old)?;
        new.topic_defaults(&self.config)
            .map_err(|e| StateError::kafka(ErrorCode::INVALID_REQUEST, e.to_string()))?;
        new.connection_limits(&self.config)
            .map_err(|e| StateError::kafka(ErrorCode::INVALID_REQUEST, e.to_string()))?;
        let node = self.config.node_id;
        let mut records = cm::config_diff(
            &ConfigResource::Broker(Some(node)),
            &old.broker,
            &new.broker,
        );
        records.extend(cm::config_diff(
            &ConfigResource::Broker(None),
            &old.cluster_default,
            &new.cluster_default,
        ));
        // Also for validate_only, as Kafka's controller checks the records
        // it would write either way.
        if let Some(message) = cm::elr_min_isr_refusal(&self.image(), &records) {
            return Err(StateError::kafka(ErrorCode::INVALID_CONFIG, message));
        }
        if validate_only || records.is_empty() {
            return Ok(());
        }
        records.extend(cm::clear_elr_records(&self.image(), &records));
        // The active controller binds them to its epoch; another cluster
        // node's proposal is forwarded to the quorum leader.
        self.propose_at(self.controller_epoch(), records)
    }

    /// Hand out a new producer id. Ids come in blocks; a new block's end is
    /// committed to the metadata log (a ProducerIdsRecord) before any id of
    /// it is handed out, so ids never repeat across restarts.
    pub fn next_producer_id(&self) -> Result<ProducerId, StateError> {
        let _admin = self.admin.lock();
        let id = self.producer_id_next.load(Ordering::SeqCst);
        let mut id = id;
        if id >= self.producer_id_block_end.load(Ordering::SeqCst) {
            // AllocateProducerIds through the controller's logic: the block
            // starts where the committed ones end.
            let node = self.config.node_id;
            let epoch = self.broker_epoch.load(Ordering::SeqCst);
            let (decided_in, first, end, records) =
                match self.with_controller(|c| c.allocate_producer_ids(node, epoch)) {
                    Some((decided_in, result)) => {
                        let result = result.map_err(controller_error)?;
                        let b = result.response;
                        (Some(decided_in), b.first, b.first + b.size, result.records)
                    }
                    // AllocateProducerIds to the active controller, which
                    // commits the block before it answers.
                    None if self.config.kraft.is_cluster() => {
                        let (first, size) = crate::controller_link::allocate_producer_ids(self)
                            .map_err(|(code, message)| StateError::kafka(code, message))?;
                        (None, first, first + size, Vec::new())
                    }
                    None => (
                        None,
                        id,
                        id + PRODUCER_ID_BLOCK,
                        vec![MetadataRecord::ProducerIds(ProducerIdsRecord {
                            broker_id: node.0,
                            broker_epoch: 0,
                            next_producer_id: id + PRODUCER_ID_BLOCK,
                            ..Default::default()
                        })],
                    ),
                };
            assert!(
                first >= id || self.config.kraft.is_cluster(),
                "a new block never hands out an old id"
            );
            if !records.is_empty() {
                self.propose_at(decided_in, records)?;
            }
            id = first;
            self.producer_id_block_end.store(end, Ordering::SeqCst);
        }
        assert!(
            id < self.producer_id_block_end.load(Ordering::SeqCst),
            "an id outside the committed block"
        );
        self.producer_id_next.store(id + 1, Ordering::SeqCst);
        Ok(ProducerId(id))
    }

    /// Starts the log cleaner's threads (`log.cleaner.*`) over every
    /// partition log of this broker.
    fn start_cleaner(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let source: fjord_storage::LogSource = Box::new(move || {
            let Some(b) = me.upgrade() else {
                return Vec::new();
            };
            b.topics()
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .read()
                        .iter()
                        .map(|p| Arc::clone(&p.log))
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        let cleaner = fjord_storage::LogCleaner::start(self.config.cleaner.clone(), source);
        *self.cleaner.lock() = Some(cleaner);
    }

    /// The log cleaner's totals (rounds, bytes before and after), if it runs.
    pub fn cleaner_totals(&self) -> Option<fjord_storage::CleanerTotals> {
        self.cleaner.lock().as_ref().map(|c| c.totals())
    }

    /// Runs a cleaner pass now (tests; a config change).
    pub fn wake_cleaner(&self) {
        if let Some(c) = self.cleaner.lock().as_ref() {
            c.wake();
        }
    }

    /// Apply retention to every partition (called from a timer).
    pub fn apply_retention(&self) {
        let now = now_ms();
        for t in self.topics() {
            for p in t.partitions.read().iter().filter(|p| !p.log.is_closed()) {
                if let Err(e) = p.log.apply_retention(now) {
                    tracing::warn!(topic = %t.name, partition = p.index.0, "retention failed: {e}");
                }
            }
        }
    }

    /// Persist every partition's recovery point (called from a 1-second timer),
    /// so that recovery after a crash scans only the last second of appends,
    /// and replicated partitions' high watermarks (every 5 s when they moved).
    pub fn checkpoint(&self) {
        let now = now_ms();
        for t in self.topics() {
            for p in t.partitions.read().iter().filter(|p| !p.log.is_closed()) {
                if let Err(e) = p.log.checkpoint() {
                    tracing::warn!(topic = %t.name, partition = p.index.0, "checkpoint failed: {e}");
                }
                if let Err(e) = p.save_high_watermark(now, false) {
                    tracing::warn!(topic = %t.name, partition = p.index.0, "saving the high watermark failed: {e}");
                }
            }
        }
    }

    /// Flush everything and write clean-shutdown markers. A group coordinator
    /// load in progress finishes first; none starts afterwards.
    pub fn close(&self) {
        // A cluster broker asks the controller to move its leaderships
        // away first (controlled shutdown), while the quorum still runs.
        self.stopping.store(true, Ordering::SeqCst);
        let heartbeat = self.heartbeat.lock().take();
        let cluster_broker = heartbeat.is_some();
        if let Some(h) = heartbeat {
            let _ = h.join();
        }
        // A cleaning round in progress finishes first.
        drop(self.cleaner.lock().take());
        self.groups.close();
        self.txns.close();
        if let Some(q) = self.quorum.get() {
            q.close();
        }
        let now = now_ms();
        let mut clean = true;
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                if let Err(e) = p.save_high_watermark(now, true) {
                    tracing::warn!(topic = %t.name, partition = p.index.0, "saving the high watermark failed: {e}");
                }
                if let Err(e) = p.log.close() {
                    tracing::error!(topic = %t.name, partition = p.index.0, "close failed: {e}");
                    clean = false;
                }
            }
        }
        // A registered cluster broker whose logs all closed leaves its
        // clean-shutdown proof for its next registration (KIP-966).
        let epoch = self.broker_epoch.load(Ordering::SeqCst);
        if cluster_broker && clean && epoch >= 0 {
            if let Err(e) = cm::write_clean_shutdown(&self.config.data_dir, epoch) {
                tracing::warn!("writing the clean-shutdown file: {e}");
            }
        }
    }
}

fn controller_error(e: ControllerError) -> StateError {
    StateError::kafka(e.code, e.message)
}

fn meta_err(path: &Path, e: std::io::Error) -> StateError {
    StateError::Metadata {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn meta_err_str(path: &Path, e: fjord_metadata::MetadataError) -> StateError {
    if let fjord_metadata::MetadataError::NoLeader(_) = e {
        // Retriable for clients (the admin client refreshes and tries again), as Kafka
        // answers while its controller is unknown or moving.
        return StateError::kafka(ErrorCode::NOT_CONTROLLER, e.to_string());
    }
    StateError::Metadata {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Topics the broker keeps for itself (clients see `is_internal`, and may not delete them).
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::groups::OFFSETS_TOPIC || name == crate::txns::TXN_STATE_TOPIC
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The names of the directories in `data_dir` that look like partition
/// directories (`<topic>-<partition>`), the metadata log's excepted.
/// Kafka's `partition.metadata` in a partition directory: the topic id the
/// copy belongs to (`version: 0` then `topic_id: <base64>`).
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// The topic id in `dir`'s `partition.metadata`; `None` without a readable one.
fn read_partition_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    let id = lines.next()?.trim().strip_prefix("topic_id:")?.trim();
    cm::parse_kafka_uuid(id)
}

/// The text of a `partition.metadata` file (Kafka's: version 0, the topic id in Kafka's
/// base64 form).
fn partition_metadata_text(topic_id: Uuid) -> String {
    format!(
        "version: 0\ntopic_id: {}\n",
        cm::kafka_uuid_string(topic_id)
    )
}

/// Writes `dir`'s `partition.metadata` (written to a temporary file, synced
/// and renamed, so a crash leaves the old file, none, or the whole new one).
fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), StateError> {
    use std::io::Write;
    let path = dir.join(PARTITION_METADATA_FILE);
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(partition_metadata_text(topic_id).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| meta_err(&path, e))
}

fn partition_dirs_in(data_dir: &Path) -> std::collections::HashSet<String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Default::default();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n != fjord_metadata::METADATA_LOG_DIR
                && !fjord_storage::is_deleted_dir_name(n)
                && n.rsplit_once('-')
                    .is_some_and(|(t, p)| !t.is_empty() && p.parse::<u32>().is_ok())
        })
        .collect()
}

/// Kafka cluster ids are 22-character base64 UUIDs; ours are the same shape.
fn short_id(u: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let v = u.as_u128();
    (0..22)
        .map(|i| ALPHABET[((v >> (i * 6)) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod replica_facts_tests {
    use super::*;
    use fjord_partition::{Acks, PartitionError};
    use fjord_protocol::metadata_records::PartitionChangeRecord;

    /// Only replicas have a log: a partition placed on other nodes has no
    /// directory and answers NOT_LEADER_OR_FOLLOWER; becoming a replica
    /// creates its log, ceasing to be one deletes it.
    #[test]
    fn only_replicas_have_a_log() {
        use fjord_protocol::metadata_records::{PartitionRecord, TopicRecord};
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        let me = broker.config.node_id.0;
        let other = me + 1;
        let id = Uuid::new_v4();
        let placed = |p: i32, replicas: Vec<i32>| {
            MetadataRecord::Partition(PartitionRecord {
                partition_id: p,
                topic_id: id,
                isr: replicas.clone(),
                leader: replicas[0],
                replicas,
                ..Default::default()
            })
        };
        broker
            .propose(vec![
                MetadataRecord::Topic(TopicRecord {
                    name: "u".into(),
                    topic_id: id,
                    ..Default::default()
                }),
                placed(0, vec![other]),
                placed(1, vec![me]),
            ])
            .unwrap();
        let topic = broker.topic("u").unwrap();
        let elsewhere = topic.partition(0).unwrap();
        assert!(elsewhere.log.is_closed());
        assert!(!partition_dir(dir.path(), "u", 0).exists());
        assert!(partition_dir(dir.path(), "u", 1).exists());
        let mut builder = fjord_records::BatchBuilder::new(fjord_records::Compression::None);
        builder.push(now_ms(), None, Some(b"v".as_slice()), &[]);
        let mut batch = builder.build(0);
        assert!(matches!(
            elsewhere.append(&mut batch, Acks::Leader, now_ms()),
            Err(PartitionError::NotLeader { .. })
        ));
        // Added as a replica: the log is made then.
        let change = |replicas: Vec<i32>| {
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: id,
                partition_id: 0,
                leader: other,
                isr: Some(replicas.clone()),
                replicas: Some(replicas),
                ..Default::default()
            })
        };
        broker.propose(vec![change(vec![other, me])]).unwrap();
        let replica = topic.partition(0).unwrap();
        assert!(!replica.log.is_closed());
        assert!(partition_dir(dir.path(), "u", 0).exists());
        // Removed again: the copy goes.
        broker.propose(vec![change(vec![other])]).unwrap();
        assert!(topic.partition(0).unwrap().log.is_closed());
        assert!(!partition_dir(dir.path(), "u", 0).exists());
        broker.close();
        // A restart does not bring it back.
        drop(topic);
        drop(elsewhere);
        drop(replica);
        drop(broker);
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        assert!(broker
            .topic("u")
            .unwrap()
            .partition(0)
            .unwrap()
            .log
            .is_closed());
        assert!(!partition_dir(dir.path(), "u", 0).exists());
        assert!(partition_dir(dir.path(), "u", 1).exists());
        broker.close();
    }

    /// A single node on `dir` with default settings.
    fn open_single_node(dir: &Path) -> Arc<Broker> {
        Broker::open(BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap()
    }

    /// Appends `n` one-record batches to `part` as its leader.
    fn append_records(part: &Arc<Partition>, n: u8) {
        for i in 0..n {
            let mut builder = fjord_records::BatchBuilder::new(fjord_records::Compression::None);
            builder.push(now_ms(), None, Some([i].as_slice()), &[]);
            part.append(&mut builder.build(0), Acks::Leader, now_ms())
                .unwrap();
        }
    }

    /// A topic deleted and created again under the same name keeps the new
    /// topic's records across a restart: replaying the deletion at start
    /// must not delete the directory the later creation owns (it did, and
    /// every acknowledged record of the re-created topic was lost). A
    /// directory no partition claims once the replay is over is moved aside.
    #[test]
    fn a_topic_created_again_keeps_its_records_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || open_single_node(dir.path());
        let broker = open();
        broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        broker.delete_topic("t").unwrap();
        let topic = broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        let part = topic.partition(0).unwrap();
        append_records(&part, 3);
        assert_eq!(part.log.log_end_offset(), fjord_model::Offset(3));
        broker.close();
        drop((part, topic, broker));
        // A copy of a partition that no longer exists, left by a crash.
        std::fs::create_dir(partition_dir(dir.path(), "gone", 0)).unwrap();
        let broker = open();
        let part = broker.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(
            part.log.log_end_offset(),
            fjord_model::Offset(3),
            "the records are back"
        );
        assert!(
            !partition_dir(dir.path(), "gone", 0).exists(),
            "a stray is moved aside"
        );
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("gone-0.") && n.ends_with("-stray"))
            .collect();
        assert_eq!(aside.len(), 1, "kept aside as Kafka keeps stray logs");
        // Deleting it while running still deletes its directory.
        drop(part);
        broker.delete_topic("t").unwrap();
        assert!(!partition_dir(dir.path(), "t", 0).exists());
        broker.close();
    }

    /// A copy of a deleted topic that this node still holds (it missed the
    /// deletion, or kept it across one) never becomes the data of a topic
    /// created again under the same name: the directory's topic id
    /// (`partition.metadata`, Kafka's) is the old topic's, so replaying the
    /// deletion deletes it and the new topic starts empty.
    #[test]
    fn an_old_topics_copy_never_becomes_a_new_topics_data() {
        let dir = tempfile::tempdir().unwrap();
        let open = || open_single_node(dir.path());
        let copy_dir = |from: &Path, to: &Path| {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        };
        let broker = open();
        let old = broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        append_records(&old.partition(0).unwrap(), 3);
        let old_id = old.id;
        broker.close();
        drop((old, broker));
        let t0 = partition_dir(dir.path(), "t", 0);
        assert_eq!(read_partition_topic_id(&t0), Some(old_id));
        let saved = dir.path().join("saved");
        copy_dir(&t0, &saved);
        let broker = open();
        broker.delete_topic("t").unwrap();
        let new = broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        let new_id = new.id;
        append_records(&new.partition(0).unwrap(), 1);
        broker.close();
        drop((new, broker));
        // As if this node had missed the deletion: the old topic's copy.
        std::fs::remove_dir_all(&t0).unwrap();
        copy_dir(&saved, &t0);
        std::fs::remove_dir_all(&saved).unwrap();
        let broker = open();
        let part = broker.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(
            part.log.log_end_offset(),
            fjord_model::Offset(0),
            "the old topic's records are not the new topic's"
        );
        assert_eq!(read_partition_topic_id(&t0), Some(new_id));
        drop(part);
        broker.close();
    }

    /// A new partition's `partition.metadata` is written without an fsync
    /// (its log's first flush round makes it durable): a crash before that
    /// can leave it empty. The next start claims the directory for the
    /// topic of its name as it does one written before topic ids, and the
    /// caught-up image writes the id again.
    #[test]
    fn a_partition_whose_topic_id_file_a_crash_emptied_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_single_node(dir.path());
        let topic = broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        let id = topic.id;
        let t0 = partition_dir(dir.path(), "t", 0);
        assert_eq!(
            read_partition_topic_id(&t0),
            Some(id),
            "written at creation"
        );
        append_records(&topic.partition(0).unwrap(), 2);
        broker.close();
        drop((topic, broker));
        std::fs::write(t0.join(PARTITION_METADATA_FILE), b"").unwrap();
        let broker = open_single_node(dir.path());
        let part = broker.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(part.log.log_end_offset(), fjord_model::Offset(2));
        assert_eq!(read_partition_topic_id(&t0), Some(id), "written again");
        drop(part);
        broker.close();
    }

    /// CreateTopics is answered once its records are committed, while the
    /// registry still creates the logs (here held up by a reader of the
    /// registry); the topic is in the registry only with its logs, and an
    /// admin operation that reads the registry waits for it.
    #[test]
    fn create_topics_is_answered_at_the_commit_and_the_logs_follow() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_single_node(dir.path());
        let held = broker.topics.read();
        let (tx, rx) = std::sync::mpsc::channel();
        let b = broker.clone();
        std::thread::spawn(move || {
            let answer = b.create_topic_answered_at_commit("t", 3, -1, &[], BTreeMap::new(), false);
            tx.send(answer.map(|t| (t.id, t.partition_count())))
                .unwrap();
        });
        let (id, listed) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("answered while the registry is held up")
            .unwrap();
        assert_eq!(listed, 0, "the answer describes the committed topic");
        let image = broker.image();
        let committed = image.topics().get("t").expect("committed");
        assert_eq!((committed.id, committed.partition_count()), (id, 3));
        // Created again meanwhile: refused from the image.
        let again = broker.create_topic_answered_at_commit("t", 1, -1, &[], BTreeMap::new(), false);
        assert!(
            matches!(&again, Err(StateError::Kafka { code, .. }) if *code == ErrorCode::TOPIC_ALREADY_EXISTS),
            "{:?}",
            again.map(|t| t.id)
        );
        let b = broker.clone();
        let deleting = std::thread::spawn(move || b.delete_topic("t"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!deleting.is_finished(), "waits for the registry");
        drop(held);
        assert_eq!(deleting.join().unwrap().unwrap(), id);
        assert!(broker.topic("t").is_none());
        assert!(!partition_dir(dir.path(), "t", 0).exists());
        // Created again: the registry has it with its logs once applied.
        let t = broker
            .create_topic_answered_at_commit("t", 2, -1, &[], BTreeMap::new(), false)
            .unwrap();
        let applied = broker.committed_topic("t").unwrap();
        assert_eq!((applied.id, applied.partition_count()), (t.id, 2));
        append_records(&applied.partition(1).unwrap(), 1);
        broker.close();
    }

    /// A data directory formatted for another node.id is refused, on a
    /// single node too (as Kafka refuses it): with another id every
    /// partition would be placed elsewhere and its copy moved aside.
    #[test]
    fn a_single_node_refuses_another_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let me = config.node_id;
        Broker::open(config.clone()).unwrap().close();
        let other = BrokerConfig {
            node_id: NodeId(me.0 + 1),
            ..config
        };
        let err = Broker::open(other).err().expect("refused");
        assert!(err.to_string().contains("node.id"), "{err}");
    }

    /// A PartitionChangeRecord moves the partition's leader, epoch, replicas
    /// and ISR; a node that no longer leads refuses appends (NOT_LEADER).
    #[test]
    fn replica_facts_follow_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        let me = broker.config.node_id;
        let topic = broker.create_topic("t", 2, BTreeMap::new(), false).unwrap();
        let p0 = topic.partition(0).unwrap();
        assert_eq!(p0.replica_state(), ReplicaState::single_node(me));
        broker
            .propose(vec![MetadataRecord::PartitionChange(
                PartitionChangeRecord {
                    topic_id: topic.id,
                    partition_id: 0,
                    leader: me.0 + 1,
                    replicas: Some(vec![me.0 + 1, me.0]),
                    isr: Some(vec![me.0 + 1, me.0]),
                    ..Default::default()
                },
            )])
            .unwrap();
        let now = p0.replica_state();
        assert_eq!(now.leader, NodeId(me.0 + 1));
        assert_eq!(now.leader_epoch, LeaderEpoch(1));
        assert_eq!(now.replicas, vec![NodeId(me.0 + 1), me]);
        assert_eq!(now.isr, vec![NodeId(me.0 + 1), me]);
        let image_reg = broker.image().topics().get("t").unwrap().partitions[&0].clone();
        assert_eq!(replica_state_of(&image_reg), now);
        let mut builder = fjord_records::BatchBuilder::new(fjord_records::Compression::None);
        builder.push(now_ms(), None, Some(b"v".as_slice()), &[]);
        let mut batch = builder.build(0);
        assert!(matches!(
            p0.append(&mut batch, Acks::Leader, now_ms()),
            Err(PartitionError::NotLeader { .. })
        ));
        // The other partition is untouched.
        assert_eq!(
            topic.partition(1).unwrap().replica_state(),
            ReplicaState::single_node(me)
        );
        broker.close();
    }

    /// A Produce to a partition this node does not lead is answered
    /// NOT_LEADER_OR_FOLLOWER with the leader and its endpoint from v10
    /// (KIP-951), without them before.
    #[test]
    fn produce_names_the_current_leader() {
        use bytes::{Buf, BytesMut};
        use fjord_protocol::kafka_protocol::messages::produce_request::{
            PartitionProduceData, TopicProduceData,
        };
        use fjord_protocol::kafka_protocol::messages::{
            ProduceRequest, ProduceResponse, TopicName,
        };
        use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
        use fjord_protocol::metadata_records::register_broker_record::BrokerEndpoint;
        use fjord_protocol::metadata_records::RegisterBrokerRecord;
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        let me = broker.config.node_id;
        let other = me.0 + 1;
        let topic = broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        broker
            .propose(vec![
                MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                    broker_id: other,
                    incarnation_id: Uuid::new_v4(),
                    broker_epoch: 100,
                    end_points: vec![BrokerEndpoint {
                        name: "PLAINTEXT".into(),
                        host: "other-host".into(),
                        port: 9999,
                        ..Default::default()
                    }],
                    fenced: false,
                    ..Default::default()
                }),
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    topic_id: topic.id,
                    partition_id: 0,
                    leader: other,
                    replicas: Some(vec![other, me.0]),
                    isr: Some(vec![other, me.0]),
                    ..Default::default()
                }),
            ])
            .unwrap();
        let mut builder = fjord_records::BatchBuilder::new(fjord_records::Compression::None);
        builder.push(now_ms(), None, Some(b"v".as_slice()), &[]);
        let batch = bytes::Bytes::from(builder.build(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for version in [9i16, 10] {
            let req = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.clone()))])]);
            let mut body = BytesMut::new();
            req.encode(&mut body, version).unwrap();
            let header = fjord_protocol::RequestHeader {
                api_key: 0,
                api_version: version,
                correlation_id: 1,
                client_id: None,
            };
            let pending = crate::handlers::dispatch(
                &broker,
                header,
                fjord_protocol::Reader::new(body.freeze()),
            )
            .unwrap();
            let mut frame = rt
                .block_on(pending.resolve())
                .unwrap()
                .unwrap()
                .to_bytes()
                .unwrap();
            frame.advance(8);
            if version >= 9 {
                frame.advance(1); // the flexible header's tagged fields
            }
            let resp = ProduceResponse::decode(&mut frame, version).unwrap();
            let p = &resp.responses[0].partition_responses[0];
            assert_eq!(p.error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
            if version >= 10 {
                assert_eq!(p.current_leader.leader_id.0, other);
                assert_eq!(p.current_leader.leader_epoch, 1);
                assert_eq!(resp.node_endpoints.len(), 1);
                assert_eq!(resp.node_endpoints[0].node_id.0, other);
                assert_eq!(resp.node_endpoints[0].host.as_str(), "other-host");
                assert_eq!(resp.node_endpoints[0].port, 9999);
            } else {
                assert_eq!(p.current_leader.leader_id.0, -1);
                assert!(resp.node_endpoints.is_empty());
            }
        }
        broker.close();
    }
}
