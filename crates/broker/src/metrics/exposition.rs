//! `/metrics`: the Prometheus text exposition (format 0.0.4), encoded by
//! `prometheus-client` from a collector that reads the broker at scrape time.
//!
//! Names follow Prometheus' conventions (`fjord_` prefix, base units,
//! `_total` on counters, `_seconds`/`_bytes` suffixes); docs/metrics.md maps
//! the important ones to Kafka's JMX names. Per-partition, per-topic and
//! per-group-partition series stop at their caps in `fjord_model::limits`;
//! what is left out is counted in `fjord_metrics_series_omitted`.

use std::sync::Arc;

use fjord_model::histogram::Snapshot;
use fjord_model::limits::{
    METRICS_GROUP_LAG_SERIES_MAX, METRICS_PARTITION_SERIES_MAX, METRICS_TOPIC_SERIES_MAX,
};
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Health;
use crate::state::Broker;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The whole exposition, as of now.
pub fn render(health: &Arc<Health>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        health: health.clone(),
    }));
    let mut out = String::new();
    // Writing to a String cannot fail, and the collector only fails on that.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!("encoding metrics failed: {e}");
    }
    out
}

#[derive(Debug)]
struct Scrape {
    health: Arc<Health>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

type Labels = Vec<(&'static str, String)>;
type Fmt = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Fmt {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Fmt {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn counters(e: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, u64)]) -> Fmt {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(v, None)?;
    }
    Ok(())
}

fn gauges(e: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, i64)]) -> Fmt {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

/// A histogram; recorded values divided by `per_unit` are the exposed
/// ones (1e6 for µs to seconds).
fn histograms<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    per_unit: f64,
    rows: &[(L, &Snapshot)],
) -> Fmt {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, s) in rows {
        let mut buckets: Vec<(f64, u64)> = s
            .bounds
            .iter()
            .zip(&s.buckets)
            .map(|(b, n)| (*b as f64 / per_unit, *n))
            .collect();
        buckets.push((f64::INFINITY, s.buckets.last().copied().unwrap_or(0)));
        m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            s.sum as f64 / per_unit,
            s.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}

fn error_name(code: i16) -> String {
    match ErrorCode(code).name() {
        "UNKNOWN_CODE" => code.to_string(),
        name => name.to_string(),
    }
}

/// One partition's facts as read at scrape time.
struct PartitionRow {
    topic: String,
    partition: i32,
    log_start: i64,
    log_end: i64,
    high_watermark: i64,
    size_bytes: u64,
    segments: usize,
    replicas: usize,
    isr: usize,
}

impl PartitionRow {
    fn labels(&self) -> Labels {
        vec![
            ("topic", self.topic.clone()),
            ("partition", self.partition.to_string()),
        ]
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        e.encode_descriptor("fjord_build", "Fjord's version", None, MetricType::Info)?
            .encode_info(&vec![("version", env!("CARGO_PKG_VERSION"))])?;
        process(&mut e)?;
        let checks = self.health.checks();
        let ready = checks.iter().all(|c| c.ok);
        gauge(
            &mut e,
            "fjord_ready",
            "1 when /ready answers 200: storage recovered, metadata caught up, coordinators loaded, listener open",
            i64::from(ready),
        )?;
        let Some(broker) = self.health.broker() else {
            return Ok(());
        };
        requests(&mut e, broker)?;
        let mut omitted_rows = Vec::new();
        let parts = partitions(&mut e, broker)?;
        omitted_rows.push((vec![("family", "partition".to_string())], parts as i64));
        let topics = topics(&mut e, broker)?;
        omitted_rows.push((vec![("family", "topic".to_string())], topics as i64));
        let lag = groups(&mut e, broker)?;
        omitted_rows.push((vec![("family", "group_lag".to_string())], lag as i64));
        gauges(
            &mut e,
            "fjord_metrics_series_omitted",
            "Series left out of this scrape by the cardinality caps (partition, topic, group_lag)",
            &omitted_rows,
        )?;
        storage(&mut e, broker)
    }
}

