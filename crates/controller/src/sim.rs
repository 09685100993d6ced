//! A seeded simulator for the controller.
//!
//! One [`Controller`] and 3 to 6 simulated brokers, all driven by one
//! [`Rng`] seeded from the run's seed, so a run replays exactly. Brokers
//! register and heartbeat on their own clocks (each runs at its own rate,
//! ±20 %, from its own offset); they crash and come back as new
//! incarnations, stall (a pause or a cut link: their heartbeats are lost
//! for up to twice the session timeout), lose their connection to the
//! controller (with a crash, or alone while they live on), shut down in a controlled way,
//! and sometimes a second process tries to register with a live broker's
//! id. A workload creates topics (replication factor 1 to 3, racks on in
//! half the runs), adds partitions, asks for preferred elections and
//! producer-id blocks (sometimes with a stale broker epoch), reassigns
//! partitions to random replica sets of registered brokers and cancels
//! reassignments (KIP-455); partition
//! leaders send AlterPartition with random ISRs (sometimes with a stale
//! partition epoch, sometimes naming fenced brokers). A proposal may
//! fail (its records are dropped and the controller reset to the committed
//! image, its answer never sent), and the active controller may fail over
//! (a new controller is activated on the committed image). After the fault
//! phase every broker comes back and the run goes on for a while.
//!
//! Checked after every step (a failure returns [`SimFailure`]):
//! - [`crate::check_image`] on the committed image and on the controller's
//!   own: a fenced broker leads nothing; every leader is in its partition's
//!   ISR and replicas; every partition with an active ISR member has a leader;
//! - leader epochs and partition epochs only grow;
//! - no two live brokers share a node id: a registration is accepted only
//!   when the process holding that id before is gone, fenced, or silent for
//!   a whole session;
//! - producer-id blocks never overlap;
//! - answers are what Kafka answers: INVALID_REPLICATION_FACTOR exactly when
//!   the factor exceeds the usable brokers; a stale epoch is refused;
//!   AlterPartition gets INVALID_UPDATE_VERSION for a stale partition epoch,
//!   INELIGIBLE_REPLICA when it names a fenced or shutting-down broker, and
//!   otherwise the ISR it asked for;
//! - a reassignment completes only with every target replica in the ISR
//!   (so the replicas it drops go only once the new ones hold every
//!   committed record), and a completed or cancelled one leaves no adding
//!   or removing replicas behind; an AlterPartition that completes one is
//!   answered the ISR without the removed replicas, or NEW_LEADER_ELECTED
//!   when it removed the leader;
//! - at the end (all brokers back for a while) every broker is registered
//!   and unfenced and every partition has a leader.

use std::collections::BTreeMap;

use fjord_metadata::MetadataImage;
use fjord_model::{ErrorCode, NodeId};
use uuid::Uuid;

use crate::alter_partition::{AlterPartitionData, AlterPartitionRequest};
use crate::{
    check_image, BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig,
    ControllerResult, FeatureRange, Listener, NewTopic, PlantedBug,
};
use fjord_protocol::metadata_records::MetadataRecord;
use fjord_sim::Rng;

/// Settings of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub brokers: usize,
    /// Steps with faults on; each advances time by 50..=400 ms.
    pub fault_steps: usize,
    /// Steps after every broker came back.
    pub calm_steps: usize,
    pub racks: bool,
    /// Per million, per step.
    pub crash_ppm: u32,
    pub restart_ppm: u32,
    pub stall_ppm: u32,
    /// A broker's connection to the controller closes (with a crash: half
    /// the crashes close it, as `kill -9` does; alone: the broker lives on
    /// and reconnects at its next heartbeat).
    pub disconnect_ppm: u32,
    pub shutdown_ppm: u32,
    pub impostor_ppm: u32,
    pub create_topic_ppm: u32,
    pub create_partitions_ppm: u32,
    pub elect_ppm: u32,
    pub producer_ids_ppm: u32,
    /// Per million, per step: a partition's leader sends an AlterPartition.
    pub alter_partition_ppm: u32,
    /// Per million, per step: a partition is reassigned (a tenth of them
    /// cancel instead).
    pub reassign_ppm: u32,
    pub failover_ppm: u32,
    /// Per million, per proposal: it fails.
    pub abort_ppm: u32,
    pub planted_bug: PlantedBug,
    /// Print each step's events to stderr (for replaying one seed).
    pub trace: bool,
}

