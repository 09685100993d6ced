//! Every API at every advertised version: a request goes through
//! `handlers::dispatch` against a real broker in a temporary directory, and
//! the response must come back, parse with kafka-protocol's decoders at that
//! version, and say what the request asked for.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use fjord_broker::handlers::{dispatch, supported};
use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_protocol::{Reader, Request, RequestHeader};
use fjord_records::{BatchBuilder, Compression};

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        num_partitions: 2,
        ..BrokerConfig::default()
    })
    .unwrap()
}

/// Send `body` as (api_key, version) and return the response body bytes (after the header).
async fn call<R: Encodable>(
    broker: &Arc<Broker>,
    api_key: i16,
    version: i16,
    body: &R,
) -> Option<Bytes> {
    call_as(broker, api_key, version, version, body).await
}

/// `call`, with the body encoded by kafka-protocol at `layout_version`: a
/// version it does not know whose layout equals one it knows.
async fn call_as<R: Encodable>(
    broker: &Arc<Broker>,
    api_key: i16,
    version: i16,
    layout_version: i16,
    body: &R,
) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    body.encode(&mut buf, layout_version).unwrap();
    let header = RequestHeader {
        api_key,
        api_version: version,
        correlation_id: 42,
        client_id: Some("test".into()),
    };
    let pending = dispatch(broker, header, Reader::new(buf.freeze())).expect("request refused");
    let resp = pending.resolve().await.expect("handler died")?;
    let mut resp = resp.to_bytes().unwrap();
    let size = resp.get_i32() as usize;
    assert_eq!(size, resp.len(), "size prefix");
    assert_eq!(resp.get_i32(), 42, "correlation id");
    let header_version = fjord_protocol::response_header_version(api_key, version);
    if header_version >= 1 {
        assert_eq!(resp.get_u8(), 0, "no response header tags");
    }
    Some(resp)
}

fn decode<T: Decodable>(mut b: Bytes, version: i16) -> T {
    let v = T::decode(&mut b, version).unwrap();
    assert_eq!(b.remaining(), 0, "response has trailing bytes");
    v
}

fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    supported()
        .into_iter()
        .find(|(k, _)| *k == api_key as i16)
        .map(|(_, v)| v)
        .unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[tokio::test]
