//! Non-trivial sample requests for every supported API, valid at `version`
//! (fields a version lacks are left at their defaults).

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic, ReplicaState,
};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::{
    MetadataRequest, MetadataRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterUserScramCredentialsRequest, ApiKey, BrokerId,
    DescribeClientQuotasRequest, DescribeUserScramCredentialsRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, TopicName, TransactionalId,
};
use fjord_protocol::Request;
use uuid::Uuid;

use super::{extra_tags, s};

mod admin;
mod group;
mod parity;
mod quorum;
mod txn;

pub fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, n])
}

pub fn sasl_handshake(_v: i16) -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512"))
}

pub fn sasl_authenticate(v: i16) -> SaslAuthenticateRequest {
    SaslAuthenticateRequest::default()
        .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret"))
        .with_unknown_tagged_fields(extra_tags(v >= 2, 5))
}

pub fn describe_user_scram_credentials(_v: i16) -> DescribeUserScramCredentialsRequest {
    use fjord_protocol::kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    DescribeUserScramCredentialsRequest::default()
        .with_users(Some(vec![
            UserName::default().with_name(s("alice")),
            UserName::default()
                .with_name(s("bob"))
                .with_unknown_tagged_fields(extra_tags(true, 2)),
        ]))
        .with_unknown_tagged_fields(extra_tags(true, 4))
}

pub fn alter_user_scram_credentials(_v: i16) -> AlterUserScramCredentialsRequest {
    use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![ScramCredentialDeletion::default()
            .with_name(s("carol"))
            .with_mechanism(2)])
        .with_upsertions(vec![ScramCredentialUpsertion::default()
            .with_name(s("alice"))
            .with_mechanism(1)
            .with_iterations(8192)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from(vec![7u8; 32]))
            .with_unknown_tagged_fields(extra_tags(true, 3))])
}

pub fn describe_client_quotas(v: i16) -> DescribeClientQuotasRequest {
    use fjord_protocol::kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    DescribeClientQuotasRequest::default()
        .with_components(vec![
            ComponentData::default()
                .with_entity_type(s("user"))
                .with_match_type(0)
                .with_match(Some(s("alice"))),
            ComponentData::default()
                .with_entity_type(s("client-id"))
                .with_match_type(1)
                .with_unknown_tagged_fields(extra_tags(v >= 1, 2)),
        ])
        .with_strict(true)
        .with_unknown_tagged_fields(extra_tags(v >= 1, 4))
}

pub fn alter_client_quotas(v: i16) -> AlterClientQuotasRequest {
    use fjord_protocol::kafka_protocol::messages::alter_client_quotas_request::{
        EntityData, EntryData, OpData,
    };
    AlterClientQuotasRequest::default()
        .with_entries(vec![EntryData::default()
            .with_entity(vec![
                EntityData::default()
                    .with_entity_type(s("user"))
                    .with_entity_name(Some(s("alice"))),
                EntityData::default().with_entity_type(s("client-id")),
            ])
            .with_ops(vec![
                OpData::default()
                    .with_key(s("producer_byte_rate"))
                    .with_value(1048576.0),
                OpData::default()
                    .with_key(s("request_percentage"))
                    .with_remove(true)
                    .with_unknown_tagged_fields(extra_tags(v >= 1, 3)),
            ])])
        .with_validate_only(true)
}

pub fn api_versions(v: i16) -> ApiVersionsRequest {
    let f = v >= 3;
    let mut m = ApiVersionsRequest::default().with_unknown_tagged_fields(extra_tags(f, 9));
    if v >= 3 {
        m = m
            .with_client_software_name(s("librdkafka"))
            .with_client_software_version(s("2.12.1"));
    }
    m
}

pub fn metadata(v: i16) -> MetadataRequest {
    let f = v >= 9;
    let topic = |name: &str, n: u8| {
        let mut t = MetadataRequestTopic::default()
            .with_name(Some(TopicName(s(name))))
            .with_unknown_tagged_fields(extra_tags(f, 3));
        if v >= 10 {
            t = t.with_topic_id(uuid(n));
        }
        t
    };
    let mut m = MetadataRequest::default()
        .with_topics(Some(vec![topic("orders", 1), topic("payments-é", 2)]))
        .with_unknown_tagged_fields(extra_tags(f, 4));
    if v >= 4 {
        m = m.with_allow_auto_topic_creation(false);
    }
    if (8..=10).contains(&v) {
        m = m.with_include_cluster_authorized_operations(true);
    }
    if v >= 8 {
        m = m.with_include_topic_authorized_operations(true);
    }
    m
}

