//! A seeded simulator for the replication core.
//!
//! One partition on three replicas (nodes 1, 2, 3) with
//! `min.insync.replicas` 2, run over a simulated network and simulated
//! disks, all driven by one [`Rng`] seeded from the run's seed, so a run
//! replays exactly. Each node runs the core ([`Leader`] or [`Follower`])
//! behind a small shell that does what a broker does: appends produced
//! records as leader, answers follower fetches with records, appends
//! fetched records as follower, truncates, flushes (each append asks for a
//! flush that completes after a random delay: group commit), and applies
//! the partition state the controller publishes.
//!
//! The controller is a stub with Kafka's KRaft rules for one partition:
//! a broker that stops heartbeating (crashed, or cut off from the
//! controller) is fenced after a session timeout and leaves the ISR (the
//! last ISR member stays, leaderless); a restarted broker registers with a
//! new broker epoch (the old incarnation is fenced at once) and is unfenced
//! a little later; a leader is elected only from the unfenced members of
//! the ISR, with a new leader epoch; AlterPartition is checked as Kafka's
//! `ReplicationControlManager` does (leader and leader epoch, partition
//! epoch, a retry of an applied request answered with the current state,
//! members unfenced with the broker epoch they fetched with). Its state
//! reaches the nodes after a random delay, reliably, unless a node is cut
//! off from it.
//!
//! Two producers send acks=all records (each a fresh id) to the node the
//! controller names leader; an answer arrives when the leader's
//! [`Leader::acks_all_outcome`] says so (or NOT_LEADER_OR_FOLLOWER when
//! the node stops leading, or a timeout).
//!
//! Faults while `faults` are on: messages between nodes and clients lost
//! and delayed (so reordered); network partitions between brokers; nodes
//! cut off from the controller; crashes that drop a random part of the
//! unsynced suffix of a node's log, and restarts from what survived. Then
//! the network heals, everyone restarts and reconnects, producers stop, and
//! the run continues for a bounded time within which the replicas must
//! converge.
//!
//! Checked after every step (a failure returns [`SimFailure`]):
//! - **committed history**: a global history of the records that some
//!   node's high watermark covered (what a consumer may have read); every
//!   live node's log below its high watermark equals that history, and the
//!   history never changes once written (so no record visible to a
//!   consumer later disappears or moves);
//! - **acknowledged records**: every acks=all acknowledgement names the
//!   history's record at that offset;
//! - **leader completeness**: a node that becomes leader holds the whole
//!   history in its log;
//! - **ISR durability**: every member of the controller's ISR holds the
//!   whole history on stable storage (crashed members included), so any of
//!   them may be elected;
//! - **high watermark monotonic**: a leader's never goes back within its
//!   leadership, a follower's never within one incarnation; a follower's
//!   is never ahead of the history;
//! - after healing: one leader, every replica in the ISR, every log equal
//!   to the leader's and holding every acknowledged record at its offset,
//!   every high watermark at the log end.

use std::collections::BTreeMap;

use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};
use fjord_sim::{mix, Rng};

use crate::{
    AlterPartition, FetchAnswer, FetchOutcome, Follower, FollowerAction, FollowerFetch,
    FollowerSettings, Leader, LeaderOutput, LogView, PartitionState, Settings,
};

/// A bug planted on purpose, to show that the simulator catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    None,
    /// Followers truncate to their high watermark on a leader change (the
    /// pre-KIP-101 rule).
    TruncateByHighWatermark,
    /// Followers fetch (and so report their log end) before what they
    /// appended is durable.
    CountNonDurable,
    /// The controller elects any live replica, in the ISR or not.
    ElectOutsideIsr,
}

/// Settings of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Steps with faults on; each step advances time by 1..=4 ms.
    pub fault_steps: usize,
    /// Simulated time after healing within which the replicas converge.
    pub converge_ms: i64,
    /// Per million, per message.
    pub loss_ppm: u32,
    pub delay_max_ms: i64,
    /// Per million, per step: one node crashes.
    pub crash_ppm: u32,
    /// Per million, per step: the brokers' network splits anew / heals.
    pub partition_ppm: u32,
    pub heal_ppm: u32,
    /// Per million, per step: a node is cut off from the controller / a cut
    /// off node reconnects.
    pub isolate_ppm: u32,
    pub reconnect_ppm: u32,
    pub flush_delay_max_ms: i64,
    /// Per million, per step and producer: a record is sent.
    pub produce_ppm: u32,
    pub min_insync_replicas: usize,
    pub planted_bug: PlantedBug,
    /// Check the ISR durability invariant (off to show that planted bugs
    /// are also caught by what clients see: lost or moved records).
    pub check_isr_durability: bool,
    /// Print each step's events to stderr (for replaying one seed).
    pub trace: bool,
}

