//! Schemas of the wire values the handlers build with `json!` (responses, error bodies) and of
//! the request fields that are not a serde struct (LibreTranslate's fields, read from JSON, forms
//! and multipart alike). The request structs the handlers parse derive their schemas where they
//! are defined (`wire.rs`, `tei.rs`, `openai.rs`, `admin.rs`, `runtime::routing`).
//!
//! A few value shapes serde's types cannot say (a string or a list; "not blank") are written as
//! JSON Schema literals here, checked by a test: the parsers' rules, so the document refuses what
//! the server refuses.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{PartialSchema, ToResponse, ToSchema};

use crate::runtime::routing::Routing;

/// A JSON Schema literal as a utoipa schema (the literals are constants, checked by a test).
pub fn literal(v: Value) -> RefOr<Schema> {
    serde_json::from_value(v).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

/// A string with something besides white space (`str::trim` is not empty): every character
/// class Rust's `char::is_whitespace` counts, spelled out so Python's and ECMA's `\s` (which
/// differ from it) do not decide.
pub const NOT_BLANK: &str = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";

macro_rules! literal_schema {
    ($(#[$doc:meta])* $name:ident, $value:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                literal($value)
            }
        }
        impl ToSchema for $name {}
    };
}

literal_schema!(
    /// Texts to classify: a string or a non-empty list, each text not blank.
    NonBlankTexts,
    json!({"oneOf": [
        {"type": "string", "pattern": NOT_BLANK},
        {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": NOT_BLANK}}
    ]})
);

literal_schema!(
    /// One text, not blank.
    NonBlankText,
    json!({"type": "string", "pattern": NOT_BLANK})
);

literal_schema!(
    /// Texts to translate or detect: a string that is not blank, or a non-empty list (blank
    /// texts in it come back as they are), as LibreTranslate takes them.
    SomeTexts,
    json!({"oneOf": [
        {"type": "string", "pattern": NOT_BLANK},
        {"type": "array", "minItems": 1, "items": {"type": "string"}}
    ]})
);

literal_schema!(
    /// Texts to embed or tokenize: a non-empty string or a non-empty list of them.
    NonEmptyTexts,
    json!({"oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
    ]})
);

literal_schema!(
    /// Texts to tokenize: a string or a non-empty list of them (an empty text gives only the
    /// special tokens).
    TokenizeTexts,
    json!({"oneOf": [
        {"type": "string"},
        {"type": "array", "minItems": 1, "items": {"type": "string"}}
    ]})
);

literal_schema!(
    /// TEI's `PredictInput`: a text, a `[text, text_pair]` pair, or a non-empty list of `[text]`
    /// / `[text, text_pair]`.
    PredictInputs,
    json!({"oneOf": [
        {"type": "string", "pattern": NOT_BLANK},
        {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "pattern": NOT_BLANK}},
        {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "maxItems": 2,
            "items": {"type": "string", "pattern": NOT_BLANK}}}
    ]})
);

literal_schema!(
    /// Token ids: one list (non-empty) or a non-empty list of lists.
    TokenIds,
    json!({"oneOf": [
        {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": u32::MAX}},
        {"type": "array", "minItems": 1, "items": {"type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": u32::MAX}}}
    ]})
);

literal_schema!(
    /// A string, or a list of strings when the request's `q` was a list.
    TextOrList,
    json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
);

/// `POST /translate`'s fields (JSON, form, multipart or the query string: `libretranslate::fields`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranslateBody {
    #[schema(value_type = SomeTexts)]
    q: Value,
    /// A code (pt, pt-BR, pt_BR, EN: regional codes fall back to the base language), or `auto`
    /// with `[libretranslate] enabled`. Required with `target` unless `model` is given; beside
    /// `model`, `source` and `target` must name that model's languages (or `auto`), else 400.
    source: Option<String>,
    target: Option<String>,
    /// `html` only with `[libretranslate] enabled`.
    #[schema(value_type = Option<String>, default = "text")]
    format: Option<String>,
    /// Next-best translations from the beam (fewer than `max_beam_size`).
    #[schema(minimum = 0)]
    alternatives: Option<u64>,
    /// LibreTranslate's key field (or `Authorization: Bearer`).
    api_key: Option<String>,
    model: Option<String>,
    variant: Option<String>,
    #[schema(minimum = 1)]
    beam_size: Option<u64>,
    #[schema(minimum = 1)]
    max_length: Option<u64>,
    truncate: Option<bool>,
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
}

/// `POST /detect`'s fields (JSON or form).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DetectBody {
    #[schema(value_type = SomeTexts)]
    q: Value,
    api_key: Option<String>,
}

/// `POST /translate_file`'s multipart fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranslateFileBody {
    /// A `.txt` or `.html` file, UTF-8.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// A language code or `auto`.
    source: String,
    target: String,
    api_key: Option<String>,
}

/// quantserve's error body (every route but the compatible APIs' own).
#[derive(ToSchema, ToResponse)]
#[response(
    description = "quantserve's error: `code` is the stable kind (bad_request, \
    unauthorized, forbidden, not_found, unknown_model, unknown_variant, conflict, \
    payload_too_large, input_too_long, unsupported, load_failed, self_check_failed, queue_full \
    (with Retry-After), not_ready, shutting_down, deadline_exceeded, internal, \
    method_not_allowed)"
)]
#[allow(dead_code)]
pub struct Error {
    error: String,
    code: String,
    /// Machine-readable facts (the measured self-check of a refused variant).
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
}

