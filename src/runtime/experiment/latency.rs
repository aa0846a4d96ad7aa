//! Latency guardrail: percentiles with distribution-free confidence intervals, counting failures
//! and timeouts as infinitely slow, plus the error rate with its Wilson interval.
//!
//! **Why failures count as +∞.** Percentiles of successful requests alone reward failing: a
//! variant that times out on its 5 % slowest requests shows a fine p99 of what is left. Ranking
//! a failure above every latency (or at the timeout: only the order matters, so both give the
//! same ranks) makes its p99 "infinite" — worse than any latency — as soon as failures exceed 1 %.
//!
//! **Intervals from order statistics.** For the q-quantile ξ of any continuous distribution and
//! a sample of n, #{Xᵢ ≤ ξ} ~ Binomial(n, q), so [X₍ₗ₎, X₍ᵤ₎] covers ξ with probability
//! 1 − P(B ≤ l − 1) − P(B ≥ u) (e.g. Conover, "Practical Nonparametric Statistics", §3.2). Ranks
//! are chosen so each tail is ≤ α/2; the achieved coverage is reported. Nothing is assumed about
//! the shape of latencies (long tails, multimodal batching effects).
//!
//! **Input: a uniform reservoir per period.** Each period (the experiment's run or one report
//! window) keeps every request's latency exactly until `capacity` requests, then a uniform
//! sample of them (Vitter's Algorithm R, [`Reservoir`]). A uniform sample keeps the intervals
//! valid for the whole period's quantiles at bounded memory, which the old "last 10,000" window
//! does not (it describes only the most recent minutes, biased toward the period's end).
//! Reservoirs of different replicas do not add up; for a report across replicas use the
//! histogram form ([`Histogram`]), whose bucket counts do, at the price of bucket resolution.

use serde::{Serialize, Serializer};

use super::proportions::{Interval, wilson, z_two_sided};
use super::stats::binomial_pmf;

/// A latency or an order statistic that falls among failures (+∞).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub enum Latency {
    Seconds(f64),
    /// Above every observed latency: a failure or timeout (for a [`Histogram`], also a request
    /// beyond the last finite bucket). Serialised as the string "inf".
    Infinite,
}

impl Latency {
    fn of(value: f64) -> Self {
        if value.is_finite() {
            Self::Seconds(value)
        } else {
            Self::Infinite
        }
    }

    pub fn seconds(self) -> f64 {
        match self {
            Self::Seconds(s) => s,
            Self::Infinite => f64::INFINITY,
        }
    }
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Seconds(v) => s.serialize_f64(*v),
            Self::Infinite => s.serialize_str("inf"),
        }
    }
}

/// 1-based ranks of the order statistics bounding a quantile, and the interval's exact coverage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranks {
    /// `None`: no rank is low enough, the interval is unbounded below (0).
    pub low: Option<u64>,
    /// `None`: no rank is high enough, unbounded above (+∞): too few requests for this quantile
    /// (a 95 % upper bound of p99 needs 368).
    pub high: Option<u64>,
    pub coverage: f64,
}

/// Ranks l (largest with P(B ≤ l − 1) ≤ α/2) and u (smallest with P(B ≥ u) ≤ α/2) for
/// B ~ Binomial(n, q). Sums the pmf only within ±12σ of nq plus a margin: beyond it the tails are
/// below 1e-30, so the cost is O(√n).
pub fn order_statistic_ranks(n: u64, q: f64, alpha: f64) -> Ranks {
    let half = alpha / 2.0;
    let sd = (n as f64 * q * (1.0 - q)).sqrt();
    let reach = 12.0 * sd + 30.0;
    let center = n as f64 * q;
    let start = (center - reach).max(0.0) as u64;
    let end = ((center + reach).ceil() as u64).min(n);
    let (mut low, mut lower_tail, mut cdf) = (None, 0.0, 0.0);
    for k in start..=end {
        cdf += binomial_pmf(k, n, q);
        if cdf > half {
            break;
        }
        (low, lower_tail) = (Some(k + 1), cdf);
    }
    let (mut high, mut upper_tail, mut sf) = (None, 0.0, 0.0);
    for u in (start.max(1)..=end).rev() {
        sf += binomial_pmf(u, n, q);
        if sf > half {
            break;
        }
        (high, upper_tail) = (Some(u), sf);
    }
    Ranks {
        low,
        high,
        coverage: 1.0 - lower_tail - upper_tail,
    }
}

