//! The LibreTranslate API (v1.9 shapes): `GET /languages`, `POST /detect`, `POST /translate`
//! (`translate.rs`, shared with quantserve's own clients), `POST /translate_file` and
//! `GET /download_file/{name}` (`files.rs`), `GET /frontend/settings`.
//!
//! Errors on the LibreTranslate-only routes are LibreTranslate's `{"error": "..."}` (its clients
//! read that key and nothing else); `/translate` keeps quantserve's `{"error", "code"}`, which
//! has the same `error`. `api_key` may come in the body or form, as LibreTranslate takes it, or
//! as quantserve's `Authorization: Bearer`.

pub mod fields;
mod files;
pub mod translate;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::auth::{authorized, same_secret};
use crate::api::errors::ApiError;
use crate::api::http::json_response;
use crate::runtime::Runtime;
use crate::runtime::detect::{Detection, detect, language_name};
use crate::runtime::html;
use crate::runtime::request::TextFormat;
use fields::Fields;

/// The routes only LibreTranslate has (`/translate` is mounted with quantserve's own).
pub fn router() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/languages", get(languages))
        .route("/detect", post(detect_route))
        .route("/translate_file", post(files::translate_file))
        .route("/download_file/{name}", get(files::download_file))
        .route("/frontend/settings", get(frontend_settings))
}

/// LibreTranslate's error body, `{"error": message}`.
pub struct LtError(pub StatusCode, pub String);

impl LtError {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for LtError {
    fn into_response(self) -> Response {
        json_response(self.0, &json!({ "error": self.1 }))
    }
}

impl From<ApiError> for LtError {
    fn from(e: ApiError) -> Self {
        Self(e.status, e.message)
    }
}

/// The `Authorization: Bearer` header, or LibreTranslate's `api_key` field, carries the key
/// (always true when the server has none).
pub fn request_authorized(rt: &Runtime, headers: &HeaderMap, api_key: Option<&str>) -> bool {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    authorized(rt, header)
        || match (rt.config.server.api_key.as_deref(), api_key) {
            (Some(key), Some(given)) => same_secret(given.as_bytes(), key.as_bytes()),
            _ => false,
        }
}

/// The languages the server translates from (what detection may answer).
fn source_languages(rt: &Runtime) -> Vec<String> {
    let set: BTreeSet<String> = rt.registry.pairs().into_iter().map(|(_, p)| p.0).collect();
    set.into_iter().collect()
}

/// The detection of a request's texts (all of them at once, as LibreTranslate detects a batch
/// once): the best served language, or confidence 0 for text without letters.
pub fn detect_for(rt: &Runtime, inputs: &[String], format: TextFormat) -> Detection {
    let text = match format {
        TextFormat::Text => inputs.join("\n"),
        TextFormat::Html => inputs
            .iter()
            .flat_map(|h| html::texts(h).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let served = source_languages(rt);
    detect(&text, &served)
        .into_iter()
        .next()
        .unwrap_or_else(|| Detection {
            language: served.first().cloned().unwrap_or_else(|| "en".into()),
            confidence: 0.0,
        })
}

/// LibreTranslate's 400 for a pair no model serves (its messages).
pub fn pair_error(rt: &Runtime, source: &str, target: &str) -> ApiError {
    let pairs: Vec<(String, String)> = rt.registry.pairs().into_iter().map(|(_, p)| p).collect();
    let known = |code: &str| pairs.iter().any(|(s, t)| s == code || t == code);
    let message = if !known(source) {
        format!("{source} is not supported")
    } else if !known(target) {
        format!("{target} is not supported")
    } else {
        format!(
            "{} ({target}) is not available as a target language from {} ({source})",
            language_name(target),
            language_name(source)
        )
    };
    ApiError::new(StatusCode::BAD_REQUEST, "unsupported", message)
}

/// `[{"code", "name", "targets"}]`: every language of a served pair, with the languages it
/// translates into and itself (LibreTranslate lists the identity too; Mastodon removes it).
async fn languages(State(rt): State<Arc<Runtime>>) -> Response {
    let pairs: Vec<(String, String)> = rt.registry.pairs().into_iter().map(|(_, p)| p).collect();
    let codes: BTreeSet<&String> = pairs.iter().flat_map(|(s, t)| [s, t]).collect();
    let list: Vec<Value> = codes
        .into_iter()
        .map(|code| {
            let mut targets: BTreeSet<&String> = pairs
                .iter()
                .filter(|(s, _)| s == code)
                .map(|(_, t)| t)
                .collect();
            targets.insert(code);
            json!({ "code": code, "name": language_name(code), "targets": targets })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// `POST /detect`: `[{"confidence", "language"}]`, up to three served languages, best first.
async fn detect_route(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, LtError> {
    let body = body.map_err(ApiError::from_body_rejection)?;
    let fields = Fields::read(&headers, uri.query(), body)
        .await
        .map_err(|e| LtError::bad(e.0))?;
    let api_key = fields.text("api_key").map_err(|e| LtError::bad(e.0))?;
    if !request_authorized(&rt, &headers, api_key.as_deref()) {
        return Err(LtError(StatusCode::FORBIDDEN, "Invalid API key".into()));
    }
    let texts = match fields.texts("q").map_err(|e| LtError::bad(e.0))? {
        // A list may hold only blank texts (their language is unknown: confidence 0).
        Some((t, list)) if (list && !t.is_empty()) || t.iter().any(|s| !s.trim().is_empty()) => t,
        _ => return Err(LtError::bad("Invalid request: missing q parameter")),
    };
    let most = rt.config.limits.max_inputs;
    if texts.len() > most {
        return Err(LtError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Invalid request: {} texts, at most {most}", texts.len()),
        ));
    }
    let limit = rt.config.limits.max_input_chars;
    if texts.iter().any(|t| t.chars().count() > limit) {
        return Err(LtError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Invalid request: text longer than the limit ({limit})"),
        ));
    }
    let served = source_languages(&rt);
    let found = detect(&texts.join("\n"), &served);
    let list: Vec<Value> = if found.is_empty() {
        vec![json!({ "confidence": 0.0, "language": served.first().map_or("en", String::as_str) })]
    } else {
        found.iter().map(translate::detection_json).collect()
    };
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

/// `GET /frontend/settings`, as far as it applies: limits, whether keys and files are on, the
/// default languages of LibreTranslate's web page.
async fn frontend_settings(State(rt): State<Arc<Runtime>>) -> Response {
    let lt = &rt.config.libretranslate;
    let key = rt.config.server.api_key.is_some();
    let target = rt
        .registry
        .pairs()
        .into_iter()
        .map(|(_, p)| p.1)
        .min()
        .unwrap_or_else(|| "en".into());
    let formats: Vec<&str> = if lt.files {
        files::EXTENSIONS.to_vec()
    } else {
        Vec::new()
    };
    json_response(
        StatusCode::OK,
        &json!({
            "apiKeys": key,
            "charLimit": rt.config.limits.max_input_chars,
            "filesTranslation": lt.files,
            "frontendTimeout": 500,
            "keyRequired": key,
            "language": {
                "source": {"code": "auto", "name": "Auto Detect"},
                "target": {"code": target, "name": language_name(&target)},
            },
            "suggestions": false,
            "supportedFilesFormat": formats,
        }),
    )
}
