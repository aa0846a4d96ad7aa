//! HTTP routes and handlers: parse, call the runtime, format. No inference happens here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::auth::authorized;
use super::errors::ApiError;
use super::request_id::{X_MODEL, X_TIMEOUT_MS, X_VARIANT};
use super::{admin, libretranslate, openai, tei, wire};
use crate::runtime::Runtime;
use crate::runtime::pool::QueueKey;
use crate::runtime::request::RouteHeaders;

type AppState = State<Arc<Runtime>>;

pub fn router(runtime: Arc<Runtime>) -> Router {
    let protected = Router::new()
        .route("/classify", post(classify))
        .route("/v1/classify", post(classify))
        // TEI (one model each: the default classifier / embedder, or the body's `model`).
        .route("/predict", post(tei::predict))
        .route("/embed", post(tei::embed))
        .route("/tokenize", post(tei::tokenize))
        .route("/decode", post(tei::decode))
        .route("/info", get(tei::info))
        // OpenAI (and TEI's alias without /v1).
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/embeddings", post(openai::embeddings))
        .route("/v1/models", get(models))
        .route("/v1/models/{model}", get(admin::model_detail))
        .route("/v1/models/{model}/ab", get(admin::ab_report))
        .route("/v1/feedback", post(admin::feedback))
        .route("/v1/compare", post(super::compare::compare))
        .route_layer(middleware::from_fn(require_json))
        .route_layer(middleware::from_fn_with_state(
            runtime.clone(),
            require_api_key,
        ));
    // LibreTranslate takes its key in the body (`api_key`) too: these handlers check it.
    let libretranslate = libretranslate::router()
        .route("/translate", post(libretranslate::translate::translate))
        .route("/v1/translate", post(libretranslate::translate::translate));
    let cors = runtime.config.cors.clone();
    let mut app = Router::new().merge(protected).merge(libretranslate);
    // With a listener of its own (`admin_router`), /admin is not served here.
    if runtime.config.server.admin_addr.is_none() {
        app = app.merge(admin::router(runtime.clone()));
    }
    let app = app
        .merge(super::console::router())
        .route("/health", get(tei::health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(super::docs::index))
        .route("/docs/{asset}", get(super::docs::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(runtime.config.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            runtime.clone(),
            super::ab::ticket_header,
        ))
        .with_state(runtime);
    super::middleware::wrap(app, &cors)
}

/// The admin API alone, for `server.admin_addr`.
pub fn admin_router(runtime: Arc<Runtime>) -> Router {
    let app = Router::new()
        .merge(admin::router(runtime.clone()))
        .route("/health/live", get(live))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(runtime.config.limits.max_body_bytes))
        .with_state(runtime.clone());
    super::middleware::wrap(app, &runtime.config.cors)
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// The request's id, for handlers (feedback refers to served requests by it); set by
/// `middleware.rs`.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A body on a JSON endpoint must say it is JSON: `application/json` (or `+json`), or a form
/// type (what `curl -d` sends; such bodies are still read as JSON). A missing or other type
/// (`text/plain`) is a 415 instead of being parsed as JSON regardless.
pub(crate) async fn require_json(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let json = mime.as_deref().is_some_and(|m| {
        m == "application/json" || m.ends_with("+json") || m == "application/x-www-form-urlencoded"
    });
    if has_body && !json {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body must be JSON with `content-type: application/json` (got {})",
                mime.as_deref().unwrap_or("no content-type")
            ),
        )
        .into_response();
    }
    next.run(req).await
}

async fn require_api_key(State(rt): AppState, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !authorized(&rt, given) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// The router's view of a request's headers (for a sticky key).
pub(crate) fn route_headers(headers: &HeaderMap) -> RouteHeaders {
    RouteHeaders::new(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    )
}

pub(crate) fn header_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    match headers.get(X_TIMEOUT_MS) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&ms| ms >= 1)
            .map(|ms| Some(Duration::from_millis(ms)))
            .ok_or_else(|| {
                ApiError::bad_request("x-timeout-ms must be a number of milliseconds (at least 1)")
            }),
    }
}

/// Records the request in the metrics and labels the response with the model and variant.
pub(crate) fn finish(
    rt: &Runtime,
    endpoint: &str,
    target: Option<QueueKey>,
    started: Instant,
    result: Result<Response, ApiError>,
) -> Response {
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    let (model, variant) = match &target {
        Some(k) => (k.model.as_str(), k.variant.as_str()),
        // Unknown names must not become label values: clients could create series at will.
        None => ("unknown", "unknown"),
    };
    let status = resp.status().as_u16().to_string();
    rt.metrics
        .requests_total
        .with_label_values(&[model, variant, endpoint, &status])
        .inc();
    rt.metrics
        .request_duration
        .with_label_values(&[model, variant])
        .observe(started.elapsed().as_secs_f64());
    if let Some(k) = &target {
        let headers = resp.headers_mut();
        for (name, value) in [(X_MODEL, &k.model), (X_VARIANT, &k.variant)] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
    }
    resp
}

async fn classify(
    State(rt): AppState,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut target = None;
    let result = async {
        let body = body.map_err(ApiError::from_body_rejection)?;
        let mut parsed = wire::parse_classify(&body, header_timeout(&headers)?)?;
        parsed.request.request_id = Some(id);
        parsed.request.headers = route_headers(&headers);
        let served = rt.classify(parsed.request).await;
        target = served.target;
        let resp = served.result?;
        Ok::<_, ApiError>(json_response(
            StatusCode::OK,
            &wire::classify_body(&resp, parsed.top_k),
        ))
    }
    .await;
    finish(&rt, "classify", target, started, result)
}

async fn models(State(rt): AppState) -> Response {
    let models: Vec<Value> = rt
        .registry
        .views(|q| rt.pool.queue_depth(q))
        .iter()
        .map(admin::model_json)
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

async fn live() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "live" }))
}

async fn ready(State(rt): AppState) -> Response {
    if rt.is_ready() {
        return json_response(StatusCode::OK, &json!({ "status": "ready" }));
    }
    let waiting: Vec<Value> =
        rt.registry
            .views(|_| 0)
            .iter()
            .flat_map(|m| {
                m.variants.iter().filter(|v| v.weight > 0).map(
                    |v| json!({ "model": m.name, "variant": v.name, "status": v.status.as_str() }),
                )
            })
            .collect();
    let status = if rt.is_draining() {
        "shutting_down"
    } else {
        "not_ready"
    };
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "status": status, "models": waiting }),
    )
}

async fn metrics(State(rt): AppState) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        rt.metrics.render(),
    )
        .into_response()
}

/// Made per request: it shows the keys, limits and language pairs in force.
async fn openapi(State(rt): AppState) -> Response {
    json_response(StatusCode::OK, &super::openapi::document(&rt))
}

async fn not_found() -> Response {
    ApiError::not_found("no such endpoint").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
    .into_response()
}
