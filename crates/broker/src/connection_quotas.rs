//! Connection limits, as Kafka's `SocketServer.ConnectionQuotas` applies
//! them when it accepts a connection:
//!
//! - `max.connections`: connections open on the broker. Once reached, the
//!   listeners accept nothing more until one closes (Kafka's acceptor
//!   blocks; a client waits in the listen backlog).
//! - `max.connection.creation.rate`: connections accepted per second,
//!   broker-wide. Over it, the listener waits before it goes on (the
//!   acceptor is throttled, nothing is refused); the wait is at most one
//!   quota window, as Kafka bounds it.
//! - `connection_creation_rate` (AlterClientQuotas, entity type `ip`,
//!   per address or `<default>`): a connection from an address over its
//!   rate is not served and is closed once the throttle time has passed
//!   (Kafka's `ConnectionThrottledException` and delayed close); it does
//!   not count against the address's rate.
//! - `max.connections.per.ip` and `max.connections.per.ip.overrides`
//!   (`host:N` or `IP:N`, comma-separated): a connection from an address
//!   that has that many open is closed at once (Kafka's
//!   `TooManyConnectionsException`).
//!
//! The first two and the per-IP limits are dynamic (IncrementalAlterConfigs
//! on the broker or the cluster-wide default); the rates are measured as
//! client quotas are ([`crate::quotas::Rate`], `quota.window.num` windows of
//! `quota.window.size.seconds`).
//!
//! `queued.max.request.bytes` (read-only, as in Kafka; -1, the default, is
//! unbounded) is the broker-wide pool of request bytes: a connection takes
//! its frame's size from it before it reads the frame's body, and waits
//! (reads nothing) while the pool is empty. A Produce gives it back once
//! answered, any other request once dispatched (Kafka keeps the buffer of
//! requests that reference it, records, until handled).
//!
//! [`ConnectionQuotas`] is the sans-IO core (time passed in);
//! [`Connections`] is the broker's shell around it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use fjord_metadata::MetadataImage;
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};

use crate::quotas::{Rate, WindowConfig, CONNECTION_CREATION_RATE, ENTITY_IP};

/// Kafka's "no limit" for connection counts and rates (`Int.MaxValue`).
pub const UNLIMITED: i32 = i32::MAX;

/// Broker config names.
pub const MAX_CONNECTIONS: &str = "max.connections";
pub const MAX_CONNECTIONS_PER_IP: &str = "max.connections.per.ip";
pub const MAX_CONNECTIONS_PER_IP_OVERRIDES: &str = "max.connections.per.ip.overrides";
pub const MAX_CONNECTION_CREATION_RATE: &str = "max.connection.creation.rate";
pub const QUEUED_MAX_REQUEST_BYTES: &str = "queued.max.request.bytes";

/// The dynamic connection configs (Kafka's `SocketServer.ReconfigurableConfigs`).
pub const DYNAMIC_CONNECTION_CONFIGS: [&str; 4] = [
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
    MAX_CONNECTIONS_PER_IP_OVERRIDES,
    MAX_CONNECTION_CREATION_RATE,
];

/// The connection configs in force (static, or dynamic over them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_ip: i32,
    /// `max.connections.per.ip.overrides` as written (`host:N,IP:N`).
    pub per_ip_overrides: String,
    pub max_creation_rate: i32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: fjord_model::limits::CONNECTIONS_MAX_DEFAULT,
            max_per_ip: UNLIMITED,
            per_ip_overrides: String::new(),
            max_creation_rate: UNLIMITED,
        }
    }
}

/// `max.connections.per.ip.overrides` read as Kafka's `parseCsvMap` reads
/// it: comma-separated `host:N` (the last `:` separates, so an IPv6 address
/// works), each host a valid host name or address, each N an int >= 0.
pub fn parse_overrides(value: &str) -> Result<Vec<(String, i32)>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((host, n)) = item.rsplit_once(':') else {
            return Err(format!("{item} is not of the form host:count"));
        };
        let host = host.trim();
        let n: i32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{} is not a connection count", n.trim()))?;
        if n < 0 {
            return Err(format!("{n} is not a connection count"));
        }
        let valid_name = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if host.parse::<IpAddr>().is_err() && !valid_name {
            return Err(format!(
                "{MAX_CONNECTIONS_PER_IP_OVERRIDES} contains invalid addresses : {host}"
            ));
        }
        out.push((host.to_string(), n));
    }
    Ok(out)
}

