//! A seeded simulator for the quorum core.
//!
//! N voters and M observers ([`Node`]) run over a simulated network and
//! simulated disks,
//! all driven by one [`Rng`] seeded from the run's seed, so a run replays
//! exactly. Faults while `faults` are on: messages lost, duplicated, delayed
//! (and so reordered); network partitions into two sides; crashes that drop
//! a random part of each disk's unsynced suffix (the quorum state is written
//! synchronously, as Kafka's `quorum-state` file is) and restarts from what
//! survived (the others told, half the time, that the crashed node is
//! unreachable; sometimes a node is told so of a live one); every node's clock runs at its own rate (±2 %) from its own
//! offset. A random workload proposes entries. Nodes' state machines take
//! snapshots at random committed offsets (KIP-630): the log start moves up
//! and entries below it are deleted, so lagging or restarted followers must
//! fetch the leader's snapshot in chunks (FetchSnapshot) and install it.
//! Leaders hold empty Fetches (long polling) in the runs that enable it.
//! After the fault phase the network heals, crashed nodes restart, and the
//! run continues for a bounded simulated time in which a proposal must
//! commit and every node, observers included, must learn that it did
//! (liveness and convergence).
//!
//! Checked after every step (a failure returns [`SimFailure`]):
//! - **election safety**: at most one node is ever leader of an epoch;
//! - **leader completeness**: a node that becomes leader of epoch E holds
//!   every entry committed in an epoch below E;
//! - **state machine safety**: a global history of committed entries (offset,
//!   epoch, payload) is kept; each live node's log below its high watermark
//!   equals that history (a node's high watermark may pass the history's
//!   end: the history then grows from that node's log). Entries are compared
//!   by chained hashes, so a snapshot (which carries the chain hash of its
//!   last entry in its bytes) is compared with the history too: a node whose
//!   log starts at a snapshot holds the history's prefix below it;
//! - **durability**: the last committed entry (and so, by log matching, all
//!   of the history) is on enough voters' disks, crashed ones included, in
//!   their logs or their snapshots, that every majority of the voter set in
//!   force (and of a voter set appended but not committed) includes one;
//! - **voter sets** (KIP-853): each node's voter set is the latest
//!   VotersRecord on its disk, else its snapshot's, else the configured
//!   one (none for observers of reconfigurable runs, which find the leader
//!   through bootstrap endpoints that have no node id); no log holds two VotersRecords above the committed history (one
//!   change at a time); a node outside its voter set never stands;
//! - an installed snapshot's bytes are exactly the leader's snapshot;
//! - observers never stand for election or lead;
//! - **high watermark monotonic**: within one incarnation of a node its high
//!   watermark never goes back. A restarted node starts at 0 and learns it
//!   again (the high watermark is not persisted, as in Kafka);
//! - **log matching**: two disks holding an entry with the same offset and
//!   epoch hold the same entries up to it (compared by chained hashes);
//! - no node was asked to truncate below its high watermark;
//! - the core's view of its log (start and end offsets) equals the disk's.

use std::collections::BTreeMap;

use fjord_model::{LeaderEpoch, NodeId, Offset};

use crate::log::{Entry, EntryData, LogMeta, LogReader, SnapshotChunk, SnapshotId, VoterKey};
use crate::messages::Envelope;
use crate::node::{Config, Input, Node, Output, PersistedState, PlantedBug, RoleKind};
use fjord_sim::{mix, Rng};

/// Settings of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub voters: usize,
    /// Broker-only nodes that follow the log (ids from 101).
    pub observers: usize,
    /// Steps with faults on; each step advances time by 1..=8 ms.
    pub fault_steps: usize,
    /// Simulated time after healing within which a new proposal must commit.
    pub liveness_ms: i64,
    /// Per million, per message.
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    pub delay_max_ms: i64,
    /// Per million, per step: one node crashes.
    pub crash_ppm: u32,
    /// Per million, per step: a node is told another is unreachable
    /// though it lives (crashed ones are reported half the time).
    pub unreachable_ppm: u32,
    /// Per million, per step: the network splits anew / heals.
    pub partition_ppm: u32,
    pub heal_ppm: u32,
    pub flush_delay_max_ms: i64,
    /// Per million, per step: a node's state machine takes a snapshot.
    pub snapshot_ppm: u32,
    /// The nodes' `fetch_max_wait_ms` (0: no long polling).
    pub fetch_max_wait_ms: i64,
    /// `kraft.version` 1: the leader adds and removes voters (KIP-853).
    pub reconfigurable: bool,
    /// Per million, per step (with `reconfigurable`): the newest live leader
    /// is asked to add a node to the voter set or remove one.
    pub voter_change_ppm: u32,
    pub planted_bug: PlantedBug,
    /// Print each step's events to stderr (for replaying one seed).
    pub trace: bool,
}

impl SimConfig {
    pub fn new(voters: usize) -> SimConfig {
        SimConfig {
            voters,
            observers: 0,
            fault_steps: 500,
            liveness_ms: 3_000,
            loss_ppm: 50_000,
            duplicate_ppm: 30_000,
            delay_max_ms: 15,
            crash_ppm: 12_000,
            unreachable_ppm: 5_000,
            partition_ppm: 8_000,
            heal_ppm: 20_000,
            flush_delay_max_ms: 25,
            snapshot_ppm: 20_000,
            fetch_max_wait_ms: 0,
            reconfigurable: false,
            voter_change_ppm: 15_000,
            planted_bug: PlantedBug::None,
            trace: false,
        }
    }
}

pub use fjord_sim::SimFailure;

/// What [`leader_kill`] saw, in simulated ms from the kill.
#[derive(Clone, Debug, Default)]
pub struct LeaderKillReport {
    /// Until a voter led a later epoch.
    pub elected_ms: i64,
    /// Until every observer followed that leader.
    pub observers_follow_ms: i64,
}

