//! Marian transformer translation models, both flavours in one model: Bergamot students (Marian
//! `.bin`, SSRU decoder) and Hugging Face `MarianMTModel` folders (Opus-MT, standard causal
//! self-attention decoder with a key/value cache; loaded by `hf`). Encoder, decoder, greedy and
//! beam search, optional lexical shortlist.

mod hf;

pub use hf::is_hf_dir;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::attention::{Heads, Rows, multi_head_attention};
use super::embedding::Embedding;
use super::encoder::{EncoderLayer, EncoderShape, Norm, encode, ffn_width, max_ffn_width};
use super::linear::{Linear, LinearParts};
use super::marian_bin::MarianBin;
use super::shortlist::Shortlist;
use super::tokenizer::{Overflow, TextTokenizer, fit_to_limit};
use super::weights::TensorStore;
use rayon::prelude::*;

use crate::kernels::ops::{Activation, add_in_place, argmax, log_softmax, sigmoid};

/// Most sentences decoded together; larger batches are split into groups of similar length.
const MAX_DECODE_BATCH: usize = 32;

/// Architecture read from the model's embedded `special:model.yml`.
#[derive(Clone, Debug)]
pub struct MarianConfig {
    pub dim: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    pub ffn_activation: Activation,
    pub enc_depth: usize,
    pub dec_depth: usize,
    pub vocab: usize,
    pub layer_norm_eps: f32,
    /// Token embeddings are multiplied by this (√dim in Marian and with HF `scale_embedding`).
    pub embed_scale: f32,
    pub positions: Positions,
    pub decoder: DecoderKind,
}

/// The decoder layer's first block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderKind {
    /// Bergamot's simpler simple recurrent unit: one state vector per layer and row.
    Ssru,
    /// Causal multi-head self-attention over the cached keys and values of earlier positions.
    SelfAttention,
}

/// How sinusoidal positions are computed (sin in the first half of the row, cos in the second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Marian: frequency `10000^(−i/(half−1))`.
    Marian,
    /// transformers' `MarianSinusoidalPositionalEmbedding`: `10000^(−2i/dim)`, in f64.
    HuggingFace,
}

/// How the next tokens are chosen, where the two implementations differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Marian: banned tokens are masked before the log-softmax; a finished hypothesis shrinks the
    /// sentence's beam.
    Marian,
    /// transformers `generate`: log-softmax, then banned tokens masked; 2·beam candidates per
    /// step so the beam stays full, finished hypotheses kept apart with the early-stop heuristic.
    HuggingFace,
}

fn yml_usize(doc: &serde_yaml::Value, key: &str) -> Result<usize> {
    doc.get(key)
        .and_then(serde_yaml::Value::as_u64)
        .map(|v| v as usize)
        .with_context(|| format!("model.yml has no integer `{key}`"))
}

fn yml_str<'a>(doc: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    doc.get(key).and_then(serde_yaml::Value::as_str)
}

impl MarianConfig {
    pub fn from_yml(text: &str) -> Result<Self> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).context("parsing model.yml")?;
        let expect = |key: &str, want: &str| -> Result<()> {
            match yml_str(&doc, key) {
                Some(v) if v == want => Ok(()),
                other => bail!("model.yml `{key}` is {other:?}; only `{want}` is supported"),
            }
        };
        expect("type", "transformer")?;
        expect("transformer-postprocess", "dan")?;
        expect("dec-cell", "ssru")?;
        expect("transformer-decoder-autoreg", "rnn")?;
        ensure!(
            doc.get("tied-embeddings-all")
                .and_then(serde_yaml::Value::as_bool)
                == Some(true),
            "only models with tied-embeddings-all are supported"
        );
        let act = yml_str(&doc, "transformer-ffn-activation").unwrap_or("relu");
        let vocabs = doc
            .get("dim-vocabs")
            .and_then(serde_yaml::Value::as_sequence)
            .context("model.yml has no `dim-vocabs`")?;
        let vocab = vocabs
            .first()
            .and_then(serde_yaml::Value::as_u64)
            .context("bad `dim-vocabs`")? as usize;
        ensure!(
            vocabs.iter().all(|v| v.as_u64() == Some(vocab as u64)),
            "source and target vocabularies differ"
        );
        let cfg = Self {
            dim: yml_usize(&doc, "dim-emb")?,
            heads: yml_usize(&doc, "transformer-heads")?,
            ffn_dim: yml_usize(&doc, "transformer-dim-ffn")?,
            ffn_activation: Activation::from_name(act)
                .with_context(|| format!("activation `{act}` is not supported"))?,
            enc_depth: yml_usize(&doc, "enc-depth")?,
            dec_depth: yml_usize(&doc, "dec-depth")?,
            vocab,
            // Marian's layer normalisation epsilon.
            layer_norm_eps: 1e-9,
            embed_scale: (yml_usize(&doc, "dim-emb")? as f32).sqrt(),
            positions: Positions::Marian,
            decoder: DecoderKind::Ssru,
        };
        ensure!(
            cfg.heads > 0 && cfg.dim.is_multiple_of(cfg.heads) && cfg.dim.is_multiple_of(2),
            "bad dims in model.yml"
        );
        Ok(cfg)
    }
}

/// Decoding settings: Marian's defaults from the model's `config.*.yml` where present.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    pub beam_size: usize,
    /// Length normalisation exponent: hypotheses are ranked by `score / len^normalize`.
    pub normalize: f32,
    /// Output length cap as a multiple of the source length (EOS included).
    pub max_length_factor: f32,
    /// Absolute output length cap in tokens, on top of the factor.
    pub max_length: Option<usize>,
    /// Restrict the output vocabulary to the lexical shortlist (when the model has one).
    pub shortlist: bool,
    /// EOS is not generated before this many output tokens (transformers' `min_length`).
    pub min_length: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            normalize: 1.0,
            max_length_factor: 2.5,
            max_length: None,
            shortlist: true,
            min_length: 0,
        }
    }
}

