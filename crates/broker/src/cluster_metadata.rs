//! The broker's side of the metadata log: what a new node bootstraps with,
//! how an old data directory (`fjord-metadata.json`,
//! `fjord-broker-configs.json`) becomes records once, `meta.properties`,
//! and the publisher that makes the topic registry follow each new image
//! (Kafka's `ReplicaManager.applyDelta`: open the logs of new partitions,
//! close and delete those of removed topics, apply config changes).
//!
//! The publisher runs on the metadata quorum's thread while the node loads,
//! then on a thread of its own behind the image (see [`BrokerPublisher`]),
//! so opening logs and fsync never run on the async runtime's worker
//! threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Weak;

use fjord_metadata::{
    ConfigResource, MetadataDelta, MetadataError, MetadataImage, MetadataPublisher,
};
use fjord_model::NodeId;
use fjord_protocol::metadata_records::register_broker_record::{BrokerEndpoint, BrokerFeature};
use fjord_protocol::metadata_records::{
    ClearElrRecord, ConfigRecord, FeatureLevelRecord, MetadataRecord, PartitionRecord,
    ProducerIdsRecord, RegisterBrokerRecord, TopicRecord,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::config::{BrokerConfig, DynamicBrokerConfigs};
use crate::state::{Broker, StateError};

/// The pre-metadata-log files (read once, for migration).
pub const LEGACY_METADATA_FILE: &str = "fjord-metadata.json";
pub const LEGACY_BROKER_CONFIGS_FILE: &str = crate::config::DYNAMIC_CONFIG_FILE;
/// Suffix given to a legacy file once its content is durable in the log.
pub const MIGRATED_SUFFIX: &str = ".migrated";
/// Kafka's per-log-directory identity file.
pub const META_PROPERTIES_FILE: &str = "meta.properties";
/// Highest `metadata.version` this node supports: Kafka 4.3.1's latest
/// production level, 4.3-IV0. Fjord writes every record at the version
/// Kafka writes at the finalized level (`MetadataRecord::version_at`); the
/// levels from 3.9-IV0 (21) up change only record versions (4.0-IV1: the
/// ELR fields of partition records; 4.3-IV0: `RegisterBrokerRecord` v4
/// with cordoned log directories, which Fjord brokers never report) and
/// request versions brokers use among themselves, which Fjord serves at
/// every level.
pub const METADATA_VERSION_MAX: i16 = 30;
/// The `metadata.version` a new node or cluster bootstraps with: the
/// highest, as Kafka 4.3.1's `kafka-storage format` finalizes by default.
pub const BOOTSTRAP_METADATA_VERSION: i16 = METADATA_VERSION_MAX;
/// Lowest `metadata.version` this broker supports (Kafka's 3.3-IV3: KRaft-only records).
pub const METADATA_VERSION_MIN: i16 = 7;

/// `fjord-metadata.json` as the broker wrote it before the metadata log.
#[derive(Deserialize)]
pub struct LegacyMetadata {
    pub cluster_id: String,
    pub producer_id_next: i64,
    pub topics: Vec<LegacyTopic>,
}

#[derive(Deserialize)]
pub struct LegacyTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub overrides: BTreeMap<String, String>,
}

