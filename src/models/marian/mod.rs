//! Marian transformer translation models, both flavours in one model: Bergamot students (Marian
//! `.bin`, SSRU decoder; `bergamot.rs`) and Hugging Face `MarianMTModel` folders (Opus-MT,
//! standard causal self-attention decoder with a key/value cache; `hf.rs`). The encoder is the
//! shared transformer layer, the decoder steps in `decoder.rs`, and `generate` chooses the
//! tokens (greedy, Marian or transformers beam search), over an optional lexical shortlist.

pub mod bergamot;
mod config;
mod decoder;
pub mod hf;
mod shortlist;
pub mod vmap;

pub use config::{DecoderKind, MarianConfig, Positions};
pub use hf::is_hf_dir;
pub use shortlist::Shortlist;

pub use crate::generate::SearchOptions;

use std::path::Path;

use anyhow::{Result, ensure};

use crate::generate::{self, Columns, Hyp, Rules, StepDecoder, Target};
use crate::kernels::parallel;
use crate::layers::Linear;
use crate::layers::attention::{Heads, Operand, Precision, TransposedKeys};
use crate::layers::embedding::Embedding;
use crate::layers::encoder::{EncoderLayer, EncoderShape, encode};
use crate::layers::scratch::Scratch;
use crate::models::tokenizer::{Overflow, TextTokenizer, fit_to_limit};
use crate::models::{Model, ModelError, Output, RunParams, Task, Translation};
use crate::schemes::SchemeRef;
use decoder::{DecoderLayer, Decoding, PositionTable, SourceSpan};

/// Most sentences decoded together; larger batches are split into groups of similar length.
const MAX_DECODE_BATCH: usize = 32;
/// With several threads, a batch of at least this many sentences per thread is split into one
/// sub-batch per thread, each decoded on its own thread with inline kernels: a decoder step's
/// matmuls (M = batch rows, N and K a few hundred) are too small for a fork-join per call to pay
/// (measured on en→pt batch 32: 2 threads gave 1.51× one thread with intra-op splitting).
const MIN_SENTENCES_PER_THREAD: usize = 4;

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
    rules: Rules,
    positions: PositionTable,
}

/// What a loader (`bergamot`, `hf`) assembles a model from.
struct Parts {
    config: MarianConfig,
    tokenizer: TextTokenizer,
    defaults: SearchOptions,
    embeddings: Embedding,
    target_embeddings: Option<Embedding>,
    output: Linear,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    shortlist: Option<Shortlist>,
    rules: Rules,
}