/// A percentile with its distribution-free interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentile {
    pub q: f64,
    /// Nearest-rank estimate.
    pub estimate: Latency,
    pub low: Latency,
    pub high: Latency,
    /// Exact coverage of [low, high] (≥ 1 − α when both ranks exist).
    pub coverage: f64,
}

/// A period's latencies, failures included as +∞, sorted.
#[derive(Clone, Debug, Default)]
pub struct LatencySample {
    sorted: Vec<f64>,
}

impl LatencySample {
    /// From latencies in seconds; non-finite values (and any failure recorded as +∞) count as
    /// failures.
    pub fn new(mut values: Vec<f64>) -> Self {
        for v in &mut values {
            if !v.is_finite() {
                *v = f64::INFINITY;
            }
        }
        values.sort_by(f64::total_cmp);
        Self { sorted: values }
    }

    /// From successful latencies and a count of failures (an exact list).
    pub fn with_failures(mut latencies: Vec<f64>, failures: u64) -> Self {
        latencies.extend(std::iter::repeat_n(f64::INFINITY, failures as usize));
        Self::new(latencies)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The q-quantile with its (1 − α) interval; `None` without data.
    pub fn percentile(&self, q: f64, alpha: f64) -> Option<Percentile> {
        let n = self.sorted.len() as u64;
        if n == 0 {
            return None;
        }
        let at = |rank: u64| Latency::of(self.sorted[rank as usize - 1]);
        let ranks = order_statistic_ranks(n, q, alpha);
        let nearest = ((q * n as f64).ceil() as u64).clamp(1, n);
        Some(Percentile {
            q,
            estimate: at(nearest),
            low: ranks.low.map_or(Latency::Seconds(0.0), at),
            high: ranks.high.map_or(Latency::Infinite, at),
            coverage: ranks.coverage,
        })
    }
}

/// Algorithm R (Vitter 1985): a uniform sample of at most `capacity` of the values pushed, exact
/// while fewer were pushed. The caller supplies the randomness (`routing::random_u64`).
#[derive(Clone, Debug)]
pub struct Reservoir {
    capacity: usize,
    seen: u64,
    items: Vec<f64>,
}

impl Reservoir {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: 0,
            items: Vec::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Offers one request's latency (`f64::INFINITY` for a failure or timeout).
    pub fn push(&mut self, value: f64, draw: u64) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(value);
        } else {
            let j = ((u128::from(draw) * u128::from(self.seen)) >> 64) as usize;
            if j < self.capacity {
                self.items[j] = value;
            }
        }
    }

    /// Values offered so far (the period's requests).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn sample(&self) -> LatencySample {
        LatencySample::new(self.items.clone())
    }
}

/// A Prometheus-style latency histogram of one period, summed across replicas: counts per
/// bucket `le` bound (non-cumulative, the last bucket is +Inf), plus failures, which rank above
/// every bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Finite upper bounds, increasing.
    pub bounds: Vec<f64>,
    /// `bounds.len() + 1` counts: one per bound, then the +Inf bucket.
    pub counts: Vec<u64>,
    pub failures: u64,
}

/// A percentile from a histogram: the interval is widened to bucket edges, so it still covers
/// (with coverage ≥ the reported one) at the histogram's resolution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketedPercentile {
    pub q: f64,
    /// Edges of the bucket holding the nearest-rank estimate.
    pub estimate_low: Latency,
    pub estimate_high: Latency,
    pub low: Latency,
    pub high: Latency,
    pub coverage: f64,
}

