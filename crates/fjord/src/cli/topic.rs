//! `fjord topic create|list|describe|alter|delete|add-partitions`.
//!
//! Topics are created with CreateTopics (then Metadata is polled until every
//! partition has a leader, so a `produce` right after works), described with
//! Metadata and DescribeConfigs (every config with its source), altered with
//! IncrementalAlterConfigs, deleted with DeleteTopics and grown with
//! CreatePartitions.

use anyhow::{Context, Result};
use fjord_client::{ClientError, ConfigOp, ConfigResource, NewTopic};
use serde_json::json;

use super::{parse_kv, print_json, topic_info, usage, Common};

/// How long `create` and `add-partitions` wait for the new partitions' leaders.
const LEADER_WAIT_MS: u64 = 15_000;
/// The broker-side timeout asked for admin requests.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

#[derive(clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic (waits until every partition has a leader).
    ///
    /// Example: fjord topic create orders --partitions 3 --config cleanup.policy=compact
    Create {
        topic: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config, NAME=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
        /// Succeed (exit 0) if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics, one name per line (internal topics with --internal).
    ///
    /// Example: fjord topic list --json
    List {
        /// Also list internal topics (__consumer_offsets, ...).
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions (leader, replicas, ISR) and configs with their sources.
    ///
    /// Example: fjord topic describe orders
    Describe {
        topic: String,
        /// Show only configs set on the topic (source DYNAMIC_TOPIC_CONFIG).
        #[arg(long)]
        overrides_only: bool,
    },
    /// Set or remove topic configs.
    ///
    /// Example: fjord topic alter orders --config retention.ms=3600000 --delete-config cleanup.policy
    Alter {
        topic: String,
        /// Set a config, NAME=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
        /// Return a config to its default (repeatable).
        #[arg(long = "delete-config", value_name = "NAME")]
        delete: Vec<String>,
    },
    /// Delete a topic.
    ///
    /// Example: fjord topic delete orders
    Delete { topic: String },
    /// Grow a topic to a total number of partitions.
    ///
    /// Example: fjord topic add-partitions orders --total 6
    AddPartitions {
        topic: String,
        /// The number of partitions the topic will have.
        #[arg(long)]
        total: i32,
    },
}

pub async fn run(args: TopicArgs) -> Result<()> {
    let common = &args.common;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let configs = configs
                .iter()
                .map(|c| parse_kv("--config", c))
                .collect::<Result<Vec<_>>>()?;
            if let Some(p) = partitions {
                if p < 1 {
                    return Err(usage(format!("--partitions must be at least 1, not {p}")));
                }
            }
            let client = common.connect().await?;
            let created = client
                .create_topic(&NewTopic {
                    name: topic.clone(),
                    partitions: partitions.unwrap_or(-1),
                    replication_factor: replication_factor.unwrap_or(-1),
                    configs,
                })
                .await?;
            if !created && !if_not_exists {
                return Err(ClientError::kafka(
                    format!("create topic {topic}"),
                    TOPIC_ALREADY_EXISTS,
                    None,
                )
                .into());
            }
            let info = client.wait_for_leaders(&topic, LEADER_WAIT_MS).await?;
            if common.json {
                print_json(&json!({
                    "topic": topic,
                    "created": created,
                    "partitions": info.partitions.len(),
                }));
            } else if created {
                println!(
                    "Created topic {topic} ({} partitions).",
                    info.partitions.len()
                );
            } else {
                println!("Topic {topic} already exists.");
            }
            Ok(())
        }
        TopicCommand::List { internal } => {
            let client = common.connect().await?;
            let md = client.metadata(None).await?;
            let mut topics: Vec<_> = md
                .topics
                .iter()
                .filter(|t| internal || !t.is_internal)
                .collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            if common.json {
                print_json(&json!(topics
                    .iter()
                    .map(|t| json!({
                        "name": t.name,
                        "partitions": t.partitions.len(),
                        "internal": t.is_internal,
                    }))
                    .collect::<Vec<_>>()));
            } else {
                for t in topics {
                    println!("{}", t.name);
                }
            }
            Ok(())
        }
        TopicCommand::Describe {
            topic,
            overrides_only,
        } => describe(common, &topic, overrides_only).await,
        TopicCommand::Alter {
            topic,
            configs,
            delete,
        } => {
            let mut ops = Vec::new();
            for c in &configs {
                let (k, v) = parse_kv("--config", c)?;
                ops.push(ConfigOp::Set(k, v));
            }
            ops.extend(delete.into_iter().map(ConfigOp::Delete));
            if ops.is_empty() {
                return Err(usage(
                    "topic alter: give --config NAME=VALUE or --delete-config NAME",
                ));
            }
            let client = common.connect().await?;
            // An unknown topic is named as such (exit 4), whatever the broker
            // would answer to IncrementalAlterConfigs for it.
            topic_info(&client, common, &topic).await?;
            client
                .bootstrap_connection()
                .alter_configs(ConfigResource::Topic, &topic, &ops)
                .await?;
            if common.json {
                print_json(&json!({ "topic": topic, "altered": ops.len() }));
            } else {
                println!("Altered {} config(s) of topic {topic}.", ops.len());
            }
            Ok(())
        }
        TopicCommand::Delete { topic } => {
            let client = common.connect().await?;
            topic_info(&client, common, &topic).await?;
            client
                .bootstrap_connection()
                .delete_topic(&topic, ADMIN_TIMEOUT_MS)
                .await?;
            if common.json {
                print_json(&json!({ "topic": topic, "deleted": true }));
            } else {
                println!("Deleted topic {topic}.");
            }
            Ok(())
        }
        TopicCommand::AddPartitions { topic, total } => {
            if total < 1 {
                return Err(usage(format!("--total must be at least 1, not {total}")));
            }
            let client = common.connect().await?;
            topic_info(&client, common, &topic).await?;
            client
                .bootstrap_connection()
                .create_partitions(&topic, total, ADMIN_TIMEOUT_MS)
                .await?;
            let info = client.wait_for_leaders(&topic, LEADER_WAIT_MS).await?;
            if common.json {
                print_json(&json!({ "topic": topic, "partitions": info.partitions.len() }));
            } else {
                println!(
                    "Topic {topic} now has {} partitions.",
                    info.partitions.len()
                );
            }
            Ok(())
        }
    }
}

