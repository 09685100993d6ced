//! Seeded simulation: clients join, sync, heartbeat, commit, leave, crash and
//! restart at random times; invariants are checked after every step.
//! `FJORD_SIM_SEEDS` sets how many seeds run (default 40).

use std::collections::{BTreeMap, BTreeSet};

use super::tests::{protocols, REBALANCE_MS, SESSION_MS};
use super::*;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Idle,
    /// Join in flight (possibly held).
    Joining,
    /// Sync in flight.
    Syncing,
    Stable,
    /// Crashed: sends nothing; responses are dropped.
    Crashed,
}

#[derive(Clone, Debug)]
struct Client {
    instance: Option<String>,
    member_id: String,
    generation: i32,
    phase: Phase,
    /// Only the first `n` protocols of ["range", "roundrobin"]; varied to exercise votes.
    protocols: Vec<&'static str>,
    /// Highest generation this client ever saw in a successful response.
    seen_generation: i32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Join,
    Sync,
}

struct Sim {
    rng: XorShift,
    c: GroupCoordinator,
    now: i64,
    clients: Vec<Client>,
    next_token: u64,
    outstanding: BTreeMap<u64, (usize, Kind)>,
    /// generation → (leader, protocol) seen in successful join responses.
    generations: BTreeMap<i32, (String, Option<String>)>,
    /// generation → identity (instance id or member id) → assignment sent by the leader.
    assigned: BTreeMap<i32, BTreeMap<String, Bytes>>,
    /// generation → identities in the leader's member list.
    leader_members: BTreeMap<i32, BTreeMap<String, String>>,
    /// Every record persisted, for a replay check at the end.
    persisted: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let delay = if rng.below(2) == 0 { 0 } else { 3_000 };
        let cfg = GroupConfig {
            initial_rebalance_delay_ms: delay,
            offsets_retention_check_interval_ms: 60_000,
            member_id_seed: seed,
            ..GroupConfig::default()
        };
        let clients = (0..5)
            .map(|i| Client {
                instance: (i % 2 == 0).then(|| format!("static-{i}")),
                member_id: String::new(),
                generation: -1,
                phase: Phase::Idle,
                protocols: if i == 3 {
                    vec!["roundrobin", "range"]
                } else {
                    vec!["range", "roundrobin"]
                },
                seen_generation: -1,
            })
            .collect();
        Sim {
            rng,
            c: GroupCoordinator::new(cfg),
            now: 0,
            clients,
            next_token: 0,
            outstanding: BTreeMap::new(),
            generations: BTreeMap::new(),
            assigned: BTreeMap::new(),
            leader_members: BTreeMap::new(),
            persisted: Vec::new(),
        }
    }

    fn token(&mut self, client: usize, kind: Kind) -> RequestToken {
        self.next_token += 1;
        self.outstanding.insert(self.next_token, (client, kind));
        RequestToken(self.next_token)
    }

    fn join(&mut self, i: usize) {
        let t = self.token(i, Kind::Join);
        let cl = &self.clients[i];
        let req = JoinRequest {
            group_id: "g".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            member_id: cl.member_id.clone(),
            group_instance_id: cl.instance.clone(),
            protocol_type: "consumer".into(),
            protocols: protocols(&cl.protocols, &["t"]),
            require_known_member_id: cl.instance.is_none(),
            client_id: format!("c{i}"),
            client_host: "/127.0.0.1".into(),
        };
        self.clients[i].phase = Phase::Joining;
        let mut out = Vec::new();
        self.c.join(t, req, self.now, &mut out);
        self.apply(out);
    }

    fn sync(&mut self, i: usize, assignments: Vec<(String, Bytes)>) {
        let t = self.token(i, Kind::Sync);
        let cl = &self.clients[i];
        let req = SyncRequest {
            group_id: "g".into(),
            generation_id: cl.generation,
            member_id: cl.member_id.clone(),
            group_instance_id: cl.instance.clone(),
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments,
        };
        self.clients[i].phase = Phase::Syncing;
        let mut out = Vec::new();
        self.c.sync(t, req, self.now, &mut out);
        self.apply(out);
    }

    fn reset(&mut self, i: usize) {
        let cl = &mut self.clients[i];
        cl.phase = Phase::Idle;
        cl.generation = -1;
        if cl.instance.is_none() {
            cl.member_id.clear();
        } else {
            // A static member rejoins fresh (like a restart) with its instance id.
            cl.member_id.clear();
        }
    }

    fn apply(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Persist { key, value, .. } => self.persisted.push((key, value)),
                Output::Join(t, r) => {
                    let (i, kind) = self
                        .outstanding
                        .remove(&t.0)
                        .unwrap_or_else(|| panic!("token {t:?} answered twice or never issued"));
                    assert_eq!(kind, Kind::Join);
                    self.on_join(i, r);
                }
                Output::Sync(t, r) => {
                    let (i, kind) = self
                        .outstanding
                        .remove(&t.0)
                        .unwrap_or_else(|| panic!("token {t:?} answered twice or never issued"));
                    assert_eq!(kind, Kind::Sync);
                    self.on_sync(i, r);
                }
            }
        }
    }

    fn on_join(&mut self, i: usize, r: JoinResponse) {
        if self.clients[i].phase != Phase::Joining {
            return; // crashed or superseded
        }
        if r.error == ErrorCode::MEMBER_ID_REQUIRED {
            self.clients[i].member_id = r.member_id;
            self.join(i);
            return;
        }
        if r.error != ErrorCode::NONE {
            self.reset(i);
            return;
        }
        assert!(r.generation_id >= self.clients[i].seen_generation);
        self.clients[i].seen_generation = r.generation_id;
        match self.generations.get(&r.generation_id) {
            // A restarted static member of a Stable group is told the leader as it was.
            Some((leader, protocol)) => {
                assert_eq!(protocol, &r.protocol_name, "one protocol per generation");
                if r.leader != *leader {
                    assert!(
                        self.clients[i].instance.is_some(),
                        "one leader per generation"
                    );
                }
            }
            None => {
                self.generations
                    .insert(r.generation_id, (r.leader.clone(), r.protocol_name.clone()));
            }
        }
        let cl = &mut self.clients[i];
        cl.member_id = r.member_id.clone();
        cl.generation = r.generation_id;
        if r.leader == r.member_id && !r.members.is_empty() {
            // Leader: assign each member its own identity (distinct bytes).
            let mut assignments = Vec::new();
            let mut sent = BTreeMap::new();
            let mut identities = BTreeMap::new();
            for m in &r.members {
                let identity = m.group_instance_id.clone().unwrap_or(m.member_id.clone());
                let bytes = Bytes::from(format!("{}@{}", identity, r.generation_id));
                assignments.push((m.member_id.clone(), bytes.clone()));
                sent.insert(identity.clone(), bytes);
                identities.insert(m.member_id.clone(), identity);
            }
            self.leader_members.insert(r.generation_id, identities);
            if self.rng.below(10) != 0 {
                self.assigned.insert(r.generation_id, sent);
                self.sync(i, assignments);
            } else {
                // Sometimes the leader is slow to sync: stays in Joining-done state.
                self.clients[i].phase = Phase::Stable;
            }
        } else if self.rng.below(10) != 0 {
            self.sync(i, Vec::new());
        } else {
            self.clients[i].phase = Phase::Stable;
        }
    }

    fn on_sync(&mut self, i: usize, r: SyncResponse) {
        if self.clients[i].phase != Phase::Syncing {
            return;
        }
        if r.error != ErrorCode::NONE {
            if r.error == ErrorCode::REBALANCE_IN_PROGRESS {
                self.join(i);
            } else {
                self.reset(i);
            }
            return;
        }
        let cl = &self.clients[i];
        let identity = cl.instance.clone().unwrap_or(cl.member_id.clone());
        let expected = self
            .assigned
            .get(&cl.generation)
            .and_then(|a| a.get(&identity))
            .cloned()
            .unwrap_or_default();
        assert_eq!(r.assignment, expected, "assignment is what the leader sent");
        self.clients[i].phase = Phase::Stable;
    }

    fn step(&mut self) {
        self.now += self.rng.below(2_500) as i64;
        let mut out = Vec::new();
        self.c.tick(self.now, &mut out);
        assert!(
            self.c.next_deadline_ms().is_none_or(|d| d > self.now),
            "tick left something due at {}: {:?}",
            self.now,
            self.c.debug_deadlines()
        );
        self.apply(out);
        let i = self.rng.below(self.clients.len() as u64) as usize;
        let action = self.rng.below(100);
        match self.clients[i].phase.clone() {
            Phase::Idle => {
                if action < 60 {
                    self.join(i);
                }
            }
            Phase::Crashed => {
                if action < 10 {
                    self.reset(i);
                    self.join(i);
                }
            }
            Phase::Joining | Phase::Syncing => {
                if action < 3 {
                    self.clients[i].phase = Phase::Crashed;
                }
            }
            Phase::Stable => match action {
                0..=59 => {
                    let cl = &self.clients[i];
                    let req = HeartbeatRequest {
                        group_id: "g".into(),
                        generation_id: cl.generation,
                        member_id: cl.member_id.clone(),
                        group_instance_id: cl.instance.clone(),
                    };
                    let mut out = Vec::new();
                    let e = self.c.heartbeat(req, self.now, &mut out);
                    self.apply(out);
                    if e == ErrorCode::NONE {
                        let (_, generation, _) = self.c.group_summary("g").expect("group");
                        assert_eq!(self.clients[i].generation, generation);
                    } else if e == ErrorCode::REBALANCE_IN_PROGRESS {
                        self.join(i);
                    } else {
                        self.reset(i);
                    }
                }
                60..=74 => {
                    let cl = &self.clients[i];
                    let req = CommitRequest {
                        group_id: "g".into(),
                        generation_id: cl.generation,
                        member_id: cl.member_id.clone(),
                        group_instance_id: cl.instance.clone(),
                        topics: vec![CommitTopic {
                            name: "t".into(),
                            partitions: vec![CommitPartition {
                                partition: PartitionIndex(i as i32),
                                offset: Offset(self.now),
                                leader_epoch: LeaderEpoch(-1),
                                metadata: None,
                            }],
                        }],
                    };
                    let mut out = Vec::new();
                    let r = self.c.commit_offsets(req, self.now, &mut out);
                    self.apply(out);
                    if r[0].partitions[0].1 == ErrorCode::NONE {
                        let f = self.c.fetch_offsets("g", None);
                        assert!(f.topics[0]
                            .partitions
                            .iter()
                            .any(|p| p.partition.0 == i as i32 && p.offset.0 == self.now));
                    }
                }
                75..=79 => {
                    let cl = &self.clients[i];
                    let m = LeaveMember {
                        member_id: cl.member_id.clone(),
                        group_instance_id: cl.instance.clone(),
                    };
                    let mut out = Vec::new();
                    self.c.leave("g", vec![m], self.now, &mut out);
                    self.apply(out);
                    self.reset(i);
                }
                80..=84 => self.clients[i].phase = Phase::Crashed,
                85..=89 => self.join(i), // rejoin with the same id (e.g. after poll timeout)
                _ => {}
            },
        }
        self.check();
    }

    fn check(&self) {
        self.c.check_invariants();
        let Some((state, generation, members)) = self.c.group_summary("g") else {
            return;
        };
        if let Some(max_seen) = self.generations.keys().next_back() {
            assert!(*max_seen <= generation, "no client is ahead of the group");
        }
        let unique: BTreeSet<_> = members.iter().collect();
        assert_eq!(unique.len(), members.len());
        if state == GroupState::Stable {
            // Every member has the assignment the leader sent for it.
            let d = &self.c.describe(&["g".to_string()])[0];
            let sent = self.assigned.get(&generation);
            let identities = self.leader_members.get(&generation);
            assert!(sent.is_some(), "Stable only after the leader's SyncGroup");
            for m in &d.members {
                let identity = m.group_instance_id.clone().unwrap_or(m.member_id.clone());
                let want = sent
                    .and_then(|s| s.get(&identity))
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(
                    m.assignment, want,
                    "member {} in generation {generation}",
                    m.member_id
                );
            }
            // Membership is the leader's list (static members may have new ids).
            let listed: BTreeSet<String> = identities
                .map(|ids| ids.values().cloned().collect())
                .unwrap_or_default();
            let now: BTreeSet<String> = d
                .members
                .iter()
                .map(|m| m.group_instance_id.clone().unwrap_or(m.member_id.clone()))
                .collect();
            assert_eq!(listed, now, "Stable membership = generation's members");
        }
    }

    /// Let time run with every client silent: every held request gets its answer.
    fn drain(&mut self) {
        for c in &mut self.clients {
            c.phase = Phase::Crashed;
        }
        for _ in 0..50 {
            self.now += 10_000;
            let mut out = Vec::new();
            self.c.tick(self.now, &mut out);
            self.apply(out);
            self.check();
        }
        assert!(
            self.outstanding.is_empty(),
            "held requests never answered: {:?}",
            self.outstanding
        );
        let (state, _, members) =
            self.c
                .group_summary("g")
                .unwrap_or((GroupState::Empty, 0, vec![]));
        assert_eq!(state, GroupState::Empty);
        assert!(members.is_empty());
    }
}

#[test]
fn random_schedules_keep_invariants() {
    let seeds: u64 = std::env::var("FJORD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut stable_generations = 0usize;
    for seed in 1..=seeds {
        let mut sim = Sim::new(seed);
        for _ in 0..2_000 {
            sim.step();
        }
        stable_generations += sim.assigned.len();
        // Replay of everything persisted gives the same offsets.
        let mut fresh = GroupCoordinator::new(GroupConfig::default());
        for (k, v) in &sim.persisted {
            fresh.replay(k, v.as_deref()).expect("own records decode");
        }
        fresh.finish_replay(sim.now);
        fresh.check_invariants();
        assert_eq!(
            fresh.fetch_offsets("g", None),
            sim.c.fetch_offsets("g", None)
        );
        sim.drain();
    }
    assert!(
        stable_generations > seeds as usize * 10,
        "the schedules reach Stable often"
    );
}
