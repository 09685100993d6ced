//! `fjord cluster status`: the brokers (fenced ones flagged, from
//! DescribeCluster v2 where the broker speaks it), the active controller as
//! brokers report it, and the partitions at risk from Metadata: without a
//! leader (offline) or with fewer in-sync replicas than replicas
//! (under-replicated).

use anyhow::Result;
use serde_json::json;

use super::{print_json, Common};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Brokers, fenced brokers, the controller, offline and under-replicated partitions.
    ///
    /// Example: fjord cluster status --bootstrap 127.0.0.1:9092
    Status,
}

pub async fn run(args: ClusterArgs) -> Result<()> {
    let common = &args.common;
    match args.command {
        ClusterCommand::Status => status(common).await,
    }
}

async fn status(common: &Common) -> Result<()> {
    let client = common.connect().await?;
    let cluster = client.bootstrap_connection().describe_cluster().await?;
    let md = client.metadata(None).await?;
    let mut offline = Vec::new();
    let mut under_replicated = Vec::new();
    let mut partitions = 0usize;
    for t in &md.topics {
        for p in &t.partitions {
            partitions += 1;
            if p.leader.0 < 0 {
                offline.push((t.name.clone(), p.partition.0));
            } else if p.isr.len() < p.replicas.len() {
                under_replicated.push((t.name.clone(), p.partition.0));
            }
        }
    }
    let fenced = cluster.brokers.iter().filter(|(_, f)| *f).count();
    if common.json {
        print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller": cluster.controller.map(|c| c.0),
            "brokers": cluster.brokers.iter().map(|(b, fenced)| json!({
                "id": b.node_id.0,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "fenced": fenced,
            })).collect::<Vec<_>>(),
            "topics": md.topics.len(),
            "partitions": partitions,
            "offline_partitions": offline.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            "under_replicated_partitions": under_replicated.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!("Cluster: {}", cluster.cluster_id);
    println!(
        "Controller: {}",
        cluster
            .controller
            .map_or("unknown".to_string(), |c| c.0.to_string())
    );
    println!("Brokers: {} ({} fenced)", cluster.brokers.len(), fenced);
    for (b, fenced) in &cluster.brokers {
        println!(
            "\t{}\t{}{}{}",
            b.node_id.0,
            b.addr(),
            b.rack
                .as_deref()
                .map_or(String::new(), |r| format!("\track {r}")),
            if *fenced { "\tFENCED" } else { "" }
        );
    }
    println!("Topics: {}, partitions: {partitions}", md.topics.len());
    println!("Offline partitions: {}", offline.len());
    for (t, p) in &offline {
        println!("\t{t}/{p}");
    }
    println!("Under-replicated partitions: {}", under_replicated.len());
    for (t, p) in &under_replicated {
        println!("\t{t}/{p}");
    }
    Ok(())
}
