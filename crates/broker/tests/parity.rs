//! Answers that must be Apache Kafka 4.3.1's for the same request (issue
//! 19): each case here was a difference between Fjord and Kafka, and the
//! e2e suite (`tests/e2e/test_parity.py`) checks the same against both.

mod common;
use common::*;

use fjord_protocol::kafka_protocol::messages::*;

fn creatable(topic: &str, partitions: i32) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
}

/// A name given twice (or more) is not created: one INVALID_REQUEST result
/// per such name after the others, as Kafka's controller answers; the other
/// names are created as usual.
#[tokio::test]
async fn create_topics_with_a_duplicate_name_creates_nothing_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    for v in versions(ApiKey::CreateTopics) {
        let (dup, other, trip) = (format!("dup{v}"), format!("ok{v}"), format!("trip{v}"));
        let req = CreateTopicsRequest::default().with_topics(vec![
            creatable(&dup, 1),
            creatable(&trip, 1),
            creatable(&other, 2),
            creatable(&dup, 3),
            creatable(&trip, 1),
            creatable(&trip, 1),
        ]);
        let r: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, v, &req).await;
        let got: Vec<(&str, i16, Option<&str>)> = r
            .topics
            .iter()
            .map(|t| (&*t.name.0, t.error_code, t.error_message.as_deref()))
            .collect();
        let dup_msg = Some("Duplicate topic name.");
        assert_eq!(
            got,
            vec![
                (other.as_str(), 0, None),
                (dup.as_str(), 42, dup_msg),
                (trip.as_str(), 42, dup_msg)
            ],
            "v{v}"
        );
        // Answered at the commit: committed_topic waits for the logs of a
        // committed topic (and answers None for one never committed).
        assert!(
            b.committed_topic(&dup).is_none(),
            "v{v}: {dup} must not exist"
        );
        assert!(
            b.committed_topic(&trip).is_none(),
            "v{v}: {trip} must not exist"
        );
        assert_eq!(
            b.committed_topic(&other).map(|t| t.partitions.read().len()),
            Some(2),
            "v{v}"
        );
        if v >= 5 {
            let d = &r.topics[1];
            assert_eq!((d.num_partitions, d.replication_factor), (-1, -1));
            assert_eq!(d.configs, Some(Vec::new()));
        }
    }
}

/// Without an authorizer the ACL APIs answer SECURITY_DISABLED (54) at every
/// version: once for DescribeAcls, once per creation, once per filter.
#[tokio::test]
async fn acl_apis_answer_security_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    for key in [ApiKey::DescribeAcls, ApiKey::CreateAcls, ApiKey::DeleteAcls] {
        assert_eq!(versions(key), 1..=3, "{key:?}");
    }
    for v in 1..=3 {
        let r: DescribeAclsResponse =
            call(&b, ApiKey::DescribeAcls, v, &DescribeAclsRequest::default()).await;
        assert_eq!((r.error_code, r.resources.len()), (54, 0), "v{v}");
        let creations = vec![create_acls_request::AclCreation::default(); 3];
        let req = CreateAclsRequest::default().with_creations(creations);
        let r: CreateAclsResponse = call(&b, ApiKey::CreateAcls, v, &req).await;
        assert_eq!(r.results.len(), 3, "v{v}");
        assert!(r.results.iter().all(|x| x.error_code == 54), "v{v}");
        let filters = vec![delete_acls_request::DeleteAclsFilter::default(); 2];
        let req = DeleteAclsRequest::default().with_filters(filters);
        let r: DeleteAclsResponse = call(&b, ApiKey::DeleteAcls, v, &req).await;
        assert_eq!(r.filter_results.len(), 2, "v{v}");
        assert!(r
            .filter_results
            .iter()
            .all(|x| x.error_code == 54 && x.matching_acls.is_empty()));
    }
}

/// FindCoordinator: share groups (key type 2) and unknown key types are
/// INVALID_REQUEST at every version with a key type.
#[tokio::test]
async fn find_coordinator_refuses_share_groups_and_unknown_key_types() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    assert_eq!(versions(ApiKey::FindCoordinator), 0..=6);
    for v in 1..=6 {
        for key_type in [2, 7] {
            let req = FindCoordinatorRequest::default().with_key_type(key_type);
            let req = if v >= 4 {
                req.with_coordinator_keys(vec![s("tx")])
            } else {
                req.with_key(s("tx"))
            };
            let r: FindCoordinatorResponse = call(&b, ApiKey::FindCoordinator, v, &req).await;
            let error = if v >= 4 {
                r.coordinators[0].error_code
            } else {
                r.error_code
            };
            assert_eq!(error, 42, "v{v} key type {key_type}");
        }
    }
}

/// DescribeGroups v6 (KIP-1043) names an unknown group GROUP_ID_NOT_FOUND;
/// before v6 it is Dead with no error, the empty id included. The newest
/// versions Kafka 4.3.1 serves for the group and cluster APIs are served.
#[tokio::test]
async fn describe_groups_v6_reports_unknown_groups() {
    assert_eq!(versions(ApiKey::ListGroups), 0..=5);
    assert_eq!(versions(ApiKey::DescribeCluster), 0..=2);
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    assert_eq!(versions(ApiKey::DescribeGroups), 0..=6);
    let req =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("nothing")), GroupId(s(""))]);
    for v in versions(ApiKey::DescribeGroups) {
        let r: DescribeGroupsResponse = call(&b, ApiKey::DescribeGroups, v, &req).await;
        let want = if v >= 6 { 69 } else { 0 };
        for g in &r.groups {
            assert_eq!((g.error_code, &*g.group_state), (want, "Dead"), "v{v}");
        }
        if v >= 6 {
            assert_eq!(
                r.groups[0].error_message.as_deref(),
                Some("Group nothing not found.")
            );
        }
    }
}