fn requests(e: &mut DescriptorEncoder, broker: &Broker) -> Fmt {
    let m = &broker.metrics;
    let (open, accepted, closed, rejected) = m.connection_counts();
    gauge(
        e,
        "fjord_connections_open",
        "Client connections open",
        open as i64,
    )?;
    counter(
        e,
        "fjord_connections_accepted",
        "Client connections accepted",
        accepted,
    )?;
    counter(
        e,
        "fjord_connections_closed",
        "Client connections closed",
        closed,
    )?;
    counter(
        e,
        "fjord_connections_rejected",
        "Client connections closed at accept (max.connections.per.ip reached)",
        rejected,
    )?;
    counter(
        e,
        "fjord_connections_throttled",
        "Client connections not served, their address over its connection_creation_rate quota",
        m.connections_throttled(),
    )?;
    let pool_used = broker.connections.request_pool().map_or(0, |(size, pool)| {
        size.saturating_sub(pool.available_permits())
    });
    gauge(
        e,
        "fjord_request_pool_used_bytes",
        "Bytes of requests held against queued.max.request.bytes",
        pool_used as i64,
    )?;
    let apis = m.api_totals();
    let rows: Vec<(Labels, u64)> = apis
        .iter()
        .map(|(k, t)| (vec![("api", api_name(*k))], t.requests))
        .collect();
    counters(e, "fjord_requests", "Requests answered, by API", &rows)?;
    let rows: Vec<(Labels, &Snapshot)> = apis
        .iter()
        .map(|(k, t)| (vec![("api", api_name(*k))], &t.latency_us))
        .collect();
    histograms(
        e,
        "fjord_request_duration_seconds",
        "Time from a request read to its response ready to send, by API",
        1e6,
        &rows,
    )?;
    let rows: Vec<(Labels, u64)> = m
        .error_totals()
        .into_iter()
        .map(|((api, code), n)| (vec![("api", api_name(api)), ("error", error_name(code))], n))
        .collect();
    counters(
        e,
        "fjord_request_errors",
        "Error codes in responses, by API and error (one per partition or resource that carries it)",
        &rows,
    )
}

