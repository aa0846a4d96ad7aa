//! Sentence embeddings from a BERT encoder, as sentence-transformers computes them for models
//! like all-MiniLM-L6-v2: the encoder's last hidden states averaged over every token of the
//! input ([CLS] and [SEP] included: its attention mask covers them), truncated to the model's
//! `max_seq_length`. The vector leaves the model unnormalised; the request decides whether to
//! L2-normalise it (TEI's `normalize`), and comparisons use cosine similarity, which does not
//! care.
//!
//! The encoder is `bert::BertEncoder`, the classifier's: the same loader, tensor names,
//! quantization (`bert::tensor_role`) and variant files.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use super::bert::{BertConfig, BertEncoder};
use super::tensors::read_variant;
use super::tokenizer::{Overflow, TextTokenizer, fit_to_limit};
use super::{Model, ModelError, Output, RunParams, Task, TokenInfo};
use crate::format::{TensorStore, VARIANT_FILE};
use crate::schemes::{self, SchemeRef};

/// sentence-transformers' config of the pooled model (its `max_seq_length`).
const SENTENCE_CONFIG: &str = "sentence_bert_config.json";
/// sentence-transformers' module list; its presence marks an embedding model.
const MODULES: &str = "modules.json";

/// Whether `dir` holds a sentence-transformers model (rather than a classifier).
pub fn is_sentence_dir(dir: &Path) -> bool {
    dir.join(SENTENCE_CONFIG).is_file() || dir.join(MODULES).is_file()
}

pub struct SentenceEmbedder {
    pub config: BertConfig,
    pub tokenizer: TextTokenizer,
    /// Inputs are cut (or refused) beyond this many tokens, special tokens included.
    pub max_tokens: usize,
    encoder: BertEncoder,
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Only mean pooling is implemented; a model asking for another is refused, not served wrong.
fn check_pooling(dir: &Path) -> Result<()> {
    let path = dir.join("1_Pooling").join("config.json");
    if !path.is_file() {
        return Ok(());
    }
    let cfg = read_json(&path)?;
    let on = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
    ensure!(
        on("pooling_mode_mean_tokens")
            && !on("pooling_mode_cls_token")
            && !on("pooling_mode_max_tokens")
            && !on("pooling_mode_mean_sqrt_len_tokens"),
        "{}: only mean pooling is supported",
        path.display()
    );
    Ok(())
}

impl SentenceEmbedder {
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_as(dir, None)
    }

    /// Loads `dir` (a source folder, or a variant folder written by `quantserve quantize`),
    /// quantizing a source's matrices with `scheme` when given.
    pub fn load_as(dir: &Path, scheme: Option<&SchemeRef>) -> Result<Self> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        check_pooling(dir)?;
        let variant = dir.join(VARIANT_FILE);
        let mut store = if variant.exists() {
            read_variant(&variant, "bert")?.0
        } else {
            TensorStore::from_safetensors(&dir.join("model.safetensors"))?
        };
        if let Some(scheme) = scheme {
            schemes::quantize_store(&mut store, |_| scheme.clone(), super::bert::tensor_role)?;
        }
        // `TextTokenizer` drops the padding/truncation some tokenizer.json files carry (this
        // one pads everything to 128): limits are `max_tokens`'.
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let max_seq = match dir.join(SENTENCE_CONFIG) {
            p if p.is_file() => read_json(&p)?
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map(|v| v as usize),
            _ => None,
        };
        let max_tokens = max_seq
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        ensure!(max_tokens >= 2, "max_seq_length must be at least 2");
        let sep = tokenizer.token_id("[SEP]");
        let encoder = BertEncoder::from_store(config.clone(), &mut store, sep)
            .with_context(|| format!("loading the encoder from {}", dir.display()))?;
        Ok(Self {
            config,
            tokenizer,
            max_tokens,
            encoder,
        })
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Token ids of `text` with [CLS]/[SEP], fitted to `max_tokens`.
    pub fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(text, true)?;
        Ok(fit_to_limit(ids, self.max_tokens, overflow)?)
    }

    /// Mean-pooled vectors of already-tokenized sequences (packed, no padding).
    pub fn embed_ids(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let h = self.dim();
        let (x, offsets) = self.encoder.hidden_states(batch)?;
        Ok(offsets
            .windows(2)
            .map(|w| {
                let mut sum = vec![0.0f32; h];
                for row in x[w[0] * h..w[1] * h].chunks_exact(h) {
                    sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
                let n = (w[1] - w[0]).max(1) as f32;
                sum.iter_mut().for_each(|s| *s /= n);
                sum
            })
            .collect())
    }

    /// Tokenizes and embeds texts; vectors L2-normalised, as sentence-transformers returns them.
    pub fn embed(&self, texts: &[&str], overflow: Overflow) -> Result<Vec<Vec<f32>>> {
        let ids: Result<Vec<_>> = texts.iter().map(|t| self.tokenize(t, overflow)).collect();
        let mut vectors = self.embed_ids(&ids?)?;
        vectors.iter_mut().for_each(|v| l2_normalize(v));
        Ok(vectors)
    }

    pub fn weight_bytes(&self) -> usize {
        self.encoder.weight_bytes()
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
}

/// Cosine similarity of two vectors (0 when either is zero or their lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

impl Model for SentenceEmbedder {
    fn task(&self) -> Task {
        Task::Embed
    }

    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>, ModelError> {
        SentenceEmbedder::tokenize(self, text, overflow).map_err(ModelError::from_tokenizer)
    }

    fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.tokenizer
            .decode_with(ids, skip_special)
            .map_err(ModelError::InvalidInput)
    }

    fn tokens(&self, text: &str, add_special: bool) -> Option<Result<Vec<TokenInfo>, ModelError>> {
        Some(
            self.tokenizer
                .tokens(text, add_special)
                .map_err(ModelError::InvalidInput),
        )
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.tokenizer.vocab_size())
    }
    fn max_input_tokens(&self) -> usize {
        self.max_tokens
    }

    fn embedding_dim(&self) -> Option<usize> {
        Some(self.dim())
    }

    fn default_params(&self) -> RunParams {
        RunParams::default()
    }

    fn run(&self, batch: &[Vec<u32>], _params: RunParams) -> Result<Vec<Output>, ModelError> {
        let vectors = self.embed_ids(batch).map_err(ModelError::Failed)?;
        Ok(vectors.into_iter().map(Output::Embedding).collect())
    }

    fn weight_bytes(&self) -> usize {
        SentenceEmbedder::weight_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_normalisation() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        let mut zero = vec![0.0, 0.0];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
