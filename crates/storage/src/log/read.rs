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
        let mut pick = Picker {
            start,
            upper,
            max_bytes,
            min_one_batch,
            prev_last: i64::MIN,
            out: ReadResult::default(),
        };
        if start >= upper {
            return Ok(pick.out);
        }
        let first = view.segment_for(start);
        for (n, seg) in view.segments[first..].iter().enumerate() {
            let size = seg.size();
            let file = self.segment_file(seg, start, leo)?;
            // The batch cache first (recent direct writes), then the file from where the
            // cached run ends (or from the index when it does not cover the start).
            let cached = seg.cache.covering((n == 0).then_some(start), size);
            let from = match cached.last() {
                Some(last) => last.end(),
                None if n == 0 => seg.lookup(start),
                None => 0,
            };
            let mut done = false;
            for append in &cached {
                let mut at = 0usize;
                let mut slice: Option<(usize, usize)> = None;
                while at < append.bytes.len() && !done {
                    let h = BatchHeader::parse(&append.bytes[at..]).map_err(|e| {
                        StorageError::Corrupt {
                            path: seg.display(),
                            position: append.pos + at as u64,
                            detail: format!("cached batch: {e}"),
                        }
                    })?;
                    let len = h.total_bytes();
                    if at + len > append.bytes.len() {
                        return Err(StorageError::Corrupt {
                            path: seg.display(),
                            position: append.pos + at as u64,
                            detail: format!("cached batch of {len} bytes past its append"),
                        });
                    }
                    match pick.consider(&h, seg) {
                        Pick::Skip => {}
                        Pick::Stop => done = true,
                        Pick::Take { last } => {
                            slice = Some(slice.map_or((at, len), |(p, l)| (p, l + len)));
                            done = last;
                        }
                    }
                    at += len;
                }
                if let Some((p, l)) = slice {
                    self.ctx.stats.cache_read(l);
                    pick.out.slices.push(FileSlice {
                        file: Arc::clone(&file),
                        position: append.pos + p as u64,
                        len: l,
                        cached: Some(append.bytes.slice(p..p + l)),
                    });
                }
                if done {
                    break;
                }
            }
            if !done {
                let mut scanner = Scanner::for_headers(&file, from, size);
                let mut slice: Option<(u64, usize)> = None;
                loop {
                    let (h, pos) = match scanner.next_header() {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(e) => return Err(scan_error(seg, scanner_pos(&slice, from), e)),
                    };
                    let len = h.total_bytes();
                    match pick.consider(&h, seg) {
                        Pick::Skip => continue,
                        Pick::Stop => {
                            done = true;
                            break;
                        }
                        Pick::Take { last } => {
                            slice = Some(slice.map_or((pos, len), |(p, l)| (p, l + len)));
                            if last {
                                done = true;
                                break;
                            }
                        }
                    }
                }
                if let Some((position, len)) = slice {
                    pick.out
                        .slices
                        .push(FileSlice::in_file(Arc::clone(&file), position, len));
                }
            }
            if done {
                break;
            }
        }
        Ok(pick.out)
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

/// What a read does with the next batch.
enum Pick {
    /// Below the start.
    Skip,
    /// Taken; `last`: the read is full.
    Take { last: bool },
    /// Not taken, and the read ends (the upper bound, or no room).
    Stop,
}

/// The bounds of one `Log::read` and what it took so far.
struct Picker {
    start: i64,
    upper: i64,
    max_bytes: usize,
    min_one_batch: bool,
    prev_last: i64,
    out: ReadResult,
}

impl Picker {
    fn consider(&mut self, h: &BatchHeader, seg: &Segment) -> Pick {
        if h.last_offset() < self.start {
            return Pick::Skip;
        }
        assert!(
            h.base_offset > self.prev_last,
            "{}: batch at {} follows offset {}",
            seg.display(),
            h.base_offset,
            self.prev_last
        );
        self.prev_last = h.last_offset();
        if h.last_offset() >= self.upper {
            return Pick::Stop;
        }
        let len = h.total_bytes();
        if self.out.bytes + len > self.max_bytes && !(self.out.bytes == 0 && self.min_one_batch) {
            return Pick::Stop;
        }
        self.out.bytes += len;
        self.out.next_offset = h.next_offset();
        Pick::Take {
            last: self.out.bytes >= self.max_bytes,
        }
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
