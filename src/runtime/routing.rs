//! Which variant of a model serves a request: a weighted split across variants (an A/B test of
//! bit-widths), sticky by a hash of a request header so one user always sees one variant, an
//! explicit per-request override when allowed, and a sampled shadow copy to a reference variant.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

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
}

fn yes() -> bool {
    true
}

/// The OpenAPI schema of `split`: what `validate` asks (at least one variant).
fn split_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
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
        Ok(())
    }

    /// Variants that get traffic (positive weight).
    pub fn live_variants(&self) -> impl Iterator<Item = &str> {
        self.split
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(v, _)| v.as_str())
    }

    /// Picks a variant among those `available` says can serve now, by `draw` (a uniform 64-bit
    /// number: a sticky key's hash or a random one). Unavailable variants' weight is shared by the
    /// others; `None` when no weighted variant is available.
    pub fn pick(&self, draw: u64, available: impl Fn(&str) -> bool) -> Option<&str> {
        let candidates: Vec<(&str, u64)> = self
            .split
            .iter()
            .filter(|(v, w)| **w > 0 && available(v))
            .map(|(v, w)| (v.as_str(), u64::from(*w)))
            .collect();
        let total: u64 = candidates.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        // Multiply-shift maps the draw onto [0, total) without modulo bias worth mentioning.
        let mut point = ((u128::from(draw) * u128::from(total)) >> 64) as u64;
        for (v, w) in candidates {
            if point < w {
                return Some(v);
            }
            point -= w;
        }
        None
    }

    /// The variant a sticky key is assigned to.
    pub fn sticky_draw(model: &str, key: &str) -> u64 {
        // FNV-1a then a mixer: stable across processes and releases (std's hasher is not), so a
        // user keeps their variant across restarts and replicas.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in model.bytes().chain([0xff]).chain(key.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        mix(h)
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
    fn picks_follow_the_weights() {
        let r = split(&[("int8", 90), ("fp32", 10)]);
        let n = 100_000;
        let fp32 = (0..n)
            .filter(|_| r.pick(random_u64(), |_| true) == Some("fp32"))
            .count();
        let share = fp32 as f64 / n as f64;
        // 10 % ± 5 standard deviations (σ ≈ 0.095 %).
        assert!((share - 0.10).abs() < 0.005, "fp32 share {share}");
    }

    #[test]
    fn unavailable_variants_pass_their_share_on() {
        let r = split(&[("int8", 50), ("fp32", 50), ("int4", 0)]);
        for _ in 0..1000 {
            assert_eq!(r.pick(random_u64(), |v| v != "fp32"), Some("int8"));
        }
        assert_eq!(r.pick(1, |_| false), None);
        assert_eq!(r.pick(u64::MAX, |_| true), Some("int8"));
        assert_eq!(r.pick(0, |_| true), Some("fp32"));
    }

    #[test]
    fn sticky_keys_keep_their_variant_and_spread() {
        let r = split(&[("a", 1), ("b", 1)]);
        let a = (0..2000)
            .filter(|i| {
                let draw = Routing::sticky_draw("m", &format!("user-{i}"));
                assert_eq!(draw, Routing::sticky_draw("m", &format!("user-{i}")));
                r.pick(draw, |_| true) == Some("a")
            })
            .count();
        assert!((900..1100).contains(&a), "{a} of 2000 on a");
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
    }
}
