//! Scaled dot-product multi-head attention over row-major activations, on the attention kernels
//! (`kernels::attention`): one call per sequence, or all the sequences of a batch in one call.
//!
//! Each sequence's queries attend to keys and values of the same sequence only, so padding never
//! enters the computation and a sequence's result does not depend on what else is in the batch.

pub use crate::kernels::attention::{
    Heads, Operand, Precision, TransposedKeys, quantized_precision,
};

use crate::kernels::attention::{attend, attend_batch, attend_transposed};
use crate::kernels::cpu::{Isa, kernel_isa};

/// The kernel path: the process's (as the quantized layers use), else the best available.
fn isa() -> Isa {
    kernel_isa().unwrap_or_else(|_| Isa::best_available())
}

/// Multi-head attention of one sequence: for every head h, `softmax(Q_h K_hᵀ / sqrt(d)) V_h`,
/// written to `out[row * out_stride + h * d ..]`.
pub fn multi_head_attention(
    q: Operand,
    k: Operand,
    v: Operand,
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
) {
    attend(isa(), q, k, v, heads, out, out_stride);
}

/// Multi-head attention of packed sequences: `(q, k, v, first output row)` each.
pub fn batch_attention(
    seqs: &[(Operand, Operand, Operand, usize)],
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
) {
    attend_batch(isa(), seqs, heads, out, out_stride);
}

/// [`multi_head_attention`] over keys transposed once beforehand (a decoder's cross-attention).
#[allow(clippy::too_many_arguments)]
pub fn attention_transposed(
    q: Operand,
    k: Operand,
    kt: &TransposedKeys,
    v: Operand,
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
) {
    attend_transposed(isa(), q, k, kt, v, heads, out, out_stride);
}
