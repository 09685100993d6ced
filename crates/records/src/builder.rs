//! Building v2 batches (tests, the CLI, benchmarks, control batches).

use crate::compression::compress;
use crate::varint::{put_varint, put_varlong};
use crate::{
    attributes, layout, Compression, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2, NO_TIMESTAMP,
};

/// Builds one magic-v2 record batch.
///
/// ```
/// use fjord_records::{BatchBuilder, Compression, validate_batch};
/// let batch = BatchBuilder::new(Compression::Lz4)
///     .producer(7, 0, 0)
///     .push(1_700_000_000_000, Some(b"k".as_slice()), Some(b"v".as_slice()), &[("h", None)])
///     .build(0);
/// assert_eq!(validate_batch(&batch).unwrap().records_count, 1);
/// ```
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    partition_leader_epoch: i32,
    transactional: bool,
    control: bool,
    /// Encoded records, uncompressed.
    records: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    scratch: Vec<u8>,
}

impl BatchBuilder {
    /// A non-idempotent batch (producer id -1, epoch -1, sequence -1), leader epoch -1.
    pub fn new(compression: Compression) -> BatchBuilder {
        BatchBuilder {
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            partition_leader_epoch: -1,
            transactional: false,
            control: false,
            records: Vec::new(),
            count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
            scratch: Vec::new(),
        }
    }

    /// Idempotent / transactional producer fields.
    pub fn producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> BatchBuilder {
        self.partition_leader_epoch = epoch;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> BatchBuilder {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as a control batch (transaction markers); the caller
    /// pushes the control record(s) with their key/value layout.
    pub fn control(mut self, control: bool) -> BatchBuilder {
        self.control = control;
        self
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.records_count()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn records_count(&self) -> usize {
        usize::try_from(self.count).unwrap_or(0)
    }

    /// Appends a record; its offset delta is the number of records before it.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> &mut BatchBuilder {
        assert!(self.count < i32::MAX, "too many records in one batch");
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // record attributes: unused
        put_varlong(body, timestamp_ms.wrapping_sub(self.base_timestamp));
        put_varint(body, self.count);
        put_nullable(body, key);
        put_nullable(body, value);
        put_varint(body, len_i32(headers.len()));
        for (k, v) in headers {
            put_varint(body, len_i32(k.len()));
            body.extend_from_slice(k.as_bytes());
            put_nullable(body, *v);
        }
        put_varint(&mut self.records, len_i32(body.len()));
        self.records.extend_from_slice(body);
        self.count += 1;
        self
    }

    /// Encodes the batch with records at offsets `base_offset + i`. An empty
    /// builder yields a batch with zero records (which `validate_batch` rejects).
    pub fn build(&self, base_offset: i64) -> Vec<u8> {
        let payload = compress(self.compression, &self.records);
        let total = BATCH_HEADER_BYTES + payload.len();
        let batch_length = len_i32(total - LOG_OVERHEAD_BYTES);
        let mut attrs = self.compression.id();
        if self.transactional {
            attrs |= attributes::TRANSACTIONAL;
        }
        if self.control {
            attrs |= attributes::CONTROL;
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&attrs.to_be_bytes());
        out.extend_from_slice(&(self.count.max(1) - 1).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        assert_eq!(out.len(), BATCH_HEADER_BYTES);
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out[layout::ATTRIBUTES_AT..]);
        out[layout::CRC_AT..layout::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn put_nullable(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len()));
            out.extend_from_slice(b);
        }
    }
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).expect("length exceeds i32::MAX")
}
