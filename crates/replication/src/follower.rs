//! The follower's side of one partition: what to fetch, from where, and
//! what to do with the answer.

use fjord_model::{limits, LeaderEpoch, NodeId, Offset};

use crate::leader::{FetchAnswer, FetchOutcome, FollowerFetch};
use crate::LogView;

/// Follower timing (Kafka's `replica.fetch.*` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerSettings {
    /// `replica.fetch.backoff.ms`: the pause after an error answer.
    pub fetch_backoff_ms: i64,
    /// `replica.socket.timeout.ms`: a fetch without an answer for this long
    /// is sent again.
    pub fetch_timeout_ms: i64,
    /// The pause after an answer with no records (0 when the leader holds
    /// empty fetches, as a real leader does with `replica.fetch.wait.max.ms`).
    pub fetch_idle_ms: i64,
    /// Fjord's `replica.fetch.durable`: `true` (the default) sends the next
    /// fetch, whose offset the leader counts toward the high watermark, only
    /// once everything appended is durable here; `false` sends it at once
    /// (Kafka's behaviour: a follower's page cache counts), so acknowledged
    /// records may be lost when the replicas crash together (power loss).
    /// The follower's own high watermark stays bounded by its durable end.
    pub durable_fetch: bool,
}

impl Default for FollowerSettings {
    fn default() -> FollowerSettings {
        FollowerSettings {
            fetch_backoff_ms: limits::REPLICA_FETCH_BACKOFF_MS_DEFAULT,
            fetch_timeout_ms: limits::REPLICA_FETCH_RESPONSE_TIMEOUT_MS_DEFAULT,
            fetch_idle_ms: 0,
            durable_fetch: true,
        }
    }
}

/// What the follower asks its shell to do with a fetch answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerAction {
    /// A stale or refused answer: nothing.
    Ignore,
    /// Append the answer's records (with `append_as_follower`), then call
    /// [`Follower::on_log_change`].
    Append,
    /// Truncate the log to this offset (KIP-320), then call
    /// [`Follower::on_log_change`] and fetch on.
    Truncate(Offset),
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    fetch: FollowerFetch,
    sent_ms: i64,
}

/// The follower of one partition.
#[derive(Debug)]
pub struct Follower {
    me: NodeId,
    broker_epoch: i64,
    settings: FollowerSettings,
    leader: Option<NodeId>,
    leader_epoch: LeaderEpoch,
    /// The last high watermark the current leader sent.
    leader_high_watermark: Offset,
    high_watermark: Offset,
    in_flight: Option<InFlight>,
    next_fetch_ms: i64,
    /// Planted bug for the simulator: truncate to the high watermark on a
    /// leader change (the pre-KIP-101 behaviour).
    truncate_by_high_watermark: bool,
}

impl Follower {
    /// A follower that knows no leader yet; `high_watermark` is what this
    /// node knew (0 after a restart: it is learnt again from the leader).
    pub fn new(
        me: NodeId,
        broker_epoch: i64,
        settings: FollowerSettings,
        high_watermark: Offset,
    ) -> Follower {
        Follower {
            me,
            broker_epoch,
            settings,
            leader: None,
            leader_epoch: LeaderEpoch::UNKNOWN,
            leader_high_watermark: Offset(0),
            high_watermark,
            in_flight: None,
            next_fetch_ms: i64::MIN,
            truncate_by_high_watermark: false,
        }
    }

    #[doc(hidden)]
    pub fn plant_truncate_by_high_watermark(&mut self) {
        self.truncate_by_high_watermark = true;
    }

    /// The simulator's planted bug "a follower counted before its data is
    /// durable": the `durable_fetch: false` opt-out.
    #[doc(hidden)]
    pub fn plant_report_non_durable(&mut self) {
        self.settings.durable_fetch = false;
    }