/// Kills the leader of a settled quorum (no faults: a `kill -9` of the
/// active controller) and measures how long the voters take to elect a new
/// leader and the observers (broker-only nodes, whose heartbeats go to the
/// quorum leader) to follow it. The dead node's connections close at the
/// kill, and a message to it is refused at once: its peers hear it is
/// unreachable, as `fjord-quorum`'s connections report a refused connect. The usual
/// invariants are checked after every step.
pub fn leader_kill(seed: u64, cfg: &SimConfig) -> Result<LeaderKillReport, SimFailure> {
    let mut sim = Sim::new(seed, cfg);
    sim.faults = false;
    sim.refuse_to_down = true;
    sim.leader_kill().map_err(|message| SimFailure {
        package: "fjord-raft",
        seed,
        step: sim.step,
        time_ms: sim.time_ms,
        message,
    })
}

/// What a successful run saw.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub steps: usize,
    pub committed: usize,
    pub epochs_with_leader: usize,
    pub crashes: usize,
    pub messages_sent: usize,
    /// Simulated time from healing to the first commit of a proposal made after it.
    pub heal_to_commit_ms: i64,
    /// Simulated time from healing until every node knows that commit.
    pub heal_to_converge_ms: i64,
    pub snapshots_taken: usize,
    pub snapshots_installed: usize,
    /// Steps after which some leader held a Fetch (long polling).
    pub steps_with_held_fetch: usize,
    /// Voter changes appended by a leader / committed.
    pub voter_changes_proposed: usize,
    pub voter_changes_committed: usize,
}

#[derive(Clone, Debug)]
struct DiskEntry {
    entry: Entry,
    /// Hash of this entry and all before it.
    chain: u64,
}

/// A snapshot on a simulated disk; its bytes carry its id and the chain
/// hash of its last entry, padded to a length that varies (several chunks).
struct SimSnapshot {
    id: SnapshotId,
    chain: u64,
    /// The voter set in force at its end (its VotersRecord), if any.
    voters: Option<Vec<VoterKey>>,
    bytes: Vec<u8>,
}

/// A simulated node's metadata directory id (never 0).
fn directory_of(id: NodeId) -> u128 {
    (u128::from(id.0.unsigned_abs()) << 64) | 0xD1
}

fn snapshot_bytes(id: SnapshotId, chain: u64, voters: Option<&[VoterKey]>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&id.end_offset.0.to_le_bytes());
    b.extend_from_slice(&id.epoch.0.to_le_bytes());
    b.extend_from_slice(&chain.to_le_bytes());
    match voters {
        None => b.push(0),
        Some(v) => {
            b.push(1);
            b.push(v.len() as u8);
            for k in v {
                b.extend_from_slice(&k.id.0.to_le_bytes());
                b.extend_from_slice(&k.directory_id.to_le_bytes());
            }
        }
    }
    let pad = (mix(chain) % 48) as usize;
    b.extend((0..pad).map(|i| mix(chain ^ i as u64) as u8));
    b
}

/// The chain hash and voter set a snapshot's bytes carry, if they are well
/// formed for `id`.
fn parse_snapshot(id: SnapshotId, bytes: &[u8]) -> Option<(u64, Option<Vec<VoterKey>>)> {
    let chain = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?);
    let voters = match bytes.get(20)? {
        0 => None,
        _ => {
            let n = usize::from(*bytes.get(21)?);
            let mut v = Vec::new();
            for k in 0..n {
                let at = 22 + k * 20;
                let id = i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
                let dir = u128::from_le_bytes(bytes.get(at + 4..at + 20)?.try_into().ok()?);
                v.push(VoterKey::new(NodeId(id), dir));
            }
            Some(v)
        }
    };
    (snapshot_bytes(id, chain, voters.as_deref()) == bytes).then_some((chain, voters))
}

#[derive(Default)]
struct Disk {
    /// Offset of `entries[0]`: the snapshot's end offset, or 0.
    start: usize,
    snapshot: Option<SimSnapshot>,
    /// A snapshot being fetched (lost in a crash).
    partial: Option<(SnapshotId, Vec<u8>)>,
    entries: Vec<DiskEntry>,
    /// Entries below this offset are synced.
    synced: usize,
    /// (completes at, synced end offset it will reach)
    flushes: Vec<(i64, usize)>,
    state: PersistedState,
}

impl LogReader for Disk {
    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry> {
        let from = usize::try_from(from.0).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(from.saturating_sub(self.start))
            .take(if from < self.start { 0 } else { max_entries })
            .map(|d| d.entry.clone())
            .collect()
    }

    fn read_snapshot(
        &self,
        id: SnapshotId,
        position: u64,
        max_bytes: usize,
    ) -> Option<SnapshotChunk> {
        let snap = self.snapshot.as_ref().filter(|s| s.id == id)?;
        let from = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(snap.bytes.len());
        let to = from.saturating_add(max_bytes).min(snap.bytes.len());
        Some(SnapshotChunk {
            size_bytes: snap.bytes.len() as u64,
            bytes: snap.bytes[from..to].to_vec(),
        })
    }

    fn snapshot_voters(&self, id: SnapshotId) -> Option<Vec<VoterKey>> {
        self.snapshot
            .as_ref()
            .filter(|s| s.id == id)
            .and_then(|s| s.voters.clone())
    }
}

impl Disk {
    fn end(&self) -> usize {
        self.start + self.entries.len()
    }

    fn push(&mut self, entry: Entry) -> Result<(), String> {
        if entry.offset.0 != self.end() as i64 {
            return Err(format!(
                "append at {} but disk ends at {}",
                entry.offset,
                self.end()
            ));
        }
        let prev = self.chain_at(self.end().wrapping_sub(1)).unwrap_or(0);
        let chain = chain_hash(prev, &entry);
        self.entries.push(DiskEntry { entry, chain });
        Ok(())
    }

