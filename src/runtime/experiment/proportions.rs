//! Fixed-sample inference on proportions: the Wilson score interval, Newcombe's hybrid score
//! interval for a difference, Fisher's exact test, the pooled z test, and the rule that picks
//! exact or asymptotic. "Fixed-sample" means valid for one look decided in advance; the
//! sequential verdict lives in `monitoring` and `verdict`.

use serde::Serialize;

use super::stats::{hypergeometric_pmf, normal_cdf, normal_quantile};

/// Smallest expected cell count for which asymptotic (normal) methods are used: Cochran's
/// (1954) rule for 2×2 tables.
pub const MIN_EXPECTED_CELL: f64 = 5.0;

/// A closed interval [low, high].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// z for a two-sided interval of level 1 − α.
pub fn z_two_sided(alpha: f64) -> f64 {
    normal_quantile(1.0 - alpha / 2.0)
}

/// Wilson (1927) score interval for a proportion with observed rate `rate` over `n` trials at
/// critical value `z`. Chosen over Wald because it keeps close to nominal coverage near 0 and 1
/// and never leaves [0, 1]. `n` may be an *effective* sample size (n / design effect, Korn &
/// Graubard 1998) for clustered data, hence a float.
pub fn wilson(rate: f64, n: f64, z: f64) -> Interval {
    if n <= 0.0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (rate + z2 / (2.0 * n)) / denom;
    let half = z * (rate * (1.0 - rate) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Interval {
        low: (center - half).max(0.0),
        high: (center + half).min(1.0),
    }
}

/// Newcombe's (1998) hybrid score interval ("method 10") for p₁ − p₂: combines each arm's
/// Wilson limits, d − √((p₁−l₁)² + (u₂−p₂)²) to d + √((u₁−p₁)² + (p₂−l₂)²). Newcombe's
/// evaluation found it close to nominal coverage even for small n and rates near 0 or 1 where
/// the Wald interval fails, which is exactly where accuracy (≈ 90–99 %) and agreement (≈ 100 %)
/// live. `n1`, `n2` may be effective sample sizes (see [`wilson`]).
pub fn newcombe(rate1: f64, n1: f64, rate2: f64, n2: f64, z: f64) -> Interval {
    let w1 = wilson(rate1, n1, z);
    let w2 = wilson(rate2, n2, z);
    let d = rate1 - rate2;
    Interval {
        low: d - ((rate1 - w1.low).powi(2) + (w2.high - rate2).powi(2)).sqrt(),
        high: d + ((w1.high - rate1).powi(2) + (rate2 - w2.low).powi(2)).sqrt(),
    }
}

/// One-sided p-values of Fisher's exact test on a 2×2 table (arm 1: `s1` of `n1`; arm 2: `s2` of
/// `n2`), conditioning on the margins so S₁ is hypergeometric under H₀: p₁ = p₂.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FisherTails {
    /// P(S₁ ≤ s₁): evidence that arm 1's rate is *lower* (H₁: p₁ < p₂).
    pub less: f64,
    /// P(S₁ ≥ s₁): evidence that arm 1's rate is *higher* (H₁: p₁ > p₂).
    pub greater: f64,
}

/// Fisher's exact test, both one-sided tails. Exact for any counts; used when the table is too
/// small for the normal approximation (see [`is_small`]).
///
/// Which tail answers "is the variant worse?": `less` with the variant as arm 1. The issue's
/// example, variant 10/10 vs reference 85/90, has `less` = 1 (a variant with no failure is no
/// evidence of being worse) and `greater` = C(90,5)/C(100,5) = 0.5838; the 0.416 quoted there is
/// 1 − 0.5838 = P(S₁ ≤ 9), which is neither tail's p-value.
pub fn fisher_exact(s1: u64, n1: u64, s2: u64, n2: u64) -> FisherTails {
    let (population, successes) = (n1 + n2, s1 + s2);
    let lo = n1.saturating_sub(population - successes);
    let hi = n1.min(successes);
    let pmf = |k: u64| hypergeometric_pmf(k, population, successes, n1);
    // Sum the shorter side of each tail and clamp: the two tails overlap in P(S₁ = s₁).
    let less: f64 = (lo..=s1.min(hi)).map(pmf).sum();
    let greater: f64 = (s1.max(lo)..=hi).map(pmf).sum();
    FisherTails {
        less: less.min(1.0),
        greater: greater.min(1.0),
    }
}

