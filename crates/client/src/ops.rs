//! The requests this client makes, on one connection: Metadata,
//! CreateTopics, Produce, Fetch, ListOffsets. Each builds kafka-protocol's
//! request at the negotiated version and turns the response into plain types.

use bytes::Bytes;
use fjord_model::{LeaderEpoch, NodeId, Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, ProduceResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::conn::{Connection, PendingResponse};
use crate::error::{ClientError, Result};

/// First produce / fetch / list-offsets version that names topics by id.
const TOPIC_ID_VERSION_PRODUCE: i16 = 13;
const TOPIC_ID_VERSION_FETCH: i16 = 13;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A broker as listed in Metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition as listed in Metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: PartitionIndex,
    /// `NodeId(-1)` while no leader is known.
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub error_code: i16,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// Replicas on offline brokers (Metadata v5+).
    pub offline: Vec<NodeId>,
}

/// One topic as listed in Metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Nil when the broker predates topic ids (Metadata < v10).
    pub id: Uuid,
    pub error_code: i16,
    pub is_internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// How Produce and Fetch name this topic.
    pub fn topic_ref(&self) -> TopicRef {
        TopicRef {
            name: self.name.clone(),
            id: self.id,
        }
    }

    /// True when every partition has a leader and no error.
    pub fn all_led(&self) -> bool {
        !self.partitions.is_empty()
            && self
                .partitions
                .iter()
                .all(|p| p.error_code == 0 && p.leader.0 >= 0)
    }
}

/// The answer to Metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller: Option<NodeId>,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicInfo>,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn broker(&self, node: NodeId) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == node)
    }
}

/// A topic as Produce and Fetch name it: by name up to the versions that
/// switched to ids, by id after (ids come from Metadata v10+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRef {
    pub name: String,
    pub id: Uuid,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's default.
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i16,
    /// Topic configs by Kafka name (`retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

/// The outcome for one topic of CreateTopics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// Produce `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// 0: no response at all.
    None,
    /// 1: the leader has appended.
    Leader,
    /// -1 (`all`): every in-sync replica has it (Fjord: after fdatasync).
    All,
}

impl Acks {
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Acks, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1, -1 or all, not '{other}'")),
        }
    }
}

/// The outcome for one partition of a Produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionProduced {
    pub partition: PartitionIndex,
    pub error_code: i16,
    pub error_message: Option<String>,
    /// Offset of the first record written.
    pub base_offset: Offset,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
}

/// A written Produce request.
#[must_use = "wait() to see whether the records were written"]
pub enum ProduceAck {
    /// acks=0: the broker does not answer.
    Unacknowledged,
    Pending {
        response: PendingResponse<ProduceResponse>,
        topic: TopicRef,
    },
}

impl ProduceAck {
    /// The per-partition outcomes (empty for acks=0).
    pub async fn wait(self) -> Result<Vec<PartitionProduced>> {
        let (response, topic) = match self {
            ProduceAck::Unacknowledged => return Ok(Vec::new()),
            ProduceAck::Pending { response, topic } => (response, topic),
        };
        let by_id = response.version() >= TOPIC_ID_VERSION_PRODUCE;
        let body = response.wait().await?;
        let mut out = Vec::new();
        for t in body.responses {
            let ours = if by_id {
                t.topic_id == topic.id
            } else {
                t.name.0.as_str() == topic.name
            };
            if !ours {
                continue;
            }
            for p in t.partition_responses {
                out.push(PartitionProduced {
                    partition: PartitionIndex(p.index),
                    error_code: p.error_code,
                    error_message: p.error_message.map(|m| m.to_string()),
                    base_offset: Offset(p.base_offset),
                    log_append_time_ms: p.log_append_time_ms,
                });
            }
        }
        Ok(out)
    }

