//! Client quotas (Kafka's `ClientQuotaManager`, KIP-13/55/124/219): byte
//! rates for Produce (`producer_byte_rate`) and Fetch
//! (`consumer_byte_rate`), and the share of request handling time
//! (`request_percentage`), per user, client id or (user, client id), with
//! `<default>` entities, set with AlterClientQuotas and kept in the
//! metadata image (ClientQuotaRecord).
//!
//! The core is sans-IO: [`Rate`] is Kafka's `Rate` over a `SampledStat`
//! (`quota.window.num` samples of `quota.window.size.seconds` each), and
//! [`throttle_ms`] Kafka's throttle time, both with the time passed in;
//! [`QuotaLimits`] resolves a (user, client id) to its quota with Kafka's
//! precedence. [`ClientQuotas`] is the broker's shell around them: the
//! limits of the latest image and the rates of the clients seen, behind
//! locks. A broker without any quota pays one atomic load per request.
//!
//! Enforcement is Kafka's (KIP-219): the response carries
//! `throttle_time_ms` and the connection reads nothing more until that
//! time has passed ([`ConnectionThrottle`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fjord_metadata::MetadataImage;
use parking_lot::{Mutex, RwLock};

/// Quota entity types (Kafka's `ClientQuotaEntity`).
pub const ENTITY_USER: &str = "user";
pub const ENTITY_CLIENT_ID: &str = "client-id";
pub const ENTITY_IP: &str = "ip";

/// Quota keys (Kafka's `QuotaConfig`).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// Kafka drops the sensors of a client idle for an hour.
const SENSOR_IDLE_EXPIRY_MS: u64 = 3_600_000;
/// How often idle sensors are looked for.
const SENSOR_PURGE_INTERVAL_MS: u64 = 60_000;

/// What a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes of Produce requests per second.
    Produce,
    /// Bytes of Fetch responses per second.
    Fetch,
    /// Request handling time, in percent of one thread (100 = one thread).
    Request,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    /// The quota key that sets it.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    fn index(self) -> usize {
        match self {
            QuotaKind::Produce => 0,
            QuotaKind::Fetch => 1,
            QuotaKind::Request => 2,
        }
    }
}

/// `quota.window.num` and `quota.window.size.seconds` (11 and 1 by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    pub samples: u32,
    pub window_ms: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            samples: 11,
            window_ms: 1000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// Kafka's `Rate` over a `SampledStat` of `SampledTotal`s: a ring of
/// samples, each the total recorded in one window; the rate is their sum
/// over the time they span, counted as at least `samples - 1` whole
/// windows (so one early burst does not look like an enormous rate).
#[derive(Clone, Debug, Default)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
    last_record_ms: u64,
}

impl Rate {
    /// When a value was last recorded (0: never).
    pub fn last_record_ms(&self) -> u64 {
        self.last_record_ms
    }

