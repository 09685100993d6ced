//! `fjord group list|describe|reset-offsets|delete` (alias `fjord groups`):
//! consumer groups and their lag, as the brokers report them.
//!
//! Every group request goes to the group's coordinator (FindCoordinator,
//! asked again while it answers COORDINATOR_NOT_AVAILABLE or
//! COORDINATOR_LOAD_IN_PROGRESS). `list` asks ListGroups of every broker.
//! `describe GROUP` asks DescribeGroups for the state and members (their
//! assignments decoded from the consumer protocol), OffsetFetch for the
//! committed offsets and ListOffsets for the log end offsets, and prints the
//! lag (log end minus committed) per partition as `kafka-consumer-groups
//! --describe` does. `reset-offsets` commits new offsets as a standalone
//! consumer (generation -1), which the coordinator accepts only while the
//! group has no members, as with Kafka's tool; without `--execute` it only
//! prints the plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fjord_client::{coordinator_loading, Client, Connection, OffsetSpec};
use fjord_model::{Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use fjord_protocol::kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetFetchRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::cli::{print_json, topic_info, usage, Common, NotFound};

/// How long the CLI keeps asking a coordinator that is loading.
const COORDINATOR_WAIT: Duration = Duration::from_secs(10);
const COORDINATOR_RETRY: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    ///
    /// Example: fjord group list --json
    List,
    /// Show a group's state, members, committed offsets and lag per partition.
    ///
    /// Example: fjord group describe my-group
    Describe { group: String },
    /// Set a group's committed offsets (the group must have no members);
    /// prints the plan, and commits it with --execute.
    ///
    /// Example: fjord group reset-offsets my-group --topic orders --to-earliest --execute
    ResetOffsets {
        group: String,
        /// The topic whose offsets are reset.
        #[arg(long)]
        topic: String,
        /// Only this partition (repeatable; default: all).
        #[arg(long, short = 'p')]
        partition: Vec<i32>,
        #[command(flatten)]
        to: ResetTo,
        /// Commit the new offsets (without it, only print them).
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group (it must have no members) and its committed offsets.
    ///
    /// Example: fjord group delete my-group
    Delete { group: String },
}

#[derive(clap::Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the log's range, as Kafka's tool does).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first record at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
    /// Move the committed offset by N (negative: back), clamped.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
}

pub async fn run(args: GroupArgs) -> Result<()> {
    let common = &args.common;
    match args.command {
        GroupCommand::List => list(common).await,
        GroupCommand::Describe { group } => describe(common, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topic,
            partition,
            to,
            execute,
        } => reset(common, &group, &topic, &partition, &to, execute).await,
        GroupCommand::Delete { group } => {
            let client = common.connect().await?;
            let conn = coordinator(&client, &group).await?;
            conn.delete_group(&group).await?;
            if common.json {
                print_json(&json!({ "group": group, "deleted": true }));
            } else {
                println!("Deleted group {group}.");
            }
            Ok(())
        }
    }
}