async fn every_api_at_every_advertised_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());

    for v in versions(ApiKey::ApiVersions) {
        let r: ApiVersionsResponse = decode(
            call(&b, 18, v, &ApiVersionsRequest::default())
                .await
                .unwrap(),
            v,
        );
        assert_eq!(r.error_code, 0);
        assert!(r
            .api_keys
            .iter()
            .any(|k| k.api_key == 0 && k.min_version == 0));
    }

    for v in versions(ApiKey::CreateTopics) {
        let topic = format!("created-v{v}");
        let req = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(&topic))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        ]);
        let r: CreateTopicsResponse = decode(call(&b, 19, v, &req).await.unwrap(), v);
        assert_eq!(
            r.topics[0].error_code, 0,
            "v{v}: {:?}",
            r.topics[0].error_message
        );
        // Answered at the commit: the logs may still be on their way.
        assert_eq!(b.committed_topic(&topic).unwrap().partition_count(), 2);
    }

    for v in versions(ApiKey::Metadata) {
        let topics = Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("auto")))
        ]);
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(true);
        let r: MetadataResponse = decode(call(&b, 3, v, &req).await.unwrap(), v);
        assert_eq!(r.brokers.len(), 1);
        if v == 0 {
            // The request that auto-creates the topic hears UNKNOWN_TOPIC_OR_PARTITION
            // (as from Kafka 4); the next one sees the topic whole.
            assert_eq!(r.topics[0].error_code, 3, "v{v}");
            assert!(r.topics[0].partitions.is_empty());
            continue;
        }
        assert_eq!(r.topics[0].error_code, 0, "v{v}");
        assert_eq!(r.topics[0].partitions.len(), 2);
    }

    let batch = BatchBuilder::new(Compression::None)
        .push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[])
        .build(0);
    let auto_topic_id = b.topic("auto").unwrap().id;
    for v in versions(ApiKey::Produce).filter(|v| *v >= 3) {
        // Named by id from v13 on (the name is not on the wire then).
        let topic = if v >= 13 {
            produce_request::TopicProduceData::default().with_topic_id(auto_topic_id)
        } else {
            produce_request::TopicProduceData::default().with_name(name("auto"))
        };
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![topic.with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch.clone()))),
            ])]);
        let r: ProduceResponse = decode(call(&b, 0, v, &req).await.unwrap(), v);
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "v{v}: {:?}", p.error_message);
        assert_eq!(p.base_offset, (v - 3) as i64, "offsets assigned in order");
        if v >= 13 {
            assert_eq!(r.responses[0].topic_id, auto_topic_id, "v{v} echoes the id");
        }
    }
    let produced = versions(ApiKey::Produce).filter(|v| *v >= 3).count() as i64;

    let auto_id = b.topic("auto").unwrap().id;
    for v in versions(ApiKey::Fetch) {
        // Named by id from v13 on (the name is not on the wire then).
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("auto"))
                .with_topic_id(auto_id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(1)
                    .with_partition_max_bytes(1 << 20)])]);
        let r: FetchResponse = decode(call(&b, 1, v, &req).await.unwrap(), v);
        if v >= 13 {
            assert_eq!(r.responses[0].topic_id, auto_id, "v{v}");
        } else {
            assert_eq!(&*r.responses[0].topic.0, "auto", "v{v}");
        }
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!(p.high_watermark, produced);
        let records = p.records.clone().unwrap();
        let batches: Vec<_> = fjord_records::batches(&records)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            batches.len() as i64,
            produced - 1,
            "v{v}: batches from offset 1"
        );
        assert_eq!(batches[0].0.base_offset, 1);
    }

    for v in versions(ApiKey::ListOffsets) {
        // One query per request: a partition named twice is INVALID_REQUEST, as in Kafka.
        let expected = [
            (-1, produced, "latest"),
            (-2, 0, "earliest"),
            (1_600_000_000_000, 0, "by timestamp"),
        ];
        for (timestamp, offset, what) in expected {
            let req = ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("auto"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_timestamp(timestamp)]),
            ]);
            // v11 has v10's layout; kafka-protocol 0.18 knows v10 only.
            let layout = v.min(10);
            let r: ListOffsetsResponse =
                decode(call_as(&b, 2, v, layout, &req).await.unwrap(), layout);
            let p = &r.topics[0].partitions;
            assert_eq!((p[0].error_code, p[0].offset), (0, offset), "v{v} {what}");
        }
    }

    for v in versions(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("auto")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("1")),
        ]);
        let r: DescribeConfigsResponse = decode(call(&b, 32, v, &req).await.unwrap(), v);
        assert!(
            r.results[0]
                .configs
                .iter()
                .any(|c| &*c.name == "retention.ms"),
            "v{v}: {:?}",
            r.results[0]
        );
        assert!(r.results[1]
            .configs
            .iter()
            .any(|c| &*c.name == "num.partitions"));
    }

    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("auto"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_string(format!("{}", 1000 + v)))),
                ]),
        ]);
        let r: IncrementalAlterConfigsResponse = decode(call(&b, 44, v, &req).await.unwrap(), v);
        assert_eq!(r.responses[0].error_code, 0);
        assert_eq!(
            b.topic("auto").unwrap().settings.read().retention_ms,
            Some(1000 + v as i64)
        );
    }

    for v in versions(ApiKey::AlterConfigs) {
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("auto"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("segment.bytes"))
                    .with_value(Some(StrBytes::from_static_str("1048576")))]),
        ]);
        let r: AlterConfigsResponse = decode(call(&b, 33, v, &req).await.unwrap(), v);
        assert_eq!(r.responses[0].error_code, 0);
        let t = b.topic("auto").unwrap();
        assert_eq!(t.settings.read().segment_bytes, 1_048_576);
        assert_eq!(
            t.settings.read().retention_ms,
            Some(7 * 24 * 3600 * 1000),
            "AlterConfigs replaces"
        );
    }

    for v in versions(ApiKey::CreatePartitions) {
        let want = 3 + v as i32;
        let req = CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("auto"))
                .with_count(want),
        ]);
        let r: CreatePartitionsResponse = decode(call(&b, 37, v, &req).await.unwrap(), v);
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(b.topic("auto").unwrap().partition_count(), want);
    }

    for v in versions(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("auto"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(1 + v as i64),
                ]),
        ]);
        let r: DeleteRecordsResponse = decode(call(&b, 21, v, &req).await.unwrap(), v);
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (0, 1 + v as i64));
    }

    for v in versions(ApiKey::DescribeCluster) {
        let r: DescribeClusterResponse = decode(
            call(
                &b,
                60,
                v,
                &DescribeClusterRequest::default().with_endpoint_type(1),
            )
            .await
            .unwrap(),
            v,
        );
        assert_eq!((r.error_code, r.brokers.len()), (0, 1));
    }

    let mut ids = std::collections::HashSet::new();
    for v in versions(ApiKey::InitProducerId) {
        let r: InitProducerIdResponse = decode(
            call(
                &b,
                22,
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await
            .unwrap(),
            v,
        );
        assert_eq!(r.error_code, 0);
        assert!(ids.insert(r.producer_id.0), "producer ids are unique");
    }

    for v in versions(ApiKey::DeleteTopics) {
        let topic = format!("created-v{}", 2 + (v % 6));
        let req = if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name(&topic)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let r: DeleteTopicsResponse = decode(call(&b, 20, v, &req).await.unwrap(), v);
        assert_eq!(r.responses[0].error_code, 0, "v{v} {topic}");
        assert!(b.topic(&topic).is_none());
    }
}

