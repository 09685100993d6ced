//! The feature versions Fjord supports (KIP-584), as ApiVersions reports
//! them and UpdateFeatures checks them. Only what Fjord implements: its
//! metadata log is written at `metadata.version`
//! [`BOOTSTRAP_METADATA_VERSION`] and read from
//! [`METADATA_VERSION_MIN`]; every other feature Kafka 4.3.1 knows is
//! supported at level 0 only (the feature off), because what its higher
//! levels switch on is not built: the consumer group protocol (`group.version` 1, KIP-848),
//! transactions v2 (`transaction.version`), share groups and streams
//! groups. Raise a maximum here in the commit that builds what its level
//! means.
//!
//! `eligible.leader.replicas.version` is supported up to 1 (KIP-966: the
//! controller keeps eligible leader replicas and elects from them, see
//! `fjord_controller`). It stays 0 on a new cluster (Kafka 4.1+ formats new
//! clusters with 1) and is switched on with `kafka-features upgrade
//! --feature eligible.leader.replicas.version=1`. Kafka 4.3.1 makes level 1
//! depend on `metadata.version` 4.0-IV1 (23), the version from which its
//! PartitionRecord/PartitionChangeRecord are written at version 2 with the
//! ELR tagged fields; Fjord's metadata version is capped at 3.9-IV0 (21)
//! for the other changes of 4.0 it has not built, but Fjord writes those
//! records at version 2 at every metadata version, so it accepts level 1
//! without that dependency (a difference from Kafka, stated in
//! COMPATIBILITY.md).
//!
//! `transaction.version` is supported up to 2 (KIP-890: flexible
//! `__transaction_state` values from 1, an epoch bump per transaction and
//! implicit adds from 2). A new node or cluster finalizes 2 (its bootstrap
//! records, as Kafka 4's `kafka-storage format`); Kafka 4.3.1 gives levels 1
//! and 2 no dependency on `metadata.version`, so they hold at Fjord's
//! 3.9-IV0 as they would on a Kafka quorum formatted at that release with
//! `--feature transaction.version=2` (formatted without, Kafka's bootstrap
//! leaves it at 0, and so does a Fjord node following such a quorum).
//!
//! `kraft.version` is supported up to 1 (KIP-853 dynamic voters:
//! AddRaftVoter and RemoveRaftVoter). It is not a metadata record: the
//! quorum's level is finalized, 1 for a quorum formatted with
//! `--standalone`, `--initial-controllers` or `--no-initial-controllers`, 0
//! for `controller.quorum.voters` (a static quorum cannot be upgraded to 1
//! yet: UpdateFeatures refuses it).
//!
//! The finalized levels are the metadata image's FeatureLevelRecords, and
//! the quorum's `kraft.version` when it is 1.

use crate::cluster_metadata::{BOOTSTRAP_METADATA_VERSION, METADATA_VERSION_MIN};

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
        max_level: BOOTSTRAP_METADATA_VERSION,
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
