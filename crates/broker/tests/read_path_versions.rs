//! The read path at the versions Apache Kafka 4.3.1 serves: ListOffsets'
//! special timestamps per version, Fetch by topic id (v13+), Metadata v13.
//! Expected answers are the ones a Kafka 4.3.1 broker without tiered storage
//! gives to the same requests.

mod common;
use common::*;

use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::Broker;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_records::{BatchBuilder, Compression};
use uuid::Uuid;

async fn produce(b: &Arc<Broker>, topic: &str, records: usize) {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        builder.push(1_700_000_000_000 + i as i64, None, Some(b"v"), &[]);
    }
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(builder.build(0)))),
            ])]);
    let r: ProduceResponse = call_at(b, 0, 9, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// (error, timestamp, offset, leader epoch) for one ListOffsets timestamp.
async fn list_offset(b: &Arc<Broker>, version: i16, timestamp: i64) -> (i16, i64, i64, i32) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp),
            ])]);
    let layout = version.min(10);
    let r: ListOffsetsResponse = call_at(b, 2, version, layout, &req).await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.timestamp, p.offset, p.leader_epoch)
}

#[tokio::test]
async fn list_offsets_special_timestamps_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 1, Default::default(), false).unwrap();
    produce(&b, "t", 5).await;
    let unsupported = (35, -1, -1, -1);
    let nothing = (0, -1, -1, -1);
    for v in 1..=11i16 {
        // The leader epoch field exists from v4 on.
        let epoch = if v >= 4 { 0 } else { -1 };
        assert_eq!(
            list_offset(&b, v, -1).await,
            (0, -1, 5, epoch),
            "v{v} latest"
        );
        assert_eq!(
            list_offset(&b, v, -2).await,
            (0, -1, 0, epoch),
            "v{v} earliest"
        );
        let max_ts = (0, 1_700_000_000_004, 4, epoch);
        let want = |first: i16, found| if v >= first { found } else { unsupported };
        assert_eq!(list_offset(&b, v, -3).await, want(7, max_ts), "v{v} max");
        assert_eq!(
            list_offset(&b, v, -4).await,
            want(8, (0, -1, 0, epoch)),
            "v{v} earliest local"
        );
        assert_eq!(
            list_offset(&b, v, -5).await,
            want(9, nothing),
            "v{v} tiered"
        );
        assert_eq!(
            list_offset(&b, v, -6).await,
            want(11, nothing),
            "v{v} pending upload"
        );
        for ts in [-7, -100, i64::MIN] {
            assert_eq!(list_offset(&b, v, ts).await, unsupported, "v{v} ts {ts}");
        }
        assert_eq!(
            list_offset(&b, v, 1_700_000_000_002).await,
            (0, 1_700_000_000_002, 2, epoch),
            "v{v} by time"
        );
        assert_eq!(list_offset(&b, v, i64::MAX).await, nothing, "v{v} future");
    }
}

/// (topic id, partition, error, high watermark, record bytes) per partition.
async fn fetch(
    b: &Arc<Broker>,
    version: i16,
    topic: &str,
    id: Uuid,
    partitions: &[i32],
) -> (Vec<(Uuid, i32, i16, i64, usize)>, FetchResponse) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_topic_id(id)
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        fetch_request::FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let r: FetchResponse = call_at(b, 1, version, version, &req).await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    let mut out = Vec::new();
    for t in &r.responses {
        for p in &t.partitions {
            out.push((
                t.topic_id,
                p.partition_index,
                p.error_code,
                p.high_watermark,
                p.records.as_ref().map_or(0, |r| r.len()),
            ));
        }
    }
    (out, r)
}

#[tokio::test]
async fn fetch_by_topic_id_from_v13() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    let t = b.create_topic("t", 2, Default::default(), false).unwrap();
    produce(&b, "t", 3).await;
    let unknown = Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);
    for v in 13..=18i16 {
        let (parts, r) = fetch(&b, v, "", t.id, &[0, 1, 7]).await;
        assert_eq!(parts[0].0, t.id, "v{v}");
        assert_eq!((parts[0].1, parts[0].2, parts[0].3), (0, 0, 3), "v{v}");
        assert!(parts[0].4 > 0, "v{v} has records");
        assert_eq!(
            (parts[1].2, parts[1].3, parts[1].4),
            (0, 0, 0),
            "v{v} empty"
        );
        assert_eq!(parts[2].2, 3, "v{v} unknown partition");
        // v16's leader hints are for NOT_LEADER_OR_FOLLOWER only: none here.
        assert!(r.node_endpoints.is_empty(), "v{v}");
        assert!(r.responses[0]
            .partitions
            .iter()
            .all(|p| p.current_leader.leader_id.0 == -1));

        for id in [unknown, Uuid::nil()] {
            let (parts, _) = fetch(&b, v, "t", id, &[0, 1]).await;
            assert_eq!(parts.len(), 2);
            for p in parts {
                assert_eq!((p.0, p.2, p.4), (id, 100, 0), "v{v} unknown topic id");
            }
        }
    }
    // Up to v12 the name counts and the id is not on the wire.
    let (parts, r) = fetch(&b, 12, "t", Uuid::nil(), &[0]).await;
    assert_eq!((parts[0].2, parts[0].3), (0, 3));
    assert_eq!(&*r.responses[0].topic.0, "t");
    let (parts, _) = fetch(&b, 12, "nope", t.id, &[0]).await;
    assert_eq!(parts[0].2, 3, "unknown topic name");
}