    /// Entries at `len` and above removed.
    fn truncate(&mut self, len: usize) -> Result<(), String> {
        if len < self.start {
            return Err(format!(
                "truncation to {len} below the log start {}",
                self.start
            ));
        }
        self.entries.truncate(len - self.start);
        self.synced = self.synced.min(len);
        for f in &mut self.flushes {
            f.1 = f.1.min(len);
        }
        Ok(())
    }

    fn delete_before(&mut self, start: usize) -> Result<(), String> {
        if self.snapshot.as_ref().map(|s| s.id.end_offset.0) != Some(start as i64)
            || start < self.start
            || start > self.end()
        {
            return Err(format!(
                "log start moved to {start} without a snapshot there"
            ));
        }
        self.entries.drain(..start - self.start);
        self.start = start;
        self.synced = self.synced.max(start);
        Ok(())
    }

    fn snapshot_chunk(
        &mut self,
        id: SnapshotId,
        position: u64,
        bytes: Vec<u8>,
    ) -> Result<(), String> {
        if position == 0 {
            self.partial = Some((id, Vec::new()));
        }
        match &mut self.partial {
            Some((pid, buf)) if *pid == id && buf.len() as u64 == position => {
                buf.extend_from_slice(&bytes);
                Ok(())
            }
            _ => Err(format!("snapshot chunk {id:?} at {position} out of order")),
        }
    }

    fn install(&mut self, id: SnapshotId) -> Result<(), String> {
        let Some((pid, bytes)) = self.partial.take() else {
            return Err("install of a snapshot never fetched".to_string());
        };
        let (chain, voters) = parse_snapshot(id, &bytes)
            .filter(|_| pid == id)
            .ok_or_else(|| format!("installed snapshot {id:?} differs from the leader's"))?;
        let start = usize::try_from(id.end_offset.0).map_err(|_| "negative snapshot")?;
        self.snapshot = Some(SimSnapshot {
            id,
            chain,
            voters,
            bytes,
        });
        self.entries.clear();
        self.start = start;
        self.synced = start;
        self.flushes.clear();
        Ok(())
    }

    /// Chain hash of the entry at `k`: from the log, or from the snapshot
    /// for the entry just below the log start.
    fn chain_at(&self, k: usize) -> Option<u64> {
        if k.checked_add(1) == Some(self.start) {
            return self.snapshot.as_ref().map(|s| s.chain);
        }
        self.entries
            .get(k.checked_sub(self.start)?)
            .map(|d| d.chain)
    }

    fn entry_at(&self, k: usize) -> Option<&Entry> {
        self.entries
            .get(k.checked_sub(self.start)?)
            .map(|d| &d.entry)
    }

    /// The voter set in force below offset `end`: the latest VotersRecord
    /// there, else the snapshot's.
    fn voters_below(&self, end: usize) -> Option<Vec<VoterKey>> {
        let n = end.saturating_sub(self.start).min(self.entries.len());
        self.entries[..n]
            .iter()
            .rev()
            .find_map(|d| match &d.entry.data {
                EntryData::Voters(v) => Some(v.clone()),
                _ => None,
            })
            .or_else(|| self.snapshot.as_ref().and_then(|s| s.voters.clone()))
    }

    /// VotersRecords at or above offset `from`.
    fn voter_changes_from(&self, from: usize) -> usize {
        self.entries
            .iter()
            .skip(from.saturating_sub(self.start))
            .filter(|d| matches!(d.entry.data, EntryData::Voters(_)))
            .count()
    }

    /// Whether this disk holds the committed history up to entry `k`, in its
    /// log or in its snapshot.
    fn holds(&self, k: usize, history: &[Committed]) -> bool {
        let k = if k + 1 < self.start {
            self.start - 1
        } else {
            k
        };
        history
            .get(k)
            .is_some_and(|c| self.chain_at(k) == Some(c.chain))
    }
}

fn chain_hash(prev: u64, e: &Entry) -> u64 {
    let mut h = mix(prev ^ 0x5151) ^ mix(e.offset.0 as u64) ^ mix((e.epoch.0 as u64) << 1);
    match &e.data {
        EntryData::LeaderChange { leader_id, voters } => {
            h = mix(h ^ 0xC0 ^ leader_id.0 as u64);
            for v in voters {
                h = mix(h ^ v.0 as u64);
            }
        }
        EntryData::Data(bytes) => {
            h = mix(h ^ 0xDA);
            for b in bytes {
                h = mix(h ^ u64::from(*b));
            }
        }
        EntryData::Voters(voters) => {
            h = mix(h ^ 0x70);
            for v in voters {
                h = mix(h ^ v.id.0 as u64 ^ mix(v.directory_id as u64));
            }
        }
    }
    h
}

struct SimNode {
    node: Option<Node>,
    disk: Disk,
    clock_offset_ms: i64,
    clock_rate_ppm: i64,
    restart_at_ms: i64,
    incarnation: u64,
    hw_seen: Offset,
    last_role: Option<(RoleKind, LeaderEpoch, Option<NodeId>)>,
}

struct InFlight {
    deliver_at_ms: i64,
    env: Envelope,
}

struct Committed {
    chain: u64,
    /// Epoch of the node whose high watermark first covered the entry.
    epoch: LeaderEpoch,
    /// The workload's payload id, for a data entry.
    payload: Option<u64>,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    seed: u64,
    rng: Rng,
    time_ms: i64,
    step: usize,
    nodes: Vec<SimNode>,
    /// Voters first, then observers.
    ids: Vec<NodeId>,
    net: Vec<InFlight>,
    side: Vec<u8>,
    faults: bool,
    history: Vec<Committed>,
    leaders: BTreeMap<LeaderEpoch, NodeId>,
    next_payload: u64,
    /// Proposals accepted after healing: (offset, payload id).
    proposed_after_heal: Vec<(Offset, u64)>,
    /// The voter set in force at the end of the committed history.
    committed_voters: Vec<VoterKey>,
    report: SimReport,
    /// A message to a node that is down makes its sender hear that the
    /// node is unreachable ([`leader_kill`]).
    refuse_to_down: bool,
}

