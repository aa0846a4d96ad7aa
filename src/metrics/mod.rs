//! Prometheus metrics: one registry per server (so in-process test servers do not share counts),
//! rendered in the text exposition format at `/metrics`.

pub mod ab;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder, exponential_buckets, linear_buckets,
};

/// Latency buckets from 1 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    /// {model, variant, endpoint, status}
    pub requests_total: IntCounterVec,
    /// {model, variant}: from the request's arrival to its response.
    pub request_duration: HistogramVec,
    /// {model, variant}: per item, from queueing to the start of its batch.
    pub queue_duration: HistogramVec,
    /// {model, variant}: per batch.
    pub inference_duration: HistogramVec,
    pub batch_size: HistogramVec,
    /// Padded tokens per batch (size × longest).
    pub batch_tokens: HistogramVec,
    pub queue_depth: IntGaugeVec,
    /// {model, variant}: items its queue holds before answering 429.
    pub queue_capacity: IntGaugeVec,
    pub input_tokens_total: IntCounterVec,
    pub generated_tokens_total: IntCounterVec,
    /// {model, variant, scheme, bits} = bytes of weights.
    pub variant_info: IntGaugeVec,
    /// {model, variant}: the self-check agreement measured when the variant was activated.
    pub self_check_agreement: GaugeVec,
    /// {model, variant, reference}: inputs (texts or sentences) re-run on the reference.
    pub shadow_comparisons_total: IntCounterVec,
    /// {model, variant, reference}: of those, same label (classifiers) or same text (translators).
    pub shadow_agreements_total: IntCounterVec,
    /// {model, variant, reference}: sampled inputs not compared (shadow queue full or too slow).
    pub shadow_dropped_total: IntCounterVec,
    /// {model, variant, reference}: mean |p_variant − p_reference| over labels, per input.
    pub shadow_score_abs_diff: HistogramVec,
    /// {model, variant, reference}: Jensen–Shannon divergence (bits) of the scores, per input.
    pub shadow_js_divergence: HistogramVec,
    /// {model, variant, reference}: sentence chrF of the output against the reference's.
    pub shadow_chrf: HistogramVec,
    /// {model, variant, reference}: cosine similarity of an embedding to the reference's.
    pub shadow_cosine: HistogramVec,
    /// {model, variant, correct}: ground truth sent to `/v1/feedback`.
    pub feedback_total: IntCounterVec,
    /// The counters of A/B experiments' verdicts (`ab.rs`).
    pub ab: ab::AbMetrics,
    /// {listener}: connections open now.
    pub open_connections: IntGaugeVec,
    /// {listener}: connections refused because `server.max_connections` were open.
    pub connections_refused_total: IntCounterVec,
    /// {listener}: failed `accept` calls (out of file descriptors, ...).
    pub accept_errors_total: IntCounterVec,
    /// {reason}: connections closed for a slow request head (`header`) or idleness (`idle`).
    pub connections_timed_out_total: IntCounterVec,
}

