//! The group coordinator: every transition of Kafka's classic group protocol
//! (states Empty → PreparingRebalance → CompletingRebalance → Stable, and
//! Dead for deleted groups), driven by requests and by `now_ms`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex};

use crate::group::{Committed, Group, JoinTimer, Member};

/// What an OffsetCommit changed (see [`GroupCoordinator::commit_offsets_undoable`]).
#[derive(Debug)]
pub struct CommitUndo {
    group_id: String,
    /// In commit order: each key with the value it replaced.
    previous: Vec<((String, i32), Option<Committed>)>,
}
use crate::records::{self, OffsetValue, RecordKey};
use crate::{
    CommitRequest, DeleteOffsetsResponse, DescribedGroup, DescribedMember, FetchOffsetsResponse,
    FetchedOffset, FetchedTopic, GroupConfig, GroupState, HeartbeatRequest, JoinRequest,
    JoinResponse, LeaveMember, LeaveMemberResult, LeaveResponse, ListedGroup, Output, Protocol,
    RecordError, RequestToken, SyncRequest, SyncResponse, TopicPartitions, TopicResult,
    TxnCommitRequest, GROUP_SUBSCRIBED_TO_TOPIC,
};

/// All groups this node coordinates. See the crate docs for the contract.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    member_id_counter: u64,
    next_retention_check_ms: Option<i64>,
    /// Every group's earliest timer ([`Group::next_deadline_ms`]), ordered by
    /// time, so that `next_deadline_ms` and `tick` look only at groups that
    /// have something due. Kept current by [`GroupCoordinator::reindex`]
    /// whenever a group is put back after a change.
    deadlines: BTreeSet<(i64, String)>,
    deadline_of: HashMap<String, i64>,
    /// Transactional offset commits (TxnOffsetCommit) waiting for their
    /// producer's marker, by producer id: (group, topic, partition) → the
    /// offset, and whether a plain commit of that partition came after it
    /// (then the plain one stays when the transaction commits, as Kafka
    /// keeps the later record in the log).
    pending_txn: BTreeMap<i64, BTreeMap<(String, String, i32), PendingTxnOffset>>,
}

#[derive(Clone, Debug)]
struct PendingTxnOffset {
    committed: Committed,
    superseded: bool,
}

