//! The metadata image: an immutable, cheaply cloned view of all cluster
//! metadata at one offset of the metadata log (Kafka's `MetadataImage`).
//!
//! Built only by [`crate::delta::MetadataDelta::apply`]; never changed after.
//! Parts are behind `Arc`s, so a new image shares every part a delta left
//! alone with the image it came from.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_model::{NodeId, Offset};
use fjord_protocol::metadata_records::client_quota_record::{ClientQuotaRecord, EntityData};
use fjord_protocol::metadata_records::{
    AccessControlEntryRecord, ConfigRecord, FeatureLevelRecord, MetadataRecord, PartitionRecord,
    ProducerIdsRecord, RegisterBrokerRecord, TopicRecord, UserScramCredentialRecord,
};
use uuid::Uuid;

/// Kafka's `ConfigResource.Type` ids used in ConfigRecord.
pub const CONFIG_RESOURCE_TOPIC: i8 = 2;
pub const CONFIG_RESOURCE_BROKER: i8 = 4;

/// The feature whose level is the metadata version.
pub const METADATA_VERSION_FEATURE: &str = "metadata.version";

/// The feature that switches eligible leader replicas (KIP-966) on (level 1).
pub const ELR_VERSION_FEATURE: &str = "eligible.leader.replicas.version";

/// What a config record is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    Topic(String),
    /// `None`: the cluster-wide default (resource name "").
    Broker(Option<NodeId>),
}

impl ConfigResource {
    /// From a ConfigRecord's resource type and name; `None` for types the
    /// image does not keep (e.g. broker loggers) or a bad broker id.
    pub fn from_record(resource_type: i8, name: &str) -> Option<ConfigResource> {
        match resource_type {
            CONFIG_RESOURCE_TOPIC => Some(ConfigResource::Topic(name.to_string())),
            CONFIG_RESOURCE_BROKER if name.is_empty() => Some(ConfigResource::Broker(None)),
            CONFIG_RESOURCE_BROKER => name
                .parse()
                .ok()
                .map(|id| ConfigResource::Broker(Some(NodeId(id)))),
            _ => None,
        }
    }

    pub fn record_type_and_name(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(t) => (CONFIG_RESOURCE_TOPIC, t.clone()),
            ConfigResource::Broker(None) => (CONFIG_RESOURCE_BROKER, String::new()),
            ConfigResource::Broker(Some(id)) => (CONFIG_RESOURCE_BROKER, id.0.to_string()),
        }
    }
}

/// A user's SCRAM credential for one mechanism, as UserScramCredentialRecord
/// stores it (the salted password itself is never kept). `Debug` hides the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentialData {
    pub salt: bytes::Bytes,
    pub stored_key: bytes::Bytes,
    pub server_key: bytes::Bytes,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramCredentialData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramCredentialData([hidden])")
    }
}

/// A client quota entity (Kafka's `ClientQuotaEntity`): entity type
/// (`user`, `client-id`, `ip`) to name, `None` for the default entity
/// (`<default>`).
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// Client quotas (ClientQuotaRecord) by entity: quota key
/// (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`, ...)
/// to value. An entity without quotas is not kept.
pub type ClientQuotas = BTreeMap<QuotaEntity, Arc<BTreeMap<String, f64>>>;

/// The ClientQuotaRecord that sets `key` of `entity` to `value`, or
/// removes it (`None`).
pub fn client_quota_record(entity: &QuotaEntity, key: &str, value: Option<f64>) -> MetadataRecord {
    MetadataRecord::ClientQuota(ClientQuotaRecord {
        entity: entity
            .iter()
            .map(|(t, n)| EntityData {
                entity_type: t.clone(),
                entity_name: n.clone(),
                ..Default::default()
            })
            .collect(),
        key: key.to_string(),
        value: value.unwrap_or(0.0),
        remove: value.is_none(),
        ..Default::default()
    })
}

/// SCRAM credentials by (user name, mechanism type: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512).
pub type ScramCredentials = BTreeMap<(String, i8), Arc<ScramCredentialData>>;

