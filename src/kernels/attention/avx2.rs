//! AVX2 + FMA path: 8 keys (scores) or 8 output columns (`P V`) per ymm, up to 4 query rows ×
//! 3 vectors of accumulators; the same operations per element as `scalar.rs`, and the softmax
//! sum in the same 16 partial sums (two ymm).

use std::arch::x86_64::*;

use super::{Block, SUM_LANES, reduce_lanes};
use crate::kernels::simd::avx2::exp_nonpositive;

/// Vectors of keys or columns per pass for several query rows: 4 rows × 2 = 8 accumulators, 2
/// key or value vectors and a broadcast. (4 × 3 filled all 16 ymm registers, and the compiler
/// kept one accumulator on the stack: a store and a reload on every FMA of its chain, most of
/// this kernel's time in `perf annotate`.)
const VECS: usize = 2;
/// Per pass for a single query row (a decoder step): every accumulator is its own FMA chain, and
/// 3 chains leave the FMA pipes idle most of the time (4-cycle latency, 2 per cycle), so one row
/// takes 6 vectors of keys (48: a typical source sentence in one pass) and 4 of output columns (a
/// 32-wide head in one pass over the keys). Per element the sums run in the same order as with
/// `VECS`: the bits do not change.
const VECS_ONE_ROW_SCORES: usize = 6;
const VECS_ONE_ROW_VALUES: usize = 4;

/// Scores, softmax and `P V` of one block of query rows.
///
/// # Safety
/// The CPU must support avx2 and fma; the block's output rows (the head's columns) must be valid
/// for writes and exclusive to it.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block(b: &Block, kt: &[f32], scores: &mut [f32]) {
    // SAFETY: forwarded contract; `rows` is 1..=ROWS.
    unsafe {
        match b.rows {
            _ if b.dot_scores() => scores_dot(b, scores),
            1 => scores_rows::<1, VECS_ONE_ROW_SCORES>(b, kt, scores),
            2 => scores_rows::<2, VECS>(b, kt, scores),
            3 => scores_rows::<3, VECS>(b, kt, scores),
            _ => scores_rows::<4, VECS>(b, kt, scores),
        }
    }
    for r in 0..b.rows {
        let keys = b.keys;
        // SAFETY: avx2 and fma per the contract.
        unsafe { softmax(&mut scores[r * keys..(r + 1) * keys], b.visible(r)) };
    }
    // SAFETY: forwarded contract.
    unsafe {
        match b.rows {
            1 => values_rows::<1, VECS_ONE_ROW_VALUES>(b, scores),
            2 => values_rows::<2, VECS>(b, scores),
            3 => values_rows::<3, VECS>(b, scores),
            _ => values_rows::<4, VECS>(b, scores),
        }
    }
}

/// `scores[r][j] = (Σ_c q[r][c] · kt[c][j]) · scale` for every (padded) key: passes of up to
/// `V` vectors of 8 keys. Each pass has its vector count as a constant, so its accumulators stay
/// in registers (a run-time count made the compiler keep them on the stack).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_rows<const R: usize, const V: usize>(b: &Block, kt: &[f32], scores: &mut [f32]) {
    let keys = b.keys;
    let mut j0 = 0;
    while j0 < keys {
        let n = ((keys - j0) / 8).min(V);
        // SAFETY: forwarded contract; keys j0 .. j0 + 8·n ≤ keys (a multiple of 16).
        unsafe {
            match n {
                1 => scores_whole::<R, 1>(b, kt, scores, j0),
                2 => scores_whole::<R, 2>(b, kt, scores, j0),
                3 => scores_whole::<R, 3>(b, kt, scores, j0),
                4 => scores_whole::<R, 4>(b, kt, scores, j0),
                5 => scores_whole::<R, 5>(b, kt, scores, j0),
                _ => scores_whole::<R, 6>(b, kt, scores, j0),
            }
        }
        j0 += 8 * n;
    }
}

