//! The operations: one `#[utoipa::path]` per route, beside the document rather than on the
//! handlers (which live in six files shared with other work) so the whole contract reads in one
//! place. Aliases (`/v1/classify`, `/v1/translate`, `/embeddings`) are copied from their route
//! in `mod.rs`. Request schemas are the handlers' own serde structs.
#![allow(dead_code)]

use super::schemas::*;
use crate::api::ab::FeedbackBody;
use crate::api::compare::CompareBody;
use crate::api::openai::EmbeddingsBody;
use crate::api::tei::{DecodeBody, EmbedBody, PredictBody, TokenizeBody};
use crate::api::wire::ClassifyBody;
use crate::runtime::routing::Routing;

/// Classify texts with a served classifier.
#[utoipa::path(post, path = "/classify", operation_id = "classify", tag = "quantserve",
    request_body = ClassifyBody,
    params(("x-timeout-ms" = Option<u64>, Header, nullable = false, minimum = 1, description = "A deadline in milliseconds (the body's timeout_ms wins)")),
    responses((status = 200, body = ClassifyResponse),
        (status = 400, response = Error), (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 413, response = Error), (status = 422, response = Error),
        (status = 429, response = Error), (status = 500, response = Error), (status = 503, response = Error),
        (status = 504, response = Error)),
    security(("api_key" = [])))]
fn classify() {}

/// Translate, LibreTranslate-compatible: fields as JSON, a form, multipart or the query string.
/// With `[libretranslate] enabled`: source `auto` is detected (`detectedLanguage`), format html
/// is translated text node by text node, an unsupported pair is a 400; otherwise those are 422.
#[utoipa::path(post, path = "/translate", operation_id = "translate", tag = "libretranslate",
    request_body(content((TranslateBody = "application/json"), (TranslateBody = "application/x-www-form-urlencoded"),
        (TranslateBody = "multipart/form-data"))),
    params(("x-timeout-ms" = Option<u64>, Header, nullable = false, minimum = 1, description = "A deadline in milliseconds (the body's timeout_ms wins)")),
    responses((status = 200, body = TranslateResponse),
        (status = 400, response = Error), (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 413, response = Error), (status = 422, response = Error),
        (status = 429, response = Error), (status = 500, response = Error), (status = 503, response = Error),
        (status = 504, response = Error)),
    security(("api_key" = [])))]
fn translate() {}

/// LibreTranslate: the languages of the served pairs, each with the languages it translates
/// into (itself included).
#[utoipa::path(get, path = "/languages", operation_id = "languages", tag = "libretranslate",
    responses((status = 200, body = Vec<Language>)))]
fn languages() {}

/// LibreTranslate: up to three candidate languages among those the server translates from,
/// confidence 0-100, best first.
#[utoipa::path(post, path = "/detect", operation_id = "detect", tag = "libretranslate",
    request_body(content((DetectBody = "application/json"), (DetectBody = "application/x-www-form-urlencoded"))),
    responses((status = 200, body = Vec<Detection>),
        (status = 400, response = LtError), (status = 403, response = LtError), (status = 413, response = LtError)),
    security(("api_key" = [])))]
fn detect() {}

/// LibreTranslate: translate a .txt or .html file; the result is kept `file_ttl_seconds`.
/// 403 when `[libretranslate] files` is off.
#[utoipa::path(post, path = "/translate_file", operation_id = "translate_file", tag = "libretranslate",
    request_body(content = TranslateFileBody, content_type = "multipart/form-data"),
    responses((status = 200, body = TranslatedFile),
        (status = 400, response = LtError), (status = 403, response = LtError), (status = 404, response = LtError),
        (status = 413, response = LtError), (status = 422, response = LtError), (status = 429, response = LtError),
        (status = 500, response = LtError), (status = 503, response = LtError), (status = 504, response = LtError)),
    security(("api_key" = [])))]
fn translate_file() {}