fn file_err(path: &Path, reason: impl ToString) -> StateError {
    StateError::Metadata {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads `fjord-metadata.json` if present.
pub fn read_legacy(dir: &Path) -> Result<Option<LegacyMetadata>, StateError> {
    let path = dir.join(LEGACY_METADATA_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| file_err(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(&path, e)),
    }
}

/// Renames the legacy files to `*.migrated` (after their records are durable).
pub fn retire_legacy_files(dir: &Path) -> Result<(), StateError> {
    let mut renamed = false;
    for name in [LEGACY_METADATA_FILE, LEGACY_BROKER_CONFIGS_FILE] {
        let from = dir.join(name);
        if from.exists() {
            let to = dir.join(format!("{name}{MIGRATED_SUFFIX}"));
            std::fs::rename(&from, &to).map_err(|e| file_err(&from, e))?;
            renamed = true;
        }
    }
    if renamed {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| file_err(dir, e))?;
    }
    Ok(())
}

/// The cluster id in `meta.properties`, if the file exists.
pub fn read_meta_properties(dir: &Path) -> Result<Option<String>, StateError> {
    match meta_property(dir, "cluster.id")? {
        None => Ok(None),
        Some((_, Some(id))) => Ok(Some(id)),
        Some((path, None)) => Err(file_err(&path, "no cluster.id")),
    }
}

/// The node id in `meta.properties`, if the file exists and has one.
pub fn read_meta_node_id(dir: &Path) -> Result<Option<NodeId>, StateError> {
    match meta_property(dir, "node.id")? {
        Some((path, Some(v))) => v
            .parse()
            .map(|id| Some(NodeId(id)))
            .map_err(|_| file_err(&path, "bad node.id")),
        _ => Ok(None),
    }
}

/// The log directory's id (`directory.id` in `meta.properties`, Kafka's
/// base64url Uuid), if the file has one.
pub fn read_meta_directory_id(dir: &Path) -> Result<Option<Uuid>, StateError> {
    match meta_property(dir, "directory.id")? {
        Some((path, Some(v))) => parse_kafka_uuid(&v)
            .map(Some)
            .ok_or_else(|| file_err(&path, "bad directory.id")),
        _ => Ok(None),
    }
}

/// Parses Kafka's string form of a Uuid (URL-safe base64, no padding).
pub fn parse_kafka_uuid(s: &str) -> Option<Uuid> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim().as_bytes())
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
}

/// `None` when `meta.properties` does not exist; otherwise its path and the
/// trimmed value of `key` (`None` when the file has no such line).
fn meta_property(dir: &Path, key: &str) -> Result<Option<(PathBuf, Option<String>)>, StateError> {
    let path = dir.join(META_PROPERTIES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(&path, e)),
    };
    let value = text.lines().find_map(|line| {
        let v = line.trim().strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().to_string())
    });
    Ok(Some((path, value)))
}

/// Writes `meta.properties` (Kafka's v1 format) durably, with a new
/// random directory id.
pub fn write_meta_properties(
    dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(), StateError> {
    write_meta_properties_with_directory_id(dir, cluster_id, node_id, Uuid::new_v4())
}

/// Writes `meta.properties` (Kafka's v1 format) durably with the given
/// directory id (a dynamic quorum's voter is known by it: KIP-853).
pub fn write_meta_properties_with_directory_id(
    dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
    directory_id: Uuid,
) -> Result<(), StateError> {
    let text = format!(
        "#\n#Written by Fjord\ncluster.id={cluster_id}\ndirectory.id={}\nnode.id={}\nversion=1\n",
        kafka_uuid_string(directory_id),
        node_id.0
    );
    write_durably(dir, META_PROPERTIES_FILE, text.as_bytes())
}

/// Writes `dir/name` durably: a synced temporary file renamed into place,
/// then the directory synced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| file_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| file_err(&tmp, e))?;
    f.sync_all().map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, &dst).map_err(|e| file_err(&dst, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(dir, e))
}

/// Kafka's clean-shutdown file (its `CleanShutdownFileHandler`): written
/// in the data directory once a broker stopped cleanly, holding the broker
/// epoch it stopped with (`{"version":0,"brokerEpoch":N}`, the JSON Kafka
/// 4.x writes and reads). Its next start presents that epoch to the
/// controller as `previous_broker_epoch` (KIP-966): proof that nothing it
/// acknowledged was lost, so it stays in the eligible leader replicas.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

/// The broker epoch of the clean stop before this start, from the
/// clean-shutdown file in `dir`, which is removed first (as Kafka removes
/// it before loading the logs): a crash from here on is unclean. -1 when
/// there is no file, it does not parse, or it cannot be removed.
pub fn take_clean_shutdown_epoch(dir: &Path) -> i64 {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("reading {}: {e}", path.display());
            }
            return -1;
        }
    };
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!("removing {}: {e}", path.display());
        return -1;
    }
    let epoch = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("brokerEpoch").and_then(serde_json::Value::as_i64));
    match epoch {
        Some(e) if e >= 0 => e,
        _ => {
            tracing::warn!("{} holds no broker epoch", path.display());
            -1
        }
    }
}

/// Writes the clean-shutdown file for broker epoch `epoch` into `dir`,
/// durably (synced, renamed into place, the directory synced).
pub fn write_clean_shutdown(dir: &Path, epoch: i64) -> Result<(), StateError> {
    let text = serde_json::json!({ "version": 0, "brokerEpoch": epoch }).to_string();
    write_durably(dir, CLEAN_SHUTDOWN_FILE, text.as_bytes())
}

