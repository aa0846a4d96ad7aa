//! The gRPC messages converted to and from the runtime's transport-neutral types (what `wire.rs`
//! does for the JSON bodies).

use std::time::Duration;

use super::pb;
use crate::api::errors::ApiError;
use crate::runtime::Runtime;
use crate::runtime::registry::VariantStatus;
use crate::runtime::request::{
    ClassifyRequest, ClassifyResponse, TranslateRequest, TranslateResponse,
};

/// A classify request and its `top_k`.
pub fn classify_request(
    m: pb::ClassifyRequest,
    timeout: Option<Duration>,
) -> Result<(ClassifyRequest, Option<usize>), ApiError> {
    if m.top_k == Some(0) {
        return Err(ApiError::bad_request("`top_k` must be at least 1"));
    }
    let request = ClassifyRequest {
        model: m.model,
        variant: m.variant,
        inputs: m.inputs,
        truncate: m.truncate,
        timeout,
        ..ClassifyRequest::default()
    };
    Ok((request, m.top_k.map(usize_of)))
}

pub fn translate_request(m: pb::TranslateRequest, timeout: Option<Duration>) -> TranslateRequest {
    TranslateRequest {
        model: m.model,
        variant: m.variant,
        source: m.source,
        target: m.target,
        inputs: m.q,
        beam_size: m.beam_size.map(usize_of),
        max_length: m.max_length.map(usize_of),
        truncate: m.truncate,
        timeout,
        ..TranslateRequest::default()
    }
}

fn usize_of(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub fn classify_response(r: ClassifyResponse, top_k: Option<usize>) -> pb::ClassifyResponse {
    let results = r
        .results
        .into_iter()
        .map(|scores| {
            // The runtime gives every label, so `first` is the best one and is always there.
            let (label, score) = scores
                .first()
                .map_or((String::new(), 0.0), |s| (s.label.clone(), s.score));
            pb::ClassifyResult {
                label,
                score,
                scores: scores
                    .into_iter()
                    .take(top_k.unwrap_or(0))
                    .map(|s| pb::LabelScore {
                        label: s.label,
                        score: s.score,
                    })
                    .collect(),
            }
        })
        .collect();
    pb::ClassifyResponse {
        results,
        model: r.model,
        variant: r.variant,
    }
}

pub fn translate_response(r: TranslateResponse) -> pb::TranslateResponse {
    pb::TranslateResponse {
        translated_text: r.outputs,
        model: r.model,
        variant: r.variant,
    }
}

/// What `GET /v1/models` lists, as messages.
pub fn list_models(rt: &Runtime) -> pb::ListModelsResponse {
    let models = rt
        .registry
        .views(|q| rt.pool.queue_depth(q))
        .into_iter()
        .map(|m| pb::ModelInfo {
            task: m.task.map(|t| t.as_str()).unwrap_or_default().into(),
            default_variant: m.default_variant,
            name: m.name,
            variants: m
                .variants
                .into_iter()
                .map(|v| {
                    let (scheme, bits) = (v.kind.scheme, v.kind.bits);
                    pb::VariantInfo {
                        status: v.status.as_str().into(),
                        bytes: v.engine.map(|e| e.weight_bytes() as u64),
                        scheme,
                        bits,
                        queue_depth: v.queue_depth as u64,
                        error: match v.status {
                            VariantStatus::Failed(msg) => Some(msg),
                            _ => None,
                        },
                        name: v.name,
                    }
                })
                .collect(),
        })
        .collect();
    pb::ListModelsResponse { models }
}
