//! A log-bucketed latency histogram in the manner of HDR histograms.
//!
//! Values (nanoseconds) below 128 get a bucket each; above that, every power
//! of two is cut into 64 equal buckets, so a reported value is at most 1/64
//! (1.6 %) above the true one. 3,776 counters cover all of `u64`. Recording
//! is an index computation and an increment, cheap enough to run on every
//! request of the load generator.
//!
//! Hand-rolled rather than the `hdrhistogram` crate: this is about 100 lines,
//! needs no configuration (range, precision) that could be set wrong, and
//! keeps the harness on the workspace's dependencies.
//!
//! It must not allocate on `record`.

/// Values below this have one bucket each.
const LINEAR: u64 = 128;

/// Buckets per power of two above `LINEAR`.
const SUB: u64 = 64;

/// log2(SUB).
const SUB_BITS: u32 = 6;

/// Number of buckets: the linear ones, then 64 per power of two from 2^7 to
/// 2^63.
const BUCKETS: usize = 3776;

/// Counts of recorded values per bucket, plus exact count, sum, min and max.
#[derive(Clone, Debug)]
pub struct Histogram {
    /// Count per bucket; see [`bucket_of`].
    counts: Vec<u64>,
    /// Number of recorded values.
    total: u64,
    /// Sum of recorded values (saturating).
    sum: u64,
    /// Smallest recorded value (`u64::MAX` while empty).
    min: u64,
    /// Largest recorded value.
    max: u64,
}

/// The bucket `v` falls in.
fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    // v >= 128, so the highest set bit is at position >= 7.
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let mantissa = v >> shift; // in [64, 128)
    ((u64::from(shift) + 1) * SUB + (mantissa - SUB)) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = i / SUB - 1;
    let mantissa = SUB + i % SUB;
    // For the last bucket this is 2^64 - 1, computed without overflow.
    ((mantissa << shift) - 1).saturating_add(1 << shift)
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Record one value.
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(v)) {
            *c += 1;
        }
        self.total += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Record a duration in nanoseconds (saturating at `u64::MAX`).
    pub fn record_duration(&mut self, d: std::time::Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Add all of `other`'s values to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value, `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// Mean of the recorded values, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The value at quantile `q` (0.0..=1.0): the smallest bucket bound
    /// below which at least `ceil(q * count)` values lie, never above the
    /// largest recorded value nor below the smallest. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_high(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        // Every bucket's high bound + 1 starts the next bucket.
        for i in 0..BUCKETS - 1 {
            let next_low = bucket_high(i) + 1;
            assert_eq!(bucket_of(next_low), i + 1, "bucket {i}");
            assert_eq!(bucket_of(bucket_high(i)), i, "bucket {i}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn bucket_width_is_within_one_64th() {
        for v in [128u64, 1_000, 123_456, 9_999_999, 1 << 40, u64::MAX / 3] {
            let hi = bucket_high(bucket_of(v));
            assert!(hi >= v);
            assert!((hi - v) as f64 <= v as f64 / 64.0, "{v} -> {hi}");
        }
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.mean(), None);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(0.999), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.quantile(1.0), Some(100));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_within_precision() {
        // 1 µs .. 10 ms in 1 µs steps.
        let mut h = Histogram::new();
        for us in 1..=10_000u64 {
            h.record(us * 1_000);
        }
        for (q, want) in [(0.5, 5_000_000u64), (0.99, 9_900_000), (0.999, 9_990_000)] {
            let got = h.quantile(q).expect("non-empty") as f64;
            let err = (got - want as f64) / want as f64;
            assert!((0.0..=1.0 / 64.0).contains(&err), "q={q}: {got} vs {want}");
        }
        assert_eq!(h.max(), Some(10_000_000));
    }

    #[test]
    fn a_tail_outlier_shows_only_in_the_tail() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(1_000);
        }
        h.record(50_000_000);
        assert!(h.quantile(0.99).expect("non-empty") <= 1_016);
        assert_eq!(h.quantile(1.0), Some(50_000_000));
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5_000u64 {
            let x = v * 7_919 % 1_000_003;
            if v % 3 == 0 {
                a.record(x);
            } else {
                b.record(x);
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        for q in [0.1, 0.5, 0.9, 0.99, 0.999] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert_eq!(a.max(), all.max());
    }
}
