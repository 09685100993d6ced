//! The load tasks: producers (rate limit, batches, requests in flight) and
//! consumers (fetch loops, record counting, end-to-end latency).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use fjord_client::{kafka_error_text, Acks, Connection, FetchOptions, ProduceAck, TopicRef};
use fjord_model::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use fjord_model::{Offset, PartitionIndex};
use fjord_records::{BatchBuilder, Compression};

use super::stats::{new_histogram, record, Stats};

/// Bytes of the send time (ns since the run's epoch) at the start of each
/// end-to-end record's value.
pub const STAMP_BYTES: usize = 8;
/// Record values are windows into a buffer this much larger than a record,
/// so consecutive records differ.
const PAYLOAD_WINDOW_BYTES: usize = 4096;

/// What every task of a run shares: when to stop and how much was done.
#[derive(Default)]
pub struct Control {
    /// Set on Ctrl-C, on the first error, or when producers are done (e2e).
    pub stop: Arc<AtomicBool>,
    /// Records handed out to producers so far (for `--count`).
    claimed: AtomicU64,
    /// Records consumed by all consumers.
    pub consumed: AtomicU64,
    /// Consumers stop once `consumed` reaches this (`u64::MAX`: no target).
    pub consume_target: AtomicU64,
}

impl Control {
    pub fn new(stop: Arc<AtomicBool>) -> Control {
        Control {
            stop,
            claimed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consume_target: AtomicU64::new(u64::MAX),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Takes up to `want` records out of the global `count`.
    fn claim(&self, want: u64, count: Option<u64>) -> u64 {
        let Some(count) = count else { return want };
        let before = self.claimed.fetch_add(want, Ordering::Relaxed);
        want.min(count.saturating_sub(before))
    }

    fn consume_done(&self) -> bool {
        self.consumed.load(Ordering::Relaxed) >= self.consume_target.load(Ordering::Relaxed)
    }
}

/// How producers produce.
pub struct ProducePlan {
    pub topic: TopicRef,
    pub acks: Acks,
    pub compression: Compression,
    pub record_bytes: usize,
    pub records_per_batch: usize,
    /// Records/s for each producer task.
    pub rate_per_task: Option<f64>,
    /// Records for all producers together.
    pub count: Option<u64>,
    pub deadline: Option<Instant>,
    /// Put the send time in each record (end-to-end mode).
    pub epoch_for_stamps: Option<Instant>,
    pub timeout_ms: i32,
}

/// Random capital letters (Kafka's perf tool does the same): compressible
/// about as much as text.
pub fn payload_source(record_bytes: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..record_bytes + PAYLOAD_WINDOW_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn build_batch(
    plan: &ProducePlan,
    payload: &[u8],
    first: u64,
    n: u64,
    scratch: &mut Vec<u8>,
) -> Bytes {
    let mut b = BatchBuilder::new(plan.compression);
    let ts = now_ms();
    let size = plan.record_bytes;
    for i in 0..n {
        let at = ((first + i) as usize).wrapping_mul(61) % PAYLOAD_WINDOW_BYTES;
        let value = &payload[at..at + size];
        match plan.epoch_for_stamps {
            Some(epoch) => {
                scratch.clear();
                scratch.extend_from_slice(value);
                let ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                scratch[..STAMP_BYTES].copy_from_slice(&ns.to_be_bytes());
                b.push(ts, None, Some(scratch), &[]);
            }
            None => {
                b.push(ts, None, Some(value), &[]);
            }
        }
    }
    Bytes::from(b.build(0))
}

struct InFlight {
    ack: ProduceAck,
    sent_at: Instant,
    records: u64,
    /// Kept to resend after a retriable error.
    partition: PartitionIndex,
    batch: Bytes,
    conn: Arc<Connection>,
}

/// One producer: round-robin over `targets` (partition and the connection
/// to its leader), one batch per request. Requests in flight are bounded by
/// the connections' `in_flight_max`; an acknowledger task awaits them in
/// order, so latency is taken when each acknowledgement arrives.
pub async fn produce_task(
    plan: Arc<ProducePlan>,
    ctl: Arc<Control>,
    stats: Arc<Stats>,
    targets: Vec<(PartitionIndex, Arc<Connection>)>,
    seed: u64,
) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<InFlight>();
    let acker = {
        let (plan, stats) = (plan.clone(), stats.clone());
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                settle(f, &stats, &plan).await?;
            }
            anyhow::Ok(())
        })
    };
    let sent = produce_loop(&plan, &ctl, &stats, &targets, seed, &tx).await;
    drop(tx);
    let acked = match acker.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("acknowledgement task failed: {e}")),
    };
    // An acknowledgement error explains a failed send better than the send.
    acked.and(sent)
}

