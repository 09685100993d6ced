//! Broker configuration: Kafka's broker config names at the edge, typed
//! settings inside. Sources, later ones winning: defaults, a config file
//! (`--config`: a Kafka `server.properties` file, or TOML), `--set NAME=VALUE`
//! flags.
//!
//! Every name Kafka 4.3.1 defines ([`crate::kafka_configs`], generated from
//! Kafka's ConfigDefs) is accepted and validated with Kafka's rules; the ones
//! Fjord acts on ([`FJORD_BROKER_CONFIGS`] and the enforced topic defaults)
//! become typed settings, the others are kept, described, and reported once
//! at start as having no effect ([`BrokerConfig::start_report`]). A name
//! Kafka does not define is accepted and ignored, as Kafka does, and named
//! in a warning at start. An invalid value is an error at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use fjord_model::{limits, NodeId, TimestampType};

/// Typed broker settings.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    /// Host and port announced to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub data_dir: PathBuf,
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    /// `transaction.partition.verification.enable` (KIP-890 part 1): a
    /// partition leader verifies with the transaction coordinator that a
    /// transactional batch's partition is in its producer's transaction
    /// before appending it (`handlers::produce`).
    pub transaction_partition_verification: bool,
    /// `add.partitions.to.txn.retry.backoff.ms` and
    /// `add.partitions.to.txn.retry.backoff.max.ms`: a Produce v12+ whose
    /// partition the coordinator could not add yet (CONCURRENT_TRANSACTIONS:
    /// the previous transaction is still ending) is asked again after the
    /// first, until the second has passed (`handlers::produce`).
    pub add_partitions_to_txn_retry_backoff_ms: u64,
    pub add_partitions_to_txn_retry_backoff_max_ms: u64,
    pub default_replication_factor: i16,
    pub request_bytes_max: usize,
    pub connection_idle_ms: u64,
    /// `max.connections`, `max.connections.per.ip(.overrides)` and
    /// `max.connection.creation.rate` (`crate::connection_quotas`).
    pub connection_limits: crate::connection_quotas::ConnectionLimits,
    /// `queued.max.request.bytes`: bytes of requests read and not yet
    /// dispatched (a Produce: answered) across all connections; `None`
    /// (Kafka's -1) unbounded.
    pub queued_max_request_bytes: Option<usize>,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions (KIP-227)
    /// kept at once; 0 opens none.
    pub fetch_session_cache_slots: usize,
    /// `quota.window.num` and `quota.window.size.seconds`: the samples
    /// client quotas measure rates over (`crate::quotas`).
    pub quota_window: crate::quotas::WindowConfig,
    /// Defaults for topic-level settings (`log.*` broker configs).
    pub topic_defaults: TopicSettings,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// The log cleaner (`log.cleaner.threads`, `log.cleaner.dedupe.buffer.size`,
    /// `log.cleaner.io.max.bytes.per.second`, `log.cleaner.backoff.ms`;
    /// `log.cleaner.enable=false` runs no threads).
    pub cleaner: fjord_storage::CleanerConfig,
    /// `log.cleaner.io.max.bytes.per.second` as Kafka prints it, when given.
    pub cleaner_io_max_printed: Option<String>,
    /// `log.group.commit.syncfs` (Fjord's own, not Kafka's): `auto` (the default)
    /// lets group commit make many partitions durable with one syncfs(2)
    /// (`fjord_storage::StorageLimits::syncfs_min_logs`); `false` syncs each
    /// partition's files with fdatasync.
    pub group_commit_syncfs: bool,
    /// `log.direct.io` (Fjord's own, not Kafka's): `auto` appends to active segments
    /// with O_DIRECT where the filesystem takes it (buffered elsewhere, with one log
    /// line; `fjord_storage::StorageLimits::direct_io`); `false` (the default) writes
    /// through the page cache.
    pub direct_io: bool,
    /// `replica.fetch.durable` (Fjord's own, not Kafka's): `true` (the default)
    /// makes a follower flush what it fetched before its next fetch tells the
    /// leader it holds it, so the high watermark only covers records on stable
    /// storage on every ISR member; `false` reports them from the page cache,
    /// as Kafka does (`fjord_replication::FollowerSettings::durable_fetch`).
    pub replica_fetch_durable: bool,
    /// `log.cache.max.bytes` (Fjord's own): the batch cache, bytes of recently
    /// appended batches a node keeps in memory for consumers and followers when
    /// appends are direct (`fjord_storage::StorageLimits::batch_cache_bytes`; 0 turns
    /// it off; buffered appends leave recent data in the page cache instead).
    pub batch_cache_bytes: usize,
    /// Consumer-group settings (`group.*`, `offsets.retention.minutes`).
    pub groups: GroupSettings,
    /// Transaction coordinator settings (`transaction.state.log.*`).
    pub txns: TxnSettings,
    /// Broker config names given explicitly (file or flags), reported as
    /// STATIC_BROKER_CONFIG; the others are Kafka's defaults.
    pub explicit: BTreeSet<String>,
    /// Kafka broker configs given that Fjord does not act on: the value,
    /// validated with Kafka's rules and printed as Kafka prints it.
    pub no_effect: BTreeMap<String, String>,
    /// Names given that Kafka does not define either (Kafka ignores them).
    pub not_kafka: BTreeSet<String>,
    /// KRaft settings (`process.roles`, `controller.quorum.voters`, ...).
    pub kraft: crate::kraft::KraftConfig,
    /// `broker.rack`: this broker's rack, registered with the controller
    /// and listed by Metadata and DescribeCluster (`None`: no rack).
    pub rack: Option<String>,
    /// `replica.selector.class`: how a leader answers a consumer's fetch
    /// that names its rack (KIP-392).
    pub replica_selector: ReplicaSelector,
    /// `broker.session.timeout.ms`: the active controller fences a broker
    /// that has not heartbeaten for this long (cluster mode).
    pub broker_session_timeout_ms: i64,
    /// `broker.heartbeat.interval.ms`: how often a registered broker
    /// heartbeats to the active controller (cluster mode).
    pub broker_heartbeat_interval_ms: i64,
    /// The `replica.*` settings of replication (cluster mode).
    pub replica: ReplicaSettings,
    /// `listeners` as given (named), controller listeners included; empty
    /// when only the default PLAINTEXT listener on `listen` is used.
    pub named_listeners: Vec<crate::kraft::NamedListener>,
    /// `advertised.listeners` as given (named).
    pub named_advertised: Vec<crate::kraft::NamedListener>,
    /// TLS and SASL settings (`ssl.*`, `sasl.enabled.mechanisms`,
    /// `listener.name.<l>.*`), see [`crate::security`].
    pub security: crate::security::SecuritySettings,
    /// `authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer`:
    /// ACLs are enforced (see `crate::security::authorizer`).
    pub authorizer_enabled: bool,
    /// `super.users` and `allow.everyone.if.no.acl.found` (used only with
    /// an authorizer).
    pub authorizer: crate::security::authorizer::AuthorizerConfig,
}

/// `replica.selector.class` (KIP-392): which replica a consumer reads from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicaSelector {
    /// Unset (Kafka's `LeaderSelector`): consumers read from the leader;
    /// the leader names no preferred read replica.
    #[default]
    Leader,
    /// Kafka's `RackAwareReplicaSelector`: a consumer whose `client.rack`
    /// holds an in-sync follower and not the leader is sent to it.
    RackAware,
}

/// The `replica.selector.class` Fjord acts on as Kafka's rack-aware selector.
pub const RACK_AWARE_REPLICA_SELECTOR: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";
/// Kafka's default selector, named explicitly.
pub const LEADER_REPLICA_SELECTOR: &str = "org.apache.kafka.common.replica.LeaderSelector";

/// The broker configs (other than the `log.*`-style topic defaults, see
/// [`TopicConfigDef::enforced`]) whose value changes what Fjord does, in
/// name order. Every other Kafka broker config is accepted without effect.
pub const FJORD_BROKER_CONFIGS: &[&str] = &[
    "add.partitions.to.txn.retry.backoff.max.ms",
    "add.partitions.to.txn.retry.backoff.ms",
    "advertised.listeners",
    "authorizer.class.name",
    "auto.create.topics.enable",
    "broker.heartbeat.interval.ms",
    "broker.id",
    "broker.rack",
    "broker.session.timeout.ms",
    "cluster.id",
    "connections.max.idle.ms",
    "controller.listener.names",
    "controller.quorum.bootstrap.servers",
    "controller.quorum.election.timeout.ms",
    "controller.quorum.fetch.timeout.ms",
    "controller.quorum.voters",
    "default.replication.factor",
    "group.initial.rebalance.delay.ms",
    "group.max.session.timeout.ms",
    "group.min.session.timeout.ms",
    "listener.security.protocol.map",
    "listeners",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.enable",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.threads",
    "log.dir",
    "log.dirs",
    "log.retention.check.interval.ms",
    "log.retention.hours",
    "log.retention.minutes",
    "log.roll.hours",
    "max.connection.creation.rate",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "max.incremental.fetch.session.cache.slots",
    "node.id",
    "num.partitions",
    "offsets.retention.minutes",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "process.roles",
    "queued.max.request.bytes",
    "quota.window.num",
    "quota.window.size.seconds",
    "replica.fetch.max.bytes",
    "replica.fetch.min.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.lag.time.max.ms",
    "replica.selector.class",
    "socket.request.max.bytes",
    "transaction.partition.verification.enable",
    "transaction.state.log.min.isr",
    "transaction.state.log.replication.factor",
];

/// The StandardAuthorizer's own settings (not Kafka broker configs: the
/// authorizer reads them), acted on with an authorizer.
pub const AUTHORIZER_CONFIGS: &[&str] = &["allow.everyone.if.no.acl.found", "super.users"];

/// The one `authorizer.class.name` Fjord serves: Kafka's KRaft authorizer.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// Whether broker config `name` changes what Fjord does.
pub fn acts_on(name: &str) -> bool {
    match topic_config_for_broker(name) {
        Some(d) => d.enforced,
        None => {
            FJORD_BROKER_CONFIGS.contains(&name)
                || AUTHORIZER_CONFIGS.contains(&name)
                || crate::security::SECURITY_BROKER_CONFIGS.contains(&name)
        }
    }
}

