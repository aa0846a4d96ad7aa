//! BERT-family models (HF layout): the encoder (`BertEncoder`, shared with the sentence
//! embedder in `embedder.rs`) and the sequence classifier (`BertForSequenceClassification`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use super::tensors::{ffn_width, read_variant};
use super::tokenizer::{Overflow, TextTokenizer, fit_to_limit};
use super::{LabelScore, Model, ModelError, Output, RunParams, Task, TokenInfo};
use crate::format::{Tensor, TensorStore, VARIANT_FILE};
use crate::kernels::epilogue::Activation;
use crate::kernels::ops::{add_in_place, softmax};
use crate::layers::attention::{Heads, Precision};
use crate::layers::embedding::Embedding;
use crate::layers::encoder::{EncoderLayer, EncoderShape, Norm, encode};
use crate::layers::scratch::Scratch;
use crate::layers::{Linear, LinearParts};
use crate::schemes::{self, Role, SchemeRef};

/// The fields of an HF BERT `config.json` that the forward pass needs.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f32,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_ln_eps() -> f32 {
    1e-12
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: Self =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        ensure!(
            cfg.num_attention_heads > 0 && cfg.hidden_size.is_multiple_of(cfg.num_attention_heads),
            "hidden_size {} is not a multiple of num_attention_heads {}",
            cfg.hidden_size,
            cfg.num_attention_heads
        );
        if let Some(p) = &cfg.position_embedding_type {
            ensure!(
                p == "absolute",
                "position_embedding_type `{p}` is not supported (only absolute)"
            );
        }
        Ok(cfg)
    }

    /// Labels in id order; `LABEL_i` when the config has none.
    pub fn labels(&self, num_labels: usize) -> Result<Vec<String>> {
        (0..num_labels)
            .map(|i| {
                Ok(match self.id2label.get(&i.to_string()) {
                    Some(l) => l.clone(),
                    None if self.id2label.is_empty() => format!("LABEL_{i}"),
                    None => bail!("id2label has no entry for class {i}"),
                })
            })
            .collect()
    }
}

/// One classification result: label index, and the softmax scores of every label.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassScores {
    pub label: usize,
    pub scores: Vec<f32>,
    pub logits: Vec<f32>,
}

/// The BERT encoder shared by the classifier and the sentence embedder: embeddings (word,
/// position, token type) with their layer norm, then the transformer layers.
pub struct BertEncoder {
    pub config: BertConfig,
    word_emb: Embedding,
    pos_emb: Vec<f32>,
    type_emb: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<EncoderLayer>,
    activation: Activation,
    /// `[SEP]`: the tokens after its first occurrence are a pair's second segment (token type
    /// 1), as BERT tokenizers number them.
    sep: Option<u32>,
}

pub struct BertClassifier {
    pub config: BertConfig,
    pub labels: Vec<String>,
    pub tokenizer: TextTokenizer,
    encoder: BertEncoder,
    pooler: Linear,
    classifier: Linear,
}

/// How the classifier uses the tensor `name`: the word embedding table, a weight matrix (every
/// dense layer, pooler and classifier included), or neither (biases, layer norms; the position and
/// token-type tables are tiny and stay fp32).
pub fn tensor_role(name: &str, shape: &[usize]) -> Option<Role> {
    let matrix = shape.len() == 2 && name.ends_with(".weight");
    let small_table =
        name.contains("position_embeddings") || name.contains("token_type_embeddings");
    if !matrix || small_table {
        None
    } else if name.contains("word_embeddings") {
        Some(Role::Embedding)
    } else {
        Some(Role::Matrix)
    }
}

/// Takes `name` with or without the `bert.` prefix that `BertForSequenceClassification` adds.
fn take(store: &mut TensorStore, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let prefixed = format!("bert.{name}");
    if store.contains(&prefixed) {
        store.take(&prefixed, shape)
    } else {
        store.take(name, shape)
    }
}

/// The stored name of `name`: with the `bert.` prefix when the file has it.
pub(crate) fn resolve(store: &TensorStore, name: &str) -> String {
    let prefixed = format!("bert.{name}");
    if store.contains(&prefixed) {
        prefixed
    } else {
        name.to_string()
    }
}

fn take_parts(
    store: &mut TensorStore,
    prefix: &str,
    n_out: usize,
    n_in: usize,
) -> Result<LinearParts> {
    let name = resolve(store, &format!("{prefix}.weight"));
    let weight = store.take_weight(&name, &[n_out, n_in])?;
    let bias = take(store, &format!("{prefix}.bias"), &[n_out])?;
    Ok(LinearParts {
        weight,
        bias: Some(bias),
        n_out,
        n_in,
    })
}

