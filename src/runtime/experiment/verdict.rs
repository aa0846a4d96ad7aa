//! Non-inferiority verdicts of each variant against the reference, valid under continuous
//! monitoring and across several variants.
//!
//! The question an operator asks of a cheaper bit-width is not "which is best" but "is it at
//! most δ worse than the reference?" With Δ = p_variant − p_reference and margin δ:
//!
//! * `non_inferior` when the always-valid lower bound of Δ is > −δ,
//! * `inferior` when the always-valid upper bound of Δ is < −δ,
//! * `inconclusive` otherwise (including while counts are too small to judge).
//!
//! The bounds are a confidence sequence (see `monitoring`) at the level Holm's (1979) step-down
//! procedure assigns to the variant, so with K variants the chance that *any* verdict is ever
//! wrong, at any look, is ≤ α (exactly for the beta-binomial mixture, asymptotically for the
//! normal one, whose variance is estimated; the simulations check it from 50 trials per arm).
//! A verdict needs no pre-planned sample size; one may stop at the first verdict. Everything is a function of the current totals, so replicas, and a CLI summing
//! their counters, reach the same verdict.
//!
//! **Metrics and the reference.** Online accuracy (feedback) compares two estimated rates, the
//! variant's and the reference's: [`Reference::Arm`]. Shadow agreement is different: it is the
//! rate at which a variant's answer equals the *reference's* answer to the same input, so the
//! reference's own agreement is 1 by construction and is not estimated: [`Reference::Known`]
//! with 1.0. Δ is then agreement − 1 and the verdict asks whether agreement > 1 − δ. Sending the
//! reference's own requests through shadow comparison would only measure its nondeterminism
//! (batch-dependent float sums); if that is measured and material, pass the measured
//! self-agreement as the known value (or as an `Arm`) rather than 1.
//!
//! **Methods** (reported in `method`):
//! * two estimated arms: the normal-mixture mSPRT on Δ̂ (Johari et al. 2017), mixing scales
//!   δ·10ʲ up to 0.5, with variance p̃(1 − p̃)/n per arm, p̃ = (s + 1)/(n + 2) the
//!   Agresti–Caffo (2000) adjusted rate, which keeps the variance positive at 0 or 100 %; times
//!   the arm's design effect when per-user or per-bucket sums are given (`clustered`);
//! * a known reference without clustering: the exact beta-binomial mixture (Robbins 1970),
//!   priors centred on the margin with the same scales as standard deviations;
//! * a known reference with clustering: the normal mixture with the cluster-robust variance.
//!
//! **Exact vs asymptotic.** The normal mixture rests on the central limit theorem. It is used
//! only when every expected cell of the 2×2 table (effective, i.e. divided by the design
//! effect) is ≥ 5 under the pooled rate (Cochran 1954); below that the verdict is withheld
//! (`withheld = "small_counts"`, p counted as 1 for Holm) and the fixed-sample block reports
//! Fisher's exact test. The beta-binomial mixture is exact and never withheld.

use serde::{Deserialize, Serialize};

use super::clustered::ClusterSums;
use super::monitoring::{BetaMixture, NormalMixture};
use super::power::{Design, Power, plan};
use super::proportions::{
    MIN_EXPECTED_CELL, fisher_exact, is_small, newcombe, wilson, z_test_less, z_two_sided,
};

/// What a comparison is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// δ ≥ 0 on the rate scale: 0.01 = one percentage point.
    pub margin: f64,
    /// Chance of any wrong verdict, over all variants and all looks.
    pub alpha: f64,
    /// Power the sample-size numbers are for.
    pub power: f64,
    /// Smallest scale of the mSPRT's mixing distributions on Δ; default δ (0.01 when δ = 0).
    /// The mixture averages the scales τ·10ʲ up to 0.5: the sequence is tightest about when an
    /// equal variant can first be declared non-inferior, and still catches large drops within a
    /// few hundred trials (see `monitoring::NormalMixture`). Fix it before the experiment starts.
    pub tau: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            margin: 0.01,
            alpha: 0.05,
            power: 0.8,
            tau: None,
        }
    }
}

impl Config {
    /// The normal mixture the verdicts use: scales τ·10ʲ up to 0.5.
    pub fn mixture(&self) -> NormalMixture {
        let tau = self
            .tau
            .unwrap_or(if self.margin > 0.0 { self.margin } else { 0.01 });
        NormalMixture::grid(tau)
    }
}

