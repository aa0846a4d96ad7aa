//! Scaled dot-product multi-head attention over row-major activations.
//!
//! Each call handles one sequence: query rows attend to key/value rows of the same sequence only,
//! so padding never enters the computation and a sequence's result does not depend on what else is
//! in the batch.

use crate::kernels::ops::softmax;

/// Rows of a matrix whose columns `col..col + width` hold a tensor, `stride` floats apart.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub first_row: usize,
    pub rows: usize,
    pub stride: usize,
    pub col: usize,
}

impl Rows<'_> {
    fn row(&self, r: usize, from: usize, len: usize) -> &[f32] {
        let start = (self.first_row + r) * self.stride + self.col + from;
        &self.data[start..start + len]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise; the order is fixed, so results are
    // reproducible across runs and batch shapes.
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// How the model dimension splits into heads, and whether attention is causal.
#[derive(Clone, Copy)]
pub struct Heads {
    pub count: usize,
    pub dim: usize,
    /// Query i sees keys `0..=i + (keys − queries)` only.
    pub causal: bool,
}

/// Multi-head attention: for every head h, `softmax(Q_h K_hᵀ / sqrt(d)) V_h`, written to
/// `out[row * out_stride + h * d ..]`. `scores` is scratch space reused across calls.
pub fn multi_head_attention(
    q: Rows,
    k: Rows,
    v: Rows,
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
    scores: &mut Vec<f32>,
) {
    let Heads {
        count: heads,
        dim: head_dim,
        causal,
    } = heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    scores.resize(k.rows, 0.0);
    for h in 0..heads {
        let off = h * head_dim;
        for i in 0..q.rows {
            let visible = if causal {
                (i + 1 + k.rows).saturating_sub(q.rows).min(k.rows)
            } else {
                k.rows
            };
            let qi = q.row(i, off, head_dim);
            let s = &mut scores[..visible];
            for (j, sj) in s.iter_mut().enumerate() {
                *sj = dot(qi, k.row(j, off, head_dim)) * scale;
            }
            softmax(s);
            let o = &mut out[i * out_stride + off..i * out_stride + off + head_dim];
            o.fill(0.0);
            for (j, &p) in s.iter().enumerate() {
                for (oe, ve) in o.iter_mut().zip(v.row(j, off, head_dim)) {
                    *oe += p * ve;
                }
            }
        }
    }
}