impl SimConfig {
    pub fn new() -> SimConfig {
        SimConfig {
            fault_steps: 1_500,
            converge_ms: 4_000,
            loss_ppm: 40_000,
            delay_max_ms: 12,
            crash_ppm: 4_000,
            partition_ppm: 3_000,
            heal_ppm: 15_000,
            isolate_ppm: 2_000,
            reconnect_ppm: 15_000,
            flush_delay_max_ms: 20,
            produce_ppm: 300_000,
            min_insync_replicas: 2,
            planted_bug: PlantedBug::None,
            check_isr_durability: true,
            trace: false,
        }
    }
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig::new()
    }
}

pub use fjord_sim::SimFailure;

/// What a successful run saw.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub steps: usize,
    pub acked: usize,
    pub committed: usize,
    pub leader_changes: usize,
    pub crashes: usize,
    pub truncations: usize,
    pub isr_shrinks: usize,
    pub isr_expands: usize,
    pub not_enough_replicas: usize,
    pub after_append: usize,
    pub alter_refused: usize,
    /// Simulated time from healing until the replicas converged.
    pub heal_to_converge_ms: i64,
}

const NODES: usize = 3;
const SESSION_TIMEOUT_MS: i64 = 60;
const LAG_MAX_MS: i64 = 80;
const PRODUCE_TIMEOUT_MS: i64 = 300;
const ALTER_RESEND_MS: i64 = 40;
const FETCH_RECORDS_MAX: usize = 8;

/// A record in a simulated log: the epoch it was written in and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    epoch: LeaderEpoch,
    id: u64,
}

#[derive(Default)]
struct Disk {
    entries: Vec<Rec>,
    /// Entries below this offset are on stable storage.
    synced: usize,
    /// (completes at, synced end it will reach)
    flushes: Vec<(i64, usize)>,
}

impl LogView for Disk {
    fn log_start(&self) -> Offset {
        Offset(0)
    }
    fn log_end(&self) -> Offset {
        Offset(self.entries.len() as i64)
    }
    fn durable_end(&self) -> Offset {
        Offset(self.synced as i64)
    }
    fn last_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|r| r.epoch)
    }
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        // Epochs never decrease along a log: the last record of an epoch
        // `<= epoch` ends the largest such epoch.
        let i = self.entries.iter().rposition(|r| r.epoch <= epoch)?;
        Some((self.entries[i].epoch, Offset(i as i64 + 1)))
    }
}

impl Disk {
    fn append(&mut self, rec: Rec) {
        assert!(
            self.entries.last().is_none_or(|l| l.epoch <= rec.epoch),
            "an epoch going back in a log"
        );
        self.entries.push(rec);
    }

    fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
        self.synced = self.synced.min(len);
        for f in &mut self.flushes {
            f.1 = f.1.min(len);
        }
    }
}

enum Role {
    Down,
    Leader(Leader),
    Follower(Follower),
}

struct Waiter {
    id: u64,
    offset: Offset,
    deadline_ms: i64,
}

struct SimNode {
    role: Role,
    disk: Disk,
    broker_epoch: i64,
    restart_at_ms: i64,
    /// The partition state this node has applied.
    known: Option<PartitionState>,
    /// A controller state to apply at that time.
    metadata_at_ms: Option<i64>,
    /// Cut off from the controller (no heartbeats, no metadata, no
    /// AlterPartition).
    isolated: bool,
    last_heartbeat_ms: i64,
    waiters: Vec<Waiter>,
    alter_sent_ms: i64,
    /// The high watermark last seen, for the monotonic check.
    hw_seen: Offset,
}

impl SimNode {
    fn high_watermark(&self) -> Offset {
        match &self.role {
            Role::Leader(l) => l.high_watermark(),
            Role::Follower(f) => f.high_watermark(),
            Role::Down => Offset(0),
        }
    }
}

enum Msg {
    Fetch {
        from: usize,
        to: usize,
        fetch: FollowerFetch,
    },
    FetchReply {
        to: usize,
        fetch: FollowerFetch,
        answer: FetchAnswer,
        records: Vec<Rec>,
    },
    Produce {
        to: usize,
        id: u64,
    },
    ProduceReply {
        id: u64,
        result: Result<Offset, ErrorCode>,
    },
    /// Node to controller.
    Alter {
        from: usize,
        req: AlterPartition,
    },
    /// Controller to node.
    AlterReply {
        to: usize,
        result: Result<PartitionState, ErrorCode>,
    },
}

struct InFlight {
    deliver_at_ms: i64,
    msg: Msg,
}

struct Controller {
    state: PartitionState,
    fenced: [bool; NODES],
    /// The current registration's broker epoch per node.
    broker_epoch: [i64; NODES],
    /// When a fenced live node is unfenced.
    unfence_at_ms: [Option<i64>; NODES],
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: Rng,
    time_ms: i64,
    step: usize,
    nodes: Vec<SimNode>,
    ctl: Controller,
    net: Vec<InFlight>,
    side: [u8; NODES],
    faults: bool,
    history: Vec<Rec>,
    acked: BTreeMap<u64, Offset>,
    next_id: u64,
    next_broker_epoch: i64,
    report: SimReport,
}

