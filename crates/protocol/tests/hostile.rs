//! Hostile input: every malformed request must yield an `Err`, never a panic,
//! and never a large allocation. This test binary installs an allocator that
//! records the largest single allocation; a decoder that trusted a count would
//! push it far beyond `ALLOCATION_BYTES_LIMIT` (or abort the process).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use common::{encode_body, encode_frame, samples, versions};
use fjord_protocol::{
    decode_request, decode_request_header, metadata_records, DecodeError, Reader, SUPPORTED_APIS,
};
use proptest::prelude::*;

struct MaxAllocation;

static LARGEST_ALLOCATION_BYTES: AtomicUsize = AtomicUsize::new(0);
/// No test input here is larger than a few KiB; 16 MiB is far above anything
/// legitimate and far below what a trusted hostile count would reserve.
const ALLOCATION_BYTES_LIMIT: usize = 16 << 20;

unsafe impl GlobalAlloc for MaxAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > ALLOCATION_BYTES_LIMIT {
            // Refuse instead of trying: the test then fails on the check
            // below (or aborts) rather than exhausting the machine.
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(new_size, Ordering::Relaxed);
        if new_size > ALLOCATION_BYTES_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: MaxAllocation = MaxAllocation;

fn assert_no_large_allocation() {
    let largest = LARGEST_ALLOCATION_BYTES.load(Ordering::Relaxed);
    assert!(
        largest <= ALLOCATION_BYTES_LIMIT,
        "an allocation of {largest} bytes happened"
    );
}

fn decode(api_key: i16, version: i16, body: &[u8]) -> Result<fjord_protocol::Request, DecodeError> {
    let mut r = Reader::new(Bytes::copy_from_slice(body));
    decode_request(api_key, version, &mut r)
}

/// The exact frame from shared/README.md that aborts kafka-protocol 0.18:
/// Metadata v1 with a topic count of 2^31-1 and nothing after it.
#[test]
fn metadata_with_huge_topic_count_is_rejected_before_allocating() {
    let err = decode(3, 1, &i32::MAX.to_be_bytes()).unwrap_err();
    assert!(
        matches!(err, DecodeError::ArrayTooLong { count, .. } if count == i32::MAX as u64),
        "{err}"
    );
    // Same through a whole frame with header.
    let mut frame = BytesMut::new();
    frame.put_i16(3);
    frame.put_i16(1);
    frame.put_i32(9);
    frame.put_i16(-1);
    frame.put_i32(i32::MAX);
    let mut r = Reader::new(frame.freeze());
    let h = decode_request_header(&mut r).expect("header is fine");
    assert!(decode_request(h.api_key, h.api_version, &mut r).is_err());
    assert_no_large_allocation();
}

#[test]
fn huge_compact_counts_are_rejected() {
    // Metadata v12: compact array count 2^32-1 (uvarint ff ff ff ff 0f).
    let err = decode(3, 12, &[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
    assert!(matches!(err, DecodeError::ArrayTooLong { .. }), "{err}");
    // Produce v9: null transactional id, acks, timeout, topic count 10^6.
    let mut b = vec![0u8, 0, 1, 0, 0, 0, 100];
    b.extend_from_slice(&[0xc1, 0x84, 0x3d]); // 1_000_001 = count 1_000_000 + 1
    let err = decode(0, 9, &b).unwrap_err();
    assert!(matches!(err, DecodeError::ArrayTooLong { .. }), "{err}");
    // Tagged-field count 2^32-1 on an ApiVersions v3 body.
    let err = decode(18, 3, &[1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooManyTaggedFields { .. }),
        "{err}"
    );
    assert_no_large_allocation();
}

/// A big frame of tiny elements: 4 million 2-byte Metadata v9 topics (null
/// name, no tags) would decode to hundreds of MB of structs; the decoded
/// memory budget rejects it before the vector is allocated.
#[test]
fn amplification_of_a_large_frame_is_bounded() {
    let topics: u32 = 4_000_000;
    let mut body = Vec::with_capacity(2 * topics as usize + 8);
    let mut n = topics + 1;
    while n >= 0x80 {
        body.push((n as u8) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    for _ in 0..topics {
        body.extend_from_slice(&[0, 0]);
    }
    body.extend_from_slice(&[1, 0, 0, 0]);
    let err = decode(3, 9, &body).unwrap_err();
    assert!(matches!(err, DecodeError::DecodedTooLarge { .. }), "{err}");
    // The same shape with 1000 topics is fine.
    let mut small = vec![0xe9, 0x07]; // 1001
    for _ in 0..1000 {
        small.extend_from_slice(&[0, 0]);
    }
    small.extend_from_slice(&[1, 0, 0, 0]);
    assert!(decode(3, 9, &small).is_ok());
    assert_no_large_allocation();
}

#[test]
fn negative_lengths_other_than_minus_one_are_errors() {
    // Metadata v1 topic array of -2.
    let err = decode(3, 1, &(-2i32).to_be_bytes()).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidLength { length: -2, .. }),
        "{err}"
    );
    // Metadata v1, one topic whose name length is -7.
    let mut b = 1i32.to_be_bytes().to_vec();
    b.extend_from_slice(&(-7i16).to_be_bytes());
    let err = decode(3, 1, &b).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidLength { length: -7, .. }),
        "{err}"
    );
    // Produce v3: records length -5.
    let mut b = Vec::new();
    b.extend_from_slice(&(-1i16).to_be_bytes()); // null transactional id
    b.extend_from_slice(&1i16.to_be_bytes()); // acks
    b.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    b.extend_from_slice(&1i16.to_be_bytes());
    b.push(b't');
    b.extend_from_slice(&1i32.to_be_bytes()); // one partition
    b.extend_from_slice(&0i32.to_be_bytes()); // index
    b.extend_from_slice(&(-5i32).to_be_bytes()); // records
    let err = decode(0, 3, &b).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidLength { length: -5, .. }),
        "{err}"
    );
    // A non-nullable string sent as null: Produce v3 topic name -1.
    let mut b2 = b[..12].to_vec();
    b2.extend_from_slice(&(-1i16).to_be_bytes());
    b2.extend_from_slice(&[0; 8]); // room for the element, so the count passes
    let err = decode(0, 3, &b2).unwrap_err();
    assert!(matches!(err, DecodeError::UnexpectedNull { .. }), "{err}");
}