    /// `wait`, failing on the first partition error (or a missing answer).
    pub async fn wait_ok(self, expected_partitions: usize) -> Result<Vec<PartitionProduced>> {
        let topic = match &self {
            ProduceAck::Unacknowledged => return Ok(Vec::new()),
            ProduceAck::Pending { topic, .. } => topic.name.clone(),
        };
        let out = self.wait().await?;
        if let Some(p) = out.iter().find(|p| p.error_code != 0) {
            return Err(ClientError::kafka(
                format!("produce to {topic}/{}", p.partition),
                p.error_code,
                p.error_message.clone(),
            ));
        }
        if out.len() != expected_partitions {
            return Err(ClientError::Invalid(format!(
                "produce to {topic}: {} partition results for {expected_partitions} partitions sent",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// Settings of a Fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// 0: read uncommitted; 1: read committed.
    pub isolation_level: i8,
}

impl Default for FetchOptions {
    /// The Java consumer's defaults.
    fn default() -> Self {
        FetchOptions {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            isolation_level: 0,
        }
    }
}

/// One partition of a Fetch response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedPartition {
    pub partition: PartitionIndex,
    pub error_code: i16,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    /// Zero or more record batches; the last may be cut short (the broker
    /// stops at the byte limit): iterate with `fjord_records::batches` and
    /// stop at the first error.
    pub records: Bytes,
}

/// A written Fetch request.
#[must_use = "wait() for the records"]
pub struct PendingFetch {
    response: PendingResponse<FetchResponse>,
    topic: TopicRef,
}

impl PendingFetch {
    /// The partitions of the topic that was fetched.
    pub async fn wait(self) -> Result<Vec<FetchedPartition>> {
        let by_id = self.response.version() >= TOPIC_ID_VERSION_FETCH;
        let body = self.response.wait().await?;
        if body.error_code != 0 {
            return Err(ClientError::kafka(
                format!("fetch from {}", self.topic.name),
                body.error_code,
                None,
            ));
        }
        let mut out = Vec::new();
        for t in body.responses {
            let ours = if by_id {
                t.topic_id == self.topic.id
            } else {
                t.topic.0.as_str() == self.topic.name
            };
            if !ours {
                continue;
            }
            for p in t.partitions {
                out.push(FetchedPartition {
                    partition: PartitionIndex(p.partition_index),
                    error_code: p.error_code,
                    high_watermark: Offset(p.high_watermark),
                    log_start_offset: Offset(p.log_start_offset),
                    records: p.records.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }
}

/// Which offset ListOffsets looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first record at or after this timestamp.
    Timestamp(i64),
}

impl OffsetSpec {
    fn as_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// One partition of a ListOffsets response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    pub partition: PartitionIndex,
    pub error_code: i16,
    pub offset: Offset,
    pub timestamp: i64,
}

impl Connection {
    /// Metadata for `topics` (`None`: every topic; `Some(&[])`: none, only
    /// the brokers).
    pub async fn metadata(
        &self,
        topics: Option<&[&str]>,
        allow_auto_topic_creation: bool,
    ) -> Result<ClusterMetadata> {
        let version = self.version(ApiKey::Metadata)?;
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        });
        req.allow_auto_topic_creation = allow_auto_topic_creation && version >= 4;
        let resp = self.send(&req, version).await?.wait().await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                format!("{}: metadata", self.addr()),
                resp.error_code,
                None,
            ));
        }
        Ok(ClusterMetadata {
            cluster_id: resp.cluster_id.map(|c| c.to_string()),
            controller: (resp.controller_id.0 >= 0).then_some(NodeId(resp.controller_id.0)),
            brokers: resp
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    node_id: NodeId(b.node_id.0),
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect(),
            topics: resp
                .topics
                .into_iter()
                .map(|t| {
                    let mut partitions: Vec<PartitionInfo> = t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionInfo {
                            partition: PartitionIndex(p.partition_index),
                            leader: NodeId(p.leader_id.0),
                            leader_epoch: LeaderEpoch(p.leader_epoch),
                            error_code: p.error_code,
                            replicas: p.replica_nodes.iter().map(|b| NodeId(b.0)).collect(),
                            isr: p.isr_nodes.iter().map(|b| NodeId(b.0)).collect(),
                            offline: p.offline_replicas.iter().map(|b| NodeId(b.0)).collect(),
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    TopicInfo {
                        name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                        id: t.topic_id,
                        error_code: t.error_code,
                        is_internal: t.is_internal,
                        partitions,
                    }
                })
                .collect(),
        })
    }

    /// CreateTopics; one outcome per topic (TOPIC_ALREADY_EXISTS is 36).
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        timeout_ms: i32,
    ) -> Result<Vec<CreatedTopic>> {
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = timeout_ms;
        req.topics = topics
            .iter()
            .map(|t| {
                let mut c = CreatableTopic::default();
                c.name = topic_name(&t.name);
                c.num_partitions = t.partitions;
                c.replication_factor = t.replication_factor;
                c.configs = t
                    .configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect();
                c
            })
            .collect();
        let resp = self.call(&req).await?;
        Ok(resp
            .topics
            .into_iter()
            .map(|t| CreatedTopic {
                name: t.name.0.to_string(),
                error_code: t.error_code,
                error_message: t.error_message.map(|m| m.to_string()),
            })
            .collect())
    }

    /// Writes one Produce request with one batch per partition of `topic`
    /// (batches from `fjord_records::BatchBuilder`). Returns once written;
    /// `ProduceAck::wait` yields the outcome.
    pub async fn produce(
        &self,
        topic: &TopicRef,
        acks: Acks,
        timeout_ms: i32,
        batches: Vec<(PartitionIndex, Bytes)>,
    ) -> Result<ProduceAck> {
        let mut version = self.version(ApiKey::Produce)?;
        if version >= TOPIC_ID_VERSION_PRODUCE && topic.id.is_nil() {
            version = TOPIC_ID_VERSION_PRODUCE - 1;
        }
        let mut req = ProduceRequest::default();
        req.acks = acks.as_i16();
        req.timeout_ms = timeout_ms;
        req.topic_data = vec![TopicProduceData::default()
            .with_name(topic_name(&topic.name))
            .with_topic_id(topic.id)
            .with_partition_data(
                batches
                    .into_iter()
                    .map(|(p, records)| {
                        PartitionProduceData::default()
                            .with_index(p.0)
                            .with_records(Some(records))
                    })
                    .collect(),
            )];
        if acks == Acks::None {
            self.send_without_response(&req, version).await?;
            return Ok(ProduceAck::Unacknowledged);
        }
        Ok(ProduceAck::Pending {
            response: self.send(&req, version).await?,
            topic: topic.clone(),
        })
    }

    /// Writes one Fetch request (no fetch session) for `partitions` of
    /// `topic`, each from its offset.
    pub async fn fetch(
        &self,
        topic: &TopicRef,
        partitions: &[(PartitionIndex, Offset)],
        options: &FetchOptions,
    ) -> Result<PendingFetch> {
        let mut version = self.version(ApiKey::Fetch)?;
        if version >= TOPIC_ID_VERSION_FETCH && topic.id.is_nil() {
            version = TOPIC_ID_VERSION_FETCH - 1;
        }
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = options.max_wait_ms;
        req.min_bytes = options.min_bytes;
        req.max_bytes = options.max_bytes;
        req.isolation_level = options.isolation_level;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = vec![FetchTopic::default()
            .with_topic(topic_name(&topic.name))
            .with_topic_id(topic.id)
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p.0)
                            .with_fetch_offset(offset.0)
                            .with_partition_max_bytes(options.partition_max_bytes)
                    })
                    .collect(),
            )];
        Ok(PendingFetch {
            response: self.send(&req, version).await?,
            topic: topic.clone(),
        })
    }

    /// ListOffsets for `partitions` of `topic` (sent to their leader).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[PartitionIndex],
        spec: OffsetSpec,
    ) -> Result<Vec<ListedOffset>> {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p.0)
                            .with_timestamp(spec.as_timestamp())
                    })
                    .collect(),
            )];
        let resp = self.call(&req).await?;
        Ok(resp
            .topics
            .into_iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .map(|p| ListedOffset {
                partition: PartitionIndex(p.partition_index),
                error_code: p.error_code,
                offset: Offset(p.offset),
                timestamp: p.timestamp,
            })
            .collect())
    }
}
