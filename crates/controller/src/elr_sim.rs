//! A seeded simulation of correlated crashes against the controller's
//! eligible-leader-replica rules (KIP-966).
//!
//! One partition on brokers 1, 2, 3 with `min.insync.replicas` 2, the real
//! [`Controller`] deciding ISR, ELR and leader, and a small model of the
//! replicas' logs around it: a log is a list of record ids whose first
//! `durable` entries are on stable storage. The leader appends produced
//! records; a live follower copies the leader's log (after truncating to
//! what the two share), and the leader asks (AlterPartition) to add a
//! caught-up follower to the ISR and to remove one that stopped fetching.
//! The high watermark is the smallest of what the ISR members count, taken
//! only while the ISR holds at least `min.insync.replicas` members (the
//! rule KIP-966 rests on); what a member counts is its log end in
//! [`AckModel::PageCache`] (Kafka's default: a follower's fetch offset is
//! what it has, synced or not) or its durable end in [`AckModel::Durable`]
//! (Fjord's default). Every record below a high watermark is committed
//! (an acks=all producer was answered) and joins the history.
//!
//! Faults: one broker's machine crashes (it keeps its synced prefix and a
//! random part of the rest), or every broker crashes at once and keeps only
//! what it synced (a power cut: a correlated crash); a broker stops cleanly (synced, with its broker epoch
//! kept as the proof Kafka writes in `.kafka_cleanshutdown`); a broker
//! down for a while registers again as a new incarnation, sending that
//! proof as `previous_broker_epoch` (or -1), and is unfenced by its next
//! heartbeat. Brokers that are up heartbeat every step; the controller's
//! `tick` fences the ones that stopped.
//!
//! Checked after every step: a leader elected cleanly (from the ISR or the
//! ELR; not an unclean last-known-leader election, which the controller
//! marks RECOVERING) holds every committed record, in order, unless its
//! process is gone (its session has not expired yet: it never serves that
//! leadership, and its next registration takes it away). A
//! RECOVERING election that lost committed records is counted
//! ([`ElrSimReport::lost_in_recovery`]), and the history continues from
//! what the new leader holds; [`ElrSimConfig::strict`] makes it a failure
//! too (it holds in the durable model).
//!
//! `FJORD_ELR_SIM_TRACE=1` prints every step's action and state to stderr
//! (with `FJORD_SIM_SEED`, see `tests/elr_sim.rs`).
//!
//! With `eligible.leader.replicas.version` 0 the same schedules in the page
//! cache model elect a leader that lost committed records: Kafka without
//! ELR keeps the last ISR member in the ISR, and a correlated crash lets
//! it come back without the records and lead (the tests show it).

use fjord_metadata::{MetadataDelta, MetadataImage, PartitionRegistration};
use fjord_model::{NodeId, Offset};
use fjord_protocol::metadata_records::{FeatureLevelRecord, MetadataRecord};
use fjord_sim::{Rng, SimFailure};
use uuid::Uuid;

use crate::alter_partition::{AlterPartitionData, AlterPartitionRequest};
use crate::{
    BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig, FeatureRange, Listener,
    NewTopic, LEADER_RECOVERING, NO_LEADER,
};

const BROKERS: usize = 3;
const MIN_ISR: usize = 2;
const STEP_MS: i64 = 1_000;
const SESSION_MS: i64 = 2_500;
const TOPIC: &str = "elr";
const METADATA_VERSION: i16 = 21;

/// What a follower's fetch tells the leader it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckModel {
    /// Its log end, synced or not (Kafka's default).
    PageCache,
    /// Its durable end (Fjord's default).
    Durable,
}

