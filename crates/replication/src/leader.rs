//! The leader's side of one partition: followers' progress, the ISR, the
//! high watermark.

use std::collections::BTreeMap;

use fjord_model::{limits, ErrorCode, LeaderEpoch, NodeId, Offset};

use crate::{AlterPartition, IsrMember, LogView, PartitionState, ReadReplica, Settings};

/// A follower's Fetch for this partition (Fetch's `ReplicaState` /
/// `replica_id`, and the partition's fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: NodeId,
    /// The follower's broker epoch (Fetch v15+ `ReplicaEpoch`; `-1` before).
    pub broker_epoch: i64,
    /// The follower's log end offset: everything below it is durable there.
    pub fetch_offset: Offset,
    /// Epoch of the follower's last batch (`UNKNOWN` for an empty log).
    pub last_fetched_epoch: LeaderEpoch,
    pub current_leader_epoch: LeaderEpoch,
}

/// How the leader answers a follower's fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Send records from the fetch offset (possibly none).
    Records,
    /// KIP-320: the follower's log diverges; it must truncate to at most
    /// `end_offset` (the end of `epoch`, the largest epoch `<=` its last
    /// fetched epoch in the leader's log) before fetching on.
    Diverging {
        epoch: LeaderEpoch,
        end_offset: Offset,
    },
    Error(ErrorCode),
}

/// The answer with the partition's offsets, as the Fetch response carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchAnswer {
    pub outcome: FetchOutcome,
    pub high_watermark: Offset,
    pub log_start: Offset,
}

/// What the leader asks its shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderOutput {
    /// The high watermark moved up to this offset: wake acks=all waiters
    /// and long-polling consumers.
    HighWatermark(Offset),
    /// Send this to the active controller.
    AlterPartition(AlterPartition),
}

#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The follower's durable log end as its last accepted fetch stated it
    /// (`Offset::NONE`: not known in this leadership).
    log_end: Offset,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end when that fetch was answered.
    last_fetch_leader_end: Offset,
    broker_epoch: i64,
}

#[derive(Clone, Debug)]
struct Pending {
    isr: Vec<NodeId>,
    sent_partition_epoch: i32,
    /// The controller refused it as stale: wait for the metadata instead
    /// of sending it again.
    refused: bool,
}

/// The leader of one partition in one leader epoch.
#[derive(Debug)]
pub struct Leader {
    me: NodeId,
    settings: Settings,
    state: PartitionState,
    pending: Option<Pending>,
    followers: BTreeMap<NodeId, Progress>,
    high_watermark: Offset,
    /// The log end when this leadership began: a follower joins the ISR
    /// only once it holds everything of earlier epochs.
    epoch_start_offset: Offset,
}

