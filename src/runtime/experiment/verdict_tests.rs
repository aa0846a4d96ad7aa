//! Verdicts on hand-picked cases, Holm's step-down, and the invariants that tie the verdict to
//! the reported bounds.

use super::*;
use crate::runtime::experiment::sim::Rng;

fn one(reference: Reference, arm: Arm) -> VariantVerdict {
    evaluate(&Config::default(), &reference, &[("v", arm)]).remove(0)
}

#[test]
fn the_issues_small_table_is_withheld_and_tested_exactly() {
    // Variant 10/10 vs reference 85/90: far too few failures for any verdict; Fisher's
    // one-sided test of "the variant is worse" gives p = 1 (see proportions::fisher_exact).
    let v = one(Reference::Arm(Arm::new(85, 90)), Arm::new(10, 10));
    assert_eq!(v.verdict, Verdict::Inconclusive);
    assert_eq!(v.withheld, Some("small_counts"));
    assert_eq!(v.fixed_sample.test, Some("fisher_exact"));
    assert!((v.fixed_sample.p_value_worse.unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(v.p_value_holm, 1.0);
    let empty = one(Reference::Arm(Arm::new(85, 90)), Arm::new(0, 0));
    assert_eq!(empty.withheld, Some("no_data"));
}

#[test]
fn clear_cases_get_clear_verdicts() {
    // A broken variant: 60 % against 95 %, 200 trials each.
    let broken = one(Reference::Arm(Arm::new(190, 200)), Arm::new(120, 200));
    assert_eq!(broken.verdict, Verdict::Inferior, "{broken:?}");
    assert!(broken.ci_high < -0.01 && broken.p_value_always_valid < 1e-6);
    assert_eq!(broken.method, Method::MsprtNormalMixture);
    // Equal at 90 % over 100,000 each: non-inferior at a 1-point margin.
    let equal = one(
        Reference::Arm(Arm::new(90_000, 100_000)),
        Arm::new(90_000, 100_000),
    );
    assert_eq!(equal.verdict, Verdict::NonInferior, "{equal:?}");
    assert!(equal.ci_low > -0.01 && equal.ci_low < 0.0 && equal.difference == 0.0);
    // The always-valid bounds are wider than the fixed-sample ones.
    assert!(equal.ci_low < equal.fixed_sample.ci_low);
    assert_eq!(equal.fixed_sample.test, Some("z_pooled"));
    let json = serde_json::to_value(&equal).unwrap();
    assert_eq!(json["verdict"], "non_inferior");
    assert_eq!(json["method"], "msprt_normal_mixture");
}

#[test]
fn shadow_agreement_is_compared_with_a_known_reference() {
    // 99.8 % agreement over 5,000 comparisons: exact beta-binomial bounds clear 99 %.
    let good = one(Reference::Known(1.0), Arm::new(4_990, 5_000));
    assert_eq!(good.method, Method::BetaBinomialMixture);
    assert_eq!(good.verdict, Verdict::NonInferior, "{good:?}");
    assert!((good.difference + 0.002).abs() < 1e-12 && good.reference_trials == 0);
    assert!(good.ci_high <= 0.0 && good.fixed_sample.p_value_worse.is_none());
    // 97 % agreement: inferior at a 1-point margin.
    let bad = one(Reference::Known(1.0), Arm::new(2_910, 3_000));
    assert_eq!(bad.verdict, Verdict::Inferior, "{bad:?}");
    // With per-user sums the cluster-robust normal mixture is used instead.
    let clusters = ClusterSums::from_clusters((0..100).map(|i| (if i < 2 { 40 } else { 50 }, 50)));
    let clustered = Arm {
        clusters: Some(clusters),
        ..Arm::new(4_980, 5_000)
    };
    let c = one(Reference::Known(1.0), clustered);
    assert_eq!(c.method, Method::MsprtNormalMixtureClustered);
    assert!(c.design_effect > 1.0, "{c:?}");
}

#[test]
fn holm_holds_back_evidence_that_only_one_test_at_a_time_would_accept() {
    // Find a sample where one equal variant's p-value is in (α/2, α]: alone it is
    // non-inferior; two such variants tested together each need p ≤ α/2 at Holm's first step.
    let reference = |n: u64| Reference::Arm(Arm::new(9 * n / 10, n));
    let arm = |n: u64| Arm::new(9 * n / 10, n);
    let n = (50..)
        .map(|i| 200 * i)
        .find(|&n| one(reference(n), arm(n)).verdict == Verdict::NonInferior)
        .unwrap();
    let alone = one(reference(n), arm(n));
    assert!(alone.p_value_always_valid > 0.025, "{alone:?}");
    let both = evaluate(
        &Config::default(),
        &reference(n),
        &[("a", arm(n)), ("b", arm(n))],
    );
    for v in &both {
        assert_eq!(v.verdict, Verdict::Inconclusive);
        assert!((v.p_value_holm - (2.0 * alone.p_value_always_valid).min(1.0)).abs() < 1e-12);
        // Reported at the failed first step's level, 1 − α/2, the bound does not clear −δ.
        assert!((v.ci_level - 0.975).abs() < 1e-12 && v.ci_low <= -0.01);
    }
}

#[test]
fn verdicts_agree_with_their_bounds() {
    let mut rng = Rng::new(11);
    let config = Config::default();
    for _ in 0..2_000 {
        let draw = |rng: &mut Rng| {
            let n = 1 + rng.next_u64() % 20_000;
            let p = 0.8 + 0.2 * rng.unit();
            Arm::new(rng.binomial(n.min(3_000), p) * n / n.min(3_000), n)
        };
        let reference = Reference::Arm(draw(&mut rng));
        let k = 1 + (rng.next_u64() % 3) as usize;
        let arms: Vec<Arm> = (0..k).map(|_| draw(&mut rng)).collect();
        let named: Vec<(&str, Arm)> = arms.iter().map(|a| ("v", *a)).collect();
        for v in evaluate(&config, &reference, &named) {
            let m = -config.margin;
            let decided = v.verdict != Verdict::Inconclusive;
            assert_eq!(
                decided,
                v.withheld.is_none() && v.p_value_holm <= config.alpha
            );
            match v.verdict {
                Verdict::NonInferior => assert!(v.ci_low > m),
                Verdict::Inferior => assert!(v.ci_high < m),
                Verdict::Inconclusive if v.withheld.is_none() => {
                    assert!(v.ci_low <= m && m <= v.ci_high, "{v:?}")
                }
                Verdict::Inconclusive => {}
            }
            assert!(v.ci_low <= v.difference && v.difference <= v.ci_high);
            assert!(v.p_value_holm >= v.p_value_always_valid || v.withheld.is_some());
        }
    }
}
