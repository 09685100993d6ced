//! `fjord consume TOPIC`: records one per line; follows new records until
//! interrupted (Ctrl-C or SIGTERM), or stops at the log end as it was at
//! start with `--exit`, or after `-n N` records.
//!
//! Start: the log end by default; `--from-beginning`, `--offset`,
//! `--timestamp` (first record at or after it) or `--last N` (N records back
//! per partition). With `--group G` the tool is an assign-only member of G:
//! it reads the partitions it was told (all by default) from G's committed
//! offsets (the start options apply where nothing is committed, or when
//! given explicitly), and commits what it has printed every few seconds and
//! at the end, as a standalone consumer (generation -1) — it does not join
//! the group, so it takes no part in rebalances, and the coordinator
//! refuses its commits while the group has live members.
//!
//! One Fetch per partition leader is in flight: when a response arrives the
//! next request goes out before the records are formatted, so the broker
//! works while the output is written.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fjord_client::{ClientError, FetchOptions, FetchedPartition, OffsetSpec, TopicInfo};
use fjord_model::limits::{
    CLI_FETCH_BYTES_MAX, CLI_FETCH_PARTITION_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX,
};
use fjord_model::{NodeId, Offset, PartitionIndex};
use tokio::task::JoinSet;

use super::format::{write_record, Binary, Format, Rec, Template};
use super::{topic_info, usage, Common};

/// How often `--group` commits while following.
const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// Pause before asking again for leaders after a retriable error.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// How long a Fetch waits at the broker for new records.
const FETCH_WAIT_MS: i32 = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatKind {
    /// The value only.
    Value,
    /// Key, --key-separator, value.
    KeyValue,
    /// One JSON object per record: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: Common,
    /// The topic to read.
    pub topic: String,
    /// Only these partitions (repeatable; default: all).
    #[arg(long, short = 'p')]
    pub partition: Vec<i32>,
    /// Start at the log start.
    #[arg(long, conflicts_with_all = ["offset", "timestamp", "last"])]
    pub from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, short = 'o', conflicts_with_all = ["timestamp", "last"])]
    pub offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS", conflicts_with = "last")]
    pub timestamp: Option<i64>,
    /// Start N records before the end of each partition.
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Stop after N records.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Stop at the end of the log (as it was at start) instead of following.
    #[arg(long, short = 'e')]
    pub exit: bool,
    /// Read as an assign-only member of this group: start from its committed
    /// offsets and commit what was printed.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "value")]
    pub format: FormatKind,
    /// Output template, e.g. '{partition}:{offset} {key}={value}'; fields:
    /// topic partition offset timestamp key value headers; {{ and }} are
    /// braces; a newline ends each record.
    #[arg(long, short = 't', conflicts_with = "format")]
    pub template: Option<String>,
    /// Between key and value with --format key-value.
    #[arg(long, default_value = "\t", value_name = "SEP")]
    pub key_separator: String,
    /// Bytes that are not UTF-8: escape them (\xNN) or base64 the field.
    #[arg(long, value_enum, default_value = "escape")]
    pub binary: Binary,
}

#[derive(Clone, Debug)]
struct Part {
    /// Next offset to fetch.
    fetch: i64,
    /// Next offset to print (everything before it has been printed or skipped).
    printed: i64,
    /// `--exit`: the log end at start.
    end: Option<i64>,
    in_flight: bool,
}

impl Part {
    fn done(&self) -> bool {
        self.end.is_some_and(|e| self.printed >= e)
    }
}

type FetchResult = (NodeId, Vec<i32>, Result<Vec<FetchedPartition>, ClientError>);

