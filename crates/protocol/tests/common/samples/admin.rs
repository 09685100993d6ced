use fjord_protocol::kafka_protocol::messages::alter_configs_request::{
    AlterConfigsRequest, AlterConfigsResource, AlterableConfig,
};
use fjord_protocol::kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsRequest, CreatePartitionsTopic,
};
use fjord_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use fjord_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use fjord_protocol::kafka_protocol::messages::delete_topics_request::{
    DeleteTopicState, DeleteTopicsRequest,
};
use fjord_protocol::kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request as inc;
use fjord_protocol::kafka_protocol::messages::{
    alter_partition_reassignments_request as apr, alter_replica_log_dirs_request as arld,
    describe_log_dirs_request as dld, describe_quorum_request as dq,
    describe_topic_partitions_request as dtp, elect_leaders_request as el,
    list_config_resources_request as lcr, list_partition_reassignments_request as lpr,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};

use super::super::{extra_tags, s};
use super::uuid;

pub fn create_topics(v: i16) -> CreateTopicsRequest {
    let f = v >= 5;
    let topic = CreatableTopic::default()
        .with_name(TopicName(s("orders")))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![CreatableReplicaAssignment::default()
            .with_partition_index(0)
            .with_broker_ids(vec![BrokerId(1), BrokerId(2)])
            .with_unknown_tagged_fields(extra_tags(f, 1))])
        .with_configs(vec![
            CreatableTopicConfig::default()
                .with_name(s("cleanup.policy"))
                .with_value(Some(s("compact")))
                .with_unknown_tagged_fields(extra_tags(f, 2)),
            CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(None),
        ])
        .with_unknown_tagged_fields(extra_tags(f, 3));
    CreateTopicsRequest::default()
        .with_topics(vec![
            topic,
            CreatableTopic::default()
                .with_name(TopicName(s("t2")))
                .with_num_partitions(3),
        ])
        .with_timeout_ms(30_000)
        .with_validate_only(true)
        .with_unknown_tagged_fields(extra_tags(f, 4))
}

pub fn delete_topics(v: i16) -> DeleteTopicsRequest {
    let f = v >= 4;
    let m = DeleteTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_unknown_tagged_fields(extra_tags(f, 5));
    if v >= 6 {
        m.with_topics(vec![
            DeleteTopicState::default()
                .with_name(Some(TopicName(s("orders"))))
                .with_unknown_tagged_fields(extra_tags(f, 6)),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(uuid(7)),
        ])
    } else {
        m.with_topic_names(vec![TopicName(s("orders")), TopicName(s("b"))])
    }
}

pub fn create_partitions(v: i16) -> CreatePartitionsRequest {
    let f = v >= 2;
    CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(TopicName(s("orders")))
                .with_count(6)
                .with_assignments(Some(vec![CreatePartitionsAssignment::default()
                    .with_broker_ids(vec![BrokerId(1)])
                    .with_unknown_tagged_fields(extra_tags(f, 1))]))
                .with_unknown_tagged_fields(extra_tags(f, 2)),
            CreatePartitionsTopic::default()
                .with_name(TopicName(s("b")))
                .with_count(2)
                .with_assignments(None),
        ])
        .with_timeout_ms(5000)
        .with_validate_only(true)
        .with_unknown_tagged_fields(extra_tags(f, 3))
}

pub fn delete_records(v: i16) -> DeleteRecordsRequest {
    let f = v >= 2;
    DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(4)
                .with_offset(100)
                .with_unknown_tagged_fields(extra_tags(f, 1))])
            .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_timeout_ms(700)
        .with_unknown_tagged_fields(extra_tags(f, 3))
}

pub fn describe_cluster(v: i16) -> DescribeClusterRequest {
    let mut m = DescribeClusterRequest::default()
        .with_include_cluster_authorized_operations(true)
        .with_unknown_tagged_fields(extra_tags(true, 1));
    if v >= 1 {
        m = m.with_endpoint_type(2);
    }
    if v >= 2 {
        m = m.with_include_fenced_brokers(true);
    }
    m
}

pub fn describe_configs(v: i16) -> DescribeConfigsRequest {
    let f = v >= 4;
    let mut m = DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configuration_keys(Some(vec![s("retention.ms"), s("segment.bytes")]))
                .with_unknown_tagged_fields(extra_tags(f, 1)),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("1"))
                .with_configuration_keys(None),
        ])
        .with_include_synonyms(true)
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 3 {
        m = m.with_include_documentation(true);
    }
    m
}

pub fn alter_configs(v: i16) -> AlterConfigsRequest {
    let f = v >= 2;
    AlterConfigsRequest::default()
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))
                    .with_unknown_tagged_fields(extra_tags(f, 1)),
                AlterableConfig::default()
                    .with_name(s("x"))
                    .with_value(None),
            ])
            .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_validate_only(true)
        .with_unknown_tagged_fields(extra_tags(f, 3))
}