/// Per-partition series (capped) and broker-wide partition counts. Returns
/// how many partitions had no series of their own.
fn partitions(e: &mut DescriptorEncoder, broker: &Broker) -> Result<usize, std::fmt::Error> {
    let me = broker.config.node_id;
    let mut rows = Vec::new();
    let (mut total, mut leaders, mut under_replicated, mut offline, mut offline_logs) =
        (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut omitted = 0usize;
    for t in broker.topics() {
        for p in t.partitions.read().iter() {
            total += 1;
            let facts = p.replica_state();
            let leads = facts.leader == me;
            leaders += i64::from(leads);
            under_replicated += i64::from(leads && facts.isr.len() < facts.replicas.len());
            offline += i64::from(facts.leader.0 < 0);
            offline_logs += i64::from(p.log.is_offline());
            if rows.len() >= METRICS_PARTITION_SERIES_MAX {
                omitted += 1;
                continue;
            }
            rows.push(PartitionRow {
                topic: t.name.clone(),
                partition: p.index.0,
                log_start: p.log_start_offset().0,
                log_end: p.log_end_offset().0,
                high_watermark: p.high_watermark().0,
                size_bytes: p.size_bytes(),
                segments: p.log.segment_count(),
                replicas: facts.replicas.len(),
                isr: facts.isr.len(),
            });
        }
    }
    gauge(e, "fjord_partitions", "Partitions on this node", total)?;
    gauge(
        e,
        "fjord_partition_leaders",
        "Partitions this node leads",
        leaders,
    )?;
    gauge(
        e,
        "fjord_under_replicated_partitions",
        "Partitions this node leads whose ISR is smaller than their replica set",
        under_replicated,
    )?;
    gauge(
        e,
        "fjord_offline_partitions",
        "Partitions without a leader, as this node's metadata says",
        offline,
    )?;
    gauge(
        e,
        "fjord_storage_offline_partitions",
        "Partitions whose log an I/O error took offline on this node",
        offline_logs,
    )?;
    type Field = fn(&PartitionRow) -> i64;
    let families: [(&str, &str, Field); 7] = [
        (
            "fjord_partition_log_start_offset",
            "First offset held",
            |r| r.log_start,
        ),
        (
            "fjord_partition_log_end_offset",
            "Offset the next append gets",
            |r| r.log_end,
        ),
        (
            "fjord_partition_high_watermark",
            "Offsets below it are committed",
            |r| r.high_watermark,
        ),
        (
            "fjord_partition_size_bytes",
            "Bytes of the partition's segment files",
            |r| r.size_bytes as i64,
        ),
        (
            "fjord_partition_segments",
            "Segments of the partition's log",
            |r| r.segments as i64,
        ),
        (
            "fjord_partition_replicas",
            "Replicas of the partition",
            |r| r.replicas as i64,
        ),
        (
            "fjord_partition_in_sync_replicas",
            "Replicas in the partition's ISR",
            |r| r.isr as i64,
        ),
    ];
    let labels: Vec<Labels> = rows.iter().map(PartitionRow::labels).collect();
    for (name, help, field) in families {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (row, l) in rows.iter().zip(&labels) {
            m.encode_family(l)?.encode_gauge(&field(row))?;
        }
    }
    Ok(omitted)
}

/// Per-topic traffic (capped). Returns how many topics had no series.
fn topics(e: &mut DescriptorEncoder, broker: &Broker) -> Result<usize, std::fmt::Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let all = broker.topics();
    let omitted = all.len().saturating_sub(METRICS_TOPIC_SERIES_MAX);
    let shown = &all[..all.len().min(METRICS_TOPIC_SERIES_MAX)];
    let row = |f: fn(&crate::state::Topic) -> u64| -> Vec<(Labels, u64)> {
        shown
            .iter()
            .map(|t| (vec![("topic", t.name.clone())], f(t)))
            .collect()
    };
    counters(
        e,
        "fjord_topic_bytes_in",
        "Bytes of record batches appended by Produce",
        &row(|t| t.stats.bytes_in.load(Relaxed)),
    )?;
    counters(
        e,
        "fjord_topic_records_in",
        "Records appended by Produce",
        &row(|t| t.stats.records_in.load(Relaxed)),
    )?;
    counters(
        e,
        "fjord_topic_bytes_out",
        "Bytes of record batches sent by Fetch",
        &row(|t| t.stats.bytes_out.load(Relaxed)),
    )?;
    Ok(omitted)
}

