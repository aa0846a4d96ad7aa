//! The post-norm transformer encoder layer that BERT and Marian share: self-attention with one
//! fused QKV matmul, then a feed-forward block, each followed by residual + layer norm.

use rayon::prelude::*;

use super::attention::{Heads, Rows, multi_head_attention};
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
        // Sequences are independent: attend to them in parallel, each writing its own rows.
        let mut outs = Vec::with_capacity(offsets.len().saturating_sub(1));
        let mut rest = &mut ctx[..];
        for seq in offsets.windows(2) {
            let (head, tail) = rest.split_at_mut((seq[1] - seq[0]) * d);
            outs.push((seq[0], seq[1] - seq[0], head));
            rest = tail;
        }
        let qkv = &*qkv;
        outs.into_par_iter()
            .for_each_init(Vec::new, |scores, (first_row, rows, out)| {
                let view = |col| Rows {
                    data: qkv,
                    first_row,
                    rows,
                    stride: 3 * d,
                    col,
                };
                multi_head_attention(view(0), view(d), view(2 * d), shape.heads, out, d, scores);
            });
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
