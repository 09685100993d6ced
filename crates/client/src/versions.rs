//! ApiVersions negotiation: for every API this client uses, the highest
//! version both it and the broker support.

use std::collections::HashMap;

use fjord_protocol::kafka_protocol::messages::ApiKey;

/// The APIs this client speaks and the versions it implements for each.
pub const CLIENT_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 13),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::FindCoordinator, 1, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
];

/// What the client implements for `api`, if it uses it.
pub fn client_range(api: ApiKey) -> Option<(i16, i16)> {
    CLIENT_APIS
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, min, max)| (min, max))
}

/// The broker's advertised range for an API and the version chosen for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub broker_min: i16,
    pub broker_max: i16,
    /// Highest version both sides support; `None` when the ranges do not meet.
    pub chosen: Option<i16>,
}

/// The outcome of ApiVersions for one connection.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    apis: HashMap<i16, Negotiated>,
}

impl Versions {
    /// Negotiates from the broker's `(api_key, min, max)` list.
    pub fn negotiate(broker: impl IntoIterator<Item = (i16, i16, i16)>) -> Versions {
        let mut apis = HashMap::new();
        for (key, broker_min, broker_max) in broker {
            let chosen =
                ApiKey::try_from(key)
                    .ok()
                    .and_then(client_range)
                    .and_then(|(min, max)| {
                        let lo = min.max(broker_min);
                        let hi = max.min(broker_max);
                        (lo <= hi).then_some(hi)
                    });
            apis.insert(
                key,
                Negotiated {
                    broker_min,
                    broker_max,
                    chosen,
                },
            );
        }
        Versions { apis }
    }

    /// What was negotiated for `api`; `None` if the broker did not list it.
    pub fn get(&self, api: ApiKey) -> Option<Negotiated> {
        self.apis.get(&(api as i16)).copied()
    }

    /// The version to use for `api`, if any.
    pub fn chosen(&self, api: ApiKey) -> Option<i16> {
        self.get(api).and_then(|n| n.chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        let v = Versions::negotiate([
            (ApiKey::Produce as i16, 0, 11),
            (ApiKey::Fetch as i16, 4, 20),
            (ApiKey::Metadata as i16, 14, 20),
            (ApiKey::JoinGroup as i16, 0, 9),
        ]);
        assert_eq!(v.chosen(ApiKey::Produce), Some(11));
        assert_eq!(v.chosen(ApiKey::Fetch), Some(18));
        // Disjoint ranges: listed, nothing chosen.
        assert_eq!(
            v.get(ApiKey::Metadata),
            Some(Negotiated {
                broker_min: 14,
                broker_max: 20,
                chosen: None
            })
        );
        // Not used by the client.
        assert_eq!(v.chosen(ApiKey::JoinGroup), None);
        // Not listed by the broker.
        assert_eq!(v.get(ApiKey::ListOffsets), None);
    }
}
