//! Counters, the latency histogram, the live progress line and the summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// Largest latency the histograms hold (longer ones are recorded as this).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant decimal digits the histograms keep.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Bytes in the MB of "MB/s" (decimal, as Kafka's and librdkafka's tools print).
pub const BYTES_PER_MB: f64 = 1_000_000.0;

/// A histogram of latencies in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

/// Records `count` samples of `latency` into `h` (clamped to its range).
pub fn record(h: &mut Histogram<u64>, latency: Duration, count: u64) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(LATENCY_US_MAX);
    h.saturating_record_n(us.clamp(1, LATENCY_US_MAX), count);
}

/// Totals shared by the load tasks and the progress line.
pub struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
        }
    }
}

impl Stats {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn record_latency(&self, latency: Duration, count: u64) {
        record(&mut self.latency.lock(), latency, count);
    }

    /// Adds a task-local histogram (same bounds, so this cannot fail).
    pub fn merge(&self, h: &Histogram<u64>) {
        let _ = self.latency.lock().add(h);
    }

    fn p99_ms(&self) -> Option<f64> {
        let h = self.latency.lock();
        (!h.is_empty()).then(|| us_to_ms(h.value_at_quantile(0.99)))
    }

    /// Percentiles so far; `None` without samples.
    pub fn latency(&self, kind: &'static str) -> Option<Latency> {
        let h = self.latency.lock();
        if h.is_empty() {
            return None;
        }
        Some(Latency {
            kind,
            samples: h.len(),
            p50_ms: us_to_ms(h.value_at_quantile(0.50)),
            p99_ms: us_to_ms(h.value_at_quantile(0.99)),
            p999_ms: us_to_ms(h.value_at_quantile(0.999)),
            max_ms: us_to_ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Prints one line a second to stderr until aborted.
pub fn spawn_progress(
    label: &'static str,
    stats: Arc<Stats>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut last_records, mut last_bytes, mut last_at) = (0u64, 0u64, Instant::now());
        loop {
            tick.tick().await;
            let (records, bytes, now) = (stats.records(), stats.bytes(), Instant::now());
            let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
            let p99 = stats
                .p99_ms()
                .map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"));
            eprintln!(
                "{label} {:>4.0}s {:>12} records/s {:>9.1} MB/s  p99 {p99}  total {}",
                now.duration_since(started).as_secs_f64(),
                group_digits((records.saturating_sub(last_records)) as f64 / secs),
                (bytes.saturating_sub(last_bytes)) as f64 / secs / BYTES_PER_MB,
                group_digits(records as f64),
            );
            (last_records, last_bytes, last_at) = (records, bytes, now);
        }
    })
}

/// `1234567.8` → `1,234,568`.
pub fn group_digits(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    // Digits before the next comma; the first group may be short.
    let mut left = match s.len() % 3 {
        0 => 3,
        r => r,
    };
    for c in s.chars() {
        if left == 0 {
            out.push(',');
            left = 3;
        }
        out.push(c);
        left -= 1;
    }
    out
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    /// What was timed.
    pub kind: &'static str,
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The result of one run; `--json` prints it as one object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// `produce`, `consume` or `e2e`.
    pub mode: &'static str,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: usize,
    /// Bytes of each record's value (produce, e2e).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<usize>,
    /// The `--rate` limit, records/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Records produced and acknowledged (consumed, for consume and e2e).
    pub records: u64,
    /// Sum of the records' value sizes.
    pub bytes: u64,
    pub elapsed_s: f64,
    pub records_per_s: f64,
    /// Value bytes per second, in units of 10^6 bytes.
    pub mb_per_s: f64,
    pub latency: Option<Latency>,
}

impl Summary {
    /// Fills the rates from records, bytes and elapsed time.
    pub fn with_rates(mut self) -> Summary {
        let secs = self.elapsed_s.max(1e-9);
        self.records_per_s = self.records as f64 / secs;
        self.mb_per_s = self.bytes as f64 / secs / BYTES_PER_MB;
        self
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut settings = vec![format!(
            "{} partition{}",
            self.partitions,
            if self.partitions == 1 { "" } else { "s" }
        )];
        if let Some(b) = self.record_bytes {
            settings.push(format!("{b}-byte records"));
        }
        if let Some(a) = &self.acks {
            settings.push(format!("acks={a}"));
        }
        if let Some(c) = self.compression {
            settings.push(format!("compression={c}"));
        }
        if let Some(p) = self.producers {
            settings.push(format!("{p} producer{}", if p == 1 { "" } else { "s" }));
        }
        if let Some(c) = self.consumers {
            settings.push(format!("{c} consumer{}", if c == 1 { "" } else { "s" }));
        }
        if let Some(r) = self.rate_limit {
            settings.push(format!("rate limit {} records/s", group_digits(r)));
        }
        let mut out = format!(
            "{}: {} records, {:.1} MB in {:.2} s: {} records/s, {:.2} MB/s ({}; topic {} on {})\n",
            self.mode,
            group_digits(self.records as f64),
            self.bytes as f64 / BYTES_PER_MB,
            self.elapsed_s,
            group_digits(self.records_per_s),
            self.mb_per_s,
            settings.join(", "),
            self.topic,
            self.bootstrap,
        );
        match &self.latency {
            Some(l) => out.push_str(&format!(
                "latency ({}): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, mean {:.3} ms ({} samples)\n",
                l.kind, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.samples
            )),
            None => out.push_str("latency: not measured (acks=0 or no samples)\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0.0), "0");
        assert_eq!(group_digits(999.4), "999");
        assert_eq!(group_digits(1000.0), "1,000");
        assert_eq!(group_digits(1234567.0), "1,234,567");
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let stats = Stats::default();
        for ms in 1..=1000u64 {
            stats.record_latency(Duration::from_millis(ms), 1);
        }
        let l = stats.latency("test").unwrap();
        assert_eq!(l.samples, 1000);
        assert!((l.p50_ms - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max_ms - 1000.0).abs() < 1.0, "{l:?}");
        assert!(Stats::default().latency("none").is_none());
    }
}
