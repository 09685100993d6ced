//! `fjord bench`: a load generator for any Kafka-compatible broker.
//!
//! - `produce`: producers send batches (one partition per request,
//!   round-robin) with requests in flight; latency is send to
//!   acknowledgement of each request, counted once per record it carried.
//! - `consume`: consumers fetch from the earliest offset to the end of the
//!   log as it was at start (or `--count` records, or `--duration`);
//!   latency is the fetch round trip.
//! - `e2e`: producers at a fixed rate put the send time in each record,
//!   consumers reading from the end measure produce-to-consume latency per
//!   record.
//!
//! Each producer and each consumer has connections of its own. Throughput
//! counts record values (MB = 10^6 bytes).

mod load;
mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fjord_client::{
    Acks, Client, ClientError, ClientOptions, Connection, ConnectionOptions, FetchOptions,
    NewTopic, OffsetSpec, TopicInfo,
};
use fjord_model::limits::MESSAGE_BYTES_MAX_CEILING;
use fjord_model::{NodeId, PartitionIndex};
use fjord_records::Compression;

pub use load::STAMP_BYTES;
pub use stats::{Latency, Summary};

use load::{consume_task, produce_task, ConsumePlan, ConsumeTarget, Control, ProducePlan};
use stats::{spawn_progress, Stats};

/// Run length when neither `--count` nor `--duration` is given (produce, e2e).
const DURATION_DEFAULT: Duration = Duration::from_secs(10);
/// How long a new topic may take to get leaders.
const LEADER_WAIT_MS: u64 = 15_000;
/// How long consumers may see nothing while records are expected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying after a retriable error (leader not ready yet).
pub(crate) const RETRY_BACKOFF_MS: u64 = 100;
/// Times a produce request is retried after a retriable error.
pub(crate) const PRODUCE_RETRIES_MAX: u32 = 5;
/// Largest record value `--record-size` accepts.
const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Options every mode has.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// A broker to start from.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        env = "FJORD_BOOTSTRAP"
    )]
    pub bootstrap: String,
    /// Topic to use (created if missing, except by `consume`).
    #[arg(long, default_value = "fjord-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor of the topic when it is created (-1: the broker's default).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub replication_factor: i16,
    /// Stop after this many records (all producers or consumers together).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long: 30s, 500ms, 2m, or seconds.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// Defaults, as the command line has them, for `bootstrap` and `topic`.
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>) -> CommonArgs {
        CommonArgs {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            partitions: 1,
            replication_factor: -1,
            count: None,
            duration: None,
            quiet: false,
            json: false,
        }
    }
}

/// Options of the producing side.
#[derive(clap::Args, Clone, Debug)]
pub struct ProducerArgs {
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records per second for all producers together (no limit by default).
    #[arg(long)]
    pub rate: Option<f64>,
    /// 0, 1 or all (-1).
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_hyphen_values = true)]
    pub acks: Acks,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression: Compression,
    /// Producer tasks, each with its own connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Uncompressed bytes of record values per batch (one batch per request).
    #[arg(long, default_value_t = 128 * 1024)]
    pub batch_bytes: usize,
    /// Produce requests each producer keeps awaiting acknowledgement.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
}

impl Default for ProducerArgs {
    fn default() -> Self {
        ProducerArgs {
            record_size: 100,
            rate: None,
            acks: Acks::All,
            compression: Compression::None,
            producers: 1,
            batch_bytes: 128 * 1024,
            in_flight: 5,
        }
    }
}

/// Options of the consuming side.
#[derive(clap::Args, Clone, Debug)]
pub struct ConsumerArgs {
    /// Consumer tasks, each with its own connections; partitions are split among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Most bytes of one fetch response.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub fetch_max_bytes: i32,
    /// Most bytes per partition in one fetch response.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub partition_max_bytes: i32,
}

impl Default for ConsumerArgs {
    fn default() -> Self {
        ConsumerArgs {
            consumers: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `fjord bench produce`.
#[derive(clap::Args, Clone, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
}

/// `fjord bench consume`.
#[derive(clap::Args, Clone, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
}

/// `fjord bench e2e`.
#[derive(clap::Args, Clone, Debug)]
pub struct E2eArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
}

/// The `fjord bench` subcommands.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum BenchCommand {
    /// Produce as fast as allowed and report throughput and acknowledgement latency.
    ///
    /// Example: fjord bench produce --topic t --record-size 1024 --acks all --duration 30s
    Produce(ProduceArgs),
    /// Consume a topic from the start and report throughput.
    ///
    /// Example: fjord bench consume --topic t --consumers 2
    Consume(ConsumeArgs),
    /// Produce at a fixed rate and consume at once: produce-to-consume latency.
    ///
    /// Example: fjord bench e2e --topic lat --rate 50000 --record-size 1024 --json
    E2e(E2eArgs),
}