/// One arm's counts for the compared metric, over the analysis period (fallback-served requests
/// excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub successes: u64,
    pub trials: u64,
    /// Distinct users behind the trials, for the report (not used in the arithmetic).
    pub users: Option<u64>,
    /// Per-user or per-hash-bucket sums when users are randomised (a sticky key): the variance
    /// is then cluster-robust. Their totals should equal `successes` and `trials`.
    pub clusters: Option<ClusterSums>,
}

impl Arm {
    pub fn new(successes: u64, trials: u64) -> Self {
        Self {
            successes,
            trials,
            ..Self::default()
        }
    }

    fn rate(&self) -> f64 {
        if self.trials == 0 {
            0.0
        } else {
            self.successes as f64 / self.trials as f64
        }
    }

    /// Design effect ≥ 1 (1 without cluster sums or when it cannot be estimated).
    fn design_effect(&self) -> f64 {
        self.clusters.and_then(|c| c.design_effect()).unwrap_or(1.0)
    }

    /// Agresti–Caffo adjusted rate, for variances only.
    fn adjusted_rate(&self) -> f64 {
        (self.successes as f64 + 1.0) / (self.trials as f64 + 2.0)
    }

    /// Variance per trial: p̃(1 − p̃) · design effect.
    fn unit_variance(&self) -> f64 {
        let p = self.adjusted_rate();
        p * (1.0 - p) * self.design_effect()
    }

    fn effective_trials(&self) -> f64 {
        self.trials as f64 / self.design_effect()
    }
}

/// What each variant is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// The reference variant's own counts (online accuracy).
    Arm(Arm),
    /// A rate known without error: 1.0 for shadow agreement (see the module docs).
    Known(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NonInferior,
    Inferior,
    Inconclusive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Normal-mixture mSPRT, binomial (Agresti–Caffo) variance.
    MsprtNormalMixture,
    /// Normal-mixture mSPRT, cluster-robust (user-level) variance.
    MsprtNormalMixtureClustered,
    /// Exact beta-binomial mixture against a known reference rate.
    BetaBinomialMixture,
}

/// A fixed-sample view of the same data, valid only for one look planned in advance; shown for
/// orientation, never used for the verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FixedSample {
    /// (1 − α) interval of Δ: Newcombe's hybrid score interval (with effective sample sizes when
    /// clustered), or the Wilson interval minus the known rate.
    pub ci_low: f64,
    pub ci_high: f64,
    /// `newcombe_hybrid_score`, `newcombe_hybrid_score_effective_n` or `wilson_minus_known`.
    pub interval_method: &'static str,
    /// One-sided p-value of "the variant is worse at all" (H₀: Δ = 0); `None` for a known
    /// reference.
    pub p_value_worse: Option<f64>,
    /// `fisher_exact` (small counts), `z_pooled`, or `z_pooled_design_effect` (clustered).
    pub test: Option<&'static str>,
}

/// One variant's comparison with the reference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariantVerdict {
    pub variant: String,
    pub rate: f64,
    pub reference_rate: f64,
    pub trials: u64,
    pub users: Option<u64>,
    /// 0 for a known reference.
    pub reference_trials: u64,
    pub reference_users: Option<u64>,
    /// Δ = rate − reference_rate.
    pub difference: f64,
    /// Always-valid bounds of Δ at `ci_level`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// 1 − α/m, m the number of hypotheses still open at this variant's Holm step, or at the
    /// step where Holm stopped if that came first (1 − α for a single variant): so a bound
    /// clears the margin exactly when `p_value_holm` ≤ α and the verdict can be read off it.
    pub ci_level: f64,
    pub margin: f64,
    pub verdict: Verdict,
    /// Always-valid p-value of H₀: Δ = −δ (one-sided towards the side Δ̂ lies on).
    pub p_value_always_valid: f64,
    /// Holm-adjusted across the compared variants.
    pub p_value_holm: f64,
    pub method: Method,
    /// Design effects (≥ 1) of the variant's and the reference's rate.
    pub design_effect: f64,
    pub reference_design_effect: f64,
    /// Why no verdict may be given yet: `no_data` or `small_counts`.
    pub withheld: Option<&'static str>,
    pub fixed_sample: FixedSample,
    pub power: Power,
}

/// Bounds of Δ at a given α.
type Bounds = Box<dyn Fn(f64) -> (f64, f64)>;

