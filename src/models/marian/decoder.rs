//! The Marian decoder, one step at a time: SSRU (Bergamot) or causal self-attention with a
//! key/value cache (Opus-MT), cross-attention over the encoder output, FFN; and the per-row
//! states the search reorders.

use rayon::prelude::*;

use super::MarianTranslator;
use super::config::{DecoderKind, Positions};
use crate::generate::{Hyp, StepDecoder};
use crate::kernels::ops::{add_in_place, sigmoid};
use crate::kernels::parallel;
use crate::layers::Linear;
use crate::layers::attention::{
    Operand, TransposedKeys, attention_transposed, multi_head_attention,
};
use crate::layers::embedding::Embedding;
use crate::layers::encoder::{Norm, max_ffn_width};
use crate::layers::scratch::Scratch;

/// The decoder layer's first block, after `DecoderKind`.
pub(super) enum SelfBlock {
    /// SSRU gates: `[x·Wf + bf | x·W]` in one matmul.
    Ssru(Linear),
    /// `[Q | K | V]` in one matmul, then the output projection.
    Attention { qkv: Linear, out: Linear },
}

impl SelfBlock {
    pub(super) fn bytes(&self) -> usize {
        match self {
            Self::Ssru(l) => l.bytes(),
            Self::Attention { qkv, out } => qkv.bytes() + out.bytes(),
        }
    }
}

pub(super) struct DecoderLayer {
    pub(super) self_block: SelfBlock,
    pub(super) self_norm: Norm,
    pub(super) query: Linear,
    /// Keys and values of the encoder output, `[K | V]`, computed once per sentence.
    pub(super) cross_kv: Linear,
    pub(super) ctx_out: Linear,
    pub(super) ctx_norm: Norm,
    pub(super) ffn_in: Linear,
    pub(super) ffn_out: Linear,
    pub(super) ffn_norm: Norm,
}

impl DecoderLayer {
    pub(super) fn bytes(&self) -> usize {
        self.self_block.bytes()
            + self.query.bytes()
            + self.cross_kv.bytes()
            + self.ctx_out.bytes()
            + self.ffn_in.bytes()
            + self.ffn_out.bytes()
    }
}

/// Where a sentence's rows are in the packed encoder output.
#[derive(Clone, Copy, Debug)]
pub(super) struct SourceSpan {
    pub(super) start: usize,
    pub(super) len: usize,
}

/// One batch being decoded: the encoder output's cross-attention keys and values, every row's
/// state, and the output layer (the full vocabulary or the batch's shortlist).
pub(super) struct Decoding<'a> {
    pub(super) model: &'a MarianTranslator,
    pub(super) sources: Vec<SourceSpan>,
    /// Per decoder layer: `[K | V]` of the encoder output, `[source tokens, 2·dim]`.
    pub(super) cross: Vec<Vec<f32>>,
    /// Per decoder layer and sentence: its keys transposed once for every step.
    pub(super) cross_keys: Vec<Vec<TransposedKeys>>,
    /// Per decoder layer and row: the SSRU cell, or the self-attention cache.
    pub(super) states: Vec<Vec<Vec<f32>>>,
    pub(super) output: &'a Linear,
}

