//! Unit tests: request encoding checked against Fjord's own (independent)
//! request decoders, response decoding against responses encoded the way the
//! broker encodes them, and correlation matching against a scripted broker
//! on an in-memory stream.

use bytes::{Buf, Bytes, BytesMut};
use fjord_model::{Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use fjord_protocol::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_protocol::{decode_request, decode_request_header, encode_response, Reader};
use fjord_records::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::{
    decode_response, encode_request, Acks, ClientError, Connection, ConnectionOptions, TopicRef,
};

fn batch() -> Bytes {
    let mut b = BatchBuilder::new(Compression::Lz4);
    b.push(1_700_000_000_000, Some(b"k"), Some(b"value"), &[]);
    Bytes::from(b.build(0))
}

fn produce_request() -> ProduceRequest {
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 1234;
    req.topic_data = vec![produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partition_data(vec![produce_request::PartitionProduceData::default()
            .with_index(2)
            .with_records(Some(batch()))])];
    req
}

/// Strips the size prefix and decodes the frame with the broker's decoders.
fn broker_decode(frame: BytesMut) -> (fjord_protocol::RequestHeader, fjord_protocol::Request) {
    let mut frame = frame.freeze();
    let size = frame.get_i32() as usize;
    assert_eq!(size, frame.len(), "size prefix");
    let mut r = Reader::new(frame);
    let header = decode_request_header(&mut r).unwrap();
    let body = decode_request(header.api_key, header.api_version, &mut r).unwrap();
    (header, body)
}

#[test]
fn produce_request_round_trips_through_the_brokers_decoder() {
    for version in [3, 8, 9, 11] {
        let frame = encode_request(&produce_request(), version, 77, "bench-1").unwrap();
        let (header, body) = broker_decode(frame);
        assert_eq!(header.api_key, ApiKey::Produce as i16);
        assert_eq!(header.api_version, version);
        assert_eq!(header.correlation_id, 77);
        assert_eq!(header.client_id.as_deref(), Some("bench-1"));
        let fjord_protocol::Request::Produce(p) = body else {
            panic!("not a produce request")
        };
        assert_eq!(p, produce_request(), "version {version}");
    }
}

#[test]
fn fetch_metadata_and_list_offsets_round_trip() {
    let mut fetch = FetchRequest::default();
    fetch.max_wait_ms = 100;
    fetch.topics = vec![fetch_request::FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![fetch_request::FetchPartition::default()
            .with_partition(1)
            .with_fetch_offset(42)
            .with_partition_max_bytes(1 << 20)])];
    for version in [4, 11, 12] {
        let (_, body) = broker_decode(encode_request(&fetch, version, 1, "c").unwrap());
        let fjord_protocol::Request::Fetch(f) = body else {
            panic!("not a fetch")
        };
        assert_eq!(f.topics, fetch.topics);
        assert_eq!(f.max_wait_ms, 100);
    }
    let mut md = MetadataRequest::default();
    md.topics = Some(vec![metadata_request::MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]);
    for version in [1, 9, 12] {
        let (_, body) = broker_decode(encode_request(&md, version, 1, "c").unwrap());
        let fjord_protocol::Request::Metadata(m) = body else {
            panic!("not metadata")
        };
        assert_eq!(m.topics, md.topics);
    }
    let mut lo = ListOffsetsRequest::default();
    lo.replica_id = BrokerId(-1);
    lo.topics = vec![list_offsets_request::ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2)
        ])];
    let (_, body) = broker_decode(encode_request(&lo, 7, 1, "c").unwrap());
    let fjord_protocol::Request::ListOffsets(l) = body else {
        panic!("not list offsets")
    };
    assert_eq!(l.topics, lo.topics);
}

fn produce_response(base_offset: i64) -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(2)
            .with_base_offset(base_offset)])])
}

/// A response frame as the broker writes it, without the size prefix.
fn response_frame<R: Encodable>(correlation_id: i32, api: ApiKey, version: i16, body: &R) -> Bytes {
    let mut out = BytesMut::new();
    let hv = fjord_protocol::response_header_version(api as i16, version);
    encode_response(correlation_id, hv, body, version, &mut out).unwrap();
    out.freeze().slice(4..)
}

#[test]
fn responses_decode_at_flexible_and_classic_header_versions() {
    for version in [3, 8, 9, 11] {
        let frame = response_frame(5, ApiKey::Produce, version, &produce_response(99));
        let (cid, body) = decode_response::<ProduceResponse>(frame, version).unwrap();
        assert_eq!(cid, 5);
        assert_eq!(body, produce_response(99));
    }
    // A truncated frame is an error, not a panic.
    let frame = response_frame(5, ApiKey::Produce, 9, &produce_response(99));
    let cut = frame.slice(..frame.len() - 3);
    assert!(decode_response::<ProduceResponse>(cut, 9).is_err());
}