/// Replication settings (Kafka's `replica.*` broker configs), with Kafka's
/// defaults: the leader's ISR rule and what a follower's Fetch asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// `replica.lag.time.max.ms`: a follower not caught up for this long
    /// leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes`: bytes per partition of a follower's Fetch.
    pub fetch_max_bytes: usize,
    /// `replica.fetch.wait.max.ms`: how long the leader holds a follower's
    /// Fetch that has less than `replica.fetch.min.bytes`.
    pub fetch_wait_max_ms: u64,
    /// `replica.fetch.min.bytes`.
    pub fetch_min_bytes: usize,
    /// `replica.fetch.response.max.bytes`: bytes of a whole Fetch answer.
    pub fetch_response_max_bytes: usize,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            lag_time_max_ms: limits::REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            fetch_max_bytes: limits::REPLICA_FETCH_MAX_BYTES_DEFAULT,
            fetch_wait_max_ms: limits::REPLICA_FETCH_WAIT_MAX_MS_DEFAULT,
            fetch_min_bytes: limits::REPLICA_FETCH_MIN_BYTES_DEFAULT,
            fetch_response_max_bytes: limits::REPLICA_FETCH_RESPONSE_MAX_BYTES_DEFAULT,
        }
    }
}

/// Settings of the group coordinator, with Kafka's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSettings {
    pub initial_rebalance_delay_ms: i64,
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    pub offsets_retention_ms: i64,
    /// `offsets.topic.segment.bytes`: `__consumer_offsets`'s `segment.bytes` when it
    /// is created (Kafka's 100 MiB), so its segments roll and the cleaner compacts them.
    pub offsets_segment_bytes: u64,
    /// `offsets.topic.replication.factor` (Kafka's 3): `__consumer_offsets`'s
    /// replication factor in a cluster, which creates it only once that
    /// many brokers are live (COORDINATOR_NOT_AVAILABLE until then, as in
    /// Kafka). A single node (no quorum) creates it with one replica.
    pub offsets_replication_factor: i16,
}

impl Default for GroupSettings {
    fn default() -> Self {
        let d = fjord_group::GroupConfig::default();
        GroupSettings {
            initial_rebalance_delay_ms: d.initial_rebalance_delay_ms,
            session_timeout_ms_min: d.session_timeout_ms_min,
            session_timeout_ms_max: d.session_timeout_ms_max,
            offsets_retention_ms: d.offsets_retention_ms,
            offsets_segment_bytes: limits::OFFSETS_TOPIC_SEGMENT_BYTES_DEFAULT,
            offsets_replication_factor: limits::OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT,
        }
    }
}

/// The transaction coordinator's `__transaction_state` in a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnSettings {
    /// `transaction.state.log.replication.factor` (Kafka's 3): created only
    /// once that many brokers are live (COORDINATOR_NOT_AVAILABLE until then,
    /// as in Kafka). A single node creates it with one replica.
    pub state_replication_factor: i16,
    /// `transaction.state.log.min.isr` (Kafka's 2): the topic's
    /// `min.insync.replicas` in a cluster.
    pub state_min_isr: i16,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            state_replication_factor: limits::TRANSACTION_STATE_REPLICATION_FACTOR_DEFAULT,
            state_min_isr: limits::TRANSACTION_STATE_MIN_ISR_DEFAULT,
        }
    }
}

/// Kafka's ConfigType, as DescribeConfigs (v3+) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// How a config value is checked before it is accepted.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// An integer in `min..=max`, or the special value.
    RangeOr(i64, i64, i64),
    /// A decimal number in `min..=max`.
    Ratio(f64, f64),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A non-empty comma-separated list of these words.
    ListOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// Kafka's throttled-replica list: empty, `*`, or `partition:broker` pairs.
    ReplicaList,
}

/// One Kafka 4.3 topic config: its name, the broker config that sets its
/// default, type, Kafka's default, and whether Fjord acts on it.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub broker_name: Option<&'static str>,
    pub kind: ConfigType,
    pub default: &'static str,
    check: Check,
    /// false: accepted, validated, stored and described, but Fjord's
    /// behaviour does not depend on it (see the broker's COMPATIBILITY notes).
    pub enforced: bool,
}

const I64_MAX: i64 = i64::MAX;
const I32_MAX: i64 = i32::MAX as i64;
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const fn def(
    name: &'static str,
    broker_name: Option<&'static str>,
    kind: ConfigType,
    default: &'static str,
    check: Check,
    enforced: bool,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_name,
        kind,
        default,
        check,
        enforced,
    }
}

/// Every topic config of Kafka 4.3 (its TopicConfig / LogConfig), in name order.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = {
    use Check::*;
    use ConfigType::*;
    &[
        def(
            "cleanup.policy",
            Some("log.cleanup.policy"),
            List,
            "delete",
            ListOf(&["delete", "compact"]),
            true,
        ),
        def(
            "compression.gzip.level",
            Some("compression.gzip.level"),
            Int,
            "-1",
            RangeOr(1, 9, -1),
            false,
        ),
        def(
            "compression.lz4.level",
            Some("compression.lz4.level"),
            Int,
            "9",
            Range(1, 17),
            false,
        ),
        def(
            "compression.type",
            Some("compression.type"),
            String,
            "producer",
            OneOf(COMPRESSION_TYPES),
            false,
        ),
        def(
            "compression.zstd.level",
            Some("compression.zstd.level"),
            Int,
            "3",
            Range(-131_072, 22),
            false,
        ),
        def(
            "delete.retention.ms",
            Some("log.cleaner.delete.retention.ms"),
            Long,
            "86400000",
            Range(0, I64_MAX),
            true,
        ),
        def(
            "file.delete.delay.ms",
            Some("log.segment.delete.delay.ms"),
            Long,
            "60000",
            Range(0, I64_MAX),
            false,
        ),
        def(
            "flush.messages",
            Some("log.flush.interval.messages"),
            Long,
            "9223372036854775807",
            Range(1, I64_MAX),
            true,
        ),
        def(
            "flush.ms",
            Some("log.flush.interval.ms"),
            Long,
            "9223372036854775807",
            Range(0, I64_MAX),
            true,
        ),
        def(
            "follower.replication.throttled.replicas",
            None,
            List,
            "",
            ReplicaList,
            false,
        ),
        def(
            "index.interval.bytes",
            Some("log.index.interval.bytes"),
            Int,
            "4096",
            Range(0, I32_MAX),
            true,
        ),
        def(
            "leader.replication.throttled.replicas",
            None,
            List,
            "",
            ReplicaList,
            false,
        ),
        def(
            "local.retention.bytes",
            Some("log.local.retention.bytes"),
            Long,
            "-2",
            Range(-2, I64_MAX),
            false,
        ),
        def(
            "local.retention.ms",
            Some("log.local.retention.ms"),
            Long,
            "-2",
            Range(-2, I64_MAX),
            false,
        ),
        def(
            "max.compaction.lag.ms",
            Some("log.cleaner.max.compaction.lag.ms"),
            Long,
            "9223372036854775807",
            Range(1, I64_MAX),
            true,
        ),
        def(
            "max.message.bytes",
            Some("message.max.bytes"),
            Int,
            "1048588",
            // Kafka's range; the log applies at most MESSAGE_BYTES_MAX_CEILING
            // (no batch can be larger than a request frame).
            Range(0, i32::MAX as i64),
            true,
        ),
        def(
            "message.timestamp.after.max.ms",
            Some("log.message.timestamp.after.max.ms"),
            Long,
            "3600000",
            Range(0, I64_MAX),
            false,
        ),
        def(
            "message.timestamp.before.max.ms",
            Some("log.message.timestamp.before.max.ms"),
            Long,
            "9223372036854775807",
            Range(0, I64_MAX),
            false,
        ),
        def(
            "message.timestamp.type",
            Some("log.message.timestamp.type"),
            String,
            "CreateTime",
            OneOf(&["CreateTime", "LogAppendTime"]),
            true,
        ),
        def(
            "min.cleanable.dirty.ratio",
            Some("log.cleaner.min.cleanable.ratio"),
            Double,
            "0.5",
            Ratio(0.0, 1.0),
            true,
        ),
        def(
            "min.compaction.lag.ms",
            Some("log.cleaner.min.compaction.lag.ms"),
            Long,
            "0",
            Range(0, I64_MAX),
            true,
        ),
        def(
            "min.insync.replicas",
            Some("min.insync.replicas"),
            Int,
            "1",
            Range(1, I32_MAX),
            false,
        ),
        def(
            "preallocate",
            Some("log.preallocate"),
            Boolean,
            "false",
            Bool,
            false,
        ),
        def(
            "remote.log.copy.disable",
            None,
            Boolean,
            "false",
            Bool,
            false,
        ),
        def(
            "remote.log.delete.on.disable",
            None,
            Boolean,
            "false",
            Bool,
            false,
        ),
        def("remote.storage.enable", None, Boolean, "false", Bool, false),
        def(
            "retention.bytes",
            Some("log.retention.bytes"),
            Long,
            "-1",
            Range(-1, I64_MAX),
            true,
        ),
        def(
            "retention.ms",
            Some("log.retention.ms"),
            Long,
            "604800000",
            Range(-1, I64_MAX),
            true,
        ),
        def(
            "segment.bytes",
            Some("log.segment.bytes"),
            Int,
            "1073741824",
            Range(limits::SEGMENT_BYTES_MIN as i64, I32_MAX),
            true,
        ),
        def(
            "segment.index.bytes",
            Some("log.index.size.max.bytes"),
            Int,
            "10485760",
            Range(4, I32_MAX),
            true,
        ),
        def(
            "segment.jitter.ms",
            Some("log.roll.jitter.ms"),
            Long,
            "0",
            Range(0, I64_MAX),
            false,
        ),
        def(
            "segment.ms",
            Some("log.roll.ms"),
            Long,
            "604800000",
            Range(1, I64_MAX),
            true,
        ),
        def(
            "unclean.leader.election.enable",
            Some("unclean.leader.election.enable"),
            Boolean,
            "false",
            Bool,
            false,
        ),
    ]
};

/// The topic config names Fjord understands, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_NAMES: &[&str] = &{
    let mut names = [""; TOPIC_CONFIGS.len()];
    let mut i = 0;
    while i < TOPIC_CONFIGS.len() {
        names[i] = TOPIC_CONFIGS[i].name;
        i += 1;
    }
    names
};

/// The definition of a topic config.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The topic config whose default a broker config sets.
pub fn topic_config_for_broker(broker_name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|d| d.broker_name == Some(broker_name))
}

