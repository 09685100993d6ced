//! Replication in the partition layer: the shell around
//! `fjord-replication`'s core for one partition with more than one replica.
//!
//! The cluster layer makes this node the partition's leader
//! ([`Partition::become_leader`]) or a follower
//! ([`Partition::become_follower`]) from the metadata image. As leader the
//! partition answers followers' fetches ([`Partition::follower_fetch`]:
//! records up to the log end, not the high watermark), and its high
//! watermark is the core's: the minimum durable end over the ISR in use;
//! acks=all appends are refused while the ISR is below
//! `min.insync.replicas` and resolve when the high watermark passes them. As
//! follower it says what to fetch from whom ([`Partition::poll_replica_fetch`])
//! and applies the answer ([`Partition::on_replica_fetch_answer`]: append as
//! follower, or truncate on the leader's diverging epoch). What the core
//! asks of the controller (AlterPartition) comes back as [`LeaderOutput`]s
//! for the caller to send.

use std::sync::atomic::Ordering;

use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};
use fjord_replication::{
    FetchAnswer, FetchOutcome, Follower, FollowerAction, FollowerFetch, FollowerSettings, Leader,
    LeaderOutput, LogView, PartitionState, ReadReplica, Settings,
};
use fjord_storage::{Log, ReadResult};

use crate::{Partition, PartitionError, ReplicaState};

/// The storage log as the replication core sees it.
pub(crate) struct StorageLog<'a>(pub(crate) &'a Log);

impl LogView for StorageLog<'_> {
    fn log_start(&self) -> Offset {
        self.0.log_start_offset()
    }

    fn log_end(&self) -> Offset {
        self.0.log_end_offset()
    }

    fn durable_end(&self) -> Offset {
        self.0.durable_offset().min(self.0.log_end_offset())
    }

    fn last_epoch(&self) -> Option<LeaderEpoch> {
        self.0.leader_epochs().last().map(|(e, _)| *e)
    }

    /// The core's contract (the largest epoch `<= epoch` held and where it
    /// ends; `None` when none is held) over the log's epoch cache, whose
    /// answers differ at the edges (above the latest: undefined; below the
    /// first: the requested epoch).
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let epochs = self.0.leader_epochs();
        let (first, _) = *epochs.first()?;
        let (latest, _) = *epochs.last()?;
        if epoch < first {
            return None;
        }
        if epoch >= latest {
            return Some((latest, self.0.log_end_offset()));
        }
        self.0.end_offset_for_epoch(epoch)
    }
}

/// This node's part in replicating a partition with more than one replica.
#[derive(Debug)]
pub(crate) enum Role {
    Leader(Leader),
    Follower(Follower),
}

/// The leader's answer to a follower's fetch: the core's answer and, when
/// it says records, the file ranges from the fetch offset (up to the log
/// end: followers read past the high watermark).
#[derive(Debug)]
pub struct ReplicaFetched {
    pub answer: FetchAnswer,
    pub records: Option<ReadResult>,
    /// For the caller to carry out (AlterPartition to the controller).
    pub outputs: Vec<LeaderOutput>,
}

fn replica_state(s: &PartitionState) -> ReplicaState {
    ReplicaState {
        leader: s.leader,
        leader_epoch: s.leader_epoch,
        replicas: s.replicas.clone(),
        isr: s.isr.clone(),
    }
}

