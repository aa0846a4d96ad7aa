//! The post-norm transformer encoder layer that BERT and Marian share: self-attention with one
//! fused QKV matmul, then a feed-forward block, each followed by residual + layer norm.

use super::attention::{Heads, Operand, batch_attention};
use super::linear::Linear;
use super::scratch::Scratch;
use crate::kernels::epilogue::Activation;
use crate::kernels::ops::layer_norm;

/// Layer-norm parameters.
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl Norm {
    pub fn apply(&self, x: &mut [f32], eps: f32) {
        layer_norm(x, self.gamma.len(), &self.gamma, &self.beta, eps);
    }
}

pub struct EncoderLayer {
    /// `[Q | K | V]` in one matmul.
    pub qkv: Linear,
    pub attn_out: Linear,
    pub attn_norm: Norm,
    pub ffn_in: Linear,
    pub ffn_out: Linear,
    pub ffn_norm: Norm,
}

/// What the layers of one encoder have in common (not the FFN width: a pruned model's differs
/// per layer, and each layer's `ffn_in` knows its own).
#[derive(Clone, Copy)]
pub struct EncoderShape {
    pub dim: usize,
    pub heads: Heads,
    pub activation: Activation,
    pub eps: f32,
}

/// The widest FFN among `ffn_ins` (the scratch size for their hidden activations).
pub fn max_ffn_width<'a>(ffn_ins: impl IntoIterator<Item = &'a Linear>) -> usize {
    ffn_ins.into_iter().map(Linear::n_out).max().unwrap_or(0)
}

/// Runs `layers` over packed sequences: `x` is `[total_tokens, dim]`, sequence s owns rows
/// `offsets[s]..offsets[s + 1]` and attends only to itself.
pub fn encode(layers: &[EncoderLayer], shape: EncoderShape, x: &mut [f32], offsets: &[usize]) {
    let d = shape.dim;
    let total = *offsets.last().unwrap_or(&0);
    let mut qkv = Scratch::zeroed(total * 3 * d);
    let mut ctx = Scratch::zeroed(total * d);
    let mut inter = Scratch::zeroed(total * max_ffn_width(layers.iter().map(|l| &l.ffn_in)));
    for layer in layers {
        layer.qkv.forward(x, total, &mut qkv);
        // Every (sequence, head) pair in parallel; each sequence attends only to itself.
        let view = |seq: &[usize], col| Operand {
            data: &qkv,
            first_row: seq[0],
            rows: seq[1] - seq[0],
            stride: 3 * d,
            col,
        };
        let seqs: Vec<_> = offsets
            .windows(2)
            .map(|seq| (view(seq, 0), view(seq, d), view(seq, 2 * d), seq[0]))
            .collect();
        batch_attention(&seqs, shape.heads, &mut ctx, d);
        layer.attn_out.forward_add(&ctx, total, x);
        layer.attn_norm.apply(x, shape.eps);
        let inter = &mut inter[..total * layer.ffn_in.n_out()];
        layer
            .ffn_in
            .forward_activated(x, total, inter, shape.activation);
        layer.ffn_out.forward_add(inter, total, x);
        layer.ffn_norm.apply(x, shape.eps);
    }
}
