//! Frames real clients send that are not exactly what the schema says, and
//! that Apache Kafka accepts anyway.

use bytes::Bytes;
use fjord_protocol::{decode_request, decode_request_header, Reader, Request};

fn hex(s: &str) -> Bytes {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    Bytes::from(bytes)
}

/// confluent-kafka-python 2.16.1 (librdkafka 2.16) `AdminClient.list_topics()`:
/// a Metadata v12 request for all topics followed by three extra bytes.
/// Kafka ignores bytes after the body; so must we.
#[test]
fn librdkafka_2_16_metadata_v12_with_trailing_bytes() {
    let frame = hex("0003000c00000003000772646b61666b610000000000010000");
    let mut r = Reader::new(frame);
    let header = decode_request_header(&mut r).unwrap();
    assert_eq!((header.api_key, header.api_version), (3, 12));
    assert_eq!(header.client_id.as_deref(), Some("rdkafka"));
    let Request::Metadata(m) = decode_request(3, 12, &mut r).unwrap() else {
        panic!("not a Metadata request");
    };
    assert_eq!(m.topics, None, "null topic array: all topics");
    assert!(!m.allow_auto_topic_creation);
    assert_eq!(r.remaining(), 3);
}
