//! Operating variants over HTTP: the admin API (load, unload, hot swap, routing, reload, recent
//! shadow disagreements), the A/B report and the feedback endpoint. Parse, call the runtime,
//! format; the admin calls that load run on the blocking pool, never on the executor.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::auth::bearer_matches;
use super::errors::ApiError;
use super::http::json_response;
use crate::runtime::config::ServerConfig;
use crate::runtime::registry::{ModelView, VariantStatus};
use crate::runtime::routing::Routing;
use crate::runtime::{Runtime, RuntimeError};

type AppState = State<Arc<Runtime>>;

/// The `/admin` routes, behind the admin key (or the API key when only that is configured).
pub fn router(runtime: Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
        .route(
            "/admin/models/{model}/variants/{action}",
            post(variant_action),
        )
        .route(
            "/admin/models/{model}/routing",
            get(get_routing).put(put_routing),
        )
        .route("/admin/models/{model}/disagreements", get(disagreements))
        .route("/admin/reload", post(reload))
        .route_layer(middleware::from_fn(super::http::require_json))
        .route_layer(middleware::from_fn_with_state(runtime, require_admin_key))
}

/// Whether `/admin` is refused outright: it would be reachable on a non-loopback address with
/// no `admin_key` (an `api_key` is shared with every API client, so it does not count).
pub fn admin_disabled(server: &ServerConfig) -> bool {
    let addr = server.admin_addr.as_deref().unwrap_or(&server.http_addr);
    server.admin_key.is_none() && !is_loopback(addr)
}

/// `host:port` on a loopback address (`localhost` counts; anything unparsable does not).
fn is_loopback(addr: &str) -> bool {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// Logs, once at start, that `/admin` is off and why.
pub fn warn_if_disabled(server: &ServerConfig) {
    if admin_disabled(server) {
        let addr = server.admin_addr.as_deref().unwrap_or(&server.http_addr);
        tracing::warn!(
            "THE ADMIN API IS DISABLED: it would be served on {addr}, not a loopback address, \
             without server.admin_key; set admin_key (QUANTSERVE_ADMIN_KEY) or admin_addr to a \
             loopback address to enable it"
        );
    }
}

async fn require_admin_key(State(rt): AppState, req: Request, next: Next) -> Response {
    let server = &rt.config.server;
    if admin_disabled(server) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: the server listens on a non-loopback address without \
             server.admin_key",
        )
        .into_response();
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Recent disagreements hold other users' inputs: only the admin key itself opens them.
    if req.uri().path().ends_with("/disagreements") {
        if server.admin_key.is_none() {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_key_required",
                "shadow disagreements hold users' inputs: set server.admin_key to read them",
            )
            .into_response();
        }
        if !bearer_matches(server.admin_key.as_deref(), given) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API needs `Authorization: Bearer <admin key>`",
            )
            .into_response();
        }
    }
    let key = server.admin_key.as_deref().or(server.api_key.as_deref());
    if !bearer_matches(key, given) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs `Authorization: Bearer <admin key>`",
        )
        .into_response();
    }
    next.run(req).await
}

/// Runs a long admin job (loading takes seconds) on a thread of its own: the blocking pool is
/// kept small for tokenizing requests, and must not be taken by loads.
pub async fn off_executor<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("qs-admin".into())
        .spawn(move || {
            let _ = tx.send(job());
        })
        .map_err(|e| RuntimeError::Internal(format!("starting an admin thread: {e}")))?;
    rx.await
        .map_err(|_| RuntimeError::Internal("the admin job panicked".into()))?
}

