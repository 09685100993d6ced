//! Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeCluster, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs,
//! DescribeLogDirs, AlterReplicaLogDirs, ElectLeaders, DescribeQuorum,
//! AlterPartitionReassignments, ListPartitionReassignments,
//! DescribeTopicPartitions, ListConfigResources.

use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsRequest, AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic, AlterReplicaLogDirsRequest,
};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_log_dirs_request::{
    DescribableLogDirTopic, DescribeLogDirsRequest,
};
use kafka_protocol::messages::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData as QuorumPartitionData, TopicData as QuorumTopicData,
};
use kafka_protocol::messages::describe_topic_partitions_request::{
    Cursor, DescribeTopicPartitionsRequest, TopicRequest,
};
use kafka_protocol::messages::elect_leaders_request::{
    ElectLeadersRequest, TopicPartitions as ElectTopicPartitions,
};
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::list_config_resources_request::ListConfigResourcesRequest;
use kafka_protocol::messages::list_partition_reassignments_request::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsTopics,
};
use kafka_protocol::messages::{BrokerId, TopicName};

use super::core::{min_bytes, tags};
use super::Version;
use crate::reader::{DecodeError, Reader};

fn broker_ids(
    r: &mut Reader,
    v: Version,
    field: &'static str,
) -> Result<Vec<BrokerId>, DecodeError> {
    r.array_v(field, v.flexible, 4, |r| r.i32(field).map(BrokerId))
}

