//! The feature versions Fjord supports (KIP-584), as ApiVersions reports
//! them and UpdateFeatures checks them. Only what Fjord implements: its
//! metadata log is read from `metadata.version` [`METADATA_VERSION_MIN`]
//! (3.3-IV3) up to [`METADATA_VERSION_MAX`] (4.3-IV0, Kafka 4.3.1's latest
//! production level, which a new node or cluster finalizes as Kafka's
//! `kafka-storage format` does), with every record written at the version
//! Kafka writes at the finalized level. Every other feature Kafka 4.3.1
//! knows is supported at level 0 only (the feature off), because what its
//! higher levels switch on is not built: the consumer group protocol
//! (`group.version` 1, KIP-848), share groups and streams groups. Raise a
//! maximum here in the commit that builds what its level means.
//!
//! `eligible.leader.replicas.version` is supported up to 1 (KIP-966: the
//! controller keeps eligible leader replicas and elects from them, see
//! `fjord_controller`). A new cluster at `metadata.version` 4.1-IV0 (26) or
//! later finalizes 1, as Kafka 4.3.1's `kafka-storage format` does
//! (`EligibleLeaderReplicasVersion.ELRV_1`'s bootstrap level), with Kafka's
//! safety record (the cluster-wide `min.insync.replicas`) at bootstrap; one
//! formatted at an older release stays at 0 and is switched on with
//! `kafka-features upgrade --feature eligible.leader.replicas.version=1`.
//! Level 1 depends on `metadata.version` 4.0-IV1 (23), as in Kafka 4.3.1:
//! from that level partition records are written at version 2, the one
//! with the ELR fields ([`ELR_METADATA_VERSION_MIN`]).
//!
//! `transaction.version` is supported up to 2 (KIP-890: flexible
//! `__transaction_state` values from 1, an epoch bump per transaction and
//! implicit adds from 2). A new node or cluster finalizes 2 (its bootstrap
//! records, as Kafka 4's `kafka-storage format`); Kafka 4.3.1 gives levels 1
//! and 2 no dependency on `metadata.version` (formatted without
//! `--feature transaction.version=2` at an older release, Kafka's bootstrap
//! leaves it at 0, and so does a Fjord node following such a quorum).
//!
//! `kraft.version` is supported up to 1 (KIP-853 dynamic voters:
//! AddRaftVoter and RemoveRaftVoter). It is not a metadata record: the
//! quorum's level is finalized, 1 for a quorum formatted with
//! `--standalone`, `--initial-controllers` or `--no-initial-controllers`, 0
//! for `controller.quorum.voters` (a static quorum cannot be upgraded to 1
//! yet: UpdateFeatures refuses it).
//!
//! `metadata.version` changes with `kafka-features upgrade --metadata 4.3`
//! (or `--release-version`) as Kafka's controller allows it: up to any level
//! every registered broker supports, down only where no level in between
//! changed the metadata (`MetadataVersion.didMetadataChange`), never by an
//! unsafe downgrade.
//!
//! The finalized levels are the metadata image's FeatureLevelRecords, and
//! the quorum's `kraft.version` when it is 1.

use crate::cluster_metadata::{METADATA_VERSION_MAX, METADATA_VERSION_MIN};

/// Kafka's `TransactionVersion.FEATURE_NAME`.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The highest `transaction.version` Fjord supports, and the one a new node
/// or cluster finalizes.
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// Kafka's `KRaftVersion.FEATURE_NAME`.
pub const KRAFT_VERSION_FEATURE: &str = fjord_quorum::net::KRAFT_VERSION_FEATURE;

/// Kafka's `EligibleLeaderReplicasVersion.FEATURE_NAME`.
pub const ELR_VERSION_FEATURE: &str = fjord_metadata::image::ELR_VERSION_FEATURE;
/// The highest `eligible.leader.replicas.version` Fjord supports.
pub const ELR_VERSION_MAX: i16 = 1;

/// The lowest `metadata.version` at which `eligible.leader.replicas.version`
/// 1 may be finalized (Kafka's 4.0-IV1, `MetadataVersion.isElrSupported`).
pub const ELR_METADATA_VERSION_MIN: i16 =
    fjord_protocol::metadata_records::metadata_version::IBP_4_0_IV1;

/// The `metadata.version` levels at which Kafka changed what records hold
/// (`didMetadataChange` in Kafka 4.3.1's `MetadataVersion`): a downgrade
/// across one of them would lose metadata, so it is refused.
pub const METADATA_CHANGING_LEVELS: &[i16] = &[7, 8, 11, 13, 14, 15, 17, 23, 30];

