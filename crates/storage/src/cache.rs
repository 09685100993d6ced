//! The batch cache (`StorageLimits::batch_cache_bytes`, the broker's `log.cache.max.bytes`):
//! the bytes of recently appended batches, kept in memory for readers of recent data when
//! appends bypass the page cache (direct writes, `direct.rs`). Without it a tailing
//! consumer or follower would read what was just written back from the device.
//!
//! Each segment holds a contiguous run of its most recent appends (`SegmentCache`: one
//! entry per append, in file order, ending at the segment's end); the `BatchCache` of a
//! `Storage` bounds the bytes of all of them together and evicts the oldest appends of
//! the node first. An append that cannot be cached (larger than the whole cache) empties
//! its segment's run, so a run never has holes. A segment that is retired (truncation),
//! deleted (retention, DeleteRecords) or replaced (compaction) drops its run.
//!
//! `Log::read` serves the part of a read that a run covers from these bytes and the rest
//! from the file (sendfile), so a read returns the same bytes either way.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

/// One append's bytes: whole batches, starting at file position `pos`.
#[derive(Debug, Clone)]
pub(crate) struct CachedAppend {
    pub(crate) pos: u64,
    /// The first batch's base offset.
    pub(crate) base_offset: i64,
    pub(crate) bytes: Bytes,
}

impl CachedAppend {
    pub(crate) fn end(&self) -> u64 {
        self.pos + self.bytes.len() as u64
    }
}

/// A segment's run of cached appends (contiguous, in file order).
#[derive(Debug, Default)]
pub(crate) struct SegmentCache {
    entries: Mutex<VecDeque<CachedAppend>>,
}

impl SegmentCache {
    /// The cached appends a read needs, all of them below `size` (the segment's published
    /// size): from the one holding `start` (`Some`: the first segment of a read; None if
    /// the run does not reach back to it), or for a read from the segment's beginning
    /// (`None`) the whole run if it starts at position 0. Empty when the run cannot serve
    /// the read's beginning (the file must).
    pub(crate) fn covering(&self, start: Option<i64>, size: u64) -> Vec<CachedAppend> {
        let entries = self.entries.lock();
        let first = match (start, entries.front()) {
            (_, None) => return Vec::new(),
            (None, Some(f)) if f.pos != 0 => return Vec::new(),
            (None, Some(_)) => 0,
            (Some(start), Some(f)) if f.base_offset > start => return Vec::new(),
            // The last append whose first batch starts at or below `start`.
            (Some(start), Some(_)) => entries.partition_point(|e| e.base_offset <= start) - 1,
        };
        entries
            .iter()
            .skip(first)
            .take_while(|e| e.end() <= size)
            .cloned()
            .collect()
    }

    /// Bytes held.
    fn bytes(entries: &VecDeque<CachedAppend>) -> usize {
        entries.iter().map(|e| e.bytes.len()).sum()
    }
}

/// The node-wide bound on all segments' runs.
#[derive(Debug)]
pub(crate) struct BatchCache {
    max_bytes: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// Bytes held by all runs.
    bytes: usize,
    /// Appends in the order they were cached (oldest first): their segment's run, position
    /// and length. An entry whose append has left its run already (an emptied run) is
    /// skipped when it comes up.
    order: VecDeque<(Weak<SegmentCache>, u64, usize)>,
    /// Appends of `order` still held.
    live: usize,
}

