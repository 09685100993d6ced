//! ApiVersions: versions 0..=4. A request of a newer version is answered in
//! the v0 layout with UNSUPPORTED_VERSION and our ApiVersions range, so the
//! client can retry with a version we share.
//!
//! From v3 the answer carries the features Fjord supports
//! ([`crate::features`]) and the finalized ones: the metadata image's
//! FeatureLevelRecords, at the epoch of the image's last record (Kafka's
//! finalized-features epoch is that offset). As Kafka (KIP-1022), a feature
//! whose lowest supported level is 0 is listed from v4 only, as v3 clients
//! may refuse a level-0 range.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use fjord_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{str_bytes, Ctx};
use crate::features::SUPPORTED_FEATURES;

/// First version whose clients accept supported features with level 0.
const LEVEL_ZERO_FEATURES_SINCE: i16 = 4;

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
    let image = ctx.broker.image();
    let supported = SUPPORTED_FEATURES
        .iter()
        .filter(|f| f.min_level > 0 || ctx.api_version >= LEVEL_ZERO_FEATURES_SINCE)
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(str_bytes(f.name.to_string()))
                .with_min_version(f.min_level)
                .with_max_version(f.max_level)
        })
        .collect();
    // The quorum's kraft.version is no metadata record (Kafka's metadata
    // cache adds it too); level 0, like the image's, is not listed.
    let kraft_version = match ctx.broker.quorum() {
        Some(crate::state::Quorum::Raft(q)) => q.kraft_version(),
        _ => 0,
    };
    let kraft = (kraft_version > 0).then(|| {
        (
            crate::features::KRAFT_VERSION_FEATURE.to_string(),
            kraft_version,
        )
    });
    let finalized = image
        .features()
        .iter()
        .map(|(name, level)| (name.clone(), *level))
        .chain(kraft)
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(str_bytes(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    // The offset of the image's last record; -1 (unknown) before any.
    let epoch = image.end_offset().0 - 1;
    let resp = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::NONE.0)
        .with_api_keys(api_list())
        .with_supported_features(supported)
        .with_finalized_features_epoch(epoch.max(-1))
        .with_finalized_features(finalized);
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
        listener: ctx.listener.clone(),
        principal: ctx.principal.clone(),
        request_bytes: ctx.request_bytes,
        throttle: ctx.throttle.clone(),
    };
    v0.respond(&resp)
}