const MV: &[&str] = &["model", "variant"];
const MVR: &[&str] = &["model", "variant", "reference"];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram_of = |name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| histogram_of(name, help, buckets, MV);
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let float_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let seconds = SECONDS_BUCKETS.to_vec();
        let small = vec![0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
        let metrics = Self {
            requests_total: counter(
                "quantserve_requests_total",
                "Inference requests answered, by endpoint and HTTP status.",
                &["model", "variant", "endpoint", "status"],
            ),
            request_duration: histogram(
                "quantserve_request_duration_seconds",
                "Time from a request's arrival to its response.",
                seconds.clone(),
            ),
            queue_duration: histogram(
                "quantserve_queue_duration_seconds",
                "Time an item waited in its queue before its batch started.",
                seconds.clone(),
            ),
            inference_duration: histogram(
                "quantserve_inference_duration_seconds",
                "Time to run one batch.",
                seconds,
            ),
            batch_size: histogram(
                "quantserve_batch_size",
                "Sequences per batch.",
                exponential_buckets(1.0, 2.0, 10).expect("valid buckets"),
            ),
            batch_tokens: histogram(
                "quantserve_batch_tokens",
                "Padded tokens per batch (batch size times the longest sequence).",
                exponential_buckets(8.0, 2.0, 14).expect("valid buckets"),
            ),
            queue_depth: gauge(
                "quantserve_queue_depth",
                "Items waiting in a model's queue.",
                MV,
            ),
            queue_capacity: gauge(
                "quantserve_queue_capacity",
                "Items a variant's queue holds; more are refused with 429.",
                MV,
            ),
            input_tokens_total: counter(
                "quantserve_input_tokens_total",
                "Input tokens run through a model.",
                MV,
            ),
            generated_tokens_total: counter(
                "quantserve_generated_tokens_total",
                "Tokens generated by translation models.",
                MV,
            ),
            variant_info: gauge(
                "quantserve_variant_info",
                "Loaded model variants; the value is the bytes of their weights.",
                &["model", "variant", "scheme", "bits"],
            ),
            self_check_agreement: float_gauge(
                "quantserve_self_check_agreement",
                "Agreement with the reference variant measured when the variant was activated (0-1).",
                MV,
            ),
            shadow_comparisons_total: counter(
                "quantserve_shadow_comparisons_total",
                "Inputs re-run on the reference variant and compared.",
                MVR,
            ),
            shadow_agreements_total: counter(
                "quantserve_shadow_agreements_total",
                "Compared inputs whose label (classifiers) or text (translators) equals the reference's.",
                MVR,
            ),
            shadow_dropped_total: counter(
                "quantserve_shadow_dropped_total",
                "Sampled inputs not compared because the shadow queue was full or too slow.",
                MVR,
            ),
            shadow_score_abs_diff: histogram_of(
                "quantserve_shadow_score_abs_diff",
                "Mean absolute difference of label probabilities from the reference's, per input.",
                small.clone(),
                MVR,
            ),
            shadow_js_divergence: histogram_of(
                "quantserve_shadow_js_divergence",
                "Jensen-Shannon divergence (bits) of label probabilities from the reference's.",
                small,
                MVR,
            ),
            shadow_chrf: histogram_of(
                "quantserve_shadow_chrf",
                "Sentence chrF of a translation against the reference variant's (0-100).",
                linear_buckets(10.0, 10.0, 10).expect("valid buckets"),
                MVR,
            ),
            shadow_cosine: histogram_of(
                "quantserve_shadow_cosine",
                "Cosine similarity of an embedding to the reference variant's, per input.",
                vec![0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9999, 1.0],
                MVR,
            ),
            feedback_total: counter(
                "quantserve_feedback_total",
                "Ground truth received for served requests, by whether the variant was correct.",
                &["model", "variant", "correct"],
            ),
            ab: ab::AbMetrics::register(&registry),
            open_connections: gauge(
                "quantserve_open_connections",
                "Client connections open now, by listener.",
                &["listener"],
            ),
            connections_refused_total: counter(
                "quantserve_connections_refused_total",
                "Connections refused because server.max_connections were open.",
                &["listener"],
            ),
            accept_errors_total: counter(
                "quantserve_accept_errors_total",
                "Failed accepts of new connections (e.g. out of file descriptors).",
                &["listener"],
            ),
            connections_timed_out_total: counter(
                "quantserve_connections_timed_out_total",
                "Connections closed for a request head not received in time or idleness.",
                &["reason"],
            ),
            registry,
        };
        metrics.register_process_collector();
        metrics
    }

    #[cfg(target_os = "linux")]
    fn register_process_collector(&self) {
        // CPU, memory and file descriptors of the server process (process_* metrics).
        let _ = self.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }

    #[cfg(not(target_os = "linux"))]
    fn register_process_collector(&self) {}

    /// All metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series() {
        let m = Metrics::new();
        m.requests_total
            .with_label_values(&["en-pt", "fp32", "translate", "200"])
            .inc();
        m.batch_size
            .with_label_values(&["en-pt", "fp32"])
            .observe(3.0);
        let text = m.render();
        assert!(text.contains(r#"quantserve_requests_total{endpoint="translate",model="en-pt",status="200",variant="fp32"} 1"#));
        assert!(text.contains("quantserve_batch_size_bucket"));
    }
}
