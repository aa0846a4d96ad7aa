//! AVX-512 path: 16 keys (scores) or 16 output columns (`P V`) per zmm, up to 4 query rows × 4
//! vectors of accumulators; the same operations per element as `scalar.rs`.

use std::arch::x86_64::*;

use super::{Block, SUM_LANES, reduce_lanes};
use crate::kernels::simd::avx512::exp_nonpositive;

/// Vectors of keys or columns per pass (with 4 rows: 16 accumulators of 32 registers).
const VECS: usize = 4;

/// Scores, softmax and `P V` of one block of query rows.
///
/// # Safety
/// The CPU must support avx512f; the block's output rows (the head's columns) must be valid for
/// writes and exclusive to it.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block(b: &Block, kt: &[f32], scores: &mut [f32]) {
    // SAFETY: forwarded contract; `rows` is 1..=ROWS.
    unsafe {
        match b.rows {
            _ if b.dot_scores() => scores_dot(b, scores),
            1 => scores_rows::<1>(b, kt, scores),
            2 => scores_rows::<2>(b, kt, scores),
            3 => scores_rows::<3>(b, kt, scores),
            _ => scores_rows::<4>(b, kt, scores),
        }
    }
    for r in 0..b.rows {
        let keys = b.keys;
        // SAFETY: avx512f per the contract.
        unsafe { softmax(&mut scores[r * keys..(r + 1) * keys], b.visible(r)) };
    }
    // SAFETY: forwarded contract.
    unsafe {
        match b.rows {
            1 => values_rows::<1>(b, scores),
            2 => values_rows::<2>(b, scores),
            3 => values_rows::<3>(b, scores),
            _ => values_rows::<4>(b, scores),
        }
    }
}

