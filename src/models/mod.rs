//! Model families: the BERT classifier and the Marian translators (Bergamot and Opus-MT
//! flavours), their tokenizers, and the helpers their loaders share. Every family implements
//! [`Model`], the one interface the runtime batches and runs.
//!
//! A new model family: a module here with its loader (tensor names, `tensor_role` for the
//! schemes) and an `impl Model`; `repo` learns to recognise its folder.

pub mod bert;
pub mod charsmap;
pub mod embedder;
pub mod marian;
pub mod spm;
pub mod tensors;
pub mod tokenizer;

use serde::{Deserialize, Serialize};

use tokenizer::{InputTooLong, Overflow};

/// What a model does; decides which endpoint serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Classify,
    Translate,
    /// Sentence embeddings (a pooled encoder, e.g. all-MiniLM-L6-v2).
    Embed,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Translate => "translate",
            Task::Embed => "embed",
        }
    }
}

/// Run settings that must be equal within a batch (decoding settings; classification has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunParams {
    pub beam_size: usize,
    /// Cap on output tokens (on top of the model's length factor).
    pub max_length: Option<usize>,
    /// Translation: how many next-best hypotheses of the beam to return beside the best.
    pub alternatives: usize,
    /// Classification: scores are the raw logits instead of probabilities (TEI `raw_scores`).
    pub raw_scores: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// A translated sentence and how many tokens were generated for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Translation {
    pub text: String,
    pub tokens: usize,
    /// The next-best hypotheses of the beam, best first (only when `RunParams::alternatives`
    /// asked for them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
}

/// The result for one input sequence, in its task's type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Every label with its probability (its logit with `RunParams::raw_scores`), highest first.
    Classes(Vec<LabelScore>),
    Translation(Translation),
    /// The pooled sentence vector, not normalised (the request decides; cosine does not care).
    Embedding(Vec<f32>),
}

impl Output {
    /// Tokens the model generated for this output (0 for classification).
    pub fn generated_tokens(&self) -> usize {
        match self {
            Output::Translation(t) => t.tokens,
            Output::Classes(_) | Output::Embedding(_) => 0,
        }
    }
}

/// How a model call fails, typed so that the runtime maps each kind to its status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// More tokens than the model accepts, and truncation was not asked for.
    #[error("{0}")]
    InputTooLong(InputTooLong),
    /// An input the model cannot take (e.g. text its tokenizer refuses).
    #[error("{0:#}")]
    InvalidInput(anyhow::Error),
    /// The model failed on valid input.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl ModelError {
    /// A tokenizer's error: too long, or invalid input.
    pub fn from_tokenizer(e: anyhow::Error) -> Self {
        match e.downcast::<InputTooLong>() {
            Ok(too_long) => Self::InputTooLong(too_long),
            Err(e) => Self::InvalidInput(e),
        }
    }
}

/// One token of a tokenized text, as TEI's `/tokenize` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: u32,
    /// The token string for special tokens, else the input's text at `span`.
    pub text: String,
    pub special: bool,
    /// Byte offsets in the input (`None` for special tokens).
    pub span: Option<(usize, usize)>,
}

/// A loaded model, as the runtime sees it.
pub trait Model: Send + Sync {
    fn task(&self) -> Task;
    /// Token ids of one input, fitted to the model's limit as `overflow` says.
    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>, ModelError>;
    /// Token ids of a sentence pair (a cross-encoder's input); most models take single texts.
    fn tokenize_pair(
        &self,
        _first: &str,
        _second: &str,
        _overflow: Overflow,
    ) -> Result<Vec<u32>, ModelError> {
        Err(ModelError::InvalidInput(anyhow::anyhow!(
            "this model takes single texts, not pairs"
        )))
    }
    /// Token ids → text (TEI's `/decode`), special tokens skipped when asked.
    fn decode(&self, _ids: &[u32], _skip_special: bool) -> Result<String, ModelError> {
        Err(ModelError::InvalidInput(anyhow::anyhow!(
            "this model cannot decode token ids"
        )))
    }
    /// The tokens of `text` with their byte spans in it (TEI's `/tokenize`): (id, token,
    /// special, span). `None` for models without such a tokenizer.
    fn tokens(
        &self,
        _text: &str,
        _add_special: bool,
    ) -> Option<Result<Vec<TokenInfo>, ModelError>> {
        None
    }
    /// Longest accepted input in tokens, special tokens included.
    fn max_input_tokens(&self) -> usize {
        usize::MAX
    }
    /// A classifier's labels in id order (empty for other tasks).
    fn labels(&self) -> Vec<String> {
        Vec::new()
    }
    /// An embedder's vector width.
    fn embedding_dim(&self) -> Option<usize> {
        None
    }
    /// Token ids `decode` takes are below this (models that decode ids).
    fn vocab_size(&self) -> Option<usize> {
        None
    }
    fn default_params(&self) -> RunParams;
    /// Runs one batch; one output per sequence, in order.
    fn run(&self, batch: &[Vec<u32>], params: RunParams) -> Result<Vec<Output>, ModelError>;
    /// Bytes of weights held.
    fn weight_bytes(&self) -> usize;
    /// A short input for the warm-up inference.
    fn warmup_text(&self) -> &'static str {
        "Hello."
    }
}

impl std::fmt::Debug for dyn Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({})", self.task().as_str())
    }
}