/// Kafka's name of a `metadata.version` level (`MetadataVersion.version()`,
/// e.g. "4.3-IV0"), for the levels Fjord supports.
pub fn metadata_version_name(level: i16) -> Option<&'static str> {
    const NAMES: [&str; 24] = [
        "3.3-IV3", "3.4-IV0", "3.5-IV0", "3.5-IV1", "3.5-IV2", "3.6-IV0", "3.6-IV1", "3.6-IV2",
        "3.7-IV0", "3.7-IV1", "3.7-IV2", "3.7-IV3", "3.7-IV4", "3.8-IV0", "3.9-IV0", "4.0-IV0",
        "4.0-IV1", "4.0-IV2", "4.0-IV3", "4.1-IV0", "4.1-IV1", "4.2-IV0", "4.2-IV1", "4.3-IV0",
    ];
    const _: () = assert!(NAMES.len() as i16 == METADATA_VERSION_MAX - METADATA_VERSION_MIN + 1);
    let index = usize::try_from(level.checked_sub(METADATA_VERSION_MIN)?).ok()?;
    NAMES.get(index).copied()
}

/// The `metadata.version` level of a release as `kafka-storage format
/// --release-version` names it: a level's own name ("3.9-IV0") or a release
/// ("3.9": its highest level). `None` for a release Fjord does not support.
pub fn metadata_version_from_release(release: &str) -> Option<i16> {
    let release = release.trim();
    (METADATA_VERSION_MIN..=METADATA_VERSION_MAX)
        .rev()
        .find(|level| {
            metadata_version_name(*level).is_some_and(|name| {
                name == release
                    || name
                        .strip_prefix(release)
                        .is_some_and(|rest| rest.starts_with("-IV"))
            })
        })
}

/// The lowest `metadata.version` at which a new cluster finalizes
/// `eligible.leader.replicas.version` 1 by default (Kafka 4.3.1's
/// `ELRV_1.bootstrapMetadataVersion()`, 4.1-IV0).
pub const ELR_DEFAULT_METADATA_VERSION_MIN: i16 = 26;

/// The lowest `metadata.version` at which a new cluster finalizes
/// `transaction.version` 2 by default (Kafka 4.3.1's 4.0-IV2).
pub const TRANSACTION_DEFAULT_METADATA_VERSION_MIN: i16 = 24;

/// The levels a new cluster at `metadata_version` finalizes by default, as
/// Kafka 4.3.1's `kafka-storage format` does (`Feature.defaultLevel`) for
/// the features Fjord builds: `transaction.version` 2 from 4.0-IV2 and
/// `eligible.leader.replicas.version` 1 from 4.1-IV0. The new consumer
/// group protocol, share and streams groups are not built (Kafka: level 1
/// from 4.0-IV0, 4.2-IV0 and 4.2-IV1).
pub fn default_levels(metadata_version: i16) -> Vec<(&'static str, i16)> {
    let elr = if metadata_version >= ELR_DEFAULT_METADATA_VERSION_MIN {
        ELR_VERSION_MAX
    } else {
        0
    };
    let transactions = if metadata_version >= TRANSACTION_DEFAULT_METADATA_VERSION_MIN {
        TRANSACTION_VERSION_MAX
    } else {
        0
    };
    vec![
        (ELR_VERSION_FEATURE, elr),
        (TRANSACTION_VERSION_FEATURE, transactions),
    ]
}

