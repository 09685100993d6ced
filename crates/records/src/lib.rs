//! Kafka record batches, magic v2 only (what every client using Produce v3+
//! sends): header parsing, validation as the broker does it on Produce,
//! iteration over concatenated batches, in-place header rewrites (offsets,
//! leader epoch, LogAppendTime), record decoding with bounded decompression,
//! and a builder.
//!
//! Layout (big-endian; `layout` has the byte positions):
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32
//! | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64
//! | producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32 | records...
//! ```
//! `batchLength` counts the bytes after itself; the CRC32C covers attributes
//! to the end. Records (possibly compressed as one blob) are:
//! `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! | keyLength varint | key | valueLength varint | value | headerCount varint
//! | (keyLength varint | key | valueLength varint | value)*`.
//!
//! Nothing here allocates based on a count or size read from the input
//! without first checking it against the bytes present or a limit from
//! `fjord_model::limits`.

mod builder;
pub mod compression;
pub mod control;
mod filter;
mod record;
mod varint;

use std::ops::Range;

use fjord_model::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use fjord_model::TimestampType;

pub use builder::BatchBuilder;
pub use control::{end_txn_marker_batch, parse_end_txn_marker, EndTxnMarker, MarkerType};
pub use filter::{filter_batch, with_delete_horizon, Filtered};
pub use record::{HeaderIter, Record, RecordView, RECORD_BYTES_MIN};

/// base_offset i64 + batch_length i32.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The full v2 header, including `LOG_OVERHEAD_BYTES`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Smallest legal `batch_length` (a header with no records).
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// The only magic this crate handles.
pub const MAGIC_V2: i8 = 2;
/// Kafka's "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

/// Byte positions of the v2 header fields.
pub mod layout {
    pub const BASE_OFFSET_AT: usize = 0;
    pub const BATCH_LENGTH_AT: usize = 8;
    pub const PARTITION_LEADER_EPOCH_AT: usize = 12;
    pub const MAGIC_AT: usize = 16;
    pub const CRC_AT: usize = 17;
    /// First byte covered by the CRC.
    pub const ATTRIBUTES_AT: usize = 21;
    pub const LAST_OFFSET_DELTA_AT: usize = 23;
    pub const BASE_TIMESTAMP_AT: usize = 27;
    pub const MAX_TIMESTAMP_AT: usize = 35;
    pub const PRODUCER_ID_AT: usize = 43;
    pub const PRODUCER_EPOCH_AT: usize = 51;
    pub const BASE_SEQUENCE_AT: usize = 53;
    pub const RECORDS_COUNT_AT: usize = 57;
    pub const RECORDS_AT: usize = 61;
    const _: () = assert!(RECORDS_AT == super::BATCH_HEADER_BYTES);
}

/// Bits of the batch `attributes` field.
pub mod attributes {
    pub const COMPRESSION_MASK: i16 = 0x07;
    pub const TIMESTAMP_TYPE: i16 = 0x08;
    pub const TRANSACTIONAL: i16 = 0x10;
    pub const CONTROL: i16 = 0x20;
    pub const DELETE_HORIZON: i16 = 0x40;
}

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec id in the attributes field.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    pub fn from_id(id: i16) -> Result<Compression, RecordsError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(RecordsError::UnsupportedCompression(other)),
        }
    }

    /// Kafka's name (`compression.type` values).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Errors of parsing, validating and decoding batches.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("truncated batch: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported magic {0} (only magic 2 record batches are accepted)")]
    BadMagic(i8),
    #[error("batch_length {batch_length} does not fit a buffer of {buffer_bytes} bytes (minimum batch_length is 49)")]
    BadBatchLength {
        batch_length: i32,
        buffer_bytes: usize,
    },
    #[error("CRC mismatch: batch says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("unsupported compression codec id {0}")]
    UnsupportedCompression(i16),
    #[error("decompression failed: {0}")]
    Decompression(String),
    #[error("decompressed records exceed {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
}