impl TopicConfigDef {
    /// Checks `value` as Kafka does; returns it trimmed.
    pub fn validate(&self, value: &str) -> Result<String, ConfigError> {
        let v = value.trim();
        let bad = |reason: String| invalid(self.name, value, reason);
        let int = |v: &str| {
            v.parse::<i64>().map_err(|_| {
                bad(format!(
                    "Not a number of type {}",
                    if self.kind == ConfigType::Int {
                        "INT"
                    } else {
                        "LONG"
                    }
                ))
            })
        };
        match self.check {
            Check::Range(min, max) => {
                let n = int(v)?;
                if n < min {
                    return Err(bad(format!("Value must be at least {min}")));
                }
                if n > max {
                    return Err(bad(format!("Value must be no more than {max}")));
                }
            }
            Check::RangeOr(min, max, special) => {
                let n = int(v)?;
                if n != special && !(min..=max).contains(&n) {
                    return Err(bad(format!(
                        "Value must be between {min} and {max} or equal to {special}"
                    )));
                }
            }
            Check::Ratio(min, max) => {
                let x = v
                    .parse::<f64>()
                    .map_err(|_| bad("Not a number of type DOUBLE".into()))?;
                if !x.is_finite() || x < min || x > max {
                    return Err(bad(format!("Value must be between {min} and {max}")));
                }
            }
            Check::OneOf(words) => {
                if !words.contains(&v) {
                    return Err(bad(format!("String must be one of: {}", words.join(", "))));
                }
            }
            Check::ListOf(words) => {
                let ok = !v.is_empty() && v.split(',').all(|p| words.contains(&p.trim()));
                if !ok {
                    return Err(bad(format!(
                        "Value must be a non-empty list of: {}",
                        words.join(", ")
                    )));
                }
            }
            Check::Bool => {
                if !matches!(v, "true" | "false") {
                    return Err(bad("Expected value to be either true or false".into()));
                }
            }
            Check::ReplicaList => {
                let pair_ok = |p: &str| {
                    p.split_once(':').is_some_and(|(a, b)| {
                        a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                    })
                };
                if !(v.is_empty() || v == "*" || v.split(',').all(pair_ok)) {
                    return Err(bad(
                        "must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                            .into(),
                    ));
                }
            }
        }
        if self.name == "remote.storage.enable" && v == "true" {
            return Err(bad(
                "Tiered Storage functionality is disabled in the broker (Fjord has no remote storage)"
                    .into(),
            ));
        }
        Ok(v.to_string())
    }
}

/// Topic-level settings, each with Kafka's topic config name. Configs Fjord
/// acts on are typed fields; the others are kept as validated text.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicSettings {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub segment_bytes: u64,
    pub segment_ms: Option<i64>,
    pub cleanup_policy: String,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    pub index_interval_bytes: u32,
    pub index_bytes_max: u32,
    pub flush_messages: Option<u64>,
    pub flush_ms: Option<i64>,
    /// `delete.retention.ms`: how long a tombstone stays after its first cleaning.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`, as Kafka prints it (a double in 0..=1).
    pub min_cleanable_dirty_ratio: String,
    /// Values of the configs Fjord stores without acting on them, where
    /// they differ from Kafka's default.
    pub stored: BTreeMap<&'static str, String>,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            segment_bytes: limits::SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            cleanup_policy: "delete".to_string(),
            max_message_bytes: limits::MESSAGE_BYTES_MAX_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: limits::INDEX_INTERVAL_BYTES_DEFAULT,
            index_bytes_max: limits::INDEX_BYTES_MAX_DEFAULT,
            flush_messages: None,
            flush_ms: None,
            delete_retention_ms: limits::DELETE_RETENTION_MS_DEFAULT,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: "0.5".to_string(),
            stored: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config '{0}'")]
    Unknown(String),
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

impl ConfigError {
    /// The same error about broker config `name` (the topic config it sets
    /// was checked).
    fn renamed(self, name: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { value, reason, .. } => ConfigError::Invalid {
                name: name.to_string(),
                value,
                reason,
            },
            other => other,
        }
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_i64(name: &str, value: &str) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| invalid(name, value, "not an integer"))
}

fn parse_bounded(name: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let v = parse_i64(name, value)?;
    if v < min || v > max {
        return Err(invalid(
            name,
            value,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "must be true or false")),
    }
}

impl TopicSettings {
    /// Apply one topic-level setting by its Kafka topic config name.
    /// Returns `Ok(false)` when the name is not a topic config.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        let Some(d) = topic_config(name) else {
            return Ok(false);
        };
        let v = d.validate(value)?;
        let num = || v.parse::<i64>().unwrap_or_default();
        match name {
            "cleanup.policy" => {
                self.cleanup_policy = v.split(',').map(str::trim).collect::<Vec<_>>().join(",")
            }
            "retention.ms" => self.retention_ms = (num() >= 0).then(num),
            "retention.bytes" => self.retention_bytes = (num() >= 0).then(num),
            "segment.bytes" => self.segment_bytes = num() as u64,
            "segment.ms" => self.segment_ms = Some(num()),
            "max.message.bytes" => self.max_message_bytes = num() as usize,
            "message.timestamp.type" => {
                self.timestamp_type = TimestampType::parse(&v)
                    .ok_or_else(|| invalid(name, value, "must be CreateTime or LogAppendTime"))?
            }
            "index.interval.bytes" => self.index_interval_bytes = num() as u32,
            "segment.index.bytes" => self.index_bytes_max = num() as u32,
            "flush.messages" => {
                self.flush_messages = (num() != i64::MAX).then(|| num() as u64);
            }
            "flush.ms" => self.flush_ms = (num() != i64::MAX).then(num),
            "delete.retention.ms" => self.delete_retention_ms = num(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = num(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = num(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio = v,
            _ => {
                assert!(!d.enforced, "enforced topic config {name} has no field");
                if v == d.default {
                    self.stored.remove(d.name);
                } else {
                    self.stored.insert(d.name, v);
                }
            }
        }
        Ok(true)
    }

    /// The current value of a topic config, as Kafka would print it.
    pub fn get(&self, name: &str) -> Option<String> {
        let opt = |v: Option<i64>| v.unwrap_or(-1).to_string();
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.clone(),
            "retention.ms" => opt(self.retention_ms),
            "retention.bytes" => opt(self.retention_bytes),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.unwrap_or(i64::MAX).to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => self.timestamp_type.as_str().to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "segment.index.bytes" => self.index_bytes_max.to_string(),
            "flush.messages" => self
                .flush_messages
                .map_or(i64::MAX, |v| v as i64)
                .to_string(),
            "flush.ms" => self.flush_ms.unwrap_or(i64::MAX).to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.clone(),
            _ => {
                let d = topic_config(name)?;
                self.stored
                    .get(d.name)
                    .cloned()
                    .unwrap_or_else(|| d.default.to_string())
            }
        })
    }

    /// Settings for the storage engine.
    #[allow(clippy::needless_update)]
    pub fn log_config(&self) -> fjord_storage::LogConfig {
        fjord_storage::LogConfig {
            segment_bytes_max: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            index_bytes_max: self.index_bytes_max,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            flush_interval_messages: self.flush_messages,
            flush_interval_ms: self.flush_ms,
            timestamp_type: self.timestamp_type,
            message_bytes_max: self.max_message_bytes,
            compact: self.cleanup_policy.split(',').any(|p| p == "compact"),
            delete: self.cleanup_policy.split(',').any(|p| p == "delete"),
            min_cleanable_dirty_ratio_ppm: self
                .min_cleanable_dirty_ratio
                .parse::<f64>()
                .map_or(limits::MIN_CLEANABLE_DIRTY_RATIO_PPM_DEFAULT, |r| {
                    (r.clamp(0.0, 1.0) * 1e6).round() as u32
                }),
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            max_compaction_lag_ms: self.max_compaction_lag_ms,
            delete_retention_ms: self.delete_retention_ms,
            // Fields the storage engine adds later keep their defaults.
            ..fjord_storage::LogConfig::default()
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            data_dir: PathBuf::from("fjord-data"),
            node_id: NodeId(1),
            cluster_id: None,
            num_partitions: 1,
            auto_create_topics: true,
            transaction_partition_verification: true,
            add_partitions_to_txn_retry_backoff_ms:
                limits::ADD_PARTITIONS_TO_TXN_RETRY_BACKOFF_MS_DEFAULT,
            add_partitions_to_txn_retry_backoff_max_ms:
                limits::ADD_PARTITIONS_TO_TXN_RETRY_BACKOFF_MAX_MS_DEFAULT,
            default_replication_factor: 1,
            broker_session_timeout_ms: limits::BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            broker_heartbeat_interval_ms: limits::BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
            replica: ReplicaSettings::default(),
            request_bytes_max: limits::FRAME_BYTES_MAX,
            connection_idle_ms: limits::CONNECTION_IDLE_MS_DEFAULT,
            connection_limits: Default::default(),
            queued_max_request_bytes: None,
            fetch_session_cache_slots: limits::FETCH_SESSION_CACHE_SLOTS_DEFAULT,
            quota_window: crate::quotas::WindowConfig::default(),
            topic_defaults: TopicSettings::default(),
            retention_check_interval_ms: 300_000,
            cleaner: fjord_storage::CleanerConfig::default(),
            cleaner_io_max_printed: None,
            group_commit_syncfs: true,
            replica_fetch_durable: true,
            direct_io: false,
            batch_cache_bytes: limits::BATCH_CACHE_BYTES_DEFAULT,
            groups: GroupSettings::default(),
            txns: TxnSettings::default(),
            explicit: BTreeSet::new(),
            no_effect: BTreeMap::new(),
            not_kafka: BTreeSet::new(),
            kraft: Default::default(),
            named_listeners: Vec::new(),
            named_advertised: Vec::new(),
            security: Default::default(),
            authorizer_enabled: false,
            rack: None,
            replica_selector: ReplicaSelector::Leader,
            authorizer: Default::default(),
        }
    }
}

impl BrokerConfig {
    /// This node's static `min.insync.replicas` (its configuration file's,
    /// else Kafka's default 1).
    pub fn static_min_insync_replicas(&self) -> usize {
        self.topic_defaults
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(fjord_model::limits::MIN_INSYNC_REPLICAS_DEFAULT)
    }

