//! Broker configuration: Kafka's broker config names at the edge, typed
//! settings inside. Sources, later ones winning: defaults, a TOML file
//! (`--config`), `--set NAME=VALUE` flags. Unknown names and invalid values
//! are errors at start-up.

use std::collections::BTreeMap;
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
    pub default_replication_factor: i16,
    pub request_bytes_max: usize,
    pub connection_idle_ms: u64,
    pub connections_max: usize,
    /// Defaults for topic-level settings (`log.*` broker configs).
    pub topic_defaults: TopicSettings,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Consumer-group settings (`group.*`, `offsets.retention.minutes`).
    pub groups: GroupSettings,
}

/// Settings of the group coordinator, with Kafka's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSettings {
    pub initial_rebalance_delay_ms: i64,
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    pub offsets_retention_ms: i64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        let d = fjord_group::GroupConfig::default();
        GroupSettings {
            initial_rebalance_delay_ms: d.initial_rebalance_delay_ms,
            session_timeout_ms_min: d.session_timeout_ms_min,
            session_timeout_ms_max: d.session_timeout_ms_max,
            offsets_retention_ms: d.offsets_retention_ms,
        }
    }
}

/// Topic-level settings, each with Kafka's topic config name.
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
    pub flush_messages: Option<u64>,
    pub flush_ms: Option<i64>,
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
            flush_messages: None,
            flush_ms: None,
        }
    }
}

/// The topic config names Fjord understands, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config '{0}'")]
    Unknown(String),
    #[error("invalid value '{value}' for '{name}': {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
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

/// -1 means "unlimited" for Kafka's retention settings.
fn parse_optional_limit(name: &str, value: &str) -> Result<Option<i64>, ConfigError> {
    let v = parse_i64(name, value)?;
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v)),
        _ => Err(invalid(name, value, "must be -1 or non-negative")),
    }
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
        match name {
            "cleanup.policy" => {
                let v = value.trim();
                let ok = v
                    .split(',')
                    .all(|p| matches!(p.trim(), "delete" | "compact"));
                if !ok || v.is_empty() {
                    return Err(invalid(name, value, "must be delete, compact or both"));
                }
                self.cleanup_policy = v.to_string();
            }
            "retention.ms" => self.retention_ms = parse_optional_limit(name, value)?,
            "retention.bytes" => self.retention_bytes = parse_optional_limit(name, value)?,
            "segment.bytes" => {
                self.segment_bytes = parse_bounded(
                    name,
                    value,
                    limits::SEGMENT_BYTES_MIN as i64,
                    i32::MAX as i64,
                )? as u64
            }
            "segment.ms" => self.segment_ms = Some(parse_bounded(name, value, 1, i64::MAX)?),
            "max.message.bytes" => {
                self.max_message_bytes =
                    parse_bounded(name, value, 0, limits::MESSAGE_BYTES_MAX_CEILING as i64)?
                        as usize
            }
            "message.timestamp.type" => {
                self.timestamp_type = TimestampType::parse(value.trim())
                    .ok_or_else(|| invalid(name, value, "must be CreateTime or LogAppendTime"))?
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_bounded(name, value, 0, i32::MAX as i64)? as u32
            }
            "flush.messages" => {
                let v = parse_bounded(name, value, 1, i64::MAX)?;
                self.flush_messages = if v == i64::MAX { None } else { Some(v as u64) };
            }
            "flush.ms" => {
                let v = parse_bounded(name, value, 0, i64::MAX)?;
                self.flush_ms = if v == i64::MAX { None } else { Some(v) };
            }
            _ => return Ok(false),
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
            "flush.messages" => self
                .flush_messages
                .map_or(i64::MAX, |v| v as i64)
                .to_string(),
            "flush.ms" => self.flush_ms.unwrap_or(i64::MAX).to_string(),
            _ => return None,
        })
    }

    /// Settings for the storage engine.
    pub fn log_config(&self) -> fjord_storage::LogConfig {
        fjord_storage::LogConfig {
            segment_bytes_max: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            flush_interval_messages: self.flush_messages,
            flush_interval_ms: self.flush_ms,
            timestamp_type: self.timestamp_type,
            message_bytes_max: self.max_message_bytes,
            ..fjord_storage::LogConfig::default()
        }
    }
}

/// Broker config names that set a topic default, and the topic config each maps to.
const BROKER_TO_TOPIC: &[(&str, &str)] = &[
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
];

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
            default_replication_factor: 1,
            request_bytes_max: limits::FRAME_BYTES_MAX,
            connection_idle_ms: limits::CONNECTION_IDLE_MS_DEFAULT,
            connections_max: limits::CONNECTIONS_MAX_DEFAULT,
            topic_defaults: TopicSettings::default(),
            retention_check_interval_ms: 300_000,
            groups: GroupSettings::default(),
        }
    }
}

impl BrokerConfig {
    /// Apply one broker setting by its Kafka name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if let Some((_, topic_name)) = BROKER_TO_TOPIC.iter().find(|(b, _)| *b == name) {
            self.topic_defaults.set(topic_name, value)?;
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
            "num.partitions" => {
                self.num_partitions =
                    parse_bounded(name, value, 1, limits::PARTITIONS_PER_TOPIC_MAX as i64)? as i32
            }
            "default.replication.factor" => {
                self.default_replication_factor = parse_bounded(name, value, 1, 1)? as i16
            }
            "auto.create.topics.enable" => self.auto_create_topics = parse_bool(name, value)?,
            "socket.request.max.bytes" => {
                self.request_bytes_max =
                    parse_bounded(name, value, 1024, limits::FRAME_BYTES_MAX as i64)? as usize
            }
            "connections.max.idle.ms" => {
                self.connection_idle_ms = parse_bounded(name, value, 1, i64::MAX)? as u64
            }
            "max.connections" => {
                self.connections_max = parse_bounded(name, value, 1, i32::MAX as i64)? as usize
            }
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_bounded(name, value, 1, i64::MAX)? as u64
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
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value.trim()),
            "listeners" | "listen" => {
                self.listen = parse_listener(name, value)?;
            }
            "advertised.listeners" | "advertised.listener" => {
                let (host, port) = split_host_port(name, value)?;
                self.advertised_host = host;
                self.advertised_port = port;
            }
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// Every broker setting with its current value, for DescribeConfigs.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (broker_name, topic_name) in BROKER_TO_TOPIC {
            if let Some(v) = self.topic_defaults.get(topic_name) {
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
            "socket.request.max.bytes".into(),
            self.request_bytes_max.to_string(),
        );
        out.insert(
            "connections.max.idle.ms".into(),
            self.connection_idle_ms.to_string(),
        );
        out.insert("max.connections".into(), self.connections_max.to_string());
        out.insert(
            "log.retention.check.interval.ms".into(),
            self.retention_check_interval_ms.to_string(),
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
        out.insert("listeners".into(), format!("PLAINTEXT://{}", self.listen));
        out.insert(
            "advertised.listeners".into(),
            format!(
                "PLAINTEXT://{}:{}",
                self.advertised_host, self.advertised_port
            ),
        );
        out
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
        Ok(())
    }
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
    }

    #[test]
    fn unknown_and_invalid_settings_fail() {
        let mut c = BrokerConfig::default();
        assert!(matches!(
            c.set("no.such.thing", "1"),
            Err(ConfigError::Unknown(_))
        ));
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
