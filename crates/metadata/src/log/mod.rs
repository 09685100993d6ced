//! The local metadata log: `<data_dir>/__cluster_metadata-0/`, Kafka's layout.
//!
//! Segments are fjord-storage [`Log`] segments holding record batches (v2)
//! whose records have a null key and a framed metadata record as value;
//! control batches hold KRaft control records ([`ControlRecord`]). Every
//! batch carries the quorum epoch as its partition leader epoch (the log's
//! `leader-epoch-checkpoint` says where each epoch starts). Beside them:
//! `quorum-state` ([`crate::quorum_state`]) and snapshots
//! `<20-digit end offset>-<10-digit epoch>.checkpoint` (KIP-630): a control
//! batch with a SnapshotHeader, data batches, a control batch with a
//! SnapshotFooter, written to `.checkpoint.part` and renamed when whole.
//!
//! This layer moves bytes: it does not decode metadata records (the image
//! does) and it does not decide what is committed (the quorum does).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_model::limits::{
    DECOMPRESSED_BATCH_BYTES_MAX, METADATA_BATCH_BYTES_MAX, METADATA_SNAPSHOT_BYTES_MAX,
};
use fjord_model::{LeaderEpoch, Offset};
use fjord_protocol::metadata_records::MetadataRecord;
use fjord_records::{batches, validate_batch, visit_records_bounded, BatchBuilder, Compression};
use fjord_storage::{Log, LogConfig, RecoveryReport, Storage};

use crate::control::{ControlRecord, VoterEntry};
use crate::fsutil::{sync_dir, write_atomic_part};
use crate::MetadataError;

/// Kafka's name for the metadata topic; its one partition's directory is
/// [`METADATA_LOG_DIR`].
pub const METADATA_TOPIC: &str = "__cluster_metadata";
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
const SNAPSHOT_SUFFIX: &str = ".checkpoint";
const PART_SUFFIX: &str = ".part";
/// Bytes read from the log per call while replaying it.
const READ_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// The directory of the metadata log under a data directory.
pub fn metadata_log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(METADATA_LOG_DIR)
}

/// What one batch of the metadata log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchContent {
    /// Record values (framed metadata records), in offset order.
    Data(Vec<Bytes>),
    Control(Vec<ControlRecord>),
}

/// One batch read back from the metadata log or a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub epoch: LeaderEpoch,
    pub append_time_ms: i64,
    pub content: BatchContent,
}

/// A snapshot's identity: it holds the state of every record below
/// `end_offset`, the last of which was written in `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotId {
    pub end_offset: Offset,
    pub epoch: LeaderEpoch,
}

impl SnapshotId {
    pub fn file_name(&self) -> String {
        format!(
            "{:020}-{:010}{SNAPSHOT_SUFFIX}",
            self.end_offset.0, self.epoch.0
        )
    }

    /// Parses `<20 digits>-<10 digits>.checkpoint`.
    pub fn parse(name: &str) -> Option<SnapshotId> {
        let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
        let (o, e) = stem.split_once('-')?;
        if o.len() != 20 || e.len() != 10 {
            return None;
        }
        if !o.bytes().chain(e.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SnapshotId {
            end_offset: Offset(o.parse().ok()?),
            epoch: LeaderEpoch(e.parse().ok()?),
        })
    }
}

/// A snapshot loaded from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub last_contained_log_timestamp_ms: i64,
    /// Record values (framed metadata records), in order.
    pub records: Vec<Bytes>,
}

/// The `__cluster_metadata-0` log of this node.
pub struct MetadataLog {
    dir: PathBuf,
    log: Arc<Log>,
}

fn log_config() -> LogConfig {
    LogConfig {
        // Metadata is only ever removed below a snapshot, never by age or size.
        retention_ms: None,
        retention_bytes: None,
        message_bytes_max: METADATA_BATCH_BYTES_MAX,
        ..LogConfig::default()
    }
}