/// Whether a 2×2 table is too small for normal approximations: some expected cell count under
/// the pooled rate is below [`MIN_EXPECTED_CELL`] (Cochran 1954). This is the documented rule
/// that picks exact (Fisher) or asymptotic methods.
pub fn is_small(s1: u64, n1: u64, s2: u64, n2: u64) -> bool {
    let n = (n1 + n2) as f64;
    if n1 == 0 || n2 == 0 {
        return true;
    }
    let pooled = (s1 + s2) as f64 / n;
    let smallest_arm = n1.min(n2) as f64;
    smallest_arm * pooled.min(1.0 - pooled) < MIN_EXPECTED_CELL
}

/// One-sided p-value of the pooled two-proportion z test for H₁: p₁ < p₂; `inflation` ≥ 1
/// multiplies the variance (a design effect for clustered data; 1 otherwise).
pub fn z_test_less(s1: u64, n1: u64, s2: u64, n2: u64, inflation: f64) -> f64 {
    let (a, b) = (n1 as f64, n2 as f64);
    let pooled = (s1 + s2) as f64 / (a + b);
    let se = (pooled * (1.0 - pooled) * (1.0 / a + 1.0 / b) * inflation).sqrt();
    let d = s1 as f64 / a - s2 as f64 / b;
    if se > 0.0 {
        normal_cdf(d / se)
    } else if d < 0.0 {
        0.0
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z95: f64 = 1.959_963_984_540_054;

    fn near(got: Interval, low: f64, high: f64, tol: f64) {
        assert!(
            (got.low - low).abs() < tol && (got.high - high).abs() < tol,
            "got [{}, {}], want [{low}, {high}]",
            got.low,
            got.high
        );
    }

    #[test]
    fn wilson_matches_textbook_intervals() {
        // 8/10: [0.4902, 0.9433] (Newcombe 1998, Table I); 0/10: [0, 0.2775].
        near(wilson(0.8, 10.0, Z95), 0.4902, 0.9433, 1e-4);
        near(wilson(0.0, 10.0, Z95), 0.0, 0.2775, 1e-4);
        near(wilson(0.5, 0.0, Z95), 0.0, 1.0, 1e-15);
        assert!((z_two_sided(0.05) - Z95).abs() < 1e-14);
    }

    #[test]
    fn newcombe_matches_his_published_table() {
        // Newcombe (1998) Stat Med 17:873, Table II, method 10, examples (a)–(f).
        let d = |s1: f64, n1: f64, s2: f64, n2: f64| newcombe(s1 / n1, n1, s2 / n2, n2, Z95);
        near(d(56.0, 70.0, 48.0, 80.0), 0.0524, 0.3339, 1e-4);
        near(d(9.0, 10.0, 3.0, 10.0), 0.1705, 0.8090, 1e-4);
        near(d(6.0, 7.0, 2.0, 7.0), 0.0582, 0.8062, 1e-4);
        near(d(5.0, 56.0, 0.0, 29.0), -0.0381, 0.1926, 1e-4);
        near(d(0.0, 10.0, 0.0, 20.0), -0.1611, 0.2775, 1e-4);
        near(d(10.0, 10.0, 0.0, 20.0), 0.6791, 1.0, 1e-4);
    }

    #[test]
    fn fisher_exact_matches_exact_fractions() {
        // Fisher's tea-tasting table [[3, 1], [1, 3]]: one-sided p = 17/70.
        let tea = fisher_exact(3, 4, 1, 4);
        assert!((tea.greater - 17.0 / 70.0).abs() < 1e-13, "{tea:?}");
        assert!((tea.less - 69.0 / 70.0).abs() < 1e-13, "{tea:?}");
        // The issue's example: variant 10/10, reference 85/90.
        let issue = fisher_exact(10, 10, 85, 90);
        assert!((issue.less - 1.0).abs() < 1e-13, "{issue:?}");
        assert!((issue.greater - 0.583_752_366_926_152).abs() < 1e-12);
        assert!((1.0 - issue.greater - 0.416).abs() < 1e-3);
        // 2/10 vs 9/10 (exact rational arithmetic): less = 0.0027387473207906646.
        let worse = fisher_exact(2, 10, 9, 10);
        assert!((worse.less - 0.002_738_747_320_790_664_6).abs() < 1e-14);
    }

    #[test]
    fn small_tables_are_recognised() {
        assert!(is_small(10, 10, 85, 90));
        assert!(is_small(0, 0, 5, 10));
        assert!(!is_small(450, 500, 900, 1000));
        // 1 % failures: 400 trials per arm give 4 expected failures, 600 give 6.
        assert!(is_small(396, 400, 396, 400));
        assert!(!is_small(594, 600, 594, 600));
        // z test: 0.1 / √(0.85 · 0.15 · 0.02) = 1.98 → one-sided 0.0238.
        let p = z_test_less(80, 100, 90, 100, 1.0);
        assert!((p - 0.023_8).abs() < 5e-4, "{p}");
    }
}
