//! [`PartitionIo`] over the partition layer: a load reads the partition's
//! log from its start to its end and checks each batch as a broker checks a
//! produced batch (framing, magic, CRC32C, record framing; compaction's gaps
//! and empty batches allowed) before replaying it; an append goes through [`Partition::append`] with `acks=all` (so it
//! wakes waiting fetches, and later replicates) and resolves when committed.

use std::sync::Arc;

use bytes::BytesMut;
use fjord_model::limits::{COORDINATOR_LOAD_READ_BYTES, DECOMPRESSED_BATCH_BYTES_MAX};
use fjord_model::{Offset, ProducerId};
use fjord_partition::{Acks, Partition};
use fjord_records::control::MarkerType;
use fjord_records::{BatchBuilder, Compression};

use crate::{Durable, LoadError, LoadSummary, Loaded, PartitionIo, TxnWriter, Visitor, WriteError};

/// The partitions of an internal topic, by index.
pub struct LogPartitions {
    partitions: Vec<Arc<Partition>>,
}

impl LogPartitions {
    pub fn new(partitions: Vec<Arc<Partition>>) -> LogPartitions {
        LogPartitions { partitions }
    }
}

impl PartitionIo for LogPartitions {
    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    fn load(
        &self,
        partition: u32,
        closing: &dyn Fn() -> bool,
        visit: &mut Visitor<'_>,
    ) -> Result<LoadSummary, LoadError> {
        let log = &self
            .partitions
            .get(partition as usize)
            .ok_or(LoadError::NoPartition)?
            .log;
        let mut next = log.log_start_offset();
        // Records appended after this point are the shard's own (it is not
        // active before the load ends, so there are none).
        let end = log.log_end_offset();
        let mut summary = LoadSummary::default();
        while next < end {
            if closing() {
                return Err(LoadError::Closed);
            }
            let read_err = |e: &dyn std::fmt::Display| LoadError::Read {
                offset: next.0,
                detail: e.to_string(),
            };
            let read = log
                .read(next, COORDINATOR_LOAD_READ_BYTES, end, true)
                .map_err(|e| read_err(&e))?;
            let bytes = read.to_vec().map_err(|e| read_err(&e))?;
            if bytes.is_empty() {
                return Err(LoadError::Corrupt {
                    offset: next.0,
                    detail: format!("nothing readable before the log end {}", end.0),
                });
            }
            summary.bytes += bytes.len() as u64;
            let mut iter = fjord_records::batches(&bytes);
            for item in iter.by_ref() {
                let (header, range) = item.map_err(|e| LoadError::Corrupt {
                    offset: next.0,
                    detail: e.to_string(),
                })?;
                let batch = bytes.get(range).ok_or_else(|| LoadError::Corrupt {
                    offset: header.base_offset,
                    detail: "batch runs past the bytes read".to_string(),
                })?;
                let corrupt = |e: fjord_records::RecordsError| LoadError::Corrupt {
                    offset: header.base_offset,
                    detail: e.to_string(),
                };
                // A compacted partition's batches may have fewer records than
                // offsets, or none (kept for a producer's sequence).
                fjord_records::validate_stored_batch(batch).map_err(corrupt)?;
                if header.next_offset() <= next.0 {
                    return Err(LoadError::Corrupt {
                        offset: header.base_offset,
                        detail: format!(
                            "batch ends at {} before offset {}",
                            header.next_offset(),
                            next.0
                        ),
                    });
                }
                next = Offset(header.next_offset());
                if header.is_control() {
                    // A transaction marker resolves its producer's pending
                    // records; other control batches carry nothing for a shard.
                    if let Some(m) = fjord_records::control::parse_end_txn_marker(&header, batch)
                        .map_err(corrupt)?
                    {
                        visit(
                            Offset(header.base_offset),
                            Loaded::Marker {
                                producer_id: ProducerId(header.producer_id),
                                commit: m.marker == MarkerType::Commit,
                            },
                        )?;
                    }
                    continue;
                }
                let txn = (header.is_transactional() && header.producer_id >= 0)
                    .then_some(ProducerId(header.producer_id));
                let records =
                    fjord_records::decode_records_bounded(batch, DECOMPRESSED_BATCH_BYTES_MAX)
                        .map_err(corrupt)?;
                for r in records {
                    let Some(key) = r.key else { continue };
                    visit(
                        Offset(r.offset),
                        Loaded::Record {
                            key: &key,
                            value: r.value.as_deref(),
                            txn,
                        },
                    )?;
                    summary.records += 1;
                }
            }
        }
        Ok(summary)
    }

    fn append(
        &self,
        partition: u32,
        records: &[(&[u8], Option<&[u8]>)],
        txn: Option<TxnWriter>,
        now_ms: i64,
    ) -> Result<Durable, WriteError> {
        let target = self
            .partitions
            .get(partition as usize)
            .ok_or_else(|| WriteError(format!("no partition {partition}")))?;
        let mut builder = BatchBuilder::new(Compression::None);
        if let Some(t) = txn {
            // Kafka's coordinator batches carry no sequence (origin COORDINATOR).
            builder = builder
                .producer(t.producer_id.0, t.producer_epoch.0, -1)
                .transactional(true);
        }
        for (key, value) in records {
            builder.push(now_ms, Some(*key), *value, &[]);
        }
        let mut batch = BytesMut::from(&builder.build(0)[..]);
        let appended = target
            .append_as_coordinator(&mut batch, Acks::All, now_ms)
            .map_err(|e| WriteError(e.to_string()))?;
        let committed = appended.committed;
        Ok(Box::pin(async move {
            committed.await.map_err(|e| WriteError(e.to_string()))
        }))
    }
}
