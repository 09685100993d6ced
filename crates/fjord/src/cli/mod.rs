//! The `fjord` commands for daily work against any Kafka-compatible cluster:
//! `topic`, `produce`, `consume`, `group` (alias `groups`), `cluster`,
//! `config`. They speak Kafka's protocol through `fjord_client`, so they
//! work against Apache Kafka as well as Fjord.
//!
//! Conventions every command follows:
//! - `--bootstrap HOST:PORT`, default `127.0.0.1:9092`, or `FJORD_BOOTSTRAP`;
//! - `--json` prints what a script would parse as JSON on stdout;
//! - an error is one line on stderr, `fjord: ...`, naming the broker, topic
//!   or group it is about, and the exit code says what kind it was
//!   ([`exit`]);
//! - a broker's answer is never trusted to be well formed: nothing here
//!   panics on it.

pub mod cluster;
pub mod config;
pub mod consume;
pub mod format;
pub mod produce;
pub mod topic;

use std::fmt;

use anyhow::Result;
use fjord_client::{Client, ClientError, ClientOptions, TopicInfo};

pub use crate::groups::GroupCommand;

/// Exit codes a script can rely on (also in README.md).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Anything not listed below (I/O error, bad data from the broker).
    pub const FAILURE: u8 = 1;
    /// Bad command line or input: unknown option, malformed `--config`,
    /// unknown template field (clap's own usage errors also exit 2).
    pub const USAGE: u8 = 2;
    /// The broker could not be reached or stopped answering.
    pub const UNREACHABLE: u8 = 3;
    /// The topic, partition or group does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// The broker refused the request (any other Kafka error code).
    pub const REFUSED: u8 = 5;
}

/// Kafka error codes that mean "no such thing": UNKNOWN_TOPIC_OR_PARTITION,
/// GROUP_ID_NOT_FOUND, UNKNOWN_TOPIC_ID.
const NOT_FOUND_CODES: [i16; 3] = [3, 69, 100];

/// A mistake in the command line or its input (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Something named on the command line does not exist (exit code 4).
#[derive(Debug)]
pub struct NotFound(pub String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// A usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// The exit code for an error, from the first cause that says.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return exit::USAGE;
        }
        if cause.downcast_ref::<NotFound>().is_some() {
            return exit::NOT_FOUND;
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Disconnected { .. }
                | ClientError::Timeout { .. } => exit::UNREACHABLE,
                ClientError::Kafka { code, .. } if NOT_FOUND_CODES.contains(code) => {
                    exit::NOT_FOUND
                }
                ClientError::Kafka { .. } => exit::REFUSED,
                _ => exit::FAILURE,
            };
        }
    }
    exit::FAILURE
}

/// The error as one line (causes joined by ": ", newlines flattened).
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace(['\n', '\r'], " ")
}

/// Options every tool command has.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// A broker of the cluster to start from.
    #[arg(
        long,
        global = true,
        env = "FJORD_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Common {
    /// A client of the cluster; the error names the broker.
    pub async fn connect(&self) -> Result<Client> {
        Ok(Client::connect(ClientOptions::new(self.bootstrap.clone())).await?)
    }
}

/// The topic's metadata; an unknown topic is a [`NotFound`] naming the
/// topic and the broker asked.
pub async fn topic_info(client: &Client, common: &Common, topic: &str) -> Result<TopicInfo> {
    match client.topic(topic).await {
        Ok(t) => Ok(t),
        Err(e) if e.code().is_some_and(|c| NOT_FOUND_CODES.contains(&c)) => {
            Err(anyhow::Error::new(NotFound(format!(
                "topic {topic} does not exist (asked {})",
                common.bootstrap
            ))))
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses `NAME=VALUE` (a `--config`, `--header` or `--set` argument).
pub fn parse_kv(flag: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(usage(format!("{flag} expects NAME=VALUE, got '{s}'"))),
    }
}

/// Prints a JSON value on one line of stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// The tool commands, flattened into `fjord`'s command list.
#[derive(clap::Subcommand)]
pub enum ToolCommand {
    /// Create, list, describe, alter, delete topics and add partitions.
    ///
    /// Example: fjord topic create orders --partitions 3 --config retention.ms=86400000
    Topic(topic::TopicArgs),
    /// Write records: one per line of stdin (or --file), the line as the value.
    ///
    /// Example: printf 'a\nb\n' | fjord produce orders --print-offsets
    Produce(produce::ProduceArgs),
    /// Read records, one per line; follows new records until interrupted.
    ///
    /// Example: fjord consume orders --from-beginning --exit
    Consume(consume::ConsumeArgs),
    /// Consumer groups: list, describe (lag per partition), reset offsets, delete.
    ///
    /// Example: fjord group describe my-group
    #[command(alias = "groups")]
    Group(crate::groups::GroupArgs),
    /// The cluster: brokers, fenced brokers, controller, partitions at risk.
    ///
    /// Example: fjord cluster status --json
    Cluster(cluster::ClusterArgs),
    /// Broker configs: get and set (dynamic broker configs).
    ///
    /// Example: fjord config get log.retention.ms
    Config(config::ConfigArgs),
}

/// Runs a tool command on a current-thread runtime; Ctrl-C (and SIGTERM)
/// end a `consume` cleanly, other commands are simply interrupted.
pub fn run(cmd: ToolCommand) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            ToolCommand::Topic(a) => topic::run(a).await,
            ToolCommand::Produce(a) => produce::run(a).await,
            ToolCommand::Consume(a) => consume::run(a).await,
            ToolCommand::Group(a) => crate::groups::run(a).await,
            ToolCommand::Cluster(a) => cluster::run(a).await,
            ToolCommand::Config(a) => config::run(a).await,
        }
    })
}

/// Resolves at Ctrl-C or SIGTERM.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_cause() {
        let e = anyhow::Error::new(ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            reason: "refused".into(),
        });
        assert_eq!(exit_code(&e), exit::UNREACHABLE);
        let e = anyhow::Error::new(ClientError::kafka("topic t", 3, None)).context("describe");
        assert_eq!(exit_code(&e), exit::NOT_FOUND);
        let e = anyhow::Error::new(ClientError::kafka("topic t", 42, None));
        assert_eq!(exit_code(&e), exit::REFUSED);
        assert_eq!(exit_code(&usage("bad")), exit::USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), exit::FAILURE);
    }

    #[test]
    fn kv_needs_a_name_and_an_equals_sign() {
        assert_eq!(
            parse_kv("--config", "retention.ms=5").unwrap(),
            ("retention.ms".to_string(), "5".to_string())
        );
        assert_eq!(parse_kv("--config", "a==b").unwrap().1, "=b");
        assert!(parse_kv("--config", "noequals").is_err());
        assert!(parse_kv("--config", "=v").is_err());
        assert_eq!(exit_code(&parse_kv("--config", "x").unwrap_err()), 2);
    }

    #[test]
    fn one_line_flattens_newlines() {
        let e = anyhow::anyhow!("a\nb").context("c");
        assert_eq!(one_line(&e), "c: a b");
    }
}