/// What a TxnOffsetCommit added (see [`GroupCoordinator::txn_commit_offsets`]):
/// given back to [`GroupCoordinator::undo_txn_commit`] if its records could
/// not be written.
#[derive(Debug)]
pub struct TxnCommitUndo {
    producer_id: i64,
    previous: Vec<((String, String, i32), Option<Committed>)>,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn push_persist_group(g: &Group, out: &mut Vec<Output>) {
    out.push(Output::Persist {
        group_id: g.id.clone(),
        key: records::encode_group_key(&g.id),
        value: Some(records::encode_group_value(&g.to_value())),
    });
}

fn push_offset_tombstone(group_id: &str, topic: &str, partition: i32, out: &mut Vec<Output>) {
    out.push(Output::Persist {
        group_id: group_id.to_owned(),
        key: records::encode_offset_key(group_id, topic, partition),
        value: None,
    });
}

/// A plain commit of (group, topic, partition) came after the pending
/// transactional ones of that partition: they no longer win at commit.
fn supersede(
    pending: &mut BTreeMap<i64, BTreeMap<(String, String, i32), PendingTxnOffset>>,
    group: &str,
    topic: &str,
    partition: i32,
) {
    if pending.is_empty() {
        return;
    }
    let key = (group.to_owned(), topic.to_owned(), partition);
    for offsets in pending.values_mut() {
        if let Some(p) = offsets.get_mut(&key) {
            p.superseded = true;
        }
    }
}

/// Kafka's `ClassicGroup.validateOffsetCommit` for a transactional commit.
fn txn_commit_check(g: &Group, req: &TxnCommitRequest) -> ErrorCode {
    if g.state == GroupState::Dead {
        return ErrorCode::COORDINATOR_NOT_AVAILABLE;
    }
    if req.generation_id < 0 && g.state == GroupState::Empty {
        return ErrorCode::NONE;
    }
    let names_member =
        req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some();
    if !names_member {
        // TxnOffsetCommit before v3 names no member: taken, as by Kafka.
        return ErrorCode::NONE;
    }
    if let Some(instance) = req.group_instance_id.as_deref() {
        match g.static_members.get(instance) {
            None => return ErrorCode::UNKNOWN_MEMBER_ID,
            Some(m) if *m != req.member_id => return ErrorCode::FENCED_INSTANCE_ID,
            Some(_) => {}
        }
    }
    if !g.has(&req.member_id) {
        return ErrorCode::UNKNOWN_MEMBER_ID;
    }
    if req.generation_id != g.generation {
        return ErrorCode::ILLEGAL_GENERATION;
    }
    ErrorCode::NONE
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            member_id_counter: 0,
            next_retention_check_ms: None,
            deadlines: BTreeSet::new(),
            deadline_of: HashMap::new(),
            pending_txn: BTreeMap::new(),
        }
    }

    /// Bring the deadline index up to date for one group (after any change to it,
    /// including its removal).
    fn reindex(&mut self, group_id: &str) {
        let new = self.groups.get(group_id).and_then(|g| g.next_deadline_ms());
        let old = self.deadline_of.get(group_id).copied();
        if old == new {
            return;
        }
        if let Some(o) = old {
            self.deadlines.remove(&(o, group_id.to_owned()));
            self.deadline_of.remove(group_id);
        }
        if let Some(n) = new {
            self.deadlines.insert((n, group_id.to_owned()));
            self.deadline_of.insert(group_id.to_owned(), n);
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Kafka's member ids: the client id, a dash and a UUID-shaped unique part.
    fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_id_counter += 1;
        let a = splitmix64(self.config.member_id_seed ^ self.member_id_counter.rotate_left(17));
        let b = splitmix64(a ^ self.member_id_counter);
        format!(
            "{client_id}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// Run `f` on the group (taken out of the map so `self` stays usable),
    /// after processing its due timers, then process what became due and put
    /// it back (or drop it if it holds nothing at all).
    fn with_group<R>(
        &mut self,
        group_id: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
        f: impl FnOnce(&mut Self, &mut Group, &mut Vec<Output>) -> R,
    ) -> Option<R> {
        let mut g = self.groups.remove(group_id)?;
        self.advance(&mut g, now_ms, out);
        let r = f(self, &mut g, out);
        self.maybe_complete_join(&mut g, now_ms, out);
        self.put_back(g);
        Some(r)
    }

    fn put_back(&mut self, g: Group) {
        let id = g.id.clone();
        let unused = g.state == GroupState::Empty
            && g.generation == 0
            && g.members.is_empty()
            && g.pending_members.is_empty()
            && g.offsets.is_empty()
            && g.protocol_type.is_none();
        if !unused {
            self.groups.insert(g.id.clone(), g);
        }
        self.reindex(&id);
    }

    // ------------------------------------------------------------ JoinGroup

    /// JoinGroup. The response comes as [`Output::Join`] with `token`, now or
    /// when the rebalance completes.
    pub fn join(
        &mut self,
        token: RequestToken,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if req.group_id.is_empty() {
            out.push(Output::Join(
                token,
                JoinResponse::error(ErrorCode::INVALID_GROUP_ID, &req.member_id),
            ));
            return;
        }
        if req.session_timeout_ms < self.config.session_timeout_ms_min
            || req.session_timeout_ms > self.config.session_timeout_ms_max
        {
            out.push(Output::Join(
                token,
                JoinResponse::error(ErrorCode::INVALID_SESSION_TIMEOUT, &req.member_id),
            ));
            return;
        }
        let new_member = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !new_member {
                out.push(Output::Join(
                    token,
                    JoinResponse::error(ErrorCode::UNKNOWN_MEMBER_ID, &req.member_id),
                ));
                return;
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now_ms));
        }
        let group_id = req.group_id.clone();
        self.with_group(&group_id, now_ms, out, |this, g, out| {
            if new_member {
                this.join_new_member(g, token, req, now_ms, out)
            } else {
                this.join_current_member(g, token, req, now_ms, out)
            }
        });
    }

    fn join_new_member(
        &mut self,
        g: &mut Group,
        token: RequestToken,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if g.state == GroupState::Dead {
            out.push(Output::Join(
                token,
                JoinResponse::error(ErrorCode::COORDINATOR_NOT_AVAILABLE, ""),
            ));
            return;
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            out.push(Output::Join(
                token,
                JoinResponse::error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL, ""),
            ));
            return;
        }
        let known_static = req
            .group_instance_id
            .as_ref()
            .and_then(|i| g.static_members.get(i))
            .cloned();
        if known_static.is_none()
            && g.members.len() + g.pending_members.len() >= self.config.group_members_max
        {
            out.push(Output::Join(
                token,
                JoinResponse::error(ErrorCode::GROUP_MAX_SIZE_REACHED, ""),
            ));
            return;
        }
        let member_id = self.new_member_id(&req.client_id);
        if let Some(old_id) = known_static {
            self.replace_static_member(g, token, req, &old_id, member_id, now_ms, out);
        } else if req.group_instance_id.is_none() && req.require_known_member_id {
            g.pending_members
                .insert(member_id.clone(), now_ms + req.session_timeout_ms as i64);
            out.push(Output::Join(
                token,
                JoinResponse::error(ErrorCode::MEMBER_ID_REQUIRED, &member_id),
            ));
        } else {
            self.add_member_and_rebalance(g, token, req, member_id, now_ms, out);
        }
    }

    fn join_current_member(
        &mut self,
        g: &mut Group,
        token: RequestToken,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let fail = |out: &mut Vec<Output>, code: ErrorCode| {
            out.push(Output::Join(
                token,
                JoinResponse::error(code, &req.member_id),
            ));
        };
        if g.state == GroupState::Dead {
            return fail(out, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(out, ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
        if g.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member_and_rebalance(g, token, req, id, now_ms, out);
        }
        if g.static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fail(out, ErrorCode::FENCED_INSTANCE_ID);
        }
        let Some(member) = g.member(&req.member_id) else {
            return fail(out, ErrorCode::UNKNOWN_MEMBER_ID);
        };
        let same_protocols =
            member.protocols == req.protocols && member.protocol_type == req.protocol_type;
        match g.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(g, token, &req, now_ms, out)
            }
            GroupState::CompletingRebalance if same_protocols => {
                // The member lost its JoinGroup response: send it again.
                let members = if g.is_leader(&req.member_id) {
                    g.join_members()
                } else {
                    Vec::new()
                };
                out.push(Output::Join(
                    token,
                    self.join_ok(g, &req.member_id, members),
                ));
            }
            GroupState::Stable if same_protocols && !g.is_leader(&req.member_id) => {
                out.push(Output::Join(
                    token,
                    self.join_ok(g, &req.member_id, Vec::new()),
                ));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(g, token, &req, now_ms, out)
            }
            GroupState::Empty | GroupState::Dead => fail(out, ErrorCode::UNKNOWN_MEMBER_ID),
        }
    }

    fn join_ok(&self, g: &Group, member_id: &str, members: Vec<crate::JoinMember>) -> JoinResponse {
        JoinResponse {
            error: ErrorCode::NONE,
            generation_id: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            leader: g.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        g: &mut Group,
        token: RequestToken,
        req: JoinRequest,
        member_id: String,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if g.leader.is_none() {
            g.leader = Some(member_id.clone());
        }
        if let Some(i) = &req.group_instance_id {
            g.static_members.insert(i.clone(), member_id.clone());
        }
        g.members.push(Member {
            id: member_id,
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
            is_new: true,
            session_deadline_ms: now_ms + self.config.new_member_join_timeout_ms,
        });
        if g.state == GroupState::PreparingRebalance {
            g.new_member_added = true;
        }
        self.maybe_prepare_rebalance(g, now_ms, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        g: &mut Group,
        token: RequestToken,
        req: &JoinRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if let Some(m) = g.member_mut(&req.member_id) {
            if let Some(old) = m.awaiting_join.replace(token) {
                out.push(Output::Join(
                    old,
                    JoinResponse::error(ErrorCode::REBALANCE_IN_PROGRESS, &m.id),
                ));
            }
            m.protocols = req.protocols.clone();
            m.protocol_type = req.protocol_type.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.session_deadline_ms = now_ms + req.session_timeout_ms as i64;
        }
        self.maybe_prepare_rebalance(g, now_ms, out);
    }

    /// A static member restarted: it takes over the old member's place (and
    /// assignment) under a new member id; the old one is fenced.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        g: &mut Group,
        token: RequestToken,
        req: JoinRequest,
        old_id: &str,
        new_id: String,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let leader_before = g.leader.clone().unwrap_or_default();
        let Some(m) = g.member_mut(old_id) else {
            // static_members always points at a member (checked by check_invariants).
            return;
        };
        if let Some(t) = m.awaiting_join.take() {
            out.push(Output::Join(
                t,
                JoinResponse::error(ErrorCode::FENCED_INSTANCE_ID, old_id),
            ));
        }
        if let Some(t) = m.awaiting_sync.take() {
            out.push(Output::Sync(
                t,
                SyncResponse::error(ErrorCode::FENCED_INSTANCE_ID),
            ));
        }
        m.id = new_id.clone();
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        m.protocol_type = req.protocol_type;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.session_deadline_ms = now_ms + req.session_timeout_ms as i64;
        m.awaiting_join = Some(token);
        if let Some(i) = &req.group_instance_id {
            g.static_members.insert(i.clone(), new_id.clone());
        }
        if g.is_leader(old_id) {
            g.leader = Some(new_id.clone());
        }
        if g.pending_sync.remove(old_id) {
            g.pending_sync.insert(new_id.clone());
        }
        match g.state {
            GroupState::Stable if g.select_protocol() == g.protocol_name => {
                // Kafka: no rebalance. The response names the leader as it
                // was, so a restarted leader does not compute an assignment
                // that a Stable group would never hand out.
                push_persist_group(g, out);
                let mut resp = self.join_ok(g, &new_id, Vec::new());
                resp.leader = leader_before;
                if let Some(m) = g.member_mut(&new_id) {
                    m.awaiting_join = None;
                }
                out.push(Output::Join(token, resp));
            }
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(g, now_ms, out),
        }
    }

    fn maybe_prepare_rebalance(&mut self, g: &mut Group, now_ms: i64, out: &mut Vec<Output>) {
        if matches!(
            g.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(g, now_ms, out);
        }
    }

    fn prepare_rebalance(&mut self, g: &mut Group, now_ms: i64, out: &mut Vec<Output>) {
        if g.state == GroupState::CompletingRebalance {
            for m in &mut g.members {
                m.assignment = Bytes::new();
                if let Some(t) = m.awaiting_sync.take() {
                    // Kept alive while its SyncGroup was held, perhaps for longer
                    // than its session: it gets a full session to rejoin (Kafka
                    // keeps it until the rebalance times out).
                    m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
                    out.push(Output::Sync(
                        t,
                        SyncResponse::error(ErrorCode::REBALANCE_IN_PROGRESS),
                    ));
                }
            }
        }
        g.pending_sync.clear();
        g.pending_sync_deadline_ms = None;
        let timeout_ms = g.rebalance_timeout_ms();
        g.join_timer = Some(if g.state == GroupState::Empty {
            let delay = self.config.initial_rebalance_delay_ms.max(0);
            JoinTimer {
                deadline_ms: now_ms + delay,
                initial: true,
                remaining_ms: (timeout_ms - delay).max(0),
            }
        } else {
            JoinTimer {
                deadline_ms: now_ms + timeout_ms,
                initial: false,
                remaining_ms: 0,
            }
        });
        g.new_member_added = false;
        g.transition(GroupState::PreparingRebalance, now_ms);
    }

    /// Complete the rebalance in progress if every member rejoined (or its
    /// time is up); the initial delay of a new group completes only on time.
    fn maybe_complete_join(&mut self, g: &mut Group, now_ms: i64, out: &mut Vec<Output>) {
        loop {
            if g.state != GroupState::PreparingRebalance {
                return;
            }
            let Some(t) = g.join_timer else {
                return;
            };
            if t.initial {
                if now_ms < t.deadline_ms {
                    return;
                }
                if g.new_member_added && t.remaining_ms > 0 {
                    g.new_member_added = false;
                    let delay = self.config.initial_rebalance_delay_ms.min(t.remaining_ms);
                    // Timers fire at their time even if the tick comes late.
                    g.join_timer = Some(JoinTimer {
                        deadline_ms: t.deadline_ms + delay,
                        initial: true,
                        remaining_ms: t.remaining_ms - delay,
                    });
                    continue;
                }
            } else if !g.all_joined() && now_ms < t.deadline_ms {
                return;
            }
            self.complete_join(g, now_ms, out);
            return;
        }
    }

    fn complete_join(&mut self, g: &mut Group, now_ms: i64, out: &mut Vec<Output>) {
        g.join_timer = None;
        g.new_member_added = false;
        let gone: Vec<String> = g
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            Self::remove_member(g, &id, out);
        }
        g.generation = g.generation.wrapping_add(1);
        if g.members.is_empty() {
            g.protocol_name = None;
            g.leader = None;
            tracing::info!(group = %g.id, generation = g.generation, "group rebalanced: no members left");
            g.transition(GroupState::Empty, now_ms);
            push_persist_group(g, out);
            return;
        }
        g.protocol_name = g.select_protocol();
        assert!(
            g.protocol_name.is_some(),
            "group {}: members share no protocol",
            g.id
        );
        if g.leader.as_deref().is_none_or(|l| !g.has(l)) {
            g.leader = g.members.first().map(|m| m.id.clone());
        }
        tracing::info!(
            group = %g.id,
            generation = g.generation,
            members = g.members.len(),
            protocol = g.protocol_name.as_deref().unwrap_or(""),
            leader = g.leader.as_deref().unwrap_or(""),
            "group rebalanced"
        );
        g.transition(GroupState::CompletingRebalance, now_ms);
        let leader_members = g.join_members();
        let mut responses = Vec::with_capacity(g.members.len());
        for m in &mut g.members {
            m.is_new = false;
            m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
            if let Some(t) = m.awaiting_join.take() {
                responses.push((t, m.id.clone()));
            }
        }
        for (t, id) in responses {
            let members = if g.is_leader(&id) {
                leader_members.clone()
            } else {
                Vec::new()
            };
            out.push(Output::Join(t, self.join_ok(g, &id, members)));
        }
        g.pending_sync = g.members.iter().map(|m| m.id.clone()).collect();
        g.pending_sync_deadline_ms = Some(now_ms + g.rebalance_timeout_ms());
    }

    /// Take a member out of the group's books, answering its held requests.
    fn remove_member(g: &mut Group, id: &str, out: &mut Vec<Output>) {
        let Some(pos) = g.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = g.members.remove(pos);
        if let Some(t) = m.awaiting_join {
            out.push(Output::Join(
                t,
                JoinResponse::error(ErrorCode::UNKNOWN_MEMBER_ID, id),
            ));
        }
        if let Some(t) = m.awaiting_sync {
            out.push(Output::Sync(
                t,
                SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID),
            ));
        }
        if let Some(i) = &m.instance_id {
            if g.static_members.get(i).map(String::as_str) == Some(id) {
                g.static_members.remove(i);
            }
        }
        g.pending_sync.remove(id);
        if g.pending_sync.is_empty() {
            g.pending_sync_deadline_ms = None;
        }
        if g.is_leader(id) {
            g.leader = g
                .members
                .iter()
                .find(|m| m.awaiting_join.is_some())
                .or(g.members.first())
                .map(|m| m.id.clone());
        }
    }

    /// Remove a member and rebalance the rest (Kafka's `removeMemberAndUpdateGroup`).
    fn remove_member_and_update_group(
        &mut self,
        g: &mut Group,
        id: &str,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        Self::remove_member(g, id, out);
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(g, now_ms, out)
            }
            // PreparingRebalance: the caller checks whether the join can complete now.
            _ => {}
        }
    }

    // ------------------------------------------------------------ SyncGroup

    /// SyncGroup. The response comes as [`Output::Sync`] with `token`: at once,
    /// or (followers) when the leader sends the assignments.
    pub fn sync(
        &mut self,
        token: RequestToken,
        req: SyncRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        if req.group_id.is_empty() {
            out.push(Output::Sync(
                token,
                SyncResponse::error(ErrorCode::INVALID_GROUP_ID),
            ));
            return;
        }
        let group_id = req.group_id.clone();
        let handled = self.with_group(&group_id, now_ms, out, |this, g, out| {
            this.sync_in(g, token, req, now_ms, out)
        });
        if handled.is_none() {
            out.push(Output::Sync(
                token,
                SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID),
            ));
        }
    }

    fn sync_in(
        &mut self,
        g: &mut Group,
        token: RequestToken,
        req: SyncRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let fail = |out: &mut Vec<Output>, code: ErrorCode| {
            out.push(Output::Sync(token, SyncResponse::error(code)));
        };
        if g.state == GroupState::Dead {
            return fail(out, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if g.static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fail(out, ErrorCode::FENCED_INSTANCE_ID);
        }
        if !g.has(&req.member_id) {
            return fail(out, ErrorCode::UNKNOWN_MEMBER_ID);
        }
        if req.generation_id != g.generation {
            return fail(out, ErrorCode::ILLEGAL_GENERATION);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != g.protocol_name.as_ref())
        {
            return fail(out, ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
        match g.state {
            GroupState::Empty | GroupState::Dead => fail(out, ErrorCode::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => fail(out, ErrorCode::REBALANCE_IN_PROGRESS),
            GroupState::CompletingRebalance => {
                g.pending_sync.remove(&req.member_id);
                if g.pending_sync.is_empty() {
                    g.pending_sync_deadline_ms = None;
                }
                if let Some(m) = g.member_mut(&req.member_id) {
                    m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
                    if let Some(old) = m.awaiting_sync.replace(token) {
                        out.push(Output::Sync(
                            old,
                            SyncResponse::error(ErrorCode::REBALANCE_IN_PROGRESS),
                        ));
                    }
                }
                if g.is_leader(&req.member_id) {
                    let assigned: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in &mut g.members {
                        m.assignment = assigned.get(&m.id).cloned().unwrap_or_default();
                    }
                    g.transition(GroupState::Stable, now_ms);
                    push_persist_group(g, out);
                    for m in &mut g.members {
                        if let Some(t) = m.awaiting_sync.take() {
                            m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
                            out.push(Output::Sync(
                                t,
                                SyncResponse {
                                    error: ErrorCode::NONE,
                                    protocol_type: g.protocol_type.clone(),
                                    protocol_name: g.protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            GroupState::Stable => {
                g.pending_sync.remove(&req.member_id);
                if g.pending_sync.is_empty() {
                    g.pending_sync_deadline_ms = None;
                }
                let protocol_type = g.protocol_type.clone();
                let protocol_name = g.protocol_name.clone();
                if let Some(m) = g.member_mut(&req.member_id) {
                    m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
                    out.push(Output::Sync(
                        token,
                        SyncResponse {
                            error: ErrorCode::NONE,
                            protocol_type,
                            protocol_name,
                            assignment: m.assignment.clone(),
                        },
                    ));
                }
            }
        }
    }

    // ------------------------------------------------------------ Heartbeat

    /// Heartbeat: NONE, or REBALANCE_IN_PROGRESS to make the member rejoin.
    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> ErrorCode {
        if req.group_id.is_empty() {
            return ErrorCode::INVALID_GROUP_ID;
        }
        let group_id = req.group_id.clone();
        self.with_group(&group_id, now_ms, out, |_, g, _| {
            if g.state == GroupState::Dead {
                return ErrorCode::COORDINATOR_NOT_AVAILABLE;
            }
            if g.static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
                return ErrorCode::FENCED_INSTANCE_ID;
            }
            if !g.has(&req.member_id) {
                return ErrorCode::UNKNOWN_MEMBER_ID;
            }
            if req.generation_id != g.generation {
                return ErrorCode::ILLEGAL_GENERATION;
            }
            let state = g.state;
            if state == GroupState::Empty {
                return ErrorCode::UNKNOWN_MEMBER_ID;
            }
            if let Some(m) = g.member_mut(&req.member_id) {
                m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
            }
            if state == GroupState::PreparingRebalance {
                ErrorCode::REBALANCE_IN_PROGRESS
            } else {
                ErrorCode::NONE
            }
        })
        .unwrap_or(ErrorCode::UNKNOWN_MEMBER_ID)
    }

    // ------------------------------------------------------------ LeaveGroup

    /// LeaveGroup (v3+ carries several members; v0-v2 one, by member id).
    pub fn leave(
        &mut self,
        group_id: &str,
        members: Vec<LeaveMember>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> LeaveResponse {
        let result = |m: &LeaveMember, error: ErrorCode| LeaveMemberResult {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            error,
        };
        if group_id.is_empty() {
            return LeaveResponse {
                error: ErrorCode::INVALID_GROUP_ID,
                members: Vec::new(),
            };
        }
        let handled = self.with_group(group_id, now_ms, out, |this, g, out| {
            if g.state == GroupState::Dead {
                return LeaveResponse {
                    error: ErrorCode::COORDINATOR_NOT_AVAILABLE,
                    members: Vec::new(),
                };
            }
            let mut results = Vec::with_capacity(members.len());
            for m in &members {
                let error = match &m.group_instance_id {
                    Some(instance) => match g.static_members.get(instance).cloned() {
                        None => ErrorCode::UNKNOWN_MEMBER_ID,
                        Some(current) if !m.member_id.is_empty() && current != m.member_id => {
                            ErrorCode::FENCED_INSTANCE_ID
                        }
                        Some(current) => {
                            this.remove_member_and_update_group(g, &current, now_ms, out);
                            ErrorCode::NONE
                        }
                    },
                    None => {
                        if g.pending_members.remove(&m.member_id).is_some() {
                            ErrorCode::NONE
                        } else if g.has(&m.member_id) {
                            this.remove_member_and_update_group(g, &m.member_id, now_ms, out);
                            ErrorCode::NONE
                        } else {
                            ErrorCode::UNKNOWN_MEMBER_ID
                        }
                    }
                };
                results.push(result(m, error));
            }
            LeaveResponse {
                error: ErrorCode::NONE,
                members: results,
            }
        });
        handled.unwrap_or_else(|| LeaveResponse {
            error: ErrorCode::NONE,
            members: members
                .iter()
                .map(|m| result(m, ErrorCode::UNKNOWN_MEMBER_ID))
                .collect(),
        })
    }

    // ------------------------------------------------------------ offsets

    /// OffsetCommit. Persist outputs come first; answer after they are durable.
    /// Whether the topics and partitions exist is the broker's check.
    pub fn commit_offsets(
        &mut self,
        req: CommitRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Vec<TopicResult> {
        self.commit_offsets_undoable(req, now_ms, out).0
    }

    /// OffsetCommit, plus what it changed: if its records cannot be written,
    /// the shell passes that to [`GroupCoordinator::undo_commit`] (before
    /// anything else runs) and answers with an error.
    pub fn commit_offsets_undoable(
        &mut self,
        req: CommitRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> (Vec<TopicResult>, CommitUndo) {
        let mut undo = CommitUndo {
            group_id: req.group_id.clone(),
            previous: Vec::new(),
        };
        let results = self.commit_in(req, now_ms, out, &mut undo);
        (results, undo)
    }

    /// Put back the offsets a commit replaced (its records were not written).
    /// Touches nothing else, and outputs nothing.
    pub fn undo_commit(&mut self, undo: CommitUndo) {
        if undo.previous.is_empty() {
            return;
        }
        let Some(mut g) = self.groups.remove(&undo.group_id) else {
            return;
        };
        for (key, previous) in undo.previous.into_iter().rev() {
            match previous {
                Some(c) => g.offsets.insert(key, c),
                None => g.offsets.remove(&key),
            };
        }
        // A group this commit created goes away again.
        self.put_back(g);
    }

    fn commit_in(
        &mut self,
        req: CommitRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
        undo: &mut CommitUndo,
    ) -> Vec<TopicResult> {
        let all = |req: &CommitRequest, code: ErrorCode| -> Vec<TopicResult> {
            req.topics
                .iter()
                .map(|t| TopicResult {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| (p.partition, code)).collect(),
                })
                .collect()
        };
        // An empty group id is a group like any other here: Kafka refuses it
        // for membership (JoinGroup) but still takes and serves offsets for
        // it, as consumers without a group id once committed to "".
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 {
                return all(&req, ErrorCode::ILLEGAL_GENERATION);
            }
            // A commit outside group management creates the group.
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now_ms));
        }
        let group_id = req.group_id.clone();
        let metadata_max = self.config.offset_metadata_bytes_max;
        self.with_group(&group_id, now_ms, out, |this, g, out| {
            let check = if g.state == GroupState::Dead {
                ErrorCode::COORDINATOR_NOT_AVAILABLE
            } else if g.static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
                ErrorCode::FENCED_INSTANCE_ID
            } else if req.generation_id < 0 && g.state == GroupState::Empty {
                ErrorCode::NONE
            } else if g.state == GroupState::CompletingRebalance {
                ErrorCode::REBALANCE_IN_PROGRESS
            } else if !g.has(&req.member_id) {
                ErrorCode::UNKNOWN_MEMBER_ID
            } else if req.generation_id != g.generation {
                ErrorCode::ILLEGAL_GENERATION
            } else {
                if let Some(m) = g.member_mut(&req.member_id) {
                    m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
                }
                ErrorCode::NONE
            };
            if !check.is_none() {
                return all(&req, check);
            }
            let mut results = Vec::with_capacity(req.topics.len());
            for t in &req.topics {
                let mut parts = Vec::with_capacity(t.partitions.len());
                for p in &t.partitions {
                    let metadata = p.metadata.clone().unwrap_or_default();
                    if metadata.len() > metadata_max {
                        parts.push((p.partition, ErrorCode::OFFSET_METADATA_TOO_LARGE));
                        continue;
                    }
                    let c = Committed {
                        offset: p.offset.0,
                        leader_epoch: p.leader_epoch.0,
                        metadata,
                        commit_timestamp_ms: now_ms,
                    };
                    out.push(Output::Persist {
                        group_id: g.id.clone(),
                        key: records::encode_offset_key(&g.id, &t.name, p.partition.0),
                        value: Some(records::encode_offset_value(&OffsetValue {
                            offset: c.offset,
                            leader_epoch: c.leader_epoch,
                            metadata: c.metadata.clone(),
                            commit_timestamp_ms: c.commit_timestamp_ms,
                        })),
                    });
                    supersede(&mut this.pending_txn, &g.id, &t.name, p.partition.0);
                    let previous = g.offsets.insert((t.name.clone(), p.partition.0), c);
                    undo.previous
                        .push(((t.name.clone(), p.partition.0), previous));
                    parts.push((p.partition, ErrorCode::NONE));
                }
                results.push(TopicResult {
                    name: t.name.clone(),
                    partitions: parts,
                });
            }
            results
        })
        .unwrap_or_default()
    }

    /// OffsetFetch for one group (call once per group for v8+ batches).
    /// `topics: None` = every partition with a committed offset.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[TopicPartitions]>,
    ) -> FetchOffsetsResponse {
        self.fetch_offsets_stable(group_id, topics, false)
    }

    /// OffsetFetch with v7's `require_stable` (KIP-447): a partition with a
    /// transactional commit waiting for its marker is answered
    /// UNSTABLE_OFFSET_COMMIT (offset -1), which clients retry.
    pub fn fetch_offsets_stable(
        &self,
        group_id: &str,
        topics: Option<&[TopicPartitions]>,
        require_stable: bool,
    ) -> FetchOffsetsResponse {
        let g = self.groups.get(group_id);
        let lookup = |topic: &str, partition: PartitionIndex| -> FetchedOffset {
            if require_stable && self.has_pending_txn_offset(group_id, topic, partition.0) {
                return FetchedOffset {
                    partition,
                    offset: Offset::NONE,
                    leader_epoch: LeaderEpoch::UNKNOWN,
                    metadata: String::new(),
                    error: ErrorCode::UNSTABLE_OFFSET_COMMIT,
                };
            }
            match g.and_then(|g| g.offsets.get(&(topic.to_owned(), partition.0))) {
                Some(c) => FetchedOffset {
                    partition,
                    offset: Offset(c.offset),
                    leader_epoch: LeaderEpoch(c.leader_epoch),
                    metadata: c.metadata.clone(),
                    error: ErrorCode::NONE,
                },
                None => FetchedOffset {
                    partition,
                    offset: Offset::NONE,
                    leader_epoch: LeaderEpoch::UNKNOWN,
                    metadata: String::new(),
                    error: ErrorCode::NONE,
                },
            }
        };
        let topics = match topics {
            Some(ts) => ts
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| lookup(&t.name, *p)).collect(),
                })
                .collect(),
            None => {
                let mut out: Vec<FetchedTopic> = Vec::new();
                for (topic, partition) in g.into_iter().flat_map(|g| g.offsets.keys()) {
                    let fetched = lookup(topic, PartitionIndex(*partition));
                    match out.last_mut() {
                        Some(last) if last.name == *topic => last.partitions.push(fetched),
                        _ => out.push(FetchedTopic {
                            name: topic.clone(),
                            partitions: vec![fetched],
                        }),
                    }
                }
                out
            }
        };
        FetchOffsetsResponse {
            error: ErrorCode::NONE,
            topics,
        }
    }

    fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let key = (group_id.to_owned(), topic.to_owned(), partition);
        self.pending_txn.values().any(|p| p.contains_key(&key))
    }

    /// Producers with transactional offset commits waiting for a marker.
    pub fn pending_txn_producers(&self) -> Vec<i64> {
        self.pending_txn.keys().copied().collect()
    }

    /// TxnOffsetCommit (Kafka's `commitTransactionalOffsets`): the group's
    /// checks as OffsetCommit's, except that a request naming no member
    /// (generation -1, no member id, no instance id) is taken from any group
    /// and a rebalance in progress does not refuse it; the offsets are kept
    /// pending for the producer until its marker ([`Self::complete_txn`]).
    /// Persist outputs come first: the shell appends them as one
    /// transactional batch of the producer, and answers once durable (or
    /// undoes with [`Self::undo_txn_commit`]). Whether the producer is in a
    /// transaction holding this group's partition is the shell's check.
    pub fn txn_commit_offsets(
        &mut self,
        req: TxnCommitRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> (Vec<TopicResult>, TxnCommitUndo) {
        let mut undo = TxnCommitUndo {
            producer_id: req.producer_id,
            previous: Vec::new(),
        };
        let all = |code: ErrorCode| -> Vec<TopicResult> {
            req.topics
                .iter()
                .map(|t| TopicResult {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| (p.partition, code)).collect(),
                })
                .collect()
        };
        let check = match self.groups.get(&req.group_id) {
            None if req.generation_id >= 0 => ErrorCode::ILLEGAL_GENERATION,
            None => ErrorCode::NONE,
            Some(g) => txn_commit_check(g, &req),
        };
        if !check.is_none() {
            return (all(check), undo);
        }
        let metadata_max = self.config.offset_metadata_bytes_max;
        let mut results = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let metadata = p.metadata.clone().unwrap_or_default();
                if metadata.len() > metadata_max {
                    parts.push((p.partition, ErrorCode::OFFSET_METADATA_TOO_LARGE));
                    continue;
                }
                let c = Committed {
                    offset: p.offset.0,
                    leader_epoch: p.leader_epoch.0,
                    metadata,
                    commit_timestamp_ms: now_ms,
                };
                out.push(Output::Persist {
                    group_id: req.group_id.clone(),
                    key: records::encode_offset_key(&req.group_id, &t.name, p.partition.0),
                    value: Some(records::encode_offset_value(&OffsetValue {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata.clone(),
                        commit_timestamp_ms: c.commit_timestamp_ms,
                    })),
                });
                let key = (req.group_id.clone(), t.name.clone(), p.partition.0);
                let previous = self.pending_txn.entry(req.producer_id).or_default().insert(
                    key.clone(),
                    PendingTxnOffset {
                        committed: c,
                        superseded: false,
                    },
                );
                undo.previous.push((key, previous.map(|p| p.committed)));
                parts.push((p.partition, ErrorCode::NONE));
            }
            results.push(TopicResult {
                name: t.name.clone(),
                partitions: parts,
            });
        }
        (results, undo)
    }

    /// Take back what a TxnOffsetCommit added (its records were not written).
    pub fn undo_txn_commit(&mut self, undo: TxnCommitUndo) {
        let Some(pending) = self.pending_txn.get_mut(&undo.producer_id) else {
            return;
        };
        for (key, previous) in undo.previous.into_iter().rev() {
            match previous {
                Some(committed) => {
                    pending.insert(
                        key,
                        PendingTxnOffset {
                            committed,
                            superseded: false,
                        },
                    );
                }
                None => {
                    pending.remove(&key);
                }
            }
        }
        if pending.is_empty() {
            self.pending_txn.remove(&undo.producer_id);
        }
    }

    /// The producer's transaction ended with a marker in this shard's
    /// partition (written, or read back at load): on COMMIT its pending
    /// offsets become the groups' committed offsets (except where a plain
    /// commit came later), on ABORT they are dropped. Writes nothing.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool, now_ms: i64) {
        let Some(pending) = self.pending_txn.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for ((group, topic, partition), p) in pending {
            if p.superseded {
                continue;
            }
            let mut g = self
                .groups
                .remove(&group)
                .unwrap_or_else(|| Group::new(&group, now_ms));
            g.offsets.insert((topic, partition), p.committed);
            self.put_back(g);
        }
        assert!(
            !self.pending_txn.contains_key(&producer_id),
            "a completed transaction leaves no pending offsets"
        );
    }

    /// Replay of an offset record written by a TxnOffsetCommit (a
    /// transactional batch of `producer_id`): pending until the marker.
    pub fn replay_transactional(
        &mut self,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        match (records::decode_key(key)?, value) {
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(v),
            ) => {
                let v = records::decode_offset_value(v)?;
                self.pending_txn.entry(producer_id).or_default().insert(
                    (group, topic, partition),
                    PendingTxnOffset {
                        committed: Committed {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp_ms,
                        },
                        superseded: false,
                    },
                );
                Ok(())
            }
            // Kafka writes nothing else transactionally; anything else is applied as is.
            _ => self.replay(key, value),
        }
    }

    /// Every committed offset of a group, for lag (log end offset minus committed).
    pub fn committed_offsets(&self, group_id: &str) -> Vec<(String, PartitionIndex, Offset)> {
        self.groups
            .get(group_id)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), c)| (t.clone(), PartitionIndex(*p), Offset(c.offset)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// OffsetDelete.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[TopicPartitions],
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> DeleteOffsetsResponse {
        let fail = |error: ErrorCode| DeleteOffsetsResponse {
            error,
            topics: Vec::new(),
        };
        if group_id.is_empty() {
            return fail(ErrorCode::INVALID_GROUP_ID);
        }
        self.with_group(group_id, now_ms, out, |_, g, out| {
            let subscribed = match g.state {
                GroupState::Dead => return fail(ErrorCode::GROUP_ID_NOT_FOUND),
                GroupState::Empty => BTreeSet::new(),
                _ => {
                    if g.protocol_type.as_deref() != Some("consumer") {
                        return fail(ErrorCode::NON_EMPTY_GROUP);
                    }
                    match g.subscribed_topics() {
                        Some(s) => s,
                        // Unknown subscriptions: every topic counts as subscribed.
                        None => topics.iter().map(|t| t.name.clone()).collect(),
                    }
                }
            };
            let mut results = Vec::with_capacity(topics.len());
            for t in topics {
                let mut parts = Vec::with_capacity(t.partitions.len());
                for p in &t.partitions {
                    if subscribed.contains(&t.name) {
                        parts.push((*p, GROUP_SUBSCRIBED_TO_TOPIC));
                        continue;
                    }
                    if g.offsets.remove(&(t.name.clone(), p.0)).is_some() {
                        push_offset_tombstone(&g.id, &t.name, p.0, out);
                    }
                    parts.push((*p, ErrorCode::NONE));
                }
                results.push(TopicResult {
                    name: t.name.clone(),
                    partitions: parts,
                });
            }
            DeleteOffsetsResponse {
                error: ErrorCode::NONE,
                topics: results,
            }
        })
        .unwrap_or_else(|| fail(ErrorCode::GROUP_ID_NOT_FOUND))
    }

    // ------------------------------------------------------------ admin

    /// ListGroups. `states` empty = all; `types` (v5+) empty = all, and every
    /// group here is of type "classic".
    pub fn list(&self, states: &[GroupState], types: &[String]) -> Vec<ListedGroup> {
        if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            return Vec::new();
        }
        self.groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    /// DescribeGroups. An unknown group is described as Dead with no error (Kafka before v6).
    pub fn describe(&self, group_ids: &[String]) -> Vec<DescribedGroup> {
        group_ids
            .iter()
            .map(|id| match self.groups.get(id) {
                None => DescribedGroup {
                    group_id: id.clone(),
                    error: if id.is_empty() {
                        ErrorCode::INVALID_GROUP_ID
                    } else {
                        ErrorCode::NONE
                    },
                    state: GroupState::Dead,
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                },
                Some(g) => {
                    let stable = g.state == GroupState::Stable;
                    let protocol = g.protocol_name.clone().unwrap_or_default();
                    DescribedGroup {
                        group_id: id.clone(),
                        error: ErrorCode::NONE,
                        state: g.state,
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        protocol: if stable {
                            protocol.clone()
                        } else {
                            String::new()
                        },
                        members: g
                            .members
                            .iter()
                            .map(|m| DescribedMember {
                                member_id: m.id.clone(),
                                group_instance_id: m.instance_id.clone(),
                                client_id: m.client_id.clone(),
                                client_host: m.client_host.clone(),
                                metadata: if stable {
                                    m.metadata_for(&protocol).cloned().unwrap_or_default()
                                } else {
                                    Bytes::new()
                                },
                                assignment: if stable {
                                    m.assignment.clone()
                                } else {
                                    Bytes::new()
                                },
                            })
                            .collect(),
                    }
                }
            })
            .collect()
    }

    /// DeleteGroups: only empty groups; their offsets and metadata get tombstones.
    pub fn delete(
        &mut self,
        group_ids: &[String],
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Vec<(String, ErrorCode)> {
        let mut results = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            // An empty group id names a group like any other (it may hold
            // offsets, see `commit_offsets`), as Kafka deletes it.
            let Some(mut g) = self.groups.remove(id) else {
                results.push((id.clone(), ErrorCode::GROUP_ID_NOT_FOUND));
                continue;
            };
            self.advance(&mut g, now_ms, out);
            self.maybe_complete_join(&mut g, now_ms, out);
            match g.state {
                GroupState::Empty => {
                    Self::bury(&mut g, now_ms, out);
                    results.push((id.clone(), ErrorCode::NONE));
                }
                GroupState::Dead => results.push((id.clone(), ErrorCode::GROUP_ID_NOT_FOUND)),
                _ => {
                    results.push((id.clone(), ErrorCode::NON_EMPTY_GROUP));
                    self.groups.insert(g.id.clone(), g);
                }
            }
            self.reindex(id);
        }
        results
    }

    /// Tombstone everything of an empty group and mark it Dead (it is not put back).
    fn bury(g: &mut Group, now_ms: i64, out: &mut Vec<Output>) {
        for (topic, partition) in std::mem::take(&mut g.offsets).into_keys() {
            push_offset_tombstone(&g.id, &topic, partition, out);
        }
        g.transition(GroupState::Dead, now_ms);
        out.push(Output::Persist {
            group_id: g.id.clone(),
            key: records::encode_group_key(&g.id),
            value: None,
        });
    }

    // ------------------------------------------------------------ time

    /// Process everything due at `now_ms`: expired sessions and pending
    /// members, rebalances whose time is up, members that never sent
    /// SyncGroup, and (every `offsets_retention_check_interval_ms`) offsets
    /// past retention.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let ids: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| id.clone())
            .collect();
        for id in ids {
            self.with_group(&id, now_ms, out, |_, _, _| ());
        }
        match self.next_retention_check_ms {
            None => {
                self.next_retention_check_ms =
                    Some(now_ms + self.config.offsets_retention_check_interval_ms)
            }
            Some(at) if now_ms >= at => {
                self.expire_offsets(now_ms, out);
                self.next_retention_check_ms =
                    Some(now_ms + self.config.offsets_retention_check_interval_ms);
            }
            Some(_) => {}
        }
    }

    /// The group's timers, without completing a join (the caller does).
    fn advance(&mut self, g: &mut Group, now_ms: i64, out: &mut Vec<Output>) {
        g.pending_members.retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = g
            .members
            .iter()
            .filter(|m| !m.kept_alive() && m.session_deadline_ms <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update_group(g, &id, now_ms, out);
        }
        if let Some(at) = g.pending_sync_deadline_ms {
            if now_ms >= at
                && matches!(
                    g.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                )
            {
                let laggards: Vec<String> = g.pending_sync.iter().cloned().collect();
                g.pending_sync_deadline_ms = None;
                for id in laggards {
                    self.remove_member_and_update_group(g, &id, now_ms, out);
                }
            }
        }
    }

    fn expire_offsets(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let retention_ms = self.config.offsets_retention_ms;
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(mut g) = self.groups.remove(&id) else {
                continue;
            };
            let expired: Vec<(String, i32)> = match g.state {
                GroupState::Empty => {
                    // Kafka (KIP-211): offsets of an empty group expire once it
                    // has been empty for the retention period; we also wait for
                    // the retention period after the last commit.
                    let empty_since = if g.protocol_type.is_some() {
                        g.state_timestamp_ms
                    } else {
                        i64::MIN
                    };
                    g.offsets
                        .iter()
                        .filter(|(_, c)| {
                            c.commit_timestamp_ms
                                .max(empty_since)
                                .saturating_add(retention_ms)
                                <= now_ms
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                }
                GroupState::Dead => Vec::new(),
                _ => match g.subscribed_topics() {
                    Some(subscribed) => g
                        .offsets
                        .iter()
                        .filter(|((t, _), c)| {
                            !subscribed.contains(t)
                                && c.commit_timestamp_ms.saturating_add(retention_ms) <= now_ms
                        })
                        .map(|(k, _)| k.clone())
                        .collect(),
                    None => Vec::new(),
                },
            };
            for (topic, partition) in expired {
                g.offsets.remove(&(topic.clone(), partition));
                push_offset_tombstone(&g.id, &topic, partition, out);
            }
            if g.state == GroupState::Empty
                && g.offsets.is_empty()
                && g.members.is_empty()
                && g.pending_members.is_empty()
            {
                Self::bury(&mut g, now_ms, out);
            } else {
                self.groups.insert(id.clone(), g);
            }
            self.reindex(&id);
        }
    }

    /// The earliest time at which [`GroupCoordinator::tick`] has something to
    /// do. Cheap (an index lookup): the shell calls it after every call.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let groups = self.deadlines.first().map(|(at, _)| *at);
        match (groups, self.next_retention_check_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ------------------------------------------------------------ replay

    /// Apply one `__consumer_offsets` record (in log order) at start-up.
    /// A record that cannot be read is reported and changes nothing.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        match records::decode_key(key)? {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => match value {
                None => {
                    if let Some(mut g) = self.groups.remove(&group) {
                        g.offsets.remove(&(topic, partition));
                        self.put_back(g);
                    }
                }
                Some(v) => {
                    let v = records::decode_offset_value(v)?;
                    supersede(&mut self.pending_txn, &group, &topic, partition);
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, -1));
                    g.offsets.insert(
                        (topic, partition),
                        Committed {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp_ms,
                        },
                    );
                }
            },
            RecordKey::Group { group } => match value {
                None => {
                    if let Some(mut g) = self.groups.remove(&group) {
                        let offsets = std::mem::take(&mut g.offsets);
                        let mut fresh = Group::new(&group, -1);
                        fresh.offsets = offsets;
                        self.put_back(fresh);
                    }
                }
                Some(v) => {
                    let v = records::decode_group_value(v)?;
                    let offsets = self
                        .groups
                        .remove(&group)
                        .map(|g| g.offsets)
                        .unwrap_or_default();
                    let mut g = Group::new(&group, v.current_state_timestamp_ms);
                    g.offsets = offsets;
                    g.generation = v.generation;
                    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
                    g.protocol_name = v.protocol.clone();
                    let protocol = v.protocol.unwrap_or_default();
                    for mv in v.members {
                        let duplicate = g.has(&mv.member_id)
                            || mv
                                .group_instance_id
                                .as_ref()
                                .is_some_and(|i| g.static_members.contains_key(i));
                        if duplicate {
                            continue;
                        }
                        if let Some(i) = &mv.group_instance_id {
                            g.static_members.insert(i.clone(), mv.member_id.clone());
                        }
                        g.members.push(Member {
                            id: mv.member_id,
                            instance_id: mv.group_instance_id,
                            client_id: mv.client_id,
                            client_host: mv.client_host,
                            rebalance_timeout_ms: mv.rebalance_timeout_ms,
                            session_timeout_ms: mv.session_timeout_ms,
                            protocol_type: g.protocol_type.clone().unwrap_or_default(),
                            protocols: vec![Protocol {
                                name: protocol.clone(),
                                metadata: mv.subscription,
                            }],
                            assignment: mv.assignment,
                            awaiting_join: None,
                            awaiting_sync: None,
                            is_new: false,
                            session_deadline_ms: i64::MAX,
                        });
                    }
                    if g.members.is_empty() || g.protocol_name.is_none() {
                        g.members.clear();
                        g.static_members.clear();
                        g.protocol_name = None;
                        g.state = GroupState::Empty;
                    } else {
                        g.state = GroupState::Stable;
                        g.leader = v.leader.filter(|l| g.has(l));
                        if g.leader.is_none() {
                            g.leader = g.members.first().map(|m| m.id.clone());
                        }
                    }
                    self.put_back(g);
                }
            },
        }
        Ok(())
    }

    /// End of replay: members loaded from disk must heartbeat within their
    /// session timeout from now.
    pub fn finish_replay(&mut self, now_ms: i64) {
        for g in self.groups.values_mut() {
            for m in &mut g.members {
                m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
            }
        }
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.reindex(&id);
        }
        self.next_retention_check_ms =
            Some(now_ms + self.config.offsets_retention_check_interval_ms);
    }

    // ------------------------------------------------------------ introspection

    /// State, generation and member ids of a group (tests, CLI, metrics).
    pub fn group_summary(&self, group_id: &str) -> Option<(GroupState, i32, Vec<String>)> {
        self.groups.get(group_id).map(|g| {
            (
                g.state,
                g.generation,
                g.members.iter().map(|m| m.id.clone()).collect(),
            )
        })
    }

    /// Leader of a group, if it has one.
    pub fn group_leader(&self, group_id: &str) -> Option<String> {
        self.groups.get(group_id).and_then(|g| g.leader.clone())
    }

    #[cfg(test)]
    pub(crate) fn debug_deadlines(&self) -> String {
        format!(
            "{:?} {:?}",
            self.deadlines,
            self.groups
                .values()
                .map(|g| format!(
                    "{:?} pending={:?} members={:?} jt={:?} ps={:?}",
                    g.state,
                    g.pending_members,
                    g.members
                        .iter()
                        .map(|m| (
                            m.id.clone(),
                            m.session_deadline_ms,
                            m.kept_alive(),
                            m.is_new,
                            m.awaiting_join,
                            m.awaiting_sync
                        ))
                        .collect::<Vec<_>>(),
                    g.join_timer,
                    g.pending_sync_deadline_ms
                ))
                .collect::<Vec<_>>()
        )
    }

    /// Number of groups held (including empty ones with offsets).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Assert the bookkeeping invariants of every group (tests and simulation).
    pub fn check_invariants(&self) {
        assert_eq!(
            self.deadlines.len(),
            self.deadline_of.len(),
            "deadline index"
        );
        for (at, id) in &self.deadlines {
            assert_eq!(self.deadline_of.get(id), Some(at), "deadline index of {id}");
        }
        for (id, g) in &self.groups {
            assert_eq!(
                self.deadline_of.get(id).copied(),
                g.next_deadline_ms(),
                "{id}: stale deadline index"
            );
        }
        for id in self.deadline_of.keys() {
            assert!(self.groups.contains_key(id), "{id}: indexed but gone");
        }
        for g in self.groups.values() {
            let ids: BTreeSet<&str> = g.members.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(ids.len(), g.members.len(), "{}: duplicate member ids", g.id);
            for (instance, member) in &g.static_members {
                let m = g.member(member);
                assert!(
                    m.is_some_and(|m| m.instance_id.as_deref() == Some(instance.as_str())),
                    "{}: static member {instance} -> {member} dangling",
                    g.id
                );
            }
            for m in &g.members {
                if let Some(i) = &m.instance_id {
                    assert_eq!(g.static_members.get(i), Some(&m.id), "{}: {}", g.id, m.id);
                }
                assert!(
                    !g.pending_members.contains_key(&m.id),
                    "{}: {} both pending and member",
                    g.id,
                    m.id
                );
                if m.awaiting_join.is_some() || m.is_new {
                    assert_eq!(g.state, GroupState::PreparingRebalance, "{}", g.id);
                }
                if m.awaiting_sync.is_some() {
                    assert_eq!(g.state, GroupState::CompletingRebalance, "{}", g.id);
                }
            }
            match &g.leader {
                Some(l) => assert!(g.has(l), "{}: leader {l} is not a member", g.id),
                None => assert!(g.members.is_empty(), "{}: members but no leader", g.id),
            }
            assert_eq!(
                g.join_timer.is_some(),
                g.state == GroupState::PreparingRebalance,
                "{}: join timer in state {:?}",
                g.id,
                g.state
            );
            match g.state {
                GroupState::Empty => assert!(g.members.is_empty(), "{}: Empty with members", g.id),
                GroupState::Stable | GroupState::CompletingRebalance => {
                    assert!(
                        !g.members.is_empty(),
                        "{}: {:?} without members",
                        g.id,
                        g.state
                    );
                    let p = g.protocol_name.as_deref();
                    assert!(p.is_some(), "{}: no protocol", g.id);
                    let p = p.unwrap_or_default();
                    assert!(g.members.iter().all(|m| m.supports(p)), "{}", g.id);
                }
                _ => {}
            }
            for id in &g.pending_sync {
                assert!(g.has(id), "{}: pending sync {id} is not a member", g.id);
            }
            if !g.pending_sync.is_empty() {
                assert!(matches!(
                    g.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ));
            }
        }
    }
}
