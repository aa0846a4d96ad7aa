//! The runtime's request API: route, validate, tokenize (off the async executor), queue, await
//! the reply within the deadline, reassemble. Every task runs the same steps (`infer`); what
//! differs per task is a [`TaskPlan`]: its input checks, run parameters, how inputs become
//! sequences and how outputs become its answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ab::Outcome;
use super::ab::ticket::Ticket;
use super::error::RuntimeError;
use super::pending::Pending;
use super::pool::WorkItem;
use super::registry::ModelEntry;
use super::request::{ClassifyRequest, ClassifyResponse, RouteHeaders, Served};
use super::routing::random_unit;
use super::shadow::ShadowJob;
use super::{InFlight, Runtime};
use crate::models::tokenizer::Overflow;
use crate::models::{LabelScore, Model, ModelError, Output, RunParams, Task};

/// A request's sequences, ready to queue: token ids, the text each came from (for the shadow
/// log), and how the task rebuilds its answer from their outputs.
pub(super) struct Planned<L> {
    pub ids: Vec<Vec<u32>>,
    pub texts: Vec<String>,
    pub layout: L,
}

/// The fields every inference request has, whatever its task.
pub(super) struct Common {
    pub request_id: Option<String>,
    pub inputs: Vec<String>,
    pub truncate: bool,
    pub timeout: Option<Duration>,
    /// How the request was assigned, for the experiment's counts.
    pub ticket: Ticket,
}

/// What differs between tasks on the request path (the plans of other tasks live in files of
/// their own, e.g. `embed.rs`).
pub(super) trait TaskPlan: Send + 'static {
    const TASK: Task;
    /// What `plan` keeps for assembling the answer.
    type Layout: Send + 'static;
    /// The task's typed result for one sequence.
    type Item;

    /// Task-specific checks of the inputs, after the shared limits.
    fn check(&self, inputs: &[String]) -> Result<(), RuntimeError>;
    /// The run parameters (equal for every sequence of the request).
    fn params(&self, rt: &Runtime, model: &dyn Model) -> Result<RunParams, RuntimeError>;
    /// Inputs → sequences; runs on the blocking pool.
    fn plan(
        self,
        model: &dyn Model,
        inputs: Vec<String>,
        overflow: Overflow,
    ) -> Result<Planned<Self::Layout>, RuntimeError>;
    /// The task's item in a model output (`None`: the model does another task).
    fn item(output: Output) -> Option<Self::Item>;
    /// What `/v1/feedback` compares a label with (`None`: the task has no labels).
    fn label(_item: &Self::Item) -> Option<String> {
        None
    }
}

struct Classify {
    /// The second text of input i when it is a sentence pair (empty: no pairs).
    second_texts: Vec<Option<String>>,
    raw_scores: bool,
}

impl TaskPlan for Classify {
    const TASK: Task = Task::Classify;
    type Layout = ();
    type Item = Vec<LabelScore>;

    fn check(&self, inputs: &[String]) -> Result<(), RuntimeError> {
        if !self.second_texts.is_empty() && self.second_texts.len() != inputs.len() {
            return Err(RuntimeError::BadRequest(
                "every input needs its pair entry".into(),
            ));
        }
        match inputs.iter().position(|t| t.trim().is_empty()) {
            Some(i) => Err(RuntimeError::BadRequest(format!("input {i} is empty"))),
            None => Ok(()),
        }
    }

    fn params(&self, _: &Runtime, _: &dyn Model) -> Result<RunParams, RuntimeError> {
        Ok(RunParams {
            raw_scores: self.raw_scores,
            ..RunParams::default()
        })
    }

    fn plan(
        self,
        model: &dyn Model,
        inputs: Vec<String>,
        overflow: Overflow,
    ) -> Result<Planned<()>, RuntimeError> {
        let ids = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| match self.second_texts.get(i) {
                Some(Some(second)) => model
                    .tokenize_pair(t, second, overflow)
                    .map_err(|e| tokenize_error(i, e)),
                _ => tokenize(model, i, t, overflow),
            })
            .collect::<Result<_, _>>()?;
        Ok(Planned {
            ids,
            texts: inputs,
            layout: (),
        })
    }

    fn item(output: Output) -> Option<Vec<LabelScore>> {
        match output {
            Output::Classes(c) => Some(c),
            _ => None,
        }
    }

    /// The top label.
    fn label(scores: &Vec<LabelScore>) -> Option<String> {
        Some(scores.first().map(|s| s.label.clone()).unwrap_or_default())
    }
}

