//! Hugging Face text-embeddings-inference (TEI 1.9) routes, so TEI clients work unchanged:
//! `POST /predict` (the classifier), `POST /embed` (the embedder), `GET /info`,
//! `POST /tokenize`, `POST /decode`.
//!
//! Errors are TEI's `{"error", "error_type"}` with TEI's statuses (validation 422, empty batch
//! 400, overloaded 429, backend 424, unhealthy 503), not quantserve's `{"error", "code"}`: TEI
//! clients branch on `error_type`. Where TEI's published schema and its code disagree we follow
//! the code (PascalCase `error_type`, 422 for too large a batch, `truncate` defaulting to on).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::http::{RequestId, finish, json_response, route_headers};
use crate::runtime::request::{ClassifyRequest, EmbedRequest};
use crate::runtime::{Runtime, RuntimeError};

/// The TEI version whose API this mirrors.
pub const TEI_VERSION: &str = "1.9.3";

/// A TEI error: status, `error_type`, message.
pub struct TeiError(pub StatusCode, pub &'static str, pub String);

impl TeiError {
    pub fn validation(message: impl Into<String>) -> Self {
        Self(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
            message.into(),
        )
    }

    fn empty() -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            "Empty",
            "`inputs` cannot be empty".into(),
        )
    }
}

impl IntoResponse for TeiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.0, &json!({ "error": self.2, "error_type": self.1 }));
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// TEI's status and type for each runtime error.
impl From<RuntimeError> for TeiError {
    fn from(e: RuntimeError) -> Self {
        let (status, kind) = match &e {
            RuntimeError::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, "Overloaded"),
            RuntimeError::NotReady(_) | RuntimeError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "Unhealthy")
            }
            RuntimeError::Internal(_) | RuntimeError::DeadlineExceeded => {
                (StatusCode::FAILED_DEPENDENCY, "Backend")
            }
            RuntimeError::UnknownModel(_) | RuntimeError::UnknownVariant { .. } => {
                (StatusCode::NOT_FOUND, "Validation")
            }
            RuntimeError::Forbidden(_) => (StatusCode::FORBIDDEN, "Validation"),
            // "Model is not a classifier/embedding model" is TEI's 424.
            RuntimeError::BadRequest(m) if m.contains("does not") => {
                (StatusCode::FAILED_DEPENDENCY, "Backend")
            }
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "Validation"),
        };
        Self(status, kind, e.to_string())
    }
}