/// One ACL as AccessControlEntryRecord stores it (Kafka's `StandardAcl`):
/// Kafka's codes for the resource type, pattern type, operation and
/// permission; principal `User:alice` or `User:*`; host or `*`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclEntry {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclEntry {
    pub fn from_record(r: &AccessControlEntryRecord) -> AclEntry {
        AclEntry {
            resource_type: r.resource_type,
            resource_name: r.resource_name.clone(),
            pattern_type: r.pattern_type,
            principal: r.principal.clone(),
            host: r.host.clone(),
            operation: r.operation,
            permission_type: r.permission_type,
        }
    }

    pub fn to_record(&self, id: Uuid) -> AccessControlEntryRecord {
        AccessControlEntryRecord {
            id,
            resource_type: self.resource_type,
            resource_name: self.resource_name.clone(),
            pattern_type: self.pattern_type,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation,
            permission_type: self.permission_type,
            ..Default::default()
        }
    }
}

/// One partition's registration (replicas, ISR, leader and their epochs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRegistration {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    /// -1: no leader.
    pub leader: i32,
    pub leader_recovery_state: i8,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while
    /// it was below `min.insync.replicas` and still hold every committed
    /// record; a leader may be elected from them once the ISR is empty.
    pub elr: Vec<i32>,
    /// The last known ELR members (or, once leaderless, the last leader):
    /// the candidates of a recovery when the ISR and ELR are both empty.
    pub last_known_elr: Vec<i32>,
}

impl PartitionRegistration {
    pub fn from_record(r: &PartitionRecord) -> PartitionRegistration {
        PartitionRegistration {
            replicas: r.replicas.clone(),
            isr: r.isr.clone(),
            removing_replicas: r.removing_replicas.clone(),
            adding_replicas: r.adding_replicas.clone(),
            leader: r.leader,
            leader_recovery_state: r.leader_recovery_state,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            elr: r.eligible_leader_replicas.clone().unwrap_or_default(),
            last_known_elr: r.last_known_elr.clone().unwrap_or_default(),
        }
    }

    pub fn to_record(&self, topic_id: Uuid, partition_id: i32) -> PartitionRecord {
        PartitionRecord {
            partition_id,
            topic_id,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            removing_replicas: self.removing_replicas.clone(),
            adding_replicas: self.adding_replicas.clone(),
            leader: self.leader,
            leader_recovery_state: self.leader_recovery_state,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            // Kafka's tagged fields: absent (null) unless there are members.
            eligible_leader_replicas: (!self.elr.is_empty()).then(|| self.elr.clone()),
            last_known_elr: (!self.last_known_elr.is_empty()).then(|| self.last_known_elr.clone()),
            ..Default::default()
        }
    }
}

/// A topic: name, id and partitions by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

impl TopicImage {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// Topics by name and by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicsImage {
    pub(crate) by_id: BTreeMap<Uuid, Arc<TopicImage>>,
    pub(crate) by_name: BTreeMap<String, Arc<TopicImage>>,
}

impl TopicsImage {
    pub fn get(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.by_name.get(name)
    }
    pub fn get_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.by_id.get(&id)
    }
    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.by_name.values()
    }
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ImageParts {
    /// The log offset after the last record applied.
    pub(crate) end_offset: Offset,
    pub(crate) cluster_id: Arc<str>,
    pub(crate) features: Arc<BTreeMap<String, i16>>,
    pub(crate) brokers: Arc<BTreeMap<NodeId, Arc<RegisterBrokerRecord>>>,
    pub(crate) topics: Arc<TopicsImage>,
    pub(crate) configs: Arc<BTreeMap<ConfigResource, Arc<BTreeMap<String, String>>>>,
    /// The first producer id not yet handed out in a block (-1: none yet).
    pub(crate) next_producer_id: i64,
    pub(crate) scram: Arc<ScramCredentials>,
    /// ACLs by their record id.
    pub(crate) acls: Arc<BTreeMap<Uuid, Arc<AclEntry>>>,
    pub(crate) client_quotas: Arc<ClientQuotas>,
}

/// All cluster metadata at one offset. Cloning is cheap; it never changes.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataImage(pub(crate) Arc<ImageParts>);

impl MetadataImage {
    /// The empty image of a cluster (before any record).
    pub fn empty(cluster_id: &str) -> MetadataImage {
        MetadataImage(Arc::new(ImageParts {
            end_offset: Offset(0),
            cluster_id: Arc::from(cluster_id),
            features: Arc::default(),
            brokers: Arc::default(),
            topics: Arc::default(),
            configs: Arc::default(),
            next_producer_id: -1,
            scram: Arc::default(),
            acls: Arc::default(),
            client_quotas: Arc::default(),
        }))
    }