    /// Apply one broker setting by its Kafka name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        // Kafka's rules first, so that what Kafka refuses Fjord refuses too.
        let kafka = crate::kafka_configs::broker(name);
        let printed = kafka.map(|k| k.validate(value)).transpose()?;
        if let Some(d) = topic_config_for_broker(name) {
            self.topic_defaults
                .set(d.name, value)
                .map_err(|e| e.renamed(name))?;
            self.explicit.insert(name.to_string());
            return Ok(());
        }
        self.explicit.insert(name.to_string());
        if crate::kraft::KraftConfig::handles(name) {
            return self.kraft.set(name, value);
        }
        if crate::security::SecuritySettings::handles(name) {
            // Per-listener names are not broker configs DescribeConfigs lists.
            if name.starts_with("listener.name.") {
                self.explicit.remove(name);
            }
            self.security.set(name, value);
            return Ok(());
        }
        match name {
            // Kafka's hour/minute variants of retention.
            "log.retention.hours" => {
                self.topic_defaults.retention_ms =
                    Some(parse_bounded(name, value, 1, i64::MAX / 3_600_000)? * 3_600_000)
            }
            "log.retention.minutes" => {
                self.topic_defaults.retention_ms =
                    Some(parse_bounded(name, value, 1, i64::MAX / 60_000)? * 60_000)
            }
            "log.roll.hours" => {
                self.topic_defaults.segment_ms =
                    Some(parse_bounded(name, value, 1, i64::MAX / 3_600_000)? * 3_600_000)
            }
            "node.id" | "broker.id" => {
                self.node_id = NodeId(parse_bounded(name, value, 0, i32::MAX as i64)? as i32)
            }
            "cluster.id" => self.cluster_id = Some(value.trim().to_string()),
            "log.group.commit.syncfs" => {
                self.group_commit_syncfs = match value.trim() {
                    "auto" => true,
                    "false" => false,
                    _ => return Err(invalid(name, value, "auto or false")),
                }
            }
            "log.direct.io" => {
                self.direct_io = match value.trim() {
                    "auto" => true,
                    "false" => false,
                    _ => return Err(invalid(name, value, "auto or false")),
                }
            }
            "replica.fetch.durable" => {
                self.replica_fetch_durable = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(name, value, "true or false")),
                }
            }
            "log.cache.max.bytes" => {
                self.batch_cache_bytes =
                    parse_bounded(name, value, 0, limits::BATCH_CACHE_BYTES_CEILING as i64)?
                        as usize
            }
            "num.partitions" => {
                self.num_partitions =
                    parse_bounded(name, value, 1, limits::PARTITIONS_PER_TOPIC_MAX as i64)? as i32
            }
            "default.replication.factor" => {
                self.default_replication_factor = parse_bounded(name, value, 1, 1)? as i16
            }
            "auto.create.topics.enable" => self.auto_create_topics = parse_bool(name, value)?,
            TRANSACTION_PARTITION_VERIFICATION => {
                self.transaction_partition_verification = parse_bool(name, value)?
            }
            "add.partitions.to.txn.retry.backoff.ms" => {
                self.add_partitions_to_txn_retry_backoff_ms =
                    parse_bounded(name, value, 1, i64::from(i32::MAX))? as u64
            }
            "add.partitions.to.txn.retry.backoff.max.ms" => {
                self.add_partitions_to_txn_retry_backoff_max_ms =
                    parse_bounded(name, value, 0, i64::from(i32::MAX))? as u64
            }
            "socket.request.max.bytes" => {
                self.request_bytes_max =
                    parse_bounded(name, value, 1024, limits::FRAME_BYTES_MAX as i64)? as usize
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = parse_bounded(name, value, 1, i32::MAX as i64)?
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_bounded(name, value, 1, i32::MAX as i64)?
            }
            "replica.lag.time.max.ms" => {
                self.replica.lag_time_max_ms = parse_bounded(name, value, 1, i32::MAX as i64)?
            }
            "replica.fetch.max.bytes" => {
                self.replica.fetch_max_bytes =
                    parse_bounded(name, value, 0, limits::FRAME_BYTES_MAX as i64)? as usize
            }
            "replica.fetch.wait.max.ms" => {
                self.replica.fetch_wait_max_ms =
                    parse_bounded(name, value, 0, limits::FETCH_WAIT_MS_MAX)? as u64
            }
            "replica.fetch.min.bytes" => {
                self.replica.fetch_min_bytes =
                    parse_bounded(name, value, 1, limits::FRAME_BYTES_MAX as i64)? as usize
            }
            "replica.fetch.response.max.bytes" => {
                self.replica.fetch_response_max_bytes =
                    parse_bounded(name, value, 0, limits::FRAME_BYTES_MAX as i64)? as usize
            }
            "connections.max.idle.ms" => {
                self.connection_idle_ms = parse_bounded(name, value, 1, i64::MAX)? as u64
            }
            "max.connections" => {
                parse_bounded(name, value, 1, i32::MAX as i64)?;
                self.connection_limits
                    .set(name, value)
                    .map_err(|e| invalid(name, value, e))?
            }
            crate::connection_quotas::MAX_CONNECTIONS_PER_IP
            | crate::connection_quotas::MAX_CONNECTIONS_PER_IP_OVERRIDES
            | crate::connection_quotas::MAX_CONNECTION_CREATION_RATE => self
                .connection_limits
                .set(name, value)
                .map_err(|e| invalid(name, value, e))?,
            crate::connection_quotas::QUEUED_MAX_REQUEST_BYTES => {
                let v = parse_i64(name, value)?;
                self.queued_max_request_bytes = if v <= 0 {
                    None
                } else {
                    Some(v.min(i64::from(u32::MAX)) as usize)
                };
            }
            "quota.window.num" => {
                self.quota_window.samples = parse_bounded(name, value, 1, i32::MAX as i64)? as u32
            }
            "quota.window.size.seconds" => {
                self.quota_window.window_ms =
                    parse_bounded(name, value, 1, i32::MAX as i64)? as u64 * 1000
            }
            "max.incremental.fetch.session.cache.slots" => {
                self.fetch_session_cache_slots =
                    parse_bounded(name, value, 0, limits::FETCH_SESSION_CACHE_SLOTS_MAX as i64)?
                        as usize
            }
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_bounded(name, value, 1, i64::MAX)? as u64
            }
            "log.cleaner.enable" => {
                let enable = parse_bool(name, value)?;
                self.cleaner.threads = match (enable, self.cleaner.threads) {
                    (false, _) => 0,
                    (true, 0) => limits::CLEANER_THREADS_DEFAULT,
                    (true, n) => n,
                };
            }
            "log.cleaner.threads" => {
                self.cleaner.threads =
                    parse_bounded(name, value, 0, limits::CLEANER_THREADS_MAX as i64)? as usize
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.cleaner.dedupe_buffer_bytes = parse_bounded(name, value, 0, i64::MAX)? as usize
            }
            "log.cleaner.io.max.bytes.per.second" => {
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "not a number"))?;
                self.cleaner.io_bytes_per_second_max =
                    (v.is_finite() && v < u64::MAX as f64).then_some(v.max(1.0) as u64);
                self.cleaner_io_max_printed = printed.clone();
            }
            "log.cleaner.backoff.ms" => {
                self.cleaner.backoff = std::time::Duration::from_millis(parse_bounded(
                    name,
                    value,
                    0,
                    i64::MAX,
                )? as u64)
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms =
                    parse_bounded(name, value, 0, i32::MAX as i64)?
            }
            "group.min.session.timeout.ms" => {
                self.groups.session_timeout_ms_min =
                    parse_bounded(name, value, 1, i32::MAX as i64)? as i32
            }
            "group.max.session.timeout.ms" => {
                self.groups.session_timeout_ms_max =
                    parse_bounded(name, value, 1, i32::MAX as i64)? as i32
            }
            "offsets.retention.minutes" => {
                self.groups.offsets_retention_ms =
                    parse_bounded(name, value, 1, i64::MAX / 60_000)? * 60_000
            }
            "offsets.topic.replication.factor" => {
                self.groups.offsets_replication_factor =
                    parse_bounded(name, value, 1, i16::MAX as i64)? as i16
            }
            "transaction.state.log.replication.factor" => {
                self.txns.state_replication_factor =
                    parse_bounded(name, value, 1, i16::MAX as i64)? as i16
            }
            "transaction.state.log.min.isr" => {
                self.txns.state_min_isr = parse_bounded(name, value, 1, i16::MAX as i64)? as i16
            }
            "offsets.topic.segment.bytes" => {
                self.groups.offsets_segment_bytes =
                    parse_bounded(name, value, limits::SEGMENT_BYTES_MIN as i64, I32_MAX)? as u64
            }
            "broker.rack" => {
                let rack = value.trim();
                self.rack = (!rack.is_empty()).then(|| rack.to_string());
            }
            // Kafka's two selectors; a JVM plug-in cannot run here, and
            // ignoring it would silently keep consumers on the leader.
            "replica.selector.class" => {
                self.replica_selector = match value.trim() {
                    "" | LEADER_REPLICA_SELECTOR => ReplicaSelector::Leader,
                    RACK_AWARE_REPLICA_SELECTOR => ReplicaSelector::RackAware,
                    _ => {
                        return Err(invalid(
                            name,
                            value,
                            "Fjord selects read replicas with Kafka's own selectors only \
                             (org.apache.kafka.common.replica.RackAwareReplicaSelector, \
                             or org.apache.kafka.common.replica.LeaderSelector, the default)",
                        ))
                    }
                }
            }
            // Kafka's KRaft authorizer; any other class (a JVM plug-in, or
            // the ZooKeeper-era AclAuthorizer) would be ignored, which is not
            // harmless: refused.
            "authorizer.class.name" => {
                self.authorizer_enabled = match value.trim() {
                    "" => false,
                    STANDARD_AUTHORIZER => true,
                    _ => {
                        return Err(invalid(
                            name,
                            value,
                            "Fjord enforces ACLs with Kafka's StandardAuthorizer rules only \
                             (org.apache.kafka.metadata.authorizer.StandardAuthorizer)",
                        ))
                    }
                }
            }
            "super.users" => {
                self.authorizer.super_users =
                    crate::security::authorizer::AuthorizerConfig::parse_super_users(value)
            }
            "allow.everyone.if.no.acl.found" => {
                self.authorizer.allow_if_no_acl = parse_bool(name, value)?
            }
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value.trim()),
            "listeners" | "listen" => {
                let named = crate::kraft::parse_listeners(name, value)?;
                if name == "listeners" {
                    self.kraft.declared_listeners = named.clone();
                }
                if named.len() > 1 || self.kraft.listeners.len() > 1 {
                    // Named listeners (CONTROLLER beside the client one); a
                    // later single PLAINTEXT shorthand must agree with them.
                    if named.len() == 1 && self.kraft.listeners.contains(&named[0]) {
                        return Ok(());
                    }
                    if named.len() == 1 {
                        return Err(invalid(name, value, "disagrees with listeners"));
                    }
                    self.kraft.listeners = named.clone();
                }
                self.named_listeners = named.clone();
                let client = self.kraft.broker_listener(&named).unwrap_or(&named[0]);
                self.listen = parse_listener(name, &format!("{}:{}", client.host, client.port))?;
            }
            "advertised.listeners" | "advertised.listener" => {
                let named = crate::kraft::parse_listeners(name, value)?;
                self.named_advertised = named.clone();
                let client = self.kraft.broker_listener(&named).unwrap_or(&named[0]);
                let value = &format!("{}:{}", client.host, client.port);
                let (host, port) = split_host_port(name, value)?;
                self.advertised_host = host;
                self.advertised_port = port;
            }
            _ => match printed {
                Some(v) => {
                    self.no_effect.insert(name.to_string(), v);
                }
                None => {
                    self.explicit.remove(name);
                    self.not_kafka.insert(name.to_string());
                }
            },
        }
        Ok(())
    }

    /// What to tell the user once at start: the Kafka configs given that
    /// Fjord accepts without acting on them, and the names Kafka does not
    /// define (ignored, as Kafka ignores them). `None` when there are none.
    pub fn start_report(&self) -> (Option<String>, Option<String>) {
        let no_effect: Vec<&str> = self
            .explicit
            .iter()
            .map(String::as_str)
            .filter(|n| crate::kafka_configs::broker(n).is_some() && !acts_on(n))
            .collect();
        let not_kafka: Vec<&str> = self.not_kafka.iter().map(String::as_str).collect();
        (
            (!no_effect.is_empty()).then(|| no_effect.join(", ")),
            (!not_kafka.is_empty()).then(|| not_kafka.join(", ")),
        )
    }

    /// Every broker setting with its current value, for DescribeConfigs.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for d in TOPIC_CONFIGS {
            if let (Some(broker_name), Some(v)) = (d.broker_name, self.topic_defaults.get(d.name)) {
                out.insert(broker_name.to_string(), v);
            }
        }
        out.insert("node.id".into(), self.node_id.0.to_string());
        out.insert("broker.id".into(), self.node_id.0.to_string());
        out.insert("num.partitions".into(), self.num_partitions.to_string());
        out.insert(
            "default.replication.factor".into(),
            self.default_replication_factor.to_string(),
        );
        out.insert(
            "auto.create.topics.enable".into(),
            self.auto_create_topics.to_string(),
        );
        out.insert(
            "transaction.partition.verification.enable".into(),
            self.transaction_partition_verification.to_string(),
        );
        out.insert(
            "add.partitions.to.txn.retry.backoff.ms".into(),
            self.add_partitions_to_txn_retry_backoff_ms.to_string(),
        );
        out.insert(
            "add.partitions.to.txn.retry.backoff.max.ms".into(),
            self.add_partitions_to_txn_retry_backoff_max_ms.to_string(),
        );
        out.insert(
            "socket.request.max.bytes".into(),
            self.request_bytes_max.to_string(),
        );
        out.insert(
            "connections.max.idle.ms".into(),
            self.connection_idle_ms.to_string(),
        );
        let c = &self.connection_limits;
        out.insert("max.connections".into(), c.max_connections.to_string());
        out.insert("max.connections.per.ip".into(), c.max_per_ip.to_string());
        out.insert(
            "max.connections.per.ip.overrides".into(),
            c.per_ip_overrides.clone(),
        );
        out.insert(
            "max.connection.creation.rate".into(),
            c.max_creation_rate.to_string(),
        );
        out.insert(
            "queued.max.request.bytes".into(),
            self.queued_max_request_bytes
                .map_or_else(|| "-1".to_string(), |n| n.to_string()),
        );
        out.insert(
            "quota.window.num".into(),
            self.quota_window.samples.to_string(),
        );
        out.insert(
            "quota.window.size.seconds".into(),
            (self.quota_window.window_ms / 1000).to_string(),
        );
        out.insert(
            "max.incremental.fetch.session.cache.slots".into(),
            self.fetch_session_cache_slots.to_string(),
        );
        if let Some(rack) = &self.rack {
            out.insert("broker.rack".into(), rack.clone());
        }
        match self.replica_selector {
            ReplicaSelector::RackAware => {
                out.insert(
                    "replica.selector.class".into(),
                    RACK_AWARE_REPLICA_SELECTOR.into(),
                );
            }
            ReplicaSelector::Leader if self.explicit.contains("replica.selector.class") => {
                out.insert(
                    "replica.selector.class".into(),
                    LEADER_REPLICA_SELECTOR.into(),
                );
            }
            ReplicaSelector::Leader => {}
        }
        out.insert(
            "broker.session.timeout.ms".into(),
            self.broker_session_timeout_ms.to_string(),
        );
        out.insert(
            "broker.heartbeat.interval.ms".into(),
            self.broker_heartbeat_interval_ms.to_string(),
        );
        let r = &self.replica;
        out.insert(
            "replica.lag.time.max.ms".into(),
            r.lag_time_max_ms.to_string(),
        );
        out.insert(
            "replica.fetch.max.bytes".into(),
            r.fetch_max_bytes.to_string(),
        );
        out.insert(
            "replica.fetch.wait.max.ms".into(),
            r.fetch_wait_max_ms.to_string(),
        );
        out.insert(
            "replica.fetch.min.bytes".into(),
            r.fetch_min_bytes.to_string(),
        );
        out.insert(
            "replica.fetch.response.max.bytes".into(),
            r.fetch_response_max_bytes.to_string(),
        );
        out.insert(
            "log.retention.check.interval.ms".into(),
            self.retention_check_interval_ms.to_string(),
        );
        out.insert(
            "log.cleaner.enable".into(),
            (self.cleaner.threads > 0).to_string(),
        );
        out.insert(
            "log.cleaner.threads".into(),
            self.cleaner.threads.to_string(),
        );
        out.insert(
            "log.cleaner.dedupe.buffer.size".into(),
            self.cleaner.dedupe_buffer_bytes.to_string(),
        );
        if let Some(v) = &self.cleaner_io_max_printed {
            out.insert("log.cleaner.io.max.bytes.per.second".into(), v.clone());
        }
        out.insert(
            "log.cleaner.backoff.ms".into(),
            self.cleaner.backoff.as_millis().to_string(),
        );
        out.insert("log.dirs".into(), self.data_dir.display().to_string());
        out.insert(
            "group.initial.rebalance.delay.ms".into(),
            self.groups.initial_rebalance_delay_ms.to_string(),
        );
        out.insert(
            "group.min.session.timeout.ms".into(),
            self.groups.session_timeout_ms_min.to_string(),
        );
        out.insert(
            "group.max.session.timeout.ms".into(),
            self.groups.session_timeout_ms_max.to_string(),
        );
        out.insert(
            "offsets.retention.minutes".into(),
            (self.groups.offsets_retention_ms / 60_000).to_string(),
        );
        out.insert(
            "offsets.topic.replication.factor".into(),
            self.groups.offsets_replication_factor.to_string(),
        );
        out.insert(
            "offsets.topic.segment.bytes".into(),
            self.groups.offsets_segment_bytes.to_string(),
        );
        out.insert(
            "transaction.state.log.replication.factor".into(),
            self.txns.state_replication_factor.to_string(),
        );
        out.insert(
            "transaction.state.log.min.isr".into(),
            self.txns.state_min_isr.to_string(),
        );
        match self.client_listeners() {
            Ok(ls) if !self.named_listeners.is_empty() => {
                let show = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join(",");
                out.insert(
                    "listeners".into(),
                    show(
                        &mut self
                            .named_listeners
                            .iter()
                            .map(|l| format!("{}://{}:{}", l.name, l.host, l.port)),
                    ),
                );
                out.insert(
                    "advertised.listeners".into(),
                    show(&mut ls.iter().map(|l| {
                        format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port)
                    })),
                );
            }
            _ => {
                out.insert("listeners".into(), format!("PLAINTEXT://{}", self.listen));
                out.insert(
                    "advertised.listeners".into(),
                    format!(
                        "PLAINTEXT://{}:{}",
                        self.advertised_host, self.advertised_port
                    ),
                );
            }
        }
        for (name, value) in self.security.unprefixed() {
            out.insert(name.to_string(), value.to_string());
        }
        out
    }

    /// Load a config file: Java properties (Kafka's `server.properties`), or
    /// TOML when the file name ends in `.toml` or the text parses as TOML and
    /// the name does not end in `.properties`.
    pub fn load_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let ext = path.extension().and_then(|e| e.to_str());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let toml = ext == Some("toml")
            || (ext != Some("properties") && text.parse::<toml::Table>().is_ok());
        if toml {
            return self.load_toml(path);
        }
        for (k, v) in parse_properties(&text) {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// Load `KEY = VALUE` pairs from a TOML file: flat keys using Kafka names
    /// (`"log.retention.ms" = 1000`), or nested tables (`[log] retention.ms = ..`).
    pub fn load_toml(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (k, v) in flat {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// Settings that only make sense together, checked once after all sources are applied.
    pub fn finish(&mut self, advertised_given: bool) -> Result<(), ConfigError> {
        if self.groups.session_timeout_ms_min > self.groups.session_timeout_ms_max {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &self.groups.session_timeout_ms_min.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        if !advertised_given {
            let ip = self.listen.ip();
            self.advertised_host = if ip.is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                ip.to_string()
            };
            self.advertised_port = self.listen.port();
        }
        if let Some(q) = self.queued_max_request_bytes {
            if q < self.request_bytes_max {
                return Err(invalid(
                    "queued.max.request.bytes",
                    &q.to_string(),
                    "queued.max.request.bytes must be larger or equal to socket.request.max.bytes",
                ));
            }
        }
        self.connection_limits.check().map_err(|e| {
            invalid(
                "max.connections.per.ip",
                &self.connection_limits.max_per_ip.to_string(),
                e,
            )
        })?;
        self.client_listeners()?;
        Ok(())
    }

    /// The endpoints this broker registers: one per client listener, with
    /// its advertised address and protocol id (PLAINTEXT when the
    /// listeners cannot be worked out, which `finish` refuses at start).
    pub fn endpoints(&self) -> Vec<fjord_controller::Listener> {
        let listeners = self.client_listeners().unwrap_or_else(|_| {
            vec![crate::security::ClientListener {
                name: "PLAINTEXT".to_string(),
                bind_host: self.listen.ip().to_string(),
                bind_port: self.listen.port(),
                advertised_host: self.advertised_host.clone(),
                advertised_port: self.advertised_port,
                protocol: crate::security::SecurityProtocol::Plaintext,
            }]
        });
        listeners
            .into_iter()
            .map(|l| fjord_controller::Listener {
                name: l.name,
                host: l.advertised_host,
                port: l.advertised_port,
                security_protocol: l.protocol.id(),
            })
            .collect()
    }

    /// This node's CONTROLLER listener (a controller's), with its
    /// protocol; `None` for a node without one.
    pub fn controller_listener(
        &self,
    ) -> Result<Option<crate::security::ClientListener>, ConfigError> {
        let declared = if self.kraft.listeners.is_empty() {
            &self.kraft.declared_listeners
        } else {
            &self.kraft.listeners
        };
        let Some(l) = declared
            .iter()
            .find(|l| self.kraft.is_controller_name(&l.name))
        else {
            return Ok(None);
        };
        let protocol = crate::security::links::protocol_of(&self.kraft, &l.name)?;
        Ok(Some(crate::security::ClientListener {
            name: l.name.clone(),
            bind_host: l.host.clone(),
            bind_port: l.port,
            advertised_host: l.host.clone(),
            advertised_port: l.port,
            protocol,
        }))
    }

    /// The client listeners (every listener but the controller's), each
    /// with its protocol and advertised address; the first is the one
    /// `listen` and `advertised_host`/`advertised_port` describe. Without
    /// named listeners: one PLAINTEXT listener on `listen`.
    pub fn client_listeners(&self) -> Result<Vec<crate::security::ClientListener>, ConfigError> {
        use crate::security::{ClientListener, SecurityProtocol};
        let primary = || ClientListener {
            name: "PLAINTEXT".to_string(),
            bind_host: self.listen.ip().to_string(),
            bind_port: self.listen.port(),
            advertised_host: self.advertised_host.clone(),
            advertised_port: self.advertised_port,
            protocol: SecurityProtocol::Plaintext,
        };
        if self.named_listeners.is_empty() {
            return Ok(vec![primary()]);
        }
        let map = &self.kraft.security_protocol_map;
        let mut out = Vec::new();
        for l in self
            .named_listeners
            .iter()
            .filter(|l| !self.kraft.is_controller_name(&l.name))
        {
            let protocol = if map.is_empty() {
                SecurityProtocol::parse(&l.name).ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        "",
                        format!(
                            "listener {} is not a protocol name and has no entry",
                            l.name
                        ),
                    )
                })?
            } else {
                let p = map.iter().find(|(n, _)| *n == l.name).ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        "",
                        format!("no entry for listener {}", l.name),
                    )
                })?;
                SecurityProtocol::parse(&p.1).ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        &p.1,
                        "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    )
                })?
            };
            let (advertised_host, advertised_port) =
                match self.named_advertised.iter().find(|a| a.name == l.name) {
                    Some(a) => (a.host.clone(), a.port),
                    None if out.is_empty() => (self.advertised_host.clone(), self.advertised_port),
                    None => {
                        let unspecified = l
                            .host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_unspecified());
                        let host = if unspecified { "127.0.0.1" } else { &l.host };
                        (host.to_string(), l.port)
                    }
                };
            out.push(ClientListener {
                name: l.name.clone(),
                bind_host: l.host.clone(),
                bind_port: l.port,
                advertised_host,
                advertised_port,
                protocol,
            });
        }
        if out.is_empty() {
            return Ok(vec![primary()]);
        }
        Ok(out)
    }
}