impl Partition {
    /// This node leads `state` (from the metadata image). A partition whose
    /// only replica is this node keeps the single-node rules (the high
    /// watermark is the log end, acks=all waits for the group commit).
    pub fn become_leader(
        &self,
        state: PartitionState,
        settings: Settings,
        now_ms: i64,
    ) -> Vec<LeaderOutput> {
        assert_eq!(
            state.leader, self.local,
            "become_leader of a partition led elsewhere"
        );
        let mut out = Vec::new();
        let mut role = self.role.lock();
        if let Some(Role::Leader(l)) = &mut *role {
            if l.leader_epoch() == state.leader_epoch {
                l.on_partition_state(state.clone(), &StorageLog(&self.log), &mut out);
                drop(role);
                self.set_replica_state(replica_state(&state));
                self.apply_outputs(&out);
                return out;
            }
        }
        let single = state.replicas == [self.local];
        if single {
            *role = None;
        } else {
            let hw = Offset(
                self.high_watermark
                    .load(std::sync::atomic::Ordering::Acquire),
            );
            let leader = Leader::new(
                self.local,
                state.clone(),
                settings,
                &StorageLog(&self.log),
                hw,
                now_ms,
            );
            *role = Some(Role::Leader(leader));
        }
        drop(role);
        self.ticked_durable_end.store(-1, Ordering::Release);
        self.set_replica_state(replica_state(&state));
        self.publish_commit_state();
        out
    }

    /// New replication settings for the leadership this node holds (the
    /// topic's `min.insync.replicas` or the broker's
    /// `replica.lag.time.max.ms` changed without a leadership change);
    /// nothing where it does not lead with other replicas. Kafka's leader
    /// reads `min.insync.replicas` from the topic config on every check.
    pub fn set_leader_settings(&self, settings: Settings) {
        let mut out = Vec::new();
        {
            let mut role = self.role.lock();
            let Some(Role::Leader(l)) = &mut *role else {
                return;
            };
            if l.settings() == settings {
                return;
            }
            l.set_settings(settings, &StorageLog(&self.log), &mut out);
        }
        self.apply_outputs(&out);
        self.publish_commit_state();
    }

    /// This node follows `state.leader` (or no one while it is -1), fetching
    /// with `broker_epoch`. Nothing is truncated here: the leader's answer
    /// to the next fetch settles divergence.
    pub fn become_follower(
        &self,
        state: PartitionState,
        broker_epoch: i64,
        settings: FollowerSettings,
    ) {
        assert!(
            state.leader != self.local,
            "become_follower of a partition led here"
        );
        let mut role = self.role.lock();
        if !matches!(&*role, Some(Role::Follower(_))) {
            let hw = Offset(
                self.high_watermark
                    .load(std::sync::atomic::Ordering::Acquire),
            );
            *role = Some(Role::Follower(Follower::new(
                self.local,
                broker_epoch,
                settings,
                hw,
            )));
        }
        if let Some(Role::Follower(f)) = &mut *role {
            if state.leader.0 >= 0 {
                let truncated =
                    f.on_new_leader(state.leader, state.leader_epoch, &StorageLog(&self.log));
                assert!(
                    truncated.is_none(),
                    "a follower truncated on a leader change"
                );
            }
        }
        drop(role);
        self.set_replica_state(replica_state(&state));
        // acks=all waiters of a former leadership fail.
        self.publish_commit_state();
    }

    /// The leader this node fetches from, while it is a follower that
    /// knows one.
    pub fn following(&self) -> Option<NodeId> {
        match &*self.role.lock() {
            Some(Role::Follower(f)) => f.leader(),
            _ => None,
        }
    }

    /// This node leads the partition with other replicas (its high
    /// watermark is the replication core's).
    pub fn is_replicated_leader(&self) -> bool {
        matches!(&*self.role.lock(), Some(Role::Leader(_)))
    }

    /// This node stops replicating the partition (it is no longer one of
    /// its replicas, or the partition is going away): a leadership's acks=all
    /// waiters fail, a follower stops fetching.
    pub fn stop_replicating(&self) {
        let had = self.role.lock().take().is_some();
        if had {
            self.publish_commit_state();
            self.wake_waiters();
        }
    }

