//! AVX-512 path: 16 keys (scores) or 16 output columns (`P V`) per zmm, up to 4 query rows × 4
//! vectors of accumulators; the same operations per element as `scalar.rs`.

use std::arch::x86_64::*;

use super::{Block, SUM_LANES, reduce_lanes};
use crate::kernels::simd::avx512::{exp_nonpositive, reduce16};

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

/// `scores[r][j] = (Σ_c q[r][c] · kt[c][j]) · scale` for every (padded) key: passes of up to
/// [`VECS`] vectors of 16 keys, each with its vector count as a constant (a run-time count put a
/// compare and branch beside every FMA: `perf annotate` on Emerald Rapids).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scores_rows<const R: usize>(b: &Block, kt: &[f32], scores: &mut [f32]) {
    let keys = b.keys;
    let mut j0 = 0;
    while j0 < keys {
        let n = ((keys - j0) / 16).min(VECS);
        // SAFETY: forwarded contract; keys j0 .. j0 + 16·n ≤ keys (a multiple of 16).
        unsafe {
            match n {
                1 => scores_whole::<R, 1>(b, kt, scores, j0),
                2 => scores_whole::<R, 2>(b, kt, scores, j0),
                3 => scores_whole::<R, 3>(b, kt, scores, j0),
                _ => scores_whole::<R, 4>(b, kt, scores, j0),
            }
        }
        j0 += 16 * n;
    }
}

