//! `fjord groups`: consumer groups and their lag, as the broker reports them.
//!
//! `list` asks ListGroups; `describe GROUP` asks DescribeGroups for the state
//! and members, OffsetFetch for the committed offsets, and ListOffsets for the
//! log end offsets, and prints the lag (log end minus committed) per
//! partition. The bootstrap broker is asked, which on a single node is the
//! coordinator of every group.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fjord_client::{Client, ClientOptions, OffsetSpec};
use fjord_protocol::kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

#[derive(clap::Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups and their states.
    List {
        #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
        bootstrap: String,
    },
    /// Show a group's state, members, committed offsets and lag per partition.
    Describe {
        group: String,
        #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
        bootstrap: String,
    },
}

pub async fn run(cmd: GroupsCommand) -> Result<()> {
    match cmd {
        GroupsCommand::List { bootstrap } => list(&bootstrap).await,
        GroupsCommand::Describe { group, bootstrap } => describe(&bootstrap, &group).await,
    }
}

async fn connect(bootstrap: &str) -> Result<Client> {
    Client::connect(ClientOptions::new(bootstrap))
        .await
        .with_context(|| format!("cannot reach {bootstrap}"))
}

/// COORDINATOR_LOAD_IN_PROGRESS (14) and COORDINATOR_NOT_AVAILABLE (15): a
/// broker that has just started is still loading its groups; ask again.
fn coordinator_loading(code: i16) -> bool {
    matches!(code, 14 | 15)
}

/// How long the CLI keeps asking a broker whose group coordinator is loading.
const COORDINATOR_WAIT: Duration = Duration::from_secs(10);
const COORDINATOR_RETRY: Duration = Duration::from_millis(100);

async fn list(bootstrap: &str) -> Result<()> {
    let client = connect(bootstrap).await?;
    let deadline = Instant::now() + COORDINATOR_WAIT;
    let r = loop {
        let r = client
            .bootstrap_connection()
            .call(&ListGroupsRequest::default())
            .await?;
        if !coordinator_loading(r.error_code) || Instant::now() >= deadline {
            break r;
        }
        tokio::time::sleep(COORDINATOR_RETRY).await;
    };
    if r.error_code != 0 {
        bail!(
            "ListGroups: {}",
            fjord_client::kafka_error_text(r.error_code, None)
        );
    }
    println!("{:<40} {:<20} PROTOCOL TYPE", "GROUP", "STATE");
    for g in r.groups {
        println!(
            "{:<40} {:<20} {}",
            &*g.group_id.0, &*g.group_state, &*g.protocol_type
        );
    }
    Ok(())
}

/// One partition's committed offset, log end and lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing is committed.
    pub committed: i64,
    pub log_end: Option<i64>,
    /// Log end minus committed, when both are known.
    pub lag: Option<i64>,
}

/// A group's state, members and lag per committed partition.
#[derive(Clone, Debug)]
pub struct GroupLag {
    pub state: String,
    pub protocol: String,
    /// (member id, client id, client host)
    pub members: Vec<(String, String, String)>,
    pub partitions: Vec<PartitionLag>,
}

/// Ask the broker at `bootstrap` for `group`'s state and lag.
pub async fn group_lag(bootstrap: &str, group: &str) -> Result<GroupLag> {
    let client = connect(bootstrap).await?;
    let conn = client.bootstrap_connection();
    let gid = GroupId(StrBytes::from_string(group.to_string()));
    let deadline = Instant::now() + COORDINATOR_WAIT;
    let g = loop {
        let d = conn
            .call(&DescribeGroupsRequest::default().with_groups(vec![gid.clone()]))
            .await?;
        let Some(g) = d.groups.into_iter().next() else {
            bail!("DescribeGroups returned no group");
        };
        if !coordinator_loading(g.error_code) || Instant::now() >= deadline {
            break g;
        }
        tokio::time::sleep(COORDINATOR_RETRY).await;
    };
    if g.error_code != 0 {
        bail!(
            "group {group}: {}",
            fjord_client::kafka_error_text(g.error_code, None)
        );
    }
    // All committed offsets of the group (null topics = every partition).
    let f = conn
        .call(
            &OffsetFetchRequest::default()
                .with_group_id(gid)
                .with_topics(None),
        )
        .await?;
    if f.error_code != 0 {
        bail!(
            "OffsetFetch: {}",
            fjord_client::kafka_error_text(f.error_code, None)
        );
    }
    let mut partitions = Vec::new();
    for t in f.topics {
        let info = client.topic(&t.name.0).await?;
        let ends = client.list_offsets(&info, OffsetSpec::Latest).await?;
        for p in t.partitions {
            let log_end = ends
                .iter()
                .find(|(i, _)| i.0 == p.partition_index)
                .map(|(_, o)| o.0);
            partitions.push(PartitionLag {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                committed: p.committed_offset,
                log_end,
                lag: log_end
                    .filter(|_| p.committed_offset >= 0)
                    .map(|e| e - p.committed_offset),
            });
        }
    }
    Ok(GroupLag {
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.client_id.to_string(),
                    m.client_host.to_string(),
                )
            })
            .collect(),
        partitions,
    })
}

async fn describe(bootstrap: &str, group: &str) -> Result<()> {
    let g = group_lag(bootstrap, group).await?;
    println!(
        "group {group}: state {}, protocol {}, {} member(s)",
        g.state,
        g.protocol,
        g.members.len()
    );
    for (member, client, host) in &g.members {
        println!("  member {member} client {client} host {host}");
    }
    println!(
        "{:<30} {:>9} {:>16} {:>16} {:>12}",
        "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    );
    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    for p in &g.partitions {
        println!(
            "{:<30} {:>9} {:>16} {:>16} {:>12}",
            p.topic,
            p.partition,
            p.committed,
            dash(p.log_end),
            dash(p.lag)
        );
    }
    Ok(())
}