fn id(i: usize) -> NodeId {
    NodeId(i as i32 + 1)
}

fn index(n: NodeId) -> usize {
    (n.0 - 1) as usize
}

/// Runs one seed; `Err` names the broken invariant.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(seed, cfg);
    sim.run().map_err(|message| SimFailure {
        package: "fjord-replication",
        seed,
        step: sim.step,
        time_ms: sim.time_ms,
        message,
    })?;
    Ok(sim.report)
}

impl<'a> Sim<'a> {
    fn new(seed: u64, cfg: &'a SimConfig) -> Sim<'a> {
        let state = PartitionState {
            leader: id(0),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: 0,
            replicas: (0..NODES).map(id).collect(),
            isr: (0..NODES).map(id).collect(),
        };
        let mut sim = Sim {
            cfg,
            rng: Rng::new(mix(seed ^ 0x7265_706c)),
            time_ms: 0,
            step: 0,
            nodes: Vec::new(),
            ctl: Controller {
                state,
                fenced: [false; NODES],
                broker_epoch: [0; NODES],
                unfence_at_ms: [None; NODES],
            },
            net: Vec::new(),
            side: [0; NODES],
            faults: true,
            history: Vec::new(),
            acked: BTreeMap::new(),
            next_id: 1,
            next_broker_epoch: 1,
            report: SimReport::default(),
        };
        for i in 0..NODES {
            let broker_epoch = sim.next_broker_epoch;
            sim.next_broker_epoch += 1;
            sim.ctl.broker_epoch[i] = broker_epoch;
            sim.nodes.push(SimNode {
                role: Role::Down,
                disk: Disk::default(),
                broker_epoch,
                restart_at_ms: 0,
                known: None,
                metadata_at_ms: Some(0),
                isolated: false,
                last_heartbeat_ms: 0,
                waiters: Vec::new(),
                alter_sent_ms: 0,
                hw_seen: Offset(0),
            });
            sim.start_follower(i, Offset(0));
        }
        sim
    }

    fn settings(&self) -> Settings {
        Settings {
            replica_lag_time_max_ms: LAG_MAX_MS,
            min_insync_replicas: self.cfg.min_insync_replicas,
        }
    }

    fn follower_settings() -> FollowerSettings {
        FollowerSettings {
            fetch_backoff_ms: 8,
            fetch_timeout_ms: 40,
            fetch_idle_ms: 4,
            durable_fetch: true,
        }
    }

    fn start_follower(&mut self, i: usize, hw: Offset) {
        let mut f = Follower::new(
            id(i),
            self.nodes[i].broker_epoch,
            Self::follower_settings(),
            hw,
        );
        match self.cfg.planted_bug {
            PlantedBug::TruncateByHighWatermark => f.plant_truncate_by_high_watermark(),
            PlantedBug::CountNonDurable => f.plant_report_non_durable(),
            _ => {}
        }
        self.nodes[i].role = Role::Follower(f);
    }

    fn trace(&self, s: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("[t={} step={}] {}", self.time_ms, self.step, s());
        }
    }

    fn send(&mut self, msg: Msg, lossy: bool) {
        let (a, b) = match &msg {
            Msg::Fetch { from, to, .. } => (Some(*from), Some(*to)),
            Msg::FetchReply { to, fetch, .. } => (Some(index(fetch.replica)), Some(*to)),
            _ => (None, None),
        };
        if self.faults {
            if lossy && self.rng.chance(self.cfg.loss_ppm) {
                return;
            }
            if let (Some(a), Some(b)) = (a, b) {
                if self.side[a] != self.side[b] {
                    return;
                }
            }
        }
        let delay = if self.faults {
            self.rng.range_i64(1, self.cfg.delay_max_ms)
        } else {
            self.rng.range_i64(1, 3)
        };
        self.net.push(InFlight {
            deliver_at_ms: self.time_ms + delay,
            msg,
        });
    }

    fn run(&mut self) -> Result<(), String> {
        for _ in 0..self.cfg.fault_steps {
            self.faults_step()?;
            self.advance(true)?;
        }
        // Heal.
        self.faults = false;
        self.side = [0; NODES];
        for i in 0..NODES {
            self.nodes[i].isolated = false;
            if matches!(self.nodes[i].role, Role::Down) {
                self.nodes[i].restart_at_ms = self.time_ms;
            }
        }
        let healed_at = self.time_ms;
        loop {
            self.advance(false)?;
            if self.converged() {
                self.report.heal_to_converge_ms = self.time_ms - healed_at;
                break;
            }
            if self.time_ms - healed_at > self.cfg.converge_ms {
                return Err(format!(
                    "replicas did not converge within {} ms of healing: controller {:?}, logs {:?}, hws {:?}",
                    self.cfg.converge_ms,
                    self.ctl.state,
                    self.nodes.iter().map(|n| n.disk.entries.len()).collect::<Vec<_>>(),
                    self.nodes.iter().map(|n| n.high_watermark()).collect::<Vec<_>>()
                ));
            }
        }
        self.check_final()?;
        self.report.acked = self.acked.len();
        self.report.committed = self.history.len();
        Ok(())
    }

