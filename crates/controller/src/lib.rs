//! The KRaft controller's logic as a deterministic, sans-IO state machine
//! (after Kafka's `QuorumController` with its `ClusterControlManager`,
//! `ReplicationControlManager`, `BrokerHeartbeatManager` and
//! `ProducerIdControlManager`).
//!
//! A [`Controller`] takes requests and the time (`now_ms`) and answers with a
//! [`ControllerResult`]: the metadata records to propose and the response
//! to send once they are committed. It never writes anything itself. It
//! replays the records it returns into its own image at once (as Kafka's
//! controller replays before the commit, into timeline data structures), so
//! the next request sees them; if a proposal fails the shell calls
//! [`Controller::reset`] with the last committed image (Kafka reverts to its
//! last committed snapshot).
//!
//! - Brokers: [`Controller::register_broker`] (cluster id, duplicate live id,
//!   supported feature ranges; the new registration is fenced and its epoch
//!   is the offset its RegisterBrokerRecord takes in the metadata log, as in
//!   Kafka, computed as the image's end offset plus the records before it);
//!   [`Controller::heartbeat`] (Kafka's `BrokerHeartbeatManager` states:
//!   fenced until the broker's metadata offset reaches its registration
//!   record, then unfenced; `wantShutDown` enters controlled shutdown, which
//!   moves leadership and ISR membership away first, and is granted once the
//!   broker leads nothing and every active broker has seen that);
//!   [`Controller::tick`] fences brokers whose session
//!   (`broker.session.timeout.ms`) expired, or whose connection to this
//!   controller closed ([`Controller::connection_lost`]) with no heartbeat
//!   since for `disconnect_fence_ms` (a process killed with `kill -9` closes
//!   its sockets at once: waiting out a whole session for it only delays
//!   its partitions' new leaders; Fjord's own addition) or that has not
//!   heartbeated to a newly activated controller within
//!   `activation_fence_ms` (a killed controller's own broker never will;
//!   only brokers that are quorum voters, `activation_fence_only`, and
//!   that have not fetched the metadata log from its node since either,
//!   [`Controller::quorum_fetched`]: a live broker has its whole session),
//!   and, with
//!   `auto.leader.rebalance.enable`, moves leadership back to preferred
//!   replicas every `leader.imbalance.check.interval.seconds`.
//! - Leadership: when a broker is fenced or enters controlled shutdown, each
//!   partition whose ISR holds it gets a PartitionChangeRecord (Kafka's
//!   `PartitionChangeBuilder`): the ISR without it (without ELR, unless that
//!   would be empty: the ISR is then left alone) and, if it led, the first
//!   replica in the new ISR that is active, or -1. The leader epoch rises
//!   only with a new leader (the `Leader` field set). When a broker is
//!   unfenced it becomes leader of the leaderless partitions whose ISR holds it.
//! - Eligible leader replicas (KIP-966, `eligible.leader.replicas.version`
//!   1; nothing changes while it is 0): a replica leaving an ISR that is
//!   then below the topic's `min.insync.replicas` joins the partition's
//!   ELR, the ISR may become empty, an empty ISR's leader comes from the
//!   ELR, then from the last known leader; a broker that registers again
//!   without proof of a clean shutdown (`previous_broker_epoch`) leaves
//!   every ISR and ELR. See [`Controller::min_insync_replicas`] and
//!   `build_change`.
//! - Topics: [`Controller::create_topics`] (placement by [`placement`],
//!   Kafka's errors), [`Controller::create_partitions`],
//!   [`Controller::elect_preferred_leaders`].
//! - ISR changes: [`Controller::alter_partition`] (AlterPartition from a
//!   partition's leader, Kafka's checks and error codes; `alter_partition`).
//! - Producer ids: [`Controller::allocate_producer_ids`], blocks of
//!   `limits::PRODUCER_ID_BLOCK_SIZE` ids in ProducerIdsRecords.
//!
//! Soft state (not in the log): each broker's heartbeat session. A
//! controller that becomes active ([`Controller::activate`]) starts every
//! registered broker's session at that moment, so no broker is fenced for
//! the controller's own absence, and a new incarnation of a live id is
//! refused (DUPLICATE_BROKER_REGISTRATION) until the old one's session ends.
//!
//! [`sim`] drives a controller and simulated brokers from a seed and checks
//! the invariants ([`check_image`]) after every step.

pub mod alter_partition;
pub mod elr_sim;
pub mod placement;
pub mod reassignment;

pub mod sim;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fjord_metadata::{MetadataDelta, MetadataImage, PartitionRegistration};
use fjord_model::limits::{
    BROKER_DISCONNECT_FENCE_MS, BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
    BROKER_REGISTRATION_FEATURES_MAX, BROKER_REGISTRATION_LISTENERS_MAX,
    BROKER_REGISTRATION_LOG_DIRS_MAX, BROKER_SESSION_TIMEOUT_MS_DEFAULT,
    LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT, METADATA_RECORDS_PER_PROPOSAL_MAX,
    PARTITIONS_PER_TOPIC_MAX, PRODUCER_ID_BLOCK_SIZE,
};
use fjord_model::{is_valid_topic_name, ErrorCode, NodeId, Offset};
use fjord_protocol::metadata_records::register_broker_record::{BrokerEndpoint, BrokerFeature};
use fjord_protocol::metadata_records::{
    BrokerRegistrationChangeRecord, ConfigRecord, MetadataRecord, PartitionChangeRecord,
    PartitionRecord, ProducerIdsRecord, RegisterBrokerRecord, TopicRecord,
};
use uuid::Uuid;

use crate::placement::{place, UsableBroker};
use fjord_sim::Rng;

/// Kafka's "no leader" and "leader unchanged" values.
pub const NO_LEADER: i32 = -1;
pub const NO_LEADER_CHANGE: i32 = -2;
/// Kafka's `LeaderRecoveryState`: RECOVERED (0) and RECOVERING (1).
pub const LEADER_RECOVERED: i8 = 0;
pub const LEADER_RECOVERING: i8 = 1;
const CONFIG_RESOURCE_TOPIC: i8 = fjord_metadata::image::CONFIG_RESOURCE_TOPIC;

/// Bugs that can be switched on to show that the simulator finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlantedBug {
    #[default]
    None,
    /// Fencing a broker leaves its leaderships in place.
    FenceKeepsLeadership,
    /// Elections pick the first replica, in the ISR or not.
    ElectOutsideIsr,
    /// A producer-id block starts where the previous one started.
    ReuseProducerIdBlock,
    /// A second incarnation of a live broker id is accepted.
    AcceptDuplicateRegistration,
    /// An unfenced broker does not take over leaderless partitions.
    NoElectionOnUnfence,
    /// A reassignment completes without waiting for its new replicas to
    /// join the ISR.
    CompleteReassignmentEarly,
}

