//! A classic Prometheus histogram whose observations are lock-free: one
//! atomic counter per bucket, an atomic count and an atomic sum (an `f64`
//! kept as bits, added with a compare-and-swap loop).
//!
//! prometheus-client's own `Histogram` guards its state with a mutex taken on
//! every observation; request and handshake paths must not contend on one, so
//! the families of this crate use this type instead. Encoding reads the
//! atomics one by one: a scrape racing an observation may see the count one
//! ahead of a bucket, which Prometheus tolerates (as for every client).

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Upper bounds (seconds) for request durations: 1 ms to 60 s.
pub const REQUEST_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds (seconds) for configuration reloads and ACME requests: 5 ms
/// to 2 minutes.
pub const SLOW_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram over fixed bucket bounds; clones share the same counts.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, ascending; `+Inf` is implicit.
    bounds: &'static [f64],
    /// One counter per bound, then the `+Inf` bucket (not cumulative).
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, finite).
    pub fn new(bounds: &'static [f64]) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds,
                buckets,
                count: AtomicU64::new(0),
                sum_bits: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records one value. NaN is ignored.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let inner = &*self.inner;
        let index = inner.bounds.partition_point(|bound| *bound < value);
        if let Some(bucket) = inner.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let mut current = inner.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match inner.sum_bits.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        inner.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The sum of the recorded values.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum_bits.load(Ordering::Relaxed))
    }

    /// `(upper bound, count in that bucket)` pairs, `+Inf` last, not
    /// cumulative (the encoder accumulates).
    fn buckets(&self) -> Vec<(f64, u64)> {
        let inner = &*self.inner;
        inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.buckets.iter())
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        static BOUNDS: &[f64] = &[1.0, 2.0];
        let h = Histogram::new(BOUNDS);
        for v in [0.5, 1.0, 1.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.buckets(), vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 1)]);
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn clones_share_counts() {
        let h = Histogram::new(REQUEST_SECONDS);
        h.clone().observe(0.2);
        assert_eq!(h.count(), 1);
    }
}