impl ConnectionLimits {
    /// Sets one of [`DYNAMIC_CONNECTION_CONFIGS`] from its text.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let int = |min: i32| -> Result<i32, String> {
            let v: i32 = value.trim().parse().map_err(|_| {
                format!("Invalid value {value} for configuration {name}: Not a number of type INT")
            })?;
            if v < min {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: Value must be at least {min}"
                ));
            }
            Ok(v)
        };
        match name {
            MAX_CONNECTIONS => self.max_connections = int(1)? as usize,
            MAX_CONNECTIONS_PER_IP => self.max_per_ip = int(0)?,
            MAX_CONNECTIONS_PER_IP_OVERRIDES => {
                parse_overrides(value)?;
                self.per_ip_overrides = value.trim().to_string();
            }
            MAX_CONNECTION_CREATION_RATE => self.max_creation_rate = int(0)?,
            _ => return Err(format!("{name} is not a connection config")),
        }
        Ok(())
    }

    /// Kafka's check across them: no connection per address at all only
    /// with overrides.
    pub fn check(&self) -> Result<(), String> {
        if self.max_per_ip == 0 && self.per_ip_overrides.trim().is_empty() {
            return Err(format!(
                "{MAX_CONNECTIONS_PER_IP} can be set to zero only if {MAX_CONNECTIONS_PER_IP_OVERRIDES} property is set."
            ));
        }
        Ok(())
    }

    /// The overrides by address, host names resolved now (Kafka resolves
    /// them with `InetAddress.getByName` when the config changes). A name
    /// that does not resolve overrides nothing.
    pub fn resolve_overrides(&self) -> HashMap<IpAddr, i32> {
        use std::net::ToSocketAddrs as _;
        let mut out = HashMap::new();
        for (host, n) in parse_overrides(&self.per_ip_overrides).unwrap_or_default() {
            if let Ok(ip) = host.parse::<IpAddr>() {
                out.insert(ip, n);
                continue;
            }
            match (host.as_str(), 0).to_socket_addrs() {
                Ok(addrs) => {
                    for a in addrs {
                        out.insert(a.ip(), n);
                    }
                }
                Err(e) => tracing::warn!("{MAX_CONNECTIONS_PER_IP_OVERRIDES}: {host}: {e}"),
            }
        }
        out
    }
}

/// What becomes of a connection just accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Served; [`ConnectionQuotas::release`] once closed.
    Accepted,
    /// Its address has `max` connections open already: closed at once.
    TooMany { max: i32 },
    /// Its address is over its `connection_creation_rate`: closed after
    /// `ms` without being served.
    Throttled { ms: u64 },
}

/// The connection limits and counts (sans-IO: time is passed in).
#[derive(Debug)]
pub struct ConnectionQuotas {
    window: WindowConfig,
    limits: ConnectionLimits,
    overrides: HashMap<IpAddr, i32>,
    counts: HashMap<IpAddr, usize>,
    total: usize,
    broker_rate: Rate,
    ip_rate_default: Option<f64>,
    ip_rates: HashMap<IpAddr, f64>,
    ip_sensors: HashMap<IpAddr, Rate>,
    last_purge_ms: u64,
}

impl ConnectionQuotas {
    pub fn new(window: WindowConfig, limits: ConnectionLimits) -> ConnectionQuotas {
        let overrides = limits.resolve_overrides();
        ConnectionQuotas {
            window,
            limits,
            overrides,
            counts: HashMap::new(),
            total: 0,
            broker_rate: Rate::default(),
            ip_rate_default: None,
            ip_rates: HashMap::new(),
            ip_sensors: HashMap::new(),
            last_purge_ms: 0,
        }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// New limits (overrides already resolved); connections open stay.
    pub fn set_limits(&mut self, limits: ConnectionLimits, overrides: HashMap<IpAddr, i32>) {
        self.limits = limits;
        self.overrides = overrides;
    }

    /// `connection_creation_rate` of the `<default>` ip entity and of
    /// named addresses (Kafka truncates the quota to an int).
    pub fn set_ip_rates(&mut self, default: Option<f64>, per_ip: HashMap<IpAddr, f64>) {
        self.ip_rate_default = default.map(f64::trunc);
        self.ip_rates = per_ip.into_iter().map(|(k, v)| (k, v.trunc())).collect();
    }

    /// Connections open.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections open from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts.get(&ip).copied().unwrap_or(0)
    }

    /// Whether another connection may be accepted (`max.connections`).
    pub fn slot_available(&self) -> bool {
        self.total < self.limits.max_connections
    }

    /// The most a throttle lasts (Kafka: one quota window).
    fn max_throttle_ms(&self) -> u64 {
        self.window.window_ms
    }

