//! One input run on several variants of a model, each answer compared with the reference
//! variant's (`POST /v1/compare`, the web console's compare mode): the outputs side by side with
//! their latency and the same measures the self-check and shadow traffic use (label agreement
//! and probability difference, chrF, cosine).
//!
//! The variants run one after another, not at once, so each latency is that variant's alone and
//! not a share of the cores with the others. Each run is an ordinary request on its variant that
//! names it: an override, so the model's experiment leaves it out of its analysis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Runtime;
use super::compare::{Comparison, compare};
use super::error::RuntimeError;
use super::registry::ModelEntry;
use super::request::{ClassifyRequest, EmbedRequest, RouteHeaders, TranslateRequest};
use crate::models::{LabelScore, Output, Task, Translation};

/// Leading components of an embedding shown in an answer (the whole vector is hundreds long).
const VECTOR_HEAD: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct CompareRequest {
    pub model: String,
    pub input: String,
    /// Every ready variant of the model when empty.
    pub variants: Vec<String>,
    /// The model's reference variant when `None`.
    pub reference: Option<String>,
    pub truncate: bool,
    /// Per variant's run; the configured default when `None`.
    pub timeout: Option<Duration>,
}

/// One variant's answer.
#[derive(Clone, Debug, Serialize)]
pub struct VariantAnswer {
    pub variant: String,
    pub scheme: String,
    pub bits: Option<u32>,
    /// Wall time of this variant's request, in milliseconds.
    pub latency_ms: f64,
    /// The task's output (`text`; `label`, `score`, `scores`; `dims`, `norm`, `head`), or
    /// `None` when the run failed.
    pub output: Option<serde_json::Value>,
    /// Against the reference's output; `None` for the reference itself or when either failed.
    pub agreement: Option<Comparison>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompareResponse {
    pub model: String,
    pub task: &'static str,
    /// The variant the others are compared with; `None` when it is not among the ready ones.
    pub reference: Option<String>,
    pub results: Vec<VariantAnswer>,
}

impl Runtime {
    /// Runs `req.input` on each requested (or every ready) variant of `req.model`, the reference
    /// first, and compares the others' outputs with the reference's.
    pub async fn compare_variants(
        &self,
        req: CompareRequest,
    ) -> Result<CompareResponse, RuntimeError> {
        if req.input.trim().is_empty() {
            return Err(RuntimeError::BadRequest("`input` is empty".into()));
        }
        self.check_inputs(std::slice::from_ref(&req.input))?;
        super::service::check_timeout(req.timeout)?;
        let view = self
            .registry
            .views(|_| 0)
            .into_iter()
            .find(|m| m.name == req.model)
            .ok_or_else(|| RuntimeError::UnknownModel(req.model.clone()))?;
        if !view.routing.allow_override {
            return Err(RuntimeError::Forbidden(format!(
                "model `{}` does not allow choosing a variant (allow_override = false), so its \
                 variants cannot be compared",
                req.model
            )));
        }
        let reference = req.reference.clone().unwrap_or(view.reference.clone());
        let names: Vec<String> = if req.variants.is_empty() {
            view.variants
                .iter()
                .filter(|v| v.engine.is_some())
                .map(|v| v.name.clone())
                .collect()
        } else {
            req.variants.clone()
        };
        if names.is_empty() {
            return Err(RuntimeError::NotReady(format!(
                "no variant of `{}` is ready",
                req.model
            )));
        }
        if names.len() > self.config.limits.max_inputs.max(16) {
            return Err(RuntimeError::TooLarge(format!(
                "{} variants; at most {} per comparison",
                names.len(),
                self.config.limits.max_inputs.max(16)
            )));
        }
        // Resolve all first: an unknown or unready variant named by the caller is its error.
        let entries: Vec<Arc<ModelEntry>> = names
            .iter()
            .map(|v| self.registry.resolve(&req.model, v))
            .collect::<Result<_, _>>()?;
        let task = entries[0].engine.task();
        let has_reference = names.contains(&reference);
        let mut order: Vec<usize> = (0..entries.len()).collect();
        // The reference runs first, so a slow first call (cold caches) is not charged to a variant.
        order.sort_by_key(|&i| names[i] != reference);
        let mut runs: Vec<Option<(f64, Result<Output, RuntimeError>)>> =
            entries.iter().map(|_| None).collect();
        for i in order {
            let started = Instant::now();
            let out = self.run_one(task, entries[i].clone(), &req).await;
            runs[i] = Some((started.elapsed().as_secs_f64() * 1000.0, out));
        }
        let reference_output = names
            .iter()
            .position(|n| *n == reference)
            .and_then(|i| runs[i].as_ref())
            .and_then(|(_, r)| r.as_ref().ok())
            .cloned();
        let results = entries
            .iter()
            .zip(runs)
            .map(|(entry, run)| {
                let (latency_ms, out) = run.unwrap_or((0.0, Err(RuntimeError::ShuttingDown)));
                let is_reference = entry.key.variant == reference;
                let (output, agreement, error) = match out {
                    Ok(o) => {
                        let agreement = reference_output
                            .as_ref()
                            .filter(|_| !is_reference)
                            .and_then(|r| compare(&o, r));
                        (Some(output_json(&o)), agreement, None)
                    }
                    Err(e) => (None, None, Some(e.to_string())),
                };
                VariantAnswer {
                    variant: entry.key.variant.clone(),
                    scheme: entry.kind.scheme.clone(),
                    bits: entry.kind.bits,
                    latency_ms,
                    output,
                    agreement,
                    error,
                }
            })
            .collect();
        Ok(CompareResponse {
            model: req.model,
            task: task.as_str(),
            reference: has_reference.then_some(reference),
            results,
        })
    }