/// OffsetForLeaderEpoch (KIP-320 position validation) from the partition's
/// leader epoch cache: the current epoch ends at the log end (0 for an
/// empty partition), an epoch the log cannot place is (-1, -1) with no error, unknown partitions are
/// UNKNOWN_TOPIC_OR_PARTITION and a newer current epoch UNKNOWN_LEADER_EPOCH.
#[tokio::test]
async fn offset_for_leader_epoch_answers_from_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 2, Default::default(), false).unwrap();
    let mut builder = fjord_records::BatchBuilder::new(fjord_records::Compression::None);
    for i in 0..3 {
        builder.push(1_700_000_000_000 + i, None, Some(b"v"), &[]);
    }
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(bytes::Bytes::from(builder.build(0)))),
            ])]);
    let r: ProduceResponse = call(&b, ApiKey::Produce, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    assert_eq!(versions(ApiKey::OffsetForLeaderEpoch), 2..=4);
    let part = |p: i32, current: i32, epoch: i32| {
        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
            .with_partition(p)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch)
    };
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        part(0, -1, 0),
                        part(0, 0, 0),
                        part(0, -1, 5),
                        part(1, -1, 0),
                        part(0, 3, 0),
                        part(9, -1, 0),
                    ]),
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("nope"))
                    .with_partitions(vec![part(0, -1, 0)]),
            ]);
        let r: OffsetForLeaderEpochResponse = call(&b, ApiKey::OffsetForLeaderEpoch, v, &req).await;
        let got: Vec<Vec<(i32, i16, i32, i64)>> = r
            .topics
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition, p.error_code, p.leader_epoch, p.end_offset))
                    .collect()
            })
            .collect();
        assert_eq!(
            got,
            vec![
                vec![
                    (0, 0, 0, 3),
                    (0, 0, 0, 3),
                    (0, 0, -1, -1),
                    (1, 0, 0, 0),
                    (0, 75, -1, -1),
                    (9, 3, -1, -1)
                ],
                vec![(0, 3, -1, -1)]
            ],
            "v{v}"
        );
    }
}

async fn produce_idempotent(b: &std::sync::Arc<fjord_broker::Broker>, producer_id: i64, seq: i32) {
    let mut builder = fjord_records::BatchBuilder::new(fjord_records::Compression::None).producer(
        producer_id,
        0,
        seq,
    );
    builder.push(1_700_000_000_000 + i64::from(seq), None, Some(b"v"), &[]);
    builder.push(1_700_000_000_500 + i64::from(seq), None, Some(b"w"), &[]);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("p"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(bytes::Bytes::from(builder.build(0)))),
            ])]);
    let r: ProduceResponse = call(b, ApiKey::Produce, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// DescribeProducers lists each partition's idempotent producers from its
/// producer state: id, epoch, last sequence, newest batch's timestamp.
#[tokio::test]
async fn describe_producers_lists_the_partitions_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("p", 2, Default::default(), false).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r: InitProducerIdResponse = call(
            &b,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await;
        assert_eq!(r.error_code, 0);
        ids.push(r.producer_id.0);
    }
    produce_idempotent(&b, ids[0], 0).await;
    produce_idempotent(&b, ids[0], 2).await;
    produce_idempotent(&b, ids[1], 0).await;

    assert_eq!(versions(ApiKey::DescribeProducers), 0..=0);
    let req = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name("p"))
            .with_partition_indexes(vec![0, 1, 5]),
        describe_producers_request::TopicRequest::default()
            .with_name(name("nope"))
            .with_partition_indexes(vec![0]),
    ]);
    let r: DescribeProducersResponse = call(&b, ApiKey::DescribeProducers, 0, &req).await;
    let p = &r.topics[0].partitions;
    assert_eq!(
        p.iter()
            .map(|x| (x.partition_index, x.error_code))
            .collect::<Vec<_>>(),
        vec![(0, 0), (1, 0), (5, 3)]
    );
    let got: Vec<(i64, i32, i32, i64, i32, i64)> = p[0]
        .active_producers
        .iter()
        .map(|s| {
            (
                s.producer_id.0,
                s.producer_epoch,
                s.last_sequence,
                s.last_timestamp,
                s.coordinator_epoch,
                s.current_txn_start_offset,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0], 0, 3, 1_700_000_000_502, -1, -1),
            (ids[1], 0, 1, 1_700_000_000_500, -1, -1)
        ]
    );
    assert!(p[1].active_producers.is_empty());
    assert_eq!(r.topics[1].partitions[0].error_code, 3);
}

/// A partition named twice in one ListOffsets is answered once, with
/// INVALID_REQUEST, as Kafka does; the others are answered as usual.
#[tokio::test]
async fn list_offsets_answers_a_repeated_partition_once_with_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 2, Default::default(), false).unwrap();
    let part = |p: i32, ts: i64| {
        list_offsets_request::ListOffsetsPartition::default()
            .with_partition_index(p)
            .with_current_leader_epoch(-1)
            .with_timestamp(ts)
    };
    for v in versions(ApiKey::ListOffsets) {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    part(0, -1),
                    part(1, -1),
                    part(0, -2),
                    part(0, -1),
                ])]);
        let r: ListOffsetsResponse = call(&b, ApiKey::ListOffsets, v.min(10), &req).await;
        let got: Vec<(i32, i16, i64)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.offset))
            .collect();
        assert_eq!(got, vec![(0, 42, -1), (1, 0, 0)], "v{v}");
    }
}
