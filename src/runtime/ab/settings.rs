//! What an experiment is configured with (`[models.NAME.routing.experiment]`, or the
//! `experiment` object of `PUT /admin/models/{model}/routing`): its name, which salts the user
//! hashing and names it in reports and metrics, and the verdicts' margin, α and power.

use serde::{Deserialize, Serialize};

use crate::runtime::experiment::verdict;

/// Cluster buckets per variant when a sticky key is set: enough clusters for a stable
/// cluster-robust variance (64 to 128, see `experiment::clustered`), few enough that the
/// Prometheus series stay bounded (variants × 2 metrics × 64 per period).
pub const DEFAULT_BUCKETS: u32 = 64;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentSettings {
    /// The experiment's id and hashing salt; default: the model's name. A new name is a new
    /// experiment: every user is drawn afresh and the periods start again at 1.
    #[schema(pattern = "^[A-Za-z0-9_.-]+$")]
    pub name: Option<String>,
    /// Non-inferiority margin on the rate scale (0.01 = one percentage point).
    #[schema(minimum = 0, exclusive_maximum = 0.5, default = 0.01)]
    pub margin: f64,
    /// Chance of any wrong verdict, over all variants and all looks.
    #[schema(exclusive_minimum = 0, exclusive_maximum = 0.5, default = 0.05)]
    pub alpha: f64,
    /// Power the "trials needed" figures are for.
    #[schema(exclusive_minimum = 0.5, exclusive_maximum = 1, default = 0.8)]
    pub power: f64,
    /// Cluster buckets of users (used only with a sticky key).
    #[schema(minimum = 1, maximum = 1024, default = 64)]
    pub buckets: u32,
}

impl Default for ExperimentSettings {
    fn default() -> Self {
        let v = verdict::Config::default();
        Self {
            name: None,
            margin: v.margin,
            alpha: v.alpha,
            power: v.power,
            buckets: DEFAULT_BUCKETS,
        }
    }
}

impl ExperimentSettings {
    /// The experiment id of `model`'s routing.
    pub fn id(&self, model: &str) -> String {
        self.name.clone().unwrap_or_else(|| model.to_string())
    }

    pub fn verdict_config(&self) -> verdict::Config {
        verdict::Config {
            margin: self.margin,
            alpha: self.alpha,
            power: self.power,
            tau: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = &self.name
            && (n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(format!(
                "`experiment.name` {n:?} may hold only letters, digits, `-`, `_` and `.`"
            ));
        }
        if !(0.0..0.5).contains(&self.margin) {
            return Err(format!(
                "`experiment.margin` must be in [0, 0.5), not {}",
                self.margin
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(format!(
                "`experiment.alpha` must be in (0, 0.5), not {}",
                self.alpha
            ));
        }
        if !(self.power > 0.5 && self.power < 1.0) {
            return Err(format!(
                "`experiment.power` must be in (0.5, 1), not {}",
                self.power
            ));
        }
        if !(1..=1024).contains(&self.buckets) {
            return Err(format!(
                "`experiment.buckets` must be between 1 and 1024, not {}",
                self.buckets
            ));
        }
        Ok(())
    }
}