/// `scores[r][j] = (Σ_c q[r][c] · kt[c][j]) · scale` for every (padded) key.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scores_rows<const R: usize>(b: &Block, kt: &[f32], scores: &mut [f32]) {
    let (keys, scale) = (b.keys, _mm512_set1_ps(b.job.scale));
    let queries: [&[f32]; R] = std::array::from_fn(|r| b.query(r));
    let mut j0 = 0;
    while j0 < keys {
        let n = ((keys - j0) / 16).min(VECS);
        let mut acc = [[_mm512_setzero_ps(); VECS]; R];
        for c in 0..b.job.dim {
            let line = &kt[c * keys + j0..c * keys + j0 + 16 * n];
            // SAFETY: `line` holds 16·n floats.
            let kv: [__m512; VECS] = std::array::from_fn(|t| {
                if t < n {
                    unsafe { _mm512_loadu_ps(line[16 * t..].as_ptr()) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            for (acc_r, q) in acc.iter_mut().zip(&queries) {
                let qc = _mm512_set1_ps(q[c]);
                for t in 0..n {
                    acc_r[t] = _mm512_fmadd_ps(qc, kv[t], acc_r[t]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (t, a) in acc_r.iter().enumerate().take(n) {
                let at = r * keys + j0 + 16 * t;
                // SAFETY: `at + 16 ≤ (r + 1) · keys ≤ scores.len()`.
                unsafe { _mm512_storeu_ps(scores[at..].as_mut_ptr(), _mm512_mul_ps(*a, scale)) };
            }
        }
        j0 += 16 * n;
    }
}

/// One query's scores as dot products in 16 partial sums over c (`scalar::block`'s order).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scores_dot(b: &Block, scores: &mut [f32]) {
    let (d, lk) = (b.job.dim, b.job.k.rows);
    let q = b.query(0).as_ptr();
    let row = &mut scores[..b.keys];
    for (j, s) in row.iter_mut().enumerate() {
        if j >= lk {
            *s = 0.0;
            continue;
        }
        let k = b.key(j).as_ptr();
        let mut acc = _mm512_setzero_ps();
        for c in (0..d).step_by(16) {
            let m: __mmask16 = if d - c >= 16 {
                !0
            } else {
                (1u16 << (d - c)) - 1
            };
            // SAFETY: masked lanes are not read; the others are columns < d of q and k.
            unsafe {
                let qv = _mm512_maskz_loadu_ps(m, q.wrapping_add(c));
                let kv = _mm512_maskz_loadu_ps(m, k.wrapping_add(c));
                acc = _mm512_mask3_fmadd_ps(qv, kv, acc, m);
            }
        }
        let mut lanes = [0.0f32; SUM_LANES];
        // SAFETY: `lanes` holds 16 floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc) };
        *s = reduce_lanes(lanes) * b.job.scale;
    }
}

/// The softmax of one score row (`keys` a multiple of 16), as `scalar::softmax`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn softmax(row: &mut [f32], visible: usize) {
    if visible == 0 {
        row.fill(0.0);
        return;
    }
    let mask = |j: usize| -> __mmask16 {
        match visible.saturating_sub(j) {
            0 => 0,
            v if v >= 16 => !0,
            v => (1u16 << v) - 1,
        }
    };
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for j in (0..visible).step_by(16) {
        // SAFETY: masked lanes are not read; the row holds j + 16 floats (keys ≥ visible,
        // a multiple of 16).
        let x = unsafe { _mm512_maskz_loadu_ps(mask(j), row[j..].as_ptr()) };
        max = _mm512_mask_max_ps(max, mask(j), max, x);
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    let mut lanes = _mm512_setzero_ps();
    for j in (0..row.len()).step_by(16) {
        let m = mask(j);
        // SAFETY: j + 16 ≤ row.len().
        let x = unsafe { _mm512_loadu_ps(row[j..].as_ptr()) };
        // SAFETY: avx512f per the contract.
        let e = unsafe { exp_nonpositive(_mm512_sub_ps(x, max)) };
        let e = _mm512_maskz_mov_ps(m, e);
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(row[j..].as_mut_ptr(), e) };
        lanes = _mm512_add_ps(lanes, e);
    }
    let mut sums = [0.0f32; SUM_LANES];
    // SAFETY: `sums` holds 16 floats.
    unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), lanes) };
    let inv = _mm512_set1_ps(1.0 / reduce_lanes(sums));
    for j in (0..row.len()).step_by(16) {
        // SAFETY: j + 16 ≤ row.len().
        unsafe {
            let x = _mm512_loadu_ps(row[j..].as_ptr());
            _mm512_storeu_ps(row[j..].as_mut_ptr(), _mm512_mul_ps(x, inv));
        }
    }
}

/// `out[r][c] = Σ_j p[r][j] · v[j][c]` over the real keys, 16 columns per vector (the last ones
/// masked).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn values_rows<const R: usize>(b: &Block, scores: &[f32]) {
    let (d, keys, lk) = (b.job.dim, b.keys, b.job.k.rows);
    let mut c0 = 0;
    while c0 < d {
        let n = (d - c0).div_ceil(16).min(VECS);
        let masks: [__mmask16; VECS] = std::array::from_fn(|t| {
            let left = (d - c0).saturating_sub(16 * t);
            if left >= 16 { !0 } else { (1u16 << left) - 1 }
        });
        let mut acc = [[_mm512_setzero_ps(); VECS]; R];
        for j in 0..lk {
            let v = &b.value(j)[c0..];
            // SAFETY: masked lanes are not read; unmasked ones are columns < d of row j.
            let vv: [__m512; VECS] = std::array::from_fn(|t| {
                if t < n {
                    unsafe { _mm512_maskz_loadu_ps(masks[t], v.as_ptr().wrapping_add(16 * t)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let p = _mm512_set1_ps(scores[r * keys + j]);
                for t in 0..n {
                    acc_r[t] = _mm512_fmadd_ps(p, vv[t], acc_r[t]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            let out = b.out_row(r).wrapping_add(c0);
            for t in 0..n {
                // SAFETY: unmasked lanes are columns < d of an output row of this block.
                unsafe { _mm512_mask_storeu_ps(out.wrapping_add(16 * t), masks[t], acc_r[t]) };
            }
        }
        c0 += 16 * n;
    }
}