    /// Records a connection in the broker-wide creation rate and returns
    /// how long to wait before going on (Kafka's
    /// `recordConnectionAndGetThrottleTimeMs`; the connection stays
    /// recorded).
    pub fn record_connection(&mut self, now_ms: u64) -> u64 {
        let bound = self.limits.max_creation_rate;
        if bound == UNLIMITED {
            return 0;
        }
        let ms = self
            .broker_rate
            .record_and_throttle(self.window, 1.0, f64::from(bound), now_ms);
        ms.min(self.max_throttle_ms())
    }

    /// The per-address checks of Kafka's `ConnectionQuotas.inc`: the
    /// address's creation rate, then its count. An accepted connection
    /// is counted until [`Self::release`].
    pub fn admit(&mut self, ip: IpAddr, now_ms: u64) -> Admission {
        self.purge_sensors(now_ms);
        if let Some(bound) = self.ip_rates.get(&ip).copied().or(self.ip_rate_default) {
            let sensor = self.ip_sensors.entry(ip).or_default();
            let ms = sensor.record_and_throttle(self.window, 1.0, bound, now_ms);
            if ms > 0 {
                // Not accepted: counts neither for the address nor broker-wide.
                sensor.record(self.window, -1.0, now_ms);
                if self.limits.max_creation_rate != UNLIMITED {
                    self.broker_rate.record(self.window, -1.0, now_ms);
                }
                return Admission::Throttled {
                    ms: ms.min(self.max_throttle_ms()),
                };
            }
        }
        let max = self
            .overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.limits.max_per_ip);
        let count = self.count(ip);
        if i64::try_from(count).unwrap_or(i64::MAX) >= i64::from(max) {
            return Admission::TooMany { max };
        }
        *self.counts.entry(ip).or_insert(0) += 1;
        self.total += 1;
        Admission::Accepted
    }

    /// An accepted connection from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&ip);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Rates of addresses that made no connection for all the windows are
    /// 0: their sensors go (one per address seen is otherwise kept).
    fn purge_sensors(&mut self, now_ms: u64) {
        let span = u64::from(self.window.samples) * self.window.window_ms;
        if now_ms.saturating_sub(self.last_purge_ms) < self.window.window_ms {
            return;
        }
        self.last_purge_ms = now_ms;
        self.ip_sensors
            .retain(|_, r| now_ms.saturating_sub(r.last_record_ms()) < span);
    }
}

/// `connection_creation_rate` quotas of an image: the `<default>` ip
/// entity's and each named address's.
pub fn ip_rates(image: &MetadataImage) -> (Option<f64>, HashMap<IpAddr, f64>) {
    let mut default = None;
    let mut per_ip = HashMap::new();
    for (entity, values) in image.client_quotas() {
        if entity.len() != 1 {
            continue;
        }
        let (Some(name), Some(rate)) =
            (entity.get(ENTITY_IP), values.get(CONNECTION_CREATION_RATE))
        else {
            continue;
        };
        match name {
            None => default = Some(*rate),
            Some(ip) => {
                if let Ok(ip) = ip.parse::<IpAddr>() {
                    per_ip.insert(ip, *rate);
                }
            }
        }
    }
    (default, per_ip)
}

/// The broker's connection limits and its request-bytes pool.
#[derive(Debug)]
pub struct Connections {
    quotas: Mutex<ConnectionQuotas>,
    /// Wakes listeners waiting for a connection slot.
    freed: Notify,
    /// `queued.max.request.bytes` when set: its size and the pool.
    request_pool: Option<(usize, Arc<Semaphore>)>,
}

impl Connections {
    pub fn new(
        window: WindowConfig,
        limits: ConnectionLimits,
        queued_max_request_bytes: Option<usize>,
    ) -> Connections {
        Connections {
            quotas: Mutex::new(ConnectionQuotas::new(window, limits)),
            freed: Notify::new(),
            request_pool: queued_max_request_bytes.map(|n| (n, Arc::new(Semaphore::new(n)))),
        }
    }

    /// New limits: overrides are resolved outside the lock.
    pub fn set_limits(&self, limits: ConnectionLimits) {
        let mut q = self.quotas.lock();
        if *q.limits() == limits {
            return;
        }
        drop(q);
        let overrides = limits.resolve_overrides();
        tracing::info!(?limits, "connection limits updated");
        q = self.quotas.lock();
        q.set_limits(limits, overrides);
        drop(q);
        // `max.connections` may have grown.
        self.freed.notify_waiters();
    }

