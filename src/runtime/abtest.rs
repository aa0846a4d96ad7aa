//! Every request since start per variant, for orientation: latency percentiles over recent
//! requests, shadow agreement and online accuracy (from `/v1/feedback`) with Wilson 95%
//! intervals. Decisions come from the experiment's verdicts (`ab`), not from these.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use super::compare::Comparison;
use super::error::RuntimeError;
use super::pool::QueueKey;

/// Latencies kept per variant for the percentiles.
const LATENCY_WINDOW: usize = 10_000;
/// Served requests remembered for feedback.
const SERVED_WINDOW: usize = 100_000;
/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

#[derive(Default)]
struct VariantStats {
    requests: u64,
    errors: u64,
    latencies: VecDeque<f64>,
    shadow_compared: u64,
    shadow_agreed: u64,
    shadow_dropped: u64,
    shadow_score_sum: f64,
    feedback: u64,
    correct: u64,
}

/// A served request, kept so feedback can name it by id.
struct Served {
    key: QueueKey,
    /// Most probable label of each input (classifiers); `None` for translations.
    labels: Option<Vec<String>>,
    answered: bool,
}

/// Ground truth for one served request: the true label of one of its inputs, or a verdict.
#[derive(Clone, Debug, Default)]
pub struct Feedback {
    pub request_id: String,
    pub label: Option<String>,
    pub correct: Option<bool>,
    /// Which input of the request (default 0).
    pub index: usize,
}

#[derive(Default)]
pub struct AbStats {
    variants: Mutex<BTreeMap<QueueKey, VariantStats>>,
    served: Mutex<(HashMap<String, Served>, VecDeque<String>)>,
}

/// A proportion with its Wilson 95% interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proportion {
    pub value: f64,
    pub n: u64,
    pub ci95: [f64; 2],
}

