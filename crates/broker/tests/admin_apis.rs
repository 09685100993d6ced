//! The admin APIs a single node answers trivially (log dirs, elections,
//! quorum, reassignments, paginated topic description, config resources),
//! at every advertised version, through `handlers::dispatch`.

mod common;
use common::*;

use std::sync::Arc;

use fjord_broker::Broker;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_records::{BatchBuilder, Compression};

fn make_topic(b: &Arc<Broker>, topic: &str, partitions: i32) {
    b.create_topic(topic, partitions, Default::default(), false)
        .unwrap();
}

#[test]
fn advertised_ranges_match_kafka_4_3_where_served() {
    let expect = [
        (ApiKey::DescribeLogDirs, 1..=5),
        (ApiKey::AlterReplicaLogDirs, 1..=2),
        (ApiKey::ElectLeaders, 0..=2),
        (ApiKey::DescribeQuorum, 0..=2),
        (ApiKey::AlterPartitionReassignments, 0..=1),
        (ApiKey::ListPartitionReassignments, 0..=0),
        (ApiKey::DescribeTopicPartitions, 0..=0),
        (ApiKey::ListConfigResources, 0..=1),
    ];
    for (key, range) in expect {
        assert_eq!(versions(key), range, "{key:?}");
    }
}

#[tokio::test]
async fn describe_log_dirs_reports_one_dir_with_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    make_topic(&b, "sized", 2);
    let batch = BatchBuilder::new(Compression::None)
        .push(1_700_000_000_000, Some(b"k"), Some(b"value"), &[])
        .build(0);
    let mut records = batch.clone();
    b.topic("sized")
        .unwrap()
        .partition(1)
        .unwrap()
        .log
        .append(&mut records, 1_700_000_000_000)
        .unwrap();
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    // v5 (past kafka-protocol 0.18): the v4 request layout, and the v4
    // response plus `is_cordoned` = false before the directory's tags.
    let req = DescribeLogDirsRequest::default().with_topics(None);
    let v4 = call_raw(&b, ApiKey::DescribeLogDirs, 4, 4, &req).await;
    let v5 = call_raw(&b, ApiKey::DescribeLogDirs, 5, 4, &req).await;
    let n = v4.len();
    assert_eq!(v5.len(), n + 1);
    // Volume sizes (the 16 bytes before the tags) may change between calls.
    assert_eq!(&v5[..n - 18], &v4[..n - 18]);
    assert_eq!(&v5[n - 2..], &[0, 0, 0]);
    for v in versions(ApiKey::DescribeLogDirs).filter(|v| *v <= 4) {
        // Null: every partition of every topic.
        let r: DescribeLogDirsResponse = call(
            &b,
            ApiKey::DescribeLogDirs,
            v,
            &DescribeLogDirsRequest::default().with_topics(None),
        )
        .await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.results.len(), 1);
        let d = &r.results[0];
        assert_eq!(d.error_code, 0);
        assert_eq!(d.log_dir.as_str(), canonical.display().to_string());
        let sized = d
            .topics
            .iter()
            .find(|t| t.name.as_str() == "sized")
            .unwrap();
        assert_eq!(sized.partitions.len(), 2);
        let p1 = sized
            .partitions
            .iter()
            .find(|p| p.partition_index == 1)
            .unwrap();
        assert_eq!(p1.partition_size, batch.len() as i64, "v{v}");
        assert_eq!(p1.offset_lag, 0);
        assert!(!p1.is_future_key);
        if v >= 4 {
            assert!(d.total_bytes > 0 && d.usable_bytes >= 0 && d.usable_bytes <= d.total_bytes);
        }
        // Named partitions only; unknown ones are left out.
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(name("sized"))
                .with_partitions(vec![1, 9]),
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(name("nope"))
                .with_partitions(vec![0]),
        ]));
        let r: DescribeLogDirsResponse = call(&b, ApiKey::DescribeLogDirs, v, &req).await;
        let topics = &r.results[0].topics;
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions.len(), 1);
        assert_eq!(topics[0].partitions[0].partition_index, 1);
    }
}

