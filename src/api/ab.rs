//! The A/B endpoints: the report of a model's experiment (`GET /v1/models/{m}/ab`, a table for
//! people or JSON with `?format=json`), ground truth (`POST /v1/feedback`), and the middleware
//! that hands each served request its experiment ticket (`x-quantserve-ab-ticket`), which lets
//! any replica count feedback for it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::http::{RequestId, json_response};
use super::request_id::X_VARIANT;
use crate::runtime::ab::analysis::Comparison;
use crate::runtime::ab::feedback::FeedbackInput;
use crate::runtime::ab::text::verdict_text;
use crate::runtime::ab::ticket::{Kind, Ticket, X_AB_TICKET};
use crate::runtime::ab::{ExperimentReport, PeriodReport};
use crate::runtime::abtest::{AbReport, Feedback, Proportion};
use crate::runtime::experiment::assignment::cluster_bucket;
use crate::runtime::experiment::latency::{Latency, Percentile};
use crate::runtime::registry::ModelView;
use crate::runtime::{Runtime, RuntimeError};

type AppState = State<Arc<Runtime>>;

/// Adds the experiment ticket to the response of a request that was served by a variant.
pub async fn ticket_header(State(rt): AppState, req: Request, next: Next) -> Response {
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let mut resp = next.run(req).await;
    if resp.headers().contains_key(X_VARIANT)
        && let Some(t) = id.and_then(|id| rt.experiments.served.ticket(&id))
        && let Ok(v) = HeaderValue::from_str(&t.encode())
    {
        resp.headers_mut().insert(X_AB_TICKET, v);
    }
    resp
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
    /// For requests served by another replica: the response's `x-quantserve-ab-ticket`...
    #[schema(
        nullable = false,
        pattern = "^v1/[^/]+/[^/]+/[0-9]{1,9}/[^/]+/[^/]+/[0-9]{1,9}/[rfo]$"
    )]
    ticket: Option<String>,
    /// ... or the model and variant that served it (and the sticky key's value, for its bucket).
    #[schema(nullable = false)]
    model: Option<String>,
    #[schema(nullable = false)]
    variant: Option<String>,
    #[schema(nullable = false)]
    user: Option<String>,
    /// The label the request was answered with (with `label`, when not served here).
    #[schema(nullable = false)]
    predicted: Option<String>,
}

/// A classifier's labels, from any serving variant of `model` (empty for other tasks).
fn labels_of(rt: &Runtime, model: &str, variant: &str) -> Arc<Vec<String>> {
    let entry = rt.registry.resolve(model, variant).ok().or_else(|| {
        let view = rt
            .registry
            .views(|_| 0)
            .into_iter()
            .find(|m| m.name == model)?;
        rt.registry.resolve(model, &view.reference).ok()
    });
    Arc::new(entry.map(|e| e.engine.labels()).unwrap_or_default())
}

/// The ticket of a request served by another replica, from the feedback's fields.
fn remote_ticket(
    rt: &Runtime,
    body: &FeedbackBody,
) -> Result<(Ticket, Arc<Vec<String>>), RuntimeError> {
    let ticket = match (&body.ticket, &body.model, &body.variant) {
        (Some(t), _, _) => Ticket::decode(t).map_err(RuntimeError::BadRequest)?,
        (None, Some(model), Some(variant)) => {
            let (settings, setup) = rt
                .registry
                .experiment_setup(model)
                .ok_or_else(|| RuntimeError::UnknownModel(model.clone()))?;
            if !setup.split.contains_key(variant) && setup.reference != *variant {
                return Err(RuntimeError::UnknownVariant {
                    model: model.clone(),
                    variant: variant.clone(),
                });
            }
            rt.experiments.sync(model, &settings, &setup);
            let (experiment, period) = rt
                .experiments
                .current_period(model)
                .ok_or_else(|| RuntimeError::UnknownModel(model.clone()))?;
            let bucket = match (&body.user, setup.sticky) {
                (Some(u), true) => cluster_bucket(&experiment, u, settings.buckets),
                _ => 0,
            };
            Ticket {
                model: model.clone(),
                experiment,
                period,
                assigned: variant.clone(),
                served: variant.clone(),
                bucket,
                kind: Kind::Randomised,
            }
        }
        _ => {
            return Err(RuntimeError::BadRequest(
                "give `ticket`, or both `model` and `variant`".into(),
            ));
        }
    };
    if !rt.registry.has_model(&ticket.model) {
        return Err(RuntimeError::UnknownModel(ticket.model));
    }
    let labels = labels_of(rt, &ticket.model, &ticket.served);
    Ok((ticket, labels))
}

