//! Operating variants over HTTP: the admin API (load, unload, hot swap, routing, reload, recent
//! shadow disagreements), the A/B report and the feedback endpoint. Parse, call the runtime,
//! format; the admin calls that load run on the blocking pool, never on the executor.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::bearer_matches;
use super::errors::ApiError;
use super::http::json_response;
use crate::runtime::abtest::{AbReport, Feedback, Proportion};
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
        .route_layer(middleware::from_fn_with_state(runtime, require_admin_key))
}

async fn require_admin_key(State(rt): AppState, req: Request, next: Next) -> Response {
    let server = &rt.config.server;
    let key = server.admin_key.as_deref().or(server.api_key.as_deref());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
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
    let routing: Routing = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::bad_request(format!("invalid routing: {e}")).into_response();
        }
    };
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

/// Exactly one of `label` and `correct` (the document's `oneOf`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedbackBody {
    request_id: String,
    #[schema(nullable = false)]
    label: Option<String>,
    #[schema(nullable = false)]
    correct: Option<bool>,
    #[schema(nullable = false, default = 0)]
    index: Option<usize>,
}

/// `POST /v1/feedback`: ground truth for a served request, by its `x-request-id`.
pub async fn feedback(State(rt): AppState, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from_body_rejection(e).into_response(),
    };
    let parsed: FeedbackBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("invalid feedback: {e}")).into_response();
        }
    };
    let fb = Feedback {
        request_id: parsed.request_id,
        label: parsed.label,
        correct: parsed.correct,
        index: parsed.index.unwrap_or(0),
    };
    result_json(rt.ab.feedback(&fb).map(|(key, correct)| {
        rt.metrics
            .feedback_total
            .with_label_values(&[
                key.model.as_str(),
                key.variant.as_str(),
                if correct { "true" } else { "false" },
            ])
            .inc();
        json!({
            "request_id": fb.request_id,
            "model": key.model,
            "variant": key.variant,
            "correct": correct,
        })
    }))
}

/// `GET /v1/models/{model}/ab`: a table for people; JSON with `?format=json` or
/// `Accept: application/json`.
pub async fn ab_report(
    State(rt): AppState,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let view = match model_view(&rt, &model) {
        Ok(v) => v,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let names: Vec<String> = view.variants.iter().map(|v| v.name.clone()).collect();
    let report = rt.ab.report(&model, &names);
    let wants_json = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "format=json"))
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let mut v = json!(report);
        v["routing"] = json!(view.routing);
        v["reference_variant"] = json!(view.reference);
        return json_response(StatusCode::OK, &v);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        ab_table(&report, &view),
    )
        .into_response()
}

fn ab_table(report: &AbReport, view: &ModelView) -> String {
    let ms = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{:.1}", s * 1000.0));
    let prop = |p: &Option<Proportion>| {
        p.as_ref().map_or_else(
            || "-".into(),
            |p| {
                format!(
                    "{:.3} [{:.3}, {:.3}] n={}",
                    p.value, p.ci95[0], p.ci95[1], p.n
                )
            },
        )
    };
    let mut out = format!(
        "A/B report for {} (reference {}; shadow {})\n\n",
        report.model,
        view.reference,
        view.routing.shadow.as_ref().map_or_else(
            || "off".into(),
            |s| format!("on {} at {}", s.reference, s.sample_rate)
        )
    );
    let _ = writeln!(
        out,
        "{:<12} {:>6} {:>9} {:>7} {:>8} {:>8} {:>8}  {:<34} {:<34}",
        "variant",
        "weight",
        "requests",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "shadow agreement [95% CI]",
        "online accuracy [95% CI]"
    );
    for v in &report.variants {
        let weight = view.routing.split.get(&v.variant).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>9} {:>7} {:>8} {:>8} {:>8}  {:<34} {:<34}",
            v.variant,
            weight,
            v.requests,
            v.errors,
            ms(v.latency_p50),
            ms(v.latency_p95),
            ms(v.latency_p99),
            prop(&v.shadow_agreement),
            prop(&v.online_accuracy),
        );
    }
    out.push('\n');
    match &report.leader {
        Some(l) => {
            let _ = writeln!(
                out,
                "ahead: {} over {} on {}, confidence {:.3}",
                l.variant, l.over, l.metric, l.confidence
            );
        }
        None => out.push_str("ahead: not known yet (needs feedback for two variants)\n"),
    }
    out
}
