//! The read path: whole batches as file ranges, timestamp lookups.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Log {
    /// Reads whole batches from the one holding `start`, stopping before the first batch that
    /// reaches `upper` (exclusive), with at most `max_bytes` (KIP-74: the first batch whole
    /// if `min_one_batch`).
    pub fn read(
        &self,
        start: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        let leo = self.log_end.load(Ordering::Acquire);
        let view = Arc::clone(&self.view.read());
        let start = start.0;
        if start < view.log_start || start > leo {
            return Err(StorageError::OffsetOutOfRange {
                requested: start,
                log_start: view.log_start,
                log_end: leo,
            });
        }
        assert!(
            view.log_start <= leo,
            "log start {} past log end {leo}",
            view.log_start
        );
        let upper = upper.0.min(leo);
        let mut out = ReadResult::default();
        // Batches come in increasing offsets (`write_locked` asserts it as they are written).
        let mut prev_last = i64::MIN;
        if start >= upper {
            return Ok(out);
        }
        let first = view.segment_for(start);
        for (n, seg) in view.segments[first..].iter().enumerate() {
            let size = seg.size();
            let from = if n == 0 { seg.lookup(start) } else { 0 };
            let file = self.segment_file(seg, start, leo)?;
            let mut scanner = Scanner::for_headers(&file, from, size);
            let mut slice: Option<(u64, usize)> = None;
            let mut done = false;
            loop {
                let (h, pos) = match scanner.next_header() {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, scanner_pos(&slice, from), e)),
                };
                if h.last_offset() < start {
                    continue;
                }
                assert!(
                    h.base_offset > prev_last,
                    "{}: batch at {} follows offset {prev_last}",
                    seg.display(),
                    h.base_offset
                );
                prev_last = h.last_offset();
                if h.last_offset() >= upper {
                    done = true;
                    break;
                }
                let len = h.total_bytes();
                if out.bytes + len > max_bytes && !(out.bytes == 0 && min_one_batch) {
                    done = true;
                    break;
                }
                out.bytes += len;
                out.next_offset = h.next_offset();
                slice = Some(match slice {
                    Some((p, l)) => (p, l + len),
                    None => (pos, len),
                });
                if out.bytes >= max_bytes {
                    done = true;
                    break;
                }
            }
            if let Some((position, len)) = slice {
                out.slices.push(FileSlice {
                    file: Arc::clone(&file),
                    position,
                    len,
                });
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// A segment's open file for reading; a segment deleted meanwhile (retention) reads as
    /// out of range.
    pub(super) fn segment_file(
        &self,
        seg: &Arc<Segment>,
        requested: i64,
        leo: i64,
    ) -> Result<Arc<std::fs::File>, StorageError> {
        seg.file().map_err(|e| {
            if seg.deleted.load(Ordering::Acquire) {
                StorageError::OffsetOutOfRange {
                    requested,
                    log_start: self.view.read().log_start,
                    log_end: leo,
                }
            } else {
                StorageError::io(format!("open {}", seg.display()), e)
            }
        })
    }

    /// The first batch whose max timestamp is `>= timestamp_ms`: (its base offset, or the
    /// log start if later; its timestamp: the first record's if that qualifies, else the
    /// batch's max).
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let leo = self.log_end.load(Ordering::Acquire);
        let view = Arc::clone(&self.view.read());
        for seg in &view.segments {
            if seg.max_timestamp().0 < timestamp_ms {
                continue;
            }
            let from = seg.time_lookup(timestamp_ms);
            let file = self.segment_file(seg, view.log_start, leo)?;
            let mut scanner = Scanner::for_headers(&file, from, seg.size());
            loop {
                let h = match scanner.next_header() {
                    Ok(Some((h, _))) => h,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, from, e)),
                };
                if h.base_offset >= leo {
                    return Ok(None);
                }
                if h.last_offset() < view.log_start || h.max_timestamp < timestamp_ms {
                    continue;
                }
                let ts = if h.timestamp_type() == TimestampType::CreateTime
                    && h.base_timestamp >= timestamp_ms
                {
                    h.base_timestamp
                } else {
                    h.max_timestamp
                };
                return Ok(Some((Offset(h.base_offset.max(view.log_start)), ts)));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of (the batch holding) it.
    pub fn max_timestamp(&self) -> Option<(i64, Offset)> {
        let view = Arc::clone(&self.view.read());
        let mut best: Option<(i64, i64)> = None;
        for seg in &view.segments {
            let (ts, off) = seg.max_timestamp();
            if ts >= 0 && best.is_none_or(|(b, _)| ts > b) {
                best = Some((ts, off));
            }
        }
        best.map(|(ts, off)| (ts, Offset(off.max(view.log_start))))
    }
}

pub(super) fn scanner_pos(slice: &Option<(u64, usize)>, from: u64) -> u64 {
    slice.map_or(from, |(p, l)| p + l as u64)
}

/// A failed header scan of `seg` as a storage error: I/O, or corrupt framing at `position`.
pub(super) fn scan_error(seg: &Segment, position: u64, e: ScanError) -> StorageError {
    match e {
        ScanError::Io(e) => StorageError::io(format!("read {}", seg.display()), e),
        ScanError::Bad(detail) => StorageError::Corrupt {
            path: seg.display(),
            position,
            detail,
        },
    }
}