#[tokio::test]
async fn unknown_api_versions_version_gets_v0_answer_with_error_35() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let header = RequestHeader {
        api_key: 18,
        api_version: 99,
        correlation_id: 7,
        client_id: None,
    };
    let resp = dispatch(&b, header, Reader::new(Bytes::from_static(&[1, 2, 3])))
        .unwrap()
        .resolve()
        .await
        .unwrap()
        .unwrap();
    let mut resp = resp.to_bytes().unwrap();
    resp.advance(8);
    let r: ApiVersionsResponse = decode(resp, 0);
    assert_eq!(r.error_code, 35);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
}

#[tokio::test]
async fn topic_metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let b = broker(dir.path());
        let t = b
            .create_topic(
                "keep",
                3,
                [("retention.ms".to_string(), "5000".to_string())].into(),
                false,
            )
            .unwrap();
        b.close();
        t.id
    };
    let b = broker(dir.path());
    let t = b.topic("keep").unwrap();
    assert_eq!((t.id, t.partition_count()), (id, 3));
    assert_eq!(t.settings.read().retention_ms, Some(5000));
}

/// Pipelined OffsetCommits from one connection apply in the order sent: the
/// last one wins (librdkafka and rust-rdkafka send many async commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_offset_commits_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.create_topic("c", 1, Default::default(), false).unwrap();
    let version = 8;
    let mut pending = Vec::new();
    for offset in 1..=50i64 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("c"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]);
        let mut buf = BytesMut::new();
        req.encode(&mut buf, version).unwrap();
        let header = RequestHeader {
            api_key: 8,
            api_version: version,
            correlation_id: offset as i32,
            client_id: None,
        };
        // Dispatched back to back, as the connection's reader does; awaited later.
        pending.push(dispatch(&b, header, Reader::new(buf.freeze())).unwrap());
    }
    for p in pending {
        p.resolve().await.unwrap().unwrap();
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("c"))
                .with_partition_indexes(vec![0]),
        ]));
    let r: OffsetFetchResponse = decode(call(&b, 9, 7, &req).await.unwrap(), 7);
    assert_eq!(r.topics[0].partitions[0].committed_offset, 50);
}

