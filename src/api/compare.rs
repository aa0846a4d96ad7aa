//! `POST /v1/compare`: one input on several variants of a model, side by side with their
//! latency and agreement with the reference variant (the web console's compare mode).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::errors::ApiError;
use super::http::{header_timeout, json_response};
use crate::runtime::Runtime;
use crate::runtime::compare_request::CompareRequest;

/// `POST /v1/compare`'s body (its schema is in the OpenAPI document).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompareBody {
    /// A served model.
    model: String,
    /// The one input every variant answers.
    #[schema(value_type = crate::api::openapi::schemas::NonBlankText)]
    input: String,
    /// The variants to run (default: every ready variant).
    #[serde(default)]
    variants: Vec<String>,
    /// The variant the others are measured against (default: the model's reference).
    reference: Option<String>,
    #[serde(default)]
    truncate: bool,
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
}

pub async fn compare(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body.map_err(ApiError::from_body_rejection)?;
        let b: CompareBody = super::json_body::parse(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        let timeout = b
            .timeout_ms
            .map(Duration::from_millis)
            .or(header_timeout(&headers)?);
        let req = CompareRequest {
            model: b.model,
            input: b.input,
            variants: b.variants,
            reference: b.reference,
            truncate: b.truncate,
            timeout,
        };
        let resp = rt.compare_variants(req).await?;
        Ok::<_, ApiError>(json_response(
            StatusCode::OK,
            &serde_json::to_value(resp).unwrap_or_default(),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