#[test]
fn invalid_utf8_and_overlong_varints_are_errors() {
    // ApiVersions v3 with client_software_name = [0xff].
    let err = decode(18, 3, &[2, 0xff, 1, 0]).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidUtf8 { .. }), "{err}");
    // A 6-byte uvarint length.
    let err = decode(18, 3, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).unwrap_err();
    assert!(matches!(err, DecodeError::VarintTooLong { .. }), "{err}");
    // A 5-byte uvarint above u32::MAX.
    let err = decode(18, 3, &[0xff, 0xff, 0xff, 0xff, 0x7f]).unwrap_err();
    assert!(matches!(err, DecodeError::VarintTooLong { .. }), "{err}");
}

#[test]
fn tagged_fields_must_be_in_order_and_sized_exactly() {
    // ApiVersions v3: two empty strings, then tags 5 and 3 (out of order).
    let err = decode(18, 3, &[1, 1, 2, 5, 0, 3, 0]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TaggedFieldOrder {
                tag: 3,
                previous: 5,
                ..
            }
        ),
        "{err}"
    );
    // Repeated tag.
    let err = decode(18, 3, &[1, 1, 2, 5, 0, 5, 0]).unwrap_err();
    assert!(matches!(err, DecodeError::TaggedFieldOrder { .. }), "{err}");
    // Fetch v12 top-level known tag 0 (cluster_id) declared 3 bytes but the
    // compact string inside uses 2.
    let mut req = samples::fetch(12);
    req.cluster_id = None;
    req.unknown_tagged_fields.clear();
    let mut body = encode_body(&fjord_protocol::Request::Fetch(req), 12).to_vec();
    assert_eq!(body.pop(), Some(0)); // empty tagged section
    body.extend_from_slice(&[1, 0, 3, 2, b'c', 0]);
    let err = decode(1, 12, &body).unwrap_err();
    assert!(
        matches!(err, DecodeError::TaggedFieldSize { tag: 0, .. }),
        "{err}"
    );
}

