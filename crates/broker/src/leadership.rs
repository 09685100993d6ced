//! Which shards of a coordinator runtime a cluster node serves: those of the
//! internal-topic partitions it leads, as Kafka's coordinators load a
//! partition on election and unload it on resignation. A shard is loaded
//! (replayed from the whole partition, which holds what the previous leader
//! wrote) when this node becomes the partition's leader, and unloaded when it
//! stops leading it, so a node never answers from state that a newer leader
//! has moved past. A node that keeps leading across a leader-epoch bump keeps
//! its shard (Kafka's runtime only updates the epoch then).
//!
//! On a single node every partition is led here and every shard loads at
//! start, as before.

use std::collections::HashMap;
use std::sync::Arc;

use fjord_coordinator::{Coordinator, Runtime};
use fjord_model::NodeId;
use parking_lot::Mutex;

use crate::state::Partition;

/// The partitions whose shard this node has loaded (or is loading) as leader.
pub(crate) struct ShardLeadership {
    /// The internal topic, for logs.
    topic: &'static str,
    me: NodeId,
    /// `None` on a single node: every shard is served.
    led: Option<Mutex<Vec<bool>>>,
}

impl ShardLeadership {
    /// Start `runtime`: every shard on a single node, the led ones in a cluster.
    pub(crate) fn start<C: Coordinator>(
        topic: &'static str,
        runtime: &Arc<Runtime<C>>,
        partitions: &[Arc<Partition>],
        me: NodeId,
        cluster: bool,
    ) -> ShardLeadership {
        if !cluster {
            runtime.start();
            return ShardLeadership {
                topic,
                me,
                led: None,
            };
        }
        let led: Vec<bool> = partitions
            .iter()
            .map(|p| p.replica_state().leader == me)
            .collect();
        runtime.start_with(|p| led.get(p as usize).copied().unwrap_or(false));
        ShardLeadership {
            topic,
            me,
            led: Some(Mutex::new(led)),
        }
    }

    /// Follow the partitions' leadership as the metadata image now states it:
    /// load the shards of partitions this node has come to lead, unload those
    /// of partitions it no longer leads, dropping the requests waiting on
    /// them (`waiters`, per shard: their answer becomes NOT_COORDINATOR).
    pub(crate) fn follow<C: Coordinator, T>(
        &self,
        runtime: &Arc<Runtime<C>>,
        partitions: &[Arc<Partition>],
        waiters: &[Mutex<HashMap<u64, T>>],
    ) {
        for (p, leads) in self.changes(runtime, partitions) {
            if !leads {
                if let Some(w) = waiters.get(p as usize) {
                    w.lock().clear();
                }
            }
        }
    }

    /// Load and unload shards as `follow` does; returns the changes:
    /// (partition, whether this node leads it now).
    fn changes<C: Coordinator>(
        &self,
        runtime: &Arc<Runtime<C>>,
        partitions: &[Arc<Partition>],
    ) -> Vec<(u32, bool)> {
        let Some(led) = &self.led else {
            return Vec::new();
        };
        let mut led = led.lock();
        let mut changes = Vec::new();
        for (i, p) in partitions.iter().enumerate() {
            let leads = p.replica_state().leader == self.me;
            let Some(was) = led.get_mut(i) else {
                continue;
            };
            if leads == *was {
                continue;
            }
            *was = leads;
            let index = i as u32;
            if leads {
                tracing::info!(
                    topic = self.topic,
                    partition = i,
                    "coordinator shard loads: this node leads it now"
                );
                runtime.reload(index);
            } else {
                tracing::info!(
                    topic = self.topic,
                    partition = i,
                    "coordinator shard unloaded: another node leads it now"
                );
                runtime.unload(index);
            }
            changes.push((index, leads));
        }
        changes
    }
}
