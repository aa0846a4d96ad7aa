//! Model families: the BERT classifier and the Marian translators (Bergamot and Opus-MT
//! flavours), their tokenizers, and the helpers their loaders share. Every family implements
//! [`Model`], the one interface the runtime batches and runs.
//!
//! A new model family: a module here with its loader (tensor names, `tensor_role` for the
//! schemes) and an `impl Model`; `repo` learns to recognise its folder.

pub mod bert;
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
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Translate => "translate",
        }
    }
}

/// Run settings that must be equal within a batch (decoding settings; classification has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunParams {
    pub beam_size: usize,
    /// Cap on output tokens (on top of the model's length factor).
    pub max_length: Option<usize>,
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
}

/// The result for one input sequence, in its task's type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Every label with its probability, most probable first.
    Classes(Vec<LabelScore>),
    Translation(Translation),
}

impl Output {
    /// Tokens the model generated for this output (0 for classification).
    pub fn generated_tokens(&self) -> usize {
        match self {
            Output::Translation(t) => t.tokens,
            Output::Classes(_) => 0,
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

/// A loaded model, as the runtime sees it.
pub trait Model: Send + Sync {
    fn task(&self) -> Task;
    /// Token ids of one input, fitted to the model's limit as `overflow` says.
    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>, ModelError>;
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