    /// A follower's fetch of this partition (the Fetch handler, for a
    /// request with a replica id).
    pub fn follower_fetch(
        &self,
        fetch: FollowerFetch,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<ReplicaFetched, PartitionError> {
        let mut out = Vec::new();
        let answer = {
            let mut role = self.role.lock();
            let Some(Role::Leader(l)) = &mut *role else {
                let r = self.replica.read();
                return Err(PartitionError::NotLeader {
                    node: self.local,
                    leader: r.leader,
                });
            };
            l.on_fetch(now_ms, fetch, &StorageLog(&self.log), &mut out)
        };
        if out
            .iter()
            .any(|o| matches!(o, LeaderOutput::AlterPartition(_)))
        {
            self.alter_wanted.store(true, Ordering::Release);
        }
        self.apply_outputs(&out);
        let records = match answer.outcome {
            FetchOutcome::Records => {
                let end = self.log.log_end_offset();
                Some(self.log.read(fetch.fetch_offset, max_bytes, end, true)?)
            }
            _ => None,
        };
        Ok(ReplicaFetched {
            answer,
            records,
            outputs: out,
        })
    }

    /// The in-sync followers a consumer fetching at `fetch_offset` may be
    /// sent to (KIP-392), when this node leads the partition with other
    /// replicas; `None` otherwise (the consumer reads here).
    pub fn read_replica_candidates(
        &self,
        fetch_offset: Offset,
        now_ms: i64,
    ) -> Option<Vec<ReadReplica>> {
        match &*self.role.lock() {
            Some(Role::Leader(l)) => Some(l.read_replica_candidates(fetch_offset, now_ms)),
            _ => None,
        }
    }

    /// Time passes on the leader: the ISR may shrink, an AlterPartition in
    /// flight may be sent again (`resend`), the leader's own durable end
    /// (group commit) may move the high watermark.
    pub fn replication_tick(&self, now_ms: i64, resend: bool) -> Vec<LeaderOutput> {
        let mut out = Vec::new();
        // Before reading the log: a flush that ends after this still wants
        // the next tick.
        self.alter_wanted.store(false, Ordering::Release);
        self.ticked_durable_end
            .store(self.log.durable_offset().0, Ordering::Release);
        {
            let mut role = self.role.lock();
            if let Some(Role::Leader(l)) = &mut *role {
                let log = StorageLog(&self.log);
                l.on_log_change(&log, &mut out);
                l.tick(now_ms, &log, &mut out);
                if resend
                    && out
                        .iter()
                        .all(|o| !matches!(o, LeaderOutput::AlterPartition(_)))
                {
                    if let Some(req) = l.pending_request() {
                        out.push(LeaderOutput::AlterPartition(req));
                    }
                }
            }
        }
        self.apply_outputs(&out);
        out
    }

    /// Whether [`Partition::replication_tick`] has work that should not wait
    /// for the tick's next sweep over every partition: the log's durable end
    /// moved since the last tick (a flush finished: the leader's own copy may
    /// move the high watermark), an AlterPartition waits to be sent, or this
    /// node just became leader. A few atomic reads and one uncontended lock,
    /// so that a node with thousands of partitions does not run every
    /// leader's state machine every few milliseconds.
    pub fn replication_tick_wanted(&self) -> bool {
        self.alter_wanted.load(Ordering::Acquire)
            || self.ticked_durable_end.load(Ordering::Acquire) != self.log.durable_offset().0
    }

    /// The controller's answer to this leader's AlterPartition: the new
    /// state, or the error.
    pub fn on_alter_partition_answer(&self, answer: Result<PartitionState, ErrorCode>) {
        let mut out = Vec::new();
        let mut new_state = None;
        {
            let mut role = self.role.lock();
            let Some(Role::Leader(l)) = &mut *role else {
                return;
            };
            let log = StorageLog(&self.log);
            match answer {
                Ok(s) if s.leader == self.local && s.leader_epoch == l.leader_epoch() => {
                    l.on_partition_state(s.clone(), &log, &mut out);
                    new_state = Some(s);
                }
                Ok(_) => {}
                Err(code) => l.on_alter_partition_error(code, &log, &mut out),
            }
        }
        if let Some(s) = new_state {
            self.set_replica_state(replica_state(&s));
        }
        self.apply_outputs(&out);
        self.publish_commit_state();
    }

    /// The fetch this follower sends now, and to whom (one in flight; only
    /// once what it appended is durable).
    pub fn poll_replica_fetch(&self, now_ms: i64) -> Option<(NodeId, FollowerFetch)> {
        let mut role = self.role.lock();
        let Some(Role::Follower(f)) = &mut *role else {
            return None;
        };
        let end = self.log.log_end_offset();
        if f.durable_fetch() && self.log.durable_offset() < end {
            // Records appended before this node followed (acks=1 as a
            // leader) hold the next fetch back until they are durable.
            drop(self.log.sync_to(Offset(end.0 - 1)));
        }
        f.poll_fetch(now_ms, &StorageLog(&self.log))
    }

    /// The leader's answer to `fetch`, with the record batches it carried
    /// (exactly as the leader stored them). Appends them as follower, or
    /// truncates on a diverging epoch; the follower's high watermark
    /// follows the leader's, bounded by its durable log end.
    pub fn on_replica_fetch_answer(
        &self,
        now_ms: i64,
        fetch: FollowerFetch,
        answer: FetchAnswer,
        records: &[u8],
    ) -> Result<(), PartitionError> {
        let mut role = self.role.lock();
        let Some(Role::Follower(f)) = &mut *role else {
            return Ok(());
        };
        let log = StorageLog(&self.log);
        let records_end = records_end(records).unwrap_or(fetch.fetch_offset);
        match f.on_answer(now_ms, fetch, answer, records_end, &log) {
            FollowerAction::Ignore => {}
            FollowerAction::Append => {
                if !records.is_empty() {
                    let r = self.log.append_as_follower(records, now_ms)?;
                    if f.durable_fetch() {
                        // The next fetch waits for this: ask for the flush now.
                        drop(self.log.sync_to(r.last_offset));
                    }
                }
            }
            FollowerAction::Truncate(to) => {
                let hw = f.high_watermark();
                // Relied on: committed records are never truncated.
                assert!(to >= hw, "truncation to {to} below the high watermark {hw}");
                self.log.truncate_to(to)?;
            }
        }
        if let Some(hw) = f.on_log_change(&StorageLog(&self.log)) {
            drop(role);
            self.advance_high_watermark(hw);
        }
        Ok(())
    }

    /// Whether this node follows the partition with `durable_fetch`
    /// (`replica.fetch.durable`): the fetcher then waits for a flush of what
    /// it appended before the next round.
    pub fn durable_fetch(&self) -> bool {
        match &*self.role.lock() {
            Some(Role::Follower(f)) => f.durable_fetch(),
            _ => true,
        }
    }

    /// The follower's durable end moved (a flush finished): its high
    /// watermark may follow.
    pub fn on_follower_flush(&self) {
        let hw = {
            let mut role = self.role.lock();
            let Some(Role::Follower(f)) = &mut *role else {
                return;
            };
            f.on_log_change(&StorageLog(&self.log))
        };
        if let Some(hw) = hw {
            self.advance_high_watermark(hw);
        }
    }

    fn apply_outputs(&self, out: &[LeaderOutput]) {
        for o in out {
            if let LeaderOutput::HighWatermark(hw) = o {
                self.advance_high_watermark(*hw);
            }
        }
    }

    /// The high watermark moves up (never back) and waiters learn it.
    fn advance_high_watermark(&self, hw: Offset) {
        // Relied on below: a high watermark within the log.
        assert!(
            hw <= self.log.log_end_offset(),
            "partition {}: high watermark {hw} past the log end",
            self.index
        );
        self.high_watermark
            .fetch_max(hw.0, std::sync::atomic::Ordering::AcqRel);
        self.publish_commit_state();
        self.wake_waiters();
    }

    /// What acks=all waiters of a replicated leadership see.
    pub(crate) fn publish_commit_state(&self) {
        let role = self.role.lock();
        let state = match &*role {
            Some(Role::Leader(l)) => CommitState {
                leader_epoch: Some(l.leader_epoch()),
                high_watermark: l.high_watermark(),
                enough_isr: l.isr_meets_min(),
            },
            _ => CommitState {
                leader_epoch: None,
                high_watermark: Offset(
                    self.high_watermark
                        .load(std::sync::atomic::Ordering::Acquire),
                ),
                enough_isr: false,
            },
        };
        drop(role);
        self.commit_tx.send_replace(state);
    }

    /// acks=all on a replicated leader: NOT_ENOUGH_REPLICAS before the
    /// append while the ISR is below `min.insync.replicas`. `None` when this
    /// partition is not a replicated leader.
    pub(crate) fn replicated_leader_check(&self) -> Option<Result<LeaderEpoch, PartitionError>> {
        let role = self.role.lock();
        match &*role {
            Some(Role::Leader(l)) => Some(
                l.check_acks_all_append()
                    .map(|()| l.leader_epoch())
                    .map_err(|_| PartitionError::NotEnoughReplicas),
            ),
            _ => None,
        }
    }
}

/// What an acks=all waiter of a replicated partition watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommitState {
    /// The epoch this node leads (`None`: it does not lead).
    pub(crate) leader_epoch: Option<LeaderEpoch>,
    pub(crate) high_watermark: Offset,
    /// The ISR in use holds at least `min.insync.replicas` members.
    pub(crate) enough_isr: bool,
}

