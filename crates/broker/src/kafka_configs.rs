//! Every broker and topic config Apache Kafka 4.3.1 defines, with its type,
//! default, valid values, importance, documentation and dynamic update mode.
//!
//! The table ([`generated`]) is generated from Kafka's own `ConfigDef`s by
//! `cargo xtask codegen` (a small Java program run on the pinned Kafka jars)
//! and checked fresh by `cargo xtask codegen --check`. [`KafkaConfig::validate`]
//! applies Kafka's parsing and validator to a value; validators Kafka writes
//! as code (lambdas) are kept as text and only the type is checked.

use crate::config::{ConfigError, ConfigType};

/// Kafka's `ConfigDef.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

/// Kafka's `ConfigDef.Importance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Importance {
    High,
    Medium,
    Low,
}

/// How a broker config may be changed on a running Kafka broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamicMode {
    ReadOnly,
    PerBroker,
    ClusterWide,
}

/// Kafka's validator of a config, as far as it is data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Validator {
    None,
    /// `ConfigDef.Range` on an INT, SHORT or LONG config.
    IntRange {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// `ConfigDef.Range` on a DOUBLE config.
    DoubleRange {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// `ConfigDef.ValidString`.
    OneOf(&'static [&'static str]),
    /// `ConfigDef.CaseInsensitiveValidString`.
    OneOfIgnoreCase(&'static [&'static str]),
    /// `ConfigDef.ValidList`: no duplicates, no empty item, each in `values`
    /// when it is non-empty.
    ListOf {
        values: &'static [&'static str],
        empty_allowed: bool,
    },
    /// `ConfigDef.NonEmptyString`.
    NonEmpty,
    /// A validator written as code in Kafka; its description.
    Other(&'static str),
}

/// One config Kafka defines.
#[derive(Debug)]
pub struct KafkaConfig {
    pub name: &'static str,
    pub kind: KafkaType,
    /// Kafka's default as Kafka prints it; `None` for a null default or
    /// when there is none (`required`).
    pub default: Option<&'static str>,
    pub required: bool,
    pub importance: Importance,
    /// Broker configs only.
    pub dynamic: Option<DynamicMode>,
    /// Topic configs only: the broker config that sets its default.
    pub broker_name: Option<&'static str>,
    /// Kafka's internal configs are accepted but not described.
    pub internal: bool,
    pub validator: Validator,
    /// Kafka's documentation string (HTML, as Kafka returns it).
    pub documentation: &'static str,
}

#[rustfmt::skip]
mod generated;

pub use generated::{BROKER, TOPIC};

/// Kafka's definition of broker config `name`.
pub fn broker(name: &str) -> Option<&'static KafkaConfig> {
    BROKER
        .binary_search_by(|c| c.name.cmp(name))
        .ok()
        .map(|i| &BROKER[i])
}