impl MarianTranslator {
    /// Loads a model directory as it is: a Hugging Face `MarianMTModel` folder (`config.json`),
    /// or a Bergamot one (`model.*.bin` or a variant's `variant.safetensors`, `tokenizer.json`,
    /// optional shortlist).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_as(dir, None)
    }

    /// Loads a model directory, quantizing an fp32 source's matrices with `scheme` (a variant
    /// derived at load time: the same tensors `quantserve quantize` would write).
    pub fn load_as(dir: &Path, scheme: Option<&SchemeRef>) -> Result<Self> {
        if hf::is_hf_dir(dir) {
            hf::load(dir, scheme)
        } else {
            bergamot::load(dir, scheme)
        }
    }

    fn assemble(p: Parts) -> Self {
        let positions = PositionTable::new(p.config.dim, p.config.positions);
        Self {
            config: p.config,
            tokenizer: p.tokenizer,
            defaults: p.defaults,
            max_source_tokens: 256,
            embeddings: p.embeddings,
            target_embeddings: p.target_embeddings,
            output: p.output,
            encoder: p.encoder,
            decoder: p.decoder,
            shortlist: p.shortlist,
            rules: p.rules,
            positions,
        }
    }

    fn heads(&self) -> Heads {
        Heads {
            count: self.config.heads,
            dim: self.config.dim / self.config.heads,
            causal: false,
            // The encoder's `encode` picks it per layer (bf16 for a quantized layer when
            // QUANTSERVE_ATTENTION=bf16); the decoder stays f32.
            precision: Precision::F32,
        }
    }

    pub fn has_shortlist(&self) -> bool {
        self.shortlist.is_some()
    }

    pub fn eos(&self) -> u32 {
        self.rules.eos
    }

    /// Source ids for `text`: SentencePiece pieces then EOS, fitted to `max_source_tokens`.
    pub fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false)?;
        ids.push(self.rules.eos);
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

    /// Runs the encoder on packed sources; returns `[total_tokens, dim]`.
    fn encode(&self, sources: &[Vec<u32>], starts: &[usize]) -> Scratch {
        let d = self.config.dim;
        let total = *starts.last().unwrap();
        let mut x = Scratch::zeroed(total * d);
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

    /// Translates source id sequences (each ending in EOS); returns target ids without EOS.
    pub fn translate_ids(
        &self,
        sources: &[Vec<u32>],
        opts: &SearchOptions,
    ) -> Result<Vec<Vec<u32>>> {
        let best = self.translate_ids_n(sources, opts, 1)?;
        Ok(best
            .into_iter()
            .map(|mut n| n.drain(..).next().unwrap_or_default())
            .collect())
    }

    /// Each source's `n` best translations (ids without EOS, best first; fewer when the beam
    /// finds fewer distinct ones).
    pub fn translate_ids_n(
        &self,
        sources: &[Vec<u32>],
        opts: &SearchOptions,
        n: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        let threads = parallel::pool_threads();
        if threads > 1 && sources.len() >= threads * MIN_SENTENCES_PER_THREAD {
            return self.translate_split(sources, opts, n, threads);
        }
        self.translate_groups(sources, opts, n)
    }

    /// One sub-batch per thread, decoded side by side with inline kernels. Sentences are dealt
    /// out in length order (the k-th shortest to part k mod threads), so every part gets a
    /// similar amount of work. Outputs do not depend on grouping, so this changes only speed.
    fn translate_split(
        &self,
        sources: &[Vec<u32>],
        opts: &SearchOptions,
        n: usize,
        threads: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        use rayon::prelude::*;
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| sources[i].len());
        let parts: Vec<Vec<usize>> = (0..threads)
            .map(|p| order.iter().skip(p).step_by(threads).copied().collect())
            .collect();
        let decoded = parts
            .par_iter()
            .map(|part| {
                let batch: Vec<Vec<u32>> = part.iter().map(|&i| sources[i].clone()).collect();
                parallel::inline(|| self.translate_groups(&batch, opts, n))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut outputs = vec![Vec::new(); sources.len()];
        for (part, outs) in parts.iter().zip(decoded) {
            for (&i, out) in part.iter().zip(outs) {
                outputs[i] = out;
            }
        }
        Ok(outputs)
    }

    /// [`Self::translate_ids_n`] in groups of at most `MAX_DECODE_BATCH`, the kernels splitting
    /// their own work over the pool (or running inline inside [`parallel::inline`]).
    fn translate_groups(
        &self,
        sources: &[Vec<u32>],
        opts: &SearchOptions,
        n: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        if sources.len() <= MAX_DECODE_BATCH {
            return self.translate_group(sources, opts, n);
        }
        // Large batches decode in groups of similar length: the shortlist union (the output
        // matmul's width) and the finished-row churn both grow with the group. Outputs do not
        // depend on grouping, so this changes only speed.
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| sources[i].len());
        let mut outputs = vec![Vec::new(); sources.len()];
        for group in order.chunks(MAX_DECODE_BATCH) {
            let batch: Vec<Vec<u32>> = group.iter().map(|&i| sources[i].clone()).collect();
            for (&i, out) in group.iter().zip(self.translate_group(&batch, opts, n)?) {
                outputs[i] = out;
            }
        }
        Ok(outputs)
    }

    /// Encodes `sources` and prepares the decoder for them, with `output` as the output layer.
    fn decoding<'a>(&'a self, sources: &[Vec<u32>], output: &'a Linear) -> Result<Decoding<'a>> {
        let mut spans = Vec::with_capacity(sources.len());
        let mut starts = vec![0usize];
        for ids in sources {
            ensure!(!ids.is_empty(), "empty source sequence");
            ensure!(
                ids.iter().all(|&i| (i as usize) < self.config.vocab),
                "source token id outside the vocabulary"
            );
            let start = *starts.last().unwrap();
            spans.push(SourceSpan {
                start,
                len: ids.len(),
            });
            starts.push(start + ids.len());
        }
        let enc = self.encode(sources, &starts);
        let total = *starts.last().unwrap();
        // Every decoder layer's cross-attention keys and values, computed once per sentence, and
        // the keys transposed (and the values laid out head by head) for the attention kernel,
        // once for every decoding step.
        let cross: Vec<Vec<f32>> = self
            .decoder
            .iter()
            .map(|l| l.cross_kv.apply(&enc, total))
            .collect();
        let heads = self.heads();
        let cross_keys = cross
            .iter()
            .map(|kv| {
                spans
                    .iter()
                    .map(|s| {
                        let part = |col| Operand {
                            data: kv,
                            first_row: s.start,
                            rows: s.len,
                            stride: 2 * self.config.dim,
                            col,
                        };
                        TransposedKeys::with_values(part(0), part(self.config.dim), heads)
                    })
                    .collect()
            })
            .collect();
        Ok(Decoding {
            model: self,
            sources: spans,
            cross,
            cross_keys,
            states: self.initial_states(sources.len()),
            output,
        })
    }

    fn translate_group(
        &self,
        sources: &[Vec<u32>],
        opts: &SearchOptions,
        n: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let eos = self.rules.eos;
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
        let targets: Vec<Target> = sources
            .iter()
            .map(|src| {
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
                Target {
                    max_len: self.rules.max_len(src.len(), opts),
                    allowed,
                }
            })
            .collect();
        let mut decoding = self.decoding(sources, output)?;
        generate::search_n(
            &mut decoding,
            &targets,
            Columns(columns.as_deref()),
            output.n_out(),
            &self.rules,
            opts,
            n,
        )
    }

    /// The FFN input layers of the encoder and of the decoder, each in layer order, e.g. to
    /// observe their activations during pruning calibration.
    pub fn ffn_inputs_mut(&mut self) -> (Vec<&mut Linear>, Vec<&mut Linear>) {
        (
            self.encoder.iter_mut().map(|l| &mut l.ffn_in).collect(),
            self.decoder.iter_mut().map(|l| &mut l.ffn_in).collect(),
        )
    }

    /// Logits over the full vocabulary at the first decoding step (for parity tests).
    pub fn first_step_logits(&self, source: &[u32]) -> Result<Vec<f32>> {
        self.step_logits(source, &[])
    }

    /// Logits over the full vocabulary after the decoder has been fed `prefix` (for parity tests).
    pub fn step_logits(&self, source: &[u32], prefix: &[u32]) -> Result<Vec<f32>> {
        let mut decoding = self.decoding(&[source.to_vec()], &self.output)?;
        let mut hyp = Hyp {
            sentence: 0,
            tokens: Vec::new(),
            score: 0.0,
        };
        let mut logits = Vec::new();
        for (step, &tok) in prefix.iter().enumerate() {
            decoding.step(std::slice::from_ref(&hyp), step, &mut logits);
            hyp.tokens.push(tok);
        }
        decoding.step(&[hyp], prefix.len(), &mut logits);
        Ok(logits)
    }

    /// Bytes of weights held (the shortlist excluded).
    pub fn weight_bytes(&self) -> usize {
        let enc: usize = self
            .encoder
            .iter()
            .map(|l| l.qkv.bytes() + l.attn_out.bytes() + l.ffn_in.bytes() + l.ffn_out.bytes())
            .sum();
        let dec: usize = self.decoder.iter().map(DecoderLayer::bytes).sum();
        self.embeddings.bytes()
            + self.target_embeddings.as_ref().map_or(0, Embedding::bytes)
            + self.output.bytes()
            + enc
            + dec
    }
}

