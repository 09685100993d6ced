//! `fjord produce TOPIC`: one record per input line (stdin or `--file`), the
//! line (without its `\n`) as the value.
//!
//! A reader thread hands over the lines it has; whatever is there at once
//! goes out together (one batch per partition, up to
//! `CLI_PRODUCE_BATCH_RECORDS_MAX` records or `CLI_PRODUCE_BATCH_BYTES_MAX`
//! bytes), so typing a line sends it at once and piping a file sends large
//! batches. Partitions: `--partition`, else Kafka's default partitioner
//! (murmur2 of the key), else keyless records stick to one partition per
//! batch, moving on round-robin. Each request is acknowledged before the
//! next is sent, so records land in input order. `--idempotent` gets a
//! producer id (InitProducerId) and numbers each partition's batches, so a
//! retried request is written once.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use fjord_client::{Acks, Client, ClientError, TopicInfo};
use fjord_model::limits::{
    CLI_PRODUCE_BATCH_BYTES_MAX, CLI_PRODUCE_BATCH_RECORDS_MAX, CLI_PRODUCE_LINE_BYTES_MAX,
};
use fjord_model::{NodeId, PartitionIndex};
use fjord_records::{BatchBuilder, Compression};
use serde_json::json;

use super::{parse_kv, topic_info, usage, Common};

/// Times a request is sent again after a retriable error (leader moved).
const RETRIES_MAX: u32 = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
const REQUEST_TIMEOUT_MS: i32 = 30_000;
/// How long InitProducerId is asked again while the broker is loading.
const INIT_PRODUCER_ID_WAIT: Duration = Duration::from_secs(15);

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: Common,
    /// The topic to write to.
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without
    /// SEP has a null key and the whole line as value).
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record, NAME=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Write every record to this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Acknowledgements to wait for: 0, 1 or all (-1).
    #[arg(long, default_value = "all", value_parser = crate::bench::parse_acks)]
    pub acks: Acks,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, short = 'z', default_value = "none", value_parser = crate::bench::parse_compression)]
    pub compression: Compression,
    /// Idempotent producer: a retried batch is written once (needs --acks all).
    #[arg(long)]
    pub idempotent: bool,
    /// Print where each record landed: `PARTITION OFFSET` per line (JSON with --json).
    #[arg(long)]
    pub print_offsets: bool,
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    let n = partitions.max(1) as u32;
    ((murmur2(key) as u32 & 0x7fff_ffff) % n) as i32
}

