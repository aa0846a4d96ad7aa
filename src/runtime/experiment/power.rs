//! Power: how large a difference the experiment can resolve now, and how many more trials it
//! needs to reach a non-inferiority verdict with the configured power.
//!
//! Both the fixed-sample answer (the textbook normal-approximation formula, e.g. Chow, Shao &
//! Wang, "Sample Size Calculations in Clinical Research", §4.2) and the always-valid one are
//! given; verdicts use the always-valid confidence sequence, so its numbers are the ones to plan
//! with, and the fixed ones show what continuous monitoring costs.
//!
//! Model: the estimate of the difference is ≈ N(Δ, V) with V = σᵥ²/nᵥ + σᵣ²/nᵣ, σ² = p(1 − p)
//! times the arm's design effect. A verdict needs the relevant confidence bound to clear the
//! margin −δ, i.e. the estimate to be more than the bound's half-width w(V) beyond it. A true
//! difference at distance d from −δ gets there with probability Φ((d − w)/√V), so the power is
//! reached when d ≥ w(V) + z_power·√V (fixed sample: w = z₁₋α/₂·√V).

use serde::Serialize;

use super::monitoring::NormalMixture;
use super::stats::normal_quantile;

/// Per-trial variances and current trials of the two arms of one comparison.
#[derive(Clone, Copy, Debug)]
pub struct Design {
    /// σᵥ² per trial of the variant arm (p(1 − p) · design effect).
    pub variant_variance: f64,
    /// σᵣ² per trial of the reference arm; 0 for a known constant reference.
    pub reference_variance: f64,
    pub variant_trials: u64,
    pub reference_trials: u64,
}

impl Design {
    /// V at the current sample (∞ while an arm that matters has no trials).
    pub fn variance_now(&self) -> f64 {
        let part = |var: f64, n: u64| {
            if var == 0.0 {
                0.0
            } else if n == 0 {
                f64::INFINITY
            } else {
                var / n as f64
            }
        };
        part(self.variant_variance, self.variant_trials)
            + part(self.reference_variance, self.reference_trials)
    }

    /// Reference trials per variant trial, kept as it is now (1 before both arms have data).
    fn allocation(&self) -> f64 {
        if self.variant_trials > 0 && self.reference_trials > 0 {
            self.reference_trials as f64 / self.variant_trials as f64
        } else {
            1.0
        }
    }

    /// V as a function of the variant arm's trials, the allocation held fixed: K / nᵥ.
    fn variance_constant(&self) -> f64 {
        self.variant_variance + self.reference_variance / self.allocation()
    }
}

/// Trials per arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Trials {
    pub variant: u64,
    pub reference: u64,
}

/// What [`plan`] reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Power {
    /// The power the numbers are for (e.g. 0.8).
    pub power: f64,
    /// Smallest distance between the true difference and the margin −δ that a single
    /// pre-planned look *now* would resolve with that power.
    pub mde_fixed: f64,
    /// The same for the always-valid bounds the verdicts use.
    pub mde_always_valid: f64,
    /// Total trials a fixed-sample test would need, at the current allocation, assuming the
    /// variant is as good as the planning alternative (`None`: never, the alternative is on the
    /// wrong side of the margin).
    pub needed_fixed: Option<Trials>,
    /// Total trials the always-valid verdict needs for that power.
    pub needed_always_valid: Option<Trials>,
    /// What is still missing of `needed_always_valid`.
    pub remaining_always_valid: Option<Trials>,
}

/// Power numbers for one comparison: `distance` is how far the planning alternative lies from
/// the margin (δ when the variant is assumed exactly as good as the reference, as the brief
/// asks: "assuming the observed reference rate").
pub fn plan(
    design: &Design,
    distance: f64,
    alpha: f64,
    power: f64,
    mixture: &NormalMixture,
) -> Power {
    let z_power = normal_quantile(power);
    let z_alpha = normal_quantile(1.0 - alpha / 2.0);
    let v = design.variance_now();
    let sd = v.sqrt();
    let k = design.variance_constant();
    let ratio = design.allocation();
    let trials = |nv: f64| {
        let nv = nv.ceil();
        Trials {
            variant: nv as u64,
            reference: if design.reference_variance == 0.0 {
                0
            } else {
                (nv * ratio).ceil() as u64
            },
        }
    };
    let fixed_nv = (z_alpha + z_power).powi(2) * k / (distance * distance);
    let needed_fixed = (distance > 0.0).then(|| trials(fixed_nv));
    let needed_always_valid = (distance > 0.0)
        .then(|| solve_trials(k, distance, alpha, z_power, fixed_nv, mixture))
        .flatten()
        .map(trials);
    let remaining_always_valid = needed_always_valid.map(|t| Trials {
        variant: t.variant.saturating_sub(design.variant_trials),
        reference: t.reference.saturating_sub(design.reference_trials),
    });
    Power {
        power,
        mde_fixed: (z_alpha + z_power) * sd,
        mde_always_valid: mixture.half_width(v, alpha) + z_power * sd,
        needed_fixed,
        needed_always_valid,
        remaining_always_valid,
    }
}