impl RecordsError {
    /// True for what Kafka reports as CORRUPT_MESSAGE or INVALID_RECORD (all
    /// but `TooLarge`, which is a size limit, not damage).
    pub fn is_corrupt(&self) -> bool {
        !matches!(self, RecordsError::TooLarge { .. })
    }

    /// True for the subset Kafka reports as INVALID_RECORD (the batch frame
    /// and CRC are fine but its contents break the rules); the rest of
    /// `is_corrupt` is CORRUPT_MESSAGE.
    pub fn is_invalid_record(&self) -> bool {
        matches!(
            self,
            RecordsError::InvalidBatch(_) | RecordsError::InvalidRecord(_)
        )
    }
}

/// The 61-byte header of a v2 batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

impl BatchHeader {
    /// Parses only the header: needs at least 61 bytes; checks magic == 2 and
    /// batch_length >= 49. Does not check that the whole batch is present.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, RecordsError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(RecordsError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            });
        }
        let magic = buf[layout::MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordsError::BadMagic(magic));
        }
        let batch_length = be_i32(buf, layout::BATCH_LENGTH_AT);
        if batch_length < BATCH_LENGTH_MIN {
            return Err(RecordsError::BadBatchLength {
                batch_length,
                buffer_bytes: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, layout::BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: be_i32(buf, layout::PARTITION_LEADER_EPOCH_AT),
            magic,
            crc: be_u32(buf, layout::CRC_AT),
            attributes: be_i16(buf, layout::ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, layout::LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, layout::BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, layout::MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, layout::PRODUCER_ID_AT),
            producer_epoch: be_i16(buf, layout::PRODUCER_EPOCH_AT),
            base_sequence: be_i32(buf, layout::BASE_SEQUENCE_AT),
            records_count: be_i32(buf, layout::RECORDS_COUNT_AT),
        })
    }

    /// `LOG_OVERHEAD_BYTES + batch_length` (batch_length is >= 49 after `parse`).
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// `base_offset + last_offset_delta` (wrapping on absurd input).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    pub fn compression(&self) -> Result<Compression, RecordsError> {
        Compression::from_id(self.attributes & attributes::COMPRESSION_MASK)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & attributes::TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & attributes::DELETE_HORIZON != 0
    }

    /// True when the batch carries a producer id (idempotent or transactional).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence of the last record (wraps at i32::MAX as Kafka's does), or -1
    /// for batches without sequence numbers.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Finds the batch at the start of `buf`: its header and total length. Checks
