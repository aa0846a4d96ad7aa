//! `POST /translate` (alias `/v1/translate`): quantserve's translate endpoint, which speaks
//! LibreTranslate. The route is shared with quantserve's own clients, so its errors keep
//! quantserve's shape `{"error", "code"}`, a superset of LibreTranslate's `{"error"}` (its
//! clients read only `error`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::fields::Fields;
use super::{detect_for, pair_error, request_authorized};
use crate::api::errors::ApiError;
use crate::api::http::{RequestId, finish, header_timeout, json_response, route_headers};
use crate::runtime::detect::{Detection, base_language};
use crate::runtime::request::{TextFormat, TranslateRequest};
use crate::runtime::{Runtime, RuntimeError};

/// A parsed translate request.
pub struct TranslateCall {
    pub request: TranslateRequest,
    /// `q` was a list: answer with lists.
    pub batched: bool,
    /// LibreTranslate's `api_key` field (an alternative to `Authorization: Bearer`).
    pub api_key: Option<String>,
}

fn bad(e: super::fields::FieldError) -> ApiError {
    ApiError::bad_request(e.0)
}

fn usize_of(v: Option<u64>) -> Option<usize> {
    v.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// The request in `fields`. `compat` is LibreTranslate compatibility
/// (`[libretranslate] enabled`): `format` may be `html` (else only `text`, and anything else is
/// 422 `unsupported`, quantserve's contract before it).
pub fn translate_call(
    fields: &Fields,
    header_timeout: Option<Duration>,
    compat: bool,
) -> Result<TranslateCall, ApiError> {
    let (inputs, batched) = fields
        .texts("q")
        .map_err(bad)?
        .ok_or_else(|| ApiError::bad_request("`q` is required"))?;
    // As LibreTranslate: a blank text is refused, a list of blank texts comes back blank.
    if !batched && inputs.iter().all(|t| t.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "nothing to translate: the input is empty",
        ));
    }
    let format = match fields.text("format").map_err(bad)?.as_deref() {
        None | Some("text") => TextFormat::Text,
        Some("html") if compat => TextFormat::Html,
        Some(f) if compat => {
            return Err(ApiError::bad_request(format!(
                "{f} format is not supported"
            )));
        }
        Some(f) => {
            return Err(RuntimeError::Unsupported(format!(
                "format `{f}` is not supported (only \"text\")"
            ))
            .into());
        }
    };
    let timeout = fields
        .uint("timeout_ms")
        .map_err(bad)?
        .map(Duration::from_millis)
        .or(header_timeout);
    Ok(TranslateCall {
        request: TranslateRequest {
            model: fields.text("model").map_err(bad)?,
            variant: fields.text("variant").map_err(bad)?,
            source: fields.text("source").map_err(bad)?,
            target: fields.text("target").map_err(bad)?,
            inputs,
            beam_size: usize_of(fields.uint("beam_size").map_err(bad)?),
            max_length: usize_of(fields.uint("max_length").map_err(bad)?),
            alternatives: usize_of(fields.uint("alternatives").map_err(bad)?).unwrap_or(0),
            format,
            truncate: fields.boolean("truncate").map_err(bad)?.unwrap_or(false),
            timeout,
            ..TranslateRequest::default()
        },
        batched,
        api_key: fields.text("api_key").map_err(bad)?,
    })
}

/// `{"confidence", "language"}` as LibreTranslate writes a detection.
pub fn detection_json(d: &Detection) -> Value {
    json!({ "confidence": d.confidence, "language": d.language })
}

/// The response body: `translatedText` shaped like `q`; `alternatives` when asked for;
/// `detectedLanguage` for `source: "auto"` (a list in batch mode, as LibreTranslate repeats the
/// batch's one detection per item); `model` and `variant` (quantserve's).
fn response_body(
    call: &TranslateCall,
    outputs: Vec<String>,
    alternatives: Vec<Vec<String>>,
    detected: Option<&Detection>,
    served: Option<(&str, &str)>,
) -> Value {
    let n = outputs.len();
    let one = |v: Vec<Value>| -> Value {
        if call.batched {
            Value::Array(v)
        } else {
            v.into_iter().next().unwrap_or(Value::Null)
        }
    };
    let mut b = json!({
        "translatedText": one(outputs.into_iter().map(Value::String).collect()),
    });
    if call.request.alternatives > 0 {
        let alts = (0..n)
            .map(|i| json!(alternatives.get(i).cloned().unwrap_or_default()))
            .collect();
        b["alternatives"] = one(alts);
    }
    if let Some(d) = detected {
        b["detectedLanguage"] = one(vec![detection_json(d); n]);
    }
    if let Some((model, variant)) = served {
        b["model"] = json!(model);
        b["variant"] = json!(variant);
    }
    b
}

pub async fn translate(
    State(rt): State<Arc<Runtime>>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut target = None;
    let result = async {
        let body = body.map_err(ApiError::from_body_rejection)?;
        let fields = Fields::read(&headers, uri.query(), body)
            .await
            .map_err(bad)?;
        let compat = rt.config.libretranslate.enabled;
        let mut call = translate_call(&fields, header_timeout(&headers)?, compat)?;
        if !request_authorized(&rt, &headers, call.api_key.as_deref()) {
            return Err(ApiError::unauthorized());
        }
        call.request.request_id = Some(id);
        call.request.headers = route_headers(&headers);
        let mut detected = None;
        if compat && call.request.model.is_none() {
            if call.request.source.as_deref() == Some("auto") {
                let d = detect_for(&rt, &call.request.inputs, call.request.format);
                call.request.source = Some(d.language.clone());
                detected = Some(d);
            }
            if let (Some(s), Some(t)) = (&call.request.source, &call.request.target) {
                let (s, t) = (base_language(s), base_language(t));
                // Text without letters, or a language into itself, comes back as it was (as
                // LibreTranslate's identity translation).
                let nothing = detected.as_ref().is_some_and(|d| d.confidence == 0.0);
                // Even then the target must be one this server translates into.
                if nothing && !rt.registry.pairs().iter().any(|(_, p)| p.1 == t) {
                    return Err(pair_error(&rt, &s, &t));
                }
                if nothing || (s == t && rt.registry.pairs().iter().any(|(_, p)| p.0 == s)) {
                    rt.check_translate_request(&call.request)?;
                    let n = call.request.inputs.len();
                    let inputs = std::mem::take(&mut call.request.inputs);
                    let b =
                        response_body(&call, inputs, vec![Vec::new(); n], detected.as_ref(), None);
                    return Ok(json_response(StatusCode::OK, &b));
                }
                if rt.registry.model_for_pair(&s, &t).is_none() {
                    return Err(pair_error(&rt, &s, &t));
                }
            }
        }
        let served = rt.translate(call.request.clone()).await;
        target = served.target;
        let resp = served.result?;
        let b = response_body(
            &call,
            resp.outputs,
            resp.alternatives,
            detected.as_ref(),
            Some((&resp.model, &resp.variant)),
        );
        Ok::<_, ApiError>(json_response(StatusCode::OK, &b))
    }
    .await;
    finish(&rt, "translate", target, started, result)
}