    /// Follows the `connection_creation_rate` quotas of `image`.
    pub fn update_ip_rates(&self, image: &MetadataImage) {
        let (default, per_ip) = ip_rates(image);
        self.quotas.lock().set_ip_rates(default, per_ip);
    }

    /// Waits until `max.connections` lets another connection in.
    pub async fn wait_for_slot(&self) {
        loop {
            let freed = self.freed.notified();
            if self.quotas.lock().slot_available() {
                return;
            }
            freed.await;
        }
    }

    pub fn record_connection(&self, now_ms: u64) -> u64 {
        self.quotas.lock().record_connection(now_ms)
    }

    /// [`ConnectionQuotas::admit`]; an accepted connection comes with the
    /// slot that releases it when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now_ms: u64) -> Result<ConnectionSlot, Admission> {
        match self.quotas.lock().admit(ip, now_ms) {
            Admission::Accepted => Ok(ConnectionSlot {
                connections: self.clone(),
                ip,
            }),
            other => Err(other),
        }
    }

    /// Connections open (all listeners).
    pub fn open(&self) -> usize {
        self.quotas.lock().total()
    }

    /// The request-bytes pool (`queued.max.request.bytes`) and its size.
    pub fn request_pool(&self) -> Option<(usize, &Arc<Semaphore>)> {
        self.request_pool.as_ref().map(|(n, s)| (*n, s))
    }
}