impl Decoding<'_> {
    /// One decoder step for every row: input tokens (None = start), per-layer states (SSRU
    /// cell, or `[K | V]` of every earlier position) updated in place; writes the logits over
    /// `output`'s columns, `[rows, output.n_out()]`, into `logits`.
    fn decode_step(&mut self, hyps: &[Hyp], step: usize, logits: &mut Vec<f32>) {
        let m = self.model;
        let (sources, states, cross, cross_keys, output) = (
            &self.sources,
            &mut self.states,
            &self.cross,
            &self.cross_keys,
            self.output,
        );
        let d = m.config.dim;
        let rows = hyps.len();
        let eps = m.config.layer_norm_eps;
        let mut x = Scratch::zeroed(rows * d);
        let table = m.target_embeddings.as_ref().unwrap_or(&m.embeddings);
        for (r, h) in hyps.iter().enumerate() {
            let row = &mut x[r * d..(r + 1) * d];
            match h.tokens.last().copied().or(m.rules.start) {
                Some(id) => m.embed(table, id, step, row),
                // Marian's first input is a zero embedding plus position 0.
                None => m.positions.add(row, step),
            }
        }
        // Buffers come from the thread's scratch: a decoder step allocates nothing new.
        let mut gates = Scratch::zeroed(rows * 3 * d);
        let mut tmp = Scratch::zeroed(rows * d);
        let mut q = Scratch::zeroed(rows * d);
        let mut ctx = Scratch::zeroed(rows * d);
        let widest = max_ffn_width(m.decoder.iter().map(|l| &l.ffn_in));
        let mut inter = Scratch::zeroed(rows * widest);
        for (l, layer) in m.decoder.iter().enumerate() {
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
                    add_in_place(&mut x, &tmp);
                }
                SelfBlock::Attention { qkv, out } => {
                    // The row's new key and value join its cache; the query attends to all of
                    // it (every cached position is at or before this one: causal by design).
                    qkv.forward(&x, rows, &mut gates);
                    let (fused, heads) = (&*gates, m.heads());
                    // Rows are independent: attend in parallel, each writing its own context.
                    let attend = |(r, (cache, out)): (usize, (&mut Vec<f32>, &mut [f32]))| {
                        cache.extend_from_slice(&fused[r * 3 * d + d..(r + 1) * 3 * d]);
                        let kv = |col| Operand {
                            data: cache,
                            first_row: 0,
                            rows: cache.len() / (2 * d),
                            stride: 2 * d,
                            col,
                        };
                        let query = Operand {
                            data: fused,
                            first_row: r,
                            rows: 1,
                            stride: 3 * d,
                            col: 0,
                        };
                        multi_head_attention(query, kv(0), kv(d), heads, out, d);
                    };
                    if parallel::pool_threads() > 1 {
                        let pairs = states[l].par_iter_mut().zip(ctx.par_chunks_mut(d));
                        pairs.enumerate().for_each(attend);
                    } else {
                        let pairs = states[l].iter_mut().zip(ctx.chunks_mut(d));
                        pairs.enumerate().for_each(attend);
                    }
                    out.forward_add(&ctx, rows, &mut x);
                }
            }
            layer.self_norm.apply(&mut x, eps);

            layer.query.forward(&x, rows, &mut q);
            let (q, heads) = (&*q, m.heads());
            let attend = |(r, (h, out)): (usize, (&Hyp, &mut [f32]))| {
                let s = &sources[h.sentence];
                let kv = |col| Operand {
                    data: &cross[l],
                    first_row: s.start,
                    rows: s.len,
                    stride: 2 * d,
                    col,
                };
                let query = Operand {
                    data: q,
                    first_row: r,
                    rows: 1,
                    stride: d,
                    col: 0,
                };
                let keys = &cross_keys[l][h.sentence];
                attention_transposed(query, kv(0), keys, kv(d), heads, out, d);
            };
            // Inside a decoder that already runs one sub-batch per thread (`parallel::inline`),
            // forking each step's rows again only adds scheduling: they run in order there.
            if parallel::pool_threads() > 1 {
                let pairs = hyps.par_iter().zip(ctx.par_chunks_mut(d));
                pairs.enumerate().for_each(attend);
            } else {
                hyps.iter()
                    .zip(ctx.chunks_mut(d))
                    .enumerate()
                    .for_each(attend);
            }
            layer.ctx_out.forward_add(&ctx, rows, &mut x);
            layer.ctx_norm.apply(&mut x, eps);

            let inter = &mut inter[..rows * layer.ffn_in.n_out()];
            layer
                .ffn_in
                .forward_activated(&x, rows, inter, m.config.ffn_activation);
            layer.ffn_out.forward_add(inter, rows, &mut x);
            layer.ffn_norm.apply(&mut x, eps);
        }
        // Every form of `Linear::forward` writes all of its output, so the buffer keeps what the
        // last step left instead of being zeroed first (7.4 MB a step at Opus-MT's batch 32:
        // 1.8 % of decoding under `perf`).
        logits.resize(rows * output.n_out(), 0.0);
        output.forward(&x, rows, logits);
    }
}

