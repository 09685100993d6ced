//! The runtime against an in-memory partition store whose loads can be held
//! or made to fail halfway, and whose appends become durable only when the
//! test says so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fjord_model::{ErrorCode, Offset};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::*;

type Entry = (Vec<u8>, Option<Vec<u8>>);

/// A key-value state machine: records set or delete keys; `deadline` asks for a tick.
struct Kv {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    deadline: Option<i64>,
    ticks: u32,
    loaded_at: Option<i64>,
    drops: Arc<AtomicUsize>,
}

impl Drop for Kv {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Record(Vec<u8>, Option<Vec<u8>>),
    Reply(u64),
}

impl Kv {
    fn set(&mut self, key: &[u8], value: &[u8], reply: u64, out: &mut Vec<Out>) -> Option<Vec<u8>> {
        out.push(Out::Record(key.to_vec(), Some(value.to_vec())));
        out.push(Out::Reply(reply));
        self.entries.insert(key.to_vec(), value.to_vec())
    }
}

impl Coordinator for Kv {
    type Output = Out;

    fn replay(&mut self, _: Offset, key: &[u8], value: Option<&[u8]>) -> Result<(), ReplayError> {
        if key == b"bad" {
            return Err(ReplayError::Fatal("bad record".into()));
        }
        if key.starts_with(b"?") {
            return Err(ReplayError::Skip("unknown record type".into()));
        }
        match value {
            Some(v) => self.entries.insert(key.to_vec(), v.to_vec()),
            None => self.entries.remove(key),
        };
        Ok(())
    }

    fn loaded(&mut self, now_ms: i64) {
        assert!(self.loaded_at.is_none(), "loaded twice");
        self.loaded_at = Some(now_ms);
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        self.deadline
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<Out>) {
        if self.deadline.is_some_and(|d| d <= now_ms) {
            self.deadline = None;
            self.ticks += 1;
            out.push(Out::Record(b"tick".to_vec(), Some(vec![self.ticks as u8])));
        }
    }

    fn as_record(output: &Out) -> Option<(&[u8], Option<&[u8]>)> {
        match output {
            Out::Record(k, v) => Some((k, v.as_deref())),
            Out::Reply(_) => None,
        }
    }
}

#[derive(Default)]
struct FakeIo {
    parts: Vec<Mutex<Vec<Entry>>>,
    /// Loads of a partition that fail (after replaying half its records) before one succeeds.
    fail_loads: Vec<AtomicU32>,
    /// A load of this partition waits while set.
    hold: Vec<AtomicBool>,
    loads: AtomicUsize,
    fail_appends: AtomicBool,
    /// Every append, in order: (partition, keys).
    appends: Mutex<Vec<(u32, Vec<Vec<u8>>)>>,
    /// Durability of each append, completed by the test.
    durable: Mutex<Vec<oneshot::Sender<Result<(), WriteError>>>>,
}

impl FakeIo {
    fn new(parts: Vec<Vec<Entry>>) -> Arc<FakeIo> {
        let n = parts.len();
        Arc::new(FakeIo {
            parts: parts.into_iter().map(Mutex::new).collect(),
            fail_loads: (0..n).map(|_| AtomicU32::new(0)).collect(),
            hold: (0..n).map(|_| AtomicBool::new(false)).collect(),
            ..FakeIo::default()
        })
    }

    /// Make the oldest append not yet completed durable.
    fn complete_next(&self) {
        let tx = self.durable.lock().remove(0);
        let _ = tx.send(Ok(()));
    }
}

impl PartitionIo for FakeIo {
    fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    fn load(
        &self,
        partition: u32,
        closing: &dyn Fn() -> bool,
        visit: &mut Visitor<'_>,
    ) -> Result<LoadSummary, LoadError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let p = partition as usize;
        while self.hold[p].load(Ordering::SeqCst) {
            if closing() {
                return Err(LoadError::Closed);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let entries = self.parts[p].lock().clone();
        let fail = self.fail_loads[p]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let mut summary = LoadSummary::default();
        for (i, (k, v)) in entries.iter().enumerate() {
            if fail && i == entries.len() / 2 {
                return Err(LoadError::Corrupt {
                    offset: i as i64,
                    detail: "magic byte 0".into(),
                });
            }
            visit(
                Offset(i as i64),
                Loaded::Record {
                    key: k,
                    value: v.as_deref(),
                    txn: None,
                },
            )?;
            summary.records += 1;
        }
        Ok(summary)
    }

    fn append(
        &self,
        partition: u32,
        records: &[(&[u8], Option<&[u8]>)],
        _txn: Option<TxnWriter>,
        _now_ms: i64,
    ) -> Result<Durable, WriteError> {
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(WriteError("disk full".into()));
        }
        let mut part = self.parts[partition as usize].lock();
        for (k, v) in records {
            part.push((k.to_vec(), v.map(|v| v.to_vec())));
        }
        self.appends
            .lock()
            .push((partition, records.iter().map(|(k, _)| k.to_vec()).collect()));
        let (tx, rx) = oneshot::channel();
        self.durable.lock().push(tx);
        Ok(Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(WriteError("dropped".into())))
        }))
    }
}

