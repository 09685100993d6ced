//! Admin and group requests on one connection, for `fjord topic|group|
//! cluster|config`: DescribeConfigs, IncrementalAlterConfigs, DeleteTopics,
//! CreatePartitions, DescribeCluster, FindCoordinator, OffsetCommit,
//! DeleteGroups, InitProducerId. Each builds kafka-protocol's request at the
//! negotiated version (setting only fields that version has) and turns the
//! response into plain types; nothing here trusts the broker's answer to be
//! well formed beyond what the decoder checked.

use fjord_model::{NodeId, Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic, ApiKey, CreatePartitionsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    FindCoordinatorRequest, GroupId, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    OffsetCommitRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::conn::Connection;
use crate::error::{ClientError, Result};
use crate::ops::BrokerInfo;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

/// What a config belongs to (Kafka's ConfigResource.Type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigResource {
    Topic,
    Broker,
}

impl ConfigResource {
    fn id(self) -> i8 {
        match self {
            ConfigResource::Topic => 2,
            ConfigResource::Broker => 4,
        }
    }
}

/// One config as DescribeConfigs lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive or unset values.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// Where a config's value comes from (Kafka's ConfigSource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    DynamicBrokerLogger,
    ClientMetrics,
    Group,
    Unknown(i8),
}

impl ConfigSource {
    pub fn from_id(id: i8) -> ConfigSource {
        match id {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            other => ConfigSource::Unknown(other),
        }
    }

    /// Kafka's name (`DYNAMIC_TOPIC_CONFIG`, ...) as kafka-configs prints it.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::Group => "GROUP_CONFIG",
            ConfigSource::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A change for IncrementalAlterConfigs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    /// Back to the default.
    Delete(String),
}

/// The brokers of a cluster as DescribeCluster lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    pub controller: Option<NodeId>,
    /// (broker, fenced); fenced brokers are listed only at v2+.
    pub brokers: Vec<(BrokerInfo, bool)>,
}

/// Kafka's COORDINATOR_NOT_AVAILABLE and COORDINATOR_LOAD_IN_PROGRESS: ask again.
pub fn coordinator_loading(code: i16) -> bool {
    matches!(code, 14 | 15)
}

