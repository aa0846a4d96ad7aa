//! The JSON request and response bodies of the HTTP API, converted to and from the runtime's
//! transport-neutral types (translation's are LibreTranslate's: `libretranslate::translate`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::libretranslate::fields::Fields;
use super::libretranslate::translate::translate_call;
use crate::runtime::request::{
    ClassifyRequest, ClassifyResponse, TranslateRequest, TranslateResponse,
};

/// `POST /classify`'s body (its schema is in the OpenAPI document).
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ClassifyBody {
    #[schema(value_type = crate::api::openapi::schemas::NonBlankTexts, required = true)]
    inputs: Option<Value>,
    model: Option<String>,
    variant: Option<String>,
    #[schema(default = false)]
    truncate: Option<bool>,
    #[schema(minimum = 1)]
    top_k: Option<u64>,
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
}

pub struct Classify {
    pub request: ClassifyRequest,
    /// Include the `k` most probable labels of each input.
    pub top_k: Option<usize>,
}

pub struct Translate {
    pub request: TranslateRequest,
    /// `q` was an array: answer with an array.
    pub batched: bool,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    super::json_body::parse(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A string or an array of strings; whether it was an array.
fn texts(value: Option<Value>, field: &str) -> Result<(Vec<String>, bool), ApiError> {
    let wrong =
        || ApiError::bad_request(format!("`{field}` must be a string or an array of strings"));
    match value {
        None | Some(Value::Null) => Err(ApiError::bad_request(format!("`{field}` is required"))),
        Some(Value::String(s)) => Ok((vec![s], false)),
        Some(Value::Array(items)) => {
            let texts = items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(wrong()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((texts, true))
        }
        Some(_) => Err(wrong()),
    }
}

fn timeout(body: Option<u64>, header: Option<Duration>) -> Option<Duration> {
    body.map(Duration::from_millis).or(header)
}

fn usize_field(v: Option<u64>) -> Option<usize> {
    v.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

pub fn parse_classify(body: &[u8], header_timeout: Option<Duration>) -> Result<Classify, ApiError> {
    let b: ClassifyBody = parse(body)?;
    let (inputs, _) = texts(b.inputs, "inputs")?;
    let top_k = usize_field(b.top_k);
    if top_k == Some(0) {
        return Err(ApiError::bad_request("`top_k` must be at least 1"));
    }
    Ok(Classify {
        request: ClassifyRequest {
            model: b.model,
            variant: b.variant,
            inputs,
            truncate: b.truncate.unwrap_or(false),
            timeout: timeout(b.timeout_ms, header_timeout),
            ..ClassifyRequest::default()
        },
        top_k,
    })
}

/// A JSON translate body with quantserve's own rules (no `html` format: 422). The HTTP route
/// reads JSON, forms and multipart bodies through `libretranslate::translate`.
pub fn parse_translate(
    body: &[u8],
    header_timeout: Option<Duration>,
) -> Result<Translate, ApiError> {
    let fields = Fields::from_json(body).map_err(|e| ApiError::bad_request(e.0))?;
    let call = translate_call(&fields, header_timeout, false)?;
    Ok(Translate {
        request: call.request,
        batched: call.batched,
    })
}

pub fn classify_body(resp: &ClassifyResponse, top_k: Option<usize>) -> Value {
    let results: Vec<Value> = resp
        .results
        .iter()
        .map(|scores| {
            let mut r = json!({ "label": scores[0].label, "score": scores[0].score });
            if let Some(k) = top_k {
                let top: Vec<Value> = scores
                    .iter()
                    .take(k)
                    .map(|s| json!({ "label": s.label, "score": s.score }))
                    .collect();
                r["scores"] = Value::Array(top);
            }
            r
        })
        .collect();
    json!({ "model": resp.model, "variant": resp.variant, "results": results })
}

pub fn translate_body(resp: TranslateResponse, batched: bool) -> Value {
    let text = if batched {
        json!(resp.outputs)
    } else {
        Value::String(resp.outputs.into_iter().next().unwrap_or_default())
    };
    json!({ "translatedText": text, "model": resp.model, "variant": resp.variant })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_may_be_a_string_or_an_array() {
        let c = parse_classify(br#"{"inputs": "hi", "top_k": 2}"#, None).unwrap();
        assert_eq!(c.request.inputs, vec!["hi"]);
        assert_eq!(c.top_k, Some(2));
        let t = parse_translate(
            br#"{"q": ["a", "b"], "source": "en", "target": "pt", "api_key": "x"}"#,
            None,
        )
        .unwrap();
        assert!(t.batched);
        assert_eq!(t.request.inputs.len(), 2);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"inputs\": 3}",
            b"{\"inputs\": [\"a\", 1]}",
            b"{\"inputs\": \"a\", \"truncate\": \"yes\"}",
            b"{\"inputs\": \"\xff\xfe\"}",
            b"{\"inputs\": \"a\", \"top_k\": -1}",
            b"{}",
            nested.as_bytes(),
        ] {
            let e = parse_classify(body, None).err().expect("refused");
            assert_eq!(
                e.status.as_u16(),
                400,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn non_text_formats_are_unsupported() {
        let e = parse_translate(
            br#"{"q": "a", "source": "en", "target": "pt", "format": "html"}"#,
            None,
        )
        .err()
        .unwrap();
        assert_eq!(e.status.as_u16(), 422);
    }
}