/// One scripted or random action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Produce,
    /// Broker `i` (0-based) syncs its log.
    Flush(usize),
    /// Broker `i`'s machine crashes: it keeps its synced prefix and a
    /// random part of the rest.
    Crash(usize),
    /// A power cut: every broker that is up crashes at once and keeps only
    /// what it synced.
    CrashAll,
    /// Broker `i` syncs and stops, keeping its proof of a clean shutdown.
    Stop(usize),
    /// Broker `i`, if down, registers again.
    Restart(usize),
    /// Only time passes.
    Wait,
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct ElrSimConfig {
    pub elr: bool,
    pub model: AckModel,
    /// Random steps (ignored with a `script`).
    pub steps: usize,
    /// Per million per step.
    pub crash_ppm: u32,
    pub crash_all_ppm: u32,
    pub stop_ppm: u32,
    pub flush_ppm: u32,
    pub restart_ppm: u32,
    /// A RECOVERING election that loses committed records is a failure too.
    pub strict: bool,
    /// Play these actions (one per step) instead of random ones.
    pub script: Option<Vec<Action>>,
}

impl ElrSimConfig {
    pub fn new(elr: bool, model: AckModel) -> ElrSimConfig {
        ElrSimConfig {
            elr,
            model,
            steps: 400,
            crash_ppm: 40_000,
            crash_all_ppm: 15_000,
            stop_ppm: 20_000,
            flush_ppm: 300_000,
            restart_ppm: 200_000,
            strict: false,
            script: None,
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElrSimReport {
    pub committed: usize,
    pub correlated_crashes: usize,
    pub clean_elections: usize,
    /// Clean elections of a leader that was in the ELR (not the ISR).
    pub elr_elections: usize,
    pub recovering_elections: usize,
    /// RECOVERING elections whose leader lacked committed records.
    pub lost_in_recovery: usize,
    /// Steps that ended with the partition leaderless.
    pub leaderless_steps: usize,
    /// Elections of a broker that was down (not yet fenced): not checked.
    pub dead_elections: usize,
}

#[derive(Clone, Debug, Default)]
struct Node {
    up: bool,
    log: Vec<u64>,
    durable: usize,
    epoch: i64,
    /// The epoch it stopped cleanly with (Kafka's clean-shutdown file).
    clean_epoch: Option<i64>,
    incarnation: u128,
}

struct Sim {
    cfg: ElrSimConfig,
    rng: Rng,
    now: i64,
    step: usize,
    c: Controller,
    topic: Uuid,
    nodes: Vec<Node>,
    history: Vec<u64>,
    next_id: u64,
    last: (i32, i32),
    /// The ELR at the last check (an election from it is counted).
    last_elr: Vec<i32>,
    report: ElrSimReport,
}

fn nid(i: usize) -> i32 {
    i as i32 + 1
}

/// Runs one seed.
pub fn run(seed: u64, cfg: &ElrSimConfig) -> Result<ElrSimReport, SimFailure> {
    let mut sim = Sim::new(seed, cfg.clone());
    let fail = |sim: &Sim, message: String| SimFailure {
        package: "fjord-controller",
        seed,
        step: sim.step,
        time_ms: sim.now,
        message,
    };
    if let Err(m) = sim.setup() {
        return Err(fail(&sim, m));
    }
    let actions: Vec<Option<Action>> = match &cfg.script {
        Some(s) => s.iter().copied().map(Some).collect(),
        None => vec![None; cfg.steps],
    };
    for a in actions {
        let action = a.unwrap_or_else(|| sim.random_action());
        if let Err(m) = sim.step(action) {
            return Err(fail(&sim, m));
        }
    }
    Ok(sim.report)
}

impl Sim {
    fn new(seed: u64, cfg: ElrSimConfig) -> Sim {
        let mut d = MetadataDelta::new(&MetadataImage::empty("elr-sim"));
        let mut features = vec![(
            fjord_metadata::image::METADATA_VERSION_FEATURE,
            METADATA_VERSION,
        )];
        if cfg.elr {
            features.push((fjord_metadata::image::ELR_VERSION_FEATURE, 1));
        }
        for (name, level) in features {
            d.replay(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: name.into(),
                feature_level: level,
                ..Default::default()
            }))
            .expect("feature levels replay");
        }
        d.set_end_offset(Offset(2));
        let c = Controller::activate(
            ControllerConfig {
                session_timeout_ms: SESSION_MS,
                disconnect_fence_ms: None,
                activation_fence_ms: None,
                auto_leader_rebalance: false,
                seed,
                ..ControllerConfig::default()
            },
            d.apply(),
            0,
        );
        Sim {
            cfg,
            rng: Rng::new(seed ^ 0x0E1E_C0DE),
            now: 0,
            step: 0,
            c,
            topic: Uuid::nil(),
            nodes: vec![Node::default(); BROKERS],
            history: Vec::new(),
            next_id: 1,
            last: (NO_LEADER, -1),
            last_elr: Vec::new(),
            report: ElrSimReport::default(),
        }
    }

    fn registration(&self, i: usize) -> BrokerRegistration {
        BrokerRegistration {
            broker_id: NodeId(nid(i)),
            cluster_id: "elr-sim".into(),
            incarnation_id: Uuid::from_u128(self.nodes[i].incarnation),
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092,
                security_protocol: 0,
            }],
            rack: None,
            features: vec![
                FeatureRange {
                    name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
                    min: 1,
                    max: METADATA_VERSION,
                },
                FeatureRange {
                    name: fjord_metadata::image::ELR_VERSION_FEATURE.into(),
                    min: 0,
                    max: 1,
                },
            ],
            log_dirs: Vec::new(),
            previous_broker_epoch: self.nodes[i].clean_epoch.unwrap_or(-1),
        }
    }

    /// Registers broker `i` as a new incarnation; `false` if the controller
    /// refused (the old incarnation's session has not ended yet: retried).
    fn register(&mut self, i: usize) -> Result<bool, String> {
        self.nodes[i].incarnation += 1;
        let reg = self.registration(i);
        let r = match self.c.register_broker(self.now, &reg) {
            Ok(r) => r,
            Err(e) if e.code == fjord_model::ErrorCode::DUPLICATE_BROKER_REGISTRATION => {
                return Ok(false)
            }
            Err(e) => return Err(format!("registration of {}: {e}", nid(i))),
        };
        let n = &mut self.nodes[i];
        n.epoch = r.response;
        n.clean_epoch = None;
        n.up = true;
        Ok(true)
    }

    fn setup(&mut self) -> Result<(), String> {
        for i in 0..BROKERS {
            if !self.register(i)? {
                return Err(format!("broker {} could not register", nid(i)));
            }
        }
        self.heartbeats()?;
        let t = NewTopic {
            name: TOPIC.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![(0..BROKERS).map(nid).collect()],
            configs: [("min.insync.replicas".to_string(), MIN_ISR.to_string())].into(),
        };
        let r = self.c.create_topics(&[t], 1, 1, false);
        self.topic = r.response[0].clone().map_err(|e| e.to_string())?.topic_id;
        let p = self.partition();
        self.last = (p.leader, p.leader_epoch);
        Ok(())
    }

    fn partition(&self) -> PartitionRegistration {
        self.c
            .image()
            .topics()
            .get_by_id(self.topic)
            .and_then(|t| t.partitions.get(&0).cloned())
            .expect("the partition exists")
    }

    fn heartbeats(&mut self) -> Result<(), String> {
        for i in 0..BROKERS {
            if !self.nodes[i].up {
                continue;
            }
            let hb = BrokerHeartbeat {
                broker_id: NodeId(nid(i)),
                broker_epoch: self.nodes[i].epoch,
                current_metadata_offset: self.c.image().end_offset().0,
                want_fence: false,
                want_shut_down: false,
            };
            self.c
                .heartbeat(self.now, &hb)
                .map_err(|e| format!("heartbeat of {}: {e}", nid(i)))?;
        }
        Ok(())
    }

    fn random_action(&mut self) -> Action {
        let i = self.rng.below(BROKERS);
        if self.rng.chance(self.cfg.crash_all_ppm) {
            Action::CrashAll
        } else if self.rng.chance(self.cfg.crash_ppm) {
            Action::Crash(i)
        } else if self.rng.chance(self.cfg.stop_ppm) {
            Action::Stop(i)
        } else if !self.nodes[i].up && self.rng.chance(self.cfg.restart_ppm) {
            Action::Restart(i)
        } else if self.rng.chance(self.cfg.flush_ppm) {
            Action::Flush(i)
        } else {
            Action::Produce
        }
    }

    fn crash(&mut self, i: usize) {
        let keep = {
            let n = &self.nodes[i];
            let unsynced = n.log.len() - n.durable;
            n.durable + self.rng.below(unsynced + 1)
        };
        let n = &mut self.nodes[i];
        if n.up {
            n.log.truncate(keep);
            n.up = false;
            n.clean_epoch = None;
        }
    }

    fn step(&mut self, action: Action) -> Result<(), String> {
        self.step += 1;
        self.now += STEP_MS;
        if std::env::var_os("FJORD_ELR_SIM_TRACE").is_some() {
            let p = self.partition();
            let logs: Vec<(bool, usize, usize)> = self
                .nodes
                .iter()
                .map(|n| (n.up, n.log.len(), n.durable))
                .collect();
            eprintln!(
                "step {} {action:?}: leader {} isr {:?} elr {:?} lke {:?} committed {} nodes {logs:?}",
                self.step, p.leader, p.isr, p.elr, p.last_known_elr, self.history.len()
            );
        }
        match action {
            Action::Produce => {
                let p = self.partition();
                if p.leader != NO_LEADER && self.nodes[(p.leader - 1) as usize].up {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.nodes[(p.leader - 1) as usize].log.push(id);
                }
            }
            Action::Flush(i) => {
                let n = &mut self.nodes[i];
                n.durable = n.log.len();
            }
            Action::Crash(i) => self.crash(i),
            Action::CrashAll => {
                // A power cut: every page cache is gone.
                self.report.correlated_crashes += 1;
                for n in &mut self.nodes {
                    if n.up {
                        n.log.truncate(n.durable);
                        n.up = false;
                        n.clean_epoch = None;
                    }
                }
            }
            Action::Stop(i) => {
                let n = &mut self.nodes[i];
                if n.up {
                    n.durable = n.log.len();
                    n.up = false;
                    n.clean_epoch = Some(n.epoch);
                }
            }
            Action::Restart(i) => {
                // Recovery finds what survived: all of it durable.
                if !self.nodes[i].up && self.register(i)? {
                    let n = &mut self.nodes[i];
                    n.durable = n.log.len();
                }
            }
            Action::Wait => {}
        }
        self.heartbeats()?;
        self.c.tick(self.now);
        self.check_election()?;
        self.replicate()?;
        self.check_election()?;
        self.advance_high_watermark()?;
        if self.partition().leader == NO_LEADER {
            self.report.leaderless_steps += 1;
        }
        crate::check_image(self.c.image())
    }

    /// Followers copy the leader; the leader adds caught-up followers to
    /// the ISR and removes those that are down.
    fn replicate(&mut self) -> Result<(), String> {
        let p = self.partition();
        if p.leader == NO_LEADER {
            return Ok(());
        }
        let l = (p.leader - 1) as usize;
        if !self.nodes[l].up {
            return Ok(());
        }
        let leader_log = self.nodes[l].log.clone();
        let mut isr = p.isr.clone();
        for i in 0..BROKERS {
            if i == l {
                continue;
            }
            let unfenced = self
                .c
                .image()
                .broker(NodeId(nid(i)))
                .is_some_and(|b| !b.fenced);
            let n = &mut self.nodes[i];
            if n.up {
                let common = n
                    .log
                    .iter()
                    .zip(&leader_log)
                    .take_while(|(a, b)| a == b)
                    .count();
                n.log.truncate(common);
                n.durable = n.durable.min(common);
                n.log.extend_from_slice(&leader_log[common..]);
                // It joins once it holds the high watermark, as the
                // leader counts it (Kafka: its fetch offset reached it).
                if unfenced && !isr.contains(&nid(i)) && self.counted(i, l) >= self.history.len() {
                    isr.push(nid(i));
                }
            } else if isr.contains(&nid(i)) {
                isr.retain(|r| *r != nid(i));
            }
        }
        if isr == p.isr {
            return Ok(());
        }
        let epoch_of = |id: i32| self.nodes[(id - 1) as usize].epoch;
        let req = AlterPartitionRequest {
            broker_id: NodeId(p.leader),
            broker_epoch: epoch_of(p.leader),
            partitions: vec![AlterPartitionData {
                topic_id: self.topic,
                partition_index: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: isr.iter().map(|r| (*r, epoch_of(*r))).collect(),
            }],
        };
        // A refused change (say a member fenced meanwhile) is retried later.
        let _ = self.c.alter_partition(&req);
        Ok(())
    }

    /// What an ISR member counts toward the high watermark of leader `l`:
    /// its log end (page cache) or durable end, within what it shares with
    /// the leader's log.
    fn counted(&self, i: usize, l: usize) -> usize {
        let n = &self.nodes[i];
        let own = match self.cfg.model {
            AckModel::PageCache => n.log.len(),
            AckModel::Durable => n.durable,
        };
        let shared = n
            .log
            .iter()
            .zip(&self.nodes[l].log)
            .take_while(|(a, b)| a == b)
            .count();
        own.min(shared)
    }

    fn advance_high_watermark(&mut self) -> Result<(), String> {
        let p = self.partition();
        if p.leader == NO_LEADER || p.isr.len() < MIN_ISR {
            return Ok(());
        }
        let l = (p.leader - 1) as usize;
        if !self.nodes[l].up {
            return Ok(());
        }
        let hw = p
            .isr
            .iter()
            .map(|r| self.counted((*r - 1) as usize, l))
            .min()
            .unwrap_or(0);
        let log = &self.nodes[l].log;
        if hw > self.history.len() {
            if log.len() < self.history.len() || log[..self.history.len()] != self.history[..] {
                return Err(format!(
                    "leader {} does not hold the committed history",
                    p.leader
                ));
            }
            self.history.extend_from_slice(&log[self.history.len()..hw]);
            self.report.committed = self.history.len();
        }
        Ok(())
    }

    /// A new leader (epoch) is checked against the committed history.
    fn check_election(&mut self) -> Result<(), String> {
        let p = self.partition();
        let last_elr = std::mem::replace(&mut self.last_elr, p.elr.clone());
        if p.leader == NO_LEADER || (p.leader, p.leader_epoch) == self.last {
            self.last = (p.leader, p.leader_epoch);
            return Ok(());
        }
        // A new leader, or the same broker again in a new epoch (elected
        // again after a registration took its leadership away).
        self.last = (p.leader, p.leader_epoch);
        if !self.nodes[(p.leader - 1) as usize].up {
            // A broker whose process is gone but whose session has not
            // expired yet: it never serves this leadership (its next
            // registration, a new incarnation, takes it away).
            self.report.dead_elections += 1;
            return Ok(());
        }
        let log = &self.nodes[(p.leader - 1) as usize].log;
        let holds =
            log.len() >= self.history.len() && log[..self.history.len()] == self.history[..];
        if p.leader_recovery_state == LEADER_RECOVERING {
            self.report.recovering_elections += 1;
            if !holds {
                self.report.lost_in_recovery += 1;
                if self.cfg.strict {
                    return Err(format!(
                        "leader {} elected uncleanly (RECOVERING) lacks committed records: \
                         it holds {} of {}",
                        p.leader,
                        log.len(),
                        self.history.len()
                    ));
                }
                // The history goes on from what the new leader holds.
                let common = log
                    .iter()
                    .zip(&self.history)
                    .take_while(|(a, b)| a == b)
                    .count();
                self.history.truncate(common);
            }
            return Ok(());
        }
        self.report.clean_elections += 1;
        if last_elr.contains(&p.leader) {
            self.report.elr_elections += 1;
        }
        if !holds {
            return Err(format!(
                "leader {} elected cleanly lacks committed records: it holds {:?}, the \
                 committed history is {:?}",
                p.leader, log, self.history
            ));
        }
        Ok(())
    }
}

impl ElrSimReport {
    /// Sums reports of several runs.
    pub fn add(&mut self, other: &ElrSimReport) {
        self.committed += other.committed;
        self.correlated_crashes += other.correlated_crashes;
        self.clean_elections += other.clean_elections;
        self.elr_elections += other.elr_elections;
        self.recovering_elections += other.recovering_elections;
        self.lost_in_recovery += other.lost_in_recovery;
        self.leaderless_steps += other.leaderless_steps;
        self.dead_elections += other.dead_elections;
    }
}