/// Dynamic broker configs (AlterConfigs / IncrementalAlterConfigs on a
/// BROKER resource), kept in the data directory as Kafka keeps them in its
/// metadata log. Only the `log.*`-style defaults of topic configs are
/// dynamic in Fjord; they apply at once to every topic without an override.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynamicBrokerConfigs {
    /// Values for this broker (resource name = node id), by broker config name.
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
    /// Cluster-wide defaults (resource name ""), by broker config name.
    #[serde(default)]
    pub cluster_default: BTreeMap<String, String>,
}

/// File in the data directory holding [`DynamicBrokerConfigs`].
pub const DYNAMIC_CONFIG_FILE: &str = "fjord-broker-configs.json";

/// Where a broker config's value comes from (Kafka's ConfigSource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// Whether Fjord lets `name` be changed on a running broker.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    topic_config_for_broker(name).is_some()
        || DYNAMIC_BOOLEAN_CONFIGS.contains(&name)
        || crate::connection_quotas::DYNAMIC_CONNECTION_CONFIGS.contains(&name)
}

/// Dynamic broker configs other than the topic defaults, all booleans, read
/// where they act ([`DynamicBrokerConfigs::flag`]).
pub const DYNAMIC_BOOLEAN_CONFIGS: &[&str] = &[TRANSACTION_PARTITION_VERIFICATION];