/// Consumer lag per group and partition (capped), computed here: the
/// partition's high watermark minus the group's committed offset, as
/// kafka-consumer-groups shows it. Returns how many rows had no series.
fn groups(e: &mut DescriptorEncoder, broker: &Broker) -> Result<usize, std::fmt::Error> {
    let mut rows: Vec<(String, String, i32, i64)> = Vec::new();
    let mut groups = 0i64;
    if let Some(g) = broker.groups.loaded() {
        for shard in g.read_all(|c| {
            c.list(&[], &[])
                .into_iter()
                .map(|l| {
                    let offsets = c.committed_offsets(&l.group_id);
                    (l.group_id, offsets)
                })
                .collect::<Vec<_>>()
        }) {
            let Ok(shard) = shard else { continue };
            for (group, offsets) in shard {
                groups += 1;
                for (topic, partition, committed) in offsets {
                    rows.push((group.clone(), topic, partition.0, committed.0));
                }
            }
        }
    }
    rows.sort();
    gauge(
        e,
        "fjord_consumer_groups",
        "Consumer groups this node coordinates",
        groups,
    )?;
    let omitted = rows.len().saturating_sub(METRICS_GROUP_LAG_SERIES_MAX);
    rows.truncate(METRICS_GROUP_LAG_SERIES_MAX);
    let mut committed = Vec::with_capacity(rows.len());
    let mut lag = Vec::with_capacity(rows.len());
    for (group, topic, partition, offset) in rows {
        let hw = broker
            .topic(&topic)
            .and_then(|t| t.partition(partition))
            .map(|p| p.high_watermark().0);
        let labels = vec![
            ("group", group),
            ("topic", topic),
            ("partition", partition.to_string()),
        ];
        if let Some(hw) = hw {
            lag.push((labels.clone(), (hw - offset).max(0)));
        }
        committed.push((labels, offset));
    }
    gauges(
        e,
        "fjord_consumer_group_committed_offset",
        "Offset a consumer group committed, by partition",
        &committed,
    )?;
    gauges(
        e,
        "fjord_consumer_group_lag",
        "High watermark minus the committed offset, by group and partition",
        &lag,
    )?;
    Ok(omitted)
}

fn storage(e: &mut DescriptorEncoder, broker: &Broker) -> Fmt {
    let s = broker.storage.stats();
    histograms(
        e,
        "fjord_storage_fsync_duration_seconds",
        "One group-commit round's fsyncs of a partition log",
        1e6,
        &[(NoLabels, &s.fsync_us)],
    )?;
    histograms(
        e,
        "fjord_storage_group_commit_waiters",
        "Durability waiters (acks=all appends) released by one group-commit round",
        1.0,
        &[(NoLabels, &s.group_commit_waiters)],
    )?;
    counter(
        e,
        "fjord_storage_fdatasync_calls",
        "fdatasync calls on segment files by group commit",
        s.file_syncs,
    )?;
    counter(
        e,
        "fjord_storage_syncfs_calls",
        "syncfs calls by group commit, each covering the partitions of one filesystem waiting at once",
        s.syncfs_calls,
    )?;
    counter(
        e,
        "fjord_storage_direct_writes",
        "Appends written with O_DIRECT (log.direct.io=auto)",
        s.direct_writes,
    )?;
    counter(
        e,
        "fjord_storage_batch_cache_read_bytes",
        "Bytes that reads took from the batch cache (log.cache.max.bytes) instead of segment files",
        s.cache_read_bytes,
    )?;
    gauge(
        e,
        "fjord_storage_batch_cache_bytes",
        "Bytes of recently appended batches the batch cache holds",
        i64::try_from(broker.storage.batch_cache_bytes()).unwrap_or(i64::MAX),
    )?;
    counter(
        e,
        "fjord_storage_errors",
        "I/O errors that took a partition log offline",
        s.errors,
    )
}

#[derive(Debug)]
struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(
        &self,
        _: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// `process_*` as Prometheus' client libraries name them, from /proc.
fn process(e: &mut DescriptorEncoder) -> Fmt {
    // SAFETY: sysconf only reads a system value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as i64;
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let mut f = statm
            .split_whitespace()
            .map(|v| v.parse::<i64>().unwrap_or(0));
        let (vm, rss) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size",
            vm * page,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size",
            rss * page,
        )?;
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): state is
        // field 3; utime and stime are fields 14 and 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let cpu = (tick(11) + tick(12)) as f64 / ticks;
            e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
            gauge(
                e,
                "process_threads",
                "Threads of the process",
                f.get(17).and_then(|v| v.parse().ok()).unwrap_or(0),
            )?;
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors",
            dir.count() as i64,
        )?;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        gauge(
            e,
            "process_max_fds",
            "Limit on open file descriptors",
            i64::try_from(lim.rlim_cur).unwrap_or(i64::MAX),
        )?;
    }
    Ok(())
}