#[tokio::test]
async fn metadata_v13_has_top_level_error_code_zero() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    let t = b.create_topic("t", 1, Default::default(), false).unwrap();
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
        metadata_request::MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(Uuid::from_u128(5)),
    ]));
    let r: MetadataResponse = call_at(&b, 3, 13, 13, &req).await;
    assert_eq!(r.error_code, 0);
    assert_eq!((r.topics[0].error_code, r.topics[0].topic_id), (0, t.id));
    assert_eq!(r.topics[1].error_code, 100);
}

/// Kafka 4.3.1's maxima for the read path are advertised.
#[test]
fn advertised_maxima_match_kafka_4_3() {
    let supported = fjord_broker::handlers::supported();
    let max = |key: ApiKey| {
        supported
            .iter()
            .find(|(k, _)| *k == key as i16)
            .map(|(_, v)| *v.end())
    };
    assert_eq!(max(ApiKey::Fetch), Some(18));
    assert_eq!(max(ApiKey::ListOffsets), Some(11));
    assert_eq!(max(ApiKey::Metadata), Some(13));
}

/// The partition decides the leader epoch checks of Fetch and ListOffsets:
/// on one node the epoch is 0; -1 (unknown) and 0 are served, a newer epoch
/// is UNKNOWN_LEADER_EPOCH (75), an older one FENCED_LEADER_EPOCH (74), and
/// the high watermark is stated with either error.
#[tokio::test]
async fn leader_epoch_checks_are_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 1, Default::default(), false).unwrap();
    produce(&b, "t", 4).await;
    for (epoch, want) in [(-1, 0), (0, 0), (1, 75), (7, 75), (-2, 74)] {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("t"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(epoch)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let r: FetchResponse = call_at(&b, 1, 12, 12, &req).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, want, "fetch with epoch {epoch}");
        assert_eq!(p.high_watermark, 4, "fetch with epoch {epoch}");
        let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
        assert_eq!(has_records, want == 0, "fetch with epoch {epoch}");

        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_current_leader_epoch(epoch)
                        .with_timestamp(-1),
                ])]);
        let r: ListOffsetsResponse = call_at(&b, 2, 9, 9, &req).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, want, "list offsets with epoch {epoch}");
        let offset = if want == 0 { 4 } else { -1 };
        assert_eq!(p.offset, offset, "list offsets with epoch {epoch}");
    }
}

/// A full fetch is one with session epoch 0 or -1, whatever session id it
/// names (Kafka's `FetchMetadata::isFull`): served with records on every
/// version we advertise, with session id 0 for epoch -1 (and before v7) and
/// a new session's id for epoch 0. Any other epoch is an incremental fetch
/// in a session we never created: FETCH_SESSION_ID_NOT_FOUND (70).
#[tokio::test]
async fn sessionless_fetch_is_a_full_fetch_on_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    let t = b.create_topic("t", 1, Default::default(), false).unwrap();
    produce(&b, "t", 3).await;
    let fetch_with = |session_id: i32, session_epoch: i32| {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_id(session_id)
            .with_session_epoch(session_epoch)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("t"))
                .with_topic_id(t.id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let served = versions(ApiKey::Fetch);
    assert_eq!(*served.start(), 4);
    for v in served {
        // Before v7 the session fields are not on the wire (they decode as 0 and -1).
        let sessions: &[(i32, i32)] = if v >= 7 {
            &[(-1, -1), (0, -1), (0, 0), (42, 0), (42, -1)]
        } else {
            &[(0, -1)]
        };
        for &(id, epoch) in sessions {
            let r: FetchResponse = call_at(&b, 1, v, v, &fetch_with(id, epoch)).await;
            assert_eq!(r.error_code, 0, "v{v} ({id}, {epoch})");
            if epoch == 0 {
                assert!(r.session_id > 0, "v{v} ({id}, {epoch}): {}", r.session_id);
            } else {
                assert_eq!(r.session_id, 0, "v{v} ({id}, {epoch})");
            }
            let p = &r.responses[0].partitions[0];
            assert_eq!(
                (p.error_code, p.high_watermark),
                (0, 3),
                "v{v} ({id}, {epoch})"
            );
            assert!(
                p.records.as_ref().is_some_and(|r| !r.is_empty()),
                "v{v} ({id}, {epoch}) has records"
            );
        }
        if v >= 7 {
            for (id, epoch) in [(42, 1), (0, 1), (-1, 5), (42, -2)] {
                let r: FetchResponse = call_at(&b, 1, v, v, &fetch_with(id, epoch)).await;
                assert_eq!(r.error_code, 70, "v{v} incremental ({id}, {epoch})");
                assert!(r.responses.is_empty(), "v{v} incremental ({id}, {epoch})");
            }
        }
    }
}