/// A requested timeout of 0 is refused (the deadline would pass before any work).
pub(super) fn check_timeout(timeout: Option<Duration>) -> Result<(), RuntimeError> {
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(RuntimeError::BadRequest(
            "timeout_ms must be at least 1".into(),
        ));
    }
    Ok(())
}

impl Runtime {
    /// The variant a classify request goes to (the one it names, or the routing's
    /// assignment) and its experiment ticket.
    pub fn route_classify(
        &self,
        req: &ClassifyRequest,
    ) -> Result<(Arc<ModelEntry>, Ticket), RuntimeError> {
        let model = req
            .model
            .as_deref()
            .unwrap_or(&self.config.defaults.classify_model);
        self.route_ticketed(model, req.variant.as_deref(), &req.headers)
    }

    /// The serving entry only, for services that run no inference (nothing is counted).
    pub(super) fn route(
        &self,
        model: &str,
        variant: Option<&str>,
        headers: &RouteHeaders,
    ) -> Result<Arc<ModelEntry>, RuntimeError> {
        Ok(self
            .registry
            .route(model, variant, |h| headers.get(h))?
            .entry)
    }

    /// Routes an inference request and counts its assignment in the model's experiment.
    pub(super) fn route_ticketed(
        &self,
        model: &str,
        variant: Option<&str>,
        headers: &RouteHeaders,
    ) -> Result<(Arc<ModelEntry>, Ticket), RuntimeError> {
        let r = self.registry.route(model, variant, |h| headers.get(h))?;
        let ticket = self
            .experiments
            .assign(model, &r.settings, &r.setup, r.choice);
        Ok((r.entry, ticket))
    }

    /// Routes and runs a classify request.
    pub async fn classify(&self, req: ClassifyRequest) -> Served<ClassifyResponse> {
        let (entry, ticket) = match self.route_classify(&req) {
            Ok(e) => e,
            Err(e) => return Served::unrouted(e),
        };
        let result = self.classify_on(entry.clone(), ticket, req).await;
        Served::on(&entry, result)
    }

    /// Runs a classify request on the variant it was routed to (which stays alive until the
    /// answer, whatever the admin API does meanwhile).
    pub async fn classify_on(
        &self,
        entry: Arc<ModelEntry>,
        ticket: Ticket,
        req: ClassifyRequest,
    ) -> Result<ClassifyResponse, RuntimeError> {
        let common = Common {
            request_id: req.request_id,
            inputs: req.inputs,
            truncate: req.truncate,
            timeout: req.timeout,
            ticket,
        };
        let plan = Classify {
            second_texts: req.second_texts,
            raw_scores: req.raw_scores,
        };
        let (_, results) = self.infer(&entry, common, plan).await?;
        Ok(ClassifyResponse {
            model: entry.key.model.clone(),
            variant: entry.key.variant.clone(),
            results,
        })
    }

