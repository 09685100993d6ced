//! Fetch sessions (KIP-227) through the Fetch handler: a full fetch opens a
//! session, incremental fetches name only what changed on each side,
//! forgotten partitions leave it, and the session errors are Kafka's.

mod common;
use common::*;

use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_records::{BatchBuilder, Compression};
use uuid::Uuid;

const NOT_FOUND: i16 = 70;
const INVALID_EPOCH: i16 = 71;
const TOPIC_ID_ERROR: i16 = 106;

async fn produce(b: &Arc<Broker>, topic: &str, partition: i32, records: usize) {
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
                    .with_index(partition)
                    .with_records(Some(Bytes::from(builder.build(0)))),
            ])]);
    let r: ProduceResponse = call_at(b, 0, 9, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

fn part(p: i32, offset: i64) -> fetch_request::FetchPartition {
    fetch_request::FetchPartition::default()
        .with_partition(p)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
}

fn request(
    id: i32,
    epoch: i32,
    (topic, topic_id): (&str, Uuid),
    parts: Vec<fetch_request::FetchPartition>,
) -> FetchRequest {
    let topics = if parts.is_empty() {
        Vec::new()
    } else {
        vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_topic_id(topic_id)
            .with_partitions(parts)]
    };
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

/// (partition, high watermark, records bytes) of each partition answered.
fn answered(r: &FetchResponse) -> Vec<(i32, i64, usize)> {
    r.responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    p.partition_index,
                    p.high_watermark,
                    p.records.as_ref().map_or(0, Bytes::len),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn incremental_fetches_carry_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    for v in [7i16, 12, 13, 18] {
        let topic = format!("t{v}");
        let t = b
            .create_topic(&topic, 3, Default::default(), false)
            .unwrap();
        let t = (topic.as_str(), t.id);
        produce(&b, t.0, 0, 2).await;
        // Full fetch, epoch 0: every partition, and a session.
        let full = request(0, 0, t, vec![part(0, 0), part(1, 0), part(2, 0)]);
        let r: FetchResponse = call_at(&b, 1, v, v, &full).await;
        assert_eq!(r.error_code, 0, "v{v}");
        let id = r.session_id;
        assert!(id > 0, "v{v}: no session");
        let got = answered(&r);
        assert_eq!(got.len(), 3, "v{v}: {got:?}");
        assert!(got[0].2 > 0 && got[0].1 == 2, "v{v}: {got:?}");
        // Epoch 1, the consumer moved partition 0 to offset 2: nothing new.
        let r: FetchResponse = call_at(&b, 1, v, v, &request(id, 1, t, vec![part(0, 2)])).await;
        assert_eq!((r.error_code, r.session_id), (0, id), "v{v}");
        assert_eq!(answered(&r), vec![], "v{v}");
        // Records arrive on partition 1: only it is answered, with them.
        produce(&b, t.0, 1, 3).await;
        let r: FetchResponse = call_at(&b, 1, v, v, &request(id, 2, t, vec![])).await;
        let got = answered(&r);
        assert_eq!(got.len(), 1, "v{v}: {got:?}");
        assert_eq!((got[0].0, got[0].1), (1, 3), "v{v}");
        assert!(got[0].2 > 0, "v{v}");
        // The same epoch again: a duplicate.
        let r: FetchResponse = call_at(&b, 1, v, v, &request(id, 2, t, vec![])).await;
        assert_eq!(r.error_code, INVALID_EPOCH, "v{v}");
        assert!(r.responses.is_empty(), "v{v}");
        // Forget partitions 0 and 2; records on 0 are then not answered.
        let forget = fetch_request::ForgottenTopic::default()
            .with_topic(name(t.0))
            .with_topic_id(t.1)
            .with_partitions(vec![0, 2]);
        let r: FetchResponse = call_at(
            &b,
            1,
            v,
            v,
            &request(id, 3, t, vec![part(1, 3)]).with_forgotten_topics_data(vec![forget]),
        )
        .await;
        assert_eq!((r.error_code, answered(&r)), (0, vec![]), "v{v}");
        produce(&b, t.0, 0, 1).await;
        let r: FetchResponse = call_at(&b, 1, v, v, &request(id, 4, t, vec![])).await;
        assert_eq!((r.error_code, answered(&r)), (0, vec![]), "v{v}");
        // Topic naming must not change within a session (v12 names, v13 ids).
        let other = if v >= 13 { 12 } else { 13 };
        let r: FetchResponse = call_at(&b, 1, other, other, &request(id, 5, t, vec![])).await;
        assert_eq!(r.error_code, TOPIC_ID_ERROR, "v{v} then v{other}");
        // A full fetch naming the session closes it (epoch -1: no new one).
        let r: FetchResponse = call_at(&b, 1, v, v, &request(id, -1, t, vec![part(1, 0)])).await;
        assert_eq!((r.error_code, r.session_id), (0, 0), "v{v}");
        let r: FetchResponse = call_at(&b, 1, v, v, &request(id, 5, t, vec![])).await;
        assert_eq!(r.error_code, NOT_FOUND, "v{v}");
    }
}

#[tokio::test]
async fn a_full_cache_opens_no_session_and_zero_slots_none_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        fetch_session_cache_slots: 2,
        ..BrokerConfig::default()
    })
    .unwrap();
    let t = b.create_topic("t", 1, Default::default(), false).unwrap();
    let t = ("t", t.id);
    let full = request(0, 0, t, vec![part(0, 0)]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r: FetchResponse = call_at(&b, 1, 13, 13, &full).await;
        assert!(r.session_id > 0);
        ids.push(r.session_id);
    }
    assert_ne!(ids[0], ids[1]);
    // Both young: a third consumer session finds no room, and is served.
    let r: FetchResponse = call_at(&b, 1, 13, 13, &full).await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(r.responses[0].partitions.len(), 1);
    // The two sessions still work.
    for id in ids {
        let r: FetchResponse = call_at(&b, 1, 13, 13, &request(id, 1, t, vec![])).await;
        assert_eq!((r.error_code, r.session_id), (0, id));
    }
    b.close();

    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        fetch_session_cache_slots: 0,
        ..BrokerConfig::default()
    })
    .unwrap();
    let t = b.create_topic("t", 1, Default::default(), false).unwrap();
    let t = ("t", t.id);
    let r: FetchResponse = call_at(&b, 1, 13, 13, &request(0, 0, t, vec![part(0, 0)])).await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    b.close();
}