fn gid(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

/// The connection to `group`'s coordinator.
pub async fn coordinator(client: &Client, group: &str) -> Result<Arc<Connection>> {
    let deadline = Instant::now() + COORDINATOR_WAIT;
    loop {
        match client
            .bootstrap_connection()
            .find_group_coordinator(group)
            .await?
        {
            Ok(node) => {
                // A coordinator not in the last Metadata: ask again for the brokers.
                if client.broker_addr(node).is_err() {
                    client.metadata(Some(&[])).await?;
                }
                return Ok(client.connection(node).await?);
            }
            Err(code) if coordinator_loading(code) && Instant::now() < deadline => {
                tokio::time::sleep(COORDINATOR_RETRY).await;
            }
            Err(code) => {
                return Err(fjord_client::ClientError::kafka(
                    format!("find the coordinator of group {group}"),
                    code,
                    None,
                )
                .into())
            }
        }
    }
}

async fn list(common: &Common) -> Result<()> {
    let client = common.connect().await?;
    let md = client.metadata(Some(&[])).await?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for b in &md.brokers {
        let conn = client.connection(b.node_id).await?;
        let deadline = Instant::now() + COORDINATOR_WAIT;
        let r = loop {
            let r = conn.call(&ListGroupsRequest::default()).await?;
            if !coordinator_loading(r.error_code) || Instant::now() >= deadline {
                break r;
            }
            tokio::time::sleep(COORDINATOR_RETRY).await;
        };
        if r.error_code != 0 {
            bail!(
                "{}: list groups: {}",
                conn.addr(),
                fjord_client::kafka_error_text(r.error_code, None)
            );
        }
        for g in r.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    if common.json {
        print_json(&json!(groups
            .iter()
            .map(|(g, (state, ptype))| json!({
                "group": g, "state": state, "protocol_type": ptype
            }))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    println!("{:<40} {:<20} PROTOCOL TYPE", "GROUP", "STATE");
    for (g, (state, ptype)) in groups {
        println!("{g:<40} {state:<20} {ptype}");
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
    /// The member the partition is assigned to, if any.
    pub member: Option<String>,
}

/// A member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// (topic, partition) from its consumer-protocol assignment.
    pub assignment: Vec<(String, i32)>,
}

/// A group's state, members and lag per committed or assigned partition.
#[derive(Clone, Debug)]
pub struct GroupLag {
    pub state: String,
    pub protocol: String,
    pub members: Vec<Member>,
    pub partitions: Vec<PartitionLag>,
}

/// The committed offsets of `group` (all topics when `topic` is `None`):
/// (topic, partition, offset; -1 when none).
pub async fn committed_offsets(
    conn: &Connection,
    group: &str,
    topic: Option<(&str, &[i32])>,
) -> Result<Vec<(String, i32, i64)>> {
    let topics = topic.map(|(t, ps)| {
        vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(t.to_string())))
            .with_partition_indexes(ps.to_vec())]
    });
    let deadline = Instant::now() + COORDINATOR_WAIT;
    let f = loop {
        let f = conn
            .call(
                &OffsetFetchRequest::default()
                    .with_group_id(gid(group))
                    .with_topics(topics.clone()),
            )
            .await?;
        if !coordinator_loading(f.error_code) || Instant::now() >= deadline {
            break f;
        }
        tokio::time::sleep(COORDINATOR_RETRY).await;
    };
    if f.error_code != 0 {
        bail!(
            "{}: committed offsets of group {group}: {}",
            conn.addr(),
            fjord_client::kafka_error_text(f.error_code, None)
        );
    }
    let mut out = Vec::new();
    for t in f.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                bail!(
                    "committed offset of group {group} for {}/{}: {}",
                    &*t.name.0,
                    p.partition_index,
                    fjord_client::kafka_error_text(p.error_code, None)
                );
            }
            out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
        }
    }
    Ok(out)
}

/// Reads a string of the consumer protocol (i16 length), bounded by `buf`.
fn take_str<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = i16::from_be_bytes([*buf.first()?, *buf.get(1)?]);
    let len = usize::try_from(len).ok()?;
    let s = buf.get(2..2 + len)?;
    *buf = &buf[2 + len..];
    Some(s)
}

fn take_i32(buf: &mut &[u8]) -> Option<i32> {
    let b = buf.get(..4)?;
    let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    *buf = &buf[4..];
    Some(v)
}

