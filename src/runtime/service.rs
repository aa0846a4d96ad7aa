//! The runtime's request API: validate, tokenize (off the async executor), queue, await the
//! reply within the deadline, reassemble.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Task;
use super::engine::{DecodeParams, Engine, LabelScore, Output};
use super::error::RuntimeError;
use super::pending::Pending;
use super::pool::WorkItem;
use super::registry::ModelEntry;
use super::routing::random_unit;
use super::segment::{self, Piece};
use super::shadow::ShadowJob;
use super::{InFlight, Runtime};
use crate::model::tokenizer::{InputTooLong, Overflow};

/// Request headers (HTTP) or metadata (gRPC) the router may read: the model's sticky key.
#[derive(Clone, Debug, Default)]
pub struct RouteHeaders(Vec<(String, String)>);

impl RouteHeaders {
    /// From (name, value) pairs; names compare case-insensitively.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Debug, Default)]
pub struct ClassifyRequest {
    /// The configured default classifier when `None`.
    pub model: Option<String>,
    /// Chosen by the model's routing when `None`.
    pub variant: Option<String>,
    /// Remembered for `/v1/feedback` when set.
    pub request_id: Option<String>,
    pub headers: RouteHeaders,
    pub inputs: Vec<String>,
    pub truncate: bool,
    /// The configured default when `None`.
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct ClassifyResponse {
    pub model: String,
    pub variant: String,
    /// Per input, every label with its probability, most probable first.
    pub results: Vec<Vec<LabelScore>>,
}

#[derive(Clone, Debug, Default)]
pub struct TranslateRequest {
    /// `"{source}-{target}"` when `None`.
    pub model: Option<String>,
    /// Chosen by the model's routing when `None`.
    pub variant: Option<String>,
    /// Remembered for `/v1/feedback` when set.
    pub request_id: Option<String>,
    pub headers: RouteHeaders,
    pub source: Option<String>,
    pub target: Option<String>,
    pub inputs: Vec<String>,
    pub beam_size: Option<usize>,
    pub max_length: Option<usize>,
    pub truncate: bool,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct TranslateResponse {
    pub model: String,
    pub variant: String,
    pub outputs: Vec<String>,
}

/// The sentences to translate, and how each input text is rebuilt from their translations.
struct TranslationPlan {
    layouts: Vec<Vec<Slot>>,
    ids: Vec<Vec<u32>>,
    /// The sentence each of `ids` is, for the shadow log.
    sentences: Vec<String>,
}

/// A part of an input text's rebuilt translation.
enum Slot {
    Verbatim(String),
    Item(usize),
}

impl Runtime {
    /// The variant a classify request goes to: the one it names, or the routing's pick.
    pub fn route_classify(&self, req: &ClassifyRequest) -> Result<Arc<ModelEntry>, RuntimeError> {
        let model = req
            .model
            .as_deref()
            .unwrap_or(&self.config.defaults.classify_model);
        self.registry
            .route(model, req.variant.as_deref(), |h| req.headers.get(h))
    }

    /// The variant a translate request goes to: the one it names, or the routing's pick.
    pub fn route_translate(&self, req: &TranslateRequest) -> Result<Arc<ModelEntry>, RuntimeError> {
        let model = self.translation_model(req)?;
        self.registry
            .route(&model, req.variant.as_deref(), |h| req.headers.get(h))
    }

    pub async fn classify(&self, req: ClassifyRequest) -> Result<ClassifyResponse, RuntimeError> {
        let entry = self.route_classify(&req)?;
        self.classify_on(entry, req).await
    }

    pub async fn translate(
        &self,
        req: TranslateRequest,
    ) -> Result<TranslateResponse, RuntimeError> {
        let entry = self.route_translate(&req)?;
        self.translate_on(entry, req).await
    }

    /// Runs a classify request on the variant it was routed to (which stays alive until the
    /// answer, whatever the admin API does meanwhile).
    pub async fn classify_on(
        &self,
        entry: Arc<ModelEntry>,
        req: ClassifyRequest,
    ) -> Result<ClassifyResponse, RuntimeError> {
        self.recorded(&entry, self.classify_inner(&entry, req))
            .await
    }