/// Settings of a controller (Kafka's names in the docs).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// A broker whose connection to the controller closed and that has not
    /// heartbeated since is fenced after this long (`None`: only the
    /// session timeout fences).
    pub disconnect_fence_ms: Option<i64>,
    /// A broker that has not heartbeated to a newly active controller
    /// within this long is fenced (`None`: only the session timeout
    /// fences). Live brokers find the new controller within about one
    /// heartbeat interval; a dead one (say the previous controller's own
    /// node) never does.
    pub activation_fence_ms: Option<i64>,
    /// The brokers `activation_fence_ms` applies to: the quorum's voters
    /// (a combined node learns of a new quorum leader at once, from its
    /// BeginQuorumEpoch). A broker-only node finds the new controller
    /// through its metadata fetches, which can take longer than the grace;
    /// only its session fences it, as Kafka's do. `None`: every broker.
    pub activation_fence_only: Option<Vec<NodeId>>,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// The first producer id of a cluster (Kafka: 0).
    pub first_producer_id: i64,
    /// The static `min.insync.replicas` (Kafka's 1): the ELR's threshold
    /// for a topic with neither a topic config nor a cluster-wide one.
    pub min_insync_replicas: usize,
    /// Seeds the generator for topic ids and placement start positions.
    pub seed: u64,
    pub planted_bug: PlantedBug,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            disconnect_fence_ms: Some(BROKER_DISCONNECT_FENCE_MS),
            activation_fence_ms: Some(activation_fence_ms(BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT)),
            activation_fence_only: None,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
            first_producer_id: 0,
            min_insync_replicas: fjord_model::limits::MIN_INSYNC_REPLICAS_DEFAULT,
            seed: 0,
            planted_bug: PlantedBug::None,
        }
    }
}

/// The default `activation_fence_ms` for brokers heartbeating every
/// `heartbeat_interval_ms`: one interval (a broker that heartbeated to the
/// previous controller just before it went learns of the new one at its
/// next heartbeat) and a margin to reconnect.
pub fn activation_fence_ms(heartbeat_interval_ms: i64) -> i64 {
    heartbeat_interval_ms.saturating_add(2 * BROKER_DISCONNECT_FENCE_MS)
}

/// Records to propose and the response to send once they are committed.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerResult<T> {
    pub records: Vec<MetadataRecord>,
    pub response: T,
}

/// A Kafka error code with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControllerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ControllerError {
        ControllerError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ControllerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

/// A listener a broker advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: i16,
}

/// A feature a broker supports, with its version range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureRange {
    pub name: String,
    pub min: i16,
    pub max: i16,
}

/// A BrokerRegistration request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: NodeId,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    pub features: Vec<FeatureRange>,
    /// The broker's log directory ids (KIP-858). Fjord brokers send none;
    /// an Apache Kafka broker sends one per log directory and registers
    /// again until its registration in the metadata log carries them.
    pub log_dirs: Vec<Uuid>,
    /// The broker epoch the broker had when it last shut down cleanly
    /// (KIP-966; -1: none, the shutdown was not clean).
    pub previous_broker_epoch: i64,
}

/// A BrokerHeartbeat request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerHeartbeat {
    pub broker_id: NodeId,
    pub broker_epoch: i64,
    /// The offset up to which the broker has applied the metadata log.
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// A BrokerHeartbeat response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    pub should_shut_down: bool,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NewTopic {
    pub name: String,
    /// -1: take `default_partitions` of the call.
    pub num_partitions: i32,
    /// -1: take `default_replication_factor` of the call.
    pub replication_factor: i16,
    /// Manual assignment: replicas of partition 0, 1, ... (then the two
    /// counts above must be -1).
    pub assignments: Vec<Vec<i32>>,
    /// Explicit configs, already validated by the caller.
    pub configs: BTreeMap<String, String>,
}

/// A created (or, validate-only, creatable) topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// A producer-id block: `[first, first + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub size: i64,
}

#[derive(Clone, Debug)]
struct Session {
    last_contact_ms: i64,
    /// The broker is fenced unless it heartbeats before this (set when
    /// this controller activates and when the broker's connection closes;
    /// cleared by a heartbeat).
    contact_deadline_ms: Option<i64>,
    /// `contact_deadline_ms` is the activation grace (not a lost
    /// connection's): [`Controller::quorum_fetched`] lifts it.
    activation_grace: bool,
    /// The metadata offset the broker last reported (-1: none yet).
    metadata_offset: i64,
    /// Set when the broker entered controlled shutdown: the end offset of
    /// the records that moved its leaderships away.
    controlled_shutdown_offset: Option<i64>,
}

/// The controller state machine. See the crate docs.
#[derive(Clone, Debug)]
pub struct Controller {
    cfg: ControllerConfig,
    /// The last committed image plus every record this controller returned since.
    image: MetadataImage,
    sessions: BTreeMap<NodeId, Session>,
    rng: Rng,
    next_rebalance_ms: i64,
    /// When this controller became active.
    activated_ms: i64,
}

type Outcome<T> = Result<ControllerResult<T>, ControllerError>;

fn is_active(reg: &RegisterBrokerRecord) -> bool {
    !reg.fenced && !reg.in_controlled_shutdown
}

impl Controller {
    /// A controller that becomes active on `image` (the committed metadata) at `now_ms`.
    pub fn activate(cfg: ControllerConfig, image: MetadataImage, now_ms: i64) -> Controller {
        let sessions = image
            .brokers()
            .keys()
            .map(|id| {
                let contact_deadline_ms = cfg
                    .activation_fence_ms
                    .filter(|_| {
                        cfg.activation_fence_only
                            .as_ref()
                            .is_none_or(|only| only.contains(id))
                    })
                    .map(|grace| now_ms.saturating_add(grace));
                (
                    *id,
                    Session {
                        last_contact_ms: now_ms,
                        activation_grace: contact_deadline_ms.is_some(),
                        contact_deadline_ms,
                        metadata_offset: -1,
                        controlled_shutdown_offset: None,
                    },
                )
            })
            .collect();
        Controller {
            activated_ms: now_ms,
            rng: Rng::new(cfg.seed),
            next_rebalance_ms: now_ms.saturating_add(cfg.leader_imbalance_check_interval_ms),
            cfg,
            image,
            sessions,
        }
    }

    /// The image with every record this controller returned (committed or not).
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// Back to the committed `image` (a proposal failed, or records came
    /// from elsewhere). Sessions of brokers it does not hold are dropped.
    pub fn reset(&mut self, image: MetadataImage) {
        self.sessions.retain(|id, _| image.broker(*id).is_some());
        self.image = image;
    }

