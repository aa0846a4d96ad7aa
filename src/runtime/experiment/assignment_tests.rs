//! Assignment stability over 100,000 keys: shares, ramps, late loading, new and removed
//! variants, salts. Counts of moved users are exact consequences of the scheme; shares are
//! checked within ±3σ of the configured weights.

use super::*;

const KEYS: usize = 100_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user-{i}")).collect()
}

/// Each key's assigned variant under `split` with everything loaded.
fn assigned<'a>(salt: &str, keys: &[String], split: &[(&'a str, u32)]) -> Vec<&'a str> {
    keys.iter()
        .map(|k| {
            assign(salt, k, split.iter().copied(), |_| true)
                .unwrap()
                .assigned
        })
        .collect()
}

fn count(assigned: &[&str], variant: &str) -> usize {
    assigned.iter().filter(|v| **v == variant).count()
}

/// |count − n·share| ≤ 3σ, σ = √(n·share·(1 − share)).
fn within_3_sigma(count: usize, n: usize, share: f64) {
    let (n, c) = (n as f64, count as f64);
    let sigma = (n * share * (1.0 - share)).sqrt();
    assert!(
        (c - n * share).abs() <= 3.0 * sigma,
        "{c} of {n}, expected {:.0} ± {:.0}",
        n * share,
        3.0 * sigma
    );
}

/// Today's `routing.rs` scheme, reproduced for contrast: the draw's position on the cumulative
/// weights of the *available* variants in name order.
fn cumulative_pick<'a>(draw: u64, split: &[(&'a str, u32)], available: &[&str]) -> &'a str {
    let mut live: Vec<(&str, u32)> = split
        .iter()
        .copied()
        .filter(|(v, w)| *w > 0 && available.contains(v))
        .collect();
    live.sort();
    let total: u64 = live.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut point = ((u128::from(draw) * u128::from(total)) >> 64) as u64;
    for (v, w) in live {
        if point < u64::from(w) {
            return v;
        }
        point -= u64::from(w);
    }
    unreachable!()
}

#[test]
fn assignments_are_pinned_across_processes_and_releases() {
    // Golden values: a change here reshuffles every user of every running experiment.
    let split = [("fp32", 1), ("int8", 1), ("int4", 1)];
    let order = |k: &str| preference_order("exp-1", k, split);
    assert_eq!(order("alice"), ["fp32", "int8", "int4"]);
    assert_eq!(order("bob"), ["int8", "fp32", "int4"]);
    assert_eq!(order("dave"), ["int4", "int8", "fp32"]);
    assert_eq!(order("erin"), ["fp32", "int4", "int8"]);
    assert_eq!(key_hash("exp-1", "alice"), 0xc913_f10e_8d86_2d0c);
    assert_eq!(cluster_bucket("exp-1", "alice", 128), 58);
    // Length prefixes keep (salt, key) pairs apart.
    assert_ne!(key_hash("ab", "c"), key_hash("a", "bc"));
}

#[test]
fn shares_match_the_weights() {
    let keys = keys();
    let split = [("int8", 50), ("fp32", 30), ("int4", 20), ("off", 0)];
    let a = assigned("exp-1", &keys, &split);
    within_3_sigma(count(&a, "int8"), KEYS, 0.5);
    within_3_sigma(count(&a, "fp32"), KEYS, 0.3);
    within_3_sigma(count(&a, "int4"), KEYS, 0.2);
    assert_eq!(count(&a, "off"), 0);
    // The order of the configured list does not matter.
    let mut reversed = split;
    reversed.reverse();
    assert_eq!(a, assigned("exp-1", &keys, &reversed));
    // Second choices of int8's users follow the remaining weights 30 : 20.
    let second_fp32 = keys
        .iter()
        .filter(|k| preference_order("exp-1", k, split)[0] == "int8")
        .filter(|k| preference_order("exp-1", k, split)[1] == "fp32")
        .count();
    within_3_sigma(second_fp32, count(&a, "int8"), 0.6);
}

#[test]
fn ramps_only_move_users_into_the_ramped_variant() {
    let keys = keys();
    let ramp = [10, 20, 50];
    let steps: Vec<Vec<&str>> = ramp
        .iter()
        .map(|&w| assigned("exp-1", &keys, &[("int8", 100 - w), ("int4", w)]))
        .collect();
    for (i, step) in steps.iter().enumerate() {
        within_3_sigma(count(step, "int4"), KEYS, f64::from(ramp[i]) / 100.0);
    }
    for pair in steps.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let moved: Vec<usize> = (0..KEYS).filter(|&i| before[i] != after[i]).collect();
        // Every move is int8 → int4, so the movers are exactly int4's growth.
        assert!(
            moved
                .iter()
                .all(|&i| before[i] == "int8" && after[i] == "int4")
        );
        assert_eq!(moved.len(), count(after, "int4") - count(before, "int4"));
    }
    // 10 → 20 % moves 10 % of users, 20 → 50 % another 30 %.
    let moved = |a: &[&str], b: &[&str]| (0..KEYS).filter(|&i| a[i] != b[i]).count();
    within_3_sigma(moved(&steps[0], &steps[1]), KEYS, 0.1);
    within_3_sigma(moved(&steps[1], &steps[2]), KEYS, 0.3);
    // Ramping back down only moves int4's users out.
    let down = assigned("exp-1", &keys, &[("int8", 90), ("int4", 10)]);
    assert_eq!(down, steps[0]);
}