struct Harness {
    io: Arc<FakeIo>,
    rt: Arc<Runtime<Kv>>,
    clock: Arc<AtomicI64>,
    delivered: Arc<Mutex<Vec<(u32, u64)>>>,
    drops: Arc<AtomicUsize>,
}

fn kv(entries: &[(&str, Option<&str>)]) -> Vec<Entry> {
    entries
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
        .collect()
}

fn harness(parts: Vec<Vec<Entry>>) -> Harness {
    let io = FakeIo::new(parts);
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let drops = Arc::new(AtomicUsize::new(0));
    let config = RuntimeConfig {
        load_threads: 2,
        load_retry_backoff_ms_min: 100,
        load_retry_backoff_ms_max: 400,
        ..RuntimeConfig::new("__test")
    };
    let (c, d, dr) = (clock.clone(), delivered.clone(), drops.clone());
    let rt = Runtime::new(
        config,
        io.clone(),
        move |_| Kv {
            entries: BTreeMap::new(),
            deadline: None,
            ticks: 0,
            loaded_at: None,
            drops: dr.clone(),
        },
        move |p, outs: Vec<Out>, _durable: bool| {
            for o in outs {
                match o {
                    Out::Reply(n) => d.lock().push((p, n)),
                    Out::Record(..) => panic!("a record was delivered"),
                }
            }
        },
        move || c.load(Ordering::SeqCst),
    );
    Harness {
        io,
        rt,
        clock,
        delivered,
        drops,
    }
}