impl Model for MarianTranslator {
    fn task(&self) -> Task {
        Task::Translate
    }

    fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>, ModelError> {
        MarianTranslator::tokenize(self, text, overflow).map_err(ModelError::from_tokenizer)
    }

    fn default_params(&self) -> RunParams {
        RunParams {
            beam_size: self.defaults.beam_size,
            max_length: self.defaults.max_length,
            ..RunParams::default()
        }
    }

    fn run(&self, batch: &[Vec<u32>], params: RunParams) -> Result<Vec<Output>, ModelError> {
        let opts = SearchOptions {
            beam_size: params.beam_size.max(1),
            max_length: params.max_length,
            ..self.defaults.clone()
        };
        let nbest = self
            .translate_ids_n(batch, &opts, 1 + params.alternatives)
            .map_err(ModelError::Failed)?;
        let decode = |ids: &[u32]| self.tokenizer.decode(ids).map_err(ModelError::Failed);
        nbest
            .into_iter()
            .map(|hyps| {
                let best = hyps.first().cloned().unwrap_or_default();
                Ok(Output::Translation(Translation {
                    text: decode(&best)?,
                    tokens: best.len(),
                    alternatives: hyps[1.min(hyps.len())..]
                        .iter()
                        .map(|h| decode(h))
                        .collect::<Result<_, _>>()?,
                }))
            })
            .collect()
    }

    fn weight_bytes(&self) -> usize {
        MarianTranslator::weight_bytes(self)
    }
}
