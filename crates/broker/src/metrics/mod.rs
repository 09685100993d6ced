//! Metrics, health and readiness: what `fjord serve --metrics-listen`
//! serves over HTTP ([`http`]) as Prometheus text ([`exposition`]).
//!
//! The hot paths only bump atomics they own or share little:
//! - each connection has its own [`ConnStats`] (requests and a latency
//!   histogram per API), registered in [`BrokerMetrics`] while it is open
//!   and folded into the retired totals when it closes; a scrape adds them up;
//! - each topic has its [`TopicStats`] (bytes and records in, bytes out),
//!   bumped once per partition of a Produce or Fetch, never per record;
//! - error codes are counted under a lock only when a response carries one;
//! - storage (fsync latency, group-commit sizes, I/O errors) counts in
//!   `fjord_storage::stats`.
//!
//! Everything else (log end offsets, sizes, segments, ISR, consumer lag,
//! process memory and open files) is read from the broker's state at scrape
//! time. Per-partition, per-topic and per-group-partition series are capped
//! (`limits::METRICS_*_SERIES_MAX`) so a scrape stays bounded.

pub mod exposition;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fjord_model::histogram::{AtomicHistogram, Snapshot, LATENCY_BOUNDS_US};
use parking_lot::Mutex;

use crate::state::Broker;

/// API keys with their own request series: Kafka's keys are below this.
pub const API_KEY_SLOTS: usize = 128;

/// Requests and their latency, of one API on one connection.
#[derive(Debug)]
struct ApiStats {
    requests: AtomicU64,
    latency_us: AtomicHistogram,
}

