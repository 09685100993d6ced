//! Request header decoding and the header-version rules.
//!
//! Header v1 is `api_key i16, api_version i16, correlation_id i32, client_id
//! nullable string`; v2 adds a tagged-field section. The client id is a
//! classic (non-compact) nullable string in both. Header v0 (no client id) is
//! only used by ControlledShutdown v0, which we do not serve.

use kafka_protocol::messages::ApiKey;

use crate::reader::{DecodeError, Reader};

/// The decoded request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// Header version (0, 1 or 2) a request of `(api_key, api_version)` is sent
/// with: 2 for flexible versions, 1 otherwise. Unknown api keys get 1, which
/// is enough to read the correlation id.
pub fn request_header_version(api_key: i16, api_version: i16) -> i16 {
    match ApiKey::try_from(api_key) {
        Ok(key) => key.request_header_version(api_version),
        Err(()) => 1,
    }
}

/// Header version (0 or 1) of the response to `(api_key, api_version)`:
/// 1 for flexible versions, 0 otherwise; ApiVersions responses always use 0
/// so that a client that sent a version we do not know can still read it.
pub fn response_header_version(api_key: i16, api_version: i16) -> i16 {
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::ApiVersions) => 0,
        Ok(key) => key.response_header_version(api_version),
        Err(()) => 0,
    }
}

/// Decodes the request header at the start of `buf`, leaving `buf` at the
/// start of the body. Works for any api key and version (an ApiVersions
/// request of a version we do not know still yields its header, so the broker
/// can answer with UNSUPPORTED_VERSION).
pub fn decode_request_header(buf: &mut Reader) -> Result<RequestHeader, DecodeError> {
    let api_key = buf.i16("header.api_key")?;
    let api_version = buf.i16("header.api_version")?;
    let correlation_id = buf.i32("header.correlation_id")?;
    let header_version = request_header_version(api_key, api_version);
    let client_id = if header_version >= 1 {
        buf.nullable_string("header.client_id")?
            .map(|s| s.as_str().to_owned())
    } else {
        None
    };
    if header_version >= 2 {
        // No tagged header field is defined for requests; skip them all.
        buf.unknown_tagged_fields("header.tagged_fields")?;
    }
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
    })
}
