//! Rewriting a stored batch with some of its records removed (log compaction), as Kafka's
//! `MemoryRecords.filterTo` does for magic v2: the base offset and the last offset delta
//! stay (so the producer's last sequence survives), as do the producer id, epoch, base
//! sequence, partition leader epoch and the transactional / control flags; the records
//! kept are re-encoded with their own offsets and timestamps and the records region is
//! compressed again with the batch's codec; the CRC is recomputed.
//!
//! The base timestamp is the first kept record's timestamp (Kafka's builder), or the
//! delete horizon when the batch carries one (KIP-534: attribute bit 6 set, the base
//! timestamp field holds the time after which its tombstones may go).

use fjord_model::TimestampType;

use crate::compression::compress;
use crate::varint::{put_varint, put_varlong};
use crate::{
    attributes, frame, layout, visit_records_bounded, Compression, RecordView, RecordsError,
    BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, NO_TIMESTAMP,
};

/// A kept record: (offset delta, timestamp, key, value, headers encoded).
type Kept = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>);

/// What `filter_batch` produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filtered {
    /// Records in the original batch.
    pub records_read: usize,
    /// Records kept.
    pub records_retained: usize,
    /// The rewritten batch (with zero records if none was kept: an empty batch as Kafka's
    /// `writeEmptyHeader` writes it, uncompressed, base and max timestamp the original
    /// max timestamp).
    pub batch: Vec<u8>,
    /// The batch holds a kept tombstone (a keyed record with a null value).
    pub retains_tombstone: bool,
}

/// Rewrites one whole v2 batch keeping only the records `keep` accepts (see the module
/// docs). `delete_horizon_ms`: stamp this delete horizon into the batch if it has none
/// yet and keeps a tombstone. Decompression is bounded by `decompressed_bytes_max`.
pub fn filter_batch(
    batch: &[u8],
    decompressed_bytes_max: usize,
    delete_horizon_ms: Option<i64>,
    keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Filtered, RecordsError> {
    filter(
        batch,
        decompressed_bytes_max,
        delete_horizon_ms,
        false,
        keep,
    )
}

/// Rewrites one whole v2 batch with every record kept and `delete_horizon_ms` as its
/// delete horizon (unless it has one already): a transaction marker whose transaction
/// left no data in the log gets one at its first cleaning, and goes at the first
/// cleaning after it (KIP-534, as Kafka's cleaner does).
pub fn with_delete_horizon(
    batch: &[u8],
    decompressed_bytes_max: usize,
    delete_horizon_ms: i64,
) -> Result<Vec<u8>, RecordsError> {
    filter(
        batch,
        decompressed_bytes_max,
        Some(delete_horizon_ms),
        true,
        |_| true,
    )
    .map(|f| f.batch)
}

fn filter(
    batch: &[u8],
    decompressed_bytes_max: usize,
    delete_horizon_ms: Option<i64>,
    horizon_without_tombstone: bool,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Filtered, RecordsError> {
    let h = frame(batch)?;
    let compression = h.compression()?;
    let log_append_time = h.timestamp_type() == TimestampType::LogAppendTime;
    let mut kept: Vec<Kept> = Vec::new();
    let mut read = 0usize;
    let mut tombstone = false;
    let mut header_error = None;
    visit_records_bounded(batch, decompressed_bytes_max, |r| {
        read += 1;
        if !keep(r) {
            return;
        }
        if r.key.is_some() && r.value.is_none() {
            tombstone = true;
        }
        let mut headers = Vec::new();
        put_varint(
            &mut headers,
            i32::try_from(r.headers.len()).unwrap_or(i32::MAX),
        );
        for item in r.headers.clone() {
            match item {
                Ok((k, v)) => {
                    put_bytes(&mut headers, Some(k));
                    put_bytes(&mut headers, v);
                }
                Err(e) => header_error = Some(e),
            }
        }
        kept.push((
            r.offset_delta,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.map(<[u8]>::to_vec),
            headers,
        ));
    })?;
    if let Some(e) = header_error {
        return Err(e);
    }
    let mut attrs = h.attributes;
    let mut out = Vec::with_capacity(batch.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    if kept.is_empty() {
        attrs &= !(attributes::COMPRESSION_MASK | attributes::DELETE_HORIZON);
        write_header(&mut out, attrs, h.max_timestamp, h.max_timestamp, 0);
        return Ok(Filtered {
            records_read: read,
            records_retained: 0,
            batch: out,
            retains_tombstone: false,
        });
    }
    let horizon = if h.has_delete_horizon() {
        Some(h.base_timestamp)
    } else if tombstone || horizon_without_tombstone {
        delete_horizon_ms
    } else {
        None
    };
    let base_timestamp = match horizon {
        Some(ts) => {
            attrs |= attributes::DELETE_HORIZON;
            ts
        }
        None => kept[0].1,
    };
    let mut max_timestamp = NO_TIMESTAMP;
    let mut records = Vec::new();
    let mut body = Vec::new();
    for (offset_delta, timestamp, key, value, headers) in &kept {
        max_timestamp = max_timestamp.max(*timestamp);
        body.clear();
        body.push(0); // record attributes: unused
        put_varlong(&mut body, timestamp.wrapping_sub(base_timestamp));
        put_varint(&mut body, *offset_delta);
        put_bytes(&mut body, key.as_deref());
        put_bytes(&mut body, value.as_deref());
        body.extend_from_slice(headers);
        put_varint(&mut records, i32::try_from(body.len()).unwrap_or(i32::MAX));
        records.extend_from_slice(&body);
    }
    if log_append_time {
        max_timestamp = h.max_timestamp;
    }
    let payload = match compression {
        Compression::None => records,
        c => compress(c, &records),
    };
    out.extend_from_slice(&payload);
    let count = i32::try_from(kept.len()).unwrap_or(i32::MAX);
    write_header(&mut out, attrs, base_timestamp, max_timestamp, count);
    Ok(Filtered {
        records_read: read,
        records_retained: kept.len(),
        batch: out,
        retains_tombstone: tombstone,
    })
}

/// Fills in the header fields that change in a rewrite, the batch length and the CRC.
fn write_header(out: &mut [u8], attrs: i16, base_ts: i64, max_ts: i64, count: i32) {
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES).unwrap_or(i32::MAX);
    out[layout::BATCH_LENGTH_AT..layout::BATCH_LENGTH_AT + 4]
        .copy_from_slice(&batch_length.to_be_bytes());
    out[layout::ATTRIBUTES_AT..layout::ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    out[layout::BASE_TIMESTAMP_AT..layout::BASE_TIMESTAMP_AT + 8]
        .copy_from_slice(&base_ts.to_be_bytes());
    out[layout::MAX_TIMESTAMP_AT..layout::MAX_TIMESTAMP_AT + 8]
        .copy_from_slice(&max_ts.to_be_bytes());
    out[layout::RECORDS_COUNT_AT..layout::RECORDS_COUNT_AT + 4]
        .copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[layout::ATTRIBUTES_AT..]);
    out[layout::CRC_AT..layout::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, i32::try_from(b.len()).unwrap_or(i32::MAX));
            out.extend_from_slice(b);
        }
    }
}