/// Per-variant numbers before Holm's step.
struct Prepared {
    verdict: VariantVerdict,
    bounds: Bounds,
}

/// Compares every variant with the reference and applies Holm's step-down across them.
pub fn evaluate(
    config: &Config,
    reference: &Reference,
    variants: &[(&str, Arm)],
) -> Vec<VariantVerdict> {
    let k = variants.len().max(1) as f64;
    let mut prepared: Vec<Prepared> = variants
        .iter()
        .map(|(name, arm)| prepare(config, reference, name, arm, k))
        .collect();
    // Holm (1979): sort p ascending; step i (1-based) tests at α/(K − i + 1) and stops at the
    // first failure; adjusted p₍ᵢ₎ = max over j ≤ i of min(1, (K − j + 1) p₍ⱼ₎).
    let tested = |p: &Prepared| {
        if p.verdict.withheld.is_some() {
            1.0
        } else {
            p.verdict.p_value_always_valid
        }
    };
    let mut order: Vec<usize> = (0..prepared.len()).collect();
    order.sort_by(|&a, &b| tested(&prepared[a]).total_cmp(&tested(&prepared[b])));
    let (mut running, mut stopped_at) = (0.0f64, None);
    for (step, &i) in order.iter().enumerate() {
        let open = k - step as f64;
        let p = tested(&prepared[i]);
        running = running.max((open * p).min(1.0));
        if stopped_at.is_none() && open * p > config.alpha {
            stopped_at = Some(step);
        }
        // The interval's level: this step's, or the failed step's if Holm stopped before it.
        let level_step = stopped_at.map_or(step, |s| s.min(step));
        let level_alpha = config.alpha / (k - level_step as f64);
        let (low, high) = (prepared[i].bounds)(level_alpha);
        let v = &mut prepared[i].verdict;
        v.p_value_holm = running;
        v.ci_low = low;
        v.ci_high = high;
        v.ci_level = 1.0 - level_alpha;
        v.verdict = if v.withheld.is_some() || running > config.alpha {
            Verdict::Inconclusive
        } else if low > -config.margin {
            Verdict::NonInferior
        } else if high < -config.margin {
            Verdict::Inferior
        } else {
            Verdict::Inconclusive
        };
    }
    prepared.into_iter().map(|p| p.verdict).collect()
}

fn prepare(config: &Config, reference: &Reference, name: &str, arm: &Arm, k: f64) -> Prepared {
    let (alpha, margin) = (config.alpha, config.margin);
    let mixture = config.mixture();
    let z = z_two_sided(alpha);
    let rate = arm.rate();
    let (reference_rate, reference_trials, reference_users, reference_deff) = match reference {
        Reference::Arm(r) => (r.rate(), r.trials, r.users, r.design_effect()),
        Reference::Known(c) => (*c, 0, None, 1.0),
    };
    let difference = rate - reference_rate;
    let clustered =
        arm.clusters.is_some() || matches!(reference, Reference::Arm(r) if r.clusters.is_some());
    let (method, p, bounds, withheld, fixed, design): (_, _, Bounds, _, _, _) = match *reference {
        Reference::Known(c) if !clustered => {
            let prior = BetaMixture::centered_on_scales(c - margin, &mixture.taus);
            let (s, n) = (arm.successes, arm.trials);
            (
                Method::BetaBinomialMixture,
                prior.p_value(s, n, (c - margin).clamp(0.0, 1.0)),
                Box::new(move |a: f64| {
                    let ci = prior.interval(s, n, a);
                    (ci.low - c, ci.high - c)
                }),
                None,
                known_fixed(rate, arm.trials as f64, c, z),
                known_design(arm),
            )
        }
        Reference::Known(c) => {
            let v = arm.unit_variance() / arm.trials.max(1) as f64;
            let null = c - margin;
            let small = arm.effective_trials() * null.min(1.0 - null) < MIN_EXPECTED_CELL;
            (
                Method::MsprtNormalMixtureClustered,
                mixture.p_value(difference, -margin, v),
                normal_bounds(mixture.clone(), difference, v),
                small.then_some("small_counts"),
                known_fixed(rate, arm.effective_trials(), c, z),
                known_design(arm),
            )
        }
        Reference::Arm(r) => {
            let v = arm.unit_variance() / arm.trials.max(1) as f64
                + r.unit_variance() / r.trials.max(1) as f64;
            let (ev, er) = (arm.effective_trials(), r.effective_trials());
            let small = is_small_effective(arm, ev, &r, er);
            (
                if clustered {
                    Method::MsprtNormalMixtureClustered
                } else {
                    Method::MsprtNormalMixture
                },
                mixture.p_value(difference, -margin, v),
                normal_bounds(mixture.clone(), difference, v),
                small.then_some("small_counts"),
                two_arm_fixed(arm, &r, clustered, z),
                Design {
                    variant_variance: planning_variance(&r) * arm.design_effect(),
                    reference_variance: planning_variance(&r) * r.design_effect(),
                    variant_trials: arm.trials,
                    reference_trials: r.trials,
                },
            )
        }
    };
    let distance = match reference {
        Reference::Arm(_) => margin,
        Reference::Known(c) => arm.adjusted_rate() - (c - margin),
    };
    let no_data = arm.trials == 0 || matches!(reference, Reference::Arm(r) if r.trials == 0);
    Prepared {
        verdict: VariantVerdict {
            variant: name.to_string(),
            rate,
            reference_rate,
            trials: arm.trials,
            users: arm.users,
            reference_trials,
            reference_users,
            difference,
            ci_low: f64::NEG_INFINITY,
            ci_high: f64::INFINITY,
            ci_level: 1.0 - alpha,
            margin,
            verdict: Verdict::Inconclusive,
            p_value_always_valid: if no_data { 1.0 } else { p },
            p_value_holm: 1.0,
            method,
            design_effect: arm.design_effect(),
            reference_design_effect: reference_deff,
            withheld: if no_data { Some("no_data") } else { withheld },
            fixed_sample: fixed,
            // Planned at Holm's first-step level α/K: conservative for later steps.
            power: plan(&design, distance, alpha / k, config.power, &mixture),
        },
        bounds,
    }
}

