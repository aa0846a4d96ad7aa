//! AVX-512 path of a decoder step's attention: one query against every head, several heads per
//! pass (cross-attention over keys transposed beforehand; self-attention over a cache of rows).
//!
//! One head alone is latency-bound: its scores are 1–4 chains of `d` dependent FMAs and its
//! `P V` 2–4 chains of `lk`, each FMA waiting ~4 cycles on the one before. Interleaving up to
//! [`GROUP`] heads gives the core 4× the independent chains per pass. Each element still gets
//! exactly the operations of the one-head kernels (`avx512.rs`, `scalar.rs`): the scores sum
//! `q[c]·kᵀ[c][j]` over c in order with FMAs from zero and then scale; `P V` sums `p[j]·v[j][c]`
//! over j in order; the softmax is the shared one. So the outputs are the same bits.

use std::arch::x86_64::*;

use super::avx512::{column_masks, scores_dot, softmax};
use super::{Block, HeadJob, Operand, Precision, SUM_LANES, TransposedKeys};
use crate::kernels::parallel::SendPtr;

/// Heads interleaved per pass (with 4 vectors each: 16 accumulators of 32 registers).
const GROUP: usize = 4;
/// Vectors of keys or columns per head per pass.
const VECS: usize = 4;

/// Where a step's keys are.
pub(super) enum StepKeys<'a> {
    /// Transposed beforehand (a decoder's cross-attention over its source).
    Transposed(&'a TransposedKeys),
    /// As rows (a decoder's self-attention cache): each head's scores are dot products, as
    /// `avx512::scores_dot` computes them one head at a time.
    Rows(Operand<'a>),
}

/// One query row against every head: the operands and where the output row goes.
pub(super) struct Step<'a> {
    /// The query (one row).
    pub(super) q: Operand<'a>,
    pub(super) keys: StepKeys<'a>,
    /// The values, read unless the transposed keys carry a head-major copy.
    pub(super) v: Operand<'a>,
    pub(super) heads: usize,
    pub(super) dim: usize,
    pub(super) scale: f32,
    /// The output row, `heads · dim` floats.
    pub(super) out: &'a mut [f32],
}

impl Step<'_> {
    /// (real keys, keys padded to a multiple of 16: the length of a head's score row).
    fn key_counts(&self) -> (usize, usize) {
        let lk = match &self.keys {
            StepKeys::Transposed(kt) => kt.keys,
            StepKeys::Rows(k) => k.rows,
        };
        (lk, lk.next_multiple_of(SUM_LANES))
    }
}

/// Calls `$f::<G, N>($args)` for the run-time group size `$g` (1..=4) and vector count `$n`
/// (1..=4): a constant count lets the compiler keep every accumulator in a register.
macro_rules! dispatch {
    ($f:ident, $g:expr, $n:expr, $($arg:expr),*) => {
        match ($g, $n) {
            (1, 1) => $f::<1, 1>($($arg),*),
            (1, 2) => $f::<1, 2>($($arg),*),
            (1, 3) => $f::<1, 3>($($arg),*),
            (1, _) => $f::<1, 4>($($arg),*),
            (2, 1) => $f::<2, 1>($($arg),*),
            (2, 2) => $f::<2, 2>($($arg),*),
            (2, 3) => $f::<2, 3>($($arg),*),
            (2, _) => $f::<2, 4>($($arg),*),
            (3, 1) => $f::<3, 1>($($arg),*),
            (3, 2) => $f::<3, 2>($($arg),*),
            (3, 3) => $f::<3, 3>($($arg),*),
            (3, _) => $f::<3, 4>($($arg),*),
            (_, 1) => $f::<4, 1>($($arg),*),
            (_, 2) => $f::<4, 2>($($arg),*),
            (_, 3) => $f::<4, 3>($($arg),*),
            (_, _) => $f::<4, 4>($($arg),*),
        }
    };
}

/// Scores, softmax and `P V` of every head of one query row; `scores` is scratch.
///
/// # Safety
/// The CPU must support avx512f.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn step(s: &mut Step, scores: &mut Vec<f32>) {
    let (heads, d) = (s.heads, s.dim);
    let (lk, keys) = s.key_counts();
    assert!(s.q.rows == 1 && s.out.len() >= heads * d);
    scores.clear();
    scores.resize(heads * keys, 0.0);
    match &s.keys {
        StepKeys::Transposed(kt) => {
            assert!(kt.dim == d && kt.padded == keys && kt.data.len() >= heads * d * keys);
            let mut h0 = 0;
            while h0 < heads {
                let g = (heads - h0).min(GROUP);
                let mut j0 = 0;
                while j0 < keys {
                    let n = ((keys - j0) / 16).min(VECS);
                    // SAFETY: avx512f per the contract; heads h0..h0 + g < heads, keys
                    // j0..j0 + 16n ≤ keys (a multiple of 16).
                    unsafe { dispatch!(scores_group, g, n, s, kt, scores, h0, j0) };
                    j0 += 16 * n;
                }
                h0 += g;
            }
        }
        &StepKeys::Rows(k) => {
            for (h, row) in scores.chunks_exact_mut(keys.max(1)).take(heads).enumerate() {
                let job = HeadJob {
                    q: s.q,
                    k,
                    kt: None,
                    v: s.v,
                    off: h * d,
                    dim: d,
                    causal: false,
                    precision: Precision::F32,
                    scale: s.scale,
                    out: SendPtr(std::ptr::null_mut()),
                    out_stride: 0,
                };
                let block = Block {
                    job: &job,
                    i0: 0,
                    rows: 1,
                    keys,
                };
                // SAFETY: avx512f per the contract; one query over keys as rows, the score row
                // holds `keys` floats (the output pointer is not used by the scores).
                unsafe { scores_dot(&block, row) };
            }
        }
    }
    for row in scores.chunks_exact_mut(keys.max(1)).take(heads) {
        // SAFETY: avx512f per the contract.
        unsafe { softmax(row, lk) };
    }
    let mut h0 = 0;
    while h0 < heads {
        let g = (heads - h0).min(GROUP);
        let mut c0 = 0;
        while c0 < d {
            let n = (d - c0).div_ceil(16).min(VECS);
            // SAFETY: as above; vector t < n starts at a column c0 + 16t < d.
            unsafe { dispatch!(values_group, g, n, s, scores, h0, c0) };
            c0 += 16 * n;
        }
        h0 += g;
    }
}