    pub async fn translate_on(
        &self,
        entry: Arc<ModelEntry>,
        req: TranslateRequest,
    ) -> Result<TranslateResponse, RuntimeError> {
        self.recorded(&entry, self.translate_inner(&entry, req))
            .await
    }

    /// Runs a request and counts it, with its latency, in the variant's A/B statistics.
    async fn recorded<T>(
        &self,
        entry: &ModelEntry,
        work: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = Instant::now();
        let result = work.await;
        self.ab
            .record_request(&entry.key, result.is_ok(), started.elapsed());
        result
    }

    async fn classify_inner(
        &self,
        entry: &Arc<ModelEntry>,
        req: ClassifyRequest,
    ) -> Result<ClassifyResponse, RuntimeError> {
        let _in_flight = InFlight::new(&self.in_flight);
        let deadline = self.deadline(req.timeout)?;
        self.check_accepting()?;
        let engine = self.serving_engine(entry, Task::Classify)?;
        self.check_inputs(&req.inputs)?;
        if let Some(i) = req.inputs.iter().position(|t| t.trim().is_empty()) {
            return Err(RuntimeError::BadRequest(format!("input {i} is empty")));
        }
        let overflow = overflow(req.truncate);
        let texts = req.inputs;
        let (ids, texts) = off_executor(move || {
            let ids = texts
                .iter()
                .enumerate()
                .map(|(i, t)| tokenize(&*engine, i, t, overflow))
                .collect::<Result<Vec<_>, _>>();
            (ids, texts)
        })
        .await?;
        let ids = ids?;
        let shadow = self.shadow_reference(entry);
        let shadow_ids = shadow.as_ref().map(|_| ids.clone());
        let params = DecodeParams::default();
        let outputs = self.run(entry, ids, params, deadline).await?;
        let mut results = Vec::with_capacity(outputs.len());
        for o in &outputs {
            match o {
                Output::Classes(scores) => results.push(scores.clone()),
                Output::Translation { .. } => {
                    return Err(RuntimeError::Internal("a classifier returned text".into()));
                }
            }
        }
        if let Some(id) = &req.request_id {
            let labels = results
                .iter()
                .map(|r: &Vec<LabelScore>| r.first().map(|s| s.label.clone()).unwrap_or_default())
                .collect();
            self.ab.remember(id, &entry.key, Some(labels));
        }
        if let (Some(reference), Some(ids)) = (shadow, shadow_ids) {
            let job = ShadowJob {
                live: entry.clone(),
                reference,
                request_id: req.request_id,
                inputs: texts,
                ids,
                params,
                outputs,
            };
            self.shadow.submit(&self.pool, job);
        }
        Ok(ClassifyResponse {
            model: entry.key.model.clone(),
            variant: entry.key.variant.clone(),
            results,
        })
    }

    async fn translate_inner(
        &self,
        entry: &Arc<ModelEntry>,
        req: TranslateRequest,
    ) -> Result<TranslateResponse, RuntimeError> {
        let _in_flight = InFlight::new(&self.in_flight);
        let deadline = self.deadline(req.timeout)?;
        self.check_accepting()?;
        let engine = self.serving_engine(entry, Task::Translate)?;
        self.check_inputs(&req.inputs)?;
        if req.inputs.iter().all(|t| t.trim().is_empty()) {
            return Err(RuntimeError::BadRequest(
                "nothing to translate: the input is empty".into(),
            ));
        }
        let params = self.decode_params(&*engine, &req)?;
        let overflow = overflow(req.truncate);
        let split = self.config.translation.split_sentences;
        let texts = req.inputs;
        let TranslationPlan {
            layouts,
            ids,
            sentences,
        } = off_executor(move || plan_translation(&*engine, &texts, split, overflow)).await??;
        let shadow = self.shadow_reference(entry);
        let shadow_ids = shadow.as_ref().map(|_| ids.clone());
        let outputs = self.run(entry, ids, params, deadline).await?;
        let mut translated = Vec::with_capacity(outputs.len());
        for o in &outputs {
            match o {
                Output::Translation { text, .. } => translated.push(text.clone()),
                Output::Classes(_) => {
                    return Err(RuntimeError::Internal(
                        "a translator returned classes".into(),
                    ));
                }
            }
        }
        if let Some(id) = &req.request_id {
            self.ab.remember(id, &entry.key, None);
        }
        if let (Some(reference), Some(ids)) = (shadow, shadow_ids) {
            let job = ShadowJob {
                live: entry.clone(),
                reference,
                request_id: req.request_id,
                inputs: sentences,
                ids,
                params,
                outputs,
            };
            self.shadow.submit(&self.pool, job);
        }
        let outputs = layouts
            .into_iter()
            .map(|slots| {
                slots
                    .into_iter()
                    .map(|s| match s {
                        Slot::Verbatim(t) => t,
                        Slot::Item(i) => std::mem::take(&mut translated[i]),
                    })
                    .collect()
            })
            .collect();
        Ok(TranslateResponse {
            model: entry.key.model.clone(),
            variant: entry.key.variant.clone(),
            outputs,
        })
    }

