//! The embed task (sentence vectors, for TEI's `/embed` and OpenAI's `/v1/embeddings`) and the
//! tokenizer services TEI exposes (`/tokenize`, `/decode`): they run on a routed variant's
//! model like inference does, but need no queue.

use std::sync::Arc;

use super::Runtime;
use super::ab::ticket::Ticket;
use super::error::RuntimeError;
use super::registry::ModelEntry;
use super::request::{EmbedRequest, EmbedResponse, RouteHeaders, Served};
use super::service::{Common, Planned, TaskPlan, off_executor, tokenize};
use crate::models::embedder::l2_normalize;
use crate::models::tokenizer::Overflow;
use crate::models::{Model, ModelError, Output, RunParams, Task, TokenInfo};

struct Embed;

impl TaskPlan for Embed {
    const TASK: Task = Task::Embed;
    /// Tokens of all inputs, special tokens included (OpenAI's `usage`).
    type Layout = usize;
    type Item = Vec<f32>;

    fn check(&self, inputs: &[String]) -> Result<(), RuntimeError> {
        match inputs.iter().position(String::is_empty) {
            Some(i) => Err(RuntimeError::BadRequest(format!("input {i} is empty"))),
            None => Ok(()),
        }
    }

    fn params(&self, _: &Runtime, _: &dyn Model) -> Result<RunParams, RuntimeError> {
        Ok(RunParams::default())
    }

    fn plan(
        self,
        model: &dyn Model,
        inputs: Vec<String>,
        overflow: Overflow,
    ) -> Result<Planned<usize>, RuntimeError> {
        let ids: Vec<Vec<u32>> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| tokenize(model, i, t, overflow))
            .collect::<Result<_, _>>()?;
        let tokens = ids.iter().map(Vec::len).sum();
        Ok(Planned {
            ids,
            texts: inputs,
            layout: tokens,
        })
    }

    fn item(output: Output) -> Option<Vec<f32>> {
        match output {
            Output::Embedding(v) => Some(v),
            _ => None,
        }
    }
}

fn model_error(e: ModelError) -> RuntimeError {
    match e {
        ModelError::Failed(e) => RuntimeError::Internal(format!("{e:#}")),
        e => RuntimeError::BadRequest(e.to_string()),
    }
}

impl Runtime {
    /// The variant an embed request goes to.
    pub fn route_embed(
        &self,
        req: &EmbedRequest,
    ) -> Result<(Arc<ModelEntry>, Ticket), RuntimeError> {
        let model = req
            .model
            .as_deref()
            .unwrap_or(&self.config.defaults.embed_model);
        self.route_ticketed(model, req.variant.as_deref(), &req.headers)
    }

    /// Routes and runs an embed request.
    pub async fn embed(&self, req: EmbedRequest) -> Served<EmbedResponse> {
        let (entry, ticket) = match self.route_embed(&req) {
            Ok(e) => e,
            Err(e) => return Served::unrouted(e),
        };
        let result = self.embed_on(entry.clone(), ticket, req).await;
        Served::on(&entry, result)
    }

    /// Runs an embed request on the variant it was routed to: vectors cut to `dimensions`, then
    /// L2-normalised when asked (TEI's order: truncation before normalisation).
    pub async fn embed_on(
        &self,
        entry: Arc<ModelEntry>,
        ticket: Ticket,
        req: EmbedRequest,
    ) -> Result<EmbedResponse, RuntimeError> {
        if let Some(d) = req.dimensions {
            let full = entry.engine.embedding_dim().unwrap_or(usize::MAX);
            if d == 0 || d > full {
                return Err(RuntimeError::BadRequest(format!(
                    "`dimensions` must be between 1 and {full}"
                )));
            }
        }
        let common = Common {
            request_id: req.request_id,
            inputs: req.inputs,
            truncate: req.truncate,
            timeout: req.timeout,
            ticket,
        };
        let (tokens, mut vectors) = self.infer(&entry, common, Embed).await?;
        for v in &mut vectors {
            if let Some(d) = req.dimensions {
                v.truncate(d);
            }
            if req.normalize {
                l2_normalize(v);
            }
        }
        Ok(EmbedResponse {
            model: entry.key.model.clone(),
            variant: entry.key.variant.clone(),
            vectors,
            tokens,
        })
    }

    /// A serving variant of `model` (the routing's pick) for tokenizer services and model info.
    pub fn serving_entry(
        &self,
        model: &str,
        headers: &RouteHeaders,
    ) -> Result<Arc<ModelEntry>, RuntimeError> {
        self.route(model, None, headers)
    }

    /// The tokens of each input as `model`'s tokenizer splits it (TEI's `/tokenize`).
    pub async fn tokenize_texts(
        &self,
        entry: Arc<ModelEntry>,
        inputs: Vec<String>,
        add_special: bool,
    ) -> Result<Vec<Vec<TokenInfo>>, RuntimeError> {
        self.check_inputs(&inputs)?;
        off_executor(move || {
            inputs
                .iter()
                .map(|t| match entry.engine.tokens(t, add_special) {
                    Some(r) => r.map_err(model_error),
                    None => Err(RuntimeError::Unsupported(format!(
                        "model `{}` has no tokenizer to show",
                        entry.key.model
                    ))),
                })
                .collect()
        })
        .await?
    }

    /// Token ids back to text with `model`'s tokenizer (TEI's `/decode`).
    pub async fn decode_ids(
        &self,
        entry: Arc<ModelEntry>,
        ids: Vec<Vec<u32>>,
        skip_special: bool,
    ) -> Result<Vec<String>, RuntimeError> {
        let limits = &self.config.limits;
        if ids.len() > limits.max_inputs {
            return Err(RuntimeError::TooLarge(format!(
                "{} inputs; at most {} per request",
                ids.len(),
                limits.max_inputs
            )));
        }
        off_executor(move || {
            ids.iter()
                .map(|i| entry.engine.decode(i, skip_special).map_err(model_error))
                .collect()
        })
        .await?
    }
}
