//! Which variant of a model serves a request: a weighted split across variants (an A/B test of
//! bit-widths), sticky by a hash of a request header so one user always sees one variant, an
//! explicit per-request override when allowed, and a sampled shadow copy to a reference variant.
//! Assignment is the salted weighted rendezvous hashing of `experiment::assignment` over the
//! *configured* split (so ramps and late-loading variants move only the users they must).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::ab::settings::ExperimentSettings;
use super::experiment::assignment::{Assignment, assign, assign_random};

/// A model's routing, as configured (`[models.NAME.routing]`) or set with
/// `PUT /admin/models/{model}/routing`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Routing {
    /// Variant → weight. Empty: everything goes to the model's default variant.
    #[schema(schema_with = split_schema, required = true)]
    pub split: BTreeMap<String, u32>,
    /// Request header whose value picks the variant by hash (same value, same variant); requests
    /// without it are assigned at random.
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    pub sticky_key: Option<String>,
    /// Whether a request may name its variant (`"variant": "fp32"`).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub allow_override: bool,
    pub shadow: Option<Shadow>,
    /// The experiment this split runs: name (hashing salt), margin, alpha, power, buckets.
    pub experiment: ExperimentSettings,
}

fn yes() -> bool {
    true
}

/// The OpenAPI schema of `split`: what `validate` asks (a variant with a positive weight).
fn split_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    // At least one variant (and not every weight 0: added in `api::openapi`).
    let v = serde_json::json!({"type": "object", "minProperties": 1,
        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
        "example": {"int8": 90, "fp32": 10}});
    serde_json::from_value(v).unwrap_or_else(|_| utoipa::openapi::RefOr::T(Default::default()))
}

impl Default for Routing {
    /// No split yet; overrides allowed, no shadow.
    fn default() -> Self {
        Self {
            split: BTreeMap::new(),
            sticky_key: None,
            allow_override: true,
            shadow: None,
            experiment: ExperimentSettings::default(),
        }
    }
}

/// A sampled fraction of requests is re-run on `reference` at low priority and compared.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub reference: String,
    #[schema(minimum = 0, maximum = 1)]
    pub sample_rate: f64,
}

impl Routing {
    /// Routing that sends everything to `variant`.
    pub fn single(variant: &str) -> Self {
        Self {
            split: BTreeMap::from([(variant.to_string(), 100)]),
            ..Self::default()
        }
    }

    /// Checks the values themselves; whether the variants are loaded is the registry's call.
    pub fn validate(&self) -> Result<(), String> {
        if self.split.is_empty() || self.split.values().all(|&w| w == 0) {
            return Err("`split` needs at least one variant with a positive weight".into());
        }
        if let Some(k) = &self.sticky_key
            && (k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(format!("`sticky_key` {k:?} is not a valid header name"));
        }
        if let Some(s) = &self.shadow
            && !(0.0..=1.0).contains(&s.sample_rate)
        {
            return Err(format!(
                "`shadow.sample_rate` must be between 0 and 1, not {}",
                s.sample_rate
            ));
        }
        self.experiment.validate()
    }

    /// Variants that get traffic (positive weight).
    pub fn live_variants(&self) -> impl Iterator<Item = &str> {
        self.split
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(v, _)| v.as_str())
    }

    /// Assigns a request of `model`: by its sticky key's value (same key, same variant) or at
    /// random, over the configured split; served by the first variant in the key's preference
    /// order that `available` says can serve (a `fallback` when that is not the assigned one).
    /// `None` when no variant in the order can serve.
    pub fn assign<'a>(
        &'a self,
        model: &str,
        sticky_value: Option<&str>,
        available: impl Fn(&str) -> bool,
    ) -> Option<Assignment<'a>> {
        let split = self.split.iter().map(|(v, w)| (v.as_str(), *w));
        match sticky_value {
            Some(key) => assign(&self.experiment.id(model), key, split, available),
            None => assign_random(random_u64(), split, available),
        }
    }
}