    /// The input on one variant, as the task's model output.
    async fn run_one(
        &self,
        task: Task,
        entry: Arc<ModelEntry>,
        req: &CompareRequest,
    ) -> Result<Output, RuntimeError> {
        let (model, variant) = (Some(req.model.clone()), Some(entry.key.variant.clone()));
        let inputs = vec![req.input.clone()];
        // A comparison names its variants: an override, left out of the model's experiment.
        let (_, ticket) =
            self.route_ticketed(&req.model, variant.as_deref(), &RouteHeaders::default())?;
        match task {
            Task::Classify => {
                let r = ClassifyRequest {
                    model,
                    variant,
                    inputs,
                    truncate: req.truncate,
                    timeout: req.timeout,
                    ..ClassifyRequest::default()
                };
                let mut resp = self.classify_on(entry, ticket, r).await?;
                Ok(Output::Classes(resp.results.pop().unwrap_or_default()))
            }
            Task::Translate => {
                let r = TranslateRequest {
                    model,
                    variant,
                    inputs,
                    truncate: req.truncate,
                    timeout: req.timeout,
                    ..TranslateRequest::default()
                };
                let mut resp = self.translate_on(entry, ticket, r).await?;
                Ok(Output::Translation(Translation {
                    text: resp.outputs.pop().unwrap_or_default(),
                    tokens: 0,
                    alternatives: Vec::new(),
                }))
            }
            Task::Embed => {
                let r = EmbedRequest {
                    model,
                    variant,
                    inputs,
                    truncate: req.truncate,
                    timeout: req.timeout,
                    ..EmbedRequest::default()
                };
                let mut resp = self.embed_on(entry, ticket, r).await?;
                Ok(Output::Embedding(resp.vectors.pop().unwrap_or_default()))
            }
        }
    }
}

/// A model output as the comparison shows it.
fn output_json(o: &Output) -> serde_json::Value {
    match o {
        Output::Classes(scores) => {
            let top = scores.first().cloned().unwrap_or(LabelScore {
                label: String::new(),
                score: 0.0,
            });
            serde_json::json!({ "label": top.label, "score": top.score, "scores": scores })
        }
        Output::Translation(t) => serde_json::json!({ "text": t.text }),
        Output::Embedding(v) => {
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            serde_json::json!({
                "dims": v.len(),
                "norm": norm,
                "head": &v[..v.len().min(VECTOR_HEAD)],
            })
        }
    }
}