    /// The steps every inference request takes, counted with its latency in the variant's A/B
    /// statistics: admission (in flight, deadline, draining, task, input limits), planning off
    /// the executor, the queue, typed outputs, the feedback memory and a sampled shadow copy.
    pub(super) async fn infer<T: TaskPlan>(
        &self,
        entry: &Arc<ModelEntry>,
        req: Common,
        task: T,
    ) -> Result<(T::Layout, Vec<T::Item>), RuntimeError> {
        let started = Instant::now();
        let ticket = req.ticket.clone();
        let result = self.infer_inner(entry, req, task).await;
        let elapsed = started.elapsed();
        self.ab.record_request(&entry.key, result.is_ok(), elapsed);
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) if is_clients_fault(e) => Outcome::Rejected,
            Err(_) => Outcome::Failed,
        };
        self.experiments.record_request(&ticket, outcome, elapsed);
        result
    }

    async fn infer_inner<T: TaskPlan>(
        &self,
        entry: &Arc<ModelEntry>,
        req: Common,
        task: T,
    ) -> Result<(T::Layout, Vec<T::Item>), RuntimeError> {
        let _in_flight = InFlight::new(&self.in_flight);
        let deadline = self.deadline(req.timeout)?;
        self.check_accepting()?;
        let model = self.serving_model(entry, T::TASK)?;
        self.check_inputs(&req.inputs)?;
        task.check(&req.inputs)?;
        let params = task.params(self, &*model)?;
        let overflow = if req.truncate {
            Overflow::Truncate
        } else {
            Overflow::Error
        };
        let inputs = req.inputs;
        let planned = off_executor(move || task.plan(&*model, inputs, overflow)).await??;
        // Raw logits are not what the shadow comparison measures (probabilities): not shadowed.
        let shadow = self.shadow_reference(entry).filter(|_| !params.raw_scores);
        let shadow_ids = shadow.as_ref().map(|_| planned.ids.clone());
        let outputs = self.run(entry, planned.ids, params, deadline).await?;
        let items: Vec<T::Item> = outputs
            .iter()
            .map(|o| T::item(o.clone()))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                RuntimeError::Internal(format!(
                    "model `{}` returned another task's output",
                    entry.key.model
                ))
            })?;
        if let Some(id) = &req.request_id {
            let labels: Option<Vec<String>> = items.iter().map(T::label).collect();
            self.ab.remember(id, &entry.key, labels.clone());
            let model_labels = Arc::new(model_labels(&*entry.engine, labels.is_some()));
            self.experiments
                .served
                .remember(id, req.ticket.clone(), labels, model_labels);
        }
        if let (Some(reference), Some(ids)) = (shadow, shadow_ids) {
            let job = ShadowJob {
                live: entry.clone(),
                reference,
                request_id: req.request_id,
                inputs: planned.texts,
                ids,
                params,
                outputs,
                experiment: Some((self.experiments.clone(), req.ticket)),
            };
            self.shadow.submit(&self.pool, job);
        }
        Ok((planned.layout, items))
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
        check_timeout(Some(timeout))?;
        Ok(Instant::now() + timeout.min(self.config.max_timeout()))
    }

    fn check_accepting(&self) -> Result<(), RuntimeError> {
        if self.is_draining() {
            Err(RuntimeError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    pub(super) fn serving_model(
        &self,
        entry: &ModelEntry,
        task: Task,
    ) -> Result<Arc<dyn Model>, RuntimeError> {
        let model = entry.engine.clone();
        if model.task() != task {
            return Err(RuntimeError::BadRequest(format!(
                "model `{}` does not {}; use /{}",
                entry.key.model,
                task.as_str(),
                model.task().as_str()
            )));
        }
        Ok(model)
    }

    pub(super) fn check_inputs(&self, inputs: &[String]) -> Result<(), RuntimeError> {
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

    /// Queues the sequences and waits for all their outputs, or the deadline.
    async fn run(
        &self,
        entry: &ModelEntry,
        seqs: Vec<Vec<u32>>,
        params: RunParams,
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

/// Errors of the request itself (bad input, refused choice): not a latency of the variant.
fn is_clients_fault(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::BadRequest(_)
            | RuntimeError::TooLarge(_)
            | RuntimeError::InputTooLong(_)
            | RuntimeError::Unsupported(_)
            | RuntimeError::Forbidden(_)
    )
}

/// The labels feedback is checked against (none for tasks without labels).
fn model_labels(model: &dyn Model, labelled: bool) -> Vec<String> {
    if labelled { model.labels() } else { Vec::new() }
}

/// Runs CPU work (tokenizing) on the blocking pool rather than an executor thread; a panic there
/// becomes an internal error of this request.
pub(super) async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Internal(format!("tokenizing failed: {e}")))
}

pub(super) fn tokenize(
    model: &dyn Model,
    index: usize,
    text: &str,
    overflow: Overflow,
) -> Result<Vec<u32>, RuntimeError> {
    model
        .tokenize(text, overflow)
        .map_err(|e| tokenize_error(index, e))
}

fn tokenize_error(index: usize, e: ModelError) -> RuntimeError {
    match e {
        ModelError::InputTooLong(too_long) => RuntimeError::InputTooLong(format!(
            "input {index}: {too_long}; set \"truncate\": true to cut it"
        )),
        e => RuntimeError::BadRequest(format!("input {index}: {e}")),
    }
}