impl BenchCommand {
    fn common(&self) -> &CommonArgs {
        match self {
            BenchCommand::Produce(a) => &a.common,
            BenchCommand::Consume(a) => &a.common,
            BenchCommand::E2e(a) => &a.common,
        }
    }

    /// Runs the benchmark; `stop` (set on Ctrl-C) ends it early with a summary.
    pub async fn run(&self, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
        match self {
            BenchCommand::Produce(a) => run_produce(a, stop).await,
            BenchCommand::Consume(a) => run_consume(a, stop).await,
            BenchCommand::E2e(a) => run_e2e(a, stop).await,
        }
    }

    /// Prints the summary to stdout, as text or JSON.
    pub fn print(&self, summary: &Summary) -> anyhow::Result<()> {
        if self.common().json {
            println!("{}", serde_json::to_string(summary)?);
        } else {
            print!("{}", summary.text());
        }
        Ok(())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => return Err(format!("unknown duration unit '{other}' (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("duration '{s}': {e}"))
}

pub(crate) fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .find(|c| c.name() == s)
    .ok_or_else(|| format!("compression must be none, gzip, snappy, lz4 or zstd, not '{s}'"))
}

fn acks_name(a: Acks) -> String {
    match a {
        Acks::None => "0",
        Acks::Leader => "1",
        Acks::All => "all",
    }
    .to_string()
}

fn check_common(c: &CommonArgs) -> anyhow::Result<()> {
    anyhow::ensure!(c.partitions >= 1, "--partitions must be at least 1");
    anyhow::ensure!(c.count != Some(0), "--count must be at least 1");
    anyhow::ensure!(
        c.duration.is_none_or(|d| !d.is_zero()),
        "--duration must be positive"
    );
    Ok(())
}

fn check_producer(p: &ProducerArgs, e2e: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=RECORD_BYTES_MAX).contains(&p.record_size),
        "--record-size must be 1..={RECORD_BYTES_MAX}"
    );
    anyhow::ensure!(
        !e2e || p.record_size >= STAMP_BYTES,
        "--record-size must be at least {STAMP_BYTES} in e2e mode (the send time is in the value)"
    );
    anyhow::ensure!(p.producers >= 1, "--producers must be at least 1");
    anyhow::ensure!(p.in_flight >= 1, "--in-flight must be at least 1");
    anyhow::ensure!(
        (1..=MESSAGE_BYTES_MAX_CEILING).contains(&p.batch_bytes),
        "--batch-bytes must be 1..={MESSAGE_BYTES_MAX_CEILING}"
    );
    anyhow::ensure!(
        p.rate.is_none_or(|r| r.is_finite() && r > 0.0),
        "--rate must be a positive number of records/s"
    );
    Ok(())
}

fn check_consumer(c: &ConsumerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(c.consumers >= 1, "--consumers must be at least 1");
    anyhow::ensure!(c.fetch_max_bytes >= 1, "--fetch-max-bytes must be positive");
    anyhow::ensure!(
        c.partition_max_bytes >= 1,
        "--partition-max-bytes must be positive"
    );
    Ok(())
}

/// Connects, with a hint when the broker hangs up on us.
async fn connect(bootstrap: &str, in_flight: usize) -> anyhow::Result<Client> {
    let mut options = ClientOptions::new(bootstrap);
    options.connection = ConnectionOptions {
        client_id: "fjord-bench".to_string(),
        in_flight_max: in_flight,
        ..ConnectionOptions::default()
    };
    Client::connect(options).await.map_err(|e| match e {
        ClientError::Disconnected { .. } => anyhow::anyhow!(
            "{e} (fjord bench speaks PLAINTEXT only: does this listener require TLS or SASL?)"
        ),
        e => anyhow::anyhow!("{e}"),
    })
}

