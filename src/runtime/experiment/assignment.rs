//! Assignment of users (sticky keys) and requests to variants: salted, history-free, weighted
//! rendezvous hashing over the *configured* split.
//!
//! Each variant v with weight w > 0 draws, for a key, uᵥ = H(salt, key, v) uniform on (0, 1)
//! and the score −ln(uᵥ)/w, an Exponential(w) variable; variants are preferred in increasing
//! score ("weighted rendezvous" / highest-random-weight hashing, Thaler & Ravishankar 1998;
//! the −ln(u)/w form is the "logarithmic method" of Schindelhauer & Schomaker 2005, the same
//! exponential race as Efraimidis & Spirakis 2006's weighted sampling).
//! Because the scores are independent exponentials:
//!
//! * (a) variant v comes first with probability exactly w / Σw (an exponential race);
//! * (b) raising v's weight lowers only v's score, so users can only move *into* v; lowering it
//!   moves only v's users out; adding a variant moves users only into it (whatever its name);
//!   removing one moves only its users. Nobody else's relative order changes, because a
//!   variant's score depends on nothing but the key, the salt, its name and its own weight.
//!   The cumulative split used by `routing.rs` today has none of these properties: there a
//!   variant's interval shifts whenever a variant sorting before it changes;
//! * (c) the order is computed from the configured split alone, so replicas agree whatever they
//!   have loaded: when the first choice is not loaded the caller serves the next *loaded* one in
//!   the user's preference order and marks the request `fallback` (excluded from the analysis,
//!   still counted to its assigned variant for SRM), and the user returns as soon as it loads.
//!   Memorylessness makes the fallback shares proportional to the remaining weights;
//! * (d) the salt (one per experiment) makes different experiments' assignments independent.
//!
//! H is FNV-1a over length-prefixed bytes finished with splitmix64's mixer: fixed by this code,
//! so stable across processes, replicas and releases (std's `RandomState` is not). It is not a
//! cryptographic hash: users cannot pick their variant only because they do not control the
//! salt. Assignments are pinned by a golden test; changing H reshuffles every user.

/// Where one request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment<'a> {
    /// The variant the key is assigned to by the configured split: what SRM counts.
    pub assigned: &'a str,
    /// The variant that serves: `assigned`, or the first loaded one after it in the key's order.
    pub served: &'a str,
    /// `served != assigned`: keep the request out of the comparison.
    pub fallback: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Domain separators so the per-variant and per-bucket hashes differ from the key hash.
const VARIANT_DOMAIN: u64 = 0x9e37_79b9_7f4a_7c15;
const BUCKET_DOMAIN: u64 = 0xd1b5_4a32_d192_ed03;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// splitmix64's finalizer: a bijection with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 64-bit hash of a sticky key within an experiment (salt).
pub fn key_hash(salt: &str, key: &str) -> u64 {
    mix(fnv1a(fnv1a(FNV_OFFSET, salt.as_bytes()), key.as_bytes()))
}

/// uᵥ in (0, 1) for a key hash and a variant name.
fn variant_unit(key_hash: u64, variant: &str) -> f64 {
    let v = mix(fnv1a(FNV_OFFSET, variant.as_bytes()) ^ VARIANT_DOMAIN);
    let h = mix(mix(key_hash ^ v).wrapping_add(VARIANT_DOMAIN));
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Variants with positive weight, most preferred first, for a key hash.
fn order_for<'a>(hash: u64, split: impl IntoIterator<Item = (&'a str, u32)>) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &'a str)> = split
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .map(|(v, w)| (-variant_unit(hash, v).ln() / f64::from(w), v))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().map(|(_, v)| v).collect()
}

fn choose<'a>(order: &[&'a str], is_loaded: impl Fn(&str) -> bool) -> Option<Assignment<'a>> {
    let assigned = *order.first()?;
    let served = *order.iter().find(|v| is_loaded(v))?;
    Some(Assignment {
        assigned,
        served,
        fallback: served != assigned,
    })
}

/// A sticky key's preference order over the configured split (variants with weight 0 never
/// appear). The first is its assigned variant.
pub fn preference_order<'a>(
    salt: &str,
    key: &str,
    split: impl IntoIterator<Item = (&'a str, u32)>,
) -> Vec<&'a str> {
    order_for(key_hash(salt, key), split)
}

/// Assigns a sticky key: its assigned variant and the one that serves given what is loaded;
/// `None` when no variant has weight or none in its order is loaded.
pub fn assign<'a>(
    salt: &str,
    key: &str,
    split: impl IntoIterator<Item = (&'a str, u32)>,
    is_loaded: impl Fn(&str) -> bool,
) -> Option<Assignment<'a>> {
    choose(&preference_order(salt, key, split), is_loaded)
}

/// Assigns a request without a sticky key from a uniform 64-bit `draw` (e.g.
/// `routing::random_u64()`): the same race with the draw in place of the key's hash, so the
/// weights and the fallback rule are the same.
pub fn assign_random<'a>(
    draw: u64,
    split: impl IntoIterator<Item = (&'a str, u32)>,
    is_loaded: impl Fn(&str) -> bool,
) -> Option<Assignment<'a>> {
    choose(&order_for(mix(draw), split), is_loaded)
}

/// The hash bucket (0..buckets) a key's counts go to for the cluster-robust variance: a
/// function of the key alone, so one user's requests land in one bucket on every replica and
/// per-bucket counters can be summed across replicas (see `clustered`).
pub fn cluster_bucket(salt: &str, key: &str, buckets: u32) -> u32 {
    let h = mix(key_hash(salt, key) ^ BUCKET_DOMAIN);
    ((u128::from(h) * u128::from(buckets)) >> 64) as u32
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
