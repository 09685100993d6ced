//! Partition reassignment (KIP-455), after Kafka's
//! `ReplicationControlManager.alterPartitionReassignments`,
//! `PartitionReassignmentReplicas` and `PartitionReassignmentRevert`.
//!
//! A reassignment to target replicas `T` of a partition on replicas `C`
//! writes one PartitionChangeRecord: the replicas become `T` followed by
//! `C − T` (the union, so every replica of either set is a replica while
//! the data moves), `adding_replicas` = `T − C`, `removing_replicas` =
//! `C − T`. The adding replicas fetch from the leader like any follower
//! and the leader adds them to the ISR (AlterPartition) once they caught
//! up. Every partition change ([`crate::Controller`]'s `partition_change`,
//! Kafka's `PartitionChangeBuilder`) completes the reassignment as soon as
//! the ISR it writes holds every target replica ([`completion`]): the
//! removing replicas leave the replicas and the ISR, the adding and
//! removing lists are cleared, a removed leader is replaced by a target
//! replica of the ISR, and the leader epoch rises. So the ISR is never
//! smaller than the target replica set when the old replicas go, and a
//! broker deletes its copy only when the committed image no longer names
//! it a replica. A null target cancels: the replicas go back to `C`
//! (the union without the adding ones), the ISR loses the adding ones.

use fjord_metadata::{MetadataImage, PartitionRegistration};
use fjord_model::ErrorCode;
use fjord_protocol::metadata_records::{MetadataRecord, PartitionChangeRecord};

use crate::{Controller, ControllerError, ControllerResult, NO_LEADER_CHANGE};

/// Kafka's NO_REASSIGNMENT_IN_PROGRESS.
pub const NO_REASSIGNMENT_IN_PROGRESS: ErrorCode = ErrorCode::NO_REASSIGNMENT_IN_PROGRESS;

/// One partition of an AlterPartitionReassignments request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// The target replicas; `None` cancels the reassignment in progress.
    pub replicas: Option<Vec<i32>>,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

/// Whether `p` is being reassigned.
pub fn in_progress(p: &PartitionRegistration) -> bool {
    !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty()
}

/// Kafka's `PartitionReassignmentReplicas.maybeCompleteReassignment`: the
/// replicas and ISR of `p` once its reassignment completes, if the ISR
/// about to be written (`target_isr`) holds every target replica
/// (`planted_early`: whether or not it does, a planted bug).
pub(crate) fn completion(
    p: &PartitionRegistration,
    target_isr: &[i32],
    planted_early: bool,
) -> Option<(Vec<i32>, Vec<i32>)> {
    if !in_progress(p) || target_isr.is_empty() {
        return None;
    }
    let kept = |r: &i32| !p.removing_replicas.contains(r);
    let replicas: Vec<i32> = p.replicas.iter().copied().filter(kept).collect();
    let isr: Vec<i32> = target_isr.iter().copied().filter(kept).collect();
    if replicas.is_empty() || isr.is_empty() {
        return None;
    }
    if !planted_early && !replicas.iter().all(|r| isr.contains(r)) {
        return None;
    }
    Some((replicas, isr))
}

/// The reassignments in progress in `image`: every one (`filter` `None`),
/// or those of the named partitions (unknown ones are skipped, as Kafka
/// does).
pub fn ongoing(
    image: &MetadataImage,
    filter: Option<&[(String, Vec<i32>)]>,
) -> Vec<OngoingReassignment> {
    let one = |name: &str, index: i32, p: &PartitionRegistration| OngoingReassignment {
        topic: name.to_string(),
        partition: index,
        replicas: p.replicas.clone(),
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
    };
    let mut out = Vec::new();
    match filter {
        None => {
            for t in image.topics().iter() {
                for (index, p) in &t.partitions {
                    if in_progress(p) {
                        out.push(one(&t.name, *index, p));
                    }
                }
            }
        }
        Some(named) => {
            for (name, indexes) in named {
                let Some(t) = image.topics().get(name) else {
                    continue;
                };
                for index in indexes {
                    if let Some(p) = t.partitions.get(index).filter(|p| in_progress(p)) {
                        out.push(one(name, *index, p));
                    }
                }
            }
        }
    }
    out
}