/// `POST /v1/feedback`: ground truth for a served request, by its `x-request-id`.
pub async fn feedback(State(rt): AppState, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from_body_rejection(e).into_response(),
    };
    let parsed: FeedbackBody = match super::json_body::parse(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("invalid feedback: {e}")).into_response();
        }
    };
    let input = FeedbackInput {
        request_id: parsed.request_id.clone(),
        label: parsed.label.clone(),
        correct: parsed.correct,
        index: parsed.index.unwrap_or(0),
        ticket: parsed.ticket.clone(),
        model: parsed.model.clone(),
        variant: parsed.variant.clone(),
        predicted: parsed.predicted.clone(),
    };
    let recorded = rt
        .experiments
        .served
        .answer(&input, |_| remote_ticket(&rt, &parsed));
    let result = recorded.map(|r| {
        let t = &r.ticket;
        rt.experiments.record_feedback(t, r.correct);
        if r.local {
            // The lifetime per-variant table (all traffic, overrides included).
            let legacy = Feedback {
                request_id: input.request_id.clone(),
                label: r.label.clone(),
                correct: r.label.is_none().then_some(r.correct),
                index: input.index,
            };
            let _ = rt.ab.feedback(&legacy);
        }
        rt.metrics
            .feedback_total
            .with_label_values(&[
                t.model.as_str(),
                t.served.as_str(),
                if r.correct { "true" } else { "false" },
            ])
            .inc();
        json!({
            "request_id": input.request_id,
            "model": t.model,
            "variant": t.served,
            "correct": r.correct,
            "experiment": t.experiment,
            "period": t.period,
            "analysed": t.analysed(),
            "served_here": r.local,
        })
    });
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The experiment JSON of a model: the current period's verdicts at the top level.
pub fn experiment_json(e: &ExperimentReport) -> Value {
    let current = e.periods.first();
    json!({
        "experiment": {
            "id": e.id,
            "started_at": e.started_at,
            "period": e.period,
            "settings": e.settings,
            "periods": e.periods.iter().map(|p| json!({
                "period": p.period, "started_at": p.started_at, "ended_at": p.ended_at,
                "reason": p.reason,
            })).collect::<Vec<_>>(),
        },
        "current_period": current,
        "comparisons": current.map(|p| json!(p.analysis.comparisons)),
        "srm": current.map(|p| json!(p.analysis.srm)),
        "power": current.map(|p| json!(p.analysis.power)),
        "previous_periods": e.periods.iter().skip(1).collect::<Vec<_>>(),
    })
}

/// `GET /v1/models/{model}/ab`: a table for people; JSON with `?format=json` or
/// `Accept: application/json`.
pub async fn ab_report(
    State(rt): AppState,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let view = match rt
        .registry
        .views(|q| rt.pool.queue_depth(q))
        .into_iter()
        .find(|m| m.name == model)
    {
        Some(v) => v,
        None => return ApiError::from(RuntimeError::UnknownModel(model)).into_response(),
    };
    if let Some((settings, setup)) = rt.registry.experiment_setup(&model) {
        rt.experiments.sync(&model, &settings, &setup);
    }
    let experiment = rt.experiments.report(&model);
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
        // How representative the shadow sample is: per variant `shadow_compared` and
        // `shadow_drop_rate`; the share of batches shadow copies are guaranteed under load.
        v["shadow_min_share"] = json!(rt.config.batching.shadow_min_share);
        if let Some(e) = &experiment
            && let Value::Object(extra) = experiment_json(e)
        {
            v.as_object_mut().expect("an object").extend(extra);
        }
        return json_response(StatusCode::OK, &v);
    }
    let mut text = lifetime_table(&report, &view);
    if let Some(e) = &experiment {
        text.push('\n');
        text.push_str(&experiment_text(e));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// Every request since start per variant (overrides included): what is being served.
fn lifetime_table(report: &AbReport, view: &ModelView) -> String {
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
        "A/B report for {} (reference {}; shadow {})\n\nAll traffic since start (overrides \
         included; for orientation, not for decisions):\n",
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
    out
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

fn latency_ms(l: Latency) -> String {
    match l {
        Latency::Seconds(s) => format!("{:.1}", s * 1000.0),
        Latency::Infinite => "inf".into(),
    }
}

fn percentile(p: &Option<Percentile>) -> String {
    p.as_ref().map_or_else(
        || "-".into(),
        |p| {
            format!(
                "{} [{}, {}]",
                latency_ms(p.estimate),
                latency_ms(p.low),
                latency_ms(p.high)
            )
        },
    )
}

/// The experiment's current period (guardrails, verdicts, SRM, power) and the earlier periods.
pub fn experiment_text(e: &ExperimentReport) -> String {
    let mut out = format!(
        "Experiment {} (started {}), period {}; margin {:.1} pt, alpha {}, power {}\n",
        e.id,
        e.started_at,
        e.period,
        e.settings.margin * 100.0,
        e.settings.alpha,
        e.settings.power
    );
    if let Some(p) = e.periods.first() {
        out.push_str(&period_text(p));
    }
    for p in e.periods.iter().skip(1) {
        let _ = writeln!(
            out,
            "earlier period {} ({} to {}, {}): {}",
            p.period,
            p.started_at,
            p.ended_at.unwrap_or(0),
            p.reason,
            verdict_summary(&p.analysis.comparisons)
        );
    }
    out
}

fn verdict_summary(comparisons: &[Comparison]) -> String {
    if comparisons.is_empty() {
        return "no comparisons".into();
    }
    comparisons
        .iter()
        .map(|c| format!("{} {}", c.variant, json!(c.verdict).as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One period: its guardrail table, verdicts, SRM and power.
pub fn period_text(p: &PeriodReport) -> String {
    let mut out = format!(
        "Period {} since {} ({}); analysed requests only (no overrides, no fallbacks)\n",
        p.period, p.started_at, p.reason
    );
    let _ = writeln!(
        out,
        "{:<12} {:>6} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8}  {:<22} {:<22}",
        "variant",
        "weight",
        "assigned",
        "users",
        "requests",
        "feedback",
        "fb rate",
        "errors",
        "shadow drop",
        "p50 ms [CI]",
        "p99 ms [CI]"
    );
    for v in &p.variants {
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8}  {:<22} {:<22}",
            v.variant,
            v.weight,
            v.assigned,
            v.users.map_or_else(|| "-".into(), |u| u.to_string()),
            v.requests,
            v.feedback,
            pct(v.feedback_rate),
            pct(v.error_rate),
            pct(v.shadow_drop_rate),
            percentile(&v.latency.p50),
            percentile(&v.latency.p99),
        );
    }
    out.push_str(&verdict_text(&p.analysis));
    out
}