async fn produce_loop(
    plan: &ProducePlan,
    ctl: &Control,
    stats: &Stats,
    targets: &[(PartitionIndex, Arc<Connection>)],
    seed: u64,
    acks: &tokio::sync::mpsc::UnboundedSender<InFlight>,
) -> anyhow::Result<()> {
    let payload = payload_source(plan.record_bytes, seed);
    let mut scratch = Vec::with_capacity(plan.record_bytes);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut next_target = 0usize;
    let record_bytes = plan.record_bytes as u64;
    loop {
        if ctl.stopped() || plan.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        let mut n = plan.records_per_batch as u64;
        if let Some(rate) = plan.rate_per_task {
            let allowed = (rate * started.elapsed().as_secs_f64()) as u64;
            if allowed <= sent {
                let mut due = started + Duration::from_secs_f64((sent + 1) as f64 / rate);
                if let Some(d) = plan.deadline {
                    due = due.min(d);
                }
                tokio::time::sleep_until(due.into()).await;
                continue;
            }
            n = n.min(allowed - sent);
        }
        let n = ctl.claim(n, plan.count);
        if n == 0 {
            return Ok(());
        }
        let (partition, conn) = &targets[next_target % targets.len()];
        next_target = next_target.wrapping_add(1);
        let batch = build_batch(plan, &payload, sent, n, &mut scratch);
        let sent_at = Instant::now();
        let ack = conn
            .produce(
                &plan.topic,
                plan.acks,
                plan.timeout_ms,
                vec![(*partition, batch.clone())],
            )
            .await
            .with_context(|| format!("produce to {}/{partition}", plan.topic.name))?;
        sent += n;
        if plan.acks == Acks::None {
            stats.add(n, n * record_bytes);
            continue;
        }
        let f = InFlight {
            ack,
            sent_at,
            records: n,
            partition: *partition,
            batch,
            conn: conn.clone(),
        };
        if acks.send(f).is_err() {
            // The acknowledger stopped on an error; it reports it.
            return Ok(());
        }
    }
}