impl Histogram {
    /// From Prometheus' cumulative `_bucket` counts (one per bound, then `+Inf`).
    pub fn from_cumulative(bounds: Vec<f64>, cumulative: &[u64], failures: u64) -> Self {
        let counts = cumulative
            .iter()
            .scan(0u64, |prev, &c| {
                let d = c.saturating_sub(*prev);
                *prev = c;
                Some(d)
            })
            .collect();
        Self {
            bounds,
            counts,
            failures,
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.failures
    }

    /// (lower edge, upper edge) of the bucket holding the rank-th smallest request (1-based).
    fn edges(&self, rank: u64) -> (Latency, Latency) {
        let mut cumulative = 0;
        for (j, c) in self.counts.iter().enumerate() {
            cumulative += c;
            if cumulative >= rank {
                let low = if j == 0 { 0.0 } else { self.bounds[j - 1] };
                let high = self.bounds.get(j).copied().unwrap_or(f64::INFINITY);
                return (Latency::Seconds(low), Latency::of(high));
            }
        }
        (Latency::Infinite, Latency::Infinite)
    }

    pub fn percentile(&self, q: f64, alpha: f64) -> Option<BucketedPercentile> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let ranks = order_statistic_ranks(n, q, alpha);
        let nearest = ((q * n as f64).ceil() as u64).clamp(1, n);
        let (estimate_low, estimate_high) = self.edges(nearest);
        Some(BucketedPercentile {
            q,
            estimate_low,
            estimate_high,
            low: ranks.low.map_or(Latency::Seconds(0.0), |r| self.edges(r).0),
            high: ranks.high.map_or(Latency::Infinite, |r| self.edges(r).1),
            coverage: ranks.coverage,
        })
    }
}

/// One variant's latency guardrail for a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Requests in the period (exact counters).
    pub requests: u64,
    pub failures: u64,
    pub error_rate: f64,
    /// Wilson (1 − α) interval of the error rate.
    pub error_rate_ci: Interval,
    /// Requests the percentiles are computed from (all of them up to the reservoir's capacity).
    pub sampled: u64,
    pub p50: Option<Percentile>,
    pub p95: Option<Percentile>,
    pub p99: Option<Percentile>,
}

/// p50/p95/p99 with (1 − α) intervals from `sample`, and the error rate from the exact counts.
pub fn summarize(
    sample: &LatencySample,
    requests: u64,
    failures: u64,
    alpha: f64,
) -> LatencySummary {
    let error_rate = if requests > 0 {
        failures as f64 / requests as f64
    } else {
        0.0
    };
    LatencySummary {
        requests,
        failures,
        error_rate,
        error_rate_ci: wilson(error_rate, requests as f64, z_two_sided(alpha)),
        sampled: sample.len() as u64,
        p50: sample.percentile(0.50, alpha),
        p95: sample.percentile(0.95, alpha),
        p99: sample.percentile(0.99, alpha),
    }
}