fn entries(h: &Harness, p: u32) -> Result<Vec<(String, String)>, ShardError> {
    h.rt.read(p, |c| {
        c.entries
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    })
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn shards_load_in_parallel_and_a_loading_shard_refuses() {
    let h = harness(vec![
        kv(&[
            ("a", Some("1")),
            ("?future", Some("x")),
            ("b", Some("2")),
            ("a", None),
        ]),
        kv(&[("c", Some("3"))]),
    ]);
    h.io.hold[1].store(true, Ordering::SeqCst);
    h.rt.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.rt.status(0) != ShardStatus::Active {
        assert!(std::time::Instant::now() < deadline, "shard 0 never loaded");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Shard 0 serves (the unknown record skipped, the tombstone applied)
    // while shard 1 is still loading.
    assert_eq!(entries(&h, 0), Ok(pairs(&[("b", "2")])));
    assert_eq!(h.rt.status(1), ShardStatus::Loading);
    assert_eq!(entries(&h, 1), Err(ShardError::LoadInProgress));
    assert_eq!(
        ShardError::LoadInProgress.code(),
        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
    );
    h.io.hold[1].store(false, Ordering::SeqCst);
    h.rt.wait_for_loads();
    assert_eq!(entries(&h, 1), Ok(pairs(&[("c", "3")])));
    assert_eq!(h.rt.read(1, |c| c.loaded_at), Ok(Some(1_000_000)));
    // A partition that does not exist is not coordinated here.
    assert_eq!(entries(&h, 2), Err(ShardError::NotCoordinator));
}

#[test]
fn a_failed_load_serves_nothing_until_a_retry_succeeds() {
    let h = harness(vec![
        kv(&[("a", Some("1"))]),
        kv(&[
            ("x", Some("1")),
            ("y", Some("2")),
            ("z", Some("3")),
            ("x", Some("4")),
        ]),
    ]);
    h.io.fail_loads[1].store(2, Ordering::SeqCst);
    h.rt.start();
    h.rt.wait_for_loads();
    // Half of partition 1 was replayed before the damage: none of it is served.
    assert!(matches!(
        h.rt.status(1),
        ShardStatus::Failed {
            error: LoadError::Corrupt { offset: 2, .. },
            retry_at_ms: 1_000_100
        }
    ));
    assert_eq!(entries(&h, 1), Err(ShardError::NotCoordinator));
    assert_eq!(
        ShardError::NotCoordinator.code(),
        ErrorCode::NOT_COORDINATOR
    );
    let write = h.rt.write(1, |_, _, _| ((), ()), |_, ()| {});
    assert_eq!(write.err(), Some(ShardError::NotCoordinator));
    // The other shard serves.
    assert_eq!(entries(&h, 0), Ok(pairs(&[("a", "1")])));
    let loads = h.io.loads.load(Ordering::SeqCst);
    // Before the backoff ends, requests do not start a load.
    h.clock.fetch_add(99, Ordering::SeqCst);
    assert_eq!(entries(&h, 1), Err(ShardError::NotCoordinator));
    h.rt.wait_for_loads();
    assert_eq!(h.io.loads.load(Ordering::SeqCst), loads);
    // After it, the next request starts one (and is told it is loading).
    h.clock.fetch_add(1, Ordering::SeqCst);
    assert_eq!(entries(&h, 1), Err(ShardError::LoadInProgress));
    h.rt.wait_for_loads();
    assert_eq!(h.io.loads.load(Ordering::SeqCst), loads + 1);
    // Second failure: the backoff doubled.
    assert!(matches!(
        h.rt.status(1),
        ShardStatus::Failed {
            retry_at_ms: 1_000_300,
            ..
        }
    ));
    h.clock.fetch_add(200, Ordering::SeqCst);
    assert_eq!(entries(&h, 1), Err(ShardError::LoadInProgress));
    h.rt.wait_for_loads();
    // A fresh state machine replayed everything, once.
    assert_eq!(
        entries(&h, 1),
        Ok(pairs(&[("x", "4"), ("y", "2"), ("z", "3")]))
    );
}

#[test]
fn a_record_that_cannot_be_replayed_fails_the_load() {
    let h = harness(vec![kv(&[
        ("a", Some("1")),
        ("bad", Some("?")),
        ("b", Some("2")),
    ])]);
    h.rt.start();
    h.rt.wait_for_loads();
    match h.rt.status(0) {
        ShardStatus::Failed { error, .. } => assert_eq!(
            error,
            LoadError::Replay {
                offset: 1,
                detail: "bad record".into()
            }
        ),
        s => panic!("status {s:?}"),
    }
    assert_eq!(entries(&h, 0), Err(ShardError::NotCoordinator));
}

#[test]
fn backoff_is_capped() {
    let h = harness(vec![kv(&[("a", Some("1"))])]);
    h.io.fail_loads[0].store(10, Ordering::SeqCst);
    h.rt.start();
    h.rt.wait_for_loads();
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let ShardStatus::Failed { retry_at_ms, .. } = h.rt.status(0) else {
            panic!("not failed");
        };
        gaps.push(retry_at_ms - h.clock.load(Ordering::SeqCst));
        h.clock.store(retry_at_ms, Ordering::SeqCst);
        assert_eq!(entries(&h, 0), Err(ShardError::LoadInProgress));
        h.rt.wait_for_loads();
    }
    assert_eq!(gaps, vec![100, 200, 400, 400]);
}

#[tokio::test]
async fn answers_wait_for_durability_and_writes_keep_their_order() {
    let h = harness(vec![kv(&[]), kv(&[])]);
    h.rt.start();
    h.rt.wait_for_loads();
    let first =
        h.rt.write(0, |c, _, out| (c.set(b"k1", b"1", 1, out), ()), |_, ()| {})
            .unwrap();
    let second =
        h.rt.write(0, |c, _, out| (c.set(b"k2", b"2", 2, out), ()), |_, ()| {})
            .unwrap();
    // Appended at decision time, in decision order, before anything is polled.
    assert_eq!(
        *h.io.appends.lock(),
        vec![(0, vec![b"k1".to_vec()]), (0, vec![b"k2".to_vec()])]
    );
    let first = tokio::spawn(first);
    let second = tokio::spawn(second);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!first.is_finished() && !second.is_finished());
    assert!(h.delivered.lock().is_empty(), "delivered before durable");
    h.io.complete_next();
    assert_eq!(first.await.unwrap(), (None, true));
    assert_eq!(*h.delivered.lock(), vec![(0, 1)]);
    assert!(!second.is_finished());
    h.io.complete_next();
    assert_eq!(second.await.unwrap(), (None, true));
    assert_eq!(*h.delivered.lock(), vec![(0, 1), (0, 2)]);
    // Durability that fails is reported.
    let third =
        h.rt.write(1, |c, _, out| (c.set(b"k3", b"3", 3, out), ()), |_, ()| {})
            .unwrap();
    let _ =
        h.io.durable
            .lock()
            .remove(0)
            .send(Err(WriteError("fsync".into())));
    assert_eq!(third.await, (None, false));
}