impl SimConfig {
    pub fn new(brokers: usize, racks: bool) -> SimConfig {
        SimConfig {
            brokers,
            fault_steps: 300,
            calm_steps: 150,
            racks,
            crash_ppm: 15_000,
            restart_ppm: 60_000,
            stall_ppm: 10_000,
            disconnect_ppm: 10_000,
            shutdown_ppm: 8_000,
            impostor_ppm: 10_000,
            create_topic_ppm: 60_000,
            create_partitions_ppm: 20_000,
            elect_ppm: 40_000,
            producer_ids_ppm: 40_000,
            alter_partition_ppm: 150_000,
            reassign_ppm: 30_000,
            failover_ppm: 5_000,
            abort_ppm: 30_000,
            planted_bug: PlantedBug::None,
            trace: false,
        }
    }
}

/// What a run did (to see that runs exercise something).
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub steps: usize,
    pub registrations: usize,
    pub duplicates_refused: usize,
    pub fencings: usize,
    pub unfencings: usize,
    pub leader_changes: usize,
    pub topics: usize,
    pub producer_blocks: usize,
    pub controlled_shutdowns: usize,
    pub failovers: usize,
    pub aborted: usize,
    /// ISR changes made by AlterPartition.
    pub isr_changes: usize,
    /// Reassignments started, completed and cancelled.
    pub reassignments: usize,
    pub reassignments_completed: usize,
    pub reassignments_cancelled: usize,
}

pub use fjord_sim::SimFailure;

const HEARTBEAT_INTERVAL_MS: i64 = fjord_model::limits::BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT;
const METADATA_VERSION: i16 = 27;

/// One simulated broker process (the current holder of its node id).
#[derive(Clone, Debug)]
struct Proc {
    id: NodeId,
    rack: Option<String>,
    incarnation: Uuid,
    alive: bool,
    epoch: Option<i64>,
    /// Local clock = now * (1 + rate_ppm / 1e6) + offset.
    rate_ppm: i64,
    offset_ms: i64,
    next_heartbeat_local: i64,
    /// Heartbeats are lost until then (controller time).
    stalled_until: i64,
    shutting_down: bool,
    /// Controller time of its last accepted registration or heartbeat.
    last_accepted_ms: i64,
}

impl Proc {
    fn local(&self, now: i64) -> i64 {
        now + now * self.rate_ppm / 1_000_000 + self.offset_ms
    }
}

struct Sim {
    seed: u64,
    cfg: SimConfig,
    ctl_cfg: ControllerConfig,
    rng: Rng,
    now: i64,
    step: usize,
    controller: Controller,
    committed: MetadataImage,
    procs: Vec<Proc>,
    epochs: BTreeMap<(Uuid, i32), (i32, i32)>,
    /// A reassignment invariant broken by committed records (reported by `check`).
    violation: Option<String>,
    blocks: Vec<(i64, i64)>,
    topic_seq: usize,
    /// The fault phase is over.
    calm: bool,
    report: SimReport,
}

