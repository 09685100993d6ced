//! One group's state: members, generation, chosen protocol, committed offsets.
//! Pure data and small queries; the transitions live in `coordinator.rs`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::records::{self, GroupValue, MemberValue};
use crate::{GroupState, JoinMember, Protocol, RequestToken};

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// A held JoinGroup.
    pub awaiting_join: Option<RequestToken>,
    /// A held SyncGroup.
    pub awaiting_sync: Option<RequestToken>,
    /// Joined during the current rebalance and not yet part of a generation.
    pub is_new: bool,
    /// When the member is dropped unless it heartbeats (or is kept alive, see `kept_alive`).
    pub session_deadline_ms: i64,
}

impl Member {
    /// Kafka's `shouldKeepAlive`: a member whose JoinGroup (old members) or
    /// SyncGroup is held is not expired by its session timeout; the rebalance
    /// timeout takes care of it.
    pub fn kept_alive(&self) -> bool {
        self.awaiting_sync.is_some() || (self.awaiting_join.is_some() && !self.is_new)
    }

    pub fn metadata_for(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| &p.metadata)
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }
}

/// What the rebalance in progress waits for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JoinTimer {
    pub deadline_ms: i64,
    /// The initial delay of a new (empty) group: completes only on time,
    /// extended while new members keep arriving.
    pub initial: bool,
    /// Initial delay only: how much of the rebalance timeout is left to extend by.
    pub remaining_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// In join order (the leader is re-elected in this order).
    pub members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with their expiry deadline.
    pub pending_members: BTreeMap<String, i64>,
    /// instance id → member id.
    pub static_members: BTreeMap<String, String>,
    pub join_timer: Option<JoinTimer>,
    pub new_member_added: bool,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    pub pending_sync_deadline_ms: Option<i64>,
    pub offsets: BTreeMap<(String, i32), Committed>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending_members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            join_timer: None,
            new_member_added: false,
            pending_sync: BTreeSet::new(),
            pending_sync_deadline_ms: None,
            offsets: BTreeMap::new(),
        }
    }

    pub fn transition(&mut self, to: GroupState, now_ms: i64) {
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub fn has(&self, id: &str) -> bool {
        self.member(id).is_some()
    }

    pub fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    /// Kafka's `isStaticMemberFenced`: the instance id is known under another member id.
    pub fn static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    /// The earliest of this group's timers: pending member ids, sessions of
    /// members not kept alive, the rebalance in progress, members that have
    /// not sent SyncGroup. Exactly what `advance` and `maybe_complete_join` act on.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let pending = self.pending_members.values().copied();
        let sessions = self
            .members
            .iter()
            .filter(|m| !m.kept_alive())
            .map(|m| m.session_deadline_ms);
        let join = self.join_timer.map(|t| t.deadline_ms);
        let sync = self.pending_sync_deadline_ms.filter(|_| {
            matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
        });
        pending.chain(sessions).chain(join).chain(sync).min()
    }

    /// Largest rebalance timeout of the members (how long a rebalance may take).
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout_ms.max(0) as i64)
            .max()
            .unwrap_or(0)
    }

    pub fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    /// Protocols every member supports, in the first member's order of preference.
    fn candidates(&self) -> Vec<&str> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect()
    }

    /// Whether a member with these protocols may join (Kafka's `supportsProtocols`).
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidates()
                .iter()
                .any(|c| protocols.iter().any(|p| p.name == *c))
    }

    /// Kafka's `selectProtocol`: among the protocols all members support, each
    /// member votes for its most preferred one; most votes wins, ties go to
    /// the first member's preference.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes = vec![0usize; candidates.len()];
        for m in &self.members {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|p| candidates.iter().position(|c| *c == p.name))
            {
                votes[i] += 1;
            }
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|(_, bv)| *v > bv) {
                best = Some((i, *v));
            }
        }
        best.map(|(i, _)| candidates[i].to_owned())
    }

    /// Members with their metadata for the chosen protocol (the leader's JoinGroup response).
    pub fn join_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .iter()
            .map(|m| JoinMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Topics the members subscribe to, if the group uses the consumer
    /// protocol and every subscription can be read; `None` = unknown.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            topics.extend(records::subscription_topics(m.metadata_for(protocol)?)?);
        }
        Some(topics)
    }

    /// The group metadata record value for its current state.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .iter()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(protocol).cloned().unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}