pub fn incremental_alter_configs(v: i16) -> inc::IncrementalAlterConfigsRequest {
    let f = v >= 1;
    inc::IncrementalAlterConfigsRequest::default()
        .with_resources(vec![inc::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![
                inc::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("1000")))
                    .with_unknown_tagged_fields(extra_tags(f, 1)),
                inc::AlterableConfig::default()
                    .with_name(s("x"))
                    .with_config_operation(1)
                    .with_value(None),
            ])
            .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_validate_only(true)
        .with_unknown_tagged_fields(extra_tags(f, 3))
}

pub fn describe_log_dirs(v: i16) -> dld::DescribeLogDirsRequest {
    let f = v >= 2;
    let topics = if v == 3 {
        None
    } else {
        Some(vec![
            dld::DescribableLogDirTopic::default()
                .with_topic(TopicName(s("orders")))
                .with_partitions(vec![0, 2, 7])
                .with_unknown_tagged_fields(extra_tags(f, 1)),
            dld::DescribableLogDirTopic::default()
                .with_topic(TopicName(s("e")))
                .with_partitions(vec![]),
        ])
    };
    dld::DescribeLogDirsRequest::default()
        .with_topics(topics)
        .with_unknown_tagged_fields(extra_tags(f, 2))
}

pub fn alter_replica_log_dirs(v: i16) -> arld::AlterReplicaLogDirsRequest {
    let f = v >= 2;
    arld::AlterReplicaLogDirsRequest::default()
        .with_dirs(vec![
            arld::AlterReplicaLogDir::default()
                .with_path(s("/data/kafka"))
                .with_topics(vec![arld::AlterReplicaLogDirTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![1, 3])
                    .with_unknown_tagged_fields(extra_tags(f, 1))])
                .with_unknown_tagged_fields(extra_tags(f, 2)),
            arld::AlterReplicaLogDir::default().with_path(s("/other")),
        ])
        .with_unknown_tagged_fields(extra_tags(f, 3))
}

pub fn elect_leaders(v: i16) -> el::ElectLeadersRequest {
    let f = v >= 2;
    let mut m = el::ElectLeadersRequest::default()
        .with_topic_partitions(Some(vec![el::TopicPartitions::default()
            .with_topic(TopicName(s("orders")))
            .with_partitions(vec![0, 1])
            .with_unknown_tagged_fields(extra_tags(f, 1))]))
        .with_timeout_ms(30_000)
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 1 {
        m = m.with_election_type(1);
    }
    m
}

pub fn describe_quorum(_v: i16) -> dq::DescribeQuorumRequest {
    dq::DescribeQuorumRequest::default()
        .with_topics(vec![dq::TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![dq::PartitionData::default()
                .with_partition_index(0)
                .with_unknown_tagged_fields(extra_tags(true, 1))])
            .with_unknown_tagged_fields(extra_tags(true, 2))])
        .with_unknown_tagged_fields(extra_tags(true, 3))
}

pub fn alter_partition_reassignments(v: i16) -> apr::AlterPartitionReassignmentsRequest {
    let mut m = apr::AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(60_000)
        .with_topics(vec![apr::ReassignableTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                apr::ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(1), BrokerId(2)]))
                    .with_unknown_tagged_fields(extra_tags(true, 1)),
                apr::ReassignablePartition::default()
                    .with_partition_index(1)
                    .with_replicas(None),
            ])
            .with_unknown_tagged_fields(extra_tags(true, 2))])
        .with_unknown_tagged_fields(extra_tags(true, 3));
    if v >= 1 {
        m = m.with_allow_replication_factor_change(false);
    }
    m
}

pub fn list_partition_reassignments(_v: i16) -> lpr::ListPartitionReassignmentsRequest {
    lpr::ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(60_000)
        .with_topics(Some(vec![lpr::ListPartitionReassignmentsTopics::default()
            .with_name(TopicName(s("orders")))
            .with_partition_indexes(vec![0, 4])
            .with_unknown_tagged_fields(extra_tags(true, 1))]))
        .with_unknown_tagged_fields(extra_tags(true, 2))
}

pub fn describe_topic_partitions(_v: i16) -> dtp::DescribeTopicPartitionsRequest {
    dtp::DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            dtp::TopicRequest::default()
                .with_name(TopicName(s("orders")))
                .with_unknown_tagged_fields(extra_tags(true, 1)),
            dtp::TopicRequest::default().with_name(TopicName(s("audit"))),
        ])
        .with_response_partition_limit(2000)
        .with_cursor(Some(
            dtp::Cursor::default()
                .with_topic_name(TopicName(s("orders")))
                .with_partition_index(5)
                .with_unknown_tagged_fields(extra_tags(true, 2)),
        ))
        .with_unknown_tagged_fields(extra_tags(true, 3))
}

pub fn list_config_resources(v: i16) -> lcr::ListConfigResourcesRequest {
    let mut m =
        lcr::ListConfigResourcesRequest::default().with_unknown_tagged_fields(extra_tags(true, 1));
    if v >= 1 {
        m = m.with_resource_types(vec![2, 4, 16]);
    }
    m
}
