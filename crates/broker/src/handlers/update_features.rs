//! UpdateFeatures: versions 0..=2 (`kafka-features upgrade` / `downgrade`).
//! An update is checked as Kafka's controller checks it (a level not below
//! 0, within the supported range of a feature it knows, a downgrade only
//! with a downgrade type, an upgrade only with the upgrade type). Only
//! `transaction.version` (0 to 2 either way, as Kafka 4.3.1 allows with no
//! dependency on `metadata.version`) and `eligible.leader.replicas.version`
//! (0 to 1 either way; see `crate::features` for its metadata version)
//! change level: the active controller writes its FeatureLevelRecord (level
//! 0 removes it; switching ELR on first sets the cluster-wide
//! `min.insync.replicas` and removes per-node ones, Kafka's
//! `maybeGenerateElrSafetyRecords`; switched off, each partition's ELR is
//! emptied at its next change, as in Kafka), a node that is not it forwards
//! the request and answers once its own image has the level.
//! Every other feature is refused INVALID_UPDATE_VERSION unless the update
//! asks for the level already finalized (nothing to do). Validate-only
//! requests (v1+) check and write nothing. As in Kafka, one refused update
//! fails the whole request: the top-level error carries its message and no
//! result is listed; otherwise v0-v1 list one result per update, in request
//! order, and v2 lists none.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_metadata::MetadataImage;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use fjord_protocol::kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use fjord_protocol::metadata_records::{FeatureLevelRecord, MetadataRecord};

use super::{str_bytes, Ctx};
use crate::features;

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

/// `UpgradeType` values (v1+; v0's `AllowDowngrade` maps to the first two).
const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

/// The version a non-controller forwards UpdateFeatures with.
const FORWARD_VERSION: i16 = 1;

pub fn handle(ctx: &Ctx, req: UpdateFeaturesRequest) -> Option<BytesMut> {
    let b = &ctx.broker;
    let changes = |image: &MetadataImage| -> Vec<(String, i16)> {
        req.feature_updates
            .iter()
            .map(|u| (u.feature.to_string(), u.max_version_level))
            .filter(|(name, level)| image.feature_level(name).unwrap_or(0) != *level)
            .collect()
    };
    let validate_only = ctx.api_version >= 1 && req.validate_only;
    let _admin;
    let image = if b.forwards_admin() {
        b.image()
    } else {
        _admin = b.admin_lock();
        b.image()
    };
    let wanted = changes(&image);
    // One answer per update, in request order (a repeated name too, as Kafka).
    let mut checked: Vec<(String, Result<(), String>)> = Vec::new();
    for u in &req.feature_updates {
        let upgrade_type = if ctx.api_version == 0 {
            if u.allow_downgrade {
                SAFE_DOWNGRADE
            } else {
                UPGRADE
            }
        } else {
            u.upgrade_type
        };
        let name = u.feature.to_string();
        let answer = check(&image, &name, u.max_version_level, upgrade_type);
        checked.push((name, answer));
    }
    let mut refused = checked.iter().find_map(|(_, r)| r.as_ref().err()).cloned();
    if refused.is_none() && !validate_only && !wanted.is_empty() {
        let applied = |b: &crate::state::Broker| {
            let image = b.image();
            wanted
                .iter()
                .all(|(name, level)| image.feature_level(name).unwrap_or(0) == *level)
                .then_some(())
        };
        let outcome = if b.forwards_admin() {
            match crate::controller_link::forward(b, &req, FORWARD_VERSION) {
                Ok(resp) if resp.error_code != 0 => {
                    return ctx.respond(&resp);
                }
                Ok(_) => b.wait_applied(applied).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            // Enabling ELR: its config safety records first, as Kafka.
            let mut records: Vec<MetadataRecord> = if wanted
                .iter()
                .any(|(name, level)| name == features::ELR_VERSION_FEATURE && *level >= 1)
            {
                crate::cluster_metadata::elr_safety_records(&image, b.static_min_insync_replicas())
            } else {
                Vec::new()
            };
            records.extend(wanted.iter().map(|(name, level)| {
                MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name: name.clone(),
                    feature_level: *level,
                    ..Default::default()
                })
            }));

            b.propose(records).map_err(|e| e.to_string())
        };
        if let Err(e) = outcome {
            refused = Some(format!("the feature levels were not written: {e}"));
        }
    }
    let resp = match refused.as_ref() {
        Some(message) => UpdateFeaturesResponse::default()
            .with_error_code(ErrorCode::INVALID_UPDATE_VERSION.0)
            .with_error_message(Some(str_bytes(format!(
                "The update failed for all features since the following feature had an error: {message}"
            )))),
        None => UpdateFeaturesResponse::default()
            .with_error_message(None)
            .with_results(
                checked
                    .into_iter()
                    .map(|(name, _)| {
                        UpdatableFeatureResult::default()
                            .with_feature(str_bytes(name))
                            .with_error_code(ErrorCode::NONE.0)
                            // Kafka's message for a success is the error's name.
                            .with_error_message(Some(str_bytes(ErrorCode::NONE.name())))
                    })
                    .collect(),
            ),
    };
    ctx.respond(&resp)
}

/// Whether `name` may be set to `level`: `Err` with the reason if not.
fn check(image: &MetadataImage, name: &str, level: i16, upgrade_type: i8) -> Result<(), String> {
    let refuse = |why: String| {
        Err(format!(
            "Invalid update version {level} for feature {name}. {why}"
        ))
    };
    if ![UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE].contains(&upgrade_type) {
        return refuse("The controller does not support the given upgrade type.".into());
    }
    if level < 0 {
        return refuse("A feature version cannot be less than 0.".into());
    }
    let Some(f) = features::supported(name) else {
        return refuse(format!("Feature {name} not found."));
    };
    if !(f.min_level..=f.max_level).contains(&level) {
        return refuse(format!(
            "Fjord supports versions {}-{}.",
            f.min_level, f.max_level
        ));
    }
    let current = image.feature_level(name).unwrap_or(0);
    if level < current && upgrade_type == UPGRADE {
        return refuse(
            "Can't downgrade the version of this feature without setting the upgrade type to \
             either safe or unsafe downgrade."
                .into(),
        );
    }
    if level > current && upgrade_type != UPGRADE {
        return refuse("Can't downgrade to a newer version.".into());
    }
    if level != current
        && name != features::TRANSACTION_VERSION_FEATURE
        && name != features::ELR_VERSION_FEATURE
    {
        return refuse(format!(
            "Fjord runs this feature at level {current} only: changing it is not supported."
        ));
    }
    Ok(())
}