/// The topic, created with `--partitions` if missing (when `create`).
async fn topic(client: &Client, c: &CommonArgs, create: bool) -> anyhow::Result<TopicInfo> {
    match client.topic(&c.topic).await {
        Ok(t) if t.all_led() => return Ok(t),
        Ok(_) => {}
        Err(e) if e.code() == Some(3) && create => {
            client
                .create_topic(&NewTopic {
                    name: c.topic.clone(),
                    partitions: c.partitions,
                    replication_factor: c.replication_factor,
                    configs: Vec::new(),
                })
                .await?;
        }
        Err(e) if e.code() == Some(3) => {
            anyhow::bail!(
                "topic {} does not exist (fill it first with `fjord bench produce --topic {}`)",
                c.topic,
                c.topic
            )
        }
        Err(e) => return Err(e.into()),
    }
    let t = client.wait_for_leaders(&c.topic, LEADER_WAIT_MS).await?;
    // Metadata can name a leader before that broker serves the partition
    // (Kafka, just after creation): wait until every leader answers.
    let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
    loop {
        match client.list_offsets(&t, OffsetSpec::Latest).await {
            Ok(_) => return Ok(t),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
            }
            Err(e) => return Err(e).context(format!("topic {} is not ready", c.topic)),
        }
    }
}

/// Partitions of producer/consumer `i` of `n`: round-robin, and when there
/// are more tasks than partitions, task `i` shares partition `i % len`.
fn share(
    partitions: &[(PartitionIndex, NodeId)],
    i: usize,
    n: usize,
) -> Vec<(PartitionIndex, NodeId)> {
    if partitions.is_empty() {
        return Vec::new();
    }
    if n > partitions.len() {
        return vec![partitions[i % partitions.len()]];
    }
    partitions
        .iter()
        .enumerate()
        .filter(|(k, _)| k % n == i)
        .map(|(_, p)| *p)
        .collect()
}

fn leaders(t: &TopicInfo) -> Vec<(PartitionIndex, NodeId)> {
    t.partitions
        .iter()
        .map(|p| (p.partition, p.leader))
        .collect()
}

/// Opens one connection per distinct leader among `parts`.
async fn connections_for(
    client: &Client,
    parts: &[(PartitionIndex, NodeId)],
) -> anyhow::Result<BTreeMap<NodeId, Arc<Connection>>> {
    let mut conns = BTreeMap::new();
    for (_, leader) in parts {
        if !conns.contains_key(leader) {
            conns.insert(*leader, client.open_connection(*leader).await?);
        }
    }
    Ok(conns)
}

/// Waits for every task; the first error stops the others and is returned.
async fn join_all(
    mut tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| Err(anyhow::anyhow!("task failed: {e}")));
        if let Err(e) = result {
            stop.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn produce_plan(
    c: &CommonArgs,
    p: &ProducerArgs,
    topic: &TopicInfo,
    started: Instant,
    stamps: bool,
) -> ProducePlan {
    let duration = match (c.count, c.duration) {
        (None, None) => Some(DURATION_DEFAULT),
        (_, d) => d,
    };
    ProducePlan {
        topic: topic.topic_ref(),
        acks: p.acks,
        compression: p.compression,
        record_bytes: p.record_size,
        records_per_batch: (p.batch_bytes / p.record_size).max(1),
        rate_per_task: p.rate.map(|r| r / p.producers as f64),
        count: c.count,
        deadline: duration.map(|d| started + d),
        epoch_for_stamps: stamps.then_some(started),
        timeout_ms: 30_000,
    }
}

async fn spawn_producers(
    client: &Client,
    topic: &TopicInfo,
    p: &ProducerArgs,
    plan: Arc<ProducePlan>,
    ctl: &Arc<Control>,
    stats: &Arc<Stats>,
) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
    let parts = leaders(topic);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..p.producers {
        let mine = share(&parts, i, p.producers);
        let conns = connections_for(client, &mine).await?;
        let targets = mine
            .iter()
            .filter_map(|(part, leader)| conns.get(leader).map(|c| (*part, c.clone())))
            .collect();
        tasks.spawn(produce_task(
            plan.clone(),
            ctl.clone(),
            stats.clone(),
            targets,
            i as u64 + 1,
        ));
    }
    Ok(tasks)
}