/// LibreTranslate: a translated file, as an attachment named `<stem>_<target><ext>`
/// (400 when files are off or the name is not a plain file name).
#[utoipa::path(get, path = "/download_file/{name}", operation_id = "download_file", tag = "libretranslate",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$",
        description = "The name in `translatedFileUrl`")),
    responses((status = 200, content((String = "text/plain"), (String = "text/html"))),
        (status = 400, response = LtError), (status = 404, response = LtError)))]
fn download_file() {}

/// LibreTranslate: the settings its web page reads (keys, limits, file formats, default languages).
#[utoipa::path(get, path = "/frontend/settings", operation_id = "frontend_settings", tag = "libretranslate",
    responses((status = 200, body = Object)))]
fn frontend_settings() {}

/// TEI's and LibreTranslate's health check: 200 when ready, TEI's 503 otherwise.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "health",
    responses((status = 200, body = Status), (status = 503, response = TeiError)))]
fn health() {}

/// The process is up.
#[utoipa::path(get, path = "/health/live", operation_id = "health_live", tag = "health",
    responses((status = 200, body = Status)))]
fn live() {}

/// Every model can answer: a variant of its routing split is loaded, warmed up and self-checked.
#[utoipa::path(get, path = "/health/ready", operation_id = "health_ready", tag = "health",
    responses((status = 200, body = Status), (status = 503, body = NotReady)))]
fn ready() {}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses((status = 200, body = String, content_type = "text/plain")))]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "health",
    responses((status = 200, body = Object)))]
fn openapi() {}

/// Swagger UI over this document.
#[utoipa::path(get, path = "/docs", operation_id = "docs", tag = "health",
    responses((status = 200, body = String, content_type = "text/html")))]
fn docs() {}

/// Swagger UI's script and style sheet (gzip-encoded when the client takes it).
#[utoipa::path(get, path = "/docs/{asset}", operation_id = "docs_asset", tag = "health",
    params(("asset" = String, Path, description = "swagger-ui-bundle.js or swagger-ui.css")),
    responses((status = 200, body = String, content_type = "application/javascript"),
        (status = 404, response = Error)))]
fn docs_asset() {}

/// TEI: classify with the default classifier (or `model`); every label sorted by score (raw
/// logits with raw_scores): one list per input, or a list of them for a batch.
#[utoipa::path(post, path = "/predict", operation_id = "tei_predict", tag = "tei",
    request_body = PredictBody,
    responses((status = 200, body = Vec<serde_json::Value>),
        (status = 400, response = TeiError), (status = 401, response = Error), (status = 403, response = TeiError),
        (status = 404, response = TeiError), (status = 413, response = TeiError), (status = 422, response = TeiError),
        (status = 424, response = TeiError), (status = 429, response = TeiError), (status = 503, response = TeiError)),
    security(("api_key" = [])))]
fn predict() {}

/// TEI: sentence embeddings from the default embedder (or `model`), one vector per input;
/// `dimensions` cuts before normalising.
#[utoipa::path(post, path = "/embed", operation_id = "tei_embed", tag = "tei",
    request_body = EmbedBody,
    responses((status = 200, body = Vec<Vec<f32>>),
        (status = 400, response = TeiError), (status = 401, response = Error), (status = 403, response = TeiError),
        (status = 404, response = TeiError), (status = 413, response = TeiError), (status = 422, response = TeiError),
        (status = 424, response = TeiError), (status = 429, response = TeiError), (status = 503, response = TeiError)),
    security(("api_key" = [])))]
fn embed() {}

/// TEI: the tokens of each input (byte offsets `start`, `stop`).
#[utoipa::path(post, path = "/tokenize", operation_id = "tei_tokenize", tag = "tei",
    request_body = TokenizeBody,
    responses((status = 200, body = Vec<Vec<Token>>),
        (status = 400, response = TeiError), (status = 401, response = Error), (status = 404, response = TeiError),
        (status = 413, response = TeiError), (status = 422, response = TeiError), (status = 424, response = TeiError),
        (status = 429, response = TeiError), (status = 503, response = TeiError)),
    security(("api_key" = [])))]
