//! Seeded simulations of whole experiments: error rates under continuous monitoring, power,
//! Holm across variants, coverage with clustered users, SRM false alarms, and that summed
//! per-replica counters give the same verdict. Each prints its numbers (`--nocapture`).

use super::assignment::{assign, cluster_bucket};
use super::clustered::ClusterSums;
use super::sim::Rng;
use super::srm::srm_check;
use super::verdict::{Arm, Config, Reference, Verdict, evaluate};

/// One monitored two-arm experiment design.
struct Monitored {
    p_variant: f64,
    p_reference: f64,
    margin: f64,
    /// Trials per arm between looks.
    every: u64,
    max_trials: u64,
    experiments: usize,
    seed: u64,
    /// Stop an experiment at its first always-valid verdict.
    stop_at_verdict: bool,
}

#[derive(Default, Debug)]
struct Tally {
    /// Experiments in which the always-valid verdict was ever `inferior` / `non_inferior`.
    inferior: usize,
    non_inferior: usize,
    /// The same for the naive rule: the fixed-sample (Newcombe) interval, re-read at every look.
    naive_inferior: usize,
    naive_non_inferior: usize,
    /// Trials per arm at the first `inferior`.
    first_inferior: Vec<u64>,
}

fn monitor(m: &Monitored) -> Tally {
    let config = Config {
        margin: m.margin,
        ..Config::default()
    };
    let mut rng = Rng::new(m.seed);
    let mut t = Tally::default();
    for _ in 0..m.experiments {
        let (mut sv, mut sr, mut n) = (0, 0, 0);
        let mut seen = [false; 4];
        while n < m.max_trials {
            for _ in 0..m.every {
                sv += u64::from(rng.bernoulli(m.p_variant));
                sr += u64::from(rng.bernoulli(m.p_reference));
            }
            n += m.every;
            let reference = Reference::Arm(Arm::new(sr, n));
            let v = &evaluate(&config, &reference, &[("v", Arm::new(sv, n))])[0];
            let naive = &v.fixed_sample;
            let events = [
                v.verdict == Verdict::Inferior,
                v.verdict == Verdict::NonInferior,
                naive.ci_high < -m.margin,
                naive.ci_low > -m.margin,
            ];
            if events[0] && !seen[0] {
                t.first_inferior.push(n);
            }
            for (s, e) in seen.iter_mut().zip(events) {
                *s |= e;
            }
            if m.stop_at_verdict && v.verdict != Verdict::Inconclusive {
                break;
            }
        }
        t.inferior += usize::from(seen[0]);
        t.non_inferior += usize::from(seen[1]);
        t.naive_inferior += usize::from(seen[2]);
        t.naive_non_inferior += usize::from(seen[3]);
    }
    t
}

fn rate(count: usize, of: usize) -> f64 {
    count as f64 / of as f64
}

#[test]
fn equal_variants_are_rarely_called_inferior_however_often_one_looks() {
    // p = 0.9 in both arms, margin 1 point, a look every 50 trials per arm up to 5,000
    // (100 looks), 1,000 experiments. Wrong verdict: `inferior`.
    let m = Monitored {
        p_variant: 0.9,
        p_reference: 0.9,
        margin: 0.01,
        every: 50,
        max_trials: 5_000,
        experiments: 1_000,
        seed: 1,
        stop_at_verdict: false,
    };
    let t = monitor(&m);
    let (av, naive) = (rate(t.inferior, 1000), rate(t.naive_inferior, 1000));
    eprintln!("equal arms, δ = 0.01: false inferior {av:.3} always-valid, {naive:.3} naive; {t:?}");
    assert!(av <= 0.05, "{av}");
    assert!(naive > av);
    // The same at δ = 0, where any verdict is wrong (a plain test of difference): peeking at a
    // fixed-sample 95 % interval 100 times finds a "difference" in several times 5 % of
    // experiments; the always-valid bounds stay below 5 %.
    let t = monitor(&Monitored {
        margin: 0.0,
        seed: 2,
        ..m
    });
    let av = rate(t.inferior + t.non_inferior, 1000);
    let naive = rate(t.naive_inferior + t.naive_non_inferior, 1000);
    eprintln!("equal arms, δ = 0: any verdict {av:.3} always-valid, {naive:.3} naive");
    assert!(av <= 0.05, "{av}");
    assert!(naive > 0.15, "{naive}");
}