/// An accepted connection's place in the counts; released when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.quotas.lock().release(self.ip);
        self.connections.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn quotas(limits: ConnectionLimits) -> ConnectionQuotas {
        ConnectionQuotas::new(WindowConfig::default(), limits)
    }

    #[test]
    fn overrides_parse_as_kafka_reads_them() {
        assert_eq!(
            parse_overrides(" localhost:3, 127.0.0.1:200 ,::1:5").unwrap(),
            vec![
                ("localhost".to_string(), 3),
                ("127.0.0.1".to_string(), 200),
                ("::1".to_string(), 5)
            ]
        );
        assert_eq!(parse_overrides("").unwrap(), vec![]);
        assert!(parse_overrides("localhost").is_err());
        assert!(parse_overrides("localhost:x").is_err());
        assert!(parse_overrides("localhost:-1").is_err());
        assert!(parse_overrides("bad host!:1").is_err());
        let mut l = ConnectionLimits::default();
        l.set(MAX_CONNECTIONS_PER_IP, "0").unwrap();
        assert!(l.check().is_err());
        l.set(MAX_CONNECTIONS_PER_IP_OVERRIDES, "127.0.0.1:2")
            .unwrap();
        assert!(l.check().is_ok());
        assert!(l.set(MAX_CONNECTIONS_PER_IP, "-1").is_err());
        assert!(l.set(MAX_CONNECTION_CREATION_RATE, "many").is_err());
    }

    #[test]
    fn an_address_at_its_limit_is_refused_until_one_closes() {
        let mut l = ConnectionLimits::default();
        l.set(MAX_CONNECTIONS_PER_IP, "2").unwrap();
        l.set(MAX_CONNECTIONS_PER_IP_OVERRIDES, "10.0.0.1:0,localhost:3")
            .unwrap();
        let mut q = quotas(l);
        let a = ip("10.0.0.2");
        assert_eq!(q.admit(a, 0), Admission::Accepted);
        assert_eq!(q.admit(a, 0), Admission::Accepted);
        assert_eq!(q.admit(a, 0), Admission::TooMany { max: 2 });
        assert_eq!(q.count(a), 2);
        // Another address has its own count; an override wins.
        assert_eq!(q.admit(ip("10.0.0.1"), 0), Admission::TooMany { max: 0 });
        for _ in 0..3 {
            assert_eq!(q.admit(ip("127.0.0.1"), 0), Admission::Accepted);
        }
        assert_eq!(q.admit(ip("127.0.0.1"), 0), Admission::TooMany { max: 3 });
        q.release(a);
        assert_eq!(q.admit(a, 0), Admission::Accepted);
        assert_eq!(q.total(), 5);
        // Releasing what was never counted changes nothing.
        q.release(ip("10.9.9.9"));
        assert_eq!(q.total(), 5);
    }

    #[test]
    fn dynamic_values_layer_over_the_static_ones() {
        let mut config = crate::BrokerConfig::default();
        config.set(MAX_CONNECTIONS_PER_IP, "50").unwrap();
        config.set(MAX_CONNECTION_CREATION_RATE, "7").unwrap();
        let mut dynamic = crate::config::DynamicBrokerConfigs::default();
        dynamic
            .cluster_default
            .insert(MAX_CONNECTIONS_PER_IP.into(), "10".into());
        dynamic
            .cluster_default
            .insert(MAX_CONNECTIONS_PER_IP_OVERRIDES.into(), "10.0.0.1:3".into());
        dynamic
            .broker
            .insert(MAX_CONNECTIONS_PER_IP.into(), "20".into());
        let limits = dynamic.connection_limits(&config).unwrap();
        assert_eq!(limits.max_per_ip, 20);
        assert_eq!(limits.per_ip_overrides, "10.0.0.1:3");
        assert_eq!(limits.max_creation_rate, 7);
        assert!(crate::config::is_dynamic_broker_config(
            MAX_CONNECTIONS_PER_IP
        ));
        assert!(!crate::config::is_dynamic_broker_config(
            QUEUED_MAX_REQUEST_BYTES
        ));
        // Kafka's check holds for the result: 0 only with overrides.
        dynamic
            .broker
            .insert(MAX_CONNECTIONS_PER_IP.into(), "0".into());
        assert!(dynamic.connection_limits(&config).is_ok());
        dynamic.cluster_default.clear();
        assert!(dynamic.connection_limits(&config).is_err());
        dynamic
            .broker
            .insert(MAX_CONNECTIONS_PER_IP.into(), "lots".into());
        assert!(dynamic.connection_limits(&config).is_err());
        // The static pool must hold a largest request.
        let mut c = crate::BrokerConfig::default();
        c.set("socket.request.max.bytes", "2048").unwrap();
        c.set(QUEUED_MAX_REQUEST_BYTES, "1024").unwrap();
        assert!(c.finish(false).is_err());
        c.set(QUEUED_MAX_REQUEST_BYTES, "-1").unwrap();
        assert!(c.finish(false).is_ok());
        assert_eq!(c.queued_max_request_bytes, None);
    }

    #[test]
    fn max_connections_is_broker_wide() {
        let mut l = ConnectionLimits::default();
        l.set(MAX_CONNECTIONS, "2").unwrap();
        let mut q = quotas(l);
        assert_eq!(q.admit(ip("10.0.0.1"), 0), Admission::Accepted);
        assert!(q.slot_available());
        assert_eq!(q.admit(ip("10.0.0.2"), 0), Admission::Accepted);
        assert!(!q.slot_available());
        q.release(ip("10.0.0.1"));
        assert!(q.slot_available());
    }

    #[test]
    fn an_address_over_its_rate_is_throttled_and_not_counted() {
        let mut q = quotas(ConnectionLimits::default());
        let a = ip("10.0.0.1");
        q.set_ip_rates(None, HashMap::from([(a, 2.0)]));
        // 2/s over 10 whole windows: 20 connections at once pass.
        let mut accepted = 0;
        let mut throttled = Vec::new();
        for _ in 0..30 {
            match q.admit(a, 1000) {
                Admission::Accepted => accepted += 1,
                Admission::Throttled { ms } => throttled.push(ms),
                Admission::TooMany { .. } => unreachable!(),
            }
        }
        assert_eq!(accepted, 20);
        assert_eq!(throttled.len(), 10);
        // The throttle is bounded by one window (Kafka's maxThrottleTimeMs).
        assert!(
            throttled.iter().all(|ms| *ms > 0 && *ms <= 1000),
            "{throttled:?}"
        );
        // Other addresses have no quota; a default applies to all unnamed ones.
        assert_eq!(q.admit(ip("10.0.0.2"), 1000), Admission::Accepted);
        // (Kafka truncates the quota to an int: 1.9 is 1/s.)
        q.set_ip_rates(Some(1.9), HashMap::new());
        let b = ip("10.0.0.3");
        let results: Vec<_> = (0..12).map(|_| q.admit(b, 1000)).collect();
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == Admission::Accepted)
                .count(),
            10,
            "{results:?}"
        );
        // The rate falls as time passes.
        assert_eq!(q.admit(b, 30_000), Admission::Accepted);
    }

    #[test]
    fn the_broker_rate_delays_and_keeps_the_connection() {
        let mut l = ConnectionLimits::default();
        l.set(MAX_CONNECTION_CREATION_RATE, "5").unwrap();
        let mut q = quotas(l);
        let delays: Vec<u64> = (0..60).map(|_| q.record_connection(0)).collect();
        assert!(delays[..50].iter().all(|d| *d == 0), "{delays:?}");
        assert!(
            delays[50..].iter().all(|d| *d > 0 && *d <= 1000),
            "{delays:?}"
        );
        let mut unlimited = quotas(ConnectionLimits::default());
        assert!((0..1000).all(|_| unlimited.record_connection(0) == 0));
    }
}
