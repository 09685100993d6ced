//! Bounds-checked decoders for the request bodies we serve, producing the
//! `kafka_protocol::messages` request structs.
//!
//! The decoders are generated (`requests/generated.rs`, by `cargo xtask
//! codegen` from Apache Kafka 4.3.1's request schemas) for every version
//! kafka-protocol 0.18 knows (`<T as Message>::VERSIONS`, extended by
//! `LAYOUT_ALIASES`), reading with [`Reader`]'s checked primitives: every
//! array count is checked against the bytes left times the element's
//! minimum encoded size for the version before anything is allocated, and
//! charged to the decoded-size budget. Fields absent from a version keep the
//! struct's `Default` value. Flexible versions use compact strings, arrays
//! and bytes, and end every struct with a tagged-field section whose known
//! tags are decoded into their fields and unknown ones kept. A null is
//! accepted wherever kafka-protocol's struct has an `Option`, as
//! kafka-protocol itself reads it.
//!
//! This file holds what is not generated: the `CheckedDecode` trait the
//! decoders implement and the `apis!` macro that the generated file invokes
//! with one line per request to build [`Request`], [`SUPPORTED_APIS`] and
//! [`decode_request`]. To decode one more request, add it to `REQUESTS` in
//! `xtask/src/codegen/requests.rs` and run `cargo xtask codegen`.
//!
//! A request whose newer versions carry fields kafka-protocol's structs
//! lack (`OWN_REQUESTS` there: WriteTxnMarkers v2) has request and response
//! structs of our own, generated with encoders and checked decoders into
//! [`owned`]; `requests/own.rs` gives them kafka-protocol's message traits,
//! so clients send them and the broker answers with them like any other.

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message};

use crate::frame::EncodeError;
use crate::reader::{DecodeError, Reader};

/// A request struct (or one of its nested structs) decoded through the
/// checked [`Reader`]; implemented by the generated decoders.
pub(crate) trait CheckedDecode: Sized {
    fn read(r: &mut Reader, version: i16) -> Result<Self, DecodeError>;
}

/// Versions of one API that [`decode_request`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
    /// First flexible (header v2, compact encodings) version.
    pub first_flexible_version: i16,
}

macro_rules! apis {
    ($( $variant:ident($ty:ty) = $key:ident, flexible >= $flex:literal; )*) => {
        /// A decoded request body.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $( $variant($ty), )*
        }

        impl Request {
            /// The api key of this request.
            pub fn api_key(&self) -> i16 {
                match self {
                    $( Request::$variant(_) => ApiKey::$key as i16, )*
                }
            }

            /// Encodes the body with kafka-protocol's encoder (for clients,
            /// tests and tools; the broker never needs it).
            pub fn encode(&self, version: i16, out: &mut BytesMut) -> Result<(), EncodeError> {
                if newer::encode(self, version, out).is_some() {
                    return Ok(());
                }
                let result = match self {
                    $( Request::$variant(m) => Encodable::encode(
                        m,
                        out,
                        same_layout_version(ApiKey::$key, <$ty as Message>::VERSIONS.max, version),
                    ), )*
                };
                result.map_err(|e| EncodeError::Body { version, message: e.to_string() })
            }
        }

        /// Every API [`decode_request`] understands, with its version range
        /// (kafka-protocol 0.18's range for the message, extended by
        /// `LAYOUT_ALIASES`).
        pub const SUPPORTED_APIS: &[ApiSupport] = &[
            $( ApiSupport {
                api_key: ApiKey::$key as i16,
                min_version: <$ty as Message>::VERSIONS.min,
                max_version: max_version(ApiKey::$key, <$ty as Message>::VERSIONS.max),
                first_flexible_version: $flex,
            }, )*
        ];

        /// Decodes the body of a request (everything after the request
        /// header). Bytes left after the body are ignored, as Apache Kafka
        /// ignores them: librdkafka 2.16's admin client sends Metadata v12
        /// requests with three extra bytes. They stay in `body` for the caller
        /// to inspect (`Reader::remaining`).
        pub fn decode_request(
            api_key: i16,
            api_version: i16,
            body: &mut Reader,
        ) -> Result<Request, DecodeError> {
            $(
                if api_key == ApiKey::$key as i16 {
                    let range = <$ty as Message>::VERSIONS;
                    let max = max_version(ApiKey::$key, range.max);
                    if api_version < range.min || api_version > max {
                        return Err(DecodeError::UnsupportedVersion {
                            api_key,
                            api_version,
                            min: range.min,
                            max,
                        });
                    }
                    let decoded = <$ty as CheckedDecode>::read(body, api_version)?;
                    return Ok(Request::$variant(decoded));
                }
            )*
            Err(DecodeError::UnsupportedApi { api_key })
        }
    };
}

// The generated decoders invoke `apis!`, so they follow its definition.
#[rustfmt::skip]
mod generated;

mod newer;
mod own;

pub use generated::own as owned;
pub use generated::{decode_request, Request, SUPPORTED_APIS};
pub(crate) use generated::{LAYOUT_ALIASES, NEWER_LAYOUTS};

/// The newest version we decode of `key`, given kafka-protocol's newest.
pub(crate) const fn max_version(key: ApiKey, known_max: i16) -> i16 {
    let mut max = known_max;
    let mut i = 0;
    while i < LAYOUT_ALIASES.len() {
        if LAYOUT_ALIASES[i].0 as i16 == key as i16 && LAYOUT_ALIASES[i].1 > max {
            max = LAYOUT_ALIASES[i].1;
        }
        i += 1;
    }
    let mut i = 0;
    while i < NEWER_LAYOUTS.len() {
        if NEWER_LAYOUTS[i].0 as i16 == key as i16 && NEWER_LAYOUTS[i].1 > max {
            max = NEWER_LAYOUTS[i].1;
        }
        i += 1;
    }
    max
}

pub use newer::is_newer_layout;

/// The version kafka-protocol should encode or decode for `version` of
/// `key`: an alias of `LAYOUT_ALIASES` maps to the newest version it knows
/// (same bytes); every other version is itself.
pub(crate) fn same_layout_version(key: ApiKey, known_max: i16, version: i16) -> i16 {
    if version > known_max && version <= max_version(key, known_max) {
        known_max
    } else {
        version
    }
}