impl Proportion {
    pub fn new(successes: u64, n: u64) -> Option<Self> {
        (n > 0).then(|| {
            let (lo, hi) = wilson(successes, n);
            Self {
                value: successes as f64 / n as f64,
                n,
                ci95: [lo, hi],
            }
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    pub variant: String,
    pub requests: u64,
    pub errors: u64,
    /// Seconds, over the most recent requests (up to 10,000).
    pub latency_p50: Option<f64>,
    pub latency_p95: Option<f64>,
    pub latency_p99: Option<f64>,
    /// Shadow agreement with the reference (label / exact text), per input.
    pub shadow_agreement: Option<Proportion>,
    /// Mean self-check score of shadow comparisons (label agreement or chrF / 100).
    pub shadow_mean_score: Option<f64>,
    pub shadow_dropped: u64,
    pub online_accuracy: Option<Proportion>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AbReport {
    pub model: String,
    pub variants: Vec<VariantReport>,
}

impl AbStats {
    fn stats(&self) -> MutexGuard<'_, BTreeMap<QueueKey, VariantStats>> {
        self.variants.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_request(&self, key: &QueueKey, ok: bool, latency: Duration) {
        let mut all = self.stats();
        let s = all.entry(key.clone()).or_default();
        s.requests += 1;
        if ok {
            if s.latencies.len() == LATENCY_WINDOW {
                s.latencies.pop_front();
            }
            s.latencies.push_back(latency.as_secs_f64());
        } else {
            s.errors += 1;
        }
    }

    pub fn record_shadow(&self, key: &QueueKey, comparisons: &[Comparison]) {
        let mut all = self.stats();
        let s = all.entry(key.clone()).or_default();
        s.shadow_compared += comparisons.len() as u64;
        s.shadow_agreed += comparisons.iter().filter(|c| c.agrees()).count() as u64;
        s.shadow_score_sum += comparisons.iter().map(Comparison::score).sum::<f64>();
    }

    pub fn record_shadow_dropped(&self, key: &QueueKey, items: usize) {
        self.stats().entry(key.clone()).or_default().shadow_dropped += items as u64;
    }

    /// Remembers a served request for later feedback (the oldest are forgotten past 100,000).
    pub fn remember(&self, request_id: &str, key: &QueueKey, labels: Option<Vec<String>>) {
        let mut guard = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.len() >= SERVED_WINDOW
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        let served = Served {
            key: key.clone(),
            labels,
            answered: false,
        };
        if map.insert(request_id.to_string(), served).is_none() {
            order.push_back(request_id.to_string());
        }
    }

    /// Records ground truth for a served request; returns its variant and whether it was right.
    pub fn feedback(&self, fb: &Feedback) -> Result<(QueueKey, bool), RuntimeError> {
        if fb.label.is_some() == fb.correct.is_some() {
            return Err(RuntimeError::BadRequest(
                "give exactly one of `label` and `correct`".into(),
            ));
        }
        let mut guard = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let served = guard.0.get_mut(&fb.request_id).ok_or_else(|| {
            RuntimeError::NotFound(format!(
                "no served request with id {:?} is remembered (ids are kept for the last {SERVED_WINDOW} requests)",
                fb.request_id
            ))
        })?;
        if served.answered {
            return Err(RuntimeError::Conflict(format!(
                "feedback for request {:?} was already recorded",
                fb.request_id
            )));
        }
        let correct = match (fb.correct, &fb.label) {
            (Some(c), _) => c,
            (None, label) => {
                let Some(labels) = &served.labels else {
                    return Err(RuntimeError::BadRequest(
                        "`label` applies to classification requests; send `correct` for a \
                         translation"
                            .into(),
                    ));
                };
                let predicted = labels.get(fb.index).ok_or_else(|| {
                    RuntimeError::BadRequest(format!(
                        "`index` {} is out of range: the request had {} inputs",
                        fb.index,
                        labels.len()
                    ))
                })?;
                label.as_ref() == Some(predicted)
            }
        };
        served.answered = true;
        let key = served.key.clone();
        drop(guard);
        let mut all = self.stats();
        let s = all.entry(key.clone()).or_default();
        s.feedback += 1;
        s.correct += u64::from(correct);
        Ok((key, correct))
    }

    /// The report of `model`'s variants (those listed, plus any with recorded traffic).
    pub fn report(&self, model: &str, variants: &[String]) -> AbReport {
        let all = self.stats();
        let mut names: Vec<String> = variants.to_vec();
        for k in all.keys().filter(|k| k.model == model) {
            if !names.contains(&k.variant) {
                names.push(k.variant.clone());
            }
        }
        let empty = VariantStats::default();
        let reports: Vec<VariantReport> = names
            .iter()
            .map(|v| {
                let s = all.get(&QueueKey::new(model, v)).unwrap_or(&empty);
                let mut sorted: Vec<f64> = s.latencies.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                VariantReport {
                    variant: v.clone(),
                    requests: s.requests,
                    errors: s.errors,
                    latency_p50: percentile(&sorted, 0.50),
                    latency_p95: percentile(&sorted, 0.95),
                    latency_p99: percentile(&sorted, 0.99),
                    shadow_agreement: Proportion::new(s.shadow_agreed, s.shadow_compared),
                    shadow_mean_score: (s.shadow_compared > 0)
                        .then(|| s.shadow_score_sum / s.shadow_compared as f64),
                    shadow_dropped: s.shadow_dropped,
                    online_accuracy: Proportion::new(s.correct, s.feedback),
                }
            })
            .collect();
        AbReport {
            model: model.into(),
            variants: reports,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Wilson score interval at 95%.
pub fn wilson(successes: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_a_hand_computed_interval() {
        // 8 of 10: the textbook Wilson 95% interval is [0.4902, 0.9433].
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(0, 50);
        assert!(lo.abs() < 1e-12);
        assert!(hi > 0.0 && hi < 0.1);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[3.0], 0.95), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn feedback_updates_accuracy() {
        let ab = AbStats::default();
        let (a, b) = (QueueKey::new("m", "int8"), QueueKey::new("m", "fp32"));
        for i in 0..200 {
            let key = if i % 2 == 0 { &a } else { &b };
            ab.remember(&format!("r{i}"), key, Some(vec!["pos".into()]));
            ab.record_request(key, true, Duration::from_millis(i));
        }
        // int8 right 90 of 100 times, fp32 80 of 100.
        for i in 0..200u64 {
            let right = if i % 2 == 0 { i % 20 != 0 } else { i % 5 != 1 };
            let fb = Feedback {
                request_id: format!("r{i}"),
                label: Some(if right { "pos" } else { "neg" }.into()),
                ..Feedback::default()
            };
            assert_eq!(ab.feedback(&fb).unwrap().1, right);
        }
        let again = Feedback {
            request_id: "r0".into(),
            correct: Some(true),
            ..Feedback::default()
        };
        assert!(matches!(
            ab.feedback(&again),
            Err(RuntimeError::Conflict(_))
        ));
        let unknown = Feedback {
            request_id: "nope".into(),
            correct: Some(true),
            ..Feedback::default()
        };
        assert!(matches!(
            ab.feedback(&unknown),
            Err(RuntimeError::NotFound(_))
        ));
        let report = ab.report("m", &["int8".into(), "fp32".into()]);
        let acc = |v: &str| {
            report
                .variants
                .iter()
                .find(|r| r.variant == v)
                .unwrap()
                .online_accuracy
                .clone()
                .unwrap()
        };
        assert_eq!((acc("int8").value, acc("int8").n), (0.9, 100));
        assert_eq!((acc("fp32").value, acc("fp32").n), (0.8, 100));
        assert!(report.variants[0].latency_p50.is_some());
    }
}