/// TEI's error body.
#[derive(ToSchema, ToResponse)]
#[response(
    description = "TEI's error: 400 Empty, 403/404/413/422 Validation, 424 Backend, \
    429 Overloaded, 503 Unhealthy"
)]
#[allow(dead_code)]
pub struct TeiError {
    error: String,
    error_type: TeiErrorType,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub enum TeiErrorType {
    Unhealthy,
    Backend,
    Overloaded,
    Validation,
    Tokenizer,
    Empty,
}

/// LibreTranslate's error body.
#[derive(ToSchema, ToResponse)]
#[response(description = "LibreTranslate's error `{\"error\": message}`")]
#[allow(dead_code)]
pub struct LtError {
    error: String,
}

/// OpenAI's error body.
#[derive(ToSchema, ToResponse)]
#[response(description = "OpenAI's error, with quantserve's status and kind")]
#[allow(dead_code)]
pub struct OpenAiError {
    error: OpenAiErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenAiErrorDetail {
    message: String,
    #[schema(rename = "type")]
    kind: String,
    #[schema(value_type = Option<String>)]
    param: Option<String>,
    code: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LabelScore {
    label: String,
    score: f64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClassifyResult {
    label: String,
    score: f64,
    /// The `top_k` most probable labels, when asked for.
    scores: Option<Vec<LabelScore>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClassifyResponse {
    model: String,
    variant: String,
    /// One per input, in order.
    results: Vec<ClassifyResult>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranslateResponse {
    /// Shaped like `q`.
    #[schema(rename = "translatedText", value_type = TextOrList)]
    translated_text: Value,
    /// Lists of next-best translations (a list of lists for a list `q`).
    #[schema(value_type = Option<Vec<Value>>)]
    alternatives: Option<Value>,
    /// With source `auto`: a detection, or a list of them for a list `q`.
    #[schema(rename = "detectedLanguage", value_type = Option<Value>)]
    detected_language: Option<Value>,
    model: Option<String>,
    variant: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Language {
    code: String,
    name: String,
    targets: Vec<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Detection {
    #[schema(minimum = 0, maximum = 100)]
    confidence: f64,
    language: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranslatedFile {
    #[schema(rename = "translatedFileUrl")]
    translated_file_url: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Status {
    status: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NotReady {
    /// `not_ready` or `shutting_down`.
    status: String,
    /// The routed variants not serving yet.
    models: Vec<BTreeMap<String, String>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Token {
    id: u32,
    text: String,
    special: bool,
    start: Option<u64>,
    stop: Option<u64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Embedding {
    object: String,
    /// Floats, or their little-endian f32 bytes in base64.
    #[schema(value_type = Value)]
    embedding: Value,
    index: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EmbeddingsResponse {
    object: String,
    data: Vec<Embedding>,
    model: String,
    usage: Usage,
}

/// One variant as `/v1/models` lists it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VariantInfo {
    name: String,
    /// loading, ready or failed.
    status: String,
    /// Weight bytes once loaded.
    bytes: Option<u64>,
    scheme: String,
    bits: Option<u32>,
    queue_depth: u64,
    /// Its routing weight.
    weight: u64,
    reloading: Option<bool>,
    /// The self-check against the reference (agreement, samples).
    #[schema(value_type = Option<Object>)]
    self_check: Option<Value>,
    error: Option<String>,
    last_error: Option<String>,
}

/// One model, as `/v1/models` and `/v1/models/{model}` show it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ModelInfo {
    name: String,
    /// classify, translate or embed (null before a variant loaded).
    task: Option<String>,
    default_variant: String,
    reference_variant: String,
    routing: Routing,
    variants: Vec<VariantInfo>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Models {
    models: Vec<ModelInfo>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FeedbackRecorded {
    request_id: String,
    model: String,
    /// The variant that served the request.
    variant: String,
    correct: bool,
    /// The experiment and period the answer was counted in.
    experiment: String,
    period: u32,
    /// Whether the experiment's verdicts count it (randomised assignment, not an override).
    analysed: bool,
    /// Whether this replica served the request (else it came by ticket or model + variant).
    served_here: bool,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Disagreements {
    model: String,
    /// Newest first: the input, both outputs, when.
    disagreements: Vec<Object>,
}

/// `POST /v1/compare`'s answer: each variant's output beside the reference's.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Comparison {
    model: String,
    /// classify, translate or embed.
    task: String,
    /// The variant the others were measured against.
    reference: Option<String>,
    results: Vec<VariantAnswer>,
}

/// One variant's answer in a comparison.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VariantAnswer {
    variant: String,
    scheme: String,
    bits: Option<u32>,
    latency_ms: f64,
    /// The task's output, as its endpoint answers it (null when the variant failed).
    output: Option<Value>,
    /// Agreement with the reference: chrF (translations), label and probability difference
    /// (classifiers), cosine (embeddings); null for the reference itself.
    agreement: Option<Object>,
    /// Why this variant failed, when it did.
    error: Option<String>,
}

/// Any JSON object (reports whose fields are listed in the operation's description).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Object(BTreeMap<String, Value>);

/// TEI's `truncation_direction`: only `Right` is done.
pub fn truncation_direction() -> RefOr<Schema> {
    literal(json!({"type": "string", "enum": ["Right", "right"]}))
}

/// A field only `null` may fill (the model has no prompts).
pub fn only_null() -> RefOr<Schema> {
    literal(json!({"type": "null"}))
}

/// OpenAI's `encoding_format`.
pub fn encoding_format() -> RefOr<Schema> {
    literal(
        json!({"type": ["string", "null"], "enum": ["float", "base64", null], "default": "float"}),
    )
}