/// Kafka's string form of a Uuid: URL-safe base64 without padding.
pub fn kafka_uuid_string(u: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = u.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The feature levels a new node or cluster finalizes by default: the
/// highest metadata version and the defaults Kafka gives it, as far as Fjord
/// builds them (see `crate::features`).
pub fn default_feature_records() -> Vec<MetadataRecord> {
    feature_records(
        BOOTSTRAP_METADATA_VERSION,
        &crate::features::default_levels(BOOTSTRAP_METADATA_VERSION),
    )
}

/// FeatureLevelRecords for `metadata.version` `metadata_version` and the
/// non-zero levels of `levels` (a level-0 feature is not finalized).
pub fn feature_records(metadata_version: i16, levels: &[(&str, i16)]) -> Vec<MetadataRecord> {
    let mut out = vec![MetadataRecord::FeatureLevel(FeatureLevelRecord {
        name: fjord_metadata::image::METADATA_VERSION_FEATURE.to_string(),
        feature_level: metadata_version,
        ..Default::default()
    })];
    for (name, level) in levels {
        if *level != 0 && *name != fjord_metadata::image::METADATA_VERSION_FEATURE {
            out.push(MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: name.to_string(),
                feature_level: *level,
                ..Default::default()
            }));
        }
    }
    out
}

/// The feature levels a new node or cluster finalizes: those `fjord
/// format` (or Kafka's `kafka-storage format`) wrote in the data
/// directory's `bootstrap.checkpoint`, else [`default_feature_records`].
/// Levels Fjord does not support are refused (a directory Kafka formatted
/// with features Fjord does not build). Switching eligible leader replicas
/// on adds Kafka's safety records (the cluster-wide `min.insync.replicas`).
fn bootstrap_feature_levels(config: &BrokerConfig) -> Result<Vec<MetadataRecord>, StateError> {
    let dir = &config.data_dir;
    let records = fjord_metadata::log::read_bootstrap_checkpoint(dir)
        .map_err(|e| file_err(dir, e))?
        .unwrap_or_else(default_feature_records);
    let mut levels = std::collections::BTreeMap::new();
    for r in &records {
        match r {
            MetadataRecord::FeatureLevel(f) => {
                levels.insert(f.name.clone(), f.feature_level);
            }
            other => {
                return Err(file_err(
                    dir,
                    format!(
                        "{}: a record other than a feature level (api key {})",
                        fjord_metadata::log::BOOTSTRAP_CHECKPOINT_FILE,
                        other.api_key()
                    ),
                ))
            }
        }
    }
    crate::features::check_bootstrap_levels(&levels).map_err(|e| {
        file_err(
            dir,
            format!("{}: {e}", fjord_metadata::log::BOOTSTRAP_CHECKPOINT_FILE),
        )
    })?;
    let mut out = records;
    if levels
        .get(crate::features::ELR_VERSION_FEATURE)
        .is_some_and(|l| *l >= 1)
    {
        let static_min = config.static_min_insync_replicas();
        out.extend(elr_safety_records(&MetadataImage::empty(""), static_min));
    }
    Ok(out)
}

/// The features a broker registers as supported (Kafka's brokers list every
/// one; a controller refuses a broker that lacks a finalized level).
pub fn registered_features() -> Vec<BrokerFeature> {
    vec![
        BrokerFeature {
            name: fjord_metadata::image::METADATA_VERSION_FEATURE.to_string(),
            min_supported_version: METADATA_VERSION_MIN,
            max_supported_version: METADATA_VERSION_MAX,
            ..Default::default()
        },
        BrokerFeature {
            name: crate::features::TRANSACTION_VERSION_FEATURE.to_string(),
            min_supported_version: 0,
            max_supported_version: crate::features::TRANSACTION_VERSION_MAX,
            ..Default::default()
        },
        BrokerFeature {
            name: crate::features::ELR_VERSION_FEATURE.to_string(),
            min_supported_version: 0,
            max_supported_version: crate::features::ELR_VERSION_MAX,
            ..Default::default()
        },
    ]
}