/// The (topic, partition) list of a consumer-protocol assignment (versions
/// 0 to 3 share this prefix); `None` if it is not one. Every count is
/// checked against the bytes left before anything is allocated.
pub fn decode_assignment(mut buf: &[u8]) -> Option<Vec<(String, i32)>> {
    if buf.len() < 2 {
        return None;
    }
    buf = &buf[2..]; // version
    let topics = usize::try_from(take_i32(&mut buf)?).ok()?;
    // A topic takes at least 6 bytes (name length, partition count).
    if topics > buf.len() / 6 {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..topics {
        let name = String::from_utf8_lossy(take_str(&mut buf)?).into_owned();
        let n = usize::try_from(take_i32(&mut buf)?).ok()?;
        if n > buf.len() / 4 {
            return None;
        }
        for _ in 0..n {
            out.push((name.clone(), take_i32(&mut buf)?));
        }
    }
    Some(out)
}

/// Ask the cluster at `bootstrap` for `group`'s state and lag.
pub async fn group_lag(bootstrap: &str, group: &str) -> Result<GroupLag> {
    let common = Common {
        bootstrap: bootstrap.to_string(),
        json: false,
    };
    let client = common.connect().await?;
    lag_of(&client, &common, group).await
}

async fn lag_of(client: &Client, common: &Common, group: &str) -> Result<GroupLag> {
    let conn = coordinator(client, group).await?;
    let deadline = Instant::now() + COORDINATOR_WAIT;
    let g = loop {
        let d = conn
            .call(&DescribeGroupsRequest::default().with_groups(vec![gid(group)]))
            .await?;
        let Some(g) = d.groups.into_iter().next() else {
            bail!("{}: describe group {group}: no result", conn.addr());
        };
        if !coordinator_loading(g.error_code) || Instant::now() >= deadline {
            break g;
        }
        tokio::time::sleep(COORDINATOR_RETRY).await;
    };
    if g.error_code == 69 {
        return Err(NotFound(format!(
            "group {group} does not exist (asked {})",
            conn.addr()
        ))
        .into());
    }
    if g.error_code != 0 {
        bail!(
            "{}: group {group}: {}",
            conn.addr(),
            fjord_client::kafka_error_text(g.error_code, None)
        );
    }
    let members: Vec<Member> = g
        .members
        .iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: if &*g.protocol_type == "consumer" {
                decode_assignment(&m.member_assignment).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect();
    let committed = committed_offsets(&conn, group, None).await?;
    if &*g.group_state == "Dead" && committed.is_empty() {
        return Err(NotFound(format!(
            "group {group} does not exist (asked {})",
            conn.addr()
        ))
        .into());
    }
    // Every partition committed or assigned, with its owner.
    let mut rows: BTreeMap<(String, i32), (i64, Option<String>)> = BTreeMap::new();
    for (t, p, o) in committed {
        rows.insert((t, p), (o, None));
    }
    for m in &members {
        for (t, p) in &m.assignment {
            rows.entry((t.clone(), *p)).or_insert((-1, None)).1 = Some(m.member_id.clone());
        }
    }
    let mut ends: BTreeMap<String, Vec<(PartitionIndex, Offset)>> = BTreeMap::new();
    for (t, _) in rows.keys() {
        if !ends.contains_key(t) {
            let e = match topic_info(client, common, t).await {
                Ok(info) => client.list_offsets(&info, OffsetSpec::Latest).await?,
                // Offsets of a deleted topic: no log end.
                Err(_) => Vec::new(),
            };
            ends.insert(t.clone(), e);
        }
    }
    let partitions = rows
        .into_iter()
        .map(|((topic, partition), (committed, member))| {
            let log_end = ends
                .get(&topic)
                .and_then(|e| e.iter().find(|(i, _)| i.0 == partition))
                .map(|(_, o)| o.0);
            PartitionLag {
                lag: log_end.filter(|_| committed >= 0).map(|e| e - committed),
                topic,
                partition,
                committed,
                log_end,
                member,
            }
        })
        .collect();
    Ok(GroupLag {
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
        partitions,
    })
}

async fn describe(common: &Common, group: &str) -> Result<()> {
    let client = common.connect().await?;
    let g = lag_of(&client, common, group).await?;
    let member = |id: &Option<String>| g.members.iter().find(|m| Some(&m.member_id) == id.as_ref());
    if common.json {
        print_json(&json!({
            "group": group,
            "state": g.state,
            "protocol": g.protocol,
            "members": g.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": m.assignment.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "partitions": g.partitions.iter().map(|p| json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": (p.committed >= 0).then_some(p.committed),
                "log_end": p.log_end,
                "lag": p.lag,
                "member_id": p.member,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!(
        "Group {group}: state {}, protocol {}, {} member(s)",
        g.state,
        if g.protocol.is_empty() {
            "-"
        } else {
            &g.protocol
        },
        g.members.len()
    );
    println!(
        "{:<30} {:>9} {:>14} {:>14} {:>10}  {:<40} {:<16} CLIENT-ID",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST"
    );
    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    for p in &g.partitions {
        let m = member(&p.member);
        println!(
            "{:<30} {:>9} {:>14} {:>14} {:>10}  {:<40} {:<16} {}",
            p.topic,
            p.partition,
            dash((p.committed >= 0).then_some(p.committed)),
            dash(p.log_end),
            dash(p.lag),
            m.map_or("-", |m| m.member_id.as_str()),
            m.map_or("-", |m| m.host.as_str()),
            m.map_or("-", |m| m.client_id.as_str()),
        );
    }
    Ok(())
}

async fn reset(
    common: &Common,
    group: &str,
    topic: &str,
    partitions: &[i32],
    to: &ResetTo,
    execute: bool,
) -> Result<()> {
    let client = common.connect().await?;
    let info = topic_info(&client, common, topic).await?;
    let all: Vec<i32> = info.partitions.iter().map(|p| p.partition.0).collect();
    for p in partitions {
        if !all.contains(p) {
            return Err(usage(format!("topic {topic} has no partition {p}")));
        }
    }
    let chosen: Vec<i32> = if partitions.is_empty() {
        all
    } else {
        partitions.to_vec()
    };
    let earliest = client.list_offsets(&info, OffsetSpec::Earliest).await?;
    let latest = client.list_offsets(&info, OffsetSpec::Latest).await?;
    let at = |v: &[(PartitionIndex, Offset)], p: i32| {
        v.iter().find(|(i, _)| i.0 == p).map_or(0, |(_, o)| o.0)
    };
    let by_time = match to.to_timestamp {
        Some(ts) => Some(
            client
                .list_offsets(&info, OffsetSpec::Timestamp(ts))
                .await?,
        ),
        None => None,
    };
    let conn = coordinator(&client, group).await?;
    let current = if to.shift_by.is_some() {
        committed_offsets(&conn, group, Some((topic, &chosen))).await?
    } else {
        Vec::new()
    };
    let mut plan = Vec::new();
    for &p in &chosen {
        let (lo, hi) = (at(&earliest, p), at(&latest, p));
        let target = if to.to_earliest {
            lo
        } else if to.to_latest {
            hi
        } else if let Some(o) = to.to_offset {
            o
        } else if let Some(found) = &by_time {
            // No record at or after the time: the log end.
            let o = at(found, p);
            if o < 0 {
                hi
            } else {
                o
            }
        } else if let Some(n) = to.shift_by {
            let cur = current
                .iter()
                .find(|(_, q, _)| *q == p)
                .map_or(-1, |(_, _, o)| *o);
            if cur < 0 {
                return Err(usage(format!(
                    "--shift-by: group {group} has no committed offset for {topic}/{p}"
                )));
            }
            cur.saturating_add(n)
        } else {
            return Err(usage("reset-offsets: say where to (--to-earliest, ...)"));
        };
        plan.push((PartitionIndex(p), Offset(target.clamp(lo, hi))));
    }
    if execute {
        conn.commit_offsets(group, topic, &plan)
            .await
            .with_context(|| format!("reset offsets of group {group} (it must have no members)"))?;
    }
    if common.json {
        print_json(&json!({
            "group": group,
            "topic": topic,
            "executed": execute,
            "offsets": plan.iter().map(|(p, o)| json!({"partition": p.0, "offset": o.0})).collect::<Vec<_>>(),
        }));
    } else {
        println!("{:<30} {:>9} NEW-OFFSET", "TOPIC", "PARTITION");
        for (p, o) in &plan {
            println!("{topic:<30} {:>9} {}", p.0, o.0);
        }
        if !execute {
            println!("(dry run: add --execute to commit these offsets)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_decode_and_refuse_garbage() {
        // version 0, one topic "t" with partitions 0 and 2, empty user data.
        let mut buf = vec![
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2,
        ];
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decode_assignment(&buf),
            Some(vec![("t".to_string(), 0), ("t".to_string(), 2)])
        );
        // A huge topic count with no bytes behind it allocates nothing.
        assert_eq!(decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(decode_assignment(&[0, 0, 0, 0, 0, 1, 0, 9, b'x']), None);
        assert_eq!(decode_assignment(&[]), None);
    }
}
