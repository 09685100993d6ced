//! UpdateFeatures: versions 0..=2 (`kafka-features upgrade` / `downgrade`).
//! An update is checked as Kafka's controller checks it (a level not below
//! 0, within the supported range of a feature it knows and of every
//! registered broker, a downgrade only with a downgrade type, an upgrade
//! only with the upgrade type). Only `metadata.version` (up to 4.3-IV0; down
//! only where no level in between changed the metadata),
//! `transaction.version` (0 to 2 either way, as Kafka 4.3.1 allows with no
//! dependency on `metadata.version`) and `eligible.leader.replicas.version`
//! (0 to 1 either way; 1 needs `metadata.version` 4.0-IV1, see
//! `crate::features`) change level: the active controller writes its FeatureLevelRecord (level
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
    // The levels the request would finalize, for dependencies between
    // features (Kafka's `proposedUpdatedVersions`).
    let mut proposed: std::collections::BTreeMap<String, i16> = image.features().clone();
    for u in &req.feature_updates {
        proposed.insert(u.feature.to_string(), u.max_version_level);
    }
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
        let answer = check(&image, &name, u.max_version_level, upgrade_type, &proposed);
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
/// `proposed` holds the levels the whole request would finalize.
fn check(
    image: &MetadataImage,
    name: &str,
    level: i16,
    upgrade_type: i8,
    proposed: &std::collections::BTreeMap<String, i16>,
) -> Result<(), String> {
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
    // Every registered broker must support the level, as Kafka's controller
    // checks (a broker that does not list the feature supports level 0).
    for (id, broker) in image.brokers() {
        let range = broker
            .features
            .iter()
            .find(|bf| bf.name == name)
            .map(|bf| (bf.min_supported_version, bf.max_supported_version));
        let why = match range {
            None if level != 0 => Some(format!("Broker {} does not support this feature.", id.0)),
            // Kafka's `VersionRange` text: "7-21", or "0" for one level.
            Some((min, max)) if !(min..=max).contains(&level) => Some(if min == max {
                format!("Broker {} only supports versions {min}", id.0)
            } else {
                format!("Broker {} only supports versions {min}-{max}", id.0)
            }),
            _ => None,
        };
        if let Some(why) = why {
            return refuse(why);
        }
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
    if name == fjord_metadata::image::METADATA_VERSION_FEATURE {
        if level < current && features::metadata_changed_between(current, level) {
            let why = if upgrade_type == UNSAFE_DOWNGRADE {
                "Unsafe metadata downgrade is not supported in this version."
            } else {
                "Refusing to perform the requested downgrade because it might delete metadata \
                 information."
            };
            // Kafka's message names the feature levels.
            return Err(format!(
                "Unsupported metadata.version downgrade from {current} to {level}. {why}"
            ));
        }
        return Ok(());
    }
    if name == features::ELR_VERSION_FEATURE && level >= 1 {
        let mv = proposed
            .get(fjord_metadata::image::METADATA_VERSION_FEATURE)
            .copied()
            .unwrap_or(0);
        if mv < features::ELR_METADATA_VERSION_MIN {
            return refuse(format!(
                "{name} could not be set to {level} because it depends on metadata.version level {}",
                features::ELR_METADATA_VERSION_MIN,
            ));
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_metadata::MetadataDelta;
    use fjord_protocol::metadata_records::register_broker_record::BrokerFeature;
    use fjord_protocol::metadata_records::RegisterBrokerRecord;

    use super::*;

    const MV: &str = fjord_metadata::image::METADATA_VERSION_FEATURE;
    const ELR: &str = features::ELR_VERSION_FEATURE;

    /// A cluster at `metadata.version` `mv` with broker 1 registered, which
    /// supports `metadata.version` up to `broker_mv_max`.
    fn cluster(mv: i16, broker_mv_max: i16) -> MetadataImage {
        let records = [
            MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: MV.into(),
                feature_level: mv,
                ..Default::default()
            }),
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 1,
                features: vec![
                    BrokerFeature {
                        name: MV.into(),
                        min_supported_version: 7,
                        max_supported_version: broker_mv_max,
                        ..Default::default()
                    },
                    BrokerFeature {
                        name: ELR.into(),
                        min_supported_version: 0,
                        max_supported_version: 1,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        ];
        let mut d = MetadataDelta::new(&MetadataImage::empty("c"));
        for r in &records {
            d.replay(r).unwrap();
        }
        d.apply()
    }

    fn proposed(image: &MetadataImage, updates: &[(&str, i16)]) -> BTreeMap<String, i16> {
        let mut p = image.features().clone();
        p.extend(updates.iter().map(|(n, l)| (n.to_string(), *l)));
        p
    }

    fn try_update(image: &MetadataImage, name: &str, level: i16, kind: i8) -> Result<(), String> {
        check(image, name, level, kind, &proposed(image, &[(name, level)]))
    }

    #[test]
    fn metadata_version_upgrades_to_any_level_every_broker_supports() {
        let old = cluster(21, 30);
        assert_eq!(try_update(&old, MV, 30, UPGRADE), Ok(()));
        assert_eq!(try_update(&old, MV, 23, UPGRADE), Ok(()));
        let e = try_update(&old, MV, 31, UPGRADE).unwrap_err();
        assert!(e.contains("Fjord supports versions 7-30"), "{e}");
        // A broker that supports only 3.9-IV0 holds the cluster there.
        let mixed = cluster(21, 21);
        let e = try_update(&mixed, MV, 30, UPGRADE).unwrap_err();
        assert_eq!(
            e,
            "Invalid update version 30 for feature metadata.version. Broker 1 only supports \
             versions 7-21"
        );
        let e = try_update(&old, MV, 30, SAFE_DOWNGRADE).unwrap_err();
        assert!(e.ends_with("Can't downgrade to a newer version."), "{e}");
    }

    #[test]
    fn metadata_version_downgrades_only_where_the_metadata_did_not_change() {
        let new = cluster(30, 30);
        // 4.3-IV0 changed the metadata (cordoned log directories): no way
        // down from it.
        for kind in [SAFE_DOWNGRADE, UNSAFE_DOWNGRADE] {
            let e = try_update(&new, MV, 29, kind).unwrap_err();
            assert!(
                e.starts_with("Unsupported metadata.version downgrade from 30 to 29."),
                "{e}"
            );
        }
        let e = try_update(&new, MV, 29, SAFE_DOWNGRADE).unwrap_err();
        assert!(
            e.ends_with("because it might delete metadata information."),
            "{e}"
        );
        let e = try_update(&new, MV, 29, UNSAFE_DOWNGRADE).unwrap_err();
        assert!(e.ends_with("Unsafe metadata downgrade is not supported in this version."));
        // 4.2-IV1 down to 4.0-IV1: nothing changed in between.
        let mid = cluster(29, 30);
        assert_eq!(try_update(&mid, MV, 23, SAFE_DOWNGRADE), Ok(()));
        assert!(try_update(&mid, MV, 22, SAFE_DOWNGRADE).is_err());
        let e = try_update(&mid, MV, 23, UPGRADE).unwrap_err();
        assert!(e.contains("without setting the upgrade type"), "{e}");
    }

    #[test]
    fn eligible_leader_replicas_need_metadata_version_4_0_iv1() {
        let old = cluster(21, 30);
        let e = try_update(&old, ELR, 1, UPGRADE).unwrap_err();
        assert_eq!(
            e,
            "Invalid update version 1 for feature eligible.leader.replicas.version. \
             eligible.leader.replicas.version could not be set to 1 because it depends on \
             metadata.version level 23"
        );
        // Both in one request, as `kafka-features upgrade --metadata 4.0
        // --feature eligible.leader.replicas.version=1` sends them.
        let both = proposed(&old, &[(MV, 23), (ELR, 1)]);
        assert_eq!(check(&old, ELR, 1, UPGRADE, &both), Ok(()));
        assert_eq!(try_update(&cluster(23, 30), ELR, 1, UPGRADE), Ok(()));
        // Switching it off needs no metadata version.
        assert_eq!(try_update(&old, ELR, 0, UPGRADE), Ok(()));
    }

    #[test]
    fn kafka_names_of_metadata_versions() {
        assert_eq!(features::metadata_version_name(7), Some("3.3-IV3"));
        assert_eq!(features::metadata_version_name(21), Some("3.9-IV0"));
        assert_eq!(features::metadata_version_name(30), Some("4.3-IV0"));
        assert_eq!(features::metadata_version_name(31), None);
        assert_eq!(features::metadata_version_name(6), None);
        assert!(features::metadata_changed_between(30, 29));
        assert!(features::metadata_changed_between(21, 23));
        assert!(!features::metadata_changed_between(29, 23));
        assert!(!features::metadata_changed_between(22, 18));
        assert!(features::metadata_changed_between(17, 16));
    }

    /// Kafka 4.3.1's `didMetadataChange` levels, from the table Kafka's own
    /// `MetadataVersion` printed (crates/protocol/tests/kafka).
    #[test]
    fn metadata_changing_levels_are_kafkas() {
        let table = include_str!("../../../protocol/tests/kafka/kafka_metadata_versions.txt");
        let mut changing = Vec::new();
        for line in table.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let level: i16 = f[0].parse().unwrap();
            assert_eq!(features::metadata_version_name(level), Some(f[1]), "{line}");
            if f[5] == "true" {
                changing.push(level);
            }
        }
        assert_eq!(changing, features::METADATA_CHANGING_LEVELS);
    }
}
