//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod samples;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::RequestHeader as KpRequestHeader;
use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_protocol::{
    decode_request, decode_request_header, request_header_version, Reader, Request,
};

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Unknown tagged fields to attach to a struct in flexible versions.
pub fn extra_tags(flexible: bool, tag: i32) -> BTreeMap<i32, Bytes> {
    let mut m = BTreeMap::new();
    if flexible {
        m.insert(tag, Bytes::from(vec![tag as u8, 0xab, 0xcd]));
    }
    m
}

/// Encodes `req` at `version` with kafka-protocol.
pub fn encode_body(req: &Request, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    req.encode(version, &mut buf)
        .unwrap_or_else(|e| panic!("kafka-protocol cannot encode {req:?} v{version}: {e}"));
    buf.freeze()
}

/// Header + body, as a client sends it (without the size prefix).
pub fn encode_frame(req: &Request, version: i16, correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::new();
    let mut h = KpRequestHeader::default();
    h.request_api_key = req.api_key();
    h.request_api_version = version;
    h.correlation_id = correlation_id;
    h.client_id = Some(s("fjord-test"));
    h.encode(&mut buf, request_header_version(req.api_key(), version))
        .expect("header encodes");
    buf.extend_from_slice(&encode_body(req, version));
    buf.freeze()
}

/// Encodes with kafka-protocol, decodes with ours, and checks: equal value,
/// identical re-encoding, the same through a whole frame with header, and
/// that every strict prefix of the body fails cleanly.
pub fn roundtrip(req: &Request, version: i16) {
    let key = req.api_key();
    let body = encode_body(req, version);
    let mut r = Reader::new(body.clone());
    let decoded = decode_request(key, version, &mut r)
        .unwrap_or_else(|e| panic!("api {key} v{version}: {e}\n{req:?}"));
    assert_eq!(&decoded, req, "api {key} v{version}");
    assert_eq!(
        encode_body(&decoded, version),
        body,
        "re-encoding api {key} v{version}"
    );

    let frame = encode_frame(req, version, 0x0102_0304);
    let mut r = Reader::new(frame);
    let header = decode_request_header(&mut r).expect("header decodes");
    assert_eq!(header.api_key, key);
    assert_eq!(header.api_version, version);
    assert_eq!(header.correlation_id, 0x0102_0304);
    assert_eq!(header.client_id.as_deref(), Some("fjord-test"));
    let from_frame = decode_request(header.api_key, header.api_version, &mut r)
        .unwrap_or_else(|e| panic!("api {key} v{version} in a frame: {e}"));
    assert_eq!(&from_frame, req);

    for cut in 0..body.len() {
        let mut r = Reader::new(body.slice(..cut));
        assert!(
            decode_request(key, version, &mut r).is_err(),
            "api {key} v{version} decoded from {cut} of {} bytes",
            body.len()
        );
    }
    // Trailing bytes are ignored (as Kafka does), and left in the reader.
    let mut longer = BytesMut::from(&body[..]);
    longer.extend_from_slice(&[1, 0, 0]);
    let mut r = Reader::new(longer.freeze());
    assert!(
        decode_request(key, version, &mut r).is_ok(),
        "trailing bytes rejected for api {key} v{version}"
    );
    assert_eq!(
        r.remaining(),
        3,
        "api {key} v{version} consumed trailing bytes"
    );
}

/// The versions fjord-protocol decodes for `api_key`.
pub fn versions(api_key: i16) -> std::ops::RangeInclusive<i16> {
    let a = fjord_protocol::SUPPORTED_APIS
        .iter()
        .find(|a| a.api_key == api_key)
        .expect("api is supported");
    a.min_version..=a.max_version
}