/// Reads lines into chunks: a chunk ends when the reader would block (what
/// is typed goes out at once), or at the batch limits.
fn read_lines(input: Box<dyn Read + Send>, tx: tokio::sync::mpsc::Sender<Result<Vec<Vec<u8>>>>) {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut chunk: Vec<Vec<u8>> = Vec::new();
    let mut chunk_bytes = 0usize;
    loop {
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(CLI_PRODUCE_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                } else if line.len() > CLI_PRODUCE_LINE_BYTES_MAX {
                    let _ = tx.blocking_send(Err(usage(format!(
                        "an input line is longer than {CLI_PRODUCE_LINE_BYTES_MAX} bytes"
                    ))));
                    return;
                }
                chunk_bytes += line.len();
                chunk.push(line);
                if chunk.len() >= CLI_PRODUCE_BATCH_RECORDS_MAX
                    || chunk_bytes >= CLI_PRODUCE_BATCH_BYTES_MAX
                    || reader.buffer().is_empty()
                {
                    chunk_bytes = 0;
                    if tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(anyhow::Error::new(e).context("reading input")));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

/// (key, value) records per partition, in input order.
type PerPartition = BTreeMap<i32, Vec<(Option<Vec<u8>>, Vec<u8>)>>;

struct Producer {
    client: Client,
    topic: TopicInfo,
    acks: Acks,
    compression: Compression,
    /// (producer id, epoch) and the next sequence per partition.
    idempotent: Option<(i64, i16)>,
    sequences: HashMap<PartitionIndex, i32>,
}

impl Producer {
    /// Sends one batch per partition (grouped by leader) and returns the
    /// base offset per partition (-1 with acks=0).
    async fn send(
        &mut self,
        per_partition: &PerPartition,
        headers: &[(String, String)],
        now_ms: i64,
    ) -> Result<HashMap<i32, i64>> {
        let hdrs: Vec<(&str, Option<&[u8]>)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_bytes())))
            .collect();
        let mut batches: Vec<(PartitionIndex, Bytes)> = Vec::new();
        for (&p, records) in per_partition {
            let partition = PartitionIndex(p);
            let mut b = BatchBuilder::new(self.compression);
            if let Some((pid, epoch)) = self.idempotent {
                let seq = *self.sequences.get(&partition).unwrap_or(&0);
                b = b.producer(pid, epoch, seq);
            }
            for (key, value) in records {
                b.push(now_ms, key.as_deref(), Some(value), &hdrs);
            }
            batches.push((partition, Bytes::from(b.build(0))));
        }
        let mut attempt = 0;
        loop {
            match self.send_once(&batches).await {
                Ok(offsets) => {
                    if self.idempotent.is_some() {
                        for (p, records) in per_partition {
                            let seq = self.sequences.entry(PartitionIndex(*p)).or_insert(0);
                            *seq = seq.wrapping_add(records.len() as i32) & i32::MAX;
                        }
                    }
                    return Ok(offsets);
                }
                Err(e) if e.is_retriable() && attempt < RETRIES_MAX => {
                    attempt += 1;
                    tracing::debug!("produce to {}: {e}; retrying", self.topic.name);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    if let Ok(t) = self.client.topic(&self.topic.name).await {
                        self.topic = t;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn send_once(
        &self,
        batches: &[(PartitionIndex, Bytes)],
    ) -> Result<HashMap<i32, i64>, ClientError> {
        let mut by_leader: BTreeMap<NodeId, Vec<(PartitionIndex, Bytes)>> = BTreeMap::new();
        for (p, b) in batches {
            let Some(info) = self.topic.partitions.iter().find(|i| i.partition == *p) else {
                return Err(ClientError::kafka(
                    format!("produce to {}/{}", self.topic.name, p.0),
                    3,
                    None,
                ));
            };
            if info.leader.0 < 0 {
                // LEADER_NOT_AVAILABLE: retriable.
                return Err(ClientError::kafka(
                    format!("produce to {}/{}", self.topic.name, p.0),
                    5,
                    None,
                ));
            }
            by_leader
                .entry(info.leader)
                .or_default()
                .push((*p, b.clone()));
        }
        let mut out = HashMap::new();
        for (leader, batches) in by_leader {
            let n = batches.len();
            let conn = self.client.connection(leader).await?;
            let ack = conn
                .produce(
                    &self.topic.topic_ref(),
                    self.acks,
                    REQUEST_TIMEOUT_MS,
                    batches.clone(),
                )
                .await?;
            if self.acks == Acks::None {
                for (p, _) in &batches {
                    out.insert(p.0, -1);
                }
                continue;
            }
            for r in ack.wait_ok(n).await? {
                out.insert(r.partition.0, r.base_offset.0);
            }
        }
        Ok(out)
    }
}

pub async fn run(args: ProduceArgs) -> Result<()> {
    let common = &args.common;
    let headers = args
        .headers
        .iter()
        .map(|h| parse_kv("--header", h))
        .collect::<Result<Vec<_>>>()?;
    if args.idempotent && args.acks != Acks::All {
        return Err(usage("--idempotent needs --acks all"));
    }
    if let Some(sep) = &args.key_separator {
        if sep.is_empty() {
            return Err(usage("--key-separator must not be empty"));
        }
    }
    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) => Box::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let client = common.connect().await?;
    let topic = topic_info(&client, common, &args.topic).await?;
    let partitions = topic.partitions.len();
    if let Some(p) = args.partition {
        if p < 0 || p as usize >= partitions {
            return Err(usage(format!(
                "--partition {p}: topic {} has partitions 0 to {}",
                args.topic,
                partitions.saturating_sub(1)
            )));
        }
    }
    let idempotent = if args.idempotent {
        // A broker that has just started may still be loading (Kafka answers
        // COORDINATOR_LOAD_IN_PROGRESS): ask again for a while.
        let deadline = std::time::Instant::now() + INIT_PRODUCER_ID_WAIT;
        loop {
            match client.bootstrap_connection().init_producer_id().await {
                Ok(id) => break Some(id),
                Err(e) if e.is_retriable() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(e) => return Err(anyhow::Error::new(e).context("idempotent producer")),
            }
        }
    } else {
        None
    };
    let mut producer = Producer {
        client,
        topic,
        acks: args.acks,
        compression: args.compression,
        idempotent,
        sequences: HashMap::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let reader = std::thread::Builder::new()
        .name("fjord-produce-input".into())
        .spawn(move || read_lines(input, tx))
        .context("starting the input reader")?;
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    let mut sticky: usize = 0;
    let mut written: u64 = 0;
    let mut out = String::new();
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        sticky = (sticky + 1) % partitions.max(1);
        let mut per_partition: PerPartition = BTreeMap::new();
        // (partition, index within its batch) per input line, for --print-offsets.
        let mut placed: Vec<(i32, usize)> = Vec::with_capacity(chunk.len());
        for line in chunk {
            let (key, value) = match sep {
                Some(sep) => match find(&line, sep) {
                    Some(i) => (Some(line[..i].to_vec()), line[i + sep.len()..].to_vec()),
                    None => (None, line),
                },
                None => (None, line),
            };
            let p = match (args.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => sticky as i32,
            };
            let batch = per_partition.entry(p).or_default();
            placed.push((p, batch.len()));
            batch.push((key, value));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let offsets = producer.send(&per_partition, &headers, now_ms).await?;
        written += placed.len() as u64;
        if args.print_offsets {
            out.clear();
            for (p, i) in placed {
                let base = offsets.get(&p).copied().unwrap_or(-1);
                let offset = if base < 0 { -1 } else { base + i as i64 };
                if common.json {
                    out.push_str(&json!({ "partition": p, "offset": offset }).to_string());
                    out.push('\n');
                } else {
                    out.push_str(&format!("{p} {offset}\n"));
                }
            }
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
    }
    drop(rx);
    let _ = reader.join();
    tracing::debug!("produced {written} records to {}", args.topic);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert_eq!(partition_for_key(b"foobar", 1), 0);
        let p = partition_for_key(b"21", 7);
        assert!((0..7).contains(&p));
    }

    #[test]
    fn lines_are_chunked_without_their_newline() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let input: Box<dyn Read + Send> =
            Box::new(std::io::Cursor::new(b"a\n\nb\xff\nlast".to_vec()));
        read_lines(input, tx);
        let mut lines = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            lines.extend(chunk.unwrap());
        }
        assert_eq!(
            lines,
            vec![
                b"a".to_vec(),
                b"".to_vec(),
                b"b\xff".to_vec(),
                b"last".to_vec()
            ]
        );
    }
}
