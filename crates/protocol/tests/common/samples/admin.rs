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
