//! Replica placement (after Kafka's `StripedReplicaPlacer`).
//!
//! Usable brokers (unfenced, not in controlled shutdown) are grouped by
//! rack and striped into one list that alternates racks: the first broker
//! of each rack, then the second of each rack, and so on (racks and the
//! brokers within a rack in id order). Partition `k` of a placement gets
//! its first replica (the preferred leader) at position `start + k` of
//! that list, so leaders rotate over all brokers, and its other replicas
//! from the positions after it, each time preferring a broker whose rack
//! no replica of the partition uses yet. With at least as many racks as
//! the replication factor, every replica of a partition is on its own
//! rack; without racks every broker is one rack of its own. The start
//! position is chosen by the caller (the controller draws it from its
//! seeded generator, as Kafka draws it at random).

use std::collections::BTreeMap;

/// A broker that may receive replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsableBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// Why a placement is impossible (Kafka answers INVALID_REPLICATION_FACTOR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementError {
    NonPositiveReplicationFactor(i16),
    NoUsableBrokers,
    TooFewBrokers {
        replication_factor: i16,
        usable: usize,
    },
}

impl std::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementError::NonPositiveReplicationFactor(rf) => {
                write!(
                    f,
                    "Invalid replication factor {rf}: the replication factor must be positive."
                )
            }
            PlacementError::NoUsableBrokers => write!(f, "All brokers are currently fenced."),
            PlacementError::TooFewBrokers {
                replication_factor,
                usable,
            } => write!(
                f,
                "Unable to replicate the partition {replication_factor} time(s): The target \
                 replication factor of {replication_factor} cannot be reached because only \
                 {usable} broker(s) are registered."
            ),
        }
    }
}

/// The striped order of `brokers`: racks alternate, ids ascending within a rack.
fn striped(brokers: &[UsableBroker]) -> Vec<&UsableBroker> {
    let mut racks: BTreeMap<Option<&str>, Vec<&UsableBroker>> = BTreeMap::new();
    let any_rack = brokers.iter().any(|b| b.rack.is_some());
    for b in brokers {
        // Without racks every broker is its own rack (pure rotation).
        let key = if any_rack { b.rack.as_deref() } else { None };
        racks.entry(key).or_default().push(b);
    }
    for list in racks.values_mut() {
        list.sort_by_key(|b| b.id);
    }
    if !any_rack {
        return racks.into_values().flatten().collect();
    }
    let longest = racks.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for list in racks.values() {
            if let Some(b) = list.get(i) {
                out.push(*b);
            }
        }
    }
    out
}

/// Replicas for `partitions` partitions of `replication_factor` replicas
/// each; the first replica of each is its preferred leader.
pub fn place(
    brokers: &[UsableBroker],
    partitions: usize,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor <= 0 {
        return Err(PlacementError::NonPositiveReplicationFactor(
            replication_factor,
        ));
    }
    if brokers.is_empty() {
        return Err(PlacementError::NoUsableBrokers);
    }
    let rf = replication_factor as usize;
    if rf > brokers.len() {
        return Err(PlacementError::TooFewBrokers {
            replication_factor,
            usable: brokers.len(),
        });
    }
    let order = striped(brokers);
    let n = order.len();
    let mut out = Vec::with_capacity(partitions);
    for k in 0..partitions {
        let first = (start + k) % n;
        let mut chosen: Vec<&UsableBroker> = vec![order[first]];
        while chosen.len() < rf {
            let unused = (1..n)
                .map(|d| order[(first + d) % n])
                .filter(|b| !chosen.iter().any(|c| c.id == b.id));
            let new_rack = unused
                .clone()
                .find(|b| !chosen.iter().any(|c| c.rack == b.rack));
            match new_rack.or_else(|| unused.clone().next()) {
                Some(b) => chosen.push(b),
                None => break,
            }
        }
        assert_eq!(chosen.len(), rf, "rf <= usable brokers was checked");
        out.push(chosen.iter().map(|b| b.id).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn brokers(spec: &[(i32, Option<&str>)]) -> Vec<UsableBroker> {
        spec.iter()
            .map(|(id, rack)| UsableBroker {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn spreads_replicas_and_rotates_leaders() {
        let b = brokers(&[(1, None), (2, None), (3, None), (4, None)]);
        let placed = place(&b, 8, 3, 1).unwrap();
        let mut leaders = BTreeMap::new();
        for replicas in &placed {
            assert_eq!(replicas.len(), 3);
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3, "{replicas:?}");
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.len(), 4);
        assert!(leaders.values().all(|&c| c == 2), "{leaders:?}");
        // The start position decides the first leader.
        assert_eq!(placed[0][0], 2);
        assert_eq!(place(&b, 1, 1, 0).unwrap(), vec![vec![1]]);
    }

    #[test]
    fn rack_aware_when_racks_are_set() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack_of = |id: i32| b.iter().find(|x| x.id == id).unwrap().rack.clone();
        for start in 0..6 {
            let placed = place(&b, 12, 3, start).unwrap();
            let mut leaders = BTreeMap::new();
            for replicas in &placed {
                let racks: BTreeSet<_> = replicas.iter().map(|r| rack_of(*r)).collect();
                assert_eq!(racks.len(), 3, "one replica per rack: {replicas:?}");
                *leaders.entry(replicas[0]).or_insert(0) += 1;
            }
            assert!(leaders.values().all(|&c| c == 2), "{leaders:?}");
        }
        // Fewer racks than replicas: racks are reused only when needed.
        let placed = place(&b[..4], 4, 3, 0).unwrap();
        for replicas in placed {
            let racks: BTreeSet<_> = replicas.iter().map(|r| rack_of(*r)).collect();
            assert_eq!(racks.len(), 2, "{replicas:?}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_placed() {
        let b = brokers(&[(1, None), (2, None)]);
        assert_eq!(
            place(&b, 1, 3, 0),
            Err(PlacementError::TooFewBrokers {
                replication_factor: 3,
                usable: 2
            })
        );
        assert_eq!(
            place(&b, 1, 0, 0),
            Err(PlacementError::NonPositiveReplicationFactor(0))
        );
        assert_eq!(place(&[], 1, 1, 0), Err(PlacementError::NoUsableBrokers));
    }
}
