//! Shadow traffic: a sampled fraction of a variant's requests is re-run on the model's reference
//! variant through that variant's low-priority queue (which runs only when no live request
//! waits, and drops copies rather than grow), and the two answers are compared off the request
//! path. Results go to Prometheus, the A/B report and a bounded log of recent disagreements.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::ab::ExperimentBook;
use super::ab::ticket::Ticket;
use super::abtest::AbStats;
use super::compare::{Comparison, compare};
use super::pending::Pending;
use super::pool::{WorkItem, WorkerPool};
use super::registry::ModelEntry;
use crate::metrics::Metrics;
use crate::models::{Output, RunParams};

/// Disagreements kept per model.
const LOG_CAPACITY: usize = 100;
/// A shadow copy still queued after this long is dropped: the reference is too busy.
const SHADOW_DEADLINE: Duration = Duration::from_secs(30);

/// One input on which a variant and the reference disagreed.
#[derive(Clone, Debug, Serialize)]
pub struct Disagreement {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u128,
    pub request_id: Option<String>,
    pub model: String,
    pub variant: String,
    pub reference: String,
    pub input: String,
    pub output: Output,
    pub reference_output: Output,
    pub comparison: Comparison,
}

/// What to compare: one request's inputs (texts or sentences) and the live outputs.
pub struct ShadowJob {
    pub live: Arc<ModelEntry>,
    pub reference: Arc<ModelEntry>,
    pub request_id: Option<String>,
    pub inputs: Vec<String>,
    pub ids: Vec<Vec<u32>>,
    pub params: RunParams,
    pub outputs: Vec<Output>,
    /// The live request's experiment book and ticket: analysed requests' shadow comparisons
    /// count per cluster bucket there (`ab`).
    pub experiment: Option<(Arc<ExperimentBook>, Ticket)>,
}

pub struct ShadowRecorder {
    metrics: Arc<Metrics>,
    ab: Arc<AbStats>,
    log: Mutex<BTreeMap<String, VecDeque<Disagreement>>>,
}

impl ShadowRecorder {
    pub fn new(metrics: Arc<Metrics>, ab: Arc<AbStats>) -> Self {
        Self {
            metrics,
            ab,
            log: Mutex::new(BTreeMap::new()),
        }
    }

    /// Queues the job's copy on the reference's shadow queue and compares the answers when they
    /// come, on a task of its own; never waits and never fails the live request.
    pub fn submit(self: &Arc<Self>, pool: &WorkerPool, job: ShadowJob) {
        let n = job.ids.len();
        if n == 0 {
            return;
        }
        let (pending, rx) = Pending::new(n);
        let now = Instant::now();
        let items = job
            .ids
            .iter()
            .enumerate()
            .map(|(index, ids)| WorkItem {
                ids: ids.clone(),
                params: job.params,
                enqueued: now,
                deadline: now + SHADOW_DEADLINE,
                pending: pending.clone(),
                index,
            })
            .collect();
        // The comparison waits on a task of the caller's executor; without one, nothing waits.
        let Ok(executor) = tokio::runtime::Handle::try_current() else {
            self.dropped(&job, n);
            return;
        };
        if pool.submit(&job.reference.shadow_queue, items).is_err() {
            self.dropped(&job, n);
            return;
        }
        let recorder = self.clone();
        executor.spawn(async move {
            match rx.await {
                Ok(Ok(reference_outputs)) => recorder.record(&job, &reference_outputs),
                _ => recorder.dropped(&job, n),
            }
        });
    }

    fn labels(job: &ShadowJob) -> [&str; 3] {
        [
            &job.live.key.model,
            &job.live.key.variant,
            &job.reference.key.variant,
        ]
    }

    fn dropped(&self, job: &ShadowJob, n: usize) {
        self.metrics
            .shadow_dropped_total
            .with_label_values(&Self::labels(job))
            .inc_by(n as u64);
        self.ab.record_shadow_dropped(&job.live.key, n);
        if let Some((book, ticket)) = &job.experiment {
            book.record_shadow_dropped(ticket, n as u64);
        }
    }

    fn record(&self, job: &ShadowJob, reference_outputs: &[Output]) {
        let labels = Self::labels(job);
        let m = &self.metrics;
        let mut comparisons = Vec::with_capacity(job.outputs.len());
        for (i, (out, want)) in job.outputs.iter().zip(reference_outputs).enumerate() {
            let Some(c) = compare(out, want) else {
                continue;
            };
            match &c {
                Comparison::Classes {
                    mean_abs_diff,
                    js_divergence,
                    ..
                } => {
                    m.shadow_score_abs_diff
                        .with_label_values(&labels)
                        .observe(*mean_abs_diff);
                    m.shadow_js_divergence
                        .with_label_values(&labels)
                        .observe(*js_divergence);
                }
                Comparison::Text { chrf, .. } => {
                    m.shadow_chrf.with_label_values(&labels).observe(*chrf);
                }
                Comparison::Vector { cosine } => {
                    m.shadow_cosine.with_label_values(&labels).observe(*cosine);
                }
            }
            if !c.agrees() {
                self.log_disagreement(Disagreement {
                    at_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis()),
                    request_id: job.request_id.clone(),
                    model: job.live.key.model.clone(),
                    variant: job.live.key.variant.clone(),
                    reference: job.reference.key.variant.clone(),
                    input: job.inputs.get(i).cloned().unwrap_or_default(),
                    output: out.clone(),
                    reference_output: want.clone(),
                    comparison: c.clone(),
                });
            }
            comparisons.push(c);
        }
        m.shadow_comparisons_total
            .with_label_values(&labels)
            .inc_by(comparisons.len() as u64);
        m.shadow_agreements_total
            .with_label_values(&labels)
            .inc_by(comparisons.iter().filter(|c| c.agrees()).count() as u64);
        self.ab.record_shadow(&job.live.key, &comparisons);
        if let Some((book, ticket)) = &job.experiment {
            let agreed = comparisons.iter().filter(|c| c.agrees()).count();
            book.record_shadow(ticket, agreed as u64, comparisons.len() as u64);
        }
    }

    fn log_disagreement(&self, d: Disagreement) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let entries = log.entry(d.model.clone()).or_default();
        if entries.len() == LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(d);
    }

    /// The most recent disagreements of a model, newest first.
    pub fn disagreements(&self, model: &str) -> Vec<Disagreement> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.get(model)
            .map(|e| e.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}