/// `fjord bench produce`.
pub async fn run_produce(args: &ProduceArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let (c, p) = (&args.common, &args.producer);
    check_common(c)?;
    check_producer(p, false)?;
    let client = connect(&c.bootstrap, p.in_flight).await?;
    let topic = topic(&client, c, true).await?;
    let ctl = Arc::new(Control::new(stop));
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let plan = Arc::new(produce_plan(c, p, &topic, started, false));
    let tasks = spawn_producers(&client, &topic, p, plan, &ctl, &stats).await?;
    let progress = (!c.quiet).then(|| spawn_progress("produce", stats.clone(), started));
    let result = join_all(tasks, &ctl.stop).await;
    let elapsed = started.elapsed();
    if let Some(h) = progress {
        h.abort();
    }
    result?;
    Ok(Summary {
        mode: "produce",
        bootstrap: c.bootstrap.clone(),
        topic: c.topic.clone(),
        partitions: topic.partitions.len(),
        record_bytes: Some(p.record_size),
        acks: Some(acks_name(p.acks)),
        compression: Some(p.compression.name()),
        producers: Some(p.producers),
        consumers: None,
        rate_limit: p.rate,
        records: stats.records(),
        bytes: stats.bytes(),
        elapsed_s: elapsed.as_secs_f64(),
        records_per_s: 0.0,
        mb_per_s: 0.0,
        latency: stats.latency("send to acknowledgement, per request, weighted by records"),
    }
    .with_rates())
}

fn fetch_options(k: &ConsumerArgs, max_wait_ms: i32) -> FetchOptions {
    FetchOptions {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: k.fetch_max_bytes,
        partition_max_bytes: k.partition_max_bytes,
        isolation_level: 0,
    }
}

async fn spawn_consumers(
    client: &Client,
    k: &ConsumerArgs,
    plan: Arc<ConsumePlan>,
    targets: Vec<(ConsumeTarget, NodeId)>,
    ctl: &Arc<Control>,
    stats: &Arc<Stats>,
) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
    let parts: Vec<(PartitionIndex, NodeId)> =
        targets.iter().map(|(t, l)| (t.partition, *l)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let consumers = k.consumers.min(parts.len().max(1));
    for i in 0..consumers {
        let mine = share(&parts, i, consumers);
        let conns = connections_for(client, &mine).await?;
        for (leader, conn) in conns {
            let assigned: Vec<ConsumeTarget> = targets
                .iter()
                .filter(|(t, l)| *l == leader && mine.iter().any(|(p, _)| *p == t.partition))
                .map(|(t, _)| t.clone())
                .collect();
            tasks.spawn(consume_task(
                plan.clone(),
                ctl.clone(),
                stats.clone(),
                conn,
                assigned,
            ));
        }
    }
    Ok(tasks)
}

/// `fjord bench consume`.
pub async fn run_consume(args: &ConsumeArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let (c, k) = (&args.common, &args.consumer);
    check_common(c)?;
    check_consumer(k)?;
    let client = connect(&c.bootstrap, 1).await?;
    let topic = topic(&client, c, false).await?;
    let earliest = client
        .list_offsets(&topic, OffsetSpec::Earliest)
        .await
        .context("earliest offsets")?;
    let latest = client
        .list_offsets(&topic, OffsetSpec::Latest)
        .await
        .context("latest offsets")?;
    let available: i64 = latest
        .iter()
        .zip(&earliest)
        .map(|((_, l), (_, e))| (l.0 - e.0).max(0))
        .sum();
    // With --count, read past the current end if needed; otherwise stop there.
    let bounded = c.count.is_none();
    if bounded && available == 0 {
        anyhow::bail!(
            "topic {} is empty (fill it first with `fjord bench produce --topic {}`)",
            c.topic,
            c.topic
        );
    }
    let targets: Vec<(ConsumeTarget, NodeId)> = topic
        .partitions
        .iter()
        .filter_map(|p| {
            let start = earliest.iter().find(|(q, _)| *q == p.partition)?.1;
            let end = latest.iter().find(|(q, _)| *q == p.partition)?.1;
            Some((
                ConsumeTarget {
                    partition: p.partition,
                    start,
                    end: bounded.then_some(end),
                },
                p.leader,
            ))
        })
        .collect();
    let ctl = Arc::new(Control::new(stop));
    if let Some(n) = c.count {
        ctl.consume_target.store(n, Ordering::Relaxed);
    }
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let plan = Arc::new(ConsumePlan {
        topic: topic.topic_ref(),
        fetch: fetch_options(k, 500),
        deadline: c.duration.map(|d| started + d),
        epoch_for_stamps: None,
        idle_timeout: IDLE_TIMEOUT,
    });
    let tasks = spawn_consumers(&client, k, plan, targets, &ctl, &stats).await?;
    let progress = (!c.quiet).then(|| spawn_progress("consume", stats.clone(), started));
    let result = join_all(tasks, &ctl.stop).await;
    let elapsed = started.elapsed();
    if let Some(h) = progress {
        h.abort();
    }
    result?;
    Ok(Summary {
        mode: "consume",
        bootstrap: c.bootstrap.clone(),
        topic: c.topic.clone(),
        partitions: topic.partitions.len(),
        record_bytes: None,
        acks: None,
        compression: None,
        producers: None,
        consumers: Some(k.consumers.min(topic.partitions.len())),
        rate_limit: None,
        records: stats.records(),
        bytes: stats.bytes(),
        elapsed_s: elapsed.as_secs_f64(),
        records_per_s: 0.0,
        mb_per_s: 0.0,
        latency: stats.latency("fetch round trip"),
    }
    .with_rates())
}