/// `scores[h][j] = (Σ_c q[h][c] · kᵀ_h[c][j]) · scale` for heads `h0..h0 + G`, keys
/// `j0..j0 + 16·N`.
///
/// # Safety
/// avx512f; `h0 + G ≤ heads`, `j0 + 16·N ≤ keys` (as `step` checks the buffers).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scores_group<const G: usize, const N: usize>(
    s: &Step,
    kt: &TransposedKeys,
    scores: &mut [f32],
    h0: usize,
    j0: usize,
) {
    let (d, keys) = (s.dim, kt.padded);
    let size = d * keys;
    // Each head's block of `kt` is `d` lines of `keys`; the last line read ends at
    // (d − 1)·keys + j0 + 16·N ≤ size. The query rows are `d` long.
    let kt: [*const f32; G] =
        std::array::from_fn(|i| kt.data[(h0 + i) * size..(h0 + i + 1) * size][j0..].as_ptr());
    let q: [*const f32; G] = std::array::from_fn(|i| s.q.row(0, (h0 + i) * d, d).as_ptr());
    let mut acc = [[_mm512_setzero_ps(); N]; G];
    for c in 0..d {
        for i in 0..G {
            // SAFETY: c < d, the query row's length; line c of the head's `kt` holds keys
            // j0..j0 + 16·N (see above).
            unsafe {
                let qc = _mm512_set1_ps(q[i].add(c).read());
                let line = kt[i].add(c * keys);
                for (t, a) in acc[i].iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(qc, _mm512_loadu_ps(line.add(16 * t)), *a);
                }
            }
        }
    }
    let scale = _mm512_set1_ps(s.scale);
    for (i, acc_h) in acc.iter().enumerate() {
        let row = &mut scores[(h0 + i) * keys + j0..(h0 + i) * keys + j0 + 16 * N];
        for (t, a) in acc_h.iter().enumerate() {
            // SAFETY: `row` holds 16·N floats.
            unsafe { _mm512_storeu_ps(row[16 * t..].as_mut_ptr(), _mm512_mul_ps(*a, scale)) };
        }
    }
}

/// `out[h][c] = Σ_j p[h][j] · v[j][h·d + c]` over the real keys, for heads `h0..h0 + G` and
/// columns `c0 .. min(c0 + 16·N, d)`.
///
/// # Safety
/// avx512f; `h0 + G ≤ heads`, `c0 + 16·(N − 1) < d`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn values_group<const G: usize, const N: usize>(
    s: &mut Step,
    scores: &[f32],
    h0: usize,
    c0: usize,
) {
    let (d, (lk, keys)) = (s.dim, s.key_counts());
    let width = (d - c0).min(16 * N);
    let masks = column_masks::<N>(width);
    let mut acc = [[_mm512_setzero_ps(); N]; G];
    if lk > 0 {
        // Each head's value rows: (the data, where row 0's column c0 is, the row stride),
        // head-major when the keys carry a copy, else inside the `[K | V]` matrix.
        let head_major = match &s.keys {
            StepKeys::Transposed(kt) => kt.values.as_deref(),
            StepKeys::Rows(_) => None,
        };
        let (data, starts, stride): (&[f32], [usize; G], usize) = match head_major {
            Some(values) => (values, std::array::from_fn(|i| (h0 + i) * lk * d + c0), d),
            None => {
                let v = &s.v;
                let row0 = v.first_row * v.stride + v.col + c0;
                (
                    v.data,
                    std::array::from_fn(|i| row0 + (h0 + i) * d),
                    v.stride,
                )
            }
        };
        // Checked once per head: its last value row holds the columns, so every row before it
        // does. The probabilities as slices of exactly `lk`.
        let rows: [*const f32; G] = std::array::from_fn(|i| {
            assert!(starts[i] + (lk - 1) * stride + width <= data.len());
            data[starts[i]..].as_ptr()
        });
        let p: [*const f32; G] =
            std::array::from_fn(|i| scores[(h0 + i) * keys..(h0 + i) * keys + lk].as_ptr());
        for j in 0..lk {
            for (i, acc_h) in acc.iter_mut().enumerate() {
                // SAFETY: j < lk, the length of the slice `p[i]` was taken from; row j < lk of
                // head i's values holds its `width` columns (checked above), and masked lanes
                // (from `width` on) are not read.
                unsafe {
                    let pj = _mm512_set1_ps(p[i].add(j).read());
                    let row = rows[i].wrapping_add(j * stride);
                    for (t, a) in acc_h.iter_mut().enumerate() {
                        let vv = _mm512_maskz_loadu_ps(masks[t], row.wrapping_add(16 * t));
                        *a = _mm512_fmadd_ps(pj, vv, *a);
                    }
                }
            }
        }
    }
    for (i, acc_h) in acc.iter().enumerate() {
        let out = &mut s.out[(h0 + i) * d + c0..(h0 + i) * d + c0 + width];
        for (t, a) in acc_h.iter().enumerate() {
            // SAFETY: unmasked lanes are the `width` columns of `out`.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(16 * t), masks[t], *a) };
        }
    }
}