impl From<ApiError> for TeiError {
    fn from(e: ApiError) -> Self {
        let kind = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            "Validation"
        } else if e.status == StatusCode::UNAUTHORIZED {
            "Unhealthy"
        } else {
            "Validation"
        };
        Self(e.status, kind, e.message)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, TeiError> {
    super::json_body::parse(body)
        .map_err(|e| TeiError::validation(format!("invalid JSON body: {e}")))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, TeiError> {
    body.map_err(|r| TeiError::from(ApiError::from_body_rejection(r)))
}

/// `Right` (TEI's default) is all quantserve does: it cuts the end of an input.
fn check_direction(direction: &Option<String>) -> Result<(), TeiError> {
    match direction.as_deref() {
        None | Some("Right") | Some("right") => Ok(()),
        Some("Left") | Some("left") => Err(TeiError::validation(
            "truncation_direction Left is not supported (only Right)",
        )),
        Some(d) => Err(TeiError::validation(format!(
            "unknown truncation_direction `{d}` (Left or Right)"
        ))),
    }
}

/// A prompt needs the model's `prompts` (sentence-transformers config); MiniLM has none.
fn check_prompt(prompt: &Option<String>) -> Result<(), TeiError> {
    match prompt {
        None => Ok(()),
        Some(p) => Err(TeiError::validation(format!(
            "prompt_name `{p}` is not in the model's prompts (it has none)"
        ))),
    }
}

fn sort_and_shape(scores: &[crate::models::LabelScore]) -> Value {
    // Already sorted by score, highest first.
    Value::Array(
        scores
            .iter()
            .map(|s| json!({ "score": s.score, "label": s.label }))
            .collect(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct PredictBody {
    #[schema(value_type = crate::api::openapi::schemas::PredictInputs, required = true)]
    inputs: Option<Value>,
    #[schema(default = true)]
    truncate: Option<bool>,
    #[schema(schema_with = crate::api::openapi::schemas::truncation_direction)]
    truncation_direction: Option<String>,
    #[serde(default)]
    raw_scores: bool,
    /// quantserve's extensions: which classifier (default: `[defaults] classify_model`) and
    /// variant (default: the routing's pick).
    model: Option<String>,
    variant: Option<String>,
}

/// TEI's `PredictInput`: a string; a list of two strings (one pair); or a batch of lists of one
/// or two strings. Returns (first texts, second texts, batched).
type PredictInputs = (Vec<String>, Vec<Option<String>>, bool);

fn predict_inputs(inputs: Option<Value>) -> Result<PredictInputs, TeiError> {
    let wrong = || {
        TeiError::validation(
            "`inputs` must be a string, a pair of strings, or a list of [text] / [text, text_pair]",
        )
    };
    let strings = |items: &[Value]| -> Option<Vec<String>> {
        items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    match inputs {
        None | Some(Value::Null) => Err(wrong()),
        Some(Value::String(s)) => Ok((vec![s], vec![None], false)),
        Some(Value::Array(items)) if items.is_empty() => Err(TeiError::empty()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            let s = strings(&items).ok_or_else(wrong)?;
            match s.as_slice() {
                [one] => Ok((vec![one.clone()], vec![None], false)),
                [a, b] => Ok((vec![a.clone()], vec![Some(b.clone())], false)),
                _ => Err(wrong()),
            }
        }
        Some(Value::Array(items)) => {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            for item in items {
                let s = item.as_array().and_then(|a| strings(a)).ok_or_else(wrong)?;
                match s.as_slice() {
                    [one] => {
                        first.push(one.clone());
                        second.push(None);
                    }
                    [a, b] => {
                        first.push(a.clone());
                        second.push(Some(b.clone()));
                    }
                    _ => return Err(wrong()),
                }
            }
            Ok((first, second, true))
        }
        Some(_) => Err(wrong()),
    }
}

pub async fn predict(
    State(rt): State<Arc<Runtime>>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut target = None;
    let result: Result<Response, TeiError> = async {
        let b: PredictBody = parse(&body_bytes(body)?)?;
        check_direction(&b.truncation_direction)?;
        let (inputs, second_texts, batched) = predict_inputs(b.inputs)?;
        let req = ClassifyRequest {
            model: b.model,
            variant: b.variant,
            request_id: Some(id),
            headers: route_headers(&headers),
            inputs,
            second_texts,
            truncate: b.truncate.unwrap_or(true),
            raw_scores: b.raw_scores,
            ..ClassifyRequest::default()
        };
        let served = rt.classify(req).await;
        target = served.target;
        let resp = served.result?;
        let mut results: Vec<Value> = resp.results.iter().map(|r| sort_and_shape(r)).collect();
        let body = if batched {
            Value::Array(results)
        } else {
            results.pop().unwrap_or(Value::Null)
        };
        Ok(json_response(StatusCode::OK, &body))
    }
    .await;
    // `finish` counts the request by the response's status, whatever its body.
    finish(
        &rt,
        "predict",
        target,
        started,
        Ok(result.unwrap_or_else(IntoResponse::into_response)),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct EmbedBody {
    #[schema(value_type = crate::api::openapi::schemas::NonEmptyTexts, required = true)]
    inputs: Option<Value>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    normalize: bool,
    #[schema(default = true)]
    truncate: Option<bool>,
    #[schema(schema_with = crate::api::openapi::schemas::truncation_direction)]
    truncation_direction: Option<String>,
    #[schema(schema_with = crate::api::openapi::schemas::only_null)]
    prompt_name: Option<String>,
    #[schema(minimum = 1)]
    dimensions: Option<u64>,
    model: Option<String>,
    variant: Option<String>,
}

fn yes() -> bool {
    true
}

/// TEI's `Input`: a string or a list of strings (pre-tokenized ids are not taken: quantserve
/// tokenizes itself). Returns the texts and whether it was a list.
pub fn embed_inputs(inputs: Option<Value>, field: &str) -> Result<(Vec<String>, bool), TeiError> {
    match inputs {
        None | Some(Value::Null) => Err(TeiError::validation(format!("`{field}` is required"))),
        Some(Value::String(s)) => Ok((vec![s], false)),
        Some(Value::Array(items)) if items.is_empty() => Err(TeiError::empty()),
        Some(Value::Array(items)) => {
            if items.iter().any(|v| v.is_number() || v.is_array()) {
                return Err(TeiError::validation(
                    "token id inputs are not supported; send the texts",
                ));
            }
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(TeiError::validation(format!(
                        "`{field}` must be a string or a list of strings"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| (t, true))
        }
        Some(_) => Err(TeiError::validation(format!(
            "`{field}` must be a string or a list of strings"
        ))),
    }
}

pub fn dimensions(d: Option<u64>) -> Option<usize> {
    d.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

pub async fn embed(
    State(rt): State<Arc<Runtime>>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut target = None;
    let result: Result<Response, TeiError> = async {
        let b: EmbedBody = parse(&body_bytes(body)?)?;
        check_direction(&b.truncation_direction)?;
        check_prompt(&b.prompt_name)?;
        let (inputs, _) = embed_inputs(b.inputs, "inputs")?;
        let req = EmbedRequest {
            model: b.model,
            variant: b.variant,
            request_id: Some(id),
            headers: route_headers(&headers),
            inputs,
            truncate: b.truncate.unwrap_or(true),
            normalize: b.normalize,
            dimensions: dimensions(b.dimensions),
            ..EmbedRequest::default()
        };
        let served = rt.embed(req).await;
        target = served.target;
        let resp = served.result?;
        Ok(json_response(StatusCode::OK, &json!(resp.vectors)))
    }
    .await;
    finish(
        &rt,
        "embed",
        target,
        started,
        Ok(result.unwrap_or_else(IntoResponse::into_response)),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct TokenizeBody {
    #[schema(value_type = crate::api::openapi::schemas::TokenizeTexts, required = true)]
    inputs: Option<Value>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    add_special_tokens: bool,
    #[schema(schema_with = crate::api::openapi::schemas::only_null)]
    prompt_name: Option<String>,
    model: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct DecodeBody {
    #[schema(value_type = crate::api::openapi::schemas::TokenIds, required = true)]
    ids: Option<Value>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    skip_special_tokens: bool,
    model: Option<String>,
}

fn tei_model(rt: &Runtime, named: Option<String>) -> String {
    named.unwrap_or_else(|| rt.config.defaults.tei_model.clone())
}

pub async fn tokenize(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, TeiError> {
    let b: TokenizeBody = parse(&body_bytes(body)?)?;
    check_prompt(&b.prompt_name)?;
    let (inputs, _) = embed_inputs(b.inputs, "inputs")?;
    let entry = rt.serving_entry(&tei_model(&rt, b.model), &route_headers(&headers))?;
    let tokens = rt
        .tokenize_texts(entry, inputs, b.add_special_tokens)
        .await?;
    let body: Vec<Vec<Value>> = tokens
        .iter()
        .map(|list| {
            list.iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "text": t.text,
                        "special": t.special,
                        "start": t.span.map(|s| s.0),
                        "stop": t.span.map(|s| s.1),
                    })
                })
                .collect()
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!(body)))
}

pub async fn decode(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, TeiError> {
    let b: DecodeBody = parse(&body_bytes(body)?)?;
    let wrong =
        || TeiError::validation("`ids` must be a list of token ids or a list of such lists");
    let as_ids = |v: &Value| -> Option<Vec<u32>> {
        v.as_array()?
            .iter()
            .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect()
    };
    let ids: Vec<Vec<u32>> = match &b.ids {
        Some(Value::Array(items)) if items.is_empty() => return Err(TeiError::empty()),
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|i| as_ids(i).ok_or_else(wrong))
            .collect::<Result<_, _>>()?,
        Some(v @ Value::Array(_)) => vec![as_ids(v).ok_or_else(wrong)?],
        _ => return Err(wrong()),
    };
    let entry = rt.serving_entry(&tei_model(&rt, b.model), &route_headers(&headers))?;
    let texts = rt.decode_ids(entry, ids, b.skip_special_tokens).await?;
    Ok(json_response(StatusCode::OK, &json!(texts)))
}

/// `GET /info`: TEI's `Info` for the model TEI routes serve by default (`?model=` for another).
pub async fn info(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, TeiError> {
    let named = uri.query().and_then(|q| {
        super::libretranslate::fields::parse_urlencoded(q)
            .into_iter()
            .find(|(k, _)| k == "model")
            .map(|(_, v)| v)
    });
    let name = tei_model(&rt, named);
    let entry = rt.serving_entry(&name, &route_headers(&headers))?;
    let model = &entry.engine;
    let model_type = match model.task() {
        crate::models::Task::Classify => {
            let labels = model.labels();
            let id2label: serde_json::Map<String, Value> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), json!(l)))
                .collect();
            let label2id: serde_json::Map<String, Value> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i)))
                .collect();
            json!({ "classifier": { "id2label": id2label, "label2id": label2id } })
        }
        crate::models::Task::Embed => json!({ "embedding": { "pooling": "mean" } }),
        crate::models::Task::Translate => {
            return Err(TeiError(
                StatusCode::FAILED_DEPENDENCY,
                "Backend",
                format!("model `{name}` is a translator, not a TEI model"),
            ));
        }
    };
    let dtype = match entry.kind.scheme.as_str() {
        "fp32" => "float32".to_string(),
        other => other.to_string(),
    };
    let limits = &rt.config.limits;
    let (_, threads, _) = rt.config.worker_layout();
    let max_input = model
        .max_input_tokens()
        .min(rt.config.batching.max_batch_tokens);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "model_id": name,
            "model_sha": null,
            "model_dtype": dtype,
            "served_model_name": name,
            "model_type": model_type,
            "max_concurrent_requests": rt.config.batching.queue_capacity,
            "max_input_length": max_input,
            "max_batch_tokens": rt.config.batching.max_batch_tokens,
            "max_batch_requests": null,
            "max_client_batch_size": limits.max_inputs,
            "auto_truncate": true,
            "tokenization_workers": threads,
            "version": TEI_VERSION,
            "sha": null,
            "docker_label": null,
        }),
    ))
}

/// `GET /health` (TEI's and LibreTranslate's): 200 `{"status": "ok"}` when ready, else TEI's 503.
pub async fn health(State(rt): State<Arc<Runtime>>) -> Response {
    if rt.is_ready() {
        json_response(StatusCode::OK, &json!({ "status": "ok" }))
    } else {
        TeiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unhealthy",
            "unhealthy".into(),
        )
        .into_response()
    }
}