/// Smallest nᵥ with w(K/nᵥ) + z·√(K/nᵥ) ≤ d, by bisection on ln nᵥ (the left side falls as nᵥ
/// grows) from the fixed-sample answer, which is a lower bound since w ≥ z₁₋α/₂·√V; `None`
/// beyond 10¹² trials.
fn solve_trials(
    k: f64,
    d: f64,
    alpha: f64,
    z: f64,
    fixed: f64,
    mixture: &NormalMixture,
) -> Option<f64> {
    if k <= 0.0 {
        return Some(1.0);
    }
    let reached = |ln_n: f64| {
        let v = k / ln_n.exp();
        mixture.half_width(v, alpha) + z * v.sqrt() <= d
    };
    let limit = 12.0 * std::f64::consts::LN_10;
    let mut lo = fixed.max(1.0).ln().min(limit);
    if reached(lo) {
        return Some(lo.exp());
    }
    // Widen by factors of 4 until reached.
    let mut hi = lo;
    loop {
        hi = (hi + 4f64.ln()).min(limit);
        if reached(hi) {
            break;
        }
        if hi >= limit {
            return None;
        }
        lo = hi;
    }
    // 24 halvings of a range of ln 4: a relative error in n below 1e-7, i.e. well under one
    // trial at any sample size worth planning.
    for _ in 0..24 {
        let mid = 0.5 * (lo + hi);
        if reached(mid) { hi = mid } else { lo = mid }
    }
    Some(hi.exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equal_arms(n: u64) -> Design {
        Design {
            variant_variance: 0.09,
            reference_variance: 0.09,
            variant_trials: n,
            reference_trials: n,
        }
    }

    #[test]
    fn fixed_sample_size_matches_the_textbook_formula() {
        // p = 0.9, δ = 1 point, two-sided α = 0.05, power 0.8:
        // n = (1.959964 + 0.841621)² · 0.09 · 2 / 0.01² = 14127.98 → 14128 per arm.
        let p = plan(
            &equal_arms(0),
            0.01,
            0.05,
            0.8,
            &NormalMixture::single(0.01),
        );
        let t = p.needed_fixed.unwrap();
        assert_eq!((t.variant, t.reference), (14_128, 14_128));
        // The always-valid verdict needs more, but the same order.
        let av = p.needed_always_valid.unwrap();
        assert!(
            av.variant > t.variant && av.variant < 3 * t.variant,
            "{av:?}"
        );
        assert_eq!(p.remaining_always_valid.unwrap(), av);
    }

    #[test]
    fn mde_shrinks_like_one_over_root_n() {
        let m = NormalMixture::single(0.01);
        let at = |n| plan(&equal_arms(n), 0.01, 0.05, 0.8, &m);
        let (a, b) = (at(1000), at(4000));
        // (1.96 + 0.84) · √(0.18 / 1000) = 0.03757.
        assert!((a.mde_fixed - 0.037_57).abs() < 1e-4, "{}", a.mde_fixed);
        assert!((a.mde_fixed / b.mde_fixed - 2.0).abs() < 1e-12);
        assert!(a.mde_always_valid > a.mde_fixed && b.mde_always_valid > b.mde_fixed);
        // At the always-valid sample size, the always-valid MDE is the distance planned for.
        let needed = at(0).needed_always_valid.unwrap().variant;
        let there = at(needed);
        assert!(
            (there.mde_always_valid - 0.01).abs() < 1e-4,
            "{}",
            there.mde_always_valid
        );
    }

    #[test]
    fn allocation_and_constant_references_are_respected() {
        // A 10 % variant against a 90 % reference: nᵣ = 9 nᵥ.
        let d = Design {
            variant_trials: 100,
            reference_trials: 900,
            ..equal_arms(0)
        };
        let p = plan(&d, 0.01, 0.05, 0.8, &NormalMixture::single(0.01));
        let t = p.needed_fixed.unwrap();
        assert!(t.reference.abs_diff(9 * t.variant) <= 9, "{t:?}");
        // Known reference (shadow agreement): only the variant arm counts.
        let shadow = Design {
            reference_variance: 0.0,
            reference_trials: 0,
            ..d
        };
        let p = plan(&shadow, 0.005, 0.05, 0.8, &NormalMixture::single(0.01));
        assert_eq!(p.needed_fixed.unwrap().reference, 0);
        assert!(
            plan(&shadow, -0.01, 0.05, 0.8, &NormalMixture::single(0.01))
                .needed_fixed
                .is_none()
        );
    }
}
