//! Request headers, header-version rules, framing and response encoding.

use bytes::{BufMut, Bytes, BytesMut};
use fjord_model::limits::FRAME_BYTES_MAX;
use fjord_protocol::kafka_protocol::messages::api_versions_response::{
    ApiVersion, ApiVersionsResponse,
};
use fjord_protocol::kafka_protocol::messages::metadata_response::MetadataResponse;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable};
use fjord_protocol::{
    decode_request, decode_request_header, encode_response, frame_len, request_header_version,
    response_header_version, DecodeError, EncodeError, FrameError, Reader, RequestHeader,
};

#[test]
fn header_versions_follow_flexibility() {
    assert_eq!(request_header_version(18, 0), 1);
    assert_eq!(request_header_version(18, 2), 1);
    assert_eq!(request_header_version(18, 3), 2);
    // A future ApiVersions version is flexible too.
    assert_eq!(request_header_version(18, 9), 2);
    assert_eq!(request_header_version(0, 8), 1);
    assert_eq!(request_header_version(0, 9), 2);
    assert_eq!(request_header_version(1, 11), 1);
    assert_eq!(request_header_version(1, 12), 2);
    assert_eq!(request_header_version(47, 0), 1); // OffsetDelete is never flexible
    assert_eq!(request_header_version(60, 0), 2); // DescribeCluster always is
    assert_eq!(request_header_version(12345, 0), 1);

    for v in 0..=10 {
        assert_eq!(response_header_version(18, v), 0, "ApiVersions v{v}");
    }
    assert_eq!(response_header_version(3, 8), 0);
    assert_eq!(response_header_version(3, 9), 1);
    assert_eq!(response_header_version(1, 12), 1);
    assert_eq!(response_header_version(47, 0), 0);
}

fn header_bytes(key: i16, version: i16, correlation_id: i32, client_id: Option<&str>) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(correlation_id);
    match client_id {
        Some(c) => {
            b.put_i16(c.len() as i16);
            b.put_slice(c.as_bytes());
        }
        None => b.put_i16(-1),
    }
    b
}

#[test]
fn header_v1_and_v2_decode() {
    let mut b = header_bytes(3, 1, 42, None);
    b.put_i32(0); // Metadata v1 body: empty topic array
    let mut r = Reader::new(b.freeze());
    let h = decode_request_header(&mut r).expect("header");
    assert_eq!(
        h,
        RequestHeader {
            api_key: 3,
            api_version: 1,
            correlation_id: 42,
            client_id: None
        }
    );
    assert_eq!(r.remaining(), 4);

    // v2: classic client id, then a tagged section holding one unknown tag.
    let mut b = header_bytes(18, 3, -7, Some("rdkafka"));
    b.put_slice(&[1, 9, 2, 0xaa, 0xbb]);
    b.put_slice(&[1, 1, 0]); // ApiVersions v3 body
    let mut r = Reader::new(b.freeze());
    let h = decode_request_header(&mut r).expect("header");
    assert_eq!(h.client_id.as_deref(), Some("rdkafka"));
    assert_eq!(h.correlation_id, -7);
    assert!(decode_request(h.api_key, h.api_version, &mut r).is_ok());
}

/// The broker reads the header of an ApiVersions request of a version it does
/// not know, then answers v0 + UNSUPPORTED_VERSION; the body is not decoded.
#[test]
fn future_api_versions_request_still_yields_its_header() {
    let mut b = header_bytes(18, 99, 1234, Some("future-client"));
    b.put_u8(0); // header v2 tagged fields
    b.put_slice(b"\xde\xad whatever a v99 body looks like");
    let mut r = Reader::new(b.freeze());
    let h = decode_request_header(&mut r).expect("header");
    assert_eq!((h.api_key, h.api_version, h.correlation_id), (18, 99, 1234));
    assert_eq!(response_header_version(h.api_key, h.api_version), 0);
    let err = decode_request(h.api_key, h.api_version, &mut r).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnsupportedVersion {
                api_version: 99,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn header_errors() {
    let mut r = Reader::new(Bytes::from_static(&[0, 18, 0]));
    assert!(matches!(
        decode_request_header(&mut r),
        Err(DecodeError::Truncated {
            field: "header.api_version",
            ..
        })
    ));
    let mut b = header_bytes(3, 1, 1, None);
    b.truncate(8);
    b.put_i16(-3);
    let mut r = Reader::new(b.freeze());
    assert!(matches!(
        decode_request_header(&mut r),
        Err(DecodeError::InvalidLength { length: -3, .. })
    ));
}

#[test]
fn frame_len_checks_before_allocation() {
    assert_eq!(frame_len(100i32.to_be_bytes(), FRAME_BYTES_MAX), Ok(100));
    assert_eq!(frame_len(0i32.to_be_bytes(), FRAME_BYTES_MAX), Ok(0));
    assert_eq!(
        frame_len((-1i32).to_be_bytes(), FRAME_BYTES_MAX),
        Err(FrameError::Negative { size: -1 })
    );
    assert_eq!(
        frame_len(i32::MAX.to_be_bytes(), FRAME_BYTES_MAX),
        Err(FrameError::TooLarge {
            size: i32::MAX as usize,
            max_bytes: FRAME_BYTES_MAX
        })
    );
    assert_eq!(
        frame_len(1001i32.to_be_bytes(), 1000),
        Err(FrameError::TooLarge {
            size: 1001,
            max_bytes: 1000
        })
    );
}

#[test]
fn encode_response_writes_prefix_header_and_body() {
    let body = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(18)
            .with_min_version(0)
            .with_max_version(4)]);
    let mut out = BytesMut::from(&b"previous"[..]);
    encode_response(77, 0, &body, 0, &mut out).expect("encodes");
    let frame = out.split_off(8);
    assert_eq!(&out[..], b"previous");
    let size = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
    assert_eq!(size as usize, frame.len() - 4);
    assert_eq!(
        i32::from_be_bytes(frame[4..8].try_into().expect("4 bytes")),
        77
    );
    let mut expected = BytesMut::new();
    body.encode(&mut expected, 0).expect("encodes");
    assert_eq!(&frame[8..], &expected[..]);
    let mut rest = frame.freeze().slice(8..);
    assert_eq!(
        ApiVersionsResponse::decode(&mut rest, 0).expect("decodes"),
        body
    );

    // Header v1 adds one empty tagged-field byte.
    let meta = MetadataResponse::default().with_throttle_time_ms(5);
    let mut out = BytesMut::new();
    encode_response(-2, 1, &meta, 12, &mut out).expect("encodes");
    assert_eq!(&out[4..8], &(-2i32).to_be_bytes());
    assert_eq!(out[8], 0);
    let mut expected = BytesMut::new();
    meta.encode(&mut expected, 12).expect("encodes");
    assert_eq!(&out[9..], &expected[..]);
    assert_eq!(
        i32::from_be_bytes(out[..4].try_into().expect("4 bytes")) as usize,
        out.len() - 4
    );
}

#[test]
fn encode_response_errors_leave_the_buffer_alone() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = encode_response(1, 0, &ApiVersionsResponse::default(), 99, &mut out).unwrap_err();
    assert!(
        matches!(err, EncodeError::Body { version: 99, .. }),
        "{err}"
    );
    assert_eq!(&out[..], b"keep");
    let err = encode_response(1, 2, &ApiVersionsResponse::default(), 0, &mut out).unwrap_err();
    assert_eq!(err, EncodeError::HeaderVersion { header_version: 2 });
    assert_eq!(&out[..], b"keep");
}
