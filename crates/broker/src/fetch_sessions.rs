//! Incremental fetch sessions (KIP-227): the broker remembers, per session,
//! the partitions a fetcher wants and what the last response told it about
//! each, so that an incremental request names only what changed on the
//! fetcher's side and an incremental response carries only the partitions
//! that changed on the broker's side.
//!
//! [`FetchSessionCache`] is a sans-IO core: the clock (`now_ms`) and the seed
//! of its session ids are passed in; `handlers/fetch.rs` is its shell. Its
//! rules are Kafka's (`FetchSessionCacheShard`, `FetchManager.newContext`,
//! `CachedPartition.maybeUpdateResponseData`):
//!
//! - a full request (epoch 0) closes the session it names, if any, and asks
//!   for a new one holding every partition of its response; epoch -1 (final)
//!   closes and opens nothing; a new session's epoch is 1;
//! - at most `max.incremental.fetch.session.cache.slots` sessions; when full,
//!   a new session may evict the least recently used one if that was unused
//!   for longer than [`limits::FETCH_SESSION_EVICTION_MS`], else the first of
//!   the evictable ones ordered by (privileged, partition count, id) if the
//!   new one is not smaller in that order. A session becomes evictable by a
//!   consumer's only once it is older than the eviction time; a consumer's
//!   session is always evictable by a follower's (privileged) one. Kafka
//!   splits its cache into 8 shards with their own slots and applies these
//!   rules per shard; this cache is one shard holding all slots;
//! - an incremental request names a session (FETCH_SESSION_ID_NOT_FOUND if
//!   unknown) at its current epoch (INVALID_FETCH_SESSION_EPOCH otherwise),
//!   with the same topic naming as at creation (FETCH_SESSION_TOPIC_ID_ERROR
//!   between v12- names and v13+ ids); its partitions are added or updated,
//!   its forgotten ones removed; a session left empty is closed and the
//!   request served without a session; the epoch then advances;
//! - the incremental response carries a partition only if it has records,
//!   an error, a diverging epoch or leader hint, or a high watermark, last
//!   stable offset or log start offset different from the last one sent
//!   (Kafka compares the high watermark and log start; the last stable
//!   offset is added so that a read_committed fetcher learns of a commit,
//!   KAFKA-PITFALLS 21); partitions that returned records move to the end
//!   of the session's order, so that every partition gets its turn under
//!   `max_bytes`.
//!
//! A session is limited to [`limits::FETCH_SESSION_PARTITIONS_MAX`]
//! partitions and all of them to [`limits::FETCH_SESSIONS_PARTITIONS_MAX`]
//! (Kafka has no such limits): a full fetch of more gets no session, an
//! incremental request that would grow one past them closes it
//! (FETCH_SESSION_ID_NOT_FOUND, after which the fetcher sends a full
//! request).

use std::collections::{BTreeSet, HashMap};

use fjord_model::{limits, ErrorCode};
use uuid::Uuid;

/// Session id 0: no session.
pub const INVALID_SESSION_ID: i32 = 0;
/// The epoch of a full request that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full request that wants no session (closes the one named).
pub const FINAL_EPOCH: i32 = -1;

/// The epoch after `epoch`: -1 stays -1, i32::MAX wraps to 1 (0 is only
/// ever a request's, never a session's), as Kafka's `FetchMetadata.nextEpoch`.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// Whether a request is a full fetch (epoch 0 or -1), whatever session id it
/// names, as Kafka's `FetchMetadata.isFull`; any other epoch is incremental.
pub fn is_full(session_epoch: i32) -> bool {
    session_epoch == INITIAL_EPOCH || session_epoch == FINAL_EPOCH
}

/// How a session names its topics: by name up to Fetch v12, by id from v13.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicRef,
    pub partition: i32,
}

/// What the fetcher asks of one partition (the request side, cached so that
/// an incremental request need not repeat it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionRequest {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
    /// A follower's own log start offset (-1 from consumers).
    pub log_start_offset: i64,
}

