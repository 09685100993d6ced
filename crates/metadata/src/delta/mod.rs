//! A metadata delta: records replayed on top of an image, then applied to
//! make the next image (Kafka's `MetadataDelta`). Deterministic, no I/O.
//!
//! A delta also says what changed (topics created, deleted, partitions
//! added, configs touched), which is what a broker needs to act on its
//! local logs (Kafka's `ReplicaManager.applyDelta`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fjord_model::{NodeId, Offset};
use fjord_protocol::metadata_records::{MetadataRecord, RegisterBrokerRecord};
use fjord_protocol::Reader;
use uuid::Uuid;

use crate::image::{
    AclEntry, ConfigResource, ImageParts, MetadataImage, PartitionRegistration, QuotaEntity,
    ScramCredentialData, TopicImage,
};
use crate::MetadataError;

/// Changes since `base`, not yet an image.
#[derive(Clone, Debug)]
pub struct MetadataDelta {
    base: MetadataImage,
    end_offset: Offset,
    features: BTreeMap<String, Option<i16>>,
    brokers: BTreeMap<NodeId, Option<Arc<RegisterBrokerRecord>>>,
    /// Topics created or changed in this delta, in their new state.
    changed_topics: BTreeMap<Uuid, TopicImage>,
    /// Topics created in this delta (ids).
    created_topics: BTreeSet<Uuid>,
    /// Topics of the base image removed in this delta.
    deleted_topics: BTreeMap<Uuid, Arc<TopicImage>>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, Option<String>>>,
    next_producer_id: Option<i64>,
    /// SCRAM credentials set (`Some`) or removed (`None`), by (user, mechanism).
    scram: BTreeMap<(String, i8), Option<Arc<ScramCredentialData>>>,
    /// ACLs added (`Some`) or removed (`None`), by id.
    acls: BTreeMap<Uuid, Option<Arc<AclEntry>>>,
    /// Client quota values set (`Some`) or removed (`None`), by entity and key.
    client_quotas: BTreeMap<QuotaEntity, BTreeMap<String, Option<f64>>>,
}

impl MetadataDelta {
    pub fn new(base: &MetadataImage) -> MetadataDelta {
        MetadataDelta {
            base: base.clone(),
            end_offset: base.end_offset(),
            features: BTreeMap::new(),
            brokers: BTreeMap::new(),
            changed_topics: BTreeMap::new(),
            created_topics: BTreeSet::new(),
            deleted_topics: BTreeMap::new(),
            configs: BTreeMap::new(),
            next_producer_id: None,
            scram: BTreeMap::new(),
            acls: BTreeMap::new(),
            client_quotas: BTreeMap::new(),
        }
    }

    /// Whether the ACL `id` exists as this delta sees it.
    fn has_acl(&self, id: Uuid) -> bool {
        match self.acls.get(&id) {
            Some(a) => a.is_some(),
            None => self.base.acls().contains_key(&id),
        }
    }

    pub fn base(&self) -> &MetadataImage {
        &self.base
    }

    /// Records up to `end_offset` (exclusive) are in this delta.
    pub fn set_end_offset(&mut self, end_offset: Offset) {
        assert!(
            end_offset >= self.end_offset,
            "a delta's end offset only grows"
        );
        self.end_offset = end_offset;
    }

    /// The topic as this delta sees it (changed here, or in the base, unless deleted).
    pub fn topic(&self, id: Uuid) -> Option<TopicImage> {
        if let Some(t) = self.changed_topics.get(&id) {
            return Some(t.clone());
        }
        if self.deleted_topics.contains_key(&id) {
            return None;
        }
        self.base.topics().get_by_id(id).map(|t| (**t).clone())
    }

    /// The topic as this delta sees it, to change in place: the base's is
    /// copied into the delta on its first change, so a batch of changes to
    /// one topic copies it once (copying it for every record made a decision
    /// that touches all 10,000 partitions of ten topics copy ten million
    /// partition registrations, seconds of CPU on every node).
    fn topic_mut(&mut self, id: Uuid) -> Option<&mut TopicImage> {
        if !self.changed_topics.contains_key(&id) {
            if self.deleted_topics.contains_key(&id) {
                return None;
            }
            let base = self.base.topics().get_by_id(id)?;
            self.changed_topics.insert(id, (**base).clone());
        }
        self.changed_topics.get_mut(&id)
    }