/// Records/s of `fjord bench e2e` without `--rate`.
pub const E2E_RATE_DEFAULT: f64 = 1000.0;

/// `fjord bench e2e`.
pub async fn run_e2e(args: &E2eArgs, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let (c, p, k) = (&args.common, &args.producer, &args.consumer);
    check_common(c)?;
    check_producer(p, true)?;
    check_consumer(k)?;
    let mut p = p.clone();
    p.rate = Some(p.rate.unwrap_or(E2E_RATE_DEFAULT));
    let client = connect(&c.bootstrap, p.in_flight).await?;
    let topic = topic(&client, c, true).await?;
    let latest = client.list_offsets(&topic, OffsetSpec::Latest).await?;
    let targets: Vec<(ConsumeTarget, NodeId)> = topic
        .partitions
        .iter()
        .filter_map(|q| {
            let start = latest.iter().find(|(x, _)| *x == q.partition)?.1;
            Some((
                ConsumeTarget {
                    partition: q.partition,
                    start,
                    end: None,
                },
                q.leader,
            ))
        })
        .collect();
    // Producers stop on `produce_stop`; consumers go on until they have
    // seen everything that was acknowledged.
    let ctl = Arc::new(Control::new(stop.clone()));
    let consume_ctl = Arc::new(Control::new(Arc::new(AtomicBool::new(false))));
    let produced = Arc::new(Stats::default());
    let consumed = Arc::new(Stats::default());
    let started = Instant::now();
    let consume_plan = Arc::new(ConsumePlan {
        topic: topic.topic_ref(),
        fetch: fetch_options(k, 100),
        deadline: None,
        epoch_for_stamps: Some(started),
        idle_timeout: IDLE_TIMEOUT,
    });
    let consumers =
        spawn_consumers(&client, k, consume_plan, targets, &consume_ctl, &consumed).await?;
    let plan = Arc::new(produce_plan(c, &p, &topic, started, true));
    let producers = spawn_producers(&client, &topic, &p, plan, &ctl, &produced).await?;
    let progress = (!c.quiet).then(|| spawn_progress("e2e", consumed.clone(), started));
    let produce_result = join_all(producers, &ctl.stop).await;
    // With acks=0 these are the records sent.
    consume_ctl
        .consume_target
        .store(produced.records(), Ordering::Relaxed);
    let consume_result = join_all(consumers, &consume_ctl.stop).await;
    let elapsed = started.elapsed();
    if let Some(h) = progress {
        h.abort();
    }
    produce_result?;
    consume_result?;
    Ok(Summary {
        mode: "e2e",
        bootstrap: c.bootstrap.clone(),
        topic: c.topic.clone(),
        partitions: topic.partitions.len(),
        record_bytes: Some(p.record_size),
        acks: Some(acks_name(p.acks)),
        compression: Some(p.compression.name()),
        producers: Some(p.producers),
        consumers: Some(k.consumers.min(topic.partitions.len())),
        rate_limit: p.rate,
        records: consumed.records(),
        bytes: consumed.bytes(),
        elapsed_s: elapsed.as_secs_f64(),
        records_per_s: 0.0,
        mb_per_s: 0.0,
        latency: consumed.latency("produce to consume, per record"),
    }
    .with_rates())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn partitions_are_shared_round_robin() {
        let parts: Vec<(PartitionIndex, NodeId)> =
            (0..5).map(|i| (PartitionIndex(i), NodeId(1))).collect();
        let all: Vec<usize> = (0..2).map(|i| share(&parts, i, 2).len()).collect();
        assert_eq!(all, vec![3, 2]);
        // More tasks than partitions: each task gets one, shared.
        assert_eq!(share(&parts[..2], 3, 4), vec![parts[1]]);
        assert!(share(&[], 0, 1).is_empty());
    }

    #[test]
    fn compression_and_acks_parse() {
        assert_eq!(parse_compression("zstd"), Ok(Compression::Zstd));
        assert!(parse_compression("brotli").is_err());
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert_eq!(parse_acks("-1"), Ok(Acks::All));
        assert!(parse_acks("2").is_err());
    }
}