fn take_linear(store: &mut TensorStore, prefix: &str, n_out: usize, n_in: usize) -> Result<Linear> {
    take_parts(store, prefix, n_out, n_in)?.build()
}

fn take_norm(store: &mut TensorStore, prefix: &str, dim: usize) -> Result<Norm> {
    // Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    let gamma_name = format!("{prefix}.weight");
    let has_new = store.contains(&gamma_name) || store.contains(&format!("bert.{gamma_name}"));
    let (g, b) = if has_new {
        ("weight", "bias")
    } else {
        ("gamma", "beta")
    };
    Ok(Norm {
        gamma: take(store, &format!("{prefix}.{g}"), &[dim])?,
        beta: take(store, &format!("{prefix}.{b}"), &[dim])?,
    })
}

impl BertClassifier {
    /// Loads `config.json`, `model.safetensors` (or a variant's `variant.safetensors`) and
    /// `tokenizer.json` from `dir` as they are.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_as(dir, None)
    }

    /// Loads `dir`, quantizing an fp32 source's matrices with `scheme` (a variant derived at load
    /// time: the same tensors `quantserve quantize` would write).
    pub fn load_as(dir: &Path, scheme: Option<&SchemeRef>) -> Result<Self> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        // A variant folder holds `variant.safetensors` (quantized); the reference `model.safetensors`.
        let variant = dir.join(VARIANT_FILE);
        let mut store = if variant.exists() {
            read_variant(&variant, "bert")?.0
        } else {
            TensorStore::from_safetensors(&dir.join("model.safetensors"))?
        };
        if let Some(scheme) = scheme {
            schemes::quantize_store(&mut store, |_| scheme.clone(), tensor_role)?;
        }
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        Self::from_parts(config, &mut store, tokenizer)
            .with_context(|| format!("loading BERT from {}", dir.display()))
    }

    /// A classifier with random weights for `config` (uniform in ±0.05 from a fixed seed, layer
    /// norms at identity) in `scheme`: for speed benchmarks at shapes no committed model has,
    /// e.g. BERT-base.
    pub fn random_init(
        config: BertConfig,
        tokenizer: TextTokenizer,
        seed: u64,
        scheme: &SchemeRef,
    ) -> Result<Self> {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let labels = config.id2label.len().max(2);
        let mut state = seed | 1;
        let mut random = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    // xorshift64*: deterministic and dependency-free; quality is irrelevant here.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                    (r as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
                })
                .collect()
        };
        let mut store = TensorStore::new("random init");
        let mut dense = |store: &mut TensorStore, prefix: String, n_out: usize, n_in: usize| {
            let (data, bias) = (random(n_out * n_in), random(n_out));
            store.insert(
                format!("{prefix}.weight"),
                Tensor {
                    shape: vec![n_out, n_in],
                    data,
                },
            );
            store.insert(
                format!("{prefix}.bias"),
                Tensor {
                    shape: vec![n_out],
                    data: bias,
                },
            );
        };
        let norm = |store: &mut TensorStore, prefix: String| {
            store.insert(
                format!("{prefix}.weight"),
                Tensor {
                    shape: vec![h],
                    data: vec![1.0; h],
                },
            );
            store.insert(
                format!("{prefix}.bias"),
                Tensor {
                    shape: vec![h],
                    data: vec![0.0; h],
                },
            );
        };
        for (name, rows) in [
            ("word_embeddings", config.vocab_size),
            ("position_embeddings", config.max_position_embeddings),
            ("token_type_embeddings", config.type_vocab_size),
        ] {
            dense(&mut store, format!("embeddings.{name}"), rows, h);
        }
        norm(&mut store, "embeddings.LayerNorm".into());
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            for part in ["query", "key", "value"] {
                dense(&mut store, format!("{p}.attention.self.{part}"), h, h);
            }
            dense(&mut store, format!("{p}.attention.output.dense"), h, h);
            norm(&mut store, format!("{p}.attention.output.LayerNorm"));
            dense(&mut store, format!("{p}.intermediate.dense"), f, h);
            dense(&mut store, format!("{p}.output.dense"), h, f);
            norm(&mut store, format!("{p}.output.LayerNorm"));
        }
        dense(&mut store, "pooler.dense".into(), h, h);
        dense(&mut store, "classifier".into(), labels, h);
        schemes::quantize_store(&mut store, |_| scheme.clone(), tensor_role)?;
        Self::from_parts(config, &mut store, tokenizer)
    }

    pub fn from_parts(
        config: BertConfig,
        store: &mut TensorStore,
        tokenizer: TextTokenizer,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let num_labels = store
            .shape("classifier.weight")
            .context("tensor `classifier.weight` is missing: not a sequence classifier")?[0];
        let labels = config.labels(num_labels)?;
        let encoder = BertEncoder::from_store(config.clone(), store, tokenizer.token_id("[SEP]"))?;
        let pooler = take_linear(store, "pooler.dense", h, h)?;
        let classifier = take_linear(store, "classifier", num_labels, h)?;
        Ok(Self {
            config,
            labels,
            tokenizer,
            encoder,
            pooler,
            classifier,
        })
    }

    /// Longest accepted input in tokens, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.encoder.max_tokens()
    }

    /// Token ids for `text` with [CLS]/[SEP], fitted to the model's limit.
    pub fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(text, true)?;
        Ok(fit_to_limit(ids, self.max_tokens(), overflow)?)
    }

    /// Token ids for a sentence pair, `[CLS] a [SEP] b [SEP]`, fitted to the model's limit.
    pub fn tokenize_pair(&self, first: &str, second: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode_pair(first, second)?;
        Ok(fit_to_limit(ids, self.max_tokens(), overflow)?)
    }

    /// Classifies already-tokenized sequences (each within `max_tokens`). Sequences are packed
    /// without padding: every row of every matmul is a real token.
    pub fn classify_ids(&self, batch: &[Vec<u32>]) -> Result<Vec<ClassScores>> {
        let h = self.config.hidden_size;
        let (x, offsets) = self.encoder.hidden_states(batch)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Pooler on each sequence's first ([CLS]) token, then the classification head.
        let cls: Vec<f32> = offsets[..batch.len()]
            .iter()
            .flat_map(|&o| x[o * h..(o + 1) * h].iter().copied())
            .collect();
        let mut pooled = self.pooler.apply(&cls, batch.len());
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        let logits = self.classifier.apply(&pooled, batch.len());
        let n = self.labels.len();
        Ok(logits
            .chunks_exact(n)
            .map(|l| {
                let mut scores = l.to_vec();
                softmax(&mut scores);
                ClassScores {
                    label: crate::kernels::ops::argmax(l),
                    scores,
                    logits: l.to_vec(),
                }
            })
            .collect())
    }

    /// Tokenizes and classifies texts.
    pub fn classify(&self, texts: &[&str], overflow: Overflow) -> Result<Vec<ClassScores>> {
        let ids: Result<Vec<_>> = texts.iter().map(|t| self.tokenize(t, overflow)).collect();
        self.classify_ids(&ids?)
    }

    /// The FFN input layers (`intermediate.dense`), one per encoder layer in order, e.g. to
    /// observe their activations during pruning calibration.
    pub fn ffn_inputs_mut(&mut self) -> Vec<&mut Linear> {
        self.encoder.ffn_inputs_mut()
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        self.encoder.weight_bytes() + self.pooler.bytes() + self.classifier.bytes()
    }
}