async fn settle(f: InFlight, stats: &Stats, plan: &ProducePlan) -> anyhow::Result<()> {
    let mut ack = f.ack;
    let mut retries = 0;
    loop {
        // The error names the topic and partition.
        match ack.wait_ok(1).await {
            Ok(_) => break,
            Err(e) if e.is_retriable() && retries < super::PRODUCE_RETRIES_MAX => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(super::RETRY_BACKOFF_MS)).await;
                ack = f
                    .conn
                    .produce(
                        &plan.topic,
                        plan.acks,
                        plan.timeout_ms,
                        vec![(f.partition, f.batch.clone())],
                    )
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    stats.record_latency(f.sent_at.elapsed(), f.records);
    stats.add(f.records, f.records * plan.record_bytes as u64);
    Ok(())
}

/// How consumers consume.
pub struct ConsumePlan {
    pub topic: TopicRef,
    pub fetch: FetchOptions,
    pub deadline: Option<Instant>,
    /// End-to-end mode: read the send time from each record.
    pub epoch_for_stamps: Option<Instant>,
    /// Give up when nothing arrives for this long while records are expected.
    pub idle_timeout: Duration,
}

/// A partition to read from `start`, up to `end` (exclusive) if given.
#[derive(Clone, Debug)]
pub struct ConsumeTarget {
    pub partition: PartitionIndex,
    pub start: Offset,
    pub end: Option<Offset>,
}

/// One consumer connection: fetch loops over `targets`, all led by the
/// broker at the other end of `conn`.
pub async fn consume_task(
    plan: Arc<ConsumePlan>,
    ctl: Arc<Control>,
    stats: Arc<Stats>,
    conn: Arc<Connection>,
    targets: Vec<ConsumeTarget>,
) -> anyhow::Result<()> {
    let mut positions: Vec<(PartitionIndex, Offset, Option<Offset>)> = targets
        .iter()
        .map(|t| (t.partition, t.start, t.end))
        .collect();
    let mut last_progress = Instant::now();
    let mut latencies = new_histogram();
    loop {
        positions.retain(|(_, at, end)| end.is_none_or(|e| at.0 < e.0));
        if positions.is_empty() || ctl.consume_done() {
            return Ok(());
        }
        if plan.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        if ctl.stopped() && plan.epoch_for_stamps.is_none() {
            return Ok(());
        }
        let wanted: Vec<(PartitionIndex, Offset)> =
            positions.iter().map(|(p, at, _)| (*p, *at)).collect();
        let sent_at = Instant::now();
        let parts = conn
            .fetch(&plan.topic, &wanted, &plan.fetch)
            .await?
            .wait()
            .await
            .with_context(|| format!("fetch from {}", plan.topic.name))?;
        let round_trip = sent_at.elapsed();
        let (mut records, mut bytes) = (0u64, 0u64);
        for part in parts {
            let Some(pos) = positions.iter_mut().find(|(p, _, _)| *p == part.partition) else {
                continue;
            };
            if part.error_code != 0 {
                anyhow::bail!(
                    "fetch from {}/{} at offset {}: {}",
                    plan.topic.name,
                    part.partition,
                    pos.1,
                    kafka_error_text(part.error_code, None)
                );
            }
            let (from, end) = (pos.1 .0, pos.2.map_or(i64::MAX, |e| e.0));
            let mut next = from;
            for item in fjord_records::batches(&part.records) {
                // A batch cut short at the byte limit ends the usable data.
                let Ok((header, range)) = item else { break };
                if header.next_offset() <= from {
                    continue;
                }
                let visited = fjord_records::visit_records_bounded(
                    &part.records[range],
                    DECOMPRESSED_BATCH_BYTES_MAX,
                    |r| {
                        if r.offset < from || r.offset >= end {
                            return;
                        }
                        records += 1;
                        let value = r.value.unwrap_or_default();
                        bytes += value.len() as u64;
                        if let Some(epoch) = plan.epoch_for_stamps {
                            if let Some(stamp) = value.get(..STAMP_BYTES) {
                                let mut b = [0u8; STAMP_BYTES];
                                b.copy_from_slice(stamp);
                                let sent_ns = u64::from_be_bytes(b);
                                let now_ns =
                                    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                                record(
                                    &mut latencies,
                                    Duration::from_nanos(now_ns.saturating_sub(sent_ns)),
                                    1,
                                );
                            }
                        }
                    },
                );
                visited.with_context(|| {
                    format!(
                        "bad batch at offset {} of {}/{}",
                        header.base_offset, plan.topic.name, part.partition
                    )
                })?;
                next = next.max(header.next_offset());
            }
            if next == from && !part.records.is_empty() && part.high_watermark.0 > from {
                // Data but no whole batch past our offset: the batch is
                // larger than the partition limit allowed for.
                anyhow::bail!(
                    "fetch from {}/{} at offset {from}: no complete batch in {} bytes (raise --partition-max-bytes)",
                    plan.topic.name,
                    part.partition,
                    part.records.len()
                );
            }
            pos.1 = Offset(next);
        }
        if records > 0 {
            last_progress = Instant::now();
            stats.add(records, bytes);
            ctl.consumed.fetch_add(records, Ordering::Relaxed);
            match plan.epoch_for_stamps {
                Some(_) => {
                    stats.merge(&latencies);
                    latencies.reset();
                }
                None => stats.record_latency(round_trip, 1),
            }
        } else if last_progress.elapsed() >= plan.idle_timeout {
            anyhow::bail!(
                "no records from {} for {} s (consumed {} so far)",
                plan.topic.name,
                plan.idle_timeout.as_secs(),
                ctl.consumed.load(Ordering::Relaxed)
            );
        }
    }
}
