//! The verdict of one analysis period from its totals alone: the same function runs on one
//! server's counters (`GET /v1/models/{m}/ab`) and on counters summed across replicas from
//! Prometheus (`quantserve ab-report`), so both give the same comparisons from the same totals.
//!
//! * **Metric**: online accuracy (feedback) against the reference variant's own accuracy when
//!   the reference has feedback; otherwise shadow agreement with the shadow reference (a known
//!   rate of 1, see `experiment::verdict`). One metric per period, so Holm's correction runs
//!   over one family.
//! * **Clusters**: with a sticky key, users are the randomised units: each arm's counts per
//!   hash bucket give the cluster-robust variance.
//! * **SRM**: distinct users by assigned variant with a sticky key, else requests by assigned
//!   variant (fallbacks included), against the configured weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::runtime::experiment::clustered::ClusterSums;
use crate::runtime::experiment::power::Trials;
use crate::runtime::experiment::srm::srm_check;
use crate::runtime::experiment::verdict::{self, Arm, Method, Reference, Verdict};

/// (successes, trials) per cluster bucket.
pub type Buckets = BTreeMap<u32, (u64, u64)>;

/// One variant's sums over a period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmTotals {
    /// Configured weight in this period (0: not in the split).
    pub weight: u32,
    /// Requests assigned to it by the split (fallbacks included, overrides not).
    pub assigned: u64,
    /// Distinct sticky keys assigned to it (`None` without a sticky key).
    pub users: Option<u64>,
    /// Requests it served as the assigned variant (the analysed ones).
    pub requests: u64,
    /// Of those, failures and timeouts (client errors not counted at all).
    pub failures: u64,
    pub feedback: Buckets,
    pub shadow: Buckets,
    /// Analysed inputs sampled for shadow comparison but dropped (queue full or too slow).
    pub shadow_dropped: u64,
}

fn sum(b: &Buckets) -> (u64, u64) {
    b.values().fold((0, 0), |(s, n), (a, b)| (s + a, n + b))
}

impl ArmTotals {
    pub fn feedback_trials(&self) -> u64 {
        sum(&self.feedback).1
    }

    pub fn shadow_compared(&self) -> u64 {
        sum(&self.shadow).1
    }

    fn arm(&self, metric: Metric, sticky: bool) -> Arm {
        let buckets = match metric {
            Metric::OnlineAccuracy => &self.feedback,
            Metric::ShadowAgreement => &self.shadow,
        };
        let (successes, trials) = sum(buckets);
        Arm {
            successes,
            trials,
            users: self.users,
            clusters: sticky.then(|| ClusterSums::from_clusters(buckets.values().copied())),
        }
    }
}

/// A period's totals: what the verdict is a function of.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodTotals {
    /// The variant online accuracy is compared with.
    pub reference: String,
    /// The variant shadow copies run on (shadow agreement is measured against it).
    pub shadow_reference: Option<String>,
    pub sticky: bool,
    pub arms: BTreeMap<String, ArmTotals>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    OnlineAccuracy,
    ShadowAgreement,
}

/// One variant against the reference, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub variant: String,
    pub reference: String,
    pub metric: Metric,
    pub rate: f64,
    pub reference_rate: f64,
    pub trials: u64,
    pub reference_trials: u64,
    pub users: Option<u64>,
    /// rate − reference rate.
    pub difference: f64,
    /// Always-valid bounds of the difference at `ci_level` (Holm-adjusted).
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
    pub margin: f64,
    pub verdict: Verdict,
    pub p_value_always_valid: f64,
    pub p_value_holm: f64,
    pub method: Method,
    pub design_effect: f64,
    /// Why no verdict yet: `no_data` or `small_counts`.
    pub withheld: Option<&'static str>,
    /// Smallest drop beyond the margin the always-valid bounds resolve now with the power.
    pub mde: f64,
    /// Trials per arm the verdict needs at that power if the variant is as good as the
    /// reference (`None`: not reachable).
    pub needed_per_arm: Option<Trials>,
    pub remaining_per_arm: Option<Trials>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SrmReport {
    /// `users` (sticky key) or `requests`.
    pub unit: &'static str,
    pub variants: Vec<String>,
    pub observed: Vec<u64>,
    pub expected: Vec<f64>,
    pub p_value: f64,
    /// False when p < 0.001: the split is not what was configured, and no verdict should be
    /// trusted until the cause is found.
    pub valid: bool,
}