pub(crate) fn create_topics(
    r: &mut Reader,
    v: Version,
) -> Result<CreateTopicsRequest, DecodeError> {
    let mut m = CreateTopicsRequest::default();
    m.topics = r.array_v(
        "CreateTopics.topics",
        v.flexible,
        min_bytes(v, 16, 10),
        |r| {
            let mut t = CreatableTopic::default();
            t.name = TopicName(r.str_v("CreateTopics.topics.name", v.flexible)?);
            t.num_partitions = r.i32("CreateTopics.topics.num_partitions")?;
            t.replication_factor = r.i16("CreateTopics.topics.replication_factor")?;
            t.assignments = r.array_v(
                "CreateTopics.topics.assignments",
                v.flexible,
                min_bytes(v, 8, 6),
                |r| {
                    let mut a = CreatableReplicaAssignment::default();
                    a.partition_index = r.i32("CreateTopics.assignments.partition_index")?;
                    a.broker_ids = broker_ids(r, v, "CreateTopics.assignments.broker_ids")?;
                    tags(
                        r,
                        v,
                        "CreateTopics.assignments.tagged_fields",
                        &mut a.unknown_tagged_fields,
                    )?;
                    Ok(a)
                },
            )?;
            t.configs = r.array_v(
                "CreateTopics.topics.configs",
                v.flexible,
                min_bytes(v, 4, 3),
                |r| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = r.str_v("CreateTopics.configs.name", v.flexible)?;
                    c.value = r.nullable_str_v("CreateTopics.configs.value", v.flexible)?;
                    tags(
                        r,
                        v,
                        "CreateTopics.configs.tagged_fields",
                        &mut c.unknown_tagged_fields,
                    )?;
                    Ok(c)
                },
            )?;
            tags(
                r,
                v,
                "CreateTopics.topics.tagged_fields",
                &mut t.unknown_tagged_fields,
            )?;
            Ok(t)
        },
    )?;
    m.timeout_ms = r.i32("CreateTopics.timeout_ms")?;
    m.validate_only = r.bool("CreateTopics.validate_only")?;
    tags(
        r,
        v,
        "CreateTopics.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn delete_topics(
    r: &mut Reader,
    v: Version,
) -> Result<DeleteTopicsRequest, DecodeError> {
    let mut m = DeleteTopicsRequest::default();
    if v.v >= 6 {
        m.topics = r.array_v("DeleteTopics.topics", v.flexible, 18, |r| {
            let mut t = DeleteTopicState::default();
            t.name = r
                .nullable_str_v("DeleteTopics.topics.name", v.flexible)?
                .map(TopicName);
            t.topic_id = r.uuid("DeleteTopics.topics.topic_id")?;
            tags(
                r,
                v,
                "DeleteTopics.topics.tagged_fields",
                &mut t.unknown_tagged_fields,
            )?;
            Ok(t)
        })?;
    } else {
        m.topic_names = r.array_v(
            "DeleteTopics.topic_names",
            v.flexible,
            min_bytes(v, 2, 1),
            |r| Ok(TopicName(r.str_v("DeleteTopics.topic_names", v.flexible)?)),
        )?;
    }
    m.timeout_ms = r.i32("DeleteTopics.timeout_ms")?;
    tags(
        r,
        v,
        "DeleteTopics.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn create_partitions(
    r: &mut Reader,
    v: Version,
) -> Result<CreatePartitionsRequest, DecodeError> {
    let mut m = CreatePartitionsRequest::default();
    m.topics = r.array_v(
        "CreatePartitions.topics",
        v.flexible,
        min_bytes(v, 10, 7),
        |r| {
            let mut t = CreatePartitionsTopic::default();
            t.name = TopicName(r.str_v("CreatePartitions.topics.name", v.flexible)?);
            t.count = r.i32("CreatePartitions.topics.count")?;
            t.assignments = r.nullable_array_v(
                "CreatePartitions.topics.assignments",
                v.flexible,
                min_bytes(v, 4, 2),
                |r| {
                    let mut a = CreatePartitionsAssignment::default();
                    a.broker_ids = broker_ids(r, v, "CreatePartitions.assignments.broker_ids")?;
                    tags(
                        r,
                        v,
                        "CreatePartitions.assignments.tagged_fields",
                        &mut a.unknown_tagged_fields,
                    )?;
                    Ok(a)
                },
            )?;
            tags(
                r,
                v,
                "CreatePartitions.topics.tagged_fields",
                &mut t.unknown_tagged_fields,
            )?;
            Ok(t)
        },
    )?;
    m.timeout_ms = r.i32("CreatePartitions.timeout_ms")?;
    m.validate_only = r.bool("CreatePartitions.validate_only")?;
    tags(
        r,
        v,
        "CreatePartitions.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn delete_records(
    r: &mut Reader,
    v: Version,
) -> Result<DeleteRecordsRequest, DecodeError> {
    let mut m = DeleteRecordsRequest::default();
    m.topics = r.array_v(
        "DeleteRecords.topics",
        v.flexible,
        min_bytes(v, 6, 3),
        |r| {
            let mut t = DeleteRecordsTopic::default();
            t.name = TopicName(r.str_v("DeleteRecords.topics.name", v.flexible)?);
            t.partitions = r.array_v("DeleteRecords.topics.partitions", v.flexible, 12, |r| {
                let mut p = DeleteRecordsPartition::default();
                p.partition_index = r.i32("DeleteRecords.partitions.partition_index")?;
                p.offset = r.i64("DeleteRecords.partitions.offset")?;
                tags(
                    r,
                    v,
                    "DeleteRecords.partitions.tagged_fields",
                    &mut p.unknown_tagged_fields,
                )?;
                Ok(p)
            })?;
            tags(
                r,
                v,
                "DeleteRecords.topics.tagged_fields",
                &mut t.unknown_tagged_fields,
            )?;
            Ok(t)
        },
    )?;
    m.timeout_ms = r.i32("DeleteRecords.timeout_ms")?;
    tags(
        r,
        v,
        "DeleteRecords.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn describe_cluster(
    r: &mut Reader,
    v: Version,
) -> Result<DescribeClusterRequest, DecodeError> {
    let mut m = DescribeClusterRequest::default();
    m.include_cluster_authorized_operations =
        r.bool("DescribeCluster.include_cluster_authorized_operations")?;
    if v.v >= 1 {
        m.endpoint_type = r.i8("DescribeCluster.endpoint_type")?;
    }
    if v.v >= 2 {
        m.include_fenced_brokers = r.bool("DescribeCluster.include_fenced_brokers")?;
    }
    tags(
        r,
        v,
        "DescribeCluster.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn describe_configs(
    r: &mut Reader,
    v: Version,
) -> Result<DescribeConfigsRequest, DecodeError> {
    let mut m = DescribeConfigsRequest::default();
    m.resources = r.array_v(
        "DescribeConfigs.resources",
        v.flexible,
        min_bytes(v, 7, 4),
        |r| {
            let mut res = DescribeConfigsResource::default();
            res.resource_type = r.i8("DescribeConfigs.resources.resource_type")?;
            res.resource_name = r.str_v("DescribeConfigs.resources.resource_name", v.flexible)?;
            res.configuration_keys = r.nullable_array_v(
                "DescribeConfigs.resources.configuration_keys",
                v.flexible,
                min_bytes(v, 2, 1),
                |r| r.str_v("DescribeConfigs.resources.configuration_keys", v.flexible),
            )?;
            tags(
                r,
                v,
                "DescribeConfigs.resources.tagged_fields",
                &mut res.unknown_tagged_fields,
            )?;
            Ok(res)
        },
    )?;
    m.include_synonyms = r.bool("DescribeConfigs.include_synonyms")?;
    if v.v >= 3 {
        m.include_documentation = r.bool("DescribeConfigs.include_documentation")?;
    }
    tags(
        r,
        v,
        "DescribeConfigs.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn alter_configs(
    r: &mut Reader,
    v: Version,
) -> Result<AlterConfigsRequest, DecodeError> {
    let mut m = AlterConfigsRequest::default();
    m.resources = r.array_v(
        "AlterConfigs.resources",
        v.flexible,
        min_bytes(v, 7, 4),
        |r| {
            let mut res = AlterConfigsResource::default();
            res.resource_type = r.i8("AlterConfigs.resources.resource_type")?;
            res.resource_name = r.str_v("AlterConfigs.resources.resource_name", v.flexible)?;
            res.configs = r.array_v(
                "AlterConfigs.resources.configs",
                v.flexible,
                min_bytes(v, 4, 3),
                |r| {
                    let mut c = AlterableConfig::default();
                    c.name = r.str_v("AlterConfigs.configs.name", v.flexible)?;
                    c.value = r.nullable_str_v("AlterConfigs.configs.value", v.flexible)?;
                    tags(
                        r,
                        v,
                        "AlterConfigs.configs.tagged_fields",
                        &mut c.unknown_tagged_fields,
                    )?;
                    Ok(c)
                },
            )?;
            tags(
                r,
                v,
                "AlterConfigs.resources.tagged_fields",
                &mut res.unknown_tagged_fields,
            )?;
            Ok(res)
        },
    )?;
    m.validate_only = r.bool("AlterConfigs.validate_only")?;
    tags(
        r,
        v,
        "AlterConfigs.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn incremental_alter_configs(
    r: &mut Reader,
    v: Version,
) -> Result<IncrementalAlterConfigsRequest, DecodeError> {
    let mut m = IncrementalAlterConfigsRequest::default();
    m.resources = r.array_v(
        "IncrementalAlterConfigs.resources",
        v.flexible,
        min_bytes(v, 7, 4),
        |r| {
            let mut res = incremental::AlterConfigsResource::default();
            res.resource_type = r.i8("IncrementalAlterConfigs.resources.resource_type")?;
            res.resource_name = r.str_v(
                "IncrementalAlterConfigs.resources.resource_name",
                v.flexible,
            )?;
            res.configs = r.array_v(
                "IncrementalAlterConfigs.resources.configs",
                v.flexible,
                min_bytes(v, 5, 4),
                |r| {
                    let mut c = incremental::AlterableConfig::default();
                    c.name = r.str_v("IncrementalAlterConfigs.configs.name", v.flexible)?;
                    c.config_operation =
                        r.i8("IncrementalAlterConfigs.configs.config_operation")?;
                    c.value =
                        r.nullable_str_v("IncrementalAlterConfigs.configs.value", v.flexible)?;
                    tags(
                        r,
                        v,
                        "IncrementalAlterConfigs.configs.tagged_fields",
                        &mut c.unknown_tagged_fields,
                    )?;
                    Ok(c)
                },
            )?;
            tags(
                r,
                v,
                "IncrementalAlterConfigs.resources.tagged_fields",
                &mut res.unknown_tagged_fields,
            )?;
            Ok(res)
        },
    )?;
    m.validate_only = r.bool("IncrementalAlterConfigs.validate_only")?;
    tags(
        r,
        v,
        "IncrementalAlterConfigs.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

/// A flexible struct's trailing tagged fields (every struct of the
/// always-flexible APIs below ends with one).
fn ftags(
    r: &mut Reader,
    field: &'static str,
    out: &mut std::collections::BTreeMap<i32, bytes::Bytes>,
) -> Result<(), DecodeError> {
    *out = r.unknown_tagged_fields(field)?;
    Ok(())
}

fn i32s(r: &mut Reader, v: Version, field: &'static str) -> Result<Vec<i32>, DecodeError> {
    r.array_v(field, v.flexible, 4, |r| r.i32(field))
}

pub(crate) fn describe_log_dirs(
    r: &mut Reader,
    v: Version,
) -> Result<DescribeLogDirsRequest, DecodeError> {
    let mut m = DescribeLogDirsRequest::default();
    m.topics = r.nullable_array_v(
        "DescribeLogDirs.topics",
        v.flexible,
        min_bytes(v, 6, 3),
        |r| {
            let mut t = DescribableLogDirTopic::default();
            t.topic = TopicName(r.str_v("DescribeLogDirs.topics.topic", v.flexible)?);
            t.partitions = i32s(r, v, "DescribeLogDirs.topics.partitions")?;
            tags(
                r,
                v,
                "DescribeLogDirs.topics.tagged_fields",
                &mut t.unknown_tagged_fields,
            )?;
            Ok(t)
        },
    )?;
    tags(
        r,
        v,
        "DescribeLogDirs.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn alter_replica_log_dirs(
    r: &mut Reader,
    v: Version,
) -> Result<AlterReplicaLogDirsRequest, DecodeError> {
    let mut m = AlterReplicaLogDirsRequest::default();
    m.dirs = r.array_v(
        "AlterReplicaLogDirs.dirs",
        v.flexible,
        min_bytes(v, 6, 3),
        |r| {
            let mut d = AlterReplicaLogDir::default();
            d.path = r.str_v("AlterReplicaLogDirs.dirs.path", v.flexible)?;
            d.topics = r.array_v(
                "AlterReplicaLogDirs.dirs.topics",
                v.flexible,
                min_bytes(v, 6, 3),
                |r| {
                    let mut t = AlterReplicaLogDirTopic::default();
                    t.name = TopicName(r.str_v("AlterReplicaLogDirs.topics.name", v.flexible)?);
                    t.partitions = i32s(r, v, "AlterReplicaLogDirs.topics.partitions")?;
                    tags(
                        r,
                        v,
                        "AlterReplicaLogDirs.topics.tagged_fields",
                        &mut t.unknown_tagged_fields,
                    )?;
                    Ok(t)
                },
            )?;
            tags(
                r,
                v,
                "AlterReplicaLogDirs.dirs.tagged_fields",
                &mut d.unknown_tagged_fields,
            )?;
            Ok(d)
        },
    )?;
    tags(
        r,
        v,
        "AlterReplicaLogDirs.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn elect_leaders(
    r: &mut Reader,
    v: Version,
) -> Result<ElectLeadersRequest, DecodeError> {
    let mut m = ElectLeadersRequest::default();
    if v.v >= 1 {
        m.election_type = r.i8("ElectLeaders.election_type")?;
    }
    m.topic_partitions = r.nullable_array_v(
        "ElectLeaders.topic_partitions",
        v.flexible,
        min_bytes(v, 6, 3),
        |r| {
            let mut t = ElectTopicPartitions::default();
            t.topic = TopicName(r.str_v("ElectLeaders.topic_partitions.topic", v.flexible)?);
            t.partitions = i32s(r, v, "ElectLeaders.topic_partitions.partitions")?;
            tags(
                r,
                v,
                "ElectLeaders.topic_partitions.tagged_fields",
                &mut t.unknown_tagged_fields,
            )?;
            Ok(t)
        },
    )?;
    m.timeout_ms = r.i32("ElectLeaders.timeout_ms")?;
    tags(
        r,
        v,
        "ElectLeaders.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn describe_quorum(
    r: &mut Reader,
    _v: Version,
) -> Result<DescribeQuorumRequest, DecodeError> {
    let mut m = DescribeQuorumRequest::default();
    m.topics = r.array_v("DescribeQuorum.topics", true, 3, |r| {
        let mut t = QuorumTopicData::default();
        t.topic_name = TopicName(r.compact_string("DescribeQuorum.topics.topic_name")?);
        t.partitions = r.array_v("DescribeQuorum.topics.partitions", true, 5, |r| {
            let mut p = QuorumPartitionData::default();
            p.partition_index = r.i32("DescribeQuorum.partitions.partition_index")?;
            ftags(
                r,
                "DescribeQuorum.partitions.tagged_fields",
                &mut p.unknown_tagged_fields,
            )?;
            Ok(p)
        })?;
        ftags(
            r,
            "DescribeQuorum.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    ftags(
        r,
        "DescribeQuorum.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn alter_partition_reassignments(
    r: &mut Reader,
    v: Version,
) -> Result<AlterPartitionReassignmentsRequest, DecodeError> {
    let mut m = AlterPartitionReassignmentsRequest::default();
    m.timeout_ms = r.i32("AlterPartitionReassignments.timeout_ms")?;
    if v.v >= 1 {
        m.allow_replication_factor_change =
            r.bool("AlterPartitionReassignments.allow_replication_factor_change")?;
    }
    m.topics = r.array_v("AlterPartitionReassignments.topics", true, 3, |r| {
        let mut t = ReassignableTopic::default();
        t.name = TopicName(r.compact_string("AlterPartitionReassignments.topics.name")?);
        t.partitions = r.array_v(
            "AlterPartitionReassignments.topics.partitions",
            true,
            6,
            |r| {
                let mut p = ReassignablePartition::default();
                p.partition_index =
                    r.i32("AlterPartitionReassignments.partitions.partition_index")?;
                p.replicas = r.nullable_array_v(
                    "AlterPartitionReassignments.partitions.replicas",
                    true,
                    4,
                    |r| {
                        r.i32("AlterPartitionReassignments.partitions.replicas")
                            .map(BrokerId)
                    },
                )?;
                ftags(
                    r,
                    "AlterPartitionReassignments.partitions.tagged_fields",
                    &mut p.unknown_tagged_fields,
                )?;
                Ok(p)
            },
        )?;
        ftags(
            r,
            "AlterPartitionReassignments.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    ftags(
        r,
        "AlterPartitionReassignments.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn list_partition_reassignments(
    r: &mut Reader,
    _v: Version,
) -> Result<ListPartitionReassignmentsRequest, DecodeError> {
    let mut m = ListPartitionReassignmentsRequest::default();
    m.timeout_ms = r.i32("ListPartitionReassignments.timeout_ms")?;
    m.topics = r.nullable_array_v("ListPartitionReassignments.topics", true, 3, |r| {
        let mut t = ListPartitionReassignmentsTopics::default();
        t.name = TopicName(r.compact_string("ListPartitionReassignments.topics.name")?);
        t.partition_indexes = r.array_v(
            "ListPartitionReassignments.topics.partition_indexes",
            true,
            4,
            |r| r.i32("ListPartitionReassignments.topics.partition_indexes"),
        )?;
        ftags(
            r,
            "ListPartitionReassignments.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    ftags(
        r,
        "ListPartitionReassignments.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn describe_topic_partitions(
    r: &mut Reader,
    _v: Version,
) -> Result<DescribeTopicPartitionsRequest, DecodeError> {
    let mut m = DescribeTopicPartitionsRequest::default();
    m.topics = r.array_v("DescribeTopicPartitions.topics", true, 2, |r| {
        let mut t = TopicRequest::default();
        t.name = TopicName(r.compact_string("DescribeTopicPartitions.topics.name")?);
        ftags(
            r,
            "DescribeTopicPartitions.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    m.response_partition_limit = r.i32("DescribeTopicPartitions.response_partition_limit")?;
    // A nullable struct: a negative marker byte for null, else the struct
    // follows (Kafka writes -1 and 1, and reads any non-negative as present).
    m.cursor = if r.i8("DescribeTopicPartitions.cursor")? < 0 {
        None
    } else {
        let mut c = Cursor::default();
        c.topic_name = TopicName(r.compact_string("DescribeTopicPartitions.cursor.topic_name")?);
        c.partition_index = r.i32("DescribeTopicPartitions.cursor.partition_index")?;
        ftags(
            r,
            "DescribeTopicPartitions.cursor.tagged_fields",
            &mut c.unknown_tagged_fields,
        )?;
        Some(c)
    };
    ftags(
        r,
        "DescribeTopicPartitions.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn list_config_resources(
    r: &mut Reader,
    v: Version,
) -> Result<ListConfigResourcesRequest, DecodeError> {
    let mut m = ListConfigResourcesRequest::default();
    if v.v >= 1 {
        m.resource_types = r.array_v("ListConfigResources.resource_types", true, 1, |r| {
            r.i8("ListConfigResources.resource_types")
        })?;
    }
    ftags(
        r,
        "ListConfigResources.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}