    /// Whether the next fetch waits for what was appended to be durable
    /// ([`FollowerSettings::durable_fetch`]).
    pub fn durable_fetch(&self) -> bool {
        self.settings.durable_fetch
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The metadata names a leader (another node) for `epoch`. Nothing is
    /// truncated here: divergence is settled by the leader's answer to the
    /// next fetch (KIP-101, KIP-279, KIP-320), never by the high watermark.
    /// Returns a truncation only with the planted bug.
    pub fn on_new_leader(
        &mut self,
        leader: NodeId,
        epoch: LeaderEpoch,
        log: &impl LogView,
    ) -> Option<Offset> {
        assert!(leader != self.me, "following itself");
        if epoch < self.leader_epoch || (epoch == self.leader_epoch && self.leader == Some(leader))
        {
            return None;
        }
        self.leader = Some(leader);
        self.leader_epoch = epoch;
        self.leader_high_watermark = Offset(0);
        self.in_flight = None;
        self.next_fetch_ms = i64::MIN;
        if self.truncate_by_high_watermark && self.high_watermark < log.log_end() {
            return Some(self.high_watermark);
        }
        None
    }

    /// The fetch to send now, if any: one in flight at a time, and (with
    /// `durable_fetch`, the default) only once everything appended is
    /// durable, so that the fetch offset the leader counts toward the high
    /// watermark is durable here.
    pub fn poll_fetch(
        &mut self,
        now_ms: i64,
        log: &impl LogView,
    ) -> Option<(NodeId, FollowerFetch)> {
        let leader = self.leader?;
        if now_ms < self.next_fetch_ms {
            return None;
        }
        if let Some(f) = &self.in_flight {
            if now_ms < f.sent_ms.saturating_add(self.settings.fetch_timeout_ms) {
                return None;
            }
        }
        if self.settings.durable_fetch && log.durable_end() < log.log_end() {
            return None;
        }
        let fetch = FollowerFetch {
            replica: self.me,
            broker_epoch: self.broker_epoch,
            fetch_offset: log.log_end(),
            last_fetched_epoch: log.last_epoch().unwrap_or(LeaderEpoch::UNKNOWN),
            current_leader_epoch: self.leader_epoch,
        };
        self.in_flight = Some(InFlight {
            fetch,
            sent_ms: now_ms,
        });
        Some((leader, fetch))
    }

    /// The answer to `fetch`; `records_end` is the offset after the last
    /// record it carries (`fetch.fetch_offset` when none).
    pub fn on_answer(
        &mut self,
        now_ms: i64,
        fetch: FollowerFetch,
        answer: FetchAnswer,
        records_end: Offset,
        log: &impl LogView,
    ) -> FollowerAction {
        // Only the answer to the fetch in flight, for the log as it is now.
        if self.in_flight.map(|f| f.fetch) != Some(fetch)
            || fetch.current_leader_epoch != self.leader_epoch
            || fetch.fetch_offset != log.log_end()
        {
            return FollowerAction::Ignore;
        }
        self.in_flight = None;
        match answer.outcome {
            FetchOutcome::Records => {
                if answer.high_watermark > self.leader_high_watermark {
                    self.leader_high_watermark = answer.high_watermark;
                }
                if records_end <= fetch.fetch_offset {
                    self.next_fetch_ms = now_ms.saturating_add(self.settings.fetch_idle_ms);
                }
                FollowerAction::Append
            }
            FetchOutcome::Diverging { epoch, end_offset } => {
                let to = self.truncation_offset(epoch, end_offset, log);
                if to >= log.log_end() {
                    self.next_fetch_ms = now_ms.saturating_add(self.settings.fetch_backoff_ms);
                    return FollowerAction::Ignore;
                }
                assert!(
                    to >= self.high_watermark,
                    "truncation below the high watermark"
                );
                FollowerAction::Truncate(to)
            }
            FetchOutcome::Error(_) => {
                self.next_fetch_ms = now_ms.saturating_add(self.settings.fetch_backoff_ms);
                FollowerAction::Ignore
            }
        }
    }

    /// Where to cut the log on the leader's diverging epoch (Kafka's
    /// `getOffsetTruncationState`): the end of the largest epoch both logs
    /// hold, as far as this answer tells; when the follower does not hold
    /// the leader's epoch it cuts to the end of its own largest earlier
    /// epoch, and the next fetch settles the rest.
    fn truncation_offset(
        &self,
        epoch: LeaderEpoch,
        end_offset: Offset,
        log: &impl LogView,
    ) -> Offset {
        let log_end = log.log_end();
        if epoch.0 < 0 || end_offset.0 < 0 {
            // The leader holds no epoch this old: nothing here is its.
            return log.log_start().max(self.high_watermark).min(log_end);
        }
        match log.end_offset_for_epoch(epoch) {
            Some((_, local_end)) => end_offset.min(local_end).min(log_end),
            None => log.log_start().max(self.high_watermark).min(log_end),
        }
    }

    /// The log moved (an append, a truncation, a flush): the high
    /// watermark follows the leader's, bounded by the durable log end.
    /// Returns the new high watermark when it moved.
    pub fn on_log_change(&mut self, log: &impl LogView) -> Option<Offset> {
        let bound = self.leader_high_watermark.min(log.durable_end());
        if bound > self.high_watermark {
            assert!(bound <= log.log_end(), "high watermark past the log end");
            self.high_watermark = bound;
            return Some(bound);
        }
        None
    }
}
