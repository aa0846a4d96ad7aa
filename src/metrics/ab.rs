//! The counters an experiment's verdict is a function of, so `quantserve ab-report` can
//! compute it from Prometheus summed across replicas and restarts (`runtime::ab::analysis`).
//!
//! Labels and their bound (series per model): `experiment` (one at a time), `period` (grows by
//! one per split change, hot swap or reference change), `variant` (V), `metric`
//! (`feedback` | `shadow`), `bucket` (B = 64 cluster buckets with a sticky key, else `0`).
//! Per period: 2 × 2 × V × B counters of trials and successes (768 for V = 3, B = 64, at most;
//! buckets appear only when used), and V × (5 + histogram buckets) others. No label takes a
//! value a client chooses: users are hashed into the fixed buckets.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Latency bounds of the per-variant histogram (seconds); failures are counted apart and rank
/// above every bound.
pub const AB_LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
];

const MEP: &[&str] = &["model", "experiment", "period"];
const MEPV: &[&str] = &["model", "experiment", "period", "variant"];
const MEPVMB: &[&str] = &[
    "model",
    "experiment",
    "period",
    "variant",
    "metric",
    "bucket",
];

pub struct AbMetrics {
    /// {model, experiment, period, variant, metric, bucket}: compared units (feedback on an
    /// input, or one input compared with the shadow reference), analysed requests only.
    pub trials: IntCounterVec,
    /// Same labels: of those, correct (feedback) or agreeing (shadow).
    pub successes: IntCounterVec,
    /// {model, experiment, period, variant}: requests by *assigned* variant (fallbacks included).
    pub assignments: IntCounterVec,
    /// Same labels: sticky keys first seen by this replica in the period, by assigned variant
    /// (sums across replicas count a user once per replica that saw them).
    pub users: IntCounterVec,
    /// Same labels: analysed requests served and, of them, failures and timeouts.
    pub requests: IntCounterVec,
    pub failures: IntCounterVec,
    /// Same labels: analysed inputs sampled for shadow comparison and dropped.
    pub shadow_dropped: IntCounterVec,
    /// Same labels: latency of analysed requests that succeeded.
    pub latency: HistogramVec,
    /// Same labels: the variant's configured weight in the period.
    pub weight: IntGaugeVec,
    /// {model, experiment, period, reference, shadow_reference, sticky, margin, alpha, power}:
    /// the period's start (Unix seconds).
    pub period_info: IntGaugeVec,
}

impl AbMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "quantserve_ab_latency_seconds",
                "Latency of analysed requests that succeeded, per experiment period and variant.",
            )
            .buckets(AB_LATENCY_BOUNDS.to_vec()),
            MEPV,
        )
        .expect("valid histogram");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        let mut info_labels = MEP.to_vec();
        info_labels.extend([
            "reference",
            "shadow_reference",
            "sticky",
            "margin",
            "alpha",
            "power",
        ]);
        Self {
            trials: counter(
                "quantserve_ab_trials_total",
                "Compared units (feedback or shadow comparisons) of analysed requests.",
                MEPVMB,
            ),
            successes: counter(
                "quantserve_ab_successes_total",
                "Of the compared units, correct (feedback) or agreeing (shadow).",
                MEPVMB,
            ),
            assignments: counter(
                "quantserve_ab_assignments_total",
                "Requests by assigned variant (fallbacks included, overrides not).",
                MEPV,
            ),
            users: counter(
                "quantserve_ab_users_total",
                "Sticky keys first seen in the period by this replica, by assigned variant.",
                MEPV,
            ),
            requests: counter(
                "quantserve_ab_requests_total",
                "Analysed requests served by their assigned variant.",
                MEPV,
            ),
            failures: counter(
                "quantserve_ab_failures_total",
                "Analysed requests that failed or timed out.",
                MEPV,
            ),
            shadow_dropped: counter(
                "quantserve_ab_shadow_dropped_total",
                "Analysed inputs sampled for shadow comparison and dropped.",
                MEPV,
            ),
            latency,
            weight: gauge(
                "quantserve_ab_weight",
                "A variant's configured weight in an experiment period.",
                MEPV,
            ),
            period_info: gauge(
                "quantserve_ab_period_info",
                "An experiment period's settings (labels); the value is its start, Unix seconds.",
                &info_labels,
            ),
        }
    }
}
