//! Kafka wire protocol for Fjord: bounds-checked request decoding, framing
//! and response encoding.
//!
//! The `kafka-protocol` crate's own decoders size allocations from untrusted
//! counts, so requests are never decoded with its `Decodable`. Instead
//! [`decode_request_header`] and [`decode_request`] read every field through
//! the checked [`Reader`] and produce kafka-protocol's request structs, so
//! handlers use the familiar types and responses are encoded with its
//! `Encodable` ([`encode_response`]).
//!
//! The request decoders ([`requests`]) and the KRaft record codecs
//! ([`metadata_records`]) are generated from Apache Kafka 4.3.1's message
//! schemas by `cargo xtask codegen` (files named `generated.rs`, never
//! edited by hand; CI fails when they differ from what the generator
//! writes). They read through [`Reader`], so every count is checked against
//! the bytes left before allocating and the decoded-size budget holds;
//! record encoders write through [`writer`].
//!
//! Typical use on one frame (after [`frame_len`] accepted its size prefix):
//!
//! ```
//! use bytes::Bytes;
//! use fjord_protocol::{decode_request, decode_request_header, Reader, Request};
//! // ApiVersions v0, correlation id 7, client id "c"
//! let frame = Bytes::from_static(&[0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b'c']);
//! let mut r = Reader::new(frame);
//! let header = decode_request_header(&mut r).unwrap();
//! let body = decode_request(header.api_key, header.api_version, &mut r).unwrap();
//! assert!(matches!(body, Request::ApiVersions(_)));
//! ```

pub mod frame;
pub mod header;
pub mod metadata_records;
pub mod reader;
pub mod requests;
pub mod sasl;
pub mod writer;

pub use frame::{encode_response, frame_len, EncodeError, FrameError};
pub use header::{
    decode_request_header, request_header_version, response_header_version, RequestHeader,
};
pub use reader::{DecodeError, Reader};
pub use requests::{decode_request, is_newer_layout, ApiSupport, Request, SUPPORTED_APIS};

/// Re-export so users name exactly the kafka-protocol version we decode into.
pub use kafka_protocol;