fn result_json(result: Result<Value, RuntimeError>) -> Response {
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// One model as `/v1/models` and `/v1/models/{model}` show it.
pub fn model_json(m: &ModelView) -> Value {
    let variants: Vec<Value> = m
        .variants
        .iter()
        .map(|v| {
            let (scheme, bits) = (&v.kind.scheme, v.kind.bits);
            let mut j = json!({
                "name": v.name,
                "status": v.status.as_str(),
                "bytes": v.engine.as_ref().map(|e| e.weight_bytes()),
                "scheme": scheme,
                "bits": bits,
                "queue_depth": v.queue_depth,
                "weight": v.weight,
            });
            if v.reloading {
                j["reloading"] = json!(true);
            }
            if let Some(training) = &v.kind.training {
                j["training"] = training.clone();
            }
            if let Some(check) = &v.self_check {
                j["self_check"] = json!(check);
            }
            if let VariantStatus::Failed(msg) = &v.status {
                j["error"] = json!(msg);
            } else if let Some(msg) = &v.last_error {
                j["last_error"] = json!(msg);
            }
            j
        })
        .collect();
    json!({
        "name": m.name,
        "task": m.task.map(|t| t.as_str()),
        "default_variant": m.default_variant,
        "reference_variant": m.reference,
        "routing": m.routing,
        "variants": variants,
    })
}

fn model_view(rt: &Runtime, model: &str) -> Result<ModelView, RuntimeError> {
    rt.registry
        .views(|q| rt.pool.queue_depth(q))
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| RuntimeError::UnknownModel(model.into()))
}

pub async fn model_detail(State(rt): AppState, Path(model): Path<String>) -> Response {
    result_json(model_view(&rt, &model).map(|m| model_json(&m)))
}

/// `POST /admin/models/{model}/variants/{variant}:load` and `...:unload`.
async fn variant_action(
    State(rt): AppState,
    Path((model, action)): Path<(String, String)>,
) -> Response {
    let Some((variant, verb)) = action.rsplit_once(':') else {
        return ApiError::not_found("use /admin/models/{model}/variants/{variant}:load or :unload")
            .into_response();
    };
    let variant = variant.to_string();
    match verb {
        "load" => {
            let rt2 = rt.clone();
            let result = off_executor(move || rt2.load_variant(&model, &variant)).await;
            result_json(result.map(|report| {
                let mut v = json!(report);
                v["status"] = json!("active");
                v
            }))
        }
        "unload" => result_json(
            rt.unload_variant(&model, &variant)
                .map(|()| json!({ "model": model, "variant": variant, "status": "unloaded" })),
        ),
        other => ApiError::not_found(format!(
            "unknown action `{other}`: use `:load` or `:unload`"
        ))
        .into_response(),
    }
}

async fn get_routing(State(rt): AppState, Path(model): Path<String>) -> Response {
    result_json(rt.registry.routing(&model).map(|r| json!(r)))
}

async fn put_routing(
    State(rt): AppState,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from_body_rejection(e).into_response(),
    };
    let mut routing: Routing = match super::json_body::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::bad_request(format!("invalid routing: {e}")).into_response();
        }
    };
    // A body without "shadow" keeps the configured shadow (a split change must not silently
    // end the comparison); `"shadow": null` removes it.
    let names_shadow = serde_json::from_slice::<Value>(&body)
        .ok()
        .is_some_and(|v| v.get("shadow").is_some());
    if !names_shadow {
        routing.shadow = rt.registry.routing(&model).ok().and_then(|r| r.shadow);
    }
    result_json(
        rt.set_routing(&model, routing)
            .and_then(|()| rt.registry.routing(&model))
            .map(|r| json!(r)),
    )
}

async fn disagreements(State(rt): AppState, Path(model): Path<String>) -> Response {
    if !rt.registry.has_model(&model) {
        return ApiError::from(RuntimeError::UnknownModel(model)).into_response();
    }
    let items = rt.shadow.disagreements(&model);
    json_response(
        StatusCode::OK,
        &json!({ "model": model, "disagreements": items }),
    )
}

async fn reload(State(rt): AppState) -> Response {
    let result = off_executor(move || rt.reload_config()).await;
    result_json(result.map(|report| json!(report)))
}

pub use super::ab::{ab_report, feedback};