/// Whether a variant is slower than the reference at a percentile beyond `tolerance` (0.1 =
/// 10 %): its interval lies wholly above the reference's upper bound × (1 + tolerance). With both
/// intervals at level 1 − α/2 the chance of a false alarm is ≤ α (Bonferroni over the two
/// intervals). An infinite reference bound never breaches; an infinite variant lower bound does.
pub fn slower(variant: &Percentile, reference: &Percentile, tolerance: f64) -> bool {
    variant.low.seconds() > reference.high.seconds() * (1.0 + tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_match_the_textbook_tables() {
        // Median of n = 10: (x₍₂₎, x₍₉₎) with coverage 1 − 2 · 11/1024 = 0.978515625.
        let r = order_statistic_ranks(10, 0.5, 0.05);
        assert_eq!((r.low, r.high), (Some(2), Some(9)));
        assert!((r.coverage - 0.978_515_625).abs() < 1e-12);
        // Median of n = 100: (x₍₄₀₎, x₍₆₁₎), coverage 1 − 2 · 0.0176001 = 0.9648 (Campbell &
        // Gardner, BMJ 1988, "Calculating confidence intervals for some non-parametric analyses").
        let r = order_statistic_ranks(100, 0.5, 0.05);
        assert_eq!((r.low, r.high), (Some(40), Some(61)));
        assert!((r.coverage - (1.0 - 2.0 * 0.017_600_100_108_852_407)).abs() < 1e-12);
        // A 95 % upper bound of p99 needs 0.99ⁿ ≤ 0.025, i.e. n ≥ 368 (0.99³⁶⁷ = 0.02509).
        assert_eq!(order_statistic_ranks(367, 0.99, 0.05).high, None);
        assert_eq!(order_statistic_ranks(368, 0.99, 0.05).high, Some(368));
        // Large n stays O(√n) and the coverage stays ≥ nominal.
        let big = order_statistic_ranks(1_000_000, 0.99, 0.05);
        assert!(big.coverage >= 0.95 && big.coverage < 0.951, "{big:?}");
    }

    #[test]
    fn timeouts_make_p99_infinite() {
        // 95 % answered in 10–14 ms, 5 % timed out: the p99 is a failure, not 14 ms.
        let ok: Vec<f64> = (0..950).map(|i| 0.010 + 0.004 * i as f64 / 950.0).collect();
        let sample = LatencySample::with_failures(ok.clone(), 50);
        let s = summarize(&sample, 1000, 50, 0.05);
        let p99 = s.p99.unwrap();
        assert_eq!(p99.estimate, Latency::Infinite);
        assert_eq!(p99.low, Latency::Infinite);
        assert!(s.p50.unwrap().high.seconds() < 0.013);
        assert!((s.error_rate - 0.05).abs() < 1e-15);
        assert!(s.error_rate_ci.low > 0.037 && s.error_rate_ci.high < 0.066);
        // Without the failures the same requests would have shown a 14 ms p99.
        let hidden = LatencySample::new(ok).percentile(0.99, 0.05).unwrap();
        assert!(hidden.estimate.seconds() < 0.0141);
        let reference = LatencySample::new(vec![0.012; 1000])
            .percentile(0.99, 0.05)
            .unwrap();
        assert!(slower(&p99, &reference, 0.1));
        assert!(!slower(&reference, &p99, 0.1));
        assert_eq!(
            serde_json::to_string(&p99.high).unwrap(),
            "\"inf\"",
            "failures serialise as \"inf\""
        );
    }

    #[test]
    fn reservoir_is_exact_then_uniform() {
        let mut r = Reservoir::new(100);
        for i in 0..100 {
            r.push(i as f64, 0);
        }
        assert_eq!(r.sample().len(), 100);
        // Then each of 10,000 values has a 1 % chance to be kept: the kept mean stays ≈ 5,000.
        let mut r = Reservoir::new(1000);
        let mut state = 1u64;
        for i in 0..10_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            r.push(i as f64, state);
        }
        assert_eq!(r.seen(), 10_000);
        let s = r.sample();
        let mean = s.sorted.iter().sum::<f64>() / s.len() as f64;
        // Mean of 1000 draws without replacement: sd ≈ 2887 / √1000 ≈ 91.
        assert!((mean - 4999.5).abs() < 4.0 * 91.0, "{mean}");
    }

    #[test]
    fn histogram_bounds_contain_the_exact_ones() {
        let values: Vec<f64> = (1..=2000).map(|i| i as f64 / 1000.0).collect();
        let bounds = vec![0.25, 0.5, 1.0, 1.5, 1.9, 1.99];
        let mut cumulative: Vec<u64> = bounds
            .iter()
            .map(|b| values.iter().filter(|v| **v <= *b).count() as u64)
            .collect();
        cumulative.push(values.len() as u64);
        let h = Histogram::from_cumulative(bounds, &cumulative, 10);
        assert_eq!(h.total(), 2010);
        let exact = LatencySample::with_failures(values, 10);
        for q in [0.5, 0.95, 0.99] {
            let e = exact.percentile(q, 0.05).unwrap();
            let b = h.percentile(q, 0.05).unwrap();
            assert!(b.low <= e.low && b.high >= e.high, "{q}: {b:?} vs {e:?}");
            assert!(b.estimate_low <= e.estimate && e.estimate <= b.estimate_high);
        }
        // p99 of 2010 with 10 failures: rank ⌈0.99 · 2010⌉ = 1990 is 1.990 s, in (1.9, 1.99].
        let p99 = h.percentile(0.99, 0.05).unwrap();
        assert_eq!(p99.estimate_low, Latency::Seconds(1.9));
    }
}