/// What the last response sent about one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSeen {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

/// One partition of a response being built, as far as sessions care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionAnswer {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records_bytes: usize,
    pub error: bool,
    /// A diverging epoch or a leader hint: always sent.
    pub must_send: bool,
}

impl PartitionAnswer {
    /// What a session remembers after sending this answer: a partition
    /// answered with an error keeps high watermark -1, so that it is sent
    /// again once the error is gone (Kafka does the same).
    pub fn seen(&self) -> PartitionSeen {
        PartitionSeen {
            high_watermark: if self.error { -1 } else { self.high_watermark },
            last_stable_offset: self.last_stable_offset,
            log_start_offset: self.log_start_offset,
        }
    }
}

/// Whether an incremental response must carry a partition whose last
/// response said `seen` and whose answer now is `answer`.
pub fn must_respond(seen: &PartitionSeen, answer: &PartitionAnswer) -> bool {
    answer.records_bytes > 0
        || answer.error
        || answer.must_send
        || seen.high_watermark != answer.high_watermark
        || seen.last_stable_offset != answer.last_stable_offset
        || seen.log_start_offset != answer.log_start_offset
}

#[derive(Clone, Debug)]
struct Cached {
    key: PartitionKey,
    request: PartitionRequest,
    seen: PartitionSeen,
}

#[derive(Debug)]
struct Session {
    privileged: bool,
    uses_topic_ids: bool,
    creation_ms: i64,
    last_used_ms: i64,
    epoch: i32,
    /// In fetch order (partitions that returned records go to the end).
    partitions: Vec<Cached>,
    /// Position of each key in `partitions`.
    index: HashMap<PartitionKey, usize>,
    /// The partition count the eviction order was computed with at the last
    /// touch (Kafka's `cachedSize`).
    cached_size: usize,
}

impl Session {
    fn reindex(&mut self) {
        self.index.clear();
        for (i, c) in self.partitions.iter().enumerate() {
            self.index.insert(c.key.clone(), i);
        }
        assert_eq!(
            self.index.len(),
            self.partitions.len(),
            "a session names a partition twice"
        );
    }
}

/// Eviction order: less valuable first (a consumer's before a follower's,
/// then fewer partitions, then the lower id).
type EvictableKey = (bool, usize, i32);

/// What an incremental request resolves to.
#[derive(Debug, PartialEq)]
pub enum Incremental {
    /// Answer with this top-level error and no partitions, session id 0.
    Error(ErrorCode),
    /// The request forgot every partition: the session is closed and the
    /// request is served as a sessionless one.
    Closed,
    /// Fetch these partitions, in this order; the response belongs to the
    /// session at `epoch` (the request's epoch, advanced).
    Open {
        epoch: i32,
        partitions: Vec<(PartitionKey, PartitionRequest, PartitionSeen)>,
    },
}

/// The fetch session cache of one broker (see the module docs).
#[derive(Debug)]
pub struct FetchSessionCache {
    slots_max: usize,
    eviction_ms: i64,
    sessions: HashMap<i32, Session>,
    /// (last used, id) of every session: the stalest first.
    last_used: BTreeSet<(i64, i32)>,
    /// Sessions any new session may evict (older than the eviction time).
    evictable_by_all: BTreeSet<EvictableKey>,
    /// Sessions a follower's new session may evict (consumers' ones, and
    /// followers' older than the eviction time).
    evictable_by_privileged: BTreeSet<EvictableKey>,
    partitions_cached: usize,
    evictions: u64,
    rng: u64,
}