impl BatchCache {
    pub(crate) fn new(max_bytes: usize) -> BatchCache {
        BatchCache {
            max_bytes,
            state: Mutex::new(CacheState::default()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Bytes held by all runs.
    pub(crate) fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Adds an append of `bytes` (whole batches) at `pos` to `seg`'s run, evicting the
    /// node's oldest appends beyond the bound. An append that does not continue the run
    /// starts a new one; one that cannot be held empties the run.
    pub(crate) fn insert(&self, seg: &Arc<SegmentCache>, pos: u64, bytes: Bytes) {
        let len = bytes.len();
        if len > self.max_bytes || len < 8 {
            self.invalidate(seg);
            return;
        }
        let base_offset = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let mut st = self.state.lock();
        {
            let mut entries = seg.entries.lock();
            if entries.back().is_some_and(|last| last.end() != pos) {
                st.bytes -= SegmentCache::bytes(&entries);
                st.live -= entries.len();
                entries.clear();
            }
            entries.push_back(CachedAppend {
                pos,
                base_offset,
                bytes,
            });
        }
        st.bytes += len;
        st.live += 1;
        st.order.push_back((Arc::downgrade(seg), pos, len));
        while st.bytes > self.max_bytes {
            let Some((victim, at, n)) = st.order.pop_front() else {
                break;
            };
            let Some(victim) = victim.upgrade() else {
                continue;
            };
            let mut entries = victim.entries.lock();
            // The oldest cached append of the node is the oldest of its run, if still held.
            if entries.front().is_some_and(|e| e.pos == at) {
                entries.pop_front();
                st.bytes -= n;
                st.live -= 1;
            }
        }
        // Drop the records of appends that left their runs, once they dominate.
        if st.order.len() > 2 * st.live + 1024 {
            st.order.retain(|(w, at, _)| {
                w.upgrade()
                    .is_some_and(|c| c.entries.lock().iter().any(|e| e.pos == *at))
            });
        }
    }

    /// Empties `seg`'s run.
    pub(crate) fn invalidate(&self, seg: &SegmentCache) {
        let mut st = self.state.lock();
        let mut entries = seg.entries.lock();
        st.bytes -= SegmentCache::bytes(&entries);
        st.live -= entries.len();
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(base: i64, len: usize) -> Bytes {
        let mut v = vec![0u8; len];
        v[..8].copy_from_slice(&base.to_be_bytes());
        Bytes::from(v)
    }

    #[test]
    fn evicts_the_oldest_appends_of_the_node_first() {
        let cache = BatchCache::new(300);
        let a = Arc::new(SegmentCache::default());
        let b = Arc::new(SegmentCache::default());
        cache.insert(&a, 0, append(0, 100));
        cache.insert(&b, 0, append(0, 100));
        cache.insert(&a, 100, append(1, 100));
        assert_eq!(cache.bytes(), 300);
        cache.insert(&b, 100, append(1, 100));
        assert_eq!(cache.bytes(), 300);
        // a's first append went: a's run no longer starts at 0.
        assert!(a.covering(None, 1000).is_empty());
        assert_eq!(a.covering(Some(1), 1000).len(), 1);
        assert_eq!(b.covering(None, 1000).len(), 2);
        // Only what is below the published size.
        assert_eq!(b.covering(None, 150).len(), 1);
        // A start before the run's first batch: the file serves it.
        assert!(a.covering(Some(0), 1000).is_empty());
    }

    #[test]
    fn a_gap_or_an_oversized_append_empties_the_run() {
        let cache = BatchCache::new(300);
        let a = Arc::new(SegmentCache::default());
        cache.insert(&a, 0, append(0, 100));
        cache.insert(&a, 150, append(5, 100));
        assert_eq!(cache.bytes(), 100);
        assert_eq!(a.covering(Some(5), 1000)[0].pos, 150);
        cache.insert(&a, 250, append(6, 400));
        assert_eq!(cache.bytes(), 0);
        assert!(a.covering(Some(5), 1000).is_empty());
        cache.insert(&a, 650, append(7, 100));
        cache.invalidate(&a);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn dropped_runs_do_not_count_and_their_records_are_dropped() {
        let cache = BatchCache::new(1 << 20);
        for i in 0..5000u64 {
            let seg = Arc::new(SegmentCache::default());
            cache.insert(&seg, 0, append(i as i64, 10));
            cache.invalidate(&seg);
        }
        let st = cache.state.lock();
        assert_eq!((st.bytes, st.live), (0, 0));
        assert!(st.order.len() <= 1024 + 1, "{}", st.order.len());
    }
}