/// The decoder layer's first block, after `DecoderKind`.
enum SelfBlock {
    /// SSRU gates: `[x·Wf + bf | x·W]` in one matmul.
    Ssru(Linear),
    /// `[Q | K | V]` in one matmul, then the output projection.
    Attention { qkv: Linear, out: Linear },
}

impl SelfBlock {
    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match self {
            Self::Ssru(l) => vec![l],
            Self::Attention { qkv, out } => vec![qkv, out],
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Ssru(l) => l.bytes(),
            Self::Attention { qkv, out } => qkv.bytes() + out.bytes(),
        }
    }
}

struct DecoderLayer {
    self_block: SelfBlock,
    self_norm: Norm,
    query: Linear,
    /// Keys and values of the encoder output, `[K | V]`, computed once per sentence.
    cross_kv: Linear,
    ctx_out: Linear,
    ctx_norm: Norm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: Norm,
}

pub struct MarianTranslator {
    pub config: MarianConfig,
    pub tokenizer: TextTokenizer,
    pub defaults: SearchOptions,
    /// Longest accepted source in tokens (EOS included); longer inputs are truncated or refused.
    pub max_source_tokens: usize,
    embeddings: Embedding,
    /// The decoder's own table when it is not `embeddings` (an untied HF checkpoint).
    target_embeddings: Option<Embedding>,
    output: Linear,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    shortlist: Option<Shortlist>,
    generation: Generation,
}

/// Token-level generation rules of the model.
#[derive(Clone, Debug)]
struct Generation {
    eos: u32,
    /// The first decoder input: a token (HF `decoder_start_token_id`) or, for Marian, none (a
    /// zero embedding).
    start: Option<u32>,
    /// Token sequences never generated: the last token is banned after the others (HF
    /// `bad_words_ids`, the pad token; Marian's `<unk>`).
    banned: Vec<Vec<u32>>,
    /// The last position allowed by the length cap must be EOS (HF `forced_eos_token_id`).
    forced_eos: bool,
    search: Search,
    /// Longest output the model can produce (EOS included): its position table's size.
    max_target_len: usize,
}

impl Generation {
    /// Tokens banned after `prefix`.
    fn banned_after<'a>(&'a self, prefix: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
        self.banned.iter().filter_map(move |seq| {
            let (last, before) = seq.split_last()?;
            prefix.ends_with(before).then_some(*last)
        })
    }
}

/// Adds the sinusoidal position embedding: first half sin, second half cos.
fn add_position(row: &mut [f32], pos: usize, style: Positions) {
    let half = row.len() / 2;
    match style {
        Positions::Marian => {
            let step = (10000f32).ln() / (half as f32 - 1.0).max(1.0);
            for i in 0..half {
                let angle = pos as f32 * (-(i as f32) * step).exp();
                row[i] += angle.sin();
                row[half + i] += angle.cos();
            }
        }
        Positions::HuggingFace => {
            // transformers builds the table in float64 and stores it as float32.
            let dim = row.len() as f64;
            for i in 0..half {
                let angle = pos as f64 / 10000f64.powf(2.0 * i as f64 / dim);
                row[i] += angle.sin() as f32;
                row[half + i] += angle.cos() as f32;
            }
        }
    }
}

/// The model files of a Bergamot model directory, named by its `config.*.yml` when present.
struct ModelFiles {
    model: Option<PathBuf>,
    shortlist: Option<PathBuf>,
    options: SearchOptions,
}

fn find_files(dir: &Path, need_model: bool) -> Result<ModelFiles> {
    let mut options = SearchOptions::default();
    let mut model = None;
    let mut shortlist = None;
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading model directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let config = entries.iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("config") && n.ends_with(".yml"))
    });
    if let Some(cfg) = config {
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(cfg)?)
            .with_context(|| format!("parsing {}", cfg.display()))?;
        let first = |key: &str| {
            doc.get(key)
                .and_then(serde_yaml::Value::as_sequence)
                .and_then(|s| s.first())
                .and_then(serde_yaml::Value::as_str)
                .map(|s| dir.join(s))
        };
        model = first("models");
        shortlist = first("shortlist");
        if let Some(b) = doc.get("beam-size").and_then(serde_yaml::Value::as_u64) {
            options.beam_size = b.max(1) as usize;
        }
        if let Some(n) = doc.get("normalize").and_then(serde_yaml::Value::as_f64) {
            options.normalize = n as f32;
        }
        if let Some(f) = doc
            .get("max-length-factor")
            .and_then(serde_yaml::Value::as_f64)
        {
            options.max_length_factor = f as f32;
        }
    }
    let by_ext = |suffix: &str| {
        entries
            .iter()
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
            })
            .cloned()
    };
    let model = model.or_else(|| {
        entries
            .iter()
            .find(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".bin") && !n.ends_with(".s2t.bin")
            })
            .cloned()
    });
    if need_model {
        ensure!(
            model.as_ref().is_some_and(|m| m.exists()),
            "no Marian model (*.bin) in {}",
            dir.display()
        );
    }
    let shortlist = shortlist.or_else(|| by_ext(".s2t.bin"));
    Ok(ModelFiles {
        model,
        shortlist,
        options,
    })
}