pub async fn run(args: ConsumeArgs) -> Result<()> {
    let common = &args.common;
    // Checked before anything else: a bad template is a usage error even
    // with no broker to ask.
    let format = match (&args.template, args.format) {
        (Some(t), _) => Format::Template(Template::parse(t)?),
        (None, FormatKind::Value) => Format::Value,
        (None, FormatKind::KeyValue) => Format::KeyValue(args.key_separator.clone()),
        (None, FormatKind::Json) => Format::Json,
    };
    if let Some(o) = args.offset {
        if o < 0 {
            return Err(usage(format!("--offset must be 0 or more, not {o}")));
        }
    }
    let client = common.connect().await?;
    let mut topic = topic_info(&client, common, &args.topic).await?;
    let all: Vec<i32> = topic.partitions.iter().map(|p| p.partition.0).collect();
    for p in &args.partition {
        if !all.contains(p) {
            return Err(usage(format!(
                "topic {} has no partition {p} (it has {})",
                args.topic,
                all.len()
            )));
        }
    }
    let chosen: Vec<i32> = if args.partition.is_empty() {
        all
    } else {
        args.partition.clone()
    };
    let earliest = client.list_offsets(&topic, OffsetSpec::Earliest).await?;
    let latest = client.list_offsets(&topic, OffsetSpec::Latest).await?;
    let by_time = match args.timestamp {
        Some(ts) => Some(
            client
                .list_offsets(&topic, OffsetSpec::Timestamp(ts))
                .await?,
        ),
        None => None,
    };
    let at = |v: &[(PartitionIndex, Offset)], p: i32| {
        v.iter().find(|(i, _)| i.0 == p).map_or(0, |(_, o)| o.0)
    };
    let coordinator = match &args.group {
        Some(g) => Some(crate::groups::coordinator(&client, g).await?),
        None => None,
    };
    let committed = match (&args.group, &coordinator) {
        (Some(g), Some(conn)) => {
            crate::groups::committed_offsets(conn, g, Some((&args.topic, &chosen))).await?
        }
        _ => Vec::new(),
    };
    let explicit = args.from_beginning
        || args.offset.is_some()
        || args.timestamp.is_some()
        || args.last.is_some();
    let mut parts: BTreeMap<i32, Part> = BTreeMap::new();
    for &p in &chosen {
        let (lo, hi) = (at(&earliest, p), at(&latest, p));
        let committed = committed
            .iter()
            .find(|(_, q, o)| *q == p && *o >= 0)
            .map(|(_, _, o)| *o);
        let start = match (committed, explicit) {
            (Some(c), false) => c,
            _ => {
                if args.from_beginning {
                    lo
                } else if let Some(o) = args.offset {
                    o
                } else if let Some(found) = &by_time {
                    let o = at(found, p);
                    if o < 0 {
                        hi
                    } else {
                        o
                    }
                } else if let Some(n) = args.last {
                    hi.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX))
                        .max(lo)
                } else {
                    hi
                }
            }
        };
        parts.insert(
            p,
            Part {
                fetch: start,
                printed: start,
                end: args.exit.then_some(hi),
                in_flight: false,
            },
        );
    }

    let options = FetchOptions {
        max_wait_ms: FETCH_WAIT_MS,
        min_bytes: 1,
        max_bytes: CLI_FETCH_BYTES_MAX,
        partition_max_bytes: CLI_FETCH_PARTITION_BYTES_MAX,
        isolation_level: 0,
    };
    let mut in_flight: JoinSet<FetchResult> = JoinSet::new();
    let mut busy_leaders: Vec<NodeId> = Vec::new();
    let mut printed: u64 = 0;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut last_commit = Instant::now();
    let mut committed_at: HashMap<i32, i64> = HashMap::new();
    let interrupted = super::interrupted();
    tokio::pin!(interrupted);
    let stdout = std::io::stdout();

    'outer: loop {
        if printed >= limit || parts.values().all(Part::done) {
            break;
        }
        // Send a Fetch to every leader that has none in flight.
        let mut needs_metadata = false;
        let mut by_leader: BTreeMap<NodeId, Vec<(PartitionIndex, Offset)>> = BTreeMap::new();
        for (&p, st) in parts.iter() {
            if st.in_flight || st.done() {
                continue;
            }
            let leader = topic
                .partitions
                .iter()
                .find(|i| i.partition.0 == p)
                .map_or(NodeId(-1), |i| i.leader);
            if leader.0 < 0 {
                needs_metadata = true;
                continue;
            }
            if busy_leaders.contains(&leader) {
                continue;
            }
            by_leader
                .entry(leader)
                .or_default()
                .push((PartitionIndex(p), Offset(st.fetch)));
        }
        for (leader, list) in by_leader {
            let sent = async {
                let conn = client.connection(leader).await?;
                conn.fetch(&topic.topic_ref(), &list, &options).await
            }
            .await;
            match sent {
                Ok(pending) => {
                    let ps: Vec<i32> = list.iter().map(|(p, _)| p.0).collect();
                    for p in &ps {
                        if let Some(st) = parts.get_mut(p) {
                            st.in_flight = true;
                        }
                    }
                    busy_leaders.push(leader);
                    in_flight.spawn(async move { (leader, ps, pending.wait().await) });
                }
                Err(e) if e.is_retriable() => needs_metadata = true,
                Err(e) => return Err(e.into()),
            }
        }
        if in_flight.is_empty() {
            if needs_metadata {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                    _ = &mut interrupted => break 'outer,
                }
                topic = refresh(&client, common, &args.topic, topic).await?;
                continue;
            }
            break;
        }
        let joined = tokio::select! {
            j = in_flight.join_next() => j,
            _ = &mut interrupted => break 'outer,
        };
        let Some(joined) = joined else { continue };
        let (leader, ps, result) = joined.context("fetch task")?;
        busy_leaders.retain(|l| *l != leader);
        for p in &ps {
            if let Some(st) = parts.get_mut(p) {
                st.in_flight = false;
            }
        }
        let fetched = match result {
            Ok(f) => f,
            Err(e) if e.is_retriable() => {
                tokio::time::sleep(RETRY_BACKOFF).await;
                topic = refresh(&client, common, &args.topic, topic).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // First the positions (batch headers only), so the next Fetch can go
        // out before this one's records are formatted.
        let mut work: Vec<(i32, i64, FetchedPartition)> = Vec::new();
        let mut refresh_needed = false;
        for fp in fetched {
            let p = fp.partition.0;
            let Some(st) = parts.get_mut(&p) else {
                continue;
            };
            if fp.error_code != 0 {
                let err = ClientError::kafka(
                    format!("fetch {}/{p} at offset {}", args.topic, st.fetch),
                    fp.error_code,
                    None,
                );
                if err.is_retriable() {
                    refresh_needed = true;
                    continue;
                }
                return Err(err.into());
            }
            let from = st.fetch;
            let mut next = from;
            for item in fjord_records::batches(&fp.records) {
                let Ok((h, _)) = item else { break };
                next = next.max(h.next_offset());
            }
            st.fetch = next;
            work.push((p, from, fp));
        }
        if refresh_needed {
            topic = refresh(&client, common, &args.topic, topic).await?;
        }
        if printed < limit && !parts.values().all(Part::done) {
            // Loop back to send the next Fetch after formatting: the
            // request for this leader goes out first.
            let mut list = Vec::new();
            for (&p, st) in parts.iter() {
                if st.in_flight || st.done() {
                    continue;
                }
                if topic
                    .partitions
                    .iter()
                    .any(|i| i.partition.0 == p && i.leader == leader)
                {
                    list.push((PartitionIndex(p), Offset(st.fetch)));
                }
            }
            if !list.is_empty() {
                if let Ok(conn) = client.connection(leader).await {
                    if let Ok(pending) = conn.fetch(&topic.topic_ref(), &list, &options).await {
                        let ps: Vec<i32> = list.iter().map(|(p, _)| p.0).collect();
                        for p in &ps {
                            if let Some(st) = parts.get_mut(p) {
                                st.in_flight = true;
                            }
                        }
                        busy_leaders.push(leader);
                        in_flight.spawn(async move { (leader, ps, pending.wait().await) });
                    }
                }
            }
        }
        out.clear();
        for (p, from, fp) in &work {
            let Some(st) = parts.get_mut(p) else { continue };
            let end = st.end.unwrap_or(i64::MAX);
            let mut cut = false;
            for item in fjord_records::batches(&fp.records) {
                let Ok((h, range)) = item else { break };
                if h.next_offset() <= *from {
                    continue;
                }
                if h.is_control() {
                    if !cut {
                        st.printed = st.printed.max(h.next_offset());
                    }
                    continue;
                }
                let mut bad = None;
                let visited = fjord_records::visit_records_bounded(
                    &fp.records[range],
                    DECOMPRESSED_BATCH_BYTES_MAX,
                    |r| {
                        if cut || r.offset < *from {
                            return;
                        }
                        if r.offset >= end || printed >= limit {
                            cut = true;
                            return;
                        }
                        let mut headers = Vec::with_capacity(r.headers.len());
                        for h in r.headers.clone() {
                            match h {
                                Ok(h) => headers.push(h),
                                Err(e) => bad = Some(e),
                            }
                        }
                        write_record(
                            &mut out,
                            &format,
                            args.binary,
                            &Rec {
                                topic: &args.topic,
                                partition: *p,
                                offset: r.offset,
                                timestamp: r.timestamp,
                                key: r.key,
                                value: r.value,
                                headers,
                            },
                        );
                        printed += 1;
                        st.printed = r.offset + 1;
                    },
                );
                if let Some(e) = bad {
                    return Err(anyhow::Error::new(e)
                        .context(format!("bad record header in {}/{p}", args.topic)));
                }
                visited.with_context(|| {
                    format!(
                        "bad batch at offset {} of {}/{p}",
                        h.base_offset, args.topic
                    )
                })?;
                if !cut {
                    st.printed = st.printed.max(h.next_offset());
                }
            }
            if cut {
                // Records left unprinted are fetched again (-n reached or
                // past the end): nothing after them counts as printed.
                st.fetch = st.printed;
            }
        }
        if !out.is_empty() {
            let mut lock = stdout.lock();
            if let Err(e) = lock.write_all(&out).and_then(|()| lock.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break 'outer;
                }
                return Err(anyhow::Error::new(e).context("writing to stdout"));
            }
        }
        if let (Some(g), Some(conn)) = (&args.group, &coordinator) {
            if last_commit.elapsed() >= COMMIT_EVERY {
                commit(conn, g, &args.topic, &parts, &mut committed_at).await?;
                last_commit = Instant::now();
            }
        }
    }
    in_flight.abort_all();
    if let (Some(g), Some(conn)) = (&args.group, &coordinator) {
        commit(conn, g, &args.topic, &parts, &mut committed_at).await?;
    }
    Ok(())
}

/// Commits the printed positions that moved since the last commit.
async fn commit(
    conn: &fjord_client::Connection,
    group: &str,
    topic: &str,
    parts: &BTreeMap<i32, Part>,
    committed_at: &mut HashMap<i32, i64>,
) -> Result<()> {
    let moved: Vec<(PartitionIndex, Offset)> = parts
        .iter()
        .filter(|(p, st)| committed_at.get(p) != Some(&st.printed))
        .map(|(p, st)| (PartitionIndex(*p), Offset(st.printed)))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    conn.commit_offsets(group, topic, &moved)
        .await
        .with_context(|| format!("commit offsets of group {group}"))?;
    for (p, o) in moved {
        committed_at.insert(p.0, o.0);
    }
    Ok(())
}

async fn refresh(
    client: &fjord_client::Client,
    common: &Common,
    name: &str,
    old: TopicInfo,
) -> Result<TopicInfo> {
    match topic_info(client, common, name).await {
        Ok(t) => Ok(t),
        Err(e) => {
            let retriable = e
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_retriable);
            if retriable {
                Ok(old)
            } else {
                Err(e)
            }
        }
    }
}