/// Runs one seed; `Err` names the broken invariant.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(seed, cfg);
    sim.run().map_err(|message| SimFailure {
        package: "fjord-raft",
        seed,
        step: sim.step,
        time_ms: sim.time_ms,
        message,
    })?;
    Ok(sim.report)
}

impl<'a> Sim<'a> {
    fn new(seed: u64, cfg: &'a SimConfig) -> Sim<'a> {
        let mut rng = Rng::new(mix(seed));
        let ids: Vec<NodeId> = (1..=cfg.voters as i32)
            .chain((101..).take(cfg.observers))
            .map(NodeId)
            .collect();
        let mut sim = Sim {
            cfg,
            seed,
            time_ms: 0,
            step: 0,
            nodes: Vec::new(),
            ids: ids.clone(),
            net: Vec::new(),
            side: vec![0; ids.len()],
            faults: true,
            history: Vec::new(),
            leaders: BTreeMap::new(),
            next_payload: 1,
            proposed_after_heal: Vec::new(),
            committed_voters: ids[..cfg.voters]
                .iter()
                .map(|id| VoterKey::new(*id, directory_of(*id)))
                .collect(),
            report: SimReport::default(),
            rng: Rng::new(0),
            refuse_to_down: false,
        };
        for _ in &ids {
            let clock_offset_ms = rng.range_i64(0, 10_000);
            let clock_rate_ppm = rng.range_i64(-20_000, 20_000);
            sim.nodes.push(SimNode {
                node: None,
                disk: Disk::default(),
                clock_offset_ms,
                clock_rate_ppm,
                restart_at_ms: 0,
                incarnation: 0,
                hw_seen: Offset(0),
                last_role: None,
            });
        }
        sim.rng = rng;
        for i in 0..sim.nodes.len() {
            sim.start_node(i);
        }
        sim
    }

    fn local_now(&self, i: usize) -> i64 {
        let n = &self.nodes[i];
        n.clock_offset_ms + self.time_ms * (1_000_000 + n.clock_rate_ppm) / 1_000_000
    }

    fn node_config(&self, i: usize) -> Config {
        let inc = self.nodes[i].incarnation;
        let mut c = Config::new(
            self.ids[i],
            Vec::new(),
            "sim-cluster".to_string(),
            mix(self.seed ^ mix(i as u64 + 1) ^ mix(inc << 20)),
        );
        c.voters = self.configured_voters(i);
        c.bootstrap = self.bootstrap_ids();
        c.directory_id = directory_of(self.ids[i]);
        c.reconfigurable = self.cfg.reconfigurable;
        c.election_timeout_ms = 100;
        c.election_backoff_max_ms = 50;
        c.fetch_timeout_ms = 200;
        c.request_timeout_ms = 60;
        c.fetch_idle_ms = 10;
        c.fetch_entries_max = 16;
        c.fetch_max_wait_ms = self.cfg.fetch_max_wait_ms;
        c.snapshot_chunk_bytes_max = 16;
        c.planted_bug = self.cfg.planted_bug;
        c
    }

    /// Node `i`'s configured voters: the static set, except for an observer
    /// of a reconfigurable quorum, which starts knowing no voter (a
    /// controller formatted with `--no-initial-controllers`) and finds the
    /// leader through the bootstrap servers.
    fn configured_voters(&self, i: usize) -> Vec<VoterKey> {
        if self.cfg.reconfigurable && i >= self.cfg.voters {
            Vec::new()
        } else {
            self.static_voters()
        }
    }

    /// `controller.quorum.bootstrap.servers` of a reconfigurable run: the
    /// configured voters' endpoints, which have no node id (Kafka's -2, -3,
    /// ...); [`Sim::deliver`] routes them to those nodes.
    fn bootstrap_ids(&self) -> Vec<NodeId> {
        if !self.cfg.reconfigurable {
            return Vec::new();
        }
        (0..self.cfg.voters)
            .map(|k| NodeId(-2 - k as i32))
            .collect()
    }

    /// The node behind an id: a node's own, or a bootstrap endpoint's.
    fn route(&self, id: NodeId) -> Option<usize> {
        if id.0 <= -2 && self.cfg.reconfigurable {
            let k = usize::try_from(-2 - id.0).ok()?;
            return (k < self.cfg.voters).then_some(k);
        }
        self.index_of(id)
    }

    /// The configured voters (the bootstrap set): the first `voters` nodes.
    fn static_voters(&self) -> Vec<VoterKey> {
        self.ids[..self.cfg.voters]
            .iter()
            .map(|id| VoterKey::new(*id, directory_of(*id)))
            .collect()
    }

    fn start_node(&mut self, i: usize) {
        self.nodes[i].incarnation += 1;
        let cfg = self.node_config(i);
        let now = self.local_now(i);
        let n = &mut self.nodes[i];
        let epochs = n.disk.entries.iter().map(|d| d.entry.epoch);
        let mut meta = match &n.disk.snapshot {
            Some(s) => LogMeta::from_snapshot(s.id, epochs),
            None => LogMeta::from_epochs(epochs),
        };
        // The voter set history, as a node reads it from its log at start.
        meta.set_snapshot_voters(n.disk.snapshot.as_ref().and_then(|s| s.voters.clone()));
        for d in &n.disk.entries {
            if let EntryData::Voters(v) = &d.entry.data {
                meta.record_voters(d.entry.offset, v.clone());
            }
        }
        n.disk.synced = n.disk.end();
        n.disk.partial = None;
        n.node = Some(Node::new(cfg, n.disk.state.clone(), meta, now));
        n.hw_seen = Offset(0);
    }

    fn crash(&mut self, i: usize) -> Result<(), String> {
        let down_ms = self.rng.range_i64(20, 400);
        let n = &mut self.nodes[i];
        let unsynced = n.disk.end() - n.disk.synced;
        let keep = n.disk.synced + self.rng.below(unsynced + 1);
        n.disk.truncate(keep)?;
        n.disk.flushes.clear();
        n.disk.partial = None;
        n.node = None;
        n.restart_at_ms = self.time_ms + down_ms;
        self.report.crashes += 1;
        self.trace(format!("crash node {} keeping {keep} entries", self.ids[i]));
        Ok(())
    }

    fn trace(&self, s: String) {
        if self.cfg.trace {
            eprintln!("[t={} step={}] {s}", self.time_ms, self.step);
        }
    }

    fn feed(&mut self, i: usize, input: Input) -> Result<(), String> {
        let now = self.local_now(i);
        let mut out = Vec::new();
        {
            let n = &mut self.nodes[i];
            let Some(node) = n.node.as_mut() else {
                return Ok(());
            };
            node.step(now, input, &n.disk, &mut out);
        }
        let installed = out.iter().any(|o| matches!(o, Output::InstallSnapshot(_)));
        for o in out {
            self.apply(i, o)?;
        }
        if installed {
            // The core reads the installed snapshot's voter set at its next
            // step; a real node steps again right away too.
            return self.feed(i, Input::Tick);
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, o: Output) -> Result<(), String> {
        match o {
            Output::PersistState(s) => self.nodes[i].disk.state = s,
            Output::Send(env) => self.send(env),
            Output::AppendAsLeader(e) => self.nodes[i].disk.push(e)?,
            Output::AppendAsFollower(es) => {
                for e in es {
                    self.nodes[i].disk.push(e)?;
                }
            }
            Output::TruncateTo(off) => {
                let len = usize::try_from(off.0).map_err(|_| "negative truncation")?;
                self.trace(format!("node {} truncates to {len}", self.ids[i]));
                self.nodes[i].disk.truncate(len)?;
            }
            Output::DeleteBefore(off) => {
                let start = usize::try_from(off.0).map_err(|_| "negative log start")?;
                self.nodes[i].disk.delete_before(start)?;
            }
            Output::SnapshotChunk {
                snapshot_id,
                position,
                bytes,
            } => self.nodes[i]
                .disk
                .snapshot_chunk(snapshot_id, position, bytes)?,
            Output::InstallSnapshot(id) => {
                self.trace(format!("node {} installs snapshot {id:?}", self.ids[i]));
                self.nodes[i].disk.install(id)?;
                self.report.snapshots_installed += 1;
            }
            Output::Flush => {
                let at = self.time_ms + self.rng.range_i64(0, self.cfg.flush_delay_max_ms);
                let len = self.nodes[i].disk.end();
                self.nodes[i].disk.flushes.push((at, len));
            }
            Output::Committed { high_watermark } => {
                self.trace(format!("node {} hw {high_watermark}", self.ids[i]));
            }
            Output::Proposed { offset, .. } => {
                if !self.faults {
                    self.proposed_after_heal
                        .push((offset, self.next_payload - 1));
                }
            }
            Output::ProposalRejected { .. } => {}
            Output::VotersProposed { offset, .. } => {
                self.trace(format!("node {} proposes voters at {offset}", self.ids[i]));
                self.report.voter_changes_proposed += 1;
            }
            Output::VoterChangeRejected {
                error_code,
                message,
            } => {
                self.trace(format!(
                    "node {} refuses a voter change: {error_code:?} {message}",
                    self.ids[i]
                ));
            }
        }
        Ok(())
    }

    fn send(&mut self, env: Envelope) {
        self.report.messages_sent += 1;
        let copies = if self.faults && self.rng.chance(self.cfg.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.faults && self.rng.chance(self.cfg.loss_ppm) {
                continue;
            }
            let deliver_at_ms = self.time_ms + self.rng.range_i64(1, self.cfg.delay_max_ms);
            self.net.push(InFlight {
                deliver_at_ms,
                env: env.clone(),
            });
        }
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        self.ids.iter().position(|x| *x == id)
    }

    fn run(&mut self) -> Result<(), String> {
        let mut heal_ms = None;
        loop {
            self.step += 1;
            if self.faults && self.step > self.cfg.fault_steps {
                self.heal();
                heal_ms = Some(self.time_ms);
            }
            if let Some(h) = heal_ms {
                if self.time_ms > h + self.cfg.liveness_ms {
                    return Err(format!(
                        "liveness: no proposal made after healing committed and reached \
                         every node within {} ms",
                        self.cfg.liveness_ms
                    ));
                }
            }
            self.advance()?;
            if let Some(h) = heal_ms {
                if let Some(offset) = self.committed_after_heal() {
                    if self.report.heal_to_commit_ms == 0 {
                        self.report.heal_to_commit_ms = self.time_ms - h;
                    }
                    // Convergence: every node, observers included, knows it.
                    let all_know = self.nodes.iter().all(|n| {
                        n.node
                            .as_ref()
                            .is_some_and(|node| node.high_watermark() > offset)
                    });
                    if all_know {
                        self.report.heal_to_converge_ms = self.time_ms - h;
                        self.report.steps = self.step;
                        self.report.committed = self.history.len();
                        self.report.epochs_with_leader = self.leaders.len();
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Time passes (1 to 8 ms): messages and flushes due arrive, every
    /// node ticks, the workload proposes, faults strike (while on), crashed
    /// nodes due restart, and the invariants are checked.
    fn advance(&mut self) -> Result<(), String> {
        self.time_ms += self.rng.range_i64(1, 8);
        self.deliver()?;
        self.complete_flushes()?;
        for i in 0..self.nodes.len() {
            self.feed(i, Input::Tick)?;
        }
        self.workload()?;
        self.change_voters()?;
        self.take_snapshot()?;
        if self.faults {
            self.inject_faults()?;
        }
        self.restart_due();
        self.check()
    }

    /// One step of [`leader_kill`] (no faults; the killed node never restarts).
    fn quiet_step(&mut self) -> Result<(), String> {
        self.step += 1;
        self.advance()
    }

    /// The live leader of the latest epoch, with that epoch.
    fn live_leader(&self) -> Option<(usize, LeaderEpoch)> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let n = self.nodes[i].node.as_ref()?;
                (n.role() == RoleKind::Leader).then_some((i, n.epoch()))
            })
            .max_by_key(|(_, e)| *e)
    }

    /// Whether every live observer follows node `l` in `epoch`.
    fn observers_follow(&self, l: usize, epoch: LeaderEpoch) -> bool {
        (self.cfg.voters..self.nodes.len()).all(|i| {
            self.nodes[i].node.as_ref().is_none_or(|n| {
                n.role() == RoleKind::Follower
                    && n.epoch() == epoch
                    && n.leader_id() == Some(self.ids[l])
            })
        })
    }

    fn leader_kill(&mut self) -> Result<LeaderKillReport, String> {
        const SETTLE_MS: i64 = 1_000;
        const LIMIT_MS: i64 = 10_000;
        let (killed, old_epoch) = loop {
            self.quiet_step()?;
            if self.time_ms > LIMIT_MS {
                return Err("no leader every observer follows".into());
            }
            match self.live_leader() {
                Some((l, e)) if self.time_ms >= SETTLE_MS && self.observers_follow(l, e) => {
                    break (l, e)
                }
                _ => {}
            }
        };
        let killed_at = self.time_ms;
        self.nodes[killed].node = None;
        self.nodes[killed].restart_at_ms = i64::MAX;
        self.trace(format!("kill leader {}", self.ids[killed]));
        // Its sockets close: every node connected to it hears so at once.
        for i in 0..self.nodes.len() {
            self.feed(i, Input::PeerUnreachable(self.ids[killed]))?;
        }
        let mut report = LeaderKillReport::default();
        loop {
            self.quiet_step()?;
            let since = self.time_ms - killed_at;
            if since > LIMIT_MS {
                return Err(format!(
                    "after the leader's kill: {report:?} within {LIMIT_MS} ms"
                ));
            }
            let Some((l, e)) = self.live_leader().filter(|(_, e)| *e > old_epoch) else {
                continue;
            };
            if report.elected_ms == 0 {
                report.elected_ms = since;
            }
            if self.observers_follow(l, e) {
                report.observers_follow_ms = since;
                return Ok(report);
            }
        }
    }

    fn heal(&mut self) {
        self.faults = false;
        self.side.iter_mut().for_each(|s| *s = 0);
        for n in &mut self.nodes {
            n.restart_at_ms = self.time_ms;
        }
        self.trace("heal".to_string());
    }

    /// The first committed proposal made after healing.
    fn committed_after_heal(&self) -> Option<Offset> {
        self.proposed_after_heal
            .iter()
            .filter(|(offset, id)| {
                usize::try_from(offset.0)
                    .ok()
                    .and_then(|i| self.history.get(i))
                    .is_some_and(|c| c.payload == Some(*id))
            })
            .map(|(offset, _)| *offset)
            .min()
    }

    /// Now and then a node's state machine snapshots a committed prefix it
    /// holds (within the history the checker has seen) and tells the node.
    fn take_snapshot(&mut self) -> Result<(), String> {
        if !self.rng.chance(self.cfg.snapshot_ppm) {
            return Ok(());
        }
        let i = self.rng.below(self.nodes.len());
        let Some(node) = self.nodes[i].node.as_ref() else {
            return Ok(());
        };
        let disk = &self.nodes[i].disk;
        let hw = usize::try_from(node.high_watermark().0).unwrap_or(0);
        let top = hw.min(self.history.len());
        if top <= disk.start {
            return Ok(());
        }
        let end = disk.start + 1 + self.rng.below(top - disk.start);
        let (Some(entry), Some(chain)) = (disk.entry_at(end - 1), disk.chain_at(end - 1)) else {
            return Err(format!(
                "node {}: no entry below its snapshot end {end}",
                self.ids[i]
            ));
        };
        let id = SnapshotId {
            end_offset: Offset(end as i64),
            epoch: entry.epoch,
        };
        self.trace(format!("node {} takes snapshot {id:?}", self.ids[i]));
        let voters = self.nodes[i].disk.voters_below(end);
        self.nodes[i].disk.snapshot = Some(SimSnapshot {
            id,
            chain,
            bytes: snapshot_bytes(id, chain, voters.as_deref()),
            voters,
        });
        self.report.snapshots_taken += 1;
        self.feed(i, Input::SnapshotTaken(id))
    }

    fn deliver(&mut self) -> Result<(), String> {
        let now = self.time_ms;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].deliver_at_ms <= now {
                due.push(self.net.swap_remove(i).env);
            } else {
                i += 1;
            }
        }
        // Shuffle what is due: delivery order is not send order.
        for k in (1..due.len()).rev() {
            let j = self.rng.below(k + 1);
            due.swap(k, j);
        }
        for env in due {
            let (Some(from), Some(to)) = (self.index_of(env.from), self.route(env.to)) else {
                continue;
            };
            if self.side[from] != self.side[to] {
                continue;
            }
            if self.refuse_to_down && self.nodes[to].node.is_none() {
                self.feed(from, Input::PeerUnreachable(self.ids[to]))?;
                continue;
            }
            // A request to a bootstrap endpoint reaches the node behind it.
            let env = Envelope {
                to: self.ids[to],
                ..env
            };
            self.feed(to, Input::Receive(env))?;
        }
        Ok(())
    }

    fn complete_flushes(&mut self) -> Result<(), String> {
        let now = self.time_ms;
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                continue;
            }
            let disk = &mut self.nodes[i].disk;
            let done: Vec<usize> = disk
                .flushes
                .iter()
                .filter(|f| f.0 <= now)
                .map(|f| f.1)
                .collect();
            if done.is_empty() {
                continue;
            }
            disk.flushes.retain(|f| f.0 > now);
            let reach = done.into_iter().max().unwrap_or(0);
            disk.synced = disk.synced.max(reach).min(disk.end());
            let end_offset = Offset(disk.synced as i64);
            self.feed(i, Input::Flushed { end_offset })?;
        }
        Ok(())
    }