impl BertEncoder {
    /// Takes the embeddings and encoder layers out of `store` (with or without the `bert.`
    /// prefix); `sep` is the tokenizer's `[SEP]` id.
    pub fn from_store(
        config: BertConfig,
        store: &mut TensorStore,
        sep: Option<u32>,
    ) -> Result<Self> {
        let h = config.hidden_size;
        ensure!(
            config.type_vocab_size >= 1,
            "type_vocab_size must be at least 1"
        );
        let activation = Activation::from_name(&config.hidden_act)
            .with_context(|| format!("hidden_act `{}` is not supported", config.hidden_act))?;
        let emb_name = resolve(store, "embeddings.word_embeddings.weight");
        let word_emb =
            Embedding::from_weight(store.take_weight(&emb_name, &[config.vocab_size, h])?, h);
        let pos_emb = take(
            store,
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let type_emb = take(
            store,
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        let emb_norm = take_norm(store, "embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let qkv = LinearParts::concat(vec![
                take_parts(store, &format!("{p}.attention.self.query"), h, h)?,
                take_parts(store, &format!("{p}.attention.self.key"), h, h)?,
                take_parts(store, &format!("{p}.attention.self.value"), h, h)?,
            ])?
            .build()?;
            // A pruned variant keeps fewer FFN units, as many as its stored matrices say.
            let w1 = resolve(store, &format!("{p}.intermediate.dense.weight"));
            let ffn = ffn_width(store, &w1, config.intermediate_size)?;
            layers.push(EncoderLayer {
                qkv,
                attn_out: take_linear(store, &format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: take_norm(store, &format!("{p}.attention.output.LayerNorm"), h)?,
                ffn_in: take_linear(store, &format!("{p}.intermediate.dense"), ffn, h)?,
                ffn_out: take_linear(store, &format!("{p}.output.dense"), h, ffn)?,
                ffn_norm: take_norm(store, &format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(Self {
            config,
            word_emb,
            pos_emb,
            type_emb,
            emb_norm,
            layers,
            activation,
            sep,
        })
    }

    /// Longest sequence the position table covers, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// The last layer's hidden states of packed sequences, `[total_tokens, hidden]`, and where
    /// each sequence starts (`offsets[s]..offsets[s + 1]`, the last entry the total).
    pub fn hidden_states(&self, batch: &[Vec<u32>]) -> Result<(Scratch, Vec<usize>)> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let mut offsets = Vec::with_capacity(batch.len() + 1);
        offsets.push(0usize);
        for ids in batch {
            ensure!(!ids.is_empty(), "empty token sequence");
            ensure!(
                ids.len() <= self.max_tokens(),
                "sequence of {} tokens exceeds {}",
                ids.len(),
                self.max_tokens()
            );
            offsets.push(offsets.last().unwrap() + ids.len());
        }
        let total = *offsets.last().unwrap();
        if total == 0 {
            return Ok((Scratch::zeroed(0), offsets));
        }

        // Embeddings: word + position + token type (1 after a pair's first [SEP]), then LayerNorm.
        let mut x = Scratch::zeroed(total * h);
        for (s, ids) in batch.iter().enumerate() {
            let mut segment = 0usize;
            for (pos, &id) in ids.iter().enumerate() {
                let idx = id as usize;
                ensure!(
                    idx < self.config.vocab_size,
                    "token id {id} outside the vocabulary"
                );
                let row = &mut x[(offsets[s] + pos) * h..(offsets[s] + pos + 1) * h];
                self.word_emb.lookup(idx, 1.0, row);
                add_in_place(row, &self.pos_emb[pos * h..(pos + 1) * h]);
                let t = segment.min(self.config.type_vocab_size - 1);
                add_in_place(row, &self.type_emb[t * h..(t + 1) * h]);
                if Some(id) == self.sep && pos + 1 < ids.len() {
                    segment = 1;
                }
            }
        }
        self.emb_norm.apply(&mut x, self.config.layer_norm_eps);

        let shape = EncoderShape {
            dim: h,
            heads: Heads {
                count: heads,
                dim: h / heads,
                causal: false,
                // `encode` picks it per layer: f32, or bf16 for a quantized layer when
                // QUANTSERVE_ATTENTION=bf16.
                precision: Precision::F32,
            },
            activation: self.activation,
            eps: self.config.layer_norm_eps,
        };
        encode(&self.layers, shape, &mut x, &offsets);
        Ok((x, offsets))
    }

    pub fn ffn_inputs_mut(&mut self) -> Vec<&mut Linear> {
        self.layers.iter_mut().map(|l| &mut l.ffn_in).collect()
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        let emb = self.word_emb.bytes() + (self.pos_emb.len() + self.type_emb.len()) * 4;
        emb + self
            .layers
            .iter()
            .map(|l| l.qkv.bytes() + l.attn_out.bytes() + l.ffn_in.bytes() + l.ffn_out.bytes())
            .sum::<usize>()
    }
}

impl Model for BertClassifier {
    fn task(&self) -> Task {
        Task::Classify
    }

    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>, ModelError> {
        BertClassifier::tokenize(self, text, overflow).map_err(ModelError::from_tokenizer)
    }

    fn tokenize_pair(
        &self,
        first: &str,
        second: &str,
        overflow: Overflow,
    ) -> Result<Vec<u32>, ModelError> {
        BertClassifier::tokenize_pair(self, first, second, overflow)
            .map_err(ModelError::from_tokenizer)
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
        self.max_tokens()
    }

    fn labels(&self) -> Vec<String> {
        self.labels.clone()
    }

    fn default_params(&self) -> RunParams {
        RunParams::default()
    }

    fn run(&self, batch: &[Vec<u32>], params: RunParams) -> Result<Vec<Output>, ModelError> {
        let results = self.classify_ids(batch).map_err(ModelError::Failed)?;
        Ok(results
            .into_iter()
            .map(|r| {
                let values = if params.raw_scores {
                    &r.logits
                } else {
                    &r.scores
                };
                let mut scored: Vec<LabelScore> = values
                    .iter()
                    .zip(&self.labels)
                    .map(|(&score, label)| LabelScore {
                        label: label.clone(),
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
        BertClassifier::weight_bytes(self)
    }
}