pub fn produce(v: i16) -> ProduceRequest {
    let f = v >= 9;
    let part = |i: i32, rec: Option<&'static [u8]>| {
        PartitionProduceData::default()
            .with_index(i)
            .with_records(rec.map(Bytes::from_static))
            .with_unknown_tagged_fields(extra_tags(f, 5))
    };
    let mut t = TopicProduceData::default()
        .with_partition_data(vec![part(0, Some(b"\x00\x01records")), part(7, None)])
        .with_unknown_tagged_fields(extra_tags(f, 6));
    if v <= 12 {
        t = t.with_name(TopicName(s("orders")));
    } else {
        t = t.with_topic_id(uuid(3));
    }
    ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx-1"))))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            t,
            TopicProduceData::default().with_topic_id(if v >= 13 { uuid(4) } else { Uuid::nil() }),
        ])
        .with_unknown_tagged_fields(extra_tags(f, 7))
}

pub fn fetch(v: i16) -> FetchRequest {
    let f = v >= 12;
    let mut p = FetchPartition::default()
        .with_partition(3)
        .with_fetch_offset(1234)
        .with_partition_max_bytes(1 << 20)
        .with_unknown_tagged_fields(extra_tags(f, 8));
    if v >= 9 {
        p = p.with_current_leader_epoch(5);
    }
    if v >= 12 {
        p = p.with_last_fetched_epoch(4);
    }
    if v >= 5 {
        p = p.with_log_start_offset(10);
    }
    if v >= 17 {
        p = p.with_replica_directory_id(uuid(9));
    }
    if v >= 18 {
        p = p.with_high_watermark(99);
    }
    let mut t = FetchTopic::default()
        .with_partitions(vec![p.clone(), FetchPartition::default()])
        .with_unknown_tagged_fields(extra_tags(f, 9));
    if v <= 12 {
        t = t.with_topic(TopicName(s("orders")));
    } else {
        t = t.with_topic_id(uuid(5));
    }
    let mut m = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(1)
        .with_topics(vec![t])
        .with_unknown_tagged_fields(extra_tags(f, 10));
    if v <= 14 {
        m = m.with_replica_id(BrokerId(-1));
    }
    if v >= 7 {
        let mut ft = ForgottenTopic::default()
            .with_partitions(vec![1, 2, 3])
            .with_unknown_tagged_fields(extra_tags(f, 11));
        if v <= 12 {
            ft = ft.with_topic(TopicName(s("old")));
        } else {
            ft = ft.with_topic_id(uuid(6));
        }
        m = m
            .with_session_id(77)
            .with_session_epoch(2)
            .with_forgotten_topics_data(vec![ft]);
    }
    if v >= 11 {
        m = m.with_rack_id(s("rack-a"));
    }
    if f {
        m = m.with_cluster_id(Some(s("cluster-x")));
    }
    if v >= 15 {
        m = m.with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(2))
                .with_replica_epoch(8)
                .with_unknown_tagged_fields(extra_tags(f, 12)),
        );
    }
    m
}

pub fn list_offsets(v: i16) -> ListOffsetsRequest {
    let f = v >= 6;
    let mut p = ListOffsetsPartition::default()
        .with_partition_index(2)
        .with_timestamp(-2)
        .with_unknown_tagged_fields(extra_tags(f, 13));
    if v >= 4 {
        p = p.with_current_leader_epoch(3);
    }
    let mut m = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![p, ListOffsetsPartition::default()])
            .with_unknown_tagged_fields(extra_tags(f, 14))])
        .with_unknown_tagged_fields(extra_tags(f, 15));
    if v >= 2 {
        m = m.with_isolation_level(1);
    }
    if v >= 10 {
        m = m.with_timeout_ms(1500);
    }
    m
}

