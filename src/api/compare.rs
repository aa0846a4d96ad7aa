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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareBody {
    model: String,
    input: String,
    #[serde(default)]
    variants: Vec<String>,
    reference: Option<String>,
    #[serde(default)]
    truncate: bool,
    timeout_ms: Option<u64>,
}

pub async fn compare(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body.map_err(ApiError::from_body_rejection)?;
        let b: CompareBody = serde_json::from_slice(&body)
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