/// The records a new node's metadata log starts with: the feature levels
/// and this broker's registration.
pub fn bootstrap_records(config: &BrokerConfig) -> Result<Vec<MetadataRecord>, StateError> {
    let mut records = bootstrap_feature_levels(config)?;
    records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: config.node_id.0,
        incarnation_id: Uuid::new_v4(),
        broker_epoch: 0,
        end_points: config
            .endpoints()
            .into_iter()
            .map(|l| BrokerEndpoint {
                name: l.name,
                host: l.host,
                port: l.port,
                security_protocol: l.security_protocol,
                ..Default::default()
            })
            .collect(),
        features: registered_features(),
        // `broker.rack`, or null without one, as Kafka writes it (the
        // schema's default is "").
        rack: config.rack.clone(),
        fenced: false,
        ..Default::default()
    }));
    Ok(records)
}

/// The bootstrap records of a new cluster (Kafka's bootstrap metadata):
/// the feature levels only. Brokers then register with the active
/// controller themselves.
pub fn cluster_bootstrap_records(config: &BrokerConfig) -> Result<Vec<MetadataRecord>, StateError> {
    bootstrap_feature_levels(config)
}

/// The records of a topic created with `partitions` partitions on this node.
pub fn topic_records(
    node: NodeId,
    name: &str,
    id: Uuid,
    partitions: std::ops::Range<i32>,
    overrides: &BTreeMap<String, String>,
    with_topic: bool,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    if with_topic {
        out.push(MetadataRecord::Topic(TopicRecord {
            name: name.to_string(),
            topic_id: id,
            ..Default::default()
        }));
    }
    for p in partitions {
        out.push(MetadataRecord::Partition(PartitionRecord {
            partition_id: p,
            topic_id: id,
            replicas: vec![node.0],
            isr: vec![node.0],
            leader: node.0,
            leader_epoch: 0,
            partition_epoch: 0,
            ..Default::default()
        }));
    }
    for (k, v) in overrides {
        out.push(config_record(
            &ConfigResource::Topic(name.to_string()),
            k,
            Some(v),
        ));
    }
    out
}

pub fn config_record(
    resource: &ConfigResource,
    name: &str,
    value: Option<&String>,
) -> MetadataRecord {
    let (resource_type, resource_name) = resource.record_type_and_name();
    MetadataRecord::Config(ConfigRecord {
        resource_type,
        resource_name,
        name: name.to_string(),
        value: value.cloned(),
        ..Default::default()
    })
}

/// Kafka's `createClearElrRecordsAsNeeded`: with ELR on, a change of
/// `min.insync.replicas` among `records` clears the ELRs it may have made
/// wrong (KIP-966): a topic's change clears that topic's, a broker-level
/// one every topic's.
pub fn clear_elr_records(image: &MetadataImage, records: &[MetadataRecord]) -> Vec<MetadataRecord> {
    if !image.elr_enabled() {
        return Vec::new();
    }
    records
        .iter()
        .filter_map(|r| match r {
            MetadataRecord::Config(c) if c.name == "min.insync.replicas" => {
                let topic_name = if c.resource_type == fjord_metadata::image::CONFIG_RESOURCE_TOPIC
                {
                    c.resource_name.clone()
                } else {
                    String::new()
                };
                Some(MetadataRecord::ClearElr(ClearElrRecord {
                    topic_name,
                    ..Default::default()
                }))
            }
            _ => None,
        })
        .collect()
}

/// Kafka's `ConfigurationControlManager` refusals of a broker config
/// change while ELR is on (KIP-966: every node and the controller must
/// agree on each topic's threshold): no node may get its own
/// `min.insync.replicas` (set or removed), and the cluster-wide one may not
/// be removed. `records` are the change's ConfigRecords; the answer is
/// INVALID_CONFIG with Kafka's message.
pub fn elr_min_isr_refusal(image: &MetadataImage, records: &[MetadataRecord]) -> Option<String> {
    if !image.elr_enabled() {
        return None;
    }
    records.iter().find_map(|r| match r {
        MetadataRecord::Config(c)
            if c.name == "min.insync.replicas"
                && c.resource_type == fjord_metadata::image::CONFIG_RESOURCE_BROKER =>
        {
            if !c.resource_name.is_empty() {
                Some(
                    "Broker-level min.insync.replicas cannot be altered while ELR is enabled."
                        .into(),
                )
            } else if c.value.is_none() {
                Some(
                    "Cluster-level min.insync.replicas cannot be removed while ELR is enabled."
                        .into(),
                )
            } else {
                None
            }
        }
        _ => None,
    })
}

