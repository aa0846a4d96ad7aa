//! Scaled dot-product multi-head attention over row-major activations.
//!
//! Each call handles one sequence: query rows attend to key/value rows of the same sequence only,
//! so padding never enters the computation and a sequence's result does not depend on what else is
//! in the batch.

use crate::kernels::fp32::{MatRef, matmul};
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

/// From this many query rows on, per-head matmuls beat dot-product loops.
const GEMM_MIN_QUERIES: usize = 4;

/// Keys visible to query `i` of `queries` when `keys` keys exist.
fn visible_keys(i: usize, queries: usize, keys: usize, causal: bool) -> usize {
    if causal {
        (i + 1 + keys).saturating_sub(queries).min(keys)
    } else {
        keys
    }
}

/// The same computation as the loop version, as two fp32 matmuls per head:
/// `S = Q_h K_hᵀ · scale`, row softmax, `O_h = S V_h`.
/// Columns `off..off + width` of the rows, as a matrix view.
fn head_columns<'a>(r: &Rows<'a>, off: usize, width: usize) -> MatRef<'a> {
    let start = r.first_row * r.stride + r.col + off;
    MatRef {
        data: &r.data[start..],
        rows: r.rows,
        cols: width,
        row_stride: r.stride,
        col_stride: 1,
    }
}

fn attention_by_gemm<'a>(
    q: Rows<'a>,
    k: Rows<'a>,
    v: Rows<'a>,
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
    scores: &mut Vec<f32>,
) {
    let (lq, lk, d) = (q.rows, k.rows, heads.dim);
    let scale = 1.0 / (d as f32).sqrt();
    scores.resize(lq * lk, 0.0);
    let head_view = |r: &Rows<'a>, off: usize| head_columns(r, off, d);
    for h in 0..heads.count {
        let off = h * d;
        matmul(
            head_view(&q, off),
            head_view(&k, off).t(),
            scores,
            lk,
            scale,
            false,
        );
        for (i, row) in scores.chunks_exact_mut(lk).enumerate() {
            let visible = visible_keys(i, lq, lk, heads.causal);
            row[visible..].fill(f32::NEG_INFINITY);
            softmax(row);
        }
        matmul(
            MatRef::row_major(scores, lq, lk),
            head_view(&v, off),
            &mut out[off..],
            out_stride,
            1.0,
            false,
        );
    }
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
    if q.rows >= GEMM_MIN_QUERIES {
        return attention_by_gemm(q, k, v, heads, out, out_stride, scores);
    }
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
            let visible = visible_keys(i, q.rows, k.rows, causal);
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