/// The always-valid bounds of Δ as a function of the level.
fn normal_bounds(mixture: NormalMixture, estimate: f64, variance: f64) -> Bounds {
    Box::new(move |a| {
        let ci = mixture.interval(estimate, variance, a);
        (ci.low, ci.high)
    })
}

/// Cochran's rule on effective counts (trials divided by the design effect).
fn is_small_effective(v: &Arm, ev: f64, r: &Arm, er: f64) -> bool {
    if v.trials == 0 || r.trials == 0 {
        return true;
    }
    let pooled = (v.successes + r.successes) as f64 / (v.trials + r.trials) as f64;
    ev.min(er) * pooled.min(1.0 - pooled) < MIN_EXPECTED_CELL
}

/// Planning variance per trial from the observed (adjusted) reference rate.
fn planning_variance(r: &Arm) -> f64 {
    let p = r.adjusted_rate();
    p * (1.0 - p)
}

fn known_design(arm: &Arm) -> Design {
    Design {
        variant_variance: arm.unit_variance(),
        reference_variance: 0.0,
        variant_trials: arm.trials,
        reference_trials: 0,
    }
}

fn known_fixed(rate: f64, n: f64, c: f64, z: f64) -> FixedSample {
    let w = wilson(rate, n, z);
    FixedSample {
        ci_low: w.low - c,
        ci_high: w.high - c,
        interval_method: "wilson_minus_known",
        p_value_worse: None,
        test: None,
    }
}

fn two_arm_fixed(v: &Arm, r: &Arm, clustered: bool, z: f64) -> FixedSample {
    let ci = newcombe(
        v.rate(),
        v.effective_trials(),
        r.rate(),
        r.effective_trials(),
        z,
    );
    let (p, test) = if v.trials == 0 || r.trials == 0 {
        (None, None)
    } else if clustered {
        let inflation = v.design_effect().max(r.design_effect());
        let p = z_test_less(v.successes, v.trials, r.successes, r.trials, inflation);
        (Some(p), Some("z_pooled_design_effect"))
    } else if is_small(v.successes, v.trials, r.successes, r.trials) {
        let f = fisher_exact(v.successes, v.trials, r.successes, r.trials);
        (Some(f.less), Some("fisher_exact"))
    } else {
        let p = z_test_less(v.successes, v.trials, r.successes, r.trials, 1.0);
        (Some(p), Some("z_pooled"))
    };
    FixedSample {
        ci_low: ci.low,
        ci_high: ci.high,
        interval_method: if clustered {
            "newcombe_hybrid_score_effective_n"
        } else {
            "newcombe_hybrid_score"
        },
        p_value_worse: p,
        test,
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