    /// The reference variant to shadow this request on, if the model's routing samples it.
    fn shadow_reference(&self, entry: &ModelEntry) -> Option<Arc<ModelEntry>> {
        let shadow = self.registry.routing(&entry.key.model).ok()?.shadow?;
        if shadow.reference == entry.key.variant || random_unit() >= shadow.sample_rate {
            return None;
        }
        self.registry
            .resolve(&entry.key.model, &shadow.reference)
            .ok()
    }

    fn deadline(&self, timeout: Option<Duration>) -> Result<Instant, RuntimeError> {
        let timeout = timeout.unwrap_or_else(|| self.config.default_timeout());
        if timeout.is_zero() {
            return Err(RuntimeError::BadRequest(
                "timeout_ms must be at least 1".into(),
            ));
        }
        Ok(Instant::now() + timeout.min(self.config.max_timeout()))
    }

    fn check_accepting(&self) -> Result<(), RuntimeError> {
        if self.is_draining() {
            Err(RuntimeError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn serving_engine(
        &self,
        entry: &ModelEntry,
        task: Task,
    ) -> Result<Arc<dyn Engine>, RuntimeError> {
        let engine = entry.engine.clone();
        if engine.task() != task {
            return Err(RuntimeError::BadRequest(format!(
                "model `{}` does not {}; use /{}",
                entry.key.model,
                task.as_str(),
                engine.task().as_str()
            )));
        }
        Ok(engine)
    }

    fn check_inputs(&self, inputs: &[String]) -> Result<(), RuntimeError> {
        let limits = &self.config.limits;
        if inputs.is_empty() {
            return Err(RuntimeError::BadRequest("no inputs".into()));
        }
        if inputs.len() > limits.max_inputs {
            return Err(RuntimeError::TooLarge(format!(
                "{} inputs; at most {} per request",
                inputs.len(),
                limits.max_inputs
            )));
        }
        for (i, t) in inputs.iter().enumerate() {
            // Byte length first: it bounds the character count and costs nothing.
            if t.len() > limits.max_input_chars && t.chars().count() > limits.max_input_chars {
                return Err(RuntimeError::TooLarge(format!(
                    "input {i} has more than {} characters",
                    limits.max_input_chars
                )));
            }
        }
        Ok(())
    }

    /// The model named by the request, or the one for its language pair.
    fn translation_model(&self, req: &TranslateRequest) -> Result<String, RuntimeError> {
        if let Some(m) = &req.model {
            return Ok(m.clone());
        }
        let (Some(source), Some(target)) = (req.source.as_deref(), req.target.as_deref()) else {
            return Err(RuntimeError::BadRequest(
                "`source` and `target` are required unless `model` is given".into(),
            ));
        };
        if source == "auto" {
            return Err(RuntimeError::Unsupported(
                "language detection (source \"auto\") is not supported".into(),
            ));
        }
        let name = format!("{source}-{target}");
        if !self.registry.has_model(&name) {
            let pairs: Vec<String> = self
                .registry
                .model_names()
                .into_iter()
                .filter(|n| n.len() == 5 && n.as_bytes()[2] == b'-')
                .collect();
            return Err(RuntimeError::Unsupported(format!(
                "language pair {source}→{target} is not supported (available: {})",
                pairs.join(", ")
            )));
        }
        Ok(name)
    }

    fn decode_params(
        &self,
        engine: &dyn Engine,
        req: &TranslateRequest,
    ) -> Result<DecodeParams, RuntimeError> {
        let limits = &self.config.limits;
        let defaults = engine.default_params();
        let beam_size = req.beam_size.unwrap_or(defaults.beam_size);
        if beam_size == 0 || beam_size > limits.max_beam_size {
            return Err(RuntimeError::BadRequest(format!(
                "beam_size must be between 1 and {}",
                limits.max_beam_size
            )));
        }
        let max_length = match req.max_length {
            Some(0) => {
                return Err(RuntimeError::BadRequest(
                    "max_length must be at least 1".into(),
                ));
            }
            Some(n) if n > limits.max_output_tokens => {
                return Err(RuntimeError::BadRequest(format!(
                    "max_length must be at most {}",
                    limits.max_output_tokens
                )));
            }
            Some(n) => Some(n),
            None => defaults.max_length,
        };
        Ok(DecodeParams {
            beam_size,
            max_length,
        })
    }

    /// Queues the sequences and waits for all their outputs, or the deadline.
    async fn run(
        &self,
        entry: &ModelEntry,
        seqs: Vec<Vec<u32>>,
        params: DecodeParams,
        deadline: Instant,
    ) -> Result<Vec<Output>, RuntimeError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(RuntimeError::DeadlineExceeded);
        }
        let (pending, rx) = Pending::new(seqs.len());
        let items = seqs
            .into_iter()
            .enumerate()
            .map(|(index, ids)| WorkItem {
                ids,
                params,
                enqueued: now,
                deadline,
                pending: pending.clone(),
                index,
            })
            .collect();
        self.pool.submit(&entry.queue, items)?;
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Err(_) => Err(RuntimeError::DeadlineExceeded),
            Ok(Err(_)) => Err(RuntimeError::Internal(
                "the request was dropped without an answer".into(),
            )),
            Ok(Ok(reply)) => reply,
        }
    }
}

fn overflow(truncate: bool) -> Overflow {
    if truncate {
        Overflow::Truncate
    } else {
        Overflow::Error
    }
}

/// Runs CPU work (tokenizing) on the blocking pool rather than an executor thread; a panic there
/// becomes an internal error of this request.
async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Internal(format!("tokenizing failed: {e}")))
}

fn tokenize(
    engine: &dyn Engine,
    index: usize,
    text: &str,
    overflow: Overflow,
) -> Result<Vec<u32>, RuntimeError> {
    engine
        .tokenize(text, overflow)
        .map_err(|e| match e.downcast_ref::<InputTooLong>() {
            Some(too_long) => RuntimeError::InputTooLong(format!(
                "input {index}: {too_long}; set \"truncate\": true to cut it"
            )),
            None => RuntimeError::BadRequest(format!("input {index}: {e:#}")),
        })
}

/// Each text's layout (sentences and the whitespace between them) and the token ids of all
/// sentences to translate, in order.
fn plan_translation(
    engine: &dyn Engine,
    texts: &[String],
    split: bool,
    overflow: Overflow,
) -> Result<TranslationPlan, RuntimeError> {
    let mut layouts = Vec::with_capacity(texts.len());
    let mut ids = Vec::new();
    let mut sentences = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let pieces = if text.trim().is_empty() {
            vec![Piece::Gap(text.as_str())]
        } else if split {
            segment::split(text)
        } else {
            vec![Piece::Sentence(text.as_str())]
        };
        let mut slots = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match piece {
                // Blank texts translate to themselves, as the model would give nothing for them.
                Piece::Gap(g) => slots.push(Slot::Verbatim(if text.trim().is_empty() {
                    String::new()
                } else {
                    g.into()
                })),
                Piece::Sentence(s) => {
                    ids.push(tokenize(engine, i, s, overflow)?);
                    sentences.push(s.to_string());
                    slots.push(Slot::Item(ids.len() - 1));
                }
            }
        }
        layouts.push(slots);
    }
    Ok(TranslationPlan {
        layouts,
        ids,
        sentences,
    })
}