#[tokio::test]
async fn alter_replica_log_dirs_only_knows_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    make_topic(&b, "moved", 1);
    let ours = std::fs::canonicalize(dir.path())
        .unwrap()
        .display()
        .to_string();
    for v in versions(ApiKey::AlterReplicaLogDirs) {
        let topic = |t: &str, ps: Vec<i32>| {
            alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                .with_name(name(t))
                .with_partitions(ps)
        };
        let req = AlterReplicaLogDirsRequest::default().with_dirs(vec![
            alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                .with_path(s(&ours))
                .with_topics(vec![topic("moved", vec![0, 5]), topic("ghost", vec![0])]),
            alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                .with_path(s("/no/such/dir"))
                .with_topics(vec![topic("moved", vec![0])]),
        ]);
        let r: AlterReplicaLogDirsResponse = call(&b, ApiKey::AlterReplicaLogDirs, v, &req).await;
        let codes = |t: &str| -> Vec<(i32, i16)> {
            r.results
                .iter()
                .find(|x| x.topic_name.as_str() == t)
                .unwrap()
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
                .collect()
        };
        assert_eq!(codes("moved"), vec![(0, 0), (5, 9), (0, 57)], "v{v}");
        assert_eq!(codes("ghost"), vec![(0, 9)]);
    }
}

#[tokio::test]
async fn elect_leaders_is_never_needed() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    make_topic(&b, "elect", 2);
    for v in versions(ApiKey::ElectLeaders) {
        let req = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(name("elect"))
            .with_partitions(vec![0, 1, 2])]))
            .with_timeout_ms(1000);
        let r: ElectLeadersResponse = call(&b, ApiKey::ElectLeaders, v, &req).await;
        assert_eq!(r.error_code, 0);
        let codes: Vec<(i32, i16)> = r.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(codes, vec![(0, 84), (1, 84), (2, 3)], "v{v}");
        // Null: all partitions, and those needing no election are left out.
        let req = ElectLeadersRequest::default().with_topic_partitions(None);
        let r: ElectLeadersResponse = call(&b, ApiKey::ElectLeaders, v, &req).await;
        assert!(r.replica_election_results.is_empty());
    }
}

#[tokio::test]
async fn describe_quorum_is_a_single_voter() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    let req = DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(name("__cluster_metadata"))
            .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
    ]);
    for v in versions(ApiKey::DescribeQuorum) {
        let r: DescribeQuorumResponse = call(&b, ApiKey::DescribeQuorum, v, &req).await;
        assert_eq!(r.error_code, 0);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id.0, 1);
        assert!(p.leader_epoch >= 1);
        assert_eq!(p.current_voters.len(), 1);
        assert_eq!(p.current_voters[0].replica_id.0, 1);
        assert!(p.observers.is_empty());
        if v >= 1 {
            assert!(p.current_voters[0].last_caught_up_timestamp > 0);
        }
        if v >= 2 {
            assert_eq!(r.nodes.len(), 1);
            assert_eq!(r.nodes[0].listeners[0].port, 9092);
        }
        let wrong = DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(name("other"))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
        ]);
        let r: DescribeQuorumResponse = call(&b, ApiKey::DescribeQuorum, v, &wrong).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 3);
    }
}

#[tokio::test]
async fn reassignments_on_a_single_node() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    make_topic(&b, "re", 1);
    for v in versions(ApiKey::AlterPartitionReassignments) {
        let part = |i: i32, r: Option<Vec<i32>>| {
            alter_partition_reassignments_request::ReassignablePartition::default()
                .with_partition_index(i)
                .with_replicas(r.map(|r| r.into_iter().map(BrokerId).collect()))
        };
        let req = AlterPartitionReassignmentsRequest::default()
            .with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(name("re"))
                    .with_partitions(vec![
                        part(0, Some(vec![1])),
                        part(0, Some(vec![2])),
                        part(0, Some(vec![1, 1])),
                        part(0, Some(vec![])),
                        part(0, None),
                        part(4, Some(vec![1])),
                    ]),
            ])
            .with_allow_replication_factor_change(true);
        let r: AlterPartitionReassignmentsResponse =
            call(&b, ApiKey::AlterPartitionReassignments, v, &req).await;
        assert_eq!(r.error_code, 0);
        let codes: Vec<i16> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![0, 39, 39, 39, 85, 3], "v{v}");
    }
    let r: ListPartitionReassignmentsResponse = call(
        &b,
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_topics(None),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert!(r.topics.is_empty());
}

