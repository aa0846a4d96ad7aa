//! The post-norm transformer encoder layer that BERT and Marian share: self-attention with one
//! fused QKV matmul, then a feed-forward block, each followed by residual + layer norm.

use super::attention::{Heads, Operand, Precision, batch_attention, quantized_precision};
use super::linear::Linear;
use super::scratch::Scratch;
use crate::kernels::epilogue::Activation;
use crate::kernels::int8::{QuantizedActivations, layer_norm_quantize};
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

    /// `apply`, and if `consumer` (the layer that reads the normalised rows next) takes int8
    /// activations, their quantization into `quantized` in the same pass; returns whether it did.
    pub fn apply_for(
        &self,
        x: &mut [f32],
        eps: f32,
        consumer: Option<&Linear>,
        quantized: &mut QuantizedActivations,
    ) -> bool {
        match consumer.and_then(Linear::int8_activation_isa) {
            Some(isa) => {
                let dim = self.gamma.len();
                layer_norm_quantize(isa, x, dim, &self.gamma, &self.beta, eps, quantized);
                true
            }
            None => {
                self.apply(x, eps);
                false
            }
        }
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
    // `x` quantized for the next int8 layer by the layer norm that wrote it (the first layer's
    // input comes from the embeddings, unquantized).
    let mut x_quantized = QuantizedActivations::new();
    let mut have_quantized = false;
    for (i, layer) in layers.iter().enumerate() {
        let quantized = have_quantized.then_some(&x_quantized);
        layer
            .qkv
            .forward_prequantized(x, quantized, total, &mut qkv, Activation::None);
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
        // A quantized layer's attention multiplies as `QUANTSERVE_ATTENTION` says (checked when
        // the model loaded); an f32 model, the reference, stays f32.
        let heads = Heads {
            precision: if layer.qkv.is_f32() {
                Precision::F32
            } else {
                quantized_precision().unwrap_or_default()
            },
            ..shape.heads
        };
        batch_attention(&seqs, heads, &mut ctx, d);
        layer.attn_out.forward_add(&ctx, total, x);
        have_quantized =
            layer
                .attn_norm
                .apply_for(x, shape.eps, Some(&layer.ffn_in), &mut x_quantized);
        let inter = &mut inter[..total * layer.ffn_in.n_out()];
        let quantized = have_quantized.then_some(&x_quantized);
        layer
            .ffn_in
            .forward_prequantized(x, quantized, total, inter, shape.activation);
        layer.ffn_out.forward_add(inter, total, x);
        let next = layers.get(i + 1).map(|l| &l.qkv);
        have_quantized = layer
            .ffn_norm
            .apply_for(x, shape.eps, next, &mut x_quantized);
    }
}