    /// Broker `id`'s connection to this controller closed at `closed_ms`
    /// (the one its last heartbeat came on): unless it heartbeats again
    /// within `disconnect_fence_ms`, a [`Controller::tick`] fences it. A
    /// heartbeat this controller took after `closed_ms` (on a new
    /// connection, handled first) already says the broker lives.
    pub fn connection_lost(&mut self, id: NodeId, closed_ms: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.last_contact_ms <= closed_ms {
                if let Some(grace) = self.cfg.disconnect_fence_ms {
                    s.contact_deadline_ms = Some(closed_ms.saturating_add(grace));
                    s.activation_grace = false;
                }
            }
        }
    }

    /// Whether some broker is still under the activation grace (neither
    /// heartbeated to this controller nor known to live): the shell then
    /// reports the quorum's fetches ([`Controller::quorum_fetched`]).
    pub fn awaits_activation_contact(&self) -> bool {
        self.sessions.values().any(|s| s.activation_grace)
    }

    /// Broker `id`'s node fetched the metadata log from this controller's
    /// node at `at_ms` (the quorum's last fetch time of that replica). A
    /// fetch since the activation proves the node lives: the activation
    /// grace no longer applies to it, only its session, which started at
    /// the activation (as every broker's does in Kafka's controller). A
    /// live broker that has not found the new controller yet (its
    /// heartbeats follow the quorum leader it knows) is then not fenced for
    /// that; the dead node of the previous controller fetches nothing and
    /// is still fenced after `activation_fence_ms`. A deadline a lost
    /// connection set stays.
    pub fn quorum_fetched(&mut self, id: NodeId, at_ms: i64) {
        if at_ms < self.activated_ms {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.activation_grace {
                s.activation_grace = false;
                s.contact_deadline_ms = None;
            }
        }
    }

    /// Forgets broker `id`'s session, so that a new incarnation may register
    /// at once. Only for a shell that knows the old incarnation is gone (a
    /// single node registering itself at start: it is the only process).
    pub fn forget_session(&mut self, id: NodeId) {
        self.sessions.remove(&id);
    }

    /// Replays `records` into this controller's image. Every record the
    /// controller makes must replay (asserted: that is our own invariant).
    fn replay(&mut self, records: &[MetadataRecord]) {
        if records.is_empty() {
            return;
        }
        let mut delta = MetadataDelta::new(&self.image);
        for r in records {
            if let Err(e) = delta.replay(r) {
                panic!("the controller made a record that does not replay: {e}: {r:?}");
            }
        }
        delta.set_end_offset(Offset(self.image.end_offset().0 + records.len() as i64));
        self.image = delta.apply();
    }

    fn done<T>(&mut self, records: Vec<MetadataRecord>, response: T) -> ControllerResult<T> {
        self.replay(&records);
        ControllerResult { records, response }
    }

    fn has_valid_session(&self, id: NodeId, now_ms: i64) -> bool {
        let unfenced = self.image.broker(id).is_some_and(|b| !b.fenced);
        unfenced
            && self.sessions.get(&id).is_some_and(|s| {
                s.last_contact_ms
                    .saturating_add(self.cfg.session_timeout_ms)
                    >= now_ms
            })
    }

    // ---- brokers ----

    /// BrokerRegistration (Kafka's `ClusterControlManager.registerBroker`).
    pub fn register_broker(&mut self, now_ms: i64, req: &BrokerRegistration) -> Outcome<i64> {
        if req.cluster_id != self.image.cluster_id() {
            return Err(ControllerError::new(
                ErrorCode::INCONSISTENT_CLUSTER_ID,
                format!(
                    "Expected cluster ID {}, but got cluster ID {}",
                    self.image.cluster_id(),
                    req.cluster_id
                ),
            ));
        }
        if req.broker_id.0 < 0 {
            return Err(ControllerError::new(
                ErrorCode::INVALID_REQUEST,
                format!("invalid broker id {}", req.broker_id),
            ));
        }
        if req.listeners.len() > BROKER_REGISTRATION_LISTENERS_MAX
            || req.features.len() > BROKER_REGISTRATION_FEATURES_MAX
            || req.log_dirs.len() > BROKER_REGISTRATION_LOG_DIRS_MAX
        {
            return Err(ControllerError::new(
                ErrorCode::INVALID_REQUEST,
                "too many listeners, features or log directories",
            ));
        }
        // Kafka's rules for directory ids (ClusterControlManager): none of
        // the reserved ids (the all-zero ones below 100), no id twice.
        let mut dirs = req.log_dirs.clone();
        dirs.sort_unstable();
        dirs.dedup();
        if dirs.len() != req.log_dirs.len() {
            return Err(ControllerError::new(
                ErrorCode::INVALID_REGISTRATION,
                "Duplicate directory ID in request",
            ));
        }
        if req.log_dirs.iter().any(|d| d.as_u128() < 100) {
            return Err(ControllerError::new(
                ErrorCode::INVALID_REGISTRATION,
                "Reserved directory ID in request",
            ));
        }
        if let Some(existing) = self.image.broker(req.broker_id) {
            if existing.incarnation_id != req.incarnation_id
                && self.has_valid_session(req.broker_id, now_ms)
                && self.cfg.planted_bug != PlantedBug::AcceptDuplicateRegistration
            {
                return Err(ControllerError::new(
                    ErrorCode::DUPLICATE_BROKER_REGISTRATION,
                    format!(
                        "Another broker is registered with that broker id {}.",
                        req.broker_id
                    ),
                ));
            }
        }
        // Every finalized feature's level must be in the broker's range
        // (a feature it does not name counts as 0..=0, as in Kafka).
        for (name, level) in self.image.features() {
            let (min, max) = req
                .features
                .iter()
                .find(|f| &f.name == name)
                .map_or((0, 0), |f| (f.min, f.max));
            if *level < min || *level > max {
                return Err(ControllerError::new(
                    ErrorCode::UNSUPPORTED_VERSION,
                    format!(
                        "Unable to register because the broker does not support finalized \
                         version {level} of {name}. The broker wants a version between {min} \
                         and {max}, inclusive."
                    ),
                ));
            }
        }
        let mut records = Vec::new();
        // The old registration's leaderships and ISR places go first: the
        // new registration is fenced (without it a fenced broker would keep
        // leading). A new incarnation whose previous broker epoch is not
        // the registered one did not shut down cleanly (KIP-966, Kafka's
        // ClusterControlManager): with ELR on it leaves the ELRs too.
        if let Some(existing) = self.image.broker(req.broker_id) {
            let clean = req.previous_broker_epoch == existing.broker_epoch;
            if self.image.elr_enabled() && existing.incarnation_id != req.incarnation_id && !clean {
                self.partition_changes_unclean(req.broker_id, &mut records);
            } else {
                self.partition_changes_removing(req.broker_id, &mut records);
            }
        }
        let epoch = self.next_offset_after(&records);
        // The epoch is the record's offset, and epochs of an id only grow.
        assert!(
            self.image
                .broker(req.broker_id)
                .is_none_or(|b| b.broker_epoch < epoch),
            "a new registration's epoch is above the old one's"
        );
        records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: req.broker_id.0,
            incarnation_id: req.incarnation_id,
            broker_epoch: epoch,
            end_points: req
                .listeners
                .iter()
                .map(|l| BrokerEndpoint {
                    name: l.name.clone(),
                    host: l.host.clone(),
                    port: l.port,
                    security_protocol: l.security_protocol,
                    ..Default::default()
                })
                .collect(),
            features: req
                .features
                .iter()
                .map(|f| BrokerFeature {
                    name: f.name.clone(),
                    min_supported_version: f.min,
                    max_supported_version: f.max,
                    ..Default::default()
                })
                .collect(),
            rack: req.rack.clone(),
            fenced: true,
            in_controlled_shutdown: false,
            log_dirs: req.log_dirs.clone(),
            ..Default::default()
        }));
        self.sessions.insert(
            req.broker_id,
            Session {
                last_contact_ms: now_ms,
                contact_deadline_ms: None,
                activation_grace: false,
                metadata_offset: -1,
                controlled_shutdown_offset: None,
            },
        );
        Ok(self.done(records, epoch))
    }

    /// The offset the next record after `pending` (not yet replayed) will take.
    fn next_offset_after(&self, pending: &[MetadataRecord]) -> i64 {
        self.image.end_offset().0 + pending.len() as i64
    }

    fn check_broker_epoch(
        &self,
        id: NodeId,
        epoch: i64,
    ) -> Result<Arc<RegisterBrokerRecord>, ControllerError> {
        match self.image.broker(id) {
            None => Err(ControllerError::new(
                ErrorCode::BROKER_ID_NOT_REGISTERED,
                format!("No broker registration found for broker {id}"),
            )),
            Some(b) if b.broker_epoch != epoch => Err(ControllerError::new(
                ErrorCode::STALE_BROKER_EPOCH,
                format!(
                    "Expected broker epoch {}, but got broker epoch {epoch}",
                    b.broker_epoch
                ),
            )),
            Some(b) => Ok(b.clone()),
        }
    }

    /// BrokerHeartbeat (Kafka's `ReplicationControlManager.processBrokerHeartbeat`
    /// with `BrokerHeartbeatManager.calculateNextBrokerState`).
    pub fn heartbeat(&mut self, now_ms: i64, req: &BrokerHeartbeat) -> Outcome<HeartbeatReply> {
        let reg = self.check_broker_epoch(req.broker_id, req.broker_epoch)?;
        let id = req.broker_id;
        // The registration record's offset is the broker epoch.
        let registration_offset = reg.broker_epoch;
        let mut records = Vec::new();
        #[derive(PartialEq, Clone, Copy, Debug)]
        enum State {
            Fenced,
            Unfenced,
            ControlledShutdown,
            ShutdownNow,
        }
        let current = if reg.fenced {
            State::Fenced
        } else if reg.in_controlled_shutdown {
            State::ControlledShutdown
        } else {
            State::Unfenced
        };
        let next = match current {
            State::Fenced if req.want_shut_down => State::ShutdownNow,
            State::Fenced
                if !req.want_fence && req.current_metadata_offset >= registration_offset =>
            {
                State::Unfenced
            }
            State::Fenced => State::Fenced,
            State::Unfenced if req.want_fence && req.want_shut_down => State::ShutdownNow,
            State::Unfenced if req.want_fence => State::Fenced,
            State::Unfenced if req.want_shut_down => {
                if self.leads_any(id) {
                    State::ControlledShutdown
                } else {
                    State::ShutdownNow
                }
            }
            State::Unfenced => State::Unfenced,
            State::ControlledShutdown | State::ShutdownNow => {
                let shutdown_offset = self
                    .sessions
                    .get(&id)
                    .and_then(|s| s.controlled_shutdown_offset)
                    .unwrap_or(0);
                if !self.leads_any(id) && shutdown_offset <= self.lowest_active_offset(id, req) {
                    State::ShutdownNow
                } else {
                    State::ControlledShutdown
                }
            }
        };
        if next != current {
            match next {
                State::Fenced | State::ShutdownNow => {
                    if !reg.fenced {
                        self.fence_records(id, reg.broker_epoch, &mut records);
                    }
                }
                State::Unfenced => self.unfence_records(id, reg.broker_epoch, &mut records),
                State::ControlledShutdown => {
                    records.push(MetadataRecord::BrokerRegistrationChange(
                        BrokerRegistrationChangeRecord {
                            broker_id: id.0,
                            broker_epoch: reg.broker_epoch,
                            fenced: 0,
                            in_controlled_shutdown: 1,
                            ..Default::default()
                        },
                    ));
                    self.partition_changes_removing(id, &mut records);
                }
            }
        }
        let session = self.sessions.entry(id).or_insert(Session {
            last_contact_ms: now_ms,
            contact_deadline_ms: None,
            activation_grace: false,
            metadata_offset: -1,
            controlled_shutdown_offset: None,
        });
        session.last_contact_ms = session.last_contact_ms.max(now_ms);
        session.contact_deadline_ms = None;
        session.activation_grace = false;
        session.metadata_offset = req.current_metadata_offset;
        if next == State::ControlledShutdown && session.controlled_shutdown_offset.is_none() {
            session.controlled_shutdown_offset =
                Some(self.image.end_offset().0 + records.len() as i64);
        }
        let reply = HeartbeatReply {
            is_caught_up: req.current_metadata_offset >= registration_offset,
            is_fenced: matches!(next, State::Fenced | State::ShutdownNow),
            in_controlled_shutdown: next == State::ControlledShutdown,
            should_shut_down: next == State::ShutdownNow,
        };
        Ok(self.done(records, reply))
    }

    /// The lowest metadata offset reported by an active broker (the one
    /// asking included, with what it reports now).
    fn lowest_active_offset(&self, asking: NodeId, req: &BrokerHeartbeat) -> i64 {
        self.image
            .brokers()
            .iter()
            .filter(|(id, b)| **id != asking && is_active(b))
            .map(|(id, _)| self.sessions.get(id).map_or(-1, |s| s.metadata_offset))
            .chain(std::iter::once(req.current_metadata_offset))
            .min()
            .unwrap_or(req.current_metadata_offset)
    }

    fn leads_any(&self, id: NodeId) -> bool {
        self.image
            .topics()
            .iter()
            .any(|t| t.partitions.values().any(|p| p.leader == id.0))
    }

    /// Records that fence broker `id`: its partitions first, then the change.
    fn fence_records(&self, id: NodeId, epoch: i64, records: &mut Vec<MetadataRecord>) {
        if self.cfg.planted_bug != PlantedBug::FenceKeepsLeadership {
            self.partition_changes_removing(id, records);
        }
        records.push(MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: id.0,
                broker_epoch: epoch,
                fenced: 1,
                in_controlled_shutdown: 0,
                ..Default::default()
            },
        ));
    }

    /// Records that unfence broker `id`: the change, then leadership of the
    /// leaderless partitions whose ISR holds it.
    fn unfence_records(&self, id: NodeId, epoch: i64, records: &mut Vec<MetadataRecord>) {
        records.push(MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: id.0,
                broker_epoch: epoch,
                fenced: -1,
                in_controlled_shutdown: 0,
                ..Default::default()
            },
        ));
        if self.cfg.planted_bug == PlantedBug::NoElectionOnUnfence {
            return;
        }
        for t in self.image.topics().iter() {
            for (index, p) in &t.partitions {
                // Kafka looks at every leaderless partition; only those
                // that name this broker can change.
                let names = p.isr.contains(&id.0)
                    || p.elr.contains(&id.0)
                    || p.last_known_elr.contains(&id.0);
                if p.leader == NO_LEADER && names {
                    let accept = |r: i32| r == id.0 || self.is_active_id(r);
                    if let Some(change) =
                        self.partition_change(t.id, *index, p, p.isr.clone(), &accept, false, None)
                    {
                        records.push(change);
                    }
                }
            }
        }
    }

    fn is_active_id(&self, r: i32) -> bool {
        self.image.broker(NodeId(r)).is_some_and(|b| is_active(b))
    }

    /// For every partition whose ISR holds `id`: the ISR without it and,
    /// if it led, a new leader among the rest (Kafka's
    /// `generateLeaderAndIsrUpdates` with `brokerToRemove`).
    fn partition_changes_removing(&self, id: NodeId, records: &mut Vec<MetadataRecord>) {
        for t in self.image.topics().iter() {
            for (index, p) in &t.partitions {
                if !p.isr.contains(&id.0) && p.leader != id.0 {
                    continue;
                }
                let target: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id.0).collect();
                let accept = |r: i32| r != id.0 && self.is_active_id(r);
                if let Some(change) =
                    self.partition_change(t.id, *index, p, target, &accept, false, None)
                {
                    records.push(change);
                }
            }
        }
    }

    /// Broker `id` registers again after a shutdown that was not clean, with
    /// ELR on (Kafka's `handleBrokerUncleanShutdown`): it leaves the ISR and
    /// the ELR of every partition (its unsynced records may be gone) and
    /// leads none of them.
    fn partition_changes_unclean(&self, id: NodeId, records: &mut Vec<MetadataRecord>) {
        for t in self.image.topics().iter() {
            for (index, p) in &t.partitions {
                if !p.isr.contains(&id.0) && !p.elr.contains(&id.0) && p.leader != id.0 {
                    continue;
                }
                let target: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id.0).collect();
                let accept = |r: i32| r != id.0 && self.is_active_id(r);
                if let Some(change) =
                    self.partition_change(t.id, *index, p, target, &accept, false, Some(id.0))
                {
                    records.push(change);
                }
            }
        }
    }

    /// Kafka's `PartitionChangeBuilder.build`: `None` when nothing
    /// changes. A reassignment in progress completes here once
    /// `target_isr` holds every adding replica ([`reassignment::completion`]):
    /// the removing replicas leave the replicas and the ISR, the leader
    /// moves if it was one of them, and the leader epoch rises so that
    /// their fetches are fenced. `unclean` names a broker that restarted
    /// without a clean shutdown: it leaves the ELR too (KIP-966).
    #[allow(clippy::too_many_arguments)]
    fn partition_change(
        &self,
        topic_id: Uuid,
        index: i32,
        p: &PartitionRegistration,
        target_isr: Vec<i32>,
        accept: &dyn Fn(i32) -> bool,
        preferred: bool,
        unclean: Option<i32>,
    ) -> Option<MetadataRecord> {
        let early = self.cfg.planted_bug == PlantedBug::CompleteReassignmentEarly;
        if let Some((replicas, isr)) = reassignment::completion(p, &target_isr, early) {
            let completed = self.build_change(
                topic_id, index, p, &replicas, isr, accept, preferred, true, unclean,
            );
            // Never complete into a partition without a leader it had.
            if p.leader == NO_LEADER || completed.leader != NO_LEADER {
                return Some(MetadataRecord::PartitionChange(completed));
            }
        }
        let record = self.build_change(
            topic_id,
            index,
            p,
            &p.replicas,
            target_isr,
            accept,
            preferred,
            false,
            unclean,
        );
        let unchanged = record.leader == NO_LEADER_CHANGE
            && record.isr.is_none()
            && record.replicas.is_none()
            && record.eligible_leader_replicas.is_none()
            && record.last_known_elr.is_none()
            && record.leader_recovery_state == -1;
        if unchanged {
            return None;
        }
        Some(MetadataRecord::PartitionChange(record))
    }

    /// The effective `min.insync.replicas` of a topic as the controller
    /// sees it (Kafka's `getTopicEffectiveMinIsr`): the topic's config, else
    /// the cluster-wide dynamic default, else the static default of
    /// [`ControllerConfig::min_insync_replicas`]; at most the replication
    /// factor.
    pub fn min_insync_replicas(&self, topic_id: Uuid) -> usize {
        let Some(t) = self.image.topics().get_by_id(topic_id) else {
            return self.cfg.min_insync_replicas;
        };
        let key = "min.insync.replicas";
        let parse = |v: Option<&String>| v.and_then(|v| v.parse::<usize>().ok());
        let topic = self
            .image
            .configs(&fjord_metadata::image::ConfigResource::Topic(
                t.name.clone(),
            ));
        let cluster = self
            .image
            .configs(&fjord_metadata::image::ConfigResource::Broker(None));
        let min = parse(topic.get(key))
            .or_else(|| parse(cluster.get(key)))
            .unwrap_or(self.cfg.min_insync_replicas);
        let rf = t
            .partitions
            .values()
            .next()
            .map_or(min, |p| p.replicas.len());
        min.min(rf.max(1))
    }

    /// The change of `p` to `replicas` (its own, or a completed
    /// reassignment's) and `target_isr`, with a leader elected among them
    /// (Kafka's `PartitionChangeBuilder` with eligible leader replicas when
    /// `eligible.leader.replicas.version` is 1):
    /// - ELR: while `target_isr` is below the topic's `min.insync.replicas`,
    ///   the replicas leaving the ISR join the ELR (the old ELR and ISR,
    ///   minus the new ISR and a replica that restarted uncleanly); once
    ///   the ISR reaches it, the ELR is emptied. The high watermark cannot
    ///   move while the ISR is that small, so an ELR member holds every
    ///   committed record.
    /// - Election: the current leader if it still may lead, else the first
    ///   acceptable replica in the ISR or, when the ISR is empty, in the
    ///   ELR (it becomes the ISR and leaves the ELR); else, with the ISR and
    ///   ELR both empty, the last known leader if it may lead (an unclean
    ///   election: ISR = it, leader recovery RECOVERING).
    /// - With ELR on, the ISR may become empty (without it an ISR that would
    ///   be empty is left as it is); the last known ELR then records the
    ///   last leader, and is emptied once the partition has a leader again.
    #[allow(clippy::too_many_arguments)]
    fn build_change(
        &self,
        topic_id: Uuid,
        index: i32,
        p: &PartitionRegistration,
        replicas: &[i32],
        target_isr: Vec<i32>,
        accept: &dyn Fn(i32) -> bool,
        preferred: bool,
        completing: bool,
        unclean: Option<i32>,
    ) -> PartitionChangeRecord {
        let elr_on = self.image.elr_enabled();
        let mut target_isr = target_isr;
        let mut target_elr = p.elr.clone();
        if elr_on {
            if target_isr.len() >= self.min_insync_replicas(topic_id) {
                target_elr.clear();
            } else {
                let candidates: BTreeSet<i32> = p.elr.iter().chain(&p.isr).copied().collect();
                target_elr = candidates
                    .into_iter()
                    .filter(|r| !target_isr.contains(r) && Some(*r) != unclean)
                    .filter(|r| replicas.contains(r))
                    .collect();
            }
        }
        let valid = |r: i32| {
            let in_isr = target_isr.contains(&r)
                || (target_isr.is_empty() && target_elr.contains(&r))
                || self.cfg.planted_bug == PlantedBug::ElectOutsideIsr;
            in_isr && replicas.contains(&r) && accept(r)
        };
        let mut unclean_election = false;
        let leader = if preferred && replicas.first().is_some_and(|r| valid(*r)) {
            replicas[0]
        } else if p.leader != NO_LEADER && valid(p.leader) {
            p.leader
        } else if let Some(r) = replicas.iter().copied().find(|r| valid(*r)) {
            r
        } else if elr_on
            && target_isr.is_empty()
            && target_elr.is_empty()
            && p.last_known_elr.len() == 1
            && replicas.contains(&p.last_known_elr[0])
            && accept(p.last_known_elr[0])
        {
            // Kafka's canElectLastKnownLeader. (Kafka elects it even when it
            // may not lead, a fenced broker; Fjord waits for it to be back.)
            unclean_election = true;
            p.last_known_elr[0]
        } else {
            NO_LEADER
        };
        let mut record = PartitionChangeRecord {
            partition_id: index,
            topic_id,
            leader: NO_LEADER_CHANGE,
            leader_recovery_state: -1,
            ..Default::default()
        };
        if leader != p.leader {
            record.leader = leader;
            if target_elr.contains(&leader) {
                target_isr = vec![leader];
                target_elr.retain(|r| *r != leader);
            } else if unclean_election {
                record.isr = Some(vec![leader]);
                if p.leader_recovery_state != LEADER_RECOVERING {
                    record.leader_recovery_state = LEADER_RECOVERING;
                }
            }
        }
        if completing {
            // Kafka's triggerLeaderEpochBumpForReplicaReassignmentIfNeeded:
            // replicas left, so the leader epoch rises (the leader named
            // again) and the removed replicas' requests are fenced.
            if record.leader == NO_LEADER_CHANGE && p.replicas.iter().any(|r| !replicas.contains(r))
            {
                record.leader = p.leader;
            }
        }
        // Kafka's maybeUpdateRecordElr: an unclean election or ELR off
        // empties the ELR.
        if record.isr.is_some() || !elr_on {
            target_elr.clear();
        }
        if target_elr != p.elr {
            record.eligible_leader_replicas = Some(target_elr);
        }
        // Without ELR an ISR that would be empty is left as it is.
        if record.isr.is_none() && (!target_isr.is_empty() || elr_on) && target_isr != p.isr {
            record.isr = Some(target_isr);
        }
        // Kafka's maybeUpdateLastKnownLeader.
        if elr_on {
            let emptied = record.isr.as_ref().is_some_and(|i| i.is_empty());
            if emptied && p.leader != NO_LEADER && p.last_known_elr != [p.leader] {
                record.last_known_elr = Some(vec![p.leader]);
            } else if !emptied
                && (record.leader >= 0 || (p.leader != NO_LEADER && record.leader != NO_LEADER))
                && !p.last_known_elr.is_empty()
            {
                record.last_known_elr = Some(Vec::new());
            }
        }
        if completing {
            record.replicas = Some(replicas.to_vec());
            record.adding_replicas = Some(Vec::new());
            record.removing_replicas = Some(Vec::new());
        }
        record
    }

    /// Time passes: fences brokers whose session expired and, when enabled
    /// and due, moves leadership back to preferred replicas.
    pub fn tick(&mut self, now_ms: i64) -> ControllerResult<()> {
        let mut records = Vec::new();
        let stale: Vec<(NodeId, i64)> = self
            .image
            .brokers()
            .iter()
            .filter(|(_, b)| !b.fenced)
            .filter(|(id, _)| {
                self.sessions.get(id).is_none_or(|s| {
                    let expired = s
                        .last_contact_ms
                        .saturating_add(self.cfg.session_timeout_ms)
                        < now_ms;
                    let gone = s.contact_deadline_ms.is_some_and(|d| d < now_ms);
                    expired || gone
                })
            })
            .map(|(id, b)| (*id, b.broker_epoch))
            .collect();
        for (id, epoch) in stale {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.activation_grace = false;
            }
            // One broker at a time, each seeing the previous one's changes.
            let mut one = Vec::new();
            self.fence_records(id, epoch, &mut one);
            self.replay(&one);
            records.extend(one);
        }
        if self.cfg.auto_leader_rebalance && now_ms >= self.next_rebalance_ms {
            self.next_rebalance_ms =
                now_ms.saturating_add(self.cfg.leader_imbalance_check_interval_ms);
            let mut moves = Vec::new();
            for t in self.image.topics().iter() {
                for (index, p) in &t.partitions {
                    if let Some(r) = self.preferred_election(t.id, *index, p) {
                        moves.push(r);
                    }
                }
            }
            self.replay(&moves);
            records.extend(moves);
        }
        ControllerResult {
            records,
            response: (),
        }
    }

    /// The change making the preferred replica leader, if it is not the
    /// leader and may lead (in the ISR, active).
    fn preferred_election(
        &self,
        topic_id: Uuid,
        index: i32,
        p: &PartitionRegistration,
    ) -> Option<MetadataRecord> {
        let preferred = *p.replicas.first()?;
        if p.leader == preferred || !p.isr.contains(&preferred) || !self.is_active_id(preferred) {
            return None;
        }
        let accept = |r: i32| self.is_active_id(r);
        self.partition_change(topic_id, index, p, p.isr.clone(), &accept, true, None)
    }

    // ---- topics ----

    fn usable_brokers(&self) -> Vec<UsableBroker> {
        self.image
            .brokers()
            .values()
            .filter(|b| is_active(b))
            .map(|b| UsableBroker {
                id: b.broker_id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    fn new_topic_id(&mut self) -> Uuid {
        loop {
            let hi = u128::from(self.rng.next_u64());
            let lo = u128::from(self.rng.next_u64());
            // A version-4 UUID; never the zero or the metadata topic's id.
            let id = uuid::Builder::from_random_bytes(((hi << 64) | lo).to_be_bytes()).into_uuid();
            if id.as_u128() > 1 && self.image.topics().get_by_id(id).is_none() {
                return id;
            }
        }
    }

    /// The partition records for `replicas` (ISR: the active replicas; leader: the first of them).
    fn partition_records(
        &self,
        topic_id: Uuid,
        first_index: i32,
        assignments: &[Vec<i32>],
    ) -> Vec<MetadataRecord> {
        assignments
            .iter()
            .enumerate()
            .map(|(i, replicas)| {
                let isr: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| self.is_active_id(*r))
                    .collect();
                assert!(!isr.is_empty(), "a new partition has an active replica");
                MetadataRecord::Partition(PartitionRecord {
                    partition_id: first_index + i as i32,
                    topic_id,
                    replicas: replicas.clone(),
                    leader: isr[0],
                    isr,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    ..Default::default()
                })
            })
            .collect()
    }

    /// Checks a manual assignment (Kafka's `validateManualPartitionAssignment`).
    fn check_assignment(
        &self,
        replicas: &[i32],
        index: i32,
        rf: Option<usize>,
    ) -> Result<(), ControllerError> {
        let bad = |m: String| {
            Err(ControllerError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                m,
            ))
        };
        if replicas.is_empty() {
            return bad(format!("The manual partition assignment includes an empty replica list for partition {index}."));
        }
        let distinct: BTreeSet<&i32> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return bad(format!("The manual partition assignment includes the broker {} more than once for partition {index}.", replicas[0]));
        }
        if let Some(r) = replicas
            .iter()
            .find(|r| self.image.broker(NodeId(**r)).is_none())
        {
            return bad(format!("The manual partition assignment includes broker {r}, but no such broker is registered."));
        }
        if let Some(rf) = rf {
            if replicas.len() != rf {
                return bad(format!("The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).", replicas.len()));
            }
        }
        if !replicas.iter().any(|r| self.is_active_id(*r)) {
            return bad(format!("All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."));
        }
        Ok(())
    }

    /// CreateTopics. Each topic succeeds or fails alone; `validate_only`
    /// checks and answers without records.
    pub fn create_topics(
        &mut self,
        topics: &[NewTopic],
        default_partitions: i32,
        default_replication_factor: i16,
        validate_only: bool,
    ) -> ControllerResult<Vec<Result<CreatedTopic, ControllerError>>> {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for t in topics {
            let result = self
                .create_topic(t, default_partitions, default_replication_factor)
                .and_then(|(created, recs)| {
                    // One proposal holds every record of the request; Kafka
                    // refuses a user operation over its 10,000 records so.
                    if records.len() + recs.len() > METADATA_RECORDS_PER_PROPOSAL_MAX {
                        Err(ControllerError::new(
                            ErrorCode::POLICY_VIOLATION,
                            "Unable to perform excessively large batch operation.",
                        ))
                    } else {
                        Ok((created, recs))
                    }
                });
            results.push(match result {
                Ok((created, recs)) => {
                    if !validate_only {
                        self.replay(&recs);
                        records.extend(recs);
                    }
                    Ok(created)
                }
                Err(e) => Err(e),
            });
        }
        ControllerResult {
            records,
            response: results,
        }
    }

    fn create_topic(
        &mut self,
        t: &NewTopic,
        default_partitions: i32,
        default_replication_factor: i16,
    ) -> Result<(CreatedTopic, Vec<MetadataRecord>), ControllerError> {
        if !is_valid_topic_name(&t.name) {
            return Err(ControllerError::new(
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                format!("Topic name '{}' is illegal", t.name),
            ));
        }
        if t.name == fjord_model::CLUSTER_METADATA_TOPIC {
            return Err(ControllerError::new(
                ErrorCode::INVALID_REQUEST,
                fjord_model::cluster_metadata_creation_refused(),
            ));
        }
        if self.image.topics().get(&t.name).is_some() {
            return Err(ControllerError::new(
                ErrorCode::TOPIC_ALREADY_EXISTS,
                format!("Topic '{}' already exists.", t.name),
            ));
        }
        let assignments = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(ControllerError::new(
                    ErrorCode::INVALID_REQUEST,
                    "A manual partition assignment was specified, but numPartitions or replicationFactor was not set to -1.",
                ));
            }
            if t.assignments.len() > PARTITIONS_PER_TOPIC_MAX as usize {
                return Err(ControllerError::new(
                    ErrorCode::INVALID_PARTITIONS,
                    format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions"),
                ));
            }
            let rf = t.assignments[0].len();
            for (i, replicas) in t.assignments.iter().enumerate() {
                self.check_assignment(replicas, i as i32, Some(rf))?;
            }
            t.assignments.clone()
        } else {
            let partitions = if t.num_partitions == -1 {
                default_partitions
            } else {
                t.num_partitions
            };
            let rf = if t.replication_factor == -1 {
                default_replication_factor
            } else {
                t.replication_factor
            };
            if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
                return Err(ControllerError::new(
                    ErrorCode::INVALID_PARTITIONS,
                    format!("Number of partitions was set to an invalid non-positive value or above {PARTITIONS_PER_TOPIC_MAX}."),
                ));
            }
            let usable = self.usable_brokers();
            let start = self.rng.below(usable.len().max(1));
            place(&usable, partitions as usize, rf, start).map_err(|e| {
                ControllerError::new(ErrorCode::INVALID_REPLICATION_FACTOR, e.to_string())
            })?
        };
        let topic_id = self.new_topic_id();
        let mut records = vec![MetadataRecord::Topic(TopicRecord {
            name: t.name.clone(),
            topic_id,
            ..Default::default()
        })];
        records.extend(self.partition_records(topic_id, 0, &assignments));
        for (k, v) in &t.configs {
            records.push(MetadataRecord::Config(ConfigRecord {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: t.name.clone(),
                name: k.clone(),
                value: Some(v.clone()),
                ..Default::default()
            }));
        }
        Ok((
            CreatedTopic {
                topic_id,
                num_partitions: assignments.len() as i32,
                replication_factor: assignments[0].len() as i16,
            },
            records,
        ))
    }

    /// CreatePartitions: topic `name` grows to `count` partitions, placed
    /// like the first ones or as `assignments` (for the new ones) say.
    pub fn create_partitions(
        &mut self,
        name: &str,
        count: i32,
        assignments: &[Vec<i32>],
        validate_only: bool,
    ) -> Outcome<()> {
        let Some(topic) = self.image.topics().get(name).cloned() else {
            return Err(ControllerError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Unable to find topic {name}"),
            ));
        };
        let current = topic.partition_count();
        if count < current {
            return Err(ControllerError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("The topic {name} currently has {current} partition(s); {count} would not be an increase."),
            ));
        }
        if count == current {
            return Err(ControllerError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(ControllerError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions"),
            ));
        }
        let added = (count - current) as usize;
        let rf = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len());
        let placed = if !assignments.is_empty() {
            if assignments.len() != added {
                return Err(ControllerError::new(
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    format!("Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.", assignments.len()),
                ));
            }
            for (i, replicas) in assignments.iter().enumerate() {
                self.check_assignment(replicas, current + i as i32, Some(rf))?;
            }
            assignments.to_vec()
        } else {
            let usable = self.usable_brokers();
            let start = self.rng.below(usable.len().max(1));
            place(&usable, added, rf as i16, start).map_err(|e| {
                ControllerError::new(ErrorCode::INVALID_REPLICATION_FACTOR, e.to_string())
            })?
        };
        if validate_only {
            return Ok(ControllerResult {
                records: Vec::new(),
                response: (),
            });
        }
        let records = self.partition_records(topic.id, current, &placed);
        Ok(self.done(records, ()))
    }

    /// ElectLeaders (preferred) for the given partitions; each gets its own
    /// answer: NONE (moved), ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE
    /// or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn elect_preferred_leaders(
        &mut self,
        partitions: &[(String, i32)],
    ) -> ControllerResult<Vec<Result<(), ControllerError>>> {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(partitions.len());
        for (name, index) in partitions {
            let found = self
                .image
                .topics()
                .get(name)
                .and_then(|t| t.partitions.get(index).map(|p| (t.id, p.clone())));
            let Some((topic_id, p)) = found else {
                results.push(Err(ControllerError::new(
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("The partition {name}-{index} does not exist."),
                )));
                continue;
            };
            if p.replicas.first() == Some(&p.leader) {
                results.push(Err(ControllerError::new(
                    ErrorCode::ELECTION_NOT_NEEDED,
                    "Leader election not needed for topic partition.",
                )));
                continue;
            }
            match self.preferred_election(topic_id, *index, &p) {
                Some(change) => {
                    let one = vec![change];
                    self.replay(&one);
                    records.extend(one);
                    results.push(Ok(()));
                }
                None => results.push(Err(ControllerError::new(
                    ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
                    format!("Failed to elect leader for partition {name}-{index} under strategy PREFERRED"),
                ))),
            }
        }
        ControllerResult {
            records,
            response: results,
        }
    }

    // ---- producer ids ----

    /// AllocateProducerIds: the next block for broker `id` at `epoch`.
    pub fn allocate_producer_ids(&mut self, id: NodeId, epoch: i64) -> Outcome<ProducerIdBlock> {
        match self.check_broker_epoch(id, epoch) {
            Ok(_) => {}
            // Kafka's checkBrokerEpoch answers STALE_BROKER_EPOCH for both.
            Err(e) => {
                return Err(ControllerError::new(
                    ErrorCode::STALE_BROKER_EPOCH,
                    e.message,
                ))
            }
        }
        let next = self.image.next_producer_id();
        let first = if next < 0 {
            self.cfg.first_producer_id
        } else {
            next
        };
        let first = if self.cfg.planted_bug == PlantedBug::ReuseProducerIdBlock && next >= 0 {
            next - PRODUCER_ID_BLOCK_SIZE / 2
        } else {
            first
        };
        let Some(end) = first.checked_add(PRODUCER_ID_BLOCK_SIZE) else {
            return Err(ControllerError::new(
                ErrorCode::UNKNOWN_SERVER_ERROR,
                "Exhausted all producerIds.",
            ));
        };
        assert!(
            self.cfg.planted_bug == PlantedBug::ReuseProducerIdBlock || first >= next,
            "a block starts at or after the first id not handed out"
        );
        let records = vec![MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: id.0,
            broker_epoch: epoch,
            next_producer_id: end,
            ..Default::default()
        })];
        Ok(self.done(
            records,
            ProducerIdBlock {
                first,
                size: PRODUCER_ID_BLOCK_SIZE,
            },
        ))
    }
}