    /// Adds `value` at `now_ms` (Kafka's `SampledStat.record`).
    pub fn record(&mut self, cfg: WindowConfig, value: f64, now_ms: u64) {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start_ms: now_ms,
                value: 0.0,
            });
            self.current = 0;
        }
        let cur = self.samples[self.current];
        if now_ms.saturating_sub(cur.start_ms) >= cfg.window_ms {
            // Advance to the next sample, reusing the oldest once all exist.
            self.current = (self.current + 1) % cfg.samples.max(1) as usize;
            let fresh = Sample {
                start_ms: now_ms,
                value: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
                self.current = self.samples.len() - 1;
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
        self.last_record_ms = now_ms;
    }

    /// Samples older than all the windows are emptied and restarted at
    /// `now_ms` (Kafka's `purgeObsoleteSamples`).
    fn purge(&mut self, cfg: WindowConfig, now_ms: u64) {
        let expire = u64::from(cfg.samples) * cfg.window_ms;
        for s in &mut self.samples {
            if now_ms.saturating_sub(s.start_ms) >= expire {
                *s = Sample {
                    start_ms: now_ms,
                    value: 0.0,
                };
            }
        }
    }

    /// The time the rate is measured over (Kafka's `Rate.windowSize`): from
    /// the oldest sample to now, at least `samples - 1` whole windows, at
    /// least 1 ms.
    pub fn window_ms(&mut self, cfg: WindowConfig, now_ms: u64) -> u64 {
        self.purge(cfg, now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / cfg.window_ms.max(1);
        let min_full = u64::from(cfg.samples.saturating_sub(1));
        if full < min_full {
            elapsed += (min_full - full) * cfg.window_ms;
        }
        elapsed.max(1)
    }

    /// The rate per second at `now_ms`.
    pub fn measure(&mut self, cfg: WindowConfig, now_ms: u64) -> f64 {
        let window = self.window_ms(cfg, now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total * 1000.0 / window as f64
    }

    /// Records `value` and returns how long the client must wait to bring
    /// its rate back to `bound` (0 within the quota): Kafka's
    /// `recordAndGetThrottleTimeMs`, which records first and checks after.
    pub fn record_and_throttle(
        &mut self,
        cfg: WindowConfig,
        value: f64,
        bound: f64,
        now_ms: u64,
    ) -> u64 {
        self.record(cfg, value, now_ms);
        let observed = self.measure(cfg, now_ms);
        if observed <= bound {
            return 0;
        }
        throttle_ms(observed, bound, self.window_ms(cfg, now_ms))
    }
}

/// Kafka's throttle time: with an observed rate O over a window W and a
/// quota T, the delay X that brings O * W / (W + X) down to T, that is
/// X = (O - T) / T * W, rounded.
pub fn throttle_ms(observed: f64, bound: f64, window_ms: u64) -> u64 {
    if observed <= bound {
        return 0;
    }
    if bound <= 0.0 {
        // A zero quota: as long as the whole window (Kafka divides by
        // zero and throttles for as long as an int holds).
        return i32::MAX as u64;
    }
    let x = (observed - bound) / bound * window_ms as f64;
    if x.is_finite() {
        x.round().min(i32::MAX as f64) as u64
    } else {
        i32::MAX as u64
    }
}

/// One side of a quota entity: absent, `<default>`, or a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Part {
    Absent,
    Default,
    Named(String),
}

impl Part {
    fn of(name: Option<&Option<String>>) -> Part {
        match name {
            None => Part::Absent,
            Some(None) => Part::Default,
            Some(Some(n)) => Part::Named(n.clone()),
        }
    }
}

/// Where a client's usage is counted: the (user, client id) of the quota
/// entity that applies, a side left empty when the entity does not name it
/// (all clients of a user with a user quota share one rate, as in Kafka).
pub type SensorKey = (String, String);

/// The quotas of one image, for enforcement: per kind, (user, client id)
/// entity to bound. IP entities and other keys are not enforced here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaLimits {
    by_kind: [HashMap<(Part, Part), f64>; 3],
}

impl QuotaLimits {
    pub fn from_image(image: &MetadataImage) -> QuotaLimits {
        let mut limits = QuotaLimits::default();
        for (entity, values) in image.client_quotas() {
            if entity.contains_key(ENTITY_IP)
                || entity
                    .keys()
                    .any(|t| t != ENTITY_USER && t != ENTITY_CLIENT_ID)
            {
                continue;
            }
            let user = Part::of(entity.get(ENTITY_USER));
            let client = Part::of(entity.get(ENTITY_CLIENT_ID));
            if user == Part::Absent && client == Part::Absent {
                continue;
            }
            for kind in QuotaKind::ALL {
                if let Some(v) = values.get(kind.key()) {
                    limits.by_kind[kind.index()].insert((user.clone(), client.clone()), *v);
                }
            }
        }
        limits
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.iter().all(HashMap::is_empty)
    }

    /// The quota of `kind` for `user` (the principal's name) and
    /// `client_id`, and where its usage is counted, with Kafka's
    /// precedence: (user, client id), (user, default client), user,
    /// (default user, client id), (default user, default client), default
    /// user, client id, default client id. `None`: no quota.
    pub fn resolve(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
    ) -> Option<(f64, SensorKey)> {
        let map = &self.by_kind[kind.index()];
        if map.is_empty() {
            return None;
        }
        let u = || Part::Named(user.to_string());
        let c = || Part::Named(client_id.to_string());
        // Each level, and which names its rate is counted under.
        let (both, user_only, client_only) = (Counted::Both, Counted::User, Counted::Client);
        let order: [(Part, Part, Counted); 8] = [
            (u(), c(), both),
            (u(), Part::Default, both),
            (u(), Part::Absent, user_only),
            (Part::Default, c(), both),
            (Part::Default, Part::Default, both),
            (Part::Default, Part::Absent, user_only),
            (Part::Absent, c(), client_only),
            (Part::Absent, Part::Default, client_only),
        ];
        order
            .into_iter()
            .find_map(|(user_part, client_part, counted)| {
                map.get(&(user_part, client_part)).map(|bound| {
                    let key = match counted {
                        Counted::Both => (user.to_string(), client_id.to_string()),
                        Counted::User => (user.to_string(), String::new()),
                        Counted::Client => (String::new(), client_id.to_string()),
                    };
                    (*bound, key)
                })
            })
    }
}