#[test]
fn unknown_api_and_versions_are_reported() {
    assert_eq!(
        decode(999, 0, &[]).unwrap_err(),
        DecodeError::UnsupportedApi { api_key: 999 }
    );
    let err = decode(0, 2, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnsupportedVersion {
                api_key: 0,
                api_version: 2,
                min: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = decode(18, 5, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnsupportedVersion {
                api_key: 18,
                max: 4,
                ..
            }
        ),
        "{err}"
    );
}

/// A frame truncated at every byte position: header or body decoding fails.
#[test]
fn truncated_frames_fail_at_every_position() {
    let mut checked = 0;
    for api in SUPPORTED_APIS {
        for v in versions(api.api_key) {
            let req = samples::sample(api.api_key, v).expect("sample");
            let frame = encode_frame(&req, v, 5);
            for cut in 0..frame.len() {
                let mut r = Reader::new(frame.slice(..cut));
                let result = decode_request_header(&mut r)
                    .and_then(|h| decode_request(h.api_key, h.api_version, &mut r));
                assert!(result.is_err(), "api {} v{v} cut at {cut}", api.api_key);
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
    assert_no_large_allocation();
}

/// Overwrite every position of every valid sample with huge and negative
/// lengths / counts, classic and compact: decoding must never panic or make
/// a large allocation (the result may be Ok when the overwritten bytes were
/// not a length).
#[test]
fn hostile_lengths_at_every_position_never_panic() {
    let patches: [&[u8]; 6] = [
        &[0x7f, 0xff, 0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xfe],
        &[0x7f, 0xff],
        &[0x80, 0x00],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0xfe, 0xff, 0xff, 0x07],
    ];
    let mut errors = 0;
    for api in SUPPORTED_APIS {
        for v in versions(api.api_key) {
            let body = encode_body(&samples::sample(api.api_key, v).expect("sample"), v);
            for pos in 0..body.len() {
                for patch in patches {
                    let mut hostile = body.to_vec();
                    for (i, b) in patch.iter().enumerate() {
                        if let Some(slot) = hostile.get_mut(pos + i) {
                            *slot = *b;
                        }
                    }
                    if decode(api.api_key, v, &hostile).is_err() {
                        errors += 1;
                    }
                }
            }
        }
    }
    assert!(errors > 1000, "only {errors} hostile bodies were rejected");
    assert_no_large_allocation();
}

#[test]
fn metadata_record_counts_fail_before_allocating() {
    // PartitionRecord v0: partition id, topic id, then a replicas count of
    // u32::MAX - 1 elements in a compact array.
    let mut body = vec![0, 0, 0, 1];
    body.extend_from_slice(&[0; 16]);
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let got = metadata_records::PartitionRecord::decode(&mut Reader::new(Bytes::from(body)), 0);
    assert!(
        matches!(
            got,
            Err(DecodeError::ArrayTooLong {
                field: "PartitionRecord.replicas",
                ..
            })
        ),
        "{got:?}"
    );
    // A string longer than the bytes left.
    let got = metadata_records::TopicRecord::decode(
        &mut Reader::new(Bytes::from_static(&[0x7f, b'a'])),
        0,
    );
    assert!(
        matches!(
            got,
            Err(DecodeError::Truncated {
                field: "TopicRecord.name",
                ..
            })
        ),
        "{got:?}"
    );
    // The decoded-size budget: 1,000 replicas need 4,000 bytes of heap.
    let record = metadata_records::PartitionRecord {
        replicas: (0..1000).collect(),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    record.encode(0, &mut out);
    let got =
        metadata_records::PartitionRecord::decode(&mut Reader::with_budget(out.freeze(), 1000), 0);
    assert!(
        matches!(got, Err(DecodeError::DecodedTooLarge { .. })),
        "{got:?}"
    );
    assert_no_large_allocation();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes as a body of any supported api/version.
    #[test]
    fn random_bodies_never_panic(
        api_index in 0..SUPPORTED_APIS.len(),
        version_offset in 0i16..20,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let api = SUPPORTED_APIS[api_index];
        let span = api.max_version - api.min_version + 1;
        let v = api.min_version + version_offset % span;
        let _ = decode(api.api_key, v, &body);
        assert_no_large_allocation();
    }

    /// Random bytes as a whole frame (header + body).
    #[test]
    fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut r = Reader::new(Bytes::from(frame));
        if let Ok(h) = decode_request_header(&mut r) {
            let _ = decode_request(h.api_key, h.api_version, &mut r);
        }
        assert_no_large_allocation();
    }

    /// Valid samples with a few random bytes flipped.
    #[test]
    fn mutated_samples_never_panic(
        api_index in 0..SUPPORTED_APIS.len(),
        version_offset in 0i16..20,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let api = SUPPORTED_APIS[api_index];
        let span = api.max_version - api.min_version + 1;
        let v = api.min_version + version_offset % span;
        let mut body = encode_body(&samples::sample(api.api_key, v).expect("sample"), v).to_vec();
        if !body.is_empty() {
            for (pos, byte) in flips {
                let i = pos % body.len();
                body[i] = byte;
            }
        }
        let _ = decode(api.api_key, v, &body);
        assert_no_large_allocation();
    }

    /// Arbitrary KRaft metadata record values: an error or a record, never
    /// a panic or a large allocation.
    #[test]
    fn random_metadata_records_never_panic(
        api_key in 0u8..32,
        version in 0u8..6,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut framed = vec![1, api_key, version];
        framed.extend_from_slice(&body);
        let _ = metadata_records::MetadataRecord::decode_framed(&mut Reader::new(Bytes::from(framed)));
        assert_no_large_allocation();
    }
}
