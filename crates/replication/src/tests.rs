//! The core's rules one at a time, on a `Vec` log.

use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};

use crate::{
    AlterPartition, FetchAnswer, FetchOutcome, Follower, FollowerAction, FollowerFetch,
    FollowerSettings, IsrMember, Leader, LeaderOutput, LogView, PartitionState, Settings,
};

/// A log of epochs, one per record, with a durable prefix.
struct VecLog {
    epochs: Vec<i32>,
    durable: usize,
}

impl VecLog {
    fn new(epochs: &[i32]) -> VecLog {
        VecLog {
            epochs: epochs.to_vec(),
            durable: epochs.len(),
        }
    }
}

impl LogView for VecLog {
    fn log_start(&self) -> Offset {
        Offset(0)
    }
    fn log_end(&self) -> Offset {
        Offset(self.epochs.len() as i64)
    }
    fn durable_end(&self) -> Offset {
        Offset(self.durable as i64)
    }
    fn last_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|e| LeaderEpoch(*e))
    }
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let i = self.epochs.iter().rposition(|e| *e <= epoch.0)?;
        Some((LeaderEpoch(self.epochs[i]), Offset(i as i64 + 1)))
    }
}

fn state(isr: &[i32], partition_epoch: i32) -> PartitionState {
    PartitionState {
        leader: NodeId(1),
        leader_epoch: LeaderEpoch(5),
        partition_epoch,
        replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
        isr: isr.iter().map(|r| NodeId(*r)).collect(),
    }
}

fn settings(min_isr: usize) -> Settings {
    Settings {
        replica_lag_time_max_ms: 1_000,
        min_insync_replicas: min_isr,
    }
}

fn fetch(replica: i32, offset: i64, last_epoch: i32) -> FollowerFetch {
    FollowerFetch {
        replica: NodeId(replica),
        broker_epoch: 100 + i64::from(replica),
        fetch_offset: Offset(offset),
        last_fetched_epoch: LeaderEpoch(last_epoch),
        current_leader_epoch: LeaderEpoch(5),
    }
}