/// The invariants of a metadata image that the controller keeps: a fenced
/// broker leads nothing; every leader is in its partition's ISR and
/// replicas and is a registered broker; every partition whose ISR (or, when
/// the ISR is empty, ELR) holds an active broker has a leader; ISR, ELR and
/// replicas hold no duplicates; the ISR and the ELR are disjoint subsets of
/// the replicas; adding and removing replicas are
/// replicas, and none is both.
pub fn check_image(image: &MetadataImage) -> Result<(), String> {
    for t in image.topics().iter() {
        for (index, p) in &t.partitions {
            let at = || format!("{}-{index} ({p:?})", t.name);
            let distinct = |v: &[i32]| v.iter().collect::<BTreeSet<_>>().len() == v.len();
            if !distinct(&p.replicas) || !distinct(&p.isr) {
                return Err(format!("duplicate replicas or ISR members in {}", at()));
            }
            if p.isr.iter().any(|r| !p.replicas.contains(r)) {
                return Err(format!("an ISR member is not a replica in {}", at()));
            }
            if !distinct(&p.elr)
                || p.elr
                    .iter()
                    .any(|r| !p.replicas.contains(r) || p.isr.contains(r))
            {
                return Err(format!(
                    "an ELR member is repeated, not a replica or in the ISR in {}",
                    at()
                ));
            }
            let moving = p.adding_replicas.iter().chain(&p.removing_replicas);
            if moving.clone().any(|r| !p.replicas.contains(r))
                || !distinct(&moving.copied().collect::<Vec<_>>())
            {
                return Err(format!(
                    "adding or removing replicas that are not replicas, or both, in {}",
                    at()
                ));
            }
            if p.leader != NO_LEADER {
                if !p.isr.contains(&p.leader) || !p.replicas.contains(&p.leader) {
                    return Err(format!(
                        "the leader is not in the ISR and replicas of {}",
                        at()
                    ));
                }
                match image.broker(NodeId(p.leader)) {
                    None => return Err(format!("the leader of {} is not registered", at())),
                    Some(b) if b.fenced => {
                        return Err(format!("fenced broker {} leads {}", p.leader, at()))
                    }
                    Some(_) => {}
                }
            } else if p
                .isr
                .iter()
                .chain(p.elr.iter().filter(|_| p.isr.is_empty()))
                .any(|r| image.broker(NodeId(*r)).is_some_and(|b| is_active(b)))
            {
                return Err(format!(
                    "{} has an active ISR member (or, with an empty ISR, ELR member) but no leader",
                    at()
                ));
            }
        }
    }
    Ok(())
}
