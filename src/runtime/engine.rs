//! The models behind one interface, so the worker pool batches and runs them without knowing
//! which is which (and tests can stand in a fake).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::config::Task;
use crate::model::bert::BertClassifier;
use crate::model::marian::{MarianTranslator, SearchOptions};
use crate::model::tokenizer::Overflow;
use crate::model::variant::{load_classifier, load_translator};

/// Decoding settings that must be equal within a batch. Classification ignores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecodeParams {
    pub beam_size: usize,
    /// Cap on output tokens (on top of the model's length factor).
    pub max_length: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// The result for one queued item.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Every label with its probability, most probable first.
    Classes(Vec<LabelScore>),
    /// A translated sentence and how many tokens were generated for it.
    Translation { text: String, tokens: usize },
}

pub trait Engine: Send + Sync {
    fn task(&self) -> Task;
    /// Token ids of one input, fitted to the model's limit as `overflow` says. A too-long input
    /// fails with a `model::tokenizer::InputTooLong` error.
    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>>;
    fn default_params(&self) -> DecodeParams;
    /// Runs one batch; one output per sequence, in order.
    fn run(&self, batch: &[Vec<u32>], params: DecodeParams) -> Result<Vec<Output>>;
    fn weight_bytes(&self) -> usize;
    /// A short input for the warm-up inference.
    fn warmup_text(&self) -> &'static str {
        "Hello."
    }
}

impl std::fmt::Debug for dyn Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.task().as_str())
    }
}

pub struct ClassifierEngine(pub BertClassifier);

impl Engine for ClassifierEngine {
    fn task(&self) -> Task {
        Task::Classify
    }

    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        self.0.tokenize(text, overflow)
    }

    fn default_params(&self) -> DecodeParams {
        DecodeParams::default()
    }

    fn run(&self, batch: &[Vec<u32>], _params: DecodeParams) -> Result<Vec<Output>> {
        let labels = &self.0.labels;
        Ok(self
            .0
            .classify_ids(batch)?
            .into_iter()
            .map(|r| {
                let mut scored: Vec<LabelScore> = r
                    .scores
                    .iter()
                    .enumerate()
                    .map(|(i, &score)| LabelScore {
                        label: labels[i].clone(),
                        score,
                    })
                    .collect();
                // Stable sort: equal scores keep label order.
                scored.sort_by(|a, b| b.score.total_cmp(&a.score));
                Output::Classes(scored)
            })
            .collect())
    }

    fn weight_bytes(&self) -> usize {
        self.0.weight_bytes()
    }
}

pub struct TranslatorEngine(pub MarianTranslator);

impl Engine for TranslatorEngine {
    fn task(&self) -> Task {
        Task::Translate
    }

    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        self.0.tokenize(text, overflow)
    }

    fn default_params(&self) -> DecodeParams {
        DecodeParams {
            beam_size: self.0.defaults.beam_size,
            max_length: self.0.defaults.max_length,
        }
    }

    fn run(&self, batch: &[Vec<u32>], params: DecodeParams) -> Result<Vec<Output>> {
        let opts = SearchOptions {
            beam_size: params.beam_size.max(1),
            max_length: params.max_length,
            ..self.0.defaults.clone()
        };
        self.0
            .translate_ids(batch, &opts)?
            .into_iter()
            .map(|ids| {
                Ok(Output::Translation {
                    text: self.0.tokenizer.decode(&ids)?,
                    tokens: ids.len(),
                })
            })
            .collect()
    }

    fn weight_bytes(&self) -> usize {
        self.0.weight_bytes()
    }
}

/// What a model folder holds: a HF classifier has `config.json`; a Marian model has none, or
/// is an Opus-MT folder (`config.json` with `source.spm`).
pub fn detect_task(dir: &Path) -> Task {
    if dir.join("config.json").is_file() && !crate::model::marian::is_hf_dir(dir) {
        Task::Classify
    } else {
        Task::Translate
    }
}

/// Loads `model` in `variant` from the repository at `root` (see `model::variant`).
pub fn load_engine(root: &Path, model: &str, variant: &str, task: Task) -> Result<Arc<dyn Engine>> {
    Ok(match task {
        Task::Classify => Arc::new(ClassifierEngine(load_classifier(root, model, variant)?)),
        Task::Translate => Arc::new(TranslatorEngine(load_translator(root, model, variant)?)),
    })
}