/// The power figures of the comparison that needs most (the experiment runs until it is met).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PowerReport {
    pub power: f64,
    pub mde: Option<f64>,
    pub needed_per_arm: Option<Trials>,
    pub remaining_per_arm: Option<Trials>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    pub metric: Metric,
    pub margin: f64,
    pub alpha: f64,
    pub comparisons: Vec<Comparison>,
    pub srm: SrmReport,
    pub power: PowerReport,
}

/// The period's metric: feedback when the reference has any, else shadow agreement when any
/// variant has shadow comparisons, else feedback (nothing to judge yet).
pub fn metric(t: &PeriodTotals) -> Metric {
    let has_feedback = t
        .arms
        .get(&t.reference)
        .is_some_and(|a| a.feedback_trials() > 0);
    let has_shadow =
        t.shadow_reference.is_some() && t.arms.values().any(|a| a.shadow_compared() > 0);
    if !has_feedback && has_shadow {
        Metric::ShadowAgreement
    } else {
        Metric::OnlineAccuracy
    }
}

/// Compares every variant in the period (weighted, or with data) with the reference.
pub fn analyse(config: &verdict::Config, t: &PeriodTotals) -> Analysis {
    let metric = metric(t);
    let reference_name = match metric {
        Metric::OnlineAccuracy => t.reference.clone(),
        Metric::ShadowAgreement => t.shadow_reference.clone().unwrap_or_default(),
    };
    let reference = match metric {
        Metric::OnlineAccuracy => Reference::Arm(
            t.arms
                .get(&t.reference)
                .map(|a| a.arm(metric, t.sticky))
                .unwrap_or_default(),
        ),
        Metric::ShadowAgreement => Reference::Known(1.0),
    };
    let compared: Vec<(&str, Arm)> = t
        .arms
        .iter()
        .filter(|(name, a)| {
            **name != reference_name
                && (a.weight > 0 || a.requests > 0 || a.arm(metric, false).trials > 0)
        })
        .map(|(name, a)| (name.as_str(), a.arm(metric, t.sticky)))
        .collect();
    let verdicts = verdict::evaluate(config, &reference, &compared);
    let comparisons: Vec<Comparison> = verdicts
        .into_iter()
        .map(|v| Comparison {
            reference: reference_name.clone(),
            metric,
            rate: v.rate,
            reference_rate: v.reference_rate,
            trials: v.trials,
            reference_trials: v.reference_trials,
            users: v.users,
            difference: v.difference,
            ci_low: v.ci_low,
            ci_high: v.ci_high,
            ci_level: v.ci_level,
            margin: v.margin,
            verdict: v.verdict,
            p_value_always_valid: v.p_value_always_valid,
            p_value_holm: v.p_value_holm,
            method: v.method,
            design_effect: v.design_effect,
            withheld: v.withheld,
            mde: v.power.mde_always_valid,
            needed_per_arm: v.power.needed_always_valid,
            remaining_per_arm: v.power.remaining_always_valid,
            variant: v.variant,
        })
        .collect();
    let worst = comparisons
        .iter()
        .max_by_key(|c| c.needed_per_arm.map_or(u64::MAX, |n| n.variant));
    let power = PowerReport {
        power: config.power,
        mde: worst.map(|c| c.mde),
        needed_per_arm: worst.and_then(|c| c.needed_per_arm),
        remaining_per_arm: worst.and_then(|c| c.remaining_per_arm),
    };
    Analysis {
        metric,
        margin: config.margin,
        alpha: config.alpha,
        srm: srm(t),
        power,
        comparisons,
    }
}

