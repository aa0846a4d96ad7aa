//! The portable path, and the reference order of operations every vector path repeats.

use super::{Block, SUM_LANES, reduce_lanes};
use crate::kernels::simd::exp_nonpositive;

/// Scores, softmax and `P V` of one block of query rows.
///
/// # Safety
/// The block's output rows (the head's columns) must be valid for writes and exclusive to it.
pub(super) unsafe fn block(b: &Block, kt: &[f32], scores: &mut [f32]) {
    let (d, keys, lk) = (b.job.dim, b.keys, b.job.k.rows);
    for r in 0..b.rows {
        let q = b.query(r);
        let row = &mut scores[r * keys..(r + 1) * keys];
        if b.dot_scores() {
            // One query: dot products in 16 partial sums over c.
            for (j, s) in row.iter_mut().enumerate() {
                *s = if j < lk {
                    let mut lanes = [0.0f32; SUM_LANES];
                    for (c, (&qc, &kc)) in q.iter().zip(b.key(j)).enumerate() {
                        lanes[c % SUM_LANES] = qc.mul_add(kc, lanes[c % SUM_LANES]);
                    }
                    reduce_lanes(lanes) * b.job.scale
                } else {
                    0.0
                };
            }
        } else {
            for (j, s) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (c, &qc) in q.iter().enumerate() {
                    acc = qc.mul_add(kt[c * keys + j], acc);
                }
                *s = acc * b.job.scale;
            }
        }
        softmax(row, b.visible(r));
    }
    for r in 0..b.rows {
        let p = &scores[r * keys..r * keys + lk];
        let out = b.out_row(r);
        for c in 0..d {
            let mut acc = 0.0f32;
            for (j, &pj) in p.iter().enumerate() {
                acc = pj.mul_add(b.value(j)[c], acc);
            }
            // SAFETY: column c < d of an output row of this block, per the contract.
            unsafe { out.add(c).write(acc) };
        }
    }
}

/// In-place softmax of the first `visible` scores of `row`; the rest become 0. The sum runs in
/// [`SUM_LANES`] partial sums (key j into sum j mod 16), reduced by [`reduce_lanes`].
pub(super) fn softmax(row: &mut [f32], visible: usize) {
    if visible == 0 {
        row.fill(0.0);
        return;
    }
    let max = row[..visible]
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut lanes = [0.0f32; SUM_LANES];
    for (j, x) in row.iter_mut().enumerate() {
        let e = if j < visible {
            exp_nonpositive(*x - max)
        } else {
            0.0
        };
        *x = e;
        lanes[j % SUM_LANES] += e;
    }
    let inv = 1.0 / reduce_lanes(lanes);
    row.iter_mut().for_each(|x| *x *= inv);
}