impl Leader {
    /// Becomes leader of `state` (which names this node) with the log as
    /// it is and the high watermark this node knew as a follower.
    pub fn new(
        me: NodeId,
        state: PartitionState,
        settings: Settings,
        log: &impl LogView,
        high_watermark: Offset,
        now_ms: i64,
    ) -> Leader {
        assert_eq!(
            state.leader, me,
            "a leader for a partition it does not lead"
        );
        assert!(state.isr.contains(&me), "a leader outside the ISR");
        assert!(
            high_watermark <= log.log_end(),
            "high watermark past the log end"
        );
        let followers = state
            .replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                let in_sync = state.isr.contains(r);
                (
                    *r,
                    Progress {
                        log_end: Offset::NONE,
                        last_caught_up_ms: if in_sync { now_ms } else { i64::MIN },
                        last_fetch_ms: i64::MIN,
                        last_fetch_leader_end: Offset::NONE,
                        broker_epoch: -1,
                    },
                )
            })
            .collect();
        Leader {
            me,
            settings,
            state,
            pending: None,
            followers,
            high_watermark: high_watermark.max(log.log_start()),
            epoch_start_offset: log.log_end(),
        }
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.state.leader_epoch
    }

    pub fn state(&self) -> &PartitionState {
        &self.state
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    /// Whether an AlterPartition is in flight.
    pub fn alter_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The ISR the high watermark is computed over: the committed ISR and,
    /// while an AlterPartition is in flight, the requested one (Kafka's
    /// maximal ISR), so that neither a pending shrink nor a pending expand
    /// lets the high watermark pass what a member may lack.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut isr = self.state.isr.clone();
        if let Some(p) = &self.pending {
            for r in &p.isr {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// `min.insync.replicas`, capped at the replica count (Kafka's
    /// `effectiveMinIsr`).
    fn min_isr(&self) -> usize {
        self.settings
            .min_insync_replicas
            .min(self.state.replicas.len())
            .max(1)
    }

    /// Whether the ISR in use (the maximal ISR) holds at least
    /// `min.insync.replicas` members.
    pub fn isr_meets_min(&self) -> bool {
        self.maximal_isr().len() >= self.min_isr()
    }

    /// Before an acks=all append: NOT_ENOUGH_REPLICAS when the committed
    /// ISR is smaller than `min.insync.replicas` (nothing is appended).
    pub fn check_acks_all_append(&self) -> Result<(), ErrorCode> {
        if self.state.isr.len() < self.min_isr() {
            return Err(ErrorCode::NOT_ENOUGH_REPLICAS);
        }
        Ok(())
    }

    /// An acks=all append whose records end before `required_end`: `None`
    /// while the high watermark has not passed it; then NONE, or
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below
    /// `min.insync.replicas` meanwhile (Kafka's
    /// `checkEnoughReplicasReachOffset`).
    pub fn acks_all_outcome(&self, required_end: Offset) -> Option<ErrorCode> {
        if self.high_watermark < required_end {
            return None;
        }
        if self.isr_meets_min() {
            Some(ErrorCode::NONE)
        } else {
            Some(ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
        }
    }

    /// The end of `epoch` in the leader's log as OffsetForLeaderEpoch and
    /// the divergence check see it: the leader's own epoch ends at the log
    /// end.
    fn epoch_end(&self, epoch: LeaderEpoch, log: &impl LogView) -> Option<(LeaderEpoch, Offset)> {
        if epoch >= self.state.leader_epoch {
            return Some((self.state.leader_epoch, log.log_end()));
        }
        // The log answers older epochs: an epoch followed by this
        // leadership's first batch ends where the leadership began.
        log.end_offset_for_epoch(epoch)
    }

    /// A follower's fetch. Updates its progress when the fetch is
    /// consistent with the leader's log (and so states what the follower
    /// holds durably), then the ISR and the high watermark.
    pub fn on_fetch(
        &mut self,
        now_ms: i64,
        fetch: FollowerFetch,
        log: &impl LogView,
        out: &mut Vec<LeaderOutput>,
    ) -> FetchAnswer {
        let outcome = self.fetch_outcome(now_ms, fetch, log);
        if outcome == FetchOutcome::Records {
            self.maybe_expand(fetch.replica, out);
            self.maybe_advance(log, out);
        }
        FetchAnswer {
            outcome,
            high_watermark: self.high_watermark,
            log_start: log.log_start(),
        }
    }

    fn fetch_outcome(
        &mut self,
        now_ms: i64,
        fetch: FollowerFetch,
        log: &impl LogView,
    ) -> FetchOutcome {
        if fetch.current_leader_epoch < self.state.leader_epoch {
            return FetchOutcome::Error(ErrorCode::FENCED_LEADER_EPOCH);
        }
        if fetch.current_leader_epoch > self.state.leader_epoch {
            return FetchOutcome::Error(ErrorCode::UNKNOWN_LEADER_EPOCH);
        }
        let Some(progress) = self.followers.get(&fetch.replica).copied() else {
            return FetchOutcome::Error(ErrorCode::NOT_LEADER_OR_FOLLOWER);
        };
        if fetch.broker_epoch >= 0 && fetch.broker_epoch < progress.broker_epoch {
            // A fetch from an earlier incarnation of the follower.
            return FetchOutcome::Error(ErrorCode::STALE_BROKER_EPOCH);
        }
        if fetch.last_fetched_epoch.0 >= 0 {
            match self.epoch_end(fetch.last_fetched_epoch, log) {
                Some((epoch, end_offset))
                    if end_offset >= fetch.fetch_offset && epoch >= fetch.last_fetched_epoch => {}
                Some((epoch, end_offset)) => {
                    return FetchOutcome::Diverging { epoch, end_offset };
                }
                None => {
                    return FetchOutcome::Diverging {
                        epoch: LeaderEpoch::UNKNOWN,
                        end_offset: Offset::NONE,
                    };
                }
            }
        }
        let leader_end = log.log_end();
        if fetch.fetch_offset > leader_end || fetch.fetch_offset < log.log_start() {
            return FetchOutcome::Error(ErrorCode::OFFSET_OUT_OF_RANGE);
        }
        // Kafka's `Replica.updateFetchStateOrThrow`.
        let mut p = progress;
        if fetch.fetch_offset >= leader_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(now_ms);
        } else if p.last_fetch_leader_end != Offset::NONE
            && fetch.fetch_offset >= p.last_fetch_leader_end
        {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.last_fetch_ms = now_ms;
        p.last_fetch_leader_end = leader_end;
        p.log_end = fetch.fetch_offset;
        p.broker_epoch = p.broker_epoch.max(fetch.broker_epoch);
        self.followers.insert(fetch.replica, p);
        FetchOutcome::Records
    }

    /// The leader's own log moved (an append, a flush): the high watermark
    /// may advance.
    pub fn on_log_change(&mut self, log: &impl LogView, out: &mut Vec<LeaderOutput>) {
        self.maybe_advance(log, out);
    }

    /// Time passes: followers that have not caught up for
    /// `replica.lag.time.max.ms` leave the ISR (one AlterPartition).
    pub fn tick(&mut self, now_ms: i64, log: &impl LogView, out: &mut Vec<LeaderOutput>) {
        if self.pending.is_some() {
            return;
        }
        let leader_end = log.log_end();
        let lag_max = self.settings.replica_lag_time_max_ms;
        let out_of_sync: Vec<NodeId> = self
            .state
            .isr
            .iter()
            .filter(|r| **r != self.me)
            .filter(|r| {
                self.followers.get(r).is_some_and(|p| {
                    p.log_end < leader_end && p.last_caught_up_ms < now_ms.saturating_sub(lag_max)
                })
            })
            .copied()
            .collect();
        if out_of_sync.is_empty() {
            return;
        }
        let isr: Vec<NodeId> = self
            .state
            .isr
            .iter()
            .filter(|r| !out_of_sync.contains(r))
            .copied()
            .collect();
        self.request_isr(isr, out);
        // The committed ISR stays in use until the controller answers.
        self.maybe_advance(log, out);
    }

    /// The followers a consumer fetching at `fetch_offset` may be sent to
    /// (KIP-392, Kafka's `findPreferredReadReplica`): those in the
    /// committed ISR whose log end is at or past `fetch_offset`. A follower
    /// that an AlterPartition in flight removes is left out already (Kafka
    /// still offers it until the shrink is committed).
    pub fn read_replica_candidates(&self, fetch_offset: Offset, now_ms: i64) -> Vec<ReadReplica> {
        self.followers
            .iter()
            .filter(|(r, p)| {
                self.state.isr.contains(r)
                    && self.pending.as_ref().is_none_or(|q| q.isr.contains(r))
                    && p.log_end != Offset::NONE
                    && p.log_end >= fetch_offset
            })
            .map(|(r, p)| ReadReplica {
                node: *r,
                log_end: p.log_end,
                since_caught_up_ms: now_ms.saturating_sub(p.last_caught_up_ms).max(0),
            })
            .collect()
    }

    /// Kafka's `isFollowerInSync` for a follower outside the ISR: it holds
    /// the high watermark and everything of earlier epochs.
    fn maybe_expand(&mut self, replica: NodeId, out: &mut Vec<LeaderOutput>) {
        if self.pending.is_some() || self.state.isr.contains(&replica) {
            return;
        }
        let Some(p) = self.followers.get(&replica) else {
            return;
        };
        if p.log_end >= self.high_watermark && p.log_end >= self.epoch_start_offset {
            let mut isr = self.state.isr.clone();
            isr.push(replica);
            self.request_isr(isr, out);
        }
    }

    fn request_isr(&mut self, isr: Vec<NodeId>, out: &mut Vec<LeaderOutput>) {
        assert!(isr.contains(&self.me), "an ISR request without its leader");
        assert!(isr.len() <= limits::REPLICAS_PER_PARTITION_MAX);
        assert!(self.pending.is_none(), "two AlterPartitions in flight");
        let new_isr = isr
            .iter()
            .map(|r| IsrMember {
                broker_id: *r,
                broker_epoch: self.followers.get(r).map_or(-1, |p| p.broker_epoch),
            })
            .collect();
        out.push(LeaderOutput::AlterPartition(AlterPartition {
            leader: self.me,
            leader_epoch: self.state.leader_epoch,
            partition_epoch: self.state.partition_epoch,
            new_isr,
        }));
        self.pending = Some(Pending {
            isr,
            sent_partition_epoch: self.state.partition_epoch,
            refused: false,
        });
    }

    /// The request in flight, to send again when its answer is lost
    /// (`None` once the controller refused it as stale).
    pub fn pending_request(&self) -> Option<AlterPartition> {
        let p = self.pending.as_ref().filter(|p| !p.refused)?;
        Some(AlterPartition {
            leader: self.me,
            leader_epoch: self.state.leader_epoch,
            partition_epoch: p.sent_partition_epoch,
            new_isr: p
                .isr
                .iter()
                .map(|r| IsrMember {
                    broker_id: *r,
                    broker_epoch: self.followers.get(r).map_or(-1, |p| p.broker_epoch),
                })
                .collect(),
        })
    }

    /// The controller refused the request in flight. INELIGIBLE_REPLICA
    /// changed nothing: the committed ISR is in use again. NOT_CONTROLLER
    /// and REQUEST_TIMED_OUT: the request is sent again
    /// ([`Leader::pending_request`]). Any other refusal
    /// (INVALID_UPDATE_VERSION, FENCED_LEADER_EPOCH, ...) means the
    /// controller's state moved on in a way this leader does not know yet:
    /// the maximal ISR stays in use until the metadata brings the newer
    /// state (as Kafka's `handleAlterPartitionError`), so the high watermark
    /// never counts on a smaller set than the controller's ISR.
    pub fn on_alter_partition_error(
        &mut self,
        code: ErrorCode,
        log: &impl LogView,
        out: &mut Vec<LeaderOutput>,
    ) {
        match code {
            ErrorCode::INELIGIBLE_REPLICA => {
                self.pending = None;
                self.maybe_advance(log, out);
            }
            // Sent again by the caller.
            ErrorCode::NOT_CONTROLLER | ErrorCode::REQUEST_TIMED_OUT => {}
            _ => {
                if let Some(p) = &mut self.pending {
                    p.refused = true;
                }
            }
        }
    }

    /// New settings for this leadership (a topic's `min.insync.replicas`
    /// changed in the metadata image, with no leadership change): the
    /// high watermark may advance at once under a lower minimum.
    pub fn set_settings(
        &mut self,
        settings: Settings,
        log: &impl LogView,
        out: &mut Vec<LeaderOutput>,
    ) {
        self.settings = settings;
        self.maybe_advance(log, out);
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The partition's committed state for this leader epoch (an
    /// AlterPartition answer, or the metadata image): the ISR in use
    /// follows it.
    pub fn on_partition_state(
        &mut self,
        state: PartitionState,
        log: &impl LogView,
        out: &mut Vec<LeaderOutput>,
    ) {
        assert_eq!(state.leader, self.me, "leader state for another leader");
        assert_eq!(
            state.leader_epoch, self.state.leader_epoch,
            "leader state for another epoch"
        );
        if state.partition_epoch <= self.state.partition_epoch {
            return;
        }
        assert!(state.isr.contains(&self.me), "a leader outside its ISR");
        if self
            .pending
            .as_ref()
            .is_some_and(|p| state.partition_epoch > p.sent_partition_epoch)
        {
            self.pending = None;
        }
        for r in &state.replicas {
            if *r != self.me {
                self.followers.entry(*r).or_insert(Progress {
                    log_end: Offset::NONE,
                    last_caught_up_ms: i64::MIN,
                    last_fetch_ms: i64::MIN,
                    last_fetch_leader_end: Offset::NONE,
                    broker_epoch: -1,
                });
            }
        }
        self.state = state;
        self.maybe_advance(log, out);
    }

    /// Kafka's `maybeIncrementLeaderHW` with KIP-966's rule: the minimum
    /// durable log end over the maximal ISR, the leader's included; not
    /// while the ISR is below `min.insync.replicas`; never back.
    fn maybe_advance(&mut self, log: &impl LogView, out: &mut Vec<LeaderOutput>) {
        if self.state.isr.len() < self.min_isr() {
            return;
        }
        let mut candidate = log.durable_end();
        assert!(candidate <= log.log_end(), "durable end past the log end");
        for r in self.maximal_isr() {
            // The planted bug (a compile-time feature, off by default, only
            // to show that tests/e2e/checker.py finds the loss): followers
            // are not counted.
            if r == self.me || cfg!(feature = "planted-bug-hw-ignores-followers") {
                continue;
            }
            let end = self.followers.get(&r).map_or(Offset::NONE, |p| p.log_end);
            candidate = candidate.min(end);
        }
        if candidate > self.high_watermark {
            assert!(
                candidate <= log.durable_end(),
                "high watermark past the durable end"
            );
            self.high_watermark = candidate;
            out.push(LeaderOutput::HighWatermark(candidate));
        }
    }
}
