//! Marian transformer translation models (Bergamot students): encoder, SSRU decoder, greedy and
//! beam search, optional lexical shortlist. fp32 reference path.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::attention::{Heads, Rows, multi_head_attention};
use super::embedding::Embedding;
use super::encoder::{EncoderLayer, EncoderShape, Norm, encode};
use super::linear::{Linear, LinearParts};
use super::marian_bin::MarianBin;
use super::shortlist::Shortlist;
use super::tokenizer::{Overflow, TextTokenizer, fit_to_limit};
use super::weights::TensorStore;
use crate::kernels::ops::{Activation, add_in_place, log_softmax, sigmoid};

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
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            normalize: 1.0,
            max_length_factor: 2.5,
            max_length: None,
            shortlist: true,
        }
    }
}

struct DecoderLayer {
    /// SSRU gates: `[x·Wf + bf | x·W]` in one matmul.
    ssru: Linear,
    ssru_norm: Norm,
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
    output: Linear,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    shortlist: Option<Shortlist>,
    eos: u32,
    unk: Option<u32>,
}

/// Sinusoidal position embedding as Marian computes it: first half sin, second half cos.
fn add_position(row: &mut [f32], pos: usize) {
    let half = row.len() / 2;
    let step = (10000f32).ln() / (half as f32 - 1.0).max(1.0);
    for i in 0..half {
        let angle = pos as f32 * (-(i as f32) * step).exp();
        row[i] += angle.sin();
        row[half + i] += angle.cos();
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

fn take_norm(store: &mut TensorStore, prefix: &str, d: usize) -> Result<Norm> {
    Ok(Norm {
        gamma: store.take(&format!("{prefix}_ln_scale"), &[d])?,
        beta: store.take(&format!("{prefix}_ln_bias"), &[d])?,
    })
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
    /// Loads a Bergamot model directory: `model.*.bin`, `tokenizer.json`, optional shortlist.
    pub fn load(dir: &Path) -> Result<Self> {
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
            cand.bias = Some(vec![0.0; d]);
            decoder.push(DecoderLayer {
                ssru: LinearParts::concat(vec![forget, cand])?.build()?,
                ssru_norm: take_norm(s, &format!("{p}_rnn_ffn"), d)?,
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
            output,
            encoder,
            decoder,
            shortlist,
            eos,
            unk,
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
        self.eos
    }

    /// Source ids for `text`: SentencePiece pieces then EOS, fitted to `max_source_tokens`.
    pub fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false)?;
        ids.push(self.eos);
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

    fn embed(&self, id: u32, pos: usize, row: &mut [f32]) {
        let d = self.config.dim;
        self.embeddings.lookup(id as usize, (d as f32).sqrt(), row);
        add_position(row, pos);
    }

    /// Runs the encoder on packed sources; returns `[total_tokens, dim]`.
    fn encode(&self, sources: &[Vec<u32>], starts: &[usize]) -> Vec<f32> {
        let d = self.config.dim;
        let total = *starts.last().unwrap();
        let mut x = vec![0.0f32; total * d];
        for (s, ids) in sources.iter().enumerate() {
            for (pos, &id) in ids.iter().enumerate() {
                let r = starts[s] + pos;
                self.embed(id, pos, &mut x[r * d..(r + 1) * d]);
            }
        }
        let shape = EncoderShape {
            dim: d,
            heads: self.heads(),
            ffn_dim: self.config.ffn_dim,
            activation: self.config.ffn_activation,
            eps: self.config.layer_norm_eps,
        };
        encode(&self.encoder, shape, &mut x, starts);
        x
    }

    /// One decoder step for every row: input tokens (None = start), SSRU states updated in
    /// place; returns logits over `output`'s columns, `[rows, output.n_out()]`.
    fn decode_step(
        &self,
        hyps: &[Hyp],
        sentences: &[Sentence],
        step: usize,
        states: &mut [Vec<f32>],
        cross: &[Vec<f32>],
        output: &Linear,
    ) -> Vec<f32> {
        let d = self.config.dim;
        let rows = hyps.len();
        let eps = self.config.layer_norm_eps;
        let mut x = vec![0.0f32; rows * d];
        for (r, h) in hyps.iter().enumerate() {
            let row = &mut x[r * d..(r + 1) * d];
            match h.tokens.last() {
                Some(&id) => self.embed(id, step, row),
                // The first step's input is a zero embedding plus position 0.
                None => add_position(row, step),
            }
        }
        let mut gates = vec![0.0f32; rows * 2 * d];
        let mut tmp = vec![0.0f32; rows * d];
        let mut q = vec![0.0f32; rows * d];
        let mut ctx = vec![0.0f32; rows * d];
        let mut inter = vec![0.0f32; rows * self.config.ffn_dim];
        let mut scores = Vec::new();
        for (l, layer) in self.decoder.iter().enumerate() {
            // SSRU: f = σ(x·Wf + bf); c = f⊙c + (1−f)⊙(x·W); h = relu(c).
            layer.ssru.forward(&x, rows, &mut gates);
            let state = &mut states[l];
            for r in 0..rows {
                let g = &gates[r * 2 * d..(r + 1) * 2 * d];
                let c = &mut state[r * d..(r + 1) * d];
                let out = &mut tmp[r * d..(r + 1) * d];
                for i in 0..d {
                    let f = sigmoid(g[i]);
                    c[i] = f * c[i] + (1.0 - f) * g[d + i];
                    out[i] = c[i].max(0.0);
                }
            }
            add_in_place(&mut x, &tmp);
            layer.ssru_norm.apply(&mut x, eps);

            layer.query.forward(&x, rows, &mut q);
            for (r, h) in hyps.iter().enumerate() {
                let s = &sentences[h.sentence];
                let kv = |col| Rows {
                    data: &cross[l],
                    first_row: s.src_start,
                    rows: s.src_len,
                    stride: 2 * d,
                    col,
                };
                multi_head_attention(
                    Rows {
                        data: &q,
                        first_row: r,
                        rows: 1,
                        stride: d,
                        col: 0,
                    },
                    kv(0),
                    kv(d),
                    self.heads(),
                    &mut ctx[r * d..],
                    d,
                    &mut scores,
                );
            }
            layer.ctx_out.forward(&ctx, rows, &mut tmp);
            add_in_place(&mut x, &tmp);
            layer.ctx_norm.apply(&mut x, eps);

            layer
                .ffn_in
                .forward_activated(&x, rows, &mut inter, self.config.ffn_activation);
            layer.ffn_out.forward(&inter, rows, &mut tmp);
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

    fn translate_group(&self, sources: &[Vec<u32>], opts: &SearchOptions) -> Result<Vec<Vec<u32>>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.config.dim;
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
        let cross: Vec<Vec<f32>> = self
            .decoder
            .iter()
            .map(|l| l.cross_kv.apply(&enc, total))
            .collect();

        // Output columns: the full vocabulary, or the union of the sentences' shortlists. Each
        // sentence is masked to its own list, so a translation never depends on its batch-mates.
        let shortlist = self.shortlist.as_ref().filter(|_| opts.shortlist);
        let (columns, output): (Option<Vec<u32>>, Option<Linear>) = match shortlist {
            Some(sl) => {
                let union = sl.allowed_targets(&sources.concat(), self.config.vocab, &[self.eos]);
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
                    .max(1);
                // The sentence's own shortlist as positions in the batch's columns; None when
                // it is every column (a batch of one, or no shortlist).
                let allowed = match (shortlist, &columns) {
                    (Some(sl), Some(cols)) => {
                        let own = sl.allowed_targets(src, self.config.vocab, &[self.eos]);
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
        let n_cols = output.n_out();
        let unk_column = self.unk.and_then(|unk| match &columns {
            Some(cols) => cols.binary_search(&unk).ok(),
            None => Some(unk as usize),
        });

        let mut hyps: Vec<Hyp> = (0..sources.len())
            .map(|s| Hyp {
                sentence: s,
                tokens: Vec::new(),
                score: 0.0,
            })
            .collect();
        let mut states: Vec<Vec<f32>> = vec![vec![0.0; hyps.len() * d]; self.decoder.len()];
        let mut live_beam = vec![opts.beam_size.max(1); sources.len()];
        let mut finished: Vec<Vec<(f32, Vec<u32>)>> = vec![Vec::new(); sources.len()];
        let mut step = 0;
        while !hyps.is_empty() {
            let mut logits = self.decode_step(&hyps, &sentences, step, &mut states, &cross, output);
            step += 1;
            // Candidate continuations: (sentence, parent row, token, score).
            let mut chosen: Vec<(usize, usize, u32, f32)> = Vec::new();
            if opts.beam_size <= 1 {
                for (r, h) in hyps.iter().enumerate() {
                    let row = &logits[r * n_cols..(r + 1) * n_cols];
                    let c = best_column(row, sentences[h.sentence].allowed.as_deref(), unk_column);
                    chosen.push((h.sentence, r, to_token(c), 0.0));
                }
            } else {
                let mut by_sentence: Vec<Vec<(usize, usize, u32, f32)>> =
                    vec![Vec::new(); sources.len()];
                for (r, h) in hyps.iter().enumerate() {
                    let row = &mut logits[r * n_cols..(r + 1) * n_cols];
                    mask_row(row, sentences[h.sentence].allowed.as_deref(), unk_column);
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
                if tok == self.eos || tokens.len() + 1 >= sent.max_len {
                    if tok != self.eos {
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
            // Keep the decoder states of the surviving rows, in their new order.
            for state in states.iter_mut() {
                let mut kept = Vec::with_capacity(parents.len() * d);
                for &p in &parents {
                    kept.extend_from_slice(&state[p * d..(p + 1) * d]);
                }
                *state = kept;
            }
            hyps = next;
        }
        Ok(finished
            .into_iter()
            .map(|mut f| {
                f.sort_by(|a, b| b.0.total_cmp(&a.0));
                f.into_iter().next().map(|(_, t)| t).unwrap_or_default()
            })
            .collect())
    }

    /// Stores the embedding table as int8 rows.
    pub fn quantize_embeddings_int8(&mut self) {
        self.embeddings = self.embeddings.to_int8();
    }

    /// Replaces the token embedding table by `f(table)` (e.g. a low-bit variant's rows).
    pub fn map_embeddings(
        &mut self,
        f: impl Fn(&super::embedding::Embedding) -> Result<super::embedding::Embedding>,
    ) -> Result<()> {
        self.embeddings = f(&self.embeddings)?;
        Ok(())
    }

    /// Applies `f` to every dense layer, the output projection included (e.g. `Linear::to_int8`).
    pub fn map_linears(&mut self, f: impl Fn(&Linear) -> Result<Linear>) -> Result<()> {
        for l in &mut self.encoder {
            for lin in l.linears_mut() {
                *lin = f(lin)?;
            }
        }
        for l in &mut self.decoder {
            for lin in [
                &mut l.ssru,
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
        ensure!(
            !source.is_empty() && source.iter().all(|&i| (i as usize) < self.config.vocab),
            "bad source ids"
        );
        let starts = [0, source.len()];
        let enc = self.encode(&[source.to_vec()], &starts);
        let cross: Vec<Vec<f32>> = self
            .decoder
            .iter()
            .map(|l| l.cross_kv.apply(&enc, source.len()))
            .collect();
        let sentences = [Sentence {
            src_start: 0,
            src_len: source.len(),
            max_len: 1,
            allowed: None,
        }];
        let hyps = [Hyp {
            sentence: 0,
            tokens: Vec::new(),
            score: 0.0,
        }];
        let mut states = vec![vec![0.0; self.config.dim]; self.decoder.len()];
        Ok(self.decode_step(&hyps, &sentences, 0, &mut states, &cross, &self.output))
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
                l.ssru.bytes()
                    + l.query.bytes()
                    + l.cross_kv.bytes()
                    + l.ctx_out.bytes()
                    + l.ffn_in.bytes()
                    + l.ffn_out.bytes()
            })
            .sum();
        self.embeddings.bytes() + self.output.bytes() + enc + dec
    }
}

/// The column with the largest logit among `allowed` (all columns when None), never `unk`
/// (Marian does not output <unk> unless told to); the lowest column wins ties.
fn best_column(row: &[f32], allowed: Option<&[u32]>, unk: Option<usize>) -> usize {
    let mut best: Option<usize> = None;
    let mut consider = |c: usize| {
        if Some(c) != unk && best.is_none_or(|b| row[c] > row[b]) {
            best = Some(c);
        }
    };
    match allowed {
        Some(cols) => cols.iter().for_each(|&c| consider(c as usize)),
        None => (0..row.len()).for_each(&mut consider),
    }
    best.unwrap_or(0)
}

/// Sets every column outside `allowed`, and `unk`, to −∞ (before a softmax over the row).
fn mask_row(row: &mut [f32], allowed: Option<&[u32]>, unk: Option<usize>) {
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
    if let Some(u) = unk {
        row[u] = f32::NEG_INFINITY;
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
        add_position(&mut row, 0);
        assert_eq!(row, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }
}
