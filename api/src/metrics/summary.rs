//! Consul's in-memory metrics: every counter, gauge and timing the crates
//! report through the `metrics` facade, kept as running summaries (count,
//! sum, min, max, sum of squares) in metrics-util's registry, for the JSON
//! of `/v1/agent/metrics`. Updates are atomics, no locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{CounterFn, GaugeFn, HistogramFn, Key};
use metrics_util::registry::{Registry, Storage};

/// A running summary of the values recorded (a counter's increments or a
/// timing's samples).
#[derive(Debug)]
pub struct Summary {
    count: AtomicU64,
    /// f64 bits.
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    sum_sq: AtomicU64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            sum_sq: AtomicU64::new(0f64.to_bits()),
        }
    }
}

/// `cell = f(cell)` for an f64 held as bits.
fn update(cell: &AtomicU64, f: impl Fn(f64) -> f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some(f(f64::from_bits(bits)).to_bits())
    });
}

impl Summary {
    fn add(&self, v: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        update(&self.sum, |s| s + v);
        update(&self.sum_sq, |s| s + v * v);
        update(&self.min, |m| m.min(v));
        update(&self.max, |m| m.max(v));
    }

    /// (count, sum, min, max, mean, stddev).
    pub fn stats(&self) -> Stats {
        let count = self.count.load(Ordering::Relaxed);
        let get = |c: &AtomicU64| f64::from_bits(c.load(Ordering::Relaxed));
        let (sum, sum_sq) = (get(&self.sum), get(&self.sum_sq));
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let n = count as f64;
        let mean = if count == 0 { 0.0 } else { sum / n };
        let var = if count < 2 {
            0.0
        } else {
            ((sum_sq - sum * sum / n) / (n - 1.0)).max(0.0)
        };
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        Stats {
            count,
            sum,
            min: finite(get(&self.min)),
            max: finite(get(&self.max)),
            mean,
            stddev: var.sqrt(),
        }
    }
}

/// A summary's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
}

impl HistogramFn for Summary {
    fn record(&self, value: f64) {
        self.add(value);
    }
}

impl CounterFn for Summary {
    fn increment(&self, value: u64) {
        #[allow(clippy::cast_precision_loss)] // increments far below 2^52
        self.add(value as f64);
    }

    fn absolute(&self, value: u64) {
        #[allow(clippy::cast_precision_loss)]
        let v = value as f64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.store(v.to_bits(), Ordering::Relaxed);
        self.max.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// A gauge: its last value (f64 bits).
#[derive(Debug, Default)]
pub struct Value(AtomicU64);

impl Value {
    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl GaugeFn for Value {
    fn increment(&self, value: f64) {
        update(&self.0, |v| v + value);
    }

    fn decrement(&self, value: f64) {
        update(&self.0, |v| v - value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// The storage of the registry: summaries for counters and timings, last
/// values for gauges.
#[derive(Debug, Default)]
pub struct SummaryStorage;

impl Storage<Key> for SummaryStorage {
    type Counter = Arc<Summary>;
    type Gauge = Arc<Value>;
    type Histogram = Arc<Summary>;

    fn counter(&self, _: &Key) -> Arc<Summary> {
        Arc::default()
    }

    fn gauge(&self, _: &Key) -> Arc<Value> {
        Arc::default()
    }

    fn histogram(&self, _: &Key) -> Arc<Summary> {
        Arc::default()
    }
}

/// The recorder that feeds the registry.
#[derive(Debug)]
pub struct SummaryRecorder {
    pub registry: Arc<Registry<Key, SummaryStorage>>,
}

impl metrics::Recorder for SummaryRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.registry
            .get_or_create_counter(key, |c| metrics::Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.registry
            .get_or_create_gauge(key, |g| metrics::Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        self.registry
            .get_or_create_histogram(key, |h| metrics::Histogram::from_arc(h.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_keeps_count_sum_min_max_mean_and_stddev() {
        let s = Summary::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.record(v);
        }
        let st = s.stats();
        assert_eq!(
            (st.count, st.sum, st.min, st.max, st.mean),
            (8, 40.0, 2.0, 9.0, 5.0)
        );
        assert!((st.stddev - 2.138).abs() < 0.001, "{}", st.stddev);
        assert_eq!(Summary::default().stats().min, 0.0);
    }
}