/// CreatePartitions checks explicit assignments like Kafka: one per new
/// partition, naming brokers that exist.
#[tokio::test]
async fn create_partitions_checks_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.create_topic("a", 1, Default::default(), false).unwrap();
    let with = |count: i32, brokers: Vec<Vec<i32>>| {
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("a"))
                .with_count(count)
                .with_assignments(Some(
                    brokers
                        .into_iter()
                        .map(|ids| {
                            create_partitions_request::CreatePartitionsAssignment::default()
                                .with_broker_ids(ids.into_iter().map(BrokerId).collect())
                        })
                        .collect(),
                )),
        ])
    };
    let r: CreatePartitionsResponse =
        decode(call(&b, 37, 3, &with(3, vec![vec![1]])).await.unwrap(), 3);
    assert_eq!(r.results[0].error_code, 39, "too few assignments");
    let r: CreatePartitionsResponse =
        decode(call(&b, 37, 3, &with(2, vec![vec![7]])).await.unwrap(), 3);
    assert_eq!(r.results[0].error_code, 39, "unknown broker");
    assert_eq!(b.topic("a").unwrap().partition_count(), 1);
    let r: CreatePartitionsResponse = decode(
        call(&b, 37, 3, &with(3, vec![vec![1], vec![1]]))
            .await
            .unwrap(),
        3,
    );
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(b.topic("a").unwrap().partition_count(), 3);
}

/// A compacted topic refuses records without a key (INVALID_RECORD), as Kafka
/// does, and stores nothing of that batch; keyed records are accepted.
#[tokio::test]
async fn compacted_topic_refuses_keyless_records() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.create_topic(
        "table",
        1,
        [("cleanup.policy".to_string(), "compact".to_string())].into(),
        false,
    )
    .unwrap();
    let produce = |key: Option<&[u8]>, compression: Compression| {
        let batch = BatchBuilder::new(compression)
            .push(1_700_000_000_000, Some(b"k0"), Some(b"v"), &[])
            .push(1_700_000_000_000, key, Some(b"v"), &[])
            .build(0);
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name("table"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch))),
                ])])
    };
    for compression in [Compression::None, Compression::Zstd] {
        let r: ProduceResponse = decode(
            call(&b, 0, 9, &produce(None, compression)).await.unwrap(),
            9,
        );
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 87,
            "{compression:?}"
        );
    }
    assert_eq!(
        b.topic("table")
            .unwrap()
            .partition(0)
            .unwrap()
            .log
            .log_end_offset()
            .0,
        0
    );
    let r: ProduceResponse = decode(
        call(&b, 0, 9, &produce(Some(b"k1"), Compression::Zstd))
            .await
            .unwrap(),
        9,
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(
        b.topic("table")
            .unwrap()
            .partition(0)
            .unwrap()
            .log
            .log_end_offset()
            .0,
        2
    );
}