#[test]
fn a_variant_exactly_at_the_margin_is_rarely_called_non_inferior() {
    // The non-inferiority type I error: truth Δ = −δ (0.89 vs 0.90), 100 looks.
    let m = Monitored {
        p_variant: 0.89,
        p_reference: 0.90,
        margin: 0.01,
        every: 50,
        max_trials: 5_000,
        experiments: 1_000,
        seed: 3,
        stop_at_verdict: false,
    };
    let t = monitor(&m);
    let av = rate(t.non_inferior, 1000);
    let naive = rate(t.naive_non_inferior, 1000);
    let wrong_any = rate(t.non_inferior + t.inferior, 1000);
    eprintln!(
        "Δ = −δ: false non-inferior {av:.3} always-valid, {naive:.3} naive; any {wrong_any:.3}"
    );
    assert!(av <= 0.05 && wrong_any <= 0.05, "{t:?}");
    assert!(naive > 0.05, "{naive}");
}

#[test]
fn a_three_point_drop_is_found_inferior() {
    let m = Monitored {
        p_variant: 0.87,
        p_reference: 0.90,
        margin: 0.01,
        every: 50,
        max_trials: 20_000,
        experiments: 200,
        seed: 4,
        stop_at_verdict: true,
    };
    let mut t = monitor(&m);
    t.first_inferior.sort_unstable();
    let median = t.first_inferior[t.first_inferior.len() / 2];
    let found = rate(t.inferior, 200);
    eprintln!(
        "3-point drop: inferior in {found:.3} of experiments by 20,000/arm, median at {median}/arm"
    );
    assert!(found >= 0.95, "{found}");
    assert_eq!(t.non_inferior, 0);
    // The power calculation's always-valid sample (80 % power) is of the order observed.
    let v = &evaluate(
        &Config::default(),
        &Reference::Arm(Arm::new(900, 1000)),
        &[("v", Arm::new(870, 1000))],
    )[0];
    eprintln!("planning (equal arms, p = 0.9): {:?}", v.power);
}

#[test]
fn holm_keeps_the_family_wise_error_across_three_variants() {
    // Three variants equal to the reference, δ = 0: any verdict is wrong. A look every 100
    // trials per arm up to 3,000, 600 experiments.
    let config = Config {
        margin: 0.0,
        ..Config::default()
    };
    let (experiments, p) = (600, 0.9);
    let mut rng = Rng::new(5);
    let (mut holm, mut unadjusted) = (0, 0);
    for _ in 0..experiments {
        let mut s = [0u64; 4];
        let (mut wrong_holm, mut wrong_single) = (false, false);
        for look in 1..=30u64 {
            for _ in 0..100 {
                for x in &mut s {
                    *x += u64::from(rng.bernoulli(p));
                }
            }
            let n = 100 * look;
            let reference = Reference::Arm(Arm::new(s[0], n));
            let arms = [
                ("a", Arm::new(s[1], n)),
                ("b", Arm::new(s[2], n)),
                ("c", Arm::new(s[3], n)),
            ];
            let all = evaluate(&config, &reference, &arms);
            wrong_holm |= all.iter().any(|v| v.verdict != Verdict::Inconclusive);
            wrong_single |= arms.iter().any(|arm| {
                evaluate(&config, &reference, std::slice::from_ref(arm))[0].verdict
                    != Verdict::Inconclusive
            });
        }
        holm += usize::from(wrong_holm);
        unadjusted += usize::from(wrong_single);
    }
    let (h, u) = (rate(holm, experiments), rate(unadjusted, experiments));
    eprintln!("3 equal variants, δ = 0: family-wise error {h:.3} with Holm, {u:.3} without");
    assert!(h <= 0.05, "{h}");
    assert!(u >= h);
}

/// One arm of clustered feedback: `users` users with `per_user` feedbacks each, each user's
/// rate drawn from a Beta with mean `p` and intra-user correlation `icc` (ρ = 1/(a + b + 1)).
fn clustered_arm(rng: &mut Rng, users: usize, per_user: u64, p: f64, icc: f64) -> Vec<(u64, u64)> {
    let total = 1.0 / icc - 1.0;
    (0..users)
        .map(|_| {
            let pu = rng.beta(p * total, (1.0 - p) * total);
            (rng.binomial(per_user, pu), per_user)
        })
        .collect()
}