fn srm(t: &PeriodTotals) -> SrmReport {
    let arms: Vec<(&String, &ArmTotals)> = t
        .arms
        .iter()
        .filter(|(_, a)| a.weight > 0 || a.assigned > 0)
        .collect();
    let observed: Vec<u64> = arms
        .iter()
        .map(|(_, a)| {
            if t.sticky {
                a.users.unwrap_or(0)
            } else {
                a.assigned
            }
        })
        .collect();
    let weights: Vec<f64> = arms.iter().map(|(_, a)| f64::from(a.weight)).collect();
    let check = srm_check(&observed, &weights);
    SrmReport {
        unit: if t.sticky { "users" } else { "requests" },
        variants: arms.iter().map(|(n, _)| (*n).clone()).collect(),
        observed,
        expected: check.expected,
        p_value: check.p_value,
        valid: check.valid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(weight: u32, feedback: &[(u32, u64, u64)]) -> ArmTotals {
        ArmTotals {
            weight,
            feedback: feedback.iter().map(|&(b, s, n)| (b, (s, n))).collect(),
            ..ArmTotals::default()
        }
    }

    #[test]
    fn a_three_point_drop_is_inferior_and_an_equal_variant_non_inferior() {
        let mut t = PeriodTotals {
            reference: "fp32".into(),
            ..PeriodTotals::default()
        };
        t.arms
            .insert("fp32".into(), arm(34, &[(0, 36_000, 40_000)]));
        t.arms
            .insert("int8".into(), arm(33, &[(0, 36_000, 40_000)]));
        t.arms
            .insert("int4".into(), arm(33, &[(0, 34_800, 40_000)]));
        let config = verdict::Config {
            margin: 0.01,
            ..verdict::Config::default()
        };
        let a = analyse(&config, &t);
        assert_eq!(a.metric, Metric::OnlineAccuracy);
        let by = |v: &str| a.comparisons.iter().find(|c| c.variant == v).unwrap();
        assert_eq!(by("int8").verdict, Verdict::NonInferior);
        assert_eq!(by("int4").verdict, Verdict::Inferior);
        assert!((by("int4").difference + 0.03).abs() < 1e-12);
        assert_eq!(
            a.comparisons.len(),
            2,
            "the reference is not compared with itself"
        );
        // No assignments were counted: SRM has nothing to say.
        assert!(a.srm.valid);
    }

    #[test]
    fn srm_counts_users_with_a_sticky_key_and_flags_a_skew() {
        let mut t = PeriodTotals {
            reference: "fp32".into(),
            sticky: true,
            ..PeriodTotals::default()
        };
        let mut a = arm(90, &[]);
        a.users = Some(9_000);
        let mut b = arm(10, &[]);
        b.users = Some(1_200);
        b.assigned = 50_000;
        t.arms.insert("int8".into(), a);
        t.arms.insert("fp32".into(), b);
        let s = analyse(&verdict::Config::default(), &t).srm;
        assert_eq!(s.unit, "users");
        assert!(!s.valid && s.p_value < 1e-6, "{s:?}");
    }

    #[test]
    fn without_feedback_shadow_agreement_is_compared_with_one() {
        let mut t = PeriodTotals {
            reference: "fp32".into(),
            shadow_reference: Some("fp32".into()),
            ..PeriodTotals::default()
        };
        t.arms.insert("fp32".into(), arm(50, &[]));
        let mut int8 = arm(50, &[]);
        int8.shadow = BTreeMap::from([(0, (2_000, 2_000))]);
        t.arms.insert("int8".into(), int8);
        let a = analyse(&verdict::Config::default(), &t);
        assert_eq!(a.metric, Metric::ShadowAgreement);
        assert_eq!(a.comparisons[0].verdict, Verdict::NonInferior);
        assert_eq!(a.comparisons[0].method, Method::BetaBinomialMixture);
    }
}