    /// The live leader of the newest epoch, if any.
    fn newest_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let n = self.nodes[i].node.as_ref()?;
                (n.role() == RoleKind::Leader).then_some((n.epoch(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn workload(&mut self) -> Result<(), String> {
        if !self.rng.chance(if self.faults { 300_000 } else { 500_000 }) {
            return Ok(());
        }
        // Mostly to a live leader (the newest), sometimes to anyone.
        let target = match self.newest_leader() {
            Some(i) if !self.rng.chance(100_000) => i,
            _ => self.rng.below(self.nodes.len()),
        };
        let id = self.next_payload;
        self.next_payload += 1;
        self.feed(target, Input::Propose(id.to_le_bytes().to_vec()))
    }

    /// Now and then the newest live leader is asked to add a node that is
    /// not a voter or to remove a voter (at least one stays), under faults
    /// and after healing alike.
    fn change_voters(&mut self) -> Result<(), String> {
        if !self.cfg.reconfigurable || !self.rng.chance(self.cfg.voter_change_ppm) {
            return Ok(());
        }
        let Some(i) = self.newest_leader() else {
            return Ok(());
        };
        let Some(node) = self.nodes[i].node.as_ref() else {
            return Ok(());
        };
        let mut voters = node.voters().to_vec();
        let outside: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|id| !voters.iter().any(|v| v.id == *id))
            .collect();
        if voters.len() > 1 && (outside.is_empty() || self.rng.chance(500_000)) {
            let k = self.rng.below(voters.len());
            // Not the leader out of two voters: if the one left lost the
            // unsynced VotersRecord in a crash it would need the removed
            // leader's vote, which a longer log refuses, and the removed
            // leader no longer stands (a liveness gap; Kafka's RemoveVoterHandler
            // and LeaderState, as read, do not avoid it either).
            if voters.len() == 2 && voters[k].id == self.ids[i] {
                return Ok(());
            }
            voters.remove(k);
        } else if !outside.is_empty() {
            let id = outside[self.rng.below(outside.len())];
            voters.push(VoterKey::new(id, directory_of(id)));
        }
        self.trace(format!(
            "ask node {} to change the voters to {:?}",
            self.ids[i],
            voters.iter().map(|v| v.id.0).collect::<Vec<_>>()
        ));
        self.feed(i, Input::ChangeVoters(voters))
    }

    fn inject_faults(&mut self) -> Result<(), String> {
        if self.rng.chance(self.cfg.crash_ppm) {
            let i = self.rng.below(self.nodes.len());
            if self.nodes[i].node.is_some() {
                self.crash(i)?;
                // Its sockets close: the others may see it refuse them.
                for j in 0..self.nodes.len() {
                    if j != i && self.rng.chance(500_000) {
                        self.feed(j, Input::PeerUnreachable(self.ids[i]))?;
                    }
                }
            }
        }
        if self.rng.chance(self.cfg.unreachable_ppm) {
            // A connection fails though the peer lives (say a reset).
            let (i, j) = (
                self.rng.below(self.nodes.len()),
                self.rng.below(self.nodes.len()),
            );
            self.feed(i, Input::PeerUnreachable(self.ids[j]))?;
        }
        if self.rng.chance(self.cfg.partition_ppm) {
            for s in self.side.iter_mut() {
                *s = u8::from(self.rng.chance(500_000));
            }
            self.trace(format!("partition {:?}", self.side));
        } else if self.rng.chance(self.cfg.heal_ppm) {
            self.side.iter_mut().for_each(|s| *s = 0);
        }
        Ok(())
    }

    fn restart_due(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() && self.nodes[i].restart_at_ms <= self.time_ms {
                self.trace(format!("restart node {}", self.ids[i]));
                self.start_node(i);
            }
        }
    }

    fn check(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            let configured = self.configured_voters(i);
            let Some(node) = self.nodes[i].node.as_ref() else {
                continue;
            };
            let id = self.ids[i];
            let disk = &self.nodes[i].disk;
            if node.log().end().0 != disk.end() as i64 || node.log().start().0 != disk.start as i64
            {
                return Err(format!(
                    "node {id}: core log [{}, {}) != disk [{}, {})",
                    node.log().start(),
                    node.log().end(),
                    disk.start,
                    disk.end()
                ));
            }
            if node.refused_truncations() > 0 {
                return Err(format!(
                    "node {id}: was asked to truncate below its high watermark"
                ));
            }
            // The voter set in force is the latest VotersRecord on the
            // node's disk, else its snapshot's, else the configured one.
            let expected = disk.voters_below(disk.end()).unwrap_or(configured);
            if node.voters() != expected.as_slice() {
                return Err(format!(
                    "node {id}: voter set {:?}, but its log says {:?}",
                    node.voters(),
                    expected
                ));
            }
            let in_set = expected.iter().any(|v| v.matches(id, directory_of(id)));
            if node.is_voter() != in_set {
                return Err(format!("node {id}: wrong voter status"));
            }
            // A node outside the voter set never stands; a leader may stay
            // in office outside it only until its removal commits.
            if !in_set && matches!(node.role(), RoleKind::Candidate | RoleKind::Prospective) {
                return Err(format!(
                    "observer {id} stands for election: {:?}",
                    node.role()
                ));
            }
            // Election safety and leader completeness.
            if node.role() == RoleKind::Leader {
                let epoch = node.epoch();
                match self.leaders.get(&epoch) {
                    Some(other) if *other != id => {
                        return Err(format!("two leaders in epoch {epoch}: {other} and {id}"));
                    }
                    Some(_) => {}
                    None => {
                        self.trace(format!("node {id} leads epoch {epoch}"));
                        if let Some(k) = self.history.iter().rposition(|c| c.epoch < epoch) {
                            if !disk.holds(k, &self.history) {
                                return Err(format!(
                                    "leader {id} of epoch {epoch} lacks committed entry {k}"
                                ));
                            }
                        }
                        self.leaders.insert(epoch, id);
                    }
                }
            }
            // High watermark: monotonic per incarnation, within the log.
            let role = Some((node.role(), node.epoch(), node.voted_id()));
            if self.cfg.trace && role != self.nodes[i].last_role {
                self.trace(format!(
                    "node {id}: {role:?} log [{}, {})",
                    node.log().start(),
                    node.log().end()
                ));
            }
            let hw = node.high_watermark();
            if hw < self.nodes[i].hw_seen {
                return Err(format!(
                    "node {id}: high watermark went back {} -> {hw}",
                    self.nodes[i].hw_seen
                ));
            }
            let hw_len = usize::try_from(hw.0).map_err(|_| format!("node {id}: negative hw"))?;
            if hw_len > disk.end() || hw_len < disk.start {
                return Err(format!(
                    "node {id}: high watermark {hw} outside its log [{}, {})",
                    disk.start,
                    disk.end()
                ));
            }
            // State machine safety (through snapshots: a snapshot carries
            // the chain hash of the prefix it replaces).
            if hw_len > 0 {
                let k = hw_len - 1;
                if k < self.history.len() {
                    if !disk.holds(k, &self.history) {
                        return Err(format!(
                            "node {id}: committed entry {k} differs from the committed history"
                        ));
                    }
                } else {
                    let start = self.history.len();
                    if start < disk.start {
                        return Err(format!(
                            "node {id}: snapshot at {} beyond the committed history {start}",
                            disk.start
                        ));
                    }
                    if start > 0 && !disk.holds(start - 1, &self.history) {
                        return Err(format!(
                            "node {id}: log below its high watermark differs from history"
                        ));
                    }
                    let epoch = node.epoch();
                    for k in start..hw_len {
                        let (Some(chain), Some(entry)) = (disk.chain_at(k), disk.entry_at(k))
                        else {
                            return Err(format!("node {id}: no entry {k} below its hw"));
                        };
                        let payload = match &entry.data {
                            EntryData::Data(b) => {
                                b.as_slice().try_into().ok().map(u64::from_le_bytes)
                            }
                            EntryData::LeaderChange { .. } => None,
                            EntryData::Voters(v) => {
                                self.committed_voters = v.clone();
                                self.report.voter_changes_committed += 1;
                                None
                            }
                        };
                        self.history.push(Committed {
                            chain,
                            epoch,
                            payload,
                        });
                    }
                }
            }
            // At most one voter change is not committed, in any log.
            let disk = &self.nodes[i].disk;
            if disk.voter_changes_from(self.history.len()) > 1 {
                return Err(format!(
                    "node {id}: two voter changes above the committed offset {}",
                    self.history.len()
                ));
            }
            self.nodes[i].hw_seen = hw;
            self.nodes[i].last_role = role;
        }
        if self.nodes.iter().any(|n| {
            n.node
                .as_ref()
                .is_some_and(|x| x.held_fetch_deadline_ms().is_some())
        }) {
            self.report.steps_with_held_fetch += 1;
        }
        // Durability: every majority of the voter set in force at the end of
        // the committed history, and of any voter set appended above it (not
        // committed, maybe never), includes a disk (log or snapshot) that
        // holds the committed history: whoever such a majority elects holds
        // it. For an odd-sized set that is "a majority holds it"; with a
        // voter change in flight the entries the new set committed are on a
        // majority of the new set, which meets every majority of the old one.
        if !self.history.is_empty() {
            let k = self.history.len() - 1;
            let mut sets = vec![self.committed_voters.clone()];
            for n in &self.nodes {
                let from = self.history.len().saturating_sub(n.disk.start);
                for d in n.disk.entries.iter().skip(from) {
                    if let EntryData::Voters(v) = &d.entry.data {
                        sets.push(v.clone());
                    }
                }
            }
            for set in &sets {
                let holders = self
                    .nodes
                    .iter()
                    .zip(&self.ids)
                    .filter(|(n, id)| {
                        set.iter().any(|v| v.id == **id) && n.disk.holds(k, &self.history)
                    })
                    .count();
                let majority = set.len() / 2 + 1;
                if holders + majority <= set.len() {
                    return Err(format!(
                        "committed entry {k} is on only {holders} disks of the voter set {:?}",
                        set.iter().map(|v| v.id.0).collect::<Vec<_>>()
                    ));
                }
            }
        }
        // Log matching (over the offsets both logs hold).
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                let (da, db) = (&self.nodes[a].disk, &self.nodes[b].disk);
                let lo = da.start.max(db.start);
                let hi = da.end().min(db.end());
                if let Some(k) = (lo..hi)
                    .rev()
                    .find(|&k| da.entry_at(k).map(|e| e.epoch) == db.entry_at(k).map(|e| e.epoch))
                {
                    if da.chain_at(k) != db.chain_at(k) {
                        return Err(format!(
                            "log matching: nodes {} and {} agree on epoch at offset {k} but not on the prefix",
                            self.ids[a], self.ids[b]
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