/// A layer norm's scale and bias, by their tensor names.
fn take_norm_named(store: &mut TensorStore, gamma: &str, beta: &str, d: usize) -> Result<Norm> {
    Ok(Norm {
        gamma: store.take(gamma, &[d])?,
        beta: store.take(beta, &[d])?,
    })
}

fn take_norm(store: &mut TensorStore, prefix: &str, d: usize) -> Result<Norm> {
    take_norm_named(
        store,
        &format!("{prefix}_ln_scale"),
        &format!("{prefix}_ln_bias"),
        d,
    )
}

fn take_linear(
    store: &mut TensorStore,
    w: &str,
    b: Option<&str>,
    n_out: usize,
    n_in: usize,
) -> Result<LinearParts> {
    let weight = store.take_weight(w, &[n_out, n_in])?;
    let bias = b.map(|b| store.take(b, &[n_out])).transpose()?;
    Ok(LinearParts {
        weight,
        bias,
        n_out,
        n_in,
    })
}

/// Per-sentence state of the batch being decoded.
struct Sentence {
    /// First row of this sentence in the packed encoder output, and its length.
    src_start: usize,
    src_len: usize,
    max_len: usize,
    /// Positions of the sentence's allowed targets inside the batch's output columns (sorted;
    /// None = all columns).
    allowed: Option<Vec<u32>>,
}

/// A partial hypothesis (one decoder row).
#[derive(Clone)]
struct Hyp {
    sentence: usize,
    tokens: Vec<u32>,
    score: f32,
}

impl MarianTranslator {
    /// Loads a model directory: a Hugging Face `MarianMTModel` folder (`config.json`), or a
    /// Bergamot one (`model.*.bin`, `tokenizer.json`, optional shortlist).
    pub fn load(dir: &Path) -> Result<Self> {
        if hf::is_hf_dir(dir) {
            return hf::load(dir);
        }
        let variant = dir.join(crate::quant::format::VARIANT_FILE);
        let files = find_files(dir, !variant.exists())?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let shortlist = files
            .shortlist
            .as_deref()
            .map(Shortlist::read)
            .transpose()?;
        if variant.exists() {
            // A quantized variant folder: tensors and model.yml from `variant.safetensors`.
            let store = TensorStore::from_safetensors(&variant)?;
            crate::quant::format::VariantInfo::from_metadata(&store.metadata, "marian")
                .with_context(|| format!("{}", variant.display()))?;
            let yml = store
                .metadata
                .get(crate::quant::convert::MARIAN_YML_KEY)
                .cloned()
                .context("variant has no model.yml in its metadata")?;
            return Self::from_parts(store, &yml, tokenizer, shortlist, files.options)
                .with_context(|| format!("loading {}", variant.display()));
        }
        let model = files.model.context("no model file")?;
        let bin = MarianBin::read(&model)?;
        Self::from_parts(
            bin.tensors,
            &bin.model_yml,
            tokenizer,
            shortlist,
            files.options,
        )
        .with_context(|| format!("loading {}", model.display()))
    }

    fn from_parts(
        mut store: TensorStore,
        model_yml: &str,
        tokenizer: TextTokenizer,
        shortlist: Option<Shortlist>,
        defaults: SearchOptions,
    ) -> Result<Self> {
        let config = MarianConfig::from_yml(model_yml)?;
        let s = &mut store;
        let (d, f, v) = (config.dim, config.ffn_dim, config.vocab);
        // Tied embeddings: one table for source and target lookups and the output projection.
        let wemb = s.take_weight("Wemb", &[v, d])?;
        let out_bias = s.take("decoder_ff_logit_out_b", &[v])?;
        let output = LinearParts {
            weight: wemb.clone(),
            bias: Some(out_bias),
            n_out: v,
            n_in: d,
        }
        .build()?;
        let embeddings = Embedding::from_weight(wemb, d);
        let mut encoder = Vec::new();
        for l in 1..=config.enc_depth {
            let p = format!("encoder_l{l}");
            let lin = |s: &mut TensorStore, w: &str, b: &str, o, i| {
                take_linear(s, &format!("{p}_{w}"), Some(&format!("{p}_{b}")), o, i)
            };
            // A pruned variant keeps fewer FFN units, as many as its stored matrices say.
            let f = ffn_width(s, &format!("{p}_ffn_W1"), f)?;
            encoder.push(EncoderLayer {
                qkv: LinearParts::concat(vec![
                    lin(s, "self_Wq", "self_bq", d, d)?,
                    lin(s, "self_Wk", "self_bk", d, d)?,
                    lin(s, "self_Wv", "self_bv", d, d)?,
                ])?
                .build()?,
                attn_out: lin(s, "self_Wo", "self_bo", d, d)?.build()?,
                attn_norm: take_norm(s, &format!("{p}_self_Wo"), d)?,
                ffn_in: lin(s, "ffn_W1", "ffn_b1", f, d)?.build()?,
                ffn_out: lin(s, "ffn_W2", "ffn_b2", d, f)?.build()?,
                ffn_norm: take_norm(s, &format!("{p}_ffn_ffn"), d)?,
            });
        }
        let mut decoder = Vec::new();
        for l in 1..=config.dec_depth {
            let p = format!("decoder_l{l}");
            let lin = |s: &mut TensorStore, w: &str, b: &str, o, i| {
                take_linear(s, &format!("{p}_{w}"), Some(&format!("{p}_{b}")), o, i)
            };
            // The candidate state x·W has no bias; give it zeros so both halves share one matmul.
            let forget = lin(s, "rnn_Wf", "rnn_bf", d, d)?;
            let mut cand = take_linear(s, &format!("{p}_rnn_W"), None, d, d)?;
            let f = ffn_width(s, &format!("{p}_ffn_W1"), f)?;
            cand.bias = Some(vec![0.0; d]);
            decoder.push(DecoderLayer {
                self_block: SelfBlock::Ssru(LinearParts::concat(vec![forget, cand])?.build()?),
                self_norm: take_norm(s, &format!("{p}_rnn_ffn"), d)?,
                query: lin(s, "context_Wq", "context_bq", d, d)?.build()?,
                cross_kv: LinearParts::concat(vec![
                    lin(s, "context_Wk", "context_bk", d, d)?,
                    lin(s, "context_Wv", "context_bv", d, d)?,
                ])?
                .build()?,
                ctx_out: lin(s, "context_Wo", "context_bo", d, d)?.build()?,
                ctx_norm: take_norm(s, &format!("{p}_context_Wo"), d)?,
                ffn_in: lin(s, "ffn_W1", "ffn_b1", f, d)?.build()?,
                ffn_out: lin(s, "ffn_W2", "ffn_b2", d, f)?.build()?,
                ffn_norm: take_norm(s, &format!("{p}_ffn_ffn"), d)?,
            });
        }
        let eos = tokenizer.token_id_or("</s>")?;
        let unk = tokenizer.token_id("<unk>");
        ensure!(
            tokenizer.vocab_size() <= v,
            "tokenizer has more tokens than the model's vocabulary"
        );
        Ok(Self {
            config,
            tokenizer,
            defaults,
            max_source_tokens: 256,
            embeddings,
            target_embeddings: None,
            output,
            encoder,
            decoder,
            shortlist,
            generation: Generation {
                eos,
                start: None,
                // Marian does not output <unk> unless told to.
                banned: unk.map(|u| vec![vec![u]]).unwrap_or_default(),
                forced_eos: false,
                search: Search::Marian,
                max_target_len: usize::MAX,
            },
        })
    }