/// [`scores_rows`] for keys `j0 .. j0 + 8·N`.
///
/// # Safety
/// As [`block`]; `j0 + 8·N ≤ keys`, `N ≤ 6`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_whole<const R: usize, const N: usize>(
    b: &Block,
    kt: &[f32],
    scores: &mut [f32],
    j0: usize,
) {
    let (keys, scale, dim, kt_len) = (b.keys, _mm256_set1_ps(b.job.scale), b.job.dim, kt.len());
    // Bounds checked once, here (query rows are `dim` long; the last line of `kt` read ends at
    // `(dim − 1)·keys + j0 + 8·N`): per c, checks cost as much as the FMAs.
    let queries: [*const f32; R] = std::array::from_fn(|r| b.query(r)[..dim].as_ptr());
    let kt = kt[j0..].as_ptr();
    let mut acc = [[_mm256_setzero_ps(); N]; R];
    if dim > 0 {
        assert!((dim - 1) * keys + j0 + 8 * N <= kt_len);
    }
    for c in 0..dim {
        // SAFETY: c < dim, per the check above.
        let line = unsafe { kt.add(c * keys) };
        // SAFETY: `line` points at 8·N floats.
        let kv: [__m256; N] = std::array::from_fn(|t| unsafe { _mm256_loadu_ps(line.add(8 * t)) });
        for (acc_r, &q) in acc.iter_mut().zip(&queries) {
            // SAFETY: c < dim, the length of the query row.
            let qc = _mm256_set1_ps(unsafe { q.add(c).read() });
            for t in 0..N {
                acc_r[t] = _mm256_fmadd_ps(qc, kv[t], acc_r[t]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (t, a) in acc_r.iter().enumerate() {
            let at = r * keys + j0 + 8 * t;
            // SAFETY: `at + 8 ≤ (r + 1) · keys ≤ scores.len()`.
            unsafe { _mm256_storeu_ps(scores[at..].as_mut_ptr(), _mm256_mul_ps(*a, scale)) };
        }
    }
}

/// One query's scores as dot products in 16 partial sums over c (`scalar::block`'s order): lanes
/// 0..8 of each 16 columns in one ymm, 8..16 in another.
#[inline]
#[target_feature(enable = "avx2,fma")]
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
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for c in (0..d).step_by(8) {
            let m = mask8(d, c);
            // SAFETY: masked lanes are not read; the others are columns < d of q and k.
            let (qv, kv) = unsafe {
                (
                    _mm256_maskload_ps(q.wrapping_add(c), m),
                    _mm256_maskload_ps(k.wrapping_add(c), m),
                )
            };
            // Masked-off lanes multiply zeros: adding their +0 changes no partial sum.
            if c % 16 == 0 {
                lo = _mm256_fmadd_ps(qv, kv, lo);
            } else {
                hi = _mm256_fmadd_ps(qv, kv, hi);
            }
        }
        let mut lanes = [0.0f32; SUM_LANES];
        // SAFETY: `lanes` holds 16 floats.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
            _mm256_storeu_ps(lanes[8..].as_mut_ptr(), hi);
        }
        *s = reduce_lanes(lanes) * b.job.scale;
    }
}

/// Lanes `j..j + 8` below `visible`, as an `_mm256_maskload_ps` mask.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mask8(visible: usize, j: usize) -> __m256i {
    let left = visible.saturating_sub(j).min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(left),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The softmax of one score row (`keys` a multiple of 16), as `scalar::softmax`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax(row: &mut [f32], visible: usize) {
    if visible == 0 {
        row.fill(0.0);
        return;
    }
    let mut max = f32::NEG_INFINITY;
    for &x in &row[..visible] {
        max = max.max(x);
    }
    let max = _mm256_set1_ps(max);
    // Partial sums of keys j ≡ 0..7 and 8..15 (mod 16), as the 16 lanes of the other paths.
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for j in (0..row.len()).step_by(8) {
        // SAFETY: j + 8 ≤ row.len() (a multiple of 16).
        let x = unsafe { _mm256_loadu_ps(row[j..].as_ptr()) };
        // SAFETY: avx2 and fma per the contract.
        let e = unsafe { exp_nonpositive(_mm256_sub_ps(x, max)) };
        let e = _mm256_and_ps(e, _mm256_castsi256_ps(mask8(visible, j)));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(row[j..].as_mut_ptr(), e) };
        if j % 16 == 0 {
            lo = _mm256_add_ps(lo, e);
        } else {
            hi = _mm256_add_ps(hi, e);
        }
    }
    let mut sums = [0.0f32; SUM_LANES];
    // SAFETY: `sums` holds 16 floats.
    unsafe {
        _mm256_storeu_ps(sums.as_mut_ptr(), lo);
        _mm256_storeu_ps(sums[8..].as_mut_ptr(), hi);
    }
    let inv = _mm256_set1_ps(1.0 / reduce_lanes(sums));
    for j in (0..row.len()).step_by(8) {
        // SAFETY: j + 8 ≤ row.len().
        unsafe {
            let x = _mm256_loadu_ps(row[j..].as_ptr());
            _mm256_storeu_ps(row[j..].as_mut_ptr(), _mm256_mul_ps(x, inv));
        }
    }
}