fn arm_from(clusters: &[(u64, u64)], with_clusters: bool) -> Arm {
    let sums = ClusterSums::from_clusters(clusters.iter().copied());
    Arm {
        successes: sums.successes as u64,
        trials: sums.trials as u64,
        users: Some(clusters.len() as u64),
        clusters: with_clusters.then_some(sums),
    }
}

#[test]
fn clustered_intervals_cover_when_users_are_correlated() {
    // 200 users, 100 per arm, 50 feedbacks each; ρ = 0.02 (design effect 1 + 49 · 0.02 = 1.98);
    // true rates 0.88 vs 0.90, Δ = −0.02. 1,000 experiments, one look each.
    let (runs, truth) = (1_000, -0.02);
    let config = Config::default();
    let mut rng = Rng::new(6);
    let mut covered = [0usize; 4];
    let mut deff = 0.0;
    for _ in 0..runs {
        let v = clustered_arm(&mut rng, 100, 50, 0.88, 0.02);
        let r = clustered_arm(&mut rng, 100, 50, 0.90, 0.02);
        let robust = &evaluate(
            &config,
            &Reference::Arm(arm_from(&r, true)),
            &[("v", arm_from(&v, true))],
        )[0];
        let naive = &evaluate(
            &config,
            &Reference::Arm(arm_from(&r, false)),
            &[("v", arm_from(&v, false))],
        )[0];
        let inside = |lo: f64, hi: f64| usize::from(lo <= truth && truth <= hi);
        covered[0] += inside(robust.fixed_sample.ci_low, robust.fixed_sample.ci_high);
        covered[1] += inside(naive.fixed_sample.ci_low, naive.fixed_sample.ci_high);
        covered[2] += inside(robust.ci_low, robust.ci_high);
        covered[3] += inside(naive.ci_low, naive.ci_high);
        deff += robust.design_effect / runs as f64;
        assert_eq!((robust.users, robust.trials), (Some(100), 5_000));
    }
    let c = covered.map(|x| rate(x, runs));
    eprintln!(
        "clustered (mean design effect {deff:.2}): 95 % coverage {:.3} user-level vs {:.3} \
         naive; always-valid {:.3} vs {:.3}",
        c[0], c[1], c[2], c[3]
    );
    assert!(c[0] >= 0.93, "{c:?}");
    assert!(c[1] < 0.90, "{c:?}");
    assert!(c[2] >= 0.95, "{c:?}");
}

#[test]
fn hash_buckets_of_users_cover_like_users() {
    // 2,000 users per arm, 10 feedbacks each, ρ = 0.1 (design effect 1.9), counted in 64 hash
    // buckets per arm as replicas would export them. 500 experiments.
    let (runs, truth) = (500, -0.02);
    let mut rng = Rng::new(7);
    let mut covered = 0;
    for run in 0..runs {
        let mut arms = Vec::new();
        for (arm, p) in [("v", 0.88), ("r", 0.90)] {
            let users = clustered_arm(&mut rng, 2_000, 10, p, 0.1);
            let mut buckets = vec![(0u64, 0u64); 64];
            for (u, (s, n)) in users.iter().enumerate() {
                let b = cluster_bucket(&format!("exp-{run}"), &format!("{arm}{u}"), 64);
                buckets[b as usize].0 += s;
                buckets[b as usize].1 += n;
            }
            arms.push(arm_from(&buckets, true));
        }
        let v = &evaluate(
            &Config::default(),
            &Reference::Arm(arms[1]),
            &[("v", arms[0])],
        )[0];
        covered += usize::from(v.fixed_sample.ci_low <= truth && truth <= v.fixed_sample.ci_high);
    }
    let c = rate(covered, runs);
    eprintln!("64 hash buckets per arm: 95 % coverage {c:.3}");
    assert!(c >= 0.93, "{c}");
}

