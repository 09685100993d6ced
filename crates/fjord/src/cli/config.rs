//! `fjord config get|set`: broker configs with DescribeConfigs and
//! IncrementalAlterConfigs (dynamic configs, as `kafka-configs
//! --entity-type brokers` sets them). `--broker ID` picks the broker
//! (default: the lowest id in Metadata); `set --cluster-default` sets the
//! cluster-wide default instead.

use anyhow::Result;
use fjord_client::{Client, ConfigOp, ConfigResource};
use serde_json::json;

use super::{parse_kv, print_json, usage, Common};

#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Show a broker's configs (all, or the ones named) with their sources.
    ///
    /// Example: fjord config get log.retention.ms num.partitions --broker 1
    Get {
        /// Config names (default: all).
        names: Vec<String>,
        /// The broker (default: the lowest id in the cluster).
        #[arg(long)]
        broker: Option<i32>,
    },
    /// Set (NAME=VALUE) or remove (--delete NAME) dynamic broker configs.
    ///
    /// Example: fjord config set log.retention.ms=86400000 --cluster-default
    Set {
        /// NAME=VALUE pairs.
        settings: Vec<String>,
        /// Return a config to its static or default value (repeatable).
        #[arg(long, value_name = "NAME")]
        delete: Vec<String>,
        /// The broker (default: the lowest id in the cluster).
        #[arg(long, conflicts_with = "cluster_default")]
        broker: Option<i32>,
        /// Set the cluster-wide default for every broker.
        #[arg(long)]
        cluster_default: bool,
    },
}

async fn broker_id(client: &Client, given: Option<i32>) -> Result<String> {
    if let Some(b) = given {
        return Ok(b.to_string());
    }
    let md = client.metadata(Some(&[])).await?;
    md.brokers
        .iter()
        .map(|b| b.node_id.0)
        .min()
        .map(|b| b.to_string())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: Metadata lists no broker",
                client.bootstrap_connection().addr()
            )
        })
}

pub async fn run(args: ConfigArgs) -> Result<()> {
    let common = &args.common;
    match args.command {
        ConfigCommand::Get { names, broker } => {
            let client = common.connect().await?;
            let id = broker_id(&client, broker).await?;
            let configs = client
                .bootstrap_connection()
                .describe_configs(ConfigResource::Broker, &id, &names)
                .await?;
            if common.json {
                print_json(&json!({
                    "broker": id,
                    "configs": configs.iter().map(|c| json!({
                        "name": c.name,
                        "value": c.value,
                        "source": c.source.name(),
                        "read_only": c.read_only,
                        "sensitive": c.sensitive,
                    })).collect::<Vec<_>>(),
                }));
            } else {
                for c in &configs {
                    let value = if c.sensitive {
                        "(sensitive)"
                    } else {
                        c.value.as_deref().unwrap_or("(null)")
                    };
                    println!("{}={}\t({})", c.name, value, c.source.name());
                }
            }
            Ok(())
        }
        ConfigCommand::Set {
            settings,
            delete,
            broker,
            cluster_default,
        } => {
            let mut ops = Vec::new();
            for s in &settings {
                let (k, v) = parse_kv("config set", s)?;
                ops.push(ConfigOp::Set(k, v));
            }
            ops.extend(delete.into_iter().map(ConfigOp::Delete));
            if ops.is_empty() {
                return Err(usage("config set: give NAME=VALUE or --delete NAME"));
            }
            let client = common.connect().await?;
            let id = if cluster_default {
                String::new()
            } else {
                broker_id(&client, broker).await?
            };
            client
                .bootstrap_connection()
                .alter_configs(ConfigResource::Broker, &id, &ops)
                .await?;
            let target = if id.is_empty() {
                "the cluster default".to_string()
            } else {
                format!("broker {id}")
            };
            if common.json {
                print_json(&json!({ "broker": id, "altered": ops.len() }));
            } else {
                println!("Altered {} config(s) of {target}.", ops.len());
            }
            Ok(())
        }
    }
}
