//! Produce through `handlers::dispatch`: idempotent retries answered with the original
//! offsets, sequence and epoch errors as Kafka codes, and Produce v13 topic ids.

mod common;
use common::*;

use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::Broker;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_records::{BatchBuilder, Compression};

fn batch(pid: i64, epoch: i16, seq: i32, records: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).producer(pid, epoch, seq);
    for i in 0..records {
        b.push(1_700_000_000_000 + i as i64, Some(b"k"), Some(b"v"), &[]);
    }
    Bytes::from(b.build(0))
}

fn produce(topic: produce_request::TopicProduceData, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![topic.with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records)),
        ])])
}

fn by_name(name: &str) -> produce_request::TopicProduceData {
    produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
}

/// (error code, base offset) of the only partition.
async fn send(b: &Arc<Broker>, v: i16, req: &ProduceRequest) -> (i16, i64) {
    let r: ProduceResponse = call(b, ApiKey::Produce as i16, v, req).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn idempotent_retries_sequences_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("idem", 1, Default::default(), false)
        .unwrap();
    let init: InitProducerIdResponse = call(
        &b,
        ApiKey::InitProducerId as i16,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    for v in [3, 9, 12] {
        let log = b.topic("idem").unwrap().partition(0).unwrap().log.clone();
        let end = log.log_end_offset().0;
        let seq = i32::try_from(end).unwrap();
        let first = produce(by_name("idem"), batch(pid, epoch, seq, 3));
        assert_eq!(send(&b, v, &first).await, (0, end), "v{v}");
        // The same request again: same offset, nothing appended.
        assert_eq!(send(&b, v, &first).await, (0, end), "v{v} retry");
        assert_eq!(log.log_end_offset().0, end + 3);
        // A gap.
        let gap = produce(by_name("idem"), batch(pid, epoch, seq + 4, 1));
        assert_eq!(
            send(&b, v, &gap).await.0,
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.0
        );
    }
    // A new epoch starts at 0 and fences the old one.
    let bumped = produce(by_name("idem"), batch(pid, epoch + 1, 0, 1));
    assert_eq!(send(&b, 12, &bumped).await.0, 0);
    let old = produce(by_name("idem"), batch(pid, epoch, 9, 1));
    assert_eq!(
        send(&b, 12, &old).await.0,
        ErrorCode::INVALID_PRODUCER_EPOCH.0
    );
}

#[tokio::test]
async fn produce_v13_names_topics_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("ids", 1, Default::default(), false).unwrap();
    let id = b.topic("ids").unwrap().id;
    let plain = Bytes::from(
        BatchBuilder::new(Compression::None)
            .push(1, Some(b"k"), Some(b"v"), &[])
            .build(0),
    );
    let by_id = |id| produce_request::TopicProduceData::default().with_topic_id(id);
    let r: ProduceResponse = call(
        &b,
        ApiKey::Produce as i16,
        13,
        &produce(by_id(id), plain.clone()),
    )
    .await;
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let unknown = uuid::Uuid::from_u128(12345);
    let r: ProduceResponse = call(
        &b,
        ApiKey::Produce as i16,
        13,
        &produce(by_id(unknown), plain.clone()),
    )
    .await;
    assert_eq!(r.responses[0].topic_id, unknown);
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_ID.0
    );
    // Known id, unknown partition.
    let mut req = produce(by_id(id), plain);
    req.topic_data[0].partition_data[0].index = 5;
    let r: ProduceResponse = call(&b, ApiKey::Produce as i16, 13, &req).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0
    );
    assert_eq!(
        b.topic("ids")
            .unwrap()
            .partition(0)
            .unwrap()
            .log
            .log_end_offset()
            .0,
        1
    );
}

#[tokio::test]
async fn keyless_records_on_compacted_topics_are_named_in_record_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    let overrides = [("cleanup.policy".to_string(), "compact".to_string())]
        .into_iter()
        .collect();
    b.create_topic("compact", 1, overrides, false).unwrap();
    let records = Bytes::from(
        BatchBuilder::new(Compression::None)
            .push(1, Some(b"k"), Some(b"v"), &[])
            .push(1, None, Some(b"v"), &[])
            .push(1, Some(b"k"), Some(b"v"), &[])
            .push(1, None, Some(b"v"), &[])
            .build(0),
    );
    for v in [7, 8, 12] {
        let r: ProduceResponse = call(
            &b,
            ApiKey::Produce as i16,
            v,
            &produce(by_name("compact"), records.clone()),
        )
        .await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ErrorCode::INVALID_RECORD.0, "v{v}");
        let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        let expected: Vec<i32> = if v >= 8 { vec![1, 3] } else { vec![] };
        assert_eq!(indexes, expected, "v{v}");
    }
}