#[test]
fn shadow_agreement_at_the_margin_is_rarely_called_non_inferior() {
    // Known reference (agreement 1), δ = 1 point; exact beta-binomial mixture.
    let config = Config::default();
    let mut rng = Rng::new(8);
    let (runs, mut wrong, mut found) = (1_000, 0, 0);
    for _ in 0..runs {
        // At the margin: true agreement 0.99, 100 looks up to 5,000.
        let (mut s, mut n, mut bad) = (0, 0, false);
        while n < 5_000 {
            s += rng.binomial(50, 0.99);
            n += 50;
            let v = &evaluate(&config, &Reference::Known(1.0), &[("v", Arm::new(s, n))])[0];
            bad |= v.verdict != Verdict::Inconclusive;
        }
        wrong += usize::from(bad);
        // A good variant, 99.8 % agreement, watched up to 10,000.
        let (mut s, mut n) = (0, 0);
        while n < 10_000 {
            s += rng.binomial(50, 0.998);
            n += 50;
            let v = &evaluate(&config, &Reference::Known(1.0), &[("v", Arm::new(s, n))])[0];
            if v.verdict == Verdict::NonInferior {
                found += 1;
                break;
            }
        }
    }
    let (w, f) = (rate(wrong, runs), rate(found, runs));
    eprintln!("shadow at the margin: wrong verdict {w:.3}; 99.8 % agreement found {f:.3}");
    assert!(w <= 0.05, "{w}");
    assert!(f >= 0.9, "{f}");
}

#[test]
fn srm_stays_quiet_on_fair_splits_and_fires_on_the_issues() {
    assert!(!srm_check(&[9_000, 1_200], &[90.0, 10.0]).valid);
    // 2,000 fair 90/10 splits of 10,200 users: false alarms at about the 0.1 % threshold.
    let mut rng = Rng::new(9);
    let alarms = (0..2_000)
        .filter(|_| {
            let b = rng.binomial(10_200, 0.1);
            !srm_check(&[10_200 - b, b], &[90.0, 10.0]).valid
        })
        .count();
    eprintln!("SRM false alarms on fair splits: {alarms} of 2000");
    assert!(alarms <= 10, "{alarms}");
    // The real assignment of 10,200 users at 90/10 passes.
    let split = [("int8", 90), ("fp32", 10)];
    let fp32 = (0..10_200)
        .filter(|i| {
            assign("exp-srm", &format!("u{i}"), split, |_| true)
                .unwrap()
                .assigned
                == "fp32"
        })
        .count() as u64;
    assert!(
        srm_check(&[10_200 - fp32, fp32], &[90.0, 10.0]).valid,
        "{fp32}"
    );
}

#[test]
fn summed_replica_counters_give_the_same_verdict() {
    // Three replicas each count per (variant, bucket); a user's requests hit any replica.
    let mut rng = Rng::new(10);
    let mut per_replica = vec![[[(0u64, 0u64); 16]; 2]; 3];
    let mut whole = [[(0u64, 0u64); 16]; 2];
    for u in 0..3_000 {
        let arm = u % 2;
        let b = cluster_bucket("exp", &format!("u{u}"), 16) as usize;
        let pu = rng.beta(if arm == 0 { 0.89 } else { 0.9 } * 19.0, 1.9);
        for _ in 0..10 {
            let ok = u64::from(rng.bernoulli(pu));
            let replica = (rng.next_u64() % 3) as usize;
            for counts in [&mut per_replica[replica][arm][b], &mut whole[arm][b]] {
                counts.0 += ok;
                counts.1 += 1;
            }
        }
    }
    let summed: Vec<Vec<(u64, u64)>> = (0..2)
        .map(|arm| {
            (0..16)
                .map(|b| {
                    per_replica
                        .iter()
                        .fold((0, 0), |acc, r| (acc.0 + r[arm][b].0, acc.1 + r[arm][b].1))
                })
                .collect()
        })
        .collect();
    let verdict = |v: &[(u64, u64)], r: &[(u64, u64)]| {
        evaluate(
            &Config::default(),
            &Reference::Arm(arm_from(r, true)),
            &[("v", arm_from(v, true))],
        )
    };
    assert_eq!(
        verdict(&summed[0], &summed[1]),
        verdict(&whole[0], &whole[1])
    );
}