// ---- a scripted broker on an in-memory stream ----

async fn read_frame(s: &mut DuplexStream) -> Option<(fjord_protocol::RequestHeader, Reader)> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut buf).await.ok()?;
    let mut r = Reader::new(Bytes::from(buf));
    let header = decode_request_header(&mut r).unwrap();
    Some((header, r))
}

async fn write_response<R: Encodable>(
    s: &mut DuplexStream,
    header: &fjord_protocol::RequestHeader,
    body: &R,
) {
    let mut out = BytesMut::new();
    let hv = fjord_protocol::response_header_version(header.api_key, header.api_version);
    encode_response(
        header.correlation_id,
        hv,
        body,
        header.api_version,
        &mut out,
    )
    .unwrap();
    s.write_all(&out).await.unwrap();
}

fn connection(options: ConnectionOptions) -> (Connection, DuplexStream) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(client);
    (Connection::from_io("test-broker", r, w, options), server)
}

fn metadata_response(cluster: &str) -> MetadataResponse {
    MetadataResponse::default().with_cluster_id(Some(StrBytes::from_string(cluster.to_string())))
}

#[tokio::test]
async fn responses_are_matched_by_correlation_id_even_out_of_order() {
    let (conn, mut server) = connection(ConnectionOptions::default());
    let broker = tokio::spawn(async move {
        let mut requests = Vec::new();
        for _ in 0..3 {
            requests.push(read_frame(&mut server).await.unwrap().0);
        }
        // Answer in reverse order, naming each request in the cluster id.
        for h in requests.iter().rev() {
            let body = metadata_response(&format!("for-{}", h.correlation_id));
            write_response(&mut server, h, &body).await;
        }
        server
    });
    let mut pending = Vec::new();
    for _ in 0..3 {
        pending.push(conn.send(&MetadataRequest::default(), 9).await.unwrap());
    }
    for (i, p) in pending.into_iter().enumerate() {
        let resp = p.wait().await.unwrap();
        assert_eq!(resp.cluster_id.unwrap().as_str(), format!("for-{i}"));
    }
    let _server = broker.await.unwrap();
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn acks_zero_expects_no_response_and_later_requests_still_match() {
    let (conn, mut server) = connection(ConnectionOptions::default());
    let broker = tokio::spawn(async move {
        let (h0, _) = read_frame(&mut server).await.unwrap();
        assert_eq!(h0.api_key, ApiKey::Produce as i16);
        let (h1, _) = read_frame(&mut server).await.unwrap();
        assert_eq!(h1.correlation_id, h0.correlation_id + 1);
        write_response(&mut server, &h1, &metadata_response("after-acks-0")).await;
        server
    });
    // Versions are not negotiated on this scripted connection; send directly.
    conn.send_without_response(&produce_request(), 9)
        .await
        .unwrap();
    let resp = conn
        .send(&MetadataRequest::default(), 9)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(resp.cluster_id.unwrap().as_str(), "after-acks-0");
    let _server = broker.await.unwrap();
}

#[tokio::test]
async fn an_unknown_correlation_id_closes_the_connection() {
    let (conn, mut server) = connection(ConnectionOptions::default());
    let broker = tokio::spawn(async move {
        let (mut h, _) = read_frame(&mut server).await.unwrap();
        h.correlation_id += 1000;
        write_response(&mut server, &h, &metadata_response("stray")).await;
        server
    });
    let err = conn
        .send(&MetadataRequest::default(), 9)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Disconnected { reason, .. } if reason.contains("matches no request")),
        "{err}"
    );
    let _server = broker.await.unwrap();
    assert!(conn.is_closed());
    // Later requests fail at once.
    assert!(conn.send(&MetadataRequest::default(), 9).await.is_err());
}

#[tokio::test]
async fn an_oversized_frame_is_refused_before_allocating() {
    let (conn, mut server) = connection(ConnectionOptions::default());
    let broker = tokio::spawn(async move {
        let _ = read_frame(&mut server).await.unwrap();
        server.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
        server
    });
    let err = conn
        .send(&MetadataRequest::default(), 9)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    let _server = broker.await.unwrap();
}