#[test]
fn a_variant_loading_late_falls_back_then_gets_its_users_back() {
    let keys = keys();
    let split = [("int8", 50), ("fp32", 30), ("bf16", 20)];
    let before: Vec<Assignment> = keys
        .iter()
        .map(|k| assign("exp-1", k, split, |v| v != "bf16").unwrap())
        .collect();
    let after: Vec<Assignment> = keys
        .iter()
        .map(|k| assign("exp-1", k, split, |_| true).unwrap())
        .collect();
    let late_users = before.iter().filter(|a| a.assigned == "bf16").count();
    within_3_sigma(late_users, KEYS, 0.2);
    // Exactly bf16's users fall back; nobody else's variant changes, before or after.
    assert_eq!(before.iter().filter(|a| a.fallback).count(), late_users);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.assigned, a.assigned);
        assert!(!a.fallback && a.served == a.assigned);
        assert_eq!(b.fallback, b.assigned == "bf16");
    }
    // Fallbacks spread over the loaded variants by their weights, 50 : 30.
    let to_int8 = before
        .iter()
        .filter(|a| a.fallback && a.served == "int8")
        .count();
    within_3_sigma(to_int8, late_users, 0.625);
    // Contrast: today's cumulative split serves 12.5 % of users a *different loaded* variant
    // while bf16 (sorting first) loads: fp32 [0.2, 0.5) becomes [0, 0.375).
    let displaced = keys
        .iter()
        .map(|k| draw_for(k))
        .filter(|&d| {
            let full = cumulative_pick(d, &split, &["int8", "fp32", "bf16"]);
            full != "bf16" && cumulative_pick(d, &split, &["int8", "fp32"]) != full
        })
        .count();
    within_3_sigma(displaced, KEYS, 0.125);
}

/// A uniform sticky draw for the contrasts.
fn draw_for(key: &str) -> u64 {
    key_hash("routing", key)
}

#[test]
fn a_new_variant_sorting_first_only_takes_users() {
    let keys = keys();
    let old_split = [("int8", 50), ("fp32", 50)];
    let new_split = [("int8", 50), ("fp32", 50), ("a-ternary", 10)];
    let old = assigned("exp-1", &keys, &old_split);
    let new = assigned("exp-1", &keys, &new_split);
    let moved: Vec<usize> = (0..KEYS).filter(|&i| old[i] != new[i]).collect();
    assert!(moved.iter().all(|&i| new[i] == "a-ternary"));
    assert_eq!(moved.len(), count(&new, "a-ternary"));
    within_3_sigma(moved.len(), KEYS, 10.0 / 110.0);
    // Removing it again returns exactly those users.
    assert_eq!(assigned("exp-1", &keys, &old_split), old);
    // Contrast: the cumulative split moves ~4.5 % more users between int8 and fp32.
    let wrong = keys
        .iter()
        .map(|k| draw_for(k))
        .filter(|&d| {
            let n = cumulative_pick(d, &new_split, &["int8", "fp32", "a-ternary"]);
            n != "a-ternary" && n != cumulative_pick(d, &old_split, &["int8", "fp32"])
        })
        .count();
    within_3_sigma(wrong, KEYS, 0.5 - 50.0 / 110.0);
}

#[test]
fn removing_or_shrinking_a_variant_only_moves_its_users() {
    let keys = keys();
    let full = assigned("exp-1", &keys, &[("int8", 50), ("fp32", 30), ("int4", 20)]);
    let removed = assigned("exp-1", &keys, &[("int8", 50), ("int4", 20)]);
    let shrunk = assigned("exp-1", &keys, &[("int8", 50), ("fp32", 10), ("int4", 20)]);
    for i in 0..KEYS {
        if full[i] != "fp32" {
            assert_eq!(full[i], removed[i]);
            assert_eq!(full[i], shrunk[i]);
        }
    }
    let left = (0..KEYS)
        .filter(|&i| full[i] == "fp32" && shrunk[i] != "fp32")
        .count();
    assert_eq!(left, count(&full, "fp32") - count(&shrunk, "fp32"));
}

#[test]
fn salts_make_experiments_independent() {
    let keys = keys();
    let split = [("a", 1), ("b", 1)];
    let one = assigned("exp-1", &keys, &split);
    let two = assigned("exp-2", &keys, &split);
    let same = (0..KEYS).filter(|&i| one[i] == two[i]).count();
    within_3_sigma(same, KEYS, 0.5);
}

#[test]
fn random_assignment_follows_the_weights_and_falls_back() {
    let split = [("int8", 90), ("fp32", 10)];
    let mut state = 7u64;
    let mut fp32 = 0;
    for _ in 0..KEYS {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let a = assign_random(state, split, |_| true).unwrap();
        fp32 += usize::from(a.assigned == "fp32");
        let b = assign_random(state, split, |v| v == "int8").unwrap();
        assert_eq!((b.assigned, b.served), (a.assigned, "int8"));
        assert_eq!(b.fallback, a.assigned == "fp32");
    }
    within_3_sigma(fp32, KEYS, 0.1);
    assert_eq!(assign_random(1, [("a", 0)], |_| true), None);
    assert_eq!(assign_random(1, [("a", 1)], |_| false), None);
}

#[test]
fn cluster_buckets_are_uniform_and_per_key() {
    let keys = keys();
    let mut counts = [0u64; 64];
    for k in &keys {
        let b = cluster_bucket("exp-1", k, 64);
        assert_eq!(b, cluster_bucket("exp-1", k, 64));
        counts[b as usize] += 1;
    }
    // χ² goodness of fit against equal buckets (the SRM check, at p ≥ 0.001).
    let fit = super::super::srm::srm_check(&counts, &[1.0; 64]);
    assert!(fit.valid, "{fit:?}");
}
