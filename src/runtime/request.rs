//! The runtime's request and response types, shared by the HTTP and gRPC front ends.

use std::time::Duration;

use super::error::RuntimeError;
use super::pool::QueueKey;
use super::registry::ModelEntry;
use crate::models::LabelScore;

/// Request headers (HTTP) or metadata (gRPC) the router may read: the model's sticky key.
#[derive(Clone, Debug, Default)]
pub struct RouteHeaders(Vec<(String, String)>);

impl RouteHeaders {
    /// From (name, value) pairs; names compare case-insensitively.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Debug, Default)]
pub struct ClassifyRequest {
    /// The configured default classifier when `None`.
    pub model: Option<String>,
    /// Chosen by the model's routing when `None`.
    pub variant: Option<String>,
    /// Remembered for `/v1/feedback` when set.
    pub request_id: Option<String>,
    pub headers: RouteHeaders,
    pub inputs: Vec<String>,
    /// TEI sentence pairs: the second text of input i, when it is a pair (empty: no pairs).
    pub second_texts: Vec<Option<String>>,
    pub truncate: bool,
    /// Scores are raw logits, not probabilities (TEI `raw_scores`).
    pub raw_scores: bool,
    /// The configured default when `None`.
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct ClassifyResponse {
    pub model: String,
    pub variant: String,
    /// Per input, every label with its probability, most probable first.
    pub results: Vec<Vec<LabelScore>>,
}

#[derive(Clone, Debug, Default)]
pub struct TranslateRequest {
    /// `"{source}-{target}"` when `None`.
    pub model: Option<String>,
    /// Chosen by the model's routing when `None`.
    pub variant: Option<String>,
    /// Remembered for `/v1/feedback` when set.
    pub request_id: Option<String>,
    pub headers: RouteHeaders,
    pub source: Option<String>,
    pub target: Option<String>,
    pub inputs: Vec<String>,
    pub beam_size: Option<usize>,
    pub max_length: Option<usize>,
    /// Next-best translations to return per input beside the best (LibreTranslate's
    /// `alternatives`).
    pub alternatives: usize,
    pub format: TextFormat,
    pub truncate: bool,
    pub timeout: Option<Duration>,
}

/// What a translation input is: plain text, or HTML whose text nodes are translated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextFormat {
    #[default]
    Text,
    Html,
}

#[derive(Clone, Debug)]
pub struct TranslateResponse {
    pub model: String,
    pub variant: String,
    pub outputs: Vec<String>,
    /// Per input, its alternatives (empty unless asked for; none for HTML).
    pub alternatives: Vec<Vec<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct EmbedRequest {
    /// The configured default embedder when `None`.
    pub model: Option<String>,
    pub variant: Option<String>,
    pub request_id: Option<String>,
    pub headers: RouteHeaders,
    pub inputs: Vec<String>,
    pub truncate: bool,
    /// L2-normalise the vectors (after cutting them to `dimensions`).
    pub normalize: bool,
    /// Keep only the first `dimensions` components (Matryoshka-style, as TEI and OpenAI do).
    pub dimensions: Option<usize>,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct EmbedResponse {
    pub model: String,
    pub variant: String,
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the inputs came to (special tokens included): OpenAI's `usage`.
    pub tokens: usize,
}

/// A request's answer and the variant it was routed to (known once routed, even if it then
/// failed), for the front ends' metrics and response headers.
pub struct Served<T> {
    pub target: Option<QueueKey>,
    pub result: Result<T, RuntimeError>,
}

impl<T> Served<T> {
    /// A request that failed before it was routed.
    pub fn unrouted(e: RuntimeError) -> Self {
        Self {
            target: None,
            result: Err(e),
        }
    }

    /// A request routed to `entry`, and how it went.
    pub fn on(entry: &ModelEntry, result: Result<T, RuntimeError>) -> Self {
        Self {
            target: Some(entry.key.clone()),
            result,
        }
    }
}