#[tokio::test]
async fn a_failed_append_is_undone() {
    let h = harness(vec![kv(&[("k", Some("old"))])]);
    h.rt.start();
    h.rt.wait_for_loads();
    h.io.fail_appends.store(true, Ordering::SeqCst);
    let (r, persisted) =
        h.rt.write(
            0,
            |c, _, out| {
                let prev = c.set(b"k", b"new", 9, out);
                (prev.clone(), prev)
            },
            |c, prev| {
                if let Some(p) = prev {
                    c.entries.insert(b"k".to_vec(), p);
                }
            },
        )
        .unwrap()
        .await;
    assert_eq!((r, persisted), (Some(b"old".to_vec()), false));
    assert_eq!(entries(&h, 0), Ok(pairs(&[("k", "old")])));
    // The non-record output is still delivered (a held request gets its answer).
    assert_eq!(*h.delivered.lock(), vec![(0, 9)]);
}

#[tokio::test]
async fn the_timer_ticks_due_shards() {
    let h = harness(vec![kv(&[]), kv(&[])]);
    h.rt.start();
    h.rt.wait_for_loads();
    let now = h.clock.load(Ordering::SeqCst);
    let set_deadline = |c: &mut Kv, _: i64, _: &mut Vec<Out>| {
        c.deadline = Some(now);
        ((), ())
    };
    h.rt.write(1, set_deadline, |_, ()| {}).unwrap().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.rt.read(1, |c| c.ticks) != Ok(1) {
        assert!(std::time::Instant::now() < deadline, "no tick");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The tick's record went through the writer; shard 0 had nothing due.
    assert!(h.io.appends.lock().contains(&(1, vec![b"tick".to_vec()])));
    assert_eq!(h.rt.read(0, |c| c.ticks), Ok(0));
    h.io.complete_next();
}

#[test]
fn close_unloads_every_shard() {
    let h = harness(vec![kv(&[("a", Some("1"))]), kv(&[]), kv(&[])]);
    h.io.hold[2].store(true, Ordering::SeqCst);
    h.rt.start();
    while h.rt.status(0) != ShardStatus::Active || h.rt.status(1) != ShardStatus::Active {
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = h.drops.load(Ordering::SeqCst);
    // Closing while shard 2 is still loading: the load stops, nothing is served.
    h.rt.close();
    assert_eq!(h.drops.load(Ordering::SeqCst), before + 3);
    for p in 0..3 {
        assert_eq!(h.rt.status(p), ShardStatus::Closed);
        assert_eq!(entries(&h, p), Err(ShardError::NotCoordinator));
    }
}

#[test]
fn start_with_loads_only_the_selected_shards() {
    let h = harness(vec![kv(&[("a", Some("1"))]), kv(&[("b", Some("2"))])]);
    h.rt.start_with(|p| p == 1);
    h.rt.wait_for_loads();
    assert_eq!(h.rt.status(0), ShardStatus::Closed);
    assert_eq!(entries(&h, 0), Err(ShardError::NotCoordinator));
    assert_eq!(entries(&h, 1), Ok(pairs(&[("b", "2")])));
    assert_eq!(h.io.loads.load(Ordering::SeqCst), 1);
}

#[test]
fn a_shard_unloaded_while_loading_stays_unloaded_and_a_reload_reads_the_partition_again() {
    let h = harness(vec![kv(&[("a", Some("1"))]), kv(&[("b", Some("2"))])]);
    h.io.hold[0].store(true, Ordering::SeqCst);
    h.rt.start();
    while h.io.loads.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Leadership of partition 0 moves away while its load runs: the load
    // finishes into nothing.
    h.rt.unload(0);
    h.io.hold[0].store(false, Ordering::SeqCst);
    h.rt.wait_for_loads();
    assert_eq!(h.rt.status(0), ShardStatus::Closed);
    assert_eq!(entries(&h, 0), Err(ShardError::NotCoordinator));
    // Meanwhile the new leader wrote (replicated here); leadership comes
    // back: the shard replays the whole partition, the new record included.
    h.io.parts[0]
        .lock()
        .push((b"c".to_vec(), Some(b"3".to_vec())));
    h.rt.reload(0);
    h.rt.wait_for_loads();
    assert_eq!(entries(&h, 0), Ok(pairs(&[("a", "1"), ("c", "3")])));
    // An active shard that is unloaded drops its state.
    let before = h.drops.load(Ordering::SeqCst);
    h.rt.unload(1);
    assert_eq!(h.drops.load(Ordering::SeqCst), before + 1);
    assert_eq!(entries(&h, 1), Err(ShardError::NotCoordinator));
    // A closed runtime reloads nothing.
    h.rt.close();
    h.rt.reload(1);
    assert_eq!(h.rt.status(1), ShardStatus::Closed);
}