/// Kafka's `maybeGenerateElrSafetyRecords`, written with the
/// FeatureLevelRecord that switches ELR on: the cluster-wide
/// `min.insync.replicas` is set to the static one (`static_min`) if it has
/// none, and every node's own `min.insync.replicas` is removed, so that
/// every node and the controller agree on each topic's threshold.
pub fn elr_safety_records(image: &MetadataImage, static_min: usize) -> Vec<MetadataRecord> {
    let key = "min.insync.replicas";
    let mut out = Vec::new();
    if !image
        .configs(&ConfigResource::Broker(None))
        .contains_key(key)
    {
        out.push(config_record(
            &ConfigResource::Broker(None),
            key,
            Some(&static_min.to_string()),
        ));
    }
    for resource in image.config_resources() {
        if matches!(resource, ConfigResource::Broker(Some(_)))
            && image.configs(resource).contains_key(key)
        {
            out.push(config_record(resource, key, None));
        }
    }
    out
}

/// Records turning `old` into `new` for one config resource.
pub fn config_diff(
    resource: &ConfigResource,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.push(config_record(resource, k, Some(v)));
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push(config_record(resource, k, None));
        }
    }
    out
}

/// The content of the legacy files as records (same topic ids, partition
/// counts, overrides, dynamic broker configs, producer-id block end).
pub fn migration_records(
    node: NodeId,
    legacy: Option<&LegacyMetadata>,
    legacy_dynamic: &DynamicBrokerConfigs,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    if let Some(l) = legacy {
        for t in &l.topics {
            out.extend(topic_records(
                node,
                &t.name,
                t.id,
                0..t.partitions,
                &t.overrides,
                true,
            ));
        }
        if l.producer_id_next >= 0 {
            out.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: node.0,
                broker_epoch: 0,
                next_producer_id: l.producer_id_next,
                ..Default::default()
            }));
        }
    }
    let empty = BTreeMap::new();
    out.extend(config_diff(
        &ConfigResource::Broker(Some(node)),
        &empty,
        &legacy_dynamic.broker,
    ));
    out.extend(config_diff(
        &ConfigResource::Broker(None),
        &empty,
        &legacy_dynamic.cluster_default,
    ));
    out
}

/// This node's dynamic broker configs as the image says.
pub fn dynamic_configs(image: &MetadataImage, node: NodeId) -> DynamicBrokerConfigs {
    DynamicBrokerConfigs {
        broker: image.configs(&ConfigResource::Broker(Some(node))),
        cluster_default: image.configs(&ConfigResource::Broker(None)),
    }
}

/// Makes the broker's topic registry follow the image.
///
/// While the broker loads (a single node's replay of its metadata log) each
/// image is applied before the next is published. Once it is loaded the
/// registry follows behind: the image is published when its records are
/// committed (what the controller decides on, and what a proposal waits
/// for), and [`Broker::apply_delta`] runs on the `fjord-metadata-publish`
/// thread, in log order, as Kafka's broker applies each image after its
/// controller committed it. Callers that need the registry to hold their
/// change wait for it (`Broker::propose`); CreateTopics answers at the
/// commit, as Kafka's controller does, and the new partitions' logs are
/// created behind the answer. A topic is in the registry, and so in
/// Metadata answers, only once its logs exist.
pub struct BrokerPublisher {
    broker: Weak<Broker>,
    behind: Option<(ToPublish, std::thread::JoinHandle<()>)>,
}

/// Images handed to the publish thread, in log order.
type ToPublish = std::sync::mpsc::Sender<(MetadataDelta, MetadataImage)>;

impl BrokerPublisher {
    pub fn new(broker: Weak<Broker>) -> BrokerPublisher {
        BrokerPublisher {
            broker,
            behind: None,
        }
    }