/// OffsetCommit at every advertised version answers as Kafka 4.3.1 does:
/// unknown partitions first (whatever the group's coordinator says), then
/// the coordinator's answers; a generation for a group that does not exist
/// is ILLEGAL_GENERATION before v9 and GROUP_ID_NOT_FOUND from v9 (KIP-848);
/// an empty group id takes simple commits, which OffsetFetch then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_errors_and_order_by_version() {
    use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let id = b
        .create_topic("oc", 1, Default::default(), false)
        .unwrap()
        .id;
    let commit = |v: i16, group: &str, generation: i32, parts: &[i32]| {
        let topic = if v >= 10 {
            OffsetCommitRequestTopic::default().with_topic_id(id)
        } else {
            OffsetCommitRequestTopic::default().with_name(name("oc"))
        };
        Request::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(StrBytes::from_static_str("m-1"))
                .with_topics(vec![topic.with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(7)
                        })
                        .collect(),
                )]),
        )
    };
    let answers = |r: OffsetCommitResponse| -> Vec<(i32, i16)> {
        r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect()
    };
    let vs = versions(ApiKey::OffsetCommit);
    assert!(*vs.end() >= 9, "{vs:?}");
    for v in vs {
        let r = decode(
            call_request(&b, &commit(v, "no-such-group", 5, &[0, 3]), v).await,
            v,
        );
        let group_error = if v >= 9 { 69 } else { 22 };
        assert_eq!(answers(r), vec![(3, 3), (0, group_error)], "v{v}");
        let r = decode(call_request(&b, &commit(v, "", -1, &[0]), v).await, v);
        assert_eq!(answers(r), vec![(0, 0)], "v{v}");
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("oc"))
                .with_partition_indexes(vec![0]),
        ]));
    let r: OffsetFetchResponse = decode(call(&b, 9, 7, &req).await.unwrap(), 7);
    assert_eq!(r.topics[0].partitions[0].committed_offset, 7);
}

/// OffsetCommit and OffsetFetch v10 name topics by id: a commit by id is
/// fetched back by id (and by name at v9); an unknown id is UNKNOWN_TOPIC_ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_and_fetch_by_topic_id() {
    use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let id = b
        .create_topic("byid", 1, Default::default(), false)
        .unwrap()
        .id;
    let unknown = uuid::Uuid::from_u128(7);
    let mut req = Request::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g10")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                [(unknown, 0), (id, 0)]
                    .into_iter()
                    .map(|(topic_id, p)| {
                        OffsetCommitRequestTopic::default()
                            .with_topic_id(topic_id)
                            .with_partitions(vec![OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(11)])
                    })
                    .collect(),
            ),
    );
    let r: OffsetCommitResponse = decode(call_request(&b, &req, 10).await, 10);
    let got: Vec<_> = r
        .topics
        .iter()
        .map(|t| (t.topic_id, t.partitions[0].error_code))
        .collect();
    assert_eq!(got, vec![(unknown, 100), (id, 0)]);

    req = Request::OffsetFetch(OffsetFetchRequest::default().with_groups(
        vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g10")))
            .with_topics(Some(
                [unknown, id]
                    .into_iter()
                    .map(|topic_id| {
                        OffsetFetchRequestTopics::default()
                            .with_topic_id(topic_id)
                            .with_partition_indexes(vec![0])
                    })
                    .collect(),
            ))],
    ));
    let r: OffsetFetchResponse = decode(call_request(&b, &req, 10).await, 10);
    let got: Vec<_> = r.groups[0]
        .topics
        .iter()
        .map(|t| {
            let p = &t.partitions[0];
            (t.topic_id, p.error_code, p.committed_offset)
        })
        .collect();
    assert_eq!(got, vec![(unknown, 100, -1), (id, 0, 11)]);
}

/// Sends `req` (encoded by fjord-protocol, which writes the versions
/// kafka-protocol cannot) at `version`; the response body.
async fn call_request(broker: &Arc<Broker>, req: &Request, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    req.encode(version, &mut buf).unwrap();
    let header = RequestHeader {
        api_key: req.api_key(),
        api_version: version,
        correlation_id: 42,
        client_id: Some("test".into()),
    };
    let pending = dispatch(broker, header, Reader::new(buf.freeze())).expect("request refused");
    let mut resp = pending
        .resolve()
        .await
        .expect("handler died")
        .expect("an answer")
        .to_bytes()
        .unwrap();
    let size = resp.get_i32() as usize;
    assert_eq!(size, resp.len(), "size prefix");
    assert_eq!(resp.get_i32(), 42, "correlation id");
    if fjord_protocol::response_header_version(req.api_key(), version) >= 1 {
        assert_eq!(resp.get_u8(), 0, "no response header tags");
    }
    resp
}