/// A sample of `api_key` at `version`, or `None` if we have no sample for it.
pub fn sample(api_key: i16, v: i16) -> Option<Request> {
    let key = ApiKey::try_from(api_key).ok()?;
    Some(match key {
        ApiKey::ApiVersions => Request::ApiVersions(api_versions(v)),
        ApiKey::Metadata => Request::Metadata(metadata(v)),
        ApiKey::Produce => Request::Produce(produce(v)),
        ApiKey::Fetch => Request::Fetch(fetch(v)),
        ApiKey::ListOffsets => Request::ListOffsets(list_offsets(v)),
        ApiKey::CreateTopics => Request::CreateTopics(admin::create_topics(v)),
        ApiKey::DeleteTopics => Request::DeleteTopics(admin::delete_topics(v)),
        ApiKey::CreatePartitions => Request::CreatePartitions(admin::create_partitions(v)),
        ApiKey::DeleteRecords => Request::DeleteRecords(admin::delete_records(v)),
        ApiKey::DescribeCluster => Request::DescribeCluster(admin::describe_cluster(v)),
        ApiKey::DescribeConfigs => Request::DescribeConfigs(admin::describe_configs(v)),
        ApiKey::AlterConfigs => Request::AlterConfigs(admin::alter_configs(v)),
        ApiKey::IncrementalAlterConfigs => {
            Request::IncrementalAlterConfigs(admin::incremental_alter_configs(v))
        }
        ApiKey::DescribeLogDirs => Request::DescribeLogDirs(admin::describe_log_dirs(v)),
        ApiKey::AlterReplicaLogDirs => {
            Request::AlterReplicaLogDirs(admin::alter_replica_log_dirs(v))
        }
        ApiKey::ElectLeaders => Request::ElectLeaders(admin::elect_leaders(v)),
        ApiKey::DescribeQuorum => Request::DescribeQuorum(admin::describe_quorum(v)),
        ApiKey::AlterPartitionReassignments => {
            Request::AlterPartitionReassignments(admin::alter_partition_reassignments(v))
        }
        ApiKey::ListPartitionReassignments => {
            Request::ListPartitionReassignments(admin::list_partition_reassignments(v))
        }
        ApiKey::DescribeTopicPartitions => {
            Request::DescribeTopicPartitions(admin::describe_topic_partitions(v))
        }
        ApiKey::ListConfigResources => {
            Request::ListConfigResources(admin::list_config_resources(v))
        }
        ApiKey::InitProducerId => Request::InitProducerId(group::init_producer_id(v)),
        ApiKey::FindCoordinator => Request::FindCoordinator(group::find_coordinator(v)),
        ApiKey::JoinGroup => Request::JoinGroup(group::join_group(v)),
        ApiKey::SyncGroup => Request::SyncGroup(group::sync_group(v)),
        ApiKey::Heartbeat => Request::Heartbeat(group::heartbeat(v)),
        ApiKey::LeaveGroup => Request::LeaveGroup(group::leave_group(v)),
        ApiKey::OffsetCommit => Request::OffsetCommit(group::offset_commit(v)),
        ApiKey::OffsetFetch => Request::OffsetFetch(group::offset_fetch(v)),
        ApiKey::ListGroups => Request::ListGroups(group::list_groups(v)),
        ApiKey::DescribeGroups => Request::DescribeGroups(group::describe_groups(v)),
        ApiKey::DeleteGroups => Request::DeleteGroups(group::delete_groups(v)),
        ApiKey::OffsetDelete => Request::OffsetDelete(group::offset_delete(v)),
        ApiKey::Vote => Request::Vote(quorum::vote(v)),
        ApiKey::BeginQuorumEpoch => Request::BeginQuorumEpoch(quorum::begin_quorum_epoch(v)),
        ApiKey::EndQuorumEpoch => Request::EndQuorumEpoch(quorum::end_quorum_epoch(v)),
        ApiKey::AddRaftVoter => Request::AddRaftVoter(quorum::add_raft_voter(v)),
        ApiKey::RemoveRaftVoter => Request::RemoveRaftVoter(quorum::remove_raft_voter(v)),
        ApiKey::OffsetForLeaderEpoch => {
            Request::OffsetForLeaderEpoch(parity::offset_for_leader_epoch(v))
        }
        ApiKey::DescribeProducers => Request::DescribeProducers(parity::describe_producers(v)),
        ApiKey::DescribeAcls => Request::DescribeAcls(parity::describe_acls(v)),
        ApiKey::CreateAcls => Request::CreateAcls(parity::create_acls(v)),
        ApiKey::DeleteAcls => Request::DeleteAcls(parity::delete_acls(v)),
        ApiKey::ListTransactions => Request::ListTransactions(parity::list_transactions(v)),
        ApiKey::DescribeTransactions => {
            Request::DescribeTransactions(parity::describe_transactions(v))
        }
        ApiKey::BrokerRegistration => Request::BrokerRegistration(quorum::broker_registration(v)),
        ApiKey::BrokerHeartbeat => Request::BrokerHeartbeat(quorum::broker_heartbeat(v)),
        ApiKey::AllocateProducerIds => {
            Request::AllocateProducerIds(quorum::allocate_producer_ids(v))
        }
        ApiKey::AlterPartition => Request::AlterPartition(quorum::alter_partition(v)),
        ApiKey::UpdateFeatures => Request::UpdateFeatures(parity::update_features(v)),
        ApiKey::SaslHandshake => Request::SaslHandshake(sasl_handshake(v)),
        ApiKey::SaslAuthenticate => Request::SaslAuthenticate(sasl_authenticate(v)),
        ApiKey::DescribeUserScramCredentials => {
            Request::DescribeUserScramCredentials(describe_user_scram_credentials(v))
        }
        ApiKey::AlterUserScramCredentials => {
            Request::AlterUserScramCredentials(alter_user_scram_credentials(v))
        }
        ApiKey::DescribeClientQuotas => Request::DescribeClientQuotas(describe_client_quotas(v)),
        ApiKey::AlterClientQuotas => Request::AlterClientQuotas(alter_client_quotas(v)),
        ApiKey::AddPartitionsToTxn => Request::AddPartitionsToTxn(txn::add_partitions_to_txn(v)),
        ApiKey::AddOffsetsToTxn => Request::AddOffsetsToTxn(txn::add_offsets_to_txn(v)),
        ApiKey::EndTxn => Request::EndTxn(txn::end_txn(v)),
        ApiKey::TxnOffsetCommit => Request::TxnOffsetCommit(txn::txn_offset_commit(v)),
        ApiKey::WriteTxnMarkers => Request::WriteTxnMarkers(txn::write_txn_markers(v)),
        _ => return None,
    })
}