/// Kafka's definition of topic config `name`.
pub fn topic(name: &str) -> Option<&'static KafkaConfig> {
    TOPIC
        .binary_search_by(|c| c.name.cmp(name))
        .ok()
        .map(|i| &TOPIC[i])
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl KafkaConfig {
    /// The type DescribeConfigs reports.
    pub fn config_type(&self) -> ConfigType {
        match self.kind {
            KafkaType::Boolean => ConfigType::Boolean,
            KafkaType::String => ConfigType::String,
            KafkaType::Int => ConfigType::Int,
            KafkaType::Short => ConfigType::Short,
            KafkaType::Long => ConfigType::Long,
            KafkaType::Double => ConfigType::Double,
            KafkaType::List => ConfigType::List,
            KafkaType::Class => ConfigType::Class,
            KafkaType::Password => ConfigType::Password,
        }
    }

    /// Whether DescribeConfigs hides the value (Kafka's PASSWORD type).
    pub fn is_sensitive(&self) -> bool {
        self.kind == KafkaType::Password
    }

    /// Parses `value` as Kafka's `ConfigDef.parseType` does and applies the
    /// validator; returns the value as Kafka would print it (numbers,
    /// booleans and classes trimmed, lists as `a,b`).
    pub fn validate(&self, value: &str) -> Result<String, ConfigError> {
        let name = self.name;
        let bad = |reason: String| invalid(name, value, reason);
        let t = value.trim();
        let not_a = |ty: &str| bad(format!("Not a number of type {ty}"));
        let printed = match self.kind {
            KafkaType::Boolean => {
                if t.eq_ignore_ascii_case("true") {
                    "true".to_string()
                } else if t.eq_ignore_ascii_case("false") {
                    "false".to_string()
                } else {
                    return Err(bad("Expected value to be either true or false".into()));
                }
            }
            KafkaType::Int => t.parse::<i32>().map_err(|_| not_a("INT"))?.to_string(),
            KafkaType::Short => t.parse::<i16>().map_err(|_| not_a("SHORT"))?.to_string(),
            KafkaType::Long => t.parse::<i64>().map_err(|_| not_a("LONG"))?.to_string(),
            KafkaType::Double => {
                let x = t.parse::<f64>().map_err(|_| not_a("DOUBLE"))?;
                if !x.is_finite() {
                    return Err(not_a("DOUBLE"));
                }
                t.to_string()
            }
            KafkaType::Class => {
                if t.is_empty() {
                    return Err(bad("Class  cannot be found".into()));
                }
                t.to_string()
            }
            KafkaType::List => {
                if t.is_empty() {
                    String::new()
                } else {
                    t.split(',').map(str::trim).collect::<Vec<_>>().join(",")
                }
            }
            KafkaType::String | KafkaType::Password => value.to_string(),
        };
        match self.validator {
            Validator::None | Validator::Other(_) => {}
            Validator::IntRange { min, max } => {
                // Parsed above for every numeric type.
                let n: i64 = printed.parse().map_err(|_| not_a("LONG"))?;
                if let Some(min) = min.filter(|m| n < *m) {
                    return Err(bad(format!("Value must be at least {min}")));
                }
                if let Some(max) = max.filter(|m| n > *m) {
                    return Err(bad(format!("Value must be no more than {max}")));
                }
            }
            Validator::DoubleRange { min, max } => {
                let x: f64 = printed.parse().map_err(|_| not_a("DOUBLE"))?;
                if let Some(min) = min.filter(|m| x < *m) {
                    return Err(bad(format!("Value must be at least {min:?}")));
                }
                if let Some(max) = max.filter(|m| x > *m) {
                    return Err(bad(format!("Value must be no more than {max:?}")));
                }
            }
            Validator::OneOf(words) => {
                if !words.contains(&printed.as_str()) {
                    return Err(bad(format!("String must be one of: {}", words.join(", "))));
                }
            }
            Validator::OneOfIgnoreCase(words) => {
                let upper = printed.to_ascii_uppercase();
                if !words.contains(&upper.as_str()) {
                    return Err(bad(format!(
                        "String must be one of (case insensitive): {}",
                        words.join(", ")
                    )));
                }
            }
            Validator::ListOf {
                values,
                empty_allowed,
            } => {
                let items: Vec<&str> = if printed.is_empty() {
                    Vec::new()
                } else {
                    printed.split(',').collect()
                };
                if items.is_empty() && !empty_allowed {
                    return Err(bad(format!(
                        "Configuration '{name}' must not be empty. Valid values include: {}",
                        if values.is_empty() {
                            "any non-empty value".to_string()
                        } else {
                            format!("[{}]", values.join(", "))
                        }
                    )));
                }
                let distinct: std::collections::BTreeSet<&str> = items.iter().copied().collect();
                if distinct.len() != items.len() {
                    return Err(bad(format!(
                        "Configuration '{name}' values must not be duplicated."
                    )));
                }
                for item in &items {
                    if item.is_empty() {
                        return Err(bad(format!(
                            "Configuration '{name}' values must not be empty."
                        )));
                    }
                    if !values.is_empty() && !values.contains(item) {
                        return Err(bad(format!("String must be one of: {}", values.join(", "))));
                    }
                }
            }
            Validator::NonEmpty => {
                if printed.is_empty() {
                    return Err(bad("String must be non-empty".into()));
                }
            }
        }
        Ok(printed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_complete_and_defaults_are_valid() {
        for table in [BROKER, TOPIC] {
            assert!(
                table.windows(2).all(|w| w[0].name < w[1].name),
                "name order"
            );
            for c in table {
                if let Some(d) = c.default {
                    c.validate(d)
                        .unwrap_or_else(|e| panic!("Kafka's default of {}: {e}", c.name));
                }
                assert!(!(c.required && c.default.is_some()), "{}", c.name);
            }
        }
        let described = BROKER.iter().filter(|c| !c.internal).count();
        assert!(described > 300, "{described} broker configs");
        for name in [
            "delete.topic.enable",
            "broker.rack",
            "log.cleaner.backoff.ms",
            "replica.selector.class",
            "group.coordinator.rebalance.protocols",
            "share.coordinator.state.topic.replication.factor",
            "process.roles",
            "controller.quorum.voters",
        ] {
            assert!(broker(name).is_some(), "{name}");
        }
        assert!(broker("no.such.config").is_none());
        assert_eq!(
            topic("retention.ms").and_then(|c| c.broker_name),
            Some("log.retention.ms")
        );
        assert!(broker("node.id").is_some_and(|c| c.required));
        assert!(!broker("num.partitions").is_some_and(|c| c.documentation.is_empty()));
    }

    #[test]
    fn validation_follows_kafka_rules() {
        let c = |n: &str| broker(n).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(c("delete.topic.enable").validate(" TRUE ").unwrap(), "true");
        assert!(c("delete.topic.enable").validate("yes").is_err());
        assert!(c("log.cleaner.backoff.ms").validate("-1").is_err());
        assert!(c("log.cleaner.backoff.ms").validate("abc").is_err());
        assert_eq!(
            c("log.cleaner.backoff.ms").validate("15000").unwrap(),
            "15000"
        );
        let err = c("message.max.bytes")
            .validate("-5")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Invalid value -5 for configuration message.max.bytes: Value must be at least 0"
        );
        // An INT must fit in 32 bits.
        assert!(c("num.io.threads").validate("3000000000").is_err());
        let p = c("group.coordinator.rebalance.protocols");
        assert_eq!(p.validate("classic, consumer").unwrap(), "classic,consumer");
        assert!(p.validate("classic,bogus").is_err());
        assert!(p.validate("classic,classic").is_err());
        assert!(p.validate("").is_err());
        assert!(c("log.cleaner.min.cleanable.ratio")
            .validate("1.5")
            .is_err());
        assert!(c("security.inter.broker.protocol").validate("TLS").is_err());
        assert!(c("group.consumer.migration.policy")
            .validate("upgrade")
            .is_ok());
    }
}