impl MetadataLog {
    /// Opens (creating) `<data_dir>/__cluster_metadata-0`, recovering the log
    /// after a crash (a torn tail is cut at the last whole batch) and removing
    /// snapshot files that were being written.
    pub fn open(
        storage: &Storage,
        data_dir: &Path,
        now_ms: i64,
    ) -> Result<(MetadataLog, RecoveryReport), MetadataError> {
        let dir = metadata_log_dir(data_dir);
        let (log, report) = Log::open(storage, &dir, log_config(), now_ms)?;
        let listing = std::fs::read_dir(&dir).map_err(|e| MetadataError::io("list", &dir, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| MetadataError::io("list", &dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(PART_SUFFIX)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok((MetadataLog { dir, log }, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    pub fn end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// Everything below this offset is on stable storage.
    pub fn durable_end(&self) -> Offset {
        self.log.durable_offset()
    }

    /// The latest epoch in the log's epoch history, if any.
    pub fn last_epoch(&self) -> Option<(LeaderEpoch, Offset)> {
        self.log.leader_epochs().last().copied()
    }

    /// Starts `epoch` at the current end of the log: later batches carry it.
    pub fn start_epoch(&self, epoch: LeaderEpoch) -> Result<(), MetadataError> {
        if let Some((last, _)) = self.last_epoch() {
            assert!(epoch >= last, "epoch {epoch:?} below the log's {last:?}");
        }
        self.log.record_leader_epoch(epoch, self.end_offset())?;
        Ok(())
    }

    /// Appends one data batch of `values` (framed metadata records). No fsync.
    /// Returns the offsets of its first and last record.
    pub fn append_data(
        &self,
        values: &[Bytes],
        now_ms: i64,
    ) -> Result<(Offset, Offset), MetadataError> {
        assert!(!values.is_empty(), "an empty metadata batch");
        let mut b = BatchBuilder::new(Compression::None).partition_leader_epoch(self.epoch_i32());
        for v in values {
            b.push(now_ms, None, Some(v), &[]);
        }
        self.append_batch(b, now_ms)
    }

    /// Appends one control batch holding `record`. No fsync.
    pub fn append_control(
        &self,
        record: &ControlRecord,
        now_ms: i64,
    ) -> Result<(Offset, Offset), MetadataError> {
        let mut b = BatchBuilder::new(Compression::None)
            .partition_leader_epoch(self.epoch_i32())
            .control(true);
        b.push(now_ms, Some(&record.key()), Some(&record.value()), &[]);
        self.append_batch(b, now_ms)
    }

    fn epoch_i32(&self) -> i32 {
        self.last_epoch().map_or(-1, |(e, _)| e.0)
    }

    fn append_batch(
        &self,
        b: BatchBuilder,
        now_ms: i64,
    ) -> Result<(Offset, Offset), MetadataError> {
        let end_before = self.end_offset();
        let mut bytes = b.build(0);
        if bytes.len() > METADATA_BATCH_BYTES_MAX {
            return Err(MetadataError::BatchTooLarge {
                size: bytes.len(),
                max: METADATA_BATCH_BYTES_MAX,
            });
        }
        let r = self.log.append(&mut bytes, now_ms)?;
        assert_eq!(r.base_offset, end_before, "metadata appends are serialised");
        Ok((r.base_offset, r.last_offset))
    }

    /// The epoch history: (epoch, its first offset), oldest first.
    pub fn epochs(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.log.leader_epochs()
    }

    /// Whole batches from the one holding `from` on, as stored (at least
    /// one batch if any, then up to `max_bytes`): what a KRaft leader sends
    /// in a Fetch response.
    pub fn read_raw(&self, from: Offset, max_bytes: usize) -> Result<Vec<u8>, MetadataError> {
        let end = self.end_offset();
        if from >= end {
            return Ok(Vec::new());
        }
        let read = self.log.read(from, max_bytes, end, true)?;
        read.to_vec()
            .map_err(|e| MetadataError::io("read", &self.dir, e))
    }

    /// A follower's append: the leader's batches, offsets and epochs as
    /// they are (they must continue this log). No fsync.
    pub fn append_as_follower(&self, batches: &[u8], now_ms: i64) -> Result<(), MetadataError> {
        self.log.append_as_follower(batches, now_ms)?;
        Ok(())
    }

    /// Removes every batch at `offset` and above (crash-safe).
    pub fn truncate_to(&self, offset: Offset) -> Result<(), MetadataError> {
        self.log.truncate_to(offset)?;
        Ok(())
    }

    /// Makes everything below `end` durable (an fsync on the calling thread).
    pub fn sync_to(&self, end: Offset) -> Result<(), MetadataError> {
        if self.durable_end() >= end {
            return Ok(());
        }
        // On the caller's thread (the quorum's own), never on a runtime.
        self.log.flush()?;
        assert!(
            self.durable_end() >= end,
            "sync returned before the data was durable"
        );
        Ok(())
    }

    /// The batches from the one holding `from` that end below `until`, at
    /// most one read chunk of them (at least one batch when one fits below
    /// `until`): a bounded step for a reader that follows the log.
    pub fn read_chunk(&self, from: Offset, until: Offset) -> Result<Vec<LogBatch>, MetadataError> {
        let end = self.end_offset().min(until);
        if from >= end {
            return Ok(Vec::new());
        }
        let read = self.log.read(from, READ_CHUNK_BYTES, end, true)?;
        let bytes = read
            .to_vec()
            .map_err(|e| MetadataError::io("read", &self.dir, e))?;
        let mut out = Vec::new();
        decode_batches(&bytes, &mut out)
            .map_err(|reason| MetadataError::corrupt(&self.dir, reason))?;
        out.retain(|b| b.last_offset >= from && b.last_offset < until);
        Ok(out)
    }

    /// Every batch from the one holding `from` to the end of the log.
    pub fn read_from(&self, from: Offset) -> Result<Vec<LogBatch>, MetadataError> {
        let mut out = Vec::new();
        let end = self.end_offset();
        let mut next = from;
        while next < end {
            let read = self.log.read(next, READ_CHUNK_BYTES, end, true)?;
            let bytes = read
                .to_vec()
                .map_err(|e| MetadataError::io("read", &self.dir, e))?;
            let before = out.len();
            decode_batches(&bytes, &mut out)
                .map_err(|reason| MetadataError::corrupt(&self.dir, reason))?;
            match out.last() {
                Some(b) if out.len() > before => next = b.last_offset.next(),
                _ => {
                    return Err(MetadataError::corrupt(
                        &self.dir,
                        format!("no batch readable at offset {}", next.0),
                    ))
                }
            }
        }
        out.retain(|b| b.last_offset >= from);
        Ok(out)
    }

    /// Writes a snapshot of `records` (framed metadata records) as `id`,
    /// durably. An existing snapshot with the same id is replaced.
    pub fn write_snapshot(
        &self,
        id: SnapshotId,
        last_contained_log_timestamp_ms: i64,
        records: &[Bytes],
        now_ms: i64,
    ) -> Result<PathBuf, MetadataError> {
        assert!(
            id.end_offset <= self.end_offset(),
            "a snapshot beyond the log end"
        );
        let mut file = Vec::new();
        let mut offset = 0i64;
        let control = |offset: i64, r: &ControlRecord| {
            let mut b = BatchBuilder::new(Compression::None)
                .partition_leader_epoch(id.epoch.0)
                .control(true);
            b.push(now_ms, Some(&r.key()), Some(&r.value()), &[]);
            b.build(offset)
        };
        file.extend(control(
            offset,
            &ControlRecord::SnapshotHeader {
                last_contained_log_timestamp_ms,
            },
        ));
        offset += 1;
        let mut b = BatchBuilder::new(Compression::None).partition_leader_epoch(id.epoch.0);
        let mut batch_bytes = 0usize;
        for r in records {
            if !b.is_empty() && batch_bytes + r.len() > READ_CHUNK_BYTES / 8 {
                file.extend(b.build(offset));
                offset += b.len() as i64;
                b = BatchBuilder::new(Compression::None).partition_leader_epoch(id.epoch.0);
                batch_bytes = 0;
            }
            b.push(now_ms, None, Some(r), &[]);
            batch_bytes += r.len();
        }
        if !b.is_empty() {
            file.extend(b.build(offset));
            offset += b.len() as i64;
        }
        file.extend(control(offset, &ControlRecord::SnapshotFooter));
        let name = id.file_name();
        write_atomic_part(&self.dir, &name, &file)?;
        Ok(self.dir.join(name))
    }

    /// The ids of the snapshots on disk, oldest first.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, MetadataError> {
        list_snapshot_ids(&self.dir)
    }

    /// The newest whole snapshot. A damaged one is reported and skipped for
    /// the next older (the log still holds what it covered unless a newer
    /// snapshot let the log be cut; then the caller finds a gap and fails).
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>, MetadataError> {
        for id in self.snapshot_ids()?.into_iter().rev() {
            match self.read_snapshot(id) {
                Ok(s) => return Ok(Some(s)),
                Err(e) => tracing::warn!("skipping metadata snapshot {}: {e}", id.file_name()),
            }
        }
        Ok(None)
    }

    /// Reads and checks one snapshot file.
    pub fn read_snapshot(&self, id: SnapshotId) -> Result<Snapshot, MetadataError> {
        let path = self.dir.join(id.file_name());
        let found = read_snapshot_batches(&path)?;
        let corrupt = |r: &str| MetadataError::corrupt(&path, r.to_string());
        let ts = match found.first().map(|b| &b.content) {
            Some(BatchContent::Control(c)) => match c.first() {
                Some(ControlRecord::SnapshotHeader {
                    last_contained_log_timestamp_ms,
                }) => *last_contained_log_timestamp_ms,
                _ => return Err(corrupt("first record is not a SnapshotHeader")),
            },
            _ => return Err(corrupt("does not start with a control batch")),
        };
        match found.last().map(|b| &b.content) {
            Some(BatchContent::Control(c)) if c.last() == Some(&ControlRecord::SnapshotFooter) => {}
            _ => return Err(corrupt("does not end with a SnapshotFooter")),
        }
        let mut records = Vec::new();
        for b in found {
            if let BatchContent::Data(values) = b.content {
                records.extend(values);
            }
        }
        Ok(Snapshot {
            id,
            last_contained_log_timestamp_ms: ts,
            records,
        })
    }

    /// After snapshot `id` is durable: the log may start at its end offset
    /// (whole segments below it are deleted) and older snapshots go.
    pub fn delete_before_snapshot(&self, id: SnapshotId) -> Result<(), MetadataError> {
        assert!(
            self.dir.join(id.file_name()).exists(),
            "log cut below a snapshot that is not on disk"
        );
        if id.end_offset > self.start_offset() {
            self.log.delete_records_before(id.end_offset)?;
        }
        for old in self.snapshot_ids()? {
            if old < id {
                let p = self.dir.join(old.file_name());
                std::fs::remove_file(&p).map_err(|e| MetadataError::io("remove", &p, e))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Flushes the log and marks it cleanly closed.
    pub fn close(&self) -> Result<(), MetadataError> {
        self.log.close()?;
        Ok(())
    }
}

/// The `kraft.version` a dynamic quorum's bootstrap snapshot finalizes
/// (KIP-853: 1 = voter changes through the log).
pub const KRAFT_VERSION_DYNAMIC: i16 = 1;

/// Writes the bootstrap snapshot of a dynamic quorum (KIP-853; what
/// `kafka-storage format --standalone` or `--initial-controllers` writes)
/// as `<data_dir>/__cluster_metadata-0/00000000000000000000-0000000000.checkpoint`,
/// durably, in Kafka's layout: one control batch at offset 0, epoch 0,
/// holding a SnapshotHeader, a KRaftVersionRecord ([`KRAFT_VERSION_DYNAMIC`])
/// and the VotersRecord, then a control batch with the SnapshotFooter. It
/// holds no metadata records: the log still starts at offset 0.
pub fn write_bootstrap_voters(
    data_dir: &Path,
    voters: &[VoterEntry],
    now_ms: i64,
) -> Result<PathBuf, MetadataError> {
    assert!(!voters.is_empty(), "a voter set without voters");
    let dir = metadata_log_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| MetadataError::io("create", &dir, e))?;
    let id = SnapshotId {
        end_offset: Offset(0),
        epoch: LeaderEpoch(0),
    };
    let mut head = BatchBuilder::new(Compression::None)
        .partition_leader_epoch(id.epoch.0)
        .control(true);
    for r in [
        ControlRecord::SnapshotHeader {
            last_contained_log_timestamp_ms: now_ms,
        },
        ControlRecord::KRaftVersion {
            kraft_version: KRAFT_VERSION_DYNAMIC,
        },
        ControlRecord::Voters(voters.to_vec()),
    ] {
        head.push(now_ms, Some(&r.key()), Some(&r.value()), &[]);
    }
    let mut file = head.build(0);
    let mut foot = BatchBuilder::new(Compression::None)
        .partition_leader_epoch(id.epoch.0)
        .control(true);
    let footer = ControlRecord::SnapshotFooter;
    foot.push(now_ms, Some(&footer.key()), Some(&footer.value()), &[]);
    file.extend(foot.build(3));
    let name = id.file_name();
    write_atomic_part(&dir, &name, &file)?;
    Ok(dir.join(name))
}

/// Kafka's bootstrap checkpoint file name (`BootstrapDirectory`): the
/// feature levels `kafka-storage format` chose, in the metadata log
/// directory's parent (Fjord's data directory).
pub const BOOTSTRAP_CHECKPOINT_FILE: &str = "bootstrap.checkpoint";

/// Writes `records` (the bootstrap metadata: FeatureLevelRecords) as
/// `<data_dir>/bootstrap.checkpoint`, durably, in Kafka's layout: a control
/// batch at offset 0 with a SnapshotHeader, one data batch from offset 1
/// with the records, a control batch with the SnapshotFooter (what Kafka
/// 4.3.1's `kafka-storage format` writes, which `kafka-dump-log
/// --cluster-metadata-decoder` reads). The records are framed at the
/// versions Kafka writes at `metadata_version`.
pub fn write_bootstrap_checkpoint(
    data_dir: &Path,
    records: &[MetadataRecord],
    metadata_version: i16,
    now_ms: i64,
) -> Result<PathBuf, MetadataError> {
    assert!(
        !records.is_empty(),
        "a bootstrap checkpoint without records"
    );
    std::fs::create_dir_all(data_dir).map_err(|e| MetadataError::io("create", data_dir, e))?;
    let control = |r: ControlRecord, base: i64| {
        let mut b = BatchBuilder::new(Compression::None)
            .partition_leader_epoch(0)
            .control(true);
        b.push(now_ms, Some(&r.key()), Some(&r.value()), &[]);
        b.build(base)
    };
    let mut file = control(
        ControlRecord::SnapshotHeader {
            last_contained_log_timestamp_ms: 0,
        },
        0,
    );
    let mut data = BatchBuilder::new(Compression::None).partition_leader_epoch(0);
    for r in records {
        let mut value = BytesMut::new();
        r.encode_framed_for(metadata_version, &mut value);
        data.push(now_ms, None, Some(&value[..]), &[]);
    }
    file.extend(data.build(1));
    file.extend(control(
        ControlRecord::SnapshotFooter,
        1 + records.len() as i64,
    ));
    write_atomic_part(data_dir, BOOTSTRAP_CHECKPOINT_FILE, &file)?;
    Ok(data_dir.join(BOOTSTRAP_CHECKPOINT_FILE))
}

/// The records of `<data_dir>/bootstrap.checkpoint` (written by `fjord
/// format` or Kafka's `kafka-storage format`), `None` if there is none.
pub fn read_bootstrap_checkpoint(
    data_dir: &Path,
) -> Result<Option<Vec<MetadataRecord>>, MetadataError> {
    let path = data_dir.join(BOOTSTRAP_CHECKPOINT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for batch in read_snapshot_batches(&path)? {
        if let BatchContent::Data(values) = batch.content {
            for v in values {
                let (record, _) =
                    MetadataRecord::decode_framed(&mut fjord_protocol::Reader::new(v))
                        .map_err(|e| MetadataError::corrupt(&path, e.to_string()))?;
                out.push(record);
            }
        }
    }
    Ok(Some(out))
}

/// The voter set of the newest snapshot under `data_dir` that holds a
/// VotersRecord (Kafka's `VoterSetHistory` at the snapshot; Fjord writes
/// no VotersRecord into the log yet, so that is the latest one), with the
/// snapshot's id; `None` for a static quorum (no VotersRecord anywhere).
pub fn snapshot_voters(
    data_dir: &Path,
) -> Result<Option<(SnapshotId, Vec<VoterEntry>)>, MetadataError> {
    let dir = metadata_log_dir(data_dir);
    if !dir.exists() {
        return Ok(None);
    }
    for id in list_snapshot_ids(&dir)?.into_iter().rev() {
        let found = read_snapshot_batches(&dir.join(id.file_name()))?;
        let voters = found.into_iter().rev().find_map(|b| match b.content {
            BatchContent::Control(c) => c.into_iter().rev().find_map(|r| match r {
                ControlRecord::Voters(v) => Some(v),
                _ => None,
            }),
            BatchContent::Data(_) => None,
        });
        if let Some(v) = voters {
            return Ok(Some((id, v)));
        }
    }
    Ok(None)
}

/// The ids of the snapshots in `dir`, oldest first.
fn list_snapshot_ids(dir: &Path) -> Result<Vec<SnapshotId>, MetadataError> {
    let mut ids = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| MetadataError::io("list", dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| MetadataError::io("list", dir, e))?;
        if let Some(id) = entry.file_name().to_str().and_then(SnapshotId::parse) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Every batch of one snapshot file (at most `METADATA_SNAPSHOT_BYTES_MAX`).
fn read_snapshot_batches(path: &Path) -> Result<Vec<LogBatch>, MetadataError> {
    let len = std::fs::metadata(path)
        .map_err(|e| MetadataError::io("stat", path, e))?
        .len();
    if len > METADATA_SNAPSHOT_BYTES_MAX {
        return Err(MetadataError::corrupt(
            path,
            format!("{len} bytes is too large"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| MetadataError::io("read", path, e))?;
    let mut found = Vec::new();
    decode_batches(&bytes, &mut found).map_err(|r| MetadataError::corrupt(path, r))?;
    Ok(found)
}

/// Decodes concatenated batches (checking each one's CRC) into `out`.
fn decode_batches(bytes: &[u8], out: &mut Vec<LogBatch>) -> Result<(), String> {
    for item in batches(bytes) {
        let (h, range) = item.map_err(|e| e.to_string())?;
        let batch = &bytes[range];
        validate_batch(batch).map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        let mut control = Vec::new();
        let mut bad = None;
        visit_records_bounded(batch, DECOMPRESSED_BATCH_BYTES_MAX, |r| {
            if h.is_control() {
                match ControlRecord::decode(r.key.unwrap_or(&[]), r.value.unwrap_or(&[])) {
                    Ok(c) => control.push(c),
                    Err(e) => bad = Some(e.to_string()),
                }
            } else {
                match r.value {
                    Some(v) => data.push(Bytes::copy_from_slice(v)),
                    None => bad = Some(format!("record at offset {} has no value", r.offset)),
                }
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(b) = bad {
            return Err(b);
        }
        out.push(LogBatch {
            base_offset: Offset(h.base_offset),
            last_offset: Offset(h.last_offset()),
            epoch: LeaderEpoch(h.partition_leader_epoch),
            append_time_ms: h.max_timestamp,
            content: if h.is_control() {
                BatchContent::Control(control)
            } else {
                BatchContent::Data(data)
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