impl StepDecoder for Decoding<'_> {
    fn step(&mut self, hyps: &[Hyp], step: usize, logits: &mut Vec<f32>) {
        self.decode_step(hyps, step, logits);
    }

    fn reorder(&mut self, parents: &[usize]) {
        reorder_states(&mut self.states, parents);
    }
}

/// Positions whose embeddings [`PositionTable`] keeps: every source position (longer sources are
/// refused or truncated at 256); a longer output computes its later positions as before.
const TABLE_POSITIONS: usize = 256;

/// The sinusoidal position embeddings of the first [`TABLE_POSITIONS`] positions, computed once
/// per model: `perf` had `sin`, `cos` and `pow` at 1.5 % of Opus-MT decoding when every step
/// computed its row. Each value is exactly what [`add_position`] adds to a row.
pub(super) struct PositionTable {
    rows: Vec<f32>,
    dim: usize,
    style: Positions,
}

impl PositionTable {
    pub(super) fn new(dim: usize, style: Positions) -> Self {
        let mut rows = vec![0.0; TABLE_POSITIONS * dim];
        for (pos, row) in rows.chunks_exact_mut(dim.max(1)).enumerate() {
            add_position(row, pos, style);
        }
        Self { rows, dim, style }
    }

    /// Adds position `pos`'s embedding to `row` (as [`add_position`]).
    pub(super) fn add(&self, row: &mut [f32], pos: usize) {
        if pos < TABLE_POSITIONS && row.len() == self.dim {
            let table = &self.rows[pos * self.dim..(pos + 1) * self.dim];
            for (x, &p) in row.iter_mut().zip(table) {
                *x += p;
            }
        } else {
            add_position(row, pos, self.style);
        }
    }
}

/// Adds the sinusoidal position embedding: first half sin, second half cos.
pub(super) fn add_position(row: &mut [f32], pos: usize, style: Positions) {
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

impl MarianTranslator {
    pub(super) fn embed(&self, table: &Embedding, id: u32, pos: usize, row: &mut [f32]) {
        table.lookup(id as usize, self.config.embed_scale, row);
        self.positions.add(row, pos);
    }

    /// Per layer and row, the decoder's state before the first step: an SSRU cell of zeros, or an
    /// empty self-attention cache.
    pub(super) fn initial_states(&self, rows: usize) -> Vec<Vec<Vec<f32>>> {
        let row = match self.config.decoder {
            DecoderKind::Ssru => vec![0.0; self.config.dim],
            DecoderKind::SelfAttention => Vec::new(),
        };
        vec![vec![row; rows]; self.decoder.len()]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_marian() {
        let mut row = vec![0.0f32; 8];
        add_position(&mut row, 0, Positions::Marian);
        assert_eq!(row, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn the_position_table_adds_what_add_position_adds() {
        for style in [Positions::Marian, Positions::HuggingFace] {
            let table = PositionTable::new(16, style);
            for pos in [0, 1, 7, TABLE_POSITIONS - 1, TABLE_POSITIONS, 1000] {
                let start: Vec<f32> = (0..16).map(|i| i as f32 * 0.37 - 2.0).collect();
                let (mut got, mut want) = (start.clone(), start);
                table.add(&mut got, pos);
                add_position(&mut want, pos, style);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{style:?} at {pos}");
            }
        }
    }
}