fn alters(out: &[LeaderOutput]) -> Vec<AlterPartition> {
    out.iter()
        .filter_map(|o| match o {
            LeaderOutput::AlterPartition(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn high_watermark_is_the_minimum_durable_end_over_the_isr_and_never_moves_back() {
    let mut log = VecLog::new(&[1, 1, 3, 3]);
    let mut l = Leader::new(
        NodeId(1),
        state(&[1, 2, 3], 7),
        settings(2),
        &log,
        Offset(1),
        0,
    );
    assert_eq!(l.high_watermark(), Offset(1));
    let mut out = Vec::new();
    // The followers' ends are unknown until they fetch.
    l.on_log_change(&log, &mut out);
    assert_eq!(l.high_watermark(), Offset(1));
    assert_eq!(
        l.on_fetch(10, fetch(2, 4, 3), &log, &mut out).outcome,
        FetchOutcome::Records
    );
    assert_eq!(l.high_watermark(), Offset(1), "follower 3 is not known yet");
    let a = l.on_fetch(11, fetch(3, 3, 3), &log, &mut out);
    assert_eq!(a.high_watermark, Offset(3));
    assert_eq!(out, vec![LeaderOutput::HighWatermark(Offset(3))]);
    // The leader's own durable end bounds it.
    log.epochs.extend([5, 5]);
    log.durable = 4;
    assert_eq!(
        l.on_fetch(12, fetch(2, 6, 5), &log, &mut out)
            .high_watermark,
        Offset(3)
    );
    assert_eq!(
        l.on_fetch(13, fetch(3, 6, 5), &log, &mut out)
            .high_watermark,
        Offset(4)
    );
    log.durable = 6;
    l.on_log_change(&log, &mut out);
    assert_eq!(l.high_watermark(), Offset(6));
    // A follower reporting less (after its own restart) does not move it back.
    assert_eq!(
        l.on_fetch(14, fetch(2, 4, 3), &log, &mut out).outcome,
        FetchOutcome::Records
    );
    assert_eq!(l.high_watermark(), Offset(6));
}

#[test]
fn min_insync_replicas_gates_appends_and_the_high_watermark() {
    let log = VecLog::new(&[5, 5]);
    let mut l = Leader::new(NodeId(1), state(&[1], 7), settings(2), &log, Offset(0), 0);
    assert_eq!(
        l.check_acks_all_append(),
        Err(ErrorCode::NOT_ENOUGH_REPLICAS)
    );
    let mut out = Vec::new();
    l.on_log_change(&log, &mut out);
    assert_eq!(
        l.high_watermark(),
        Offset(0),
        "no advance while the ISR is below min.insync.replicas"
    );
    assert_eq!(l.acks_all_outcome(Offset(1)), None);
    // min.insync.replicas 1: the leader alone commits.
    let mut l1 = Leader::new(NodeId(1), state(&[1], 7), settings(1), &log, Offset(0), 0);
    assert_eq!(l1.check_acks_all_append(), Ok(()));
    l1.on_log_change(&log, &mut out);
    assert_eq!(l1.high_watermark(), Offset(2));
    assert_eq!(l1.acks_all_outcome(Offset(2)), Some(ErrorCode::NONE));
    assert_eq!(l1.acks_all_outcome(Offset(3)), None);
}

#[test]
fn acks_all_after_a_shrink_below_min_isr_is_not_enough_replicas_after_append() {
    let log = VecLog::new(&[5, 5]);
    let mut l = Leader::new(
        NodeId(1),
        state(&[1, 2], 7),
        settings(2),
        &log,
        Offset(0),
        0,
    );
    let mut out = Vec::new();
    l.on_fetch(1, fetch(2, 2, 5), &log, &mut out);
    assert_eq!(l.high_watermark(), Offset(2));
    assert_eq!(l.acks_all_outcome(Offset(2)), Some(ErrorCode::NONE));
    // The controller shrinks the ISR (the follower was fenced).
    l.on_partition_state(state(&[1], 8), &log, &mut out);
    assert_eq!(
        l.acks_all_outcome(Offset(2)),
        Some(ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
    );
    assert_eq!(
        l.check_acks_all_append(),
        Err(ErrorCode::NOT_ENOUGH_REPLICAS)
    );
}

#[test]
fn a_lagging_follower_leaves_the_isr_through_alter_partition() {
    let mut log = VecLog::new(&[5, 5, 5]);
    let mut l = Leader::new(
        NodeId(1),
        state(&[1, 2, 3], 7),
        settings(2),
        &log,
        Offset(0),
        0,
    );
    let mut out = Vec::new();
    l.on_fetch(100, fetch(2, 3, 5), &log, &mut out);
    l.on_fetch(100, fetch(3, 3, 5), &log, &mut out);
    assert_eq!(l.high_watermark(), Offset(3));
    log.epochs.push(5);
    log.durable = 4;
    // Follower 2 keeps up, follower 3 stops fetching.
    l.on_fetch(900, fetch(2, 4, 5), &log, &mut out);
    out.clear();
    l.tick(1_099, &log, &mut out);
    assert!(
        out.is_empty(),
        "follower 3 caught up at 100: within the lag time"
    );
    l.tick(1_101, &log, &mut out);
    assert_eq!(
        alters(&out),
        vec![AlterPartition {
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(5),
            partition_epoch: 7,
            new_isr: vec![
                IsrMember {
                    broker_id: NodeId(1),
                    broker_epoch: -1
                },
                IsrMember {
                    broker_id: NodeId(2),
                    broker_epoch: 102
                },
            ],
        }]
    );
    // While the shrink is in flight the committed ISR still counts.
    assert!(l.alter_pending());
    assert_eq!(l.high_watermark(), Offset(3));
    assert_eq!(l.pending_request(), alters(&out).pop());
    out.clear();
    l.tick(1_200, &log, &mut out);
    assert!(out.is_empty(), "one AlterPartition at a time");
    l.on_partition_state(state(&[1, 2], 8), &log, &mut out);
    assert!(!l.alter_pending());
    assert_eq!(l.high_watermark(), Offset(4));
}

#[test]
fn a_follower_that_reaches_the_high_watermark_joins_the_isr() {
    let log = VecLog::new(&[3, 3, 5, 5]);
    let mut l = Leader::new(
        NodeId(1),
        state(&[1, 2], 7),
        settings(2),
        &log,
        Offset(0),
        0,
    );
    assert_eq!(l.epoch_start_offset(), Offset(4));
    let mut out = Vec::new();
    l.on_fetch(1, fetch(2, 4, 5), &log, &mut out);
    assert_eq!(l.high_watermark(), Offset(4));
    out.clear();
    l.on_fetch(2, fetch(3, 2, 3), &log, &mut out);
    assert!(alters(&out).is_empty(), "behind the high watermark");
    l.on_fetch(3, fetch(3, 4, 5), &log, &mut out);
    let a = alters(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].new_isr
            .iter()
            .map(|m| m.broker_id.0)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(l.maximal_isr(), vec![NodeId(1), NodeId(2), NodeId(3)]);
    // A stale refusal keeps the maximal ISR until the metadata says more.
    l.on_alter_partition_error(ErrorCode::INVALID_UPDATE_VERSION, &log, &mut out);
    assert!(l.alter_pending());
    assert_eq!(l.pending_request(), None);
    // An ineligible replica changes nothing: the committed ISR is back.
    let mut l2 = Leader::new(
        NodeId(1),
        state(&[1, 2], 7),
        settings(2),
        &log,
        Offset(4),
        0,
    );
    l2.on_fetch(3, fetch(3, 4, 5), &log, &mut out);
    assert!(l2.alter_pending());
    l2.on_alter_partition_error(ErrorCode::INELIGIBLE_REPLICA, &log, &mut out);
    assert!(!l2.alter_pending());
    assert_eq!(l2.maximal_isr(), vec![NodeId(1), NodeId(2)]);
}

#[test]
fn the_leader_answers_a_diverging_epoch_and_fences_stale_epochs() {
    // Leader log: epochs 1,1,3,3,3 then its own epoch 5 from offset 5.
    let log = VecLog::new(&[1, 1, 3, 3, 3]);
    let mut l = Leader::new(
        NodeId(1),
        state(&[1, 2, 3], 7),
        settings(2),
        &log,
        Offset(0),
        0,
    );
    let mut out = Vec::new();
    // The follower wrote offsets 2..4 in epoch 2, which the leader never had.
    let a = l.on_fetch(1, fetch(2, 4, 2), &log, &mut out);
    assert_eq!(
        a.outcome,
        FetchOutcome::Diverging {
            epoch: LeaderEpoch(1),
            end_offset: Offset(2)
        }
    );
    // The follower holds epoch 3 past where the leader's epoch 3 ended.
    let a = l.on_fetch(1, fetch(2, 7, 3), &log, &mut out);
    assert_eq!(
        a.outcome,
        FetchOutcome::Diverging {
            epoch: LeaderEpoch(3),
            end_offset: Offset(5)
        }
    );
    // Consistent: records.
    assert_eq!(
        l.on_fetch(1, fetch(2, 5, 3), &log, &mut out).outcome,
        FetchOutcome::Records
    );
    assert_eq!(
        l.on_fetch(1, fetch(2, 0, -1), &log, &mut out).outcome,
        FetchOutcome::Records
    );
    let mut f = fetch(2, 5, 3);
    f.current_leader_epoch = LeaderEpoch(4);
    assert_eq!(
        l.on_fetch(1, f, &log, &mut out).outcome,
        FetchOutcome::Error(ErrorCode::FENCED_LEADER_EPOCH)
    );
    f.current_leader_epoch = LeaderEpoch(6);
    assert_eq!(
        l.on_fetch(1, f, &log, &mut out).outcome,
        FetchOutcome::Error(ErrorCode::UNKNOWN_LEADER_EPOCH)
    );
    assert_eq!(
        l.on_fetch(1, fetch(4, 5, 3), &log, &mut out).outcome,
        FetchOutcome::Error(ErrorCode::NOT_LEADER_OR_FOLLOWER)
    );
    // A fetch from an older incarnation of a follower is refused.
    let mut old = fetch(2, 5, 3);
    old.broker_epoch = 1;
    assert_eq!(
        l.on_fetch(1, old, &log, &mut out).outcome,
        FetchOutcome::Error(ErrorCode::STALE_BROKER_EPOCH)
    );
}

fn follower_settings() -> FollowerSettings {
    FollowerSettings {
        fetch_backoff_ms: 50,
        fetch_timeout_ms: 500,
        fetch_idle_ms: 0,
        durable_fetch: true,
    }
}

fn answer(outcome: FetchOutcome, hw: i64) -> FetchAnswer {
    FetchAnswer {
        outcome,
        high_watermark: Offset(hw),
        log_start: Offset(0),
    }
}

#[test]
fn a_follower_truncates_on_the_leaders_diverging_epoch_never_by_high_watermark() {
    let log = VecLog::new(&[1, 1, 2, 2, 2]);
    let mut f = Follower::new(NodeId(2), 102, follower_settings(), Offset(2));
    assert_eq!(
        f.on_new_leader(NodeId(1), LeaderEpoch(5), &log),
        None,
        "no truncation on a leader change"
    );
    let (to, req) = f.poll_fetch(0, &log).expect("a fetch");
    assert_eq!(to, NodeId(1));
    assert_eq!(req.fetch_offset, Offset(5));
    assert_eq!(req.last_fetched_epoch, LeaderEpoch(2));
    assert_eq!(req.broker_epoch, 102);
    assert!(f.poll_fetch(1, &log).is_none(), "one fetch in flight");
    // The leader never had epoch 2: its epoch 1 ends at 3.
    let action = f.on_answer(
        2,
        req,
        answer(
            FetchOutcome::Diverging {
                epoch: LeaderEpoch(1),
                end_offset: Offset(3),
            },
            2,
        ),
        req.fetch_offset,
        &log,
    );
    // Its own epoch 1 ends at 2: the smaller of the two.
    assert_eq!(action, FollowerAction::Truncate(Offset(2)));
}

/// A follower with `settings` that fetched two records from leader 1 and
/// appended them, not durable yet (its high watermark: 2 of the leader's 3).
fn appended_unflushed(settings: FollowerSettings) -> (Follower, VecLog) {
    let mut log = VecLog::new(&[5, 5]);
    let mut f = Follower::new(NodeId(2), 102, settings, Offset(0));
    f.on_new_leader(NodeId(1), LeaderEpoch(5), &log);
    let (_, req) = f.poll_fetch(0, &log).expect("a fetch");
    // A stale answer (another fetch) is ignored.
    let mut other = req;
    other.fetch_offset = Offset(1);
    assert_eq!(
        f.on_answer(1, other, answer(FetchOutcome::Records, 9), Offset(3), &log),
        FollowerAction::Ignore
    );
    assert_eq!(
        f.on_answer(1, req, answer(FetchOutcome::Records, 3), Offset(4), &log),
        FollowerAction::Append
    );
    log.epochs.extend([5, 5]);
    assert_eq!(
        f.on_log_change(&log),
        Some(Offset(2)),
        "the appended records are not durable yet"
    );
    (f, log)
}

/// `replica.fetch.durable=false`: the next fetch goes out before the
/// appended records are durable, stating the log end (Kafka's follower);
/// the follower's own high watermark is still bounded by its durable end.
#[test]
fn without_durable_fetch_a_follower_reports_records_before_they_are_durable() {
    let (mut f, log) = appended_unflushed(FollowerSettings {
        durable_fetch: false,
        ..follower_settings()
    });
    assert!(!f.durable_fetch());
    let (_, req) = f
        .poll_fetch(2, &log)
        .expect("a fetch before the flush: the page cache counts");
    assert_eq!(req.fetch_offset, Offset(4), "the log end, not durable here");
    assert_eq!(f.high_watermark(), Offset(2), "bounded by the durable end");
}

#[test]
fn a_follower_fetches_only_durable_data_and_bounds_the_high_watermark_by_it() {
    let (mut f, mut log) = appended_unflushed(follower_settings());
    assert!(f.durable_fetch());
    assert!(f.poll_fetch(2, &log).is_none(), "no fetch before the flush");
    log.durable = 3;
    assert_eq!(f.on_log_change(&log), Some(Offset(3)));
    log.durable = 4;
    assert_eq!(
        f.on_log_change(&log),
        None,
        "bounded by the leader's high watermark"
    );
    let (_, req) = f.poll_fetch(3, &log).expect("a fetch once durable");
    assert_eq!(req.fetch_offset, Offset(4));
    // An error backs off.
    assert_eq!(
        f.on_answer(
            4,
            req,
            answer(FetchOutcome::Error(ErrorCode::FENCED_LEADER_EPOCH), 0),
            Offset(4),
            &log
        ),
        FollowerAction::Ignore
    );
    assert!(f.poll_fetch(5, &log).is_none());
    assert!(f.poll_fetch(54, &log).is_some());
}