/// `transaction.partition.verification.enable` (KIP-890 part 1; cluster-wide
/// dynamic in Kafka).
pub const TRANSACTION_PARTITION_VERIFICATION: &str = "transaction.partition.verification.enable";

/// Kafka's dynamic-only broker configs of replication throttles
/// (`DynamicConfig.Broker`). Fjord does not throttle replication: none is
/// ever set, so deleting one (what `kafka-reassign-partitions --verify`
/// does on every broker once a reassignment completed) has nothing to do
/// and succeeds; setting one is refused as a config that cannot be updated.
pub const REPLICATION_THROTTLE_CONFIGS: [&str; 3] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

impl DynamicBrokerConfigs {
    /// Reads the file in `dir`; none yet means no dynamic configs.
    pub fn load(dir: &std::path::Path) -> Result<DynamicBrokerConfigs, ConfigError> {
        let path = dir.join(DYNAMIC_CONFIG_FILE);
        let file_err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| file_err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(file_err(e.to_string())),
        }
    }

    /// Writes the file in `dir` so that a crash leaves the old or the new one whole.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), ConfigError> {
        use std::io::Write;
        let path = dir.join(DYNAMIC_CONFIG_FILE);
        let tmp = dir.join(format!("{DYNAMIC_CONFIG_FILE}.tmp"));
        let file_err = |e: std::io::Error| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(file_err)?;
        f.write_all(&bytes).map_err(file_err)?;
        f.sync_all().map_err(file_err)?;
        std::fs::rename(&tmp, &path).map_err(file_err)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(file_err)
    }

    /// Topic defaults: the static configuration, then the cluster-wide
    /// dynamic defaults, then this broker's dynamic values.
    pub fn topic_defaults(&self, config: &BrokerConfig) -> Result<TopicSettings, ConfigError> {
        let mut t = config.topic_defaults.clone();
        for (k, v) in self.cluster_default.iter().chain(&self.broker) {
            if DYNAMIC_BOOLEAN_CONFIGS.contains(&k.as_str()) {
                parse_bool(k, v)?;
                continue;
            }
            if crate::connection_quotas::DYNAMIC_CONNECTION_CONFIGS.contains(&k.as_str()) {
                continue;
            }
            let d = topic_config_for_broker(k).ok_or_else(|| ConfigError::Unknown(k.clone()))?;
            t.set(d.name, v).map_err(|e| e.renamed(k))?;
        }
        Ok(t)
    }

    /// The connection limits in force: the static ones, then the
    /// cluster-wide dynamic defaults, then this broker's dynamic values
    /// (checked as Kafka checks them: a bad value is an error).
    pub fn connection_limits(
        &self,
        config: &BrokerConfig,
    ) -> Result<crate::connection_quotas::ConnectionLimits, ConfigError> {
        let mut limits = config.connection_limits.clone();
        for (k, v) in self.cluster_default.iter().chain(&self.broker) {
            if crate::connection_quotas::DYNAMIC_CONNECTION_CONFIGS.contains(&k.as_str()) {
                limits.set(k, v).map_err(|e| invalid(k, v, e))?;
            }
        }
        limits
            .check()
            .map_err(|e| invalid(crate::connection_quotas::MAX_CONNECTIONS_PER_IP, "0", e))?;
        Ok(limits)
    }

    /// The value of one of [`DYNAMIC_BOOLEAN_CONFIGS`]: this broker's,
    /// else the cluster default, else `fallback` (the static config). Values
    /// were checked when they were set.
    pub fn flag(&self, name: &str, fallback: bool) -> bool {
        self.broker
            .get(name)
            .or_else(|| self.cluster_default.get(name))
            .and_then(|v| parse_bool(name, v).ok())
            .unwrap_or(fallback)
    }

    /// The effective value of broker config `name` and where it comes from,
    /// followed by the lower-priority values it hides (Kafka's synonyms,
    /// strongest first).
    pub fn lookup(&self, config: &BrokerConfig, name: &str) -> Vec<(ConfigSource, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.broker.get(name) {
            out.push((ConfigSource::DynamicBroker, v.clone()));
        }
        if let Some(v) = self.cluster_default.get(name) {
            out.push((ConfigSource::DynamicDefaultBroker, v.clone()));
        }
        // Fjord's own default where it acts on the config, else Kafka's.
        let default = match topic_config_for_broker(name) {
            Some(d) => Some(d.default.to_string()),
            None => BrokerConfig::default()
                .describe()
                .get(name)
                .cloned()
                .or_else(|| {
                    crate::kafka_configs::broker(name)
                        .and_then(|k| k.default)
                        .map(str::to_string)
                }),
        };
        let current = match config.describe().get(name) {
            Some(v) => Some(v.clone()),
            None => config.no_effect.get(name).cloned(),
        };
        if let Some(v) = current {
            if config.explicit.contains(name) || default.as_ref() != Some(&v) {
                out.push((ConfigSource::StaticBroker, v));
            }
        }
        if let Some(v) = default {
            out.push((ConfigSource::Default, v));
        }
        out
    }
}

/// The key/value pairs of a Java properties file, as
/// `java.util.Properties.load` reads them: `#` and `!` comments, `=`, `:` or
/// white space between key and value, a trailing backslash continuing the
/// line, and `\t \n \r \f \uXXXX` escapes.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    // Logical lines: a line ending in an odd number of backslashes goes on.
    let mut logical: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for raw in text.lines() {
        let trimmed = raw.trim_start_matches([' ', '\t', '\u{c}']);
        let line = match pending.take() {
            Some(mut acc) => {
                acc.push_str(trimmed);
                acc
            }
            None => {
                if trimmed.is_empty() || trimmed.starts_with(['#', '!']) {
                    continue;
                }
                trimmed.to_string()
            }
        };
        let backslashes = line.chars().rev().take_while(|c| *c == '\\').count();
        if backslashes % 2 == 1 {
            let mut l = line;
            l.pop();
            pending = Some(l);
        } else {
            logical.push(line);
        }
    }
    logical.extend(pending);
    let mut out = Vec::new();
    for line in logical {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut key_end = chars.len();
        let mut value_start = chars.len();
        while i < chars.len() {
            match chars[i] {
                '\\' => i += 2,
                '=' | ':' => {
                    key_end = i;
                    value_start = i + 1;
                    break;
                }
                ' ' | '\t' | '\u{c}' => {
                    key_end = i;
                    let mut j = i;
                    while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\u{c}') {
                        j += 1;
                    }
                    if j < chars.len() && matches!(chars[j], '=' | ':') {
                        j += 1;
                    }
                    value_start = j;
                    break;
                }
                _ => i += 1,
            }
        }
        let key_end = key_end.min(chars.len());
        let mut v = value_start.min(chars.len());
        while v < chars.len() && matches!(chars[v], ' ' | '\t' | '\u{c}') {
            v += 1;
        }
        out.push((unescape(&chars[..key_end]), unescape(&chars[v..])));
    }
    out
}