/// Pages through all topics with `limit` partitions per response and
/// returns (topic, partition) in the order received.
async fn page_all(b: &Arc<Broker>, topics: &[&str], limit: i32) -> (Vec<(String, i32)>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<describe_topic_partitions_request::Cursor> = None;
    let mut pages = 0;
    loop {
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(name(t))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.take());
        let r: DescribeTopicPartitionsResponse =
            call(b, ApiKey::DescribeTopicPartitions, 0, &req).await;
        pages += 1;
        for t in &r.topics {
            let tname = t.name.as_ref().unwrap().to_string();
            if t.error_code != 0 {
                seen.push((tname, -i32::from(t.error_code)));
                continue;
            }
            for p in &t.partitions {
                assert_eq!(p.leader_id.0, 1);
                assert_eq!(p.replica_nodes, vec![BrokerId(1)]);
                seen.push((tname.clone(), p.partition_index));
            }
        }
        match r.next_cursor {
            Some(c) => {
                cursor = Some(
                    describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(c.topic_name)
                        .with_partition_index(c.partition_index),
                )
            }
            None => return (seen, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn describe_topic_partitions_paginates_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    make_topic(&b, "b-topic", 3);
    make_topic(&b, "a-topic", 2);
    let want = vec![
        ("a-topic".to_string(), 0),
        ("a-topic".to_string(), 1),
        ("b-topic".to_string(), 0),
        ("b-topic".to_string(), 1),
        ("b-topic".to_string(), 2),
    ];
    for limit in [1, 2, 3, 5, 2000, 100_000] {
        let (seen, pages) = page_all(&b, &["b-topic", "a-topic"], limit).await;
        assert_eq!(seen, want, "limit {limit}");
        assert!(pages >= 5usize.div_ceil(limit as usize), "limit {limit}");
    }
    // Unknown named topics are reported; the empty list means all topics
    // (including __consumer_offsets once it exists).
    let (seen, _) = page_all(&b, &["a-topic", "zzz"], 10).await;
    assert_eq!(seen.last().unwrap(), &("zzz".to_string(), -3));
    let (seen, _) = page_all(&b, &[], 1).await;
    let (internal, user): (Vec<_>, Vec<_>) = seen
        .into_iter()
        .partition(|(t, _)| t == "__consumer_offsets");
    assert_eq!(user, want);
    assert_eq!(internal.len(), 50);
    // A cursor naming a topic outside the list is an invalid request.
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![
            describe_topic_partitions_request::TopicRequest::default().with_name(name("a-topic")),
        ])
        .with_response_partition_limit(10)
        .with_cursor(Some(
            describe_topic_partitions_request::Cursor::default().with_topic_name(name("other")),
        ));
    let r: DescribeTopicPartitionsResponse =
        call(&b, ApiKey::DescribeTopicPartitions, 0, &req).await;
    assert_eq!(r.topics[0].error_code, 42);
}

#[tokio::test]
async fn list_config_resources_lists_topics_and_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 3);
    make_topic(&b, "cfg", 1);
    let r: ListConfigResourcesResponse = call(
        &b,
        ApiKey::ListConfigResources,
        1,
        &ListConfigResourcesRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    let got: Vec<(String, i8)> = r
        .config_resources
        .iter()
        .map(|c| (c.resource_name.to_string(), c.resource_type))
        .collect();
    assert!(got.contains(&("cfg".to_string(), 2)));
    assert!(got.contains(&("1".to_string(), 4)));
    let r: ListConfigResourcesResponse = call(
        &b,
        ApiKey::ListConfigResources,
        1,
        &ListConfigResourcesRequest::default().with_resource_types(vec![4]),
    )
    .await;
    assert_eq!(r.config_resources.len(), 1);
    let r: ListConfigResourcesResponse = call(
        &b,
        ApiKey::ListConfigResources,
        1,
        &ListConfigResourcesRequest::default().with_resource_types(vec![99]),
    )
    .await;
    assert_eq!(r.error_code, 35);
    // v0 is ListClientMetricsResources: none in Fjord.
    let r: ListConfigResourcesResponse = call(
        &b,
        ApiKey::ListConfigResources,
        0,
        &ListConfigResourcesRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert!(r.config_resources.is_empty());
}