fn ids(nodes: &[fjord_model::NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn describe(common: &Common, topic: &str, overrides_only: bool) -> Result<()> {
    let client = common.connect().await?;
    let info = topic_info(&client, common, topic).await?;
    let mut configs = client
        .bootstrap_connection()
        .describe_configs(ConfigResource::Topic, topic, &[])
        .await
        .with_context(|| format!("configs of topic {topic}"))?;
    if overrides_only {
        configs.retain(|c| c.source == fjord_client::ConfigSource::DynamicTopic);
    }
    let rf = info.partitions.first().map_or(0, |p| p.replicas.len());
    if common.json {
        print_json(&json!({
            "topic": info.name,
            "topic_id": info.id.to_string(),
            "internal": info.is_internal,
            "replication_factor": rf,
            "partitions": info.partitions.iter().map(|p| json!({
                "partition": p.partition.0,
                "leader": p.leader.0,
                "leader_epoch": p.leader_epoch.0,
                "replicas": p.replicas.iter().map(|n| n.0).collect::<Vec<_>>(),
                "isr": p.isr.iter().map(|n| n.0).collect::<Vec<_>>(),
                "offline": p.offline.iter().map(|n| n.0).collect::<Vec<_>>(),
                "error_code": p.error_code,
            })).collect::<Vec<_>>(),
            "configs": configs.iter().map(|c| json!({
                "name": c.name,
                "value": c.value,
                "source": c.source.name(),
                "read_only": c.read_only,
                "sensitive": c.sensitive,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}",
        info.name,
        info.id,
        info.partitions.len()
    );
    for p in &info.partitions {
        println!(
            "\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tOffline: {}",
            p.partition.0,
            if p.leader.0 < 0 {
                "none".to_string()
            } else {
                p.leader.0.to_string()
            },
            ids(&p.replicas),
            ids(&p.isr),
            ids(&p.offline)
        );
    }
    println!("Configs:");
    for c in &configs {
        let value = if c.sensitive {
            "(sensitive)"
        } else {
            c.value.as_deref().unwrap_or("(null)")
        };
        println!("\t{}={}\t({})", c.name, value, c.source.name());
    }
    Ok(())
}