    fn heads(&self) -> Heads {
        Heads {
            count: self.config.heads,
            dim: self.config.dim / self.config.heads,
            causal: false,
        }
    }

    pub fn has_shortlist(&self) -> bool {
        self.shortlist.is_some()
    }

    pub fn eos(&self) -> u32 {
        self.generation.eos
    }

    /// Source ids for `text`: SentencePiece pieces then EOS, fitted to `max_source_tokens`.
    pub fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false)?;
        ids.push(self.generation.eos);
        Ok(fit_to_limit(ids, self.max_source_tokens, overflow)?)
    }

    /// Translates texts; empty (or whitespace-only) inputs translate to empty outputs.
    pub fn translate(
        &self,
        texts: &[&str],
        opts: &SearchOptions,
        overflow: Overflow,
    ) -> Result<Vec<String>> {
        let mut outputs = vec![String::new(); texts.len()];
        let mut sources = Vec::new();
        let mut slots = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if !t.trim().is_empty() {
                sources.push(self.tokenize(t, overflow)?);
                slots.push(i);
            }
        }
        let ids = self.translate_ids(&sources, opts)?;
        for (slot, out) in slots.into_iter().zip(ids) {
            outputs[slot] = self.tokenizer.decode(&out)?;
        }
        Ok(outputs)
    }

    fn embed(&self, table: &Embedding, id: u32, pos: usize, row: &mut [f32]) {
        table.lookup(id as usize, self.config.embed_scale, row);
        add_position(row, pos, self.config.positions);
    }

    /// Runs the encoder on packed sources; returns `[total_tokens, dim]`.
    fn encode(&self, sources: &[Vec<u32>], starts: &[usize]) -> Vec<f32> {
        let d = self.config.dim;
        let total = *starts.last().unwrap();
        let mut x = vec![0.0f32; total * d];
        for (s, ids) in sources.iter().enumerate() {
            for (pos, &id) in ids.iter().enumerate() {
                let r = starts[s] + pos;
                self.embed(&self.embeddings, id, pos, &mut x[r * d..(r + 1) * d]);
            }
        }
        let shape = EncoderShape {
            dim: d,
            heads: self.heads(),
            activation: self.config.ffn_activation,
            eps: self.config.layer_norm_eps,
        };
        encode(&self.encoder, shape, &mut x, starts);
        x
    }

    /// Per layer and row, the decoder's state before the first step: an SSRU cell of zeros, or an
    /// empty self-attention cache.
    fn initial_states(&self, rows: usize) -> Vec<Vec<Vec<f32>>> {
        let row = match self.config.decoder {
            DecoderKind::Ssru => vec![0.0; self.config.dim],
            DecoderKind::SelfAttention => Vec::new(),
        };
        vec![vec![row; rows]; self.decoder.len()]
    }

    /// One decoder step for every row: input tokens (None = start), per-layer states (SSRU
    /// cell, or `[K | V]` of every earlier position) updated in place; returns logits over
    /// `output`'s columns, `[rows, output.n_out()]`.
    fn decode_step(
        &self,
        hyps: &[Hyp],
        sentences: &[Sentence],
        step: usize,
        states: &mut [Vec<Vec<f32>>],
        cross: &[Vec<f32>],
        output: &Linear,
    ) -> Vec<f32> {
        let d = self.config.dim;
        let rows = hyps.len();
        let eps = self.config.layer_norm_eps;
        let mut x = vec![0.0f32; rows * d];
        let table = self.target_embeddings.as_ref().unwrap_or(&self.embeddings);
        for (r, h) in hyps.iter().enumerate() {
            let row = &mut x[r * d..(r + 1) * d];
            match h.tokens.last().copied().or(self.generation.start) {
                Some(id) => self.embed(table, id, step, row),
                // Marian's first input is a zero embedding plus position 0.
                None => add_position(row, step, self.config.positions),
            }
        }
        let mut gates = vec![0.0f32; rows * 3 * d];
        let mut tmp = vec![0.0f32; rows * d];
        let mut q = vec![0.0f32; rows * d];
        let mut ctx = vec![0.0f32; rows * d];
        let widest = max_ffn_width(self.decoder.iter().map(|l| &l.ffn_in));
        let mut inter = vec![0.0f32; rows * widest];
        for (l, layer) in self.decoder.iter().enumerate() {
            match &layer.self_block {
                SelfBlock::Ssru(ssru) => {
                    // SSRU: f = σ(x·Wf + bf); c = f⊙c + (1−f)⊙(x·W); h = relu(c).
                    ssru.forward(&x, rows, &mut gates);
                    for (r, c) in states[l].iter_mut().enumerate() {
                        let g = &gates[r * 2 * d..(r + 1) * 2 * d];
                        let out = &mut tmp[r * d..(r + 1) * d];
                        for i in 0..d {
                            let f = sigmoid(g[i]);
                            c[i] = f * c[i] + (1.0 - f) * g[d + i];
                            out[i] = c[i].max(0.0);
                        }
                    }
                }
                SelfBlock::Attention { qkv, out } => {
                    // The row's new key and value join its cache; the query attends to all of
                    // it (every cached position is at or before this one: causal by design).
                    qkv.forward(&x, rows, &mut gates);
                    let (fused, heads) = (&gates, self.heads());
                    // Rows are independent: attend in parallel, each writing its own context.
                    states[l]
                        .par_iter_mut()
                        .zip(ctx.par_chunks_mut(d))
                        .enumerate()
                        .for_each_init(Vec::new, |scores, (r, (cache, out))| {
                            cache.extend_from_slice(&fused[r * 3 * d + d..(r + 1) * 3 * d]);
                            let kv = |col| Rows {
                                data: cache,
                                first_row: 0,
                                rows: cache.len() / (2 * d),
                                stride: 2 * d,
                                col,
                            };
                            let query = Rows {
                                data: fused,
                                first_row: r,
                                rows: 1,
                                stride: 3 * d,
                                col: 0,
                            };
                            multi_head_attention(query, kv(0), kv(d), heads, out, d, scores);
                        });
                    out.forward(&ctx, rows, &mut tmp);
                }
            }
            add_in_place(&mut x, &tmp);
            layer.self_norm.apply(&mut x, eps);

            layer.query.forward(&x, rows, &mut q);
            let (q, heads) = (&q, self.heads());
            hyps.par_iter()
                .zip(ctx.par_chunks_mut(d))
                .enumerate()
                .for_each_init(Vec::new, |scores, (r, (h, out))| {
                    let s = &sentences[h.sentence];
                    let kv = |col| Rows {
                        data: &cross[l],
                        first_row: s.src_start,
                        rows: s.src_len,
                        stride: 2 * d,
                        col,
                    };
                    let query = Rows {
                        data: q,
                        first_row: r,
                        rows: 1,
                        stride: d,
                        col: 0,
                    };
                    multi_head_attention(query, kv(0), kv(d), heads, out, d, scores);
                });
            layer.ctx_out.forward(&ctx, rows, &mut tmp);
            add_in_place(&mut x, &tmp);
            layer.ctx_norm.apply(&mut x, eps);

            let inter = &mut inter[..rows * layer.ffn_in.n_out()];
            layer
                .ffn_in
                .forward_activated(&x, rows, inter, self.config.ffn_activation);
            layer.ffn_out.forward(inter, rows, &mut tmp);
            add_in_place(&mut x, &tmp);
            layer.ffn_norm.apply(&mut x, eps);
        }
        output.apply(&x, rows)
    }

    /// Translates source id sequences (each ending in EOS); returns target ids without EOS.
    pub fn translate_ids(
        &self,
        sources: &[Vec<u32>],
        opts: &SearchOptions,
    ) -> Result<Vec<Vec<u32>>> {
        if sources.len() <= MAX_DECODE_BATCH {
            return self.translate_group(sources, opts);
        }
        // Large batches decode in groups of similar length: the shortlist union (the output
        // matmul's width) and the finished-row churn both grow with the group. Outputs do not
        // depend on grouping, so this changes only speed.
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| sources[i].len());
        let mut outputs = vec![Vec::new(); sources.len()];
        for group in order.chunks(MAX_DECODE_BATCH) {
            let batch: Vec<Vec<u32>> = group.iter().map(|&i| sources[i].clone()).collect();
            for (&i, out) in group.iter().zip(self.translate_group(&batch, opts)?) {
                outputs[i] = out;
            }
        }
        Ok(outputs)
    }

    /// Runs the encoder and precomputes every decoder layer's cross-attention keys and values.
    fn encode_for_decoding(&self, sources: &[Vec<u32>]) -> Result<(Vec<usize>, Vec<Vec<f32>>)> {
        let mut starts = vec![0usize];
        for ids in sources {
            ensure!(!ids.is_empty(), "empty source sequence");
            ensure!(
                ids.iter().all(|&i| (i as usize) < self.config.vocab),
                "source token id outside the vocabulary"
            );
            starts.push(starts.last().unwrap() + ids.len());
        }
        let enc = self.encode(sources, &starts);
        let total = *starts.last().unwrap();
        let cross = self
            .decoder
            .iter()
            .map(|l| l.cross_kv.apply(&enc, total))
            .collect();
        Ok((starts, cross))
    }

    fn translate_group(&self, sources: &[Vec<u32>], opts: &SearchOptions) -> Result<Vec<Vec<u32>>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let (starts, cross) = self.encode_for_decoding(sources)?;
        let eos = self.generation.eos;

        // Output columns: the full vocabulary, or the union of the sentences' shortlists. Each
        // sentence is masked to its own list, so a translation never depends on its batch-mates.
        let shortlist = self.shortlist.as_ref().filter(|_| opts.shortlist);
        let (columns, output): (Option<Vec<u32>>, Option<Linear>) = match shortlist {
            Some(sl) => {
                let union = sl.allowed_targets(&sources.concat(), self.config.vocab, &[eos]);
                let out = self.output.select_outputs(&union);
                (Some(union), Some(out))
            }
            None => (None, None),
        };
        let output = output.as_ref().unwrap_or(&self.output);
        let sentences: Vec<Sentence> = sources
            .iter()
            .enumerate()
            .map(|(i, src)| {
                // Marian stops once the output (EOS included) reaches factor × source length.
                let by_factor = (opts.max_length_factor * src.len() as f32).ceil() as usize;
                let max_len = opts
                    .max_length
                    .map_or(by_factor, |m| m.min(by_factor))
                    .min(self.generation.max_target_len)
                    .max(1);
                // The sentence's own shortlist as positions in the batch's columns; None when
                // it is every column (a batch of one, or no shortlist).
                let allowed = match (shortlist, &columns) {
                    (Some(sl), Some(cols)) => {
                        let own = sl.allowed_targets(src, self.config.vocab, &[eos]);
                        let positions: Vec<u32> = own
                            .iter()
                            .filter_map(|id| cols.binary_search(id).ok())
                            .map(|c| c as u32)
                            .collect();
                        (positions.len() < cols.len()).then_some(positions)
                    }
                    _ => None,
                };
                Sentence {
                    src_start: starts[i],
                    src_len: src.len(),
                    max_len,
                    allowed,
                }
            })
            .collect();
        let to_token = |c: usize| columns.as_ref().map_or(c as u32, |cols| cols[c]);
        let to_column = |t: u32| match &columns {
            Some(cols) => cols.binary_search(&t).ok(),
            None => Some(t as usize),
        };
        let eos_column = to_column(eos).context("EOS is not an output column")?;
        let n_cols = output.n_out();
        // What the row may not output next, and whether it must output EOS.
        let banned = |h: &Hyp| -> Vec<usize> {
            let too_short = (h.tokens.len() < opts.min_length).then_some(eos);
            self.generation
                .banned_after(&h.tokens)
                .chain(too_short)
                .filter_map(to_column)
                .collect()
        };
        let forced = |h: &Hyp| {
            self.generation.forced_eos && h.tokens.len() + 1 >= sentences[h.sentence].max_len
        };

        let mut hyps: Vec<Hyp> = (0..sources.len())
            .map(|s| Hyp {
                sentence: s,
                tokens: Vec::new(),
                score: 0.0,
            })
            .collect();
        let beam = opts.beam_size.max(1);
        let mut states = self.initial_states(hyps.len());
        let mut live_beam = vec![beam; sources.len()];
        // HF search: whether the early-stop heuristic still allows better finished hypotheses.
        let mut open = vec![true; sources.len()];
        let mut finished: Vec<Vec<(f32, Vec<u32>)>> = vec![Vec::new(); sources.len()];
        let mut step = 0;
        while !hyps.is_empty() {
            if hyps.iter().all(forced) {
                // Every row must end now, with EOS scored 0 (as transformers forces it): the
                // decoder step would change nothing, so it is not run.
                for h in &hyps {
                    if open[h.sentence] {
                        let len = (h.tokens.len() + 1) as f32;
                        let score = h.score / len.powf(opts.normalize);
                        finished[h.sentence].push((score, h.tokens.clone()));
                    }
                }
                break;
            }
            let mut logits = self.decode_step(&hyps, &sentences, step, &mut states, &cross, output);
            step += 1;
            // Candidate continuations: (sentence, parent row, token, score).
            let mut chosen: Vec<(usize, usize, u32, f32)> = Vec::new();
            if beam == 1 {
                for (r, h) in hyps.iter().enumerate() {
                    let row = &mut logits[r * n_cols..(r + 1) * n_cols];
                    let c = if forced(h) {
                        eos_column
                    } else {
                        best_column(row, sentences[h.sentence].allowed.as_deref(), &banned(h))
                    };
                    chosen.push((h.sentence, r, to_token(c), 0.0));
                }
            } else if self.generation.search == Search::HuggingFace {
                let (next, parents) = self.hf_beam_step(
                    &hyps,
                    &mut logits,
                    n_cols,
                    &sentences,
                    beam,
                    opts.normalize,
                    &mut open,
                    &mut finished,
                    |h: &Hyp, row: &mut [f32]| {
                        mask_row(row, sentences[h.sentence].allowed.as_deref(), &[]);
                        log_softmax(row);
                        mask_row(row, None, &banned(h));
                        if forced(h) {
                            // As transformers' ForcedEOSTokenLogitsProcessor: EOS scores 0.
                            row.fill(f32::NEG_INFINITY);
                            row[eos_column] = 0.0;
                        }
                    },
                    to_token,
                );
                reorder_states(&mut states, &parents);
                hyps = next;
                continue;
            } else {
                let mut by_sentence: Vec<Vec<(usize, usize, u32, f32)>> =
                    vec![Vec::new(); sources.len()];
                for (r, h) in hyps.iter().enumerate() {
                    let row = &mut logits[r * n_cols..(r + 1) * n_cols];
                    mask_row(row, sentences[h.sentence].allowed.as_deref(), &banned(h));
                    log_softmax(row);
                    let k = live_beam[h.sentence];
                    for c in top_k(row, k) {
                        by_sentence[h.sentence].push((
                            h.sentence,
                            r,
                            to_token(c),
                            h.score + row[c],
                        ));
                    }
                }
                for (s, mut cands) in by_sentence.into_iter().enumerate() {
                    // Highest score first; ties by parent row then token, so the order is fixed.
                    cands.sort_by(|a, b| {
                        b.3.total_cmp(&a.3).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
                    });
                    cands.truncate(live_beam[s]);
                    chosen.extend(cands);
                }
            }
            let mut next = Vec::new();
            let mut parents = Vec::new();
            for (s, parent, tok, score) in chosen {
                let mut tokens = hyps[parent].tokens.clone();
                let sent = &sentences[s];
                if tok == eos || tokens.len() + 1 >= sent.max_len {
                    if tok != eos {
                        tokens.push(tok);
                    }
                    let len = (tokens.len() + 1) as f32;
                    finished[s].push((score / len.powf(opts.normalize), tokens));
                    live_beam[s] -= 1;
                } else {
                    tokens.push(tok);
                    next.push(Hyp {
                        sentence: s,
                        tokens,
                        score,
                    });
                    parents.push(parent);
                }
            }
            reorder_states(&mut states, &parents);
            hyps = next;
        }
        Ok(finished
            .into_iter()
            .map(|mut f| {
                // Stable: among equal scores the earlier-finished hypothesis wins, as in HF.
                f.sort_by(|a, b| b.0.total_cmp(&a.0));
                f.into_iter().next().map(|(_, t)| t).unwrap_or_default()
            })
            .collect())
    }

    /// One step of transformers' beam search (`GenerationMixin._beam_search`, early_stopping
    /// False) for every sentence: the 2·beam best continuations over the sentence's rows; the
    /// first `beam` that do not end become the next rows; those among the first `beam` that end
    /// (EOS or length cap) join the finished list (the `beam` best by `score / len^penalty`)
    /// while the early-stop heuristic says they still can improve it. Returns the next rows and
    /// their parents.
    #[allow(clippy::too_many_arguments)]
    fn hf_beam_step(
        &self,
        hyps: &[Hyp],
        logits: &mut [f32],
        n_cols: usize,
        sentences: &[Sentence],
        beam: usize,
        length_penalty: f32,
        open: &mut [bool],
        finished: &mut [Vec<(f32, Vec<u32>)>],
        process: impl Fn(&Hyp, &mut [f32]),
        to_token: impl Fn(usize) -> u32,
    ) -> (Vec<Hyp>, Vec<usize>) {
        let eos = self.generation.eos;
        // (score, parent row, column) per sentence.
        let mut by_sentence: Vec<Vec<(f32, usize, usize)>> = vec![Vec::new(); sentences.len()];
        for (r, h) in hyps.iter().enumerate() {
            let row = &mut logits[r * n_cols..(r + 1) * n_cols];
            process(h, row);
            for c in top_k(row, 2 * beam) {
                by_sentence[h.sentence].push((h.score + row[c], r, c));
            }
        }
        let mut next = Vec::new();
        let mut parents = Vec::new();
        for (s, mut cands) in by_sentence.into_iter().enumerate() {
            if cands.is_empty() {
                continue;
            }
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            cands.truncate(2 * beam);
            let first_next = next.len();
            for (i, &(score, r, c)) in cands.iter().enumerate() {
                if score == f32::NEG_INFINITY {
                    break;
                }
                let tok = to_token(c);
                let len = hyps[r].tokens.len() + 1;
                if tok == eos || len >= sentences[s].max_len {
                    if i < beam && open[s] {
                        let mut tokens = hyps[r].tokens.clone();
                        if tok != eos {
                            tokens.push(tok);
                        }
                        finished[s].push((score / (len as f32).powf(length_penalty), tokens));
                    }
                } else if next.len() - first_next < beam {
                    let mut tokens = hyps[r].tokens.clone();
                    tokens.push(tok);
                    next.push(Hyp {
                        sentence: s,
                        tokens,
                        score,
                    });
                    parents.push(r);
                }
            }
            // Stable: an older finished hypothesis keeps its place among equal scores.
            finished[s].sort_by(|a, b| b.0.total_cmp(&a.0));
            finished[s].truncate(beam);
            // Early stop once the best running row, scored at its current length, cannot beat
            // the worst of a full finished list.
            if finished[s].len() == beam {
                open[s] = next[first_next..].first().is_some_and(|best| {
                    let len = best.tokens.len() as f32;
                    best.score / len.powf(length_penalty) > finished[s][beam - 1].0
                });
            }
            if !open[s] {
                next.truncate(first_next);
                parents.truncate(first_next);
            }
        }
        (next, parents)
    }

    /// Replaces the token embedding tables by `f(table)` (e.g. a low-bit variant's rows): the
    /// shared one, and an untied model's target table too.
    pub fn map_embeddings(
        &mut self,
        f: impl Fn(&super::embedding::Embedding) -> Result<super::embedding::Embedding>,
    ) -> Result<()> {
        self.embeddings = f(&self.embeddings)?;
        if let Some(t) = &self.target_embeddings {
            self.target_embeddings = Some(f(t)?);
        }
        Ok(())
    }

    /// The FFN input layers of the encoder and of the decoder, each in layer order, e.g. to
    /// observe their activations during pruning calibration.
    pub fn ffn_inputs_mut(&mut self) -> (Vec<&mut Linear>, Vec<&mut Linear>) {
        (
            self.encoder.iter_mut().map(|l| &mut l.ffn_in).collect(),
            self.decoder.iter_mut().map(|l| &mut l.ffn_in).collect(),
        )
    }

    /// Applies `f` to every dense layer, the output projection included (e.g. `Linear::to_int8`).
    pub fn map_linears(&mut self, f: impl Fn(&Linear) -> Result<Linear>) -> Result<()> {
        for l in &mut self.encoder {
            for lin in l.linears_mut() {
                *lin = f(lin)?;
            }
        }
        for l in &mut self.decoder {
            for lin in l.self_block.linears_mut() {
                *lin = f(lin)?;
            }
            for lin in [
                &mut l.query,
                &mut l.cross_kv,
                &mut l.ctx_out,
                &mut l.ffn_in,
                &mut l.ffn_out,
            ] {
                *lin = f(lin)?;
            }
        }
        self.output = f(&self.output)?;
        Ok(())
    }

    /// Logits over the full vocabulary at the first decoding step (for parity tests).
    pub fn first_step_logits(&self, source: &[u32]) -> Result<Vec<f32>> {
        self.step_logits(source, &[])
    }

    /// Logits over the full vocabulary after the decoder has been fed `prefix` (for parity tests).
    pub fn step_logits(&self, source: &[u32], prefix: &[u32]) -> Result<Vec<f32>> {
        let (_, cross) = self.encode_for_decoding(&[source.to_vec()])?;
        let sentences = [Sentence {
            src_start: 0,
            src_len: source.len(),
            max_len: usize::MAX,
            allowed: None,
        }];
        let mut states = self.initial_states(1);
        let mut hyp = Hyp {
            sentence: 0,
            tokens: Vec::new(),
            score: 0.0,
        };
        for (step, &tok) in prefix.iter().enumerate() {
            self.decode_step(
                &[hyp.clone()],
                &sentences,
                step,
                &mut states,
                &cross,
                &self.output,
            );
            hyp.tokens.push(tok);
        }
        let hyps = [hyp];
        Ok(self.decode_step(
            &hyps,
            &sentences,
            prefix.len(),
            &mut states,
            &cross,
            &self.output,
        ))
    }

    /// Bytes of weights held (the shortlist excluded).
    pub fn weight_bytes(&self) -> usize {
        let enc: usize = self
            .encoder
            .iter()
            .map(|l| l.qkv.bytes() + l.attn_out.bytes() + l.ffn_in.bytes() + l.ffn_out.bytes())
            .sum();
        let dec: usize = self
            .decoder
            .iter()
            .map(|l| {
                l.self_block.bytes()
                    + l.query.bytes()
                    + l.cross_kv.bytes()
                    + l.ctx_out.bytes()
                    + l.ffn_in.bytes()
                    + l.ffn_out.bytes()
            })
            .sum();
        self.embeddings.bytes()
            + self.target_embeddings.as_ref().map_or(0, Embedding::bytes)
            + self.output.bytes()
            + enc
            + dec
    }
}