/// Whether a new cluster may start with the feature levels `levels`
/// (`metadata.version` among them): each within what Fjord supports, and
/// the dependencies Kafka checks (eligible leader replicas need 4.0-IV1).
pub fn check_bootstrap_levels(
    levels: &std::collections::BTreeMap<String, i16>,
) -> Result<(), String> {
    let mv = levels
        .get(fjord_metadata::image::METADATA_VERSION_FEATURE)
        .copied()
        .ok_or("no metadata.version")?;
    for (name, level) in levels {
        let Some(f) = supported(name) else {
            return Err(format!(
                "unsupported feature: {name} (Fjord knows {})",
                SUPPORTED_FEATURES
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if !(f.min_level..=f.max_level).contains(level) {
            return Err(format!(
                "{name} level {level} is not supported: Fjord supports {}-{}",
                f.min_level, f.max_level
            ));
        }
    }
    if levels.get(ELR_VERSION_FEATURE).copied().unwrap_or(0) >= 1 && mv < ELR_METADATA_VERSION_MIN {
        return Err(format!(
            "{ELR_VERSION_FEATURE} 1 depends on metadata.version {ELR_METADATA_VERSION_MIN} ({})",
            metadata_version_name(ELR_METADATA_VERSION_MIN).unwrap_or("?")
        ));
    }
    Ok(())
}

/// Whether lowering `metadata.version` from `from` to `to` crosses a level
/// that changed the metadata (Kafka's `checkIfMetadataChanged`).
pub fn metadata_changed_between(from: i16, to: i16) -> bool {
    let (low, high) = if from <= to { (from, to) } else { (to, from) };
    METADATA_CHANGING_LEVELS
        .iter()
        .any(|level| *level > low && *level <= high)
}

/// A feature Fjord knows and the levels it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedFeature {
    pub name: &'static str,
    pub min_level: i16,
    pub max_level: i16,
}

const fn off(name: &'static str) -> SupportedFeature {
    SupportedFeature {
        name,
        min_level: 0,
        max_level: 0,
    }
}

/// Every feature Fjord reports in ApiVersions, in Kafka's name order.
pub const SUPPORTED_FEATURES: &[SupportedFeature] = &[
    SupportedFeature {
        name: ELR_VERSION_FEATURE,
        min_level: 0,
        max_level: ELR_VERSION_MAX,
    },
    off("group.version"),
    SupportedFeature {
        name: KRAFT_VERSION_FEATURE,
        min_level: 0,
        max_level: fjord_quorum::net::KRAFT_VERSION_MAX,
    },
    SupportedFeature {
        name: fjord_metadata::image::METADATA_VERSION_FEATURE,
        min_level: METADATA_VERSION_MIN,
        max_level: METADATA_VERSION_MAX,
    },
    off("share.version"),
    off("streams.version"),
    SupportedFeature {
        name: TRANSACTION_VERSION_FEATURE,
        min_level: 0,
        max_level: TRANSACTION_VERSION_MAX,
    },
];

/// The levels Fjord supports of `name`, if it knows the feature.
pub fn supported(name: &str) -> Option<SupportedFeature> {
    SUPPORTED_FEATURES.iter().copied().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn release_versions_as_kafka_storage_format_takes_them() {
        assert_eq!(metadata_version_from_release("3.9"), Some(21));
        assert_eq!(metadata_version_from_release("3.9-IV0"), Some(21));
        assert_eq!(
            metadata_version_from_release("3.7"),
            Some(19),
            "3.7's highest level, IV4"
        );
        assert_eq!(metadata_version_from_release("3.7-IV1"), Some(16));
        assert_eq!(metadata_version_from_release("4.3"), Some(30));
        assert_eq!(metadata_version_from_release("3.3"), Some(7));
        for bad in ["4.4", "3.2", "3", "3.9-IV9", "", "4.3-"] {
            assert_eq!(metadata_version_from_release(bad), None, "{bad}");
        }
    }

    #[test]
    fn bootstrap_levels_are_checked() {
        let levels = |pairs: &[(&str, i16)]| -> BTreeMap<String, i16> {
            pairs.iter().map(|(n, l)| (n.to_string(), *l)).collect()
        };
        let mv = fjord_metadata::image::METADATA_VERSION_FEATURE;
        assert_eq!(
            check_bootstrap_levels(&levels(&[(mv, 30), (ELR_VERSION_FEATURE, 1)])),
            Ok(())
        );
        let e = check_bootstrap_levels(&levels(&[(mv, 21), (ELR_VERSION_FEATURE, 1)])).unwrap_err();
        assert!(
            e.contains("depends on metadata.version 23 (4.0-IV1)"),
            "{e}"
        );
        // A directory Kafka formatted with its defaults: group.version 1 is
        // not built.
        let e = check_bootstrap_levels(&levels(&[(mv, 30), ("group.version", 1)])).unwrap_err();
        assert!(e.contains("group.version level 1 is not supported"), "{e}");
        assert_eq!(
            check_bootstrap_levels(&levels(&[(mv, 30), ("group.version", 0)])),
            Ok(())
        );
        let e = check_bootstrap_levels(&levels(&[(mv, 30), ("no.such", 1)])).unwrap_err();
        assert!(e.starts_with("unsupported feature: no.such"), "{e}");
        assert!(check_bootstrap_levels(&levels(&[(mv, 31)])).is_err());
        assert!(check_bootstrap_levels(&levels(&[])).is_err());
    }

    /// Kafka's `kafka-storage format` defaults per release, for the features
    /// Fjord builds, as Kafka 4.3.1's `Feature.defaultLevel` gives them
    /// (printed from its kafka-server-common jar): transaction.version 2
    /// from 4.0-IV2 (24), eligible.leader.replicas.version 1 from 4.1-IV0
    /// (26).
    #[test]
    fn default_levels_follow_kafkas_for_the_features_fjord_builds() {
        let level = |mv, feature| {
            default_levels(mv)
                .into_iter()
                .find(|(n, _)| *n == feature)
                .map(|(_, l)| l)
        };
        let kafka: &[(i16, i16, i16)] = &[
            // (metadata.version, transaction.version, ELR)
            (7, 0, 0),
            (21, 0, 0),
            (22, 0, 0),
            (23, 0, 0),
            (24, 2, 0),
            (25, 2, 0),
            (26, 2, 1),
            (27, 2, 1),
            (28, 2, 1),
            (30, 2, 1),
        ];
        for (mv, tv, elr) in kafka {
            assert_eq!(level(*mv, TRANSACTION_VERSION_FEATURE), Some(*tv), "{mv}");
            assert_eq!(level(*mv, ELR_VERSION_FEATURE), Some(*elr), "{mv}");
        }
        // Every default is one a new cluster may start with.
        for mv in METADATA_VERSION_MIN..=METADATA_VERSION_MAX {
            let mut levels: BTreeMap<String, i16> = default_levels(mv)
                .into_iter()
                .map(|(n, l)| (n.to_string(), l))
                .collect();
            levels.insert(fjord_metadata::image::METADATA_VERSION_FEATURE.into(), mv);
            assert_eq!(check_bootstrap_levels(&levels), Ok(()), "{mv}");
        }
    }
}