/// One connection's request counters. Written by its writer task only;
/// read (summed) at scrape time.
#[derive(Debug)]
pub struct ConnStats {
    apis: Box<[OnceLock<ApiStats>]>,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            apis: (0..API_KEY_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl ConnStats {
    /// A request of `api_key` answered `latency` after it was read.
    pub fn answered(&self, api_key: i16, latency: Duration) {
        let Some(slot) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) else {
            return;
        };
        let s = slot.get_or_init(|| ApiStats {
            requests: AtomicU64::new(0),
            latency_us: AtomicHistogram::new(LATENCY_BOUNDS_US),
        });
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.latency_us
            .record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    fn add_into(&self, totals: &mut BTreeMap<i16, ApiTotals>) {
        for (key, slot) in self.apis.iter().enumerate() {
            if let Some(s) = slot.get() {
                let t = totals.entry(key as i16).or_insert_with(ApiTotals::new);
                t.requests += s.requests.load(Ordering::Relaxed);
                t.latency_us.add(&s.latency_us.snapshot());
            }
        }
    }
}

/// Requests of one API summed over connections.
#[derive(Clone, Debug)]
pub struct ApiTotals {
    pub requests: u64,
    pub latency_us: Snapshot,
}

impl ApiTotals {
    fn new() -> ApiTotals {
        ApiTotals {
            requests: 0,
            latency_us: Snapshot::empty(LATENCY_BOUNDS_US),
        }
    }
}

/// Bytes and records through one topic, bumped once per partition of a
/// request.
#[derive(Debug, Default)]
pub struct TopicStats {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl TopicStats {
    pub fn produced(&self, bytes: usize, records: u64) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
    }

    pub fn fetched(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Connections {
    next_id: u64,
    open: HashMap<u64, Arc<ConnStats>>,
    /// What closed connections answered.
    retired: BTreeMap<i16, ApiTotals>,
}

/// The broker's counters that are not read from its state (see the module docs).
#[derive(Debug)]
pub struct BrokerMetrics {
    /// Per-request counting (requests, latency, errors, topic traffic) is
    /// on. `fjord serve` turns it off when no metrics listener is
    /// configured, so that nobody pays for counters nobody can read.
    enabled: AtomicBool,
    connections: Mutex<Connections>,
    accepted: AtomicU64,
    closed: AtomicU64,
    rejected: AtomicU64,
    throttled: AtomicU64,
    /// Responses' non-zero error codes, by (API key, error code).
    errors: Mutex<BTreeMap<(i16, i16), u64>>,
}

/// An open connection's registration: its stats, folded into the retired
/// totals when dropped.
pub struct ConnGuard {
    metrics: Arc<BrokerMetrics>,
    id: u64,
    pub stats: Arc<ConnStats>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.metrics.connections.lock();
        let removed = c.open.remove(&self.id);
        // Paired with `connection_opened`, which inserted it under this id.
        assert!(removed.is_some(), "connection {} closed twice", self.id);
        self.stats.add_into(&mut c.retired);
        drop(c);
        self.metrics.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            enabled: AtomicBool::new(true),
            connections: Mutex::default(),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            errors: Mutex::default(),
        }
    }
}

impl BrokerMetrics {
    /// Whether requests are counted (on unless turned off).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }
    /// A connection was accepted: its stats live until the guard drops.
    pub fn connection_opened(self: &Arc<Self>) -> ConnGuard {
        let stats = Arc::new(ConnStats::default());
        let mut c = self.connections.lock();
        let id = c.next_id;
        c.next_id += 1;
        let fresh = c.open.insert(id, stats.clone()).is_none();
        assert!(fresh, "connection id {id} reused");
        drop(c);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        ConnGuard {
            metrics: self.clone(),
            id,
            stats,
        }
    }

    /// A connection was closed at accept (`max.connections.per.ip` reached).
    pub fn connection_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was not served, its address over its
    /// `connection_creation_rate` quota (closed after the throttle time).
    pub fn connection_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections not served for `connection_creation_rate`.
    pub fn connections_throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// A response of `api_key` carried these error codes (0s are ignored).
    pub fn errors_answered(&self, api_key: i16, codes: impl IntoIterator<Item = i16>) {
        let mut codes = codes.into_iter().filter(|c| *c != 0).peekable();
        if codes.peek().is_none() {
            return;
        }
        let mut errors = self.errors.lock();
        for code in codes {
            *errors.entry((api_key, code)).or_insert(0) += 1;
        }
    }

    /// Requests and latency per API, over open and closed connections.
    pub fn api_totals(&self) -> BTreeMap<i16, ApiTotals> {
        let c = self.connections.lock();
        let mut totals = c.retired.clone();
        let open: Vec<Arc<ConnStats>> = c.open.values().cloned().collect();
        drop(c);
        for s in open {
            s.add_into(&mut totals);
        }
        totals
    }

    pub fn error_totals(&self) -> BTreeMap<(i16, i16), u64> {
        self.errors.lock().clone()
    }

    /// (open, accepted, closed, rejected).
    pub fn connection_counts(&self) -> (usize, u64, u64, u64) {
        (
            self.connections.lock().open.len(),
            self.accepted.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

/// What `/health` and `/ready` look at, set as the node starts: the broker
/// once its storage is recovered and metadata loaded, and whether the client
/// listener accepts connections.
#[derive(Default)]
pub struct Health {
    broker: OnceLock<Arc<Broker>>,
    serving: AtomicBool,
}

/// One readiness check and whether it passed.
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// The broker is open (storage recovered, metadata loaded).
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// The client listener accepts connections (or stopped accepting).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }

    /// The readiness checks, in order.
    pub fn checks(&self) -> Vec<Check> {
        let broker = self.broker.get();
        let metadata = broker.is_some_and(|b| {
            !b.config.kraft.is_cluster()
                || b.image()
                    .broker(b.config.node_id)
                    .is_some_and(|r| !r.fenced)
        });
        let coordinators = broker.is_some_and(|b| b.groups.all_loaded());
        vec![
            Check {
                name: "storage",
                ok: broker.is_some(),
            },
            Check {
                name: "metadata",
                ok: metadata,
            },
            Check {
                name: "coordinators",
                ok: coordinators,
            },
            Check {
                name: "listener",
                ok: self.serving.load(Ordering::Acquire),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_connections_keep_counting() {
        let m = Arc::new(BrokerMetrics::default());
        let a = m.connection_opened();
        let b = m.connection_opened();
        a.stats.answered(0, Duration::from_micros(300));
        a.stats.answered(0, Duration::from_micros(300));
        b.stats.answered(0, Duration::from_millis(20));
        b.stats.answered(3, Duration::from_micros(50));
        b.stats.answered(-1, Duration::ZERO);
        b.stats.answered(i16::MAX, Duration::ZERO);
        drop(a);
        let t = m.api_totals();
        assert_eq!(t[&0].requests, 3);
        assert_eq!(t[&0].latency_us.count(), 3);
        assert_eq!(t[&0].latency_us.sum, 20_600);
        assert_eq!(t[&3].requests, 1);
        assert_eq!(t.len(), 2);
        assert_eq!(m.connection_counts(), (1, 2, 1, 0));
        drop(b);
        assert_eq!(m.api_totals()[&0].requests, 3);
        assert_eq!(m.connection_counts(), (0, 2, 2, 0));
    }

    #[test]
    fn only_non_zero_error_codes_count() {
        let m = BrokerMetrics::default();
        m.errors_answered(0, [0, 0]);
        assert!(m.error_totals().is_empty());
        m.errors_answered(0, [6, 0, 6, 3]);
        m.errors_answered(1, [6]);
        let e = m.error_totals();
        assert_eq!(e[&(0, 6)], 2);
        assert_eq!(e[&(0, 3)], 1);
        assert_eq!(e[&(1, 6)], 1);
    }
}