    /// Whether the topic exists as this delta sees it.
    fn has_topic(&self, id: Uuid) -> bool {
        self.changed_topics.contains_key(&id)
            || (!self.deleted_topics.contains_key(&id)
                && self.base.topics().get_by_id(id).is_some())
    }

    /// The id of the topic called `name` as this delta sees it.
    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        if let Some(t) = self.changed_topics.values().find(|t| t.name == name) {
            return Some(t.id);
        }
        self.base
            .topics()
            .get(name)
            .map(|t| t.id)
            .filter(|id| !self.deleted_topics.contains_key(id))
    }

    /// The registration of broker `id` as this delta sees it.
    pub fn broker(&self, id: NodeId) -> Option<Arc<RegisterBrokerRecord>> {
        match self.brokers.get(&id) {
            Some(b) => b.clone(),
            None => self.base.broker(id).cloned(),
        }
    }

    fn change_broker(
        &mut self,
        id: i32,
        epoch: i64,
        fenced: Option<bool>,
        in_controlled_shutdown: Option<bool>,
    ) -> Result<(), MetadataError> {
        let Some(current) = self.broker(NodeId(id)) else {
            return Err(MetadataError::InvalidRecord(format!(
                "registration change of unknown broker {id}"
            )));
        };
        if current.broker_epoch != epoch {
            return Err(MetadataError::InvalidRecord(format!(
                "registration change of broker {id} for epoch {epoch}, registered with epoch {}",
                current.broker_epoch
            )));
        }
        let mut next = (*current).clone();
        if let Some(f) = fenced {
            next.fenced = f;
        }
        if let Some(s) = in_controlled_shutdown {
            next.in_controlled_shutdown = s;
        }
        self.brokers.insert(NodeId(id), Some(Arc::new(next)));
        Ok(())
    }

    /// Decodes and replays one framed record value.
    pub fn replay_framed(&mut self, value: &[u8]) -> Result<(), MetadataError> {
        let mut r = Reader::new(bytes::Bytes::copy_from_slice(value));
        let (record, _version) = MetadataRecord::decode_framed(&mut r)
            .map_err(|e| MetadataError::InvalidRecord(e.to_string()))?;
        self.replay(&record)
    }

    /// Replays one record. A record that contradicts the state (a partition
    /// of an unknown topic, a second topic with the same name) is an error
    /// and changes nothing.
    pub fn replay(&mut self, record: &MetadataRecord) -> Result<(), MetadataError> {
        let bad = |s: String| Err(MetadataError::InvalidRecord(s));
        match record {
            MetadataRecord::FeatureLevel(r) => {
                // Level 0 removes a feature (Kafka's FeaturesDelta).
                let level = (r.feature_level != 0).then_some(r.feature_level);
                self.features.insert(r.name.clone(), level);
            }
            MetadataRecord::RegisterBroker(r) => {
                self.brokers
                    .insert(NodeId(r.broker_id), Some(Arc::new(r.clone())));
            }
            MetadataRecord::UnregisterBroker(r) => {
                self.brokers.insert(NodeId(r.broker_id), None);
            }
            // Fencing changes name the registration they apply to by its
            // epoch (Kafka's ClusterControlManager.replay refuses a change
            // to another registration of the same id).
            MetadataRecord::FenceBroker(r) => {
                self.change_broker(r.id, r.epoch, Some(true), None)?;
            }
            MetadataRecord::UnfenceBroker(r) => {
                self.change_broker(r.id, r.epoch, Some(false), None)?;
            }
            MetadataRecord::BrokerRegistrationChange(r) => {
                // Kafka's BrokerRegistrationFencingChange: 1 fence, -1
                // unfence, 0 none; InControlledShutdownChange: 1 enter, 0 none.
                let fenced = match r.fenced {
                    0 => None,
                    1 => Some(true),
                    -1 => Some(false),
                    v => return bad(format!("broker {} fencing change {v}", r.broker_id)),
                };
                let shutdown = match r.in_controlled_shutdown {
                    0 => None,
                    1 => Some(true),
                    v => {
                        return bad(format!(
                            "broker {} controlled shutdown change {v}",
                            r.broker_id
                        ))
                    }
                };
                self.change_broker(r.broker_id, r.broker_epoch, fenced, shutdown)?;
            }
            MetadataRecord::Topic(r) => {
                if let Some(id) = self.topic_id(&r.name) {
                    return bad(format!("topic {} already exists with id {id}", r.name));
                }
                if self.has_topic(r.topic_id) {
                    return bad(format!("topic id {} already in use", r.topic_id));
                }
                self.changed_topics.insert(
                    r.topic_id,
                    TopicImage {
                        name: r.name.clone(),
                        id: r.topic_id,
                        partitions: BTreeMap::new(),
                    },
                );
                self.created_topics.insert(r.topic_id);
            }
            MetadataRecord::Partition(r) => {
                if r.partition_id < 0 {
                    return bad(format!("partition id {}", r.partition_id));
                }
                let Some(t) = self.topic_mut(r.topic_id) else {
                    return bad(format!(
                        "partition {} of unknown topic id {}",
                        r.partition_id, r.topic_id
                    ));
                };
                t.partitions
                    .insert(r.partition_id, PartitionRegistration::from_record(r));
            }
            MetadataRecord::PartitionChange(r) => {
                let Some(t) = self.topic_mut(r.topic_id) else {
                    return bad(format!(
                        "change of partition {} of unknown topic id {}",
                        r.partition_id, r.topic_id
                    ));
                };
                let name = &t.name;
                let Some(p) = t.partitions.get_mut(&r.partition_id) else {
                    return bad(format!(
                        "change of unknown partition {} of topic {name}",
                        r.partition_id
                    ));
                };
                // Kafka's PartitionRegistration.merge: a new leader bumps the
                // leader epoch; every change bumps the partition epoch.
                // Leader -2 means "no change".
                if let Some(isr) = &r.isr {
                    p.isr = isr.clone();
                }
                if let Some(replicas) = &r.replicas {
                    p.replicas = replicas.clone();
                }
                if let Some(v) = &r.removing_replicas {
                    p.removing_replicas = v.clone();
                }
                if let Some(v) = &r.adding_replicas {
                    p.adding_replicas = v.clone();
                }
                if r.leader != -2 {
                    p.leader = r.leader;
                    p.leader_epoch += 1;
                }
                if r.leader_recovery_state != -1 {
                    p.leader_recovery_state = r.leader_recovery_state;
                }
                if let Some(v) = &r.eligible_leader_replicas {
                    p.elr = v.clone();
                }
                if let Some(v) = &r.last_known_elr {
                    p.last_known_elr = v.clone();
                }
                p.partition_epoch += 1;
            }
            // Kafka's TopicsDelta.replay(ClearElrRecord): a topic's
            // partitions (or, with no name, every topic's) lose their ELR
            // and last known ELR; each partition that had some gets a new
            // partition epoch, as a PartitionChangeRecord would give it.
            MetadataRecord::ClearElr(r) => {
                let ids: Vec<Uuid> = if r.topic_name.is_empty() {
                    let mut ids: BTreeSet<Uuid> =
                        self.base.topics().by_id.keys().copied().collect();
                    ids.extend(self.changed_topics.keys().copied());
                    ids.retain(|id| self.has_topic(*id));
                    ids.into_iter().collect()
                } else {
                    match self.topic_id(&r.topic_name) {
                        Some(id) => vec![id],
                        None => {
                            return bad(format!(
                                "clearing the ELR of unknown topic {}",
                                r.topic_name
                            ))
                        }
                    }
                };
                for id in ids {
                    let has_elr = |t: &TopicImage| {
                        t.partitions
                            .values()
                            .any(|p| !p.elr.is_empty() || !p.last_known_elr.is_empty())
                    };
                    // Look without copying: most topics have no ELR.
                    let any = match self.changed_topics.get(&id) {
                        Some(t) => has_elr(t),
                        None => self.base.topics().get_by_id(id).is_some_and(|t| has_elr(t)),
                    };
                    if !any {
                        continue;
                    }
                    if let Some(t) = self.topic_mut(id) {
                        for p in t.partitions.values_mut() {
                            if !p.elr.is_empty() || !p.last_known_elr.is_empty() {
                                p.elr.clear();
                                p.last_known_elr.clear();
                                p.partition_epoch += 1;
                            }
                        }
                    }
                }
            }
            MetadataRecord::RemoveTopic(r) => {
                let Some(t) = self.topic(r.topic_id) else {
                    return bad(format!("removal of unknown topic id {}", r.topic_id));
                };
                self.changed_topics.remove(&r.topic_id);
                if !self.created_topics.remove(&r.topic_id) {
                    if let Some(base) = self.base.topics().get_by_id(r.topic_id) {
                        self.deleted_topics.insert(r.topic_id, base.clone());
                    }
                }
                // The topic's configs go with it.
                let resource = ConfigResource::Topic(t.name.clone());
                let names: BTreeSet<String> = self
                    .base
                    .configs(&resource)
                    .into_keys()
                    .chain(
                        self.configs
                            .get(&resource)
                            .into_iter()
                            .flat_map(|c| c.keys().cloned()),
                    )
                    .collect();
                let entry = self.configs.entry(resource).or_default();
                for n in names {
                    entry.insert(n, None);
                }
            }
            MetadataRecord::Config(r) => {
                if let Some(resource) =
                    ConfigResource::from_record(r.resource_type, &r.resource_name)
                {
                    self.configs
                        .entry(resource)
                        .or_default()
                        .insert(r.name.clone(), r.value.clone());
                }
            }
            MetadataRecord::ProducerIds(r) => {
                let current = self
                    .next_producer_id
                    .unwrap_or(self.base.next_producer_id());
                if r.next_producer_id <= current {
                    return bad(format!(
                        "producer id block end {} does not move past {current}",
                        r.next_producer_id
                    ));
                }
                self.next_producer_id = Some(r.next_producer_id);
            }
            MetadataRecord::UserScramCredential(r) => {
                self.scram.insert(
                    (r.name.clone(), r.mechanism),
                    Some(Arc::new(ScramCredentialData {
                        salt: r.salt.clone(),
                        stored_key: r.stored_key.clone(),
                        server_key: r.server_key.clone(),
                        iterations: r.iterations,
                    })),
                );
            }
            MetadataRecord::RemoveUserScramCredential(r) => {
                // Kafka's ScramControlManager.replay refuses to remove what is not there.
                let key = (r.name.clone(), r.mechanism);
                let present = match self.scram.get(&key) {
                    Some(c) => c.is_some(),
                    None => self.base.scram_credentials().contains_key(&key),
                };
                if !present {
                    return bad(format!(
                        "removal of unknown SCRAM credential of {} (mechanism {})",
                        r.name, r.mechanism
                    ));
                }
                self.scram.insert(key, None);
            }
            // Kafka's AclControlManager.replay: an id is added once and
            // removed only if present.
            MetadataRecord::AccessControlEntry(r) => {
                if self.has_acl(r.id) {
                    return bad(format!("ACL id {} already in use", r.id));
                }
                self.acls
                    .insert(r.id, Some(Arc::new(AclEntry::from_record(r))));
            }
            MetadataRecord::RemoveAccessControlEntry(r) => {
                if !self.has_acl(r.id) {
                    return bad(format!("removal of unknown ACL id {}", r.id));
                }
                self.acls.insert(r.id, None);
            }
            // Kafka's ClientQuotaControlManager.replay: a value set or
            // removed for one key of one entity.
            MetadataRecord::ClientQuota(r) => {
                let entity: QuotaEntity = r
                    .entity
                    .iter()
                    .map(|e| (e.entity_type.clone(), e.entity_name.clone()))
                    .collect();
                let value = (!r.remove).then_some(r.value);
                self.client_quotas
                    .entry(entity)
                    .or_default()
                    .insert(r.key.clone(), value);
            }
            // Delegation tokens, transactions and controller
            // registrations: not kept by this image yet.
            _ => {}
        }
        Ok(())
    }

    /// Topics created in this delta, in their final state.
    pub fn created_topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.created_topics
            .iter()
            .filter_map(|id| self.changed_topics.get(id))
    }

    /// Topics of the base image that this delta removed.
    pub fn deleted_topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.deleted_topics.values()
    }

    /// Topics of the base image changed (not created) in this delta: (old, new).
    pub fn changed_topics(&self) -> impl Iterator<Item = (&Arc<TopicImage>, &TopicImage)> {
        self.changed_topics.iter().filter_map(|(id, t)| {
            if self.created_topics.contains(id) {
                return None;
            }
            self.base.topics().get_by_id(*id).map(|old| (old, t))
        })
    }

    /// Config resources touched by this delta.
    pub fn changed_configs(&self) -> impl Iterator<Item = &ConfigResource> {
        self.configs.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
            && self.brokers.is_empty()
            && self.changed_topics.is_empty()
            && self.deleted_topics.is_empty()
            && self.configs.is_empty()
            && self.next_producer_id.is_none()
            && self.scram.is_empty()
            && self.acls.is_empty()
            && self.client_quotas.is_empty()
    }

    /// Whether this delta set or removed client quotas.
    pub fn client_quotas_changed(&self) -> bool {
        !self.client_quotas.is_empty()
    }

    /// Whether this delta added or removed ACLs.
    pub fn acls_changed(&self) -> bool {
        !self.acls.is_empty()
    }

    /// Users whose SCRAM credentials this delta set or removed.
    pub fn changed_scram_users(&self) -> impl Iterator<Item = &str> {
        self.scram.keys().map(|(u, _)| u.as_str())
    }

    /// The next image: the base with every change of this delta.
    pub fn apply(&self) -> MetadataImage {
        let base = &self.base.0;
        let features = if self.features.is_empty() {
            base.features.clone()
        } else {
            let mut f = (*base.features).clone();
            for (k, v) in &self.features {
                match v {
                    Some(level) => f.insert(k.clone(), *level),
                    None => f.remove(k),
                };
            }
            Arc::new(f)
        };
        let brokers = if self.brokers.is_empty() {
            base.brokers.clone()
        } else {
            let mut b = (*base.brokers).clone();
            for (k, v) in &self.brokers {
                match v {
                    Some(r) => b.insert(*k, r.clone()),
                    None => b.remove(k),
                };
            }
            Arc::new(b)
        };
        let topics = if self.changed_topics.is_empty() && self.deleted_topics.is_empty() {
            base.topics.clone()
        } else {
            let mut t = (*base.topics).clone();
            for (id, old) in &self.deleted_topics {
                t.by_id.remove(id);
                t.by_name.remove(&old.name);
            }
            for (id, new) in &self.changed_topics {
                let new = Arc::new(new.clone());
                t.by_id.insert(*id, new.clone());
                t.by_name.insert(new.name.clone(), new);
            }
            assert_eq!(
                t.by_id.len(),
                t.by_name.len(),
                "topics by id and by name disagree"
            );
            Arc::new(t)
        };
        let configs = if self.configs.is_empty() {
            base.configs.clone()
        } else {
            let mut c = (*base.configs).clone();
            for (resource, changes) in &self.configs {
                let mut entries = c.get(resource).map(|e| (**e).clone()).unwrap_or_default();
                for (k, v) in changes {
                    match v {
                        Some(v) => entries.insert(k.clone(), v.clone()),
                        None => entries.remove(k),
                    };
                }
                if entries.is_empty() {
                    c.remove(resource);
                } else {
                    c.insert(resource.clone(), Arc::new(entries));
                }
            }
            Arc::new(c)
        };
        let next_producer_id = self.next_producer_id.unwrap_or(base.next_producer_id);
        assert!(
            next_producer_id >= base.next_producer_id,
            "producer ids went back"
        );
        let scram = if self.scram.is_empty() {
            base.scram.clone()
        } else {
            let mut c = (*base.scram).clone();
            for (k, v) in &self.scram {
                match v {
                    Some(v) => c.insert(k.clone(), v.clone()),
                    None => c.remove(k),
                };
            }
            Arc::new(c)
        };
        let acls = if self.acls.is_empty() {
            base.acls.clone()
        } else {
            let mut a = (*base.acls).clone();
            for (id, v) in &self.acls {
                match v {
                    Some(v) => a.insert(*id, v.clone()),
                    None => a.remove(id),
                };
            }
            Arc::new(a)
        };
        let client_quotas = if self.client_quotas.is_empty() {
            base.client_quotas.clone()
        } else {
            let mut q = (*base.client_quotas).clone();
            for (entity, changes) in &self.client_quotas {
                let mut values = q.get(entity).map(|v| (**v).clone()).unwrap_or_default();
                for (key, value) in changes {
                    match value {
                        Some(v) => values.insert(key.clone(), *v),
                        None => values.remove(key),
                    };
                }
                if values.is_empty() {
                    q.remove(entity);
                } else {
                    q.insert(entity.clone(), Arc::new(values));
                }
            }
            Arc::new(q)
        };
        MetadataImage(Arc::new(ImageParts {
            end_offset: self.end_offset,
            cluster_id: base.cluster_id.clone(),
            features,
            brokers,
            topics,
            configs,
            next_producer_id,
            scram,
            acls,
            client_quotas,
        }))
    }
}

#[cfg(test)]
mod tests;