impl Controller {
    /// AlterPartitionReassignments: each partition gets its own answer, in
    /// request order (UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT,
    /// INVALID_REPLICATION_FACTOR without `allow_replication_factor_change`,
    /// NO_REASSIGNMENT_IN_PROGRESS for a cancel with none).
    pub fn alter_partition_reassignments(
        &mut self,
        reassignments: &[Reassignment],
        allow_replication_factor_change: bool,
    ) -> ControllerResult<Vec<Result<(), ControllerError>>> {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(reassignments.len());
        for r in reassignments {
            match self.reassign_one(r, allow_replication_factor_change) {
                Ok(change) => {
                    let one: Vec<MetadataRecord> = change.into_iter().collect();
                    self.replay(&one);
                    records.extend(one);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        ControllerResult {
            records,
            response: results,
        }
    }

    fn reassign_one(
        &self,
        r: &Reassignment,
        allow_replication_factor_change: bool,
    ) -> Result<Option<MetadataRecord>, ControllerError> {
        let found = self
            .image
            .topics()
            .get(&r.topic)
            .and_then(|t| t.partitions.get(&r.partition).map(|p| (t.id, p.clone())));
        let Some((topic_id, p)) = found else {
            return Err(ControllerError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Unable to find partition {}:{}.", r.topic, r.partition),
            ));
        };
        let accept = |id: i32| self.is_active_id(id);
        let Some(target) = &r.replicas else {
            if !in_progress(&p) {
                return Err(ControllerError::new(
                    NO_REASSIGNMENT_IN_PROGRESS,
                    format!(
                        "No ongoing reassignment for partition {}:{}.",
                        r.topic, r.partition
                    ),
                ));
            }
            // Kafka's PartitionReassignmentRevert.
            let added = |id: &i32| !p.adding_replicas.contains(id);
            let replicas: Vec<i32> = p.replicas.iter().copied().filter(added).collect();
            let mut isr: Vec<i32> = p.isr.iter().copied().filter(added).collect();
            if isr.is_empty() {
                isr = replicas.clone();
            }
            let record = self.build_change(
                topic_id,
                r.partition,
                &p,
                &replicas,
                isr,
                &accept,
                false,
                true,
                None,
            );
            return Ok(Some(MetadataRecord::PartitionChange(record)));
        };
        self.check_assignment(target, r.partition, None)?;
        if !allow_replication_factor_change {
            let current = p.replicas.len() - p.adding_replicas.len();
            if target.len() != current {
                return Err(ControllerError::new(
                    ErrorCode::INVALID_REPLICATION_FACTOR,
                    format!(
                        "The replication factor is changed from {current} to {} but \
                         allowReplicationFactorChange is false",
                        target.len()
                    ),
                ));
            }
        }
        // Kafka's PartitionReassignmentReplicas: the target, then the
        // current replicas it drops.
        let removing: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|id| !target.contains(id))
            .collect();
        let adding: Vec<i32> = target
            .iter()
            .copied()
            .filter(|id| !p.replicas.contains(id))
            .collect();
        let mut moving = p.clone();
        moving.replicas = target.iter().chain(removing.iter()).copied().collect();
        moving.adding_replicas = adding;
        moving.removing_replicas = removing;
        let unchanged = moving.replicas == p.replicas
            && moving.adding_replicas == p.adding_replicas
            && moving.removing_replicas == p.removing_replicas;
        if unchanged {
            return Ok(None);
        }
        // Completes at once when every target replica is in the ISR.
        let change = self.partition_change(
            topic_id,
            r.partition,
            &moving,
            p.isr.clone(),
            &accept,
            false,
            None,
        );
        let mut record = match change {
            Some(MetadataRecord::PartitionChange(c)) => c,
            _ => PartitionChangeRecord {
                partition_id: r.partition,
                topic_id,
                leader: NO_LEADER_CHANGE,
                leader_recovery_state: -1,
                ..Default::default()
            },
        };
        if record.replicas.is_none() {
            record.replicas = Some(moving.replicas);
            record.adding_replicas = Some(moving.adding_replicas);
            record.removing_replicas = Some(moving.removing_replicas);
        }
        Ok(Some(MetadataRecord::PartitionChange(record)))
    }
}