fn tokenize() {}

/// TEI: token ids back to text, one text per id list.
#[utoipa::path(post, path = "/decode", operation_id = "tei_decode", tag = "tei",
    request_body = DecodeBody,
    responses((status = 200, body = Vec<String>),
        (status = 400, response = TeiError), (status = 401, response = Error), (status = 404, response = TeiError),
        (status = 413, response = TeiError), (status = 422, response = TeiError), (status = 424, response = TeiError),
        (status = 429, response = TeiError), (status = 503, response = TeiError)),
    security(("api_key" = [])))]
fn decode() {}

/// TEI: the model TEI routes describe (`[defaults] tei_model`, or `?model=`): id, dtype (the
/// serving variant's scheme), type (classifier labels or embedding pooling), limits.
#[utoipa::path(get, path = "/info", operation_id = "tei_info", tag = "tei",
    params(("model" = Option<String>, Query)),
    responses((status = 200, body = Object),
        (status = 401, response = Error), (status = 404, response = TeiError), (status = 424, response = TeiError),
        (status = 503, response = TeiError)),
    security(("api_key" = [])))]
fn info() {}

/// OpenAI embeddings: `model` a served model (else the default embedder); always L2-normalised.
#[utoipa::path(post, path = "/v1/embeddings", operation_id = "openai_embeddings", tag = "openai",
    request_body = EmbeddingsBody,
    responses((status = 200, body = EmbeddingsResponse),
        (status = 400, response = OpenAiError), (status = 401, response = Error), (status = 403, response = OpenAiError),
        (status = 404, response = OpenAiError), (status = 413, response = OpenAiError), (status = 422, response = OpenAiError),
        (status = 429, response = OpenAiError), (status = 500, response = OpenAiError), (status = 503, response = OpenAiError),
        (status = 504, response = OpenAiError)),
    security(("api_key" = [])))]
fn embeddings() {}

/// Served models, their variants, status and weight bytes.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", tag = "quantserve",
    responses((status = 200, body = Models), (status = 401, response = Error)),
    security(("api_key" = [])))]
fn models() {}

/// One model: variants (status, bytes, routing weight, self-check), reference, routing.
#[utoipa::path(get, path = "/v1/models/{model}", operation_id = "get_model", tag = "quantserve",
    params(("model" = String, Path)),
    responses((status = 200, body = ModelInfo), (status = 401, response = Error), (status = 404, response = Error)),
    security(("api_key" = [])))]
fn model_detail() {}

/// A/B report per variant: requests, errors, latency p50/p95/p99, shadow agreement and online
/// accuracy with Wilson 95% intervals, the variant ahead. A text table; JSON with
/// `?format=json` or `Accept: application/json`.
#[utoipa::path(get, path = "/v1/models/{model}/ab", operation_id = "ab_report", tag = "quantserve",
    params(("model" = String, Path), ("format" = Option<String>, Query, description = "json for JSON")),
    responses((status = 200, content((String = "text/plain"), (Object = "application/json"))),
        (status = 401, response = Error), (status = 404, response = Error)),
    security(("api_key" = [])))]
fn ab_report() {}

/// Ground truth for a served request (by its x-request-id): the true `label` of input `index`,
/// or whether the answer was `correct` (exactly one of them).
#[utoipa::path(post, path = "/v1/feedback", operation_id = "feedback", tag = "quantserve",
    request_body = FeedbackBody,
    responses((status = 200, body = FeedbackRecorded),
        (status = 400, response = Error), (status = 401, response = Error), (status = 404, response = Error),
        (status = 409, response = Error), (status = 413, response = Error)),
    security(("api_key" = [])))]
fn feedback() {}

