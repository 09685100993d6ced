//! A process-wide cache of sealed segments' open `.log` files and index mappings, so
//! that 100,000 partitions fit on one node: at most `files_max` sealed `.log` files are
//! open and at most `maps_max` index files mapped at once; the least recently used are
//! closed first and reopened on the next read.
//!
//! Lock order: the cache's mutex is never held while a segment's locks are taken, nor the
//! other way round (eviction collects victims first and closes them after unlocking).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use fjord_model::limits::{MAPPED_INDEX_FILES_MAX, OPEN_SEGMENT_FILES_MAX};
use parking_lot::Mutex;

use crate::segment::Segment;

/// What a cache entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    File,
    OffsetIndex,
    TimeIndex,
}

#[derive(Default)]
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

struct Cache {
    files: Mutex<Tier>,
    maps: Mutex<Tier>,
    files_max: AtomicUsize,
    maps_max: AtomicUsize,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache {
        files: Mutex::new(Tier::default()),
        maps: Mutex::new(Tier::default()),
        files_max: AtomicUsize::new(OPEN_SEGMENT_FILES_MAX),
        maps_max: AtomicUsize::new(MAPPED_INDEX_FILES_MAX),
    })
}

/// A process-unique id for a segment (cache key).
pub(crate) fn next_segment_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Changes the caps (at least 1 each); applies from the next use of the cache.
pub fn set_handle_limits(open_files_max: usize, mapped_indexes_max: usize) {
    let c = cache();
    c.files_max.store(open_files_max.max(1), Ordering::Relaxed);
    c.maps_max
        .store(mapped_indexes_max.max(1), Ordering::Relaxed);
}

/// Number of sealed segment files open and index files mapped through the cache.
pub fn handle_counts() -> (usize, usize) {
    let c = cache();
    let files = c.files.lock().by_key.len();
    let maps = c.maps.lock().by_key.len();
    (files, maps)
}

/// Records a use of a sealed segment's resource; closes what falls out of the cache.
pub(crate) fn touch(seg: &Arc<Segment>, kind: Kind) {
    let c = cache();
    let weak = Arc::downgrade(seg);
    let victims = match kind {
        Kind::File => {
            let cap = c.files_max.load(Ordering::Relaxed);
            c.files.lock().touch((seg.id, kind), &weak, cap)
        }
        Kind::OffsetIndex | Kind::TimeIndex => {
            let cap = c.maps_max.load(Ordering::Relaxed);
            c.maps.lock().touch((seg.id, kind), &weak, cap)
        }
    };
    for (kind, w) in victims {
        if let Some(s) = w.upgrade() {
            s.release(kind);
        }
    }
}

/// Removes a segment's entries (it is being dropped).
pub(crate) fn forget(id: u64) {
    let c = cache();
    c.files.lock().forget((id, Kind::File));
    let mut maps = c.maps.lock();
    maps.forget((id, Kind::OffsetIndex));
    maps.forget((id, Kind::TimeIndex));
}