/// The offset after the last batch of `records` (whole batches as a leader
/// stored them), `None` when there is none.
fn records_end(records: &[u8]) -> Option<Offset> {
    let mut end = None;
    for item in fjord_records::batches(records) {
        let Ok((h, _)) = item else {
            break;
        };
        end = Some(Offset(h.last_offset() + 1));
    }
    end
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset, PartitionIndex};
    use fjord_records::{BatchBuilder, Compression};
    use fjord_replication::{
        FetchOutcome, FollowerSettings, LeaderOutput, PartitionState, Settings,
    };
    use fjord_storage::{Log, LogConfig, Storage};

    use crate::{Acks, Partition, PartitionError, ReplicaState};

    fn open(dir: &std::path::Path, node: i32) -> Partition {
        let (log, _) = Log::open(&Storage::default(), dir, LogConfig::default(), 0).unwrap();
        Partition::new(
            PartitionIndex(0),
            log,
            NodeId(node),
            ReplicaState::single_node(NodeId(node)),
        )
    }

    fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            leader: NodeId(leader),
            leader_epoch: LeaderEpoch(epoch),
            partition_epoch: 1,
            replicas: vec![NodeId(1), NodeId(2)],
            isr: isr.iter().map(|r| NodeId(*r)).collect(),
        }
    }

    /// `leader` leads `epoch` alone in the ISR.
    fn state_led_by(leader: i32, epoch: i32) -> PartitionState {
        state(leader, epoch, &[leader])
    }

    fn settings(min_isr: usize) -> Settings {
        Settings {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: min_isr,
        }
    }

    fn follower_settings() -> FollowerSettings {
        FollowerSettings {
            fetch_backoff_ms: 10,
            fetch_timeout_ms: 1_000,
            fetch_idle_ms: 0,
            durable_fetch: true,
        }
    }

    fn batch(n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..n {
            b.push(i as i64, Some(b"k".as_slice()), Some(b"v".as_slice()), &[]);
        }
        b.build(0)
    }

    /// One fetch round from `f` to `l`, once the follower's log is durable.
    fn round(l: &Partition, f: &Partition, now: i64) -> FetchOutcome {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (to, fetch) = loop {
            if let Some(x) = f.poll_replica_fetch(now) {
                break x;
            }
            assert!(Instant::now() < deadline, "the follower never fetched");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(to, NodeId(1));
        let got = l.follower_fetch(fetch, 1 << 20, now).unwrap();
        let bytes = got.records.map(|r| r.to_vec().unwrap()).unwrap_or_default();
        f.on_replica_fetch_answer(now, fetch, got.answer, &bytes)
            .unwrap();
        got.answer.outcome
    }

    fn wait_durable(p: &Partition) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.log.durable_offset() < p.log.log_end_offset() {
            assert!(Instant::now() < deadline, "never durable");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn acks_all_resolves_once_the_follower_holds_the_batch_durably() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (l, f) = (Arc::new(open(d1.path(), 1)), open(d2.path(), 2));
        assert!(l
            .become_leader(state(1, 3, &[1, 2]), settings(2), 0)
            .is_empty());
        f.become_follower(state(1, 3, &[1, 2]), 7, follower_settings());
        let mut b = batch(3);
        let a = l.append(&mut b, Acks::All, 0).unwrap();
        assert_eq!(a.result.base_offset, Offset(0));
        assert_eq!(
            l.high_watermark(),
            Offset(0),
            "not committed before the follower has it"
        );
        let waiter = std::thread::spawn(move || a.committed.wait_blocking());
        assert_eq!(round(&l, &f, 1), FetchOutcome::Records);
        assert_eq!(f.log_end_offset(), Offset(3));
        assert_eq!(
            l.high_watermark(),
            Offset(0),
            "the follower's fetch offset was still 0"
        );
        wait_durable(&l);
        // The next fetch states offset 3 once the follower's copy is durable.
        round(&l, &f, 2);
        assert_eq!(l.high_watermark(), Offset(3));
        waiter.join().unwrap().unwrap();
        // The follower learns the high watermark with the next answer.
        round(&l, &f, 3);
        assert_eq!(f.high_watermark(), Offset(3));
        // Followers read past the high watermark, consumers do not.
        let mut b = batch(1);
        l.append(&mut b, Acks::Leader, 4).unwrap();
        assert_eq!(round(&l, &f, 5), FetchOutcome::Records);
        assert_eq!(f.log_end_offset(), Offset(4));
        assert_eq!(l.high_watermark(), Offset(3));
    }

    /// `replica.fetch.durable=false` (`durable_fetch: false`): the follower
    /// neither asks for a flush nor waits for one, and its next fetch tells
    /// the leader it holds the batch, so acks=all resolves while the
    /// follower's copy is only in the page cache (Kafka's model).
    #[test]
    fn without_durable_fetch_acks_all_resolves_before_the_follower_flushes() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (l, f) = (Arc::new(open(d1.path(), 1)), open(d2.path(), 2));
        l.become_leader(state(1, 3, &[1, 2]), settings(2), 0);
        let unsynced = FollowerSettings {
            durable_fetch: false,
            ..follower_settings()
        };
        f.become_follower(state(1, 3, &[1, 2]), 7, unsynced);
        assert!(!f.durable_fetch());
        let mut b = batch(3);
        let a = l.append(&mut b, Acks::All, 0).unwrap();
        let waiter = std::thread::spawn(move || a.committed.wait_blocking());
        assert_eq!(round(&l, &f, 1), FetchOutcome::Records);
        assert_eq!(f.log_end_offset(), Offset(3));
        wait_durable(&l);
        let (_, fetch) = f.poll_replica_fetch(2).expect("a fetch at once");
        assert_eq!(fetch.fetch_offset, Offset(3));
        assert_eq!(
            f.log.durable_offset(),
            Offset(0),
            "the follower's copy is not flushed"
        );
        let got = l.follower_fetch(fetch, 1 << 20, 2).unwrap();
        assert_eq!(l.high_watermark(), Offset(3));
        waiter.join().unwrap().unwrap();
        f.on_replica_fetch_answer(2, fetch, got.answer, &[])
            .unwrap();
        assert_eq!(
            f.high_watermark(),
            Offset(0),
            "the follower's own high watermark waits for its flush"
        );
    }

    #[test]
    fn below_min_insync_replicas_acks_all_is_refused_before_the_append() {
        let dir = tempfile::tempdir().unwrap();
        let l = open(dir.path(), 1);
        l.become_leader(state(1, 3, &[1]), settings(2), 0);
        let mut b = batch(1);
        let e = l.append(&mut b, Acks::All, 0).unwrap_err();
        assert!(matches!(e, PartitionError::NotEnoughReplicas), "{e:?}");
        assert_eq!(e.kafka_code(), ErrorCode::NOT_ENOUGH_REPLICAS);
        assert_eq!(l.log_end_offset(), Offset(0), "nothing appended");
        // acks=1 is taken.
        l.append(&mut b, Acks::Leader, 0).unwrap();
        assert_eq!(l.log_end_offset(), Offset(1));
    }

    /// A topic's `min.insync.replicas` lowered in the image reaches the
    /// leadership with no leadership change: acks=all is taken, and the
    /// high watermark (held back while the ISR was below the minimum)
    /// advances at once; raised again, acks=all is refused again.
    #[test]
    fn a_min_insync_replicas_change_reaches_the_leader_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let l = open(dir.path(), 1);
        l.become_leader(state(1, 3, &[1]), settings(2), 0);
        let mut b = batch(2);
        l.append(&mut b, Acks::Leader, 0).unwrap();
        drop(l.log.sync_to(l.log.log_end_offset()));
        wait_durable(&l);
        l.replication_tick(1, false);
        assert_eq!(
            l.high_watermark(),
            Offset(0),
            "held below min.insync.replicas"
        );
        let mut b = batch(1);
        let e = l.append(&mut b, Acks::All, 1).unwrap_err();
        assert!(matches!(e, PartitionError::NotEnoughReplicas), "{e:?}");
        l.set_leader_settings(settings(1));
        assert_eq!(
            l.high_watermark(),
            Offset(2),
            "advanced under the new minimum"
        );
        let a = l.append(&mut b, Acks::All, 2).unwrap();
        assert_eq!(a.result.base_offset, Offset(2));
        l.set_leader_settings(settings(2));
        let mut b = batch(1);
        let e = l.append(&mut b, Acks::All, 3).unwrap_err();
        assert!(matches!(e, PartitionError::NotEnoughReplicas), "{e:?}");
        assert_eq!(
            l.replica_state().leader_epoch,
            LeaderEpoch(3),
            "no leadership change"
        );
    }

    #[test]
    fn a_lost_leadership_fails_acks_all_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let l = open(dir.path(), 1);
        l.become_leader(state(1, 3, &[1, 2]), settings(2), 0);
        let mut b = batch(1);
        let a = l.append(&mut b, Acks::All, 0).unwrap();
        l.become_follower(state(2, 4, &[2]), 7, follower_settings());
        let e = a.committed.wait_blocking().unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    }

    #[test]
    fn a_follower_truncates_its_divergent_tail_on_the_leaders_answer() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (l, f) = (open(d1.path(), 1), open(d2.path(), 2));
        // Both hold 2 records of epoch 1 (committed); node 2, leading
        // epoch 2 briefly, wrote 2 more that nobody else has.
        for p in [&l, &f] {
            p.become_leader(state_led_by(p.local.0, 1), settings(1), 0);
            let mut b = batch(2);
            p.append(&mut b, Acks::Leader, 0).unwrap();
        }
        // Epoch 2: node 2 leads with both in the ISR; its acks=1 records
        // are never committed (node 1 never fetches them).
        f.become_leader(state(2, 2, &[1, 2]), settings(2), 0);
        let mut b = batch(2);
        f.append(&mut b, Acks::Leader, 0).unwrap();
        assert_eq!(f.log_end_offset(), Offset(4));
        // Node 1 leads epoch 3; node 2 follows.
        l.become_leader(state(1, 3, &[1, 2]), settings(1), 0);
        f.become_follower(state(1, 3, &[1, 2]), 7, follower_settings());
        // Its acks=1 records are not durable: polling asks for the flush.
        let out = round(&l, &f, 1);
        assert_eq!(
            out,
            FetchOutcome::Diverging {
                epoch: LeaderEpoch(1),
                end_offset: Offset(2)
            }
        );
        assert_eq!(
            f.log_end_offset(),
            Offset(2),
            "cut back to the end of epoch 1"
        );
        assert_eq!(round(&l, &f, 2), FetchOutcome::Records);
        let outputs: Vec<LeaderOutput> = l.replication_tick(3, false);
        assert!(outputs
            .iter()
            .all(|o| !matches!(o, LeaderOutput::AlterPartition(_))));
    }

    /// A replicated partition reopened after a restart of both replicas
    /// starts from the high watermark it saved, not from its log start.
    #[test]
    fn a_restarted_replica_starts_from_its_saved_high_watermark() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        {
            let (l, f) = (open(d1.path(), 1), open(d2.path(), 2));
            l.become_leader(state(1, 3, &[1, 2]), settings(2), 0);
            f.become_follower(state(1, 3, &[1, 2]), 7, follower_settings());
            let mut b = batch(3);
            drop(l.append(&mut b, Acks::All, 0).unwrap());
            round(&l, &f, 1);
            wait_durable(&l);
            round(&l, &f, 2);
            round(&l, &f, 3);
            assert_eq!(
                (l.high_watermark(), f.high_watermark()),
                (Offset(3), Offset(3))
            );
            // Not committed: a restart must not count it.
            let mut b = batch(2);
            drop(l.append(&mut b, Acks::All, 4).unwrap());
            l.save_high_watermark(5, false).unwrap();
            f.save_high_watermark(5, false).unwrap();
            // Within the interval a moved high watermark waits; `force` saves it.
            round(&l, &f, 6);
            wait_durable(&l);
            round(&l, &f, 7);
            assert_eq!(l.high_watermark(), Offset(5));
            l.save_high_watermark(8, false).unwrap();
            assert_eq!(l.log.saved_high_watermark(), Some(Offset(3)));
            l.save_high_watermark(8, true).unwrap();
            assert_eq!(l.log.saved_high_watermark(), Some(Offset(5)));
            l.log.close().unwrap();
            f.log.close().unwrap();
        }
        let reopen = |dir: &std::path::Path, node: i32| {
            let (log, _) = Log::open(&Storage::default(), dir, LogConfig::default(), 0).unwrap();
            Partition::new(
                PartitionIndex(0),
                log,
                NodeId(node),
                super::replica_state(&state(1, 3, &[1, 2])),
            )
        };
        let (l, f) = (reopen(d1.path(), 1), reopen(d2.path(), 2));
        assert_eq!(l.high_watermark(), Offset(5));
        assert_eq!(f.high_watermark(), Offset(3));
        l.become_leader(state(1, 4, &[1, 2]), settings(2), 10);
        assert_eq!(l.high_watermark(), Offset(5), "kept by the new leadership");
        l.log.close().unwrap();
        // Without the file it starts from the log start, as before.
        std::fs::remove_file(d1.path().join("replication-offset-checkpoint")).unwrap();
        let l = reopen(d1.path(), 1);
        assert_eq!(l.high_watermark(), Offset(0));
        // A saved value past what the log holds (its tail lost) is cut to the log end.
        l.log.close().unwrap();
        std::fs::write(
            d1.path().join("replication-offset-checkpoint"),
            "0\n1\n99\n",
        )
        .unwrap();
        let l = reopen(d1.path(), 1);
        assert_eq!(l.high_watermark(), Offset(5));
    }
}
