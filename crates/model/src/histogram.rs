//! A fixed-bucket histogram of atomics: recording is two relaxed atomic
//! adds and a short bucket search, with no lock, so the hot paths (request
//! dispatch, the flush threads) can record every event; an exporter reads a
//! [`Snapshot`] at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive) of latency buckets, in microseconds: 100 µs to
/// 10 s, roughly ×2.5 apart (Prometheus' default buckets, finer at the low end).
pub const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// Upper bounds (inclusive) of count buckets (e.g. waiters released by one
/// group commit), powers of two.
pub const COUNT_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Counts of observed values by bucket, their sum and count. The bounds are
/// fixed at construction; a value above the last bound lands in the
/// overflow bucket (`+Inf`).
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [u64],
    /// One per bound, plus the overflow bucket.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// What an [`AtomicHistogram`] held when read: per-bucket (not cumulative)
/// counts, one per bound plus the overflow bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub bounds: &'static [u64],
    pub buckets: Vec<u64>,
    pub sum: u64,
}

impl AtomicHistogram {
    /// `bounds` must be strictly increasing.
    pub fn new(bounds: &'static [u64]) -> AtomicHistogram {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must increase"
        );
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            bounds: self.bounds,
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// An empty snapshot over `bounds` (to add others into).
    pub fn empty(bounds: &'static [u64]) -> Snapshot {
        Snapshot {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other` (over the same bounds) into this one.
    pub fn add(&mut self, other: &Snapshot) {
        assert_eq!(self.bounds, other.bounds, "histograms over other bounds");
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_covers_them() {
        let h = AtomicHistogram::new(&[10, 100]);
        for v in [0, 10, 11, 100, 101, 5_000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![2, 2, 2]);
        assert_eq!(s.sum, 5_222);
        assert_eq!(s.count(), 6);
        let mut total = Snapshot::empty(&[10, 100]);
        total.add(&s);
        total.add(&s);
        assert_eq!(total.buckets, vec![4, 4, 4]);
        assert_eq!(total.sum, 10_444);
    }
}