/// The names a level's usage is counted under.
#[derive(Clone, Copy)]
enum Counted {
    Both,
    User,
    Client,
}

/// A client's rates, and when it last recorded (for expiry).
#[derive(Default)]
struct Sensors {
    rates: HashMap<(QuotaKind, SensorKey), Rate>,
    last_purge_ms: u64,
}

/// The broker's quotas: the limits of the latest image and the rates of
/// the clients that have a quota.
pub struct ClientQuotas {
    window: WindowConfig,
    /// Some quota exists: without one, nothing else is looked at.
    enabled: AtomicBool,
    limits: RwLock<Arc<QuotaLimits>>,
    sensors: Mutex<Sensors>,
}

impl ClientQuotas {
    pub fn new(window: WindowConfig) -> ClientQuotas {
        ClientQuotas {
            window,
            enabled: AtomicBool::new(false),
            limits: RwLock::new(Arc::default()),
            sensors: Mutex::new(Sensors::default()),
        }
    }

    /// Whether any client quota is set.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Follows the quotas of `image`.
    pub fn update(&self, image: &MetadataImage) {
        let limits = QuotaLimits::from_image(image);
        let enabled = !limits.is_empty();
        *self.limits.write() = Arc::new(limits);
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// The most of `kind` that `user` and `client_id` may use without
    /// being throttled whatever came before (Kafka's
    /// `getMaxValueInQuotaWindow`: the quota times the whole windows);
    /// `None` without a quota.
    pub fn max_in_window(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<f64> {
        if !self.enabled() {
            return None;
        }
        let (bound, _) = self.limits.read().resolve(kind, user, client_id)?;
        let windows = f64::from(self.window.samples.saturating_sub(1).max(1));
        Some(bound * windows * self.window.window_ms as f64 / 1000.0)
    }

    /// Records `value` of `kind` for `user` and `client_id` at `now_ms`;
    /// the throttle time in ms (0: within the quota, or no quota).
    pub fn record(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: u64,
    ) -> u64 {
        if !self.enabled() {
            return 0;
        }
        let Some((bound, key)) = self.limits.read().resolve(kind, user, client_id) else {
            return 0;
        };
        let mut sensors = self.sensors.lock();
        if now_ms.saturating_sub(sensors.last_purge_ms) >= SENSOR_PURGE_INTERVAL_MS {
            sensors
                .rates
                .retain(|_, r| now_ms.saturating_sub(r.last_record_ms) < SENSOR_IDLE_EXPIRY_MS);
            sensors.last_purge_ms = now_ms;
        }
        sensors
            .rates
            .entry((kind, key))
            .or_default()
            .record_and_throttle(self.window, value, bound, now_ms)
    }

    /// Takes back `value` of `kind` recorded at `now_ms` for `user` and
    /// `client_id` (Kafka's `unrecordQuotaSensor`: a throttled Fetch sends
    /// none of the bytes it recorded).
    pub fn unrecord(&self, kind: QuotaKind, user: &str, client_id: &str, value: f64, now_ms: u64) {
        if !self.enabled() {
            return;
        }
        let Some((_, key)) = self.limits.read().resolve(kind, user, client_id) else {
            return;
        };
        if let Some(rate) = self.sensors.lock().rates.get_mut(&(kind, key)) {
            rate.record(self.window, -value, now_ms);
        }
    }
}

/// When a connection may be read again (wall-clock ms; 0: not muted).
#[derive(Debug, Default)]
pub struct ConnectionThrottle {
    until_ms: AtomicU64,
}

impl ConnectionThrottle {
    /// Mutes the connection for `ms` from `now_ms` (a later end wins).
    pub fn throttle(&self, now_ms: u64, ms: u64) {
        if ms > 0 {
            self.until_ms
                .fetch_max(now_ms.saturating_add(ms), Ordering::Relaxed);
        }
    }

    /// How long the connection stays muted after `now_ms`.
    pub fn muted_for_ms(&self, now_ms: u64) -> u64 {
        self.until_ms().saturating_sub(now_ms)
    }

    /// The end of the mute (0: never muted), without reading the clock.
    pub fn until_ms(&self) -> u64 {
        self.until_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use fjord_metadata::MetadataDelta;
    use fjord_protocol::metadata_records::client_quota_record::{ClientQuotaRecord, EntityData};
    use fjord_protocol::metadata_records::MetadataRecord;

    use super::*;

    const CFG: WindowConfig = WindowConfig {
        samples: 11,
        window_ms: 1000,
    };

    #[test]
    fn the_rate_counts_at_least_ten_whole_windows() {
        let mut r = Rate::default();
        r.record(CFG, 10_000.0, 0);
        // One early burst: spread over 10 windows, not over 1 ms.
        assert_eq!(r.window_ms(CFG, 0), 10_000);
        assert_eq!(r.measure(CFG, 0), 1_000.0);
        // After 15 s the oldest sample is 15 s old.
        for t in 1..=15 {
            r.record(CFG, 0.0, t * 1000);
        }
        // Samples older than 11 windows were restarted; the burst is gone.
        assert_eq!(r.measure(CFG, 15_000), 0.0);
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_quota() {
        // O = 2T over W = 10 s: wait another 10 s.
        assert_eq!(throttle_ms(2000.0, 1000.0, 10_000), 10_000);
        assert_eq!(throttle_ms(1000.0, 1000.0, 10_000), 0);
        assert_eq!(throttle_ms(1500.0, 1000.0, 10_000), 5_000);
        assert_eq!(throttle_ms(1.0, 0.0, 10_000), i32::MAX as u64);
    }

    #[test]
    fn a_steady_producer_over_its_quota_is_throttled_to_it() {
        // 1 KiB/s quota; a client that sends 1 KiB every 100 ms (10 KiB/s)
        // and honours each throttle time ends near the quota.
        let mut r = Rate::default();
        let quota = 1024.0;
        let mut now = 0u64;
        let mut sent = 0.0;
        let mut throttled = 0;
        while now < 60_000 {
            let t = r.record_and_throttle(CFG, 1024.0, quota, now);
            sent += 1024.0;
            if t > 0 {
                throttled += 1;
            }
            now += 100 + t;
        }
        let rate = sent * 1000.0 / now as f64;
        assert!(throttled > 0);
        assert!(rate < 2.0 * quota && rate > 0.5 * quota, "rate {rate}");
        // Within the quota nothing is throttled.
        let mut r = Rate::default();
        for i in 0..100 {
            assert_eq!(r.record_and_throttle(CFG, 100.0, quota, i * 1000), 0);
        }
    }

    fn quota(entity: &[(&str, Option<&str>)], key: &str, value: f64) -> MetadataRecord {
        MetadataRecord::ClientQuota(ClientQuotaRecord {
            entity: entity
                .iter()
                .map(|(t, n)| EntityData {
                    entity_type: t.to_string(),
                    entity_name: n.map(str::to_string),
                    ..Default::default()
                })
                .collect(),
            key: key.to_string(),
            value,
            remove: false,
            ..Default::default()
        })
    }

    fn image(records: &[MetadataRecord]) -> MetadataImage {
        let mut d = MetadataDelta::new(&MetadataImage::empty("c"));
        for r in records {
            d.replay(r).unwrap();
        }
        d.apply()
    }

    #[test]
    fn the_most_specific_entity_wins_as_in_kafka() {
        let p = PRODUCER_BYTE_RATE;
        let all = [
            quota(
                &[("user", Some("alice")), ("client-id", Some("app"))],
                p,
                1.0,
            ),
            quota(&[("user", Some("alice")), ("client-id", None)], p, 2.0),
            quota(&[("user", Some("alice"))], p, 3.0),
            quota(&[("user", None), ("client-id", Some("app"))], p, 4.0),
            quota(&[("user", None), ("client-id", None)], p, 5.0),
            quota(&[("user", None)], p, 6.0),
            quota(&[("client-id", Some("app"))], p, 7.0),
            quota(&[("client-id", None)], p, 8.0),
            quota(&[("ip", Some("1.2.3.4"))], CONNECTION_CREATION_RATE, 9.0),
        ];
        let both = |u: &str, c: &str| (u.to_string(), c.to_string());
        let expected = [
            (1.0, both("alice", "app")),
            (2.0, both("alice", "other")),
            (3.0, both("alice", "")),
            (4.0, both("bob", "app")),
            (5.0, both("bob", "other")),
            (6.0, both("bob", "")),
            (7.0, both("", "app")),
            (8.0, both("", "other")),
        ];
        // Remove the most specific one at a time: the next one applies.
        for (i, (bound, key)) in expected.iter().enumerate() {
            let limits = QuotaLimits::from_image(&image(&all[i..]));
            let (user, client) = match i {
                0 | 3 | 6 => (if i == 0 { "alice" } else { "bob" }, "app"),
                1 | 2 => ("alice", "other"),
                _ => ("bob", "other"),
            };
            let got = limits.resolve(QuotaKind::Produce, user, client);
            assert_eq!(got, Some((*bound, key.clone())), "level {i}");
            assert_eq!(limits.resolve(QuotaKind::Fetch, user, client), None);
        }
        let none = QuotaLimits::from_image(&image(&all[8..]));
        assert!(none.is_empty());
        assert_eq!(none.resolve(QuotaKind::Produce, "a", "b"), None);
    }

    #[test]
    fn removing_the_last_quota_disables_enforcement() {
        let q = ClientQuotas::new(CFG);
        assert!(!q.enabled());
        assert_eq!(q.record(QuotaKind::Produce, "u", "c", 1e12, 0), 0);
        let set = quota(&[("client-id", Some("c"))], CONSUMER_BYTE_RATE, 100.0);
        let img = image(std::slice::from_ref(&set));
        q.update(&img);
        assert!(q.enabled());
        assert_eq!(q.record(QuotaKind::Produce, "u", "c", 1e6, 0), 0);
        assert!(q.record(QuotaKind::Fetch, "u", "c", 1e6, 0) > 0);
        // 100 B/s over 10 whole windows.
        assert_eq!(q.max_in_window(QuotaKind::Fetch, "u", "c"), Some(1000.0));
        assert_eq!(q.max_in_window(QuotaKind::Produce, "u", "c"), None);
        let MetadataRecord::ClientQuota(mut removal) = set else {
            unreachable!()
        };
        removal.remove = true;
        let mut d = MetadataDelta::new(&img);
        d.replay(&MetadataRecord::ClientQuota(removal)).unwrap();
        let img = d.apply();
        assert!(img.client_quotas().is_empty());
        assert_eq!(img.to_records(), Vec::<MetadataRecord>::new());
        q.update(&img);
        assert!(!q.enabled());
    }

    #[test]
    fn an_unrecorded_fetch_no_longer_counts() {
        let q = ClientQuotas::new(CFG);
        q.update(&image(&[quota(
            &[("client-id", Some("c"))],
            CONSUMER_BYTE_RATE,
            100.0,
        )]));
        // 500 B within 10 windows of 100 B/s: not throttled; 1000 B more is.
        assert_eq!(q.record(QuotaKind::Fetch, "u", "c", 500.0, 0), 0);
        assert!(q.record(QuotaKind::Fetch, "u", "c", 1000.0, 0) > 0);
        // Taken back (the throttled fetch sent nothing): 500 B more fits.
        q.unrecord(QuotaKind::Fetch, "u", "c", 1000.0, 0);
        assert_eq!(q.record(QuotaKind::Fetch, "u", "c", 500.0, 0), 0);
        // Without a quota there is nothing to take back.
        q.unrecord(QuotaKind::Produce, "u", "c", 1000.0, 0);
        assert_eq!(q.record(QuotaKind::Produce, "u", "c", 1e9, 0), 0);
    }

    #[test]
    fn a_muted_connection_waits_for_the_latest_end() {
        let t = ConnectionThrottle::default();
        assert_eq!(t.muted_for_ms(100), 0);
        t.throttle(100, 50);
        t.throttle(100, 20);
        assert_eq!(t.muted_for_ms(120), 30);
        assert_eq!(t.muted_for_ms(200), 0);
    }
}