    fn faults_step(&mut self) -> Result<(), String> {
        if self.rng.chance(self.cfg.crash_ppm) {
            let i = self.rng.below(NODES);
            if !matches!(self.nodes[i].role, Role::Down) {
                self.crash(i);
            }
        }
        if self.rng.chance(self.cfg.partition_ppm) {
            for s in &mut self.side {
                *s = self.rng.below(2) as u8;
            }
            let sides = self.side;
            self.trace(|| format!("network split {sides:?}"));
        }
        if self.rng.chance(self.cfg.heal_ppm) {
            self.side = [0; NODES];
        }
        if self.rng.chance(self.cfg.isolate_ppm) {
            let i = self.rng.below(NODES);
            self.nodes[i].isolated = true;
            self.trace(|| format!("node {} cut off from the controller", id(i)));
        }
        if self.rng.chance(self.cfg.reconnect_ppm) {
            for n in &mut self.nodes {
                n.isolated = false;
            }
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        let down_ms = self.rng.range_i64(10, 200);
        let n = &mut self.nodes[i];
        let unsynced = n.disk.entries.len() - n.disk.synced;
        let keep = n.disk.synced + self.rng.below(unsynced + 1);
        n.disk.truncate(keep);
        n.disk.flushes.clear();
        n.role = Role::Down;
        n.known = None;
        n.metadata_at_ms = None;
        n.waiters.clear();
        n.restart_at_ms = self.time_ms + down_ms;
        self.report.crashes += 1;
        self.trace(|| format!("crash node {} keeping {keep} records", id(i)));
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        // What survived the crash is what recovery finds: all of it durable.
        n.disk.synced = n.disk.entries.len();
        n.broker_epoch = self.next_broker_epoch;
        self.next_broker_epoch += 1;
        n.last_heartbeat_ms = self.time_ms;
        n.hw_seen = Offset(0);
        n.alter_sent_ms = self.time_ms;
        // The high watermark is not persisted: learnt again from the leader.
        self.start_follower(i, Offset(0));
        // A new registration fences the old incarnation at once.
        let be = self.nodes[i].broker_epoch;
        self.ctl.broker_epoch[i] = be;
        self.fence(i);
        let at = self.time_ms + self.rng.range_i64(5, 40);
        self.ctl.unfence_at_ms[i] = Some(at);
        self.nodes[i].metadata_at_ms = Some(self.time_ms + 1);
        self.trace(|| format!("restart node {} as broker epoch {be}", id(i)));
    }

    /// One step: time moves, the controller, messages, flushes, ticks,
    /// fetches and produces; then the invariants.
    fn advance(&mut self, produce: bool) -> Result<(), String> {
        self.step += 1;
        self.report.steps += 1;
        self.time_ms += self.rng.range_i64(1, 4);
        let now = self.time_ms;

        for i in 0..NODES {
            if matches!(self.nodes[i].role, Role::Down) && now >= self.nodes[i].restart_at_ms {
                self.restart(i);
            }
        }
        self.controller_step();
        for i in 0..NODES {
            if self.nodes[i].metadata_at_ms.is_some_and(|t| now >= t) && !self.nodes[i].isolated {
                self.nodes[i].metadata_at_ms = None;
                let state = self.ctl.state.clone();
                self.apply_state(i, state)?;
            }
        }
        // Messages due now, in a shuffled order among equals.
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.net.len() {
            if self.net[k].deliver_at_ms <= now {
                due.push(self.net.swap_remove(k).msg);
            } else {
                k += 1;
            }
        }
        for msg in due {
            self.deliver(msg)?;
        }
        for i in 0..NODES {
            self.flushes(i);
            self.node_tick(i)?;
        }
        if produce {
            for _producer in 0..2 {
                if self.rng.chance(self.cfg.produce_ppm) {
                    let to = self.ctl.state.leader;
                    if to.0 > 0 {
                        let rid = self.next_id;
                        self.next_id += 1;
                        self.send(
                            Msg::Produce {
                                to: index(to),
                                id: rid,
                            },
                            true,
                        );
                    }
                }
            }
        }
        self.check()
    }

    // ---- the controller stub ----

    fn controller_step(&mut self) {
        let now = self.time_ms;
        for i in 0..NODES {
            let alive = !matches!(self.nodes[i].role, Role::Down);
            if alive && !self.nodes[i].isolated {
                self.nodes[i].last_heartbeat_ms = now;
            }
            if !self.ctl.fenced[i] && now - self.nodes[i].last_heartbeat_ms > SESSION_TIMEOUT_MS {
                self.trace(|| format!("controller fences node {}", id(i)));
                self.fence(i);
            }
            if self.ctl.fenced[i]
                && alive
                && !self.nodes[i].isolated
                && self.ctl.unfence_at_ms[i].is_some_and(|t| now >= t)
            {
                self.ctl.unfence_at_ms[i] = None;
                self.ctl.fenced[i] = false;
                self.trace(|| format!("controller unfences node {}", id(i)));
                self.maybe_elect();
            }
            if self.ctl.fenced[i]
                && alive
                && !self.nodes[i].isolated
                && self.ctl.unfence_at_ms[i].is_none()
            {
                self.ctl.unfence_at_ms[i] = Some(now + self.rng.range_i64(5, 40));
            }
        }
    }

    fn fence(&mut self, i: usize) {
        self.ctl.fenced[i] = true;
        self.ctl.unfence_at_ms[i] = None;
        let mut s = self.ctl.state.clone();
        let me = id(i);
        let mut changed = false;
        if s.isr.contains(&me) && s.isr.len() > 1 {
            s.isr.retain(|r| *r != me);
            changed = true;
        }
        if s.leader == me {
            s.leader = NodeId(-1);
            s.leader_epoch = LeaderEpoch(s.leader_epoch.0 + 1);
            changed = true;
        }
        if changed {
            s.partition_epoch += 1;
            self.publish(s);
        }
        self.maybe_elect();
    }

    /// Elects a leader when there is none: an unfenced ISR member (with the
    /// planted bug: any unfenced replica, preferring one outside the ISR).
    fn maybe_elect(&mut self) {
        if self.ctl.state.leader.0 > 0 {
            return;
        }
        let mut s = self.ctl.state.clone();
        let candidates: Vec<NodeId> = if self.cfg.planted_bug == PlantedBug::ElectOutsideIsr {
            let mut c: Vec<NodeId> = s
                .replicas
                .iter()
                .filter(|r| !self.ctl.fenced[index(**r)])
                .copied()
                .collect();
            c.sort_by_key(|r| s.isr.contains(r));
            c
        } else {
            s.isr
                .iter()
                .filter(|r| !self.ctl.fenced[index(**r)])
                .copied()
                .collect()
        };
        let Some(leader) = candidates.first().copied() else {
            return;
        };
        if !s.isr.contains(&leader) {
            s.isr = vec![leader];
        }
        s.leader = leader;
        s.leader_epoch = LeaderEpoch(s.leader_epoch.0 + 1);
        s.partition_epoch += 1;
        self.report.leader_changes += 1;
        self.trace(|| format!("controller elects {leader} in epoch {}", s.leader_epoch));
        self.publish(s);
    }

    fn publish(&mut self, s: PartitionState) {
        assert!(s.partition_epoch > self.ctl.state.partition_epoch);
        assert!(s.leader_epoch >= self.ctl.state.leader_epoch);
        assert!(!s.isr.is_empty());
        self.ctl.state = s;
        for i in 0..NODES {
            if !matches!(self.nodes[i].role, Role::Down) && self.nodes[i].metadata_at_ms.is_none() {
                let at = self.time_ms + self.rng.range_i64(1, 15);
                self.nodes[i].metadata_at_ms = Some(at);
            }
        }
    }

    /// Kafka's checks of an AlterPartition, for one partition (as
    /// `fjord_controller::Controller::alter_partition` makes them).
    fn alter_partition(&mut self, req: &AlterPartition) -> Result<PartitionState, ErrorCode> {
        let s = &self.ctl.state;
        if req.leader_epoch > s.leader_epoch || req.partition_epoch > s.partition_epoch {
            return Err(ErrorCode::NOT_CONTROLLER);
        }
        if req.leader_epoch < s.leader_epoch {
            return Err(ErrorCode::FENCED_LEADER_EPOCH);
        }
        if req.leader != s.leader {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if req.partition_epoch < s.partition_epoch {
            return Err(ErrorCode::INVALID_UPDATE_VERSION);
        }
        let new_isr: Vec<NodeId> = req.new_isr.iter().map(|m| m.broker_id).collect();
        if !new_isr.contains(&s.leader) || !new_isr.iter().all(|r| s.replicas.contains(r)) {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        for m in &req.new_isr {
            let i = index(m.broker_id);
            if self.ctl.fenced[i]
                || (m.broker_epoch >= 0 && m.broker_epoch != self.ctl.broker_epoch[i])
            {
                return Err(ErrorCode::INELIGIBLE_REPLICA);
            }
        }
        if new_isr == s.isr {
            return Ok(s.clone());
        }
        let mut next = s.clone();
        if new_isr.len() < next.isr.len() {
            self.report.isr_shrinks += 1;
        } else {
            self.report.isr_expands += 1;
        }
        next.isr = new_isr;
        next.partition_epoch += 1;
        self.publish(next.clone());
        Ok(next)
    }

    // ---- the nodes ----

    fn apply_state(&mut self, i: usize, s: PartitionState) -> Result<(), String> {
        let now = self.time_ms;
        let me = id(i);
        if let Some(k) = &self.nodes[i].known {
            if s.partition_epoch <= k.partition_epoch {
                return Ok(());
            }
        }
        self.nodes[i].known = Some(s.clone());
        let settings = self.settings();
        let mut out = Vec::new();
        let (leads_epoch, was_leader) = match &self.nodes[i].role {
            Role::Down => return Ok(()),
            Role::Leader(l) => (Some(l.leader_epoch()), true),
            Role::Follower(_) => (None, false),
        };
        if s.leader == me && leads_epoch == Some(s.leader_epoch) {
            let n = &mut self.nodes[i];
            if let Role::Leader(l) = &mut n.role {
                l.on_partition_state(s, &n.disk, &mut out);
            }
        } else if s.leader == me {
            let n = &mut self.nodes[i];
            let hw = n.high_watermark();
            // Leader completeness: a new leader holds the whole history.
            if !self
                .history
                .iter()
                .enumerate()
                .all(|(o, r)| n.disk.entries.get(o) == Some(r))
            {
                return Err(format!(
                    "node {me} becomes leader of epoch {} without the committed history ({} records, it holds {})",
                    s.leader_epoch,
                    self.history.len(),
                    n.disk.entries.len()
                ));
            }
            let epoch = s.leader_epoch;
            n.role = Role::Leader(Leader::new(me, s, settings, &n.disk, hw, now));
            n.hw_seen = hw;
            let end = n.disk.entries.len();
            self.trace(|| format!("node {me} leads epoch {epoch} from log end {end}"));
        } else {
            if was_leader {
                let hw = self.nodes[i].high_watermark();
                self.fail_waiters(i, ErrorCode::NOT_LEADER_OR_FOLLOWER);
                self.start_follower(i, hw);
            }
            let n = &mut self.nodes[i];
            if let Role::Follower(f) = &mut n.role {
                if s.leader.0 > 0 {
                    if let Some(to) = f.on_new_leader(s.leader, s.leader_epoch, &n.disk) {
                        // Only the planted bug truncates here.
                        n.disk.truncate(to.0 as usize);
                        self.report.truncations += 1;
                    }
                }
            }
        }
        self.leader_outputs(i, out);
        Ok(())
    }

    fn fail_waiters(&mut self, i: usize, code: ErrorCode) {
        let waiters = std::mem::take(&mut self.nodes[i].waiters);
        for w in waiters {
            self.send(
                Msg::ProduceReply {
                    id: w.id,
                    result: Err(code),
                },
                true,
            );
        }
    }

    fn leader_outputs(&mut self, i: usize, out: Vec<LeaderOutput>) {
        for o in out {
            match o {
                LeaderOutput::HighWatermark(_) => {}
                LeaderOutput::AlterPartition(req) => {
                    self.nodes[i].alter_sent_ms = self.time_ms;
                    self.send_alter(i, req);
                }
            }
        }
    }

    fn send_alter(&mut self, i: usize, req: AlterPartition) {
        if self.nodes[i].isolated {
            return;
        }
        self.send(Msg::Alter { from: i, req }, false);
    }

    fn deliver(&mut self, msg: Msg) -> Result<(), String> {
        let now = self.time_ms;
        match msg {
            Msg::Fetch { from, to, fetch } => {
                let n = &mut self.nodes[to];
                let mut out = Vec::new();
                let answer = match &mut n.role {
                    Role::Leader(l) => l.on_fetch(now, fetch, &n.disk, &mut out),
                    Role::Down => return Ok(()),
                    Role::Follower(_) => FetchAnswer {
                        outcome: FetchOutcome::Error(ErrorCode::NOT_LEADER_OR_FOLLOWER),
                        high_watermark: Offset(0),
                        log_start: Offset(0),
                    },
                };
                let records = if answer.outcome == FetchOutcome::Records {
                    let from_offset = fetch.fetch_offset.0 as usize;
                    n.disk
                        .entries
                        .iter()
                        .skip(from_offset)
                        .take(FETCH_RECORDS_MAX)
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                };
                self.leader_outputs(to, out);
                self.send(
                    Msg::FetchReply {
                        to: from,
                        fetch,
                        answer,
                        records,
                    },
                    true,
                );
            }
            Msg::FetchReply {
                to,
                fetch,
                answer,
                records,
            } => {
                let n = &mut self.nodes[to];
                let Role::Follower(f) = &mut n.role else {
                    return Ok(());
                };
                let end = Offset(fetch.fetch_offset.0 + records.len() as i64);
                let action = f.on_answer(now, fetch, answer, end, &n.disk);
                match action {
                    FollowerAction::Ignore => {}
                    FollowerAction::Append => {
                        if !records.is_empty() {
                            for r in records {
                                n.disk.append(r);
                            }
                            let len = n.disk.entries.len();
                            let at = now + self.rng.range_i64(1, self.cfg.flush_delay_max_ms);
                            self.nodes[to].disk.flushes.push((at, len));
                        }
                    }
                    FollowerAction::Truncate(o) => {
                        n.disk.truncate(o.0 as usize);
                        self.report.truncations += 1;
                        self.trace(|| format!("node {} truncates to {o}", id(to)));
                    }
                }
                let n = &mut self.nodes[to];
                if let Role::Follower(f) = &mut n.role {
                    f.on_log_change(&n.disk);
                }
            }
            Msg::Produce { to, id: rid } => {
                let n = &mut self.nodes[to];
                let result = match &mut n.role {
                    Role::Leader(l) => match l.check_acks_all_append() {
                        Err(code) => {
                            self.report.not_enough_replicas += 1;
                            Err(code)
                        }
                        Ok(()) => {
                            let offset = Offset(n.disk.entries.len() as i64);
                            n.disk.append(Rec {
                                epoch: l.leader_epoch(),
                                id: rid,
                            });
                            let at = now + self.rng.range_i64(1, self.cfg.flush_delay_max_ms);
                            n.disk.flushes.push((at, n.disk.entries.len()));
                            let mut out = Vec::new();
                            l.on_log_change(&n.disk, &mut out);
                            n.waiters.push(Waiter {
                                id: rid,
                                offset,
                                deadline_ms: now + PRODUCE_TIMEOUT_MS,
                            });
                            self.leader_outputs(to, out);
                            return Ok(());
                        }
                    },
                    Role::Down => return Ok(()),
                    Role::Follower(_) => Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
                };
                self.send(Msg::ProduceReply { id: rid, result }, true);
            }
            Msg::ProduceReply {
                id: rid, result, ..
            } => {
                if let Ok(offset) = result {
                    let at = usize::try_from(offset.0).unwrap_or(usize::MAX);
                    if self.history.get(at).map(|r| r.id) != Some(rid) {
                        return Err(format!(
                            "record {rid} acknowledged at {offset} but the committed history holds {:?} there",
                            self.history.get(at)
                        ));
                    }
                    self.acked.insert(rid, offset);
                } else if result == Err(ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND) {
                    self.report.after_append += 1;
                }
            }
            Msg::Alter { from, req } => {
                let result = self.alter_partition(&req);
                if result.is_err() {
                    self.report.alter_refused += 1;
                }
                if !self.nodes[from].isolated {
                    self.send(Msg::AlterReply { to: from, result }, false);
                }
            }
            Msg::AlterReply { to, result } => {
                let n = &mut self.nodes[to];
                let mut out = Vec::new();
                if let Role::Leader(l) = &mut n.role {
                    match result {
                        Ok(s) if s.leader == id(to) && s.leader_epoch == l.leader_epoch() => {
                            if n.known
                                .as_ref()
                                .is_none_or(|k| k.partition_epoch < s.partition_epoch)
                            {
                                n.known = Some(s.clone());
                            }
                            l.on_partition_state(s, &n.disk, &mut out);
                        }
                        Ok(_) => {}
                        Err(code) => l.on_alter_partition_error(code, &n.disk, &mut out),
                    }
                }
                self.leader_outputs(to, out);
            }
        }
        Ok(())
    }

    fn flushes(&mut self, i: usize) {
        let now = self.time_ms;
        let n = &mut self.nodes[i];
        let mut moved = false;
        n.disk.flushes.retain(|(at, upto)| {
            if *at <= now {
                if *upto > n.disk.synced {
                    n.disk.synced = *upto;
                    moved = true;
                }
                false
            } else {
                true
            }
        });
        if !moved {
            return;
        }
        let mut out = Vec::new();
        match &mut n.role {
            Role::Leader(l) => l.on_log_change(&n.disk, &mut out),
            Role::Follower(f) => {
                f.on_log_change(&n.disk);
            }
            Role::Down => {}
        }
        self.leader_outputs(i, out);
    }

    fn node_tick(&mut self, i: usize) -> Result<(), String> {
        let now = self.time_ms;
        let n = &mut self.nodes[i];
        match &mut n.role {
            Role::Down => {}
            Role::Follower(f) => {
                if let Some((leader, fetch)) = f.poll_fetch(now, &n.disk) {
                    self.send(
                        Msg::Fetch {
                            from: i,
                            to: index(leader),
                            fetch,
                        },
                        true,
                    );
                }
            }
            Role::Leader(l) => {
                let mut out = Vec::new();
                l.tick(now, &n.disk, &mut out);
                let resend = if out.is_empty() && now - n.alter_sent_ms > ALTER_RESEND_MS {
                    l.pending_request()
                } else {
                    None
                };
                // acks=all waiters.
                let mut answers = Vec::new();
                n.waiters
                    .retain(|w| match l.acks_all_outcome(w.offset.next()) {
                        Some(code) => {
                            answers.push((
                                w.id,
                                if code.is_none() {
                                    Ok(w.offset)
                                } else {
                                    Err(code)
                                },
                            ));
                            false
                        }
                        None if now >= w.deadline_ms => {
                            answers.push((w.id, Err(ErrorCode::REQUEST_TIMED_OUT)));
                            false
                        }
                        None => true,
                    });
                if let Some(req) = resend {
                    n.alter_sent_ms = now;
                    self.send_alter(i, req);
                }
                self.leader_outputs(i, out);
                for (rid, result) in answers {
                    self.send(Msg::ProduceReply { id: rid, result }, true);
                }
            }
        }
        Ok(())
    }

    // ---- invariants ----

    fn check(&mut self) -> Result<(), String> {
        // History: each live node's log below its high watermark.
        for i in 0..NODES {
            let n = &self.nodes[i];
            if matches!(n.role, Role::Down) {
                continue;
            }
            let hw = n.high_watermark();
            let is_leader = matches!(n.role, Role::Leader(_));
            if hw < n.hw_seen {
                return Err(format!(
                    "node {}'s high watermark went back from {} to {hw}",
                    id(i),
                    n.hw_seen
                ));
            }
            let hw_len = usize::try_from(hw.0).unwrap_or(0);
            if hw_len > n.disk.entries.len() {
                return Err(format!(
                    "node {}'s high watermark {hw} is past its log end",
                    id(i)
                ));
            }
            if !is_leader && hw_len > self.history.len() {
                return Err(format!(
                    "follower {}'s high watermark {hw} is ahead of every leader's ({})",
                    id(i),
                    self.history.len()
                ));
            }
            for o in 0..hw_len {
                let r = n.disk.entries[o];
                match self.history.get(o) {
                    Some(h) if *h == r => {}
                    Some(h) => {
                        return Err(format!(
                            "node {} holds {r:?} at {o} below its high watermark {hw}, but {h:?} was committed there",
                            id(i)
                        ));
                    }
                    None => self.history.push(r),
                }
            }
        }
        for i in 0..NODES {
            let hw = self.nodes[i].high_watermark();
            self.nodes[i].hw_seen = hw;
        }
        // ISR durability: every member of the controller's ISR holds the
        // history on stable storage.
        let isr = if self.cfg.check_isr_durability {
            self.ctl.state.isr.as_slice()
        } else {
            &[]
        };
        for r in isr {
            let n = &self.nodes[index(*r)];
            let durable = &n.disk.entries[..n.disk.synced];
            if durable.len() < self.history.len()
                || durable[..self.history.len()] != self.history[..]
            {
                let first_missing = (0..self.history.len())
                    .find(|o| durable.get(*o) != Some(&self.history[*o]))
                    .unwrap_or(0);
                return Err(format!(
                    "ISR member {r} does not hold the committed history on stable storage: {} records committed, it has {} durable (first missing at {first_missing})",
                    self.history.len(),
                    durable.len()
                ));
            }
        }
        Ok(())
    }

    fn converged(&self) -> bool {
        let s = &self.ctl.state;
        if s.leader.0 <= 0 || s.isr.len() != NODES {
            return false;
        }
        let leader = &self.nodes[index(s.leader)];
        let Role::Leader(l) = &leader.role else {
            return false;
        };
        if l.leader_epoch() != s.leader_epoch {
            return false;
        }
        let end = leader.disk.entries.len();
        self.nodes.iter().all(|n| {
            n.disk.entries == leader.disk.entries
                && n.disk.synced == end
                && n.high_watermark() == Offset(end as i64)
                && n.known.as_ref() == Some(s)
        })
    }

    fn check_final(&self) -> Result<(), String> {
        let leader = &self.nodes[index(self.ctl.state.leader)];
        for (rid, offset) in &self.acked {
            let at = offset.0 as usize;
            if leader.disk.entries.get(at).map(|r| r.id) != Some(*rid) {
                return Err(format!(
                    "acknowledged record {rid} at {offset} is not in the converged log"
                ));
            }
        }
        if leader.disk.entries.len() < self.history.len()
            || leader.disk.entries[..self.history.len()] != self.history[..]
        {
            return Err("the converged log does not hold the committed history".to_string());
        }
        Ok(())
    }
}
