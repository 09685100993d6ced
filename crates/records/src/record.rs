//! Records inside a batch: a zero-copy walker that checks every record's
//! framing, and the owned `Record` built from it.

use bytes::Bytes;

use crate::varint::{invalid, Cursor};
use crate::RecordsError;

/// Smallest encoded record: length, attributes, timestamp delta, offset delta,
/// key length, value length, header count — one byte each.
pub const RECORD_BYTES_MIN: usize = 7;
/// Smallest encoded header: key length and value length, one byte each.
const HEADER_BYTES_MIN: usize = 2;

/// One decoded record, owning its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A record borrowed from a batch's (decompressed) records region.
#[derive(Clone, Debug)]
pub struct RecordView<'a> {
    /// Absolute offset: base offset + offset delta.
    pub offset: i64,
    /// Absolute timestamp; for LogAppendTime batches the batch's max timestamp.
    pub timestamp: i64,
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub attributes: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Already checked: iterating yields no errors.
    pub headers: HeaderIter<'a>,
}

/// The headers of one record. Its framing is checked before a `RecordView`
/// is handed out, so items are always `Ok` there; the `Result` stays so that
/// nothing on this path needs an `unwrap`.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    cur: Cursor<'a>,
    left: usize,
}

impl<'a> HeaderIter<'a> {
    /// Headers left to yield.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    /// (key, value); a key is bytes that should be UTF-8 (Kafka does not check).
    type Item = Result<(&'a [u8], Option<&'a [u8]>), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = read_header(&mut self.cur);
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }
}

#[inline]
fn read_header<'a>(cur: &mut Cursor<'a>) -> Result<(&'a [u8], Option<&'a [u8]>), RecordsError> {
    let key_len = cur.read_varint("header key length")?;
    let Ok(key_len) = usize::try_from(key_len) else {
        return Err(invalid(format_args!(
            "negative header key length {key_len}"
        )));
    };
    let key = cur.take(key_len, "header key")?;
    let value = read_nullable_bytes(cur, "header value")?;
    Ok((key, value))
}

#[inline(always)]
fn read_nullable_bytes<'a>(
    cur: &mut Cursor<'a>,
    what: &'static str,
) -> Result<Option<&'a [u8]>, RecordsError> {
    let len = cur.read_varint(what)?;
    match len {
        -1 => Ok(None),
        n if n < -1 => Err(invalid(format_args!("{what}: length {n}"))),
        n => Ok(Some(cur.take(n as usize, what)?)),
    }
}

/// Batch fields the record walk needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalkContext {
    pub base_offset: i64,
    pub base_timestamp: i64,
    /// `Some(ts)` for LogAppendTime batches: every record's timestamp is `ts`.
    pub log_append_time: Option<i64>,
    pub last_offset_delta: i32,
    pub records_count: i32,
}

/// Walks every record in `data` (a whole records region), checking framing:
/// each record's length covers exactly its fields; offset deltas strictly
/// increase within `0..=last_offset_delta`; key, value and header lengths fit;
/// the header count is bounded by the bytes remaining; there are exactly
/// `records_count` records and no bytes after them. Calls `visit` for each
/// record; allocates nothing. Returns the number of records.
pub(crate) fn walk_records<'a>(
    data: &'a [u8],
    ctx: WalkContext,
    mut visit: impl FnMut(RecordView<'a>),
) -> Result<usize, RecordsError> {
    let declared = usize::try_from(ctx.records_count).map_err(|_| {
        RecordsError::InvalidBatch(format!("negative records count {}", ctx.records_count))
    })?;
    let mut cur = Cursor::new(data);
    let mut count = 0usize;
    let mut prev_delta: i64 = -1;
    while !cur.is_empty() {
        if count == declared {
            return Err(invalid(format_args!(
                "{} bytes left after the {declared} declared records",
                cur.remaining()
            )));
        }
        let start = cur.position();
        let len = cur.read_varint("record length")?;
        let body = match usize::try_from(len) {
            Ok(n) => cur.take(n, "record")?,
            Err(_) => {
                return Err(invalid(format_args!(
                    "record {count} at byte {start}: negative length {len}"
                )))
            }
        };
        let view = parse_record(body, &ctx, prev_delta).map_err(|e| match e {
            RecordsError::InvalidRecord(m) => {
                invalid(format_args!("record {count} at byte {start}: {m}"))
            }
            other => other,
        })?;
        prev_delta = i64::from(view.offset_delta);
        visit(view);
        count += 1;
    }
    if count != declared {
        return Err(invalid(format_args!(
            "records count is {declared} but the batch holds {count} records"
        )));
    }
    Ok(count)
}

#[inline]
fn parse_record<'a>(
    body: &'a [u8],
    ctx: &WalkContext,
    prev_delta: i64,
) -> Result<RecordView<'a>, RecordsError> {
    let mut cur = Cursor::new(body);
    let attributes = cur.read_i8("attributes")?;
    let timestamp_delta = cur.read_varlong("timestamp delta")?;
    let offset_delta = cur.read_varint("offset delta")?;
    if i64::from(offset_delta) <= prev_delta || offset_delta > ctx.last_offset_delta {
        return Err(invalid(format_args!(
            "offset delta {offset_delta} after {prev_delta} (last offset delta {})",
            ctx.last_offset_delta
        )));
    }
    let key = read_nullable_bytes(&mut cur, "key")?;
    let value = read_nullable_bytes(&mut cur, "value")?;
    let header_count = cur.read_varint("header count")?;
    let header_count = usize::try_from(header_count)
        .ok()
        .filter(|&n| n <= cur.remaining() / HEADER_BYTES_MIN)
        .ok_or_else(|| {
            invalid(format_args!(
                "header count {header_count} with {} bytes left",
                cur.remaining()
            ))
        })?;
    let headers_start = cur.clone();
    for _ in 0..header_count {
        read_header(&mut cur)?;
    }
    if !cur.is_empty() {
        return Err(invalid(format_args!(
            "length covers {} bytes more than the fields",
            cur.remaining()
        )));
    }
    let timestamp = match ctx.log_append_time {
        Some(ts) => ts,
        None => ctx.base_timestamp.wrapping_add(timestamp_delta),
    };
    Ok(RecordView {
        offset: ctx.base_offset.wrapping_add(i64::from(offset_delta)),
        timestamp,
        offset_delta,
        timestamp_delta,
        attributes,
        key,
        value,
        headers: HeaderIter {
            cur: headers_start,
            left: header_count,
        },
    })
}

impl Record {
    /// Copies a borrowed record. Header keys that are not UTF-8 are converted
    /// lossily, as the Java client does.
    pub fn from_view(view: &RecordView<'_>) -> Result<Record, RecordsError> {
        let mut headers = Vec::with_capacity(view.headers.len());
        for h in view.headers.clone() {
            let (k, v) = h?;
            headers.push((
                String::from_utf8_lossy(k).into_owned(),
                v.map(Bytes::copy_from_slice),
            ));
        }
        Ok(Record {
            offset: view.offset,
            timestamp: view.timestamp,
            key: view.key.map(Bytes::copy_from_slice),
            value: view.value.map(Bytes::copy_from_slice),
            headers,
        })
    }
}
