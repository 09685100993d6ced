//! The network layer over real TCP: pipelined requests whose frames add up to
//! more than a connection's in-flight byte budget, and a single frame larger
//! than the whole budget, are all read and answered in order.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig};
use fjord_model::limits::IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_records::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PRODUCE_VERSION: i16 = 7;

/// A Produce v7 frame (size prefix included) with one batch of `mib` 1 MiB
/// records for a topic that does not exist.
fn produce_frame(correlation_id: i32, mib: usize) -> Bytes {
    let value = vec![7u8; 1024 * 1024];
    let mut builder = BatchBuilder::new(Compression::None);
    for _ in 0..mib {
        builder.push(0, None, Some(&value), &[]);
    }
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("nope")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(builder.build(0))))])]);
    let mut body = BytesMut::new();
    body.put_i16(0); // Produce
    body.put_i16(PRODUCE_VERSION);
    body.put_i32(correlation_id);
    body.put_i16(1);
    body.put_slice(b"t");
    req.encode(&mut body, PRODUCE_VERSION).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    frame.freeze()
}

async fn read_response(rd: &mut tokio::net::tcp::OwnedReadHalf) -> (i32, ProduceResponse) {
    let size = rd.read_i32().await.unwrap() as usize;
    let mut buf = vec![0u8; size];
    rd.read_exact(&mut buf).await.unwrap();
    let mut buf = Bytes::from(buf);
    let correlation_id = buf.get_i32();
    let resp = ProduceResponse::decode(&mut buf, PRODUCE_VERSION).unwrap();
    (correlation_id, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_beyond_the_in_flight_byte_budget_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker: Arc<Broker> = Broker::open_deferred(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(fjord_broker::server::serve(
        broker.clone(),
        listener,
        stop_rx,
    ));

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // Eight 6 MiB frames (three times the budget), then one frame larger than it.
    let big_mib = IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX / (1024 * 1024) + 4;
    let frames: Vec<Bytes> = (1..=8)
        .map(|id| produce_frame(id, 6))
        .chain(std::iter::once(produce_frame(9, big_mib)))
        .collect();
    let total: usize = frames.iter().map(|f| f.len()).sum();
    assert!(total > 3 * IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX);
    let writer = tokio::spawn(async move {
        for f in frames {
            wr.write_all(&f).await.unwrap();
        }
        wr
    });
    for id in 1..=9 {
        let (correlation_id, resp) =
            tokio::time::timeout(Duration::from_secs(30), read_response(&mut rd))
                .await
                .expect("answered in time");
        assert_eq!(correlation_id, id, "responses in request order");
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    }
    drop(writer.await.unwrap());
    let _ = stop_tx.send(true);
    server.await.unwrap().unwrap();
}