    /// The thread that applies images behind their publication (started at
    /// the first image published after loading).
    fn behind(&mut self) -> Result<&ToPublish, MetadataError> {
        if self.behind.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<(MetadataDelta, MetadataImage)>();
            let broker = self.broker.clone();
            let thread = std::thread::Builder::new()
                .name("fjord-metadata-publish".into())
                .spawn(move || {
                    while let Ok((delta, image)) = rx.recv() {
                        let Some(b) = broker.upgrade() else { break };
                        // Logged and recorded for the waiters there.
                        let _ = apply_and_record(&b, &delta, &image);
                    }
                })
                .map_err(|e| MetadataError::Apply(format!("spawn the publish thread: {e}")))?;
            self.behind = Some((tx, thread));
        }
        match &self.behind {
            Some((tx, _)) => Ok(tx),
            None => Err(MetadataError::Apply("no publish thread".into())),
        }
    }
}

/// Applies one image to the registry and records how far it got.
fn apply_and_record(
    broker: &Broker,
    delta: &MetadataDelta,
    image: &MetadataImage,
) -> Result<(), StateError> {
    let result = broker.apply_delta(delta, image);
    if let Err(e) = &result {
        tracing::error!(
            end_offset = image.end_offset().0,
            "the topic registry did not apply a metadata image: {e}"
        );
    }
    broker.record_registry_applied(
        image.end_offset(),
        result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    result
}

impl MetadataPublisher for BrokerPublisher {
    fn publish(
        &mut self,
        delta: &MetadataDelta,
        image: &MetadataImage,
    ) -> Result<(), MetadataError> {
        let Some(broker) = self.broker.upgrade() else {
            return Err(MetadataError::Apply("the broker is gone".into()));
        };
        if !broker.is_loaded() {
            return apply_and_record(&broker, delta, image)
                .map_err(|e| MetadataError::Apply(e.to_string()));
        }
        drop(broker);
        self.behind()?
            .send((delta.clone(), image.clone()))
            .map_err(|_| MetadataError::Apply("the publish thread stopped".into()))
    }
}

impl Drop for BrokerPublisher {
    /// Lets the publish thread apply what it was handed, then ends it
    /// (unless this runs on it: it held the broker's last reference).
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.behind.take() {
            drop(tx);
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_id_written_at_format_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_meta_directory_id(dir.path()).unwrap(), None);
        write_meta_properties(dir.path(), "c1", NodeId(4)).unwrap();
        let id = read_meta_directory_id(dir.path()).unwrap().unwrap();
        assert_ne!(id, Uuid::nil());
        let text = std::fs::read_to_string(dir.path().join(META_PROPERTIES_FILE)).unwrap();
        assert!(text.contains(&format!("directory.id={}\n", kafka_uuid_string(id))));
        // Kafka's own form of an id (`kafka-storage` writes these) reads too.
        std::fs::write(
            dir.path().join(META_PROPERTIES_FILE),
            "cluster.id=c1\ndirectory.id=MvDxzVmcRsaTz33bUuRU6A\nnode.id=4\nversion=1\n",
        )
        .unwrap();
        let kafka = read_meta_directory_id(dir.path()).unwrap().unwrap();
        assert_eq!(kafka_uuid_string(kafka), "MvDxzVmcRsaTz33bUuRU6A");
        std::fs::write(
            dir.path().join(META_PROPERTIES_FILE),
            "cluster.id=c1\ndirectory.id=not-an-id\nnode.id=4\nversion=1\n",
        )
        .unwrap();
        assert!(read_meta_directory_id(dir.path()).is_err());
    }

    #[test]
    fn the_clean_shutdown_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLEAN_SHUTDOWN_FILE);
        assert_eq!(take_clean_shutdown_epoch(dir.path()), -1, "no file");
        write_clean_shutdown(dir.path(), 42).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json, serde_json::json!({"version": 0, "brokerEpoch": 42}));
        assert_eq!(take_clean_shutdown_epoch(dir.path()), 42);
        assert!(!path.exists(), "removed once read");
        assert_eq!(
            take_clean_shutdown_epoch(dir.path()),
            -1,
            "a crash after this start is unclean"
        );
        // The file Kafka 4.3.1 writes (its field order, no newline) reads too.
        std::fs::write(&path, r#"{"version":0,"brokerEpoch":7}"#).unwrap();
        assert_eq!(take_clean_shutdown_epoch(dir.path()), 7);
        // Garbage is no proof, and is removed all the same.
        for bad in [
            "",
            "{",
            r#"{"version":0}"#,
            r#"{"version":0,"brokerEpoch":"x"}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert_eq!(take_clean_shutdown_epoch(dir.path()), -1, "{bad:?}");
            assert!(!path.exists(), "{bad:?}");
        }
    }
}