/// `out[r][c] = Σ_j p[r][j] · v[j][c]` over the real keys: passes of up to `V` whole vectors of
/// 8 columns, then the last `d mod 8` columns in one masked vector. (A masked load is several
/// times slower than a plain one on some cores, so only the ragged tail takes it.)
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn values_rows<const R: usize, const V: usize>(b: &Block, scores: &[f32]) {
    let d = b.job.dim;
    let mut c0 = 0;
    while c0 + 8 <= d {
        let whole = ((d - c0) / 8).min(V);
        // SAFETY: forwarded contract; columns c0 .. c0 + 8·whole ≤ d.
        unsafe {
            match whole {
                1 => values_whole::<R, 1>(b, scores, c0),
                2 => values_whole::<R, 2>(b, scores, c0),
                3 => values_whole::<R, 3>(b, scores, c0),
                _ => values_whole::<R, 4>(b, scores, c0),
            }
        }
        c0 += 8 * whole;
    }
    if c0 < d {
        // SAFETY: forwarded contract; columns c0 .. d < c0 + 8.
        unsafe { values_tail::<R>(b, scores, c0) };
    }
}

/// [`values_rows`] for columns `c0 .. c0 + 8·N`, every vector whole.
///
/// # Safety
/// As [`block`]; `c0 + 8·N ≤ d`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn values_whole<const R: usize, const N: usize>(b: &Block, scores: &[f32], c0: usize) {
    let (keys, lk) = (b.keys, b.job.k.rows);
    let mut acc = [[_mm256_setzero_ps(); N]; R];
    if lk > 0 {
        // Bounds checked once (the rows' probabilities as slices of exactly `lk`, the value rows
        // by `value_rows`): per key, checks and re-derived row pointers cost as much as its FMAs.
        let p: [*const f32; R] = std::array::from_fn(|r| scores[r * keys..r * keys + lk].as_ptr());
        let (v0, stride) = b.value_rows(lk, c0, 8 * N);
        for j in 0..lk {
            // SAFETY: row j < lk of the value rows `value_rows` checked holds 8·N floats here.
            let vv: [__m256; N] =
                std::array::from_fn(|t| unsafe { _mm256_loadu_ps(v0.add(j * stride + 8 * t)) });
            for (acc_r, &p) in acc.iter_mut().zip(&p) {
                // SAFETY: j < lk, the length of the slice `p` was taken from.
                let pj = _mm256_set1_ps(unsafe { p.add(j).read() });
                for t in 0..N {
                    acc_r[t] = _mm256_fmadd_ps(pj, vv[t], acc_r[t]);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let out = b.out_row(r).wrapping_add(c0);
        for (t, a) in acc_r.iter().enumerate() {
            // SAFETY: columns c0 + 8t .. + 8 ≤ d of an output row of this block.
            unsafe { _mm256_storeu_ps(out.wrapping_add(8 * t), *a) };
        }
    }
}

/// [`values_rows`] for the last columns `c0 .. d`, fewer than 8: one masked vector.
///
/// # Safety
/// As [`block`]; `d - 8 < c0 < d`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn values_tail<const R: usize>(b: &Block, scores: &[f32], c0: usize) {
    let (d, keys, lk) = (b.job.dim, b.keys, b.job.k.rows);
    let mask = mask8(d - c0, 0);
    let mut acc = [_mm256_setzero_ps(); R];
    for j in 0..lk {
        // SAFETY: masked lanes are not read; unmasked ones are columns c0.. < d of row j.
        let vv = unsafe { _mm256_maskload_ps(b.value(j)[c0..].as_ptr(), mask) };
        for (r, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(_mm256_set1_ps(scores[r * keys + j]), vv, *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        // SAFETY: unmasked lanes are columns < d of an output row of this block.
        unsafe { _mm256_maskstore_ps(b.out_row(r).wrapping_add(c0), mask, *a) };
    }
}
