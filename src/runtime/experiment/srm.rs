//! Sample-ratio mismatch (SRM): do the units assigned to each variant match the configured
//! weights? A mismatch means assignment or logging is broken (a variant that crashes before it
//! is counted, bots, a cache in front of one arm, fallbacks counted as assignments), and then no
//! comparison of the arms can be trusted, whatever its p-value (Fabijan et al. 2019, "Diagnosing
//! sample ratio mismatch in online controlled experiments").
//!
//! The test is Pearson's χ² goodness of fit, Σ (O − E)²/E over variants with k − 1 degrees of
//! freedom; an experiment is `valid` while p ≥ 0.001, the conventional SRM threshold (strict
//! because it is checked continually and a false alarm stops an experiment).
//!
//! Which units: with a sticky key, *users* are randomised, so count distinct users by their
//! **assigned** variant; requests per user vary, so request counts are overdispersed and their χ²
//! fires on a fair split. Without a sticky key each request is randomised and requests are the
//! units. In both cases count the assignment, not the variant that served (a fallback serves
//! from another variant but the unit stays assigned where it was).

use serde::Serialize;

use super::stats::chi2_sf;

/// p below which the split is declared mismatched.
pub const SRM_THRESHOLD: f64 = 0.001;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Srm {
    /// Observed units per variant, in the order given.
    pub observed: Vec<u64>,
    /// Expected units per variant under the configured weights.
    pub expected: Vec<f64>,
    pub chi2: f64,
    pub degrees_of_freedom: usize,
    pub p_value: f64,
    /// p ≥ 0.001 (or too little data to tell).
    pub valid: bool,
}

/// χ² goodness of fit of `observed` units per variant against `weights` (any positive scale).
/// Variants with weight 0 must have no units; one that has some makes the split invalid outright
/// (p = 0). With no units at all the check passes with p = 1.
pub fn srm_check(observed: &[u64], weights: &[f64]) -> Srm {
    assert_eq!(observed.len(), weights.len(), "one weight per variant");
    let total: u64 = observed.iter().sum();
    let weight_sum: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    let expected: Vec<f64> = weights
        .iter()
        .map(|w| {
            if *w > 0.0 && weight_sum > 0.0 {
                total as f64 * w / weight_sum
            } else {
                0.0
            }
        })
        .collect();
    let mut chi2 = 0.0;
    let mut impossible = false;
    for (o, e) in observed.iter().zip(&expected) {
        if *e > 0.0 {
            chi2 += (*o as f64 - e).powi(2) / e;
        } else if *o > 0 {
            impossible = true;
        }
    }
    let live = expected.iter().filter(|e| **e > 0.0).count();
    let degrees_of_freedom = live.saturating_sub(1);
    let p_value = if impossible {
        0.0
    } else if total == 0 || degrees_of_freedom == 0 {
        1.0
    } else {
        chi2_sf(chi2, degrees_of_freedom as f64)
    };
    Srm {
        observed: observed.to_vec(),
        expected,
        chi2: if impossible { f64::INFINITY } else { chi2 },
        degrees_of_freedom,
        p_value,
        valid: p_value >= SRM_THRESHOLD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_the_issues_split() {
        // 9,000 / 1,200 at 90/10: expected 9,180 / 1,020; χ² = 180²/9180 + 180²/1020 = 35.294;
        // p = erfc(√(35.294/2)) = 2.83487e-9.
        let srm = srm_check(&[9_000, 1_200], &[90.0, 10.0]);
        assert!((srm.chi2 - 35.294_117_647_058_83).abs() < 1e-9, "{srm:?}");
        assert!((srm.p_value / 2.834_869_930_488_160_7e-9 - 1.0).abs() < 1e-6);
        assert!(!srm.valid);
    }

    #[test]
    fn passes_a_fair_split() {
        // 9,140 / 1,060 is 1.3σ from 9,180 / 1,020: χ² = 1.7, p = 0.19.
        let srm = srm_check(&[9_140, 1_060], &[90.0, 10.0]);
        assert!(srm.valid && srm.p_value > 0.1, "{srm:?}");
        let three = srm_check(&[5_020, 2_990, 1_990], &[50.0, 30.0, 20.0]);
        assert!(three.valid && three.degrees_of_freedom == 2, "{three:?}");
        assert!(srm_check(&[0, 0], &[1.0, 1.0]).valid);
    }

    #[test]
    fn units_on_an_unweighted_variant_are_a_mismatch() {
        let srm = srm_check(&[500, 500, 3], &[1.0, 1.0, 0.0]);
        assert!(!srm.valid && srm.p_value == 0.0 && srm.degrees_of_freedom == 1);
        assert!(srm_check(&[500, 500, 0], &[1.0, 1.0, 0.0]).valid);
    }
}