/// Keeps the decoder states of the surviving rows, in their new order (a state used once is
/// moved, not copied: the self-attention caches grow with every step).
fn reorder_states(states: &mut [Vec<Vec<f32>>], parents: &[usize]) {
    for layer in states.iter_mut() {
        let mut uses = vec![0usize; layer.len()];
        parents.iter().for_each(|&p| uses[p] += 1);
        let mut old = std::mem::take(layer);
        *layer = parents
            .iter()
            .map(|&p| {
                uses[p] -= 1;
                if uses[p] == 0 {
                    std::mem::take(&mut old[p])
                } else {
                    old[p].clone()
                }
            })
            .collect();
    }
}

/// The column with the largest logit among `allowed` (all columns when None), never a `banned`
/// one (they are set to −∞ in `row`); the lowest column wins ties.
fn best_column(row: &mut [f32], allowed: Option<&[u32]>, banned: &[usize]) -> usize {
    for &c in banned {
        row[c] = f32::NEG_INFINITY;
    }
    let Some(cols) = allowed else {
        return argmax(row);
    };
    let mut best: Option<usize> = None;
    for &c in cols {
        let c = c as usize;
        if row[c] != f32::NEG_INFINITY && best.is_none_or(|b| row[c] > row[b]) {
            best = Some(c);
        }
    }
    best.unwrap_or(0)
}

/// Sets every column outside `allowed`, and the `banned` ones, to −∞.
fn mask_row(row: &mut [f32], allowed: Option<&[u32]>, banned: &[usize]) {
    if let Some(cols) = allowed {
        let mut next = cols.iter().peekable();
        for (c, v) in row.iter_mut().enumerate() {
            if next.peek().is_some_and(|&&a| a as usize == c) {
                next.next();
            } else {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    for &c in banned {
        row[c] = f32::NEG_INFINITY;
    }
}

/// Indices of the `k` largest values, largest first, lowest index first among equals.
fn top_k(xs: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &v) in xs.iter().enumerate() {
        if idx.len() == k && v <= xs[idx[k - 1]] {
            continue;
        }
        let pos = idx.partition_point(|&j| xs[j] >= v);
        idx.insert(pos, i);
        idx.truncate(k);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        assert_eq!(top_k(&[1.0, 5.0, 3.0, 5.0, 0.0], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[1.0], 3), vec![0]);
    }

    #[test]
    fn positions_follow_marian() {
        let mut row = vec![0.0f32; 8];
        add_position(&mut row, 0, Positions::Marian);
        assert_eq!(row, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }
}
