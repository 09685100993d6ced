//! The broker's state: topics, their partitions (each a
//! [`fjord_partition::Partition`] over its log), and the
//! metadata file that remembers topic ids, partition counts and config
//! overrides across restarts.
//!
//! Invariant: a topic in `topics` has every partition's log open; the metadata
//! file is rewritten (atomically: write, fsync, rename, fsync dir) before a
//! create/delete/alter is acknowledged.
//!
//! Start-up: [`Broker::open_deferred`] (what `fjord serve` uses) opens the
//! topics and returns; the group coordinator comes up in the background (see
//! [`crate::groups::GroupsSlot`]), so a node serves Produce, Fetch and
//! Metadata while `__consumer_offsets` is created or replayed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use fjord_model::{ErrorCode, NodeId, PartitionIndex, ProducerId};
use fjord_partition::ReplicaState;
use fjord_storage::{Log, Storage};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

#[derive(Serialize, Deserialize, Default)]
struct MetadataFile {
    cluster_id: String,
    producer_id_next: i64,
    topics: Vec<TopicRecord>,
}

#[derive(Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    overrides: BTreeMap<String, String>,
}

const METADATA_FILE: &str = "fjord-metadata.json";
/// Producer ids are handed out in blocks; the end of the block is persisted first.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// This node's storage engine (flush threads, file-handle cache): every
    /// partition log is opened through it; stops with the last reference.
    pub storage: Storage,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation/deletion/alteration and metadata writes.
    admin: Mutex<()>,
    producer_id_next: AtomicI64,
    producer_id_block_end: AtomicI64,
    /// Consumer groups: loaded at the end of `open`, or in the background
    /// after `open_deferred` (empty until then).
    pub groups: crate::groups::GroupsSlot,
    /// Dynamic broker configs and the topic defaults they give (changed
    /// only under `admin`).
    dynamic: RwLock<(DynamicBrokerConfigs, TopicSettings)>,
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