/// A uniform random 64-bit number (not for secrets): routing and shadow sampling.
pub fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| std::hash::RandomState::new().build_hasher().finish());
    mix(seed.wrapping_add(STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)))
}

/// A uniform number in [0, 1).
pub fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pairs: &[(&str, u32)]) -> Routing {
        Routing {
            split: pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            ..Routing::default()
        }
    }

    #[test]
    fn assignments_follow_the_weights() {
        let r = split(&[("int8", 90), ("fp32", 10)]);
        let n = 100_000;
        let fp32 = (0..n)
            .filter(|_| r.assign("m", None, |_| true).unwrap().served == "fp32")
            .count();
        let share = fp32 as f64 / n as f64;
        // 10 % ± 5 standard deviations (σ ≈ 0.095 %).
        assert!((share - 0.10).abs() < 0.005, "fp32 share {share}");
    }

    #[test]
    fn unavailable_variants_fall_back_and_weightless_ones_never_serve() {
        let r = split(&[("int8", 50), ("fp32", 50), ("int4", 0)]);
        for i in 0..1000 {
            let a = r
                .assign("m", Some(&format!("u{i}")), |v| v != "fp32")
                .unwrap();
            assert_eq!(a.served, "int8");
            assert_eq!(a.fallback, a.assigned == "fp32");
        }
        assert_eq!(r.assign("m", Some("u"), |_| false), None);
    }

    #[test]
    fn sticky_keys_keep_their_variant_and_spread() {
        let r = split(&[("a", 1), ("b", 1)]);
        let a = (0..2000)
            .filter(|i| {
                let key = format!("user-{i}");
                let first = r.assign("m", Some(&key), |_| true).unwrap();
                assert_eq!(first, r.assign("m", Some(&key), |_| true).unwrap());
                first.served == "a"
            })
            .count();
        assert!((900..1100).contains(&a), "{a} of 2000 on a");
    }

    #[test]
    fn the_experiment_name_salts_the_assignment() {
        let mut r = split(&[("a", 1), ("b", 1)]);
        let before: Vec<&str> = (0..200)
            .map(|i| {
                r.assign("m", Some(&format!("u{i}")), |_| true)
                    .unwrap()
                    .assigned
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|v| if v == "a" { "a" } else { "b" })
            .collect();
        r.experiment.name = Some("bits-2".into());
        let moved = (0..200)
            .filter(|i| {
                let now = r
                    .assign("m", Some(&format!("u{i}")), |_| true)
                    .unwrap()
                    .assigned;
                now != before[*i]
            })
            .count();
        // Independent draws: about half move.
        assert!((60..140).contains(&moved), "{moved}");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(split(&[]).validate().unwrap_err().contains("split"));
        assert!(split(&[("a", 0)]).validate().is_err());
        let mut r = split(&[("a", 1)]);
        r.sticky_key = Some("bad header".into());
        assert!(r.validate().unwrap_err().contains("sticky_key"));
        r.sticky_key = Some("x-user-id".into());
        r.shadow = Some(Shadow {
            reference: "fp32".into(),
            sample_rate: 1.5,
        });
        assert!(r.validate().unwrap_err().contains("sample_rate"));
        r.shadow.as_mut().unwrap().sample_rate = 0.05;
        r.validate().unwrap();
        let parsed: Routing = serde_json::from_str(
            r#"{"split": {"int8": 90, "fp32": 10}, "sticky_key": "x-user-id",
                "allow_override": true, "shadow": {"reference": "fp32", "sample_rate": 0.05}}"#,
        )
        .unwrap();
        assert_eq!(parsed.split["int8"], 90);
        assert!(serde_json::from_str::<Routing>(r#"{"splitt": {}}"#).is_err());
        r.experiment.margin = 0.7;
        assert!(r.validate().unwrap_err().contains("margin"));
        r.experiment.margin = 0.01;
        r.experiment.name = Some("a/b".into());
        assert!(r.validate().unwrap_err().contains("experiment.name"));
    }
}