    pub fn end_offset(&self) -> Offset {
        self.0.end_offset
    }
    pub fn cluster_id(&self) -> &str {
        &self.0.cluster_id
    }
    pub fn feature_level(&self, name: &str) -> Option<i16> {
        self.0.features.get(name).copied()
    }
    pub fn features(&self) -> &BTreeMap<String, i16> {
        &self.0.features
    }
    pub fn metadata_version(&self) -> Option<i16> {
        self.feature_level(METADATA_VERSION_FEATURE)
    }
    /// Whether eligible leader replicas (KIP-966) are on.
    pub fn elr_enabled(&self) -> bool {
        self.feature_level(ELR_VERSION_FEATURE).unwrap_or(0) >= 1
    }
    pub fn brokers(&self) -> &BTreeMap<NodeId, Arc<RegisterBrokerRecord>> {
        &self.0.brokers
    }
    pub fn broker(&self, id: NodeId) -> Option<&Arc<RegisterBrokerRecord>> {
        self.0.brokers.get(&id)
    }
    pub fn topics(&self) -> &TopicsImage {
        &self.0.topics
    }
    /// Explicit configs of a resource (empty if none).
    pub fn configs(&self, resource: &ConfigResource) -> BTreeMap<String, String> {
        self.0
            .configs
            .get(resource)
            .map(|c| (**c).clone())
            .unwrap_or_default()
    }
    pub fn config_resources(&self) -> impl Iterator<Item = &ConfigResource> {
        self.0.configs.keys()
    }
    pub fn next_producer_id(&self) -> i64 {
        self.0.next_producer_id
    }
    /// Every SCRAM credential, by (user, mechanism type).
    pub fn scram_credentials(&self) -> &ScramCredentials {
        &self.0.scram
    }
    /// Every ACL, by its id.
    pub fn acls(&self) -> &BTreeMap<Uuid, Arc<AclEntry>> {
        &self.0.acls
    }
    /// Every client quota, by entity.
    pub fn client_quotas(&self) -> &ClientQuotas {
        &self.0.client_quotas
    }
    /// `user`'s SCRAM credential for mechanism type `mechanism`.
    pub fn scram_credential(&self, user: &str, mechanism: i8) -> Option<&Arc<ScramCredentialData>> {
        self.0.scram.get(&(user.to_string(), mechanism))
    }

    /// The image as records that rebuild it from an empty one (a snapshot's
    /// content), in an order that replays: features, brokers, topics with
    /// their partitions, configs, producer ids, SCRAM credentials, ACLs,
    /// client quotas.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for (name, level) in self.0.features.iter() {
            out.push(MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: name.clone(),
                feature_level: *level,
                ..Default::default()
            }));
        }
        for b in self.0.brokers.values() {
            out.push(MetadataRecord::RegisterBroker((**b).clone()));
        }
        for t in self.0.topics.by_id.values() {
            out.push(MetadataRecord::Topic(TopicRecord {
                name: t.name.clone(),
                topic_id: t.id,
                ..Default::default()
            }));
            for (p, reg) in &t.partitions {
                out.push(MetadataRecord::Partition(reg.to_record(t.id, *p)));
            }
        }
        for (resource, configs) in self.0.configs.iter() {
            let (resource_type, resource_name) = resource.record_type_and_name();
            for (name, value) in configs.iter() {
                out.push(MetadataRecord::Config(ConfigRecord {
                    resource_type,
                    resource_name: resource_name.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                    ..Default::default()
                }));
            }
        }
        if self.0.next_producer_id >= 0 {
            out.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: -1,
                broker_epoch: -1,
                next_producer_id: self.0.next_producer_id,
                ..Default::default()
            }));
        }
        for ((name, mechanism), c) in self.0.scram.iter() {
            out.push(MetadataRecord::UserScramCredential(
                UserScramCredentialRecord {
                    name: name.clone(),
                    mechanism: *mechanism,
                    salt: c.salt.clone(),
                    stored_key: c.stored_key.clone(),
                    server_key: c.server_key.clone(),
                    iterations: c.iterations,
                    ..Default::default()
                },
            ));
        }
        for (id, acl) in self.0.acls.iter() {
            out.push(MetadataRecord::AccessControlEntry(acl.to_record(*id)));
        }
        for (entity, quotas) in self.0.client_quotas.iter() {
            for (key, value) in quotas.iter() {
                out.push(client_quota_record(entity, key, Some(*value)));
            }
        }
        out
    }
}