/// magic, batch_length and that the whole batch is present; no CRC.
fn frame(buf: &[u8]) -> Result<BatchHeader, RecordsError> {
    if buf.len() < LOG_OVERHEAD_BYTES {
        return Err(RecordsError::Truncated {
            needed: LOG_OVERHEAD_BYTES,
            available: buf.len(),
        });
    }
    if let Some(&m) = buf.get(layout::MAGIC_AT) {
        if m as i8 != MAGIC_V2 {
            return Err(RecordsError::BadMagic(m as i8));
        }
    }
    let batch_length = be_i32(buf, layout::BATCH_LENGTH_AT);
    if batch_length < BATCH_LENGTH_MIN {
        return Err(RecordsError::BadBatchLength {
            batch_length,
            buffer_bytes: buf.len(),
        });
    }
    let total = LOG_OVERHEAD_BYTES + batch_length as usize;
    if buf.len() < total {
        return Err(RecordsError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    BatchHeader::parse(buf)
}

fn walk_context(h: &BatchHeader) -> record::WalkContext {
    record::WalkContext {
        base_offset: h.base_offset,
        base_timestamp: h.base_timestamp,
        log_append_time: match h.timestamp_type() {
            TimestampType::LogAppendTime => Some(h.max_timestamp),
            TimestampType::CreateTime => None,
        },
        last_offset_delta: h.last_offset_delta,
        records_count: h.records_count,
    }
}

/// Validates one complete batch occupying exactly `buf`, as Kafka's broker
/// does on Produce, without decompressing: length fields consistent, magic 2,
/// CRC32C correct, a known codec, `records_count >= 1` and
/// `last_offset_delta == records_count - 1`, a producer id on transactional
/// batches; for uncompressed batches every record's framing is walked (see
/// `visit_records`) and the count must equal `records_count`. The base offset
/// is ignored. Allocates nothing.
///
/// Compressed batches are not opened; use `validate_batch_deep` for that.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, RecordsError> {
    validate(buf, false)
}

/// `validate_batch` for a batch as a compacted log stores it (Kafka's cleaner output):
/// records may be missing (`records_count <= last_offset_delta + 1`, offset deltas with
/// gaps) and a batch may hold no records at all (kept for its producer's sequence).
pub fn validate_stored_batch(buf: &[u8]) -> Result<BatchHeader, RecordsError> {
    validate(buf, true)
}

fn validate(buf: &[u8], compacted: bool) -> Result<BatchHeader, RecordsError> {
    let h = frame(buf)?;
    if buf.len() != h.total_bytes() {
        return Err(RecordsError::BadBatchLength {
            batch_length: h.batch_length,
            buffer_bytes: buf.len(),
        });
    }
    let actual = crc32c::crc32c(&buf[layout::ATTRIBUTES_AT..]);
    if actual != h.crc {
        return Err(RecordsError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    let compression = h.compression()?;
    if compacted {
        if h.records_count < 0
            || h.last_offset_delta < 0
            || i64::from(h.records_count) > i64::from(h.last_offset_delta) + 1
        {
            return Err(RecordsError::InvalidBatch(format!(
                "records count {} with last offset delta {}",
                h.records_count, h.last_offset_delta
            )));
        }
    } else if h.records_count < 1 {
        return Err(RecordsError::InvalidBatch(format!(
            "records count {} (a produced batch holds at least one record)",
            h.records_count
        )));
    } else if i64::from(h.last_offset_delta) != i64::from(h.records_count) - 1 {
        return Err(RecordsError::InvalidBatch(format!(
            "last offset delta {} but records count {}",
            h.last_offset_delta, h.records_count
        )));
    }
    if h.is_transactional() && !h.has_producer_id() {
        return Err(RecordsError::InvalidBatch(
            "transactional batch without a producer id".to_string(),
        ));
    }
    if compression == Compression::None {
        record::walk_records(&buf[BATCH_HEADER_BYTES..], walk_context(&h), |_| {})?;
    }
    Ok(h)
}

/// `validate_batch`, and for compressed batches also decompress (output
/// bounded by `decompressed_bytes_max`) and walk every record, as Kafka does
/// for compressed produce batches. Returns the header and the largest record
/// timestamp (`NO_TIMESTAMP` if none; for LogAppendTime batches the batch's
/// max timestamp).
pub fn validate_batch_deep(
    buf: &[u8],
    decompressed_bytes_max: usize,
) -> Result<(BatchHeader, i64), RecordsError> {
    let h = validate_batch(buf)?;
    let mut max_ts: Option<i64> = None;
    visit_records_bounded(buf, decompressed_bytes_max, |r| {
        max_ts = Some(max_ts.map_or(r.timestamp, |m| m.max(r.timestamp)));
    })?;
    Ok((h, max_ts.unwrap_or(NO_TIMESTAMP)))
}

/// Iterator over concatenated batches; see `batches`.
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl BatchIter<'_> {
    /// Byte position of the next batch: after an error item, the start of
    /// the bad batch (where a caller truncating a log would cut).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match frame(&self.buf[self.pos..]) {
            Ok(h) => {
                let range = self.pos..self.pos + h.total_bytes();
                self.pos = range.end;
                Some(Ok((h, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterates the batches in a buffer of zero or more concatenated batches (a
/// Produce `records` field or a segment region). Yields each complete batch's
/// header and byte range (framing and magic checked, CRC not: call
/// `validate_batch` on the range); a truncated or garbled batch yields one
/// error item and ends the iteration.
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        failed: false,
    }
}

fn assert_batch(batch: &[u8]) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "not a batch: {} bytes",
        batch.len()
    );
}

/// Writes the base offset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert_batch(batch);
    batch[layout::BASE_OFFSET_AT..layout::BASE_OFFSET_AT + 8]
        .copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert_batch(batch);
    batch[layout::PARTITION_LEADER_EPOCH_AT..layout::PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Sets the timestamp type and max timestamp and recomputes the CRC (skipped
/// when nothing changes). `batch` must be exactly one batch.
fn set_max_timestamp(batch: &mut [u8], timestamp_type: TimestampType, timestamp_ms: i64) {
    assert_batch(batch);
    assert_eq!(
        be_i32(batch, layout::BATCH_LENGTH_AT) as i64 + LOG_OVERHEAD_BYTES as i64,
        batch.len() as i64,
        "slice is not exactly one batch"
    );
    let old_attrs = be_i16(batch, layout::ATTRIBUTES_AT);
    let attrs = match timestamp_type {
        TimestampType::LogAppendTime => old_attrs | attributes::TIMESTAMP_TYPE,
        TimestampType::CreateTime => old_attrs & !attributes::TIMESTAMP_TYPE,
    };
    if attrs == old_attrs && be_i64(batch, layout::MAX_TIMESTAMP_AT) == timestamp_ms {
        return;
    }
    batch[layout::ATTRIBUTES_AT..layout::ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[layout::MAX_TIMESTAMP_AT..layout::MAX_TIMESTAMP_AT + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[layout::ATTRIBUTES_AT..]);
    batch[layout::CRC_AT..layout::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// LogAppendTime: sets the timestamp-type bit and max_timestamp = `timestamp_ms`
/// (readers then give every record that timestamp) and recomputes the CRC.
/// `batch` must be exactly one batch (as `validate_batch` accepted it).
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    set_max_timestamp(batch, TimestampType::LogAppendTime, timestamp_ms);
}

/// CreateTime: clears the timestamp-type bit and sets max_timestamp (Kafka's
/// broker rewrites it to the largest record timestamp, see
/// `validate_batch_deep`), recomputing the CRC if anything changed.
pub fn set_create_time_max_timestamp(batch: &mut [u8], max_timestamp_ms: i64) {
    set_max_timestamp(batch, TimestampType::CreateTime, max_timestamp_ms);
}

/// Decompresses (bounded) and walks every record of one batch, calling
/// `visit` for each. Checks framing, magic, codec and record structure, not
/// the CRC (that is `validate_batch`'s job). Returns the header.
pub fn visit_records_bounded(
    batch: &[u8],
    decompressed_bytes_max: usize,
    mut visit: impl FnMut(&RecordView<'_>),
) -> Result<BatchHeader, RecordsError> {
    let h = frame(batch)?;
    if batch.len() != h.total_bytes() {
        return Err(RecordsError::BadBatchLength {
            batch_length: h.batch_length,
            buffer_bytes: batch.len(),
        });
    }
    let payload = &batch[BATCH_HEADER_BYTES..];
    let ctx = walk_context(&h);
    match h.compression()? {
        Compression::None => {
            record::walk_records(payload, ctx, |r| visit(&r))?;
        }
        c => {
            let data = compression::decompress(c, payload, decompressed_bytes_max)?;
            record::walk_records(&data, ctx, |r| visit(&r))?;
        }
    }
    Ok(h)
}

/// Decodes all records of one batch (validate it first), decompressing with
/// an output bound of `DECOMPRESSED_BATCH_BYTES_MAX`.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, RecordsError> {
    decode_records_bounded(batch, DECOMPRESSED_BATCH_BYTES_MAX)
}

/// `decode_records` with a caller-chosen decompression bound.
pub fn decode_records_bounded(
    batch: &[u8],
    decompressed_bytes_max: usize,
) -> Result<Vec<Record>, RecordsError> {
    let mut out = Vec::new();
    let mut failed = None;
    visit_records_bounded(batch, decompressed_bytes_max, |r| {
        if failed.is_none() {
            match Record::from_view(r) {
                Ok(rec) => out.push(rec),
                Err(e) => failed = Some(e),
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests;
