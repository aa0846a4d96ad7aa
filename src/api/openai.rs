//! OpenAI's `POST /v1/embeddings` (also TEI's), so the `openai` client's `embeddings.create`
//! works with its base URL pointed here. `model` picks a served model when it names one, else
//! the default embedder (clients send OpenAI model names). Vectors are always L2-normalised.
//! `encoding_format: "base64"` (the Python client's default) is the little-endian f32 bytes.
//!
//! Errors are OpenAI's `{"error": {"message", "type", "param", "code"}}` (the client reads
//! `error.message`), with quantserve's statuses and its error kind as `type` and `code`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::http::{RequestId, finish, json_response, route_headers};
use super::tei::{dimensions, embed_inputs};
use crate::runtime::Runtime;
use crate::runtime::request::EmbedRequest;

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct EmbeddingsBody {
    #[schema(value_type = crate::api::openapi::schemas::NonEmptyTexts, required = true)]
    input: Option<Value>,
    model: Option<String>,
    #[schema(schema_with = crate::api::openapi::schemas::encoding_format)]
    encoding_format: Option<String>,
    #[schema(minimum = 1)]
    dimensions: Option<u64>,
    #[allow(dead_code)]
    user: Option<String>,
}

/// OpenAI's error body for `e`.
fn openai_error(e: ApiError) -> Response {
    json_response(
        e.status,
        &json!({ "error": { "message": e.message, "type": e.code, "param": null, "code": e.code } }),
    )
}

/// Little-endian f32 bytes in standard base64, as OpenAI encodes a vector.
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn embeddings(
    State(rt): State<Arc<Runtime>>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut target = None;
    let result: Result<Response, ApiError> = async {
        let body = body.map_err(ApiError::from_body_rejection)?;
        let b: EmbeddingsBody = super::json_body::parse(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        let base64 = match b.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(f) => {
                return Err(ApiError::bad_request(format!(
                    "encoding_format `{f}` is not supported (float or base64)"
                )));
            }
        };
        let (inputs, _) = embed_inputs(b.input, "input").map_err(|e| ApiError::bad_request(e.2))?;
        let model = b.model.filter(|m| rt.registry.has_model(m));
        let req = EmbedRequest {
            model,
            request_id: Some(id),
            headers: route_headers(&headers),
            inputs,
            // As TEI's OpenAI route (auto_truncate): long inputs are cut to the model's limit.
            truncate: true,
            normalize: true,
            dimensions: dimensions(b.dimensions),
            ..EmbedRequest::default()
        };
        let served = rt.embed(req).await;
        target = served.target;
        let resp = served.result?;
        let data: Vec<Value> = resp
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let embedding = if base64 {
                    json!(base64_f32(v))
                } else {
                    json!(v)
                };
                json!({ "object": "embedding", "embedding": embedding, "index": i })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "object": "list",
                "data": data,
                "model": resp.model,
                "usage": { "prompt_tokens": resp.tokens, "total_tokens": resp.tokens },
            }),
        ))
    }
    .await;
    let response = result.unwrap_or_else(openai_error);
    finish(&rt, "embeddings", target, started, Ok(response))
}

#[cfg(test)]
mod tests {
    use super::base64_f32;

    #[test]
    fn base64_is_little_endian_f32() {
        // OpenAI's own examples.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[0.0, 0.5, -0.25]), "AAAAAAAAAD8AAIC+");
    }
}