impl FetchSessionCache {
    /// A cache of `slots_max` sessions whose ids come from a generator
    /// seeded with `seed`.
    pub fn new(slots_max: usize, eviction_ms: i64, seed: u64) -> FetchSessionCache {
        FetchSessionCache {
            slots_max,
            eviction_ms,
            sessions: HashMap::new(),
            last_used: BTreeSet::new(),
            evictable_by_all: BTreeSet::new(),
            evictable_by_privileged: BTreeSet::new(),
            partitions_cached: 0,
            evictions: 0,
            // splitmix64 needs any non-zero state; keep it odd.
            rng: seed | 1,
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Partitions held across all sessions (as of each session's last use).
    pub fn partitions_cached(&self) -> usize {
        self.partitions_cached
    }

    /// Sessions evicted so far to make room for new ones.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The epoch session `id` expects next, if it exists.
    pub fn epoch(&self, id: i32) -> Option<i32> {
        self.sessions.get(&id).map(|s| s.epoch)
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A new positive session id not in use.
    fn new_session_id(&mut self) -> i32 {
        loop {
            let id = (self.next_random() >> 33) as i32; // 0..2^31
            if id != INVALID_SESSION_ID && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Close session `id`; whether it existed.
    pub fn remove(&mut self, id: i32) -> bool {
        let Some(s) = self.sessions.remove(&id) else {
            return false;
        };
        let key = (s.privileged, s.cached_size, id);
        assert!(
            self.last_used.remove(&(s.last_used_ms, id)),
            "session {id} not in the LRU order"
        );
        self.evictable_by_all.remove(&key);
        self.evictable_by_privileged.remove(&key);
        assert!(self.partitions_cached >= s.cached_size);
        self.partitions_cached -= s.cached_size;
        true
    }

    /// Record a use of session `id` at `now_ms`: its place in the LRU order
    /// and the eviction orders (Kafka's `touch`).
    fn touch(&mut self, id: i32, now_ms: i64) {
        let eviction_ms = self.eviction_ms;
        let Some(s) = self.sessions.get_mut(&id) else {
            panic!("touching session {id}, which is not cached");
        };
        self.last_used.remove(&(s.last_used_ms, id));
        s.last_used_ms = now_ms;
        self.last_used.insert((now_ms, id));
        let old = (s.privileged, s.cached_size, id);
        self.evictable_by_all.remove(&old);
        self.evictable_by_privileged.remove(&old);
        assert!(self.partitions_cached >= s.cached_size);
        self.partitions_cached -= s.cached_size;
        s.cached_size = s.partitions.len();
        self.partitions_cached += s.cached_size;
        let key = (s.privileged, s.cached_size, id);
        let old_enough = now_ms - s.creation_ms > eviction_ms;
        if !s.privileged || old_enough {
            self.evictable_by_privileged.insert(key);
        }
        if old_enough {
            self.evictable_by_all.insert(key);
        }
        assert_eq!(self.last_used.len(), self.sessions.len());
    }

    /// Make room for a session of `size` partitions (Kafka's `tryEvict`):
    /// whether one was evicted.
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: i64) -> bool {
        let Some(&(last_used_ms, stalest)) = self.last_used.first() else {
            return false;
        };
        if now_ms - last_used_ms > self.eviction_ms {
            self.remove(stalest);
            self.evictions += 1;
            return true;
        }
        let candidates = if privileged {
            &self.evictable_by_privileged
        } else {
            &self.evictable_by_all
        };
        let Some(&(_, _, victim)) = candidates
            .first()
            .filter(|first| (privileged, size, 0) >= **first)
        else {
            return false;
        };
        assert!(
            self.remove(victim),
            "an evictable session {victim} was not cached"
        );
        self.evictions += 1;
        true
    }

    /// A full fetch (epoch 0) answered with `partitions`: open a session
    /// holding them, evicting another if the cache is full and the rules
    /// allow. Returns its id, or [`INVALID_SESSION_ID`] if none was opened
    /// (the response then says so, and the fetcher keeps sending full
    /// requests).
    pub fn create(
        &mut self,
        now_ms: i64,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<(PartitionKey, PartitionRequest, PartitionSeen)>,
    ) -> i32 {
        let size = partitions.len();
        if size > limits::FETCH_SESSION_PARTITIONS_MAX || self.slots_max == 0 {
            return INVALID_SESSION_ID;
        }
        if self.sessions.len() >= self.slots_max && !self.try_evict(privileged, size, now_ms) {
            return INVALID_SESSION_ID;
        }
        if self.partitions_cached + size > limits::FETCH_SESSIONS_PARTITIONS_MAX {
            return INVALID_SESSION_ID;
        }
        assert!(self.sessions.len() < self.slots_max);
        let id = self.new_session_id();
        let mut s = Session {
            privileged,
            uses_topic_ids,
            creation_ms: now_ms,
            last_used_ms: now_ms,
            epoch: next_epoch(INITIAL_EPOCH),
            partitions: Vec::with_capacity(size),
            index: HashMap::with_capacity(size),
            cached_size: 0,
        };
        for (key, request, seen) in partitions {
            if let Some(&i) = s.index.get(&key) {
                // Named twice: the last entry wins, at the first place.
                s.partitions[i].request = request;
                s.partitions[i].seen = seen;
                continue;
            }
            s.index.insert(key.clone(), s.partitions.len());
            s.partitions.push(Cached { key, request, seen });
        }
        self.sessions.insert(id, s);
        self.last_used.insert((now_ms, id));
        self.touch(id, now_ms);
        id
    }

    /// An incremental request (an epoch other than 0 and -1) for session
    /// `id`: check it, apply its changes, and say what to fetch.
    pub fn begin_incremental(
        &mut self,
        now_ms: i64,
        id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        updates: Vec<(PartitionKey, PartitionRequest)>,
        forgotten: &[PartitionKey],
    ) -> Incremental {
        assert!(!is_full(epoch), "epoch {epoch} is a full fetch's");
        let Some(s) = self.sessions.get_mut(&id) else {
            return Incremental::Error(ErrorCode::FETCH_SESSION_ID_NOT_FOUND);
        };
        if s.epoch != epoch {
            return Incremental::Error(ErrorCode::INVALID_FETCH_SESSION_EPOCH);
        }
        if s.uses_topic_ids != uses_topic_ids {
            return Incremental::Error(ErrorCode::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        for (key, request) in updates {
            match s.index.get(&key) {
                Some(&i) => s.partitions[i].request = request,
                None => {
                    s.index.insert(key.clone(), s.partitions.len());
                    s.partitions.push(Cached {
                        key,
                        request,
                        seen: PartitionSeen {
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                        },
                    });
                }
            }
        }
        if !forgotten.is_empty() {
            let before = s.partitions.len();
            let gone: std::collections::HashSet<&PartitionKey> = forgotten.iter().collect();
            s.partitions.retain(|c| !gone.contains(&c.key));
            if s.partitions.len() != before {
                s.reindex();
            }
        }
        let others = self.partitions_cached - s.cached_size;
        if s.partitions.len() > limits::FETCH_SESSION_PARTITIONS_MAX
            || others + s.partitions.len() > limits::FETCH_SESSIONS_PARTITIONS_MAX
        {
            self.remove(id);
            return Incremental::Error(ErrorCode::FETCH_SESSION_ID_NOT_FOUND);
        }
        if s.partitions.is_empty() {
            self.remove(id);
            return Incremental::Closed;
        }
        s.epoch = next_epoch(s.epoch);
        let epoch = s.epoch;
        let partitions = s
            .partitions
            .iter()
            .map(|c| (c.key.clone(), c.request, c.seen))
            .collect();
        self.touch(id, now_ms);
        Incremental::Open { epoch, partitions }
    }

    /// The response to an incremental request that [`begin_incremental`]
    /// opened at `epoch` is ready: `answers` are the session's partitions
    /// in the order it gave, each with what it said was last sent. Returns
    /// which partitions the response carries, and records what they say;
    /// or INVALID_FETCH_SESSION_EPOCH if another request used the session
    /// meanwhile (the response then carries no partition, as Kafka's). A
    /// session evicted meanwhile is answered from what it said at the start.
    ///
    /// [`begin_incremental`]: FetchSessionCache::begin_incremental
    pub fn finish_incremental(
        &mut self,
        id: i32,
        epoch: i32,
        answers: &[(PartitionKey, PartitionSeen, PartitionAnswer)],
    ) -> Result<Vec<bool>, ErrorCode> {
        let send: Vec<bool> = answers
            .iter()
            .map(|(_, seen, answer)| must_respond(seen, answer))
            .collect();
        let Some(s) = self.sessions.get_mut(&id) else {
            return Ok(send);
        };
        if s.epoch != epoch {
            return Err(ErrorCode::INVALID_FETCH_SESSION_EPOCH);
        }
        // The session has not changed since `begin_incremental` (its epoch
        // would have): it holds exactly these partitions.
        assert_eq!(
            s.partitions.len(),
            answers.len(),
            "session {id} changed at epoch {epoch}"
        );
        let mut rotate = false;
        for (key, _, answer) in answers {
            let Some(&i) = s.index.get(key) else {
                panic!("session {id} at epoch {epoch} lost a partition");
            };
            s.partitions[i].seen = answer.seen();
            rotate |= answer.records_bytes > 0;
        }
        if rotate {
            // Partitions that returned records go last, in their order.
            let mut with_records = Vec::new();
            let mut rest = Vec::with_capacity(s.partitions.len());
            let had_records: std::collections::HashSet<&PartitionKey> = answers
                .iter()
                .filter(|(_, _, a)| a.records_bytes > 0)
                .map(|(k, _, _)| k)
                .collect();
            for c in s.partitions.drain(..) {
                if had_records.contains(&c.key) {
                    with_records.push(c);
                } else {
                    rest.push(c);
                }
            }
            rest.extend(with_records);
            s.partitions = rest;
            s.reindex();
        }
        Ok(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVICT_MS: i64 = 120_000;

    fn key(p: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicRef::Name("t".into()),
            partition: p,
        }
    }

    fn req(offset: i64) -> PartitionRequest {
        PartitionRequest {
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            log_start_offset: -1,
        }
    }

    fn seen(hw: i64) -> PartitionSeen {
        PartitionSeen {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: 0,
        }
    }

    fn answer(hw: i64, bytes: usize) -> PartitionAnswer {
        PartitionAnswer {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: 0,
            records_bytes: bytes,
            error: false,
            must_send: false,
        }
    }

    fn parts(n: i32) -> Vec<(PartitionKey, PartitionRequest, PartitionSeen)> {
        (0..n).map(|p| (key(p), req(0), seen(0))).collect()
    }

    #[test]
    fn epochs_advance_and_wrap() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
        assert!(is_full(0) && is_full(-1) && !is_full(1) && !is_full(-2));
    }

    #[test]
    fn a_session_checks_its_id_epoch_and_topic_naming() {
        let mut c = FetchSessionCache::new(10, EVICT_MS, 7);
        let id = c.create(0, false, false, parts(2));
        assert_ne!(id, INVALID_SESSION_ID);
        assert!(id > 0);
        assert_eq!(c.epoch(id), Some(1));
        let unknown = if id == 5 { 6 } else { 5 };
        assert_eq!(
            c.begin_incremental(1, unknown, 1, false, vec![], &[]),
            Incremental::Error(ErrorCode::FETCH_SESSION_ID_NOT_FOUND)
        );
        assert_eq!(
            c.begin_incremental(1, id, 2, false, vec![], &[]),
            Incremental::Error(ErrorCode::INVALID_FETCH_SESSION_EPOCH)
        );
        assert_eq!(
            c.begin_incremental(1, id, 1, true, vec![], &[]),
            Incremental::Error(ErrorCode::FETCH_SESSION_TOPIC_ID_ERROR)
        );
        // Errors do not advance the epoch.
        assert_eq!(c.epoch(id), Some(1));
        let Incremental::Open { epoch, partitions } = c.begin_incremental(
            1,
            id,
            1,
            false,
            vec![(key(1), req(5)), (key(2), req(0))],
            &[],
        ) else {
            panic!("not open");
        };
        assert_eq!(epoch, 2);
        let got: Vec<(i32, i64)> = partitions
            .iter()
            .map(|(k, r, _)| (k.partition, r.fetch_offset))
            .collect();
        assert_eq!(got, vec![(0, 0), (1, 5), (2, 0)]);
        // The same epoch again is a duplicate.
        assert_eq!(
            c.begin_incremental(2, id, 1, false, vec![], &[]),
            Incremental::Error(ErrorCode::INVALID_FETCH_SESSION_EPOCH)
        );
        // Forgetting every partition closes the session.
        assert_eq!(
            c.begin_incremental(2, id, 2, false, vec![], &[key(0), key(1), key(2)]),
            Incremental::Closed
        );
        assert!(c.is_empty());
        assert_eq!(c.partitions_cached(), 0);
    }

    #[test]
    fn only_changed_partitions_are_answered_and_data_rotates() {
        let mut c = FetchSessionCache::new(10, EVICT_MS, 1);
        let id = c.create(0, false, false, parts(3));
        let Incremental::Open { epoch, partitions } =
            c.begin_incremental(1, id, 1, false, vec![], &[])
        else {
            panic!("not open");
        };
        // Partition 0 unchanged, 1 has records, 2's high watermark moved.
        let answers: Vec<_> = partitions
            .iter()
            .zip([answer(0, 0), answer(4, 100), answer(3, 0)])
            .map(|((k, _, s), a)| (k.clone(), *s, a))
            .collect();
        assert_eq!(
            c.finish_incremental(id, epoch, &answers),
            Ok(vec![false, true, true])
        );
        let Incremental::Open { epoch, partitions } =
            c.begin_incremental(2, id, epoch, false, vec![], &[])
        else {
            panic!("not open");
        };
        // 1 went last; what was sent is remembered.
        let order: Vec<i32> = partitions.iter().map(|(k, _, _)| k.partition).collect();
        assert_eq!(order, vec![0, 2, 1]);
        assert_eq!(partitions[2].2.high_watermark, 4);
        let answers: Vec<_> = partitions
            .iter()
            .map(|(k, _, s)| (k.clone(), *s, answer(s.high_watermark, 0)))
            .collect();
        assert_eq!(
            c.finish_incremental(id, epoch, &answers),
            Ok(vec![false, false, false])
        );
        // An error is sent, and the partition is sent again when it clears.
        let Incremental::Open { epoch, partitions } =
            c.begin_incremental(3, id, epoch, false, vec![], &[])
        else {
            panic!("not open");
        };
        let mut err = answer(3, 0);
        err.error = true;
        let answers: Vec<_> = partitions
            .iter()
            .map(|(k, _, s)| {
                let a = if k.partition == 2 {
                    err
                } else {
                    answer(s.high_watermark, 0)
                };
                (k.clone(), *s, a)
            })
            .collect();
        assert_eq!(
            c.finish_incremental(id, epoch, &answers),
            Ok(vec![false, true, false])
        );
        let Incremental::Open { epoch, partitions } =
            c.begin_incremental(4, id, epoch, false, vec![], &[])
        else {
            panic!("not open");
        };
        let answers: Vec<_> = partitions
            .iter()
            .map(|(k, _, s)| {
                (
                    k.clone(),
                    *s,
                    answer(
                        if k.partition == 2 {
                            3
                        } else {
                            s.high_watermark
                        },
                        0,
                    ),
                )
            })
            .collect();
        assert_eq!(
            c.finish_incremental(id, epoch, &answers),
            Ok(vec![false, true, false])
        );
        // A stale epoch at the end (another request came meanwhile).
        assert_eq!(
            c.finish_incremental(id, epoch - 1, &answers),
            Err(ErrorCode::INVALID_FETCH_SESSION_EPOCH)
        );
    }

    #[test]
    fn a_full_cache_evicts_stale_then_smaller_then_nothing() {
        let mut c = FetchSessionCache::new(2, EVICT_MS, 3);
        let a = c.create(0, false, false, parts(5));
        let b = c.create(10, false, false, parts(1));
        assert_eq!(c.len(), 2);
        // Young sessions are not evictable by a consumer's.
        assert_eq!(c.create(20, false, false, parts(100)), INVALID_SESSION_ID);
        // A follower's evicts a consumer's session at once: the smallest.
        let f = c.create(30, true, false, parts(1));
        assert_ne!(f, INVALID_SESSION_ID);
        assert_eq!(c.epoch(b), None);
        assert_eq!(c.epoch(a), Some(1));
        assert_eq!(c.evictions(), 1);
        // A follower's young session is not evictable by a follower's.
        let g = c.create(40, true, false, parts(1));
        assert_ne!(g, INVALID_SESSION_ID, "the consumer's session goes");
        assert_eq!(c.epoch(a), None);
        assert_eq!(c.create(50, true, false, parts(1)), INVALID_SESSION_ID);
        // Once old, sessions become evictable by size: a bigger consumer
        // session cannot displace a follower's (privileged first).
        let old = 50 + EVICT_MS;
        let Incremental::Open { .. } = c.begin_incremental(old, f, 1, false, vec![], &[]) else {
            panic!("not open");
        };
        let Incremental::Open { .. } = c.begin_incremental(old, g, 1, false, vec![], &[]) else {
            panic!("not open");
        };
        assert_eq!(
            c.create(old + 1, false, false, parts(1000)),
            INVALID_SESSION_ID
        );
        // A stale session (unused for longer than the eviction time) goes
        // whatever the newcomer.
        let later = old + EVICT_MS + 1;
        let Incremental::Open { .. } = c.begin_incremental(later, g, 2, false, vec![], &[]) else {
            panic!("not open");
        };
        let h = c.create(later, false, false, parts(1));
        assert_ne!(h, INVALID_SESSION_ID);
        assert_eq!(c.epoch(f), None, "the stalest session was evicted");
        assert_eq!(c.epoch(g), Some(3));
        assert_eq!(c.len(), 2);
        assert_eq!(c.partitions_cached(), 2);
    }

    #[test]
    fn old_consumer_sessions_are_evicted_by_bigger_ones() {
        let mut c = FetchSessionCache::new(2, EVICT_MS, 9);
        let small = c.create(0, false, false, parts(2));
        let big = c.create(0, false, false, parts(10));
        // Used recently (not stale) but created long ago: evictable by size.
        let t = EVICT_MS + 5;
        for id in [small, big] {
            let Incremental::Open { .. } = c.begin_incremental(t, id, 1, false, vec![], &[]) else {
                panic!("not open");
            };
        }
        assert_eq!(c.create(t + 1, false, false, parts(1)), INVALID_SESSION_ID);
        let n = c.create(t + 1, false, false, parts(3));
        assert_ne!(n, INVALID_SESSION_ID);
        assert_eq!(c.epoch(small), None);
        assert_eq!(c.epoch(big), Some(2));
        assert_eq!(c.partitions_cached(), 13);
    }

    #[test]
    fn no_slots_no_sessions_and_ids_are_unique() {
        let mut none = FetchSessionCache::new(0, EVICT_MS, 1);
        assert_eq!(none.create(0, true, false, parts(1)), INVALID_SESSION_ID);
        let mut c = FetchSessionCache::new(1000, EVICT_MS, 42);
        let mut ids = std::collections::HashSet::new();
        for i in 0..1000 {
            let id = c.create(i, false, true, parts(1));
            assert!(id > 0);
            assert!(ids.insert(id));
        }
        assert_eq!(c.len(), 1000);
        assert!(c.remove(*ids.iter().next().unwrap()));
        assert_eq!(c.len(), 999);
        assert_eq!(c.partitions_cached(), 999);
    }
}
