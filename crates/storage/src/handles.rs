//! A cache of sealed segments' open `.log` files and index mappings (one per `Storage`
//! value, shared by the logs it opened), so that 100,000 partitions fit on one node: at most `files_max` sealed `.log` files are
//! open and at most `maps_max` index files mapped at once; the least recently used are
//! closed first and reopened on the next read.
//!
//! Lock order: the cache's mutex is never held while a segment's locks are taken, nor the
//! other way round (eviction collects victims first and closes them after unlocking).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::segment::Segment;

/// What a cache entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    File,
    OffsetIndex,
    TimeIndex,
}

#[derive(Debug, Default)]
struct Tier {
    clock: u64,
    by_key: HashMap<(u64, Kind), (u64, Weak<Segment>)>,
    by_stamp: BTreeMap<u64, (u64, Kind)>,
}

impl Tier {
    /// Marks `key` as just used; returns the entries beyond `cap` (least recent first).
    fn touch(
        &mut self,
        key: (u64, Kind),
        seg: &Weak<Segment>,
        cap: usize,
    ) -> Vec<(Kind, Weak<Segment>)> {
        self.clock += 1;
        let stamp = self.clock;
        if let Some((old, _)) = self.by_key.insert(key, (stamp, seg.clone())) {
            self.by_stamp.remove(&old);
        }
        self.by_stamp.insert(stamp, key);
        let mut victims = Vec::new();
        while self.by_key.len() > cap {
            let Some((_, k)) = self.by_stamp.pop_first() else {
                break;
            };
            if let Some((_, w)) = self.by_key.remove(&k) {
                victims.push((k.1, w));
            }
        }
        victims
    }

    fn forget(&mut self, key: (u64, Kind)) {
        if let Some((stamp, _)) = self.by_key.remove(&key) {
            self.by_stamp.remove(&stamp);
        }
    }
}

/// The cache of one `Storage` value (shared by every log it opened).
#[derive(Debug)]
pub(crate) struct HandleCache {
    files: Mutex<Tier>,
    maps: Mutex<Tier>,
    files_max: AtomicUsize,
    maps_max: AtomicUsize,
    next_id: AtomicU64,
}

impl HandleCache {
    pub(crate) fn new(open_files_max: usize, mapped_indexes_max: usize) -> HandleCache {
        HandleCache {
            files: Mutex::new(Tier::default()),
            maps: Mutex::new(Tier::default()),
            files_max: AtomicUsize::new(open_files_max.max(1)),
            maps_max: AtomicUsize::new(mapped_indexes_max.max(1)),
            next_id: AtomicU64::new(1),
        }
    }

    /// A unique id (within this cache) for a segment: its cache key.
    pub(crate) fn next_segment_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Changes the caps (at least 1 each); applies from the next use of the cache.
    pub(crate) fn set_limits(&self, open_files_max: usize, mapped_indexes_max: usize) {
        self.files_max
            .store(open_files_max.max(1), Ordering::Relaxed);
        self.maps_max
            .store(mapped_indexes_max.max(1), Ordering::Relaxed);
    }

    /// Number of sealed segment files open and index files mapped through the cache.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let files = self.files.lock().by_key.len();
        let maps = self.maps.lock().by_key.len();
        (files, maps)
    }

    /// Records a use of a sealed segment's resource; closes what falls out of the cache.
    pub(crate) fn touch(&self, seg: &Arc<Segment>, kind: Kind) {
        let weak = Arc::downgrade(seg);
        let victims = match kind {
            Kind::File => {
                let cap = self.files_max.load(Ordering::Relaxed);
                self.files.lock().touch((seg.id, kind), &weak, cap)
            }
            Kind::OffsetIndex | Kind::TimeIndex => {
                let cap = self.maps_max.load(Ordering::Relaxed);
                self.maps.lock().touch((seg.id, kind), &weak, cap)
            }
        };
        for (kind, w) in victims {
            if let Some(s) = w.upgrade() {
                s.release(kind);
            }
        }
    }

    /// Removes a segment's entries (it is being dropped).
    pub(crate) fn forget(&self, id: u64) {
        self.files.lock().forget((id, Kind::File));
        let mut maps = self.maps.lock();
        maps.forget((id, Kind::OffsetIndex));
        maps.forget((id, Kind::TimeIndex));
    }
}