impl Connection {
    /// DescribeConfigs for one resource (`keys` empty: all of them).
    pub async fn describe_configs(
        &self,
        resource: ConfigResource,
        name: &str,
        keys: &[String],
    ) -> Result<Vec<ConfigEntry>> {
        let version = self.version(ApiKey::DescribeConfigs)?;
        let mut req = DescribeConfigsRequest::default();
        req.include_synonyms = false;
        req.resources = vec![DescribeConfigsResource::default()
            .with_resource_type(resource.id())
            .with_resource_name(s(name))
            .with_configuration_keys(if keys.is_empty() {
                None
            } else {
                Some(keys.iter().map(|k| s(k)).collect())
            })];
        let resp = self.send(&req, version).await?.wait().await?;
        let context = || format!("{}: describe configs of {name}", self.addr());
        let Some(r) = resp.results.into_iter().next() else {
            return Err(ClientError::Invalid(format!("{}: no result", context())));
        };
        if r.error_code != 0 {
            return Err(ClientError::kafka(
                context(),
                r.error_code,
                r.error_message.map(|m| m.to_string()),
            ));
        }
        let mut out: Vec<ConfigEntry> = r
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_id(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// IncrementalAlterConfigs for one resource.
    pub async fn alter_configs(
        &self,
        resource: ConfigResource,
        name: &str,
        ops: &[ConfigOp],
    ) -> Result<()> {
        let version = self.version(ApiKey::IncrementalAlterConfigs)?;
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources = vec![AlterConfigsResource::default()
            .with_resource_type(resource.id())
            .with_resource_name(s(name))
            .with_configs(
                ops.iter()
                    .map(|op| match op {
                        ConfigOp::Set(k, v) => AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(0)
                            .with_value(Some(s(v))),
                        ConfigOp::Delete(k) => AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(1)
                            .with_value(None),
                    })
                    .collect(),
            )];
        let resp = self.send(&req, version).await?.wait().await?;
        for r in resp.responses {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    format!("{}: alter configs of {name}", self.addr()),
                    r.error_code,
                    r.error_message.map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }

    /// DeleteTopics for one topic by name.
    pub async fn delete_topic(&self, name: &str, timeout_ms: i32) -> Result<()> {
        let version = self.version(ApiKey::DeleteTopics)?;
        let mut req = DeleteTopicsRequest::default();
        req.timeout_ms = timeout_ms;
        if version >= 6 {
            req.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            req.topic_names = vec![topic_name(name)];
        }
        let resp = self.send(&req, version).await?.wait().await?;
        let Some(r) = resp.responses.into_iter().next() else {
            return Err(ClientError::Invalid(format!(
                "{}: delete topic {name}: no result",
                self.addr()
            )));
        };
        if r.error_code != 0 {
            return Err(ClientError::kafka(
                format!("delete topic {name}"),
                r.error_code,
                r.error_message.map(|m| m.to_string()),
            ));
        }
        Ok(())
    }

    /// CreatePartitions: grows `name` to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32, timeout_ms: i32) -> Result<()> {
        let version = self.version(ApiKey::CreatePartitions)?;
        let mut req = CreatePartitionsRequest::default();
        req.timeout_ms = timeout_ms;
        req.topics = vec![CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(total)
            .with_assignments(None)];
        let resp = self.send(&req, version).await?.wait().await?;
        let Some(r) = resp.results.into_iter().next() else {
            return Err(ClientError::Invalid(format!(
                "{}: add partitions to {name}: no result",
                self.addr()
            )));
        };
        if r.error_code != 0 {
            return Err(ClientError::kafka(
                format!("add partitions to {name}"),
                r.error_code,
                r.error_message.map(|m| m.to_string()),
            ));
        }
        Ok(())
    }

    /// DescribeCluster (fenced brokers included where the version allows).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let version = self.version(ApiKey::DescribeCluster)?;
        let mut req = DescribeClusterRequest::default();
        if version >= 1 {
            req.endpoint_type = 1; // brokers
        }
        if version >= 2 {
            req.include_fenced_brokers = true;
        }
        let resp = self.send(&req, version).await?.wait().await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                format!("{}: describe cluster", self.addr()),
                resp.error_code,
                resp.error_message.map(|m| m.to_string()),
            ));
        }
        let mut brokers: Vec<(BrokerInfo, bool)> = resp
            .brokers
            .into_iter()
            .map(|b| {
                (
                    BrokerInfo {
                        node_id: NodeId(b.broker_id.0),
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.map(|r| r.to_string()),
                    },
                    b.is_fenced,
                )
            })
            .collect();
        brokers.sort_by_key(|(b, _)| b.node_id);
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id.to_string(),
            controller: (resp.controller_id.0 >= 0).then_some(NodeId(resp.controller_id.0)),
            brokers,
        })
    }

    /// FindCoordinator for a group: the coordinator's node id, or the Kafka
    /// error code (COORDINATOR_NOT_AVAILABLE while it loads).
    pub async fn find_group_coordinator(&self, group: &str) -> Result<Result<NodeId, i16>> {
        let version = self.version(ApiKey::FindCoordinator)?;
        let mut req = FindCoordinatorRequest::default();
        req.key_type = 0;
        if version >= 4 {
            req.coordinator_keys = vec![s(group)];
        } else {
            req.key = s(group);
        }
        let resp = self.send(&req, version).await?.wait().await?;
        if version >= 4 {
            let Some(c) = resp.coordinators.into_iter().next() else {
                return Err(ClientError::Invalid(format!(
                    "{}: find coordinator of group {group}: no result",
                    self.addr()
                )));
            };
            return Ok(if c.error_code == 0 {
                Ok(NodeId(c.node_id.0))
            } else {
                Err(c.error_code)
            });
        }
        Ok(if resp.error_code == 0 {
            Ok(NodeId(resp.node_id.0))
        } else {
            Err(resp.error_code)
        })
    }

    /// OffsetCommit as a simple (standalone) consumer: generation -1, no
    /// member id, as Kafka's `assign()` consumers and kafka-consumer-groups
    /// commit. Fails on the first partition error.
    pub async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(PartitionIndex, Offset)],
    ) -> Result<()> {
        let version = self.version(ApiKey::OffsetCommit)?;
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(s(group));
        req.generation_id_or_member_epoch = -1;
        req.topics = vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p.0)
                            .with_committed_offset(o.0)
                    })
                    .collect(),
            )];
        let resp = self.send(&req, version).await?.wait().await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(ClientError::kafka(
                        format!(
                            "commit offsets of group {group} for {topic}/{}",
                            p.partition_index
                        ),
                        p.error_code,
                        None,
                    ));
                }
            }
        }
        Ok(())
    }

    /// DeleteGroups for one group.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let version = self.version(ApiKey::DeleteGroups)?;
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(s(group))];
        let resp = self.send(&req, version).await?.wait().await?;
        for r in resp.results {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    format!("delete group {group}"),
                    r.error_code,
                    None,
                ));
            }
        }
        Ok(())
    }

    /// InitProducerId for an idempotent producer: (producer id, epoch).
    pub async fn init_producer_id(&self) -> Result<(i64, i16)> {
        let version = self.version(ApiKey::InitProducerId)?;
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = i32::MAX;
        let resp = self.send(&req, version).await?.wait().await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                format!("{}: init producer id", self.addr()),
                resp.error_code,
                None,
            ));
        }
        Ok((resp.producer_id.0, resp.producer_epoch))
    }
}