fn uuid_from(rng: &mut Rng) -> Uuid {
    Uuid::from_u128((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
}

/// Runs one seed.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut rng = Rng::new(seed ^ 0x5EED_C0DE);
    let cluster = MetadataImage::empty("sim-cluster");
    let mut delta = fjord_metadata::MetadataDelta::new(&cluster);
    delta
        .replay(
            &fjord_protocol::metadata_records::MetadataRecord::FeatureLevel(
                fjord_protocol::metadata_records::FeatureLevelRecord {
                    name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
                    feature_level: METADATA_VERSION,
                    ..Default::default()
                },
            ),
        )
        .map_err(|e| SimFailure {
            package: "fjord-controller",
            seed,
            step: 0,
            time_ms: 0,
            message: e.to_string(),
        })?;
    delta.set_end_offset(fjord_model::Offset(1));
    let committed = delta.apply();
    let ctl_cfg = ControllerConfig {
        session_timeout_ms: fjord_model::limits::BROKER_SESSION_TIMEOUT_MS_DEFAULT,
        disconnect_fence_ms: Some(fjord_model::limits::BROKER_DISCONNECT_FENCE_MS),
        activation_fence_ms: Some(crate::activation_fence_ms(
            fjord_model::limits::BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
        )),
        activation_fence_only: None,
        auto_leader_rebalance: true,
        leader_imbalance_check_interval_ms: 10_000,
        first_producer_id: 0,
        min_insync_replicas: fjord_model::limits::MIN_INSYNC_REPLICAS_DEFAULT,
        seed,
        planted_bug: cfg.planted_bug,
    };
    let procs = (0..cfg.brokers)
        .map(|i| Proc {
            id: NodeId(i as i32 + 1),
            rack: cfg.racks.then(|| format!("rack-{}", i % 3)),
            incarnation: uuid_from(&mut rng),
            alive: true,
            epoch: None,
            rate_ppm: rng.range_i64(-200_000, 200_000),
            offset_ms: rng.range_i64(-5_000, 5_000),
            next_heartbeat_local: i64::MIN,
            stalled_until: 0,
            shutting_down: false,
            last_accepted_ms: i64::MIN / 2,
        })
        .collect();
    let mut sim = Sim {
        seed,
        controller: Controller::activate(ctl_cfg.clone(), committed.clone(), 0),
        ctl_cfg,
        committed,
        cfg: cfg.clone(),
        rng,
        now: 0,
        step: 0,
        procs,
        epochs: BTreeMap::new(),
        violation: None,
        blocks: Vec::new(),
        topic_seq: 0,
        calm: false,
        report: SimReport::default(),
    };
    for _ in 0..cfg.fault_steps {
        sim.step(true)?;
    }
    sim.calm = true;
    for p in &mut sim.procs {
        if !p.alive {
            p.alive = true;
            p.incarnation = uuid_from(&mut sim.rng);
            p.epoch = None;
        }
        p.shutting_down = false;
        p.stalled_until = 0;
    }
    for _ in 0..cfg.calm_steps {
        sim.step(false)?;
    }
    sim.check_end()?;
    sim.report.steps = sim.step;
    Ok(sim.report)
}

impl Sim {
    fn fail<T>(&self, message: String) -> Result<T, SimFailure> {
        Err(SimFailure {
            package: "fjord-controller",
            seed: self.seed,
            step: self.step,
            time_ms: self.now,
            message,
        })
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("[{} t={}] {}", self.step, self.now, what());
        }
    }

    /// Commits or drops the records of one call; `true` when committed
    /// (the answer may then be delivered).
    fn settle<T>(&mut self, result: &ControllerResult<T>) -> bool {
        if !result.records.is_empty() && self.rng.chance(self.cfg.abort_ppm) {
            self.trace(|| format!("proposal of {} records fails", result.records.len()));
            self.controller.reset(self.committed.clone());
            self.report.aborted += 1;
            return false;
        }
        if self.violation.is_none() {
            self.violation = reassignment_violation(&self.committed, &result.records);
        }
        for r in &result.records {
            if let MetadataRecord::PartitionChange(c) = r {
                if c.replicas.is_some() && c.adding_replicas.as_ref().is_some_and(|a| a.is_empty())
                {
                    self.report.reassignments_completed += 1;
                }
            }
        }
        self.committed = self.controller.image().clone();
        true
    }

    fn step(&mut self, faults: bool) -> Result<(), SimFailure> {
        self.step += 1;
        self.now += self.rng.range_i64(50, 400);
        if faults {
            self.faults();
        }
        self.heartbeats()?;
        if faults {
            self.workload()?;
        }
        let r = self.controller.tick(self.now);
        let before = self.committed.clone();
        if self.settle(&r) {
            self.count_changes(&before);
        }
        self.check()
    }

    fn faults(&mut self) {
        let n = self.procs.len();
        if self.rng.chance(self.cfg.crash_ppm) {
            let i = self.rng.below(n);
            if self.procs[i].alive {
                self.trace(|| format!("broker {} crashes", self.procs[i].id));
                self.procs[i].alive = false;
                if self.rng.chance(500_000) {
                    self.controller.connection_lost(self.procs[i].id, self.now);
                }
            }
        }
        if self.rng.chance(self.cfg.restart_ppm) {
            let i = self.rng.below(n);
            if !self.procs[i].alive {
                let inc = uuid_from(&mut self.rng);
                let p = &mut self.procs[i];
                p.alive = true;
                p.incarnation = inc;
                p.epoch = None;
                p.shutting_down = false;
                p.stalled_until = 0;
                p.next_heartbeat_local = i64::MIN;
                self.trace(|| format!("broker {} restarts", self.procs[i].id));
            }
        }
        if self.rng.chance(self.cfg.stall_ppm) {
            let i = self.rng.below(n);
            let until = self.now
                + self
                    .rng
                    .range_i64(1_000, 2 * self.ctl_cfg.session_timeout_ms);
            self.procs[i].stalled_until = until;
            self.trace(|| format!("broker {} stalls until {until}", self.procs[i].id));
        }
        if self.rng.chance(self.cfg.disconnect_ppm) {
            let i = self.rng.below(n);
            self.trace(|| format!("broker {}'s connection closes", self.procs[i].id));
            self.controller.connection_lost(self.procs[i].id, self.now);
        }
        if self.rng.chance(self.cfg.shutdown_ppm) {
            let i = self.rng.below(n);
            if self.procs[i].alive && self.procs[i].epoch.is_some() {
                self.procs[i].shutting_down = true;
                self.trace(|| format!("broker {} begins a controlled shutdown", self.procs[i].id));
            }
        }
    }

    fn registration(&self, p: &Proc, incarnation: Uuid) -> BrokerRegistration {
        BrokerRegistration {
            broker_id: p.id,
            cluster_id: self.committed.cluster_id().to_string(),
            incarnation_id: incarnation,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9000 + p.id.0 as u16,
                security_protocol: 0,
            }],
            log_dirs: Vec::new(),
            previous_broker_epoch: -1,
            rack: p.rack.clone(),
            features: vec![FeatureRange {
                name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
                min: 1,
                max: METADATA_VERSION,
            }],
        }
    }

    /// Registers `incarnation` for proc `i`; checks the live-id rule.
    fn register(&mut self, i: usize, incarnation: Uuid, impostor: bool) -> Result<(), SimFailure> {
        let req = self.registration(&self.procs[i], incarnation);
        let before = self.committed.clone();
        match self.controller.register_broker(self.now, &req) {
            Ok(r) => {
                if !self.settle(&r) {
                    return Ok(());
                }
                let holder = &self.procs[i];
                let previous = before.broker(holder.id);
                let holder_live = holder.alive
                    && holder.incarnation != incarnation
                    && holder.epoch.is_some()
                    && previous.is_some_and(|b| Some(b.broker_epoch) == holder.epoch && !b.fenced)
                    && holder.last_accepted_ms + self.ctl_cfg.session_timeout_ms >= self.now;
                if holder_live {
                    return self.fail(format!(
                        "two live brokers share node id {}: incarnation {} registered while {} holds it",
                        holder.id, incarnation, holder.incarnation
                    ));
                }
                self.trace(|| {
                    format!(
                        "broker {} registered at epoch {}{}",
                        req.broker_id,
                        r.response,
                        if impostor {
                            " (a new process took over)"
                        } else {
                            ""
                        }
                    )
                });
                self.report.registrations += 1;
                let now = self.now;
                let p = &mut self.procs[i];
                p.incarnation = incarnation;
                p.alive = true;
                p.epoch = Some(r.response);
                p.last_accepted_ms = now;
                p.shutting_down = false;
                self.count_changes(&before);
                Ok(())
            }
            Err(e) if e.code == ErrorCode::DUPLICATE_BROKER_REGISTRATION => {
                self.report.duplicates_refused += 1;
                Ok(())
            }
            Err(e) => self.fail(format!("registration of {} refused: {e}", req.broker_id)),
        }
    }

    fn heartbeats(&mut self) -> Result<(), SimFailure> {
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            if !p.alive || p.stalled_until > self.now || p.local(self.now) < p.next_heartbeat_local
            {
                continue;
            }
            let local = p.local(self.now);
            self.procs[i].next_heartbeat_local = local + HEARTBEAT_INTERVAL_MS;
            let Some(epoch) = self.procs[i].epoch else {
                let inc = self.procs[i].incarnation;
                self.register(i, inc, false)?;
                continue;
            };
            let end = self.committed.end_offset().0;
            // Mostly caught up; sometimes a few records behind.
            let lag = if self.rng.chance(700_000) {
                0
            } else {
                self.rng.range_i64(1, 3)
            };
            let req = BrokerHeartbeat {
                broker_id: self.procs[i].id,
                broker_epoch: epoch,
                current_metadata_offset: (end - lag).max(0),
                want_fence: false,
                want_shut_down: self.procs[i].shutting_down,
            };
            let before = self.committed.clone();
            match self.controller.heartbeat(self.now, &req) {
                Ok(r) => {
                    if !self.settle(&r) {
                        continue;
                    }
                    self.count_changes(&before);
                    self.procs[i].last_accepted_ms = self.now;
                    if r.response.should_shut_down {
                        self.trace(|| format!("broker {} shuts down", req.broker_id));
                        self.report.controlled_shutdowns += 1;
                        let calm = self.calm;
                        let inc = uuid_from(&mut self.rng);
                        let p = &mut self.procs[i];
                        p.shutting_down = false;
                        if calm {
                            // Restarted at once: every broker is back in the calm phase.
                            p.incarnation = inc;
                            p.epoch = None;
                        } else {
                            p.alive = false;
                        }
                    }
                }
                Err(e)
                    if e.code == ErrorCode::STALE_BROKER_EPOCH
                        || e.code == ErrorCode::BROKER_ID_NOT_REGISTERED =>
                {
                    self.trace(|| {
                        format!("broker {} heartbeat: {e}; registers again", req.broker_id)
                    });
                    self.procs[i].epoch = None;
                }
                Err(e) => return self.fail(format!("heartbeat of {} refused: {e}", req.broker_id)),
            }
        }
        Ok(())
    }

    fn usable(&self) -> usize {
        self.controller
            .image()
            .brokers()
            .values()
            .filter(|b| !b.fenced && !b.in_controlled_shutdown)
            .count()
    }

    fn workload(&mut self) -> Result<(), SimFailure> {
        if self.rng.chance(self.cfg.impostor_ppm) {
            let i = self.rng.below(self.procs.len());
            if self.procs[i].alive {
                let inc = uuid_from(&mut self.rng);
                self.trace(|| format!("a second process registers as broker {}", self.procs[i].id));
                self.register(i, inc, true)?;
            }
        }
        if self.rng.chance(self.cfg.create_topic_ppm) {
            self.topic_seq += 1;
            let rf = self.rng.range_i64(1, 3) as i16;
            let topic = NewTopic {
                name: format!("t{}", self.topic_seq),
                num_partitions: self.rng.range_i64(1, 4) as i32,
                replication_factor: rf,
                ..Default::default()
            };
            let usable = self.usable();
            let before = self.committed.clone();
            let r = self
                .controller
                .create_topics(std::slice::from_ref(&topic), 1, 1, false);
            let committed = self.settle(&r);
            match &r.response[0] {
                Ok(_) if rf as usize > usable => {
                    return self.fail(format!(
                        "topic with rf {rf} created over {usable} usable brokers"
                    ));
                }
                Err(e)
                    if e.code == ErrorCode::INVALID_REPLICATION_FACTOR && rf as usize > usable => {}
                Err(e) => {
                    return self.fail(format!("create {}: {e} ({usable} usable)", topic.name))
                }
                Ok(_) => {
                    if committed {
                        self.report.topics += 1;
                        self.count_changes(&before);
                    }
                }
            }
        }
        let topics: Vec<String> = self
            .committed
            .topics()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        if !topics.is_empty() && self.rng.chance(self.cfg.create_partitions_ppm) {
            let name = topics[self.rng.below(topics.len())].clone();
            let count = self
                .controller
                .image()
                .topics()
                .get(&name)
                .map_or(0, |t| t.partition_count());
            let before = self.committed.clone();
            match self
                .controller
                .create_partitions(&name, count + 1, &[], false)
            {
                Ok(r) => {
                    if self.settle(&r) {
                        self.count_changes(&before);
                    }
                }
                Err(e) if e.code == ErrorCode::INVALID_REPLICATION_FACTOR => {}
                Err(e) => return self.fail(format!("create partitions of {name}: {e}")),
            }
        }
        if !topics.is_empty() && self.rng.chance(self.cfg.elect_ppm) {
            let name = topics[self.rng.below(topics.len())].clone();
            let parts: Vec<(String, i32)> = self
                .committed
                .topics()
                .get(&name)
                .map(|t| t.partitions.keys().map(|p| (name.clone(), *p)).collect())
                .unwrap_or_default();
            let before = self.committed.clone();
            let r = self.controller.elect_preferred_leaders(&parts);
            for res in &r.response {
                if let Err(e) = res {
                    if e.code != ErrorCode::ELECTION_NOT_NEEDED
                        && e.code != ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE
                    {
                        return self.fail(format!("elect {name}: {e}"));
                    }
                }
            }
            if self.settle(&r) {
                self.count_changes(&before);
            }
        }
        if self.rng.chance(self.cfg.producer_ids_ppm) {
            let i = self.rng.below(self.procs.len());
            if let Some(epoch) = self.procs[i].epoch.filter(|_| self.procs[i].alive) {
                let stale = self.rng.chance(200_000);
                let asked = if stale { epoch - 1 } else { epoch };
                let id = self.procs[i].id;
                let current = self.controller.image().broker(id).map(|b| b.broker_epoch);
                match self.controller.allocate_producer_ids(id, asked) {
                    Ok(r) => {
                        if current != Some(asked) {
                            return self
                                .fail(format!("producer ids for {id} at stale epoch {asked}"));
                        }
                        if self.settle(&r) {
                            let b = r.response;
                            let (lo, hi) = (b.first, b.first + b.size);
                            if let Some((l, h)) =
                                self.blocks.iter().find(|(l, h)| lo < *h && *l < hi)
                            {
                                return self.fail(format!(
                                    "producer-id block [{lo}, {hi}) overlaps [{l}, {h})"
                                ));
                            }
                            self.blocks.push((lo, hi));
                            self.report.producer_blocks += 1;
                        }
                    }
                    Err(e) if e.code == ErrorCode::STALE_BROKER_EPOCH && current != Some(asked) => {
                    }
                    Err(e) => return self.fail(format!("producer ids for {id}: {e}")),
                }
            }
        }
        if self.rng.chance(self.cfg.alter_partition_ppm) {
            self.alter_partition()?;
        }
        if self.rng.chance(self.cfg.reassign_ppm) {
            self.reassign()?;
        }
        if self.rng.chance(self.cfg.failover_ppm) {
            self.trace(|| "the controller fails over".into());
            self.report.failovers += 1;
            let mut cfg = self.ctl_cfg.clone();
            cfg.seed = self.rng.next_u64();
            self.controller = Controller::activate(cfg, self.committed.clone(), self.now);
        }
        Ok(())
    }

    /// A partition's leader asks for a random ISR holding itself,
    /// sometimes with a stale partition epoch; the answer must be Kafka's.
    fn alter_partition(&mut self) -> Result<(), SimFailure> {
        let parts: Vec<(Uuid, i32, fjord_metadata::PartitionRegistration)> = self
            .controller
            .image()
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |(i, p)| (t.id, *i, p.clone())))
            .filter(|(_, _, p)| p.leader >= 0)
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let (topic_id, index, p) = parts[self.rng.below(parts.len())].clone();
        let Some(leader) = self
            .procs
            .iter()
            .find(|q| q.id.0 == p.leader && q.alive)
            .and_then(|q| q.epoch)
        else {
            return Ok(());
        };
        let image = self.controller.image().clone();
        let member_epoch = |r: i32| image.broker(NodeId(r)).map_or(-1, |b| b.broker_epoch);
        let new_isr: Vec<(i32, i64)> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| *r == p.leader || self.rng.chance(600_000))
            .map(|r| (r, member_epoch(r)))
            .collect();
        let stale = self.rng.chance(150_000);
        let req = AlterPartitionRequest {
            broker_id: NodeId(p.leader),
            broker_epoch: leader,
            partitions: vec![AlterPartitionData {
                topic_id,
                partition_index: index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch - i32::from(stale),
                new_isr: new_isr.clone(),
            }],
        };
        let ineligible = new_isr.iter().any(|(r, _)| {
            image
                .broker(NodeId(*r))
                .is_none_or(|b| b.fenced || b.in_controlled_shutdown)
        });
        let current_leader_epoch = image.broker(NodeId(p.leader)).map(|b| b.broker_epoch);
        let before = self.committed.clone();
        match self.controller.alter_partition(&req) {
            Err(e)
                if e.code == ErrorCode::STALE_BROKER_EPOCH
                    && current_leader_epoch != Some(leader) => {}
            Err(e) => return self.fail(format!("AlterPartition {req:?}: {e}")),
            Ok(r) => {
                let asked: Vec<i32> = new_isr.iter().map(|(id, _)| *id).collect();
                let completes = crate::reassignment::in_progress(&p)
                    && p.replicas
                        .iter()
                        .filter(|r| !p.removing_replicas.contains(r))
                        .all(|r| asked.contains(r));
                let expected = if stale {
                    Err(ErrorCode::INVALID_UPDATE_VERSION)
                } else if ineligible {
                    Err(ErrorCode::INELIGIBLE_REPLICA)
                } else if completes && p.removing_replicas.contains(&p.leader) {
                    Err(ErrorCode::NEW_LEADER_ELECTED)
                } else if completes {
                    Ok(asked
                        .iter()
                        .copied()
                        .filter(|r| !p.removing_replicas.contains(r))
                        .collect())
                } else {
                    Ok(asked)
                };
                let got = r.response[0].2.clone().map(|a| a.isr);
                if got != expected {
                    return self.fail(format!(
                        "AlterPartition {req:?} on {p:?}: answered {got:?}, Kafka answers {expected:?}"
                    ));
                }
                if self.settle(&r) && !r.records.is_empty() {
                    self.report.isr_changes += 1;
                    self.count_changes(&before);
                }
            }
        }
        Ok(())
    }

    /// A random partition gets a random target of registered brokers (its
    /// replication factor, sometimes one more or less), or, a tenth of the
    /// time, its reassignment is cancelled.
    fn reassign(&mut self) -> Result<(), SimFailure> {
        let parts: Vec<(String, i32, fjord_metadata::PartitionRegistration)> = self
            .controller
            .image()
            .topics()
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |(i, p)| (t.name.clone(), *i, p.clone()))
            })
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let (topic, partition, p) = parts[self.rng.below(parts.len())].clone();
        let cancel = self.rng.chance(100_000);
        let registered: Vec<i32> = self
            .controller
            .image()
            .brokers()
            .keys()
            .map(|id| id.0)
            .collect();
        let target = if cancel {
            None
        } else {
            let rf = (p.replicas.len() - p.adding_replicas.len()) as i64;
            let rf = (rf + self.rng.range_i64(-1, 1)).clamp(1, registered.len() as i64) as usize;
            let mut pool = registered.clone();
            let mut target = Vec::new();
            while target.len() < rf && !pool.is_empty() {
                target.push(pool.swap_remove(self.rng.below(pool.len())));
            }
            Some(target)
        };
        self.trace(|| format!("reassign {topic}-{partition} ({p:?}) to {target:?}"));
        let r = self.controller.alter_partition_reassignments(
            &[crate::reassignment::Reassignment {
                topic: topic.clone(),
                partition,
                replicas: target.clone(),
            }],
            true,
        );
        let active = |id: &i32| {
            self.controller
                .image()
                .broker(NodeId(*id))
                .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
        };
        match (&r.response[0], &target) {
            (Ok(()), None) if crate::reassignment::in_progress(&p) => {}
            (Err(e), None)
                if e.code == ErrorCode::NO_REASSIGNMENT_IN_PROGRESS
                    && !crate::reassignment::in_progress(&p) => {}
            (Ok(()), Some(t)) if t.iter().any(active) => {}
            (Err(e), Some(t))
                if e.code == ErrorCode::INVALID_REPLICA_ASSIGNMENT && !t.iter().any(active) => {}
            (answer, _) => {
                return self.fail(format!(
                    "reassign {topic}-{partition} ({p:?}) to {target:?}: answered {answer:?}"
                ))
            }
        }
        let before = self.committed.clone();
        if self.settle(&r) && r.response[0].is_ok() {
            if target.is_some() {
                self.report.reassignments += 1;
            } else {
                self.report.reassignments_cancelled += 1;
            }
            self.count_changes(&before);
        }
        Ok(())
    }

    fn count_changes(&mut self, before: &MetadataImage) {
        for (id, b) in self.committed.brokers() {
            let was = before.broker(*id);
            if b.fenced && was.is_some_and(|w| !w.fenced && w.broker_epoch == b.broker_epoch) {
                self.report.fencings += 1;
            }
            if !b.fenced && was.is_some_and(|w| w.fenced) {
                self.report.unfencings += 1;
            }
        }
        for t in self.committed.topics().iter() {
            for (i, p) in &t.partitions {
                if let Some(old) = before
                    .topics()
                    .get_by_id(t.id)
                    .and_then(|o| o.partitions.get(i))
                {
                    if old.leader != p.leader {
                        self.report.leader_changes += 1;
                    }
                }
            }
        }
    }

    fn check(&mut self) -> Result<(), SimFailure> {
        if let Some(v) = self.violation.take() {
            return self.fail(v);
        }
        if let Err(e) = check_image(&self.committed) {
            return self.fail(format!("committed image: {e}"));
        }
        if let Err(e) = check_image(self.controller.image()) {
            return self.fail(format!("controller image: {e}"));
        }
        for t in self.committed.topics().iter() {
            for (i, p) in &t.partitions {
                let now = (p.leader_epoch, p.partition_epoch);
                if let Some(old) = self.epochs.insert((t.id, *i), now) {
                    if now.0 < old.0 || now.1 < old.1 {
                        return self.fail(format!(
                            "{}-{i}: epochs went from {old:?} to {now:?}",
                            t.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_end(&self) -> Result<(), SimFailure> {
        for p in &self.procs {
            match self.committed.broker(p.id) {
                Some(b) if !b.fenced && Some(b.broker_epoch) == p.epoch => {}
                b => {
                    return self.fail(format!(
                        "after the calm phase broker {} is not registered and unfenced: {b:?}",
                        p.id
                    ))
                }
            }
        }
        for t in self.committed.topics().iter() {
            for (i, p) in &t.partitions {
                if p.leader < 0 {
                    return self.fail(format!(
                        "after the calm phase {}-{i} has no leader: {p:?}, brokers {:?}",
                        t.name,
                        self.committed
                            .brokers()
                            .values()
                            .map(|b| (
                                b.broker_id,
                                b.broker_epoch,
                                b.fenced,
                                b.in_controlled_shutdown
                            ))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The first record of `records` (committed in order onto `image`) that
/// ends a reassignment other than by cancelling it (the set of replicas
/// changes and no reassignment is left in progress) while the ISR it
/// leaves does not hold every replica: a reassignment must complete only
/// once the new replicas are all in sync, before the old ones go.
fn reassignment_violation(image: &MetadataImage, records: &[MetadataRecord]) -> Option<String> {
    let moves = |r: &MetadataRecord| matches!(r, MetadataRecord::PartitionChange(c) if c.replicas.is_some());
    if !records.iter().any(moves) {
        return None;
    }
    let replayed = |image: &MetadataImage, r: &MetadataRecord| {
        let mut d = fjord_metadata::MetadataDelta::new(image);
        d.replay(r).ok().map(|_| d.apply())
    };
    let partition = |image: &MetadataImage, topic: Uuid, index: i32| {
        image
            .topics()
            .get_by_id(topic)
            .and_then(|t| t.partitions.get(&index).cloned())
    };
    let mut image = image.clone();
    for r in records {
        let MetadataRecord::PartitionChange(c) = r else {
            image = replayed(&image, r)?;
            continue;
        };
        let old = partition(&image, c.topic_id, c.partition_id)?;
        image = replayed(&image, r)?;
        let new = partition(&image, c.topic_id, c.partition_id)?;
        let mut before_set = old.replicas.clone();
        let mut after_set = new.replicas.clone();
        before_set.sort_unstable();
        after_set.sort_unstable();
        let cancelled = crate::reassignment::in_progress(&old)
            && new.replicas
                == old
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !old.adding_replicas.contains(r))
                    .collect::<Vec<_>>();
        let ended = !crate::reassignment::in_progress(&new) && before_set != after_set;
        if ended && !cancelled && !new.replicas.iter().all(|r| new.isr.contains(r)) {
            return Some(format!(
                "a reassignment completed before every new replica was in the ISR: \
                 {old:?} -> {new:?}"
            ));
        }
    }
    None
}
