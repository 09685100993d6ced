//! Samples of the requests added for Kafka parity (issue 19): leader-epoch
//! validation, producer state, ACLs and transaction listing.

use fjord_protocol::kafka_protocol::messages::create_acls_request::{
    AclCreation, CreateAclsRequest,
};
use fjord_protocol::kafka_protocol::messages::delete_acls_request::{
    DeleteAclsFilter, DeleteAclsRequest,
};
use fjord_protocol::kafka_protocol::messages::describe_acls_request::DescribeAclsRequest;
use fjord_protocol::kafka_protocol::messages::describe_producers_request::{
    DescribeProducersRequest, TopicRequest,
};
use fjord_protocol::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use fjord_protocol::kafka_protocol::messages::update_features_request::{
    FeatureUpdateKey, UpdateFeaturesRequest,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, ProducerId, TopicName, TransactionalId};

use super::super::{extra_tags, s};

pub fn offset_for_leader_epoch(v: i16) -> OffsetForLeaderEpochRequest {
    let f = v >= 4;
    let p = OffsetForLeaderPartition::default()
        .with_partition(3)
        .with_current_leader_epoch(7)
        .with_leader_epoch(5)
        .with_unknown_tagged_fields(extra_tags(f, 1));
    let mut m = OffsetForLeaderEpochRequest::default()
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(s("orders")))
            .with_partitions(vec![p, OffsetForLeaderPartition::default()])
            .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_unknown_tagged_fields(extra_tags(f, 3));
    if v >= 3 {
        m = m.with_replica_id(BrokerId(-1));
    }
    m
}

pub fn describe_producers(_v: i16) -> DescribeProducersRequest {
    DescribeProducersRequest::default()
        .with_topics(vec![TopicRequest::default()
            .with_name(TopicName(s("orders")))
            .with_partition_indexes(vec![0, 2, -1])
            .with_unknown_tagged_fields(extra_tags(true, 1))])
        .with_unknown_tagged_fields(extra_tags(true, 2))
}

pub fn describe_acls(v: i16) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(Some(s("orders")))
        .with_pattern_type_filter(3)
        .with_principal_filter(None)
        .with_host_filter(Some(s("*")))
        .with_operation(4)
        .with_permission_type(3)
        .with_unknown_tagged_fields(extra_tags(v >= 2, 1))
}

pub fn create_acls(v: i16) -> CreateAclsRequest {
    let f = v >= 2;
    CreateAclsRequest::default()
        .with_creations(vec![
            AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_resource_pattern_type(3)
                .with_principal(s("User:alice"))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3)
                .with_unknown_tagged_fields(extra_tags(f, 1)),
            AclCreation::default(),
        ])
        .with_unknown_tagged_fields(extra_tags(f, 2))
}

pub fn delete_acls(v: i16) -> DeleteAclsRequest {
    let f = v >= 2;
    DeleteAclsRequest::default()
        .with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(Some(s("User:bob")))
            .with_host_filter(None)
            .with_operation(1)
            .with_permission_type(1)
            .with_unknown_tagged_fields(extra_tags(f, 1))])
        .with_unknown_tagged_fields(extra_tags(f, 2))
}

pub fn list_transactions(v: i16) -> ListTransactionsRequest {
    let mut m = ListTransactionsRequest::default()
        .with_state_filters(vec![s("Ongoing"), s("Bogus")])
        .with_producer_id_filters(vec![ProducerId(4), ProducerId(-1)])
        .with_unknown_tagged_fields(extra_tags(true, 1));
    if v >= 1 {
        m = m.with_duration_filter(60_000);
    }
    if v >= 2 {
        m = m.with_transactional_id_pattern(Some(s("tx-.*")));
    }
    m
}

pub fn describe_transactions(_v: i16) -> DescribeTransactionsRequest {
    DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(s("tx-1")), TransactionalId(s(""))])
        .with_unknown_tagged_fields(extra_tags(true, 1))
}

pub fn update_features(v: i16) -> UpdateFeaturesRequest {
    let mut up = FeatureUpdateKey::default()
        .with_feature(s("metadata.version"))
        .with_max_version_level(21)
        .with_unknown_tagged_fields(extra_tags(true, 2));
    if v == 0 {
        up = up.with_allow_downgrade(true);
    } else {
        up = up.with_upgrade_type(2);
    }
    let mut m = UpdateFeaturesRequest::default()
        .with_timeout_ms(30_000)
        .with_feature_updates(vec![
            up,
            FeatureUpdateKey::default().with_feature(s("group.version")),
        ])
        .with_unknown_tagged_fields(extra_tags(true, 1));
    if v >= 1 {
        m = m.with_validate_only(true);
    }
    m
}