fn unescape(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' || i >= chars.len() {
            out.push(c);
            continue;
        }
        let e = chars[i];
        i += 1;
        match e {
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex: String = chars[i..chars.len().min(i + 4)].iter().collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        i += 4;
                    }
                    _ => out.push('u'),
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// `HOST:PORT`, optionally prefixed by a listener name (`PLAINTEXT://`).
fn split_host_port(name: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let v = value.trim();
    let v = v.split_once("://").map_or(v, |(_, rest)| rest);
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| invalid(name, value, "expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| invalid(name, value, "bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid(name, value, "empty host"));
    }
    Ok((host.to_string(), port))
}

pub fn parse_listener(name: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    // Kafka binds all interfaces for an empty host (`PLAINTEXT://:9092`).
    let v = value.trim();
    let rest = v.split_once("://").map_or(v, |(_, rest)| rest);
    if let Some(port) = rest.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| invalid(name, value, "bad port"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let (host, port) = split_host_port(name, value)?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| invalid(name, value, "host must be an IP address or localhost"))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_standard_authorizer_is_accepted() {
        let mut c = BrokerConfig::default();
        assert!(!c.authorizer_enabled);
        c.set("authorizer.class.name", STANDARD_AUTHORIZER).unwrap();
        assert!(c.authorizer_enabled);
        let e = c
            .set(
                "authorizer.class.name",
                "kafka.security.authorizer.AclAuthorizer",
            )
            .unwrap_err();
        assert!(e.to_string().contains("StandardAuthorizer"), "{e}");
        c.set("authorizer.class.name", "").unwrap();
        assert!(!c.authorizer_enabled);
        c.set("super.users", "User:admin;User:ANONYMOUS").unwrap();
        assert!(c.authorizer.super_users.contains("User:ANONYMOUS"));
        assert!(!c.authorizer.allow_if_no_acl);
        c.set("allow.everyone.if.no.acl.found", "true").unwrap();
        assert!(c.authorizer.allow_if_no_acl);
        assert!(c.set("allow.everyone.if.no.acl.found", "maybe").is_err());
    }

    #[test]
    fn rack_and_replica_selector() {
        let mut c = BrokerConfig::default();
        assert_eq!(
            (c.rack.as_deref(), c.replica_selector),
            (None, ReplicaSelector::Leader)
        );
        c.set("broker.rack", "r1").unwrap();
        c.set("replica.selector.class", RACK_AWARE_REPLICA_SELECTOR)
            .unwrap();
        assert_eq!(c.rack.as_deref(), Some("r1"));
        assert_eq!(c.replica_selector, ReplicaSelector::RackAware);
        assert_eq!(
            c.describe()["replica.selector.class"],
            RACK_AWARE_REPLICA_SELECTOR
        );
        assert_eq!(c.describe()["broker.rack"], "r1");
        let err = c
            .set("replica.selector.class", "com.example.MySelector")
            .unwrap_err()
            .to_string();
        assert!(err.contains("RackAwareReplicaSelector"), "{err}");
        c.set("replica.selector.class", LEADER_REPLICA_SELECTOR)
            .unwrap();
        assert_eq!(c.replica_selector, ReplicaSelector::Leader);
        c.set("broker.rack", "").unwrap();
        assert_eq!(c.rack, None);
    }

    #[test]
    fn kafka_names_map_to_typed_settings() {
        let mut c = BrokerConfig::default();
        c.set("num.partitions", "3").unwrap();
        c.set("log.retention.ms", "-1").unwrap();
        c.set("message.max.bytes", "2000000").unwrap();
        c.set("log.message.timestamp.type", "LogAppendTime")
            .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.topic_defaults.retention_ms, None);
        assert_eq!(c.topic_defaults.max_message_bytes, 2_000_000);
        assert_eq!(
            c.topic_defaults.timestamp_type,
            TimestampType::LogAppendTime
        );
        assert_eq!(c.describe()["num.partitions"], "3");
        c.set("group.initial.rebalance.delay.ms", "0").unwrap();
        c.set("offsets.retention.minutes", "2").unwrap();
        assert_eq!(c.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(c.groups.offsets_retention_ms, 120_000);
        assert_eq!(c.groups.offsets_segment_bytes, 104_857_600);
        c.set("offsets.topic.segment.bytes", "1048576").unwrap();
        assert_eq!(c.groups.offsets_segment_bytes, 1_048_576);
        assert_eq!(c.describe()["offsets.topic.segment.bytes"], "1048576");
        assert!(c.set("offsets.topic.segment.bytes", "0").is_err());
    }

    #[test]
    fn group_commit_syncfs_switch() {
        let mut c = BrokerConfig::default();
        assert!(c.group_commit_syncfs);
        c.set("log.group.commit.syncfs", "false").unwrap();
        assert!(!c.group_commit_syncfs);
        c.set("log.group.commit.syncfs", "auto").unwrap();
        assert!(c.group_commit_syncfs);
        assert!(c.set("log.group.commit.syncfs", "yes").is_err());
        assert!(c.group_commit_syncfs);
        assert!(!c.not_kafka.contains("log.group.commit.syncfs"));
    }

    #[test]
    fn replica_fetch_durable_switch() {
        let mut c = BrokerConfig::default();
        assert!(c.replica_fetch_durable, "durable followers by default");
        c.set("replica.fetch.durable", "false").unwrap();
        assert!(!c.replica_fetch_durable);
        c.set("replica.fetch.durable", "true").unwrap();
        assert!(c.replica_fetch_durable);
        assert!(c.set("replica.fetch.durable", "no").is_err());
        assert!(c.replica_fetch_durable);
        assert!(!c.not_kafka.contains("replica.fetch.durable"));
    }

    #[test]
    fn direct_io_switch() {
        let mut c = BrokerConfig::default();
        assert!(!c.direct_io);
        c.set("log.direct.io", "auto").unwrap();
        assert!(c.direct_io);
        c.set("log.direct.io", "false").unwrap();
        assert!(!c.direct_io);
        assert!(c.set("log.direct.io", "yes").is_err());
        assert!(!c.direct_io);
        assert!(!c.not_kafka.contains("log.direct.io"));
        assert_eq!(c.batch_cache_bytes, limits::BATCH_CACHE_BYTES_DEFAULT);
        c.set("log.cache.max.bytes", "0").unwrap();
        assert_eq!(c.batch_cache_bytes, 0);
        c.set("log.cache.max.bytes", "1048576").unwrap();
        assert_eq!(c.batch_cache_bytes, 1 << 20);
        assert!(c.set("log.cache.max.bytes", "-1").is_err());
        assert!(c.not_kafka.is_empty());
    }

    #[test]
    fn unknown_names_are_ignored_and_invalid_settings_fail() {
        let mut c = BrokerConfig::default();
        // Kafka ignores names it does not define; Fjord too, and says so.
        c.set("no.such.thing", "1").unwrap();
        assert!(c.not_kafka.contains("no.such.thing"));
        assert!(!c.explicit.contains("no.such.thing"));
        assert_eq!(c.start_report(), (None, Some("no.such.thing".to_string())));
        assert!(matches!(
            c.set("num.partitions", "x"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            c.set("num.partitions", "0"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(c.set("auto.create.topics.enable", "maybe").is_err());
    }

    #[test]
    fn listeners() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://0.0.0.0:19092").unwrap();
        c.finish(false).unwrap();
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.advertised_host, "127.0.0.1");
        c.set("advertised.listeners", "PLAINTEXT://broker.example:9093")
            .unwrap();
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("broker.example", 9093)
        );
    }
}

#[cfg(test)]
mod kafka_name_tests {
    use super::*;
    use crate::kafka_configs;

    /// A value Kafka accepts for `k` that Fjord accepts too.
    fn valid_value(k: &kafka_configs::KafkaConfig) -> String {
        match k.name {
            "node.id" | "broker.id" => return "1".into(),
            "listeners" | "advertised.listeners" => return "PLAINTEXT://127.0.0.1:9092".into(),
            "log.dirs" | "log.dir" => return "/tmp/fjord-test".into(),
            "cluster.id" => return "MkU3OEVBNTcwNTJENDM2Qg".into(),
            "replica.selector.class" => return RACK_AWARE_REPLICA_SELECTOR.into(),
            _ => {}
        }
        match (k.default, k.kind) {
            (Some(d), _) => d.to_string(),
            (None, kafka_configs::KafkaType::List | kafka_configs::KafkaType::String) => {
                match k.validator {
                    kafka_configs::Validator::ListOf { values, .. } if !values.is_empty() => {
                        values[0].to_string()
                    }
                    _ => "x".into(),
                }
            }
            (None, kafka_configs::KafkaType::Password) => "secret".into(),
            (None, kafka_configs::KafkaType::Class) => "org.example.Plugin".into(),
            (None, _) => "1".into(),
        }
    }

    #[test]
    fn every_kafka_broker_config_is_accepted_and_classified() {
        let mut acted = 0;
        for k in kafka_configs::BROKER {
            let mut c = BrokerConfig::default();
            let v = valid_value(k);
            c.set(k.name, &v)
                .unwrap_or_else(|e| panic!("{} = {v:?} refused: {e}", k.name));
            assert!(c.not_kafka.is_empty(), "{}", k.name);
            assert!(c.explicit.contains(k.name), "{}", k.name);
            let (no_effect, _) = c.start_report();
            if acts_on(k.name) {
                acted += 1;
                assert!(!c.no_effect.contains_key(k.name), "{} is acted on", k.name);
                assert_eq!(no_effect, None, "{}", k.name);
            } else {
                // A config `set` acts on must be listed in FJORD_BROKER_CONFIGS.
                assert!(
                    c.no_effect.contains_key(k.name) || topic_config_for_broker(k.name).is_some(),
                    "{} is handled by BrokerConfig::set but not listed in FJORD_BROKER_CONFIGS",
                    k.name
                );
                assert_eq!(no_effect.as_deref(), Some(k.name));
            }
        }
        // Every name Fjord acts on is a Kafka name, but for Fjord's own
        // `cluster.id` (Kafka keeps it in meta.properties).
        for n in FJORD_BROKER_CONFIGS.iter().filter(|n| **n != "cluster.id") {
            assert!(kafka_configs::broker(n).is_some(), "{n}");
        }
        assert!(acted >= FJORD_BROKER_CONFIGS.len());
    }

    #[test]
    fn kafka_rules_apply_to_configs_without_effect() {
        let mut c = BrokerConfig::default();
        c.set("log.cleaner.io.buffer.size", "20000").unwrap();
        c.set("delete.topic.enable", "false").unwrap();
        assert_eq!(c.no_effect["log.cleaner.io.buffer.size"], "20000");
        let err = c
            .set("log.cleaner.io.buffer.size", "-1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Invalid value -1 for configuration log.cleaner.io.buffer.size: Value must be at least 0"
        );
        assert!(c.set("delete.topic.enable", "perhaps").is_err());
        // Kafka's rules also apply to configs Fjord acts on.
        assert!(c.set("num.partitions", "many").is_err());
        let report = c.start_report().0.unwrap();
        assert_eq!(report, "delete.topic.enable, log.cleaner.io.buffer.size");
        let dynamic = DynamicBrokerConfigs::default();
        assert_eq!(
            dynamic.lookup(&c, "log.cleaner.io.buffer.size"),
            vec![
                (ConfigSource::StaticBroker, "20000".to_string()),
                (ConfigSource::Default, "524288".to_string())
            ]
        );
        assert_eq!(
            dynamic.lookup(&c, "log.cleaner.threads"),
            vec![(ConfigSource::Default, "1".to_string())]
        );
    }

    #[test]
    fn every_topic_config_matches_kafka() {
        let kafka: Vec<_> = kafka_configs::TOPIC
            .iter()
            .filter(|k| !k.internal)
            .collect();
        assert_eq!(kafka.len(), TOPIC_CONFIGS.len());
        for (k, d) in kafka.iter().zip(TOPIC_CONFIGS) {
            assert_eq!(k.name, d.name);
            assert_eq!(k.config_type(), d.kind, "{}", d.name);
            assert_eq!(k.default, Some(d.default), "{}", d.name);
            assert_eq!(k.broker_name, d.broker_name, "{}", d.name);
            k.validate(d.default).unwrap();
        }
    }

    #[test]
    fn readme_lists_the_configs_fjord_acts_on() {
        let readme = include_str!("../../../README.md");
        let start = "<!-- acted-on-configs:start -->";
        let end = "<!-- acted-on-configs:end -->";
        let section = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(s, _)| s)
            .expect("README has the acted-on configs section");
        let listed: Vec<&str> = section.split('`').skip(1).step_by(2).collect();
        let mut expected: Vec<&str> = kafka_configs::BROKER
            .iter()
            .map(|k| k.name)
            .filter(|n| acts_on(n))
            .collect();
        expected.sort();
        assert_eq!(listed, expected, "README's list of acted-on broker configs");
    }

    /// A complete Kafka server.properties for one KRaft node starts Fjord:
    /// every line accepted, the ones Fjord acts on applied, the others
    /// reported once as having no effect.
    #[test]
    fn a_kafka_server_properties_file_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/kafka-server.properties"
        );
        let mut c = BrokerConfig::default();
        c.load_file(std::path::Path::new(path)).unwrap();
        c.finish(true).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 9092)
        );
        assert_eq!(c.data_dir, PathBuf::from("/tmp/kraft-combined-logs"));
        assert_eq!(c.topic_defaults.retention_ms, Some(168 * 3_600_000));
        assert_eq!(c.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(c.replica.lag_time_max_ms, 30_000);
        assert!(c.not_kafka.is_empty(), "{:?}", c.not_kafka);
        let (no_effect, not_kafka) = c.start_report();
        assert_eq!(not_kafka, None);
        let no_effect = no_effect.unwrap();
        for name in [
            "delete.topic.enable",
            "num.replica.fetchers",
            "group.coordinator.rebalance.protocols",
            "share.coordinator.state.topic.replication.factor",
            "num.io.threads",
        ] {
            assert!(
                no_effect.split(", ").any(|n| n == name),
                "{name}: {no_effect}"
            );
        }
        for name in ["num.partitions", "broker.rack", "replica.selector.class"] {
            assert!(!no_effect.split(", ").any(|n| n == name), "{no_effect}");
        }
        assert_eq!(c.rack.as_deref(), Some("rack-a"));
        assert_eq!(c.replica_selector, ReplicaSelector::RackAware);
        // Commented-out lines are not settings.
        assert!(!c.explicit.contains("log.flush.interval.messages"));
    }

    #[test]
    fn java_properties_files() {
        let text = "# comment\n! also\n  delete.topic.enable = true\nbroker.rack:r1\n\
            log.dirs /tmp/a,\\\n   /tmp/b\nkey\\ with\\=odd=v\\u0041\nempty=\n\n";
        let got = parse_properties(text);
        let want: Vec<(String, String)> = [
            ("delete.topic.enable", "true"),
            ("broker.rack", "r1"),
            ("log.dirs", "/tmp/a,/tmp/b"),
            ("key with=odd", "vA"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}

#[cfg(test)]
mod topic_config_tests {
    use super::*;

    #[test]
    fn every_kafka_topic_config_has_a_valid_default() {
        assert_eq!(TOPIC_CONFIGS.len(), 33);
        assert_eq!(TOPIC_CONFIG_NAMES.len(), TOPIC_CONFIGS.len());
        let mut names: Vec<_> = TOPIC_CONFIG_NAMES.to_vec();
        names.sort();
        assert_eq!(names, TOPIC_CONFIG_NAMES, "kept in name order");
        let defaults = TopicSettings::default();
        for d in TOPIC_CONFIGS {
            d.validate(d.default)
                .unwrap_or_else(|e| panic!("default of {}: {e}", d.name));
            assert_eq!(
                defaults.get(d.name).as_deref(),
                Some(d.default),
                "{}",
                d.name
            );
            if let Some(b) = d.broker_name {
                assert_eq!(topic_config_for_broker(b).map(|x| x.name), Some(d.name));
            }
        }
    }

    #[test]
    fn compression_type_and_stored_configs_round_trip() {
        let mut t = TopicSettings::default();
        for v in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            assert!(t.set("compression.type", v).unwrap());
            assert_eq!(t.get("compression.type").as_deref(), Some(v));
        }
        let err = t.set("compression.type", "brotli").unwrap_err().to_string();
        assert!(err.contains("String must be one of"), "{err}");
        t.set("min.cleanable.dirty.ratio", "0.25").unwrap();
        assert!(t.set("min.cleanable.dirty.ratio", "2").is_err());
        t.set("preallocate", "true").unwrap();
        assert!(t.set("preallocate", "maybe").is_err());
        t.set("compression.gzip.level", "-1").unwrap();
        assert!(t.set("compression.gzip.level", "12").is_err());
        t.set("leader.replication.throttled.replicas", "0:1,1:1")
            .unwrap();
        t.set("follower.replication.throttled.replicas", "*")
            .unwrap();
        assert!(t.set("leader.replication.throttled.replicas", "x").is_err());
        assert!(t.set("remote.storage.enable", "true").is_err());
        t.set("segment.index.bytes", "4096").unwrap();
        assert_eq!(t.log_config().index_bytes_max, 4096);
        assert_eq!(t.get("preallocate").as_deref(), Some("true"));
        assert_eq!(t.get("min.cleanable.dirty.ratio").as_deref(), Some("0.25"));
        // Setting a default value back forgets it.
        t.set("preallocate", "false").unwrap();
        assert!(!t.stored.contains_key("preallocate"));
        assert!(!t.set("no.such.config", "1").unwrap());
        let err = t.set("flush.messages", "abc").unwrap_err().to_string();
        assert_eq!(
            err,
            "Invalid value abc for configuration flush.messages: Not a number of type LONG"
        );
    }

    #[test]
    fn broker_synonyms_set_topic_defaults_and_count_as_explicit() {
        let mut c = BrokerConfig::default();
        c.set("compression.type", "zstd").unwrap();
        c.set("log.cleaner.min.cleanable.ratio", "0.1").unwrap();
        assert_eq!(
            c.topic_defaults.get("compression.type").as_deref(),
            Some("zstd")
        );
        assert_eq!(
            c.topic_defaults.get("min.cleanable.dirty.ratio").as_deref(),
            Some("0.1")
        );
        let err = c
            .set("log.flush.interval.messages", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.flush.interval.messages"), "{err}");
        let dynamic = DynamicBrokerConfigs::default();
        assert_eq!(
            dynamic.lookup(&c, "compression.type")[0],
            (ConfigSource::StaticBroker, "zstd".to_string())
        );
        assert_eq!(
            dynamic.lookup(&c, "log.flush.interval.messages"),
            vec![(ConfigSource::Default, i64::MAX.to_string())]
        );
    }

    #[test]
    fn dynamic_configs_layer_over_static_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = BrokerConfig::default();
        c.set("log.retention.ms", "1000").unwrap();
        let mut d = DynamicBrokerConfigs::default();
        d.cluster_default
            .insert("log.retention.ms".into(), "2000".into());
        assert_eq!(d.topic_defaults(&c).unwrap().retention_ms, Some(2000));
        d.broker.insert("log.retention.ms".into(), "3000".into());
        d.broker
            .insert("log.flush.interval.messages".into(), "1234".into());
        let t = d.topic_defaults(&c).unwrap();
        assert_eq!(t.retention_ms, Some(3000));
        assert_eq!(t.flush_messages, Some(1234));
        let chain = d.lookup(&c, "log.retention.ms");
        let sources: Vec<_> = chain.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            sources,
            vec![
                ConfigSource::DynamicBroker,
                ConfigSource::DynamicDefaultBroker,
                ConfigSource::StaticBroker,
                ConfigSource::Default
            ]
        );
        d.save(dir.path()).unwrap();
        assert_eq!(DynamicBrokerConfigs::load(dir.path()).unwrap(), d);
        d.broker
            .insert("log.flush.interval.messages".into(), "x".into());
        assert!(d.topic_defaults(&c).is_err());
        assert!(is_dynamic_broker_config("log.segment.bytes"));
        assert!(!is_dynamic_broker_config("num.partitions"));
    }
}
