//! Latency histograms with fixed buckets, lock-free to observe, and families of histograms
//! and counters keyed by a few label values, each family capped in how many series it keeps
//! (past the cap, observations go to one series whose labels all read `other`), so that no
//! input can grow `/metrics` without bound.
//!
//! What it does not do: render (the node's `/metrics` does) or choose label values (callers
//! pass values from fixed sets: roles, envelope kinds, route templates, status codes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds, in seconds, of the step-latency buckets: from half a millisecond (a
/// custody step on a quiet node) to ten seconds (a PKCS#11 token or a stalled call).
pub const STEP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// Series a family keeps apart at most.
pub const MAX_SERIES: usize = 512;

/// The label value of the series that takes what comes past [`MAX_SERIES`].
pub const OVERFLOW: &str = "other";

/// One latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; STEP_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram as read: cumulative counts per bucket bound, the count and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramReading {
    /// (upper bound in seconds, observations at most that long).
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        // Buckets are cumulative: each bound counts what fits under it.
        for (bound, bucket) in STEP_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The histogram now.
    pub fn read(&self) -> HistogramReading {
        HistogramReading {
            buckets: STEP_BUCKETS
                .iter()
                .zip(&self.buckets)
                .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The key of a series: its label values, or all `other` past the cap.
fn series_key<T>(series: &BTreeMap<Vec<String>, T>, labels: &[&str]) -> Vec<String> {
    let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    if series.len() < MAX_SERIES || series.contains_key(&key) {
        key
    } else {
        vec![OVERFLOW.to_owned(); labels.len()]
    }
}

/// Histograms by label values.
#[derive(Debug, Default)]
pub struct HistogramFamily {
    series: Mutex<BTreeMap<Vec<String>, Arc<Histogram>>>,
}

impl HistogramFamily {
    /// Records one duration in the series of `labels`.
    pub fn observe(&self, labels: &[&str], elapsed: Duration) {
        let histogram = {
            let mut series = self
                .series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = series_key(&series, labels);
            series.entry(key).or_default().clone()
        };
        histogram.observe(elapsed);
    }

    /// Every series, by label values.
    pub fn read(&self) -> Vec<(Vec<String>, HistogramReading)> {
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(labels, histogram)| (labels.clone(), histogram.read()))
            .collect()
    }
}

/// Counters by label values.
#[derive(Debug, Default)]
pub struct CounterFamily {
    series: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterFamily {
    /// Adds one to the series of `labels`.
    pub fn bump(&self, labels: &[&str]) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = series_key(&series, labels);
        *series.entry(key).or_default() += 1;
    }

    /// Every series, by label values.
    pub fn read(&self) -> Vec<(Vec<String>, u64)> {
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(labels, count)| (labels.clone(), *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_duration_under_every_bound_it_fits() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(700));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(20));
        let read = histogram.read();
        assert_eq!(read.count, 3);
        let under = |bound: f64| read.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(under(0.0005), 0);
        assert_eq!(under(0.001), 1);
        assert_eq!(under(0.05), 2);
        assert_eq!(under(10.0), 2, "twenty seconds fit no bucket but +Inf");
        assert!((read.sum_seconds - 20.0307).abs() < 1e-9);
    }

    #[test]
    fn a_family_keeps_series_apart_up_to_its_cap_then_pools_the_rest() {
        let counters = CounterFamily::default();
        for n in 0..MAX_SERIES + 10 {
            counters.bump(&["a", &n.to_string()]);
        }
        counters.bump(&["a", "0"]);
        let read = counters.read();
        assert_eq!(read.len(), MAX_SERIES + 1);
        let count = |labels: &[&str]| {
            read.iter()
                .find(|(l, _)| l.iter().map(String::as_str).eq(labels.iter().copied()))
                .map(|(_, c)| *c)
        };
        assert_eq!(count(&["a", "0"]), Some(2), "a known series still counts");
        assert_eq!(count(&[OVERFLOW, OVERFLOW]), Some(10));
        let histograms = HistogramFamily::default();
        histograms.observe(&["fiduciary", "order-request"], Duration::from_millis(2));
        histograms.observe(&["fiduciary", "order-request"], Duration::from_millis(3));
        let read = histograms.read();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].1.count, 2);
    }
}
