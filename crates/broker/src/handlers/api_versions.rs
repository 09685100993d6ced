//! ApiVersions: versions 0..=4. A request of a newer version is answered in
//! the v0 layout with UNSUPPORTED_VERSION and our ApiVersions range, so the
//! client can retry with a version we share.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use fjord_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Ctx;

pub const API_KEY: i16 = 18;
pub const VERSIONS: RangeInclusive<i16> = 0..=4;

fn api_list() -> Vec<ApiVersion> {
    super::supported()
        .into_iter()
        .map(|(key, v)| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(*v.start())
                .with_max_version(*v.end())
        })
        .collect()
}

pub fn handle(ctx: &Ctx, _req: ApiVersionsRequest) -> Option<BytesMut> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::NONE.0)
        .with_api_keys(api_list());
    ctx.respond(&resp)
}

/// The answer to an ApiVersions request of a version we do not know: v0 layout.
pub fn unsupported_version(ctx: &Ctx) -> Option<BytesMut> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UNSUPPORTED_VERSION.0)
        .with_api_keys(api_list());
    let v0 = Ctx {
        broker: ctx.broker.clone(),
        api_key: ctx.api_key,
        api_version: 0,
        correlation_id: ctx.correlation_id,
        client_id: None,
        peer: ctx.peer,
    };
    v0.respond(&resp)
}
