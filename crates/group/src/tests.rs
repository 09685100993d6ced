//! Unit tests of every coordinator transition, driven by events and time.

use super::*;

pub(crate) const SESSION_MS: i32 = 10_000;
pub(crate) const REBALANCE_MS: i32 = 30_000;

/// A consumer-protocol subscription to `topics` (version 0, no user data).
pub(crate) fn sub(topics: &[&str]) -> Bytes {
    let mut b = vec![0u8, 0];
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

pub(crate) fn protocols(names: &[&str], topics: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: sub(topics),
        })
        .collect()
}

struct H {
    c: GroupCoordinator,
    out: Vec<Output>,
    token: u64,
    now: i64,
}

fn cfg_no_delay() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

impl H {
    fn new(cfg: GroupConfig) -> H {
        H {
            c: GroupCoordinator::new(cfg),
            out: Vec::new(),
            token: 0,
            now: 1_000,
        }
    }

    fn req(&self, member_id: &str, instance: Option<&str>, protos: Vec<Protocol>) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_owned),
            protocol_type: "consumer".into(),
            protocols: protos,
            require_known_member_id: instance.is_none(),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn join_req(&mut self, req: JoinRequest) -> RequestToken {
        self.token += 1;
        let t = RequestToken(self.token);
        self.c.join(t, req, self.now, &mut self.out);
        self.c.check_invariants();
        t
    }

    /// Join with the default protocols, dynamic member.
    fn join(&mut self, member_id: &str) -> RequestToken {
        let r = self.req(member_id, None, protocols(&["range"], &["t"]));
        self.join_req(r)
    }

    /// A brand-new dynamic member: MEMBER_ID_REQUIRED round trip, then the join is sent.
    fn join_new(&mut self) -> (String, RequestToken) {
        let t = self.join("");
        let r = self
            .take_join(t)
            .expect("MEMBER_ID_REQUIRED answered at once");
        assert_eq!(r.error, ErrorCode::MEMBER_ID_REQUIRED);
        assert!(!r.member_id.is_empty());
        let t2 = self.join(&r.member_id);
        (r.member_id, t2)
    }

    fn take_join(&mut self, t: RequestToken) -> Option<JoinResponse> {
        let pos = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Join(tt, _) if *tt == t))?;
        match self.out.remove(pos) {
            Output::Join(_, r) => Some(r),
            _ => None,
        }
    }

    fn take_sync(&mut self, t: RequestToken) -> Option<SyncResponse> {
        let pos = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Sync(tt, _) if *tt == t))?;
        match self.out.remove(pos) {
            Output::Sync(_, r) => Some(r),
            _ => None,
        }
    }

    fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> RequestToken {
        self.token += 1;
        let t = RequestToken(self.token);
        let req = SyncRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        };
        self.c.sync(t, req, self.now, &mut self.out);
        self.c.check_invariants();
        t
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> ErrorCode {
        let e = self.c.heartbeat(
            HeartbeatRequest {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
            },
            self.now,
            &mut self.out,
        );
        self.c.check_invariants();
        e
    }

    fn tick_to(&mut self, now: i64) {
        self.now = now;
        self.c.tick(now, &mut self.out);
        self.c.check_invariants();
    }

    fn commit(
        &mut self,
        member: &str,
        generation: i32,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> ErrorCode {
        let r = self.c.commit_offsets(
            CommitRequest {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
                topics: vec![CommitTopic {
                    name: topic.into(),
                    partitions: vec![CommitPartition {
                        partition: PartitionIndex(partition),
                        offset: Offset(offset),
                        leader_epoch: LeaderEpoch(3),
                        metadata: Some("md".into()),
                    }],
                }],
            },
            self.now,
            &mut self.out,
        );
        self.c.check_invariants();
        r[0].partitions[0].1
    }

    fn fetch(&self, topic: &str, partition: i32) -> FetchedOffset {
        let r = self.c.fetch_offsets(
            "g",
            Some(&[TopicPartitions {
                name: topic.into(),
                partitions: vec![PartitionIndex(partition)],
            }]),
        );
        r.topics[0].partitions[0].clone()
    }

    fn state(&self) -> (GroupState, i32, Vec<String>) {
        self.c.group_summary("g").expect("group exists")
    }

    fn persisted(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Persist { key, value, .. } => Some((key.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    /// Two members A (leader) and B in a Stable group at generation 1, with assignments.
    fn stable_pair(&mut self) -> (String, String) {
        let (a, ta) = self.join_new();
        let ra = self
            .take_join(ta)
            .expect("A alone completes (no initial delay)");
        assert_eq!(ra.generation_id, 1);
        let ts = self.sync(&a, 1, vec![(a.clone(), Bytes::from_static(b"all"))]);
        assert_eq!(
            self.take_sync(ts).unwrap().assignment,
            Bytes::from_static(b"all")
        );
        let (b, tb) = self.join_new();
        assert!(self.take_join(tb).is_none(), "B held until A rejoins");
        assert_eq!(self.heartbeat(&a, 1), ErrorCode::REBALANCE_IN_PROGRESS);
        let ta = self.join(&a);
        let ra = self.take_join(ta).unwrap();
        let rb = self.take_join(tb).unwrap();
        assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
        let tsb = self.sync(&b, 2, vec![]);
        let tsa = self.sync(
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
        );
        assert_eq!(
            self.take_sync(tsa).unwrap().assignment,
            Bytes::from_static(b"A")
        );
        assert_eq!(
            self.take_sync(tsb).unwrap().assignment,
            Bytes::from_static(b"B")
        );
        assert_eq!(self.state().0, GroupState::Stable);
        (a, b)
    }
}

#[test]
fn single_member_join_with_member_id_required() {
    let mut h = H::new(cfg_no_delay());
    let t = h.join("");
    let r = h.take_join(t).unwrap();
    assert_eq!(r.error, ErrorCode::MEMBER_ID_REQUIRED);
    assert_eq!(r.generation_id, -1);
    assert!(r.member_id.starts_with("client-"));
    let t2 = h.join(&r.member_id);
    let r2 = h.take_join(t2).unwrap();
    assert_eq!(r2.error, ErrorCode::NONE);
    assert_eq!(r2.generation_id, 1);
    assert_eq!(r2.leader, r.member_id);
    assert_eq!(r2.member_id, r.member_id);
    assert_eq!(r2.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r2.protocol_name.as_deref(), Some("range"));
    assert_eq!(r2.members.len(), 1);
    assert_eq!(r2.members[0].metadata, sub(&["t"]));
    assert_eq!(h.state().0, GroupState::CompletingRebalance);
}

#[test]
fn old_clients_join_without_member_id_round_trip() {
    let mut h = H::new(cfg_no_delay());
    let mut r = h.req("", None, protocols(&["range"], &["t"]));
    r.require_known_member_id = false;
    let t = h.join_req(r);
    let resp = h.take_join(t).unwrap();
    assert_eq!(resp.error, ErrorCode::NONE);
    assert_eq!(resp.generation_id, 1);
}

#[test]
fn unknown_member_and_bad_session_timeout_are_rejected() {
    let mut h = H::new(cfg_no_delay());
    let t = h.join("nobody");
    assert_eq!(h.take_join(t).unwrap().error, ErrorCode::UNKNOWN_MEMBER_ID);
    let mut r = h.req("", None, protocols(&["range"], &["t"]));
    r.session_timeout_ms = 10;
    let t = h.join_req(r);
    assert_eq!(
        h.take_join(t).unwrap().error,
        ErrorCode::INVALID_SESSION_TIMEOUT
    );
    let mut r = h.req("", None, protocols(&["range"], &["t"]));
    r.group_id = String::new();
    let t = h.join_req(r);
    assert_eq!(h.take_join(t).unwrap().error, ErrorCode::INVALID_GROUP_ID);
    assert_eq!(h.c.group_count(), 0, "failed joins leave no group behind");
}

#[test]
fn initial_delay_holds_both_joins_and_extends_for_new_members() {
    let mut h = H::new(GroupConfig::default()); // 3000 ms initial delay
    h.now = 0;
    let (a, ta) = h.join_new();
    h.now = 1_000;
    let (b, tb) = h.join_new();
    assert_eq!(h.c.next_deadline_ms(), Some(3_000));
    h.tick_to(2_999);
    assert!(h.take_join(ta).is_none() && h.take_join(tb).is_none());
    h.tick_to(3_000);
    // B arrived during the delay: extended by another delay.
    assert!(h.take_join(ta).is_none() && h.take_join(tb).is_none());
    assert_eq!(h.c.next_deadline_ms(), Some(6_000));
    h.tick_to(6_000);
    let ra = h.take_join(ta).unwrap();
    let rb = h.take_join(tb).unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader, a);
    assert_eq!(rb.leader, a);
    let ids: Vec<_> = ra.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(ids, vec![a.clone(), b.clone()], "leader sees both members");
    assert!(rb.members.is_empty(), "followers get no member list");
}

#[test]
fn second_member_join_is_held_until_the_first_rejoins() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    assert_eq!(
        h.state(),
        (GroupState::Stable, 2, vec![a.clone(), b.clone()])
    );
    assert_eq!(h.c.group_leader("g"), Some(a));
}

#[test]
fn sync_holds_followers_until_leader_assigns_and_persists_group() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    // The Stable transition wrote the group with both assignments.
    let group_records: Vec<_> = h
        .persisted()
        .into_iter()
        .filter(|(k, _)| {
            records::decode_key(k) == Ok(records::RecordKey::Group { group: "g".into() })
        })
        .collect();
    let last = group_records.last().unwrap().1.clone().unwrap();
    let v = records::decode_group_value(&last).unwrap();
    assert_eq!(v.generation, 2);
    assert_eq!(v.leader.as_deref(), Some(a.as_str()));
    let assigned: Vec<_> = v
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.assignment.clone()))
        .collect();
    assert_eq!(
        assigned,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B"))
        ]
    );
    // A later sync in Stable returns the stored assignment at once, echoing protocol.
    let t = h.sync(&b, 2, vec![]);
    let r = h.take_sync(t).unwrap();
    assert_eq!(r.assignment, Bytes::from_static(b"B"));
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    // Wrong generation / protocol.
    let t = h.sync(&b, 1, vec![]);
    assert_eq!(h.take_sync(t).unwrap().error, ErrorCode::ILLEGAL_GENERATION);
    let mut req = SyncRequest {
        group_id: "g".into(),
        generation_id: 2,
        member_id: b.clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("roundrobin".into()),
        assignments: vec![],
    };
    h.c.sync(RequestToken(999), req.clone(), h.now, &mut h.out);
    assert_eq!(
        h.take_sync(RequestToken(999)).unwrap().error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    req.member_id = "ghost".into();
    req.protocol_name = None;
    h.c.sync(RequestToken(1000), req, h.now, &mut h.out);
    assert_eq!(
        h.take_sync(RequestToken(1000)).unwrap().error,
        ErrorCode::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn member_dying_without_leaving_is_expired_and_the_other_rejoins() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    let start = h.now;
    // A keeps heartbeating, B is silent.
    h.tick_to(start + 5_000);
    assert_eq!(h.heartbeat(&a, 2), ErrorCode::NONE);
    h.tick_to(start + SESSION_MS as i64 - 1);
    assert_eq!(h.state().0, GroupState::Stable);
    h.tick_to(start + SESSION_MS as i64);
    assert_eq!(
        h.state(),
        (GroupState::PreparingRebalance, 2, vec![a.clone()])
    );
    assert_eq!(h.heartbeat(&a, 2), ErrorCode::REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat(&b, 2), ErrorCode::UNKNOWN_MEMBER_ID);
    let t = h.join(&a);
    let r = h.take_join(t).unwrap();
    assert_eq!(r.generation_id, 3);
    assert_eq!(r.leader, a);
    assert_eq!(r.members.len(), 1);
    // Offsets commits from B's old generation are fenced.
    assert_eq!(h.commit(&b, 2, "t", 0, 5), ErrorCode::REBALANCE_IN_PROGRESS);
    let t = h.sync(&a, 3, vec![(a.clone(), Bytes::from_static(b"all"))]);
    assert_eq!(h.take_sync(t).unwrap().error, ErrorCode::NONE);
    assert_eq!(h.commit(&b, 2, "t", 0, 5), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn slow_member_not_rejoining_within_rebalance_timeout_is_removed() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    let start = h.now;
    let (c, tc) = h.join_new();
    let ta = h.join(&a);
    // B keeps heartbeating (it is alive, just slow to rejoin).
    h.tick_to(start + 8_000);
    assert_eq!(h.heartbeat(&b, 2), ErrorCode::REBALANCE_IN_PROGRESS);
    h.tick_to(start + 16_000);
    assert_eq!(h.heartbeat(&b, 2), ErrorCode::REBALANCE_IN_PROGRESS);
    assert!(h.take_join(ta).is_none());
    assert_eq!(
        h.c.next_deadline_ms(),
        Some(start + REBALANCE_MS as i64).min(Some(start + 16_000 + SESSION_MS as i64))
    );
    h.tick_to(start + REBALANCE_MS as i64);
    let ra = h.take_join(ta).unwrap();
    let rc = h.take_join(tc).unwrap();
    assert_eq!((ra.generation_id, rc.generation_id), (3, 3));
    let mut ids: Vec<_> = ra.members.iter().map(|m| m.member_id.clone()).collect();
    ids.sort();
    let mut want = vec![a.clone(), c.clone()];
    want.sort();
    assert_eq!(ids, want, "B was dropped");
    assert_eq!(h.heartbeat(&b, 2), ErrorCode::UNKNOWN_MEMBER_ID);
    let tb = h.join(&b);
    assert_eq!(h.take_join(tb).unwrap().error, ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn leader_that_never_syncs_is_removed_after_rebalance_timeout() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    assert_eq!(h.heartbeat(&a, 2), ErrorCode::NONE);
    // B rejoins with new metadata -> rebalance; both rejoin, only B syncs.
    let rb = h.req(&b, None, protocols(&["range"], &["t", "u"]));
    let tb = h.join_req(rb);
    let ta = h.join(&a);
    assert_eq!(h.take_join(ta).unwrap().generation_id, 3);
    assert_eq!(h.take_join(tb).unwrap().generation_id, 3);
    let start = h.now;
    let ts = h.sync(&b, 3, vec![]);
    // A heartbeats but never sends SyncGroup.
    for i in 1..=5 {
        h.tick_to(start + i * 5_000);
        assert_eq!(h.heartbeat(&a, 3), ErrorCode::NONE);
    }
    h.tick_to(start + REBALANCE_MS as i64);
    assert_eq!(
        h.take_sync(ts).unwrap().error,
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        h.state(),
        (GroupState::PreparingRebalance, 3, vec![b.clone()])
    );
}

#[test]
fn follower_held_in_sync_longer_than_its_session_may_still_rejoin() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    // B rejoins -> rebalance; both rejoin, B syncs and waits; the leader A never syncs.
    let rb = h.req(&b, None, protocols(&["range"], &["t", "u"]));
    let tb = h.join_req(rb);
    let ta = h.join(&a);
    assert_eq!(h.take_join(ta).unwrap().generation_id, 3);
    assert_eq!(h.take_join(tb).unwrap().generation_id, 3);
    let start = h.now;
    let ts = h.sync(&b, 3, vec![]);
    const { assert!(REBALANCE_MS > SESSION_MS, "B waits longer than its session") };
    h.tick_to(start + REBALANCE_MS as i64);
    assert_eq!(
        h.take_sync(ts).unwrap().error,
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    // B was kept alive while it waited: it now has a full session to rejoin, not zero.
    assert!(h.c.next_deadline_ms().is_some_and(|d| d > h.now));
    h.tick_to(h.now + 1);
    assert_eq!(h.state().2, vec![b.clone()]);
    let tb = h.join(&b);
    let r = h.take_join(tb).unwrap();
    assert_eq!((r.error, r.generation_id), (ErrorCode::NONE, 4));
}

#[test]
fn static_member_restart_keeps_generation_and_assignment() {
    let mut h = H::new(cfg_no_delay());
    let r = h.req("", Some("inst-1"), protocols(&["range"], &["t"]));
    let t = h.join_req(r);
    let first = h.take_join(t).unwrap();
    assert_eq!(
        first.error,
        ErrorCode::NONE,
        "static members skip MEMBER_ID_REQUIRED"
    );
    let old_id = first.member_id.clone();
    let t = h.sync(
        &old_id,
        1,
        vec![(old_id.clone(), Bytes::from_static(b"P0"))],
    );
    assert_eq!(
        h.take_sync(t).unwrap().assignment,
        Bytes::from_static(b"P0")
    );
    let persisted_before = h.persisted().len();

    // Restart: same instance id, no member id, same protocols.
    let r = h.req("", Some("inst-1"), protocols(&["range"], &["t"]));
    let t = h.join_req(r);
    let again = h.take_join(t).unwrap();
    assert_eq!(again.error, ErrorCode::NONE);
    assert_ne!(again.member_id, old_id);
    assert_eq!(again.generation_id, 1, "no rebalance");
    assert_eq!(again.leader, old_id, "old leader id is returned");
    assert_eq!(
        h.state(),
        (GroupState::Stable, 1, vec![again.member_id.clone()])
    );
    assert!(
        h.persisted().len() > persisted_before,
        "replacement persisted"
    );
    // The new id syncs and gets the old assignment.
    let t = h.sync(&again.member_id, 1, vec![]);
    assert_eq!(
        h.take_sync(t).unwrap().assignment,
        Bytes::from_static(b"P0")
    );
    // The old incarnation is fenced.
    let e = h.c.heartbeat(
        HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: old_id.clone(),
            group_instance_id: Some("inst-1".into()),
        },
        h.now,
        &mut h.out,
    );
    assert_eq!(e, ErrorCode::FENCED_INSTANCE_ID);
    let mut r = h.req(&old_id, Some("inst-1"), protocols(&["range"], &["t"]));
    r.require_known_member_id = false;
    let t = h.join_req(r);
    assert_eq!(h.take_join(t).unwrap().error, ErrorCode::FENCED_INSTANCE_ID);

    // Restart with a different protocol choice: rebalance.
    let r = h.req("", Some("inst-1"), protocols(&["sticky"], &["t"]));
    let t = h.join_req(r);
    assert_eq!(
        h.take_join(t).unwrap().error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    let r = h.req(
        "",
        Some("inst-1"),
        protocols(&["roundrobin", "range"], &["t"]),
    );
    let t = h.join_req(r);
    let third = h.take_join(t).unwrap();
    assert_eq!(third.generation_id, 2);
    assert_eq!(third.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn static_member_restart_during_rebalance_fences_the_held_join() {
    let mut h = H::new(cfg_no_delay());
    let (a, _b) = h.stable_pair();
    let r = h.req("", Some("s"), protocols(&["range"], &["t"]));
    let ts = h.join_req(r); // joins -> rebalance, held
    assert!(h.take_join(ts).is_none());
    let r = h.req("", Some("s"), protocols(&["range"], &["t"]));
    let ts2 = h.join_req(r);
    assert_eq!(
        h.take_join(ts).unwrap().error,
        ErrorCode::FENCED_INSTANCE_ID
    );
    assert!(h.take_join(ts2).is_none());
    let _ = a;
}

#[test]
fn leave_triggers_rebalance_and_last_leave_empties_group() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    let r = h.c.leave(
        "g",
        vec![LeaveMember {
            member_id: b.clone(),
            group_instance_id: None,
        }],
        h.now,
        &mut h.out,
    );
    assert_eq!(r.error, ErrorCode::NONE);
    assert_eq!(r.members[0].error, ErrorCode::NONE);
    assert_eq!(
        h.state(),
        (GroupState::PreparingRebalance, 2, vec![a.clone()])
    );
    let t = h.join(&a);
    assert_eq!(h.take_join(t).unwrap().generation_id, 3);
    let r = h.c.leave(
        "g",
        vec![
            LeaveMember {
                member_id: a.clone(),
                group_instance_id: None,
            },
            LeaveMember {
                member_id: "ghost".into(),
                group_instance_id: None,
            },
        ],
        h.now,
        &mut h.out,
    );
    assert_eq!(r.members[0].error, ErrorCode::NONE);
    assert_eq!(r.members[1].error, ErrorCode::UNKNOWN_MEMBER_ID);
    assert_eq!(h.state(), (GroupState::Empty, 4, vec![]));
    let (_, v) = h.persisted().last().unwrap().clone();
    let v = records::decode_group_value(&v.unwrap()).unwrap();
    assert_eq!((v.generation, v.members.len()), (4, 0));
    let r = h.c.leave(
        "nope",
        vec![LeaveMember {
            member_id: "x".into(),
            group_instance_id: None,
        }],
        h.now,
        &mut h.out,
    );
    assert_eq!(r.members[0].error, ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn leave_by_instance_id() {
    let mut h = H::new(cfg_no_delay());
    let r = h.req("", Some("i"), protocols(&["range"], &["t"]));
    let t = h.join_req(r);
    let id = h.take_join(t).unwrap().member_id;
    let r = h.c.leave(
        "g",
        vec![LeaveMember {
            member_id: "other".into(),
            group_instance_id: Some("i".into()),
        }],
        h.now,
        &mut h.out,
    );
    assert_eq!(r.members[0].error, ErrorCode::FENCED_INSTANCE_ID);
    let r = h.c.leave(
        "g",
        vec![LeaveMember {
            member_id: String::new(),
            group_instance_id: Some("i".into()),
        }],
        h.now,
        &mut h.out,
    );
    assert_eq!(r.members[0].error, ErrorCode::NONE);
    assert!(!h.state().2.contains(&id));
}

#[test]
fn commit_checks_generation_member_and_rebalance() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    assert_eq!(h.commit(&a, 2, "t", 0, 10), ErrorCode::NONE);
    assert_eq!(h.commit(&a, 1, "t", 0, 11), ErrorCode::ILLEGAL_GENERATION);
    assert_eq!(
        h.commit("ghost", 2, "t", 0, 11),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        h.commit("", -1, "t", 0, 11),
        ErrorCode::UNKNOWN_MEMBER_ID,
        "simple commit to an active group"
    );
    assert_eq!(h.fetch("t", 0).offset, Offset(10));
    // PreparingRebalance: commits of the current generation are still accepted.
    let (_c, _tc) = h.join_new();
    assert_eq!(h.state().0, GroupState::PreparingRebalance);
    assert_eq!(h.commit(&b, 2, "t", 1, 20), ErrorCode::NONE);
    // CompletingRebalance: REBALANCE_IN_PROGRESS.
    let ta = h.join(&a);
    let tb = h.join(&b);
    let ra = h.take_join(ta).unwrap();
    assert!(h.take_join(tb).is_some());
    assert_eq!(h.state().0, GroupState::CompletingRebalance);
    assert_eq!(
        h.commit(&a, ra.generation_id, "t", 0, 12),
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    assert_eq!(h.fetch("t", 0).offset, Offset(10));
    assert_eq!(h.fetch("t", 1).offset, Offset(20));
    assert_eq!(h.fetch("t", 1).leader_epoch, LeaderEpoch(3));
    // Metadata too large.
    let r = h.c.commit_offsets(
        CommitRequest {
            group_id: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: vec![],
        },
        h.now,
        &mut h.out,
    );
    assert!(r.is_empty());
}

#[test]
fn a_commit_whose_records_were_not_written_is_undone() {
    let mut h = H::new(cfg_no_delay());
    let commit = |h: &mut H, partition: i32, offset: i64| {
        let req = CommitRequest {
            group_id: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: vec![CommitTopic {
                name: "t".into(),
                partitions: vec![CommitPartition {
                    partition: PartitionIndex(partition),
                    offset: Offset(offset),
                    leader_epoch: LeaderEpoch(1),
                    metadata: None,
                }],
            }],
        };
        let now = h.now;
        let (r, undo) = h.c.commit_offsets_undoable(req, now, &mut h.out);
        assert_eq!(r[0].partitions[0].1, ErrorCode::NONE);
        undo
    };
    // The first commit creates the group; undoing it removes the group again.
    let undo = commit(&mut h, 0, 5);
    h.c.undo_commit(undo);
    h.c.check_invariants();
    assert_eq!(h.c.group_count(), 0);
    assert_eq!(h.fetch("t", 0).offset, Offset(-1));
    // Later commits: the previous offset comes back, other partitions keep theirs.
    let _kept = commit(&mut h, 0, 5);
    let _kept = commit(&mut h, 1, 6);
    let undo = commit(&mut h, 0, 9);
    assert_eq!(h.fetch("t", 0).offset, Offset(9));
    h.c.undo_commit(undo);
    h.c.check_invariants();
    assert_eq!(h.fetch("t", 0).offset, Offset(5));
    assert_eq!(h.fetch("t", 1).offset, Offset(6));
}

#[test]
fn simple_commits_without_group_and_fetch_of_unknowns() {
    let mut h = H::new(cfg_no_delay());
    let unknown = h.fetch("t", 0);
    assert_eq!(unknown.offset, Offset(-1));
    assert_eq!(unknown.leader_epoch, LeaderEpoch(-1));
    assert_eq!(unknown.error, ErrorCode::NONE);
    assert_eq!(h.commit("", 5, "t", 0, 7), ErrorCode::ILLEGAL_GENERATION);
    assert_eq!(h.commit("", -1, "t", 0, 7), ErrorCode::NONE);
    assert_eq!(h.commit("", -1, "t", 3, 9), ErrorCode::NONE);
    assert_eq!(h.fetch("t", 0).offset, Offset(7));
    assert_eq!(h.fetch("t", 0).metadata, "md");
    assert_eq!(h.fetch("t", 1).offset, Offset(-1));
    let all = h.c.fetch_offsets("g", None);
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].partitions.len(), 2);
    assert_eq!(
        h.c.committed_offsets("g"),
        vec![
            ("t".to_string(), PartitionIndex(0), Offset(7)),
            ("t".to_string(), PartitionIndex(3), Offset(9))
        ]
    );
    let listed = h.c.list(&[], &[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, GroupState::Empty);
    assert_eq!(listed[0].protocol_type, "");
    let big = "x".repeat(5000);
    let r = h.c.commit_offsets(
        CommitRequest {
            group_id: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: vec![CommitTopic {
                name: "t".into(),
                partitions: vec![CommitPartition {
                    partition: PartitionIndex(0),
                    offset: Offset(1),
                    leader_epoch: LeaderEpoch(-1),
                    metadata: Some(big),
                }],
            }],
        },
        h.now,
        &mut h.out,
    );
    assert_eq!(r[0].partitions[0].1, ErrorCode::OFFSET_METADATA_TOO_LARGE);
    assert_eq!(h.fetch("t", 0).offset, Offset(7));
}

#[test]
fn heartbeat_answers_by_state() {
    let mut h = H::new(cfg_no_delay());
    assert_eq!(h.heartbeat("x", 0), ErrorCode::UNKNOWN_MEMBER_ID);
    let (a, ta) = h.join_new();
    h.take_join(ta).unwrap();
    assert_eq!(h.state().0, GroupState::CompletingRebalance);
    assert_eq!(h.heartbeat(&a, 1), ErrorCode::NONE);
    assert_eq!(h.heartbeat(&a, 0), ErrorCode::ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat("x", 1), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn protocol_is_chosen_by_vote() {
    let mut h = H::new(GroupConfig::default());
    h.now = 0;
    let ra = h.req("", Some("a"), protocols(&["roundrobin", "range"], &["t"]));
    let ta = h.join_req(ra);
    let rb = h.req("", Some("b"), protocols(&["range", "roundrobin"], &["t"]));
    let tb = h.join_req(rb);
    let rc = h.req(
        "",
        Some("c"),
        protocols(&["range", "roundrobin", "sticky"], &["t"]),
    );
    let tc = h.join_req(rc);
    let rd = h.req("", Some("d"), protocols(&["sticky"], &["t"]));
    let td = h.join_req(rd);
    assert_eq!(
        h.take_join(td).unwrap().error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut re = h.req("", Some("e"), protocols(&["range"], &["t"]));
    re.protocol_type = "connect".into();
    let te = h.join_req(re);
    assert_eq!(
        h.take_join(te).unwrap().error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    h.tick_to(10_000);
    for t in [ta, tb, tc] {
        let r = h.take_join(t).unwrap();
        assert_eq!(r.protocol_name.as_deref(), Some("range"), "2 votes of 3");
    }
}

#[test]
fn offsets_and_group_survive_replay() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    assert_eq!(h.commit(&a, 2, "t", 0, 100), ErrorCode::NONE);
    assert_eq!(h.commit(&b, 2, "t", 1, 200), ErrorCode::NONE);
    assert_eq!(h.commit(&b, 2, "t", 1, 250), ErrorCode::NONE);
    assert_eq!(h.commit(&a, 2, "u", 0, 5), ErrorCode::NONE);
    let d = h.c.delete_offsets(
        "g",
        &[TopicPartitions {
            name: "u".into(),
            partitions: vec![PartitionIndex(0)],
        }],
        h.now,
        &mut h.out,
    );
    assert_eq!(
        d.topics[0].partitions[0].1,
        ErrorCode::NONE,
        "u is not subscribed"
    );
    let records = h.persisted();
    let mut fresh = GroupCoordinator::new(cfg_no_delay());
    for (k, v) in &records {
        fresh.replay(k, v.as_deref()).unwrap();
    }
    fresh.finish_replay(h.now);
    fresh.check_invariants();
    assert_eq!(fresh.group_summary("g"), h.c.group_summary("g"));
    assert_eq!(fresh.group_leader("g"), Some(a.clone()));
    assert_eq!(fresh.fetch_offsets("g", None), h.c.fetch_offsets("g", None));
    assert_eq!(
        fresh.committed_offsets("g"),
        vec![
            ("t".to_string(), PartitionIndex(0), Offset(100)),
            ("t".to_string(), PartitionIndex(1), Offset(250))
        ]
    );
    // Members carry on in the restored generation.
    let mut out = Vec::new();
    let hb = HeartbeatRequest {
        group_id: "g".into(),
        generation_id: 2,
        member_id: b.clone(),
        group_instance_id: None,
    };
    assert_eq!(fresh.heartbeat(hb, h.now + 1, &mut out), ErrorCode::NONE);
    let sr = SyncRequest {
        group_id: "g".into(),
        generation_id: 2,
        member_id: b.clone(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    fresh.sync(RequestToken(1), sr, h.now + 1, &mut out);
    assert!(matches!(&out[..], [Output::Sync(_, r)] if r.assignment == Bytes::from_static(b"B")));
    // Members that never come back expire after their session timeout.
    let mut out = Vec::new();
    fresh.tick(h.now + SESSION_MS as i64, &mut out);
    fresh.check_invariants();
    assert_eq!(
        fresh.group_summary("g").unwrap().0,
        GroupState::PreparingRebalance
    );
    // Corrupt records are reported, not applied.
    assert!(fresh.replay(&[0, 1, 0], Some(&[1])).is_err());
    assert!(fresh
        .replay(&records::encode_offset_key("g", "t", 0), Some(&[0, 3, 1]))
        .is_err());
    assert_eq!(fresh.fetch_offsets("g", None), h.c.fetch_offsets("g", None));
}

#[test]
fn delete_groups_only_when_empty() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    assert_eq!(h.commit(&a, 2, "t", 0, 1), ErrorCode::NONE);
    let r =
        h.c.delete(&["g".to_string(), "nope".to_string()], h.now, &mut h.out);
    assert_eq!(r[0].1, ErrorCode::NON_EMPTY_GROUP);
    assert_eq!(r[1].1, ErrorCode::GROUP_ID_NOT_FOUND);
    h.c.leave(
        "g",
        vec![
            LeaveMember {
                member_id: a.clone(),
                group_instance_id: None,
            },
            LeaveMember {
                member_id: b.clone(),
                group_instance_id: None,
            },
        ],
        h.now,
        &mut h.out,
    );
    assert_eq!(h.state().0, GroupState::Empty);
    h.out.clear();
    let r = h.c.delete(&["g".to_string()], h.now, &mut h.out);
    assert_eq!(r[0].1, ErrorCode::NONE);
    let tombstones: Vec<_> = h
        .persisted()
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .collect();
    assert_eq!(tombstones.len(), 2, "one offset and the group");
    assert!(h.c.group_summary("g").is_none());
    assert_eq!(h.fetch("t", 0).offset, Offset(-1));
    assert_eq!(h.c.describe(&["g".to_string()])[0].state, GroupState::Dead);
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let retention = 60_000;
    let cfg = GroupConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: retention,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    };
    let mut h = H::new(cfg);
    h.now = 0;
    h.tick_to(0);
    assert_eq!(h.commit("", -1, "t", 0, 7), ErrorCode::NONE);
    h.tick_to(retention - 1_000);
    assert_eq!(h.fetch("t", 0).offset, Offset(7));
    h.out.clear();
    h.tick_to(retention);
    assert_eq!(h.fetch("t", 0).offset, Offset(-1));
    assert!(
        h.c.group_summary("g").is_none(),
        "empty group without offsets removed"
    );
    let tombstones: Vec<_> = h
        .persisted()
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .collect();
    assert_eq!(tombstones.len(), 2);

    // A consumer group: offsets stay while it has members, expire once it has been empty long enough.
    let (a, b) = h.stable_pair();
    assert_eq!(h.commit(&a, 2, "t", 0, 9), ErrorCode::NONE);
    let mut t = h.now;
    let until = h.now + 2 * retention;
    while t < until {
        t += 5_000;
        h.tick_to(t);
        assert_eq!(h.heartbeat(&a, 2), ErrorCode::NONE);
        assert_eq!(h.heartbeat(&b, 2), ErrorCode::NONE);
    }
    assert_eq!(h.fetch("t", 0).offset, Offset(9));
    h.c.leave(
        "g",
        vec![
            LeaveMember {
                member_id: a.clone(),
                group_instance_id: None,
            },
            LeaveMember {
                member_id: b.clone(),
                group_instance_id: None,
            },
        ],
        h.now,
        &mut h.out,
    );
    let empty_at = h.now;
    h.tick_to(empty_at + retention - 1);
    assert_eq!(h.fetch("t", 0).offset, Offset(9));
    h.tick_to(empty_at + retention + 1_000);
    assert_eq!(h.fetch("t", 0).offset, Offset(-1));
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    let mut h = H::new(cfg_no_delay());
    let (a, _b) = h.stable_pair();
    assert_eq!(h.commit(&a, 2, "t", 0, 1), ErrorCode::NONE);
    assert_eq!(h.commit(&a, 2, "other", 0, 1), ErrorCode::NONE);
    let r = h.c.delete_offsets(
        "g",
        &[
            TopicPartitions {
                name: "t".into(),
                partitions: vec![PartitionIndex(0)],
            },
            TopicPartitions {
                name: "other".into(),
                partitions: vec![PartitionIndex(0)],
            },
        ],
        h.now,
        &mut h.out,
    );
    assert_eq!(r.error, ErrorCode::NONE);
    assert_eq!(r.topics[0].partitions[0].1, GROUP_SUBSCRIBED_TO_TOPIC);
    assert_eq!(r.topics[1].partitions[0].1, ErrorCode::NONE);
    assert_eq!(h.fetch("t", 0).offset, Offset(1));
    assert_eq!(h.fetch("other", 0).offset, Offset(-1));
    let r = h.c.delete_offsets("nope", &[], h.now, &mut h.out);
    assert_eq!(r.error, ErrorCode::GROUP_ID_NOT_FOUND);
}

#[test]
fn list_and_describe() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    let listed = h.c.list(&[GroupState::Stable], &[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].protocol_type, "consumer");
    assert!(h.c.list(&[GroupState::Empty], &[]).is_empty());
    assert!(h.c.list(&[], &["consumer".to_string()]).is_empty());
    assert_eq!(h.c.list(&[], &["Classic".to_string()]).len(), 1);
    assert_eq!(GroupState::parse("stable"), Some(GroupState::Stable));
    let d = &h.c.describe(&["g".to_string()])[0];
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol, "range");
    let members: Vec<_> = d
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.assignment.clone()))
        .collect();
    assert_eq!(
        members,
        vec![(a, Bytes::from_static(b"A")), (b, Bytes::from_static(b"B"))]
    );
    assert_eq!(d.members[0].metadata, sub(&["t"]));
    assert_eq!(d.members[0].client_host, "/127.0.0.1");
}

#[test]
fn pending_member_that_never_rejoins_expires() {
    let mut h = H::new(cfg_no_delay());
    let (a, b) = h.stable_pair();
    let t = h.join("");
    let pending = h.take_join(t).unwrap().member_id;
    assert_eq!(
        h.state().0,
        GroupState::Stable,
        "a pending member does not rebalance"
    );
    let start = h.now;
    for i in 1..=3 {
        h.tick_to(start + i * 4_000);
        assert_eq!(h.heartbeat(&a, 2), ErrorCode::NONE);
        assert_eq!(h.heartbeat(&b, 2), ErrorCode::NONE);
    }
    let t = h.join(&pending);
    assert_eq!(h.take_join(t).unwrap().error, ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn offsets_partition_matches_kafka() {
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("hello"), 99_162_322);
    assert_eq!(offsets_partition_for("hello", 50), 22);
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(offsets_partition_for("polygenelubricants", 50), 0);
    assert!(offsets_partition_for("a-negative-hash?", 50) < 50);
}

fn txn_req(
    producer_id: i64,
    generation_id: i32,
    member: &str,
    partition: i32,
    offset: i64,
) -> TxnCommitRequest {
    TxnCommitRequest {
        group_id: "g".into(),
        producer_id,
        generation_id,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![CommitTopic {
            name: "t".into(),
            partitions: vec![CommitPartition {
                partition: PartitionIndex(partition),
                offset: Offset(offset),
                leader_epoch: LeaderEpoch(1),
                metadata: None,
            }],
        }],
    }
}

impl H {
    fn txn_commit(&mut self, req: TxnCommitRequest) -> ErrorCode {
        let now = self.now;
        let (r, _undo) = self.c.txn_commit_offsets(req, now, &mut self.out);
        r[0].partitions[0].1
    }

    fn fetch_stable(&self, topic: &str, partition: i32) -> FetchedOffset {
        let tp = [TopicPartitions {
            name: topic.into(),
            partitions: vec![PartitionIndex(partition)],
        }];
        self.c.fetch_offsets_stable("g", Some(&tp), true).topics[0].partitions[0].clone()
    }
}

#[test]
fn txn_offsets_are_visible_only_once_committed_and_dropped_on_abort() {
    let mut h = H::new(cfg_no_delay());
    let (a, _b) = h.stable_pair();
    assert_eq!(h.commit(&a, 2, "t", 0, 5), ErrorCode::NONE);
    // Producer 7 commits 10 on t-0, producer 8 commits 20 on t-1.
    assert_eq!(h.txn_commit(txn_req(7, 2, &a, 0, 10)), ErrorCode::NONE);
    assert_eq!(h.txn_commit(txn_req(8, 2, &a, 1, 20)), ErrorCode::NONE);
    assert_eq!(h.fetch("t", 0).offset, Offset(5), "pending, not visible");
    assert_eq!(h.fetch("t", 1).offset, Offset(-1));
    assert_eq!(
        h.fetch_stable("t", 0).error,
        ErrorCode::UNSTABLE_OFFSET_COMMIT
    );
    assert_eq!(h.fetch_stable("t", 0).offset, Offset(-1));
    assert_eq!(
        h.fetch_stable("t", 1).error,
        ErrorCode::UNSTABLE_OFFSET_COMMIT
    );
    assert_eq!(h.c.pending_txn_producers(), vec![7, 8]);
    // 7 commits: visible; 8 aborts: gone.
    h.c.complete_txn(7, true, h.now);
    h.c.complete_txn(8, false, h.now);
    h.c.check_invariants();
    assert_eq!(h.fetch_stable("t", 0).error, ErrorCode::NONE);
    assert_eq!(h.fetch_stable("t", 0).offset, Offset(10));
    assert_eq!(h.fetch_stable("t", 1).error, ErrorCode::NONE);
    assert_eq!(h.fetch_stable("t", 1).offset, Offset(-1));
    assert!(h.c.pending_txn_producers().is_empty());
    // A marker for a producer with nothing pending changes nothing.
    h.c.complete_txn(9, true, h.now);
    assert_eq!(h.fetch("t", 0).offset, Offset(10));
}

#[test]
fn txn_commit_checks_the_group_like_kafka() {
    let mut h = H::new(cfg_no_delay());
    // No group: a generation is ILLEGAL_GENERATION; none is a simple commit.
    assert_eq!(
        h.txn_commit(txn_req(7, 3, "m", 0, 1)),
        ErrorCode::ILLEGAL_GENERATION
    );
    assert_eq!(h.txn_commit(txn_req(7, -1, "", 0, 1)), ErrorCode::NONE);
    h.c.complete_txn(7, false, h.now);
    let (a, _b) = h.stable_pair();
    assert_eq!(
        h.txn_commit(txn_req(7, 1, &a, 0, 1)),
        ErrorCode::ILLEGAL_GENERATION
    );
    assert_eq!(
        h.txn_commit(txn_req(7, 2, "ghost", 0, 1)),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
    // Before v3 no member is named: taken even from an active group.
    assert_eq!(h.txn_commit(txn_req(7, -1, "", 0, 1)), ErrorCode::NONE);
    let mut fenced = txn_req(7, 2, &a, 0, 1);
    fenced.group_instance_id = Some("nobody".into());
    assert_eq!(h.txn_commit(fenced), ErrorCode::UNKNOWN_MEMBER_ID);
    // A rebalance in progress does not refuse a transactional commit.
    let (_c, _tc) = h.join_new();
    let ta = h.join(&a);
    let _ = ta;
    assert_eq!(h.txn_commit(txn_req(7, 2, &a, 0, 2)), ErrorCode::NONE);
    // Nothing refused was kept pending: only the accepted offsets are.
    h.c.complete_txn(7, true, h.now);
    assert_eq!(h.fetch("t", 0).offset, Offset(2));
}

#[test]
fn a_txn_commit_whose_records_were_not_written_is_undone() {
    let mut h = H::new(cfg_no_delay());
    assert_eq!(h.txn_commit(txn_req(7, -1, "", 0, 4)), ErrorCode::NONE);
    let now = h.now;
    let (_, undo) =
        h.c.txn_commit_offsets(txn_req(7, -1, "", 0, 9), now, &mut h.out);
    h.c.undo_txn_commit(undo);
    h.c.complete_txn(7, true, h.now);
    assert_eq!(
        h.fetch("t", 0).offset,
        Offset(4),
        "the earlier pending offset stays"
    );
    let (_, undo) =
        h.c.txn_commit_offsets(txn_req(8, -1, "", 1, 9), now, &mut h.out);
    h.c.undo_txn_commit(undo);
    assert!(h.c.pending_txn_producers().is_empty());
}

#[test]
fn a_plain_commit_after_a_txn_commit_wins() {
    let mut h = H::new(cfg_no_delay());
    assert_eq!(h.txn_commit(txn_req(7, -1, "", 0, 10)), ErrorCode::NONE);
    assert_eq!(h.commit("", -1, "t", 0, 30), ErrorCode::NONE);
    h.c.complete_txn(7, true, h.now);
    assert_eq!(h.fetch("t", 0).offset, Offset(30));
}

/// The offsets log replayed after a crash: transactional records are pending
/// until their producer's marker, resolved by it (commit or abort), and
/// still pending (UNSTABLE_OFFSET_COMMIT) when the marker was never written.
#[test]
fn txn_offsets_are_replayed_and_resolved_by_markers() {
    let mut h = H::new(cfg_no_delay());
    assert_eq!(h.commit("", -1, "t", 0, 1), ErrorCode::NONE);
    let plain = h.persisted();
    let txn_records = |h: &mut H, req: TxnCommitRequest| {
        h.out.clear();
        let now = h.now;
        let _ = h.c.txn_commit_offsets(req, now, &mut h.out);
        h.persisted()
    };
    let committed = txn_records(&mut h, txn_req(7, -1, "", 0, 10));
    let aborted = txn_records(&mut h, txn_req(8, -1, "", 1, 20));
    let open = txn_records(&mut h, txn_req(9, -1, "", 2, 30));
    let mut fresh = GroupCoordinator::new(cfg_no_delay());
    for (k, v) in &plain {
        fresh.replay(k, v.as_deref()).unwrap();
    }
    for (pid, recs) in [(7, &committed), (8, &aborted), (9, &open)] {
        for (k, v) in recs {
            fresh.replay_transactional(pid, k, v.as_deref()).unwrap();
        }
    }
    fresh.complete_txn(7, true, h.now);
    fresh.complete_txn(8, false, h.now);
    fresh.finish_replay(h.now);
    fresh.check_invariants();
    let tp = |p: i32| {
        [TopicPartitions {
            name: "t".into(),
            partitions: vec![PartitionIndex(p)],
        }]
    };
    let get = |fresh: &GroupCoordinator, p: i32, stable: bool| {
        fresh.fetch_offsets_stable("g", Some(&tp(p)), stable).topics[0].partitions[0].clone()
    };
    assert_eq!(get(&fresh, 0, true).offset, Offset(10));
    assert_eq!(get(&fresh, 1, true).offset, Offset(-1));
    assert_eq!(get(&fresh, 1, true).error, ErrorCode::NONE);
    assert_eq!(
        get(&fresh, 2, true).error,
        ErrorCode::UNSTABLE_OFFSET_COMMIT
    );
    assert_eq!(get(&fresh, 2, false).offset, Offset(-1));
    assert_eq!(fresh.pending_txn_producers(), vec![9]);
    // The open one's marker comes after the restart.
    fresh.complete_txn(9, true, h.now);
    assert_eq!(get(&fresh, 2, true).offset, Offset(30));
}