#[tokio::test]
async fn a_silent_broker_times_out() {
    let options = ConnectionOptions {
        request_timeout_ms: 50,
        ..ConnectionOptions::default()
    };
    let (conn, _server) = connection(options);
    let err = conn
        .send(&MetadataRequest::default(), 9)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.is_retriable());
}

#[tokio::test]
async fn negotiation_falls_back_when_apiversions_v3_is_refused() {
    let (conn, mut server) = connection(ConnectionOptions::default());
    let broker = tokio::spawn(async move {
        // First attempt: v3, refused in the v0 format with our range.
        let (h, _) = read_frame(&mut server).await.unwrap();
        assert_eq!(h.api_version, 3);
        let refusal = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_max_version(2)]);
        let mut out = BytesMut::new();
        encode_response(h.correlation_id, 0, &refusal, 0, &mut out).unwrap();
        server.write_all(&out).await.unwrap();
        // Second attempt: v2.
        let (h, _) = read_frame(&mut server).await.unwrap();
        assert_eq!(h.api_version, 2);
        let ok = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::Produce as i16)
                .with_min_version(3)
                .with_max_version(9),
            ApiVersion::default()
                .with_api_key(ApiKey::Fetch as i16)
                .with_min_version(4)
                .with_max_version(11),
        ]);
        write_response(&mut server, &h, &ok).await;
        server
    });
    conn.negotiate().await.unwrap();
    assert_eq!(conn.version(ApiKey::Produce).unwrap(), 9);
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 11);
    let err = conn.version(ApiKey::Metadata).unwrap_err();
    assert!(matches!(err, ClientError::Unsupported { .. }), "{err}");
    let _server = broker.await.unwrap();
}

#[tokio::test]
async fn produce_maps_partition_results_and_errors() {
    let (conn, mut server) = connection(ConnectionOptions::default());
    let broker = tokio::spawn(async move {
        let (h, _) = read_frame(&mut server).await.unwrap();
        let ok = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::Produce as i16)
            .with_min_version(3)
            .with_max_version(11)]);
        write_response(&mut server, &h, &ok).await;
        let (h, mut body) = read_frame(&mut server).await.unwrap();
        assert_eq!(h.api_version, 11);
        let fjord_protocol::Request::Produce(p) =
            decode_request(h.api_key, h.api_version, &mut body).unwrap()
        else {
            panic!("not produce")
        };
        assert_eq!(p.acks, -1);
        write_response(&mut server, &h, &produce_response(500)).await;
        let (h, _) = read_frame(&mut server).await.unwrap();
        let mut failed = produce_response(0);
        failed.responses[0].partition_responses[0].error_code = 29;
        write_response(&mut server, &h, &failed).await;
        server
    });
    conn.negotiate().await.unwrap();
    let topic = TopicRef {
        name: "orders".into(),
        id: uuid::Uuid::nil(),
    };
    let acked = conn
        .produce(&topic, Acks::All, 1000, vec![(PartitionIndex(2), batch())])
        .await
        .unwrap()
        .wait_ok(1)
        .await
        .unwrap();
    assert_eq!(acked[0].base_offset, Offset(500));
    let err = conn
        .produce(&topic, Acks::All, 1000, vec![(PartitionIndex(2), batch())])
        .await
        .unwrap()
        .wait_ok(1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(29));
    assert!(
        err.to_string().contains("TOPIC_AUTHORIZATION_FAILED"),
        "{err}"
    );
    let _server = broker.await.unwrap();
}

#[tokio::test]
async fn an_in_flight_slot_frees_when_the_response_arrives() {
    let options = ConnectionOptions {
        in_flight_max: 1,
        ..ConnectionOptions::default()
    };
    let (conn, mut server) = connection(options);
    let first = conn.send(&MetadataRequest::default(), 9).await.unwrap();
    // The only slot is taken: a second send waits.
    let blocked = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        conn.send(&MetadataRequest::default(), 9),
    )
    .await;
    assert!(blocked.is_err(), "second request went out past the limit");
    // Answer the first; its slot frees although nobody has read it yet.
    let (h, _) = read_frame(&mut server).await.unwrap();
    write_response(&mut server, &h, &metadata_response("first")).await;
    let second = conn.send(&MetadataRequest::default(), 9).await.unwrap();
    let (h2, _) = read_frame(&mut server).await.unwrap();
    write_response(&mut server, &h2, &metadata_response("second")).await;
    assert_eq!(
        first.wait().await.unwrap().cluster_id.unwrap().as_str(),
        "first"
    );
    assert_eq!(
        second.wait().await.unwrap().cluster_id.unwrap().as_str(),
        "second"
    );
}