/// [`scores_rows`] for keys `j0 .. j0 + 16·N`.
///
/// # Safety
/// As [`block`]; `j0 + 16·N ≤ keys`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scores_whole<const R: usize, const N: usize>(
    b: &Block,
    kt: &[f32],
    scores: &mut [f32],
    j0: usize,
) {
    let (keys, scale, dim) = (b.keys, _mm512_set1_ps(b.job.scale), b.job.dim);
    // Bounds checked once, here (query rows are `dim` long; the last line of `kt` read ends at
    // `(dim − 1)·keys + j0 + 16·N`).
    if dim > 0 {
        assert!((dim - 1) * keys + j0 + 16 * N <= kt.len());
    }
    let queries: [*const f32; R] = std::array::from_fn(|r| b.query(r)[..dim].as_ptr());
    let kt = kt[j0..].as_ptr();
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    for c in 0..dim {
        // SAFETY: c < dim, per the check above.
        let line = unsafe { kt.add(c * keys) };
        // SAFETY: `line` points at 16·N floats.
        let kv: [__m512; N] = std::array::from_fn(|t| unsafe { _mm512_loadu_ps(line.add(16 * t)) });
        for (acc_r, &q) in acc.iter_mut().zip(&queries) {
            // SAFETY: c < dim, the length of the query row.
            let qc = _mm512_set1_ps(unsafe { q.add(c).read() });
            for t in 0..N {
                acc_r[t] = _mm512_fmadd_ps(qc, kv[t], acc_r[t]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (t, a) in acc_r.iter().enumerate() {
            let at = r * keys + j0 + 16 * t;
            // SAFETY: `at + 16 ≤ (r + 1) · keys ≤ scores.len()`.
            unsafe { _mm512_storeu_ps(scores[at..].as_mut_ptr(), _mm512_mul_ps(*a, scale)) };
        }
    }
}

/// One query's scores as dot products in 16 partial sums over c (`scalar::block`'s order): 16
/// keys at a time, their partial sums reduced together by [`reduce16`] (the same tree per key),
/// so the 16 dependency chains overlap; the last `lk mod 16` keys one at a time.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scores_dot(b: &Block, scores: &mut [f32]) {
    let (d, lk) = (b.job.dim, b.job.k.rows);
    let q = b.query(0).as_ptr();
    let row = &mut scores[..b.keys];
    let mask = |c: usize| -> __mmask16 {
        if d - c >= 16 {
            !0
        } else {
            (1u16 << (d - c)) - 1
        }
    };
    let whole = lk / 16 * 16;
    let scale = _mm512_set1_ps(b.job.scale);
    for j0 in (0..whole).step_by(16) {
        let keys: [*const f32; 16] = std::array::from_fn(|t| b.key(j0 + t)[..d].as_ptr());
        let mut acc = [_mm512_setzero_ps(); 16];
        for c in (0..d).step_by(16) {
            let m = mask(c);
            // SAFETY: masked lanes are not read; the others are columns < d of q and the keys.
            unsafe {
                let qv = _mm512_maskz_loadu_ps(m, q.wrapping_add(c));
                for (a, &k) in acc.iter_mut().zip(&keys) {
                    let kv = _mm512_maskz_loadu_ps(m, k.wrapping_add(c));
                    *a = _mm512_mask3_fmadd_ps(qv, kv, *a, m);
                }
            }
        }
        // SAFETY: j0 + 16 ≤ lk ≤ keys, the row's length.
        unsafe { _mm512_storeu_ps(row[j0..].as_mut_ptr(), _mm512_mul_ps(reduce16(acc), scale)) };
    }
    for (j, s) in row.iter_mut().enumerate().skip(whole) {
        if j >= lk {
            *s = 0.0;
            continue;
        }
        let k = b.key(j).as_ptr();
        let mut acc = _mm512_setzero_ps();
        for c in (0..d).step_by(16) {
            let m = mask(c);
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

/// Lane masks of `N` vectors covering `width` columns (the last ones partly or not at all).
#[inline(always)]
pub(super) fn column_masks<const N: usize>(width: usize) -> [__mmask16; N] {
    std::array::from_fn(|t| {
        let left = width.saturating_sub(16 * t);
        if left >= 16 { !0 } else { (1u16 << left) - 1 }
    })
}

/// The softmax of one score row (`keys` a multiple of 16), as `scalar::softmax`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax(row: &mut [f32], visible: usize) {
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

/// `out[r][c] = Σ_j p[r][j] · v[j][c]` over the real keys: passes of up to [`VECS`] vectors of 16
/// columns (the last ones masked), each with its vector count as a constant.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn values_rows<const R: usize>(b: &Block, scores: &[f32]) {
    let d = b.job.dim;
    let mut c0 = 0;
    while c0 < d {
        let n = (d - c0).div_ceil(16).min(VECS);
        // SAFETY: forwarded contract; vector t < n starts at a column c0 + 16t < d.
        unsafe {
            match n {
                1 => values_part::<R, 1>(b, scores, c0),
                2 => values_part::<R, 2>(b, scores, c0),
                3 => values_part::<R, 3>(b, scores, c0),
                _ => values_part::<R, 4>(b, scores, c0),
            }
        }
        c0 += 16 * n;
    }
}

/// [`values_rows`] for columns `c0 .. min(c0 + 16·N, d)`.
///
/// # Safety
/// As [`block`]; `c0 + 16·(N − 1) < d`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn values_part<const R: usize, const N: usize>(b: &Block, scores: &[f32], c0: usize) {
    let (d, keys, lk) = (b.job.dim, b.keys, b.job.k.rows);
    let width = (d - c0).min(16 * N);
    let masks = column_masks::<N>(width);
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    if lk > 0 {
        // Bounds checked once (the rows' probabilities as slices of exactly `lk`, the value rows
        // by `value_rows`): per key, checks and re-derived row pointers cost as much as its FMAs.
        let p: [*const f32; R] = std::array::from_fn(|r| scores[r * keys..r * keys + lk].as_ptr());
        let (v0, stride) = b.value_rows(lk, c0, width);
        for j in 0..lk {
            // SAFETY: row j < lk of the value rows `value_rows` checked holds `width` floats
            // from v0 + j·stride; masked lanes (from `width` on) are not read.
            let vv: [__m512; N] = std::array::from_fn(|t| unsafe {
                _mm512_maskz_loadu_ps(masks[t], v0.wrapping_add(j * stride + 16 * t))
            });
            for (acc_r, &p) in acc.iter_mut().zip(&p) {
                // SAFETY: j < lk, the length of the slice `p` was taken from.
                let pj = _mm512_set1_ps(unsafe { p.add(j).read() });
                for t in 0..N {
                    acc_r[t] = _mm512_fmadd_ps(pj, vv[t], acc_r[t]);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let out = b.out_row(r).wrapping_add(c0);
        for (t, a) in acc_r.iter().enumerate() {
            // SAFETY: unmasked lanes are columns < d of an output row of this block.
            unsafe { _mm512_mask_storeu_ps(out.wrapping_add(16 * t), masks[t], *a) };
        }
    }
}
