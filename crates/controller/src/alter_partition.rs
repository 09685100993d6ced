//! AlterPartition (API 56): a partition leader asks the controller to
//! change its ISR (Kafka's `ReplicationControlManager.alterPartition` and
//! `validateAlterPartitionData`, without ELR or unclean recovery); an ISR
//! that holds every target replica of a reassignment completes it
//! (`crate::reassignment`). The replication core (`fjord-replication`) sends these.

use fjord_model::{ErrorCode, NodeId};
use uuid::Uuid;

use crate::{Controller, Outcome};

/// One partition of an AlterPartition request (v2+: topics by id; the
/// shell maps v0/v1 names to ids and `new_isr` to epochs of -1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionData {
    pub topic_id: Uuid,
    pub partition_index: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// (broker id, broker epoch; -1 skips the epoch check).
    pub new_isr: Vec<(i32, i64)>,
}

/// An AlterPartition request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    pub broker_id: NodeId,
    pub broker_epoch: i64,
    pub partitions: Vec<AlterPartitionData>,
}

/// The partition's state after the request, as the response carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlteredPartition {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub leader_recovery_state: i8,
    pub partition_epoch: i32,
}

/// One partition's answer, in request order.
pub type AlterPartitionAnswer = (Uuid, i32, Result<AlteredPartition, ErrorCode>);

impl Controller {
    /// AlterPartition. A stale or unknown requester is a top-level error
    /// (STALE_BROKER_EPOCH, BROKER_ID_NOT_REGISTERED); each partition is
    /// then checked as Kafka does: NOT_CONTROLLER for epochs ahead of this
    /// controller's, FENCED_LEADER_EPOCH for an older leader epoch,
    /// INVALID_REQUEST when the requester does not lead or the ISR is not
    /// a subset of the replicas holding the leader, INVALID_UPDATE_VERSION
    /// for an older partition epoch, INELIGIBLE_REPLICA for a member that
    /// is not registered, fenced, shutting down or of another broker epoch.
    /// An accepted change is one PartitionChangeRecord (the partition epoch
    /// rises, the leader stays); a request that changes nothing gets the
    /// current state.
    pub fn alter_partition(
        &mut self,
        req: &AlterPartitionRequest,
    ) -> Outcome<Vec<AlterPartitionAnswer>> {
        self.check_broker_epoch(req.broker_id, req.broker_epoch)?;
        let mut records = Vec::new();
        let mut answers = Vec::new();
        for data in &req.partitions {
            let result = self.alter_one(req.broker_id, data, &mut records);
            answers.push((data.topic_id, data.partition_index, result));
        }
        Ok(self.done(records, answers))
    }

    fn alter_one(
        &self,
        broker: NodeId,
        data: &AlterPartitionData,
        records: &mut Vec<fjord_protocol::metadata_records::MetadataRecord>,
    ) -> Result<AlteredPartition, ErrorCode> {
        let Some(topic) = self.image.topics().get_by_id(data.topic_id).cloned() else {
            return Err(ErrorCode::UNKNOWN_TOPIC_ID);
        };
        let Some(p) = topic.partitions.get(&data.partition_index).cloned() else {
            return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
        };
        if data.leader_epoch > p.leader_epoch || data.partition_epoch > p.partition_epoch {
            return Err(ErrorCode::NOT_CONTROLLER);
        }
        if data.leader_epoch < p.leader_epoch {
            return Err(ErrorCode::FENCED_LEADER_EPOCH);
        }
        if broker.0 != p.leader {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if data.partition_epoch < p.partition_epoch {
            return Err(ErrorCode::INVALID_UPDATE_VERSION);
        }
        let new_isr: Vec<i32> = data.new_isr.iter().map(|(id, _)| *id).collect();
        let mut seen = std::collections::BTreeSet::new();
        if new_isr.is_empty()
            || !new_isr
                .iter()
                .all(|r| p.replicas.contains(r) && seen.insert(*r))
            || !new_isr.contains(&p.leader)
        {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        for (id, epoch) in &data.new_isr {
            let eligible = self.image.broker(NodeId(*id)).is_some_and(|b| {
                !b.fenced && !b.in_controlled_shutdown && (*epoch == -1 || b.broker_epoch == *epoch)
            });
            if !eligible {
                return Err(ErrorCode::INELIGIBLE_REPLICA);
            }
        }
        // The leader stays unless the change completes a reassignment that
        // removes it: then an active target replica of the ISR leads.
        let accept = |r: i32| r == p.leader || self.is_active_id(r);
        let mut partition = p.clone();
        let mut change = self.partition_change(
            topic.id,
            data.partition_index,
            &p,
            new_isr,
            &accept,
            false,
            None,
        );
        // A leader elected uncleanly (RECOVERING) that changes its ISR has
        // recovered: Fjord's leaders do not recover further, and Kafka's
        // send RECOVERED once they have.
        if p.leader_recovery_state == crate::LEADER_RECOVERING {
            let c = change.get_or_insert_with(|| {
                fjord_protocol::metadata_records::MetadataRecord::PartitionChange(
                    fjord_protocol::metadata_records::PartitionChangeRecord {
                        partition_id: data.partition_index,
                        topic_id: topic.id,
                        leader: crate::NO_LEADER_CHANGE,
                        leader_recovery_state: -1,
                        ..Default::default()
                    },
                )
            });
            if let fjord_protocol::metadata_records::MetadataRecord::PartitionChange(c) = c {
                c.leader_recovery_state = crate::LEADER_RECOVERED;
            }
            partition.leader_recovery_state = crate::LEADER_RECOVERED;
        }
        if let Some(change) = change {
            if let fjord_protocol::metadata_records::MetadataRecord::PartitionChange(c) = &change {
                if c.leader != crate::NO_LEADER_CHANGE && c.leader != p.leader {
                    // Kafka answers NEW_LEADER_ELECTED; the old leader
                    // learns its new role from the metadata.
                    assert!(
                        c.replicas.is_some(),
                        "only a completed reassignment moves the leader of an ISR change"
                    );
                    records.push(change);
                    return Err(ErrorCode::NEW_LEADER_ELECTED);
                }
                if c.leader != crate::NO_LEADER_CHANGE {
                    partition.leader_epoch += 1;
                }
                if let Some(isr) = &c.isr {
                    partition.isr = isr.clone();
                }
            }
            partition.partition_epoch += 1;
            records.push(change);
        }
        Ok(AlteredPartition {
            leader_id: partition.leader,
            leader_epoch: partition.leader_epoch,
            isr: partition.isr,
            leader_recovery_state: partition.leader_recovery_state,
            partition_epoch: partition.partition_epoch,
        })
    }
}