/// One input on every ready variant of a model (or the `variants` listed), one after another:
/// each variant's output, latency and agreement with the reference variant (chrF for
/// translations, label and probability difference for classifiers, cosine for embeddings).
/// Requests here are overrides, left out of the model's experiment.
#[utoipa::path(post, path = "/v1/compare", operation_id = "compare", tag = "quantserve",
    request_body = CompareBody,
    params(("x-timeout-ms" = Option<u64>, Header, nullable = false, minimum = 1, description = "A deadline in milliseconds (the body's timeout_ms wins)")),
    responses((status = 200, body = Comparison),
        (status = 400, response = Error), (status = 401, response = Error), (status = 403, response = Error),
        (status = 404, response = Error), (status = 413, response = Error), (status = 415, response = Error),
        (status = 422, response = Error), (status = 429, response = Error), (status = 503, response = Error),
        (status = 504, response = Error)),
    security(("api_key" = [])))]
fn compare() {}

/// The web console (HTML), served from the binary.
#[utoipa::path(get, path = "/", operation_id = "console", tag = "health",
    responses((status = 200, body = String, content_type = "text/html")))]
fn console() {}

/// The console's scripts, style sheet and icon.
#[utoipa::path(get, path = "/console/{file}", operation_id = "console_asset", tag = "health",
    params(("file" = String, Path, description = "app.js, style.css, favicon.svg, ...")),
    responses((status = 200, body = String, content_type = "application/javascript"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, response = Error)))]
fn console_asset() {}

/// `{variant}:load` loads (or hot-swaps) a variant, activated only after warm-up and a
/// self-check against the reference (422 self_check_failed with the measured agreement);
/// `{variant}:unload` removes it once no routing uses it (409 otherwise).
#[utoipa::path(post, path = "/admin/models/{model}/variants/{action}", operation_id = "variant_action", tag = "admin",
    params(("model" = String, Path), ("action" = String, Path, example = "int8:load")),
    responses((status = 200, body = Object),
        (status = 400, response = Error), (status = 401, response = Error), (status = 404, response = Error),
        (status = 409, response = Error), (status = 422, response = Error), (status = 500, response = Error),
        (status = 503, response = Error)),
    security(("admin_key" = [])))]
fn variant_action() {}

/// The model's routing.
#[utoipa::path(get, path = "/admin/models/{model}/routing", operation_id = "get_routing", tag = "admin",
    params(("model" = String, Path)),
    responses((status = 200, body = Routing), (status = 401, response = Error), (status = 404, response = Error)),
    security(("admin_key" = [])))]
fn get_routing() {}

/// Replace the model's routing (its variants must be loaded).
#[utoipa::path(put, path = "/admin/models/{model}/routing", operation_id = "put_routing", tag = "admin",
    params(("model" = String, Path)),
    request_body = Routing,
    responses((status = 200, body = Routing),
        (status = 400, response = Error), (status = 401, response = Error), (status = 404, response = Error),
        (status = 409, response = Error), (status = 413, response = Error)),
    security(("admin_key" = [])))]
fn put_routing() {}

/// The most recent (up to 100) shadow disagreements, newest first.
#[utoipa::path(get, path = "/admin/models/{model}/disagreements", operation_id = "disagreements", tag = "admin",
    params(("model" = String, Path)),
    responses((status = 200, body = Disagreements), (status = 401, response = Error),
        (status = 403, description = "No admin key is configured: shadow disagreements hold users' inputs", body = Error),
        (status = 404, response = Error)),
    security(("admin_key" = [])))]
fn disagreements() {}

/// Re-read the configuration file and apply its models and routing (as SIGHUP does): what was
/// loaded, unloaded or failed.
#[utoipa::path(post, path = "/admin/reload", operation_id = "reload", tag = "admin",
    responses((status = 200, body = Object),
        (status = 400, response = Error), (status = 401, response = Error), (status = 409, response = Error),
        (status = 500, response = Error)),
    security(("admin_key" = [])))]
fn reload() {}
