//! Fetch from the closest replica (KIP-392): which replica the leader
//! names as a consumer's `preferred_read_replica`.
//!
//! Kafka's leader (`ReplicaManager.findPreferredReadReplica`) offers the
//! selector the followers that are in the committed ISR and whose log end
//! is at or past the consumer's fetch offset, and itself; the selector
//! (`RackAwareReplicaSelector`) picks the leader when the consumer has no
//! rack, when no offered replica is in the consumer's rack, or when the
//! leader is in it; otherwise the most caught-up replica of that rack
//! (largest log end, then the shortest time since it was last caught up).
//! The leader is never sent as a preferred replica (the consumer keeps
//! reading from it), and neither is a replica whose broker is not
//! registered and unfenced (Kafka's `Node.noNode()`).

use fjord_model::{NodeId, Offset};

/// A follower the leader may offer (Kafka's `ReplicaView`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadReplica {
    pub node: NodeId,
    /// The follower's log end as its last accepted fetch stated it.
    pub log_end: Offset,
    /// How long ago it was last caught up with the leader.
    pub since_caught_up_ms: i64,
}

/// The replica a consumer in `client_rack` should read from, or `None`
/// for the leader. `candidates` are the followers offered (see
/// [`crate::Leader::read_replica_candidates`]); `rack_of` says the rack of
/// a broker: `None` for a broker without one or one that is not live
/// (neither is ever chosen).
pub fn select_rack_aware(
    client_rack: &str,
    leader: NodeId,
    candidates: &[ReadReplica],
    rack_of: impl Fn(NodeId) -> Option<String>,
) -> Option<NodeId> {
    if client_rack.is_empty() {
        return None;
    }
    if rack_of(leader).as_deref() == Some(client_rack) {
        return None;
    }
    candidates
        .iter()
        .filter(|c| c.node != leader && rack_of(c.node).as_deref() == Some(client_rack))
        // Kafka's `ReplicaView.comparator()`: log end, then the most
        // recently caught up; ties are broken by the lower id here so the
        // answer does not depend on iteration order.
        .max_by(|a, b| {
            a.log_end
                .cmp(&b.log_end)
                .then(b.since_caught_up_ms.cmp(&a.since_caught_up_ms))
                .then(b.node.cmp(&a.node))
        })
        .map(|c| c.node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn racks(n: NodeId) -> Option<String> {
        match n.0 {
            1 => Some("r1".into()),
            2 | 4 => Some("r2".into()),
            3 => Some("r3".into()),
            _ => None, // 5: no rack (or not live)
        }
    }

    fn replica(node: i32, log_end: i64, since_caught_up_ms: i64) -> ReadReplica {
        ReadReplica {
            node: NodeId(node),
            log_end: Offset(log_end),
            since_caught_up_ms,
        }
    }

    #[test]
    fn the_rack_aware_selector_picks_as_kafkas() {
        let leader = NodeId(1);
        let all = [replica(2, 10, 0), replica(3, 10, 0), replica(5, 10, 0)];
        // No rack, the leader's rack, a rack no replica is in: the leader.
        assert_eq!(select_rack_aware("", leader, &all, racks), None);
        assert_eq!(select_rack_aware("r1", leader, &all, racks), None);
        assert_eq!(select_rack_aware("r9", leader, &all, racks), None);
        // A follower in the consumer's rack.
        assert_eq!(
            select_rack_aware("r2", leader, &all, racks),
            Some(NodeId(2))
        );
        assert_eq!(
            select_rack_aware("r3", leader, &all, racks),
            Some(NodeId(3))
        );
        // Only followers offered count: none in r3 then.
        assert_eq!(select_rack_aware("r3", leader, &all[..1], racks), None);
        // Two in the rack: the larger log end, then the most recently caught up.
        let two = [replica(2, 10, 0), replica(4, 12, 50)];
        assert_eq!(
            select_rack_aware("r2", leader, &two, racks),
            Some(NodeId(4))
        );
        let two = [replica(2, 12, 10), replica(4, 12, 50)];
        assert_eq!(
            select_rack_aware("r2", leader, &two, racks),
            Some(NodeId(2))
        );
        // The leader itself is never named, even if offered.
        assert_eq!(
            select_rack_aware("r1", leader, &[replica(1, 10, 0)], racks),
            None
        );
    }
}