/// A partition of this node, which (single node) leads it and is its only replica.
fn single_node_partition(node: NodeId, index: PartitionIndex, log: Arc<Log>) -> Arc<Partition> {
    Arc::new(Partition::new(
        index,
        log,
        node,
        ReplicaState::single_node(node),
    ))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Broker {
    /// Open the data directory: read the metadata file, open every partition
    /// log, and load the group coordinator (creating `__consumer_offsets` if
    /// needed) before returning.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, StateError> {
        let broker = Broker::open_topics(config)?;
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
        let broker = Broker::open_topics(config)?;
        if broker.topic(crate::groups::OFFSETS_TOPIC).is_some() {
            broker.groups.start_loading();
        }
        Ok(broker)
    }

    fn open_topics(config: BrokerConfig) -> Result<Arc<Broker>, StateError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| meta_err(&dir, e))?;
        let path = dir.join(METADATA_FILE);
        let mut new_node = false;
        let file: MetadataFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Metadata {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                new_node = true;
                MetadataFile {
                    cluster_id: config
                        .cluster_id
                        .clone()
                        .unwrap_or_else(|| short_id(Uuid::new_v4())),
                    producer_id_next: 1000,
                    topics: Vec::new(),
                }
            }
            Err(e) => return Err(meta_err(&path, e)),
        };
        let dynamic = DynamicBrokerConfigs::load(&dir).map_err(|e| StateError::Metadata {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let topic_defaults = dynamic
            .topic_defaults(&config)
            .map_err(|e| StateError::Metadata {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        let broker = Arc::new_cyclic(|me| Broker {
            dynamic: RwLock::new((dynamic, topic_defaults)),
            cluster_id: file.cluster_id.clone(),
            storage: Storage::default(),
            topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            producer_id_next: AtomicI64::new(file.producer_id_next),
            producer_id_block_end: AtomicI64::new(file.producer_id_next),
            groups: crate::groups::GroupsSlot::new(me.clone()),
            config,
        });
        let now = now_ms();
        for t in file.topics {
            let mut settings = broker.topic_defaults();
            for (k, v) in &t.overrides {
                // Values were validated when stored; a bad one now means a hand edit.
                if let Err(e) = settings.set(k, v) {
                    tracing::warn!(topic = %t.name, "ignoring stored config: {e}");
                }
            }
            let mut parts = Vec::new();
            for p in 0..t.partitions {
                let (log, report) = Log::open(
                    &broker.storage,
                    &partition_dir(&broker.config.data_dir, &t.name, p),
                    settings.log_config(),
                    now,
                )?;
                if !report.clean {
                    tracing::info!(topic = %t.name, partition = p, ?report, "recovered partition");
                }
                parts.push(single_node_partition(
                    broker.config.node_id,
                    PartitionIndex(p),
                    log,
                ));
            }
            let topic = Topic {
                name: t.name.clone(),
                id: t.id,
                overrides: RwLock::new(t.overrides),
                settings: RwLock::new(settings),
                partitions: RwLock::new(parts),
            };
            broker.topics.write().insert(t.name, Arc::new(topic));
        }
        // An existing file already says all of this (the producer id block
        // is persisted when the first id is handed out); a new node writes it
        // now, so that its cluster id is fixed.
        if new_node {
            broker.persist()?;
        }
        Ok(broker)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
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
        if is_internal_topic(name) {
            if self.topic(name).is_some() {
                return Err(StateError::kafka(
                    ErrorCode::TOPIC_ALREADY_EXISTS,
                    format!("topic '{name}' already exists"),
                ));
            }
            self.groups.start_loading();
            return Err(StateError::kafka(
                ErrorCode::LEADER_NOT_AVAILABLE,
                format!("internal topic '{name}' is being created by the broker"),
            ));
        }
        self.create_topic_unchecked(name, partitions, overrides, validate_only)
    }

    /// `create_topic` without the internal-topic check (for the broker's own topics).
    pub(crate) fn create_topic_unchecked(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, StateError> {
        use fjord_model::limits::PARTITIONS_PER_TOPIC_MAX;
        if !fjord_model::is_valid_topic_name(name) {
            return Err(StateError::kafka(
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                format!("invalid topic name '{name}'"),
            ));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(StateError::kafka(
                ErrorCode::INVALID_PARTITIONS,
                format!("partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let settings = self.settings_with(&overrides)?;
        let _admin = self.admin.lock();
        if self.topics.read().contains_key(name) {
            return Err(StateError::kafka(
                ErrorCode::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            ));
        }
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            overrides: RwLock::new(overrides),
            settings: RwLock::new(settings.clone()),
            partitions: RwLock::new(Vec::new()),
        });
        if validate_only {
            return Ok(topic);
        }
        let parts = (0..partitions)
            .map(|p| self.new_partition(name, p, &settings))
            .collect::<Result<Vec<_>, _>>()?;
        *topic.partitions.write() = parts;
        self.topics.write().insert(name.to_string(), topic.clone());
        self.persist_locked()?;
        Ok(topic)
    }

    pub fn delete_topic(&self, name: &str) -> Result<Uuid, StateError> {
        if is_internal_topic(name) {
            return Err(StateError::kafka(
                ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                format!("'{name}' is an internal topic and cannot be deleted"),
            ));
        }
        let _admin = self.admin.lock();
        let topic = self.topics.write().remove(name).ok_or_else(|| {
            StateError::kafka(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic '{name}' does not exist"),
            )
        })?;
        self.persist_locked()?;
        for p in topic.partitions.read().iter() {
            p.wake_waiters();
            let _ = p.log.close();
            fjord_storage::delete_log_dir(&partition_dir(&self.config.data_dir, name, p.index.0))?;
        }
        Ok(topic.id)
    }

    /// Grow a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), StateError> {
        let _admin = self.admin.lock();
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
        if validate_only {
            return Ok(());
        }
        let settings = topic.settings.read().clone();
        for p in current..count {
            let partition = self.new_partition(name, p, &settings)?;
            topic.partitions.write().push(partition);
        }
        self.persist_locked()
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
        let _admin = self.admin.lock();
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
        let settings = self.settings_with(&overrides)?;
        if validate_only {
            return Ok(());
        }
        *topic.overrides.write() = overrides;
        *topic.settings.write() = settings.clone();
        for p in topic.partitions.read().iter() {
            p.log.set_config(settings.log_config());
        }
        self.persist_locked()
    }

    /// Open an empty log for a new partition. A directory left by a deleted
    /// topic of the same name is removed first, so old data never leaks in.
    fn new_partition(
        &self,
        topic: &str,
        p: i32,
        settings: &TopicSettings,
    ) -> Result<Arc<Partition>, StateError> {
        let dir = partition_dir(&self.config.data_dir, topic, p);
        if dir.exists() {
            fjord_storage::delete_log_dir(&dir)?;
        }
        let (log, _) = Log::open(&self.storage, &dir, settings.log_config(), now_ms())?;
        Ok(single_node_partition(
            self.config.node_id,
            PartitionIndex(p),
            log,
        ))
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
        let new = change(&self.dynamic.read().0)?;
        let defaults = new
            .topic_defaults(&self.config)
            .map_err(|e| StateError::kafka(ErrorCode::INVALID_REQUEST, e.to_string()))?;
        if validate_only {
            return Ok(());
        }
        new.save(&self.config.data_dir)
            .map_err(|e| StateError::Metadata {
                path: self.config.data_dir.display().to_string(),
                reason: e.to_string(),
            })?;
        *self.dynamic.write() = (new, defaults);
        for topic in self.topics() {
            let overrides = topic.overrides.read().clone();
            match self.settings_with(&overrides) {
                Ok(settings) => {
                    for p in topic.partitions.read().iter() {
                        p.log.set_config(settings.log_config());
                    }
                    *topic.settings.write() = settings;
                }
                // Overrides were valid on their own; nothing relates two configs.
                Err(e) => tracing::warn!(topic = %topic.name, "keeping settings: {e}"),
            }
        }
        Ok(())
    }

    /// Hand out a new producer id (persisting block ends so ids never repeat across restarts).
    pub fn next_producer_id(&self) -> Result<ProducerId, StateError> {
        let _admin = self.admin.lock();
        let id = self.producer_id_next.fetch_add(1, Ordering::SeqCst);
        if id >= self.producer_id_block_end.load(Ordering::SeqCst) {
            self.producer_id_block_end
                .store(id + PRODUCER_ID_BLOCK, Ordering::SeqCst);
            self.persist_locked()?;
        }
        Ok(ProducerId(id))
    }

    /// Apply retention to every partition (called from a timer).
    pub fn apply_retention(&self) {
        let now = now_ms();
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                if let Err(e) = p.log.apply_retention(now) {
                    tracing::warn!(topic = %t.name, partition = p.index.0, "retention failed: {e}");
                }
            }
        }
    }

    /// Persist every partition's recovery point (called from a 1-second timer),
    /// so that recovery after a crash scans only the last second of appends.
    pub fn checkpoint(&self) {
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                if let Err(e) = p.log.checkpoint() {
                    tracing::warn!(topic = %t.name, partition = p.index.0, "checkpoint failed: {e}");
                }
            }
        }
    }

    /// Flush everything and write clean-shutdown markers. A group coordinator
    /// load in progress finishes first; none starts afterwards.
    pub fn close(&self) {
        self.groups.close();
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                if let Err(e) = p.log.close() {
                    tracing::error!(topic = %t.name, partition = p.index.0, "close failed: {e}");
                }
            }
        }
    }

    fn persist(&self) -> Result<(), StateError> {
        let _admin = self.admin.lock();
        self.persist_locked()
    }

    fn persist_locked(&self) -> Result<(), StateError> {
        let topics = self
            .topics
            .read()
            .values()
            .map(|t| TopicRecord {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partition_count(),
                overrides: t.overrides.read().clone(),
            })
            .collect();
        let file = MetadataFile {
            cluster_id: self.cluster_id.clone(),
            producer_id_next: self.producer_id_block_end.load(Ordering::SeqCst),
            topics,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| StateError::Metadata {
            path: METADATA_FILE.to_string(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.config.data_dir, METADATA_FILE, &bytes)
    }
}

fn meta_err(path: &Path, e: std::io::Error) -> StateError {
    StateError::Metadata {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Write `dir/name` so that a crash leaves either the old or the new file whole.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| meta_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| meta_err(&tmp, e))?;
    f.sync_all().map_err(|e| meta_err(&tmp, e))?;
    std::fs::rename(&tmp, &dst).map_err(|e| meta_err(&dst, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| meta_err(dir, e))
}

/// Topics the broker keeps for itself (clients see `is_internal`, and may not delete them).
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::groups::OFFSETS_TOPIC
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Kafka cluster ids are 22-character base64 UUIDs; ours are the same shape.
fn short_id(u: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let v = u.as_u128();
    (0..22)
        .map(|i| ALPHABET[((v >> (i * 6)) & 63) as usize] as char)
        .collect()
}
